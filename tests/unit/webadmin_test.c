/* webadmin_test.c - unit tests of lib/ims webadmin.c: the administrator page's Host and
 * Origin checks, the action request's JSON and form bodies, the CSRF nonces, JSON strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "ims/ims.h"

#include "expect.h"

static void test_host(void **state)
{
    (void)state;
    static const struct {
        const char *host, *listener;
        bool ok;
    } cases[] = {
        {"127.0.0.1:9125", "127.0.0.1:9125", true},
        {"localhost:9125", "127.0.0.1:9125", true},
        {"LOCALHOST:9125", "127.0.0.1:9125", true},
        {"[::1]:9125", "127.0.0.1:9125", true},
        {"[::1]:9125", "[::1]:9125", true},
        {"127.0.0.2:9125", "127.0.0.2:9125", true},
        {"127.0.0.1:9126", "127.0.0.1:9125", false},
        {"127.0.0.1", "127.0.0.1:9125", false},
        {"127.0.0.1", "127.0.0.1:80", true},
        {"evil.example:9125", "127.0.0.1:9125", false},
        {"localhost.evil.example:9125", "127.0.0.1:9125", false},
        {"127.0.0.1:9125:1", "127.0.0.1:9125", false},
        {"::1:9125", "127.0.0.1:9125", false},
        {"[::1]x:9125", "127.0.0.1:9125", false},
        {"127.0.0.1:", "127.0.0.1:9125", false},
        {"127.0.0.1:91a5", "127.0.0.1:9125", false},
        {"", "127.0.0.1:9125", false},
        {NULL, "127.0.0.1:9125", false},
    };
    for (size_t i = 0; i < N(cases); i++) {
        bool got = ims_web_host_ok(cases[i].host, cases[i].listener);
        if (got != cases[i].ok)
            fail_msg("host %s on %s: got %d, want %d", cases[i].host ? cases[i].host : "(none)",
                     cases[i].listener, got, cases[i].ok);
    }
}

static void test_origin(void **state)
{
    (void)state;
    static const struct {
        const char *origin, *referer;
        bool ok;
    } cases[] = {
        {"http://127.0.0.1:9125", NULL, true},
        {"http://127.0.0.1:9125", "http://evil.example/", true}, /* Origin decides */
        {"http://evil.example", "http://127.0.0.1:9125/", false},
        {"null", NULL, false},
        {"https://127.0.0.1:9125", NULL, false},
        {"http://127.0.0.1:91250", NULL, false},
        {NULL, "http://127.0.0.1:9125/", true},
        {NULL, "http://127.0.0.1:9125/x?y", true},
        {NULL, "http://127.0.0.1:9125.evil.example/", false},
        {NULL, "http://127.0.0.1:9125", false},
        {NULL, NULL, false},
    };
    for (size_t i = 0; i < N(cases); i++) {
        bool got = ims_web_origin_ok(cases[i].origin, cases[i].referer, "127.0.0.1:9125");
        if (got != cases[i].ok)
            fail_msg("case %zu: got %d, want %d", i, got, cases[i].ok);
    }
    assert_false(ims_web_origin_ok("http://", NULL, ""));
}

static void test_loopback_peer(void **state)
{
    (void)state;
    assert_true(ims_web_loopback_peer("127.0.0.1"));
    assert_true(ims_web_loopback_peer("127.1.2.3"));
    assert_true(ims_web_loopback_peer("::1"));
    assert_true(ims_web_loopback_peer("::ffff:127.0.0.1"));
    assert_false(ims_web_loopback_peer("192.0.2.1"));
    assert_false(ims_web_loopback_peer("::2"));
    assert_false(ims_web_loopback_peer("1127.0.0.1"));
    assert_false(ims_web_loopback_peer(NULL));
}

static void test_action_json(void **state)
{
    (void)state;
    ims_web_action a;
    static const char ok[] = " {\"id\": \"ABC123\", \"action\":\"hold\",\"csrf\":\"n1\","
                             "\"secret\":\"p\\u00e9\\\"s\\\\\"} ";
    assert_int_equal(ims_web_action_parse("application/json; charset=utf-8", S(ok), &a), 0);
    assert_string_equal(a.id, "ABC123");
    assert_string_equal(a.action, "hold");
    assert_string_equal(a.csrf, "n1");
    assert_string_equal(a.secret, "p\xc3\xa9\"s\\");
    assert_int_equal(a.secret_len, 6);
    static const struct {
        const char *body;
        int want;
    } bad[] = {
        {"", EINVAL},
        {"{}", EINVAL}, /* every field is required */
        {"{\"id\":\"a\",\"action\":\"hold\",\"csrf\":\"n\"}", EINVAL},
        {"{\"id\":\"a\",\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\",\"x\":\"y\"}", EINVAL},
        {"{\"id\":\"a\",\"id\":\"b\",\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\"}", EINVAL},
        {"{\"id\":\"a\",\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\"} x", EINVAL},
        {"{\"id\":1,\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\"}", EINVAL},
        {"{\"id\":\"a\\u0000\",\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\"}", EINVAL},
        {"{\"id\":\"a\\ud800\",\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\"}", EINVAL},
        {"{\"id\":\"a\",\"action\":\"hold\",\"csrf\":\"n\",\"secret\":\"s\"", EINVAL},
        {"{\"id\":\"a\",\"action\":\"holdholdholdholdhold\",\"csrf\":\"n\",\"secret\":\"s\"}",
         EMSGSIZE},
    };
    for (size_t i = 0; i < N(bad); i++) {
        int got = ims_web_action_parse("application/json", bad[i].body, strlen(bad[i].body), &a);
        if (got != bad[i].want)
            fail_msg("body %s: got %d, want %d", bad[i].body, got, bad[i].want);
        assert_string_equal(a.secret, "");
    }
    assert_int_equal(ims_web_action_parse("text/plain", S(ok), &a), ENOTSUP);
    assert_int_equal(ims_web_action_parse(NULL, S(ok), &a), ENOTSUP);
    assert_int_equal(ims_web_action_parse("application/jsonx", S(ok), &a), ENOTSUP);
}

static void test_action_form(void **state)
{
    (void)state;
    ims_web_action a;
    static const char ok[] = "id=Q%2F1&action=delete-ndr&csrf=abc&secret=a+b%26c";
    assert_int_equal(ims_web_action_parse("application/x-www-form-urlencoded", S(ok), &a), 0);
    assert_string_equal(a.id, "Q/1");
    assert_string_equal(a.action, "delete-ndr");
    assert_string_equal(a.secret, "a b&c");
    assert_int_equal(a.secret_len, 5);
    static const char *const bad[] = {"id=a&action=hold&csrf=n", "id=a&action=hold&csrf=n&secret",
                                      "id=a%2&action=hold&csrf=n&secret=s",
                                      "id=a%00&action=hold&csrf=n&secret=s",
                                      "id=a&action=hold&csrf=n&secret=s&other=1"};
    for (size_t i = 0; i < N(bad); i++)
        if (ims_web_action_parse("application/x-www-form-urlencoded", bad[i], strlen(bad[i]), &a) !=
            EINVAL)
            fail_msg("form %s was accepted", bad[i]);
}

static void test_nonces(void **state)
{
    (void)state;
    static ims_web_nonces n;
    memset(&n, 0, sizeof n);
    char first[IMS_WEB_NONCE_LEN + 1], other[IMS_WEB_NONCE_LEN + 1];
    assert_int_equal(ims_web_nonce_issue(&n, 1000, first), 0);
    assert_int_equal(strlen(first), IMS_WEB_NONCE_LEN);
    assert_true(ims_web_nonce_ok(&n, first, 1000));
    assert_true(ims_web_nonce_ok(&n, first, 1000 + IMS_WEB_NONCE_TTL));
    assert_false(ims_web_nonce_ok(&n, first, 1001 + IMS_WEB_NONCE_TTL));
    assert_false(ims_web_nonce_ok(&n, "", 1000));
    assert_false(ims_web_nonce_ok(&n, NULL, 1000));
    char wrong[IMS_WEB_NONCE_LEN + 1];
    memcpy(wrong, first, sizeof wrong);
    wrong[5] = wrong[5] == 'a' ? 'b' : 'a';
    assert_false(ims_web_nonce_ok(&n, wrong, 1000));
    /* The ring forgets the oldest page. */
    for (size_t i = 0; i < IMS_WEB_NONCES - 1; i++)
        assert_int_equal(ims_web_nonce_issue(&n, 1000, other), 0);
    assert_true(ims_web_nonce_ok(&n, first, 1000));
    assert_int_equal(ims_web_nonce_issue(&n, 1000, other), 0);
    assert_false(ims_web_nonce_ok(&n, first, 1000));
    assert_true(ims_web_nonce_ok(&n, other, 1000));
    assert_true(ims_web_secret_eq(S("tok"), "tok"));
    assert_false(ims_web_secret_eq(S("to"), "tok"));
    assert_false(ims_web_secret_eq(S("tokk"), "tok"));
    assert_false(ims_web_secret_eq(S(""), ""));
}

static void test_json_string(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    assert_int_equal(ims_json_string(&b, "a\"b\\c\n\x01 \xc3\xa9 \xff"), 0);
    static const char want[] = "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\ufffd\"";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    /* the _n form takes n bytes, a NUL among them escaped, what follows not read */
    b.len = 0;
    assert_int_equal(ims_json_string_n(&b, "[127.0.0.2]|451 later", 11), 0);
    assert_int_equal(b.len, 13);
    assert_memory_equal(b.data, "\"[127.0.0.2]\"", 13);
    b.len = 0;
    assert_int_equal(ims_json_string_n(&b, "a\0b", 3), 0);
    assert_memory_equal(b.data, "\"a\\u0000b\"", b.len);
    assert_int_equal(b.len, 10);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host),          cmocka_unit_test(test_origin),
        cmocka_unit_test(test_loopback_peer), cmocka_unit_test(test_action_json),
        cmocka_unit_test(test_action_form),   cmocka_unit_test(test_nonces),
        cmocka_unit_test(test_json_string),
    };
    return cmocka_run_group_tests_name("webadmin", tests, NULL, NULL);
}
