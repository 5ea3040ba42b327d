/* spool_test.c - unit tests of the inbound spool (group commit, recovery), delivery into
 * Maildirs through MTS-IN (exactly once, also across SIGKILL), and the tracking log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/spool_int.h"

#define HOST "ims.test"
#define WAIT_MS 30000 /* the longest any wait in these tests may take */

struct fx {
    char dir[64];
    char root[128];     /* RootDir */
    char mts_in[160];   /* the gateway's MTS-IN */
    char tracking[128]; /* Tracking.log */
    char alice[128], bob[128];
    ims_log log;
    char events[16384]; /* "id;" for each event */
    char last[1024];    /* the last event's text */
};

static void sink(void *arg, const ims_event *ev)
{
    struct fx *fx = arg;
    size_t n = strlen(fx->events);
    snprintf(fx->events + n, sizeof fx->events - n, "%u;", ev->id);
    snprintf(fx->last, sizeof fx->last, "%s", ev->text);
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static void make_maildir(const char *path)
{
    char p[256];
    assert_int_equal(base_mkdir_p(path, 0700), 0);
    const char *subs[] = {"cur", "new", "tmp"};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", path, subs[i]);
        assert_true(mkdir(p, 0700) == 0 || errno == EEXIST);
    }
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    strcpy(fx->dir, "/tmp/spool_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->root, sizeof fx->root, "%s/imcdata", fx->dir);
    snprintf(fx->mts_in, sizeof fx->mts_in, "%s/store/MSExchangeIMC/.MTS-IN", fx->dir);
    snprintf(fx->tracking, sizeof fx->tracking, "%s/Tracking.log", fx->dir);
    snprintf(fx->alice, sizeof fx->alice, "%s/store/alice", fx->dir);
    snprintf(fx->bob, sizeof fx->bob, "%s/store/bob", fx->dir);
    assert_int_equal(base_mkdir_p(fx->root, 0750), 0);
    make_maildir(fx->mts_in);
    make_maildir(fx->alice);
    make_maildir(fx->bob);
    fx->log.fn = sink;
    fx->log.arg = fx;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static ims_spool_options opts(struct fx *fx, bool deliver)
{
    ims_spool_options o = {.host = HOST, .log = &fx->log, .tracking_dir = fx->tracking};
    if (deliver) {
        o.mts_in = fx->mts_in;
        o.retry_min_ms = 20;
        o.retry_max_ms = 200;
    }
    return o;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* pump - poll the spool's descriptor and dispatch until cond holds (bounded). */
static bool pump(ims_spool *sp, bool (*cond)(ims_spool *, void *), void *arg)
{
    long deadline = now_ms() + WAIT_MS;
    while (!cond(sp, arg)) {
        if (now_ms() > deadline)
            return false;
        struct pollfd p = {ims_spool_fd(sp), POLLIN, 0};
        poll(&p, 1, 10);
        ims_spool_dispatch(sp);
    }
    return true;
}

/* delivered_all - every message committed so far has left the delivery queue, and at least
 * *want messages were finished. */
static bool delivered_all(ims_spool *sp, void *arg)
{
    ims_spool_dispatch(sp);
    ims_spool_stats st;
    ims_spool_get_stats(sp, &st);
    return st.queued == 0 && st.finished >= *(const uint64_t *)arg;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && e->d_type == DT_REG)
            n++;
    closedir(d);
    return n;
}

static size_t count_sub(const char *dir, const char *sub)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    return count_files(p);
}

/* only_file - the name of the single file in dir (asserts there is exactly one; folders such
 * as In/Archive do not count). */
static void only_file(const char *dir, char *name, size_t size)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && e->d_type != DT_DIR) {
            snprintf(name, size, "%s", e->d_name);
            n++;
        }
    closedir(d);
    if (n != 1)
        fail_msg("%s: got %zu files, want 1", dir, n);
}

static char *read_text(const char *path)
{
    buf b = BUF_INIT;
    int rc = base_read_file(path, 1 << 26, &b);
    if (rc)
        fail_msg("read %s: %s", path, strerror(rc));
    return buf_detach(&b, NULL);
}

/* file_size - the size of path in bytes. */
static uint64_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st))
        fail_msg("stat %s: %s", path, strerror(errno));
    return (uint64_t)st.st_size;
}

/* name_size - the value of the ",S=" field of a Maildir file name; fails when it has none. */
static uint64_t name_size(const char *name)
{
    const char *f = strstr(name, ",S=");
    if (!f)
        fail_msg("%s: no S= field", name);
    return strtoull(f + 3, NULL, 10);
}

/* crlf_to_lf - what delivery stores for content in[0..n): each CRLF as LF, all else as it is
 * (the reference the delivered bytes are compared with). Returns the length in out. */
static size_t crlf_to_lf(const char *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (!(in[i] == '\r' && i + 1 < n && in[i + 1] == '\n'))
            out[o++] = in[i];
    return o;
}

/* --- callbacks ------------------------------------------------------------------------- */

struct ack {
    int calls;
    int err;
    char id[IMS_QUEUE_ID_LEN + 1];
};

static void on_done(void *arg, int err, const char *qid)
{
    struct ack *a = arg;
    a->calls++;
    a->err = err;
    snprintf(a->id, sizeof a->id, "%s", qid);
}

struct acks {
    struct ack *v;
    size_t n;
};

static bool acks_done(ims_spool *sp, void *arg)
{
    (void)sp;
    struct acks *a = arg;
    for (size_t i = 0; i < a->n; i++)
        if (!a->v[i].calls)
            return false;
    return true;
}

/* --- envelopes and content ------------------------------------------------------------- */

static ims_envelope envelope(const ims_rcpt *r, size_t n, const char *sender)
{
    ims_envelope e = {.sender = sender,
                      .rcpts = r,
                      .nrcpt = n,
                      .client_ip = "192.0.2.1",
                      .helo = "client.example",
                      .time = 1714571107}; /* Wed, 1 May 2024 13:45:07 GMT */
    return e;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* content - a message whose bytes depend on seq, len bytes long. */
static char *content(unsigned seq, size_t len)
{
    char *p = malloc(len + 1);
    int h = snprintf(p, len + 1, "Subject: message %u\r\n\r\n", seq);
    for (size_t i = (size_t)h; i < len; i++)
        p[i] = (i % 64 == 63) ? '\n' : (char)('a' + (seq + i) % 26);
    p[len] = 0;
    return p;
}

/* spool_content - the content stored in In/<id> (or In/Archive/<id>), checked against want. */
static void check_spooled(const char *root, const char *sub, const char *id, const char *want,
                          size_t len, size_t nrcpt)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", root, sub, id);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    ims_spool_file f;
    assert_int_equal(ims_spool_file_read(fd, &f), 0);
    assert_true(f.has_sum);
    assert_int_equal(ims_spool_file_verify(fd, &f), 0);
    assert_string_equal(f.id, id);
    assert_int_equal(f.nrcpt, nrcpt);
    assert_int_equal(f.content_len, len);
    char *got = malloc(len + 1);
    assert_int_equal(pread(fd, got, len, (off_t)f.content_off), (ssize_t)len);
    if (memcmp(got, want, len))
        fail_msg("%s: the content differs from what was submitted", path);
    free(got);
    ims_spool_file_free(&f);
    close(fd);
}

/* --- tests ----------------------------------------------------------------------------- */

#define THREADS 8
#define PER_THREAD 40

struct submitter {
    ims_spool *sp;
    struct fx *fx;
    struct ack *acks;
    unsigned base;
    int rc;
};

static size_t msg_len(unsigned seq)
{
    return seq % 10 == 0 ? 70000 + seq : 200 + seq * 13; /* some pass the write buffer */
}

static void *submit_thread(void *arg)
{
    struct submitter *s = arg;
    ims_rcpt r[2] = {{"alice@ims.test", s->fx->alice, NULL, NULL},
                     {"bob@ims.test", s->fx->bob, "SUCCESS,FAILURE", "rfc822;bob@ims.test"}};
    ims_envelope env = envelope(r, 2, "sender@example.org");
    for (unsigned i = 0; i < PER_THREAD && !s->rc; i++) {
        unsigned seq = s->base + i;
        char *c = content(seq, msg_len(seq));
        s->rc = ims_spool_submit(s->sp, &env, c, msg_len(seq), on_done, &s->acks[i]);
        free(c);
    }
    return NULL;
}

/* submit_threads - THREADS submitters at once; file_syncs picks how rounds are made durable:
 * a sync per file, or one syncfs per round of two or more files. */
static void submit_threads(struct fx *fx, bool file_syncs)
{
    ims_spool_options o = opts(fx, false);
    o.file_syncs = file_syncs;
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    struct ack *acks = calloc(THREADS * PER_THREAD, sizeof *acks);
    struct submitter sub[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        sub[t] = (struct submitter){sp, fx, acks + t * PER_THREAD, (unsigned)t * 1000, 0};
        assert_int_equal(pthread_create(&th[t], NULL, submit_thread, &sub[t]), 0);
    }
    struct acks all = {acks, THREADS * PER_THREAD};
    bool ok = pump(sp, acks_done, &all);
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(sub[t].rc, 0);
    }
    assert_true(ok);
    ims_spool_dispatch(sp);
    for (int t = 0; t < THREADS; t++)
        for (unsigned i = 0; i < PER_THREAD; i++) {
            struct ack *a = &acks[t * PER_THREAD + i];
            if (a->calls != 1 || a->err)
                fail_msg("message %d/%u: got %d calls, err %d; want 1 call, err 0", t, i, a->calls,
                         a->err);
            unsigned seq = (unsigned)t * 1000 + i;
            char *c = content(seq, msg_len(seq));
            check_spooled(fx->root, "In", a->id, c, msg_len(seq), 2);
            free(c);
        }
    for (size_t i = 0; i < all.n; i++)
        for (size_t j = i + 1; j < all.n; j++)
            if (!strcmp(acks[i].id, acks[j].id))
                fail_msg("queue id %s given twice", acks[i].id);
    ims_spool_stats st;
    ims_spool_get_stats(sp, &st);
    assert_int_equal(st.committed, THREADS * PER_THREAD);
    assert_int_equal(st.failed, 0);
    /* Every round syncs its files: each by itself, then In; or all of it in one syncfs. */
    assert_int_equal(st.file_syncs, file_syncs ? THREADS * PER_THREAD : 0);
    assert_int_equal(st.dir_syncs, st.rounds);
    assert_true(st.rounds <= st.committed);
    char work[256];
    snprintf(work, sizeof work, "%s/Work", fx->root);
    assert_int_equal(count_files(work), 0);
    ims_spool_close(sp);
    /* Every callback ran once: close ran none again. */
    for (size_t i = 0; i < all.n; i++)
        assert_int_equal(acks[i].calls, 1);
    free(acks);
}

static void test_submit_threads(void **state)
{
    submit_threads(*state, false);
}

static void test_submit_threads_file_syncs(void **state)
{
    submit_threads(*state, true);
}

static bool recycled_at_least(ims_spool *sp, void *arg)
{
    ims_spool_stats st;
    ims_spool_get_stats(sp, &st);
    return st.files_recycled >= *(const uint64_t *)arg;
}

/* copy_flipped - src copied to dst with the byte at off changed. */
static void copy_flipped(const char *src, const char *dst, size_t off)
{
    char *t = read_text(src);
    size_t n = (size_t)file_size(src);
    assert_true(off < n);
    t[off] ^= 0x01;
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(t, 1, n, f), n);
    fclose(f);
    free(t);
}

/* verify_file - ims_spool_file_read, then ims_spool_file_verify, of path: the first error. */
static int verify_file(const char *path)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ims_spool_file f;
    int rc = ims_spool_file_read(fd, &f);
    if (!rc) {
        rc = ims_spool_file_verify(fd, &f);
        ims_spool_file_free(&f);
    }
    close(fd);
    return rc;
}

/* envelope_and_body - 0, EBADMSG or an errno value from ims_spool_file_verify_envelope of path,
 * and into *body_ok ims_spool_body_ok of its content as read into memory. */
static int envelope_and_body(const char *path, bool *body_ok)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ims_spool_file f;
    int rc = ims_spool_file_read(fd, &f);
    *body_ok = false;
    if (!rc) {
        rc = ims_spool_file_verify_envelope(fd, &f);
        char *b = malloc((size_t)f.content_len + 1);
        assert_non_null(b);
        assert_int_equal(pread(fd, b, (size_t)f.content_len, (off_t)f.content_off),
                         (ssize_t)f.content_len);
        *body_ok = ims_spool_body_ok(&f, b, (size_t)f.content_len);
        free(b);
        ims_spool_file_free(&f);
    }
    close(fd);
    return rc;
}

/* A changed byte anywhere in the envelope or the content fails the checksums; a file in In
 * that fails them at start (a commit caught by a crash between its rename and its sync) goes
 * to In/Archive with its own event and is not delivered. */
static void test_checksums(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    char *c = content(3, 3000);
    struct ack a = {0};
    assert_int_equal(ims_spool_submit(sp, &env, c, 3000, on_done, &a), 0);
    struct acks all = {&a, 1};
    assert_true(pump(sp, acks_done, &all));
    assert_int_equal(a.err, 0);
    ims_spool_close(sp);
    char path[512], bad[512];
    snprintf(path, sizeof path, "%s/In/%s", fx->root, a.id);
    assert_int_equal(verify_file(path), 0);
    char *text = read_text(path);
    size_t n = (size_t)file_size(path);
    size_t rcpt = (size_t)(strstr(text, "alice@") - text), body = n - 1000;
    size_t size_digit = (size_t)(strstr(text, "\nsize ") - text) + 10;
    free(text);
    snprintf(bad, sizeof bad, "%s/flipped", fx->dir);
    const size_t offs[] = {rcpt, size_digit, body, n - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        copy_flipped(path, bad, offs[i]);
        if (verify_file(bad) != EBADMSG)
            fail_msg("a flipped byte at %zu of %zu passed", offs[i], n);
        /* The outbound queue's two halves of it: the envelope alone, the content in memory. */
        bool body_ok;
        int env_rc = envelope_and_body(bad, &body_ok);
        if (offs[i] < body && env_rc != EBADMSG)
            fail_msg("a flipped envelope byte at %zu passed the envelope's check", offs[i]);
        if (offs[i] >= body && (env_rc || body_ok))
            fail_msg("a flipped content byte at %zu: envelope %d, content ok %d", offs[i], env_rc,
                     body_ok);
    }
    bool body_ok;
    assert_int_equal(envelope_and_body(path, &body_ok), 0);
    assert_true(body_ok);
    /* The torn copy replaces the good one in In; the next start archives it. */
    copy_flipped(path, bad, body);
    assert_int_equal(rename(bad, path), 0);
    fx->events[0] = 0;
    o = opts(fx, true);
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    uint64_t zero = 0;
    assert_true(pump(sp, delivered_all, &zero));
    ims_spool_close(sp);
    assert_non_null(strstr(fx->events, "4117;"));
    assert_non_null(strstr(fx->last, "does not match its checksums"));
    snprintf(path, sizeof path, "%s/In/Archive/%s", fx->root, a.id);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(count_sub(fx->alice, "new"), 0);
    free(c);
}

/* The recycler's rule: a file put back is reused only after an fsync of In that began after
 * the put has succeeded (before, a crash could bring it back into In with its old content); a
 * failed sync frees nothing; a take gives the file's old size; files too big are not kept. */
static void test_recycler_order(void **state)
{
    struct fx *fx = *state;
    char dir[512], path[1024], name[IMS_RECYCLE_NAME], got[IMS_RECYCLE_NAME];
    uint64_t size = 0;
    snprintf(dir, sizeof dir, "%s/W", fx->root);
    assert_int_equal(mkdir(dir, 0700), 0);
    int wfd = open(dir, O_RDONLY | O_DIRECTORY);
    ims_recycler *r;
    assert_int_equal(ims_recycler_new(wfd, 2, &r), 0);
    assert_int_equal(ims_recycler_take(r, got, &size), -1);
    assert_int_equal(ims_recycler_reserve(r, name), 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_text(path, "the old message");
    uint64_t early = ims_recycler_sync_begin(r); /* begun before the put: covers nothing */
    uint64_t need = ims_recycler_mark(r);
    ims_recycler_put(r, name, 15);
    ims_recycler_sync_end(r, early, true);
    assert_false(ims_recycler_covered(r, need));
    assert_int_equal(ims_recycler_take(r, got, &size), -1);
    uint64_t later = ims_recycler_sync_begin(r);
    ims_recycler_sync_end(r, later, true);
    assert_true(ims_recycler_covered(r, need));
    assert_true(ims_recycler_wait_covered(r, need, 0));
    int fd = ims_recycler_take(r, got, &size);
    assert_true(fd >= 0);
    assert_string_equal(got, name);
    assert_int_equal(size, 15);
    assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
    close(fd);
    assert_int_equal(ims_recycler_take(r, got, &size), -1);
    /* A failed sync: what was put (or marked) before it ended is covered by no later sync,
     * what comes after it is. */
    char before[IMS_RECYCLE_NAME];
    assert_int_equal(ims_recycler_reserve(r, before), 0);
    snprintf(path, sizeof path, "%s/%s", dir, before);
    write_text(path, "y");
    uint64_t need2 = ims_recycler_mark(r);
    ims_recycler_put(r, before, 1);
    uint64_t failed = ims_recycler_sync_begin(r);
    ims_recycler_sync_end(r, failed, false);
    uint64_t after = ims_recycler_sync_begin(r);
    ims_recycler_sync_end(r, after, true);
    assert_false(ims_recycler_covered(r, need2));
    assert_false(ims_recycler_wait_covered(r, need2, 1000)); /* no wait: none can cover it */
    assert_int_equal(ims_recycler_take(r, got, &size), -1);
    uint64_t need3 = ims_recycler_mark(r);
    uint64_t last = ims_recycler_sync_begin(r);
    ims_recycler_sync_end(r, last, true);
    assert_true(ims_recycler_covered(r, need3));
    /* A file over IMS_RECYCLE_KEEP_BYTES is removed at once. */
    char big[IMS_RECYCLE_NAME];
    assert_int_equal(ims_recycler_reserve(r, big), 0);
    snprintf(path, sizeof path, "%s/%s", dir, big);
    write_text(path, "big");
    ims_recycler_put(r, big, IMS_RECYCLE_KEEP_BYTES + 1);
    assert_int_equal(access(path, F_OK), -1);
    /* At most max files are kept: past that, a put removes the file. */
    char names[3][IMS_RECYCLE_NAME];
    for (int i = 0; i < 3; i++) {
        if (ims_recycler_reserve(r, names[i]))
            break;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        write_text(path, "x");
        ims_recycler_put(r, names[i], 1);
    }
    /* Max 2: the one stuck since the failure and one more; and the one taken above. */
    assert_int_equal(count_files(dir), 2 + 1);
    ims_recycler_free(r); /* removes the two it holds */
    assert_int_equal(count_files(dir), 1);
    snprintf(path, sizeof path, "%s/%s", dir, got);
    unlink(path);
    close(wfd);
    rmdir(dir);
}

struct late_sync {
    ims_recycler *r;
    bool round; /* a commit round's sync, or another writer's */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool go;
};

/* Begins and ends a sync once the waiter has given up (go), or after at most 10 s when the
 * waiter waits instead: then the sync covers it, as it would have when a waiter waited for
 * another writer's syncs. */
static void *late_sync_thread(void *arg)
{
    struct late_sync *ls = arg;
    struct timespec at;
    clock_gettime(CLOCK_REALTIME, &at);
    at.tv_sec += 10;
    pthread_mutex_lock(&ls->lock);
    while (!ls->go && pthread_cond_timedwait(&ls->cv, &ls->lock, &at) == 0)
        ;
    pthread_mutex_unlock(&ls->lock);
    uint64_t seq = ls->round ? ims_recycler_round_begin(ls->r) : ims_recycler_sync_begin(ls->r);
    ims_recycler_sync_end(ls->r, seq, true);
    return NULL;
}

static void late_sync_go(struct late_sync *ls)
{
    pthread_mutex_lock(&ls->lock);
    ls->go = true;
    pthread_cond_signal(&ls->cv);
    pthread_mutex_unlock(&ls->lock);
}

/* Whom ims_recycler_wait_covered waits for: a commit round's sync (ims_recycler_round_begin)
 * says more are coming, so a writer waits for the next; another writer's own sync
 * (ims_recycler_sync_begin) does not, so after only those the waiter is told at once to sync
 * itself, even when a sync was on its way that would have covered it. When the outbound
 * queue's own syncs counted, each of its rounds waited out its whole share time once mail
 * had stopped coming in. */
static void test_recycler_waits_for_rounds_only(void **state)
{
    struct fx *fx = *state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/W", fx->root);
    assert_int_equal(mkdir(dir, 0700), 0);
    int wfd = open(dir, O_RDONLY | O_DIRECTORY);
    ims_recycler *r;
    assert_int_equal(ims_recycler_new(wfd, 2, &r), 0);
    /* Nothing began yet: no wait, not covered. */
    assert_false(ims_recycler_wait_covered(r, ims_recycler_mark(r), 60000));
    /* Another writer's syncs only: no wait, though a sync is on its way that would cover. */
    uint64_t own = ims_recycler_sync_begin(r);
    ims_recycler_sync_end(r, own, true);
    uint64_t need = ims_recycler_mark(r);
    struct late_sync ls = {.r = r, .round = false};
    pthread_mutex_init(&ls.lock, NULL);
    pthread_cond_init(&ls.cv, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_sync_thread, &ls), 0);
    bool waited = ims_recycler_wait_covered(r, need, 60000);
    late_sync_go(&ls);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_false(waited);
    assert_true(ims_recycler_covered(r, need)); /* numbered and covering all the same */
    /* A commit round began lately: the waiter waits for the next sync, whoever makes it. */
    uint64_t round = ims_recycler_round_begin(r);
    ims_recycler_sync_end(r, round, true);
    uint64_t need2 = ims_recycler_mark(r);
    ls.go = true; /* at once */
    assert_int_equal(pthread_create(&th, NULL, late_sync_thread, &ls), 0);
    assert_true(ims_recycler_wait_covered(r, need2, 60000));
    assert_int_equal(pthread_join(th, NULL), 0);
    pthread_cond_destroy(&ls.cv);
    pthread_mutex_destroy(&ls.lock);
    ims_recycler_free(r);
    close(wfd);
    rmdir(dir);
}

/* Another writer's finished file (the outbound queue's, from Out): moved into Work with its
 * size as it is now, reused only after a sync begun after it; a file with a second link, one
 * too big and one that is gone are left to the caller. */
static void test_recycler_adopt(void **state)
{
    struct fx *fx = *state;
    char wdir[512], odir[512], path[1024], link2[1024], got[IMS_RECYCLE_NAME];
    uint64_t size = 0;
    snprintf(wdir, sizeof wdir, "%s/W", fx->root);
    snprintf(odir, sizeof odir, "%s/O", fx->root);
    assert_int_equal(mkdir(wdir, 0700), 0);
    assert_int_equal(mkdir(odir, 0700), 0);
    int wfd = open(wdir, O_RDONLY | O_DIRECTORY), ofd = open(odir, O_RDONLY | O_DIRECTORY);
    ims_recycler *r;
    assert_int_equal(ims_recycler_new(wfd, 8, &r), 0);
    snprintf(path, sizeof path, "%s/AAAA", odir);
    write_text(path, "envelope\ncontent\nrecord 1\n"); /* 26 bytes, records included */
    uint64_t need = ims_recycler_mark(r);
    assert_int_equal(ims_recycler_adopt(r, ofd, "AAAA"), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_files(odir), 0);
    assert_int_equal(count_files(wdir), 1);
    assert_int_equal(ims_recycler_take(r, got, &size), -1); /* not before a sync */
    uint64_t seq = ims_recycler_sync_begin(r);
    ims_recycler_sync_end(r, seq, true);
    assert_true(ims_recycler_covered(r, need));
    int fd = ims_recycler_take(r, got, &size);
    assert_true(fd >= 0);
    assert_int_equal(size, 26);
    close(fd);
    /* Left where they are: a second link (the file is also elsewhere), too big, gone. */
    snprintf(path, sizeof path, "%s/BBBB", odir);
    write_text(path, "linked");
    snprintf(link2, sizeof link2, "%s/BBBB.link", odir);
    assert_int_equal(link(path, link2), 0);
    assert_int_equal(ims_recycler_adopt(r, ofd, "BBBB"), EFBIG);
    assert_int_equal(access(path, F_OK), 0);
    unlink(link2);
    unlink(path);
    snprintf(path, sizeof path, "%s/CCCC", odir);
    write_text(path, "");
    assert_int_equal(truncate(path, IMS_RECYCLE_KEEP_BYTES + 1), 0);
    assert_int_equal(ims_recycler_adopt(r, ofd, "CCCC"), EFBIG);
    assert_int_equal(access(path, F_OK), 0);
    unlink(path);
    assert_int_equal(ims_recycler_adopt(r, ofd, "DDDD"), ENOENT);
    assert_int_equal(ims_recycler_adopt(NULL, ofd, "DDDD"), ENOSPC);
    ims_recycler_free(r);
    snprintf(path, sizeof path, "%s/%s", wdir, got);
    unlink(path);
    close(wfd);
    close(ofd);
    rmdir(wdir);
    rmdir(odir);
}

/* A finished message's spool file waits in Work, and the next message is written into it
 * rather than into a new file, cut to its own length: the first message's content is made of
 * lines that would read as status records ("done 0") if its tail were left behind the second.
 * A stopped spool leaves Work empty. */
static void test_recycled_files(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, true);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    char work[512], name[256], path[1024];
    snprintf(work, sizeof work, "%s/Work", fx->root);
    static const size_t lens[] = {60000, 300, 5000};
    char *bodies[3];
    for (size_t i = 0; i < 3; i++) {
        bodies[i] = content((unsigned)i, lens[i]);
        if (i == 0) /* "done 0\n" over and over after the header */
            for (size_t k = strlen("Subject: message 0\r\n\r\n"); k < lens[0]; k++)
                bodies[0][k] = "done 0\n"[k % 7];
        struct ack a = {0};
        assert_int_equal(ims_spool_submit(sp, &env, bodies[i], lens[i], on_done, &a), 0);
        uint64_t want = i + 1;
        assert_true(pump(sp, delivered_all, &want));
        assert_int_equal(a.err, 0);
        /* Free for reuse once its leaving In is durable: with no message coming in to sync
         * In, the delivery thread does it after a moment. */
        assert_true(pump(sp, recycled_at_least, &want));
        /* The file it leaves behind is the only one in Work. */
        only_file(work, name, sizeof name);
        assert_int_equal(strncmp(name, "free.", 5), 0);
    }
    ims_spool_stats st;
    ims_spool_get_stats(sp, &st);
    assert_int_equal(st.files_recycled, 3);
    assert_int_equal(st.files_reused, 2);
    ims_spool_close(sp);
    assert_int_equal(count_files(work), 0);
    /* Each copy has its own content, whatever was in the file before. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/new", fx->alice);
    assert_int_equal(count_files(dir), 3);
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t seen = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *got = read_text(path);
        unsigned seq = 99;
        const char *subj = strstr(got, "Subject: message ");
        assert_non_null(subj);
        assert_int_equal(sscanf(subj, "Subject: message %u", &seq), 1);
        assert_true(seq < 3);
        /* The copy ends with the content, its two CRLFs made LF, and nothing after it. */
        size_t h = strlen("Subject: message 0\r\n\r\n");
        assert_int_equal(strlen(subj), lens[seq] - 2);
        assert_memory_equal(subj + h - 2, bodies[seq] + h, lens[seq] - h);
        seen |= 1u << seq;
        free(got);
    }
    closedir(d);
    assert_int_equal(seen, 7);
    for (size_t i = 0; i < 3; i++)
        free(bodies[i]);
}

static void test_group_commit_window(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    o.commit_window_us = 300000; /* far longer than 20 submissions take */
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "");
    struct ack acks[20] = {0};
    for (int i = 0; i < 20; i++)
        assert_int_equal(ims_spool_submit(sp, &env, "x\r\n", 3, on_done, &acks[i]), 0);
    struct acks all = {acks, 20};
    assert_true(pump(sp, acks_done, &all));
    ims_spool_stats st;
    ims_spool_get_stats(sp, &st);
    if (st.rounds > 2)
        fail_msg("20 messages within one window: got %llu commit rounds, want 1 or 2",
                 (unsigned long long)st.rounds);
    assert_int_equal(st.dir_syncs, st.rounds);
    assert_int_equal(st.committed, 20);
    ims_spool_close(sp);
}

static void test_streaming(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    char work[256];
    snprintf(work, sizeof work, "%s/Work", fx->root);

    /* 200 KiB in 1000-byte pieces: the file appears in Work once the buffer is full. */
    size_t len = 200 * 1024;
    char *c = content(7, len);
    ims_spool_msg *m;
    assert_int_equal(ims_spool_begin(sp, &env, &m), 0);
    assert_int_equal(count_files(work), 0);
    for (size_t off = 0; off < len; off += 1000)
        assert_int_equal(ims_spool_write(m, c + off, len - off < 1000 ? len - off : 1000), 0);
    assert_int_equal(count_files(work), 1);
    struct ack a[3] = {0};
    ims_spool_commit(m, on_done, &a[0]);

    /* An aborted message leaves nothing. */
    assert_int_equal(ims_spool_begin(sp, &env, &m), 0);
    assert_int_equal(ims_spool_write(m, c, len), 0);
    ims_spool_abort(m);

    /* An empty message is a message. */
    assert_int_equal(ims_spool_begin(sp, &env, &m), 0);
    ims_spool_commit(m, on_done, &a[1]);
    struct acks all = {a, 2};
    assert_true(pump(sp, acks_done, &all));
    assert_int_equal(a[0].err, 0);
    assert_int_equal(a[1].err, 0);
    check_spooled(fx->root, "In", a[0].id, c, len, 1);
    check_spooled(fx->root, "In", a[1].id, "", 0, 1);
    assert_int_equal(count_files(work), 0);
    char in[256];
    snprintf(in, sizeof in, "%s/In", fx->root);
    assert_int_equal(count_files(in), 2);
    free(c);
    ims_spool_close(sp);
}

/* The 1012 line carries the Message-ID from the header however the content is cut into
 * writes (the header's end across two of them), and none from the body. */
static void test_tracking_message_id(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    static const struct {
        const char *content;
        size_t piece;     /* bytes per ims_spool_write */
        const char *want; /* the line's Message-ID field, "" none */
    } cases[] = {
        {"Subject: a\r\nMessage-ID: <one@x>\r\n\r\nbody\r\n", 1, "<one@x>"},
        {"Subject: a\r\nMessage-Id:\r\n  <two@x>\r\n\r\nbody\r\n", 3, "<two@x>"},
        {"Subject: a\r\n\r\nMessage-ID: <body@x>\r\n", 1, ""},
        {"Subject: a\r\n\r\nMessage-ID: <body@x>\r\n", 1000, ""},
        {"\r\nMessage-ID: <body@x>\r\n", 2, ""},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    struct ack a[N] = {0};
    for (size_t i = 0; i < N; i++) {
        ims_spool_msg *m;
        assert_int_equal(ims_spool_begin(sp, &env, &m), 0);
        const char *c = cases[i].content;
        size_t len = strlen(c);
        for (size_t off = 0; off < len; off += cases[i].piece)
            assert_int_equal(
                ims_spool_write(m, c + off,
                                len - off < cases[i].piece ? len - off : cases[i].piece),
                0);
        ims_spool_commit(m, on_done, &a[i]);
    }
    struct acks all = {a, N};
    assert_true(pump(sp, acks_done, &all));
    ims_spool_close(sp);
    for (size_t i = 0; i < N; i++) {
        ims_track_query q = {.qid = a[i].id, .since = time(NULL) - 86400, .until = time(NULL) + 1};
        ims_track_result res;
        assert_int_equal(ims_track_find(fx->tracking, &q, &res), 0);
        assert_int_equal(res.nmsgs, 1);
        assert_int_equal(res.msgs[0].events[0].event, IMS_TRACK_RECEIVED_INBOUND);
        if (strcmp(res.msgs[0].events[0].message_id, cases[i].want))
            fail_msg("case %zu: got Message-ID \"%s\", want \"%s\"", i,
                     res.msgs[0].events[0].message_id, cases[i].want);
        ims_track_result_free(&res);
    }
}

static void test_envelope_invalid(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    static const struct {
        const char *sender, *addr, *maildir, *notify, *helo;
        size_t nrcpt;
        int want;
    } cases[] = {
        {"a@b", "c@d", "/x/y", NULL, "h", 1, 0},
        {"", "c@d", "/x/y", "NEVER", "h", 1, 0},
        {"a\n@b", "c@d", "/x/y", NULL, "h", 1, EINVAL},
        {"a@b", "c\t@d", "/x/y", NULL, "h", 1, EINVAL},
        {"a@b", "", "/x/y", NULL, "h", 1, EINVAL},
        {"a@b", "c@d", "x/y", NULL, "h", 1, EINVAL},
        {"a@b", "c@d", "/x/y", "-", "h", 1, EINVAL},
        {"a@b", "c@d", "/x/y", NULL, "h\r", 1, EINVAL},
        {"a@b", "c@d", "/x/y", NULL, "h", 0, EINVAL},
        {"a@b", "c@d", NULL, NULL, "h", 1, EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_rcpt r = {cases[i].addr, cases[i].maildir, cases[i].notify, NULL};
        ims_envelope env = envelope(&r, cases[i].nrcpt, cases[i].sender);
        env.helo = cases[i].helo;
        ims_spool_msg *m = NULL;
        int rc = ims_spool_begin(sp, &env, &m);
        if (rc != cases[i].want)
            fail_msg("case %zu: got %d, want %d", i, rc, cases[i].want);
        if (m)
            ims_spool_abort(m);
    }
    /* tls: "<protocol> <cipher>", it goes into a comment of Received; auth: a field. */
    static const struct {
        const char *tls, *auth;
        int want;
    } how[] = {
        {"TLSv1.3 TLS_AES_256_GCM_SHA384", "alice", 0},
        {"TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384", NULL, 0},
        {"", "", 0},
        {NULL, "Alice Smith", 0},
        {"TLSv1.3", NULL, EINVAL},
        {"TLSv1.3 ", NULL, EINVAL},
        {" TLSv1.3 X", NULL, EINVAL},
        {"TLSv1.3  X", NULL, EINVAL},
        {"TLSv1.3 X Y", NULL, EINVAL},
        {"TLSv1.3\tX", NULL, EINVAL},
        {"TLSv1.3 X\r\nBcc: a@b", NULL, EINVAL},
        {"TLSv1.3 X)(", NULL, EINVAL},
        {"TLSv1.3 X\\", NULL, EINVAL},
        {"TLSv1.3 \xc3\xa9", NULL, EINVAL},
        {NULL, "al\nice", EINVAL},
        {NULL, "al\tice", EINVAL},
    };
    for (size_t i = 0; i < sizeof how / sizeof how[0]; i++) {
        ims_rcpt r = {"c@d", "/x/y", NULL, NULL};
        ims_envelope env = envelope(&r, 1, "a@b");
        env.tls = how[i].tls;
        env.auth = how[i].auth;
        ims_spool_msg *m = NULL;
        int rc = ims_spool_begin(sp, &env, &m);
        if (rc != how[i].want)
            fail_msg("tls/auth case %zu: got %d, want %d", i, rc, how[i].want);
        if (m)
            ims_spool_abort(m);
    }
    /* The other routes: a domain for DNS, a host spec for a smart host, nothing else. */
    static const struct {
        ims_route_kind route;
        const char *dest, *maildir;
        int want;
    } routes[] = {
        {IMS_ROUTE_DNS, "example.com", NULL, 0},
        {IMS_ROUTE_DNS, "not a domain", NULL, EINVAL},
        {IMS_ROUTE_DNS, NULL, NULL, EINVAL},
        {IMS_ROUTE_SMARTHOST, "relay.example:2525", NULL, 0},
        {IMS_ROUTE_SMARTHOST, "[192.0.2.1]:99999", NULL, EINVAL},
        {IMS_ROUTE_SMARTHOST, "a\tb", NULL, EINVAL},
        {(ims_route_kind)42, "example.com", "/x/y", EINVAL},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        ims_rcpt r = {"c@d", routes[i].maildir, NULL, NULL, routes[i].route, routes[i].dest};
        ims_envelope env = envelope(&r, 1, "a@b");
        ims_spool_msg *m = NULL;
        int rc = ims_spool_begin(sp, &env, &m);
        if (rc != routes[i].want)
            fail_msg("route case %zu: got %d, want %d", i, rc, routes[i].want);
        if (m)
            ims_spool_abort(m);
    }
    ims_spool_close(sp);
}

static void test_close_finishes_commits(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp, *other;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    /* One spool per RootDir. */
    assert_int_equal(ims_spool_open(fx->root, &o, &other), EBUSY);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    struct ack acks[50] = {0};
    for (int i = 0; i < 50; i++)
        assert_int_equal(ims_spool_submit(sp, &env, "hello\r\n", 7, on_done, &acks[i]), 0);
    ims_spool_close(sp);
    for (int i = 0; i < 50; i++) {
        if (acks[i].calls != 1 || acks[i].err)
            fail_msg("message %d: got %d calls, err %d", i, acks[i].calls, acks[i].err);
        check_spooled(fx->root, "In", acks[i].id, "hello\r\n", 7, 1);
    }
    /* Committed without delivery: they wait in In, and tracking has their 1012 lines. */
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_spool_close(sp);
    char in[256];
    snprintf(in, sizeof in, "%s/In", fx->root);
    assert_int_equal(count_files(in), 50);
}

/* today_log - the path of today's tracking file (GMT). */
static void today_log(struct fx *fx, char *path, size_t size)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(path, size, "%s/%04d%02d%02d.log", fx->tracking, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday);
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

static void test_delivery(void **state)
{
    struct fx *fx = *state;
    /* Stored with LF line ends: each CRLF of the content becomes LF, every other byte (a CR
     * without its LF) stays; the added headers end in LF too. */
    static const struct {
        const char *sender, *ip, *body, *want_head, *want_body;
        bool archive;
        const char *tls, *auth;
    } cases[] = {
        {"sender@example.org", "192.0.2.1", "Subject: hi\r\n\r\nbody\r\n",
         "Return-Path: <sender@example.org>\n"
         "Received: from client.example ([192.0.2.1])\n"
         "\tby " HOST " with ESMTP id %s;\n"
         "\tWed, 1 May 2024 13:45:07 +0000\n",
         "Subject: hi\n\nbody\n", false},
        {"", "2001:db8::1", "Subject: lf\n\nbody\n",
         "Return-Path: <>\n"
         "Received: from client.example ([IPv6:2001:db8::1])\n"
         "\tby " HOST " with ESMTP id %s;\n"
         "\tWed, 1 May 2024 13:45:07 +0000\n",
         "Subject: lf\n\nbody\n", true},
        {"s@example.org", "192.0.2.1", "Subject: cr\r\n\r\na\rb\r\r\n\r",
         "Return-Path: <s@example.org>\n"
         "Received: from client.example ([192.0.2.1])\n"
         "\tby " HOST " with ESMTP id %s;\n"
         "\tWed, 1 May 2024 13:45:07 +0000\n",
         "Subject: cr\n\na\rb\r\n\r", false},
        /* RFC 3848's protocols; the TLS line as Postfix writes it; never the account. */
        {"s@example.org", "192.0.2.1", "Subject: tls\r\n\r\nx\r\n",
         "Return-Path: <s@example.org>\n"
         "Received: from client.example ([192.0.2.1])\n"
         "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\n"
         "\tby " HOST " with ESMTPS id %s;\n"
         "\tWed, 1 May 2024 13:45:07 +0000\n",
         "Subject: tls\n\nx\n", false, "TLSv1.3 TLS_AES_256_GCM_SHA384", NULL},
        {"s@example.org", "192.0.2.1", "Subject: auth\r\n\r\nx\r\n",
         "Return-Path: <s@example.org>\n"
         "Received: from client.example ([192.0.2.1])\n"
         "\tby " HOST " with ESMTPA id %s;\n"
         "\tWed, 1 May 2024 13:45:07 +0000\n",
         "Subject: auth\n\nx\n", false, "", "alice"},
        {"s@example.org", "2001:db8::1", "Subject: both\r\n\r\nx\r\n",
         "Return-Path: <s@example.org>\n"
         "Received: from client.example ([IPv6:2001:db8::1])\n"
         "\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384)\n"
         "\tby " HOST " with ESMTPSA id %s;\n"
         "\tWed, 1 May 2024 13:45:07 +0000\n",
         "Subject: both\n\nx\n", true, "TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384", "alice"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ims_spool_options o = opts(fx, true);
        o.archive = cases[k].archive;
        ims_spool *sp;
        assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
        /* Three recipients, two of them in one mailbox: alice gets one copy. */
        ims_rcpt r[3] = {{"alice@ims.test", fx->alice, NULL, NULL},
                         {"bob@ims.test", fx->bob, NULL, NULL},
                         {"postmaster@ims.test", fx->alice, NULL, NULL}};
        ims_envelope env = envelope(r, 3, cases[k].sender);
        env.client_ip = cases[k].ip;
        env.tls = cases[k].tls;
        env.auth = cases[k].auth;
        struct ack a = {0};
        size_t len = strlen(cases[k].body);
        assert_int_equal(ims_spool_submit(sp, &env, cases[k].body, len, on_done, &a), 0);
        uint64_t want = 1;
        assert_true(pump(sp, delivered_all, &want));
        assert_int_equal(a.err, 0);
        ims_spool_stats st;
        ims_spool_get_stats(sp, &st);
        assert_int_equal(st.delivered, 3);
        ims_spool_close(sp);

        char dir[512], name[256], path[1024], want_name[256];
        char head[512];
        snprintf(head, sizeof head, cases[k].want_head, a.id);
        size_t hl = strlen(head), size = hl + strlen(cases[k].want_body);
        snprintf(dir, sizeof dir, "%s/new", fx->alice);
        only_file(dir, name, sizeof name);
        snprintf(want_name, sizeof want_name, "%s.0.%s,S=%zu", a.id, HOST, size);
        assert_string_equal(name, want_name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        assert_int_equal(file_size(path), size);
        char *got = read_text(path);
        if (strncmp(got, head, hl) || strcmp(got + hl, cases[k].want_body))
            fail_msg("delivered file:\n%s\nwant:\n%s%s", got, head, cases[k].want_body);
        free(got);
        snprintf(dir, sizeof dir, "%s/new", fx->bob);
        only_file(dir, name, sizeof name);
        snprintf(want_name, sizeof want_name, "%s.1.%s,S=%zu", a.id, HOST, size);
        assert_string_equal(name, want_name);
        /* MTS-IN is empty again; the spool file is gone, or archived with its status. */
        assert_int_equal(count_sub(fx->mts_in, "new") + count_sub(fx->mts_in, "tmp"), 0);
        snprintf(path, sizeof path, "%s/In/%s", fx->root, a.id);
        assert_int_equal(access(path, F_OK), -1);
        snprintf(path, sizeof path, "%s/In/Archive/%s", fx->root, a.id);
        assert_int_equal(access(path, F_OK), cases[k].archive ? 0 : -1);
        if (cases[k].archive) {
            int fd = open(path, O_RDONLY);
            ims_spool_file f;
            assert_int_equal(ims_spool_file_read(fd, &f), 0);
            for (size_t i = 0; i < 3; i++)
                assert_true(f.rcpts[i].done);
            if (cases[k].tls && *cases[k].tls)
                assert_string_equal(f.tls, cases[k].tls);
            else
                assert_null(f.tls);
            if (cases[k].auth && *cases[k].auth)
                assert_string_equal(f.auth, cases[k].auth);
            else
                assert_null(f.auth);
            ims_spool_file_free(&f);
            close(fd);
        }
        /* Tracking: 1012 and 1013 for each recipient, eight fields. */
        char log[256];
        today_log(fx, log, sizeof log);
        char *text = read_text(log);
        char needle[128];
        snprintf(needle, sizeof needle, "\t1012\t%s\t", a.id);
        assert_int_equal(count_lines(text, needle), 3);
        snprintf(needle, sizeof needle, "\t1013\t%s\t", a.id);
        assert_int_equal(count_lines(text, needle), 3);
        snprintf(needle, sizeof needle, "\t1013\t%s\t%s\tbob@ims.test\t%zu\t%s\t" HOST "\n", a.id,
                 cases[k].sender[0] ? cases[k].sender : "<>", len, cases[k].ip);
        if (!strstr(text, needle))
            fail_msg("tracking log lacks the line \"%s\":\n%s", needle, text);
        free(text);
        /* Clean the mailboxes for the next case. */
        nftw(fx->alice, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        nftw(fx->bob, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
        make_maildir(fx->alice);
        make_maildir(fx->bob);
    }
}

/* Content far larger than delivery's copy buffer, with CRLFs, CRs and a CR CR LF on the
 * 64 KiB boundaries of its reads: the spool keeps it as received (the wire form), the
 * Maildir copy is as crlf_to_lf says and S= is its size. */
static void test_delivery_lf(void **state)
{
    struct fx *fx = *state;
    size_t n = 3 * 65536 + 1000;
    char *c = malloc(n), *want = malloc(n);
    assert_non_null(c);
    assert_non_null(want);
    size_t i = (size_t)snprintf(c, n, "Subject: big\r\n\r\n"), len = 0;
    while (i < n) {
        for (size_t k = 0; k < len && i < n; k++, i++)
            c[i] = (char)('a' + (i + k) % 26);
        if (i < n)
            c[i++] = '\r';
        if (i < n)
            c[i++] = '\n';
        len = (len * 7 + 3) % 700;
    }
    c[65535] = '\r', c[65536] = '\n';                     /* a CRLF split between reads */
    c[131071] = '\r', c[131072] = 'y';                    /* a CR alone at a read's end */
    c[196607] = '\r', c[196608] = '\r', c[196609] = '\n'; /* CR, then a CRLF split */
    c[n - 1] = '\r';                                      /* a CR alone at the very end */
    size_t wl = crlf_to_lf(c, n, want);

    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    struct ack a = {0};
    assert_int_equal(ims_spool_submit(sp, &env, c, n, on_done, &a), 0);
    ims_spool_close(sp);
    assert_int_equal(a.err, 0);
    check_spooled(fx->root, "In", a.id, c, n, 1);
    o = opts(fx, true);
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    uint64_t one = 1;
    assert_true(pump(sp, delivered_all, &one));
    ims_spool_close(sp);

    char dir[512], name[256], path[1024];
    snprintf(dir, sizeof dir, "%s/new", fx->alice);
    only_file(dir, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    buf got = BUF_INIT;
    assert_int_equal(base_read_file(path, 1 << 26, &got), 0);
    assert_int_equal(name_size(name), got.len);
    const char *body = memmem(got.data, got.len, "Subject: big\n", 13);
    assert_non_null(body);
    size_t off = (size_t)(body - (const char *)got.data);
    if (got.len - off != wl || memcmp(body, want, wl)) {
        size_t d = 0;
        while (d < wl && off + d < got.len && body[d] == want[d])
            d++;
        fail_msg("content: got %zu bytes, want %zu; first difference at %zu", got.len - off, wl, d);
    }
    assert_null(memchr(got.data, '\r', off)); /* the added headers end in LF */
    buf_free(&got);
    free(c);
    free(want);
}

static void test_tracking_lines(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->tracking, &t), 0);
    static const struct {
        time_t when;
        unsigned event;
        const char *sender, *rcpt, *file, *line;
    } cases[] = {
        {1714571107, 1012, "a@b", "c@d", "20240501.log",
         "2024-05-01 13:45:07 GMT\t1012\tQ\ta@b\tc@d\t42\t192.0.2.1\th.test\n"},
        {1714608000, 1013, "", "c@d", "20240502.log",
         "2024-05-02 00:00:00 GMT\t1013\tQ\t<>\tc@d\t42\t192.0.2.1\th.test\n"},
        {1714607999, 1013, "x\ty", "c\nd", "20240501.log",
         "2024-05-01 23:59:59 GMT\t1013\tQ\tx y\tc d\t42\t192.0.2.1\th.test\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(ims_tracking_write(t, cases[i].when, cases[i].event, "Q", cases[i].sender,
                                            cases[i].rcpt, 42, "192.0.2.1", "h.test"),
                         0);
    ims_tracking_close(t);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", fx->tracking, cases[i].file);
        char *text = read_text(path);
        if (!strstr(text, cases[i].line))
            fail_msg("%s: want the line %s, got:\n%s", cases[i].file, cases[i].line, text);
        free(text);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/20240501.log", fx->tracking);
    char *text = read_text(path);
    assert_int_equal(count_lines(text, "\n"), 2);
    free(text);
}

/* copy_file - raw bytes from a to b (b replaced). */
static void copy_file(const char *a, const char *b)
{
    buf d = BUF_INIT;
    assert_int_equal(base_read_file(a, 1 << 26, &d), 0);
    FILE *f = fopen(b, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d.data, 1, d.len, f), d.len);
    fclose(f);
    buf_free(&d);
}

static void test_idempotent_delivery(void **state)
{
    struct fx *fx = *state;
    /* Committed, not delivered: keep a copy of the spool file as it was then. */
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r[2] = {{"alice@ims.test", fx->alice, NULL, NULL},
                     {"bob@ims.test", fx->bob, NULL, NULL}};
    ims_envelope env = envelope(r, 2, "s@example.org");
    struct ack a = {0};
    assert_int_equal(ims_spool_submit(sp, &env, "hello\r\n", 7, on_done, &a), 0);
    ims_spool_close(sp);
    assert_int_equal(a.err, 0);
    char spooled[512], saved[512];
    snprintf(spooled, sizeof spooled, "%s/In/%s", fx->root, a.id);
    snprintf(saved, sizeof saved, "%s/saved", fx->dir);
    copy_file(spooled, saved);

    for (int round = 0; round < 5; round++) {
        o = opts(fx, true);
        assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
        uint64_t want = 1;
        assert_true(pump(sp, delivered_all, &want));
        ims_spool_close(sp);
        size_t na = count_sub(fx->alice, "new") + count_sub(fx->alice, "cur");
        size_t nb = count_sub(fx->bob, "new") + count_sub(fx->bob, "cur");
        if (na != 1 || nb != 1)
            fail_msg("round %d: alice has %zu copies, bob %zu; want 1 each", round, na, nb);
        assert_int_equal(access(spooled, F_OK), -1);
        /* "Crash" before the delivery was recorded: the spool file is back as it was. */
        copy_file(saved, spooled);
        char from[1024], to[1100], name[256], dir[512];
        if (round == 1) {
            /* ... and a mail reader moved alice's copy to cur/ meanwhile, with a flag. */
            snprintf(dir, sizeof dir, "%s/new", fx->alice);
            only_file(dir, name, sizeof name);
            snprintf(from, sizeof from, "%s/%s", dir, name);
            assert_int_equal(name_size(name), file_size(from));
            snprintf(to, sizeof to, "%s/cur/%s:2,S", fx->alice, name);
            assert_int_equal(rename(from, to), 0);
        }
        if (round == 2) {
            /* ... a reader that adds a field of its own (Dovecot's W=, the size with CRLFs)
             * renamed it in cur/, with more flags. */
            snprintf(dir, sizeof dir, "%s/cur", fx->alice);
            only_file(dir, name, sizeof name);
            snprintf(from, sizeof from, "%s/%s", dir, name);
            *strchr(name, ':') = 0;
            snprintf(to, sizeof to, "%s/%s,W=999:2,FS", dir, name);
            assert_int_equal(rename(from, to), 0);
        }
        if (round == 3) {
            /* ... bob's copy has the name an older version gave it (no S=), in new/. */
            snprintf(dir, sizeof dir, "%s/new", fx->bob);
            only_file(dir, name, sizeof name);
            snprintf(from, sizeof from, "%s/%s", dir, name);
            *strstr(name, ",S=") = 0;
            snprintf(to, sizeof to, "%s/%s", dir, name);
            assert_int_equal(rename(from, to), 0);
        }
    }
    unlink(spooled);
}

static void test_retry(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, true);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    char carol[256];
    snprintf(carol, sizeof carol, "%s/store/carol", fx->dir); /* not there yet */
    ims_rcpt r[2] = {{"carol@ims.test", carol, NULL, NULL}, {"bob@ims.test", fx->bob, NULL, NULL}};
    ims_envelope env = envelope(r, 2, "s@example.org");
    struct ack a = {0};
    assert_int_equal(ims_spool_submit(sp, &env, "hello\r\n", 7, on_done, &a), 0);
    /* Bob gets his copy; carol's fails and is retried. */
    long deadline = now_ms() + WAIT_MS;
    ims_spool_stats st = {0};
    while (now_ms() < deadline) {
        ims_spool_dispatch(sp);
        ims_spool_get_stats(sp, &st);
        if (st.deferred >= 2)
            break;
        usleep(5000);
    }
    ims_spool_dispatch(sp);
    assert_true(st.deferred >= 2);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.finished, 0);
    /* The MTS-IN copy waits with carol: MTS-IN's queue holds one message, of its size. */
    assert_int_equal(st.mts_in_entered, 1);
    assert_int_equal(st.mts_in_queued, 1);
    assert_true(st.mts_in_bytes > 7);
    assert_non_null(strstr(fx->events, "4182;"));
    assert_int_equal(count_sub(fx->bob, "new"), 1);
    make_maildir(carol);
    uint64_t want = 1;
    assert_true(pump(sp, delivered_all, &want));
    ims_spool_get_stats(sp, &st);
    assert_int_equal(st.delivered, 2);
    assert_int_equal(st.mts_in_entered, 1); /* written once, reused by the retry */
    assert_int_equal(st.mts_in_queued, 0);
    assert_int_equal(st.mts_in_bytes, 0);
    uint64_t observed = 0;
    for (size_t i = 0; i <= IMS_LATENCY_BUCKETS; i++)
        observed += st.latency_local.count[i];
    assert_int_equal(observed, 2); /* one latency per recipient delivered */
    ims_spool_close(sp);
    assert_int_equal(count_sub(fx->bob, "new"), 1);
    assert_int_equal(count_sub(carol, "new"), 1);
}

static void test_recovery(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    ims_envelope env = envelope(&r, 1, "s@example.org");
    struct ack a = {0};
    assert_int_equal(ims_spool_submit(sp, &env, "good\r\n", 6, on_done, &a), 0);
    ims_spool_close(sp);

    /* What a crash and strangers leave. */
    char p[512];
    snprintf(p, sizeof p, "%s/Work/0000000000000001", fx->root);
    write_text(p, "IMS-SPOOL 1\nid 0000000000000001\n"); /* partial, never acknowledged */
    snprintf(p, sizeof p, "%s/In/NOTASPOOLFILE", fx->root);
    write_text(p, "hello\n");
    snprintf(p, sizeof p, "%s/In/00000000000000A2", fx->root);
    write_text(p, "IMS-SPOOL 9\nid 00000000000000A2\n\ncontent");
    snprintf(p, sizeof p, "%s/In/00000000000000A3", fx->root); /* cut short */
    write_text(p, "IMS-SPOOL 1\nid 00000000000000A3\ntime 1\nclient 1.2.3.4\nhelo h\nhost h\n"
                  "from \nrcpt -\t-\ta@b\t/x\nsize 00000000000000000100\n\nonly ten b");
    fx->events[0] = 0;
    fx->log.levels[IMS_CAT_INIT_TERM] = IMS_LEVEL_MINIMUM; /* the summary is informational */
    o = opts(fx, true);
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    uint64_t want = 1;
    assert_true(pump(sp, delivered_all, &want));
    ims_spool_close(sp);
    assert_string_equal(fx->events, "4117;4117;4117;1003;");
    snprintf(p, sizeof p, "%s/Work", fx->root);
    assert_int_equal(count_files(p), 0);
    snprintf(p, sizeof p, "%s/In", fx->root);
    assert_int_equal(count_files(p), 0);
    snprintf(p, sizeof p, "%s/In/Archive", fx->root);
    assert_int_equal(count_files(p), 3);
    assert_int_equal(count_sub(fx->alice, "new"), 1);
}

/* in_only - the one spool file in In (Archive aside), its name into id. */
static void in_only(struct fx *fx, char *id, size_t size)
{
    char in[256];
    snprintf(in, sizeof in, "%s/In", fx->root);
    assert_int_equal(count_files(in), 1);
    only_file(in, id, size);
}

static bool mail_in_alice(ims_spool *sp, void *arg)
{
    struct fx *fx = arg;
    ims_spool_dispatch(sp);
    ims_spool_stats st;
    ims_spool_get_stats(sp, &st);
    return st.queued == 0 && count_sub(fx->alice, "new") == 1;
}

static void read_in(struct fx *fx, const char *id, ims_spool_file *f)
{
    char p[512];
    snprintf(p, sizeof p, "%s/In/%s", fx->root, id);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(ims_spool_file_read(fd, f), 0);
    close(fd);
}

/* Version 2: recipients routed elsewhere are written with their routes; the mailbox gets its
 * copy and the file stays in In for the other routes' transport (MTS-IN's copy goes), and a
 * restart delivers the mailbox no second time. Status records: the last one about a
 * recipient tells its state, and a final state stays. */
static void test_routes_and_status(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, true);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r[3] = {{"alice@ims.test", fx->alice, NULL, NULL, IMS_ROUTE_LOCAL, NULL},
                     {"u@remote.example", NULL, "FAILURE", "rfc822;u+40remote.example",
                      IMS_ROUTE_DNS, "remote.example"},
                     {"v@x.test", NULL, NULL, NULL, IMS_ROUTE_SMARTHOST, "[192.0.2.1]:2525"}};
    ims_envelope env = envelope(r, 3, "s@example.org");
    struct ack a = {0};
    const char *body = "Subject: r\r\n\r\nrouted\r\n";
    assert_int_equal(ims_spool_submit(sp, &env, body, strlen(body), on_done, &a), 0);
    struct acks all = {&a, 1};
    assert_true(pump(sp, acks_done, &all));
    assert_int_equal(a.err, 0);
    assert_true(pump(sp, mail_in_alice, fx));
    ims_spool_close(sp);
    char id[64];
    in_only(fx, id, sizeof id);
    assert_string_equal(id, a.id);
    char mts_new[256];
    snprintf(mts_new, sizeof mts_new, "%s/new", fx->mts_in);
    assert_int_equal(count_files(mts_new), 0);
    ims_spool_file f;
    read_in(fx, id, &f);
    assert_int_equal(f.version, 2);
    assert_int_equal(f.nrcpt, 3);
    assert_int_equal(f.rcpts[0].route, IMS_ROUTE_LOCAL);
    assert_string_equal(f.rcpts[0].maildir, fx->alice);
    assert_int_equal(f.rcpts[0].state, IMS_RCPT_DONE);
    assert_int_equal(f.rcpts[1].route, IMS_ROUTE_DNS);
    assert_string_equal(f.rcpts[1].dest, "remote.example");
    assert_null(f.rcpts[1].maildir);
    assert_string_equal(f.rcpts[1].notify, "FAILURE");
    assert_string_equal(f.rcpts[1].orcpt, "rfc822;u+40remote.example");
    assert_int_equal(f.rcpts[1].state, IMS_RCPT_PENDING);
    assert_int_equal(f.rcpts[2].route, IMS_ROUTE_SMARTHOST);
    assert_string_equal(f.rcpts[2].dest, "[192.0.2.1]:2525");
    ims_spool_file_free(&f);

    /* A restart: recovery hands it to delivery, which has nothing left to do. */
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    assert_true(pump(sp, mail_in_alice, fx));
    ims_spool_close(sp);
    in_only(fx, id, sizeof id);
    assert_int_equal(count_sub(fx->alice, "new"), 1);

    /* Status records as a transport appends them, and one cut short by a crash. */
    buf b = BUF_INIT;
    assert_int_equal(ims_spool_status_format(&b, 1, IMS_RCPT_DEFERRED, 1, 1700000000,
                                             "451 4.4.1 no\tanswer\r\n"),
                     0);
    assert_int_equal(ims_spool_status_format(&b, 2, IMS_RCPT_FAILED, 0, 0, "550 5.1.1 unknown"), 0);
    assert_int_equal(ims_spool_status_format(&b, 2, IMS_RCPT_DEFERRED, 3, 1, "too late"), 0);
    assert_int_equal(
        ims_spool_status_format(&b, 1, IMS_RCPT_DEFERRED, 2, 1700000900, "421 4.3.2 busy"), 0);
    assert_int_equal(ims_spool_status_format(&b, 1, IMS_RCPT_PENDING, 0, 0, NULL), EINVAL);
    assert_int_equal(ims_spool_status_format(&b, 7, IMS_RCPT_DONE, 0, 0, NULL), 0); /* no such */
    assert_int_equal(buf_adds(&b, "defer 1\t9\t1\tcut sh"), 0);
    char p[512];
    snprintf(p, sizeof p, "%s/In/%s", fx->root, id);
    int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(base_write_all(fd, b.data, b.len), 0);
    close(fd);
    buf_free(&b);
    read_in(fx, id, &f);
    assert_int_equal(f.rcpts[0].state, IMS_RCPT_DONE);
    assert_int_equal(f.rcpts[1].state, IMS_RCPT_DEFERRED);
    assert_int_equal(f.rcpts[1].attempts, 2);
    assert_int_equal((long long)f.rcpts[1].next_try, 1700000900LL);
    assert_string_equal(f.rcpts[1].last, "421 4.3.2 busy");
    assert_int_equal(f.rcpts[2].state, IMS_RCPT_FAILED); /* final: the later defer is ignored */
    assert_string_equal(f.rcpts[2].last, "550 5.1.1 unknown");
    ims_spool_file_free(&f);
}

/* A version 1 file (what the service wrote before routes) is read and delivered. */
static void test_version1_file(void **state)
{
    struct fx *fx = *state;
    char p[512], text[1024];
    assert_int_equal(base_mkdir_p(fx->root, 0750), 0);
    snprintf(p, sizeof p, "%s/In", fx->root);
    assert_int_equal(base_mkdir_p(p, 0750), 0);
    snprintf(p, sizeof p, "%s/In/00000000000000B1", fx->root);
    const char *content = "Subject: old\r\n\r\nfrom before\r\n";
    snprintf(text, sizeof text,
             "IMS-SPOOL 1\nid 00000000000000B1\ntime 1714571107\nclient 192.0.2.1\nhelo h\n"
             "host " HOST "\nfrom s@example.org\nrcpt -\t-\talice@ims.test\t%s\n"
             "rcpt -\t-\tbob@ims.test\t%s\nsize %020zu\n\n%sdone 1\n",
             fx->alice, fx->bob, strlen(content), content);
    write_text(p, text);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ims_spool_file f;
    assert_int_equal(ims_spool_file_read(fd, &f), 0);
    close(fd);
    assert_int_equal(f.version, 1);
    assert_int_equal(f.rcpts[0].route, IMS_ROUTE_LOCAL);
    assert_int_equal(f.rcpts[0].state, IMS_RCPT_PENDING);
    assert_int_equal(f.rcpts[1].state, IMS_RCPT_DONE);
    ims_spool_file_free(&f);
    ims_spool_options o = opts(fx, true);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    uint64_t want = 1;
    assert_true(pump(sp, delivered_all, &want));
    ims_spool_close(sp);
    assert_int_equal(count_sub(fx->alice, "new"), 1);
    assert_int_equal(count_sub(fx->bob, "new"), 0); /* done before: not again */
    snprintf(p, sizeof p, "%s/In", fx->root);
    assert_int_equal(count_files(p), 0);
    /* Version 1 knew no routes and no defer/fail records: such lines make it unreadable. */
    snprintf(p, sizeof p, "%s/v1-bad", fx->dir);
    snprintf(text, sizeof text,
             "IMS-SPOOL 1\nid 00000000000000B2\ntime 1\nclient 192.0.2.1\nhelo h\nhost h\n"
             "from \nrcpt -\t-\ta@b\tdns:example.com\nsize %020d\n\n",
             0);
    write_text(p, text);
    fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_int_equal(ims_spool_file_read(fd, &f), EBADMSG);
    close(fd);
}

/* read_with - a version 2 file with extra envelope lines, read into f (freed by the reader
 * when it fails): 0 or EBADMSG. */
static int read_with(struct fx *fx, const char *extra, ims_spool_file *f)
{
    char p[512], text[2048];
    snprintf(p, sizeof p, "%s/with-extra", fx->dir);
    snprintf(text, sizeof text,
             "IMS-SPOOL 2\nid 00000000000000C1\ntime 1\nclient 192.0.2.1\nhelo h\nhost h\n"
             "from \n%srcpt -\t-\ta@b\tdns:example.com\nsize %020d\n\n",
             extra, 0);
    write_text(p, text);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int rc = ims_spool_file_read(fd, f);
    close(fd);
    return rc;
}

/* The envelope's tls and auth: written as optional lines only when set, read back; files
 * without them (older versions) read as before; a damaged or repeated line is refused. */
static void test_tls_auth_keys(void **state)
{
    struct fx *fx = *state;
    ims_spool_options o = opts(fx, false);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    ims_rcpt r = {"alice@ims.test", fx->alice, NULL, NULL};
    static const struct {
        const char *tls, *auth, *want_lines;
    } cases[] = {
        {"TLSv1.3 TLS_AES_256_GCM_SHA384", "alice",
         "\ntls TLSv1.3 TLS_AES_256_GCM_SHA384\nauth alice\nrcpt "},
        {"TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256", NULL,
         "\ntls TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256\nrcpt "},
        {NULL, "Bob Smith", "\nauth Bob Smith\nrcpt "},
        {"", "", "\nfrom s@example.org\nrcpt "},
        {NULL, NULL, "\nfrom s@example.org\nrcpt "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_envelope env = envelope(&r, 1, "s@example.org");
        env.tls = cases[i].tls;
        env.auth = cases[i].auth;
        struct ack a = {0};
        assert_int_equal(ims_spool_submit(sp, &env, "x\r\n", 3, on_done, &a), 0);
        struct acks all = {&a, 1};
        assert_true(pump(sp, acks_done, &all));
        assert_int_equal(a.err, 0);
        char p[512];
        snprintf(p, sizeof p, "%s/In/%s", fx->root, a.id);
        char *text = read_text(p);
        if (!strstr(text, cases[i].want_lines))
            fail_msg("case %zu: the spool file lacks \"%s\":\n%s", i, cases[i].want_lines, text);
        free(text);
        ims_spool_file f;
        read_in(fx, a.id, &f);
        if (cases[i].tls && *cases[i].tls)
            assert_string_equal(f.tls, cases[i].tls);
        else
            assert_null(f.tls);
        if (cases[i].auth && *cases[i].auth)
            assert_string_equal(f.auth, cases[i].auth);
        else
            assert_null(f.auth);
        ims_spool_file_free(&f);
    }
    ims_spool_close(sp);

    /* Hand-written files: what is read and what is refused. */
    static const struct {
        const char *extra, *tls, *auth;
        int want;
    } files[] = {
        {"", NULL, NULL, 0}, /* as written before tls and auth existed */
        {"tls TLSv1.3 TLS_AES_128_GCM_SHA256\n", "TLSv1.3 TLS_AES_128_GCM_SHA256", NULL, 0},
        {"auth carol\n", NULL, "carol", 0},
        {"auth carol\ntls TLSv1.3 X\n", "TLSv1.3 X", "carol", 0},
        {"tls TLSv1.3\n", NULL, NULL, EBADMSG},
        {"tls \n", NULL, NULL, EBADMSG},
        {"tls TLSv1.3 (X)\n", NULL, NULL, EBADMSG},
        {"tls TLSv1.3 X\ntls TLSv1.3 X\n", NULL, NULL, EBADMSG},
        {"auth \n", NULL, NULL, EBADMSG},
        {"auth a\nauth b\n", NULL, NULL, EBADMSG},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ims_spool_file f;
        int rc = read_with(fx, files[i].extra, &f);
        if (rc != files[i].want)
            fail_msg("file case %zu (\"%s\"): got %d, want %d", i, files[i].extra, rc,
                     files[i].want);
        if (rc)
            continue;
        if (files[i].tls)
            assert_string_equal(f.tls, files[i].tls);
        else
            assert_null(f.tls);
        if (files[i].auth)
            assert_string_equal(f.auth, files[i].auth);
        else
            assert_null(f.auth);
        ims_spool_file_free(&f);
    }
    /* Version 1 never had them. */
    char p[512];
    snprintf(p, sizeof p, "%s/v1-tls", fx->dir);
    write_text(p, "IMS-SPOOL 1\nid 00000000000000C2\ntime 1\nclient 192.0.2.1\nhelo h\nhost h\n"
                  "from \ntls TLSv1.3 X\nrcpt -\t-\ta@b\t/x\nsize 00000000000000000000\n\n");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ims_spool_file f;
    assert_int_equal(ims_spool_file_read(fd, &f), EBADMSG);
    close(fd);
}

/* --- the I/O pool ---------------------------------------------------------------------- */

#define POOL_ITEMS 500

struct pool_job {
    ims_sync_pool *pool;
    int hits[POOL_ITEMS];
};

static void pool_hit(void *arg, size_t i)
{
    int *hits = arg;
    hits[i]++; /* each item is given to exactly one thread: no race */
}

static void *pool_caller(void *arg)
{
    struct pool_job *j = arg;
    ims_pool_run(j->pool, POOL_ITEMS, pool_hit, j->hits);
    return NULL;
}

static void test_pool(void **state)
{
    (void)state;
    static const unsigned threads[] = {1, 4, IMS_SPOOL_IO_THREADS, 1000};
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        ims_sync_pool *p;
        assert_int_equal(ims_pool_start(threads[t], &p), 0);
        /* Three callers at once, each with its own batch. */
        struct pool_job jobs[3];
        pthread_t th[3];
        for (int c = 0; c < 3; c++) {
            memset(&jobs[c], 0, sizeof jobs[c]);
            jobs[c].pool = p;
            assert_int_equal(pthread_create(&th[c], NULL, pool_caller, &jobs[c]), 0);
        }
        for (int c = 0; c < 3; c++) {
            pthread_join(th[c], NULL);
            for (size_t i = 0; i < POOL_ITEMS; i++)
                if (jobs[c].hits[i] != 1)
                    fail_msg("%u threads, caller %d, item %zu: run %d times, want 1", threads[t], c,
                             i, jobs[c].hits[i]);
        }
        /* Syncs report each descriptor's own result. */
        int fds[3] = {open("/tmp", O_RDONLY | O_DIRECTORY), -1, open("/tmp", O_RDONLY)};
        int errs[3] = {-1, -1, -1};
        ims_pool_sync(p, -1, fds, errs, 3, false);
        assert_int_equal(errs[0], 0);
        assert_int_equal(errs[1], EBADF);
        assert_int_equal(errs[2], 0);
        /* The same through one syncfs: a bad descriptor still gets its own error, and one on
         * another file system (/proc, whose directories refuse fsync) its own sync. */
        int anchor = open("/tmp", O_RDONLY | O_DIRECTORY);
        int more[4] = {fds[0], -1, fds[2], open("/proc", O_RDONLY | O_DIRECTORY)};
        int errs4[4] = {-1, -1, -1, -1};
        struct stat a, b;
        assert_int_equal(fstat(anchor, &a), 0);
        assert_int_equal(fstat(more[3], &b), 0);
        assert_true(a.st_dev != b.st_dev);
        errno = 0;
        int proc_err = fsync(more[3]) ? errno : 0;
        ims_pool_sync(p, anchor, more, errs4, 4, false);
        assert_int_equal(errs4[0], 0);
        assert_int_equal(errs4[1], EBADF);
        assert_int_equal(errs4[2], 0);
        assert_int_equal(errs4[3], proc_err);
        close(more[3]);
        close(anchor);
        close(fds[0]);
        close(fds[2]);
        ims_pool_stop(p);
    }
}

/* --- crash simulation ------------------------------------------------------------------ */

#define CRASH_ROUNDS 8
#define CRASH_MAX_ACKS 4096
#define CRASH_INFLIGHT 16

struct child_ack {
    int fd;
    unsigned seq;
    int *inflight;
};

static void child_done(void *arg, int err, const char *qid)
{
    struct child_ack *c = arg;
    if (!err) {
        char line[64];
        int n = snprintf(line, sizeof line, "%s %u\n", qid, c->seq);
        if (write(c->fd, line, (size_t)n) != n)
            _exit(3);
    }
    (*c->inflight)--;
    free(c);
}

/* crash_child - submit messages for ever, CRASH_INFLIGHT at a time, acknowledging each on fd,
 * with delivery running, until killed. */
static void crash_child(struct fx *fx, int fd, unsigned base)
{
    ims_spool_options o = opts(fx, true);
    o.log = NULL;
    ims_spool *sp;
    if (ims_spool_open(fx->root, &o, &sp))
        _exit(2);
    ims_rcpt r[2] = {{"alice@ims.test", fx->alice, NULL, NULL},
                     {"bob@ims.test", fx->bob, NULL, NULL}};
    ims_envelope env = envelope(r, 2, "s@example.org");
    int inflight = 0;
    for (unsigned seq = base;; seq++) {
        while (inflight >= CRASH_INFLIGHT) {
            struct pollfd p = {ims_spool_fd(sp), POLLIN, 0};
            poll(&p, 1, 100);
            ims_spool_dispatch(sp);
        }
        struct child_ack *c = malloc(sizeof *c);
        *c = (struct child_ack){fd, seq, &inflight};
        size_t len = 100 + seq % 5000;
        char *text = content(seq, len);
        inflight++;
        if (ims_spool_submit(sp, &env, text, len, child_done, c))
            _exit(4);
        free(text);
        ims_spool_dispatch(sp);
    }
}

struct acked {
    char id[IMS_QUEUE_ID_LEN + 1];
    unsigned seq;
};

#define CRASH_SEQS (CRASH_ROUNDS * 100000u)

/* check_maildir - every copy in new/ and cur/ is named for recipient `index`, carries its
 * Return-Path, and no message (by its sequence number) is there twice; found[seq] is set. */
static void check_maildir(const char *maildir, unsigned index, bool *found)
{
    const char *subs[] = {"new", "cur"};
    for (int s = 0; s < 2; s++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", maildir, subs[s]);
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char want_tail[64], path[1024];
            snprintf(want_tail, sizeof want_tail, ".%u." HOST, index);
            if (strlen(e->d_name) <= IMS_QUEUE_ID_LEN ||
                strncmp(e->d_name + IMS_QUEUE_ID_LEN, want_tail, strlen(want_tail)))
                fail_msg("%s: unexpected file %s", dir, e->d_name);
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            char *text = read_text(path);
            const char *subj = strstr(text, "Subject: message ");
            unsigned seq = 0;
            if (strncmp(text, "Return-Path: <s@example.org>\n", 29) || !subj ||
                sscanf(subj, "Subject: message %u", &seq) != 1 || seq >= CRASH_SEQS ||
                strchr(text, '\r'))
                fail_msg("%s: wrong content", path);
            if (name_size(e->d_name) != file_size(path))
                fail_msg("%s: S= is not the size, %llu", path, (unsigned long long)file_size(path));
            if (found[seq])
                fail_msg("%s: message %u delivered twice", maildir, seq);
            found[seq] = true;
            free(text);
        }
        closedir(d);
    }
}

static void test_crash_recovery(void **state)
{
    struct fx *fx = *state;
    struct acked *acks = calloc(CRASH_MAX_ACKS, sizeof *acks);
    size_t nacks = 0;
    unsigned seed = (unsigned)time(NULL);
    srand(seed);
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            crash_child(fx, p[1], (unsigned)round * 100000u);
            _exit(0);
        }
        close(p[1]);
        /* Kill after a random number of acknowledgements, or a random time. */
        size_t want = 1 + (size_t)rand() % 120;
        long deadline = now_ms() + 20 + rand() % 400;
        char line[4096];
        size_t have = 0, got = 0;
        fcntl(p[0], F_SETFL, O_NONBLOCK);
        while (got < want && now_ms() < deadline) {
            struct pollfd pf = {p[0], POLLIN, 0};
            poll(&pf, 1, 5);
            ssize_t r = read(p[0], line + have, sizeof line - have - 1);
            if (r <= 0)
                continue;
            have += (size_t)r;
            char *nl;
            while ((nl = memchr(line, '\n', have))) {
                *nl = 0;
                if (nacks < CRASH_MAX_ACKS &&
                    sscanf(line, "%16s %u", acks[nacks].id, &acks[nacks].seq) == 2) {
                    nacks++;
                    got++;
                }
                size_t used = (size_t)(nl - line) + 1;
                memmove(line, nl + 1, have - used);
                have -= used;
            }
        }
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: the child exited with %d before it was killed", round,
                     WEXITSTATUS(status));
        /* Acknowledgements still in the pipe were sent before the kill: they count. */
        ssize_t r;
        fcntl(p[0], F_SETFL, 0);
        while ((r = read(p[0], line + have, sizeof line - have - 1)) > 0) {
            have += (size_t)r;
            char *nl;
            while ((nl = memchr(line, '\n', have))) {
                *nl = 0;
                if (nacks < CRASH_MAX_ACKS &&
                    sscanf(line, "%16s %u", acks[nacks].id, &acks[nacks].seq) == 2)
                    nacks++;
                size_t used = (size_t)(nl - line) + 1;
                memmove(line, nl + 1, have - used);
                have -= used;
            }
        }
        close(p[0]);
    }
    print_message("crash test (seed %u): %zu acknowledged messages over %d kills\n", seed, nacks,
                  CRASH_ROUNDS);
    assert_true(nacks > 0);

    /* Recovery: everything acknowledged gets delivered, once. */
    ims_spool_options o = opts(fx, true);
    ims_spool *sp;
    assert_int_equal(ims_spool_open(fx->root, &o, &sp), 0);
    uint64_t zero = 0;
    assert_true(pump(sp, delivered_all, &zero));
    ims_spool_close(sp);
    char p[512];
    snprintf(p, sizeof p, "%s/Work", fx->root);
    assert_int_equal(count_files(p), 0);
    snprintf(p, sizeof p, "%s/In", fx->root);
    assert_int_equal(count_files(p), 0);
    assert_int_equal(count_sub(fx->mts_in, "new") + count_sub(fx->mts_in, "tmp"), 0);
    bool *found = calloc(CRASH_SEQS, sizeof *found);
    const char *boxes[2] = {fx->alice, fx->bob};
    for (unsigned b = 0; b < 2; b++) {
        memset(found, 0, CRASH_SEQS * sizeof *found);
        check_maildir(boxes[b], b, found);
        for (size_t i = 0; i < nacks; i++)
            if (!found[acks[i].seq])
                fail_msg("%s: acknowledged message %s (seq %u) was not delivered", boxes[b],
                         acks[i].id, acks[i].seq);
    }
    free(found);
    free(acks);
}

/* A record append that fails halfway (here at RLIMIT_FSIZE, as at ENOSPC) is cut off again,
 * so the next append's records start on a line of their own and parse. */
static void test_records_append_failure(void **state)
{
    struct fx *fx = *state;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/records", fx->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(ims_append_whole(fd, "done 0\n", 7), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 10; /* room for 3 of the next 7 bytes */
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = ims_append_whole(fd, "done 1\n", 7);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, was);
    assert_int_equal(rc, EFBIG);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 7); /* the torn "don" is gone */
    assert_int_equal(ims_append_whole(fd, "done 1\n", 7), 0);
    char got[32] = {0};
    assert_int_equal(pread(fd, got, sizeof got - 1, 0), 14);
    assert_string_equal(got, "done 0\ndone 1\n");
    close(fd);
    assert_true(ims_err_no_space(ENOSPC) && ims_err_no_space(EDQUOT));
    assert_false(ims_err_no_space(EIO) || ims_err_no_space(0) || ims_err_no_space(EFBIG));
    /* The disk-full events name the folder, its mount point and the space free. */
    char fs[PATH_MAX + 128];
    ims_fs_describe(fx->dir, fs, sizeof fs);
    assert_non_null(strstr(fs, "(file system mounted at /"));
    assert_non_null(strstr(fs, " bytes free)"));
    assert_true(!strncmp(fs, fx->dir, strlen(fx->dir)));
    assert_string_equal(ims_fs_describe("/no/such/dir", fs, sizeof fs), "/no/such/dir");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_threads_file_syncs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycled_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycler_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycler_waits_for_rounds_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycler_adopt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checksums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_envelope_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_finishes_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracking_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tracking_message_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_lf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routes_and_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version1_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_append_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_auth_keys, setup, teardown),
        cmocka_unit_test(test_pool),
        cmocka_unit_test_setup_teardown(test_crash_recovery, setup, teardown),
    };
    /* SPOOL_TEST_FILTER=test_crash* runs some of them. */
    if (getenv("SPOOL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SPOOL_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
