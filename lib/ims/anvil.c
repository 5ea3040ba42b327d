/* anvil.c - per-client counters for the inbound side (Postfix's anvil, in the server's own
 * loop): connections at once and, over a sliding minute, new connections, messages and
 * recipients, keyed by client address (IPv4 by address, IPv6 by /64). No I/O, no clock: the
 * caller passes the time, so the unit tests drive it. */
#include "ims/ims.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ANVIL_WINDOW_MS 60000u
#define ANVIL_NONE UINT32_MAX /* end of a chain */

/* A count over a sliding minute: the current fixed window and the one before it, the older
 * one weighted by how much of it still lies within the last minute (the usual approximation:
 * exact for a steady rate, at most one window's worth off for bursts). */
typedef struct anvil_rate {
    uint64_t start; /* the current window's start (ms) */
    uint32_t cur, prev;
} anvil_rate;

enum { RATE_CONN, RATE_MSG, RATE_RCPT, RATE_N };

struct ims_anvil_client {
    smtp_ip key;     /* masked: the whole IPv4 address, an IPv6 address's /64 */
    uint32_t conns;  /* open now */
    uint32_t next;   /* the next entry in its bucket's chain, or ANVIL_NONE */
    uint64_t last;   /* its last use (ms): the least recently used idle entry is reused */
    uint64_t logged; /* when a refusal of it was last logged (ms); 0: never */
    anvil_rate rate[RATE_N];
};

struct ims_anvil {
    ims_anvil_client *v;
    uint32_t cap, nused;
    uint32_t *buckets; /* nbuckets heads, ANVIL_NONE when empty */
    uint32_t nbuckets; /* a power of two */
};

int ims_anvil_new(size_t capacity, ims_anvil **out)
{
    *out = NULL;
    if (capacity == 0 || capacity > IMS_ANVIL_CAPACITY_MAX)
        return EINVAL;
    ims_anvil *a = calloc(1, sizeof *a);
    if (!a)
        return ENOMEM;
    a->cap = (uint32_t)capacity;
    a->nbuckets = 1;
    while (a->nbuckets < a->cap * 2u)
        a->nbuckets <<= 1;
    a->v = calloc(a->cap, sizeof *a->v);
    a->buckets = malloc(a->nbuckets * sizeof *a->buckets);
    if (!a->v || !a->buckets) {
        ims_anvil_free(a);
        return ENOMEM;
    }
    for (uint32_t i = 0; i < a->nbuckets; i++)
        a->buckets[i] = ANVIL_NONE;
    *out = a;
    return 0;
}

void ims_anvil_free(ims_anvil *a)
{
    if (!a)
        return;
    free(a->v);
    free(a->buckets);
    free(a);
}

size_t ims_anvil_clients(const ims_anvil *a)
{
    return a ? a->nused : 0;
}

/* key_of - ip as the table keys it: IPv6 cut to its /64, since one host (or one customer of
 * a provider) commonly has a whole /64 to pick addresses from. */
static smtp_ip key_of(const smtp_ip *ip)
{
    smtp_ip k = {0};
    k.family = ip->family;
    memcpy(k.a, ip->a, ip->family == 6 ? 8 : ip->family == 4 ? 4 : 0);
    return k;
}

static uint32_t key_hash(const smtp_ip *k)
{
    /* FNV-1a over family and the key's bytes: the table's keys are chosen by peers, but a
     * peer chooses only among its own addresses, and a chain is walked per connection. */
    uint32_t h = 2166136261u ^ k->family;
    for (size_t i = 0; i < sizeof k->a; i++)
        h = (h ^ k->a[i]) * 16777619u;
    return h;
}

static bool key_equal(const smtp_ip *x, const smtp_ip *y)
{
    return x->family == y->family && !memcmp(x->a, y->a, sizeof x->a);
}

static void chain_unlink(ims_anvil *a, uint32_t idx)
{
    uint32_t *p = &a->buckets[key_hash(&a->v[idx].key) & (a->nbuckets - 1)];
    while (*p != ANVIL_NONE && *p != idx)
        p = &a->v[*p].next;
    if (*p == idx)
        *p = a->v[idx].next;
    a->nused--;
}

/* entry_get - ip's entry, made when missing; NULL when every entry has connections open (the
 * caller then does not limit that client: the table is bounded, the service must go on). */
static ims_anvil_client *entry_get(ims_anvil *a, const smtp_ip *ip, uint64_t now)
{
    smtp_ip k = key_of(ip);
    uint32_t b = key_hash(&k) & (a->nbuckets - 1);
    for (uint32_t i = a->buckets[b]; i != ANVIL_NONE; i = a->v[i].next)
        if (key_equal(&a->v[i].key, &k))
            return &a->v[i];
    uint32_t idx = ANVIL_NONE;
    if (a->nused < a->cap) {
        idx = a->nused; /* entries are only ever reused in place, so v[0..nused) are in use */
    } else {
        /* Full: reuse the idle entry unused for longest (its rates are then forgotten). */
        uint64_t oldest = UINT64_MAX;
        for (uint32_t i = 0; i < a->cap; i++)
            if (a->v[i].conns == 0 && a->v[i].last < oldest) {
                oldest = a->v[i].last;
                idx = i;
            }
        if (idx == ANVIL_NONE)
            return NULL;
        chain_unlink(a, idx);
        b = key_hash(&k) & (a->nbuckets - 1); /* unchanged; the chain may be */
    }
    ims_anvil_client *c = &a->v[idx];
    memset(c, 0, sizeof *c);
    c->key = k;
    c->last = now;
    c->next = a->buckets[b];
    a->buckets[b] = idx;
    a->nused++;
    return c;
}

/* rate_advance - move r's windows up to now. */
static void rate_advance(anvil_rate *r, uint64_t now)
{
    if (now < r->start + ANVIL_WINDOW_MS)
        return;
    if (now < r->start + 2 * ANVIL_WINDOW_MS) {
        r->prev = r->cur;
        r->start += ANVIL_WINDOW_MS;
    } else {
        r->prev = 0;
        r->start = now - (now % ANVIL_WINDOW_MS);
    }
    r->cur = 0;
}

/* rate_count - the events of the last minute, as estimated. */
static uint64_t rate_count(anvil_rate *r, uint64_t now)
{
    rate_advance(r, now);
    uint64_t into = now - r->start; /* < ANVIL_WINDOW_MS */
    return r->cur + ((uint64_t)r->prev * (ANVIL_WINDOW_MS - into)) / ANVIL_WINDOW_MS;
}

/* rate_take - one more event, unless limit (0: none) would be passed. */
static bool rate_take(anvil_rate *r, uint32_t limit, uint64_t now)
{
    if (limit && rate_count(r, now) >= limit)
        return false;
    rate_advance(r, now);
    if (r->cur < UINT32_MAX)
        r->cur++;
    return true;
}

ims_anvil_verdict ims_anvil_connect(ims_anvil *a, const smtp_ip *ip, const ims_anvil_limits *lim,
                                    uint64_t now, ims_anvil_client **client)
{
    *client = NULL;
    if (!a || !ip || (ip->family != 4 && ip->family != 6))
        return IMS_ANVIL_OK;
    ims_anvil_client *c = entry_get(a, ip, now);
    if (!c)
        return IMS_ANVIL_OK;
    c->last = now;
    if (lim->conns && c->conns >= lim->conns)
        return IMS_ANVIL_CONNS;
    /* A refused attempt is not counted: a client held off by the rate gets in again once its
     * own minute has passed, however often it knocked meanwhile. */
    if (!rate_take(&c->rate[RATE_CONN], lim->conn_rate, now))
        return IMS_ANVIL_CONN_RATE;
    c->conns++;
    *client = c;
    return IMS_ANVIL_OK;
}

void ims_anvil_disconnect(ims_anvil *a, ims_anvil_client *c, uint64_t now)
{
    (void)a;
    if (!c)
        return;
    if (c->conns)
        c->conns--;
    c->last = now;
}

ims_anvil_verdict ims_anvil_message(ims_anvil *a, ims_anvil_client *c, const ims_anvil_limits *lim,
                                    uint64_t now)
{
    (void)a;
    if (!c)
        return IMS_ANVIL_OK;
    c->last = now;
    return rate_take(&c->rate[RATE_MSG], lim->msg_rate, now) ? IMS_ANVIL_OK : IMS_ANVIL_MSG_RATE;
}

ims_anvil_verdict ims_anvil_recipient(ims_anvil *a, ims_anvil_client *c,
                                      const ims_anvil_limits *lim, uint64_t now)
{
    (void)a;
    if (!c)
        return IMS_ANVIL_OK;
    c->last = now;
    return rate_take(&c->rate[RATE_RCPT], lim->rcpt_rate, now) ? IMS_ANVIL_OK : IMS_ANVIL_RCPT_RATE;
}

bool ims_anvil_log_due(ims_anvil *a, const smtp_ip *ip, uint64_t now)
{
    if (!a || !ip || (ip->family != 4 && ip->family != 6))
        return true;
    ims_anvil_client *c = entry_get(a, ip, now);
    if (!c)
        return true;
    if (c->logged && now - c->logged < ANVIL_WINDOW_MS)
        return false;
    c->logged = now ? now : 1;
    return true;
}

uint32_t ims_anvil_conns(const ims_anvil_client *c)
{
    return c ? c->conns : 0;
}
