/* tracking_test.c - unit tests of the tracking log's line (writer and parser, old lines), the
 * Message-ID scan, and the reader: queries, a message's life, the sidecar index as a cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/ims.h"

#define DAY1 1714571107 /* 2024-05-01 13:45:07 GMT */
#define DAY 86400

struct fx {
    char dir[64];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/tracking_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    *state = fx;
    return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static char *read_text(const char *path)
{
    buf b = BUF_INIT;
    int rc = base_read_file(path, 1 << 26, &b);
    if (rc)
        fail_msg("read %s: %s", path, strerror(rc));
    return buf_detach(&b, NULL);
}

static void test_put_line(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    static const struct {
        ims_track_line l;
        const char *want;
    } cases[] = {
        /* the old eight fields: the old line */
        {{DAY1, 1012, "Q1", "a@b", "c@d", 42, "192.0.2.1", "h.test"},
         "2024-05-01 13:45:07 GMT\t1012\tQ1\ta@b\tc@d\t42\t192.0.2.1\th.test\n"},
        /* the null sender; the Message-ID alone: empty fields before it, none after */
        {{DAY1, 1012, "Q2", "", "c@d", 7, "::1", "h.test", .message_id = "<m@x>"},
         "2024-05-01 13:45:07 GMT\t1012\tQ2\t<>\tc@d\t7\t::1\th.test\t\t\t\t<m@x>\n"},
        /* every field; tabs and line breaks become spaces */
        {{DAY1, 1011, "Q3", "a\tb", "c\r\nd", 1, "ip", "h", "plain", "mx[192.0.2.9]",
          "250 2.0.0 Ok\tqueued", "<m>", "R", "root (uid 0)"},
         "2024-05-01 13:45:07 GMT\t1011\tQ3\ta b\tc  d\t1\tip\th\tplain\tmx[192.0.2.9]\t"
         "250 2.0.0 Ok queued\t<m>\tR\troot (uid 0)\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(ims_tracking_put(t, &cases[i].l), 0);
    ims_tracking_close(t);
    char path[128];
    snprintf(path, sizeof path, "%s/20240501.log", fx->dir);
    char *text = read_text(path);
    char *p = text;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].want);
        if (strncmp(p, cases[i].want, n))
            fail_msg("line %zu: got %.*s want %s", i, (int)n, p, cases[i].want);
        p += n;
    }
    assert_string_equal(p, "");
    free(text);
}

/* size_of - the bytes in path, 0 when it is not there. */
static off_t size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) ? 0 : st.st_size;
}

/* Lines put in a hold wait in memory until the last release writes them, in order, in one
 * append; a line of another day goes to its own file; many lines overflow the hold early. */
static void test_hold(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    char d1[128], d2[128];
    snprintf(d1, sizeof d1, "%s/20240501.log", fx->dir);
    snprintf(d2, sizeof d2, "%s/20240502.log", fx->dir);
    ims_track_line l = {DAY1, 1012, "Q1", "a@b", "c@d", 42, "192.0.2.1", "h.test"};
    assert_int_equal(ims_tracking_put(t, &l), 0); /* no hold: written at once */
    off_t one = size_of(d1);
    assert_true(one > 0);
    ims_tracking_hold(t);
    ims_tracking_hold(t); /* holds nest */
    l.qid = "Q2";
    assert_int_equal(ims_tracking_put(t, &l), 0);
    l.qid = "Q3";
    assert_int_equal(ims_tracking_put(t, &l), 0);
    assert_int_equal(size_of(d1), one);
    assert_int_equal(ims_tracking_release(t), 0);
    assert_int_equal(size_of(d1), one); /* one hold is left */
    l.when = DAY1 + DAY;                /* another day: the held lines go first */
    l.qid = "Q4";
    assert_int_equal(ims_tracking_put(t, &l), 0);
    assert_int_equal(size_of(d1), 3 * one);
    assert_int_equal(size_of(d2), 0);
    assert_int_equal(ims_tracking_release(t), 0);
    assert_int_equal(size_of(d2), one);
    assert_int_equal(ims_tracking_release(t), 0); /* one release too many: nothing */
    char *text = read_text(d1);
    assert_non_null(strstr(text, "\tQ1\t"));
    assert_true(strstr(text, "\tQ1\t") < strstr(text, "\tQ2\t"));
    assert_true(strstr(text, "\tQ2\t") < strstr(text, "\tQ3\t"));
    assert_null(strstr(text, "\tQ4\t"));
    free(text);
    /* More than the hold keeps: written before the release, whole lines only. */
    ims_tracking_hold(t);
    size_t many = IMS_TRACK_HELD_BYTES / (size_t)one + 2;
    for (size_t i = 0; i < many; i++)
        assert_int_equal(ims_tracking_put(t, &l), 0);
    off_t part = size_of(d2);
    assert_true(part > one && part < (off_t)(many + 1) * one);
    assert_int_equal(part % one, 0);
    /* Close writes what a hold left. */
    ims_tracking_close(t);
    assert_int_equal(size_of(d2), (off_t)(many + 1) * one);
}

static void test_field_cut(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    char *big = malloc(3 * IMS_TRACK_FIELD_MAX);
    memset(big, 'x', 3 * IMS_TRACK_FIELD_MAX - 1);
    big[3 * IMS_TRACK_FIELD_MAX - 1] = 0;
    ims_track_line l = {DAY1, 1011, big, big, big, 1, big, big, big, big, big, big, big, big};
    assert_int_equal(ims_tracking_put(t, &l), 0);
    ims_tracking_close(t);
    char path[128];
    snprintf(path, sizeof path, "%s/20240501.log", fx->dir);
    char *text = read_text(path);
    size_t n = strlen(text);
    assert_true(n < IMS_TRACK_LINE_MAX);
    assert_int_equal(text[n - 1], '\n');
    ims_track_line got;
    assert_int_equal(ims_track_parse(text, n - 1, &got), 0);
    assert_int_equal(strlen(got.actor), IMS_TRACK_FIELD_MAX);
    assert_int_equal(strlen(got.qid), IMS_TRACK_FIELD_MAX);
    free(text);
    free(big);
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int rc;
        unsigned event;
        const char *qid, *rcpt, *tls, *remote, *reply, *msgid, *ref, *actor;
    } cases[] = {
        /* an old line (eight fields) and an old one with its TLS field */
        {"2024-05-01 13:45:07 GMT\t1012\tQ\ta@b\tc@d\t42\t192.0.2.1\th.test", 0, 1012, "Q", "c@d",
         "", "", "", "", "", ""},
        {"2024-05-01 13:45:07 GMT\t1011\tQ\ta@b\tc@d\t42\t192.0.2.1\th.test\tplain", 0, 1011, "Q",
         "c@d", "plain", "", "", "", "", ""},
        {"2024-05-01 13:45:07 GMT\t1017\tQ\ta@b\tc@d\t42\tip\th\t\tmx\t550 no\t<i>\tR\tme", 0, 1017,
         "Q", "c@d", "", "mx", "550 no", "<i>", "R", "me"},
        /* a later version's extra fields are ignored */
        {"2024-05-01 13:45:07 GMT\t1011\tQ\ta\tc\t1\tip\th\tt\tr\ty\tm\tR\tA\tmore\tmore", 0, 1011,
         "Q", "c", "t", "r", "y", "m", "R", "A"},
        {"2024-05-01 13:45:07 GMT\t1012\tQ\ta@b\tc@d\t42\t192.0.2.1", EBADMSG},
        {"2024-05-01 13:45:07\t1012\tQ\ta@b\tc@d\t42\t192.0.2.1\th", EBADMSG},
        {"2024-13-01 13:45:07 GMT\t1012\tQ\ta@b\tc@d\t42\t192.0.2.1\th", EBADMSG},
        {"2024-05-01 13:45:07 GMT\tx\tQ\ta@b\tc@d\t42\t192.0.2.1\th", EBADMSG},
        {"2024-05-01 13:45:07 GMT\t1012\tQ\ta@b\tc@d\t-1\t192.0.2.1\th", EBADMSG},
        {"", EBADMSG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char b[512];
        snprintf(b, sizeof b, "%s", cases[i].line);
        ims_track_line l;
        int rc = ims_track_parse(b, strlen(b), &l);
        if (rc != cases[i].rc)
            fail_msg("case %zu: got %d, want %d", i, rc, cases[i].rc);
        if (rc)
            continue;
        assert_int_equal(l.when, DAY1);
        assert_int_equal(l.event, cases[i].event);
        assert_string_equal(l.qid, cases[i].qid);
        assert_string_equal(l.rcpt, cases[i].rcpt);
        assert_string_equal(l.tls, cases[i].tls);
        assert_string_equal(l.remote, cases[i].remote);
        assert_string_equal(l.reply, cases[i].reply);
        assert_string_equal(l.message_id, cases[i].msgid);
        assert_string_equal(l.ref, cases[i].ref);
        assert_string_equal(l.actor, cases[i].actor);
    }
}

static void test_message_id(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        const char *want; /* NULL: none */
    } cases[] = {
        {"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody", "<a@b>"},
        {"message-id:<a@b>\n\n", "<a@b>"},
        {"MESSAGE-ID:   <a@b>   \r\nX: y\r\n\r\n", "<a@b>"},
        {"Message-ID:\r\n <folded@b>\r\nX: y\r\n\r\n", "<folded@b>"},
        {"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n", NULL},
        {"X-Message-ID: <no@b>\r\n\r\n", NULL},
        {"Subject: x\r\n", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64] = "junk";
        bool got = ims_track_message_id(cases[i].head, strlen(cases[i].head), out, sizeof out);
        if (got != (cases[i].want != NULL) || (got && strcmp(out, cases[i].want)))
            fail_msg("case %zu: got %d \"%s\", want %s", i, got, got ? out : "",
                     cases[i].want ? cases[i].want : "none");
    }
    char small[6];
    assert_true(ims_track_message_id("Message-ID: <abcdefgh>\n\n", 24, small, sizeof small));
    assert_string_equal(small, "<abcd");
}

/* A small world: a relayed message R, a bounced one B with its NDR N, a local one L; R and
 * B both for bob@remote.test; B's life crosses midnight. */
static void write_world(ims_tracking *t)
{
    static const ims_track_line ls[] = {
        {DAY1, 1012, "R", "alice@x", "bob@remote.test", 10, "ip", "h", .message_id = "<r@x>"},
        {DAY1 + 1, 1010, "R", "alice@x", "bob@remote.test", 10, "ip", "h"},
        {DAY1 + 5, 1011, "R", "alice@x", "bob@remote.test", 10, "ip", "h", "plain", "mx[1.2.3.4]",
         "250 2.0.0 Ok"},
        {DAY1 + 2, 1012, "B", "carol@x", "bob@remote.test", 20, "ip", "h", .message_id = "<b@x>"},
        {DAY1 + 3, 1010, "B", "carol@x", "bob@remote.test", 20, "ip", "h"},
        {DAY1 + 4, 1100, "B", "carol@x", "bob@remote.test", 20, "ip", "h", .remote = "mx",
         .reply = "451 4.3.0 later"},
        {DAY1 + DAY, 1017, "B", "carol@x", "bob@remote.test", 20, "ip", "h", .remote = "mx",
         .reply = "550 5.1.1 no such user", .ref = "N"},
        {DAY1 + DAY + 1, 1012, "N", "", "carol@x", 30, "ip", "h", .message_id = "<n@h>"},
        {DAY1 + DAY + 2, 1013, "N", "", "carol@x", 30, "ip", "h"},
        {DAY1 + 6, 1012, "L", "dave@x", "erin@h", 5, "ip", "h", .message_id = "<l@x>"},
        {DAY1 + 7, 1013, "L", "dave@x", "erin@h", 5, "ip", "h"},
    };
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        assert_int_equal(ims_tracking_put(t, &ls[i]), 0);
}

/* life - "qid:event,event;..." for r, to compare with a want string. */
static void life(const ims_track_result *r, char *out, size_t size)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < r->nmsgs; i++) {
        o += (size_t)snprintf(out + o, size - o, "%s%s:", i ? ";" : "", r->msgs[i].qid);
        for (size_t k = 0; k < r->msgs[i].nevents; k++)
            o += (size_t)snprintf(out + o, size - o, "%s%u", k ? "," : "",
                                  r->msgs[i].events[k].event);
    }
}

static void check_query(const char *dir, const ims_track_query *q, const char *want)
{
    ims_track_result r;
    assert_int_equal(ims_track_find(dir, q, &r), 0);
    char got[512];
    life(&r, got, sizeof got);
    if (strcmp(got, want))
        fail_msg("query qid=%s msgid=%s sender=%s rcpt=%s (index %s): got %s, want %s",
                 q->qid ? q->qid : "-", q->message_id ? q->message_id : "-",
                 q->sender ? q->sender : "-", q->rcpt ? q->rcpt : "-", q->no_index ? "off" : "on",
                 got, want);
    ims_track_result_free(&r);
}

static void test_queries(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    write_world(t);
    ims_tracking_close(t);
    time_t lo = DAY1 - DAY, hi = DAY1 + 2 * DAY;
    static const char bounce[] = "B:1012,1010,1100,1017;N:1012,1013";
    static const struct {
        ims_track_query q;
        const char *want;
    } cases[] = {
        {{.message_id = "<r@x>"}, "R:1012,1010,1011"},
        {{.message_id = "R@X"}, "R:1012,1010,1011"}, /* without <>, any case */
        {{.message_id = "<b@x>"}, bounce},
        {{.qid = "B"}, bounce},
        {{.qid = "N"}, "N:1012,1013"},
        {{.qid = "n"}, "N:1012,1013"},
        {{.rcpt = "BOB@remote.test"}, "R:1012,1010,1011;B:1012,1010,1100,1017;N:1012,1013"},
        {{.sender = "carol@x"}, bounce},
        {{.sender = "<>"}, "N:1012,1013"},
        {{.sender = "<Carol@x>"}, bounce}, /* with <>, any case */
        {{.sender = ""}, "N:1012,1013"},
        {{.sender = "carol@x", .rcpt = "bob@remote.test"}, bounce},
        {{.sender = "alice@x", .message_id = "<b@x>"}, ""},
        {{.message_id = "<nothing@x>"}, ""},
        {{.rcpt = "erin@h"}, "L:1012,1013"},
    };
    for (int pass = 0; pass < 2; pass++) /* the first builds the index, the second reads it */
        for (int noidx = 0; noidx < 2; noidx++)
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                ims_track_query q = cases[i].q;
                q.since = lo;
                q.until = hi;
                q.no_index = noidx;
                check_query(fx->dir, &q, cases[i].want);
            }
    /* The range selects the matching lines; the life is whole. */
    ims_track_query q = {.rcpt = "carol@x", .since = DAY1 + DAY, .until = hi};
    check_query(fx->dir, &q, "N:1012,1013");
    q = (ims_track_query){.rcpt = "bob@remote.test", .since = DAY1 + 3, .until = DAY1 + 4};
    check_query(fx->dir, &q, "B:1012,1010,1100,1017;N:1012,1013");
    q = (ims_track_query){.since = DAY1 + 6, .until = DAY1 + 6}; /* time alone */
    check_query(fx->dir, &q, "L:1012,1013");
    q = (ims_track_query){.qid = "R", .since = DAY1 + 10 * DAY, .until = DAY1 + 11 * DAY};
    check_query(fx->dir, &q, "");
    /* A match on the second day: the life from the first day too. */
    q = (ims_track_query){.qid = "B", .since = DAY1 + DAY - 10, .until = hi};
    check_query(fx->dir, &q, bounce);

    /* The details of one event come through. */
    ims_track_result r;
    q = (ims_track_query){.qid = "B", .since = lo, .until = hi};
    assert_int_equal(ims_track_find(fx->dir, &q, &r), 0);
    assert_int_equal(r.nmsgs, 2);
    assert_string_equal(r.msgs[0].message_id, "<b@x>");
    assert_string_equal(r.msgs[0].sender, "carol@x");
    const ims_track_line *e = &r.msgs[0].events[3];
    assert_string_equal(e->reply, "550 5.1.1 no such user");
    assert_string_equal(e->remote, "mx");
    assert_string_equal(e->ref, "N");
    assert_string_equal(r.msgs[1].sender, "<>");
    ims_track_result_free(&r);

    char missing[128];
    snprintf(missing, sizeof missing, "%s/none", fx->dir);
    assert_int_equal(ims_track_find(missing, &q, &r), ENOENT);
    ims_track_result_free(&r);
}

static void find(const char *dir, const char *msgid, ims_track_result *r)
{
    ims_track_query q = {.message_id = msgid, .since = DAY1 - DAY, .until = DAY1 + 2 * DAY};
    assert_int_equal(ims_track_find(dir, &q, r), 0);
}

static void test_index_cache(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    write_world(t);
    ims_track_result r;
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.index_built, 2); /* both days */
    assert_int_equal(r.files_read, 0);
    ims_track_result_free(&r);
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.index_built, 0); /* warm */
    assert_int_equal(r.msgs[0].nevents, 3);
    ims_track_result_free(&r);

    /* Appended after the index: the tail is indexed. */
    ims_track_line more = {DAY1 + 9, 1012, "S", "z@x", "y@h", 1, "ip", "h", .message_id = "<s@x>"};
    assert_int_equal(ims_tracking_put(t, &more), 0);
    more.event = 1013;
    more.message_id = NULL;
    more.when++;
    assert_int_equal(ims_tracking_put(t, &more), 0);
    find(fx->dir, "<s@x>", &r);
    assert_int_equal(r.index_built, 1);
    assert_int_equal(r.nmsgs, 1);
    assert_int_equal(r.msgs[0].nevents, 2);
    ims_track_result_free(&r);

    /* Deleted: built again. Damaged: built again. */
    char idx[192];
    snprintf(idx, sizeof idx, "%s/.index/20240501.idx", fx->dir);
    assert_int_equal(unlink(idx), 0);
    find(fx->dir, "<s@x>", &r);
    assert_int_equal(r.index_built, 1);
    assert_int_equal(r.msgs[0].nevents, 2);
    ims_track_result_free(&r);
    assert_int_equal(truncate(idx, 40), 0);
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.index_built, 1);
    assert_int_equal(r.msgs[0].nevents, 3);
    ims_track_result_free(&r);

    /* A log written again from scratch (another inode, shorter): not believed. */
    char log[192], saved[192];
    snprintf(log, sizeof log, "%s/20240501.log", fx->dir);
    snprintf(saved, sizeof saved, "%s/saved", fx->dir);
    assert_int_equal(rename(log, saved), 0);
    ims_tracking_close(t);
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    more.when = DAY1 + 100;
    more.qid = "T";
    more.message_id = "<t@x>";
    assert_int_equal(ims_tracking_put(t, &more), 0);
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.nmsgs, 0);
    ims_track_result_free(&r);
    find(fx->dir, "<t@x>", &r);
    assert_int_equal(r.nmsgs, 1);
    ims_track_result_free(&r);
    ims_tracking_close(t);

    /* An index that cannot be written (its folder is a file: as root too): the files are
     * read, the answer is the same. */
    char idir[160];
    snprintf(idir, sizeof idir, "%s/.index", fx->dir);
    assert_int_equal(unlink(idx), 0);
    char other[192];
    snprintf(other, sizeof other, "%s/.index/20240502.idx", fx->dir);
    unlink(other);
    assert_int_equal(rmdir(idir), 0);
    FILE *f = fopen(idir, "w");
    assert_non_null(f);
    fclose(f);
    find(fx->dir, "<t@x>", &r);
    assert_int_equal(r.nmsgs, 1);
    assert_string_equal(r.msgs[0].qid, "T");
    assert_true(r.index_built > 0); /* built in memory each time, never saved */
    ims_track_result_free(&r);
    find(fx->dir, "<t@x>", &r);
    assert_int_equal(r.nmsgs, 1);
    assert_true(r.index_built > 0);
    ims_track_result_free(&r);
    assert_int_equal(unlink(idir), 0);
}

/* A day file written again in place (same inode, no longer ending where the index does) is
 * indexed again: the new line before the old end is found. */
static void test_index_rewritten(void **state)
{
    struct fx *fx = *state;
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    write_world(t);
    ims_tracking_close(t);
    ims_track_result r;
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.nmsgs, 1);
    ims_track_result_free(&r);
    char log[128];
    snprintf(log, sizeof log, "%s/20240501.log", fx->dir);
    FILE *f = fopen(log, "r+"); /* the same inode */
    assert_non_null(f);
    fputs("2024-05-01 13:50:00 GMT\t1012\tW\ta@b\tc@d\t1\tip\th\t\t\t\t<w@x>\n", f);
    for (int i = 0; i < 4096; i++)
        fputc('x', f);
    fputc('\n', f);
    fclose(f);
    find(fx->dir, "<w@x>", &r);
    assert_int_equal(r.nmsgs, 1);
    assert_string_equal(r.msgs[0].qid, "W");
    ims_track_result_free(&r);
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.nmsgs, 0);
    ims_track_result_free(&r);
}

/* Made by root, the index belongs to the log folder's owner (the service account), so the
 * service's own imsctl track can extend it later. */
static void test_index_owner(void **state)
{
    struct fx *fx = *state;
    if (geteuid() != 0)
        skip();
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    write_world(t);
    ims_tracking_close(t);
    assert_int_equal(chown(fx->dir, 65534, 65534), 0);
    ims_track_result r;
    find(fx->dir, "<r@x>", &r);
    assert_int_equal(r.nmsgs, 1);
    ims_track_result_free(&r);
    char p[192];
    struct stat st;
    snprintf(p, sizeof p, "%s/.index", fx->dir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_uid, 65534);
    snprintf(p, sizeof p, "%s/.index/20240501.idx", fx->dir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_uid, 65534);
    assert_int_equal(st.st_gid, 65534);
}

static void test_admin_and_names(void **state)
{
    struct fx *fx = *state;
    char actor[64];
    ims_tracking_actor(0, actor, sizeof actor);
    assert_string_equal(actor, "root (uid 0)");
    ims_tracking_actor(4000000000u, actor, sizeof actor);
    assert_string_equal(actor, "uid 4000000000");
    ims_tracking *t;
    assert_int_equal(ims_tracking_open(fx->dir, &t), 0);
    assert_int_equal(ims_tracking_admin(t, IMS_TRACK_ADMIN_HELD, "Q", "a@b", "c@d", "root (uid 0)"),
                     0);
    ims_tracking_close(t);
    ims_track_query q = {.qid = "Q", .since = time(NULL) - DAY, .until = time(NULL) + DAY};
    ims_track_result r;
    assert_int_equal(ims_track_find(fx->dir, &q, &r), 0);
    assert_int_equal(r.nmsgs, 1);
    assert_int_equal(r.msgs[0].events[0].event, IMS_TRACK_ADMIN_HELD);
    assert_string_equal(r.msgs[0].events[0].actor, "root (uid 0)");
    ims_track_result_free(&r);
    assert_string_equal(ims_track_event_name(1012), "Received inbound");
    assert_string_equal(ims_track_event_name(IMS_TRACK_DEFERRED), "Deferred, will retry");
    assert_string_equal(ims_track_event_name(9999), "Event");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_cut, setup, teardown),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_message_id),
        cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_and_names, setup, teardown),
    };
    return cmocka_run_group_tests_name("tracking", tests, NULL, NULL);
}
