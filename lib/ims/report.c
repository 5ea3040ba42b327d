/* report.c - delivery status notifications (RFC 3464): non-delivery reports with the original
 * IMS's text, delay and success DSNs, built from a spooled message; no I/O of its own (ims.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ims/ims.h"

#define RP_INDENT1 6                /* the text part's first indentation */
#define RP_INDENT2 12               /* ... and its second (reasons, diagnostics) */
#define RP_BOUNDARY_PREFIX "=_IMS_" /* + token, then ".<k>=" */
#define RP_BOUNDARY_DIGITS 5        /* k < IMS_REPORT_BOUNDARY_SLOTS has at most 5 digits */
#define RP_DATE_MAX 40              /* "Wed, 31 May 2024 13:45:07 +0000" and its NUL */
#define RP_BOUNDARY_MAX 72          /* RFC 2046 5.1.1: 70, and a NUL */
#define RP_TEXT_MAX (IMS_REPORT_FIELD_MAX + IMS_REPORT_NAME_MAX * 3 + 64) /* one text line */

/* --- output: the scanning pass and the writing pass ---------------------------------------- */

/* rp_out - where the report goes. The first pass (scan) writes nothing: it looks for the
 * boundary prefix followed by ".<digits>=" and marks each such k as used, and notes 8-bit
 * bytes; the second writes through the caller's callback in IMS_REPORT_CHUNK pieces. */
typedef struct rp_out {
    bool scan;
    const char *pat; /* RP_BOUNDARY_PREFIX + token; '=' only at its start */
    size_t plen;
    size_t st;           /* bytes of pat matched; plen: want '.'; plen + 1: in the digits */
    unsigned k, ndig;    /* the digits after the '.' */
    uint8_t *used;       /* IMS_REPORT_BOUNDARY_SLOTS bits */
    bool in_ret;         /* inside the returned original */
    bool high, ret_high; /* an 8-bit byte was seen anywhere / in the original returned */
    buf b;
    ims_report_write_fn write;
    void *arg;
    uint64_t size;
    int err;
} rp_out;

/* scan_byte - one byte through the matcher. As '=' occurs in pat only at its start, a
 * mismatch can only restart at the byte itself (no other part of what matched). */
static void scan_byte(rp_out *o, unsigned char c)
{
    if (o->st < o->plen) {
        if (c == (unsigned char)o->pat[o->st]) {
            o->st++;
            return;
        }
    } else if (o->st == o->plen) {
        if (c == '.') {
            o->st++;
            o->k = o->ndig = 0;
            return;
        }
    } else {
        bool leading_zero = o->ndig == 1 && o->k == 0; /* "0" then more digits: not a k */
        if (c >= '0' && c <= '9' && o->ndig < RP_BOUNDARY_DIGITS && !leading_zero) {
            o->k = o->k * 10 + (unsigned)(c - '0');
            o->ndig++;
            return;
        }
        if (c == '=' && o->ndig && o->k < IMS_REPORT_BOUNDARY_SLOTS)
            o->used[o->k / 8] |= (uint8_t)(1u << (o->k % 8));
    }
    o->st = c == '=' ? 1 : 0;
}

static void out_flush(rp_out *o)
{
    if (!o->err && o->b.len)
        o->err = o->write(o->arg, o->b.data, o->b.len);
    o->b.len = 0;
}

static void out_add(rp_out *o, const void *p, size_t n)
{
    if (o->err || !n)
        return;
    o->size += n;
    if (o->scan) {
        const unsigned char *s = p;
        for (size_t i = 0; i < n; i++) {
            scan_byte(o, s[i]);
            if (s[i] & 0x80) {
                o->high = true;
                o->ret_high |= o->in_ret;
            }
        }
        return;
    }
    if (buf_add(&o->b, p, n)) {
        o->err = ENOMEM;
        return;
    }
    if (o->b.len >= IMS_REPORT_CHUNK)
        out_flush(o);
}

static void out_adds(rp_out *o, const char *s)
{
    out_add(o, s, strlen(s));
}

static void out_crlf(rp_out *o)
{
    out_add(o, "\r\n", 2);
}

/* out_spaces - n spaces (n at most RP_INDENT2). */
static void out_spaces(rp_out *o, size_t n)
{
    static const char sp[RP_INDENT2 + 1] = "            ";
    out_add(o, sp, n < RP_INDENT2 ? n : RP_INDENT2);
}

/* out_field - "Name: value" CRLF, value clean (no CR, LF or control, single spaces). Folded
 * before a space (which begins the continuation, RFC 5322 2.2.3) where a line would pass
 * IMS_REPORT_FOLD; a word that would pass IMS_REPORT_LINE_MAX is broken with CRLF SP. */
static void out_field(rp_out *o, const char *name, const char *v)
{
    size_t col = strlen(name) + 2;
    out_adds(o, name);
    out_add(o, ": ", 2);
    bool first = true;
    while (*v) {
        size_t sp = strspn(v, " ");
        size_t w = strcspn(v + sp, " ");
        if (!first && sp && w && col + sp + w > IMS_REPORT_FOLD) {
            out_crlf(o);
            col = 0;
        }
        out_add(o, v, sp);
        col += sp;
        v += sp;
        while (w) {
            if (col >= IMS_REPORT_LINE_MAX) {
                out_add(o, "\r\n ", 3);
                col = 1;
            }
            size_t take = IMS_REPORT_LINE_MAX - col < w ? IMS_REPORT_LINE_MAX - col : w;
            out_add(o, v, take);
            col += take;
            v += take;
            w -= take;
        }
        first = false;
    }
    out_crlf(o);
}

/* out_text - s (clean ASCII) as lines of at most IMS_REPORT_TEXT_WIDTH, each indented,
 * broken at the last space that fits, or hard where there is none. */
static void out_text(rp_out *o, size_t indent, const char *s)
{
    size_t width = IMS_REPORT_TEXT_WIDTH - indent;
    do {
        size_t n = strlen(s), take = n, skip = 0;
        if (n > width) {
            take = width;
            for (size_t i = width; i > 0; i--)
                if (s[i] == ' ') {
                    take = i;
                    skip = 1;
                    break;
                }
        }
        out_spaces(o, indent);
        out_add(o, s, take);
        out_crlf(o);
        s += take + skip;
    } while (*s);
}

/* out_textf - out_text of a formatted line (cut at RP_TEXT_MAX). */
static void out_textf(rp_out *o, size_t indent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void out_textf(rp_out *o, size_t indent, const char *fmt, ...)
{
    char line[RP_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    out_text(o, indent, line);
}

/* --- the original's content ---------------------------------------------------------------- */

/* rp_norm - line ends made CRLF (a bare CR, a bare LF and CR LF each end one line), lines
 * over IMS_REPORT_LINE_MAX broken with CRLF SP, as lib/smtp's client does for the wire. */
typedef struct rp_norm {
    size_t col;
    bool cr;
    char stage[IMS_REPORT_CHUNK];
    size_t n;
} rp_norm;

static void norm_put(rp_out *o, rp_norm *z, const char *p, size_t n)
{
    if (z->n + n > sizeof z->stage) {
        out_add(o, z->stage, z->n);
        z->n = 0;
    }
    memcpy(z->stage + z->n, p, n);
    z->n += n;
}

static void norm_feed(rp_out *o, rp_norm *z, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (z->cr) {
            z->cr = false;
            norm_put(o, z, "\r\n", 2);
            z->col = 0;
            if (c == '\n')
                continue;
        }
        if (c == '\r') {
            z->cr = true;
        } else if (c == '\n') {
            norm_put(o, z, "\r\n", 2);
            z->col = 0;
        } else {
            if (z->col == IMS_REPORT_LINE_MAX) {
                norm_put(o, z, "\r\n ", 3);
                z->col = 1;
            }
            norm_put(o, z, (const char *)&c, 1);
            z->col++;
        }
    }
}

/* norm_end - end the last line and hand over what is staged. */
static void norm_end(rp_out *o, rp_norm *z)
{
    if (z->cr || z->col)
        norm_put(o, z, "\r\n", 2);
    out_add(o, z->stage, z->n);
    z->n = 0;
}

/* read_at - up to n bytes from off, fewer only at the end. */
static int read_at(const ims_report_original *orig, uint64_t off, char *p, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t k = 0;
        int err = orig->read(orig->read_arg, off + *got, p + *got, n - *got, &k);
        if (err)
            return err;
        if (!k)
            break;
        *got += k > n - *got ? n - *got : k;
    }
    return 0;
}

int ims_report_read_fd(void *arg, uint64_t off, void *p, size_t n, size_t *got)
{
    const ims_report_fd *src = arg;
    *got = 0;
    if (off >= src->len)
        return 0;
    if (n > src->len - off)
        n = (size_t)(src->len - off);
    for (;;) {
        ssize_t r = pread(src->fd, p, n, (off_t)(src->off + off));
        if (r >= 0) {
            *got = (size_t)r;
            return 0;
        }
        if (errno != EINTR)
            return errno;
    }
}

/* --- text ---------------------------------------------------------------------------------- */

/* clean - s (at most max bytes of it) into out (size bytes, cut there too): controls become
 * spaces, runs of spaces one, none at the ends; ascii: 8-bit bytes become '?'. When cut, an
 * incomplete UTF-8 sequence at the end is dropped. */
static void clean(const char *s, size_t max, bool ascii, char *out, size_t size)
{
    size_t n = 0, limit = size - 1;
    bool cut = false;
    for (size_t i = 0; s && s[i]; i++) {
        if (i >= max || n >= limit) {
            cut = true;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            c = ' ';
        else if (c >= 0x80 && ascii)
            c = '?';
        if (c == ' ' && (!n || out[n - 1] == ' '))
            continue;
        out[n++] = (char)c;
    }
    if (cut && !ascii) {
        size_t j = n, cont = 0;
        while (j > 0 && ((unsigned char)out[j - 1] & 0xc0) == 0x80 && cont < 3)
            j--, cont++;
        if (j > 0 && (unsigned char)out[j - 1] >= 0xc0) {
            unsigned char lead = (unsigned char)out[j - 1];
            size_t need = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : 1;
            if (cont < need)
                n = j - 1;
        }
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* xtext_decode - RFC 3461 4: "+XX" becomes its byte when that is printable ASCII other than
 * space; otherwise (and for a malformed "+") the text stays as it is, so no control or 8-bit
 * byte comes out. The result is clean()ed. */
static void xtext_decode(const char *s, char *out, size_t size)
{
    char tmp[IMS_REPORT_FIELD_MAX + 1];
    size_t n = 0;
    for (size_t i = 0; s[i] && n < sizeof tmp - 1 && i < IMS_REPORT_FIELD_MAX; i++) {
        int hi = s[i] == '+' ? hexval(s[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
        int b = lo >= 0 ? hi * 16 + lo : -1;
        if (b > 0x20 && b < 0x7f) {
            tmp[n++] = (char)b;
            i += 2;
        } else {
            tmp[n++] = s[i];
        }
    }
    tmp[n] = '\0';
    clean(tmp, sizeof tmp, true, out, size);
}

/* rp_date - RFC 5322 3.3 in GMT, with English names whatever the locale. */
static void rp_date(time_t t, char out[RP_DATE_MAX])
{
    static const char wday[] = "SunMonTueWedThuFriSat";
    static const char mon[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    if (!gmtime_r(&t, &tm))
        memset(&tm, 0, sizeof tm);
    snprintf(out, RP_DATE_MAX, "%.3s, %d %.3s %d %02d:%02d:%02d +0000", wday + 3 * (tm.tm_wday % 7),
             tm.tm_mday, mon + 3 * (tm.tm_mon % 12), tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
}

/* status_valid - RFC 3463 2: class "." subject "." detail, class 2, 4 or 5, 1-3 digits each. */
static bool status_valid(const char *s)
{
    if (!s || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    const char *p = s + 2;
    for (int part = 0; part < 2; part++) {
        size_t d = strspn(p, "0123456789");
        if (d < 1 || d > 3)
            return false;
        p += d;
        if (part == 0 && *p++ != '.')
            return false;
    }
    return *p == '\0';
}

/* status_is - the subject and detail of status are sd ("1.1"), whatever the class. */
static bool status_is(const char *status, const char *sd)
{
    return status && status[0] && status[1] == '.' && !strcmp(status + 2, sd);
}

void ims_report_diag_map(const char *status, unsigned smtp_code, ims_report_diag *out)
{
    static const struct {
        const char *sd; /* subject.detail */
        unsigned code;
        const char *hex, *text;
    } table[] = {
        {"1.1", 0, "000C05A6", "Unknown Recipient"},
        {"1.4", 0, "000C0595", "Ambiguous Recipient"},
        {"1.2", 3902, "000B099C", "Host Unknown"},
        {"1.10", 3902, "000B099C", "Host Unknown"},
        {"4.4", 3902, "000B099C", "Host Unknown"},
        {"2.3", 3903, "000B099C", "Message exceeds size limit."},
        {"3.4", 3903, "000B099C", "Message exceeds size limit."},
        {"4.6", 0, "00120270", "Too Many Hops"},
        {"5.3", 0, "00010256", "Too many recipients."},
    };
    out->code = 0;
    out->hex = NULL;
    out->text = NULL;
    if (smtp_code >= 200 && smtp_code <= 599) {
        out->code = 3000 + smtp_code;
        return;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (status_is(status, table[i].sd)) {
            out->code = table[i].code;
            out->hex = table[i].hex;
            out->text = table[i].text;
            return;
        }
}

/* reason - the sentence the text part gives for a status (RFC 3463's meanings, in the
 * words of the original where it had them). */
static const char *reason(const char *status)
{
    static const struct {
        const char *sd, *text;
    } table[] = {
        {"1.1", "The recipient name is not recognized"},
        {"1.2", "The destination host is unknown"},
        {"1.10", "The recipient's domain does not accept mail"},
        {"1.4", "The recipient name is ambiguous"},
        {"2.2", "The recipient's mailbox is full"},
        {"2.3", "The message is larger than the recipient accepts"},
        {"3.4", "The message is larger than the destination accepts"},
        {"4.4", "No route to the destination was found"},
        {"4.6", "The message was routed in a loop (too many hops)"},
        {"4.7", "The message could not be delivered in the time allowed"},
        {"5.3", "The message had too many recipients"},
        {"6.3", "The message could not be converted for the destination"},
        {"7.1", "The destination refused the message: delivery not authorized"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (status_is(status, table[i].sd))
            return table[i].text;
    if (status[2] == '4' && status[3] == '.')
        return "Unable to deliver the message due to a communications failure";
    if (status[0] == '4')
        return "The message has not been delivered yet";
    if (status[0] == '2')
        return "The message was delivered";
    return "The message could not be delivered";
}

/* --- names --------------------------------------------------------------------------------- */

static void copy_cut(char *dst, size_t size, const char *src, size_t n)
{
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void ims_report_names_from_settings(const ims_settings *s, const char *host, ims_report_names *out)
{
    memset(out, 0, sizeof *out);
    ims_settings_fqdn(s, out->mta, sizeof out->mta);
    for (const char *p = s->site_dn; *p;) {
        p += strspn(p, "/");
        size_t n = strcspn(p, "/");
        const char *eq = memchr(p, '=', n);
        if (eq) {
            size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
            if (klen == 1 && (p[0] == 'o' || p[0] == 'O') && !out->org[0])
                copy_cut(out->org, sizeof out->org, eq + 1, vlen);
            else if (klen == 2 && !strncasecmp(p, "ou", 2) && !out->site[0])
                copy_cut(out->site, sizeof out->site, eq + 1, vlen);
        }
        p += n;
    }
    const char *server = s->home_dsa[0] ? s->home_dsa : host ? host : "";
    copy_cut(out->server, sizeof out->server, server, strlen(server));
    const char *domain = s->site_domain[0] ? s->site_domain : out->mta;
    if (snprintf(out->postmaster, sizeof out->postmaster, "postmaster@%s", domain) >=
        (int)sizeof out->postmaster)
        out->postmaster[0] = '\0'; /* no cut address: no From address is better than a wrong one */
}

/* --- the original's header section --------------------------------------------------------- */

/* line_end - index just past the line starting at i in h[0..n) (its end: LF, CR LF or a
 * lone CR), or n when it has none; *len gets the line's length without its end. */
static size_t line_end(const char *h, size_t n, size_t i, size_t *len)
{
    size_t j = i;
    while (j < n && h[j] != '\n' && h[j] != '\r')
        j++;
    *len = j - i;
    if (j == n)
        return n;
    if (h[j] == '\r' && j + 1 < n && h[j + 1] == '\n')
        return j + 2;
    return j + 1;
}

/* header_section - the length of the header section at the start of h[0..n): up to the
 * first empty line, or everything when complete (the content has no body), else up to the
 * end of the last whole line. */
static size_t header_section(const char *h, size_t n, bool complete)
{
    size_t i = 0, last = 0, len;
    while (i < n) {
        size_t next = line_end(h, n, i, &len);
        if (!len && next > i)
            return i;
        if (next == n && i + len == n) /* no line end: the line is cut */
            return complete ? n : last;
        i = last = next;
    }
    return i;
}

/* header_get - the first field named name in h[0..n), unfolded (line ends removed), its first
 * size - 1 bytes into out. Returns the value's whole length, or -1 when there is none. */
static long header_get(const char *h, size_t n, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name), i = 0, len;
    while (i < n) {
        size_t next = line_end(h, n, i, &len);
        if (len > nl && !strncasecmp(h + i, name, nl)) {
            size_t k = i + nl;
            while (k < i + len && (h[k] == ' ' || h[k] == '\t'))
                k++;
            if (k < i + len && h[k] == ':') {
                size_t got = 0, total = 0;
                const char *v = h + k + 1;
                size_t vlen = i + len - (k + 1);
                for (;;) {
                    for (size_t m = 0; m < vlen; m++, total++)
                        if (got < size - 1)
                            out[got++] = v[m];
                    i = next;
                    if (i >= n || (h[i] != ' ' && h[i] != '\t'))
                        break;
                    next = line_end(h, n, i, &vlen);
                    v = h + i;
                }
                out[got] = '\0';
                return (long)total;
            }
        }
        i = next;
    }
    return -1;
}

/* first_word - the value's first token (before spaces, ';' or a comment), lower case. */
static void first_word(const char *v, char *out, size_t size)
{
    v += strspn(v, " \t");
    size_t n = strcspn(v, " \t;(");
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)((v[i] >= 'A' && v[i] <= 'Z') ? v[i] + 32 : v[i]);
    out[n] = '\0';
}

/* --- the report ---------------------------------------------------------------------------- */

typedef struct rp_ctx {
    const ims_report_original *orig;
    const ims_report_rcpt *rcpts;
    const ims_report_options *opt;
    size_t *sel, nsel;
    size_t count[IMS_REPORT_EXPANDED + 1];
    char *hdr; /* the first IMS_REPORT_HEADERS_MAX bytes of the content */
    size_t hdr_len;
    bool full, cut;
    char subject[IMS_REPORT_SUBJECT_MAX + 1];      /* for the header: 8-bit kept */
    char subject_text[IMS_REPORT_SUBJECT_MAX + 1]; /* for the text part */
    char sent[IMS_REPORT_SUBJECT_MAX + 1];
    char date[RP_DATE_MAX];
} rp_ctx;

static const char *action_name(ims_report_action a)
{
    static const char *const names[] = {"failed", "delayed", "delivered", "relayed", "expanded"};
    return names[a];
}

static bool wanted(const ims_report_rcpt *r, bool delay_default)
{
    if (r->notify & SMTP_NOTIFY_NEVER)
        return false;
    switch (r->action) {
    case IMS_REPORT_FAILED:
        return !r->notify || (r->notify & SMTP_NOTIFY_FAILURE);
    case IMS_REPORT_DELAYED:
        return r->notify ? (r->notify & SMTP_NOTIFY_DELAY) != 0 : delay_default;
    default:
        return (r->notify & SMTP_NOTIFY_SUCCESS) != 0;
    }
}

/* write_rcpt_text - a recipient in the text part. */
static void write_rcpt_text(const rp_ctx *c, rp_out *o, const ims_report_rcpt *r)
{
    char addr[IMS_REPORT_FIELD_MAX + 1], diag[IMS_REPORT_FIELD_MAX + 1], when[RP_DATE_MAX];
    clean(r->address, IMS_REPORT_FIELD_MAX, true, addr, sizeof addr);
    clean(r->diagnostic, IMS_REPORT_FIELD_MAX, true, diag, sizeof diag);
    rp_date(r->last_attempt ? r->last_attempt : c->opt->date, when);
    out_textf(o, RP_INDENT1, "%s on %s", addr, when);
    if (r->action != IMS_REPORT_FAILED && r->action != IMS_REPORT_DELAYED) {
        if (diag[0])
            out_text(o, RP_INDENT2, diag);
        return;
    }
    ims_report_diag d;
    ims_report_diag_map(r->status, r->smtp_code, &d);
    out_text(o, RP_INDENT2, reason(r->status));
    const char *text = d.text ? d.text : diag[0] ? diag : r->status;
    if (d.text && diag[0])
        out_text(o, RP_INDENT2, diag);
    const ims_report_names *nm = c->opt->names;
    char org[IMS_REPORT_NAME_MAX], site[IMS_REPORT_NAME_MAX], server[IMS_REPORT_NAME_MAX];
    clean(nm->org, sizeof org, true, org, sizeof org);
    clean(nm->site, sizeof site, true, site, sizeof site);
    clean(nm->server, sizeof server, true, server, sizeof server);
    char hex[16] = "";
    if (d.hex)
        snprintf(hex, sizeof hex, " (%s)", d.hex);
    out_textf(o, RP_INDENT2, "MSEXCH:IMS:%s:%s:%s %u%s %s", org, site, server, d.code, hex, text);
    if (r->action == IMS_REPORT_DELAYED && r->retry_until) {
        rp_date(r->retry_until, when);
        out_textf(o, RP_INDENT2, "Delivery will be retried until %s.", when);
    }
}

static void write_text(const rp_ctx *c, rp_out *o)
{
    static const struct {
        ims_report_action a;
        const char *head;
    } sections[] = {
        {IMS_REPORT_FAILED, "The following recipient(s) could not be reached:"},
        {IMS_REPORT_DELAYED, "Delivery to the following recipient(s) has been delayed:"},
        {IMS_REPORT_DELIVERED, "Your message was delivered to the following recipient(s):"},
        {IMS_REPORT_RELAYED, "Your message was relayed to the following recipient(s); their "
                             "mail systems may not report its delivery:"},
        {IMS_REPORT_EXPANDED, "Your message was delivered to the following recipient(s), which "
                              "forwarded it to further addresses:"},
    };
    if (c->count[IMS_REPORT_FAILED])
        out_text(o, 0, "Your message did not reach some or all of the intended recipients.");
    else if (c->count[IMS_REPORT_DELAYED])
        out_text(o, 0,
                 "Your message has not yet reached some of its recipients. Delivery is "
                 "still being attempted: you do not need to send it again.");
    else
        out_text(o, 0, "This is a delivery report for your message.");
    out_crlf(o);
    out_textf(o, RP_INDENT1, "Subject:  %s", c->subject_text);
    out_textf(o, RP_INDENT1, "Sent:     %s", c->sent);
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        if (!c->count[sections[s].a])
            continue;
        out_crlf(o);
        out_text(o, 0, sections[s].head);
        out_crlf(o);
        for (size_t i = 0; i < c->nsel; i++)
            if (c->rcpts[c->sel[i]].action == sections[s].a) {
                write_rcpt_text(c, o, &c->rcpts[c->sel[i]]);
                out_crlf(o);
            }
    }
    if (c->cut) {
        out_crlf(o);
        out_textf(o, 0,
                  "The original message was larger than %u bytes: only its headers are "
                  "returned.",
                  (unsigned)IMS_REPORT_RETURN_MAX);
    }
}

static void write_status(const rp_ctx *c, rp_out *o)
{
    const ims_report_original *g = c->orig;
    char v[IMS_REPORT_FIELD_MAX * 2 + 64], a[IMS_REPORT_FIELD_MAX + 1], b[IMS_REPORT_FIELD_MAX + 1];
    char when[RP_DATE_MAX];
    clean(c->opt->names->mta, SMTP_DOMAIN_MAX, true, a, sizeof a);
    snprintf(v, sizeof v, "dns; %s", a);
    out_field(o, "Reporting-MTA", v);
    if (g->envid && g->envid[0]) {
        xtext_decode(g->envid, a, sizeof a);
        out_field(o, "Original-Envelope-Id", a);
    }
    if (g->helo || g->client_ip) {
        clean(g->helo, IMS_REPORT_FIELD_MAX, true, a, sizeof a);
        clean(g->client_ip, IMS_REPORT_FIELD_MAX, true, b, sizeof b);
        if (a[0] && b[0])
            snprintf(v, sizeof v, "dns; %s (%s)", a, b);
        else if (a[0])
            snprintf(v, sizeof v, "dns; %s", a);
        else
            snprintf(v, sizeof v, "dns; [%s]", b);
        out_field(o, "Received-From-MTA", v);
    }
    rp_date(g->arrival, when);
    out_field(o, "Arrival-Date", when);
    for (size_t i = 0; i < c->nsel; i++) {
        const ims_report_rcpt *r = &c->rcpts[c->sel[i]];
        out_crlf(o);
        const char *semi = r->orcpt ? strchr(r->orcpt, ';') : NULL;
        if (semi && semi > r->orcpt && semi[1]) {
            size_t tl = (size_t)(semi - r->orcpt);
            char type[64];
            copy_cut(type, sizeof type, r->orcpt, tl);
            clean(type, sizeof type, true, a, sizeof a);
            xtext_decode(semi + 1, b, sizeof b);
            snprintf(v, sizeof v, "%s;%s", a, b);
            out_field(o, "Original-Recipient", v);
        }
        clean(r->address, IMS_REPORT_FIELD_MAX, true, a, sizeof a);
        snprintf(v, sizeof v, "rfc822;%s", a);
        out_field(o, "Final-Recipient", v);
        out_field(o, "Action", action_name(r->action));
        out_field(o, "Status", r->status);
        if (r->remote_mta && r->remote_mta[0]) {
            clean(r->remote_mta, IMS_REPORT_FIELD_MAX, true, a, sizeof a);
            snprintf(v, sizeof v, "dns; %s", a);
            out_field(o, "Remote-MTA", v);
        }
        if (r->diagnostic && r->diagnostic[0]) {
            clean(r->diagnostic, IMS_REPORT_FIELD_MAX, true, a, sizeof a);
            snprintf(v, sizeof v, "%s; %s", r->smtp_code ? "smtp" : "X-IMS", a);
            out_field(o, "Diagnostic-Code", v);
        }
        if (r->last_attempt) {
            rp_date(r->last_attempt, when);
            out_field(o, "Last-Attempt-Date", when);
        }
        if (r->action == IMS_REPORT_DELAYED && r->retry_until) {
            rp_date(r->retry_until, when);
            out_field(o, "Will-Retry-Until", when);
        }
    }
}

/* write_original - the returned part's body: all of the content, or its header section. */
static int write_original(const rp_ctx *c, rp_out *o)
{
    rp_norm *z = calloc(1, sizeof *z);
    if (!z)
        return ENOMEM;
    int err = 0;
    o->in_ret = true;
    if (!c->full) {
        norm_feed(o, z, (const unsigned char *)c->hdr, c->hdr_len);
    } else {
        char *chunk = malloc(IMS_REPORT_CHUNK);
        if (!chunk)
            err = ENOMEM;
        for (uint64_t off = 0; !err && off < c->orig->size;) {
            size_t want = c->orig->size - off < IMS_REPORT_CHUNK ? (size_t)(c->orig->size - off)
                                                                 : IMS_REPORT_CHUNK;
            size_t got;
            err = read_at(c->orig, off, chunk, want, &got);
            if (err || !got)
                break;
            norm_feed(o, z, (const unsigned char *)chunk, got);
            off += got;
        }
        free(chunk);
    }
    norm_end(o, z);
    o->in_ret = false;
    free(z);
    return err;
}

/* out_part - a part's delimiter line and its Content-Type and Content-Description fields. */
static void out_part(rp_out *o, const char *bnd, const char *type, const char *desc)
{
    out_adds(o, "--");
    out_adds(o, bnd);
    out_crlf(o);
    out_field(o, "Content-Type", type);
    out_field(o, "Content-Description", desc);
}

/* render - the whole report with boundary bnd ("" in the scanning pass). */
static int render(const rp_ctx *c, rp_out *o, const char *bnd, bool ret_high)
{
    const ims_report_names *nm = c->opt->names;
    char v[IMS_REPORT_SUBJECT_MAX + SMTP_PATH_MAX + 128], a[SMTP_PATH_MAX + 1];
    clean(nm->postmaster, SMTP_PATH_MAX, true, a, sizeof a);
    snprintf(v, sizeof v, "System Administrator <%s>", a);
    out_field(o, "From", v);
    clean(c->orig->sender, SMTP_PATH_MAX, true, a, sizeof a);
    snprintf(v, sizeof v, "<%s>", a);
    out_field(o, "To", v);
    const char *prefix = c->count[IMS_REPORT_FAILED]      ? "Undeliverable"
                         : c->count[IMS_REPORT_DELAYED]   ? "Delayed"
                         : c->count[IMS_REPORT_DELIVERED] ? "Delivered"
                                                          : "Relayed";
    snprintf(v, sizeof v, c->subject[0] ? "%s: %s" : "%s", prefix, c->subject);
    out_field(o, "Subject", v);
    out_field(o, "Date", c->date);
    clean(nm->mta, SMTP_DOMAIN_MAX, true, a, sizeof a);
    snprintf(v, sizeof v, "<%s@%s>", c->opt->token, a);
    out_field(o, "Message-ID", v);
    out_field(o, "MIME-Version", "1.0");
    out_field(o, "Auto-Submitted", "auto-replied");
    snprintf(v, sizeof v, "multipart/report; report-type=delivery-status; boundary=\"%s\"", bnd);
    out_field(o, "Content-Type", v);
    if (ret_high)
        out_field(o, "Content-Transfer-Encoding", "8bit");
    out_crlf(o);
    out_adds(o, "This is a delivery status notification in MIME format (RFC 3464).\r\n\r\n");

    out_part(o, bnd, "text/plain; charset=us-ascii", "Notification");
    out_crlf(o);
    write_text(c, o);

    out_part(o, bnd, "message/delivery-status", "Delivery report");
    out_crlf(o);
    write_status(c, o);

    out_part(o, bnd, c->full ? "message/rfc822" : "text/rfc822-headers",
             c->full ? "Original message" : "Original message headers");
    if (ret_high)
        out_field(o, "Content-Transfer-Encoding", "8bit");
    out_crlf(o);
    int err = write_original(c, o);
    if (err)
        return err;
    out_crlf(o); /* the delimiter's own CRLF (RFC 2046 5.1.1): the original keeps its last */
    out_adds(o, "--");
    out_adds(o, bnd);
    out_adds(o, "--\r\n");
    out_flush(o);
    return o->err;
}

/* token_valid - 1 to IMS_REPORT_TOKEN_MAX bytes of [A-Za-z0-9.-]: no '=' (the scanner
 * relies on it) and nothing a Message-ID or boundary cannot hold. */
static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    return n && n <= IMS_REPORT_TOKEN_MAX &&
           strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") == n;
}

/* load_headers - read the header section and refuse a report about a report. */
static int load_headers(rp_ctx *c)
{
    const ims_report_original *g = c->orig;
    size_t want = g->size < IMS_REPORT_HEADERS_MAX ? (size_t)g->size : IMS_REPORT_HEADERS_MAX;
    c->hdr = malloc(want ? want : 1);
    if (!c->hdr)
        return ENOMEM;
    size_t got = 0;
    if (want) {
        int err = read_at(g, 0, c->hdr, want, &got);
        if (err)
            return err;
    }
    c->hdr_len = header_section(c->hdr, got, got == g->size);
    char v[IMS_REPORT_SUBJECT_MAX * 2], w[32]; /* longer than kept: clean() sees a cut */
    if (header_get(c->hdr, c->hdr_len, "Content-Type", v, sizeof v) >= 0) {
        first_word(v, w, sizeof w);
        if (!strcmp(w, "multipart/report"))
            return ELOOP;
    }
    if (header_get(c->hdr, c->hdr_len, "Auto-Submitted", v, sizeof v) >= 0) {
        first_word(v, w, sizeof w);
        if (w[0] && strcmp(w, "no"))
            return ELOOP;
    }
    if (header_get(c->hdr, c->hdr_len, "Subject", v, sizeof v) >= 0) {
        clean(v, IMS_REPORT_SUBJECT_MAX, false, c->subject, sizeof c->subject);
        clean(v, IMS_REPORT_SUBJECT_MAX, true, c->subject_text, sizeof c->subject_text);
    }
    if (header_get(c->hdr, c->hdr_len, "Date", v, sizeof v) >= 0)
        clean(v, IMS_REPORT_SUBJECT_MAX, true, c->sent, sizeof c->sent);
    if (!c->sent[0]) {
        char d[RP_DATE_MAX];
        rp_date(g->arrival, d);
        snprintf(c->sent, sizeof c->sent, "%s", d);
    }
    return 0;
}

static int check_args(const ims_report_original *orig, const ims_report_rcpt *rcpts, size_t n,
                      const ims_report_options *opt)
{
    if (!orig || !opt || !opt->names || !opt->write || !opt->token || !token_valid(opt->token) ||
        !orig->sender || (orig->size && !orig->read) || (n && !rcpts))
        return EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!rcpts[i].address || !rcpts[i].address[0] || !status_valid(rcpts[i].status) ||
            (unsigned)rcpts[i].action > IMS_REPORT_EXPANDED)
            return EINVAL;
    return 0;
}

int ims_report_build(const ims_report_original *orig, const ims_report_rcpt *rcpts, size_t n,
                     const ims_report_options *opt, ims_report_info *info)
{
    int err = check_args(orig, rcpts, n, opt);
    if (err)
        return err;
    if (!orig->sender[0])
        return ENOMSG;
    rp_ctx *c = calloc(1, sizeof *c);
    rp_out o = {0};
    if (!c)
        return ENOMEM;
    c->orig = orig;
    c->rcpts = rcpts;
    c->opt = opt;
    err = load_headers(c);
    if (!err && !(c->sel = malloc((n ? n : 1) * sizeof *c->sel)))
        err = ENOMEM;
    for (size_t i = 0; !err && i < n; i++)
        if (wanted(&rcpts[i], opt->delay_default)) {
            c->sel[c->nsel++] = i;
            c->count[rcpts[i].action]++;
        }
    if (!err && !c->nsel)
        err = ENODATA;
    if (err)
        goto out;
    bool want_full =
        c->count[IMS_REPORT_FAILED] ? orig->ret != SMTP_RET_HDRS : orig->ret == SMTP_RET_FULL;
    c->full = want_full && orig->size <= IMS_REPORT_RETURN_MAX;
    c->cut = want_full && !c->full;
    rp_date(opt->date, c->date);

    /* The first pass: which boundaries occur, and is there 8-bit. */
    char pat[sizeof RP_BOUNDARY_PREFIX + IMS_REPORT_TOKEN_MAX];
    snprintf(pat, sizeof pat, "%s%s", RP_BOUNDARY_PREFIX, opt->token);
    o.scan = true;
    o.pat = pat;
    o.plen = strlen(pat);
    if (!(o.used = calloc(IMS_REPORT_BOUNDARY_SLOTS / 8, 1))) {
        err = ENOMEM;
        goto out;
    }
    if ((err = render(c, &o, "", false)))
        goto out;
    unsigned k = 0;
    while (k < IMS_REPORT_BOUNDARY_SLOTS && (o.used[k / 8] & (1u << (k % 8))))
        k++;
    if (k == IMS_REPORT_BOUNDARY_SLOTS) {
        err = EMSGSIZE;
        goto out;
    }
    char bnd[RP_BOUNDARY_MAX];
    snprintf(bnd, sizeof bnd, "%s.%u=", pat, k);
    bool high = o.high, ret_high = o.ret_high;

    /* The second: the report. */
    o.scan = false;
    o.size = 0;
    o.write = opt->write;
    o.arg = opt->write_arg;
    if ((err = render(c, &o, bnd, ret_high)))
        goto out;
    if (info) {
        info->reported = c->nsel;
        info->full = c->full;
        info->cut = c->cut;
        info->eightbit = high;
        info->size = o.size;
    }
out:
    free(o.used);
    buf_free(&o.b);
    free(c->sel);
    free(c->hdr);
    free(c);
    return err;
}
