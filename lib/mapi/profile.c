/* profile.c - MAPI profiles (IProfAdmin) and logon sessions (MAPILogonEx) on the registry.
 *
 * Every operation is one registry transaction, so no half-made profile is ever seen. A
 * session holds the profile's shared owner (named by its PR_SEARCH_KEY) for its life. A
 * profile deleted while in use moves to "Deleted Profiles" and is bound to that owner: it
 * vanishes for every reader the moment its last session ends, whatever ends it. */
#include "mapi/mapi_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct mapi_session {
    mapi_ctx *ctx;
    char *name;
    reg_key *profile;
    reg_owner *owner;
    uint8_t token[REG_TOKEN_SIZE];
};

mapi_err mapi_init_catalogue(reg_ctx *reg, mapisvc *catalogue, mapi_ctx **out)
{
    *out = NULL;
    mapi_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        if (catalogue)
            mapisvc_free(catalogue);
        return MAPI_E_NOT_ENOUGH_MEMORY;
    }
    ctx->reg = reg;
    ctx->svc = catalogue;
    mapi_err e = mapi_err_from_reg(reg_key_open_root(reg, REG_ROOT_HKCU, &ctx->hkcu));
    if (e) {
        mapi_fini(ctx);
        return e;
    }
    *out = ctx;
    return S_OK;
}

mapi_err mapi_init(reg_ctx *reg, const char *mapisvc_path, mapi_ctx **out)
{
    *out = NULL;
    const char *path = mapisvc_path ? mapisvc_path : mapisvc_default_path(reg_ctx_root_dir(reg));
    mapisvc *svc = NULL;
    mapi_err e = mapisvc_load(path, NULL, NULL, &svc);
    /* Without a catalogue MAPI still administers profiles; services need it. */
    if (e == MAPI_E_NOT_FOUND && !mapisvc_path)
        e = S_OK;
    if (e)
        return e;
    return mapi_init_catalogue(reg, svc, out);
}

void mapi_fini(mapi_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->owner)
        reg_owner_release(ctx->owner); /* bound profiles go now */
    reg_key_close(ctx->hkcu);
    if (ctx->svc)
        mapisvc_free(ctx->svc);
    free(ctx);
}

const mapisvc *mapi_catalogue(const mapi_ctx *ctx)
{
    return ctx->svc;
}

/* --- helpers -------------------------------------------------------------------------- */

static mapi_err profiles_key(mapi_ctx *ctx, bool create, reg_key **out)
{
    int rc = create ? reg_key_create(ctx->hkcu, MAPI_PROFILES_PATH, 0, NULL, out, NULL)
                    : reg_key_open(ctx->hkcu, MAPI_PROFILES_PATH, 0, out);
    return mapi_err_from_reg(rc);
}

static mapi_err begin(mapi_ctx *ctx)
{
    return mapi_err_from_reg(reg_txn_begin(ctx->hkcu));
}

static mapi_err end(mapi_ctx *ctx, mapi_err e)
{
    if (e) {
        reg_txn_abort(ctx->hkcu);
        return e;
    }
    return mapi_err_from_reg(reg_txn_commit(ctx->hkcu));
}

mapi_err mapi_profile_name_ok(const char *name)
{
    if (!name || !*name)
        return MAPI_E_INVALID_PARAMETER;
    size_t n = strlen(name);
    if (!base_utf8_valid(name, n) || name[0] == ' ' || name[n - 1] == ' ')
        return MAPI_E_INVALID_PARAMETER;
    size_t chars = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return MAPI_E_INVALID_PARAMETER;
        if ((c & 0xc0) != 0x80)
            chars++;
    }
    return chars <= MAPI_PROFILE_NAME_MAX ? S_OK : MAPI_E_INVALID_PARAMETER;
}

/* token_of - the profile's shared owner token: its PR_SEARCH_KEY, unique per profile. */
static mapi_err token_of(reg_key *profile, uint8_t token[REG_TOKEN_SIZE])
{
    reg_key *sec;
    mapi_err e = mapi_section_key(profile, &MAPI_UID_PROFILE_INSTANCE, false, &sec);
    if (e)
        return e == MAPI_E_NOT_FOUND ? MAPI_E_CORRUPT_STORE : e;
    mapi_prop p;
    e = mapi_section_read_prop(sec, PR_SEARCH_KEY, &p);
    reg_key_close(sec);
    if (e)
        return e == MAPI_E_NOT_FOUND ? MAPI_E_CORRUPT_STORE : e;
    if (p.v.bin.cb != REG_TOKEN_SIZE)
        e = MAPI_E_CORRUPT_STORE;
    else
        memcpy(token, p.v.bin.lpb, REG_TOKEN_SIZE);
    mapi_prop_clear(&p);
    return e;
}

/* in_use - whether some process has a session on the profile. */
static bool in_use(reg_key *profile)
{
    uint8_t token[REG_TOKEN_SIZE];
    bool held = false;
    if (token_of(profile, token) == S_OK)
        reg_owner_held(profile, token, &held);
    return held;
}

/* pending_rename - the new name a deferred rename gives `name`, if any (free it). */
static char *pending_rename(mapi_ctx *ctx, const char *name)
{
    reg_key *k;
    if (reg_key_open(ctx->hkcu, MAPI_RENAMES_PATH, 0, &k))
        return NULL;
    buf b = BUF_INIT;
    char *to = NULL;
    if (reg_value_get_sz(k, name, &b) == ERROR_SUCCESS)
        to = buf_detach(&b, NULL);
    buf_free(&b);
    reg_key_close(k);
    return to;
}

struct rename_scan {
    mapi_ctx *ctx;
    reg_key *renames;
    char *reserved; /* with a name to look for: set when some pending rename targets it */
    const char *look;
    buf todo; /* old names whose rename can happen now, NUL-separated */
};

static int scan_rename(void *arg, const char *from, uint32_t type, const uint8_t *data, size_t len)
{
    (void)type;
    (void)data;
    (void)len;
    struct rename_scan *rs = arg;
    buf to = BUF_INIT;
    if (reg_value_get_sz(rs->renames, from, &to) == ERROR_SUCCESS && rs->look &&
        !strcasecmp((char *)to.data, rs->look))
        rs->reserved = (char *)rs->look;
    buf_free(&to);
    if (!rs->look)
        return buf_add(&rs->todo, from, strlen(from) + 1) ? ERROR_NOT_ENOUGH_MEMORY : 0;
    return 0;
}

/* name_reserved - a pending rename will give a profile this name. */
static bool name_reserved(mapi_ctx *ctx, const char *name)
{
    struct rename_scan rs = {ctx, NULL, NULL, name, BUF_INIT};
    if (reg_key_open(ctx->hkcu, MAPI_RENAMES_PATH, 0, &rs.renames))
        return false;
    reg_key_enum_values(rs.renames, scan_rename, &rs);
    reg_key_close(rs.renames);
    return rs.reserved != NULL;
}

/* apply_renames - carry out the deferred renames whose profiles are no longer in use (or
 * gone). Called before every administrative operation and at logoff, so a rename waits only
 * until somebody next looks, also when the last session was killed. */
static void apply_renames(mapi_ctx *ctx)
{
    struct rename_scan rs = {ctx, NULL, NULL, NULL, BUF_INIT};
    if (reg_key_open(ctx->hkcu, MAPI_RENAMES_PATH, 0, &rs.renames))
        return;
    reg_key_enum_values(rs.renames, scan_rename, &rs);
    for (size_t off = 0; off < rs.todo.len; off += strlen((char *)rs.todo.data + off) + 1) {
        const char *from = (char *)rs.todo.data + off;
        reg_key *profiles, *p;
        if (profiles_key(ctx, false, &profiles))
            continue;
        if (reg_key_open(profiles, from, 0, &p) == ERROR_SUCCESS) {
            bool busy = in_use(p);
            reg_key_close(p);
            if (busy) {
                reg_key_close(profiles);
                continue;
            }
        }
        buf to = BUF_INIT;
        if (begin(ctx) == S_OK) {
            mapi_err e = S_OK;
            if (reg_value_get_sz(rs.renames, from, &to) == ERROR_SUCCESS) {
                int rc = reg_key_rename(profiles, from, (char *)to.data);
                if (rc == ERROR_SUCCESS) {
                    buf def = BUF_INIT;
                    if (reg_value_get_sz(profiles, MAPI_DEFAULT_VALUE, &def) == 0 &&
                        !strcasecmp((char *)def.data, from))
                        reg_value_set_sz(profiles, MAPI_DEFAULT_VALUE, REG_SZ, (char *)to.data);
                    buf_free(&def);
                }
                /* A profile that is gone, or a target taken meanwhile: the rename is void. */
                e = mapi_err_from_reg(reg_value_delete(rs.renames, from));
            }
            end(ctx, e);
        }
        buf_free(&to);
        reg_key_close(profiles);
    }
    buf_free(&rs.todo);
    reg_key_close(rs.renames);
}

/* open_profile - a live profile by name (not one awaiting deletion). */
static mapi_err open_profile(mapi_ctx *ctx, const char *name, reg_key **out)
{
    *out = NULL;
    if (!name || !*name || strchr(name, '\\'))
        return MAPI_E_NOT_FOUND;
    reg_key *profiles;
    mapi_err e = profiles_key(ctx, false, &profiles);
    if (e)
        return e;
    e = mapi_err_from_reg(reg_key_open(profiles, name, 0, out));
    reg_key_close(profiles);
    return e;
}

/* --- IProfAdmin ----------------------------------------------------------------------- */

struct table_acc {
    mapi_ctx *ctx;
    reg_key *profiles;
    char *def;
    mapi_profile_row *rows;
    size_t n, cap;
};

static int table_add(void *arg, const char *name)
{
    struct table_acc *t = arg;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        mapi_profile_row *r = realloc(t->rows, cap * sizeof *r);
        if (!r)
            return ERROR_NOT_ENOUGH_MEMORY;
        t->rows = r;
        t->cap = cap;
    }
    mapi_profile_row *row = &t->rows[t->n];
    if (!(row->name = strdup(name)))
        return ERROR_NOT_ENOUGH_MEMORY;
    row->is_default = t->def && !strcasecmp(t->def, name);
    reg_key *p;
    row->in_use = false;
    if (reg_key_open(t->profiles, name, 0, &p) == ERROR_SUCCESS) {
        row->in_use = in_use(p);
        reg_key_close(p);
    }
    t->n++;
    return 0;
}

mapi_err mapi_profile_table(mapi_ctx *ctx, mapi_profile_row **rows, size_t *n)
{
    *rows = NULL;
    *n = 0;
    apply_renames(ctx);
    struct table_acc t = {ctx, NULL, NULL, NULL, 0, 0};
    mapi_err e = profiles_key(ctx, false, &t.profiles);
    if (e)
        return e == MAPI_E_NOT_FOUND ? S_OK : e;
    buf def = BUF_INIT;
    if (reg_value_get_sz(t.profiles, MAPI_DEFAULT_VALUE, &def) == ERROR_SUCCESS)
        t.def = (char *)def.data;
    e = mapi_err_from_reg(reg_key_enum_subkeys(t.profiles, table_add, &t));
    buf_free(&def);
    reg_key_close(t.profiles);
    if (e) {
        mapi_profile_rows_free(t.rows, t.n);
        return e;
    }
    *rows = t.rows;
    *n = t.n;
    return S_OK;
}

void mapi_profile_rows_free(mapi_profile_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(rows[i].name);
    free(rows);
}

mapi_err mapi_profile_exists(mapi_ctx *ctx, const char *name)
{
    reg_key *p;
    mapi_err e = open_profile(ctx, name, &p);
    reg_key_close(p);
    return e;
}

/* set_identity - what makes a profile itself: a new PR_SEARCH_KEY in the instance section
 * (unique per profile, also when a name is reused) and its name in the global section. */
static mapi_err set_identity(reg_key *p, const char *name)
{
    mapi_uid token;
    reg_key *sec = NULL;
    mapi_err e = mapi_new_uid(&token);
    if (!e)
        e = mapi_section_key(p, &MAPI_UID_PROFILE_INSTANCE, true, &sec);
    if (!e) {
        mapi_prop sk = {.tag = PR_SEARCH_KEY};
        sk.v.bin.cb = 16;
        sk.v.bin.lpb = token.ab;
        e = mapi_section_write(sec, &sk, 1);
    }
    reg_key_close(sec);
    sec = NULL;
    if (!e)
        e = mapi_section_key(p, &MAPI_UID_GLOBAL, true, &sec);
    if (!e) {
        mapi_prop pn = {.tag = PR_PROFILE_NAME};
        pn.v.str = (char *)name;
        e = mapi_section_write(sec, &pn, 1);
        /* A name CP1252 cannot spell is kept only as the key name. */
        if (e == MAPI_E_BAD_CHARWIDTH)
            e = S_OK;
    }
    reg_key_close(sec);
    return e;
}

/* make_profile - the keys and sections of a new, empty profile (inside a transaction). */
static mapi_err make_profile(mapi_ctx *ctx, reg_key *profiles, const char *name, bool bound,
                             reg_key **out)
{
    unsigned disp;
    reg_key *p;
    if (name_reserved(ctx, name))
        return MAPI_E_NO_ACCESS;
    int rc = ERROR_SUCCESS;
    if (bound && !ctx->owner)
        rc = reg_owner_new(ctx->hkcu, &ctx->owner);
    if (!rc)
        rc = reg_key_create(profiles, name, bound ? REG_OPTION_OWNER_BOUND : 0,
                            bound ? ctx->owner : NULL, &p, &disp);
    if (rc)
        return mapi_err_from_reg(rc);
    if (disp != REG_CREATED_NEW_KEY) {
        reg_key_close(p);
        return MAPI_E_NO_ACCESS;
    }
    reg_key *sec = NULL;
    mapi_err e = set_identity(p, name);
    if (!e)
        e = mapi_section_key(p, &MAPI_UID_SERVICES, true, &sec);
    if (!e) {
        mapi_prop sv = {.tag = PR_SERVICES};
        sv.v.bin.cb = 0;
        sv.v.bin.lpb = (uint8_t *)"";
        e = mapi_section_write(sec, &sv, 1);
    }
    reg_key_close(sec);
    if (e) {
        reg_key_close(p);
        return e;
    }
    *out = p;
    return S_OK;
}

mapi_err mapi_profile_create(mapi_ctx *ctx, const char *name, unsigned flags)
{
    mapi_err e = mapi_profile_name_ok(name);
    if (e)
        return e;
    if (flags & ~(MAPI_DEFAULT_SERVICES | MAPI_PROFILE_BOUND))
        return MAPI_E_UNKNOWN_FLAGS;
    apply_renames(ctx);
    if ((e = begin(ctx)))
        return e;
    reg_key *profiles = NULL, *p = NULL;
    e = profiles_key(ctx, true, &profiles);
    if (!e)
        e = make_profile(ctx, profiles, name, flags & MAPI_PROFILE_BOUND, &p);
    if (!e && (flags & MAPI_DEFAULT_SERVICES) && ctx->svc) {
        const char *const *names;
        size_t n = mapisvc_default_services(ctx->svc, &names);
        for (size_t i = 0; i < n && !e; i++)
            e = mapi_service_create_in(ctx, p, names[i], NULL, NULL);
    }
    reg_key_close(p);
    reg_key_close(profiles);
    return end(ctx, e);
}

mapi_err mapi_profile_delete(mapi_ctx *ctx, const char *name)
{
    apply_renames(ctx);
    mapi_err e = begin(ctx);
    if (e)
        return e;
    reg_key *profiles = NULL, *p = NULL, *deleted = NULL;
    e = profiles_key(ctx, false, &profiles);
    if (!e)
        e = open_profile(ctx, name, &p);
    uint8_t token[REG_TOKEN_SIZE];
    if (!e && in_use(p) && token_of(p, token) == S_OK) {
        /* In use: out of the way at once (the name is free again, the table no longer shows
         * it), kept until its last session ends. */
        char hex[33], moved[MAPI_PROFILE_NAME_MAX * 4 + 40];
        mapi_uid_hex((const mapi_uid *)token, hex);
        snprintf(moved, sizeof moved, "%s %s", name, hex);
        e = mapi_err_from_reg(
            reg_key_create(ctx->hkcu, MAPI_DELETED_PATH, 0, NULL, &deleted, NULL));
        if (!e)
            e = mapi_err_from_reg(reg_key_move(profiles, name, deleted, moved));
        /* A bound profile already goes with its process at the latest. */
        int rc = e ? ERROR_SUCCESS : reg_key_bind(p, token);
        if (!e && rc != ERROR_ALREADY_EXISTS)
            e = mapi_err_from_reg(rc);
    } else if (!e) {
        e = mapi_err_from_reg(reg_key_delete_tree(profiles, name));
    }
    if (!e) {
        buf def = BUF_INIT;
        if (reg_value_get_sz(profiles, MAPI_DEFAULT_VALUE, &def) == ERROR_SUCCESS &&
            !strcasecmp((char *)def.data, name))
            e = mapi_err_from_reg(reg_value_delete(profiles, MAPI_DEFAULT_VALUE));
        buf_free(&def);
    }
    /* A rename waiting for this profile is void now. */
    reg_key *renames;
    if (!e && reg_key_open(ctx->hkcu, MAPI_RENAMES_PATH, 0, &renames) == ERROR_SUCCESS) {
        reg_value_delete(renames, name);
        reg_key_close(renames);
    }
    reg_key_close(deleted);
    reg_key_close(p);
    reg_key_close(profiles);
    return end(ctx, e);
}

mapi_err mapi_profile_copy(mapi_ctx *ctx, const char *from, const char *to)
{
    mapi_err e = mapi_profile_name_ok(to);
    if (e)
        return e;
    apply_renames(ctx);
    if ((e = begin(ctx)))
        return e;
    reg_key *profiles = NULL, *src = NULL, *dst = NULL;
    e = profiles_key(ctx, false, &profiles);
    if (!e)
        e = open_profile(ctx, from, &src);
    unsigned disp = 0;
    if (!e && name_reserved(ctx, to))
        e = MAPI_E_NO_ACCESS;
    if (!e)
        e = mapi_err_from_reg(reg_key_create(profiles, to, 0, NULL, &dst, &disp));
    if (!e && disp != REG_CREATED_NEW_KEY)
        e = MAPI_E_NO_ACCESS;
    if (!e)
        e = mapi_err_from_reg(reg_key_copy_tree(src, dst, true));
    /* The copy is another profile: its own PR_SEARCH_KEY and name. */
    if (!e)
        e = set_identity(dst, to);
    reg_key_close(dst);
    reg_key_close(src);
    reg_key_close(profiles);
    return end(ctx, e);
}

mapi_err mapi_profile_rename(mapi_ctx *ctx, const char *from, const char *to)
{
    mapi_err e = mapi_profile_name_ok(to);
    if (e)
        return e;
    apply_renames(ctx);
    if ((e = begin(ctx)))
        return e;
    reg_key *profiles = NULL, *p = NULL, *other = NULL;
    e = profiles_key(ctx, false, &profiles);
    if (!e)
        e = open_profile(ctx, from, &p);
    /* The target must be free, unless it only differs from the source in case. */
    if (!e && strcasecmp(from, to) &&
        (reg_key_open(profiles, to, 0, &other) == ERROR_SUCCESS || name_reserved(ctx, to)))
        e = MAPI_E_NO_ACCESS;
    char *pending = e ? NULL : pending_rename(ctx, from);
    if (pending) {
        free(pending);
        e = MAPI_E_NO_ACCESS; /* one rename at a time */
    }
    if (!e && in_use(p)) {
        reg_key *renames;
        e = mapi_err_from_reg(
            reg_key_create(ctx->hkcu, MAPI_RENAMES_PATH, 0, NULL, &renames, NULL));
        if (!e) {
            e = mapi_err_from_reg(reg_value_set_sz(renames, from, REG_SZ, to));
            reg_key_close(renames);
        }
    } else if (!e) {
        e = mapi_err_from_reg(reg_key_rename(profiles, from, to));
        buf def = BUF_INIT;
        if (!e && reg_value_get_sz(profiles, MAPI_DEFAULT_VALUE, &def) == ERROR_SUCCESS &&
            !strcasecmp((char *)def.data, from))
            e = mapi_err_from_reg(reg_value_set_sz(profiles, MAPI_DEFAULT_VALUE, REG_SZ, to));
        buf_free(&def);
    }
    reg_key_close(other);
    reg_key_close(p);
    reg_key_close(profiles);
    return end(ctx, e);
}

mapi_err mapi_profile_set_default(mapi_ctx *ctx, const char *name)
{
    apply_renames(ctx);
    mapi_err e = begin(ctx);
    if (e)
        return e;
    reg_key *profiles = NULL, *p = NULL;
    if (!name) {
        e = profiles_key(ctx, false, &profiles);
        if (!e) {
            int rc = reg_value_delete(profiles, MAPI_DEFAULT_VALUE);
            e = rc == ERROR_FILE_NOT_FOUND ? S_OK : mapi_err_from_reg(rc);
        } else if (e == MAPI_E_NOT_FOUND) {
            e = S_OK;
        }
    } else {
        e = profiles_key(ctx, false, &profiles);
        if (!e)
            e = open_profile(ctx, name, &p);
        if (!e)
            e = mapi_err_from_reg(reg_value_set_sz(profiles, MAPI_DEFAULT_VALUE, REG_SZ, name));
    }
    reg_key_close(p);
    reg_key_close(profiles);
    return end(ctx, e);
}

mapi_err mapi_profile_get_default(mapi_ctx *ctx, char **name)
{
    *name = NULL;
    apply_renames(ctx);
    reg_key *profiles, *p;
    mapi_err e = profiles_key(ctx, false, &profiles);
    if (e)
        return e;
    buf def = BUF_INIT;
    e = mapi_err_from_reg(reg_value_get_sz(profiles, MAPI_DEFAULT_VALUE, &def));
    if (!e && !def.len)
        e = MAPI_E_NOT_FOUND;
    /* A default naming a profile that is gone is no default. */
    if (!e && (e = mapi_err_from_reg(reg_key_open(profiles, (char *)def.data, 0, &p))) == S_OK)
        reg_key_close(p);
    if (!e)
        *name = buf_detach(&def, NULL);
    buf_free(&def);
    reg_key_close(profiles);
    return e ? e : (*name ? S_OK : MAPI_E_NOT_ENOUGH_MEMORY);
}

/* --- administration and sessions ------------------------------------------------------ */

static mapi_err svcadmin_new(mapi_ctx *ctx, reg_key *profile, mapi_svcadmin **out)
{
    mapi_svcadmin *a = calloc(1, sizeof *a);
    if (!a)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    a->ctx = ctx;
    a->profile = profile;
    *out = a;
    return S_OK;
}

mapi_err mapi_admin_services(mapi_ctx *ctx, const char *profile, mapi_svcadmin **out)
{
    *out = NULL;
    apply_renames(ctx);
    reg_key *p;
    mapi_err e = open_profile(ctx, profile, &p);
    if (e)
        return e == MAPI_E_NOT_FOUND ? MAPI_E_LOGON_FAILED : e;
    e = svcadmin_new(ctx, p, out);
    if (e)
        reg_key_close(p);
    return e;
}

void mapi_svcadmin_release(mapi_svcadmin *adm)
{
    if (!adm)
        return;
    reg_key_close(adm->profile);
    free(adm);
}

mapi_err mapi_logon(mapi_ctx *ctx, const char *profile, unsigned flags, mapi_session **out)
{
    *out = NULL;
    if (flags & MAPI_LOGON_UI)
        return MAPI_E_NO_SUPPORT; /* no dialogs here: the profile must be named */
    mapi_session *s = calloc(1, sizeof *s);
    if (!s)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    s->ctx = ctx;
    mapi_err e = open_profile(ctx, profile, &s->profile);
    if (!e)
        e = token_of(s->profile, s->token);
    if (!e)
        e = mapi_err_from_reg(reg_owner_join(s->profile, s->token, &s->owner));
    /* Joined first, checked after: a delete that raced with us either saw us in use (and
     * bound the profile to us) or removed it, which the second look finds. */
    reg_key *again = NULL;
    if (!e && open_profile(ctx, profile, &again) != S_OK)
        e = MAPI_E_LOGON_FAILED;
    reg_key_close(again);
    if (!e && !(s->name = strdup(profile)))
        e = MAPI_E_NOT_ENOUGH_MEMORY;
    if (e) {
        if (s->owner)
            reg_owner_release(s->owner);
        reg_key_close(s->profile);
        free(s);
        return e == MAPI_E_NOT_FOUND ? MAPI_E_LOGON_FAILED : e;
    }
    *out = s;
    return S_OK;
}

const char *mapi_session_profile(const mapi_session *s)
{
    return s->name;
}

mapi_err mapi_session_admin(mapi_session *s, mapi_svcadmin **out)
{
    *out = NULL;
    reg_key *p;
    mapi_err e = mapi_err_from_reg(reg_key_open(s->profile, NULL, 0, &p));
    if (e)
        return e == MAPI_E_NOT_FOUND ? MAPI_E_END_OF_SESSION : e;
    e = svcadmin_new(s->ctx, p, out);
    if (e)
        reg_key_close(p);
    return e;
}

mapi_err mapi_logoff(mapi_session *s)
{
    if (!s)
        return MAPI_E_INVALID_PARAMETER;
    mapi_ctx *ctx = s->ctx;
    /* Releasing the owner purges a profile awaiting deletion if this was its last
     * session; a deferred rename can happen now too. */
    reg_owner_release(s->owner);
    reg_key_close(s->profile);
    free(s->name);
    free(s);
    apply_renames(ctx);
    return S_OK;
}
