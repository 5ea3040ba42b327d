/* directory_test.c - unit tests of the directory of recipients (lib/store directory.c,
 * address.c, password.c): the rules, every change and its errors, the registry layout, lookups
 * and the index following changes made by other processes; passwords: hashing, verifying,
 * where the hashes are kept, logins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

#define POLL_ROUNDS 100 /* bounded waits: rounds of POLL_MS for a change to show */
#define POLL_MS 50
#define ALIAS65 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

struct fx {
    char dir[64];
    reg_ctx *reg;
    directory *d;
};

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    strcpy(fx->dir, "/tmp/directory_test.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_int_equal(reg_ctx_open(fx->dir, &fx->reg), 0);
    assert_int_equal(dir_open(fx->reg, &fx->d), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    dir_close(fx->d);
    reg_ctx_close(fx->reg);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* check - rc and the reason of a call, with a label in the failure message. */
static void check(const char *what, int got, int want, const dir_err *e, dir_reason reason)
{
    if (got != want)
        fail_msg("%s: got %d (%s) want %d (%s)", what, got, strerror(got), want, strerror(want));
    if (e && e->reason != reason)
        fail_msg("%s: got reason %d want %d", what, (int)e->reason, (int)reason);
}

/* export_dir - HKLM\Software\IMS as regedit would export it ("" when missing): a failed
 * change must leave it byte for byte as it was. */
static char *export_dir(struct fx *fx)
{
    reg_key *k;
    buf b = BUF_INIT;
    if (reg_key_open_path(fx->reg, "HKLM\\Software\\IMS", REG_READ, &k) == 0) {
        assert_int_equal(
            reg_export(k, "HKEY_LOCAL_MACHINE\\Software\\IMS", REG_EXPORT_REGEDIT4, &b), 0);
        reg_key_close(k);
    }
    char *s = buf_detach(&b, NULL);
    assert_non_null(s);
    return s;
}

static void add_domains(struct fx *fx, const char *const *doms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dir_err e;
        check(doms[i], dir_domain_add(fx->d, doms[i], &e), 0, &e, DIR_OK);
    }
}

static void add_mailbox(struct fx *fx, const char *alias, const char *name,
                        const char *const *addrs, size_t n)
{
    dir_err e;
    check(alias, dir_mailbox_add(fx->d, alias, name, addrs, n, NULL, &e), 0, &e, DIR_OK);
}

/* show - "alias|name|primary|sec1,sec2|maildir-relative-to-root" of a mailbox. */
static char *show(struct fx *fx, const char *alias)
{
    dir_mailbox m;
    dir_err e;
    check(alias, dir_mailbox_show(fx->d, alias, &m, &e), 0, &e, DIR_OK);
    buf b = BUF_INIT;
    size_t root = strlen(fx->dir);
    assert_true(strncmp(m.maildir, fx->dir, root) == 0);
    buf_printf(&b, "%s|%s|%s|", m.alias, m.display_name, m.primary ? m.primary : "(none)");
    for (size_t i = 0; i < m.nsecondary; i++)
        buf_printf(&b, "%s%s", i ? "," : "", m.secondary[i]);
    buf_printf(&b, "|%s", m.maildir + root);
    dir_mailbox_free(&m);
    return buf_detach(&b, NULL);
}

static void assert_show(struct fx *fx, const char *alias, const char *want)
{
    char *got = show(fx, alias);
    if (strcmp(got, want))
        fail_msg("show %s: got \"%s\" want \"%s\"", alias, got, want);
    free(got);
}

/* lookup - the alias of address, or "-" for ENOENT. */
static void assert_lookup(struct fx *fx, const char *address, const char *want)
{
    char *alias;
    int rc = dir_lookup(fx->d, address, &alias);
    const char *got = rc == ENOENT ? "-" : rc ? strerror(rc) : alias;
    if (strcmp(got, want))
        fail_msg("lookup %s: got \"%s\" want \"%s\"", address, got, want);
    if (!rc)
        free(alias);
}

static void assert_names(const char *what, char **names, size_t n, const char *want)
{
    buf b = BUF_INIT;
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, "%s%s", i ? "," : "", names[i]);
    const char *got = b.len ? buf_cstr(&b) : "";
    if (strcmp(got, want))
        fail_msg("%s: got \"%s\" want \"%s\"", what, got, want);
    buf_free(&b);
    dir_names_free(names, n);
}

static void assert_domains(struct fx *fx, const char *want)
{
    char **names;
    size_t n;
    assert_int_equal(dir_domain_list(fx->d, &names, &n), 0);
    assert_names("domains", names, n, want);
}

static void assert_mailboxes(struct fx *fx, const char *want)
{
    char **names;
    size_t n;
    assert_int_equal(dir_mailbox_list(fx->d, &names, &n), 0);
    assert_names("mailboxes", names, n, want);
}

/* --- the rules ------------------------------------------------------------------------ */

static void test_rules(void **state)
{
    (void)state;
    char a64[65], a65[66], l64[80], l65[80], lab63[70], lab64[70], dom253[400], dom254[400];
    memset(a64, 'a', 64), a64[64] = 0;
    memset(a65, 'a', 65), a65[65] = 0;
    memset(l64, 'x', 64), strcpy(l64 + 64, "@e.org");
    memset(l65, 'x', 65), strcpy(l65 + 65, "@e.org");
    memset(lab63, 'b', 63), lab63[63] = 0;
    memset(lab64, 'b', 64), lab64[64] = 0;
    /* 3 labels of 63, one of 61 and 3 dots: 253 bytes; and one more. */
    snprintf(dom253, sizeof dom253, "%.63s.%.63s.%.63s.%.61s", lab63, lab63, lab63, lab63);
    snprintf(dom254, sizeof dom254, "%.63s.%.63s.%.63s.%.62s", lab63, lab63, lab63, lab63);
    assert_int_equal(strlen(dom253), 253);
    assert_int_equal(strlen(dom254), 254);
    static char addr254[300], addr255[300];
    snprintf(addr254, sizeof addr254, "%.64s@%.63s.%.63s.%.61s", l64, lab63, lab63, lab63);
    snprintf(addr255, sizeof addr255, "%.64s@%.63s.%.63s.%.62s", l64, lab63, lab63, lab63);
    assert_int_equal(strlen(addr254), 254);
    assert_int_equal(strlen(addr255), 255);

    static const struct {
        const char *s;
        bool want;
    } aliases[] = {
        {"bob", true},
        {"Bob.Smith", true},
        {"a_b-c.9", true},
        {"x", true},
        {"", false},
        {".bob", false},
        {"bo/b", false},
        {"bo b", false},
        {"b@b", false},
        {"bö", false},
        {"bob\n", false},
        {"-bob", true},
        {"MSExchangeIMC", true}, /* valid, but reserved: refused by add */
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (dir_alias_valid(aliases[i].s) != aliases[i].want)
            fail_msg("alias \"%s\": got %d want %d", aliases[i].s, !aliases[i].want,
                     aliases[i].want);
    assert_true(dir_alias_valid(a64));
    assert_false(dir_alias_valid(a65));
    assert_false(dir_alias_valid(NULL));

    static const struct {
        const char *s;
        bool want;
    } domains[] = {
        {"example.com", true},
        {"EXAMPLE.com", true},
        {"a-b.c", true},
        {"localhost", true},
        {"1.2.3.4", true},
        {"x--y.org", true},
        {"", false},
        {".example.com", false},
        {"example.com.", false},
        {"a..b", false},
        {"-a.b", false},
        {"a-.b", false},
        {"a.-b", false},
        {"a_b.c", false},
        {"[1.2.3.4]", false},
        {"ex ample.com", false},
        {"exämple.com", false},
    };
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++)
        if (dir_domain_valid(domains[i].s) != domains[i].want)
            fail_msg("domain \"%s\": got %d want %d", domains[i].s, !domains[i].want,
                     domains[i].want);
    assert_true(dir_domain_valid(lab63));
    assert_false(dir_domain_valid(lab64));
    assert_true(dir_domain_valid(dom253));
    assert_false(dir_domain_valid(dom254));

    static const struct {
        const char *s;
        bool want;
    } addresses[] = {
        {"bob@example.com", true},
        {"Bob.Smith@Example.COM", true},
        {"b+tag@e.org", true},
        {"!#$%&'*+-/=?^_`{|}~@e.org", true},
        {"a@localhost", true},
        {"", false},
        {"bob", false},
        {"@e.org", false},
        {"bob@", false},
        {".bob@e.org", false},
        {"bob.@e.org", false},
        {"b..b@e.org", false},
        {"b b@e.org", false},
        {"\"b b\"@e.org", false},
        {"b@b@e.org", false},
        {"b(c)@e.org", false},
        {"bob@[1.2.3.4]", false},
        {"bob@e.org.", false},
        {"bob@-e.org", false},
        {"bö@e.org", false},
        {"bob@e.org\n", false},
    };
    for (size_t i = 0; i < sizeof addresses / sizeof addresses[0]; i++)
        if (dir_address_valid(addresses[i].s) != addresses[i].want)
            fail_msg("address \"%s\": got %d want %d", addresses[i].s, !addresses[i].want,
                     addresses[i].want);
    assert_true(dir_address_valid(l64));
    assert_false(dir_address_valid(l65));
    assert_true(dir_address_valid(addr254));
    assert_false(dir_address_valid(addr255));

    static const struct {
        const char *s;
        bool want;
    } names[] = {
        {"Bob Smith", true}, {"Zoë Ångström", true},  {"日本語", true}, {"x", true},
        {"", false},         {"a\nb", false},         {"a\tb", false},  {"a\x7f", false},
        {"\xc2\x85", false},                          /* NEL, a C1 control */
        {"\xff", false},     {"\xed\xa0\x80", false}, /* a lone surrogate */
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (dir_name_valid(names[i].s) != names[i].want)
            fail_msg("name \"%s\": got %d want %d", names[i].s, !names[i].want, names[i].want);
    char name[4 * DIR_MAX_NAME + 8];
    for (int i = 0; i < DIR_MAX_NAME; i++)
        memcpy(name + 2 * i, "é", 2);
    name[2 * DIR_MAX_NAME] = 0;
    assert_true(dir_name_valid(name)); /* characters count, not bytes */
    strcat(name, "x");
    assert_false(dir_name_valid(name));
}

/* --- domains -------------------------------------------------------------------------- */

static void test_domains(void **state)
{
    struct fx *fx = *state;
    dir_err e;
    assert_domains(fx, "");
    assert_false(dir_is_local_domain(fx->d, "example.com"));
    static const char *const doms[] = {"Example.COM", "b.example", "a.example"};
    add_domains(fx, doms, 3);
    assert_domains(fx, "a.example,b.example,example.com");
    assert_true(dir_is_local_domain(fx->d, "example.com"));
    assert_true(dir_is_local_domain(fx->d, "EXAMPLE.com"));
    assert_false(dir_is_local_domain(fx->d, "other.org"));
    assert_false(dir_is_local_domain(fx->d, ""));
    assert_false(dir_is_local_domain(fx->d, NULL));

    /* The layout: one REG_DWORD 1 per domain, named in lower case. */
    reg_key *k;
    uint32_t v = 0;
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" DIR_DOMAINS_KEY, REG_READ | REG_WRITE, &k),
                     0);
    assert_int_equal(reg_value_get_dword(k, "example.com", &v), 0);
    assert_int_equal(v, 1);
    reg_key_info info;
    assert_int_equal(reg_key_query_info(k, &info), 0);
    assert_int_equal(info.values, 3);

    char *before = export_dir(fx);
    static const struct {
        const char *what, *domain;
        int add_rc, remove_rc;
        dir_reason add_reason, remove_reason;
    } bad[] = {
        {"present", "EXAMPLE.com", EEXIST, 0, DIR_DOMAIN_EXISTS, DIR_OK},
        {"bad", "bad..domain", EINVAL, EINVAL, DIR_BAD_DOMAIN, DIR_BAD_DOMAIN},
        {"empty", "", EINVAL, EINVAL, DIR_BAD_DOMAIN, DIR_BAD_DOMAIN},
        {"literal", "[10.0.0.1]", EINVAL, EINVAL, DIR_BAD_DOMAIN, DIR_BAD_DOMAIN},
        {"absent", "other.org", 0, ENOENT, DIR_OK, DIR_NO_SUCH_DOMAIN},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (bad[i].add_rc)
            check(bad[i].what, dir_domain_add(fx->d, bad[i].domain, &e), bad[i].add_rc, &e,
                  bad[i].add_reason);
        if (bad[i].remove_rc)
            check(bad[i].what, dir_domain_remove(fx->d, bad[i].domain, &e), bad[i].remove_rc, &e,
                  bad[i].remove_reason);
    }
    char *after = export_dir(fx);
    assert_string_equal(after, before);
    free(before);
    free(after);

    /* A domain with 0 (set by hand) is not accepted: add makes it 1. */
    assert_int_equal(reg_value_set_dword(k, "off.example", 0), 0);
    assert_int_equal(dir_refresh(fx->d), 0);
    assert_false(dir_is_local_domain(fx->d, "off.example"));
    assert_domains(fx, "a.example,b.example,example.com");
    check("off", dir_domain_remove(fx->d, "off.example", &e), ENOENT, &e, DIR_NO_SUCH_DOMAIN);
    check("off", dir_domain_add(fx->d, "off.example", &e), 0, &e, DIR_OK);
    assert_true(dir_is_local_domain(fx->d, "off.example"));

    /* A domain in use cannot go; once its addresses are gone it can. */
    static const char *const addrs[] = {"bob@a.example", "bob@b.example"};
    add_mailbox(fx, "bob", NULL, addrs, 2);
    check("in use", dir_domain_remove(fx->d, "B.example", &e), EBUSY, &e, DIR_DOMAIN_IN_USE);
    assert_string_equal(e.subject, "b.example");
    assert_string_equal(e.owner, "bob");
    static const char *const rm[] = {"bob@b.example"};
    dir_change c = {.remove = rm, .nremove = 1};
    check("set", dir_mailbox_set(fx->d, "bob", &c, &e), 0, &e, DIR_OK);
    check("not in use", dir_domain_remove(fx->d, "B.example", &e), 0, &e, DIR_OK);
    assert_domains(fx, "a.example,example.com,off.example");
    assert_false(dir_is_local_domain(fx->d, "b.example"));
    reg_key_close(k);
}

/* --- mailboxes ------------------------------------------------------------------------ */

static void test_mailbox_add(void **state)
{
    struct fx *fx = *state;
    dir_err e;
    static const char *const doms[] = {"example.com", "example.org"};
    add_domains(fx, doms, 2);
    static const char *const bob[] = {"Bob@Example.com", "bob.smith@example.org"};
    char *maildir;
    check("bob", dir_mailbox_add(fx->d, "Bob", "Bob Smith", bob, 2, &maildir, &e), 0, &e, DIR_OK);
    /* The Maildir: <root>/store/<alias> with cur, new, tmp. */
    char want[256];
    snprintf(want, sizeof want, "%s/store/Bob", fx->dir);
    assert_string_equal(maildir, want);
    static const char *const subs[] = {"cur", "new", "tmp"};
    for (size_t i = 0; i < 3; i++) {
        char p[300];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", maildir, subs[i]);
        if (stat(p, &st) || !S_ISDIR(st.st_mode))
            fail_msg("%s: missing", p);
    }
    free(maildir);
    assert_show(fx, "bob", "Bob|Bob Smith|Bob@Example.com|bob.smith@example.org|/store/Bob");

    /* The registry layout, Exchange's form. */
    reg_key *k;
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" DIR_MAILBOXES_KEY "\\Bob", REG_READ, &k),
                     0);
    buf b = BUF_INIT;
    uint32_t type;
    assert_int_equal(reg_value_get_sz(k, "DisplayName", &b), 0);
    assert_string_equal(buf_cstr(&b), "Bob Smith");
    assert_int_equal(reg_value_get(k, "ProxyAddresses", &type, &b), 0);
    assert_int_equal(type, REG_MULTI_SZ);
    buf w = BUF_INIT;
    static const char multi[] = "SMTP:Bob@Example.com\0smtp:bob.smith@example.org\0";
    assert_int_equal(base_utf8_to_utf16(multi, sizeof multi, &w), 0); /* with the final NUL */
    assert_int_equal(b.len, w.len);
    assert_memory_equal(b.data, w.data, w.len);
    buf_free(&b);
    buf_free(&w);
    reg_key_close(k);

    /* No display name: the alias. */
    static const char *const al[] = {"al@example.com"};
    add_mailbox(fx, "al", NULL, al, 1);
    assert_show(fx, "AL", "al|al|al@example.com||/store/al");
    assert_mailboxes(fx, "al,Bob");

    /* Every refusal leaves the registry as it was and makes no Maildir. */
    char *before = export_dir(fx);
    static const char *many[DIR_MAX_ADDRESSES + 1];
    static char many_text[DIR_MAX_ADDRESSES + 1][32];
    for (size_t i = 0; i <= DIR_MAX_ADDRESSES; i++) {
        snprintf(many_text[i], sizeof many_text[i], "m%zu@example.com", i);
        many[i] = many_text[i];
    }
    static const char *const ok1[] = {"new@example.com"};
    static const char *const bad_addr[] = {"new@example.com", "not an address"};
    static const char *const unknown_dom[] = {"new@example.com", "new@other.org"};
    static const char *const taken[] = {"new@example.com", "BOB@example.COM"};
    static const char *const twice[] = {"new@example.com", "NEW@example.com"};
    static const struct {
        const char *what, *alias, *name;
        const char *const *addrs;
        size_t n;
        int rc;
        dir_reason reason;
        const char *subject, *owner;
    } bad[] = {
        {"bad alias", ".new", NULL, ok1, 1, EINVAL, DIR_BAD_ALIAS, ".new", ""},
        {"alias with /", "a/b", NULL, ok1, 1, EINVAL, DIR_BAD_ALIAS, "a/b", ""},
        {"long alias", ALIAS65, NULL, ok1, 1, EINVAL, DIR_BAD_ALIAS, NULL, ""},
        {"reserved", "msexchangeimc", NULL, ok1, 1, EINVAL, DIR_RESERVED, "msexchangeimc", ""},
        {"bad name", "new", "a\nb", ok1, 1, EINVAL, DIR_BAD_NAME, "", ""},
        {"empty name", "new", "", ok1, 1, EINVAL, DIR_BAD_NAME, "", ""},
        {"no address", "new", NULL, ok1, 0, EINVAL, DIR_NO_ADDRESS, "new", ""},
        {"too many", "new", NULL, many, DIR_MAX_ADDRESSES + 1, E2BIG, DIR_TOO_MANY_ADDRESSES, "new",
         ""},
        {"bad address", "new", NULL, bad_addr, 2, EINVAL, DIR_BAD_ADDRESS, "not an address", ""},
        {"unknown domain", "new", NULL, unknown_dom, 2, EINVAL, DIR_DOMAIN_NOT_ACCEPTED,
         "new@other.org", ""},
        {"taken", "new", NULL, taken, 2, EADDRINUSE, DIR_ADDRESS_TAKEN, "BOB@example.COM", "Bob"},
        {"twice", "new", NULL, twice, 2, EINVAL, DIR_ADDRESS_REPEATED, "NEW@example.com", ""},
        {"alias exists", "BOB", NULL, ok1, 1, EEXIST, DIR_MAILBOX_EXISTS, "Bob", ""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        maildir = (char *)"untouched";
        check(
            bad[i].what,
            dir_mailbox_add(fx->d, bad[i].alias, bad[i].name, bad[i].addrs, bad[i].n, &maildir, &e),
            bad[i].rc, &e, bad[i].reason);
        assert_null(maildir);
        if (bad[i].subject && strcmp(e.subject, bad[i].subject))
            fail_msg("%s: subject got \"%s\" want \"%s\"", bad[i].what, e.subject, bad[i].subject);
        if (strcmp(e.owner, bad[i].owner))
            fail_msg("%s: owner got \"%s\" want \"%s\"", bad[i].what, e.owner, bad[i].owner);
    }
    char *after = export_dir(fx);
    assert_string_equal(after, before);
    free(before);
    free(after);
    char p[300];
    struct stat st;
    snprintf(p, sizeof p, "%s/store/new", fx->dir);
    assert_int_equal(stat(p, &st), -1);
    assert_mailboxes(fx, "al,Bob");

    /* A NULL err is allowed. */
    assert_int_equal(dir_mailbox_add(fx->d, ".x", NULL, ok1, 1, NULL, NULL), EINVAL);
    /* The largest mailbox fits. */
    add_mailbox(fx, "many", NULL, many, DIR_MAX_ADDRESSES);
    assert_lookup(fx, "m1023@example.com", "many");
}

static void test_mailbox_set(void **state)
{
    struct fx *fx = *state;
    dir_err e;
    static const char *const doms[] = {"example.com", "example.org"};
    add_domains(fx, doms, 2);
    static const char *const bob[] = {"bob@example.com", "b@example.com"};
    static const char *const al[] = {"al@example.com"};
    add_mailbox(fx, "bob", "Bob", bob, 2);
    add_mailbox(fx, "al", NULL, al, 1);

    static const char *const add1[] = {"robert@example.org", "r@example.org"};
    static const char *const rm1[] = {"B@example.com"};
    static const char *const rm_primary[] = {"bob@example.com"};
    static const char *const add_taken[] = {"AL@example.com"};
    static const char *const add_own[] = {"robert@EXAMPLE.org"};
    static const char *const add_bad[] = {"robert@@example.org"};
    static const char *const add_unknown[] = {"robert@example.net"};
    static const char *const add_twice[] = {"x@example.com", "X@example.com"};
    static const char *const rm_missing[] = {"nobody@example.com"};
    static const char *const rm_twice[] = {"r@example.org", "R@example.org"};
    static const char *const rm_rs[] = {"rs@example.com"};
    static const struct {
        const char *what, *alias;
        dir_change c;
        int rc;
        dir_reason reason;
        const char *want; /* show afterwards */
    } steps[] = {
        {"name",
         "BOB",
         {.display_name = "Robert Smith"},
         0,
         DIR_OK,
         "bob|Robert Smith|bob@example.com|b@example.com|/store/bob"},
        {"add and remove",
         "bob",
         {.add = add1, .nadd = 2, .remove = rm1, .nremove = 1},
         0,
         DIR_OK,
         "bob|Robert Smith|bob@example.com|robert@example.org,r@example.org|/store/bob"},
        {"promote",
         "bob",
         {.primary = "Robert@example.org"},
         0,
         DIR_OK,
         "bob|Robert Smith|robert@example.org|bob@example.com,r@example.org|/store/bob"},
        {"new primary",
         "bob",
         {.primary = "rs@example.com"},
         0,
         DIR_OK,
         "bob|Robert Smith|rs@example.com|robert@example.org,bob@example.com,r@example.org|"
         "/store/bob"},
        {"same primary",
         "bob",
         {.primary = "RS@example.com"},
         0,
         DIR_OK,
         "bob|Robert Smith|rs@example.com|robert@example.org,bob@example.com,r@example.org|"
         "/store/bob"},
        {"remove primary",
         "bob",
         {.remove = rm_rs, .nremove = 1},
         EINVAL,
         DIR_PRIMARY_REMOVED,
         NULL},
        {"replace primary",
         "bob",
         {.remove = rm_rs, .nremove = 1, .primary = "bob@example.com"},
         0,
         DIR_OK,
         "bob|Robert Smith|bob@example.com|robert@example.org,r@example.org|/store/bob"},
        {"taken", "bob", {.add = add_taken, .nadd = 1}, EADDRINUSE, DIR_ADDRESS_TAKEN, NULL},
        {"primary taken",
         "bob",
         {.primary = "al@example.com"},
         EADDRINUSE,
         DIR_ADDRESS_TAKEN,
         NULL},
        {"own", "bob", {.add = add_own, .nadd = 1}, EEXIST, DIR_ADDRESS_EXISTS, NULL},
        {"own primary", "bob", {.add = rm_primary, .nadd = 1}, EEXIST, DIR_ADDRESS_EXISTS, NULL},
        {"bad", "bob", {.add = add_bad, .nadd = 1}, EINVAL, DIR_BAD_ADDRESS, NULL},
        {"bad primary", "bob", {.primary = "nope"}, EINVAL, DIR_BAD_ADDRESS, NULL},
        {"unknown domain",
         "bob",
         {.add = add_unknown, .nadd = 1},
         EINVAL,
         DIR_DOMAIN_NOT_ACCEPTED,
         NULL},
        {"unknown primary domain",
         "bob",
         {.primary = "x@example.net"},
         EINVAL,
         DIR_DOMAIN_NOT_ACCEPTED,
         NULL},
        {"twice", "bob", {.add = add_twice, .nadd = 2}, EINVAL, DIR_ADDRESS_REPEATED, NULL},
        {"remove twice",
         "bob",
         {.remove = rm_twice, .nremove = 2},
         EINVAL,
         DIR_ADDRESS_REPEATED,
         NULL},
        {"remove missing",
         "bob",
         {.remove = rm_missing, .nremove = 1},
         ENOENT,
         DIR_NO_SUCH_ADDRESS,
         NULL},
        {"bad name", "bob", {.display_name = "\x01"}, EINVAL, DIR_BAD_NAME, NULL},
        {"no mailbox", "carol", {.display_name = "Carol"}, ENOENT, DIR_NO_SUCH_MAILBOX, NULL},
        {"bad alias", "car/ol", {.display_name = "Carol"}, EINVAL, DIR_BAD_ALIAS, NULL},
        {"nothing",
         "bob",
         {0},
         0,
         DIR_OK,
         "bob|Robert Smith|bob@example.com|robert@example.org,r@example.org|/store/bob"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char *before = export_dir(fx);
        check(steps[i].what, dir_mailbox_set(fx->d, steps[i].alias, &steps[i].c, &e), steps[i].rc,
              &e, steps[i].reason);
        char *after = export_dir(fx);
        if (steps[i].rc && strcmp(before, after))
            fail_msg("%s: a refused change altered the registry", steps[i].what);
        free(before);
        free(after);
        if (steps[i].want)
            assert_show(fx, "bob", steps[i].want);
    }
    /* The index follows: old addresses gone, new ones found. */
    assert_lookup(fx, "rs@example.com", "-");
    assert_lookup(fx, "b@example.com", "-");
    assert_lookup(fx, "R@Example.ORG", "bob");
    assert_lookup(fx, "bob@example.com", "bob");
    assert_lookup(fx, "al@example.com", "al");

    /* Entries of other types (X400 ...) survive a change; other SMTP entries are secondary. */
    reg_key *k;
    assert_int_equal(
        reg_key_open_path(fx->reg, "HKLM\\" DIR_MAILBOXES_KEY "\\al", REG_READ | REG_WRITE, &k), 0);
    static const char *const proxies[] = {"X400:c=US;a= ;p=Org;o=Site;s=al;", "SMTP:al@example.com",
                                          "smtp:al2@example.com"};
    assert_int_equal(reg_value_set_multi_sz(k, "ProxyAddresses", proxies, 3), 0);
    dir_change c = {.primary = "al2@example.com"};
    check("x400", dir_mailbox_set(fx->d, "al", &c, &e), 0, &e, DIR_OK);
    assert_show(fx, "al", "al|al|al2@example.com|al@example.com|/store/al");
    buf b = BUF_INIT, w = BUF_INIT;
    uint32_t type;
    assert_int_equal(reg_value_get(k, "ProxyAddresses", &type, &b), 0);
    static const char multi[] = "SMTP:al2@example.com\0smtp:al@example.com\0"
                                "X400:c=US;a= ;p=Org;o=Site;s=al;\0";
    assert_int_equal(base_utf8_to_utf16(multi, sizeof multi, &w), 0);
    assert_int_equal(b.len, w.len);
    assert_memory_equal(b.data, w.data, w.len);
    buf_free(&b);
    buf_free(&w);
    reg_key_close(k);
}

static void test_mailbox_remove(void **state)
{
    struct fx *fx = *state;
    dir_err e;
    static const char *const doms[] = {"example.com"};
    add_domains(fx, doms, 1);
    static const char *const bob[] = {"bob@example.com"};
    add_mailbox(fx, "bob", NULL, bob, 1);
    /* Some mail in the Maildir: it must survive the removal. */
    char mail[300];
    snprintf(mail, sizeof mail, "%s/store/bob/new/1.msg", fx->dir);
    FILE *f = fopen(mail, "w");
    assert_non_null(f);
    fputs("Subject: kept\r\n\r\n", f);
    fclose(f);
    assert_lookup(fx, "bob@example.com", "bob");
    check("remove", dir_mailbox_remove(fx->d, "BOB", &e), 0, &e, DIR_OK);
    struct stat st;
    assert_int_equal(stat(mail, &st), 0);
    assert_lookup(fx, "bob@example.com", "-");
    assert_mailboxes(fx, "");
    dir_mailbox m;
    check("show", dir_mailbox_show(fx->d, "bob", &m, &e), ENOENT, &e, DIR_NO_SUCH_MAILBOX);
    check("again", dir_mailbox_remove(fx->d, "bob", &e), ENOENT, &e, DIR_NO_SUCH_MAILBOX);
    check("bad", dir_mailbox_remove(fx->d, "../x", &e), EINVAL, &e, DIR_BAD_ALIAS);
    check("bad show", dir_mailbox_show(fx->d, "../x", &m, &e), EINVAL, &e, DIR_BAD_ALIAS);
    /* The address is free again; the same alias takes its old Maildir back. */
    add_mailbox(fx, "bob", NULL, bob, 1);
    assert_int_equal(stat(mail, &st), 0);
    assert_lookup(fx, "BOB@EXAMPLE.COM", "bob");
}

/* A registry edited by hand: keys that are no aliases, addresses outside accepted domains
 * or invalid, values of the wrong type. Lookups and lists skip what does not fit. */
static void test_hand_edits(void **state)
{
    struct fx *fx = *state;
    static const char *const doms[] = {"example.com"};
    add_domains(fx, doms, 1);
    reg_key *mb, *k;
    assert_int_equal(
        reg_key_open_path(fx->reg, "HKLM\\" DIR_MAILBOXES_KEY, REG_READ | REG_WRITE, &mb), 0);
    assert_int_equal(reg_key_create(mb, "x/y", 0, NULL, &k, NULL), 0);
    static const char *const p1[] = {"SMTP:xy@example.com"};
    assert_int_equal(reg_value_set_multi_sz(k, "ProxyAddresses", p1, 1), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_create(mb, "hand", 0, NULL, &k, NULL), 0);
    static const char *const p2[] = {
        "smtp:second@example.com", "SMTP:out@elsewhere.org", "SMTP:bad..x@example.com", "junk", "",
        "after@example.com"};
    assert_int_equal(reg_value_set_multi_sz(k, "ProxyAddresses", p2, 6), 0);
    assert_int_equal(reg_value_set_dword(k, "DisplayName", 5), 0);
    reg_key_close(k);
    assert_int_equal(reg_key_create(mb, "sz", 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_sz(k, "ProxyAddresses", REG_SZ, "SMTP:sz@example.com"), 0);
    reg_key_close(k);
    reg_key_close(mb);
    assert_int_equal(dir_refresh(fx->d), 0);
    assert_mailboxes(fx, "hand,sz");
    assert_lookup(fx, "xy@example.com", "-");
    assert_lookup(fx, "second@example.com", "hand");
    assert_lookup(fx, "out@elsewhere.org", "-");
    assert_lookup(fx, "bad..x@example.com", "-");
    assert_lookup(fx, "sz@example.com", "-");
    /* The first SMTP: is the primary, an entry after the empty one is not read. */
    assert_show(fx, "hand",
                "hand||out@elsewhere.org|second@example.com,bad..x@example.com|"
                "/store/hand");
    assert_show(fx, "sz", "sz||(none)||/store/sz");
    /* Its addresses still count as taken, and domain removal sees them. */
    dir_err e;
    static const char *const a[] = {"second@example.com"};
    check("taken", dir_mailbox_add(fx->d, "n", NULL, a, 1, NULL, &e), EADDRINUSE, &e,
          DIR_ADDRESS_TAKEN);
    check("in use", dir_domain_remove(fx->d, "example.com", &e), EBUSY, &e, DIR_DOMAIN_IN_USE);
    /* A mailbox without a primary gets one by set. */
    dir_change c = {.primary = "sz@example.com"};
    check("primary", dir_mailbox_set(fx->d, "sz", &c, &e), 0, &e, DIR_OK);
    assert_lookup(fx, "sz@example.com", "sz");
}

static void test_lookup(void **state)
{
    struct fx *fx = *state;
    static const char *const doms[] = {"example.com", "example.org"};
    add_domains(fx, doms, 2);
    static const char *const bob[] = {"Bob.Smith@Example.com", "bob@example.org"};
    static const char *const al[] = {"al@example.com"};
    add_mailbox(fx, "Bob", NULL, bob, 2);
    add_mailbox(fx, "al", NULL, al, 1);
    static const struct {
        const char *address, *want;
    } cases[] = {
        {"bob.smith@example.com", "Bob"},
        {"BOB.SMITH@EXAMPLE.COM", "Bob"},
        {"bob@EXAMPLE.org", "Bob"},
        {"al@example.com", "al"},
        {"al@example.org", "-"},
        {"bob.smith", "-"},
        {"", "-"},
        {"@example.com", "-"},
        {"bob.smith@example.com ", "-"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_lookup(fx, cases[i].address, cases[i].want);
    char longer[DIR_MAX_ADDRESS + 40];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    assert_lookup(fx, longer, "-");
    char *alias = (char *)"untouched";
    assert_int_equal(dir_lookup(fx->d, NULL, &alias), ENOENT);
    assert_null(alias);

    /* Many mailboxes: every address found (the index grows with the directory). */
    for (int i = 0; i < 300; i++) {
        char a[32], addr[64];
        snprintf(a, sizeof a, "user%d", i);
        snprintf(addr, sizeof addr, "User%d@Example.org", i);
        const char *addrs[] = {addr};
        add_mailbox(fx, a, NULL, addrs, 1);
    }
    for (int i = 0; i < 300; i++) {
        char a[32], addr[64];
        snprintf(a, sizeof a, "user%d", i);
        snprintf(addr, sizeof addr, "user%d@example.ORG", i);
        assert_lookup(fx, addr, a);
    }
}

/* --- the index follows other processes -------------------------------------------------- */

/* in_child - run fn in a child process with its own registry context and directory (as
 * imsadm would be), and wait for it. */
static void in_child(struct fx *fx, void (*fn)(directory *d, reg_ctx *reg))
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        reg_ctx *reg;
        directory *d;
        if (reg_ctx_open(fx->dir, &reg) || dir_open(reg, &d))
            _exit(100);
        fn(d, reg);
        dir_close(d);
        reg_ctx_close(reg);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void child_add_carol(directory *d, reg_ctx *reg)
{
    (void)reg;
    static const char *const a[] = {"carol@example.com"};
    if (dir_domain_add(d, "example.com", NULL) ||
        dir_mailbox_add(d, "carol", NULL, a, 1, NULL, NULL))
        _exit(1);
}

static void child_remove_carol(directory *d, reg_ctx *reg)
{
    (void)reg;
    if (dir_mailbox_remove(d, "carol", NULL))
        _exit(1);
}

static void child_delete_directory(directory *d, reg_ctx *reg)
{
    (void)d;
    reg_key *lm;
    if (reg_key_open_root(reg, REG_ROOT_HKLM, &lm) || reg_key_delete_tree(lm, DIR_KEY))
        _exit(1);
    reg_key_close(lm);
}

/* wait_fd - the notify descriptor becomes readable within the bound. */
static void wait_fd(struct fx *fx)
{
    struct pollfd p = {.fd = dir_notify_fd(fx->d), .events = POLLIN};
    assert_int_equal(poll(&p, 1, POLL_ROUNDS * POLL_MS), 1);
}

/* wait_lookup - a lookup gives want within the bound (refreshing lazily by itself). */
static void wait_lookup(struct fx *fx, const char *address, const char *want)
{
    const char *got = NULL;
    for (int i = 0; i < POLL_ROUNDS; i++) {
        char *alias;
        int rc = dir_lookup(fx->d, address, &alias);
        got = rc == ENOENT ? "-" : rc ? "error" : alias;
        bool done = !strcmp(got, want);
        if (!rc)
            free(alias);
        if (done)
            return;
        poll(NULL, 0, POLL_MS);
    }
    fail_msg("lookup %s: got \"%s\" want \"%s\" within %d ms", address, got, want,
             POLL_ROUNDS * POLL_MS);
}

static void test_other_process(void **state)
{
    struct fx *fx = *state;
    int fd = dir_notify_fd(fx->d);
    assert_true(fd >= 0);
    /* Nothing changed: the descriptor is quiet and a refresh keeps the index. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
    assert_int_equal(dir_refresh(fx->d), 0);

    /* The Directory key did not exist when the dir was opened: its creation is seen. The
     * event loop way: the descriptor, then dir_refresh. */
    in_child(fx, child_add_carol);
    wait_fd(fx);
    assert_int_equal(dir_refresh(fx->d), 0);
    assert_lookup(fx, "carol@example.com", "carol");
    assert_true(dir_is_local_domain(fx->d, "example.com"));
    assert_int_equal(poll(&p, 1, 0), 0); /* drained */

    /* Without an event loop: the lookup refreshes by itself. */
    in_child(fx, child_remove_carol);
    wait_lookup(fx, "carol@example.com", "-");

    /* The whole Directory deleted, then made again: still followed, same descriptor. The
     * dir is opened anew, so that it starts out watching the Directory key itself. */
    dir_close(fx->d);
    assert_int_equal(dir_open(fx->reg, &fx->d), 0);
    fd = dir_notify_fd(fx->d);
    assert_true(dir_is_local_domain(fx->d, "example.com"));
    in_child(fx, child_delete_directory);
    wait_fd(fx);
    assert_int_equal(dir_refresh(fx->d), 0);
    assert_false(dir_is_local_domain(fx->d, "example.com"));
    in_child(fx, child_add_carol);
    wait_lookup(fx, "CAROL@example.com", "carol");
    assert_int_equal(dir_notify_fd(fx->d), fd);

    /* Changes made through this very dir show at once too. */
    static const char *const a[] = {"dave@example.com"};
    add_mailbox(fx, "dave", NULL, a, 1);
    assert_lookup(fx, "dave@example.com", "dave");
}

/* A reader without write access (the service account when imsadm made the registry): it
 * reads and follows the directory; changes are refused with EACCES. */
static void test_read_only(void **state)
{
    struct fx *fx = *state;
    if (geteuid() != 0)
        skip();
    struct passwd *pw = getpwnam("nobody");
    if (!pw)
        skip();
    static const char *const doms[] = {"example.com"};
    add_domains(fx, doms, 1);
    assert_int_equal(chmod(fx->dir, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        reg_ctx *reg;
        directory *d;
        dir_err e;
        if (setgid(pw->pw_gid) || setuid(pw->pw_uid))
            _exit(100);
        if (reg_ctx_open(fx->dir, &reg) || dir_open(reg, &d))
            _exit(101);
        if (!dir_is_local_domain(d, "example.com"))
            _exit(102);
        if (dir_domain_add(d, "other.org", &e) != EACCES || e.reason != DIR_REGISTRY ||
            e.reg_error != ERROR_ACCESS_DENIED)
            _exit(103);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* --- passwords ------------------------------------------------------------------------- */

/* Hashes made by Python's crypt module (libcrypt through another caller), not by the code
 * under test. */
#define PW_RIGHT "correct horse battery staple"
#define PW_HASH "$y$j9T$WBQN2m0Tn/8teyAGRFeyC0$l6ZBzu0x.ybXuTHvVJ4K.zt5J/cwjqaGEJjIqQ1Q42C"
#define PW_HASH_UTF8 "$y$j9T$WBQN2m0Tn/8teyAGRFeyC0$YlLHgm2N1jIT50s0ONSU.QEgYDkJjRZR4WC.n30d6S3"
#define PW_DES "abhfCpXqd4GrI" /* crypt(PW_RIGHT, "ab"): traditional DES, not accepted */

static bool verify(const char *hash, const char *pw)
{
    return dir_password_verify(hash, pw, strlen(pw));
}

static void test_password_verify(void **state)
{
    (void)state;
    assert_true(verify(PW_HASH, PW_RIGHT));
    assert_true(verify(PW_HASH_UTF8, "p\xc3\xa4ssw\xc3\xb6rd"));
    assert_false(verify(PW_HASH, "correct horse battery stapl"));
    assert_false(verify(PW_HASH, "correct horse battery staple "));
    assert_false(verify(PW_HASH, "Correct horse battery staple"));
    /* Only as many bytes as len says count: the password need not be NUL-terminated. */
    assert_true(dir_password_verify(PW_HASH, PW_RIGHT "xyz", strlen(PW_RIGHT)));
    assert_false(dir_password_verify(PW_HASH, PW_RIGHT, strlen(PW_RIGHT) - 1));
    /* The unknown account: false, and still a hash's work (not measured here). */
    assert_false(verify(NULL, PW_RIGHT));
    assert_false(verify(NULL, ""));
    /* Hashes of other kinds, cut short or edited: false. */
    assert_false(verify(PW_DES, PW_RIGHT));
    assert_false(verify("", PW_RIGHT));
    assert_false(verify("*0", PW_RIGHT));
    assert_false(verify("$y$j9T$WBQN2m0Tn/8teyAGRFeyC0$", PW_RIGHT));
    char edited[] = PW_HASH;
    edited[sizeof edited - 2] = edited[sizeof edited - 2] == 'C' ? 'D' : 'C';
    assert_false(verify(edited, PW_RIGHT));
    /* Passwords the directory refuses never match. */
    assert_false(dir_password_verify(PW_HASH, "", 0));
    assert_false(dir_password_verify(PW_HASH, NULL, 0));
    assert_false(dir_password_verify(PW_HASH, "correct\0horse", 13));
    char *big = malloc(DIR_MAX_PASSWORD + 2);
    assert_non_null(big);
    memset(big, 'a', DIR_MAX_PASSWORD + 1);
    big[DIR_MAX_PASSWORD + 1] = '\0';
    assert_false(dir_password_verify(PW_HASH, big, DIR_MAX_PASSWORD + 1));
    free(big);
}

static void test_password_rules(void **state)
{
    (void)state;
    static const struct {
        const char *pw;
        size_t len;
        bool ok;
    } cases[] = {
        {"a", 1, true},     {"", 0, false},
        {"a\0b", 3, false}, {"\x01\t \xff\r", 5, true}, /* any byte but NUL */
        {NULL, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (dir_password_valid(cases[i].pw, cases[i].len) != cases[i].ok)
            fail_msg("case %zu: got %d want %d", i, !cases[i].ok, cases[i].ok);
    char *p = malloc(DIR_MAX_PASSWORD + 1);
    assert_non_null(p);
    memset(p, 'x', DIR_MAX_PASSWORD + 1);
    assert_true(dir_password_valid(p, DIR_MAX_PASSWORD));
    assert_false(dir_password_valid(p, DIR_MAX_PASSWORD + 1));
    free(p);
}

/* auth - "alias|hash" of a login, "-" for ENOENT, "error N" otherwise. */
static char *auth(struct fx *fx, const char *login)
{
    char alias[DIR_MAX_ALIAS + 1], hash[DIR_MAX_HASH + 1], out[DIR_MAX_ALIAS + DIR_MAX_HASH + 16];
    int rc = dir_auth_lookup(fx->d, login, alias, hash, sizeof hash);
    if (rc) {
        assert_string_equal(alias, "");
        assert_string_equal(hash, "");
    }
    if (rc == ENOENT)
        snprintf(out, sizeof out, "-");
    else if (rc)
        snprintf(out, sizeof out, "error %d", rc);
    else
        snprintf(out, sizeof out, "%s|%s", alias, hash);
    return strdup(out);
}

static void assert_no_account(struct fx *fx, const char *login)
{
    char *got = auth(fx, login);
    if (strcmp(got, "-"))
        fail_msg("login %s: got \"%s\" want no account", login, got);
    free(got);
}

/* account_hash - the hash of a login's account (which must be alias), malloc'd. */
static char *account_hash(struct fx *fx, const char *login, const char *alias)
{
    char *got = auth(fx, login);
    size_t n = strlen(alias);
    if (strncmp(got, alias, n) || got[n] != '|')
        fail_msg("login %s: got \"%s\" want account %s", login, got, alias);
    char *h = strdup(got + n + 1);
    free(got);
    return h;
}

/* stored_hashes - the values of the Passwords key in HKCU (the context's user): "" when the
 * key does not exist, else "name=data,..." in creation order. */
struct hv {
    buf b;
};
static int collect_hash(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    struct hv *h = arg;
    assert_int_equal(type, REG_SZ);
    buf s = BUF_INIT;
    assert_int_equal(base_utf16_to_utf8(data, len / 2, &s), 0);
    buf_printf(&h->b, "%s%s=%.*s", h->b.len ? "," : "", name, (int)strnlen((char *)s.data, s.len),
               (char *)s.data);
    buf_free(&s);
    return 0;
}

static char *stored_hashes(struct fx *fx)
{
    struct hv h = {BUF_INIT};
    reg_key *k;
    if (reg_key_open_path(fx->reg, "HKCU\\" DIR_PASSWORDS_KEY, REG_READ, &k) == 0) {
        assert_int_equal(reg_key_enum_values(k, collect_hash, &h), 0);
        reg_key_close(k);
    }
    char *s = buf_detach(&h.b, NULL);
    assert_non_null(s);
    return s;
}

/* pwid_hex - the PasswordId of a mailbox key as lowercase hex, "" when none. */
static void pwid_hex(struct fx *fx, const char *alias, char out[2 * DIR_PASSWORD_ID_BYTES + 1])
{
    char path[256];
    snprintf(path, sizeof path, "HKLM\\%s\\%s", DIR_MAILBOXES_KEY, alias);
    reg_key *k;
    assert_int_equal(reg_key_open_path(fx->reg, path, REG_READ, &k), 0);
    buf b = BUF_INIT;
    uint32_t type;
    out[0] = '\0';
    if (reg_value_get(k, DIR_PASSWORD_ID_VALUE, &type, &b) == 0) {
        assert_int_equal(type, REG_BINARY);
        assert_int_equal(b.len, DIR_PASSWORD_ID_BYTES);
        for (size_t i = 0; i < b.len; i++)
            sprintf(out + 2 * i, "%02x", b.data[i]);
    }
    buf_free(&b);
    reg_key_close(k);
}

static bool shows_password(struct fx *fx, const char *alias)
{
    dir_mailbox m;
    dir_err e;
    check(alias, dir_mailbox_show(fx->d, alias, &m, &e), 0, &e, DIR_OK);
    bool set = m.password;
    dir_mailbox_free(&m);
    return set;
}

static void test_passwords(void **state)
{
    struct fx *fx = *state;
    dir_err e;
    static const char *const doms[] = {"example.com", "example.org"};
    add_domains(fx, doms, 2);
    static const char *const bob[] = {"Bob@Example.com", "b.smith@example.org"};
    add_mailbox(fx, "Bob", NULL, bob, 2);
    static const char *const carol[] = {"carol@example.com"};
    add_mailbox(fx, "carol", NULL, carol, 1);
    char *before = export_dir(fx);

    /* Refused: nothing is written anywhere. */
    check("empty", dir_password_set(fx->d, "bob", "", &e), EINVAL, &e, DIR_BAD_PASSWORD);
    check("null", dir_password_set(fx->d, "bob", NULL, &e), EINVAL, &e, DIR_BAD_PASSWORD);
    char *big = malloc(DIR_MAX_PASSWORD + 2);
    assert_non_null(big);
    memset(big, 'p', DIR_MAX_PASSWORD + 1);
    big[DIR_MAX_PASSWORD + 1] = '\0';
    check("long", dir_password_set(fx->d, "bob", big, &e), EINVAL, &e, DIR_BAD_PASSWORD);
    check("bad alias", dir_password_set(fx->d, "../x", "pw", &e), EINVAL, &e, DIR_BAD_ALIAS);
    check("unknown", dir_password_set(fx->d, "dave", "pw", &e), ENOENT, &e, DIR_NO_SUCH_MAILBOX);
    assert_string_equal(e.subject, "dave");
    char *after = export_dir(fx);
    assert_string_equal(after, before);
    free(after);
    char *hashes = stored_hashes(fx);
    assert_string_equal(hashes, "");
    free(hashes);
    assert_false(shows_password(fx, "bob"));
    assert_no_account(fx, "bob");

    /* Set: a "$y$" hash in HKCU under the id HKLM holds; any login of the mailbox finds it. */
    check("set", dir_password_set(fx->d, "BOB", PW_RIGHT, &e), 0, &e, DIR_OK);
    assert_true(shows_password(fx, "bob"));
    assert_false(shows_password(fx, "carol"));
    char id1[2 * DIR_PASSWORD_ID_BYTES + 1];
    pwid_hex(fx, "Bob", id1);
    assert_int_equal(strlen(id1), 2 * DIR_PASSWORD_ID_BYTES);
    char *h1 = account_hash(fx, "bob", "Bob");
    assert_true(strncmp(h1, "$y$", 3) == 0);
    assert_true(strlen(h1) <= DIR_MAX_HASH);
    hashes = stored_hashes(fx);
    char want[512];
    snprintf(want, sizeof want, "%s=%s", id1, h1);
    assert_string_equal(hashes, want);
    free(hashes);
    static const char *const logins[] = {"BOB", "bob@example.com", "BOB@EXAMPLE.COM",
                                         "b.smith@example.org", "B.Smith@Example.ORG"};
    for (size_t i = 0; i < sizeof logins / sizeof logins[0]; i++) {
        char *h = account_hash(fx, logins[i], "Bob");
        assert_string_equal(h, h1);
        free(h);
    }
    assert_true(verify(h1, PW_RIGHT));
    assert_false(verify(h1, "wrong"));
    /* The hash is not in HKLM, which every local user can read. */
    after = export_dir(fx);
    assert_null(strstr(after, h1));
    assert_null(strstr(after, "$y$"));
    free(after);

    /* Not accounts: other names, a mailbox without a password, an address of nobody. */
    assert_no_account(fx, "carol");
    assert_no_account(fx, "carol@example.com");
    assert_no_account(fx, "dave");
    assert_no_account(fx, "bob@example.net");
    assert_no_account(fx, "");
    assert_no_account(fx, NULL);
    assert_no_account(fx, ALIAS65 ALIAS65 ALIAS65 ALIAS65 "@example.com");
    char alias[DIR_MAX_ALIAS + 1], small[16];
    assert_int_equal(dir_auth_lookup(fx->d, "bob", alias, small, sizeof small), ERANGE);

    /* The same password again: a new salt, a new hash, a new id; the old hash is gone. */
    check("again", dir_password_set(fx->d, "bob", PW_RIGHT, &e), 0, &e, DIR_OK);
    char id2[2 * DIR_PASSWORD_ID_BYTES + 1];
    pwid_hex(fx, "Bob", id2);
    assert_string_not_equal(id1, id2);
    char *h2 = account_hash(fx, "bob", "Bob");
    assert_string_not_equal(h1, h2);
    assert_true(verify(h2, PW_RIGHT));
    hashes = stored_hashes(fx);
    snprintf(want, sizeof want, "%s=%s", id2, h2);
    assert_string_equal(hashes, want);
    free(hashes);

    /* The longest password. */
    big[DIR_MAX_PASSWORD] = '\0';
    check("longest", dir_password_set(fx->d, "carol", big, &e), 0, &e, DIR_OK);
    char *hc = account_hash(fx, "carol@example.com", "carol");
    assert_true(dir_password_verify(hc, big, DIR_MAX_PASSWORD));
    big[0] = 'q';
    assert_false(dir_password_verify(hc, big, DIR_MAX_PASSWORD));
    free(hc);
    free(big);

    /* Clear: no account any more, the hash deleted; clearing again does nothing. */
    check("clear", dir_password_clear(fx->d, "BOB", &e), 0, &e, DIR_OK);
    assert_false(shows_password(fx, "bob"));
    assert_no_account(fx, "bob");
    pwid_hex(fx, "Bob", id2);
    assert_string_equal(id2, "");
    hashes = stored_hashes(fx);
    assert_null(strstr(hashes, h2));
    free(hashes);
    check("clear again", dir_password_clear(fx->d, "bob", &e), 0, &e, DIR_OK);
    check("clear unknown", dir_password_clear(fx->d, "dave", &e), ENOENT, &e, DIR_NO_SUCH_MAILBOX);
    check("clear bad", dir_password_clear(fx->d, "../x", &e), EINVAL, &e, DIR_BAD_ALIAS);

    /* A removed mailbox takes its hash with it, and a new one of that alias has none. */
    check("set", dir_password_set(fx->d, "bob", "second", &e), 0, &e, DIR_OK);
    check("remove", dir_mailbox_remove(fx->d, "bob", &e), 0, &e, DIR_OK);
    assert_no_account(fx, "bob");
    check("remove carol", dir_mailbox_remove(fx->d, "carol", &e), 0, &e, DIR_OK);
    hashes = stored_hashes(fx);
    assert_string_equal(hashes, "");
    free(hashes);
    add_mailbox(fx, "bob", NULL, bob, 2);
    assert_false(shows_password(fx, "bob"));
    assert_no_account(fx, "bob");
    free(h1);
    free(h2);
    free(before);
}

/* The hashes are kept in the context user's hive, which only that user (and root) can read,
 * and found only through the id HKLM holds: a hash left behind opens nothing. */
static void test_password_store(void **state)
{
    struct fx *fx = *state;
    dir_err e;
    static const char *const doms[] = {"example.com"};
    add_domains(fx, doms, 1);
    static const char *const bob[] = {"bob@example.com"};
    add_mailbox(fx, "bob", NULL, bob, 1);
    check("set", dir_password_set(fx->d, "bob", PW_RIGHT, &e), 0, &e, DIR_OK);
    char hive[128];
    snprintf(hive, sizeof hive, "%s/registry/HKU/%s", fx->dir, reg_ctx_user_sid(fx->reg));
    struct stat st;
    assert_int_equal(stat(hive, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(st.st_uid, geteuid());
    char data[160];
    snprintf(data, sizeof data, "%s/data.mdb", hive);
    assert_int_equal(stat(data, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A hash of a known password planted under another id, and the id of bob pointed at a
     * hash that is missing: neither opens the account. */
    reg_key *k;
    assert_int_equal(
        reg_key_open_path(fx->reg, "HKCU\\" DIR_PASSWORDS_KEY, REG_READ | REG_WRITE, &k), 0);
    assert_int_equal(reg_value_set_sz(k, "00000000000000000000000000000000", REG_SZ, PW_HASH), 0);
    reg_key_close(k);
    static const uint8_t zero[DIR_PASSWORD_ID_BYTES] = {1};
    assert_int_equal(
        reg_key_open_path(fx->reg, "HKLM\\" DIR_MAILBOXES_KEY "\\bob", REG_READ | REG_WRITE, &k),
        0);
    assert_int_equal(reg_value_set(k, DIR_PASSWORD_ID_VALUE, REG_BINARY, zero, sizeof zero), 0);
    reg_key_close(k);
    assert_int_equal(dir_refresh(fx->d), 0);
    assert_true(shows_password(fx, "bob")); /* the id says so; the login finds no hash */
    assert_no_account(fx, "bob");

    /* A PasswordId of the wrong form is no password. */
    assert_int_equal(
        reg_key_open_path(fx->reg, "HKLM\\" DIR_MAILBOXES_KEY "\\bob", REG_READ | REG_WRITE, &k),
        0);
    assert_int_equal(reg_value_set_sz(k, DIR_PASSWORD_ID_VALUE, REG_SZ, "00"), 0);
    reg_key_close(k);
    assert_false(shows_password(fx, "bob"));
    assert_no_account(fx, "bob");
    /* Setting again repairs it. */
    check("set", dir_password_set(fx->d, "bob", PW_RIGHT, &e), 0, &e, DIR_OK);
    char *h = account_hash(fx, "bob", "bob");
    assert_true(verify(h, PW_RIGHT));
    free(h);
}

static void child_set_password(directory *d, reg_ctx *reg)
{
    (void)reg;
    if (dir_password_set(d, "carol", PW_RIGHT, NULL))
        _exit(1);
}

/* A password set by another process (imsadm) is seen by the open directory (imsd). */
static void test_password_other_process(void **state)
{
    struct fx *fx = *state;
    in_child(fx, child_add_carol);
    wait_lookup(fx, "carol@example.com", "carol");
    assert_no_account(fx, "carol");
    in_child(fx, child_set_password);
    char *got = NULL;
    for (int i = 0; i < POLL_ROUNDS; i++) {
        free(got);
        got = auth(fx, "CAROL");
        if (strcmp(got, "-"))
            break;
        poll(NULL, 0, POLL_MS);
    }
    assert_true(strncmp(got, "carol|$y$", 9) == 0);
    assert_true(verify(got + 6, PW_RIGHT));
    free(got);
}

/* child_auth - in a child that becomes uid:gid: the login "bob" gives want_rc, and with 0 a
 * hash that PW_RIGHT matches. Exits 0 when so. */
static void child_auth(const char *dir, uid_t uid, gid_t gid, int want_rc)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        reg_ctx *reg;
        directory *d;
        char alias[DIR_MAX_ALIAS + 1], hash[DIR_MAX_HASH + 1];
        if (setgid(gid) || setuid(uid))
            _exit(100);
        if (reg_ctx_open(dir, &reg) || dir_open(reg, &d))
            _exit(101);
        int rc = dir_auth_lookup(d, "bob@example.com", alias, hash, sizeof hash);
        if (rc != want_rc)
            _exit(102);
        if (!rc && (strcmp(alias, "bob") || !dir_password_verify(hash, PW_RIGHT, strlen(PW_RIGHT))))
            _exit(103);
        dir_close(d);
        reg_ctx_close(reg);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* As imsadm run by root does: the context's user is the service account, whose hive gets the
 * hash (made and given to it by root); the service, running as that account, finds it;
 * another user reads the directory but no hash. */
static void test_password_service_account(void **state)
{
    struct fx *fx = *state;
    if (geteuid() != 0)
        skip();
    struct passwd *o = getpwnam("daemon");
    if (!o)
        skip();
    uid_t other_uid = o->pw_uid;
    gid_t other_gid = o->pw_gid;
    struct passwd *pw = getpwnam("nobody");
    if (!pw)
        skip();
    assert_int_equal(chmod(fx->dir, 0755), 0);
    static const char *const doms[] = {"example.com"};
    add_domains(fx, doms, 1);
    static const char *const bob[] = {"bob@example.com"};
    add_mailbox(fx, "bob", NULL, bob, 1);
    assert_int_equal(reg_ctx_set_user(fx->reg, pw->pw_uid), 0);
    dir_err e;
    check("set", dir_password_set(fx->d, "bob", PW_RIGHT, &e), 0, &e, DIR_OK);
    char hive[128];
    snprintf(hive, sizeof hive, "%s/registry/HKU/S-1-22-1-%u", fx->dir, (unsigned)pw->pw_uid);
    struct stat st;
    assert_int_equal(stat(hive, &st), 0);
    assert_int_equal(st.st_uid, pw->pw_uid);
    assert_int_equal(st.st_mode & 0777, 0700);
    child_auth(fx->dir, pw->pw_uid, pw->pw_gid, 0);
    child_auth(fx->dir, other_uid, other_gid, ENOENT);
}

static void test_messages(void **state)
{
    (void)state;
    static const struct {
        dir_err e;
        const char *want;
    } cases[] = {
        {{.reason = DIR_ADDRESS_TAKEN, .subject = "a@b.example", .owner = "bob"},
         "address \"a@b.example\" belongs to mailbox \"bob\""},
        {{.reason = DIR_DOMAIN_NOT_ACCEPTED, .subject = "a@b.example"},
         "address \"a@b.example\": \"b.example\" is not an accepted domain"},
        {{.reason = DIR_NO_SUCH_MAILBOX, .subject = "carol"}, "no mailbox \"carol\""},
        {{.reason = DIR_DOMAIN_IN_USE, .subject = "b.example", .owner = "bob"},
         "domain \"b.example\" is in use: mailbox \"bob\" has an address in it"},
        {{.reason = DIR_REGISTRY, .reg_error = ERROR_ACCESS_DENIED},
         "registry: Access is denied (error 5)"},
        {{.reason = DIR_MAILDIR, .subject = "bob", .sys_error = ENOSPC},
         "cannot make the Maildir of \"bob\": No space left on device"},
        {{.reason = DIR_BAD_PASSWORD}, "invalid password: 1 to 511 bytes, without NUL bytes"},
        {{.reason = DIR_HASH, .sys_error = EINVAL},
         "cannot hash the password (libcrypt, yescrypt): Invalid argument"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[512];
        const char *got = dir_err_format(&cases[i].e, out, sizeof out);
        if (strcmp(got, cases[i].want))
            fail_msg("case %zu: got \"%s\" want \"%s\"", i, got, cases[i].want);
    }
    /* A short buffer is cut, terminated. */
    char small[8];
    dir_err_format(&cases[0].e, small, sizeof small);
    assert_string_equal(small, "address");
    /* Control characters of the input do not reach a terminal. */
    dir_err e;
    reg_ctx *reg;
    directory *d;
    char dir[64] = "/tmp/directory_test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(reg_ctx_open(dir, &reg), 0);
    assert_int_equal(dir_open(reg, &d), 0);
    assert_int_equal(dir_domain_add(d, "bad\033[2J.domain", &e), EINVAL);
    assert_string_equal(e.subject, "bad?[2J.domain");
    dir_close(d);
    reg_ctx_close(reg);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hand_edits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
        cmocka_unit_test(test_password_verify),
        cmocka_unit_test(test_password_rules),
        cmocka_unit_test_setup_teardown(test_passwords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_other_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_service_account, setup, teardown),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests_name("directory", tests, NULL, NULL);
}
