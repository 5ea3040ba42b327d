/* session.c - the SMTP server's side of a connection: bytes from libevent into lib/smtp's
 * session, recipients looked up in the directory, DATA streamed into the spool, the 250 sent
 * only once the spool says the message is durable (group commit), the limits and timeouts of
 * the Parameters key, and the SMTP protocol log. */
#include "imsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "ims/ims.h"
#include "smtp/smtp.h"
#include "store/store.h"

#define SESSION_CLOSE_GRACE 10 /* seconds a timed-out client gets to take the 421 */
/* Replies queued for a client that does not read them, beyond which its commands are not
 * read either (RFC 2920 pipelining is no licence to make us buffer without end). */
#define SESSION_OUTPUT_MAX 65536
/* Free space on RootDir's file system is looked at when a transaction starts, at most this
 * often (the original looked every 15 s whether mail came or not). */
#define DISK_CHECK_MS 1000
/* Under stress a newcomer at MaxInboundConnections closes the session that has been silent
 * for longest, if one has been silent at least this long (a session between two commands of
 * a quick client is not idle). */
#define STRESS_IDLE_MIN_MS 1000
/* Failed AUTHs remembered per client address: after AUTH_SLOW_AFTER failures each further
 * attempt from that address waits 1, 2, 4... seconds (at most 1 << AUTH_DELAY_MAX_SHIFT) before it
 * is checked; an address without a failure for AUTH_FORGET seconds starts afresh. The table is
 * bounded: a full one forgets its oldest entry. */
#define AUTH_TABLE_SIZE 256
#define AUTH_SLOW_AFTER 3
#define AUTH_DELAY_MAX_SHIFT 4 /* the longest wait: 16 s */
#define AUTH_FORGET 900

typedef struct auth_failures {
    char ip[64]; /* "" : a free entry */
    unsigned count;
    time_t last;
} auth_failures;

struct imsd_mail {
    imsd_server *srv;
    directory *dir;
    ims_router *router; /* every recipient's route */
    ims_spool *spool;
    struct event *spool_ev;
    imsd_outbound *outbound;
    ims_tracking *out_tracking;
    ims_pickup *pickup; /* MTS-OUT */
    struct event *pickup_ev;
    ims_pickup *dropdir; /* RootDir/Pickup; NULL: off (event 4166) */
    struct event *dropdir_ev;
    smtp_relay_policy relay;
    smtp_config cfg[IMS_LISTEN_SUBMISSIONS + 1]; /* one per listener kind */
    imsd_auth *auth;                             /* password checks; NULL: AUTH is off */
    auth_failures failures[AUTH_TABLE_SIZE];
    ims_protolog *plog; /* the protocol log (at level None: off) */
    uint64_t next_conn_id;
    ims_anvil *anvil; /* per-client counters (NULL: out of memory at start: no limits) */
    ims_anvil_limits limits;
    bool stressed;          /* StressThreshold of MaxInboundConnections in use */
    uint64_t stress_since;  /* now_ms() when it began */
    uint64_t stress_cut;    /* idle sessions closed in this stress, for the event at its end */
    uint64_t busy_logged;   /* now_ms() of the last event 2020 (one a minute) */
    uint64_t busy_unlogged; /* refusals since then, said in the next one */
    bool flush_mode;        /* free space under DiskSpaceLowWaterMark: no new mail */
    uint64_t disk_checked;  /* CLOCK_MONOTONIC ms of the last look; 0: never */
    char fqdn[256];
    char store_dir[PATH_MAX];
};

/* An AUTH exchange's state, made at a session's first AUTH: most sessions never authenticate,
 * and these 1.6 KB would otherwise be in every idle connection (issue 14). */
typedef struct session_auth {
    struct event *delay;               /* a slowed-down AUTH waits for it */
    char user[SMTP_AUTH_USER_MAX + 1]; /* what the client gave, for the event */
    char alias[DIR_MAX_ALIAS + 1];     /* the account it named ("" : none) */
    char hash[DIR_MAX_HASH + 1];       /* its hash while the check waits */
    char pass[SMTP_AUTH_PASS_MAX + 1]; /* the password while a delay runs; wiped */
    size_t pass_len;
} session_auth;

/* One connection's SMTP state. */
typedef struct mail_session {
    imsd_conn *c;
    imsd_server *srv;
    smtp_session *s;
    ims_spool_msg *msg;
    bool committing;   /* a commit is pending: its callback must find us, or know we left */
    bool throttled;    /* reading stopped until the client takes the replies queued for it */
    bool gone;         /* the connection closed while committing or authenticating */
    bool authing;      /* a password check is pending: its callback must find us, or know we left */
    bool tls_asked;    /* STARTTLS was answered 220: the switch is under way */
    bool auth_waiting; /* an AUTH from a slowed-down address waits for auth->delay */
    session_auth *auth; /* made at the first AUTH, freed with the session */
    char client_ip[64];
    smtp_ip client;        /* the same, typed (for the per-client limits) */
    ims_anvil_client *ac;  /* its per-client counters (NULL: not limited) */
    uint64_t started;      /* now_ms() at the connection, for SessionTimeout */
    uint64_t data_started; /* ... at the 354, for DataPhaseTimeout; 0 outside DATA */
    uint64_t last_input;   /* ... when the client last sent something */
    uint64_t id; /* the connection's number: in its events and its protocol log records, the
                  * one id of a transaction before DATA gives it a queue id */
    ims_protolog_conn *plc; /* this connection's protocol log, or NULL */
    uint64_t msg_bytes;     /* the message being committed: its size, for the counters */
    bool msg_null_sender;   /* ... and whether it is a report (MAIL FROM:<>) */
} mail_session;

static void session_free(mail_session *ms)
{
    if (ms->auth) {
        if (ms->auth->delay)
            event_free(ms->auth->delay);
        smtp_wipe(ms->auth, sizeof *ms->auth);
        free(ms->auth);
    }
    free(ms);
}

/* flush - send what the session has to say; close when it is done. */
static void flush(mail_session *ms)
{
    size_t len;
    const char *out = smtp_session_output(ms->s, &len);
    if (out && len) {
        if (imsd_conn_write(ms->c, out, len)) {
            imsd_conn_close(ms->c);
            return;
        }
        smtp_session_output_drain(ms->s, len);
    }
    if (smtp_session_want_close(ms->s)) {
        imsd_conn_close_when_sent(ms->c);
        return;
    }
    if (smtp_session_want_tls(ms->s) && !ms->tls_asked) {
        ms->tls_asked = true;
        if (imsd_conn_start_tls(ms->c)) /* the certificate went away since EHLO */
            imsd_conn_close_when_sent(ms->c);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* left_s - seconds (rounded up) from now until `seconds` after since; 0 when past. */
static unsigned left_s(uint64_t since, uint32_t seconds, uint64_t now)
{
    uint64_t end = since + (uint64_t)seconds * 1000;
    return end > now ? (unsigned)((end - now + 999) / 1000) : 0;
}

/* arm_deadline - the client has this long to send its next bytes: RFC 5321's server timeout
 * for a command, the data timeout inside a message; StressTimeout when that is shorter and
 * the service is under stress; never beyond the session's SessionTimeout or the message's
 * DataPhaseTimeout (a client sending one byte just in time each time is still cut off). */
static void arm_deadline(mail_session *ms)
{
    const ims_settings *st = ms->srv->settings;
    bool data = smtp_session_reading_data(ms->s);
    unsigned t = data ? st->data_timeout : st->command_timeout;
    if (ms->srv->mail->stressed && st->stress_timeout < t)
        t = st->stress_timeout;
    uint64_t now = now_ms();
    if (!data) {
        ms->data_started = 0;
    } else if (st->data_phase_timeout) {
        if (!ms->data_started)
            ms->data_started = now;
        unsigned left = left_s(ms->data_started, st->data_phase_timeout, now);
        if (left < t)
            t = left;
    }
    if (st->session_timeout) {
        unsigned left = left_s(ms->started, st->session_timeout, now);
        if (left < t)
            t = left;
    }
    imsd_conn_set_deadline(ms->c, t);
}

/* feed - give the session what the client sent, as much as it takes now. */
static void feed(mail_session *ms)
{
    struct evbuffer *in = imsd_conn_input(ms->c);
    for (int round = 0; round < 64; round++) {
        size_t n = evbuffer_get_length(in);
        if (n == 0 || smtp_session_want_close(ms->s))
            break;
        if (imsd_conn_output_len(ms->c) >= SESSION_OUTPUT_MAX) {
            ms->throttled = true; /* imsd_session_drained resumes */
            imsd_conn_reading(ms->c, false);
            return;
        }
        size_t chunk = n < 65536 ? n : 65536;
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)chunk);
        size_t used = 0;
        if (!p || smtp_session_input(ms->s, p, chunk, &used)) {
            imsd_conn_close(ms->c);
            return;
        }
        evbuffer_drain(in, used);
        flush(ms);
        if (smtp_session_committing(ms->s)) {
            imsd_conn_reading(ms->c, false);
            return;
        }
        if (used == 0 && !smtp_session_want_close(ms->s))
            break;
    }
    arm_deadline(ms);
}

/* --- flush mode (KB Q189587) ------------------------------------------------------------- */

/* disk_check - look at the free space of RootDir's file system (at most every DISK_CHECK_MS)
 * and enter or leave flush mode, logging the change. Returns whether mail is refused. */
static bool disk_check(struct imsd_mail *m)
{
    const ims_settings *s = m->srv->settings;
    uint64_t now = now_ms();
    if (!s->disk_space_low_water_mark)
        return false;
    if (m->disk_checked && now - m->disk_checked < DISK_CHECK_MS)
        return m->flush_mode;
    m->disk_checked = now ? now : 1;
    struct statvfs vfs;
    if (statvfs(s->root_dir, &vfs))
        return m->flush_mode; /* cannot tell: keep the state we are in */
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    bool low = avail < s->disk_space_low_water_mark;
    if (low != m->flush_mode) {
        m->flush_mode = low;
        if (low)
            ims_log_event(m->srv->log, IMS_EV_FLUSH_ENTER, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                          IMS_LEVEL_NONE,
                          "Entering flush mode: %llu bytes are free for %s, under "
                          "DiskSpaceLowWaterMark (%u); new messages are refused with 452 "
                          "until space is freed",
                          (unsigned long long)avail, s->root_dir, s->disk_space_low_water_mark);
        else
            ims_log_event(m->srv->log, IMS_EV_FLUSH_LEAVE, IMS_CAT_SMTP_INTERFACE, IMS_SEV_INFO,
                          IMS_LEVEL_NONE,
                          "Leaving flush mode: %llu bytes are free for %s; accepting messages "
                          "again",
                          (unsigned long long)avail, s->root_dir);
    }
    return low;
}

/* --- per-client limits (anvil.c) ------------------------------------------------------- */

static const char *limit_name(ims_anvil_verdict v)
{
    switch (v) {
    case IMS_ANVIL_CONNS:
        return "connections open at once (MaxConnectionsPerClient)";
    case IMS_ANVIL_CONN_RATE:
        return "new connections a minute (MaxConnectionRatePerClient)";
    case IMS_ANVIL_MSG_RATE:
        return "messages a minute (MaxMessageRatePerClient)";
    case IMS_ANVIL_RCPT_RATE:
        return "recipients a minute (MaxRecipientRatePerClient)";
    default:
        return "none";
    }
}

static uint32_t limit_value(const ims_anvil_limits *l, ims_anvil_verdict v)
{
    return v == IMS_ANVIL_CONNS       ? l->conns
           : v == IMS_ANVIL_CONN_RATE ? l->conn_rate
           : v == IMS_ANVIL_MSG_RATE  ? l->msg_rate
                                      : l->rcpt_rate;
}

/* limit_refused - count a refusal by a per-client limit, and log it when it is the client's
 * first in a minute (a client knocking without end makes one event a minute, not one each). */
static void limit_refused(struct imsd_mail *m, const smtp_ip *client, const char *client_text,
                          ims_anvil_verdict v)
{
    m->srv->stats->client_refused++;
    if (!ims_anvil_log_due(m->anvil, client, now_ms()))
        return;
    ims_log_event(m->srv->log, IMS_EV_CLIENT_LIMIT, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                  IMS_LEVEL_NONE, /* at most one a client a minute: always worth a line */
                  "The client %s is over its limit of %u %s: it is refused until its rate falls "
                  "or its sessions end (further refusals of it in the next minute are not logged)",
                  client_text, limit_value(&m->limits, v), limit_name(v));
}

/* --- lib/smtp's callbacks --------------------------------------------------------------- */

static unsigned mail_check(void *arg, const smtp_path *from)
{
    (void)from;
    mail_session *ms = arg;
    struct imsd_mail *m = ms->srv->mail;
    /* Flush mode, or a spool that already failed for want of space and has still no room. */
    if (disk_check(m) || ims_spool_short_of_space(m->spool))
        return 452;
    if (ms->ac && ims_anvil_message(m->anvil, ms->ac, &m->limits, now_ms()) != IMS_ANVIL_OK) {
        limit_refused(m, &ms->client, ms->client_ip, IMS_ANVIL_MSG_RATE);
        return 450;
    }
    return 250;
}

static bool is_local(void *arg, const char *domain)
{
    struct imsd_mail *m = arg;
    return ims_router_is_local(m->router, domain);
}

/* rcpt_check - a local recipient's Maildir is attached to it (lib/smtp keeps it with the
 * recipient for the transaction and hands it back to rcpt_release). */
static unsigned rcpt_check(void *arg, const smtp_path *addr, smtp_addr_class cls, void **data)
{
    (void)cls; /* the router decides local or remote the same way lib/smtp's is_local did */
    mail_session *ms = arg;
    struct imsd_mail *m = ms->srv->mail;
    if (ms->ac && ims_anvil_recipient(m->anvil, ms->ac, &m->limits, now_ms()) != IMS_ANVIL_OK) {
        limit_refused(m, &ms->client, ms->client_ip, IMS_ANVIL_RCPT_RATE);
        return 450;
    }
    ims_route route;
    int e = ims_router_route(m->router, addr->mailbox, &route);
    if (e == ENOENT || e == EINVAL)
        return 550;
    if (e)
        return 451;
    char path[PATH_MAX];
    /* What is attached says where the recipient goes: "/<maildir>", "dns:<domain>" or
     * "smarthost:<host spec>" (data_begin takes it apart). */
    const char *prefix = route.kind == IMS_ROUTE_DNS         ? "dns:"
                         : route.kind == IMS_ROUTE_SMARTHOST ? "smarthost:"
                                                             : "";
    size_t plen = strlen(prefix);
    memcpy(path, prefix, plen);
    if (ims_route_dest(&route, m->store_dir, path + plen, sizeof path - plen))
        return 451;
    if (!(*data = strdup(path)))
        return 451;
    return 250;
}

static void rcpt_release(void *arg, void *data)
{
    (void)arg;
    free(data);
}

static int data_begin(void *arg, const smtp_envelope *env)
{
    mail_session *ms = arg;
    struct imsd_mail *m = ms->srv->mail;
    ims_rcpt *r = calloc(env->nrcpt, sizeof *r);
    char(*notify)[SMTP_NOTIFY_TEXT] = calloc(env->nrcpt, sizeof *notify);
    if (!r || !notify) {
        free(r);
        free(notify);
        return -1;
    }
    /* Every recipient goes into the envelope (each gets its tracking line); the spool
     * delivers one copy per Maildir however many of its addresses were named. The DSN
     * parameters (RFC 3461) go with it: reports and the next hop need them. */
    for (size_t i = 0; i < env->nrcpt; i++) {
        const smtp_rcpt_params *p = &env->rcpt[i].params;
        const char *where = env->rcpt[i].data;
        r[i].address = env->rcpt[i].path.mailbox;
        if (where && !strncmp(where, "dns:", 4)) {
            r[i].route = IMS_ROUTE_DNS;
            r[i].dest = where + 4;
        } else if (where && !strncmp(where, "smarthost:", 10)) {
            r[i].route = IMS_ROUTE_SMARTHOST;
            r[i].dest = where + 10;
        } else {
            r[i].maildir = where;
        }
        r[i].notify = p->notify ? smtp_notify_format(p->notify, notify[i], sizeof notify[i]) : NULL;
        r[i].orcpt = p->orcpt[0] ? p->orcpt : NULL;
        if (!where) {
            /* rcpt_check attaches a destination to every recipient it accepts: one without
             * is a bug, not mail to lose. */
            ims_log_event(ms->srv->log, IMS_EV_INTERNAL, IMS_CAT_SMTP_INTERFACE, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE,
                          "Internal error: session %llu: the accepted recipient <%s> from %s "
                          "has no destination; the message is refused with 451",
                          (unsigned long long)ms->id, r[i].address, ms->client_ip);
            free(r);
            free(notify);
            return -1;
        }
    }
    size_t n = env->nrcpt;
    ims_envelope e = {0};
    e.sender = env->from->mailbox;
    e.rcpts = r;
    e.nrcpt = n;
    e.client_ip = ms->client_ip[0] ? ms->client_ip : NULL;
    e.helo = env->helo;
    e.host = m->fqdn;
    e.envid = env->mail->envid[0] ? env->mail->envid : NULL;
    e.ret = env->mail->ret == SMTP_RET_FULL   ? "FULL"
            : env->mail->ret == SMTP_RET_HDRS ? "HDRS"
                                              : NULL;
    char tls[128];
    imsd_conn_tls_text(ms->c, tls, sizeof tls);
    e.tls = tls[0] ? tls : NULL;
    e.auth = env->account && env->account[0] ? env->account : NULL;
    int rc = ims_spool_begin(m->spool, &e, &ms->msg);
    free(r);
    free(notify);
    if (ims_err_no_space(rc))
        return 452; /* the spool's disk-full event says it, once */
    if (rc)
        ims_log_event(ms->srv->log, IMS_EV_INTERNAL, IMS_CAT_SMTP_INTERFACE, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      "Session %llu: unable to spool a message from %s for %zu recipients: "
                      "%s; it is refused with 451",
                      (unsigned long long)ms->id, ms->client_ip, n, strerror(rc));
    return rc;
}

static int data_chunk(void *arg, const char *p, size_t n)
{
    mail_session *ms = arg;
    ims_protolog_content(ms->plc, p, n);
    int rc = ims_spool_write(ms->msg, p, n);
    return ims_err_no_space(rc) ? 452 : rc;
}

static void committed(void *arg, int err, const char *queue_id)
{
    mail_session *ms = arg;
    ms->committing = false;
    if (ms->gone) {
        session_free(ms);
        return;
    }
    if (!err) {
        imsd_stats *st = ms->srv->stats;
        st->msg_in++;
        st->bytes_in += ms->msg_bytes;
        if (ms->msg_null_sender)
            st->ndr_in++;
    }
    unsigned code = !err ? 250 : ims_err_no_space(err) ? 452 : 451;
    if (smtp_session_data_result(ms->s, code, queue_id)) {
        imsd_conn_close(ms->c);
        return;
    }
    flush(ms);
    imsd_conn_reading(ms->c, true);
    feed(ms);
}

static void data_end(void *arg, const smtp_envelope *env)
{
    mail_session *ms = arg;
    ms->msg_bytes = env->size;
    ms->msg_null_sender = !env->from || !env->from->mailbox[0];
    ims_spool_msg *msg = ms->msg;
    ms->msg = NULL;
    ms->committing = true;
    ims_spool_commit(msg, committed, ms);
}

static void data_abort(void *arg)
{
    mail_session *ms = arg;
    if (ms->msg)
        ims_spool_abort(ms->msg);
    ms->msg = NULL;
}

/* relay_denied - KB Q193922: with SMTP Interface Events at Minimum or more, each denied relay
 * is an event naming the client's address, its name (its HELO: we do no reverse lookup), the
 * authenticated account (none: there is no AUTH yet) and the recipient. */
static void relay_denied(void *arg, const smtp_path *rcpt, smtp_refusal why)
{
    mail_session *ms = arg;
    const char *helo = smtp_session_helo(ms->s);
    bool trick = why != SMTP_REFUSE_NONE;
    ims_log_event(ms->srv->log, IMS_EV_RELAY_DENIED, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                  IMS_LEVEL_MINIMUM,
                  "Relaying was denied: session %llu, client %s (HELO %s), %s%s%s, "
                  "recipient <%s>%s%s%s",
                  (unsigned long long)ms->id, ms->client_ip, helo[0] ? helo : "none",
                  smtp_session_account(ms->s)[0] ? "authenticated as \"" : "not authenticated",
                  smtp_session_account(ms->s), smtp_session_account(ms->s)[0] ? "\"" : "",
                  rcpt->mailbox, trick ? " (" : "", trick ? smtp_refusal_name(why) : "",
                  trick ? ")" : "");
}

static void trace(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    mail_session *ms = arg;
    if (kind == SMTP_TRACE_COMMAND)
        ims_protolog_command(ms->plc, p, n);
    else
        ims_protolog_reply(ms->plc, p, n);
}

/* --- AUTH (RFC 4954) and the submission restrictions ----------------------------------- */

/* failures_find - the table's entry for ip, forgetting a stale count; with make, a new one
 * (the oldest entry's place when the table is full). NULL when absent and not made. */
static auth_failures *failures_find(struct imsd_mail *m, const char *ip, bool make)
{
    time_t now = time(NULL);
    auth_failures *oldest = &m->failures[0], *free_slot = NULL;
    for (size_t i = 0; i < AUTH_TABLE_SIZE; i++) {
        auth_failures *f = &m->failures[i];
        if (!f->ip[0]) {
            if (!free_slot)
                free_slot = f;
            continue;
        }
        if (now - f->last > AUTH_FORGET) {
            f->ip[0] = 0;
            if (!free_slot)
                free_slot = f;
            continue;
        }
        if (!strcmp(f->ip, ip))
            return f;
        if (f->last < oldest->last)
            oldest = f;
    }
    if (!make)
        return NULL;
    auth_failures *f = free_slot ? free_slot : oldest;
    snprintf(f->ip, sizeof f->ip, "%s", ip);
    f->count = 0;
    f->last = now;
    return f;
}

/* auth_delay_for - how long an attempt from ip waits before it is checked. */
static unsigned auth_delay_for(struct imsd_mail *m, const char *ip)
{
    auth_failures *f = failures_find(m, ip, false);
    if (!f || f->count < AUTH_SLOW_AFTER)
        return 0;
    unsigned shift = f->count - AUTH_SLOW_AFTER; /* 0, 1, 2...: 1, 2, 4... seconds */
    return 1u << (shift < AUTH_DELAY_MAX_SHIFT ? shift : AUTH_DELAY_MAX_SHIFT);
}

/* auth_answer - the check's result goes to the session (and the event, when it failed).
 * async: called from the loop, not from inside lib/smtp's auth_check, so the replies are sent
 * and input is read again here. */
static void auth_answer(mail_session *ms, smtp_auth_result r, bool async)
{
    struct imsd_mail *m = ms->srv->mail;
    session_auth *a = ms->auth;
    if (r == SMTP_AUTH_OK) {
        auth_failures *f = failures_find(m, ms->client_ip, false);
        if (f)
            f->ip[0] = 0; /* the address's owner knows a password: start afresh */
    } else if (r == SMTP_AUTH_FAILED) {
        auth_failures *f = failures_find(m, ms->client_ip, true);
        f->count++;
        f->last = time(NULL);
        unsigned wait = auth_delay_for(m, ms->client_ip);
        char slow[64] = "";
        if (wait)
            snprintf(slow, sizeof slow, "; its next attempt waits %u s", wait);
        ims_log_event(ms->srv->log, IMS_EV_AUTH_FAILED, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                      IMS_LEVEL_NONE,
                      "AUTH failed: session %llu, client %s, account \"%s\" (%u failures from "
                      "this address%s)",
                      (unsigned long long)ms->id, ms->client_ip, a->user, f->count, slow);
    }
    smtp_wipe(a->hash, sizeof a->hash);
    int rc = smtp_session_auth_done(ms->s, r, r == SMTP_AUTH_OK ? a->alias : NULL);
    if (!async)
        return; /* the feed loop that called auth_check sends the reply */
    if (rc == ERROR_NOT_ENOUGH_MEMORY) {
        imsd_conn_close(ms->c);
        return;
    }
    flush(ms);
    feed(ms);
}

static void auth_checked(void *arg, imsd_auth_result r)
{
    mail_session *ms = arg;
    ms->authing = false;
    if (ms->gone) {
        session_free(ms);
        return;
    }
    auth_answer(ms,
                r == IMSD_AUTH_MATCH      ? SMTP_AUTH_OK
                : r == IMSD_AUTH_NO_MATCH ? SMTP_AUTH_FAILED
                                          : SMTP_AUTH_TEMP,
                true);
}

/* auth_submit - give the check to the workers (the password is wiped here either way). */
static void auth_submit(mail_session *ms, bool async)
{
    struct imsd_mail *m = ms->srv->mail;
    session_auth *a = ms->auth;
    int e = imsd_auth_check(m->auth, a->alias[0] ? a->hash : NULL, a->pass, a->pass_len,
                            auth_checked, ms);
    smtp_wipe(a->pass, sizeof a->pass);
    a->pass_len = 0;
    if (e) {
        auth_answer(ms, SMTP_AUTH_TEMP, async); /* 454: the workers are all busy */
        return;
    }
    ms->authing = true;
}

static void auth_delayed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mail_session *ms = arg;
    ms->auth_waiting = false;
    auth_submit(ms, true);
}

/* A directory call made under the router's lock: the pickup threads use the directory (and
 * its reg_ctx) through the router, and a lookup may reload the index. */
struct dir_call {
    directory *dir;
    const char *name; /* the login or the address */
    char *alias;      /* auth: DIR_MAX_ALIAS + 1 bytes */
    char *hash;       /* auth */
    size_t hashsize;  /* auth */
    char *found;      /* lookup: the alias, malloc'd */
};

static int auth_lookup_locked(void *arg)
{
    struct dir_call *c = arg;
    return dir_auth_lookup(c->dir, c->name, c->alias, c->hash, c->hashsize);
}

static int lookup_locked(void *arg)
{
    struct dir_call *c = arg;
    return dir_lookup(c->dir, c->name, &c->found);
}

/* auth_check - lib/smtp's callback: the account is looked up here (an index in memory), the
 * hash is made on a worker; the session reads nothing until auth_answer. */
static void auth_check(void *arg, const char *mech, const smtp_sasl_creds *creds)
{
    (void)mech;
    mail_session *ms = arg;
    struct imsd_mail *m = ms->srv->mail;
    if (!ms->auth && !(ms->auth = calloc(1, sizeof *ms->auth))) {
        smtp_session_auth_done(ms->s, SMTP_AUTH_TEMP, NULL); /* 454, sent by the feed loop */
        return;
    }
    session_auth *a = ms->auth;
    snprintf(a->user, sizeof a->user, "%s", creds->user);
    struct dir_call dc = {.dir = m->dir,
                          .name = creds->user,
                          .alias = a->alias,
                          .hash = a->hash,
                          .hashsize = sizeof a->hash};
    int e = ims_router_locked(m->router, auth_lookup_locked, &dc);
    if (e && e != ENOENT) {
        auth_answer(ms, SMTP_AUTH_TEMP, false);
        return;
    }
    memcpy(a->pass, creds->pass, creds->passlen);
    a->pass_len = creds->passlen;
    unsigned delay = auth_delay_for(m, ms->client_ip);
    if (delay && !a->delay)
        a->delay = evtimer_new(ms->srv->base, auth_delayed, ms);
    struct timeval tv = {(time_t)delay, 0};
    if (!delay || !a->delay || evtimer_add(a->delay, &tv)) {
        auth_submit(ms, false);
        return;
    }
    ms->auth_waiting = true;
}

/* sender_check - the original's two client submission restrictions (KB Q188250), for an
 * authenticated session's MAIL FROM. The null sender is not an address anybody owns. */
static smtp_reply_id sender_check(void *arg, const char *account, const smtp_path *from)
{
    mail_session *ms = arg;
    struct imsd_mail *m = ms->srv->mail;
    const ims_settings *s = ms->srv->settings;
    if (!from->mailbox[0] || (!s->client_submit_homed_only && !s->client_submit_match_account))
        return SMTP_R_NONE;
    struct dir_call dc = {.dir = m->dir, .name = from->mailbox};
    int e = ims_router_locked(m->router, lookup_locked, &dc);
    char *alias = dc.found;
    if (e && e != ENOENT)
        return SMTP_R_LOCAL_ERROR;
    smtp_reply_id r = SMTP_R_NONE;
    if (e == ENOENT)
        r = s->client_submit_match_account ? SMTP_R_SENDER_NOT_OWNED : SMTP_R_SENDER_NOT_LOCAL;
    else if (s->client_submit_match_account && strcasecmp(alias, account))
        r = SMTP_R_SENDER_NOT_OWNED;
    free(alias);
    return r;
}

/* --- the connection's life -------------------------------------------------------------- */

/* refuse - answer a connection that gets no session with reply id (a 421), then close. */
static void refuse(imsd_conn *c, smtp_reply_id id)
{
    imsd_server *srv = imsd_conn_server(c);
    buf b = BUF_INIT;
    if (smtp_reply_append(&b, id, srv->mail->cfg[0].advertise_extensions, srv->mail->fqdn) ||
        imsd_conn_write(c, b.data, b.len)) {
        buf_free(&b);
        imsd_conn_close(c);
        return;
    }
    buf_free(&b);
    imsd_conn_close_when_sent(c);
    imsd_conn_set_deadline(c, SESSION_CLOSE_GRACE);
}

void imsd_session_refuse_fd(imsd_server *srv, int fd)
{
    buf b = BUF_INIT;
    if (srv->mail && !smtp_reply_append(&b, SMTP_R_TOO_MANY_CONN,
                                        srv->mail->cfg[0].advertise_extensions, srv->mail->fqdn)) {
        ssize_t n = send(fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)n;
    }
    buf_free(&b);
}

/* refuse_busy - MaxInboundConnections are open: 421 and close, no session. The event is
 * logged once a minute at most, with the number refused since the last one: a flood of
 * connections must not become a flood of events. */
static void refuse_busy(imsd_conn *c)
{
    imsd_server *srv = imsd_conn_server(c);
    struct imsd_mail *m = srv->mail;
    uint64_t now = now_ms();
    srv->stats->conn_in_rejected++;
    m->busy_unlogged++;
    if (!m->busy_logged || now - m->busy_logged >= 60000) {
        ims_log_event(srv->log, IMS_EV_INBOUND_REFUSED, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                      IMS_LEVEL_MINIMUM,
                      "The inbound connection from %s was refused: %u connections are open "
                      "(MaxInboundConnections); %llu refused since the last such event",
                      imsd_conn_peer(c), imsd_server_in_use(srv) - 1,
                      (unsigned long long)m->busy_unlogged);
        m->busy_logged = now ? now : 1;
        m->busy_unlogged = 0;
    }
    refuse(c, SMTP_R_TOO_MANY_CONN);
}

/* session_idle - ms waits for its client between commands: nothing of ours is pending, no
 * message is being read. */
static bool session_idle(const mail_session *ms)
{
    return ms->s && !smtp_session_committing(ms->s) && !smtp_session_reading_data(ms->s) &&
           !ms->authing && !ms->auth_waiting && !ms->tls_asked && !smtp_session_want_close(ms->s);
}

/* session_cut - end ms now as a time-out would (421 4.4.2, then close once it is sent). */
static void session_cut(mail_session *ms)
{
    if (smtp_session_timeout(ms->s)) {
        imsd_conn_close(ms->c);
        return;
    }
    flush(ms);
    imsd_conn_set_deadline(ms->c, SESSION_CLOSE_GRACE);
}

/* stress_make_room - under stress, at the limit: close the session silent for longest (at
 * least STRESS_IDLE_MIN_MS), so that a newcomer is not refused for an idle one's sake. True
 * when one was closed. */
static bool stress_make_room(struct imsd_mail *m, imsd_conn *newcomer, uint64_t now)
{
    if (!m->srv->settings->stress_threshold)
        return false;
    mail_session *victim = NULL;
    for (imsd_conn *k = imsd_server_conns(m->srv); k; k = imsd_conn_next(k)) {
        mail_session *o = k == newcomer || imsd_conn_closing(k) ? NULL : imsd_conn_session(k);
        if (!o || !session_idle(o) || now - o->last_input < STRESS_IDLE_MIN_MS)
            continue;
        if (!victim || o->last_input < victim->last_input)
            victim = o;
    }
    if (!victim)
        return false;
    m->stress_cut++;
    m->srv->stats->stress_closed++;
    session_cut(victim);
    return true;
}

/* stress_update - enter stress at StressThreshold percent of MaxInboundConnections in use
 * (every session's deadline shrinks to StressTimeout at once), leave it below three quarters
 * of that (so that one connection more or less does not flap it). in_use: sessions now. */
static void stress_update(struct imsd_mail *m, unsigned in_use, uint64_t now)
{
    const ims_settings *st = m->srv->settings;
    uint64_t limit = st->max_inbound_connections, pct = st->stress_threshold;
    if (!limit || !pct) {
        return;
    }
    if (!m->stressed && (uint64_t)in_use * 100 >= limit * pct) {
        m->stressed = true;
        m->stress_since = now;
        m->stress_cut = 0;
        m->srv->stats->stress = 1;
        ims_log_event(m->srv->log, IMS_EV_STRESS_BEGIN, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                      IMS_LEVEL_NONE,
                      "Inbound connections are under stress: %u of %llu (MaxInboundConnections) "
                      "in use; sessions now get %u s (StressTimeout) for each command and "
                      "idle sessions are closed first to make room",
                      in_use, (unsigned long long)limit, st->stress_timeout);
        for (imsd_conn *k = imsd_server_conns(m->srv); k; k = imsd_conn_next(k)) {
            mail_session *o = imsd_conn_closing(k) ? NULL : imsd_conn_session(k);
            if (o && o->s && !smtp_session_committing(o->s) && !o->authing && !o->auth_waiting)
                arm_deadline(o);
        }
    } else if (m->stressed && (uint64_t)in_use * 400 < limit * pct * 3) {
        m->stressed = false;
        m->srv->stats->stress = 0;
        ims_log_event(m->srv->log, IMS_EV_STRESS_END, IMS_CAT_SMTP_INTERFACE, IMS_SEV_INFO,
                      IMS_LEVEL_NONE,
                      "Inbound connections are no longer under stress after %llu s: %u of %llu "
                      "in use; %llu idle sessions were closed to make room",
                      (unsigned long long)((now - m->stress_since) / 1000), in_use,
                      (unsigned long long)limit, (unsigned long long)m->stress_cut);
    }
}

void imsd_session_open(imsd_conn *c)
{
    imsd_server *srv = imsd_conn_server(c);
    struct imsd_mail *m = srv->mail;
    if (!m) {
        imsd_conn_close(c);
        return;
    }
    const ims_settings *st = srv->settings;
    uint64_t now = now_ms();
    struct sockaddr_storage peer, self;
    socklen_t pl = sizeof peer, sl = sizeof self;
    smtp_ip client = {0}, local = {0};
    int fd = imsd_conn_fd(c);
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) == 0)
        smtp_ip_from_sockaddr((struct sockaddr *)&peer, &client);
    if (getsockname(fd, (struct sockaddr *)&self, &sl) == 0)
        smtp_ip_from_sockaddr((struct sockaddr *)&self, &local);
    uint32_t limit = st->max_inbound_connections;
    if (limit && imsd_server_in_use(srv) > limit && !stress_make_room(m, c, now)) {
        refuse_busy(c);
        return;
    }
    ims_anvil_client *ac = NULL;
    char text[64];
    smtp_ip_format(&client, text, sizeof text);
    if (!st->client_limits_exempt || !smtp_relay_list_match(&m->relay.allow, &client)) {
        ims_anvil_verdict v = ims_anvil_connect(m->anvil, &client, &m->limits, now, &ac);
        if (v != IMS_ANVIL_OK) {
            limit_refused(m, &client, text, v);
            refuse(c, v == IMS_ANVIL_CONNS ? SMTP_R_CLIENT_CONNS : SMTP_R_CLIENT_CONN_RATE);
            return;
        }
        /* An address that keeps guessing passwords is not let in at all for a while (the
         * failures are forgotten AUTH_FORGET seconds after its last). */
        auth_failures *f =
            m->auth && st->client_auth_failures ? failures_find(m, text, false) : NULL;
        if (f && f->count >= st->client_auth_failures) {
            m->srv->stats->client_refused++;
            if (ims_anvil_log_due(m->anvil, &client, now))
                ims_log_event(srv->log, IMS_EV_CLIENT_LIMIT, IMS_CAT_SMTP_INTERFACE,
                              IMS_SEV_WARNING, IMS_LEVEL_NONE,
                              "The client %s is over its limit of %u failed AUTH attempts "
                              "(MaxAuthFailuresPerClient): its connections are refused until "
                              "%u s after its last failure",
                              text, st->client_auth_failures, AUTH_FORGET);
            ims_anvil_disconnect(m->anvil, ac, now);
            refuse(c, SMTP_R_AUTH_TOO_MANY);
            return;
        }
    }
    mail_session *ms = calloc(1, sizeof *ms);
    if (!ms) {
        ims_anvil_disconnect(m->anvil, ac, now);
        imsd_conn_close(c);
        return;
    }
    ms->c = c;
    ms->srv = srv;
    ms->id = ++m->next_conn_id;
    ms->client = client;
    ms->ac = ac;
    ms->started = ms->last_input = now;
    /* The address stays typed until it is written: "::1", never "[::1]:48314". */
    smtp_ip_format(&client, ms->client_ip, sizeof ms->client_ip);
    if (m->plog) {
        char self_text[IMSD_ADDR_MAX];
        imsd_addr_text((struct sockaddr *)&self, (int)sl, self_text, sizeof self_text);
        int e = ims_protolog_begin(m->plog, ms->id, imsd_conn_peer(c), self_text, &ms->plc);
        if (e)
            ims_log_event(srv->log, IMS_EV_INTERNAL, IMS_CAT_SMTP_PROTOCOL_LOG, IMS_SEV_WARNING,
                          IMS_LEVEL_MINIMUM, "Unable to open the SMTP protocol log: %s",
                          strerror(e));
    }
    smtp_callbacks cb = {
        .arg = ms,
        .rcpt_check = rcpt_check,
        .data_begin = data_begin,
        .data_chunk = data_chunk,
        .data_end = data_end,
        .data_abort = data_abort,
        .trace = trace,
        .mail_check = mail_check,
        .relay_denied = relay_denied,
        .rcpt_release = rcpt_release,
        .auth_check = m->auth ? auth_check : NULL,
        .sender_check = sender_check,
    };
    unsigned kind = imsd_conn_kind(c);
    smtp_config cfg = m->cfg[kind <= IMS_LISTEN_SUBMISSIONS ? kind : IMS_LISTEN_SMTP];
    /* STARTTLS is offered while a usable certificate is loaded (it may come and go). */
    cfg.starttls = !cfg.tls && imsd_tls_ctx(srv->tls) != NULL;
    if (smtp_session_new(&cfg, &cb, &client, &local, &ms->s)) {
        ims_protolog_end(ms->plc, "Closed: out of memory");
        ims_anvil_disconnect(m->anvil, ac, now);
        session_free(ms);
        imsd_conn_close(c);
        return;
    }
    imsd_conn_set_session(c, ms);
    stress_update(m, imsd_server_in_use(srv), now);
    arm_deadline(ms);
    flush(ms);
}

void imsd_session_input(imsd_conn *c, struct evbuffer *in)
{
    (void)in;
    mail_session *ms = imsd_conn_session(c);
    if (!ms) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    ms->last_input = now_ms();
    if (!smtp_session_committing(ms->s))
        feed(ms);
}

void imsd_session_stopping(imsd_conn *c)
{
    mail_session *ms = imsd_conn_session(c);
    /* A session waiting for its commit gets its answer first; the others are told now. */
    if (!ms || smtp_session_committing(ms->s))
        return;
    smtp_session_shutdown(ms->s);
    flush(ms);
    imsd_conn_close_when_sent(c);
}

void imsd_session_drained(imsd_conn *c)
{
    mail_session *ms = imsd_conn_session(c);
    if (!ms || !ms->throttled)
        return;
    ms->throttled = false;
    if (smtp_session_committing(ms->s))
        return; /* committed() resumes */
    imsd_conn_reading(c, true);
    feed(ms);
}

void imsd_session_timeout(imsd_conn *c)
{
    mail_session *ms = imsd_conn_session(c);
    if (!ms) {
        imsd_conn_close(c);
        return;
    }
    if (smtp_session_committing(ms->s) || ms->authing || ms->auth_waiting) {
        arm_deadline(ms); /* our own wait: the commit or the password check answers soon */
        return;
    }
    if (smtp_session_timeout(ms->s)) {
        imsd_conn_close(c);
        return;
    }
    flush(ms); /* the 421, then close once it is sent */
    imsd_conn_set_deadline(c, SESSION_CLOSE_GRACE);
}

/* log_end - the protocol log's last line for the connection. */
static void log_end(mail_session *ms)
{
    if (!ms->plc)
        return;
    smtp_session_stats st;
    smtp_session_stats_get(ms->s, &st);
    char text[256];
    snprintf(text, sizeof text,
             "Closed in state %s: %u messages accepted, %u refused, %llu bytes, %u errors",
             smtp_session_state_name(ms->s), st.messages, st.rejected, (unsigned long long)st.bytes,
             st.errors);
    ims_protolog_end(ms->plc, text);
    ms->plc = NULL;
}

void imsd_session_closed(imsd_conn *c)
{
    mail_session *ms = imsd_conn_session(c);
    if (!ms)
        return;
    imsd_conn_set_session(c, NULL);
    struct imsd_mail *m = ms->srv->mail;
    uint64_t now = now_ms();
    ims_anvil_disconnect(m->anvil, ms->ac, now);
    ms->ac = NULL;
    /* c is still counted as open until it is freed, after this. */
    unsigned in_use = imsd_server_in_use(ms->srv);
    stress_update(m, imsd_conn_closing(c) || !in_use ? in_use : in_use - 1, now);
    log_end(ms);
    smtp_session_free(ms->s); /* aborts an unfinished DATA through data_abort */
    ms->s = NULL;
    if (ms->committing || ms->authing) {
        ms->gone = true; /* the commit's or the check's callback frees us */
        return;
    }
    session_free(ms);
}

void imsd_session_tls_ready(imsd_conn *c)
{
    mail_session *ms = imsd_conn_session(c);
    if (!ms)
        return;
    char text[128];
    imsd_conn_tls_text(c, text, sizeof text);
    if (ms->plc) {
        char line[160];
        int n = snprintf(line, sizeof line, "TLS started: %s", text);
        ims_protolog_reply(ms->plc, line, n > 0 ? (size_t)n : 0);
    }
    if (ms->tls_asked && smtp_session_tls_started(ms->s)) {
        imsd_conn_close(c);
        return;
    }
    flush(ms);
    feed(ms);
}

/* --- the shared state ------------------------------------------------------------------- */

static void spool_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct imsd_mail *m = arg;
    ims_spool_dispatch(m->spool);
}

static void pickup_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct imsd_mail *m = arg;
    ims_pickup_dispatch(m->pickup);
}

static void dropdir_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct imsd_mail *m = arg;
    ims_pickup_dispatch(m->dropdir);
}

/* dropdir_off - the Pickup directory cannot be used: the feature is off (KB Q201314). */
static void dropdir_off(struct imsd_mail *m, const char *dir, int e)
{
    ims_log_event(m->srv->log, IMS_EV_DROPDIR_OFF, IMS_CAT_INIT_TERM, IMS_SEV_WARNING,
                  IMS_LEVEL_NONE,
                  "The Pickup directory %s cannot be used (%s): files dropped there are not "
                  "taken until a start finds it usable",
                  dir,
                  e == EPERM     ? "it, its Archive or its .taking belongs to another user"
                  : e == ENOTDIR ? "it, its Archive or its .taking is not a directory"
                                 : strerror(e));
}

/* dropdir_start - the Pickup directory's thread (after MTS-OUT's: the router is shared). */
static void dropdir_start(struct imsd_mail *m, const char *dir)
{
    ims_dropdir_options o = {0};
    o.dir = dir;
    o.store_dir = m->store_dir;
    o.host = m->fqdn;
    o.spool = m->spool;
    o.router = m->router;
    o.log = m->srv->log;
    o.max_size = m->srv->settings->inbound_size_limit;
    int e = ims_dropdir_start(&o, &m->dropdir);
    if (!e) {
        m->dropdir_ev = event_new(m->srv->base, ims_pickup_fd(m->dropdir), EV_READ | EV_PERSIST,
                                  dropdir_ready, m);
        if (!m->dropdir_ev || event_add(m->dropdir_ev, NULL))
            e = ENOMEM;
    }
    if (e) {
        if (m->dropdir_ev)
            event_free(m->dropdir_ev);
        m->dropdir_ev = NULL;
        ims_pickup_stop(m->dropdir);
        m->dropdir = NULL;
        dropdir_off(m, dir, e);
    }
}

/* pickup_start - MTS-OUT's thread, once the router is no longer used here but through it. */
static int pickup_start(struct imsd_mail *m, const char *gateway, const char *mts_out)
{
    char bad[PATH_MAX];
    snprintf(bad, sizeof bad, "%s/.Bad", gateway);
    ims_pickup_options po = {0};
    po.mts_out = mts_out;
    po.bad = bad;
    po.store_dir = m->store_dir;
    po.host = m->fqdn;
    po.spool = m->spool;
    po.router = m->router;
    po.log = m->srv->log;
    po.max_size = m->srv->settings->outbound_size_limit;
    int e = ims_pickup_start(&po, &m->pickup);
    if (!e) {
        m->pickup_ev = event_new(m->srv->base, ims_pickup_fd(m->pickup), EV_READ | EV_PERSIST,
                                 pickup_ready, m);
        if (!m->pickup_ev || event_add(m->pickup_ev, NULL))
            e = ENOMEM;
    }
    if (e)
        ims_log_event(m->srv->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE, "Unable to start taking mail from %s: %s", mts_out,
                      strerror(e));
    return e;
}

int imsd_mail_open(imsd_server *srv, reg_ctx *reg, const char *gateway)
{
    const ims_settings *s = srv->settings;
    struct imsd_mail *m = calloc(1, sizeof *m);
    if (!m)
        return IMS_EV_INTERNAL;
    m->srv = srv;
    srv->mail = m;
    m->limits = (ims_anvil_limits){.conns = s->client_conns,
                                   .conn_rate = s->client_conn_rate,
                                   .msg_rate = s->client_msg_rate,
                                   .rcpt_rate = s->client_rcpt_rate};
    if (ims_anvil_new(IMS_ANVIL_CAPACITY, &m->anvil)) {
        free(m);
        srv->mail = NULL;
        return IMS_EV_INTERNAL;
    }
    snprintf(m->store_dir, sizeof m->store_dir, "%s/store", reg_ctx_root_dir(reg));
    ims_settings_fqdn(s, m->fqdn, sizeof m->fqdn);
    int e = dir_open(reg, &m->dir);
    const char *what = "the directory";
    if (!e) {
        what = "the router";
        e = ims_router_new(s, m->dir, &m->router);
    }
    char mts_in[PATH_MAX], tracking[PATH_MAX], mts_out[PATH_MAX], claims[PATH_MAX];
    char dropdir[PATH_MAX], drop_claims[PATH_MAX];
    bool dropdir_on = false;
    if (snprintf(dropdir, sizeof dropdir, "%s/Pickup", s->root_dir) >= (int)sizeof dropdir ||
        ims_dropdir_claim_dir(dropdir, drop_claims, sizeof drop_claims))
        e = ENAMETOOLONG;
    snprintf(mts_in, sizeof mts_in, "%s/.MTS-IN", gateway);
    snprintf(mts_out, sizeof mts_out, "%s/.MTS-OUT", gateway);
    if (ims_pickup_claim_dir(mts_out, claims, sizeof claims))
        e = ENAMETOOLONG;
    snprintf(tracking, sizeof tracking, "%s/Tracking.log", reg_ctx_root_dir(reg));
    if (!e) {
        /* The outbound queue first: the spool hands messages over to it from its start. */
        what = "the outbound queue";
        char bad[PATH_MAX];
        snprintf(bad, sizeof bad, "%s/.Bad", gateway);
        const char *off = getenv("IMS_TIME_OFFSET");
        if (ims_tracking_open(tracking, &m->out_tracking))
            m->out_tracking = NULL;
        imsd_outbound_options oo = {
            .router = m->router,
            .tracking = m->out_tracking,
            .fqdn = m->fqdn,
            .bad_dir = bad,
            .store_dir = m->store_dir,
            .time_offset = off ? strtoll(off, NULL, 10) : 0,
            .stats = srv->stats,
        };
        m->outbound = imsd_outbound_new(srv->base, s, srv->log, &oo);
        if (!m->outbound)
            e = EIO;
    }
    if (!e) {
        ims_spool_options opt = {0};
        opt.handover = imsd_outbound_handover;
        opt.handover_arg = m->outbound;
        ims_report_names names; /* copied by the spool */
        ims_report_names_from_settings(s, m->fqdn, &names);
        opt.report_names = &names;
        opt.receipt = imsd_outbound_receipt;
        opt.receipt_arg = m->outbound;
        opt.mts_in = mts_in;
        opt.tracking_dir = tracking;
        opt.host = m->fqdn;
        opt.log = srv->log;
        opt.pickup_dir = claims;
        opt.file_syncs = s->sync_per_file != 0;
        /* The Pickup directory's folders and modes before the spool settles its claims. */
        int de = ims_dropdir_prepare(dropdir);
        if (de)
            dropdir_off(m, dropdir, de);
        dropdir_on = de == 0;
        opt.dropdir_claim_dir = dropdir_on ? drop_claims : NULL;
        what = "the spool";
        e = ims_spool_open(s->root_dir, &opt, &m->spool);
    }
    if (!e) {
        m->spool_ev =
            event_new(srv->base, ims_spool_fd(m->spool), EV_READ | EV_PERSIST, spool_ready, m);
        if (!m->spool_ev || event_add(m->spool_ev, NULL))
            e = ENOMEM;
        else
            imsd_outbound_set_spool(m->outbound, m->spool);
    }
    if (e) {
        ims_log_event(srv->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to open %s: %s", what, strerror(e));
        imsd_mail_close(srv);
        return IMS_EV_INTERNAL;
    }
    /* The log exists at None too: the level may be raised while the service runs. */
    unsigned level = s->levels[IMS_CAT_SMTP_PROTOCOL_LOG];
    char logdir[PATH_MAX];
    int n = snprintf(logdir, sizeof logdir, "%s/Log", s->root_dir);
    if (n < 0 || (size_t)n >= sizeof logdir || ims_protolog_create(logdir, level, &m->plog)) {
        imsd_mail_close(srv);
        return IMS_EV_INTERNAL;
    }
    imsd_outbound_set_protolog(m->outbound, m->plog, &m->next_conn_id);
    if (level > IMS_LEVEL_NONE) {
        ims_log_event(srv->log, IMS_EV_PROTOCOL_LOG, IMS_CAT_SMTP_PROTOCOL_LOG, IMS_SEV_INFO,
                      IMS_LEVEL_NONE,
                      "SMTP protocol logging is enabled at level %s: one file per connection "
                      "in %s",
                      level >= IMS_LEVEL_MAXIMUM  ? "Maximum"
                      : level >= IMS_LEVEL_MEDIUM ? "Medium"
                                                  : "Minimum",
                      logdir);
    }
    /* The relay policy: a line that does not parse is logged (a skipped deny line would make
     * the policy more permissive than the administrator meant). */
    m->relay.flags = s->relay_flags;
    struct {
        smtp_relay_list *list;
        const char (*lines)[IMS_RELAY_LINE_MAX];
        size_t n;
        const char *name;
    } lists[] = {{&m->relay.allow, s->relay_allow, s->nrelay_allow, "RelayAllowList"},
                 {&m->relay.deny, s->relay_deny, s->nrelay_deny, "RelayDenyList"},
                 {&m->relay.local, s->relay_local, s->nrelay_local, "RelayLocalIPList"}};
    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; i < lists[l].n; i++)
            if (smtp_relay_list_add(lists[l].list, lists[l].lines[i]))
                ims_log_event(srv->log, IMS_EV_SETTING_INVALID, IMS_CAT_INIT_TERM, IMS_SEV_WARNING,
                              IMS_LEVEL_NONE,
                              "The line \"%s\" of %s is not net;mask: it is skipped",
                              lists[l].lines[i], lists[l].name);
    smtp_config base;
    smtp_config_defaults(&base);
    base.fqdn = m->fqdn;
    base.advertise_extensions = s->advertise_smtp_extensions != 0;
    base.max_size = s->inbound_size_limit;
    base.max_recipients = s->inbound_recipient_limit;
    base.max_errors = s->max_errors_per_session;
    base.max_line = s->max_line_length;
    static const smtp_transfer_mode modes[] = {[IMS_TRANSFER_INOUT] = SMTP_TRANSFER_INOUT,
                                               [IMS_TRANSFER_IN] = SMTP_TRANSFER_IN,
                                               [IMS_TRANSFER_OUT] = SMTP_TRANSFER_OUT,
                                               [IMS_TRANSFER_NONE] = SMTP_TRANSFER_NONE};
    base.mode =
        s->transfer_mode <= IMS_TRANSFER_NONE ? modes[s->transfer_mode] : SMTP_TRANSFER_INOUT;
    base.relay = &m->relay;
    base.is_local = is_local;
    base.is_local_arg = m;
    /* AUTH: port 25's listeners as the original (DisableAuth, AllowAuthWithoutTls); the
     * submission ports always offer it, require it before MAIL and relay for whoever has
     * logged on (RFC 6409 4.3); submissions is under TLS from its first byte. */
    base.auth_without_tls = s->allow_auth_without_tls != 0;
    for (unsigned k = IMS_LISTEN_SMTP; k <= IMS_LISTEN_SUBMISSIONS; k++) {
        smtp_config *c = &m->cfg[k];
        *c = base;
        bool submission = k != IMS_LISTEN_SMTP;
        c->auth = submission || !s->disable_auth;
        c->auth_required = submission;
        c->auth_relay = submission;
        c->tls = k == IMS_LISTEN_SUBMISSIONS;
    }
    if (imsd_auth_new(srv->base, &m->auth)) {
        ims_log_event(srv->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to start the threads that check passwords: AUTH is not offered");
        m->auth = NULL;
    }
    disk_check(m); /* a start on a full disk says so at once */
    dir_mailbox admin = {0};
    dir_err derr;
    if (dir_mailbox_show(m->dir, s->administrator_mailbox, &admin, &derr) == 0)
        dir_mailbox_free(&admin);
    else
        ims_log_event(srv->log, IMS_EV_NO_ADMIN_MAILBOX, IMS_CAT_INIT_TERM, IMS_SEV_WARNING,
                      IMS_LEVEL_NONE,
                      "The administrator's mailbox \"%s\" (AdministratorMailbox) does not exist: "
                      "mail for postmaster is refused until it is made (imsadm mailbox add %s "
                      "--address postmaster@<domain>)",
                      s->administrator_mailbox, s->administrator_mailbox);
    if (pickup_start(m, gateway, mts_out)) {
        imsd_mail_close(srv);
        return IMS_EV_INTERNAL;
    }
    if (dropdir_on)
        dropdir_start(m, dropdir);
    return IMS_OK;
}

ims_router *imsd_mail_router(const imsd_server *srv)
{
    return srv->mail ? srv->mail->router : NULL;
}

void imsd_mail_protolog_level(imsd_server *srv, unsigned level)
{
    if (srv->mail)
        ims_protolog_set_level(srv->mail->plog, level);
}

void imsd_mail_close(imsd_server *srv)
{
    struct imsd_mail *m = srv->mail;
    if (!m)
        return;
    if (m->pickup_ev)
        event_free(m->pickup_ev);
    ims_pickup_stop(m->pickup); /* before the spool closes */
    if (m->dropdir_ev)
        event_free(m->dropdir_ev);
    ims_pickup_stop(m->dropdir);
    if (m->spool_ev)
        event_free(m->spool_ev);
    imsd_auth_free(m->auth);         /* answers checks still waiting: their sessions are gone */
    imsd_outbound_stop(m->outbound); /* before the spool: no more reports into it */
    if (m->spool)
        ims_spool_close(m->spool); /* finishes pending commits and runs their callbacks */
    imsd_outbound_free(m->outbound);
    ims_protolog_close(m->plog); /* after the last connection, outbound ones included */
    ims_tracking_close(m->out_tracking);
    ims_router_free(m->router);
    dir_close(m->dir);
    smtp_relay_policy_free(&m->relay);
    ims_anvil_free(m->anvil);
    free(m);
    srv->mail = NULL;
}

const char *imsd_session_state(imsd_conn *c)
{
    mail_session *ms = imsd_conn_session(c);
    if (!ms || !ms->s)
        return "connected";
    if (ms->authing || ms->auth_waiting)
        return "authenticating";
    return smtp_session_state_name(ms->s);
}

ims_outq *imsd_mail_outq(imsd_server *srv)
{
    return srv->mail ? imsd_outbound_queue(srv->mail->outbound) : NULL;
}

void imsd_mail_stats(imsd_server *srv, imsd_snap *out)
{
    struct imsd_mail *m = srv->mail;
    if (!m)
        return;
    if (m->spool)
        ims_spool_get_stats(m->spool, &out->spool);
    if (m->outbound)
        imsd_outbound_queue_stats(m->outbound, &out->outq);
    if (m->pickup)
        ims_pickup_get_stats(m->pickup, &out->mts_out);
    if (m->dropdir)
        ims_pickup_get_stats(m->dropdir, &out->pickup);
}

int imsd_mail_admin_hash(imsd_server *srv, char *hash, size_t hashsize)
{
    struct imsd_mail *m = srv->mail;
    hash[0] = 0;
    if (!m)
        return ENOENT;
    char alias[DIR_MAX_ALIAS + 1];
    struct dir_call dc = {.dir = m->dir,
                          .name = srv->settings->administrator_mailbox,
                          .alias = alias,
                          .hash = hash,
                          .hashsize = hashsize};
    return ims_router_locked(m->router, auth_lookup_locked, &dc);
}
