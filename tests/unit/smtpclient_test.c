/* smtpclient_test.c - unit tests of lib/smtp's client side: the reply parser, and whole
 * conversations as scripts (the peer's replies in, the exact bytes we send and every
 * recipient's result out), fed a turn at once, byte by byte and in odd pieces. */
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

/* --- the reply parser --------------------------------------------------------------------- */

static void test_reply_parse(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        smtp_reply_status st;
        unsigned code;
        const char *enh, *text;
        size_t nlines, used;
    } cases[] = {
        {S("250 OK\r\n"), SMTP_REPLY_DONE, 250, "", "OK", 1, 8},
        {S("250 2.1.5 Recipient OK\r\nrest"), SMTP_REPLY_DONE, 250, "2.1.5", "Recipient OK", 1, 24},
        {S("250\r\n"), SMTP_REPLY_DONE, 250, "", "", 1, 5},
        {S("250-mx.example\r\n250-SIZE 100\r\n250 DSN\r\n"), SMTP_REPLY_DONE, 250, "",
         "mx.example SIZE 100 DSN", 3, 39},
        {S("550-5.1.1 The user\r\n550-5.1.1 does not\r\n550 5.1.1 exist\r\n"), SMTP_REPLY_DONE, 550,
         "5.1.1", "The user does not exist", 3, 57},
        {S("250 ok\n"), SMTP_REPLY_DONE, 250, "", "ok", 1, 7}, /* bare LF: a line end */
        {S("250-a\n250 b\r\n"), SMTP_REPLY_DONE, 250, "", "a b", 2, 13},
        {S("554 5.7.1\r\n"), SMTP_REPLY_DONE, 554, "5.7.1", "", 1, 11},
        {S("450 5.7.1 class differs\r\n"), SMTP_REPLY_DONE, 450, "", "5.7.1 class differs", 1, 25},
        {S("550 5.1.1x no\r\n"), SMTP_REPLY_DONE, 550, "", "5.1.1x no", 1, 15},
        {S("550 5.1234.1 no\r\n"), SMTP_REPLY_DONE, 550, "", "5.1234.1 no", 1, 17},
        {S("421 4.4.2 bye\x1b[2J\rnow\r\n"), SMTP_REPLY_DONE, 421, "4.4.2", "bye?[2J?now", 1, 23},
        {S("250 caf\xc3\xa9\r\n"), SMTP_REPLY_DONE, 250, "", "caf??", 1, 11},
        {S("250 OK"), SMTP_REPLY_MORE, 0, "", "", 0, 0},
        {S("250-one\r\n250-two\r\n"), SMTP_REPLY_MORE, 0, "", "", 0, 0},
        {S(""), SMTP_REPLY_MORE, 0, "", "", 0, 0},
        {S("25x OK\r\n"), SMTP_REPLY_BAD_CODE, 0, "", "", 0, 0},
        {S("OK\r\n"), SMTP_REPLY_BAD_CODE, 0, "", "", 0, 0},
        {S("\r\n"), SMTP_REPLY_BAD_CODE, 0, "", "", 0, 0},
        {S("199 x\r\n"), SMTP_REPLY_RANGE, 0, "", "", 0, 0},
        {S("600 x\r\n"), SMTP_REPLY_RANGE, 0, "", "", 0, 0},
        {S("2500 x\r\n"), SMTP_REPLY_BAD_SEP, 0, "", "", 0, 0},
        {S("250-a\r\n251 b\r\n"), SMTP_REPLY_MIXED, 0, "", "", 0, 0},
        {S("250-a\r\n550 b\r\n"), SMTP_REPLY_MIXED, 0, "", "", 0, 0},
        {S("250 a\0b\r\n"), SMTP_REPLY_NUL, 0, "", "", 0, 0},
        {S("250 a\0b"), SMTP_REPLY_NUL, 0, "", "", 0, 0},
    };
    for (size_t i = 0; i < N(cases); i++) {
        smtp_reply r;
        smtp_reply_status st = smtp_reply_parse(cases[i].in, cases[i].len, &r);
        char e[256];
        expect_esc(cases[i].in, cases[i].len, e, sizeof e);
        if (st != cases[i].st)
            fail_msg("\"%s\": got %s, want %s", e, smtp_reply_status_name(st),
                     smtp_reply_status_name(cases[i].st));
        if (r.code != cases[i].code || strcmp(r.enh, cases[i].enh) ||
            strcmp(r.text, cases[i].text) || r.nlines != cases[i].nlines || r.used != cases[i].used)
            fail_msg("\"%s\": got %u \"%s\" \"%s\" %zu lines used %zu, want %u \"%s\" \"%s\" %zu "
                     "used %zu",
                     e, r.code, r.enh, r.text, r.nlines, r.used, cases[i].code, cases[i].enh,
                     cases[i].text, cases[i].nlines, cases[i].used);
    }
    /* Each line's raw text, within the input. */
    const char in[] = "250-first\r\n250 second\r\n";
    smtp_reply r;
    assert_int_equal(smtp_reply_parse(in, sizeof in - 1, &r), SMTP_REPLY_DONE);
    assert_int_equal(r.line[0].off, 4);
    assert_int_equal(r.line[0].len, 5);
    assert_int_equal(r.line[1].off, 15);
    assert_int_equal(r.line[1].len, 6);
}

static void test_reply_limits(void **state)
{
    (void)state;
    static char big[SMTP_REPLY_LINES_MAX * 16 + SMTP_REPLY_LINE_MAX * 2];
    smtp_reply r;
    /* A line of exactly SMTP_REPLY_LINE_MAX with its CRLF, and one byte more. */
    memset(big, 'x', sizeof big);
    memcpy(big, "250 ", 4);
    memcpy(big + SMTP_REPLY_LINE_MAX - 2, "\r\n", 2);
    assert_int_equal(smtp_reply_parse(big, SMTP_REPLY_LINE_MAX, &r), SMTP_REPLY_DONE);
    assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX); /* cut */
    memset(big, 'x', sizeof big);
    memcpy(big, "250 ", 4);
    memcpy(big + SMTP_REPLY_LINE_MAX - 1, "\r\n", 2);
    assert_int_equal(smtp_reply_parse(big, SMTP_REPLY_LINE_MAX + 1, &r), SMTP_REPLY_TOO_LONG);
    /* No line end yet: MORE up to the limit, TOO_LONG past it. */
    assert_int_equal(smtp_reply_parse(big, SMTP_REPLY_LINE_MAX - 1, &r), SMTP_REPLY_MORE);
    assert_int_equal(smtp_reply_parse(big, SMTP_REPLY_LINE_MAX, &r), SMTP_REPLY_TOO_LONG);
    /* SMTP_REPLY_LINES_MAX lines, then one more. */
    size_t o = 0;
    for (size_t i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
        o += (size_t)snprintf(big + o, sizeof big - o, "250-l\r\n");
    o += (size_t)snprintf(big + o, sizeof big - o, "250 end\r\n");
    assert_int_equal(smtp_reply_parse(big, o, &r), SMTP_REPLY_DONE);
    assert_int_equal(r.nlines, SMTP_REPLY_LINES_MAX);
    big[o - 6] = '-';
    o += (size_t)snprintf(big + o, sizeof big - o, "250 more\r\n");
    assert_int_equal(smtp_reply_parse(big, o, &r), SMTP_REPLY_TOO_MANY);
}

/* --- conversations ------------------------------------------------------------------------ */

struct tmsg {
    const char *from;
    smtp_client_rcpt rcpt[4];
    size_t nrcpt;
    const char *data;
    size_t data_len; /* 0: strlen(data) */
    bool eightbit;
    smtp_ret ret;
    const char *envid;
    uint64_t size; /* 0: the data's length */
};

/* A script: the peer's turns separated by '|' (each is what it sends after reading what we
 * sent so far); the messages submitted one after another; what we must have sent, and the
 * results ("R<i>:<D|T|P>:<stage>:<code>:<enh>:<text>" and "M" per message, one a line). */
struct tcase {
    const char *name;
    const char *peer;
    const char *out;
    const char *events;
    struct tmsg msg[2];
    size_t nmsg;
    bool quit;       /* QUIT once every message is done */
    int end;         /* after the last turn: 0 nothing, 'e' eof, 't' timeout */
    bool want_close; /* at the end */
    smtp_tls_policy tls;
    bool tls_fail;           /* the handshake fails */
    const char *user, *pass; /* AUTH credentials */
    bool tls_hang;           /* the handshake never ends (tls_done is not called) */
};

struct run {
    buf events;
    buf out;
    const struct tmsg *tm[2];
    smtp_client_msg m[2];
    size_t off[2];
    size_t read_step;
    size_t done;
};

static const char *outcome_letter(smtp_outcome o)
{
    return o == SMTP_DELIVERED ? "D" : o == SMTP_TRANSIENT ? "T" : "P";
}

static void cb_rcpt_done(void *arg, const smtp_client_msg *m, size_t i, const smtp_result *r)
{
    struct run *run = arg;
    (void)m;
    assert_true(r->local == (r->code == 0));
    buf_printf(&run->events, "R%zu:%s:%s:%u:%s:%s\n", i, outcome_letter(r->outcome),
               smtp_stage_name(r->stage), r->code, r->enh, r->text);
}

static void cb_msg_done(void *arg, const smtp_client_msg *m)
{
    struct run *run = arg;
    (void)m;
    run->done++;
    buf_printf(&run->events, "M\n");
}

struct reader {
    struct run *run;
    size_t k; /* which message */
};

static int cb_read(void *arg, char *p, size_t cap, size_t *got)
{
    struct reader *rd = arg;
    struct run *run = rd->run;
    size_t k = rd->k;
    const struct tmsg *t = run->tm[k];
    size_t len = t->data_len ? t->data_len : strlen(t->data);
    if (!strcmp(t->data, "<read error>"))
        return -1;
    size_t n = len - run->off[k];
    if (n > cap)
        n = cap;
    if (n > run->read_step)
        n = run->read_step;
    memcpy(p, t->data + run->off[k], n);
    run->off[k] += n;
    *got = n;
    return 0;
}

static void drain(smtp_client *c, buf *out)
{
    for (;;) {
        size_t len;
        const char *o = smtp_client_output(c, &len);
        if (!len)
            return;
        buf_add(out, o, len);
        smtp_client_output_drain(c, len);
    }
}

static void run_case(const struct tcase *tc, size_t in_step, size_t read_step)
{
    struct run run = {BUF_INIT, BUF_INIT, {NULL, NULL}, {{0}}, {0, 0}, read_step, 0};
    struct reader read_arg[2] = {{&run, 0}, {&run, 1}};
    smtp_client_config cfg = {"client.test", 0, tc->tls, tc->user, tc->pass};
    smtp_client_callbacks cb = {&run, cb_rcpt_done, cb_msg_done, NULL};
    smtp_client *c;
    assert_int_equal(smtp_client_new(&cfg, &cb, &c), 0);
    for (size_t k = 0; k < tc->nmsg; k++) {
        const struct tmsg *t = &tc->msg[k];
        run.tm[k] = t;
        run.m[k] = (smtp_client_msg){t->from, t->rcpt,  t->nrcpt, t->size,     t->eightbit,
                                     t->ret,  t->envid, cb_read,  &read_arg[k]};
        if (!t->size)
            run.m[k].size = t->data_len ? t->data_len : strlen(t->data);
    }
    size_t next = 0;
    const char *p = tc->peer;
    for (;;) {
        if (next < tc->nmsg && run.done == next && smtp_client_ready(c)) {
            assert_int_equal(smtp_client_send(c, &run.m[next]), 0);
            next++;
        }
        if (tc->quit && run.done == tc->nmsg && smtp_client_ready(c))
            smtp_client_quit(c);
        drain(c, &run.out);
        if (!*p)
            break;
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        for (size_t i = 0; i < n; i += in_step) {
            size_t k = n - i < in_step ? n - i : in_step;
            assert_int_equal(smtp_client_input(c, p + i, k), 0);
        }
        p += n + (bar ? 1 : 0);
        /* The caller's handshake, once the turn is read (the rest of it is discarded). */
        if (smtp_client_tls_wanted(c) && !tc->tls_hang) {
            assert_int_equal(smtp_client_timeout_secs(c), SMTP_TIMEOUT_TLS);
            buf_printf(&run.events, "TLS\n");
            smtp_client_tls_done(c, !tc->tls_fail, "certificate verify failed");
            assert_false(smtp_client_tls_wanted(c));
            assert_true(smtp_client_tls_active(c) == !tc->tls_fail);
        }
    }
    if (tc->end == 'e')
        smtp_client_eof(c);
    else if (tc->end == 't')
        smtp_client_timeout(c);
    drain(c, &run.out);
    char what[200];
    snprintf(what, sizeof what, "%s (input %zu, read %zu): sent", tc->name, in_step, read_step);
    expect_bytes(what, (const char *)run.out.data, run.out.len, tc->out, strlen(tc->out));
    snprintf(what, sizeof what, "%s (input %zu, read %zu): results", tc->name, in_step, read_step);
    expect_bytes(what, (const char *)run.events.data, run.events.len, tc->events,
                 strlen(tc->events));
    if (smtp_client_want_close(c) != tc->want_close)
        fail_msg("%s: want_close got %d want %d", tc->name, smtp_client_want_close(c),
                 tc->want_close);
    smtp_client_free(c);
    buf_free(&run.out);
    buf_free(&run.events);
}

#define GREET "220 mx.example ESMTP ready\r\n"
#define EHLO "EHLO client.test\r\n"
#define EXT_PIPE                                                                                   \
    "250-mx.example hello\r\n250-SIZE 10000\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-DSN\r\n"      \
    "250 ENHANCEDSTATUSCODES\r\n"
#define EXT_PLAIN "250-mx.example hello\r\n250-SIZE\r\n250 8BITMIME\r\n"
#define EXT_7BIT "250-mx.example hello\r\n250 SIZE 0\r\n"
#define MAIL_OK "250 2.1.0 ok\r\n"
#define RCPT_OK "250 2.1.5 ok\r\n"
#define GO "354 go ahead\r\n"
#define QUEUED "250 2.0.0 queued as X1\r\n"
#define BYE "221 2.0.0 bye\r\n"
#define RSET_OK "250 2.0.0 reset\r\n"
#define DATA_A "Subject: hi\r\n\r\nbody\r\n"
#define MSG_A                                                                                      \
    {                                                                                              \
        "s@a.test", {{"r1@b.test", 0, NULL}}, 1, DATA_A, 0, false, SMTP_RET_NONE, NULL, 0          \
    }
#define MSG_DSN                                                                                    \
    {                                                                                              \
        "s@a.test",                                                                                \
            {{"r1@b.test", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, "rfc822;r1@b.test"},         \
             {"r2@b.test", 0, NULL},                                                               \
             {"r3@b.test", SMTP_NOTIFY_NEVER, NULL}},                                              \
            3, DATA_A, 0, false, SMTP_RET_HDRS, "QQ1+2B", 0                                        \
    }
#define DONE_A "R0:D:end of data:250:2.0.0:queued as X1\nM\n"

static const struct tcase cases[] = {
    {"happy path without pipelining; DSN not offered: no DSN parameters",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" RCPT_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\n"
          "RCPT TO:<r1@b.test>\r\n"
          "RCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test>\r\n"
          "DATA\r\n" DATA_A ".\r\nQUIT\r\n",
     "R0:D:end of data:250:2.0.0:queued as X1\nR1:D:end of data:250:2.0.0:queued as X1\n"
     "R2:D:end of data:250:2.0.0:queued as X1\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"pipelining with DSN, one recipient of three refused",
     GREET "|" EXT_PIPE "|" MAIL_OK RCPT_OK "550 5.1.1 no such user\r\n" RCPT_OK GO "|" QUEUED
           "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21 RET=HDRS ENVID=QQ1+2B\r\n"
          "RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@b.test\r\n"
          "RCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test> NOTIFY=NEVER\r\n"
          "DATA\r\n" DATA_A ".\r\nQUIT\r\n",
     "R1:P:RCPT:550:5.1.1:no such user\nR0:D:end of data:250:2.0.0:queued as X1\n"
     "R2:D:end of data:250:2.0.0:queued as X1\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"EHLO 502: HELO, no extensions",
     GREET "|502 5.5.2 what?\r\n|250 mx.example\r\n|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "HELO client.test\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A
          ".\r\nQUIT\r\n",
     DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true},
    {"greeting 554: permanent",
     "554 5.7.1 no service for you\r\n",
     "",
     "R0:P:greeting:554:5.7.1:no service for you\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"greeting 450 without enhanced code: transient 4.0.0",
     "450 busy\r\n",
     "",
     "R0:T:greeting:450:4.0.0:busy\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"greeting 421",
     "421 mx.example closing\r\n",
     "",
     "R0:T:greeting:421:4.0.0:mx.example closing\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"EHLO 421",
     GREET "|421 4.3.2 shutting down\r\n",
     EHLO,
     "R0:T:EHLO:421:4.3.2:shutting down\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"EHLO 451: transient",
     GREET "|451 try later\r\n",
     EHLO,
     "R0:T:EHLO:451:4.0.0:try later\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"HELO 550: permanent",
     GREET "|500 no\r\n|550 5.7.1 go away\r\n",
     EHLO "HELO client.test\r\n",
     "R0:P:EHLO:550:5.7.1:go away\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"MAIL 451, then RSET",
     GREET "|" EXT_PLAIN "|451 4.3.0 local problem\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRSET\r\nQUIT\r\n",
     "R0:T:MAIL:451:4.3.0:local problem\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"MAIL 553 pipelined: every recipient, later replies ignored",
     GREET "|" EXT_PIPE "|553 5.1.8 bad sender\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
           "503 5.5.1 need MAIL\r\n554 5.5.1 no valid recipients\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21 RET=HDRS ENVID=QQ1+2B\r\n"
          "RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@b.test\r\n"
          "RCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test> NOTIFY=NEVER\r\n"
          "DATA\r\nRSET\r\nQUIT\r\n",
     "R0:P:MAIL:553:5.1.8:bad sender\nR1:P:MAIL:553:5.1.8:bad sender\n"
     "R2:P:MAIL:553:5.1.8:bad sender\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"RCPT 450 for the only recipient: no DATA, RSET",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|450 4.2.1 mailbox busy\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nRSET\r\nQUIT\r\n",
     "R0:T:RCPT:450:4.2.1:mailbox busy\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"every RCPT refused, pipelined, DATA refused: RSET",
     GREET "|" EXT_PIPE "|" MAIL_OK "550 5.1.1 a\r\n551 5.1.6 b\r\n452 4.5.3 c\r\n"
           "554 5.5.1 no valid recipients\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21 RET=HDRS ENVID=QQ1+2B\r\n"
          "RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@b.test\r\n"
          "RCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test> NOTIFY=NEVER\r\n"
          "DATA\r\nRSET\r\nQUIT\r\n",
     "R0:P:RCPT:550:5.1.1:a\nR1:P:RCPT:551:5.1.6:b\nR2:T:RCPT:452:4.5.3:c\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"every RCPT refused, pipelined, DATA 354 anyway: a single dot (RFC 2920 3.1), RSET",
     GREET "|" EXT_PIPE "|" MAIL_OK "550 5.1.1 a\r\n550 5.1.1 b\r\n550 5.1.1 c\r\n" GO
           "|250 2.0.0 empty message taken\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21 RET=HDRS ENVID=QQ1+2B\r\n"
          "RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@b.test\r\n"
          "RCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test> NOTIFY=NEVER\r\n"
          "DATA\r\n.\r\nRSET\r\nQUIT\r\n",
     "R0:P:RCPT:550:5.1.1:a\nR1:P:RCPT:550:5.1.1:b\nR2:P:RCPT:550:5.1.1:c\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"DATA 451: the accepted recipients",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|550 5.1.1 gone\r\n|" RCPT_OK
           "|451 4.3.0 not now\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nRCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test>\r\nDATA\r\nRSET\r\nQUIT\r\n",
     "R1:P:RCPT:550:5.1.1:gone\nR0:T:DATA:451:4.3.0:not now\nR2:T:DATA:451:4.3.0:not now\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"DATA 554: permanent",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|554 no\r\n|" RSET_OK "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\nRSET\r\nQUIT\r\n",
     "R0:P:DATA:554:5.0.0:no\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"end of data 552: permanent",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|552 5.3.4 too big after all\r\n|" RSET_OK
           "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A
          ".\r\nRSET\r\nQUIT\r\n",
     "R0:P:end of data:552:5.3.4:too big after all\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"end of data 451: transient",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|451 4.7.1 greylisted\r\n|" RSET_OK
           "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A
          ".\r\nRSET\r\nQUIT\r\n",
     "R0:T:end of data:451:4.7.1:greylisted\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"a refused RSET ends the connection",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|450 busy\r\n|500 what\r\n",
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nRSET\r\n",
     "R0:T:RCPT:450:4.0.0:busy\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"SIZE over the peer's limit: nothing sent, permanent 5.3.4",
     GREET "|250-mx.example\r\n250 SIZE 20\r\n|" BYE,
     EHLO "QUIT\r\n",
     "R0:P:MAIL:0:5.3.4:message too big for the remote host (21 bytes, its limit 20)\nM\n",
     {MSG_A},
     1,
     true,
     0,
     true},
    {"SIZE at the peer's limit is sent",
     GREET "|250-mx.example\r\n250 SIZE 21\r\n|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A ".\r\nQUIT\r\n",
     DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true},
    {"dot-stuffing, bare CR and LF, no final line end",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=30\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n"
          "S: x\r\n\r\n..hidden\r\n...two\r\n..\r\na\r\nb\r\n\r\nc\r\nend\r\n.\r\nQUIT\r\n",
     DONE_A,
     {{"s@a.test",
       {{"r1@b.test", 0, NULL}},
       1,
       "S: x\r\n\r\n.hidden\r\n..two\r\n.\r\na\nb\r\rc\r\nend",
       0,
       false,
       SMTP_RET_NONE,
       NULL,
       30}},
     1,
     true,
     0,
     true},
    {"empty message",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<> SIZE=1\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n.\r\nQUIT\r\n",
     DONE_A,
     {{"", {{"r1@b.test", 0, NULL}}, 1, "", 0, false, SMTP_RET_NONE, NULL, 1}},
     1,
     true,
     0,
     true},
    {"connection reuse: two messages",
     GREET "|" EXT_PIPE "|" MAIL_OK RCPT_OK GO "|" QUEUED "|" MAIL_OK RCPT_OK GO
           "|250 2.0.0 queued as X2\r\n|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A
          ".\r\nMAIL FROM:<t@a.test> SIZE=6\r\nRCPT TO:<u@c.test>\r\nDATA\r\nsecond\r\n"
          ".\r\nQUIT\r\n",
     DONE_A "R0:D:end of data:250:2.0.0:queued as X2\nM\n",
     {MSG_A, {"t@a.test", {{"u@c.test", 0, NULL}}, 1, "second", 0, false, SMTP_RET_NONE, NULL, 0}},
     2,
     true,
     0,
     true},
    {"reuse after a failed transaction: RSET first",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|550 5.1.1 no\r\n|" RSET_OK "|" MAIL_OK "|" RCPT_OK "|" GO
           "|250 2.0.0 queued as X2\r\n|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nRSET\r\n"
          "MAIL FROM:<t@a.test> SIZE=6\r\nRCPT TO:<u@c.test>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n",
     "R0:P:RCPT:550:5.1.1:no\nM\nR0:D:end of data:250:2.0.0:queued as X2\nM\n",
     {MSG_A, {"t@a.test", {{"u@c.test", 0, NULL}}, 1, "second", 0, false, SMTP_RET_NONE, NULL, 0}},
     2,
     true,
     0,
     true},
    {"8-bit message, peer with 8BITMIME: BODY=8BITMIME, data as it is",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21 BODY=8BITMIME\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n"
          "Subject: s\r\n\r\nna\xefve\r\n.\r\nQUIT\r\n",
     DONE_A,
     {{"s@a.test",
       {{"r1@b.test", 0, NULL}},
       1,
       "Subject: s\r\n\r\nna\xefve\r\n",
       0,
       true,
       SMTP_RET_NONE,
       NULL,
       0}},
     1,
     true,
     0,
     true},
    {"8-bit message without MIME, peer without 8BITMIME: quoted-printable",
     GREET "|" EXT_7BIT "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n"
          "Subject: s\r\nContent-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n"
          "\r\nna=EFve\r\n.\r\nQUIT\r\n",
     DONE_A,
     {{"s@a.test",
       {{"r1@b.test", 0, NULL}},
       1,
       "Subject: s\r\n\r\nna\xefve\r\n",
       0,
       true,
       SMTP_RET_NONE,
       NULL,
       0}},
     1,
     true,
     0,
     true},
    {"8-bit multipart, peer without 8BITMIME: each 8bit leaf quoted-printable",
     GREET "|" EXT_7BIT "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=400\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n"
          "MIME-Version: 1.0\r\n"
          "Content-Type: multipart/mixed;\r\n boundary=\"=_XX\"\r\n"
          "\r\n"
          "preamble\r\n"
          "--=_XX\r\n"
          "Content-Type: text/plain; charset=iso-8859-1\r\n"
          "Content-Transfer-Encoding: quoted-printable\r\n"
          "\r\n"
          "caf=E9 =3D ok=20\r\n"
          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=\r\n"
          "=2Dxxxxxxxxxxxxxxxxxxxxxxxx\r\n"
          "\r\n"
          "--=_XX \r\n"
          "Content-Type: text/plain\r\n"
          "Content-Transfer-Encoding: 7bit\r\n"
          "\r\n"
          "plain 7bit\r\n"
          "--=_XX\r\n"
          "Content-Type: message/rfc822\r\n"
          "Content-Transfer-Encoding: 7bit\r\n"
          "\r\n"
          "Subject: inner\r\n"
          "Content-Transfer-Encoding: quoted-printable\r\n"
          "\r\n"
          "=FC \t=09\r\n"
          "--=_XX--\r\n"
          "epilogue\r\n"
          ".\r\nQUIT\r\n",
     DONE_A,
     {{"s@a.test",
       {{"r1@b.test", 0, NULL}},
       1,
       "MIME-Version: 1.0\r\n"
       "Content-Type: multipart/mixed;\r\n boundary=\"=_XX\"\r\n"
       "\r\n"
       "preamble\r\n"
       "--=_XX\r\n"
       "Content-Type: text/plain; charset=iso-8859-1\r\n"
       "Content-Transfer-Encoding: 8bit\r\n"
       "\r\n"
       "caf\xe9 = ok \r\n"
       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
       "-xxxxxxxxxxxxxxxxxxxxxxxx\r\n"
       "\r\n"
       "--=_XX \r\n"
       "Content-Type: text/plain\r\n"
       "Content-Transfer-Encoding: 7bit\r\n"
       "\r\n"
       "plain 7bit\r\n"
       "--=_XX\r\n"
       "Content-Type: message/rfc822\r\n"
       "Content-Transfer-Encoding: 8bit\r\n"
       "\r\n"
       "Subject: inner\r\n"
       "\r\n"
       "\xfc \t\t\r\n"
       "--=_XX--\r\n"
       "epilogue\r\n",
       0,
       true,
       SMTP_RET_NONE,
       NULL,
       400}},
     1,
     true,
     0,
     true},
    {"8-bit in a header, peer without 8BITMIME: 5.6.3, no final dot",
     GREET "|" EXT_7BIT "|" MAIL_OK "|" RCPT_OK "|" GO,
     EHLO "MAIL FROM:<s@a.test> SIZE=20\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n",
     "R0:P:end of data:0:5.6.3:conversion required but not possible: 8-bit data the remote host "
     "does not take (no 8BITMIME) in a header or a part that cannot be encoded\nM\n",
     {{"s@a.test",
       {{"r1@b.test", 0, NULL}},
       1,
       "Subject: \xe9t\xe9\r\n\r\nbody\r\n",
       0,
       true,
       SMTP_RET_NONE,
       NULL,
       20}},
     1,
     true,
     0,
     true},
    {"8-bit in a part labelled 7bit, peer without 8BITMIME: 5.6.3, no final dot",
     GREET "|" EXT_7BIT "|" MAIL_OK "|" RCPT_OK "|" GO,
     EHLO "MAIL FROM:<s@a.test> SIZE=20\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n"
          "Content-Transfer-Encoding: 7bit\r\n\r\nascii\r\n",
     "R0:P:end of data:0:5.6.3:conversion required but not possible: 8-bit data the remote host "
     "does not take (no 8BITMIME) in a header or a part that cannot be encoded\nM\n",
     {{"s@a.test",
       {{"r1@b.test", 0, NULL}},
       1,
       "Content-Transfer-Encoding: 7bit\r\n\r\nascii\r\nna\xefve\r\n",
       0,
       false,
       SMTP_RET_NONE,
       NULL,
       20}},
     1,
     true,
     0,
     true},
    {"the message cannot be read: transient 4.3.0, no final dot",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO,
     EHLO "MAIL FROM:<s@a.test> SIZE=20\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n",
     "R0:T:end of data:0:4.3.0:local error: the message could not be read\nM\n",
     {{"s@a.test", {{"r1@b.test", 0, NULL}}, 1, "<read error>", 0, false, SMTP_RET_NONE, NULL, 20}},
     1,
     true,
     0,
     true},
    {"lost connection after the data: transient 4.4.2",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A ".\r\n",
     "R0:T:end of data:0:4.4.2:lost connection waiting for the reply to end of data\nM\n",
     {MSG_A},
     1,
     true,
     'e',
     true},
    {"421 to a pipelined RCPT: every recipient left, transient",
     GREET "|" EXT_PIPE "|" MAIL_OK "550 5.1.1 gone\r\n421 4.3.2 closing now\r\n",
     EHLO "MAIL FROM:<s@a.test> SIZE=21 RET=HDRS ENVID=QQ1+2B\r\n"
          "RCPT TO:<r1@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r1@b.test\r\n"
          "RCPT TO:<r2@b.test>\r\n"
          "RCPT TO:<r3@b.test> NOTIFY=NEVER\r\n"
          "DATA\r\n",
     "R0:P:RCPT:550:5.1.1:gone\nR1:T:RCPT:421:4.3.2:closing now\nR2:T:RCPT:421:4.3.2:closing "
     "now\nM\n",
     {MSG_DSN},
     1,
     true,
     0,
     true},
    {"malformed greeting",
     "22x hello\r\n",
     "",
     "R0:T:greeting:0:4.5.0:protocol error during greeting: bad reply code\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"mixed codes in the EHLO reply",
     GREET "|250-mx.example\r\n251 SIZE\r\n",
     EHLO,
     "R0:T:EHLO:0:4.5.0:protocol error during EHLO: mixed codes in a multi-line reply\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"3xx to MAIL: protocol error",
     GREET "|" EXT_PLAIN "|354 what\r\n",
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\n",
     "R0:T:MAIL:0:4.5.0:protocol error during MAIL: unexpected reply \"354 what\"\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true},
    {"a reply nobody asked for",
     GREET "|" EXT_PLAIN "|250 surprise\r\n",
     EHLO,
     "",
     {{0}},
     0,
     false,
     0,
     true},
    {"QUIT before any message",
     GREET "|" EXT_PLAIN "|" BYE,
     EHLO "QUIT\r\n",
     "",
     {{0}},
     0,
     true,
     0,
     true},
};

#define EXT_TLS "250-mx.example hello\r\n250-SIZE 10\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
#define EXT_TLS_BIG "250-mx.example hello\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
#define TLS_GO "220 2.0.0 Ready to start TLS\r\n"
#define EXT_AFTER "250-mx.example hello again\r\n250 SIZE\r\n"
#define EXT_AUTH "250-mx.example hello again\r\n250-SIZE\r\n250 AUTH PLAIN LOGIN\r\n"
#define PLAIN_MAIL                                                                                 \
    EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A ".\r\n"
/* "\0user\0pass" in base64, and "user" and "pass" */
#define PLAIN_B64 "AHVzZXIAcGFzcw=="

static const struct tcase tls_cases[] = {
    {"may, STARTTLS offered: TLS, then EHLO again; the first EHLO's SIZE limit is forgotten",
     GREET "|" EXT_TLS "|" TLS_GO "|" EXT_AFTER "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "STARTTLS\r\n" PLAIN_MAIL "QUIT\r\n",
     "TLS\n" DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_MAY},
    {"may: bytes after the 220 to STARTTLS are plain text and dropped (RFC 3207 5)",
     GREET "|" EXT_TLS "|" TLS_GO "250 2.1.0 injected\r\n250 2.1.5 injected\r\n|" EXT_AFTER
           "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "STARTTLS\r\n" PLAIN_MAIL "QUIT\r\n",
     "TLS\n" DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_MAY},
    {"may, STARTTLS refused: plain text on the same connection",
     GREET "|" EXT_TLS_BIG "|454 4.7.0 TLS not available\r\n|" MAIL_OK RCPT_OK GO "|" QUEUED
           "|" BYE,
     EHLO "STARTTLS\r\nMAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A
          ".\r\nQUIT\r\n",
     DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_MAY},
    {"may, STARTTLS not offered: plain text",
     GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     PLAIN_MAIL "QUIT\r\n",
     DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_MAY},
    {"none, STARTTLS offered: not used",
     GREET "|" EXT_TLS_BIG "|" MAIL_OK RCPT_OK GO "|" QUEUED "|" BYE,
     EHLO "MAIL FROM:<s@a.test> SIZE=21\r\nRCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A ".\r\nQUIT\r\n",
     DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_NONE},
    {"encrypt, STARTTLS not offered: transient 4.7.4, QUIT, nothing sent in clear",
     GREET "|" EXT_PLAIN "|" BYE,
     EHLO "QUIT\r\n",
     "R0:T:STARTTLS:0:4.7.4:TLS is required by policy but the server does not offer STARTTLS\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_ENCRYPT},
    {"verify, STARTTLS refused: transient 4.7.4 with the reply, QUIT",
     GREET "|" EXT_TLS "|454 4.7.0 TLS not available\r\n|" BYE,
     EHLO "STARTTLS\r\nQUIT\r\n",
     "R0:T:STARTTLS:0:4.7.4:TLS is required by policy but the server refused STARTTLS: 454 "
     "4.7.0 TLS not available\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_VERIFY},
    {"verify, the handshake fails: transient 4.7.5, connection over",
     GREET "|" EXT_TLS "|" TLS_GO,
     EHLO "STARTTLS\r\n",
     "TLS\nR0:T:STARTTLS:0:4.7.5:TLS handshake failed: certificate verify failed\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_VERIFY,
     true},
    {"may, the handshake fails: the same (the caller retries in plain text)",
     GREET "|" EXT_TLS "|" TLS_GO,
     EHLO "STARTTLS\r\n",
     "TLS\nR0:T:STARTTLS:0:4.7.5:TLS handshake failed: certificate verify failed\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY,
     true},
    {"STARTTLS answered 354: a protocol error",
     GREET "|" EXT_TLS "|354 what\r\n",
     EHLO "STARTTLS\r\n",
     "R0:T:STARTTLS:0:4.5.0:protocol error during STARTTLS: unexpected reply \"354 what\"\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY},
    {"AUTH PLAIN under TLS, with the initial response",
     GREET "|" EXT_TLS "|" TLS_GO "|" EXT_AUTH "|235 2.7.0 ok\r\n|" MAIL_OK "|" RCPT_OK "|" GO
           "|" QUEUED "|" BYE,
     EHLO "STARTTLS\r\n" EHLO "AUTH PLAIN " PLAIN_B64 "\r\nMAIL FROM:<s@a.test> SIZE=21\r\n"
          "RCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A ".\r\nQUIT\r\n",
     "TLS\n" DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"AUTH LOGIN (the old form AUTH=) under TLS",
     GREET "|" EXT_TLS "|" TLS_GO "|250-mx\r\n250 AUTH=LOGIN\r\n|334 VXNlcm5hbWU6\r\n|"
           "334 UGFzc3dvcmQ6\r\n|235 2.7.0 ok\r\n|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "STARTTLS\r\n" EHLO "AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nMAIL FROM:<s@a.test>\r\n"
          "RCPT TO:<r1@b.test>\r\nDATA\r\n" DATA_A ".\r\nQUIT\r\n",
     "TLS\n" DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_ENCRYPT,
     false,
     "user",
     "pass"},
    {"AUTH 535: transient with the peer's reply, QUIT",
     GREET "|" EXT_TLS "|" TLS_GO "|" EXT_AUTH
           "|535 5.7.8 Authentication credentials invalid\r\n|" BYE,
     EHLO "STARTTLS\r\n" EHLO "AUTH PLAIN " PLAIN_B64 "\r\nQUIT\r\n",
     "TLS\nR0:T:AUTH:535:5.7.8:Authentication credentials invalid\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"AUTH 454: transient",
     GREET "|" EXT_TLS "|" TLS_GO "|" EXT_AUTH
           "|454 4.7.0 Temporary authentication failure\r\n|" BYE,
     EHLO "STARTTLS\r\n" EHLO "AUTH PLAIN " PLAIN_B64 "\r\nQUIT\r\n",
     "TLS\nR0:T:AUTH:454:4.7.0:Temporary authentication failure\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"AUTH offered without STARTTLS: no AUTH in plain text, transient 4.7.0",
     GREET "|250-mx\r\n250 AUTH PLAIN LOGIN\r\n|" BYE,
     EHLO "QUIT\r\n",
     "R0:T:AUTH:0:4.7.0:the server offers AUTH but the session is not encrypted (no TLS): "
     "credentials are never sent in plain text\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"STARTTLS refused: no AUTH after it",
     GREET "|250-mx\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n|502 5.5.1 no\r\n|" BYE,
     EHLO "STARTTLS\r\nQUIT\r\n",
     "R0:T:AUTH:0:4.7.0:the server offers AUTH but the session is not encrypted (no TLS): "
     "credentials are never sent in plain text\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"credentials, TLS, no AUTH offered: the mail goes without",
     GREET "|" EXT_TLS "|" TLS_GO "|" EXT_AFTER "|" MAIL_OK "|" RCPT_OK "|" GO "|" QUEUED "|" BYE,
     EHLO "STARTTLS\r\n" PLAIN_MAIL "QUIT\r\n",
     "TLS\n" DONE_A,
     {MSG_A},
     1,
     true,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"AUTH with no mechanism we use: transient 4.7.0",
     GREET "|" EXT_TLS "|" TLS_GO "|250-mx\r\n250 AUTH CRAM-MD5 XOAUTH2\r\n|" BYE,
     EHLO "STARTTLS\r\n" EHLO "QUIT\r\n",
     "TLS\nR0:T:AUTH:0:4.7.0:the server offers no AUTH mechanism we use (PLAIN or LOGIN)\nM\n",
     {MSG_A},
     1,
     false,
     0,
     true,
     SMTP_TLS_MAY,
     false,
     "user",
     "pass"},
    {"lost during the handshake wait",
     GREET "|" EXT_TLS "|" TLS_GO,
     EHLO "STARTTLS\r\n",
     "R0:T:STARTTLS:0:4.4.2:lost connection during the TLS handshake\nM\n",
     {MSG_A},
     1,
     false,
     'e',
     true,
     SMTP_TLS_MAY,
     false,
     NULL,
     NULL,
     true},
};

static void test_tls_auth(void **state)
{
    (void)state;
    static const size_t modes[][2] = {{SIZE_MAX, SMTP_CLIENT_READ_MAX}, {1, 1}, {7, 13}};
    for (size_t i = 0; i < N(tls_cases); i++)
        for (size_t k = 0; k < N(modes); k++)
            run_case(&tls_cases[i], modes[k][0], modes[k][1]);
}

static void trace_cb(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    buf_printf(arg, "%c %.*s\n", kind == SMTP_TRACE_COMMAND ? '>' : '<', (int)n, p);
}

/* The protocol log never sees the credentials; bad credentials are refused at once. */
static void test_auth_secret(void **state)
{
    (void)state;
    buf tr = BUF_INIT;
    smtp_client_config cfg = {"client.test", 0, SMTP_TLS_MAY, "user", "pass"};
    smtp_client_callbacks cb = {&tr, NULL, NULL, trace_cb};
    smtp_client *c;
    assert_int_equal(smtp_client_new(&cfg, &cb, &c), 0);
    const char *turns[] = {GREET,
                           EXT_TLS,
                           TLS_GO,
                           "250-mx\r\n250 AUTH LOGIN\r\n",
                           "334 VXNlcm5hbWU6\r\n",
                           "334 UGFzc3dvcmQ6\r\n",
                           "235 ok\r\n"};
    buf out = BUF_INIT;
    for (size_t i = 0; i < N(turns); i++) {
        assert_int_equal(smtp_client_input(c, turns[i], strlen(turns[i])), 0);
        if (smtp_client_tls_wanted(c))
            smtp_client_tls_done(c, true, NULL);
        drain(c, &out);
    }
    assert_true(smtp_client_authenticated(c));
    assert_non_null(strstr(buf_cstr(&out), "dXNlcg==\r\ncGFzcw==\r\n"));
    const char *t = buf_cstr(&tr);
    assert_non_null(strstr(t, "> AUTH LOGIN\n"));
    const char *first = strstr(t, "> <credentials>\n");
    assert_non_null(first);
    assert_non_null(strstr(first + 1, "> <credentials>\n"));
    assert_null(strstr(t, "dXNlcg"));
    assert_null(strstr(t, "cGFzcw"));
    smtp_client_free(c);
    buf_free(&tr);
    buf_free(&out);

    smtp_client_config bad[] = {
        {"client.test", 0, SMTP_TLS_MAY, "user", NULL},
        {"client.test", 0, SMTP_TLS_MAY, NULL, "pass"},
        {"client.test", 0, SMTP_TLS_MAY, "", "pass"},
        {"client.test", 0, SMTP_TLS_MAY, "user", ""},
        {"client.test", 0, (smtp_tls_policy)9, NULL, NULL},
    };
    for (size_t i = 0; i < N(bad); i++) {
        assert_int_equal(smtp_client_new(&bad[i], NULL, &c), ERROR_INVALID_PARAMETER);
        assert_null(c);
    }
    char longer[SMTP_AUTH_FIELD_MAX + 2];
    memset(longer, 'u', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    smtp_client_config big = {"client.test", 0, SMTP_TLS_MAY, longer, "pass"};
    assert_int_equal(smtp_client_new(&big, NULL, &c), ERROR_INVALID_PARAMETER);
    longer[SMTP_AUTH_FIELD_MAX] = 0; /* exactly the limit */
    assert_int_equal(smtp_client_new(&big, NULL, &c), 0);
    smtp_client_free(c);
}

static void test_conversations(void **state)
{
    (void)state;
    static const size_t modes[][2] = {{SIZE_MAX, SMTP_CLIENT_READ_MAX}, {1, 1}, {7, 13}, {3, 2}};
    for (size_t i = 0; i < N(cases); i++)
        for (size_t k = 0; k < N(modes); k++)
            run_case(&cases[i], modes[k][0], modes[k][1]);
}

/* --- long lines --------------------------------------------------------------------------- */

struct blob {
    const char *p;
    size_t n, off;
};

static int blob_read(void *arg, char *p, size_t cap, size_t *got)
{
    struct blob *b = arg;
    size_t n = b->n - b->off < cap ? b->n - b->off : cap;
    memcpy(p, b->p + b->off, n);
    b->off += n;
    *got = n;
    return 0;
}

/* send_data - a whole conversation with an 8BITMIME peer for one message; returns what was
 * sent after the DATA line, up to and without the final ".". */
static void send_data(const char *data, size_t n, bool with_8bitmime, buf *out)
{
    smtp_client_config cfg = {"client.test", 0};
    smtp_client *c;
    assert_int_equal(smtp_client_new(&cfg, NULL, &c), 0);
    struct blob b = {data, n, 0};
    smtp_client_rcpt r = {"r@b.test", 0, NULL};
    smtp_client_msg m = {"s@a.test", &r, 1, n, false, SMTP_RET_NONE, NULL, blob_read, &b};
    assert_int_equal(smtp_client_send(c, &m), 0);
    buf all = BUF_INIT;
    const char *ext = with_8bitmime ? "250-mx\r\n250 8BITMIME\r\n" : "250 mx\r\n";
    const char *turns[] = {GREET, ext, MAIL_OK, RCPT_OK, GO};
    for (size_t i = 0; i < N(turns); i++) {
        assert_int_equal(smtp_client_input(c, turns[i], strlen(turns[i])), 0);
        drain(c, &all);
    }
    const char *start = strstr(buf_cstr(&all), "DATA\r\n");
    assert_non_null(start);
    start += 6;
    size_t len = all.len - (size_t)(start - (const char *)all.data);
    assert_true(len >= 3 && !memcmp(start + len - 3, ".\r\n", 3));
    buf_add(out, start, len - 3);
    buf_free(&all);
    smtp_client_free(c);
}

static void test_long_lines(void **state)
{
    (void)state;
    buf in = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
    /* A header of 120 words: folded at the last space that leaves 998 octets. */
    buf_adds(&in, "Subject:");
    for (int i = 0; i < 120; i++)
        buf_adds(&in, " word5678");
    buf_adds(&in, "\r\nX-Long:");
    for (int i = 0; i < 1500; i++)
        buf_addc(&in, 'b');
    buf_adds(&in, "\r\n\r\n");
    for (int i = 0; i < 2000; i++)
        buf_addc(&in, 'a');
    buf_adds(&in, "\r\n.");
    for (int i = 0; i < 1200; i++)
        buf_addc(&in, 'd');
    buf_adds(&in, "\r\n");

    buf_adds(&want, "Subject:");
    for (int i = 0; i < 109; i++)
        buf_adds(&want, " word5678");
    buf_adds(&want, "\r\n");
    for (int i = 0; i < 11; i++)
        buf_adds(&want, " word5678");
    /* No whitespace: a hard break with CRLF SP. */
    buf_adds(&want, "\r\nX-Long:");
    for (int i = 0; i < 998 - 7; i++)
        buf_addc(&want, 'b');
    buf_adds(&want, "\r\n ");
    for (int i = 0; i < 1500 - (998 - 7); i++)
        buf_addc(&want, 'b');
    buf_adds(&want, "\r\n\r\n");
    /* The body: 998, then SP + 997, then SP + the last 5. */
    for (int i = 0; i < 998; i++)
        buf_addc(&want, 'a');
    buf_adds(&want, "\r\n ");
    for (int i = 0; i < 997; i++)
        buf_addc(&want, 'a');
    buf_adds(&want, "\r\n ");
    for (int i = 0; i < 5; i++)
        buf_addc(&want, 'a');
    /* A line starting with a dot: stuffed, and broken so that 998 octets go before CRLF. */
    buf_adds(&want, "\r\n..");
    for (int i = 0; i < 996; i++)
        buf_addc(&want, 'd');
    buf_adds(&want, "\r\n ");
    for (int i = 0; i < 1200 - 996; i++)
        buf_addc(&want, 'd');
    buf_adds(&want, "\r\n");

    send_data((const char *)in.data, in.len, true, &got);
    expect_bytes("folded lines", (const char *)got.data, got.len, (const char *)want.data,
                 want.len);
    /* Every line within 1000 octets, CRLF included. */
    const char *p = (const char *)got.data;
    for (size_t i = 0, start = 0; i < got.len; i++)
        if (p[i] == '\n') {
            assert_true(i + 1 - start <= 1000);
            start = i + 1;
        }
    buf_free(&in);
    buf_free(&want);
    buf_free(&got);
}

static void test_qp_long_line(void **state)
{
    (void)state;
    /* A 200-byte 8-bit line: soft breaks keep every encoded line within 76. */
    buf in = BUF_INIT, got = BUF_INIT;
    buf_adds(&in, "Content-Transfer-Encoding: 8bit\r\n\r\n");
    for (int i = 0; i < 100; i++)
        buf_adds(&in, "\xe9 ");
    buf_adds(&in, "\r\n");
    send_data((const char *)in.data, in.len, false, &got);
    const char *p = buf_cstr(&got);
    assert_non_null(strstr(p, "Content-Transfer-Encoding: quoted-printable\r\n"));
    const char *body = strstr(p, "\r\n\r\n") + 4;
    size_t lines = 0, start = 0, n = strlen(body);
    for (size_t i = 0; i < n; i++) {
        assert_true((unsigned char)body[i] < 0x80);
        if (body[i] == '\n') {
            assert_true(i - 1 - start <= SMTP_QP_LINE_MAX);
            start = i + 1;
            lines++;
        }
    }
    /* 100 x "=E9 " = 400 characters, the last space encoded: 6 lines of at most 75 + "=". */
    assert_int_equal(lines, 6);
    assert_non_null(strstr(body, "=E9=20\r\n"));
    buf_free(&in);
    buf_free(&got);
}

/* --- malformed replies, limits and time-outs ---------------------------------------------- */

struct rec1 {
    smtp_result r[4];
    size_t n, msgs;
};

static void rec_rcpt(void *arg, const smtp_client_msg *m, size_t i, const smtp_result *r)
{
    struct rec1 *rec = arg;
    (void)m;
    assert_true(i < 4);
    rec->r[i] = *r;
    rec->n++;
}

static void rec_msg(void *arg, const smtp_client_msg *m)
{
    struct rec1 *rec = arg;
    (void)m;
    rec->msgs++;
}

static void test_over_long_reply(void **state)
{
    (void)state;
    struct rec1 rec = {0};
    smtp_client_config cfg = {"client.test", 0};
    smtp_client_callbacks cb = {&rec, rec_rcpt, rec_msg, NULL};
    smtp_client *c;
    assert_int_equal(smtp_client_new(&cfg, &cb, &c), 0);
    struct blob b = {"x", 1, 0};
    smtp_client_rcpt r = {"r@b.test", 0, NULL};
    smtp_client_msg m = {"s@a.test", &r, 1, 1, false, SMTP_RET_NONE, NULL, blob_read, &b};
    assert_int_equal(smtp_client_send(c, &m), 0);
    assert_int_equal(smtp_client_input(c, S(GREET EXT_PLAIN MAIL_OK)), 0);
    static char big[3000];
    memset(big, 'y', sizeof big);
    memcpy(big, "250 ", 4);
    /* Fed in pieces: refused as soon as the line is over the limit, without its end. */
    for (size_t i = 0; i < sizeof big && !smtp_client_want_close(c); i += 100)
        assert_int_equal(smtp_client_input(c, big + i, 100), 0);
    assert_true(smtp_client_want_close(c));
    assert_int_equal(rec.n, 1);
    assert_int_equal(rec.msgs, 1);
    assert_int_equal(rec.r[0].outcome, SMTP_TRANSIENT);
    assert_int_equal(rec.r[0].stage, SMTP_STAGE_RCPT);
    assert_string_equal(rec.r[0].enh, "4.5.0");
    assert_string_equal(rec.r[0].text, "protocol error during RCPT: reply line too long");
    assert_non_null(smtp_client_error(c));
    assert_false(smtp_client_ready(c));
    smtp_client_free(c);
}

static void test_reply_during_data(void **state)
{
    (void)state;
    static char bigdata[3 * SMTP_CLIENT_OUTPUT_LOW];
    memset(bigdata, 'z', sizeof bigdata);
    for (size_t i = 70; i < sizeof bigdata; i += 72)
        memcpy(bigdata + i, "\r\n", 2);
    static const struct {
        const char *reply;
        smtp_outcome outcome;
        unsigned code;
        const char *enh, *text;
    } rows[] = {
        {"554 5.0.0 go away\r\n", SMTP_PERMANENT, 554, "5.0.0", "go away"},
        {"451 stop\r\n", SMTP_TRANSIENT, 451, "4.0.0", "stop"},
        {"250 fine\r\n", SMTP_TRANSIENT, 0, "4.5.0",
         "protocol error during end of data: unexpected reply \"250 fine\""},
    };
    for (size_t i = 0; i < N(rows); i++) {
        struct rec1 rec = {0};
        smtp_client_config cfg = {"client.test", 0};
        smtp_client_callbacks cb = {&rec, rec_rcpt, rec_msg, NULL};
        smtp_client *c;
        assert_int_equal(smtp_client_new(&cfg, &cb, &c), 0);
        struct blob b = {bigdata, sizeof bigdata, 0};
        smtp_client_rcpt r = {"r@b.test", 0, NULL};
        smtp_client_msg m = {"s@a.test", &r,        1, sizeof bigdata, false, SMTP_RET_NONE,
                             NULL,       blob_read, &b};
        assert_int_equal(smtp_client_send(c, &m), 0);
        assert_int_equal(smtp_client_input(c, S(GREET EXT_PLAIN MAIL_OK RCPT_OK GO)), 0);
        assert_int_equal(smtp_client_input(c, rows[i].reply, strlen(rows[i].reply)), 0);
        assert_true(smtp_client_want_close(c));
        assert_int_equal(rec.n, 1);
        assert_int_equal(rec.msgs, 1);
        assert_int_equal(rec.r[0].outcome, rows[i].outcome);
        assert_int_equal(rec.r[0].code, rows[i].code);
        assert_int_equal(rec.r[0].stage, SMTP_STAGE_DOT);
        assert_string_equal(rec.r[0].enh, rows[i].enh);
        assert_string_equal(rec.r[0].text, rows[i].text);
        /* No final dot is ever sent, however much more is drained. */
        buf out = BUF_INIT;
        drain(c, &out);
        assert_true(out.len < sizeof bigdata);
        assert_null(strstr(buf_cstr(&out), "\r\n.\r\n"));
        buf_free(&out);
        smtp_client_free(c);
    }
}

static void test_timeouts(void **state)
{
    (void)state;
    static char bigdata[3 * SMTP_CLIENT_OUTPUT_LOW];
    memset(bigdata, 'z', sizeof bigdata);
    for (size_t i = 70; i < sizeof bigdata; i += 72)
        memcpy(bigdata + i, "\r\n", 2);
    static const struct {
        const char *peer; /* turns, '|'-separated */
        bool pipelining;
        unsigned secs;
        smtp_stage stage;
        const char *text; /* "" when no recipient is pending */
    } rows[] = {
        {"", false, SMTP_TIMEOUT_GREETING, SMTP_STAGE_GREETING,
         "timeout waiting for the reply to greeting"},
        {GREET, false, SMTP_TIMEOUT_HELO, SMTP_STAGE_EHLO, "timeout waiting for the reply to EHLO"},
        {GREET "|500 x\r\n", false, SMTP_TIMEOUT_HELO, SMTP_STAGE_EHLO,
         "timeout waiting for the reply to EHLO"},
        {GREET "|" EXT_PLAIN, false, SMTP_TIMEOUT_MAIL, SMTP_STAGE_MAIL,
         "timeout waiting for the reply to MAIL"},
        {GREET "|" EXT_PLAIN "|" MAIL_OK, false, SMTP_TIMEOUT_RCPT, SMTP_STAGE_RCPT,
         "timeout waiting for the reply to RCPT"},
        {GREET "|250-mx\r\n250 PIPELINING\r\n|" MAIL_OK RCPT_OK, true, SMTP_TIMEOUT_DATA_INIT,
         SMTP_STAGE_DATA, "timeout waiting for the reply to DATA"},
        {GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO, false, SMTP_TIMEOUT_DATA_BLOCK,
         SMTP_STAGE_DOT, "timeout while sending the message data"},
        {GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|*", false, SMTP_TIMEOUT_DATA_TERM,
         SMTP_STAGE_DOT, "timeout waiting for the reply to end of data"},
        {GREET "|" EXT_PLAIN "|" MAIL_OK "|450 x\r\n", false, SMTP_TIMEOUT_RSET, SMTP_STAGE_RSET,
         ""},
        {GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|*|" QUEUED, false, 0, SMTP_STAGE_MAIL,
         ""},
        {GREET "|" EXT_PLAIN "|" MAIL_OK "|" RCPT_OK "|" GO "|*|" QUEUED "|Q", false,
         SMTP_TIMEOUT_QUIT, SMTP_STAGE_QUIT, ""},
    };
    for (size_t i = 0; i < N(rows); i++) {
        struct rec1 rec = {0};
        smtp_client_config cfg = {"client.test", 0};
        smtp_client_callbacks cb = {&rec, rec_rcpt, rec_msg, NULL};
        smtp_client *c;
        assert_int_equal(smtp_client_new(&cfg, &cb, &c), 0);
        struct blob b = {bigdata, sizeof bigdata, 0};
        smtp_client_rcpt r = {"r@b.test", 0, NULL};
        smtp_client_msg m = {"s@a.test", &r,        1, sizeof bigdata, false, SMTP_RET_NONE,
                             NULL,       blob_read, &b};
        assert_int_equal(smtp_client_send(c, &m), 0);
        buf out = BUF_INIT;
        for (const char *p = rows[i].peer; *p;) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (n == 1 && *p == '*')
                drain(c, &out); /* the peer reads all of the data */
            else if (n == 1 && *p == 'Q')
                smtp_client_quit(c);
            else
                assert_int_equal(smtp_client_input(c, p, n), 0);
            p += n + (bar ? 1 : 0);
        }
        if (smtp_client_timeout_secs(c) != rows[i].secs)
            fail_msg("row %zu: got %u s, want %u", i, smtp_client_timeout_secs(c), rows[i].secs);
        if (smtp_client_stage(c) != rows[i].stage)
            fail_msg("row %zu: got stage %s, want %s", i, smtp_stage_name(smtp_client_stage(c)),
                     smtp_stage_name(rows[i].stage));
        size_t before = rec.n;
        smtp_client_timeout(c);
        if (rows[i].secs)
            assert_true(smtp_client_want_close(c));
        assert_int_equal(smtp_client_timeout_secs(c), 0);
        if (rows[i].text[0]) {
            assert_int_equal(rec.n, before + 1);
            assert_int_equal(rec.r[0].outcome, SMTP_TRANSIENT);
            assert_int_equal(rec.r[0].stage, rows[i].stage);
            assert_string_equal(rec.r[0].enh, "4.4.2");
            assert_int_equal(rec.r[0].code, 0);
            if (strcmp(rec.r[0].text, rows[i].text))
                fail_msg("row %zu: got \"%s\", want \"%s\"", i, rec.r[0].text, rows[i].text);
        } else {
            assert_int_equal(rec.n, before);
        }
        assert_int_equal(rec.msgs, 1); /* the message is always done */
        assert_int_equal(rec.n, 1);
        buf_free(&out);
        smtp_client_free(c);
    }
}

static void test_extensions(void **state)
{
    (void)state;
    smtp_client_config cfg = {"[192.0.2.1]", 0};
    smtp_client *c;
    assert_int_equal(smtp_client_new(&cfg, NULL, &c), 0);
    assert_int_equal(
        smtp_client_input(c, S(GREET "250-mx hello\r\n250-size 123456\r\n250-pipelining\r\n"
                                     "250-8bitmime\r\n250-Dsn\r\n250-STARTTLS\r\n"
                                     "250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN PLAIN\r\n"
                                     "250 X-UNKNOWN-EXTENSION-WITH-A-VERY-LONG-NAME\r\n")),
        0);
    const smtp_client_ext *e = smtp_client_extensions(c);
    assert_true(e->esmtp && e->size && e->pipelining && e->eightbitmime && e->dsn && e->starttls &&
                e->enhanced);
    assert_true(e->size_max == 123456);
    assert_true(smtp_client_ready(c));
    size_t len;
    const char *o = smtp_client_output(c, &len);
    expect_bytes("EHLO", o, len, S("EHLO [192.0.2.1]\r\n"));
    smtp_client_free(c);

    /* A refused EHLO's list counts for nothing. */
    assert_int_equal(smtp_client_new(&cfg, NULL, &c), 0);
    assert_int_equal(smtp_client_input(c, S(GREET "550-no\r\n550 PIPELINING\r\n250 hi\r\n")), 0);
    e = smtp_client_extensions(c);
    assert_false(e->esmtp || e->pipelining);
    smtp_client_free(c);
}

static void test_send_checks(void **state)
{
    (void)state;
    smtp_client_config cfg = {"client.test", 2};
    smtp_client *c;
    assert_int_equal(smtp_client_new(&(smtp_client_config){"bad name!", 0}, NULL, &c),
                     ERROR_INVALID_PARAMETER);
    assert_null(c);
    assert_int_equal(smtp_client_new(&(smtp_client_config){NULL, 0}, NULL, &c),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(
        smtp_client_new(&(smtp_client_config){"a.test", SMTP_CLIENT_RCPT_LIMIT + 1}, NULL, &c),
        ERROR_INVALID_PARAMETER);
    assert_int_equal(smtp_client_new(&cfg, NULL, &c), 0);
    struct blob b = {"", 0, 0};
    static const struct {
        const char *from, *rcpt, *envid, *orcpt;
        unsigned notify;
        size_t nrcpt;
        int want;
    } rows[] = {
        {"s@a.test", "r@b.test", NULL, NULL, 0, 1, ERROR_SUCCESS},
        {"s@a.test", "r@b.test", NULL, NULL, 0, 3, ERROR_INVALID_PARAMETER}, /* > max 2 */
        {"s@a.test", "r@b.test", NULL, NULL, 0, 0, ERROR_INVALID_PARAMETER},
        {"s@a.test\r\nRSET", "r@b.test", NULL, NULL, 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "r@b.test>\r\nDATA", NULL, NULL, 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "", NULL, NULL, 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "r@b.test", "a b", NULL, 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "r@b.test", "a+4", NULL, 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "r@b.test", "a+41", NULL, 0, 1, ERROR_SUCCESS},
        {"s@a.test", "r@b.test", NULL, "rfc822", 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "r@b.test", NULL, "rfc822;a=b", 0, 1, ERROR_INVALID_DATA},
        {"s@a.test", "r@b.test", NULL, NULL, SMTP_NOTIFY_NEVER | SMTP_NOTIFY_DELAY, 1,
         ERROR_INVALID_DATA},
    };
    for (size_t i = 0; i < N(rows); i++) {
        smtp_client_rcpt r[3] = {{rows[i].rcpt, rows[i].notify, rows[i].orcpt},
                                 {rows[i].rcpt, 0, NULL},
                                 {rows[i].rcpt, 0, NULL}};
        smtp_client_msg m = {rows[i].from, r, rows[i].nrcpt, 0, false, SMTP_RET_NONE, rows[i].envid,
                             blob_read,    &b};
        smtp_client *t;
        assert_int_equal(smtp_client_new(&cfg, NULL, &t), 0);
        int rc = smtp_client_send(t, &m);
        if (rc != rows[i].want)
            fail_msg("row %zu: got %d want %d", i, rc, rows[i].want);
        if (!rc) { /* a second message while one is in flight */
            assert_false(smtp_client_ready(t));
            assert_int_equal(smtp_client_send(t, &m), ERROR_INVALID_PARAMETER);
        }
        smtp_client_free(t);
    }
    smtp_client_free(c);
}

static void test_result_format(void **state)
{
    (void)state;
    smtp_result r = {SMTP_PERMANENT, SMTP_STAGE_RCPT, 550, false, "5.1.1", "no such user"};
    char out[64];
    assert_string_equal(smtp_result_format(&r, out, sizeof out), "550 5.1.1 no such user");
    smtp_result l = {SMTP_TRANSIENT, SMTP_STAGE_DOT, 0, true, "4.4.2", "lost connection"};
    assert_string_equal(smtp_result_format(&l, out, sizeof out), "4.4.2 lost connection");
    assert_string_equal(smtp_result_format(&r, out, 8), "550 5.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_parse),       cmocka_unit_test(test_reply_limits),
        cmocka_unit_test(test_conversations),     cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_qp_long_line),      cmocka_unit_test(test_over_long_reply),
        cmocka_unit_test(test_timeouts),          cmocka_unit_test(test_extensions),
        cmocka_unit_test(test_send_checks),       cmocka_unit_test(test_result_format),
        cmocka_unit_test(test_reply_during_data), cmocka_unit_test(test_tls_auth),
        cmocka_unit_test(test_auth_secret),
    };
    return cmocka_run_group_tests_name("smtpclient", tests, NULL, NULL);
}
