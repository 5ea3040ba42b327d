/* downgrade.c - 8-bit message data made 7-bit for a peer without 8BITMIME (RFC 6152 3): a
 * line-by-line MIME walker that quoted-printable-encodes 8bit leaf parts (RFC 2045 6.7) and
 * refuses what it cannot convert. The rules are smtp.h's ("8-bit data to a peer ..."). */
#include "smtp/client_int.h"

#include <string.h>

#define M7_FAIL_8BIT 1

static bool m7_is8(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return true;
    return false;
}

static char m7_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

static bool m7_ieq(const char *a, size_t n, const char *b)
{
    if (strlen(b) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (m7_lower(a[i]) != b[i])
            return false;
    return true;
}

/* m7_emit_raw - a stored field (lines joined by '\n') as output lines; the last one ends only
 * when `eol`. */
static void m7_emit_raw(mime7 *m, const char *p, size_t n, bool eol)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        if (!nl) {
            m->emit(m->arg, p, n, eol);
            return;
        }
        m->emit(m->arg, p, (size_t)(nl - p), true);
        n -= (size_t)(nl - p) + 1;
        p = nl + 1;
    }
}

/* --- header fields ------------------------------------------------------------------------ */

/* Field values: RFC 2045 tokens, with whitespace, line breaks and (comments) skipped. */
typedef struct m7_scan {
    const char *p, *end;
} m7_scan;

static void m7_skip(m7_scan *s)
{
    int paren = 0;
    while (s->p < s->end) {
        char c = *s->p;
        if (paren) {
            if (c == '\\' && s->p + 1 < s->end)
                s->p++;
            else if (c == '(')
                paren++;
            else if (c == ')')
                paren--;
        } else if (c == '(') {
            paren++;
        } else if (c != ' ' && c != '\t' && c != '\n') {
            return;
        }
        s->p++;
    }
}

static bool m7_tspecial(char c)
{
    return strchr("()<>@,;:\\\"/[]?=", c) != NULL || c <= ' ' || c == 0x7f;
}

/* m7_token - a token at s (after skipping); *len 0 when none. */
static const char *m7_token(m7_scan *s, size_t *len)
{
    m7_skip(s);
    const char *t = s->p;
    while (s->p < s->end && !m7_tspecial(*s->p))
        s->p++;
    *len = (size_t)(s->p - t);
    return t;
}

static bool m7_expect(m7_scan *s, char c)
{
    m7_skip(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* m7_value - a parameter value, token or quoted-string, into out (unquoted); false when it is
 * missing, malformed or longer than size - 1. */
static bool m7_value(m7_scan *s, char *out, size_t size, size_t *len)
{
    m7_skip(s);
    *len = 0;
    if (s->p < s->end && *s->p == '"') {
        s->p++;
        while (s->p < s->end && *s->p != '"') {
            char c = *s->p++;
            if (c == '\\' && s->p < s->end)
                c = *s->p++;
            if (c == '\n')
                continue; /* a fold inside the quotes */
            if (*len + 1 >= size)
                return false;
            out[(*len)++] = c;
        }
        if (s->p >= s->end)
            return false;
        s->p++;
    } else {
        size_t n;
        const char *t = m7_token(s, &n);
        if (!n || n >= size)
            return false;
        memcpy(out, t, n);
        *len = n;
    }
    out[*len] = '\0';
    return true;
}

static void m7_content_type(mime7 *m, m7_scan *s)
{
    size_t n1, n2;
    const char *t1 = m7_token(s, &n1);
    if (!n1 || !m7_expect(s, '/')) {
        m->type = M7_TYPE_OPAQUE; /* unreadable: nothing inside is touched */
        return;
    }
    const char *t2 = m7_token(s, &n2);
    if (m7_ieq(t1, n1, "message") && m7_ieq(t2, n2, "rfc822")) {
        m->type = M7_TYPE_MESSAGE;
        return;
    }
    if (!m7_ieq(t1, n1, "multipart")) {
        m->type = M7_TYPE_LEAF;
        return;
    }
    m->type = M7_TYPE_OPAQUE; /* until a boundary is found */
    while (m7_expect(s, ';')) {
        size_t an;
        const char *a = m7_token(s, &an);
        if (!an || !m7_expect(s, '='))
            return;
        char v[SMTP_MIME_BOUNDARY_MAX + 1];
        size_t vn;
        if (!m7_value(s, v, sizeof v, &vn)) {
            if (m7_ieq(a, an, "boundary"))
                return; /* too long or malformed: opaque */
            continue;
        }
        if (m7_ieq(a, an, "boundary") && vn) {
            memcpy(m->boundary, v, vn + 1);
            m->blen = vn;
            m->type = M7_TYPE_MULTI;
            return;
        }
    }
}

static mime7_cte m7_cte_parse(const char *p, size_t n)
{
    m7_scan s = {p, p + n};
    size_t tn;
    const char *t = m7_token(&s, &tn);
    m7_skip(&s);
    if (s.p != s.end)
        return M7_CTE_OTHER;
    if (m7_ieq(t, tn, "7bit"))
        return M7_CTE_7BIT;
    if (m7_ieq(t, tn, "8bit"))
        return M7_CTE_8BIT;
    if (m7_ieq(t, tn, "binary"))
        return M7_CTE_BINARY;
    return M7_CTE_OTHER;
}

/* m7_field_name - the field's name is n bytes: false when it has no colon on its first line. */
static bool m7_field_name(const char *f, size_t flen, size_t *n)
{
    for (size_t i = 0; i < flen && f[i] != '\n'; i++) {
        if (f[i] == ':') {
            *n = i;
            while (*n && (f[*n - 1] == ' ' || f[*n - 1] == '\t'))
                (*n)--;
            return true;
        }
    }
    return false;
}

/* m7_field_done - the field being assembled is complete: analyse it, hold a
 * Content-Transfer-Encoding until the header block ends, pass the rest. */
static void m7_field_done(mime7 *m)
{
    if (!m->fopen)
        return;
    m->fopen = false;
    if (m->fover)
        return; /* already passed, its meaning decided when it outgrew the buffer */
    size_t n;
    if (!m7_field_name(m->field, m->flen, &n)) {
        m7_emit_raw(m, m->field, m->flen, true);
        return;
    }
    const char *v = m->field + n, *end = m->field + m->flen;
    v = (const char *)memchr(v, ':', (size_t)(end - v)) + 1;
    if (m7_ieq(m->field, n, "content-transfer-encoding")) {
        if (m->hold || m->flen > sizeof m->held) {
            m->cte = M7_CTE_OTHER; /* two of them, or a monster: left alone */
            if (m->hold)
                m7_emit_raw(m, m->held, m->hlen, true);
            m->hold = false;
            m7_emit_raw(m, m->field, m->flen, true);
            return;
        }
        m->cte = m7_cte_parse(v, (size_t)(end - v));
        memcpy(m->held, m->field, m->flen);
        m->hlen = m->flen;
        m->hold = true;
        return;
    }
    if (m7_ieq(m->field, n, "content-type")) {
        m7_scan s = {v, end};
        m7_content_type(m, &s);
    } else if (m7_ieq(m->field, n, "mime-version")) {
        m->mimever = true;
    }
    m7_emit_raw(m, m->field, m->flen, true);
}

/* m7_overflow - the field outgrew the buffer: pass it as it comes from now on, and take it as
 * unreadable when it is one of ours. */
static void m7_overflow(mime7 *m)
{
    size_t n;
    if (m7_field_name(m->field, m->flen, &n)) {
        if (m7_ieq(m->field, n, "content-transfer-encoding"))
            m->cte = M7_CTE_OTHER;
        else if (m7_ieq(m->field, n, "content-type"))
            m->type = M7_TYPE_OPAQUE;
    }
    m->fover = true;
    m7_emit_raw(m, m->field, m->flen, false);
}

static void m7_entity(mime7 *m, unsigned depth, bool top)
{
    m->depth = depth;
    m->top = top;
    m->in_hdr = true;
    m->qp = false;
    m->fopen = m->fover = m->hold = m->mimever = false;
    m->flen = m->hlen = m->blen = 0;
    m->cte = M7_CTE_NONE;
    m->type = M7_TYPE_LEAF;
}

static void m7_line(mime7 *m, const char *s)
{
    m->emit(m->arg, s, strlen(s), true);
}

/* m7_headers_end - the empty line ending a header block came: write the encoding field this
 * entity needs and decide how its body goes. */
static void m7_headers_end(mime7 *m)
{
    m7_field_done(m);
    bool deep = m->depth + 1 >= SMTP_MIME_DEPTH_MAX;
    mime7_type type = m->type;
    if ((type == M7_TYPE_MULTI && (deep || m->nstack >= SMTP_MIME_DEPTH_MAX)) ||
        (type == M7_TYPE_MESSAGE && deep))
        type = M7_TYPE_OPAQUE; /* too deep: not looked into */
    bool eight = m->cte == M7_CTE_8BIT || m->cte == M7_CTE_BINARY;
    bool convert = type == M7_TYPE_LEAF && (eight || (m->cte == M7_CTE_NONE && m->declared8));
    if (convert) {
        m7_line(m, "Content-Transfer-Encoding: quoted-printable");
        if (m->top && !m->mimever)
            m7_line(m, "MIME-Version: 1.0");
    } else if ((type == M7_TYPE_MULTI || type == M7_TYPE_MESSAGE) && eight) {
        m7_line(m, "Content-Transfer-Encoding: 7bit"); /* its content is made 7-bit */
    } else if (m->hold) {
        m7_emit_raw(m, m->held, m->hlen, true);
    }
    m->hold = false;
    m->emit(m->arg, "", 0, true);
    m->in_hdr = false;
    m->qp = convert;
    m->qlen = 0;
    m->qpend = -1;
    m->qsoft = false;
    if (type == M7_TYPE_MULTI) {
        mime7_level *l = &m->stack[m->nstack++];
        memcpy(l->b, m->boundary, m->blen + 1);
        l->len = m->blen;
        l->depth = m->depth; /* the preamble follows, passed as it is */
    } else if (type == M7_TYPE_MESSAGE) {
        m7_entity(m, m->depth + 1, false); /* the body is a message: its header block */
    }
}

/* m7_header_piece - a piece of a header line. */
static void m7_header_piece(mime7 *m, const char *p, size_t n, bool bol, bool eol)
{
    if (bol && eol && !n) {
        m7_headers_end(m);
        return;
    }
    if (m7_is8(p, n)) {
        m->fail = M7_FAIL_8BIT; /* RFC 2047 encoding is not attempted */
        return;
    }
    if (bol && ((p[0] != ' ' && p[0] != '\t') || !m->fopen)) {
        m7_field_done(m); /* a new field begins */
        m->fopen = true;
        m->fover = false;
        m->flen = 0;
    } else if (bol && !m->fover) {
        m->field[m->flen++] = '\n'; /* a continuation line; room was kept for it */
    }
    if (m->fover) {
        m->emit(m->arg, p, n, eol);
        return;
    }
    if (m->flen + n + 1 > sizeof m->field) {
        m7_overflow(m);
        m->emit(m->arg, p, n, eol);
        return;
    }
    memcpy(m->field + m->flen, p, n);
    m->flen += n;
}

/* --- bodies ------------------------------------------------------------------------------- */

static void m7_qp_put(mime7 *m, const char *t, size_t n)
{
    if (m->qlen + n > SMTP_QP_LINE_MAX - 1) {
        m->qline[m->qlen++] = '='; /* a soft line break (RFC 2045 6.7 rule 5) */
        m->emit(m->arg, m->qline, m->qlen, true);
        m->qlen = 0;
        m->qsoft = true;
    }
    memcpy(m->qline + m->qlen, t, n);
    m->qlen += n;
}

static void m7_qp_hex(mime7 *m, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    char t[3] = {'=', hex[c >> 4], hex[c & 15]};
    m7_qp_put(m, t, 3);
}

static void m7_qp_byte(mime7 *m, unsigned char c)
{
    if (m->qpend >= 0) {
        char w = (char)m->qpend; /* not at the line's end: literal */
        m->qpend = -1;
        m7_qp_put(m, &w, 1);
    }
    if (c == ' ' || c == '\t') {
        m->qpend = c;
        return;
    }
    /* A '-' that would begin a soft-broken line is encoded: no line we make can pass for a
     * boundary. */
    bool soft_start = (m->qsoft && m->qlen == 0) || m->qlen + 1 > SMTP_QP_LINE_MAX - 1;
    if (c < 33 || c > 126 || c == '=' || (c == '-' && soft_start)) {
        m7_qp_hex(m, c);
        return;
    }
    char t = (char)c;
    m7_qp_put(m, &t, 1);
}

static void m7_qp_eol(mime7 *m)
{
    if (m->qpend >= 0) {
        unsigned char w = (unsigned char)m->qpend; /* trailing whitespace: encoded (rule 3) */
        m->qpend = -1;
        m7_qp_hex(m, w);
    }
    m->emit(m->arg, m->qline, m->qlen, true);
    m->qlen = 0;
    m->qsoft = false;
}

/* m7_boundary - is the whole line p[0..n) a delimiter of an open multipart? *level and *close
 * say which and whether it is the close-delimiter (RFC 2046 5.1.1; transport padding of
 * spaces and tabs allowed after it). */
static bool m7_boundary(const mime7 *m, const char *p, size_t n, size_t *level, bool *close)
{
    if (n < 3 || p[0] != '-' || p[1] != '-')
        return false;
    for (size_t k = m->nstack; k-- > 0;) {
        const mime7_level *l = &m->stack[k];
        if (n < 2 + l->len || memcmp(p + 2, l->b, l->len))
            continue;
        size_t i = 2 + l->len;
        *close = n >= i + 2 && p[i] == '-' && p[i + 1] == '-';
        if (*close)
            i += 2;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i == n) {
            *level = k;
            return true;
        }
    }
    return false;
}

void mime7_init(mime7 *m, bool declared8, mime7_emit_fn emit, void *arg)
{
    m->emit = emit;
    m->arg = arg;
    m->declared8 = declared8;
    m->fail = 0;
    m->nstack = 0;
    m7_entity(m, 0, true);
}

int mime7_piece(mime7 *m, const char *p, size_t n, bool bol, bool eol)
{
    if (m->fail)
        return m->fail;
    size_t k;
    bool close;
    if (bol && eol && m->nstack && m7_boundary(m, p, n, &k, &close)) {
        if (m->in_hdr) { /* a part that ended in its header block */
            m7_field_done(m);
            if (m->hold)
                m7_emit_raw(m, m->held, m->hlen, true);
        }
        m->emit(m->arg, p, n, true);
        unsigned depth = m->stack[k].depth;
        if (close) {
            m->nstack = k; /* the epilogue follows, passed as it is */
            m7_entity(m, depth, false);
            m->in_hdr = false;
        } else {
            m->nstack = k + 1;
            m7_entity(m, depth + 1, false); /* a part: its header block */
        }
        return 0;
    }
    if (m->in_hdr) {
        m7_header_piece(m, p, n, bol, eol);
        return m->fail;
    }
    if (!m->qp) {
        if (m7_is8(p, n)) {
            m->fail = M7_FAIL_8BIT;
            return m->fail;
        }
        m->emit(m->arg, p, n, eol);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        m7_qp_byte(m, (unsigned char)p[i]);
    if (eol)
        m7_qp_eol(m);
    return 0;
}

int mime7_end(mime7 *m)
{
    if (m->fail)
        return m->fail;
    if (m->in_hdr) { /* the data ended inside a header block */
        m7_field_done(m);
        if (m->hold)
            m7_emit_raw(m, m->held, m->hlen, true);
        m->hold = false;
    }
    return 0;
}
