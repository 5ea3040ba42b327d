/* regfile.c - .reg files: a parser that reports keys and values to a sink, and a writer.
 *
 * The parser reproduces the line-by-line state machine of Windows regedit/reg.exe as Wine 8.0
 * implements and tests it (registry.md section 4, our oracle), quirks included; where Wine's
 * behaviour is undefined (reads outside its buffers) we pick the nearest sane behaviour and say
 * so. Lines are decoded to UTF-16LE (CP1252 files one unit per byte) before parsing, so the same
 * code serves both encodings. Windows skips bad lines silently; we also report each one. */
#include "reg/regfile.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The exact headers (section 4.1); any other first line starting with REGEDIT is "fuzzy". */
static const char rf_header31[] = "REGEDIT";
static const char rf_header4[] = "REGEDIT4";
static const char rf_header5[] = "Windows Registry Editor Version 5.00";
/* Win3.1 lines must start with this, case-sensitively and in column 1 (section 4.7). */
static const char rf_hkcr[] = "HKEY_CLASSES_ROOT";

/* The longest diagnostic message we format. */
#define RF_MSG_MAX 256
/* Export wraps hex data once a line reaches this many characters (section 4.8 item 6). */
#define RF_HEX_WRAP 77
/* The indent of hex continuation lines; it is also the line length after a wrap. */
#define RF_HEX_INDENT 2
/* The most the data buffer of one value ever holds: REG_MAX_DATA bytes, plus the padding byte
 * and terminator rf_fix_string may add before the result is checked against REG_MAX_DATA,
 * plus the NUL that buf keeps room for. */
#define RF_DATA_CAP ((size_t)REG_MAX_DATA + 4)

/* A stand-in data pointer for empty values, so a sink never gets NULL. */
static const uint8_t rf_empty[1];

/* rf_text - a view of UTF-16LE text: n units at b (b may be NULL when n is 0). */
typedef struct rf_text {
    const uint8_t *b;
    size_t n;
} rf_text;

/* What a piece of hex data ended with. */
enum rf_hex {
    RF_HEX_BAD,  /* a syntax error: the value is dropped */
    RF_HEX_DONE, /* the data ends on this line */
    RF_HEX_MORE, /* a continuation backslash: the data goes on on the next line */
};

typedef struct rf_parser {
    const uint8_t *in; /* the whole file */
    size_t in_len;
    size_t pos;   /* byte offset of the next line */
    bool unicode; /* FF FE BOM: UTF-16LE; else CP1252 */
    bool quiet;   /* no diagnostics (while reading the header) */
    bool win31;   /* the "REGEDIT" format */
    const regfile_sink *sink;
    void *arg;
    int rc;              /* the ERROR_* that stops the parse: out of memory or a sink abort */
    unsigned lineno;     /* physical number of the current line */
    bool too_long;       /* longer than REGFILE_MAX_LINE: line holds only a prefix */
    buf line;            /* the current line, UTF-16LE, without its line end */
    bool key_open;       /* there is a current key for values */
    buf name;            /* the value being parsed: its name (UTF-16LE) */
    bool name_default;   /* ... or it is the default value */
    uint32_t type;       /* ... its type */
    buf data;            /* ... its data, as it will be stored */
    unsigned value_line; /* ... the line it started on */
    bool hex_cp1252;     /* ... hex string data of a CP1252 file: bytes are characters */
    bool data_over;      /* ... its hex data exceeds REG_MAX_DATA: doomed, data not kept */
    buf utf8;            /* names and paths for the sink */
} rf_parser;

/* ------------------------------------------------------------------------------------------
 * Small helpers */

static uint16_t rf_at(rf_text t, size_t i)
{
    return (uint16_t)(t.b[2 * i] | t.b[2 * i + 1] << 8);
}

static rf_text rf_line_text(const rf_parser *p)
{
    rf_text t = {p->line.data, p->line.len / 2};
    return t;
}

/* rf_is_blank - the characters Windows skips around tokens: space and tab only. */
static bool rf_is_blank(uint16_t c)
{
    return c == ' ' || c == '\t';
}

/* rf_is_space - iswspace: the Unicode White_Space characters that fit in one UTF-16 unit.
 * Used where Windows calls iswspace or wcstoul (Win3.1 key end, hex numbers). */
static bool rf_is_space(uint16_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* rf_hexval - the value of an ASCII hex digit, or -1. */
static int rf_hexval(uint16_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t rf_skip_blank(rf_text t, size_t i)
{
    while (i < t.n && rf_is_blank(rf_at(t, i)))
        i++;
    return i;
}

/* rf_match - true when t holds the ASCII string s at i (case-sensitive). */
static bool rf_match(rf_text t, size_t i, const char *s)
{
    size_t n = strlen(s);
    if (i > t.n || t.n - i < n)
        return false;
    for (size_t k = 0; k < n; k++)
        if (rf_at(t, i + k) != (uint8_t)s[k])
            return false;
    return true;
}

/* rf_equals - true when t from i to its end is exactly s. */
static bool rf_equals(rf_text t, size_t i, const char *s)
{
    return i <= t.n && t.n - i == strlen(s) && rf_match(t, i, s);
}

/* rf_strtoul - wcstoul(s, &end, 16) as Windows' C runtime does it on a 32-bit unsigned long:
 * leading white space, an optional sign, an optional 0x prefix, then hex digits. *end is i
 * when nothing was converted. *overflow is set when the digits exceed 32 bits (ERANGE); a
 * minus sign negates modulo 2^32 as C does. */
static uint32_t rf_strtoul(rf_text t, size_t i, size_t *end, bool *overflow)
{
    size_t k = i;
    bool neg = false;
    uint64_t v = 0;
    *overflow = false;
    while (k < t.n && rf_is_space(rf_at(t, k)))
        k++;
    if (k < t.n && (rf_at(t, k) == '+' || rf_at(t, k) == '-'))
        neg = rf_at(t, k++) == '-';
    if (k + 1 < t.n && rf_at(t, k) == '0' && (rf_at(t, k + 1) | 0x20) == 'x')
        k += 2;
    size_t digits = k;
    for (int d; k < t.n && (d = rf_hexval(rf_at(t, k))) >= 0; k++) {
        v = v << 4 | (uint64_t)d;
        if (v > UINT32_MAX) {
            *overflow = true;
            v = UINT32_MAX; /* keep scanning the digits, as wcstoul does */
        }
    }
    if (k == digits) {
        *end = i;
        return 0;
    }
    *end = k;
    return neg ? (uint32_t)(0u - (uint32_t)v) : (uint32_t)v;
}

/* rf_diag - report line; formatting failures only shorten the message. */
static void rf_diag(rf_parser *p, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rf_diag(rf_parser *p, unsigned line, const char *fmt, ...)
{
    if (p->quiet || !p->sink->diag)
        return;
    char msg[RF_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->sink->diag(p->arg, line, msg);
}

static void rf_nomem(rf_parser *p)
{
    if (!p->rc)
        p->rc = ERROR_NOT_ENOUGH_MEMORY;
}

/* rf_sink_result - a negative sink result aborts the parse with the negated error. */
static void rf_sink_result(rf_parser *p, int rc)
{
    if (rc < 0 && !p->rc)
        p->rc = rc == INT_MIN ? INT_MAX : -rc;
}

/* rf_utf8 - n UTF-16LE units at u as a NUL-terminated UTF-8 string in p->utf8, or NULL on out
 * of memory. */
static const char *rf_utf8(rf_parser *p, const uint8_t *u, size_t n)
{
    p->utf8.len = 0;
    if (base_utf16_to_utf8(u, n, &p->utf8)) {
        rf_nomem(p);
        return NULL;
    }
    const char *s = buf_cstr(&p->utf8);
    if (!s)
        rf_nomem(p);
    return s;
}

/* ------------------------------------------------------------------------------------------
 * Reading lines */

static uint16_t rf_in_unit(const rf_parser *p, size_t off)
{
    if (p->unicode)
        return (uint16_t)(p->in[off] | p->in[off + 1] << 8);
    return p->in[off];
}

/* rf_next_line - decode the next physical line into p->line. Lines end at CR, LF or CRLF; an
 * odd last byte of a UTF-16 file is ignored. The line is cut at its first NUL, as Windows
 * handles lines as C strings. Returns 1, 0 at the end of the file, -1 on out of memory. */
static int rf_next_line(rf_parser *p)
{
    size_t w = p->unicode ? 2 : 1;
    if (p->in_len - p->pos < w)
        return 0;
    size_t start = p->pos, off = start, units = 0;
    while (p->in_len - off >= w) {
        uint16_t c = rf_in_unit(p, off);
        if (c == '\r' || c == '\n')
            break;
        off += w;
        units++;
    }
    if (p->in_len - off >= w) {
        uint16_t c = rf_in_unit(p, off);
        off += w;
        if (c == '\r' && p->in_len - off >= w && rf_in_unit(p, off) == '\n')
            off += w;
    }
    p->pos = off;
    if (p->lineno < UINT_MAX)
        p->lineno++;
    p->too_long = units > REGFILE_MAX_LINE;
    size_t keep = p->too_long ? REGFILE_MAX_LINE : units, k = 0;
    while (k < keep && rf_in_unit(p, start + k * w) != 0)
        k++;
    if (k < keep) {
        rf_diag(p, p->lineno, "NUL character in the line: the rest of the line is ignored");
        keep = k;
    }
    p->line.len = 0;
    int rc = p->unicode ? buf_add(&p->line, p->in + start, keep * 2)
                        : base_cp1252_to_utf16(p->in + start, keep, &p->line);
    if (rc) {
        rf_nomem(p);
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------------------------------
 * Delivering events */

/* rf_set_value - hand the finished value to the sink, if a key is open. */
static void rf_set_value(rf_parser *p)
{
    if (!p->key_open) {
        rf_diag(p, p->value_line, "value ignored: no key is open");
        return;
    }
    if (!p->sink->value)
        return;
    const char *name = NULL;
    if (!p->name_default && !(name = rf_utf8(p, p->name.data, p->name.len / 2)))
        return;
    const uint8_t *d = p->data.len ? p->data.data : rf_empty;
    rf_sink_result(p, p->sink->value(p->arg, p->value_line, name, p->type, d, p->data.len));
}

/* ------------------------------------------------------------------------------------------
 * Strings */

/* rf_unescape - decode the quoted string whose text starts at t[i] (after the opening quote)
 * into out (UTF-16LE) and set *next after the closing quote. \\ \" \n \r are escapes; any other
 * \c is reported and kept as c; \0 and a backslash at the end of the line are errors. Returns
 * NULL, or the syntax error. */
static const char *rf_unescape(rf_parser *p, rf_text t, size_t i, buf *out, size_t *next)
{
    out->len = 0;
    for (; i < t.n; i++) {
        uint16_t c = rf_at(t, i);
        if (c == '"') {
            *next = i + 1;
            return NULL;
        }
        if (c == '\\') {
            if (++i == t.n)
                return "backslash at the end of the line";
            c = rf_at(t, i);
            if (c == 'n') {
                c = '\n';
            } else if (c == 'r') {
                c = '\r';
            } else if (c == '0') {
                return "\\0 is not allowed in a string";
            } else if (c != '\\' && c != '"') {
                /* reg.exe prints this and keeps the character; a surrogate pair is shown
                 * whole, its second half is then copied as an ordinary character. */
                size_t n = 1;
                if (c >= 0xd800 && c < 0xdc00 && i + 1 < t.n && rf_at(t, i + 1) >= 0xdc00 &&
                    rf_at(t, i + 1) < 0xe000)
                    n = 2;
                const char *s = rf_utf8(p, t.b + 2 * i, n);
                if (!s)
                    return "out of memory";
                rf_diag(p, p->lineno, "Unrecognized escape sequence [\\%s]", s);
            }
        }
        if (buf_add_u16(out, c)) {
            rf_nomem(p);
            return "out of memory";
        }
    }
    return "no closing quote";
}

/* ------------------------------------------------------------------------------------------
 * Hex data (section 4.5, "Hex rules") */

/* rf_data_add - append one byte of hex data to the value, in its stored form: the bytes of a
 * hex string in a CP1252 file are characters, converted to UTF-16 here as they come so that
 * no second copy is needed. Once the data would exceed REG_MAX_DATA the value is doomed: its
 * memory is released and the rest of its bytes are only checked for syntax. Returns 0 or -1
 * (out of memory). */
static int rf_data_add(rf_parser *p, uint8_t v)
{
    size_t n = p->hex_cp1252 ? 2 : 1;
    if (p->data_over)
        return 0;
    if (n > REG_MAX_DATA - p->data.len) {
        p->data_over = true;
        buf_free(&p->data);
        return 0;
    }
    if (buf_reserve_capped(&p->data, n, RF_DATA_CAP) ||
        (p->hex_cp1252 ? base_cp1252_to_utf16(&v, 1, &p->data) : buf_addc(&p->data, v))) {
        rf_nomem(p);
        return -1;
    }
    return 0;
}

/* rf_hex_chunk - parse comma-separated bytes from t[i], appending them to p->data. On
 * RF_HEX_MORE *after is the index after the continuation backslash. */
static enum rf_hex rf_hex_chunk(rf_parser *p, rf_text t, size_t i, size_t *after)
{
    while (i < t.n) {
        size_t end;
        bool overflow;
        uint32_t v = rf_strtoul(t, i, &end, &overflow);
        if (overflow || v > 0xff)
            return RF_HEX_BAD;
        if (end == i) {
            /* No number: only a continuation backslash or a comment may come here. Note
             * that trailing blanks after a comma end up here too and are an error on a
             * continuation line (Windows trims them only on the first line). */
            size_t k = rf_skip_blank(t, i);
            if (k < t.n && rf_at(t, k) == '\\') {
                *after = k + 1;
                return RF_HEX_MORE;
            }
            return k < t.n && rf_at(t, k) == ';' ? RF_HEX_DONE : RF_HEX_BAD;
        }
        if (rf_data_add(p, (uint8_t)v))
            return RF_HEX_BAD;
        if (end < t.n && rf_at(t, end) != ',') {
            /* Not a comma after the byte: the data ends here, before blanks and a comment.
             * So a backslash straight after a byte (6c,00\) is an error, not a continuation. */
            size_t k = rf_skip_blank(t, end);
            return k < t.n && rf_at(t, k) != ';' ? RF_HEX_BAD : RF_HEX_DONE;
        }
        i = end < t.n ? end + 1 : end;
    }
    return RF_HEX_DONE;
}

/* rf_eol_ok - after a continuation backslash only blanks and a ;comment may follow. */
static bool rf_eol_ok(rf_text t, size_t i)
{
    i = rf_skip_blank(t, i);
    return i == t.n || rf_at(t, i) == ';';
}

/* rf_fix_string - the null-termination fix-up for hex(1), hex(2) and hex(7) data
 * (prepare_hex_string_data): append a terminator when the last character is not NUL. The data
 * is UTF-16 already (rf_data_add converts a CP1252 file's bytes, and only byte 0 becomes NUL,
 * so the last unit tells what the last byte was). Empty data (as in hex(2):;c or hex(2):\ at
 * the end of the file) stays empty: Wine 8.0 reads before its buffer there and crashes. An odd
 * byte count in a UTF-16 file (untested on Windows; Wine overwrites the odd byte with half a
 * terminator) is padded with a zero byte first. Returns 0 or -1 (out of memory). */
static int rf_fix_string(rf_parser *p)
{
    buf *d = &p->data;
    if (!d->len)
        return 0;
    if (buf_reserve_capped(d, 3, RF_DATA_CAP))
        return -1;
    if ((d->len & 1) && buf_addc(d, 0))
        return -1;
    if ((d->data[d->len - 2] || d->data[d->len - 1]) && buf_add_u16(d, 0))
        return -1;
    return 0;
}

/* rf_is_string_type - the types whose hex data gets the terminator fix-up (and whose bytes are
 * characters in a CP1252 file). */
static bool rf_is_string_type(uint32_t type)
{
    return type == REG_SZ || type == REG_EXPAND_SZ || type == REG_MULTI_SZ;
}

/* rf_finish_hex - the hex data is complete: fix strings up and deliver. */
static void rf_finish_hex(rf_parser *p)
{
    if (!p->data_over && rf_is_string_type(p->type) && rf_fix_string(p)) {
        rf_nomem(p);
        return;
    }
    if (p->data_over || p->data.len > REG_MAX_DATA) {
        /* Reported on the line the value started on, as the store could not take it. */
        rf_diag(p, p->value_line, "value data longer than %u bytes: value dropped", REG_MAX_DATA);
        return;
    }
    rf_set_value(p);
}

/* rf_hex_continue - read continuation lines after a backslash. Blank and ;comment lines are
 * skipped; any other line that does not start with a hex digit rejects the value and is
 * consumed with it (so a [key] or value line there is lost, as on Windows). At the end of
 * the file the data read so far is stored. */
static void rf_hex_continue(rf_parser *p)
{
    for (;;) {
        int r = rf_next_line(p);
        if (r < 0)
            return;
        if (r == 0) {
            rf_finish_hex(p);
            return;
        }
        if (p->too_long) {
            rf_diag(p, p->lineno,
                    "syntax error: line longer than %u characters: the hex value from line %u "
                    "is dropped",
                    REGFILE_MAX_LINE, p->value_line);
            return;
        }
        rf_text t = rf_line_text(p);
        size_t k = rf_skip_blank(t, 0);
        if (k == t.n || rf_at(t, k) == ';')
            continue;
        if (rf_hexval(rf_at(t, k)) < 0) {
            rf_diag(p, p->lineno,
                    "syntax error: the hex value from line %u continues with a line that is "
                    "not hex data: value dropped and this line ignored",
                    p->value_line);
            return;
        }
        size_t after;
        enum rf_hex h = rf_hex_chunk(p, t, k, &after);
        if (h == RF_HEX_DONE) {
            rf_finish_hex(p);
            return;
        }
        if (h == RF_HEX_BAD || !rf_eol_ok(t, after)) {
            if (!p->rc)
                rf_diag(p, p->lineno,
                        "syntax error: bad hex data continuing the value from line %u: value "
                        "dropped",
                        p->value_line);
            return;
        }
    }
}

/* rf_hex_value - hex: or hex(N): data starting at t[i] (p->type is set). */
static void rf_hex_value(rf_parser *p, rf_text t, size_t i)
{
    p->data.len = 0;
    p->data_over = false;
    p->hex_cp1252 = !p->unicode && rf_is_string_type(p->type);
    if (i == t.n) {
        /* An empty list is stored as 0 bytes: no terminator for string types. */
        rf_set_value(p);
        return;
    }
    size_t after;
    enum rf_hex h = rf_hex_chunk(p, t, i, &after);
    if (h == RF_HEX_DONE) {
        rf_finish_hex(p);
        return;
    }
    if (h == RF_HEX_BAD) {
        if (!p->rc)
            rf_diag(p, p->lineno,
                    "syntax error: bad hex data (bytes are 1-2 hex digits separated by commas; "
                    "a line may end with ,\\ to continue): value dropped");
        return;
    }
    if (!rf_eol_ok(t, after)) {
        rf_diag(p, p->lineno,
                "syntax error: only a ;comment may follow the continuation backslash: value "
                "dropped");
        return;
    }
    rf_hex_continue(p);
}

/* ------------------------------------------------------------------------------------------
 * Value lines (sections 4.4 and 4.5) */

/* rf_dword - dword: data at t[i]: 1 to 8 hex digits after optional blanks, then blanks and an
 * optional ;comment. As on Windows, "dword:;..." (no digits before a comment) stores 0. */
static void rf_dword(rf_parser *p, rf_text t, size_t i)
{
    size_t k = rf_skip_blank(t, i), d = k;
    if (k == t.n) {
        rf_diag(p, p->lineno, "syntax error: dword: without a number: value dropped");
        return;
    }
    while (d < t.n && rf_hexval(rf_at(t, d)) >= 0)
        d++;
    size_t e = rf_skip_blank(t, d);
    if (d - k > 8 || (e < t.n && rf_at(t, e) != ';')) {
        rf_diag(p, p->lineno,
                "syntax error: dword: takes 1 to 8 hex digits and an optional ;comment: value "
                "dropped");
        return;
    }
    uint32_t v = 0;
    for (size_t q = k; q < d; q++)
        v = v << 4 | (uint32_t)rf_hexval(rf_at(t, q));
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    p->type = REG_DWORD;
    p->data.len = 0;
    if (buf_add(&p->data, le, sizeof le)) {
        rf_nomem(p);
        return;
    }
    rf_set_value(p);
}

/* rf_string_value - "text" data; t[i] is the opening quote. */
static void rf_string_value(rf_parser *p, rf_text t, size_t i)
{
    size_t k;
    const char *err = rf_unescape(p, t, i + 1, &p->data, &k);
    if (err) {
        if (!p->rc)
            rf_diag(p, p->lineno, "syntax error: string data: %s: value dropped", err);
        return;
    }
    k = rf_skip_blank(t, k);
    if (k < t.n && rf_at(t, k) != ';') {
        rf_diag(p, p->lineno,
                "syntax error: only a ;comment may follow the closing quote: value dropped");
        return;
    }
    if (buf_add_u16(&p->data, 0)) {
        rf_nomem(p);
        return;
    }
    p->type = REG_SZ;
    rf_set_value(p);
}

/* rf_hexn_value - hex(N): data; t[i] is just after "hex(". N is hex, 0 to ffffffff, parsed by
 * wcstoul, and must be followed directly by "):"; a 0x/x prefix is refused. */
static void rf_hexn_value(rf_parser *p, rf_text t, size_t i)
{
    size_t end;
    bool overflow;
    if (i == t.n || (i + 1 < t.n && (rf_at(t, i + 1) | 0x20) == 'x')) {
        rf_diag(p, p->lineno, "syntax error: bad hex(N): type: value dropped");
        return;
    }
    uint32_t v = rf_strtoul(t, i, &end, &overflow);
    if (overflow || !rf_match(t, end, "):")) {
        rf_diag(p, p->lineno, "syntax error: bad hex(N): type: value dropped");
        return;
    }
    p->type = v;
    rf_hex_value(p, t, end + 2);
}

/* rf_value_data - the data of a value line from t[i]; t ends before trailing blanks. The type
 * prefixes are case-sensitive. */
static void rf_value_data(rf_parser *p, rf_text t, size_t i)
{
    if (i < t.n && rf_at(t, i) == '"') {
        rf_string_value(p, t, i);
    } else if (rf_match(t, i, "hex:")) {
        p->type = REG_BINARY;
        rf_hex_value(p, t, i + 4);
    } else if (rf_match(t, i, "dword:")) {
        rf_dword(p, t, i + 6);
    } else if (rf_match(t, i, "hex(")) {
        rf_hexn_value(p, t, i + 4);
    } else {
        rf_diag(p, p->lineno,
                "syntax error: unknown data type (expected \"string\", dword:, hex: or "
                "hex(N):): value dropped");
    }
}

/* rf_delete_value - "name"=- ; t[i] is just after the '-'. */
static void rf_delete_value(rf_parser *p, rf_text t, size_t i)
{
    i = rf_skip_blank(t, i);
    if (i < t.n && rf_at(t, i) != ';') {
        rf_diag(p, p->lineno, "syntax error: only a ;comment may follow =-: nothing deleted");
        return;
    }
    if (!p->key_open) {
        rf_diag(p, p->lineno, "value deletion ignored: no key is open");
        return;
    }
    if (!p->sink->delete_value)
        return;
    const char *name = NULL;
    if (!p->name_default && !(name = rf_utf8(p, p->name.data, p->name.len / 2)))
        return;
    rf_sink_result(p, p->sink->delete_value(p->arg, p->value_line, name));
}

/* rf_value_line - a line starting (after blanks) with @ or "; t[i] is just after that
 * character. "" is the default value too. */
static void rf_value_line(rf_parser *p, rf_text t, size_t i, bool is_default)
{
    p->value_line = p->lineno;
    p->name.len = 0;
    p->name_default = is_default;
    size_t j = i;
    if (!is_default) {
        const char *err = rf_unescape(p, t, i, &p->name, &j);
        if (err) {
            if (!p->rc)
                rf_diag(p, p->lineno, "syntax error: value name: %s: line ignored", err);
            return;
        }
        p->name_default = p->name.len == 0;
    }
    j = rf_skip_blank(t, j);
    if (j == t.n || rf_at(t, j) != '=') {
        rf_diag(p, p->lineno, "syntax error: '=' expected after the value name: line ignored");
        return;
    }
    j = rf_skip_blank(t, j + 1);
    /* Windows trims trailing blanks of the line here, before looking at the data. */
    while (t.n > j && rf_is_blank(rf_at(t, t.n - 1)))
        t.n--;
    if (j < t.n && rf_at(t, j) == '-')
        rf_delete_value(p, t, j + 1);
    else
        rf_value_data(p, t, j);
}

/* ------------------------------------------------------------------------------------------
 * Key lines (section 4.3) */

/* rf_key_line - a line starting (after blanks) with '['; t[i] is just after it. */
static void rf_key_line(rf_parser *p, rf_text t, size_t i)
{
    if (i < t.n && rf_is_blank(rf_at(t, i))) {
        /* Windows ignores the line but leaves the current key open. */
        rf_diag(p, p->lineno,
                "syntax error: blank after '[': line ignored, values still go to the previous "
                "key");
        return;
    }
    size_t end = t.n;
    while (end > i && rf_at(t, end - 1) != ']')
        end--;
    if (end == i) {
        rf_diag(p, p->lineno, "syntax error: key line without ']': line ignored");
        return;
    }
    end--; /* the last ']' closes the name; what follows it is ignored */
    if (i < end && rf_at(t, i) == '-') {
        p->key_open = false;
        if (end == i + 1 || (rf_at(t, i + 1) != 'H' && rf_at(t, i + 1) != 'h')) {
            rf_diag(p, p->lineno,
                    "syntax error: the key to delete must follow \"[-\" directly: nothing "
                    "deleted");
            return;
        }
        const char *path = rf_utf8(p, t.b + 2 * (i + 1), end - i - 1);
        if (path && p->sink->delete_key)
            rf_sink_result(p, p->sink->delete_key(p->arg, p->lineno, path));
        return;
    }
    p->key_open = false;
    const char *path = rf_utf8(p, t.b + 2 * i, end - i);
    if (!path)
        return;
    int rc = p->sink->key ? p->sink->key(p->arg, p->lineno, path) : 0;
    rf_sink_result(p, rc);
    p->key_open = rc == 0;
}

/* rf_line - one line of a version 4 or 5 file. */
static void rf_line(rf_parser *p)
{
    if (p->too_long) {
        rf_diag(p, p->lineno, "syntax error: line longer than %u characters: line ignored",
                REGFILE_MAX_LINE);
        return;
    }
    rf_text t = rf_line_text(p);
    size_t i = rf_skip_blank(t, 0);
    if (i == t.n)
        return;
    switch (rf_at(t, i)) {
    case '[':
        rf_key_line(p, t, i + 1);
        break;
    case '@':
        rf_value_line(p, t, i + 1, true);
        break;
    case '"':
        rf_value_line(p, t, i + 1, false);
        break;
    case ';':
    case '#':
        break; /* a comment */
    default:
        rf_diag(p, p->lineno,
                "syntax error: not a [key], @= or \"name\"= line (a line is never continued "
                "except in hex data): line ignored");
        break;
    }
}

/* rf_win31_line - one line of a Windows 3.1 file: "HKEY_CLASSES_ROOT\path [=] value" sets the
 * default value of the key; the key ends at the first white space, then come blanks, an
 * optional '=', at most one space, and the value, trailing spaces included. */
static void rf_win31_line(rf_parser *p)
{
    rf_text t = rf_line_text(p);
    if (p->too_long || !rf_match(t, 0, rf_hkcr)) {
        size_t i = rf_skip_blank(t, 0);
        if (p->too_long || (i < t.n && rf_at(t, i) != ';' && rf_at(t, i) != '#'))
            rf_diag(p, p->lineno,
                    "line ignored: a REGEDIT (Windows 3.1) line must start with "
                    "HKEY_CLASSES_ROOT");
        return;
    }
    size_t key_end = 0;
    while (key_end < t.n && !rf_is_space(rf_at(t, key_end)))
        key_end++;
    size_t v = rf_skip_blank(t, key_end);
    if (v < t.n && rf_at(t, v) == '=')
        v++;
    if (v < t.n && rf_at(t, v) == ' ')
        v++;
    const char *path = rf_utf8(p, t.b, key_end);
    if (!path)
        return;
    int rc = p->sink->key ? p->sink->key(p->arg, p->lineno, path) : 0;
    rf_sink_result(p, rc);
    p->key_open = rc == 0;
    if (!p->key_open)
        return;
    p->value_line = p->lineno;
    p->name_default = true;
    p->type = REG_SZ;
    p->data.len = 0;
    if (buf_add(&p->data, t.b + 2 * v, 2 * (t.n - v)) || buf_add_u16(&p->data, 0)) {
        rf_nomem(p);
        return;
    }
    rf_set_value(p);
}

/* rf_header - read and classify the first line. Returns ERROR_SUCCESS to go on parsing,
 * ERROR_INVALID_DATA, ERROR_NOT_ENOUGH_MEMORY, or -1 for a fuzzy header (stop, success). */
static int rf_header(rf_parser *p, enum regfile_format *format)
{
    p->quiet = true;
    int r = rf_next_line(p);
    p->quiet = false;
    if (r < 0)
        return ERROR_NOT_ENOUGH_MEMORY;
    if (r == 0)
        return ERROR_INVALID_DATA;
    rf_text t = rf_line_text(p);
    size_t i = rf_skip_blank(t, 0);
    if (rf_equals(t, i, rf_header31)) {
        p->win31 = true;
        *format = REGFILE_WIN31;
    } else if (rf_equals(t, i, rf_header4)) {
        *format = REGFILE_V4;
    } else if (rf_equals(t, i, rf_header5)) {
        *format = REGFILE_V5;
    } else if (rf_match(t, i, rf_header31)) {
        /* "REGEDIT5", "REGEDIT 4", "REGEDIT4 FOO"...: Windows accepts the file and imports
         * nothing. */
        rf_diag(p, p->lineno,
                "unsupported header (only REGEDIT, REGEDIT4 and Windows Registry Editor "
                "Version 5.00 are read): nothing imported");
        return -1;
    } else {
        return ERROR_INVALID_DATA;
    }
    return ERROR_SUCCESS;
}

int regfile_parse(const uint8_t *data, size_t len, const regfile_sink *sink, void *arg,
                  enum regfile_format *format)
{
    enum regfile_format fmt = REGFILE_NONE;
    if (format)
        *format = REGFILE_NONE;
    if (!sink || (!data && len))
        return ERROR_INVALID_PARAMETER;
    if (len < 2)
        return ERROR_INVALID_DATA;
    rf_parser p = {.in = data, .in_len = len, .sink = sink, .arg = arg};
    p.unicode = data[0] == 0xff && data[1] == 0xfe;
    p.pos = p.unicode ? 2 : 0;
    int rc = rf_header(&p, &fmt);
    if (rc == ERROR_SUCCESS) {
        if (format)
            *format = fmt;
        while (!p.rc && rf_next_line(&p) > 0) {
            if (p.win31)
                rf_win31_line(&p);
            else
                rf_line(&p);
        }
        rc = p.rc;
    } else if (rc < 0) {
        rc = ERROR_SUCCESS;
    }
    buf_free(&p.line);
    buf_free(&p.name);
    buf_free(&p.data);
    buf_free(&p.utf8);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * Writer (section 4.8). Each line is built as UTF-16LE text, then stored in the file's
 * encoding, so version 4 and 5 share the layout and the column counting. */

static int rf_w_ascii(buf *t, const char *s)
{
    for (; *s; s++)
        if (buf_add_u16(t, (uint8_t)*s))
            return ERROR_NOT_ENOUGH_MEMORY;
    return ERROR_SUCCESS;
}

/* rf_w_escaped - append n UTF-16LE units at u up to the first NUL, escaping \ " CR LF. */
static int rf_w_escaped(buf *t, const uint8_t *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t c = (uint16_t)(u[2 * i] | u[2 * i + 1] << 8);
        int rc;
        if (c == 0)
            break;
        if (c == '\\' || c == '"')
            rc = buf_add_u16(t, '\\') || buf_add_u16(t, c);
        else if (c == '\r')
            rc = rf_w_ascii(t, "\\r");
        else if (c == '\n')
            rc = rf_w_ascii(t, "\\n");
        else
            rc = buf_add_u16(t, c);
        if (rc)
            return ERROR_NOT_ENOUGH_MEMORY;
    }
    return ERROR_SUCCESS;
}

/* rf_w_emit - append the UTF-16LE text t to out in the encoding of version. */
static int rf_w_emit(buf *out, int version, const buf *t)
{
    int rc = version == 5 ? buf_add(out, t->data, t->len)
                          : base_utf16_to_cp1252(t->data, t->len / 2, out);
    return rc ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

/* rf_w_utf16 - UTF-8 s into t as UTF-16LE. */
static int rf_w_utf16(buf *t, const char *s)
{
    int rc = base_utf8_to_utf16(s, strlen(s), t);
    if (rc)
        return rc == ENOMEM ? ERROR_NOT_ENOUGH_MEMORY : ERROR_INVALID_PARAMETER;
    return ERROR_SUCCESS;
}

static bool rf_w_version_ok(const buf *out, int version)
{
    return out && (version == 4 || version == 5);
}

int regfile_write_header(buf *out, int version)
{
    if (!rf_w_version_ok(out, version))
        return ERROR_INVALID_PARAMETER;
    if (version == 4)
        return buf_adds(out, "REGEDIT4\r\n") ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
    size_t start = out->len;
    buf t = BUF_INIT;
    int rc = rf_w_ascii(&t, rf_header5);
    if (!rc)
        rc = rf_w_ascii(&t, "\r\n");
    if (!rc)
        rc = buf_add(out, "\xff\xfe", 2) ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
    if (!rc)
        rc = rf_w_emit(out, version, &t);
    if (rc)
        out->len = start;
    buf_free(&t);
    return rc;
}

int regfile_write_key(buf *out, int version, const char *path)
{
    if (!rf_w_version_ok(out, version) || !path)
        return ERROR_INVALID_PARAMETER;
    buf t = BUF_INIT;
    int rc = rf_w_ascii(&t, "\r\n[");
    if (!rc)
        rc = rf_w_utf16(&t, path);
    if (!rc)
        rc = rf_w_ascii(&t, "]\r\n");
    if (!rc)
        rc = rf_w_emit(out, version, &t);
    buf_free(&t);
    return rc;
}

/* rf_w_hex - the hex:/hex(N): form, wrapped like regedit: line_len counts the characters of
 * the line so far; after each byte but the last comes a comma, and once the line reaches
 * RF_HEX_WRAP characters it is continued with a backslash on an indented line. */
static int rf_w_hex(buf *t, uint32_t type, const uint8_t *d, size_t n, size_t line_len)
{
    char prefix[24];
    if (type == REG_BINARY)
        snprintf(prefix, sizeof prefix, "hex:");
    else
        snprintf(prefix, sizeof prefix, "hex(%x):", (unsigned)type);
    if (rf_w_ascii(t, prefix))
        return ERROR_NOT_ENOUGH_MEMORY;
    line_len += strlen(prefix);
    for (size_t i = 0; i < n; i++) {
        char byte[4];
        snprintf(byte, sizeof byte, "%02x", d[i]);
        if (rf_w_ascii(t, byte))
            return ERROR_NOT_ENOUGH_MEMORY;
        if (i + 1 == n)
            break;
        if (rf_w_ascii(t, ","))
            return ERROR_NOT_ENOUGH_MEMORY;
        line_len += 3;
        if (line_len >= RF_HEX_WRAP) {
            if (rf_w_ascii(t, "\\\r\n  "))
                return ERROR_NOT_ENOUGH_MEMORY;
            line_len = RF_HEX_INDENT;
        }
    }
    return ERROR_SUCCESS;
}

int regfile_write_value(buf *out, int version, const char *name, uint32_t type, const uint8_t *data,
                        size_t len)
{
    if (!rf_w_version_ok(out, version) || (!data && len))
        return ERROR_INVALID_PARAMETER;
    buf t = BUF_INIT, tmp = BUF_INIT;
    int rc;
    if (!name || !*name) {
        rc = rf_w_ascii(&t, "@=");
    } else {
        rc = rf_w_utf16(&tmp, name);
        if (!rc)
            rc = rf_w_ascii(&t, "\"");
        if (!rc)
            rc = rf_w_escaped(&t, tmp.data, tmp.len / 2);
        if (!rc)
            rc = rf_w_ascii(&t, "\"=");
    }
    size_t line_len = t.len / 2;
    if (rc) {
        /* fall through to the cleanup */
    } else if (type == REG_SZ) {
        /* Windows assumes a terminator: the text is the first len/2-1 units, up to a NUL. */
        size_t n = len >= 2 ? len / 2 - 1 : 0;
        rc = rf_w_ascii(&t, "\"");
        if (!rc)
            rc = rf_w_escaped(&t, data, n);
        if (!rc)
            rc = rf_w_ascii(&t, "\"");
    } else if (type == REG_DWORD && len == 4) {
        /* Other sizes go out as hex(4): like Windows regedit (Wine's reg.exe reads past
         * a short value here). */
        char dw[24];
        uint32_t v = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                     (uint32_t)data[3] << 24;
        snprintf(dw, sizeof dw, "dword:%08x", (unsigned)v);
        rc = rf_w_ascii(&t, dw);
    } else if (version == 4 && (type == REG_EXPAND_SZ || type == REG_MULTI_SZ)) {
        /* REGEDIT4 writes these strings as CP1252 bytes, one per character. */
        tmp.len = 0;
        rc = base_utf16_to_cp1252(data, len / 2, &tmp) ? ERROR_NOT_ENOUGH_MEMORY : 0;
        if (!rc)
            rc = rf_w_hex(&t, type, tmp.data, tmp.len, line_len);
    } else {
        rc = rf_w_hex(&t, type, data, len, line_len);
    }
    if (!rc)
        rc = rf_w_ascii(&t, "\r\n");
    if (!rc)
        rc = rf_w_emit(out, version, &t);
    buf_free(&t);
    buf_free(&tmp);
    return rc;
}

int regfile_write_end(buf *out, int version)
{
    if (!rf_w_version_ok(out, version))
        return ERROR_INVALID_PARAMETER;
    buf t = BUF_INIT;
    int rc = rf_w_ascii(&t, "\r\n");
    if (!rc)
        rc = rf_w_emit(out, version, &t);
    buf_free(&t);
    return rc;
}
