/* mapiprop_fuzz.c - libFuzzer target for the stored form of MAPI properties: the first 4 bytes
 * (little-endian) are a tag, the rest its stored bytes. What decodes must encode again, and the
 * encoded bytes must decode to an equal value; formatting and copying must not fail. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mapi/mapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

static bool values_equal(uint32_t base, const mapi_prop *a, const mapi_prop *b)
{
    switch (base) {
    case PT_I2:
        return a->v.i == b->v.i;
    case PT_LONG:
        return a->v.l == b->v.l;
    case PT_ERROR:
        return a->v.err == b->v.err;
    case PT_BOOLEAN:
        return a->v.b == b->v.b;
    case PT_R4:
        return !memcmp(&a->v.flt, &b->v.flt, sizeof(float)); /* NaNs too: bit for bit */
    case PT_DOUBLE:
    case PT_APPTIME:
        return !memcmp(&a->v.dbl, &b->v.dbl, sizeof(double));
    case PT_I8:
    case PT_CURRENCY:
        return a->v.li == b->v.li;
    case PT_SYSTIME:
        return a->v.ft == b->v.ft;
    case PT_STRING8:
    case PT_UNICODE:
        return a->v.str && b->v.str && !strcmp(a->v.str, b->v.str);
    case PT_BINARY:
    case PT_CLSID:
        return a->v.bin.cb == b->v.bin.cb &&
               (!a->v.bin.cb || !memcmp(a->v.bin.lpb, b->v.bin.lpb, a->v.bin.cb));
    default:
        return false;
    }
}

static bool props_equal(const mapi_prop *a, const mapi_prop *b)
{
    if (a->tag != b->tag)
        return false;
    uint32_t t = PROP_TYPE(a->tag);
    if (!(t & MV_FLAG))
        return values_equal(t, a, b);
    if (a->v.mv.n != b->v.mv.n)
        return false;
    for (size_t i = 0; i < a->v.mv.n; i++)
        if (a->v.mv.v[i].tag != PROP_TAG(t & ~MV_FLAG, PROP_ID(a->tag)) ||
            !values_equal(t & ~MV_FLAG, &a->v.mv.v[i], &b->v.mv.v[i]))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 4)
        return 0;
    uint32_t tag =
        (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
    mapi_prop p, q, c;
    mapi_err e = mapi_prop_decode(tag, d + 4, n - 4, &p);
    if (e == MAPI_E_NOT_ENOUGH_MEMORY)
        return 0;
    if (e) {
        if (e != MAPI_E_CORRUPT_DATA && e != MAPI_E_INVALID_TYPE)
            abort();
        if (PROP_TYPE(p.tag) != PT_NULL)
            abort();
        return 0;
    }
    buf b = BUF_INIT, text = BUF_INIT;
    if (mapi_prop_encode(&p, &b) != S_OK)
        abort(); /* everything that decodes can be stored again */
    if (mapi_prop_decode(tag, b.data ? b.data : (const uint8_t *)"", b.len, &q) != S_OK)
        abort();
    if (!props_equal(&p, &q))
        abort();
    /* Booleans are the only lenient type: everything else is stored byte for byte. */
    if ((PROP_TYPE(tag) != PT_BOOLEAN) &&
        (b.len != n - 4 || (b.len && memcmp(b.data, d + 4, b.len))))
        abort();
    if (mapi_prop_copy(&p, &c) != S_OK || !props_equal(&p, &c))
        abort();
    if (mapi_prop_format(&p, &text) != S_OK) /* empty binary formats as nothing */
        abort();
    mapi_tag_name(tag);
    mapi_type_name(PROP_TYPE(tag));
    mapi_prop_clear(&p);
    mapi_prop_clear(&q);
    mapi_prop_clear(&c);
    buf_free(&b);
    buf_free(&text);
    return 0;
}
