/* diag_test.c - unit tests of the Diagnostics Logging pieces of lib/ims: categories and
 * levels by name, alias and number; the event log's levels (atomic, set live); the protocol
 * log's live level; ims_diag_load, the re-reading of the live values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ims/ims.h"

#include "regfx.h"

#define DIAG_PATH "HKLM\\" IMS_DIAGNOSTICS_KEY
#define DIAG_SUB IMS_DIAGNOSTICS_KEY
#define PAR_SUB IMS_PARAMETERS_KEY

static void test_category_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        ims_category want;
    } cases[] = {
        {"SMTP Protocol Log", 0, IMS_CAT_SMTP_PROTOCOL_LOG},
        {"smtp protocol log", 0, IMS_CAT_SMTP_PROTOCOL_LOG},
        {"smtp-protocol-log", 0, IMS_CAT_SMTP_PROTOCOL_LOG},
        {"Protocol-Log", 0, IMS_CAT_SMTP_PROTOCOL_LOG},
        {"protolog", 0, IMS_CAT_SMTP_PROTOCOL_LOG},
        {"Initialization/Termination", 0, IMS_CAT_INIT_TERM},
        {"init", 0, IMS_CAT_INIT_TERM},
        {"initialization-termination", 0, IMS_CAT_INIT_TERM},
        {"Addressing", 0, IMS_CAT_ADDRESSING},
        {"transfer", 0, IMS_CAT_MESSAGE_TRANSFER},
        {"Message Transfer", 0, IMS_CAT_MESSAGE_TRANSFER},
        {"interface", 0, IMS_CAT_SMTP_INTERFACE},
        {"SMTP Interface Events", 0, IMS_CAT_SMTP_INTERFACE},
        {"internal", 0, IMS_CAT_INTERNAL},
        {"conversion", 0, IMS_CAT_CONTENT_CONVERSION},
        {"archival", 0, IMS_CAT_MESSAGE_ARCHIVAL},
        {"Message Archival", 0, IMS_CAT_MESSAGE_ARCHIVAL},
        {"", -1, 0},
        {"protocol", -1, 0},
        {"SMTP Protocol Log ", -1, 0},
        {"smtp_protocol_log", -1, 0},
        {"Unknown", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_category c = IMS_CAT_COUNT;
        int rc = ims_category_parse(cases[i].text, &c);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %d, want %d", cases[i].text, rc, cases[i].rc);
        if (!rc && c != cases[i].want)
            fail_msg("\"%s\": got category %d, want %d", cases[i].text, c, cases[i].want);
    }
    assert_int_equal(ims_category_parse(NULL, &(ims_category){0}), -1);
    /* Every category has aliases, and each value name parses back to its category. */
    for (int c = 0; c < IMS_CAT_COUNT; c++) {
        ims_category got;
        assert_int_equal(ims_category_parse(ims_category_name((ims_category)c), &got), 0);
        assert_int_equal(got, c);
        assert_true(strlen(ims_category_aliases((ims_category)c)) > 0);
    }
    assert_string_equal(ims_category_aliases(IMS_CAT_COUNT), "");
}

static void test_level_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        unsigned want;
    } cases[] = {
        {"none", 0, 0},    {"None", 0, 0}, {"MINIMUM", 0, 1}, {"min", 0, 1}, {"medium", 0, 3},
        {"maximum", 0, 5}, {"Max", 0, 5},  {"0", 0, 0},       {"1", 0, 1},   {"2", 0, 2},
        {"3", 0, 3},       {"4", 0, 4},    {"5", 0, 5},       {"6", -1, 0},  {"05", -1, 0},
        {"+5", -1, 0},     {"-1", -1, 0},  {"", -1, 0},       {"5 ", -1, 0}, {"maximal", -1, 0},
        {"0x5", -1, 0},    {"med", -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned v = 99;
        int rc = ims_level_parse(cases[i].text, &v);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %d, want %d", cases[i].text, rc, cases[i].rc);
        if (!rc && v != cases[i].want)
            fail_msg("\"%s\": got level %u, want %u", cases[i].text, v, cases[i].want);
    }
    assert_int_equal(ims_level_parse(NULL, &(unsigned){0}), -1);
    assert_string_equal(ims_level_name(0), "None");
    assert_string_equal(ims_level_name(1), "Minimum");
    assert_string_equal(ims_level_name(2), "Minimum (2)");
    assert_string_equal(ims_level_name(3), "Medium");
    assert_string_equal(ims_level_name(4), "Medium (4)");
    assert_string_equal(ims_level_name(5), "Maximum");
    assert_string_equal(ims_level_name(6), "Invalid");
}

/* A thread that logs while the levels change under it: each event passes or not, whole. */
struct logger {
    ims_log *log;
    unsigned rounds;
};

static void *log_rounds(void *arg)
{
    struct logger *l = arg;
    for (unsigned i = 0; i < l->rounds; i++) {
        unsigned v = ims_log_level(l->log, IMS_CAT_ADDRESSING);
        if (v != IMS_LEVEL_NONE && v != IMS_LEVEL_MAXIMUM)
            return (void *)1; /* torn or foreign: cannot be */
    }
    return NULL;
}

static void count_sink(void *arg, const ims_event *ev)
{
    (void)ev;
    (*(unsigned *)arg)++;
}

static void test_log_levels(void **state)
{
    (void)state;
    unsigned n = 0;
    ims_log log = {count_sink, &n};
    assert_int_equal(ims_log_level(&log, IMS_CAT_ADDRESSING), IMS_LEVEL_NONE);
    assert_int_equal(ims_log_level(NULL, IMS_CAT_ADDRESSING), IMS_LEVEL_NONE);
    assert_int_equal(ims_log_level(&log, IMS_CAT_COUNT), IMS_LEVEL_NONE);
    ims_log_event(&log, 1, IMS_CAT_ADDRESSING, IMS_SEV_INFO, IMS_LEVEL_MINIMUM, "x");
    assert_int_equal(n, 0);
    ims_log_set_level(&log, IMS_CAT_ADDRESSING, IMS_LEVEL_MINIMUM);
    ims_log_set_level(&log, IMS_CAT_COUNT, IMS_LEVEL_MAXIMUM); /* ignored */
    assert_int_equal(ims_log_level(&log, IMS_CAT_ADDRESSING), IMS_LEVEL_MINIMUM);
    ims_log_event(&log, 1, IMS_CAT_ADDRESSING, IMS_SEV_INFO, IMS_LEVEL_MINIMUM, "x");
    ims_log_event(&log, 1, IMS_CAT_ADDRESSING, IMS_SEV_INFO, IMS_LEVEL_MEDIUM, "x");
    assert_int_equal(n, 1);
    uint8_t all[IMS_CAT_COUNT];
    for (int c = 0; c < IMS_CAT_COUNT; c++)
        all[c] = (uint8_t)c % (IMS_LEVEL_HIGHEST + 1);
    ims_log_set_levels(&log, all);
    for (int c = 0; c < IMS_CAT_COUNT; c++)
        assert_int_equal(ims_log_level(&log, (ims_category)c), all[c]);

    /* Another thread reads while this one changes the level back and forth. */
    ims_log_set_level(&log, IMS_CAT_ADDRESSING, IMS_LEVEL_NONE);
    struct logger l = {&log, 200000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, log_rounds, &l), 0);
    for (unsigned i = 0; i < 200000; i++)
        ims_log_set_level(&log, IMS_CAT_ADDRESSING, i % 2 ? IMS_LEVEL_MAXIMUM : IMS_LEVEL_NONE);
    void *res;
    assert_int_equal(pthread_join(t, &res), 0);
    assert_null(res);
}

/* file_text - the whole of a small file ("" when missing). */
static void file_text(const char *path, char *out, size_t n)
{
    out[0] = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return;
    ssize_t r = read(fd, out, n - 1);
    out[r > 0 ? r : 0] = 0;
    close(fd);
}

static void test_protolog_live(void **state)
{
    struct fx *fx = *state;
    char dir[128], path[160], text[4096];
    snprintf(dir, sizeof dir, "%s/Log", fx->dir);
    snprintf(path, sizeof path, "%s/L0000001.LOG", dir);
    assert_int_equal(mkdir(dir, 0750), 0);
    ims_protolog *pl;
    /* Made at None: connections go unlogged until the level rises. */
    assert_int_equal(ims_protolog_create(dir, IMS_LEVEL_NONE, &pl), 0);
    assert_non_null(pl);
    assert_int_equal(ims_protolog_level(pl), IMS_LEVEL_NONE);
    ims_protolog_conn *off;
    assert_int_equal(ims_protolog_begin(pl, 1, "p", "l", &off), 0);
    assert_null(off);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);

    /* Maximum for the next connection; it keeps it when the level goes down meanwhile. */
    ims_protolog_set_level(pl, IMS_LEVEL_MAXIMUM);
    assert_int_equal(ims_protolog_level(pl), IMS_LEVEL_MAXIMUM);
    ims_protolog_conn *a, *b;
    assert_int_equal(ims_protolog_begin(pl, 2, "p", "l", &a), 0);
    assert_non_null(a);
    ims_protolog_set_level(pl, IMS_LEVEL_MINIMUM);
    assert_int_equal(ims_protolog_begin(pl, 3, "p", "l", &b), 0);
    ims_protolog_command(a, "EHLO a", 6);
    ims_protolog_content(a, "body\r\n", 6);
    ims_protolog_command(b, "EHLO b", 6);
    ims_protolog_end(a, "a done");
    ims_protolog_end(b, "b done");
    file_text(path, text, sizeof text);
    assert_non_null(strstr(text, "\t2\t<\tEHLO a\n"));
    assert_non_null(strstr(text, "\t2\tD\tbody\n"));
    assert_non_null(strstr(text, "\t2\t-\ta done\n"));
    char p2[160];
    snprintf(p2, sizeof p2, "%s/L0000002.LOG", dir);
    file_text(p2, text, sizeof text);
    assert_null(strstr(text, "EHLO b"));
    assert_non_null(strstr(text, "\t3\t-\tb done\n"));

    /* Back to None: nothing new is written. */
    ims_protolog_set_level(pl, IMS_LEVEL_NONE);
    assert_int_equal(ims_protolog_begin(pl, 4, "p", "l", &off), 0);
    assert_null(off);
    file_text(path, text, sizeof text);
    assert_null(strstr(text, "\t4\t"));
    ims_protolog_close(pl);
    ims_protolog_set_level(NULL, IMS_LEVEL_MAXIMUM);
    assert_int_equal(ims_protolog_level(NULL), IMS_LEVEL_NONE);
}

/* Event texts, for the "value in use" wording. */
static char last_text[1024];
static unsigned text_events;

static void text_sink(void *arg, const ims_event *ev)
{
    fx_sink(arg, ev);
    snprintf(last_text, sizeof last_text, "%s", ev->text);
    text_events++;
}

/* set_dword - a REG_DWORD under HKLM\\sub, the key made when missing. */
static void set_dword(reg_ctx *reg, const char *sub, const char *name, uint32_t v)
{
    reg_key *lm, *k;
    assert_int_equal(reg_key_open_root(reg, REG_ROOT_HKLM, &lm), 0);
    assert_int_equal(reg_key_create(lm, sub, 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_dword(k, name, v), 0);
    reg_key_close(k);
    reg_key_close(lm);
}

static void test_diag_load(void **state)
{
    struct fx *fx = *state;
    fx->log.fn = text_sink;
    text_events = 0;
    ims_settings s;
    /* Nothing installed: every default, and a load changes nothing. */
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    ims_diag d;
    ims_diag_from_settings(&s, &d);
    assert_int_equal(d.console_stat_frequency, 14);
    assert_int_equal(d.display_errs_on_console, 0);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_SMTP_PROTOCOL_LOG], IMS_LEVEL_NONE);
    assert_int_equal(d.console_stat_frequency, 14);
    assert_int_equal(text_events, 0);

    assert_int_equal(ims_install(fx->reg, NULL, NULL, NULL, 0, NULL), 0);
    set_dword(fx->reg, DIAG_SUB, "SMTP Protocol Log", 5);
    set_dword(fx->reg, DIAG_SUB, "Addressing", 3);
    set_dword(fx->reg, PAR_SUB, "DisplayErrsOnConsole", 10);
    set_dword(fx->reg, PAR_SUB, "ConsoleStatFrequency", 2);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_SMTP_PROTOCOL_LOG], 5);
    assert_int_equal(d.levels[IMS_CAT_ADDRESSING], 3);
    assert_int_equal(d.levels[IMS_CAT_INIT_TERM], 0);
    assert_int_equal(d.display_errs_on_console, 10);
    assert_int_equal(d.console_stat_frequency, 2);
    assert_int_equal(text_events, 0);

    /* Out of range: the value in use stays, one event; the same bad value again is quiet; a
     * different bad value is told again; a good one clears it. */
    set_dword(fx->reg, DIAG_SUB, "SMTP Protocol Log", 9);
    set_dword(fx->reg, PAR_SUB, "ConsoleStatFrequency", 0);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_SMTP_PROTOCOL_LOG], 5);
    assert_int_equal(d.console_stat_frequency, 2);
    assert_string_equal(fx->events, "4086;4086;");
    assert_non_null(strstr(last_text, "ConsoleStatFrequency"));
    assert_non_null(strstr(last_text, "the value in use, 2, stays"));
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;");
    set_dword(fx->reg, DIAG_SUB, "SMTP Protocol Log", 7);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;4086;");
    assert_non_null(strstr(last_text, "SMTP Protocol Log"));
    assert_non_null(strstr(last_text, "the value in use, 5, stays"));
    /* Not a REG_DWORD: kept as well. */
    reg_key *k;
    assert_int_equal(reg_key_open_path(fx->reg, DIAG_PATH, 0, &k), 0);
    assert_int_equal(reg_value_set_sz(k, "SMTP Protocol Log", REG_SZ, "1"), 0);
    reg_key_close(k);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_SMTP_PROTOCOL_LOG], 5);
    assert_string_equal(fx->events, "4086;4086;4086;4086;");
    assert_non_null(strstr(last_text, "not a REG_DWORD"));
    /* Quiet (log NULL): the bad value is noted, nothing logged, and not logged later either. */
    set_dword(fx->reg, DIAG_SUB, "SMTP Protocol Log", 8);
    assert_int_equal(ims_diag_load(fx->reg, NULL, &d), IMS_OK);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;4086;4086;");
    set_dword(fx->reg, DIAG_SUB, "SMTP Protocol Log", 1);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_SMTP_PROTOCOL_LOG], 1);
    set_dword(fx->reg, DIAG_SUB, "SMTP Protocol Log", 9);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;4086;4086;4086;"); /* bad again after good */

    /* A value deleted goes back to its default; so does everything when the keys go. */
    assert_int_equal(reg_key_open_path(fx->reg, DIAG_PATH, 0, &k), 0);
    assert_int_equal(reg_value_delete(k, "Addressing"), 0);
    reg_key_close(k);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_ADDRESSING], IMS_LEVEL_NONE);
    assert_int_equal(ims_uninstall(fx->reg), 0);
    assert_int_equal(ims_diag_load(fx->reg, &fx->log, &d), IMS_OK);
    assert_int_equal(d.levels[IMS_CAT_SMTP_PROTOCOL_LOG], IMS_LEVEL_NONE);
    assert_int_equal(d.display_errs_on_console, 0);
    assert_int_equal(d.console_stat_frequency, 14);
    assert_string_equal(fx->events, "4086;4086;4086;4086;4086;");
}

/* The router's lock: fn runs under it and its result comes back. */
static int locked_fn(void *arg)
{
    (*(int *)arg)++;
    return 42;
}

static void test_router_locked(void **state)
{
    struct fx *fx = *state;
    directory *dir;
    assert_int_equal(dir_open(fx->reg, &dir), 0);
    ims_settings s;
    ims_settings_defaults(&s, fx->dir);
    ims_router *r;
    assert_int_equal(ims_router_new(&s, dir, &r), 0);
    int calls = 0;
    assert_int_equal(ims_router_locked(r, locked_fn, &calls), 42);
    assert_int_equal(calls, 1);
    ims_router_free(r);
    dir_close(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_category_parse),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test_setup_teardown(test_protolog_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diag_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_locked, setup, teardown),
    };
    return cmocka_run_group_tests_name("diag", tests, NULL, NULL);
}
