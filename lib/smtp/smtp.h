/* smtp.h - the contract of lib/smtp: the SMTP server's protocol layer (RFC 5321 with SIZE,
 * PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES and DSN), independent of any transport.
 *
 * Five parts: command and ESMTP parameter parsing (parse.c), addresses, the relay decision and
 * domain matching (addr.c), the catalogue of replies (reply.c), the server session, a state
 * machine fed with the bytes a client sent and producing the bytes to send back (session.c),
 * and the client session, its mirror for outbound mail: replies in, commands and message data
 * out (client.c, with the 8-bit to 7-bit conversion in downgrade.c).
 * Nothing here touches the network, the disk or the directory: the caller (imsd) reads and
 * writes the socket, looks recipients up and makes messages durable through callbacks.
 *
 * Parsers return an smtp_reply_id: SMTP_R_NONE (0) on success, otherwise the reply the server
 * sends for that error. Functions that can only fail for want of memory or for a bad argument
 * return Win32 error numbers (ERROR_SUCCESS, ERROR_NOT_ENOUGH_MEMORY, ERROR_INVALID_PARAMETER,
 * ERROR_INVALID_DATA from reg/reg.h). Nothing prints, exits or keeps global mutable state; a
 * session belongs to one thread at a time. */
#ifndef IMS_SMTP_H
#define IMS_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct sockaddr;

/* --- limits ----------------------------------------------------------------------------- */

/* Command line length, CRLF included: the setting smtp_config.max_line, with this default,
 * minimum and maximum. Command lines are 512 in RFC 5321 4.5.3.1.4, but SIZE and DSN's ORCPT
 * (RFC 3461 section 5: up to 500 more) lengthen MAIL and RCPT, hence 1000. Lines of message
 * data have no limit of their own: RFC 5321 4.5.3.1.6's 1000 octets is what a server must at
 * least take, and real mail (generated HTML above all) has longer lines, which Postfix and
 * Exchange accept and deliver unchanged; only max_size bounds them. */
#define SMTP_LINE_MAX 1000
#define SMTP_LINE_MIN 512     /* RFC 5321 4.5.3.1.4: a server must take command lines this long */
#define SMTP_LINE_LIMIT 65536 /* the largest max_line accepted */
#define SMTP_PATH_MAX 256     /* RFC 5321 4.5.3.1.3: a path, angle brackets included */
#define SMTP_LOCAL_MAX 64     /* RFC 5321 4.5.3.1.1: a local part, as sent (quotes included) */
#define SMTP_DOMAIN_MAX 255   /* RFC 5321 4.5.3.1.2: a domain name or address literal */
#define SMTP_LABEL_MAX 63     /* RFC 1035 2.3.4: one label of a domain name */
#define SMTP_ENVID_MAX 100    /* RFC 3461 4.4: ENVID, in xtext form */
#define SMTP_ORCPT_MAX 500    /* RFC 3461 4.2: ORCPT's value (addr-type ";" xtext) */
#define SMTP_SIZE_DIGITS 20   /* RFC 1870: size-value = 1*20DIGIT */

/* Recipients per message (smtp_config.max_recipients). RFC 5321 4.5.3.1.8 requires room for
 * at least 100; the original's MaxRecipients is for outbound batches only, so this inbound
 * limit is ours. More get "452 4.5.3 Too many recipients" and the client sends them in another
 * transaction (RFC 5321 4.5.3.1.10). */
#define SMTP_RCPT_DEFAULT 100
#define SMTP_RCPT_MIN 100
#define SMTP_RCPT_LIMIT 10000

/* Errors per session (smtp_config.max_errors): the error that reaches it is answered, then
 * "421 4.7.0" ends the session. See smtp_session_input for what counts. */
#define SMTP_ERRORS_DEFAULT 20 /* Postfix's smtpd_hard_error_limit */
#define SMTP_ERRORS_MIN 1
#define SMTP_ERRORS_LIMIT 1000

/* Message size (smtp_config.max_size), bytes; 0 = no limit (as InboundSizeLimit). */
#define SMTP_SIZE_DEFAULT 0

/* Replies waiting in a session's output beyond which it stops reading commands until the
 * caller drains them: a pipelining client that never reads cannot make us buffer without end. */
#define SMTP_OUTPUT_MAX 65536

/* --- replies ---------------------------------------------------------------------------- */

/* smtp_reply_id - every reply this module sends, but for the 220 greeting and the 250 answers
 * to HELO/EHLO, which the session formats itself. Enhanced status codes (RFC 2034, RFC 3463)
 * are added when the session advertises extensions, except to the greeting and to HELO/EHLO
 * (RFC 2034 section 3) and to 354, which is no completion reply. */
typedef enum smtp_reply_id {
    SMTP_R_NONE = 0,         /* success: no error reply */
    SMTP_R_UNAVAILABLE,      /* 421 4.3.2 <host> Service not available, closing ... */
    SMTP_R_SHUTDOWN,         /* 421 4.3.2 <host> Service shutting down, closing ... */
    SMTP_R_TIMEOUT,          /* 421 4.4.2 <host> Timeout, closing transmission channel */
    SMTP_R_TOO_MANY_ERRORS,  /* 421 4.7.0 <host> Too many errors, closing ... */
    SMTP_R_TOO_MANY_CONN,    /* 421 4.3.2 <host> Too many connections, try again later */
    SMTP_R_QUIT,             /* 221 2.0.0 <host> Service closing transmission channel */
    SMTP_R_OK,               /* 250 2.0.0 OK */
    SMTP_R_SENDER_OK,        /* 250 2.1.0 Sender OK */
    SMTP_R_RCPT_OK,          /* 250 2.1.5 Recipient OK */
    SMTP_R_QUEUED,           /* 250 2.6.0 Message accepted for delivery */
    SMTP_R_VRFY,             /* 252 2.1.5 Cannot VRFY user, but will accept message ... */
    SMTP_R_DATA_GO,          /* 354 Start mail input; end with <CRLF>.<CRLF> */
    SMTP_R_LOCAL_ERROR,      /* 451 4.3.0 Requested action aborted: local error in processing */
    SMTP_R_RCPT_TEMP,        /* 451 4.3.0 Recipient lookup failed, try again later */
    SMTP_R_NO_OUTBOUND,      /* 451 4.3.2 Outbound mail is not available, try again later */
    SMTP_R_TOO_MANY_RCPT,    /* 452 4.5.3 Too many recipients */
    SMTP_R_NO_STORAGE,       /* 452 4.3.1 Insufficient system storage */
    SMTP_R_UNRECOGNIZED,     /* 500 5.5.2 Syntax error, command unrecognized */
    SMTP_R_LINE_TOO_LONG,    /* 500 5.5.2 Line too long */
    SMTP_R_BARE_LF,          /* 500 5.5.2 Syntax error: bare LF or CR (lines end with CRLF) */
    SMTP_R_NUL,              /* 500 5.5.2 Syntax error: NUL character in command */
    SMTP_R_ARGS,             /* 501 5.5.4 Syntax error in parameters or arguments */
    SMTP_R_HELO_SYNTAX,      /* 501 5.5.4 Syntax: HELO hostname */
    SMTP_R_EHLO_SYNTAX,      /* 501 5.5.4 Syntax: EHLO hostname */
    SMTP_R_MAIL_SYNTAX,      /* 501 5.5.4 Syntax: MAIL FROM:<address> */
    SMTP_R_RCPT_SYNTAX,      /* 501 5.5.4 Syntax: RCPT TO:<address> */
    SMTP_R_SENDER_SYNTAX,    /* 501 5.1.7 Bad sender address syntax */
    SMTP_R_RCPT_ADDR_SYNTAX, /* 501 5.1.3 Bad recipient address syntax */
    SMTP_R_PATH_TOO_LONG,    /* 501 5.5.4 Address too long */
    SMTP_R_PARAM_VALUE,      /* 501 5.5.4 Invalid parameter value */
    SMTP_R_NOT_IMPLEMENTED,  /* 502 5.5.1 Command not implemented */
    SMTP_R_NEED_HELO,        /* 503 5.5.1 Send HELO/EHLO first */
    SMTP_R_NESTED_MAIL,      /* 503 5.5.1 Sender already specified */
    SMTP_R_NEED_MAIL,        /* 503 5.5.1 Need MAIL before RCPT */
    SMTP_R_NEED_RCPT,        /* 503 5.5.1 Need RCPT before DATA */
    SMTP_R_USER_UNKNOWN,     /* 550 5.1.1 User unknown */
    SMTP_R_RELAY_DENIED,     /* 550 5.7.1 relaying prohibited (KB Q193922's text) */
    SMTP_R_DATA_BARE,        /* 550 5.6.0 Message refused: bare LF or CR in message data */
    SMTP_R_DATA_SMUGGLE,     /* 550 5.6.0 Message refused: "." after a bare LF or CR */
    SMTP_R_DATA_NUL,         /* 550 5.6.0 Message refused: NUL character in message data */
    SMTP_R_SIZE_EXCEEDED,    /* 552 5.3.4 Message size exceeds fixed maximum message size */
    SMTP_R_MAILBOX_NAME,     /* 553 5.1.3 Mailbox name not allowed */
    SMTP_R_NO_VALID_RCPT,    /* 554 5.5.1 No valid recipients */
    SMTP_R_PARAM_UNKNOWN,    /* 555 5.5.4 Unsupported parameter */
    SMTP_R_PARAM_DUP,        /* 555 5.5.4 Duplicate parameter */
    SMTP_R_TLS_READY,        /* 220 2.0.0 Ready to start TLS */
    SMTP_R_TLS_ACTIVE,       /* 503 5.5.1 TLS already active */
    SMTP_R_IN_TRANSACTION,   /* 503 5.5.1 Not allowed during a mail transaction */
    SMTP_R_AUTH_OK,          /* 235 2.7.0 Authentication successful */
    SMTP_R_AUTH_FAILED,      /* 535 5.7.8 Authentication credentials invalid */
    SMTP_R_AUTH_TEMP,        /* 454 4.7.0 Temporary authentication failure ... */
    SMTP_R_AUTH_MECH,        /* 504 5.5.4 Unrecognized authentication type */
    SMTP_R_AUTH_CANCELLED,   /* 501 5.0.0 Authentication cancelled */
    SMTP_R_AUTH_DECODE,      /* 501 5.5.2 Cannot decode the response */
    SMTP_R_AUTH_ALREADY,     /* 503 5.5.1 Already authenticated */
    SMTP_R_NEED_TLS,         /* 530 5.7.0 Must issue a STARTTLS command first */
    SMTP_R_NEED_AUTH,        /* 530 5.7.0 Authentication required */
    SMTP_R_AUTH_TOO_MANY,    /* 421 4.7.0 <host> Too many failed authentication attempts ... */
    SMTP_R_SENDER_NOT_LOCAL, /* 550 5.7.1 Sender mailbox is not local: clients can only submit
                              * if homed on this server */
    SMTP_R_SENDER_NOT_OWNED, /* 550 5.7.1 Sender address does not belong to the authenticated
                              * account */
    /* Per-client limits (the caller's, at the connection or by mail_check/rcpt_check). */
    SMTP_R_CLIENT_CONNS,     /* 421 4.7.0 <host> Too many connections from your address ... */
    SMTP_R_CLIENT_CONN_RATE, /* 421 4.7.0 <host> Too many connections from your address in the
                              * last minute, try again later */
    SMTP_R_CLIENT_MSG_RATE,  /* 450 4.7.0 Too many messages from your address, try again later */
    SMTP_R_CLIENT_RCPT_RATE, /* 450 4.7.0 Too many recipients from your address, try again
                              * later */
    SMTP_R_COUNT
} smtp_reply_id;

/* smtp_reply_code - the three-digit code of id (0 for SMTP_R_NONE or an unknown id). */
unsigned smtp_reply_code(smtp_reply_id id);
/* smtp_reply_append - append the reply line "<code> [<enhanced> ][<host> ]<text>\r\n" to out:
 * the enhanced code when `enhanced`, the host for the replies that name it (221 and 421, as
 * RFC 5321 4.2 shows them; NULL: none). Returns 0, EINVAL for SMTP_R_NONE or an unknown id, or
 * ENOMEM; out is unchanged on error. */
int smtp_reply_append(buf *out, smtp_reply_id id, bool enhanced, const char *host);
/* smtp_reply_lines - append a multi-line reply: "<code>-<line>" for all lines but the last,
 * "<code> <line>" for the last, each with "<enh> " first when enh is not NULL (RFC 5321 4.2.1,
 * RFC 2034: every line carries the enhanced code). The lines must hold no CR or LF. Returns 0,
 * EINVAL when n is 0, or ENOMEM; out is unchanged on error. */
int smtp_reply_lines(buf *out, unsigned code, const char *enh, const char *const *lines, size_t n);

/* --- addresses -------------------------------------------------------------------------- */

/* smtp_path flags: what the parser saw. */
#define SMTP_PATH_NULL 0x01         /* "<>": the null reverse-path */
#define SMTP_PATH_POSTMASTER 0x02   /* "<postmaster>" with no domain (RFC 5321 4.5.1) */
#define SMTP_PATH_QUOTED 0x04       /* the local part was sent as a quoted-string */
#define SMTP_PATH_QUOTED_KEPT 0x08  /* ... and is kept quoted: it is not a plain dot-string */
#define SMTP_PATH_ROUTE 0x10        /* a source route "@a,@b:" came first (it is dropped) */
#define SMTP_PATH_LITERAL 0x20      /* the domain is an address literal "[...]" */
#define SMTP_PATH_TRAILING_DOT 0x40 /* the domain ended with "." (removed from domain) */

/* smtp_path - a parsed reverse- or forward-path. All strings are NUL-terminated.
 * `local` is the local part in its canonical wire form: a quoted-string whose content is a
 * plain dot-string is unquoted ("\"john\"" becomes "john", RFC 5321 4.1.2 says they are the
 * same mailbox); any other quoted-string keeps its quotes (flag SMTP_PATH_QUOTED_KEPT). So
 * `mailbox` ("local@domain") is always a valid RFC 5321 Mailbox, or "" for "<>", or the local
 * part alone for a domain-less "<postmaster>". */
typedef struct smtp_path {
    char local[SMTP_LOCAL_MAX + 1];   /* local part ("" for <>) */
    char domain[SMTP_DOMAIN_MAX + 1]; /* domain as sent, or "[...]" for a literal ("" if none) */
    char mailbox[SMTP_PATH_MAX];      /* local@domain */
    unsigned flags;                   /* SMTP_PATH_* */
} smtp_path;

/* Which path is parsed: a reverse-path (MAIL) may be "<>"; a forward-path (RCPT) may be
 * "<postmaster>" without a domain. */
typedef enum smtp_path_kind { SMTP_PATH_REVERSE, SMTP_PATH_FORWARD } smtp_path_kind;

/* smtp_parse_path - parse "<" [source-route ":"] Mailbox ">" (or the kind's special forms)
 * from s[0..len). With used non-NULL the path may be followed by anything and *used gets the
 * bytes it took; with used NULL it must fill s exactly. Strict RFC 5321 4.1.2 syntax: dot-string
 * or quoted-string local part (ASCII only: no SMTPUTF8), domain name (letters, digits, hyphens;
 * labels up to 63) or address literal ([IPv4], [IPv6:...], or a general [tag:content]); a
 * source route is parsed and dropped (flagged). One trailing dot on the domain is accepted and
 * flagged so that smtp_addr_classify can refuse it. Returns SMTP_R_NONE, SMTP_R_PATH_TOO_LONG
 * (path over SMTP_PATH_MAX, local part over SMTP_LOCAL_MAX or domain over SMTP_DOMAIN_MAX), or
 * SMTP_R_SENDER_SYNTAX / SMTP_R_RCPT_ADDR_SYNTAX (by kind) for anything else. *out is fully
 * written either way (zeroed on error). */
smtp_reply_id smtp_parse_path(const char *s, size_t len, smtp_path_kind kind, smtp_path *out,
                              size_t *used);

/* smtp_domain_valid - s[0..n) is a domain name (RFC 5321 Domain: labels of letters, digits and
 * hyphens, starting with a letter or digit and not ending with a hyphen, each at most 63,
 * together at most 255). With `liberal` also underscores and one trailing dot (what real
 * clients put in HELO; harmless there). */
bool smtp_domain_valid(const char *s, size_t n, bool liberal);
/* smtp_literal_valid - s[0..n) is an address literal with its brackets: "[1.2.3.4]",
 * "[IPv6:<RFC 4291 text>]" or a general "[tag:content]" (RFC 5321 4.1.3). */
bool smtp_literal_valid(const char *s, size_t n);
/* smtp_domain_match - true when domain is pattern or a sub-domain of it, on whole labels from
 * the right and ignoring ASCII case: "sea.com" matches "sea.com" and "x.sea.com" but not
 * "chelsea.com" (55docs xog05015). An empty pattern matches nothing. */
bool smtp_domain_match(const char *pattern, const char *domain);
/* smtp_domain_best - the index of the most specific (longest) of n patterns that matches
 * domain, or -1 when none does: the original picks the most specific route whatever its order
 * in the list. */
long smtp_domain_best(const char *const *patterns, size_t n, const char *domain);

/* Classification of a recipient. */
typedef enum smtp_addr_class {
    SMTP_ADDR_LOCAL,   /* a domain of ours (or domain-less postmaster) and a plain local part */
    SMTP_ADDR_REMOTE,  /* a plain address in another domain: relaying, if the policy allows */
    SMTP_ADDR_REFUSED, /* never accepted, whatever the relay policy: see smtp_refusal */
} smtp_addr_class;

/* Why an address is refused. Each of these is a way to sneak relaying past a check that looks
 * only at the domain (the "percent hack", bang paths, source routes, a quoted "user@other", an
 * IP literal naming a host the directory does not know, a trailing dot dodging a string
 * compare), so none of them is accepted for any domain or any client. */
typedef enum smtp_refusal {
    SMTP_REFUSE_NONE,
    SMTP_REFUSE_NULL,         /* "<>" as a recipient */
    SMTP_REFUSE_ROUTE,        /* "@a,@b:user@domain" */
    SMTP_REFUSE_NO_DOMAIN,    /* "<user>" (only postmaster may omit the domain) */
    SMTP_REFUSE_LITERAL,      /* "user@[1.2.3.4]", "user@[IPv6:::1]" */
    SMTP_REFUSE_TRAILING_DOT, /* "user@domain." */
    SMTP_REFUSE_QUOTED_AT,    /* "\"user@other\"@domain" */
    SMTP_REFUSE_QUOTED,       /* any other local part that needs quoting */
    SMTP_REFUSE_PERCENT,      /* "user%other@domain" */
    SMTP_REFUSE_BANG,         /* "host!user@domain" */
} smtp_refusal;

/* smtp_is_local_fn - true when domain (NUL-terminated, as sent, never empty) is one this
 * server receives mail for. The caller's routing table (domains marked <inbound>). */
typedef bool (*smtp_is_local_fn)(void *arg, const char *domain);

/* smtp_addr_classify - classify a forward-path from smtp_parse_path. Refusals are checked
 * first, in the order of smtp_refusal, so is_local is called only for plain addresses with a
 * domain name. *why (may be NULL) gets SMTP_REFUSE_NONE unless the result is
 * SMTP_ADDR_REFUSED. */
smtp_addr_class smtp_addr_classify(const smtp_path *p, smtp_is_local_fn is_local, void *arg,
                                   smtp_refusal *why);
/* smtp_refusal_name - "percent hack", "source route", ... for logs. */
const char *smtp_refusal_name(smtp_refusal r);

/* --- IP addresses and the relay policy (KB Q193922) -------------------------------------- */

/* smtp_ip - an IPv4 or IPv6 address. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a
 * dual-stack socket reports) is always stored as IPv4, so one list entry covers both forms. */
typedef struct smtp_ip {
    uint8_t family; /* 4, 6, or 0: unknown (matches no list entry) */
    uint8_t a[16];  /* IPv4 in a[0..4), network byte order */
} smtp_ip;

/* smtp_ip_parse - numeric text ("192.0.2.1", "2001:db8::1"). Returns ERROR_SUCCESS or
 * ERROR_INVALID_DATA. */
int smtp_ip_parse(const char *text, smtp_ip *out);
/* smtp_ip_from_sockaddr - from an AF_INET or AF_INET6 socket address (anything else gives
 * family 0). Returns ERROR_SUCCESS, or ERROR_INVALID_PARAMETER for another family. */
int smtp_ip_from_sockaddr(const struct sockaddr *sa, smtp_ip *out);
/* smtp_ip_format - numeric text of ip into out (at least 46 bytes: INET6_ADDRSTRLEN); ""
 * for family 0. Returns out. */
char *smtp_ip_format(const smtp_ip *ip, char *out, size_t size);

/* smtp_net - one line of a relay list: matches an address when (address AND mask) == net. */
typedef struct smtp_net {
    smtp_ip net;
    uint8_t mask[16];
} smtp_net;

/* smtp_relay_list - the lines of RelayDenyList, RelayAllowList or RelayLocalIPList. Zero-
 * initialise; free with smtp_relay_list_free. */
typedef struct smtp_relay_list {
    smtp_net *v;
    size_t n, cap;
} smtp_relay_list;

/* smtp_relay_list_add - parse one REG_MULTI_SZ line and append it. The KB's form is IPv4
 * "net[;mask]" with a dotted mask, 255.255.255.255 when omitted; ours also takes IPv6
 * "net[;prefix-length]" (0-128, 128 when omitted), since a dotted mask has no IPv6 form.
 * Spaces around the parts are ignored. As in the KB, a net with bits outside its mask matches
 * nothing (it is not an error). Returns ERROR_SUCCESS, ERROR_INVALID_DATA (list unchanged) or
 * ERROR_NOT_ENOUGH_MEMORY. */
int smtp_relay_list_add(smtp_relay_list *l, const char *line);
/* smtp_relay_list_parse - smtp_relay_list_add for n lines; empty (or all-space) lines are
 * skipped. A malformed line is skipped too, and the call goes on with the rest: it returns
 * ERROR_INVALID_DATA and the index of the first bad line in *bad (may be NULL), so that the
 * caller can log it (a skipped RelayDenyList line makes the policy more permissive). Returns
 * ERROR_SUCCESS, ERROR_INVALID_DATA or ERROR_NOT_ENOUGH_MEMORY. */
int smtp_relay_list_parse(smtp_relay_list *l, const char *const *lines, size_t n, size_t *bad);
/* smtp_relay_list_match - true when some line matches ip (never for family 0). */
bool smtp_relay_list_match(const smtp_relay_list *l, const smtp_ip *ip);
/* smtp_relay_list_free - release the lines; the list is empty and reusable afterwards. */
void smtp_relay_list_free(smtp_relay_list *l);

/* RelayFlags bits (KB Q193922). Other bits are ignored. */
#define SMTP_RELAY_DENY_LIST 0x1  /* deny clients matching RelayDenyList */
#define SMTP_RELAY_ALLOW_LIST 0x2 /* allow clients matching RelayAllowList */
#define SMTP_RELAY_LOCAL_IP 0x4   /* allow connections to a local address in RelayLocalIPList */
#define SMTP_RELAY_AUTH 0x8       /* allow authenticated clients */

typedef struct smtp_relay_policy {
    uint32_t flags;        /* RelayFlags */
    smtp_relay_list deny;  /* RelayDenyList: client addresses */
    smtp_relay_list allow; /* RelayAllowList: client addresses */
    smtp_relay_list local; /* RelayLocalIPList: our addresses */
} smtp_relay_policy;

/* smtp_relay_allowed - may this client relay (send to SMTP_ADDR_REMOTE recipients)? KB
 * Q193922's rules in order: (1) bit 1 and the client is in the deny list: no; (2) bit 2 and
 * the client is in the allow list: yes; (3) bit 4 and the client connected to an address in
 * the local-IP list: yes; (4) bit 8 and the client authenticated: yes; (5) "if only bit 1 is
 * set, the client is allowed to relay"; otherwise no ("if none of the rules apply, relay is
 * denied"). So RelayFlags 0 denies everyone: our default is a closed relay, even where the
 * original's "Reroute incoming SMTP mail" would have been open. A NULL policy denies. */
bool smtp_relay_allowed(const smtp_relay_policy *p, const smtp_ip *client, const smtp_ip *local,
                        bool authenticated);
/* smtp_relay_policy_free - free the three lists. */
void smtp_relay_policy_free(smtp_relay_policy *p);

/* --- commands --------------------------------------------------------------------------- */

typedef enum smtp_verb {
    SMTP_VERB_UNKNOWN,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_HELP,
    /* Known commands this server does not implement: 502. */
    SMTP_VERB_EXPN,
    SMTP_VERB_ETRN,
    SMTP_VERB_TURN,
    SMTP_VERB_AUTH,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_BDAT,
    SMTP_VERB_SEND,
    SMTP_VERB_SOML,
    SMTP_VERB_SAML,
    SMTP_VERB_COUNT
} smtp_verb;

typedef enum smtp_body { SMTP_BODY_NONE, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME } smtp_body;
typedef enum smtp_ret { SMTP_RET_NONE, SMTP_RET_FULL, SMTP_RET_HDRS } smtp_ret;

/* NOTIFY bits (RFC 3461 4.1); 0 = not given. NEVER is never combined with the others. */
#define SMTP_NOTIFY_NEVER 0x1
#define SMTP_NOTIFY_SUCCESS 0x2
#define SMTP_NOTIFY_FAILURE 0x4
#define SMTP_NOTIFY_DELAY 0x8

/* MAIL parameters (RFC 1870, RFC 6152, RFC 3461). */
typedef struct smtp_mail_params {
    bool has_size;
    uint64_t size;                  /* SIZE=; a value over UINT64_MAX reads as UINT64_MAX */
    smtp_body body;                 /* BODY= */
    smtp_ret ret;                   /* RET= */
    char envid[SMTP_ENVID_MAX + 1]; /* ENVID=, still xtext-encoded; "" if absent */
} smtp_mail_params;

/* smtp_notify_format - bits as NOTIFY= writes them ("NEVER", or "SUCCESS,FAILURE,DELAY" in
 * that order, those set; "" for 0) into out, at least SMTP_NOTIFY_TEXT bytes. Returns out.
 * smtp_notify_parse - the other way, s[0..n) any case: SMTP_R_NONE, or SMTP_R_PARAM_VALUE for
 * an unknown or repeated word, or NEVER with another. */
#define SMTP_NOTIFY_TEXT 32
char *smtp_notify_format(unsigned bits, char *out, size_t size);
smtp_reply_id smtp_notify_parse(const char *s, size_t n, unsigned *out);

/* RCPT parameters (RFC 3461). */
typedef struct smtp_rcpt_params {
    unsigned notify;                /* SMTP_NOTIFY_* */
    char orcpt[SMTP_ORCPT_MAX + 1]; /* ORCPT= "addr-type;xtext" as sent; "" if absent */
} smtp_rcpt_params;

/* smtp_cmd - one parsed command line. */
typedef struct smtp_cmd {
    smtp_verb verb;
    const char *arg; /* what follows the verb and its space, inside the line given
                      * (trailing spaces dropped); NULL if nothing */
    size_t arg_len;
    char helo[SMTP_DOMAIN_MAX + 1]; /* HELO/EHLO: the client's name or address literal */
    smtp_path path;                 /* MAIL/RCPT */
    unsigned nparams;               /* MAIL/RCPT: how many ESMTP parameters were given */
    smtp_mail_params mail;
    smtp_rcpt_params rcpt;
} smtp_cmd;

/* smtp_parse_command - parse one command line, line[0..len) without its CRLF (any bytes;
 * NULs included, which are an error). The verb is case-insensitive; trailing spaces and tabs
 * are ignored. Grammar (RFC 5321 4.1.1, strict, liberal only where harmless):
 *   HELO/EHLO SP name     name: a domain (underscores and a trailing dot allowed) or literal
 *   MAIL FROM:<path> [SP params]   "FROM:" any case; spaces after the colon are accepted (a
 *   RCPT TO:<path> [SP params]     common client error that cannot change the meaning; RFC
 *                                  says none); angle brackets required; several spaces
 *                                  between parameters accepted
 *   DATA, RSET, QUIT               no argument
 *   VRFY SP string, HELP [SP string], NOOP [SP string]
 * ESMTP parameters: MAIL takes SIZE=digits, BODY=7BIT|8BITMIME, RET=FULL|HDRS, ENVID=xtext;
 * RCPT takes NOTIFY=NEVER|list of SUCCESS,FAILURE,DELAY and ORCPT=addr-type;xtext. Keywords
 * and keyword values are case-insensitive. Whether parameters are allowed at all (extensions
 * advertised) is the session's decision: nparams counts them.
 * Returns SMTP_R_NONE, or: SMTP_R_UNRECOGNIZED (unknown verb, or an empty line), SMTP_R_NUL,
 * SMTP_R_ARGS (argument where none belongs, or missing VRFY argument), SMTP_R_HELO_SYNTAX /
 * SMTP_R_EHLO_SYNTAX, SMTP_R_MAIL_SYNTAX / SMTP_R_RCPT_SYNTAX (no "FROM:<"/"TO:<"), the errors
 * of smtp_parse_path, SMTP_R_PARAM_UNKNOWN (555: unknown keyword, or one of the other
 * command's), SMTP_R_PARAM_DUP (555: a keyword twice), SMTP_R_PARAM_VALUE (501: bad value or
 * keyword syntax). out->verb is set whenever the verb was recognised, even on error. */
smtp_reply_id smtp_parse_command(const char *line, size_t len, smtp_cmd *out);
/* smtp_verb_name - "HELO", ... ("" for SMTP_VERB_UNKNOWN). */
const char *smtp_verb_name(smtp_verb v);

/* --- the server session ----------------------------------------------------------------- */

/* Transfer mode (Connections property page). Only the first two accept inbound connections;
 * a session made in the others greets with 421 4.3.2 and closes. */
typedef enum smtp_transfer_mode {
    SMTP_TRANSFER_INOUT, /* Inbound & Outbound */
    SMTP_TRANSFER_IN,    /* Inbound Only */
    SMTP_TRANSFER_OUT,   /* Outbound Only */
    SMTP_TRANSFER_NONE,  /* None (Flush Queues) */
} smtp_transfer_mode;

/* smtp_config - a listener's settings; smtp_session_new copies the struct, but the strings,
 * the relay policy and is_local_arg must outlive every session made with it. Start from
 * smtp_config_defaults (a zeroed struct would not advertise extensions); limits left 0 take
 * their defaults. */
typedef struct smtp_config {
    const char *fqdn;          /* our name: greeting, EHLO, 221/421 (control characters become
                                * '?'); required */
    const char *software;      /* in the greeting: "220 <fqdn> ESMTP Server (<software>) Ready";
                                * NULL: SMTP_SOFTWARE */
    bool advertise_extensions; /* AdvertiseSMTPExtensions: EHLO lists SIZE, PIPELINING,
                                * 8BITMIME, ENHANCEDSTATUSCODES, DSN, replies carry enhanced
                                * codes and MAIL/RCPT take parameters. Off: the greeting says
                                * "SMTP Server", EHLO answers one line, parameters get 555. */
    uint64_t max_size;         /* message bytes (after dot-unstuffing, CRLFs counted); 0 none */
    unsigned max_recipients;   /* per message; 0: SMTP_RCPT_DEFAULT */
    unsigned max_errors;       /* per session; 0: SMTP_ERRORS_DEFAULT */
    size_t max_line;           /* per command line, CRLF included; 0: SMTP_LINE_MAX (lines
                                * of message data: any length within max_size) */
    smtp_transfer_mode mode;
    const smtp_relay_policy *relay; /* NULL: nobody relays */
    smtp_is_local_fn is_local;      /* required */
    void *is_local_arg;
    /* TLS and AUTH (RFC 3207, RFC 4954): what the caller can do for this listener. */
    bool starttls;         /* a certificate is loaded: EHLO offers STARTTLS until TLS is on */
    bool tls;              /* the connection is under TLS from its first byte (RFC 8314) */
    bool auth;             /* AUTH PLAIN LOGIN may be used (auth_check set; not DisableAuth) */
    bool auth_without_tls; /* AllowAuthWithoutTls: AUTH also before TLS (else 530 5.7.0) */
    bool auth_required;    /* a submission listener (RFC 6409): MAIL needs AUTH first */
    bool auth_relay;       /* an authenticated client relays, whatever the relay policy says
                            * (submission); else RelayFlags bit 8 decides */
} smtp_config;

/* AUTH limits. */
#define SMTP_AUTH_LINE_MAX                                                                         \
    12288                        /* RFC 4954 4: an AUTH line, initial response and CRLF included   \
                                  */
#define SMTP_AUTH_USER_MAX 255   /* bytes of an authentication identity (an address fits) */
#define SMTP_AUTH_PASS_MAX 1024  /* bytes of a password */
#define SMTP_AUTH_FAILURES_MAX 5 /* failed AUTHs in one session: the fifth ends it (421) */

/* smtp_sasl_creds - what a client's SASL response said. */
typedef struct smtp_sasl_creds {
    char user[SMTP_AUTH_USER_MAX + 1]; /* the authentication identity; no NUL inside */
    char pass[SMTP_AUTH_PASS_MAX + 1]; /* the password, NUL-terminated; no NUL inside */
    size_t passlen;
} smtp_sasl_creds;

/* smtp_sasl_plain_decode - PLAIN's response (RFC 4616): base64 of [authzid] NUL authcid NUL
 * passwd, s[0..n). An authorization identity other than the authentication identity (acting
 * for someone else) is not supported. Returns SMTP_R_NONE with *out filled; SMTP_R_AUTH_DECODE
 * when it is not base64, not three fields, has an empty identity or password, or a field over
 * its limit; SMTP_R_AUTH_FAILED for another authzid. *out is wiped on error. */
smtp_reply_id smtp_sasl_plain_decode(const char *s, size_t n, smtp_sasl_creds *out);
/* smtp_sasl_text_decode - one of LOGIN's answers: base64 of a user name or password without
 * NUL, s[0..n), into out (size bytes with its NUL; *len without). Returns SMTP_R_NONE or
 * SMTP_R_AUTH_DECODE (bad base64, a NUL, empty, or too long); out is wiped on error. */
smtp_reply_id smtp_sasl_text_decode(const char *s, size_t n, char *out, size_t size, size_t *len);
/* smtp_wipe - zero n bytes of p in a way the compiler keeps (passwords). */
void smtp_wipe(void *p, size_t n);

#define SMTP_SOFTWARE "IMS Internet Mail Service"

/* smtp_config_defaults - every field at its default: extensions advertised, no size limit,
 * SMTP_RCPT_DEFAULT recipients, SMTP_ERRORS_DEFAULT errors, SMTP_LINE_MAX, Inbound & Outbound,
 * no relay policy; fqdn and is_local NULL (the caller must set them). */
void smtp_config_defaults(smtp_config *cfg);
/* smtp_config_check - ERROR_SUCCESS, or ERROR_INVALID_PARAMETER when fqdn or is_local is
 * missing or a limit is outside its [MIN, LIMIT] range (0 = default is fine). */
int smtp_config_check(const smtp_config *cfg);

/* smtp_rcpt - one accepted recipient. */
typedef struct smtp_rcpt {
    smtp_path path;
    smtp_addr_class cls; /* SMTP_ADDR_LOCAL or SMTP_ADDR_REMOTE (an allowed relay) */
    smtp_rcpt_params params;
    void *data; /* what rcpt_check attached (NULL: nothing); the session's until it hands it
                 * back through rcpt_release when the transaction ends */
} smtp_rcpt;

/* smtp_envelope - the transaction, as handed to data_begin and data_end. Every pointer is the
 * session's and valid only until the transaction ends (smtp_session_data_done, RSET, a new
 * HELO/EHLO, or smtp_session_free). */
typedef struct smtp_envelope {
    const char *helo;             /* the HELO/EHLO name */
    bool esmtp;                   /* EHLO (not HELO) was used */
    bool tls;                     /* the message came under TLS */
    const char *account;          /* the authenticated account ("" when none) */
    const smtp_path *from;        /* the reverse-path; from->mailbox "" for <> */
    const smtp_mail_params *mail; /* MAIL's parameters */
    const smtp_rcpt *rcpt;        /* accepted recipients, in RCPT order (at least one) */
    size_t nrcpt;
    uint64_t size; /* data_end: message bytes received (0 at data_begin) */
} smtp_envelope;

/* What a trace callback is shown. */
typedef enum smtp_trace_kind {
    SMTP_TRACE_COMMAND, /* a command line as received, without its CRLF */
    SMTP_TRACE_REPLY,   /* reply lines the session produced, CRLFs included */
} smtp_trace_kind;

/* smtp_callbacks - what the caller provides; `arg` is passed to each. No callback may call
 * into the session, but for data_end, which may call smtp_session_data_done. */
typedef struct smtp_callbacks {
    void *arg;
    /* rcpt_check - called for each SMTP_ADDR_LOCAL recipient (the directory lookup is the
     * caller's), and for each SMTP_ADDR_REMOTE one the relay policy lets through (can the
     * caller send it on?). Return 250 to accept, 550 for an unknown local address ("550 5.1.1
     * User unknown"), 453 for a remote one that cannot be relayed now ("451 4.3.2 Outbound
     * mail is not available, try again later"), 450 for a per-client rate ("450 4.7.0 Too
     * many recipients from your address"), 4xx for a temporary failure ("451 4.3.0");
     * any other value is taken as a temporary failure, so a broken lookup never rejects mail
     * for good. NULL: every such address is accepted.
     * *data (NULL on entry) may be set to the caller's record of the recipient (its route,
     * say): with 250 the session keeps it in the envelope's smtp_rcpt.data and owns it until
     * the transaction ends (the end of DATA, RSET, MAIL, HELO/EHLO, smtp_session_free), when
     * it is handed back through rcpt_release, exactly once; with any other code it is handed
     * back at once. The caller keeps no list of its own, so it cannot disagree. */
    unsigned (*rcpt_check)(void *arg, const smtp_path *addr, smtp_addr_class cls, void **data);
    /* data_begin - DATA was accepted (before the 354): open the spool file. Return 0, 452 to
     * answer "452 4.3.1 Insufficient system storage" (out of disk space), or any other
     * non-zero value to answer "451 4.3.0" (the transaction stays as it was either way).
     * NULL: always 0. */
    int (*data_begin)(void *arg, const smtp_envelope *env);
    /* data_chunk - n bytes of message data (dot-unstuffed, CRLF line ends; the Received
     * header is the caller's to add), at most 16 KiB per call whatever the lines' length: a
     * long line comes in several calls, so no line is ever held whole. Return 0, or non-zero when
     * they could not be stored: the rest of the message is read and dropped, and its end answers
     * "452 4.3.1 Insufficient system storage" for 452 (out of disk space), 451 4.3.0 for any
     * other value. */
    int (*data_chunk)(void *arg, const char *p, size_t n);
    /* data_end - the whole message arrived intact: make it durable, then call
     * smtp_session_data_done (from here or later; the session waits, reading no more input,
     * until it is called). */
    void (*data_end)(void *arg, const smtp_envelope *env);
    /* data_abort - the message was refused at its end (size, bare LF/CR, NUL, data_chunk
     * failure) or the session was freed during DATA: discard what data_chunk got.
     * Called only after a successful data_begin, and only once per message. */
    void (*data_abort)(void *arg);
    /* trace - the conversation, for a protocol log: each command line (at most max_line - 2
     * bytes of it; a bad line as far as it was kept), then the replies it produced; also the
     * greeting and the replies at the end of DATA, after a commit, a shutdown or a timeout.
     * Message data is not traced (data_chunk sees it). NULL: no trace. */
    void (*trace)(void *arg, smtp_trace_kind kind, const char *p, size_t n);
    /* mail_check - may a transaction start now? Return 250 to go on (MAIL's own checks then
     * apply), 452 to answer "452 4.3.1 Insufficient system storage" (the caller is short of
     * disk space: flush mode), 450 for "450 4.7.0 Too many messages from your address" (a
     * per-client rate); anything else answers "451 4.3.0". A refusal is no client error
     * and leaves the session as it was. NULL: always 250. */
    unsigned (*mail_check)(void *arg, const smtp_path *from);
    /* relay_denied - a recipient was refused with 550 5.7.1: a remote domain the relay policy
     * does not open to this client (why SMTP_REFUSE_NONE), or an address form that would
     * relay (percent hack, source route, bang path, address literal...: why says which). For
     * the event KB Q193922 describes. NULL: not told. */
    void (*relay_denied)(void *arg, const smtp_path *rcpt, smtp_refusal why);
    /* rcpt_release - the session is done with a recipient's data (see rcpt_check): free it.
     * NULL: nothing is freed (the caller attaches nothing, or owns it elsewhere). */
    void (*rcpt_release)(void *arg, void *data);
    /* auth_check - the client gave credentials for mech ("PLAIN" or "LOGIN"): check them,
     * then call smtp_session_auth_done (from here or later; the session reads no input until
     * then). user and pass are the session's and wiped after the call: copy what is needed.
     * NULL: AUTH is not offered, whatever cfg.auth says. */
    void (*auth_check)(void *arg, const char *mech, const smtp_sasl_creds *creds);
    /* sender_check - MAIL in an authenticated session: may this account use this reverse-path
     * (the submission restrictions)? Return SMTP_R_NONE to go on, or the reply to refuse with
     * (SMTP_R_SENDER_NOT_LOCAL, SMTP_R_SENDER_NOT_OWNED, SMTP_R_LOCAL_ERROR...); a refusal
     * is not counted as a client error. NULL: every sender. */
    smtp_reply_id (*sender_check)(void *arg, const char *account, const smtp_path *from);
} smtp_callbacks;

/* smtp_auth_result - what smtp_session_auth_done is told. */
typedef enum smtp_auth_result {
    SMTP_AUTH_OK,     /* 235 2.7.0: authenticated from now on */
    SMTP_AUTH_FAILED, /* 535 5.7.8 (a wrong password and an unknown account alike); the
                       * SMTP_AUTH_FAILURES_MAX-th also ends the session with 421 4.7.0 */
    SMTP_AUTH_TEMP,   /* 454 4.7.0: the check could not be made */
} smtp_auth_result;

typedef struct smtp_session smtp_session;

/* smtp_session_new - a session for a client at `client` connected to our address `local`
 * (either may be NULL: unknown). The greeting (220, or 421 when the transfer mode does not
 * accept inbound connections) is in the output at once. cfg and cb are copied. Returns
 * ERROR_SUCCESS, ERROR_INVALID_PARAMETER (smtp_config_check) or ERROR_NOT_ENOUGH_MEMORY.
 * Free with smtp_session_free. */
int smtp_session_new(const smtp_config *cfg, const smtp_callbacks *cb, const smtp_ip *client,
                     const smtp_ip *local, smtp_session **out);
/* smtp_session_free - release everything; during DATA, data_abort is called first. A commit
 * the caller still has pending (data_end called, data_done not yet) is the caller's to drop.
 * NULL is fine. */
void smtp_session_free(smtp_session *s);

/* smtp_session_input - consume client bytes p[0..n) and append the replies to the output.
 * Commands are taken in order as they arrive and answered in order, whether or not the
 * client said EHLO (RFC 2920 pipelining). *used gets how many bytes were consumed; it is less
 * than n only when the session
 *   - waits for a commit (smtp_session_committing): call again after smtp_session_data_done
 *     with the bytes not used (stop reading the socket meanwhile);
 *   - wants to close (smtp_session_want_close): the rest is not for us;
 *   - holds more than SMTP_OUTPUT_MAX bytes of output: drain it and call again.
 * A partial line is kept inside (at most max_line bytes of it; DATA is streamed to data_chunk
 * and never kept), so the caller does not keep consumed bytes.
 * Lines end with CRLF only. A command line with a bare LF or CR, a NUL, or over max_line gets
 * a 500 5.5.2 reply of its own (an over-long line is dropped up to the next LF, however long).
 * In DATA, the end is CRLF "." CRLF and nothing else; "\n.\n", "\n.\r\n", "\r.\r\n" and the
 * like are data (RFC 5321 4.1.1.4), and a message containing a bare LF or CR is refused at
 * its end with 550 5.6.0 (RFC 5321 2.3.8) -- so a smuggled message can neither end ours nor be
 * accepted inside it; one with a NUL is refused the same way, one over max_size with 552
 * 5.3.4. Lines of data may be of any length (max_line is for command lines only).
 * Errors that count towards max_errors: unrecognised or unimplemented commands, syntax errors,
 * bad lines (bare LF/CR, NUL, too long), commands out of sequence (503), parameters when
 * extensions are off, and refused relaying or relay tricks (550 5.7.1, 553). Unknown local
 * users do not count (that is ordinary mail; max_recipients bounds them per message).
 * Returns ERROR_SUCCESS, or ERROR_NOT_ENOUGH_MEMORY (the session is unusable: close it). */
int smtp_session_input(smtp_session *s, const char *p, size_t n, size_t *used);

/* smtp_session_output - the bytes waiting to be sent (*len of them; NULL when none). Valid
 * until the next call on the session. smtp_session_output_drain removes the first n of them
 * (all: n >= *len). */
const char *smtp_session_output(const smtp_session *s, size_t *len);
void smtp_session_output_drain(smtp_session *s, size_t n);

/* smtp_session_want_close - true once the session is over (QUIT answered, too many errors,
 * refused greeting, shutdown, timeout): send the output, then close. */
bool smtp_session_want_close(const smtp_session *s);
/* smtp_session_committing - true between data_end and smtp_session_data_done. */
bool smtp_session_committing(const smtp_session *s);
/* smtp_session_reading_data - true while message data is being read (after the 354): the
 * caller's data timeout applies rather than its command timeout. */
bool smtp_session_reading_data(const smtp_session *s);

/* smtp_session_data_done - the commit data_end asked for finished: ok answers "250 2.6.0
 * Message accepted for delivery" (with " (queued as <queue_id>)" when queue_id is not NULL),
 * otherwise "451 4.3.0"; the transaction is over either way. Returns ERROR_SUCCESS,
 * ERROR_INVALID_PARAMETER when no commit was pending, or ERROR_NOT_ENOUGH_MEMORY. */
int smtp_session_data_done(smtp_session *s, bool ok, const char *queue_id);
/* smtp_session_data_result - the same with the commit's outcome as a code: 250 accepted (as
 * ok above), 452 "452 4.3.1 Insufficient system storage" (the commit ran out of disk space),
 * any other value "451 4.3.0". Same returns. */
int smtp_session_data_result(smtp_session *s, unsigned code, const char *queue_id);

/* smtp_session_set_authenticated - the client proved who it is (RelayFlags bit 8). */
void smtp_session_set_authenticated(smtp_session *s, bool yes);

/* smtp_session_want_tls - true once STARTTLS was answered 220: send the output, then throw
 * away every byte the client sent after the STARTTLS line (never feed them to the session:
 * that is the command injection of CVE-2011-0411), make the TLS handshake and call
 * smtp_session_tls_started, or close the connection if it fails. Nothing is read meanwhile. */
bool smtp_session_want_tls(const smtp_session *s);
/* smtp_session_tls_started - the handshake succeeded: the session starts afresh (RFC 3207
 * 4.2: no HELO/EHLO, no transaction, not authenticated; the client must say EHLO again).
 * Returns ERROR_SUCCESS, or ERROR_INVALID_PARAMETER when no STARTTLS was pending. */
int smtp_session_tls_started(smtp_session *s);
/* smtp_session_tls - true under TLS (after STARTTLS, or from the start: cfg.tls). */
bool smtp_session_tls(const smtp_session *s);
/* smtp_session_authenticating - true between auth_check and smtp_session_auth_done. */
bool smtp_session_authenticating(const smtp_session *s);
/* smtp_session_auth_done - the check auth_check asked for finished. account (SMTP_OK: the
 * caller's name for who logged on, at most SMTP_AUTH_USER_MAX bytes) is copied. Returns
 * ERROR_SUCCESS, ERROR_INVALID_PARAMETER when no check was pending (the session may have been
 * ended meanwhile), or ERROR_NOT_ENOUGH_MEMORY. */
int smtp_session_auth_done(smtp_session *s, smtp_auth_result r, const char *account);
/* smtp_session_account - who authenticated ("" when nobody did). */
const char *smtp_session_account(const smtp_session *s);
/* smtp_session_auth_failures - failed AUTHs so far in this session. */
unsigned smtp_session_auth_failures(const smtp_session *s);

/* smtp_session_shutdown / smtp_session_timeout - append 421 4.3.2 "Service shutting down" /
 * 421 4.4.2 "Timeout" and want to close; during DATA the message is dropped (data_abort).
 * While committing, the caller should let the commit finish first. Returns 0 or
 * ERROR_NOT_ENOUGH_MEMORY. */
int smtp_session_shutdown(smtp_session *s);
int smtp_session_timeout(smtp_session *s);

/* smtp_session_stats_get - what happened so far, for logs and counters. */
typedef struct smtp_session_stats {
    unsigned errors;       /* counted towards max_errors */
    unsigned messages;     /* accepted (data_done ok) */
    unsigned rejected;     /* messages refused at their end or failing to commit */
    unsigned bare_lf;      /* bare LFs and CRs seen (commands and data) */
    unsigned smuggling;    /* "." lines after a bare LF or CR in data */
    unsigned relay_denied; /* recipients refused for relaying */
    uint64_t bytes;        /* message bytes of all messages, as counted against max_size */
} smtp_session_stats;

void smtp_session_stats_get(const smtp_session *s, smtp_session_stats *out);
/* smtp_session_helo - the client's HELO/EHLO name ("" before one). */
const char *smtp_session_helo(const smtp_session *s);
/* smtp_session_state_name - "connected", "greeted", "mail", "rcpt", "data", "committing",
 * "starttls", "auth", "authenticating", "quit" (for logs). */
const char *smtp_session_state_name(const smtp_session *s);

/* --- the client: replies ---------------------------------------------------------------- */

/* Reply limits. RFC 5321 4.5.3.1.5 makes a reply line 512 octets; real servers send longer
 * ones (long 5xx explanations, EHLO lists), so we take four times that, and no more. */
#define SMTP_REPLY_LINE_MAX 2048 /* one reply line, its CRLF included */
#define SMTP_REPLY_LINES_MAX 100 /* lines in one (multi-line) reply */
#define SMTP_REPLY_TEXT_MAX 1000 /* of the cleaned text kept for results and NDRs */
#define SMTP_ENH_MAX 9           /* an enhanced status code "c.sss.ddd" (RFC 3463 2) */

/* smtp_reply_status - what smtp_reply_parse found. */
typedef enum smtp_reply_status {
    SMTP_REPLY_DONE,     /* a complete reply */
    SMTP_REPLY_MORE,     /* no complete reply yet (and nothing wrong so far): read more */
    SMTP_REPLY_BAD_CODE, /* a line not starting with three digits */
    SMTP_REPLY_RANGE,    /* a code outside 200-599 */
    SMTP_REPLY_BAD_SEP,  /* the fourth byte neither ' ' nor '-' (nor the line end) */
    SMTP_REPLY_MIXED,    /* a continuation line with another code than the first */
    SMTP_REPLY_TOO_LONG, /* a line over SMTP_REPLY_LINE_MAX */
    SMTP_REPLY_TOO_MANY, /* more than SMTP_REPLY_LINES_MAX lines */
    SMTP_REPLY_NUL,      /* a NUL byte */
} smtp_reply_status;

/* smtp_reply - one parsed reply. The text of the lines is untrusted peer text: `line` points
 * at it raw (smtp_reply_parse only); `text` is the cleaned form for results, logs and NDRs. */
typedef struct smtp_reply {
    unsigned code;              /* 200-599 */
    char enh[SMTP_ENH_MAX + 1]; /* the enhanced code the first line's text starts with, when
                                 * it is well-formed and of the code's class; "" otherwise */
    size_t nlines;
    struct {
        size_t off, len; /* text of line i (after "ddd-"/"ddd "): p + off, len bytes */
    } line[SMTP_REPLY_LINES_MAX];
    /* Every line's text joined by single spaces, the enhanced code taken off each line that
     * starts with it, each byte outside printable ASCII (0x20-0x7e: control characters, DEL,
     * 8-bit) replaced by '?', cut at SMTP_REPLY_TEXT_MAX bytes. */
    char text[SMTP_REPLY_TEXT_MAX + 1];
    size_t used; /* bytes of the input the reply took, its last line end included */
} smtp_reply;

/* smtp_reply_parse - parse the one reply p[0..n) starts with. Lines end with CRLF; a bare LF
 * is taken as a line end too (Postfix's client does the same: the reply's meaning cannot
 * change by it, and what is before the LF is never data), a CR elsewhere is text (and becomes
 * '?'). A line is "ddd" [("-" / " ") text]; the last one has " " or nothing after the code
 * (RFC 5321 4.2.1). Errors are found as early as the bytes show them: a line with no line end
 * within SMTP_REPLY_LINE_MAX bytes is SMTP_REPLY_TOO_LONG without waiting for more, so a
 * caller buffering for MORE never holds more than SMTP_REPLY_LINES_MAX * SMTP_REPLY_LINE_MAX
 * bytes. Returns the status; *out is filled for SMTP_REPLY_DONE (its `line` offsets are into
 * p) and zeroed otherwise. Allocates nothing. */
smtp_reply_status smtp_reply_parse(const char *p, size_t n, smtp_reply *out);
/* smtp_reply_status_name - "done", "more", "bad code", ... (static strings, for logs). */
const char *smtp_reply_status_name(smtp_reply_status st);

/* --- the client: session ---------------------------------------------------------------- */

/* The client is a state machine like the server session: the caller (imsd) connects, feeds it
 * the peer's bytes (smtp_client_input) and sends what it produces (smtp_client_output); it
 * submits messages one at a time (smtp_client_send) and learns each recipient's result
 * through a callback. DNS, sockets, timers and the queue are the caller's.
 *
 * Conversation: wait for the greeting (2xx; RFC 5321 says 220, any 2xx is taken); EHLO; on a
 * 5xx to EHLO, HELO (no extensions then). Then transactions, as many as the caller submits on
 * the connection (reuse): "MAIL FROM:<s>" with SIZE=<spool size> when SIZE was offered,
 * BODY=8BITMIME when the message is 8-bit and 8BITMIME was offered, RET= and ENVID= when DSN
 * was offered and the message has them; "RCPT TO:<r>" with NOTIFY= and ORCPT= when DSN was
 * offered; DATA; the data; "." and its reply. With PIPELINING, MAIL, every RCPT and DATA go in
 * one batch (RFC 2920 3.1: DATA ends a batch) and the replies are matched in order; without
 * it, one command at a time, and DATA is not sent when no RCPT was accepted.
 * RFC 2920 3.1: when every RCPT failed in a batch, the reply to DATA is still checked; a 354
 * then gets a single "." (the empty message ends at once; its reply is read and ignored) --
 * "if the DATA command was accepted the client SMTP should send a single dot".
 * A transaction that did not end with the 2xx to "." (MAIL refused, every RCPT refused, DATA
 * or the end of data refused) is followed by RSET; only after its reply is the message done,
 * and a refused RSET ends the connection.
 *
 * Recipients per transaction: smtp_client_config.max_recipients (MaxRecipients). The caller
 * splits a message with more recipients into several submissions (the queue keeps recipients,
 * not messages); smtp_client_send refuses more. A peer's "452 4.5.3 Too many recipients"
 * (RFC 5321 4.5.3.1.10) is an ordinary transient result for that recipient: the queue sends it
 * in a later transaction.
 *
 * SIZE: when the peer announced a limit (SIZE n, n > 0) and the message's size is over it,
 * nothing is sent: every recipient fails permanently with 5.3.4 (RFC 1870 6.1, RFC 3463),
 * stage MAIL, local.
 *
 * Message data (RFC 5321 4.5.2, 4.5.3.1.6): the caller's spool form (CRLF lines, not
 * dot-stuffed) is pulled through smtp_client_msg.read in pieces and written
 *   - with CRLF line ends only: a bare CR, a bare LF and a CR LF each end one line;
 *   - dot-stuffed: a line starting with "." gets another;
 *   - with no line over 998 octets before its CRLF, the stuffed dot counted (so no line on
 *     the wire, CRLF included, is over 1000 octets). A longer line is folded. In the top-level
 *     header block, at the last space or tab that leaves at most 998 octets (that whitespace
 *     begins the continuation line: an RFC 5322 fold, which unfolding undoes); where there is
 *     none, and everywhere in the body, by inserting CRLF SP after 998 octets, as Postfix's
 *     smtp_line_length_limit does: the inserted space keeps a broken header line a
 *     continuation and a broken body line from passing for a MIME boundary or "." line;
 *   - ended with CRLF "." CRLF (a CRLF is added first when the last line had none).
 * Memory is bounded: the machine pulls only while less than SMTP_CLIENT_OUTPUT_LOW bytes wait.
 *
 * 8-bit data to a peer without 8BITMIME (RFC 6152 3, RFC 2045): whenever the peer did not
 * offer 8BITMIME (HELO included), the data goes through a MIME converter, whatever the message
 * was declared, so raw 8-bit bytes never reach such a peer:
 *   - a leaf body part labelled Content-Transfer-Encoding 8bit or binary -- or unlabelled
 *     when the message was declared 8BITMIME -- is encoded quoted-printable (RFC 2045 6.7:
 *     lines of at most 76 characters with soft breaks, CRLF kept as hard breaks, trailing
 *     space and tab encoded, '=' and every byte outside 33-126 encoded, a '-' beginning a
 *     soft-broken line encoded so no new line can pass for a boundary) and its
 *     Content-Transfer-Encoding header is replaced by "quoted-printable"; the top-level
 *     message gets "MIME-Version: 1.0" when it had none;
 *   - multipart parts are followed by their boundary parameter and recursed into, and
 *     message/rfc822 parts are parsed as messages, up to SMTP_MIME_DEPTH_MAX levels; a
 *     composite labelled 8bit or binary is relabelled 7bit;
 *   - anything else is passed unchanged; an 8-bit byte in it -- in a header (RFC 2047
 *     encoding is not attempted), in a part labelled 7bit, base64 or quoted-printable, in a
 *     preamble or epilogue, in a part nested too deep or with a header field over
 *     SMTP_MIME_FIELD_MAX -- cannot be converted: the transfer is abandoned without the final
 *     "." (the peer must discard a message that never ended, RFC 5321 4.1.1.4), the
 *     connection wants to close, and every accepted recipient fails permanently with 5.6.3
 *     "conversion required but not possible" (RFC 3463), stage DOT.
 * A message declared 7-bit but holding 8-bit bytes, sent to a peer with 8BITMIME, goes as it
 * is, without BODY= (as Postfix does).
 *
 * Results and their classification. Every recipient of a submitted message gets exactly one
 * result, then the message one msg_done. A peer's reply gives its code, its enhanced code or,
 * when it has none, "<class>.0.0" (as Postfix), and its cleaned text; a failure with no reply
 * has code 0, local true, our own enhanced code and text:
 *
 *   where it fails                     result     enhanced  notes
 *   greeting 4xx                       transient  peer/4.0.0  connection over
 *   greeting 5xx (554)                 permanent  peer/5.0.0  RFC 5321 3.1; a caller with
 *                                                             more MX hosts tries them first
 *                                                             (Postfix smtp_skip_5xx_greeting)
 *   EHLO 5xx                           -- HELO is tried instead
 *   EHLO 4xx, HELO 4xx                 transient  peer/4.0.0  connection over
 *   HELO 5xx                           permanent  peer/5.0.0  connection over
 *   MAIL 4xx / 5xx                     transient / permanent, every recipient
 *   RCPT 4xx / 5xx                     transient / permanent, that recipient
 *   DATA 4xx / 5xx                     transient / permanent, every accepted recipient
 *   end of data ("."): 2xx             delivered, every accepted recipient
 *   end of data 4xx / 5xx              transient / permanent, every accepted recipient
 *   any 421 reply                      transient, every recipient without a result;
 *                                      connection over (RFC 5321 3.8)
 *   a reply while data is being sent   by its class (2xx/3xx: as a malformed reply), stage
 *                                      DOT; the transfer is abandoned, connection over
 *   message over the peer's SIZE       permanent  5.3.4  local, nothing sent
 *   8-bit that cannot be converted     permanent  5.6.3  local, see above
 *   the message cannot be read         transient  4.3.0  local (read failed), connection over
 *   connection lost (smtp_client_eof)  transient  4.4.2  local, every recipient without a
 *                                                        result, whatever the stage (RFC
 *                                                        5321 4.1.1.4: treat as 451)
 *   timeout (smtp_client_timeout)      transient  4.4.2  local, the same
 *   malformed reply (bad code, mixed   transient  4.5.0  local, the same; connection over
 *    codes, too long, too many lines,
 *    NUL, or an unexpected class: a 3xx
 *    where 2xx is due, 2xx to DATA)
 *
 *   STARTTLS not offered, policy       transient  4.7.4  local; QUIT (RFC 3207 4: no plain
 *    encrypt or verify                                    text when TLS is required)
 *   STARTTLS 4xx/5xx, encrypt/verify   transient  4.7.4  local, the reply in the text; QUIT
 *   STARTTLS 4xx/5xx, policy may       -- the session goes on in plain text
 *   handshake failed (tls_done false)  transient  4.7.5  local, connection over (the caller
 *                                                        retries in plain text under may)
 *   AUTH offered, credentials given,   transient  4.7.0  local; QUIT (credentials are never
 *    but no TLS or no PLAIN/LOGIN                         sent in plain text)
 *   AUTH 4xx / 5xx (535 5.7.8)         transient  peer   the peer's code and text (the
 *                                                        credentials may be fixed); QUIT
 *
 * "Connection over" failures before any message are kept: smtp_client_error.
 *
 * STARTTLS (RFC 3207) and AUTH (RFC 4954). With smtp_client_config.tls other than
 * SMTP_TLS_NONE and STARTTLS in the EHLO reply, the client sends STARTTLS (alone, never
 * pipelined); on its 2xx it wants TLS: smtp_client_tls_wanted turns true, the client reads
 * nothing more (bytes the peer sent after the 220 are discarded: they were sent in plain text
 * and could be an attacker's, RFC 3207 5) and waits for smtp_client_tls_done. The caller does
 * the handshake (and, for SMTP_TLS_VERIFY, checks the certificate and the name) and reports
 * it; on success the client forgets everything the first EHLO told (RFC 3207 4.2) and sends
 * EHLO again. A failed handshake ends the connection (see the table): the client never goes
 * on in plain text on a connection where a handshake was tried. Under SMTP_TLS_MAY a peer that
 * does not offer STARTTLS, or refuses it with 4xx/5xx, gets the mail in plain text on the same
 * connection; under SMTP_TLS_ENCRYPT and SMTP_TLS_VERIFY it gets none.
 * With credentials (auth_user, auth_pass) and AUTH in the EHLO reply, the client
 * authenticates before the first MAIL -- only under TLS, and so never after a failed or
 * refused STARTTLS: AUTH PLAIN with the initial response (RFC 4954 4, RFC 4616: "\0user\0pass"
 * in base64) when PLAIN is offered, else AUTH LOGIN (the user name and the password each
 * answering a 334). 235 goes on. A peer that offers AUTH to a session without TLS, or only
 * other mechanisms, gets no mail (4.7.0, see the table); one that offers no AUTH gets the
 * mail without it. The
 * trace callback never sees the credentials: it gets "AUTH PLAIN <credentials>" and
 * "<credentials>" in their place. */

#define SMTP_CLIENT_RCPT_DEFAULT 100 /* MaxRecipients' default */
#define SMTP_CLIENT_RCPT_LIMIT 10000 /* the largest max_recipients accepted */
#define SMTP_CLIENT_OUTPUT_LOW 16384 /* message data is pulled while less is waiting */
#define SMTP_CLIENT_READ_MAX 4096    /* bytes asked of smtp_client_msg.read at a time */
#define SMTP_DATA_LINE_FOLD 998      /* RFC 5321 4.5.3.1.6: octets before the CRLF */
#define SMTP_QP_LINE_MAX 76          /* RFC 2045 6.7 (5): encoded line, "=" included */
#define SMTP_MIME_DEPTH_MAX 16       /* nested multipart and message/rfc822 levels */
#define SMTP_MIME_BOUNDARY_MAX 70    /* RFC 2046 5.1.1 */
#define SMTP_MIME_FIELD_MAX 4096     /* a header field held for analysis, folds included */

/* RFC 5321 4.5.3.2 time-outs, seconds; RFC 5321 gives none for EHLO, RSET and QUIT: 5
 * minutes, as Postfix's smtp_helo_timeout and smtp_quit_timeout (smtp_rset_timeout's 20 s
 * would end a slow but working connection). */
#define SMTP_TIMEOUT_GREETING 300   /* 4.5.3.2.1 initial 220 */
#define SMTP_TIMEOUT_HELO 300       /* EHLO/HELO */
#define SMTP_TIMEOUT_MAIL 300       /* 4.5.3.2.2 */
#define SMTP_TIMEOUT_RCPT 300       /* 4.5.3.2.3 */
#define SMTP_TIMEOUT_DATA_INIT 120  /* 4.5.3.2.4 the 354 */
#define SMTP_TIMEOUT_DATA_BLOCK 180 /* 4.5.3.2.5 each write of data making no progress */
#define SMTP_TIMEOUT_DATA_TERM 600  /* 4.5.3.2.6 the reply to "." */
#define SMTP_TIMEOUT_RSET 300
#define SMTP_TIMEOUT_QUIT 300
/* STARTTLS's reply, the handshake and AUTH: 5 minutes, Postfix's smtp_starttls_timeout. */
#define SMTP_TIMEOUT_STARTTLS 300
#define SMTP_TIMEOUT_TLS 300 /* the caller's handshake (smtp_client_tls_wanted) */
#define SMTP_TIMEOUT_AUTH 300

#define SMTP_AUTH_FIELD_MAX 255 /* bytes of a user name or a password (RFC 4616 says 255) */

/* Where a result was decided. */
typedef enum smtp_stage {
    SMTP_STAGE_GREETING, /* connecting and the greeting */
    SMTP_STAGE_EHLO,     /* EHLO or HELO */
    SMTP_STAGE_STARTTLS, /* STARTTLS, the TLS handshake, the policy's checks */
    SMTP_STAGE_AUTH,     /* AUTH (RFC 4954) */
    SMTP_STAGE_MAIL,     /* MAIL FROM (and the SIZE check before it) */
    SMTP_STAGE_RCPT,     /* RCPT TO */
    SMTP_STAGE_DATA,     /* DATA, waiting for the 354 */
    SMTP_STAGE_DOT,      /* sending the data, and the reply to its end */
    SMTP_STAGE_RSET,     /* RSET after a failed transaction */
    SMTP_STAGE_QUIT,
} smtp_stage;

typedef enum smtp_outcome {
    SMTP_DELIVERED, /* the peer took responsibility (2xx to the end of data) */
    SMTP_TRANSIENT, /* try again later */
    SMTP_PERMANENT, /* give up: a non-delivery report */
} smtp_outcome;

/* smtp_result - a recipient's (or the connection's) result. For an NDR: "Diagnostic-Code:
 * smtp; <code> <enh> <text>" when code is not 0 (see smtp_result_format). */
typedef struct smtp_result {
    smtp_outcome outcome;
    smtp_stage stage;
    unsigned code;                      /* the peer's reply code; 0 when there was no reply */
    bool local;                         /* decided here (no reply): code 0, our text */
    char enh[SMTP_ENH_MAX + 1];         /* always set: the peer's, or per the table */
    char text[SMTP_REPLY_TEXT_MAX + 1]; /* the reply's cleaned text, or ours */
} smtp_result;

/* smtp_result_format - "<code> <enh> <text>" (or "<enh> <text>" for a local result) into out
 * (size bytes, always terminated, cut to fit). Returns out. */
char *smtp_result_format(const smtp_result *r, char *out, size_t size);
/* smtp_stage_name - "greeting", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA",
 * "end of data", "RSET", "QUIT". */
const char *smtp_stage_name(smtp_stage st);

/* What the peer's EHLO reply offered (all false after HELO). Keywords are matched without
 * regard to case and may be followed by any parameters (SIZE's number is read when there). */
typedef struct smtp_client_ext {
    bool esmtp;        /* EHLO was answered 2xx */
    bool size;         /* SIZE */
    uint64_t size_max; /* SIZE's number; 0: none given or 0 (no fixed limit, RFC 1870 4) */
    bool pipelining, eightbitmime, dsn, enhanced, starttls;
    bool auth;                   /* AUTH (or the old "AUTH=" form) */
    bool auth_plain, auth_login; /* ... with the PLAIN, LOGIN mechanism among its words */
} smtp_client_ext;

/* smtp_tls_policy - what a connection does about TLS (docs/ims.md's TlsPolicy). */
typedef enum smtp_tls_policy {
    SMTP_TLS_NONE,    /* never STARTTLS */
    SMTP_TLS_MAY,     /* STARTTLS when offered; else, or when refused, plain text */
    SMTP_TLS_ENCRYPT, /* STARTTLS or no mail; any certificate */
    SMTP_TLS_VERIFY,  /* STARTTLS or no mail; the caller verifies certificate and name */
} smtp_tls_policy;

typedef struct smtp_client_config {
    const char *helo;        /* our name for EHLO/HELO: a domain or address literal; required */
    unsigned max_recipients; /* per transaction; 0: SMTP_CLIENT_RCPT_DEFAULT */
    smtp_tls_policy tls;     /* SMTP_TLS_NONE (0) unless said */
    /* AUTH credentials, both or neither (NULL: no AUTH); at most SMTP_AUTH_FIELD_MAX bytes,
     * no NUL inside of course; copied, and wiped from memory at smtp_client_free. */
    const char *auth_user, *auth_pass;
} smtp_client_config;

/* smtp_client_rcpt - one recipient of a submission. Strings are the caller's and must live
 * until msg_done. */
typedef struct smtp_client_rcpt {
    const char *addr;  /* mailbox "local@domain" (RFC 5321 syntax, as smtp_parse_path takes) */
    unsigned notify;   /* SMTP_NOTIFY_* (RFC 3461), 0: none */
    const char *orcpt; /* "addr-type;xtext" or NULL */
} smtp_client_rcpt;

/* smtp_client_msg - one message to send; the struct, its strings and its recipients are the
 * caller's and must live until msg_done. */
typedef struct smtp_client_msg {
    const char *from;             /* reverse-path mailbox; "" for <> */
    const smtp_client_rcpt *rcpt; /* 1 to max_recipients of them */
    size_t nrcpt;
    uint64_t size;     /* the data's size as spooled: SIZE= and the SIZE check */
    bool eightbit;     /* the data is 8-bit (the spooled BODY=8BITMIME) */
    smtp_ret ret;      /* RET=, SMTP_RET_NONE: none */
    const char *envid; /* ENVID= xtext, or NULL */
    /* read - copy the next at most cap bytes of the data into p and set *got; *got 0 means
     * the end. The data is read once, from its start, only after the peer's 354. Return 0, or
     * non-zero when it cannot be read (the transfer is abandoned: see the table). */
    int (*read)(void *arg, char *p, size_t cap, size_t *got);
    void *read_arg;
} smtp_client_msg;

typedef struct smtp_client_callbacks {
    void *arg;
    /* rcpt_done - recipient i of m has its result; exactly once per recipient. */
    void (*rcpt_done)(void *arg, const smtp_client_msg *m, size_t i, const smtp_result *r);
    /* msg_done - every recipient of m has its result and the client is done with m (it reads
     * no more of it). Afterwards smtp_client_ready says whether another may follow. */
    void (*msg_done)(void *arg, const smtp_client_msg *m);
    /* trace - for the protocol log: each command line we send (without its CRLF; message
     * data is not traced) and each reply line received (cleaned as smtp_reply.text is, at
     * most SMTP_REPLY_LINE_MAX bytes). SMTP_TRACE_COMMAND is ours, SMTP_TRACE_REPLY the
     * peer's. NULL: no trace. */
    void (*trace)(void *arg, smtp_trace_kind kind, const char *p, size_t n);
} smtp_client_callbacks;
/* No callback may call into the client. */

typedef struct smtp_client smtp_client;

/* smtp_client_new - a client for a connection just opened; it waits for the greeting. cfg and
 * cb are copied (cfg->helo and the credentials too). Returns ERROR_SUCCESS,
 * ERROR_INVALID_PARAMETER (no or bad helo name, max_recipients over SMTP_CLIENT_RCPT_LIMIT, an
 * unknown tls policy, only one of the credentials, one empty or over SMTP_AUTH_FIELD_MAX) or
 * ERROR_NOT_ENOUGH_MEMORY; *out is NULL on error. Free with smtp_client_free. */
int smtp_client_new(const smtp_client_config *cfg, const smtp_client_callbacks *cb,
                    smtp_client **out);
/* smtp_client_free - release everything. A message still in flight gets no more callbacks:
 * call smtp_client_eof first to have its recipients' results. NULL is fine. */
void smtp_client_free(smtp_client *c);

/* smtp_client_send - submit m (nothing is copied: m must live until msg_done). Allowed
 * whenever smtp_client_ready is true, before the greeting too (MAIL waits for EHLO). The SIZE
 * check may fail it at once (rcpt_done and msg_done from inside this call). Returns
 * ERROR_SUCCESS; ERROR_INVALID_PARAMETER when not ready or m has no read function, no
 * recipients or more than max_recipients; ERROR_INVALID_DATA for an address smtp_parse_path
 * refuses (the sender as a reverse-path, recipients as forward-paths), a malformed ENVID or
 * ORCPT xtext or NOTIFY combination: the caller's queue holds only what our server parsed;
 * or ERROR_NOT_ENOUGH_MEMORY. On error no callback is called. */
int smtp_client_send(smtp_client *c, const smtp_client_msg *m);
/* smtp_client_ready - a message may be submitted: no message in flight, and the connection
 * neither over nor quitting. */
bool smtp_client_ready(const smtp_client *c);
/* smtp_client_quit - send QUIT (when no message is in flight; a no-op otherwise or when
 * already over); before the greeting and EHLO are done, QUIT is sent once they are. The
 * client wants to close once its reply came. */
void smtp_client_quit(smtp_client *c);

/* smtp_client_input - the peer's bytes p[0..n), all consumed (a partial line is kept inside,
 * at most SMTP_REPLY_LINE_MAX bytes). Bytes after the connection is over are ignored.
 * Callbacks run from here. Returns ERROR_SUCCESS or ERROR_NOT_ENOUGH_MEMORY (the client is
 * unusable then: call smtp_client_eof and close). */
int smtp_client_input(smtp_client *c, const char *p, size_t n);
/* smtp_client_output - the bytes to send now (*len of them; NULL when none), valid until the
 * next call on the client. While message data is being sent it first pulls more of the
 * message (read; callbacks may run: a failed read or an impossible conversion ends the
 * message), so call it again after each drain until it returns nothing.
 * smtp_client_output_drain removes the first n bytes sent (all: n >= *len). */
const char *smtp_client_output(smtp_client *c, size_t *len);
void smtp_client_output_drain(smtp_client *c, size_t n);

/* smtp_client_want_close - the connection is over (an error, the QUIT reply, an abandoned
 * transfer): send what smtp_client_output still has if the socket takes it, then close. */
bool smtp_client_want_close(const smtp_client *c);
/* smtp_client_eof - the peer closed the connection or it broke: every recipient without a
 * result fails transiently (4.4.2, "lost connection"), and the client is over. */
void smtp_client_eof(smtp_client *c);
/* smtp_client_timeout_secs - how long the caller may wait, now, for the peer (its reply, or
 * for a write of data to make progress): one of the SMTP_TIMEOUT_* values, or 0 when the
 * client waits for nothing (idle between messages, or over). */
unsigned smtp_client_timeout_secs(const smtp_client *c);
/* smtp_client_timeout - that time ran out: every recipient without a result fails
 * transiently (4.4.2, "timeout"), and the client wants to close. */
void smtp_client_timeout(smtp_client *c);

/* smtp_client_tls_wanted - the peer said 2xx to STARTTLS: start the handshake on the
 * connection now (nothing waits in smtp_client_output; discard whatever was read from the
 * peer and not yet given to smtp_client_input), then call smtp_client_tls_done. */
bool smtp_client_tls_wanted(const smtp_client *c);
/* smtp_client_tls_done - the handshake smtp_client_tls_wanted asked for is over. ok: EHLO is
 * sent again (output). Not ok: every recipient without a result fails transiently (4.7.5,
 * "TLS handshake failed: <why>", why a short reason of the caller's or NULL) and the client is
 * over. Ignored when no handshake was wanted. Callbacks may run from here. */
void smtp_client_tls_done(smtp_client *c, bool ok, const char *why);
/* smtp_client_tls_active - the session runs under TLS (a handshake succeeded). */
bool smtp_client_tls_active(const smtp_client *c);
/* smtp_client_authenticated - AUTH succeeded (235). */
bool smtp_client_authenticated(const smtp_client *c);

/* smtp_client_extensions - what EHLO offered (valid for the client's life; after STARTTLS,
 * what the EHLO under TLS offered). */
const smtp_client_ext *smtp_client_extensions(const smtp_client *c);
/* smtp_client_error - why the connection is over (greeting, EHLO/HELO or RSET refused, 421,
 * lost, timeout, malformed reply, abandoned transfer), or NULL while it is not (and after an
 * orderly QUIT). Valid for the client's life. */
const smtp_result *smtp_client_error(const smtp_client *c);
/* smtp_client_stage - the stage the client is in now (for logs). */
smtp_stage smtp_client_stage(const smtp_client *c);

#endif
