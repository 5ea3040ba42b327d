/* hive.c - contexts and hives: one LMDB environment per hive, its transactions, and the
 * purge of volatile keys from an earlier boot and of keys whose owner died. */
#include "reg/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static char *xasprintf_path(const char *a, const char *b, const char *c)
{
    buf p = BUF_INIT;
    if (buf_printf(&p, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : ""))
        return NULL;
    return buf_detach(&p, NULL);
}

int reg_ctx_open(const char *root, reg_ctx **out)
{
    *out = NULL;
    reg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ERROR_NOT_ENOUGH_MEMORY;
    /* Always absolute: a service changes directory, and paths made from the root are
     * stored (RootDir). */
    const char *given = root ? root : base_state_root();
    if (given[0] == '/') {
        ctx->root = strdup(given);
    } else {
        char cwd[PATH_MAX];
        buf abs = BUF_INIT;
        if (getcwd(cwd, sizeof cwd) && !buf_printf(&abs, "%s/%s", cwd, given))
            ctx->root = buf_detach(&abs, NULL);
        buf_free(&abs);
    }
    ctx->regdir = ctx->root ? xasprintf_path(ctx->root, "registry", NULL) : NULL;
    if (!ctx->root || !ctx->regdir) {
        reg_ctx_close(ctx);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    ctx->euid = ctx->uid = geteuid();
    reg_uid_sid(ctx->uid, ctx->sid);
    struct stat st;
    ctx->privileged = ctx->euid == 0 || (stat(ctx->root, &st) == 0 && st.st_uid == ctx->euid);
    if (base_boot_id(ctx->boot))
        memset(ctx->boot, 0xff, sizeof ctx->boot); /* no /proc: volatile keys live on */
    *out = ctx;
    return ERROR_SUCCESS;
}

int reg_ctx_set_user(reg_ctx *ctx, uid_t uid)
{
    if (uid != ctx->euid && ctx->euid != 0)
        return ERROR_ACCESS_DENIED;
    ctx->uid = uid;
    reg_uid_sid(uid, ctx->sid);
    return ERROR_SUCCESS;
}

const char *reg_ctx_user_sid(const reg_ctx *ctx)
{
    return ctx->sid;
}

const char *reg_ctx_root_dir(const reg_ctx *ctx)
{
    return ctx->root;
}

static void hive_close(reg_hive *h)
{
    if (h->wtxn)
        mdb_txn_abort(h->wtxn);
    if (h->rtxn)
        mdb_txn_abort(h->rtxn);
    for (size_t i = 0; i < h->nowners; i++)
        if (h->owners[i].fd >= 0)
            close(h->owners[i].fd);
    free(h->owners);
    if (h->env)
        mdb_env_close(h->env);
    free(h->name);
    free(h->dir);
    free(h);
}

const char *reg_ctx_damaged(const reg_ctx *ctx)
{
    return ctx->damaged;
}

void reg_ctx_close(reg_ctx *ctx)
{
    if (!ctx)
        return;
    free(ctx->damaged);
    while (ctx->hives) {
        reg_hive *h = ctx->hives;
        ctx->hives = h->next;
        hive_close(h);
    }
    free(ctx->root);
    free(ctx->regdir);
    free(ctx);
}

/* sid_uid - the uid a "S-1-22-1-<uid>" hive name belongs to, or -1. */
static long sid_uid(const char *name)
{
    if (strncasecmp(name, "S-1-22-1-", 9) || !name[9])
        return -1;
    char *end;
    unsigned long v = strtoul(name + 9, &end, 10);
    if (*end || v > 0x7fffffff)
        return -1;
    return (long)v;
}

/* hku_lookup - the stored name of an HKU hive matching name case-insensitively, or NULL. */
static char *hku_lookup(const char *hkudir, const char *name)
{
    DIR *d = opendir(hkudir);
    if (!d)
        return NULL;
    char *found = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] != '.' && !strcasecmp(e->d_name, name)) {
            found = strdup(e->d_name);
            break;
        }
    }
    closedir(d);
    return found;
}

static bool hive_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= REG_MAX_KEY_NAME && !strchr(name, '/') && strcmp(name, ".") &&
           strcmp(name, "..") && name[0] != '.';
}

/* hive_init_dbs - open the databases; create them and the root key when the hive is new. */
static int hive_init_dbs(reg_hive *h)
{
    static const char *names[] = {"keys",  "children", "values",  "vorder",
                                  "owned", "volatile", "journal", "meta"};
    MDB_dbi *dbis[] = {&h->db_keys,  &h->db_children, &h->db_values,  &h->db_vorder,
                       &h->db_owned, &h->db_volatile, &h->db_journal, &h->db_meta};
    MDB_txn *txn;
    int rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return reg_mdb_err(rc);
    size_t i;
    for (i = 0; i < 8; i++)
        if ((rc = mdb_dbi_open(txn, names[i], 0, dbis[i])))
            break;
    if (i == 8) {
        MDB_val k = {7, "version"}, v;
        rc = mdb_get(txn, h->db_meta, &k, &v);
        uint32_t ver = 0;
        if (!rc && v.mv_size == 4)
            memcpy(&ver, v.mv_data, 4);
        mdb_txn_commit(txn); /* commit keeps the dbi handles */
        if (rc)
            return ERROR_BADDB;
        return ver == REG_STORE_VERSION ? ERROR_SUCCESS : ERROR_BADDB;
    }
    mdb_txn_abort(txn);
    if (rc != MDB_NOTFOUND)
        return reg_mdb_err(rc);
    if (!h->writable)
        return ERROR_FILE_NOT_FOUND;
    /* A new hive: create the databases, the meta records and the root key at once. */
    if ((rc = mdb_txn_begin(h->env, NULL, 0, &txn)))
        return reg_mdb_err(rc);
    for (i = 0; i < 8 && !rc; i++)
        rc = mdb_dbi_open(txn, names[i], MDB_CREATE, dbis[i]);
    MDB_val k = {7, "version"}, v;
    if (!rc && mdb_get(txn, h->db_meta, &k, &v) == MDB_NOTFOUND) {
        uint32_t ver = REG_STORE_VERSION;
        uint64_t next = REG_ROOT_ID + 1, seq = 0;
        MDB_val kv[3][2] = {
            {{7, "version"}, {4, &ver}}, {{7, "next_id"}, {8, &next}}, {{3, "seq"}, {8, &seq}}};
        for (i = 0; i < 3 && !rc; i++)
            rc = mdb_put(txn, h->db_meta, &kv[i][0], &kv[i][1], 0);
        MDB_val bk = {4, "boot"}, bv = {16, h->ctx->boot};
        if (!rc)
            rc = mdb_put(txn, h->db_meta, &bk, &bv, 0);
        struct keyrec rec = {0};
        rec.last_write = base_filetime_now();
        uint8_t id[8];
        reg_be64(id, REG_ROOT_ID);
        MDB_val ik = {8, id}, iv = {sizeof rec, &rec};
        if (!rc)
            rc = mdb_put(txn, h->db_keys, &ik, &iv, 0);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return reg_mdb_err(rc);
    }
    return reg_mdb_err(mdb_txn_commit(txn));
}

/* hive_size_check - MDB_CORRUPTED when the data file is shorter than the pages its meta page
 * says are in use: LMDB maps the file and would read past its end (SIGBUS) on the first lookup
 * of a file cut short on a page boundary. Files only grow, so a check at open holds. */
static int hive_size_check(reg_hive *h)
{
    MDB_envinfo info;
    MDB_stat st;
    int fd;
    int rc = mdb_env_info(h->env, &info);
    rc = rc ? rc : mdb_env_stat(h->env, &st);
    rc = rc ? rc : mdb_env_get_fd(h->env, &fd);
    struct stat fs;
    if (!rc && fstat(fd, &fs))
        rc = errno;
    if (!rc && (uint64_t)fs.st_size < ((uint64_t)info.me_last_pgno + 1) * st.ms_psize)
        rc = MDB_CORRUPTED;
    return rc;
}

static int hive_open(reg_ctx *ctx, const char *hkuname, bool create, reg_hive **out, bool *created)
{
    *out = NULL;
    *created = false;
    char *hkudir = xasprintf_path(ctx->regdir, "HKU", NULL);
    char *stored = NULL, *dir = NULL;
    int rc = ERROR_SUCCESS;
    long owner_uid = -1;
    if (!hkudir)
        return ERROR_NOT_ENOUGH_MEMORY;
    if (hkuname) {
        if (!hive_name_ok(hkuname)) {
            rc = ERROR_FILE_NOT_FOUND;
            goto out;
        }
        stored = hku_lookup(hkudir, hkuname);
        owner_uid = sid_uid(hkuname);
        if (!stored) {
            if (!create) {
                rc = ERROR_FILE_NOT_FOUND;
                goto out;
            }
            /* A user may make only their own hive; root or the state root's owner any. */
            if (!ctx->privileged && !(owner_uid >= 0 && (uid_t)owner_uid == ctx->euid)) {
                rc = ERROR_ACCESS_DENIED;
                goto out;
            }
            stored = strdup(hkuname);
        }
        dir = stored ? xasprintf_path(hkudir, stored, NULL) : NULL;
    } else {
        stored = strdup("HKLM");
        dir = xasprintf_path(ctx->regdir, "HKLM", NULL);
    }
    if (!stored || !dir) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || !create) {
            rc = errno == ENOENT ? ERROR_FILE_NOT_FOUND : reg_errno_to_win32(errno);
            goto out;
        }
        int e = base_mkdir_p(ctx->regdir, 0755);
        if (e) {
            rc = reg_errno_to_win32(e);
            goto out;
        }
        /* HKU is shared by all users like /tmp: each makes its own 0700 hive in it. Whoever
         * makes the registry makes HKU too, so that users need no help to start. */
        if (mkdir(hkudir, 0755) == 0)
            chmod(hkudir, 01777);
        if (hkuname) {
            if (mkdir(dir, 0700)) {
                /* Somebody made it just now: theirs is the new hive, ours an open. */
                if (errno != EEXIST) {
                    rc = reg_errno_to_win32(errno);
                    goto out;
                }
            } else {
                *created = true;
            }
            if (ctx->euid == 0 && owner_uid >= 0 && chown(dir, (uid_t)owner_uid, (gid_t)-1)) {
                rc = reg_errno_to_win32(errno);
                goto out;
            }
        } else if (mkdir(dir, 0755)) {
            if (errno != EEXIST) {
                rc = reg_errno_to_win32(errno);
                goto out;
            }
        } else {
            *created = true;
        }
        if (stat(dir, &st)) {
            rc = reg_errno_to_win32(errno);
            goto out;
        }
    }
    /* A user's hive must belong to that user: refuse one somebody else made in their name. */
    if (owner_uid >= 0 && st.st_uid != (uid_t)owner_uid) {
        rc = ERROR_ACCESS_DENIED;
        goto out;
    }
    reg_hive *h = calloc(1, sizeof *h);
    if (!h) {
        rc = ERROR_NOT_ENOUGH_MEMORY;
        goto out;
    }
    h->ctx = ctx;
    h->hku = hkuname != NULL;
    h->name = stored;
    h->dir = dir;
    stored = dir = NULL;
    char *datafile = xasprintf_path(h->dir, "data.mdb", NULL);
    bool exists = datafile && access(datafile, F_OK) == 0;
    h->writable = access(h->dir, W_OK) == 0 && (!exists || access(datafile, W_OK) == 0);
    /* An empty data file would be made a new, empty hive by LMDB: every key lost in silence.
     * It is damage once the hive was opened before (its notify file is made after the first
     * open); an empty one without it is a first open that died before LMDB wrote to it. */
    struct stat ds;
    char *notifyfile = exists ? xasprintf_path(h->dir, "notify", NULL) : NULL;
    if (exists && stat(datafile, &ds) == 0 && ds.st_size == 0 && notifyfile &&
        access(notifyfile, F_OK) == 0) {
        free(ctx->damaged);
        ctx->damaged = datafile;
        datafile = NULL;
        free(notifyfile);
        rc = ERROR_BADDB;
        hive_close(h);
        goto out;
    }
    free(notifyfile);
    free(datafile);
    if (!exists && !h->writable) {
        rc = access(h->dir, R_OK | X_OK) ? ERROR_ACCESS_DENIED : ERROR_FILE_NOT_FOUND;
        hive_close(h);
        goto out;
    }
    if (access(h->dir, R_OK | X_OK)) {
        rc = ERROR_ACCESS_DENIED;
        hive_close(h);
        goto out;
    }
    int mrc = mdb_env_create(&h->env);
    if (!mrc)
        mrc = mdb_env_set_maxdbs(h->env, 8);
    if (!mrc)
        mrc = mdb_env_set_mapsize(h->env, REG_MAPSIZE);
    if (!mrc)
        mrc = mdb_env_set_maxreaders(h->env, 1022);
    /* MDB_NORDAHEAD (madvise MADV_RANDOM on the map): a lookup touches a few pages scattered
     * over the file, and with readahead each page fault of a cold hive reads the device's
     * whole readahead window around it (8 MiB on the development VM): a first `reg query` on
     * a 300 MB hive read 70-80 MB for its 9-10 pages. */
    if (!mrc)
        mrc =
            mdb_env_open(h->env, h->dir, MDB_NOTLS | MDB_NORDAHEAD | (h->writable ? 0 : MDB_RDONLY),
                         hkuname ? 0600 : 0644);
    if (!mrc)
        mrc = hive_size_check(h);
    if (mrc) {
        rc = mrc == EACCES ? ERROR_ACCESS_DENIED : reg_mdb_err(mrc);
        if (rc == ERROR_BADDB) {
            free(ctx->damaged);
            ctx->damaged = xasprintf_path(h->dir, "data.mdb", NULL);
        }
        hive_close(h);
        goto out;
    }
    if (!hkuname && h->writable) {
        /* Readers of HKLM must register in the lock file, so it is writable by all. */
        char *lock = xasprintf_path(h->dir, "lock.mdb", NULL);
        if (lock && stat(lock, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0777) != 0666)
            chmod(lock, 0666);
        free(lock);
    }
    if (h->writable) {
        /* Watchers inotify this file, so it must exist before the first change. */
        char *nf = xasprintf_path(h->dir, "notify", NULL);
        int fd = nf ? open(nf, O_WRONLY | O_CREAT | O_CLOEXEC, 0644) : -1;
        if (fd >= 0)
            close(fd);
        free(nf);
        /* Root making a user's hive: every file in it must be the user's. */
        if (ctx->euid == 0 && owner_uid >= 0) {
            static const char *files[] = {"data.mdb", "lock.mdb", "notify", "owners"};
            char *p = xasprintf_path(h->dir, "owners", NULL);
            if (p)
                mkdir(p, 0755);
            free(p);
            for (size_t i = 0; i < 4; i++) {
                p = xasprintf_path(h->dir, files[i], NULL);
                if (p && lchown(p, (uid_t)owner_uid, (gid_t)-1) && errno != ENOENT) {
                    rc = reg_errno_to_win32(errno);
                    free(p);
                    hive_close(h);
                    goto out;
                }
                free(p);
            }
        }
    }
    int dead;
    mdb_reader_check(h->env, &dead);
    if ((rc = hive_init_dbs(h))) {
        hive_close(h);
        goto out;
    }
    h->next = ctx->hives;
    ctx->hives = h;
    *out = h;
out:
    free(hkudir);
    free(stored);
    free(dir);
    return rc;
}

int reg_hive_get(reg_ctx *ctx, const char *hkuname, bool create, reg_hive **out, bool *created)
{
    bool dummy;
    if (!created)
        created = &dummy;
    *created = false;
    for (reg_hive *h = ctx->hives; h; h = h->next) {
        if (!hkuname ? !h->hku : (h->hku && !strcasecmp(h->name, hkuname))) {
            *out = h;
            return ERROR_SUCCESS;
        }
    }
    return hive_open(ctx, hkuname, create, out, created);
}

/* reg_hive_drop - remove an HKU hive altogether: close it here and delete its files. */
static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) ? errno : 0;
}

int reg_hive_drop(reg_ctx *ctx, const char *hkuname)
{
    reg_hive *h;
    int rc = reg_hive_get(ctx, hkuname, false, &h, NULL);
    if (rc)
        return rc;
    if (!h->writable || !ctx->privileged)
        return ERROR_ACCESS_DENIED;
    char *dir = strdup(h->dir);
    if (!dir)
        return ERROR_NOT_ENOUGH_MEMORY;
    for (reg_hive **pp = &ctx->hives; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    hive_close(h);
    int e = nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return e ? reg_errno_to_win32(e > 0 ? e : errno) : ERROR_SUCCESS;
}

/* --- transactions --------------------------------------------------------------------- */

int reg_hive_rtxn(reg_hive *h, MDB_txn **txn)
{
    if (h->wtxn) {
        *txn = h->wtxn;
        return ERROR_SUCCESS;
    }
    int rc;
    if (h->rtxn) {
        rc = mdb_txn_renew(h->rtxn);
        if (!rc) {
            *txn = h->rtxn;
            h->rtxn = NULL;
            return ERROR_SUCCESS;
        }
        mdb_txn_abort(h->rtxn);
        h->rtxn = NULL;
    }
    rc = mdb_txn_begin(h->env, NULL, MDB_RDONLY, txn);
    return reg_mdb_err(rc);
}

void reg_hive_rtxn_done(reg_hive *h, MDB_txn *txn)
{
    if (txn == h->wtxn)
        return;
    mdb_txn_reset(txn);
    if (h->rtxn)
        mdb_txn_abort(h->rtxn);
    h->rtxn = txn;
}

int reg_hive_wbegin(reg_hive *h, MDB_txn **txn, bool *own)
{
    if (h->wtxn) {
        *txn = h->wtxn;
        *own = false;
        return ERROR_SUCCESS;
    }
    if (!h->writable)
        return ERROR_ACCESS_DENIED;
    int rc = mdb_txn_begin(h->env, NULL, 0, txn);
    if (rc)
        return reg_mdb_err(rc);
    h->wtxn = *txn;
    h->dirty = false;
    *own = true;
    if ((rc = reg_purge_stale(h, *txn))) {
        mdb_txn_abort(*txn);
        h->wtxn = NULL;
        return rc;
    }
    return ERROR_SUCCESS;
}

/* touch_notify - wake watchers: they inotify the hive's notify file. */
static void touch_notify(reg_hive *h)
{
    char *p = xasprintf_path(h->dir, "notify", NULL);
    if (!p)
        return;
    if (utimensat(AT_FDCWD, p, NULL, 0) && errno == ENOENT) {
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
    }
    free(p);
}

int reg_hive_wend(reg_hive *h, MDB_txn *txn, bool own, int rc)
{
    if (!own)
        return rc;
    h->wtxn = NULL;
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    int mrc = mdb_txn_commit(txn);
    if (mrc)
        return reg_mdb_err(mrc);
    if (h->dirty)
        touch_notify(h);
    return ERROR_SUCCESS;
}

/* --- liveness and purge --------------------------------------------------------------- */

static void token_hex(const uint8_t token[REG_TOKEN_LEN], char out[2 * REG_TOKEN_LEN + 1])
{
    for (int i = 0; i < REG_TOKEN_LEN; i++)
        snprintf(out + 2 * i, 3, "%02x", token[i]);
}

char *reg_owner_path(reg_hive *h, const uint8_t token[REG_TOKEN_LEN], bool shared)
{
    char hex[2 * REG_TOKEN_LEN + 2];
    hex[0] = 's';
    token_hex(token, hex + (shared ? 1 : 0));
    return xasprintf_path(h->dir, "owners", hex);
}

bool reg_owner_alive(reg_hive *h, const uint8_t token[REG_TOKEN_LEN], bool shared)
{
    struct owner_cache *c = NULL;
    for (size_t i = 0; i < h->nowners; i++) {
        if (h->owners[i].shared == shared && !memcmp(h->owners[i].token, token, REG_TOKEN_LEN)) {
            c = &h->owners[i];
            break;
        }
    }
    if (!c) {
        struct owner_cache *n = realloc(h->owners, (h->nowners + 1) * sizeof *n);
        if (!n)
            return true; /* cannot tell: do not make a live key vanish */
        h->owners = n;
        c = &n[h->nowners++];
        memcpy(c->token, token, REG_TOKEN_LEN);
        c->shared = shared;
        c->dead = false;
        c->fd = -1;
    }
    if (c->dead)
        return false;
    if (c->fd < 0) {
        char *p = reg_owner_path(h, token, shared);
        c->fd = p ? open(p, O_RDONLY | O_CLOEXEC) : -1;
        int e = errno;
        free(p);
        if (c->fd < 0) {
            if (e != ENOENT)
                return true;
            /* No lock file: an exclusive owner died and was purged; a shared owner may not
             * have been joined yet, so it is looked for again next time. */
            c->dead = !shared;
            return false;
        }
    }
    /* An exclusive owner holds a write lock for its whole life and a read lock somebody
     * else holds proves nothing; holders of a shared owner hold read locks, in a file only
     * the hive's own user can open. The kernel drops either on any death. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(c->fd, F_OFD_GETLK, &fl))
        return true;
    if (shared)
        return fl.l_type != F_UNLCK;
    if (fl.l_type == F_WRLCK)
        return true;
    c->dead = true;
    close(c->fd);
    c->fd = -1;
    return false;
}

int reg_purge_stale(reg_hive *h, MDB_txn *txn)
{
    int rc = 0;
    MDB_val k = {4, "boot"}, v;
    if (mdb_get(txn, h->db_meta, &k, &v) || v.mv_size != 16 ||
        memcmp(v.mv_data, h->ctx->boot, 16)) {
        /* First write since a reboot: volatile keys of the earlier boot go now. */
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(txn, h->db_volatile, &cur)))
            return reg_mdb_err(rc);
        uint64_t ids[64];
        size_t n = 0;
        MDB_val ck, cv;
        int crc = mdb_cursor_get(cur, &ck, &cv, MDB_FIRST);
        while (!crc && n < 64) {
            if (ck.mv_size == 8)
                ids[n++] = reg_rd_be64(ck.mv_data);
            crc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
        }
        mdb_cursor_close(cur);
        for (size_t i = 0; i < n && !rc; i++) {
            struct keyrec rec;
            if (reg_keyrec_get(h, txn, ids[i], &rec, NULL) == ERROR_SUCCESS &&
                memcmp(rec.boot, h->ctx->boot, 16))
                rc = reg_tree_delete(h, txn, ids[i], false);
        }
        if (rc)
            return rc;
        if (crc == MDB_NOTFOUND) {
            MDB_val bv = {16, h->ctx->boot};
            if ((rc = mdb_put(txn, h->db_meta, &k, &bv, 0)))
                return reg_mdb_err(rc);
        }
    }
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, h->db_owned, &cur)))
        return reg_mdb_err(rc);
    struct {
        uint8_t token[REG_TOKEN_LEN];
        uint64_t id;
        bool shared;
    } dead[32];
    size_t n = 0;
    MDB_val ck, cv;
    int crc = mdb_cursor_get(cur, &ck, &cv, MDB_FIRST);
    while (!crc && n < 32) {
        bool shared = cv.mv_size >= 1 && ((uint8_t *)cv.mv_data)[0] == 1;
        if (ck.mv_size == REG_TOKEN_LEN + 8 && !reg_owner_alive(h, ck.mv_data, shared)) {
            memcpy(dead[n].token, ck.mv_data, REG_TOKEN_LEN);
            dead[n].id = reg_rd_be64((uint8_t *)ck.mv_data + REG_TOKEN_LEN);
            dead[n].shared = shared;
            n++;
        }
        crc = mdb_cursor_get(cur, &ck, &cv, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < n && !rc; i++) {
        struct keyrec rec;
        if (reg_keyrec_get(h, txn, dead[i].id, &rec, NULL) == ERROR_SUCCESS)
            rc = reg_tree_delete(h, txn, dead[i].id, false);
        uint8_t key[REG_TOKEN_LEN + 8];
        memcpy(key, dead[i].token, REG_TOKEN_LEN);
        reg_be64(key + REG_TOKEN_LEN, dead[i].id);
        MDB_val dk = {sizeof key, key};
        int drc = mdb_del(txn, h->db_owned, &dk, NULL);
        if (!rc && drc && drc != MDB_NOTFOUND)
            rc = reg_mdb_err(drc);
        char *p = reg_owner_path(h, dead[i].token, dead[i].shared);
        if (p)
            unlink(p);
        free(p);
    }
    h->purge_wanted = false;
    return rc;
}
