/* reg_test.c - unit tests of the registry store (lib/reg): keys, values, order, limits,
 * volatile and owner-bound keys, transactions, notification, several processes at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reg/reg.h"
#include "reg/store.h" /* to simulate a reboot (the context's boot id) */

struct fx {
    char dir[64];
    reg_ctx *ctx;
    reg_key *cu, *lm;
};

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    strcpy(fx->dir, "/tmp/reg_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_int_equal(reg_ctx_open(fx->dir, &fx->ctx), ERROR_SUCCESS);
    assert_int_equal(reg_key_open_root(fx->ctx, REG_ROOT_HKCU, &fx->cu), ERROR_SUCCESS);
    assert_int_equal(reg_key_open_root(fx->ctx, REG_ROOT_HKLM, &fx->lm), ERROR_SUCCESS);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    reg_key_close(fx->cu);
    reg_key_close(fx->lm);
    reg_ctx_close(fx->ctx);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* names collected by enumeration, joined with '|' */
static int collect_name(void *arg, const char *name)
{
    buf *b = arg;
    if (b->len)
        buf_addc(b, '|');
    buf_adds(b, name);
    return 0;
}

static int collect_value(void *arg, const char *name, uint32_t type, const uint8_t *d, size_t n)
{
    (void)type, (void)d, (void)n;
    return collect_name(arg, name);
}

static void assert_subkeys(reg_key *k, const char *want)
{
    buf b = BUF_INIT;
    assert_int_equal(reg_key_enum_subkeys(k, collect_name, &b), ERROR_SUCCESS);
    assert_string_equal(buf_cstr(&b), want);
    buf_free(&b);
}

static void assert_values(reg_key *k, const char *want)
{
    buf b = BUF_INIT;
    assert_int_equal(reg_key_enum_values(k, collect_value, &b), ERROR_SUCCESS);
    assert_string_equal(buf_cstr(&b), want);
    buf_free(&b);
}

static void test_create_open(void **state)
{
    struct fx *fx = *state;
    reg_key *k, *k2;
    unsigned disp;
    assert_int_equal(reg_key_create(fx->cu, "Software\\Test\\Deep", 0, NULL, &k, &disp), 0);
    assert_int_equal(disp, REG_CREATED_NEW_KEY);
    reg_key_close(k);
    assert_int_equal(reg_key_create(fx->cu, "SOFTWARE\\test\\DEEP", 0, NULL, &k, &disp), 0);
    assert_int_equal(disp, REG_OPENED_EXISTING_KEY);
    reg_key_close(k);
    /* Trailing and doubled backslashes are ignored; a leading one is a bad path. */
    assert_int_equal(reg_key_open(fx->cu, "software\\\\test\\deep\\", 0, &k), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->cu, "\\Software", 0, &k), ERROR_BAD_PATHNAME);
    assert_null(k);
    assert_int_equal(reg_key_open(fx->cu, "Software\\Nope", 0, &k), ERROR_FILE_NOT_FOUND);
    assert_null(k);
    /* Names keep the case they were created with. */
    assert_int_equal(reg_key_open(fx->cu, "software", 0, &k), 0);
    assert_subkeys(k, "Test");
    /* "" opens the same key again. */
    assert_int_equal(reg_key_open(k, "", 0, &k2), 0);
    assert_subkeys(k2, "Test");
    reg_key_close(k2);
    reg_key_close(k);
}

static void test_subkey_order(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->cu, "Order", 0, NULL, &k, NULL), 0);
    /* Windows sorts upper-cased: '_' (0x5f) comes after 'B'; 'é' folds to 'É'. */
    const char *names[] = {"b", "_x", "A", "c", "\xc3\xa9t\xc3\xa9", "B2"};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(reg_key_create(k, names[i], 0, NULL, NULL, NULL), 0);
    assert_subkeys(k, "A|b|B2|c|_x|\xc3\xa9t\xc3\xa9");
    /* The same name in another case is the same key. */
    reg_key *e;
    assert_int_equal(reg_key_open(k, "\xc3\x89T\xc3\x89", 0, &e), 0);
    reg_key_close(e);
    buf name = BUF_INIT;
    assert_int_equal(reg_key_enum_subkey(k, 2, &name), 0);
    assert_string_equal(buf_cstr(&name), "B2");
    assert_int_equal(reg_key_enum_subkey(k, 6, &name), ERROR_NO_MORE_ITEMS);
    buf_free(&name);
    reg_key_close(k);
}

static void test_values(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->cu, "Vals", 0, NULL, &k, NULL), 0);
    /* Creation order, as Windows keeps it; replacing keeps the place. */
    assert_int_equal(reg_value_set_dword(k, "A", 1), 0);
    assert_int_equal(reg_value_set_dword(k, "C", 2), 0);
    assert_int_equal(reg_value_set_dword(k, "D", 3), 0);
    assert_int_equal(reg_value_set_dword(k, "B", 4), 0);
    assert_int_equal(reg_value_set_sz(k, "c", REG_SZ, "now a string"), 0);
    assert_values(k, "A|c|D|B");
    buf b = BUF_INIT;
    assert_int_equal(reg_value_get_sz(k, "C", &b), 0);
    assert_string_equal(buf_cstr(&b), "now a string");
    uint32_t type, v;
    assert_int_equal(reg_value_get(k, "c", &type, &b), 0);
    assert_int_equal(type, REG_SZ);
    assert_int_equal(b.len, 26); /* 12 UTF-16 units + terminator */
    assert_int_equal(reg_value_get_dword(k, "D", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(reg_value_get_dword(k, "c", &v), ERROR_INVALID_DATA);
    /* Default value, empty data, any type number. */
    assert_int_equal(reg_value_set(k, NULL, REG_SZ, "\0\0", 2), 0);
    assert_int_equal(reg_value_get(k, "", &type, &b), 0);
    assert_int_equal(b.len, 2);
    assert_int_equal(reg_value_set(k, "odd", 0xabcd, NULL, 0), 0);
    assert_int_equal(reg_value_get(k, "ODD", &type, &b), 0);
    assert_int_equal(type, 0xabcd);
    assert_int_equal(b.len, 0);
    assert_int_equal(reg_value_set(k, "bad", REG_BINARY, NULL, 4), ERROR_NOACCESS);
    /* Delete. */
    assert_int_equal(reg_value_delete(k, "a"), 0);
    assert_int_equal(reg_value_delete(k, "a"), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_value_get(k, "A", NULL, NULL), ERROR_FILE_NOT_FOUND);
    assert_values(k, "c|D|B||odd");
    const char *multi[] = {"one", "two"};
    assert_int_equal(reg_value_set_multi_sz(k, "m", multi, 2), 0);
    assert_int_equal(reg_value_get(k, "m", &type, &b), 0);
    assert_int_equal(type, REG_MULTI_SZ);
    assert_int_equal(b.len, 18);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(k, &info), 0);
    assert_int_equal(info.values, 6);
    assert_int_equal(info.subkeys, 0);
    assert_int_equal(info.max_value_len, 26);
    assert_true(info.last_write > 0);
    buf_free(&b);
    reg_key_close(k);
}

static void test_limits(void **state)
{
    struct fx *fx = *state;
    char name[REG_MAX_VALUE_NAME + 2];
    memset(name, 'n', sizeof name);
    name[256] = 0;
    assert_int_equal(reg_key_create(fx->cu, name, 0, NULL, NULL, NULL), ERROR_INVALID_PARAMETER);
    name[255] = 0;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->cu, name, 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_key_open(fx->cu, name, 0, &k), 0);
    memset(name, 'v', sizeof name);
    name[REG_MAX_VALUE_NAME] = 0;
    assert_int_equal(reg_value_set_dword(k, name, 7), 0);
    uint32_t v;
    assert_int_equal(reg_value_get_dword(k, name, &v), 0);
    assert_int_equal(v, 7);
    name[REG_MAX_VALUE_NAME] = 'v';
    name[REG_MAX_VALUE_NAME + 1] = 0;
    assert_int_equal(reg_value_set_dword(k, name, 7), ERROR_INVALID_PARAMETER);
    reg_key_close(k);
    /* Depth: 512 levels below the root, not 513. */
    buf p = BUF_INIT;
    for (int i = 0; i < REG_MAX_DEPTH; i++)
        buf_adds(&p, i ? "\\d" : "d");
    assert_int_equal(reg_key_create(fx->cu, buf_cstr(&p), 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_key_create(k, "one-more", 0, NULL, NULL, NULL), ERROR_INVALID_PARAMETER);
    reg_key_close(k);
    buf_free(&p);
}

static void test_delete(void **state)
{
    struct fx *fx = *state;
    reg_key *a, *b;
    assert_int_equal(reg_key_create(fx->cu, "Del\\A\\B", 0, NULL, &b, NULL), 0);
    assert_int_equal(reg_value_set_dword(b, "x", 1), 0);
    assert_int_equal(reg_key_open(fx->cu, "Del\\A", 0, &a), 0);
    assert_int_equal(reg_key_delete(fx->cu, "Del\\A"), ERROR_ACCESS_DENIED);
    assert_int_equal(reg_key_delete(a, "B"), 0);
    /* A handle to a deleted key says so. */
    assert_int_equal(reg_value_get(b, "x", NULL, NULL), ERROR_KEY_DELETED);
    assert_int_equal(reg_value_set_dword(b, "y", 1), ERROR_KEY_DELETED);
    assert_int_equal(reg_key_create(b, "C", 0, NULL, NULL, NULL), ERROR_KEY_DELETED);
    reg_key_close(b);
    assert_int_equal(reg_key_open(fx->cu, "Del\\A\\B", 0, &b), ERROR_FILE_NOT_FOUND);
    /* Delete tree with and without a subkey. */
    assert_int_equal(reg_key_create(a, "X\\Y", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_value_set_dword(a, "v", 1), 0);
    assert_int_equal(reg_key_delete_tree(a, NULL), 0);
    assert_subkeys(a, "");
    assert_values(a, "");
    assert_int_equal(reg_key_delete_tree(fx->cu, "Del"), 0);
    assert_int_equal(reg_key_delete_tree(fx->cu, "Del"), ERROR_FILE_NOT_FOUND);
    reg_key_close(a);
    /* Roots cannot be deleted. */
    assert_int_equal(reg_key_delete(fx->cu, ""), ERROR_ACCESS_DENIED);
}

static void test_rename_copy(void **state)
{
    struct fx *fx = *state;
    reg_key *src, *dst;
    assert_int_equal(reg_key_create(fx->cu, "R\\Old\\Sub", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_key_create(fx->cu, "R\\Other", 0, NULL, NULL, NULL), 0);
    reg_key *r;
    assert_int_equal(reg_key_open(fx->cu, "R", 0, &r), 0);
    assert_int_equal(reg_key_rename(r, "Old", "Other"), ERROR_ACCESS_DENIED);
    assert_int_equal(reg_key_rename(r, "Old", "a\\b"), ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_key_rename(r, "Old", "New"), 0);
    assert_subkeys(r, "New|Other");
    assert_int_equal(reg_key_open(r, "new\\sub", 0, &src), 0);
    reg_key_close(src);
    /* Copy a tree into its own subtree: terminates, copies once. */
    assert_int_equal(reg_key_open(r, "New", 0, &src), 0);
    assert_int_equal(reg_value_set_dword(src, "v", 9), 0);
    assert_int_equal(reg_key_create(src, "Sub\\Inner", 0, NULL, &dst, NULL), 0);
    assert_int_equal(reg_key_copy_tree(src, dst, true), 0);
    assert_subkeys(dst, "Sub");
    reg_key *deep;
    assert_int_equal(reg_key_open(dst, "Sub", 0, &deep), 0);
    assert_subkeys(deep, "Inner"); /* the copy of Sub's child, not copied again below */
    reg_key_close(deep);
    assert_int_equal(reg_key_open(dst, "Sub\\Inner", 0, &deep), 0);
    assert_subkeys(deep, "");
    reg_key_close(deep);
    assert_values(dst, "v");
    reg_key_close(dst);
    /* Copy across hives, values overwritten, destination-only kept. */
    assert_int_equal(reg_key_create(fx->lm, "Copy", 0, NULL, &dst, NULL), 0);
    assert_int_equal(reg_value_set_dword(dst, "v", 1), 0);
    assert_int_equal(reg_value_set_dword(dst, "only", 1), 0);
    assert_int_equal(reg_key_copy_tree(src, dst, false), 0);
    uint32_t v;
    assert_int_equal(reg_value_get_dword(dst, "v", &v), 0);
    assert_int_equal(v, 9);
    assert_values(dst, "v|only");
    assert_subkeys(dst, "");
    reg_key_close(dst);
    /* Move: the handle follows the key; not into itself, not across hives. */
    reg_key *to;
    assert_int_equal(reg_key_create(fx->cu, "Moved", 0, NULL, &to, NULL), 0);
    assert_int_equal(reg_key_move(r, "New", src, "X"), ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_key_move(r, "New", fx->lm, "X"), ERROR_NOT_SAME_DEVICE);
    assert_int_equal(reg_key_move(r, "New", to, "Here"), 0);
    assert_subkeys(r, "Other");
    assert_subkeys(to, "Here");
    assert_int_equal(reg_value_get_dword(src, "v", &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(reg_key_open(to, "here\\sub\\inner", 0, &dst), 0);
    reg_key_close(dst);
    assert_int_equal(reg_key_create(r, "Taken", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_key_move(to, "Here", r, "taken"), ERROR_ACCESS_DENIED);
    reg_key_close(to);
    reg_key_close(src);
    reg_key_close(r);
}

static void test_volatile(void **state)
{
    struct fx *fx = *state;
    reg_key *v;
    assert_int_equal(reg_key_create(fx->cu, "Vol", REG_OPTION_VOLATILE, NULL, &v, NULL), 0);
    assert_int_equal(reg_key_create(v, "Stable", 0, NULL, NULL, NULL),
                     ERROR_CHILD_MUST_BE_VOLATILE);
    assert_int_equal(reg_key_create(v, "Child", REG_OPTION_VOLATILE, NULL, NULL, NULL), 0);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(v, &info), 0);
    assert_true(info.is_volatile);
    reg_key_close(v);
    /* A new boot: another context with another boot id sees no volatile key. */
    reg_ctx *later;
    assert_int_equal(reg_ctx_open(fx->dir, &later), 0);
    later->boot[0] ^= 0xff;
    reg_key *cu;
    assert_int_equal(reg_key_open_root(later, REG_ROOT_HKCU, &cu), 0);
    assert_int_equal(reg_key_open(cu, "Vol", 0, &v), ERROR_FILE_NOT_FOUND);
    /* Its first write purges them; the name is free again. */
    assert_int_equal(reg_key_create(cu, "Vol", 0, NULL, &v, NULL), 0);
    assert_subkeys(v, "");
    reg_key_close(v);
    reg_key_close(cu);
    reg_ctx_close(later);
}

/* child_owner - in a child process: own HKCU\Owned, say so on fd, then wait to be killed. */
static void child_owner(const char *dir, int fd)
{
    reg_ctx *ctx;
    reg_key *cu, *k;
    reg_owner *o;
    if (reg_ctx_open(dir, &ctx) || reg_key_open_root(ctx, REG_ROOT_HKCU, &cu) ||
        reg_owner_new(cu, &o) ||
        reg_key_create(cu, "Owned\\Sub", REG_OPTION_OWNER_BOUND, o, &k, NULL) ||
        reg_value_set_dword(k, "pid", (uint32_t)getpid()))
        _exit(1);
    if (write(fd, "k", 1) != 1)
        _exit(1);
    pause();
    _exit(0);
}

static void test_owner_bound(void **state)
{
    struct fx *fx = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        child_owner(fx->dir, p[1]);
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    reg_key *k;
    assert_int_equal(reg_key_open(fx->cu, "Owned\\Sub", 0, &k), 0);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(k, &info), 0);
    assert_true(info.is_owner_bound);
    assert_true(info.is_volatile);
    /* SIGKILL: gone for every reader at once, through names and through handles. */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_int_equal(reg_value_get(k, "pid", NULL, NULL), ERROR_KEY_DELETED);
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->cu, "Owned", 0, &k), ERROR_FILE_NOT_FOUND);
    assert_subkeys(fx->cu, "");
    /* And purged from storage: a new key of the same name starts empty. */
    assert_int_equal(reg_key_create(fx->cu, "Owned", 0, NULL, &k, NULL), 0);
    assert_subkeys(k, "");
    reg_key_close(k);
    assert_int_equal(reg_key_delete_tree(fx->cu, "Owned"), 0);
    /* Released in-process: gone too; the owner must be in the key's hive. */
    reg_owner *o;
    assert_int_equal(reg_owner_new(fx->cu, &o), 0);
    assert_int_equal(reg_key_create(fx->lm, "X", REG_OPTION_OWNER_BOUND, o, NULL, NULL),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_key_create(fx->cu, "Mine", REG_OPTION_OWNER_BOUND, o, &k, NULL), 0);
    assert_int_equal(reg_key_create(k, "Stable", 0, NULL, NULL, NULL),
                     ERROR_CHILD_MUST_BE_VOLATILE);
    reg_owner_release(o);
    assert_int_equal(reg_value_get(k, "", NULL, NULL), ERROR_KEY_DELETED);
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->cu, "Mine", 0, &k), ERROR_FILE_NOT_FOUND);
}

static void test_txn(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->lm, "Txn", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_txn_begin(k), 0);
    assert_int_equal(reg_value_set_dword(k, "a", 1), 0);
    assert_int_equal(reg_key_create(k, "Sub", 0, NULL, NULL, NULL), 0);
    assert_values(k, "a"); /* we read our own writes */
    reg_txn_abort(k);
    assert_values(k, "");
    assert_subkeys(k, "");
    assert_int_equal(reg_txn_begin(k), 0);
    assert_int_equal(reg_value_set_dword(k, "a", 1), 0);
    assert_int_equal(reg_txn_commit(k), 0);
    assert_values(k, "a");
    assert_int_equal(reg_txn_commit(k), ERROR_INVALID_PARAMETER);
    reg_key_close(k);
}

#define SMAPS_LINE 4096
/* map_flags - the VmFlags of this process's mapping of file (from /proc/self/smaps) into out,
 * with a space after each flag; false when file is not mapped. */
static bool map_flags(const char *file, char out[SMAPS_LINE + 1])
{
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[SMAPS_LINE];
    bool in = false, found = false;
    size_t flen = strlen(file);
    while (!found && fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        line[len] = 0;
        if (!strncmp(line, "VmFlags:", 8)) {
            if (in) {
                snprintf(out, SMAPS_LINE + 1, "%s ", line + 8);
                found = true;
            }
        } else if (strchr(line, '-') && strchr(line, '-') < strchr(line, ' ')) {
            /* a mapping's header line: "start-end perms offset dev inode path" */
            in = len >= flen && !strcmp(line + len - flen, file);
        }
    }
    fclose(f);
    return found;
}

/* A lookup touches a few scattered pages: the hive's map must not read ahead (MADV_RANDOM,
 * "rr"), or a cold `reg query` on a large hive reads the readahead window at every fault. */
static void test_map_no_readahead(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->lm, "Mapped", 0, NULL, &k, NULL), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_create(fx->cu, "Mapped", 0, NULL, &k, NULL), 0);
    reg_key_close(k);
    char path[128], flags[SMAPS_LINE + 1];
    snprintf(path, sizeof path, "%s/registry/HKLM/data.mdb", fx->dir);
    assert_true(map_flags(path, flags));
    assert_non_null(strstr(flags, " rr "));
    snprintf(path, sizeof path, "%s/registry/HKU/%s/data.mdb", fx->dir, reg_ctx_user_sid(fx->ctx));
    assert_true(map_flags(path, flags));
    assert_non_null(strstr(flags, " rr "));
}

static void test_roots(void **state)
{
    struct fx *fx = *state;
    reg_key *k, *u;
    /* HKCU is HKU\<SID of the user>. */
    assert_int_equal(reg_key_create(fx->cu, "Software\\Mine", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_key_open_root(fx->ctx, REG_ROOT_HKU, &u), 0);
    buf p = BUF_INIT;
    buf_printf(&p, "%s\\Software\\Mine", reg_ctx_user_sid(fx->ctx));
    assert_int_equal(reg_key_open(u, buf_cstr(&p), 0, &k), 0);
    reg_key_close(k);
    assert_subkeys(u, reg_ctx_user_sid(fx->ctx));
    assert_int_equal(reg_key_delete(u, reg_ctx_user_sid(fx->ctx)), ERROR_ACCESS_DENIED);
    reg_key_close(u);
    buf_free(&p);
    char sid[32];
    reg_uid_sid(1000, sid);
    assert_string_equal(sid, "S-1-22-1-1000");
    /* HKCR: the user's classes over the machine's. */
    assert_int_equal(reg_key_create(fx->lm, "Software\\Classes\\.txt", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_sz(k, NULL, REG_SZ, "machine"), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_create(fx->lm, "Software\\Classes\\.doc", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_key_create(fx->cu, "Software\\Classes\\.txt", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_sz(k, NULL, REG_SZ, "user"), 0);
    reg_key_close(k);
    reg_key *cr;
    assert_int_equal(reg_key_open_root(fx->ctx, REG_ROOT_HKCR, &cr), 0);
    assert_subkeys(cr, ".doc|.txt");
    assert_int_equal(reg_key_open(cr, ".TXT", 0, &k), 0);
    assert_int_equal(reg_value_get_sz(k, NULL, &p), 0);
    assert_string_equal(buf_cstr(&p), "user");
    reg_key_close(k);
    reg_key_close(cr);
    /* Paths. */
    reg_root root;
    const char *sub;
    assert_int_equal(reg_path_split("hkey_local_machine\\A\\B", &root, &sub), 0);
    assert_int_equal(root, REG_ROOT_HKLM);
    assert_string_equal(sub, "A\\B");
    assert_int_equal(reg_path_split("HKCU", &root, &sub), 0);
    assert_string_equal(sub, "");
    assert_int_equal(reg_path_split("HKXX\\A", &root, &sub), ERROR_BADKEY);
    assert_int_equal(reg_path_split("HKCU_X", &root, &sub), ERROR_BADKEY);
    /* HKCC lives in HKLM. */
    assert_int_equal(reg_key_open_root(fx->ctx, REG_ROOT_HKCC, &k), 0);
    assert_int_equal(reg_value_set_dword(k, "cc", 5), 0);
    reg_key_close(k);
    assert_int_equal(
        reg_key_open(fx->lm, "System\\CurrentControlSet\\Hardware Profiles\\Current", 0, &k), 0);
    assert_values(k, "cc");
    reg_key_close(k);
    buf_free(&p);
}

static void test_notify(void **state)
{
    struct fx *fx = *state;
    reg_key *k, *sub;
    assert_int_equal(reg_key_create(fx->cu, "N\\Sub", 0, NULL, &sub, NULL), 0);
    assert_int_equal(reg_key_open(fx->cu, "N", 0, &k), 0);
    reg_notify *flat, *tree, *names;
    assert_int_equal(reg_notify_new(k, false, REG_NOTIFY_CHANGE_LAST_SET, &flat), 0);
    assert_int_equal(reg_notify_new(k, true, REG_NOTIFY_CHANGE_LAST_SET, &tree), 0);
    assert_int_equal(reg_notify_new(k, false, REG_NOTIFY_CHANGE_NAME, &names), 0);
    bool fired;
    assert_int_equal(reg_notify_check(flat, &fired), 0);
    assert_false(fired);
    /* A value set below: only the subtree watcher fires; the fd became readable. The change
     * is made by another process, as it would be. */
    pid_t pid = fork();
    if (pid == 0) {
        reg_ctx *c;
        reg_key *s;
        _exit(reg_ctx_open(fx->dir, &c) || reg_key_open_path(c, "HKCU\\N\\Sub", 0, &s) ||
              reg_value_set_dword(s, "x", 1));
    }
    int status;
    waitpid(pid, &status, 0);
    assert_int_equal(WEXITSTATUS(status), 0);
    struct pollfd pfd = {reg_notify_fd(tree), POLLIN, 0};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_int_equal(reg_notify_check(flat, &fired), 0);
    assert_false(fired);
    assert_int_equal(reg_notify_check(tree, &fired), 0);
    assert_true(fired);
    assert_int_equal(reg_notify_check(tree, &fired), 0);
    assert_false(fired); /* one shot, re-armed */
    assert_int_equal(reg_notify_check(names, &fired), 0);
    assert_false(fired);
    /* A value on the key itself fires the flat watcher; a new subkey the name watcher. */
    assert_int_equal(reg_value_set_dword(k, "y", 1), 0);
    assert_int_equal(reg_notify_check(flat, &fired), 0);
    assert_true(fired);
    assert_int_equal(reg_key_create(k, "New", 0, NULL, NULL, NULL), 0);
    assert_int_equal(reg_notify_check(names, &fired), 0);
    assert_true(fired);
    reg_notify_free(flat);
    reg_notify_free(tree);
    reg_notify_free(names);
    reg_key_close(k);
    reg_key_close(sub);
}

/* Four processes increment one counter 200 times each, read-modify-write in a transaction:
 * none of the 800 updates may be lost. */
static void test_concurrent_writers(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->lm, "Counter", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_dword(k, "n", 0), 0);
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            reg_ctx *c;
            reg_key *ck;
            if (reg_ctx_open(fx->dir, &c) || reg_key_open_path(c, "HKLM\\Counter", 0, &ck))
                _exit(1);
            for (int j = 0; j < 200; j++) {
                uint32_t v;
                if (reg_txn_begin(ck) || reg_value_get_dword(ck, "n", &v) ||
                    reg_value_set_dword(ck, "n", v + 1) || reg_txn_commit(ck))
                    _exit(2);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;
        waitpid(pids[i], &status, 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    uint32_t v;
    assert_int_equal(reg_value_get_dword(k, "n", &v), 0);
    assert_int_equal(v, 800);
    reg_key_close(k);
}

/* A writer killed with SIGKILL in the middle of a storm of transactions: the hive opens,
 * every committed transaction is whole (a == b), and other writers are not wedged. */
static void test_sigkill_storm(void **state)
{
    struct fx *fx = *state;
    for (int round = 0; round < 5; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            reg_ctx *c;
            reg_key *ck;
            if (reg_ctx_open(fx->dir, &c) || reg_key_open_root(c, REG_ROOT_HKLM, &ck))
                _exit(1);
            reg_key *s;
            if (reg_key_create(ck, "Storm", 0, NULL, &s, NULL))
                _exit(1);
            for (uint32_t i = 1;; i++) {
                if (reg_txn_begin(s) || reg_value_set_dword(s, "a", i) ||
                    reg_key_create(s, "k", 0, NULL, NULL, NULL) || reg_value_set_dword(s, "b", i) ||
                    reg_txn_commit(s))
                    _exit(2);
                if (i == 20 && write(p[1], "s", 1) != 1)
                    _exit(3);
            }
        }
        close(p[1]);
        char c;
        assert_int_equal(read(p[0], &c, 1), 1);
        close(p[0]);
        usleep(1000 * (unsigned)(round * 3));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        reg_ctx *ctx;
        reg_key *s;
        assert_int_equal(reg_ctx_open(fx->dir, &ctx), 0);
        assert_int_equal(reg_key_open_path(ctx, "HKLM\\Storm", 0, &s), 0);
        uint32_t a, b;
        assert_int_equal(reg_value_get_dword(s, "a", &a), 0);
        assert_int_equal(reg_value_get_dword(s, "b", &b), 0);
        assert_int_equal(a, b);
        assert_true(a >= 20);
        /* The writer lock is free again. */
        assert_int_equal(reg_value_set_dword(s, "after", a), 0);
        reg_key_close(s);
        reg_ctx_close(ctx);
    }
}

/* child_holder - in a child process: hold the shared owner token, say so, wait to be killed. */
static pid_t child_holder(const char *dir, const uint8_t *token)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        reg_ctx *ctx;
        reg_key *cu;
        reg_owner *o;
        if (reg_ctx_open(dir, &ctx) || reg_key_open_root(ctx, REG_ROOT_HKCU, &cu) ||
            reg_owner_join(cu, token, &o) || write(p[1], "j", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    return pid;
}

static void test_shared_owner_bind(void **state)
{
    struct fx *fx = *state;
    uint8_t token[REG_TOKEN_SIZE];
    memset(token, 0x5a, sizeof token);
    reg_key *k;
    assert_int_equal(reg_key_create(fx->cu, "Prof\\Section", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_dword(k, "v", 1), 0);
    reg_key_close(k);
    bool held;
    assert_int_equal(reg_owner_held(fx->cu, token, &held), 0);
    assert_false(held);
    pid_t a = child_holder(fx->dir, token), b = child_holder(fx->dir, token);
    assert_int_equal(reg_owner_held(fx->cu, token, &held), 0);
    assert_true(held);
    /* Bound while two processes hold it: still there, and so after one of them dies. */
    assert_int_equal(reg_key_open(fx->cu, "Prof", 0, &k), 0);
    assert_int_equal(reg_key_bind(k, token), 0);
    assert_int_equal(reg_key_bind(k, token), 0); /* again: no change */
    reg_key_close(k);
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    assert_int_equal(reg_key_open(fx->cu, "Prof\\Section", 0, &k), 0);
    reg_key_close(k);
    /* The last holder dies: the whole tree is gone at once, and purged at the next write. */
    kill(b, SIGKILL);
    waitpid(b, NULL, 0);
    assert_int_equal(reg_key_open(fx->cu, "Prof", 0, &k), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_key_create(fx->cu, "Prof", 0, NULL, &k, NULL), 0);
    assert_subkeys(k, "");
    /* Bound while nobody holds it: gone in the same call. */
    assert_int_equal(reg_key_create(k, "Sub", 0, NULL, NULL, NULL), 0);
    token[0] = 1;
    assert_int_equal(reg_key_bind(k, token), 0);
    assert_int_equal(reg_value_get(k, "", NULL, NULL), ERROR_KEY_DELETED);
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->cu, "Prof", 0, &k), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_key_bind(fx->cu, token), ERROR_ACCESS_DENIED);
}

/* A copy inside one hive writes while it reads: the data read must not move under it. The
 * shape is a MAPI profile's: a dozen sections of a dozen values each, copied a few times. */
static void check_copy(reg_key *dst, int sections, int values)
{
    for (int k = 0; k < sections; k++) {
        char sec[16];
        snprintf(sec, sizeof sec, "s%02d", k);
        reg_key *d;
        assert_int_equal(reg_key_open(dst, sec, 0, &d), 0);
        for (int i = 0; i < values; i++) {
            char name[16];
            snprintf(name, sizeof name, "0102%04x", i);
            buf b = BUF_INIT;
            assert_int_equal(reg_value_get(d, name, NULL, &b), 0);
            size_t want = (size_t)(k * 13 + i * 29) % 90 + 1;
            assert_int_equal(b.len, want);
            for (size_t j = 0; j < want; j++)
                if (b.data[j] != (uint8_t)(k + i + j))
                    fail_msg("%s\\%s byte %zu: got %02x", sec, name, j, b.data[j]);
            buf_free(&b);
        }
        reg_key_close(d);
    }
}

static void test_copy_many_values(void **state)
{
    struct fx *fx = *state;
    const int sections = 12, values = 12;
    reg_key *src;
    assert_int_equal(reg_key_create(fx->cu, "Many\\Src", 0, NULL, &src, NULL), 0);
    for (int k = 0; k < sections; k++) {
        char sec[16];
        snprintf(sec, sizeof sec, "s%02d", k);
        reg_key *sk;
        assert_int_equal(reg_key_create(src, sec, 0, NULL, &sk, NULL), 0);
        for (int i = 0; i < values; i++) {
            char name[16];
            uint8_t data[100];
            size_t n = (size_t)(k * 13 + i * 29) % 90 + 1;
            snprintf(name, sizeof name, "0102%04x", i);
            for (size_t j = 0; j < n; j++)
                data[j] = (uint8_t)(k + i + j);
            assert_int_equal(reg_value_set(sk, name, REG_BINARY, data, n), 0);
        }
        reg_key_close(sk);
    }
    for (int round = 0; round < 8; round++) {
        char name[32];
        snprintf(name, sizeof name, "Many\\Dst%d", round);
        reg_key *dst;
        assert_int_equal(reg_key_create(fx->cu, name, 0, NULL, &dst, NULL), 0);
        assert_int_equal(reg_key_copy_tree(src, dst, true), 0);
        check_copy(dst, sections, values);
        reg_key_close(dst);
    }
    reg_key_close(src);
}

/* --- registry views (REG_WOW64_32KEY / REG_WOW64_64KEY) -------------------------------- */

/* Where a key made in the 32-bit view lives, as the 64-bit view names it (the Windows 7
 * rules: HKLM\Software redirected but for Classes, which is shared but for CLSID, Interface,
 * DirectShow, Media Type and MediaFoundation; a user's Software shared; no redirection twice;
 * the rest of the registry shared). */
static const struct view_case {
    reg_root root;        /* where the key is made */
    const char *path;     /* as the 32-bit view names it */
    reg_root phys_root;   /* where it is found in the 64-bit view */
    const char *physical; /* as the 64-bit view names it */
} view_cases[] = {
    {REG_ROOT_HKLM, "Software\\V1", REG_ROOT_HKLM, "Software\\Wow6432Node\\V1"},
    {REG_ROOT_HKLM, "SOFTWARE\\v2\\Sub", REG_ROOT_HKLM, "Software\\Wow6432Node\\v2\\Sub"},
    {REG_ROOT_HKLM, "Software\\Wow6432Node\\V3", REG_ROOT_HKLM, "Software\\Wow6432Node\\V3"},
    {REG_ROOT_HKLM, "Software\\Classes\\.v4", REG_ROOT_HKLM, "Software\\Classes\\.v4"},
    {REG_ROOT_HKLM, "Software\\Classes\\CLSID\\V5", REG_ROOT_HKLM,
     "Software\\Classes\\Wow6432Node\\CLSID\\V5"},
    {REG_ROOT_HKLM, "Software\\Classes\\media type\\V6", REG_ROOT_HKLM,
     "Software\\Classes\\Wow6432Node\\media type\\V6"},
    {REG_ROOT_HKLM, "Software\\Classes\\Wow6432Node\\V7", REG_ROOT_HKLM,
     "Software\\Classes\\Wow6432Node\\V7"},
    {REG_ROOT_HKLM, "System\\V8", REG_ROOT_HKLM, "System\\V8"},
    {REG_ROOT_HKLM, "SoftwareX\\V9", REG_ROOT_HKLM, "SoftwareX\\V9"},
    {REG_ROOT_HKCU, "Software\\V10", REG_ROOT_HKCU, "Software\\V10"},
    {REG_ROOT_HKCU, "Software\\Classes\\Interface\\V11", REG_ROOT_HKCU,
     "Software\\Classes\\Wow6432Node\\Interface\\V11"},
    {REG_ROOT_HKCU, "Software\\Classes\\.v12", REG_ROOT_HKCU, "Software\\Classes\\.v12"},
    {REG_ROOT_HKCR, "CLSID\\V13", REG_ROOT_HKLM, "Software\\Classes\\Wow6432Node\\CLSID\\V13"},
    {REG_ROOT_HKCR, ".v14", REG_ROOT_HKLM, "Software\\Classes\\.v14"},
    /* The user's classes have a Wow6432Node since V11: HKCR makes new keys there. */
    {REG_ROOT_HKCR, "Wow6432Node\\V15", REG_ROOT_HKCU, "Software\\Classes\\Wow6432Node\\V15"},
    {REG_ROOT_HKCC, "V16", REG_ROOT_HKLM,
     "System\\CurrentControlSet\\Hardware Profiles\\Current\\V16"},
};

static void test_view_redirection(void **state)
{
    struct fx *fx = *state;
    for (size_t i = 0; i < sizeof view_cases / sizeof view_cases[0]; i++) {
        const struct view_case *c = &view_cases[i];
        reg_key *root, *proot, *k, *k2;
        buf got = BUF_INIT;
        print_message("case %zu: %s\n", i, c->path);
        assert_int_equal(reg_key_open_root(fx->ctx, c->root, &root), 0);
        assert_int_equal(reg_key_open_root(fx->ctx, c->phys_root, &proot), 0);
        assert_int_equal(reg_key_create_ex(root, c->path, 0, REG_WOW64_32KEY, NULL, &k, NULL), 0);
        assert_int_equal(reg_value_set_sz(k, "v", REG_SZ, c->path), 0);
        reg_key_close(k);
        /* Found where the 64-bit view says, with the value set through the 32-bit view. */
        assert_int_equal(reg_key_open(proot, c->physical, REG_READ, &k), 0);
        assert_int_equal(reg_value_get_sz(k, "v", &got), 0);
        assert_string_equal(buf_cstr(&got), c->path);
        reg_key_close(k);
        assert_int_equal(reg_key_open(proot, c->physical, REG_WOW64_64KEY, &k), 0);
        reg_key_close(k);
        /* Opened again in the 32-bit view; in the 64-bit view only when shared. */
        assert_int_equal(reg_key_open(root, c->path, REG_READ | REG_WOW64_32KEY, &k), 0);
        reg_key_close(k);
        bool shared = !strstr(c->physical, "Wow6432Node") || strstr(c->path, "Wow6432Node");
        int rc = reg_key_open(root, c->path, REG_WOW64_64KEY, &k2);
        assert_int_equal(rc, shared ? ERROR_SUCCESS : ERROR_FILE_NOT_FOUND);
        reg_key_close(k2);
        assert_int_equal(reg_key_open(root, c->path, 0, &k2), rc); /* a root is 64-bit */
        reg_key_close(k2);
        buf_free(&got);
        reg_key_close(root);
        reg_key_close(proot);
    }
    /* Nothing redirected twice, nothing redirected outside the rules. */
    reg_key *k;
    assert_int_equal(reg_key_open(fx->lm, "Software\\Wow6432Node\\Wow6432Node", 0, &k),
                     ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_key_open(fx->lm, "System\\Wow6432Node", 0, &k), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_key_open(fx->cu, "Software\\Wow6432Node", 0, &k), ERROR_FILE_NOT_FOUND);
    /* The 64-bit view shows Wow6432Node as an ordinary subkey; the 32-bit one is inside. */
    assert_int_equal(reg_key_open(fx->lm, "Software", 0, &k), 0);
    assert_subkeys(k, "Classes|Wow6432Node");
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->lm, "Software", REG_WOW64_32KEY, &k), 0);
    assert_subkeys(k, "V1|v2|V3");
    reg_key_close(k);
    /* Both views at once is a bad parameter, for every call taking access. */
    assert_int_equal(reg_key_open(fx->lm, "Software", REG_WOW64_32KEY | REG_WOW64_64KEY, &k),
                     ERROR_INVALID_PARAMETER);
    assert_null(k);
    assert_int_equal(reg_key_open_path(fx->ctx, "HKLM\\Software",
                                       REG_READ | REG_WOW64_32KEY | REG_WOW64_64KEY, &k),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_key_create_ex(fx->lm, "Software\\X", 0, REG_WOW64_32KEY | REG_WOW64_64KEY,
                                       NULL, &k, NULL),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_key_delete_ex(fx->lm, "Software\\V1", REG_WOW64_32KEY | REG_WOW64_64KEY),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(reg_import(fx->ctx, (const uint8_t *)"REGEDIT4\r\n", 10,
                                REG_WOW64_32KEY | REG_WOW64_64KEY, NULL, NULL),
                     ERROR_INVALID_PARAMETER);
}

/* A handle keeps its view: keys opened and created from it without a flag are in it too. */
static void test_view_handles(void **state)
{
    struct fx *fx = *state;
    reg_key *sw32, *sw64, *k;
    buf got = BUF_INIT;
    assert_int_equal(reg_key_create(fx->lm, "Software\\Same\\Deep", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_sz(k, "v", REG_SZ, "64"), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_create(fx->lm, "Software\\Classes\\.shared", 0, NULL, NULL, NULL), 0);
    /* The 32-bit view's Software is Software\\Wow6432Node, made on first use. */
    assert_int_equal(reg_key_open_path(fx->ctx, "HKLM\\Software", REG_WOW64_32KEY, &sw32),
                     ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_key_create_ex(fx->lm, "Software", 0, REG_WOW64_32KEY, NULL, &sw32, NULL),
                     0);
    reg_key_close(sw32);
    assert_int_equal(reg_key_open_path(fx->ctx, "HKLM\\Software", REG_WOW64_32KEY, &sw32), 0);
    assert_int_equal(reg_key_open(fx->lm, "Software", 0, &sw64), 0);
    /* Created below the 32-bit handle: in Wow6432Node, also through a path. */
    assert_int_equal(reg_key_create(sw32, "Same\\Deep", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_sz(k, "v", REG_SZ, "32"), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_open(sw32, "Same\\Deep", REG_READ, &k), 0);
    assert_int_equal(reg_value_get_sz(k, "v", &got), 0);
    assert_string_equal(buf_cstr(&got), "32");
    /* ... and one more level down, relative to that key. */
    reg_key *deeper;
    assert_int_equal(reg_key_create(k, "Deeper", 0, NULL, &deeper, NULL), 0);
    reg_key_close(deeper);
    reg_key_close(k);
    assert_int_equal(
        reg_key_open(fx->lm, "Software\\Wow6432Node\\Same\\Deep\\Deeper", REG_READ, &k), 0);
    reg_key_close(k);
    /* An explicit flag overrides the handle's view, both ways. */
    assert_int_equal(reg_key_open(sw32, "Same\\Deep", REG_WOW64_64KEY, &k), 0);
    assert_int_equal(reg_value_get_sz(k, "v", &got), 0);
    assert_string_equal(buf_cstr(&got), "64");
    reg_key_close(k);
    assert_int_equal(reg_key_open(sw64, "Same\\Deep", REG_WOW64_32KEY, &k), 0);
    assert_int_equal(reg_value_get_sz(k, "v", &got), 0);
    assert_string_equal(buf_cstr(&got), "32");
    reg_key_close(k);
    /* Classes is shared: found from the 32-bit Software, not in its Wow6432Node. */
    assert_int_equal(reg_key_open(sw32, "Classes\\.shared", 0, &k), 0);
    reg_key_close(k);
    /* The 32-bit Software's own values are Wow6432Node's; "" reopens it in either view. */
    assert_int_equal(reg_value_set_dword(sw32, "w", 32), 0);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Wow6432Node", 0, &k), 0);
    assert_values(k, "w");
    reg_key_close(k);
    assert_int_equal(reg_key_open(sw32, "", 0, &k), 0);
    assert_values(k, "w");
    reg_key_close(k);
    assert_int_equal(reg_key_open(sw32, NULL, REG_WOW64_64KEY, &k), 0);
    assert_values(k, "");
    assert_subkeys(k, "Classes|Same|Wow6432Node");
    reg_key_close(k);
    assert_int_equal(reg_key_open(sw64, "", REG_WOW64_32KEY, &k), 0);
    assert_values(k, "w");
    reg_key_close(k);
    /* Copies keep each handle's view. */
    reg_key *dst;
    assert_int_equal(reg_key_open(sw32, "Same", 0, &k), 0);
    assert_int_equal(reg_key_create(sw32, "Copy", 0, NULL, &dst, NULL), 0);
    assert_int_equal(reg_key_copy_tree(k, dst, true), 0);
    reg_key_close(dst);
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Wow6432Node\\Copy\\Deep\\Deeper", 0, &k), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Copy", 0, &k), ERROR_FILE_NOT_FOUND);
    /* Export prints the names of the view and the 32-bit view's data. */
    buf ex = BUF_INIT;
    assert_int_equal(reg_key_open(sw32, "Same", 0, &k), 0);
    assert_int_equal(reg_export(k, "HKEY_LOCAL_MACHINE\\Software\\Same", REG_EXPORT_REGEDIT4, &ex),
                     0);
    reg_key_close(k);
    assert_non_null(strstr(buf_cstr(&ex), "[HKEY_LOCAL_MACHINE\\Software\\Same\\Deep]\r\n"
                                          "\"v\"=\"32\"\r\n"));
    buf_free(&ex);
    buf_free(&got);
    reg_key_close(sw32);
    reg_key_close(sw64);
}

static void test_view_delete_import(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->lm, "Software\\Both", 0, NULL, NULL, NULL), 0);
    assert_int_equal(
        reg_key_create_ex(fx->lm, "Software\\Both", 0, REG_WOW64_32KEY, NULL, NULL, NULL), 0);
    /* RegDeleteKeyEx deletes in the view asked for; RegDeleteKey in the parent's. */
    assert_int_equal(reg_key_delete_ex(fx->lm, "Software\\Both", REG_WOW64_32KEY), 0);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Wow6432Node\\Both", 0, &k),
                     ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Both", 0, &k), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_delete_ex(fx->lm, "Software\\Both", REG_WOW64_32KEY),
                     ERROR_FILE_NOT_FOUND);
    assert_int_equal(
        reg_key_create_ex(fx->lm, "Software\\Both\\Sub", 0, REG_WOW64_32KEY, NULL, NULL, NULL), 0);
    reg_key *sw32;
    assert_int_equal(reg_key_open(fx->lm, "Software", REG_WOW64_32KEY | REG_WRITE, &sw32), 0);
    assert_int_equal(reg_key_delete(sw32, "Both"), ERROR_ACCESS_DENIED); /* has a subkey */
    assert_int_equal(reg_key_delete_tree(sw32, "Both"), 0);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Both", 0, &k), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_delete_ex(sw32, "Both", REG_WOW64_64KEY), 0);
    assert_int_equal(reg_key_open(fx->lm, "Software\\Both", 0, &k), ERROR_FILE_NOT_FOUND);
    reg_key_close(sw32);
    /* An import in the 32-bit view writes each key where the view puts it. */
    static const char file[] = "REGEDIT4\r\n\r\n"
                               "[HKEY_LOCAL_MACHINE\\Software\\Imp]\r\n\"a\"=\"lm\"\r\n\r\n"
                               "[HKEY_CLASSES_ROOT\\CLSID\\Imp]\r\n\"a\"=\"cr\"\r\n\r\n"
                               "[HKEY_CURRENT_USER\\Software\\Imp]\r\n\"a\"=\"cu\"\r\n\r\n"
                               "[-HKEY_LOCAL_MACHINE\\Software\\Gone]\r\n";
    assert_int_equal(reg_key_create(fx->lm, "Software\\Gone", 0, NULL, NULL, NULL), 0);
    assert_int_equal(
        reg_key_create_ex(fx->lm, "Software\\Gone", 0, REG_WOW64_32KEY, NULL, NULL, NULL), 0);
    assert_int_equal(
        reg_import(fx->ctx, (const uint8_t *)file, sizeof file - 1, REG_WOW64_32KEY, NULL, NULL),
        0);
    static const char *const there[] = {"HKLM\\Software\\Wow6432Node\\Imp",
                                        "HKLM\\Software\\Classes\\Wow6432Node\\CLSID\\Imp",
                                        "HKCU\\Software\\Imp", "HKLM\\Software\\Gone"};
    static const char *const not_there[] = {"HKLM\\Software\\Imp", "HKCR\\CLSID\\Imp",
                                            "HKLM\\Software\\Wow6432Node\\Gone"};
    for (size_t i = 0; i < sizeof there / sizeof there[0]; i++) {
        assert_int_equal(reg_key_open_path(fx->ctx, there[i], REG_READ, &k), 0);
        reg_key_close(k);
    }
    for (size_t i = 0; i < sizeof not_there / sizeof not_there[0]; i++)
        assert_int_equal(reg_key_open_path(fx->ctx, not_there[i], REG_READ, &k),
                         ERROR_FILE_NOT_FOUND);
}

/* damaged_open - a fresh context's HKLM open on the fixture's registry, after damage. */
static int damaged_open(const char *dir, const char *damaged)
{
    reg_ctx *ctx;
    reg_key *k = NULL;
    assert_int_equal(reg_ctx_open(dir, &ctx), ERROR_SUCCESS);
    int rc = reg_key_open_root(ctx, REG_ROOT_HKLM, &k);
    if (damaged)
        assert_string_equal(reg_ctx_damaged(ctx) ? reg_ctx_damaged(ctx) : "(none)", damaged);
    else
        assert_null(reg_ctx_damaged(ctx));
    reg_key_close(k);
    reg_ctx_close(ctx);
    return rc;
}

/* A data file cut short (on a page boundary too: LMDB would map past its end and die of
 * SIGBUS at the first lookup; to nothing: LMDB would make it a new empty hive), or with its
 * meta pages overwritten, is ERROR_BADDB and named;
 * garbage in the lock file is rebuilt by the first opener. */
static void test_damaged_hive(void **state)
{
    struct fx *fx = *state;
    reg_key *k;
    assert_int_equal(reg_key_create(fx->lm, "Software\\Damage", 0, NULL, &k, NULL), 0);
    static char big[8192];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", i);
        assert_int_equal(reg_value_set(k, name, REG_BINARY, (uint8_t *)big, sizeof big), 0);
    }
    reg_key_close(k);
    reg_key_close(fx->lm);
    reg_key_close(fx->cu);
    fx->lm = fx->cu = NULL;
    reg_ctx_close(fx->ctx);
    fx->ctx = NULL;
    char data[128], lock[128];
    snprintf(data, sizeof data, "%s/registry/HKLM/data.mdb", fx->dir);
    snprintf(lock, sizeof lock, "%s/registry/HKLM/lock.mdb", fx->dir);
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    off_t size = st.st_size;
    assert_true(size >= 16 * 4096);
    buf good = BUF_INIT;
    assert_int_equal(base_read_file(data, 1u << 20, &good), 0);

    assert_int_equal(damaged_open(fx->dir, NULL), ERROR_SUCCESS);
    const off_t cuts[] = {0, 100, 4096, 8192, 3 * 4096, size / 2, size - 4096};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(truncate(data, cuts[i]), 0);
        assert_int_equal(damaged_open(fx->dir, data), ERROR_BADDB);
        assert_int_equal(base_write_file_atomic(data, good.data, good.len, 0644), 0);
    }
    int fd = open(data, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, big, 4096, 0), 4096);
    close(fd);
    assert_int_equal(damaged_open(fx->dir, data), ERROR_BADDB);
    assert_int_equal(base_write_file_atomic(data, good.data, good.len, 0644), 0);

    fd = open(lock, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, big, 4096, 0), 4096);
    close(fd);
    assert_int_equal(damaged_open(fx->dir, NULL), ERROR_SUCCESS);
    buf_free(&good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subkey_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_many_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_volatile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_owner_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_owner_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_no_readahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_redirection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_delete_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_storm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_hive, setup, teardown),
    };
    return cmocka_run_group_tests_name("reg", tests, NULL, NULL);
}
