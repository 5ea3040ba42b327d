/* conn.c - inbound connections: the listeners, each accepted connection's life (buffers, a
 * deadline, closing once the last byte is sent), and the bounded wait for them at shutdown.
 * What is said on a connection belongs to session.c. */
#include "imsd.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#define ACCEPT_PAUSE_SECONDS 1 /* after accept() fails (EMFILE...): wait before retrying */
/* Bytes read from a client and not yet taken by its session, beyond which libevent stops
 * reading the socket: a client that sends without end is held back by TCP, not our memory. */
#define CONN_INPUT_MAX (256 * 1024)

struct imsd_conn {
    imsd_server *srv;
    struct bufferevent *bev;
    struct event *deadline; /* made at the first imsd_conn_set_deadline */
    imsd_conn *prev, *next;
    void *session;
    bool closing;   /* close once the output is sent */
    bool lingering; /* output sent, write side shut: awaiting the peer's close */
    bool tls_wait;  /* STARTTLS answered: start TLS once the 220 is sent */
    bool tls;       /* the bufferevent is OpenSSL's (the handshake may still be running) */
    bool tls_up;    /* ... and the handshake is done */
    uint8_t kind;   /* the listener's ims_listen_kind */
    char peer[IMSD_ADDR_MAX];
};

static void server_check_done(imsd_server *srv)
{
    if (srv->stopping && !srv->conns)
        event_base_loopbreak(srv->base);
}

static void conn_free(imsd_conn *c)
{
    imsd_server *srv = c->srv;
    imsd_session_closed(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->stats->conn_in_current--;
    if (c->closing)
        srv->nclosing--;
    if (c->deadline)
        event_free(c->deadline);
    /* Safe inside the bufferevent's own callbacks: libevent defers the actual free. */
    bufferevent_free(c->bev);
    free(c);
    server_check_done(srv);
}

/* conn_linger - everything was sent: shut our side and read until the peer closes, so that
 * bytes it sent meanwhile do not make the kernel reset the connection under our reply. */
static void conn_linger(imsd_conn *c)
{
    c->lingering = true;
    bufferevent_disable(c->bev, EV_WRITE);
    if (c->tls_up) {
        /* TLS's own end first (RFC 8446 6.1): a client must be able to tell our close from
         * a truncation. The socket is non-blocking; a close_notify that does not fit is lost,
         * which the client sees as the TCP close it is anyway. */
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl)
            SSL_shutdown(ssl);
    }
    if (c->srv->stopping || shutdown(bufferevent_getfd(c->bev), SHUT_WR))
        conn_free(c);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    imsd_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->closing) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    imsd_session_input(c, in);
}

static void conn_tls_switch(imsd_conn *c);

static void conn_write(struct bufferevent *bev, void *arg)
{
    imsd_conn *c = arg;
    if (c->tls_wait && !c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_tls_switch(c);
        return;
    }
    if (c->closing) {
        if (!c->lingering && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_linger(c);
        return;
    }
    imsd_session_drained(c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    imsd_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) { /* only OpenSSL's: the handshake is done */
        c->tls_up = true;
        c->srv->stats->tls_in_ok++;
        imsd_session_tls_ready(c);
        return;
    }
    /* The peer stopped sending but may still read: finish the reply first. */
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->closing && !c->lingering &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        bufferevent_disable(bev, EV_READ);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (c->tls && !c->tls_up)
            c->srv->stats->tls_in_failed++; /* ended before the handshake did */
        conn_free(c);
    }
}

static void conn_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_conn *c = arg;
    if (c->closing)
        conn_free(c); /* the peer does not even take our last words */
    else
        imsd_session_timeout(c);
}

void imsd_addr_text(const struct sockaddr *sa, int salen, char *out, size_t size)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (sa && salen > 0 &&
        !getnameinfo(sa, (socklen_t)salen, host, sizeof host, serv, sizeof serv,
                     NI_NUMERICHOST | NI_NUMERICSERV))
        snprintf(out, size, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
    else
        snprintf(out, size, "unknown");
}

/* conn_tls_bev - an OpenSSL bufferevent that answers a handshake on fd (closed with it), or
 * NULL (fd is then not closed). */
static struct bufferevent *conn_tls_bev(imsd_server *srv, evutil_socket_t fd)
{
    SSL_CTX *ctx = imsd_tls_ctx(srv->tls);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    return bev;
}

static uint8_t listener_kind(imsd_server *srv, struct evconnlistener *l)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        if (srv->listeners[i] == l)
            return srv->kinds[i];
    return IMS_LISTEN_SMTP;
}

/* refuse_fd - a connection we have no descriptors to serve: 421 (not on a TLS-first
 * listener, where plain text means nothing), close, and an event at most once a minute. */
static void refuse_fd(imsd_server *srv, int fd, uint8_t kind, const char *why)
{
    srv->stats->conn_in_rejected++;
    if (kind != IMS_LISTEN_SUBMISSIONS)
        imsd_session_refuse_fd(srv, fd);
    close(fd);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    srv->fd_unlogged++;
    if (srv->fd_logged && now - srv->fd_logged < 60000)
        return;
    ims_log_event(srv->log, IMS_EV_INBOUND_REFUSED, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                  IMS_LEVEL_NONE,
                  "An inbound connection was refused: %s (the open files limit, RLIMIT_NOFILE); "
                  "the sessions open go on; %llu refused since the last such event",
                  why, (unsigned long long)srv->fd_unlogged);
    srv->fd_logged = now ? now : 1;
    srv->fd_unlogged = 0;
}

static void conn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, void *arg)
{
    imsd_server *srv = arg;
    srv->stats->conn_in_total++;
    uint8_t kind = listener_kind(srv, l);
    if (srv->fd_cap && fd >= srv->fd_cap) {
        refuse_fd(srv, fd, kind, "too few descriptors are left for the sessions' own files");
        return;
    }
    imsd_conn *c = calloc(1, sizeof *c);
    if (!c) {
        srv->stats->conn_in_rejected++;
        close(fd);
        return;
    }
    c->srv = srv;
    c->kind = kind;
    /* Replies are whole lines written at once: Nagle would only hold one back for the
     * client's delayed ACK (40 ms after a TLS handshake, whose tickets go out first). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    imsd_addr_text(sa, salen, c->peer, sizeof c->peer);
    if (kind == IMS_LISTEN_SUBMISSIONS) {
        /* RFC 8314: TLS from the first byte; without a usable certificate nothing can be
         * said (event 4168 told the administrator at start or at the failed reload). */
        c->bev = conn_tls_bev(srv, fd);
        c->tls = c->bev != NULL;
    } else {
        c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        srv->stats->conn_in_rejected++;
        close(fd);
        free(c);
        return;
    }
    bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, CONN_INPUT_MAX);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats->conn_in_current++;
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE)) {
        srv->stats->conn_in_rejected++;
        conn_free(c);
        return;
    }
    imsd_session_open(c);
}

static void accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_server *srv = arg;
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_enable(srv->listeners[i]);
}

/* server_pause_event - the timer that resumes accepting, shared by the listeners; made at
 * the first failure. */
static struct event *server_pause_event(imsd_server *srv)
{
    if (!srv->pause)
        srv->pause = evtimer_new(srv->base, accept_resume, srv);
    return srv->pause;
}

/* accept_error - accept() failed for a reason that will not pass by itself at once (out of
 * descriptors or memory): pause every listener instead of spinning on a readable socket. */
static void accept_error(struct evconnlistener *l, void *arg)
{
    imsd_server *srv = arg;
    int e = EVUTIL_SOCKET_ERROR();
    if ((e == EMFILE || e == ENFILE) && srv->spare_fd >= 0) {
        /* The descriptor kept for this: given up, the waiting client is taken and told, then
         * kept again. Paused instead, the client would wait in the backlog for nothing. */
        close(srv->spare_fd);
        int fd = accept4(evconnlistener_get_fd(l), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        srv->spare_fd = -1;
        if (fd >= 0)
            refuse_fd(srv, fd, listener_kind(srv, l), strerror(e));
        srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd >= 0 && srv->spare_fd >= 0)
            return; /* the next client (if any) makes the listener readable again */
    }
    struct event *pause = server_pause_event(srv);
    ims_log_event(srv->log, IMS_EV_INTERNAL, IMS_CAT_SMTP_INTERFACE, IMS_SEV_WARNING,
                  IMS_LEVEL_NONE, "Unable to accept an inbound connection: %s; pausing for %d s",
                  strerror(e), ACCEPT_PAUSE_SECONDS);
    if (!pause)
        return;
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_disable(srv->listeners[i]);
    struct timeval tv = {ACCEPT_PAUSE_SECONDS, 0};
    evtimer_add(pause, &tv);
}

int imsd_server_init(imsd_server *srv, struct event_base *base, const ims_settings *s, ims_log *log,
                     imsd_stats *st, imsd_bound *bound, size_t nbound)
{
    memset(srv, 0, sizeof *srv);
    srv->base = base;
    srv->settings = s;
    srv->log = log;
    srv->stats = st;
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < INT_MAX) {
        /* Descriptors are numbered lowest first: a connection's number tells how many are
         * open. A quarter of a small limit is kept, IMSD_FD_RESERVE of a large one. */
        rlim_t reserve = rl.rlim_cur / 4 < IMSD_FD_RESERVE ? rl.rlim_cur / 4 : IMSD_FD_RESERVE;
        srv->fd_cap = (int)(rl.rlim_cur - reserve);
    }
    int rc = 0;
    for (size_t i = 0; i < nbound; i++) {
        struct evconnlistener *l =
            rc ? NULL
               : evconnlistener_new(base, conn_accept, srv,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, bound[i].fd);
        if (!l) {
            rc = ENOMEM;
            close(bound[i].fd); /* ours now, even on failure */
        } else {
            evconnlistener_set_error_cb(l, accept_error);
            srv->kinds[srv->nlisteners] = bound[i].kind;
            srv->listeners[srv->nlisteners++] = l;
        }
        bound[i].fd = -1;
    }
    return rc;
}

static void server_close_listeners(imsd_server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++)
        evconnlistener_free(srv->listeners[i]);
    srv->nlisteners = 0;
    if (srv->pause)
        event_free(srv->pause);
    srv->pause = NULL;
}

static void server_close_all(imsd_server *srv)
{
    while (srv->conns)
        conn_free(srv->conns);
}

static void drain_expired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_server *srv = arg;
    server_close_all(srv);
    event_base_loopbreak(srv->base);
}

void imsd_server_stop(imsd_server *srv, unsigned timeout)
{
    if (srv->stopping) {
        /* Asked again: stop waiting. */
        server_close_all(srv);
        event_base_loopbreak(srv->base);
        return;
    }
    srv->stopping = true;
    server_close_listeners(srv);
    for (imsd_conn *c = srv->conns, *next; c; c = next) {
        next = c->next; /* either call may free c */
        if (c->lingering)
            conn_free(c);
        else
            imsd_session_stopping(c);
    }
    if (!srv->conns) {
        event_base_loopbreak(srv->base);
        return;
    }
    struct timeval tv = {(time_t)timeout, 0};
    srv->drain = evtimer_new(srv->base, drain_expired, srv);
    if (!srv->drain || evtimer_add(srv->drain, &tv)) {
        server_close_all(srv);
        event_base_loopbreak(srv->base);
    }
}

void imsd_server_free(imsd_server *srv)
{
    server_close_listeners(srv);
    server_close_all(srv);
    if (srv->spare_fd >= 0)
        close(srv->spare_fd);
    srv->spare_fd = -1;
    if (srv->drain)
        event_free(srv->drain);
    srv->drain = NULL;
}

unsigned imsd_server_in_use(const imsd_server *srv)
{
    uint64_t open = srv->stats->conn_in_current;
    return open > srv->nclosing ? (unsigned)(open - srv->nclosing) : 0;
}

imsd_conn *imsd_server_conns(const imsd_server *srv)
{
    return srv->conns;
}

imsd_conn *imsd_conn_next(const imsd_conn *c)
{
    return c->next;
}

bool imsd_conn_closing(const imsd_conn *c)
{
    return c->closing;
}

/* --- what a session may do with its connection ----------------------------------------- */

imsd_server *imsd_conn_server(const imsd_conn *c)
{
    return c->srv;
}

const char *imsd_conn_peer(const imsd_conn *c)
{
    return c->peer;
}

int imsd_conn_fd(const imsd_conn *c)
{
    return (int)bufferevent_getfd(c->bev);
}

struct evbuffer *imsd_conn_input(imsd_conn *c)
{
    return bufferevent_get_input(c->bev);
}

void imsd_conn_reading(imsd_conn *c, bool on)
{
    if (c->tls_wait)
        return; /* nothing is read until TLS is on */
    if (on)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
}

size_t imsd_conn_output_len(imsd_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

int imsd_conn_write(imsd_conn *c, const void *data, size_t len)
{
    /* A reply on a plain connection with nothing queued before it goes straight to the
     * socket: through the bufferevent it would cost a loop turn and two epoll_ctl calls (the
     * write event added, then removed) for the few bytes a reply is. What the socket does
     * not take now is queued as before. */
    if (!c->tls && !c->tls_wait && len &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        ssize_t n = send(bufferevent_getfd(c->bev), data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) { /* on an error the bufferevent's own write reports it, as an event */
            data = (const char *)data + n;
            len -= (size_t)n;
        }
        if (!len)
            return 0;
    }
    return bufferevent_write(c->bev, data, len) ? -1 : 0;
}

void imsd_conn_close_when_sent(imsd_conn *c)
{
    if (!c->closing)
        c->srv->nclosing++;
    c->closing = true;
    /* Never from here, even with everything sent (imsd_conn_write may have sent it at once):
     * a failed shutdown frees the connection, and the caller's session must outlive this
     * call. conn_write lingers from the loop. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        bufferevent_trigger(c->bev, EV_WRITE, BEV_OPT_DEFER_CALLBACKS);
}

void imsd_conn_close(imsd_conn *c)
{
    conn_free(c);
}

/* conn_tls_switch - the 220 to STARTTLS is sent: the same socket gets an OpenSSL
 * bufferevent that answers the client's handshake. Whatever the client sent after its
 * STARTTLS line is thrown away, unread by anyone (RFC 3207 5, CVE-2011-0411): bytes still in
 * the kernel would be taken for the handshake and end it. */
static void conn_tls_switch(imsd_conn *c)
{
    c->tls_wait = false;
    struct bufferevent *old = c->bev;
    evutil_socket_t fd = bufferevent_getfd(old);
    struct evbuffer *in = bufferevent_get_input(old);
    evbuffer_drain(in, evbuffer_get_length(in));
    struct bufferevent *bev = conn_tls_bev(c->srv, fd);
    if (!bev) {
        conn_free(c); /* closes fd with the old bufferevent */
        return;
    }
    /* The old one lets go of the socket without closing it; libevent frees it once its
     * callback (we may be in it) returns. */
    bufferevent_setcb(old, NULL, NULL, NULL, NULL);
    bufferevent_disable(old, EV_READ | EV_WRITE);
    bufferevent_setfd(old, -1);
    bufferevent_free(old);
    c->bev = bev;
    c->tls = true;
    bufferevent_setcb(bev, conn_read, conn_write, conn_event, c);
    bufferevent_setwatermark(bev, EV_READ, 0, CONN_INPUT_MAX);
    if (bufferevent_enable(bev, EV_READ | EV_WRITE))
        conn_free(c);
}

int imsd_conn_start_tls(imsd_conn *c)
{
    if (c->tls || !imsd_tls_ctx(c->srv->tls))
        return -1;
    c->tls_wait = true;
    bufferevent_disable(c->bev, EV_READ);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    /* Never switch from here: the caller's session must not be freed under it. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        bufferevent_trigger(c->bev, EV_WRITE, BEV_OPT_DEFER_CALLBACKS);
    return 0;
}

void imsd_conn_tls_text(const imsd_conn *c, char *out, size_t size)
{
    if (!c->tls_up) {
        if (size)
            out[0] = 0;
        return;
    }
    imsd_tls_describe(bufferevent_openssl_get_ssl(c->bev), out, size);
}

void imsd_server_states(imsd_server *srv, imsd_snap *out)
{
    out->nstates = 0;
    for (imsd_conn *c = srv->conns; c; c = c->next) {
        const char *name = c->tls_wait || (c->tls && !c->tls_up) ? "tls-handshake"
                           : c->closing                          ? "closing"
                                                                 : imsd_session_state(c);
        size_t i = 0;
        while (i < out->nstates && strcmp(out->state_name[i], name))
            i++;
        if (i == out->nstates) {
            if (i == IMSD_SESSION_STATES_MAX)
                continue; /* more names than lib/smtp has: not counted */
            out->state_name[i] = name;
            out->state_count[i] = 0;
            out->nstates++;
        }
        out->state_count[i]++;
    }
}

unsigned imsd_conn_kind(const imsd_conn *c)
{
    return c->kind;
}

int imsd_conn_set_deadline(imsd_conn *c, unsigned seconds)
{
    if (!c->deadline && !(c->deadline = evtimer_new(c->srv->base, conn_deadline, c)))
        return -1;
    struct timeval tv = {(time_t)seconds, 0};
    return evtimer_add(c->deadline, &tv) ? -1 : 0;
}

void imsd_conn_set_session(imsd_conn *c, void *session)
{
    c->session = session;
}

void *imsd_conn_session(const imsd_conn *c)
{
    return c->session;
}
