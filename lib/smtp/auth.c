/* auth.c - SASL responses as SMTP AUTH carries them (RFC 4954): PLAIN (RFC 4616) and LOGIN,
 * decoded strictly and within fixed bounds, and wiping of the secrets afterwards. */
#include "smtp/smtp.h"

#include <string.h>

#include "base/base.h"

/* The largest decoded response: PLAIN's three fields and their two NULs. */
#define AUTH_DECODED_MAX (2 * SMTP_AUTH_USER_MAX + SMTP_AUTH_PASS_MAX + 2)

void smtp_wipe(void *p, size_t n)
{
    /* Through a volatile pointer: a memset of memory about to die may be optimised away. */
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

/* auth_same_identity - authzid names the same account as authcid (no case: addresses and
 * aliases are compared without regard to case everywhere in the directory). */
static bool auth_same_identity(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++) {
        uint8_t x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z')
            x = (uint8_t)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (uint8_t)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

smtp_reply_id smtp_sasl_plain_decode(const char *s, size_t n, smtp_sasl_creds *out)
{
    memset(out, 0, sizeof *out);
    uint8_t d[AUTH_DECODED_MAX];
    size_t len;
    smtp_reply_id rc = SMTP_R_AUTH_DECODE;
    if (n > BASE_B64_LEN(sizeof d) || base_b64_decode(s, n, d, sizeof d, &len))
        goto out;
    const uint8_t *z1 = memchr(d, 0, len);
    const uint8_t *z2 = z1 ? memchr(z1 + 1, 0, len - (size_t)(z1 + 1 - d)) : NULL;
    if (!z2 || memchr(z2 + 1, 0, len - (size_t)(z2 + 1 - d)))
        goto out; /* not exactly three fields */
    size_t zlen = (size_t)(z1 - d);
    const uint8_t *user = z1 + 1;
    size_t ulen = (size_t)(z2 - user);
    const uint8_t *pass = z2 + 1;
    size_t plen = len - (size_t)(pass - d);
    if (!ulen || !plen || ulen > SMTP_AUTH_USER_MAX || plen > SMTP_AUTH_PASS_MAX)
        goto out;
    if (zlen && !auth_same_identity(d, zlen, user, ulen)) {
        rc = SMTP_R_AUTH_FAILED;
        goto out;
    }
    memcpy(out->user, user, ulen);
    memcpy(out->pass, pass, plen);
    out->passlen = plen;
    rc = SMTP_R_NONE;
out:
    smtp_wipe(d, sizeof d);
    if (rc != SMTP_R_NONE)
        smtp_wipe(out, sizeof *out);
    return rc;
}

smtp_reply_id smtp_sasl_text_decode(const char *s, size_t n, char *out, size_t size, size_t *len)
{
    *len = 0;
    if (size == 0)
        return SMTP_R_AUTH_DECODE;
    out[0] = '\0';
    size_t got;
    if (n > BASE_B64_LEN(size) || base_b64_decode(s, n, (uint8_t *)out, size - 1, &got) ||
        got == 0 || memchr(out, 0, got)) {
        smtp_wipe(out, size);
        return SMTP_R_AUTH_DECODE;
    }
    out[got] = '\0';
    *len = got;
    return SMTP_R_NONE;
}
