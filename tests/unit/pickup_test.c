/* pickup_test.c - unit tests of MTS-OUT: the X-Sender/X-Receiver envelope, the content's line
 * ends, the spool's pickup line and claims (removed at commit, settled at open), and the
 * pickup thread: a file taken once into the spool, a bad one moved to Bad, a claim left by a
 * crash spooled again only when its message never reached In. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "regfx.h"

#include "base/base.h"
#include "ims/pickup_int.h"
#include "ims/spool_int.h"

#define WAIT_MS 20000

static int parse(const char *text, bool eof, ims_pickup_env *e, const char **why)
{
    return ims_pickup_parse(text, strlen(text), eof, e, why);
}

static void test_parse(void **state)
{
    (void)state;
    ims_pickup_env e;
    const char *why;
    /* LF lines, bare and bracketed addresses, any case, X-Sender anywhere among them. */
    const char *t = "x-receiver: <alice@example.com>\nX-Sender: bob@example.org\n"
                    "X-RECEIVER:   carol@example.net  \nSubject: hi\n\nbody\n";
    assert_int_equal(parse(t, true, &e, &why), 0);
    assert_string_equal(e.sender, "bob@example.org");
    assert_int_equal(e.nrcpt, 2);
    assert_string_equal(e.rcpts[0].address, "alice@example.com");
    assert_false(e.rcpts[0].bad);
    assert_string_equal(e.rcpts[1].address, "carol@example.net");
    assert_string_equal(t + e.content_off, "Subject: hi\n\nbody\n");
    ims_pickup_env_free(&e);
    /* CRLF lines; the null sender; a receiver that is no address is kept, marked bad. */
    t = "X-Sender: <>\r\nX-Receiver: <alice@example.com>\r\nX-Receiver: not an address\r\n"
        "X-Receiver: <u@[192.0.2.1]>\r\nFrom: x\r\n";
    assert_int_equal(parse(t, true, &e, &why), 0);
    assert_string_equal(e.sender, "");
    assert_int_equal(e.nrcpt, 3);
    assert_false(e.rcpts[0].bad);
    assert_true(e.rcpts[1].bad);
    assert_string_equal(e.rcpts[1].address, "not an address");
    assert_true(e.rcpts[2].bad); /* a literal: no route */
    assert_string_equal(t + e.content_off, "From: x\r\n");
    ims_pickup_env_free(&e);
    /* A file that is all envelope: empty content. */
    t = "X-Sender: <a@b.example>\nX-Receiver: <c@d.example>";
    assert_int_equal(parse(t, true, &e, &why), 0);
    assert_int_equal(e.content_off, strlen(t));
    ims_pickup_env_free(&e);
    /* Refused: no sender, two, a bad one, no receiver, folding, order. */
    static const struct {
        const char *text, *why;
    } bad[] = {
        {"X-Receiver: <a@b.example>\nSubject: x\n", "no X-Sender line"},
        {"X-Sender: <a@b.example>\nX-Sender: <c@b.example>\nX-Receiver: <a@b.example>\n",
         "more than one X-Sender"},
        {"X-Sender: a b c\nX-Receiver: <a@b.example>\n", "the X-Sender is not an address"},
        {"X-Sender: <a@b.example>\nSubject: x\n", "no X-Receiver line"},
        {"X-Sender: <a@b.example>\nX-Receiver: <a@b.example>,\n <c@b.example>\n",
         "an X-Sender or X-Receiver line is folded"},
        {"X-Sender:\n\t<a@b.example>\nX-Receiver: <a@b.example>\n",
         "an X-Sender or X-Receiver line is folded"},
        /* An X-Receiver after another header is content, not envelope. */
        {"X-Sender: <a@b.example>\nSubject: x\nX-Receiver: <a@b.example>\n", "no X-Receiver line"},
        {"Subject: x\nX-Sender: <a@b.example>\nX-Receiver: <a@b.example>\n", "no X-Sender line"},
        {"", "no X-Sender line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i].text, true, &e, &why), EBADMSG);
        assert_string_equal(why, bad[i].why);
        assert_null(e.sender);
        assert_int_equal(e.nrcpt, 0);
    }
    /* Not all there yet: more is needed (a line cut, or the next line's first byte). */
    assert_int_equal(parse("X-Sender: <a@b.exa", false, &e, &why), EAGAIN);
    assert_int_equal(parse("X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\n", false, &e, &why),
                     EAGAIN);
    assert_int_equal(
        parse("X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\nS", false, &e, &why), 0);
    assert_int_equal(e.content_off, strlen("X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\n"));
    ims_pickup_env_free(&e);
    assert_int_equal(
        parse("X-Sender: <a@b.example>\nX-Receiver: <c@d.example>\nx-rec", false, &e, &why),
        EAGAIN);
}

static void conv(const char *const *pieces, size_t n, int want, const char *out)
{
    ims_pickup_conv c = {0};
    buf b = BUF_INIT;
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++)
        rc = ims_pickup_crlf(&c, pieces[i], strlen(pieces[i]), &b);
    if (!rc)
        rc = ims_pickup_crlf_end(&c, &b);
    assert_int_equal(rc, want);
    if (!want) {
        assert_int_equal(b.len, strlen(out));
        assert_memory_equal(b.data, out, b.len);
        assert_int_equal(c.out, b.len);
    }
    buf_free(&b);
}

static void test_line_ends(void **state)
{
    (void)state;
    const char *a[] = {"a\nb\r\n", "c"};
    conv(a, 2, 0, "a\r\nb\r\nc\r\n");
    const char *split[] = {"line\r", "\n.\n"}; /* CR and LF in different reads; no stuffing */
    conv(split, 2, 0, "line\r\n.\r\n");
    const char *empty[] = {""};
    conv(empty, 1, 0, "");
    const char *bare_cr[] = {"a\rb\n"};
    conv(bare_cr, 1, EBADMSG, NULL);
    const char *last_cr[] = {"a\r"};
    conv(last_cr, 1, EBADMSG, NULL);
    const char nul[] = {'a', 0, '\n', 0};
    ims_pickup_conv c = {0};
    buf b = BUF_INIT;
    assert_int_equal(ims_pickup_crlf(&c, nul, 3, &b), EBADMSG);
    buf_free(&b);
}

/* --- the spool's side ------------------------------------------------------------------ */

static void touch(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

typedef struct done_rec {
    int calls, err;
    char id[IMS_QUEUE_ID_LEN + 1];
} done_rec;

static void done_cb(void *arg, int err, const char *id)
{
    done_rec *d = arg;
    d->calls++;
    d->err = err;
    snprintf(d->id, sizeof d->id, "%s", id);
}

static void wait_done(ims_spool *sp, done_rec *d)
{
    for (int ms = 0; ms < WAIT_MS && !d->calls; ms += 5) {
        struct pollfd pfd = {.fd = ims_spool_fd(sp), .events = POLLIN};
        poll(&pfd, 1, 5);
        ims_spool_dispatch(sp);
    }
    assert_int_equal(d->calls, 1);
}

struct paths {
    char root[128], claims[160], store[128], mts_out[160], bad[160], alice[160];
};

static void make_maildir(const char *p)
{
    char s[256];
    assert_int_equal(base_mkdir_p(p, 0700), 0);
    const char *subs[] = {"tmp", "new", "cur"};
    for (int i = 0; i < 3; i++) {
        snprintf(s, sizeof s, "%s/%s", p, subs[i]);
        assert_true(mkdir(s, 0700) == 0 || errno == EEXIST);
    }
}

static void paths_make(const char *dir, struct paths *p)
{
    snprintf(p->root, sizeof p->root, "%s/imcdata", dir);
    snprintf(p->store, sizeof p->store, "%s/store", dir);
    snprintf(p->mts_out, sizeof p->mts_out, "%s/MSExchangeIMC/.MTS-OUT", p->store);
    snprintf(p->bad, sizeof p->bad, "%s/MSExchangeIMC/.Bad", p->store);
    snprintf(p->alice, sizeof p->alice, "%s/alice", p->store);
    assert_int_equal(ims_pickup_claim_dir(p->mts_out, p->claims, sizeof p->claims), 0);
    assert_int_equal(base_mkdir_p(p->root, 0750), 0);
    make_maildir(p->mts_out);
    make_maildir(p->bad);
    make_maildir(p->alice);
}

static void test_spool_claims(void **state)
{
    struct fx *fx = *state;
    struct paths p;
    paths_make(fx->dir, &p);
    ims_spool_options o = {.log = &fx->log, .pickup_dir = p.claims, .host = "ims.test"};
    ims_spool *sp;
    assert_int_equal(ims_spool_open(p.root, &o, &sp), 0);
    assert_true(exists(p.mts_out, IMS_PICKUP_CLAIM_DIR));
    /* A pickup name must be a plain file name. */
    ims_rcpt r = {.address = "alice@example.com", .maildir = p.alice};
    ims_envelope env = {.sender = "", .rcpts = &r, .nrcpt = 1, .pickup = "../x"};
    ims_spool_msg *m;
    assert_int_equal(ims_spool_begin(sp, &env, &m), EINVAL);
    env.pickup = ".hidden";
    assert_int_equal(ims_spool_begin(sp, &env, &m), EINVAL);
    /* Committed: the claim goes; the spool file keeps the name. */
    touch(p.claims, "a", "claimed");
    env.pickup = "a";
    done_rec d = {0};
    assert_int_equal(ims_spool_submit(sp, &env, "x\r\n", 3, done_cb, &d), 0);
    wait_done(sp, &d);
    assert_int_equal(d.err, 0);
    assert_false(exists(p.claims, "a"));
    ims_spool_close(sp);
    char path[256];
    snprintf(path, sizeof path, "%s/In/%s", p.root, d.id);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ims_spool_file f;
    assert_int_equal(ims_spool_file_read(fd, &f), 0);
    close(fd);
    assert_string_equal(f.pickup, "a");
    ims_spool_file_free(&f);
    /* A crash between In's fsync and the claim's unlink: the claim is back. At open, before
     * delivery, the claim whose message is in In goes; one whose message is not stays. */
    touch(p.claims, "a", "claimed");
    touch(p.claims, "b", "claimed");
    fx->events[0] = 0;
    fx->log.levels[IMS_CAT_INIT_TERM] = IMS_LEVEL_MAXIMUM;
    assert_int_equal(ims_spool_open(p.root, &o, &sp), 0);
    assert_false(exists(p.claims, "a"));
    assert_true(exists(p.claims, "b"));
    assert_true(strstr(fx->events, "1003;") != NULL);
    ims_spool_close(sp);
    /* A message spooled long before a claim of the same name was made is not its. */
    touch(p.claims, "a", "claimed");
    /* ctime cannot be set back, so the spool file is made to look old instead: renamed to an
     * id of the year 2001 (the id's time is what is compared). */
    char old[256];
    snprintf(old, sizeof old, "%s/In/3B9ACA00%s", p.root, d.id + 8);
    assert_int_equal(rename(path, old), 0);
    assert_int_equal(ims_spool_open(p.root, &o, &sp), 0);
    assert_true(exists(p.claims, "a"));
    ims_spool_close(sp);
}

/* --- the pickup thread ----------------------------------------------------------------- */

struct world {
    struct paths p;
    directory *dir;
    ims_router *router;
    ims_spool *spool;
    ims_pickup *pickup;
};

static void world_open(struct fx *fx, struct world *w, bool with_pickup)
{
    dir_err err;
    assert_int_equal(dir_open(fx->reg, &w->dir), 0);
    if (!dir_is_local_domain(w->dir, "example.com")) {
        assert_int_equal(dir_domain_add(w->dir, "example.com", &err), 0);
        const char *alice[] = {"alice@example.com"};
        assert_int_equal(dir_mailbox_add(w->dir, "alice", NULL, alice, 1, NULL, &err), 0);
    }
    ims_settings s;
    ims_settings_defaults(&s, fx->dir);
    assert_int_equal(ims_router_new(&s, w->dir, &w->router), 0);
    ims_spool_options o = {.log = &fx->log, .pickup_dir = w->p.claims, .host = "ims.test"};
    assert_int_equal(ims_spool_open(w->p.root, &o, &w->spool), 0);
    if (!with_pickup)
        return;
    ims_pickup_options po = {.mts_out = w->p.mts_out,
                             .bad = w->p.bad,
                             .store_dir = w->p.store,
                             .host = "ims.test",
                             .spool = w->spool,
                             .router = w->router,
                             .log = &fx->log,
                             .max_size = 4096};
    assert_int_equal(ims_pickup_start(&po, &w->pickup), 0);
}

static void world_close(struct world *w)
{
    ims_pickup_stop(w->pickup);
    ims_spool_close(w->spool);
    ims_router_free(w->router);
    dir_close(w->dir);
    w->pickup = NULL;
}

/* pump - dispatch the spool and the pickup until pred holds. */
static void pump(struct world *w, bool (*pred)(struct world *), const char *what)
{
    for (int ms = 0; ms < WAIT_MS; ms += 5) {
        ims_spool_dispatch(w->spool);
        if (w->pickup)
            ims_pickup_dispatch(w->pickup);
        if (pred(w))
            return;
        usleep(5000);
    }
    fail_msg("timed out waiting for %s", what);
}

static bool taken_two(struct world *w)
{
    ims_pickup_stats st;
    ims_pickup_get_stats(w->pickup, &st);
    return st.taken == 2 && st.bad == 2;
}

/* deliver - write a file in tmp/ and rename it into new/, as a Maildir writer does. */
static void deliver(struct world *w, const char *name, const char *text)
{
    char tmp[256], new[256];
    snprintf(tmp, sizeof tmp, "%s/tmp", w->p.mts_out);
    touch(tmp, name, text);
    snprintf(tmp, sizeof tmp, "%s/tmp/%s", w->p.mts_out, name);
    snprintf(new, sizeof new, "%s/new/%s", w->p.mts_out, name);
    assert_int_equal(rename(tmp, new), 0);
}

/* in_file - the one spool file in In whose pickup name is name; its content into content. */
static bool in_file(struct world *w, const char *name, ims_spool_file *f, buf *content)
{
    char in[256];
    snprintf(in, sizeof in, "%s/In", w->p.root);
    DIR *d = opendir(in);
    struct dirent *e;
    bool found = false;
    while (!found && (e = readdir(d))) {
        if (!ims_spool_id_valid(e->d_name))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", in, e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0 || ims_spool_file_read(fd, f)) {
            if (fd >= 0)
                close(fd);
            continue;
        }
        if (f->pickup && !strcmp(f->pickup, name)) {
            found = true;
            if (content) {
                buf_reserve(content, f->content_len + 1);
                assert_int_equal(pread(fd, content->data, f->content_len, (off_t)f->content_off),
                                 (ssize_t)f->content_len);
                content->len = f->content_len;
            }
        } else {
            ims_spool_file_free(f);
        }
        close(fd);
    }
    closedir(d);
    return found;
}

static void test_pickup(void **state)
{
    struct fx *fx = *state;
    struct world w = {0};
    paths_make(fx->dir, &w.p);
    /* One file there before the start, one after; two bad ones. */
    char newdir[256];
    snprintf(newdir, sizeof newdir, "%s/new", w.p.mts_out);
    touch(newdir, "1.early",
          "X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>\n"
          "X-Receiver: <nobody@example.com>\nX-Receiver: <u@remote.example>\n"
          "Subject: early\n\nline\n.\nlast");
    world_open(fx, &w, true);
    deliver(&w, "2.late", "X-Sender: <>\r\nX-Receiver: <ALICE@example.com>\r\nSubject: late\r\n");
    deliver(&w, "3.bad", "Subject: no envelope\n\n");
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    deliver(&w, "4.big", big);
    pump(&w, taken_two, "two files taken, two bad");
    ims_pickup_stats st;
    ims_pickup_get_stats(w.pickup, &st);
    assert_int_equal(st.rcpt_failed, 1);
    /* MTS-OUT's queue counters: four claimed, four gone on (two spooled, two to Bad). */
    assert_int_equal(st.entered, 4);
    assert_int_equal(st.left, 4);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(count_files(newdir), 0);
    assert_int_equal(count_files(w.p.claims), 0);
    char badnew[256];
    snprintf(badnew, sizeof badnew, "%s/new", w.p.bad);
    assert_true(exists(badnew, "3.bad"));
    assert_true(exists(badnew, "4.big"));
    world_close(&w);
    assert_int_equal(count_events(fx->events, "4116;"), 2);
    assert_int_equal(count_events(fx->events, "4057;"), 1);
    /* The spool files: the envelope from the X- lines, the content without them, CRLF. */
    ims_spool_file f;
    buf c = BUF_INIT;
    assert_true(in_file(&w, "1.early", &f, &c));
    assert_string_equal(f.sender, "boss@example.org");
    assert_string_equal(f.client_ip, "unknown");
    assert_string_equal(f.helo, "ims.test");
    assert_int_equal(f.nrcpt, 2);
    assert_string_equal(f.rcpts[0].address, "alice@example.com");
    assert_int_equal(f.rcpts[0].route, IMS_ROUTE_LOCAL);
    assert_string_equal(f.rcpts[0].maildir, w.p.alice);
    assert_int_equal(f.rcpts[1].route, IMS_ROUTE_DNS);
    assert_string_equal(f.rcpts[1].dest, "remote.example");
    const char *want = "Subject: early\r\n\r\nline\r\n.\r\nlast\r\n";
    assert_int_equal(c.len, strlen(want));
    assert_memory_equal(c.data, want, c.len);
    ims_spool_file_free(&f);
    assert_true(in_file(&w, "2.late", &f, NULL));
    assert_string_equal(f.sender, "");
    ims_spool_file_free(&f);
    buf_free(&c);
}

static bool taken_one(struct world *w)
{
    ims_pickup_stats st;
    ims_pickup_get_stats(w->pickup, &st);
    return st.taken == 1;
}

/* A crash left two claims: one whose message reached In (the spool's open removes it), one
 * that never did (the pickup spools it at start). Each ends up in In exactly once. */
static void test_pickup_recovery(void **state)
{
    struct fx *fx = *state;
    struct world w = {0};
    paths_make(fx->dir, &w.p);
    const char *msg = "X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>\n\nhi\n";
    /* "done": spooled, then its claim put back as a crash before the unlink would leave it. */
    world_open(fx, &w, false);
    touch(w.p.claims, "done", msg);
    ims_rcpt r = {.address = "alice@example.com", .maildir = w.p.alice};
    ims_envelope env = {.sender = "boss@example.org", .rcpts = &r, .nrcpt = 1, .pickup = "done"};
    done_rec d = {0};
    assert_int_equal(ims_spool_submit(w.spool, &env, "\r\nhi\r\n", 6, done_cb, &d), 0);
    wait_done(w.spool, &d);
    world_close(&w);
    touch(w.p.claims, "done", msg);
    touch(w.p.claims, "lost", msg);
    world_open(fx, &w, true);
    pump(&w, taken_one, "the lost claim spooled");
    usleep(100000); /* a second submission would be made by now */
    ims_pickup_stats st;
    ims_pickup_get_stats(w.pickup, &st);
    assert_int_equal(st.taken, 1);
    assert_int_equal(st.entered, 1); /* the claim left by the crash (the other went at open) */
    assert_int_equal(st.left, 1);
    world_close(&w);
    assert_int_equal(count_files(w.p.claims), 0);
    /* In: one message for each name. */
    char in[256];
    snprintf(in, sizeof in, "%s/In", w.p.root);
    assert_int_equal(count_files(in), 3); /* two messages and Archive/ */
    ims_spool_file f;
    assert_true(in_file(&w, "done", &f, NULL));
    ims_spool_file_free(&f);
    assert_true(in_file(&w, "lost", &f, NULL));
    ims_spool_file_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test_setup_teardown(test_spool_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pickup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pickup_recovery, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
