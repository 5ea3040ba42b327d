/* dns.c - the outbound side's resolver: a domain's mail exchangers and their addresses (or the
 * addresses of one smart host) through c-ares, driven by the caller's event loop (sockets and
 * time-outs exposed), classified into an ordered destination list or a transient or permanent
 * failure with its enhanced code. */
#include "ims/dns_int.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"

/* One query in flight: which lookup, which exchanger, which family (0: the MX query). */
typedef struct dns_query {
    struct dns_lookup *lk;
    size_t host;
    int family;
} dns_query;

typedef struct dns_lookup {
    ims_dns *d;
    struct dns_lookup *prev, *next; /* every lookup of d */
    struct dns_lookup *done_next;   /* d's queue of finished lookups */
    ims_dns_family family;
    ims_dns_mx_fn done;
    void *arg;
    unsigned outstanding; /* queries whose callbacks have not run, +1 while starting them */
    bool single;          /* ims_dns_resolve_host: hosts[0] is the host, no MX query */
    ims_dns_host *hosts;  /* IMS_DNS_MAX_MX of them (one for a single host) */
    size_t nhosts;
    dns_query mxq;
    dns_query q[2 * IMS_DNS_MAX_MX]; /* host i: q[2i] A, q[2i+1] AAAA */
    ims_dns_result *res;
} dns_lookup;

struct ims_dns {
    ares_channel ch;
    ims_dns_sock_fn sock_fn;
    void *sock_arg;
    uint64_t rng;
    bool closing;                      /* ims_dns_free: callbacks only count down */
    dns_lookup *all;                   /* lookups whose callbacks have not run */
    dns_lookup *done_head, *done_tail; /* finished, waiting for ims_dns_process */
    size_t pending;
};

/* --- answers ----------------------------------------------------------------------------- */

uint64_t ims_dns_rng(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

const char *ims_dns_error_name(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return "success";
    case ARES_ENODATA:
        return "no such record";
    case ARES_ENOTFOUND:
        return "NXDOMAIN";
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "REFUSED";
    case ARES_EFORMERR:
        return "FORMERR";
    case ARES_ENOTIMP:
        return "NOTIMP";
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ECONNREFUSED:
        return "connection refused";
    case ARES_EBADRESP:
        return "malformed answer";
    case ARES_EBADNAME:
        return "invalid name";
    case ARES_ENOMEM:
        return "out of memory";
    case IMS_DNS_NOT_ASKED:
        return "not asked";
    default:
        return ares_strerror(status);
    }
}

bool ims_dns_transient(int status)
{
    return status != ARES_SUCCESS && status != ARES_ENODATA && status != ARES_ENOTFOUND &&
           status != ARES_EBADNAME;
}

/* name_copy - a name from DNS into out (SMTP_DOMAIN_MAX + 1 bytes): as is when valid, else
 * truncated with bytes other than letters, digits, '-', '.' and '_' as '?' (for texts).
 * Returns whether it was valid. */
static bool name_copy(const char *name, char *out)
{
    size_t len = strlen(name);
    bool ok = len > 0 && len <= SMTP_DOMAIN_MAX && smtp_domain_valid(name, len, false);
    size_t n = len > SMTP_DOMAIN_MAX ? SMTP_DOMAIN_MAX : len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_';
        out[i] = plain ? (char)c : '?';
    }
    out[n] = 0;
    return ok;
}

/* mx_cmp - by preference, then by the position the shuffle gave (qsort is not stable). */
typedef struct mx_ref {
    const struct ares_mx_reply *mx;
    uint64_t key;
} mx_ref;

static int mx_cmp(const void *a, const void *b)
{
    const mx_ref *x = a, *y = b;
    if (x->mx->priority != y->mx->priority)
        return x->mx->priority < y->mx->priority ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

/* is_root - the exchange "." (c-ares gives the root as "" or "."). */
static bool is_root(const char *host)
{
    return !host[0] || !strcmp(host, ".");
}

int ims_dns_mx_answer(const unsigned char *abuf, int alen, uint64_t *rng, ims_dns_host *hosts,
                      size_t *n, bool *null_mx)
{
    *n = 0;
    *null_mx = false;
    struct ares_mx_reply *list = NULL;
    int st = ares_parse_mx_reply(abuf, alen, &list);
    if (st != ARES_SUCCESS)
        return st == ARES_ENOMEM || st == ARES_ENODATA ? st : ARES_EBADRESP;
    size_t total = 0, roots = 0;
    for (const struct ares_mx_reply *m = list; m; m = m->next) {
        total++;
        roots += is_root(m->host);
    }
    if (total == 0) {
        ares_free_data(list);
        return ARES_ENODATA;
    }
    if (total == 1 && roots == 1) {
        ares_free_data(list);
        *null_mx = true;
        return ARES_SUCCESS;
    }
    /* The packet bounds total (a record takes at least 12 bytes). */
    mx_ref *refs = malloc((total - roots) * sizeof *refs);
    if (!refs && total > roots) {
        ares_free_data(list);
        return ARES_ENOMEM;
    }
    size_t k = 0;
    for (const struct ares_mx_reply *m = list; m; m = m->next)
        if (!is_root(m->host))
            refs[k++] = (mx_ref){m, ims_dns_rng(rng)};
    /* A random key per record, ordered by (preference, key): equal preferences end up in
     * random order (RFC 5321 5.1), reproducible for a seed. */
    if (k > 1)
        qsort(refs, k, sizeof *refs, mx_cmp);
    for (size_t i = 0; i < k && *n < IMS_DNS_MAX_MX; i++) {
        char name[SMTP_DOMAIN_MAX + 1];
        bool valid = name_copy(refs[i].mx->host, name);
        bool seen = false;
        for (size_t j = 0; j < *n && !seen; j++)
            seen = !strcasecmp(hosts[j].name, name);
        if (seen)
            continue; /* the same exchanger again, at a worse (or equal) preference */
        ims_dns_host *h = &hosts[(*n)++];
        memset(h, 0, sizeof *h);
        memcpy(h->name, name, sizeof name);
        h->pref = refs[i].mx->priority;
        h->valid = valid;
        h->st4 = h->st6 = valid ? IMS_DNS_NOT_ASKED : ARES_EBADNAME;
    }
    free(refs);
    ares_free_data(list);
    return *n ? ARES_SUCCESS : ARES_ENODATA;
}

/* usable - an address to deliver to: not unspecified, not IPv4-mapped in an AAAA record. */
static bool usable(const smtp_ip *ip, int family)
{
    if (ip->family != family)
        return false; /* ::ffff:a.b.c.d came back as IPv4 */
    if (family == 4)
        return ip->a[0] != 0; /* 0.0.0.0/8: "this network", connects to ourselves on Linux */
    static const uint8_t zero[16];
    return memcmp(ip->a, zero, 16) != 0;
}

/* add_addr - append ip to list[0..*n) unless there or full. */
static void add_addr(smtp_ip *list, size_t *n, const smtp_ip *ip)
{
    for (size_t i = 0; i < *n; i++)
        if (!memcmp(&list[i], ip, sizeof *ip))
            return;
    if (*n < IMS_DNS_MAX_ADDRS)
        list[(*n)++] = *ip;
}

void ims_dns_addr_answer(ims_dns_host *h, int family, int status, const unsigned char *abuf,
                         int alen)
{
    int *st = family == 4 ? &h->st4 : &h->st6;
    smtp_ip *list = family == 4 ? h->v4 : h->v6;
    size_t *n = family == 4 ? &h->n4 : &h->n6;
    *n = 0;
    *st = status;
    if (status != ARES_SUCCESS)
        return;
    int got = IMS_DNS_MAX_ADDRS;
    if (family == 4) {
        struct ares_addrttl a[IMS_DNS_MAX_ADDRS];
        *st = ares_parse_a_reply(abuf, alen, NULL, a, &got);
        for (int i = 0; *st == ARES_SUCCESS && i < got && i < IMS_DNS_MAX_ADDRS; i++) {
            struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr = a[i].ipaddr};
            smtp_ip ip;
            if (!smtp_ip_from_sockaddr((const struct sockaddr *)&sin, &ip) && usable(&ip, 4))
                add_addr(list, n, &ip);
        }
    } else {
        struct ares_addr6ttl a[IMS_DNS_MAX_ADDRS];
        *st = ares_parse_aaaa_reply(abuf, alen, NULL, a, &got);
        for (int i = 0; *st == ARES_SUCCESS && i < got && i < IMS_DNS_MAX_ADDRS; i++) {
            struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
            memcpy(&sin6.sin6_addr, &a[i].ip6addr, 16);
            smtp_ip ip;
            if (!smtp_ip_from_sockaddr((const struct sockaddr *)&sin6, &ip) && usable(&ip, 6))
                add_addr(list, n, &ip);
        }
    }
    if (*st == ARES_SUCCESS && *n == 0)
        *st = ARES_ENODATA;
    else if (*st != ARES_SUCCESS && *st != ARES_ENODATA && *st != ARES_ENOMEM)
        *st = ARES_EBADRESP;
    if (*st != ARES_SUCCESS)
        *n = 0;
}

/* set_result - r's status, code and text (printf-style). */
static void set_result(ims_dns_result *r, ims_dns_status st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_result(ims_dns_result *r, ims_dns_status st, const char *code, const char *fmt, ...)
{
    r->status = st;
    snprintf(r->code, sizeof r->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

/* host_error - why h gave no address: its worse lookup (a transient one first), and which. */
static int host_error(const ims_dns_host *h, ims_dns_family family, const char **type)
{
    bool a = family != IMS_DNS_IPV6, aaaa = family != IMS_DNS_IPV4;
    if (!h->valid) {
        *type = "MX";
        return ARES_EBADNAME;
    }
    if (aaaa && ims_dns_transient(h->st6)) {
        *type = "AAAA";
        return h->st6;
    }
    if (a && ims_dns_transient(h->st4)) {
        *type = "A";
        return h->st4;
    }
    *type = !a ? "AAAA" : !aaaa ? "A" : "A/AAAA";
    return a ? h->st4 : h->st6; /* both permanent: NXDOMAIN or no such record */
}

/* add_target - append h's ip to r->v unless a better exchanger already has it. */
static void add_target(ims_dns_result *r, const ims_dns_host *h, const smtp_ip *ip)
{
    for (size_t i = 0; i < r->n; i++)
        if (!memcmp(&r->v[i].ip, ip, sizeof *ip))
            return;
    ims_dns_target *t = &r->v[r->n++];
    memcpy(t->name, h->name, sizeof t->name);
    t->preference = h->pref;
    t->ip = *ip;
}

/* build_list - r's list from hosts[0..n) in order, for family; *transient and *permanent: the
 * first host left without an address for a reason worth a retry, and for good (NULL: none).
 * Returns 0 or ENOMEM (r is then TRANSIENT 4.3.0). Shared by the MX and the single host
 * lookups, so that both order and filter addresses alike. */
static int build_list(ims_dns_result *r, const ims_dns_host *hosts, size_t n, ims_dns_family family,
                      const ims_dns_host **transient, const ims_dns_host **permanent)
{
    bool a = family != IMS_DNS_IPV6, aaaa = family != IMS_DNS_IPV4;
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        cap += (a ? hosts[i].n4 : 0) + (aaaa ? hosts[i].n6 : 0);
    free(r->v);
    r->v = cap ? calloc(cap, sizeof *r->v) : NULL;
    r->n = 0;
    r->skipped = 0;
    *transient = *permanent = NULL;
    if (cap && !r->v) {
        set_result(r, IMS_DNS_TRANSIENT, "4.3.0", "out of memory looking up %s", r->domain);
        return ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const ims_dns_host *h = &hosts[i];
        size_t n4 = h->valid && a ? h->n4 : 0, n6 = h->valid && aaaa ? h->n6 : 0;
        if (!n4 && !n6) {
            r->skipped++;
            const char *type;
            bool t = ims_dns_transient(host_error(h, family, &type)) && h->valid;
            if (t && !*transient)
                *transient = h;
            if (!t && !*permanent)
                *permanent = h;
            continue;
        }
        /* RFC 8305 4: alternate the families, IPv6 first, so that a broken path of one
         * family costs one attempt, not all of them. */
        for (size_t k = 0; k < n4 || k < n6; k++) {
            if (k < n6)
                add_target(r, h, &h->v6[k]);
            if (k < n4)
                add_target(r, h, &h->v4[k]);
        }
    }
    if (r->n)
        set_result(r, IMS_DNS_OK, "2.0.0", "%s", "");
    return 0;
}

/* set_transient - r failed for a retry: the lookup of h that failed so. */
static void set_transient(ims_dns_result *r, const ims_dns_host *h, ims_dns_family family)
{
    const char *type;
    int e = host_error(h, family, &type);
    set_result(r, IMS_DNS_TRANSIENT, "4.4.3", "DNS lookup of %s for %s failed: %s", type, h->name,
               ims_dns_error_name(e));
}

/* family_word - "IPv4 ", "IPv6 " or "" for texts about the addresses asked. */
static const char *family_word(ims_dns_family family)
{
    return family == IMS_DNS_IPV4 ? "IPv4 " : family == IMS_DNS_IPV6 ? "IPv6 " : "";
}

int ims_dns_assemble(ims_dns_result *r, const ims_dns_host *hosts, size_t n, ims_dns_family family)
{
    const ims_dns_host *transient, *permanent;
    if (build_list(r, hosts, n, family, &transient, &permanent))
        return ENOMEM;
    if (r->n)
        return 0;
    const char *fam = family_word(family);
    if (transient) {
        set_transient(r, transient, family);
    } else if (r->implicit) {
        set_result(r, IMS_DNS_PERMANENT, "5.4.4", "%s has no MX and no %saddress record", r->domain,
                   fam);
    } else {
        const char *type;
        int e = permanent ? host_error(permanent, family, &type) : ARES_ENODATA;
        set_result(r, IMS_DNS_PERMANENT, "5.4.4",
                   "no mail exchanger of %s has an %saddress (%s: %s)", r->domain, fam,
                   permanent ? permanent->name : "", ims_dns_error_name(e));
    }
    return 0;
}

int ims_dns_host_assemble(ims_dns_result *r, const ims_dns_host *h, ims_dns_family family)
{
    const ims_dns_host *transient, *permanent;
    if (build_list(r, h, 1, family, &transient, &permanent))
        return ENOMEM;
    if (r->n)
        return 0;
    const char *type;
    if (transient)
        set_transient(r, h, family);
    else if (host_error(h, family, &type) == ARES_ENOTFOUND)
        set_result(r, IMS_DNS_PERMANENT, "5.4.4", "host %s not found", h->name);
    else
        set_result(r, IMS_DNS_PERMANENT, "5.4.4", "host %s has no %saddress", h->name,
                   family_word(family));
    return 0;
}

/* --- the loop ---------------------------------------------------------------------------- */

int ims_dns_global_init(void)
{
    return ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS ? 0 : EIO;
}

void ims_dns_global_cleanup(void)
{
    ares_library_cleanup();
}

/* sock_cb - c-ares' socket state callback, handed on. */
static void sock_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    ims_dns *d = data;
    d->sock_fn(d->sock_arg, (int)fd, readable != 0, writable != 0);
}

int ims_dns_new(const ims_dns_options *opt, ims_dns **out)
{
    *out = NULL;
    unsigned timeout = opt->timeout_ms ? opt->timeout_ms : IMS_DNS_TIMEOUT_MS;
    unsigned tries = opt->tries ? opt->tries : IMS_DNS_TRIES;
    const char *servers = opt->servers ? opt->servers : "";
    if (!opt->sock_fn || timeout > IMS_DNS_TIMEOUT_MAX || tries > IMS_DNS_TRIES_MAX ||
        strlen(servers) > IMS_DNS_SERVERS_MAX)
        return EINVAL;
    ims_dns *d = calloc(1, sizeof *d);
    if (!d)
        return ENOMEM;
    if (base_random(&d->rng, sizeof d->rng)) {
        free(d);
        return EIO;
    }
    d->sock_fn = opt->sock_fn;
    d->sock_arg = opt->sock_arg;
    struct ares_options o = {0};
    o.timeout = (int)timeout;
    o.tries = (int)tries;
    o.sock_state_cb = sock_cb;
    o.sock_state_cb_data = d;
    /* NOCHECKRESP: a SERVFAIL or REFUSED answer ends the query with that status. Without it
     * c-ares 1.18 asks again and, when every try got one, reports ARES_ECONNREFUSED, so that
     * "the resolver failed" and "no server there" could not be told apart. The retry of a
     * SERVFAIL is the queue's, minutes later. */
    o.flags = ARES_FLAG_NOCHECKRESP;
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB | ARES_OPT_FLAGS;
    int st = ares_init_options(&d->ch, &o, mask);
    if (st != ARES_SUCCESS) {
        free(d);
        return st == ARES_ENOMEM ? ENOMEM : EIO;
    }
    if (servers[0]) {
        st = ares_set_servers_ports_csv(d->ch, servers);
        if (st != ARES_SUCCESS) {
            ares_destroy(d->ch);
            free(d);
            return st == ARES_ENOMEM ? ENOMEM : EINVAL;
        }
    }
    *out = d;
    return 0;
}

void ims_dns_seed(ims_dns *d, uint64_t seed)
{
    d->rng = seed;
}

/* lookup_free - a lookup and whatever result it still holds. */
static void lookup_free(dns_lookup *lk)
{
    ims_dns_result_free(lk->res);
    free(lk->hosts);
    free(lk);
}

void ims_dns_free(ims_dns *d)
{
    if (!d)
        return;
    d->closing = true;
    ares_destroy(d->ch); /* every query's callback runs now, with ARES_EDESTRUCTION */
    for (dns_lookup *lk = d->all, *next; lk; lk = next) {
        next = lk->next;
        lookup_free(lk);
    }
    free(d);
}

/* finish - every query of lk has answered: build the result, queue lk for its callback. */
static void finish(dns_lookup *lk)
{
    ims_dns_result *r = lk->res;
    if (r->status == IMS_DNS_OK && lk->single) /* still undecided: the addresses decide */
        ims_dns_host_assemble(r, &lk->hosts[0], lk->family);
    else if (r->status == IMS_DNS_OK)
        ims_dns_assemble(r, lk->hosts, lk->nhosts, lk->family);
    ims_dns *d = lk->d;
    lk->done_next = NULL;
    if (d->done_tail)
        d->done_tail->done_next = lk;
    else
        d->done_head = lk;
    d->done_tail = lk;
}

/* release - one query of lk has called back. */
static void release(dns_lookup *lk)
{
    if (--lk->outstanding == 0 && !lk->d->closing)
        finish(lk);
}

static void addr_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    dns_query *q = arg;
    dns_lookup *lk = q->lk;
    if (!lk->d->closing)
        ims_dns_addr_answer(&lk->hosts[q->host], q->family, status, abuf, alen);
    release(lk);
}

/* ask_addrs - the A and/or AAAA queries of every valid exchanger of lk. */
static void ask_addrs(dns_lookup *lk)
{
    for (size_t i = 0; i < lk->nhosts; i++) {
        ims_dns_host *h = &lk->hosts[i];
        if (!h->valid)
            continue;
        for (int k = 0; k < 2; k++) {
            int family = k ? 6 : 4;
            if ((family == 4 && lk->family == IMS_DNS_IPV6) ||
                (family == 6 && lk->family == IMS_DNS_IPV4))
                continue;
            dns_query *q = &lk->q[2 * i + (size_t)k];
            *q = (dns_query){lk, i, family};
            lk->outstanding++;
            ares_query(lk->d->ch, h->name, ns_c_in, family == 4 ? ns_t_a : ns_t_aaaa, addr_cb, q);
        }
    }
}

static void mx_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    dns_lookup *lk = ((dns_query *)arg)->lk;
    ims_dns_result *r = lk->res;
    if (lk->d->closing) {
        release(lk);
        return;
    }
    bool null_mx = false;
    if (status == ARES_SUCCESS)
        status = ims_dns_mx_answer(abuf, alen, &lk->d->rng, lk->hosts, &lk->nhosts, &null_mx);
    if (status == ARES_ENODATA) {
        /* RFC 5321 5.1: no MX records, the domain itself with preference 0. */
        r->implicit = true;
        ims_dns_host *h = &lk->hosts[0];
        memset(h, 0, sizeof *h);
        memcpy(h->name, r->domain, sizeof h->name);
        h->valid = true;
        h->st4 = h->st6 = IMS_DNS_NOT_ASKED;
        lk->nhosts = 1;
        status = ARES_SUCCESS;
    }
    if (null_mx)
        set_result(r, IMS_DNS_PERMANENT, "5.1.10", "%s does not accept mail (null MX, RFC 7505)",
                   r->domain);
    else if (status == ARES_ENOTFOUND)
        set_result(r, IMS_DNS_PERMANENT, "5.1.2", "DNS lookup of MX for %s failed: NXDOMAIN",
                   r->domain);
    else if (status == ARES_ENOMEM)
        set_result(r, IMS_DNS_TRANSIENT, "4.3.0", "out of memory looking up MX for %s", r->domain);
    else if (status != ARES_SUCCESS)
        set_result(r, IMS_DNS_TRANSIENT, "4.4.3", "DNS lookup of MX for %s failed: %s", r->domain,
                   ims_dns_error_name(status));
    else
        ask_addrs(lk); /* outstanding still counts this query: nothing can finish lk yet */
    release(lk);
}

/* lookup_new - a lookup of name (valid, at most SMTP_DOMAIN_MAX bytes) with room for nhosts
 * hosts, its result undecided, registered with d. NULL: out of memory. */
static dns_lookup *lookup_new(ims_dns *d, const char *name, size_t nhosts, ims_dns_family family,
                              ims_dns_mx_fn done, void *arg)
{
    dns_lookup *lk = calloc(1, sizeof *lk);
    if (!lk)
        return NULL;
    lk->hosts = malloc(nhosts * sizeof *lk->hosts);
    lk->res = calloc(1, sizeof *lk->res);
    if (!lk->hosts || !lk->res) {
        lookup_free(lk);
        return NULL;
    }
    lk->d = d;
    lk->family = family;
    lk->done = done;
    lk->arg = arg;
    memcpy(lk->res->domain, name, strlen(name) + 1);
    lk->res->status = IMS_DNS_OK; /* undecided until the answers come */
    lk->next = d->all;
    if (d->all)
        d->all->prev = lk;
    d->all = lk;
    d->pending++;
    return lk;
}

/* family_ok - family is one of ims_dns_family's. */
static bool family_ok(ims_dns_family family)
{
    return family == IMS_DNS_ANY || family == IMS_DNS_IPV4 || family == IMS_DNS_IPV6;
}

int ims_dns_resolve_mx(ims_dns *d, const char *domain, ims_dns_family family, ims_dns_mx_fn done,
                       void *arg)
{
    size_t len = strlen(domain);
    if (len == 0 || len > SMTP_DOMAIN_MAX || !smtp_domain_valid(domain, len, false) ||
        !family_ok(family))
        return EINVAL;
    dns_lookup *lk = lookup_new(d, domain, IMS_DNS_MAX_MX, family, done, arg);
    if (!lk)
        return ENOMEM;
    lk->mxq = (dns_query){lk, 0, 0};
    lk->outstanding = 1;
    /* ares_query, not ares_search: the name is absolute, no search domains are tried. */
    ares_query(d->ch, domain, ns_c_in, ns_t_mx, mx_cb, &lk->mxq);
    return 0;
}

/* numeric_host - h as the numeric address text gives: its one address in v4 or v6 (none when
 * unspecified, as a DNS answer's would be dropped), the other family "no such record", as
 * though DNS had answered, so that the family filter and the texts are the usual ones. */
static void numeric_host(ims_dns_host *h, const smtp_ip *ip)
{
    h->st4 = h->st6 = ARES_ENODATA;
    if (!usable(ip, ip->family))
        return;
    if (ip->family == 4) {
        h->v4[h->n4++] = *ip;
        h->st4 = ARES_SUCCESS;
    } else {
        h->v6[h->n6++] = *ip;
        h->st6 = ARES_SUCCESS;
    }
}

int ims_dns_resolve_host(ims_dns *d, const char *host, ims_dns_family family, ims_dns_mx_fn done,
                         void *arg)
{
    size_t len = strnlen(host, SMTP_DOMAIN_MAX + 1);
    smtp_ip ip;
    bool numeric = len <= SMTP_DOMAIN_MAX && smtp_ip_parse(host, &ip) == ERROR_SUCCESS;
    if (len == 0 || len > SMTP_DOMAIN_MAX || !family_ok(family) ||
        (!numeric && !smtp_domain_valid(host, len, false)))
        return EINVAL;
    dns_lookup *lk = lookup_new(d, host, 1, family, done, arg);
    if (!lk)
        return ENOMEM;
    lk->single = true;
    lk->nhosts = 1;
    ims_dns_host *h = &lk->hosts[0];
    memset(h, 0, sizeof *h);
    memcpy(h->name, host, len + 1);
    h->valid = true;
    if (numeric) {
        /* No DNS, but the callback still comes from ims_dns_process, as the contract says:
         * the caller may not expect it inside this call. */
        numeric_host(h, &ip);
        finish(lk);
        return 0;
    }
    h->st4 = h->st6 = IMS_DNS_NOT_ASKED;
    lk->outstanding = 1; /* an answer given at once (c-ares may) must not finish lk yet */
    ask_addrs(lk);
    release(lk);
    return 0;
}

void ims_dns_process(ims_dns *d, int fd_read, int fd_write)
{
    ares_process_fd(d->ch, (ares_socket_t)fd_read, (ares_socket_t)fd_write);
    while (d->done_head) {
        dns_lookup *lk = d->done_head;
        d->done_head = lk->done_next;
        if (!d->done_head)
            d->done_tail = NULL;
        if (lk->prev)
            lk->prev->next = lk->next;
        else
            d->all = lk->next;
        if (lk->next)
            lk->next->prev = lk->prev;
        d->pending--;
        ims_dns_result *r = lk->res;
        lk->res = NULL;
        ims_dns_mx_fn done = lk->done;
        void *arg = lk->arg;
        lookup_free(lk);
        done(arg, r);
    }
}

bool ims_dns_timeout(ims_dns *d, struct timeval *tv)
{
    if (d->done_head) {
        tv->tv_sec = 0;
        tv->tv_usec = 0;
        return true;
    }
    if (!d->pending)
        return false;
    return ares_timeout(d->ch, NULL, tv) != NULL;
}

size_t ims_dns_pending(const ims_dns *d)
{
    return d->pending;
}

void ims_dns_result_free(ims_dns_result *r)
{
    if (!r)
        return;
    free(r->v);
    free(r);
}

const char *ims_dns_status_name(ims_dns_status s)
{
    switch (s) {
    case IMS_DNS_OK:
        return "OK";
    case IMS_DNS_TRANSIENT:
        return "transient";
    case IMS_DNS_PERMANENT:
        return "permanent";
    }
    return "?";
}

/* --- loop detection ---------------------------------------------------------------------- */

/* ip_zero - the unspecified address of its family (a wildcard listener). */
static bool ip_zero(const smtp_ip *ip)
{
    static const uint8_t zero[16];
    return !memcmp(ip->a, zero, ip->family == 4 ? 4 : 16);
}

/* is_self - delivering to ip:port would reach one of our listeners. */
static bool is_self(const smtp_ip *ip, const ims_dns_self *self, uint16_t port)
{
    for (size_t i = 0; i < self->nlisten; i++) {
        smtp_ip l;
        if (self->listen[i].port != port || smtp_ip_parse(self->listen[i].host, &l))
            continue;
        if (!ip_zero(&l)) {
            if (!memcmp(&l, ip, sizeof l))
                return true;
            continue;
        }
        /* 0.0.0.0 takes IPv4 only; :: takes both (a dual-stack socket). */
        if (l.family == 4 && ip->family != 4)
            continue;
        for (size_t k = 0; k < self->nlocal; k++)
            if (!memcmp(&self->local[k], ip, sizeof *ip))
                return true;
    }
    return false;
}

size_t ims_dns_drop_self(ims_dns_result *r, const ims_dns_self *self, uint16_t port)
{
    if (r->status != IMS_DNS_OK || !r->n)
        return 0;
    size_t me = r->n; /* the first entry that is us */
    for (size_t i = 0; i < r->n; i++)
        if (is_self(&r->v[i].ip, self, port) &&
            (me == r->n || r->v[i].preference < r->v[me].preference))
            me = i;
    if (me == r->n)
        return 0;
    uint16_t ours = r->v[me].preference;
    char name[SMTP_DOMAIN_MAX + 1], addr[64];
    memcpy(name, r->v[me].name, sizeof name);
    smtp_ip_format(&r->v[me].ip, addr, sizeof addr);
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].preference < ours)
            r->v[k++] = r->v[i];
    size_t dropped = r->n - k;
    r->n = k;
    if (!k)
        set_result(r, IMS_DNS_PERMANENT, "5.4.6",
                   "mail for %s loops back to myself (%s [%s] is this gateway)", r->domain, name,
                   addr);
    return dropped;
}
