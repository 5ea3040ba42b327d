/* smtp_test.c - unit tests of lib/smtp: command and parameter parsing, paths and the relay
 * tricks, domain matching, relay lists and KB Q193922's relay rules, and whole sessions as
 * golden transcripts (client bytes in, server replies out), fed at once and in pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reg/reg.h"
#include "smtp/smtp.h"

#include "expect.h"

/* --- commands ----------------------------------------------------------------------------- */

static void test_parse_command(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        size_t len;
        smtp_reply_id rc;
        smtp_verb verb;
        const char *text; /* HELO name, MAIL/RCPT mailbox, or the argument */
    } cases[] = {
        {S("HELO client.example"), SMTP_R_NONE, SMTP_VERB_HELO, "client.example"},
        {S("helo client.example"), SMTP_R_NONE, SMTP_VERB_HELO, "client.example"},
        {S("EHLO [192.0.2.1]"), SMTP_R_NONE, SMTP_VERB_EHLO, "[192.0.2.1]"},
        {S("EHLO [IPv6:2001:db8::1]"), SMTP_R_NONE, SMTP_VERB_EHLO, "[IPv6:2001:db8::1]"},
        {S("EHLO my_pc.example."), SMTP_R_NONE, SMTP_VERB_EHLO, "my_pc.example."},
        {S("EHLO host  "), SMTP_R_NONE, SMTP_VERB_EHLO, "host"},
        {S("EHLO"), SMTP_R_EHLO_SYNTAX, SMTP_VERB_EHLO, NULL},
        {S("HELO"), SMTP_R_HELO_SYNTAX, SMTP_VERB_HELO, NULL},
        {S("EHLO two words"), SMTP_R_EHLO_SYNTAX, SMTP_VERB_EHLO, NULL},
        {S("EHLO bad<name>"), SMTP_R_EHLO_SYNTAX, SMTP_VERB_EHLO, NULL},
        {S("EHLO -host"), SMTP_R_EHLO_SYNTAX, SMTP_VERB_EHLO, NULL},
        {S("EHLO [300.1.1.1]"), SMTP_R_EHLO_SYNTAX, SMTP_VERB_EHLO, NULL},
        {S("MAIL FROM:<a@b.example>"), SMTP_R_NONE, SMTP_VERB_MAIL, "a@b.example"},
        {S("mail from:<a@b.example>"), SMTP_R_NONE, SMTP_VERB_MAIL, "a@b.example"},
        {S("MAIL FROM: <a@b.example>"), SMTP_R_NONE, SMTP_VERB_MAIL, "a@b.example"},
        {S("MAIL FROM:<>"), SMTP_R_NONE, SMTP_VERB_MAIL, ""},
        {S("MAIL FROM:a@b.example"), SMTP_R_MAIL_SYNTAX, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM <a@b.example>"), SMTP_R_MAIL_SYNTAX, SMTP_VERB_MAIL, NULL},
        {S("MAIL TO:<a@b.example>"), SMTP_R_MAIL_SYNTAX, SMTP_VERB_MAIL, NULL},
        {S("MAIL"), SMTP_R_MAIL_SYNTAX, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example>junk"), SMTP_R_MAIL_SYNTAX, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@@b.example>"), SMTP_R_SENDER_SYNTAX, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> SIZE=1000"), SMTP_R_NONE, SMTP_VERB_MAIL, "a@b.example"},
        {S("MAIL FROM:<a@b.example> SIZE=1000 SIZE=2"), SMTP_R_PARAM_DUP, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> size=1 Size=2"), SMTP_R_PARAM_DUP, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> SIZE=12a"), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> SIZE="), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> SIZE"), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> SIZE=123456789012345678901"), SMTP_R_PARAM_VALUE,
         SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> BODY=8BITMIME"), SMTP_R_NONE, SMTP_VERB_MAIL, "a@b.example"},
        {S("MAIL FROM:<a@b.example> BODY=BINARYMIME"), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159"), SMTP_R_NONE, SMTP_VERB_MAIL,
         "a@b.example"},
        {S("MAIL FROM:<a@b.example> RET=NONE"), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> ENVID=a+2"), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> AUTH=<>"), SMTP_R_PARAM_UNKNOWN, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> NOTIFY=NEVER"), SMTP_R_PARAM_UNKNOWN, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> X_Y=1"), SMTP_R_PARAM_VALUE, SMTP_VERB_MAIL, NULL},
        {S("MAIL FROM:<a@b.example> SMTPUTF8"), SMTP_R_PARAM_UNKNOWN, SMTP_VERB_MAIL, NULL},
        {S("RCPT TO:<u@local.test>"), SMTP_R_NONE, SMTP_VERB_RCPT, "u@local.test"},
        {S("RCPT TO:<Postmaster>"), SMTP_R_NONE, SMTP_VERB_RCPT, "Postmaster"},
        {S("RCPT TO:<>"), SMTP_R_RCPT_ADDR_SYNTAX, SMTP_VERB_RCPT, NULL},
        {S("RCPT TO:<u@local.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40local.test"),
         SMTP_R_NONE, SMTP_VERB_RCPT, "u@local.test"},
        {S("RCPT TO:<u@local.test> NOTIFY=NEVER,DELAY"), SMTP_R_PARAM_VALUE, SMTP_VERB_RCPT, NULL},
        {S("RCPT TO:<u@local.test> NOTIFY=SUCCESS,SUCCESS"), SMTP_R_PARAM_VALUE, SMTP_VERB_RCPT,
         NULL},
        {S("RCPT TO:<u@local.test> ORCPT=rfc822"), SMTP_R_PARAM_VALUE, SMTP_VERB_RCPT, NULL},
        {S("RCPT TO:<u@local.test> SIZE=10"), SMTP_R_PARAM_UNKNOWN, SMTP_VERB_RCPT, NULL},
        {S("RCPT TO:<u@local.test> NOTIFY=DELAY NOTIFY=DELAY"), SMTP_R_PARAM_DUP, SMTP_VERB_RCPT,
         NULL},
        {S("RCPT TO:u@local.test"), SMTP_R_RCPT_SYNTAX, SMTP_VERB_RCPT, NULL},
        {S("DATA"), SMTP_R_NONE, SMTP_VERB_DATA, NULL},
        {S("data  "), SMTP_R_NONE, SMTP_VERB_DATA, NULL},
        {S("DATA x"), SMTP_R_ARGS, SMTP_VERB_DATA, NULL},
        {S("RSET"), SMTP_R_NONE, SMTP_VERB_RSET, NULL},
        {S("RSET now"), SMTP_R_ARGS, SMTP_VERB_RSET, NULL},
        {S("QUIT"), SMTP_R_NONE, SMTP_VERB_QUIT, NULL},
        {S("NOOP"), SMTP_R_NONE, SMTP_VERB_NOOP, NULL},
        {S("NOOP anything at all"), SMTP_R_NONE, SMTP_VERB_NOOP, "anything at all"},
        {S("VRFY postmaster"), SMTP_R_NONE, SMTP_VERB_VRFY, "postmaster"},
        {S("VRFY"), SMTP_R_ARGS, SMTP_VERB_VRFY, NULL},
        {S("HELP"), SMTP_R_NONE, SMTP_VERB_HELP, NULL},
        {S("HELP MAIL"), SMTP_R_NONE, SMTP_VERB_HELP, "MAIL"},
        {S("EXPN list"), SMTP_R_NONE, SMTP_VERB_EXPN, "list"},
        {S("STARTTLS"), SMTP_R_NONE, SMTP_VERB_STARTTLS, NULL},
        {S("XYZZY"), SMTP_R_UNRECOGNIZED, SMTP_VERB_UNKNOWN, NULL},
        {S("MAILFROM:<a@b.example>"), SMTP_R_UNRECOGNIZED, SMTP_VERB_UNKNOWN, NULL},
        {S(""), SMTP_R_UNRECOGNIZED, SMTP_VERB_UNKNOWN, NULL},
        {S(" NOOP"), SMTP_R_UNRECOGNIZED, SMTP_VERB_UNKNOWN, NULL},
        {S("NO\0OP"), SMTP_R_NUL, SMTP_VERB_UNKNOWN, NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        smtp_cmd c;
        smtp_reply_id rc = smtp_parse_command(cases[i].line, cases[i].len, &c);
        if (rc != cases[i].rc || c.verb != cases[i].verb)
            fail_msg("\"%s\": got rc %d (%u) verb %d, want rc %d (%u) verb %d", cases[i].line, rc,
                     smtp_reply_code(rc), c.verb, cases[i].rc, smtp_reply_code(cases[i].rc),
                     cases[i].verb);
        if (!cases[i].text)
            continue;
        const char *got = "";
        char arg[256] = "";
        if (c.verb == SMTP_VERB_HELO || c.verb == SMTP_VERB_EHLO)
            got = c.helo;
        else if (c.verb == SMTP_VERB_MAIL || c.verb == SMTP_VERB_RCPT)
            got = c.path.mailbox;
        else if (c.arg) {
            snprintf(arg, sizeof arg, "%.*s", (int)c.arg_len, c.arg);
            got = arg;
        }
        if (strcmp(got, cases[i].text))
            fail_msg("\"%s\": got \"%s\" want \"%s\"", cases[i].line, got, cases[i].text);
    }
}

static void test_parse_params(void **state)
{
    (void)state;
    smtp_cmd c;
    assert_int_equal(smtp_parse_command(S("MAIL FROM:<a@b.example> SIZE=1000  body=8bitmime "
                                          "RET=FULL ENVID=QQ+2B314"),
                                        &c),
                     SMTP_R_NONE);
    assert_int_equal(c.nparams, 4);
    assert_true(c.mail.has_size);
    assert_true(c.mail.size == 1000);
    assert_int_equal(c.mail.body, SMTP_BODY_8BITMIME);
    assert_int_equal(c.mail.ret, SMTP_RET_FULL);
    assert_string_equal(c.mail.envid, "QQ+2B314");

    /* 20 digits over UINT64_MAX saturate rather than wrap. */
    assert_int_equal(smtp_parse_command(S("MAIL FROM:<> SIZE=99999999999999999999"), &c),
                     SMTP_R_NONE);
    assert_true(c.mail.size == UINT64_MAX);
    assert_true(c.path.flags & SMTP_PATH_NULL);

    assert_int_equal(
        smtp_parse_command(S("RCPT TO:<u@local.test> ORCPT=rfc822;u+40local.test NOTIFY=failure"),
                           &c),
        SMTP_R_NONE);
    assert_int_equal(c.rcpt.notify, SMTP_NOTIFY_FAILURE);
    assert_string_equal(c.rcpt.orcpt, "rfc822;u+40local.test");
    assert_int_equal(c.nparams, 2);

    assert_int_equal(smtp_parse_command(S("RCPT TO:<u@local.test> NOTIFY=NEVER"), &c), SMTP_R_NONE);
    assert_int_equal(c.rcpt.notify, SMTP_NOTIFY_NEVER);

    /* ENVID is limited to 100 characters (RFC 3461 4.4). */
    char line[300];
    int n = snprintf(line, sizeof line, "MAIL FROM:<> ENVID=%0100d", 0);
    assert_int_equal(smtp_parse_command(line, (size_t)n, &c), SMTP_R_NONE);
    n = snprintf(line, sizeof line, "MAIL FROM:<> ENVID=%0101d", 0);
    assert_int_equal(smtp_parse_command(line, (size_t)n, &c), SMTP_R_PARAM_VALUE);
}

/* --- paths -------------------------------------------------------------------------------- */

static void test_parse_path(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        smtp_path_kind kind;
        smtp_reply_id rc;
        const char *local, *domain, *mailbox;
        unsigned flags;
    } cases[] = {
        {"<user@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user", "local.test",
         "user@local.test", 0},
        {"<First.Last+tag@Sub.Local.Test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "First.Last+tag",
         "Sub.Local.Test", "First.Last+tag@Sub.Local.Test", 0},
        {"<>", SMTP_PATH_REVERSE, SMTP_R_NONE, "", "", "", SMTP_PATH_NULL},
        {"<>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<postmaster>", SMTP_PATH_FORWARD, SMTP_R_NONE, "postmaster", "", "postmaster",
         SMTP_PATH_POSTMASTER},
        {"<POSTMASTER>", SMTP_PATH_FORWARD, SMTP_R_NONE, "POSTMASTER", "", "POSTMASTER",
         SMTP_PATH_POSTMASTER},
        {"<postmaster>", SMTP_PATH_REVERSE, SMTP_R_SENDER_SYNTAX, "", "", "", 0},
        {"<user>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<\"john\"@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "john", "local.test",
         "john@local.test", SMTP_PATH_QUOTED},
        {"<\"john doe\"@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "\"john doe\"", "local.test",
         "\"john doe\"@local.test", SMTP_PATH_QUOTED | SMTP_PATH_QUOTED_KEPT},
        {"<\"user@other.example\"@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE,
         "\"user@other.example\"", "local.test", "\"user@other.example\"@local.test",
         SMTP_PATH_QUOTED | SMTP_PATH_QUOTED_KEPT},
        {"<\"a\\\"b\"@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "\"a\\\"b\"", "local.test",
         "\"a\\\"b\"@local.test", SMTP_PATH_QUOTED | SMTP_PATH_QUOTED_KEPT},
        {"<@relay.example:user@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user", "local.test",
         "user@local.test", SMTP_PATH_ROUTE},
        {"<@a.example,@b.example:user@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user",
         "local.test", "user@local.test", SMTP_PATH_ROUTE},
        {"<@a.example user@local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@[192.0.2.1]>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user", "[192.0.2.1]",
         "user@[192.0.2.1]", SMTP_PATH_LITERAL},
        {"<user@[IPv6:::1]>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user", "[IPv6:::1]",
         "user@[IPv6:::1]", SMTP_PATH_LITERAL},
        {"<user@[IPv6:zz::1]>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@[192.0.2.256]>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@[x-tag:anything]>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user", "[x-tag:anything]",
         "user@[x-tag:anything]", SMTP_PATH_LITERAL},
        {"<user@local.test.>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user", "local.test",
         "user@local.test", SMTP_PATH_TRAILING_DOT},
        {"<user@local..test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@-local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@local-.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@loc_al.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<@local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<.user@local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<us..er@local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user%other.example@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "user%other.example",
         "local.test", "user%other.example@local.test", 0},
        {"<host!user@local.test>", SMTP_PATH_FORWARD, SMTP_R_NONE, "host!user", "local.test",
         "host!user@local.test", 0},
        {"<us er@local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<\xc3\xa9@local.test>", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@local.test", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"user@local.test", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"<user@local.test>x", SMTP_PATH_FORWARD, SMTP_R_RCPT_ADDR_SYNTAX, "", "", "", 0},
        {"", SMTP_PATH_REVERSE, SMTP_R_SENDER_SYNTAX, "", "", "", 0},
    };
    for (size_t i = 0; i < N(cases); i++) {
        smtp_path p;
        smtp_reply_id rc =
            smtp_parse_path(cases[i].in, strlen(cases[i].in), cases[i].kind, &p, NULL);
        if (rc != cases[i].rc)
            fail_msg("%s: got rc %d want %d", cases[i].in, rc, cases[i].rc);
        if (strcmp(p.local, cases[i].local) || strcmp(p.domain, cases[i].domain) ||
            strcmp(p.mailbox, cases[i].mailbox) || p.flags != cases[i].flags)
            fail_msg("%s: got \"%s\" \"%s\" \"%s\" %#x want \"%s\" \"%s\" \"%s\" %#x", cases[i].in,
                     p.local, p.domain, p.mailbox, p.flags, cases[i].local, cases[i].domain,
                     cases[i].mailbox, cases[i].flags);
    }
}

/* Lengths: local part 64, domain 255, path 256 with its brackets (RFC 5321 4.5.3.1). */
static void test_path_limits(void **state)
{
    (void)state;
    char in[2048], label[64];
    smtp_path p;
    memset(label, 'd', 63);
    label[63] = '\0';

    /* A 64-octet local part is fine, 65 is not. */
    int n = snprintf(in, sizeof in, "<%064d@local.test>", 0);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL), SMTP_R_NONE);
    n = snprintf(in, sizeof in, "<%065d@local.test>", 0);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL),
                     SMTP_R_PATH_TOO_LONG);
    /* A 63-octet label is fine, 64 is not. */
    n = snprintf(in, sizeof in, "<u@%s.test>", label);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL), SMTP_R_NONE);
    n = snprintf(in, sizeof in, "<u@%sd.test>", label);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL),
                     SMTP_R_RCPT_ADDR_SYNTAX);
    /* 256 octets in all: "<" + 60 + "@" + 193 + ">" is the longest path. */
    char dom[300];
    snprintf(dom, sizeof dom, "%s.%s.%s.%.1s", label, label, label, label); /* 193 */
    assert_int_equal(strlen(dom), 193);
    n = snprintf(in, sizeof in, "<%060d@%s>", 0, dom);
    assert_int_equal(n, 256);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL), SMTP_R_NONE);
    assert_int_equal(strlen(p.mailbox), 254);
    n = snprintf(in, sizeof in, "<%061d@%s>", 0, dom);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL),
                     SMTP_R_PATH_TOO_LONG);
    assert_string_equal(p.mailbox, "");
    /* Far too long, and never closed: too long, not a syntax error, and not read to the end. */
    memset(in, 'a', sizeof in);
    in[0] = '<';
    assert_int_equal(smtp_parse_path(in, sizeof in, SMTP_PATH_REVERSE, &p, NULL),
                     SMTP_R_PATH_TOO_LONG);
    n = snprintf(in, sizeof in, "<@%s.%s.%s.%s.%s:u@local.test>", label, label, label, label,
                 label);
    assert_int_equal(smtp_parse_path(in, (size_t)n, SMTP_PATH_FORWARD, &p, NULL),
                     SMTP_R_PATH_TOO_LONG);
    /* With `used`, what follows the path is left alone. */
    size_t used = 0;
    assert_int_equal(smtp_parse_path(S("<a@b.example> SIZE=1"), SMTP_PATH_REVERSE, &p, &used),
                     SMTP_R_NONE);
    assert_int_equal(used, 13);
}

static bool local_domain(void *arg, const char *domain)
{
    int *calls = arg;
    if (calls)
        (*calls)++;
    return smtp_domain_match("local.test", domain);
}

/* Every relay trick is refused, whatever the domain; plain addresses are local or remote. */
static void test_classify(void **state)
{
    (void)state;
    static const struct {
        const char *addr;
        smtp_addr_class cls;
        smtp_refusal why;
    } cases[] = {
        {"<user@local.test>", SMTP_ADDR_LOCAL, SMTP_REFUSE_NONE},
        {"<user@LOCAL.TEST>", SMTP_ADDR_LOCAL, SMTP_REFUSE_NONE},
        {"<user@sub.local.test>", SMTP_ADDR_LOCAL, SMTP_REFUSE_NONE},
        {"<user@notlocal.test>", SMTP_ADDR_REMOTE, SMTP_REFUSE_NONE},
        {"<user@remote.example>", SMTP_ADDR_REMOTE, SMTP_REFUSE_NONE},
        {"<postmaster>", SMTP_ADDR_LOCAL, SMTP_REFUSE_NONE},
        {"<\"john\"@local.test>", SMTP_ADDR_LOCAL, SMTP_REFUSE_NONE},
        {"<user%remote.example@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_PERCENT},
        {"<user%remote.example@remote.example>", SMTP_ADDR_REFUSED, SMTP_REFUSE_PERCENT},
        {"<\"user%remote.example\"@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_PERCENT},
        {"<remote.example!user@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_BANG},
        {"<\"user@remote.example\"@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_QUOTED_AT},
        {"<\"user\\@remote.example\"@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_QUOTED_AT},
        {"<\"john doe\"@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_QUOTED},
        {"<@remote.example:user@local.test>", SMTP_ADDR_REFUSED, SMTP_REFUSE_ROUTE},
        {"<@local.test:user@remote.example>", SMTP_ADDR_REFUSED, SMTP_REFUSE_ROUTE},
        {"<user@local.test.>", SMTP_ADDR_REFUSED, SMTP_REFUSE_TRAILING_DOT},
        {"<user@[192.0.2.1]>", SMTP_ADDR_REFUSED, SMTP_REFUSE_LITERAL},
        {"<user@[IPv6:::1]>", SMTP_ADDR_REFUSED, SMTP_REFUSE_LITERAL},
        {"<user@[127.0.0.1]>", SMTP_ADDR_REFUSED, SMTP_REFUSE_LITERAL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        smtp_path p;
        if (smtp_parse_path(cases[i].addr, strlen(cases[i].addr), SMTP_PATH_FORWARD, &p, NULL))
            fail_msg("%s: does not parse", cases[i].addr);
        int calls = 0;
        smtp_refusal why = SMTP_REFUSE_ROUTE;
        smtp_addr_class cls = smtp_addr_classify(&p, local_domain, &calls, &why);
        if (cls != cases[i].cls || why != cases[i].why)
            fail_msg("%s: got class %d (%s) want %d (%s)", cases[i].addr, cls,
                     smtp_refusal_name(why), cases[i].cls, smtp_refusal_name(cases[i].why));
        /* The directory is never asked about a refused address. */
        if (cls == SMTP_ADDR_REFUSED && calls)
            fail_msg("%s: is_local called for a refused address", cases[i].addr);
    }
    /* "<>" is no recipient, should a reverse-path get here. */
    smtp_path p;
    assert_int_equal(smtp_parse_path(S("<>"), SMTP_PATH_REVERSE, &p, NULL), SMTP_R_NONE);
    smtp_refusal why;
    assert_int_equal(smtp_addr_classify(&p, local_domain, NULL, &why), SMTP_ADDR_REFUSED);
    assert_int_equal(why, SMTP_REFUSE_NULL);
}

static void test_domain_match(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *domain;
        bool want;
    } cases[] = {
        {"sea.com", "sea.com", true},     {"sea.com", "x.sea.com", true},
        {"sea.com", "y.x.SEA.COM", true}, {"sea.com", "chelsea.com", false},
        {"sea.com", "sea.com.au", false}, {"x.sea.com", "sea.com", false},
        {"", "sea.com", false},           {"sea.com", "", false},
        {"com", "sea.com", true},         {"sea.com", ".sea.com", true},
    };
    for (size_t i = 0; i < N(cases); i++)
        if (smtp_domain_match(cases[i].pattern, cases[i].domain) != cases[i].want)
            fail_msg("match(%s, %s): got %d want %d", cases[i].pattern, cases[i].domain,
                     !cases[i].want, cases[i].want);
    /* The most specific route wins, whatever its place in the list. */
    const char *routes[] = {"com", "x.sea.com", "sea.com", "chelsea.com"};
    assert_int_equal(smtp_domain_best(routes, 4, "a.x.sea.com"), 1);
    assert_int_equal(smtp_domain_best(routes, 4, "b.sea.com"), 2);
    assert_int_equal(smtp_domain_best(routes, 4, "chelsea.com"), 3);
    assert_int_equal(smtp_domain_best(routes, 4, "other.com"), 0);
    assert_int_equal(smtp_domain_best(routes, 4, "other.org"), -1);
}

/* --- IP addresses and relay lists --------------------------------------------------------- */

static smtp_ip ip_of(const char *text)
{
    smtp_ip ip;
    if (smtp_ip_parse(text, &ip))
        fail_msg("bad test address %s", text);
    return ip;
}

static void test_ip(void **state)
{
    (void)state;
    char text[64];
    smtp_ip ip = ip_of("::ffff:192.0.2.7");
    assert_int_equal(ip.family, 4);
    assert_string_equal(smtp_ip_format(&ip, text, sizeof text), "192.0.2.7");
    ip = ip_of("2001:db8::1");
    assert_int_equal(ip.family, 6);
    assert_string_equal(smtp_ip_format(&ip, text, sizeof text), "2001:db8::1");
    assert_int_equal(smtp_ip_parse("192.0.2", &ip), ERROR_INVALID_DATA);
    assert_int_equal(smtp_ip_parse("host", &ip), ERROR_INVALID_DATA);
    smtp_ip none = {0};
    assert_string_equal(smtp_ip_format(&none, text, sizeof text), "");
}

static void test_relay_list(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int rc;
        const char *in, *out; /* an address it matches, one it does not (NULL: skip) */
    } cases[] = {
        {"192.168.0.0;255.255.0.0", ERROR_SUCCESS, "192.168.77.1", "192.169.0.1"},
        {"192.168.1.5", ERROR_SUCCESS, "192.168.1.5", "192.168.1.6"},
        {" 10.0.0.0 ; 255.0.0.0 ", ERROR_SUCCESS, "10.200.3.4", "11.0.0.1"},
        {"10.0.0.0;8", ERROR_SUCCESS, "10.1.2.3", "9.255.255.255"},
        {"0.0.0.0;0.0.0.0", ERROR_SUCCESS, "203.0.113.9", "2001:db8::1"},
        /* The KB's rule, (IP AND mask) == net: a net with bits outside its mask never matches. */
        {"10.0.0.1;255.0.0.0", ERROR_SUCCESS, NULL, "10.0.0.1"},
        /* A non-contiguous mask is used bit for bit. */
        {"10.0.0.5;255.0.0.255", ERROR_SUCCESS, "10.9.9.5", "10.9.9.6"},
        {"2001:db8::;32", ERROR_SUCCESS, "2001:db8:1::1", "2001:db9::1"},
        {"2001:db8::1", ERROR_SUCCESS, "2001:db8::1", "2001:db8::2"},
        {"::ffff:172.16.0.0;108", ERROR_SUCCESS, "172.16.5.5", "172.32.0.1"},
        {"192.0.2.9", ERROR_SUCCESS, "::ffff:192.0.2.9", "192.0.2.8"},
        {"192.168.0.0;255.255.0", ERROR_INVALID_DATA, NULL, NULL},
        {"192.168.0.0;33", ERROR_INVALID_DATA, NULL, NULL},
        {"2001:db8::;129", ERROR_INVALID_DATA, NULL, NULL},
        {"2001:db8::;255.255.0.0", ERROR_INVALID_DATA, NULL, NULL},
        {"::ffff:10.0.0.0;95", ERROR_INVALID_DATA, NULL, NULL},
        {"host.example", ERROR_INVALID_DATA, NULL, NULL},
        {"192.168.0.0;", ERROR_INVALID_DATA, NULL, NULL},
        {";255.0.0.0", ERROR_INVALID_DATA, NULL, NULL},
        {"", ERROR_INVALID_DATA, NULL, NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        smtp_relay_list l = {0};
        int rc = smtp_relay_list_add(&l, cases[i].line);
        if (rc != cases[i].rc)
            fail_msg("\"%s\": got %d want %d", cases[i].line, rc, cases[i].rc);
        if (rc == ERROR_SUCCESS && l.n != 1)
            fail_msg("\"%s\": %zu entries", cases[i].line, l.n);
        if (rc != ERROR_SUCCESS && l.n != 0)
            fail_msg("\"%s\": a bad line was added", cases[i].line);
        if (cases[i].in) {
            smtp_ip ip = ip_of(cases[i].in);
            if (!smtp_relay_list_match(&l, &ip))
                fail_msg("\"%s\" should match %s", cases[i].line, cases[i].in);
        }
        if (cases[i].out) {
            smtp_ip ip = ip_of(cases[i].out);
            if (smtp_relay_list_match(&l, &ip))
                fail_msg("\"%s\" should not match %s", cases[i].line, cases[i].out);
        }
        smtp_relay_list_free(&l);
    }

    /* A whole REG_MULTI_SZ: blank lines skipped, a bad line skipped and reported. */
    const char *lines[] = {"10.0.0.0;255.0.0.0", "", "   ", "bogus", "192.0.2.1", "also bad"};
    smtp_relay_list l = {0};
    size_t bad = 99;
    assert_int_equal(smtp_relay_list_parse(&l, lines, N(lines), &bad), ERROR_INVALID_DATA);
    assert_int_equal(bad, 3);
    assert_int_equal(l.n, 2);
    smtp_relay_list_free(&l);
    assert_int_equal(smtp_relay_list_parse(&l, lines, 3, &bad), ERROR_SUCCESS);
    assert_int_equal(l.n, 1);
    smtp_ip unknown = {0};
    assert_false(smtp_relay_list_match(&l, &unknown));
    smtp_relay_list_free(&l);
}

/* KB Q193922, rule by rule. The client 10.1.1.1 is in both lists (deny wins when bit 1 is
 * set), 10.2.2.2 only in the allow list, 10.3.3.3 in neither; the local address 192.0.2.1 is in
 * RelayLocalIPList, 192.0.2.2 is not. */
static void test_relay_policy(void **state)
{
    (void)state;
    smtp_relay_policy p = {0};
    assert_int_equal(smtp_relay_list_add(&p.deny, "10.1.0.0;255.255.0.0"), ERROR_SUCCESS);
    assert_int_equal(smtp_relay_list_add(&p.allow, "10.1.0.0;255.255.0.0"), ERROR_SUCCESS);
    assert_int_equal(smtp_relay_list_add(&p.allow, "10.2.2.2"), ERROR_SUCCESS);
    assert_int_equal(smtp_relay_list_add(&p.local, "192.0.2.1"), ERROR_SUCCESS);
    static const struct {
        uint32_t flags;
        const char *client, *local;
        bool auth, want;
    } rows[] = {
        /* RelayFlags 0: no rule applies: denied (our default is a closed relay). */
        {0, "10.2.2.2", "192.0.2.1", true, false},
        {0, "10.3.3.3", "192.0.2.2", false, false},
        /* Only bit 1: everyone not in the deny list may relay. */
        {1, "10.3.3.3", "192.0.2.2", false, true},
        {1, "10.1.1.1", "192.0.2.2", false, false},
        {1, "10.1.1.1", "192.0.2.1", true, false},
        /* Bit 2: the allow list. */
        {2, "10.2.2.2", "192.0.2.2", false, true},
        {2, "10.1.1.1", "192.0.2.2", false, true}, /* no deny rule in force */
        {2, "10.3.3.3", "192.0.2.2", false, false},
        {2, "172.16.0.1", "192.0.2.1", true, false},
        /* Bits 1+2: deny first, then allow, and nothing else is allowed. */
        {3, "10.1.1.1", "192.0.2.2", false, false},
        {3, "10.2.2.2", "192.0.2.2", false, true},
        {3, "172.16.0.1", "192.0.2.2", false, false},
        /* Bit 4: connections to a listed local address. */
        {4, "172.16.0.1", "192.0.2.1", false, true},
        {4, "172.16.0.1", "192.0.2.2", false, false},
        {5, "10.1.1.1", "192.0.2.1", false, false}, /* denied first */
        {5, "172.16.0.1", "192.0.2.1", false, true},
        {5, "172.16.0.1", "192.0.2.2", false, false}, /* not "only bit 1" any more */
        /* Bit 8: authenticated clients. */
        {8, "172.16.0.1", "192.0.2.2", true, true},
        {8, "172.16.0.1", "192.0.2.2", false, false},
        {9, "10.1.1.1", "192.0.2.2", true, false}, /* the deny list beats authentication */
        {9, "172.16.0.1", "192.0.2.2", true, true},
        {9, "172.16.0.1", "192.0.2.2", false, false},
        {0xF, "10.1.1.1", "192.0.2.1", true, false},
        {0xF, "10.2.2.2", "192.0.2.2", false, true},
        {0xF, "172.16.0.1", "192.0.2.1", false, true},
        {0xF, "172.16.0.1", "192.0.2.2", true, true},
        {0xF, "172.16.0.1", "192.0.2.2", false, false},
        {0xE, "10.1.1.1", "192.0.2.2", false, true}, /* no deny rule: the allow list says yes */
        /* Unknown bits are ignored: 0x11 is "only bit 1". */
        {0x11, "172.16.0.1", "192.0.2.2", false, true},
        {0x10, "172.16.0.1", "192.0.2.2", true, false},
        /* A dual-stack socket's IPv4-mapped form is the same client. */
        {3, "::ffff:10.1.1.1", "192.0.2.2", false, false},
        {2, "::ffff:10.2.2.2", "192.0.2.2", false, true},
    };
    for (size_t i = 0; i < N(rows); i++) {
        p.flags = rows[i].flags;
        smtp_ip client = ip_of(rows[i].client), local = ip_of(rows[i].local);
        bool got = smtp_relay_allowed(&p, &client, &local, rows[i].auth);
        if (got != rows[i].want)
            fail_msg("flags %#x client %s local %s auth %d: got %d want %d", rows[i].flags,
                     rows[i].client, rows[i].local, rows[i].auth, got, rows[i].want);
    }
    /* Unknown addresses match no list; a NULL policy denies. */
    smtp_ip unknown = {0};
    p.flags = 3;
    assert_false(smtp_relay_allowed(&p, &unknown, &unknown, false));
    p.flags = 1;
    assert_true(smtp_relay_allowed(&p, &unknown, &unknown, false));
    assert_false(smtp_relay_allowed(NULL, &unknown, &unknown, true));
    smtp_relay_policy_free(&p);
}

static void test_replies(void **state)
{
    (void)state;
    buf b = BUF_INIT;
    assert_int_equal(smtp_reply_append(&b, SMTP_R_RELAY_DENIED, true, "mx"), 0);
    assert_int_equal(smtp_reply_append(&b, SMTP_R_RELAY_DENIED, false, "mx"), 0);
    assert_int_equal(smtp_reply_append(&b, SMTP_R_QUIT, true, "mx.local.test"), 0);
    assert_int_equal(smtp_reply_append(&b, SMTP_R_DATA_GO, true, "mx"), 0);
    const char *lines[] = {"one", "two", "three"};
    assert_int_equal(smtp_reply_lines(&b, 214, "2.0.0", lines, 3), 0);
    assert_int_equal(smtp_reply_lines(&b, 250, NULL, lines, 1), 0);
    const char want[] = "550 5.7.1 relaying prohibited\r\n"
                        "550 relaying prohibited\r\n"
                        "221 2.0.0 mx.local.test Service closing transmission channel\r\n"
                        "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
                        "214-2.0.0 one\r\n214-2.0.0 two\r\n214 2.0.0 three\r\n"
                        "250 one\r\n";
    expect_bytes("replies", (const char *)b.data, b.len, S(want));
    size_t len = b.len;
    assert_int_not_equal(smtp_reply_append(&b, SMTP_R_NONE, true, NULL), 0);
    assert_int_not_equal(smtp_reply_lines(&b, 250, NULL, lines, 0), 0);
    assert_int_equal(b.len, len);
    assert_int_equal(smtp_reply_code(SMTP_R_SIZE_EXCEEDED), 552);
    assert_int_equal(smtp_reply_code(SMTP_R_COUNT), 0);
    buf_free(&b);
}

/* --- sessions ----------------------------------------------------------------------------- */

/* What the callbacks saw. */
struct rec {
    buf events;             /* "check(x);begin(from,n);chunk;end(size);abort;" */
    buf message;            /* the data of the last message begun */
    int begin_rc, chunk_rc; /* what cb_data_begin and cb_data_chunk return */
    int live;               /* recipient data attached by cb_rcpt_check and not yet released */
};

/* cb_rcpt_check attaches a copy of the address to every recipient it answers (refused ones
 * too, which the session must hand straight back); cb_rcpt_release counts them back in. */
static unsigned rcpt_verdict(struct rec *r, const smtp_path *addr, smtp_addr_class cls)
{
    if (cls == SMTP_ADDR_REMOTE) { /* a relay the policy allowed: can it go out? */
        buf_printf(&r->events, "out(%s);", addr->mailbox);
        if (!strncmp(addr->local, "nooutbound", 10))
            return 453;
        return !strncmp(addr->local, "outfail", 7) ? 451 : 250;
    }
    assert_int_equal(cls, SMTP_ADDR_LOCAL);
    buf_printf(&r->events, "check(%s);", addr->mailbox);
    if (!strncmp(addr->local, "unknown", 7))
        return 550;
    if (!strncmp(addr->local, "tempfail", 8))
        return 451;
    if (!strncmp(addr->local, "weird", 5))
        return 999;
    if (!strncmp(addr->local, "ratelimited", 11))
        return 450;
    return 250;
}

static unsigned cb_rcpt_check(void *arg, const smtp_path *addr, smtp_addr_class cls, void **data)
{
    struct rec *r = arg;
    assert_null(*data);
    *data = strdup(addr->mailbox);
    assert_non_null(*data);
    r->live++;
    return rcpt_verdict(r, addr, cls);
}

static void cb_rcpt_release(void *arg, void *data)
{
    struct rec *r = arg;
    assert_true(r->live > 0);
    r->live--;
    free(data);
}

/* check_rcpt_data - every recipient of the envelope carries the data attached to it. */
static void check_rcpt_data(const smtp_envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        assert_non_null(env->rcpt[i].data);
        assert_string_equal(env->rcpt[i].data, env->rcpt[i].path.mailbox);
    }
}

static int cb_data_begin(void *arg, const smtp_envelope *env)
{
    struct rec *r = arg;
    check_rcpt_data(env);
    buf_printf(&r->events, "begin(%s,%zu);", env->from->mailbox, env->nrcpt);
    r->message.len = 0;
    return r->begin_rc;
}

static int cb_data_chunk(void *arg, const char *p, size_t n)
{
    struct rec *r = arg;
    buf_add(&r->message, p, n);
    return r->chunk_rc;
}

static void cb_data_end(void *arg, const smtp_envelope *env)
{
    struct rec *r = arg;
    check_rcpt_data(env);
    buf_printf(&r->events, "end(%llu", (unsigned long long)env->size);
    for (size_t i = 0; i < env->nrcpt; i++)
        buf_printf(&r->events, ",%s%s", env->rcpt[i].cls == SMTP_ADDR_REMOTE ? "remote:" : "",
                   env->rcpt[i].path.mailbox);
    buf_printf(&r->events, ");");
    assert_int_equal(env->size, r->message.len);
}

static void cb_data_abort(void *arg)
{
    struct rec *r = arg;
    buf_printf(&r->events, "abort;");
}

/* Configurations for the transcripts. */
enum cfg_kind {
    CFG_DEFAULT,  /* extensions on, no size limit, client 192.0.2.10 may not relay */
    CFG_NOEXT,    /* AdvertiseSMTPExtensions = 0 */
    CFG_SIZE,     /* max_size 100 */
    CFG_ERRORS3,  /* max_errors 3 */
    CFG_NONE,     /* transfer mode None */
    CFG_OUTBOUND, /* transfer mode Outbound Only */
    CFG_RELAYER,  /* client 198.51.100.7, in RelayAllowList */
    CFG_NOCLIENT, /* client address unknown */
};

struct tcase {
    const char *name;
    enum cfg_kind cfg;
    const char *in;
    size_t in_len;
    const char *out;
    const char *events;  /* NULL: not checked */
    const char *message; /* NULL: not checked */
    unsigned commit;     /* 0: the commit succeeds; 1: fails (data_done); else data_result's code */
};

#define HOST "mx.local.test"
#define GREET "220 " HOST " ESMTP Server (IMS Internet Mail Service) Ready\r\n"
#define EHLO "EHLO client.example\r\n"
#define EHLO_OK                                                                                    \
    "250-" HOST " Hello [192.0.2.10]\r\n250-SIZE\r\n250-PIPELINING\r\n250-8BITMIME\r\n"            \
    "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
#define MAIL "MAIL FROM:<sender@remote.example>\r\n"
#define MAIL_OK "250 2.1.0 Sender OK\r\n"
#define RCPT "RCPT TO:<user@local.test>\r\n"
#define RCPT_OK "250 2.1.5 Recipient OK\r\n"
#define DATA_GO "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
#define QUEUED "250 2.6.0 Message accepted for delivery (queued as Q1)\r\n"
#define BYE "221 2.0.0 " HOST " Service closing transmission channel\r\n"
#define OK "250 2.0.0 OK\r\n"
#define BAD_LINE "500 5.5.2 Syntax error: bare LF or CR (lines end with CRLF)\r\n"
#define RELAY_NO "550 5.7.1 relaying prohibited\r\n"
#define BEGIN "begin(sender@remote.example,1);"
#define END(n) "end(" #n ",user@local.test);"

static const struct tcase cases[] = {
    {"happy path", CFG_DEFAULT,
     S(EHLO MAIL RCPT "DATA\r\n"
                      "Subject: hi\r\n\r\nbody\r\n..leading dot\r\n.\r\n"
                      "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO QUEUED BYE, "check(user@local.test);" BEGIN END(35),
     "Subject: hi\r\n\r\nbody\r\n.leading dot\r\n", false},
    {"without extensions", CFG_NOEXT,
     S(EHLO "MAIL FROM:<a@b.example> SIZE=10\r\n" MAIL
            "RCPT TO:<x@local.test> NOTIFY=NEVER\r\n" RCPT "RSET\r\nVRFY x\r\nBOGUS\r\nQUIT\r\n"),
     "220 " HOST " SMTP Server (IMS Internet Mail Service) Ready\r\n"
     "250 " HOST " Hello [192.0.2.10]\r\n"
     "555 Unsupported parameter\r\n"
     "250 Sender OK\r\n"
     "555 Unsupported parameter\r\n"
     "250 Recipient OK\r\n"
     "250 OK\r\n"
     "252 Cannot VRFY user, but will accept message and attempt delivery\r\n"
     "500 Syntax error, command unrecognized\r\n"
     "221 " HOST " Service closing transmission channel\r\n",
     NULL, NULL, false},
    {"HELO and commands before it", CFG_DEFAULT,
     S(MAIL RCPT "DATA\r\nHELO client.example\r\nNOOP hello\r\nHELP\r\n" MAIL MAIL RCPT
                 "RCPT TO:<other@local.test>\r\nQUIT\r\n"),
     GREET "503 5.5.1 Send HELO/EHLO first\r\n"
           "503 5.5.1 Send HELO/EHLO first\r\n"
           "503 5.5.1 Send HELO/EHLO first\r\n"
           "250 " HOST " Hello [192.0.2.10]\r\n" OK "214-2.0.0 Commands supported:\r\n"
           "214-2.0.0 HELO EHLO MAIL RCPT DATA\r\n"
           "214 2.0.0 RSET NOOP QUIT HELP VRFY\r\n" MAIL_OK
           "503 5.5.1 Sender already specified\r\n" RCPT_OK RCPT_OK BYE,
     "check(user@local.test);check(other@local.test);", NULL, false},
    {"sequence errors", CFG_DEFAULT,
     S(EHLO "RCPT TO:<user@local.test>\r\nDATA\r\n" MAIL "DATA\r\nRSET\r\nDATA\r\nQUIT\r\n"),
     GREET EHLO_OK "503 5.5.1 Need MAIL before RCPT\r\n"
                   "503 5.5.1 Need RCPT before DATA\r\n" MAIL_OK
                   "503 5.5.1 Need RCPT before DATA\r\n" OK
                   "503 5.5.1 Need RCPT before DATA\r\n" BYE,
     "", NULL, false},
    {"pipelining in one write, async commit", CFG_DEFAULT,
     S(EHLO MAIL "RCPT TO:<unknown@local.test>\r\n" RCPT "RCPT TO:<x@remote.example>\r\n"
                 "DATA\r\nline\r\n.\r\n" MAIL RCPT "DATA\r\nsecond\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK "550 5.1.1 User unknown\r\n" RCPT_OK RELAY_NO DATA_GO QUEUED MAIL_OK
         RCPT_OK DATA_GO QUEUED BYE,
     "check(unknown@local.test);check(user@local.test);" BEGIN END(
         6) "check(user@local.test);" BEGIN END(8),
     "second\r\n", false},
    {"pipelining without EHLO", CFG_DEFAULT,
     S("HELO client.example\r\n" MAIL RCPT "DATA\r\nx\r\n.\r\nQUIT\r\n"),
     GREET "250 " HOST " Hello [192.0.2.10]\r\n" MAIL_OK RCPT_OK DATA_GO QUEUED BYE, NULL, "x\r\n",
     false},
    {"every recipient refused", CFG_DEFAULT,
     S(EHLO MAIL "RCPT TO:<unknown@local.test>\r\nRCPT TO:<a@remote.example>\r\nDATA\r\nRSET\r\n"
                 "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK "550 5.1.1 User unknown\r\n" RELAY_NO
                           "554 5.5.1 No valid recipients\r\n" OK BYE,
     "check(unknown@local.test);", NULL, false},
    {"RSET ends the transaction", CFG_DEFAULT,
     S(EHLO MAIL RCPT "RSET\r\nDATA\r\n" MAIL RCPT "EHLO again.example\r\nDATA\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK OK "503 5.5.1 Need RCPT before DATA\r\n" MAIL_OK RCPT_OK EHLO_OK
                                      "503 5.5.1 Need RCPT before DATA\r\n" BYE,
     NULL, NULL, false},
    {"size limit at MAIL and in DATA", CFG_SIZE,
     S(EHLO "MAIL FROM:<a@b.example> SIZE=101\r\n"
            "MAIL FROM:<sender@remote.example> SIZE=100\r\n" RCPT "DATA\r\n"
            "0123456789012345678901234567890123456789\r\n"
            "0123456789012345678901234567890123456789\r\n"
            "0123456789012345678901234567890123456789\r\n.\r\n" MAIL RCPT "DATA\r\n"
            "0123456789012345678901234567890123456789\r\n"
            "0123456789012345678901234567890123456789\r\n"
            "01234567890123\r\n.\r\nQUIT\r\n"),
     GREET "250-" HOST " Hello [192.0.2.10]\r\n250-SIZE 100\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
           "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
           "552 5.3.4 Message size exceeds fixed maximum message size\r\n" MAIL_OK RCPT_OK DATA_GO
           "552 5.3.4 Message size exceeds fixed maximum message size\r\n" MAIL_OK RCPT_OK DATA_GO
               QUEUED BYE,
     "check(user@local.test);" BEGIN "abort;check(user@local.test);" BEGIN END(100), NULL, false},
    {"bare LF and CR in commands", CFG_DEFAULT,
     S(EHLO "NOOP\nNO\rOP\r\nNOOP\r\r\nNOOP\r\n\n\rQUIT\r\nQUIT\r\n"),
     GREET EHLO_OK BAD_LINE BAD_LINE BAD_LINE OK BAD_LINE BAD_LINE BYE, NULL, NULL, false},
    {"bare LF in data", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nab\ncd\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
     "550 5.6.0 Message refused: bare LF or CR in message data (RFC 5321 2.3.8)\r\n" BYE,
     "check(user@local.test);" BEGIN "abort;", NULL, false},
    {"bare CR in data", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nab\rcd\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
     "550 5.6.0 Message refused: bare LF or CR in message data (RFC 5321 2.3.8)\r\n" BYE,
     "check(user@local.test);" BEGIN "abort;", NULL, false},
#define SMUGGLE(name, seq)                                                                         \
    {                                                                                              \
        "smuggling " name, CFG_DEFAULT,                                                            \
            S(EHLO MAIL RCPT "DATA\r\nhello\r\n" seq "MAIL FROM:<evil@remote.example>\r\n"         \
                             "RCPT TO:<victim@local.test>\r\nDATA\r\nforged\r\n.\r\nQUIT\r\n"),    \
            GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO                                                  \
            "550 5.6.0 Message refused: \".\" line after a bare LF or CR (smuggling)\r\n" BYE,     \
            "check(user@local.test);" BEGIN "abort;", NULL, false                                  \
    }
    SMUGGLE("LF.LF", "\n.\n"),
    SMUGGLE("LF.CRLF", "\n.\r\n"),
    SMUGGLE("CR.CRLF", "\r.\r\n"),
    SMUGGLE("CRLF.LF", ".\n"),
    SMUGGLE("CRLF.CR", ".\rX\r\n"),
    {"smuggling at the very start of data", CFG_DEFAULT,
     S(EHLO MAIL RCPT "DATA\r\n.\nQUIT\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
     "550 5.6.0 Message refused: \".\" line after a bare LF or CR (smuggling)\r\n" BYE,
     NULL, NULL, false},
    {"dots that are data", CFG_DEFAULT,
     S(EHLO MAIL RCPT "DATA\r\n..\r\n...\r\n.x\r\nx.\r\n . \r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO QUEUED BYE, NULL, ".\r\n..\r\nx\r\nx.\r\n . \r\n",
     false},
    {"empty message", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO QUEUED BYE, "check(user@local.test);" BEGIN END(0), "",
     false},
    {"NUL in a command and in data", CFG_DEFAULT,
     S(EHLO "NO\0OP\r\n" MAIL RCPT "DATA\r\na\0b\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK "500 5.5.2 Syntax error: NUL character in command\r\n" MAIL_OK RCPT_OK DATA_GO
                   "550 5.6.0 Message refused: NUL character in message data\r\n" BYE,
     NULL, NULL, false},
    {"too many errors", CFG_ERRORS3,
     S(EHLO "FOO\r\nRCPT TO:<a@local.test>\r\nNOOP\r\nBAR\r\nQUIT\r\n"),
     GREET EHLO_OK "500 5.5.2 Syntax error, command unrecognized\r\n"
                   "503 5.5.1 Need MAIL before RCPT\r\n" OK
                   "500 5.5.2 Syntax error, command unrecognized\r\n"
                   "421 4.7.0 " HOST " Too many errors, closing transmission channel\r\n",
     NULL, NULL, false},
    {"relay tricks count as errors", CFG_ERRORS3,
     S(EHLO MAIL "RCPT TO:<a%b@local.test>\r\nRCPT TO:<\"a@b\"@local.test>\r\n"
                 "RCPT TO:<a@[192.0.2.1]>\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RELAY_NO RELAY_NO RELAY_NO
     "421 4.7.0 " HOST " Too many errors, closing transmission channel\r\n",
     "", NULL, false},
    {"relaying and the tricks", CFG_DEFAULT,
     S(EHLO MAIL "RCPT TO:<a@remote.example>\r\n"
                 "RCPT TO:<a%remote.example@local.test>\r\n"
                 "RCPT TO:<remote.example!a@local.test>\r\n"
                 "RCPT TO:<@remote.example:a@local.test>\r\n"
                 "RCPT TO:<a@local.test.>\r\n"
                 "RCPT TO:<\"a b\"@local.test>\r\n"
                 "RCPT TO:<a>\r\n"
                 "RCPT TO:<Postmaster>\r\n"
                 "RCPT TO:<\"quoted\"@local.test>\r\n"
                 "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK RELAY_NO RELAY_NO RELAY_NO RELAY_NO
     "553 5.1.3 Mailbox name not allowed\r\n"
     "553 5.1.3 Mailbox name not allowed\r\n"
     "501 5.1.3 Bad recipient address syntax\r\n" RCPT_OK RCPT_OK BYE,
     "check(Postmaster);check(quoted@local.test);", NULL, false},
    {"an allowed relay", CFG_RELAYER,
     S("EHLO relay.example\r\n" MAIL "RCPT TO:<a@remote.example>\r\n"
       "RCPT TO:<a%b@remote.example>\r\n" RCPT "DATA\r\nx\r\n.\r\nQUIT\r\n"),
     GREET
     "250-" HOST " Hello [198.51.100.7]\r\n250-SIZE\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
     "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n" MAIL_OK RCPT_OK RELAY_NO RCPT_OK DATA_GO QUEUED BYE,
     "out(a@remote.example);check(user@local.test);begin(sender@remote.example,2);"
     "end(3,remote:a@remote.example,user@local.test);",
     NULL, false},
    {"a relay that cannot go out", CFG_RELAYER,
     S("EHLO relay.example\r\n" MAIL "RCPT TO:<nooutbound@remote.example>\r\n"
       "RCPT TO:<outfail@remote.example>\r\n" RCPT "QUIT\r\n"),
     GREET "250-" HOST " Hello [198.51.100.7]\r\n250-SIZE\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
           "250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n" MAIL_OK
           "451 4.3.2 Outbound mail is not available, try again later\r\n"
           "451 4.3.0 Recipient lookup failed, try again later\r\n" RCPT_OK BYE,
     "out(nooutbound@remote.example);out(outfail@remote.example);check(user@local.test);", NULL,
     false},
    {"recipient lookups", CFG_DEFAULT,
     S(EHLO MAIL "RCPT TO:<tempfail@local.test>\r\nRCPT TO:<weird@local.test>\r\n"
                 "RCPT TO:<unknown@sub.local.test>\r\nRCPT TO:<ratelimited@local.test>\r\n"
                 "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK
     "451 4.3.0 Recipient lookup failed, try again later\r\n"
     "451 4.3.0 Recipient lookup failed, try again later\r\n"
     "550 5.1.1 User unknown\r\n"
     "450 4.7.0 Too many recipients from your address, try again later\r\n" BYE,
     NULL, NULL, false},
    {"commit fails", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nx\r\n.\r\n" MAIL "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
     "451 4.3.0 Requested action aborted: local error in processing\r\n" MAIL_OK BYE,
     NULL, NULL, 1},
    {"commit out of space", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nx\r\n.\r\n" MAIL "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO "452 4.3.1 Insufficient system storage\r\n" MAIL_OK BYE,
     NULL, NULL, 452},
    {"commit fails otherwise", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nx\r\n.\r\n" MAIL "QUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
     "451 4.3.0 Requested action aborted: local error in processing\r\n" MAIL_OK BYE,
     NULL, NULL, 500},
    {"unimplemented and unknown", CFG_DEFAULT,
     S(EHLO "EXPN staff\r\nSTARTTLS\r\nXYZZY\r\nVRFY someone\r\nQUIT\r\n"),
     GREET EHLO_OK
     "502 5.5.1 Command not implemented\r\n502 5.5.1 Command not implemented\r\n"
     "500 5.5.2 Syntax error, command unrecognized\r\n"
     "252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery\r\n" BYE,
     NULL, NULL, false},
    {"syntax errors", CFG_DEFAULT,
     S(EHLO "EHLO\r\nMAIL FROM:x@y\r\nMAIL FROM:<x@y> FOO=1\r\nMAIL FROM:<x@y> SIZE=1 SIZE=1\r\n"
            "MAIL FROM:<a@@b>\r\nDATA now\r\nQUIT\r\n"),
     GREET EHLO_OK "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                   "555 5.5.4 Unsupported parameter\r\n555 5.5.4 Duplicate parameter\r\n"
                   "501 5.1.7 Bad sender address syntax\r\n503 5.5.1 Need RCPT before DATA\r\n" BYE,
     NULL, NULL, false},
    {"what follows QUIT is not read", CFG_DEFAULT, S("QUIT\r\nNOOP\r\n"), GREET BYE, NULL, NULL,
     false},
    {"transfer mode None", CFG_NONE, S(EHLO "QUIT\r\n"),
     "421 4.3.2 " HOST " Service not available, closing transmission channel\r\n", NULL, NULL,
     false},
    {"transfer mode Outbound Only", CFG_OUTBOUND, S(EHLO),
     "421 4.3.2 " HOST " Service not available, closing transmission channel\r\n", NULL, NULL,
     false},
    {"unknown client address", CFG_NOCLIENT, S("HELO c.example\r\nQUIT\r\n"),
     GREET "250 " HOST " Hello\r\n" BYE, NULL, NULL, false},
    {"data_begin fails", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nRSET\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK
     "451 4.3.0 Requested action aborted: local error in processing\r\n" OK BYE,
     NULL, NULL, false},
    {"data_chunk fails", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nabc\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
     "451 4.3.0 Requested action aborted: local error in processing\r\n" BYE,
     "check(user@local.test);" BEGIN "abort;", NULL, false},
    {"data_begin out of space", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nRSET\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK "452 4.3.1 Insufficient system storage\r\n" OK BYE, NULL, NULL,
     false},
    {"data_chunk out of space", CFG_DEFAULT, S(EHLO MAIL RCPT "DATA\r\nabc\r\n.\r\nQUIT\r\n"),
     GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO "452 4.3.1 Insufficient system storage\r\n" BYE,
     "check(user@local.test);" BEGIN "abort;", NULL, false},
};

struct fx {
    smtp_relay_policy policy;
    smtp_config cfg;
    smtp_ip client, local;
};

static void fx_setup(struct fx *fx, enum cfg_kind kind)
{
    memset(fx, 0, sizeof *fx);
    fx->policy.flags = SMTP_RELAY_DENY_LIST | SMTP_RELAY_ALLOW_LIST;
    assert_int_equal(smtp_relay_list_add(&fx->policy.allow, "198.51.100.0;255.255.255.0"), 0);
    smtp_config_defaults(&fx->cfg);
    fx->cfg.fqdn = HOST;
    fx->cfg.is_local = local_domain;
    fx->cfg.relay = &fx->policy;
    fx->client = ip_of("192.0.2.10");
    fx->local = ip_of("192.0.2.1");
    switch (kind) {
    case CFG_NOEXT:
        fx->cfg.advertise_extensions = false;
        break;
    case CFG_SIZE:
        fx->cfg.max_size = 100;
        break;
    case CFG_ERRORS3:
        fx->cfg.max_errors = 3;
        break;
    case CFG_NONE:
        fx->cfg.mode = SMTP_TRANSFER_NONE;
        break;
    case CFG_OUTBOUND:
        fx->cfg.mode = SMTP_TRANSFER_OUT;
        break;
    case CFG_RELAYER:
        fx->client = ip_of("198.51.100.7");
        break;
    case CFG_NOCLIENT:
        memset(&fx->client, 0, sizeof fx->client);
        break;
    default:
        break;
    }
}

/* run - feed in[0..n) `chunk` bytes at a time (0: all at once), committing every message as
 * soon as the session asks; the server's bytes are appended to out. Returns the session's
 * input position at the end (what it consumed). */
static size_t run(const struct tcase *tc, size_t chunk, buf *out, struct rec *rec)
{
    struct fx fx;
    fx_setup(&fx, tc->cfg);
    smtp_callbacks cb = {rec,         cb_rcpt_check,  cb_data_begin, cb_data_chunk,
                         cb_data_end, cb_data_abort,  NULL,          NULL,
                         NULL,        cb_rcpt_release};
    smtp_session *s;
    assert_int_equal(smtp_session_new(&fx.cfg, &cb, &fx.client, &fx.local, &s), 0);
    size_t off = 0, avail = chunk ? (chunk < tc->in_len ? chunk : tc->in_len) : tc->in_len;
    for (int guard = 0; guard < 1000000; guard++) {
        size_t used = 0, len;
        assert_int_equal(smtp_session_input(s, tc->in + off, avail - off, &used), 0);
        assert_true(used <= avail - off);
        off += used;
        const char *o = smtp_session_output(s, &len);
        buf_add(out, o, len);
        smtp_session_output_drain(s, len);
        if (smtp_session_want_close(s))
            break;
        if (smtp_session_committing(s)) {
            if (tc->commit > 1)
                assert_int_equal(smtp_session_data_result(s, tc->commit, "Q1"), 0);
            else
                assert_int_equal(smtp_session_data_done(s, !tc->commit, "Q1"), 0);
            continue;
        }
        if (off < avail)
            fail_msg("%s: input stopped at %zu of %zu", tc->name, off, avail);
        if (avail == tc->in_len)
            break;
        avail = avail + chunk < tc->in_len ? avail + chunk : tc->in_len;
    }
    smtp_session_free(s);
    assert_int_equal(rec->live, 0); /* every recipient's data handed back exactly once */
    smtp_relay_policy_free(&fx.policy);
    return off;
}

static void test_transcripts(void **state)
{
    (void)state;
    static const size_t chunks[] = {0, 1, 7, 64};
    for (size_t i = 0; i < N(cases); i++) {
        const struct tcase *tc = &cases[i];
        for (size_t k = 0; k < N(chunks); k++) {
            buf out = BUF_INIT;
            struct rec rec = {BUF_INIT, BUF_INIT, false, false};
            rec.begin_rc = !strcmp(tc->name, "data_begin fails")          ? -1
                           : !strcmp(tc->name, "data_begin out of space") ? 452
                                                                          : 0;
            rec.chunk_rc = !strcmp(tc->name, "data_chunk fails")          ? -1
                           : !strcmp(tc->name, "data_chunk out of space") ? 452
                                                                          : 0;
            run(tc, chunks[k], &out, &rec);
            char what[128];
            snprintf(what, sizeof what, "%s (chunks of %zu)", tc->name, chunks[k]);
            expect_bytes(what, (const char *)out.data, out.len, tc->out, strlen(tc->out));
            if (tc->events) {
                snprintf(what, sizeof what, "%s: events (chunks of %zu)", tc->name, chunks[k]);
                expect_bytes(what, (const char *)rec.events.data, rec.events.len, tc->events,
                             strlen(tc->events));
            }
            if (tc->message) {
                snprintf(what, sizeof what, "%s: message (chunks of %zu)", tc->name, chunks[k]);
                expect_bytes(what, (const char *)rec.message.data, rec.message.len, tc->message,
                             strlen(tc->message));
            }
            buf_free(&out);
            buf_free(&rec.events);
            buf_free(&rec.message);
        }
    }
}

/* A session with the default fixture, its greeting drained. */
static smtp_session *new_session(struct fx *fx, struct rec *rec)
{
    fx_setup(fx, CFG_DEFAULT);
    smtp_callbacks cb = {rec,         cb_rcpt_check,  cb_data_begin, cb_data_chunk,
                         cb_data_end, cb_data_abort,  NULL,          NULL,
                         NULL,        cb_rcpt_release};
    smtp_session *s;
    assert_int_equal(smtp_session_new(&fx->cfg, &cb, &fx->client, &fx->local, &s), 0);
    smtp_session_output_drain(s, SIZE_MAX);
    return s;
}

/* feed - all of p[0..n) (must be consumed), the replies appended to out. */
static void feed(smtp_session *s, const char *p, size_t n, buf *out)
{
    size_t used, len;
    assert_int_equal(smtp_session_input(s, p, n, &used), 0);
    assert_int_equal(used, n);
    const char *o = smtp_session_output(s, &len);
    buf_add(out, o, len);
    smtp_session_output_drain(s, len);
}

/* NOTIFY's text both ways: the canonical order whatever the order given, any case in. */
static void test_notify_text(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        smtp_reply_id rc;
        const char *out;
    } notify_cases[] = {
        {"NEVER", SMTP_R_NONE, "NEVER"},
        {"failure,success", SMTP_R_NONE, "SUCCESS,FAILURE"},
        {"DELAY,FAILURE,SUCCESS", SMTP_R_NONE, "SUCCESS,FAILURE,DELAY"},
        {"NEVER,SUCCESS", SMTP_R_PARAM_VALUE, NULL},
        {"SUCCESS,SUCCESS", SMTP_R_PARAM_VALUE, NULL},
        {"SOMETIMES", SMTP_R_PARAM_VALUE, NULL},
        {"", SMTP_R_PARAM_VALUE, NULL},
    };
    for (size_t i = 0; i < N(notify_cases); i++) {
        unsigned bits = 0;
        smtp_reply_id rc = smtp_notify_parse(notify_cases[i].in, strlen(notify_cases[i].in), &bits);
        if (rc != notify_cases[i].rc)
            fail_msg("smtp_notify_parse(\"%s\"): got %d, want %d", notify_cases[i].in, rc,
                     notify_cases[i].rc);
        if (rc)
            continue;
        char text[SMTP_NOTIFY_TEXT];
        assert_string_equal(smtp_notify_format(bits, text, sizeof text), notify_cases[i].out);
    }
    char text[SMTP_NOTIFY_TEXT];
    assert_string_equal(smtp_notify_format(0, text, sizeof text), "");
}

/* RSET, EHLO and HELO in every state a transaction can be in end it, and the next message
 * carries only its own recipients, each with its own data (the caller keeps no list). */
static void test_reset_every_state(void **state)
{
    (void)state;
    static const char *const before[] = {
        "",                                         /* connected */
        EHLO,                                       /* greeted */
        EHLO MAIL,                                  /* mail */
        EHLO MAIL "RCPT TO:<alice@local.test>\r\n", /* rcpt */
        EHLO MAIL "RCPT TO:<alice@local.test>\r\nRCPT TO:<unknown@local.test>\r\n"
                  "RCPT TO:<tempfail@local.test>\r\n", /* rcpt, refusals among them */
        EHLO MAIL "RCPT TO:<alice@local.test>\r\nDATA\r\nbare\nLF\r\n.\r\n", /* refused DATA */
        EHLO MAIL "RCPT TO:<alice@local.test>\r\nDATA\r\nhi\r\n.\r\n",       /* delivered */
    };
    static const char *const resets[] = {"RSET\r\n", "EHLO again.example\r\n",
                                         "HELO again.example\r\n"};
    for (size_t b = 0; b < N(before); b++)
        for (size_t r = 0; r < N(resets); r++) {
            struct fx fx;
            struct rec rec = {BUF_INIT, BUF_INIT, false, false};
            smtp_session *s = new_session(&fx, &rec);
            buf out = BUF_INIT;
            feed(s, before[b], strlen(before[b]), &out);
            if (smtp_session_committing(s))
                assert_int_equal(smtp_session_data_done(s, true, "Q0"), 0);
            feed(s, resets[r], strlen(resets[r]), &out);
            assert_int_equal(rec.live, 0); /* the reset handed every recipient back */
            if (!before[b][0] && r == 0)
                feed(s, S(EHLO), &out); /* RSET leaves a new session ungreeted */
            rec.events.len = 0;
            out.len = 0;
            feed(s, S(MAIL "RCPT TO:<bob@local.test>\r\nDATA\r\nbody\r\n.\r\n"), &out);
            assert_true(smtp_session_committing(s));
            assert_int_equal(rec.live, 1);
            assert_int_equal(smtp_session_data_done(s, true, "Q1"), 0);
            size_t len;
            const char *o = smtp_session_output(s, &len);
            buf_add(&out, o, len);
            char what[96];
            snprintf(what, sizeof what, "%s after \"%.*s\"", resets[r],
                     (int)strcspn(before[b], "\r"), before[b]);
            const char *want = MAIL_OK RCPT_OK DATA_GO QUEUED;
            expect_bytes(what, (const char *)out.data, out.len, want, strlen(want));
            const char *ev = "check(bob@local.test);begin(sender@remote.example,1);"
                             "end(6,bob@local.test);";
            expect_bytes(what, (const char *)rec.events.data, rec.events.len, ev, strlen(ev));
            assert_int_equal(rec.live, 0);
            smtp_session_free(s);
            smtp_relay_policy_free(&fx.policy);
            buf_free(&out);
            buf_free(&rec.events);
            buf_free(&rec.message);
        }
}

/* 100 recipients are taken (RFC 5321 4.5.3.1.8), the 101st gets 452 4.5.3 and is no error. */
static void test_recipient_limit(void **state)
{
    (void)state;
    struct fx fx;
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    smtp_session *s = new_session(&fx, &rec);
    buf out = BUF_INIT, want = BUF_INIT;
    feed(s, S(EHLO MAIL), &out);
    out.len = 0;
    for (int i = 0; i < SMTP_RCPT_DEFAULT + 3; i++) {
        char line[64];
        int n = snprintf(line, sizeof line, "RCPT TO:<u%d@local.test>\r\n", i);
        feed(s, line, (size_t)n, &out);
        buf_adds(&want, i < SMTP_RCPT_DEFAULT ? RCPT_OK : "452 4.5.3 Too many recipients\r\n");
    }
    feed(s, S("DATA\r\n.\r\n"), &out);
    buf_adds(&want, DATA_GO);
    expect_bytes("recipient limit", (const char *)out.data, out.len, (const char *)want.data,
                 want.len);
    assert_true(smtp_session_committing(s));
    assert_int_equal(smtp_session_data_done(s, true, NULL), 0);
    size_t len;
    const char *o = smtp_session_output(s, &len);
    expect_bytes("queued", o, len, S("250 2.6.0 Message accepted for delivery\r\n"));
    smtp_session_stats st;
    smtp_session_stats_get(s, &st);
    assert_int_equal(st.errors, 0);
    assert_int_equal(st.messages, 1);
    /* No commit pending any more. */
    assert_int_equal(smtp_session_data_done(s, true, NULL), ERROR_INVALID_PARAMETER);
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&want);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

/* Over-long command lines: answered once at their end, never kept beyond max_line,
 * resynchronised at the next LF; a line of exactly max_line (CRLF included) is fine. */
static void test_long_lines(void **state)
{
    (void)state;
    struct fx fx;
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    smtp_session *s = new_session(&fx, &rec);
    buf out = BUF_INIT;
    static char big[1 << 20];
    memset(big, 'A', sizeof big);
    /* A megabyte without a line end is consumed (the session keeps at most max_line). */
    feed(s, big, sizeof big, &out);
    feed(s, big, sizeof big, &out);
    assert_int_equal(out.len, 0);
    feed(s, S("\r\nNOOP\r\n"), &out);
    expect_bytes("long command", (const char *)out.data, out.len,
                 S("500 5.5.2 Line too long\r\n" OK));
    out.len = 0;
    /* "NOOP " + 993 characters + CRLF = 1000: fine; one more is too long. */
    char line[1100];
    memcpy(line, "NOOP ", 5);
    memset(line + 5, 'x', 993);
    memcpy(line + 998, "\r\n", 2);
    feed(s, line, 1000, &out);
    memset(line + 5, 'x', 994);
    memcpy(line + 999, "\r\n", 2);
    feed(s, line, 1001, &out);
    expect_bytes("limit", (const char *)out.data, out.len, S(OK "500 5.5.2 Line too long\r\n"));
    /* So is a MAIL command over max_line: refused, and no transaction starts. */
    out.len = 0;
    feed(s, S(EHLO), &out);
    out.len = 0;
    buf mail = BUF_INIT;
    buf_printf(&mail, "MAIL FROM:<sender@remote.example> ENVID=");
    while (mail.len < 1100)
        buf_add(&mail, "x", 1);
    buf_add(&mail, "\r\n" RCPT, 2 + strlen(RCPT));
    feed(s, (const char *)mail.data, mail.len, &out);
    expect_bytes("long MAIL", (const char *)out.data, out.len,
                 S("500 5.5.2 Line too long\r\n"
                   "503 5.5.1 Need MAIL before RCPT\r\n"));
    buf_free(&mail);
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

/* long_line - n octets of a data line, CRLF included: printable text that shows where a byte
 * went astray, "." first when `dot` (sent stuffed: one more octet on the wire). */
static void long_line(buf *wire, buf *want, size_t n, bool dot)
{
    if (dot)
        buf_add(wire, ".", 1);
    for (size_t i = 0; i + 2 < n; i++) {
        char c = dot && i == 0 ? '.' : (char)('a' + i % 26);
        buf_add(wire, &c, 1);
        buf_add(want, &c, 1);
    }
    buf_add(wire, "\r\n", 2);
    buf_add(want, "\r\n", 2);
}

/* Lines of message data have no length limit (max_line is for commands): lines of 4096 and
 * 100000 octets are accepted and reach data_chunk byte for byte, fed at once or in pieces. */
static void test_long_data_lines(void **state)
{
    (void)state;
    static const size_t pieces[] = {0, 1000, 4096, 65536};
    for (size_t k = 0; k < N(pieces); k++) {
        struct fx fx;
        struct rec rec = {BUF_INIT, BUF_INIT, false, false};
        smtp_session *s = new_session(&fx, &rec);
        buf out = BUF_INIT, wire = BUF_INIT, want = BUF_INIT;
        buf_printf(&want, "Subject: long\r\n\r\n");
        buf_add(&wire, want.data, want.len);
        long_line(&wire, &want, 4096, false);
        long_line(&wire, &want, 100000, false);
        long_line(&wire, &want, 5000, true);
        buf_add(&wire, S("end\r\n.\r\n"));
        buf_add(&want, S("end\r\n"));
        feed(s, S(EHLO MAIL RCPT "DATA\r\n"), &out);
        out.len = 0;
        size_t step = pieces[k] ? pieces[k] : wire.len;
        for (size_t off = 0; off < wire.len; off += step)
            feed(s, (const char *)wire.data + off, wire.len - off < step ? wire.len - off : step,
                 &out);
        assert_true(smtp_session_committing(s));
        assert_int_equal(smtp_session_data_done(s, true, "Q1"), 0);
        feed(s, S("QUIT\r\n"), &out);
        char what[64];
        snprintf(what, sizeof what, "replies (pieces of %zu)", pieces[k]);
        expect_bytes(what, (const char *)out.data, out.len, S(QUEUED BYE));
        snprintf(what, sizeof what, "message (pieces of %zu)", pieces[k]);
        if (rec.message.len != want.len || memcmp(rec.message.data, want.data, want.len))
            fail_msg("%s: got %zu bytes, want %zu (first difference at %zu)", what, rec.message.len,
                     want.len, (size_t)(rec.message.len < want.len ? rec.message.len : want.len));
        smtp_session_free(s);
        smtp_relay_policy_free(&fx.policy);
        buf_free(&out);
        buf_free(&wire);
        buf_free(&want);
        buf_free(&rec.events);
        buf_free(&rec.message);
    }
}

/* A 10 MB line is streamed: data_chunk has nearly all of it before the line ends, so the
 * session never holds the line whole; max_size still bounds a long line (552 at the end). */
static void test_huge_data_line(void **state)
{
    (void)state;
    struct fx fx;
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    smtp_session *s = new_session(&fx, &rec);
    buf out = BUF_INIT;
    feed(s, S(EHLO MAIL RCPT "DATA\r\n"), &out);
    out.len = 0;
    static char piece[65536];
    memset(piece, 'h', sizeof piece);
    const size_t total = 10u << 20;
    for (size_t off = 0; off < total; off += sizeof piece)
        feed(s, piece, sizeof piece, &out);
    if (rec.message.len + 65536 < total)
        fail_msg("data_chunk got %zu of %zu bytes before the line ended: the line is buffered",
                 rec.message.len, total);
    feed(s, S("\r\n.\r\n"), &out);
    assert_true(smtp_session_committing(s));
    assert_int_equal(smtp_session_data_done(s, true, "Q1"), 0);
    feed(s, "", 0, &out); /* collects the 250 */
    expect_bytes("10 MB line", (const char *)out.data, out.len, S(QUEUED));
    assert_int_equal(rec.message.len, total + 2);
    for (size_t i = 0; i < total; i++)
        if (rec.message.data[i] != 'h')
            fail_msg("byte %zu changed", i);
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);

    /* With max_size 100000, a 200000-octet line refuses the message at its end. */
    fx_setup(&fx, CFG_DEFAULT);
    fx.cfg.max_size = 100000;
    smtp_callbacks cb = {&rec,        cb_rcpt_check,  cb_data_begin, cb_data_chunk,
                         cb_data_end, cb_data_abort,  NULL,          NULL,
                         NULL,        cb_rcpt_release};
    rec = (struct rec){BUF_INIT, BUF_INIT, false, false};
    assert_int_equal(smtp_session_new(&fx.cfg, &cb, &fx.client, &fx.local, &s), 0);
    smtp_session_output_drain(s, SIZE_MAX);
    feed(s, S(EHLO MAIL RCPT "DATA\r\n"), &out);
    out.len = 0;
    for (int i = 0; i < 3; i++)
        feed(s, piece, sizeof piece, &out);
    feed(s, S("\r\n.\r\n"), &out);
    expect_bytes("over max_size", (const char *)out.data, out.len,
                 S("552 5.3.4 Message size exceeds fixed maximum message size\r\n"));
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

/* A client that pipelines without reading stops being read once SMTP_OUTPUT_MAX bytes of
 * replies wait; draining them lets it go on. */
static void test_output_bound(void **state)
{
    (void)state;
    struct fx fx;
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    smtp_session *s = new_session(&fx, &rec);
    size_t n = 100000 * 6;
    char *in = malloc(n);
    for (size_t i = 0; i < n; i += 6)
        memcpy(in + i, "NOOP\r\n", 6);
    size_t used, len, total = 0, replies = 0;
    while (total < n) {
        assert_int_equal(smtp_session_input(s, in + total, n - total, &used), 0);
        smtp_session_output(s, &len);
        assert_true(len <= SMTP_OUTPUT_MAX + 512);
        if (total + used < n)
            assert_true(len >= SMTP_OUTPUT_MAX);
        total += used;
        replies += len;
        smtp_session_output_drain(s, len);
    }
    assert_int_equal(replies, 100000 * strlen(OK));
    free(in);
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
}

/* Freeing a session during DATA drops the message; shutdown and timeout answer 421. */
static void test_session_end(void **state)
{
    (void)state;
    struct fx fx;
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    buf out = BUF_INIT;
    smtp_session *s = new_session(&fx, &rec);
    feed(s, S(EHLO MAIL RCPT "DATA\r\npartial"), &out);
    assert_string_equal(smtp_session_state_name(s), "data");
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    assert_non_null(strstr(buf_cstr(&rec.events), "abort;"));

    rec.events.len = 0;
    out.len = 0;
    s = new_session(&fx, &rec);
    feed(s, S(EHLO MAIL RCPT "DATA\r\npartial"), &out);
    out.len = 0;
    assert_int_equal(smtp_session_shutdown(s), 0);
    size_t len;
    const char *o = smtp_session_output(s, &len);
    expect_bytes("shutdown", o, len,
                 S("421 4.3.2 " HOST " Service shutting down, closing transmission channel\r\n"));
    assert_true(smtp_session_want_close(s));
    assert_non_null(strstr(buf_cstr(&rec.events), "abort;"));
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    assert_int_equal(strstr(buf_cstr(&rec.events), "abort;abort;"), NULL); /* only once */

    s = new_session(&fx, &rec);
    assert_int_equal(smtp_session_timeout(s), 0);
    o = smtp_session_output(s, &len);
    expect_bytes("timeout", o, len,
                 S("421 4.4.2 " HOST " Timeout, closing transmission channel\r\n"));
    size_t used = 99;
    assert_int_equal(smtp_session_input(s, S("NOOP\r\n"), &used), 0);
    assert_int_equal(used, 0);
    assert_string_equal(smtp_session_state_name(s), "quit");
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    smtp_session_free(NULL);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

/* The session's statistics: bare LFs, smuggling attempts, messages and bytes. */
static void test_stats(void **state)
{
    (void)state;
    struct fx fx;
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    buf out = BUF_INIT;
    smtp_session *s = new_session(&fx, &rec);
    feed(s, S(EHLO "NOOP\n" MAIL RCPT "DATA\r\na\n.\nb\r\n.\r\n"), &out);
    feed(s, S(MAIL RCPT "RCPT TO:<x@remote.example>\r\nDATA\r\nhello\r\n.\r\n"), &out);
    assert_true(smtp_session_committing(s));
    assert_int_equal(smtp_session_data_done(s, true, NULL), 0);
    smtp_session_stats st;
    smtp_session_stats_get(s, &st);
    assert_int_equal(st.bare_lf, 3);
    assert_int_equal(st.smuggling, 1);
    assert_int_equal(st.messages, 1);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.relay_denied, 1);
    assert_int_equal(st.errors, 2); /* the bare-LF NOOP and the relay attempt */
    assert_true(st.bytes ==
                4 + 7); /* "a", "b" CRLF (bare LFs are no message bytes), "hello" CRLF */
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

/* data_end may commit at once, calling smtp_session_data_done from inside the callback; the
 * session then goes on with the pipelined commands in the same input call. */
struct sync_rec {
    smtp_session *s;
    unsigned ends;
    uint64_t sizes[4];
};

static void sync_end(void *arg, const smtp_envelope *env)
{
    struct sync_rec *r = arg;
    if (r->ends < 4)
        r->sizes[r->ends] = env->size;
    r->ends++;
    assert_int_equal(smtp_session_data_done(r->s, true, NULL), 0);
}

static int sync_begin(void *arg, const smtp_envelope *env)
{
    (void)arg;
    assert_true(env->size == 0);
    return 0;
}

static void test_sync_commit(void **state)
{
    (void)state;
    struct fx fx;
    fx_setup(&fx, CFG_DEFAULT);
    struct sync_rec r = {0};
    smtp_callbacks cb = {&r, NULL, sync_begin, NULL, sync_end, NULL};
    assert_int_equal(smtp_session_new(&fx.cfg, &cb, &fx.client, &fx.local, &r.s), 0);
    buf out = BUF_INIT;
    feed(r.s, S(EHLO MAIL RCPT "DATA\r\nabc\r\n.\r\n" MAIL RCPT "DATA\r\n.\r\nQUIT\r\n"), &out);
    assert_int_equal(r.ends, 2);
    assert_true(r.sizes[0] == 5 && r.sizes[1] == 0);
    const char want[] = GREET EHLO_OK MAIL_OK RCPT_OK DATA_GO
        "250 2.6.0 Message accepted for delivery\r\n" MAIL_OK RCPT_OK DATA_GO
        "250 2.6.0 Message accepted for delivery\r\n" BYE;
    expect_bytes("sync commit", (const char *)out.data, out.len, S(want));
    smtp_session_free(r.s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
}

/* The trace callback sees every command line in order and every reply byte exactly once, in
 * the order they are sent: the concatenated replies equal the output. */
struct trace_fx {
    struct rec rec; /* first: the shared callbacks take the same pointer as a struct rec */
    buf commands;   /* each line + "|" */
    buf replies;    /* the reply bytes */
};

static void cb_trace(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    struct trace_fx *t = arg;
    if (kind == SMTP_TRACE_COMMAND) {
        buf_add(&t->commands, p, n);
        buf_add(&t->commands, "|", 1);
    } else {
        buf_add(&t->replies, p, n);
    }
}

static void test_trace(void **state)
{
    (void)state;
    struct trace_fx both = {{BUF_INIT, BUF_INIT, false, false}, BUF_INIT, BUF_INIT};
    struct trace_fx *tr = &both;
    struct fx fx;
    fx_setup(&fx, CFG_DEFAULT);
    smtp_callbacks cb = {&both,       cb_rcpt_check,  cb_data_begin, cb_data_chunk,
                         cb_data_end, cb_data_abort,  cb_trace,      NULL,
                         NULL,        cb_rcpt_release};
    smtp_session *s;
    assert_int_equal(smtp_session_new(&fx.cfg, &cb, &fx.client, &fx.local, &s), 0);
    buf out = BUF_INIT;
    size_t len;
    const char *o = smtp_session_output(s, &len);
    buf_add(&out, o, len);
    smtp_session_output_drain(s, len);
    assert_false(smtp_session_reading_data(s));
    /* A message refused at its end (bare LF), then one committed later, then a timeout. */
    feed(s, S(EHLO "FOO\r\n" MAIL RCPT "DATA\r\nbad\nline\r\n.\r\n" MAIL RCPT "DATA\r\n"), &out);
    assert_true(smtp_session_reading_data(s));
    feed(s, S("ok\r\n.\r\n"), &out);
    assert_false(smtp_session_reading_data(s));
    assert_true(smtp_session_committing(s));
    assert_int_equal(smtp_session_data_done(s, true, "Q1"), 0);
    assert_int_equal(smtp_session_timeout(s), 0);
    o = smtp_session_output(s, &len);
    buf_add(&out, o, len);
    smtp_session_output_drain(s, len);
    expect_bytes("every reply traced once", (const char *)tr->replies.data, tr->replies.len,
                 (const char *)out.data, out.len);
    const char want_cmds[] = "EHLO client.example|FOO|MAIL FROM:<sender@remote.example>|"
                             "RCPT TO:<user@local.test>|DATA|MAIL FROM:<sender@remote.example>|"
                             "RCPT TO:<user@local.test>|DATA|";
    expect_bytes("commands traced", (const char *)tr->commands.data, tr->commands.len,
                 S(want_cmds));
    assert_non_null(strstr(buf_cstr(&tr->replies), "550 5.6.0"));
    assert_non_null(strstr(buf_cstr(&tr->replies), QUEUED));
    assert_non_null(strstr(buf_cstr(&tr->replies), "421 4.4.2"));
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&tr->commands);
    buf_free(&tr->replies);
    buf_free(&both.rec.events);
    buf_free(&both.rec.message);

    /* The reply to a connection over the limit, as imsd sends it. */
    buf b = BUF_INIT;
    assert_int_equal(smtp_reply_append(&b, SMTP_R_TOO_MANY_CONN, true, HOST), 0);
    expect_bytes("too many connections", (const char *)b.data, b.len,
                 S("421 4.3.2 " HOST " Too many connections, try again later\r\n"));
    buf_free(&b);
}

/* mail_check refuses a transaction with 452 4.3.1 (flush mode) or 451, is asked at each MAIL,
 * and leaves the session able to try again. */
static unsigned flush_answer;

static unsigned cb_mail_check(void *arg, const smtp_path *from)
{
    struct rec *r = arg;
    buf_printf(&r->events, "mail_check(%s);", from->mailbox);
    return flush_answer;
}

static void test_mail_check(void **state)
{
    (void)state;
    struct fx fx;
    fx_setup(&fx, CFG_DEFAULT);
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    smtp_callbacks cb = {&rec,        cb_rcpt_check,  cb_data_begin, cb_data_chunk,
                         cb_data_end, cb_data_abort,  NULL,          cb_mail_check,
                         NULL,        cb_rcpt_release};
    smtp_session *s;
    assert_int_equal(smtp_session_new(&fx.cfg, &cb, &fx.client, &fx.local, &s), 0);
    smtp_session_output_drain(s, SIZE_MAX);
    buf out = BUF_INIT;
    flush_answer = 452;
    feed(s, S(EHLO MAIL RCPT), &out);
    flush_answer = 0; /* a broken check: temporary */
    feed(s, S(MAIL), &out);
    flush_answer = 450; /* a per-client rate */
    feed(s, S(MAIL), &out);
    flush_answer = 250;
    feed(s, S(MAIL RCPT "QUIT\r\n"), &out);
    const char want[] =
        "250-" HOST " Hello [192.0.2.10]\r\n250-SIZE\r\n250-PIPELINING\r\n"
        "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
        "452 4.3.1 Insufficient system storage\r\n"
        "503 5.5.1 Need MAIL before RCPT\r\n"
        "451 4.3.0 Requested action aborted: local error in processing\r\n"
        "450 4.7.0 Too many messages from your address, try again later\r\n" MAIL_OK RCPT_OK BYE;
    expect_bytes("mail_check", (const char *)out.data, out.len, S(want));
    assert_string_equal(buf_cstr(&rec.events),
                        "mail_check(sender@remote.example);mail_check(sender@remote.example);"
                        "mail_check(sender@remote.example);"
                        "mail_check(sender@remote.example);check(user@local.test);");
    smtp_session_stats st;
    smtp_session_stats_get(s, &st);
    assert_int_equal(st.errors, 1); /* the RCPT without MAIL, not the refusals */
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

/* relay_denied is told of each recipient refused with 550 5.7.1, with the trick if any. */
static void cb_relay_denied(void *arg, const smtp_path *rcpt, smtp_refusal why)
{
    struct rec *r = arg;
    buf_printf(&r->events, "denied(%s,%s);", rcpt->mailbox,
               why == SMTP_REFUSE_NONE ? "policy" : smtp_refusal_name(why));
}

static void test_relay_denied_callback(void **state)
{
    (void)state;
    struct fx fx;
    fx_setup(&fx, CFG_DEFAULT);
    struct rec rec = {BUF_INIT, BUF_INIT, false, false};
    smtp_callbacks cb = {
        &rec,          cb_rcpt_check, cb_data_begin, cb_data_chunk,   cb_data_end,
        cb_data_abort, NULL,          NULL,          cb_relay_denied, cb_rcpt_release};
    smtp_session *s;
    assert_int_equal(smtp_session_new(&fx.cfg, &cb, &fx.client, &fx.local, &s), 0);
    smtp_session_output_drain(s, SIZE_MAX);
    assert_string_equal(smtp_session_helo(s), "");
    buf out = BUF_INIT;
    feed(s,
         S(EHLO MAIL "RCPT TO:<x@remote.example>\r\nRCPT TO:<a%b@local.test>\r\n"
                     "RCPT TO:<user@local.test>\r\n"),
         &out);
    assert_string_equal(smtp_session_helo(s), "client.example");
    char want[256];
    snprintf(want, sizeof want,
             "denied(x@remote.example,policy);denied(a%%b@local.test,%s);"
             "check(user@local.test);",
             smtp_refusal_name(SMTP_REFUSE_PERCENT));
    assert_string_equal(buf_cstr(&rec.events), want);
    smtp_session_free(s);
    smtp_relay_policy_free(&fx.policy);
    buf_free(&out);
    buf_free(&rec.events);
    buf_free(&rec.message);
}

static void test_config(void **state)
{
    (void)state;
    smtp_config c;
    smtp_config_defaults(&c);
    assert_int_equal(smtp_config_check(&c), ERROR_INVALID_PARAMETER); /* no fqdn */
    c.fqdn = HOST;
    assert_int_equal(smtp_config_check(&c), ERROR_INVALID_PARAMETER); /* no is_local */
    c.is_local = local_domain;
    assert_int_equal(smtp_config_check(&c), ERROR_SUCCESS);
    static const struct {
        unsigned rcpt, errors;
        size_t line;
        int want;
    } rows[] = {
        {0, 0, 0, ERROR_SUCCESS},
        {SMTP_RCPT_MIN, SMTP_ERRORS_MIN, SMTP_LINE_MIN, ERROR_SUCCESS},
        {SMTP_RCPT_LIMIT, SMTP_ERRORS_LIMIT, SMTP_LINE_LIMIT, ERROR_SUCCESS},
        {SMTP_RCPT_MIN - 1, 0, 0, ERROR_INVALID_PARAMETER},
        {SMTP_RCPT_LIMIT + 1, 0, 0, ERROR_INVALID_PARAMETER},
        {0, SMTP_ERRORS_LIMIT + 1, 0, ERROR_INVALID_PARAMETER},
        {0, 0, SMTP_LINE_MIN - 1, ERROR_INVALID_PARAMETER},
        {0, 0, SMTP_LINE_LIMIT + 1, ERROR_INVALID_PARAMETER},
    };
    for (size_t i = 0; i < N(rows); i++) {
        c.max_recipients = rows[i].rcpt;
        c.max_errors = rows[i].errors;
        c.max_line = rows[i].line;
        if (smtp_config_check(&c) != rows[i].want)
            fail_msg("row %zu: got %d want %d", i, smtp_config_check(&c), rows[i].want);
    }
    smtp_session *s = (smtp_session *)&c;
    c.max_line = 1;
    assert_int_equal(smtp_session_new(&c, NULL, NULL, NULL, &s), ERROR_INVALID_PARAMETER);
    assert_null(s);
    /* Control characters in our own name never reach the wire. */
    smtp_config_defaults(&c);
    c.fqdn = "evil\r\n250 fake";
    c.is_local = local_domain;
    assert_int_equal(smtp_session_new(&c, NULL, NULL, NULL, &s), 0);
    size_t len;
    const char *o = smtp_session_output(s, &len);
    expect_bytes("clean greeting", o, len,
                 S("220 evil??250 fake ESMTP Server (IMS Internet Mail Service) Ready\r\n"));
    smtp_session_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_command),
        cmocka_unit_test(test_parse_params),
        cmocka_unit_test(test_parse_path),
        cmocka_unit_test(test_path_limits),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_domain_match),
        cmocka_unit_test(test_ip),
        cmocka_unit_test(test_relay_list),
        cmocka_unit_test(test_relay_policy),
        cmocka_unit_test(test_replies),
        cmocka_unit_test(test_transcripts),
        cmocka_unit_test(test_recipient_limit),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_long_data_lines),
        cmocka_unit_test(test_huge_data_line),
        cmocka_unit_test(test_output_bound),
        cmocka_unit_test(test_session_end),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_sync_commit),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_trace),
        cmocka_unit_test(test_reset_every_state),
        cmocka_unit_test(test_notify_text),
        cmocka_unit_test(test_mail_check),
        cmocka_unit_test(test_relay_denied_callback),
    };
    return cmocka_run_group_tests_name("smtp", tests, NULL, NULL);
}
