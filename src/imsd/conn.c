/* conn.c - inbound connections: the listeners, each accepted connection's life (buffers, a
 * deadline, closing once the last byte is sent), and the bounded wait for them at shutdown.
 * What is said on a connection belongs to session.c. */
#include "imsd.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static void conn_write(struct bufferevent *bev, void *arg)
{
    imsd_conn *c = arg;
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
    /* The peer stopped sending but may still read: finish the reply first. */
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->closing && !c->lingering &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        bufferevent_disable(bev, EV_READ);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(c);
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

static void conn_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                        int salen, void *arg)
{
    (void)l;
    imsd_server *srv = arg;
    srv->stats->conn_in_total++;
    imsd_conn *c = calloc(1, sizeof *c);
    if (!c) {
        srv->stats->conn_in_rejected++;
        close(fd);
        return;
    }
    c->srv = srv;
    imsd_addr_text(sa, salen, c->peer, sizeof c->peer);
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
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
    (void)l;
    imsd_server *srv = arg;
    int e = EVUTIL_SOCKET_ERROR();
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
    if (srv->drain)
        event_free(srv->drain);
    srv->drain = NULL;
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
    return bufferevent_write(c->bev, data, len) ? -1 : 0;
}

void imsd_conn_close_when_sent(imsd_conn *c)
{
    c->closing = true;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_linger(c);
}

void imsd_conn_close(imsd_conn *c)
{
    conn_free(c);
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
