/* dnsanswer_fuzz.c - libFuzzer target for the resolver's answer handling (lib/ims dns_int.h):
 * arbitrary bytes as an MX answer and as the A and AAAA answers of its exchangers, then the
 * assembled destination list and loop detection, with their invariants checked; the first
 * exchanger's answers also as those of a single host (ims_dns_host_assemble, a smart host).
 *
 * Input: byte 0 picks the family (mod 3) and the shuffle seed; then chunks, each a status byte
 * (0: an answer follows; else a c-ares failure from a table) and, for an answer, a 2-byte
 * big-endian length and that many bytes. The first chunk is the MX answer; the next ones are
 * A, AAAA, A, AAAA, ... of the exchangers in order (missing ones: no such record). */
#include <ares.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ims/dns_int.h"
#include "fuzz.h"

static const int failures[] = {ARES_ENODATA,  ARES_ENOTFOUND,    ARES_ESERVFAIL, ARES_EREFUSED,
                               ARES_ETIMEOUT, ARES_ECONNREFUSED, ARES_EBADRESP,  ARES_ENOMEM};

/* chunk - the next chunk of d[*off..n): *status, and for an answer its bytes. */
static void chunk(const uint8_t *d, size_t n, size_t *off, int *status, const uint8_t **buf,
                  int *len)
{
    *buf = NULL;
    *len = 0;
    if (*off >= n) {
        *status = ARES_ENODATA;
        return;
    }
    uint8_t s = d[(*off)++];
    if (s) {
        *status = failures[s % (sizeof failures / sizeof failures[0])];
        return;
    }
    *status = ARES_SUCCESS;
    size_t l = 0;
    if (*off + 2 <= n) {
        l = (size_t)d[*off] << 8 | d[*off + 1];
        *off += 2;
    }
    if (l > n - *off)
        l = n - *off;
    *buf = d + *off;
    *len = (int)l;
    *off += l;
}

/* check_addrs - a family's list as ims_dns_addr_answer promises it. */
static void check_addrs(const smtp_ip *v, size_t count, int st, int family)
{
    CHECK(count <= IMS_DNS_MAX_ADDRS);
    CHECK((st == ARES_SUCCESS) == (count > 0));
    for (size_t i = 0; i < count; i++) {
        CHECK(v[i].family == family);
        for (size_t j = 0; j < i; j++)
            CHECK(memcmp(&v[i], &v[j], sizeof v[i]));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1)
        return 0;
    ims_dns_family family = (ims_dns_family)(d[0] % 3);
    uint64_t rng = d[0];
    size_t off = 1;
    static ims_dns_host hosts[IMS_DNS_MAX_MX];
    size_t nhosts = 0;
    bool null_mx = false;
    int status;
    const uint8_t *buf;
    int len;
    chunk(d, n, &off, &status, &buf, &len);
    int st = status;
    if (status == ARES_SUCCESS)
        st = ims_dns_mx_answer(buf, len, &rng, hosts, &nhosts, &null_mx);
    CHECK(st == ARES_SUCCESS || st == ARES_ENODATA || st == ARES_EBADRESP || st == ARES_ENOMEM ||
          status != ARES_SUCCESS);
    CHECK(nhosts <= IMS_DNS_MAX_MX);
    CHECK(!null_mx || nhosts == 0);
    if (status == ARES_SUCCESS && st == ARES_SUCCESS)
        CHECK(null_mx || nhosts > 0);
    for (size_t i = 0; i < nhosts; i++) {
        size_t l = strlen(hosts[i].name);
        CHECK(l <= SMTP_DOMAIN_MAX);
        CHECK(!hosts[i].valid || smtp_domain_valid(hosts[i].name, l, false));
        if (i)
            CHECK(hosts[i - 1].pref <= hosts[i].pref);
        for (size_t j = 0; j < i; j++)
            CHECK(strcasecmp(hosts[i].name, hosts[j].name));
    }
    if (st != ARES_SUCCESS || null_mx)
        return 0;

    for (size_t i = 0; i < nhosts; i++) {
        for (int family_of = 4; family_of <= 6; family_of += 2) {
            chunk(d, n, &off, &status, &buf, &len);
            ims_dns_addr_answer(&hosts[i], family_of, status, buf, len);
        }
        check_addrs(hosts[i].v4, hosts[i].n4, hosts[i].st4, 4);
        check_addrs(hosts[i].v6, hosts[i].n6, hosts[i].st6, 6);
    }

    ims_dns_result r = {.domain = "fuzz.test"};
    r.implicit = d[0] & 0x80;
    int e = ims_dns_assemble(&r, hosts, nhosts, family);
    CHECK(e == 0 || e == ENOMEM);
    CHECK(memchr(r.text, 0, sizeof r.text) && memchr(r.code, 0, sizeof r.code));
    CHECK((r.status == IMS_DNS_OK) == (r.n > 0));
    CHECK(r.code[0] == (r.status == IMS_DNS_OK ? '2' : r.status == IMS_DNS_TRANSIENT ? '4' : '5'));
    CHECK(r.skipped <= nhosts);
    for (size_t i = 0; i < r.n; i++) {
        CHECK(family != IMS_DNS_IPV4 || r.v[i].ip.family == 4);
        CHECK(family != IMS_DNS_IPV6 || r.v[i].ip.family == 6);
        if (i)
            CHECK(r.v[i - 1].preference <= r.v[i].preference);
        for (size_t j = 0; j < i; j++)
            CHECK(memcmp(&r.v[i].ip, &r.v[j].ip, sizeof r.v[i].ip));
        bool from_host = false;
        for (size_t k = 0; k < nhosts && !from_host; k++)
            from_host = hosts[k].valid && !strcmp(hosts[k].name, r.v[i].name) &&
                        hosts[k].pref == r.v[i].preference;
        CHECK(from_host);
    }

    /* The first exchanger's answers as a smart host's: its addresses alone, preference 0 (as
     * ims_dns_resolve_host sets its one host up). */
    if (nhosts && hosts[0].valid) {
        ims_dns_host host = hosts[0];
        host.pref = 0;
        ims_dns_result hr = {0};
        memcpy(hr.domain, host.name, sizeof hr.domain);
        CHECK(ims_dns_host_assemble(&hr, &host, family) == 0 || hr.status == IMS_DNS_TRANSIENT);
        CHECK(memchr(hr.text, 0, sizeof hr.text) && memchr(hr.code, 0, sizeof hr.code));
        CHECK((hr.status == IMS_DNS_OK) == (hr.n > 0));
        CHECK(hr.status != IMS_DNS_PERMANENT || !strcmp(hr.code, "5.4.4"));
        CHECK(hr.status != IMS_DNS_TRANSIENT || !strcmp(hr.code, "4.4.3") ||
              !strcmp(hr.code, "4.3.0"));
        CHECK(hr.n <= host.n4 + host.n6);
        for (size_t i = 0; i < hr.n; i++) {
            CHECK(!strcmp(hr.v[i].name, host.name) && hr.v[i].preference == 0);
            CHECK(family != IMS_DNS_IPV4 || hr.v[i].ip.family == 4);
            CHECK(family != IMS_DNS_IPV6 || hr.v[i].ip.family == 6);
            for (size_t j = 0; j < i; j++)
                CHECK(memcmp(&hr.v[i].ip, &hr.v[j].ip, sizeof hr.v[i].ip));
        }
        free(hr.v);
    }

    /* Loop detection with a destination picked by the last byte as ourselves. */
    if (r.n) {
        size_t me = d[n - 1] % r.n;
        char addr[64];
        smtp_ip_format(&r.v[me].ip, addr, sizeof addr);
        ims_listen l = {.port = 25};
        memcpy(l.host, addr, strlen(addr) + 1);
        ims_dns_self self = {.listen = &l, .nlisten = 1};
        uint16_t ours = r.v[me].preference;
        size_t before = r.n;
        size_t dropped = ims_dns_drop_self(&r, &self, 25);
        CHECK(dropped >= 1 && dropped <= before && r.n == before - dropped);
        for (size_t i = 0; i < r.n; i++)
            CHECK(r.v[i].preference < ours);
        CHECK((r.n == 0) == (r.status == IMS_DNS_PERMANENT));
        if (!r.n)
            CHECK(!strcmp(r.code, "5.4.6"));
    }
    free(r.v);
    return 0;
}
