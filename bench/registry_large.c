/* registry_large.c - fills a registry's HKLM with a big tree through lib/reg's public API, for
 * bench/registry_large.sh: PARENTS keys with LEAVES subkeys each, in explicit transactions. */
#include "reg/reg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LARGE_TOP "Software\\IMS Bench\\Large" /* under HKLM; registry_large.sh queries it */
#define LARGE_BATCH 10000u                     /* keys created per explicit transaction */
#define LARGE_NAME_MAX 64                      /* room for a generated key name */
/* Values as a setup program leaves them: a REG_DWORD "Index" on every parent, a REG_SZ "Path"
 * on every leaf, this prefix followed by the leaf's own path. */
#define LARGE_DATA "C:\\Program Files\\IMS\\data\\"

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "registry_large: %s: %s (%d)\n", what, reg_strerror(rc), rc);
    return 1;
}

/* parse_count - a decimal count in [lo, hi], or -1. */
static long parse_count(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v >= lo && v <= hi) ? v : -1;
}

/* fill - create top\ParentNNNN\KeyNNNN for the parents [first, first + parents) and every leaf
 * under each, with their values, committing every LARGE_BATCH keys. *made gets the keys
 * created (the leaves and the parents). */
static int fill(reg_key *top, long first, long parents, long leaves, uint64_t *made)
{
    char name[LARGE_NAME_MAX], data[LARGE_NAME_MAX + sizeof LARGE_DATA];
    int rc = reg_txn_begin(top);
    uint64_t in_txn = 0;
    *made = 0;
    for (long p = first; !rc && p < first + parents; p++) {
        reg_key *parent;
        snprintf(name, sizeof name, "Parent%04ld", p);
        if ((rc = reg_key_create(top, name, REG_OPTION_NON_VOLATILE, NULL, &parent, NULL)))
            return fail("create parent", rc);
        rc = reg_value_set_dword(parent, "Index", (uint32_t)p);
        for (long l = 0; !rc && l < leaves; l++) {
            reg_key *leaf;
            snprintf(name, sizeof name, "Key%04ld", l);
            snprintf(data, sizeof data, "%sParent%04ld\\Key%04ld", LARGE_DATA, p, l);
            rc = reg_key_create(parent, name, REG_OPTION_NON_VOLATILE, NULL, &leaf, NULL);
            if (!rc) {
                rc = reg_value_set_sz(leaf, "Path", REG_SZ, data);
                reg_key_close(leaf);
            }
            if (!rc && ++in_txn >= LARGE_BATCH) {
                /* Keep each transaction bounded: LMDB holds its dirty pages in memory. */
                rc = reg_txn_commit(top);
                if (!rc)
                    rc = reg_txn_begin(top);
                in_txn = 0;
            }
        }
        reg_key_close(parent);
        *made += (uint64_t)leaves + 1;
    }
    if (rc) {
        reg_txn_abort(top);
        return fail("fill", rc);
    }
    if ((rc = reg_txn_commit(top)))
        return fail("commit", rc);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr,
                "usage: %s IMS_ROOT FIRST PARENTS LEAVES\n"
                "  creates HKLM\\" LARGE_TOP "\\ParentNNNN\\KeyNNNN for PARENTS parents\n"
                "  from number FIRST, LEAVES leaves each\n",
                argv[0]);
        return 2;
    }
    long first = parse_count(argv[2], 0, 9999), parents = parse_count(argv[3], 1, 10000);
    long leaves = parse_count(argv[4], 0, 10000);
    if (first < 0 || parents < 0 || leaves < 0 || first + parents > 10000) {
        fprintf(stderr, "registry_large: FIRST + PARENTS <= 10000, LEAVES <= 10000\n");
        return 2;
    }
    reg_ctx *ctx;
    int rc = reg_ctx_open(argv[1], &ctx);
    if (rc)
        return fail("open the registry", rc);
    reg_key *hklm = NULL, *top = NULL;
    int64_t t0 = now_ns();
    rc = reg_key_open_root(ctx, REG_ROOT_HKLM, &hklm);
    if (!rc)
        rc = reg_key_create(hklm, LARGE_TOP, REG_OPTION_NON_VOLATILE, NULL, &top, NULL);
    reg_key_close(hklm);
    int ret;
    uint64_t made = 0;
    if (rc) {
        ret = fail("create " LARGE_TOP, rc);
    } else {
        ret = fill(top, first, parents, leaves, &made);
    }
    double s = (double)(now_ns() - t0) / 1e9;
    if (!ret)
        printf("created %" PRIu64 " keys and as many values in %.1f s (%.1f us per key)\n", made, s,
               made ? s * 1e6 / (double)made : 0.0);
    reg_key_close(top);
    reg_ctx_close(ctx);
    return ret;
}
