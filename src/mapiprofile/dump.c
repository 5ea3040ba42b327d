/* dump.c - mapiprofile dump: every section of a profile, labelled with what it is, and every
 * property decoded (tag name, type, value) in aligned columns. */
#include "mapiprofile.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One section as read, with the label it is printed with. */
typedef struct dump_section {
    mapi_uid uid;
    mapi_prop *props;
    size_t n;
    bool done; /* printed already */
} dump_section;

static const mapi_prop *find(const dump_section *s, uint32_t tag)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->props[i].tag == tag)
            return &s->props[i];
    return NULL;
}

/* owner_uid - the service a section belongs to (its PR_SERVICE_UID), if it names one. */
static bool owner_uid(const dump_section *s, mapi_uid *out)
{
    const mapi_prop *p = find(s, PR_SERVICE_UID);
    if (!p || p->v.bin.cb != sizeof out->ab)
        return false;
    memcpy(out->ab, p->v.bin.lpb, sizeof out->ab);
    return true;
}

static const dump_section *by_uid(const dump_section *all, size_t n, const mapi_uid *uid)
{
    for (size_t i = 0; i < n; i++)
        if (!memcmp(all[i].uid.ab, uid->ab, sizeof uid->ab))
            return &all[i];
    return NULL;
}

/* label - what a section is: one of the profile-wide sections, a service, a provider. */
static int label(const dump_section *all, size_t n, const dump_section *s, buf *out)
{
    static const struct {
        const mapi_uid *uid;
        const char *text;
    } fixed[] = {
        {&MAPI_UID_GLOBAL, "global profile section"},
        {&MAPI_UID_PROFILE_INSTANCE, "profile instance"},
        {&MAPI_UID_SERVICES, "message services"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (!memcmp(s->uid.ab, fixed[i].uid->ab, sizeof s->uid.ab))
            return buf_adds(out, fixed[i].text);
    mapi_uid svc;
    bool owned = owner_uid(s, &svc);
    const mapi_prop *name = find(s, PR_SERVICE_NAME), *disp = find(s, PR_DISPLAY_NAME),
                    *prov = find(s, PR_PROVIDER_DISPLAY);
    if (owned && name && !memcmp(svc.ab, s->uid.ab, sizeof svc.ab))
        return disp ? buf_printf(out, "service %s \"%s\"", name->v.str, disp->v.str)
                    : buf_printf(out, "service %s", name->v.str);
    int rc = 0;
    if (prov)
        rc = buf_printf(out, "provider \"%s\"", prov->v.str);
    else if (disp)
        rc = buf_printf(out, "\"%s\"", disp->v.str);
    else if (owned)
        rc = buf_adds(out, "section");
    const dump_section *o = owned ? by_uid(all, n, &svc) : NULL;
    const mapi_prop *oname = o ? find(o, PR_SERVICE_NAME) : NULL;
    if (!rc && oname)
        rc = buf_printf(out, " of service %s", oname->v.str);
    return rc;
}

/* tag_column - the tag's name, or the tag in hex (MAPI order: id, then type). */
static const char *tag_column(uint32_t tag, char tmp[16])
{
    const char *n = mapi_tag_name(tag);
    if (n)
        return n;
    snprintf(tmp, 16, "0x%08x", (unsigned)tag);
    return tmp;
}

static const char *type_column(uint32_t tag, char tmp[16])
{
    const char *t = mapi_type_name(PROP_TYPE(tag));
    if (t)
        return t;
    snprintf(tmp, 16, "0x%04x", (unsigned)PROP_TYPE(tag));
    return tmp;
}

static int print_section(const dump_section *all, size_t n, dump_section *s, int wtag, int wtype,
                         buf *out)
{
    char hex[33];
    mapi_uid_hex(&s->uid, hex);
    int rc = buf_printf(out, "\n[%s]", hex);
    buf l = BUF_INIT;
    if (!rc && !(rc = label(all, n, s, &l)) && l.len)
        rc = buf_printf(out, " %s", buf_cstr(&l));
    buf_free(&l);
    if (!rc)
        rc = buf_addc(out, '\n');
    for (size_t i = 0; i < s->n && !rc; i++) {
        char t1[16], t2[16];
        rc = buf_printf(out, "  %-*s  %-*s  ", wtag, tag_column(s->props[i].tag, t1), wtype,
                        type_column(s->props[i].tag, t2));
        if (!rc && mapi_prop_format(&s->props[i], out) != S_OK)
            rc = buf_adds(out, "(cannot be shown)");
        if (!rc)
            rc = buf_addc(out, '\n');
    }
    s->done = true;
    return rc;
}

/* load - every section of the profile with its properties. */
static mapi_err load(mapi_svcadmin *adm, dump_section **out, size_t *nout)
{
    mapi_uid *uids;
    size_t n;
    mapi_err e = mapi_section_list(adm, &uids, &n);
    if (e)
        return e;
    dump_section *all = calloc(n ? n : 1, sizeof *all);
    if (!all) {
        free(uids);
        return MAPI_E_NOT_ENOUGH_MEMORY;
    }
    size_t k = 0;
    for (size_t i = 0; i < n && !e; i++) {
        all[k].uid = uids[i];
        e = mapi_section_get_props(adm, &uids[i], &all[k].props, &all[k].n);
        if (e == MAPI_E_NOT_FOUND) /* gone since it was listed */
            e = S_OK;
        else if (!e)
            k++;
    }
    free(uids);
    if (e) {
        for (size_t i = 0; i < k; i++)
            mapi_props_free(all[i].props, all[i].n);
        free(all);
        return e;
    }
    *out = all;
    *nout = k;
    return S_OK;
}

/* next_owned - the not yet printed section of service svc that comes first: the lowest
 * PR_PROVIDER_ORDINAL, sections without one after the providers. */
static dump_section *next_owned(dump_section *all, size_t n, const mapi_uid *svc)
{
    dump_section *best = NULL;
    int64_t best_ord = 0;
    for (size_t i = 0; i < n; i++) {
        mapi_uid o;
        if (all[i].done || !owner_uid(&all[i], &o) || memcmp(o.ab, svc->ab, sizeof o.ab))
            continue;
        const mapi_prop *p = find(&all[i], PR_PROVIDER_ORDINAL);
        int64_t ord = p ? (int64_t)(uint32_t)p->v.l : INT64_MAX;
        if (!best || ord < best_ord) {
            best = &all[i];
            best_ord = ord;
        }
    }
    return best;
}

/* render - the dump text: the profile-wide sections first, then each service (in the
 * profile's order) followed by its providers and extra sections, then anything else. */
static int render(mapi_svcadmin *adm, const char *name, dump_section *all, size_t n, buf *out)
{
    int wtag = 0, wtype = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < all[i].n; j++) {
            char t[16];
            int a = (int)strlen(tag_column(all[i].props[j].tag, t));
            int b = (int)strlen(type_column(all[i].props[j].tag, t));
            wtag = a > wtag ? a : wtag;
            wtype = b > wtype ? b : wtype;
        }
    int rc = buf_printf(out, "Profile \"%s\"\n", name);
    const mapi_uid *fixed[] = {&MAPI_UID_GLOBAL, &MAPI_UID_PROFILE_INSTANCE, &MAPI_UID_SERVICES};
    for (size_t f = 0; f < 3 && !rc; f++) {
        dump_section *s = (dump_section *)by_uid(all, n, fixed[f]);
        if (s)
            rc = print_section(all, n, s, wtag, wtype, out);
    }
    mapi_service_row *svcs = NULL;
    size_t nsvcs = 0;
    if (!rc && mapi_service_table(adm, &svcs, &nsvcs) != S_OK)
        nsvcs = 0;
    for (size_t v = 0; v < nsvcs && !rc; v++) {
        dump_section *s = (dump_section *)by_uid(all, n, &svcs[v].uid);
        if (s && !s->done)
            rc = print_section(all, n, s, wtag, wtype, out);
        /* Its providers in their order (PR_PROVIDER_ORDINAL), then its other sections. */
        dump_section *next;
        while (!rc && (next = next_owned(all, n, &svcs[v].uid)))
            rc = print_section(all, n, next, wtag, wtype, out);
    }
    mapi_service_rows_free(svcs, nsvcs);
    for (size_t i = 0; i < n && !rc; i++)
        if (!all[i].done)
            rc = print_section(all, n, &all[i], wtag, wtype, out);
    return rc;
}

int mp_cmd_dump(mp_ctx *ctx, const mp_args *a)
{
    char *name = mp_canonical_name(ctx, a->pos[0]);
    if (!name)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "dump \"%s\"", a->pos[0]);
    mapi_svcadmin *adm;
    mapi_err e = mapi_admin_services(ctx->mapi, name, &adm);
    dump_section *all = NULL;
    size_t n = 0;
    if (!e) {
        e = load(adm, &all, &n);
        if (e)
            mapi_svcadmin_release(adm);
    }
    if (e) {
        int rc = mp_fail(e, MP_ABOUT_PROFILE, "dump \"%s\"", a->pos[0]);
        free(name);
        return rc;
    }
    buf out = BUF_INIT;
    int rc = render(adm, name, all, n, &out) ? MP_EXIT_FAIL : MP_EXIT_OK;
    if (rc)
        mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "dump \"%s\"", a->pos[0]);
    else if (out.len && fwrite(out.data, 1, out.len, stdout) != out.len)
        rc = MP_EXIT_FAIL;
    buf_free(&out);
    for (size_t i = 0; i < n; i++)
        mapi_props_free(all[i].props, all[i].n);
    free(all);
    mapi_svcadmin_release(adm);
    free(name);
    return rc;
}
