/* anvil_test.c - unit tests of the per-client counters (lib/ims anvil.c): connections at once,
 * the sliding minute of connections, messages and recipients, IPv6 by /64, a full table, and
 * one logged refusal a minute. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "ims/ims.h"

static smtp_ip ip(const char *text)
{
    smtp_ip a;
    assert_int_equal(smtp_ip_parse(text, &a), 0);
    return a;
}

static void test_connections_at_once(void **state)
{
    (void)state;
    ims_anvil *a;
    assert_int_equal(ims_anvil_new(16, &a), 0);
    ims_anvil_limits lim = {.conns = 3};
    smtp_ip one = ip("192.0.2.1"), two = ip("192.0.2.2");
    ims_anvil_client *c[4], *other;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ims_anvil_connect(a, &one, &lim, 1000, &c[i]), IMS_ANVIL_OK);
        assert_non_null(c[i]);
    }
    assert_int_equal(ims_anvil_conns(c[0]), 3);
    assert_int_equal(ims_anvil_connect(a, &one, &lim, 1000, &c[3]), IMS_ANVIL_CONNS);
    assert_null(c[3]);
    assert_int_equal(ims_anvil_conns(c[0]), 3); /* the refusal counted nothing */
    /* Another address is not affected. */
    assert_int_equal(ims_anvil_connect(a, &two, &lim, 1000, &other), IMS_ANVIL_OK);
    /* One goes: one more may come. */
    ims_anvil_disconnect(a, c[1], 2000);
    assert_int_equal(ims_anvil_connect(a, &one, &lim, 2000, &c[3]), IMS_ANVIL_OK);
    assert_int_equal(ims_anvil_conns(c[3]), 3);
    assert_int_equal(ims_anvil_clients(a), 2);
    /* No limit: any number. */
    ims_anvil_limits none = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(ims_anvil_connect(a, &one, &none, 3000, &c[0]), IMS_ANVIL_OK);
    ims_anvil_free(a);
}

static void test_connection_rate(void **state)
{
    (void)state;
    ims_anvil *a;
    assert_int_equal(ims_anvil_new(16, &a), 0);
    ims_anvil_limits lim = {.conn_rate = 10};
    smtp_ip one = ip("198.51.100.7");
    ims_anvil_client *c;
    uint64_t t = 120000; /* the start of a window */
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ims_anvil_connect(a, &one, &lim, t + (uint64_t)i, &c), IMS_ANVIL_OK);
        ims_anvil_disconnect(a, c, t + (uint64_t)i);
    }
    assert_int_equal(ims_anvil_connect(a, &one, &lim, t + 30000, &c), IMS_ANVIL_CONN_RATE);
    /* Refused attempts do not count: a minute and a half later the last window is half
     * weighted (5 of 10): five more get in, the sixth does not. */
    for (int i = 0; i < 100; i++)
        ims_anvil_connect(a, &one, &lim, t + 40000, &c);
    uint64_t later = t + 90000;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ims_anvil_connect(a, &one, &lim, later, &c), IMS_ANVIL_OK);
        ims_anvil_disconnect(a, c, later);
    }
    assert_int_equal(ims_anvil_connect(a, &one, &lim, later, &c), IMS_ANVIL_CONN_RATE);
    /* Two quiet minutes later everything is forgotten. */
    uint64_t much_later = t + 300000;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ims_anvil_connect(a, &one, &lim, much_later, &c), IMS_ANVIL_OK);
        ims_anvil_disconnect(a, c, much_later);
    }
    ims_anvil_free(a);
}

static void test_messages_and_recipients(void **state)
{
    (void)state;
    ims_anvil *a;
    assert_int_equal(ims_anvil_new(4, &a), 0);
    ims_anvil_limits lim = {.msg_rate = 3, .rcpt_rate = 5};
    smtp_ip one = ip("203.0.113.9");
    ims_anvil_client *c;
    assert_int_equal(ims_anvil_connect(a, &one, &lim, 5, &c), IMS_ANVIL_OK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ims_anvil_message(a, c, &lim, 10), IMS_ANVIL_OK);
    assert_int_equal(ims_anvil_message(a, c, &lim, 11), IMS_ANVIL_MSG_RATE);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ims_anvil_recipient(a, c, &lim, 12), IMS_ANVIL_OK);
    assert_int_equal(ims_anvil_recipient(a, c, &lim, 13), IMS_ANVIL_RCPT_RATE);
    /* The count is per client, not per connection: a second connection is over too. */
    ims_anvil_client *c2;
    assert_int_equal(ims_anvil_connect(a, &one, &lim, 20, &c2), IMS_ANVIL_OK);
    assert_ptr_equal(c2, c);
    assert_int_equal(ims_anvil_message(a, c2, &lim, 21), IMS_ANVIL_MSG_RATE);
    /* NULL client (not limited). */
    assert_int_equal(ims_anvil_message(a, NULL, &lim, 21), IMS_ANVIL_OK);
    assert_int_equal(ims_anvil_recipient(a, NULL, &lim, 21), IMS_ANVIL_OK);
    ims_anvil_free(a);
}

static void test_ipv6_by_64(void **state)
{
    (void)state;
    ims_anvil *a;
    assert_int_equal(ims_anvil_new(16, &a), 0);
    ims_anvil_limits lim = {.conns = 2};
    smtp_ip x = ip("2001:db8:1:2::1"), y = ip("2001:db8:1:2:ffff::9"), z = ip("2001:db8:1:3::1");
    ims_anvil_client *c;
    assert_int_equal(ims_anvil_connect(a, &x, &lim, 1, &c), IMS_ANVIL_OK);
    assert_int_equal(ims_anvil_connect(a, &y, &lim, 1, &c), IMS_ANVIL_OK);
    /* The third address of the same /64 is the same client. */
    smtp_ip w = ip("2001:db8:1:2::77");
    assert_int_equal(ims_anvil_connect(a, &w, &lim, 1, &c), IMS_ANVIL_CONNS);
    /* The next /64 is another. */
    assert_int_equal(ims_anvil_connect(a, &z, &lim, 1, &c), IMS_ANVIL_OK);
    /* An IPv4 address and the IPv6 one with the same first bytes differ. */
    smtp_ip v4 = ip("32.1.13.184"); /* 0x20 0x01 0x0d 0xb8 */
    assert_int_equal(ims_anvil_connect(a, &v4, &lim, 1, &c), IMS_ANVIL_OK);
    /* No address: never limited. */
    smtp_ip none = {0};
    ims_anvil_limits tight = {.conns = 1, .conn_rate = 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ims_anvil_connect(a, &none, &tight, 1, &c), IMS_ANVIL_OK);
        assert_null(c);
    }
    ims_anvil_free(a);
}

static void test_full_table(void **state)
{
    (void)state;
    ims_anvil *a;
    assert_int_equal(ims_anvil_new(3, &a), 0);
    ims_anvil_limits lim = {.conns = 1, .conn_rate = 1};
    smtp_ip p[5] = {ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5")};
    ims_anvil_client *c[5];
    for (int i = 0; i < 3; i++)
        assert_int_equal(ims_anvil_connect(a, &p[i], &lim, 100 + (uint64_t)i, &c[i]), IMS_ANVIL_OK);
    /* Every entry has a connection open: the fourth client is let in, unlimited. */
    assert_int_equal(ims_anvil_connect(a, &p[3], &lim, 200, &c[3]), IMS_ANVIL_OK);
    assert_null(c[3]);
    assert_int_equal(ims_anvil_clients(a), 3);
    /* 10.0.0.2 and then 10.0.0.1 go idle: the one idle for longest is forgotten first. */
    ims_anvil_disconnect(a, c[1], 300);
    ims_anvil_disconnect(a, c[0], 310);
    assert_int_equal(ims_anvil_connect(a, &p[4], &lim, 400, &c[4]), IMS_ANVIL_OK);
    assert_non_null(c[4]);
    /* 10.0.0.1 is still known (its rate: one a minute, used), 10.0.0.2 was forgotten. */
    ims_anvil_client *again;
    assert_int_equal(ims_anvil_connect(a, &p[0], &lim, 500, &again), IMS_ANVIL_CONN_RATE);
    assert_int_equal(ims_anvil_clients(a), 3);
    /* 10.0.0.3 is still held and still limited. */
    assert_int_equal(ims_anvil_connect(a, &p[2], &lim, 600, &again), IMS_ANVIL_CONNS);
    ims_anvil_free(a);
    assert_int_equal(ims_anvil_new(0, &a), EINVAL);
    assert_int_equal(ims_anvil_new(IMS_ANVIL_CAPACITY_MAX + 1, &a), EINVAL);
}

static void test_log_once_a_minute(void **state)
{
    (void)state;
    ims_anvil *a;
    assert_int_equal(ims_anvil_new(8, &a), 0);
    smtp_ip one = ip("192.0.2.50"), two = ip("192.0.2.51");
    assert_true(ims_anvil_log_due(a, &one, 1000));
    for (int i = 0; i < 50; i++)
        assert_false(ims_anvil_log_due(a, &one, 1000 + (uint64_t)i * 1000));
    assert_true(ims_anvil_log_due(a, &two, 2000));
    assert_true(ims_anvil_log_due(a, &one, 61000));
    assert_false(ims_anvil_log_due(a, &one, 62000));
    ims_anvil_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connections_at_once),
        cmocka_unit_test(test_connection_rate),
        cmocka_unit_test(test_messages_and_recipients),
        cmocka_unit_test(test_ipv6_by_64),
        cmocka_unit_test(test_full_table),
        cmocka_unit_test(test_log_once_a_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
