/* password.c - the hashing of the mailboxes' passwords (SMTP AUTH): yescrypt hashes made and
 * checked with libcrypt (libxcrypt), as Debian's own passwords are; pure functions, no state. */
#include "store/store.h"
#include "store/password.h"

#include <crypt.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(DIR_MAX_PASSWORD < CRYPT_MAX_PASSPHRASE_SIZE, "libcrypt refuses longer passphrases");

#define PW_PREFIX "$y$" /* yescrypt */
#define PW_PREFIX_LEN 3
/* PW_DUMMY_RBYTES - the fixed "random" bytes of the setting an unknown account is hashed
 * with: any bytes give the same work, and fixed ones need neither entropy nor state. */
#define PW_DUMMY_RBYTES "IMS-no-account.."
#define PW_DUMMY_NRBYTES 16
/* PW_DUMMY_SETTING - the same as a constant, should libcrypt refuse to make one (it would then
 * refuse real hashes too: verifying still costs about the same). */
#define PW_DUMMY_SETTING "$y$j9T$7poIhsqPh2qMXxKRiFb9i."

/* pw_work - what one hashing needs, on the heap: libcrypt's 32 KiB scratch space and the
 * NUL-terminated copy of the password it wants. */
typedef struct pw_work {
    struct crypt_data cd;
    char phrase[DIR_MAX_PASSWORD + 1];
} pw_work;

static pw_work *work_new(void)
{
    return calloc(1, sizeof(pw_work));
}

/* work_free - wipe (the password and what was derived from it) and free. */
static void work_free(pw_work *w)
{
    if (!w)
        return;
    explicit_bzero(w, sizeof *w);
    free(w);
}

bool dir_password_valid(const char *password, size_t len)
{
    return password && len >= 1 && len <= DIR_MAX_PASSWORD && !memchr(password, '\0', len);
}

/* crypt_ok - a result of crypt_rn that is a hash, not a failure ("*0", "*1" or NULL). */
static bool crypt_ok(const char *r)
{
    return r && r[0] && r[0] != '*';
}

int dir_pw_hash(const char *password, char *out, size_t size)
{
    if (size)
        out[0] = '\0';
    size_t len = password ? strlen(password) : 0;
    if (!dir_password_valid(password, len))
        return EINVAL;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    errno = 0;
    /* count 0: libcrypt's default cost; rbytes NULL: libcrypt takes the salt from the
     * kernel's random source. */
    if (!crypt_gensalt_rn(PW_PREFIX, 0, NULL, 0, setting, (int)sizeof setting))
        return errno ? errno : EIO;
    pw_work *w = work_new();
    if (!w)
        return ENOMEM;
    memcpy(w->phrase, password, len + 1);
    errno = 0;
    const char *r = crypt_rn(w->phrase, setting, &w->cd, sizeof w->cd);
    int rc = 0;
    if (!crypt_ok(r) || strncmp(r, PW_PREFIX, PW_PREFIX_LEN))
        rc = errno ? errno : EIO;
    else if (strlen(r) >= size || strlen(r) > DIR_MAX_HASH)
        rc = ERANGE;
    else
        memcpy(out, r, strlen(r) + 1);
    work_free(w);
    return rc;
}

/* ct_equal - a and b (NUL-terminated) are the same string, in time that depends only on the
 * length of a (the hash just computed), never on where they differ. */
static bool ct_equal(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strnlen(b, na + 1);
    unsigned char diff = (unsigned char)(na != nb);
    for (size_t i = 0; i < na; i++)
        diff |= (unsigned char)(a[i] ^ (i < nb ? b[i] : 0));
    return diff == 0;
}

/* dummy_setting - the setting an account without a hash is hashed with: libcrypt's default
 * yescrypt cost, as the real hashes have, over fixed salt bytes. */
static const char *dummy_setting(char *out, size_t size)
{
    if (crypt_gensalt_rn(PW_PREFIX, 0, PW_DUMMY_RBYTES, PW_DUMMY_NRBYTES, out, (int)size))
        return out;
    return PW_DUMMY_SETTING;
}

bool dir_password_verify(const char *hash, const char *password, size_t len)
{
    bool real = hash && !strncmp(hash, PW_PREFIX, PW_PREFIX_LEN) &&
                strnlen(hash, DIR_MAX_HASH + 1) <= DIR_MAX_HASH;
    bool valid = dir_password_valid(password, len);
    pw_work *w = work_new();
    if (!w)
        return false;
    char dummy[CRYPT_GENSALT_OUTPUT_SIZE];
    /* The same work whatever is wrong: a hash of the same cost is computed in every case. */
    const char *setting = real && valid ? hash : dummy_setting(dummy, sizeof dummy);
    if (valid)
        memcpy(w->phrase, password, len);
    const char *r = crypt_rn(w->phrase, setting, &w->cd, sizeof w->cd);
    bool ok = crypt_ok(r) && ct_equal(r, setting) && real && valid;
    work_free(w);
    return ok;
}
