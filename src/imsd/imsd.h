/* imsd.h - the parts of the imsd program and what they share: the event sink, readiness
 * notification, the run directory, the service account and its listeners, inbound
 * connections and their sessions, statistics. */
#ifndef IMSD_IMSD_H
#define IMSD_IMSD_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "ims/ims.h"

#define IMSD_VERSION "0.5"

/* Exit codes (the runtime protocol with imsctl). */
#define IMSD_EXIT_OK 0
#define IMSD_EXIT_FAILED 1 /* start failed: event logged, STATUS= sent */
#define IMSD_EXIT_USAGE 2
#define IMSD_EXIT_RUNNING 3 /* another imsd holds the pid lock */
#define IMSD_EXIT_DAMAGED 4 /* start failed: a registry hive file is damaged (event logged) */

/* SIGHUP asks for a reload, which the original never did: settings take effect at the next
 * start (the Diagnostics levels and the logging values apply at once: diagwatch.c). No
 * original event ID is known for this: ours, next to IMS_EV_STARTED. */

#define IMSD_CONSOLE_LEVEL 10 /* DisplayErrsOnConsole from this on: console mode (Q181950) */

#define IMSD_ADDR_MAX 80 /* "[v6 address%scope]:port" and NUL */
/* Descriptors kept for everything but connections: listeners, the registry, the spool and its
 * threads' files, logs. */
#define IMSD_FD_RESERVE 64

/* --- log.c: the event sink ----------------------------------------------------------- */

#define IMSD_EVENT_TEXT_MAX 1024
#define IMSD_SINK_RECENT 200 /* the last events kept for the administrator's page */

/* One event as the page shows it. */
typedef struct imsd_recent_event {
    uint64_t seq; /* 1, 2, ...: the page asks for those after the last it has */
    time_t at;
    unsigned id;
    uint8_t category, severity;
    char text[IMSD_EVENT_TEXT_MAX];
} imsd_recent_event;

typedef struct imsd_sink {
    _Atomic bool console;                 /* also to stderr, with a timestamp (changed live) */
    unsigned last_error_id;               /* the last error event, for STATUS= */
    char last_error[IMSD_EVENT_TEXT_MAX]; /* its text */
    /* The last IMSD_SINK_RECENT events: events come from several threads, hence the lock. */
    pthread_mutex_t lock;
    imsd_recent_event recent[IMSD_SINK_RECENT];
    uint64_t seq; /* the last event's */
} imsd_sink;

/* imsd_sink_open - open syslog as the MSExchangeIMC source and make log deliver to sink. */
void imsd_sink_open(imsd_sink *sink, ims_log *log, bool console);
void imsd_sink_close(imsd_sink *sink);
/* imsd_sink_recent_json - the events kept with seq > since, oldest first, as a JSON array of
 * {"seq":N,"time":<unix s>,"id":N,"category":"..","severity":"..","text":".."} appended to
 * out. Returns 0 or ENOMEM. */
int imsd_sink_recent_json(imsd_sink *sink, uint64_t since, buf *out);

/* --- notify.c: systemd's readiness protocol ------------------------------------------- */

typedef struct imsd_notify {
    int fd; /* -1 when NOTIFY_SOCKET is not set */
    bool connected;
    struct sockaddr_un addr;
    socklen_t addrlen;
} imsd_notify;

/* imsd_notify_open - read NOTIFY_SOCKET and make the socket. Returns 0 (also when the
 * variable is unset: sending is then a no-op) or an errno value. */
int imsd_notify_open(imsd_notify *n);
/* imsd_notify_send - one datagram ("READY=1\n..."). Returns 0 or an errno value. */
int imsd_notify_send(imsd_notify *n, const char *msg);
/* imsd_notify_sendf - the same, formatted. */
int imsd_notify_sendf(imsd_notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void imsd_notify_close(imsd_notify *n);

/* --- run.c: the run directory (pid lock, status file) ---------------------------------- */

typedef struct imsd_run {
    char dir[PATH_MAX];
    char pidfile[PATH_MAX];
    char statusfile[PATH_MAX];
    int lockfd; /* holds the pid lock for the process's whole life; -1 before */
} imsd_run;

/* imsd_run_lock - make <root>/run, take the pid lock and write our pid. Returns IMS_OK,
 * IMSD_EXIT_RUNNING (after printing "imsd: already running (pid N)"), or an event ID
 * already logged. */
int imsd_run_lock(imsd_run *r, const char *root, ims_log *log);
/* imsd_run_write_status - the status file, atomically. Returns IMS_OK or an event ID. */
int imsd_run_write_status(imsd_run *r, ims_log *log, const char *profile, time_t started,
                          const char *listeners, const char *account);
/* imsd_run_remove_status - at a clean stop. */
void imsd_run_remove_status(imsd_run *r, ims_log *log);
/* imsd_run_close - drop the lock (the kernel does it at exit anyway). */
void imsd_run_close(imsd_run *r);

/* --- privs.c: the service account, its listeners, dropping root ------------------------ */

typedef struct imsd_account {
    bool drop; /* started as root: become uid/gid */
    uid_t uid;
    gid_t gid;
    char name[64];
} imsd_account;

typedef struct imsd_bound {
    int fd;                   /* listening, non-blocking, close-on-exec */
    uint8_t kind;             /* ims_listen_kind */
    char name[IMSD_ADDR_MAX]; /* the address bound, "127.0.0.1:2525", "[::1]:2525" */
} imsd_bound;

/* imsd_account_resolve - as root, settings->account (a name or a uid, not root); otherwise
 * the invoking user. Returns IMS_OK or IMS_EV_ACCOUNT (logged). */
int imsd_account_resolve(const ims_settings *s, ims_log *log, imsd_account *a);
/* imsd_listeners_bind - bind and listen on every address of s->listen. On failure none
 * stays open. Returns IMS_OK or IMS_EV_LISTEN_FAILED (logged). */
int imsd_listeners_bind(const ims_settings *s, ims_log *log, imsd_bound *out, size_t *nout);
void imsd_listeners_close(imsd_bound *b, size_t n);
/* imsd_listen_one - one listening socket on l (as imsd_listeners_bind makes them). Returns
 * IMS_OK or IMS_EV_LISTEN_FAILED (logged). */
int imsd_listen_one(const ims_listen *l, ims_log *log, imsd_bound *out);
/* imsd_listeners_text - "a b c" (sep " ") or "a, b, c" into out. */
void imsd_listeners_text(const imsd_bound *b, size_t n, const char *sep, char *out, size_t size);
/* imsd_dirs_prepare - as root: <root>/run, <root>/store and RootDir exist and belong to the
 * account, and so does the pid file. Returns IMS_OK or IMS_EV_INTERNAL (logged). */
int imsd_dirs_prepare(const ims_settings *s, const char *root, const imsd_run *run,
                      const imsd_account *a, ims_log *log);
/* imsd_privs_drop - become the account for good, then chdir("/"). Returns IMS_OK or
 * IMS_EV_ACCOUNT (logged). */
int imsd_privs_drop(const imsd_account *a, ims_log *log);

/* --- control.c: the control socket ($IMS_ROOT/run/control) ------------------------------
 * imsctl's way into the running service: AF_UNIX, mode 0600, root and the service account
 * only (SO_PEERCRED). A client sends one request line (TAB-separated words, LF); the answer is
 * body lines, dot-stuffed, then ".OK" or ".ERR <text>", then the server closes (lib/ims's
 * ims_ctl_* functions are the wire format). Everything runs on the loop and never blocks it. */

#define IMSD_CTL_FILE "control"                  /* under the run directory */
#define IMSD_CTL_REQUEST_MAX IMS_CTL_REQUEST_MAX /* bytes of the request line */
#define IMSD_CTL_CLIENTS_MAX 16                  /* clients at once; more are refused */
#define IMSD_CTL_COMMANDS_MAX 64                 /* commands registered */
#define IMSD_CTL_COMMAND_NAME_MAX 32             /* bytes of a command's name */
#define IMSD_CTL_IDLE_SECONDS 30  /* to send the request; for the output to move on */
#define IMSD_CTL_STREAM_LOW 16384 /* a stream's more() is called below this much output */
#define IMSD_CTL_STREAM_CALLS 64  /* more() calls in one turn of the loop */

typedef struct imsd_control imsd_control;
typedef struct imsd_ctl_req imsd_ctl_req;
/* A handler gets the request's words (argv[0] is the command) and answers through r, now or
 * later (asynchronously, e.g. after a commit): it must call imsd_ctl_end exactly once (or
 * hand r to imsd_ctl_stream). argv lives as long as r. */
typedef void (*imsd_ctl_fn)(void *arg, imsd_ctl_req *r, int argc, char **argv);
/* Streaming: more(arg, r) is called whenever the client's output has room (below a
 * watermark); it writes some rows and returns true when it has written everything (then the
 * framework ends the request with OK), false to be called again. It may instead end the
 * request itself with imsd_ctl_end (an error): its return value is then ignored. */
typedef bool (*imsd_ctl_more_fn)(void *arg, imsd_ctl_req *r);

/* imsd_control_open - the socket at path (a stale one is replaced), listening on base.
 * allowed_uid: the account allowed besides root. Returns 0 or an errno value (logged). */
int imsd_control_open(struct event_base *base, const char *path, uid_t allowed_uid, ims_log *log,
                      imsd_control **out);
/* imsd_control_register - command (at most IMSD_CTL_COMMAND_NAME_MAX - 1 bytes) calls fn with
 * arg. Returns 0, EEXIST, EINVAL or ENOSPC (IMSD_CTL_COMMANDS_MAX). */
int imsd_control_register(imsd_control *c, const char *command, imsd_ctl_fn fn, void *arg);
/* imsd_ctl_write - body bytes (whole lines; stuffed here). */
void imsd_ctl_write(imsd_ctl_req *r, const void *data, size_t len);
/* imsd_ctl_printf - body text. */
void imsd_ctl_printf(imsd_ctl_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* imsd_ctl_stream - from now on the framework owns r and calls more until it is done; when
 * the client goes away first, cancel(arg) (may be NULL) is called instead and r is freed, from
 * within this call when it is already gone. */
void imsd_ctl_stream(imsd_ctl_req *r, imsd_ctl_more_fn more, void *arg, void (*cancel)(void *arg));
/* imsd_ctl_end - the final line: status 0 is ".OK", else ".ERR error_text" (NULL: "failed").
 * r is freed (once its output is sent): do not use it after. */
void imsd_ctl_end(imsd_ctl_req *r, int status, const char *error_text);
/* imsd_ctl_gone - the client hung up (answering is harmless). */
bool imsd_ctl_gone(const imsd_ctl_req *r);
/* imsd_ctl_uid - the client's uid (SO_PEERCRED). */
uid_t imsd_ctl_uid(const imsd_ctl_req *r);
/* imsd_ctl_who - "root (uid 0)", "ims (uid 998)", for tracking and events. */
const char *imsd_ctl_who(const imsd_ctl_req *r);
/* imsd_control_close - stop listening, remove the socket file, end every client: streams get
 * their cancel; a request still with its handler is detached (it stays valid, answers go
 * nowhere) until its imsd_ctl_end frees it. c may be NULL. */
void imsd_control_close(imsd_control *c);

typedef struct imsd_server imsd_server;

/* --- stats.c: counters, their history, the console's statistics, `stats`, /metrics ------ */

#define IMSD_STATS_HISTORY 300     /* one-second samples kept (rates, the stats-history command) */
#define IMSD_SESSION_STATES_MAX 16 /* distinct inbound session states counted */

/* imsd_stats - the counters the loop's thread keeps itself (conn.c, session.c, outbound.c);
 * the libraries' (spool, outbound queue, pickups) are read when a snapshot is made. */
typedef struct imsd_stats {
    struct timespec started; /* CLOCK_MONOTONIC */
    unsigned conn_in_current;
    uint64_t conn_in_total;
    uint64_t conn_in_rejected;
    uint64_t client_refused; /* connections, messages, recipients over a per-client limit */
    unsigned stress;         /* 1 under stress */
    uint64_t stress_closed;  /* idle sessions closed under stress for a newcomer */
    uint64_t msg_in;         /* messages received over SMTP (committed) */
    uint64_t bytes_in;       /* their bytes */
    uint64_t ndr_in;         /* of them: reports (from the null sender <>) */
    uint64_t tls_in_ok, tls_in_failed; /* inbound handshakes completed, failed */
    unsigned conn_out_current;         /* open or opening */
    uint64_t conn_out_total;           /* connections opened to remote servers */
    uint64_t conn_out_failed; /* of them: never got past the greeting (refused, timed out) */
    uint64_t msg_out;         /* messages a remote server took for at least one recipient */
    uint64_t bytes_out;       /* their bytes */
    uint64_t tls_out_ok, tls_out_failed;
    uint64_t dns_failures; /* lookups of a destination that failed (transient or permanent) */
    struct imsd_stats_ring *ring; /* the history; NULL until imsd_stats_start */
} imsd_stats;

/* imsd_snap - everything at one moment, each a plain number (stats.c's table names them). */
typedef struct imsd_snap {
    uint64_t uptime;
    imsd_stats own; /* the loop's counters */
    ims_spool_stats spool;
    ims_outq_stats outq;
    ims_pickup_stats mts_out; /* MTS-OUT's pickup */
    ims_pickup_stats pickup;  /* RootDir/Pickup's */
    uint64_t mts_out_queued;  /* mts_out.entered - mts_out.left */
    size_t nstates;
    const char *state_name[IMSD_SESSION_STATES_MAX];
    uint64_t state_count[IMSD_SESSION_STATES_MAX];
} imsd_snap;

void imsd_stats_init(imsd_stats *st);
/* imsd_stats_start - sample the counters every second into the history (on base); answer
 * the control commands "stats" and "stats-history" on ctl (NULL: none). Returns 0 or ENOMEM. */
int imsd_stats_start(imsd_stats *st, imsd_server *srv, imsd_control *ctl);
/* imsd_stats_stop - the sampling's timer and history go. */
void imsd_stats_stop(imsd_stats *st);
/* imsd_stats_snapshot - every counter now. */
void imsd_stats_snapshot(imsd_server *srv, imsd_snap *out);
/* imsd_stats_print - the console's statistics block, a fixed layout. */
void imsd_stats_print(imsd_server *srv, FILE *f);
/* imsd_stats_metrics - the Prometheus exposition of every counter into out. Returns 0 or
 * ENOMEM. */
int imsd_stats_metrics(imsd_server *srv, buf *out);
/* imsd_stats_history_json - the history as {"keys":[..],"samples":[[unix s, monotonic ms,
 * value per key..],..]}, oldest first, only the samples taken after unix time since.
 * Returns 0 or ENOMEM. */
int imsd_stats_history_json(const imsd_stats *st, int64_t since, buf *out);
typedef struct imsd_http imsd_http;
/* imsd_stats_serve - route GET /metrics on h to imsd_stats_metrics. Returns 0 or an errno. */
int imsd_stats_serve(imsd_http *h, imsd_server *srv);

/* --- http.c: the HTTP endpoint (MetricsAddress): /metrics, and what else is routed ------- */

#define IMSD_HTTP_HEADERS_MAX 8192   /* bytes of a request's headers */
#define IMSD_HTTP_BODY_MAX 4096      /* bytes of a request's body (GET has none) */
#define IMSD_HTTP_TIMEOUT 10         /* seconds to send a request, or to take the answer */
#define IMSD_HTTP_CONNECTIONS_MAX 16 /* connections served at once; requests on more: 503 */
#define IMSD_HTTP_ROUTES_MAX 16
#define IMSD_HTTP_PATH_MAX 128

typedef struct imsd_http imsd_http;
struct evhttp_request;
/* A route's handler answers req (evhttp_send_reply or evhttp_send_error) before returning,
 * or defers the answer (imsd_http_defer). */
typedef void (*imsd_http_fn)(void *arg, struct evhttp_request *req);
/* A deferred request's connection closed (or the endpoint is going): req is gone, forget it. */
typedef void (*imsd_http_cancel_fn)(void *arg);

/* imsd_http_bind - as root, before the privilege drop: the MetricsAddress socket into out
 * (fd -1 when MetricsAddress is empty); an address that is not loopback gets a warning event.
 * Returns IMS_OK or IMS_EV_LISTEN_FAILED (logged: a start failure). */
int imsd_http_bind(const ims_settings *s, ims_log *log, imsd_bound *out);
/* imsd_http_open - serve HTTP on the bound socket (taken over, closed on failure too) on
 * base: GET and HEAD (POST on imsd_http_route_post's routes), bounded by the IMSD_HTTP_*
 * limits. Returns 0 or ENOMEM. */
int imsd_http_open(struct event_base *base, imsd_bound *bound, ims_log *log, imsd_http **out);
/* imsd_http_route - GET path (exactly, without the query) is answered by fn. Returns 0,
 * EEXIST, EINVAL or ENOSPC. */
int imsd_http_route(imsd_http *h, const char *path, imsd_http_fn fn, void *arg);
/* imsd_http_route_post - POST path is answered by fn (GET or HEAD there: 405). Returns as
 * imsd_http_route. */
int imsd_http_route_post(imsd_http *h, const char *path, imsd_http_fn fn, void *arg);
/* imsd_http_defer - req (in its handler) is answered later: call imsd_http_undefer, then
 * answer it, once the work is done; if its connection closes first, or the endpoint is freed,
 * cancel(arg) is called instead and req must not be used. A request whose client went away
 * may still be answered (evhttp then just frees it). Returns 0 or ENOSPC. */
int imsd_http_defer(imsd_http *h, struct evhttp_request *req, imsd_http_cancel_fn cancel,
                    void *arg);
void imsd_http_undefer(imsd_http *h, struct evhttp_request *req);
/* imsd_http_free - close the socket and every connection (deferred requests: cancelled). h may
 * be NULL. */
void imsd_http_free(imsd_http *h);

/* --- queues.c: the four queues for imsctl and the admin page ---------------------------- */

#define IMSD_QUEUES_BATCH 64     /* messages one step of a walk writes (the loop goes on) */
#define IMSD_QUEUES_ACT_MAX 4096 /* queue ids one action request may name */

typedef struct imsd_queues imsd_queues;

/* What a listing shows: every criterion given must hold (NULL or 0: any). */
typedef struct imsd_queue_filter {
    unsigned queues;    /* bits 1 << ims_queue_kind; 0: all four */
    const char *id;     /* the queue id (any case) */
    const char *sender; /* the sender's address, any case; "<>" is the null sender */
    const char *rcpt;   /* a recipient's address, any case */
    const char *domain; /* a recipient's domain, any case */
    uint64_t min_age;   /* seconds since it arrived, at least */
} imsd_queue_filter;

/* imsd_queues_start - the queues of srv's mail (imsd_mail_open first) and the gateway
 * mailbox's folders, with the control commands (none when ctl is NULL) `queues [FILTER...]
 * [format=tsv]` (JSON lines, or queues.c's tab-separated lines for imsctl) and `queue-action
 * ACTION ID...` (a line "id<TAB>ok|error<TAB>text" per id). *out: imsd_queues_free.
 * Returns 0 or ENOMEM. */
int imsd_queues_start(imsd_server *srv, imsd_control *ctl, const char *gateway, imsd_queues **out);
void imsd_queues_free(imsd_queues *qs);

/* imsd_queue_filter_parse - a filter from words "queue=out", "id=X", "sender=A",
 * "rcpt=A", "domain=D", "age=SECONDS" (queue= repeatable). The strings point into words.
 * Returns 0, or EINVAL with the bad word in *bad. */
int imsd_queue_filter_parse(imsd_queue_filter *f, int n, char **words, const char **bad);

/* A walk over the four queues (In, MTS-IN, MTS-OUT, Out, in that order): each step appends
 * the next messages that match as JSON lines, one object per message:
 *   {"queue":"Out","id":"...","sender":"...","arrival":<unix s>,"size":<bytes>,"held":false,
 *    "recipients":[{"address":"...","route":"dns","destination":"...","state":"waiting",
 *    "attempts":1,"next_try":<unix s or 0>,"remote":"[127.0.0.2]","reply":"451 4.3.0 ..."}]}
 * (state: waiting, sending, held, done, failed; remote and reply "" when nothing was tried).
 * The filter's strings must outlive the walk. Safe against messages leaving meanwhile. */
typedef struct imsd_queue_walk imsd_queue_walk;
int imsd_queue_walk_new(imsd_queues *qs, const imsd_queue_filter *f, imsd_queue_walk **out);
/* imsd_queue_walk_step - at most max messages into out (JSON lines). Returns 1 (more may
 * follow), 0 (the walk is over) or ENOMEM. */
int imsd_queue_walk_step(imsd_queue_walk *w, size_t max, buf *out);
void imsd_queue_walk_free(imsd_queue_walk *w);

/* imsd_queue_act - act on message id (Out: every action; MTS-OUT: delete only, before the
 * conversion took it) for actor (imsd_ctl_who's text). done(arg, id, err, text) follows on
 * the loop once the change is durable, with a line for the administrator in text ("held: 1
 * recipient", "deleted: 0 recipients; 1 was being sent and was delivered", or why not: "not
 * in a queue", "only messages in Out can be held"). Returns 0 (done follows) or ENOMEM. */
typedef void (*imsd_queue_act_fn)(void *arg, const char *id, int err, const char *text);
int imsd_queue_act(imsd_queues *qs, ims_queue_action act, const char *id, const char *actor,
                   imsd_queue_act_fn done, void *arg);
/* imsd_queue_action_parse - "hold", "release", "retry", "delete", "delete-ndr": 0 or EINVAL. */
int imsd_queue_action_parse(const char *word, ims_queue_action *act);

/* --- admin.c: the administrator's page (on the HTTP endpoint) --------------------------
 * GET / (the page), /admin.css, /admin.js, /api/state, /api/queues, /api/stats, /api/events;
 * POST /api/queue-action. Loopback clients only, Host checked; actions need the administrator
 * mailbox's password or the token, a CSRF nonce from the page and our own Origin. */

#define IMSD_ADMIN_TOKEN_FILE "admin.token" /* under the run directory, mode 0600 */
#define IMSD_ADMIN_QUEUE_LIMIT 1000         /* messages /api/queues lists, at most */
#define IMSD_ADMIN_TEXT_MAX 512             /* bytes of the profile's name, the listeners */
#define IMSD_EV_ADMIN_REFUSED 1007 /* a page's action with a wrong password or token (ours) */

/* The page's files (data/admin), embedded by tools/embed_assets.py into build/gen. */
typedef struct imsd_asset {
    const char *name; /* "index.html" */
    const char *type; /* its Content-Type */
    const unsigned char *data;
    size_t len; /* data[len] is a NUL */
} imsd_asset;
extern const imsd_asset imsd_admin_assets[];
extern const size_t imsd_admin_nassets;

typedef struct imsd_admin imsd_admin;
typedef struct imsd_admin_options {
    imsd_http *http;      /* routes added here */
    imsd_server *srv;     /* settings, log, counters, mail (the administrator's hash) */
    imsd_sink *sink;      /* the last events */
    imsd_queues *queues;  /* NULL: the queue views and actions answer 503 */
    const char *listener; /* the endpoint's address ("127.0.0.1:9125"): Host's check */
    const char *run_dir;  /* the token file goes here */
    const char *profile, *listeners, *account; /* the service's state, as the status file */
    time_t started;
} imsd_admin_options;

/* imsd_admin_start - the routes, a new token file (its failure is an event, not an error:
 * the password still works) and the password checks' threads. Strings are copied. Returns 0
 * or an errno value. */
int imsd_admin_start(const imsd_admin_options *o, imsd_admin **out);
/* imsd_admin_free - after imsd_http_free (which cancels the answers still owed); removes the
 * token file. a may be NULL. */
void imsd_admin_free(imsd_admin *a);

/* --- tls.c: the server's certificate --------------------------------------------------- */

#define IMSD_TLS_LOOK_SECONDS 5 /* how often the certificate and key files are looked at */

typedef struct imsd_tls imsd_tls;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/* imsd_tls_open - read TlsCertificateFile and TlsKeyFile (as root, before the drop). *out is
 * NULL when no certificate is configured; otherwise a handle, whose context may be NULL (the
 * files are unusable: event IMS_EV_TLS_SERVER logged; a later change is read again). Returns
 * 0 or ENOMEM. imsd_tls_free frees it. */
int imsd_tls_open(const ims_settings *s, ims_log *log, imsd_tls **out);
/* imsd_tls_watch - look at the files every `seconds` on base and read them again when they
 * change (event IMS_EV_TLS_RELOADED; a bad new pair keeps the old one, event IMS_EV_TLS_SERVER).
 * t may be NULL (nothing to do). Returns 0 or ENOMEM. */
int imsd_tls_watch(imsd_tls *t, struct event_base *base, unsigned seconds);
/* imsd_tls_ctx - the context for a new TLS session, NULL when there is none (t may be NULL).
 * Not owned: SSL_new takes its own reference. */
SSL_CTX *imsd_tls_ctx(const imsd_tls *t);
void imsd_tls_free(imsd_tls *t);
/* imsd_tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384" for an established session. */
void imsd_tls_describe(SSL *ssl, char *out, size_t size);

/* --- auth.c: password checks off the loop ---------------------------------------------- */

#define IMSD_AUTH_THREADS 2    /* checks at once (each about 30 ms of CPU and 16 MiB) */
#define IMSD_AUTH_QUEUE_MAX 64 /* checks waiting or running; more are answered 454 */

typedef struct imsd_auth imsd_auth;
typedef enum imsd_auth_result {
    IMSD_AUTH_MATCH,
    IMSD_AUTH_NO_MATCH,
    IMSD_AUTH_CANCELLED, /* the service is stopping: no answer was made */
} imsd_auth_result;
/* done - called on the loop's thread (or from imsd_auth_free), once per check. */
typedef void (*imsd_auth_done_fn)(void *arg, imsd_auth_result r);

/* imsd_auth_new - the worker threads, answering on base. Returns 0 or an errno value. */
int imsd_auth_new(struct event_base *base, imsd_auth **out);
/* imsd_auth_check - check the len bytes of pass against hash (from dir_auth_lookup; NULL for
 * an unknown account: the same work against a dummy, and no match). Both are copied (and
 * wiped after use). Returns 0 (done follows), EAGAIN (IMSD_AUTH_QUEUE_MAX checks wait:
 * answer 454), EINVAL or ENOMEM. */
int imsd_auth_check(imsd_auth *a, const char *hash, const char *pass, size_t len,
                    imsd_auth_done_fn done, void *arg);
/* imsd_auth_free - finish the checks running, cancel the rest (done gets
 * IMSD_AUTH_CANCELLED), stop the threads. */
void imsd_auth_free(imsd_auth *a);

/* --- diagwatch.c: the Diagnostics levels and the logging values, live ----------------- */

typedef struct imsd_diag imsd_diag;
typedef struct imsd_diag_options {
    struct event_base *base;
    reg_ctx *reg;               /* the service's context, used only under the router's lock */
    struct imsd_server *server; /* its router (after imsd_mail_open) and protocol log */
    ims_log *log;               /* its levels follow the Diagnostics key */
    ims_settings *settings;  /* levels, DisplayErrsOnConsole, ConsoleStatFrequency kept current */
    imsd_sink *sink;         /* console mode follows DisplayErrsOnConsole */
    bool console_arg;        /* -console: console mode whatever the registry says */
    const imsd_stats *stats; /* printed every ConsoleStatFrequency seconds in console mode */
} imsd_diag_options;

/* imsd_diag_start - console mode as the settings say, then follow the service key: each
 * change of its Diagnostics levels or of Parameters' DisplayErrsOnConsole and
 * ConsoleStatFrequency is applied on base's loop (event IMS_EV_DIAG_CHANGED says what
 * changed; an invalid value keeps the one in use, event IMS_EV_SETTING_INVALID). o is copied;
 * what it points to must outlive the handle. Returns 0 or ENOMEM. */
int imsd_diag_start(const imsd_diag_options *o, imsd_diag **out);
/* imsd_diag_free - stop following (before imsd_mail_close: the router's lock is used). */
void imsd_diag_free(imsd_diag *g);

/* --- conn.c: inbound connections ------------------------------------------------------ */

typedef struct imsd_conn imsd_conn;

typedef struct imsd_server {
    struct event_base *base;
    const ims_settings *settings;
    ims_log *log;
    imsd_stats *stats;
    struct evconnlistener *listeners[IMS_MAX_LISTENERS];
    uint8_t kinds[IMS_MAX_LISTENERS]; /* each listener's ims_listen_kind */
    size_t nlisteners;
    imsd_tls *tls;     /* the certificate (NULL: none configured); not owned */
    imsd_conn *conns;  /* every open connection */
    unsigned nclosing; /* of them, closing (their last words being sent, or lingering) */
    int spare_fd;      /* /dev/null, given up to accept-and-refuse at EMFILE; -1: none */
    int fd_cap;        /* a connection on this descriptor or above is refused (keeps
                        * IMSD_FD_RESERVE for the sessions' own files); 0: no cap */
    uint64_t fd_logged, fd_unlogged; /* the one-a-minute event of such refusals */
    bool stopping;
    struct event *drain;    /* the shutdown bound, armed at stop */
    struct event *pause;    /* resumes accepting after accept() failed; made when it first does */
    struct imsd_mail *mail; /* the SMTP server's shared state (session.c) */
} imsd_server;

/* imsd_server_init - listen on the bound sockets (the server owns them from now on, also
 * on failure). Returns 0 or an errno value. */
int imsd_server_init(imsd_server *srv, struct event_base *base, const ims_settings *s, ims_log *log,
                     imsd_stats *st, imsd_bound *bound, size_t nbound);
/* imsd_server_states - the inbound sessions by state (imsd_session_state) into out. */
void imsd_server_states(imsd_server *srv, imsd_snap *out);
/* imsd_server_stop - stop accepting (close the listeners); let the sessions in flight finish
 * within timeout seconds, then close them; break the loop when none is left. A second call
 * closes them at once. */
void imsd_server_stop(imsd_server *srv, unsigned timeout);
/* imsd_server_free - close everything left. */
void imsd_server_free(imsd_server *srv);
/* imsd_server_in_use - connections open and not closing: what MaxInboundConnections bounds
 * (one saying its last words holds a descriptor for a few seconds, not a session). */
unsigned imsd_server_in_use(const imsd_server *srv);
/* imsd_server_conns, imsd_conn_next - every open connection, newest first (NULL at the end).
 * imsd_conn_closing - c is saying its last words or lingering. */
imsd_conn *imsd_server_conns(const imsd_server *srv);
imsd_conn *imsd_conn_next(const imsd_conn *c);
bool imsd_conn_closing(const imsd_conn *c);

/* What a session may do with its connection. */
imsd_server *imsd_conn_server(const imsd_conn *c);
const char *imsd_conn_peer(const imsd_conn *c);
/* imsd_addr_text - "192.0.2.1:25" or "[2001:db8::1]:25" ("unknown" when sa is NULL or not
 * numeric), at most size bytes with the NUL (IMSD_ADDR_MAX is enough). */
void imsd_addr_text(const struct sockaddr *sa, int salen, char *out, size_t size);
/* imsd_conn_fd - the socket (for getpeername/getsockname). */
int imsd_conn_fd(const imsd_conn *c);
/* imsd_conn_input - the bytes received and not yet consumed. */
struct evbuffer *imsd_conn_input(imsd_conn *c);
/* imsd_conn_reading - stop (while a message is being made durable) or resume reading. */
void imsd_conn_reading(imsd_conn *c, bool on);
/* imsd_conn_write - queue bytes for the peer. Returns 0 or -1 (the connection is then
 * broken: the session should imsd_conn_close it). */
int imsd_conn_write(imsd_conn *c, const void *data, size_t len);
/* imsd_conn_output_len - bytes queued for the peer and not yet sent. */
size_t imsd_conn_output_len(imsd_conn *c);
/* imsd_conn_close_when_sent - close once everything queued has been sent (then the write
 * side is shut and the peer's close awaited, within the deadline). */
void imsd_conn_close_when_sent(imsd_conn *c);
/* imsd_conn_close - close now; c is freed (imsd_session_closed is called first). */
void imsd_conn_close(imsd_conn *c);
/* imsd_conn_start_tls - the 220 to STARTTLS is queued: once it is sent, throw away what the
 * client sent meanwhile and answer its handshake on the same socket; imsd_session_tls_ready
 * follows, or the connection closes. Nothing is read until then. Never frees c. Returns 0,
 * or -1 (no certificate now, or TLS already on: the caller closes). */
int imsd_conn_start_tls(imsd_conn *c);
/* imsd_conn_tls_text - "TLSv1.3 TLS_AES_256_GCM_SHA384", or "" before TLS. */
void imsd_conn_tls_text(const imsd_conn *c, char *out, size_t size);
/* imsd_conn_kind - the ims_listen_kind of the listener that accepted c. */
unsigned imsd_conn_kind(const imsd_conn *c);
/* imsd_conn_set_deadline - seconds from now, the session's imsd_session_timeout is called
 * (once the connection is closing: it is closed, whatever it is doing). */
int imsd_conn_set_deadline(imsd_conn *c, unsigned seconds);
/* The session's own state (issue 6: the SMTP session). */
void imsd_conn_set_session(imsd_conn *c, void *session);
void *imsd_conn_session(const imsd_conn *c);

/* --- outbound.c: the outbound side (the queue, DNS and SMTP client connections) -------- */

typedef struct imsd_outbound imsd_outbound;

typedef struct imsd_outbound_options {
    ims_router *router;     /* reports' recipients (the mail state's) */
    ims_tracking *tracking; /* NULL: none */
    const char *fqdn;       /* our name: EHLO, reports */
    const char *bad_dir;    /* the gateway's Bad folder */
    const char *store_dir;  /* <IMS_ROOT>/store */
    int64_t time_offset;    /* IMS_TIME_OFFSET: seconds the queue adds to the clock's ages */
    imsd_stats *stats;      /* the outbound counters go here; required */
} imsd_outbound_options;

/* imsd_outbound_new - open the outbound queue (its recovery starts in its thread) and the
 * resolver on base. NULL on failure (logged). s must outlive it. */
imsd_outbound *imsd_outbound_new(struct event_base *base, const ims_settings *s, ims_log *log,
                                 const imsd_outbound_options *o);
/* imsd_outbound_set_protolog - outbound connections are logged in pl (NULL: not), numbered
 * from *conn_ids with the inbound ones (both must outlive the connections). */
void imsd_outbound_set_protolog(imsd_outbound *ob, ims_protolog *pl, uint64_t *conn_ids);
/* imsd_outbound_set_spool - reports go to sp (opened after the queue: its handover needs it). */
void imsd_outbound_set_spool(imsd_outbound *ob, ims_spool *sp);
/* imsd_outbound_handover - ims_spool_options' handover (thread-safe). */
void imsd_outbound_handover(void *ob, const char *qid);
/* imsd_outbound_receipt - ims_spool_options' receipt (thread-safe). */
void imsd_outbound_receipt(void *ob, const char *sender, const void *data, size_t len);
/* imsd_outbound_stop - end every connection (what was in flight is deferred and recorded) and
 * stop the queue's thread; then close the spool, then imsd_outbound_free. */
void imsd_outbound_stop(imsd_outbound *ob);
/* imsd_outbound_queue - its queue (ob may be NULL: NULL). */
ims_outq *imsd_outbound_queue(imsd_outbound *ob);
/* imsd_outbound_queue_stats - the outbound queue's counters. */
void imsd_outbound_queue_stats(const imsd_outbound *ob, ims_outq_stats *st);
void imsd_outbound_free(imsd_outbound *ob);

/* --- session.c: what happens on a connection (issue 6: the SMTP server) ---------------- */

/* imsd_mail_open - what every SMTP session shares: the directory, the spool (with delivery
 * into the gateway's MTS-IN and the recipients' mailboxes), the relay policy, the SMTP
 * settings; their descriptors join the server's event loop. Returns IMS_OK or the event ID
 * (logged). imsd_mail_close undoes it (pending commits finish first). */
int imsd_mail_open(imsd_server *srv, reg_ctx *reg, const char *gateway);
void imsd_mail_close(imsd_server *srv);
/* imsd_mail_router - the router every source of mail shares (NULL before imsd_mail_open). */
ims_router *imsd_mail_router(const imsd_server *srv);
/* imsd_mail_protolog_level - the SMTP protocol log's level for connections from now on. */
void imsd_mail_protolog_level(imsd_server *srv, unsigned level);
/* imsd_mail_outq - the outbound queue (NULL before imsd_mail_open or when it did not open). */
ims_outq *imsd_mail_outq(imsd_server *srv);
/* imsd_mail_stats - the spool's, the outbound queue's and the pickups' counters into out
 * (zeros for what is not open). */
void imsd_mail_stats(imsd_server *srv, imsd_snap *out);
/* imsd_mail_admin_hash - the password hash of the administrator's mailbox
 * (AdministratorMailbox) into hash (hashsize bytes; "" unless 0 is returned), as
 * dir_auth_lookup: 0, ENOENT (no such mailbox, or no password), or another errno value. */
int imsd_mail_admin_hash(imsd_server *srv, char *hash, size_t hashsize);
/* imsd_session_state - what c's session is doing: lib/smtp's state name ("greeted", "data",
 * "committing", ...), or "tls-handshake" while TLS is being set up. A static string. */
const char *imsd_session_state(imsd_conn *c);
/* imsd_session_open - a connection was accepted; the session owns what happens on it. */
void imsd_session_open(imsd_conn *c);
/* imsd_session_input - bytes arrived in `in`. */
void imsd_session_input(imsd_conn *c, struct evbuffer *in);
/* imsd_session_stopping - the service is stopping: finish soon (the deadline is
 * ShutdownTimeout). */
void imsd_session_stopping(imsd_conn *c);
/* imsd_session_drained - everything queued for the peer was sent (a session that stopped
 * reading because the client did not take its replies may go on). */
void imsd_session_drained(imsd_conn *c);
/* imsd_session_timeout - the deadline passed: say so and close. */
void imsd_session_timeout(imsd_conn *c);
/* imsd_session_tls_ready - the TLS handshake finished (after STARTTLS, or at the start of a
 * submissions connection). */
void imsd_session_tls_ready(imsd_conn *c);
/* imsd_session_refuse_fd - a best-effort "421 4.3.2 <host> Too many connections" on a socket
 * that gets no connection (out of descriptors); the caller closes fd. */
void imsd_session_refuse_fd(imsd_server *srv, int fd);
/* imsd_session_closed - the connection is going away: free the session's state. */
void imsd_session_closed(imsd_conn *c);

#endif
