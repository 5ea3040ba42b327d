/* webadmin.c - what a request to the administrator's page must pass: the Host check against
 * DNS rebinding, the Origin check and the CSRF nonces against cross-site requests, the action
 * request's body (JSON or a form); and JSON strings for its answers. Pure: no I/O but the
 * random bytes of a nonce. */
#include "ims/ims.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"

#define WEB_HOST_MAX 300 /* bytes of a Host header we look at */
#define WEB_DEFAULT_PORT "80"

/* split_hostport - "h:p", "[v6]:p", "h" into host (brackets kept) and port ("" when none).
 * false when it does not fit or is malformed. */
static bool split_hostport(const char *s, char *host, size_t hsize, char *port, size_t psize)
{
    size_t n = strlen(s);
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return false;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon)
            return false;
    } else {
        colon = strrchr(s, ':');
        if (colon && strchr(s, ':') != colon)
            return false; /* a bare IPv6 address is not a Host */
    }
    size_t hlen = colon ? (size_t)(colon - s) : n;
    const char *p = colon ? colon + 1 : "";
    if (!hlen || hlen >= hsize || strlen(p) >= psize)
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    if (colon && !*p)
        return false;
    memcpy(host, s, hlen);
    host[hlen] = 0;
    memcpy(port, p, strlen(p) + 1);
    return true;
}

bool ims_web_host_ok(const char *host, const char *listener)
{
    char h[WEB_HOST_MAX], p[8], lh[WEB_HOST_MAX], lp[8];
    if (!host || !listener || strlen(host) >= WEB_HOST_MAX ||
        !split_hostport(host, h, sizeof h, p, sizeof p) ||
        !split_hostport(listener, lh, sizeof lh, lp, sizeof lp) || !lp[0])
        return false;
    if (p[0] ? strcmp(p, lp) != 0 : strcmp(lp, WEB_DEFAULT_PORT) != 0)
        return false;
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
    if (!strcasecmp(h, lh))
        return true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(h, names[i]))
            return true;
    return false;
}

bool ims_web_origin_ok(const char *origin, const char *referer, const char *host)
{
    static const char scheme[] = "http://";
    size_t sl = sizeof scheme - 1, hl = host ? strlen(host) : 0;
    if (!host || !hl)
        return false;
    if (origin) /* a browser that sends Origin says where the request comes from: only that */
        return !strncasecmp(origin, scheme, sl) && !strcasecmp(origin + sl, host);
    if (!referer)
        return false;
    return !strncasecmp(referer, scheme, sl) && !strncasecmp(referer + sl, host, hl) &&
           referer[sl + hl] == '/';
}

bool ims_web_loopback_peer(const char *addr)
{
    if (!addr)
        return false;
    if (!strncmp(addr, "::ffff:", 7))
        addr += 7;
    return !strcmp(addr, "::1") || !strncmp(addr, "127.", 4);
}

/* --- the action request ------------------------------------------------------------------ */

enum { F_ID, F_ACTION, F_CSRF, F_SECRET, F_COUNT };
static const char *const field_names[F_COUNT] = {"id", "action", "csrf", "secret"};

typedef struct field_out {
    char *dst;
    size_t size;
    size_t *len; /* NULL: not kept */
} field_out;

static void fields_of(ims_web_action *a, field_out f[F_COUNT])
{
    f[F_ID] = (field_out){a->id, sizeof a->id, NULL};
    f[F_ACTION] = (field_out){a->action, sizeof a->action, NULL};
    f[F_CSRF] = (field_out){a->csrf, sizeof a->csrf, NULL};
    f[F_SECRET] = (field_out){a->secret, sizeof a->secret, &a->secret_len};
}

static int field_index(const char *name, size_t n)
{
    for (int i = 0; i < F_COUNT; i++)
        if (strlen(field_names[i]) == n && !memcmp(field_names[i], name, n))
            return i;
    return -1;
}

/* put - one decoded byte into a field: EMSGSIZE when it is full, EINVAL for a NUL. */
static int put(field_out *f, size_t *at, unsigned char c)
{
    if (!c)
        return EINVAL;
    if (*at + 1 >= f->size)
        return EMSGSIZE;
    f->dst[(*at)++] = (char)c;
    f->dst[*at] = 0;
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* form_decode - a form's name or value (p..end): '+' is a space, %XX a byte. Into f when
 * given, else into name (nsize bytes). */
static int form_decode(const char *p, const char *end, field_out *f, size_t *len)
{
    size_t at = 0;
    while (p < end) {
        int c = (unsigned char)*p++;
        if (c == '+')
            c = ' ';
        else if (c == '%') {
            if (end - p < 2 || hexval(p[0]) < 0 || hexval(p[1]) < 0)
                return EINVAL;
            c = hexval(p[0]) * 16 + hexval(p[1]);
            p += 2;
        }
        int rc = put(f, &at, (unsigned char)c);
        if (rc)
            return rc;
    }
    *len = at;
    return 0;
}

static int parse_form(const char *body, size_t len, field_out f[F_COUNT], bool seen[F_COUNT])
{
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (!eq)
            return EINVAL;
        char name[16];
        size_t nlen;
        field_out nf = {name, sizeof name, NULL};
        if (form_decode(p, eq, &nf, &nlen))
            return EINVAL;
        int k = field_index(name, nlen);
        if (k < 0 || seen[k])
            return EINVAL;
        seen[k] = true;
        size_t vlen;
        int rc = form_decode(eq + 1, pe, &f[k], &vlen);
        if (rc)
            return rc;
        if (f[k].len)
            *f[k].len = vlen;
        p = amp ? amp + 1 : end;
    }
    return 0;
}

/* utf8_put - code point cp as UTF-8 into f. */
static int utf8_put(field_out *f, size_t *at, unsigned cp)
{
    unsigned char b[3];
    size_t n;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xc0 | cp >> 6);
        b[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else {
        b[0] = (unsigned char)(0xe0 | cp >> 12);
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    }
    for (size_t i = 0; i < n; i++) {
        int rc = put(f, at, b[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* json_string - a JSON string at *pp (at its opening quote) into f; *pp after its end.
 * Escapes as RFC 8259 7; \u escapes of the BMP (no surrogates: not needed for ids, actions
 * and the hex of nonces, and a password with one may use the form). */
static int json_string(const char **pp, const char *end, field_out *f, size_t *len)
{
    const char *p = *pp;
    if (p >= end || *p != '"')
        return EINVAL;
    p++;
    size_t at = 0;
    for (;;) {
        if (p >= end)
            return EINVAL;
        unsigned char c = (unsigned char)*p++;
        if (c == '"')
            break;
        if (c < 0x20)
            return EINVAL;
        int rc;
        if (c != '\\') {
            rc = put(f, &at, c);
        } else {
            if (p >= end)
                return EINVAL;
            char e = *p++;
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *k = e ? strchr(from, e) : NULL;
            if (k) {
                rc = put(f, &at, (unsigned char)to[k - from]);
            } else if (e == 'u') {
                if (end - p < 4)
                    return EINVAL;
                unsigned cp = 0;
                for (int i = 0; i < 4; i++) {
                    int h = hexval(p[i]);
                    if (h < 0)
                        return EINVAL;
                    cp = cp * 16 + (unsigned)h;
                }
                p += 4;
                if (cp >= 0xd800 && cp <= 0xdfff)
                    return EINVAL;
                rc = utf8_put(f, &at, cp);
            } else {
                return EINVAL;
            }
        }
        if (rc)
            return rc;
    }
    *len = at;
    *pp = p;
    return 0;
}

static int parse_json(const char *body, size_t len, field_out f[F_COUNT], bool seen[F_COUNT])
{
    const char *p = body, *end = body + len;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return EINVAL;
    p = skip_ws(p, end);
    if (p < end && *p == '}') {
        p = skip_ws(p + 1, end);
        return p == end ? 0 : EINVAL;
    }
    for (;;) {
        char name[16];
        size_t nlen, vlen;
        field_out nf = {name, sizeof name, NULL};
        p = skip_ws(p, end);
        int rc = json_string(&p, end, &nf, &nlen);
        if (rc)
            return EINVAL; /* a long name is not one of ours either */
        int k = field_index(name, nlen);
        if (k < 0 || seen[k])
            return EINVAL;
        seen[k] = true;
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':')
            return EINVAL;
        p = skip_ws(p, end);
        if ((rc = json_string(&p, end, &f[k], &vlen)))
            return rc;
        if (f[k].len)
            *f[k].len = vlen;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p == '}')
            break;
        return EINVAL;
    }
    p = skip_ws(p + 1, end);
    return p == end ? 0 : EINVAL;
}

/* ctype_is - the media type of a Content-Type value is t (parameters after ';' ignored). */
static bool ctype_is(const char *ctype, const char *t)
{
    size_t n = strlen(t);
    if (strncasecmp(ctype, t, n))
        return false;
    const char *r = ctype + n;
    while (*r == ' ')
        r++;
    return !*r || *r == ';';
}

int ims_web_action_parse(const char *ctype, const char *body, size_t len, ims_web_action *out)
{
    memset(out, 0, sizeof *out);
    if (!ctype)
        return ENOTSUP;
    field_out f[F_COUNT];
    bool seen[F_COUNT] = {0};
    fields_of(out, f);
    int rc;
    if (ctype_is(ctype, "application/json"))
        rc = parse_json(body, len, f, seen);
    else if (ctype_is(ctype, "application/x-www-form-urlencoded"))
        rc = parse_form(body, len, f, seen);
    else
        return ENOTSUP;
    for (int k = 0; !rc && k < F_COUNT; k++)
        if (!seen[k] || (!f[k].dst[0] && k != F_SECRET))
            rc = EINVAL;
    if (rc) {
        explicit_bzero(out, sizeof *out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

/* --- nonces ------------------------------------------------------------------------------ */

int ims_web_nonce_issue(ims_web_nonces *n, uint64_t now, char out[IMS_WEB_NONCE_LEN + 1])
{
    uint8_t raw[IMS_WEB_NONCE_LEN / 2];
    int rc = base_random(raw, sizeof raw);
    if (rc)
        return rc;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[IMS_WEB_NONCE_LEN] = 0;
    memcpy(n->v[n->next], out, IMS_WEB_NONCE_LEN + 1);
    n->at[n->next] = now;
    n->next = (n->next + 1) % IMS_WEB_NONCES;
    return 0;
}

bool ims_web_nonce_ok(const ims_web_nonces *n, const char *nonce, uint64_t now)
{
    if (!nonce || strlen(nonce) != IMS_WEB_NONCE_LEN)
        return false;
    bool ok = false;
    for (size_t i = 0; i < IMS_WEB_NONCES; i++)
        if (n->v[i][0] && now >= n->at[i] && now - n->at[i] <= IMS_WEB_NONCE_TTL &&
            ims_web_secret_eq(nonce, IMS_WEB_NONCE_LEN, n->v[i]))
            ok = true;
    return ok;
}

bool ims_web_secret_eq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char d = alen != blen;
    for (size_t i = 0; i < alen; i++)
        d |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return blen && !d;
}

/* --- JSON strings -------------------------------------------------------------------------- */

/* utf8_len - the length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int ims_json_string(buf *b, const char *s)
{
    return ims_json_string_n(b, s, s ? strlen(s) : 0);
}

int ims_json_string_n(buf *b, const char *s, size_t n)
{
    int rc = buf_addc(b, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (size_t i = 0; !rc && i < n;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            rc = buf_addc(b, '\\');
            if (!rc)
                rc = buf_addc(b, c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            rc = buf_printf(b, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            rc = buf_addc(b, c);
            i++;
        } else {
            size_t k = utf8_len(p + i, n - i);
            if (k) {
                rc = buf_add(b, p + i, k);
                i += k;
            } else {
                rc = buf_adds(b, "\\ufffd");
                i++;
            }
        }
    }
    if (!rc)
        rc = buf_addc(b, '"');
    return rc;
}
