/* settings.c - the service's settings: HKLM\System\CurrentControlSet\Services\MSExchangeIMC,
 * its Parameters and Diagnostics subkeys, each value with its documented default; and the
 * install and uninstall of that key. */
#include "ims/ims.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "smtp/smtp.h"

/* host_names - the short host name, upper-cased or not, and the domain (or the name). */
static void host_names(char *shortname, size_t n, char *domain, size_t dn)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1))
        strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    const char *dot = strchr(host, '.');
    snprintf(shortname, n, "%.*s", dot ? (int)(dot - host) : (int)strlen(host), host);
    snprintf(domain, dn, "%s", dot && dot[1] ? dot + 1 : host);
}

void ims_settings_fqdn(const ims_settings *s, char *out, size_t n)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1))
        strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    if (!strchr(host, '.') && strchr(s->site_domain, '.'))
        snprintf(out, n, "%s.%s", host, s->site_domain);
    else
        snprintf(out, n, "%s", host);
}

/* --- the table ----------------------------------------------------------------------- */

#define DWORD(name, field, dflt, min, max)                                                         \
    {                                                                                              \
        name, IMS_SETTING_DWORD, offsetof(ims_settings, field), 0, dflt, min, max, NULL            \
    }
#define STRING(name, field, valid)                                                                 \
    {                                                                                              \
        name, IMS_SETTING_STRING, offsetof(ims_settings, field), sizeof((ims_settings *)0)->field, \
            0, 0, 0, valid                                                                         \
    }
/* A string that may be empty (nothing configured). */
#define STRING_OPT(name, field, valid)                                                             \
    {                                                                                              \
        name, IMS_SETTING_STRING, offsetof(ims_settings, field), sizeof((ims_settings *)0)->field, \
            0, 0, 0, valid, true                                                                   \
    }
#define LINES(name, field, count, max, valid)                                                      \
    {                                                                                              \
        name, IMS_SETTING_LINES, offsetof(ims_settings, field), offsetof(ims_settings, count), 0,  \
            0, max, valid                                                                          \
    }

static bool alias_valid(const char *text)
{
    return dir_alias_valid(text);
}

/* host_valid - a host spec, or a routing entry's <inbound> / <dns>. */
static bool host_valid(const char *text)
{
    char host[SMTP_DOMAIN_MAX + 1];
    bool literal;
    uint16_t port;
    return ims_host_parse(text, host, &literal, &port) == 0;
}

/* retry_valid - RetryInterval's text (ims_retry_parse). */
static bool retry_valid(const char *text)
{
    uint64_t ms[IMS_RETRY_MAX];
    size_t n;
    return ims_retry_parse(text, ms, &n) == 0;
}

/* tls_policy_valid - a TlsPolicy value. */
static bool tls_policy_valid(const char *text)
{
    smtp_tls_policy p;
    return ims_tls_policy_parse(text, &p) == 0;
}

/* path_valid - a file named by its absolute path (the service reads it after chdir("/")). */
static bool path_valid(const char *text)
{
    return text[0] == '/';
}

/* dns_server_valid - a DnsServers line (ims_dns_server_parse). */
static bool dns_server_valid(const char *text)
{
    char canon[IMS_RELAY_LINE_MAX];
    return ims_dns_server_parse(text, canon, sizeof canon) == 0;
}

/* metrics_valid - MetricsAddress (ims_metrics_address_parse). */
static bool metrics_valid(const char *text)
{
    ims_listen l;
    return ims_metrics_address_parse(text, &l) == 0;
}

static const ims_setting settings_table[] = {
    STRING("RootDir", root_dir, NULL),
    {"ListenAddresses", IMS_SETTING_LISTEN, offsetof(ims_settings, listen), 0, 0, 0, 0, NULL},
    STRING("SiteDN", site_dn, NULL),
    STRING("CommonName", common_name, NULL),
    STRING("HomeDSA", home_dsa, NULL),
    STRING("SiteDomain", site_domain, NULL),
    STRING("AdministratorMailbox", administrator_mailbox, alias_valid),
    STRING_OPT("SmartHost", smart_host, host_valid),
    DWORD("DisplayErrsOnConsole", display_errs_on_console, 0, 0, 0xffffffff),
    DWORD("ConsoleStatFrequency", console_stat_frequency, 14, 1, 86400),
    DWORD("InboundSizeLimit", inbound_size_limit, 0, 0, 0xffffffff),
    DWORD("OutboundSizeLimit", outbound_size_limit, 0, 0, 0xffffffff),
    DWORD("MaxRecipients", max_recipients, 0, 0, 0xffffffff),
    DWORD("AdvertiseSMTPExtensions", advertise_smtp_extensions, 1, 0, 1),
    DWORD("DiskSpaceLowWaterMark", disk_space_low_water_mark, 0x00A00000, 0, 0xffffffff),
    DWORD("ShutdownTimeout", shutdown_timeout, 30, 0, 3600),
    DWORD("SyncPerFile", sync_per_file, 0, 0, 1),
    DWORD("RelayFlags", relay_flags, 0, 0, 15),
    DWORD("TransferMode", transfer_mode, IMS_TRANSFER_INOUT, IMS_TRANSFER_INOUT, IMS_TRANSFER_NONE),
    DWORD("MaxInboundConnections", max_inbound_connections, IMS_DEFAULT_MAX_INBOUND, 0,
          IMS_MAX_INBOUND_LIMIT),
    DWORD("InboundRecipientLimit", inbound_recipient_limit, IMS_DEFAULT_RCPT_LIMIT, SMTP_RCPT_MIN,
          SMTP_RCPT_LIMIT),
    DWORD("MaxLineLength", max_line_length, IMS_DEFAULT_LINE_LENGTH, SMTP_LINE_MIN,
          SMTP_LINE_LIMIT),
    DWORD("MaxErrorsPerSession", max_errors_per_session, IMS_DEFAULT_ERRORS, SMTP_ERRORS_MIN,
          SMTP_ERRORS_LIMIT),
    DWORD("CommandTimeout", command_timeout, IMS_DEFAULT_TIMEOUT, 1, IMS_TIMEOUT_LIMIT),
    DWORD("DataTimeout", data_timeout, IMS_DEFAULT_TIMEOUT, 1, IMS_TIMEOUT_LIMIT),
    DWORD("DataPhaseTimeout", data_phase_timeout, IMS_DEFAULT_DATA_PHASE_TIMEOUT, 0,
          IMS_TIMEOUT_LIMIT),
    DWORD("SessionTimeout", session_timeout, IMS_DEFAULT_SESSION_TIMEOUT, 0, IMS_TIMEOUT_LIMIT),
    DWORD("MaxConnectionsPerClient", client_conns, IMS_DEFAULT_CLIENT_CONNS, 0,
          IMS_MAX_INBOUND_LIMIT),
    DWORD("MaxConnectionRatePerClient", client_conn_rate, IMS_DEFAULT_CLIENT_CONN_RATE, 0,
          IMS_CLIENT_RATE_LIMIT),
    DWORD("MaxMessageRatePerClient", client_msg_rate, IMS_DEFAULT_CLIENT_MSG_RATE, 0,
          IMS_CLIENT_RATE_LIMIT),
    DWORD("MaxRecipientRatePerClient", client_rcpt_rate, IMS_DEFAULT_CLIENT_RCPT_RATE, 0,
          IMS_CLIENT_RATE_LIMIT),
    DWORD("MaxAuthFailuresPerClient", client_auth_failures, IMS_DEFAULT_CLIENT_AUTH_FAILURES, 0,
          IMS_CLIENT_RATE_LIMIT),
    DWORD("ClientLimitsExemptAllowList", client_limits_exempt, 0, 0, 1),
    DWORD("StressThreshold", stress_threshold, IMS_DEFAULT_STRESS_THRESHOLD, 0, 100),
    DWORD("StressTimeout", stress_timeout, IMS_DEFAULT_STRESS_TIMEOUT, 1, IMS_TIMEOUT_LIMIT),
    LINES("RelayAllowList", relay_allow, nrelay_allow, IMS_MAX_RELAY_LINES, NULL),
    LINES("RelayDenyList", relay_deny, nrelay_deny, IMS_MAX_RELAY_LINES, NULL),
    LINES("RelayLocalIPList", relay_local, nrelay_local, IMS_MAX_RELAY_LINES, NULL),
    /* The outbound side. */
    STRING("RetryInterval", retry_interval, retry_valid),
    DWORD("MessageTimeoutUrgent", message_timeout_urgent, IMS_DEFAULT_TIMEOUT_URGENT, 1,
          IMS_MESSAGE_TIMEOUT_MAX),
    DWORD("MessageTimeoutNormal", message_timeout_normal, IMS_DEFAULT_TIMEOUT_NORMAL, 1,
          IMS_MESSAGE_TIMEOUT_MAX),
    DWORD("MessageTimeoutNonUrgent", message_timeout_nonurgent, IMS_DEFAULT_TIMEOUT_NONURGENT, 1,
          IMS_MESSAGE_TIMEOUT_MAX),
    DWORD("DelayNotification", delay_notification, IMS_DEFAULT_DELAY_NOTIFICATION, 0,
          IMS_MESSAGE_TIMEOUT_MAX),
    DWORD("MaxOutboundConnections", max_outbound_connections, IMS_DEFAULT_MAX_OUTBOUND, 1,
          IMS_MAX_OUTBOUND_LIMIT),
    DWORD("MaxConnectionsPerHost", max_connections_per_host, IMS_DEFAULT_PER_HOST, 1,
          IMS_MAX_OUTBOUND_LIMIT),
    DWORD("MaxMessagesPerConnection", max_messages_per_connection, IMS_DEFAULT_MESSAGES_PER_CONN, 0,
          IMS_MESSAGES_PER_CONN_LIMIT),
    DWORD("DisableLoopbackConnections", disable_loopback_connections, 1, 0, 1),
    DWORD("OutboundPort", outbound_port, 25, 1, 65535),
    DWORD("AdminNdrCopy", admin_ndr_copy, 0, 0, 1),
    LINES("DnsServers", dns_servers, ndns_servers, IMS_DNS_MAX_SERVERS, dns_server_valid),
    /* Outbound TLS and AUTH. */
    STRING("TlsPolicy", tls_policy_text, tls_policy_valid),
    STRING_OPT("TlsCaFile", tls_ca_file, NULL),
    STRING("ClientCredentialsFile", client_credentials_file, NULL),
    /* Server TLS and AUTH. */
    STRING_OPT("TlsCertificateFile", tls_certificate_file, path_valid),
    STRING_OPT("TlsKeyFile", tls_key_file, path_valid),
    DWORD("AllowAuthWithoutTls", allow_auth_without_tls, 0, 0, 1),
    DWORD("DisableAuth", disable_auth, 0, 0, 1),
    DWORD("ClientSubmitHomedOnly", client_submit_homed_only, 0, 0, 1),
    DWORD("ClientSubmitMatchAccount", client_submit_match_account, 0, 0, 1),
    /* Operating the gateway. */
    STRING_OPT("MetricsAddress", metrics_address, metrics_valid),
};

static const char *const tls_policy_names[] = {
    [SMTP_TLS_NONE] = "none",
    [SMTP_TLS_MAY] = "may",
    [SMTP_TLS_ENCRYPT] = "encrypt",
    [SMTP_TLS_VERIFY] = "verify",
};

int ims_tls_policy_parse(const char *text, smtp_tls_policy *out)
{
    for (size_t i = 0; i < sizeof tls_policy_names / sizeof tls_policy_names[0]; i++)
        if (!strcasecmp(text, tls_policy_names[i])) {
            *out = (smtp_tls_policy)i;
            return 0;
        }
    return -1;
}

const char *ims_tls_policy_name(smtp_tls_policy p)
{
    return (unsigned)p <= SMTP_TLS_VERIFY ? tls_policy_names[p] : "?";
}

const ims_setting *ims_settings_table(size_t *n)
{
    *n = sizeof settings_table / sizeof settings_table[0];
    return settings_table;
}

void ims_settings_defaults(ims_settings *s, const char *root)
{
    memset(s, 0, sizeof *s);
    snprintf(s->root_dir, sizeof s->root_dir, "%s/imcdata", root);
    ims_listen_parse(IMS_DEFAULT_LISTEN, &s->listen[0]);
    s->nlisten = 1;
    struct passwd *pw = getpwuid(geteuid());
    snprintf(s->account, sizeof s->account, "%s", pw ? pw->pw_name : "");
    char shortname[64], domain[256], upper[64];
    host_names(shortname, sizeof shortname, domain, sizeof domain);
    for (size_t i = 0; i < sizeof upper; i++)
        if (!(upper[i] = (char)toupper((unsigned char)shortname[i])))
            break;
    snprintf(s->site_dn, sizeof s->site_dn, "/o=IMS/ou=%s", shortname);
    snprintf(s->common_name, sizeof s->common_name, "Internet Mail Service (%s)", upper);
    snprintf(s->home_dsa, sizeof s->home_dsa, "%s", shortname);
    snprintf(s->site_domain, sizeof s->site_domain, "%s", domain);
    snprintf(s->administrator_mailbox, sizeof s->administrator_mailbox, "%s",
             IMS_DEFAULT_ADMIN_MAILBOX);
    snprintf(s->retry_interval, sizeof s->retry_interval, "%s", IMS_DEFAULT_RETRY);
    ims_retry_parse(s->retry_interval, s->retry_ms, &s->nretry);
    snprintf(s->tls_policy_text, sizeof s->tls_policy_text, "%s", IMS_DEFAULT_TLS_POLICY);
    s->tls_policy = SMTP_TLS_MAY;
    snprintf(s->client_credentials_file, sizeof s->client_credentials_file, "%s/%s", root,
             IMS_CREDS_NAME);
    size_t n;
    const ims_setting *t = ims_settings_table(&n);
    for (size_t i = 0; i < n; i++)
        if (t[i].kind == IMS_SETTING_DWORD)
            *(uint32_t *)((char *)s + t[i].field) = t[i].dflt;
}

static const char *const listen_kind_names[] = {
    [IMS_LISTEN_SMTP] = "smtp",
    [IMS_LISTEN_SUBMISSION] = "submission",
    [IMS_LISTEN_SUBMISSIONS] = "submissions",
};

const char *ims_listen_kind_name(ims_listen_kind k)
{
    return (unsigned)k <= IMS_LISTEN_SUBMISSIONS ? listen_kind_names[k] : "?";
}

/* listen_kind_parse - the word after the address ("" is smtp). Returns 0 or -1. */
static int listen_kind_parse(const char *word, uint8_t *out)
{
    if (!*word) {
        *out = IMS_LISTEN_SMTP;
        return 0;
    }
    for (size_t i = 0; i < sizeof listen_kind_names / sizeof listen_kind_names[0]; i++)
        if (!strcasecmp(word, listen_kind_names[i])) {
            *out = (uint8_t)i;
            return 0;
        }
    if (!strcasecmp(word, "smtps")) { /* the name port 465 had before RFC 8314 */
        *out = IMS_LISTEN_SUBMISSIONS;
        return 0;
    }
    return -1;
}

bool ims_listen_loopback(const ims_listen *l)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, l->host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, l->host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}

int ims_metrics_address_parse(const char *text, ims_listen *out)
{
    /* A listener's syntax without the kind word: an endpoint that speaks HTTP, not SMTP. */
    if (!text[0] || strpbrk(text, " \t"))
        return -1;
    return ims_listen_parse(text, out);
}

int ims_listen_parse(const char *line, ims_listen *out)
{
    /* "address:port kind": the kind is cut off first, then the address parsed alone. */
    char text[sizeof out->host + 32];
    size_t alen = strcspn(line, " \t");
    if (alen >= sizeof text)
        return -1;
    memcpy(text, line, alen);
    text[alen] = 0;
    const char *word = line + alen + strspn(line + alen, " \t");
    size_t wlen = strcspn(word, " \t");
    if (word[wlen + strspn(word + wlen, " \t")])
        return -1; /* a third word */
    char kindword[16];
    if (wlen >= sizeof kindword)
        return -1;
    memcpy(kindword, word, wlen);
    kindword[wlen] = 0;
    uint8_t kind;
    if (listen_kind_parse(kindword, &kind))
        return -1;
    char host[sizeof out->host];
    const char *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof host)
            return -1;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = 0;
        port = close + 2;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -1;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof host)
            return -1;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = 0;
        port = colon + 1;
        struct in_addr a4;
        if (inet_pton(AF_INET, host, &a4) != 1)
            return -1;
    }
    char *end;
    if (!*port || !isdigit((unsigned char)*port))
        return -1;
    unsigned long p = strtoul(port, &end, 10);
    if (*end || p == 0 || p > 65535)
        return -1;
    snprintf(out->host, sizeof out->host, "%s", host);
    out->port = (uint16_t)p;
    out->kind = kind;
    return 0;
}

/* --- DnsServers ---------------------------------------------------------------------- */

#define DNS_PORT 53

/* parse_port - "1" to "65535", digits only. Returns 0 or -1. */
static int parse_port(const char *p, uint16_t *out)
{
    unsigned long v = 0;
    if (!*p)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || (v = v * 10 + (unsigned long)(*p - '0')) > 65535)
            return -1;
    }
    if (v == 0)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int ims_dns_server_parse(const char *text, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN], canon[INET6_ADDRSTRLEN];
    uint16_t port = 0;
    bool v6;
    size_t len = strnlen(text, IMS_RELAY_LINE_MAX);
    if (len == IMS_RELAY_LINE_MAX)
        return -1;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || (size_t)(close - text - 1) >= sizeof host ||
            (close[1] && (close[1] != ':' || parse_port(close + 2, &port))))
            return -1;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = 0;
        v6 = true;
    } else {
        const char *colon = strchr(text, ':');
        v6 = colon && strchr(colon + 1, ':'); /* two colons: a bare IPv6 address */
        size_t hl = colon && !v6 ? (size_t)(colon - text) : len;
        if (hl >= sizeof host || (colon && !v6 && parse_port(colon + 1, &port)))
            return -1;
        memcpy(host, text, hl);
        host[hl] = 0;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    int af = v6 ? AF_INET6 : AF_INET;
    if (inet_pton(af, host, addr) != 1 || !inet_ntop(af, addr, canon, sizeof canon))
        return -1;
    int w = v6     ? snprintf(out, n, "[%s]:%u", canon, port ? port : DNS_PORT)
            : port ? snprintf(out, n, "%s:%u", canon, port)
                   : snprintf(out, n, "%s", canon);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

int ims_dns_servers_join(const ims_settings *s, char *out, size_t n)
{
    size_t used = 0, cap = n < IMS_DNS_SERVERS_MAX + 1 ? n : IMS_DNS_SERVERS_MAX + 1;
    if (n)
        out[0] = 0;
    for (size_t i = 0; i < s->ndns_servers; i++) {
        char one[IMS_RELAY_LINE_MAX];
        if (ims_dns_server_parse(s->dns_servers[i], one, sizeof one)) {
            if (n)
                out[0] = 0;
            return EINVAL;
        }
        size_t len = strlen(one) + (i ? 1 : 0);
        if (used + len >= cap) {
            if (n)
                out[0] = 0;
            return ENOSPC;
        }
        snprintf(out + used, cap - used, "%s%s", i ? "," : "", one);
        used += len;
    }
    return 0;
}

/* --- loading ------------------------------------------------------------------------- */

static void invalid(ims_log *log, const char *key, const char *name, const char *why,
                    const char *dflt)
{
    ims_log_event(log, IMS_EV_SETTING_INVALID, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                  "The registry value %s of HKLM\\%s is not valid (%s); the default %s is used",
                  name, key, why, dflt);
}

static void load_string(reg_key *k, const char *key, const char *name, char *out, size_t n,
                        bool empty_ok, ims_log *log)
{
    uint32_t type;
    if (reg_value_get(k, name, &type, NULL))
        return;
    buf b = BUF_INIT;
    if (type != REG_SZ && type != REG_EXPAND_SZ)
        invalid(log, key, name, "not a string", out);
    else if (reg_value_get_sz(k, name, &b) == ERROR_SUCCESS && b.len == 0 && empty_ok)
        out[0] = 0;
    else if (reg_value_get_sz(k, name, &b) || b.len == 0 || b.len >= n)
        invalid(log, key, name, b.len ? "too long" : "empty", out);
    else
        memcpy(out, b.data, b.len + 1);
    buf_free(&b);
}

static void load_dword(reg_key *k, const char *key, const char *name, uint32_t *out, uint32_t min,
                       uint32_t max, ims_log *log)
{
    uint32_t type, v;
    if (reg_value_get(k, name, &type, NULL))
        return;
    char dflt[32];
    snprintf(dflt, sizeof dflt, "%u", *out);
    if (reg_value_get_dword(k, name, &v))
        invalid(log, key, name, "not a REG_DWORD", dflt);
    else if (v < min || v > max)
        invalid(log, key, name, "out of range", dflt);
    else
        *out = v;
}

/* load_lines - a REG_MULTI_SZ as lines (each bounded, at most t->max, each passing t->valid
 * when it is given), for the relay lists and DnsServers. */
static void load_lines(reg_key *k, const ims_setting *t, char (*out)[IMS_RELAY_LINE_MAX], size_t *n,
                       ims_log *log)
{
    const char *name = t->name;
    size_t max = t->max ? t->max : IMS_MAX_RELAY_LINES;
    uint32_t type;
    buf b = BUF_INIT;
    if (reg_value_get(k, name, &type, &b))
        return;
    if (type != REG_MULTI_SZ) {
        invalid(log, IMS_PARAMETERS_KEY, name, "not a REG_MULTI_SZ", "(empty)");
        buf_free(&b);
        return;
    }
    size_t units = b.len / 2, start = 0;
    for (size_t i = 0; i <= units; i++) {
        if (i < units && (b.data[2 * i] || b.data[2 * i + 1]))
            continue;
        if (i > start) {
            buf line = BUF_INIT;
            base_utf16_to_utf8(b.data + 2 * start, i - start, &line);
            const char *text = buf_cstr(&line) ? (char *)line.data : "";
            if (*n == max || strlen(text) >= IMS_RELAY_LINE_MAX)
                invalid(log, IMS_PARAMETERS_KEY, name, "too many or too long lines",
                        "(that line skipped)");
            else if (t->valid && !t->valid(text))
                invalid(log, IMS_PARAMETERS_KEY, name, text, "(that line skipped)");
            else
                snprintf(out[(*n)++], IMS_RELAY_LINE_MAX, "%s", text);
            buf_free(&line);
        }
        start = i + 1;
    }
    buf_free(&b);
}

/* listen_cb - one line of ListenAddresses. */
static void load_listen(reg_key *k, ims_settings *s, ims_log *log)
{
    uint32_t type;
    buf b = BUF_INIT;
    if (reg_value_get(k, "ListenAddresses", &type, &b))
        return;
    if (type != REG_MULTI_SZ && type != REG_SZ) {
        invalid(log, IMS_PARAMETERS_KEY, "ListenAddresses", "not a REG_MULTI_SZ",
                IMS_DEFAULT_LISTEN);
        buf_free(&b);
        return;
    }
    ims_listen got[IMS_MAX_LISTENERS];
    size_t n = 0, units = b.len / 2, start = 0;
    for (size_t i = 0; i <= units; i++) {
        if (i < units && (b.data[2 * i] || b.data[2 * i + 1]))
            continue;
        if (i > start) {
            buf line = BUF_INIT;
            base_utf16_to_utf8(b.data + 2 * start, i - start, &line);
            const char *text = buf_cstr(&line) ? (char *)line.data : "";
            if (n == IMS_MAX_LISTENERS)
                invalid(log, IMS_PARAMETERS_KEY, "ListenAddresses", "too many addresses",
                        "(the first ones)");
            else if (ims_listen_parse(text, &got[n]) == 0)
                n++;
            else
                invalid(log, IMS_PARAMETERS_KEY, "ListenAddresses", text, "(that line skipped)");
            buf_free(&line);
        }
        start = i + 1;
    }
    buf_free(&b);
    if (n == 0) {
        invalid(log, IMS_PARAMETERS_KEY, "ListenAddresses", "no valid address", IMS_DEFAULT_LISTEN);
        return;
    }
    memcpy(s->listen, got, n * sizeof got[0]);
    s->nlisten = n;
}

/* load_setting - one row of the table from the Parameters key into s. */
static void load_setting(reg_key *par, const ims_setting *t, ims_settings *s, ims_log *log)
{
    char *field = (char *)s + t->field;
    const char *k = IMS_PARAMETERS_KEY;
    switch (t->kind) {
    case IMS_SETTING_DWORD:
        load_dword(par, k, t->name, (uint32_t *)field, t->min, t->max, log);
        break;
    case IMS_SETTING_STRING: {
        char was[PATH_MAX];
        snprintf(was, sizeof was, "%s", field);
        load_string(par, k, t->name, field, t->size, t->empty_ok, log);
        if (t->valid && field[0] && !t->valid(field)) {
            invalid(log, k, t->name, "not valid here", was);
            snprintf(field, t->size, "%s", was);
        }
        break;
    }
    case IMS_SETTING_LISTEN:
        load_listen(par, s, log);
        break;
    case IMS_SETTING_LINES:
        load_lines(par, t, (char(*)[IMS_RELAY_LINE_MAX])field, (size_t *)((char *)s + t->size),
                   log);
        break;
    }
}

/* The routing table: each subkey of Parameters\Routing names a domain (and its sub-domains),
 * its Host value where that domain's mail goes. */
struct routes_walk {
    reg_key *routing;
    ims_settings *s;
    ims_log *log;
};

static int load_route(void *arg, const char *name)
{
    struct routes_walk *w = arg;
    ims_settings *s = w->s;
    const char *k = IMS_ROUTING_KEY;
    struct ims_route_entry *e = &s->routes[s->nroutes];
    size_t len = strlen(name);
    if (s->nroutes == IMS_MAX_ROUTES) {
        invalid(w->log, k, name, "too many routing entries", "(the entry skipped)");
        return 0;
    }
    if (len >= sizeof e->domain || !smtp_domain_valid(name, len, false)) {
        invalid(w->log, k, name, "not a domain name", "(the entry skipped)");
        return 0;
    }
    reg_key *sub;
    if (reg_key_open(w->routing, name, 0, &sub))
        return 0; /* gone since the enumeration: nothing to route */
    e->host[0] = 0;
    load_string(sub, k, "Host", e->host, sizeof e->host, false, w->log);
    char fam[16] = "";
    load_string(sub, k, "AddressFamily", fam, sizeof fam, false, w->log);
    char tls[IMS_TLS_POLICY_TEXT] = "";
    load_string(sub, k, "TlsPolicy", tls, sizeof tls, false, w->log);
    e->tls_ca_file[0] = 0;
    load_string(sub, k, "TlsCaFile", e->tls_ca_file, sizeof e->tls_ca_file, true, w->log);
    reg_key_close(sub);
    smtp_tls_policy tp;
    e->tls_policy = IMS_TLS_INHERIT;
    if (tls[0] && ims_tls_policy_parse(tls, &tp) == 0) {
        e->tls_policy = (uint8_t)tp;
    } else if (tls[0]) {
        char what[300];
        snprintf(what, sizeof what, "%.255s\\TlsPolicy", name);
        invalid(w->log, k, what, "not none, may, encrypt or verify", "(Parameters' TlsPolicy)");
    }
    e->family = IMS_DNS_ANY;
    if (!strcasecmp(fam, "ipv4"))
        e->family = IMS_DNS_IPV4;
    else if (!strcasecmp(fam, "ipv6"))
        e->family = IMS_DNS_IPV6;
    else if (fam[0] && strcasecmp(fam, "any")) {
        char what[300];
        snprintf(what, sizeof what, "%.255s\\AddressFamily", name);
        invalid(w->log, k, what, "not any, ipv4 or ipv6", "(any is used)");
    }
    if (!e->host[0] || (strcasecmp(e->host, IMS_ROUTING_INBOUND) &&
                        strcasecmp(e->host, IMS_ROUTING_DNS) && !host_valid(e->host))) {
        char what[IMS_HOST_MAX + 64];
        snprintf(what, sizeof what, "%s\\Host", name);
        invalid(w->log, k, what, "not <inbound>, <dns> or host[:port]", "(the entry skipped)");
        return 0;
    }
    memcpy(e->domain, name, len + 1);
    s->nroutes++;
    return 0;
}

int ims_settings_load(reg_ctx *reg, ims_log *log, ims_settings *s)
{
    ims_settings_defaults(s, reg_ctx_root_dir(reg));
    reg_key *lm, *svc = NULL, *par = NULL, *diag = NULL;
    int rc = reg_key_open_root(reg, REG_ROOT_HKLM, &lm);
    if (rc == ERROR_FILE_NOT_FOUND)
        return IMS_OK; /* a registry nobody has written: every default */
    if (rc && reg_ctx_damaged(reg)) {
        ims_log_event(log, IMS_EV_SETTING_INVALID, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The configuration could not be loaded from the registry: the hive file %s "
                      "is damaged (%s); restore the registry from a backup",
                      reg_ctx_damaged(reg), reg_strerror(rc));
        return IMS_EV_SETTING_INVALID;
    }
    if (rc) {
        ims_log_event(log, IMS_EV_SETTING_INVALID, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The configuration could not be loaded from the registry: %s",
                      reg_strerror(rc));
        return IMS_EV_SETTING_INVALID;
    }
    if (reg_key_open(lm, IMS_SERVICE_KEY, 0, &svc) == ERROR_SUCCESS)
        load_string(svc, IMS_SERVICE_KEY, "ObjectName", s->account, sizeof s->account, false, log);
    if (reg_key_open(lm, IMS_PARAMETERS_KEY, 0, &par) == ERROR_SUCCESS) {
        size_t n;
        const ims_setting *t = ims_settings_table(&n);
        for (size_t i = 0; i < n; i++)
            load_setting(par, &t[i], s, log);
        /* RetryInterval's parsed form: its text passed retry_valid (or is the default). */
        if (ims_retry_parse(s->retry_interval, s->retry_ms, &s->nretry)) {
            snprintf(s->retry_interval, sizeof s->retry_interval, "%s", IMS_DEFAULT_RETRY);
            ims_retry_parse(s->retry_interval, s->retry_ms, &s->nretry);
        }
        smtp_tls_policy tp = SMTP_TLS_MAY;
        ims_tls_policy_parse(s->tls_policy_text, &tp); /* it passed tls_policy_valid */
        s->tls_policy = (uint8_t)tp;
        struct routes_walk w = {NULL, s, log};
        if (reg_key_open(par, "Routing", 0, &w.routing) == ERROR_SUCCESS) {
            reg_key_enum_subkeys(w.routing, load_route, &w);
            reg_key_close(w.routing);
        }
    }
    if (reg_key_open(lm, IMS_DIAGNOSTICS_KEY, 0, &diag) == ERROR_SUCCESS) {
        for (int c = 0; c < IMS_CAT_COUNT; c++) {
            uint32_t v = 0;
            load_dword(diag, IMS_DIAGNOSTICS_KEY, ims_category_name((ims_category)c), &v,
                       IMS_LEVEL_NONE, IMS_LEVEL_HIGHEST, log);
            s->levels[c] = (uint8_t)v;
        }
    }
    if (log)
        ims_log_set_levels(log, s->levels);
    reg_key_close(diag);
    reg_key_close(par);
    reg_key_close(svc);
    reg_key_close(lm);
    return IMS_OK;
}

/* --- the live values ------------------------------------------------------------------ */

/* The Parameters rows ims_diag holds, after the categories in ims_diag's bad[] and raw[]. */
static const char *const diag_params[] = {"DisplayErrsOnConsole", "ConsoleStatFrequency"};
_Static_assert(IMS_CAT_COUNT + sizeof diag_params / sizeof diag_params[0] == IMS_DIAG_NVALUES,
               "ims_diag's slots");

void ims_diag_from_settings(const ims_settings *s, ims_diag *d)
{
    memset(d, 0, sizeof *d);
    memcpy(d->levels, s->levels, sizeof d->levels);
    d->display_errs_on_console = s->display_errs_on_console;
    d->console_stat_frequency = s->console_stat_frequency;
}

/* setting_row - the table's row of a Parameters value (NULL: none). */
static const ims_setting *setting_row(const char *name)
{
    for (size_t i = 0; i < sizeof settings_table / sizeof settings_table[0]; i++)
        if (!strcmp(settings_table[i].name, name))
            return &settings_table[i];
    return NULL;
}

/* diag_value - value `name` of k (k NULL: the key is gone) into *v: missing gives dflt; an
 * invalid one keeps *v and is logged once while its data stays the same (slot i of d). */
static void diag_value(reg_key *k, const char *key, const char *name, uint32_t *v, uint32_t dflt,
                       uint32_t min, uint32_t max, ims_diag *d, size_t i, ims_log *log)
{
    uint32_t type, got = 0;
    buf b = BUF_INIT;
    if (!k || reg_value_get(k, name, &type, &b)) {
        buf_free(&b);
        *v = dflt;
        d->bad[i] = false;
        return;
    }
    const char *why = NULL;
    uint32_t raw = 0;
    if (type != REG_DWORD || b.len != 4) {
        why = "not a REG_DWORD";
        raw = UINT32_MAX - type; /* another type is another invalid value */
    } else {
        memcpy(&got, b.data, 4);
        raw = got;
        if (got < min || got > max)
            why = "out of range";
    }
    buf_free(&b);
    if (!why) {
        *v = got;
        d->bad[i] = false;
        return;
    }
    if (!d->bad[i] || d->raw[i] != raw) {
        char in_use[32];
        snprintf(in_use, sizeof in_use, "%u", *v);
        ims_log_event(log, IMS_EV_SETTING_INVALID, IMS_CAT_INIT_TERM, IMS_SEV_WARNING,
                      IMS_LEVEL_NONE,
                      "The registry value %s of HKLM\\%s is not valid (%s); the value in use, "
                      "%s, stays",
                      name, key, why, in_use);
    }
    d->bad[i] = true;
    d->raw[i] = raw;
}

int ims_diag_load(reg_ctx *reg, ims_log *log, ims_diag *d)
{
    reg_key *lm, *par = NULL, *diag = NULL;
    int rc = reg_key_open_root(reg, REG_ROOT_HKLM, &lm);
    if (rc && rc != ERROR_FILE_NOT_FOUND)
        return IMS_EV_SETTING_INVALID;
    if (!rc) {
        reg_key_open(lm, IMS_PARAMETERS_KEY, 0, &par);
        reg_key_open(lm, IMS_DIAGNOSTICS_KEY, 0, &diag);
    }
    for (int c = 0; c < IMS_CAT_COUNT; c++) {
        uint32_t v = d->levels[c];
        diag_value(diag, IMS_DIAGNOSTICS_KEY, ims_category_name((ims_category)c), &v,
                   IMS_LEVEL_NONE, IMS_LEVEL_NONE, IMS_LEVEL_HIGHEST, d, (size_t)c, log);
        d->levels[c] = (uint8_t)v;
    }
    uint32_t *fields[] = {&d->display_errs_on_console, &d->console_stat_frequency};
    for (size_t i = 0; i < sizeof diag_params / sizeof diag_params[0]; i++) {
        const ims_setting *t = setting_row(diag_params[i]);
        if (!t)
            continue; /* cannot happen: both are rows of the table */
        diag_value(par, IMS_PARAMETERS_KEY, t->name, fields[i], t->dflt, t->min, t->max, d,
                   IMS_CAT_COUNT + i, log);
    }
    reg_key_close(diag);
    reg_key_close(par);
    if (!rc)
        reg_key_close(lm);
    return IMS_OK;
}

/* --- install ------------------------------------------------------------------------- */

/* set_default_sz - a Parameters string, unless it is there already. */
static int set_default_sz(reg_key *k, const char *name, const char *v)
{
    if (reg_value_get(k, name, NULL, NULL) == ERROR_SUCCESS)
        return ERROR_SUCCESS;
    return reg_value_set_sz(k, name, REG_SZ, v);
}

int ims_install(reg_ctx *reg, const char *image_path, const char *account,
                const char *const *listen, size_t nlisten, const char *root_dir)
{
    for (size_t i = 0; i < nlisten; i++) {
        ims_listen l;
        if (ims_listen_parse(listen[i], &l))
            return ERROR_INVALID_PARAMETER;
    }
    ims_settings d;
    ims_settings_defaults(&d, reg_ctx_root_dir(reg));
    reg_key *lm, *svc = NULL, *par = NULL;
    int rc = reg_key_open_root(reg, REG_ROOT_HKLM, &lm);
    if (rc)
        return rc;
    if ((rc = reg_txn_begin(lm))) {
        reg_key_close(lm);
        return rc;
    }
    static const char *const depends[] = {"MSExchangeIS", "MSExchangeMTA", "TCPIP"};
    static const char *const install_listen[] = {IMS_INSTALL_LISTEN};
    rc = reg_key_create(lm, IMS_SERVICE_KEY, 0, NULL, &svc, NULL);
    if (!rc)
        rc = reg_value_set_sz(svc, "DisplayName", REG_SZ, IMS_DISPLAY_NAME);
    if (!rc && image_path)
        rc = reg_value_set_sz(svc, "ImagePath", REG_EXPAND_SZ, image_path);
    if (!rc && account)
        rc = reg_value_set_sz(svc, "ObjectName", REG_SZ, account);
    if (!rc)
        rc = reg_value_set_dword(svc, "Start", 2); /* automatic */
    if (!rc)
        rc = reg_value_set_dword(svc, "Type", 0x10); /* a service in its own process */
    if (!rc)
        rc = reg_value_set_dword(svc, "ErrorControl", 1);
    if (!rc)
        rc = reg_value_set_multi_sz(svc, "DependOnService", depends, 3);
    if (!rc)
        rc = reg_key_create(svc, "Parameters", 0, NULL, &par, NULL);
    if (!rc)
        rc = root_dir ? reg_value_set_sz(par, "RootDir", REG_SZ, root_dir)
                      : set_default_sz(par, "RootDir", d.root_dir);
    if (!rc) {
        if (nlisten)
            rc = reg_value_set_multi_sz(par, "ListenAddresses", listen, nlisten);
        else if (reg_value_get(par, "ListenAddresses", NULL, NULL))
            rc = reg_value_set_multi_sz(par, "ListenAddresses", install_listen, 1);
    }
    if (!rc)
        rc = set_default_sz(par, "SiteDN", d.site_dn);
    if (!rc)
        rc = set_default_sz(par, "CommonName", d.common_name);
    if (!rc)
        rc = set_default_sz(par, "HomeDSA", d.home_dsa);
    if (!rc)
        rc = reg_key_create(svc, "Diagnostics", 0, NULL, NULL, NULL);
    reg_key_close(par);
    reg_key_close(svc);
    if (rc)
        reg_txn_abort(lm);
    else
        rc = reg_txn_commit(lm);
    reg_key_close(lm);
    return rc;
}

int ims_uninstall(reg_ctx *reg)
{
    reg_key *lm;
    int rc = reg_key_open_root(reg, REG_ROOT_HKLM, &lm);
    if (rc)
        return rc;
    rc = reg_key_delete_tree(lm, IMS_SERVICE_KEY);
    reg_key_close(lm);
    return rc;
}
