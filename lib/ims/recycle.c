/* recycle.c - spool files reused: a finished message's file waits in Work, emptied, for a new
 * message, because creating a file costs more than reusing one (on ext4 without a journal the
 * inode allocator skips, one by one, every inode freed in the last minutes). */
#include "ims/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct ims_recycler {
    int work_fd; /* the caller's; not closed here */
    pthread_mutex_t lock;
    unsigned *free; /* names (IMS_RECYCLE_PREFIX + number) of the files ready for reuse */
    size_t nfree, max;
    unsigned next; /* the number of the next name */
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
    if (!r || !(r->free = calloc(max ? max : 1, sizeof *r->free))) {
        free(r);
        return ENOMEM;
    }
    r->work_fd = work_fd;
    r->max = max;
    pthread_mutex_init(&r->lock, NULL);
    *out = r;
    return 0;
}

void ims_recycler_free(ims_recycler *r)
{
    if (!r)
        return;
    /* A stopped spool leaves Work empty, as an administrator expects of it. */
    for (size_t i = 0; i < r->nfree; i++) {
        char name[IMS_RECYCLE_NAME];
        recycle_name(r->free[i], name);
        unlinkat(r->work_fd, name, 0);
    }
    pthread_mutex_destroy(&r->lock);
    free(r->free);
    free(r);
}

int ims_recycler_reserve(ims_recycler *r, char name[IMS_RECYCLE_NAME])
{
    if (!r)
        return ENOSPC;
    pthread_mutex_lock(&r->lock);
    bool room = r->nfree < r->max;
    unsigned n = r->next++;
    pthread_mutex_unlock(&r->lock);
    if (!room)
        return ENOSPC;
    recycle_name(n, name);
    return 0;
}

void ims_recycler_put(ims_recycler *r, int fd, const char *name)
{
    /* Emptied now, not at reuse: a big message's blocks are not kept for an unknown time. */
    unsigned n = 0;
    bool ok = sscanf(name, IMS_RECYCLE_PREFIX "%u", &n) == 1 && ftruncate(fd, 0) == 0;
    pthread_mutex_lock(&r->lock);
    ok = ok && r->nfree < r->max;
    if (ok) {
        r->free[r->nfree++] = n;
        r->kept++;
    }
    pthread_mutex_unlock(&r->lock);
    if (!ok)
        unlinkat(r->work_fd, name, 0);
}

int ims_recycler_take(ims_recycler *r, char name[IMS_RECYCLE_NAME])
{
    if (!r)
        return -1;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        bool any = r->nfree > 0;
        unsigned n = any ? r->free[--r->nfree] : 0;
        if (any)
            r->reused++;
        pthread_mutex_unlock(&r->lock);
        if (!any)
            return -1;
        recycle_name(n, name);
        /* O_TRUNC: it was emptied when put, but nothing else in Work is trusted either. */
        int fd = openat(r->work_fd, name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0)
            return fd;
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
