/* addr.c - SMTP addresses: the path parser (RFC 5321 4.1.2), domain and address-literal syntax,
 * domain matching for routing, recipient classification (local, remote, refused relay tricks),
 * IP addresses and the relay policy of KB Q193922. */
#include "smtp/smtp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "reg/reg.h"

#define IPV6_TAG "IPv6:"
#define IPV6_TEXT_MAX 45 /* INET6_ADDRSTRLEN - 1: the longest IPv6 text form */

/* --- character classes (ASCII only: no SMTPUTF8) ------------------------------------------ */

static bool addr_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool addr_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool addr_letdig(unsigned char c)
{
    return addr_alpha(c) || addr_digit(c);
}

/* addr_atext - RFC 5322 atext, which RFC 5321's Atom uses. */
static bool addr_atext(unsigned char c)
{
    return addr_letdig(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* addr_qtext - RFC 5321 qtextSMTP: printable ASCII and space, but '"' and '\'. */
static bool addr_qtext(unsigned char c)
{
    return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/* addr_dcontent - RFC 5321 dcontent: printable ASCII but '[', '\' and ']'. */
static bool addr_dcontent(unsigned char c)
{
    return c >= 33 && c <= 126 && c != '[' && c != '\\' && c != ']';
}

static unsigned char addr_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 'a' - 'A') : c;
}

/* addr_casecmp - ASCII case-insensitive compare of n bytes (never the locale's). */
static bool addr_caseeq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (addr_lower((unsigned char)a[i]) != addr_lower((unsigned char)b[i]))
            return false;
    return true;
}

/* --- domains and literals ---------------------------------------------------------------- */

bool smtp_domain_valid(const char *s, size_t n, bool liberal)
{
    if (liberal && n > 1 && s[n - 1] == '.')
        n--; /* a fully qualified "host.example." */
    if (n == 0 || n > SMTP_DOMAIN_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)s[i] : '.';
        if (c == '.') {
            /* A label is let-dig [ldh-str]: it neither starts nor ends with a hyphen. */
            if (label == 0 || label > SMTP_LABEL_MAX || s[i - 1] == '-' || s[i - label] == '-')
                return false;
            label = 0;
        } else if (addr_letdig(c) || c == '-' || (liberal && c == '_')) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* addr_ipv4_literal - RFC 5321 IPv4-address-literal: Snum 3("." Snum), Snum 1*3DIGIT <= 255. */
static bool addr_ipv4_literal(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        unsigned v = 0, digits = 0;
        while (i < n && addr_digit((unsigned char)s[i]) && digits < 4) {
            v = v * 10 + (unsigned)(s[i] - '0');
            i++, digits++;
        }
        if (digits == 0 || digits > 3 || v > 255)
            return false;
    }
    return i == n;
}

bool smtp_literal_valid(const char *s, size_t n)
{
    if (n < 3 || n > SMTP_DOMAIN_MAX || s[0] != '[' || s[n - 1] != ']')
        return false;
    s++, n -= 2;
    if (addr_ipv4_literal(s, n))
        return true;
    size_t tag = strlen(IPV6_TAG);
    if (n > tag && addr_caseeq(s, IPV6_TAG, tag)) {
        char text[IPV6_TEXT_MAX + 1];
        struct in6_addr a6;
        if (n - tag > IPV6_TEXT_MAX)
            return false;
        memcpy(text, s + tag, n - tag);
        text[n - tag] = '\0';
        for (size_t i = 0; text[i]; i++)
            if (!addr_digit((unsigned char)text[i]) && !strchr("abcdefABCDEF:.", text[i]))
                return false;
        return inet_pton(AF_INET6, text, &a6) == 1;
    }
    /* General-address-literal: Standardized-tag ":" 1*dcontent, the tag an Ldh-str. */
    size_t i = 0;
    while (i < n && (addr_letdig((unsigned char)s[i]) || s[i] == '-'))
        i++;
    if (i == 0 || i >= n || s[i] != ':' || !addr_letdig((unsigned char)s[i - 1]))
        return false;
    if (++i == n)
        return false;
    for (; i < n; i++)
        if (!addr_dcontent((unsigned char)s[i]))
            return false;
    return true;
}

bool smtp_domain_match(const char *pattern, const char *domain)
{
    size_t p = strlen(pattern), d = strlen(domain);
    if (p == 0 || d < p)
        return false;
    if (d > p && domain[d - p - 1] != '.')
        return false; /* "chelsea.com" is no sub-domain of "sea.com" */
    return addr_caseeq(domain + d - p, pattern, p);
}

long smtp_domain_best(const char *const *patterns, size_t n, const char *domain)
{
    long best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(patterns[i]);
        if (len > best_len && smtp_domain_match(patterns[i], domain)) {
            best = (long)i;
            best_len = len;
        }
    }
    return best;
}

/* --- paths ------------------------------------------------------------------------------- */

/* addr_dot_string - RFC 5321 Dot-string: Atom *("." Atom). */
static bool addr_dot_string(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.')
                return false;
        } else if (!addr_atext((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* addr_domain_end - the length of the domain or literal starting at s (at most n): a literal
 * runs to its ']', a name over letters, digits, '-', '.'. 0 when nothing is there. */
static size_t addr_domain_end(const char *s, size_t n)
{
    size_t i = 0;
    if (n > 0 && s[0] == '[') {
        while (i < n && s[i] != ']')
            i++;
        return i < n ? i + 1 : 0;
    }
    while (i < n && (addr_letdig((unsigned char)s[i]) || s[i] == '-' || s[i] == '.'))
        i++;
    return i;
}

/* addr_path - the parser proper; *seen gets the furthest offset it examined, so that the caller
 * can tell "ran past the longest path" from "bad syntax". */
static smtp_reply_id addr_path(const char *s, size_t n, smtp_path_kind kind, smtp_path *out,
                               size_t *end, size_t *seen)
{
    smtp_reply_id bad = kind == SMTP_PATH_REVERSE ? SMTP_R_SENDER_SYNTAX : SMTP_R_RCPT_ADDR_SYNTAX;
    unsigned flags = 0;
    size_t i = 0;
#define ADDR_SEEN(x) (*seen = (x) > *seen ? (x) : *seen)
    if (n == 0 || s[0] != '<')
        return bad;
    i = 1;
    if (kind == SMTP_PATH_REVERSE && n >= 2 && s[1] == '>') {
        out->flags = SMTP_PATH_NULL;
        *end = 2;
        return SMTP_R_NONE;
    }
    /* A-d-l ":" -- "MUST BE accepted, SHOULD NOT be generated, and SHOULD be ignored"
     * (RFC 5321 4.1.2): parsed, dropped and flagged. */
    if (i < n && s[i] == '@') {
        for (;;) {
            ADDR_SEEN(i);
            if (i >= n || s[i] != '@')
                return bad;
            i++;
            size_t d = addr_domain_end(s + i, n - i);
            ADDR_SEEN(i + d);
            if (!smtp_domain_valid(s + i, d, false))
                return bad;
            i += d;
            ADDR_SEEN(i);
            if (i < n && s[i] == ',') {
                i++;
                continue;
            }
            if (i < n && s[i] == ':') {
                i++;
                break;
            }
            return bad;
        }
        flags |= SMTP_PATH_ROUTE;
    }
    /* Local-part = Dot-string / Quoted-string. */
    size_t lstart = i;
    char unquoted[SMTP_PATH_MAX + 1];
    size_t ulen = 0;
    if (i < n && s[i] == '"') {
        flags |= SMTP_PATH_QUOTED;
        for (i++;; ulen++) {
            ADDR_SEEN(i);
            if (i >= n)
                return bad;
            unsigned char c = (unsigned char)s[i];
            if (c == '"')
                break;
            if (c == '\\') {
                ADDR_SEEN(i + 1);
                if (i + 1 >= n || s[i + 1] < 32 || s[i + 1] > 126)
                    return bad;
                unquoted[ulen] = s[i + 1];
                i += 2;
            } else if (addr_qtext(c)) {
                unquoted[ulen] = (char)c;
                i++;
            } else {
                return bad;
            }
        }
        i++; /* the closing quote */
    } else {
        while (i < n && (addr_atext((unsigned char)s[i]) || s[i] == '.'))
            i++;
        ADDR_SEEN(i);
        if (!addr_dot_string(s + lstart, i - lstart))
            return bad;
    }
    size_t llen = i - lstart;
    if (llen > SMTP_LOCAL_MAX)
        return SMTP_R_PATH_TOO_LONG;
    /* Canonical local part: a quoted plain dot-string is the same mailbox unquoted. */
    if ((flags & SMTP_PATH_QUOTED) && addr_dot_string(unquoted, ulen)) {
        memcpy(out->local, unquoted, ulen);
        out->local[ulen] = '\0';
    } else {
        if (flags & SMTP_PATH_QUOTED)
            flags |= SMTP_PATH_QUOTED_KEPT;
        memcpy(out->local, s + lstart, llen);
        out->local[llen] = '\0';
    }
    ADDR_SEEN(i);
    if (i < n && s[i] == '>') {
        /* Only "<Postmaster>" may come without a domain (RFC 5321 4.5.1), in any case. */
        if (kind != SMTP_PATH_FORWARD || (flags & (SMTP_PATH_ROUTE | SMTP_PATH_QUOTED_KEPT)) ||
            strlen(out->local) != 10 || !addr_caseeq(out->local, "postmaster", 10))
            return bad;
        i++;
        flags |= SMTP_PATH_POSTMASTER;
        memcpy(out->mailbox, out->local, 11);
    } else {
        if (i >= n || s[i] != '@')
            return bad;
        i++;
        size_t dstart = i, d = addr_domain_end(s + i, n - i), dlen = d;
        ADDR_SEEN(i + d);
        if (d == 0 && i < n && s[i] == '[') {
            ADDR_SEEN(n); /* a literal still open at the end */
            return bad;
        }
        if (d > 0 && s[i] == '[') {
            if (!smtp_literal_valid(s + i, d))
                return bad;
            flags |= SMTP_PATH_LITERAL;
        } else {
            /* One trailing dot is kept apart so that classification can refuse it. */
            if (d > 1 && s[i + d - 1] == '.' && s[i + d - 2] != '.') {
                flags |= SMTP_PATH_TRAILING_DOT;
                dlen--;
            }
            if (!smtp_domain_valid(s + i, dlen, false))
                return bad;
        }
        i += d;
        ADDR_SEEN(i);
        if (i >= n || s[i] != '>')
            return bad;
        i++;
        memcpy(out->domain, s + dstart, dlen);
        out->domain[dlen] = '\0';
        size_t ll = strlen(out->local);
        memcpy(out->mailbox, out->local, ll);
        out->mailbox[ll] = '@';
        memcpy(out->mailbox + ll + 1, out->domain, dlen + 1);
    }
#undef ADDR_SEEN
    if (i > SMTP_PATH_MAX)
        return SMTP_R_PATH_TOO_LONG;
    out->flags = flags;
    *end = i;
    return SMTP_R_NONE;
}

smtp_reply_id smtp_parse_path(const char *s, size_t len, smtp_path_kind kind, smtp_path *out,
                              size_t *used)
{
    memset(out, 0, sizeof *out);
    /* Nothing past the longest path is looked at, however long the input: a path still open
     * at that point is too long, whatever else is wrong with it. */
    size_t n = len < SMTP_PATH_MAX + 1 ? len : SMTP_PATH_MAX + 1;
    size_t end = 0, seen = 0;
    smtp_reply_id rc = addr_path(s, n, kind, out, &end, &seen);
    if (rc == SMTP_R_NONE && !used && end != len)
        rc = kind == SMTP_PATH_REVERSE ? SMTP_R_SENDER_SYNTAX : SMTP_R_RCPT_ADDR_SYNTAX;
    else if (rc != SMTP_R_NONE && seen >= n && len > SMTP_PATH_MAX)
        rc = SMTP_R_PATH_TOO_LONG;
    if (rc != SMTP_R_NONE) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (used)
        *used = end;
    return SMTP_R_NONE;
}

/* --- classification ---------------------------------------------------------------------- */

smtp_addr_class smtp_addr_classify(const smtp_path *p, smtp_is_local_fn is_local, void *arg,
                                   smtp_refusal *why)
{
    smtp_refusal r = SMTP_REFUSE_NONE;
    if (p->flags & SMTP_PATH_NULL)
        r = SMTP_REFUSE_NULL;
    else if (p->flags & SMTP_PATH_ROUTE)
        r = SMTP_REFUSE_ROUTE;
    else if (p->flags & SMTP_PATH_POSTMASTER) {
        if (why)
            *why = SMTP_REFUSE_NONE;
        return SMTP_ADDR_LOCAL;
    } else if (p->domain[0] == '\0')
        r = SMTP_REFUSE_NO_DOMAIN;
    else if (p->flags & SMTP_PATH_LITERAL)
        r = SMTP_REFUSE_LITERAL; /* even one of our own addresses: simpler, and safe */
    else if (p->flags & SMTP_PATH_TRAILING_DOT)
        r = SMTP_REFUSE_TRAILING_DOT;
    else if ((p->flags & SMTP_PATH_QUOTED_KEPT) && strchr(p->local, '@'))
        r = SMTP_REFUSE_QUOTED_AT;
    else if (p->flags & SMTP_PATH_QUOTED_KEPT)
        r = SMTP_REFUSE_QUOTED;
    else if (strchr(p->local, '%'))
        r = SMTP_REFUSE_PERCENT;
    else if (strchr(p->local, '!'))
        r = SMTP_REFUSE_BANG;
    if (why)
        *why = r;
    if (r != SMTP_REFUSE_NONE)
        return SMTP_ADDR_REFUSED;
    return is_local && is_local(arg, p->domain) ? SMTP_ADDR_LOCAL : SMTP_ADDR_REMOTE;
}

const char *smtp_refusal_name(smtp_refusal r)
{
    static const char *const names[] = {
        [SMTP_REFUSE_NONE] = "none",
        [SMTP_REFUSE_NULL] = "null path",
        [SMTP_REFUSE_ROUTE] = "source route",
        [SMTP_REFUSE_NO_DOMAIN] = "no domain",
        [SMTP_REFUSE_LITERAL] = "address literal",
        [SMTP_REFUSE_TRAILING_DOT] = "trailing dot",
        [SMTP_REFUSE_QUOTED_AT] = "quoted local part with @",
        [SMTP_REFUSE_QUOTED] = "quoted local part",
        [SMTP_REFUSE_PERCENT] = "percent hack",
        [SMTP_REFUSE_BANG] = "bang path",
    };
    if ((unsigned)r >= sizeof names / sizeof names[0])
        return "unknown";
    return names[r];
}

/* --- IP addresses ------------------------------------------------------------------------ */

static const uint8_t addr_v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* addr_ip_set6 - an IPv6 address, stored as IPv4 when it is IPv4-mapped. */
static void addr_ip_set6(smtp_ip *out, const uint8_t a[16])
{
    memset(out, 0, sizeof *out);
    if (!memcmp(a, addr_v4_mapped, sizeof addr_v4_mapped)) {
        out->family = 4;
        memcpy(out->a, a + 12, 4);
    } else {
        out->family = 6;
        memcpy(out->a, a, 16);
    }
}

int smtp_ip_parse(const char *text, smtp_ip *out)
{
    memset(out, 0, sizeof *out);
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        out->family = 4;
        memcpy(out->a, &a4, 4);
        return ERROR_SUCCESS;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        addr_ip_set6(out, a6.s6_addr);
        return ERROR_SUCCESS;
    }
    return ERROR_INVALID_DATA;
}

int smtp_ip_from_sockaddr(const struct sockaddr *sa, smtp_ip *out)
{
    memset(out, 0, sizeof *out);
    if (sa && sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof sin);
        out->family = 4;
        memcpy(out->a, &sin.sin_addr, 4);
        return ERROR_SUCCESS;
    }
    if (sa && sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof sin6);
        addr_ip_set6(out, sin6.sin6_addr.s6_addr);
        return ERROR_SUCCESS;
    }
    return ERROR_INVALID_PARAMETER;
}

char *smtp_ip_format(const smtp_ip *ip, char *out, size_t size)
{
    if (size == 0)
        return out;
    out[0] = '\0';
    if (ip->family == 4)
        inet_ntop(AF_INET, ip->a, out, (socklen_t)size);
    else if (ip->family == 6)
        inet_ntop(AF_INET6, ip->a, out, (socklen_t)size);
    return out;
}

/* --- relay lists and the policy (KB Q193922) ---------------------------------------------- */

#define RELAY_LINE_MAX 128 /* longer than any "net;mask" line can be */

/* addr_trim - s[0..*n) without spaces and tabs at both ends. */
static const char *addr_trim(const char *s, size_t *n)
{
    while (*n && (s[0] == ' ' || s[0] == '\t'))
        s++, (*n)--;
    while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
        (*n)--;
    return s;
}

/* addr_prefix - a prefix length 0..max in s[0..n) (digits only). -1 if it is not one. */
static int addr_prefix(const char *s, size_t n, int max)
{
    if (n == 0 || n > 3)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!addr_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v <= max ? v : -1;
}

/* addr_relay_line - parse "net[;mask]" into *out. */
static int addr_relay_line(const char *line, smtp_net *out)
{
    size_t len = strlen(line);
    const char *semi = memchr(line, ';', len);
    size_t nlen = semi ? (size_t)(semi - line) : len;
    const char *net = addr_trim(line, &nlen);
    char text[RELAY_LINE_MAX];
    if (nlen == 0 || nlen >= sizeof text)
        return ERROR_INVALID_DATA;
    memcpy(text, net, nlen);
    text[nlen] = '\0';
    memset(out, 0, sizeof *out);
    bool v6_text = memchr(text, ':', nlen) != NULL;
    if (smtp_ip_parse(text, &out->net))
        return ERROR_INVALID_DATA;
    int bits = out->net.family == 4 ? 32 : 128;
    if (semi) {
        size_t mlen = len - (size_t)(semi - line) - 1;
        const char *m = addr_trim(semi + 1, &mlen);
        if (mlen == 0 || mlen >= sizeof text)
            return ERROR_INVALID_DATA;
        if (out->net.family == 4 && memchr(m, '.', mlen)) {
            /* The KB's form: a dotted mask, used bit for bit (it need not be contiguous). */
            struct in_addr a4;
            memcpy(text, m, mlen);
            text[mlen] = '\0';
            if (inet_pton(AF_INET, text, &a4) != 1)
                return ERROR_INVALID_DATA;
            memcpy(out->mask, &a4, 4);
            return ERROR_SUCCESS;
        }
        /* Ours: a prefix length, counted on the IPv6 form for an IPv4-mapped net. */
        bits = addr_prefix(m, mlen, v6_text ? 128 : 32);
        if (bits < 0)
            return ERROR_INVALID_DATA;
        if (v6_text && out->net.family == 4) {
            if (bits < 96)
                return ERROR_INVALID_DATA;
            bits -= 96;
        }
    }
    for (int i = 0; i < bits; i++)
        out->mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
    return ERROR_SUCCESS;
}

int smtp_relay_list_add(smtp_relay_list *l, const char *line)
{
    smtp_net net;
    if (addr_relay_line(line, &net))
        return ERROR_INVALID_DATA;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        smtp_net *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return ERROR_NOT_ENOUGH_MEMORY;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = net;
    return ERROR_SUCCESS;
}

int smtp_relay_list_parse(smtp_relay_list *l, const char *const *lines, size_t n, size_t *bad)
{
    int result = ERROR_SUCCESS;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        addr_trim(lines[i], &len);
        if (len == 0)
            continue;
        int rc = smtp_relay_list_add(l, lines[i]);
        if (rc == ERROR_NOT_ENOUGH_MEMORY)
            return rc;
        if (rc && result == ERROR_SUCCESS) {
            result = rc;
            if (bad)
                *bad = i;
        }
    }
    return result;
}

/* addr_net_match - (ip AND mask) == net, the KB's rule, within one family. */
static bool addr_net_match(const smtp_net *net, const smtp_ip *ip)
{
    if (ip->family == 0 || ip->family != net->net.family)
        return false;
    size_t len = ip->family == 4 ? 4 : 16;
    for (size_t i = 0; i < len; i++)
        if ((ip->a[i] & net->mask[i]) != net->net.a[i])
            return false;
    return true;
}

bool smtp_relay_list_match(const smtp_relay_list *l, const smtp_ip *ip)
{
    if (!ip)
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (addr_net_match(&l->v[i], ip))
            return true;
    return false;
}

void smtp_relay_list_free(smtp_relay_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

bool smtp_relay_allowed(const smtp_relay_policy *p, const smtp_ip *client, const smtp_ip *local,
                        bool authenticated)
{
    if (!p)
        return false;
    uint32_t f = p->flags & (SMTP_RELAY_DENY_LIST | SMTP_RELAY_ALLOW_LIST | SMTP_RELAY_LOCAL_IP |
                             SMTP_RELAY_AUTH);
    if ((f & SMTP_RELAY_DENY_LIST) && smtp_relay_list_match(&p->deny, client))
        return false;
    if ((f & SMTP_RELAY_ALLOW_LIST) && smtp_relay_list_match(&p->allow, client))
        return true;
    if ((f & SMTP_RELAY_LOCAL_IP) && smtp_relay_list_match(&p->local, local))
        return true;
    if ((f & SMTP_RELAY_AUTH) && authenticated)
        return true;
    /* "If only bit 1 is set, the client is allowed to relay." */
    return f == SMTP_RELAY_DENY_LIST;
}

void smtp_relay_policy_free(smtp_relay_policy *p)
{
    smtp_relay_list_free(&p->deny);
    smtp_relay_list_free(&p->allow);
    smtp_relay_list_free(&p->local);
}
