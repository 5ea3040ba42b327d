/* queues_test.c - the queues that are directories (lib/ims queues.c): RootDir\In's spool
 * files, MTS-IN's copies (recipients from their spool file) and MTS-OUT's messages (new/ and
 * the claims in .taking) as the administrator's view; files that are not messages skipped. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "ims/ims.h"
#include "regfx.h"

#define QID "6B1133AA00000001"

static void put(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void mk(const char *base, const char *sub, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", base, sub);
    assert_int_equal(base_mkdir_p(out, 0700), 0);
}

/* a spool file (version 2) with one local and one remote recipient, the local one deferred
 * once by a mailbox that failed */
static const char spool_text[] = "IMS-SPOOL 2\n"
                                 "id " QID "\n"
                                 "time 1764720000\n"
                                 "client 192.0.2.1\n"
                                 "helo c.example\n"
                                 "host gw.example\n"
                                 "from alice@example.com\n"
                                 "rcpt -\t-\tbob@ims.test\t/x/store/bob\n"
                                 "rcpt -\t-\tcarol@remote.test\tdns:remote.test\n"
                                 "size 00000000000000000006\n"
                                 "\n"
                                 "hello\n"
                                 "hold\n";

static void test_in(void **state)
{
    struct fx *fx = *state;
    char root[128], in[160], gw[128];
    snprintf(root, sizeof root, "%s/imcdata", fx->dir);
    mk(root, "In", in, sizeof in);
    snprintf(gw, sizeof gw, "%s/store/MSExchangeIMC", fx->dir);
    put(in, QID, spool_text);
    put(in, "not-a-queue-id", "junk");
    put(in, "6B1133AA00000002", "IMS-SPOOL 2\nid 6B1133AA00000002\n"); /* cut short */
    ims_queue_dir *w;
    assert_int_equal(ims_queue_dir_open(IMS_QUEUE_IN, root, gw, &w), 0);
    ims_queue_msg m;
    assert_int_equal(ims_queue_dir_next(w, &m), 1);
    assert_string_equal(m.id, QID);
    assert_string_equal(m.sender, "alice@example.com");
    assert_int_equal(m.arrival, 1764720000);
    assert_int_equal(m.size, 6);
    assert_true(m.held);
    assert_int_equal(m.nrcpt, 1); /* only the mailbox's: the other is Out's business */
    assert_string_equal(m.rcpts[0].address, "bob@ims.test");
    assert_int_equal(m.rcpts[0].route, IMS_ROUTE_LOCAL);
    assert_string_equal(m.rcpts[0].dest, "/x/store/bob");
    assert_int_equal(m.rcpts[0].state, IMS_QRCPT_WAITING);
    assert_int_equal(ims_queue_dir_next(w, &m), 0);
    ims_queue_dir_close(w);
    assert_int_equal(ims_queue_dir_open(IMS_QUEUE_OUT, root, gw, &w), EINVAL);
}

static void test_mts_in(void **state)
{
    struct fx *fx = *state;
    char root[128], in[160], gw[128], mtsin[192];
    snprintf(root, sizeof root, "%s/imcdata", fx->dir);
    mk(root, "In", in, sizeof in);
    snprintf(gw, sizeof gw, "%s/store/MSExchangeIMC", fx->dir);
    mk(gw, ".MTS-IN/new", mtsin, sizeof mtsin);
    put(in, QID, spool_text);
    put(mtsin, QID ".0.gw,S=40", "Return-Path: <alice@example.com>\nReceived: x\n\nhello\n");
    ims_queue_dir *w;
    assert_int_equal(ims_queue_dir_open(IMS_QUEUE_MTS_IN, root, gw, &w), 0);
    ims_queue_msg m;
    assert_int_equal(ims_queue_dir_next(w, &m), 1);
    assert_string_equal(m.id, QID);
    assert_string_equal(m.sender, "alice@example.com");
    assert_int_equal(m.nrcpt, 1);
    assert_string_equal(m.rcpts[0].address, "bob@ims.test");
    assert_int_equal(m.rcpts[0].state, IMS_QRCPT_SENDING);
    assert_int_equal(ims_queue_dir_next(w, &m), 0);
    ims_queue_dir_close(w);
}

static void test_mts_out(void **state)
{
    struct fx *fx = *state;
    char root[128], gw[128], nw[192], taking[192];
    snprintf(root, sizeof root, "%s/imcdata", fx->dir);
    snprintf(gw, sizeof gw, "%s/store/MSExchangeIMC", fx->dir);
    mk(gw, ".MTS-OUT/new", nw, sizeof nw);
    mk(gw, ".MTS-OUT/.taking", taking, sizeof taking);
    put(nw, "msg1",
        "X-Sender: <org@ims.test>\r\nX-Receiver: <a@remote.test>\r\n"
        "X-Receiver: b@remote.test\r\nSubject: hi\r\n\r\nbody\r\n");
    put(taking, "msg2", "X-Sender: org@ims.test\nX-Receiver: c@remote.test\n\nbody\n");
    size_t seen = 0;
    ims_queue_dir *w;
    assert_int_equal(ims_queue_dir_open(IMS_QUEUE_MTS_OUT, root, gw, &w), 0);
    ims_queue_msg m;
    while (ims_queue_dir_next(w, &m) == 1) {
        seen++;
        assert_string_equal(m.sender, "org@ims.test");
        if (!strcmp(m.id, "msg1")) {
            assert_int_equal(m.nrcpt, 2);
            assert_string_equal(m.rcpts[0].address, "a@remote.test");
            assert_string_equal(m.rcpts[1].address, "b@remote.test");
            assert_int_equal(m.rcpts[0].state, IMS_QRCPT_WAITING);
        } else {
            assert_string_equal(m.id, "msg2");
            assert_int_equal(m.nrcpt, 1);
            assert_int_equal(m.rcpts[0].state, IMS_QRCPT_SENDING); /* being converted */
        }
    }
    assert_int_equal(seen, 2);
    ims_queue_dir_close(w);
}

static void test_names(void **state)
{
    (void)state;
    ims_queue_kind k;
    assert_int_equal(ims_queue_parse("MTS-OUT", &k), 0);
    assert_int_equal(k, IMS_QUEUE_MTS_OUT);
    assert_int_equal(ims_queue_parse("out", &k), 0);
    assert_string_equal(ims_queue_name(k), "Out");
    assert_int_equal(ims_queue_parse("sideways", &k), EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mts_in, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mts_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
