/* ims.h - the contract of lib/ims: the Internet Mail Service's settings (from the registry),
 * its event log, its start and stop sequence (working folders, its own MAPI profile
 * "MSExchangeIMC <suffix>", logon, the gateway mailbox), the SMTP protocol log, and the
 * inbound spool with delivery and the tracking log; the outbound side's resolver (DNS).
 *
 * The service's functions return IMS_OK (0) or the ID of the event that describes the failure
 * (for example IMS_EV_MAPI_INIT_FAILED, 4018), already logged through the ims_log given; the
 * protocol log's, the spool's, the tracking log's and the resolver's return 0 or an errno value.
 * None exits or prints: events go to the log's sink, which the program provides. */
#ifndef IMS_IMS_H
#define IMS_IMS_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#include "mapi/mapi.h"
#include "reg/reg.h"
#include "smtp/smtp.h"
#include "store/store.h"

#define IMS_OK 0

/* Registry keys (under HKLM). */
#define IMS_SERVICE_NAME "MSExchangeIMC"
#define IMS_SERVICE_KEY "System\\CurrentControlSet\\Services\\MSExchangeIMC"
#define IMS_PARAMETERS_KEY IMS_SERVICE_KEY "\\Parameters"
#define IMS_DIAGNOSTICS_KEY IMS_SERVICE_KEY "\\Diagnostics"
#define IMS_DISPLAY_NAME "Microsoft Exchange Internet Mail Service"
#define IMS_PROFILE_PREFIX "MSExchangeIMC " /* + 10 upper-case hex digits, new each start */
#define IMS_PROFILE_SUFFIX_LEN 10

/* --- events ----------------------------------------------------------------------------- */

/* Event IDs (source MSExchangeIMC) this service logs; the numbers are the original's. */
#define IMS_EV_SHUTDOWN 1001        /* shut down successfully */
#define IMS_EV_STARTED 1000         /* started (no original ID is known: ours) */
#define IMS_EV_RELOAD_IGNORED 1002  /* SIGHUP: settings apply at the next start (ours) */
#define IMS_EV_DIAG_CHANGED 1005    /* Diagnostics levels or logging values applied live */
#define IMS_EV_PROTOCOL_LOG 2004    /* SMTP protocol logging enabled */
#define IMS_EV_INBOUND_REFUSED 2020 /* an inbound connection over the limit refused (ours) */
#define IMS_EV_CLIENT_LIMIT 2021    /* a client over a per-client limit refused (ours) */
#define IMS_EV_STRESS_BEGIN 2022    /* inbound connections under stress (ours) */
#define IMS_EV_STRESS_END 2023      /* ... no longer (ours) */
#define IMS_EV_RELAY_DENIED 2040    /* a recipient refused for relaying (KB Q193922; ours) */
#define IMS_EV_FLUSH_ENTER 2030     /* MSG_ENTERING_FLUSH_MODE: disk low, no new mail (ours) */
#define IMS_EV_FLUSH_LEAVE 2031     /* MSG_LEAVING_FLUSH_MODE: space again (ours) */
#define IMS_EV_DISK_FULL 2032 /* a write failed with ENOSPC/EDQUOT: an episode begins (ours) */
#define IMS_EV_DISK_SPACE_BACK 2033  /* a write succeeded again after IMS_EV_DISK_FULL (ours) */
#define IMS_EV_LISTEN_FAILED 4007    /* cannot bind the TCP/IP listener socket */
#define IMS_EV_MAPI_INIT_FAILED 4018 /* MAPI could not be initialized */
#define IMS_EV_NO_ADMIN_MAILBOX                                                                    \
    4071                            /* the administrator's mailbox is missing (KB Q183178; the     \
                                     * original would not start: here a warning) */
#define IMS_EV_SETTING_INVALID 4086 /* configuration could not be loaded (a value) */
#define IMS_EV_INTERNAL 4131        /* unexpected error (working folders and the like) */
#define IMS_EV_ACCOUNT 4143         /* the service account cannot be used */

typedef enum ims_category {
    IMS_CAT_INIT_TERM,          /* Initialization/Termination */
    IMS_CAT_ADDRESSING,         /* Addressing */
    IMS_CAT_MESSAGE_TRANSFER,   /* Message Transfer */
    IMS_CAT_SMTP_INTERFACE,     /* SMTP Interface Events */
    IMS_CAT_INTERNAL,           /* Internal Processing */
    IMS_CAT_CONTENT_CONVERSION, /* Content Conversion */
    IMS_CAT_SMTP_PROTOCOL_LOG,  /* SMTP Protocol Log */
    IMS_CAT_MESSAGE_ARCHIVAL,   /* Message Archival */
    IMS_CAT_COUNT
} ims_category;

typedef enum ims_severity { IMS_SEV_ERROR, IMS_SEV_WARNING, IMS_SEV_INFO } ims_severity;

/* Diagnostics Logging levels, as the property page stores them. An event of level L is
 * logged when its category's level is at least L; errors and level-0 events always are. */
#define IMS_LEVEL_NONE 0
#define IMS_LEVEL_MINIMUM 1
#define IMS_LEVEL_MEDIUM 3
#define IMS_LEVEL_MAXIMUM 5

typedef struct ims_event {
    unsigned id;
    ims_category category;
    ims_severity severity;
    const char *text; /* the whole message, one line */
} ims_event;

typedef void (*ims_log_fn)(void *arg, const ims_event *ev);

/* The levels are atomic: the loop's thread changes them while the service runs (the registry's
 * change notification) and every other thread that logs reads them; a relaxed load or store
 * of one byte is never torn. Use ims_log_level and ims_log_set_level. */
typedef struct ims_log {
    ims_log_fn fn; /* where events go (syslog, console: the program's) */
    void *arg;
    _Atomic uint8_t levels[IMS_CAT_COUNT]; /* Diagnostics Logging levels */
} ims_log;

/* ims_log_level - the level of category c now (IMS_LEVEL_NONE for NULL or a bad c). */
unsigned ims_log_level(const ims_log *log, ims_category c);
/* ims_log_set_level - set it (any thread; relaxed: events logged meanwhile may see either). */
void ims_log_set_level(ims_log *log, ims_category c, unsigned level);
/* ims_log_set_levels - all of them from levels[IMS_CAT_COUNT]. */
void ims_log_set_levels(ims_log *log, const uint8_t *levels);

/* ims_category_name - "Initialization/Termination" and the like (the value names under the
 * Diagnostics key, too). */
const char *ims_category_name(ims_category c);
/* ims_category_parse - a category by its value name ("SMTP Protocol Log") or an alias
 * ("smtp-protocol-log", "protocol-log"), in any case. Returns 0 or -1. */
int ims_category_parse(const char *text, ims_category *out);
/* ims_category_aliases - the aliases of c, separated by ", " (static text; "" for a bad c). */
const char *ims_category_aliases(ims_category c);
/* The highest Diagnostics value the registry may hold (1-2 act as Minimum, 3-4 as Medium). */
#define IMS_LEVEL_HIGHEST 5
/* ims_level_parse - "none", "minimum" ("min"), "medium", "maximum" ("max"), any case, or one
 * digit 0 to 5 into *out. Returns 0 or -1. */
int ims_level_parse(const char *text, unsigned *out);
/* ims_level_name - "None", "Minimum", "Medium", "Maximum" for 0, 1, 3, 5; "Minimum (2)" and
 * "Medium (4)" for the values between; "Invalid" above 5. Static text. */
const char *ims_level_name(unsigned level);
/* ims_severity_name - "Error", "Warning", "Information". */
const char *ims_severity_name(ims_severity s);
/* ims_err_no_space - err is "out of disk space": ENOSPC, or EDQUOT (the service account's
 * quota). Such failures are answered 452 4.3.1 and retried, and make one IMS_EV_DISK_FULL
 * event per episode rather than one per message. */
bool ims_err_no_space(int err);
/* ims_fs_describe - "<path> (file system mounted at <mount point>, <n> bytes free)" into
 * out (n bytes, always terminated; the parts that cannot be found are left out), for the
 * disk-full events. Returns out. */
char *ims_fs_describe(const char *path, char *out, size_t n);

/* ims_log_event - format and deliver an event if its level passes the category's. */
void ims_log_event(ims_log *log, unsigned id, ims_category cat, ims_severity sev, unsigned level,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* --- the SMTP protocol log ---------------------------------------------------------------- */

/* RootDir\Log holds one file per concurrent connection, L0000001.LOG, L0000002.LOG, ...: a
 * connection takes the lowest number no other open connection holds and appends to that file
 * (KB Q146669). One line per record, tab-separated: date-time GMT, connection id, a mark, text.
 * Marks: "+" connected, "<" a command received, ">" a reply sent, "D" message content
 * received, "-" closed with its summary. What is written follows the level of the SMTP
 * Protocol Log category: Minimum (1-2) the "+" and "-" lines, Medium (3-4) also commands and
 * replies, Maximum (5) also the content. A file that has grown past IMS_PROTOLOG_FILE_MAX when a
 * connection takes it is renamed to Lnnnnnnn.OLD first (the previous .OLD goes), so each number
 * costs at most about twice that on disk. */
#define IMS_PROTOLOG_FILE_MAX (16u << 20) /* bytes of one log file before it is rotated */
#define IMS_PROTOLOG_MAX_FILES 100000     /* connections past this many at once go unlogged */
#define IMS_PROTOLOG_LINE_MAX 1024        /* bytes of one record's text; longer ones are cut */

typedef struct ims_protolog ims_protolog;
typedef struct ims_protolog_conn ims_protolog_conn;

/* ims_protolog_open - a log in dir at level (IMS_LEVEL_*; None gives NULL in *out and
 * returns 0, so callers simply skip logging). dir must exist. Returns 0 or ENOMEM. Not
 * thread-safe: one event loop uses it. */
int ims_protolog_open(const char *dir, unsigned level, ims_protolog **out);
/* ims_protolog_create - as ims_protolog_open, but a log is made at None too: its connections
 * are then NULL (unlogged) until ims_protolog_set_level raises the level. */
int ims_protolog_create(const char *dir, unsigned level, ims_protolog **out);
/* ims_protolog_set_level - the level of the connections begun from now on; those already
 * begun keep the level they began with (a session's log is written at one level). */
void ims_protolog_set_level(ims_protolog *pl, unsigned level);
/* ims_protolog_level - the level new connections get (None for NULL). */
unsigned ims_protolog_level(const ims_protolog *pl);
/* ims_protolog_close - free; every connection must have ended. NULL is fine. */
void ims_protolog_close(ims_protolog *pl);
/* ims_protolog_begin - a connection from `peer` to `local` (texts such as "192.0.2.1:4711"):
 * take a file and write the "+" line. *out is NULL (and 0 returned) when pl is NULL, its level
 * is None, or every number is taken; otherwise free it with ims_protolog_end. Returns 0, or an
 * errno value when the file cannot be opened (the connection then goes unlogged: the caller reports
 * it). */
int ims_protolog_begin(ims_protolog *pl, uint64_t conn_id, const char *peer, const char *local,
                       ims_protolog_conn **out);
/* ims_protolog_begin_out - an outbound connection to `remote` ("192.0.2.1:25"): its "+"
 * line says "Connection to <remote> (outbound)"; then ims_protolog_reply records what we send
 * (">") and ims_protolog_command what the peer answers ("<"): the marks say the direction.
 * As ims_protolog_begin otherwise. */
int ims_protolog_begin_out(ims_protolog *pl, uint64_t conn_id, const char *remote,
                           ims_protolog_conn **out);
/* ims_protolog_command / _reply / _content - records of the connection (NULL: nothing). A
 * reply may hold several CRLF-ended lines: each becomes a record. Control characters are
 * written as '?', so nothing a client sends can forge a record or a line. */
void ims_protolog_command(ims_protolog_conn *c, const char *p, size_t n);
void ims_protolog_reply(ims_protolog_conn *c, const char *p, size_t n);
void ims_protolog_content(ims_protolog_conn *c, const char *p, size_t n);
/* ims_protolog_end - write the "-" line with `summary` and give the number back. NULL is fine. */
void ims_protolog_end(ims_protolog_conn *c, const char *summary);

/* --- settings --------------------------------------------------------------------------- */

#define IMS_MAX_LISTENERS 16
#define IMS_DEFAULT_LISTEN "127.0.0.1:2525" /* when ListenAddresses is absent */
#define IMS_INSTALL_LISTEN "0.0.0.0:25"     /* what `imsctl install` writes by default */
#define IMS_MAX_RELAY_LINES 64              /* lines of each Relay*List */
#define IMS_RELAY_LINE_MAX 64               /* bytes of one "net;mask" line */

/* TransferMode values (the Connections property page's Transfer mode). */
#define IMS_TRANSFER_INOUT 0 /* Inbound & Outbound */
#define IMS_TRANSFER_IN 1    /* Inbound Only */
#define IMS_TRANSFER_OUT 2   /* Outbound Only: no inbound connections */
#define IMS_TRANSFER_NONE 3  /* None (Flush Queues): no inbound; queued mail still delivered */

#define IMS_DEFAULT_MAX_INBOUND 30   /* the original's default on a new install */
#define IMS_MAX_INBOUND_LIMIT 100000 /* MaxInboundConnections' largest value */
#define IMS_DEFAULT_RCPT_LIMIT 100   /* RFC 5321 4.5.3.1.8: a server must take 100 */
#define IMS_DEFAULT_LINE_LENGTH 1000 /* command lines, CRLF included (smtp.h) */
/* Errors a session may make before 421: Postfix's smtpd_hard_error_limit, so that a relay
 * audit (nmap's smtp-open-relay: 16 refused tests in one session) runs to its verdict. */
#define IMS_DEFAULT_ERRORS 20
/* The administrator's mailbox (Internet Mail page): it also receives postmaster mail (RFC
 * 5321 4.5.1) for every accepted domain that has no postmaster address of its own. */
#define IMS_DEFAULT_ADMIN_MAILBOX "postmaster"
#define IMS_DEFAULT_TIMEOUT 300 /* RFC 5321 4.5.3.2.7: at least 5 minutes */
/* Per-client limits (ours; Postfix's anvil): a client is an IPv4 address or an IPv6 /64. One
 * client may hold a third of the default MaxInboundConnections, so that it cannot fill them. */
#define IMS_DEFAULT_CLIENT_CONNS 10         /* MaxConnectionsPerClient */
#define IMS_DEFAULT_CLIENT_CONN_RATE 600    /* MaxConnectionRatePerClient: new a minute */
#define IMS_DEFAULT_CLIENT_MSG_RATE 1200    /* MaxMessageRatePerClient: a minute */
#define IMS_DEFAULT_CLIENT_RCPT_RATE 6000   /* MaxRecipientRatePerClient: a minute */
#define IMS_CLIENT_RATE_LIMIT 10000000      /* the largest rate value */
#define IMS_DEFAULT_CLIENT_AUTH_FAILURES 30 /* MaxAuthFailuresPerClient (in 15 minutes) */
/* Stress (Postfix's stress mode): from StressThreshold percent of MaxInboundConnections in
 * use, sessions get StressTimeout seconds instead of CommandTimeout/DataTimeout, and a new
 * connection at the limit closes the session idle for longest instead of being refused. */
#define IMS_DEFAULT_STRESS_THRESHOLD 80
#define IMS_DEFAULT_STRESS_TIMEOUT 10
/* Whole-phase deadlines: a client that sends a byte just before each timeout is still cut. */
#define IMS_DEFAULT_DATA_PHASE_TIMEOUT 1800 /* DataPhaseTimeout: seconds for DATA to its end */
#define IMS_DEFAULT_SESSION_TIMEOUT 3600    /* SessionTimeout: seconds for a whole session */
/* Routing (the Routing page and "Forward all messages to host"). */
#define IMS_HOST_MAX 272   /* bytes of a host spec: "[IPv6:...]:port" or a name and a port */
#define IMS_MAX_ROUTES 256 /* subkeys of Parameters\Routing taken */
#define IMS_ROUTING_KEY IMS_PARAMETERS_KEY "\\Routing"
#define IMS_ROUTING_INBOUND "<inbound>" /* a routing entry's Host: the domain is ours */
#define IMS_ROUTING_DNS "<dns>"         /* ... the domain's MX records, whatever SmartHost says */
#define IMS_TIMEOUT_LIMIT 86400         /* the longest CommandTimeout/DataTimeout */
/* The outbound side's schedule (the Connections page; docs/ims.md, "The outbound queue"). */
#define IMS_RETRY_MAX 16                   /* intervals in RetryInterval */
#define IMS_RETRY_TEXT_MAX 256             /* bytes of RetryInterval's text, NUL included */
#define IMS_RETRY_HOURS_MAX 720            /* the longest interval, in hours (30 days) */
#define IMS_RETRY_FRACTION_DIGITS 9        /* decimals of an interval taken (more: malformed) */
#define IMS_DEFAULT_RETRY ".25,.5,1,4"     /* hours: the original's default */
#define IMS_DEFAULT_TIMEOUT_URGENT 1440    /* MessageTimeoutUrgent: minutes (24 h, ours) */
#define IMS_DEFAULT_TIMEOUT_NORMAL 2880    /* MessageTimeoutNormal: 48 h (KB Q184051) */
#define IMS_DEFAULT_TIMEOUT_NONURGENT 4320 /* MessageTimeoutNonUrgent: 72 h (ours) */
#define IMS_MESSAGE_TIMEOUT_MAX 43200      /* the longest message time-out: 30 days, minutes */
#define IMS_DEFAULT_DELAY_NOTIFICATION 240 /* DelayNotification: minutes, 0 = none */
#define IMS_DEFAULT_MAX_OUTBOUND 100       /* MaxOutboundConnections */
#define IMS_MAX_OUTBOUND_LIMIT 1000        /* its largest (the original's in + out ceiling) */
#define IMS_DEFAULT_PER_HOST 10            /* MaxConnectionsPerHost */
#define IMS_DEFAULT_MESSAGES_PER_CONN 100  /* MaxMessagesPerConnection, 0 = no limit */
#define IMS_MESSAGES_PER_CONN_LIMIT 100000 /* its largest */
#define IMS_DNS_MAX_SERVERS 16             /* lines of DnsServers taken */
/* Outbound TLS and AUTH (docs/ims.md, "TLS and authentication"). */
#define IMS_TLS_POLICY_TEXT 16 /* bytes of a TlsPolicy value's text, NUL included */
#define IMS_TLS_INHERIT 0xff   /* a routing entry without TlsPolicy: Parameters' applies */
#define IMS_CA_FILE_MAX 256    /* bytes of a TlsCaFile path, NUL included */
#define IMS_DEFAULT_TLS_POLICY "may"
#define IMS_CREDS_NAME "ClientCredentials" /* ClientCredentialsFile's default, under IMS_ROOT */

/* What a listener is for (a ListenAddresses line's optional second word). */
typedef enum ims_listen_kind {
    IMS_LISTEN_SMTP,        /* "smtp" (the default): mail from the Internet, STARTTLS offered */
    IMS_LISTEN_SUBMISSION,  /* "submission" (RFC 6409, port 587): AUTH before MAIL */
    IMS_LISTEN_SUBMISSIONS, /* "submissions" or "smtps" (RFC 8314, port 465): TLS from the
                             * first byte, then as submission */
} ims_listen_kind;

typedef struct ims_listen {
    char host[64]; /* numeric IPv4 or IPv6 address ("0.0.0.0", "::1") */
    uint16_t port;
    uint8_t kind; /* ims_listen_kind */
} ims_listen;

#define IMS_METRICS_ADDRESS_MAX 80 /* bytes of MetricsAddress, "[v6 address]:port" and NUL */

/* Server TLS and AUTH (docs/ims.md, "TLS and authentication"). */
#define IMS_TLS_FILE_MAX 256 /* bytes of a TlsCertificateFile or TlsKeyFile path, NUL included */

/* ims_settings - the service key's and Parameters' values, each with its documented default
 * (docs/ims.md lists them). */
typedef struct ims_settings {
    char root_dir[PATH_MAX];              /* RootDir: default <IMS_ROOT>/imcdata */
    ims_listen listen[IMS_MAX_LISTENERS]; /* ListenAddresses (REG_MULTI_SZ) */
    size_t nlisten;
    char account[64];      /* ObjectName of the service key: default the running user */
    char site_dn[256];     /* SiteDN: default "/o=IMS/ou=<short host name>" */
    char common_name[128]; /* CommonName: default "Internet Mail Service (<HOST>)" */
    char home_dsa[128];    /* HomeDSA: default the host name */
    char site_domain[256]; /* SiteDomain: default the host's domain, or its name */
    char administrator_mailbox[DIR_MAX_ALIAS + 1]; /* AdministratorMailbox: the alias of the
                                                    * mailbox that gets postmaster mail */
    uint32_t display_errs_on_console;              /* DisplayErrsOnConsole: 0 */
    uint32_t console_stat_frequency;               /* ConsoleStatFrequency: 14 (seconds) */
    uint32_t inbound_size_limit;                   /* InboundSizeLimit: 0 = none */
    uint32_t outbound_size_limit;                  /* OutboundSizeLimit: 0 = none */
    uint32_t max_recipients;                       /* MaxRecipients: 0 = none */
    uint32_t advertise_smtp_extensions;            /* AdvertiseSMTPExtensions: 1 */
    uint32_t disk_space_low_water_mark;            /* DiskSpaceLowWaterMark: 0x00A00000 */
    uint32_t shutdown_timeout; /* ShutdownTimeout (ours): seconds sessions get at stop, 30 */
    uint32_t sync_per_file;    /* SyncPerFile (ours): 1 = ims_spool_options' file_syncs, 0 */
    /* Inbound SMTP limits (ours: the original kept them in its directory, not the registry;
     * docs/ims.md). */
    uint32_t transfer_mode;           /* TransferMode: IMS_TRANSFER_*, default Inbound & Outbound */
    uint32_t max_inbound_connections; /* MaxInboundConnections: 30 (the original's); 0 = none */
    uint32_t inbound_recipient_limit; /* InboundRecipientLimit: 100 (RFC 5321 4.5.3.1.8) */
    uint32_t max_line_length;         /* MaxLineLength: 1000 bytes per command line */
    uint32_t max_errors_per_session;  /* MaxErrorsPerSession: 20 */
    uint32_t command_timeout;         /* CommandTimeout: 300 s (RFC 5321 4.5.3.2.7) */
    uint32_t data_timeout;            /* DataTimeout: 300 s between data bytes */
    uint32_t data_phase_timeout;      /* DataPhaseTimeout: 1800 s for a whole DATA; 0 = none */
    uint32_t session_timeout;         /* SessionTimeout: 3600 s for a whole session; 0 = none */
    uint32_t client_conns;            /* MaxConnectionsPerClient: 10; 0 = none */
    uint32_t client_conn_rate;        /* MaxConnectionRatePerClient: 600 a minute; 0 = none */
    uint32_t client_msg_rate;         /* MaxMessageRatePerClient: 1200 a minute; 0 = none */
    uint32_t client_rcpt_rate;        /* MaxRecipientRatePerClient: 6000 a minute; 0 = none */
    uint32_t client_auth_failures;    /* MaxAuthFailuresPerClient: 30 in 15 min; 0 = none */
    uint32_t client_limits_exempt;    /* ClientLimitsExemptAllowList: 1 = RelayAllowList's
                                       * clients are not limited; 0 */
    uint32_t stress_threshold;        /* StressThreshold: 80 (% of MaxInboundConnections); 0 off */
    uint32_t stress_timeout;          /* StressTimeout: 10 s */
    uint32_t relay_flags;             /* RelayFlags: 0 (nobody relays) */
    char relay_allow[IMS_MAX_RELAY_LINES][IMS_RELAY_LINE_MAX]; /* RelayAllowList lines */
    size_t nrelay_allow;
    char relay_deny[IMS_MAX_RELAY_LINES][IMS_RELAY_LINE_MAX]; /* RelayDenyList lines */
    size_t nrelay_deny;
    char relay_local[IMS_MAX_RELAY_LINES][IMS_RELAY_LINE_MAX]; /* RelayLocalIPList lines */
    size_t nrelay_local;
    char smart_host[IMS_HOST_MAX]; /* SmartHost: "" = DNS for every remote domain */
    /* The outbound side (docs/ims.md, "The outbound queue"). */
    char retry_interval[IMS_RETRY_TEXT_MAX]; /* RetryInterval: hours, ".25,.5,1,4" */
    uint64_t retry_ms[IMS_RETRY_MAX];        /* ... parsed: the intervals in milliseconds */
    size_t nretry;                           /* ... their number; 0: "0", no retries */
    uint32_t message_timeout_urgent;         /* MessageTimeoutUrgent: 1440 minutes */
    uint32_t message_timeout_normal;         /* MessageTimeoutNormal: 2880 minutes */
    uint32_t message_timeout_nonurgent;      /* MessageTimeoutNonUrgent: 4320 minutes */
    uint32_t delay_notification;             /* DelayNotification: 240 minutes, 0 = none */
    uint32_t max_outbound_connections;       /* MaxOutboundConnections: 100 */
    uint32_t max_connections_per_host;       /* MaxConnectionsPerHost: 10 */
    uint32_t max_messages_per_connection;    /* MaxMessagesPerConnection: 100, 0 = none */
    uint32_t disable_loopback_connections;   /* DisableLoopbackConnections: 1 */
    uint32_t outbound_port;                  /* OutboundPort: 25, where DNS routes connect */
    uint32_t admin_ndr_copy;                 /* AdminNdrCopy: 0 (ambiguous address only), 1 all */
    char dns_servers[IMS_DNS_MAX_SERVERS][IMS_RELAY_LINE_MAX]; /* DnsServers lines, valid */
    size_t ndns_servers;
    char tls_policy_text[IMS_TLS_POLICY_TEXT]; /* TlsPolicy: none, may, encrypt, verify */
    uint8_t tls_policy;                        /* ... parsed: smtp_tls_policy, SMTP_TLS_MAY */
    char tls_ca_file[IMS_CA_FILE_MAX];         /* TlsCaFile: "" = the system's trust store */
    char
        client_credentials_file[PATH_MAX]; /* ClientCredentialsFile: <IMS_ROOT>/ClientCredentials */
    char tls_certificate_file[IMS_TLS_FILE_MAX];   /* TlsCertificateFile: "" = no server TLS */
    char tls_key_file[IMS_TLS_FILE_MAX];           /* TlsKeyFile: "" = the certificate file's */
    uint32_t allow_auth_without_tls;               /* AllowAuthWithoutTls: 0 */
    uint32_t disable_auth;                         /* DisableAuth: 0 */
    uint32_t client_submit_homed_only;             /* ClientSubmitHomedOnly: 0 */
    uint32_t client_submit_match_account;          /* ClientSubmitMatchAccount: 0 */
    char metrics_address[IMS_METRICS_ADDRESS_MAX]; /* MetricsAddress (ours): "host:port" of the
                                                    * Prometheus endpoint; "" = none */
    struct ims_route_entry {
        char domain[256];        /* the subkey's name: this domain and its sub-domains */
        char host[IMS_HOST_MAX]; /* IMS_ROUTING_INBOUND, IMS_ROUTING_DNS or a host spec */
        uint8_t family;          /* AddressFamily: 0 any, 1 ipv4, 2 ipv6 (ims_dns_family) */
        uint8_t tls_policy;      /* TlsPolicy: smtp_tls_policy, or IMS_TLS_INHERIT */
        char tls_ca_file[IMS_CA_FILE_MAX]; /* TlsCaFile: "" = Parameters' TlsCaFile */
    } routes[IMS_MAX_ROUTES];              /* Parameters\Routing\<domain>, value Host */
    size_t nroutes;
    uint8_t levels[IMS_CAT_COUNT]; /* the Diagnostics key: None unless set */
} ims_settings;

/* ims_settings_fqdn - our name in the SMTP greeting and Received headers: the host name when
 * it has a dot; else "<host name>.<SiteDomain>" when SiteDomain has one; else the bare host
 * name. No DNS is asked (a start must not hang on a resolver). Writes at most n bytes. */
void ims_settings_fqdn(const ims_settings *s, char *out, size_t n);

/* The values of the Parameters key, one row each: their defaults, their loading and range
 * checks all come from this table, and a unit test holds docs/ims.md to it. */
typedef enum ims_setting_kind {
    IMS_SETTING_DWORD,  /* REG_DWORD in [min, max], default dflt */
    IMS_SETTING_STRING, /* REG_SZ or REG_EXPAND_SZ, not empty, fitting the field (its default
                         * depends on the host, so ims_settings_defaults computes it) */
    IMS_SETTING_LISTEN, /* ListenAddresses: REG_MULTI_SZ (or REG_SZ) of address:port */
    IMS_SETTING_LINES,  /* REG_MULTI_SZ of lines of IMS_RELAY_LINE_MAX bytes (the relay
                         * lists, DnsServers), at most max of them (0: IMS_MAX_RELAY_LINES);
                         * a line that fails valid is skipped with IMS_EV_SETTING_INVALID */
} ims_setting_kind;

typedef struct ims_setting {
    const char *name; /* the registry value */
    ims_setting_kind kind;
    size_t field;                    /* offsetof the field in ims_settings */
    size_t size;                     /* STRING: the field's size; LINES: offsetof its line count */
    uint32_t dflt, min, max;         /* DWORD; LINES: max = the most lines */
    bool (*valid)(const char *text); /* STRING, LINES: a further check (NULL: none) */
    bool empty_ok;                   /* STRING: "" is a value (SmartHost: none) */
} ims_setting;

/* ims_settings_table - the Parameters rows, *n of them (static: never freed). */
const ims_setting *ims_settings_table(size_t *n);

/* ims_settings_defaults - every field at its default for state root `root`. */
void ims_settings_defaults(ims_settings *s, const char *root);
/* ims_settings_load - defaults, then the values under HKLM's service key. A missing key or
 * value keeps the default silently; a malformed or out-of-range one keeps it too and logs
 * IMS_EV_SETTING_INVALID (warning) naming the value; unknown values are ignored. Returns
 * IMS_OK, or IMS_EV_SETTING_INVALID when the registry cannot be read at all. */
int ims_settings_load(reg_ctx *reg, ims_log *log, ims_settings *s);
/* What may change while the service runs, applied on the registry's change notification
 * (docs/ims.md, "Diagnostics logging"): the Diagnostics levels and Parameters' logging values.
 * Everything else in ims_settings takes effect at the next start. */
#define IMS_DIAG_NVALUES (IMS_CAT_COUNT + 2) /* the values ims_diag_load reads */
typedef struct ims_diag {
    uint8_t levels[IMS_CAT_COUNT];    /* the Diagnostics key */
    uint32_t display_errs_on_console; /* Parameters DisplayErrsOnConsole */
    uint32_t console_stat_frequency;  /* Parameters ConsoleStatFrequency */
    /* Invalid values already reported (so each is logged once, not at every change of the
     * service key): bad[i] is set while value i is invalid, raw[i] the data seen then. */
    bool bad[IMS_DIAG_NVALUES];
    uint32_t raw[IMS_DIAG_NVALUES];
} ims_diag;

/* ims_diag_from_settings - the live values as a start loaded them into s. */
void ims_diag_from_settings(const ims_settings *s, ims_diag *d);
/* ims_diag_load - read the live values again into *d, which holds those in use: a missing
 * value (or key) takes its default, as at a start; an invalid one (wrong type, out of range)
 * keeps the value in use and logs IMS_EV_SETTING_INVALID (warning) the first time it is seen
 * so (log may be NULL: nothing logged). Returns IMS_OK, or IMS_EV_SETTING_INVALID when HKLM
 * cannot be read (nothing changed; not logged). */
int ims_diag_load(reg_ctx *reg, ims_log *log, ims_diag *d);

/* ims_host_parse - a host spec as SmartHost and the routing table give it: "name",
 * "name:port", "[192.0.2.1]", "[192.0.2.1]:port", "[IPv6:2001:db8::1]:port" (RFC 5321's
 * literal) or "[2001:db8::1]:port". host gets the name or the bare address, *literal whether
 * it was an address, *port the port (25 when none). Returns 0 or -1. */
int ims_host_parse(const char *text, char host[SMTP_DOMAIN_MAX + 1], bool *literal, uint16_t *port);

/* --- per-client limits (anvil.c) --------------------------------------------------------
 * Counters per client address for the inbound side, as Postfix's anvil keeps them: connections
 * open at once, and over a sliding minute new connections, messages and recipients. An IPv4
 * client is its address, an IPv6 one its /64. The table holds at most `capacity` clients; when
 * it is full the idle client unused for longest is forgotten, and when every entry has a
 * connection open a new client is not limited (never refused for the table's sake). One
 * thread: the caller's loop. Times are the caller's monotonic milliseconds. */
#define IMS_ANVIL_CAPACITY_MAX (1u << 20)
#define IMS_ANVIL_CAPACITY 8192 /* clients remembered (about 100 bytes each) */

typedef struct ims_anvil ims_anvil;
typedef struct ims_anvil_client ims_anvil_client;

/* Each 0: no limit. */
typedef struct ims_anvil_limits {
    uint32_t conns;     /* connections open at once */
    uint32_t conn_rate; /* new connections a minute */
    uint32_t msg_rate;  /* messages (transactions started) a minute */
    uint32_t rcpt_rate; /* recipients accepted a minute */
} ims_anvil_limits;

typedef enum ims_anvil_verdict {
    IMS_ANVIL_OK,
    IMS_ANVIL_CONNS,     /* over conns */
    IMS_ANVIL_CONN_RATE, /* over conn_rate */
    IMS_ANVIL_MSG_RATE,  /* over msg_rate */
    IMS_ANVIL_RCPT_RATE, /* over rcpt_rate */
} ims_anvil_verdict;

/* ims_anvil_new - a table of at most capacity clients (1..IMS_ANVIL_CAPACITY_MAX). Returns 0,
 * EINVAL or ENOMEM; *out is freed with ims_anvil_free. */
int ims_anvil_new(size_t capacity, ims_anvil **out);
void ims_anvil_free(ims_anvil *a);
/* ims_anvil_connect - a connection from ip at now. IMS_ANVIL_OK: it is counted as open until
 * ims_anvil_disconnect(*client), and *client is the client's entry for the calls below (NULL:
 * not limited: no address, or the table full of connected clients). A refusal counts nothing.
 * a NULL: always IMS_ANVIL_OK with *client NULL. */
ims_anvil_verdict ims_anvil_connect(ims_anvil *a, const smtp_ip *ip, const ims_anvil_limits *lim,
                                    uint64_t now, ims_anvil_client **client);
/* ims_anvil_disconnect - c's connection ended (c NULL: nothing). */
void ims_anvil_disconnect(ims_anvil *a, ims_anvil_client *c, uint64_t now);
/* ims_anvil_message - c starts a transaction: counted when IMS_ANVIL_OK, else
 * IMS_ANVIL_MSG_RATE. ims_anvil_recipient: a recipient the same way (IMS_ANVIL_RCPT_RATE).
 * c NULL: IMS_ANVIL_OK. */
ims_anvil_verdict ims_anvil_message(ims_anvil *a, ims_anvil_client *c, const ims_anvil_limits *lim,
                                    uint64_t now);
ims_anvil_verdict ims_anvil_recipient(ims_anvil *a, ims_anvil_client *c,
                                      const ims_anvil_limits *lim, uint64_t now);
/* ims_anvil_log_due - a refusal of ip is to be logged: true for the first in a minute per
 * client, so that a client knocking a thousand times makes one event, not a thousand. */
bool ims_anvil_log_due(ims_anvil *a, const smtp_ip *ip, uint64_t now);
/* ims_anvil_conns - c's connections open now (c NULL: 0). ims_anvil_clients: clients held. */
uint32_t ims_anvil_conns(const ims_anvil_client *c);
size_t ims_anvil_clients(const ims_anvil *a);

/* --- routing ---------------------------------------------------------------------------- */

/* Where an address goes: the one decision the SMTP server, MTS-OUT, the pickup directory and
 * NDRs all take from here. */
typedef enum ims_route_kind {
    IMS_ROUTE_LOCAL,     /* a mailbox of ours: alias */
    IMS_ROUTE_DNS,       /* the domain's mail exchangers (MX, else its A/AAAA) */
    IMS_ROUTE_SMARTHOST, /* a host named by SmartHost or the routing table: host, port */
} ims_route_kind;

typedef struct ims_route {
    ims_route_kind kind;
    char alias[DIR_MAX_ALIAS + 1];  /* LOCAL */
    char host[SMTP_DOMAIN_MAX + 1]; /* DNS: the domain; SMARTHOST: a name or bare address */
    bool literal;                   /* SMARTHOST: host is an address, not a name */
    uint16_t port;                  /* SMARTHOST (DNS: 25) */
} ims_route;

typedef struct ims_router ims_router;

/* ims_router_new - a router over the directory d (not owned: it must outlive the router) with
 * the routing table and SmartHost of s (copied). Entries whose Host cannot be parsed were
 * already refused by ims_settings_load. *out: free with ims_router_free. 0 or ENOMEM.
 * Threads: ims_router_is_local and ims_router_route may be called from any thread; a lock in
 * the router lets one caller at a time into d. A directory (and the reg_ctx it was opened on)
 * belongs to one thread at a time (store.h, reg.h), so while several threads share the router
 * nothing else may use d or that reg_ctx. A second reg_ctx on the same state root in the same
 * process is no way out: LMDB must not have one environment open twice in a process. */
int ims_router_new(const ims_settings *s, directory *d, ims_router **out);
void ims_router_free(ims_router *r);
/* ims_router_locked - run fn(arg) holding the router's lock and return what it returns: fn
 * may then use the directory and the reg_ctx it was opened on, which the threads sharing the
 * router use too (imsd's loop reads the service key's changes so). */
int ims_router_locked(ims_router *r, int (*fn)(void *arg), void *arg);
/* ims_router_is_local - domain is ours: an accepted domain of the directory, or routed
 * IMS_ROUTING_INBOUND by the most specific routing entry that matches it. */
bool ims_router_is_local(ims_router *r, const char *domain);
/* ims_router_route - where the address goes ("local@domain", or "postmaster" alone). A local
 * domain's address is its mailbox's; postmaster at any local domain without a postmaster
 * address of its own, and "postmaster" alone, is the administrator's mailbox. A remote domain
 * goes where the most specific routing entry says, else to SmartHost, else to DNS.
 * Returns 0, ENOENT (a local domain, no such mailbox), EINVAL (no domain, and not
 * postmaster), or ENOMEM. */
int ims_router_route(ims_router *r, const char *address, ims_route *out);
/* ims_route_dest - what a spool recipient (ims_rcpt) of route rt names as its destination:
 * IMS_ROUTE_LOCAL the mailbox's Maildir "<store_dir>/<alias>" (its maildir), IMS_ROUTE_DNS the
 * domain, IMS_ROUTE_SMARTHOST the host spec as ims_host_parse takes it ("name:port",
 * "[192.0.2.1]:port", "[IPv6:2001:db8::1]:port") (its dest). store_dir is used for LOCAL only.
 * Writes at most n bytes to out. Returns 0 or ENAMETOOLONG (out too small). */
int ims_route_dest(const ims_route *rt, const char *store_dir, char *out, size_t n);

/* ims_tls_policy_parse - "none", "may", "encrypt" or "verify" (any case) into *out. Returns 0
 * or -1. */
int ims_tls_policy_parse(const char *text, smtp_tls_policy *out);
/* ims_tls_policy_name - the policy's name ("none", ...; "?" for another value). */
const char *ims_tls_policy_name(smtp_tls_policy p);

/* ims_dest_tls - what TLS an outbound destination gets. */
typedef struct ims_dest_tls {
    smtp_tls_policy policy;
    const char *ca_file; /* into the settings: "" = the system's default trust store */
} ims_dest_tls;
/* ims_settings_dest_tls - the TLS policy and CA file of an outbound destination (kind and
 * name as ims_outq_dest_route and _name give them) from s, which must outlive out: a DNS
 * destination takes those of the most specific routing entry matching its domain; a smart
 * host those of the routing entries whose Host names it (the strictest policy when several
 * do); what an entry does not say, and a destination no entry names (SmartHost's), comes
 * from Parameters' TlsPolicy and TlsCaFile. */
void ims_settings_dest_tls(const ims_settings *s, ims_route_kind kind, const char *name,
                           ims_dest_tls *out);
/* ims_host_same - a and b are host specs naming the same host and port ("mx.example" and
 * "MX.example:25", "[IPv6:::1]:26" and "[::1]:26"). */
bool ims_host_same(const char *a, const char *b);

/* --- client credentials ----------------------------------------------------------------- */

/* The file ClientCredentialsFile names: one "<destination> <user name> <password>" a line
 * (blanks between the first two fields and before the password; the password is the rest of
 * the line, blanks included; empty lines and lines starting with '#' are skipped). destination
 * is a domain (its mail routed by DNS or a routing entry, sub-domains included, the most
 * specific line winning) or a host spec as SmartHost or a routing entry's Host writes it. */
#define IMS_CREDS_MAX 256       /* lines with credentials taken */
#define IMS_CREDS_LINE_MAX 1024 /* bytes of one line */
#define IMS_CREDS_FILE_MAX (64 * 1024)

typedef struct ims_creds ims_creds;

/* ims_creds_load - read path, as ssh reads a key: it must be a regular file (no symbolic
 * link), owned by root or by the calling user (the service account), and neither group nor
 * others may read or write it. Returns 0 with *out (free with ims_creds_free); ENOENT when
 * there is no file (no credentials; *out NULL); EPERM (ownership or mode), EINVAL (a
 * malformed line, a field over SMTP_AUTH_FIELD_MAX bytes, more than IMS_CREDS_MAX lines),
 * EFBIG (over IMS_CREDS_FILE_MAX bytes), ENOMEM or the errno of the open or read, with *out
 * NULL and why (n bytes) saying what, never a password. Thread-safe; allocates *out only. */
int ims_creds_load(const char *path, ims_creds **out, char *why, size_t n);
/* ims_creds_free - wipe the credentials from memory and free them. NULL is fine. */
void ims_creds_free(ims_creds *c);
/* ims_creds_count - the lines taken. */
size_t ims_creds_count(const ims_creds *c);
/* ims_creds_find - the credentials for an outbound destination (kind and name as
 * ims_outq_dest_route and _name give them): a smart host by its spec, or by the domain of a
 * routing entry whose Host names it (s's routing table); a DNS destination by its domain or
 * the nearest parent domain with a line. *user and *pass point into c. Returns true when
 * found. */
bool ims_creds_find(const ims_creds *c, const ims_settings *s, ims_route_kind kind,
                    const char *name, const char **user, const char **pass);

/* ims_listen_parse - "address:port" ("[v6]:port" for IPv6), optionally followed by blanks
 * and the listener's kind: smtp (the default), submission, submissions or smtps (any case).
 * Returns 0 or -1. */
int ims_listen_parse(const char *text, ims_listen *out);
/* ims_listen_loopback - l's address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.x.x.x). */
bool ims_listen_loopback(const ims_listen *l);
/* ims_metrics_address_parse - MetricsAddress: "address:port" ("[v6]:port"), a numeric
 * address, no listener kind. Returns 0 or -1. */
int ims_metrics_address_parse(const char *text, ims_listen *out);
/* ims_listen_kind_name - "smtp", "submission", "submissions" ("?" for another value). */
const char *ims_listen_kind_name(ims_listen_kind k);

/* ims_install - write the service key (DisplayName, ImagePath, ObjectName, Start, Type,
 * ErrorControl, DependOnService) and Parameters (RootDir, ListenAddresses, SiteDN,
 * CommonName, HomeDSA) as `imsctl install` does; values already set in Parameters are kept
 * unless given here (listen non-NULL replaces ListenAddresses). Returns a Win32 error. */
int ims_install(reg_ctx *reg, const char *image_path, const char *account,
                const char *const *listen, size_t nlisten, const char *root_dir);
/* ims_uninstall - delete the service key and everything under it. Returns a Win32 error. */
int ims_uninstall(reg_ctx *reg);

/* --- the outbound schedule ---------------------------------------------------------------
 * Pure functions of the settings (lib/ims queue.c): when a recipient is tried again, when its
 * message times out, when its sender hears of the delay. Times are milliseconds on
 * ims_clock_ms's clock, counted from the message's arrival or from the last attempt. */

#define IMS_NEVER UINT64_MAX            /* no such time: no retry, no delay notice */
#define IMS_HEADER_SCAN_MAX (64u << 10) /* bytes of a header section looked at for priority */

/* The message's priority class: it picks its time-out (Connections page, "Message
 * time-outs"). Zero is normal, so that a zeroed record is normal. */
typedef enum ims_priority {
    IMS_PRIORITY_NORMAL,
    IMS_PRIORITY_URGENT,
    IMS_PRIORITY_NONURGENT,
} ims_priority;

/* ims_retry_parse - RetryInterval's text: comma-separated decimal hours (".25", "0.5", "4"),
 * blanks around each allowed, 1 to IMS_RETRY_MAX of them, each at most IMS_RETRY_HOURS_MAX
 * with at most IMS_RETRY_FRACTION_DIGITS decimals, converted to milliseconds rounded to the
 * nearest, and at least 1 ms. "0" alone (or "0.0") is no retries: *n = 0. Empty items, signs,
 * exponents, anything else: -1 (ms and *n are then unspecified). Returns 0 or -1. */
int ims_retry_parse(const char *text, uint64_t ms[IMS_RETRY_MAX], size_t *n);
/* ims_retry_delay_ms - how long after its attempt number `attempts` (1 = the first) failed
 * transiently a recipient is tried again: the attempts-th interval, the last one repeating.
 * attempts 0 (never tried): 0, at once. With no retries (RetryInterval "0"): IMS_NEVER for
 * any attempts >= 1, which means the transient failure is final: the recipient gets its NDR
 * now rather than waiting, untried, for its message time-out. */
uint64_t ims_retry_delay_ms(const ims_settings *s, unsigned attempts);

/* ims_priority_of_headers - the priority class of a message from its header section
 * (hdrs[0..len), which may run on into the body: the scan stops at the first empty line and
 * after IMS_HEADER_SCAN_MAX bytes). Names and values are case-insensitive, lines may end in
 * CRLF or LF, folded fields are unfolded. Looked at, the first of them that is present with
 * a known value deciding:
 *   Priority:   urgent / normal / non-urgent  (RFC 2156, X.400's priority: the original's)
 *   Importance: high / normal / low           (RFC 2156)
 *   X-Priority: 1 or 2 / 3 / 4 or 5           (de facto, "1 (Highest)")
 * Of a field given twice the first known value counts. None: IMS_PRIORITY_NORMAL. */
ims_priority ims_priority_of_headers(const char *hdrs, size_t len);
/* ims_priority_name - "urgent", "normal", "non-urgent". */
const char *ims_priority_name(ims_priority p);
/* ims_message_timeout_ms - how long after its arrival a message of priority p may wait for
 * delivery before its undelivered recipients get an NDR (MessageTimeout*; an unknown p is
 * normal). */
uint64_t ims_message_timeout_ms(const ims_settings *s, ims_priority p);
/* ims_delay_notice_ms - how long after its arrival a message of priority p still undelivered
 * earns its sender a delay notice (DelayNotification): IMS_NEVER when that is 0, or when it
 * is not shorter than the message's time-out (the NDR would come first). */
uint64_t ims_delay_notice_ms(const ims_settings *s, ims_priority p);

/* --- DNS -------------------------------------------------------------------------------- */

/* The resolver of the outbound side (lib/ims dns.c): the mail exchangers of a domain routed
 * IMS_ROUTE_DNS, as an ordered list of addresses to try. It drives c-ares without an event
 * library of its own: the caller watches the sockets the socket callback names and calls
 * ims_dns_process on readiness and when ims_dns_timeout's time has passed (imsd from its
 * libevent loop, the tests from poll()). One ims_dns belongs to one thread.
 *
 * c-ares keeps process-wide state (ares_library_init): a program calls ims_dns_global_init
 * once in main, before any thread starts and before ims_dns_new, and ims_dns_global_cleanup
 * at exit. This is the only global state lib/ims touches, and only through those two. */

#define IMS_DNS_TIMEOUT_MS 2000   /* default wait for one answer (c-ares doubles it per retry) */
#define IMS_DNS_TRIES 2           /* default tries per query and server */
#define IMS_DNS_TIMEOUT_MAX 60000 /* the longest timeout_ms taken */
#define IMS_DNS_TRIES_MAX 5       /* the most tries taken */
#define IMS_DNS_SERVERS_MAX 1024  /* bytes of the servers list (DnsServers joined by commas) */
#define IMS_DNS_MAX_MX 32         /* MX records of a domain taken (the rest are ignored) */
#define IMS_DNS_MAX_ADDRS 16      /* addresses of each family taken for one exchanger */
#define IMS_DNS_TEXT_MAX 512      /* bytes of a result's text, NUL included */
#define IMS_DNS_NO_FD (-1)        /* ims_dns_process: no socket is ready (ARES_SOCKET_BAD) */

/* Which address families to deliver to. */
typedef enum ims_dns_family {
    IMS_DNS_ANY,  /* IPv6 and IPv4: per exchanger, interleaved IPv6 first (RFC 8305 4) */
    IMS_DNS_IPV4, /* IPv4 only (no AAAA query is made) */
    IMS_DNS_IPV6, /* IPv6 only (no A query is made) */
} ims_dns_family;

/* ims_dns_sock_fn - c-ares opened, changed or closed socket fd: watch it for reading and/or
 * writing as told; both false: stop watching, it is being closed. Runs inside ims_dns_new's,
 * ims_dns_resolve_mx's, ims_dns_resolve_host's, ims_dns_process's and ims_dns_free's calls,
 * never elsewhere. */
typedef void (*ims_dns_sock_fn)(void *arg, int fd, bool readable, bool writable);

typedef struct ims_dns_options {
    /* DNS servers: a comma-separated list of "ip", "ip:port" or "[ipv6]:port" (DnsServers,
     * REG_MULTI_SZ, joined by commas); NULL or "" = those of /etc/resolv.conf. */
    const char *servers;
    unsigned timeout_ms;     /* 0: IMS_DNS_TIMEOUT_MS; at most IMS_DNS_TIMEOUT_MAX */
    unsigned tries;          /* 0: IMS_DNS_TRIES; at most IMS_DNS_TRIES_MAX */
    ims_dns_sock_fn sock_fn; /* required */
    void *sock_arg;
} ims_dns_options;

typedef struct ims_dns ims_dns;

typedef enum ims_dns_status {
    IMS_DNS_OK,        /* n >= 1 destinations */
    IMS_DNS_TRANSIENT, /* try again later (4.x.x): n == 0 */
    IMS_DNS_PERMANENT, /* never deliverable (5.x.x, an NDR): n == 0 */
} ims_dns_status;

/* One destination: an address of an exchanger. */
typedef struct ims_dns_target {
    char name[SMTP_DOMAIN_MAX + 1]; /* the exchanger (the domain itself for an implicit MX) */
    uint16_t preference;            /* its MX preference (0 for an implicit MX) */
    smtp_ip ip;
} ims_dns_target;

/* ims_dns_result - the outcome of a lookup. Failures of ims_dns_resolve_mx (those of
 * ims_dns_resolve_host are listed there; see docs/ims.md, "DNS"):
 *   NXDOMAIN for the domain                           PERMANENT 5.1.2
 *   a null MX (RFC 7505: one MX, preference 0, ".")   PERMANENT 5.1.10
 *   no MX and no address of the domain                PERMANENT 5.4.4
 *   no exchanger has an address, all for good         PERMANENT 5.4.4
 *     (NXDOMAIN, NODATA, an invalid name)
 *   SERVFAIL, REFUSED, timeout, refused connection,   TRANSIENT 4.4.3
 *   a malformed answer (for the MX query, or for the
 *   address queries of every exchanger left without
 *   an address when at least one of them failed so)
 *   out of memory                                     TRANSIENT 4.3.0
 *   every destination is this gateway (ims_dns_drop_self)  PERMANENT 5.4.6 */
typedef struct ims_dns_result {
    ims_dns_status status;
    char code[12];               /* enhanced status code: "2.0.0", "4.4.3", "5.1.2", ... */
    char text[IMS_DNS_TEXT_MAX]; /* one line for NDRs and logs ("" when OK), e.g. "DNS lookup
                                  * of MX for example.com failed: SERVFAIL" */
    char domain[SMTP_DOMAIN_MAX + 1];
    bool implicit;     /* no MX records: the domain's own addresses (RFC 5321 5.1) */
    size_t skipped;    /* exchangers left out: no address, or their lookups failed */
    ims_dns_target *v; /* the destinations in the order to try them */
    size_t n;
} ims_dns_result;

/* ims_dns_mx_fn - a lookup finished. r is the caller's: free it with ims_dns_result_free
 * (it may be kept past the callback). Runs only inside ims_dns_process, never inside
 * ims_dns_resolve_mx or ims_dns_resolve_host. It may start new lookups; it must not free d. */
typedef void (*ims_dns_mx_fn)(void *arg, ims_dns_result *r);

/* ims_router_family - the address families to deliver to for domain: the AddressFamily of
 * the most specific routing entry that matches it (any, ipv4 or ipv6), IMS_DNS_ANY when none
 * says. For receivers that refuse one family. */
ims_dns_family ims_router_family(ims_router *r, const char *domain);

/* ims_dns_server_parse - one DnsServers line: "192.0.2.53", "192.0.2.53:5353", "2001:db8::53",
 * "[2001:db8::53]" or "[2001:db8::53]:5353" (numeric addresses only, port 1 to 65535, no
 * blanks), written canonically to out (n bytes) as c-ares takes it: "192.0.2.53",
 * "192.0.2.53:5353", "[2001:db8::53]:53" (IPv6 always with its port). Returns 0 or -1 (a
 * malformed line, or out too small). */
int ims_dns_server_parse(const char *text, char *out, size_t n);
/* ims_dns_servers_join - DnsServers (s's lines, each parsed as above) joined by commas into
 * out (n bytes) for ims_dns_options' servers: "" when there are none (/etc/resolv.conf).
 * Returns 0, EINVAL (a line does not parse: ims_settings_load lets none through) or ENOSPC
 * (more than n - 1 bytes, or IMS_DNS_SERVERS_MAX; out is then ""). */
int ims_dns_servers_join(const ims_settings *s, char *out, size_t n);

/* ims_dns_global_init - ares_library_init. Returns 0 or EIO. */
int ims_dns_global_init(void);
/* ims_dns_global_cleanup - ares_library_cleanup, after the last ims_dns_free. */
void ims_dns_global_cleanup(void);

/* ims_dns_new - a resolver with opt (copied). The equal-preference shuffle is seeded from
 * base_random. *out: free with ims_dns_free. Returns 0, EINVAL (bad servers list, timeout or
 * tries out of range, no sock_fn), ENOMEM, or EIO (c-ares could not start, e.g. an
 * unreadable resolv.conf). */
int ims_dns_new(const ims_dns_options *opt, ims_dns **out);
/* ims_dns_seed - reseed the equal-preference shuffle (tests: a fixed order for a seed). */
void ims_dns_seed(ims_dns *d, uint64_t seed);
/* ims_dns_free - close the sockets (sock_fn is told), drop the lookups in progress without
 * calling their callbacks, free d. NULL is ignored. Not from inside a callback of d. */
void ims_dns_free(ims_dns *d);

/* ims_dns_resolve_mx - start looking up where mail for domain goes: its MX records, sorted
 * by preference, equal preferences in random order (RFC 5321 5.1), and each exchanger's
 * addresses of the families asked, IPv6 first and interleaved for IMS_DNS_ANY, each family
 * in the order DNS gave it; an address already listed for a better exchanger is not
 * repeated. No MX records: the domain's own addresses, preference 0. Exchangers whose
 * names are invalid or have no address are skipped. done(arg, result) is called exactly once
 * from ims_dns_process (unless d is freed first). Returns 0, EINVAL (domain is not a valid
 * name, or family unknown: no callback) or ENOMEM (no callback). */
int ims_dns_resolve_mx(ims_dns *d, const char *domain, ims_dns_family family, ims_dns_mx_fn done,
                       void *arg);
/* ims_dns_resolve_host - the addresses of one host (a smart host given by name): its A/AAAA
 * records of the families asked, as ims_dns_resolve_mx orders an exchanger's; no MX lookup.
 * done(arg, result) is called exactly once from ims_dns_process (unless d is freed first);
 * result->domain and result->v[i].name are host, preference 0, implicit false. NXDOMAIN or
 * no address: PERMANENT 5.4.4 ("host <h> not found" / "host <h> has no [IPv4 |IPv6 ]address");
 * SERVFAIL, REFUSED, timeout, refused connection, malformed answer: TRANSIENT 4.4.3 (out of
 * memory: 4.3.0). A host that is a numeric address (IPv4, or IPv6 without brackets) is
 * answered without DNS (still from ims_dns_process, not inside this call): that address, or
 * PERMANENT 5.4.4 when it is not of a family asked or is unspecified (0.0.0.0/8, ::).
 * Returns 0, EINVAL (host is neither a valid name nor a numeric address, or family unknown:
 * no callback) or ENOMEM (no callback). */
int ims_dns_resolve_host(ims_dns *d, const char *host, ims_dns_family family, ims_dns_mx_fn done,
                         void *arg);
/* ims_dns_process - fd_read / fd_write are ready (IMS_DNS_NO_FD: none; call so when
 * ims_dns_timeout's time has come), then run the callbacks of finished lookups. */
void ims_dns_process(ims_dns *d, int fd_read, int fd_write);
/* ims_dns_timeout - true and *tv = how long until ims_dns_process(d, IMS_DNS_NO_FD,
 * IMS_DNS_NO_FD) is due (zero when finished lookups wait for their callbacks); false when
 * no lookup is in progress (no timer needed). */
bool ims_dns_timeout(ims_dns *d, struct timeval *tv);
/* ims_dns_pending - lookups started whose callbacks have not run yet. */
size_t ims_dns_pending(const ims_dns *d);

/* ims_dns_result_free - free r and its list. NULL is ignored. */
void ims_dns_result_free(ims_dns_result *r);
/* ims_dns_status_name - "OK", "transient", "permanent". */
const char *ims_dns_status_name(ims_dns_status s);

/* ims_dns_self - where this gateway takes mail: its listeners (ims_settings' listen, from
 * ListenAddresses; 0.0.0.0 means every IPv4 address in local, :: every address in local,
 * both families, as Linux's dual-stack sockets do) and the machine's own interface
 * addresses. Loopback is not
 * assumed: 127.0.0.2 is another host unless it is in local or a listener. */
typedef struct ims_dns_self {
    const ims_listen *listen;
    size_t nlisten;
    const smtp_ip *local;
    size_t nlocal;
} ims_dns_self;

/* ims_dns_drop_self - loop detection (no DNS): the destinations of r that are this gateway
 * (an address and port it listens on, port being where delivery connects) mark our
 * preference; every entry with that preference or a worse one goes (RFC 5321 5.1: only
 * exchangers better than ourselves may be tried). When nothing is left r becomes PERMANENT
 * 5.4.6 ("mail for <domain> loops back to myself"). An r that is not OK is left alone.
 * Returns the number of entries dropped. */
size_t ims_dns_drop_self(ims_dns_result *r, const ims_dns_self *self, uint16_t port);

/* --- reports (NDRs and DSNs) ------------------------------------------------------------- */

/* Delivery status notifications (RFC 3464, RFC 3461) with the original's NDR text (lib/ims
 * report.c): a pure builder, no I/O of its own. The caller gives the original message as its
 * spool file has it (the envelope and a way to read the content), the recipients to report
 * and our names; the report comes out through a write callback as a new message (CRLF lines,
 * none over IMS_REPORT_LINE_MAX octets before its CRLF, no bare CR or LF) to be spooled from
 * the null sender to the original sender (design notes: "NDRs are messages"). docs/ims.md,
 * "Non-delivery reports", shows the format.
 *
 * The message:
 *   From: postmaster, To: <original sender>, Subject: "Undeliverable: <subject>" when a
 *   recipient failed, else "Delayed: <subject>" when one is delayed, else "Delivered:" or
 *   "Relayed:" (relayed or expanded); the subject is the original's raw header value, unfolded,
 *   control characters as spaces, cut to IMS_REPORT_SUBJECT_MAX bytes (never inside a UTF-8
 *   sequence), encoded-words and 8-bit bytes kept; Date, Message-ID <token@mta>,
 *   MIME-Version, Auto-Submitted: auto-replied (RFC 3834), Content-Type: multipart/report;
 *   report-type=delivery-status. Parts:
 *   1. text/plain, us-ascii: the original's NDR text (bytes outside ASCII as '?'), per
 *      recipient "<address> on <date>", a reason, the diagnostic and the line
 *      "MSEXCH:IMS:<Org>:<Site>:<Server> <code> [(<hex>)] <text>" (ims_report_diag_map);
 *   2. message/delivery-status: Reporting-MTA, Original-Envelope-Id (ENVID, xtext-decoded),
 *      Received-From-MTA (the client's HELO name and address), Arrival-Date; then per
 *      recipient Original-Recipient (ORCPT, xtext-decoded; a decoded byte that is not
 *      printable ASCII is kept as its "+XX"), Final-Recipient, Action, Status, Remote-MTA,
 *      Diagnostic-Code ("smtp; <reply>" for a peer's reply, "X-IMS; <text>" for ours),
 *      Last-Attempt-Date, Will-Retry-Until (delayed only);
 *   3. the original: message/rfc822 (all of it) when a recipient failed and RET was FULL or
 *      not given, or when RET=FULL for delay and success reports, and the content is at most
 *      IMS_REPORT_RETURN_MAX bytes; otherwise text/rfc822-headers (its header section, at most
 *      IMS_REPORT_HEADERS_MAX bytes, cut after the last whole line). Its line ends are made
 *      CRLF and lines over IMS_REPORT_LINE_MAX are broken with CRLF SP.
 * Parts holding 8-bit bytes are labelled Content-Transfer-Encoding: 8bit (and the multipart
 * too); info.eightbit tells the caller to spool the report as 8BITMIME.
 *
 * Who is reported (RFC 3461 4.1): NOTIFY=NEVER never; failed when NOTIFY is absent or has
 * FAILURE; delayed when it has DELAY, or is absent and opt.delay_default (DelayNotification);
 * delivered, relayed and expanded only with SUCCESS.
 *
 * The boundary "=_IMS_<token>.<k>=" is chosen after a first pass over everything the report
 * will hold (the returned content is read twice): k is the smallest number for which that
 * string occurs nowhere in it, so the boundary appears only as the delimiters, whatever the
 * content ("=_" cannot occur in quoted-printable or base64 text either). */
#define IMS_REPORT_LINE_MAX 998          /* RFC 5322 2.1.1: octets of a line before its CRLF */
#define IMS_REPORT_FOLD 78               /* RFC 5322 2.1.1: header lines folded at a space */
#define IMS_REPORT_TEXT_WIDTH 76         /* lines of the text part wrapped at a space */
#define IMS_REPORT_SUBJECT_MAX 512       /* bytes of the original's subject (and Date) kept */
#define IMS_REPORT_FIELD_MAX 1024        /* bytes of a diagnostic, an address, a name kept */
#define IMS_REPORT_RETURN_MAX (1u << 20) /* the whole original is returned up to this size */
#define IMS_REPORT_HEADERS_MAX 65536     /* bytes of the original's header section returned */
#define IMS_REPORT_TOKEN_MAX 48          /* bytes of the caller's token ([A-Za-z0-9.-]) */
#define IMS_REPORT_BOUNDARY_SLOTS 65536  /* values of k tried (see above) */
#define IMS_REPORT_CHUNK 16384           /* bytes read, and written, at a time */
#define IMS_REPORT_NAME_MAX 128          /* bytes of Org, Site and Server, NUL included */

/* What happened to a recipient (RFC 3464 2.3.3). */
typedef enum ims_report_action {
    IMS_REPORT_FAILED,    /* permanently undeliverable: an NDR */
    IMS_REPORT_DELAYED,   /* not delivered yet, still being retried */
    IMS_REPORT_DELIVERED, /* delivered to the recipient's mailbox */
    IMS_REPORT_RELAYED,   /* handed to a mail system that sends no further DSNs */
    IMS_REPORT_EXPANDED,  /* delivered and forwarded to several addresses */
} ims_report_action;

/* ims_report_rcpt - one recipient to report. Strings are the caller's, NUL-terminated, and
 * longer ones are cut to IMS_REPORT_FIELD_MAX bytes; CR, LF and other controls in them are
 * written as spaces, 8-bit bytes as '?' (the text part and the delivery-status fields are
 * ASCII). */
typedef struct ims_report_rcpt {
    const char *address; /* the forward-path without <>; required */
    const char *orcpt;   /* ORCPT= "addr-type;xtext" as given, or NULL */
    unsigned notify;     /* SMTP_NOTIFY_* bits as given; 0: no NOTIFY */
    ims_report_action action;
    const char *status;     /* RFC 3463 code "5.1.1", class 2, 4 or 5; required */
    const char *remote_mta; /* the peer's name or "[ip]", or NULL */
    const char *diagnostic; /* smtp_result_format's text ("550 5.1.1 user unknown") or a
                             * local reason; NULL: none */
    unsigned smtp_code;     /* the peer's reply code when diagnostic is its reply; 0: local */
    time_t last_attempt;    /* 0: no Last-Attempt-Date (the text then says the report's date) */
    time_t retry_until;     /* delayed: Will-Retry-Until; 0: none */
} ims_report_rcpt;

/* ims_report_read_fn - copy up to n bytes of the content from offset off into p, *got the
 * count (0 only at the end). Must give the same bytes each time. 0 or an errno value. */
typedef int (*ims_report_read_fn)(void *arg, uint64_t off, void *p, size_t n, size_t *got);
/* ims_report_write_fn - take n bytes of the report. 0 or an errno value. */
typedef int (*ims_report_write_fn)(void *arg, const void *p, size_t n);

/* ims_report_original - the message reported on, as ims_spool_file gives it. */
typedef struct ims_report_original {
    const char *sender;    /* reverse-path without <>; "" is the null sender (refused) */
    time_t arrival;        /* when it was received */
    const char *envid;     /* ENVID= xtext, or NULL */
    smtp_ret ret;          /* RET=, SMTP_RET_NONE when absent */
    const char *client_ip; /* numeric, or NULL */
    const char *helo;      /* the client's HELO/EHLO name, or NULL */
    uint64_t size;         /* bytes of content (CRLF lines, as received) */
    ims_report_read_fn read;
    void *read_arg;
} ims_report_original;

/* ims_report_fd - a read source for ims_report_read_fd: the content is len bytes of fd from
 * off (a spool file: ims_spool_file's content_off and content_len). */
typedef struct ims_report_fd {
    int fd;
    uint64_t off, len;
} ims_report_fd;
/* ims_report_read_fd - an ims_report_read_fn over pread(2); arg is an ims_report_fd. */
int ims_report_read_fd(void *arg, uint64_t off, void *p, size_t n, size_t *got);

/* ims_report_names - who reports. */
typedef struct ims_report_names {
    char mta[SMTP_DOMAIN_MAX + 1]; /* Reporting-MTA and the Message-ID's domain: our FQDN */
    char org[IMS_REPORT_NAME_MAX]; /* for "MSEXCH:IMS:<org>:<site>:<server>" */
    char site[IMS_REPORT_NAME_MAX];
    char server[IMS_REPORT_NAME_MAX];
    char postmaster[SMTP_PATH_MAX]; /* the From address: "postmaster@<SiteDomain>" */
} ims_report_names;

/* ims_report_names_from_settings - mta from ims_settings_fqdn; org and site from SiteDN
 * "/o=<org>/ou=<site>[/cn=...]" (keys in any case; "" when missing); server from HomeDSA, or
 * host when HomeDSA is empty; postmaster@SiteDomain (@mta when SiteDomain is empty). Values
 * longer than their fields are cut. */
void ims_report_names_from_settings(const ims_settings *s, const char *host, ims_report_names *out);

typedef struct ims_report_options {
    const ims_report_names *names; /* required */
    const char *token;             /* unique (a new queue id): 1 to IMS_REPORT_TOKEN_MAX bytes of
                                    * [A-Za-z0-9.-]; the Message-ID and the boundary come from it */
    time_t date;                   /* the report's Date */
    bool delay_default;        /* DelayNotification: delay reports for recipients without NOTIFY */
    ims_report_write_fn write; /* required */
    void *write_arg;
} ims_report_options;

/* What ims_report_build wrote. */
typedef struct ims_report_info {
    size_t reported; /* recipients in the report */
    bool full;       /* the whole original was returned (message/rfc822) */
    bool cut;        /* it would have been, but was over IMS_REPORT_RETURN_MAX: headers */
    bool eightbit;   /* the report holds 8-bit bytes: spool and send it as 8BITMIME */
    uint64_t size;   /* bytes written */
} ims_report_info;

/* ims_report_build - write the report on orig for those of rcpts[0..n) that NOTIFY lets be
 * reported. Returns 0 (info filled; info may be NULL); ENOMSG: the sender is the null sender,
 * nothing is reported (log event 4120, move the message to Bad); ELOOP: the original is
 * itself a report (Content-Type multipart/report) or automatic (Auto-Submitted other than
 * "no"), nothing is reported; ENODATA: NOTIFY leaves no recipient to report (nothing
 * written); EINVAL: a required field missing, a bad token or status; EMSGSIZE: every one of
 * the IMS_REPORT_BOUNDARY_SLOTS boundaries occurs in the report (that takes more than
 * 65536 crafted strings); ENOMEM; or the error of read or write (what was written so far is
 * the caller's to discard). Nothing is written before the checks have passed. */
int ims_report_build(const ims_report_original *orig, const ims_report_rcpt *rcpts, size_t n,
                     const ims_report_options *opt, ims_report_info *info);

/* The Exchange diagnostic of a recipient: "<code> (<hex>) <text>" in the MSEXCH line. */
typedef struct ims_report_diag {
    unsigned code;    /* 3000 + the peer's reply code; 3902, 3903; 0 */
    const char *hex;  /* "000C05A6" and the like, or NULL: none shown (static) */
    const char *text; /* static, or NULL: the recipient's diagnostic is the text */
} ims_report_diag;

/* ims_report_diag_map - the Exchange diagnostic for a recipient's status and reply code:
 *   smtp_code 200-599 (a peer's reply)          3000+code   -          the reply
 *   x.1.1  unknown mailbox                       0       000C05A6   Unknown Recipient
 *   x.1.4  ambiguous address                     0       000C0595   Ambiguous Recipient
 *   x.1.2, x.1.10, x.4.4  no such host / route   3902    000B099C   Host Unknown
 *   x.2.3, x.3.4  message too big                3903    000B099C   Message exceeds size limit.
 *   x.4.6  routing loop, hop count               0       00120270   Too Many Hops
 *   x.5.3  too many recipients                   0       00010256   Too many recipients.
 *   anything else                                0       -          the diagnostic
 * The text part's reason line above it says what the status means (for x.4.x the original's
 * "Unable to deliver the message due to a communications failure", KB Q147922); the stage a
 * result was decided at does not change the code. status may be NULL. */
void ims_report_diag_map(const char *status, unsigned smtp_code, ims_report_diag *out);

/* --- the service ------------------------------------------------------------------------ */

typedef struct ims_service ims_service;

/* ims_service_start - everything between "settings read, listeners bound, privileges final"
 * and "ready": recreate the working folders under RootDir (In, Out, Work, Log, Pickup,
 * Pickup\Archive, In\Archive, Out\Archive); create the profile MSExchangeIMC <suffix> bound
 * to this process with the Exchange service configured for the gateway mailbox; log on with
 * it; open the message store under <IMS_ROOT>/store and the gateway mailbox with its MTS-IN,
 * MTS-OUT and Bad folders (made when missing); purge IMS profiles earlier starts left. On
 * failure the event is logged, what was done is undone (no profile key is left) and its ID
 * returned: IMS_EV_MAPI_INIT_FAILED when the profile cannot be made or the logon fails,
 * IMS_EV_INTERNAL for the folders or the store. reg and mapisvc_path (NULL: default) must
 * outlive the service. */
int ims_service_start(const ims_settings *s, reg_ctx *reg, const char *mapisvc_path, ims_log *log,
                      ims_service **out);
/* ims_service_start_with - ims_service_start with the MAPISVC.INF catalogue already read,
 * which it takes over whatever the outcome: imsd reads it before it gives up root, so a
 * catalogue its account cannot read (a checkout in /root) still serves. */
int ims_service_start_with(const ims_settings *s, reg_ctx *reg, mapisvc *catalogue, ims_log *log,
                           ims_service **out);
/* ims_service_profile - the profile's name, "MSExchangeIMC 3FA9C0D21E". */
const char *ims_service_profile(const ims_service *svc);
/* ims_service_gateway - the gateway mailbox's Maildir (valid while the service lives). */
const char *ims_service_gateway(const ims_service *svc);
/* ims_service_stop - log off, delete the profile, log IMS_EV_SHUTDOWN, free everything. */
void ims_service_stop(ims_service *svc);

/* --- the control socket's wire format (imsd's run/control, imsctl) ----------------------
 * A request is one line of words separated by TAB, ended by LF; the answer is body lines
 * (one starting with '.' gets another '.' in front, as SMTP's DATA), then ".OK" or
 * ".ERR <text>". Pure functions, shared by both ends. */

#define IMS_CTL_REQUEST_MAX (64 * 1024) /* bytes of a request line, LF included */
#define IMS_CTL_ARGS_MAX 4096           /* words in one request */

/* ims_ctl_request - append the request line for argv[0..argc-1] to out. Returns 0, EINVAL
 * (no words, an empty command, or a word holding TAB, CR or LF), E2BIG (longer than
 * IMS_CTL_REQUEST_MAX or more than IMS_CTL_ARGS_MAX words) or ENOMEM. */
int ims_ctl_request(buf *out, int argc, const char *const *argv);
/* ims_ctl_split - split a request line (len bytes without its LF; one trailing CR is dropped)
 * into words at TABs, in place (TABs become NULs; line[len] must be writable and becomes NUL).
 * argv gets the words and a NULL after them, so it must hold max + 1 pointers. Returns the
 * number of words (0 for an empty line), or -1 when there are more than max. */
int ims_ctl_split(char *line, size_t len, char **argv, int max);
/* ims_ctl_stuff - append len bytes of body to out, a '.' put before each line that starts
 * with '.'. *bol says whether the next byte starts a line (true before the first call) and is
 * kept up to date, so a line may come in pieces. Returns 0 or ENOMEM. */
int ims_ctl_stuff(buf *out, const void *data, size_t len, bool *bol);

typedef enum ims_ctl_kind {
    IMS_CTL_BODY, /* a body line */
    IMS_CTL_OK,   /* the final ".OK" */
    IMS_CTL_ERR,  /* the final ".ERR <text>" */
    IMS_CTL_BAD,  /* a line starting with '.' that is none of these */
} ims_ctl_kind;
/* ims_ctl_parse - what a received line (len bytes without its LF) is; *text and *n point into
 * line: the body line without its stuffing dot, or the error text (may be empty). */
ims_ctl_kind ims_ctl_parse(const char *line, size_t len, const char **text, size_t *n);

/* --- the Prometheus text exposition format (version 0.0.4) --------------------------------
 * Pure writers into a buf: imsd's /metrics and their unit test. Names must match
 * [a-zA-Z_:][a-zA-Z0-9_:]* (the callers' constants); label values and help texts are escaped
 * here. Each returns 0, EINVAL (a bad name) or ENOMEM. */

/* ims_latency - a histogram of delivery latencies (arrival in the spool to final delivery of
 * one recipient), in fixed buckets of IMS_LATENCY_BOUNDS seconds (upper bounds, inclusive, as
 * Prometheus' le), the last count for larger ones. Counts per bucket, not cumulative. Arrival
 * times are whole seconds (the spool's), so a latency is known to the second. */
#define IMS_LATENCY_BUCKETS 11
#define IMS_LATENCY_BOUNDS                                                                         \
    {                                                                                              \
        1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 432000                                     \
    }
typedef struct ims_latency {
    uint64_t count[IMS_LATENCY_BUCKETS + 1]; /* [IMS_LATENCY_BUCKETS]: above the last bound */
    uint64_t sum;                            /* seconds, all observations */
} ims_latency;
/* ims_latency_add - one observation of seconds (negative: 0). */
void ims_latency_add(ims_latency *h, int64_t seconds);
/* ims_latency_bound - bucket i's upper bound in seconds (i < IMS_LATENCY_BUCKETS). */
unsigned ims_latency_bound(size_t i);

typedef enum ims_metric_type {
    IMS_METRIC_COUNTER,
    IMS_METRIC_GAUGE,
    IMS_METRIC_HISTOGRAM,
} ims_metric_type;

/* ims_metric_head - "# HELP name help" and "# TYPE name type": once per metric family,
 * before its samples. */
int ims_metric_head(buf *out, const char *name, const char *help, ims_metric_type type);
/* ims_metric_sample - "name{k="v",...} value": labels is NULL or pairs k, v ending in NULL. */
int ims_metric_sample(buf *out, const char *name, const char *const *labels, uint64_t value);
/* ims_metric_histogram - the histogram's samples: name_bucket{...,le="b"} for each bound
 * (cumulative) and le="+Inf", then name_sum and name_count. */
int ims_metric_histogram(buf *out, const char *name, const char *const *labels,
                         const ims_latency *h);

/* === the inbound spool ===================================================================
 * RootDir\In with group commit, delivery from it into the recipients' Maildirs through the
 * gateway's MTS-IN, and the message tracking log. Functions return 0 or an errno value. The
 * spool runs two threads of its own (a committer and a deliverer) but calls the caller back
 * only in the caller's thread: ims_spool_fd() becomes readable when something is ready and
 * ims_spool_dispatch() runs the completion callbacks and logs the spool's events there.
 * lib/ims does not depend on an event loop: the program polls the descriptor with its own. */

/* Event IDs (source MSExchangeIMC) the spool logs, with the original's numbers. */
#define IMS_EV_SPOOL_RECOVERED 1003   /* start-up recovery summary (ours) */
#define IMS_EV_SPOOL_MOVE_FAILED 4055 /* cannot move a file from Work to In */
#define IMS_EV_SPOOL_OPEN_FAILED 4070 /* a temporary message file could not be written */
#define IMS_EV_SPOOL_ARCHIVED 4117    /* unreadable spool file moved to In\Archive */
#define IMS_EV_SPOOL_DEFERRED 4182    /* delivery into a mailbox failed: retried later */

/* Message tracking event numbers (KB Q173364). */
#define IMS_TRACK_RECEIVED_INBOUND 1012
#define IMS_TRACK_TRANSFERRED_INBOUND 1013

#define IMS_QUEUE_ID_LEN 16           /* upper-case hex digits: seconds, then a counter */
#define IMS_SPOOL_MAX_FIELD 4096      /* bytes of one envelope field (an address, a path) */
#define IMS_SPOOL_MAX_RCPTS 65536     /* recipients of one message */
#define IMS_SPOOL_RETRY_MIN_MS 1000   /* first delivery retry after a failure */
#define IMS_SPOOL_RETRY_MAX_MS 300000 /* the backoff doubles up to this */
#define IMS_SPOOL_IO_THREADS 16       /* threads that do a round's file work together */

/* --- the envelope ----------------------------------------------------------------------- */

/* A recipient as the SMTP server resolved it. Strings must not hold CR, LF or TAB. */
typedef struct ims_rcpt {
    const char *address;  /* the forward-path without <> */
    const char *maildir;  /* IMS_ROUTE_LOCAL: absolute path of the mailbox's Maildir (its new/
                           * gets the copy); NULL for the other routes */
    const char *notify;   /* DSN NOTIFY= value, or NULL */
    const char *orcpt;    /* DSN ORCPT= value, or NULL */
    ims_route_kind route; /* where it goes (0, IMS_ROUTE_LOCAL, unless said) */
    const char *dest;     /* IMS_ROUTE_DNS: the domain; IMS_ROUTE_SMARTHOST: the host spec as
                           * ims_host_parse takes it; NULL for LOCAL */
} ims_rcpt;

typedef struct ims_envelope {
    const char *sender;    /* the reverse-path without <>; "" is the null sender */
    const ims_rcpt *rcpts; /* 1 to IMS_SPOOL_MAX_RCPTS */
    size_t nrcpt;
    const char *client_ip; /* numeric, no port or brackets ("192.0.2.1", "2001:db8::1");
                            * NULL: "unknown" */
    const char *helo;      /* the client's HELO/EHLO argument; NULL: "unknown" */
    const char *host;      /* our name in Received; NULL: the spool's host */
    time_t time;           /* when the message was received; 0: now */
    const char *envid;     /* DSN ENVID=, or NULL */
    const char *ret;       /* DSN RET= (FULL or HDRS), or NULL */
    /* How the client's connection was protected, RFC 3848's TLS: the protocol and the cipher
     * as the TLS library names them, one space between ("TLSv1.3 TLS_AES_256_GCM_SHA384"),
     * each printable ASCII without spaces or parentheses; NULL or "": plain text. Kept in the
     * spool file ("tls <text>"); Received says "with ESMTPS" and "(using <protocol> with
     * cipher <cipher>)". */
    const char *tls;
    /* The account the client authenticated as (SMTP AUTH, RFC 4954); NULL or "": none. Kept
     * in the spool file ("auth <account>"); Received says "with ESMTPA" (ESMTPSA with tls)
     * but not the account's name (privacy, as Postfix by default). */
    const char *auth;
    /* MTS-OUT: the name of the message's claim file in the spool's pickup_dir (a plain file
     * name, not starting with '.'), removed once the message is durable; NULL for other
     * mail. Kept in the spool file ("pickup <name>"). */
    const char *pickup;
    /* The Pickup directory: the name of the message's claim file in the spool's
     * dropdir_claim_dir, as pickup is for MTS-OUT (at most one of the two). Kept in the
     * spool file ("dropdir <name>"). */
    const char *dropdir;
    /* What the tracking log's received lines show in the client column instead of the
     * client's address (the Pickup directory: "pickup uid 1001 alice"); NULL: client_ip.
     * Not kept in the spool file. */
    const char *origin;
} ims_envelope;

/* --- the tracking log ------------------------------------------------------------------- */

/* One file per GMT day, <dir>/yyyymmdd.log, one tab-separated line per event and recipient:
 *   date-time GMT ("2024-05-01 13:45:07 GMT"), event number, queue id, sender ("<>" for the
 *   null sender), recipient, size in bytes (of the content as received), client IP, our host.
 * Lines are written whole by write() on an O_APPEND descriptor (one line, or the lines held
 * for a round, below), so writers in several threads or processes never interleave inside a
 * line. */
typedef struct ims_tracking ims_tracking;

/* ims_tracking_open - the log in dir (made when missing, mode 0750). Thread-safe. */
int ims_tracking_open(const char *dir, ims_tracking **out);
/* ims_tracking_write - append one line; `when` chooses the file and the first column. Tabs
 * and line breaks in the fields are written as spaces. */
int ims_tracking_write(ims_tracking *t, time_t when, unsigned event, const char *queue_id,
                       const char *sender, const char *rcpt, uint64_t size, const char *client_ip,
                       const char *host);
/* ims_tracking_write_tls - the same with one more field at the end: how the message left
 * ("TLSv1.3 TLS_AES_256_GCM_SHA384" or "plain"); NULL: none (ims_tracking_write's line). */
int ims_tracking_write_tls(ims_tracking *t, time_t when, unsigned event, const char *queue_id,
                           const char *sender, const char *rcpt, uint64_t size,
                           const char *client_ip, const char *host, const char *tls);
void ims_tracking_close(ims_tracking *t);

/* The extended line (tracking.c): after the eight fields above come, in this order, the TLS
 * field, the remote MTA ("mx.example.net[192.0.2.7]"), the remote's reply ("250 2.0.0 Ok"),
 * the message's Message-ID (the header's value, "<a@b>"), the related queue id (on 1017: the
 * report's own queue id) and the actor (administrator actions: "root (uid 0)"). Trailing
 * empty fields are left off, so a line without the new fields is the old line: readers take
 * 8 or more fields. */
#define IMS_TRACK_FIELDS 14      /* fields of a full line */
#define IMS_TRACK_FIELD_MAX 1024 /* bytes kept of one text field (longer ones are cut) */
#define IMS_TRACK_LINE_MAX (IMS_TRACK_FIELDS * (IMS_TRACK_FIELD_MAX + 1) + 64)
#define IMS_TRACK_HELD_BYTES (4 * IMS_TRACK_LINE_MAX) /* lines kept in a hold (tracking.c) */
#define IMS_TRACK_MSGID_SCAN 16384 /* bytes of a message's header searched for Message-ID */

/* IMS's own event numbers (not the original's: its numbers stop at 1017 and later Exchange
 * versions used 1018 to 1036 for other things, so ours start at 1100). */
#define IMS_TRACK_DEFERRED 1100          /* delivery attempt failed, will retry (remote, reply) */
#define IMS_TRACK_ADMIN_DELETED_NDR 1101 /* deleted by the administrator, NDR to the sender */
#define IMS_TRACK_ADMIN_DELETED 1102     /* deleted by the administrator without an NDR */
#define IMS_TRACK_ADMIN_HELD 1103        /* held by the administrator */
#define IMS_TRACK_ADMIN_RELEASED 1104    /* released by the administrator */
#define IMS_TRACK_ADMIN_RETRY 1105       /* retry requested by the administrator */

/* ims_track_line - one line's fields. For writing, NULL and "" mean empty; for reading
 * (ims_track_parse) every string points into the parsed buffer, "" when absent. */
typedef struct ims_track_line {
    time_t when;            /* GMT */
    unsigned event;         /* IMS_TRACK_* */
    const char *qid;        /* queue id */
    const char *sender;     /* "<>" (writing: "" too) for the null sender */
    const char *rcpt;       /* recipient */
    uint64_t size;          /* bytes of content */
    const char *client;     /* client IP, or the origin ("pickup uid 1001 alice") */
    const char *host;       /* our host */
    const char *tls;        /* how it left ("TLSv1.3 <cipher>" or "plain") */
    const char *remote;     /* the remote MTA */
    const char *reply;      /* the remote's reply, verbatim (first line) */
    const char *message_id; /* the Message-ID header's value */
    const char *ref;        /* a related queue id: on 1017 the report's */
    const char *actor;      /* who did it (administrator actions): "root (uid 0)" */
} ims_track_line;

/* ims_tracking_put - append l as one line (one write(), as ims_tracking_write). Tabs and line
 * breaks in the fields are written as spaces; each text field is cut at IMS_TRACK_FIELD_MAX
 * bytes. Thread-safe. 0 or an errno value. */
int ims_tracking_put(ims_tracking *t, const ims_track_line *l);
/* ims_tracking_hold, ims_tracking_release - the lines put (by any thread) from a hold until
 * its release are kept in memory, in order, and written in one append at the release that
 * ends the last hold: a round of many messages costs one write, not one a line. Held lines
 * are written earlier when IMS_TRACK_HELD_BYTES fill, when a line of another GMT day comes,
 * and at ims_tracking_close. Hold only around work that does not wait. release returns 0
 * or the errno value of that append (a put in a hold returns 0 once its line is kept). NULL
 * t: nothing. */
void ims_tracking_hold(ims_tracking *t);
int ims_tracking_release(ims_tracking *t);
/* ims_tracking_admin - the line of an administrator's action (IMS_TRACK_ADMIN_*) on qid's
 * recipient rcpt (NULL: the message), now, by actor (ims_tracking_actor's text). */
int ims_tracking_admin(ims_tracking *t, unsigned event, const char *qid, const char *sender,
                       const char *rcpt, const char *actor);
/* ims_tracking_actor - "name (uid N)" for uid into out (size bytes; "uid N" alone when the
 * user database does not know it). Returns out. */
char *ims_tracking_actor(uid_t uid, char *out, size_t size);
/* ims_track_message_id - the Message-ID field's value in a message's header (the first n
 * bytes of the content, CRLF or LF line ends; folded lines unfolded, outer blanks dropped)
 * into out (size bytes, cut to fit). Looks no further than the header's end. Returns whether
 * the header had one. */
bool ims_track_message_id(const char *head, size_t n, char *out, size_t size);
/* ims_track_event_name - "Received inbound", ... for an event number; "Event" when unknown. */
const char *ims_track_event_name(unsigned event);

/* ims_track_parse - split line (n bytes, without its line end; modified in place: tabs become
 * NULs) into l. EBADMSG when it is not a tracking line (fewer than 8 fields, a bad time or
 * number); fields beyond IMS_TRACK_FIELDS are ignored. */
int ims_track_parse(char *line, size_t n, ims_track_line *l);

/* --- reading the tracking log (trackread.c) ---------------------------------------------
 * A query finds the lines that match all its criteria in the day files of its time range,
 * then the whole life of each message so found: every line with its queue id, and those of
 * the reports its 1017 lines name, from IMS_TRACK_LIFE_DAYS before the range's first day to
 * IMS_TRACK_LIFE_DAYS after its last. A sidecar index per day file (<dir>/.index/
 * yyyymmdd.idx: hashes of the queue id, Message-ID, sender and recipient to line offsets,
 * sorted) makes that fast; it is built when missing, extended when the log grew (the log is
 * append-only) and built again when it does not match; deleting it is always safe. When it
 * cannot be saved (permissions), each query builds it in memory. Made by root, it is given
 * to the owner of dir (the service account). */
#define IMS_TRACK_LIFE_DAYS 7        /* days either side of the range searched for a life */
#define IMS_TRACK_MAX_MESSAGES 10000 /* messages one query returns at most (truncated) */
#define IMS_TRACK_MAX_EVENTS 100000  /* lines of one message kept at most */
#define IMS_TRACK_INDEX_DIR ".index"

typedef struct ims_track_query {
    const char *qid;        /* NULL: any; upper or lower case */
    const char *message_id; /* with or without <>; NULL: any */
    const char *sender;     /* address, case-insensitive; "<>" the null sender; NULL: any */
    const char *rcpt;       /* address, case-insensitive; NULL: any */
    time_t since, until;    /* matching lines have since <= when <= until */
    bool no_index;          /* read the files whole (tests, benchmarks) */
} ims_track_query;

typedef struct ims_track_msg {
    const char *qid;
    const char *message_id; /* "" when no line had one */
    const char *sender;
    ims_track_line *events; /* in time order (file order among equal times) */
    size_t nevents;
} ims_track_msg;

typedef struct ims_track_result {
    ims_track_msg *msgs; /* in the order of their first event */
    size_t nmsgs;
    bool truncated;     /* more than IMS_TRACK_MAX_MESSAGES (or events) matched */
    size_t files_read;  /* day files read whole (no usable index) */
    size_t index_built; /* index files built or extended */
    void *priv;         /* the strings' storage */
} ims_track_result;

/* ims_track_find - run q over the tracking log in dir into *out (the caller's, freed with
 * ims_track_result_free even on failure). 0 (also when nothing matched: nmsgs 0), ENOENT
 * when dir does not exist, or an errno value. */
int ims_track_find(const char *dir, const ims_track_query *q, ims_track_result *out);
void ims_track_result_free(ims_track_result *r);

/* --- time and the scheduler ------------------------------------------------------------ */

/* ims_clock_ms - now, in milliseconds of CLOCK_MONOTONIC: the one clock that schedules and
 * time-outs are measured on. The scheduler never reads it: its callers pass "now" in, so
 * tests drive time as they like. */
uint64_t ims_clock_ms(void);

/* ims_sched - what waits for its next try, earliest first (a binary min-heap: adding,
 * removing and taking the earliest cost O(log n); nothing is ever scanned). The caller embeds
 * an ims_sched_node in each of its items and owns them; the scheduler only orders them. Equal
 * due times come out in the order they were added. Not thread-safe: one owner. */
typedef struct ims_sched_node {
    uint64_t due; /* when it is due (the caller's clock, ims_clock_ms) */
    uint64_t seq; /* the order it was added in, for ties */
    size_t slot;  /* its place + 1 while scheduled; 0 when not */
} ims_sched_node;

typedef struct ims_sched {
    ims_sched_node **heap;
    size_t n, cap;
    uint64_t next_seq;
} ims_sched;

/* ims_sched_init - an empty scheduler. ims_sched_fini frees its array (not the nodes, which
 * are the caller's) and leaves every node unscheduled. */
void ims_sched_init(ims_sched *s);
void ims_sched_fini(ims_sched *s);
/* ims_sched_add - schedule node at due (moved there if it was scheduled). 0 or ENOMEM (the
 * node is then not scheduled). */
int ims_sched_add(ims_sched *s, ims_sched_node *node, uint64_t due);
/* ims_sched_remove - unschedule node (nothing when it is not scheduled). */
void ims_sched_remove(ims_sched *s, ims_sched_node *node);
/* ims_sched_pop_due - the earliest node if it is due at now (due <= now), unscheduled; else
 * NULL. */
ims_sched_node *ims_sched_pop_due(ims_sched *s, uint64_t now);
/* ims_sched_next - *due gets the earliest due time; false when nothing is scheduled. */
bool ims_sched_next(const ims_sched *s, uint64_t *due);
size_t ims_sched_count(const ims_sched *s);

/* --- the spool -------------------------------------------------------------------------- */

typedef struct ims_spool ims_spool;
typedef struct ims_spool_msg ims_spool_msg;

/* done - called once per committed message, in the thread that calls ims_spool_dispatch (or
 * ims_spool_close). err 0: the message is on stable storage under queue_id, answer 250;
 * otherwise an errno value and nothing of it remains: answer 451/452. */
typedef void (*ims_spool_done_fn)(void *arg, int err, const char *queue_id);

typedef struct ims_spool_options {
    /* The gateway mailbox's MTS-IN folder (a Maildir: ".../MSExchangeIMC/.MTS-IN"). NULL: no
     * delivery; committed messages stay in In (a later open with a gateway delivers them). */
    const char *mts_in;
    const char *tracking_dir; /* NULL: no tracking log */
    const char *host;         /* our host name; NULL: gethostname() */
    ims_log *log;             /* events, logged in the dispatching thread; NULL: none */
    bool archive;             /* delivered spool files go to In\Archive instead of away */
    /* Extra time a commit round waits to gather more messages, in microseconds. 0: natural
     * batching only (a round takes whatever arrived while the previous one ran). */
    unsigned commit_window_us;
    unsigned retry_min_ms; /* 0: IMS_SPOOL_RETRY_MIN_MS */
    unsigned retry_max_ms; /* 0: IMS_SPOOL_RETRY_MAX_MS */
    /* Threads that create and sync a round's files together (more concurrent syncs let the
     * block layer merge more cache flushes). 0: IMS_SPOOL_IO_THREADS, also the maximum. */
    unsigned io_threads;
    /* How a round is made durable. false (the default): the round's files are renamed into
     * In, then one syncfs() of the file system makes them durable, data and names together
     * (a file caught in between by a crash fails its checksums at the next start); delivery
     * syncs its MTS-IN copies and new/ folders with one syncfs each when they are two or more.
     * An fdatasync each would cost a disk cache flush each. true (forced when Work and In are
     * on different file systems): an fdatasync per file, issued together by the I/O threads,
     * then the renames and an fsync of In; for a file system shared with heavy writers of
     * other data, which a syncfs would wait for too. */
    bool file_syncs;
    /* The outbound queue (ims_outq_handover): a message whose local recipients are done and
     * whose others are pending moves from In to RootDir's Out, then handover(arg, qid) is
     * called from the spool's delivery thread (it must be thread-safe). NULL: such messages
     * stay in In. */
    void (*handover)(void *arg, const char *qid);
    void *handover_arg;
    /* MTS-OUT's claim directory (ims_pickup_claim_dir), made when missing; NULL: none (an
     * envelope's pickup name is then only recorded). A committed message's claim file is
     * unlinked there, and that made durable (fsync), after the message is durable and
     * before it is queued for delivery, so that no spool file leaves In while its claim may
     * still come back. At open, before delivery starts, a claim whose message is in In
     * (found by its "pickup" line) is unlinked the same way: what is left there was never
     * committed. */
    const char *pickup_dir;
    /* The Pickup directory's claim directory (ims_dropdir_claim_dir), which must exist
     * (ims_dropdir_prepare makes it); NULL: none. Its claims are released and settled as
     * pickup_dir's are, by the envelope's dropdir name. */
    const char *dropdir_claim_dir;
    /* Receipts (RFC 3461 NOTIFY=SUCCESS) for recipients delivered into a mailbox: with
     * report_names set, the delivery thread builds a "delivered" report (report.c) for each
     * such recipient of a message from a non-null sender and hands it to receipt(arg, sender,
     * data, len) -- thread-safe, it copies the data (ims_outq_receipt spools it). A crash
     * between the delivery and the spooling loses the receipt. */
    const ims_report_names *report_names;
    void (*receipt)(void *arg, const char *sender, const void *data, size_t len);
    void *receipt_arg;
} ims_spool_options;

/* ims_spool_open - the spool under root_dir (its In, Work and In/Archive are made when
 * missing). Recovery first: files in Work (never acknowledged) are deleted; files in In are
 * kept and queued for delivery; a file in In whose header is unknown or corrupt moves to
 * In/Archive (event 4117); with opt->pickup_dir the claims of messages in In are settled
 * (see pickup_dir; event 1003 counts them). Then the committer thread (and, with opt->mts_in, the
 * delivery thread) starts. opt may be NULL (no delivery, no tracking). EBUSY when another spool has
 * root_dir open (a lock on Work, released by the kernel when its holder dies). */
int ims_spool_open(const char *root_dir, const ims_spool_options *opt, ims_spool **out);

/* ims_spool_begin - start a message (after the end of RCPT, at DATA). Copies the envelope.
 * EINVAL for an invalid envelope (no recipient, a field with CR/LF/TAB or too long, a
 * relative Maildir path, a pickup name with '/' or a leading '.'). Thread-safe, as are
 * ims_spool_write, _commit and _abort on handles of the calling thread. No file is made until the
 * content outgrows a memory buffer. */
int ims_spool_begin(ims_spool *sp, const ims_envelope *env, ims_spool_msg **out);
/* ims_spool_write - append content bytes (as the caller wants them stored: the spool does
 * not convert line ends or unstuff dots). Buffered; a full buffer is written to the file in
 * Work (page cache: no sync here). After an error the handle keeps failing with that error
 * and its commit reports it. */
int ims_spool_write(ims_spool_msg *m, const void *data, size_t n);
/* ims_spool_commit - hand the message to the committer; returns at once. done(arg, ...) is
 * called exactly once, by ims_spool_dispatch, after the message is durable (or failed).
 * The handle is gone afterwards. */
void ims_spool_commit(ims_spool_msg *m, ims_spool_done_fn done, void *arg);
/* ims_spool_abort - drop an uncommitted message (its file in Work goes); no callback. */
void ims_spool_abort(ims_spool_msg *m);
/* ims_spool_submit - begin + write + commit of a whole message. Returns 0 (done will be
 * called once) or the error of begin (done will not be called). */
int ims_spool_submit(ims_spool *sp, const ims_envelope *env, const void *data, size_t len,
                     ims_spool_done_fn done, void *arg);

/* ims_spool_short_of_space - true while a disk-full episode is on (a message failed for want of
 * space and none was committed since) and the spool's file system still has less than
 * IMS_SPOOL_SPACE_MARGIN bytes free: a new transaction would fail, refuse it (452 4.3.1) at
 * MAIL. One fstatvfs during an episode, nothing otherwise. Any thread. */
#define IMS_SPOOL_SPACE_MARGIN (1024 * 1024)
bool ims_spool_short_of_space(ims_spool *sp);

/* ims_spool_fd - readable when ims_spool_dispatch has work (non-blocking eventfd). */
int ims_spool_fd(const ims_spool *sp);
/* ims_spool_dispatch - run the callbacks of finished commits and log queued events, in the
 * caller's thread. Never blocks. Returns the number of callbacks run. */
size_t ims_spool_dispatch(ims_spool *sp);

typedef struct ims_spool_stats {
    uint64_t committed;        /* messages made durable */
    uint64_t failed;           /* commits that failed */
    uint64_t rounds;           /* commit rounds (one sync of In each) */
    uint64_t file_syncs;       /* fdatasync calls on spool files (file_syncs only) */
    uint64_t dir_syncs;        /* fsync calls on In, or syncfs calls for whole rounds */
    uint64_t delivered;        /* recipients delivered (or found delivered) */
    uint64_t deferred;         /* recipient deliveries that failed and wait for a retry */
    uint64_t finished;         /* messages delivered to all recipients and removed from In */
    uint64_t queued;           /* messages now waiting for (or in) delivery */
    uint64_t mts_in_entered;   /* copies written into the gateway's MTS-IN */
    uint64_t mts_in_queued;    /* copies in MTS-IN now (until all their recipients are done) */
    uint64_t mts_in_bytes;     /* their bytes */
    uint64_t files_recycled;   /* finished messages' files kept in Work for new ones */
    uint64_t files_reused;     /* new messages written into such a file */
    ims_latency latency_local; /* recipients delivered into mailboxes */
} ims_spool_stats;

/* ims_spool_get_stats - counters since open. Thread-safe. */
void ims_spool_get_stats(ims_spool *sp, ims_spool_stats *st);
/* ims_spool_close - wait for the pending commits (their callbacks run here), stop delivery
 * after its current round (what is left stays in In for the next open), free everything.
 * Every handle from ims_spool_begin must have been committed or aborted. */
void ims_spool_close(ims_spool *sp);

/* === the outbound queue ==================================================================
 * RootDir\Out: messages with recipients routed to DNS or a smart host (lib/ims outq.c). It
 * keeps the message once and a record per recipient (state, attempts, next try, last reply:
 * the spool file's status records), groups the recipients due by destination and hands them
 * out as jobs; the transport (imsd's SMTP client) reports each recipient's result, and the
 * queue records them durably (group commit) before the job's connection may go on. It
 * decides retries (RetryInterval), time-outs (MessageTimeout*), delay notices
 * (DelayNotification) and non-delivery reports, which it builds (report.c) and spools from
 * the null sender like any message. docs/ims.md, "The outbound queue".
 *
 * Threads: the queue runs one thread of its own that does every file operation (loading,
 * appending records, syncing, removing, building reports); everything else is called in the
 * caller's thread (imsd's event loop), which polls ims_outq_fd and calls ims_outq_dispatch,
 * and never waits for the disk. Functions return 0 or an errno value. */

#define IMS_EV_OUT_QUEUED 1004      /* outbound queue recovered at start (ours) */
#define IMS_EV_OUT_HOST_FAILED 4002 /* a destination could not be reached (Diagnostics) */
#define IMS_EV_OUT_NDR_FAILED 4120  /* an NDR of an NDR, or to the null sender: to Bad */
#define IMS_EV_OUT_CREDENTIALS 4161 /* ClientCredentialsFile refused: no AUTH (ours) */
#define IMS_EV_OUT_TLS 4162         /* the outbound TLS context or a CA file unusable (ours) */

#define IMS_TRACK_QUEUED_OUTBOUND 1010
#define IMS_TRACK_TRANSFERRED_OUTBOUND 1011
#define IMS_TRACK_REPORT_OUT 1016
#define IMS_TRACK_REPORT_GENERATED 1017

#define IMS_OUTQ_LOAD_BUDGET (64u << 20) /* bytes of message content held in memory at once */
#define IMS_OUTQ_PRELOAD_MAX                                                                       \
    (1u << 20) /* a new message up to this size is read with its                                   \
                * envelope (it is about to be sent) */
#define IMS_OUTQ_DEAD_MS                                                                           \
    60000                      /* a destination that failed is left alone this long                \
                                * (or until its next retry, when that is sooner) */
#define IMS_OUTQ_MAX_HOPS 30   /* Received fields beyond which a message loops */
#define IMS_OUTQ_HOST_TEXT 280 /* bytes of a remote MTA's name ("[ip]" or a name) */
#define IMS_TRACK_TLS_MAX 96   /* bytes of a tracking line's TLS field, NUL included */

typedef struct ims_outq ims_outq;
typedef struct ims_outq_dest ims_outq_dest;
typedef struct ims_outq_job ims_outq_job;

typedef struct ims_outq_options {
    const ims_settings *settings; /* copied: the schedule, MaxRecipients, names for reports */
    ims_spool *spool;             /* where reports are spooled (or later: ims_outq_set_spool) */
    ims_router *router;           /* routes a report to the original sender (required) */
    ims_tracking *tracking;       /* NULL: no tracking log */
    ims_log *log;                 /* events, logged in the dispatching thread */
    const char *host;             /* our FQDN (reports, Received) */
    const char *bad_dir;          /* where a report that cannot be sent goes (gateway's Bad) */
    const char *store_dir;        /* the message store (<IMS_ROOT>/store): local senders */
    /* ready - a destination has jobs waiting (ims_outq_take): called from ims_outq_dispatch. */
    void (*ready)(void *arg, ims_outq_dest *d);
    void *ready_arg;
    /* time_offset - seconds added to the wall clock when ages are measured (a message's
     * time-out and delay notice); tests set it (imsd: IMS_TIME_OFFSET) to see a message
     * as older than it is. */
    int64_t time_offset;
} ims_outq_options;

/* ims_outq_open - the queue over root_dir's Out (made when missing). Its thread starts by
 * reading every file in Out (recovery: what was recorded is kept; a file that cannot be read
 * moves to Out/Archive, event 4117). *out: free with ims_outq_close. */
int ims_outq_open(const char *root_dir, const ims_outq_options *opt, ims_outq **out);
/* ims_outq_set_spool - the spool reports go to, when it opens after the queue (its handover
 * needs the queue). Before the first ims_outq_dispatch. */
void ims_outq_set_spool(ims_outq *q, ims_spool *sp);
/* ims_outq_dest_user / _set_user - a pointer the transport keeps with a destination. */
void *ims_outq_dest_user(const ims_outq_dest *d);
void ims_outq_dest_set_user(ims_outq_dest *d, void *user);
/* ims_outq_handover - Out/<qid> is new (ims_spool_options' handover): load it. Thread-safe. */
void ims_outq_handover(void *q, const char *qid);
/* ims_outq_receipt - spool the report data[0..len) (a whole message) from <> to sender,
 * routed as any address, from the queue's thread (ims_spool_options' receipt; thread-safe;
 * data is copied). Dropped once the queue stops. */
void ims_outq_receipt(void *q, const char *sender, const void *data, size_t len);
/* ims_outq_fd - readable when ims_outq_dispatch has work. */
int ims_outq_fd(const ims_outq *q);
/* ims_outq_dispatch - run what the queue's thread finished (jobs become ready, commits
 * complete, events are logged) and move the recipients due at now (ims_clock_ms) towards
 * their destinations. Never blocks. */
void ims_outq_dispatch(ims_outq *q, uint64_t now);
/* ims_outq_next_due - when ims_outq_dispatch must run again at the latest (ims_clock_ms);
 * false when nothing is scheduled. */
bool ims_outq_next_due(const ims_outq *q, uint64_t *due);

/* A destination: where a group of recipients goes. */
ims_route_kind ims_outq_dest_route(const ims_outq_dest *d); /* IMS_ROUTE_DNS or _SMARTHOST */
/* ims_outq_dest_name - DNS: the domain; SMARTHOST: the host spec (ims_host_parse). */
const char *ims_outq_dest_name(const ims_outq_dest *d);
/* ims_outq_dest_ready - jobs that ims_outq_take would give now. */
size_t ims_outq_dest_ready(const ims_outq_dest *d);
/* ims_outq_dest_failed - the destination cannot be reached now (DNS failed, no connection,
 * every host refused): r (a local result: code 0, or a greeting's reply) is every waiting
 * recipient's result, as if each had been tried: transient ones are deferred and the
 * destination is left alone for a while (IMS_OUTQ_DEAD_MS, or until the next retry) -- so a
 * queue of 10,000 messages to a dead host costs one failed connection; permanent ones fail
 * (NDRs). remote: the host tried last, or NULL. */
void ims_outq_dest_failed(ims_outq *q, ims_outq_dest *d, const smtp_result *r, const char *remote,
                          uint64_t now);

/* ims_outq_take - the next job for d: one message's recipients for d (at most MaxRecipients;
 * a message with more gives several jobs). NULL when none is ready. The job holds its
 * message's content in memory until it is finished. */
ims_outq_job *ims_outq_take(ims_outq *q, ims_outq_dest *d);
/* ims_outq_job_msg - what to give smtp_client_send (valid until ims_outq_job_finish's done). */
const smtp_client_msg *ims_outq_job_msg(ims_outq_job *j);
const char *ims_outq_job_id(const ims_outq_job *j); /* the queue id */
/* ims_outq_job_result - recipient i of the job's message (smtp_client_msg order) got r from
 * remote ("[ip]" or a name). */
void ims_outq_job_result(ims_outq_job *j, size_t i, const smtp_result *r, const char *remote);
/* ims_outq_job_peer_dsn - the peer offered DSN (RFC 3461): receipts are its business; else
 * a recipient with NOTIFY=SUCCESS gets a "relayed" report from us. */
void ims_outq_job_peer_dsn(ims_outq_job *j, bool offered);
/* ims_outq_job_tls - the job went under TLS: "<protocol> <cipher>" ("TLSv1.3
 * TLS_AES_256_GCM_SHA384"), written as the last field of its 1011 and 1016 tracking lines
 * ("plain" when this is not called or tls is NULL or ""). */
void ims_outq_job_tls(ims_outq_job *j, const char *tls);
/* ims_outq_job_finish - every recipient has its result: the records are made durable, then
 * done(arg) is called from ims_outq_dispatch and the job is gone. Recipients without a result
 * are deferred ("4.4.2 not attempted"). */
void ims_outq_job_finish(ims_outq *q, ims_outq_job *j, void (*done)(void *arg), void *arg);

typedef struct ims_outq_stats {
    uint64_t messages;  /* messages in the queue now */
    uint64_t rcpts;     /* recipients not final */
    uint64_t delivered; /* since open */
    uint64_t deferred;
    uint64_t failed;
    uint64_t reports;           /* NDRs and delay notices spooled */
    uint64_t ndrs;              /* of them: non-delivery reports */
    uint64_t delays;            /* of them: delay notices */
    ims_latency latency_remote; /* recipients delivered to a remote server */
} ims_outq_stats;
void ims_outq_get_stats(const ims_outq *q, ims_outq_stats *st);
/* --- the queues as the administrator sees them (imsctl queues, the admin page) ----------
 * A view of one message and its recipients. Strings point into the queue's memory and stay
 * valid until the next call on the iterator (or the queue) that produced the view. */
#define IMS_EV_QUEUE_ACTION 1006 /* an administrator acted on a queued message (ours) */
#define IMS_QUEUE_DELETED_TEXT "5.3.2 Message deleted from the queue by the administrator"

typedef enum ims_queue_rcpt_state {
    IMS_QRCPT_WAITING, /* not tried yet, or deferred: next_try says when */
    IMS_QRCPT_SENDING, /* in a connection now */
    IMS_QRCPT_HELD,    /* the message is held: not tried until released */
    IMS_QRCPT_DONE,    /* delivered (shown until the message leaves the queue) */
    IMS_QRCPT_FAILED,  /* failed for good: its report is on its way */
} ims_queue_rcpt_state;

typedef struct ims_queue_rcpt {
    const char *address;
    ims_route_kind route;
    const char *dest; /* DNS: the domain; SMARTHOST: the host spec; LOCAL: the Maildir */
    ims_queue_rcpt_state state;
    unsigned attempts; /* failed tries so far */
    time_t next_try;   /* WAITING: not before (unix seconds); 0: as soon as possible */
    /* last - the last reply or reason as recorded, "<remote MTA>|<reply>" (the remote part
     * may be empty; remote_len is its length), NULL when nothing was tried yet. */
    const char *last;
    size_t remote_len;
} ims_queue_rcpt;

typedef struct ims_queue_msg {
    const char *id;     /* the queue id (Out, In: the spool file's name) */
    const char *sender; /* the reverse-path, "" for the null sender */
    time_t arrival;     /* when it was received (unix seconds) */
    uint64_t size;      /* bytes of the content */
    bool held;
    const ims_queue_rcpt *rcpts;
    size_t nrcpt;
} ims_queue_msg;

typedef enum ims_queue_action {
    IMS_QA_HOLD,       /* not tried until released (recorded: survives a restart) */
    IMS_QA_RELEASE,    /* tried again now */
    IMS_QA_RETRY,      /* waiting recipients are tried now, their destinations too */
    IMS_QA_DELETE,     /* recipients not final fail without a report, and the file goes */
    IMS_QA_DELETE_NDR, /* the same with a non-delivery report to the sender */
} ims_queue_action;

/* What an action did: recipients changed, recipients that were final already, and (delete)
 * recipients that were being sent and got delivered instead of deleted. */
typedef struct ims_queue_outcome {
    size_t changed, unchanged, delivered;
} ims_queue_outcome;

/* ims_outq_iter_new - walk the queue's messages (newest first); a message removed while the
 * walk is paused is skipped, never touched, and so is one whose file is being removed. *out: free
 * with ims_outq_iter_free (before ims_outq_close). Returns 0 or ENOMEM. */
typedef struct ims_outq_iter ims_outq_iter;
int ims_outq_iter_new(ims_outq *q, ims_outq_iter **out);
/* ims_outq_iter_next - the next message into *view (valid until the next call or the free),
 * now being ims_clock_ms for the next tries. Returns false at the end (or out of memory). */
bool ims_outq_iter_next(ims_outq_iter *it, uint64_t now, ims_queue_msg *view);
void ims_outq_iter_free(ims_outq_iter *it);

/* ims_outq_action - apply act to the message qid for actor (who asked, for the event and the
 * tracking log: "root (uid 0)"). done(arg, err, outcome) follows from ims_outq_dispatch once
 * what changed is durable: a delete of recipients in a connection now waits for the
 * connection's results, so each is delivered or deleted, never both. Returns 0 (done
 * follows), ENOENT (no such message; no callback), EALREADY (release of a message not held,
 * hold of a held one), EBUSY (retry of a held message), ENOMEM. */
typedef void (*ims_outq_action_fn)(void *arg, int err, const ims_queue_outcome *o);
int ims_outq_action(ims_outq *q, const char *qid, ims_queue_action act, const char *actor,
                    uint64_t now, ims_outq_action_fn done, void *arg);

/* The four queues (the original's Queues page): inbound awaiting conversion (RootDir\In),
 * inbound awaiting delivery (the gateway's MTS-IN), outbound awaiting conversion (MTS-OUT),
 * outbound awaiting delivery (RootDir\Out, the outbound queue). */
typedef enum ims_queue_kind {
    IMS_QUEUE_IN,
    IMS_QUEUE_MTS_IN,
    IMS_QUEUE_MTS_OUT,
    IMS_QUEUE_OUT,
} ims_queue_kind;
#define IMS_QUEUE_KINDS 4
/* ims_queue_name - "In", "MTS-IN", "MTS-OUT", "Out". */
const char *ims_queue_name(ims_queue_kind kind);
/* ims_queue_parse - a queue by name, any case ("in", "mts-in", "mts-out", "out"): 0 or EINVAL. */
int ims_queue_parse(const char *name, ims_queue_kind *kind);

/* ims_queue_dir_open - a walk over one of the queues that are directories (IMS_QUEUE_IN,
 * _MTS_IN, _MTS_OUT) of root_dir (RootDir) and gateway (the gateway's mailbox). Read-only;
 * files that vanish or cannot be read during the walk are skipped. *out: free with
 * ims_queue_dir_close. Returns 0, EINVAL (IMS_QUEUE_OUT: ims_outq_iter_new), ENAMETOOLONG,
 * ENOMEM. */
typedef struct ims_queue_dir ims_queue_dir;
int ims_queue_dir_open(ims_queue_kind kind, const char *root_dir, const char *gateway,
                       ims_queue_dir **out);
/* ims_queue_dir_next - the next message into *view (valid until the next call or the close):
 * 1, 0 at the end, or ENOMEM. */
int ims_queue_dir_next(ims_queue_dir *w, ims_queue_msg *view);
void ims_queue_dir_close(ims_queue_dir *w);

/* ims_outq_stop - let the thread finish the commits posted (their done callbacks are not
 * called), make no more reports (the next start makes them), and stop it. Then close the
 * spool (its callbacks may still answer the queue), then ims_outq_close. */
void ims_outq_stop(ims_outq *q);
/* ims_outq_close - ims_outq_stop if not done, free everything. NULL is fine. */
void ims_outq_close(ims_outq *q);
/* --- MTS-OUT pickup ------------------------------------------------------------------------
 * The organisation hands mail to the service in the gateway mailbox's MTS-OUT folder (a
 * Maildir): a writer puts a file in tmp/ and renames it into new/. Its first header lines are
 * the envelope: exactly one "X-Sender: <addr>" ("<>": the null sender) and an
 * "X-Receiver: <addr>" per recipient, before any other header line, unfolded, in any order
 * among themselves; they are removed and the rest (LF or CRLF line ends) is the content,
 * spooled with CRLF line ends as the SMTP server stores it (not dot-stuffed; a bare CR or a NUL
 * makes the file unusable). Each receiver is routed as RCPT is (ims_router_route); one without
 * a route is skipped (event 4057: its NDR is to come) and the message goes to the others. A
 * file with no valid envelope, with no routable receiver or over the size limit moves to the
 * gateway's Bad folder (its new/) with event 4116.
 *
 * Exactly once, across kill -9 too: the file is first renamed from new/ into the claim
 * directory MTS-OUT/.taking/ (same name; new/ is fsync'd), then spooled with its name in the
 * envelope (ims_envelope.pickup). The spool, opened with pickup_dir = that directory, unlinks
 * the claim (durably) once the message is durable and before delivery can remove the spool
 * file, and at open settles claims whose messages reached In; so at start every claim left is
 * a message never committed and is spooled again. Files in new/ at start are taken as new.
 *
 * One thread of its own does all the file work: it watches new/ with inotify (IN_MOVED_TO,
 * IN_CLOSE_WRITE), scans it fully at start and on IN_Q_OVERFLOW (no periodic rescans), reads,
 * routes and submits. The spool's done callbacks (run by ims_spool_dispatch in the caller's
 * thread) only hand the result back to it. Events are queued for ims_pickup_dispatch, which the
 * program calls in the thread that owns the log when ims_pickup_fd is readable. */

#define IMS_EV_PICKUP_NO_ROUTE                                                                     \
    4057 /* an X-Receiver has no route: skipped, an NDR to come (the                               \
          * original's 4057 is a route lookup failure; this use: ours) */
#define IMS_EV_PICKUP_BAD                                                                          \
    4116 /* an MTS-OUT file moved to the Bad folder (the original's                                \
          * "message moved to the BAD folder") */

#define IMS_PICKUP_CLAIM_DIR ".taking"      /* under MTS-OUT, next to tmp/ new/ cur/ */
#define IMS_PICKUP_SIZE_MAX (256u << 20)    /* bytes of a file taken at most (any limit) */
#define IMS_PICKUP_ENVELOPE_MAX (16u << 20) /* bytes of X-Sender/X-Receiver lines at most */
#define IMS_PICKUP_IN_FLIGHT 64             /* messages submitted and not yet answered */
#define IMS_PICKUP_RETRY_MS 5000            /* a failed submission is tried again after this */

typedef struct ims_pickup ims_pickup;

typedef struct ims_pickup_options {
    const char *mts_out;   /* the MTS-OUT Maildir (".../MSExchangeIMC/.MTS-OUT"); required */
    const char *bad;       /* the gateway's Bad Maildir (".../.Bad"); required */
    const char *store_dir; /* <IMS_ROOT>/store: a local mailbox's Maildir is <store_dir>/<alias> */
    const char *host;      /* our name: the HELO and the host of the spool envelope; required */
    ims_spool *spool;      /* opened with pickup_dir = ims_pickup_claim_dir(mts_out); required */
    ims_router *router;    /* shared with other threads: see ims_router_new; required */
    ims_log *log;          /* events, logged by ims_pickup_dispatch; NULL: none */
    uint64_t max_size;     /* bytes of a file (OutboundSizeLimit); 0 or more: IMS_PICKUP_SIZE_MAX */
    unsigned retry_ms;     /* 0: IMS_PICKUP_RETRY_MS */
} ims_pickup_options;

typedef struct ims_pickup_stats {
    uint64_t taken;       /* messages spooled (their commit succeeded) */
    uint64_t bad;         /* files moved to Bad */
    uint64_t rcpt_failed; /* receivers skipped: no route */
    uint64_t retried;     /* submissions that failed and were (or will be) tried again */
    uint64_t in_flight;   /* messages submitted whose commit has not answered yet */
    uint64_t entered;     /* files taken into the claim directory (claimed) */
    uint64_t left;        /* of them: spooled, moved to Bad, or gone */
    uint64_t bytes;       /* bytes of the claimed files not yet left */
} ims_pickup_stats;

/* ims_pickup_claim_dir - "<mts_out>/.taking" into out (n bytes): the spool's pickup_dir.
 * Returns 0 or ENAMETOOLONG. */
int ims_pickup_claim_dir(const char *mts_out, char *out, size_t n);
/* ims_pickup_start - open MTS-OUT's new/ and claim directory (made when missing) and Bad's
 * new/, set the inotify watch, start the thread (which takes the claims left, then scans
 * new/). opt's strings are copied; spool, router and log must outlive the pickup. *out: stop
 * it with ims_pickup_stop. Returns 0, EINVAL (a required option missing) or an errno value. */
int ims_pickup_start(const ims_pickup_options *opt, ims_pickup **out);
/* ims_pickup_fd - readable when ims_pickup_dispatch has events to log (non-blocking). */
int ims_pickup_fd(const ims_pickup *p);
/* ims_pickup_dispatch - log the queued events in the caller's thread. Never blocks. Returns
 * the number logged. */
size_t ims_pickup_dispatch(ims_pickup *p);
/* ims_pickup_get_stats - counters since start. Thread-safe. */
void ims_pickup_get_stats(ims_pickup *p, ims_pickup_stats *st);
/* ims_pickup_stop - stop the thread (after the batch it is on, at most IMS_PICKUP_IN_FLIGHT
 * files), log what is queued, free. A
 * message whose commit is still pending is left to the spool: its callback, whenever it
 * runs (ims_spool_dispatch or ims_spool_close), is harmless, and its claim goes (committed)
 * or stays for the next start (failed). Call before ims_spool_close. NULL is fine. */
void ims_pickup_stop(ims_pickup *p);

/* --- the Pickup directory -------------------------------------------------------------
 * RootDir\Pickup (KB Q201314, Q250441): any local user drops an RFC 5322 message there
 * (ims-sendmail does; docs/ims.md, "The Pickup directory"), written elsewhere or under a
 * name starting with '.' and renamed to its final name. Its envelope: X-Sender:/X-Receiver:
 * lines before the header section (removed), else the Sender: (or From:) field and the
 * To:, Cc: and Bcc: fields; Bcc: fields are always removed. The message gets a Received:
 * field naming the file's owner (fstat: the kernel's word, not a header), and Date:,
 * Message-ID: and From: (the envelope sender) when it has none; the tracking log's received
 * lines name the owner too. A file that cannot be parsed (no sender, no recipient, a header
 * section over IMS_DROPDIR_HEADER_MAX, a bare CR or a NUL, unreadable) moves to
 * Pickup\Archive with event 4164, one over the size limit (InboundSizeLimit) with event
 * 4165; recipients without a route are skipped with event 4057, as MTS-OUT's.
 *
 * It runs on the MTS-OUT engine (its thread, claims, exactly-once through the spool, inotify
 * and a scan at start): the claim is Pickup/.taking/<name>, settled by the spool's
 * dropdir_claim_dir. ims_pickup_fd, _dispatch, _get_stats and _stop serve it as they serve
 * MTS-OUT.
 *
 * Permissions (the service runs as its account, users drop files without privileges):
 * RootDir gets o+x (others may pass, not list; its other folders stay 0750); Pickup is owned
 * by the account and its group, mode 3733 (write and search for all, not listable, sticky:
 * a user cannot rename or delete another's file; setgid: a file made in it gets the
 * account's group, so a file of mode 0640 is readable by the service and by nobody else);
 * Archive and .taking are 0700. */
#define IMS_EV_DROPDIR_NO_ROUTE IMS_EV_PICKUP_NO_ROUTE /* a recipient without a route: 4057 */
#define IMS_EV_DROPDIR_BAD 4164     /* a Pickup file cannot be parsed: moved to Archive */
#define IMS_EV_DROPDIR_TOO_BIG 4165 /* a Pickup file over the size limit: to Archive (ours) */
#define IMS_EV_DROPDIR_OFF 4166     /* the Pickup directory cannot be used: it is off (ours) */
#define IMS_EV_DROPDIR_STUCK 4167   /* a Pickup file cannot be moved: skipped (ours) */

/* The SMTP server's TLS and AUTH (docs/ims.md, "TLS and authentication"). */
#define IMS_EV_TLS_SERVER 4168   /* TlsCertificateFile/TlsKeyFile unusable: no STARTTLS (ours) */
#define IMS_EV_TLS_RELOADED 4169 /* the server certificate was read again after a change (ours) */
#define IMS_EV_AUTH_FAILED 4183  /* AUTH failed: client address and account (KB Q235627) */

#define IMS_DROPDIR_CLAIM_DIR ".taking"   /* under Pickup */
#define IMS_DROPDIR_ARCHIVE "Archive"     /* under Pickup */
#define IMS_DROPDIR_HEADER_MAX (1u << 20) /* bytes of envelope lines and header section */
#define IMS_DROPDIR_MODE 03733            /* Pickup: see above */
#define IMS_DROPDIR_FILE_MODE 0640        /* what a writer gives its file */
#define IMS_DROPDIR_ORIGIN_MAX 128        /* bytes of the origin text ("pickup uid ...") */

/* One recipient of a dropped file. */
typedef struct ims_dropdir_rcpt {
    char *address; /* the mailbox ("local@domain"); when bad, the text as written with
                    * control characters as '?' (for the event; ims-sendmail qualifies a
                    * bare local part) */
    bool bad;      /* not an address a route can be found for (syntax, a literal domain) */
} ims_dropdir_rcpt;

/* A byte range of the file to leave out (a Bcc: field, with its folded lines). */
typedef struct ims_dropdir_cut {
    size_t off, len;
} ims_dropdir_cut;

/* What ims_dropdir_parse found. Offsets are into the bytes given. */
typedef struct ims_dropdir_msg {
    char *sender;      /* the reverse-path's mailbox ("" the null sender: X-Sender: <> only) */
    bool sender_given; /* from X-Sender (else from Sender:/From:) */
    ims_dropdir_rcpt *rcpts;
    size_t nrcpt;
    bool rcpts_given;      /* from X-Receiver (else from To:/Cc:/Bcc:) */
    size_t content_off;    /* where the message starts (after the envelope lines) */
    size_t header_end;     /* where the body starts (after the empty line; n at eof without) */
    ims_dropdir_cut *cuts; /* in order, within [content_off, header_end) */
    size_t ncut;
    bool has_date, has_message_id, has_from;
} ims_dropdir_msg;

/* ims_dropdir_parse flags. */
#define IMS_DROPDIR_NO_ENVELOPE                                                                    \
    1u /* X-Sender/X-Receiver lines are no envelope: they are                                      \
        * fields to cut wherever they are (ims-sendmail's input) */
#define IMS_DROPDIR_NO_HEADERS                                                                     \
    2u /* no sender or recipient from the header fields: leave                                     \
        * sender NULL / nrcpt 0 rather than fail (ims-sendmail) */

/* ims_dropdir_parse - the envelope and the header section at the start of p[0..n) (eof: n
 * is the whole file). Lines end in LF or CRLF; a field goes on over lines starting with a
 * blank (folding); names are case-insensitive. X-Sender/X-Receiver lines at the very start
 * are the envelope: at most one X-Sender ("<addr>", a bare addr or "<>"), X-Receiver values
 * are address lists. Without X-Sender the sender is Sender:'s first mailbox, else From:'s;
 * without X-Receiver the recipients are those of every To:, Cc: and Bcc: field (RFC 5322
 * address lists: display names, quoted strings, comments, groups). Each address is checked
 * as a path; bad ones are kept with bad set (the caller's event), duplicates too. Returns 0
 * (*out filled: free with ims_dropdir_msg_free), EAGAIN (the header section may go on past
 * n: call again with more), EBADMSG (*why: a static text: two X-Sender lines, an X-Sender
 * that is no address, no sender, no recipient, more than IMS_SPOOL_MAX_RCPTS, a header
 * section over IMS_DROPDIR_HEADER_MAX, a NUL in it) or ENOMEM. *out is empty on failure. */
int ims_dropdir_parse(const char *p, size_t n, bool eof, unsigned flags, ims_dropdir_msg *out,
                      const char **why);
void ims_dropdir_msg_free(ims_dropdir_msg *m);

/* ims_dropdir_origin - "pickup uid <uid> <name>" into out (n bytes; name NULL: no name;
 * characters other than [A-Za-z0-9._-] of name as '?'): the tracking log's client column. */
void ims_dropdir_origin(unsigned long uid, const char *name, char *out, size_t n);

typedef struct ims_dropdir_options {
    const char *dir;       /* RootDir\Pickup, prepared by ims_dropdir_prepare; required */
    const char *store_dir; /* <IMS_ROOT>/store; required */
    const char *host;      /* our name; required */
    ims_spool *spool;      /* opened with dropdir_claim_dir = ims_dropdir_claim_dir(dir) */
    ims_router *router;    /* required */
    ims_log *log;          /* NULL: none */
    uint64_t max_size;     /* bytes of a file (InboundSizeLimit); 0 or more: IMS_PICKUP_SIZE_MAX */
    unsigned retry_ms;     /* 0: IMS_PICKUP_RETRY_MS */
} ims_dropdir_options;

/* ims_dropdir_claim_dir - "<dir>/.taking" into out (n bytes). 0 or ENAMETOOLONG. */
int ims_dropdir_claim_dir(const char *dir, char *out, size_t n);
/* ims_dropdir_prepare - make dir (Pickup), its Archive and .taking when missing and set
 * their modes (above), and RootDir (dir's parent) o+x. Each must be a directory (not a
 * link) owned by the calling process's user: EPERM when one is another's (a user made it
 * first: the feature must stay off), ENOTDIR when one is not a directory, else an errno
 * value. 0: ready. */
int ims_dropdir_prepare(const char *dir);
/* ims_dropdir_start - take files from dir as ims_pickup_start does from MTS-OUT: claims
 * left are spooled again, then a scan, then inotify. *out: stop with ims_pickup_stop.
 * Returns 0, EINVAL or an errno value. */
int ims_dropdir_start(const ims_dropdir_options *opt, ims_pickup **out);

/* --- the administrator's page: what its requests must pass (webadmin.c) ----------------
 * Pure checks for imsd's admin.c, here so unit tests reach them. */
#define IMS_WEB_NONCE_LEN 32    /* hex characters of a CSRF nonce (16 random bytes) */
#define IMS_WEB_NONCES 64       /* nonces remembered: the pages opened most recently */
#define IMS_WEB_NONCE_TTL 43200 /* seconds a page's nonce is accepted (12 hours) */
#define IMS_WEB_ID_MAX 128      /* bytes of a queue id in an action request */
#define IMS_WEB_ACTION_MAX 16   /* bytes of an action's name */
#define IMS_WEB_SECRET_MAX 256  /* bytes of a password or token */

/* ims_web_host_ok - the Host header names this listener ("127.0.0.1:9125", "[::1]:9125"):
 * its own address, localhost, 127.0.0.1 or [::1], with the listener's port (or none when the
 * port is 80). Anything else (a rebound DNS name, a missing header) is false. */
bool ims_web_host_ok(const char *host, const char *listener);
/* ims_web_origin_ok - a POST is our page's: Origin is "http://<host>" (host: the checked Host
 * header), or, without Origin, Referer starts with "http://<host>/". Both NULL: false. */
bool ims_web_origin_ok(const char *origin, const char *referer, const char *host);
/* ims_web_loopback_peer - the peer address text ("127.0.0.1", "::1", "::ffff:127.0.0.1")
 * is a loopback address. */
bool ims_web_loopback_peer(const char *addr);

/* An action request: application/json {"id":..,"action":..,"csrf":..,"secret":..} (string
 * values; no other keys) or application/x-www-form-urlencoded with the same names. */
typedef struct ims_web_action {
    char id[IMS_WEB_ID_MAX];
    char action[IMS_WEB_ACTION_MAX];
    char csrf[IMS_WEB_NONCE_LEN + 1];
    char secret[IMS_WEB_SECRET_MAX]; /* the administrator's password or the token */
    size_t secret_len;
} ims_web_action;
/* ims_web_action_parse - body (len bytes, need not be NUL-terminated) of content type ctype
 * into out (zeroed first; the caller wipes secret). Returns 0; ENOTSUP (another content
 * type or none); EMSGSIZE (a value too long); EINVAL (malformed, an unknown or repeated key,
 * a NUL in a value, a missing field: every one of the four is required). */
int ims_web_action_parse(const char *ctype, const char *body, size_t len, ims_web_action *out);

/* The nonces of the pages served: a ring; nothing global. */
typedef struct ims_web_nonces {
    char v[IMS_WEB_NONCES][IMS_WEB_NONCE_LEN + 1];
    uint64_t at[IMS_WEB_NONCES]; /* issued, seconds (any clock that only goes forward) */
    size_t next;
} ims_web_nonces;
/* ims_web_nonce_issue - a new random nonce (kept, the oldest forgotten) into out. Returns 0
 * or an errno value (no randomness). */
int ims_web_nonce_issue(ims_web_nonces *n, uint64_t now, char out[IMS_WEB_NONCE_LEN + 1]);
/* ims_web_nonce_ok - nonce was issued within IMS_WEB_NONCE_TTL seconds of now and is still
 * remembered (compared in constant time). */
bool ims_web_nonce_ok(const ims_web_nonces *n, const char *nonce, uint64_t now);
/* ims_web_secret_eq - a (alen bytes) equals b (NUL-terminated) in time independent of where
 * they differ. */
bool ims_web_secret_eq(const char *a, size_t alen, const char *b);
/* ims_json_string - s as a JSON string (quotes included) appended to b: control characters
 * escaped, bytes that are not UTF-8 as U+FFFD. Returns 0 or ENOMEM. */
int ims_json_string(buf *b, const char *s);
/* ims_json_string_n - the same for the n bytes at s (NULs in them escaped; s NULL: ""). */
int ims_json_string_n(buf *b, const char *s, size_t n);

#endif
