/* b64.c - base64 (RFC 4648 section 4) for SASL: a bounded encoder and a strict decoder that
 * gives each valid text exactly one meaning. */
#include "base.h"

#include <errno.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base_b64_encode(const void *p, size_t n, char *out, size_t size)
{
    const uint8_t *in = p;
    if (n > (SIZE_MAX - 3) / 4 * 3 || size < BASE_B64_LEN(n) + 1) {
        if (size)
            out[0] = '\0';
        return (size_t)-1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* b64_value - the 6-bit value of c, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base_b64_decode(const char *s, size_t n, uint8_t *out, size_t size, size_t *outlen)
{
    *outlen = 0;
    if (n % 4)
        return EILSEQ;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        size_t pad = 0;
        for (size_t j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)s[i + j];
            if (c == '=' && last && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad) /* a character after '=' */
                return EILSEQ;
            if ((v[j] = b64_value(c)) < 0)
                return EILSEQ;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Bits the padding leaves unused must be zero: "QQ==" is "A", "QR==" is not base64. */
        if ((pad == 2 && (w & 0xffff)) || (pad == 1 && (w & 0xff)))
            return EILSEQ;
        size_t k = 3 - pad;
        if (size - o < k)
            return E2BIG;
        out[o++] = (uint8_t)(w >> 16);
        if (k > 1)
            out[o++] = (uint8_t)(w >> 8);
        if (k > 2)
            out[o++] = (uint8_t)w;
    }
    *outlen = o;
    return 0;
}
