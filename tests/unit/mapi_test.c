/* mapi_test.c - unit tests of MAPI profiles, services and sessions (lib/mapi) on a private
 * registry: IProfAdmin's and IMsgServiceAdmin's results, the Windows layout, deferred deletion
 * and rename, and several processes at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mapi/mapi.h"

#define CATALOGUE "data/mapisvc.inf" /* tests run from the repository's root */
#define PROFILES "HKCU\\" MAPI_PROFILES_PATH

struct fx {
    char dir[64];
    reg_ctx *reg;
    mapi_ctx *mapi;
};

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    strcpy(fx->dir, "/tmp/mapi_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_int_equal(reg_ctx_open(fx->dir, &fx->reg), ERROR_SUCCESS);
    assert_int_equal(mapi_init(fx->reg, CATALOGUE, &fx->mapi), S_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    mapi_fini(fx->mapi);
    reg_ctx_close(fx->reg);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* table - the profile table as "name[*][+]|..." (* default, + in use). */
static char *table(mapi_ctx *m)
{
    static char out[1024];
    mapi_profile_row *rows;
    size_t n;
    assert_int_equal(mapi_profile_table(m, &rows, &n), S_OK);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(out, "|");
        strcat(out, rows[i].name);
        if (rows[i].is_default)
            strcat(out, "*");
        if (rows[i].in_use)
            strcat(out, "+");
    }
    mapi_profile_rows_free(rows, n);
    return out;
}

static bool key_exists(reg_ctx *reg, const char *path)
{
    reg_key *k;
    if (reg_key_open_path(reg, path, 0, &k))
        return false;
    reg_key_close(k);
    return true;
}

static void search_key(reg_ctx *reg, const char *profile, uint8_t out[16])
{
    char path[512];
    snprintf(path, sizeof path, "%s\\%s\\8503020000000000c000000000000046", PROFILES, profile);
    reg_key *k;
    assert_int_equal(reg_key_open_path(reg, path, 0, &k), 0);
    uint32_t type;
    buf b = BUF_INIT;
    assert_int_equal(reg_value_get(k, "0102300b", &type, &b), 0);
    assert_int_equal(type, REG_BINARY);
    assert_int_equal(b.len, 16);
    memcpy(out, b.data, 16);
    buf_free(&b);
    reg_key_close(k);
}

static void test_create_names(void **state)
{
    struct fx *fx = *state;
    static const struct {
        const char *name;
        mapi_err want;
    } cases[] = {
        {"Gateway", S_OK},
        {"MSExchangeIMC 0123456789", S_OK},
        {"Caf\xc3\xa9 profile", S_OK},
        {"1234567890123456789012345678901234567890123456789012345678901234", S_OK},
        {"12345678901234567890123456789012345678901234567890123456789012345",
         MAPI_E_INVALID_PARAMETER},
        {" lead", MAPI_E_INVALID_PARAMETER},
        {"trail ", MAPI_E_INVALID_PARAMETER},
        {"back\\slash", MAPI_E_INVALID_PARAMETER},
        {"", MAPI_E_INVALID_PARAMETER},
        {"gateway", MAPI_E_NO_ACCESS}, /* names are case-insensitive: it exists */
        {"Gateway", MAPI_E_NO_ACCESS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mapi_err got = mapi_profile_create(fx->mapi, cases[i].name, 0);
        if (got != cases[i].want)
            fail_msg("create \"%s\": got %s, want %s", cases[i].name, mapi_strerror(got),
                     mapi_strerror(cases[i].want));
    }
    assert_string_equal(table(fx->mapi),
                        "1234567890123456789012345678901234567890123456789012345678901234|"
                        "Caf\xc3\xa9 profile|Gateway|MSExchangeIMC 0123456789");
    assert_int_equal(mapi_profile_create(fx->mapi, "X", 0x80), MAPI_E_UNKNOWN_FLAGS);
}

static void test_layout(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(mapi_profile_create(fx->mapi, "Gateway", MAPI_DEFAULT_SERVICES), S_OK);
    static const char *sections[] = {"13dbb0c8aa05101a9bb000aa002fc45a",
                                     "8503020000000000c000000000000046",
                                     "9207f3e0a3b11019908b08002b2a56c2"};
    for (size_t i = 0; i < 3; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s\\Gateway\\%s", PROFILES, sections[i]);
        assert_true(key_exists(fx->reg, path));
    }
    /* PR_SEARCH_KEY differs for each profile, also when a name is reused. */
    uint8_t a[16], b[16];
    search_key(fx->reg, "Gateway", a);
    assert_int_equal(mapi_profile_delete(fx->mapi, "Gateway"), S_OK);
    assert_false(key_exists(fx->reg, PROFILES "\\Gateway"));
    assert_int_equal(mapi_profile_create(fx->mapi, "Gateway", 0), S_OK);
    search_key(fx->reg, "Gateway", b);
    assert_memory_not_equal(a, b, 16);
    /* Values are REG_BINARY named by tag, type first. */
    reg_key *g;
    assert_int_equal(
        reg_key_open_path(fx->reg, PROFILES "\\Gateway\\9207f3e0a3b11019908b08002b2a56c2", 0, &g),
        0);
    uint32_t type;
    assert_int_equal(reg_value_get(g, "01023d0e", &type, NULL), 0);
    assert_int_equal(type, REG_BINARY);
    reg_key_close(g);
}

static void test_default(void **state)
{
    struct fx *fx = *state;
    char *name;
    assert_int_equal(mapi_profile_get_default(fx->mapi, &name), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_profile_create(fx->mapi, "A", 0), S_OK);
    assert_int_equal(mapi_profile_create(fx->mapi, "B", 0), S_OK);
    assert_int_equal(mapi_profile_set_default(fx->mapi, "C"), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_profile_set_default(fx->mapi, "B"), S_OK);
    assert_string_equal(table(fx->mapi), "A|B*");
    assert_int_equal(mapi_profile_get_default(fx->mapi, &name), S_OK);
    assert_string_equal(name, "B");
    free(name);
    /* The DefaultProfile value of Profiles names it, as Windows keeps it. */
    reg_key *k;
    buf v = BUF_INIT;
    assert_int_equal(reg_key_open_path(fx->reg, PROFILES, 0, &k), 0);
    assert_int_equal(reg_value_get_sz(k, "DefaultProfile", &v), 0);
    assert_string_equal(buf_cstr(&v), "B");
    reg_key_close(k);
    buf_free(&v);
    /* The default follows a rename and goes with a delete. */
    assert_int_equal(mapi_profile_rename(fx->mapi, "B", "Bee"), S_OK);
    assert_string_equal(table(fx->mapi), "A|Bee*");
    assert_int_equal(mapi_profile_delete(fx->mapi, "Bee"), S_OK);
    assert_int_equal(mapi_profile_get_default(fx->mapi, &name), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_profile_set_default(fx->mapi, "A"), S_OK);
    assert_int_equal(mapi_profile_set_default(fx->mapi, NULL), S_OK);
    assert_string_equal(table(fx->mapi), "A");
}

static void test_delete_copy_rename(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(mapi_profile_delete(fx->mapi, "Nope"), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_profile_create(fx->mapi, "Src", MAPI_DEFAULT_SERVICES), S_OK);
    assert_int_equal(mapi_profile_create(fx->mapi, "Other", 0), S_OK);
    assert_int_equal(mapi_profile_copy(fx->mapi, "Nope", "X"), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_profile_copy(fx->mapi, "Src", "Other"), MAPI_E_NO_ACCESS);
    assert_int_equal(mapi_profile_copy(fx->mapi, "Src", "Copy"), S_OK);
    uint8_t a[16], b[16];
    search_key(fx->reg, "Src", a);
    search_key(fx->reg, "Copy", b);
    assert_memory_not_equal(a, b, 16);
    mapi_svcadmin *adm;
    mapi_service_row *rows;
    size_t n;
    assert_int_equal(mapi_admin_services(fx->mapi, "Copy", &adm), S_OK);
    assert_int_equal(mapi_service_table(adm, &rows, &n), S_OK);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].name, "MSEMS");
    mapi_service_rows_free(rows, n);
    mapi_svcadmin_release(adm);
    assert_int_equal(mapi_profile_rename(fx->mapi, "Nope", "Y"), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_profile_rename(fx->mapi, "Copy", "Other"), MAPI_E_NO_ACCESS);
    assert_int_equal(mapi_profile_rename(fx->mapi, "Copy", " bad"), MAPI_E_INVALID_PARAMETER);
    assert_int_equal(mapi_profile_rename(fx->mapi, "Copy", "Renamed"), S_OK);
    assert_string_equal(table(fx->mapi), "Other|Renamed|Src");
    search_key(fx->reg, "Renamed", a);
    assert_memory_equal(a, b, 16);
}

static void test_services(void **state)
{
    struct fx *fx = *state;
    mapi_svcadmin *adm;
    assert_int_equal(mapi_admin_services(fx->mapi, "Gateway", &adm), MAPI_E_LOGON_FAILED);
    assert_int_equal(mapi_profile_create(fx->mapi, "Gateway", 0), S_OK);
    assert_int_equal(mapi_admin_services(fx->mapi, "gateway", &adm), S_OK);
    mapi_uid svc, other;
    assert_int_equal(mapi_service_create(adm, "NOSUCH", NULL, &svc), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_service_create(adm, "MSEMS", NULL, &svc), S_OK);
    assert_int_equal(mapi_service_create(adm, "MSEMS", NULL, &other), MAPI_E_NO_ACCESS);
    mapi_service_row *rows;
    size_t n;
    assert_int_equal(mapi_service_table(adm, &rows, &n), S_OK);
    assert_int_equal(n, 1);
    assert_memory_equal(rows[0].uid.ab, svc.ab, 16);
    assert_string_equal(rows[0].name, "MSEMS");
    assert_string_equal(rows[0].display, "Microsoft Exchange Server");
    mapi_service_rows_free(rows, n);
    /* Each provider's section points back at the service, and the global section lists it
     * by kind. */
    mapi_prop stores;
    assert_int_equal(mapi_section_get_prop(adm, &MAPI_UID_GLOBAL, PR_STORE_PROVIDERS, &stores),
                     S_OK);
    assert_true(stores.v.bin.cb >= 16 && stores.v.bin.cb % 16 == 0);
    mapi_prop back;
    assert_int_equal(
        mapi_section_get_prop(adm, (mapi_uid *)stores.v.bin.lpb, PR_SERVICE_UID, &back), S_OK);
    assert_int_equal(back.v.bin.cb, 16);
    assert_memory_equal(back.v.bin.lpb, svc.ab, 16);
    mapi_prop_clear(&back);
    mapi_prop rtype;
    assert_int_equal(
        mapi_section_get_prop(adm, (mapi_uid *)stores.v.bin.lpb, PR_RESOURCE_TYPE, &rtype), S_OK);
    assert_int_equal(rtype.v.l, MAPI_STORE_PROVIDER);
    /* Configure: the home server and mailbox land in the global section, as Exchange's
     * service entry point puts them. */
    mapi_prop cfg[2] = {{.tag = PR_PROFILE_HOME_SERVER}, {.tag = PR_PROFILE_USER}};
    cfg[0].v.str = "mail1";
    cfg[1].v.str = "/o=Org/ou=Site/cn=Recipients/cn=IMS";
    assert_int_equal(mapi_service_configure(adm, &other, cfg, 2), MAPI_E_NOT_FOUND);
    assert_int_equal(mapi_service_configure(adm, &svc, cfg, 2), S_OK);
    mapi_prop got;
    assert_int_equal(mapi_section_get_prop(adm, &MAPI_UID_GLOBAL, PR_PROFILE_HOME_SERVER, &got),
                     S_OK);
    assert_string_equal(got.v.str, "mail1");
    mapi_prop_clear(&got);
    cfg[0].v.str = "";
    assert_int_equal(mapi_service_configure(adm, &svc, cfg, 1), MAPI_E_INVALID_PARAMETER);
    /* Sections as a whole. */
    mapi_prop *props;
    assert_int_equal(mapi_section_get_props(adm, &svc, &props, &n), S_OK);
    bool saw_name = false;
    for (size_t i = 0; i < n; i++)
        if (props[i].tag == PR_SERVICE_NAME)
            saw_name = !strcmp(props[i].v.str, "MSEMS");
    assert_true(saw_name);
    mapi_props_free(props, n);
    mapi_uid *uids;
    assert_int_equal(mapi_section_list(adm, &uids, &n), S_OK);
    assert_true(n >= 3 + 1 + 1); /* the three fixed ones, the service, its providers */
    free(uids);
    /* Delete: the service, its providers and their places in the lists. */
    assert_int_equal(mapi_service_delete(adm, &svc), S_OK);
    assert_int_equal(mapi_service_delete(adm, &svc), MAPI_E_NOT_FOUND);
    assert_int_equal(
        mapi_section_get_prop(adm, (mapi_uid *)stores.v.bin.lpb, PR_SERVICE_UID, &back),
        MAPI_E_NOT_FOUND);
    mapi_prop_clear(&stores);
    assert_int_equal(mapi_section_get_prop(adm, &MAPI_UID_GLOBAL, PR_STORE_PROVIDERS, &stores),
                     S_OK);
    assert_int_equal(stores.v.bin.cb, 0);
    mapi_prop_clear(&stores);
    assert_int_equal(mapi_service_table(adm, &rows, &n), S_OK);
    assert_int_equal(n, 0);
    mapi_service_rows_free(rows, n);
    mapi_svcadmin_release(adm);
}

static void test_deferred_delete(void **state)
{
    struct fx *fx = *state;
    mapi_session *s;
    assert_int_equal(mapi_logon(fx->mapi, "Gateway", MAPI_EXPLICIT_PROFILE, &s),
                     MAPI_E_LOGON_FAILED);
    assert_int_equal(mapi_profile_create(fx->mapi, "Gateway", MAPI_DEFAULT_SERVICES), S_OK);
    assert_int_equal(mapi_logon(fx->mapi, "Gateway", MAPI_EXPLICIT_PROFILE | MAPI_NO_MAIL, &s),
                     S_OK);
    assert_string_equal(table(fx->mapi), "Gateway+");
    uint8_t token[16];
    search_key(fx->reg, "Gateway", token);
    /* Deleted while in use: absent from the table at once, the key still there (moved to
     * Deleted Profiles), the name free again, the session still working. */
    assert_int_equal(mapi_profile_delete(fx->mapi, "Gateway"), S_OK);
    assert_string_equal(table(fx->mapi), "");
    assert_false(key_exists(fx->reg, PROFILES "\\Gateway"));
    char moved[512], hex[33];
    mapi_uid_hex((mapi_uid *)token, hex);
    snprintf(moved, sizeof moved,
             "HKCU\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Windows Messaging "
             "Subsystem\\Deleted Profiles\\Gateway %s",
             hex);
    assert_true(key_exists(fx->reg, moved));
    assert_int_equal(mapi_logon(fx->mapi, "Gateway", 0, &(mapi_session *){NULL}),
                     MAPI_E_LOGON_FAILED);
    mapi_svcadmin *adm;
    mapi_service_row *rows;
    size_t n;
    assert_int_equal(mapi_session_admin(s, &adm), S_OK);
    assert_int_equal(mapi_service_table(adm, &rows, &n), S_OK);
    assert_int_equal(n, 1);
    mapi_service_rows_free(rows, n);
    mapi_svcadmin_release(adm);
    /* Logoff: gone. */
    assert_int_equal(mapi_logoff(s), S_OK);
    assert_false(key_exists(fx->reg, moved));
    /* A profile not in use goes at once. */
    assert_int_equal(mapi_profile_create(fx->mapi, "Gateway", 0), S_OK);
    assert_int_equal(mapi_profile_delete(fx->mapi, "Gateway"), S_OK);
    assert_false(key_exists(fx->reg, PROFILES "\\Gateway"));
}

/* The session's process killed: the profile waiting for deletion is gone at that moment. */
static void test_deferred_delete_killed(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(mapi_profile_create(fx->mapi, "Gateway", 0), S_OK);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        reg_ctx *r;
        mapi_ctx *m;
        mapi_session *s;
        if (reg_ctx_open(fx->dir, &r) || mapi_init(r, CATALOGUE, &m) ||
            mapi_logon(m, "Gateway", MAPI_EXPLICIT_PROFILE, &s) || write(p[1], "s", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    assert_string_equal(table(fx->mapi), "Gateway+");
    uint8_t token[16];
    search_key(fx->reg, "Gateway", token);
    assert_int_equal(mapi_profile_delete(fx->mapi, "Gateway"), S_OK);
    char moved[512], hex[33];
    mapi_uid_hex((mapi_uid *)token, hex);
    snprintf(moved, sizeof moved,
             "HKCU\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Windows Messaging "
             "Subsystem\\Deleted Profiles\\Gateway %s",
             hex);
    assert_true(key_exists(fx->reg, moved));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_false(key_exists(fx->reg, moved));
}

static void test_deferred_rename(void **state)
{
    struct fx *fx = *state;
    assert_int_equal(mapi_profile_create(fx->mapi, "Old", 0), S_OK);
    assert_int_equal(mapi_profile_set_default(fx->mapi, "Old"), S_OK);
    mapi_session *s;
    assert_int_equal(mapi_logon(fx->mapi, "Old", MAPI_EXPLICIT_PROFILE, &s), S_OK);
    assert_int_equal(mapi_profile_rename(fx->mapi, "Old", "New"), S_OK);
    assert_string_equal(table(fx->mapi), "Old*+");
    /* The new name is spoken for meanwhile. */
    assert_int_equal(mapi_profile_create(fx->mapi, "New", 0), MAPI_E_NO_ACCESS);
    assert_int_equal(mapi_logoff(s), S_OK);
    assert_string_equal(table(fx->mapi), "New*");
}

/* Two processes create the same profile at the same moment: exactly one succeeds. */
static void test_create_race(void **state)
{
    struct fx *fx = *state;
    for (int round = 0; round < 10; round++) {
        char name[32];
        snprintf(name, sizeof name, "Race %d", round);
        int go[2], res[2];
        assert_int_equal(pipe(go), 0);
        assert_int_equal(pipe(res), 0);
        pid_t pids[2];
        for (int i = 0; i < 2; i++) {
            pids[i] = fork();
            if (pids[i] == 0) {
                reg_ctx *r;
                mapi_ctx *m;
                char c;
                if (reg_ctx_open(fx->dir, &r) || mapi_init(r, CATALOGUE, &m) ||
                    read(go[0], &c, 1) != 1)
                    _exit(9);
                mapi_err e = mapi_profile_create(m, name, MAPI_DEFAULT_SERVICES);
                char out = e == S_OK ? 'y' : e == MAPI_E_NO_ACCESS ? 'n' : 'e';
                _exit(write(res[1], &out, 1) == 1 ? 0 : 9);
            }
        }
        close(go[0]);
        close(res[1]);
        assert_int_equal(write(go[1], "gg", 2), 2);
        close(go[1]);
        char got[2];
        assert_int_equal(read(res[0], got, 1), 1);
        assert_int_equal(read(res[0], got + 1, 1), 1);
        close(res[0]);
        for (int i = 0; i < 2; i++)
            waitpid(pids[i], NULL, 0);
        assert_true((got[0] == 'y' && got[1] == 'n') || (got[0] == 'n' && got[1] == 'y'));
    }
}

/* A bound profile lives exactly as long as the process (the context) that made it. */
static void test_bound_profile(void **state)
{
    struct fx *fx = *state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        reg_ctx *r;
        mapi_ctx *m;
        mapi_session *s;
        mapi_svcadmin *adm;
        mapi_uid svc;
        if (reg_ctx_open(fx->dir, &r) || mapi_init(r, CATALOGUE, &m) ||
            mapi_profile_create(m, "MSExchangeIMC 0123456789", MAPI_PROFILE_BOUND) ||
            mapi_admin_services(m, "MSExchangeIMC 0123456789", &adm) ||
            mapi_service_create(adm, "MSEMS", NULL, &svc) ||
            mapi_logon(m, "MSExchangeIMC 0123456789", MAPI_EXPLICIT_PROFILE, &s) ||
            write(p[1], "s", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    char c;
    assert_int_equal(read(p[0], &c, 1), 1);
    close(p[0]);
    assert_string_equal(table(fx->mapi), "MSExchangeIMC 0123456789+");
    reg_key *k;
    assert_int_equal(reg_key_open_path(fx->reg, PROFILES "\\MSExchangeIMC 0123456789", 0, &k), 0);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(k, &info), 0);
    assert_true(info.is_volatile && info.is_owner_bound);
    reg_key_close(k);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    assert_string_equal(table(fx->mapi), "");
    assert_false(key_exists(fx->reg, PROFILES "\\MSExchangeIMC 0123456789"));
    /* In-process: mapi_fini ends it. */
    mapi_ctx *m2;
    assert_int_equal(mapi_init(fx->reg, CATALOGUE, &m2), S_OK);
    assert_int_equal(mapi_profile_create(m2, "Temp", MAPI_PROFILE_BOUND | MAPI_DEFAULT_SERVICES),
                     S_OK);
    assert_string_equal(table(fx->mapi), "Temp");
    mapi_fini(m2);
    assert_string_equal(table(fx->mapi), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_copy_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_services, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_delete_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_profile, setup, teardown),
    };
    return cmocka_run_group_tests_name("mapi", tests, NULL, NULL);
}
