/* ims_test.c - unit tests of lib/ims (settings, events, install, the start and stop sequence,
 * the SMTP protocol log) and lib/store (mailboxes and folders), on a private registry and state
 * root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ims/ims.h"
#include "store/store.h"

#define CATALOGUE "data/mapisvc.inf"
#define PROFILES "HKCU\\" MAPI_PROFILES_PATH

#include "regfx.h"

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
            assert_int_equal(l.kind, IMS_LISTEN_SMTP);
        }
    }
    /* The kind word after the address. */
    static const struct {
        const char *in;
        int rc;
        ims_listen_kind kind;
        uint16_t port;
    } kinds[] = {
        {"127.0.0.1:587 submission", 0, IMS_LISTEN_SUBMISSION, 587},
        {"127.0.0.1:465\tSUBMISSIONS", 0, IMS_LISTEN_SUBMISSIONS, 465},
        {"[::1]:465  smtps", 0, IMS_LISTEN_SUBMISSIONS, 465},
        {"0.0.0.0:25 smtp", 0, IMS_LISTEN_SMTP, 25},
        {"0.0.0.0:25 ", 0, IMS_LISTEN_SMTP, 25},
        {"0.0.0.0:25 lmtp", -1, 0, 0},
        {"0.0.0.0:25 smtp extra", -1, 0, 0},
        {"0.0.0.0:25 submissionsubmission", -1, 0, 0}, /* longer than any kind */
        {" 0.0.0.0:25", -1, 0, 0},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        ims_listen l;
        int rc = ims_listen_parse(kinds[i].in, &l);
        if (rc != kinds[i].rc)
            fail_msg("parse \"%s\": got %d, want %d", kinds[i].in, rc, kinds[i].rc);
        if (!rc) {
            assert_int_equal(l.kind, kinds[i].kind);
            assert_int_equal(l.port, kinds[i].port);
        }
    }
    assert_string_equal(ims_listen_kind_name(IMS_LISTEN_SUBMISSION), "submission");
    assert_string_equal(ims_listen_kind_name((ims_listen_kind)9), "?");
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
    assert_int_equal(s.transfer_mode, IMS_TRANSFER_INOUT);
    assert_int_equal(s.max_inbound_connections, 30);
    assert_int_equal(s.inbound_recipient_limit, 100);
    assert_int_equal(s.max_line_length, 1000);
    assert_int_equal(s.max_errors_per_session, 20);
    assert_string_equal(s.administrator_mailbox, "postmaster");
    assert_int_equal(s.command_timeout, 300);
    assert_int_equal(s.data_timeout, 300);
    /* Our name: the host name, completed with SiteDomain when it has no dot. */
    char host[256] = "", fqdn[600], want_fqdn[600];
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    snprintf(s.site_domain, sizeof s.site_domain, "example.org");
    ims_settings_fqdn(&s, fqdn, sizeof fqdn);
    snprintf(want_fqdn, sizeof want_fqdn, strchr(host, '.') ? "%s" : "%s.example.org", host);
    assert_string_equal(fqdn, want_fqdn);
    snprintf(s.site_domain, sizeof s.site_domain, "nodot");
    ims_settings_fqdn(&s, fqdn, sizeof fqdn);
    assert_string_equal(fqdn, host);
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
    assert_int_equal(reg_value_set_sz(k, "AdministratorMailbox", REG_SZ, "../etc"), 0);
    const char *mixed[] = {"nonsense", "127.0.0.1:2700"};
    assert_int_equal(reg_value_set_multi_sz(k, "ListenAddresses", mixed, 2), 0);
    reg_key_close(k);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;4086;4086;4086;");
    assert_string_equal(s.administrator_mailbox, "postmaster");
    assert_int_equal(s.console_stat_frequency, 14);
    assert_int_equal(s.advertise_smtp_extensions, 1);
    assert_int_equal(s.nlisten, 1);
    assert_int_equal(s.listen[0].port, 2700);
    /* The inbound limits: each in range is taken, each out of range keeps its default with
     * one more event 4086 than the values set above give. */
    fx->events[0] = 0;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    int base_events = count_events(fx->events, "4086;");
#define LIMIT(name, field, v, ok)                                                                  \
    {                                                                                              \
        name, offsetof(ims_settings, field), v, ok                                                 \
    }
    struct {
        const char *name;
        size_t field; /* offset of the uint32_t in ims_settings */
        uint32_t set;
        bool valid;
    } limits[] = {
        LIMIT("TransferMode", transfer_mode, 3, true),
        LIMIT("TransferMode", transfer_mode, 4, false),
        LIMIT("MaxInboundConnections", max_inbound_connections, 0, true),
        LIMIT("MaxInboundConnections", max_inbound_connections, 100001, false),
        LIMIT("InboundRecipientLimit", inbound_recipient_limit, 99, false),
        LIMIT("InboundRecipientLimit", inbound_recipient_limit, 5000, true),
        LIMIT("MaxLineLength", max_line_length, 511, false),
        LIMIT("MaxLineLength", max_line_length, 4096, true),
        LIMIT("MaxErrorsPerSession", max_errors_per_session, 0, false),
        LIMIT("MaxErrorsPerSession", max_errors_per_session, 3, true),
        LIMIT("CommandTimeout", command_timeout, 0, false),
        LIMIT("CommandTimeout", command_timeout, 60, true),
        LIMIT("DataTimeout", data_timeout, 86401, false),
        LIMIT("DataTimeout", data_timeout, 90, true),
    };
#undef LIMIT
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &k), 0);
        assert_int_equal(reg_value_set_dword(k, limits[i].name, limits[i].set), 0);
        reg_key_close(k);
        fx->events[0] = 0;
        ims_settings d;
        ims_settings_defaults(&d, fx->dir);
        assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
        uint32_t got, dflt;
        memcpy(&got, (const char *)&s + limits[i].field, sizeof got);
        memcpy(&dflt, (const char *)&d + limits[i].field, sizeof dflt);
        if (limits[i].valid) {
            assert_int_equal(got, limits[i].set);
            assert_int_equal(count_events(fx->events, "4086;"), base_events);
        } else {
            assert_int_equal(got, dflt);
            assert_int_equal(count_events(fx->events, "4086;"), base_events + 1);
        }
        assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &k), 0);
        assert_int_equal(reg_value_delete(k, limits[i].name), 0);
        reg_key_close(k);
    }
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

static void test_host_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int rc;
        const char *host;
        bool literal;
        uint16_t port;
    } cases[] = {
        {"mail.example.com", 0, "mail.example.com", false, 25},
        {"relay.example:2525", 0, "relay.example", false, 2525},
        {"[192.0.2.1]", 0, "192.0.2.1", true, 25},
        {"[192.0.2.1]:587", 0, "192.0.2.1", true, 587},
        {"[IPv6:2001:db8::1]:26", 0, "2001:db8::1", true, 26},
        {"[::1]:2525", 0, "::1", true, 2525},
        {"", -1, NULL, false, 0},
        {"host:", -1, NULL, false, 0},
        {"host:0", -1, NULL, false, 0},
        {"host:65536", -1, NULL, false, 0},
        {"host:25x", -1, NULL, false, 0},
        {"[192.0.2.1", -1, NULL, false, 0},
        {"[not-an-ip]:25", -1, NULL, false, 0},
        {"[192.0.2.1]x", -1, NULL, false, 0},
        {"bad_name!:25", -1, NULL, false, 0},
        {"a..b", -1, NULL, false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[SMTP_DOMAIN_MAX + 1] = "";
        bool literal = false;
        uint16_t port = 0;
        int rc = ims_host_parse(cases[i].text, host, &literal, &port);
        if (rc != cases[i].rc)
            fail_msg("ims_host_parse(\"%s\"): got %d, want %d", cases[i].text, rc, cases[i].rc);
        if (rc)
            continue;
        assert_string_equal(host, cases[i].host);
        assert_int_equal(literal, cases[i].literal);
        assert_int_equal(port, cases[i].port);
    }
}

/* set_route - Parameters\Routing\<domain> with Host = host. */
static void set_route(reg_ctx *reg, const char *domain, const char *host)
{
    char path[512];
    snprintf(path, sizeof path, "HKLM\\%s\\%s", IMS_ROUTING_KEY, domain);
    reg_key *root, *k;
    assert_int_equal(reg_key_open_root(reg, REG_ROOT_HKLM, &root), 0);
    assert_int_equal(reg_key_create(root, path + 5, 0, NULL, &k, NULL), 0);
    assert_int_equal(reg_value_set_sz(k, "Host", REG_SZ, host), 0);
    reg_key_close(k);
    reg_key_close(root);
}

/* set_family - the AddressFamily value of a routing entry. */
static void set_family(reg_ctx *reg, const char *domain, const char *family)
{
    char path[512];
    snprintf(path, sizeof path, "HKLM\\%s\\%s", IMS_ROUTING_KEY, domain);
    reg_key *k;
    assert_int_equal(reg_key_open_path(reg, path, 0, &k), 0);
    assert_int_equal(reg_value_set_sz(k, "AddressFamily", REG_SZ, family), 0);
    reg_key_close(k);
}

/* AddressFamily per routing entry: the most specific entry's, any when none says; a bad
 * value is event 4086 and any. */
static void test_router_family(void **state)
{
    struct fx *fx = *state;
    directory *d;
    assert_int_equal(dir_open(fx->reg, &d), 0);
    set_route(fx->reg, "v4.test", "<dns>");
    set_family(fx->reg, "v4.test", "IPv4");
    set_route(fx->reg, "v6.test", "<dns>");
    set_family(fx->reg, "v6.test", "ipv6");
    set_route(fx->reg, "both.test", "<dns>");
    set_family(fx->reg, "both.test", "ipv5");
    ims_settings s;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;");
    ims_router *r;
    assert_int_equal(ims_router_new(&s, d, &r), 0);
    assert_int_equal(ims_router_family(r, "mx.v4.test"), IMS_DNS_IPV4);
    assert_int_equal(ims_router_family(r, "v6.test"), IMS_DNS_IPV6);
    assert_int_equal(ims_router_family(r, "both.test"), IMS_DNS_ANY);
    assert_int_equal(ims_router_family(r, "other.test"), IMS_DNS_ANY);
    ims_router_free(r);
    dir_close(d);
}

/* set_route_sz - another REG_SZ value of a routing entry. */
static void set_route_sz(reg_ctx *reg, const char *domain, const char *name, const char *v)
{
    char path[512];
    snprintf(path, sizeof path, "HKLM\\%s\\%s", IMS_ROUTING_KEY, domain);
    reg_key *k;
    assert_int_equal(reg_key_open_path(reg, path, 0, &k), 0);
    assert_int_equal(reg_value_set_sz(k, name, REG_SZ, v), 0);
    reg_key_close(k);
}

/* TlsPolicy and TlsCaFile: Parameters' for DNS routes and SmartHost, a routing entry's for its
 * domain and its host (the strictest of several), a bad value event 4086. */
static void test_dest_tls(void **state)
{
    struct fx *fx = *state;
    set_route(fx->reg, "sea.com", "[192.0.2.25]:2525");
    set_route_sz(fx->reg, "sea.com", "TlsPolicy", "Verify");
    set_route_sz(fx->reg, "sea.com", "TlsCaFile", "/etc/sea.pem");
    set_route(fx->reg, "lake.com", "[IPv6:2001:db8::1]:26");
    set_route_sz(fx->reg, "lake.com", "TlsPolicy", "none");
    set_route(fx->reg, "pond.com", "[2001:db8:0::1]:26");
    set_route_sz(fx->reg, "pond.com", "TlsPolicy", "encrypt");
    set_route(fx->reg, "bad.com", "<dns>");
    set_route_sz(fx->reg, "bad.com", "TlsPolicy", "always");
    set_route(fx->reg, "plain.com", "<dns>");
    set_route_sz(fx->reg, "plain.com", "TlsPolicy", "none");
    ims_settings s;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;");     /* bad.com's TlsPolicy */
    assert_int_equal(s.tls_policy, SMTP_TLS_MAY); /* the default */
    ims_dest_tls t;
    ims_settings_dest_tls(&s, IMS_ROUTE_DNS, "example.net", &t);
    assert_int_equal(t.policy, SMTP_TLS_MAY);
    assert_string_equal(t.ca_file, "");
    ims_settings_dest_tls(&s, IMS_ROUTE_DNS, "mx.plain.com", &t);
    assert_int_equal(t.policy, SMTP_TLS_NONE);
    ims_settings_dest_tls(&s, IMS_ROUTE_DNS, "bad.com", &t);
    assert_int_equal(t.policy, SMTP_TLS_MAY);
    ims_settings_dest_tls(&s, IMS_ROUTE_SMARTHOST, "[192.0.2.25]:2525", &t);
    assert_int_equal(t.policy, SMTP_TLS_VERIFY);
    assert_string_equal(t.ca_file, "/etc/sea.pem");
    /* lake.com and pond.com name one host: the stricter policy. */
    ims_settings_dest_tls(&s, IMS_ROUTE_SMARTHOST, "[IPv6:2001:db8::1]:26", &t);
    assert_int_equal(t.policy, SMTP_TLS_ENCRYPT);
    ims_settings_dest_tls(&s, IMS_ROUTE_SMARTHOST, "other.example:25", &t);
    assert_int_equal(t.policy, SMTP_TLS_MAY);
    assert_true(ims_host_same("mx.example", "MX.example:25"));
    assert_false(ims_host_same("mx.example", "mx.example:26"));
    assert_false(ims_host_same("[192.0.2.1]", "192.0.2.1"));
    /* Parameters' TlsPolicy applies where no entry says. */
    reg_key *par;
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &par), 0);
    assert_int_equal(reg_value_set_sz(par, "TlsPolicy", REG_SZ, "encrypt"), 0);
    assert_int_equal(reg_value_set_sz(par, "TlsCaFile", REG_SZ, "/etc/ca.pem"), 0);
    reg_key_close(par);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    ims_settings_dest_tls(&s, IMS_ROUTE_DNS, "example.net", &t);
    assert_int_equal(t.policy, SMTP_TLS_ENCRYPT);
    assert_string_equal(t.ca_file, "/etc/ca.pem");
    ims_settings_dest_tls(&s, IMS_ROUTE_SMARTHOST, "[192.0.2.25]:2525", &t);
    assert_string_equal(t.ca_file, "/etc/sea.pem");
    assert_int_equal(ims_tls_policy_parse("MAY", &t.policy), 0);
    assert_int_equal(ims_tls_policy_parse("", &t.policy), -1);
    assert_string_equal(ims_tls_policy_name(SMTP_TLS_VERIFY), "verify");
}

/* write_creds - the credentials file in fx's root with mode. */
static void write_creds(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* The credentials file: its checks (mode, type, lines), and the lookup by smart host spec,
 * routing domain and DNS domain. */
static void test_creds(void **state)
{
    struct fx *fx = *state;
    char path[128], why[512];
    snprintf(path, sizeof path, "%s/ClientCredentials", fx->dir);
    ims_creds *c = (ims_creds *)1;
    assert_int_equal(ims_creds_load(path, &c, why, sizeof why), ENOENT);
    assert_null(c);
    write_creds(path,
                "# comment\n\n[192.0.2.25]:2525 relay pass with spaces\r\n"
                "  example.net\tnetuser\tnetpass\n"
                "sub.example.net subuser subpass\n"
                "sea.com seauser seapass\n",
                0644);
    assert_int_equal(ims_creds_load(path, &c, why, sizeof why), EPERM);
    assert_non_null(strstr(why, "chmod 600"));
    assert_null(strstr(why, "pass"));
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(ims_creds_load(path, &c, why, sizeof why), 0);
    assert_int_equal(ims_creds_count(c), 4);
    set_route(fx->reg, "sea.com", "relay.sea.com:587");
    ims_settings s;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    const char *u, *p;
    assert_true(ims_creds_find(c, &s, IMS_ROUTE_SMARTHOST, "[192.0.2.25]:2525", &u, &p));
    assert_string_equal(u, "relay");
    assert_string_equal(p, "pass with spaces");
    assert_false(ims_creds_find(c, &s, IMS_ROUTE_SMARTHOST, "[192.0.2.25]:25", &u, &p));
    assert_true(ims_creds_find(c, &s, IMS_ROUTE_SMARTHOST, "RELAY.sea.com:587", &u, &p));
    assert_string_equal(u, "seauser");
    assert_true(ims_creds_find(c, &s, IMS_ROUTE_DNS, "mx.example.net", &u, &p));
    assert_string_equal(u, "netuser");
    assert_true(ims_creds_find(c, &s, IMS_ROUTE_DNS, "a.sub.example.net", &u, &p));
    assert_string_equal(u, "subuser");
    assert_false(ims_creds_find(c, &s, IMS_ROUTE_DNS, "badexample.net", &u, &p));
    assert_false(ims_creds_find(NULL, &s, IMS_ROUTE_DNS, "example.net", &u, &p));
    ims_creds_free(c);
    /* Malformed lines, symbolic links, directories. */
    static const char *const bad[] = {"onlyone\n", "dest user\n", "dest user \n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_creds(path, bad[i], 0600);
        assert_int_equal(ims_creds_load(path, &c, why, sizeof why), EINVAL);
        assert_non_null(strstr(why, "line 1"));
        assert_null(c);
    }
    char link[160];
    snprintf(link, sizeof link, "%s/link", fx->dir);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(ims_creds_load(link, &c, why, sizeof why), EPERM);
    assert_int_equal(ims_creds_load(fx->dir, &c, why, sizeof why), EPERM);
    /* A password over the limit. */
    char big[SMTP_AUTH_FIELD_MAX + 32];
    snprintf(big, sizeof big, "d u %0*d\n", SMTP_AUTH_FIELD_MAX + 1, 0);
    write_creds(path, big, 0600);
    assert_int_equal(ims_creds_load(path, &c, why, sizeof why), EINVAL);
}

/* The router: local mailboxes, postmaster, the routing table (most specific whole-label
 * match), SmartHost and DNS; bad routing entries are events, and skipped. */
static void test_router(void **state)
{
    struct fx *fx = *state;
    directory *d;
    dir_err err;
    assert_int_equal(dir_open(fx->reg, &d), 0);
    assert_int_equal(dir_domain_add(d, "ims.test", &err), 0);
    const char *alice[] = {"alice@ims.test"};
    assert_int_equal(dir_mailbox_add(d, "alice", NULL, alice, 1, NULL, &err), 0);
    set_route(fx->reg, "sea.com", "[192.0.2.25]:2525");
    set_route(fx->reg, "x.sea.com", "<dns>");
    set_route(fx->reg, "branch.ims.test", "<inbound>");
    set_route(fx->reg, "bad.example", "not a host!");
    set_route(fx->reg, "smart.example", "relay.example:26");
    ims_settings s;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;"); /* bad.example's Host */
    assert_int_equal(s.nroutes, 4);
    ims_router *r;
    assert_int_equal(ims_router_new(&s, d, &r), 0);
    ims_route rt;
    /* Local: the mailbox, any case; unknown: ENOENT; postmaster before its mailbox: ENOENT. */
    assert_int_equal(ims_router_route(r, "ALICE@IMS.TEST", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_LOCAL);
    assert_string_equal(rt.alias, "alice");
    char dest[64];
    assert_int_equal(ims_route_dest(&rt, "/s", dest, sizeof dest), 0);
    assert_string_equal(dest, "/s/alice");
    assert_int_equal(ims_route_dest(&rt, "/s", dest, 8), ENAMETOOLONG);
    assert_int_equal(ims_router_route(r, "nobody@ims.test", &rt), ENOENT);
    assert_int_equal(ims_router_route(r, "postmaster@ims.test", &rt), ENOENT);
    assert_int_equal(ims_router_route(r, "alice", &rt), EINVAL);
    const char *pm[] = {"pm@ims.test"};
    assert_int_equal(dir_mailbox_add(d, "postmaster", NULL, pm, 1, NULL, &err), 0);
    static const char *const to_admin[] = {"postmaster@ims.test", "PostMaster",
                                           "postmaster@a.branch.ims.test"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(ims_router_route(r, to_admin[i], &rt), 0);
        assert_int_equal(rt.kind, IMS_ROUTE_LOCAL);
        assert_string_equal(rt.alias, "postmaster");
    }
    assert_true(ims_router_is_local(r, "branch.ims.test"));
    assert_true(ims_router_is_local(r, "deep.branch.ims.test"));
    assert_false(ims_router_is_local(r, "sea.com"));
    /* Remote: the most specific entry, on whole labels; none: DNS (no SmartHost). */
    assert_int_equal(ims_router_route(r, "u@sea.com", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_SMARTHOST);
    assert_string_equal(rt.host, "192.0.2.25");
    assert_true(rt.literal);
    assert_int_equal(rt.port, 2525);
    assert_int_equal(ims_route_dest(&rt, "/s", dest, sizeof dest), 0);
    assert_string_equal(dest, "[192.0.2.25]:2525");
    assert_int_equal(ims_router_route(r, "u@y.x.sea.com", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_DNS);
    assert_string_equal(rt.host, "y.x.sea.com");
    assert_int_equal(ims_route_dest(&rt, "/s", dest, sizeof dest), 0);
    assert_string_equal(dest, "y.x.sea.com");
    assert_int_equal(ims_router_route(r, "u@chelsea.com", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_DNS);
    assert_int_equal(ims_router_route(r, "u@bad.example", &rt), 0); /* its entry was skipped */
    assert_int_equal(rt.kind, IMS_ROUTE_DNS);
    assert_int_equal(ims_router_route(r, "u@mx.smart.example", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_SMARTHOST);
    assert_string_equal(rt.host, "relay.example");
    assert_int_equal(rt.port, 26);
    assert_int_equal(ims_route_dest(&rt, "/s", dest, sizeof dest), 0);
    assert_string_equal(dest, "relay.example:26");
    ims_router_free(r);
    /* SmartHost: every remote domain without an entry; <dns> entries still go to DNS. */
    reg_key *par;
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &par), 0);
    assert_int_equal(reg_value_set_sz(par, "SmartHost", REG_SZ, "[IPv6:::1]:2600"), 0);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_int_equal(ims_router_new(&s, d, &r), 0);
    assert_int_equal(ims_router_route(r, "u@chelsea.com", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_SMARTHOST);
    assert_string_equal(rt.host, "::1");
    assert_int_equal(rt.port, 2600);
    assert_int_equal(ims_route_dest(&rt, "/s", dest, sizeof dest), 0);
    assert_string_equal(dest, "[IPv6:::1]:2600");
    assert_int_equal(ims_router_route(r, "u@x.sea.com", &rt), 0);
    assert_int_equal(rt.kind, IMS_ROUTE_DNS);
    ims_router_free(r);
    /* A SmartHost that is no host spec: event 4086, and DNS; empty is DNS, silently. */
    fx->events[0] = 0;
    assert_int_equal(reg_value_set_sz(par, "SmartHost", REG_SZ, "[oops"), 0);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;");
    assert_string_equal(s.smart_host, "");
    fx->events[0] = 0;
    assert_int_equal(reg_value_set_sz(par, "SmartHost", REG_SZ, ""), 0);
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;"); /* bad.example only */
    assert_string_equal(s.smart_host, "");
    reg_key_close(par);
    dir_close(d);
}

/* The scheduler against a plain model: random adds, moves, removals and pops (fixed seed),
 * and after each step the earliest node is the model's; ties come out in order of adding. */
struct sitem {
    ims_sched_node node;
    int id;
    bool in;
    uint64_t due;
    uint64_t order; /* when it was last added */
};

static struct sitem *model_first(struct sitem *v, size_t n)
{
    struct sitem *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (v[i].in &&
            (!best || v[i].due < best->due || (v[i].due == best->due && v[i].order < best->order)))
            best = &v[i];
    return best;
}

static void test_sched(void **state)
{
    (void)state;
    ims_sched s;
    ims_sched_init(&s);
    uint64_t due;
    assert_false(ims_sched_next(&s, &due));
    assert_null(ims_sched_pop_due(&s, UINT64_MAX));
    /* The plain cases: order, ties, not yet due, moving, removing. */
    struct sitem a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    assert_int_equal(ims_sched_add(&s, &a.node, 300), 0);
    assert_int_equal(ims_sched_add(&s, &b.node, 100), 0);
    assert_int_equal(ims_sched_add(&s, &c.node, 100), 0);
    assert_true(ims_sched_next(&s, &due));
    assert_int_equal(due, 100);
    assert_null(ims_sched_pop_due(&s, 99));
    assert_ptr_equal(ims_sched_pop_due(&s, 100), &b.node); /* b before c: added first */
    assert_int_equal(ims_sched_add(&s, &a.node, 50), 0);   /* moved ahead */
    assert_int_equal(ims_sched_count(&s), 2);
    assert_ptr_equal(ims_sched_pop_due(&s, 1000), &a.node);
    ims_sched_remove(&s, &c.node);
    ims_sched_remove(&s, &c.node); /* twice: nothing */
    assert_int_equal(ims_sched_count(&s), 0);
    assert_int_equal(c.node.slot, 0);
    /* Against the model. */
    enum { N = 200, STEPS = 20000 };
    static struct sitem v[N];
    memset(v, 0, sizeof v);
    uint64_t order = 0, now = 0;
    unsigned seed = 12345;
    for (int step = 0; step < STEPS; step++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 8) % 100;
        struct sitem *it = &v[(seed >> 16) % N];
        it->id = (int)(it - v);
        if (r < 50) { /* add or move */
            it->due = now + ((seed >> 4) % 64);
            it->order = order++;
            it->in = true;
            assert_int_equal(ims_sched_add(&s, &it->node, it->due), 0);
        } else if (r < 65) {
            ims_sched_remove(&s, &it->node);
            it->in = false;
        } else { /* time passes; take what is due */
            now += (seed >> 3) % 8;
            ims_sched_node *got;
            while ((got = ims_sched_pop_due(&s, now))) {
                struct sitem *want = model_first(v, N);
                assert_non_null(want);
                assert_true(want->due <= now);
                if ((struct sitem *)got != want)
                    fail_msg("step %d: popped %d (due %llu), want %d (due %llu)", step,
                             ((struct sitem *)got)->id, (unsigned long long)got->due, want->id,
                             (unsigned long long)want->due);
                want->in = false;
            }
            struct sitem *first = model_first(v, N);
            assert_true(!first || first->due > now);
        }
        size_t in = 0;
        for (size_t i = 0; i < N; i++)
            in += v[i].in;
        assert_int_equal(ims_sched_count(&s), in);
        struct sitem *first = model_first(v, N);
        if (first) {
            assert_true(ims_sched_next(&s, &due));
            assert_int_equal(due, first->due);
        }
    }
    ims_sched_fini(&s);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(v[i].node.slot, 0);
}

/* The Parameters table of docs/ims.md and the settings table agree: every value is documented,
 * every documented value exists, and each REG_DWORD's documented default is the real one. */
/* The server's TLS and AUTH values: a relative certificate path, an out-of-range flag and a
 * listener of an unknown kind are each event 4086 and their default; the good ones are taken,
 * listener kinds included. */
static void test_settings_tls(void **state)
{
    struct fx *fx = *state;
    ims_settings s;
    reg_key *k;
    assert_int_equal(ims_install(fx->reg, "/usr/bin/imsd", "mail", NULL, 0, NULL), ERROR_SUCCESS);
    assert_int_equal(reg_key_open_path(fx->reg, "HKLM\\" IMS_PARAMETERS_KEY, 0, &k), 0);
    assert_int_equal(reg_value_set_sz(k, "TlsCertificateFile", REG_SZ, "certs/mail.pem"), 0);
    assert_int_equal(reg_value_set_sz(k, "TlsKeyFile", REG_SZ, "/etc/ssl/private/mail.key"), 0);
    assert_int_equal(reg_value_set_dword(k, "AllowAuthWithoutTls", 2), 0);
    assert_int_equal(reg_value_set_dword(k, "ClientSubmitMatchAccount", 1), 0);
    const char *listen[] = {"127.0.0.1:2525", "127.0.0.1:2587 submission", "127.0.0.1:2465 smtps",
                            "127.0.0.1:2526 lmtp"};
    assert_int_equal(reg_value_set_multi_sz(k, "ListenAddresses", listen, 4), 0);
    reg_key_close(k);
    fx->events[0] = 0;
    assert_int_equal(ims_settings_load(fx->reg, &fx->log, &s), IMS_OK);
    assert_string_equal(fx->events, "4086;4086;4086;");
    assert_string_equal(s.tls_certificate_file, "");
    assert_string_equal(s.tls_key_file, "/etc/ssl/private/mail.key");
    assert_int_equal(s.allow_auth_without_tls, 0);
    assert_int_equal(s.client_submit_match_account, 1);
    assert_int_equal(s.disable_auth, 0);
    assert_int_equal(s.nlisten, 3);
    assert_int_equal(s.listen[0].kind, IMS_LISTEN_SMTP);
    assert_int_equal(s.listen[1].kind, IMS_LISTEN_SUBMISSION);
    assert_int_equal(s.listen[2].kind, IMS_LISTEN_SUBMISSIONS);
}

static void test_settings_documented(void **state)
{
    (void)state;
    buf doc = BUF_INIT;
    assert_int_equal(base_read_file("docs/ims.md", 1 << 20, &doc), 0);
    assert_non_null(buf_cstr(&doc));
    const char *text = (const char *)doc.data;
    const char *sec = strstr(text, "\n### Parameters\n");
    assert_non_null(sec);
    const char *end = strstr(sec + 1, "\n### ");
    size_t n;
    const ims_setting *t = ims_settings_table(&n);
    bool seen[64] = {false};
    assert_true(n <= 64);
    /* Each row: "| `Name` | TYPE | default | ..." (several names may share a row). */
    for (const char *line = sec; line && (!end || line < end); line = strchr(line + 1, '\n')) {
        if (strncmp(line, "\n| `", 4))
            continue;
        const char *cell_end = strchr(line + 3, '|');
        assert_non_null(cell_end);
        const char *type = cell_end + 1;
        const char *dflt = strchr(type, '|') + 1;
        for (const char *p = line + 3; (p = memchr(p, '`', (size_t)(cell_end - p)));) {
            const char *q = memchr(p + 1, '`', (size_t)(cell_end - p - 1));
            assert_non_null(q);
            size_t i;
            for (i = 0; i < n; i++)
                if (strlen(t[i].name) == (size_t)(q - p - 1) &&
                    !strncmp(t[i].name, p + 1, q - p - 1))
                    break;
            if (i == n)
                fail_msg("docs/ims.md documents %.*s, which is not a setting", (int)(q - p - 1),
                         p + 1);
            seen[i] = true;
            if (t[i].kind == IMS_SETTING_DWORD) {
                assert_int_equal(strncmp(type, " REG_DWORD ", 11), 0);
                char *num_end;
                unsigned long v = strtoul(dflt, &num_end, 0);
                if (num_end == dflt || v != t[i].dflt)
                    fail_msg("docs/ims.md gives %s the default \"%.12s\", the code %u", t[i].name,
                             dflt, t[i].dflt);
            }
            p = q + 1;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!seen[i])
            fail_msg("%s is not in docs/ims.md's Parameters table", t[i].name);
    buf_free(&doc);
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

    /* tmp/ leftovers: over 36 hours unread and unwritten go, in mailboxes and folders. */
    static const char *const tmps[] = {"alice/tmp/old", "alice/tmp/new", "alice/.MTS-IN/tmp/old",
                                       "alice/.MTS-IN/tmp/new"};
    time_t now = time(NULL);
    for (size_t i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, tmps[i]);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "half", 4), 4);
        close(fd);
        time_t t = strstr(tmps[i], "old") ? now - STORE_TMP_MAX_AGE - 60 : now - 3600;
        struct timespec ts[2] = {{.tv_sec = t}, {.tv_sec = t}};
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    }
    size_t removed = 99;
    assert_int_equal(store_tmp_clean(st, now, &removed), 0);
    assert_int_equal(removed, 2);
    for (size_t i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, tmps[i]);
        assert_int_equal(access(p, F_OK) == 0, strstr(tmps[i], "new") != NULL);
    }
    assert_int_equal(store_tmp_clean(st, now, NULL), 0);
    store_close(st);
}

/* --- the SMTP protocol log ------------------------------------------------------------ */

/* read_log - the file's text (empty when missing). */
static void read_log(const char *dir, const char *name, char *out, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    out[0] = 0;
    FILE *f = fopen(p, "r");
    if (!f)
        return;
    size_t got = fread(out, 1, n - 1, f);
    out[got] = 0;
    fclose(f);
}

/* count_marks - how many records carry mark (the third tab-separated field). */
static int count_marks(const char *text, char mark)
{
    int n = 0;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *t1 = strchr(l, '\t');
        const char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (t2 && t2[1] == mark && t2[2] == '\t')
            n++;
    }
    return n;
}

#define LIT(s) s, sizeof s - 1 /* a string literal and its length */

static void test_protolog(void **state)
{
    struct fx *fx = *state;
    char dir[128], text[8192];
    snprintf(dir, sizeof dir, "%s/Log", fx->dir);
    assert_int_equal(mkdir(dir, 0750), 0);
    ims_protolog *pl;
    /* None: no log at all, and every call takes NULL. */
    assert_int_equal(ims_protolog_open(dir, IMS_LEVEL_NONE, &pl), 0);
    assert_null(pl);
    ims_protolog_conn *c;
    assert_int_equal(ims_protolog_begin(NULL, 1, "a", "b", &c), 0);
    assert_null(c);
    ims_protolog_command(NULL, LIT("x"));
    ims_protolog_end(NULL, "x");

    /* Medium: commands and replies, no content; a reply split across calls and several
     * lines in one call; control characters cannot make a line. */
    assert_int_equal(ims_protolog_open(dir, IMS_LEVEL_MEDIUM, &pl), 0);
    assert_non_null(pl);
    ims_protolog_conn *a, *b;
    assert_int_equal(ims_protolog_begin(pl, 7, "192.0.2.1:4711", "127.0.0.1:25", &a), 0);
    assert_int_equal(ims_protolog_begin(pl, 8, "192.0.2.2:4712", "127.0.0.1:25", &b), 0);
    ims_protolog_command(a, LIT("EHLO x\rforged\n"));
    ims_protolog_reply(a, LIT("250-one\r\n250 t"));
    ims_protolog_reply(a, LIT("wo\r\n"));
    ims_protolog_content(a, LIT("body\r\n"));
    ims_protolog_end(a, "done");
    read_log(dir, "L0000001.LOG", text, sizeof text);
    assert_non_null(strstr(text, "\t7\t+\tConnection from 192.0.2.1:4711 to 127.0.0.1:25\n"));
    assert_non_null(strstr(text, "\t7\t<\tEHLO x?forged?\n"));
    assert_non_null(strstr(text, "\t7\t>\t250-one\n"));
    assert_non_null(strstr(text, "\t7\t>\t250 two\n"));
    assert_null(strstr(text, "body"));
    assert_non_null(strstr(text, "\t7\t-\tdone\n"));
    assert_int_equal(count_marks(text, '<'), 1);
    assert_int_equal(count_marks(text, '>'), 2);
    /* b holds L0000002; a's number is free again and goes to the next connection. */
    ims_protolog_conn *c3;
    assert_int_equal(ims_protolog_begin(pl, 9, "192.0.2.3:1", "127.0.0.1:25", &c3), 0);
    ims_protolog_end(c3, "third");
    ims_protolog_end(b, "second");
    read_log(dir, "L0000001.LOG", text, sizeof text);
    assert_int_equal(count_marks(text, '+'), 2);
    assert_non_null(strstr(text, "\t9\t-\tthird\n"));
    read_log(dir, "L0000002.LOG", text, sizeof text);
    assert_int_equal(count_marks(text, '+'), 1);
    assert_non_null(strstr(text, "\t8\t-\tsecond\n"));
    ims_protolog_close(pl);

    /* Maximum: content too; Minimum: only the + and - records. */
    assert_int_equal(ims_protolog_open(dir, IMS_LEVEL_MAXIMUM, &pl), 0);
    assert_int_equal(ims_protolog_begin(pl, 10, "p", "l", &c), 0);
    ims_protolog_content(c, LIT("Subject: hi\r\n\r\nbo"));
    ims_protolog_content(c, LIT("dy\r\nunfinished"));
    ims_protolog_end(c, "max");
    ims_protolog_close(pl);
    read_log(dir, "L0000001.LOG", text, sizeof text);
    assert_non_null(strstr(text, "\t10\tD\tSubject: hi\n"));
    assert_non_null(strstr(text, "\t10\tD\tbody\n"));
    assert_non_null(strstr(text, "\t10\tD\tunfinished\n"));
    assert_int_equal(ims_protolog_open(dir, IMS_LEVEL_MINIMUM, &pl), 0);
    assert_int_equal(ims_protolog_begin(pl, 11, "p", "l", &c), 0);
    ims_protolog_command(c, LIT("QUIT"));
    ims_protolog_reply(c, LIT("221 bye\r\n"));
    ims_protolog_content(c, LIT("x\r\n"));
    ims_protolog_end(c, "min");
    read_log(dir, "L0000001.LOG", text, sizeof text);
    assert_null(strstr(text, "QUIT"));
    assert_null(strstr(text, "221 bye"));
    assert_non_null(strstr(text, "\t11\t-\tmin\n"));

    /* A file past IMS_PROTOLOG_FILE_MAX becomes L0000001.OLD when a connection takes it. */
    char p[256], old[256];
    snprintf(p, sizeof p, "%s/L0000001.LOG", dir);
    snprintf(old, sizeof old, "%s/L0000001.OLD", dir);
    assert_int_equal(truncate(p, IMS_PROTOLOG_FILE_MAX), 0);
    assert_int_equal(ims_protolog_begin(pl, 12, "p", "l", &c), 0);
    ims_protolog_end(c, "fresh");
    struct stat st;
    assert_int_equal(stat(old, &st), 0);
    assert_int_equal((uint64_t)st.st_size, IMS_PROTOLOG_FILE_MAX);
    read_log(dir, "L0000001.LOG", text, sizeof text);
    assert_int_equal(count_marks(text, '+'), 1);
    assert_non_null(strstr(text, "\t12\t-\tfresh\n"));
    /* A folder that cannot be written: an error, and the number is not lost. */
    ims_protolog_close(pl);
    char missing[160];
    snprintf(missing, sizeof missing, "%s/nowhere", fx->dir);
    assert_int_equal(ims_protolog_open(missing, IMS_LEVEL_MINIMUM, &pl), 0);
    assert_int_equal(ims_protolog_begin(pl, 13, "p", "l", &c), ENOENT);
    assert_null(c);
    ims_protolog_close(pl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listen_parse),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings_tls, setup, teardown),
        cmocka_unit_test(test_settings_documented),
        cmocka_unit_test(test_host_parse),
        cmocka_unit_test(test_sched),
        cmocka_unit_test_setup_teardown(test_router, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_family, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dest_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_creds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_start_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_service_failed_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protolog, setup, teardown),
    };
    return cmocka_run_group_tests_name("ims", tests, NULL, NULL);
}
