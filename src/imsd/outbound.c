/* outbound.c - the outbound side on imsd's event loop: the outbound queue's descriptor and
 * timer, c-ares's sockets, and SMTP client connections (lib/smtp's client on bufferevents)
 * to each destination's hosts, with limits per host and in total, reuse, and a concurrency
 * that grows while deliveries succeed and shrinks when a host pushes back; STARTTLS through
 * OpenSSL filter bufferevents under each destination's TlsPolicy, and AUTH credentials. */
#include "imsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ims/ims.h"
#include "smtp/smtp.h"

#define OB_IDLE_SECONDS 5   /* an idle connection waits this long for more mail (reuse) */
#define OB_START_WINDOW 2   /* connections a destination starts with */
#define OB_TARGETS_MS 60000 /* a destination's resolved hosts are used this long */
#define OB_MAX_DNS_FDS 64   /* c-ares sockets watched at once */
#define OB_READ_CHUNK 65536
#define OB_OUTPUT_HIGH (256 * 1024) /* bytes queued on a socket before pulling more data */
/* A host whose TLS handshake failed under TlsPolicy "may" gets plain text for this long (as
 * Postfix retries such a delivery without TLS), so a broken TLS stack cannot hold mail up. */
#define OB_TLS_PLAIN_MS (60 * 60 * 1000)
#define OB_TLS_PLAIN_MAX 256           /* hosts remembered; the oldest is forgotten first */
#define OB_CA_MAX (IMS_MAX_ROUTES + 1) /* TLS contexts: one per distinct TlsCaFile */
#define OB_TLS_TEXT IMS_TRACK_TLS_MAX

typedef struct ob_dest ob_dest;
typedef struct ob_conn ob_conn;

struct ob_dest {
    imsd_outbound *ob;
    ob_dest *all_next; /* every destination seen */
    ims_outq_dest *d;
    unsigned nconn;    /* connections open or opening */
    unsigned ngreeted; /* of them, past the greeting: a host of it works now */
    unsigned window;   /* connections allowed now (adaptive) */
    bool resolving;
    ims_dns_result *targets; /* NULL until resolved */
    uint64_t targets_at;     /* when (ims_clock_ms) */
    ob_conn *idle;           /* connections waiting for a job */
};

struct ob_conn {
    imsd_outbound *ob;
    ob_dest *od;
    ob_conn *prev, *next; /* all connections */
    ob_conn *idle_next;   /* in od->idle */
    bool idle;
    size_t ti; /* the target being tried */
    struct bufferevent *bev;
    struct event *timer; /* the client's time-out, and the idle wait */
    smtp_client *c;
    ims_outq_job *job; /* in flight, or committing */
    bool committing;
    bool connected;
    bool greeted;    /* got past EHLO/HELO: a host that works */
    bool retry;      /* refused before a transaction: the job goes to the next host */
    bool backed_off; /* this connection made its window smaller (once) */
    bool attempted;  /* a socket to the current target was opened (counted) */
    bool delivered;  /* the message in flight was taken for a recipient */
    unsigned sent;   /* messages on this connection */
    char remote[IMS_OUTQ_HOST_TEXT];
    ims_protolog_conn *plc;     /* this connection's protocol log, or NULL */
    smtp_tls_policy tls;        /* this connection's policy (may became none: a failed host) */
    SSL_CTX *ctx;               /* the context its policy and CA file choose (not owned) */
    bool tls_started;           /* the filter is on: its CONNECTED is the handshake's end */
    bool plain_retry;           /* the handshake failed under may: the same host in plain text */
    char tls_text[OB_TLS_TEXT]; /* "TLSv1.3 <cipher>" once under TLS */
};

typedef struct ob_plain_host {
    smtp_ip ip;
    uint16_t port;
    uint64_t until; /* ims_clock_ms */
} ob_plain_host;

typedef struct ob_ca {
    char path[IMS_CA_FILE_MAX]; /* "" : the system's trust store */
    SSL_CTX *ctx;               /* NULL: the file could not be used (event 4162) */
} ob_ca;

typedef struct ob_dns_fd {
    int fd;
    struct event *ev;
} ob_dns_fd;

struct imsd_outbound {
    struct event_base *base;
    const ims_settings *s;
    ims_log *log;
    ims_outq *q;
    ims_router *router;
    ims_dns *dns;
    struct event *q_ev, *q_timer, *dns_timer;
    ob_dns_fd dns_fds[OB_MAX_DNS_FDS];
    ob_conn *conns;
    unsigned nconn;
    ob_dest *dests;
    bool stopping;
    char helo[256];
    ims_dns_self self;
    ims_protolog *plog;   /* NULL or at level None: no protocol log */
    uint64_t *conn_ids;   /* the connection numbers imsd's sessions share */
    imsd_stats *stats;    /* the outbound counters */
    ob_ca cas[OB_CA_MAX]; /* TLS client contexts, made at start */
    size_t ncas;
    ob_plain_host plain[OB_TLS_PLAIN_MAX];
    ims_creds *creds; /* ClientCredentialsFile, or NULL */
};

static void arm_queue_timer(imsd_outbound *ob);
static void dest_want(ob_dest *od);
static void conn_free(ob_conn *k);
static void conn_pump(ob_conn *k);

/* --- DNS on the loop ----------------------------------------------------------------------- */

static void dns_arm(imsd_outbound *ob)
{
    struct timeval tv;
    if (ims_dns_timeout(ob->dns, &tv))
        event_add(ob->dns_timer, &tv);
    else
        event_del(ob->dns_timer);
}

static void dns_io(evutil_socket_t fd, short what, void *arg)
{
    imsd_outbound *ob = arg;
    ims_dns_process(ob->dns, what & EV_READ ? fd : IMS_DNS_NO_FD,
                    what & EV_WRITE ? fd : IMS_DNS_NO_FD);
    dns_arm(ob);
}

static void dns_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_outbound *ob = arg;
    ims_dns_process(ob->dns, IMS_DNS_NO_FD, IMS_DNS_NO_FD);
    dns_arm(ob);
}

static void dns_sock(void *arg, int fd, bool readable, bool writable)
{
    imsd_outbound *ob = arg;
    ob_dns_fd *slot = NULL, *free_slot = NULL;
    for (size_t i = 0; i < OB_MAX_DNS_FDS; i++) {
        if (ob->dns_fds[i].ev && ob->dns_fds[i].fd == fd)
            slot = &ob->dns_fds[i];
        else if (!ob->dns_fds[i].ev && !free_slot)
            free_slot = &ob->dns_fds[i];
    }
    if (slot) {
        event_free(slot->ev);
        slot->ev = NULL;
    }
    if (!readable && !writable)
        return;
    if (!slot)
        slot = free_slot;
    if (!slot)
        return; /* c-ares's own time-out ends that query */
    slot->fd = fd;
    slot->ev =
        event_new(ob->base, fd, (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0) | EV_PERSIST,
                  dns_io, ob);
    if (slot->ev)
        event_add(slot->ev, NULL);
}

/* --- destinations -------------------------------------------------------------------------- */

static ob_dest *dest_of(imsd_outbound *ob, ims_outq_dest *d)
{
    ob_dest *od = ims_outq_dest_user(d);
    if (od)
        return od;
    od = calloc(1, sizeof *od);
    if (!od)
        return NULL;
    od->ob = ob;
    od->d = d;
    unsigned per_host = ob->s->max_connections_per_host ? ob->s->max_connections_per_host : 1;
    od->window = OB_START_WINDOW < per_host ? OB_START_WINDOW : per_host;
    ims_outq_dest_set_user(d, od);
    od->all_next = ob->dests;
    ob->dests = od;
    return od;
}

static uint16_t dest_port(const ob_dest *od)
{
    if (ims_outq_dest_route(od->d) == IMS_ROUTE_SMARTHOST) {
        char host[SMTP_DOMAIN_MAX + 1];
        bool literal;
        uint16_t port = 25;
        if (ims_host_parse(ims_outq_dest_name(od->d), host, &literal, &port) == 0)
            return port;
    }
    return (uint16_t)od->ob->s->outbound_port;
}

/* dest_fail - nobody at the destination can be reached now. */
static void dest_fail(ob_dest *od, smtp_outcome outcome, const char *enh, const char *text,
                      const char *remote)
{
    smtp_result r = {.outcome = outcome, .stage = SMTP_STAGE_GREETING, .local = true};
    snprintf(r.enh, sizeof r.enh, "%s", enh);
    snprintf(r.text, sizeof r.text, "%s", text);
    ims_log_event(od->ob->log, IMS_EV_OUT_HOST_FAILED, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                  IMS_LEVEL_MAXIMUM, "Mail for %s cannot be delivered now: %s %s",
                  ims_outq_dest_name(od->d), enh, text);
    ims_outq_dest_failed(od->ob->q, od->d, &r, remote, ims_clock_ms());
}

static void resolved(void *arg, ims_dns_result *r)
{
    ob_dest *od = arg;
    od->resolving = false;
    imsd_outbound *ob = od->ob;
    if (r->status == IMS_DNS_OK && ob->s->disable_loopback_connections)
        ims_dns_drop_self(r, &ob->self, dest_port(od));
    if (r->status != IMS_DNS_OK) {
        ob->stats->dns_failures++;
        dest_fail(od, r->status == IMS_DNS_PERMANENT ? SMTP_PERMANENT : SMTP_TRANSIENT, r->code,
                  r->text, NULL);
        ims_dns_result_free(r);
        return;
    }
    ims_dns_result_free(od->targets);
    od->targets = r;
    od->targets_at = ims_clock_ms();
    dest_want(od);
}

static void resolve(ob_dest *od)
{
    imsd_outbound *ob = od->ob;
    const char *name = ims_outq_dest_name(od->d);
    int e;
    if (!ob->dns) {
        /* A smart host given as an address needs no resolver. */
        char host[SMTP_DOMAIN_MAX + 1];
        bool literal = false;
        uint16_t port;
        ims_dns_result *r = NULL;
        if (ims_outq_dest_route(od->d) == IMS_ROUTE_SMARTHOST &&
            !ims_host_parse(name, host, &literal, &port) && literal && (r = calloc(1, sizeof *r)) &&
            (r->v = calloc(1, sizeof *r->v)) && !smtp_ip_parse(host, &r->v[0].ip)) {
            r->status = IMS_DNS_OK;
            r->n = 1;
            snprintf(r->v[0].name, sizeof r->v[0].name, "%s", host);
            od->resolving = true;
            resolved(od, r);
            return;
        }
        ims_dns_result_free(r);
        dest_fail(od, SMTP_TRANSIENT, "4.4.3", "no DNS resolver (see the start's events)", NULL);
        return;
    }
    od->resolving = true;
    if (ims_outq_dest_route(od->d) == IMS_ROUTE_DNS) {
        e = ims_dns_resolve_mx(ob->dns, name, ims_router_family(ob->router, name), resolved, od);
    } else {
        char host[SMTP_DOMAIN_MAX + 1];
        bool literal;
        uint16_t port;
        e = ims_host_parse(name, host, &literal, &port) ? EINVAL : 0;
        if (!e)
            e = ims_dns_resolve_host(ob->dns, host, IMS_DNS_ANY, resolved, od);
    }
    if (e) {
        od->resolving = false;
        dest_fail(od, e == EINVAL ? SMTP_PERMANENT : SMTP_TRANSIENT,
                  e == EINVAL ? "5.1.2" : "4.3.0",
                  e == EINVAL ? "the destination is not a valid host name" : "out of memory", NULL);
        return;
    }
    dns_arm(ob);
}

/* --- TLS ---------------------------------------------------------------------------------- */

/* tls_ctx_new - a client context: TLS 1.2 or later, forward-secret AEAD suites for 1.2
 * (OpenSSL 3's defaults for 1.3), no compression, no renegotiation; trusting ca_file, or the
 * system's store when it is "". NULL with why on failure. */
static SSL_CTX *tls_ctx_new(const char *ca_file, char *why, size_t n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    bool ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
              SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    if (ok) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* "verify" sets it per connection */
        ok = ca_file[0] ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) == 1
                        : SSL_CTX_set_default_verify_paths(ctx) == 1;
    }
    if (ok)
        return ctx;
    unsigned long e = ERR_get_error();
    snprintf(why, n, "%s", e ? ERR_reason_error_string(e) : "out of memory");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

/* tls_ca_add - a context for ca_file, once per distinct file (made at start: no disk later). */
static void tls_ca_add(imsd_outbound *ob, const char *ca_file)
{
    for (size_t i = 0; i < ob->ncas; i++)
        if (!strcmp(ob->cas[i].path, ca_file))
            return;
    if (ob->ncas == OB_CA_MAX)
        return;
    ob_ca *c = &ob->cas[ob->ncas++];
    snprintf(c->path, sizeof c->path, "%s", ca_file);
    char why[256];
    c->ctx = tls_ctx_new(ca_file, why, sizeof why);
    if (!c->ctx)
        ims_log_event(ob->log, IMS_EV_OUT_TLS, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The outbound TLS context for %s cannot be made (%s): mail that needs it "
                      "waits (4.7.5)",
                      ca_file[0] ? ca_file : "the system's trust store", why);
}

static SSL_CTX *tls_ctx_for(const imsd_outbound *ob, const char *ca_file)
{
    for (size_t i = 0; i < ob->ncas; i++)
        if (!strcmp(ob->cas[i].path, ca_file))
            return ob->cas[i].ctx;
    return NULL;
}

/* plain_host - the host at ip:port failed a handshake under "may" not long ago. */
static ob_plain_host *plain_host(imsd_outbound *ob, const smtp_ip *ip, uint16_t port)
{
    uint64_t now = ims_clock_ms();
    for (size_t i = 0; i < OB_TLS_PLAIN_MAX; i++) {
        ob_plain_host *h = &ob->plain[i];
        if (h->until > now && h->port == port && h->ip.family == ip->family &&
            !memcmp(h->ip.a, ip->a, ip->family == 6 ? 16 : 4))
            return h;
    }
    return NULL;
}

static void plain_remember(imsd_outbound *ob, const smtp_ip *ip, uint16_t port)
{
    ob_plain_host *h = plain_host(ob, ip, port);
    if (!h) {
        h = &ob->plain[0]; /* the oldest (an unused slot is oldest of all) */
        for (size_t i = 1; i < OB_TLS_PLAIN_MAX; i++)
            if (ob->plain[i].until < h->until)
                h = &ob->plain[i];
    }
    h->ip = *ip;
    h->port = port;
    h->until = ims_clock_ms() + OB_TLS_PLAIN_MS;
}

/* --- connections --------------------------------------------------------------------------- */

static void conn_arm(ob_conn *k)
{
    unsigned secs = k->idle ? OB_IDLE_SECONDS : k->c ? smtp_client_timeout_secs(k->c) : 0;
    if (!k->c && !k->idle)
        secs = SMTP_TIMEOUT_GREETING; /* connecting */
    if (k->committing)
        secs = 0;
    if (secs) {
        struct timeval tv = {secs, 0};
        event_add(k->timer, &tv);
    } else {
        event_del(k->timer);
    }
}

static void remote_text(const smtp_ip *ip, char *out, size_t n)
{
    char a[INET6_ADDRSTRLEN] = "?";
    inet_ntop(ip->family == 6 ? AF_INET6 : AF_INET, ip->a, a, sizeof a);
    snprintf(out, n, "[%s]", a);
}

static int target_sockaddr(const ob_conn *k, struct sockaddr_storage *ss, socklen_t *len)
{
    const ims_dns_target *t = &k->od->targets->v[k->ti];
    memset(ss, 0, sizeof *ss);
    uint16_t port = dest_port(k->od);
    if (t->ip.family == 6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        memcpy(&s6->sin6_addr, t->ip.a, 16);
        *len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        memcpy(&s4->sin_addr, t->ip.a, 4);
        *len = sizeof *s4;
    }
    return 0;
}

static void conn_event(struct bufferevent *bev, short what, void *arg);
static void conn_read(struct bufferevent *bev, void *arg);
static void conn_write(struct bufferevent *bev, void *arg);
static int conn_connect(ob_conn *k);
static void conn_after(ob_conn *k);

/* conn_start_tls - the peer said 220 to STARTTLS: a client SSL over the socket's bufferevent,
 * SNI and (for "verify") the name to check set. The handshake runs on the loop without
 * blocking it; its end is conn_event's. */
static void conn_start_tls(ob_conn *k)
{
    k->tls_started = true;
    /* Bytes after the 220 came in plain text: dropped (RFC 3207 5; lib/smtp drops its own). */
    struct evbuffer *in = bufferevent_get_input(k->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    const ims_dns_target *t = &k->od->targets->v[k->ti];
    SSL *ssl = k->ctx ? SSL_new(k->ctx) : NULL;
    if (!ssl) {
        smtp_client_tls_done(k->c, false,
                             k->ctx ? "out of memory" : "no TLS context (see event 4162)");
        conn_after(k);
        return;
    }
    smtp_ip lit;
    bool literal = smtp_ip_parse(t->name, &lit) == 0;
    if (!literal)
        SSL_set_tlsext_host_name(ssl, t->name); /* SNI: never an address (RFC 6066 3) */
    if (k->tls == SMTP_TLS_VERIFY) {
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        if (literal) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t->name);
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            SSL_set1_host(ssl, t->name);
        }
    }
    struct bufferevent *f = bufferevent_openssl_filter_new(
        k->ob->base, k->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!f) {
        SSL_free(ssl);
        smtp_client_tls_done(k->c, false, "out of memory");
        conn_after(k);
        return;
    }
    k->bev = f; /* freeing it frees the socket's bufferevent and the SSL */
    bufferevent_setcb(f, conn_read, conn_write, conn_event, k);
    bufferevent_enable(f, EV_READ | EV_WRITE);
    conn_arm(k);
}

/* tls_why - why the handshake on bev failed, for the result. */
static void tls_why(const ob_conn *k, struct bufferevent *bev, char *out, size_t n)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = 0, x;
    while ((x = bufferevent_get_openssl_error(bev)))
        if (!e)
            e = x;
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (k->tls == SMTP_TLS_VERIFY && vr != X509_V_OK)
        snprintf(out, n, "the server certificate was not verified: %s",
                 X509_verify_cert_error_string(vr));
    else if (reason)
        snprintf(out, n, "%s", reason);
    else
        snprintf(out, n, "the connection closed during the handshake");
    ERR_clear_error();
}

/* pushes_back - a reply that says "fewer connections, or slower": 421, or a transient
 * refusal that names too many connections or a rate. */
static bool pushes_back(const smtp_result *r)
{
    if (r->local || r->outcome != SMTP_TRANSIENT)
        return false;
    return r->code == 421 || strcasestr(r->text, "too many") || strcasestr(r->text, "rate");
}

/* trace - the protocol log: what we send is ">", what the peer answers "<". */
static void trace(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    ob_conn *k = arg;
    if (kind == SMTP_TRACE_COMMAND) {
        char line[SMTP_REPLY_LINE_MAX + 2];
        size_t len = n < SMTP_REPLY_LINE_MAX ? n : SMTP_REPLY_LINE_MAX;
        memcpy(line, p, len);
        memcpy(line + len, "\r\n", 2);
        ims_protolog_reply(k->plc, line, len + 2);
    } else {
        ims_protolog_command(k->plc, p, n);
    }
}

static void rcpt_done(void *arg, const smtp_client_msg *m, size_t i, const smtp_result *r)
{
    (void)m;
    ob_conn *k = arg;
    if (pushes_back(r) && k->od->window > 1 && !k->backed_off) {
        k->od->window--;
        k->backed_off = true; /* once per connection */
    }
    if (r->outcome == SMTP_DELIVERED)
        k->delivered = true;
    if (k->job)
        ims_outq_job_result(k->job, i, r, k->remote);
}

static void committed(void *arg)
{
    ob_conn *k = arg;
    k->committing = false;
    k->job = NULL;
    if (k->ob->stopping || !k->c) {
        conn_free(k);
        return;
    }
    ob_dest *od = k->od;
    unsigned per_host = k->ob->s->max_connections_per_host ? k->ob->s->max_connections_per_host : 1;
    if (k->greeted && od->window < per_host)
        od->window++; /* deliveries go through: one more connection may be tried */
    conn_pump(k);
    if (ims_outq_dest_ready(od->d))
        dest_want(od);
}

static void msg_done(void *arg, const smtp_client_msg *m)
{
    ob_conn *k = arg;
    if (k->delivered) {
        k->delivered = false;
        k->ob->stats->msg_out++;
        k->ob->stats->bytes_out += m->size;
    }
    ims_outq_job *j = k->job;
    if (!j)
        return;
    const smtp_result *err = smtp_client_error(k->c);
    if (k->plain_retry && err) {
        k->retry = true; /* "may" and a failed handshake: this host again, in plain text */
        return;
    }
    /* A greeting, EHLO, or TLS policy or AUTH refusal: a matter of this host. */
    if (!k->greeted && err && err->stage <= SMTP_STAGE_AUTH && k->od->targets &&
        k->ti + 1 < k->od->targets->n) {
        k->retry = true; /* RFC 5321 5.1: the next exchanger first (conn_after moves on) */
        return;
    }
    ims_outq_job_tls(j, k->tls_text);
    k->sent++;
    k->committing = true;
    const smtp_client_ext *x = smtp_client_extensions(k->c);
    ims_outq_job_peer_dsn(j, x && x->dsn);
    /* The records are made durable before this connection sends the next message: the
     * only duplicate window is a 250 not yet committed (docs/ims.md). */
    ims_outq_job_finish(k->ob->q, j, committed, k);
}

/* conn_move - a new connection `step` targets on: 1 when this host could not be used (no
 * connection, greeting, EHLO, TLS or AUTH refused, dropped before a transaction): the next
 * address, the next exchanger; 0 for the same host again (in plain text, plain_retry). */
/* attempt_end - the current target's connection is over: a failure when it never got past
 * the greeting. */
static void attempt_end(ob_conn *k)
{
    if (k->attempted && !k->greeted)
        k->ob->stats->conn_out_failed++;
    k->attempted = false;
}

static bool conn_move(ob_conn *k, size_t step)
{
    attempt_end(k);
    if (!k->od->targets || k->ti + step >= k->od->targets->n)
        return false;
    smtp_client_free(k->c);
    k->c = NULL;
    if (k->bev)
        bufferevent_free(k->bev);
    k->bev = NULL;
    k->connected = false;
    k->ti += step;
    return conn_connect(k) == 0;
}

static bool conn_next_target(ob_conn *k)
{
    return conn_move(k, 1);
}

/* conn_gone - the connection ended (error, close, time-out). */
static void conn_gone(ob_conn *k, const char *why)
{
    bool early = !k->greeted;
    if (k->c && k->job && !k->committing) {
        if (early && k->sent == 0) {
            /* Before a transaction: the job is tried on the next host, unrecorded. */
            ims_outq_job *j = k->job;
            smtp_client_free(k->c);
            k->c = NULL;
            k->job = j;
            if (conn_next_target(k)) {
                return;
            }
            /* every host failed: the destination is unreachable for now */
            k->job = NULL;
            smtp_result r = {
                .outcome = SMTP_TRANSIENT, .stage = SMTP_STAGE_GREETING, .local = true};
            snprintf(r.enh, sizeof r.enh, "4.4.1");
            snprintf(r.text, sizeof r.text, "no host of %s could be reached (last %s: %s)",
                     ims_outq_dest_name(k->od->d), k->remote, why);
            for (size_t i = 0; i < ims_outq_job_msg(j)->nrcpt; i++)
                ims_outq_job_result(j, i, &r, k->remote);
            k->committing = true;
            ims_outq_job_finish(k->ob->q, j, committed, k);
            /* Every host failed for this connection; unless another one is talking to a host
             * of it right now, the destination is dead. (Not "the last connection open":
             * with messages coming one by one, another failing connection is nearly always
             * open or committing, and the destination was never marked.) */
            if (k->od->ngreeted == 0)
                dest_fail(k->od, SMTP_TRANSIENT, r.enh, r.text, k->remote);
            if (k->bev)
                bufferevent_free(k->bev);
            k->bev = NULL;
            return; /* committed() frees it */
        }
        smtp_client_eof(k->c); /* results for all, msg_done: committing */
    }
    if (k->committing) {
        smtp_client_free(k->c);
        k->c = NULL;
        if (k->bev)
            bufferevent_free(k->bev);
        k->bev = NULL;
        return; /* committed() frees it */
    }
    conn_free(k);
}

/* conn_send_direct - on a connected plain connection with nothing queued, send what the
 * socket takes of out[0..len) at once and return how much that was (0: nothing, queue it).
 * Through the bufferevent each command would cost a loop turn and two epoll_ctl calls (the
 * write event added, then removed). An error is left to the bufferevent's own write, which
 * reports it as an event. */
static size_t conn_send_direct(ob_conn *k, const char *out, size_t len)
{
    if (!k->connected || k->tls_started || evbuffer_get_length(bufferevent_get_output(k->bev)))
        return 0;
    ssize_t n = send(bufferevent_getfd(k->bev), out, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n > 0 ? (size_t)n : 0;
}

static void conn_flush(ob_conn *k)
{
    for (int round = 0; round < 64 && k->c && k->bev; round++) {
        if (evbuffer_get_length(bufferevent_get_output(k->bev)) >= OB_OUTPUT_HIGH)
            break;
        size_t len;
        const char *out = smtp_client_output(k->c, &len);
        if (!out || !len)
            break;
        /* The last round always queues: the write callback then comes back for the rest. */
        size_t direct = round < 63 ? conn_send_direct(k, out, len) : 0;
        if (direct) {
            smtp_client_output_drain(k->c, direct);
            continue;
        }
        if (bufferevent_write(k->bev, out, len)) {
            conn_gone(k, "write failed");
            return;
        }
        smtp_client_output_drain(k->c, len);
    }
    if (!k->c)
        return;
    if (smtp_client_want_close(k->c) && evbuffer_get_length(bufferevent_get_output(k->bev)) == 0) {
        conn_gone(k, "closed");
        return;
    }
    conn_arm(k);
}

/* conn_pump - give the connection its next job, or let it wait (idle) or quit. */
static void conn_pump(ob_conn *k)
{
    ob_dest *od = k->od;
    unsigned max = k->ob->s->max_messages_per_connection;
    if (!k->c || !smtp_client_ready(k->c) || (max && k->sent >= max)) {
        if (k->c && !k->job)
            smtp_client_quit(k->c);
        conn_flush(k);
        return;
    }
    ims_outq_job *j = ims_outq_take(k->ob->q, od->d);
    if (!j) {
        if (!k->idle) {
            k->idle = true;
            k->idle_next = od->idle;
            od->idle = k;
        }
        conn_arm(k);
        return;
    }
    k->job = j;
    if (smtp_client_send(k->c, ims_outq_job_msg(j))) {
        /* the queue holds what our server parsed: an address lib/smtp refuses is a bug */
        smtp_result r = {.outcome = SMTP_PERMANENT, .stage = SMTP_STAGE_MAIL, .local = true};
        snprintf(r.enh, sizeof r.enh, "5.1.3");
        snprintf(r.text, sizeof r.text, "the envelope cannot be sent (invalid address)");
        for (size_t i = 0; i < ims_outq_job_msg(j)->nrcpt; i++)
            ims_outq_job_result(j, i, &r, k->remote);
        k->committing = true;
        ims_outq_job_finish(k->ob->q, j, committed, k);
        return;
    }
    conn_flush(k);
}

static void idle_remove(ob_conn *k)
{
    if (!k->idle)
        return;
    for (ob_conn **p = &k->od->idle; *p; p = &(*p)->idle_next)
        if (*p == k) {
            *p = k->idle_next;
            break;
        }
    k->idle = false;
}

static void conn_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ob_conn *k = arg;
    if (k->idle) {
        idle_remove(k);
        smtp_client_quit(k->c);
        conn_flush(k);
        return;
    }
    if (k->c)
        smtp_client_timeout(k->c);
    conn_gone(k, "timed out");
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    ob_conn *k = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (k->c && evbuffer_get_length(in)) {
        char chunk[OB_READ_CHUNK];
        int n = evbuffer_remove(in, chunk, sizeof chunk);
        if (n <= 0)
            break;
        if (smtp_client_input(k->c, chunk, (size_t)n)) {
            conn_gone(k, "out of memory");
            return;
        }
        /* Greeted: past EHLO, STARTTLS and AUTH, a host that works. */
        if (!k->greeted && !smtp_client_error(k->c) && smtp_client_stage(k->c) >= SMTP_STAGE_MAIL) {
            k->greeted = true;
            k->od->ngreeted++;
        }
    }
    conn_after(k);
}

/* conn_after - the client took input or a handshake's end: start TLS when it asks, move to
 * another host when the job is to be tried again, or send what it has. */
static void conn_after(ob_conn *k)
{
    if (!k->c)
        return;
    if (smtp_client_tls_wanted(k->c) && !k->tls_started) {
        conn_start_tls(k);
        return;
    }
    const smtp_result *err = smtp_client_error(k->c);
    if (k->retry) {
        k->retry = false;
        if (!conn_move(k, k->plain_retry ? 0 : 1)) {
            k->committing = true;
            ims_outq_job_finish(k->ob->q, k->job, committed, k);
            if (k->bev)
                bufferevent_free(k->bev);
            k->bev = NULL;
        }
        return;
    }
    if (err && pushes_back(err) && k->od->window > 1)
        k->od->window--; /* the host pushes back: one connection fewer (Postfix's feedback) */
    conn_flush(k);
}

static void conn_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    ob_conn *k = arg;
    if (k->c)
        conn_flush(k);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    ob_conn *k = arg;
    bool handshake = k->tls_started && k->c && smtp_client_tls_wanted(k->c);
    if ((what & BEV_EVENT_CONNECTED) && handshake) {
        SSL *ssl = bufferevent_openssl_get_ssl(bev);
        k->ob->stats->tls_out_ok++;
        snprintf(k->tls_text, sizeof k->tls_text, "%s %s", SSL_get_version(ssl),
                 SSL_get_cipher_name(ssl));
        smtp_client_tls_done(k->c, true, NULL);
        conn_after(k);
        return;
    }
    if (what & BEV_EVENT_CONNECTED) {
        k->connected = true;
        conn_flush(k);
        return;
    }
    if ((what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) && handshake) {
        char why[300];
        k->ob->stats->tls_out_failed++;
        tls_why(k, bev, why, sizeof why);
        if (k->tls == SMTP_TLS_MAY) {
            /* The connection is gone; the next one to this host goes in plain text. */
            plain_remember(k->ob, &k->od->targets->v[k->ti].ip, dest_port(k->od));
            k->plain_retry = true;
        }
        smtp_client_tls_done(k->c, false, why);
        conn_after(k);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        int e = EVUTIL_SOCKET_ERROR();
        conn_gone(k, what & BEV_EVENT_EOF ? "connection closed" : evutil_socket_error_to_string(e));
    }
}

static int conn_connect(ob_conn *k)
{
    imsd_outbound *ob = k->ob;
    remote_text(&k->od->targets->v[k->ti].ip, k->remote, sizeof k->remote);
    smtp_client_config cfg = {.helo = ob->helo, .max_recipients = ob->s->max_recipients};
    if (cfg.max_recipients > SMTP_CLIENT_RCPT_LIMIT)
        cfg.max_recipients = SMTP_CLIENT_RCPT_LIMIT;
    ob_dest *od = k->od;
    ims_dest_tls dt;
    ims_settings_dest_tls(ob->s, ims_outq_dest_route(od->d), ims_outq_dest_name(od->d), &dt);
    k->tls = dt.policy;
    k->ctx = tls_ctx_for(ob, dt.ca_file);
    k->tls_started = false;
    k->tls_text[0] = 0;
    if (k->tls == SMTP_TLS_MAY &&
        (k->plain_retry || plain_host(ob, &od->targets->v[k->ti].ip, dest_port(od))))
        k->tls = SMTP_TLS_NONE;
    k->plain_retry = false;
    cfg.tls = k->tls;
    const char *user, *pass;
    if (ims_creds_find(ob->creds, ob->s, ims_outq_dest_route(od->d), ims_outq_dest_name(od->d),
                       &user, &pass)) {
        cfg.auth_user = user;
        cfg.auth_pass = pass;
    }
    smtp_client_callbacks cb = {.arg = k, .rcpt_done = rcpt_done, .msg_done = msg_done};
    /* The level may have changed since the last host (the Diagnostics key is live). */
    ims_protolog_end(k->plc, "Closed: trying the next host");
    k->plc = NULL;
    if (ims_protolog_level(ob->plog) > IMS_LEVEL_NONE) { /* off: no number used */
        cb.trace = trace;
        char where[IMS_OUTQ_HOST_TEXT + 8];
        snprintf(where, sizeof where, "%s:%u", k->remote, dest_port(k->od));
        ims_protolog_begin_out(ob->plog, ++*ob->conn_ids, where, &k->plc);
    }
    if (smtp_client_new(&cfg, &cb, &k->c))
        return -1;
    struct sockaddr_storage ss;
    socklen_t len;
    target_sockaddr(k, &ss, &len);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    /* The end of a message is a small write after a large one: without this, Nagle holds it
     * until the peer's (delayed) acknowledgement of the rest. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    k->bev = bufferevent_socket_new(ob->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!k->bev) {
        close(fd);
        return -1;
    }
    ob->stats->conn_out_total++;
    k->attempted = true;
    bufferevent_setcb(k->bev, conn_read, conn_write, conn_event, k);
    bufferevent_enable(k->bev, EV_READ | EV_WRITE);
    if (k->job && smtp_client_send(k->c, ims_outq_job_msg(k->job)))
        return -1;
    if (bufferevent_socket_connect(k->bev, (struct sockaddr *)&ss, (int)len)) {
        /* refused at once: libevent reports it through conn_event on some systems, here */
        return conn_next_target(k) ? 0 : -1;
    }
    conn_arm(k);
    return 0;
}

static void conn_free(ob_conn *k)
{
    imsd_outbound *ob = k->ob;
    attempt_end(k);
    idle_remove(k);
    if (k->prev)
        k->prev->next = k->next;
    else
        ob->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    ob->nconn--;
    ob->stats->conn_out_current = ob->nconn;
    k->od->nconn--;
    if (k->greeted)
        k->od->ngreeted--;
    if (k->timer)
        event_free(k->timer);
    char summary[64 + OB_TLS_TEXT];
    snprintf(summary, sizeof summary, "Closed: %u message(s) sent%s%s", k->sent,
             k->tls_text[0] ? ", under " : "", k->tls_text);
    ims_protolog_end(k->plc, summary);
    smtp_client_free(k->c);
    if (k->bev)
        bufferevent_free(k->bev);
    ob_dest *od = k->od;
    free(k);
    if (!ob->stopping)
        dest_want(od);
}

static void conn_open(ob_dest *od)
{
    imsd_outbound *ob = od->ob;
    ob_conn *k = calloc(1, sizeof *k);
    if (!k)
        return;
    k->ob = ob;
    k->od = od;
    k->timer = evtimer_new(ob->base, conn_timer, k);
    if (!k->timer) {
        free(k);
        return;
    }
    k->next = ob->conns;
    if (ob->conns)
        ob->conns->prev = k;
    ob->conns = k;
    ob->nconn++;
    ob->stats->conn_out_current = ob->nconn;
    od->nconn++;
    k->job = ims_outq_take(ob->q, od->d);
    if (!k->job) {
        conn_free(k);
        return;
    }
    if (conn_connect(k)) {
        conn_gone(k, "cannot connect");
    }
}

/* dest_want - the destination has jobs: idle connections take them, new ones open as the
 * limits allow, the hosts are looked up first when needed. */
static void dest_want(ob_dest *od)
{
    imsd_outbound *ob = od->ob;
    while (od->idle && ims_outq_dest_ready(od->d)) {
        ob_conn *k = od->idle;
        idle_remove(k);
        conn_pump(k);
    }
    if (!ims_outq_dest_ready(od->d) || od->resolving)
        return;
    uint64_t now = ims_clock_ms();
    if (!od->targets || now - od->targets_at > OB_TARGETS_MS) {
        if (od->nconn == 0) {
            resolve(od);
            return;
        }
    }
    unsigned total = ob->s->max_outbound_connections ? ob->s->max_outbound_connections : 1;
    for (int guard = 0; guard < 1000 && ims_outq_dest_ready(od->d) > 0 && od->nconn < od->window &&
                        ob->nconn < total;
         guard++) {
        size_t before = ims_outq_dest_ready(od->d);
        conn_open(od);
        if (ims_outq_dest_ready(od->d) >= before)
            break;
    }
}

/* --- the queue on the loop ----------------------------------------------------------------- */

static void queue_ready(void *arg, ims_outq_dest *d)
{
    imsd_outbound *ob = arg;
    if (ob->stopping)
        return;
    ob_dest *od = dest_of(ob, d);
    if (od)
        dest_want(od);
}

static void queue_run(imsd_outbound *ob)
{
    ims_outq_dispatch(ob->q, ims_clock_ms());
    arm_queue_timer(ob);
}

static void queue_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    queue_run(arg);
}

static void arm_queue_timer(imsd_outbound *ob)
{
    uint64_t due, now = ims_clock_ms();
    if (!ims_outq_next_due(ob->q, &due)) {
        event_del(ob->q_timer);
        return;
    }
    uint64_t ms = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(ob->q_timer, &tv);
}

imsd_outbound *imsd_outbound_new(struct event_base *base, const ims_settings *s, ims_log *log,
                                 const imsd_outbound_options *o)
{
    imsd_outbound *ob = calloc(1, sizeof *ob);
    if (!ob)
        return NULL;
    ob->base = base;
    ob->s = s;
    ob->log = log;
    ob->stats = o->stats;
    snprintf(ob->helo, sizeof ob->helo, "%s", o->fqdn);
    ob->router = o->router;
    ob->self.listen = s->listen;
    ob->self.nlisten = s->nlisten;
    ims_outq_options qo = {
        .settings = s,
        .spool = NULL,
        .router = o->router,
        .tracking = o->tracking,
        .log = log,
        .host = o->fqdn,
        .bad_dir = o->bad_dir,
        .store_dir = o->store_dir,
        .ready = queue_ready,
        .ready_arg = ob,
        .time_offset = o->time_offset,
    };
    char servers[IMS_DNS_SERVERS_MAX];
    ims_dns_options dopt = {.servers = servers, .sock_fn = dns_sock, .sock_arg = ob};
    int e = ims_outq_open(s->root_dir, &qo, &ob->q);
    if (e) {
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to open the outbound queue in %s/Out: %s", s->root_dir, strerror(e));
        free(ob);
        return NULL;
    }
    if (ims_dns_servers_join(s, servers, sizeof servers))
        servers[0] = 0;
    /* Without a resolver (an unreadable resolv.conf, say) the service still runs: inbound
     * mail and smart hosts given as addresses work, DNS routes wait (4.4.3) for a restart. */
    if (ims_dns_new(&dopt, &ob->dns)) {
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to start the DNS resolver (%s): mail routed by DNS waits until "
                      "it can start",
                      servers[0] ? servers : "/etc/resolv.conf");
        ob->dns = NULL;
    }
    /* TLS contexts for every CA file a destination may use, and the credentials: read now,
     * so the loop never waits for the disk. */
    tls_ca_add(ob, "");
    tls_ca_add(ob, s->tls_ca_file);
    for (size_t i = 0; i < s->nroutes; i++)
        tls_ca_add(ob, s->routes[i].tls_ca_file);
    char why[PATH_MAX + 128];
    e = ims_creds_load(s->client_credentials_file, &ob->creds, why, sizeof why);
    if (e && e != ENOENT)
        ims_log_event(log, IMS_EV_OUT_CREDENTIALS, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The client credentials file is not used, so no AUTH is done: %s", why);
    e = 0;
    ob->q_ev = event_new(base, ims_outq_fd(ob->q), EV_READ | EV_PERSIST, queue_io, ob);
    ob->q_timer = evtimer_new(base, queue_io, ob);
    ob->dns_timer = evtimer_new(base, dns_tick, ob);
    if (e || !ob->q_ev || !ob->q_timer || !ob->dns_timer || event_add(ob->q_ev, NULL)) {
        imsd_outbound_free(ob);
        return NULL;
    }
    return ob;
}

ims_outq *imsd_outbound_queue(imsd_outbound *ob)
{
    return ob ? ob->q : NULL;
}

void imsd_outbound_queue_stats(const imsd_outbound *ob, ims_outq_stats *st)
{
    ims_outq_get_stats(ob->q, st);
}

void imsd_outbound_set_protolog(imsd_outbound *ob, ims_protolog *pl, uint64_t *conn_ids)
{
    ob->plog = pl;
    ob->conn_ids = conn_ids;
}

void imsd_outbound_set_spool(imsd_outbound *ob, ims_spool *sp)
{
    ims_outq_set_spool(ob->q, sp);
    queue_run(ob);
}

void imsd_outbound_receipt(void *arg, const char *sender, const void *data, size_t len)
{
    imsd_outbound *ob = arg;
    ims_outq_receipt(ob->q, sender, data, len);
}

void imsd_outbound_handover(void *arg, const char *qid)
{
    imsd_outbound *ob = arg;
    ims_outq_handover(ob->q, qid);
}

void imsd_outbound_stop(imsd_outbound *ob)
{
    if (!ob || ob->stopping)
        return;
    ob->stopping = true;
    /* Every connection ends now: what was in flight is deferred (4.4.2) and recorded. */
    for (ob_conn *k = ob->conns, *next; k; k = next) {
        next = k->next;
        if (k->committing)
            continue;
        if (k->c && k->job)
            smtp_client_eof(k->c);
        if (!k->committing)
            conn_free(k);
    }
    ims_outq_stop(ob->q);
}

void imsd_outbound_free(imsd_outbound *ob)
{
    if (!ob)
        return;
    ob->stopping = true;
    ims_outq_stop(ob->q);
    while (ob->conns) {
        ob_conn *k = ob->conns;
        k->committing = false;
        conn_free(k);
    }
    ims_dns_free(ob->dns); /* closes its sockets: dns_sock frees their events */
    for (size_t i = 0; i < OB_MAX_DNS_FDS; i++)
        if (ob->dns_fds[i].ev)
            event_free(ob->dns_fds[i].ev);
    if (ob->q_ev)
        event_free(ob->q_ev);
    if (ob->q_timer)
        event_free(ob->q_timer);
    if (ob->dns_timer)
        event_free(ob->dns_timer);
    ims_outq_close(ob->q);
    for (ob_dest *od = ob->dests, *next; od; od = next) {
        next = od->all_next;
        ims_dns_result_free(od->targets);
        free(od);
    }
    for (size_t i = 0; i < ob->ncas; i++)
        SSL_CTX_free(ob->cas[i].ctx);
    ims_creds_free(ob->creds);
    free(ob);
}
