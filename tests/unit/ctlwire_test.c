/* ctlwire_test.c - unit tests of the control socket's wire format (lib/ims ctlwire.c): request
 * lines, splitting at TABs, dot-stuffing in pieces, and telling body lines from the final one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ims/ims.h"

#include "expect.h"

static void test_request(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    const char *words[] = {"queues", "--json", "a b", ""};
    assert_int_equal(ims_ctl_request(&b, 4, words), 0);
    expect_bytes("request", (char *)b.data, b.len, S("queues\t--json\ta b\t\n"));
    b.len = 0;
    const char *one[] = {"stats"};
    assert_int_equal(ims_ctl_request(&b, 1, one), 0);
    expect_bytes("one word", (char *)b.data, b.len, S("stats\n"));

    static const char *const bad[][2] = {{"", "x"}, {"a\tb", "x"}, {"a", "x\ny"}, {"a", "x\r"}};
    for (size_t i = 0; i < N(bad); i++) {
        b.len = 0;
        assert_int_equal(ims_ctl_request(&b, 2, bad[i]), EINVAL);
    }
    assert_int_equal(ims_ctl_request(&b, 0, one), EINVAL);

    /* The limit counts the LF: a word of IMS_CTL_REQUEST_MAX - 1 bytes fits, one more not. */
    char *big = malloc(IMS_CTL_REQUEST_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', IMS_CTL_REQUEST_MAX);
    big[IMS_CTL_REQUEST_MAX - 1] = 0;
    const char *w1[] = {big};
    b.len = 0;
    assert_int_equal(ims_ctl_request(&b, 1, w1), 0);
    assert_int_equal(b.len, IMS_CTL_REQUEST_MAX);
    big[IMS_CTL_REQUEST_MAX - 1] = 'x';
    big[IMS_CTL_REQUEST_MAX] = 0;
    b.len = 0;
    assert_int_equal(ims_ctl_request(&b, 1, w1), E2BIG);
    free(big);
    buf_free(&b);
}

static void test_split(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int n;
        const char *words[4];
    } cases[] = {
        {"stats", 1, {"stats"}},
        {"stats\r", 1, {"stats"}},
        {"queues\t--json", 2, {"queues", "--json"}},
        {"a\t\tb", 3, {"a", "", "b"}},
        {"a\t", 2, {"a", ""}},
        {"a b\tc", 2, {"a b", "c"}},
        {"", 0, {0}},
        {"\r", 0, {0}},
        {"a\tb\tc\td", -1, {0}}, /* more than the 3 allowed */
    };
    for (size_t i = 0; i < N(cases); i++) {
        char line[64];
        size_t len = strlen(cases[i].line);
        memcpy(line, cases[i].line, len + 1);
        char *argv[4];
        int n = ims_ctl_split(line, len, argv, 3);
        if (n != cases[i].n)
            fail_msg("\"%s\": got %d words, want %d", cases[i].line, n, cases[i].n);
        for (int k = 0; k < n; k++)
            if (strcmp(argv[k], cases[i].words[k]))
                fail_msg("\"%s\" word %d: got \"%s\", want \"%s\"", cases[i].line, k, argv[k],
                         cases[i].words[k]);
        if (n >= 0)
            assert_null(argv[n]);
    }
}

static void test_stuff(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    bool bol = true;
    /* A line may come in pieces: only a '.' that starts a line is doubled. */
    static const char *const pieces[] = {".a\n", "b.", ".c\n.", "\n", "..\nx", "y\n"};
    for (size_t i = 0; i < N(pieces); i++)
        assert_int_equal(ims_ctl_stuff(&b, pieces[i], strlen(pieces[i]), &bol), 0);
    expect_bytes("stuffed", (char *)b.data, b.len, S("..a\nb..c\n..\n...\nxy\n"));
    assert_true(bol);
    assert_int_equal(ims_ctl_stuff(&b, "z", 1, &bol), 0);
    assert_false(bol);
    buf_free(&b);
}

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        ims_ctl_kind kind;
        const char *text;
    } cases[] = {
        {"row 1", IMS_CTL_BODY, "row 1"},
        {"", IMS_CTL_BODY, ""},
        {"..a", IMS_CTL_BODY, ".a"},
        {"..", IMS_CTL_BODY, "."},
        {"...", IMS_CTL_BODY, ".."},
        {".OK", IMS_CTL_OK, ""},
        {".ERR unknown command x", IMS_CTL_ERR, "unknown command x"},
        {".ERR", IMS_CTL_ERR, ""},
        {".ERRX", IMS_CTL_BAD, ""},
        {".OKAY", IMS_CTL_BAD, ""},
        {".", IMS_CTL_BAD, ""},
        {".x", IMS_CTL_BAD, ""},
    };
    for (size_t i = 0; i < N(cases); i++) {
        const char *text;
        size_t n;
        ims_ctl_kind k = ims_ctl_parse(cases[i].line, strlen(cases[i].line), &text, &n);
        if (k != cases[i].kind)
            fail_msg("\"%s\": got kind %d, want %d", cases[i].line, k, cases[i].kind);
        if (n != strlen(cases[i].text) || memcmp(text, cases[i].text, n))
            fail_msg("\"%s\": got text \"%.*s\", want \"%s\"", cases[i].line, (int)n, text,
                     cases[i].text);
    }
    /* What the stuffing makes, the parse undoes. */
    buf b = BUF_INIT;
    bool bol = true;
    assert_int_equal(ims_ctl_stuff(&b, S(".OK\n"), &bol), 0);
    const char *text;
    size_t n;
    assert_int_equal(ims_ctl_parse((char *)b.data, b.len - 1, &text, &n), IMS_CTL_BODY);
    expect_bytes("round trip", text, n, S(".OK"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_stuff),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests_name("ctlwire", tests, NULL, NULL);
}
