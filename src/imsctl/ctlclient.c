/* ctlclient.c - imsctl's side of imsd's control socket (<state root>/run/control): one
 * request, the answer's body lines handed to a callback, the final .OK or .ERR, in bounded time. */
#include "imsctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_READ_CHUNK 65536
#define CTL_PERMISSION_TEXT "permission denied" /* the server's .ERR for a refused peer */

bool ic_control_not_running(int rc)
{
    return rc == ENOENT || rc == ECONNREFUSED;
}

/* wait_fd - poll fd for events within IC_CTL_TIMEOUT. Returns 0, ETIMEDOUT or errno. */
static int wait_fd(int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&pfd, 1, IC_CTL_TIMEOUT * 1000);
        if (n > 0)
            return 0;
        if (n == 0)
            return ETIMEDOUT;
        if (errno != EINTR)
            return errno;
    }
}

static int ctl_connect(const ic_paths *p, int *out, char *err, size_t errn)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", p->run_dir, IC_CONTROL_FILE);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path) {
        snprintf(err, errn, "the control socket's path %s/%s is too long", p->run_dir,
                 IC_CONTROL_FILE);
        return ENAMETOOLONG;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errn, "cannot make a socket: %s", strerror(e));
        return e;
    }
    int e = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        e = errno;
        if (e == EAGAIN || e == EINPROGRESS) {
            /* The listen queue is full: wait for room, within the time limit. */
            socklen_t len = sizeof e;
            e = wait_fd(fd, POLLOUT);
            if (!e && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len))
                e = errno;
        }
    }
    if (e) {
        close(fd);
        if (ic_control_not_running(e) || e == ENOTDIR) {
            snprintf(err, errn, "the service is not running");
            return e == ENOTDIR ? ENOENT : e;
        }
        if (e == EACCES || e == EPERM) {
            snprintf(err, errn,
                     "permission denied: only root and the service account may "
                     "control the service");
            return EPERM;
        }
        snprintf(err, errn, "cannot connect to %s: %s", sa.sun_path, strerror(e));
        return e;
    }
    *out = fd;
    return 0;
}

static int send_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
        if (w > 0) {
            data += w;
            len -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN)
            return errno;
        int e = wait_fd(fd, POLLOUT);
        if (e)
            return e;
    }
    return 0;
}

/* answer - the state of reading one answer. */
typedef struct answer {
    int (*line)(void *arg, const char *line, size_t len);
    void *arg;
    bool final; /* .OK or .ERR seen */
    int rc;
    char *err;
    size_t errn;
} answer;

/* answer_line - one line (NUL-terminated at len). Returns 0 to go on, else the call's result. */
static int answer_line(answer *a, char *line, size_t len)
{
    if (a->final) {
        snprintf(a->err, a->errn, "the service sent more after its final line");
        return EPROTO;
    }
    const char *text;
    size_t n;
    switch (ims_ctl_parse(line, len, &text, &n)) {
    case IMS_CTL_BODY:
        if (a->line) {
            int rc = a->line(a->arg, text, n);
            if (rc) {
                snprintf(a->err, a->errn, "stopped");
                return rc;
            }
        }
        return 0;
    case IMS_CTL_OK:
        a->final = true;
        a->rc = 0;
        return 0;
    case IMS_CTL_ERR:
        a->final = true;
        snprintf(a->err, a->errn, "%.*s", (int)n, text);
        a->rc = n == strlen(CTL_PERMISSION_TEXT) && !memcmp(text, CTL_PERMISSION_TEXT, n)
                    ? EPERM
                    : EREMOTEIO;
        return 0;
    case IMS_CTL_BAD:
        break;
    }
    snprintf(a->err, a->errn, "the service's answer has a malformed line");
    return EPROTO;
}

static int read_answer(int fd, answer *a)
{
    char *data = malloc(IC_CTL_LINE_MAX + 1);
    if (!data) {
        snprintf(a->err, a->errn, "out of memory");
        return ENOMEM;
    }
    size_t have = 0;
    int rc = 0;
    for (;;) {
        size_t room = IC_CTL_LINE_MAX + 1 - have;
        if (room == 0) {
            snprintf(a->err, a->errn, "a line of the service's answer is longer than %d bytes",
                     IC_CTL_LINE_MAX);
            rc = EPROTO;
            break;
        }
        ssize_t r = recv(fd, data + have, room < CTL_READ_CHUNK ? room : CTL_READ_CHUNK, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN) {
            if ((rc = wait_fd(fd, POLLIN))) {
                snprintf(a->err, a->errn, "the service did not answer within %d s", IC_CTL_TIMEOUT);
                break;
            }
            continue;
        }
        if (r < 0 && errno == ECONNRESET && a->final && !have)
            break; /* the service closed with our request unread: the answer came first */
        if (r < 0) {
            rc = errno;
            snprintf(a->err, a->errn, "reading the service's answer: %s", strerror(rc));
            break;
        }
        if (r == 0) {
            if (!a->final || have) {
                snprintf(a->err, a->errn,
                         "the service closed the connection before its answer "
                         "was complete");
                rc = EPROTO;
            }
            break;
        }
        size_t start = 0, end = have + (size_t)r;
        for (size_t i = have; i < end && !rc; i++) {
            if (data[i] != '\n')
                continue;
            data[i] = 0;
            rc = answer_line(a, data + start, i - start);
            start = i + 1;
        }
        if (rc)
            break;
        memmove(data, data + start, end - start);
        have = end - start;
    }
    free(data);
    return rc ? rc : a->rc;
}

int ic_control_call(const ic_paths *p, int argc, const char *const *argv,
                    int (*line)(void *arg, const char *line, size_t len), void *arg, char *err,
                    size_t errn)
{
    buf req = BUF_INIT;
    int rc = ims_ctl_request(&req, argc, argv);
    if (rc) {
        snprintf(err, errn, rc == E2BIG ? "the request is too long" : "the request is malformed");
        buf_free(&req);
        return rc;
    }
    int fd = -1;
    rc = ctl_connect(p, &fd, err, errn);
    if (!rc) {
        /* A refusal (too many clients, a stranger) is written at once and the socket closed:
         * the send may then fail, and the answer still says why. */
        int se = send_all(fd, req.data, req.len);
        answer a = {.line = line, .arg = arg, .rc = EPROTO, .err = err, .errn = errn};
        rc = read_answer(fd, &a);
        if (se && !a.final) {
            snprintf(err, errn, "sending the request: %s", strerror(se));
            rc = se;
        }
    }
    buf_free(&req);
    if (fd >= 0)
        close(fd);
    if (!rc && errn)
        err[0] = 0;
    return rc;
}
