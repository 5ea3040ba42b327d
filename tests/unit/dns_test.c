/* dns_test.c - unit tests of lib/ims's resolver (dns.c) against tests/dns_server.py on
 * 127.0.0.1 (a zone written here, one server for the whole group, killed at the end even when a
 * test fails), driven by a poll() loop; and loop detection (ims_dns_drop_self), table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ims/dns_int.h"
#include "ims/ims.h"

#define PYTHON "/usr/bin/python3"
#define SERVER_SCRIPT "tests/dns_server.py"
#define SERVER_START_MS 10000 /* the server must say "port N" within this */
#define SERVER_STOP_MS 3000   /* ... and exit within this of its stdin closing */
#define LOOKUP_MAX_MS 10000   /* no lookup of these tests may take longer */
#define FAST_TIMEOUT_MS 500   /* the resolver's wait for an answer in these tests */
#define MAX_FDS 16
#define MANY_MX 40    /* MX records of many.test: over IMS_DNS_MAX_MX, and over 512 bytes */
#define MANY_ADDRS 20 /* A records of lots.test: over IMS_DNS_MAX_ADDRS */

static const char zone_text[] = "# two preferences; three exchangers share the better one\n"
                                "two.test MX 10 a.two.test\n"
                                "two.test MX 10 b.two.test\n"
                                "two.test MX 10 c.two.test\n"
                                "two.test MX 20 d.two.test\n"
                                "a.two.test A 192.0.2.1\n"
                                "a.two.test A 192.0.2.11\n"
                                "a.two.test AAAA 2001:db8::1\n"
                                "b.two.test A 192.0.2.2\n"
                                "c.two.test A 192.0.2.3\n"
                                "d.two.test A 192.0.2.4\n"
                                "d.two.test AAAA 2001:db8::4\n"
                                "d.two.test AAAA 2001:db8::44\n"
                                "implicit.test A 192.0.2.20\n"
                                "implicit.test AAAA 2001:db8::20\n"
                                "txtonly.test TXT no mail here\n"
                                "null.test MX 0 .\n"
                                "mixednull.test MX 0 .\n"
                                "mixednull.test MX 10 real.mixednull.test\n"
                                "real.mixednull.test A 192.0.2.25\n"
                                "servfail.test SERVFAIL\n"
                                "refused.test REFUSED\n"
                                "slow.test TIMEOUT\n"
                                "noaddr.test MX 10 nowhere.noaddr.test\n"
                                "noaddr.test MX 20 txt.noaddr.test\n"
                                "txt.noaddr.test TXT no address\n"
                                "partial.test MX 10 broken.partial.test\n"
                                "partial.test MX 20 ok.partial.test\n"
                                "broken.partial.test SERVFAIL\n"
                                "ok.partial.test A 192.0.2.30\n"
                                "mixed.test MX 10 gone.mixed.test\n"
                                "mixed.test MX 20 broken.mixed.test\n"
                                "broken.mixed.test SERVFAIL AAAA\n"
                                "cname.test MX 10 alias.cname.test\n"
                                "alias.cname.test CNAME alias2.cname.test\n"
                                "alias2.cname.test CNAME real.cname.test\n"
                                "real.cname.test A 192.0.2.40\n"
                                "real.cname.test AAAA 2001:db8::40\n"
                                "cnamedom.test CNAME two.test\n"
                                "badname.test MX 10 bad_name.badname.test\n"
                                "badname.test MX 20 good.badname.test\n"
                                "bad_name.badname.test A 192.0.2.49\n"
                                "good.badname.test A 192.0.2.50\n"
                                "dup.test MX 10 x.dup.test\n"
                                "dup.test MX 20 y.dup.test\n"
                                "dup.test MX 30 x.dup.test\n"
                                "x.dup.test A 192.0.2.60\n"
                                "y.dup.test A 192.0.2.60\n"
                                "y.dup.test A 192.0.2.61\n"
                                "weird.test A 0.0.0.0\n"
                                "weird.test A 192.0.2.70\n"
                                "weird.test AAAA ::ffff:192.0.2.71\n"
                                "weird.test AAAA ::\n"
                                "v6only.test MX 10 mx.v6only.test\n"
                                "mx.v6only.test AAAA 2001:db8::80\n"
                                "# smart hosts: addresses only, an MX that must not be asked\n"
                                "smart.test A 192.0.2.90\n"
                                "dual.test A 192.0.2.91\n"
                                "dual.test A 192.0.2.92\n"
                                "dual.test AAAA 2001:db8::91\n"
                                "mxtoo.test MX 10 dual.test\n"
                                "mxtoo.test A 192.0.2.93\n";

static struct server {
    char dir[64];
    pid_t pid;
    int in_fd; /* the server's stdin: closing it stops the server */
    int port;
    char servers[64]; /* "127.0.0.1:<port>" */
} srv = {.pid = -1, .in_fd = -1};

/* now_ms - a monotonic clock in milliseconds. */
static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* write_zone - the zone above plus the generated names, into dir/zone. */
static int write_zone(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(zone_text, f);
    for (int i = 1; i <= MANY_MX; i++) {
        fprintf(f, "many.test MX %d mx%02d.many.test\n", i, i);
        fprintf(f, "mx%02d.many.test A 198.51.100.%d\n", i, i);
    }
    for (int i = 1; i <= MANY_ADDRS; i++)
        fprintf(f, "lots.test A 203.0.113.%d\n", i);
    return fclose(f);
}

/* stop_server - close its stdin, wait a bounded time, then SIGKILL. */
static void stop_server(void)
{
    if (srv.in_fd >= 0)
        close(srv.in_fd);
    srv.in_fd = -1;
    if (srv.pid > 0) {
        kill(srv.pid, SIGTERM);
        long long end = now_ms() + SERVER_STOP_MS;
        while (waitpid(srv.pid, NULL, WNOHANG) == 0) {
            if (now_ms() > end) {
                kill(srv.pid, SIGKILL);
                waitpid(srv.pid, NULL, 0);
                break;
            }
            usleep(10000);
        }
    }
    srv.pid = -1;
    char path[96];
    snprintf(path, sizeof path, "%s/zone", srv.dir);
    unlink(path);
    if (srv.dir[0])
        rmdir(srv.dir);
}

/* start_server - the zone, the server, its port. 0 or -1. */
static int start_server(void)
{
    strcpy(srv.dir, "/tmp/dns_test.XXXXXX");
    if (!mkdtemp(srv.dir))
        return -1;
    char zone[96];
    snprintf(zone, sizeof zone, "%s/zone", srv.dir);
    int in[2], out[2];
    if (write_zone(zone) || pipe(in) || pipe(out))
        return -1;
    pid_t parent = getpid();
    srv.pid = fork();
    if (srv.pid < 0)
        return -1;
    if (srv.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test binary that crashes takes it along */
        if (getppid() != parent)
            _exit(1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execl(PYTHON, PYTHON, SERVER_SCRIPT, "--port", "0", "--zone", zone, "--exit-on-eof",
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    srv.in_fd = in[1];
    char line[64];
    size_t n = 0;
    long long end = now_ms() + SERVER_START_MS;
    while (n < sizeof line - 1 && !memchr(line, '\n', n)) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        long long left = end - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) != 1)
            break;
        ssize_t r = read(out[0], line + n, sizeof line - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(out[0]);
    line[n] = 0;
    if (sscanf(line, "port %d", &srv.port) != 1 || srv.port <= 0)
        return -1;
    snprintf(srv.servers, sizeof srv.servers, "127.0.0.1:%d", srv.port);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (ims_dns_global_init())
        return -1;
    if (start_server()) {
        fprintf(stderr, "dns_test: %s did not start\n", SERVER_SCRIPT);
        stop_server();
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_server();
    ims_dns_global_cleanup();
    return 0;
}

/* --- a poll() loop ----------------------------------------------------------------------- */

typedef struct loop {
    struct pollfd fds[MAX_FDS];
    size_t n;
    int calls; /* socket callbacks seen */
} loop;

static void loop_sock(void *arg, int fd, bool readable, bool writable)
{
    loop *l = arg;
    l->calls++;
    size_t i = 0;
    while (i < l->n && l->fds[i].fd != fd)
        i++;
    if (!readable && !writable) {
        if (i < l->n)
            l->fds[i] = l->fds[--l->n];
        return;
    }
    if (i == l->n) {
        assert_true(l->n < MAX_FDS);
        l->n++;
    }
    l->fds[i].fd = fd;
    l->fds[i].events = (short)((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
}

/* run - drive d until pending lookups are done or LOOKUP_MAX_MS pass. */
static void run(ims_dns *d, loop *l)
{
    long long end = now_ms() + LOOKUP_MAX_MS;
    while (ims_dns_pending(d)) {
        assert_true(now_ms() < end);
        struct timeval tv;
        assert_true(ims_dns_timeout(d, &tv));
        int ms = (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
        struct pollfd fds[MAX_FDS];
        size_t n = l->n;
        memcpy(fds, l->fds, n * sizeof *fds);
        int rc = poll(fds, n, ms);
        assert_true(rc >= 0);
        if (rc == 0) {
            ims_dns_process(d, IMS_DNS_NO_FD, IMS_DNS_NO_FD);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (!fds[i].revents)
                continue;
            int r = fds[i].revents & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd : IMS_DNS_NO_FD;
            int w = fds[i].revents & POLLOUT ? fds[i].fd : IMS_DNS_NO_FD;
            ims_dns_process(d, r, w);
        }
    }
}

typedef struct got {
    ims_dns_result *r;
    int calls;
} got;

static void got_cb(void *arg, ims_dns_result *r)
{
    got *g = arg;
    g->calls++;
    g->r = r;
}

typedef struct how {
    const char *servers; /* NULL: the test server */
    unsigned timeout_ms, tries;
    uint64_t seed;
    bool host;       /* ims_dns_resolve_host, not ims_dns_resolve_mx */
    int *sock_calls; /* non-NULL: gets how many socket callbacks there were */
} how;

/* resolve - one lookup, start to end; *ms gets how long it took. The caller frees. */
static ims_dns_result *resolve_how(const char *domain, ims_dns_family fam, const how *h,
                                   long long *ms)
{
    loop l = {0};
    ims_dns_options o = {.servers = h && h->servers ? h->servers : srv.servers,
                         .timeout_ms = h && h->timeout_ms ? h->timeout_ms : FAST_TIMEOUT_MS,
                         .tries = h && h->tries ? h->tries : 2,
                         .sock_fn = loop_sock,
                         .sock_arg = &l};
    ims_dns *d;
    assert_int_equal(ims_dns_new(&o, &d), 0);
    ims_dns_seed(d, h ? h->seed : 1);
    got g = {0};
    long long t0 = now_ms();
    if (h && h->host)
        assert_int_equal(ims_dns_resolve_host(d, domain, fam, got_cb, &g), 0);
    else
        assert_int_equal(ims_dns_resolve_mx(d, domain, fam, got_cb, &g), 0);
    assert_int_equal(g.calls, 0); /* never from inside resolve_mx or resolve_host */
    assert_int_equal(ims_dns_pending(d), 1);
    run(d, &l);
    if (ms)
        *ms = now_ms() - t0;
    assert_int_equal(g.calls, 1);
    struct timeval tv;
    assert_false(ims_dns_timeout(d, &tv));
    ims_dns_free(d);
    assert_int_equal(l.n, 0); /* every socket was closed and said so */
    assert_non_null(g.r);
    if (h && h->sock_calls)
        *h->sock_calls = l.calls;
    return g.r;
}

static ims_dns_result *resolve(const char *domain, ims_dns_family fam)
{
    return resolve_how(domain, fam, NULL, NULL);
}

/* list - "name/pref/ip name/pref/ip ..." of r. */
static const char *list(const ims_dns_result *r, char *out, size_t size)
{
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < r->n && k < size; i++) {
        char ip[64];
        smtp_ip_format(&r->v[i].ip, ip, sizeof ip);
        k += (size_t)snprintf(out + k, size - k, "%s%s/%u/%s", i ? " " : "", r->v[i].name,
                              r->v[i].preference, ip);
    }
    return out;
}

/* --- the tests --------------------------------------------------------------------------- */

/* The outcome of each domain: status, code, and the destinations or the text. */
static void test_table(void **state)
{
    (void)state;
    static const struct {
        const char *domain;
        ims_dns_family fam;
        ims_dns_status st;
        const char *code;
        const char *want; /* OK: the list; else the text */
    } cases[] = {
        {"implicit.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0",
         "implicit.test/0/2001:db8::20 implicit.test/0/192.0.2.20"},
        {"implicit.test", IMS_DNS_IPV4, IMS_DNS_OK, "2.0.0", "implicit.test/0/192.0.2.20"},
        {"implicit.test", IMS_DNS_IPV6, IMS_DNS_OK, "2.0.0", "implicit.test/0/2001:db8::20"},
        {"txtonly.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.4.4",
         "txtonly.test has no MX and no address record"},
        {"null.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.1.10",
         "null.test does not accept mail (null MX, RFC 7505)"},
        {"mixednull.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "real.mixednull.test/10/192.0.2.25"},
        {"nosuch.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.1.2",
         "DNS lookup of MX for nosuch.test failed: NXDOMAIN"},
        {"servfail.test", IMS_DNS_ANY, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of MX for servfail.test failed: SERVFAIL"},
        {"refused.test", IMS_DNS_ANY, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of MX for refused.test failed: REFUSED"},
        {"noaddr.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.4.4",
         "no mail exchanger of noaddr.test has an address (nowhere.noaddr.test: NXDOMAIN)"},
        {"partial.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "ok.partial.test/20/192.0.2.30"},
        /* one exchanger gone for good, the other's AAAA failing: worth a retry */
        {"mixed.test", IMS_DNS_ANY, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of AAAA for broken.mixed.test failed: SERVFAIL"},
        /* ... unless only IPv4 is wanted: then both are gone for good */
        {"mixed.test", IMS_DNS_IPV4, IMS_DNS_PERMANENT, "5.4.4",
         "no mail exchanger of mixed.test has an IPv4 address (gone.mixed.test: NXDOMAIN)"},
        {"cname.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0",
         "alias.cname.test/10/2001:db8::40 alias.cname.test/10/192.0.2.40"},
        {"badname.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "good.badname.test/20/192.0.2.50"},
        {"dup.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0",
         "x.dup.test/10/192.0.2.60 y.dup.test/20/192.0.2.61"},
        {"weird.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "weird.test/0/192.0.2.70"},
        {"v6only.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "mx.v6only.test/10/2001:db8::80"},
        {"v6only.test", IMS_DNS_IPV4, IMS_DNS_PERMANENT, "5.4.4",
         "no mail exchanger of v6only.test has an IPv4 address (mx.v6only.test: no such "
         "record)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_dns_result *r = resolve(cases[i].domain, cases[i].fam);
        char got_list[2048];
        const char *text = r->status == IMS_DNS_OK ? list(r, got_list, sizeof got_list) : r->text;
        if (r->status != cases[i].st || strcmp(r->code, cases[i].code) ||
            strcmp(text, cases[i].want))
            fail_msg("%s (family %d): got %s %s \"%s\", want %s %s \"%s\"", cases[i].domain,
                     cases[i].fam, ims_dns_status_name(r->status), r->code, text,
                     ims_dns_status_name(cases[i].st), cases[i].code, cases[i].want);
        if (r->status != IMS_DNS_OK)
            assert_int_equal(r->n, 0);
        assert_string_equal(r->domain, cases[i].domain);
        ims_dns_result_free(r);
    }
}

/* Preferences in order; a, b and c (equal) shuffled: the same for a seed, each first for some
 * seed; addresses of an exchanger interleaved IPv6 first; a family filter. */
static void test_order(void **state)
{
    (void)state;
    bool first[3] = {false};
    for (uint64_t seed = 1; seed <= 32; seed++) {
        how h = {.seed = seed};
        ims_dns_result *r = resolve_how("two.test", IMS_DNS_ANY, &h, NULL);
        assert_int_equal(r->status, IMS_DNS_OK);
        assert_false(r->implicit);
        assert_int_equal(r->n, 8); /* a: 3, b: 1, c: 1, d: 3 */
        for (size_t i = 1; i < r->n; i++)
            assert_true(r->v[i - 1].preference <= r->v[i].preference);
        assert_int_equal(r->v[7].preference, 20);
        first[r->v[0].name[0] - 'a'] = true;
        char want_d[256], got_s[2048];
        snprintf(want_d, sizeof want_d,
                 "d.two.test/20/2001:db8::4 d.two.test/20/192.0.2.4 d.two.test/20/2001:db8::44");
        list(r, got_s, sizeof got_s);
        assert_non_null(strstr(got_s, want_d));
        assert_non_null(strstr(got_s, "a.two.test/10/2001:db8::1 a.two.test/10/192.0.2.1 "
                                      "a.two.test/10/192.0.2.11"));
        /* The same seed, the same order. */
        ims_dns_result *again = resolve_how("two.test", IMS_DNS_ANY, &h, NULL);
        char again_s[2048];
        assert_string_equal(list(again, again_s, sizeof again_s), got_s);
        ims_dns_result_free(again);
        ims_dns_result_free(r);
    }
    assert_true(first[0] && first[1] && first[2]);

    how h = {.seed = 7};
    ims_dns_result *r4 = resolve_how("two.test", IMS_DNS_IPV4, &h, NULL);
    assert_int_equal(r4->n, 5);
    for (size_t i = 0; i < r4->n; i++)
        assert_int_equal(r4->v[i].ip.family, 4);
    ims_dns_result_free(r4);
    ims_dns_result *r6 = resolve_how("two.test", IMS_DNS_IPV6, &h, NULL);
    char s[1024];
    assert_string_equal(list(r6, s, sizeof s), "a.two.test/10/2001:db8::1 "
                                               "d.two.test/20/2001:db8::4 "
                                               "d.two.test/20/2001:db8::44");
    assert_int_equal(r6->skipped, 2); /* b and c have no IPv6 address */
    ims_dns_result_free(r6);
}

/* The limits: 40 MX records (an answer over 512 bytes: c-ares asks again over TCP) give the
 * best IMS_DNS_MAX_MX; 20 addresses give IMS_DNS_MAX_ADDRS. A domain that is a CNAME. */
static void test_limits(void **state)
{
    (void)state;
    ims_dns_result *r = resolve("many.test", IMS_DNS_IPV4);
    if (r->status != IMS_DNS_OK)
        fail_msg("many.test: %s %s", r->code, r->text);
    assert_int_equal(r->status, IMS_DNS_OK);
    assert_int_equal(r->n, IMS_DNS_MAX_MX);
    for (size_t i = 0; i < r->n; i++)
        assert_int_equal(r->v[i].preference, i + 1);
    ims_dns_result_free(r);

    r = resolve("lots.test", IMS_DNS_ANY);
    assert_int_equal(r->status, IMS_DNS_OK);
    assert_true(r->implicit);
    assert_int_equal(r->n, IMS_DNS_MAX_ADDRS);
    ims_dns_result_free(r);

    r = resolve("cnamedom.test", IMS_DNS_IPV4);
    assert_int_equal(r->status, IMS_DNS_OK);
    assert_int_equal(r->n, 5);
    ims_dns_result_free(r);
}

/* A server that never answers: transient, within the configured time-out. */
static void test_timeout(void **state)
{
    (void)state;
    long long ms;
    how h = {.timeout_ms = FAST_TIMEOUT_MS, .tries = 1};
    ims_dns_result *r = resolve_how("slow.test", IMS_DNS_ANY, &h, &ms);
    assert_int_equal(r->status, IMS_DNS_TRANSIENT);
    assert_string_equal(r->code, "4.4.3");
    assert_string_equal(r->text, "DNS lookup of MX for slow.test failed: timeout");
    assert_true(ms >= FAST_TIMEOUT_MS - 50 && ms < 4 * FAST_TIMEOUT_MS);
    ims_dns_result_free(r);

    /* A UDP socket nobody reads, and a port nobody listens on. */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    char servers[64];
    snprintf(servers, sizeof servers, "127.0.0.1:%u", ntohs(sin.sin_port));
    how silent = {.servers = servers, .timeout_ms = FAST_TIMEOUT_MS, .tries = 1};
    r = resolve_how("two.test", IMS_DNS_ANY, &silent, &ms);
    assert_int_equal(r->status, IMS_DNS_TRANSIENT);
    assert_string_equal(r->code, "4.4.3");
    assert_true(ms < 4 * FAST_TIMEOUT_MS);
    ims_dns_result_free(r);
    close(s); /* now nothing listens there: refused (or a time-out), transient either way */
    r = resolve_how("two.test", IMS_DNS_ANY, &silent, &ms);
    assert_int_equal(r->status, IMS_DNS_TRANSIENT);
    assert_string_equal(r->code, "4.4.3");
    assert_true(ms < 4 * FAST_TIMEOUT_MS);
    ims_dns_result_free(r);
}

/* ims_dns_resolve_host: a host's own addresses (no MX asked), ordered as an exchanger's; its
 * failures. */
static void test_host(void **state)
{
    (void)state;
    static const struct {
        const char *host;
        ims_dns_family fam;
        ims_dns_status st;
        const char *code;
        const char *want; /* OK: the list; else the text */
    } cases[] = {
        {"smart.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "smart.test/0/192.0.2.90"},
        {"smart.test", IMS_DNS_IPV4, IMS_DNS_OK, "2.0.0", "smart.test/0/192.0.2.90"},
        {"smart.test", IMS_DNS_IPV6, IMS_DNS_PERMANENT, "5.4.4",
         "host smart.test has no IPv6 address"},
        /* IPv6 first, the families interleaved, each in DNS's order */
        {"dual.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0",
         "dual.test/0/2001:db8::91 dual.test/0/192.0.2.91 dual.test/0/192.0.2.92"},
        {"dual.test", IMS_DNS_IPV4, IMS_DNS_OK, "2.0.0",
         "dual.test/0/192.0.2.91 dual.test/0/192.0.2.92"},
        {"dual.test", IMS_DNS_IPV6, IMS_DNS_OK, "2.0.0", "dual.test/0/2001:db8::91"},
        /* the host's own address, not its MX's (dual.test) */
        {"mxtoo.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "mxtoo.test/0/192.0.2.93"},
        {"two.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.4.4", "host two.test has no address"},
        {"alias.cname.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0",
         "alias.cname.test/0/2001:db8::40 alias.cname.test/0/192.0.2.40"},
        {"weird.test", IMS_DNS_ANY, IMS_DNS_OK, "2.0.0", "weird.test/0/192.0.2.70"},
        {"nosuchhost.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.4.4",
         "host nosuchhost.test not found"},
        {"nosuchhost.test", IMS_DNS_IPV4, IMS_DNS_PERMANENT, "5.4.4",
         "host nosuchhost.test not found"},
        {"txtonly.test", IMS_DNS_ANY, IMS_DNS_PERMANENT, "5.4.4",
         "host txtonly.test has no address"},
        {"servfail.test", IMS_DNS_ANY, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of AAAA for servfail.test failed: SERVFAIL"},
        {"servfail.test", IMS_DNS_IPV4, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of A for servfail.test failed: SERVFAIL"},
        {"refused.test", IMS_DNS_IPV4, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of A for refused.test failed: REFUSED"},
        /* A NXDOMAIN, AAAA SERVFAIL: worth a retry, unless only IPv4 is wanted */
        {"broken.mixed.test", IMS_DNS_ANY, IMS_DNS_TRANSIENT, "4.4.3",
         "DNS lookup of AAAA for broken.mixed.test failed: SERVFAIL"},
        {"broken.mixed.test", IMS_DNS_IPV4, IMS_DNS_PERMANENT, "5.4.4",
         "host broken.mixed.test not found"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        how h = {.host = true};
        ims_dns_result *r = resolve_how(cases[i].host, cases[i].fam, &h, NULL);
        char got_list[2048];
        const char *text = r->status == IMS_DNS_OK ? list(r, got_list, sizeof got_list) : r->text;
        if (r->status != cases[i].st || strcmp(r->code, cases[i].code) ||
            strcmp(text, cases[i].want))
            fail_msg("host %s (family %d): got %s %s \"%s\", want %s %s \"%s\"", cases[i].host,
                     cases[i].fam, ims_dns_status_name(r->status), r->code, text,
                     ims_dns_status_name(cases[i].st), cases[i].code, cases[i].want);
        if (r->status != IMS_DNS_OK)
            assert_int_equal(r->n, 0);
        assert_false(r->implicit);
        assert_string_equal(r->domain, cases[i].host);
        ims_dns_result_free(r);
    }

    /* A host that does not answer: transient, as for an exchanger. */
    how slow = {.host = true, .timeout_ms = FAST_TIMEOUT_MS, .tries = 1};
    ims_dns_result *r = resolve_how("slow.test", IMS_DNS_IPV4, &slow, NULL);
    assert_int_equal(r->status, IMS_DNS_TRANSIENT);
    assert_string_equal(r->code, "4.4.3");
    assert_string_equal(r->text, "DNS lookup of A for slow.test failed: timeout");
    ims_dns_result_free(r);
}

/* A numeric host is its own address, without DNS: a resolver whose server is not there
 * answers at once and never opens a socket. */
static void test_host_numeric(void **state)
{
    (void)state;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(s, (struct sockaddr *)&sin, &len), 0);
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%u", ntohs(sin.sin_port));
    close(s); /* nothing listens there now */
    static const struct {
        const char *host;
        ims_dns_family fam;
        ims_dns_status st;
        const char *want; /* OK: the list; else the text */
    } cases[] = {
        {"192.0.2.1", IMS_DNS_ANY, IMS_DNS_OK, "192.0.2.1/0/192.0.2.1"},
        {"192.0.2.1", IMS_DNS_IPV4, IMS_DNS_OK, "192.0.2.1/0/192.0.2.1"},
        {"2001:db8::1", IMS_DNS_ANY, IMS_DNS_OK, "2001:db8::1/0/2001:db8::1"},
        {"2001:DB8:0::1", IMS_DNS_IPV6, IMS_DNS_OK, "2001:DB8:0::1/0/2001:db8::1"},
        {"::ffff:192.0.2.7", IMS_DNS_IPV4, IMS_DNS_OK, "::ffff:192.0.2.7/0/192.0.2.7"},
        {"192.0.2.1", IMS_DNS_IPV6, IMS_DNS_PERMANENT, "host 192.0.2.1 has no IPv6 address"},
        {"2001:db8::1", IMS_DNS_IPV4, IMS_DNS_PERMANENT, "host 2001:db8::1 has no IPv4 address"},
        {"0.0.0.0", IMS_DNS_ANY, IMS_DNS_PERMANENT, "host 0.0.0.0 has no address"},
        {"::", IMS_DNS_ANY, IMS_DNS_PERMANENT, "host :: has no address"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int calls = -1;
        long long ms;
        how h = {
            .host = true, .servers = dead, .timeout_ms = 5000, .tries = 5, .sock_calls = &calls};
        ims_dns_result *r = resolve_how(cases[i].host, cases[i].fam, &h, &ms);
        char got_list[256];
        const char *text = r->status == IMS_DNS_OK ? list(r, got_list, sizeof got_list) : r->text;
        if (r->status != cases[i].st || strcmp(text, cases[i].want))
            fail_msg("host %s (family %d): got %s %s \"%s\", want %s \"%s\"", cases[i].host,
                     cases[i].fam, ims_dns_status_name(r->status), r->code, text,
                     ims_dns_status_name(cases[i].st), cases[i].want);
        assert_string_equal(r->code, r->status == IMS_DNS_OK ? "2.0.0" : "5.4.4");
        assert_int_equal(calls, 0);
        assert_true(ms < 1000);
        assert_false(r->implicit);
        assert_string_equal(r->domain, cases[i].host);
        ims_dns_result_free(r);
    }

    /* Refused up front: no callback, nothing pending. */
    loop l = {0};
    ims_dns_options o = {.servers = dead, .sock_fn = loop_sock, .sock_arg = &l};
    ims_dns *d;
    assert_int_equal(ims_dns_new(&o, &d), 0);
    got g = {0};
    char longname[SMTP_DOMAIN_MAX + 8];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    static const char *const bad[] = {"",
                                      "[2001:db8::1]",
                                      "[192.0.2.1]",
                                      "192.0.2.1:25",
                                      "under_score.test",
                                      "smart.test.",
                                      "x y.test"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (ims_dns_resolve_host(d, bad[i], IMS_DNS_ANY, got_cb, &g) != EINVAL)
            fail_msg("host \"%s\" was taken", bad[i]);
    assert_int_equal(ims_dns_resolve_host(d, longname, IMS_DNS_ANY, got_cb, &g), EINVAL);
    assert_int_equal(ims_dns_resolve_host(d, "192.0.2.1", (ims_dns_family)9, got_cb, &g), EINVAL);
    assert_int_equal(ims_dns_pending(d), 0);
    /* Freed before ims_dns_process: the answer ready without DNS is dropped, no callback. */
    assert_int_equal(ims_dns_resolve_host(d, "192.0.2.1", IMS_DNS_ANY, got_cb, &g), 0);
    assert_int_equal(ims_dns_pending(d), 1);
    struct timeval tv;
    assert_true(ims_dns_timeout(d, &tv));
    assert_true(tv.tv_sec == 0 && tv.tv_usec == 0);
    ims_dns_free(d);
    assert_int_equal(g.calls, 0);
    assert_int_equal(l.calls, 0);
}

/* Arguments refused up front, lookups dropped by ims_dns_free, several lookups at once. */
static void test_api(void **state)
{
    (void)state;
    loop l = {0};
    ims_dns *d = NULL;
    static const ims_dns_options bad[] = {
        {.servers = "not an address", .sock_fn = loop_sock},
        {.servers = "127.0.0.1", .timeout_ms = IMS_DNS_TIMEOUT_MAX + 1, .sock_fn = loop_sock},
        {.servers = "127.0.0.1", .tries = IMS_DNS_TRIES_MAX + 1, .sock_fn = loop_sock},
        {.servers = "127.0.0.1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ims_dns_options o = bad[i];
        o.sock_arg = &l;
        assert_int_equal(ims_dns_new(&o, &d), EINVAL);
        assert_null(d);
    }
    ims_dns_options o = {
        .servers = "[::1]:5353,127.0.0.1:53,192.0.2.1", .sock_fn = loop_sock, .sock_arg = &l};
    assert_int_equal(ims_dns_new(&o, &d), 0);
    ims_dns_free(d);
    ims_dns_free(NULL);
    ims_dns_result_free(NULL);

    o.servers = srv.servers;
    o.timeout_ms = FAST_TIMEOUT_MS;
    assert_int_equal(ims_dns_new(&o, &d), 0);
    got g = {0};
    static const char *const names[] = {"",          "-bad.test", "a..test", "under_score.test",
                                        "two.test.", "x y.test"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_int_equal(ims_dns_resolve_mx(d, names[i], IMS_DNS_ANY, got_cb, &g), EINVAL);
    assert_int_equal(ims_dns_resolve_mx(d, "two.test", (ims_dns_family)9, got_cb, &g), EINVAL);
    struct timeval tv;
    assert_false(ims_dns_timeout(d, &tv));
    /* Freed with lookups in flight: no callback, nothing leaks (the SAN build checks). */
    assert_int_equal(ims_dns_resolve_mx(d, "slow.test", IMS_DNS_ANY, got_cb, &g), 0);
    assert_int_equal(ims_dns_resolve_mx(d, "two.test", IMS_DNS_ANY, got_cb, &g), 0);
    assert_int_equal(ims_dns_pending(d), 2);
    assert_true(ims_dns_timeout(d, &tv));
    assert_true(l.n > 0);
    ims_dns_free(d);
    assert_int_equal(g.calls, 0);
    assert_int_equal(l.n, 0);

    /* Several at once, each answered once. */
    l = (loop){0};
    assert_int_equal(ims_dns_new(&o, &d), 0);
    got gs[4] = {0};
    static const char *const many[] = {"two.test", "implicit.test", "null.test", "cname.test"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ims_dns_resolve_mx(d, many[i], IMS_DNS_ANY, got_cb, &gs[i]), 0);
    run(d, &l);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(gs[i].calls, 1);
        assert_string_equal(gs[i].r->domain, many[i]);
        ims_dns_result_free(gs[i].r);
    }
    assert_true(l.calls > 0);
    ims_dns_free(d);
}

/* --- loop detection ---------------------------------------------------------------------- */

#define MAX_CASE_ENTRIES 4

static void test_drop_self(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        struct {
            const char *name;
            uint16_t pref;
            const char *ip;
        } in[MAX_CASE_ENTRIES];
        const char *listen[3]; /* "address:port" */
        const char *local[3];  /* interface addresses */
        uint16_t port;         /* where delivery connects */
        size_t dropped;
        ims_dns_status st;
        const char *want; /* the list left, or the text */
    } cases[] = {
        {"no listener matches",
         {{"a.t", 10, "192.0.2.1"}, {"b.t", 20, "192.0.2.2"}},
         {"127.0.0.1:25"},
         {"127.0.0.1"},
         25,
         0,
         IMS_DNS_OK,
         "a.t/10/192.0.2.1 b.t/20/192.0.2.2"},
        {"we are the second preference: it and worse go",
         {{"a.t", 10, "192.0.2.1"}, {"me.t", 20, "127.0.0.1"}, {"c.t", 30, "192.0.2.3"}},
         {"127.0.0.1:25"},
         {NULL},
         25,
         2,
         IMS_DNS_OK,
         "a.t/10/192.0.2.1"},
        {"another port of ours is not us",
         {{"me.t", 10, "127.0.0.1"}},
         {"127.0.0.1:2525"},
         {NULL},
         25,
         0,
         IMS_DNS_OK,
         "me.t/10/127.0.0.1"},
        {"the test's port",
         {{"me.t", 10, "127.0.0.1"}},
         {"127.0.0.1:2525"},
         {NULL},
         2525,
         1,
         IMS_DNS_PERMANENT,
         "mail for d.t loops back to myself (me.t [127.0.0.1] is this gateway)"},
        {"another 127.0.0.x is a remote host",
         {{"peer.t", 10, "127.0.0.2"}},
         {"127.0.0.1:25"},
         {"127.0.0.1"},
         25,
         0,
         IMS_DNS_OK,
         "peer.t/10/127.0.0.2"},
        {"a wildcard listener covers the interface addresses",
         {{"me.t", 10, "192.0.2.9"}, {"b.t", 20, "192.0.2.2"}},
         {"0.0.0.0:25"},
         {"127.0.0.1", "192.0.2.9"},
         25,
         2,
         IMS_DNS_PERMANENT,
         "mail for d.t loops back to myself (me.t [192.0.2.9] is this gateway)"},
        {"... but not other addresses",
         {{"peer.t", 10, "127.0.0.2"}},
         {"0.0.0.0:25"},
         {"127.0.0.1", "192.0.2.9"},
         25,
         0,
         IMS_DNS_OK,
         "peer.t/10/127.0.0.2"},
        {"0.0.0.0 takes no IPv6",
         {{"me.t", 10, "2001:db8::9"}},
         {"0.0.0.0:25"},
         {"2001:db8::9"},
         25,
         0,
         IMS_DNS_OK,
         "me.t/10/2001:db8::9"},
        {":: takes both families",
         {{"a.t", 5, "2001:db8::1"}, {"me.t", 10, "192.0.2.9"}},
         {"[::]:25"},
         {"192.0.2.9"},
         25,
         1,
         IMS_DNS_OK,
         "a.t/5/2001:db8::1"},
        {"an equal preference beside us goes too",
         {{"b.t", 10, "192.0.2.2"}, {"me.t", 10, "::1"}},
         {"[::1]:25"},
         {NULL},
         25,
         2,
         IMS_DNS_PERMANENT,
         "mail for d.t loops back to myself (me.t [::1] is this gateway)"},
        {"our best preference counts, not the first listed",
         {{"a.t", 10, "192.0.2.1"}, {"me.t", 20, "127.0.0.1"}, {"me2.t", 15, "192.0.2.9"}},
         {"127.0.0.1:25", "192.0.2.9:25"},
         {NULL},
         25,
         2,
         IMS_DNS_OK,
         "a.t/10/192.0.2.1"},
        {"an implicit MX that is us",
         {{"d.t", 0, "192.0.2.9"}},
         {"192.0.2.9:25"},
         {NULL},
         25,
         1,
         IMS_DNS_PERMANENT,
         "mail for d.t loops back to myself (d.t [192.0.2.9] is this gateway)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ims_dns_result r = {.status = IMS_DNS_OK, .code = "2.0.0", .domain = "d.t"};
        ims_dns_target v[MAX_CASE_ENTRIES];
        r.v = v;
        for (size_t i = 0; i < MAX_CASE_ENTRIES && cases[c].in[i].name; i++, r.n++) {
            snprintf(v[i].name, sizeof v[i].name, "%s", cases[c].in[i].name);
            v[i].preference = cases[c].in[i].pref;
            assert_int_equal(smtp_ip_parse(cases[c].in[i].ip, &v[i].ip), 0);
        }
        ims_listen listen[3];
        smtp_ip local[3];
        ims_dns_self self = {.listen = listen, .local = local};
        for (size_t i = 0; i < 3 && cases[c].listen[i]; i++)
            assert_int_equal(ims_listen_parse(cases[c].listen[i], &listen[self.nlisten++]), 0);
        for (size_t i = 0; i < 3 && cases[c].local[i]; i++)
            assert_int_equal(smtp_ip_parse(cases[c].local[i], &local[self.nlocal++]), 0);
        size_t dropped = ims_dns_drop_self(&r, &self, cases[c].port);
        char s[1024];
        const char *text = r.status == IMS_DNS_OK ? list(&r, s, sizeof s) : r.text;
        if (dropped != cases[c].dropped || r.status != cases[c].st || strcmp(text, cases[c].want))
            fail_msg("%s: got %zu dropped, %s \"%s\"; want %zu, %s \"%s\"", cases[c].what, dropped,
                     ims_dns_status_name(r.status), text, cases[c].dropped,
                     ims_dns_status_name(cases[c].st), cases[c].want);
        if (r.status == IMS_DNS_PERMANENT)
            assert_string_equal(r.code, "5.4.6");
    }
    /* A failed result is left alone. */
    ims_dns_result r = {.status = IMS_DNS_TRANSIENT, .code = "4.4.3", .text = "x"};
    ims_dns_self none = {0};
    assert_int_equal(ims_dns_drop_self(&r, &none, 25), 0);
    assert_string_equal(r.code, "4.4.3");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_drop_self), cmocka_unit_test(test_table),
        cmocka_unit_test(test_order),     cmocka_unit_test(test_limits),
        cmocka_unit_test(test_timeout),   cmocka_unit_test(test_api),
        cmocka_unit_test(test_host),      cmocka_unit_test(test_host_numeric),
    };
    return cmocka_run_group_tests_name("dns", tests, group_setup, group_teardown);
}
