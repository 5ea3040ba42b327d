/* mapisvc_fuzz.c - libFuzzer target for the MAPISVC.INF reader: any text parses or is refused
 * cleanly; every diagnostic has a line within the text; every property read can be stored in
 * a profile and decodes back to an equal value; every listed name is a C string. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mapi/mapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

typedef struct fz {
    unsigned lines; /* lines in the input, an upper bound for diagnostics */
} fz;

static void fz_diag(void *arg, unsigned line, const char *msg)
{
    const fz *f = arg;
    if (line > f->lines || !msg || !*msg)
        abort();
}

/* fz_check_prop - stored and read back, the value's encoding is stable. */
static void fz_check_prop(const mapi_prop *p)
{
    buf a = BUF_INIT, b = BUF_INIT, t = BUF_INIT;
    mapi_prop q;
    if (mapi_prop_encode(p, &a) != S_OK)
        abort();
    if (mapi_prop_decode(p->tag, a.data ? a.data : (const uint8_t *)"", a.len, &q) != S_OK)
        abort();
    if (mapi_prop_encode(&q, &b) != S_OK || a.len != b.len ||
        (a.len && memcmp(a.data, b.data, a.len)))
        abort();
    if (mapi_prop_format(p, &t) != S_OK)
        abort();
    mapi_prop_clear(&q);
    buf_free(&a);
    buf_free(&b);
    buf_free(&t);
}

static void fz_check_section(const mapisvc_section *s)
{
    if (!s->name || (s->nprops && !s->props))
        abort();
    for (size_t i = 0; i < s->nprops; i++)
        fz_check_prop(&s->props[i]);
    for (size_t i = 0; i < s->nproviders; i++)
        if (!s->providers[i] || !*s->providers[i])
            abort();
    for (size_t i = 0; i < s->nsections; i++)
        if (!s->sections[i] || !*s->sections[i])
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    fz f = {1};
    for (size_t i = 0; i < n; i++)
        f.lines += d[i] == '\n';
    mapisvc *svc;
    mapi_err e = mapisvc_parse((const char *)d, n, fz_diag, &f, &svc);
    if (e) {
        if ((e != MAPI_E_CORRUPT_DATA && e != MAPI_E_NOT_ENOUGH_MEMORY) || svc)
            abort();
        return 0;
    }
    const char *const *names;
    size_t ns = mapisvc_services(svc, &names);
    for (size_t i = 0; i < ns; i++) {
        if (!mapisvc_display(svc, names[i]))
            abort();
        const mapisvc_section *s = mapisvc_section_get(svc, names[i]);
        if (!s)
            continue;
        fz_check_section(s);
        for (size_t k = 0; k < s->nproviders; k++) {
            const mapisvc_section *p = mapisvc_section_get(svc, s->providers[k]);
            if (p)
                fz_check_section(p);
        }
        for (size_t k = 0; k < s->nsections; k++) {
            const mapisvc_section *x = mapisvc_section_get(svc, s->sections[k]);
            if (x)
                fz_check_section(x);
        }
    }
    size_t nd = mapisvc_default_services(svc, &names);
    for (size_t i = 0; i < nd; i++)
        if (!names[i])
            abort();
    mapisvc_free(svc);
    return 0;
}
