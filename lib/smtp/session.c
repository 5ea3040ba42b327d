/* session.c - the SMTP server session: a state machine that takes the client's bytes, answers
 * each command in order (RFC 5321, RFC 2920 pipelining), streams message data to the caller
 * and waits for the caller's commit before the 250 that promises delivery. */
#include "smtp/smtp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reg/reg.h"

#define SESS_CHUNK 16384      /* message bytes gathered before one data_chunk call */
#define SESS_SOFTWARE_MAX 100 /* of the greeting's software name */
#define SESS_QUEUE_ID_MAX 64  /* of the queue id in the 250 after DATA */

typedef enum sess_state {
    ST_CONNECTED,  /* greeted by us, no HELO/EHLO yet */
    ST_GREETED,    /* HELO/EHLO done, no transaction */
    ST_MAIL,       /* MAIL accepted, no recipient accepted yet */
    ST_RCPT,       /* at least one recipient accepted */
    ST_DATA,       /* reading message data */
    ST_COMMITTING, /* data_end called, waiting for smtp_session_data_done */
    ST_TLS,        /* STARTTLS answered 220: waiting for smtp_session_tls_started */
    ST_AUTH,       /* AUTH sent a 334: the next line is the client's response */
    ST_AUTHING,    /* auth_check called, waiting for smtp_session_auth_done */
    ST_QUIT,       /* over: nothing more is read */
} sess_state;

static const char *const sess_state_names[] = {
    [ST_CONNECTED] = "connected", [ST_GREETED] = "greeted", [ST_MAIL] = "mail",
    [ST_RCPT] = "rcpt",           [ST_DATA] = "data",       [ST_COMMITTING] = "committing",
    [ST_TLS] = "starttls",        [ST_AUTH] = "auth",       [ST_AUTHING] = "authenticating",
    [ST_QUIT] = "quit",
};

/* Where the DATA scanner is within a line. Only a real CRLF leads to D_BOL, so only
 * CRLF "." CRLF can end the data (RFC 5321 4.1.1.4). */
typedef enum data_state {
    D_BOL,     /* at the start of a line */
    D_DOT,     /* "." at the start of a line */
    D_DOTCR,   /* "." CR at the start of a line */
    D_MID,     /* inside a line */
    D_CR,      /* CR inside a line */
    D_BARE,    /* just after a bare LF or CR */
    D_BAREDOT, /* "." just after a bare LF or CR */
} data_state;

/* Why a command line or a message is refused (BAD_LONG: command lines only; a line of message
 * data may be of any length within max_size). */
#define BAD_LONG 0x01
#define BAD_NUL 0x02
#define BAD_BARE 0x04
#define BAD_SIZE 0x08
#define BAD_SMUGGLE 0x10
#define BAD_FAIL 0x20    /* data_chunk failed */
#define BAD_NOSPACE 0x40 /* data_chunk failed with 452: out of storage */

struct smtp_session {
    smtp_config cfg;
    smtp_callbacks cb;
    char fqdn[SMTP_DOMAIN_MAX + 1];
    char software[SESS_SOFTWARE_MAX + 1];
    smtp_ip client, local;
    bool authenticated;
    bool tls; /* under TLS */
    char account[SMTP_AUTH_USER_MAX + 1];
    unsigned auth_failures;
    /* The AUTH exchange in progress (ST_AUTH). */
    bool auth_login;  /* LOGIN (else PLAIN) */
    bool auth_passwd; /* LOGIN: the user name came, the password is next */
    char auth_user[SMTP_AUTH_USER_MAX + 1];
    bool enhanced;      /* extensions advertised: enhanced status codes in replies */
    bool oom;           /* a reply could not be stored: the session is unusable */
    bool in_auth_check; /* inside cb.auth_check: its caller traces the replies */
    sess_state state;
    unsigned errors;
    buf out;

    /* The command line being assembled: at most max_line - 2 bytes of it are kept (an AUTH
     * line: SMTP_AUTH_LINE_MAX - 2, the buffer growing to that only for such a line). NULL
     * until the client's first command byte. */
    char *line;
    size_t line_len, line_cap;
    bool line_cr;      /* the last byte seen was a CR */
    unsigned line_bad; /* BAD_LONG, BAD_NUL, BAD_BARE */

    /* The transaction. */
    char helo[SMTP_DOMAIN_MAX + 1];
    bool esmtp;
    bool helo_done;
    smtp_path from;
    smtp_mail_params mail;
    smtp_rcpt *rcpt;
    size_t nrcpt, rcpt_cap;
    bool rcpt_tried; /* a RCPT was given in this transaction, accepted or not */
    smtp_envelope env;

    /* DATA. */
    data_state ds;
    uint64_t dsize;  /* message bytes, dot-unstuffed, CRLFs counted */
    unsigned dbad;   /* BAD_* for the message */
    bool data_begun; /* data_begin succeeded and neither data_end nor data_abort came yet */
    char *chunk;
    size_t chunk_len;

    smtp_session_stats stats;
};

/* --- configuration ------------------------------------------------------------------------ */

void smtp_config_defaults(smtp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->advertise_extensions = true;
    cfg->max_size = SMTP_SIZE_DEFAULT;
    cfg->max_recipients = SMTP_RCPT_DEFAULT;
    cfg->max_errors = SMTP_ERRORS_DEFAULT;
    cfg->max_line = SMTP_LINE_MAX;
    cfg->mode = SMTP_TRANSFER_INOUT;
}

int smtp_config_check(const smtp_config *cfg)
{
    if (!cfg || !cfg->fqdn || !cfg->fqdn[0] || !cfg->is_local)
        return ERROR_INVALID_PARAMETER;
    if (cfg->max_recipients &&
        (cfg->max_recipients < SMTP_RCPT_MIN || cfg->max_recipients > SMTP_RCPT_LIMIT))
        return ERROR_INVALID_PARAMETER;
    if (cfg->max_errors &&
        (cfg->max_errors < SMTP_ERRORS_MIN || cfg->max_errors > SMTP_ERRORS_LIMIT))
        return ERROR_INVALID_PARAMETER;
    if (cfg->max_line && (cfg->max_line < SMTP_LINE_MIN || cfg->max_line > SMTP_LINE_LIMIT))
        return ERROR_INVALID_PARAMETER;
    if ((unsigned)cfg->mode > SMTP_TRANSFER_NONE)
        return ERROR_INVALID_PARAMETER;
    return ERROR_SUCCESS;
}

/* sess_clean - copy text for a reply line: control characters would end the line early or
 * add one, so they become '?'. */
static void sess_clean(char *dst, size_t size, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[i] = '\0';
}

/* --- replies ------------------------------------------------------------------------------ */

static void sess_reply(smtp_session *s, smtp_reply_id id)
{
    if (smtp_reply_append(&s->out, id, s->enhanced, s->fqdn))
        s->oom = true;
}

/* sess_reply_text - one line of our own text with id's code and enhanced code. */
static void sess_reply_text(smtp_session *s, unsigned code, const char *enh, const char *text)
{
    if (smtp_reply_lines(&s->out, code, s->enhanced ? enh : NULL, &text, 1))
        s->oom = true;
}

/* sess_trace_out - show the trace callback the replies added since out.len was `from`. */
static void sess_trace_out(smtp_session *s, size_t from)
{
    if (s->cb.trace && s->out.len > from)
        s->cb.trace(s->cb.arg, SMTP_TRACE_REPLY, (const char *)s->out.data + from,
                    s->out.len - from);
}

/* sess_close - the session is over once its output is sent. */
static void sess_close(smtp_session *s)
{
    s->state = ST_QUIT;
}

/* sess_error - answer a client error and count it; max_errors of them end the session. */
static void sess_error(smtp_session *s, smtp_reply_id id)
{
    sess_reply(s, id);
    s->errors++;
    s->stats.errors++;
    if (s->errors >= s->cfg.max_errors) {
        sess_reply(s, SMTP_R_TOO_MANY_ERRORS);
        sess_close(s);
    }
}

/* --- the transaction ---------------------------------------------------------------------- */

/* sess_abort_data - drop a message the caller has begun storing. */
static void sess_abort_data(smtp_session *s)
{
    if (s->data_begun) {
        s->data_begun = false;
        if (s->cb.data_abort)
            s->cb.data_abort(s->cb.arg);
    }
}

/* sess_drop_rcpts - forget the transaction's recipients, handing each one's caller data back:
 * the session is the one owner of the recipient list (RSET, HELO/EHLO, the end of DATA and
 * smtp_session_free all come through here). */
static void sess_drop_rcpts(smtp_session *s)
{
    for (size_t i = 0; i < s->nrcpt; i++)
        if (s->rcpt[i].data && s->cb.rcpt_release)
            s->cb.rcpt_release(s->cb.arg, s->rcpt[i].data);
    s->nrcpt = 0;
}

/* sess_reset - end the transaction (RSET, HELO/EHLO, after DATA). */
static void sess_reset(smtp_session *s)
{
    sess_abort_data(s);
    sess_drop_rcpts(s);
    memset(&s->from, 0, sizeof s->from);
    memset(&s->mail, 0, sizeof s->mail);
    memset(&s->env, 0, sizeof s->env);
    s->rcpt_tried = false;
    s->chunk_len = 0;
    s->state = s->helo_done ? ST_GREETED : ST_CONNECTED;
}

static const smtp_envelope *sess_envelope(smtp_session *s)
{
    s->env.helo = s->helo;
    s->env.esmtp = s->esmtp;
    s->env.tls = s->tls;
    s->env.account = s->account;
    s->env.from = &s->from;
    s->env.mail = &s->mail;
    s->env.rcpt = s->rcpt;
    s->env.nrcpt = s->nrcpt;
    s->env.size = s->dsize;
    return &s->env;
}

/* --- commands ----------------------------------------------------------------------------- */

static void sess_hello_line(smtp_session *s, char *line, size_t size)
{
    char ip[64];
    smtp_ip_format(&s->client, ip, sizeof ip);
    if (ip[0])
        snprintf(line, size, "%s Hello [%s]", s->fqdn, ip);
    else
        snprintf(line, size, "%s Hello", s->fqdn);
}

/* sess_auth_offered - AUTH can be used now: configured, and under TLS unless allowed without. */
static bool sess_auth_offered(const smtp_session *s)
{
    return s->cfg.auth && s->cb.auth_check && (s->tls || s->cfg.auth_without_tls);
}

static void cmd_helo(smtp_session *s, const smtp_cmd *c)
{
    /* A new HELO/EHLO ends any transaction, as RSET does (RFC 5321 4.1.4). */
    s->helo_done = true;
    sess_reset(s);
    memcpy(s->helo, c->helo, sizeof s->helo);
    s->esmtp = c->verb == SMTP_VERB_EHLO;
    char hello[SMTP_DOMAIN_MAX + 80];
    sess_hello_line(s, hello, sizeof hello);
    if (c->verb == SMTP_VERB_HELO || !s->cfg.advertise_extensions) {
        if (smtp_reply_lines(&s->out, 250, NULL, (const char *const[]){hello}, 1))
            s->oom = true;
        return;
    }
    char size[48];
    if (s->cfg.max_size)
        snprintf(size, sizeof size, "SIZE %llu", (unsigned long long)s->cfg.max_size);
    else
        snprintf(size, sizeof size, "SIZE");
    const char *lines[8] = {hello, size, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN"};
    size_t n = 6;
    if (s->cfg.starttls && !s->tls)
        lines[n++] = "STARTTLS";
    if (sess_auth_offered(s))
        lines[n++] = "AUTH PLAIN LOGIN";
    if (smtp_reply_lines(&s->out, 250, NULL, lines, n))
        s->oom = true;
}

static void cmd_mail(smtp_session *s, const smtp_cmd *c)
{
    if (s->cfg.auth_required && !s->authenticated) {
        sess_reply(s, SMTP_R_NEED_AUTH); /* RFC 6409 4.3 */
        return;
    }
    if (c->mail.has_size && s->cfg.max_size && c->mail.size > s->cfg.max_size) {
        sess_reply(s, SMTP_R_SIZE_EXCEEDED); /* RFC 1870 6.1: refused at MAIL */
        return;
    }
    if (s->cb.mail_check) {
        unsigned code = s->cb.mail_check(s->cb.arg, &c->path);
        if (code != 250) {
            sess_reply(s, code == 452   ? SMTP_R_NO_STORAGE
                          : code == 450 ? SMTP_R_CLIENT_MSG_RATE
                                        : SMTP_R_LOCAL_ERROR);
            return;
        }
    }
    if (s->authenticated && s->cb.sender_check) {
        smtp_reply_id id = s->cb.sender_check(s->cb.arg, s->account, &c->path);
        if (id != SMTP_R_NONE) {
            sess_reply(s, id);
            return;
        }
    }
    s->from = c->path;
    s->mail = c->mail;
    sess_drop_rcpts(s);
    s->rcpt_tried = false;
    s->state = ST_MAIL;
    sess_reply(s, SMTP_R_SENDER_OK);
}

static int sess_add_rcpt(smtp_session *s, const smtp_cmd *c, smtp_addr_class cls, void *data)
{
    if (s->nrcpt == s->rcpt_cap) {
        size_t cap = s->rcpt_cap ? s->rcpt_cap * 2 : 8;
        if (cap > s->cfg.max_recipients)
            cap = s->cfg.max_recipients;
        smtp_rcpt *v = realloc(s->rcpt, cap * sizeof *v);
        if (!v)
            return ERROR_NOT_ENOUGH_MEMORY;
        s->rcpt = v;
        s->rcpt_cap = cap;
    }
    smtp_rcpt *r = &s->rcpt[s->nrcpt++];
    r->path = c->path;
    r->cls = cls;
    r->params = c->rcpt;
    r->data = data;
    return ERROR_SUCCESS;
}

/* sess_rcpt_check - ask the caller about a recipient; what it attaches is kept only with a
 * 250 (anything attached to a refusal is handed straight back). */
static unsigned sess_rcpt_check(smtp_session *s, const smtp_cmd *c, smtp_addr_class cls,
                                void **data)
{
    *data = NULL;
    unsigned code = s->cb.rcpt_check(s->cb.arg, &c->path, cls, data);
    if (code != 250 && *data) {
        if (s->cb.rcpt_release)
            s->cb.rcpt_release(s->cb.arg, *data);
        *data = NULL;
    }
    return code;
}

static void cmd_rcpt(smtp_session *s, const smtp_cmd *c)
{
    s->rcpt_tried = true;
    if (s->nrcpt >= s->cfg.max_recipients) {
        sess_reply(s, SMTP_R_TOO_MANY_RCPT);
        return;
    }
    smtp_refusal why;
    smtp_addr_class cls = smtp_addr_classify(&c->path, s->cfg.is_local, s->cfg.is_local_arg, &why);
    if (cls == SMTP_ADDR_REFUSED) {
        if (why == SMTP_REFUSE_NO_DOMAIN || why == SMTP_REFUSE_QUOTED ||
            why == SMTP_REFUSE_TRAILING_DOT) {
            sess_error(s, SMTP_R_MAILBOX_NAME);
        } else {
            s->stats.relay_denied++;
            if (s->cb.relay_denied)
                s->cb.relay_denied(s->cb.arg, &c->path, why);
            sess_error(s, SMTP_R_RELAY_DENIED);
        }
        return;
    }
    void *data = NULL;
    if (cls == SMTP_ADDR_LOCAL && s->cb.rcpt_check) {
        unsigned code = sess_rcpt_check(s, c, cls, &data);
        if (code == 550) {
            sess_reply(s, SMTP_R_USER_UNKNOWN);
            return;
        }
        if (code != 250) {
            /* 4xx, or a value the contract does not know */
            sess_reply(s, code == 450 ? SMTP_R_CLIENT_RCPT_RATE : SMTP_R_RCPT_TEMP);
            return;
        }
    }
    if (cls == SMTP_ADDR_REMOTE && !(s->cfg.auth_relay && s->authenticated) &&
        !smtp_relay_allowed(s->cfg.relay, &s->client, &s->local, s->authenticated)) {
        s->stats.relay_denied++;
        if (s->cb.relay_denied)
            s->cb.relay_denied(s->cb.arg, &c->path, SMTP_REFUSE_NONE);
        sess_error(s, SMTP_R_RELAY_DENIED);
        return;
    }
    if (cls == SMTP_ADDR_REMOTE && s->cb.rcpt_check) {
        unsigned code = sess_rcpt_check(s, c, cls, &data);
        if (code != 250) {
            sess_reply(s, code == 453   ? SMTP_R_NO_OUTBOUND
                          : code == 450 ? SMTP_R_CLIENT_RCPT_RATE
                                        : SMTP_R_RCPT_TEMP);
            return;
        }
    }
    if (sess_add_rcpt(s, c, cls, data)) {
        if (data && s->cb.rcpt_release)
            s->cb.rcpt_release(s->cb.arg, data);
        s->oom = true;
        return;
    }
    s->state = ST_RCPT;
    sess_reply(s, SMTP_R_RCPT_OK);
}

static void cmd_data(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    /* The chunk buffer is made at the first DATA: an idle session costs only its line. */
    if (!s->chunk && !(s->chunk = malloc(SESS_CHUNK))) {
        sess_reply(s, SMTP_R_LOCAL_ERROR);
        return;
    }
    s->dsize = 0; /* the envelope's size is 0 at data_begin */
    int rc = s->cb.data_begin ? s->cb.data_begin(s->cb.arg, sess_envelope(s)) : 0;
    if (rc) {
        sess_reply(s, rc == 452 ? SMTP_R_NO_STORAGE : SMTP_R_LOCAL_ERROR);
        return;
    }
    s->data_begun = true;
    s->state = ST_DATA;
    s->ds = D_BOL; /* the DATA line's CRLF: "." CRLF at once is an empty message */
    s->dsize = 0;
    s->dbad = 0;
    s->chunk_len = 0;
    sess_reply(s, SMTP_R_DATA_GO);
}

static void cmd_rset(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    sess_reset(s);
    sess_reply(s, SMTP_R_OK);
}

static void cmd_noop(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    sess_reply(s, SMTP_R_OK);
}

static void cmd_quit(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    sess_reset(s);
    sess_reply(s, SMTP_R_QUIT);
    sess_close(s);
}

static void cmd_vrfy(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    sess_reply(s, SMTP_R_VRFY); /* no directory harvesting (RFC 5321 3.5.3 allows 252) */
}

static void cmd_help(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    static const char *const lines[] = {"Commands supported:", "HELO EHLO MAIL RCPT DATA",
                                        "RSET NOOP QUIT HELP VRFY"};
    if (smtp_reply_lines(&s->out, 214, s->enhanced ? "2.0.0" : NULL, lines, 3))
        s->oom = true;
}

static void cmd_unimplemented(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    sess_error(s, SMTP_R_NOT_IMPLEMENTED);
}

/* --- STARTTLS and AUTH ---------------------------------------------------------------------- */

static void cmd_starttls(smtp_session *s, const smtp_cmd *c)
{
    (void)c;
    if (s->tls) {
        sess_error(s, SMTP_R_TLS_ACTIVE);
        return;
    }
    if (!s->cfg.starttls) {
        sess_error(s, SMTP_R_NOT_IMPLEMENTED); /* not offered: no certificate */
        return;
    }
    if (s->state == ST_MAIL || s->state == ST_RCPT) {
        sess_error(s, SMTP_R_IN_TRANSACTION);
        return;
    }
    sess_reply(s, SMTP_R_TLS_READY);
    s->state = ST_TLS; /* nothing more is read until the handshake is made */
}

/* sess_auth_wipe - forget the exchange in progress. */
static void sess_auth_wipe(smtp_session *s)
{
    smtp_wipe(s->auth_user, sizeof s->auth_user);
    s->auth_login = s->auth_passwd = false;
    if (s->line_cap > s->cfg.max_line) {
        /* The AUTH line's room is given back: an idle session costs its command line only. */
        smtp_wipe(s->line, s->line_cap);
        char *l = realloc(s->line, s->cfg.max_line);
        if (l) {
            s->line = l;
            s->line_cap = s->cfg.max_line;
        }
    }
}

/* sess_auth_check - credentials complete: hand them to the caller and wait. */
static void sess_auth_check(smtp_session *s, smtp_sasl_creds *cr)
{
    s->state = ST_AUTHING;
    s->in_auth_check = true;
    s->cb.auth_check(s->cb.arg, s->auth_login ? "LOGIN" : "PLAIN", cr);
    s->in_auth_check = false;
    smtp_wipe(cr, sizeof *cr);
    sess_auth_wipe(s);
}

/* sess_auth_result - the end of an AUTH exchange (untraced: the caller traces). */
static void sess_auth_result(smtp_session *s, smtp_auth_result r, const char *account)
{
    s->state = s->helo_done ? ST_GREETED : ST_CONNECTED;
    switch (r) {
    case SMTP_AUTH_OK:
        s->authenticated = true;
        sess_clean(s->account, sizeof s->account, account && account[0] ? account : "?");
        sess_reply(s, SMTP_R_AUTH_OK);
        break;
    case SMTP_AUTH_FAILED:
        s->auth_failures++;
        sess_reply(s, SMTP_R_AUTH_FAILED);
        if (s->auth_failures >= SMTP_AUTH_FAILURES_MAX) {
            sess_reply(s, SMTP_R_AUTH_TOO_MANY);
            sess_close(s);
        }
        break;
    default:
        sess_reply(s, SMTP_R_AUTH_TEMP);
        break;
    }
}

/* sess_auth_refused - a refusal that needs no check (an authzid for someone else): counted as
 * a failed logon, as the caller's refusals are. */
static void sess_auth_refused(smtp_session *s)
{
    sess_auth_wipe(s);
    sess_auth_result(s, SMTP_AUTH_FAILED, NULL);
}

/* sess_auth_step - one response (an initial response or a line after a 334), its base64 in
 * p[0..n) ("=" for an empty initial response is the caller's to turn into n == 0). */
static void sess_auth_step(smtp_session *s, const char *p, size_t n)
{
    smtp_sasl_creds cr;
    smtp_reply_id rc;
    if (!s->auth_login) {
        rc = smtp_sasl_plain_decode(p, n, &cr);
        if (rc == SMTP_R_NONE)
            sess_auth_check(s, &cr);
        else if (rc == SMTP_R_AUTH_FAILED)
            sess_auth_refused(s);
        else
            goto bad;
        return;
    }
    size_t len;
    if (!s->auth_passwd) {
        if (smtp_sasl_text_decode(p, n, s->auth_user, sizeof s->auth_user, &len))
            goto bad;
        s->auth_passwd = true;
        s->state = ST_AUTH;
        sess_reply_text(s, 334, NULL, "UGFzc3dvcmQ6"); /* "Password:" */
        return;
    }
    memset(&cr, 0, sizeof cr);
    if (smtp_sasl_text_decode(p, n, cr.pass, sizeof cr.pass, &cr.passlen))
        goto bad;
    memcpy(cr.user, s->auth_user, sizeof cr.user);
    sess_auth_check(s, &cr);
    return;
bad:
    sess_auth_wipe(s);
    s->state = s->helo_done ? ST_GREETED : ST_CONNECTED;
    sess_error(s, SMTP_R_AUTH_DECODE);
}

static void cmd_auth(smtp_session *s, const smtp_cmd *c)
{
    if (!s->cfg.auth || !s->cb.auth_check) {
        sess_error(s, SMTP_R_NOT_IMPLEMENTED); /* DisableAuth */
        return;
    }
    if (!s->helo_done || !s->esmtp) {
        sess_error(s, SMTP_R_NEED_HELO); /* RFC 4954 4: AUTH is an EHLO extension */
        return;
    }
    if (s->authenticated) {
        sess_error(s, SMTP_R_AUTH_ALREADY);
        return;
    }
    if (s->state == ST_MAIL || s->state == ST_RCPT) {
        sess_error(s, SMTP_R_IN_TRANSACTION);
        return;
    }
    if (!sess_auth_offered(s)) {
        sess_error(s, SMTP_R_NEED_TLS); /* never a password in clear text */
        return;
    }
    const char *a = c->arg;
    size_t n = c->arg_len, m = 0;
    while (m < n && a[m] != ' ')
        m++;
    const char *ir = m < n ? a + m + 1 : NULL;
    size_t irn = ir ? n - m - 1 : 0;
    if (m == 5 && !strncasecmp(a, "PLAIN", 5))
        s->auth_login = false;
    else if (m == 5 && !strncasecmp(a, "LOGIN", 5))
        s->auth_login = true;
    else {
        sess_error(s, SMTP_R_AUTH_MECH);
        return;
    }
    s->auth_passwd = false;
    if (ir && irn == 1 && ir[0] == '=')
        irn = 0; /* RFC 4954 4: "=" is an empty initial response */
    else if (ir && irn == 0)
        ir = NULL;
    if (ir) {
        sess_auth_step(s, ir, irn);
        return;
    }
    s->state = ST_AUTH;
    /* PLAIN: an empty challenge; LOGIN: "Username:". */
    sess_reply_text(s, 334, NULL, s->auth_login ? "VXNlcm5hbWU6" : "");
}

/* sess_auth_line - a line while ST_AUTH: the response, or "*" to cancel (RFC 4954 4). */
static void sess_auth_line(smtp_session *s, const char *p, size_t n)
{
    if (n == 1 && p[0] == '*') {
        sess_auth_wipe(s);
        s->state = s->helo_done ? ST_GREETED : ST_CONNECTED;
        sess_reply(s, SMTP_R_AUTH_CANCELLED);
        return;
    }
    sess_auth_step(s, p, n);
}

/* The command table: the states a command is taken in (as a bit mask), the reply when it
 * comes in another, and whether ESMTP parameters may come with it. */
#define IN(st) (1u << (st))
#define ANY_CMD_STATE (IN(ST_CONNECTED) | IN(ST_GREETED) | IN(ST_MAIL) | IN(ST_RCPT))

typedef struct sess_command {
    void (*run)(smtp_session *s, const smtp_cmd *c);
    unsigned states;
} sess_command;

static const sess_command sess_commands[SMTP_VERB_COUNT] = {
    [SMTP_VERB_HELO] = {cmd_helo, ANY_CMD_STATE},
    [SMTP_VERB_EHLO] = {cmd_helo, ANY_CMD_STATE},
    [SMTP_VERB_MAIL] = {cmd_mail, IN(ST_GREETED)},
    [SMTP_VERB_RCPT] = {cmd_rcpt, IN(ST_MAIL) | IN(ST_RCPT)},
    [SMTP_VERB_DATA] = {cmd_data, IN(ST_RCPT)},
    [SMTP_VERB_RSET] = {cmd_rset, ANY_CMD_STATE},
    [SMTP_VERB_NOOP] = {cmd_noop, ANY_CMD_STATE},
    [SMTP_VERB_QUIT] = {cmd_quit, ANY_CMD_STATE},
    [SMTP_VERB_VRFY] = {cmd_vrfy, ANY_CMD_STATE},
    [SMTP_VERB_HELP] = {cmd_help, ANY_CMD_STATE},
    [SMTP_VERB_EXPN] = {cmd_unimplemented, ANY_CMD_STATE},
    [SMTP_VERB_ETRN] = {cmd_unimplemented, ANY_CMD_STATE},
    [SMTP_VERB_TURN] = {cmd_unimplemented, ANY_CMD_STATE},
    [SMTP_VERB_AUTH] = {cmd_auth, ANY_CMD_STATE},
    [SMTP_VERB_STARTTLS] = {cmd_starttls, ANY_CMD_STATE},
    [SMTP_VERB_BDAT] = {cmd_unimplemented, ANY_CMD_STATE},
    [SMTP_VERB_SEND] = {cmd_unimplemented, ANY_CMD_STATE},
    [SMTP_VERB_SOML] = {cmd_unimplemented, ANY_CMD_STATE},
    [SMTP_VERB_SAML] = {cmd_unimplemented, ANY_CMD_STATE},
};

/* sess_sequence_error - the 503 (or 554) for a command given in the wrong state. */
static void sess_sequence_error(smtp_session *s, smtp_verb verb)
{
    switch (verb) {
    case SMTP_VERB_MAIL:
        sess_error(s, s->state == ST_CONNECTED ? SMTP_R_NEED_HELO : SMTP_R_NESTED_MAIL);
        break;
    case SMTP_VERB_RCPT:
        sess_error(s, s->state == ST_CONNECTED ? SMTP_R_NEED_HELO : SMTP_R_NEED_MAIL);
        break;
    default: /* DATA */
        if (s->state == ST_MAIL && s->rcpt_tried)
            sess_reply(s, SMTP_R_NO_VALID_RCPT); /* RFC 2920 3.1: every RCPT was refused */
        else
            sess_error(s, s->state == ST_CONNECTED ? SMTP_R_NEED_HELO : SMTP_R_NEED_RCPT);
        break;
    }
}

/* sess_command_run - one complete command line (its CRLF already taken off). */
static void sess_command_run(smtp_session *s)
{
    unsigned bad = s->line_bad;
    s->line_bad = 0;
    size_t len = s->line_len;
    s->line_len = 0;
    if (s->state == ST_AUTH && bad) {
        sess_auth_wipe(s); /* a broken response ends the exchange (then its error below) */
        s->state = s->helo_done ? ST_GREETED : ST_CONNECTED;
    } else if (s->state == ST_AUTH) {
        sess_auth_line(s, s->line, len);
        smtp_wipe(s->line, len < s->line_cap ? len : s->line_cap); /* it may have shrunk */
        return;
    }
    if (bad & BAD_LONG) {
        sess_error(s, SMTP_R_LINE_TOO_LONG);
        return;
    }
    if (bad & BAD_NUL) {
        sess_error(s, SMTP_R_NUL);
        return;
    }
    if (bad & BAD_BARE) {
        sess_error(s, SMTP_R_BARE_LF);
        return;
    }
    smtp_cmd c;
    smtp_reply_id rc = smtp_parse_command(s->line, len, &c);
    if (c.verb == SMTP_VERB_UNKNOWN) {
        sess_error(s, rc ? rc : SMTP_R_UNRECOGNIZED);
        return;
    }
    const sess_command *cmd = &sess_commands[c.verb];
    if (!(cmd->states & IN(s->state))) {
        sess_sequence_error(s, c.verb);
        return;
    }
    if (rc) {
        sess_error(s, rc);
        return;
    }
    if (c.nparams && !s->cfg.advertise_extensions) {
        sess_error(s, SMTP_R_PARAM_UNKNOWN); /* nothing was advertised, nothing is known */
        return;
    }
    cmd->run(s, &c);
    if (c.verb == SMTP_VERB_AUTH) /* an initial response (the line may have shrunk) */
        smtp_wipe(s->line, len < s->line_cap ? len : s->line_cap);
}

/* sess_is_auth_line - the line being assembled is an AUTH command or response: it may be as
 * long as SMTP_AUTH_LINE_MAX, and the protocol log never sees its credentials. */
static bool sess_is_auth_line(const smtp_session *s)
{
    if (s->state == ST_AUTH)
        return true;
    return s->cfg.auth && s->line_len >= 5 && !strncasecmp(s->line, "AUTH ", 5);
}

/* sess_trace_command - trace the command line, an AUTH line with its credentials starred. */
static void sess_trace_command(smtp_session *s)
{
    if (!sess_is_auth_line(s)) {
        s->cb.trace(s->cb.arg, SMTP_TRACE_COMMAND, s->line, s->line_len);
        return;
    }
    if (s->state == ST_AUTH) {
        s->cb.trace(s->cb.arg, SMTP_TRACE_COMMAND, "*", 1);
        return;
    }
    /* "AUTH" SP mechanism [SP response]: keep the mechanism (at most 20 bytes of it). */
    size_t m = 5;
    while (m < s->line_len && m < 25 && s->line[m] != ' ')
        m++;
    char t[40];
    int k = snprintf(t, sizeof t, "%.*s%s", (int)m, s->line, m < s->line_len ? " *" : "");
    s->cb.trace(s->cb.arg, SMTP_TRACE_COMMAND, t, (size_t)k);
}

/* sess_command_line - run a command line, tracing it and its replies. */
static void sess_command_line(smtp_session *s)
{
    size_t from = s->out.len;
    if (s->cb.trace)
        sess_trace_command(s);
    sess_command_run(s);
    sess_trace_out(s, from);
}

/* sess_command_input - assemble command lines from p[0..n) and run each; returns the bytes
 * used. Stops after a line that leaves the command states (DATA, QUIT). */
static size_t sess_command_input(smtp_session *s, const char *p, size_t n)
{
    if (!s->line) {
        /* Made at the first byte of a command, not with the session: a connection that only
         * got its greeting (an idle one, of thousands) costs no command line. */
        if (!(s->line = malloc(s->cfg.max_line))) {
            s->oom = true;
            return 0;
        }
        s->line_cap = s->cfg.max_line;
    }
    const char *lf = memchr(p, '\n', n);
    size_t end = lf ? (size_t)(lf - p) : n;
    for (size_t k = 0; k < end; k++) {
        char c = p[k];
        if (s->line_cr) {
            s->line_bad |= BAD_BARE; /* the CR before this byte was no line end */
            s->stats.bare_lf++;
            s->line_cr = false;
        }
        if (c == '\r') {
            s->line_cr = true;
            continue;
        }
        if (c == '\0')
            s->line_bad |= BAD_NUL;
        if (s->line_len == s->line_cap - 2 && s->line_cap < SMTP_AUTH_LINE_MAX &&
            sess_is_auth_line(s)) {
            char *l = realloc(s->line, SMTP_AUTH_LINE_MAX);
            if (l) {
                s->line = l;
                s->line_cap = SMTP_AUTH_LINE_MAX;
            }
        }
        if (s->line_len < s->line_cap - 2) /* room for the CRLF */
            s->line[s->line_len++] = c;
        else
            s->line_bad |= BAD_LONG;
    }
    if (!lf)
        return n; /* a partial line, kept */
    if (!s->line_cr) {
        s->line_bad |= BAD_BARE; /* a bare LF ends the bad line: that is where we resync */
        s->stats.bare_lf++;
    }
    s->line_cr = false;
    sess_command_line(s);
    return end + 1;
}

/* --- DATA --------------------------------------------------------------------------------- */

static void data_flush(smtp_session *s)
{
    if (s->chunk_len && !s->dbad && s->cb.data_chunk) {
        int rc = s->cb.data_chunk(s->cb.arg, s->chunk, s->chunk_len);
        if (rc)
            s->dbad |= rc == 452 ? BAD_NOSPACE : BAD_FAIL;
    }
    s->chunk_len = 0;
}

/* data_emit - k message bytes: counted, and gathered for data_chunk unless the message is
 * already refused (then they are only counted). */
static void data_emit(smtp_session *s, const char *t, size_t k)
{
    s->dsize += k;
    if (s->cfg.max_size && s->dsize > s->cfg.max_size)
        s->dbad |= BAD_SIZE; /* read on to the end, then 552 (RFC 1870 6.2) */
    while (k && !s->dbad) {
        size_t room = SESS_CHUNK - s->chunk_len;
        size_t m = k < room ? k : room;
        memcpy(s->chunk + s->chunk_len, t, m);
        s->chunk_len += m;
        t += m, k -= m;
        if (s->chunk_len == SESS_CHUNK)
            data_flush(s);
    }
}

static void data_bare(smtp_session *s)
{
    s->dbad |= BAD_BARE;
    s->stats.bare_lf++;
    s->ds = D_BARE;
}

/* data_end - the CRLF "." CRLF came: refuse the message or hand it over for the commit. */
static void data_end(smtp_session *s)
{
    data_flush(s);
    s->stats.bytes += s->dsize;
    smtp_reply_id refuse = SMTP_R_NONE;
    if (s->dbad & BAD_SIZE)
        refuse = SMTP_R_SIZE_EXCEEDED;
    else if (s->dbad & BAD_SMUGGLE)
        refuse = SMTP_R_DATA_SMUGGLE;
    else if (s->dbad & BAD_BARE)
        refuse = SMTP_R_DATA_BARE;
    else if (s->dbad & BAD_NUL)
        refuse = SMTP_R_DATA_NUL;
    else if (s->dbad & BAD_NOSPACE)
        refuse = SMTP_R_NO_STORAGE;
    else if (s->dbad & BAD_FAIL)
        refuse = SMTP_R_LOCAL_ERROR;
    if (refuse != SMTP_R_NONE) {
        s->stats.rejected++;
        sess_reset(s); /* calls data_abort */
        size_t from = s->out.len;
        sess_reply(s, refuse);
        sess_trace_out(s, from);
        return;
    }
    s->data_begun = false;
    s->state = ST_COMMITTING;
    if (s->cb.data_end)
        s->cb.data_end(s->cb.arg, sess_envelope(s)); /* may call smtp_session_data_done */
    else
        smtp_session_data_done(s, true, NULL);
}

/* data_input - scan message data in p[0..n); returns the bytes used (up to the end of data).
 * A line's text goes to data_emit as it comes, in pieces of whatever arrived: no line is
 * gathered whole, so a line of any length costs no more than SESS_CHUNK (RFC 5321 4.5.3.1.6's
 * 1000 octets is a minimum a server must take; real mail, generated HTML above all, has longer
 * lines, and Postfix and Exchange take them). */
static size_t data_input(smtp_session *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s->ds == D_MID) {
            size_t j = i;
            while (j < n && p[j] != '\r' && p[j] != '\n' && p[j] != '\0')
                j++;
            if (j > i) {
                data_emit(s, p + i, j - i); /* text: no CR, LF or NUL */
                i = j;
                continue;
            }
        }
        char c = p[i++];
        switch (s->ds) {
        case D_BOL:
            if (c == '.') {
                s->ds = D_DOT;
            } else {
                s->ds = D_MID;
                i--; /* an ordinary line: D_MID takes the byte */
            }
            break;
        case D_DOT:
            if (c == '\r') {
                s->ds = D_DOTCR;
            } else if (c == '\n') {
                s->stats.smuggling++; /* CRLF "." LF */
                s->dbad |= BAD_SMUGGLE;
                data_bare(s);
            } else {
                s->ds = D_MID; /* a stuffed dot: dropped (RFC 5321 4.5.2) */
                i--;
            }
            break;
        case D_DOTCR:
            if (c == '\n') {
                data_end(s);
                return i;
            }
            s->stats.smuggling++; /* CRLF "." CR, not followed by LF */
            s->dbad |= BAD_SMUGGLE;
            data_bare(s);
            i--;
            break;
        case D_MID:
            if (c == '\r') {
                s->ds = D_CR;
            } else if (c == '\n') {
                data_bare(s);
            } else { /* NUL */
                s->dbad |= BAD_NUL;
            }
            break;
        case D_CR:
            if (c == '\n') {
                data_emit(s, "\r\n", 2);
                s->ds = D_BOL;
            } else {
                data_bare(s); /* a bare CR */
                i--;
            }
            break;
        case D_BARE:
            if (c == '.') {
                s->ds = D_BAREDOT;
            } else {
                s->ds = D_MID;
                i--;
            }
            break;
        case D_BAREDOT:
            if (c == '\r' || c == '\n') {
                s->stats.smuggling++; /* "\n.\r\n", "\n.\n", "\r.\r\n" and the like */
                s->dbad |= BAD_SMUGGLE;
            }
            s->ds = D_MID;
            i--;
            break;
        }
    }
    return n;
}

/* --- the session -------------------------------------------------------------------------- */

int smtp_session_new(const smtp_config *cfg, const smtp_callbacks *cb, const smtp_ip *client,
                     const smtp_ip *local, smtp_session **out)
{
    *out = NULL;
    if (smtp_config_check(cfg))
        return ERROR_INVALID_PARAMETER;
    smtp_session *s = calloc(1, sizeof *s);
    if (!s)
        return ERROR_NOT_ENOUGH_MEMORY;
    s->cfg = *cfg;
    if (!s->cfg.max_recipients)
        s->cfg.max_recipients = SMTP_RCPT_DEFAULT;
    if (!s->cfg.max_errors)
        s->cfg.max_errors = SMTP_ERRORS_DEFAULT;
    if (!s->cfg.max_line)
        s->cfg.max_line = SMTP_LINE_MAX;
    if (cb)
        s->cb = *cb;
    if (client)
        s->client = *client;
    if (local)
        s->local = *local;
    s->enhanced = cfg->advertise_extensions;
    sess_clean(s->fqdn, sizeof s->fqdn, cfg->fqdn);
    sess_clean(s->software, sizeof s->software, cfg->software ? cfg->software : SMTP_SOFTWARE);
    s->tls = cfg->tls; /* s->line is made at the first command byte */
    s->state = ST_CONNECTED;
    if (cfg->mode == SMTP_TRANSFER_OUT || cfg->mode == SMTP_TRANSFER_NONE) {
        /* Outbound Only and None take no inbound mail: refused at once, as the original's
         * listener would not have been there at all. */
        sess_reply(s, SMTP_R_UNAVAILABLE);
        sess_close(s);
    } else {
        /* KB Q194131: "220 <fqdn> ESMTP Server (...) Ready", "SMTP Server" without
         * extensions. No enhanced code on the greeting (RFC 2034 3). */
        if (buf_printf(&s->out, "220 %s %s Server (%s) Ready\r\n", s->fqdn,
                       cfg->advertise_extensions ? "ESMTP" : "SMTP", s->software))
            s->oom = true;
    }
    if (s->oom) {
        smtp_session_free(s);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    sess_trace_out(s, 0);
    *out = s;
    return ERROR_SUCCESS;
}

void smtp_session_free(smtp_session *s)
{
    if (!s)
        return;
    sess_abort_data(s); /* a message being read */
    sess_drop_rcpts(s);
    buf_free(&s->out);
    smtp_wipe(s->auth_user, sizeof s->auth_user);
    if (s->line)
        smtp_wipe(s->line, s->line_cap);
    free(s->line);
    free(s->chunk);
    free(s->rcpt);
    free(s);
}

int smtp_session_input(smtp_session *s, const char *p, size_t n, size_t *used)
{
    size_t i = 0;
    while (i < n && !s->oom) {
        if (s->state == ST_QUIT || s->state == ST_COMMITTING || s->state == ST_TLS ||
            s->state == ST_AUTHING)
            break;
        if (s->state == ST_DATA) {
            i += data_input(s, p + i, n - i);
            continue;
        }
        if (s->out.len >= SMTP_OUTPUT_MAX)
            break; /* the client does not read its replies: neither do we read its commands */
        i += sess_command_input(s, p + i, n - i);
    }
    *used = i;
    return s->oom ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

const char *smtp_session_output(const smtp_session *s, size_t *len)
{
    *len = s->out.len;
    return s->out.len ? (const char *)s->out.data : NULL;
}

void smtp_session_output_drain(smtp_session *s, size_t n)
{
    if (n >= s->out.len) {
        s->out.len = 0;
        return;
    }
    memmove(s->out.data, s->out.data + n, s->out.len - n);
    s->out.len -= n;
}

bool smtp_session_want_close(const smtp_session *s)
{
    return s->state == ST_QUIT;
}

bool smtp_session_committing(const smtp_session *s)
{
    return s->state == ST_COMMITTING;
}

bool smtp_session_reading_data(const smtp_session *s)
{
    return s->state == ST_DATA;
}

int smtp_session_data_done(smtp_session *s, bool ok, const char *queue_id)
{
    return smtp_session_data_result(s, ok ? 250 : 451, queue_id);
}

int smtp_session_data_result(smtp_session *s, unsigned code, const char *queue_id)
{
    bool ok = code == 250;
    if (s->state != ST_COMMITTING)
        return ERROR_INVALID_PARAMETER;
    sess_reset(s);
    size_t from = s->out.len;
    if (ok) {
        s->stats.messages++;
        if (queue_id) {
            char id[SESS_QUEUE_ID_MAX + 1], text[SESS_QUEUE_ID_MAX + 80];
            sess_clean(id, sizeof id, queue_id);
            snprintf(text, sizeof text, "Message accepted for delivery (queued as %s)", id);
            sess_reply_text(s, 250, "2.6.0", text);
        } else {
            sess_reply(s, SMTP_R_QUEUED);
        }
    } else {
        s->stats.rejected++;
        sess_reply(s, code == 452 ? SMTP_R_NO_STORAGE : SMTP_R_LOCAL_ERROR);
    }
    sess_trace_out(s, from);
    return s->oom ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

void smtp_session_set_authenticated(smtp_session *s, bool yes)
{
    s->authenticated = yes;
}

bool smtp_session_want_tls(const smtp_session *s)
{
    return s->state == ST_TLS;
}

int smtp_session_tls_started(smtp_session *s)
{
    if (s->state != ST_TLS)
        return ERROR_INVALID_PARAMETER;
    /* RFC 3207 4.2: discard all knowledge obtained from the client before TLS. */
    s->tls = true;
    s->helo_done = false;
    s->esmtp = false;
    s->helo[0] = '\0';
    s->authenticated = false;
    s->account[0] = '\0';
    sess_reset(s);
    return ERROR_SUCCESS;
}

bool smtp_session_tls(const smtp_session *s)
{
    return s->tls;
}

bool smtp_session_authenticating(const smtp_session *s)
{
    return s->state == ST_AUTHING;
}

int smtp_session_auth_done(smtp_session *s, smtp_auth_result r, const char *account)
{
    if (s->state != ST_AUTHING)
        return ERROR_INVALID_PARAMETER;
    size_t from = s->out.len;
    sess_auth_result(s, r, account);
    if (!s->in_auth_check) /* else sess_command_line traces it with the AUTH line's replies */
        sess_trace_out(s, from);
    return s->oom ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

const char *smtp_session_account(const smtp_session *s)
{
    return s->account;
}

unsigned smtp_session_auth_failures(const smtp_session *s)
{
    return s->auth_failures;
}

/* sess_end - 421 with id and close; a message being read is dropped. */
static int sess_end(smtp_session *s, smtp_reply_id id)
{
    if (s->state == ST_DATA)
        sess_abort_data(s);
    if (s->state != ST_QUIT) {
        size_t from = s->out.len;
        sess_reply(s, id);
        sess_trace_out(s, from);
        sess_close(s);
    }
    return s->oom ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

int smtp_session_shutdown(smtp_session *s)
{
    return sess_end(s, SMTP_R_SHUTDOWN);
}

int smtp_session_timeout(smtp_session *s)
{
    return sess_end(s, SMTP_R_TIMEOUT);
}

void smtp_session_stats_get(const smtp_session *s, smtp_session_stats *out)
{
    *out = s->stats;
}

const char *smtp_session_helo(const smtp_session *s)
{
    return s->helo;
}

const char *smtp_session_state_name(const smtp_session *s)
{
    return sess_state_names[s->state];
}
