/* password.c - benchmark of dir_password_verify (lib/store): the time of one yescrypt check at
 * libcrypt's default cost for the right password, a wrong one and an unknown account (which
 * must cost the same), and the throughput of several threads verifying at once. */
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_DEFAULT_ROUNDS 20 /* verifies per row */
#define BENCH_MAX_ROUNDS 10000
#define BENCH_MAX_THREADS 16
#define BENCH_THREADS 2 /* the machine's cores, for the throughput row */

/* A hash of BENCH_RIGHT made by Python's crypt module at the default cost ("j9T"). */
#define BENCH_RIGHT "correct horse battery staple"
#define BENCH_HASH "$y$j9T$WBQN2m0Tn/8teyAGRFeyC0$l6ZBzu0x.ybXuTHvVJ4K.zt5J/cwjqaGEJjIqQ1Q42C"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* row - time rounds verifies of (hash, pw), check every result is want; mean, min, max. */
static int row(const char *what, const char *hash, const char *pw, bool want, int rounds)
{
    double sum = 0, min = 1e12, max = 0;
    for (int i = 0; i < rounds; i++) {
        double t0 = now_ms();
        bool got = dir_password_verify(hash, pw, strlen(pw));
        double dt = now_ms() - t0;
        if (got != want) {
            fprintf(stderr, "password: %s: got %d want %d\n", what, got, want);
            return 1;
        }
        sum += dt;
        min = dt < min ? dt : min;
        max = dt > max ? dt : max;
    }
    printf("%-34s %6d %9.2f %9.2f %9.2f\n", what, rounds, sum / rounds, min, max);
    return 0;
}

struct job {
    int rounds;
    bool ok;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    j->ok = true;
    for (int i = 0; i < j->rounds; i++)
        j->ok &= dir_password_verify(BENCH_HASH, BENCH_RIGHT, strlen(BENCH_RIGHT));
    return NULL;
}

/* parallel - n threads verifying at once: verifies per second over all of them. */
static int parallel(int n, int rounds)
{
    pthread_t t[BENCH_MAX_THREADS];
    struct job j[BENCH_MAX_THREADS];
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        j[i].rounds = rounds;
        if (pthread_create(&t[i], NULL, worker, &j[i])) {
            fprintf(stderr, "password: cannot start a thread\n");
            for (int k = 0; k < i; k++)
                pthread_join(t[k], NULL);
            return 1;
        }
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ok &= j[i].ok;
    }
    double dt = now_ms() - t0;
    if (!ok) {
        fprintf(stderr, "password: a parallel verify failed\n");
        return 1;
    }
    printf("%d threads: %d verifies in %.0f ms, %.1f verifies/s\n", n, n * rounds, dt,
           n * rounds / (dt / 1e3));
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : BENCH_DEFAULT_ROUNDS;
    if (rounds < 1 || rounds > BENCH_MAX_ROUNDS) {
        fprintf(stderr, "usage: password [ROUNDS (1..%d)]\n", BENCH_MAX_ROUNDS);
        return 2;
    }
    printf("%-34s %6s %9s %9s %9s\n", "dir_password_verify (ms)", "count", "mean", "min", "max");
    int rc = row("right password", BENCH_HASH, BENCH_RIGHT, true, rounds);
    if (!rc)
        rc = row("wrong password", BENCH_HASH, "correct horse battery stapler", false, rounds);
    if (!rc)
        rc = row("unknown account (NULL hash)", NULL, BENCH_RIGHT, false, rounds);
    if (!rc)
        rc = row("refused password (empty)", BENCH_HASH, "", false, rounds);
    if (!rc)
        rc = parallel(BENCH_THREADS, rounds);
    return rc;
}
