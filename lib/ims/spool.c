/* spool.c - the inbound spool (RootDir\In): messages written in RootDir\Work, made durable in
 * commit rounds (group commit: fdatasync of each file, rename into In, one fsync of In for the
 * whole round) before they are acknowledged; start-up recovery; the spool file format. */
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
#include <unistd.h>

#include "base/base.h"
#include "smtp/smtp.h"

#define SPOOL_MAGIC "IMS-SPOOL 1"
#define SPOOL_MAGIC_PREFIX "IMS-SPOOL " /* any version: a newer one is "unknown", not "bad" */
#define SPOOL_BUF_BYTES 65536           /* content kept in memory before it goes to Work */
#define SPOOL_MAX_ROUND 1024            /* messages in one commit round */
#define SPOOL_SIZE_DIGITS 20            /* the size field is fixed-width: patched at commit */
#define SPOOL_MAX_ENVELOPE (16u << 20)  /* bytes of envelope (or of status) a reader accepts */
#define SPOOL_READ_CHUNK 4096
#define SPOOL_MAX_EVENTS 256 /* events waiting for dispatch; more are counted, not kept */
#define SPOOL_EVENT_TEXT 512
#define SPOOL_ID_TRIES 4 /* fresh queue ids tried when one is taken */
#define SPOOL_HOST_MAX 256

struct ims_spool_msg {
    ims_spool *sp;
    ims_spool_msg *next;
    char id[IMS_QUEUE_ID_LEN + 1];
    buf data;          /* bytes not yet in the file; starts with the envelope */
    size_t id_off;     /* where the id's digits are in the envelope */
    size_t size_off;   /* where the size's digits are */
    bool head_written; /* the envelope is in the file */
    int fd;            /* the file in Work, or -1 before the first flush */
    uint64_t content_len;
    int err; /* sticky: the first failure */
    ims_spool_done_fn done;
    void *arg;
    time_t time;
    buf track; /* for the 1012 lines: sender, client ip, host, then each recipient, NUL-ended */
    size_t nrcpt;
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
    ims_log *log;
    unsigned window_us;
    ims_tracking *tracking;
    ims_deliverer *deliverer;
    atomic_uint_least32_t counter; /* the low half of queue ids */

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* the committer's: work arrived, or stop */
    ims_spool_msg *pending, **pending_tail;
    size_t npending;
    size_t writing;           /* committed messages still being written by the pool */
    struct timespec first_at; /* when the oldest pending message arrived (monotonic) */
    ims_spool_msg *finished, **finished_tail; /* waiting for dispatch */
    spool_event *events, **events_tail;
    size_t nevents, events_dropped;
    bool stopping;
    ims_spool_stats stats;
    pthread_t committer;
    bool committer_running;
    ims_sync_pool *pool;
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

/* --- the I/O pool --------------------------------------------------------------------- */

/* File work runs in several threads at once. One after another, each file creation and each
 * fdatasync waits for the disk alone (on ext4 a file whose journal commit already happened
 * still costs a cache flush of its own); issued together, syncs wait on one journal commit and
 * their flushes merge in the block layer. */
typedef struct pool_batch {
    struct pool_batch *next;
    ims_pool_fn fn;
    void *arg;
    size_t n, taken, left;
    bool detached;       /* posted: nobody waits, the last worker frees it */
    pthread_cond_t done; /* not detached: the caller waits here */
} pool_batch;

struct ims_sync_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    pool_batch *queue, **tail; /* batches with items nobody took yet, oldest first */
    bool stopping;
    pthread_t threads[IMS_SPOOL_IO_THREADS];
    unsigned nthreads;
};

/* take - the next item of batch b (lock held); b leaves the queue with its last item. */
static size_t take(ims_sync_pool *p, pool_batch *b)
{
    size_t i = b->taken++;
    if (b->taken == b->n)
        for (pool_batch **pp = &p->queue; *pp; pp = &(*pp)->next)
            if (*pp == b) {
                if (!(*pp = b->next))
                    p->tail = pp;
                break;
            }
    return i;
}

static void enqueue(ims_sync_pool *p, pool_batch *b)
{
    b->next = NULL;
    *p->tail = b;
    p->tail = &b->next;
}

/* run_item - item i of b, with the lock released around it. */
static void run_item(ims_sync_pool *p, pool_batch *b, size_t i)
{
    pthread_mutex_unlock(&p->lock);
    b->fn(b->arg, i);
    pthread_mutex_lock(&p->lock);
    if (--b->left == 0) {
        if (b->detached)
            free(b);
        else
            pthread_cond_signal(&b->done);
    }
}

static void *pool_worker(void *arg)
{
    ims_sync_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        pool_batch *b = p->queue;
        if (b)
            run_item(p, b, take(p, b));
        else if (p->stopping)
            break;
        else
            pthread_cond_wait(&p->work, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void ims_pool_run(ims_sync_pool *p, size_t n, ims_pool_fn fn, void *arg)
{
    if (!p || !p->nthreads || n < 2) {
        for (size_t i = 0; i < n; i++)
            fn(arg, i);
        return;
    }
    pool_batch b = {.fn = fn, .arg = arg, .n = n, .left = n};
    pthread_cond_init(&b.done, NULL);
    pthread_mutex_lock(&p->lock);
    enqueue(p, &b);
    pthread_cond_broadcast(&p->work);
    while (b.taken < b.n) /* the caller works too */
        run_item(p, &b, take(p, &b));
    while (b.left)
        pthread_cond_wait(&b.done, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_destroy(&b.done);
}

void ims_pool_post(ims_sync_pool *p, ims_pool_fn fn, void *arg)
{
    pool_batch *b = p && p->nthreads ? calloc(1, sizeof *b) : NULL;
    if (!b) {
        fn(arg, 0); /* no pool, or no memory: the caller does it */
        return;
    }
    b->fn = fn;
    b->arg = arg;
    b->n = b->left = 1;
    b->detached = true;
    pthread_mutex_lock(&p->lock);
    enqueue(p, b);
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

struct sync_args {
    const int *fds;
    int *errs;
    bool data_only;
};

static void sync_fn(void *arg, size_t i)
{
    struct sync_args *a = arg;
    a->errs[i] = (a->data_only ? fdatasync(a->fds[i]) : fsync(a->fds[i])) ? errno : 0;
}

void ims_pool_sync(ims_sync_pool *p, const int *fds, int *errs, size_t n, bool data_only)
{
    struct sync_args a = {fds, errs, data_only};
    ims_pool_run(p, n, sync_fn, &a);
}

void ims_pool_stop(ims_sync_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int ims_pool_start(unsigned threads, ims_sync_pool **out)
{
    *out = NULL;
    ims_sync_pool *p = calloc(1, sizeof *p);
    if (!p)
        return ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    p->tail = &p->queue;
    if (threads > IMS_SPOOL_IO_THREADS)
        threads = IMS_SPOOL_IO_THREADS;
    /* Fewer threads than asked (pthread_create failing) only makes a round less parallel. */
    while (p->nthreads < threads &&
           pthread_create(&p->threads[p->nthreads], NULL, pool_worker, p) == 0)
        p->nthreads++;
    *out = p;
    return 0;
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

bool ims_spool_id_valid(const char *name)
{
    size_t i = 0;
    for (; name[i]; i++)
        if (i >= IMS_QUEUE_ID_LEN ||
            !((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'A' && name[i] <= 'F')))
            return false;
    return i == IMS_QUEUE_ID_LEN;
}

/* new_id - seconds since the epoch, then a counter that starts at a random value at open:
 * ids sort by time, and two starts within one second do not collide unless their counters
 * meet. Collisions that remain are caught by O_EXCL and RENAME_NOREPLACE. */
static void new_id(ims_spool *sp, char id[IMS_QUEUE_ID_LEN + 1])
{
    uint32_t c = (uint32_t)atomic_fetch_add(&sp->counter, 1);
    snprintf(id, IMS_QUEUE_ID_LEN + 1, "%08" PRIX32 "%08" PRIX32, (uint32_t)time(NULL), c);
}

/* field_ok - a value that fits on its line of the spool file and in a header. */
static bool field_ok(const char *s, bool may_be_empty)
{
    if (!s)
        return false;
    size_t n = strcspn(s, "\r\n\t");
    return s[n] == 0 && n <= IMS_SPOOL_MAX_FIELD && (n > 0 || may_be_empty);
}

static bool opt_ok(const char *s)
{
    return !s || !*s || (field_ok(s, false) && strcmp(s, "-") != 0);
}

static int envelope_check(const ims_envelope *env)
{
    if (!env || !env->rcpts || env->nrcpt == 0 || env->nrcpt > IMS_SPOOL_MAX_RCPTS)
        return EINVAL;
    smtp_ip ip;
    if (!field_ok(env->sender, true) || (env->client_ip && smtp_ip_parse(env->client_ip, &ip)) ||
        (env->helo && !field_ok(env->helo, false)) || (env->host && !field_ok(env->host, false)) ||
        !opt_ok(env->envid) || !opt_ok(env->ret))
        return EINVAL;
    for (size_t i = 0; i < env->nrcpt; i++) {
        const ims_rcpt *r = &env->rcpts[i];
        if (!field_ok(r->address, false) || !field_ok(r->maildir, false) || r->maildir[0] != '/' ||
            !opt_ok(r->notify) || !opt_ok(r->orcpt))
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
    for (size_t i = 0; !rc && i < env->nrcpt; i++) {
        const ims_rcpt *r = &env->rcpts[i];
        rc = buf_printf(b, "rcpt %s\t%s\t%s\t%s\n", or_dash(r->notify), or_dash(r->orcpt),
                        r->address, r->maildir);
    }
    if (!rc)
        rc = buf_adds(b, "size ");
    m->size_off = b->len;
    if (!rc)
        rc = buf_printf(b, "%0*d\n\n", SPOOL_SIZE_DIGITS, 0);
    /* What the tracking lines need once the message is committed. */
    rc = rc ? rc : buf_add(&m->track, env->sender, strlen(env->sender) + 1);
    const char *ip = env->client_ip ? env->client_ip : "unknown";
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
    if ((rc = format_envelope(m, env, env->host ? env->host : sp->host))) {
        msg_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* append - add content; may_flush false keeps it all in memory (submit: the caller's thread
 * then never touches the disk, the committer writes). */
static int append(ims_spool_msg *m, const void *data, size_t n, bool may_flush)
{
    if (m->err)
        return m->err;
    m->content_len += n;
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

int ims_spool_write(ims_spool_msg *m, const void *data, size_t n)
{
    return append(m, data, n, true);
}

static int finish_file(ims_spool_msg *m);

/* write_job - a pool job: the rest of the message written out and its write-back started,
 * then it waits for the committer's next round. Writes run while a round syncs. */
static void write_job(void *arg, size_t i)
{
    (void)i;
    ims_spool_msg *m = arg;
    ims_spool *sp = m->sp;
    if (!m->err && (m->err = finish_file(m)))
        spool_event_fmt(sp, IMS_EV_SPOOL_OPEN_FAILED, IMS_CAT_INTERNAL, IMS_SEV_ERROR,
                        IMS_LEVEL_NONE, "Unable to write the temporary message file %s/Work/%s: %s",
                        sp->root, m->id, strerror(m->err));
    if (!m->err)
        sync_file_range(m->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    m->next = NULL;
    pthread_mutex_lock(&sp->lock);
    if (!sp->pending)
        monotonic_now(&sp->first_at);
    *sp->pending_tail = m;
    sp->pending_tail = &m->next;
    sp->npending++;
    sp->writing--;
    pthread_cond_signal(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
}

void ims_spool_commit(ims_spool_msg *m, ims_spool_done_fn done, void *arg)
{
    ims_spool *sp = m->sp;
    m->done = done;
    m->arg = arg;
    pthread_mutex_lock(&sp->lock);
    sp->writing++;
    pthread_mutex_unlock(&sp->lock);
    ims_pool_post(sp->pool, write_job, m);
}

void ims_spool_abort(ims_spool_msg *m)
{
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
        unlinkat(m->sp->work_fd, m->id, 0);
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

/* finish_file - the rest of the content and the final size into the file in Work. */
static int finish_file(ims_spool_msg *m)
{
    char digits[SPOOL_SIZE_DIGITS + 1];
    snprintf(digits, sizeof digits, "%0*llu", SPOOL_SIZE_DIGITS,
             (unsigned long long)m->content_len);
    bool patch_in_file = m->head_written;
    if (!patch_in_file)
        memcpy(m->data.data + m->size_off, digits, SPOOL_SIZE_DIGITS);
    int rc = flush(m);
    if (!rc && patch_in_file)
        rc = pwrite_all(m->fd, digits, SPOOL_SIZE_DIGITS, (off_t)m->size_off);
    return rc;
}

static int move_into_in(ims_spool *sp, const char *id)
{
    if (renameat2(sp->work_fd, id, sp->in_fd, id, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return errno;
    /* A file system without RENAME_NOREPLACE: link refuses to replace too. */
    if (linkat(sp->work_fd, id, sp->in_fd, id, 0))
        return errno;
    unlinkat(sp->work_fd, id, 0);
    return 0;
}

static void track_received(ims_spool *sp, const ims_spool_msg *m)
{
    const char *sender = (const char *)m->track.data;
    const char *ip = sender + strlen(sender) + 1;
    const char *host = ip + strlen(ip) + 1;
    const char *r = host + strlen(host) + 1;
    for (size_t i = 0; i < m->nrcpt; i++, r += strlen(r) + 1)
        ims_tracking_write(sp->tracking, time(NULL), IMS_TRACK_RECEIVED_INBOUND, m->id, sender, r,
                           m->content_len, ip, host);
}

/* commit_round - make a round of written messages durable: fdatasync them together (in the
 * I/O pool), rename each into In, then one fsync of In for all of them. Only then is any of
 * them acknowledged (m->err 0). */
static void commit_round(ims_spool *sp, ims_spool_msg **ms, size_t n)
{
    uint64_t file_syncs = 0, dir_syncs = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!ms[i]->err)
            sp->round_fds[k++] = ms[i]->fd;
    ims_pool_sync(sp->pool, sp->round_fds, sp->round_errs, k, true);
    file_syncs = k;
    for (size_t i = 0, j = 0; i < n; i++)
        if (!ms[i]->err)
            ms[i]->err = sp->round_errs[j++];
    size_t moved = 0;
    for (size_t i = 0; i < n; i++) {
        ims_spool_msg *m = ms[i];
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
        }
        if (m->err)
            continue;
        if ((m->err = move_into_in(sp, m->id)))
            spool_event_fmt(sp, IMS_EV_SPOOL_MOVE_FAILED, IMS_CAT_INTERNAL, IMS_SEV_ERROR,
                            IMS_LEVEL_NONE, "Unable to move file %s/Work/%s to %s/In/%s: %s",
                            sp->root, m->id, sp->root, m->id, strerror(m->err));
        else
            moved++;
    }
    if (moved) {
        dir_syncs++;
        if (fsync(sp->in_fd)) {
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
    for (size_t i = 0; i < n; i++) {
        ims_spool_msg *m = ms[i];
        if (m->err) {
            if (m->head_written || m->fd >= 0)
                unlinkat(sp->work_fd, m->id, 0);
            continue;
        }
        if (sp->tracking)
            track_received(sp, m);
        if (sp->deliverer && ims_deliverer_enqueue(sp->deliverer, m->id, false))
            spool_event_fmt(sp, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                            "Message %s could not be queued for delivery (out of memory); it "
                            "is delivered at the next start",
                            m->id);
    }
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
        /* At stop, messages still being written are waited for too. */
        while (!sp->pending && !(sp->stopping && !sp->writing))
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

int ims_spool_fd(const ims_spool *sp)
{
    return sp->efd;
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
    if (sp->deliverer)
        ims_deliverer_stats(sp->deliverer, st);
}

static void spool_free(ims_spool *sp)
{
    if (sp->efd >= 0)
        close(sp->efd);
    if (sp->in_fd >= 0)
        close(sp->in_fd);
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

/* --- reading a spool file -------------------------------------------------------------- */

void ims_spool_file_free(ims_spool_file *f)
{
    free(f->sender);
    free(f->client_ip);
    free(f->helo);
    free(f->host);
    free(f->envid);
    free(f->ret);
    for (size_t i = 0; i < f->nrcpt; i++) {
        free(f->rcpts[i].address);
        free(f->rcpts[i].maildir);
        free(f->rcpts[i].notify);
        free(f->rcpts[i].orcpt);
    }
    free(f->rcpts);
    memset(f, 0, sizeof *f);
}

/* set_once - a string field that may appear once. */
static int set_once(char **field, const char *v)
{
    if (*field)
        return EBADMSG;
    return (*field = strdup(v)) ? 0 : ENOMEM;
}

static int parse_uint(const char *v, uint64_t *out)
{
    if (!*v)
        return EBADMSG;
    uint64_t x = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || x > (UINT64_MAX - 9) / 10)
            return EBADMSG;
        x = x * 10 + (uint64_t)(*v - '0');
    }
    *out = x;
    return 0;
}

static int parse_rcpt(ims_spool_file *f, char *v)
{
    char *part[4];
    for (int i = 0; i < 4; i++) {
        part[i] = v;
        char *tab = strchr(v, '\t');
        if ((i < 3) != (tab != NULL))
            return EBADMSG;
        if (tab) {
            *tab = 0;
            v = tab + 1;
        }
    }
    if (!part[2][0] || part[3][0] != '/' || f->nrcpt >= IMS_SPOOL_MAX_RCPTS)
        return EBADMSG;
    if ((f->nrcpt & (f->nrcpt - 1)) == 0) { /* grow at powers of two */
        size_t cap = f->nrcpt ? f->nrcpt * 2 : 1;
        ims_spool_rcpt_rec *r = realloc(f->rcpts, cap * sizeof *r);
        if (!r)
            return ENOMEM;
        f->rcpts = r;
    }
    ims_spool_rcpt_rec *r = &f->rcpts[f->nrcpt];
    memset(r, 0, sizeof *r);
    f->nrcpt++;
    r->address = strdup(part[2]);
    r->maildir = strdup(part[3]);
    r->notify = strcmp(part[0], "-") ? strdup(part[0]) : NULL;
    r->orcpt = strcmp(part[1], "-") ? strdup(part[1]) : NULL;
    if (!r->address || !r->maildir || (strcmp(part[0], "-") && !r->notify) ||
        (strcmp(part[1], "-") && !r->orcpt))
        return ENOMEM;
    return 0;
}

/* parse_line - one "key value" line of the envelope. */
static int parse_line(ims_spool_file *f, char *line, bool *have_time, bool *have_size)
{
    char *v = strchr(line, ' ');
    if (!v)
        return EBADMSG;
    *v++ = 0;
    uint64_t x;
    if (!strcmp(line, "id")) {
        if (f->id[0] || !ims_spool_id_valid(v))
            return EBADMSG;
        memcpy(f->id, v, IMS_QUEUE_ID_LEN + 1);
        return 0;
    }
    if (!strcmp(line, "time")) {
        if (*have_time || parse_uint(v, &x) || x > INT64_MAX)
            return EBADMSG;
        f->time = (time_t)x;
        *have_time = true;
        return 0;
    }
    if (!strcmp(line, "size")) {
        if (*have_size || strlen(v) != SPOOL_SIZE_DIGITS || parse_uint(v, &f->content_len))
            return EBADMSG;
        *have_size = true;
        return 0;
    }
    if (!strcmp(line, "client"))
        return set_once(&f->client_ip, v);
    if (!strcmp(line, "helo"))
        return set_once(&f->helo, v);
    if (!strcmp(line, "host"))
        return *v ? set_once(&f->host, v) : EBADMSG;
    if (!strcmp(line, "from"))
        return set_once(&f->sender, v);
    if (!strcmp(line, "envid"))
        return set_once(&f->envid, v);
    if (!strcmp(line, "ret"))
        return set_once(&f->ret, v);
    if (!strcmp(line, "rcpt"))
        return parse_rcpt(f, v);
    return EBADMSG; /* version 1 has no other keys */
}

/* read_envelope - bytes from the start of the file through the empty line that ends the
 * envelope; *len gets the envelope's length with that line. */
static int read_envelope(int fd, buf *b, size_t *len)
{
    for (;;) {
        if (b->len >= SPOOL_MAX_ENVELOPE)
            return EBADMSG;
        int rc = buf_reserve(b, SPOOL_READ_CHUNK);
        if (rc)
            return rc;
        ssize_t r = pread(fd, b->data + b->len, SPOOL_READ_CHUNK, (off_t)b->len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            return EBADMSG;
        size_t from = b->len ? b->len - 1 : 0;
        b->len += (size_t)r;
        for (size_t i = from; i + 1 < b->len; i++)
            if (b->data[i] == '\n' && b->data[i + 1] == '\n') {
                *len = i + 2;
                return 0;
            }
    }
}

/* read_status - the "done <index>" records after the content. A line cut short by a crash
 * during its append, or unreadable, counts as not written: delivery then finds the copy
 * already there (EEXIST) and records it again. */
static int read_status(int fd, ims_spool_file *f)
{
    uint64_t from = f->content_off + f->content_len;
    if (f->file_size <= from)
        return 0;
    size_t n = (size_t)(f->file_size - from);
    if (n > SPOOL_MAX_ENVELOPE)
        n = SPOOL_MAX_ENVELOPE;
    char *p = malloc(n + 1);
    if (!p)
        return ENOMEM;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(from + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    p[got] = 0;
    for (char *line = p, *nl; (nl = memchr(line, '\n', got - (size_t)(line - p))); line = nl + 1) {
        *nl = 0;
        uint64_t idx;
        if (!strncmp(line, "done ", 5) && !parse_uint(line + 5, &idx) && idx < f->nrcpt)
            f->rcpts[idx].done = true;
    }
    free(p);
    return 0;
}

int ims_spool_file_read(int fd, ims_spool_file *f)
{
    memset(f, 0, sizeof *f);
    buf b = BUF_INIT;
    size_t envlen = 0;
    int rc = read_envelope(fd, &b, &envlen);
    if (!rc) {
        b.data[envlen - 1] = 0; /* the envelope as one string, without its empty line */
        char *save = NULL, *line = strtok_r((char *)b.data, "\n", &save);
        if (!line || strcmp(line, SPOOL_MAGIC))
            rc = EBADMSG;
        bool have_time = false, have_size = false;
        while (!rc && (line = strtok_r(NULL, "\n", &save)))
            rc = parse_line(f, line, &have_time, &have_size);
        if (!rc && (!f->id[0] || !have_time || !have_size || !f->client_ip || !f->helo ||
                    !f->host || !f->sender || !f->nrcpt))
            rc = EBADMSG;
    }
    buf_free(&b);
    struct stat st;
    if (!rc && fstat(fd, &st))
        rc = errno;
    if (!rc) {
        f->content_off = envlen;
        f->file_size = (uint64_t)st.st_size;
        if (f->file_size < f->content_off || f->file_size - f->content_off < f->content_len)
            rc = EBADMSG; /* cut short */
    }
    if (!rc)
        rc = read_status(fd, f);
    if (rc)
        ims_spool_file_free(f);
    return rc;
}

/* --- open and recovery ----------------------------------------------------------------- */

static bool is_regular(int dirfd, const struct dirent *d)
{
    if (d->d_type == DT_REG)
        return true;
    if (d->d_type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* clean_work - delete every file in Work: none of them was acknowledged. */
static size_t clean_work(ims_spool *sp)
{
    int fd = openat(sp->work_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    size_t removed = 0;
    struct dirent *d;
    while ((d = readdir(dir)))
        if (is_regular(sp->work_fd, d) && unlinkat(sp->work_fd, d->d_name, 0) == 0)
            removed++;
    closedir(dir);
    return removed;
}

typedef struct id_list {
    char (*ids)[IMS_QUEUE_ID_LEN + 1];
    size_t n, cap;
} id_list;

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* check_in_file - true when In/<name> is a spool file of ours whose id is its name. */
static bool check_in_file(ims_spool *sp, const char *name, int *err)
{
    *err = 0;
    if (!ims_spool_id_valid(name))
        return false;
    int fd = openat(sp->in_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return false;
    }
    ims_spool_file f;
    int rc = ims_spool_file_read(fd, &f);
    close(fd);
    if (rc) {
        if (rc != EBADMSG)
            *err = rc;
        return false;
    }
    bool ok = !strcmp(f.id, name);
    ims_spool_file_free(&f);
    return ok;
}

/* scan_in - the acknowledged messages in In (sorted: ids start with the time), and files that
 * are not spool files moved to In/Archive. */
static int scan_in(ims_spool *sp, id_list *out, size_t *archived)
{
    int fd = openat(sp->in_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        int rc = errno;
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int archive_fd = openat(sp->in_fd, "Archive", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    struct dirent *d;
    while (!rc && (d = readdir(dir))) {
        if (!is_regular(sp->in_fd, d))
            continue;
        int err;
        if (check_in_file(sp, d->d_name, &err)) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 64;
                void *p = realloc(out->ids, cap * sizeof *out->ids);
                if (!p) {
                    rc = ENOMEM;
                    break;
                }
                out->ids = p;
                out->cap = cap;
            }
            memcpy(out->ids[out->n++], d->d_name, IMS_QUEUE_ID_LEN + 1);
            continue;
        }
        if (err) {
            /* Unreadable now (a permission, an I/O error): leave it where it is. */
            ims_log_event(sp->log, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                          "Unable to read the spool file %s/In/%s: %s", sp->root, d->d_name,
                          strerror(err));
            continue;
        }
        int mv = archive_fd < 0                                          ? errno
                 : renameat(sp->in_fd, d->d_name, archive_fd, d->d_name) ? errno
                                                                         : 0;
        if (!mv)
            (*archived)++;
        ims_log_event(sp->log, IMS_EV_SPOOL_ARCHIVED, IMS_CAT_MESSAGE_ARCHIVAL, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      mv ? "The file %s/In/%s is not a spool file this service can read; "
                           "moving it to In/Archive failed: %s"
                         : "The file %s/In/%s is not a spool file this service can read; "
                           "it was moved to In/Archive%s",
                      sp->root, d->d_name, mv ? strerror(mv) : "");
    }
    closedir(dir);
    if (archive_fd >= 0) {
        if (*archived)
            fsync(archive_fd);
        close(archive_fd);
    }
    if (!rc && out->n)
        qsort(out->ids, out->n, sizeof *out->ids, id_cmp);
    return rc;
}

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
    sp->in_fd = sp->work_fd = sp->efd = -1;
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
    if (opt->host) {
        snprintf(sp->host, sizeof sp->host, "%s", opt->host);
    } else if (gethostname(sp->host, sizeof sp->host - 1)) {
        snprintf(sp->host, sizeof sp->host, "localhost");
    }
    if (!field_ok(sp->host, false))
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
    sp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sp->efd < 0)
        return errno;
    if (opt->tracking_dir && (rc = ims_tracking_open(opt->tracking_dir, &sp->tracking)))
        return rc;
    return ims_pool_start(opt->io_threads ? opt->io_threads : IMS_SPOOL_IO_THREADS, &sp->pool);
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
    id_list ids = {0};
    size_t removed = 0, archived = 0;
    if (!rc) {
        removed = clean_work(sp);
        rc = scan_in(sp, &ids, &archived);
    }
    if (!rc && opt->mts_in) {
        ims_deliver_config dc = {
            .root_dir = root_dir,
            .mts_in = opt->mts_in,
            .archive = opt->archive,
            .retry_min_ms = opt->retry_min_ms ? opt->retry_min_ms : IMS_SPOOL_RETRY_MIN_MS,
            .retry_max_ms = opt->retry_max_ms ? opt->retry_max_ms : IMS_SPOOL_RETRY_MAX_MS,
            .tracking = sp->tracking,
            .pool = sp->pool,
            .event = queue_event,
            .event_arg = sp,
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
