/* text.c - conversions between UTF-8 (WTF-8), UTF-16LE and Windows code page 1252. */
#include "base/base.h"

#include <errno.h>

/* CP1252 bytes 0x80..0x9f; the rest of the page is Latin-1. 0 marks an unassigned byte,
 * which Windows' MultiByteToWideChar maps to the same-numbered C1 control. */
static const uint16_t cp1252_high[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178,
};

/* utf8_decode - one code point from s[0..n); *used gets its length. Returns -1 when the
 * sequence is malformed (overlong, truncated, above U+10FFFF). Surrogates are allowed. */
static int32_t utf8_decode(const uint8_t *s, size_t n, size_t *used)
{
    uint8_t c = s[0];
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
        *used = 1;
        return c;
    } else if ((c & 0xe0) == 0xc0) {
        cp = c & 0x1f;
        len = 2;
    } else if ((c & 0xf0) == 0xe0) {
        cp = c & 0x0f;
        len = 3;
    } else if ((c & 0xf8) == 0xf0) {
        cp = c & 0x07;
        len = 4;
    } else {
        return -1;
    }
    if (len > n)
        return -1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff)
        return -1;
    *used = len;
    return (int32_t)cp;
}

bool base_utf8_valid(const char *s, size_t n)
{
    size_t i = 0, used;
    while (i < n) {
        if (utf8_decode((const uint8_t *)s + i, n - i, &used) < 0)
            return false;
        i += used;
    }
    return true;
}

int base_utf8_to_utf16(const char *s, size_t n, buf *out)
{
    size_t start = out->len, i = 0, used;
    int rc = buf_reserve(out, n * 2);
    if (rc)
        return rc;
    while (i < n) {
        int32_t cp = utf8_decode((const uint8_t *)s + i, n - i, &used);
        if (cp < 0) {
            out->len = start;
            return EILSEQ;
        }
        i += used;
        if (cp >= 0x10000) {
            cp -= 0x10000;
            rc = buf_add_u16(out, (uint16_t)(0xd800 + (cp >> 10)));
            if (!rc)
                rc = buf_add_u16(out, (uint16_t)(0xdc00 + (cp & 0x3ff)));
        } else {
            rc = buf_add_u16(out, (uint16_t)cp);
        }
        if (rc) {
            out->len = start;
            return rc;
        }
    }
    return 0;
}

uint32_t base_utf16_decode(const uint8_t *p, size_t nunits, size_t *used)
{
    uint16_t u = (uint16_t)(p[0] | p[1] << 8);
    *used = 1;
    if (u >= 0xd800 && u < 0xdc00 && nunits > 1) {
        uint16_t v = (uint16_t)(p[2] | p[3] << 8);
        if (v >= 0xdc00 && v < 0xe000) {
            *used = 2;
            return 0x10000 + (((uint32_t)u - 0xd800) << 10) + (v - 0xdc00);
        }
    }
    return u;
}

int base_utf16_to_utf8(const uint8_t *p, size_t nunits, buf *out)
{
    size_t start = out->len, i = 0, used;
    int rc = buf_reserve(out, nunits * 3);
    if (rc)
        return rc;
    while (i < nunits) {
        uint32_t cp = base_utf16_decode(p + 2 * i, nunits - i, &used);
        i += used;
        uint8_t tmp[4];
        size_t len;
        if (cp < 0x80) {
            tmp[0] = (uint8_t)cp;
            len = 1;
        } else if (cp < 0x800) {
            tmp[0] = (uint8_t)(0xc0 | cp >> 6);
            tmp[1] = (uint8_t)(0x80 | (cp & 0x3f));
            len = 2;
        } else if (cp < 0x10000) {
            tmp[0] = (uint8_t)(0xe0 | cp >> 12);
            tmp[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            tmp[2] = (uint8_t)(0x80 | (cp & 0x3f));
            len = 3;
        } else {
            tmp[0] = (uint8_t)(0xf0 | cp >> 18);
            tmp[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
            tmp[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            tmp[3] = (uint8_t)(0x80 | (cp & 0x3f));
            len = 4;
        }
        if ((rc = buf_add(out, tmp, len))) {
            out->len = start;
            return rc;
        }
    }
    return 0;
}

int base_cp1252_to_utf16(const uint8_t *s, size_t n, buf *out)
{
    size_t start = out->len;
    for (size_t i = 0; i < n; i++) {
        uint16_t u = s[i];
        if (u >= 0x80 && u < 0xa0 && cp1252_high[u - 0x80])
            u = cp1252_high[u - 0x80];
        int rc = buf_add_u16(out, u);
        if (rc) {
            out->len = start;
            return rc;
        }
    }
    return 0;
}

int base_utf16_to_cp1252(const uint8_t *p, size_t nunits, buf *out)
{
    size_t start = out->len;
    for (size_t i = 0; i < nunits; i++) {
        uint16_t u = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        uint8_t c = '?';
        if (u < 0x80 || (u >= 0xa0 && u < 0x100)) {
            c = (uint8_t)u;
        } else {
            for (int k = 0; k < 32; k++) {
                if (cp1252_high[k] == u || (cp1252_high[k] == 0 && u == 0x80 + k)) {
                    c = (uint8_t)(0x80 + k);
                    break;
                }
            }
        }
        int rc = buf_addc(out, c);
        if (rc) {
            out->len = start;
            return rc;
        }
    }
    return 0;
}
