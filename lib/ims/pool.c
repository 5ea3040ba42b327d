/* pool.c - the I/O pool: a few threads that run batches of jobs (file writes, fdatasyncs)
 * together, so that the spool's and delivery's syncs overlap instead of queueing. */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

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

/* fs_left_fn - the per-file syncs left over by ims_pool_sync's file-system sync (marked by
 * errs[i] == -1), in the pool. */
static void fs_left_fn(void *arg, size_t i)
{
    struct sync_args *a = arg;
    if (a->errs[i] == -1)
        sync_fn(arg, i);
}

/* mark_here - errs[i] = -2 for the fds on dev's file system, -1 for the others (a failed
 * fstat too: its own sync reports the error). Returns how many are on dev. */
static size_t mark_here(dev_t dev, const int *fds, int *errs, size_t n)
{
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        bool here = fds[i] >= 0 && fstat(fds[i], &st) == 0 && st.st_dev == dev;
        errs[i] = here ? -2 : -1;
        same += here;
    }
    return same;
}

bool ims_pool_sync(ims_sync_pool *p, int anchor, const int *fds, int *errs, size_t n,
                   bool data_only)
{
    struct sync_args a = {fds, errs, data_only};
    struct stat ast;
    if (anchor < 0 || n < IMS_POOL_SYNCFS_MIN || fstat(anchor, &ast)) {
        ims_pool_run(p, n, sync_fn, &a);
        return false;
    }
    /* Those on anchor's file system get one syncfs; a file elsewhere (a Maildir on another
     * mount) its own sync. A failed fstat is synced by itself, which reports the error. */
    size_t same = mark_here(ast.st_dev, fds, errs, n);
    if (same < IMS_POOL_SYNCFS_MIN) {
        ims_pool_run(p, n, sync_fn, &a);
        return false;
    }
    /* syncfs reports every write-back error of the file system since the last syncfs through
     * the same open file, so anchor must stay open for its user's life: then no error is
     * missed between rounds (Linux 5.8 and later). */
    int err = syncfs(anchor) ? errno : 0;
    for (size_t i = 0; i < n; i++)
        if (errs[i] == -2)
            errs[i] = err;
    if (same < n)
        ims_pool_run(p, n, fs_left_fn, &a);
    return err == 0;
}

bool ims_pool_sync_shared(ims_sync_pool *p, ims_recycler *r, unsigned share_ms, int anchor,
                          const int *fds, int *errs, size_t n, bool data_only)
{
    struct stat ast;
    if (!r || anchor < 0 || !ims_recycler_same_fs(r, anchor) || fstat(anchor, &ast))
        return ims_pool_sync(p, anchor, fds, errs, n, data_only);
    struct sync_args a = {fds, errs, data_only};
    size_t same = mark_here(ast.st_dev, fds, errs, n);
    int err = 0;
    bool shared = ims_recycler_wait_covered(r, ims_recycler_mark(r), share_ms);
    if (!shared) {
        uint64_t seq = ims_recycler_sync_begin(r);
        err = syncfs(anchor) ? errno : 0;
        ims_recycler_sync_end(r, seq, !err);
    }
    /* A sync that covered the files reports a write-back error only to its own caller; the
     * file's own wait reports it to us (and waits for nothing more). */
    for (size_t i = 0; i < n; i++)
        if (errs[i] == -2)
            errs[i] = err                                                          ? err
                      : sync_file_range(fds[i], 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE) ? errno
                                                                                   : 0;
    if (same < n)
        ims_pool_run(p, n, fs_left_fn, &a);
    return err == 0;
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
