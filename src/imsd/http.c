/* http.c - the service's HTTP endpoint on MetricsAddress: libevent's evhttp on imsd's loop,
 * bounded (headers, body, time, connections), GET and HEAD, and POST on the routes made for
 * it, with a table of routes (/metrics is stats.c's, the administrator's page admin.c's) and
 * answers that may come later (deferred). */
#include "imsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>

typedef struct http_route {
    char path[IMSD_HTTP_PATH_MAX];
    imsd_http_fn fn;
    void *arg;
    bool post; /* POST only (else GET and HEAD) */
} http_route;

/* A request answered later; its connection may close meanwhile. */
typedef struct http_deferred {
    struct evhttp_request *req;
    imsd_http_cancel_fn cancel;
    void *arg;
} http_deferred;

struct imsd_http {
    struct evhttp *http;
    ims_log *log;
    http_route routes[IMSD_HTTP_ROUTES_MAX];
    size_t nroutes;
    /* The connections that have sent a request: evhttp has no limit of its own, so each is
     * counted at its first request and forgotten when it closes. */
    struct evhttp_connection *conns[IMSD_HTTP_CONNECTIONS_MAX];
    size_t nconns;
    http_deferred deferred[IMSD_HTTP_CONNECTIONS_MAX]; /* one request per connection at most */
    size_t ndeferred;
};

int imsd_http_bind(const ims_settings *s, ims_log *log, imsd_bound *out)
{
    out->fd = -1;
    out->name[0] = 0;
    if (!s->metrics_address[0])
        return IMS_OK;
    ims_listen l;
    if (ims_metrics_address_parse(s->metrics_address, &l)) {
        /* The settings' table checks it already; this only guards a caller of its own. */
        ims_log_event(log, IMS_EV_LISTEN_FAILED, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "MetricsAddress \"%s\" is not address:port", s->metrics_address);
        return IMS_EV_LISTEN_FAILED;
    }
    int rc = imsd_listen_one(&l, log, out);
    if (rc)
        return rc;
    if (!ims_listen_loopback(&l))
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "The metrics endpoint listens on %s, which is not a loopback address: "
                      "anyone who can reach it reads the service's counters",
                      out->name);
    return IMS_OK;
}

/* cancel_deferred - the deferred requests on evcon (NULL: all) go: evhttp frees them. A
 * request evhttp has already detached from its closed connection (it does so when the
 * client goes away before the answer) has no connection and stays: answering frees it. */
static void cancel_deferred(imsd_http *h, struct evhttp_connection *evcon)
{
    for (size_t i = 0; i < h->ndeferred;) {
        http_deferred d = h->deferred[i];
        if (evcon && evhttp_request_get_connection(d.req) != evcon) {
            i++;
            continue;
        }
        h->deferred[i] = h->deferred[--h->ndeferred];
        d.cancel(d.arg);
    }
}

static void conn_closed(struct evhttp_connection *evcon, void *arg)
{
    imsd_http *h = arg;
    cancel_deferred(h, evcon);
    for (size_t i = 0; i < h->nconns; i++)
        if (h->conns[i] == evcon) {
            h->conns[i] = h->conns[--h->nconns];
            return;
        }
}

/* admit - count the request's connection; false when IMSD_HTTP_CONNECTIONS_MAX others are. */
static bool admit(imsd_http *h, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (!evcon)
        return false;
    for (size_t i = 0; i < h->nconns; i++)
        if (h->conns[i] == evcon)
            return true;
    if (h->nconns == IMSD_HTTP_CONNECTIONS_MAX)
        return false;
    h->conns[h->nconns++] = evcon;
    evhttp_connection_set_closecb(evcon, conn_closed, h);
    return true;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    imsd_http *h = arg;
    if (!admit(h, req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evhttp_send_error(req, 503, "Too many connections");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    for (size_t i = 0; path && i < h->nroutes; i++)
        if (!strcmp(h->routes[i].path, path)) {
            if (h->routes[i].post != (method == EVHTTP_REQ_POST)) {
                evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                                  h->routes[i].post ? "POST" : "GET, HEAD");
                evhttp_send_error(req, 405, "Method Not Allowed");
                return;
            }
            h->routes[i].fn(h->routes[i].arg, req);
            return;
        }
    evhttp_send_error(req, HTTP_NOTFOUND, NULL);
}

int imsd_http_open(struct event_base *base, imsd_bound *bound, ims_log *log, imsd_http **out)
{
    *out = NULL;
    imsd_http *h = calloc(1, sizeof *h);
    if (h)
        h->http = evhttp_new(base);
    if (!h || !h->http || evhttp_accept_socket(h->http, bound->fd)) {
        if (h && h->http)
            evhttp_free(h->http);
        free(h);
        close(bound->fd);
        bound->fd = -1;
        return ENOMEM;
    }
    bound->fd = -1; /* evhttp's now */
    h->log = log;
    evhttp_set_max_headers_size(h->http, IMSD_HTTP_HEADERS_MAX);
    evhttp_set_max_body_size(h->http, IMSD_HTTP_BODY_MAX);
    evhttp_set_timeout(h->http, IMSD_HTTP_TIMEOUT);
    /* POST reaches only the routes made for it (on_request); its body is bounded above. */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_gencb(h->http, on_request, h);
    *out = h;
    return 0;
}

/* route_add - path answered by fn, for POST or for GET and HEAD. */
static int route_add(imsd_http *h, const char *path, imsd_http_fn fn, void *arg, bool post)
{
    size_t n = strlen(path);
    if (path[0] != '/' || n >= IMSD_HTTP_PATH_MAX || !fn)
        return EINVAL;
    for (size_t i = 0; i < h->nroutes; i++)
        if (!strcmp(h->routes[i].path, path))
            return EEXIST;
    if (h->nroutes == IMSD_HTTP_ROUTES_MAX)
        return ENOSPC;
    http_route *r = &h->routes[h->nroutes++];
    memcpy(r->path, path, n + 1);
    r->fn = fn;
    r->arg = arg;
    r->post = post;
    return 0;
}

int imsd_http_route(imsd_http *h, const char *path, imsd_http_fn fn, void *arg)
{
    return route_add(h, path, fn, arg, false);
}

int imsd_http_route_post(imsd_http *h, const char *path, imsd_http_fn fn, void *arg)
{
    return route_add(h, path, fn, arg, true);
}

int imsd_http_defer(imsd_http *h, struct evhttp_request *req, imsd_http_cancel_fn cancel, void *arg)
{
    if (!cancel || h->ndeferred == IMSD_HTTP_CONNECTIONS_MAX)
        return ENOSPC;
    h->deferred[h->ndeferred++] = (http_deferred){req, cancel, arg};
    return 0;
}

void imsd_http_undefer(imsd_http *h, struct evhttp_request *req)
{
    for (size_t i = 0; i < h->ndeferred; i++)
        if (h->deferred[i].req == req) {
            h->deferred[i] = h->deferred[--h->ndeferred];
            return;
        }
}

void imsd_http_free(imsd_http *h)
{
    if (!h)
        return;
    cancel_deferred(h, NULL);
    evhttp_free(h->http); /* closes the connections: conn_closed still finds h */
    free(h);
}
