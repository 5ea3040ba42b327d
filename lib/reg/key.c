/* key.c - keys: records, path walking, create, open, enumerate, delete, rename, copy; the
 * HKU and HKCR views; the change journal that notification reads. */
#include "reg/store.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void reg_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t reg_rd_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int reg_keyrec_get(reg_hive *h, MDB_txn *txn, uint64_t id, struct keyrec *rec, MDB_val *raw)
{
    uint8_t k[8];
    reg_be64(k, id);
    MDB_val mk = {8, k}, mv;
    int rc = mdb_get(txn, h->db_keys, &mk, &mv);
    if (rc)
        return rc == MDB_NOTFOUND ? ERROR_FILE_NOT_FOUND : reg_mdb_err(rc);
    if (mv.mv_size < sizeof *rec)
        return ERROR_BADDB;
    memcpy(rec, mv.mv_data, sizeof *rec);
    if (mv.mv_size < sizeof *rec + 2u * (rec->name_units + rec->class_units))
        return ERROR_BADDB;
    if (raw)
        *raw = mv;
    return ERROR_SUCCESS;
}

bool reg_keyrec_live(reg_hive *h, const struct keyrec *rec)
{
    if ((rec->flags & KF_VOLATILE) && memcmp(rec->boot, h->ctx->boot, 16))
        return false;
    if ((rec->flags & KF_OWNED) && !reg_owner_alive(h, rec->token, rec->flags & KF_SHARED))
        return false;
    return true;
}

/* key_live - as reg_keyrec_live, and asks for a purge when the key is dead. */
static bool key_live(reg_hive *h, const struct keyrec *rec)
{
    if (reg_keyrec_live(h, rec))
        return true;
    h->purge_wanted = true;
    return false;
}

static int keyrec_put(reg_hive *h, MDB_txn *txn, uint64_t id, const struct keyrec *rec,
                      const uint8_t *name, const uint8_t *klass)
{
    size_t n = sizeof *rec + 2u * (rec->name_units + rec->class_units);
    uint8_t k[8];
    reg_be64(k, id);
    MDB_val mk = {8, k}, mv = {n, NULL};
    int rc = mdb_put(txn, h->db_keys, &mk, &mv, MDB_RESERVE);
    if (rc)
        return reg_mdb_err(rc);
    uint8_t *p = mv.mv_data;
    memcpy(p, rec, sizeof *rec);
    if (rec->name_units)
        memcpy(p + sizeof *rec, name, 2u * rec->name_units);
    if (rec->class_units)
        memcpy(p + sizeof *rec + 2u * rec->name_units, klass, 2u * rec->class_units);
    return ERROR_SUCCESS;
}

/* keyrec_touch - set a key's last write time, keeping the rest of its record. */
static int keyrec_touch(reg_hive *h, MDB_txn *txn, uint64_t id, uint32_t next_seq)
{
    struct keyrec rec;
    MDB_val raw;
    int rc = reg_keyrec_get(h, txn, id, &rec, &raw);
    if (rc)
        return rc;
    uint8_t *copy = malloc(raw.mv_size);
    if (!copy)
        return ERROR_NOT_ENOUGH_MEMORY;
    memcpy(copy, raw.mv_data, raw.mv_size);
    rec.last_write = base_filetime_now();
    if (next_seq)
        rec.next_seq = next_seq;
    rc = keyrec_put(h, txn, id, &rec, copy + sizeof rec, copy + sizeof rec + 2u * rec.name_units);
    free(copy);
    return rc;
}

static int meta_u64(reg_hive *h, MDB_txn *txn, const char *name, uint64_t *v, bool bump)
{
    MDB_val k = {strlen(name), (void *)name}, mv;
    int rc = mdb_get(txn, h->db_meta, &k, &mv);
    if (rc || mv.mv_size != 8)
        return rc ? reg_mdb_err(rc) : ERROR_BADDB;
    memcpy(v, mv.mv_data, 8);
    if (!bump)
        return ERROR_SUCCESS;
    uint64_t n = *v + 1;
    MDB_val nv = {8, &n};
    return reg_mdb_err(mdb_put(txn, h->db_meta, &k, &nv, 0));
}

int reg_journal_add(reg_hive *h, MDB_txn *txn, uint64_t id, uint32_t filter)
{
    uint64_t seq;
    int rc = meta_u64(h, txn, "seq", &seq, true);
    if (rc)
        return rc;
    seq++;
    uint64_t ids[REG_MAX_DEPTH + 2];
    uint32_t n = 0;
    for (uint64_t cur = id; cur && n < REG_MAX_DEPTH + 2;) {
        ids[n++] = cur;
        struct keyrec rec;
        if (reg_keyrec_get(h, txn, cur, &rec, NULL))
            break;
        cur = rec.parent;
    }
    uint8_t k[8];
    reg_be64(k, seq);
    MDB_val mk = {8, k}, mv = {8 + 8u * n, NULL};
    if ((rc = mdb_put(txn, h->db_journal, &mk, &mv, MDB_RESERVE)))
        return reg_mdb_err(rc);
    memcpy(mv.mv_data, &filter, 4);
    memcpy((uint8_t *)mv.mv_data + 4, &n, 4);
    memcpy((uint8_t *)mv.mv_data + 8, ids, 8u * n);
    if (seq > REG_JOURNAL_KEEP) {
        reg_be64(k, seq - REG_JOURNAL_KEEP);
        int drc = mdb_del(txn, h->db_journal, &mk, NULL);
        if (drc && drc != MDB_NOTFOUND)
            return reg_mdb_err(drc);
    }
    h->dirty = true;
    return ERROR_SUCCESS;
}

/* --- names and paths ------------------------------------------------------------------ */

/* A path component: a pointer into the caller's string and its length. */
struct comp {
    const char *s;
    size_t n;
};

/* Where a key is on the paths the 32-bit view redirects. Every such path starts at a hive's
 * root; past its first components (VA_NONE) the two views are the same keys. */
enum view_at {
    VA_NONE,     /* below or beside the redirected places */
    VA_TOP,      /* a hive's root */
    VA_SOFTWARE, /* <hive>\Software */
    VA_CLASSES,  /* <hive>\Software\Classes, and HKCR */
};

/* split_path - the components of subkey. Trailing and doubled backslashes are ignored, as
 * the registry does; a leading one is ERROR_BAD_PATHNAME. */
static int split_path(const char *subkey, struct comp *comps, size_t max, size_t *count)
{
    *count = 0;
    if (!subkey || !*subkey)
        return ERROR_SUCCESS;
    if (subkey[0] == '\\')
        return ERROR_BAD_PATHNAME;
    const char *p = subkey;
    while (*p) {
        while (*p == '\\')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '\\');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (*count >= max)
            return ERROR_INVALID_PARAMETER;
        comps[*count].s = p;
        comps[*count].n = n;
        (*count)++;
        p += n;
    }
    return ERROR_SUCCESS;
}

/* child_lookup - the live child of parent named c. */
static int child_lookup(reg_hive *h, MDB_txn *txn, uint64_t parent, const uint8_t *fk, size_t fklen,
                        uint64_t *child, struct keyrec *rec)
{
    uint8_t k[8 + REG_FOLDKEY_MAX];
    reg_be64(k, parent);
    memcpy(k + 8, fk, fklen);
    MDB_val mk = {8 + fklen, k}, mv;
    int rc = mdb_get(txn, h->db_children, &mk, &mv);
    if (rc)
        return rc == MDB_NOTFOUND ? ERROR_FILE_NOT_FOUND : reg_mdb_err(rc);
    if (mv.mv_size != 8)
        return ERROR_BADDB;
    memcpy(child, mv.mv_data, 8);
    if ((rc = reg_keyrec_get(h, txn, *child, rec, NULL)))
        return rc == ERROR_FILE_NOT_FOUND ? ERROR_BADDB : rc;
    return key_live(h, rec) ? ERROR_SUCCESS : ERROR_FILE_NOT_FOUND;
}

static reg_key *key_new(reg_ctx *ctx, reg_root root, enum key_kind kind, reg_hive *h, uint64_t id,
                        const struct keyrec *rec, unsigned depth)
{
    reg_key *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->ctx = ctx;
    k->root = root;
    k->kind = kind;
    k->hive = h;
    k->id = id;
    k->lid = id;
    k->depth = depth;
    k->at = VA_NONE;
    if (rec) {
        k->flags = rec->flags;
        memcpy(k->boot, rec->boot, 16);
        memcpy(k->token, rec->token, REG_TOKEN_LEN);
    }
    return k;
}

int reg_key_check(reg_key *key, MDB_txn *txn, struct keyrec *rec)
{
    struct keyrec tmp;
    if (!rec)
        rec = &tmp;
    if (key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    int rc = reg_keyrec_get(key->hive, txn, key->id, rec, NULL);
    if (rc == ERROR_FILE_NOT_FOUND)
        return ERROR_KEY_DELETED;
    if (rc)
        return rc;
    return key_live(key->hive, rec) ? ERROR_SUCCESS : ERROR_KEY_DELETED;
}

/* walk - follow comps from the key (h, id) in txn, to the last one; *prev gets the key
 * before the last (id when n is 0). */
static int walk(reg_hive *h, MDB_txn *txn, uint64_t id, const struct comp *comps, size_t n,
                uint64_t *out, uint64_t *prev, struct keyrec *rec)
{
    *prev = id;
    for (size_t i = 0; i < n; i++) {
        *prev = id;
        uint8_t fk[REG_FOLDKEY_MAX];
        size_t fklen, units;
        int rc = reg_foldkey(comps[i].s, comps[i].n, fk, &fklen, &units);
        if (rc)
            return rc == ERROR_INVALID_PARAMETER ? ERROR_FILE_NOT_FOUND : rc;
        if (units > REG_MAX_KEY_NAME)
            return ERROR_FILE_NOT_FOUND;
        if ((rc = child_lookup(h, txn, id, fk, fklen, &id, rec)))
            return rc;
    }
    *out = id;
    return ERROR_SUCCESS;
}

/* purge_if_wanted - a reader met a key whose owner died: remove it now if we may. */
static void purge_if_wanted(reg_hive *h)
{
    if (!h->purge_wanted || !h->writable || h->wtxn)
        return;
    MDB_txn *txn;
    bool own;
    if (reg_hive_wbegin(h, &txn, &own) == ERROR_SUCCESS)
        reg_hive_wend(h, txn, own, ERROR_SUCCESS);
    h->purge_wanted = false;
}

/* open_real - open comps below the key (h, id) at depth. lid_prev: the handle's logical key
 * is the one before the last (the last is a Wow6432Node the 32-bit view went into). */
static int open_real(reg_hive *h, reg_root root, uint64_t id, unsigned depth,
                     const struct comp *comps, size_t n, unsigned access, bool lid_prev,
                     reg_key **out)
{
    if ((access & REG_WRITE) && !h->writable)
        return ERROR_ACCESS_DENIED;
    if (depth + n > REG_MAX_DEPTH)
        return ERROR_FILE_NOT_FOUND;
    MDB_txn *txn;
    int rc = reg_hive_rtxn(h, &txn);
    if (rc)
        return rc;
    struct keyrec rec;
    rc = reg_keyrec_get(h, txn, id, &rec, NULL);
    if (rc == ERROR_FILE_NOT_FOUND || (!rc && !key_live(h, &rec)))
        rc = ERROR_KEY_DELETED;
    uint64_t prev = id;
    if (!rc)
        rc = walk(h, txn, id, comps, n, &id, &prev, &rec);
    reg_hive_rtxn_done(h, txn);
    purge_if_wanted(h);
    if (rc)
        return rc;
    *out = key_new(h->ctx, root, KH_REAL, h, id, &rec, depth + (unsigned)n);
    if (!*out)
        return ERROR_NOT_ENOUGH_MEMORY;
    if (lid_prev)
        (*out)->lid = prev;
    return ERROR_SUCCESS;
}

/* --- registry views (WOW64) ------------------------------------------------------------ */

#define WOW_NODE "Wow6432Node"
#define VIEW_FLAGS (REG_WOW64_32KEY | REG_WOW64_64KEY)

/* The subkeys of Software\Classes that the 32-bit view redirects to Classes\Wow6432Node since
 * Windows 7 ("Registry Keys Affected by WOW64"); the rest of Classes is shared. */
static const char *const classes_redirected[] = {"CLSID", "DirectShow", "Interface", "Media Type",
                                                 "MediaFoundation"};

/* comp_is - true when c is name, compared as the registry compares names. */
static bool comp_is(const struct comp *c, const char *name)
{
    size_t len = strlen(name);
    if (c->n > 4 * len) /* no fold turns more than 4 bytes into one ASCII letter */
        return false;
    uint8_t a[REG_FOLDKEY_MAX], b[REG_FOLDKEY_MAX];
    size_t na, nb, ua, ub;
    if (reg_foldkey(c->s, c->n, a, &na, &ua) || reg_foldkey(name, len, b, &nb, &ub))
        return false;
    return na == nb && !memcmp(a, b, na);
}

static bool classes_redirects(const struct comp *c)
{
    for (size_t i = 0; i < sizeof classes_redirected / sizeof classes_redirected[0]; i++)
        if (comp_is(c, classes_redirected[i]))
            return true;
    return false;
}

/* view_map - the physical path of comps, starting from a key at `at` in the machine's hive
 * (HKLM) or a user's: in the 32-bit view a Wow6432Node goes in where Windows redirects,
 * once (a path naming a Wow6432Node is left alone). out has room for n + 1 components.
 * *at_out gets where the last key is; *end_node is true when the path ends at HKLM\Software
 * in the 32-bit view, so that its last component is that Wow6432Node. Returns out's length. */
static size_t view_map(bool machine, uint8_t at, bool wow32, const struct comp *comps, size_t n,
                       struct comp *out, uint8_t *at_out, bool *end_node)
{
    static const struct comp node = {WOW_NODE, sizeof WOW_NODE - 1};
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct comp *c = &comps[i];
        bool redirect = false;
        switch (at) {
        case VA_TOP:
            at = comp_is(c, "Software") ? VA_SOFTWARE : VA_NONE;
            break;
        case VA_SOFTWARE:
            /* HKLM\Software is redirected but for Classes; a user's Software is shared. */
            if (comp_is(c, "Classes")) {
                at = VA_CLASSES;
                break;
            }
            redirect = machine && !comp_is(c, WOW_NODE);
            at = VA_NONE;
            break;
        case VA_CLASSES:
            redirect = classes_redirects(c);
            at = VA_NONE;
            break;
        default:
            break;
        }
        if (redirect && wow32)
            out[m++] = node;
        out[m++] = *c;
    }
    *end_node = wow32 && machine && at == VA_SOFTWARE;
    if (*end_node)
        out[m++] = node;
    *at_out = at;
    return m;
}

/* pick_view - check the view flags of *access, and make them name one view: the one asked
 * for, else parent's. */
static int pick_view(const reg_key *parent, unsigned *access)
{
    unsigned v = *access & VIEW_FLAGS;
    if (v == VIEW_FLAGS)
        return ERROR_INVALID_PARAMETER;
    if (!v)
        v = parent->wow32 ? REG_WOW64_32KEY : REG_WOW64_64KEY;
    *access = (*access & ~VIEW_FLAGS) | v;
    return ERROR_SUCCESS;
}

/* lid_depth - the depth of base's logical key. */
static unsigned lid_depth(const reg_key *base)
{
    return base->lid != base->id ? base->depth - 1 : base->depth;
}

/* hive_top - a handle (on the stack, never returned) on the root of hive h under root. */
static reg_key hive_top(reg_ctx *ctx, reg_root root, reg_hive *h)
{
    reg_key k = {.ctx = ctx, .root = root, .kind = KH_REAL, .hive = h, .id = REG_ROOT_ID};
    k.lid = REG_ROOT_ID;
    k.at = VA_TOP;
    return k;
}

/* open_from - open comps below the real key base in the view access names (one flag set). */
static int open_from(const reg_key *base, const struct comp *comps, size_t n, unsigned access,
                     reg_key **out)
{
    bool wow32 = access & REG_WOW64_32KEY;
    struct comp *m = malloc((n + 1) * sizeof *m);
    if (!m)
        return ERROR_NOT_ENOUGH_MEMORY;
    uint8_t at;
    bool end_node;
    size_t mn = view_map(!base->hive->hku, base->at, wow32, comps, n, m, &at, &end_node);
    int rc =
        open_real(base->hive, base->root, base->lid, lid_depth(base), m, mn, access, end_node, out);
    free(m);
    if (!rc) {
        (*out)->wow32 = wow32;
        (*out)->at = at;
    }
    return rc;
}

#define CLASSES_PATH "Software\\Classes"
#define HKCC_PATH "System\\CurrentControlSet\\Hardware Profiles\\Current"
#define MAX_COMPS (REG_MAX_DEPTH + 1)

/* hkcr_open - open comps of HKCR: in the user's classes if there, else in the machine's. */
static int hkcr_open(reg_ctx *ctx, const struct comp *comps, size_t n, unsigned access,
                     reg_key **out);

int reg_key_open_root(reg_ctx *ctx, reg_root root, reg_key **out)
{
    *out = NULL;
    reg_hive *h;
    int rc;
    switch (root) {
    case REG_ROOT_HKLM:
    case REG_ROOT_HKCU:
        rc = reg_hive_get(ctx, root == REG_ROOT_HKLM ? NULL : ctx->sid, true, &h, NULL);
        if (rc)
            return rc;
        if ((rc = open_real(h, root, REG_ROOT_ID, 0, NULL, 0, 0, false, out)))
            return rc;
        (*out)->at = VA_TOP;
        return ERROR_SUCCESS;
    case REG_ROOT_HKU:
    case REG_ROOT_HKCR:
        *out = key_new(ctx, root, root == REG_ROOT_HKU ? KH_HKU : KH_HKCR, NULL, 0, NULL, 0);
        return *out ? ERROR_SUCCESS : ERROR_NOT_ENOUGH_MEMORY;
    case REG_ROOT_HKCC: {
        reg_key *lm;
        if ((rc = reg_key_open_root(ctx, REG_ROOT_HKLM, &lm)))
            return rc;
        if (lm->hive->writable)
            rc = reg_key_create(lm, HKCC_PATH, 0, NULL, out, NULL);
        else
            rc = reg_key_open(lm, HKCC_PATH, 0, out);
        reg_key_close(lm);
        if (!rc) {
            (*out)->root = REG_ROOT_HKCC;
            (*out)->depth = 0;
        }
        return rc;
    }
    }
    return ERROR_INVALID_HANDLE;
}

int reg_key_open(reg_key *parent, const char *subkey, unsigned access, reg_key **out)
{
    *out = NULL;
    if (!parent)
        return ERROR_INVALID_HANDLE;
    int rc = pick_view(parent, &access);
    if (rc)
        return rc;
    struct comp *comps = malloc(MAX_COMPS * sizeof *comps);
    if (!comps)
        return ERROR_NOT_ENOUGH_MEMORY;
    size_t n;
    rc = split_path(subkey, comps, MAX_COMPS, &n);
    if (rc)
        goto out;
    switch (parent->kind) {
    case KH_REAL:
        rc = open_from(parent, comps, n, access, out);
        break;
    case KH_HKU:
        if (n == 0) {
            *out = key_new(parent->ctx, REG_ROOT_HKU, KH_HKU, NULL, 0, NULL, 0);
            rc = *out ? ERROR_SUCCESS : ERROR_NOT_ENOUGH_MEMORY;
            if (*out)
                (*out)->wow32 = access & REG_WOW64_32KEY;
            break;
        }
        {
            char name[4 * REG_MAX_KEY_NAME + 1];
            reg_hive *h;
            if (comps[0].n >= sizeof name) {
                rc = ERROR_FILE_NOT_FOUND;
                break;
            }
            memcpy(name, comps[0].s, comps[0].n);
            name[comps[0].n] = 0;
            if ((rc = reg_hive_get(parent->ctx, name, false, &h, NULL)))
                break;
            reg_key top = hive_top(parent->ctx, REG_ROOT_HKU, h);
            rc = open_from(&top, comps + 1, n - 1, access, out);
        }
        break;
    case KH_HKCR:
        if (n == 0) {
            *out = key_new(parent->ctx, REG_ROOT_HKCR, KH_HKCR, NULL, 0, NULL, 0);
            rc = *out ? ERROR_SUCCESS : ERROR_NOT_ENOUGH_MEMORY;
            if (*out)
                (*out)->wow32 = access & REG_WOW64_32KEY;
        } else {
            rc = hkcr_open(parent->ctx, comps, n, access, out);
        }
        break;
    }
out:
    free(comps);
    return rc;
}

int reg_key_open_path(reg_ctx *ctx, const char *path, unsigned access, reg_key **out)
{
    reg_root root;
    const char *sub;
    *out = NULL;
    int rc = reg_path_split(path, &root, &sub);
    if (rc)
        return rc;
    reg_key *r;
    if ((rc = reg_key_open_root(ctx, root, &r)))
        return rc;
    rc = reg_key_open(r, sub, access, out);
    reg_key_close(r);
    return rc;
}

void reg_key_close(reg_key *key)
{
    free(key);
}

reg_root reg_key_root(const reg_key *key)
{
    return key->root;
}

/* --- create --------------------------------------------------------------------------- */

static int new_id(reg_hive *h, MDB_txn *txn, uint64_t *id)
{
    return meta_u64(h, txn, "next_id", id, true);
}

/* create_in - create comps under (h, id) in a write transaction. lid_prev: as open_real's. */
static int create_in(reg_hive *h, reg_root root, uint64_t id, unsigned depth,
                     const struct comp *comps, size_t n, unsigned options, reg_owner *owner,
                     bool lid_prev, reg_key **out, unsigned *disposition)
{
    if (depth + n > REG_MAX_DEPTH)
        return ERROR_INVALID_PARAMETER;
    if ((options & REG_OPTION_OWNER_BOUND) && (!owner || owner->hive != h))
        return ERROR_INVALID_PARAMETER;
    if (options & REG_OPTION_OWNER_BOUND)
        options |= REG_OPTION_VOLATILE;
    MDB_txn *txn;
    bool own;
    int rc = reg_hive_wbegin(h, &txn, &own);
    if (rc)
        return rc;
    struct keyrec rec;
    rc = reg_keyrec_get(h, txn, id, &rec, NULL);
    if (rc == ERROR_FILE_NOT_FOUND || (!rc && !key_live(h, &rec)))
        rc = ERROR_KEY_DELETED;
    bool created = false, owner_top_done = false;
    uint64_t now = base_filetime_now(), prev = id;
    for (size_t i = 0; i < n && !rc; i++) {
        prev = id;
        uint8_t fk[REG_FOLDKEY_MAX];
        size_t fklen, units;
        if ((rc = reg_foldkey(comps[i].s, comps[i].n, fk, &fklen, &units)))
            break;
        if (units > REG_MAX_KEY_NAME || units == 0) {
            rc = ERROR_INVALID_PARAMETER;
            break;
        }
        uint64_t child;
        struct keyrec crec;
        rc = child_lookup(h, txn, id, fk, fklen, &child, &crec);
        if (rc == ERROR_SUCCESS) {
            id = child;
            rec = crec;
            created = false;
            continue;
        }
        if (rc != ERROR_FILE_NOT_FOUND)
            break;
        rc = ERROR_SUCCESS;
        /* A dead key may still sit at this name until it is purged: purge its tree first. */
        uint8_t ck[8 + REG_FOLDKEY_MAX];
        reg_be64(ck, id);
        memcpy(ck + 8, fk, fklen);
        MDB_val mk = {8 + fklen, ck}, mv;
        if (mdb_get(txn, h->db_children, &mk, &mv) == 0 && mv.mv_size == 8) {
            uint64_t stale;
            memcpy(&stale, mv.mv_data, 8);
            if ((rc = reg_tree_delete(h, txn, stale, false)))
                break;
        }
        bool parent_volatile = rec.flags & KF_VOLATILE;
        if (parent_volatile && !(options & REG_OPTION_VOLATILE)) {
            rc = ERROR_CHILD_MUST_BE_VOLATILE;
            break;
        }
        struct keyrec nrec = {0};
        nrec.parent = id;
        nrec.last_write = now;
        if (options & REG_OPTION_VOLATILE) {
            nrec.flags |= KF_VOLATILE;
            memcpy(nrec.boot, parent_volatile ? rec.boot : h->ctx->boot, 16);
        }
        if (rec.flags & KF_OWNED) {
            nrec.flags |= rec.flags & (KF_OWNED | KF_SHARED);
            memcpy(nrec.token, rec.token, REG_TOKEN_LEN);
        } else if ((options & REG_OPTION_OWNER_BOUND) && !owner_top_done) {
            nrec.flags |= KF_OWNED | KF_OWNER_TOP;
            memcpy(nrec.token, owner->token, REG_TOKEN_LEN);
            owner_top_done = true;
        }
        buf name16 = BUF_INIT;
        if ((rc = base_utf8_to_utf16(comps[i].s, comps[i].n, &name16))) {
            rc = ERROR_NOT_ENOUGH_MEMORY;
            break;
        }
        nrec.name_units = (uint16_t)units;
        uint64_t nid;
        rc = new_id(h, txn, &nid);
        if (!rc)
            rc = keyrec_put(h, txn, nid, &nrec, name16.data, NULL);
        buf_free(&name16);
        uint8_t idle[8];
        memcpy(idle, &nid, 8);
        MDB_val cv = {8, idle};
        if (!rc)
            rc = reg_mdb_err(mdb_put(txn, h->db_children, &mk, &cv, 0));
        uint8_t ik[REG_TOKEN_LEN + 8];
        MDB_val ikv = {0, ik}, empty = {0, ""};
        if (!rc && (nrec.flags & KF_VOLATILE) && !parent_volatile) {
            reg_be64(ik, nid);
            ikv.mv_size = 8;
            rc = reg_mdb_err(mdb_put(txn, h->db_volatile, &ikv, &empty, 0));
        }
        if (!rc && (nrec.flags & KF_OWNER_TOP)) {
            memcpy(ik, nrec.token, REG_TOKEN_LEN);
            reg_be64(ik + REG_TOKEN_LEN, nid);
            ikv.mv_size = sizeof ik;
            rc = reg_mdb_err(mdb_put(txn, h->db_owned, &ikv, &empty, 0));
        }
        if (!rc)
            rc = keyrec_touch(h, txn, id, 0);
        if (!rc)
            rc = reg_journal_add(h, txn, id, REG_NOTIFY_CHANGE_NAME);
        id = nid;
        rec = nrec;
        created = true;
    }
    rc = reg_hive_wend(h, txn, own, rc);
    if (rc)
        return rc;
    if (disposition)
        *disposition = created ? REG_CREATED_NEW_KEY : REG_OPENED_EXISTING_KEY;
    if (out) {
        *out = key_new(h->ctx, root, KH_REAL, h, id, &rec, depth + (unsigned)n);
        if (!*out)
            return ERROR_NOT_ENOUGH_MEMORY;
        if (lid_prev)
            (*out)->lid = prev;
    }
    return ERROR_SUCCESS;
}

/* create_from - create comps below the real key base in the view access names (one flag set). */
static int create_from(const reg_key *base, const struct comp *comps, size_t n, unsigned options,
                       unsigned access, reg_owner *owner, reg_key **out, unsigned *disposition)
{
    bool wow32 = access & REG_WOW64_32KEY;
    struct comp *m = malloc((n + 1) * sizeof *m);
    if (!m)
        return ERROR_NOT_ENOUGH_MEMORY;
    uint8_t at;
    bool end_node;
    size_t mn = view_map(!base->hive->hku, base->at, wow32, comps, n, m, &at, &end_node);
    int rc = create_in(base->hive, base->root, base->lid, lid_depth(base), m, mn, options, owner,
                       end_node, out, disposition);
    free(m);
    if (!rc && out) {
        (*out)->wow32 = wow32;
        (*out)->at = at;
    }
    return rc;
}

static int hkcr_create(reg_ctx *ctx, const struct comp *comps, size_t n, unsigned options,
                       unsigned access, reg_owner *owner, reg_key **out, unsigned *disposition);

int reg_key_create(reg_key *parent, const char *subkey, unsigned options, reg_owner *owner,
                   reg_key **out, unsigned *disposition)
{
    return reg_key_create_ex(parent, subkey, options, 0, owner, out, disposition);
}

int reg_key_create_ex(reg_key *parent, const char *subkey, unsigned options, unsigned access,
                      reg_owner *owner, reg_key **out, unsigned *disposition)
{
    if (out)
        *out = NULL;
    if (!parent)
        return ERROR_INVALID_HANDLE;
    int rc = pick_view(parent, &access);
    if (rc)
        return rc;
    struct comp *comps = malloc(MAX_COMPS * sizeof *comps);
    if (!comps)
        return ERROR_NOT_ENOUGH_MEMORY;
    size_t n;
    rc = split_path(subkey, comps, MAX_COMPS, &n);
    if (rc)
        goto out;
    switch (parent->kind) {
    case KH_REAL:
        rc = create_from(parent, comps, n, options, access, owner, out, disposition);
        break;
    case KH_HKU: {
        char name[4 * REG_MAX_KEY_NAME + 1];
        reg_hive *h;
        if (n == 0 || comps[0].n >= sizeof name) {
            rc = n == 0 ? ERROR_ACCESS_DENIED : ERROR_INVALID_PARAMETER;
            break;
        }
        memcpy(name, comps[0].s, comps[0].n);
        name[comps[0].n] = 0;
        bool made;
        if ((rc = reg_hive_get(parent->ctx, name, true, &h, &made)))
            break;
        reg_key top = hive_top(parent->ctx, REG_ROOT_HKU, h);
        rc = create_from(&top, comps + 1, n - 1, options, access, owner, out, disposition);
        if (!rc && made && n == 1 && disposition)
            *disposition = REG_CREATED_NEW_KEY;
        break;
    }
    case KH_HKCR:
        if (n == 0) {
            rc = ERROR_ACCESS_DENIED;
            break;
        }
        rc = hkcr_create(parent->ctx, comps, n, options, access, owner, out, disposition);
        break;
    }
out:
    free(comps);
    return rc;
}

/* --- HKEY_CLASSES_ROOT: the user's classes over the machine's ----------------------- */

/* classes_key - which's Software\Classes, as the base of HKCR's keys: their root is HKCR
 * and their depth counts from there. */
static int classes_key(reg_ctx *ctx, reg_root which, bool create, reg_key **out)
{
    reg_key *r;
    int rc = reg_key_open_root(ctx, which, &r);
    if (rc)
        return rc;
    rc = create ? reg_key_create(r, CLASSES_PATH, 0, NULL, out, NULL)
                : reg_key_open(r, CLASSES_PATH, 0, out);
    reg_key_close(r);
    if (!rc) {
        (*out)->root = REG_ROOT_HKCR;
        (*out)->depth = 0;
    }
    return rc;
}

static int hkcr_open(reg_ctx *ctx, const struct comp *comps, size_t n, unsigned access,
                     reg_key **out)
{
    static const reg_root order[2] = {REG_ROOT_HKCU, REG_ROOT_HKLM};
    int rc = ERROR_FILE_NOT_FOUND;
    for (int i = 0; i < 2; i++) {
        reg_key *cls;
        if (classes_key(ctx, order[i], false, &cls))
            continue;
        rc = open_from(cls, comps, n, access, out);
        reg_key_close(cls);
        if (rc != ERROR_FILE_NOT_FOUND)
            return rc;
    }
    return rc;
}

static int hkcr_create(reg_ctx *ctx, const struct comp *comps, size_t n, unsigned options,
                       unsigned access, reg_owner *owner, reg_key **out, unsigned *disposition)
{
    /* Into the hive that already has the first component (the user's first), else into the
     * machine's classes when we may write there, else the user's. */
    reg_key *cls = NULL, *probe = NULL;
    int rc = ERROR_FILE_NOT_FOUND;
    if (classes_key(ctx, REG_ROOT_HKCU, false, &cls) == 0 &&
        open_from(cls, comps, 1, access & VIEW_FLAGS, &probe) == 0)
        rc = ERROR_SUCCESS;
    reg_key_close(probe);
    if (rc) {
        reg_key_close(cls);
        cls = NULL;
        reg_key *lm;
        if (reg_key_open_root(ctx, REG_ROOT_HKLM, &lm) == 0) {
            bool w = lm->hive->writable;
            reg_key_close(lm);
            if (w)
                rc = classes_key(ctx, REG_ROOT_HKLM, true, &cls);
        }
        if (!cls && (rc = classes_key(ctx, REG_ROOT_HKCU, true, &cls)))
            return rc;
    }
    rc = create_from(cls, comps, n, options, access, owner, out, disposition);
    reg_key_close(cls);
    return rc;
}

/* --- info and enumeration ------------------------------------------------------------- */

struct name_list {
    char **names;
    size_t n, cap;
};

static int names_add(void *arg, const char *name)
{
    struct name_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->names, cap * sizeof *p);
        if (!p)
            return ERROR_NOT_ENOUGH_MEMORY;
        l->names = p;
        l->cap = cap;
    }
    if (!(l->names[l->n] = strdup(name)))
        return ERROR_NOT_ENOUGH_MEMORY;
    l->n++;
    return 0;
}

static void names_free(struct name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
}

static int fold_cmp(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    uint8_t fx[REG_FOLDKEY_MAX], fy[REG_FOLDKEY_MAX];
    size_t nx = 0, ny = 0, ux, uy;
    reg_foldkey(x, strlen(x), fx, &nx, &ux);
    reg_foldkey(y, strlen(y), fy, &ny, &uy);
    int c = memcmp(fx, fy, nx < ny ? nx : ny);
    return c ? c : (nx > ny) - (nx < ny);
}

/* enum_sorted_unique - call fn for each name of l in folded order, once per folded name. */
static int enum_sorted_unique(struct name_list *l, reg_subkey_fn fn, void *arg)
{
    qsort(l->names, l->n, sizeof *l->names, fold_cmp);
    for (size_t i = 0; i < l->n; i++) {
        if (i > 0 && fold_cmp(&l->names[i - 1], &l->names[i]) == 0)
            continue;
        int rc = fn(arg, l->names[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int enum_real_subkeys(reg_hive *h, uint64_t id, reg_subkey_fn fn, void *arg)
{
    MDB_txn *txn;
    int rc = reg_hive_rtxn(h, &txn);
    if (rc)
        return rc;
    struct keyrec prec;
    rc = reg_keyrec_get(h, txn, id, &prec, NULL);
    if (rc == ERROR_FILE_NOT_FOUND || (!rc && !key_live(h, &prec)))
        rc = ERROR_KEY_DELETED;
    MDB_cursor *cur = NULL;
    if (!rc)
        rc = reg_mdb_err(mdb_cursor_open(txn, h->db_children, &cur));
    uint8_t k[8];
    reg_be64(k, id);
    MDB_val mk = {8, k}, mv;
    buf name = BUF_INIT;
    int crc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
    while (!rc && !crc && mk.mv_size >= 8 && !memcmp(mk.mv_data, k, 8)) {
        uint64_t child;
        struct keyrec rec;
        MDB_val raw;
        memcpy(&child, mv.mv_data, 8);
        if (reg_keyrec_get(h, txn, child, &rec, &raw) == 0 && key_live(h, &rec)) {
            name.len = 0;
            if (base_utf16_to_utf8((uint8_t *)raw.mv_data + sizeof rec, rec.name_units, &name) ||
                !buf_cstr(&name))
                rc = ERROR_NOT_ENOUGH_MEMORY;
            else
                rc = fn(arg, (char *)name.data);
        }
        if (!rc)
            crc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
    }
    if (!rc && crc && crc != MDB_NOTFOUND)
        rc = reg_mdb_err(crc);
    buf_free(&name);
    if (cur)
        mdb_cursor_close(cur);
    reg_hive_rtxn_done(h, txn);
    return rc;
}

static int enum_hku(reg_ctx *ctx, reg_subkey_fn fn, void *arg)
{
    buf dir = BUF_INIT;
    if (buf_printf(&dir, "%s/HKU", ctx->regdir) || !buf_cstr(&dir))
        return ERROR_NOT_ENOUGH_MEMORY;
    struct name_list l = {0};
    DIR *d = opendir((char *)dir.data);
    buf_free(&dir);
    int rc = 0;
    if (d) {
        struct dirent *e;
        while (!rc && (e = readdir(d)))
            if (e->d_name[0] != '.')
                rc = names_add(&l, e->d_name);
        closedir(d);
    }
    if (!rc)
        rc = enum_sorted_unique(&l, fn, arg);
    names_free(&l);
    return rc;
}

static int enum_hkcr(reg_ctx *ctx, reg_subkey_fn fn, void *arg)
{
    static const reg_root order[2] = {REG_ROOT_HKCU, REG_ROOT_HKLM};
    struct name_list l = {0};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        reg_key *cls;
        if (classes_key(ctx, order[i], false, &cls))
            continue;
        rc = enum_real_subkeys(cls->hive, cls->id, names_add, &l);
        reg_key_close(cls);
    }
    if (!rc)
        rc = enum_sorted_unique(&l, fn, arg);
    names_free(&l);
    return rc;
}

int reg_key_enum_subkeys(reg_key *key, reg_subkey_fn fn, void *arg)
{
    if (!key)
        return ERROR_INVALID_HANDLE;
    int rc;
    switch (key->kind) {
    case KH_REAL:
        rc = enum_real_subkeys(key->hive, key->id, fn, arg);
        purge_if_wanted(key->hive);
        return rc;
    case KH_HKU:
        return enum_hku(key->ctx, fn, arg);
    case KH_HKCR:
        return enum_hkcr(key->ctx, fn, arg);
    }
    return ERROR_INVALID_HANDLE;
}

struct nth {
    uint32_t index;
    buf *out;
};

static int nth_cb(void *arg, const char *name)
{
    struct nth *n = arg;
    if (n->index--)
        return 0;
    n->out->len = 0;
    return buf_adds(n->out, name) ? ERROR_NOT_ENOUGH_MEMORY : -1;
}

int reg_key_enum_subkey(reg_key *key, uint32_t index, buf *name)
{
    struct nth n = {index, name};
    int rc = reg_key_enum_subkeys(key, nth_cb, &n);
    if (rc == -1)
        return buf_cstr(name) ? ERROR_SUCCESS : ERROR_NOT_ENOUGH_MEMORY;
    return rc ? rc : ERROR_NO_MORE_ITEMS;
}

struct info_acc {
    reg_key_info *info;
};

static int info_subkey(void *arg, const char *name)
{
    reg_key_info *info = arg;
    buf w = BUF_INIT;
    if (base_utf8_to_utf16(name, strlen(name), &w) == 0 && w.len / 2 > info->max_subkey_len)
        info->max_subkey_len = (uint32_t)(w.len / 2);
    buf_free(&w);
    info->subkeys++;
    return 0;
}

static int info_value(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    (void)type;
    (void)data;
    reg_key_info *info = arg;
    buf w = BUF_INIT;
    if (base_utf8_to_utf16(name, strlen(name), &w) == 0 && w.len / 2 > info->max_value_name_len)
        info->max_value_name_len = (uint32_t)(w.len / 2);
    buf_free(&w);
    if (len > info->max_value_len)
        info->max_value_len = (uint32_t)len;
    info->values++;
    return 0;
}

int reg_key_query_info(reg_key *key, reg_key_info *info)
{
    memset(info, 0, sizeof *info);
    if (!key)
        return ERROR_INVALID_HANDLE;
    if (key->kind == KH_REAL) {
        MDB_txn *txn;
        int rc = reg_hive_rtxn(key->hive, &txn);
        if (rc)
            return rc;
        struct keyrec rec;
        rc = reg_key_check(key, txn, &rec);
        reg_hive_rtxn_done(key->hive, txn);
        if (rc)
            return rc;
        info->last_write = rec.last_write;
        info->is_volatile = rec.flags & KF_VOLATILE;
        info->is_owner_bound = rec.flags & KF_OWNED;
    }
    int rc = reg_key_enum_subkeys(key, info_subkey, info);
    if (!rc && key->kind != KH_HKU)
        rc = reg_key_enum_values(key, info_value, info);
    return rc;
}

/* --- delete, rename, copy ------------------------------------------------------------- */

static int del_prefix(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return reg_mdb_err(rc);
    MDB_val k = {n, (void *)prefix}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (!rc && k.mv_size >= n && !memcmp(k.mv_data, prefix, n)) {
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
        if (rc == MDB_NOTFOUND || rc == EINVAL)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        /* After a delete the cursor points at the next item already. */
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? ERROR_SUCCESS : reg_mdb_err(rc);
}

/* child_ids - the ids of all children of id (live or not), for deletion. */
static int child_ids(reg_hive *h, MDB_txn *txn, uint64_t id, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    size_t cap = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, h->db_children, &cur);
    if (rc)
        return reg_mdb_err(rc);
    uint8_t k[8];
    reg_be64(k, id);
    MDB_val mk = {8, k}, mv;
    rc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
    while (!rc && mk.mv_size >= 8 && !memcmp(mk.mv_data, k, 8)) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(*ids, cap * sizeof *p);
            if (!p) {
                mdb_cursor_close(cur);
                return ERROR_NOT_ENOUGH_MEMORY;
            }
            *ids = p;
        }
        memcpy(&(*ids)[(*n)++], mv.mv_data, 8);
        rc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? ERROR_SUCCESS : reg_mdb_err(rc);
}

int reg_tree_delete(reg_hive *h, MDB_txn *txn, uint64_t id, bool keep_top)
{
    struct keyrec rec;
    MDB_val raw;
    int rc = reg_keyrec_get(h, txn, id, &rec, &raw);
    if (rc)
        return rc == ERROR_FILE_NOT_FOUND ? ERROR_SUCCESS : rc;
    uint64_t *kids;
    size_t n;
    if ((rc = child_ids(h, txn, id, &kids, &n)))
        return rc;
    for (size_t i = 0; i < n && !rc; i++)
        rc = reg_tree_delete(h, txn, kids[i], false);
    free(kids);
    if (rc)
        return rc;
    uint8_t k[8];
    reg_be64(k, id);
    if ((rc = del_prefix(txn, h->db_values, k, 8)) || (rc = del_prefix(txn, h->db_vorder, k, 8)))
        return rc;
    if (keep_top) {
        if ((rc = del_prefix(txn, h->db_children, k, 8)))
            return rc;
        if ((rc = keyrec_touch(h, txn, id, 0)))
            return rc;
        return reg_journal_add(h, txn, id, REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET);
    }
    if ((rc = reg_journal_add(h, txn, id, ~0u)))
        return rc;
    /* Unlink from the parent. The record may move under us: re-read it. */
    if ((rc = reg_keyrec_get(h, txn, id, &rec, &raw)))
        return rc;
    uint8_t ck[8 + REG_FOLDKEY_MAX];
    size_t fklen;
    reg_be64(ck, rec.parent);
    if ((rc = reg_foldkey_u16((uint8_t *)raw.mv_data + sizeof rec, rec.name_units, ck + 8, &fklen)))
        return rc;
    MDB_val cv = {8 + fklen, ck}, idv;
    if (mdb_get(txn, h->db_children, &cv, &idv) == 0 && idv.mv_size == 8 &&
        !memcmp(idv.mv_data, &id, 8)) {
        if ((rc = mdb_del(txn, h->db_children, &cv, NULL)))
            return reg_mdb_err(rc);
    }
    MDB_val kk = {8, k};
    rc = mdb_del(txn, h->db_volatile, &kk, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return reg_mdb_err(rc);
    if (rec.flags & KF_OWNER_TOP) {
        uint8_t ik[REG_TOKEN_LEN + 8];
        memcpy(ik, rec.token, REG_TOKEN_LEN);
        reg_be64(ik + REG_TOKEN_LEN, id);
        MDB_val ikv = {sizeof ik, ik};
        rc = mdb_del(txn, h->db_owned, &ikv, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return reg_mdb_err(rc);
    }
    if ((rc = mdb_del(txn, h->db_keys, &kk, NULL)))
        return reg_mdb_err(rc);
    if (!rec.parent)
        return ERROR_SUCCESS;
    if ((rc = keyrec_touch(h, txn, rec.parent, 0)))
        return rc;
    return reg_journal_add(h, txn, rec.parent, REG_NOTIFY_CHANGE_NAME);
}

static bool has_live_child(reg_hive *h, MDB_txn *txn, uint64_t id)
{
    uint64_t *kids;
    size_t n;
    if (child_ids(h, txn, id, &kids, &n))
        return true;
    bool live = false;
    for (size_t i = 0; i < n && !live; i++) {
        struct keyrec rec;
        live = reg_keyrec_get(h, txn, kids[i], &rec, NULL) == 0 && reg_keyrec_live(h, &rec);
    }
    free(kids);
    return live;
}

/* hku_single - true when subkey names one HKU hive (a single component). */
static int hku_single(const char *subkey, char *name, size_t max)
{
    struct comp c[2];
    size_t n;
    if (split_path(subkey, c, 2, &n) || n != 1 || c[0].n >= max)
        return 0;
    memcpy(name, c[0].s, c[0].n);
    name[c[0].n] = 0;
    return 1;
}

static int delete_common(reg_key *parent, const char *subkey, bool tree, unsigned access)
{
    if (!parent)
        return ERROR_INVALID_HANDLE;
    if ((access & VIEW_FLAGS) == VIEW_FLAGS)
        return ERROR_INVALID_PARAMETER;
    char name[4 * REG_MAX_KEY_NAME + 1];
    if (parent->kind == KH_HKU && subkey && hku_single(subkey, name, sizeof name))
        return tree ? reg_hive_drop(parent->ctx, name) : ERROR_ACCESS_DENIED;
    bool keep_top = tree && (!subkey || !*subkey);
    reg_key *k = parent;
    int rc = ERROR_SUCCESS;
    if (subkey && *subkey) {
        if ((rc = reg_key_open(parent, subkey, REG_WRITE | (access & VIEW_FLAGS), &k)))
            return rc;
    }
    if (k->kind != KH_REAL) {
        rc = ERROR_ACCESS_DENIED;
        goto out;
    }
    reg_hive *h = k->hive;
    if (!keep_top && (k->id == REG_ROOT_ID || k->depth == 0)) {
        rc = ERROR_ACCESS_DENIED;
        goto out;
    }
    MDB_txn *txn;
    bool own;
    if ((rc = reg_hive_wbegin(h, &txn, &own)))
        goto out;
    rc = reg_key_check(k, txn, NULL);
    if (rc == ERROR_KEY_DELETED && !tree && !keep_top && k != parent)
        rc = ERROR_FILE_NOT_FOUND;
    if (!rc && !tree && has_live_child(h, txn, k->id))
        rc = ERROR_ACCESS_DENIED;
    if (!rc)
        rc = reg_tree_delete(h, txn, k->id, keep_top);
    rc = reg_hive_wend(h, txn, own, rc);
out:
    if (k != parent)
        reg_key_close(k);
    return rc;
}

int reg_key_delete(reg_key *parent, const char *subkey)
{
    return delete_common(parent, subkey, false, 0);
}

int reg_key_delete_ex(reg_key *parent, const char *subkey, unsigned access)
{
    return delete_common(parent, subkey, false, access);
}

int reg_key_delete_tree(reg_key *parent, const char *subkey)
{
    return delete_common(parent, subkey, true, 0);
}

int reg_key_move(reg_key *parent, const char *subkey, reg_key *new_parent, const char *newname)
{
    if (!parent || !newname || !new_parent)
        return ERROR_INVALID_PARAMETER;
    if (!*newname || strchr(newname, '\\'))
        return ERROR_INVALID_PARAMETER;
    uint8_t fk[REG_FOLDKEY_MAX];
    size_t fklen, units;
    int rc = reg_foldkey(newname, strlen(newname), fk, &fklen, &units);
    if (rc)
        return rc;
    if (units > REG_MAX_KEY_NAME)
        return ERROR_INVALID_PARAMETER;
    reg_key *k;
    if ((rc = reg_key_open(parent, subkey, REG_WRITE, &k)))
        return rc;
    if (k->kind != KH_REAL || k->depth == 0) {
        reg_key_close(k);
        return ERROR_ACCESS_DENIED;
    }
    reg_hive *h = k->hive;
    if (new_parent->kind != KH_REAL || new_parent->hive != h) {
        reg_key_close(k);
        return ERROR_NOT_SAME_DEVICE;
    }
    MDB_txn *txn;
    bool own;
    if ((rc = reg_hive_wbegin(h, &txn, &own))) {
        reg_key_close(k);
        return rc;
    }
    struct keyrec rec, prec;
    MDB_val raw;
    rc = reg_key_check(k, txn, &rec);
    if (!rc)
        rc = reg_key_check(new_parent, txn, &prec);
    /* Not into itself or below itself; not a stable key under a volatile one. */
    for (uint64_t up = new_parent->id; !rc && up;) {
        struct keyrec r;
        if (up == k->id)
            rc = ERROR_INVALID_PARAMETER;
        else if ((rc = reg_keyrec_get(h, txn, up, &r, NULL)) == ERROR_SUCCESS)
            up = r.parent;
    }
    if (!rc && (prec.flags & KF_VOLATILE) && !(rec.flags & KF_VOLATILE))
        rc = ERROR_CHILD_MUST_BE_VOLATILE;
    if (!rc && new_parent->depth + 1 > REG_MAX_DEPTH)
        rc = ERROR_INVALID_PARAMETER;
    if (!rc)
        rc = reg_keyrec_get(h, txn, k->id, &rec, &raw);
    uint8_t oldk[8 + REG_FOLDKEY_MAX], newk[8 + REG_FOLDKEY_MAX];
    size_t oldlen = 0;
    uint8_t *klass = NULL;
    uint64_t old_parent = rec.parent;
    if (!rc) {
        reg_be64(oldk, rec.parent);
        reg_foldkey_u16((uint8_t *)raw.mv_data + sizeof rec, rec.name_units, oldk + 8, &oldlen);
        klass = malloc(2u * rec.class_units + 1);
        if (!klass)
            rc = ERROR_NOT_ENOUGH_MEMORY;
        else
            memcpy(klass, (uint8_t *)raw.mv_data + sizeof rec + 2u * rec.name_units,
                   2u * rec.class_units);
    }
    reg_be64(newk, new_parent->id);
    memcpy(newk + 8, fk, fklen);
    MDB_val nk = {8 + fklen, newk}, ok = {8 + oldlen, oldk}, v;
    bool same = !rc && oldlen == fklen && !memcmp(oldk, newk, 8 + fklen);
    if (!rc && !same && mdb_get(txn, h->db_children, &nk, &v) == 0) {
        uint64_t other;
        struct keyrec orec;
        memcpy(&other, v.mv_data, 8);
        if (reg_keyrec_get(h, txn, other, &orec, NULL) == 0 && reg_keyrec_live(h, &orec))
            rc = ERROR_ACCESS_DENIED;
        else
            rc = reg_tree_delete(h, txn, other, false);
    }
    buf name16 = BUF_INIT;
    if (!rc && base_utf8_to_utf16(newname, strlen(newname), &name16))
        rc = ERROR_NOT_ENOUGH_MEMORY;
    if (!rc && !same)
        rc = reg_mdb_err(mdb_del(txn, h->db_children, &ok, NULL));
    if (!rc) {
        MDB_val idv = {8, &k->id};
        rc = reg_mdb_err(mdb_put(txn, h->db_children, &nk, &idv, 0));
    }
    if (!rc) {
        rec.parent = new_parent->id;
        rec.name_units = (uint16_t)units;
        rec.last_write = base_filetime_now();
        rc = keyrec_put(h, txn, k->id, &rec, name16.data, klass);
    }
    if (!rc)
        rc = reg_journal_add(h, txn, old_parent, REG_NOTIFY_CHANGE_NAME);
    if (!rc && old_parent != new_parent->id)
        rc = reg_journal_add(h, txn, new_parent->id, REG_NOTIFY_CHANGE_NAME);
    buf_free(&name16);
    free(klass);
    rc = reg_hive_wend(h, txn, own, rc);
    reg_key_close(k);
    return rc;
}

int reg_key_rename(reg_key *parent, const char *subkey, const char *newname)
{
    if (!parent)
        return ERROR_INVALID_PARAMETER;
    reg_key *k;
    int rc = reg_key_open(parent, subkey, REG_WRITE, &k);
    if (rc)
        return rc;
    /* The key's own parent, found by walking one level up from the key. */
    reg_key *p = NULL;
    if (k->kind == KH_REAL && k->depth > 0) {
        MDB_txn *txn;
        struct keyrec rec;
        rc = reg_hive_rtxn(k->hive, &txn);
        if (!rc) {
            rc = reg_key_check(k, txn, &rec);
            reg_hive_rtxn_done(k->hive, txn);
        }
        if (!rc) {
            p = key_new(k->ctx, k->root, KH_REAL, k->hive, rec.parent, NULL, k->depth - 1);
            if (!p)
                rc = ERROR_NOT_ENOUGH_MEMORY;
        }
    } else {
        rc = ERROR_ACCESS_DENIED;
    }
    if (!rc)
        rc = reg_key_move(k, NULL, p, newname);
    reg_key_close(p);
    reg_key_close(k);
    return rc;
}

/* copy: values first, then subkeys; ids created by this copy are skipped as sources, so a
 * copy into the source's own subtree terminates. */
struct copy_state {
    reg_key *src, *dst;
    bool recursive;
    uint64_t *made;
    size_t nmade, capmade;
    int rc;
};

static int copy_value(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    struct copy_state *cs = arg;
    return reg_value_set(cs->dst, name, type, data, len);
}

static int copy_run(reg_key *src, reg_key *dst, bool recursive, struct copy_state *root);

static int copy_subkey(void *arg, const char *name)
{
    struct copy_state *cs = arg;
    reg_key *s, *d;
    int rc = reg_key_open(cs->src, name, 0, &s);
    if (rc)
        return rc == ERROR_FILE_NOT_FOUND ? 0 : rc;
    for (size_t i = 0; i < cs->nmade; i++) {
        if (s->kind == KH_REAL && s->hive == cs->dst->hive && s->id == cs->made[i]) {
            reg_key_close(s);
            return 0;
        }
    }
    unsigned opts = (cs->dst->flags & KF_VOLATILE) ? REG_OPTION_VOLATILE : 0;
    unsigned disp;
    if ((rc = reg_key_create(cs->dst, name, opts, NULL, &d, &disp))) {
        reg_key_close(s);
        return rc;
    }
    if (disp == REG_CREATED_NEW_KEY) {
        if (cs->nmade == cs->capmade) {
            size_t cap = cs->capmade ? cs->capmade * 2 : 16;
            uint64_t *p = realloc(cs->made, cap * sizeof *p);
            if (!p) {
                rc = ERROR_NOT_ENOUGH_MEMORY;
                goto out;
            }
            cs->made = p;
            cs->capmade = cap;
        }
        cs->made[cs->nmade++] = d->id;
    }
    rc = copy_run(s, d, true, cs);
out:
    reg_key_close(s);
    reg_key_close(d);
    return rc;
}

static int copy_run(reg_key *src, reg_key *dst, bool recursive, struct copy_state *root)
{
    struct copy_state cs = *root;
    cs.src = src;
    cs.dst = dst;
    int rc = reg_key_enum_values(src, copy_value, &cs);
    if (!rc && recursive)
        rc = reg_key_enum_subkeys(src, copy_subkey, &cs);
    root->made = cs.made;
    root->nmade = cs.nmade;
    root->capmade = cs.capmade;
    return rc;
}

int reg_key_copy_tree(reg_key *src, reg_key *dst, bool recursive)
{
    if (!src || !dst)
        return ERROR_INVALID_HANDLE;
    if (dst->kind != KH_REAL)
        return ERROR_ACCESS_DENIED;
    bool own = !dst->hive->wtxn;
    int rc = own ? reg_txn_begin(dst) : ERROR_SUCCESS;
    if (rc)
        return rc;
    struct copy_state cs = {0};
    cs.recursive = recursive;
    cs.dst = dst;
    rc = copy_run(src, dst, recursive, &cs);
    free(cs.made);
    if (own) {
        if (rc)
            reg_txn_abort(dst);
        else
            rc = reg_txn_commit(dst);
    }
    return rc;
}

/* --- binding an existing tree to a shared owner ---------------------------------------- */

/* bind_tree - mark id and everything below it as owned by token (shared). */
static int bind_tree(reg_hive *h, MDB_txn *txn, uint64_t id, const uint8_t *token, bool top)
{
    struct keyrec rec;
    MDB_val raw;
    int rc = reg_keyrec_get(h, txn, id, &rec, &raw);
    if (rc)
        return rc;
    uint8_t *copy = malloc(raw.mv_size);
    if (!copy)
        return ERROR_NOT_ENOUGH_MEMORY;
    memcpy(copy, raw.mv_data, raw.mv_size);
    rec.flags |= KF_OWNED | KF_SHARED | (top ? KF_OWNER_TOP : 0);
    memcpy(rec.token, token, REG_TOKEN_LEN);
    rc = keyrec_put(h, txn, id, &rec, copy + sizeof rec, copy + sizeof rec + 2u * rec.name_units);
    free(copy);
    uint64_t *kids;
    size_t n;
    if (!rc)
        rc = child_ids(h, txn, id, &kids, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && !rc; i++)
        rc = bind_tree(h, txn, kids[i], token, false);
    free(kids);
    return rc;
}

int reg_key_bind(reg_key *key, const uint8_t token[REG_TOKEN_SIZE])
{
    if (!key || key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    if (key->id == REG_ROOT_ID || key->depth == 0)
        return ERROR_ACCESS_DENIED;
    reg_hive *h = key->hive;
    MDB_txn *txn;
    bool own;
    int rc = reg_hive_wbegin(h, &txn, &own);
    if (rc)
        return rc;
    struct keyrec rec;
    rc = reg_key_check(key, txn, &rec);
    if (!rc && (rec.flags & KF_OWNED)) {
        if (!(rec.flags & KF_SHARED) || memcmp(rec.token, token, REG_TOKEN_LEN))
            rc = ERROR_ALREADY_EXISTS;
        return reg_hive_wend(h, txn, own, rc);
    }
    if (!rc)
        rc = bind_tree(h, txn, key->id, token, true);
    if (!rc) {
        uint8_t ik[REG_TOKEN_LEN + 8], kind = 1;
        memcpy(ik, token, REG_TOKEN_LEN);
        reg_be64(ik + REG_TOKEN_LEN, key->id);
        MDB_val ikv = {sizeof ik, ik}, kv = {1, &kind};
        rc = reg_mdb_err(mdb_put(txn, h->db_owned, &ikv, &kv, 0));
    }
    if (!rc)
        rc = reg_journal_add(h, txn, key->id, REG_NOTIFY_CHANGE_ATTRIBUTES);
    /* Nobody holds it now: the tree goes in this same transaction. */
    if (!rc && !reg_owner_alive(h, token, true))
        rc = reg_purge_stale(h, txn);
    rc = reg_hive_wend(h, txn, own, rc);
    if (!rc) {
        key->flags |= KF_OWNED | KF_SHARED;
        memcpy(key->token, token, REG_TOKEN_LEN);
    }
    return rc;
}

/* --- explicit transactions ------------------------------------------------------------ */

int reg_txn_begin(reg_key *key)
{
    if (!key || key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    if (key->hive->wtxn)
        return ERROR_INVALID_PARAMETER;
    MDB_txn *txn;
    bool own;
    int rc = reg_hive_wbegin(key->hive, &txn, &own);
    if (!rc)
        key->hive->explicit_txn = true;
    return rc;
}

int reg_txn_commit(reg_key *key)
{
    if (!key || key->kind != KH_REAL || !key->hive->explicit_txn)
        return ERROR_INVALID_PARAMETER;
    key->hive->explicit_txn = false;
    return reg_hive_wend(key->hive, key->hive->wtxn, true, ERROR_SUCCESS);
}

void reg_txn_abort(reg_key *key)
{
    if (!key || key->kind != KH_REAL || !key->hive->explicit_txn)
        return;
    key->hive->explicit_txn = false;
    reg_hive_wend(key->hive, key->hive->wtxn, true, ERROR_INVALID_PARAMETER);
}
