/* ims_test.c - unit tests of lib/ims (settings, events, install, the start and stop sequence)
 * and lib/store (mailboxes and folders), on a private registry and state root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ims/ims.h"
#include "store/store.h"

#define CATALOGUE "data/mapisvc.inf"
#define PROFILES "HKCU\\" MAPI_PROFILES_PATH

struct fx {
    char dir[64];
    reg_ctx *reg;
    ims_log log;
    char events[8192]; /* "id;" for each event */
};

static void sink(void *arg, const ims_event *ev)
{
    struct fx *fx = arg;
    size_t n = strlen(fx->events);
    snprintf(fx->events + n, sizeof fx->events - n, "%u;", ev->id);
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    strcpy(fx->dir, "/tmp/ims_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_int_equal(reg_ctx_open(fx->dir, &fx->reg), 0);
    fx->log.fn = sink;
    fx->log.arg = fx;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    reg_ctx_close(fx->reg);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static void test_listen_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        const char *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:2525", 0, "127.0.0.1", 2525},
        {"0.0.0.0:25", 0, "0.0.0.0", 25},
        {"[::1]:25", 0, "::1", 25},
        {"[::]:587", 0, "::", 587},
        {"127.0.0.1", -1, NULL, 0},
        {"127.0.0.1:0", -1, NULL, 0},
        {"127.0.0.1:65536", -1, NULL, 0},
        {"localhost:25", -1, NULL, 0},
        {"::1:25", -1, NULL, 0},
        {"127.0.0.1:25x", -1, NULL, 0},
        {"[::1]25", -1, NULL, 0},
        {"", -1, NULL, 0},
        {"1.2.3.4:-1", -1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_listen l;
        int rc = ims_listen_parse(cases[i].in, &l);
        if (rc != cases[i].rc)
            fail_msg("parse \"%s\": got %d, want %d", cases[i].in, rc, cases[i].rc);
        if (!rc) {
            assert_string_equal(l.host, cases[i].host);
            assert_int_equal(l.port, cases[i].port);
        }
    }
}

static void test_settings(void **state)
{
    struct fx *fx = *state;
    ims_settings s;
    /* Nothing installed: every default, no event. */
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "");
    char want[256];
    snprintf(want, sizeof want, "%s/imcdata", fx->dir);
    assert_string_equal(s.root_dir, want);
    assert_int_equal(s.nlisten, 1);
    assert_string_equal(s.listen[0].host, "127.0.0.1");
    assert_int_equal(s.listen[0].port, 2525);
    assert_int_equal(s.console_stat_frequency, 14);
    /* Installed: the service key as Windows keeps it. */
    const char *listen[] = {"127.0.0.1:2600", "[::1]:2601"};
    assert_int_equal(ims_install(fx->reg, "/usr/bin/imsd", "mail", listen, 2, NULL), 0);
    reg_key *k;
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_SERVICE_KEY, 0, &k), 0);
    buf b = BUF_INIT;
    assert_int_equal(reg_value_get_sz(k, "DisplayName", &b), 0);
    assert_string_equal(buf_cstr(&b), IMS_DISPLAY_NAME);
    assert_int_equal(reg_value_get_sz(k, "ObjectName", &b), 0);
    assert_string_equal(buf_cstr(&b), "mail");
    uint32_t v, type;
    assert_int_equal(reg_value_get_dword(k, "Start", &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(reg_value_get(k, "DependOnService", &type, NULL), 0);
    assert_int_equal(type, REG_MULTI_SZ);
    reg_key_close(k);
    assert_int_equal(
        ims_install(fx->reg, "/usr/bin/imsd", "mail", (const char *[]){"bad"}, 1, NULL),
        ERROR_INVALID_PARAMETER);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "");
    assert_string_equal(s.account, "mail");
    assert_int_equal(s.nlisten, 2);
    assert_string_equal(s.listen[1].host, "::1");
    /* Malformed values: an event each, and the default. */
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &k), 0);
    assert_int_equal(reg_value_set_sz(k, "ConsoleStatFrequency", REG_SZ, "abc"), 0);
    assert_int_equal(reg_value_set_dword(k, "AdvertiseSMTPExtensions", 7), 0);
    assert_int_equal(reg_value_set_sz(k, "CommonName", REG_SZ, ""), 0);
    assert_int_equal(reg_value_set_dword(k, "SomethingUnknown", 7), 0);
    const char *mixed[] = {"nonsense", "127.0.0.1:2700"};
    assert_int_equal(reg_value_set_multi_sz(k, "ListenAddresses", mixed, 2), 0);
    reg_key_close(k);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;4086;4086;");
    assert_int_equal(s.console_stat_frequency, 14);
    assert_int_equal(s.advertise_smtp_extensions, 1);
    assert_int_equal(s.nlisten, 1);
    assert_int_equal(s.listen[0].port, 2700);
    /* Diagnostics levels. */
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_DIAGNOSTICS_KEY, 0, &k), 0);
    assert_int_equal(reg_value_set_dword(k, "Initialization/Termination", 5), 0);
    reg_key_close(k);
    fx->events[0] = 0;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_int_equal(s.levels[IMS_CAT_INIT_TERM], 5);
    assert_int_equal(fx->log.levels[IMS_CAT_INIT_TERM], 5);
    buf_free(&b);
    assert_int_equal(ims_uninstall(fx->reg), 0);
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_SERVICE_KEY, 0, &k),
                     ERROR_FILE_NOT_FOUND);
}

static void test_event_levels(void **state)
{
    struct fx *fx = *state;
    ims_log_event(&fx->log, 1, IMS_CAT_ADDRESSING, IMS_SEV_INFO, IMS_LEVEL_MINIMUM, "x");
    ims_log_event(&fx->log, 2, IMS_CAT_ADDRESSING, IMS_SEV_ERROR, IMS_LEVEL_MAXIMUM, "x");
    ims_log_event(&fx->log, 3, IMS_CAT_ADDRESSING, IMS_SEV_INFO, IMS_LEVEL_NONE, "x");
    fx->log.levels[IMS_CAT_ADDRESSING] = IMS_LEVEL_MEDIUM;
    ims_log_event(&fx->log, 4, IMS_CAT_ADDRESSING, IMS_SEV_INFO, IMS_LEVEL_MEDIUM, "x");
    ims_log_event(&fx->log, 5, IMS_CAT_ADDRESSING, IMS_SEV_WARNING, IMS_LEVEL_MAXIMUM, "x");
    assert_string_equal(fx->events, "2;3;4;");
    assert_string_equal(ims_category_name(IMS_CAT_SMTP_PROTOCOL_LOG), "SMTP Protocol Log");
}

static int count_ims_profiles(reg_ctx *reg, char *name)
{
    reg_key *k;
    if (reg_key_open_path(reg, PROFILES, 0, &k))
        return 0;
    buf b = BUF_INIT;
    int n = 0;
    for (uint32_t i = 0; reg_key_enum_subkey(k, i, &b) == 0; i++) {
        if (!strncmp((char *)b.data, IMS_PROFILE_PREFIX, strlen(IMS_PROFILE_PREFIX))) {
            n++;
            if (name)
                strcpy(name, (char *)b.data);
        }
    }
    buf_free(&b);
    reg_key_close(k);
    return n;
}

static void test_service_start_stop(void **state)
{
    struct fx *fx = *state;
    ims_settings s;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_int_equal(count_ims_profiles(fx->reg, NULL), 0);
    ims_service *svc;
    assert_int_equal(ims_service_start(&s, fx->reg, CATALOGUE, &fx->log, &svc), IMS_OK);
    char name[128];
    assert_int_equal(count_ims_profiles(fx->reg, name), 1);
    assert_string_equal(name, ims_service_profile(svc));
    assert_int_equal(strlen(name), strlen(IMS_PROFILE_PREFIX) + IMS_PROFILE_SUFFIX_LEN);
    for (size_t i = strlen(IMS_PROFILE_PREFIX); name[i]; i++)
        assert_non_null(strchr("0123456789ABCDEF", name[i]));
    /* The working folders and the gateway mailbox's folders. */
    static const char *dirs[] = {"imcdata/In/Archive",
                                 "imcdata/Out/Archive",
                                 "imcdata/Work",
                                 "imcdata/Log",
                                 "imcdata/Pickup/Archive",
                                 "store/MSExchangeIMC/new",
                                 "store/MSExchangeIMC/.MTS-IN/cur",
                                 "store/MSExchangeIMC/.MTS-OUT/tmp",
                                 "store/MSExchangeIMC/.Bad/new"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char p[256];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", fx->dir, dirs[i]);
        if (stat(p, &st) || !S_ISDIR(st.st_mode))
            fail_msg("missing folder %s", dirs[i]);
    }
    /* The profile holds the Exchange service set up for the gateway. */
    char path[512];
    snprintf(path, sizeof path, "%s\\%s\\13dbb0c8aa05101a9bb000aa002fc45a", PROFILES, name);
    reg_key *g;
    assert_int_equal(reg_key_open_path(fx->reg, path, 0, &g), 0);
    assert_int_equal(reg_value_get(g, "001e6602", NULL, NULL), 0);
    reg_key_close(g);
    ims_service_stop(svc);
    assert_int_equal(count_ims_profiles(fx->reg, NULL), 0);
    assert_non_null(strstr(fx->events, "1001;"));
    /* A second start gets a new name. */
    assert_int_equal(ims_service_start(&s, fx->reg, CATALOGUE, &fx->log, &svc), IMS_OK);
    char second[128];
    assert_int_equal(count_ims_profiles(fx->reg, second), 1);
    assert_string_not_equal(second, name);
    ims_service_stop(svc);
}

static void test_service_failed_start(void **state)
{
    struct fx *fx = *state;
    ims_settings s;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    ims_service *svc;
    /* A catalogue that does not exist: MAPI cannot be initialized (4018), nothing is left. */
    assert_int_equal(ims_service_start(&s, fx->reg, "/nonexistent/mapisvc.inf", &fx->log, &svc),
                     IMS_EV_MAPI_INIT_FAILED);
    assert_null(svc);
    assert_string_equal(fx->events, "4018;");
    assert_int_equal(count_ims_profiles(fx->reg, NULL), 0);
    /* A working folder that cannot be made (a file in its place): 4131. */
    char p[256];
    snprintf(p, sizeof p, "%s/blocked", fx->dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(s.root_dir, sizeof s.root_dir, "%s/blocked/imcdata", fx->dir);
    fx->events[0] = 0;
    assert_int_equal(ims_service_start(&s, fx->reg, CATALOGUE, &fx->log, &svc), IMS_EV_INTERNAL);
    assert_string_equal(fx->events, "4131;");
    assert_int_equal(count_ims_profiles(fx->reg, NULL), 0);
    /* The store cannot be opened: 4131 after the profile was made; it is gone again. */
    snprintf(s.root_dir, sizeof s.root_dir, "%s/imcdata", fx->dir);
    snprintf(p, sizeof p, "%s/store", fx->dir);
    f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);
    fx->events[0] = 0;
    assert_int_equal(ims_service_start(&s, fx->reg, CATALOGUE, &fx->log, &svc), IMS_EV_INTERNAL);
    assert_int_equal(count_ims_profiles(fx->reg, NULL), 0);
}

static void test_store(void **state)
{
    struct fx *fx = *state;
    char dir[256];
    snprintf(dir, sizeof dir, "%s/st", fx->dir);
    store *st;
    assert_int_equal(store_open(dir, false, &st), ENOENT);
    assert_int_equal(store_open(dir, true, &st), 0);
    char *path;
    assert_int_equal(store_mailbox_ensure(st, "alice", &path), 0);
    assert_non_null(strstr(path, "/st/alice"));
    free(path);
    static const char *bad[] = {"", ".hidden", "a/b", NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_int_equal(store_mailbox_ensure(st, bad[i], NULL), EINVAL);
        assert_int_equal(store_folder_ensure(st, "alice", bad[i]), EINVAL);
    }
    assert_int_equal(store_folder_ensure(st, "alice", "MTS-IN"), 0);
    assert_int_equal(store_folder_ensure(st, "alice", "MTS-IN"), 0); /* again: no error */
    char marker[300];
    snprintf(marker, sizeof marker, "%s/alice/.MTS-IN/maildirfolder", dir);
    assert_int_equal(access(marker, F_OK), 0);
    store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_start_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_failed_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store, setup, teardown),
    };
    return cmocka_run_group_tests_name("ims", tests, NULL, NULL);
}
