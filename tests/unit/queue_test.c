/* queue_test.c - unit tests of the outbound schedule's settings and pure functions (lib/ims
 * queue.c; DnsServers in settings.c): parsing, loading with event 4086, retry delays, priority
 * from headers, time-outs, the DNS servers list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ims/ims.h"

#define HOUR 3600000ull
#define MINUTE 60000ull

#include "regfx.h"

static void test_retry_parse(void **state)
{
    (void)state;
    char many[64] = "1", toomany[64] = "1", longtext[IMS_RETRY_TEXT_MAX + 8];
    for (int i = 1; i < IMS_RETRY_MAX; i++)
        strcat(many, ",1");
    strcat(strcpy(toomany, many), ",1");
    memset(longtext, ' ', sizeof longtext - 2);
    longtext[sizeof longtext - 2] = '1';
    longtext[sizeof longtext - 1] = 0;
    static const struct {
        const char *in;
        int rc;
        size_t n;
        uint64_t ms[4]; /* the first four */
    } cases[] = {
        {".25,.5,1,4", 0, 4, {15 * MINUTE, 30 * MINUTE, HOUR, 4 * HOUR}},
        {" .25 , .5,\t1 ,4 ", 0, 4, {15 * MINUTE, 30 * MINUTE, HOUR, 4 * HOUR}},
        {"0.5", 0, 1, {30 * MINUTE}},
        {"1.5", 0, 1, {90 * MINUTE}},
        {"1.", 0, 1, {HOUR}},
        {"0720", 0, 1, {720 * HOUR}},
        {"720", 0, 1, {720 * HOUR}},
        {".001", 0, 1, {3600}},        /* 3.6 s, exactly */
        {".333", 0, 1, {1198800}},     /* 19 min 58.8 s, exactly */
        {".0000005", 0, 1, {2}},       /* 1.8 ms: to the nearest */
        {".0000002", 0, 1, {1}},       /* 0.72 ms: 1 ms */
        {".000000001", -1, 0, {0}},    /* 3.6 us: below 1 ms */
        {".0000001", -1, 0, {0}},      /* 0.36 ms rounds to 0 */
        {".1234567891", -1, 0, {0}},   /* ten decimals */
        {"720.000000001", -1, 0, {0}}, /* over 720 hours */
        {"721", -1, 0, {0}},
        {"99999999999999999999", -1, 0, {0}},
        {"0", 0, 0, {0}}, /* no retries */
        {" 0.0 ", 0, 0, {0}},
        {".0", 0, 0, {0}},
        {"0,1", -1, 0, {0}},
        {"1,0", -1, 0, {0}},
        {"", -1, 0, {0}},
        {" ", -1, 0, {0}},
        {",", -1, 0, {0}},
        {"1,,2", -1, 0, {0}},
        {"1,", -1, 0, {0}},
        {",1", -1, 0, {0}},
        {".", -1, 0, {0}},
        {"-1", -1, 0, {0}},
        {"+1", -1, 0, {0}},
        {"1e2", -1, 0, {0}},
        {"0x10", -1, 0, {0}},
        {"abc", -1, 0, {0}},
        {"1 2", -1, 0, {0}},
        {"1;2", -1, 0, {0}},
        {"1h", -1, 0, {0}},
        {"1.2.3", -1, 0, {0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms[IMS_RETRY_MAX];
        size_t n = 99;
        int rc = ims_retry_parse(cases[i].in, ms, &n);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc)
            continue;
        if (n != cases[i].n)
            fail_msg("\"%s\": got %zu intervals, want %zu", cases[i].in, n, cases[i].n);
        for (size_t j = 0; j < n && j < 4; j++)
            if (ms[j] != cases[i].ms[j])
                fail_msg("\"%s\" [%zu]: got %llu ms, want %llu", cases[i].in, j,
                         (unsigned long long)ms[j], (unsigned long long)cases[i].ms[j]);
    }
    uint64_t ms[IMS_RETRY_MAX];
    size_t n;
    assert_int_equal(ims_retry_parse(many, ms, &n), 0);
    assert_int_equal(n, IMS_RETRY_MAX);
    assert_int_equal(ims_retry_parse(toomany, ms, &n), -1);
    assert_int_equal(ims_retry_parse(longtext, ms, &n), -1);
    longtext[sizeof longtext - 10] = 0; /* shorter than the bound: blanks and a 1 */
    longtext[sizeof longtext - 11] = '1';
    assert_int_equal(ims_retry_parse(longtext, ms, &n), 0);
}

static void test_retry_delay(void **state)
{
    (void)state;
    ims_settings s;
    ims_settings_defaults(&s, "/nonexistent");
    assert_string_equal(s.retry_interval, ".25,.5,1,4");
    static const struct {
        const char *retry;
        unsigned attempts;
        uint64_t want;
    } cases[] = {
        {".25,.5,1,4", 0, 0}, /* never tried: at once */
        {".25,.5,1,4", 1, 15 * MINUTE},
        {".25,.5,1,4", 2, 30 * MINUTE},
        {".25,.5,1,4", 3, HOUR},
        {".25,.5,1,4", 4, 4 * HOUR},
        {".25,.5,1,4", 5, 4 * HOUR}, /* the last one repeats */
        {".25,.5,1,4", 1000, 4 * HOUR},
        {".25,.5,1,4", UINT_MAX, 4 * HOUR},
        {"2", 1, 2 * HOUR},
        {"2", 7, 2 * HOUR},
        {".001,.002", 1, 3600},
        {".001,.002", 2, 7200},
        {".001,.002", 3, 7200},
        {"0", 0, 0},
        {"0", 1, IMS_NEVER}, /* no retries: the first transient failure is final */
        {"0", 9, IMS_NEVER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ims_retry_parse(cases[i].retry, s.retry_ms, &s.nretry), 0);
        uint64_t got = ims_retry_delay_ms(&s, cases[i].attempts);
        if (got != cases[i].want)
            fail_msg("\"%s\" after %u attempts: got %llu ms, want %llu", cases[i].retry,
                     cases[i].attempts, (unsigned long long)got, (unsigned long long)cases[i].want);
    }
}

static void test_priority(void **state)
{
    (void)state;
#define N IMS_PRIORITY_NORMAL
#define U IMS_PRIORITY_URGENT
#define L IMS_PRIORITY_NONURGENT
    static const struct {
        const char *hdrs;
        ims_priority want;
    } cases[] = {
        {"", N},
        {"Subject: hello\r\n\r\nbody\r\n", N},
        {"Priority: urgent\r\n\r\n", U},
        {"priority: NON-URGENT\r\n\r\n", L},
        {"PRIORITY: Normal\r\n\r\n", N},
        {"Priority: urgent", U},      /* no line end at all */
        {"Priority : urgent\r\n", U}, /* RFC 5322's obsolete blank before the colon */
        {"Priority: urgent; x\r\n", U},
        {"Priority: urgent (now)\r\n", U},
        {"Priority: urgently\r\n", N},
        {"Importance: high\r\n", U},
        {"Importance: Low\r\n", L},
        {"importance:normal\r\n", N},
        {"X-Priority: 1 (Highest)\r\n", U},
        {"X-Priority: 2\r\n", U},
        {"X-Priority: 3 (Normal)\r\n", N},
        {"X-Priority: 4\r\n", L},
        {"x-priority: 5 (Lowest)\r\n", L},
        {"X-Priority: 0\r\n", N},
        {"X-Priority: 12\r\n", N},
        {"X-Priority: high\r\n", N},
        {"X-Priority-Foo: 1\r\nXPriority: 1\r\nX-MS-Priority: 1\r\n", N},
        /* Folded fields. */
        {"Subject: x\r\nPriority:\r\n urgent\r\n\r\n", U},
        {"Importance:\r\n\t\r\n\thigh\r\n", U},
        {"Importance:\n low\n\n", L},
        {"Subject: hello\r\n Priority: urgent\r\n\r\n", N}, /* part of the Subject */
        {"Subject: hello\n\tImportance: high\n", N},
        /* Precedence: Priority, then Importance, then X-Priority. */
        {"X-Priority: 1\r\nImportance: low\r\n", L},
        {"Importance: low\r\nPriority: urgent\r\n", U},
        {"X-Priority: 5\r\nImportance: high\r\nPriority: non-urgent\r\n", L},
        {"Priority: bulk\r\nImportance: high\r\n", U}, /* an unknown value counts for nothing */
        {"Importance: whatever\r\nX-Priority: 5\r\n", L},
        /* A field given twice: its first known value. */
        {"Importance: low\r\nImportance: high\r\n", L},
        {"Importance: ?\r\nImportance: high\r\n", U},
        /* The header section ends at the first empty line. */
        {"Subject: x\r\n\r\nPriority: urgent\r\n", N},
        {"Subject: x\n\nImportance: high\n", N},
        {"\r\nPriority: urgent\r\n", N},
        {"Importance: high\n", U},
        {"From: a@b\r\nNot a field\r\nPriority: urgent\r\n\r\n", U},
    };
#undef N
#undef U
#undef L
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_priority got = ims_priority_of_headers(cases[i].hdrs, strlen(cases[i].hdrs));
        if (got != cases[i].want)
            fail_msg("case %zu \"%s\": got %s, want %s", i, cases[i].hdrs, ims_priority_name(got),
                     ims_priority_name(cases[i].want));
    }
    /* Only len bytes are read: no NUL needed, and a cut value is not the value. */
    const char cut[] = {'P', 'r', 'i', 'o', 'r', 'i', 't', 'y', ':', ' ', 'u', 'r', 'g'};
    assert_int_equal(ims_priority_of_headers(cut, sizeof cut), IMS_PRIORITY_NORMAL);
    assert_int_equal(ims_priority_of_headers("Priority: urgent", 16), IMS_PRIORITY_URGENT);
    assert_int_equal(ims_priority_of_headers("Priority: urgent", 12), IMS_PRIORITY_NORMAL);
    /* A field past IMS_HEADER_SCAN_MAX bytes is not looked at. */
    size_t pad = IMS_HEADER_SCAN_MAX + 100;
    char *big = malloc(pad + 64);
    assert_non_null(big);
    memcpy(big, "X-Pad: ", 7);
    memset(big + 7, 'a', pad - 7);
    size_t len = pad + (size_t)sprintf(big + pad, "\r\nPriority: urgent\r\n\r\n");
    assert_int_equal(ims_priority_of_headers(big, len), IMS_PRIORITY_NORMAL);
    len = 7 + (size_t)sprintf(big + 7, "a\r\nPriority: urgent\r\n\r\n");
    assert_int_equal(ims_priority_of_headers(big, len), IMS_PRIORITY_URGENT);
    free(big);
    assert_string_equal(ims_priority_name(IMS_PRIORITY_NONURGENT), "non-urgent");
}

static void test_timeouts(void **state)
{
    (void)state;
    ims_settings s;
    ims_settings_defaults(&s, "/nonexistent");
    static const struct {
        uint32_t urgent, normal, nonurgent, delay; /* minutes */
        ims_priority p;
        uint64_t timeout, notice;
    } cases[] = {
        /* The defaults: 24 h, 48 h, 72 h; a delay notice after 4 h. */
        {1440, 2880, 4320, 240, IMS_PRIORITY_URGENT, 24 * HOUR, 4 * HOUR},
        {1440, 2880, 4320, 240, IMS_PRIORITY_NORMAL, 48 * HOUR, 4 * HOUR},
        {1440, 2880, 4320, 240, IMS_PRIORITY_NONURGENT, 72 * HOUR, 4 * HOUR},
        {1440, 2880, 4320, 0, IMS_PRIORITY_NORMAL, 48 * HOUR, IMS_NEVER},
        /* A notice not before the time-out is never sent: the NDR comes first. */
        {60, 2880, 4320, 60, IMS_PRIORITY_URGENT, HOUR, IMS_NEVER},
        {60, 2880, 4320, 60, IMS_PRIORITY_NORMAL, 48 * HOUR, HOUR},
        {60, 2880, 4320, 61, IMS_PRIORITY_URGENT, HOUR, IMS_NEVER},
        {60, 2880, 4320, 59, IMS_PRIORITY_URGENT, HOUR, 59 * MINUTE},
        {1, 1, 1, 0, IMS_PRIORITY_NONURGENT, MINUTE, IMS_NEVER},
        {43200, 43200, 43200, 43200, IMS_PRIORITY_NORMAL, 720 * HOUR, IMS_NEVER},
        {1440, 2880, 4320, 240, (ims_priority)7, 48 * HOUR, 4 * HOUR}, /* unknown: normal */
    };
    assert_int_equal(s.message_timeout_urgent, cases[0].urgent);
    assert_int_equal(s.message_timeout_normal, cases[0].normal);
    assert_int_equal(s.message_timeout_nonurgent, cases[0].nonurgent);
    assert_int_equal(s.delay_notification, cases[0].delay);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s.message_timeout_urgent = cases[i].urgent;
        s.message_timeout_normal = cases[i].normal;
        s.message_timeout_nonurgent = cases[i].nonurgent;
        s.delay_notification = cases[i].delay;
        uint64_t t = ims_message_timeout_ms(&s, cases[i].p);
        uint64_t d = ims_delay_notice_ms(&s, cases[i].p);
        if (t != cases[i].timeout || d != cases[i].notice)
            fail_msg("case %zu: got time-out %llu, notice %llu; want %llu, %llu", i,
                     (unsigned long long)t, (unsigned long long)d,
                     (unsigned long long)cases[i].timeout, (unsigned long long)cases[i].notice);
    }
}

static void test_dns_server_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *want; /* NULL: refused */
    } cases[] = {
        {"192.0.2.53", "192.0.2.53"},
        {"192.0.2.53:5353", "192.0.2.53:5353"},
        {"127.0.0.1:65535", "127.0.0.1:65535"},
        {"2001:db8::53", "[2001:db8::53]:53"},
        {"2001:DB8:0::53", "[2001:db8::53]:53"},
        {"[2001:db8::53]", "[2001:db8::53]:53"},
        {"[::1]:5353", "[::1]:5353"},
        {"::1", "[::1]:53"},
        {"192.0.2.53:0", NULL},
        {"192.0.2.53:65536", NULL},
        {"192.0.2.53:", NULL},
        {"192.0.2.53:53x", NULL},
        {"192.0.2.53:-1", NULL},
        {"192.0.2.53:+53", NULL},
        {" 192.0.2.53", NULL},
        {"192.0.2.53 ", NULL},
        {"192.0.2", NULL},
        {"192.0.2.256", NULL},
        {"ns.example.com", NULL},
        {"ns.example.com:53", NULL},
        {"[192.0.2.53]:53", NULL},
        {"[2001:db8::53]53", NULL},
        {"[2001:db8::53]:", NULL},
        {"[2001:db8::53", NULL},
        {"2001:db8::53:5353:x", NULL},
        {"[fe80::1%eth0]:53", NULL},
        {"", NULL},
        {"[]:53", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[IMS_RELAY_LINE_MAX] = "";
        int rc = ims_dns_server_parse(cases[i].in, out, sizeof out);
        if (cases[i].want ? rc != 0 || strcmp(out, cases[i].want) : rc != -1)
            fail_msg("\"%s\": got %d \"%s\", want %s", cases[i].in, rc, rc ? "" : out,
                     cases[i].want ? cases[i].want : "refused");
    }
    char small[10];
    assert_int_equal(ims_dns_server_parse("192.0.2.53:5353", small, sizeof small), -1);
}

/* no_sock - a resolver that never looks anything up opens no socket. */
static void no_sock(void *arg, int fd, bool readable, bool writable)
{
    (void)arg, (void)fd, (void)readable, (void)writable;
    fail_msg("no socket expected");
}

static void test_dns_servers_join(void **state)
{
    (void)state;
    ims_settings s;
    ims_settings_defaults(&s, "/nonexistent");
    char out[IMS_DNS_SERVERS_MAX + 1];
    assert_int_equal(ims_dns_servers_join(&s, out, sizeof out), 0);
    assert_string_equal(out, ""); /* none: /etc/resolv.conf */
    const char *lines[] = {"192.0.2.53", "[2001:db8::53]:5353", "::1", "127.0.0.1:5353"};
    for (size_t i = 0; i < 4; i++)
        snprintf(s.dns_servers[i], sizeof s.dns_servers[i], "%s", lines[i]);
    s.ndns_servers = 4;
    assert_int_equal(ims_dns_servers_join(&s, out, sizeof out), 0);
    assert_string_equal(out, "192.0.2.53,[2001:db8::53]:5353,[::1]:53,127.0.0.1:5353");
    /* c-ares takes the joined form. */
    assert_int_equal(ims_dns_global_init(), 0);
    ims_dns *d = NULL;
    ims_dns_options o = {.servers = out, .sock_fn = no_sock};
    assert_int_equal(ims_dns_new(&o, &d), 0);
    ims_dns_free(d);
    ims_dns_global_cleanup();
    /* Too small an output: ENOSPC and "". The exact fit works. */
    char tiny[24];
    assert_int_equal(ims_dns_servers_join(&s, tiny, sizeof tiny), ENOSPC);
    assert_string_equal(tiny, "");
    char exact[55];
    assert_int_equal(strlen(out) + 1, sizeof exact);
    assert_int_equal(ims_dns_servers_join(&s, exact, sizeof exact), 0);
    assert_string_equal(exact, out);
    assert_int_equal(ims_dns_servers_join(&s, exact, sizeof exact - 1), ENOSPC);
    /* The longest list fits in IMS_DNS_SERVERS_MAX. */
    for (size_t i = 0; i < IMS_DNS_MAX_SERVERS; i++)
        snprintf(s.dns_servers[i], sizeof s.dns_servers[i],
                 "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff%02zx]:65535", i);
    s.ndns_servers = IMS_DNS_MAX_SERVERS;
    assert_int_equal(ims_dns_servers_join(&s, out, sizeof out), 0);
    assert_true(strlen(out) <= IMS_DNS_SERVERS_MAX);
    /* A line that does not parse (never after ims_settings_load): EINVAL. */
    snprintf(s.dns_servers[3], sizeof s.dns_servers[3], "ns.example.com");
    assert_int_equal(ims_dns_servers_join(&s, out, sizeof out), EINVAL);
    assert_string_equal(out, "");
}

/* set_value - one Parameters value: a REG_SZ (sz), a REG_DWORD (sz NULL) or, with lines, a
 * REG_MULTI_SZ. */
static void set_value(struct fx *fx, const char *name, const char *sz, uint32_t dw,
                      const char *const *lines, size_t nlines)
{
    reg_key *lm, *k;
    assert_int_equal(reg_key_open_root(fx->reg, REG_ROOT_HKLM, &lm), 0);
    assert_int_equal(reg_key_create(lm, IMS_PARAMETERS_KEY, 0, NULL, &k, NULL), 0);
    reg_key_close(lm);
    if (lines)
        assert_int_equal(reg_value_set_multi_sz(k, name, lines, nlines), 0);
    else if (sz)
        assert_int_equal(reg_value_set_sz(k, name, REG_SZ, sz), 0);
    else
        assert_int_equal(reg_value_set_dword(k, name, dw), 0);
    reg_key_close(k);
}

static void delete_value(struct fx *fx, const char *name)
{
    reg_key *k;
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &k), 0);
    assert_int_equal(reg_value_delete(k, name), 0);
    reg_key_close(k);
}

/* load - the settings, *events the number of events 4086 logged. */
static void load(struct fx *fx, ims_settings *s, int *events)
{
    fx->events[0] = 0;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, s), IMS_OK);
    *events = count_events(fx->events, "4086;");
}

static void test_load_retry(void **state)
{
    struct fx *fx = *state;
    ims_settings s;
    int ev;
    load(fx, &s, &ev);
    assert_int_equal(ev, 0);
    assert_string_equal(s.retry_interval, IMS_DEFAULT_RETRY);
    assert_int_equal(s.nretry, 4);
    assert_int_equal(s.retry_ms[3], 4 * HOUR);
    static const struct {
        const char *sz; /* NULL: the REG_DWORD 5 */
        bool valid;
        size_t n;
        uint64_t first;
    } cases[] = {
        {".001, 1", true, 2, 3600},      {"0", true, 0, 0},
        {"4", true, 1, 4 * HOUR},        {"", false, 4, 15 * MINUTE},
        {"1,,2", false, 4, 15 * MINUTE}, {"-1", false, 4, 15 * MINUTE},
        {"1000", false, 4, 15 * MINUTE}, {"0,4", false, 4, 15 * MINUTE},
        {NULL, false, 4, 15 * MINUTE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        set_value(fx, "RetryInterval", cases[i].sz, 5, NULL, 0);
        load(fx, &s, &ev);
        if (ev != (cases[i].valid ? 0 : 1) || s.nretry != cases[i].n ||
            (s.nretry && s.retry_ms[0] != cases[i].first))
            fail_msg("RetryInterval \"%s\": %d events, %zu intervals, first %llu ms",
                     cases[i].sz ? cases[i].sz : "(REG_DWORD)", ev, s.nretry,
                     (unsigned long long)s.retry_ms[0]);
        if (!cases[i].valid)
            assert_string_equal(s.retry_interval, IMS_DEFAULT_RETRY);
    }
    delete_value(fx, "RetryInterval");
}

static void test_load_dwords(void **state)
{
    struct fx *fx = *state;
    ims_settings s, d;
    int ev;
    ims_settings_defaults(&d, fx->dir);
    assert_int_equal(d.message_timeout_urgent, 1440);
    assert_int_equal(d.message_timeout_normal, 2880);
    assert_int_equal(d.message_timeout_nonurgent, 4320);
    assert_int_equal(d.delay_notification, 240);
    assert_int_equal(d.max_outbound_connections, 100);
    assert_int_equal(d.max_connections_per_host, 10);
    assert_int_equal(d.max_messages_per_connection, 100);
    assert_int_equal(d.disable_loopback_connections, 1);
    assert_int_equal(d.max_recipients, 0);
#define LIMIT(name, field, v, ok)                                                                  \
    {                                                                                              \
        name, offsetof(ims_settings, field), v, ok                                                 \
    }
    static const struct {
        const char *name;
        size_t field; /* offset of the uint32_t in ims_settings */
        uint32_t set;
        bool valid;
    } limits[] = {
        LIMIT("MessageTimeoutUrgent", message_timeout_urgent, 0, false),
        LIMIT("MessageTimeoutUrgent", message_timeout_urgent, 60, true),
        LIMIT("MessageTimeoutNormal", message_timeout_normal, 1, true),
        LIMIT("MessageTimeoutNormal", message_timeout_normal, 43200, true),
        LIMIT("MessageTimeoutNormal", message_timeout_normal, 43201, false),
        LIMIT("MessageTimeoutNonUrgent", message_timeout_nonurgent, 0, false),
        LIMIT("MessageTimeoutNonUrgent", message_timeout_nonurgent, 10080, true),
        LIMIT("DelayNotification", delay_notification, 0, true),
        LIMIT("DelayNotification", delay_notification, 43200, true),
        LIMIT("DelayNotification", delay_notification, 43201, false),
        LIMIT("MaxOutboundConnections", max_outbound_connections, 0, false),
        LIMIT("MaxOutboundConnections", max_outbound_connections, 1000, true),
        LIMIT("MaxOutboundConnections", max_outbound_connections, 1001, false),
        LIMIT("MaxConnectionsPerHost", max_connections_per_host, 0, false),
        LIMIT("MaxConnectionsPerHost", max_connections_per_host, 1, true),
        LIMIT("MaxConnectionsPerHost", max_connections_per_host, 1001, false),
        LIMIT("MaxMessagesPerConnection", max_messages_per_connection, 0, true),
        LIMIT("MaxMessagesPerConnection", max_messages_per_connection, 100000, true),
        LIMIT("MaxMessagesPerConnection", max_messages_per_connection, 100001, false),
        LIMIT("DisableLoopbackConnections", disable_loopback_connections, 0, true),
        LIMIT("DisableLoopbackConnections", disable_loopback_connections, 2, false),
    };
#undef LIMIT
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        set_value(fx, limits[i].name, NULL, limits[i].set, NULL, 0);
        load(fx, &s, &ev);
        uint32_t got, dflt;
        memcpy(&got, (const char *)&s + limits[i].field, sizeof got);
        memcpy(&dflt, (const char *)&d + limits[i].field, sizeof dflt);
        uint32_t want = limits[i].valid ? limits[i].set : dflt;
        if (got != want || ev != (limits[i].valid ? 0 : 1))
            fail_msg("%s = %u: got %u with %d events, want %u", limits[i].name, limits[i].set, got,
                     ev, want);
        /* A string where a REG_DWORD belongs: the default, and an event. */
        set_value(fx, limits[i].name, "12", 0, NULL, 0);
        load(fx, &s, &ev);
        memcpy(&got, (const char *)&s + limits[i].field, sizeof got);
        assert_int_equal(got, dflt);
        assert_int_equal(ev, 1);
        delete_value(fx, limits[i].name);
    }
}

static void test_load_dns_servers(void **state)
{
    struct fx *fx = *state;
    ims_settings s;
    int ev;
    load(fx, &s, &ev);
    assert_int_equal(s.ndns_servers, 0);
    /* Bad lines are skipped, an event each; good ones are kept in their order. */
    const char *mixed[] = {"192.0.2.53", "ns.example.com", "[2001:db8::53]:5353", "1.2.3.4:0",
                           "::1"};
    set_value(fx, "DnsServers", NULL, 0, mixed, 5);
    load(fx, &s, &ev);
    assert_int_equal(ev, 2);
    assert_int_equal(s.ndns_servers, 3);
    char out[IMS_DNS_SERVERS_MAX + 1];
    assert_int_equal(ims_dns_servers_join(&s, out, sizeof out), 0);
    assert_string_equal(out, "192.0.2.53,[2001:db8::53]:5353,[::1]:53");
    /* More than IMS_DNS_MAX_SERVERS lines: the rest skipped, an event each. */
    char text[IMS_DNS_MAX_SERVERS + 2][16];
    const char *many[IMS_DNS_MAX_SERVERS + 2];
    for (size_t i = 0; i < IMS_DNS_MAX_SERVERS + 2; i++) {
        snprintf(text[i], sizeof text[i], "192.0.2.%zu", i + 1);
        many[i] = text[i];
    }
    set_value(fx, "DnsServers", NULL, 0, many, IMS_DNS_MAX_SERVERS + 2);
    load(fx, &s, &ev);
    assert_int_equal(ev, 2);
    assert_int_equal(s.ndns_servers, IMS_DNS_MAX_SERVERS);
    assert_string_equal(s.dns_servers[IMS_DNS_MAX_SERVERS - 1], "192.0.2.16");
    /* Not a REG_MULTI_SZ: the default (none), and an event. */
    set_value(fx, "DnsServers", "192.0.2.53", 0, NULL, 0);
    load(fx, &s, &ev);
    assert_int_equal(ev, 1);
    assert_int_equal(s.ndns_servers, 0);
    delete_value(fx, "DnsServers");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_parse),
        cmocka_unit_test(test_retry_delay),
        cmocka_unit_test(test_priority),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_dns_server_parse),
        cmocka_unit_test(test_dns_servers_join),
        cmocka_unit_test_setup_teardown(test_load_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_dwords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_dns_servers, setup, teardown),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
