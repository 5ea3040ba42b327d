/* recycle.c - spool files reused: a finished message's file waits in Work for a new message,
 * because creating a file costs more than reusing one (on ext4 without a journal the inode
 * allocator skips, one by one, every inode freed in the last minutes); and the sequence of
 * In's fsyncs, which tells when a file's leaving In is durable. */
#include "ims/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct recycle_slot {
    unsigned n;    /* the name's number */
    uint64_t need; /* pending: the first In sync that makes its leaving In durable */
    uint64_t size; /* the file's size: a reuse cuts what it does not overwrite */
} recycle_slot;

struct ims_recycler {
    int work_fd; /* the caller's; not closed here */
    dev_t dev;   /* work_fd's file system (read once: it cannot change) */
    bool have_dev;
    pthread_mutex_t lock;
    recycle_slot *pending; /* moved out of In, not yet known durably gone from there */
    recycle_slot *free;    /* ready for reuse */
    size_t npending, nfree, max;
    unsigned next;            /* the number of the next name */
    uint64_t started, synced; /* In syncs begun; the latest finished with success */
    /* When a sync fails it may have reported, to its caller alone, the error of any write
     * made before it ended; those are covered by no other sync. failed: the sequence number
     * begun last when that happened, so a mark at or below it is never covered. */
    uint64_t failed;
    pthread_cond_t synced_cv; /* broadcast at every successful end */
    /* When the latest commit round's sync began (monotonic; had_round: one has): only those
     * are worth waiting for. Another writer's own syncs do not say that mail comes in, and
     * counting them made each of its rounds wait out the whole share time for nobody once
     * mail had stopped (the outbound queue's, one connection's next message behind it). */
    struct timespec last_begin;
    bool had_round;
    uint64_t reused, kept;
};

static void recycle_name(unsigned n, char name[IMS_RECYCLE_NAME])
{
    snprintf(name, IMS_RECYCLE_NAME, IMS_RECYCLE_PREFIX "%u", n);
}

int ims_recycler_new(int work_fd, size_t max, ims_recycler **out)
{
    *out = NULL;
    ims_recycler *r = calloc(1, sizeof *r);
    if (r) {
        r->pending = calloc(max ? max : 1, sizeof *r->pending);
        r->free = calloc(max ? max : 1, sizeof *r->free);
    }
    if (!r || !r->pending || !r->free) {
        if (r) {
            free(r->pending);
            free(r->free);
        }
        free(r);
        return ENOMEM;
    }
    r->work_fd = work_fd;
    struct stat st;
    r->have_dev = fstat(work_fd, &st) == 0;
    r->dev = st.st_dev;
    r->max = max;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->synced_cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = r;
    return 0;
}

void ims_recycler_free(ims_recycler *r)
{
    if (!r)
        return;
    /* A stopped spool leaves Work empty, as an administrator expects of it. */
    char name[IMS_RECYCLE_NAME];
    for (size_t i = 0; i < r->nfree; i++) {
        recycle_name(r->free[i].n, name);
        unlinkat(r->work_fd, name, 0);
    }
    for (size_t i = 0; i < r->npending; i++) {
        recycle_name(r->pending[i].n, name);
        unlinkat(r->work_fd, name, 0);
    }
    pthread_cond_destroy(&r->synced_cv);
    pthread_mutex_destroy(&r->lock);
    free(r->pending);
    free(r->free);
    free(r);
}

int ims_recycler_reserve(ims_recycler *r, char name[IMS_RECYCLE_NAME])
{
    if (!r)
        return ENOSPC;
    pthread_mutex_lock(&r->lock);
    bool room = r->npending + r->nfree < r->max;
    unsigned n = r->next++;
    pthread_mutex_unlock(&r->lock);
    if (!room)
        return ENOSPC;
    recycle_name(n, name);
    return 0;
}

void ims_recycler_put(ims_recycler *r, const char *name, uint64_t size)
{
    unsigned n = 0;
    bool ok = sscanf(name, IMS_RECYCLE_PREFIX "%u", &n) == 1 && size <= IMS_RECYCLE_KEEP_BYTES;
    pthread_mutex_lock(&r->lock);
    ok = ok && r->npending + r->nfree < r->max;
    if (ok)
        r->pending[r->npending++] = (recycle_slot){n, r->started + 1, size};
    pthread_mutex_unlock(&r->lock);
    if (!ok)
        unlinkat(r->work_fd, name, 0);
}

int ims_recycler_adopt(ims_recycler *r, int dir_fd, const char *name)
{
    if (!r)
        return ENOSPC;
    /* The size must be exact, records appended since the file was read included: a reuse
     * cuts only what lies past it. */
    struct stat st;
    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW))
        return errno;
    if (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_size > IMS_RECYCLE_KEEP_BYTES)
        return EFBIG;
    char w[IMS_RECYCLE_NAME];
    int rc = ims_recycler_reserve(r, w);
    if (rc)
        return rc;
    if (renameat(dir_fd, name, r->work_fd, w))
        return errno;
    ims_recycler_put(r, w, (uint64_t)st.st_size);
    return 0;
}

uint64_t ims_recycler_mark(ims_recycler *r)
{
    if (!r)
        return UINT64_MAX;
    pthread_mutex_lock(&r->lock);
    uint64_t need = r->started + 1;
    pthread_mutex_unlock(&r->lock);
    return need;
}

/* covered - a sync numbered need or later succeeded, and no failure ended after the mark.
 * Lock held. */
static bool covered(const ims_recycler *r, uint64_t need)
{
    return r->synced >= need && r->failed < need;
}

bool ims_recycler_covered(ims_recycler *r, uint64_t need)
{
    if (!r)
        return false;
    pthread_mutex_lock(&r->lock);
    bool done = covered(r, need);
    pthread_mutex_unlock(&r->lock);
    return done;
}

bool ims_recycler_wait_covered(ims_recycler *r, uint64_t need, unsigned ms)
{
    if (!r)
        return false;
    struct timespec at, now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    at = now;
    at.tv_sec += ms / 1000;
    at.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_nsec -= 1000000000L;
        at.tv_sec++;
    }
    pthread_mutex_lock(&r->lock);
    /* Waiting is worth it only while a sync that can cover need may still come, and only
     * while commit rounds come often (one began within ms): when mail stops coming in, nobody
     * else is about to sync, and the caller had better sync at once. */
    int64_t since = (int64_t)(now.tv_sec - r->last_begin.tv_sec) * 1000 +
                    (now.tv_nsec - r->last_begin.tv_nsec) / 1000000;
    bool busy = r->had_round && since <= (int64_t)ms;
    while (busy && !covered(r, need) && r->failed < need &&
           pthread_cond_timedwait(&r->synced_cv, &r->lock, &at) == 0)
        ;
    bool done = covered(r, need);
    pthread_mutex_unlock(&r->lock);
    return done;
}

bool ims_recycler_same_fs(ims_recycler *r, int fd)
{
    struct stat b;
    return r && r->have_dev && fstat(fd, &b) == 0 && b.st_dev == r->dev;
}

static uint64_t sync_begin(ims_recycler *r, bool round)
{
    if (!r)
        return 0;
    struct timespec now;
    if (round)
        clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&r->lock);
    uint64_t seq = ++r->started;
    if (round) {
        r->last_begin = now;
        r->had_round = true;
    }
    pthread_mutex_unlock(&r->lock);
    return seq;
}

uint64_t ims_recycler_sync_begin(ims_recycler *r)
{
    return sync_begin(r, false);
}

uint64_t ims_recycler_round_begin(ims_recycler *r)
{
    return sync_begin(r, true);
}

void ims_recycler_sync_end(ims_recycler *r, uint64_t seq, bool ok)
{
    if (!r)
        return;
    if (!ok) { /* the pending files wait for a sync that succeeds */
        pthread_mutex_lock(&r->lock);
        (void)seq;
        r->failed = r->started;
        pthread_cond_broadcast(&r->synced_cv);
        pthread_mutex_unlock(&r->lock);
        return;
    }
    /* What is now durably out of In is free. Not emptied: a reuse overwrites it and cuts the
     * rest (truncating costs ext4 a block release here and a forced allocation at close). */
    pthread_mutex_lock(&r->lock);
    if (seq > r->synced)
        r->synced = seq;
    for (size_t i = 0; i < r->npending;)
        if (covered(r, r->pending[i].need)) {
            r->free[r->nfree++] = r->pending[i];
            r->pending[i] = r->pending[--r->npending];
            r->kept++;
        } else {
            i++;
        }
    pthread_cond_broadcast(&r->synced_cv);
    pthread_mutex_unlock(&r->lock);
}

int ims_recycler_take(ims_recycler *r, char name[IMS_RECYCLE_NAME], uint64_t *size)
{
    if (!r)
        return -1;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        bool any = r->nfree > 0;
        recycle_slot sl = any ? r->free[--r->nfree] : (recycle_slot){0};
        if (any)
            r->reused++;
        pthread_mutex_unlock(&r->lock);
        if (!any)
            return -1;
        recycle_name(sl.n, name);
        int fd = openat(r->work_fd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            *size = sl.size;
            return fd;
        }
        /* Gone or unusable: try the next, and leave this one to the start-up clean. */
    }
}

void ims_recycler_stats(ims_recycler *r, uint64_t *kept, uint64_t *reused)
{
    pthread_mutex_lock(&r->lock);
    *kept = r->kept;
    *reused = r->reused;
    pthread_mutex_unlock(&r->lock);
}
