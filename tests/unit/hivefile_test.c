/* hivefile_test.c - regf hive files: save, restore, load and unload, checked against libhivex
 * reading the files directly and against hivex's own test hives in shared/testdata/hives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <hivex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reg/reg.h"

#define SHARED_DEFAULT "../shared" /* relative to the repository root, where tests run */
#define BIG_LEN 40000              /* over 16344 bytes: stored as big data segments */
#define BIN_LEN 1024
#define HDR_MINOR 0x18 /* regf base block fields read by the checks */
#define HDR_ROOT 0x24
#define HDR_CHECKSUM 0x1fc
#define HIVE_BLOCK 0x1000

typedef struct fixture {
    char root[64];
    reg_ctx *ctx;
} fixture;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->root, "/tmp/hivefile_test.XXXXXX");
    assert_non_null(mkdtemp(f->root));
    assert_int_equal(reg_ctx_open(f->root, &f->ctx), ERROR_SUCCESS);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    reg_ctx_close(f->ctx);
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* tmp_path - a file name inside the test's root. */
static char *tmp_path(const fixture *f, const char *name)
{
    char *p;
    assert_true(asprintf(&p, "%s/%s", f->root, name) > 0);
    return p;
}

/* shared_hive - the path of one of hivex's test hives under SHARED_DIR. */
static char *shared_hive(const char *name)
{
    const char *dir = getenv("SHARED_DIR");
    char *p;
    assert_true(asprintf(&p, "%s/testdata/hives/%s", dir ? dir : SHARED_DEFAULT, name) > 0);
    return p;
}

static void copy_file(const char *from, const char *to)
{
    buf b = BUF_INIT;
    assert_int_equal(base_read_file(from, 1 << 20, &b), 0);
    assert_int_equal(base_write_file_atomic(to, b.data, b.len, 0644), 0);
    buf_free(&b);
}

static buf utf16z(const char *s)
{
    buf b = BUF_INIT;
    assert_int_equal(base_utf8_to_utf16(s, strlen(s), &b), 0);
    assert_int_equal(buf_add_u16(&b, 0), 0);
    return b;
}

/* --- a tree with every kind of value ------------------------------------------------------ */

typedef struct value_case {
    const char *key; /* below the tree's top, "" for the top itself */
    const char *name;
    uint32_t type;
    buf data;
} value_case;

typedef struct tree {
    value_case v[24];
    size_t n;
} tree;

static void tree_add(tree *t, const char *key, const char *name, uint32_t type, const void *p,
                     size_t len)
{
    value_case *c = &t->v[t->n++];
    c->key = key;
    c->name = name;
    c->type = type;
    c->data = (buf)BUF_INIT;
    if (len)
        assert_int_equal(buf_add(&c->data, p, len), 0);
}

static void tree_add_buf(tree *t, const char *key, const char *name, uint32_t type, buf b)
{
    tree_add(t, key, name, type, b.data, b.len);
    buf_free(&b);
}

static void tree_free(tree *t)
{
    for (size_t i = 0; i < t->n; i++)
        buf_free(&t->v[i].data);
}

/* Subkeys of the top in the order Windows keeps them: names compared upper-cased as UTF-16
 * units, so "ABC" < "ALPHA" < "A_B" ('_' is above the capitals), "À" (U+00C0) < "µ" (upper
 * U+039C), and "𝄞" (surrogates, 0xD834) < "ｶ" (U+FF76). hivex itself orders the last two
 * pairs the other way round. */
static const char *const top_subkeys[] = {"ABC",  "alpha",   "A_B",     "sub_äöü",
                                          "Zeta", "À_grave", "Ünïcödé", "µ_micro",
                                          "日本", "𝄞clef",   "ｶkana"};
static const char *const top_subkeys_upper[] = {"ABC",  "ALPHA",   "A_B",     "SUB_ÄÖÜ",
                                                "ZETA", "À_GRAVE", "ÜNÏCÖDÉ", "\u039c_MICRO",
                                                "日本", "𝄞CLEF",   "ｶKANA"};
#define N_TOP_SUBKEYS (sizeof top_subkeys / sizeof top_subkeys[0])

static void tree_build(tree *t)
{
    uint8_t bin[BIN_LEN], *big = malloc(BIG_LEN);
    assert_non_null(big);
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (uint8_t)(i * 13 + i / 256);
    static const uint8_t dword[] = {0x78, 0x56, 0x34, 0x12}, be[] = {0x12, 0x34, 0x56, 0x78};
    static const uint8_t qword[] = {1, 2, 3, 4, 5, 6, 7, 0x80}, t256[] = {9, 8, 7, 6, 5};
    static const uint8_t three[] = {0xaa, 0xbb, 0xcc},
                         multi[] = {'a', 0, 0, 0, 'b', 0, 0xe9, 0, 0, 0, 0, 0};
    t->n = 0;
    tree_add_buf(t, "", "", REG_SZ, utf16z("default value"));
    tree_add(t, "", "none", REG_NONE, NULL, 0);
    tree_add_buf(t, "", "sz", REG_SZ, utf16z("Grüße € 日本 𝄞"));
    tree_add_buf(t, "", "expand", REG_EXPAND_SZ, utf16z("%SystemRoot%\\system32"));
    tree_add(t, "", "binary1k", REG_BINARY, bin, sizeof bin);
    tree_add(t, "", "empty", REG_BINARY, NULL, 0);
    tree_add(t, "", "dword", REG_DWORD, dword, sizeof dword);
    tree_add(t, "", "dword_be", REG_DWORD_BIG_ENDIAN, be, sizeof be);
    tree_add(t, "", "link", REG_LINK, "\\\0R\0", 4);
    tree_add(t, "", "multi", REG_MULTI_SZ, multi, sizeof multi);
    tree_add(t, "", "qword", REG_QWORD, qword, sizeof qword);
    tree_add(t, "", "type256", 0x100, t256, sizeof t256);
    tree_add(t, "", "typemax", 0xffffffffu, three, sizeof three);
    tree_add(t, "", "wert_äöü€", REG_DWORD, dword, sizeof dword);
    tree_add(t, "", "big", REG_BINARY, big, BIG_LEN);
    tree_add(t, "", "three", REG_BINARY, three, sizeof three);
    tree_add(t, "alpha\\deep\\deeper", "leaf", REG_DWORD, be, sizeof be);
    tree_add_buf(t, "日本", "名前", REG_SZ, utf16z("値"));
    tree_add(t, "sub_äöü", "", REG_BINARY, bin, 16);
    free(big);
}

/* tree_store - create the tree's keys and values below top. */
static void tree_store(const tree *t, reg_key *top)
{
    for (size_t i = 0; i < N_TOP_SUBKEYS; i++)
        assert_int_equal(reg_key_create(top, top_subkeys[i], 0, NULL, NULL, NULL), 0);
    for (size_t i = 0; i < t->n; i++) {
        const value_case *c = &t->v[i];
        reg_key *k;
        assert_int_equal(reg_key_create(top, c->key, 0, NULL, &k, NULL), 0);
        assert_int_equal(reg_value_set(k, c->name, c->type, c->data.data, c->data.len), 0);
        reg_key_close(k);
    }
}

/* --- reading files with hivex ------------------------------------------------------------ */

/* hx_node - the node at a backslash-separated path below root ("" is root), or 0. */
static hive_node_h hx_node(hive_h *h, const char *path)
{
    hive_node_h n = hivex_root(h);
    char *copy = strdup(path), *save = NULL;
    for (char *part = strtok_r(copy, "\\", &save); n && part; part = strtok_r(NULL, "\\", &save))
        n = hivex_node_get_child(h, n, part);
    free(copy);
    return n;
}

/* hx_check_value - the node's value name has the type and bytes wanted. */
static void hx_check_value(hive_h *h, hive_node_h node, const value_case *c)
{
    hive_value_h v = hivex_node_get_value(h, node, c->name);
    if (!v)
        fail_msg("value '%s' of '%s' missing from the file", c->name, c->key);
    hive_type t;
    size_t len;
    char *data = hivex_value_value(h, v, &t, &len);
    assert_non_null(data);
    if ((uint32_t)t != c->type || len != c->data.len)
        fail_msg("value '%s': got type %#x len %zu, want type %#x len %zu", c->name, (unsigned)t,
                 len, c->type, c->data.len);
    if (len)
        assert_memory_equal(data, c->data.data, len);
    free(data);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* windows_hash - the hash Windows keeps in hash leaves: over the upper-cased UTF-16 units. */
static uint32_t windows_hash(const char *upper)
{
    buf u = BUF_INIT;
    assert_int_equal(base_utf8_to_utf16(upper, strlen(upper), &u), 0);
    uint32_t h = 0;
    for (size_t i = 0; i < u.len; i += 2)
        h = h * 37 + (uint32_t)(u.data[i] | u.data[i + 1] << 8);
    buf_free(&u);
    return h;
}

/* --- tests ------------------------------------------------------------------------------- */

static void check_tree_file(const tree *t, const char *file)
{
    hive_h *h = hivex_open(file, 0);
    assert_non_null(h);
    for (size_t i = 0; i < t->n; i++) {
        hive_node_h n = hx_node(h, t->v[i].key);
        if (!n)
            fail_msg("key '%s' missing from the file", t->v[i].key);
        hx_check_value(h, n, &t->v[i]);
    }

    /* The top's values in creation order. */
    hive_value_h *vals = hivex_node_values(h, hivex_root(h));
    assert_non_null(vals);
    size_t nv = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].key[0])
            continue;
        assert_true(vals[nv] != 0);
        char *name = hivex_value_key(h, vals[nv]);
        if (strcmp(name, t->v[i].name))
            fail_msg("value %zu: got '%s' want '%s'", nv, name, t->v[i].name);
        free(name);
        nv++;
    }
    assert_true(vals[nv] == 0);
    free(vals);

    /* The top's subkeys in Windows order, with their case kept. */
    hive_node_h *kids = hivex_node_children(h, hivex_root(h));
    assert_non_null(kids);
    for (size_t i = 0; i < N_TOP_SUBKEYS; i++) {
        assert_true(kids[i] != 0);
        char *name = hivex_node_name(h, kids[i]);
        if (strcmp(name, top_subkeys[i]))
            fail_msg("subkey %zu: got '%s' want '%s'", i, name, top_subkeys[i]);
        free(name);
    }
    assert_true(kids[N_TOP_SUBKEYS] == 0);
    free(kids);

    /* The big value's data went into a big data record ("db"). */
    hive_value_h big = hivex_node_get_value(h, hivex_root(h), "big");
    size_t celllen;
    hive_value_h cell = hivex_value_data_cell_offset(h, big, &celllen);
    assert_true(cell != 0);
    hivex_close(h);

    buf img = BUF_INIT;
    assert_int_equal(base_read_file(file, 1 << 24, &img), 0);
    assert_true(cell + 6 <= img.len);
    assert_memory_equal(img.data + cell + 4, "db", 2);

    /* Header: version 1.5 and a checksum Windows accepts (never 0 or ~0). */
    uint32_t sum = 0;
    for (size_t i = 0; i < HDR_CHECKSUM; i += 4)
        sum ^= le32(img.data + i);
    assert_int_equal(le32(img.data + HDR_CHECKSUM), sum);
    assert_true(sum != 0 && sum != 0xffffffffu);
    assert_int_equal(le32(img.data + HDR_MINOR), 5);

    /* The root's hash leaf holds Windows' hashes of the upper-cased names. */
    const uint8_t *nk = img.data + HIVE_BLOCK + le32(img.data + HDR_ROOT);
    const uint8_t *lh = img.data + HIVE_BLOCK + le32(nk + 0x20);
    assert_memory_equal(lh + 4, "lh", 2);
    assert_int_equal(lh[6] | lh[7] << 8, N_TOP_SUBKEYS);
    for (size_t i = 0; i < N_TOP_SUBKEYS; i++) {
        uint32_t got = le32(lh + 8 + 8 * i + 4), want = windows_hash(top_subkeys_upper[i]);
        if (got != want)
            fail_msg("hash of '%s': got %#x want %#x", top_subkeys[i], got, want);
    }
    buf_free(&img);
}

static reg_key *hkcu_key(fixture *f, const char *sub)
{
    reg_key *cu, *k;
    assert_int_equal(reg_key_open_root(f->ctx, REG_ROOT_HKCU, &cu), 0);
    assert_int_equal(reg_key_create(cu, sub, 0, NULL, &k, NULL), 0);
    reg_key_close(cu);
    return k;
}

static void test_save_reads_back_with_hivex(void **state)
{
    fixture *f = *state;
    tree t;
    tree_build(&t);
    reg_key *top = hkcu_key(f, "Software\\HiveSave");
    tree_store(&t, top);
    char *file = tmp_path(f, "save.hiv");
    assert_int_equal(reg_hive_save(top, file), ERROR_SUCCESS);
    check_tree_file(&t, file);

    /* Saving again replaces the file. */
    assert_int_equal(reg_value_set_dword(top, "dword", 7), 0);
    assert_int_equal(reg_hive_save(top, file), ERROR_SUCCESS);
    hive_h *h = hivex_open(file, 0);
    assert_non_null(h);
    assert_int_equal(hivex_value_dword(h, hivex_node_get_value(h, hivex_root(h), "dword")), 7);
    hivex_close(h);

    free(file);
    reg_key_close(top);
    tree_free(&t);
}

typedef struct seen_value {
    char name[32];
    uint32_t type;
    size_t len;
} seen_value;

typedef struct seen_values {
    seen_value v[16];
    size_t n;
} seen_values;

static int collect_value(void *arg, const char *name, uint32_t type, const uint8_t *data,
                         size_t len)
{
    (void)data;
    seen_values *s = arg;
    assert_true(s->n < 16);
    snprintf(s->v[s->n].name, sizeof s->v[s->n].name, "%s", name);
    s->v[s->n].type = type;
    s->v[s->n].len = len;
    s->n++;
    return 0;
}

static void test_restore_rlenvalue(void **state)
{
    fixture *f = *state;
    reg_key *top = hkcu_key(f, "Software\\Restore");
    assert_int_equal(reg_value_set_dword(top, "old", 1), 0);
    assert_int_equal(reg_key_create(top, "oldsub\\deeper", 0, NULL, NULL, NULL), 0);
    char *hive = shared_hive("rlenvalue_test_hive");
    assert_int_equal(reg_hive_restore(top, hive), ERROR_SUCCESS);

    assert_int_equal(reg_value_get(top, "old", NULL, NULL), ERROR_FILE_NOT_FOUND);
    reg_key *k;
    assert_int_equal(reg_key_open(top, "oldsub", REG_READ, &k), ERROR_FILE_NOT_FOUND);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(top, &info), 0);
    assert_int_equal(info.subkeys, 1);
    assert_int_equal(info.values, 0);

    assert_int_equal(reg_key_open(top, "ModerateValueParent", REG_READ, &k), 0);
    seen_values s = {.n = 0};
    assert_int_equal(reg_key_enum_values(k, collect_value, &s), 0);
    static const struct {
        const char *name;
        size_t len;
    } want[] = {{"3Bytes", 3},   {"16Bytes", 16}, {"30Bytes", 30},
                {"31Bytes", 31}, {"32Bytes", 32}, {"33Bytes", 33}};
    assert_int_equal(s.n, sizeof want / sizeof want[0]);
    hive_h *h = hivex_open(hive, 0);
    assert_non_null(h);
    hive_node_h parent = hx_node(h, "ModerateValueParent");
    assert_true(parent != 0);
    for (size_t i = 0; i < s.n; i++) {
        if (strcmp(s.v[i].name, want[i].name) || s.v[i].len != want[i].len ||
            s.v[i].type != REG_BINARY)
            fail_msg("value %zu: got '%s' len %zu type %u, want '%s' len %zu REG_BINARY", i,
                     s.v[i].name, s.v[i].len, s.v[i].type, want[i].name, want[i].len);
        hive_type t;
        size_t len;
        char *raw = hivex_value_value(h, hivex_node_get_value(h, parent, want[i].name), &t, &len);
        buf got = BUF_INIT;
        assert_int_equal(reg_value_get(k, want[i].name, NULL, &got), 0);
        assert_int_equal(got.len, len);
        assert_memory_equal(got.data, raw, len);
        buf_free(&got);
        free(raw);
    }
    hivex_close(h);
    reg_key_close(k);
    reg_key_close(top);
    free(hive);
}

typedef struct names {
    char v[8][64];
    size_t n;
} names;

static int collect_name(void *arg, const char *name)
{
    names *s = arg;
    assert_true(s->n < 8);
    snprintf(s->v[s->n++], 64, "%s", name);
    return 0;
}

static void test_load_special_and_unload(void **state)
{
    fixture *f = *state;
    char *orig = shared_hive("special"), *file = tmp_path(f, "special.hiv");
    copy_file(orig, file);
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, "Test", file), ERROR_SUCCESS);

    reg_key *test;
    assert_int_equal(reg_key_open_path(f->ctx, "HKU\\Test", REG_READ | REG_WRITE, &test), 0);
    /* "zero\0key" cannot be a name here: it is left out, the other two keys are there. */
    names kids = {.n = 0};
    assert_int_equal(reg_key_enum_subkeys(test, collect_name, &kids), 0);
    assert_int_equal(kids.n, 2);
    assert_string_equal(kids.v[0], "abcd_äöüß");
    assert_string_equal(kids.v[1], "weird™");

    reg_key *k;
    uint32_t v;
    assert_int_equal(reg_key_open(test, "abcd_äöüß", REG_READ | REG_WRITE, &k), 0);
    seen_values s = {.n = 0};
    assert_int_equal(reg_key_enum_values(k, collect_value, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].name, "abcd_äöüß");
    assert_int_equal(s.v[0].type, REG_DWORD);
    assert_int_equal(reg_value_get_dword(k, "abcd_äöüß", &v), 0);
    hive_h *h = hivex_open(orig, 0);
    assert_non_null(h);
    hive_node_h node = hx_node(h, "abcd_äöüß");
    assert_int_equal(v, (uint32_t)hivex_value_dword(h, hivex_node_get_value(h, node, "abcd_äöüß")));
    hivex_close(h);
    assert_int_equal(reg_value_set_dword(k, "abcd_äöüß", 0xcafef00du), 0);
    assert_int_equal(reg_value_set_sz(k, "added", REG_SZ, "neu ü"), 0);
    reg_key_close(k);

    assert_int_equal(reg_key_open(test, "weird™", REG_READ, &k), 0);
    s.n = 0;
    assert_int_equal(reg_key_enum_values(k, collect_value, &s), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.v[0].name, "symbols $£₤₧€");
    assert_int_equal(s.v[0].type, REG_DWORD);
    reg_key_close(k);
    reg_key_close(test);

    /* Names compare case-insensitively: "test" unloads "Test". */
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "test"), ERROR_SUCCESS);
    assert_int_equal(reg_key_open_path(f->ctx, "HKU\\Test", REG_READ, &test), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "Test"), ERROR_INVALID_PARAMETER);

    h = hivex_open(file, 0);
    assert_non_null(h);
    node = hx_node(h, "abcd_äöüß");
    assert_true(node != 0);
    assert_int_equal((uint32_t)hivex_value_dword(h, hivex_node_get_value(h, node, "abcd_äöüß")),
                     0xcafef00du);
    char *str = hivex_value_string(h, hivex_node_get_value(h, node, "added"));
    assert_non_null(str);
    assert_string_equal(str, "neu ü");
    free(str);
    assert_true(hx_node(h, "weird™") != 0);
    hivex_close(h);

    /* The name is free again; the file written back loads. */
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, "Test", file), ERROR_SUCCESS);
    assert_int_equal(reg_key_open_path(f->ctx, "HKU\\Test\\abcd_äöüß", REG_READ, &k), 0);
    assert_int_equal(reg_value_get_dword(k, "abcd_äöüß", &v), 0);
    assert_int_equal(v, 0xcafef00du);
    reg_key_close(k);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "TEST"), ERROR_SUCCESS);
    free(orig);
    free(file);
}

static void test_load_errors(void **state)
{
    fixture *f = *state;
    char *junk = tmp_path(f, "junk.txt"), *small = tmp_path(f, "small.txt");
    char *badsum = tmp_path(f, "badsum.hiv"), *good = tmp_path(f, "good.hiv");
    char *missing = tmp_path(f, "missing.hiv"), *orig = shared_hive("minimal");
    uint8_t text[0x3000];
    memset(text, 'x', sizeof text);
    assert_int_equal(base_write_file_atomic(junk, text, sizeof text, 0644), 0);
    assert_int_equal(base_write_file_atomic(small, "hello\n", 6, 0644), 0);
    buf b = BUF_INIT;
    assert_int_equal(base_read_file(orig, 1 << 20, &b), 0);
    assert_int_equal(base_write_file_atomic(good, b.data, b.len, 0644), 0);
    b.data[0x40] ^= 1; /* inside the file name field: only the checksum notices */
    assert_int_equal(base_write_file_atomic(badsum, b.data, b.len, 0644), 0);
    buf_free(&b);

    static const struct {
        reg_root root;
        const char *name;
        int file; /* 0 junk, 1 small, 2 bad checksum, 3 missing, 4 good */
        int want;
    } cases[] = {
        {REG_ROOT_HKU, "Junk", 0, ERROR_NOT_REGISTRY_FILE},
        {REG_ROOT_HKU, "Small", 1, ERROR_NOT_REGISTRY_FILE},
        {REG_ROOT_HKU, "BadSum", 2, ERROR_NOT_REGISTRY_FILE},
        {REG_ROOT_HKU, "Missing", 3, ERROR_FILE_NOT_FOUND},
        {REG_ROOT_HKLM, "Good", 4, ERROR_INVALID_PARAMETER},
        {REG_ROOT_HKCU, "Good", 4, ERROR_INVALID_PARAMETER},
        {REG_ROOT_HKU, "", 4, ERROR_INVALID_PARAMETER},
        {REG_ROOT_HKU, "a\\b", 4, ERROR_INVALID_PARAMETER},
        {REG_ROOT_HKU, "a/b", 4, ERROR_INVALID_PARAMETER},
        {REG_ROOT_HKU, ".hidden", 4, ERROR_INVALID_PARAMETER},
    };
    const char *files[] = {junk, small, badsum, missing, good};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = reg_hive_load(f->ctx, cases[i].root, cases[i].name, files[cases[i].file]);
        if (got != cases[i].want)
            fail_msg("load %zu ('%s'): got %d want %d", i, cases[i].name, got, cases[i].want);
        reg_key *k;
        char path[64];
        snprintf(path, sizeof path, "HKU\\%s", cases[i].name);
        if (cases[i].name[0] && !strchr(cases[i].name, '\\') &&
            reg_key_open_path(f->ctx, path, REG_READ, &k) != ERROR_FILE_NOT_FOUND)
            fail_msg("load %zu left %s behind", i, path);
    }

    /* Loading a name twice, in any case, or the name of a user's hive. */
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, "Twice", good), ERROR_SUCCESS);
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, "TWICE", good), ERROR_ALREADY_EXISTS);
    reg_key *cu = hkcu_key(f, "Software");
    reg_key_close(cu);
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, reg_ctx_user_sid(f->ctx), good),
                     ERROR_ALREADY_EXISTS);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "Twice"), ERROR_SUCCESS);

    /* Unloading what was never loaded, even an existing user hive. */
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "Nobody"), ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, reg_ctx_user_sid(f->ctx)),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKLM, "Twice"), ERROR_INVALID_PARAMETER);

    free(junk);
    free(small);
    free(badsum);
    free(good);
    free(missing);
    free(orig);
}

static void test_restore_errors_keep_key(void **state)
{
    fixture *f = *state;
    reg_key *top = hkcu_key(f, "Software\\Keep");
    assert_int_equal(reg_value_set_dword(top, "kept", 42), 0);
    char *junk = tmp_path(f, "junk.bin"), *missing = tmp_path(f, "missing.hiv");
    uint8_t zeros[0x2000] = {0};
    assert_int_equal(base_write_file_atomic(junk, zeros, sizeof zeros, 0644), 0);

    static const struct {
        int which; /* 0 missing, 1 junk, 2 a directory */
        int want;
    } cases[] = {
        {0, ERROR_FILE_NOT_FOUND},
        {1, ERROR_NOT_REGISTRY_FILE},
        {2, ERROR_ACCESS_DENIED},
    };
    const char *files[] = {missing, junk, f->root};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = reg_hive_restore(top, files[cases[i].which]);
        if (got != cases[i].want)
            fail_msg("restore %zu: got %d want %d", i, got, cases[i].want);
        uint32_t v = 0;
        assert_int_equal(reg_value_get_dword(top, "kept", &v), 0);
        assert_int_equal(v, 42);
    }

    /* Saving into a directory that does not exist. */
    char *nodir = tmp_path(f, "no/such/dir.hiv");
    assert_int_equal(reg_hive_save(top, nodir), ERROR_PATH_NOT_FOUND);
    free(nodir);
    free(junk);
    free(missing);
    reg_key_close(top);
}

static void test_restore_corrupt_rolls_back(void **state)
{
    fixture *f = *state;
    /* rlenvalue_test_hive with the value list of \ModerateValueParent pointing nowhere: the
     * file opens, the walk fails half-way, after the key's old contents were deleted and the
     * parent was created. */
    static const size_t nk = 0x2020, vallist = nk + 0x2c;
    char *orig = shared_hive("rlenvalue_test_hive"), *bad = tmp_path(f, "bad.hiv");
    buf b = BUF_INIT;
    assert_int_equal(base_read_file(orig, 1 << 20, &b), 0);
    assert_true(b.len > vallist + 4);
    assert_memory_equal(b.data + nk + 4, "nk", 2);
    memcpy(b.data + vallist, "\x78\x56\x34\x12", 4);
    assert_int_equal(base_write_file_atomic(bad, b.data, b.len, 0644), 0);
    buf_free(&b);

    reg_key *top = hkcu_key(f, "Software\\Corrupt"), *k;
    assert_int_equal(reg_value_set_dword(top, "kept", 42), 0);
    assert_int_equal(reg_key_create(top, "keptsub", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_hive_restore(top, bad), ERROR_REGISTRY_CORRUPT);
    uint32_t v = 0;
    assert_int_equal(reg_value_get_dword(top, "kept", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(reg_key_open(top, "keptsub", REG_READ, &k), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_open(top, "ModerateValueParent", REG_READ, &k), ERROR_FILE_NOT_FOUND);

    /* Loading it leaves no hive behind. */
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, "Bad", bad), ERROR_REGISTRY_CORRUPT);
    assert_int_equal(reg_key_open_path(f->ctx, "HKU\\Bad", REG_READ, &k), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "Bad"), ERROR_INVALID_PARAMETER);
    reg_key_close(top);
    free(orig);
    free(bad);
}

static void test_restore_into_volatile_key(void **state)
{
    fixture *f = *state;
    reg_key *cu, *vol, *k;
    assert_int_equal(reg_key_open_root(f->ctx, REG_ROOT_HKCU, &cu), 0);
    assert_int_equal(reg_key_create(cu, "Volatile", REG_OPTION_VOLATILE, NULL, &vol, NULL), 0);
    char *hive = shared_hive("rlenvalue_test_hive");
    assert_int_equal(reg_hive_restore(vol, hive), ERROR_SUCCESS);
    assert_int_equal(reg_key_open(vol, "ModerateValueParent", REG_READ, &k), 0);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(k, &info), 0);
    assert_true(info.is_volatile);
    assert_int_equal(info.values, 6);
    reg_key_close(k);
    reg_key_close(vol);
    reg_key_close(cu);
    free(hive);
}

static void test_load_needs_privilege(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0)
        skip(); /* needs a user other than the registry's owner */
    char *orig = shared_hive("minimal"), *file = tmp_path(f, "priv.hiv");
    copy_file(orig, file);
    const uid_t nobody = 65534;
    assert_int_equal(seteuid(nobody), 0);
    int load = reg_hive_load(f->ctx, REG_ROOT_HKU, "Priv", file);
    int unload = reg_hive_unload(f->ctx, REG_ROOT_HKU, "Priv");
    assert_int_equal(seteuid(0), 0);
    assert_int_equal(load, ERROR_PRIVILEGE_NOT_HELD);
    assert_int_equal(unload, ERROR_PRIVILEGE_NOT_HELD);
    reg_key *k;
    assert_int_equal(reg_key_open_path(f->ctx, "HKU\\Priv", REG_READ, &k), ERROR_FILE_NOT_FOUND);
    /* The registry's owner (here root) may. */
    assert_int_equal(reg_hive_load(f->ctx, REG_ROOT_HKU, "Priv", file), ERROR_SUCCESS);
    assert_int_equal(reg_hive_unload(f->ctx, REG_ROOT_HKU, "Priv"), ERROR_SUCCESS);
    free(orig);
    free(file);
}

/* tree_compare - the two keys hold the same values (in order) and subkeys, recursively. */
typedef struct value_list {
    buf names, types, data; /* names NUL-separated; types u32; data len (size_t) + bytes */
    size_t n;
} value_list;

static int list_value(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    value_list *l = arg;
    assert_int_equal(buf_add(&l->names, name, strlen(name) + 1), 0);
    assert_int_equal(buf_add(&l->types, &type, sizeof type), 0);
    assert_int_equal(buf_add(&l->data, &len, sizeof len), 0);
    if (len)
        assert_int_equal(buf_add(&l->data, data, len), 0);
    l->n++;
    return 0;
}

static int list_subkey(void *arg, const char *name)
{
    return buf_add(arg, name, strlen(name) + 1);
}

static bool buf_eq(const buf *a, const buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void tree_compare(reg_key *a, reg_key *b, const char *where)
{
    value_list la = {BUF_INIT, BUF_INIT, BUF_INIT, 0}, lb = {BUF_INIT, BUF_INIT, BUF_INIT, 0};
    assert_int_equal(reg_key_enum_values(a, list_value, &la), 0);
    assert_int_equal(reg_key_enum_values(b, list_value, &lb), 0);
    if (la.n != lb.n || !buf_eq(&la.names, &lb.names) || !buf_eq(&la.types, &lb.types) ||
        !buf_eq(&la.data, &lb.data))
        fail_msg("values of '%s' differ: %zu vs %zu values", where, la.n, lb.n);
    buf ka = BUF_INIT, kb = BUF_INIT;
    assert_int_equal(reg_key_enum_subkeys(a, list_subkey, &ka), 0);
    assert_int_equal(reg_key_enum_subkeys(b, list_subkey, &kb), 0);
    if (!buf_eq(&ka, &kb))
        fail_msg("subkeys of '%s' differ", where);
    for (size_t at = 0; at < ka.len; at += strlen((char *)ka.data + at) + 1) {
        const char *name = (const char *)ka.data + at;
        reg_key *sa, *sb;
        assert_int_equal(reg_key_open(a, name, REG_READ, &sa), 0);
        assert_int_equal(reg_key_open(b, name, REG_READ, &sb), 0);
        tree_compare(sa, sb, name);
        reg_key_close(sa);
        reg_key_close(sb);
    }
    buf_free(&ka);
    buf_free(&kb);
    buf_free(&la.names), buf_free(&la.types), buf_free(&la.data);
    buf_free(&lb.names), buf_free(&lb.types), buf_free(&lb.data);
}

static void test_round_trip(void **state)
{
    fixture *f = *state;
    tree t;
    tree_build(&t);
    reg_key *orig = hkcu_key(f, "Software\\Orig"), *copy = hkcu_key(f, "Software\\Copy");
    tree_store(&t, orig);
    assert_int_equal(reg_value_set_dword(copy, "stale", 1), 0);
    assert_int_equal(reg_key_create(copy, "stale", 0, NULL, NULL, NULL), 0);
    char *file = tmp_path(f, "round.hiv");
    assert_int_equal(reg_hive_save(orig, file), ERROR_SUCCESS);
    assert_int_equal(reg_hive_restore(copy, file), ERROR_SUCCESS);
    tree_compare(orig, copy, "top");

    /* A second generation: the restored copy saves to the same bytes of tree. */
    char *file2 = tmp_path(f, "round2.hiv");
    assert_int_equal(reg_hive_save(copy, file2), ERROR_SUCCESS);
    check_tree_file(&t, file2);
    free(file);
    free(file2);
    reg_key_close(orig);
    reg_key_close(copy);
    tree_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_save_reads_back_with_hivex, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_rlenvalue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_special_and_unload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_errors_keep_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_corrupt_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_into_volatile_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_needs_privilege, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
