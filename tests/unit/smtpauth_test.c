/* smtpauth_test.c - unit tests of the SMTP server session's STARTTLS and AUTH (RFC 3207, RFC
 * 4954) and of the SASL decoders: what is offered when, the injection after STARTTLS, the
 * fresh start after TLS, PLAIN and LOGIN exchanges, failures, limits and the starred trace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "reg/reg.h"
#include "smtp/smtp.h"

#include "expect.h"

#define HOST "mx.local.test"
#define GREET "220 " HOST " ESMTP Server (IMS Internet Mail Service) Ready\r\n"
#define EHLO "EHLO client.example\r\n"
#define EHLO_BASE                                                                                  \
    "250-" HOST " Hello [192.0.2.10]\r\n250-SIZE\r\n250-PIPELINING\r\n250-8BITMIME\r\n"            \
    "250-ENHANCEDSTATUSCODES\r\n"

/* What the callbacks saw. */
struct rec {
    buf events; /* "auth(PLAIN,alice,secret);sender(alice,a@b);..." */
    buf trace;  /* every traced command line, one per line */
    smtp_reply_id sender_answer;
};

static bool local_domain(void *arg, const char *domain)
{
    (void)arg;
    return !strcmp(domain, "local.test");
}

static unsigned cb_rcpt_check(void *arg, const smtp_path *addr, smtp_addr_class cls, void **data)
{
    (void)arg, (void)addr, (void)cls, (void)data;
    return 250;
}

static void cb_auth_check(void *arg, const char *mech, const smtp_sasl_creds *cr)
{
    struct rec *r = arg;
    buf_printf(&r->events, "auth(%s,%s,%.*s);", mech, cr->user, (int)cr->passlen, cr->pass);
}

static smtp_reply_id cb_sender_check(void *arg, const char *account, const smtp_path *from)
{
    struct rec *r = arg;
    buf_printf(&r->events, "sender(%s,%s);", account, from->mailbox);
    return r->sender_answer;
}

static int cb_data_begin(void *arg, const smtp_envelope *env)
{
    struct rec *r = arg;
    buf_printf(&r->events, "begin(tls=%d,account=%s);", env->tls, env->account);
    return 0;
}

static void cb_trace(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    struct rec *r = arg;
    if (kind == SMTP_TRACE_COMMAND) {
        buf_add(&r->trace, p, n);
        buf_addc(&r->trace, '\n');
    }
}

enum { OPT_STARTTLS = 1, OPT_PLAIN_AUTH = 2, OPT_REQUIRED = 4, OPT_RELAY = 8, OPT_TLS = 16 };

struct fx {
    smtp_config cfg;
    smtp_relay_policy policy;
    smtp_ip client, local;
    struct rec rec;
    smtp_session *s;
    buf out;
};

static void fx_open(struct fx *fx, unsigned opts)
{
    memset(fx, 0, sizeof *fx);
    smtp_config_defaults(&fx->cfg);
    fx->cfg.fqdn = HOST;
    fx->cfg.is_local = local_domain;
    fx->cfg.relay = &fx->policy; /* flags 0: nobody relays by address */
    fx->cfg.auth = true;
    fx->cfg.starttls = opts & OPT_STARTTLS;
    fx->cfg.auth_without_tls = opts & OPT_PLAIN_AUTH;
    fx->cfg.auth_required = opts & OPT_REQUIRED;
    fx->cfg.auth_relay = opts & OPT_RELAY;
    fx->cfg.tls = opts & OPT_TLS;
    assert_int_equal(smtp_ip_parse("192.0.2.10", &fx->client), 0);
    assert_int_equal(smtp_ip_parse("192.0.2.1", &fx->local), 0);
    smtp_callbacks cb = {0};
    cb.arg = &fx->rec;
    cb.rcpt_check = cb_rcpt_check;
    cb.data_begin = cb_data_begin;
    cb.auth_check = cb_auth_check;
    cb.sender_check = cb_sender_check;
    cb.trace = cb_trace;
    assert_int_equal(smtp_session_new(&fx->cfg, &cb, &fx->client, &fx->local, &fx->s), 0);
    smtp_session_output_drain(fx->s, SIZE_MAX);
}

static void fx_close(struct fx *fx)
{
    smtp_session_free(fx->s);
    buf_free(&fx->out);
    buf_free(&fx->rec.events);
    buf_free(&fx->rec.trace);
}

/* fx_feed - p[0..n) to the session; returns the bytes it used; its replies go to fx->out. */
static size_t fx_feed(struct fx *fx, const char *p, size_t n)
{
    size_t used, len;
    assert_int_equal(smtp_session_input(fx->s, p, n, &used), 0);
    const char *o = smtp_session_output(fx->s, &len);
    buf_add(&fx->out, o, len);
    smtp_session_output_drain(fx->s, len);
    return used;
}

static void fx_all(struct fx *fx, const char *p, size_t n)
{
    assert_int_equal(fx_feed(fx, p, n), n);
}

/* fx_take - what the session answered since the last take, as a string. */
static char *fx_take(struct fx *fx)
{
    static char copy[16384];
    size_t n = fx->out.len < sizeof copy - 1 ? fx->out.len : sizeof copy - 1;
    memcpy(copy, fx->out.data, n);
    copy[n] = '\0';
    fx->out.len = 0;
    return copy;
}

static void fx_done(struct fx *fx, smtp_auth_result r, const char *account)
{
    assert_true(smtp_session_authenticating(fx->s));
    assert_int_equal(smtp_session_auth_done(fx->s, r, account), 0);
    size_t len;
    const char *o = smtp_session_output(fx->s, &len);
    buf_add(&fx->out, o, len);
    smtp_session_output_drain(fx->s, len);
}

static const char *b64(const char *p, size_t n)
{
    static char out[20000];
    assert_true(base_b64_encode(p, n, out, sizeof out) != (size_t)-1);
    return out;
}

/* The decoders: each valid PLAIN form, each refusal, and the bounds. */
static void test_sasl_decode(void **state)
{
    (void)state;
    smtp_sasl_creds cr;
    const char *t = b64(S("\0alice\0secret"));
    assert_int_equal(smtp_sasl_plain_decode(t, strlen(t), &cr), SMTP_R_NONE);
    assert_string_equal(cr.user, "alice");
    assert_string_equal(cr.pass, "secret");
    assert_int_equal(cr.passlen, 6);
    t = b64(S("Alice\0alice\0pw"));
    assert_int_equal(smtp_sasl_plain_decode(t, strlen(t), &cr), SMTP_R_NONE);
    t = b64(S("bob\0alice\0pw")); /* acting for bob */
    assert_int_equal(smtp_sasl_plain_decode(t, strlen(t), &cr), SMTP_R_AUTH_FAILED);
    assert_string_equal(cr.user, ""); /* wiped */
    static const struct {
        const char *p;
        size_t n;
    } bad[] = {
        {S("alice secret")}, {S("\0alice")},   {S("\0\0secret")},
        {S("\0alice\0")},    {S("\0a\0b\0c")}, {S("")},
    };
    for (size_t i = 0; i < N(bad); i++) {
        t = b64(bad[i].p, bad[i].n);
        assert_int_equal(smtp_sasl_plain_decode(t, strlen(t), &cr), SMTP_R_AUTH_DECODE);
    }
    assert_int_equal(smtp_sasl_plain_decode(S("not base64!"), &cr), SMTP_R_AUTH_DECODE);
    /* A password of exactly the limit passes, one byte more does not. */
    char big[SMTP_AUTH_PASS_MAX + 16];
    big[0] = '\0';
    memcpy(big + 1, "u", 1);
    big[2] = '\0';
    memset(big + 3, 'p', SMTP_AUTH_PASS_MAX + 1);
    t = b64(big, 3 + SMTP_AUTH_PASS_MAX);
    assert_int_equal(smtp_sasl_plain_decode(t, strlen(t), &cr), SMTP_R_NONE);
    assert_int_equal(cr.passlen, SMTP_AUTH_PASS_MAX);
    t = b64(big, 3 + SMTP_AUTH_PASS_MAX + 1);
    assert_int_equal(smtp_sasl_plain_decode(t, strlen(t), &cr), SMTP_R_AUTH_DECODE);

    char out[16];
    size_t len;
    t = b64(S("alice"));
    assert_int_equal(smtp_sasl_text_decode(t, strlen(t), out, sizeof out, &len), SMTP_R_NONE);
    assert_string_equal(out, "alice");
    t = b64(S("a\0b"));
    assert_int_equal(smtp_sasl_text_decode(t, strlen(t), out, sizeof out, &len),
                     SMTP_R_AUTH_DECODE);
    t = b64(S("0123456789abcdef")); /* 16 bytes do not fit 15 and a NUL */
    assert_int_equal(smtp_sasl_text_decode(t, strlen(t), out, sizeof out, &len),
                     SMTP_R_AUTH_DECODE);
    assert_int_equal(smtp_sasl_text_decode("", 0, out, sizeof out, &len), SMTP_R_AUTH_DECODE);
}

/* Without a certificate nothing says STARTTLS; with one, EHLO offers it, and AUTH is refused
 * in clear text (530) and not offered until TLS. */
static void test_offers(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, 0);
    fx_all(&fx, S(EHLO "STARTTLS\r\nAUTH PLAIN\r\n"));
    assert_string_equal(fx_take(&fx),
                        EHLO_BASE "250 DSN\r\n"
                                  "502 5.5.1 Command not implemented\r\n"
                                  "530 5.7.0 Must issue a STARTTLS command first\r\n");
    fx_close(&fx);

    fx_open(&fx, OPT_STARTTLS);
    fx_all(&fx, S(EHLO));
    assert_string_equal(fx_take(&fx), EHLO_BASE "250-DSN\r\n250 STARTTLS\r\n");
    fx_close(&fx);

    fx_open(&fx, OPT_PLAIN_AUTH); /* AllowAuthWithoutTls */
    fx_all(&fx, S(EHLO));
    assert_string_equal(fx_take(&fx), EHLO_BASE "250-DSN\r\n250 AUTH PLAIN LOGIN\r\n");
    fx_close(&fx);

    fx_open(&fx, OPT_TLS | OPT_STARTTLS); /* implicit TLS: no STARTTLS, AUTH at once */
    assert_true(smtp_session_tls(fx.s));
    fx_all(&fx, S(EHLO "STARTTLS\r\n"));
    assert_string_equal(fx_take(&fx), EHLO_BASE "250-DSN\r\n250 AUTH PLAIN LOGIN\r\n"
                                                "503 5.5.1 TLS already active\r\n");
    fx_close(&fx);
}

/* STARTTLS: the bytes after its line are never read (the caller throws them away), and the
 * session after the handshake knows nothing of before: no EHLO, no transaction. */
static void test_starttls(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_STARTTLS);
    fx_all(&fx, S(EHLO));
    fx_take(&fx);
    const char inject[] =
        "STARTTLS\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<a@local.test>\r\n";
    assert_int_equal(fx_feed(&fx, S(inject)), strlen("STARTTLS\r\n"));
    assert_string_equal(fx_take(&fx), "220 2.0.0 Ready to start TLS\r\n");
    assert_true(smtp_session_want_tls(fx.s));
    assert_int_equal(fx_feed(&fx, S("NOOP\r\n")), 0); /* nothing is read until TLS is up */
    assert_int_equal(smtp_session_tls_started(fx.s), 0);
    assert_false(smtp_session_want_tls(fx.s));
    assert_true(smtp_session_tls(fx.s));
    fx_all(&fx, S("MAIL FROM:<a@remote.example>\r\n" EHLO "STARTTLS\r\n"));
    assert_string_equal(fx_take(&fx), "503 5.5.1 Send HELO/EHLO first\r\n" EHLO_BASE
                                      "250-DSN\r\n250 AUTH PLAIN LOGIN\r\n"
                                      "503 5.5.1 TLS already active\r\n");
    assert_int_equal(smtp_session_tls_started(fx.s), ERROR_INVALID_PARAMETER);
    fx_close(&fx);

    /* Not in a transaction, and no parameters. */
    fx_open(&fx, OPT_STARTTLS);
    fx_all(&fx, S(EHLO "MAIL FROM:<a@remote.example>\r\nSTARTTLS\r\nRSET\r\nSTARTTLS now\r\n"));
    assert_string_equal(fx_take(&fx),
                        EHLO_BASE "250-DSN\r\n250 STARTTLS\r\n"
                                  "250 2.1.0 Sender OK\r\n"
                                  "503 5.5.1 Not allowed during a mail transaction\r\n"
                                  "250 2.0.0 OK\r\n"
                                  "501 5.5.4 Syntax error in parameters or arguments\r\n");
    assert_false(smtp_session_want_tls(fx.s));
    fx_close(&fx);
}

/* PLAIN with and without an initial response, LOGIN, each answer the caller can give. */
static void test_auth_exchanges(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_TLS);
    fx_all(&fx, S(EHLO));
    fx_take(&fx);
    static char line[20100];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\nNOOP\r\n", b64(S("\0alice\0secret")));
    size_t first = strlen(line) - strlen("NOOP\r\n");
    assert_int_equal(fx_feed(&fx, line, strlen(line)), first); /* waits for the check */
    assert_string_equal(buf_cstr(&fx.rec.events), "auth(PLAIN,alice,secret);");
    assert_string_equal(fx_take(&fx), "");
    fx_done(&fx, SMTP_AUTH_OK, "alice");
    assert_string_equal(smtp_session_account(fx.s), "alice");
    fx_all(&fx, S("NOOP\r\nAUTH LOGIN\r\n"));
    assert_string_equal(fx_take(&fx), "235 2.7.0 Authentication successful\r\n250 2.0.0 OK\r\n"
                                      "503 5.5.1 Already authenticated\r\n");
    fx_close(&fx);

    /* PLAIN, the credentials after an empty 334; then LOGIN's two prompts. */
    fx_open(&fx, OPT_TLS);
    fx_all(&fx, S(EHLO));
    fx_take(&fx);
    fx_all(&fx, S("AUTH PLAIN\r\n"));
    assert_string_equal(fx_take(&fx), "334 \r\n");
    snprintf(line, sizeof line, "%s\r\n", b64(S("\0bob\0wrong")));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_FAILED, NULL);
    assert_string_equal(fx_take(&fx), "535 5.7.8 Authentication credentials invalid\r\n");
    fx_all(&fx, S("AUTH LOGIN\r\n"));
    assert_string_equal(fx_take(&fx), "334 VXNlcm5hbWU6\r\n");
    snprintf(line, sizeof line, "%s\r\n", b64(S("carol")));
    fx_all(&fx, line, strlen(line));
    assert_string_equal(fx_take(&fx), "334 UGFzc3dvcmQ6\r\n");
    snprintf(line, sizeof line, "%s\r\n", b64(S("pass word")));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_TEMP, NULL);
    assert_string_equal(fx_take(&fx), "454 4.7.0 Temporary authentication failure, try again "
                                      "later\r\n");
    /* LOGIN with the user name as initial response; "=" is an empty one (bad for PLAIN). */
    snprintf(line, sizeof line, "AUTH LOGIN %s\r\n", b64(S("dave")));
    fx_all(&fx, line, strlen(line));
    assert_string_equal(fx_take(&fx), "334 UGFzc3dvcmQ6\r\n");
    fx_all(&fx, S("*\r\nAUTH PLAIN =\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n!!!!\r\n"));
    assert_string_equal(fx_take(&fx), "501 5.0.0 Authentication cancelled\r\n"
                                      "501 5.5.2 Cannot decode the response\r\n"
                                      "504 5.5.4 Unrecognized authentication type\r\n"
                                      "334 \r\n501 5.5.2 Cannot decode the response\r\n");
    assert_string_equal(buf_cstr(&fx.rec.events),
                        "auth(PLAIN,bob,wrong);auth(LOGIN,carol,pass word);");
    assert_string_equal(smtp_session_account(fx.s), "");
    assert_int_equal(smtp_session_auth_failures(fx.s), 1);
    fx_close(&fx);
}

/* AUTH's place: after EHLO (not HELO), outside a transaction; an authzid for someone else is
 * a failure without a check. */
static void test_auth_sequence(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_TLS);
    static char line[20100];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64(S("\0alice\0secret")));
    fx_all(&fx, line, strlen(line));
    fx_all(&fx, S("HELO client.example\r\n"));
    fx_all(&fx, line, strlen(line));
    fx_all(&fx, S(EHLO "MAIL FROM:<x@remote.example>\r\n"));
    fx_all(&fx, line, strlen(line));
    fx_all(&fx, S("RSET\r\n"));
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64(S("root\0alice\0secret")));
    fx_all(&fx, line, strlen(line));
    const char *got = fx_take(&fx);
    assert_non_null(strstr(got, "503 5.5.1 Send HELO/EHLO first\r\n250 "));
    assert_non_null(strstr(got, "\r\n503 5.5.1 Send HELO/EHLO first\r\n250-"));
    assert_non_null(strstr(got, "250 2.1.0 Sender OK\r\n503 5.5.1 Not allowed during a mail "
                                "transaction\r\n250 2.0.0 OK\r\n"
                                "535 5.7.8 Authentication credentials invalid\r\n"));
    assert_string_equal(buf_cstr(&fx.rec.events), ""); /* no check was asked */
    assert_int_equal(smtp_session_auth_failures(fx.s), 1);
    fx_close(&fx);
}

/* The fifth failure ends the session. */
static void test_auth_failures(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_TLS);
    fx_all(&fx, S(EHLO));
    fx_take(&fx);
    static char line[20100];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64(S("\0alice\0guess")));
    for (unsigned i = 1; i <= SMTP_AUTH_FAILURES_MAX; i++) {
        assert_false(smtp_session_want_close(fx.s));
        fx_all(&fx, line, strlen(line));
        fx_done(&fx, SMTP_AUTH_FAILED, NULL);
    }
    assert_true(smtp_session_want_close(fx.s));
    const char *got = fx_take(&fx);
    assert_non_null(strstr(got, "535 5.7.8 Authentication credentials invalid\r\n"
                                "421 4.7.0 " HOST " Too many failed authentication attempts, "
                                "closing transmission channel\r\n"));
    assert_int_equal(fx_feed(&fx, S("NOOP\r\n")), 0);
    fx_close(&fx);
}

/* Submission: MAIL needs AUTH; an authenticated client relays (auth_relay) and its sender is
 * checked; the envelope says TLS and the account. Without auth_relay the policy decides. */
static void test_submission(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_TLS | OPT_REQUIRED | OPT_RELAY);
    fx_all(&fx, S(EHLO "MAIL FROM:<alice@local.test>\r\n"));
    static char line[20100];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64(S("\0alice\0secret")));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_OK, "alice");
    fx.rec.sender_answer = SMTP_R_SENDER_NOT_OWNED;
    fx_all(&fx, S("MAIL FROM:<bob@local.test>\r\n"));
    fx.rec.sender_answer = SMTP_R_NONE;
    fx_all(&fx, S("MAIL FROM:<alice@local.test>\r\nRCPT TO:<x@remote.example>\r\nDATA\r\n"));
    const char *got = fx_take(&fx);
    assert_non_null(strstr(got, "530 5.7.0 Authentication required\r\n"));
    assert_non_null(strstr(got,
                           "235 2.7.0 Authentication successful\r\n"
                           "550 5.7.1 Sender address does not belong to the authenticated "
                           "account\r\n250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 "));
    assert_string_equal(buf_cstr(&fx.rec.events),
                        "auth(PLAIN,alice,secret);sender(alice,bob@local.test);"
                        "sender(alice,alice@local.test);begin(tls=1,account=alice);");
    fx_close(&fx);

    fx_open(&fx, OPT_TLS); /* port 25: RelayFlags without bit 8 denies even after AUTH */
    fx_all(&fx, S(EHLO));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_OK, "alice");
    fx_all(&fx, S("MAIL FROM:<alice@local.test>\r\nRCPT TO:<x@remote.example>\r\n"));
    assert_non_null(strstr(fx_take(&fx), "550 5.7.1 relaying prohibited\r\n"));
    fx_close(&fx);

    fx_open(&fx, OPT_TLS);
    fx.policy.flags = SMTP_RELAY_AUTH; /* bit 8 */
    fx_all(&fx, S(EHLO "MAIL FROM:<a@remote.example>\r\nRCPT TO:<x@remote.example>\r\nRSET\r\n"));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_OK, "alice");
    fx_all(&fx, S("MAIL FROM:<alice@local.test>\r\nRCPT TO:<x@remote.example>\r\n"));
    got = fx_take(&fx);
    assert_non_null(strstr(got, "550 5.7.1 relaying prohibited\r\n"));
    assert_non_null(strstr(got, "235 2.7.0 Authentication successful\r\n250 2.1.0 Sender OK\r\n"
                                "250 2.1.5 Recipient OK\r\n"));
    fx_close(&fx);
}

/* The trace never holds credentials; AUTH lines may be longer than max_line, others not. */
static void test_auth_trace_and_length(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_TLS);
    fx_all(&fx, S(EHLO));
    static char line[20100];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64(S("\0alice\0secret")));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_FAILED, NULL);
    fx_all(&fx, S("AUTH LOGIN\r\n"));
    snprintf(line, sizeof line, "%s\r\n", b64(S("alice")));
    size_t ul = strlen(line);
    snprintf(line + ul, sizeof line - ul, "%s\r\n", b64(S("hunter2")));
    fx_all(&fx, line, strlen(line));
    fx_done(&fx, SMTP_AUTH_FAILED, NULL);
    assert_string_equal(buf_cstr(&fx.rec.trace),
                        "EHLO client.example\nAUTH PLAIN *\nAUTH LOGIN\n*\n*\n");
    fx_take(&fx);

    /* A 3000-byte password: a PLAIN line of about 4 KiB, over max_line (1000). */
    char pw[3 + 1000];
    memcpy(pw, "\0u\0", 3);
    memset(pw + 3, 'x', 1000);
    static char big[SMTP_AUTH_LINE_MAX + 20100];
    snprintf(big, sizeof big, "AUTH PLAIN %s\r\n", b64(pw, sizeof pw));
    assert_true(strlen(big) > 1000);
    fx_all(&fx, big, strlen(big));
    assert_string_equal(fx_take(&fx), "");
    fx_done(&fx, SMTP_AUTH_FAILED, NULL);
    /* ... an ordinary command that long is still too long, */
    memset(big, 'A', 1500);
    memcpy(big, "NOOP ", 5);
    memcpy(big + 1500, "\r\n", 3);
    fx_all(&fx, big, strlen(big));
    assert_non_null(strstr(fx_take(&fx), "500 5.5.2 Line too long\r\n"));
    /* ... and an AUTH line over SMTP_AUTH_LINE_MAX is too. */
    memset(big, 'A', SMTP_AUTH_LINE_MAX + 10);
    memcpy(big, "AUTH PLAIN ", 11);
    memcpy(big + SMTP_AUTH_LINE_MAX + 10, "\r\n", 3);
    fx_all(&fx, big, strlen(big));
    assert_string_equal(fx_take(&fx), "500 5.5.2 Line too long\r\n");
    fx_close(&fx);
}

/* A session freed or shut down while a check is pending: the late answer is refused. */
static void test_auth_pending_end(void **state)
{
    (void)state;
    struct fx fx;
    fx_open(&fx, OPT_TLS);
    fx_all(&fx, S(EHLO));
    static char line[20100];
    snprintf(line, sizeof line, "AUTH PLAIN %s\r\n", b64(S("\0alice\0secret")));
    fx_all(&fx, line, strlen(line));
    assert_int_equal(smtp_session_shutdown(fx.s), 0);
    assert_int_equal(smtp_session_auth_done(fx.s, SMTP_AUTH_OK, "alice"), ERROR_INVALID_PARAMETER);
    assert_string_equal(smtp_session_account(fx.s), "");
    fx_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sasl_decode),      cmocka_unit_test(test_offers),
        cmocka_unit_test(test_starttls),         cmocka_unit_test(test_auth_exchanges),
        cmocka_unit_test(test_auth_sequence),    cmocka_unit_test(test_auth_failures),
        cmocka_unit_test(test_submission),       cmocka_unit_test(test_auth_trace_and_length),
        cmocka_unit_test(test_auth_pending_end),
    };
    return cmocka_run_group_tests_name("smtpauth", tests, NULL, NULL);
}
