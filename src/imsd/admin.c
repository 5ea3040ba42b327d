/* admin.c - the administrator's page on the HTTP endpoint (MetricsAddress): the page and its
 * assets (data/admin, embedded at build time), the JSON it polls (state, queues, counters,
 * events) and the queue actions, which need the administrator's password or the token file
 * and pass the Host, Origin and CSRF checks of lib/ims webadmin.c. Every handler is bounded:
 * the queue listing is walked a batch per turn of the loop, passwords are checked off it. */
#include "imsd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "base/base.h"
#include "store/store.h"

#define ADMIN_NONCE_PLACEHOLDER "@CSRF_NONCE@" /* in index.html's meta tag */
#define ADMIN_TOKEN_BYTES 32                   /* random bytes of the token (64 hex) */
#define ADMIN_ACTOR_MAX (IMSD_ADDR_MAX + 32)   /* "web 127.0.0.1 (password)" */
#define ADMIN_FAIL_DELAY_MAX 8   /* seconds a wrong credential's answer waits, at most */
#define ADMIN_FAIL_FORGET 600    /* seconds after which the failures are forgotten */
#define ADMIN_SINCE_MAX 20       /* digits of a since= value */
#define ADMIN_HTTP_FORBIDDEN 403 /* libevent 2.1 names no constant for it */

static const char csp[] = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                          "base-uri 'none'; form-action 'none'";

struct imsd_admin {
    imsd_http *http;
    imsd_server *srv;
    imsd_sink *sink;
    imsd_queues *queues;
    imsd_auth *auth;
    char listener[IMSD_ADDR_MAX];
    char token_path[PATH_MAX];
    char token[2 * ADMIN_TOKEN_BYTES + 1];
    char profile[IMSD_ADMIN_TEXT_MAX];
    char listeners[IMSD_ADMIN_TEXT_MAX];
    char account[64];
    time_t started;
    ims_web_nonces nonces;
    unsigned failures; /* wrong credentials in a row (any client: loopback is one host) */
    time_t last_failure;
};

/* --- answers ------------------------------------------------------------------------------ */

static void common_headers(struct evhttp_request *req, const char *type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", type);
    evhttp_add_header(h, "Content-Security-Policy", csp);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "same-origin");
    evhttp_add_header(h, "Cache-Control", "no-store");
}

/* send_body - status with len bytes of type; 500 when memory runs out. */
static void send_body(struct evhttp_request *req, int status, const char *reason, const char *type,
                      const void *data, size_t len)
{
    struct evbuffer *body = evbuffer_new();
    if (!body || evbuffer_add(body, data, len)) {
        if (body)
            evbuffer_free(body);
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
        return;
    }
    common_headers(req, type);
    evhttp_send_reply(req, status, reason, body);
    evbuffer_free(body);
}

static void send_json(struct evhttp_request *req, int status, const char *reason, buf *b)
{
    send_body(req, status, reason, "application/json; charset=utf-8", b->data, b->len);
}

/* send_result - {"ok":..,"error" or "text":..} with status. */
static void send_result(struct evhttp_request *req, int status, const char *reason, bool ok,
                        const char *text)
{
    buf b = BUF_INIT;
    int rc = buf_printf(&b, "{\"ok\":%s,\"%s\":", ok ? "true" : "false", ok ? "text" : "error");
    if (!rc)
        rc = ims_json_string(&b, text);
    if (!rc)
        rc = buf_addc(&b, '}');
    if (rc)
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
    else
        send_json(req, status, reason, &b);
    buf_free(&b);
}

/* --- the checks every request passes ------------------------------------------------------ */

static const char *peer_of(struct evhttp_request *req, char *out, size_t size)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    char *addr = NULL;
    uint16_t port = 0;
    out[0] = 0;
    if (c)
        evhttp_connection_get_peer(c, &addr, &port);
    snprintf(out, size, "%s", addr ? addr : "");
    return out;
}

/* guard - a loopback peer naming us in Host (DNS rebinding: a page of another site that
 * resolves its own name to 127.0.0.1 sends its name). false: answered already. */
static bool guard(imsd_admin *a, struct evhttp_request *req, const char **host)
{
    char peer[IMSD_ADDR_MAX];
    if (!ims_web_loopback_peer(peer_of(req, peer, sizeof peer))) {
        send_result(req, ADMIN_HTTP_FORBIDDEN, "Forbidden", false,
                    "the administrator's page answers loopback clients only");
        return false;
    }
    *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
    if (!ims_web_host_ok(*host, a->listener)) {
        send_result(req, ADMIN_HTTP_FORBIDDEN, "Forbidden", false,
                    "the Host header does not name this service (localhost, 127.0.0.1 or "
                    "[::1] with its port)");
        return false;
    }
    return true;
}

/* query_u64 - the number in ?name=N (0 when absent or malformed). */
static uint64_t query_u64(struct evhttp_request *req, const char *name)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq kv;
    TAILQ_INIT(&kv);
    if (!q || evhttp_parse_query_str(q, &kv))
        return 0;
    const char *v = evhttp_find_header(&kv, name);
    uint64_t n = 0;
    if (v && strlen(v) <= ADMIN_SINCE_MAX) {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (!errno && !*end && end != v)
            n = x;
    }
    evhttp_clear_headers(&kv);
    return n;
}

/* --- the page and its assets --------------------------------------------------------------- */

static const imsd_asset *asset_find(const char *name)
{
    for (size_t i = 0; i < imsd_admin_nassets; i++)
        if (!strcmp(imsd_admin_assets[i].name, name))
            return &imsd_admin_assets[i];
    return NULL;
}

/* page_get - GET /: index.html with a new CSRF nonce in its meta tag. */
static void page_get(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    const imsd_asset *x = asset_find("index.html");
    char nonce[IMS_WEB_NONCE_LEN + 1];
    if (!x || ims_web_nonce_issue(&a->nonces, ims_clock_ms() / 1000, nonce)) {
        evhttp_send_error(req, HTTP_INTERNAL, "The page is not available");
        return;
    }
    const char *text = (const char *)x->data;
    const char *at = strstr(text, ADMIN_NONCE_PLACEHOLDER);
    buf b = BUF_INIT;
    int rc = at ? buf_add(&b, text, (size_t)(at - text)) : buf_add(&b, text, x->len);
    if (!rc && at)
        rc = buf_adds(&b, nonce);
    if (!rc && at)
        rc = buf_adds(&b, at + strlen(ADMIN_NONCE_PLACEHOLDER));
    if (rc)
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
    else
        send_body(req, HTTP_OK, "OK", x->type, b.data, b.len);
    buf_free(&b);
}

static void asset_get(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const imsd_asset *x = path ? asset_find(path + 1) : NULL;
    if (!x) {
        evhttp_send_error(req, HTTP_NOTFOUND, NULL);
        return;
    }
    send_body(req, HTTP_OK, "OK", x->type, x->data, x->len);
}

/* --- JSON: state, counters, events ---------------------------------------------------------- */

/* setting_json - one Parameters value as loaded, as text. */
static int setting_json(buf *b, const ims_setting *t, const ims_settings *s, const char *bound)
{
    const char *base = (const char *)s;
    int rc = buf_adds(b, "{\"name\":");
    if (!rc)
        rc = ims_json_string(b, t->name);
    if (!rc)
        rc = buf_adds(b, ",\"value\":");
    if (rc)
        return rc;
    switch (t->kind) {
    case IMS_SETTING_DWORD: {
        uint32_t v;
        memcpy(&v, base + t->field, sizeof v);
        rc = buf_printf(b, "\"%u\"", v);
        break;
    }
    case IMS_SETTING_STRING:
        rc = ims_json_string(b, base + t->field);
        break;
    case IMS_SETTING_LISTEN:
        rc = ims_json_string(b, bound);
        break;
    case IMS_SETTING_LINES: {
        size_t n;
        memcpy(&n, base + t->size, sizeof n);
        buf lines = BUF_INIT;
        for (size_t i = 0; !rc && i < n; i++)
            rc = buf_printf(&lines, "%s%s", i ? " " : "", base + t->field + i * IMS_RELAY_LINE_MAX);
        if (!rc)
            rc = buf_cstr(&lines) ? 0 : ENOMEM;
        if (!rc)
            rc = ims_json_string(b, lines.len ? (const char *)lines.data : "");
        buf_free(&lines);
        break;
    }
    }
    return rc ? rc : buf_addc(b, '}');
}

static void state_get(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    const ims_settings *s = a->srv->settings;
    imsd_snap snap;
    imsd_stats_snapshot(a->srv, &snap);
    buf b = BUF_INIT;
    int rc = buf_printf(&b, "{\"version\":\"%s\",\"pid\":%ld,\"started\":%lld,\"uptime\":%llu,",
                        IMSD_VERSION, (long)getpid(), (long long)a->started,
                        (unsigned long long)snap.uptime);
    const struct {
        const char *key, *value;
    } texts[] = {{"profile", a->profile},
                 {"listeners", a->listeners},
                 {"account", a->account},
                 {"web", a->listener},
                 {"token_file", a->token_path},
                 {"administrator", s->administrator_mailbox},
                 {"stopping", NULL}};
    for (size_t i = 0; !rc && texts[i].value; i++) {
        rc = buf_printf(&b, "\"%s\":", texts[i].key);
        if (!rc)
            rc = ims_json_string(&b, texts[i].value);
        if (!rc)
            rc = buf_addc(&b, ',');
    }
    if (!rc)
        rc = buf_printf(&b, "\"stopping\":%s,\"settings\":[", a->srv->stopping ? "true" : "false");
    size_t n;
    const ims_setting *t = ims_settings_table(&n);
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = buf_addc(&b, ',');
        if (!rc)
            rc = setting_json(&b, &t[i], s, a->listeners);
    }
    if (!rc)
        rc = buf_adds(&b, "]}");
    if (rc)
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
    else
        send_json(req, HTTP_OK, "OK", &b);
    buf_free(&b);
}

static void stats_get(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    uint64_t since = query_u64(req, "since");
    buf b = BUF_INIT;
    if (imsd_stats_history_json(a->srv->stats, since > INT64_MAX ? INT64_MAX : (int64_t)since, &b))
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
    else
        send_json(req, HTTP_OK, "OK", &b);
    buf_free(&b);
}

static void events_get(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    buf b = BUF_INIT;
    if (imsd_sink_recent_json(a->sink, query_u64(req, "since"), &b))
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
    else
        send_json(req, HTTP_OK, "OK", &b);
    buf_free(&b);
}

/* --- the queues: a walk, a batch per turn of the loop --------------------------------------- */

typedef struct admin_list {
    imsd_admin *a;
    struct evhttp_request *req;
    imsd_queue_filter filter; /* all four queues, every message */
    imsd_queue_walk *w;
    struct event *ev;
    buf lines; /* the walk's JSON lines */
    size_t n;  /* messages in lines */
} admin_list;

static void list_free(admin_list *l)
{
    if (l->ev)
        event_free(l->ev);
    imsd_queue_walk_free(l->w);
    buf_free(&l->lines);
    free(l);
}

static void list_cancel(void *arg)
{
    list_free(arg);
}

/* list_answer - {"limit":N,"truncated":bool,"messages":[the lines]}. */
static void list_answer(admin_list *l, bool truncated)
{
    buf b = BUF_INIT;
    int rc = buf_printf(&b, "{\"limit\":%u,\"truncated\":%s,\"count\":%zu,\"messages\":[",
                        IMSD_ADMIN_QUEUE_LIMIT, truncated ? "true" : "false", l->n);
    const char *p = (const char *)l->lines.data, *end = p + l->lines.len;
    for (bool first = true; !rc && p && p < end; first = false) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (!first)
            rc = buf_addc(&b, ',');
        if (!rc)
            rc = buf_add(&b, p, (size_t)(le - p));
        p = nl ? nl + 1 : end;
    }
    if (!rc)
        rc = buf_adds(&b, "]}");
    imsd_http_undefer(l->a->http, l->req);
    if (rc)
        evhttp_send_error(l->req, HTTP_INTERNAL, "Out of memory");
    else
        send_json(l->req, HTTP_OK, "OK", &b);
    buf_free(&b);
    list_free(l);
}

static size_t count_lines(const buf *b, size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static void list_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    admin_list *l = arg;
    size_t want = IMSD_ADMIN_QUEUE_LIMIT - l->n;
    size_t before = l->lines.len;
    int rc =
        imsd_queue_walk_step(l->w, want < IMSD_QUEUES_BATCH ? want : IMSD_QUEUES_BATCH, &l->lines);
    if (rc == ENOMEM) {
        imsd_http_undefer(l->a->http, l->req);
        evhttp_send_error(l->req, HTTP_INTERNAL, "Out of memory");
        list_free(l);
        return;
    }
    l->n += count_lines(&l->lines, before);
    if (rc == 0) {
        list_answer(l, false);
        return;
    }
    if (l->n >= IMSD_ADMIN_QUEUE_LIMIT) {
        /* More may follow: one more step says whether one does. */
        buf more = BUF_INIT;
        rc = imsd_queue_walk_step(l->w, 1, &more);
        bool truncated = more.len > 0;
        buf_free(&more);
        list_answer(l, truncated);
        return;
    }
    struct timeval now = {0, 0};
    event_add(l->ev, &now);
}

static void queues_get(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    if (!a->queues) {
        send_result(req, HTTP_SERVUNAVAIL, "Service Unavailable", false, "the queues are not open");
        return;
    }
    admin_list *l = calloc(1, sizeof *l);
    if (l)
        l->ev = evtimer_new(a->srv->base, list_step, l);
    if (!l || !l->ev || imsd_queue_walk_new(a->queues, &l->filter, &l->w)) {
        if (l)
            list_free(l);
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
        return;
    }
    l->a = a;
    l->req = req;
    if (imsd_http_defer(a->http, req, list_cancel, l)) {
        list_free(l);
        evhttp_send_error(req, HTTP_SERVUNAVAIL, "Busy");
        return;
    }
    list_step(-1, 0, l);
}

/* --- actions ------------------------------------------------------------------------------- */

typedef struct admin_act {
    imsd_admin *a;
    struct evhttp_request *req; /* NULL once the connection went */
    ims_queue_action act;
    char action[IMS_WEB_ACTION_MAX];
    char id[IMS_WEB_ID_MAX];
    char peer[IMSD_ADDR_MAX];
    char actor[ADMIN_ACTOR_MAX];
    struct event *delay; /* a wrong credential's answer waits on it */
    bool waiting;        /* on imsd_auth_check or imsd_queue_act: they call back */
} admin_act;

static void act_free(admin_act *p)
{
    if (p->delay)
        event_free(p->delay);
    free(p);
}

static void act_cancel(void *arg)
{
    admin_act *p = arg;
    p->req = NULL;
    if (!p->waiting)
        act_free(p); /* only the delay's timer held it */
}

/* act_reply - the answer (when the client is still there), then p goes. */
static void act_reply(admin_act *p, int status, const char *reason, bool ok, const char *text)
{
    if (p->req) {
        imsd_http_undefer(p->a->http, p->req);
        send_result(p->req, status, reason, ok, text);
    }
    act_free(p);
}

static void act_done(void *arg, const char *id, int err, const char *text)
{
    (void)id;
    admin_act *p = arg;
    p->waiting = false;
    if (err)
        act_reply(p, 409, "Conflict", false, text);
    else
        act_reply(p, HTTP_OK, "OK", true, text);
}

/* act_go - the credential passed: do it. */
static void act_go(admin_act *p, const char *how)
{
    p->a->failures = 0;
    snprintf(p->actor, sizeof p->actor, "web %s (%s)", p->peer, how);
    p->waiting = true;
    if (imsd_queue_act(p->a->queues, p->act, p->id, p->actor, act_done, p)) {
        p->waiting = false;
        act_reply(p, HTTP_INTERNAL, "Internal Server Error", false, "out of memory");
    }
}

static void act_delayed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    act_reply(arg, ADMIN_HTTP_FORBIDDEN, "Forbidden", false,
              "wrong password or token (the administrator mailbox's password, or the token in "
              "run/admin.token)");
}

/* act_refused - a wrong credential: an event, and an answer that waits longer each time. */
static void act_refused(admin_act *p)
{
    imsd_admin *a = p->a;
    time_t now = time(NULL);
    if (now - a->last_failure > ADMIN_FAIL_FORGET)
        a->failures = 0;
    a->last_failure = now;
    a->failures++;
    ims_log_event(a->srv->log, IMSD_EV_ADMIN_REFUSED, IMS_CAT_INTERNAL, IMS_SEV_WARNING,
                  IMS_LEVEL_NONE,
                  "The administrator's page refused to %s message %s for web %s: the password "
                  "or token was wrong (%u in a row)",
                  p->action, p->id, p->peer, a->failures);
    unsigned secs = a->failures < ADMIN_FAIL_DELAY_MAX ? a->failures : ADMIN_FAIL_DELAY_MAX;
    struct timeval tv = {(time_t)secs, 0};
    p->delay = evtimer_new(a->srv->base, act_delayed, p);
    if (!p->delay || evtimer_add(p->delay, &tv))
        act_delayed(-1, 0, p);
}

static void act_checked(void *arg, imsd_auth_result r)
{
    admin_act *p = arg;
    p->waiting = false;
    if (r == IMSD_AUTH_MATCH)
        act_go(p, "password");
    else if (r == IMSD_AUTH_NO_MATCH)
        act_refused(p);
    else
        act_reply(p, HTTP_SERVUNAVAIL, "Service Unavailable", false, "the service is stopping");
}

static void action_post(void *arg, struct evhttp_request *req)
{
    imsd_admin *a = arg;
    const char *host;
    if (!guard(a, req, &host))
        return;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    /* A cross-site form or fetch says where it comes from: only our own page may act. */
    if (!ims_web_origin_ok(evhttp_find_header(in, "Origin"), evhttp_find_header(in, "Referer"),
                           host)) {
        send_result(req, ADMIN_HTTP_FORBIDDEN, "Forbidden", false,
                    "the request does not come from this page (Origin or Referer)");
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    char text[IMSD_HTTP_BODY_MAX];
    size_t len = evbuffer_get_length(body);
    if (len > sizeof text) {
        send_result(req, 413, "Payload Too Large", false, "the request is too long");
        return;
    }
    evbuffer_copyout(body, text, len);
    ims_web_action w;
    int rc = ims_web_action_parse(evhttp_find_header(in, "Content-Type"), text, len, &w);
    explicit_bzero(text, sizeof text);
    if (rc) {
        send_result(req,
                    rc == ENOTSUP    ? 415
                    : rc == EMSGSIZE ? 413
                                     : HTTP_BADREQUEST,
                    rc == ENOTSUP    ? "Unsupported Media Type"
                    : rc == EMSGSIZE ? "Payload Too Large"
                                     : "Bad Request",
                    false,
                    rc == ENOTSUP ? "send application/json or application/x-www-form-urlencoded"
                                  : "the request needs id, action, csrf and secret");
        return;
    }
    ims_queue_action act;
    const char *refusal = NULL;
    int status = HTTP_BADREQUEST;
    if (!ims_web_nonce_ok(&a->nonces, w.csrf, ims_clock_ms() / 1000)) {
        refusal = "the page's CSRF nonce is not known (the page is old or not ours): reload it";
        status = ADMIN_HTTP_FORBIDDEN;
    } else if (imsd_queue_action_parse(w.action, &act)) {
        refusal = "the action is one of hold, release, retry, delete, delete-ndr";
    } else if (!a->queues) {
        refusal = "the queues are not open";
        status = HTTP_SERVUNAVAIL;
    }
    admin_act *p = refusal ? NULL : calloc(1, sizeof *p);
    if (!refusal && !p) {
        refusal = "out of memory";
        status = HTTP_INTERNAL;
    }
    if (!refusal && imsd_http_defer(a->http, req, act_cancel, p)) {
        refusal = "too many requests at once";
        status = HTTP_SERVUNAVAIL;
    }
    if (refusal) {
        free(p);
        explicit_bzero(&w, sizeof w);
        send_result(req, status, status == ADMIN_HTTP_FORBIDDEN ? "Forbidden" : "Refused", false,
                    refusal);
        return;
    }
    p->a = a;
    p->req = req;
    p->act = act;
    snprintf(p->action, sizeof p->action, "%s", w.action);
    snprintf(p->id, sizeof p->id, "%s", w.id);
    peer_of(req, p->peer, sizeof p->peer);
    if (a->token[0] && ims_web_secret_eq(w.secret, w.secret_len, a->token)) {
        explicit_bzero(&w, sizeof w);
        act_go(p, "token");
        return;
    }
    char hash[DIR_MAX_HASH + 1];
    rc = imsd_mail_admin_hash(a->srv, hash, sizeof hash);
    p->waiting = true;
    /* Without a password (no mailbox, none set) the check runs against a dummy: the same
     * time, and no match. */
    int e = a->auth && w.secret_len
                ? imsd_auth_check(a->auth, rc ? NULL : hash, w.secret, w.secret_len, act_checked, p)
                : EINVAL;
    explicit_bzero(&w, sizeof w);
    explicit_bzero(hash, sizeof hash);
    if (e == EINVAL) {
        p->waiting = false;
        act_refused(p);
    } else if (e) {
        p->waiting = false;
        act_reply(p, HTTP_SERVUNAVAIL, "Service Unavailable", false,
                  "too many password checks at once: try again");
    }
}

/* --- the token file and the start ------------------------------------------------------------ */

/* token_make - a new random token in run/admin.token, mode 0600, written atomically (the
 * service account owns it: imsd runs as it by now). */
static int token_make(imsd_admin *a)
{
    uint8_t raw[ADMIN_TOKEN_BYTES];
    int rc = base_random(raw, sizeof raw);
    if (rc)
        return rc;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        a->token[2 * i] = hex[raw[i] >> 4];
        a->token[2 * i + 1] = hex[raw[i] & 15];
    }
    a->token[2 * ADMIN_TOKEN_BYTES] = 0;
    explicit_bzero(raw, sizeof raw);
    char tmp[PATH_MAX + 8];
    if (snprintf(tmp, sizeof tmp, "%s.new", a->token_path) >= (int)sizeof tmp)
        return ENAMETOOLONG;
    unlink(tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return errno;
    char line[sizeof a->token + 1];
    int n = snprintf(line, sizeof line, "%s\n", a->token);
    rc = write(fd, line, (size_t)n) == n && fchmod(fd, 0600) == 0 && fsync(fd) == 0 ? 0 : errno;
    explicit_bzero(line, sizeof line);
    if (close(fd) && !rc)
        rc = errno;
    if (!rc && rename(tmp, a->token_path))
        rc = errno;
    if (rc)
        unlink(tmp);
    return rc;
}

int imsd_admin_start(const imsd_admin_options *o, imsd_admin **out)
{
    *out = NULL;
    imsd_admin *a = calloc(1, sizeof *a);
    if (!a)
        return ENOMEM;
    a->http = o->http;
    a->srv = o->srv;
    a->sink = o->sink;
    a->queues = o->queues;
    a->started = o->started;
    snprintf(a->listener, sizeof a->listener, "%s", o->listener);
    snprintf(a->profile, sizeof a->profile, "%s", o->profile ? o->profile : "");
    snprintf(a->listeners, sizeof a->listeners, "%s", o->listeners ? o->listeners : "");
    snprintf(a->account, sizeof a->account, "%s", o->account ? o->account : "");
    int rc = 0;
    if (snprintf(a->token_path, sizeof a->token_path, "%s/%s", o->run_dir, IMSD_ADMIN_TOKEN_FILE) >=
        (int)sizeof a->token_path)
        rc = ENAMETOOLONG;
    if (!rc && (rc = token_make(a)))
        ims_log_event(a->srv->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING,
                      IMS_LEVEL_NONE,
                      "The administrator's page has no token: %s cannot be written (%s); its "
                      "actions need the administrator's password",
                      a->token_path, strerror(rc));
    if (rc)
        a->token[0] = 0;
    if (imsd_auth_new(a->srv->base, &a->auth))
        a->auth = NULL; /* the token still works */
    static const char *const assets[] = {"/admin.css", "/admin.js"};
    rc = imsd_http_route(a->http, "/", page_get, a);
    for (size_t i = 0; !rc && i < sizeof assets / sizeof assets[0]; i++)
        rc = imsd_http_route(a->http, assets[i], asset_get, a);
    if (!rc)
        rc = imsd_http_route(a->http, "/api/state", state_get, a);
    if (!rc)
        rc = imsd_http_route(a->http, "/api/queues", queues_get, a);
    if (!rc)
        rc = imsd_http_route(a->http, "/api/stats", stats_get, a);
    if (!rc)
        rc = imsd_http_route(a->http, "/api/events", events_get, a);
    if (!rc)
        rc = imsd_http_route_post(a->http, "/api/queue-action", action_post, a);
    if (rc) {
        imsd_admin_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void imsd_admin_free(imsd_admin *a)
{
    if (!a)
        return;
    imsd_auth_free(a->auth); /* pending checks answer (cancelled) and free their requests */
    if (a->token[0])
        unlink(a->token_path);
    explicit_bzero(a->token, sizeof a->token);
    free(a);
}
