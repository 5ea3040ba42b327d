/* fold.c - registry name folding: Windows compares names upper-cased by a fixed table, so
 * index keys hold the folded UTF-16 units, big-endian to make memcmp order code-unit order. */
#include "reg/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DIGEST_LEN 32

uint16_t reg_fold_unit(uint16_t u)
{
    if (u < 0x80)
        return (u >= 'a' && u <= 'z') ? (uint16_t)(u - 32) : u;
    size_t lo = 0, hi = reg_fold_table_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (reg_fold_table[mid][0] == u)
            return reg_fold_table[mid][1];
        if (reg_fold_table[mid][0] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return u;
}

/* put_be - store a folded unit big-endian. */
static void put_be(uint8_t *p, uint16_t u)
{
    u = reg_fold_unit(u);
    p[0] = (uint8_t)(u >> 8);
    p[1] = (uint8_t)u;
}

/* finish_long - a name longer than REG_FOLD_MAX units: keep a prefix for ordering and a digest
 * of the whole folded name for identity, as an LMDB key cannot hold it all. */
static void finish_long(const uint8_t *folded, size_t n, uint8_t out[REG_FOLDKEY_MAX],
                        size_t *outlen)
{
    memcpy(out, folded, REG_FOLD_PREFIX * 2);
    base_sha256(folded, n * 2, out + REG_FOLD_PREFIX * 2);
    *outlen = REG_FOLD_PREFIX * 2 + DIGEST_LEN;
}

int reg_foldkey_u16(const uint8_t *units, size_t n, uint8_t out[REG_FOLDKEY_MAX], size_t *outlen)
{
    if (n <= REG_FOLD_MAX) {
        for (size_t i = 0; i < n; i++)
            put_be(out + 2 * i, (uint16_t)(units[2 * i] | units[2 * i + 1] << 8));
        *outlen = n * 2;
        return ERROR_SUCCESS;
    }
    uint8_t *all = malloc(n * 2);
    if (!all)
        return ERROR_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; i < n; i++)
        put_be(all + 2 * i, (uint16_t)(units[2 * i] | units[2 * i + 1] << 8));
    finish_long(all, n, out, outlen);
    free(all);
    return ERROR_SUCCESS;
}

int reg_foldkey(const char *name, size_t n, uint8_t out[REG_FOLDKEY_MAX], size_t *outlen,
                size_t *units)
{
    /* The common case, short ASCII, folds straight into out without an allocation. */
    if (n <= REG_FOLD_MAX) {
        size_t i = 0;
        while (i < n && (uint8_t)name[i] < 0x80) {
            put_be(out + 2 * i, (uint8_t)name[i]);
            i++;
        }
        if (i == n) {
            *units = n;
            *outlen = 2 * n;
            return ERROR_SUCCESS;
        }
    }
    buf w = BUF_INIT;
    int rc = base_utf8_to_utf16(name, n, &w);
    if (rc) {
        buf_free(&w);
        return rc == EILSEQ ? ERROR_INVALID_PARAMETER : ERROR_NOT_ENOUGH_MEMORY;
    }
    *units = w.len / 2;
    rc = reg_foldkey_u16(w.data, w.len / 2, out, outlen);
    buf_free(&w);
    return rc;
}
