/* auth.c - password checks off the event loop: a yescrypt hash costs tens of milliseconds
 * and megabytes, so a few worker threads make them, a bounded queue holds what waits, and
 * the answers come back to the loop through a pipe. */
#include "imsd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtp/smtp.h"
#include "store/store.h"

typedef struct auth_job {
    struct auth_job *next;
    imsd_auth_done_fn done;
    void *arg;
    bool match;
    bool has_hash;
    size_t len;
    char hash[DIR_MAX_HASH + 1];
    char pass[SMTP_AUTH_PASS_MAX + 1];
} auth_job;

struct imsd_auth {
    pthread_mutex_t lock;
    pthread_cond_t work;
    auth_job *queue, **queue_tail; /* waiting for a thread */
    auth_job *done, **done_tail;   /* checked, waiting for the loop */
    size_t pending;                /* queued + running + done not yet dispatched */
    bool stop;
    pthread_t threads[IMSD_AUTH_THREADS];
    size_t nthreads;
    int pipe[2]; /* a byte per finished job wakes the loop */
    struct event *ev;
};

static void job_wipe_free(auth_job *j)
{
    smtp_wipe(j, sizeof *j);
    free(j);
}

static void *auth_worker(void *arg)
{
    imsd_auth *a = arg;
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (!a->queue && !a->stop)
            pthread_cond_wait(&a->work, &a->lock);
        if (a->stop)
            break;
        auth_job *j = a->queue;
        a->queue = j->next;
        if (!a->queue)
            a->queue_tail = &a->queue;
        pthread_mutex_unlock(&a->lock);
        /* An unknown account is checked against dir_password_verify's dummy hash: the same
         * work, so the same time, as a wrong password. */
        j->match =
            dir_password_verify(j->has_hash ? j->hash : NULL, j->pass, j->len) && j->has_hash;
        smtp_wipe(j->pass, sizeof j->pass);
        pthread_mutex_lock(&a->lock);
        j->next = NULL;
        *a->done_tail = j;
        a->done_tail = &j->next;
        char b = 1;
        ssize_t w = write(a->pipe[1], &b, 1); /* non-blocking: a full pipe is awake enough */
        (void)w;
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* auth_dispatch - on the loop: answer the finished checks. */
static void auth_dispatch(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    imsd_auth *a = arg;
    char drain[64];
    while (read((int)fd, drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&a->lock);
    auth_job *list = a->done;
    a->done = NULL;
    a->done_tail = &a->done;
    for (auth_job *j = list; j; j = j->next)
        a->pending--;
    pthread_mutex_unlock(&a->lock);
    while (list) {
        auth_job *j = list;
        list = j->next;
        j->done(j->arg, j->match ? IMSD_AUTH_MATCH : IMSD_AUTH_NO_MATCH);
        job_wipe_free(j);
    }
}

int imsd_auth_new(struct event_base *base, imsd_auth **out)
{
    *out = NULL;
    imsd_auth *a = calloc(1, sizeof *a);
    if (!a)
        return ENOMEM;
    a->queue_tail = &a->queue;
    a->done_tail = &a->done;
    a->pipe[0] = a->pipe[1] = -1;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->work, NULL);
    int e = pipe2(a->pipe, O_NONBLOCK | O_CLOEXEC) ? errno : 0;
    if (!e) {
        a->ev = event_new(base, a->pipe[0], EV_READ | EV_PERSIST, auth_dispatch, a);
        if (!a->ev || event_add(a->ev, NULL))
            e = ENOMEM;
    }
    for (size_t i = 0; !e && i < IMSD_AUTH_THREADS; i++) {
        e = pthread_create(&a->threads[i], NULL, auth_worker, a);
        if (!e)
            a->nthreads++;
    }
    if (e) {
        imsd_auth_free(a);
        return e;
    }
    *out = a;
    return 0;
}

int imsd_auth_check(imsd_auth *a, const char *hash, const char *pass, size_t len,
                    imsd_auth_done_fn done, void *arg)
{
    if (len > SMTP_AUTH_PASS_MAX || (hash && strlen(hash) > DIR_MAX_HASH))
        return EINVAL;
    auth_job *j = calloc(1, sizeof *j);
    if (!j)
        return ENOMEM;
    j->done = done;
    j->arg = arg;
    j->has_hash = hash && hash[0];
    if (j->has_hash)
        memcpy(j->hash, hash, strlen(hash) + 1);
    memcpy(j->pass, pass, len);
    j->len = len;
    pthread_mutex_lock(&a->lock);
    if (a->pending >= IMSD_AUTH_QUEUE_MAX) {
        pthread_mutex_unlock(&a->lock);
        job_wipe_free(j);
        return EAGAIN;
    }
    *a->queue_tail = j;
    a->queue_tail = &j->next;
    a->pending++;
    pthread_cond_signal(&a->work);
    pthread_mutex_unlock(&a->lock);
    return 0;
}

void imsd_auth_free(imsd_auth *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stop = true;
    pthread_cond_broadcast(&a->work);
    pthread_mutex_unlock(&a->lock);
    for (size_t i = 0; i < a->nthreads; i++)
        pthread_join(a->threads[i], NULL);
    /* Whoever waits is told, so that it can free what it holds for the answer. */
    auth_job *lists[2] = {a->done, a->queue};
    for (size_t l = 0; l < 2; l++)
        while (lists[l]) {
            auth_job *j = lists[l];
            lists[l] = j->next;
            j->done(j->arg, IMSD_AUTH_CANCELLED);
            job_wipe_free(j);
        }
    if (a->ev)
        event_free(a->ev);
    if (a->pipe[0] >= 0)
        close(a->pipe[0]);
    if (a->pipe[1] >= 0)
        close(a->pipe[1]);
    pthread_cond_destroy(&a->work);
    pthread_mutex_destroy(&a->lock);
    free(a);
}
