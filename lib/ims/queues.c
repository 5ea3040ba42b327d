/* queues.c - the queues that are directories, as the administrator sees them: RootDir\In
 * (spool files awaiting delivery into mailboxes), the gateway's MTS-IN (copies being
 * delivered) and MTS-OUT (messages from the organisation awaiting conversion). Read-only. */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define QD_HEAD_MAX 16384 /* bytes of an MTS-IN or MTS-OUT file read for its envelope */
#define QD_RCPTS_MAX 1024 /* recipients shown of one MTS-OUT file */
#define QD_SUBDIRS_MAX 2  /* MTS-OUT: new/ and .taking/ */
#define QD_FIELD_MAX 1024 /* bytes of an address shown */

struct ims_queue_dir {
    ims_queue_kind kind;
    char in_dir[PATH_MAX]; /* RootDir\In: MTS-IN's recipients come from the spool file */
    char dirs[QD_SUBDIRS_MAX][PATH_MAX];
    const char *states[QD_SUBDIRS_MAX];
    size_t ndirs, at;
    DIR *d;
    /* the current view's storage */
    char id[NAME_MAX + 1];
    char sender[QD_FIELD_MAX];
    ims_spool_file f;
    bool have_f;
    char *head;
    ims_queue_rcpt *rc;
    size_t caprc;
};

int ims_queue_dir_open(ims_queue_kind kind, const char *root_dir, const char *gateway,
                       ims_queue_dir **out)
{
    *out = NULL;
    ims_queue_dir *w = calloc(1, sizeof *w);
    if (!w)
        return ENOMEM;
    w->kind = kind;
    int n = snprintf(w->in_dir, sizeof w->in_dir, "%s/In", root_dir);
    bool ok = n > 0 && (size_t)n < sizeof w->in_dir;
    switch (kind) {
    case IMS_QUEUE_IN:
        ok = ok && snprintf(w->dirs[0], PATH_MAX, "%s", w->in_dir) < PATH_MAX;
        w->ndirs = 1;
        break;
    case IMS_QUEUE_MTS_IN:
        ok = ok && snprintf(w->dirs[0], PATH_MAX, "%s/.MTS-IN/new", gateway) < PATH_MAX;
        w->states[0] = "delivering";
        w->ndirs = 1;
        break;
    case IMS_QUEUE_MTS_OUT:
        ok = ok && snprintf(w->dirs[0], PATH_MAX, "%s/.MTS-OUT/new", gateway) < PATH_MAX &&
             snprintf(w->dirs[1], PATH_MAX, "%s/.MTS-OUT/.taking", gateway) < PATH_MAX;
        w->ndirs = 2;
        break;
    default:
        ok = false;
    }
    if (!ok) {
        free(w);
        return kind > IMS_QUEUE_MTS_OUT ? EINVAL : ENAMETOOLONG;
    }
    *out = w;
    return 0;
}

static void view_reset(ims_queue_dir *w)
{
    if (w->have_f)
        ims_spool_file_free(&w->f);
    w->have_f = false;
    free(w->head);
    w->head = NULL;
}

static bool rc_room(ims_queue_dir *w, size_t n)
{
    if (n <= w->caprc)
        return true;
    ims_queue_rcpt *v = realloc(w->rc, n * sizeof *v);
    if (!v)
        return false;
    w->rc = v;
    w->caprc = n;
    return true;
}

/* read_head - up to QD_HEAD_MAX bytes of fd, NUL-terminated, into w->head. */
static int read_head(ims_queue_dir *w, int fd, size_t *len)
{
    w->head = malloc(QD_HEAD_MAX + 1);
    if (!w->head)
        return ENOMEM;
    size_t got = 0;
    while (got < QD_HEAD_MAX) {
        ssize_t r = read(fd, w->head + got, QD_HEAD_MAX - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    w->head[got] = 0;
    *len = got;
    return 0;
}

/* header_line - the value of a line "Name: value" at p (its end at eol), or NULL. */
static char *header_value(char *p, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(p, name, n) || p[n] != ':')
        return NULL;
    p += n + 1;
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* cut_line - end the line at p (CRLF or LF) with a NUL; the next line, or NULL at the end of
 * what was read (a line cut by the read limit is not used). */
static char *cut_line(char *p)
{
    char *lf = strchr(p, '\n');
    if (!lf)
        return NULL;
    *lf = 0;
    if (lf > p && lf[-1] == '\r')
        lf[-1] = 0;
    return lf + 1;
}

static void addr_copy(char *out, size_t size, const char *v)
{
    if (*v == '<')
        v++;
    size_t n = strcspn(v, ">");
    if (n >= size)
        n = size - 1;
    memcpy(out, v, n);
    out[n] = 0;
}

/* view_spool - an In file (or, for MTS-IN, the In file of the copy's queue id). */
static int view_spool(ims_queue_dir *w, int fd, ims_queue_msg *v)
{
    int rc = ims_spool_file_read(fd, &w->f);
    if (rc)
        return rc;
    w->have_f = true;
    if (!rc_room(w, w->f.nrcpt ? w->f.nrcpt : 1))
        return ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < w->f.nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &w->f.rcpts[i];
        if (r->route != IMS_ROUTE_LOCAL)
            continue; /* the outbound side's, once the file is in Out */
        ims_queue_rcpt *q = &w->rc[n++];
        memset(q, 0, sizeof *q);
        q->address = r->address;
        q->route = r->route;
        q->dest = r->maildir;
        q->state = r->state == IMS_RCPT_DONE     ? IMS_QRCPT_DONE
                   : r->state == IMS_RCPT_FAILED ? IMS_QRCPT_FAILED
                                                 : IMS_QRCPT_WAITING;
        q->attempts = r->attempts;
        q->last = r->last;
    }
    v->sender = w->f.sender;
    v->arrival = w->f.time;
    v->size = w->f.content_len;
    v->held = w->f.held;
    v->rcpts = w->rc;
    v->nrcpt = n;
    return 0;
}

/* view_mts_in - a copy in MTS-IN: <queue id>.<...>; Return-Path says the sender, the
 * spool file in In the recipients (when it is still there). */
static int view_mts_in(ims_queue_dir *w, int fd, const struct stat *st, ims_queue_msg *v)
{
    size_t len;
    int rc = read_head(w, fd, &len);
    if (rc)
        return rc;
    char *rp = header_value(w->head, "Return-Path");
    if (rp && cut_line(rp))
        addr_copy(w->sender, sizeof w->sender, rp);
    else
        w->sender[0] = 0;
    size_t idlen = strspn(w->id, "0123456789ABCDEF");
    v->sender = w->sender;
    v->arrival = st->st_mtime;
    v->size = (uint64_t)st->st_size;
    v->held = false;
    v->rcpts = NULL;
    v->nrcpt = 0;
    if (idlen == IMS_QUEUE_ID_LEN) {
        w->id[idlen] = 0;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", w->in_dir, w->id) < (int)sizeof path) {
            int sfd = open(path, O_RDONLY | O_CLOEXEC);
            if (sfd >= 0) {
                ims_queue_msg sv;
                if (view_spool(w, sfd, &sv) == 0) {
                    v->rcpts = sv.rcpts;
                    v->nrcpt = sv.nrcpt;
                    v->arrival = sv.arrival;
                    for (size_t i = 0; i < v->nrcpt; i++)
                        if (w->rc[i].state == IMS_QRCPT_WAITING)
                            w->rc[i].state = IMS_QRCPT_SENDING;
                }
                close(sfd);
            }
        }
    }
    return 0;
}

/* view_mts_out - a message from the organisation: X-Sender and X-Receiver lines first. */
static int view_mts_out(ims_queue_dir *w, int fd, const struct stat *st, const char *state,
                        ims_queue_msg *v)
{
    size_t len;
    int rc = read_head(w, fd, &len);
    if (rc)
        return rc;
    w->sender[0] = 0;
    size_t n = 0;
    char *p = w->head;
    while (p && *p && n < QD_RCPTS_MAX) {
        char *next = cut_line(p);
        if (!next)
            break;
        char *val;
        if ((val = header_value(p, "X-Sender"))) {
            addr_copy(w->sender, sizeof w->sender, val);
        } else if ((val = header_value(p, "X-Receiver"))) {
            if (!rc_room(w, n + 1))
                return ENOMEM;
            ims_queue_rcpt *q = &w->rc[n++];
            memset(q, 0, sizeof *q);
            if (*val == '<')
                val++;
            val[strcspn(val, ">")] = 0;
            q->address = val;
            q->state = state ? IMS_QRCPT_SENDING : IMS_QRCPT_WAITING;
        } else {
            break;
        }
        p = next;
    }
    v->sender = w->sender;
    v->arrival = st->st_mtime;
    v->size = (uint64_t)st->st_size;
    v->held = false;
    v->rcpts = w->rc;
    v->nrcpt = n;
    return 0;
}

int ims_queue_dir_next(ims_queue_dir *w, ims_queue_msg *v)
{
    view_reset(w);
    for (;;) {
        if (!w->d) {
            if (w->at >= w->ndirs)
                return 0;
            w->d = opendir(w->dirs[w->at]);
            if (!w->d) {
                w->at++;
                continue; /* not made yet, or gone: nothing waits there */
            }
        }
        errno = 0;
        struct dirent *e = readdir(w->d);
        if (!e) {
            closedir(w->d);
            w->d = NULL;
            w->at++;
            continue;
        }
        if (e->d_name[0] == '.')
            continue;
        if (w->kind == IMS_QUEUE_IN && !ims_spool_id_valid(e->d_name))
            continue;
        int fd = openat(dirfd(w->d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue; /* delivered or taken meanwhile */
        struct stat st;
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
            close(fd);
            continue;
        }
        snprintf(w->id, sizeof w->id, "%s", e->d_name);
        int rc;
        if (w->kind == IMS_QUEUE_IN)
            rc = view_spool(w, fd, v);
        else if (w->kind == IMS_QUEUE_MTS_IN)
            rc = view_mts_in(w, fd, &st, v);
        else
            rc = view_mts_out(w, fd, &st, w->at ? "converting" : NULL, v);
        close(fd);
        if (rc == ENOMEM)
            return ENOMEM;
        if (rc) {
            view_reset(w);
            continue; /* being written or damaged: recovery's business, not the view's */
        }
        v->id = w->id;
        return 1;
    }
}

void ims_queue_dir_close(ims_queue_dir *w)
{
    if (!w)
        return;
    view_reset(w);
    if (w->d)
        closedir(w->d);
    free(w->rc);
    free(w);
}

const char *ims_queue_name(ims_queue_kind kind)
{
    switch (kind) {
    case IMS_QUEUE_IN:
        return "In";
    case IMS_QUEUE_MTS_IN:
        return "MTS-IN";
    case IMS_QUEUE_MTS_OUT:
        return "MTS-OUT";
    case IMS_QUEUE_OUT:
        return "Out";
    }
    return "?";
}

int ims_queue_parse(const char *name, ims_queue_kind *kind)
{
    static const struct {
        const char *name;
        ims_queue_kind kind;
    } names[] = {{"in", IMS_QUEUE_IN},          {"mts-in", IMS_QUEUE_MTS_IN},
                 {"mtsin", IMS_QUEUE_MTS_IN},   {"mts-out", IMS_QUEUE_MTS_OUT},
                 {"mtsout", IMS_QUEUE_MTS_OUT}, {"out", IMS_QUEUE_OUT}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].name)) {
            *kind = names[i].kind;
            return 0;
        }
    return EINVAL;
}
