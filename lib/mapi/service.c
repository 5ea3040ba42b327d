/* service.c - message services and profile sections (IMsgServiceAdmin): sections are subkeys
 * of the profile named by MAPIUID, properties are REG_BINARY values named by tag, and the
 * sections are linked by UID lists as Windows links them. */
#include "mapi/mapi_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Resource flags (mapidefs.h, mapispi.h) the profile layer acts on. */
#define SERVICE_SINGLE_COPY 0x00000002u

mapi_err mapi_new_uid(mapi_uid *uid)
{
    return base_random(uid->ab, sizeof uid->ab) ? MAPI_E_CALL_FAILED : S_OK;
}

mapi_err mapi_section_key(reg_key *profile, const mapi_uid *uid, bool create, reg_key **out)
{
    char hex[33];
    mapi_uid_hex(uid, hex);
    int rc = create ? reg_key_create(profile, hex, 0, NULL, out, NULL)
                    : reg_key_open(profile, hex, 0, out);
    /* The sections of a bound (volatile) profile are volatile like it. */
    if (rc == ERROR_CHILD_MUST_BE_VOLATILE)
        rc = reg_key_create(profile, hex, REG_OPTION_VOLATILE, NULL, out, NULL);
    return mapi_err_from_reg(rc);
}

mapi_err mapi_section_write(reg_key *sec, const mapi_prop *props, size_t n)
{
    buf b = BUF_INIT;
    mapi_err e = S_OK;
    for (size_t i = 0; i < n && e == S_OK; i++) {
        b.len = 0;
        if ((e = mapi_prop_encode(&props[i], &b)))
            break;
        char name[9];
        mapi_tag_value_name(props[i].tag, name);
        e = mapi_err_from_reg(reg_value_set(sec, name, REG_BINARY, b.data, b.len));
    }
    buf_free(&b);
    return e;
}

mapi_err mapi_section_read_prop(reg_key *sec, uint32_t tag, mapi_prop *out)
{
    char name[9];
    mapi_tag_value_name(tag, name);
    uint32_t type;
    buf b = BUF_INIT;
    int rc = reg_value_get(sec, name, &type, &b);
    mapi_err e = mapi_err_from_reg(rc);
    if (e == S_OK)
        e = type == REG_BINARY ? mapi_prop_decode(tag, b.data ? b.data : (uint8_t *)"", b.len, out)
                               : MAPI_E_CORRUPT_DATA;
    buf_free(&b);
    return e;
}

/* uid lists: PR_SERVICES, PR_STORE_PROVIDERS, ... are concatenated 16-byte uids. */
static mapi_err list_get(reg_key *sec, uint32_t tag, buf *out)
{
    mapi_prop p;
    out->len = 0;
    mapi_err e = mapi_section_read_prop(sec, tag, &p);
    if (e == MAPI_E_NOT_FOUND)
        return S_OK;
    if (e)
        return e;
    if (p.v.bin.cb % 16)
        e = MAPI_E_CORRUPT_DATA;
    else if (buf_add(out, p.v.bin.lpb, p.v.bin.cb))
        e = MAPI_E_NOT_ENOUGH_MEMORY;
    mapi_prop_clear(&p);
    return e;
}

static mapi_err list_put(reg_key *sec, uint32_t tag, const buf *list)
{
    mapi_prop p = {.tag = tag};
    p.v.bin.cb = list->len;
    p.v.bin.lpb = list->data ? list->data : (uint8_t *)"";
    return mapi_section_write(sec, &p, 1);
}

static mapi_err list_add(reg_key *profile, const mapi_uid *sec_uid, uint32_t tag,
                         const mapi_uid *uid)
{
    reg_key *sec;
    mapi_err e = mapi_section_key(profile, sec_uid, true, &sec);
    if (e)
        return e;
    buf l = BUF_INIT;
    if (!(e = list_get(sec, tag, &l)))
        e = buf_add(&l, uid->ab, 16) ? MAPI_E_NOT_ENOUGH_MEMORY : list_put(sec, tag, &l);
    buf_free(&l);
    reg_key_close(sec);
    return e;
}

/* list_remove - drop uid from the list tag of section sec_uid, if both are there. */
static mapi_err list_remove(reg_key *profile, const mapi_uid *sec_uid, uint32_t tag,
                            const mapi_uid *uid)
{
    reg_key *sec;
    mapi_err e = mapi_section_key(profile, sec_uid, false, &sec);
    if (e)
        return e == MAPI_E_NOT_FOUND ? S_OK : e;
    buf l = BUF_INIT;
    if (!(e = list_get(sec, tag, &l))) {
        size_t w = 0;
        for (size_t r = 0; r < l.len; r += 16)
            if (memcmp(l.data + r, uid->ab, 16))
                memmove(l.data + (w += 16) - 16, l.data + r, 16);
        if (w != l.len) {
            l.len = w;
            e = list_put(sec, tag, &l);
        }
    }
    buf_free(&l);
    reg_key_close(sec);
    return e;
}

static bool list_has(const buf *l, const mapi_uid *uid)
{
    for (size_t r = 0; r + 16 <= l->len; r += 16)
        if (!memcmp(l->data + r, uid->ab, 16))
            return true;
    return false;
}

static mapi_err services_list(reg_key *profile, buf *out)
{
    reg_key *sec;
    out->len = 0;
    mapi_err e = mapi_section_key(profile, &MAPI_UID_SERVICES, false, &sec);
    if (e)
        return e == MAPI_E_NOT_FOUND ? S_OK : e;
    e = list_get(sec, PR_SERVICES, out);
    reg_key_close(sec);
    return e;
}

/* provider_list_tag - which global list a provider of this resource type belongs to. */
static uint32_t provider_list_tag(int32_t type)
{
    switch (type) {
    case MAPI_STORE_PROVIDER:
        return PR_STORE_PROVIDERS;
    case MAPI_AB_PROVIDER:
    case MAPI_AB:
        return PR_AB_PROVIDERS;
    case MAPI_TRANSPORT_PROVIDER:
        return PR_TRANSPORT_PROVIDERS;
    default:
        return 0;
    }
}

static const mapi_prop *find_prop(const mapisvc_section *s, uint32_t tag)
{
    for (size_t i = 0; i < s->nprops; i++)
        if (s->props[i].tag == tag)
            return &s->props[i];
    return NULL;
}

static mapi_err str_prop(reg_key *sec, uint32_t tag, const char *s)
{
    mapi_prop p = {.tag = tag};
    p.v.str = (char *)s;
    return mapi_section_write(sec, &p, 1);
}

static mapi_err bin_prop(reg_key *sec, uint32_t tag, const void *data, size_t n)
{
    mapi_prop p = {.tag = tag};
    p.v.bin.cb = n;
    p.v.bin.lpb = (uint8_t *)data;
    return mapi_section_write(sec, &p, 1);
}

static mapi_err long_prop(reg_key *sec, uint32_t tag, int32_t v)
{
    mapi_prop p = {.tag = tag};
    p.v.l = v;
    return mapi_section_write(sec, &p, 1);
}

mapi_err mapi_service_create_in(mapi_ctx *ctx, reg_key *profile, const char *service,
                                const char *display, mapi_uid *uid_out)
{
    const mapisvc_section *ss = ctx->svc ? mapisvc_section_get(ctx->svc, service) : NULL;
    const char *catalogue_display = ctx->svc ? mapisvc_display(ctx->svc, service) : NULL;
    if (!ss || !catalogue_display)
        return MAPI_E_NOT_FOUND;
    const mapi_prop *flags = find_prop(ss, PR_RESOURCE_FLAGS);
    buf services = BUF_INIT;
    mapi_err e = services_list(profile, &services);
    /* A single-copy service may appear once in a profile. */
    for (size_t r = 0;
         !e && flags && ((uint32_t)flags->v.l & SERVICE_SINGLE_COPY) && r + 16 <= services.len;
         r += 16) {
        reg_key *sec;
        mapi_prop name;
        if (mapi_section_key(profile, (const mapi_uid *)(services.data + r), false, &sec))
            continue;
        if (mapi_section_read_prop(sec, PR_SERVICE_NAME, &name) == S_OK) {
            if (!strcasecmp(name.v.str, service))
                e = MAPI_E_NO_ACCESS;
            mapi_prop_clear(&name);
        }
        reg_key_close(sec);
    }
    buf_free(&services);
    if (e)
        return e;
    mapi_uid uid;
    reg_key *sec = NULL;
    if ((e = mapi_new_uid(&uid)) || (e = mapi_section_key(profile, &uid, true, &sec)))
        return e;
    /* The service section: the catalogue's entries, then the links. */
    e = mapi_section_write(sec, ss->props, ss->nprops);
    if (!e)
        e = str_prop(sec, PR_SERVICE_NAME, ss->name);
    if (!e)
        e = str_prop(sec, PR_DISPLAY_NAME, display && *display ? display : catalogue_display);
    if (!e)
        e = bin_prop(sec, PR_SERVICE_UID, uid.ab, 16);
    /* Extra sections ("Sections=") get their own uids, listed in PR_SERVICE_EXTRA_UIDS. */
    buf extra = BUF_INIT;
    for (size_t i = 0; !e && i < ss->nsections; i++) {
        const mapisvc_section *xs = mapisvc_section_get(ctx->svc, ss->sections[i]);
        mapi_uid xu;
        reg_key *xk;
        if (!xs)
            continue;
        if ((e = mapi_new_uid(&xu)) || (e = mapi_section_key(profile, &xu, true, &xk)))
            break;
        e = mapi_section_write(xk, xs->props, xs->nprops);
        if (!e)
            e = bin_prop(xk, PR_SERVICE_UID, uid.ab, 16);
        reg_key_close(xk);
        if (!e && buf_add(&extra, xu.ab, 16))
            e = MAPI_E_NOT_ENOUGH_MEMORY;
    }
    if (!e && extra.len)
        e = bin_prop(sec, PR_SERVICE_EXTRA_UIDS, extra.data, extra.len);
    buf_free(&extra);
    reg_key_close(sec);
    /* One section per provider, linked back to the service and listed in the global
     * section by kind, in the catalogue's order. */
    for (size_t i = 0; !e && i < ss->nproviders; i++) {
        const mapisvc_section *ps = mapisvc_section_get(ctx->svc, ss->providers[i]);
        if (!ps)
            continue;
        mapi_uid pu;
        reg_key *pk;
        if ((e = mapi_new_uid(&pu)) || (e = mapi_section_key(profile, &pu, true, &pk)))
            break;
        e = mapi_section_write(pk, ps->props, ps->nprops);
        if (!e)
            e = bin_prop(pk, PR_SERVICE_UID, uid.ab, 16);
        if (!e)
            e = bin_prop(pk, PR_PROVIDER_UID, pu.ab, 16);
        if (!e)
            e = long_prop(pk, PR_PROVIDER_ORDINAL, (int32_t)i);
        reg_key_close(pk);
        const mapi_prop *rt = find_prop(ps, PR_RESOURCE_TYPE);
        uint32_t list = rt ? provider_list_tag(rt->v.l) : 0;
        if (!e && list)
            e = list_add(profile, &MAPI_UID_GLOBAL, list, &pu);
        /* Windows keeps the address books in the services section too. */
        if (!e && list == PR_AB_PROVIDERS)
            e = list_add(profile, &MAPI_UID_SERVICES, list, &pu);
    }
    if (!e)
        e = list_add(profile, &MAPI_UID_SERVICES, PR_SERVICES, &uid);
    if (!e && uid_out)
        *uid_out = uid;
    return e;
}

/* --- the administration object -------------------------------------------------------- */

/* in_txn - run fn inside one registry transaction on the profile's hive. */
static mapi_err begin(mapi_svcadmin *adm)
{
    return mapi_err_from_reg(reg_txn_begin(adm->profile));
}

static mapi_err end(mapi_svcadmin *adm, mapi_err e)
{
    if (e) {
        reg_txn_abort(adm->profile);
        return e;
    }
    return mapi_err_from_reg(reg_txn_commit(adm->profile));
}

/* profile_live - the profile the administration object holds still exists. */
static mapi_err profile_live(mapi_svcadmin *adm)
{
    reg_key_info info;
    int rc = reg_key_query_info(adm->profile, &info);
    return rc ? MAPI_E_NOT_FOUND : S_OK;
}

mapi_err mapi_service_create(mapi_svcadmin *adm, const char *service, const char *display,
                             mapi_uid *uid)
{
    if (!adm || !service)
        return MAPI_E_INVALID_PARAMETER;
    mapi_err e = profile_live(adm);
    if (e || (e = begin(adm)))
        return e;
    return end(adm, mapi_service_create_in(adm->ctx, adm->profile, service, display, uid));
}

/* service_section - open the section of a service uid listed in PR_SERVICES. */
static mapi_err service_section(mapi_svcadmin *adm, const mapi_uid *uid, reg_key **sec)
{
    buf services = BUF_INIT;
    mapi_err e = services_list(adm->profile, &services);
    if (!e && !list_has(&services, uid))
        e = MAPI_E_NOT_FOUND;
    buf_free(&services);
    if (!e)
        e = mapi_section_key(adm->profile, uid, false, sec);
    return e;
}

/* The configuration entry points of the services we know, as MAPI calls a service's entry
 * (PR_SERVICE_ENTRY_NAME) with MSG_SERVICE_CONFIGURE. Exchange's keeps the home server and
 * the mailbox in the profile's global section. */
static mapi_err ems_configure(reg_key *profile, reg_key *svc, const mapi_prop *props, size_t n)
{
    (void)svc;
    for (size_t i = 0; i < n; i++) {
        uint32_t t = props[i].tag;
        if ((t == PR_PROFILE_HOME_SERVER || t == PR_PROFILE_USER || t == PR_PROFILE_MAILBOX) &&
            (!props[i].v.str || !*props[i].v.str))
            return MAPI_E_INVALID_PARAMETER;
    }
    reg_key *global;
    mapi_err e = mapi_section_key(profile, &MAPI_UID_GLOBAL, true, &global);
    if (e)
        return e;
    for (size_t i = 0; i < n && !e; i++)
        if (PROP_ID(props[i].tag) >= 0x6600 && PROP_ID(props[i].tag) <= 0x66ff)
            e = mapi_section_write(global, &props[i], 1);
    if (!e)
        e = long_prop(global, PR_PROFILE_VERSION, 0x501);
    reg_key_close(global);
    return e;
}

mapi_err mapi_service_configure(mapi_svcadmin *adm, const mapi_uid *uid, const mapi_prop *props,
                                size_t n)
{
    if (!adm || !uid || (n && !props))
        return MAPI_E_INVALID_PARAMETER;
    mapi_err e = profile_live(adm);
    if (e || (e = begin(adm)))
        return e;
    reg_key *sec = NULL;
    e = service_section(adm, uid, &sec);
    mapi_prop entry = {0};
    if (!e)
        e = mapi_section_write(sec, props, n);
    if (!e && mapi_section_read_prop(sec, PR_SERVICE_ENTRY_NAME, &entry) == S_OK) {
        if (!strcasecmp(entry.v.str, "EMSCfg"))
            e = ems_configure(adm->profile, sec, props, n);
        mapi_prop_clear(&entry);
    }
    reg_key_close(sec);
    return end(adm, e);
}

/* section_service_uid - the PR_SERVICE_UID of a section, if it has one. */
static bool section_service_uid(reg_key *profile, const char *name, mapi_uid *out)
{
    mapi_uid u;
    reg_key *k;
    mapi_prop p;
    if (mapi_uid_parse(name, &u) || mapi_section_key(profile, &u, false, &k))
        return false;
    bool ok = mapi_section_read_prop(k, PR_SERVICE_UID, &p) == S_OK;
    if (ok) {
        ok = p.v.bin.cb == 16;
        if (ok)
            memcpy(out->ab, p.v.bin.lpb, 16);
        mapi_prop_clear(&p);
    }
    reg_key_close(k);
    return ok;
}

struct names {
    char **v;
    size_t n, cap;
};

static int names_add(void *arg, const char *name)
{
    struct names *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->v, cap * sizeof *p);
        if (!p)
            return ERROR_NOT_ENOUGH_MEMORY;
        l->v = p;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(name)))
        return ERROR_NOT_ENOUGH_MEMORY;
    l->n++;
    return 0;
}

static void names_free(struct names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

mapi_err mapi_service_delete(mapi_svcadmin *adm, const mapi_uid *uid)
{
    if (!adm || !uid)
        return MAPI_E_INVALID_PARAMETER;
    mapi_err e = profile_live(adm);
    if (e || (e = begin(adm)))
        return e;
    reg_key *sec = NULL;
    e = service_section(adm, uid, &sec);
    reg_key_close(sec);
    /* Every section that points back at the service goes with it: its providers and its
     * extra sections. */
    struct names all = {0};
    if (!e)
        e = mapi_err_from_reg(reg_key_enum_subkeys(adm->profile, names_add, &all));
    static const uint32_t lists[] = {PR_STORE_PROVIDERS, PR_AB_PROVIDERS, PR_TRANSPORT_PROVIDERS};
    for (size_t i = 0; i < all.n && !e; i++) {
        mapi_uid owner, self;
        if (!section_service_uid(adm->profile, all.v[i], &owner) || memcmp(owner.ab, uid->ab, 16) ||
            mapi_uid_parse(all.v[i], &self))
            continue;
        for (size_t j = 0; j < 3 && !e; j++) {
            e = list_remove(adm->profile, &MAPI_UID_GLOBAL, lists[j], &self);
            if (!e)
                e = list_remove(adm->profile, &MAPI_UID_SERVICES, lists[j], &self);
        }
        if (!e)
            e = mapi_err_from_reg(reg_key_delete_tree(adm->profile, all.v[i]));
    }
    names_free(&all);
    if (!e)
        e = list_remove(adm->profile, &MAPI_UID_SERVICES, PR_SERVICES, uid);
    return end(adm, e);
}

mapi_err mapi_service_table(mapi_svcadmin *adm, mapi_service_row **rows, size_t *n)
{
    *rows = NULL;
    *n = 0;
    if (!adm)
        return MAPI_E_INVALID_PARAMETER;
    buf services = BUF_INIT;
    mapi_err e = services_list(adm->profile, &services);
    size_t count = services.len / 16;
    mapi_service_row *r = count ? calloc(count, sizeof *r) : NULL;
    if (!e && count && !r)
        e = MAPI_E_NOT_ENOUGH_MEMORY;
    size_t k = 0;
    for (size_t i = 0; !e && i < count; i++) {
        reg_key *sec;
        const mapi_uid *u = (const mapi_uid *)(services.data + 16 * i);
        if (mapi_section_key(adm->profile, u, false, &sec))
            continue; /* a dangling uid: not a service any more */
        mapi_prop name = {0}, disp = {0};
        r[k].uid = *u;
        if (mapi_section_read_prop(sec, PR_SERVICE_NAME, &name) == S_OK) {
            r[k].name = name.v.str;
            name.v.str = NULL;
        }
        if (mapi_section_read_prop(sec, PR_DISPLAY_NAME, &disp) == S_OK) {
            r[k].display = disp.v.str;
            disp.v.str = NULL;
        }
        if (!r[k].name)
            r[k].name = strdup("");
        if (!r[k].display)
            r[k].display = strdup("");
        reg_key_close(sec);
        if (!r[k].name || !r[k].display)
            e = MAPI_E_NOT_ENOUGH_MEMORY;
        k++;
    }
    buf_free(&services);
    if (e) {
        mapi_service_rows_free(r, k);
        return e;
    }
    *rows = r;
    *n = k;
    return S_OK;
}

void mapi_service_rows_free(mapi_service_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(rows[i].name);
        free(rows[i].display);
    }
    free(rows);
}

/* --- sections ------------------------------------------------------------------------- */

struct props_acc {
    mapi_prop *v;
    size_t n, cap;
    mapi_err e;
};

static int collect_prop(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    struct props_acc *a = arg;
    uint32_t tag;
    /* Values that are not properties (not named by a tag, not binary) are not ours. */
    if (type != REG_BINARY || mapi_tag_from_value_name(name, &tag) != S_OK)
        return 0;
    if (a->n == a->cap) {
        if (a->cap >= MAPI_MAX_SECTION_PROPS) {
            a->e = MAPI_E_NOT_ENOUGH_RESOURCES;
            return -1;
        }
        size_t cap = a->cap ? a->cap * 2 : 16;
        mapi_prop *p = realloc(a->v, cap * sizeof *p);
        if (!p) {
            a->e = MAPI_E_NOT_ENOUGH_MEMORY;
            return -1;
        }
        a->v = p;
        a->cap = cap;
    }
    mapi_err e = mapi_prop_decode(tag, data ? data : (const uint8_t *)"", len, &a->v[a->n]);
    if (e == MAPI_E_NOT_ENOUGH_MEMORY) {
        a->e = e;
        return -1;
    }
    if (e == S_OK)
        a->n++;
    return 0;
}

mapi_err mapi_section_get_props(mapi_svcadmin *adm, const mapi_uid *uid, mapi_prop **props,
                                size_t *n)
{
    *props = NULL;
    *n = 0;
    if (!adm || !uid)
        return MAPI_E_INVALID_PARAMETER;
    reg_key *sec;
    mapi_err e = mapi_section_key(adm->profile, uid, false, &sec);
    if (e)
        return e;
    struct props_acc a = {0};
    int rc = reg_key_enum_values(sec, collect_prop, &a);
    reg_key_close(sec);
    if (a.e || (rc && rc != -1)) {
        mapi_props_free(a.v, a.n);
        return a.e ? a.e : mapi_err_from_reg(rc);
    }
    *props = a.v;
    *n = a.n;
    return S_OK;
}

mapi_err mapi_section_get_prop(mapi_svcadmin *adm, const mapi_uid *uid, uint32_t tag,
                               mapi_prop *out)
{
    if (!adm || !uid)
        return MAPI_E_INVALID_PARAMETER;
    reg_key *sec;
    mapi_err e = mapi_section_key(adm->profile, uid, false, &sec);
    if (e)
        return e;
    e = mapi_section_read_prop(sec, tag, out);
    reg_key_close(sec);
    return e;
}

mapi_err mapi_section_set_props(mapi_svcadmin *adm, const mapi_uid *uid, const mapi_prop *props,
                                size_t n)
{
    if (!adm || !uid || (n && !props))
        return MAPI_E_INVALID_PARAMETER;
    mapi_err e = profile_live(adm);
    if (e || (e = begin(adm)))
        return e;
    reg_key *sec = NULL;
    e = mapi_section_key(adm->profile, uid, true, &sec);
    if (!e)
        e = mapi_section_write(sec, props, n);
    reg_key_close(sec);
    return end(adm, e);
}

static int uid_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

mapi_err mapi_section_list(mapi_svcadmin *adm, mapi_uid **uids, size_t *n)
{
    *uids = NULL;
    *n = 0;
    if (!adm)
        return MAPI_E_INVALID_PARAMETER;
    struct names all = {0};
    mapi_err e = mapi_err_from_reg(reg_key_enum_subkeys(adm->profile, names_add, &all));
    mapi_uid *u = all.n ? calloc(all.n, sizeof *u) : NULL;
    size_t k = 0;
    if (!e && all.n && !u)
        e = MAPI_E_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; !e && i < all.n; i++)
        if (mapi_uid_parse(all.v[i], &u[k]) == S_OK)
            k++;
    names_free(&all);
    if (e) {
        free(u);
        return e;
    }
    if (k)
        qsort(u, k, sizeof *u, uid_cmp);
    *uids = u;
    *n = k;
    return S_OK;
}
