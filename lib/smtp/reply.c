/* reply.c - the catalogue of SMTP replies (code, enhanced status code, text) and the building of
 * single- and multi-line replies (RFC 5321 4.2, RFC 2034, RFC 3463). */
#include "smtp/smtp.h"

#include <errno.h>
#include <string.h>

/* One row per reply: the enhanced code is RFC 3463's class.subject.detail. */
typedef struct reply_row {
    unsigned code;
    const char *enh; /* NULL: never carries one (354) */
    bool host;       /* the text starts with our name (221, 421) */
    const char *text;
} reply_row;

static const reply_row reply_table[SMTP_R_COUNT] = {
    [SMTP_R_NONE] = {0, NULL, false, ""},
    [SMTP_R_UNAVAILABLE] = {421, "4.3.2", true,
                            "Service not available, closing transmission channel"},
    [SMTP_R_SHUTDOWN] = {421, "4.3.2", true, "Service shutting down, closing transmission channel"},
    [SMTP_R_TIMEOUT] = {421, "4.4.2", true, "Timeout, closing transmission channel"},
    [SMTP_R_TOO_MANY_ERRORS] = {421, "4.7.0", true,
                                "Too many errors, closing transmission channel"},
    [SMTP_R_TOO_MANY_CONN] = {421, "4.3.2", true, "Too many connections, try again later"},
    [SMTP_R_CLIENT_CONNS] = {421, "4.7.0", true,
                             "Too many connections from your address, try again later"},
    [SMTP_R_CLIENT_CONN_RATE] = {421, "4.7.0", true,
                                 "Too many connections from your address in the last minute, "
                                 "try again later"},
    [SMTP_R_CLIENT_MSG_RATE] = {450, "4.7.0", false,
                                "Too many messages from your address, try again later"},
    [SMTP_R_CLIENT_RCPT_RATE] = {450, "4.7.0", false,
                                 "Too many recipients from your address, try again later"},
    [SMTP_R_QUIT] = {221, "2.0.0", true, "Service closing transmission channel"},
    [SMTP_R_OK] = {250, "2.0.0", false, "OK"},
    [SMTP_R_SENDER_OK] = {250, "2.1.0", false, "Sender OK"},
    [SMTP_R_RCPT_OK] = {250, "2.1.5", false, "Recipient OK"},
    [SMTP_R_QUEUED] = {250, "2.6.0", false, "Message accepted for delivery"},
    [SMTP_R_VRFY] = {252, "2.1.5", false,
                     "Cannot VRFY user, but will accept message and attempt delivery"},
    [SMTP_R_DATA_GO] = {354, NULL, false, "Start mail input; end with <CRLF>.<CRLF>"},
    [SMTP_R_LOCAL_ERROR] = {451, "4.3.0", false,
                            "Requested action aborted: local error in processing"},
    [SMTP_R_RCPT_TEMP] = {451, "4.3.0", false, "Recipient lookup failed, try again later"},
    [SMTP_R_NO_STORAGE] = {452, "4.3.1", false, "Insufficient system storage"},
    [SMTP_R_NO_OUTBOUND] = {451, "4.3.2", false, "Outbound mail is not available, try again later"},
    [SMTP_R_TOO_MANY_RCPT] = {452, "4.5.3", false, "Too many recipients"},
    [SMTP_R_UNRECOGNIZED] = {500, "5.5.2", false, "Syntax error, command unrecognized"},
    [SMTP_R_LINE_TOO_LONG] = {500, "5.5.2", false, "Line too long"},
    [SMTP_R_BARE_LF] = {500, "5.5.2", false, "Syntax error: bare LF or CR (lines end with CRLF)"},
    [SMTP_R_NUL] = {500, "5.5.2", false, "Syntax error: NUL character in command"},
    [SMTP_R_ARGS] = {501, "5.5.4", false, "Syntax error in parameters or arguments"},
    [SMTP_R_HELO_SYNTAX] = {501, "5.5.4", false, "Syntax: HELO hostname"},
    [SMTP_R_EHLO_SYNTAX] = {501, "5.5.4", false, "Syntax: EHLO hostname"},
    [SMTP_R_MAIL_SYNTAX] = {501, "5.5.4", false, "Syntax: MAIL FROM:<address>"},
    [SMTP_R_RCPT_SYNTAX] = {501, "5.5.4", false, "Syntax: RCPT TO:<address>"},
    [SMTP_R_SENDER_SYNTAX] = {501, "5.1.7", false, "Bad sender address syntax"},
    [SMTP_R_RCPT_ADDR_SYNTAX] = {501, "5.1.3", false, "Bad recipient address syntax"},
    [SMTP_R_PATH_TOO_LONG] = {501, "5.5.4", false, "Address too long"},
    [SMTP_R_PARAM_VALUE] = {501, "5.5.4", false, "Invalid parameter value"},
    [SMTP_R_NOT_IMPLEMENTED] = {502, "5.5.1", false, "Command not implemented"},
    [SMTP_R_NEED_HELO] = {503, "5.5.1", false, "Send HELO/EHLO first"},
    [SMTP_R_NESTED_MAIL] = {503, "5.5.1", false, "Sender already specified"},
    [SMTP_R_NEED_MAIL] = {503, "5.5.1", false, "Need MAIL before RCPT"},
    [SMTP_R_NEED_RCPT] = {503, "5.5.1", false, "Need RCPT before DATA"},
    [SMTP_R_USER_UNKNOWN] = {550, "5.1.1", false, "User unknown"},
    /* KB Q193922 quotes "550 relaying prohibited"; only the enhanced code is ours. */
    [SMTP_R_RELAY_DENIED] = {550, "5.7.1", false, "relaying prohibited"},
    [SMTP_R_DATA_BARE] = {550, "5.6.0", false,
                          "Message refused: bare LF or CR in message data (RFC 5321 2.3.8)"},
    [SMTP_R_DATA_SMUGGLE] = {550, "5.6.0", false,
                             "Message refused: \".\" line after a bare LF or CR (smuggling)"},
    [SMTP_R_DATA_NUL] = {550, "5.6.0", false, "Message refused: NUL character in message data"},
    [SMTP_R_SIZE_EXCEEDED] = {552, "5.3.4", false,
                              "Message size exceeds fixed maximum message size"},
    [SMTP_R_MAILBOX_NAME] = {553, "5.1.3", false, "Mailbox name not allowed"},
    [SMTP_R_NO_VALID_RCPT] = {554, "5.5.1", false, "No valid recipients"},
    [SMTP_R_PARAM_UNKNOWN] = {555, "5.5.4", false, "Unsupported parameter"},
    [SMTP_R_PARAM_DUP] = {555, "5.5.4", false, "Duplicate parameter"},
    [SMTP_R_TLS_READY] = {220, "2.0.0", false, "Ready to start TLS"},
    [SMTP_R_TLS_ACTIVE] = {503, "5.5.1", false, "TLS already active"},
    [SMTP_R_IN_TRANSACTION] = {503, "5.5.1", false, "Not allowed during a mail transaction"},
    [SMTP_R_AUTH_OK] = {235, "2.7.0", false, "Authentication successful"},
    [SMTP_R_AUTH_FAILED] = {535, "5.7.8", false, "Authentication credentials invalid"},
    [SMTP_R_AUTH_TEMP] = {454, "4.7.0", false, "Temporary authentication failure, try again later"},
    [SMTP_R_AUTH_MECH] = {504, "5.5.4", false, "Unrecognized authentication type"},
    [SMTP_R_AUTH_CANCELLED] = {501, "5.0.0", false, "Authentication cancelled"},
    [SMTP_R_AUTH_DECODE] = {501, "5.5.2", false, "Cannot decode the response"},
    [SMTP_R_AUTH_ALREADY] = {503, "5.5.1", false, "Already authenticated"},
    [SMTP_R_NEED_TLS] = {530, "5.7.0", false, "Must issue a STARTTLS command first"},
    [SMTP_R_NEED_AUTH] = {530, "5.7.0", false, "Authentication required"},
    [SMTP_R_AUTH_TOO_MANY] =
        {421, "4.7.0", true,
         "Too many failed authentication attempts, closing transmission channel"},
    [SMTP_R_SENDER_NOT_LOCAL] = {550, "5.7.1", false,
                                 "Sender mailbox is not local: clients can only submit if homed "
                                 "on this server"},
    [SMTP_R_SENDER_NOT_OWNED] = {550, "5.7.1", false,
                                 "Sender address does not belong to the authenticated account"},
};

unsigned smtp_reply_code(smtp_reply_id id)
{
    if ((unsigned)id >= SMTP_R_COUNT)
        return 0;
    return reply_table[id].code;
}

/* reply_add_line - "<code><sep>[<enh> ]<parts...>\r\n"; on ENOMEM out is cut back. */
static int reply_add_line(buf *out, unsigned code, char sep, const char *enh, const char *host,
                          const char *text)
{
    size_t mark = out->len;
    int rc = buf_printf(out, "%03u%c", code, sep);
    if (!rc && enh)
        rc = buf_printf(out, "%s ", enh);
    if (!rc && host)
        rc = buf_printf(out, "%s ", host);
    if (!rc)
        rc = buf_printf(out, "%s\r\n", text);
    if (rc)
        out->len = mark;
    return rc;
}

int smtp_reply_append(buf *out, smtp_reply_id id, bool enhanced, const char *host)
{
    if ((unsigned)id >= SMTP_R_COUNT || id == SMTP_R_NONE)
        return EINVAL;
    const reply_row *r = &reply_table[id];
    return reply_add_line(out, r->code, ' ', enhanced ? r->enh : NULL, r->host ? host : NULL,
                          r->text);
}

int smtp_reply_lines(buf *out, unsigned code, const char *enh, const char *const *lines, size_t n)
{
    if (n == 0)
        return EINVAL;
    size_t mark = out->len;
    for (size_t i = 0; i < n; i++) {
        int rc = reply_add_line(out, code, i + 1 < n ? '-' : ' ', enh, NULL, lines[i]);
        if (rc) {
            out->len = mark;
            return rc;
        }
    }
    return 0;
}
