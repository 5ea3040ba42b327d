/* client.c - the SMTP client session: a state machine that reads the peer's replies, sends
 * EHLO/HELO, STARTTLS and AUTH as its policy says, and transactions (RFC 5321, RFC 2920
 * pipelining, SIZE, 8BITMIME, DSN), writes message data dot-stuffed and folded, and gives
 * every recipient one classified result. */
#include "smtp/client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reg/reg.h"

#define CL_SPLIT_MAX 1024 /* input line pieces handed on: longer lines go in several */

/* --- replies ------------------------------------------------------------------------------ */

static const char *const reply_status_names[] = {
    [SMTP_REPLY_DONE] = "done",
    [SMTP_REPLY_MORE] = "more",
    [SMTP_REPLY_BAD_CODE] = "bad reply code",
    [SMTP_REPLY_RANGE] = "reply code out of range",
    [SMTP_REPLY_BAD_SEP] = "bad separator after the reply code",
    [SMTP_REPLY_MIXED] = "mixed codes in a multi-line reply",
    [SMTP_REPLY_TOO_LONG] = "reply line too long",
    [SMTP_REPLY_TOO_MANY] = "too many reply lines",
    [SMTP_REPLY_NUL] = "NUL in reply",
};

const char *smtp_reply_status_name(smtp_reply_status st)
{
    return (unsigned)st <= SMTP_REPLY_NUL ? reply_status_names[st] : "?";
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* enh_parse - the length of the enhanced status code "c.sss.ddd" p[0..n) starts with (followed
 * by a space or the end), of class `cls`; 0 when there is none (RFC 3463 2). */
static size_t enh_parse(const char *p, size_t n, unsigned cls)
{
    if (n < 5 || p[0] != (char)('0' + cls) || p[1] != '.')
        return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t d = 0;
        while (i < n && is_digit(p[i]) && d < 4)
            i++, d++;
        if (d < 1 || d > 3)
            return 0;
        if (part == 0) {
            if (i >= n || p[i] != '.')
                return 0;
            i++;
        }
    }
    return i == n || p[i] == ' ' ? i : 0;
}

/* text_add - append cleaned peer text to r->text: joined by a space, printable ASCII only. */
static void text_add(smtp_reply *r, const char *p, size_t n)
{
    size_t len = strlen(r->text);
    if (n && len && len < SMTP_REPLY_TEXT_MAX)
        r->text[len++] = ' ';
    for (size_t i = 0; i < n && len < SMTP_REPLY_TEXT_MAX; i++) {
        unsigned char c = (unsigned char)p[i];
        r->text[len++] = c < 0x20 || c > 0x7e ? '?' : (char)c;
    }
    r->text[len] = '\0';
}

/* reply_line - one line of a reply, l[0..n) without its line end, added to r (zeroed before
 * the first line). *last says whether it ended the reply; *text and *tlen get its raw text. */
static smtp_reply_status reply_line(smtp_reply *r, const char *l, size_t n, bool *last,
                                    const char **text, size_t *tlen)
{
    *last = false;
    if (n > SMTP_REPLY_LINE_MAX - 2)
        return SMTP_REPLY_TOO_LONG;
    if (memchr(l, '\0', n))
        return SMTP_REPLY_NUL;
    if (n < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]))
        return SMTP_REPLY_BAD_CODE;
    unsigned code =
        (unsigned)(l[0] - '0') * 100 + (unsigned)(l[1] - '0') * 10 + (unsigned)(l[2] - '0');
    if (code < 200 || code > 599)
        return SMTP_REPLY_RANGE;
    if (n > 3 && l[3] != ' ' && l[3] != '-')
        return SMTP_REPLY_BAD_SEP;
    if (r->nlines && code != r->code)
        return SMTP_REPLY_MIXED;
    if (r->nlines >= SMTP_REPLY_LINES_MAX)
        return SMTP_REPLY_TOO_MANY;
    *last = n == 3 || l[3] == ' ';
    *text = n > 3 ? l + 4 : l + n;
    *tlen = n > 3 ? n - 4 : 0;
    const char *t = *text;
    size_t tn = *tlen;
    if (!r->nlines) {
        r->code = code;
        size_t e = enh_parse(t, tn, code / 100);
        if (e) {
            memcpy(r->enh, t, e);
            r->enh[e] = '\0';
        }
    }
    size_t e = strlen(r->enh);
    if (e && tn >= e && !memcmp(t, r->enh, e) && (tn == e || t[e] == ' ')) {
        t += e < tn ? e + 1 : e; /* RFC 2034: every line carries the code; the text keeps it once */
        tn -= e < tn ? e + 1 : e;
    }
    text_add(r, t, tn);
    r->nlines++;
    return SMTP_REPLY_DONE;
}

smtp_reply_status smtp_reply_parse(const char *p, size_t n, smtp_reply *out)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    for (;;) {
        const char *lf = memchr(p + i, '\n', n - i);
        if (!lf) {
            smtp_reply_status st = n - i > SMTP_REPLY_LINE_MAX - 1 ? SMTP_REPLY_TOO_LONG
                                   : memchr(p + i, '\0', n - i)    ? SMTP_REPLY_NUL
                                                                   : SMTP_REPLY_MORE;
            memset(out, 0, sizeof *out);
            return st;
        }
        size_t end = (size_t)(lf - p), len = end - i;
        if (len > SMTP_REPLY_LINE_MAX - 1) {
            memset(out, 0, sizeof *out);
            return SMTP_REPLY_TOO_LONG;
        }
        if (len && p[end - 1] == '\r')
            len--;
        bool last;
        const char *t;
        size_t tn;
        size_t k = out->nlines;
        smtp_reply_status st = reply_line(out, p + i, len, &last, &t, &tn);
        if (st != SMTP_REPLY_DONE) {
            memset(out, 0, sizeof *out);
            return st;
        }
        out->line[k].off = (size_t)(t - p);
        out->line[k].len = tn;
        i = end + 1;
        if (last) {
            out->used = i;
            return SMTP_REPLY_DONE;
        }
    }
}

/* --- results ------------------------------------------------------------------------------ */

static const char *const stage_names[] = {
    [SMTP_STAGE_GREETING] = "greeting", [SMTP_STAGE_EHLO] = "EHLO",
    [SMTP_STAGE_STARTTLS] = "STARTTLS", [SMTP_STAGE_AUTH] = "AUTH",
    [SMTP_STAGE_MAIL] = "MAIL",         [SMTP_STAGE_RCPT] = "RCPT",
    [SMTP_STAGE_DATA] = "DATA",         [SMTP_STAGE_DOT] = "end of data",
    [SMTP_STAGE_RSET] = "RSET",         [SMTP_STAGE_QUIT] = "QUIT",
};

const char *smtp_stage_name(smtp_stage st)
{
    return (unsigned)st <= SMTP_STAGE_QUIT ? stage_names[st] : "?";
}

char *smtp_result_format(const smtp_result *r, char *out, size_t size)
{
    if (!size)
        return out;
    if (r->code)
        snprintf(out, size, "%u %s %s", r->code, r->enh, r->text);
    else
        snprintf(out, size, "%s %s", r->enh, r->text);
    return out;
}

/* --- the client --------------------------------------------------------------------------- */

typedef enum cl_state {
    CL_GREETING, /* waiting for the greeting */
    CL_EHLO,     /* EHLO sent */
    CL_HELO,     /* HELO sent (EHLO got 5xx) */
    CL_STARTTLS, /* STARTTLS sent */
    CL_TLS,      /* the caller's handshake (smtp_client_tls_wanted) */
    CL_AUTH,     /* AUTH sent (PLAIN with its response, or LOGIN's steps) */
    CL_IDLE,     /* between transactions */
    CL_TRANS,    /* MAIL, RCPTs and DATA sent (all of them, or one at a time) */
    CL_DATA,     /* sending message data */
    CL_DOT,      /* "." sent */
    CL_RSET,     /* RSET sent after a failed transaction */
    CL_QUIT,     /* QUIT sent */
    CL_OVER,     /* nothing more: close */
} cl_state;

/* Per recipient of the message in flight. */
#define R_ACCEPTED 0x1
#define R_DONE 0x2

struct smtp_client {
    smtp_client_config cfg;
    smtp_client_callbacks cb;
    char helo[SMTP_DOMAIN_MAX + 1];
    cl_state state;
    smtp_client_ext ext, ext_tmp;
    bool oom;
    buf out;
    smtp_result error;
    bool has_error;

    /* The reply being read. */
    char line[SMTP_REPLY_LINE_MAX];
    size_t line_len;
    smtp_reply rep;

    /* The message in flight. */
    const smtp_client_msg *msg;
    unsigned char *rst;         /* R_* per recipient (max_recipients of them) */
    size_t step_sent, step_ans; /* steps: 0 MAIL, 1..n RCPT, n + 1 DATA */
    size_t naccepted;
    bool mail_failed;
    bool dot_ignore; /* the "." of RFC 2920 3.1: its reply decides nothing */
    bool quit;       /* smtp_client_quit was called: QUIT once idle */

    /* STARTTLS and AUTH. */
    bool tls_tried;     /* STARTTLS was sent: never again on this connection */
    bool tls_active;    /* the handshake succeeded */
    bool has_auth;      /* credentials were given */
    bool authed;        /* 235 */
    bool auth_login;    /* AUTH LOGIN (else PLAIN) */
    unsigned auth_step; /* LOGIN: 334s answered */
    char user[SMTP_AUTH_FIELD_MAX + 1], pass[SMTP_AUTH_FIELD_MAX + 1];

    /* Message data. */
    char *rbuf; /* SMTP_CLIENT_READ_MAX */
    bool convert;
    mime7 m7;
    char split[CL_SPLIT_MAX];
    size_t split_len;
    bool split_cr, split_bol;
    char wl[SMTP_DATA_LINE_FOLD];
    size_t wl_len;
    size_t wl_bytes; /* of the current input line, folds included */
    bool wl_hdr;     /* in the top-level header block */
};

/* --- output ------------------------------------------------------------------------------- */

static void out_add(smtp_client *c, const char *p, size_t n)
{
    if (n && buf_add(&c->out, p, n))
        c->oom = true;
}

/* cl_cmd - send one command line (traced). */
static void cl_cmd(smtp_client *c, const char *line)
{
    size_t n = strlen(line);
    if (c->cb.trace)
        c->cb.trace(c->cb.arg, SMTP_TRACE_COMMAND, line, n);
    out_add(c, line, n);
    out_add(c, "\r\n", 2);
}

/* cl_cmd_secret - send a line that holds credentials; the trace sees `shown` instead. */
static void cl_cmd_secret(smtp_client *c, const char *line, const char *shown)
{
    if (c->cb.trace)
        c->cb.trace(c->cb.arg, SMTP_TRACE_COMMAND, shown, strlen(shown));
    out_add(c, line, strlen(line));
    out_add(c, "\r\n", 2);
}

/* --- results ------------------------------------------------------------------------------ */

static smtp_stage cl_stage(const smtp_client *c)
{
    switch (c->state) {
    case CL_GREETING:
        return SMTP_STAGE_GREETING;
    case CL_EHLO:
    case CL_HELO:
        return SMTP_STAGE_EHLO;
    case CL_STARTTLS:
    case CL_TLS:
        return SMTP_STAGE_STARTTLS;
    case CL_AUTH:
        return SMTP_STAGE_AUTH;
    case CL_IDLE:
        return SMTP_STAGE_MAIL;
    case CL_TRANS:
        if (c->step_ans == 0)
            return SMTP_STAGE_MAIL;
        return c->step_ans <= c->msg->nrcpt ? SMTP_STAGE_RCPT : SMTP_STAGE_DATA;
    case CL_DATA:
    case CL_DOT:
        return SMTP_STAGE_DOT;
    case CL_RSET:
        return SMTP_STAGE_RSET;
    case CL_QUIT:
        return SMTP_STAGE_QUIT;
    case CL_OVER:
        break;
    }
    return c->has_error ? c->error.stage : SMTP_STAGE_QUIT;
}

/* res_local - a result decided here. */
static void res_local(smtp_result *r, smtp_outcome o, smtp_stage st, const char *enh,
                      const char *text)
{
    memset(r, 0, sizeof *r);
    r->outcome = o;
    r->stage = st;
    r->local = true;
    snprintf(r->enh, sizeof r->enh, "%s", enh);
    snprintf(r->text, sizeof r->text, "%s", text);
}

/* res_reply - the result the reply just read gives, by its class. */
static void res_reply(const smtp_client *c, smtp_result *r, smtp_stage st)
{
    memset(r, 0, sizeof *r);
    unsigned cls = c->rep.code / 100;
    r->outcome = cls == 2 ? SMTP_DELIVERED : cls == 5 ? SMTP_PERMANENT : SMTP_TRANSIENT;
    r->stage = st;
    r->code = c->rep.code;
    if (c->rep.enh[0])
        memcpy(r->enh, c->rep.enh, sizeof r->enh);
    else
        snprintf(r->enh, sizeof r->enh, "%c.0.0", (char)('0' + cls % 10));
    memcpy(r->text, c->rep.text, sizeof r->text);
}

static void cl_rcpt_result(smtp_client *c, size_t i, const smtp_result *r)
{
    if (c->rst[i] & R_DONE)
        return;
    c->rst[i] |= R_DONE;
    if (c->cb.rcpt_done)
        c->cb.rcpt_done(c->cb.arg, c->msg, i, r);
}

/* cl_fail_accepted - every accepted recipient without a result gets r. */
static void cl_fail_accepted(smtp_client *c, const smtp_result *r)
{
    for (size_t i = 0; c->msg && i < c->msg->nrcpt; i++)
        if (c->rst[i] & R_ACCEPTED)
            cl_rcpt_result(c, i, r);
}

static void cl_msg_done(smtp_client *c)
{
    const smtp_client_msg *m = c->msg;
    if (!m)
        return;
    c->msg = NULL;
    if (c->cb.msg_done)
        c->cb.msg_done(c->cb.arg, m);
}

/* cl_over - the connection is over for reason r: every recipient without a result gets it. */
static void cl_over(smtp_client *c, const smtp_result *r)
{
    if (c->state == CL_OVER)
        return;
    c->state = CL_OVER;
    c->error = *r;
    c->has_error = true;
    for (size_t i = 0; c->msg && i < c->msg->nrcpt; i++)
        cl_rcpt_result(c, i, r);
    cl_msg_done(c);
}

static void cl_over_local(smtp_client *c, smtp_outcome o, const char *enh, const char *text)
{
    smtp_result r;
    res_local(&r, o, cl_stage(c), enh, text);
    cl_over(c, &r);
}

static void cl_over_reply(smtp_client *c)
{
    smtp_result r;
    res_reply(c, &r, cl_stage(c));
    cl_over(c, &r);
}

/* cl_protocol - a malformed or unexpected reply. */
static void cl_protocol(smtp_client *c, const char *why)
{
    char text[SMTP_REPLY_TEXT_MAX + 1];
    snprintf(text, sizeof text, "protocol error during %s: %s", smtp_stage_name(cl_stage(c)), why);
    cl_over_local(c, SMTP_TRANSIENT, "4.5.0", text);
}

static void cl_unexpected(smtp_client *c)
{
    char why[SMTP_REPLY_TEXT_MAX + 1];
    snprintf(why, sizeof why, "unexpected reply \"%u %.900s\"", c->rep.code, c->rep.text);
    cl_protocol(c, why);
}

/* --- the transaction ---------------------------------------------------------------------- */

static void cl_start(smtp_client *c);

static void cl_idle(smtp_client *c)
{
    c->state = CL_IDLE;
    if (c->msg) {
        cl_start(c);
    } else if (c->quit) {
        c->state = CL_QUIT;
        cl_cmd(c, "QUIT");
    }
}

/* cl_refuse - the session cannot carry mail under its policy: every recipient gets a local
 * transient result, and the client says QUIT (the peer did nothing wrong). */
static void cl_refuse(smtp_client *c, const char *enh, const char *text)
{
    smtp_result r;
    res_local(&r, SMTP_TRANSIENT, cl_stage(c), enh, text);
    cl_over(c, &r);
    c->state = CL_QUIT;
    cl_cmd(c, "QUIT");
}

/* cl_auth_start - AUTH with the credentials: PLAIN with the initial response, else LOGIN. */
static void cl_auth_start(smtp_client *c)
{
    c->state = CL_AUTH;
    c->auth_step = 0;
    if (!c->ext.auth_plain) {
        c->auth_login = true;
        cl_cmd(c, "AUTH LOGIN");
        return;
    }
    c->auth_login = false;
    /* RFC 4616: [authzid] NUL authcid NUL passwd; no authorization identity. */
    char raw[2 * SMTP_AUTH_FIELD_MAX + 2];
    size_t un = strlen(c->user), pn = strlen(c->pass);
    raw[0] = '\0';
    memcpy(raw + 1, c->user, un);
    raw[1 + un] = '\0';
    memcpy(raw + 2 + un, c->pass, pn);
    char line[sizeof "AUTH PLAIN " + BASE_B64_LEN(sizeof raw)];
    memcpy(line, "AUTH PLAIN ", 11);
    base_b64_encode(raw, 2 + un + pn, line + 11, sizeof line - 11);
    cl_cmd_secret(c, line, "AUTH PLAIN <credentials>");
    explicit_bzero(raw, sizeof raw);
    explicit_bzero(line, sizeof line);
}

/* cl_auth_step - a 334 to AUTH LOGIN: the user name first, then the password. */
static void cl_auth_step(smtp_client *c)
{
    const char *v = c->auth_step == 0 ? c->user : c->pass;
    char line[BASE_B64_LEN(SMTP_AUTH_FIELD_MAX) + 1];
    base_b64_encode(v, strlen(v), line, sizeof line);
    cl_cmd_secret(c, line, "<credentials>");
    explicit_bzero(line, sizeof line);
    c->auth_step++;
}

/* cl_ready - EHLO (or HELO) was answered: STARTTLS and AUTH as the policy says, then mail. */
static void cl_ready(smtp_client *c)
{
    if (c->cfg.tls != SMTP_TLS_NONE && !c->tls_tried) {
        if (c->ext.starttls) {
            c->tls_tried = true;
            c->state = CL_STARTTLS;
            cl_cmd(c, "STARTTLS");
            return;
        }
        if (c->cfg.tls >= SMTP_TLS_ENCRYPT) {
            c->state = CL_STARTTLS; /* the stage of the result */
            cl_refuse(c, "4.7.4",
                      "TLS is required by policy but the server does not offer STARTTLS");
            return;
        }
    }
    if (c->has_auth && !c->authed && c->ext.auth) {
        c->state = CL_AUTH;
        if (!c->tls_active) {
            cl_refuse(c, "4.7.0",
                      "the server offers AUTH but the session is not encrypted (no TLS): "
                      "credentials are never sent in plain text");
            return;
        }
        if (!c->ext.auth_plain && !c->ext.auth_login) {
            cl_refuse(c, "4.7.0", "the server offers no AUTH mechanism we use (PLAIN or LOGIN)");
            return;
        }
        cl_auth_start(c);
        return;
    }
    cl_idle(c);
}

/* cl_trans_end - the transaction is over: the message is done, after an RSET when it failed. */
static void cl_trans_end(smtp_client *c, bool ok)
{
    if (ok) {
        c->state = CL_IDLE;
        cl_msg_done(c);
        return;
    }
    c->state = CL_RSET;
    cl_cmd(c, "RSET");
}

static void cl_send_step(smtp_client *c, size_t k)
{
    const smtp_client_msg *m = c->msg;
    char line[SMTP_PATH_MAX + SMTP_ORCPT_MAX + SMTP_ENVID_MAX + 128];
    int n;
    if (k == 0) {
        n = snprintf(line, sizeof line, "MAIL FROM:<%s>", m->from);
        if (c->ext.size)
            n += snprintf(line + n, sizeof line - (size_t)n, " SIZE=%llu",
                          (unsigned long long)m->size);
        if (m->eightbit && c->ext.eightbitmime)
            n += snprintf(line + n, sizeof line - (size_t)n, " BODY=8BITMIME");
        if (c->ext.dsn && m->ret != SMTP_RET_NONE)
            n += snprintf(line + n, sizeof line - (size_t)n, " RET=%s",
                          m->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
        if (c->ext.dsn && m->envid && m->envid[0])
            snprintf(line + n, sizeof line - (size_t)n, " ENVID=%s", m->envid);
    } else if (k <= m->nrcpt) {
        const smtp_client_rcpt *r = &m->rcpt[k - 1];
        n = snprintf(line, sizeof line, "RCPT TO:<%s>", r->addr);
        if (c->ext.dsn && r->notify) {
            char notify[SMTP_NOTIFY_TEXT];
            n += snprintf(line + n, sizeof line - (size_t)n, " NOTIFY=%s",
                          smtp_notify_format(r->notify, notify, sizeof notify));
        }
        if (c->ext.dsn && r->orcpt && r->orcpt[0])
            snprintf(line + n, sizeof line - (size_t)n, " ORCPT=%s", r->orcpt);
    } else {
        snprintf(line, sizeof line, "DATA");
    }
    cl_cmd(c, line);
    c->step_sent = k + 1;
}

static void cl_start(smtp_client *c)
{
    const smtp_client_msg *m = c->msg;
    memset(c->rst, 0, m->nrcpt);
    c->step_sent = c->step_ans = c->naccepted = 0;
    c->mail_failed = c->dot_ignore = false;
    if (c->ext.size && c->ext.size_max && m->size > c->ext.size_max) {
        char text[160];
        snprintf(text, sizeof text,
                 "message too big for the remote host (%llu bytes, its limit %llu)",
                 (unsigned long long)m->size, (unsigned long long)c->ext.size_max);
        smtp_result r;
        res_local(&r, SMTP_PERMANENT, SMTP_STAGE_MAIL, "5.3.4", text);
        for (size_t i = 0; i < m->nrcpt; i++)
            cl_rcpt_result(c, i, &r);
        cl_msg_done(c);
        return;
    }
    c->state = CL_TRANS;
    size_t last = c->ext.pipelining ? m->nrcpt + 1 : 0;
    for (size_t k = 0; k <= last; k++)
        cl_send_step(c, k);
}

/* --- message data ------------------------------------------------------------------------- */

/* wr_line - one wire line: dot-stuffed (RFC 5321 4.5.2), CRLF-ended. */
static void wr_line(smtp_client *c, const char *p, size_t n)
{
    if (n && p[0] == '.')
        out_add(c, ".", 1);
    out_add(c, p, n);
    out_add(c, "\r\n", 2);
}

/* wr_fold - the line being written is full and goes on: break it (smtp.h's folding rule). */
static void wr_fold(smtp_client *c)
{
    if (c->wl_hdr) {
        for (size_t k = c->wl_len; k-- > 1;) {
            if (c->wl[k] == ' ' || c->wl[k] == '\t') {
                wr_line(c, c->wl, k); /* the whitespace begins the continuation line */
                memmove(c->wl, c->wl + k, c->wl_len - k);
                c->wl_len -= k;
                return;
            }
        }
    }
    wr_line(c, c->wl, c->wl_len);
    c->wl[0] = ' ';
    c->wl_len = 1;
}

/* wr_piece - n bytes continuing the current data line, which ends after them when eol. */
static void wr_piece(smtp_client *c, const char *p, size_t n, bool eol)
{
    /* The common case, a whole line short enough not to fold: written from where it is. */
    if (!c->wl_len && eol && n &&
        n <= (p[0] == '.' ? SMTP_DATA_LINE_FOLD - 1 : SMTP_DATA_LINE_FOLD)) {
        wr_line(c, p, n);
        return;
    }
    /* In runs: as many bytes as the line takes before it folds (one less when it starts with
     * a dot, which stuffing doubles). */
    while (n) {
        bool dot = c->wl_len ? c->wl[0] == '.' : p[0] == '.';
        size_t cap = dot ? SMTP_DATA_LINE_FOLD - 1 : SMTP_DATA_LINE_FOLD;
        if (c->wl_len >= cap) {
            wr_fold(c);
            continue;
        }
        size_t take = cap - c->wl_len < n ? cap - c->wl_len : n;
        memcpy(c->wl + c->wl_len, p, take);
        c->wl_len += take;
        c->wl_bytes += take;
        p += take;
        n -= take;
    }
    if (eol) {
        wr_line(c, c->wl, c->wl_len);
        if (!c->wl_bytes)
            c->wl_hdr = false; /* the empty line after the header block */
        c->wl_len = c->wl_bytes = 0;
    }
}

static void m7_to_writer(void *arg, const char *p, size_t n, bool eol)
{
    wr_piece(arg, p, n, eol);
}

/* sp_piece - a piece of an input line, to the converter or straight to the writer. */
static void sp_piece(smtp_client *c, bool eol)
{
    if (c->convert)
        mime7_piece(&c->m7, c->split, c->split_len, c->split_bol, eol);
    else
        wr_piece(c, c->split, c->split_len, eol);
    c->split_len = 0;
    c->split_bol = eol;
}

/* sp_input - message bytes as spooled: CR LF, a bare CR and a bare LF each end a line. */
static void sp_input(smtp_client *c, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        char b = p[i];
        if (c->split_cr) {
            c->split_cr = false;
            sp_piece(c, true);
            if (b == '\n') {
                i++;
                continue;
            }
        }
        if (b == '\r') {
            c->split_cr = true;
            i++;
        } else if (b == '\n') {
            sp_piece(c, true);
            i++;
        } else {
            /* The run of line bytes up to the next CR or LF, copied at once. */
            size_t room = sizeof c->split - c->split_len;
            size_t end = n - i < room ? n : i + room;
            const char *lf = memchr(p + i, '\n', end - i);
            size_t j = lf ? (size_t)(lf - p) : end;
            const char *cr = memchr(p + i, '\r', j - i);
            if (cr)
                j = (size_t)(cr - p);
            memcpy(c->split + c->split_len, p + i, j - i);
            c->split_len += j - i;
            i = j;
            if (c->split_len == sizeof c->split)
                sp_piece(c, false);
        }
    }
}

static void cl_data_start(smtp_client *c)
{
    c->state = CL_DATA;
    c->convert = !c->ext.eightbitmime;
    if (c->convert)
        mime7_init(&c->m7, c->msg->eightbit, m7_to_writer, c);
    c->split_len = 0;
    c->split_cr = false;
    c->split_bol = true;
    c->wl_len = c->wl_bytes = 0;
    c->wl_hdr = true;
}

/* cl_abandon - the data cannot go on: no ".", so the peer drops what it got. */
static void cl_abandon(smtp_client *c, const smtp_result *r)
{
    cl_fail_accepted(c, r);
    cl_over(c, r);
}

static void cl_abandon_local(smtp_client *c, smtp_outcome o, const char *enh, const char *text)
{
    smtp_result r;
    res_local(&r, o, SMTP_STAGE_DOT, enh, text);
    cl_abandon(c, &r);
}

static bool cl_conv_failed(smtp_client *c)
{
    if (!c->convert || !c->m7.fail)
        return false;
    cl_abandon_local(c, SMTP_PERMANENT, "5.6.3",
                     "conversion required but not possible: 8-bit data the remote host does "
                     "not take (no 8BITMIME) in a header or a part that cannot be encoded");
    return true;
}

static void cl_data_finish(smtp_client *c)
{
    if (c->split_cr || c->split_len || !c->split_bol) {
        c->split_cr = false;
        sp_piece(c, true); /* the last line had no line end */
    }
    if (c->convert)
        mime7_end(&c->m7);
    if (cl_conv_failed(c))
        return;
    if (c->wl_len || c->wl_bytes)
        wr_piece(c, "", 0, true);
    out_add(c, ".\r\n", 3);
    c->state = CL_DOT;
}

/* cl_pump - pull message data while little output waits. */
static void cl_pump(smtp_client *c)
{
    while (c->state == CL_DATA && c->out.len < SMTP_CLIENT_OUTPUT_LOW && !c->oom) {
        size_t got = 0;
        int rc = c->msg->read(c->msg->read_arg, c->rbuf, SMTP_CLIENT_READ_MAX, &got);
        if (rc || got > SMTP_CLIENT_READ_MAX) {
            cl_abandon_local(c, SMTP_TRANSIENT, "4.3.0",
                             "local error: the message could not be read");
            return;
        }
        if (!got) {
            cl_data_finish(c);
            return;
        }
        sp_input(c, c->rbuf, got);
        if (cl_conv_failed(c))
            return;
    }
}

/* --- replies in each state ---------------------------------------------------------------- */

/* ext_line - one line of the EHLO reply after the first: a keyword and its parameters. */
static void ext_line(smtp_client *c, const char *t, size_t n)
{
    size_t k = 0;
    while (k < n && t[k] != ' ' && t[k] != '=')
        k++;
    char kw[24];
    if (k >= sizeof kw)
        return;
    for (size_t i = 0; i < k; i++)
        kw[i] = t[i] >= 'a' && t[i] <= 'z' ? (char)(t[i] - 32) : t[i];
    kw[k] = '\0';
    smtp_client_ext *e = &c->ext_tmp;
    if (!strcmp(kw, "SIZE")) {
        e->size = true;
        size_t i = k;
        while (i < n && (t[i] == ' ' || t[i] == '='))
            i++;
        uint64_t v = 0;
        for (; i < n && is_digit(t[i]); i++) {
            unsigned d = (unsigned)(t[i] - '0');
            v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        }
        e->size_max = v;
    } else if (!strcmp(kw, "PIPELINING")) {
        e->pipelining = true;
    } else if (!strcmp(kw, "8BITMIME")) {
        e->eightbitmime = true;
    } else if (!strcmp(kw, "DSN")) {
        e->dsn = true;
    } else if (!strcmp(kw, "ENHANCEDSTATUSCODES")) {
        e->enhanced = true;
    } else if (!strcmp(kw, "STARTTLS")) {
        e->starttls = true;
    } else if (!strcmp(kw, "AUTH")) {
        /* "AUTH PLAIN LOGIN", or the old "AUTH=PLAIN LOGIN" some servers still send. */
        e->auth = true;
        for (size_t i = k; i < n;) {
            while (i < n && (t[i] == ' ' || t[i] == '='))
                i++;
            size_t w = i;
            while (i < n && t[i] != ' ')
                i++;
            if (i - w == 5 && !strncasecmp(t + w, "PLAIN", 5))
                e->auth_plain = true;
            else if (i - w == 5 && !strncasecmp(t + w, "LOGIN", 5))
                e->auth_login = true;
        }
    }
}

static void cl_trans_reply(smtp_client *c)
{
    const smtp_client_msg *m = c->msg;
    unsigned cls = c->rep.code / 100;
    size_t k = c->step_ans;
    bool pipe = c->ext.pipelining;
    smtp_result r;
    /* 3xx where 2xx is due, or anything but 354, 4xx, 5xx to DATA (stage: the one asked). */
    if ((k <= m->nrcpt && cls == 3 && !(k && c->mail_failed)) ||
        (k > m->nrcpt && c->rep.code != 354 && cls != 4 && cls != 5)) {
        cl_unexpected(c);
        return;
    }
    c->step_ans++;
    if (k == 0) {
        if (cls != 2) {
            c->mail_failed = true;
            res_reply(c, &r, SMTP_STAGE_MAIL);
            for (size_t i = 0; i < m->nrcpt; i++)
                cl_rcpt_result(c, i, &r);
            if (!pipe) {
                cl_trans_end(c, false);
                return;
            }
        }
        if (!pipe)
            cl_send_step(c, 1);
        return;
    }
    if (k <= m->nrcpt) {
        if (!c->mail_failed) {
            if (cls == 2) {
                c->rst[k - 1] |= R_ACCEPTED;
                c->naccepted++;
            } else {
                res_reply(c, &r, SMTP_STAGE_RCPT);
                cl_rcpt_result(c, k - 1, &r);
            }
        }
        if (!pipe) {
            if (k < m->nrcpt)
                cl_send_step(c, k + 1);
            else if (c->naccepted)
                cl_send_step(c, k + 1);
            else
                cl_trans_end(c, false); /* DATA is not sent (RFC 5321 3.3) */
        }
        return;
    }
    /* DATA */
    if (c->rep.code == 354) {
        if (c->naccepted && !c->mail_failed) {
            cl_data_start(c);
            cl_pump(c);
        } else {
            out_add(c, ".\r\n", 3); /* RFC 2920 3.1: "should send a single dot" */
            c->dot_ignore = true;
            c->state = CL_DOT;
        }
        return;
    }
    res_reply(c, &r, SMTP_STAGE_DATA); /* 4xx or 5xx */
    cl_fail_accepted(c, &r);
    cl_trans_end(c, false);
}

/* cl_reply - a complete reply came. */
static void cl_reply(smtp_client *c)
{
    unsigned cls = c->rep.code / 100;
    if (c->state == CL_OVER)
        return;
    if (c->state == CL_QUIT) {
        c->state = CL_OVER;
        return;
    }
    if (c->rep.code == 421) {
        cl_over_reply(c); /* the peer is closing (RFC 5321 3.8) */
        return;
    }
    smtp_result r;
    switch (c->state) {
    case CL_GREETING:
        if (cls == 2) {
            char line[SMTP_DOMAIN_MAX + 8];
            snprintf(line, sizeof line, "EHLO %s", c->helo);
            memset(&c->ext_tmp, 0, sizeof c->ext_tmp);
            c->state = CL_EHLO;
            cl_cmd(c, line);
        } else if (cls == 3) {
            cl_unexpected(c);
        } else {
            cl_over_reply(c);
        }
        break;
    case CL_EHLO:
        if (cls == 2) {
            c->ext = c->ext_tmp;
            c->ext.esmtp = true;
            cl_ready(c);
        } else if (cls == 5) {
            char line[SMTP_DOMAIN_MAX + 8];
            snprintf(line, sizeof line, "HELO %s", c->helo);
            c->state = CL_HELO;
            cl_cmd(c, line);
        } else if (cls == 3) {
            cl_unexpected(c);
        } else {
            cl_over_reply(c);
        }
        break;
    case CL_HELO:
        if (cls == 2) {
            memset(&c->ext, 0, sizeof c->ext);
            cl_ready(c);
        } else if (cls == 3) {
            cl_unexpected(c);
        } else {
            cl_over_reply(c);
        }
        break;
    case CL_STARTTLS:
        if (cls == 2) {
            c->state = CL_TLS; /* the caller's turn: smtp_client_tls_wanted */
        } else if (cls == 3) {
            cl_unexpected(c);
        } else if (c->cfg.tls >= SMTP_TLS_ENCRYPT) {
            smtp_result pr;
            char text[SMTP_REPLY_TEXT_MAX + 1];
            res_reply(c, &pr, SMTP_STAGE_STARTTLS);
            snprintf(text, sizeof text,
                     "TLS is required by policy but the server refused STARTTLS: %u %s %.900s",
                     pr.code, pr.enh, pr.text);
            cl_refuse(c, "4.7.4", text);
        } else {
            cl_ready(c); /* policy may: plain text here (and so no AUTH) */
        }
        break;
    case CL_AUTH:
        if (cls == 2) {
            c->authed = true;
            cl_idle(c);
        } else if (cls == 3 && c->auth_login && c->auth_step < 2) {
            cl_auth_step(c);
        } else if (cls == 3) {
            cl_unexpected(c);
        } else {
            /* 535 and its kin: transient, the peer's words kept (credentials can be fixed). */
            res_reply(c, &r, SMTP_STAGE_AUTH);
            r.outcome = SMTP_TRANSIENT;
            cl_over(c, &r);
            c->state = CL_QUIT;
            cl_cmd(c, "QUIT");
        }
        break;
    case CL_TRANS:
        cl_trans_reply(c);
        break;
    case CL_DATA:
        if (cls == 4 || cls == 5) { /* refused in the middle: the data stops */
            res_reply(c, &r, SMTP_STAGE_DOT);
            cl_abandon(c, &r);
        } else {
            cl_unexpected(c);
        }
        break;
    case CL_DOT:
        if (c->dot_ignore) {
            cl_trans_end(c, false);
        } else if (cls == 3) {
            cl_unexpected(c);
        } else {
            res_reply(c, &r, SMTP_STAGE_DOT);
            cl_fail_accepted(c, &r); /* delivered or not, by the class */
            cl_trans_end(c, cls == 2);
        }
        break;
    case CL_RSET:
        if (cls == 2) {
            c->state = CL_IDLE;
            cl_msg_done(c);
        } else {
            cl_over_reply(c);
        }
        break;
    default: /* CL_IDLE: nothing was asked */
        cl_unexpected(c);
        break;
    }
}

/* cl_line - one reply line, its line end removed. */
static void cl_line(smtp_client *c, const char *l, size_t n)
{
    if (c->cb.trace) {
        char t[SMTP_REPLY_LINE_MAX];
        size_t k = n < sizeof t ? n : sizeof t;
        for (size_t i = 0; i < k; i++)
            t[i] = (unsigned char)l[i] < 0x20 || (unsigned char)l[i] > 0x7e ? '?' : l[i];
        c->cb.trace(c->cb.arg, SMTP_TRACE_REPLY, t, k);
    }
    bool last;
    const char *t;
    size_t tn;
    smtp_reply_status st = reply_line(&c->rep, l, n, &last, &t, &tn);
    if (st != SMTP_REPLY_DONE) {
        cl_protocol(c, smtp_reply_status_name(st));
        return;
    }
    if (c->state == CL_EHLO && c->rep.nlines > 1)
        ext_line(c, t, tn);
    if (last) {
        cl_reply(c);
        c->rep.code = 0;
        c->rep.nlines = 0;
        c->rep.enh[0] = c->rep.text[0] = '\0';
    }
}

/* --- the interface ------------------------------------------------------------------------ */

int smtp_client_new(const smtp_client_config *cfg, const smtp_client_callbacks *cb,
                    smtp_client **out)
{
    *out = NULL;
    if (!cfg || !cfg->helo || cfg->max_recipients > SMTP_CLIENT_RCPT_LIMIT)
        return ERROR_INVALID_PARAMETER;
    size_t hn = strlen(cfg->helo);
    if (hn > SMTP_DOMAIN_MAX ||
        !(smtp_domain_valid(cfg->helo, hn, false) || smtp_literal_valid(cfg->helo, hn)))
        return ERROR_INVALID_PARAMETER;
    if ((unsigned)cfg->tls > SMTP_TLS_VERIFY || !cfg->auth_user != !cfg->auth_pass)
        return ERROR_INVALID_PARAMETER;
    size_t un = cfg->auth_user ? strnlen(cfg->auth_user, SMTP_AUTH_FIELD_MAX + 1) : 0;
    size_t pn = cfg->auth_pass ? strnlen(cfg->auth_pass, SMTP_AUTH_FIELD_MAX + 1) : 0;
    if (cfg->auth_user && (!un || !pn || un > SMTP_AUTH_FIELD_MAX || pn > SMTP_AUTH_FIELD_MAX))
        return ERROR_INVALID_PARAMETER;
    smtp_client *c = calloc(1, sizeof *c);
    if (!c)
        return ERROR_NOT_ENOUGH_MEMORY;
    c->cfg = *cfg;
    if (!c->cfg.max_recipients)
        c->cfg.max_recipients = SMTP_CLIENT_RCPT_DEFAULT;
    memcpy(c->helo, cfg->helo, hn + 1);
    c->cfg.helo = c->helo;
    if (cfg->auth_user) {
        memcpy(c->user, cfg->auth_user, un + 1);
        memcpy(c->pass, cfg->auth_pass, pn + 1);
        c->has_auth = true;
    }
    c->cfg.auth_user = c->cfg.auth_pass = NULL; /* only the wiped copies are kept */
    if (cb)
        c->cb = *cb;
    c->rst = calloc(c->cfg.max_recipients, 1);
    c->rbuf = malloc(SMTP_CLIENT_READ_MAX);
    if (!c->rst || !c->rbuf) {
        smtp_client_free(c);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    c->state = CL_GREETING;
    *out = c;
    return ERROR_SUCCESS;
}

void smtp_client_free(smtp_client *c)
{
    if (!c)
        return;
    if (c->has_auth && c->out.data)
        explicit_bzero(c->out.data, c->out.cap); /* AUTH's lines passed through it */
    buf_free(&c->out);
    free(c->rst);
    free(c->rbuf);
    explicit_bzero(c, sizeof *c);
    free(c);
}

/* path_ok - addr is a path smtp_parse_path takes once in angle brackets. */
static bool path_ok(const char *addr, smtp_path_kind kind)
{
    size_t n = strlen(addr);
    if (n > SMTP_PATH_MAX - 2)
        return false;
    char b[SMTP_PATH_MAX + 1];
    snprintf(b, sizeof b, "<%s>", addr);
    smtp_path p;
    return smtp_parse_path(b, n + 2, kind, &p, NULL) == SMTP_R_NONE;
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* xtext_ok - RFC 3461 4: xchar except "+" and "=", or "+" and two upper-case hex digits. */
static bool xtext_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '+') {
            if (i + 2 >= n || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
                return false;
            i += 2;
        } else if (ch < 0x21 || ch > 0x7e || ch == '=') {
            return false;
        }
    }
    return true;
}

static bool orcpt_ok(const char *s)
{
    size_t n = strlen(s);
    const char *semi = memchr(s, ';', n);
    if (n > SMTP_ORCPT_MAX || !semi || semi == s)
        return false;
    for (const char *p = s; p < semi; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || is_digit(*p) || *p == '-'))
            return false;
    return xtext_ok(semi + 1, (size_t)(s + n - semi - 1));
}

static bool notify_ok(unsigned v)
{
    unsigned all = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    return v == 0 || v == SMTP_NOTIFY_NEVER || (v & ~all) == 0;
}

int smtp_client_send(smtp_client *c, const smtp_client_msg *m)
{
    if (!smtp_client_ready(c) || !m || !m->read || !m->rcpt || !m->nrcpt ||
        m->nrcpt > c->cfg.max_recipients || !m->from)
        return ERROR_INVALID_PARAMETER;
    if (!path_ok(m->from, SMTP_PATH_REVERSE) || (unsigned)m->ret > SMTP_RET_HDRS)
        return ERROR_INVALID_DATA;
    if (m->envid && (strlen(m->envid) > SMTP_ENVID_MAX || !xtext_ok(m->envid, strlen(m->envid))))
        return ERROR_INVALID_DATA;
    for (size_t i = 0; i < m->nrcpt; i++) {
        const smtp_client_rcpt *r = &m->rcpt[i];
        if (!r->addr || !path_ok(r->addr, SMTP_PATH_FORWARD) || !notify_ok(r->notify) ||
            (r->orcpt && !orcpt_ok(r->orcpt)))
            return ERROR_INVALID_DATA;
    }
    c->msg = m;
    memset(c->rst, 0, m->nrcpt);
    if (c->state == CL_IDLE)
        cl_start(c);
    return c->oom ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

bool smtp_client_ready(const smtp_client *c)
{
    return c && !c->msg && !c->quit && c->state != CL_OVER && c->state != CL_QUIT;
}

void smtp_client_quit(smtp_client *c)
{
    if (c->msg || c->state == CL_OVER || c->state == CL_QUIT)
        return;
    c->quit = true; /* before the session is up: QUIT once it is */
    if (c->state == CL_IDLE)
        cl_idle(c);
}

int smtp_client_input(smtp_client *c, const char *p, size_t n)
{
    size_t i = 0;
    /* In CL_TLS, what came after the 2xx to STARTTLS is dropped (RFC 3207 5). */
    while (i < n && c->state != CL_OVER && c->state != CL_TLS && !c->oom) {
        const char *lf = memchr(p + i, '\n', n - i);
        size_t end = lf ? (size_t)(lf - p) : n, k = end - i;
        if (c->line_len + k > SMTP_REPLY_LINE_MAX - 1) {
            cl_protocol(c, smtp_reply_status_name(SMTP_REPLY_TOO_LONG));
            break;
        }
        memcpy(c->line + c->line_len, p + i, k);
        c->line_len += k;
        if (!lf)
            break;
        i = end + 1;
        size_t len = c->line_len;
        c->line_len = 0;
        if (len && c->line[len - 1] == '\r')
            len--;
        cl_line(c, c->line, len);
    }
    if (c->state == CL_TLS)
        c->line_len = 0;
    return c->oom ? ERROR_NOT_ENOUGH_MEMORY : ERROR_SUCCESS;
}

const char *smtp_client_output(smtp_client *c, size_t *len)
{
    cl_pump(c);
    *len = c->out.len;
    return c->out.len ? (const char *)c->out.data : NULL;
}

void smtp_client_output_drain(smtp_client *c, size_t n)
{
    if (n >= c->out.len) {
        c->out.len = 0;
        return;
    }
    memmove(c->out.data, c->out.data + n, c->out.len - n);
    c->out.len -= n;
}

bool smtp_client_want_close(const smtp_client *c)
{
    return c->state == CL_OVER;
}

/* cl_end - the connection ended without the peer's word (lost, or timed out). */
static void cl_end(smtp_client *c, const char *what)
{
    if (c->state == CL_OVER)
        return;
    if (c->state == CL_QUIT) {
        c->state = CL_OVER; /* nothing was pending */
        return;
    }
    char text[128];
    if (c->state == CL_DATA)
        snprintf(text, sizeof text, "%s while sending the message data", what);
    else if (c->state == CL_TLS)
        snprintf(text, sizeof text, "%s during the TLS handshake", what);
    else if (c->state == CL_IDLE)
        snprintf(text, sizeof text, "%s while idle", what);
    else
        snprintf(text, sizeof text, "%s waiting for the reply to %s", what,
                 smtp_stage_name(cl_stage(c)));
    cl_over_local(c, SMTP_TRANSIENT, "4.4.2", text);
}

void smtp_client_eof(smtp_client *c)
{
    cl_end(c, "lost connection");
}

void smtp_client_timeout(smtp_client *c)
{
    cl_end(c, "timeout");
}

unsigned smtp_client_timeout_secs(const smtp_client *c)
{
    switch (c->state) {
    case CL_GREETING:
        return SMTP_TIMEOUT_GREETING;
    case CL_EHLO:
    case CL_HELO:
        return SMTP_TIMEOUT_HELO;
    case CL_STARTTLS:
        return SMTP_TIMEOUT_STARTTLS;
    case CL_TLS:
        return SMTP_TIMEOUT_TLS;
    case CL_AUTH:
        return SMTP_TIMEOUT_AUTH;
    case CL_TRANS:
        if (c->step_ans == 0)
            return SMTP_TIMEOUT_MAIL;
        return c->step_ans <= c->msg->nrcpt ? SMTP_TIMEOUT_RCPT : SMTP_TIMEOUT_DATA_INIT;
    case CL_DATA:
        return SMTP_TIMEOUT_DATA_BLOCK;
    case CL_DOT:
        return SMTP_TIMEOUT_DATA_TERM;
    case CL_RSET:
        return SMTP_TIMEOUT_RSET;
    case CL_QUIT:
        return SMTP_TIMEOUT_QUIT;
    default:
        return 0;
    }
}

bool smtp_client_tls_wanted(const smtp_client *c)
{
    return c->state == CL_TLS;
}

void smtp_client_tls_done(smtp_client *c, bool ok, const char *why)
{
    if (c->state != CL_TLS)
        return;
    if (!ok) {
        char text[SMTP_REPLY_TEXT_MAX + 1];
        snprintf(text, sizeof text, "TLS handshake failed: %.900s",
                 why && *why ? why : "no reason given");
        cl_over_local(c, SMTP_TRANSIENT, "4.7.5", text);
        return;
    }
    /* RFC 3207 4.2: discard all knowledge obtained from the server before TLS. */
    c->tls_active = true;
    memset(&c->ext, 0, sizeof c->ext);
    memset(&c->ext_tmp, 0, sizeof c->ext_tmp);
    c->line_len = 0;
    char line[SMTP_DOMAIN_MAX + 8];
    snprintf(line, sizeof line, "EHLO %s", c->helo);
    c->state = CL_EHLO;
    cl_cmd(c, line);
}

bool smtp_client_tls_active(const smtp_client *c)
{
    return c->tls_active;
}

bool smtp_client_authenticated(const smtp_client *c)
{
    return c->authed;
}

const smtp_client_ext *smtp_client_extensions(const smtp_client *c)
{
    return &c->ext;
}

const smtp_result *smtp_client_error(const smtp_client *c)
{
    return c->has_error ? &c->error : NULL;
}

smtp_stage smtp_client_stage(const smtp_client *c)
{
    return cl_stage(c);
}
