/* control.c - the control socket ($IMS_ROOT/run/control): imsctl's requests to the running
 * service, one per connection, answered by the commands other parts of imsd register. */
#include "imsd.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTL_BACKLOG 16
#define CTL_WHO_MAX 96 /* "name (uid N)" */
#define CTL_TMP_SUFFIX_MAX 32
#define CTL_REFUSE_MS 1000  /* a refused client has this long to send its request */
#define CTL_REFUSE_READS 16 /* reads of 512 bytes dropped from a refused client */

typedef struct ctl_command {
    char name[IMSD_CTL_COMMAND_NAME_MAX];
    imsd_ctl_fn fn;
    void *arg;
} ctl_command;

typedef enum ctl_state {
    CTL_READING,   /* waiting for the request line */
    CTL_HANDLING,  /* with its handler, which will call imsd_ctl_end */
    CTL_STREAMING, /* the framework calls more() */
    CTL_FINISHING, /* the final line is queued: close once it is sent */
} ctl_state;

struct imsd_control {
    struct event_base *base;
    ims_log *log;
    struct evconnlistener *listener;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uid_t allowed_uid;
    char who_root[CTL_WHO_MAX];
    char who_account[CTL_WHO_MAX];
    ctl_command commands[IMSD_CTL_COMMANDS_MAX];
    size_t ncommands;
    imsd_ctl_req *reqs; /* every client */
    size_t nreqs;
};

struct imsd_ctl_req {
    imsd_control *ctl; /* NULL once detached by imsd_control_close */
    imsd_ctl_req *prev, *next;
    struct bufferevent *bev; /* NULL once the client is gone */
    struct event *kick;      /* runs a stream's next turn */
    ctl_state state;
    uid_t uid;
    char who[CTL_WHO_MAX]; /* a copy: a detached request outlives the control */
    bool bol;              /* the next body byte starts a line */
    bool in_more;          /* inside more(): imsd_ctl_end only marks */
    bool ended_in_more;
    imsd_ctl_more_fn more;
    void (*cancel)(void *arg);
    void *stream_arg;
    char *line;  /* the request line, split in place */
    char **argv; /* into line */
    buf scratch; /* stuffing */
};

/* --- requests --------------------------------------------------------------------------- */

static void req_unlink(imsd_ctl_req *r)
{
    imsd_control *c = r->ctl;
    if (!c)
        return;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    c->nreqs--;
    r->ctl = NULL;
}

/* req_drop_client - close the connection; r itself stays. */
static void req_drop_client(imsd_ctl_req *r)
{
    if (r->bev)
        bufferevent_free(r->bev);
    r->bev = NULL;
}

static void req_free(imsd_ctl_req *r)
{
    req_unlink(r);
    req_drop_client(r);
    if (r->kick)
        event_free(r->kick);
    buf_free(&r->scratch);
    free(r->argv);
    free(r->line);
    free(r);
}

static void req_add(imsd_ctl_req *r, const void *data, size_t len)
{
    if (!r->bev || r->state == CTL_FINISHING || !len)
        return;
    r->scratch.len = 0;
    if (ims_ctl_stuff(&r->scratch, data, len, &r->bol) ||
        evbuffer_add(bufferevent_get_output(r->bev), r->scratch.data, r->scratch.len))
        req_drop_client(r); /* out of memory: the client sees a cut answer, not a wrong one */
}

/* req_final - queue the final line; the write callback closes once it is sent. */
static void req_final(imsd_ctl_req *r, int status, const char *text)
{
    if (!r->bev) {
        req_free(r);
        return;
    }
    struct evbuffer *out = bufferevent_get_output(r->bev);
    if (!r->bol)
        evbuffer_add(out, "\n", 1);
    if (status == 0) {
        evbuffer_add(out, ".OK\n", 4);
    } else {
        /* One line: a handler's text with a line break in it must not end the answer early. */
        const char *t = text && *text ? text : "failed";
        evbuffer_add(out, ".ERR ", 5);
        for (const char *p = t; *p; p++)
            evbuffer_add(out, (*p == '\n' || *p == '\r') ? " " : p, 1);
        evbuffer_add(out, "\n", 1);
    }
    r->state = CTL_FINISHING;
    bufferevent_disable(r->bev, EV_READ);
    bufferevent_setwatermark(r->bev, EV_WRITE, 0, 0);
}

/* req_stream_turn - up to IMSD_CTL_STREAM_CALLS calls of more() while the output is short;
 * the write callback or the kick brings the next turn. */
static void req_stream_turn(imsd_ctl_req *r)
{
    for (int i = 0; i < IMSD_CTL_STREAM_CALLS; i++) {
        if (!r->bev) {
            if (r->cancel)
                r->cancel(r->stream_arg);
            req_free(r);
            return;
        }
        struct evbuffer *out = bufferevent_get_output(r->bev);
        if (evbuffer_get_length(out) >= IMSD_CTL_STREAM_LOW)
            return; /* the write callback comes when it has drained */
        r->in_more = true;
        bool done = r->more(r->stream_arg, r);
        r->in_more = false;
        if (r->ended_in_more) {
            if (!r->bev)
                req_free(r); /* else the write callback frees it once the line is sent */
            return;
        }
        if (done) {
            req_final(r, 0, NULL);
            return;
        }
    }
    event_active(r->kick, EV_TIMEOUT, 0); /* more() wrote little: go round the loop first */
}

static void req_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_ctl_req *r = arg;
    if (r->state == CTL_STREAMING)
        req_stream_turn(r);
}

static void req_run(imsd_ctl_req *r, char *line, size_t len)
{
    imsd_control *c = r->ctl;
    r->line = line;
    size_t words = 1;
    for (size_t i = 0; i < len; i++)
        words += line[i] == '\t';
    int max = words > IMS_CTL_ARGS_MAX ? IMS_CTL_ARGS_MAX : (int)words;
    r->argv = calloc((size_t)max + 1, sizeof *r->argv);
    if (!r->argv) {
        req_final(r, ENOMEM, "out of memory");
        return;
    }
    int argc = ims_ctl_split(line, len, r->argv, max);
    if (argc < 0) {
        req_final(r, E2BIG, "too many words in the request");
        return;
    }
    if (argc == 0 || !r->argv[0][0]) {
        req_final(r, EINVAL, "empty request");
        return;
    }
    const ctl_command *cmd = NULL;
    for (size_t i = 0; i < c->ncommands; i++)
        if (!strcmp(c->commands[i].name, r->argv[0]))
            cmd = &c->commands[i];
    if (!cmd) {
        char text[IMSD_CTL_COMMAND_NAME_MAX + 64];
        snprintf(text, sizeof text, "unknown command %.*s", IMSD_CTL_COMMAND_NAME_MAX, r->argv[0]);
        req_final(r, ENOENT, text);
        return;
    }
    r->state = CTL_HANDLING;
    /* No read deadline while the handler works (a commit may take its time); a hang-up is
     * still seen, for reading stays on; output that does not move still times out. */
    struct timeval idle = {IMSD_CTL_IDLE_SECONDS, 0};
    bufferevent_set_timeouts(r->bev, NULL, &idle);
    cmd->fn(cmd->arg, r, argc, r->argv);
}

static void req_read(struct bufferevent *bev, void *arg)
{
    imsd_ctl_req *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (r->state != CTL_READING) {
        evbuffer_drain(in, evbuffer_get_length(in)); /* nothing more is expected */
        return;
    }
    struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
    if (lf.pos < 0 || (size_t)lf.pos + 1 > IMSD_CTL_REQUEST_MAX) {
        if (evbuffer_get_length(in) >= IMSD_CTL_REQUEST_MAX)
            req_final(r, E2BIG, "request too long");
        return;
    }
    size_t len = (size_t)lf.pos;
    char *line = malloc(len + 1);
    if (!line) {
        req_final(r, ENOMEM, "out of memory");
        return;
    }
    evbuffer_remove(in, line, len);
    evbuffer_drain(in, evbuffer_get_length(in));
    req_run(r, line, len);
}

static void req_write(struct bufferevent *bev, void *arg)
{
    imsd_ctl_req *r = arg;
    if (r->state == CTL_FINISHING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            req_free(r);
    } else if (r->state == CTL_STREAMING) {
        req_stream_turn(r);
    }
}

static void req_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    imsd_ctl_req *r = arg;
    /* The client keeps its side open until the answer is complete (imsctl does): an end of
     * file means it went away. */
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    switch (r->state) {
    case CTL_READING:
    case CTL_FINISHING:
        req_free(r);
        break;
    case CTL_HANDLING: /* the handler still holds r: its imsd_ctl_end frees it */
        req_drop_client(r);
        break;
    case CTL_STREAMING:
        req_drop_client(r);
        event_active(r->kick, EV_TIMEOUT, 0); /* cancel from the loop, not from here */
        break;
    }
}

/* --- the listener ------------------------------------------------------------------------ */

/* refuse_end - a refused client sent its request, or took too long: what it sent is read
 * and dropped (a close with it unread would reset the connection), then the close. */
static void refuse_end(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char drop[512];
    for (int i = 0; i < CTL_REFUSE_READS && recv(fd, drop, sizeof drop, MSG_DONTWAIT) > 0; i++)
        continue;
    close(fd);
}

/* refuse - a best-effort one-line answer to a client that is not taken. The socket stays
 * open until the client's request has come (at most CTL_REFUSE_MS): closed at once, the
 * client's write of its request could fail (EPIPE), or its read fail (ECONNRESET) before it
 * took our line. */
static void refuse(imsd_control *c, evutil_socket_t fd, const char *line)
{
    ssize_t w = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    shutdown(fd, SHUT_WR);
    struct timeval tv = {CTL_REFUSE_MS / 1000, (CTL_REFUSE_MS % 1000) * 1000};
    if (event_base_once(c->base, fd, EV_READ, refuse_end, NULL, &tv))
        close(fd);
}

static void ctl_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                       void *arg)
{
    (void)l;
    (void)sa;
    (void)salen;
    imsd_control *c = arg;
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || clen != sizeof cred) {
        close(fd);
        return;
    }
    if (cred.uid != 0 && cred.uid != c->allowed_uid) {
        refuse(c, fd, ".ERR permission denied\n");
        return;
    }
    if (c->nreqs >= IMSD_CTL_CLIENTS_MAX) {
        refuse(c, fd, ".ERR too many control clients, try again\n");
        return;
    }
    imsd_ctl_req *r = calloc(1, sizeof *r);
    if (!r) {
        close(fd);
        return;
    }
    r->uid = cred.uid;
    memcpy(r->who, cred.uid == 0 ? c->who_root : c->who_account, sizeof r->who);
    r->bol = true;
    r->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    r->kick = event_new(c->base, -1, 0, req_kick, r);
    if (!r->bev || !r->kick) {
        if (!r->bev)
            close(fd);
        r->ctl = NULL;
        req_free(r);
        return;
    }
    r->ctl = c;
    r->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = r;
    c->reqs = r;
    c->nreqs++;
    bufferevent_setcb(r->bev, req_read, req_write, req_event, r);
    /* Reading stops at the limit: a request line longer than that is refused, not stored. */
    bufferevent_setwatermark(r->bev, EV_READ, 0, IMSD_CTL_REQUEST_MAX);
    bufferevent_setwatermark(r->bev, EV_WRITE, IMSD_CTL_STREAM_LOW, 0);
    struct timeval idle = {IMSD_CTL_IDLE_SECONDS, 0};
    bufferevent_set_timeouts(r->bev, &idle, &idle);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
}

static void who_text(uid_t uid, char *out, size_t size)
{
    struct passwd pw, *res = NULL;
    char tmp[4096];
    if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) || !res)
        snprintf(out, size, "uid %lu", (unsigned long)uid); /* no name: the number alone */
    else
        snprintf(out, size, "%s (uid %lu)", pw.pw_name, (unsigned long)uid);
}

/* ping - the built-in command: proves the socket works end to end, and says who asked. */
static void ctl_ping(void *arg, imsd_ctl_req *r, int argc, char **argv)
{
    (void)arg;
    (void)argc;
    (void)argv;
    imsd_ctl_printf(r, "imsd %s pid %ld\nclient %s\n", IMSD_VERSION, (long)getpid(),
                    imsd_ctl_who(r));
    imsd_ctl_end(r, 0, NULL);
}

/* bind_socket - bind a socket under a temporary name beside path, make it 0600, then rename
 * it over path: a stale socket is replaced, and nobody sees one with a wider mode. */
static int bind_socket(const char *path, int *out)
{
    struct sockaddr_un tmp = {.sun_family = AF_UNIX};
    int n = snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s.%ld.tmp", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp.sun_path)
        return ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    unlink(tmp.sun_path);
    int e = 0;
    if (bind(fd, (struct sockaddr *)&tmp, sizeof tmp) || chmod(tmp.sun_path, 0600) ||
        rename(tmp.sun_path, path))
        e = errno;
    if (e) {
        unlink(tmp.sun_path);
        close(fd);
        return e;
    }
    *out = fd;
    return 0;
}

int imsd_control_open(struct event_base *base, const char *path, uid_t allowed_uid, ims_log *log,
                      imsd_control **out)
{
    *out = NULL;
    imsd_control *c = calloc(1, sizeof *c);
    if (!c)
        return ENOMEM;
    c->base = base;
    c->log = log;
    c->allowed_uid = allowed_uid;
    int e = 0;
    if (strlen(path) >= sizeof c->path)
        e = ENAMETOOLONG;
    else
        memcpy(c->path, path, strlen(path) + 1);
    int fd = -1;
    if (!e)
        e = bind_socket(c->path, &fd);
    if (!e) {
        c->listener =
            evconnlistener_new(base, ctl_accept, c, LEV_OPT_CLOSE_ON_FREE, CTL_BACKLOG, fd);
        if (!c->listener) {
            close(fd);
            unlink(c->path);
            e = ENOMEM;
        }
    }
    if (e) {
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to open the control socket %s: %s", path, strerror(e));
        free(c);
        return e;
    }
    who_text(0, c->who_root, sizeof c->who_root);
    who_text(allowed_uid, c->who_account, sizeof c->who_account);
    imsd_control_register(c, "ping", ctl_ping, NULL);
    *out = c;
    return 0;
}

int imsd_control_register(imsd_control *c, const char *command, imsd_ctl_fn fn, void *arg)
{
    size_t n = strlen(command);
    if (!n || n >= IMSD_CTL_COMMAND_NAME_MAX || strpbrk(command, "\t\r\n") || !fn)
        return EINVAL;
    for (size_t i = 0; i < c->ncommands; i++)
        if (!strcmp(c->commands[i].name, command))
            return EEXIST;
    if (c->ncommands == IMSD_CTL_COMMANDS_MAX)
        return ENOSPC;
    ctl_command *k = &c->commands[c->ncommands++];
    memcpy(k->name, command, n + 1);
    k->fn = fn;
    k->arg = arg;
    return 0;
}

void imsd_ctl_write(imsd_ctl_req *r, const void *data, size_t len)
{
    req_add(r, data, len);
}

void imsd_ctl_printf(imsd_ctl_req *r, const char *fmt, ...)
{
    if (!r->bev || r->state == CTL_FINISHING)
        return;
    buf text = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    char small[512];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        req_add(r, small, (size_t)n);
        return;
    }
    if (buf_reserve(&text, (size_t)n + 1) == 0) {
        va_start(ap, fmt);
        vsnprintf((char *)text.data, (size_t)n + 1, fmt, ap);
        va_end(ap);
        req_add(r, text.data, (size_t)n);
    } else {
        req_drop_client(r);
    }
    buf_free(&text);
}

void imsd_ctl_stream(imsd_ctl_req *r, imsd_ctl_more_fn more, void *arg, void (*cancel)(void *arg))
{
    if (!r->bev || !r->kick) {
        if (cancel)
            cancel(arg);
        req_free(r);
        return;
    }
    r->state = CTL_STREAMING;
    r->more = more;
    r->stream_arg = arg;
    r->cancel = cancel;
    event_active(r->kick, EV_TIMEOUT, 0);
}

void imsd_ctl_end(imsd_ctl_req *r, int status, const char *error_text)
{
    if (r->state == CTL_FINISHING)
        return; /* a second end: the contract says once; the first stands */
    if (r->in_more) {
        r->ended_in_more = true;
        if (!r->bev) {
            r->state = CTL_FINISHING; /* req_stream_turn frees it */
            return;
        }
    }
    req_final(r, status, error_text);
}

bool imsd_ctl_gone(const imsd_ctl_req *r)
{
    return r->bev == NULL;
}

uid_t imsd_ctl_uid(const imsd_ctl_req *r)
{
    return r->uid;
}

const char *imsd_ctl_who(const imsd_ctl_req *r)
{
    return r->who;
}

void imsd_control_close(imsd_control *c)
{
    if (!c)
        return;
    if (c->listener)
        evconnlistener_free(c->listener);
    unlink(c->path);
    while (c->reqs) {
        imsd_ctl_req *r = c->reqs;
        if (r->state == CTL_HANDLING) {
            /* Detached: the handler's imsd_ctl_end frees it, answering nobody. */
            req_unlink(r);
            req_drop_client(r);
            event_free(r->kick);
            r->kick = NULL;
        } else {
            if (r->state == CTL_STREAMING && r->cancel)
                r->cancel(r->stream_arg);
            req_free(r);
        }
    }
    free(c);
}
