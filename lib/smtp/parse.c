/* parse.c - SMTP command lines (RFC 5321 4.1.1) and the ESMTP parameters of MAIL and RCPT:
 * SIZE (RFC 1870), BODY (RFC 6152), RET, ENVID, NOTIFY and ORCPT (RFC 3461). */
#include "smtp/smtp.h"

#include <stdio.h>
#include <string.h>

static const char *const parse_verbs[SMTP_VERB_COUNT] = {
    [SMTP_VERB_UNKNOWN] = "",          [SMTP_VERB_HELO] = "HELO", [SMTP_VERB_EHLO] = "EHLO",
    [SMTP_VERB_MAIL] = "MAIL",         [SMTP_VERB_RCPT] = "RCPT", [SMTP_VERB_DATA] = "DATA",
    [SMTP_VERB_RSET] = "RSET",         [SMTP_VERB_NOOP] = "NOOP", [SMTP_VERB_QUIT] = "QUIT",
    [SMTP_VERB_VRFY] = "VRFY",         [SMTP_VERB_HELP] = "HELP", [SMTP_VERB_EXPN] = "EXPN",
    [SMTP_VERB_ETRN] = "ETRN",         [SMTP_VERB_TURN] = "TURN", [SMTP_VERB_AUTH] = "AUTH",
    [SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_BDAT] = "BDAT", [SMTP_VERB_SEND] = "SEND",
    [SMTP_VERB_SOML] = "SOML",         [SMTP_VERB_SAML] = "SAML",
};

/* The ESMTP parameters we know, as bits for the duplicate check. */
enum {
    PARAM_SIZE = 1 << 0,
    PARAM_BODY = 1 << 1,
    PARAM_RET = 1 << 2,
    PARAM_ENVID = 1 << 3,
    PARAM_NOTIFY = 1 << 4,
    PARAM_ORCPT = 1 << 5,
};

typedef struct parse_param {
    const char *name;
    unsigned bit;
    smtp_verb verb; /* the command that takes it */
} parse_param;

static const parse_param parse_params[] = {
    {"SIZE", PARAM_SIZE, SMTP_VERB_MAIL},     {"BODY", PARAM_BODY, SMTP_VERB_MAIL},
    {"RET", PARAM_RET, SMTP_VERB_MAIL},       {"ENVID", PARAM_ENVID, SMTP_VERB_MAIL},
    {"NOTIFY", PARAM_NOTIFY, SMTP_VERB_RCPT}, {"ORCPT", PARAM_ORCPT, SMTP_VERB_RCPT},
};

const char *smtp_verb_name(smtp_verb v)
{
    if ((unsigned)v >= SMTP_VERB_COUNT)
        return "";
    return parse_verbs[v];
}

static unsigned char parse_upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

/* parse_word - s[0..n) is word, ignoring ASCII case. */
static bool parse_word(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);
    if (n != w)
        return false;
    for (size_t i = 0; i < n; i++)
        if (parse_upper((unsigned char)s[i]) != (unsigned char)word[i])
            return false;
    return true;
}

static bool parse_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool parse_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

/* parse_xtext - RFC 3461 4: xchar is '!'..'~' but '+' and '='; hexchar "+" 2HEXDIG (lower
 * case accepted too: it cannot change what is meant). */
static bool parse_xtext(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            if (i + 2 >= n || !parse_hex((unsigned char)s[i + 1]) ||
                !parse_hex((unsigned char)s[i + 2]))
                return false;
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return false;
        }
    }
    return true;
}

/* parse_notify - RFC 3461 4.1: "NEVER", or a comma list of SUCCESS, FAILURE, DELAY. */
static smtp_reply_id parse_notify(const char *s, size_t n, unsigned *out)
{
    unsigned bits = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ',')
            continue;
        const char *w = s + start;
        size_t wn = i - start;
        unsigned bit = parse_word(w, wn, "NEVER")     ? SMTP_NOTIFY_NEVER
                       : parse_word(w, wn, "SUCCESS") ? SMTP_NOTIFY_SUCCESS
                       : parse_word(w, wn, "FAILURE") ? SMTP_NOTIFY_FAILURE
                       : parse_word(w, wn, "DELAY")   ? SMTP_NOTIFY_DELAY
                                                      : 0;
        if (!bit || (bits & bit))
            return SMTP_R_PARAM_VALUE;
        bits |= bit;
        start = i + 1;
    }
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
        return SMTP_R_PARAM_VALUE;
    *out = bits;
    return SMTP_R_NONE;
}

smtp_reply_id smtp_notify_parse(const char *s, size_t n, unsigned *out)
{
    return parse_notify(s, n, out);
}

char *smtp_notify_format(unsigned bits, char *out, size_t size)
{
    static const struct {
        unsigned bit;
        const char *name;
    } kw[] = {{SMTP_NOTIFY_NEVER, "NEVER"},
              {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
              {SMTP_NOTIFY_FAILURE, "FAILURE"},
              {SMTP_NOTIFY_DELAY, "DELAY"}};
    size_t o = 0;
    if (size)
        out[0] = 0;
    for (size_t i = 0; i < sizeof kw / sizeof kw[0]; i++)
        if (bits & kw[i].bit) {
            int w = snprintf(out + o, size - o, "%s%s", o ? "," : "", kw[i].name);
            if (w < 0 || (size_t)w >= size - o)
                break;
            o += (size_t)w;
        }
    return out;
}

/* parse_size - RFC 1870: 1*20DIGIT; more than UINT64_MAX saturates. */
static smtp_reply_id parse_size(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > SMTP_SIZE_DIGITS)
        return SMTP_R_PARAM_VALUE;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SMTP_R_PARAM_VALUE;
        unsigned d = (unsigned)(s[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *out = v;
    return SMTP_R_NONE;
}

/* parse_one_param - keyword[=value] for verb; *seen collects the known keywords given. */
static smtp_reply_id parse_one_param(const char *s, size_t n, smtp_cmd *out, unsigned *seen)
{
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? (size_t)(eq - s) : n;
    const char *val = eq ? eq + 1 : NULL;
    size_t vlen = eq ? n - klen - 1 : 0;
    /* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
    if (klen == 0 || !parse_alnum((unsigned char)s[0]))
        return SMTP_R_PARAM_VALUE;
    for (size_t i = 1; i < klen; i++)
        if (!parse_alnum((unsigned char)s[i]) && s[i] != '-')
            return SMTP_R_PARAM_VALUE;
    /* esmtp-value = 1*(%d33-60 / %d62-126) */
    if (eq && vlen == 0)
        return SMTP_R_PARAM_VALUE;
    for (size_t i = 0; i < vlen; i++)
        if ((unsigned char)val[i] < 33 || (unsigned char)val[i] > 126 || val[i] == '=')
            return SMTP_R_PARAM_VALUE;
    const parse_param *p = NULL;
    for (size_t i = 0; i < sizeof parse_params / sizeof parse_params[0]; i++)
        if (parse_params[i].verb == out->verb && parse_word(s, klen, parse_params[i].name))
            p = &parse_params[i];
    if (!p)
        return SMTP_R_PARAM_UNKNOWN;
    if (*seen & p->bit)
        return SMTP_R_PARAM_DUP;
    *seen |= p->bit;
    if (!val)
        return SMTP_R_PARAM_VALUE; /* every one of them takes a value */
    switch (p->bit) {
    case PARAM_SIZE:
        out->mail.has_size = true;
        return parse_size(val, vlen, &out->mail.size);
    case PARAM_BODY:
        out->mail.body = parse_word(val, vlen, "7BIT")       ? SMTP_BODY_7BIT
                         : parse_word(val, vlen, "8BITMIME") ? SMTP_BODY_8BITMIME
                                                             : SMTP_BODY_NONE;
        return out->mail.body == SMTP_BODY_NONE ? SMTP_R_PARAM_VALUE : SMTP_R_NONE;
    case PARAM_RET:
        out->mail.ret = parse_word(val, vlen, "FULL")   ? SMTP_RET_FULL
                        : parse_word(val, vlen, "HDRS") ? SMTP_RET_HDRS
                                                        : SMTP_RET_NONE;
        return out->mail.ret == SMTP_RET_NONE ? SMTP_R_PARAM_VALUE : SMTP_R_NONE;
    case PARAM_ENVID:
        if (vlen > SMTP_ENVID_MAX || !parse_xtext(val, vlen))
            return SMTP_R_PARAM_VALUE;
        memcpy(out->mail.envid, val, vlen);
        out->mail.envid[vlen] = '\0';
        return SMTP_R_NONE;
    case PARAM_NOTIFY:
        return parse_notify(val, vlen, &out->rcpt.notify);
    case PARAM_ORCPT: {
        /* addr-type ";" xtext, addr-type an atom such as "rfc822" */
        const char *semi = memchr(val, ';', vlen);
        if (vlen > SMTP_ORCPT_MAX || !semi || semi == val)
            return SMTP_R_PARAM_VALUE;
        for (const char *c = val; c < semi; c++)
            if (!parse_alnum((unsigned char)*c) && !strchr("!#$%&'*+-/=?^_`{|}~", *c))
                return SMTP_R_PARAM_VALUE;
        if (!parse_xtext(semi + 1, vlen - (size_t)(semi + 1 - val)))
            return SMTP_R_PARAM_VALUE;
        memcpy(out->rcpt.orcpt, val, vlen);
        out->rcpt.orcpt[vlen] = '\0';
        return SMTP_R_NONE;
    }
    }
    return SMTP_R_PARAM_UNKNOWN;
}

/* parse_path_cmd - "FROM:<path> [params]" or "TO:<path> [params]" in arg[0..n). */
static smtp_reply_id parse_path_cmd(const char *arg, size_t n, smtp_cmd *out)
{
    bool mail = out->verb == SMTP_VERB_MAIL;
    const char *word = mail ? "FROM:" : "TO:";
    size_t wlen = strlen(word), i = wlen;
    smtp_reply_id syntax = mail ? SMTP_R_MAIL_SYNTAX : SMTP_R_RCPT_SYNTAX;
    if (!arg || n < wlen || !parse_word(arg, wlen, word))
        return syntax;
    /* "MAIL FROM: <a@b>": a space RFC 5321 does not allow but many clients send; the angle
     * brackets still delimit the path, so it changes nothing. */
    while (i < n && arg[i] == ' ')
        i++;
    if (i >= n || arg[i] != '<')
        return syntax;
    size_t used = 0;
    smtp_reply_id rc = smtp_parse_path(arg + i, n - i, mail ? SMTP_PATH_REVERSE : SMTP_PATH_FORWARD,
                                       &out->path, &used);
    if (rc)
        return rc;
    i += used;
    if (i < n && arg[i] != ' ')
        return syntax;
    unsigned seen = 0;
    while (i < n) {
        while (i < n && arg[i] == ' ')
            i++;
        if (i >= n)
            break;
        size_t start = i;
        while (i < n && arg[i] != ' ')
            i++;
        out->nparams++;
        rc = parse_one_param(arg + start, i - start, out, &seen);
        if (rc)
            return rc;
    }
    return SMTP_R_NONE;
}

smtp_reply_id smtp_parse_command(const char *line, size_t len, smtp_cmd *out)
{
    memset(out, 0, sizeof *out);
    if (memchr(line, '\0', len))
        return SMTP_R_NUL;
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    size_t vlen = 0;
    while (vlen < len && line[vlen] != ' ')
        vlen++;
    for (unsigned v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++)
        if (parse_word(line, vlen, parse_verbs[v]))
            out->verb = (smtp_verb)v;
    if (out->verb == SMTP_VERB_UNKNOWN)
        return SMTP_R_UNRECOGNIZED;
    if (vlen < len) {
        size_t i = vlen + 1;
        out->arg = line + i;
        out->arg_len = len - i;
    }
    switch (out->verb) {
    case SMTP_VERB_HELO:
    case SMTP_VERB_EHLO: {
        smtp_reply_id bad = out->verb == SMTP_VERB_HELO ? SMTP_R_HELO_SYNTAX : SMTP_R_EHLO_SYNTAX;
        const char *a = out->arg;
        size_t n = out->arg_len;
        while (n > 0 && a[0] == ' ')
            a++, n--;
        if (n == 0 || n > SMTP_DOMAIN_MAX || memchr(a, ' ', n))
            return bad;
        /* The name only goes into the Received header: underscores and a trailing dot, which
         * real clients send, are let through (liberal); anything else must be a domain name
         * or an address literal, so nothing odd reaches a header. */
        if (!smtp_domain_valid(a, n, true) && !smtp_literal_valid(a, n))
            return bad;
        memcpy(out->helo, a, n);
        out->helo[n] = '\0';
        return SMTP_R_NONE;
    }
    case SMTP_VERB_MAIL:
    case SMTP_VERB_RCPT:
        return parse_path_cmd(out->arg, out->arg_len, out);
    case SMTP_VERB_DATA:
    case SMTP_VERB_RSET:
    case SMTP_VERB_QUIT:
    case SMTP_VERB_STARTTLS: /* RFC 3207 4: no parameters */
        return out->arg ? SMTP_R_ARGS : SMTP_R_NONE;
    case SMTP_VERB_AUTH: /* the mechanism at least; the session reads the rest */
        return out->arg && out->arg_len ? SMTP_R_NONE : SMTP_R_ARGS;
    case SMTP_VERB_VRFY:
        return out->arg && out->arg_len ? SMTP_R_NONE : SMTP_R_ARGS;
    default:
        return SMTP_R_NONE; /* HELP, NOOP: any text; the others are answered 502 */
    }
}
