/* spool.c - benchmark of the inbound spool's group commit: messages/s made durable with N
 * concurrent submitters that each wait for their "250", against one sync per message. */
#include "base/base.h"
#include "ims/ims.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define BENCH_DEFAULT_SECONDS 2.0 /* per row */
#define BENCH_MAX_THREADS 100
#define BENCH_MAX_SAMPLES 200000 /* latencies kept per row, for the percentiles */
#define BENCH_POLL_MS 10

static const unsigned bench_threads[] = {1, 20, 100};
static const size_t bench_sizes[] = {4096, 65536};

/* dev_flushes - flush requests the block device under path completed so far (field 16 of
 * /sys/dev/block/M:m/stat, kernel 5.5 and later), or -1. The whole device's: other writers on
 * it count too. */
static long long dev_flushes(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        return -1;
    char p[128];
    snprintf(p, sizeof p, "/sys/dev/block/%u:%u/stat", major(st.st_dev), minor(st.st_dev));
    FILE *f = fopen(p, "r");
    if (!f)
        return -1;
    long long v[17];
    int n = 0;
    while (n < 17 && fscanf(f, "%lld", &v[n]) == 1)
        n++;
    fclose(f);
    return n == 17 ? v[15] : -1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* One row's shared state. */
struct run {
    ims_spool *sp; /* NULL: the per-message mode */
    const char *root;
    const char *body;
    size_t size;
    int64_t stop_at;
    atomic_uint_fast64_t done, syncs, ids;
    atomic_uint live;     /* submitters still running */
    pthread_mutex_t lock; /* guards the samples */
    int64_t *lat;
    size_t nlat;
    atomic_bool failed;
};

/* One submitter, waiting for its message's callback as an SMTP session waits to send 250. */
struct submitter {
    struct run *run;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool acked;
    int err;
    int64_t sent;
};

static void add_sample(struct run *r, int64_t ns)
{
    pthread_mutex_lock(&r->lock);
    if (r->nlat < BENCH_MAX_SAMPLES)
        r->lat[r->nlat++] = ns;
    pthread_mutex_unlock(&r->lock);
}

static void on_done(void *arg, int err, const char *qid)
{
    (void)qid;
    struct submitter *s = arg;
    pthread_mutex_lock(&s->lock);
    s->acked = true;
    s->err = err;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *group_thread(void *arg)
{
    struct submitter *s = arg;
    struct run *r = s->run;
    ims_rcpt rcpt = {"bench@ims.test", "/nonexistent/maildir", NULL, NULL};
    ims_envelope env = {.sender = "sender@example.org",
                        .rcpts = &rcpt,
                        .nrcpt = 1,
                        .client_ip = "127.0.0.1",
                        .helo = "bench"};
    while (now_ns() < r->stop_at && !r->failed) {
        s->acked = false;
        s->sent = now_ns();
        if (ims_spool_submit(r->sp, &env, r->body, r->size, on_done, s)) {
            r->failed = true;
            break;
        }
        pthread_mutex_lock(&s->lock);
        while (!s->acked)
            pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        if (s->err) {
            r->failed = true;
            break;
        }
        add_sample(r, now_ns() - s->sent);
        r->done++;
    }
    r->live--;
    return NULL;
}

/* per_message_thread - the classic way: each message written, fdatasync'd, renamed into In
 * and In fsync'd by its own session, with no batching between sessions. */
static void *per_message_thread(void *arg)
{
    struct submitter *s = arg;
    struct run *r = s->run;
    char work[4096], in[4096], name[64], from[4200], to[4200];
    snprintf(work, sizeof work, "%s/Work", r->root);
    snprintf(in, sizeof in, "%s/In", r->root);
    int in_fd = open(in, O_RDONLY | O_DIRECTORY);
    while (in_fd >= 0 && now_ns() < r->stop_at && !r->failed) {
        int64_t t0 = now_ns();
        snprintf(name, sizeof name, "m%llu", (unsigned long long)r->ids++);
        snprintf(from, sizeof from, "%s/%s", work, name);
        snprintf(to, sizeof to, "%s/%s", in, name);
        int fd = open(from, O_WRONLY | O_CREAT | O_EXCL, 0600);
        bool ok = fd >= 0 && write(fd, r->body, r->size) == (ssize_t)r->size && fdatasync(fd) == 0;
        if (fd >= 0)
            close(fd);
        ok = ok && rename(from, to) == 0 && fsync(in_fd) == 0;
        if (!ok) {
            r->failed = true;
            break;
        }
        r->syncs += 2;
        add_sample(r, now_ns() - t0);
        r->done++;
    }
    if (in_fd >= 0)
        close(in_fd);
    return NULL;
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_ms(const int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1));
    return (double)v[i] / 1e6;
}

/* bench_row - one (mode, threads, size) row in a fresh RootDir under base. */
static int bench_row(const char *base, bool group, unsigned nthreads, size_t size, double secs,
                     const char *body)
{
    char root[4096];
    snprintf(root, sizeof root, "%s/spool-bench.XXXXXX", base);
    if (!mkdtemp(root)) {
        fprintf(stderr, "mkdtemp %s: %s\n", root, strerror(errno));
        return 1;
    }
    struct run r = {.root = root, .body = body, .size = size};
    pthread_mutex_init(&r.lock, NULL);
    r.lat = malloc(BENCH_MAX_SAMPLES * sizeof *r.lat);
    int rc = 0;
    if (group) {
        ims_spool_options o = {.host = "bench.test"};
        if ((rc = ims_spool_open(root, &o, &r.sp))) {
            fprintf(stderr, "ims_spool_open %s: %s\n", root, strerror(rc));
            return 1;
        }
    } else {
        char p[4200];
        snprintf(p, sizeof p, "%s/Work", root);
        mkdir(p, 0750);
        snprintf(p, sizeof p, "%s/In", root);
        mkdir(p, 0750);
    }
    struct submitter subs[BENCH_MAX_THREADS];
    pthread_t th[BENCH_MAX_THREADS];
    long long flushes0 = dev_flushes(root);
    int64_t t0 = now_ns();
    r.stop_at = t0 + (int64_t)(secs * 1e9);
    r.live = nthreads;
    for (unsigned i = 0; i < nthreads; i++) {
        subs[i] = (struct submitter){.run = &r};
        pthread_mutex_init(&subs[i].lock, NULL);
        pthread_cond_init(&subs[i].cond, NULL);
        pthread_create(&th[i], NULL, group ? group_thread : per_message_thread, &subs[i]);
    }
    if (group) {
        /* The caller's event loop: callbacks run here, as in imsd, until every submitter
         * has had its last answer and gone. */
        while (r.live) {
            struct pollfd p = {ims_spool_fd(r.sp), POLLIN, 0};
            poll(&p, 1, BENCH_POLL_MS);
            ims_spool_dispatch(r.sp);
        }
    }
    for (unsigned i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    int64_t elapsed = now_ns() - t0;
    long long flushes1 = dev_flushes(root);
    uint64_t file_syncs = 0, dir_syncs = 0, rounds = 0;
    if (group) {
        ims_spool_stats st;
        ims_spool_get_stats(r.sp, &st);
        ims_spool_close(r.sp);
        file_syncs = st.file_syncs;
        dir_syncs = st.dir_syncs;
        rounds = st.rounds;
    } else {
        file_syncs = r.syncs / 2;
        dir_syncs = r.syncs / 2;
        rounds = r.done;
    }
    qsort(r.lat, r.nlat, sizeof *r.lat, cmp_i64);
    double n = (double)(r.done ? r.done : 1);
    char flushes[32] = "n/a";
    if (flushes0 >= 0 && flushes1 >= flushes0)
        snprintf(flushes, sizeof flushes, "%.3f", (double)(flushes1 - flushes0) / n);
    printf("%-12s %7u %6zu %8llu %9.0f %10.3f %9.3f %9s %9.1f %8.2f %8.2f%s\n",
           group ? "group" : "per-message", nthreads, size / 1024, (unsigned long long)r.done,
           (double)r.done / ((double)elapsed / 1e9), (double)file_syncs / n, (double)dir_syncs / n,
           flushes, rounds ? (double)r.done / (double)rounds : 0.0, pct_ms(r.lat, r.nlat, 0.5),
           pct_ms(r.lat, r.nlat, 0.99), r.failed ? "  (FAILED)" : "");
    fflush(stdout);
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_mutex_destroy(&subs[i].lock);
        pthread_cond_destroy(&subs[i].cond);
    }
    free(r.lat);
    pthread_mutex_destroy(&r.lock);
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    /* The removals' write-back and discards belong to this row, not to the next one. */
    int bfd = open(base, O_RDONLY | O_DIRECTORY);
    if (bfd >= 0) {
        syncfs(bfd);
        close(bfd);
    }
    return r.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    double secs = argc > 2 ? atof(argv[2]) : BENCH_DEFAULT_SECONDS;
    if (secs <= 0 || argc > 3) {
        fprintf(stderr, "usage: %s [DIR] [SECONDS]\n", argv[0]);
        return 2;
    }
    printf("# %s %s %.1f   (each row: a fresh RootDir under DIR, %.1f s)\n", argv[0], base, secs,
           secs);
    printf("# group: ims_spool_submit, each submitter waits for its callback before the next\n"
           "# per-message: each submitter writes, fdatasyncs, renames into In, fsyncs In\n");
    printf("# fdatasync/m, dirsync/m: sync calls per message; flushes/m: the device's cache\n"
           "# flushes per message (all writers on that device); p50/p99: submit to callback\n");
    printf("%-12s %7s %6s %8s %9s %10s %9s %9s %9s %8s %8s\n", "mode", "threads", "KiB", "messages",
           "msg/s", "fdatasync/m", "dirsync/m", "flushes/m", "per round", "p50 ms", "p99 ms");
    size_t maxsize = bench_sizes[sizeof bench_sizes / sizeof bench_sizes[0] - 1];
    char *body = malloc(maxsize);
    for (size_t i = 0; i < maxsize; i++)
        body[i] = (i % 78 == 77) ? '\n' : (char)('a' + i % 26);
    int failed = 0;
    for (size_t s = 0; s < sizeof bench_sizes / sizeof bench_sizes[0]; s++)
        for (size_t t = 0; t < sizeof bench_threads / sizeof bench_threads[0]; t++)
            for (int group = 1; group >= 0; group--)
                failed |= bench_row(base, group, bench_threads[t], bench_sizes[s], secs, body);
    free(body);
    return failed;
}
