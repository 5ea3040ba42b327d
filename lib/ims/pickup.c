/* pickup.c - MTS-OUT: the organisation's mail handed to the service in the gateway mailbox's
 * MTS-OUT folder, taken exactly once into the spool (ims.h, "MTS-OUT pickup"); the same
 * engine takes the Pickup directory's files (dropdir.c has their parser). One thread does
 * all the file work; the spool's done callbacks and the program's dispatch only pass results
 * and events across under a lock. */
#include "ims/pickup_int.h"
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "smtp/smtp.h"

#define PK_EVENT_TEXT 512
#define PK_MAX_EVENTS 256   /* events waiting for dispatch; more are counted, not kept */
#define PK_READ_CHUNK 65536 /* bytes read at a time */
#define PK_BAD_TRIES 100    /* names tried in Bad when the file's own is taken */

/* --- the envelope ---------------------------------------------------------------------- */

void ims_pickup_env_free(ims_pickup_env *e)
{
    free(e->sender);
    for (size_t i = 0; i < e->nrcpt; i++)
        free(e->rcpts[i].address);
    free(e->rcpts);
    memset(e, 0, sizeof *e);
}

/* header_value - p[0..n) is "<name>:" and a value: the value, blanks around it cut. */
static bool header_value(const char *p, size_t n, const char *name, const char **v, size_t *vn)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(p, name, k) || p[k] != ':')
        return false;
    const char *s = p + k + 1, *e = p + n;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *v = s;
    *vn = (size_t)(e - s);
    return true;
}

int ims_pickup_path(const char *v, size_t n, smtp_path_kind kind, smtp_path *path)
{
    char tmp[SMTP_PATH_MAX + 4];
    if (n > SMTP_PATH_MAX)
        return -1;
    if (n && v[0] == '<') {
        memcpy(tmp, v, n);
    } else {
        tmp[0] = '<';
        memcpy(tmp + 1, v, n);
        tmp[++n] = '>';
        n++;
    }
    return smtp_parse_path(tmp, n, kind, path, NULL) == SMTP_R_NONE ? 0 : -1;
}

static char *printable_copy(const char *v, size_t n)
{
    if (n > IMS_SPOOL_MAX_FIELD)
        n = IMS_SPOOL_MAX_FIELD;
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)v[i] < 0x20 || v[i] == 0x7f ? '?' : v[i];
    c[n] = 0;
    return c;
}

int ims_pickup_rcpt_add(ims_pickup_rcpt **rcpts, size_t *nrcpt, const char *v, size_t n)
{
    size_t k = *nrcpt;
    if ((k & (k - 1)) == 0) { /* grow at powers of two */
        ims_pickup_rcpt *r = realloc(*rcpts, (k ? k * 2 : 1) * sizeof *r);
        if (!r)
            return ENOMEM;
        *rcpts = r;
    }
    ims_pickup_rcpt *r = &(*rcpts)[k];
    smtp_path path;
    r->bad = ims_pickup_path(v, n, SMTP_PATH_FORWARD, &path) ||
             (path.flags & (SMTP_PATH_LITERAL | SMTP_PATH_TRAILING_DOT));
    r->address = r->bad ? printable_copy(v, n) : strdup(path.mailbox);
    if (!r->address)
        return ENOMEM;
    ++*nrcpt;
    return 0;
}

/* could_be_envelope - the start of a line, p[0..n), may still become an envelope line. */
static bool could_be_envelope(const char *p, size_t n)
{
    static const char *const names[] = {"X-Sender:", "X-Receiver:"};
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(names[i]);
        if (!strncasecmp(p, names[i], n < k ? n : k))
            return true;
    }
    return false;
}

int ims_pickup_parse(const char *p, size_t n, bool eof, ims_pickup_env *out, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    size_t off = 0;
    int rc = 0;
    for (;;) {
        if (off == n) {
            if (!eof)
                rc = EAGAIN;
            break;
        }
        const char *nl = memchr(p + off, '\n', n - off);
        if (!nl && !eof) {
            if (!could_be_envelope(p + off, n - off))
                break; /* the content starts here */
            rc = EAGAIN;
            break;
        }
        size_t end = nl ? (size_t)(nl - p) : n, len = end - off;
        if (len && p[off + len - 1] == '\r')
            len--;
        const char *v;
        size_t vn;
        bool sender = header_value(p + off, len, "X-Sender", &v, &vn);
        if (!sender && !header_value(p + off, len, "X-Receiver", &v, &vn))
            break; /* the first other line: the content starts here */
        if (nl && end + 1 == n && !eof) {
            rc = EAGAIN; /* the next line could be this one's continuation */
            break;
        }
        if (nl && end + 1 < n && (p[end + 1] == ' ' || p[end + 1] == '\t')) {
            rc = EBADMSG, *why = "an X-Sender or X-Receiver line is folded";
            break;
        }
        if (sender) {
            smtp_path path;
            if (out->sender) {
                rc = EBADMSG, *why = "more than one X-Sender";
                break;
            }
            if (ims_pickup_path(v, vn, SMTP_PATH_REVERSE, &path)) {
                rc = EBADMSG, *why = "the X-Sender is not an address";
                break;
            }
            if (!(out->sender = strdup(path.mailbox))) {
                rc = ENOMEM;
                break;
            }
        } else if (out->nrcpt >= IMS_SPOOL_MAX_RCPTS) {
            rc = EBADMSG, *why = "more X-Receiver lines than a message may have recipients";
            break;
        } else if ((rc = ims_pickup_rcpt_add(&out->rcpts, &out->nrcpt, v, vn))) {
            break;
        }
        off = nl ? end + 1 : n;
        if (off > IMS_PICKUP_ENVELOPE_MAX) {
            rc = EBADMSG, *why = "the X-Sender and X-Receiver lines are too long";
            break;
        }
    }
    if (rc == EAGAIN && n > IMS_PICKUP_ENVELOPE_MAX)
        rc = EBADMSG, *why = "the X-Sender and X-Receiver lines are too long";
    if (!rc && !out->sender)
        rc = EBADMSG, *why = "no X-Sender line";
    else if (!rc && !out->nrcpt)
        rc = EBADMSG, *why = "no X-Receiver line";
    if (rc) {
        ims_pickup_env_free(out);
        return rc;
    }
    out->content_off = off;
    return 0;
}

/* --- line ends ------------------------------------------------------------------------- */

int ims_pickup_crlf(ims_pickup_conv *c, const char *in, size_t n, buf *out)
{
    size_t start = 0; /* in[start..i) is copied as it is */
    int rc = buf_reserve(out, n + n / 16 + 2);
    for (size_t i = 0; !rc && i < n; i++) {
        char b = in[i];
        if (c->cr) {
            if (b != '\n')
                return EBADMSG; /* a bare CR */
            c->cr = false;
            c->mid = false;
            continue; /* the LF goes with the span */
        }
        if (b == 0)
            return EBADMSG;
        if (b == '\r') {
            c->cr = true;
        } else if (b == '\n') {
            rc = buf_add(out, in + start, i - start);
            if (!rc)
                rc = buf_add(out, "\r\n", 2);
            c->out += i - start + 2;
            start = i + 1;
            c->mid = false;
        } else {
            c->mid = true;
        }
    }
    if (!rc && n > start) {
        rc = buf_add(out, in + start, n - start);
        c->out += n - start;
    }
    return rc;
}

int ims_pickup_crlf_end(ims_pickup_conv *c, buf *out)
{
    if (c->cr)
        return EBADMSG;
    if (!c->mid)
        return 0;
    c->mid = false;
    c->out += 2;
    return buf_add(out, "\r\n", 2);
}

/* --- the state shared with callbacks and dispatch -------------------------------------- */

typedef struct pk_event {
    struct pk_event *next;
    unsigned id;
    ims_severity sev;
    unsigned level;
    char text[PK_EVENT_TEXT];
} pk_event;

typedef struct pk_job pk_job;

/* pk_core - what the spool's callbacks may still reach after ims_pickup_stop: freed by the
 * last of the pickup and its jobs in flight. */
typedef struct pk_core {
    pthread_mutex_t lock; /* guards everything below */
    unsigned refs;
    int wake_fd; /* the thread's eventfd: results arrived, or stop */
    int out_fd;  /* ims_pickup_fd: events to log */
    pk_job *results, **results_tail;
    pk_event *events, **events_tail;
    size_t nevents, dropped;
    bool stopping;
    ims_pickup_stats stats;
} pk_core;

struct pk_job {
    pk_core *core;
    pk_job *next;
    int err;
    uint64_t size; /* of the claimed file, for the counters */
    char name[NAME_MAX + 1];
};

static void wake(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is huge, the descriptor readable anyway. */
    }
}

static void drain(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof v) < 0) {
        /* EAGAIN: nothing signalled. */
    }
}

static void core_unref(pk_core *c)
{
    pthread_mutex_lock(&c->lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (!last)
        return;
    while (c->results) {
        pk_job *j = c->results;
        c->results = j->next;
        free(j);
    }
    while (c->events) {
        pk_event *e = c->events;
        c->events = e->next;
        free(e);
    }
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    if (c->out_fd >= 0)
        close(c->out_fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* committed - the spool's done callback, in the thread that dispatches the spool: no disk,
 * the result goes back to the pickup's thread. */
static void committed(void *arg, int err, const char *queue_id)
{
    (void)queue_id;
    pk_job *j = arg;
    pk_core *c = j->core;
    j->err = err;
    j->next = NULL;
    pthread_mutex_lock(&c->lock);
    *c->results_tail = j;
    c->results_tail = &j->next;
    if (c->stats.in_flight)
        c->stats.in_flight--;
    if (err) {
        c->stats.retried++;
    } else {
        c->stats.taken++;
        c->stats.left++;
        c->stats.bytes -= j->size < c->stats.bytes ? j->size : c->stats.bytes;
    }
    pthread_mutex_unlock(&c->lock);
    wake(c->wake_fd);
    core_unref(c);
}

/* --- the pickup ------------------------------------------------------------------------ */

typedef struct pk_name {
    struct pk_name *next;
    bool claimed; /* in the claim directory already (else: in new/) */
    uint64_t due; /* a retry: not before (ims_clock_ms) */
    char name[NAME_MAX + 1];
} pk_name;

struct ims_pickup {
    pk_core *core;
    pthread_t thread;
    bool running;
    bool dropdir;      /* the Pickup directory (else MTS-OUT) */
    const char *label; /* "MTS-OUT" or "Pickup", first in every event */
    unsigned ev_bad;   /* the event of a file moved to bad: 4116 or 4164 */
    char *watch, *claim, *bad, *store_dir, *host; /* watch: new/ or Pickup; bad: Bad's new/
                                                   * or Pickup/Archive */
    ims_spool *spool;
    ims_router *router;
    ims_log *log;
    uint64_t max_size;
    unsigned retry_ms;
    int new_fd, claim_fd, bad_fd, ino_fd;
    /* The thread's own. */
    pk_name *queue, **queue_tail; /* to take now */
    pk_name *retry;               /* to take later, unordered (few) */
    size_t in_flight;
};

static void pk_event_fmt(ims_pickup *p, unsigned id, ims_severity sev, unsigned level,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void pk_event_fmt(ims_pickup *p, unsigned id, ims_severity sev, unsigned level,
                         const char *fmt, ...)
{
    pk_core *c = p->core;
    pk_event *e = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->nevents < PK_MAX_EVENTS && (e = calloc(1, sizeof *e))) {
        e->id = id;
        e->sev = sev;
        e->level = level;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->text, sizeof e->text, fmt, ap);
        va_end(ap);
        *c->events_tail = e;
        c->events_tail = &e->next;
        c->nevents++;
    } else {
        c->dropped++;
    }
    pthread_mutex_unlock(&c->lock);
    wake(c->out_fd);
}

/* name_new - a list entry for file name; NULL (and the event) without memory. */
static pk_name *name_new(ims_pickup *p, const char *name, bool claimed)
{
    pk_name *n = calloc(1, sizeof *n);
    if (!n) {
        pk_event_fmt(p, IMS_EV_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                     "%s: out of memory: the file %s is taken at the next start", p->label, name);
        return NULL;
    }
    snprintf(n->name, sizeof n->name, "%s", name);
    n->claimed = claimed;
    return n;
}

static void enqueue(ims_pickup *p, const char *name, bool claimed)
{
    pk_name *n = name_new(p, name, claimed);
    if (!n)
        return;
    *p->queue_tail = n;
    p->queue_tail = &n->next;
}

static void retry_later(ims_pickup *p, const char *name, bool claimed)
{
    pk_name *n = name_new(p, name, claimed);
    if (!n)
        return;
    n->due = ims_clock_ms() + p->retry_ms;
    n->next = p->retry;
    p->retry = n;
}

/* claim_size - the size of the claimed file name (0 when it cannot be seen). */
static uint64_t claim_size(ims_pickup *p, const char *name)
{
    struct stat st;
    return fstatat(p->claim_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? (uint64_t)st.st_size : 0;
}

/* count_in, count_out - a claimed file enters or leaves the counters (MTS-OUT's queue). */
static void count_in(ims_pickup *p, uint64_t size)
{
    pthread_mutex_lock(&p->core->lock);
    p->core->stats.entered++;
    p->core->stats.bytes += size;
    pthread_mutex_unlock(&p->core->lock);
}

static void count_out(ims_pickup *p, uint64_t size)
{
    pthread_mutex_lock(&p->core->lock);
    p->core->stats.left++;
    p->core->stats.bytes -= size < p->core->stats.bytes ? size : p->core->stats.bytes;
    pthread_mutex_unlock(&p->core->lock);
}

/* scan - every file of dir_fd (not starting with '.') into the queue. */
static void scan(ims_pickup *p, int dir_fd, bool claimed)
{
    DIR *d = base_opendirat(dir_fd, ".");
    if (!d) {
        pk_event_fmt(p, IMS_EV_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                     "%s: unable to read the folder %s: %s", p->label,
                     claimed ? p->claim : p->watch, strerror(errno));
        return;
    }
    rewinddir(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && (e->d_type == DT_REG || e->d_type == DT_UNKNOWN)) {
            enqueue(p, e->d_name, claimed);
            if (claimed) /* left by the last run: in our hands from now on */
                count_in(p, claim_size(p, e->d_name));
        }
    closedir(d);
}

/* to_bad - the claim goes to Bad's new/ or Pickup/Archive (its name, or name.<k> when
 * taken), event ev (4116, 4164, 4165). */
static void to_bad(ims_pickup *p, const char *name, const char *why, unsigned ev)
{
    char target[NAME_MAX + 1];
    int err = 0;
    for (unsigned k = 0; k < PK_BAD_TRIES; k++) {
        if (k)
            snprintf(target, sizeof target, "%.200s.%u", name, k);
        else
            snprintf(target, sizeof target, "%s", name);
        if (renameat2(p->claim_fd, name, p->bad_fd, target, RENAME_NOREPLACE) == 0) {
            err = 0;
            break;
        }
        err = errno;
        if (err == EINVAL || err == ENOSYS) { /* no RENAME_NOREPLACE: link refuses too */
            if (linkat(p->claim_fd, name, p->bad_fd, target, 0) == 0) {
                unlinkat(p->claim_fd, name, 0);
                err = 0;
                break;
            }
            err = errno;
        }
        if (err != EEXIST)
            break;
    }
    pthread_mutex_lock(&p->core->lock);
    p->core->stats.bad++;
    pthread_mutex_unlock(&p->core->lock);
    if (err)
        pk_event_fmt(p, ev, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                     "%s: the file %s cannot be sent (%s) and could not be moved to the folder "
                     "%s: %s; it stays in %s",
                     p->label, name, why, p->bad, strerror(err), p->claim);
    else
        pk_event_fmt(p, ev, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                     "%s: the file %s cannot be sent (%s); it was moved to %s/%s", p->label, name,
                     why, p->bad, target);
}

/* claim - new/<name> into the claim directory. true when it is there now. */
static bool claim(ims_pickup *p, const char *name)
{
    struct stat st;
    /* The Pickup directory holds Archive, .taking, and whatever users put there: only files
     * are taken (a link or a FIFO moves, and is refused as no file; a directory stays). */
    if (fstatat(p->new_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
        return false;
    if (renameat2(p->new_fd, name, p->claim_fd, name, RENAME_NOREPLACE) == 0) {
        count_in(p, claim_size(p, name));
        return true;
    }
    int err = errno;
    if (err == EINVAL || err == ENOSYS) {
        if (linkat(p->new_fd, name, p->claim_fd, name, 0) == 0) {
            unlinkat(p->new_fd, name, 0);
            count_in(p, claim_size(p, name));
            return true;
        }
        err = errno;
    }
    if (err == ENOENT)
        return false; /* taken already (named twice), or its writer took it back */
    if (err == EEXIST) {
        /* A file of that name is still being taken: this one waits for it. */
        retry_later(p, name, false);
        return false;
    }
    if (p->dropdir && (err == EACCES || err == EPERM || err == EROFS)) {
        /* KB Q201314: a file the service cannot move is skipped (never sent twice); a new
         * event about it (a rename in) or the next start tries again. */
        pk_event_fmt(p, IMS_EV_DROPDIR_STUCK, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                     "%s: unable to move the file %s/%s: %s; it is skipped", p->label, p->watch,
                     name, strerror(err));
        return false;
    }
    pk_event_fmt(p, IMS_EV_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                 "%s: unable to take the file %s/%s: %s; tried again later", p->label, p->watch,
                 name, strerror(err));
    retry_later(p, name, false);
    return false;
}

typedef struct pk_msg {
    ims_pickup_env env;
    ims_dropdir_msg dm; /* the Pickup directory: what its parser found (env took its
                         * sender and recipients) */
    ims_rcpt *rcpts;
    char **dests;
    size_t n;
} pk_msg;

static void pk_msg_free(pk_msg *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->dests[i]);
    free(m->dests);
    free(m->rcpts);
    ims_pickup_env_free(&m->env);
    ims_dropdir_msg_free(&m->dm);
}

/* route_all - the receivers with a route into m->rcpts; the others are events. 0 or ENOMEM
 * (or what the router says other than "no route": try again later). */
static int route_all(ims_pickup *p, const char *name, pk_msg *m)
{
    m->rcpts = calloc(m->env.nrcpt, sizeof *m->rcpts);
    m->dests = calloc(m->env.nrcpt, sizeof *m->dests);
    if (!m->rcpts || !m->dests)
        return ENOMEM;
    uint64_t failed = 0;
    for (size_t i = 0; i < m->env.nrcpt; i++) {
        const ims_pickup_rcpt *r = &m->env.rcpts[i];
        ims_route rt;
        int e = r->bad ? EINVAL : ims_router_route(p->router, r->address, &rt);
        char dest[PATH_MAX];
        if (!e && ims_route_dest(&rt, p->store_dir, dest, sizeof dest))
            e = EINVAL;
        if (!e && rt.kind == IMS_ROUTE_DNS && !smtp_domain_valid(dest, strlen(dest), false))
            e = EINVAL;
        if (e == ENOENT || e == EINVAL) {
            failed++;
            pk_event_fmt(p, IMS_EV_PICKUP_NO_ROUTE, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                         "%s: the receiver <%s> of the file %s from <%s> %s; it is "
                         "skipped (a non-delivery report is to come)",
                         p->label, r->address, name, m->env.sender,
                         e == ENOENT ? "is no mailbox of ours" : "is not an address");
            continue;
        }
        if (e)
            return e;
        if (!(m->dests[m->n] = strdup(dest)))
            return ENOMEM;
        ims_rcpt *out = &m->rcpts[m->n++];
        out->address = r->address;
        out->route = rt.kind;
        if (rt.kind == IMS_ROUTE_LOCAL)
            out->maildir = m->dests[m->n - 1];
        else
            out->dest = m->dests[m->n - 1];
    }
    pthread_mutex_lock(&p->core->lock);
    p->core->stats.rcpt_failed += failed;
    pthread_mutex_unlock(&p->core->lock);
    return 0;
}

/* read_at - up to PK_READ_CHUNK bytes of fd from off appended to b; *got 0 at the end. */
static int read_at(int fd, uint64_t off, buf *b, size_t *got)
{
    *got = 0;
    int rc = buf_reserve(b, PK_READ_CHUNK);
    if (rc)
        return rc;
    for (;;) {
        ssize_t r = pread(fd, b->data + b->len, PK_READ_CHUNK, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        b->len += (size_t)r;
        *got = (size_t)r;
        return 0;
    }
}

typedef enum pk_outcome { PK_SUBMITTED, PK_BAD, PK_TOO_BIG, PK_RETRY, PK_GONE } pk_outcome;

/* parse_dropdir - the Pickup directory's parser on b, its sender and recipients moved into
 * m->env (so that routing is MTS-OUT's). As ims_dropdir_parse. */
static int parse_dropdir(const buf *b, bool eof, pk_msg *m, const char **why)
{
    int rc = ims_dropdir_parse((const char *)b->data, b->len, eof, 0, &m->dm, why);
    if (rc)
        return rc;
    m->env.sender = m->dm.sender;
    m->env.rcpts = m->dm.rcpts;
    m->env.nrcpt = m->dm.nrcpt;
    m->env.content_off = m->dm.content_off;
    m->dm.sender = NULL;
    m->dm.rcpts = NULL;
    m->dm.nrcpt = 0;
    return 0;
}

/* owner_name - the user name of uid into out (n bytes); "" when it has none. */
static void owner_name(uid_t uid, char *out, size_t n)
{
    char tmp[4096];
    struct passwd pw, *res = NULL;
    out[0] = 0;
    if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res)
        snprintf(out, n, "%s", res->pw_name);
}

/* submit - take the claimed file: envelope, routes, content into the spool, commit. */
static pk_outcome submit(ims_pickup *p, const char *name, uint64_t size, const char **why, int *err)
{
    *why = NULL;
    *err = 0;
    int fd = openat(p->claim_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *err = errno;
        if (*err == ENOENT)
            return PK_GONE;
        if (*err == ELOOP || *err == ENXIO) {
            *why = "it is not a file";
            return PK_BAD;
        }
        if (p->dropdir && *err == EACCES) {
            *why = "the service may not read it (its mode)";
            return PK_BAD;
        }
        return PK_RETRY;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        *err = errno;
        close(fd);
        return PK_RETRY;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        *why = "it is not a file";
        return PK_BAD;
    }
    if (p->dropdir && st.st_nlink != 1) {
        /* A hard link to a file elsewhere would mail what its owner never dropped. */
        close(fd);
        *why = "it has other links";
        return PK_BAD;
    }
    if ((uint64_t)st.st_size > p->max_size) {
        close(fd);
        *why = "it is over the size limit";
        return p->dropdir ? PK_TOO_BIG : PK_BAD;
    }
    buf b = BUF_INIT;
    pk_msg m = {0};
    pk_outcome out = PK_RETRY;
    ims_spool_msg *sm = NULL;
    uint64_t off = 0;
    bool eof = false;
    int rc;
    for (;;) {
        size_t got;
        if ((rc = read_at(fd, off, &b, &got)))
            goto done;
        off += got;
        eof = got == 0;
        rc = p->dropdir ? parse_dropdir(&b, eof, &m, why)
                        : ims_pickup_parse((const char *)b.data, b.len, eof, &m.env, why);
        if (rc != EAGAIN)
            break;
    }
    if (rc == EBADMSG) {
        out = PK_BAD;
        goto done;
    }
    if (rc || (rc = route_all(p, name, &m)))
        goto done;
    if (!m.n) {
        *why = "none of its receivers has a route";
        out = PK_BAD;
        goto done;
    }
    ims_envelope env = {0};
    env.sender = m.env.sender;
    env.rcpts = m.rcpts;
    env.nrcpt = m.n;
    env.client_ip = NULL; /* "unknown": it came from no network client */
    env.helo = p->host;
    env.host = p->host;
    char origin[IMS_DROPDIR_ORIGIN_MAX], user[256];
    buf head = BUF_INIT;
    if (p->dropdir) {
        owner_name(st.st_uid, user, sizeof user);
        ims_dropdir_origin((unsigned long)st.st_uid, user[0] ? user : NULL, origin, sizeof origin);
        env.dropdir = name;
        env.origin = origin;
        rc = ims_dropdir_head(&m.dm, m.env.sender, (unsigned long)st.st_uid, user[0] ? user : NULL,
                              p->host, name, time(NULL), &head);
        if (rc) {
            buf_free(&head);
            goto done;
        }
    } else {
        env.pickup = name;
    }
    rc = ims_spool_begin(p->spool, &env, &sm);
    if (!rc && head.len)
        rc = ims_spool_write(sm, head.data, head.len);
    buf_free(&head);
    if (rc && sm) {
        ims_spool_abort(sm);
        goto done;
    }
    if (rc) {
        if (rc == EINVAL) {
            *why = "its envelope cannot be spooled";
            out = PK_BAD;
        }
        goto done;
    }
    /* The content: what was read past the envelope, then the rest of the file. */
    ims_pickup_conv conv = {0};
    buf cv = BUF_INIT;
    size_t from = m.env.content_off;
    for (bool first = true;; first = false) {
        cv.len = 0;
        rc = 0;
        /* The fields to leave out (Bcc) are all in the first read: the parser saw them. */
        for (size_t k = 0; first && !rc && k < m.dm.ncut; k++) {
            rc = ims_pickup_crlf(&conv, (const char *)b.data + from, m.dm.cuts[k].off - from, &cv);
            from = m.dm.cuts[k].off + m.dm.cuts[k].len;
        }
        if (!rc)
            rc = ims_pickup_crlf(&conv, (const char *)b.data + from, b.len - from, &cv);
        if (!rc && eof)
            rc = ims_pickup_crlf_end(&conv, &cv);
        if (!rc && conv.out > p->max_size + (p->max_size >> 1) + 2)
            rc = EFBIG; /* grew since fstat */
        if (!rc && cv.len)
            rc = ims_spool_write(sm, cv.data, cv.len);
        if (rc || eof)
            break;
        b.len = 0;
        from = 0;
        size_t got;
        if ((rc = read_at(fd, off, &b, &got)))
            break;
        off += got;
        eof = got == 0;
    }
    buf_free(&cv);
    if (rc) {
        ims_spool_abort(sm);
        if (rc == EBADMSG || rc == EFBIG) {
            *why = rc == EFBIG ? "it is over the size limit"
                               : "its content has a CR without LF or a NUL";
            out = rc == EFBIG && p->dropdir ? PK_TOO_BIG : PK_BAD;
        }
        goto done;
    }
    pk_job *j = calloc(1, sizeof *j);
    if (!j) {
        ims_spool_abort(sm);
        rc = ENOMEM;
        goto done;
    }
    snprintf(j->name, sizeof j->name, "%s", name);
    j->core = p->core;
    j->size = size;
    pthread_mutex_lock(&p->core->lock);
    p->core->refs++;
    p->core->stats.in_flight++;
    pthread_mutex_unlock(&p->core->lock);
    p->in_flight++;
    ims_spool_commit(sm, committed, j);
    out = PK_SUBMITTED;
done:
    *err = rc;
    pk_msg_free(&m);
    buf_free(&b);
    close(fd);
    return out;
}

static void take(ims_pickup *p, const char *name)
{
    const char *why;
    int err;
    uint64_t size = claim_size(p, name);
    switch (submit(p, name, size, &why, &err)) {
    case PK_SUBMITTED: /* leaves the counters when its commit answers */
        break;
    case PK_GONE:
        count_out(p, size);
        break;
    case PK_BAD:
        to_bad(p, name, why, p->ev_bad);
        count_out(p, size);
        break;
    case PK_TOO_BIG:
        to_bad(p, name, why, IMS_EV_DROPDIR_TOO_BIG);
        count_out(p, size);
        break;
    case PK_RETRY:
        pk_event_fmt(p, IMS_EV_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                     "%s: unable to spool the file %s/%s: %s; tried again later", p->label,
                     p->claim, name, strerror(err));
        pthread_mutex_lock(&p->core->lock);
        p->core->stats.retried++;
        pthread_mutex_unlock(&p->core->lock);
        retry_later(p, name, true);
        break;
    }
}

/* work - take what is queued, while fewer than IMS_PICKUP_IN_FLIGHT wait for their commit:
 * claim a batch from new/, make that durable (fsync new/ and the claim directory: a rename
 * undone by a crash after the commit would bring the file back into new/), then spool it. */
static void work(ims_pickup *p)
{
    while (p->queue && p->in_flight < IMS_PICKUP_IN_FLIGHT) {
        pk_name *batch[IMS_PICKUP_IN_FLIGHT];
        size_t n = 0;
        bool claimed_some = false;
        while (p->queue && n < IMS_PICKUP_IN_FLIGHT - p->in_flight) {
            pk_name *q = p->queue;
            p->queue = q->next;
            if (!p->queue)
                p->queue_tail = &p->queue;
            bool ok = q->claimed;
            if (!ok && claim(p, q->name))
                ok = claimed_some = true;
            if (ok)
                batch[n++] = q;
            else
                free(q);
        }
        bool synced = !claimed_some || (fsync(p->new_fd) == 0 && fsync(p->claim_fd) == 0);
        if (!synced)
            pk_event_fmt(p, IMS_EV_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                         "%s: unable to flush the folder %s: %s; its files are taken later",
                         p->label, p->watch, strerror(errno));
        for (size_t i = 0; i < n; i++) {
            if (synced)
                take(p, batch[i]->name);
            else
                retry_later(p, batch[i]->name, true);
            free(batch[i]);
        }
    }
}

/* results - the commits answered: a failed one is tried again later (its claim stayed). */
static bool results(ims_pickup *p)
{
    drain(p->core->wake_fd);
    pthread_mutex_lock(&p->core->lock);
    pk_job *j = p->core->results;
    p->core->results = NULL;
    p->core->results_tail = &p->core->results;
    bool stop = p->core->stopping;
    pthread_mutex_unlock(&p->core->lock);
    while (j) {
        pk_job *next = j->next;
        if (p->in_flight)
            p->in_flight--;
        if (j->err) {
            pk_event_fmt(p, IMS_EV_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                         "%s: the file %s/%s could not be spooled: %s; tried again later", p->label,
                         p->claim, j->name, strerror(j->err));
            retry_later(p, j->name, true);
        }
        free(j);
        j = next;
    }
    return stop;
}

/* inotify_read - new names into the queue; an overflow rescans new/. */
static void inotify_read(ims_pickup *p)
{
    char ev[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(p->ino_fd, ev, sizeof ev);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (char *q = ev; q < ev + n;) {
            const struct inotify_event *e = (const struct inotify_event *)q;
            if (e->mask & IN_Q_OVERFLOW)
                scan(p, p->new_fd, false);
            else if (e->len && e->name[0] != '.' && !(e->mask & IN_ISDIR))
                enqueue(p, e->name, false);
            q += sizeof *e + e->len;
        }
    }
}

/* due_retries - retries whose time has come into the queue; the wait for the next, in ms. */
static int due_retries(ims_pickup *p)
{
    uint64_t now = ims_clock_ms(), next = UINT64_MAX;
    for (pk_name **r = &p->retry; *r;) {
        pk_name *n = *r;
        if (n->due <= now) {
            *r = n->next;
            n->next = NULL;
            *p->queue_tail = n;
            p->queue_tail = &n->next;
            continue;
        }
        if (n->due < next)
            next = n->due;
        r = &n->next;
    }
    if (next == UINT64_MAX)
        return -1;
    return next - now > INT32_MAX ? INT32_MAX : (int)(next - now);
}

static void *pickup_main(void *arg)
{
    ims_pickup *p = arg;
    /* Claims left by a run that ended: the spool's open removed those of messages it holds,
     * so these were never committed. Then whatever waits in new/. */
    scan(p, p->claim_fd, true);
    scan(p, p->new_fd, false);
    for (;;) {
        work(p);
        int timeout = due_retries(p);
        if (p->queue && p->in_flight < IMS_PICKUP_IN_FLIGHT)
            timeout = 0;
        struct pollfd fds[2] = {{.fd = p->core->wake_fd, .events = POLLIN},
                                {.fd = p->ino_fd, .events = POLLIN}};
        /* While the most are in flight, new names wait in the kernel's queue. */
        nfds_t nfds = p->in_flight < IMS_PICKUP_IN_FLIGHT ? 2 : 1;
        if (poll(fds, nfds, timeout) < 0 && errno != EINTR)
            break;
        if (results(p))
            break;
        if (nfds == 2 && (fds[1].revents & POLLIN))
            inotify_read(p);
    }
    return NULL;
}

/* --- start, dispatch, stop ------------------------------------------------------------- */

int ims_pickup_claim_dir(const char *mts_out, char *out, size_t n)
{
    int k = snprintf(out, n, "%s/%s", mts_out, IMS_PICKUP_CLAIM_DIR);
    return k < 0 || (size_t)k >= n ? ENAMETOOLONG : 0;
}

static int open_dir(const char *path, bool make, int *fd)
{
    if (make && mkdir(path, 0750) && errno != EEXIST)
        return errno;
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? errno : 0;
}

static void pickup_free(ims_pickup *p)
{
    int fds[] = {p->new_fd, p->claim_fd, p->bad_fd, p->ino_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (pk_name *lists[] = {p->queue, p->retry}, **l = lists; l < lists + 2; l++)
        while (*l) {
            pk_name *n = *l;
            *l = n->next;
            free(n);
        }
    free(p->watch);
    free(p->claim);
    free(p->bad);
    free(p->store_dir);
    free(p->host);
    if (p->core)
        core_unref(p->core);
    free(p);
}

int ims_pickup_start_config(const ims_pickup_config *cf, ims_pickup **out)
{
    *out = NULL;
    if (!cf->watch || !cf->claim || !cf->bad || !cf->store_dir || !cf->host || !cf->spool ||
        !cf->router || !ims_spool_field_ok(cf->host, false))
        return EINVAL;
    ims_pickup *p = calloc(1, sizeof *p);
    pk_core *c = calloc(1, sizeof *c);
    if (!p || !c) {
        free(p);
        free(c);
        return ENOMEM;
    }
    p->new_fd = p->claim_fd = p->bad_fd = p->ino_fd = -1;
    p->queue_tail = &p->queue;
    p->core = c;
    pthread_mutex_init(&c->lock, NULL);
    c->refs = 1;
    c->results_tail = &c->results;
    c->events_tail = &c->events;
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->out_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->dropdir = cf->dropdir;
    p->label = cf->dropdir ? "Pickup" : "MTS-OUT";
    p->ev_bad = cf->dropdir ? IMS_EV_DROPDIR_BAD : IMS_EV_PICKUP_BAD;
    p->spool = cf->spool;
    p->router = cf->router;
    p->log = cf->log;
    p->max_size =
        cf->max_size && cf->max_size < IMS_PICKUP_SIZE_MAX ? cf->max_size : IMS_PICKUP_SIZE_MAX;
    p->retry_ms = cf->retry_ms ? cf->retry_ms : IMS_PICKUP_RETRY_MS;
    p->watch = strdup(cf->watch);
    p->claim = strdup(cf->claim);
    p->bad = strdup(cf->bad);
    p->store_dir = strdup(cf->store_dir);
    p->host = strdup(cf->host);
    int rc = 0;
    if (c->wake_fd < 0 || c->out_fd < 0)
        rc = errno;
    else if (!p->watch || !p->claim || !p->bad || !p->store_dir || !p->host)
        rc = ENOMEM;
    if (!rc)
        rc = open_dir(p->watch, false, &p->new_fd);
    /* The Pickup directory's claim directory is made, and checked, by ims_dropdir_prepare. */
    if (!rc)
        rc = open_dir(p->claim, !cf->dropdir, &p->claim_fd);
    if (!rc)
        rc = open_dir(p->bad, false, &p->bad_fd);
    if (!rc && (p->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
        rc = errno;
    /* The watch before the scan: a file arriving in between is seen twice (harmless: the
     * second claim finds it gone), never missed. */
    if (!rc &&
        inotify_add_watch(p->ino_fd, p->watch, IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR) < 0)
        rc = errno;
    if (!rc) {
        rc = pthread_create(&p->thread, NULL, pickup_main, p);
        p->running = !rc;
    }
    if (rc) {
        pickup_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int ims_pickup_start(const ims_pickup_options *opt, ims_pickup **out)
{
    *out = NULL;
    if (!opt || !opt->mts_out || !opt->bad)
        return EINVAL;
    char watch[PATH_MAX], claim[PATH_MAX], bad[PATH_MAX];
    if (snprintf(watch, sizeof watch, "%s/new", opt->mts_out) >= (int)sizeof watch ||
        ims_pickup_claim_dir(opt->mts_out, claim, sizeof claim) ||
        snprintf(bad, sizeof bad, "%s/new", opt->bad) >= (int)sizeof bad)
        return ENAMETOOLONG;
    ims_pickup_config cf = {
        .watch = watch,
        .claim = claim,
        .bad = bad,
        .store_dir = opt->store_dir,
        .host = opt->host,
        .spool = opt->spool,
        .router = opt->router,
        .log = opt->log,
        .max_size = opt->max_size,
        .retry_ms = opt->retry_ms,
    };
    return ims_pickup_start_config(&cf, out);
}

int ims_pickup_fd(const ims_pickup *p)
{
    return p->core->out_fd;
}

size_t ims_pickup_dispatch(ims_pickup *p)
{
    pk_core *c = p->core;
    drain(c->out_fd);
    pthread_mutex_lock(&c->lock);
    pk_event *e = c->events;
    c->events = NULL;
    c->events_tail = &c->events;
    c->nevents = 0;
    size_t dropped = c->dropped;
    c->dropped = 0;
    pthread_mutex_unlock(&c->lock);
    size_t count = 0;
    while (e) {
        pk_event *next = e->next;
        ims_log_event(p->log, e->id, IMS_CAT_MESSAGE_TRANSFER, e->sev, e->level, "%s", e->text);
        free(e);
        e = next;
        count++;
    }
    if (dropped)
        ims_log_event(p->log, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "%zu %s events were not logged (too many at once)", dropped, p->label);
    return count;
}

void ims_pickup_get_stats(ims_pickup *p, ims_pickup_stats *st)
{
    pthread_mutex_lock(&p->core->lock);
    *st = p->core->stats;
    pthread_mutex_unlock(&p->core->lock);
}

void ims_pickup_stop(ims_pickup *p)
{
    if (!p)
        return;
    if (p->running) {
        pthread_mutex_lock(&p->core->lock);
        p->core->stopping = true;
        pthread_mutex_unlock(&p->core->lock);
        wake(p->core->wake_fd);
        pthread_join(p->thread, NULL);
    }
    ims_pickup_dispatch(p);
    pickup_free(p);
}
