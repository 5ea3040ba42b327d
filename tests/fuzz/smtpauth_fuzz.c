/* smtpauth_fuzz.c - libFuzzer target for the decoders of SMTP AUTH's responses: the input as
 * PLAIN's response (smtp_sasl_plain_decode), as one of LOGIN's answers (smtp_sasl_text_decode,
 * in the sizes the session gives it and a small one) and as base64 (base_b64_decode, into a
 * buffer that fits and into one that may not). Each result is checked against what the input
 * decodes to in full: a decode that succeeds gives fields without NUL within their limits and
 * re-encodes to exactly the input (the decoder is strict: one text per value), a failure
 * leaves its output wiped, and encoding the input as bytes decodes back to it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "smtp/smtp.h"
#include "fuzz.h"

/* PLAIN's largest response: two identities, a password and the two NULs between them. */
#define FUZZ_PLAIN_MAX (2 * SMTP_AUTH_USER_MAX + SMTP_AUTH_PASS_MAX + 2)

/* zeroed - p[0..n) is all zero bytes (what a wipe leaves). */
static bool zeroed(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* canonical - encoding v[0..len) gives exactly s[0..n). */
static bool canonical(const uint8_t *v, size_t len, const char *s, size_t n)
{
    size_t size = BASE_B64_LEN(len) + 1;
    char *e = malloc(size);
    CHECK(e != NULL);
    size_t got = base_b64_encode(v, len, e, size);
    bool same = got == n && !memcmp(e, s, n);
    free(e);
    return same;
}

/* same_identity - a and b are the same account name, ASCII case aside (auth.c's rule). */
static bool same_identity(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++) {
        uint8_t x = a[i], y = b[i];
        x = x >= 'A' && x <= 'Z' ? (uint8_t)(x + 32) : x;
        y = y >= 'A' && y <= 'Z' ? (uint8_t)(y + 32) : y;
        if (x != y)
            return false;
    }
    return true;
}

/* check_plain - PLAIN's decoder against the rule applied to the full decoding v[0..len) (ok:
 * s was base64 at all). */
static void check_plain(const char *s, size_t n, bool ok, const uint8_t *v, size_t len)
{
    smtp_sasl_creds cr;
    memset(&cr, 0xa5, sizeof cr);
    smtp_reply_id rc = smtp_sasl_plain_decode(s, n, &cr);
    CHECK(rc == SMTP_R_NONE || rc == SMTP_R_AUTH_DECODE || rc == SMTP_R_AUTH_FAILED);
    /* The rule: [authzid] NUL authcid NUL passwd, exactly two NULs, both fields non-empty
     * and within their limits; an authzid other than the authcid is refused. */
    smtp_reply_id want = SMTP_R_AUTH_DECODE;
    const uint8_t *z1 = ok && len <= FUZZ_PLAIN_MAX ? memchr(v, 0, len) : NULL;
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, len - (size_t)(z1 + 1 - v)) : NULL;
    size_t zlen = 0, ulen = 0, plen = 0;
    if (z2 && !memchr(z2 + 1, 0, len - (size_t)(z2 + 1 - v))) {
        zlen = (size_t)(z1 - v);
        ulen = (size_t)(z2 - z1 - 1);
        plen = len - (size_t)(z2 + 1 - v);
        if (ulen && plen && ulen <= SMTP_AUTH_USER_MAX && plen <= SMTP_AUTH_PASS_MAX)
            want = !zlen || same_identity(v, zlen, z1 + 1, ulen) ? SMTP_R_NONE : SMTP_R_AUTH_FAILED;
    }
    CHECK(rc == want);
    if (rc != SMTP_R_NONE) {
        CHECK(zeroed(&cr, sizeof cr)); /* no half of a password left behind */
        return;
    }
    /* The fields, NUL-terminated, no NUL inside, within their limits, as sent. */
    CHECK(strnlen(cr.user, sizeof cr.user) == ulen && ulen <= SMTP_AUTH_USER_MAX);
    CHECK(!memcmp(cr.user, z1 + 1, ulen));
    CHECK(cr.passlen == plen && strnlen(cr.pass, sizeof cr.pass) == plen);
    CHECK(!memcmp(cr.pass, z2 + 1, plen));
    CHECK(canonical(v, len, s, n));
    smtp_wipe(&cr, sizeof cr);
    CHECK(zeroed(&cr, sizeof cr));
}

/* check_text - one of LOGIN's answers decoded into size bytes. */
static void check_text(const char *s, size_t n, bool ok, const uint8_t *v, size_t len, size_t size)
{
    char *out = malloc(size); /* exactly size: ASan sees a byte written past it */
    CHECK(out != NULL);
    memset(out, 0xa5, size);
    size_t got = 12345;
    smtp_reply_id rc = smtp_sasl_text_decode(s, n, out, size, &got);
    bool want = ok && len >= 1 && len < size && !memchr(v, 0, len);
    CHECK(rc == (want ? SMTP_R_NONE : SMTP_R_AUTH_DECODE));
    if (rc == SMTP_R_NONE) {
        CHECK(got == len && strnlen(out, size) == len && !memcmp(out, v, len));
        CHECK(canonical((const uint8_t *)out, got, s, n));
    } else {
        CHECK(got == 0 && zeroed(out, size));
    }
    free(out);
}

/* check_small - base64 into size bytes: what fits is the full decoding; what does not is
 * E2BIG; text that is not base64 is EILSEQ (or E2BIG, when the buffer runs out first). */
static void check_small(const char *s, size_t n, bool ok, const uint8_t *v, size_t len, size_t size)
{
    uint8_t *out = malloc(size ? size : 1);
    CHECK(out != NULL);
    size_t got = 12345;
    int rc = base_b64_decode(s, n, out, size, &got);
    if (ok && len <= size)
        CHECK(rc == 0 && got == len && !memcmp(out, v, len));
    else if (ok)
        CHECK(rc == E2BIG && got == 0);
    else
        CHECK((rc == EILSEQ || rc == E2BIG) && got == 0);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    /* The full decoding: at most 3 bytes for every 4 characters. */
    size_t cap = n / 4 * 3 + 3, len = 12345;
    uint8_t *v = malloc(cap);
    CHECK(v != NULL);
    int rc = base_b64_decode(s, n, v, cap, &len);
    CHECK(rc == 0 || rc == EILSEQ);
    bool ok = rc == 0;
    if (ok)
        CHECK(len <= n / 4 * 3 && canonical(v, len, s, n)); /* one text per value */
    else
        CHECK(len == 0);

    check_plain(s, n, ok, v, len);
    check_text(s, n, ok, v, len, SMTP_AUTH_USER_MAX + 1);
    check_text(s, n, ok, v, len, SMTP_AUTH_PASS_MAX + 1);
    check_text(s, n, ok, v, len, 1 + (n ? d[0] % 8 : 0));
    check_small(s, n, ok, v, len, n ? d[n - 1] % 16 : 0);
    free(v);

    /* Any bytes encode to text that decodes back to them. */
    size_t esize = BASE_B64_LEN(n) + 1, back = 12345;
    char *e = malloc(esize);
    uint8_t *b = malloc(n ? n : 1);
    CHECK(e != NULL && b != NULL);
    size_t elen = base_b64_encode(d, n, e, esize);
    CHECK(elen == BASE_B64_LEN(n) && e[elen] == '\0');
    CHECK(base_b64_encode(d, n, e, esize - 1) == (size_t)-1 && e[0] == '\0'); /* too small */
    elen = base_b64_encode(d, n, e, esize);
    CHECK(base_b64_decode(e, elen, b, n, &back) == 0 && back == n && !memcmp(b, d, n));
    free(e);
    free(b);
    return 0;
}
