/* dropdir_test.c - unit tests of the Pickup directory's parser (lib/ims dropdir.c): the
 * envelope from X-Sender/X-Receiver, else from Sender/From and To/Cc/Bcc; Bcc cut; folded
 * fields; address lists; bad files; the Received field naming the owner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "ims/pickup_int.h"

static int parse(const char *t, bool eof, unsigned flags, ims_dropdir_msg *m, const char **why)
{
    return ims_dropdir_parse(t, strlen(t), eof, flags, m, why);
}

/* rcpts - the recipients joined by spaces, bad ones marked with '!'. */
static void rcpts(const ims_dropdir_msg *m, char *out, size_t n)
{
    out[0] = 0;
    for (size_t i = 0; i < m->nrcpt; i++) {
        size_t k = strlen(out);
        snprintf(out + k, n - k, "%s%s%s", i ? " " : "", m->rcpts[i].bad ? "!" : "",
                 m->rcpts[i].address);
    }
}

static void test_table(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *sender, *rcpts; /* NULL sender: EBADMSG wanted */
        bool given;
    } t[] = {
        {"X-Sender: <boss@example.org>\nX-Receiver: <alice@example.com>\nTo: x@example.net\n\nb\n",
         "boss@example.org", "alice@example.com", true},
        {"X-Sender: <>\r\nX-Receiver: a@example.com, <b@example.com>\r\n\r\n", "",
         "a@example.com b@example.com", true},
        {"From: Boss <boss@example.org>\nSender: sec@example.org\nTo: \"Smith, A\" "
         "<alice@example.com>,\n bob@example.com (Bob)\nCc: team: c@example.com;\n"
         "Bcc: d@example.com\n\nbody\n",
         "sec@example.org", "alice@example.com bob@example.com c@example.com d@example.com", false},
        {"From: boss@example.org\nTo: Alice Smith\n\n", "boss@example.org", "!AliceSmith", false},
        {"From: boss@example.org\nTo: undisclosed-recipients:;\n\n", NULL, NULL, false},
        {"Subject: none\n\nbody\n", NULL, NULL, false},
        {"X-Sender: a@example.com\nX-Sender: b@example.com\nX-Receiver: c@example.com\n\n", NULL,
         NULL, false},
        {"X-Sender: not an address\nX-Receiver: c@example.com\n\n", NULL, NULL, false},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        ims_dropdir_msg m;
        const char *why;
        int rc = parse(t[i].in, true, 0, &m, &why);
        if (!t[i].sender) {
            assert_int_equal(rc, EBADMSG);
            assert_non_null(why);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_string_equal(m.sender, t[i].sender);
        char got[512];
        rcpts(&m, got, sizeof got);
        assert_string_equal(got, t[i].rcpts);
        assert_int_equal(m.rcpts_given, t[i].given);
        ims_dropdir_msg_free(&m);
    }
}

static void test_cuts_and_offsets(void **state)
{
    (void)state;
    const char *in =
        "X-Sender: <a@example.com>\nX-Receiver: <b@example.com>\n"
        "To: b@example.com\nBcc: c@example.com,\n d@example.com\nDate: x\n\nBcc: body\n";
    ims_dropdir_msg m;
    const char *why;
    assert_int_equal(parse(in, true, 0, &m, &why), 0);
    assert_int_equal(m.content_off,
                     strlen("X-Sender: <a@example.com>\nX-Receiver: <b@example.com>\n"));
    assert_int_equal(m.ncut, 1);
    assert_memory_equal(in + m.cuts[0].off, "Bcc: c@example.com,\n d@example.com\n", m.cuts[0].len);
    assert_true(m.has_date);
    assert_false(m.has_message_id);
    assert_false(m.has_from);
    assert_string_equal(in + m.header_end, "Bcc: body\n");
    ims_dropdir_msg_free(&m);
    /* Not at eof: a field that may go on, or no end of the header yet, asks for more. */
    assert_int_equal(parse("From: a@example.com\nTo: b@example.com\n", false, 0, &m, &why), EAGAIN);
    assert_int_equal(parse("From: a@example.com\nTo: b@example.com\n\n", false, 0, &m, &why), 0);
    ims_dropdir_msg_free(&m);
    /* ims-sendmail's input: X- lines are fields to cut, nothing is required. */
    assert_int_equal(parse("X-Receiver: evil@example.com\nSubject: s\n\n", true,
                           IMS_DROPDIR_NO_ENVELOPE | IMS_DROPDIR_NO_HEADERS, &m, &why),
                     0);
    assert_int_equal(m.nrcpt, 0);
    assert_int_equal(m.ncut, 1);
    assert_int_equal(m.cuts[0].off, 0);
    ims_dropdir_msg_free(&m);
}

static void test_too_long(void **state)
{
    (void)state;
    size_t n = IMS_DROPDIR_HEADER_MAX + 100;
    char *p = malloc(n);
    assert_non_null(p);
    memset(p, 'a', n);
    memcpy(p, "Subject: ", 9);
    ims_dropdir_msg m;
    const char *why;
    assert_int_equal(ims_dropdir_parse(p, n, false, 0, &m, &why), EBADMSG);
    free(p);
}

static void test_head(void **state)
{
    (void)state;
    ims_dropdir_msg m = {0};
    buf b = BUF_INIT;
    assert_int_equal(
        ims_dropdir_head(&m, "a@example.com", 1001, "al\nice", "mx.example", "F1", 86400, &b), 0);
    assert_int_equal(buf_add(&b, "", 1), 0);
    const char *h = (const char *)b.data;
    assert_non_null(strstr(h,
                           "Received: by mx.example (IMS Pickup directory, file F1,\r\n"
                           "\tfrom userid 1001 al?ice);\r\n\tFri, 02 Jan 1970 00:00:00 +0000\r\n"));
    assert_non_null(strstr(h, "\r\nDate: Fri, 02 Jan 1970 00:00:00 +0000\r\n"));
    assert_non_null(strstr(h, "\r\nMessage-ID: <"));
    assert_non_null(strstr(h, "\r\nFrom: a@example.com\r\n"));
    buf_free(&b);
    char o[IMS_DROPDIR_ORIGIN_MAX];
    ims_dropdir_origin(0, "root", o, sizeof o);
    assert_string_equal(o, "pickup uid 0 root");
    ims_dropdir_origin(42, NULL, o, sizeof o);
    assert_string_equal(o, "pickup uid 42");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_cuts_and_offsets),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_head),
    };
    return cmocka_run_group_tests_name("dropdir", tests, NULL, NULL);
}
