/* metrics_test.c - unit tests of lib/ims metrics.c: the latency histogram's buckets, the
 * Prometheus text format's HELP/TYPE lines, label and help escaping, cumulative buckets; and
 * MetricsAddress's syntax and the loopback test (settings.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "ims/ims.h"

#include "expect.h"

static void test_latency(void **state)
{
    (void)state;
    ims_latency h = {0};
    /* Bounds are inclusive (le): 1 is in the first bucket, 2 in the second. */
    static const struct {
        int64_t secs;
        size_t bucket;
    } cases[] = {{-5, 0},    {0, 0},       {1, 0},
                 {2, 1},     {5, 1},       {6, 2},
                 {86400, 9}, {432000, 10}, {432001, IMS_LATENCY_BUCKETS}};
    uint64_t sum = 0;
    for (size_t i = 0; i < N(cases); i++) {
        ims_latency one = {0};
        ims_latency_add(&one, cases[i].secs);
        for (size_t b = 0; b <= IMS_LATENCY_BUCKETS; b++)
            if (one.count[b] != (b == cases[i].bucket))
                fail_msg("%lld s: bucket %zu has %llu", (long long)cases[i].secs, b,
                         (unsigned long long)one.count[b]);
        ims_latency_add(&h, cases[i].secs);
        sum += cases[i].secs < 0 ? 0 : (uint64_t)cases[i].secs;
    }
    assert_int_equal(h.sum, sum);
    assert_int_equal(ims_latency_bound(0), 1);
    assert_int_equal(ims_latency_bound(IMS_LATENCY_BUCKETS - 1), 432000);
    assert_int_equal(ims_latency_bound(IMS_LATENCY_BUCKETS), 0);
}

static void test_head_and_samples(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    assert_int_equal(ims_metric_head(&b, "ims_messages_received_total",
                                     "Messages \\ received\nover SMTP", IMS_METRIC_COUNTER),
                     0);
    assert_int_equal(ims_metric_sample(&b, "ims_messages_received_total", NULL, 42), 0);
    const char *labels[] = {"queue", "mts-in", "note", "a \"b\" \\c\nd", NULL};
    assert_int_equal(ims_metric_head(&b, "ims_queue_messages", "", IMS_METRIC_GAUGE), 0);
    assert_int_equal(ims_metric_sample(&b, "ims_queue_messages", labels, 18446744073709551615ull),
                     0);
    expect_bytes("exposition", (char *)b.data, b.len,
                 S("# HELP ims_messages_received_total Messages \\\\ received\\nover SMTP\n"
                   "# TYPE ims_messages_received_total counter\n"
                   "ims_messages_received_total 42\n"
                   "# HELP ims_queue_messages \n"
                   "# TYPE ims_queue_messages gauge\n"
                   "ims_queue_messages{queue=\"mts-in\",note=\"a \\\"b\\\" \\\\c\\nd\"} "
                   "18446744073709551615\n"));
    /* Bad names are refused, nothing half-written is promised: the caller drops the buffer. */
    static const char *const bad[] = {"", "9lives", "a-b", "a b", "é"};
    for (size_t i = 0; i < N(bad); i++) {
        assert_int_equal(ims_metric_head(&b, bad[i], "x", IMS_METRIC_GAUGE), EINVAL);
        assert_int_equal(ims_metric_sample(&b, bad[i], NULL, 1), EINVAL);
    }
    const char *badlabel[] = {"le-x", "1", NULL};
    assert_int_equal(ims_metric_sample(&b, "ok", badlabel, 1), EINVAL);
    assert_int_equal(ims_metric_head(&b, "ok", "x", (ims_metric_type)7), EINVAL);
    buf_free(&b);
}

static void test_histogram(void **state)
{
    (void)state;
    ims_latency h = {0};
    ims_latency_add(&h, 0);
    ims_latency_add(&h, 3);
    ims_latency_add(&h, 3);
    ims_latency_add(&h, 1000000);
    buf b = BUF_INIT;
    const char *labels[] = {"route", "local", NULL};
    assert_int_equal(ims_metric_histogram(&b, "ims_delivery_latency_seconds", labels, &h), 0);
    expect_bytes("histogram", (char *)b.data, b.len,
                 S("ims_delivery_latency_seconds_bucket{route=\"local\",le=\"1\"} 1\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"5\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"10\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"30\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"60\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"300\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"900\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"3600\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"14400\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"86400\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"432000\"} 3\n"
                   "ims_delivery_latency_seconds_bucket{route=\"local\",le=\"+Inf\"} 4\n"
                   "ims_delivery_latency_seconds_sum{route=\"local\"} 1000006\n"
                   "ims_delivery_latency_seconds_count{route=\"local\"} 4\n"));
    b.len = 0;
    ims_latency empty = {0};
    assert_int_equal(ims_metric_histogram(&b, "h", NULL, &empty), 0);
    assert_non_null(buf_cstr(&b));
    assert_non_null(strstr((char *)b.data, "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n"));
    buf_free(&b);
}

static void test_metrics_address(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:9125", 0, "127.0.0.1", 9125},
        {"[::1]:9125", 0, "::1", 9125},
        {"0.0.0.0:80", 0, "0.0.0.0", 80},
        {"", -1, NULL, 0},
        {"localhost:9125", -1, NULL, 0}, /* numeric only: no resolver at start */
        {"127.0.0.1", -1, NULL, 0},
        {"127.0.0.1:9125 smtp", -1, NULL, 0}, /* no listener kind */
        {"127.0.0.1:99999", -1, NULL, 0},
        {"::1:9125", -1, NULL, 0},
    };
    for (size_t i = 0; i < N(cases); i++) {
        ims_listen l;
        int rc = ims_metrics_address_parse(cases[i].text, &l);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %d, want %d", cases[i].text, rc, cases[i].rc);
        if (!rc && (strcmp(l.host, cases[i].host) || l.port != cases[i].port))
            fail_msg("\"%s\": got %s port %u", cases[i].text, l.host, l.port);
    }
}

static void test_loopback(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        bool loopback;
    } cases[] = {
        {"127.0.0.1:1", true},  {"127.1.2.3:1", true},
        {"[::1]:1", true},      {"[::ffff:127.0.0.1]:1", true},
        {"0.0.0.0:1", false},   {"192.0.2.1:1", false},
        {"[::]:1", false},      {"[2001:db8::1]:1", false},
        {"128.0.0.1:1", false},
    };
    for (size_t i = 0; i < N(cases); i++) {
        ims_listen l;
        assert_int_equal(ims_metrics_address_parse(cases[i].text, &l), 0);
        if (ims_listen_loopback(&l) != cases[i].loopback)
            fail_msg("%s: got %d", cases[i].text, !cases[i].loopback);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency),   cmocka_unit_test(test_head_and_samples),
        cmocka_unit_test(test_histogram), cmocka_unit_test(test_metrics_address),
        cmocka_unit_test(test_loopback),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
