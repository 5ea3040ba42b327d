/* spool.c - the inbound spool (RootDir\In): messages written in RootDir\Work, made durable in
 * commit rounds (group commit: fdatasync of each file, rename into In, one fsync of In for the
 * whole round) before they are acknowledged; dispatch of the acknowledgements; open and close
 * (recovery is recover.c's, the file format spoolfile.c's, the I/O pool pool.c's). */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/base.h"
#include "smtp/smtp.h"

#define SPOOL_BUF_BYTES 131072 /* content kept in memory before it goes to Work */
#define SPOOL_MAX_ROUND 1024   /* messages in one commit round */
#define SPOOL_MAX_EVENTS 256   /* events waiting for dispatch; more are counted, not kept */
#define SPOOL_EVENT_TEXT 512
#define SPOOL_ID_TRIES 4 /* fresh queue ids tried when one is taken */
#define SPOOL_HOST_MAX 256

struct ims_spool_msg {
    ims_spool *sp;
    ims_spool_msg *next;
    char id[IMS_QUEUE_ID_LEN + 1];
    char wname[IMS_RECYCLE_NAME]; /* its file's name in Work: the id, or a recycled file's */
    buf data;                     /* bytes not yet in the file; starts with the envelope */
    size_t id_off;                /* where the id's digits are in the envelope */
    size_t size_off;              /* where the size's digits are */
    size_t sum_off;               /* where the checksums' digits are */
    uint32_t env_crc;  /* CRC-32C of the envelope up to the size's digits (once the id is final) */
    uint32_t body_crc; /* CRC-32C of the content so far */
    uint64_t reused_size; /* a recycled file's old size: what is past the message is cut */
    bool head_written;    /* the envelope is in the file */
    int fd;               /* the file in Work, or -1 before the first flush */
    uint64_t content_len;
    int err; /* sticky: the first failure */
    ims_spool_done_fn done;
    void *arg;
    time_t time;
    buf track;     /* for the 1012 lines: sender, client ip, host, then each recipient, NUL-ended */
    buf head;      /* the content's first bytes, up to the header's end (the 1012's Message-ID) */
    bool head_end; /* head holds the whole header or IMS_TRACK_MSGID_SCAN bytes */
    size_t nrcpt;
    char *pickup;  /* MTS-OUT's claim name, or NULL */
    char *dropdir; /* the Pickup directory's claim name, or NULL */
};

typedef struct spool_event {
    struct spool_event *next;
    unsigned id;
    ims_category cat;
    ims_severity sev;
    unsigned level;
    char text[SPOOL_EVENT_TEXT];
} spool_event;

struct ims_spool {
    char *root;
    char host[SPOOL_HOST_MAX];
    int in_fd, work_fd, efd; /* work_fd carries the lock that keeps a second spool out */
    int pickup_fd;           /* MTS-OUT's claim directory, or -1 */
    int dropdir_fd;          /* the Pickup directory's claim directory, or -1 */
    ims_log *log;
    unsigned window_us;
    bool file_syncs; /* a sync per file, not one of the file system per round */
    ims_tracking *tracking;
    ims_deliverer *deliverer;
    atomic_uint_least32_t counter; /* the low half of queue ids */
    /* A disk-full episode: set when a message failed for want of space (by a writer or the
     * committer), cleared when one is committed again; read by ims_spool_short_of_space. */
    atomic_bool no_space;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* the committer's: work arrived, or stop */
    ims_spool_msg *pending, **pending_tail;
    size_t npending;
    struct timespec first_at; /* when the oldest pending message arrived (monotonic) */
    ims_spool_msg *finished, **finished_tail; /* waiting for dispatch */
    spool_event *events, **events_tail;
    size_t nevents, events_dropped;
    bool stopping;
    ims_spool_stats stats;
    pthread_t committer;
    bool committer_running;
    ims_sync_pool *pool;
    ims_recycler *recycler;
    ims_spool_msg *round[SPOOL_MAX_ROUND]; /* the committer's own, with the two below */
    int round_fds[SPOOL_MAX_ROUND];
    int round_errs[SPOOL_MAX_ROUND];
};

/* --- small I/O helpers ----------------------------------------------------------------- */

static int pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(fd, c, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        c += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

static void wake_fd(int efd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already huge: the descriptor is readable anyway. */
    if (write(efd, &one, sizeof one) < 0)
        return;
}

static void monotonic_now(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
}

/* --- events ---------------------------------------------------------------------------- */

/* queue_event - keep an event for ims_spool_dispatch: the log's sink is the program's and
 * need not be thread-safe, so the spool's threads never call it. */
static void queue_event(void *arg, unsigned id, ims_category cat, ims_severity sev, unsigned level,
                        const char *text)
{
    ims_spool *sp = arg;
    spool_event *e = NULL;
    pthread_mutex_lock(&sp->lock);
    if (sp->nevents < SPOOL_MAX_EVENTS && (e = calloc(1, sizeof *e))) {
        e->id = id;
        e->cat = cat;
        e->sev = sev;
        e->level = level;
        snprintf(e->text, sizeof e->text, "%s", text);
        *sp->events_tail = e;
        sp->events_tail = &e->next;
        sp->nevents++;
    } else {
        sp->events_dropped++;
    }
    pthread_mutex_unlock(&sp->lock);
    wake_fd(sp->efd);
}

static void spool_event_fmt(ims_spool *sp, unsigned id, ims_category cat, ims_severity sev,
                            unsigned level, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static void spool_event_fmt(ims_spool *sp, unsigned id, ims_category cat, ims_severity sev,
                            unsigned level, const char *fmt, ...)
{
    char text[SPOOL_EVENT_TEXT];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    queue_event(sp, id, cat, sev, level, text);
}

/* --- queue ids and the envelope -------------------------------------------------------- */

/* new_id - seconds since the epoch, then a counter that starts at a random value at open:
 * ids sort by time, and two starts within one second do not collide unless their counters
 * meet. Collisions that remain are caught by O_EXCL and RENAME_NOREPLACE. */
static void new_id(ims_spool *sp, char id[IMS_QUEUE_ID_LEN + 1])
{
    uint32_t c = (uint32_t)atomic_fetch_add(&sp->counter, 1);
    snprintf(id, IMS_QUEUE_ID_LEN + 1, "%08" PRIX32 "%08" PRIX32, (uint32_t)time(NULL), c);
}

static bool opt_ok(const char *s)
{
    return !s || !*s || (ims_spool_field_ok(s, false) && strcmp(s, "-") != 0);
}

/* route_ok - a mailbox's absolute path, a domain for DNS, a host spec for a smart host. */
static bool route_ok(const ims_rcpt *r)
{
    char host[SMTP_DOMAIN_MAX + 1];
    bool literal;
    uint16_t port;
    switch (r->route) {
    case IMS_ROUTE_LOCAL:
        return ims_spool_field_ok(r->maildir, false) && r->maildir[0] == '/';
    case IMS_ROUTE_DNS:
        return r->dest && smtp_domain_valid(r->dest, strlen(r->dest), false);
    case IMS_ROUTE_SMARTHOST:
        return r->dest && ims_host_parse(r->dest, host, &literal, &port) == 0;
    }
    return false;
}

static int envelope_check(const ims_envelope *env)
{
    if (!env || !env->rcpts || env->nrcpt == 0 || env->nrcpt > IMS_SPOOL_MAX_RCPTS)
        return EINVAL;
    smtp_ip ip;
    if (!ims_spool_field_ok(env->sender, true) ||
        (env->client_ip && smtp_ip_parse(env->client_ip, &ip)) ||
        (env->helo && !ims_spool_field_ok(env->helo, false)) ||
        (env->host && !ims_spool_field_ok(env->host, false)) || !opt_ok(env->envid) ||
        !opt_ok(env->ret) || (env->pickup && !ims_spool_pickup_name_ok(env->pickup)) ||
        (env->dropdir && !ims_spool_pickup_name_ok(env->dropdir)) ||
        (env->pickup && env->dropdir) || (env->origin && !ims_spool_field_ok(env->origin, false)) ||
        (env->tls && *env->tls && !ims_spool_tls_ok(env->tls)) ||
        (env->auth && !ims_spool_field_ok(env->auth, true)))
        return EINVAL;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const ims_rcpt *r = &env->rcpts[i];
        if (!ims_spool_field_ok(r->address, false) || !opt_ok(r->notify) || !opt_ok(r->orcpt) ||
            !route_ok(r))
            return EINVAL;
    }
    return 0;
}

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

/* format_envelope - the spool file's head, into m->data; records where id and size go. */
static int format_envelope(ims_spool_msg *m, const ims_envelope *env, const char *host)
{
    buf *b = &m->data;
    int rc = buf_printf(b, "%s\nid ", SPOOL_MAGIC);
    m->id_off = b->len;
    rc = rc ? rc
            : buf_printf(b, "%s\ntime %lld\nclient %s\nhelo %s\nhost %s\nfrom %s\n", m->id,
                         (long long)m->time, env->client_ip ? env->client_ip : "unknown",
                         env->helo ? env->helo : "unknown", host, env->sender);
    if (!rc && env->envid && *env->envid)
        rc = buf_printf(b, "envid %s\n", env->envid);
    if (!rc && env->ret && *env->ret)
        rc = buf_printf(b, "ret %s\n", env->ret);
    if (!rc && env->pickup)
        rc = buf_printf(b, "pickup %s\n", env->pickup);
    if (!rc && env->dropdir)
        rc = buf_printf(b, "dropdir %s\n", env->dropdir);
    if (!rc && env->tls && *env->tls)
        rc = buf_printf(b, "tls %s\n", env->tls);
    if (!rc && env->auth && *env->auth)
        rc = buf_printf(b, "auth %s\n", env->auth);
    for (size_t i = 0; !rc && i < env->nrcpt; i++) {
        const ims_rcpt *r = &env->rcpts[i];
        rc = buf_printf(b, "rcpt %s\t%s\t%s\t%s%s\n", or_dash(r->notify), or_dash(r->orcpt),
                        r->address,
                        r->route == IMS_ROUTE_DNS         ? "dns:"
                        : r->route == IMS_ROUTE_SMARTHOST ? "smarthost:"
                                                          : "",
                        r->route == IMS_ROUTE_LOCAL ? r->maildir : r->dest);
    }
    if (!rc)
        rc = buf_adds(b, "size ");
    m->size_off = b->len;
    if (!rc)
        rc = buf_printf(b, "%0*d\nsum ", SPOOL_SIZE_DIGITS, 0);
    m->sum_off = b->len;
    if (!rc)
        rc = buf_printf(b, "%s\n\n", SPOOL_SUM_BLANK);
    /* What the tracking lines need once the message is committed. */
    rc = rc ? rc : buf_add(&m->track, env->sender, strlen(env->sender) + 1);
    /* The Pickup directory's messages name their origin (the file's owner) there instead. */
    const char *ip = env->origin ? env->origin : env->client_ip ? env->client_ip : "unknown";
    rc = rc ? rc : buf_add(&m->track, ip, strlen(ip) + 1);
    rc = rc ? rc : buf_add(&m->track, host, strlen(host) + 1);
    for (size_t i = 0; !rc && i < env->nrcpt; i++)
        rc = buf_add(&m->track, env->rcpts[i].address, strlen(env->rcpts[i].address) + 1);
    m->nrcpt = env->nrcpt;
    return rc;
}

static void msg_free(ims_spool_msg *m)
{
    if (m->fd >= 0)
        close(m->fd);
    buf_free(&m->data);
    buf_free(&m->track);
    buf_free(&m->head);
    free(m->pickup);
    free(m->dropdir);
    free(m);
}

/* --- writing a message ----------------------------------------------------------------- */

/* open_work - create the message's file in Work (O_EXCL), choosing a fresh id when this one
 * is taken in Work or In. Only before the envelope went out, so the id can still change. */
static int open_work(ims_spool_msg *m)
{
    ims_spool *sp = m->sp;
    for (int t = 0; t < SPOOL_ID_TRIES; t++) {
        if (t) {
            new_id(sp, m->id);
            memcpy(m->data.data + m->id_off, m->id, IMS_QUEUE_ID_LEN);
        }
        if (faccessat(sp->in_fd, m->id, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        if ((m->fd = ims_recycler_take(sp->recycler, m->wname, &m->reused_size)) >= 0)
            return 0;
        snprintf(m->wname, sizeof m->wname, "%s", m->id);
        int fd = openat(sp->work_fd, m->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            m->fd = fd;
            return 0;
        }
        if (errno != EEXIST)
            return errno;
    }
    return EEXIST;
}

/* flush - write the buffered bytes to the file in Work (made at the first flush). */
static int flush(ims_spool_msg *m)
{
    int rc = m->fd < 0 ? open_work(m) : 0;
    if (rc)
        return rc;
    if (!m->head_written) /* the id is final now: the envelope's checksum can begin */
        m->env_crc = base_crc32c(0, m->data.data, m->size_off);
    rc = base_write_all(m->fd, m->data.data, m->data.len);
    m->data.len = 0;
    m->head_written = true;
    return rc;
}

int ims_spool_begin(ims_spool *sp, const ims_envelope *env, ims_spool_msg **out)
{
    *out = NULL;
    int rc = envelope_check(env);
    if (rc)
        return rc;
    ims_spool_msg *m = calloc(1, sizeof *m);
    if (!m)
        return ENOMEM;
    m->sp = sp;
    m->fd = -1;
    m->time = env->time ? env->time : time(NULL);
    new_id(sp, m->id);
    if ((env->pickup && !(m->pickup = strdup(env->pickup))) ||
        (env->dropdir && !(m->dropdir = strdup(env->dropdir))) ||
        (rc = format_envelope(m, env, env->host ? env->host : sp->host))) {
        rc = rc ? rc : ENOMEM;
        msg_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* keep_head - the header's bytes kept for the tracking line (bounded; the rest not copied). */
static void keep_head(ims_spool_msg *m, const void *data, size_t n)
{
    size_t old = m->head.len;
    size_t take = IMS_TRACK_MSGID_SCAN - old < n ? IMS_TRACK_MSGID_SCAN - old : n;
    if (!take)
        return;
    if (buf_add(&m->head, data, take)) {
        m->head_end = true; /* no memory: the line goes without its Message-ID */
        return;
    }
    size_t from = old > 3 ? old - 3 : 0;
    const char *h = (const char *)m->head.data;
    if (m->head.len == IMS_TRACK_MSGID_SCAN || (old == 0 && (h[0] == '\n' || h[0] == '\r')) ||
        memmem(h + from, m->head.len - from, "\n\n", 2) ||
        memmem(h + from, m->head.len - from, "\n\r\n", 3))
        m->head_end = true;
}

/* append - add content; may_flush false keeps it all in memory (submit: the caller's thread
 * then never touches the disk, the committer writes). */
static int append(ims_spool_msg *m, const void *data, size_t n, bool may_flush)
{
    if (m->err)
        return m->err;
    m->content_len += n;
    m->body_crc = base_crc32c(m->body_crc, data, n);
    if (!m->head_end && m->sp->tracking)
        keep_head(m, data, n);
    int rc = 0;
    if (!may_flush || m->data.len + n <= SPOOL_BUF_BYTES) {
        rc = buf_add(&m->data, data, n);
    } else if (!(rc = flush(m))) {
        /* A big piece goes straight to the file rather than through the buffer. */
        rc = n < SPOOL_BUF_BYTES ? buf_add(&m->data, data, n) : base_write_all(m->fd, data, n);
    }
    m->err = rc;
    return rc;
}

static void space_full(ims_spool *sp, int err);

int ims_spool_write(ims_spool_msg *m, const void *data, size_t n)
{
    int rc = append(m, data, n, true);
    if (ims_err_no_space(rc))
        space_full(m->sp, rc);
    return rc;
}

static int finish_file(ims_spool_msg *m);

/* ims_spool_commit hands the message to the committer, which writes what is still in memory
 * (all of it, for a message under SPOOL_BUF_BYTES) itself: one hand-off instead of two, and a
 * round's files are then written back and synced together. */
void ims_spool_commit(ims_spool_msg *m, ims_spool_done_fn done, void *arg)
{
    ims_spool *sp = m->sp;
    m->done = done;
    m->arg = arg;
    m->next = NULL;
    pthread_mutex_lock(&sp->lock);
    if (!sp->pending)
        monotonic_now(&sp->first_at);
    *sp->pending_tail = m;
    sp->pending_tail = &m->next;
    sp->npending++;
    pthread_cond_signal(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
}

void ims_spool_abort(ims_spool_msg *m)
{
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
        unlinkat(m->sp->work_fd, m->wname, 0);
    }
    msg_free(m);
}

int ims_spool_submit(ims_spool *sp, const ims_envelope *env, const void *data, size_t len,
                     ims_spool_done_fn done, void *arg)
{
    ims_spool_msg *m;
    int rc = ims_spool_begin(sp, env, &m);
    if (rc)
        return rc;
    if (buf_reserve(&m->data, len)) {
        ims_spool_abort(m);
        return ENOMEM;
    }
    append(m, data, len, false); /* cannot fail after the reserve */
    ims_spool_commit(m, done, arg);
    return 0;
}

/* --- the committer --------------------------------------------------------------------- */

/* finish_file - the rest of the content, the final size and the checksums into the file. */
static int finish_file(ims_spool_msg *m)
{
    char digits[SPOOL_SIZE_DIGITS + 2];
    snprintf(digits, sizeof digits, "%0*llu\n", SPOOL_SIZE_DIGITS,
             (unsigned long long)m->content_len);
    int rc = m->fd < 0 ? open_work(m) : 0; /* the id is final after this */
    if (rc)
        return rc;
    bool patch_in_file = m->head_written;
    uint32_t env = patch_in_file ? m->env_crc : base_crc32c(0, m->data.data, m->size_off);
    env = base_crc32c(env, digits, SPOOL_SIZE_DIGITS + 1);
    env = base_crc32c(env, "sum ", 4); /* the checksum covers everything before its digits */
    char sum[sizeof SPOOL_SUM_BLANK];
    snprintf(sum, sizeof sum, "%08" PRIx32 " %08" PRIx32, env, m->body_crc);
    if (!patch_in_file) {
        memcpy(m->data.data + m->size_off, digits, SPOOL_SIZE_DIGITS);
        memcpy(m->data.data + m->sum_off, sum, sizeof sum - 1);
    }
    rc = flush(m);
    if (!rc && patch_in_file)
        rc = pwrite_all(m->fd, digits, SPOOL_SIZE_DIGITS, (off_t)m->size_off);
    if (!rc && patch_in_file)
        rc = pwrite_all(m->fd, sum, sizeof sum - 1, (off_t)m->sum_off);
    /* A recycled file longer than this message: its old tail would read as status records. */
    uint64_t len = m->sum_off + sizeof SPOOL_SUM_BLANK + 1 + m->content_len;
    if (!rc && m->reused_size > len && ftruncate(m->fd, (off_t)len))
        rc = errno;
    return rc;
}

static int move_into_in(ims_spool *sp, const ims_spool_msg *m)
{
    return base_rename_noreplace(sp->work_fd, m->wname, sp->in_fd, m->id);
}

static void track_received(ims_spool *sp, const ims_spool_msg *m)
{
    const char *sender = (const char *)m->track.data;
    const char *ip = sender + strlen(sender) + 1;
    const char *host = ip + strlen(ip) + 1;
    const char *r = host + strlen(host) + 1;
    char msgid[IMS_TRACK_FIELD_MAX];
    if (!ims_track_message_id((const char *)m->head.data, m->head.len, msgid, sizeof msgid))
        msgid[0] = 0;
    ims_track_line l = {.when = time(NULL),
                        .event = IMS_TRACK_RECEIVED_INBOUND,
                        .qid = m->id,
                        .sender = sender,
                        .size = m->content_len,
                        .client = ip,
                        .host = host,
                        .message_id = msgid};
    for (size_t i = 0; i < m->nrcpt; i++, r += strlen(r) + 1) {
        l.rcpt = r;
        ims_tracking_put(sp->tracking, &l);
    }
}

/* claim_name - m's claim file of kind k (0: MTS-OUT, 1: the Pickup directory), or NULL. */
static const char *claim_name(const ims_spool_msg *m, int k)
{
    return k == 0 ? m->pickup : m->dropdir;
}

/* release_claims - the claims (MTS-OUT's, the Pickup directory's) of the round's durable
 * messages unlinked, and that made durable, before any of them may be delivered (and its
 * spool file leave In). false when that failed: their messages then wait in In for the next
 * open, which settles the claims before delivery starts. */
static bool release_claims(ims_spool *sp, ims_spool_msg **ms, size_t n)
{
    static const char *const what[] = {"MTS-OUT", "Pickup directory"};
    int fds[] = {sp->pickup_fd, sp->dropdir_fd};
    bool ok = true;
    for (int k = 0; k < 2; k++) {
        if (fds[k] < 0)
            continue;
        size_t gone = 0;
        int err = 0;
        const char *which = "";
        for (size_t i = 0; i < n; i++) {
            const char *c = claim_name(ms[i], k);
            if (ms[i]->err || !c)
                continue;
            if (unlinkat(fds[k], c, 0) == 0)
                gone++;
            else if (errno != ENOENT && !err)
                err = errno, which = c;
        }
        if (!err && gone && fsync(fds[k]))
            err = errno, which = ".";
        if (err) {
            spool_event_fmt(sp, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                            "Unable to remove the %s claim %s of a spooled message: %s; the "
                            "round's %s messages are delivered at the next start",
                            what[k], which, strerror(err), what[k]);
            ok = false;
        }
    }
    return ok;
}

/* space_full - a message failed for want of disk space (err): one event when an episode
 * begins (the first such failure: not one per message, as a full disk fails them all); the
 * per-message events of such failures are left out. Any thread. */
static void space_full(ims_spool *sp, int err)
{
    if (atomic_exchange(&sp->no_space, true))
        return;
    char work[PATH_MAX], fs[PATH_MAX + 128];
    snprintf(work, sizeof work, "%s/Work", sp->root);
    spool_event_fmt(sp, IMS_EV_DISK_FULL, IMS_CAT_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                    "The disk is full: a message could not be spooled in %s: %s; new "
                    "messages are refused with 452 4.3.1 until space is freed",
                    ims_fs_describe(work, fs, sizeof fs), strerror(err));
}

/* space_back - a message was committed: the episode, if any, is over. */
static void space_back(ims_spool *sp)
{
    if (!atomic_exchange(&sp->no_space, false))
        return;
    char work[PATH_MAX], fs[PATH_MAX + 128];
    snprintf(work, sizeof work, "%s/Work", sp->root);
    spool_event_fmt(sp, IMS_EV_DISK_SPACE_BACK, IMS_CAT_INTERNAL, IMS_SEV_INFO, IMS_LEVEL_NONE,
                    "Disk space is back: messages are spooled again in %s",
                    ims_fs_describe(work, fs, sizeof fs));
}

/* space_episode - a commit round's part in it. */
static void space_episode(ims_spool *sp, ims_spool_msg **ms, size_t n)
{
    int no_space = 0;
    bool ok = false;
    for (size_t i = 0; i < n; i++) {
        if (ims_err_no_space(ms[i]->err))
            no_space = ms[i]->err;
        else if (!ms[i]->err)
            ok = true;
    }
    if (no_space)
        space_full(sp, no_space);
    else if (ok)
        space_back(sp);
}

/* commit_round - make a round of written messages durable: fdatasync them together (in the
 * I/O pool), rename each into In, then one fsync of In for all of them. Only then is any of
 * them acknowledged (m->err 0). */
static void commit_round(ims_spool *sp, ims_spool_msg **ms, size_t n)
{
    uint64_t file_syncs = 0, dir_syncs = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        ims_spool_msg *m = ms[i];
        if (!m->err && (m->err = finish_file(m)) && !ims_err_no_space(m->err))
            spool_event_fmt(sp, IMS_EV_SPOOL_OPEN_FAILED, IMS_CAT_INTERNAL, IMS_SEV_ERROR,
                            IMS_LEVEL_NONE,
                            "Unable to write the temporary message file %s/Work/%s: %s", sp->root,
                            m->id, strerror(m->err));
        if (m->err)
            continue;
        if (sp->file_syncs) /* start every file's write-back before the first sync waits */
            sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        sp->round_fds[k++] = m->fd;
    }
    /* With file_syncs: each file's data durable, then its name in In (an fsync of In for the
     * round). Otherwise the files go into In at once and one syncfs makes data and names
     * durable together; a crash in between leaves a file in In that its checksums give away
     * (recovery archives it), and it was never acknowledged. */
    if (sp->file_syncs) {
        ims_pool_sync(sp->pool, -1, sp->round_fds, sp->round_errs, k, true);
        file_syncs = k;
        for (size_t i = 0, j = 0; i < n; i++)
            if (!ms[i]->err)
                ms[i]->err = sp->round_errs[j++];
    }
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) {
        ims_spool_msg *m = ms[i];
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
        }
        if (m->err)
            continue;
        if ((m->err = move_into_in(sp, m)) && !ims_err_no_space(m->err))
            spool_event_fmt(sp, IMS_EV_SPOOL_MOVE_FAILED, IMS_CAT_INTERNAL, IMS_SEV_ERROR,
                            IMS_LEVEL_NONE, "Unable to move file %s/Work/%s to %s/In/%s: %s",
                            sp->root, m->wname, sp->root, m->id, strerror(m->err));
        else if (!m->err)
            moved++;
    }
    uint64_t in_seq = 0;
    bool in_ok = false;
    if (moved) {
        dir_syncs++;
        in_seq = ims_recycler_round_begin(sp->recycler);
        /* In is open for the spool's life: no write-back error between rounds is missed. */
        in_ok = (sp->file_syncs ? fsync(sp->in_fd) : syncfs(sp->in_fd)) == 0;
        if (!in_ok) {
            /* Not known durable: take the files back, so that the client's retry (after our
             * 451) is the only copy that gets delivered. */
            int err = errno;
            for (size_t i = 0; i < n; i++)
                if (!ms[i]->err) {
                    ms[i]->err = err;
                    unlinkat(sp->in_fd, ms[i]->id, 0);
                }
            spool_event_fmt(sp, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                            "Unable to flush the folder %s/In: %s", sp->root, strerror(err));
        }
    }
    bool claims_gone = release_claims(sp, ms, n);
    space_episode(sp, ms, n);
    ims_tracking_hold(sp->tracking); /* the round's received lines in one write */
    for (size_t i = 0; i < n; i++) {
        ims_spool_msg *m = ms[i];
        if (m->err) {
            if (m->head_written || m->fd >= 0)
                unlinkat(sp->work_fd, m->wname, 0);
            continue;
        }
        if (sp->tracking)
            track_received(sp, m);
        if ((m->pickup || m->dropdir) && !claims_gone)
            continue; /* stays in In, undelivered, till the next open settles its claim */
        if (sp->deliverer && ims_deliverer_enqueue(sp->deliverer, m->id, false))
            spool_event_fmt(sp, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                            "Message %s could not be queued for delivery (out of memory); it "
                            "is delivered at the next start",
                            m->id);
    }
    (void)ims_tracking_release(sp->tracking);
    pthread_mutex_lock(&sp->lock);
    sp->stats.rounds++;
    sp->stats.file_syncs += file_syncs;
    sp->stats.dir_syncs += dir_syncs;
    for (size_t i = 0; i < n; i++) {
        if (ms[i]->err)
            sp->stats.failed++;
        else
            sp->stats.committed++;
        ms[i]->next = NULL;
        *sp->finished_tail = ms[i];
        sp->finished_tail = &ms[i]->next;
    }
    pthread_mutex_unlock(&sp->lock);
    wake_fd(sp->efd);
    /* After the acknowledgements: it empties the files this sync made free for reuse. */
    if (in_seq)
        ims_recycler_sync_end(sp->recycler, in_seq, in_ok);
}

static void timespec_add_us(struct timespec *t, unsigned us)
{
    t->tv_nsec += (long)(us % 1000000u) * 1000;
    t->tv_sec += us / 1000000u;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

/* committer_main - natural batching: a round takes every message that arrived while the
 * previous round was syncing (plus, with a window, those arriving within it). */
static void *committer_main(void *arg)
{
    ims_spool *sp = arg;
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        while (!sp->pending && !sp->stopping)
            pthread_cond_wait(&sp->wake, &sp->lock);
        if (!sp->pending)
            break;
        if (sp->window_us) {
            struct timespec deadline = sp->first_at;
            timespec_add_us(&deadline, sp->window_us);
            while (!sp->stopping && sp->npending < SPOOL_MAX_ROUND &&
                   pthread_cond_timedwait(&sp->wake, &sp->lock, &deadline) != ETIMEDOUT)
                ;
        }
        size_t n = 0;
        while (sp->pending && n < SPOOL_MAX_ROUND) {
            ims_spool_msg *m = sp->pending;
            sp->pending = m->next;
            sp->npending--;
            sp->round[n++] = m;
        }
        if (!sp->pending)
            sp->pending_tail = &sp->pending;
        else
            monotonic_now(&sp->first_at);
        pthread_mutex_unlock(&sp->lock);
        commit_round(sp, sp->round, n);
        pthread_mutex_lock(&sp->lock);
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* --- dispatch, stats, close ------------------------------------------------------------ */

ims_recycler *ims_spool_recycler(ims_spool *sp)
{
    return sp && !sp->file_syncs ? sp->recycler : NULL;
}

int ims_spool_fd(const ims_spool *sp)
{
    return sp->efd;
}

bool ims_spool_short_of_space(ims_spool *sp)
{
    if (!atomic_load(&sp->no_space))
        return false;
    /* The episode ends only with a commit: let mail through as soon as there is room for it
     * to try. */
    struct statvfs vfs;
    if (fstatvfs(sp->work_fd, &vfs))
        return true;
    return (uint64_t)vfs.f_bavail * vfs.f_frsize < IMS_SPOOL_SPACE_MARGIN;
}

size_t ims_spool_dispatch(ims_spool *sp)
{
    uint64_t v;
    if (read(sp->efd, &v, sizeof v) < 0) {
        /* EAGAIN: nothing signalled; look anyway, it costs one lock. */
    }
    pthread_mutex_lock(&sp->lock);
    ims_spool_msg *done = sp->finished;
    sp->finished = NULL;
    sp->finished_tail = &sp->finished;
    spool_event *ev = sp->events;
    sp->events = NULL;
    sp->events_tail = &sp->events;
    sp->nevents = 0;
    size_t dropped = sp->events_dropped;
    sp->events_dropped = 0;
    pthread_mutex_unlock(&sp->lock);

    while (ev) {
        spool_event *next = ev->next;
        ims_log_event(sp->log, ev->id, ev->cat, ev->sev, ev->level, "%s", ev->text);
        free(ev);
        ev = next;
    }
    if (dropped)
        ims_log_event(sp->log, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "%zu spool events were not logged (too many at once)", dropped);
    size_t count = 0;
    while (done) {
        ims_spool_msg *next = done->next;
        if (done->done)
            done->done(done->arg, done->err, done->id);
        msg_free(done);
        done = next;
        count++;
    }
    return count;
}

void ims_spool_get_stats(ims_spool *sp, ims_spool_stats *st)
{
    pthread_mutex_lock(&sp->lock);
    *st = sp->stats;
    pthread_mutex_unlock(&sp->lock);
    ims_recycler_stats(sp->recycler, &st->files_recycled, &st->files_reused);
    if (sp->deliverer)
        ims_deliverer_stats(sp->deliverer, st);
}

static void spool_free(ims_spool *sp)
{
    if (sp->efd >= 0)
        close(sp->efd);
    if (sp->in_fd >= 0)
        close(sp->in_fd);
    if (sp->pickup_fd >= 0)
        close(sp->pickup_fd);
    if (sp->dropdir_fd >= 0)
        close(sp->dropdir_fd);
    ims_recycler_free(sp->recycler);
    if (sp->work_fd >= 0)
        close(sp->work_fd);
    ims_tracking_close(sp->tracking);
    ims_pool_stop(sp->pool);
    pthread_cond_destroy(&sp->wake);
    pthread_mutex_destroy(&sp->lock);
    free(sp->root);
    free(sp);
}

void ims_spool_close(ims_spool *sp)
{
    if (!sp)
        return;
    pthread_mutex_lock(&sp->lock);
    sp->stopping = true;
    pthread_cond_broadcast(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    if (sp->committer_running)
        pthread_join(sp->committer, NULL);
    if (sp->deliverer)
        ims_deliverer_stop(sp->deliverer);
    sp->deliverer = NULL;
    ims_spool_dispatch(sp);
    spool_free(sp);
}

/* --- open and recovery ----------------------------------------------------------------- */

static int open_dir(const char *root, const char *sub, int *fd)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", root, sub) >= (int)sizeof p)
        return ENAMETOOLONG;
    if (mkdir(p, 0750) && errno != EEXIST)
        return errno;
    *fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? errno : 0;
}

static int spool_init(ims_spool *sp, const char *root_dir, const ims_spool_options *opt)
{
    sp->in_fd = sp->work_fd = sp->efd = sp->pickup_fd = sp->dropdir_fd = -1;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->wake, &ca);
    pthread_condattr_destroy(&ca);
    sp->pending_tail = &sp->pending;
    sp->finished_tail = &sp->finished;
    sp->events_tail = &sp->events;
    if (!(sp->root = strdup(root_dir)))
        return ENOMEM;
    sp->log = opt->log;
    sp->window_us = opt->commit_window_us;
    sp->file_syncs = opt->file_syncs;
    if (opt->host) {
        snprintf(sp->host, sizeof sp->host, "%s", opt->host);
    } else if (gethostname(sp->host, sizeof sp->host - 1)) {
        snprintf(sp->host, sizeof sp->host, "localhost");
    }
    if (!ims_spool_field_ok(sp->host, false))
        return EINVAL;
    uint32_t start;
    int rc = base_random(&start, sizeof start);
    if (rc)
        return rc;
    atomic_init(&sp->counter, start);
    int root_fd = open(root_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return errno;
    close(root_fd);
    int archive_fd = -1;
    if ((rc = open_dir(root_dir, "Work", &sp->work_fd)) ||
        (rc = open_dir(root_dir, "In", &sp->in_fd)) ||
        (rc = open_dir(root_dir, "In/Archive", &archive_fd)))
        return rc;
    close(archive_fd);
    if (flock(sp->work_fd, LOCK_EX | LOCK_NB))
        return errno == EWOULDBLOCK ? EBUSY : errno;
    if ((rc = ims_recycler_new(sp->work_fd, IMS_RECYCLE_MAX, &sp->recycler)))
        return rc;
    /* One syncfs through In covers Work's files only when both are on one file system. */
    struct stat ws, is;
    if (fstat(sp->work_fd, &ws) || fstat(sp->in_fd, &is) || ws.st_dev != is.st_dev)
        sp->file_syncs = true;
    if (opt->pickup_dir) {
        if (mkdir(opt->pickup_dir, 0750) && errno != EEXIST)
            return errno;
        if ((sp->pickup_fd = open(opt->pickup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            return errno;
    }
    if (opt->dropdir_claim_dir) {
        /* Made by ims_dropdir_start, which checks whose it is: only opened here. */
        sp->dropdir_fd =
            open(opt->dropdir_claim_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sp->dropdir_fd < 0)
            return errno;
    }
    sp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sp->efd < 0)
        return errno;
    if (opt->tracking_dir && (rc = ims_tracking_open(opt->tracking_dir, &sp->tracking)))
        return rc;
    return ims_pool_start(opt->io_threads ? opt->io_threads : IMS_SPOOL_IO_THREADS, &sp->pool);
}

typedef struct claim {
    char *name;
    time_t ctime;
} claim;

static int claim_cmp(const void *a, const void *b)
{
    return strcmp(((const claim *)a)->name, ((const claim *)b)->name);
}

/* id_time - the seconds a queue id starts with (new_id). */
static time_t id_time(const char *id)
{
    char hex[9];
    memcpy(hex, id, 8);
    hex[8] = 0;
    return (time_t)strtoul(hex, NULL, 16);
}

/* settle_claims - MTS-OUT's claims whose messages are in In (a crash came between the In
 * fsync and the claim's unlink) are unlinked, and that made durable, before delivery starts.
 * Only spool files whose id's time is at least 2 s before the oldest claim's ctime (the
 * rename that made the claim set it; 2 s for coarse timestamps) are read: a message spooled
 * before its claim was made cannot be its. */
static int settle_claims(ims_spool *sp, int claim_fd, int kind, const ims_id_list *ids,
                         size_t *settled)
{
    *settled = 0;
    DIR *d = base_opendirat(claim_fd, ".");
    if (!d)
        return errno;
    claim *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    time_t oldest = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(claim_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
            !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            claim *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v);
            if (!nv) {
                rc = ENOMEM;
                break;
            }
            v = nv;
        }
        if (!(v[n].name = strdup(e->d_name))) {
            rc = ENOMEM;
            break;
        }
        v[n].ctime = st.st_ctim.tv_sec;
        if (!n || v[n].ctime < oldest)
            oldest = v[n].ctime;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, claim_cmp);
    for (size_t i = 0; !rc && n && i < ids->n; i++) {
        time_t t = id_time(ids->ids[i]);
        if (t + 2 < oldest)
            continue;
        int fd = openat(sp->in_fd, ids->ids[i], O_RDONLY | O_CLOEXEC);
        ims_spool_file f;
        if (fd < 0)
            continue;
        int r = ims_spool_file_read(fd, &f);
        close(fd);
        if (r == ENOMEM)
            rc = ENOMEM;
        if (r)
            continue;
        claim key = {.name = kind == 0 ? f.pickup : f.dropdir};
        claim *c = key.name ? bsearch(&key, v, n, sizeof *v, claim_cmp) : NULL;
        if (c && t + 2 >= c->ctime && unlinkat(claim_fd, c->name, 0) == 0)
            (*settled)++;
        ims_spool_file_free(&f);
    }
    if (!rc && *settled && fsync(claim_fd))
        rc = errno;
    for (size_t i = 0; i < n; i++)
        free(v[i].name);
    free(v);
    return rc;
}

int ims_spool_open(const char *root_dir, const ims_spool_options *opt, ims_spool **out)
{
    *out = NULL;
    static const ims_spool_options none = {0};
    if (!opt)
        opt = &none;
    ims_spool *sp = calloc(1, sizeof *sp);
    if (!sp)
        return ENOMEM;
    int rc = spool_init(sp, root_dir, opt);
    ims_id_list ids = {0};
    size_t removed = 0, archived = 0;
    if (!rc)
        rc =
            ims_spool_recover(sp->work_fd, sp->in_fd, sp->root, sp->log, &ids, &removed, &archived);
    size_t settled = 0, settled_dropdir = 0;
    if (!rc && sp->pickup_fd >= 0)
        rc = settle_claims(sp, sp->pickup_fd, 0, &ids, &settled);
    if (!rc && sp->dropdir_fd >= 0)
        rc = settle_claims(sp, sp->dropdir_fd, 1, &ids, &settled_dropdir);
    if (!rc && opt->mts_in) {
        ims_deliver_config dc = {
            .root_dir = root_dir,
            .mts_in = opt->mts_in,
            .archive = opt->archive,
            .retry_min_ms = opt->retry_min_ms ? opt->retry_min_ms : IMS_SPOOL_RETRY_MIN_MS,
            .retry_max_ms = opt->retry_max_ms ? opt->retry_max_ms : IMS_SPOOL_RETRY_MAX_MS,
            .tracking = sp->tracking,
            .pool = sp->pool,
            .file_syncs = sp->file_syncs,
            .recycler = sp->recycler,
            .work_fd = sp->work_fd,
            .event = queue_event,
            .event_arg = sp,
            .handover = opt->handover,
            .handover_arg = opt->handover_arg,
            .report_names = opt->report_names,
            .receipt = opt->receipt,
            .receipt_arg = opt->receipt_arg,
        };
        rc = ims_deliverer_start(&dc, &sp->deliverer);
        for (size_t i = 0; !rc && i < ids.n; i++)
            rc = ims_deliverer_enqueue(sp->deliverer, ids.ids[i], true);
    }
    if (!rc) {
        rc = pthread_create(&sp->committer, NULL, committer_main, sp);
        sp->committer_running = !rc;
    }
    if (!rc && (ids.n || removed || archived))
        ims_log_event(
            sp->log, IMS_EV_SPOOL_RECOVERED, IMS_CAT_INIT_TERM, IMS_SEV_INFO, IMS_LEVEL_MINIMUM,
            "Spool recovery in %s: %zu messages in In %s, %zu partial files removed "
            "from Work, %zu unreadable files moved to In/Archive",
            root_dir, ids.n, opt->mts_in ? "queued for delivery" : "kept", removed, archived);
    if (!rc && settled)
        ims_log_event(sp->log, IMS_EV_SPOOL_RECOVERED, IMS_CAT_INIT_TERM, IMS_SEV_INFO,
                      IMS_LEVEL_MINIMUM,
                      "Spool recovery in %s: %zu MTS-OUT claims in %s removed (their messages "
                      "are in In)",
                      root_dir, settled, opt->pickup_dir);
    if (!rc && settled_dropdir)
        ims_log_event(sp->log, IMS_EV_SPOOL_RECOVERED, IMS_CAT_INIT_TERM, IMS_SEV_INFO,
                      IMS_LEVEL_MINIMUM,
                      "Spool recovery in %s: %zu Pickup directory claims in %s removed (their "
                      "messages are in In)",
                      root_dir, settled_dropdir, opt->dropdir_claim_dir);
    free(ids.ids);
    if (rc) {
        if (sp->deliverer)
            ims_deliverer_stop(sp->deliverer);
        sp->deliverer = NULL;
        spool_free(sp);
        return rc;
    }
    *out = sp;
    return 0;
}
