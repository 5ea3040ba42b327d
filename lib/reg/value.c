/* value.c - values: get, set, delete and enumerate, kept in creation order as Windows does;
 * UTF-8 helpers for C callers. */
#include "reg/store.h"

#include <stdlib.h>
#include <string.h>

/* HKCR's own values are those of HKLM\Software\Classes; HKU has none. */
static int virtual_target(reg_key *key, reg_key **out)
{
    *out = NULL;
    if (key->kind == KH_HKU)
        return ERROR_FILE_NOT_FOUND;
    reg_key *lm;
    int rc = reg_key_open_root(key->ctx, REG_ROOT_HKLM, &lm);
    if (rc)
        return rc;
    rc = reg_key_open(lm, "Software\\Classes", 0, out);
    reg_key_close(lm);
    return rc;
}

/* value_key - the values index key of name under id; *units gets the name's length. */
static int value_key(uint64_t id, const char *name, uint8_t *k, size_t *klen, size_t *units)
{
    reg_be64(k, id);
    size_t fklen;
    if (!name)
        name = "";
    int rc = reg_foldkey(name, strlen(name), k + 8, &fklen, units);
    if (rc)
        return rc;
    if (*units > REG_MAX_VALUE_NAME)
        return ERROR_INVALID_PARAMETER;
    *klen = 8 + fklen;
    return ERROR_SUCCESS;
}

/* handle_live - a cheap check on the handle itself, without reading its record. */
static bool handle_live(reg_key *key)
{
    if ((key->flags & KF_VOLATILE) && memcmp(key->boot, key->ctx->boot, 16))
        return false;
    if ((key->flags & KF_OWNED) && !reg_owner_alive(key->hive, key->token, key->flags & KF_SHARED))
        return false;
    return true;
}

int reg_value_get(reg_key *key, const char *name, uint32_t *type, buf *data)
{
    if (!key)
        return ERROR_INVALID_HANDLE;
    if (key->kind != KH_REAL) {
        reg_key *t;
        int rc = virtual_target(key, &t);
        if (rc)
            return rc;
        rc = reg_value_get(t, name, type, data);
        reg_key_close(t);
        return rc;
    }
    if (!handle_live(key))
        return ERROR_KEY_DELETED;
    uint8_t k[8 + REG_FOLDKEY_MAX];
    size_t klen, units;
    int rc = value_key(key->id, name, k, &klen, &units);
    if (rc)
        return rc == ERROR_INVALID_PARAMETER ? ERROR_FILE_NOT_FOUND : rc;
    reg_hive *h = key->hive;
    MDB_txn *txn;
    if ((rc = reg_hive_rtxn(h, &txn)))
        return rc;
    MDB_val mk = {klen, k}, mv;
    int mrc = mdb_get(txn, h->db_values, &mk, &mv);
    if (mrc == 0) {
        struct valrec vr;
        if (mv.mv_size < sizeof vr) {
            rc = ERROR_BADDB;
        } else {
            memcpy(&vr, mv.mv_data, sizeof vr);
            size_t off = sizeof vr + 2u * vr.name_units;
            if (off > mv.mv_size) {
                rc = ERROR_BADDB;
            } else {
                if (type)
                    *type = vr.type;
                if (data) {
                    data->len = 0;
                    if (buf_add(data, (uint8_t *)mv.mv_data + off, mv.mv_size - off))
                        rc = ERROR_NOT_ENOUGH_MEMORY;
                }
            }
        }
    } else if (mrc == MDB_NOTFOUND) {
        /* Ids are never reused: no value may also mean no key. */
        rc = reg_key_check(key, txn, NULL);
        if (!rc)
            rc = ERROR_FILE_NOT_FOUND;
    } else {
        rc = reg_mdb_err(mrc);
    }
    reg_hive_rtxn_done(h, txn);
    return rc;
}

int reg_value_set(reg_key *key, const char *name, uint32_t type, const void *data, size_t len)
{
    if (!key)
        return ERROR_INVALID_HANDLE;
    if (!data && len)
        return ERROR_NOACCESS;
    if (len > REG_MAX_DATA)
        return ERROR_INVALID_PARAMETER;
    if (key->kind != KH_REAL) {
        reg_key *t;
        int rc = key->kind == KH_HKU ? ERROR_ACCESS_DENIED : virtual_target(key, &t);
        if (rc)
            return rc;
        rc = reg_value_set(t, name, type, data, len);
        reg_key_close(t);
        return rc;
    }
    if (!name)
        name = "";
    uint8_t k[8 + REG_FOLDKEY_MAX];
    size_t klen, units;
    int rc = value_key(key->id, name, k, &klen, &units);
    if (rc)
        return rc;
    buf name16 = BUF_INIT;
    if (base_utf8_to_utf16(name, strlen(name), &name16))
        return ERROR_NOT_ENOUGH_MEMORY;
    reg_hive *h = key->hive;
    MDB_txn *txn;
    bool own;
    if ((rc = reg_hive_wbegin(h, &txn, &own))) {
        buf_free(&name16);
        return rc;
    }
    struct keyrec rec;
    rc = reg_key_check(key, txn, &rec);
    MDB_val mk = {klen, k}, mv;
    struct valrec vr = {0};
    bool is_new = true;
    if (!rc) {
        int mrc = mdb_get(txn, h->db_values, &mk, &mv);
        if (mrc == 0 && mv.mv_size >= sizeof vr) {
            memcpy(&vr, mv.mv_data, sizeof vr);
            is_new = false;
        } else if (mrc && mrc != MDB_NOTFOUND) {
            rc = reg_mdb_err(mrc);
        }
    }
    if (!rc && is_new)
        vr.seq = rec.next_seq;
    vr.type = type;
    vr.name_units = (uint32_t)units;
    if (!rc) {
        MDB_val nv = {sizeof vr + name16.len + len, NULL};
        rc = reg_mdb_err(mdb_put(txn, h->db_values, &mk, &nv, MDB_RESERVE));
        if (!rc) {
            uint8_t *p = nv.mv_data;
            memcpy(p, &vr, sizeof vr);
            if (name16.len)
                memcpy(p + sizeof vr, name16.data, name16.len);
            if (len)
                memcpy(p + sizeof vr + name16.len, data, len);
        }
    }
    if (!rc && is_new) {
        uint8_t ok[12];
        reg_be64(ok, key->id);
        ok[8] = (uint8_t)(vr.seq >> 24);
        ok[9] = (uint8_t)(vr.seq >> 16);
        ok[10] = (uint8_t)(vr.seq >> 8);
        ok[11] = (uint8_t)vr.seq;
        MDB_val okv = {12, ok}, fkv = {klen - 8, k + 8};
        rc = reg_mdb_err(mdb_put(txn, h->db_vorder, &okv, &fkv, 0));
    }
    if (!rc) {
        /* Rewrite the key record for its time and, for a new value, the next sequence. */
        MDB_val raw;
        rc = reg_keyrec_get(h, txn, key->id, &rec, &raw);
        if (!rc) {
            uint8_t *copy = malloc(raw.mv_size);
            if (!copy) {
                rc = ERROR_NOT_ENOUGH_MEMORY;
            } else {
                memcpy(copy, raw.mv_data, raw.mv_size);
                rec.last_write = base_filetime_now();
                if (is_new)
                    rec.next_seq++;
                memcpy(copy, &rec, sizeof rec);
                uint8_t kk[8];
                reg_be64(kk, key->id);
                MDB_val kkv = {8, kk}, rv = {raw.mv_size, copy};
                rc = reg_mdb_err(mdb_put(txn, h->db_keys, &kkv, &rv, 0));
                free(copy);
            }
        }
    }
    if (!rc)
        rc = reg_journal_add(h, txn, key->id, REG_NOTIFY_CHANGE_LAST_SET);
    buf_free(&name16);
    return reg_hive_wend(h, txn, own, rc);
}

int reg_value_delete(reg_key *key, const char *name)
{
    if (!key)
        return ERROR_INVALID_HANDLE;
    if (key->kind != KH_REAL) {
        reg_key *t;
        int rc = key->kind == KH_HKU ? ERROR_FILE_NOT_FOUND : virtual_target(key, &t);
        if (rc)
            return rc;
        rc = reg_value_delete(t, name);
        reg_key_close(t);
        return rc;
    }
    uint8_t k[8 + REG_FOLDKEY_MAX];
    size_t klen, units;
    int rc = value_key(key->id, name, k, &klen, &units);
    if (rc)
        return rc == ERROR_INVALID_PARAMETER ? ERROR_FILE_NOT_FOUND : rc;
    reg_hive *h = key->hive;
    MDB_txn *txn;
    bool own;
    if ((rc = reg_hive_wbegin(h, &txn, &own)))
        return rc;
    rc = reg_key_check(key, txn, NULL);
    MDB_val mk = {klen, k}, mv;
    if (!rc) {
        int mrc = mdb_get(txn, h->db_values, &mk, &mv);
        if (mrc)
            rc = mrc == MDB_NOTFOUND ? ERROR_FILE_NOT_FOUND : reg_mdb_err(mrc);
    }
    if (!rc) {
        struct valrec vr;
        memcpy(&vr, mv.mv_data, sizeof vr);
        uint8_t ok[12];
        reg_be64(ok, key->id);
        ok[8] = (uint8_t)(vr.seq >> 24);
        ok[9] = (uint8_t)(vr.seq >> 16);
        ok[10] = (uint8_t)(vr.seq >> 8);
        ok[11] = (uint8_t)vr.seq;
        MDB_val okv = {12, ok};
        int mrc = mdb_del(txn, h->db_vorder, &okv, NULL);
        if (mrc && mrc != MDB_NOTFOUND)
            rc = reg_mdb_err(mrc);
        if (!rc)
            rc = reg_mdb_err(mdb_del(txn, h->db_values, &mk, NULL));
    }
    if (!rc)
        rc = reg_journal_add(h, txn, key->id, REG_NOTIFY_CHANGE_LAST_SET);
    return reg_hive_wend(h, txn, own, rc);
}

int reg_key_enum_values(reg_key *key, reg_value_fn fn, void *arg)
{
    if (!key)
        return ERROR_INVALID_HANDLE;
    if (key->kind != KH_REAL) {
        reg_key *t;
        int rc = virtual_target(key, &t);
        if (rc)
            return rc == ERROR_FILE_NOT_FOUND ? ERROR_SUCCESS : rc;
        rc = reg_key_enum_values(t, fn, arg);
        reg_key_close(t);
        return rc;
    }
    reg_hive *h = key->hive;
    MDB_txn *txn;
    int rc = reg_hive_rtxn(h, &txn);
    if (rc)
        return rc;
    rc = reg_key_check(key, txn, NULL);
    MDB_cursor *cur = NULL;
    if (!rc)
        rc = reg_mdb_err(mdb_cursor_open(txn, h->db_vorder, &cur));
    uint8_t pre[8];
    reg_be64(pre, key->id);
    MDB_val ok = {8, pre}, fk;
    buf name = BUF_INIT, copy = BUF_INIT;
    int crc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &ok, &fk, MDB_SET_RANGE);
    while (!rc && !crc && ok.mv_size == 12 && !memcmp(ok.mv_data, pre, 8)) {
        uint8_t vk[8 + REG_FOLDKEY_MAX];
        if (fk.mv_size > REG_FOLDKEY_MAX) {
            rc = ERROR_BADDB;
            break;
        }
        memcpy(vk, pre, 8);
        memcpy(vk + 8, fk.mv_data, fk.mv_size);
        MDB_val vkv = {8 + fk.mv_size, vk}, vv;
        if (mdb_get(txn, h->db_values, &vkv, &vv) == 0 && vv.mv_size >= sizeof(struct valrec)) {
            struct valrec vr;
            memcpy(&vr, vv.mv_data, sizeof vr);
            size_t off = sizeof vr + 2u * vr.name_units;
            if (off > vv.mv_size) {
                rc = ERROR_BADDB;
                break;
            }
            name.len = 0;
            if (base_utf16_to_utf8((uint8_t *)vv.mv_data + sizeof vr, vr.name_units, &name) ||
                !buf_cstr(&name)) {
                rc = ERROR_NOT_ENOUGH_MEMORY;
                break;
            }
            const uint8_t *data = (uint8_t *)vv.mv_data + off;
            /* Inside a write transaction the callback may write, and a write moves what is
             * on the page: hand it a copy then. */
            if (txn == h->wtxn) {
                copy.len = 0;
                if (buf_add(&copy, data, vv.mv_size - off)) {
                    rc = ERROR_NOT_ENOUGH_MEMORY;
                    break;
                }
                data = copy.data;
            }
            rc = fn(arg, (char *)name.data, vr.type, data, vv.mv_size - off);
        }
        if (!rc)
            crc = mdb_cursor_get(cur, &ok, &fk, MDB_NEXT);
    }
    if (!rc && crc && crc != MDB_NOTFOUND)
        rc = reg_mdb_err(crc);
    buf_free(&name);
    buf_free(&copy);
    if (cur)
        mdb_cursor_close(cur);
    reg_hive_rtxn_done(h, txn);
    return rc;
}

/* --- UTF-8 helpers -------------------------------------------------------------------- */

int reg_value_set_sz(reg_key *key, const char *name, uint32_t type, const char *s)
{
    buf w = BUF_INIT;
    if (base_utf8_to_utf16(s, strlen(s), &w) || buf_add_u16(&w, 0)) {
        buf_free(&w);
        return ERROR_INVALID_PARAMETER;
    }
    int rc = reg_value_set(key, name, type, w.data, w.len);
    buf_free(&w);
    return rc;
}

int reg_value_get_sz(reg_key *key, const char *name, buf *out)
{
    uint32_t type;
    buf raw = BUF_INIT;
    int rc = reg_value_get(key, name, &type, &raw);
    if (!rc && type != REG_SZ && type != REG_EXPAND_SZ)
        rc = ERROR_INVALID_DATA;
    if (!rc) {
        size_t units = raw.len / 2, n = 0;
        while (n < units && (raw.data[2 * n] || raw.data[2 * n + 1]))
            n++;
        out->len = 0;
        if (base_utf16_to_utf8(raw.data, n, out) || !buf_cstr(out))
            rc = ERROR_NOT_ENOUGH_MEMORY;
    }
    buf_free(&raw);
    return rc;
}

int reg_value_set_dword(reg_key *key, const char *name, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return reg_value_set(key, name, REG_DWORD, le, 4);
}

int reg_value_get_dword(reg_key *key, const char *name, uint32_t *v)
{
    uint32_t type;
    buf raw = BUF_INIT;
    int rc = reg_value_get(key, name, &type, &raw);
    if (!rc && (type != REG_DWORD || raw.len != 4))
        rc = ERROR_INVALID_DATA;
    if (!rc)
        *v = (uint32_t)raw.data[0] | (uint32_t)raw.data[1] << 8 | (uint32_t)raw.data[2] << 16 |
             (uint32_t)raw.data[3] << 24;
    buf_free(&raw);
    return rc;
}

int reg_value_set_multi_sz(reg_key *key, const char *name, const char *const *strs, size_t n)
{
    buf w = BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = base_utf8_to_utf16(strs[i], strlen(strs[i]), &w) || buf_add_u16(&w, 0);
    if (!rc)
        rc = buf_add_u16(&w, 0);
    if (rc) {
        buf_free(&w);
        return ERROR_INVALID_PARAMETER;
    }
    rc = reg_value_set(key, name, REG_MULTI_SZ, w.data, w.len);
    buf_free(&w);
    return rc;
}
