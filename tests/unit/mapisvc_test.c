/* mapisvc_test.c - unit tests of lib/mapi/mapisvc.c: the shipped data/mapisvc.inf, the INI
 * syntax with its diagnostics and limits, encodings, and where the catalogue is found. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mapi/mapi.h"

#define MAX_DIAGS 64

typedef struct diags {
    unsigned line[MAX_DIAGS];
    char msg[MAX_DIAGS][256];
    size_t n;
} diags;

static void collect(void *arg, unsigned line, const char *msg)
{
    diags *d = arg;
    if (d->n < MAX_DIAGS) {
        d->line[d->n] = line;
        snprintf(d->msg[d->n], sizeof d->msg[d->n], "%s", msg);
    }
    d->n++;
}

static void print_diags(const diags *d)
{
    for (size_t i = 0; i < d->n && i < MAX_DIAGS; i++)
        print_message("  diag %u: %s\n", d->line[i], d->msg[i]);
}

/* expect_diags - exactly these (line, substring) pairs, in this order. */
static void expect_diags(const diags *d, const unsigned *lines, const char *const *subs, size_t n)
{
    if (d->n != n)
        print_diags(d);
    assert_int_equal(d->n, n);
    for (size_t i = 0; i < n; i++)
        if (d->line[i] != lines[i] || !strstr(d->msg[i], subs[i])) {
            print_diags(d);
            fail_msg("diag %zu: got %u \"%s\" want %u \"...%s...\"", i, d->line[i], d->msg[i],
                     lines[i], subs[i]);
        }
}

static const mapi_prop *find(const mapisvc_section *s, uint32_t tag)
{
    for (size_t i = 0; i < s->nprops; i++)
        if (s->props[i].tag == tag)
            return &s->props[i];
    return NULL;
}

static const char *str_of(const mapisvc_section *s, uint32_t tag)
{
    const mapi_prop *p = find(s, tag);
    return p ? p->v.str : "(missing)";
}

static int32_t long_of(const mapisvc_section *s, uint32_t tag)
{
    const mapi_prop *p = find(s, tag);
    if (!p)
        fail_msg("[%s] lacks %08x", s->name, tag);
    return p->v.l;
}

static void test_shipped(void **state)
{
    (void)state;
    diags d = {0};
    mapisvc *svc;
    assert_int_equal(mapisvc_load("data/mapisvc.inf", collect, &d, &svc), S_OK);
    if (d.n)
        print_diags(&d);
    assert_int_equal(d.n, 0);

    const char *const *names;
    assert_int_equal(mapisvc_services(svc, &names), 3);
    assert_string_equal(names[0], "MSEMS");
    assert_string_equal(names[1], "MSPST MS");
    assert_string_equal(names[2], "MSPST AB");
    assert_string_equal(mapisvc_display(svc, "msems"), "Microsoft Exchange Server");
    assert_string_equal(mapisvc_display(svc, "MSPST MS"), "Personal Folders");
    assert_null(mapisvc_display(svc, "MSFS"));
    assert_int_equal(mapisvc_default_services(svc, &names), 1);
    assert_string_equal(names[0], "MSEMS");

    const mapisvc_section *ems = mapisvc_section_get(svc, "MSEMS");
    assert_non_null(ems);
    assert_string_equal(ems->name, "MSEMS");
    assert_string_equal(str_of(ems, PR_DISPLAY_NAME), "Microsoft Exchange Server");
    assert_string_equal(str_of(ems, PR_SERVICE_DLL_NAME), "EMSUI.DLL");
    assert_string_equal(str_of(ems, PR_SERVICE_ENTRY_NAME), "EMSCfg");
    assert_int_equal(long_of(ems, PR_RESOURCE_FLAGS), 0x2); /* SERVICE_SINGLE_COPY */
    const mapi_prop *files = find(ems, PR_SERVICE_SUPPORT_FILES);
    assert_non_null(files);
    assert_int_equal(files->v.mv.n, 3);
    assert_string_equal(files->v.mv.v[0].v.str, "EMSUI.DLL");
    assert_string_equal(files->v.mv.v[2].v.str, "EMSMDB.DLL");
    static const char *const providers[] = {"EMS_DSA", "EMS_MDB_public", "EMS_MDB_private",
                                            "EMS_RXP", "EMS_MSX"};
    assert_int_equal(ems->nproviders, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(ems->providers[i], providers[i]);
    assert_int_equal(ems->nsections, 0);

    const mapisvc_section *priv = mapisvc_section_get(svc, "ems_mdb_private");
    assert_non_null(priv);
    assert_string_equal(str_of(priv, PR_DISPLAY_NAME), "Private Folders");
    assert_string_equal(str_of(priv, PR_PROVIDER_DLL_NAME), "EMSMDB.DLL");
    assert_int_equal(long_of(priv, PR_RESOURCE_TYPE), MAPI_STORE_PROVIDER);
    assert_int_equal(long_of(priv, PR_RESOURCE_FLAGS), 0x1006);
    assert_int_equal(long_of(priv, 0x66090003), 12); /* PR_PROFILE_OPEN_FLAGS from 0C000000 */
    assert_int_equal(long_of(priv, PR_PROFILE_TYPE), 1);
    const mapi_prop *mdb = find(priv, 0x34140102);
    assert_non_null(mdb);
    assert_int_equal(mdb->v.bin.cb, 16);
    assert_memory_equal(mdb->v.bin.lpb,
                        "\x54\x94\xa1\xc0\x29\x7f\x10\x1b\xa5\x87\x08\x00\x2b\x2a\x25\x17", 16);

    const mapisvc_section *pub = mapisvc_section_get(svc, "EMS_MDB_public");
    assert_string_equal(str_of(pub, PR_DISPLAY_NAME), "Public Folders");
    assert_int_equal(long_of(pub, PR_RESOURCE_FLAGS), 0x40);
    assert_int_equal(long_of(pub, 0x66090003), 6);
    assert_int_equal(long_of(pub, PR_PROFILE_TYPE), 3);
    const mapisvc_section *dsa = mapisvc_section_get(svc, "EMS_DSA");
    assert_int_equal(long_of(dsa, PR_RESOURCE_TYPE), MAPI_AB_PROVIDER);
    assert_string_equal(str_of(dsa, PR_DISPLAY_NAME), "Microsoft Exchange Directory Service");
    assert_string_equal(str_of(dsa, PR_PROVIDER_DLL_NAME), "EMSABP.DLL");
    const mapisvc_section *msx = mapisvc_section_get(svc, "EMS_MSX");
    assert_int_equal(long_of(msx, PR_RESOURCE_TYPE), MAPI_TRANSPORT_PROVIDER);
    assert_string_equal(str_of(msx, PR_DISPLAY_NAME), "Microsoft Exchange Transport");

    const mapisvc_section *pst = mapisvc_section_get(svc, "MSPST MS");
    assert_int_equal(pst->nproviders, 1);
    assert_string_equal(pst->providers[0], "MSPST MSP");

    /* Every provider of every service has the entries MAPI requires of it, and every entry
     * can be stored in a profile. */
    size_t n = mapisvc_services(svc, &names);
    for (size_t i = 0; i < n; i++) {
        const mapisvc_section *s = mapisvc_section_get(svc, names[i]);
        assert_non_null(s);
        assert_non_null(find(s, PR_RESOURCE_FLAGS));
        for (size_t k = 0; k < s->nproviders; k++) {
            const mapisvc_section *p = mapisvc_section_get(svc, s->providers[k]);
            assert_non_null(p);
            static const uint32_t required[] = {PR_DISPLAY_NAME, PR_PROVIDER_DISPLAY,
                                                PR_PROVIDER_DLL_NAME, PR_RESOURCE_TYPE,
                                                PR_RESOURCE_FLAGS};
            for (size_t r = 0; r < 5; r++)
                if (!find(p, required[r]))
                    fail_msg("[%s] lacks %s", p->name, mapi_tag_name(required[r]));
            for (size_t r = 0; r < p->nprops; r++) {
                buf b = BUF_INIT;
                assert_int_equal(mapi_prop_encode(&p->props[r], &b), S_OK);
                buf_free(&b);
            }
        }
    }
    mapisvc_free(svc);
}

static const char inline_text[] =
    "; a comment\r\n"                                                     /* 1 */
    "[services]\r\n"                                                      /* 2 */
    "SVC = My Service\r\n"                                                /* 3 */
    "Missing=Has no section\n"                                            /* 4 */
    "   \n"                                                               /* 5 */
    "[ Default Services ]\n"                                              /* 6 */
    "SVC=My Service\n"                                                    /* 7 */
    "Nope=Not listed\n"                                                   /* 8 */
    "[SVC]\n"                                                             /* 9 */
    "  PR_DISPLAY_NAME = \"Quoted Name\"  \n"                             /* 10 */
    "providers = P1 , P2,,P3\n"                                           /* 11 */
    "Sections=X1\n"                                                       /* 12 */
    "pr_resource_flags=SERVICE_SINGLE_COPY|SERVICE_NO_PRIMARY_IDENTITY\n" /* 13 */
    "PR_NOT_A_PROPERTY=1\n"                                               /* 14 */
    "PR_RESOURCE_TYPE=NOT_A_TYPE\n"                                       /* 15 */
    "WIZARD_ENTRY_NAME=Wiz\n"                                             /* 16 */
    "PR_DISPLAY_NAME=second\n"                                            /* 17 */
    "no equals sign here\n"                                               /* 18 */
    "Providers=P9\n"                                                      /* 19 */
    "[P1]\n"                                                              /* 20 */
    "PR_RESOURCE_TYPE=MAPI_STORE_PROVIDER\n"                              /* 21 */
    "66090003=0C000000\n"                                                 /* 22 */
    "3001001E=Hex Tag Name\n"                                             /* 23 */
    "660A0003=3\n"                                                        /* 24 */
    "34140102=78b2fa70aff711cd9bc800aa002fc45a\n"                         /* 25 */
    "[X1]\n"                                                              /* 26 */
    "UID=13DBB0C8AA05101A9BB000AA002FC45A\n"                              /* 27 */
    "66000003=01000000\n"                                                 /* 28 */
    "[p1]\n"                                                              /* 29 */
    "PR_PROVIDER_DISPLAY=merged\n"                                        /* 30 */
    "[P2\n"                                                               /* 31 */
    "PR_DISPLAY_NAME=ignored\n"                                           /* 32 */
    "[]\n"                                                                /* 33 */
    "=value\n"                                                            /* 34 */
    "[Help File Mappings]\n"                                              /* 35 */
    "SVC=svc.hlp\n"                                                       /* 36 */
    "[P3]\n"                                                              /* 37 */
    "PR_DISPLAY_NAME=no newline at the end";                              /* 38 */

static void test_syntax(void **state)
{
    (void)state;
    diags d = {0};
    mapisvc *svc;
    assert_int_equal(mapisvc_parse(inline_text, strlen(inline_text), collect, &d, &svc), S_OK);
    static const unsigned lines[] = {11, 14, 15, 17, 18, 19, 29, 31, 33, 34, 4, 8, 11};
    static const char *const subs[] = {
        "empty name in Providers=",
        "unknown property PR_NOT_A_PROPERTY",
        "bad value for PR_RESOURCE_TYPE (MAPI_E_BAD_VALUE)",
        "property PR_DISPLAY_NAME repeated",
        "not a key=value",
        "Providers= repeated in [SVC] (first at line 11)",
        "section [p1] repeated (first at line 20)",
        "without ']'",
        "without a name",
        "without a key",
        "service Missing has no section",
        "default service Nope is not in [Services]",
        "provider P2 of [SVC] has no section",
    };
    expect_diags(&d, lines, subs, sizeof lines / sizeof *lines);

    const char *const *names;
    assert_int_equal(mapisvc_services(svc, &names), 2);
    assert_string_equal(names[0], "SVC");
    assert_string_equal(names[1], "Missing");
    assert_string_equal(mapisvc_display(svc, "svc"), "My Service");
    assert_int_equal(mapisvc_default_services(svc, &names), 2);
    assert_string_equal(names[1], "Nope");

    const mapisvc_section *s = mapisvc_section_get(svc, "Svc");
    assert_non_null(s);
    assert_int_equal(s->nprops, 2);
    assert_int_equal(s->props[0].tag, PR_DISPLAY_NAME);
    assert_string_equal(s->props[0].v.str, "Quoted Name");
    assert_int_equal(s->props[1].tag, PR_RESOURCE_FLAGS);
    assert_int_equal(s->props[1].v.l, 0x22);
    assert_int_equal(s->nproviders, 3);
    assert_string_equal(s->providers[0], "P1");
    assert_string_equal(s->providers[1], "P2");
    assert_string_equal(s->providers[2], "P3");
    assert_int_equal(s->nsections, 1);
    assert_string_equal(s->sections[0], "X1");

    /* Hex tags: a number of the type's size in hex digits is the value's bytes. */
    const mapisvc_section *p1 = mapisvc_section_get(svc, "P1");
    assert_int_equal(p1->nprops, 6);
    assert_int_equal(long_of(p1, PR_RESOURCE_TYPE), 33);
    assert_int_equal(long_of(p1, 0x66090003), 12);
    assert_string_equal(str_of(p1, PR_DISPLAY_NAME), "Hex Tag Name");
    assert_int_equal(long_of(p1, 0x660A0003), 3);
    assert_int_equal(find(p1, 0x34140102)->v.bin.cb, 16);
    assert_string_equal(str_of(p1, PR_PROVIDER_DISPLAY), "merged"); /* from [p1] */
    assert_int_equal(p1->props[5].tag, PR_PROVIDER_DISPLAY);        /* in file order */

    const mapisvc_section *x1 = mapisvc_section_get(svc, "X1");
    assert_int_equal(x1->nprops, 1);
    assert_int_equal(long_of(x1, PR_PROFILE_VERSION), 1);
    assert_string_equal(str_of(mapisvc_section_get(svc, "P3"), PR_DISPLAY_NAME),
                        "no newline at the end");
    assert_null(mapisvc_section_get(svc, "P2"));
    assert_null(mapisvc_section_get(svc, "Help File Mappings"));
    assert_null(mapisvc_section_get(svc, "Services"));
    mapisvc_free(svc);

    /* Without a diagnostic callback the result is the same. */
    assert_int_equal(mapisvc_parse(inline_text, strlen(inline_text), NULL, NULL, &svc), S_OK);
    assert_int_equal(mapisvc_section_get(svc, "SVC")->nprops, 2);
    mapisvc_free(svc);
}

/* Repeated lists merge; a repeated name keeps its first value, as Windows' reader does. */
static void test_repeats(void **state)
{
    (void)state;
    static const char text[] = "[Services]\nA=x\n[Services]\nA=y\nB=z\n[Default Services]\n"
                               "[default services]\nA=q\n[A]\n[B]\n";
    diags d = {0};
    mapisvc *svc;
    assert_int_equal(mapisvc_parse(text, strlen(text), collect, &d, &svc), S_OK);
    static const unsigned lines[] = {3, 4, 7};
    static const char *const subs[] = {"section [Services] repeated",
                                       "service A repeated in [Services] (first at line 2)",
                                       "section [default services] repeated"};
    expect_diags(&d, lines, subs, 3);
    const char *const *names;
    assert_int_equal(mapisvc_services(svc, &names), 2);
    assert_string_equal(mapisvc_display(svc, "A"), "x");
    assert_string_equal(mapisvc_display(svc, "B"), "z");
    assert_int_equal(mapisvc_default_services(svc, &names), 1);
    mapisvc_free(svc);
}

static void test_no_services(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "[Default Services]\nA=B\n[A]\nPR_DISPLAY_NAME=x\n",
                                        "; only a comment\n", "[Service]\n"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        diags d = {0};
        mapisvc *svc = (mapisvc *)1;
        assert_int_equal(mapisvc_parse(texts[i], strlen(texts[i]), collect, &d, &svc),
                         MAPI_E_CORRUPT_DATA);
        assert_null(svc);
        assert_true(d.n >= 1);
        assert_int_equal(d.line[d.n - 1], 0);
        assert_non_null(strstr(d.msg[d.n - 1], "no [Services]"));
    }
    /* An empty [Services] is a catalogue without services. */
    mapisvc *svc;
    assert_int_equal(mapisvc_parse("[Services]", 10, NULL, NULL, &svc), S_OK);
    assert_int_equal(mapisvc_services(svc, NULL), 0);
    mapisvc_free(svc);
}

static void test_limits(void **state)
{
    (void)state;
    buf t = BUF_INIT;
    /* A line too long, a NUL byte, then a section of 300 entries and 1030 sections. */
    assert_int_equal(buf_adds(&t, "[Services]\nA=B\nC="), 0); /* lines 1-3 */
    for (int i = 0; i < MAPISVC_MAX_LINE; i++)
        assert_int_equal(buf_addc(&t, 'x'), 0);
    assert_int_equal(buf_add(&t, "\nD=\0\n[A]\n", 9), 0); /* lines 4, 5 */
    for (int i = 0; i < 300; i++)                         /* lines 6.. 305 */
        assert_int_equal(buf_printf(&t, "67%02x0003=%d\n", i & 0xff, i), 0);
    for (int i = 0; i < 1030; i++) /* lines 306.. */
        assert_int_equal(buf_printf(&t, "[S%d]\n", i), 0);
    diags d = {0};
    mapisvc *svc;
    assert_int_equal(mapisvc_parse((const char *)t.data, t.len, collect, &d, &svc), S_OK);
    /* The entries 257.. of [A]: entry 257 is on line 262, and entries 257-300 include tags that
     * repeat (67000003 again) but are never looked at. */
    static const unsigned lines[] = {3, 4, 262, 306 + 1023};
    static const char *const subs[] = {"longer than 4096", "NUL byte",
                                       "more than 256 entries in [A]", "more than 1024 sections"};
    expect_diags(&d, lines, subs, 4);
    const mapisvc_section *a = mapisvc_section_get(svc, "A");
    assert_int_equal(a->nprops, 256);
    assert_int_equal(a->props[255].v.l, 255);
    assert_non_null(mapisvc_section_get(svc, "S1022"));
    assert_null(mapisvc_section_get(svc, "S1023"));
    const char *const *names;
    assert_int_equal(mapisvc_services(svc, &names), 1);
    mapisvc_free(svc);

    /* A file over MAPISVC_MAX_FILE is refused whole. */
    buf big = BUF_INIT;
    assert_int_equal(buf_adds(&big, "[Services]\n"), 0);
    while (big.len <= MAPISVC_MAX_FILE)
        assert_int_equal(
            buf_adds(&big, ";;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;\n"), 0);
    d.n = 0;
    svc = (mapisvc *)1;
    assert_int_equal(mapisvc_parse((const char *)big.data, big.len, collect, &d, &svc),
                     MAPI_E_CORRUPT_DATA);
    assert_null(svc);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.line[0], 0);
    char path[] = "/tmp/mapisvc_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, big.data, big.len), (ssize_t)big.len);
    close(fd);
    assert_int_equal(mapisvc_load(path, NULL, NULL, &svc), MAPI_E_CORRUPT_DATA);
    unlink(path);
    buf_free(&big);
    buf_free(&t);
}

static void test_encodings(void **state)
{
    (void)state;
    static const char cp1252[] =
        "[Services]\r\nX=Caf\xe9 \x80\r\n[X]\r\nPR_DISPLAY_NAME=Caf\xe9\r\n";
    static const char utf8[] = "\xef\xbb\xbf[Services]\nX=Caf\xc3\xa9 \xe2\x82\xac\n[X]\n"
                               "PR_DISPLAY_NAME=Caf\xc3\xa9\n";
    buf u16 = BUF_INIT;
    assert_int_equal(buf_add(&u16, "\xff\xfe", 2), 0);
    assert_int_equal(base_utf8_to_utf16(utf8 + 3, strlen(utf8 + 3), &u16), 0);
    struct {
        const char *text;
        size_t len;
    } cases[] = {
        {cp1252, sizeof cp1252 - 1}, {utf8, sizeof utf8 - 1}, {(const char *)u16.data, u16.len}};
    for (size_t i = 0; i < 3; i++) {
        diags d = {0};
        mapisvc *svc;
        assert_int_equal(mapisvc_parse(cases[i].text, cases[i].len, collect, &d, &svc), S_OK);
        if (d.n)
            print_diags(&d);
        assert_int_equal(d.n, 0);
        assert_string_equal(mapisvc_display(svc, "X"), "Caf\xc3\xa9 \xe2\x82\xac");
        assert_string_equal(str_of(mapisvc_section_get(svc, "X"), PR_DISPLAY_NAME), "Caf\xc3\xa9");
        mapisvc_free(svc);
    }
    buf_free(&u16);
}

static void test_load(void **state)
{
    (void)state;
    mapisvc *svc = (mapisvc *)1;
    assert_int_equal(mapisvc_load("/nonexistent/mapisvc.inf", NULL, NULL, &svc), MAPI_E_NOT_FOUND);
    assert_null(svc);
    assert_int_equal(mapisvc_load(NULL, NULL, NULL, &svc), MAPI_E_INVALID_PARAMETER);
}

static void test_default_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/mapisvc_root_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(setenv("IMS_MAPISVC", "/some/where/mapisvc.inf", 1), 0);
    assert_string_equal(mapisvc_default_path(dir), "/some/where/mapisvc.inf");
    /* Empty is unset. Without a copy in the state root, the build tree's copy is found. */
    assert_int_equal(setenv("IMS_MAPISVC", "", 1), 0);
    char want[PATH_MAX], got[PATH_MAX];
    assert_non_null(realpath("data/mapisvc.inf", want));
    assert_non_null(realpath(mapisvc_default_path(dir), got));
    assert_string_equal(got, want);
    assert_int_equal(unsetenv("IMS_MAPISVC"), 0);
    /* A copy in the state root comes first. */
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/mapisvc.inf", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("[Services]\n", f);
    fclose(f);
    assert_string_equal(mapisvc_default_path(dir), file);
    unlink(file);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped), cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_repeats), cmocka_unit_test(test_no_services),
        cmocka_unit_test(test_limits),  cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_load),    cmocka_unit_test(test_default_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
