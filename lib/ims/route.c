/* route.c - the router: where an address goes (a mailbox of ours, a remote domain's mail
 * exchangers, or a smart host), from the directory, the routing table (Parameters\Routing)
 * and SmartHost, decided in one place for every source of mail. */
#include "ims/ims.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ims_router {
    pthread_mutex_t lock; /* one caller at a time in the directory (and its reg_ctx) */
    directory *dir;
    char admin[DIR_MAX_ALIAS + 1]; /* AdministratorMailbox */
    char smart_host[IMS_HOST_MAX]; /* "" = DNS */
    size_t n;
    struct ims_route_entry *routes; /* the routing table, copied */
    const char **domains;           /* routes[i].domain, for smtp_domain_best */
};

/* port_parse - digits to a port 1..65535. Returns 0 or -1. */
static int port_parse(const char *p, uint16_t *out)
{
    if (!*p || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p))
        return -1;
    unsigned long v = strtoul(p, NULL, 10);
    if (v < 1 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int ims_host_parse(const char *text, char host[SMTP_DOMAIN_MAX + 1], bool *literal, uint16_t *port)
{
    size_t len = text ? strlen(text) : 0;
    if (!len || len >= IMS_HOST_MAX)
        return -1;
    *port = 25;
    *literal = text[0] == '[';
    const char *rest;
    if (*literal) {
        const char *close = strchr(text, ']');
        if (!close)
            return -1;
        const char *a = text + 1;
        size_t n = (size_t)(close - a);
        if (n > 5 && !strncasecmp(a, "IPv6:", 5)) /* RFC 5321 4.1.3's form */
            a += 5, n -= 5;
        if (n == 0 || n > SMTP_DOMAIN_MAX)
            return -1;
        memcpy(host, a, n);
        host[n] = 0;
        uint8_t bin[16];
        if (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1)
            return -1;
        rest = close + 1;
    } else {
        const char *colon = strchr(text, ':');
        size_t n = colon ? (size_t)(colon - text) : len;
        if (n == 0 || n > SMTP_DOMAIN_MAX || !smtp_domain_valid(text, n, false))
            return -1;
        memcpy(host, text, n);
        host[n] = 0;
        rest = text + n;
    }
    if (!*rest)
        return 0;
    return *rest == ':' ? port_parse(rest + 1, port) : -1;
}

int ims_router_new(const ims_settings *s, directory *d, ims_router **out)
{
    *out = NULL;
    ims_router *r = calloc(1, sizeof *r);
    if (!r)
        return ENOMEM;
    pthread_mutex_init(&r->lock, NULL);
    r->dir = d;
    snprintf(r->admin, sizeof r->admin, "%s", s->administrator_mailbox);
    snprintf(r->smart_host, sizeof r->smart_host, "%s", s->smart_host);
    r->n = s->nroutes;
    if (r->n) {
        r->routes = malloc(r->n * sizeof *r->routes);
        r->domains = malloc(r->n * sizeof *r->domains);
        if (!r->routes || !r->domains) {
            ims_router_free(r);
            return ENOMEM;
        }
        memcpy(r->routes, s->routes, r->n * sizeof *r->routes);
        for (size_t i = 0; i < r->n; i++)
            r->domains[i] = r->routes[i].domain;
    }
    *out = r;
    return 0;
}

void ims_router_free(ims_router *r)
{
    if (!r)
        return;
    free(r->routes);
    free(r->domains);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int ims_router_locked(ims_router *r, int (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&r->lock);
    int rc = fn(arg);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* entry_for - the Host of the most specific routing entry for domain, or NULL. */
static const char *entry_for(const ims_router *r, const char *domain)
{
    long i = r->n ? smtp_domain_best(r->domains, r->n, domain) : -1;
    return i < 0 ? NULL : r->routes[i].host;
}

ims_dns_family ims_router_family(ims_router *r, const char *domain)
{
    pthread_mutex_lock(&r->lock);
    long i = r->n ? smtp_domain_best(r->domains, r->n, domain) : -1;
    ims_dns_family f = i < 0 ? IMS_DNS_ANY : (ims_dns_family)r->routes[i].family;
    pthread_mutex_unlock(&r->lock);
    return f;
}

static bool is_local(ims_router *r, const char *domain)
{
    if (dir_is_local_domain(r->dir, domain))
        return true;
    const char *h = entry_for(r, domain);
    return h && !strcasecmp(h, IMS_ROUTING_INBOUND);
}

bool ims_router_is_local(ims_router *r, const char *domain)
{
    pthread_mutex_lock(&r->lock);
    bool local = is_local(r, domain);
    pthread_mutex_unlock(&r->lock);
    return local;
}

/* admin_mailbox - the administrator's mailbox, for postmaster. 0, ENOENT or ENOMEM. */
static int admin_mailbox(ims_router *r, ims_route *out)
{
    dir_mailbox mb = {0};
    dir_err err;
    int e = dir_mailbox_show(r->dir, r->admin, &mb, &err);
    if (e)
        return e == ENOMEM ? ENOMEM : ENOENT; /* a bad alias names no mailbox either */
    snprintf(out->alias, sizeof out->alias, "%s", mb.alias);
    dir_mailbox_free(&mb);
    return 0;
}

static int route(ims_router *r, const char *address, ims_route *out)
{
    const char *at = strrchr(address, '@');
    if (!at) {
        /* RFC 5321 4.5.1: "<postmaster>" with no domain is ours, in any case. */
        if (strcasecmp(address, "postmaster"))
            return EINVAL;
        out->kind = IMS_ROUTE_LOCAL;
        return admin_mailbox(r, out);
    }
    const char *domain = at + 1;
    if (is_local(r, domain)) {
        out->kind = IMS_ROUTE_LOCAL;
        char *alias = NULL;
        int e = dir_lookup(r->dir, address, &alias);
        if (e == ENOENT && (size_t)(at - address) == 10 && !strncasecmp(address, "postmaster", 10))
            return admin_mailbox(r, out);
        if (e)
            return e;
        snprintf(out->alias, sizeof out->alias, "%s", alias);
        free(alias);
        return 0;
    }
    const char *h = entry_for(r, domain);
    if (!h && r->smart_host[0])
        h = r->smart_host;
    if (!h || !strcasecmp(h, IMS_ROUTING_DNS)) {
        out->kind = IMS_ROUTE_DNS;
        out->port = 25;
        snprintf(out->host, sizeof out->host, "%s", domain);
        return 0;
    }
    out->kind = IMS_ROUTE_SMARTHOST;
    /* Checked when the settings were loaded; a value that slipped through is no route. */
    return ims_host_parse(h, out->host, &out->literal, &out->port) ? EINVAL : 0;
}

int ims_router_route(ims_router *r, const char *address, ims_route *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->lock);
    int e = route(r, address, out);
    pthread_mutex_unlock(&r->lock);
    return e;
}

int ims_route_dest(const ims_route *rt, const char *store_dir, char *out, size_t n)
{
    int k;
    switch (rt->kind) {
    case IMS_ROUTE_LOCAL:
        k = snprintf(out, n, "%s/%s", store_dir, rt->alias);
        break;
    case IMS_ROUTE_DNS:
        k = snprintf(out, n, "%s", rt->host);
        break;
    case IMS_ROUTE_SMARTHOST:
        if (rt->literal && strchr(rt->host, ':'))
            k = snprintf(out, n, "[IPv6:%s]:%u", rt->host, (unsigned)rt->port);
        else if (rt->literal)
            k = snprintf(out, n, "[%s]:%u", rt->host, (unsigned)rt->port);
        else
            k = snprintf(out, n, "%s:%u", rt->host, (unsigned)rt->port);
        break;
    default:
        k = -1;
    }
    return k < 0 || (size_t)k >= n ? ENAMETOOLONG : 0;
}

bool ims_host_same(const char *a, const char *b)
{
    char ha[SMTP_DOMAIN_MAX + 1], hb[SMTP_DOMAIN_MAX + 1];
    bool la, lb;
    uint16_t pa, pb;
    if (ims_host_parse(a, ha, &la, &pa) || ims_host_parse(b, hb, &lb, &pb))
        return false;
    if (la != lb || pa != pb)
        return false;
    if (!la)
        return !strcasecmp(ha, hb);
    /* Addresses compare by value: "::1" and "0:0::1" are one host. */
    uint8_t ba[16], bb[16];
    int fa = strchr(ha, ':') ? AF_INET6 : AF_INET, fb = strchr(hb, ':') ? AF_INET6 : AF_INET;
    return fa == fb && inet_pton(fa, ha, ba) == 1 && inet_pton(fb, hb, bb) == 1 &&
           !memcmp(ba, bb, fa == AF_INET6 ? 16 : 4);
}

/* best_entry - the index of the most specific routing entry of s matching domain, or -1. */
static long best_entry(const ims_settings *s, const char *domain)
{
    const char *names[IMS_MAX_ROUTES];
    for (size_t i = 0; i < s->nroutes; i++)
        names[i] = s->routes[i].domain;
    return s->nroutes ? smtp_domain_best(names, s->nroutes, domain) : -1;
}

void ims_settings_dest_tls(const ims_settings *s, ims_route_kind kind, const char *name,
                           ims_dest_tls *out)
{
    out->policy = (smtp_tls_policy)s->tls_policy;
    out->ca_file = s->tls_ca_file;
    const struct ims_route_entry *pick = NULL;
    if (kind == IMS_ROUTE_DNS) {
        long i = best_entry(s, name);
        if (i >= 0)
            pick = &s->routes[i];
    } else {
        /* Several domains may share a smart host: the strictest of their policies. */
        for (size_t i = 0; i < s->nroutes; i++) {
            const struct ims_route_entry *e = &s->routes[i];
            if (e->tls_policy == IMS_TLS_INHERIT && !e->tls_ca_file[0])
                continue;
            if (!ims_host_same(e->host, name))
                continue;
            uint8_t have = pick && pick->tls_policy != IMS_TLS_INHERIT ? pick->tls_policy : 0;
            if (!pick || (e->tls_policy != IMS_TLS_INHERIT && e->tls_policy > have))
                pick = e;
        }
    }
    if (!pick)
        return;
    if (pick->tls_policy != IMS_TLS_INHERIT)
        out->policy = (smtp_tls_policy)pick->tls_policy;
    if (pick->tls_ca_file[0])
        out->ca_file = pick->tls_ca_file;
}
