/* fold.c - registry name folding: Windows compares names upper-cased by a fixed table, so
 * index keys hold the folded UTF-16 units, big-endian to make memcmp order code-unit order. */
#include "reg/store.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

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

int reg_foldkey_u16(const uint8_t *units, size_t n, uint8_t out[REG_FOLDKEY_MAX], size_t *outlen)
{
    size_t keep = n <= REG_FOLD_MAX ? n : REG_FOLD_PREFIX;
    for (size_t i = 0; i < keep; i++) {
        uint16_t u = reg_fold_unit((uint16_t)(units[2 * i] | units[2 * i + 1] << 8));
        out[2 * i] = (uint8_t)(u >> 8);
        out[2 * i + 1] = (uint8_t)u;
    }
    *outlen = keep * 2;
    if (n > REG_FOLD_MAX) {
        /* Too long for an LMDB key: keep a prefix for ordering and a digest for identity. */
        uint8_t *all = malloc(n * 2);
        if (!all)
            return ERROR_NOT_ENOUGH_MEMORY;
        for (size_t i = 0; i < n; i++) {
            uint16_t u = reg_fold_unit((uint16_t)(units[2 * i] | units[2 * i + 1] << 8));
            all[2 * i] = (uint8_t)(u >> 8);
            all[2 * i + 1] = (uint8_t)u;
        }
        SHA256(all, n * 2, out + *outlen);
        free(all);
        *outlen += SHA256_DIGEST_LENGTH;
    }
    return ERROR_SUCCESS;
}

int reg_foldkey(const char *name, size_t n, uint8_t out[REG_FOLDKEY_MAX], size_t *outlen,
                size_t *units)
{
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
