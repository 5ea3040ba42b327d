/* registry.c - benchmark of lib/reg: warm value reads against a raw LMDB get, durable and
 * batched writes, and enumeration of a key with many subkeys, on a fresh registry. */
#include "reg/reg.h"
#include "reg/store.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_READS 1000000u             /* warm reads wanted, library and raw alike */
#define BENCH_READ_ROUNDS 5u             /* library and raw reads alternate in rounds */
#define BENCH_READ_WARMUP 10000u         /* reads done before timing, to fill caches */
#define BENCH_SINGLE_WRITES 2000u        /* durable single-value transactions wanted */
#define BENCH_BATCH 1000u                /* sets per explicit transaction */
#define BENCH_BATCHES 20u                /* explicit transactions wanted */
#define BENCH_SUBKEYS 10000u             /* subkeys of the enumerated key */
#define BENCH_ENUM_ROUNDS 10u            /* full enumerations wanted */
#define BENCH_OPENS 200000u              /* open + read + close rounds wanted */
#define BENCH_TIME_LIMIT_NS 2000000000ll /* stop a measured loop after about 2 s */
#define BENCH_CHECK_EVERY 1024u          /* reads between two looks at the clock */
#define BENCH_NAME_MAX 64                /* room for a generated value or key name */

#define BENCH_KEY_SUB "Bench\\Key" /* under HKLM; the same key bench/registry.sh queries */
#define BENCH_VALUE "Name"
#define BENCH_DATA "C:\\Program Files\\IMS\\bin\\imsd.exe" /* a typical REG_SZ */

/* One measured row of the table; best_ns_per_op is the fastest round's, where there are
 * rounds. */
struct bench_row {
    const char *op;
    uint64_t count;
    int64_t ns;
    double best_ns_per_op;
};

/* bench_add_round - add one round of n operations in ns to row. */
static void bench_add_round(struct bench_row *row, uint64_t n, int64_t ns)
{
    row->count += n;
    row->ns += ns;
    double per = n ? (double)ns / (double)n : 0.0;
    if (n && (row->best_ns_per_op == 0.0 || per < row->best_ns_per_op))
        row->best_ns_per_op = per;
}

static int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void bench_print_row(const struct bench_row *r)
{
    double ms = (double)r->ns / 1e6;
    double us = r->count ? (double)r->ns / 1e3 / (double)r->count : 0.0;
    double ops = r->ns > 0 ? (double)r->count * 1e9 / (double)r->ns : 0.0;
    printf("%-40s %9" PRIu64 " %11.1f %11.3f %12.0f\n", r->op, r->count, ms, us, ops);
}

static int bench_fail(const char *what, int rc)
{
    fprintf(stderr, "registry bench: %s: %s (%d)\n", what, reg_strerror(rc), rc);
    return 1;
}

static int bench_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* bench_lib_reads - one round of warm reg_value_get on an open key: its share of
 * BENCH_READS, or of the time limit. */
static int bench_lib_reads(reg_key *key, struct bench_row *row)
{
    const uint64_t want = BENCH_READS / BENCH_READ_ROUNDS;
    const int64_t limit = BENCH_TIME_LIMIT_NS / BENCH_READ_ROUNDS;
    buf data = BUF_INIT;
    uint32_t type;
    int rc = ERROR_SUCCESS;
    for (unsigned i = 0; i < BENCH_READ_WARMUP && !rc; i++)
        rc = reg_value_get(key, BENCH_VALUE, &type, &data);
    uint64_t n = 0;
    int64_t t0 = bench_now_ns(), t = t0;
    while (!rc && n < want && t - t0 < limit) {
        for (unsigned j = 0; j < BENCH_CHECK_EVERY && n < want && !rc; j++, n++)
            rc = reg_value_get(key, BENCH_VALUE, &type, &data);
        t = bench_now_ns();
    }
    if (!rc && (type != REG_SZ || data.len != 2 * sizeof BENCH_DATA))
        rc = ERROR_INVALID_DATA; /* the read must have returned the value we stored */
    buf_free(&data);
    bench_add_round(row, n, t - t0);
    return rc;
}

/* bench_lib_opens - a whole lookup as a short-lived caller does it: open the key by path,
 * read one value, close the key. */
static int bench_lib_opens(reg_ctx *ctx, struct bench_row *row)
{
    buf data = BUF_INIT;
    int rc = ERROR_SUCCESS;
    uint64_t n = 0;
    int64_t t0 = bench_now_ns(), t = t0;
    while (!rc && n < BENCH_OPENS && t - t0 < BENCH_TIME_LIMIT_NS) {
        for (unsigned j = 0; j < BENCH_CHECK_EVERY && n < BENCH_OPENS && !rc; j++, n++) {
            reg_key *k;
            rc = reg_key_open_path(ctx, "HKLM\\" BENCH_KEY_SUB, REG_READ, &k);
            if (!rc) {
                rc = reg_value_get(k, BENCH_VALUE, NULL, &data);
                reg_key_close(k);
            }
        }
        t = bench_now_ns();
    }
    buf_free(&data);
    row->count = n;
    row->ns = t - t0;
    return rc;
}

/* raw_child - the id of parent's child name, looked up in the "children" database. */
static int raw_child(MDB_txn *txn, MDB_dbi children, uint64_t parent, const char *name,
                     uint64_t *id)
{
    uint8_t k[8 + REG_FOLDKEY_MAX];
    size_t fklen, units;
    reg_be64(k, parent);
    int rc = reg_foldkey(name, strlen(name), k + 8, &fklen, &units);
    if (rc)
        return rc;
    MDB_val mk = {8 + fklen, k}, mv;
    int mrc = mdb_get(txn, children, &mk, &mv);
    if (mrc)
        return mrc == MDB_NOTFOUND ? ERROR_FILE_NOT_FOUND : ERROR_READ_FAULT;
    if (mv.mv_size != 8)
        return ERROR_BADDB;
    uint8_t b[8];
    memcpy(b, mv.mv_data, 8);
    *id = 0;
    for (int i = 7; i >= 0; i--)
        *id = (*id << 8) | b[i]; /* child ids are stored little-endian */
    return ERROR_SUCCESS;
}

/* bench_raw_reads - one round of the floor: the same value fetched straight from the
 * hive's LMDB environment, one mdb_get per read between a renew and a reset of one read
 * transaction. */
static int bench_raw_reads(const char *root, struct bench_row *row)
{
    const uint64_t want = BENCH_READS / BENCH_READ_ROUNDS;
    const int64_t limit = BENCH_TIME_LIMIT_NS / BENCH_READ_ROUNDS;
    char dir[4096];
    if ((size_t)snprintf(dir, sizeof dir, "%s/registry/HKLM", root) >= sizeof dir)
        return ERROR_FILENAME_EXCED_RANGE;
    MDB_env *env;
    MDB_txn *txn = NULL;
    MDB_dbi children, values;
    int rc = ERROR_SUCCESS;
    if (mdb_env_create(&env))
        return ERROR_NOT_ENOUGH_MEMORY;
    if (mdb_env_set_maxdbs(env, 8) || mdb_env_set_mapsize(env, REG_MAPSIZE) ||
        mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0644) ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) || mdb_dbi_open(txn, "children", 0, &children) ||
        mdb_dbi_open(txn, "values", 0, &values)) {
        rc = ERROR_CANTOPEN;
        goto out;
    }
    /* The value's index key: its key's id (found by walking the path) + the folded name. */
    uint64_t id = REG_ROOT_ID;
    if ((rc = raw_child(txn, children, id, "Bench", &id)) ||
        (rc = raw_child(txn, children, id, "Key", &id)))
        goto out;
    uint8_t k[8 + REG_FOLDKEY_MAX];
    size_t fklen, units;
    reg_be64(k, id);
    if ((rc = reg_foldkey(BENCH_VALUE, strlen(BENCH_VALUE), k + 8, &fklen, &units)))
        goto out;
    /* Database handles opened in a read transaction survive only its commit, not a reset. */
    int mrc = mdb_txn_commit(txn);
    txn = NULL;
    if (!mrc)
        mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (mrc) {
        rc = ERROR_CANTOPEN;
        goto out;
    }
    MDB_val mk = {8 + fklen, k}, mv = {0, NULL};
    mdb_txn_reset(txn);
    for (unsigned i = 0; i < BENCH_READ_WARMUP && !mrc; i++) {
        mrc = mdb_txn_renew(txn);
        if (!mrc)
            mrc = mdb_get(txn, values, &mk, &mv);
        mdb_txn_reset(txn);
    }
    uint64_t n = 0;
    size_t total = 0; /* keeps the fetched sizes live, and checks them */
    int64_t t0 = bench_now_ns(), t = t0;
    while (!mrc && n < want && t - t0 < limit) {
        for (unsigned j = 0; j < BENCH_CHECK_EVERY && n < want && !mrc; j++, n++) {
            mrc = mdb_txn_renew(txn);
            if (!mrc)
                mrc = mdb_get(txn, values, &mk, &mv);
            total += mv.mv_size;
            mdb_txn_reset(txn);
        }
        t = bench_now_ns();
    }
    bench_add_round(row, n, t - t0);
    if (mrc)
        rc = mrc == MDB_NOTFOUND ? ERROR_FILE_NOT_FOUND : ERROR_READ_FAULT;
    else if (n && total / n != mv.mv_size)
        rc = ERROR_INVALID_DATA;
out:
    if (txn)
        mdb_txn_abort(txn);
    mdb_env_close(env);
    return rc;
}

/* bench_reads - library and raw reads in alternating rounds, so that a busy machine slows
 * both alike. LMDB forbids one environment open twice in a process: the library's context
 * is closed before each raw round. */
static int bench_reads(const char *root, struct bench_row *lib, struct bench_row *raw)
{
    for (unsigned r = 0; r < BENCH_READ_ROUNDS; r++) {
        reg_ctx *ctx;
        reg_key *key;
        int rc = reg_ctx_open(root, &ctx);
        if (rc)
            return rc;
        rc = reg_key_open_path(ctx, "HKLM\\" BENCH_KEY_SUB, REG_READ, &key);
        if (!rc) {
            rc = bench_lib_reads(key, lib);
            reg_key_close(key);
        }
        reg_ctx_close(ctx);
        if (rc || (rc = bench_raw_reads(root, raw)))
            return rc;
    }
    return ERROR_SUCCESS;
}

/* bench_single_writes - each reg_value_set outside a transaction commits (durably) alone. */
static int bench_single_writes(reg_key *key, struct bench_row *row)
{
    int rc = ERROR_SUCCESS;
    uint64_t n = 0;
    int64_t t0 = bench_now_ns(), t = t0;
    while (!rc && n < BENCH_SINGLE_WRITES && t - t0 < BENCH_TIME_LIMIT_NS) {
        char name[BENCH_NAME_MAX];
        uint32_t v = (uint32_t)n;
        snprintf(name, sizeof name, "Single%05" PRIu64, n % 100); /* new, then replaced */
        rc = reg_value_set(key, name, REG_DWORD, &v, sizeof v);
        n++;
        t = bench_now_ns();
    }
    row->count = n;
    row->ns = t - t0;
    return rc;
}

/* bench_batched_writes - BENCH_BATCH new values per reg_txn_begin/commit. */
static int bench_batched_writes(reg_key *key, struct bench_row *row)
{
    int rc = ERROR_SUCCESS;
    uint64_t n = 0;
    int64_t t0 = bench_now_ns(), t = t0;
    for (unsigned b = 0; !rc && b < BENCH_BATCHES && t - t0 < BENCH_TIME_LIMIT_NS; b++) {
        if ((rc = reg_txn_begin(key)))
            break;
        for (unsigned i = 0; i < BENCH_BATCH && !rc; i++, n++) {
            char name[BENCH_NAME_MAX];
            snprintf(name, sizeof name, "Batch%02u_%04u", b, i);
            rc = reg_value_set(key, name, REG_DWORD, &i, sizeof i);
        }
        if (rc) {
            reg_txn_abort(key);
            break;
        }
        rc = reg_txn_commit(key);
        t = bench_now_ns();
    }
    row->count = n;
    row->ns = t - t0;
    return rc;
}

/* bench_create_subkeys - BENCH_SUBKEYS subkeys of parent, all in one transaction. */
static int bench_create_subkeys(reg_key *parent, struct bench_row *row)
{
    int64_t t0 = bench_now_ns();
    int rc = reg_txn_begin(parent);
    if (rc)
        return rc;
    for (unsigned i = 0; i < BENCH_SUBKEYS && !rc; i++) {
        char name[BENCH_NAME_MAX];
        snprintf(name, sizeof name, "Sub%05u", i);
        rc = reg_key_create(parent, name, REG_OPTION_NON_VOLATILE, NULL, NULL, NULL);
    }
    if (rc) {
        reg_txn_abort(parent);
        return rc;
    }
    rc = reg_txn_commit(parent);
    row->count = BENCH_SUBKEYS;
    row->ns = bench_now_ns() - t0;
    return rc;
}

static int bench_count_subkey(void *arg, const char *name)
{
    (void)name;
    (*(uint64_t *)arg)++;
    return 0;
}

/* bench_enum_subkeys - full enumerations of parent; count is subkeys seen in all rounds. */
static int bench_enum_subkeys(reg_key *parent, struct bench_row *row)
{
    int rc = ERROR_SUCCESS;
    uint64_t n = 0;
    int64_t t0 = bench_now_ns(), t = t0;
    for (unsigned r = 0; !rc && r < BENCH_ENUM_ROUNDS && t - t0 < BENCH_TIME_LIMIT_NS; r++) {
        uint64_t seen = 0;
        rc = reg_key_enum_subkeys(parent, bench_count_subkey, &seen);
        if (!rc && seen != BENCH_SUBKEYS)
            rc = ERROR_INVALID_DATA;
        n += seen;
        t = bench_now_ns();
    }
    row->count = n;
    row->ns = t - t0;
    return rc;
}

/* bench_setup - HKLM\Bench\Key with the value every read fetches. */
static int bench_setup(reg_ctx *ctx)
{
    reg_key *lm, *key;
    int rc = reg_key_open_root(ctx, REG_ROOT_HKLM, &lm);
    if (rc)
        return rc;
    rc = reg_key_create(lm, BENCH_KEY_SUB, REG_OPTION_NON_VOLATILE, NULL, &key, NULL);
    reg_key_close(lm);
    if (rc)
        return rc;
    rc = reg_value_set_sz(key, BENCH_VALUE, REG_SZ, BENCH_DATA);
    reg_key_close(key);
    return rc;
}

/* bench_run - every measurement, in an order that reads a hive no write has grown yet. */
static int bench_run(const char *root)
{
    enum { R_LIB, R_RAW, R_OPEN, R_SINGLE, R_BATCH, R_CREATE, R_ENUM, R_N };
    struct bench_row rows[R_N] = {
        [R_LIB] = {"read: reg_value_get, open key (warm)"},
        [R_RAW] = {"read: raw LMDB renew+get+reset"},
        [R_OPEN] = {"read: open path + get + close"},
        [R_SINGLE] = {"write: reg_value_set, 1 txn each"},
        [R_BATCH] = {"write: reg_value_set, 1000 per txn"},
        [R_CREATE] = {"create 10000 subkeys, 1 txn"},
        [R_ENUM] = {"enum: reg_key_enum_subkeys per key"},
    };
    reg_ctx *ctx;
    reg_key *key = NULL, *enumkey = NULL;
    int rc = reg_ctx_open(root, &ctx);
    if (rc)
        return bench_fail("reg_ctx_open", rc);
    if ((rc = bench_setup(ctx)) || (rc = bench_lib_opens(ctx, &rows[R_OPEN])))
        goto fail_ctx;
    reg_ctx_close(ctx);
    if ((rc = bench_reads(root, &rows[R_LIB], &rows[R_RAW])))
        return bench_fail("warm reads", rc);
    if ((rc = reg_ctx_open(root, &ctx)))
        return bench_fail("reg_ctx_open", rc);
    reg_key *lm;
    if ((rc = reg_key_open_root(ctx, REG_ROOT_HKLM, &lm)))
        goto fail_ctx;
    rc = reg_key_create(lm, "Bench\\Writes", 0, NULL, &key, NULL);
    if (!rc)
        rc = reg_key_create(lm, "Bench\\Enum", 0, NULL, &enumkey, NULL);
    reg_key_close(lm);
    if (rc || (rc = bench_single_writes(key, &rows[R_SINGLE])) ||
        (rc = bench_batched_writes(key, &rows[R_BATCH])) ||
        (rc = bench_create_subkeys(enumkey, &rows[R_CREATE])) ||
        (rc = bench_enum_subkeys(enumkey, &rows[R_ENUM])))
        goto fail_ctx;
    reg_key_close(key);
    reg_key_close(enumkey);
    reg_ctx_close(ctx);

    printf("%-40s %9s %11s %11s %12s\n", "operation", "count", "total ms", "per-op us", "ops/s");
    for (int i = 0; i < R_N; i++)
        bench_print_row(&rows[i]);
    double lib = (double)rows[R_LIB].ns / (double)rows[R_LIB].count;
    double raw = (double)rows[R_RAW].ns / (double)rows[R_RAW].count;
    printf("\nwarm read, library / raw LMDB get (goal <= 2x):\n"
           "  mean of %u rounds: %.3f / %.3f us = %.2fx\n"
           "  best round:        %.3f / %.3f us = %.2fx\n",
           BENCH_READ_ROUNDS, lib / 1e3, raw / 1e3, lib / raw, rows[R_LIB].best_ns_per_op / 1e3,
           rows[R_RAW].best_ns_per_op / 1e3,
           rows[R_LIB].best_ns_per_op / rows[R_RAW].best_ns_per_op);
    return 0;

fail_ctx:
    reg_key_close(key);
    reg_key_close(enumkey);
    reg_ctx_close(ctx);
    return bench_fail("registry operation", rc);
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr,
                "usage: %s [DIR]\n"
                "  benchmarks lib/reg on a fresh IMS_ROOT made (and removed) in DIR\n"
                "  (default $TMPDIR or /tmp)\n",
                argv[0]);
        return 2;
    }
    const char *parent = argc == 2 ? argv[1] : getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    char root[4096];
    if ((size_t)snprintf(root, sizeof root, "%s/ims-bench-XXXXXX", parent) >= sizeof root) {
        fprintf(stderr, "registry bench: directory name too long\n");
        return 1;
    }
    if (!mkdtemp(root)) {
        fprintf(stderr, "registry bench: mkdtemp %s: %s\n", root, strerror(errno));
        return 1;
    }
    printf("registry benchmark on a fresh IMS_ROOT %s\n\n", root);
    fflush(stdout);
    int rc = bench_run(root);
    nftw(root, bench_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
