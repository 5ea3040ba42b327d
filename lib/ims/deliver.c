/* deliver.c - delivery from the spool (RootDir\In) into the recipients' Maildirs through the
 * gateway mailbox's MTS-IN, as the original submitted inbound mail to MTS-IN: exactly once per
 * mailbox, resumed after a crash from the status records in the spool file.
 *
 * One message, one round:
 *   1. MTS-IN/tmp/<id>.<host> gets Return-Path, Received and the content with LF line ends
 *      (the spool keeps the CRLF wire form; Maildir as Postfix, Dovecot and mutt write it has
 *      LF: each CRLF becomes LF while copying, every other byte stays); fdatasync; link to
 *      MTS-IN/new/<id>.<host> (already there from an earlier try: reused as it is, for it was
 *      linked only after its sync).
 *   2. Each recipient's <maildir>/new/<id>.<index>.<host>,S=<size> is a hard link to that file
 *      (a copy through <maildir>/tmp when the Maildir is on another file system); <size> is
 *      the file's exact size (Maildir++: readers take S= for it). The name depends only on the
 *      message and the recipient, so EEXIST means "delivered before a crash"; a message
 *      retried or recovered at start also looks in new/ and cur/ for a name that begins with
 *      <id>.<index>.<host> (a reader may have moved the copy to cur/ as "...,S=<size>:2,S").
 *   3. One fsync of each new/ that got a link; tracking event 1013 for each recipient. When
 *      some recipients are still to do (or the file is to be archived), "done <index>" lines
 *      are appended to the spool file and fdatasync'd first.
 *   4. All recipients done: MTS-IN's copy goes, then the spool file (to In/Archive when asked);
 *      one fsync of In for the round's finished messages. (No done records for them: until
 *      that fsync a crash only brings the file back, and delivering it again finds every copy
 *      in new/ or cur/ under its own name.)
 * A recipient whose Maildir cannot be written is tried again later with a doubling delay
 * (bounded by retry_max_ms), for ever: non-delivery reports are out of scope here, so a message
 * is never dropped for a mailbox error. The steps of several messages are done together so
 * that their syncs share the file system's journal commits. */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define DELIVER_ROUND 64       /* messages delivered together */
#define DELIVER_COPY_BUF 65536 /* bytes per read when copying through a buffer */
#define DELIVER_HOST_MAX 160   /* bytes of the host name in a file name, escapes included */
#define DELIVER_NAME_MAX 256   /* a file name: id, index, host, size */
#define DELIVER_EVENT_TEXT 512
#define DELIVER_BACKOFF_SHIFT 20 /* doublings before the delay stops growing anyway */
/* How long finished files' leaving In may wait for the committer's next fsync of In (which
 * makes it durable too) before this thread syncs In itself. */
#define DELIVER_IN_SYNC_MS 50
/* How long a round's copies and new/ folders wait for the committer's next syncfs to make
 * them durable too, before this thread makes its own. */
#define DELIVER_SHARE_MS 5

typedef struct dl_item {
    ims_sched_node node; /* first: a node is its item; scheduled while deferred */
    struct dl_item *next;
    char id[IMS_QUEUE_ID_LEN + 1];
    bool recovered; /* look in cur/ too: an earlier copy may have been read and moved there */
    bool finished;  /* set by the round: nothing left to do */
    unsigned attempts;
    bool mts_counted;  /* its MTS-IN copy is in the counters (mts_in_queued, _bytes) */
    uint64_t mts_size; /* ... with this size */
} dl_item;

struct ims_deliverer {
    char *root;
    bool archive;
    unsigned retry_min_ms, retry_max_ms;
    ims_tracking *tracking;
    ims_sync_pool *pool;
    bool file_syncs;
    ims_recycler *recycler;
    int work_fd; /* the spool's, where recycled files go */
    ims_spool_event_fn event;
    void *event_arg;
    int in_fd, archive_fd, mts_new_fd, mts_tmp_fd;
    int out_fd; /* RootDir's Out, with a handover; -1 without */
    void (*handover)(void *arg, const char *qid);
    void *handover_arg;
    ims_report_names names; /* receipts: valid when receipt is set */
    void (*receipt)(void *arg, const char *sender, const void *data, size_t len);
    void *receipt_arg;
    unsigned receipt_seq;
    int *fds, *errs; /* DELIVER_ROUND each: a round's syncs */
    bool no_space;   /* a disk-full episode: a delivery failed for want of space, none since */
    /* Files left In since its last known fsync: dirty until a sync numbered in_need
     * (ims_recycler_mark) has succeeded, or this thread syncs In at in_dirty_at + the delay. */
    bool in_dirty;
    uint64_t in_need, in_dirty_at;

    pthread_mutex_t lock; /* guards the lists, the counters and stopping */
    pthread_cond_t wake;
    dl_item *ready, **ready_tail;
    ims_sched waiting; /* deferred, by due time (ims_clock_ms) */
    size_t queued;
    bool stopping;
    uint64_t delivered, deferred, finished;
    uint64_t mts_entered, mts_queued, mts_bytes;
    ims_latency latency;
    pthread_t thread;
    bool running;
};

/* One message's state during a round. */
typedef struct dl_msg {
    dl_item *item;
    int fd;                          /* the spool file, O_RDWR | O_APPEND, or -1 */
    char recycled[IMS_RECYCLE_NAME]; /* finished: its name in Work, when recycled */
    ims_spool_file f;
    bool parsed;
    char host[DELIVER_HOST_MAX + 1]; /* f.host as a file name may hold it */
    char name[DELIVER_NAME_MAX];     /* in MTS-IN */
    int tmp_fd;                      /* MTS-IN/tmp/<name> being written, or -1 */
    bool tmp_made;                   /* MTS-IN/tmp/<name> made in this round, not yet gone */
    bool in_mts;                     /* MTS-IN/new/<name> is there */
    uint64_t size;                   /* its size in bytes: the S= of the recipients' copies */
    size_t *leader;  /* per recipient: the lowest index with the same Maildir (one copy each) */
    bool *now;       /* per recipient: delivered in this round, not recorded yet */
    bool failed;     /* the message as a whole failed in this round */
    int err;         /* the first failure, for the event */
    size_t err_rcpt; /* its recipient, or SIZE_MAX for the message */
    size_t nfailed;  /* recipients that failed */
} dl_msg;

/* A Maildir's new/ folder to sync at the end of the round, and how that went. */
typedef struct dl_dir {
    const char *maildir;
    int err;
} dl_dir;

typedef struct dl_dirs {
    dl_dir *v;
    size_t n, cap;
} dl_dirs;

static void dl_event(ims_deliverer *d, unsigned id, ims_category cat, ims_severity sev,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void dl_event(ims_deliverer *d, unsigned id, ims_category cat, ims_severity sev,
                     const char *fmt, ...)
{
    char text[DELIVER_EVENT_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    d->event(d->event_arg, id, cat, sev, IMS_LEVEL_NONE, text);
}

/* copy_range - len bytes of src from off to dst's current position: in the kernel when it
 * can, else through a buffer. */
static int copy_range(int dst, int src, off_t off, uint64_t len)
{
    while (len) {
        ssize_t r = copy_file_range(src, &off, dst, NULL, len, 0);
        if (r > 0) {
            len -= (uint64_t)r;
            continue;
        }
        if (r == 0)
            return EIO; /* the file is shorter than its envelope says */
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
            return errno;
        break;
    }
    char *b = len ? malloc(DELIVER_COPY_BUF) : NULL;
    if (len && !b)
        return ENOMEM;
    int rc = 0;
    while (!rc && len) {
        size_t want = len < DELIVER_COPY_BUF ? (size_t)len : DELIVER_COPY_BUF;
        ssize_t r = pread(src, b, want, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? errno : EIO;
            break;
        }
        rc = base_write_all(dst, b, (size_t)r);
        off += r;
        len -= (uint64_t)r;
    }
    free(b);
    return rc;
}

/* copy_lf - len bytes of src from off to dst's current position with each CRLF written as
 * LF, every other byte (a CR without its LF too) as it is, through one bounded buffer: a CR
 * that ends a read waits for the next byte. *out gets the bytes written. */
static int copy_lf(int dst, int src, off_t off, uint64_t len, uint64_t *out)
{
    char *b = malloc(DELIVER_COPY_BUF + 1); /* + 1: a CR carried over from the last read */
    if (!b)
        return ENOMEM;
    int rc = 0;
    size_t carry = 0;
    *out = 0;
    while (!rc && len) {
        size_t want = len < DELIVER_COPY_BUF ? (size_t)len : DELIVER_COPY_BUF;
        ssize_t r = pread(src, b + carry, want, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = r < 0 ? errno : EIO; /* 0: the file is shorter than its envelope says */
            break;
        }
        off += r;
        len -= (uint64_t)r;
        size_t n = carry + (size_t)r, i = 0, o = 0;
        carry = 0;
        while (i < n) {
            const char *cr = memchr(b + i, '\r', n - i);
            size_t k = cr ? (size_t)(cr - (b + i)) : n - i;
            memmove(b + o, b + i, k);
            o += k;
            i += k;
            if (!cr)
                break;
            if (i + 1 == n && len) { /* its LF, if any, comes with the next read */
                carry = 1;
                break;
            }
            if (i + 1 == n || b[i + 1] != '\n')
                b[o++] = '\r'; /* no CRLF: kept */
            i++;               /* a CRLF: the LF is copied next */
        }
        rc = base_write_all(dst, b, o);
        *out += o;
        if (carry)
            b[0] = '\r';
    }
    free(b);
    return rc;
}

/* --- names and headers ----------------------------------------------------------------- */

/* safe_host - the host as a Maildir file name may hold it: '/' and ':' are written as \057
 * and \072 (the Maildir convention), ',' as \054 (Maildir++ starts a field like S= with
 * it), control characters and spaces as '_'. */
static void safe_host(const char *in, char *out, size_t size)
{
    size_t n = 0;
    for (; *in && n + 5 < size; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '/' || c == ':' || c == ',') {
            n += (size_t)snprintf(out + n, size - n, "\\%03o", c);
        } else {
            out[n++] = c <= ' ' || c == 0x7f ? '_' : (char)c;
        }
    }
    out[n] = 0;
}

/* rcpt_base - the part of a recipient's file name that identifies the copy:
 * "<id>.<index>.<host>" (readers add flags after ':', some add fields after ','). */
static void rcpt_base(const dl_msg *m, size_t index, char *out, size_t size)
{
    snprintf(out, size, "%s.%zu.%s", m->f.id, index, m->host);
}

/* rcpt_name - the name of a recipient's copy in new/: its base and ",S=<size>". */
static void rcpt_name(const dl_msg *m, size_t index, char *out, size_t size)
{
    snprintf(out, size, "%s.%zu.%s,S=%llu", m->f.id, index, m->host, (unsigned long long)m->size);
}

/* rfc5322_date - "Wed, 1 May 2024 13:45:07 +0000", in GMT and without the locale. */
static void rfc5322_date(time_t t, char *out, size_t size)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, size, "Thu, 1 Jan 1970 00:00:00 +0000");
        return;
    }
    snprintf(out, size, "%s, %d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* headers - Return-Path and Received, as the original's conversion put them before the
 * content it submitted to MTS-IN; LF line ends, as the stored content has. The text depends
 * only on the spool file, so a copy made again after a crash is the same, size included. */
static int headers(const dl_msg *m, buf *out)
{
    const char *eol = "\n";
    const ims_spool_file *f = &m->f;
    char date[64], ip[IMS_SPOOL_MAX_FIELD + 16];
    rfc5322_date(f->time, date, sizeof date);
    if (!strcmp(f->client_ip, "unknown"))
        snprintf(ip, sizeof ip, "unknown");
    else if (strchr(f->client_ip, ':') && strncmp(f->client_ip, "IPv6:", 5))
        snprintf(ip, sizeof ip, "[IPv6:%s]", f->client_ip);
    else
        snprintf(ip, sizeof ip, "[%s]", f->client_ip);
    int rc = buf_printf(out, "Return-Path: <%s>%sReceived: from %s (%s)%s", f->sender, eol, f->helo,
                        ip, eol);
    rc = rc ? rc : ims_spool_received_tls(f, eol, out);
    return rc ? rc
              : buf_printf(out, "\tby %s with %s id %s;%s\t%s%s", f->host,
                           ims_spool_received_with(f), f->id, eol, date, eol);
}

/* --- one round ------------------------------------------------------------------------- */

static void fail(dl_msg *m, int err, size_t rcpt)
{
    if (!m->err) {
        m->err = err;
        m->err_rcpt = rcpt;
    }
    if (rcpt == SIZE_MAX)
        m->failed = true;
    else
        m->nfailed++;
}

static int leader_cmp(const void *a, const void *b, void *arg)
{
    const ims_spool_file *f = arg;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    /* Recipients of other routes sort together under "" (and lead themselves: below). */
    const char *mx = f->rcpts[x].maildir ? f->rcpts[x].maildir : "";
    const char *my = f->rcpts[y].maildir ? f->rcpts[y].maildir : "";
    int c = strcmp(mx, my);
    return c ? c : (x > y) - (x < y);
}

/* find_leaders - recipients sharing a Maildir get one copy, named by the lowest index. */
static int find_leaders(dl_msg *m)
{
    size_t n = m->f.nrcpt;
    size_t *order = malloc(n * sizeof *order);
    m->leader = malloc(n * sizeof *m->leader);
    m->now = calloc(n, sizeof *m->now);
    if (!order || !m->leader || !m->now) {
        free(order);
        return ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, n, sizeof *order, leader_cmp, &m->f);
    for (size_t i = 0; i < n; i++) {
        const ims_spool_rcpt_rec *r = &m->f.rcpts[order[i]], *prev = &m->f.rcpts[order[i - !!i]];
        m->leader[order[i]] = i && r->route == IMS_ROUTE_LOCAL && prev->route == IMS_ROUTE_LOCAL &&
                                      !strcmp(r->maildir, prev->maildir)
                                  ? m->leader[order[i - 1]]
                                  : order[i];
    }
    free(order);
    return 0;
}

static bool all_done(const dl_msg *m)
{
    for (size_t i = 0; i < m->f.nrcpt; i++)
        if (!m->f.rcpts[i].done)
            return false;
    return true;
}

/* locals_done - every recipient that is a mailbox of ours is done: what is left (recipients
 * routed elsewhere) is not this transport's. */
static bool locals_done(const dl_msg *m)
{
    for (size_t i = 0; i < m->f.nrcpt; i++)
        if (m->f.rcpts[i].route == IMS_ROUTE_LOCAL && !m->f.rcpts[i].done)
            return false;
    return true;
}

/* mts_count - m's copy is in MTS-IN/new (entered: written now, not found from before). */
static void mts_count(ims_deliverer *d, dl_msg *m, bool entered)
{
    pthread_mutex_lock(&d->lock);
    if (entered)
        d->mts_entered++;
    if (!m->item->mts_counted) {
        m->item->mts_counted = true;
        m->item->mts_size = m->size;
        d->mts_queued++;
        d->mts_bytes += m->size;
    }
    pthread_mutex_unlock(&d->lock);
}

/* has_locals - m has a recipient in a mailbox (routes are fixed at spooling): only such a
 * message ever has a copy in MTS-IN. */
static bool has_locals(const dl_msg *m)
{
    for (size_t i = 0; i < m->f.nrcpt; i++)
        if (m->f.rcpts[i].route == IMS_ROUTE_LOCAL)
            return true;
    return false;
}

/* mts_remove - m's copy leaves MTS-IN (a copy made before a crash included). */
static void mts_remove(ims_deliverer *d, dl_msg *m)
{
    if (has_locals(m))
        unlinkat(d->mts_new_fd, m->name, 0);
    pthread_mutex_lock(&d->lock);
    if (m->item->mts_counted) {
        m->item->mts_counted = false;
        d->mts_queued--;
        d->mts_bytes -= m->item->mts_size;
    }
    pthread_mutex_unlock(&d->lock);
}

/* start_mts - make sure MTS-IN/new has the message, or start writing it in MTS-IN/tmp. */
static void start_mts(ims_deliverer *d, dl_msg *m)
{
    struct stat st;
    if (fstatat(d->mts_new_fd, m->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        m->in_mts = true;
        m->size = (uint64_t)st.st_size;
        mts_count(d, m, false);
        return;
    }
    m->tmp_fd = openat(d->mts_tmp_fd, m->name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (m->tmp_fd < 0) {
        fail(m, errno, SIZE_MAX);
        return;
    }
    m->tmp_made = true;
    buf h = BUF_INIT;
    uint64_t body = 0;
    int rc = headers(m, &h);
    rc = rc ? rc : base_write_all(m->tmp_fd, h.data, h.len);
    m->size = h.len;
    buf_free(&h);
    rc = rc ? rc : copy_lf(m->tmp_fd, m->fd, (off_t)m->f.content_off, m->f.content_len, &body);
    m->size += body;
    if (rc) {
        close(m->tmp_fd);
        m->tmp_fd = -1;
        unlinkat(d->mts_tmp_fd, m->name, 0);
        m->tmp_made = false;
        fail(m, rc, SIZE_MAX);
    }
}

/* load - read the spool file; what is left to do starts in MTS-IN. */
static void load(ims_deliverer *d, dl_msg *m)
{
    m->fd = openat(d->in_fd, m->item->id, O_RDWR | O_APPEND | O_CLOEXEC);
    if (m->fd < 0) {
        if (errno == ENOENT)
            m->item->finished = true; /* gone (finished by an earlier round): nothing to do */
        else
            fail(m, errno, SIZE_MAX);
        return;
    }
    int rc = ims_spool_file_read(m->fd, &m->f);
    if (rc == EBADMSG) {
        /* It was read at commit or at start: this is damage since. */
        int mv = renameat(d->in_fd, m->item->id, d->archive_fd, m->item->id) ? errno : 0;
        dl_event(d, IMS_EV_SPOOL_ARCHIVED, IMS_CAT_MESSAGE_ARCHIVAL, IMS_SEV_ERROR,
                 "The spool file %s/In/%s can no longer be read; %s%s", d->root, m->item->id,
                 mv ? "moving it to In/Archive failed: " : "it was moved to In/Archive",
                 mv ? strerror(mv) : "");
        m->item->finished = !mv;
        if (mv)
            fail(m, mv, SIZE_MAX);
        return;
    }
    if (rc) {
        fail(m, rc, SIZE_MAX);
        return;
    }
    m->parsed = true;
    safe_host(m->f.host, m->host, sizeof m->host);
    snprintf(m->name, sizeof m->name, "%s.%s", m->f.id, m->host);
    if ((rc = find_leaders(m))) {
        fail(m, rc, SIZE_MAX);
        return;
    }
    if (!locals_done(m))
        start_mts(d, m);
}

struct load_args {
    ims_deliverer *d;
    dl_msg *ms;
};

/* load_fn - a pool job: load message i (its MTS-IN file is written in parallel with others). */
static void load_fn(void *arg, size_t i)
{
    struct load_args *a = arg;
    load(a->d, &a->ms[i]);
}

/* sync_anchor - what ims_pool_sync syncs the file system through: MTS-IN's tmp/, open for the
 * thread's life (the Maildirs are on its file system in the usual install, and In too when
 * the store is under RootDir's root), or -1 for a sync per file. */
static int sync_anchor(const ims_deliverer *d)
{
    return d->file_syncs ? -1 : d->mts_tmp_fd;
}

/* shared_sync - make fds[0..k) durable (errs[i]: 0 or an errno value). Outside file_syncs,
 * those on In's file system share the committer's next syncfs when one comes within
 * DELIVER_SHARE_MS (its rounds make everything written before them durable), else one of
 * ours; the rest are synced one by one. */
static void shared_sync(ims_deliverer *d, const int *fds, int *errs, size_t k, bool data_only)
{
    if (d->file_syncs || !k)
        ims_pool_sync(d->pool, sync_anchor(d), fds, errs, k, data_only);
    else
        ims_pool_sync_shared(d->pool, d->recycler, DELIVER_SHARE_MS, d->in_fd, fds, errs, k,
                             data_only);
}

/* sync_mts - the round's new MTS-IN files to disk (write-back of all started first, then
 * synced together), then into MTS-IN/new. */
static void sync_mts(ims_deliverer *d, dl_msg *ms, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ms[i].tmp_fd >= 0) {
            if (d->file_syncs)
                sync_file_range(ms[i].tmp_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            d->fds[k++] = ms[i].tmp_fd;
        }
    shared_sync(d, d->fds, d->errs, k, true);
    for (size_t i = 0, j = 0; i < n; i++) {
        dl_msg *m = &ms[i];
        if (m->tmp_fd < 0)
            continue;
        int rc = d->errs[j++];
        close(m->tmp_fd);
        m->tmp_fd = -1;
        /* Into MTS-IN/new, never over a copy there (EEXIST: an earlier try's, as good). */
        int mv = rc ? rc : base_rename_noreplace(d->mts_tmp_fd, m->name, d->mts_new_fd, m->name);
        if (mv)
            unlinkat(d->mts_tmp_fd, m->name, 0);
        m->tmp_made = false;
        if (mv && mv != EEXIST)
            rc = mv;
        if (rc) {
            fail(m, rc, SIZE_MAX);
        } else {
            m->in_mts = true;
            mts_count(d, m, true);
        }
    }
}

/* seen_in - an earlier copy in maildir/sub: a name that is base, or base and then Maildir++
 * fields (",S=123", what we write; some readers add ",W=...") or flags (":2,S", a reader that
 * moved it to cur/). Also finds copies named before the S= field was written. */
static bool seen_in(const char *maildir, const char *sub, const char *base)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", maildir, sub) >= (int)sizeof path)
        return false;
    DIR *dir = opendir(path);
    if (!dir)
        return false;
    size_t n = strlen(base);
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(dir)))
        found = !strncmp(e->d_name, base, n) &&
                (e->d_name[n] == 0 || e->d_name[n] == ':' || e->d_name[n] == ',');
    closedir(dir);
    return found;
}

/* copy_into - a Maildir on another file system (or a file at its link limit): the classic
 * tmp/, fdatasync, link into new/. */
static int copy_into(ims_deliverer *d, const dl_msg *m, const char *maildir, const char *name)
{
    char tmp[PATH_MAX], dst[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s/tmp/%s", maildir, name) >= (int)sizeof tmp ||
        snprintf(dst, sizeof dst, "%s/new/%s", maildir, name) >= (int)sizeof dst)
        return ENAMETOOLONG;
    int src = openat(d->mts_new_fd, m->name, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return errno;
    struct stat st;
    int rc = fstat(src, &st) ? errno : 0;
    int out = rc ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (!rc && out < 0)
        rc = errno;
    rc = rc ? rc : copy_range(out, src, 0, (uint64_t)st.st_size);
    if (!rc && fdatasync(out))
        rc = errno;
    if (out >= 0)
        close(out);
    close(src);
    if (!rc && link(tmp, dst) && errno != EEXIST)
        rc = errno;
    unlink(tmp);
    return rc;
}

static int dirs_add(dl_dirs *dirs, const char *maildir)
{
    if (dirs->n == dirs->cap) {
        size_t cap = dirs->cap ? dirs->cap * 2 : 64;
        dl_dir *v = realloc(dirs->v, cap * sizeof *v);
        if (!v)
            return ENOMEM;
        dirs->v = v;
        dirs->cap = cap;
    }
    dirs->v[dirs->n++] = (dl_dir){maildir, 0};
    return 0;
}

/* link_one - the copy named `name` into maildir/new: a hard link to MTS-IN's file, or a copy
 * when a link cannot be made. EEXIST is success: the copy of an earlier try. */
static int link_one(ims_deliverer *d, const dl_msg *m, const char *maildir, const char *name)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/new/%s", maildir, name) >= (int)sizeof path)
        return ENAMETOOLONG;
    int rc = linkat(d->mts_new_fd, m->name, AT_FDCWD, path, 0) && errno != EEXIST ? errno : 0;
    if (rc == EXDEV || rc == EMLINK || rc == EPERM)
        rc = copy_into(d, m, maildir, name);
    return rc;
}

/* link_rcpts - one copy into each Maildir of the message that still lacks it. */
static void link_rcpts(ims_deliverer *d, dl_msg *m, dl_dirs *dirs)
{
    if (!m->parsed || m->failed || !m->in_mts)
        return;
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->done || m->leader[i] != i || r->route != IMS_ROUTE_LOCAL)
            continue;
        char base[DELIVER_NAME_MAX], name[DELIVER_NAME_MAX];
        rcpt_base(m, i, base, sizeof base);
        rcpt_name(m, i, name, sizeof name);
        if (m->item->recovered && seen_in(r->maildir, "cur", base)) {
            m->now[i] = true;
            continue;
        }
        /* A copy already in new/, under its name or another (a reader's field, the name of an
         * older version), is synced again: an earlier try's may not have reached the disk. */
        int rc = m->item->recovered && seen_in(r->maildir, "new", base)
                     ? 0
                     : link_one(d, m, r->maildir, name);
        if (!rc)
            rc = dirs_add(dirs, r->maildir);
        if (rc)
            fail(m, rc, i);
        else
            m->now[i] = true;
    }
}

static int dir_cmp(const void *a, const void *b)
{
    return strcmp(((const dl_dir *)a)->maildir, ((const dl_dir *)b)->maildir);
}

/* sync_dirs - one fsync per Maildir's new/ for the whole round; a failure takes back the
 * round's copies into that Maildir (they are retried, and found there by name). */
static void sync_dirs(ims_deliverer *d, dl_msg *ms, size_t n, dl_dirs *dirs)
{
    if (!dirs->n)
        return;
    qsort(dirs->v, dirs->n, sizeof *dirs->v, dir_cmp);
    size_t u = 0;
    for (size_t i = 0; i < dirs->n; i++)
        if (!u || strcmp(dirs->v[u - 1].maildir, dirs->v[i].maildir))
            dirs->v[u++] = dirs->v[i];
    dirs->n = u;
    /* In pieces of DELIVER_ROUND: a round may touch more Maildirs than it has messages. */
    bool any_failed = false;
    for (size_t base = 0; base < dirs->n; base += DELIVER_ROUND) {
        size_t k = dirs->n - base < DELIVER_ROUND ? dirs->n - base : DELIVER_ROUND;
        for (size_t j = 0; j < k; j++) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/new", dirs->v[base + j].maildir);
            d->fds[j] = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            dirs->v[base + j].err = d->fds[j] < 0 ? errno : 0;
        }
        /* A failed open is synced as -1: EBADF, and its own error is kept. */
        shared_sync(d, d->fds, d->errs, k, false);
        for (size_t j = 0; j < k; j++) {
            dl_dir *v = &dirs->v[base + j];
            if (d->fds[j] >= 0) {
                v->err = d->errs[j];
                close(d->fds[j]);
            }
            any_failed |= v->err != 0;
        }
    }
    if (!any_failed)
        return;
    for (size_t k = 0; k < n; k++) {
        dl_msg *m = &ms[k];
        for (size_t i = 0; m->now && i < m->f.nrcpt; i++) {
            if (!m->now[i])
                continue;
            dl_dir key = {m->f.rcpts[i].maildir, 0};
            dl_dir *hit = bsearch(&key, dirs->v, dirs->n, sizeof *dirs->v, dir_cmp);
            if (hit && hit->err) {
                m->now[i] = false;
                fail(m, hit->err, i);
            }
        }
    }
}

/* newly_done - recipient i is delivered by this round (itself, or its Maildir's leader). */
static bool newly_done(const dl_msg *m, size_t i)
{
    if (m->f.rcpts[i].done)
        return false;
    size_t l = m->leader[i];
    return m->now[l] || (l != i && m->f.rcpts[l].done);
}

/* finishing - every recipient is done once this round's deliveries count. */
static bool finishing(const dl_msg *m)
{
    for (size_t i = 0; i < m->f.nrcpt; i++)
        if (!m->f.rcpts[i].done && !newly_done(m, i))
            return false;
    return true;
}

static int receipt_write(void *arg, const void *p, size_t n)
{
    return buf_add(arg, p, n);
}

/* receipts - "delivered" reports for the recipients of m this round delivered whose NOTIFY
 * asks for SUCCESS (RFC 3461 5.2.1), handed to the receipt callback. */
static void receipts(ims_deliverer *d, dl_msg *m)
{
    if (!d->receipt || !m->f.sender[0])
        return;
    ims_report_rcpt *rr = calloc(m->f.nrcpt, sizeof *rr);
    size_t n = 0;
    time_t now = time(NULL);
    for (size_t i = 0; rr && i < m->f.nrcpt; i++) {
        unsigned notify = 0;
        const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->route != IMS_ROUTE_LOCAL || !newly_done(m, i) || !r->notify ||
            smtp_notify_parse(r->notify, strlen(r->notify), &notify) ||
            !(notify & SMTP_NOTIFY_SUCCESS))
            continue;
        rr[n] = (ims_report_rcpt){.address = r->address,
                                  .orcpt = r->orcpt,
                                  .notify = notify,
                                  .action = IMS_REPORT_DELIVERED,
                                  .status = "2.0.0",
                                  .diagnostic = "delivered to the mailbox",
                                  .last_attempt = now};
        n++;
    }
    if (n) {
        ims_report_fd rf;
        ims_report_original o;
        ims_spool_report_original(&m->f, m->fd, &rf, &o);
        char token[IMS_REPORT_TOKEN_MAX];
        snprintf(token, sizeof token, "%s.r%u", m->f.id, d->receipt_seq++);
        buf b = BUF_INIT;
        ims_report_options opt = {.names = &d->names,
                                  .token = token,
                                  .date = now,
                                  .write = receipt_write,
                                  .write_arg = &b};
        if (ims_report_build(&o, rr, n, &opt, NULL) == 0)
            d->receipt(d->receipt_arg, m->f.sender, b.data, b.len);
        buf_free(&b);
    }
    free(rr);
}

/* mark_done - the round's deliveries of m count: flags set, tracking lines written. */
static void mark_done(ims_deliverer *d, dl_msg *m, uint64_t *delivered)
{
    /* Marking in place is safe: a follower's test reads its leader's now[] first. */
    time_t now = time(NULL);
    receipts(d, m);
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        if (!newly_done(m, i))
            continue;
        m->f.rcpts[i].done = true;
        (*delivered)++;
        pthread_mutex_lock(&d->lock);
        ims_latency_add(&d->latency, (int64_t)(now - m->f.time));
        pthread_mutex_unlock(&d->lock);
        if (d->tracking)
            ims_tracking_write(d->tracking, now, IMS_TRACK_TRANSFERRED_INBOUND, m->f.id,
                               m->f.sender, m->f.rcpts[i].address, m->f.content_len, m->f.client_ip,
                               m->f.host);
    }
}

/* record - the round's deliveries into the spool files and the tracking log. A message that
 * still has recipients to do gets "done <index>" lines, synced before they count: until they
 * are on disk a crash makes the next start deliver again, and find the copies there. A
 * message this round finishes needs none (unless archived, to keep its status): conclude()
 * removes its file. */
static void record(ims_deliverer *d, dl_msg *ms, size_t n, uint64_t *delivered)
{
    bool *wrote = calloc(n, sizeof *wrote);
    if (!wrote)
        return;
    ims_tracking_hold(d->tracking); /* the round's lines in one write (not over the sync) */
    for (size_t k = 0; k < n; k++) {
        dl_msg *m = &ms[k];
        if (!m->parsed || m->failed)
            continue;
        if (!d->archive && finishing(m)) { /* an archived file keeps its status */
            mark_done(d, m, delivered);
            continue;
        }
        buf b = BUF_INIT;
        int rc = 0;
        for (size_t i = 0; !rc && i < m->f.nrcpt; i++)
            if (newly_done(m, i))
                rc = buf_printf(&b, "done %zu\n", i);
        if (!rc && b.len)
            rc = ims_append_whole(m->fd, b.data, b.len);
        if (rc)
            fail(m, rc, SIZE_MAX);
        else if (b.len) {
            wrote[k] = true;
            if (d->file_syncs)
                sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        }
        buf_free(&b);
    }
    (void)ims_tracking_release(d->tracking);
    size_t nfd = 0;
    for (size_t k = 0; k < n; k++)
        if (wrote[k])
            d->fds[nfd++] = ms[k].fd;
    shared_sync(d, d->fds, d->errs, nfd, true);
    ims_tracking_hold(d->tracking);
    for (size_t k = 0, j = 0; k < n; k++) {
        dl_msg *m = &ms[k];
        if (!wrote[k])
            continue;
        if (d->errs[j++]) {
            fail(m, d->errs[j - 1], SIZE_MAX);
            continue;
        }
        mark_done(d, m, delivered);
    }
    (void)ims_tracking_release(d->tracking);
    free(wrote);
}

/* space_full - a delivery into path failed for want of space (err): the episode's one event,
 * at its first failure; the per-message events of the failures that follow are left out. */
static void space_full(ims_deliverer *d, const char *path, int err)
{
    if (d->no_space)
        return;
    d->no_space = true;
    char fs[PATH_MAX + 128];
    dl_event(d, IMS_EV_DISK_FULL, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
             "The disk is full: a message could not be delivered into %s: %s; deliveries "
             "wait and are retried until space is freed",
             ims_fs_describe(path, fs, sizeof fs), strerror(err));
}

/* space_back - a message was delivered while d->no_space (the caller checks): ends the
 * episode with its event. */
static void space_back(ims_deliverer *d, const char *path)
{
    d->no_space = false;
    char fs[PATH_MAX + 128];
    dl_event(d, IMS_EV_DISK_SPACE_BACK, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_INFO,
             "Disk space is back: messages are delivered again (into %s)",
             ims_fs_describe(path, fs, sizeof fs));
}

/* mts_in_path - MTS-IN's new/ as a path, from its descriptor (for the events). */
static const char *mts_in_path(const ims_deliverer *d, char *out, size_t n)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", d->mts_new_fd);
    ssize_t k = readlink(link, out, n - 1);
    if (k < 0)
        snprintf(out, n, "MTS-IN");
    else
        out[k] = '\0';
    return out;
}

/* tmp_remove - a copy of m still being made in MTS-IN/tmp goes (start-up removes those of
 * an earlier run). */
static void tmp_remove(ims_deliverer *d, dl_msg *m)
{
    if (m->tmp_made)
        unlinkat(d->mts_tmp_fd, m->name, 0);
    m->tmp_made = false;
}

/* conclude - all recipients done: MTS-IN's copy goes, then the spool file. Else the event
 * that says why, and a retry later. */
static void conclude(ims_deliverer *d, dl_msg *m, uint64_t *deferred, uint64_t *finished)
{
    if (m->parsed && !m->failed && all_done(m)) {
        mts_remove(d, m);
        tmp_remove(d, m);
        int rc;
        if (d->archive)
            rc = renameat(d->in_fd, m->f.id, d->archive_fd, m->f.id);
        else if (m->f.file_size <= IMS_RECYCLE_KEEP_BYTES &&
                 !ims_recycler_reserve(d->recycler, m->recycled) &&
                 !(rc = renameat(d->in_fd, m->f.id, d->work_fd, m->recycled)))
            ims_recycler_put(d->recycler, m->recycled, m->f.file_size); /* reused once durably
                                                                          out of In */
        else
            rc = unlinkat(d->in_fd, m->f.id, 0);
        if (rc && errno != ENOENT) {
            fail(m, errno, SIZE_MAX); /* retried: every recipient is marked done by now */
        } else {
            m->item->finished = true;
            (*finished)++;
            char path[PATH_MAX];
            if (d->no_space) /* the path only for the event: no readlink a message */
                space_back(d, m->f.nrcpt && m->f.rcpts[0].maildir
                                  ? m->f.rcpts[0].maildir
                                  : mts_in_path(d, path, sizeof path));
            return;
        }
    }
    if (m->item->finished)
        return;
    if (m->parsed && !m->failed && locals_done(m)) {
        /* The mailboxes have their copies; the rest is routed elsewhere: the file moves to
         * Out for the outbound queue (one rename: it is in In or in Out, never both, and the
         * records in it go along). Without a handover it stays in In. MTS-IN's copy has
         * served. */
        if (d->handover) {
            if (renameat(d->in_fd, m->f.id, d->out_fd, m->f.id) && errno != ENOENT) {
                fail(m, errno, SIZE_MAX);
                *deferred += 1;
                dl_event(d, IMS_EV_SPOOL_DEFERRED, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_WARNING,
                         "Message %s could not be moved to the outbound queue: %s; it waits "
                         "for a retry",
                         m->item->id, strerror(m->err));
                return;
            }
            d->handover(d->handover_arg, m->f.id);
        }
        mts_remove(d, m);
        tmp_remove(d, m);
        m->item->finished = true;
        char path[PATH_MAX];
        if (d->no_space)
            space_back(d, mts_in_path(d, path, sizeof path));
        return;
    }
    *deferred += m->nfailed ? m->nfailed : 1;
    if (ims_err_no_space(m->err)) {
        char path[PATH_MAX];
        if (m->err_rcpt != SIZE_MAX && m->parsed && m->err_rcpt < m->f.nrcpt &&
            m->f.rcpts[m->err_rcpt].maildir)
            space_full(d, m->f.rcpts[m->err_rcpt].maildir, m->err);
        else
            space_full(d, mts_in_path(d, path, sizeof path), m->err);
        return;
    }
    if (m->err_rcpt != SIZE_MAX && m->parsed && m->err_rcpt < m->f.nrcpt)
        dl_event(d, IMS_EV_SPOOL_DEFERRED, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_WARNING,
                 "Message %s could not be delivered to %s (%s/new): %s; %zu recipient(s) wait "
                 "for a retry",
                 m->item->id, m->f.rcpts[m->err_rcpt].address, m->f.rcpts[m->err_rcpt].maildir,
                 strerror(m->err), m->nfailed);
    else
        dl_event(d, IMS_EV_SPOOL_DEFERRED, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_WARNING,
                 "Message %s could not be submitted to MTS-IN: %s; it waits for a retry",
                 m->item->id, strerror(m->err ? m->err : EIO));
}

static void deliver_round(ims_deliverer *d, dl_item **items, size_t n, uint64_t *delivered,
                          uint64_t *deferred, uint64_t *finished)
{
    dl_msg *ms = calloc(n, sizeof *ms);
    if (!ms)
        return; /* all of them are retried later */
    dl_dirs dirs = {0};
    for (size_t i = 0; i < n; i++) {
        ms[i].item = items[i];
        ms[i].fd = ms[i].tmp_fd = -1;
        ms[i].err_rcpt = SIZE_MAX;
    }
    struct load_args la = {d, ms};
    /* With a sync per file the pool writes the copies in parallel too; with one syncfs the
     * writes only fill the page cache, which this thread does for less CPU than a hand-off to
     * the pool (measured: 0.66-0.82 against 0.93-1.0 ms a message at 20 sessions, the pool
     * taking rounds of 8 or more). */
    ims_pool_run(d->file_syncs ? d->pool : NULL, n, load_fn, &la);
    sync_mts(d, ms, n);
    for (size_t i = 0; i < n; i++)
        link_rcpts(d, &ms[i], &dirs);
    sync_dirs(d, ms, n, &dirs);
    record(d, ms, n, delivered);
    uint64_t finished_before = *finished;
    for (size_t i = 0; i < n; i++) {
        conclude(d, &ms[i], deferred, finished);
        if (ms[i].fd >= 0)
            close(ms[i].fd);
        if (ms[i].parsed)
            ims_spool_file_free(&ms[i].f);
        free(ms[i].leader);
        free(ms[i].now);
    }
    /* The finished files' leaving In becomes durable with the committer's next fsync of In,
     * or this thread's (in_sync) if none comes soon: a crash before only brings some back,
     * to be found delivered. An archived file's folder is synced now. */
    if (*finished != finished_before) {
        if (!d->in_dirty)
            d->in_dirty_at = ims_clock_ms();
        d->in_dirty = true;
        d->in_need = ims_recycler_mark(d->recycler);
        if (d->archive)
            fsync(d->archive_fd);
    }
    free(dirs.v);
    free(ms);
}

/* --- the thread ------------------------------------------------------------------------ */

/* backoff_ms - the delay before the next try: retry_min_ms, doubling with each attempt, at
 * most retry_max_ms. */
static uint64_t backoff_ms(const ims_deliverer *d, unsigned attempts)
{
    unsigned shift = attempts > DELIVER_BACKOFF_SHIFT ? DELIVER_BACKOFF_SHIFT : attempts;
    uint64_t ms = (uint64_t)d->retry_min_ms << shift;
    return ms > d->retry_max_ms ? d->retry_max_ms : ms;
}

/* promote - deferred messages whose time has come go back to the ready list. Returns whether
 * any stay, with *next the earliest due time (ims_clock_ms) of those. */
static bool promote(ims_deliverer *d, uint64_t *next)
{
    uint64_t now = ims_clock_ms();
    ims_sched_node *n;
    while ((n = ims_sched_pop_due(&d->waiting, now))) {
        dl_item *it = (dl_item *)n;
        it->next = NULL;
        *d->ready_tail = it;
        d->ready_tail = &it->next;
    }
    return ims_sched_next(&d->waiting, next);
}

/* abs_monotonic - the CLOCK_MONOTONIC time at ms, for pthread_cond_timedwait. */
static struct timespec abs_monotonic(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return ts;
}

/* in_sync - make the finished files' leaving In durable, unless the committer's fsync of In
 * did already. */
static void in_sync(ims_deliverer *d)
{
    if (!d->in_dirty)
        return;
    if (!ims_recycler_covered(d->recycler, d->in_need)) {
        /* A syncfs, like the committer's: every numbered sync covers the whole file system. */
        uint64_t seq = ims_recycler_sync_begin(d->recycler);
        int rc = d->file_syncs ? fsync(d->in_fd) : syncfs(d->in_fd);
        ims_recycler_sync_end(d->recycler, seq, rc == 0);
    }
    d->in_dirty = false;
}

static void *deliver_main(void *arg)
{
    ims_deliverer *d = arg;
    dl_item *round[DELIVER_ROUND];
    pthread_mutex_lock(&d->lock);
    while (!d->stopping) {
        uint64_t next;
        bool waiting = promote(d, &next);
        if (d->in_dirty) {
            /* Also between rounds: a backlog delivered with no mail coming in. */
            uint64_t due = d->in_dirty_at + DELIVER_IN_SYNC_MS;
            if (ims_clock_ms() >= due || ims_recycler_covered(d->recycler, d->in_need)) {
                pthread_mutex_unlock(&d->lock);
                in_sync(d);
                pthread_mutex_lock(&d->lock);
                continue;
            }
        }
        if (!d->ready) {
            if (d->in_dirty) {
                uint64_t due = d->in_dirty_at + DELIVER_IN_SYNC_MS;
                if (ims_clock_ms() >= due) {
                    pthread_mutex_unlock(&d->lock);
                    in_sync(d);
                    pthread_mutex_lock(&d->lock);
                    continue;
                }
                if (!waiting || due < next)
                    next = due;
                waiting = true;
            }
            struct timespec at = abs_monotonic(next);
            if (waiting)
                pthread_cond_timedwait(&d->wake, &d->lock, &at);
            else
                pthread_cond_wait(&d->wake, &d->lock);
            continue;
        }
        size_t n = 0;
        while (d->ready && n < DELIVER_ROUND) {
            round[n] = d->ready;
            d->ready = d->ready->next;
            round[n++]->next = NULL;
        }
        if (!d->ready)
            d->ready_tail = &d->ready;
        pthread_mutex_unlock(&d->lock);
        uint64_t delivered = 0, deferred = 0, finished = 0;
        deliver_round(d, round, n, &delivered, &deferred, &finished);
        pthread_mutex_lock(&d->lock);
        d->delivered += delivered;
        d->deferred += deferred;
        d->finished += finished;
        for (size_t i = 0; i < n; i++) {
            dl_item *it = round[i];
            if (it->finished) {
                free(it);
                d->queued--;
                continue;
            }
            /* A retry looks in cur/ too: this round may have linked a copy it did not
             * record, and a mail reader may move it before the retry. */
            it->recovered = true;
            uint64_t due = ims_clock_ms() + backoff_ms(d, it->attempts);
            it->attempts++;
            if (ims_sched_add(&d->waiting, &it->node, due)) {
                it->next = NULL; /* no memory to wait in: try again at once, rather than lose it */
                *d->ready_tail = it;
                d->ready_tail = &it->next;
            }
        }
    }
    pthread_mutex_unlock(&d->lock);
    in_sync(d);
    return NULL;
}

int ims_deliverer_enqueue(ims_deliverer *d, const char *qid, bool recovered)
{
    dl_item *it = calloc(1, sizeof *it);
    if (!it)
        return ENOMEM;
    snprintf(it->id, sizeof it->id, "%s", qid);
    it->recovered = recovered;
    pthread_mutex_lock(&d->lock);
    *d->ready_tail = it;
    d->ready_tail = &it->next;
    d->queued++;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    return 0;
}

void ims_deliverer_stats(ims_deliverer *d, ims_spool_stats *st)
{
    pthread_mutex_lock(&d->lock);
    st->delivered = d->delivered;
    st->deferred = d->deferred;
    st->finished = d->finished;
    st->queued = d->queued;
    st->mts_in_entered = d->mts_entered;
    st->mts_in_queued = d->mts_queued;
    st->mts_in_bytes = d->mts_bytes;
    st->latency_local = d->latency;
    pthread_mutex_unlock(&d->lock);
}

static void free_list(dl_item *it)
{
    while (it) {
        dl_item *next = it->next;
        free(it);
        it = next;
    }
}

static void deliverer_free(ims_deliverer *d)
{
    free_list(d->ready);
    for (ims_sched_node *n; (n = ims_sched_pop_due(&d->waiting, UINT64_MAX));)
        free(n);
    ims_sched_fini(&d->waiting);
    int fds[] = {d->in_fd, d->archive_fd, d->mts_new_fd, d->mts_tmp_fd, d->out_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    pthread_cond_destroy(&d->wake);
    pthread_mutex_destroy(&d->lock);
    free(d->fds);
    free(d->errs);
    free(d->root);
    free(d);
}

void ims_deliverer_stop(ims_deliverer *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->wake);
    pthread_mutex_unlock(&d->lock);
    if (d->running)
        pthread_join(d->thread, NULL);
    deliverer_free(d);
}

/* open_sub - a folder under base, made when missing. */
static int open_sub(const char *base, const char *sub, int *fd)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", base, sub) >= (int)sizeof p)
        return ENAMETOOLONG;
    if (mkdir(p, 0700) && errno != EEXIST)
        return errno;
    *fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? errno : 0;
}

/* clean_mts - MTS-IN files of ours ("<id>.<host>") whose spool file is gone: left by a crash
 * between the two removals at the end of a delivery. */
static void clean_mts(ims_deliverer *d, int dirfd)
{
    DIR *dir = base_opendirat(dirfd, ".");
    if (!dir)
        return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        char id[IMS_QUEUE_ID_LEN + 1];
        if (strlen(e->d_name) <= IMS_QUEUE_ID_LEN || e->d_name[IMS_QUEUE_ID_LEN] != '.')
            continue;
        memcpy(id, e->d_name, IMS_QUEUE_ID_LEN);
        id[IMS_QUEUE_ID_LEN] = 0;
        if (ims_spool_id_valid(id) && faccessat(d->in_fd, id, F_OK, AT_SYMLINK_NOFOLLOW) &&
            errno == ENOENT)
            unlinkat(dirfd, e->d_name, 0);
    }
    closedir(dir);
}

/* clean_tmp - every file in MTS-IN/tmp: only this deliverer writes there (one a state root,
 * under the pid lock), so at its start each is a copy a crash cut short, or something that
 * is no copy of ours (garbage); the copies of messages still in In are written again. */
static void clean_tmp(int dirfd)
{
    DIR *dir = base_opendirat(dirfd, ".");
    if (!dir)
        return;
    struct dirent *e;
    struct stat st;
    while ((e = readdir(dir)))
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            unlinkat(dirfd, e->d_name, 0);
    closedir(dir);
}

int ims_deliverer_start(const ims_deliver_config *cfg, ims_deliverer **out)
{
    *out = NULL;
    ims_deliverer *d = calloc(1, sizeof *d);
    if (!d)
        return ENOMEM;
    d->in_fd = d->archive_fd = d->mts_new_fd = d->mts_tmp_fd = d->out_fd = -1;
    d->handover = cfg->handover;
    d->handover_arg = cfg->handover_arg;
    if (cfg->report_names && cfg->receipt) {
        d->names = *cfg->report_names;
        d->receipt = cfg->receipt;
        d->receipt_arg = cfg->receipt_arg;
    }
    ims_sched_init(&d->waiting);
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->wake, &ca);
    pthread_condattr_destroy(&ca);
    d->ready_tail = &d->ready;
    d->archive = cfg->archive;
    d->retry_min_ms = cfg->retry_min_ms ? cfg->retry_min_ms : IMS_SPOOL_RETRY_MIN_MS;
    d->retry_max_ms = cfg->retry_max_ms ? cfg->retry_max_ms : IMS_SPOOL_RETRY_MAX_MS;
    if (d->retry_max_ms < d->retry_min_ms)
        d->retry_max_ms = d->retry_min_ms;
    d->tracking = cfg->tracking;
    d->pool = cfg->pool;
    d->file_syncs = cfg->file_syncs;
    d->recycler = cfg->recycler;
    d->work_fd = cfg->work_fd;
    d->event = cfg->event;
    d->event_arg = cfg->event_arg;
    d->root = strdup(cfg->root_dir);
    d->fds = calloc(DELIVER_ROUND, sizeof *d->fds);
    d->errs = calloc(DELIVER_ROUND, sizeof *d->errs);
    int rc = d->root && d->fds && d->errs ? 0 : ENOMEM;
    int mts_cur = -1;
    rc = rc ? rc : open_sub(cfg->root_dir, "In", &d->in_fd);
    rc = rc ? rc : open_sub(cfg->root_dir, "In/Archive", &d->archive_fd);
    if (d->handover)
        rc = rc ? rc : open_sub(cfg->root_dir, "Out", &d->out_fd);
    rc = rc ? rc : base_mkdir_p(cfg->mts_in, 0700);
    rc = rc ? rc : open_sub(cfg->mts_in, "new", &d->mts_new_fd);
    rc = rc ? rc : open_sub(cfg->mts_in, "tmp", &d->mts_tmp_fd);
    rc = rc ? rc : open_sub(cfg->mts_in, "cur", &mts_cur);
    if (mts_cur >= 0)
        close(mts_cur);
    if (!rc) {
        clean_mts(d, d->mts_new_fd);
        clean_tmp(d->mts_tmp_fd);
        rc = pthread_create(&d->thread, NULL, deliver_main, d);
        d->running = !rc;
    }
    if (rc) {
        deliverer_free(d);
        return rc;
    }
    *out = d;
    return 0;
}
