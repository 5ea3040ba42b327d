/* report_test.c - unit tests of lib/ims's delivery status notifications (report.c): a golden
 * NDR, returned content, ORCPT, NOTIFY, refusals, hostile subjects and diagnostics, the size
 * cap, the boundary and the Exchange diagnostic table. With IMS_REPORT_SAMPLES=<dir> it also
 * writes sample reports there for tests/e2e/test_report_parse.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/ims.h"

/* the report's own Content-Type header (a subject may hold "boundary=" too) */
#define CONTENT_TYPE "\r\nContent-Type: multipart/report; report-type=delivery-status;"
#define TOKEN "0000018F3A1B2C3D"
#define BOUNDARY0 "=_IMS_" TOKEN ".0="
#define T_ARRIVAL 1714570800 /* Wed, 1 May 2024 13:40:00 +0000 */
#define T_ATTEMPT 1714571100 /* 13:45:00 */
#define T_REPORT 1714571160  /* 13:46:00 */

static const char small_msg[] = "From: Alice <alice@example.org>\r\n"
                                "To: bob@example.com\r\n"
                                "Subject: Lunch\r\n"
                                "\ton Friday?\r\n"
                                "Date: Wed, 1 May 2024 13:40:00 +0200\r\n"
                                "Message-ID: <1@example.org>\r\n"
                                "\r\n"
                                "Hello Bob.\r\n"
                                ".\r\n"
                                "Bye\r\n";

static const ims_report_names names = {"ims.example.net", "Contoso", "Europe", "IMS1",
                                       "postmaster@example.net"};

/* The content source: bytes in memory, with a count of reads and an error to return. */
typedef struct src {
    const char *p;
    size_t n;
    unsigned reads;
    int fail;
} src;

static int src_read(void *arg, uint64_t off, void *p, size_t n, size_t *got)
{
    src *s = arg;
    s->reads++;
    *got = 0;
    if (s->fail)
        return s->fail;
    if (off >= s->n)
        return 0;
    if (n > s->n - off)
        n = (size_t)(s->n - off);
    memcpy(p, s->p + off, n);
    *got = n;
    return 0;
}

static int buf_write(void *arg, const void *p, size_t n)
{
    return buf_add(arg, p, n);
}

/* A report being built: the original, recipients, options, the output. */
typedef struct rp {
    src s;
    ims_report_original orig;
    ims_report_options opt;
    ims_report_info info;
    buf out;
} rp;

static void rp_init(rp *r, const char *content, size_t len)
{
    memset(r, 0, sizeof *r);
    r->s.p = content;
    r->s.n = len;
    r->orig = (ims_report_original){
        "alice@example.org", T_ARRIVAL, NULL, SMTP_RET_NONE, NULL, NULL, len, src_read, &r->s};
    r->opt = (ims_report_options){&names, TOKEN, T_REPORT, false, buf_write, &r->out};
}

static ims_report_rcpt failed(const char *addr, const char *status, const char *diag, unsigned code)
{
    return (ims_report_rcpt){addr, NULL, 0,    IMS_REPORT_FAILED, status,
                             NULL, diag, code, T_ATTEMPT,         0};
}

/* check_invariants - every line ends CRLF and is at most 998 octets before it; no bare CR
 * or LF; the boundary of the Content-Type occurs only there and as delimiter lines. Returns
 * the boundary (static). */
static const char *check_invariants(const buf *b)
{
    static char bnd[80];
    const char *s = (const char *)b->data;
    size_t n = b->len, col = 0;
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            assert_true(i + 1 < n && s[i + 1] == '\n');
            assert_in_range(col, 0, IMS_REPORT_LINE_MAX);
            col = 0;
            i++;
        } else {
            assert_int_not_equal(s[i], '\n');
            col++;
        }
    }
    assert_int_equal(col, 0);
    const char *ct = memmem(s, n, CONTENT_TYPE, strlen(CONTENT_TYPE));
    assert_non_null(ct);
    const char *bp = memmem(ct, n - (size_t)(ct - s), "boundary=\"", 10);
    assert_non_null(bp);
    bp += 10;
    const char *q = memchr(bp, '"', n - (size_t)(bp - s));
    assert_non_null(q);
    assert_in_range(q - bp, 1, 70);
    memcpy(bnd, bp, (size_t)(q - bp));
    bnd[q - bp] = '\0';
    size_t bl = strlen(bnd), seen = 0, delims = 0, closes = 0;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), bnd, bl)); p += bl) {
        seen++;
        if (p == bp)
            continue;
        assert_true(p >= s + 4 && !memcmp(p - 4, "\r\n--", 4));
        if (!memcmp(p + bl, "\r\n", 2))
            delims++;
        else if (!memcmp(p + bl, "--\r\n", 4))
            closes++;
        else
            fail_msg("boundary inside a line");
    }
    assert_int_equal(delims, 3);
    assert_int_equal(closes, 1);
    assert_int_equal(seen, 5);
    return bnd;
}

/* build - run the builder; on success check the invariants and NUL-terminate the output. */
static int build(rp *r, const ims_report_rcpt *rcpts, size_t n)
{
    int err = ims_report_build(&r->orig, rcpts, n, &r->opt, &r->info);
    if (!err) {
        assert_int_equal(r->info.size, r->out.len);
        check_invariants(&r->out);
        assert_non_null(buf_cstr(&r->out));
    }
    return err;
}

/* build1 - build with the one recipient rc. */
static int build1(rp *r, ims_report_rcpt rc)
{
    return build(r, &rc, 1);
}

/* part - the start of the body of the report's part i (0-2), NUL-terminated copy. */
static char *part(const rp *r, int i)
{
    const char *s = (const char *)r->out.data;
    const char *bp = strstr(strstr(s, CONTENT_TYPE), "boundary=\"") + 10;
    char delim[90];
    snprintf(delim, sizeof delim, "\r\n--%.*s", (int)(strchr(bp, '"') - bp), bp);
    const char *p = strstr(s, delim);
    for (int k = 0; k < i; k++)
        p = strstr(p + 1, delim);
    p += strlen(delim) + 2;
    const char *end = strstr(p, delim);
    char *copy = strndup(p, (size_t)(end - p));
    assert_non_null(copy);
    return copy;
}

static const char *golden =
    "From: System Administrator <postmaster@example.net>\r\n"
    "To: <alice@example.org>\r\n"
    "Subject: Undeliverable: Lunch on Friday?\r\n"
    "Date: Wed, 1 May 2024 13:46:00 +0000\r\n"
    "Message-ID: <0000018F3A1B2C3D@ims.example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    "Auto-Submitted: auto-replied\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    " boundary=\"=_IMS_0000018F3A1B2C3D.0=\"\r\n"
    "\r\n"
    "This is a delivery status notification in MIME format (RFC 3464).\r\n"
    "\r\n"
    "--=_IMS_0000018F3A1B2C3D.0=\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "Content-Description: Notification\r\n"
    "\r\n"
    "Your message did not reach some or all of the intended recipients.\r\n"
    "\r\n"
    "      Subject:  Lunch on Friday?\r\n"
    "      Sent:     Wed, 1 May 2024 13:40:00 +0200\r\n"
    "\r\n"
    "The following recipient(s) could not be reached:\r\n"
    "\r\n"
    "      bob@example.com on Wed, 1 May 2024 13:45:00 +0000\r\n"
    "            The recipient name is not recognized\r\n"
    "            MSEXCH:IMS:Contoso:Europe:IMS1 3550 550 5.1.1 <bob@example.com>:\r\n"
    "            user unknown\r\n"
    "\r\n"
    "      carol@example.com on Wed, 1 May 2024 13:45:00 +0000\r\n"
    "            No route to the destination was found\r\n"
    "            5.4.4 DNS lookup of MX for example.com failed: NXDOMAIN\r\n"
    "            MSEXCH:IMS:Contoso:Europe:IMS1 3902 (000B099C) Host Unknown\r\n"
    "\r\n"
    "--=_IMS_0000018F3A1B2C3D.0=\r\n"
    "Content-Type: message/delivery-status\r\n"
    "Content-Description: Delivery report\r\n"
    "\r\n"
    "Reporting-MTA: dns; ims.example.net\r\n"
    "Original-Envelope-Id: QQ+id\r\n"
    "Received-From-MTA: dns; client.example.org (192.0.2.7)\r\n"
    "Arrival-Date: Wed, 1 May 2024 13:40:00 +0000\r\n"
    "\r\n"
    "Original-Recipient: rfc822;bob@example.com\r\n"
    "Final-Recipient: rfc822;bob@example.com\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Remote-MTA: dns; mx.example.com\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: user unknown\r\n"
    "Last-Attempt-Date: Wed, 1 May 2024 13:45:00 +0000\r\n"
    "\r\n"
    "Final-Recipient: rfc822;carol@example.com\r\n"
    "Action: failed\r\n"
    "Status: 5.4.4\r\n"
    "Diagnostic-Code: X-IMS; 5.4.4 DNS lookup of MX for example.com failed:\r\n"
    " NXDOMAIN\r\n"
    "Last-Attempt-Date: Wed, 1 May 2024 13:45:00 +0000\r\n"
    "--=_IMS_0000018F3A1B2C3D.0=\r\n"
    "Content-Type: message/rfc822\r\n"
    "Content-Description: Original message\r\n"
    "\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.com\r\n"
    "Subject: Lunch\r\n"
    "\ton Friday?\r\n"
    "Date: Wed, 1 May 2024 13:40:00 +0200\r\n"
    "Message-ID: <1@example.org>\r\n"
    "\r\n"
    "Hello Bob.\r\n"
    ".\r\n"
    "Bye\r\n"
    "\r\n"
    "--=_IMS_0000018F3A1B2C3D.0=--\r\n";

static void test_golden(void **state)
{
    (void)state;
    rp r;
    rp_init(&r, small_msg, strlen(small_msg));
    r.orig.envid = "QQ+2Bid";
    r.orig.client_ip = "192.0.2.7";
    r.orig.helo = "client.example.org";
    ims_report_rcpt rc[2] = {
        failed("bob@example.com", "5.1.1", "550 5.1.1 <bob@example.com>: user unknown", 550),
        failed("carol@example.com", "5.4.4",
               "5.4.4 DNS lookup of MX for example.com failed: NXDOMAIN", 0),
    };
    rc[0].orcpt = "rfc822;bob+40example.com";
    rc[0].remote_mta = "mx.example.com";
    rc[1].notify = SMTP_NOTIFY_FAILURE;
    assert_int_equal(build(&r, rc, 2), 0);
    if (strcmp((char *)r.out.data, golden)) {
        const char *a = (char *)r.out.data, *b = golden;
        size_t i = 0;
        while (a[i] && a[i] == b[i])
            i++;
        fail_msg("differs at %zu: got \"%.60s\", want \"%.60s\"", i, a + i, b + i);
    }
    assert_int_equal(r.info.reported, 2);
    assert_true(r.info.full);
    assert_false(r.info.cut);
    assert_false(r.info.eightbit);
    assert_int_equal(r.s.reads, 3); /* the headers, then the content once per pass */
    buf_free(&r.out);
}

static void test_ret(void **state)
{
    (void)state;
    static const struct {
        smtp_ret ret;
        ims_report_action action;
        const char *type; /* the third part's */
        bool full;
    } cases[] = {
        {SMTP_RET_NONE, IMS_REPORT_FAILED, "message/rfc822", true},
        {SMTP_RET_FULL, IMS_REPORT_FAILED, "message/rfc822", true},
        {SMTP_RET_HDRS, IMS_REPORT_FAILED, "text/rfc822-headers", false},
        {SMTP_RET_NONE, IMS_REPORT_DELAYED, "text/rfc822-headers", false},
        {SMTP_RET_HDRS, IMS_REPORT_DELAYED, "text/rfc822-headers", false},
        {SMTP_RET_FULL, IMS_REPORT_DELAYED, "message/rfc822", true},
        {SMTP_RET_NONE, IMS_REPORT_DELIVERED, "text/rfc822-headers", false},
        {SMTP_RET_FULL, IMS_REPORT_RELAYED, "message/rfc822", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp r;
        rp_init(&r, small_msg, strlen(small_msg));
        r.orig.ret = cases[i].ret;
        ims_report_rcpt rc = failed("bob@example.com", "5.1.1", NULL, 0);
        rc.action = cases[i].action;
        rc.notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
        if (rc.action == IMS_REPORT_DELAYED)
            rc.status = "4.4.1";
        else if (rc.action != IMS_REPORT_FAILED)
            rc.status = "2.0.0";
        assert_int_equal(build(&r, &rc, 1), 0);
        char *p = part(&r, 2), want[64];
        snprintf(want, sizeof want, "Content-Type: %s\r\n", cases[i].type);
        if (strncmp(p, want, strlen(want)))
            fail_msg("case %zu: got \"%.40s\", want \"%s\"", i, p, want);
        assert_int_equal(r.info.full, cases[i].full);
        const char *body = strstr(p, "\r\n\r\n") + 4;
        /* the original's header section either way; its body only in full */
        assert_non_null(strstr(body, "Subject: Lunch\r\n\ton Friday?\r\n"));
        assert_true(!strncmp(body, "From: Alice", 11));
        assert_int_equal(strstr(body, "Hello Bob.") != NULL, cases[i].full);
        if (!cases[i].full) {
            const char *last = "Message-ID: <1@example.org>\r\n";
            assert_string_equal(body + strlen(body) - strlen(last), last);
        }
        free(p);
        buf_free(&r.out);
    }
}

static void test_orcpt(void **state)
{
    (void)state;
    static const struct {
        const char *orcpt, *want; /* want NULL: no Original-Recipient */
    } cases[] = {
        {"rfc822;bob+40example.com", "Original-Recipient: rfc822;bob@example.com\r\n"},
        {"rfc822;b+2Bx@example.com", "Original-Recipient: rfc822;b+x@example.com\r\n"},
        {"RFC822;b+2bx@example.com", "Original-Recipient: RFC822;b+x@example.com\r\n"},
        /* what would be a control, a space or 8-bit stays xtext */
        {"rfc822;a+0D+0ABcc:+20x+FF@e", "Original-Recipient: rfc822;a+0D+0ABcc:+20x+FF@e\r\n"},
        {"rfc822;bad+4", "Original-Recipient: rfc822;bad+4\r\n"},
        {NULL, NULL},
        {"noseparator", NULL},
        {";x@example.com", NULL},
        {"rfc822;", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp r;
        rp_init(&r, small_msg, strlen(small_msg));
        ims_report_rcpt rc = failed("bob@example.com", "5.1.1", NULL, 0);
        rc.orcpt = cases[i].orcpt;
        assert_int_equal(build(&r, &rc, 1), 0);
        char *ds = part(&r, 1);
        const char *got = strstr(ds, "Original-Recipient:");
        if (cases[i].want) {
            assert_non_null(got);
            assert_true(!strncmp(got, cases[i].want, strlen(cases[i].want)));
        } else {
            assert_null(got);
        }
        assert_non_null(strstr(ds, "\r\nFinal-Recipient: rfc822;bob@example.com\r\n"));
        free(ds);
        buf_free(&r.out);
    }
}

static void test_notify(void **state)
{
    (void)state;
    enum {
        N = SMTP_NOTIFY_NEVER,
        S = SMTP_NOTIFY_SUCCESS,
        F = SMTP_NOTIFY_FAILURE,
        D = SMTP_NOTIFY_DELAY
    };
    static const struct {
        unsigned notify;
        ims_report_action action;
        bool delay_default, reported;
    } cases[] = {
        {0, IMS_REPORT_FAILED, false, true},     {F, IMS_REPORT_FAILED, false, true},
        {S | F, IMS_REPORT_FAILED, false, true}, {S, IMS_REPORT_FAILED, false, false},
        {D, IMS_REPORT_FAILED, false, false},    {N, IMS_REPORT_FAILED, false, false},
        {0, IMS_REPORT_DELAYED, false, false},   {0, IMS_REPORT_DELAYED, true, true},
        {D, IMS_REPORT_DELAYED, false, true},    {F, IMS_REPORT_DELAYED, true, false},
        {N, IMS_REPORT_DELAYED, true, false},    {0, IMS_REPORT_DELIVERED, true, false},
        {S, IMS_REPORT_DELIVERED, false, true},  {F | D, IMS_REPORT_DELIVERED, false, false},
        {S, IMS_REPORT_RELAYED, false, true},    {S, IMS_REPORT_EXPANDED, false, true},
        {N, IMS_REPORT_RELAYED, false, false},
    };
    static const char *const subjects[] = {
        "Undeliverable: ", "Delayed: ", "Delivered: ", "Relayed: ", "Relayed: "};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp r;
        rp_init(&r, small_msg, strlen(small_msg));
        r.opt.delay_default = cases[i].delay_default;
        ims_report_rcpt rc = failed("bob@example.com", "5.1.1", NULL, 0);
        rc.action = cases[i].action;
        rc.notify = cases[i].notify;
        rc.status = rc.action == IMS_REPORT_FAILED    ? "5.1.1"
                    : rc.action == IMS_REPORT_DELAYED ? "4.4.7"
                                                      : "2.0.0";
        rc.retry_until = T_REPORT + 86400;
        int err = build(&r, &rc, 1);
        if (!cases[i].reported) {
            if (err != ENODATA)
                fail_msg("case %zu: got %d, want ENODATA", i, err);
            assert_int_equal(r.out.len, 0);
            continue;
        }
        if (err)
            fail_msg("case %zu: got %d, want 0", i, err);
        char want[64];
        snprintf(want, sizeof want, "\r\nSubject: %sLunch on Friday?\r\n", subjects[rc.action]);
        assert_non_null(strstr((char *)r.out.data, want));
        char *ds = part(&r, 1);
        assert_int_equal(strstr(ds, "Will-Retry-Until: Thu, 2 May 2024 13:46:00 +0000") != NULL,
                         rc.action == IMS_REPORT_DELAYED);
        free(ds);
        buf_free(&r.out);
    }

    /* A mixed report: only those NOTIFY lets through, the subject of the worst. */
    rp r;
    rp_init(&r, small_msg, strlen(small_msg));
    ims_report_rcpt rc[3] = {failed("a@example.com", "5.1.1", NULL, 0),
                             failed("b@example.com", "4.4.1", NULL, 0),
                             failed("c@example.com", "5.1.1", NULL, 0)};
    rc[1].action = IMS_REPORT_DELAYED;
    rc[1].notify = D;
    rc[2].notify = N;
    assert_int_equal(build(&r, rc, 3), 0);
    assert_int_equal(r.info.reported, 2);
    const char *s = (char *)r.out.data;
    assert_non_null(strstr(s, "\r\nSubject: Undeliverable: Lunch"));
    assert_non_null(strstr(s, "Final-Recipient: rfc822;a@example.com"));
    assert_non_null(strstr(s, "Final-Recipient: rfc822;b@example.com\r\nAction: delayed\r\n"));
    assert_null(strstr(s, "c@example.com"));
    assert_non_null(strstr(s, "Delivery to the following recipient(s) has been delayed:"));
    buf_free(&r.out);
}

static void test_refused(void **state)
{
    (void)state;
    ims_report_rcpt rc = failed("bob@example.com", "5.1.1", NULL, 0);
    rp r;

    rp_init(&r, small_msg, strlen(small_msg));
    r.orig.sender = "";
    assert_int_equal(build(&r, &rc, 1), ENOMSG);
    assert_int_equal(r.out.len, 0);
    assert_int_equal(r.s.reads, 0);

    static const char *const loops[] = {
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        "\tboundary=\"x\"\r\nSubject: Undeliverable: hi\r\n\r\nbody\r\n",
        "subject: x\r\ncontent-type :  Multipart/Report;report-type=disposition-notification\r\n"
        "\r\n",
        "Auto-Submitted: auto-replied\r\n\r\nI am away\r\n",
        "Auto-Submitted: auto-generated (vacation)\r\n\r\n",
        "Subject: x\r\nAuto-Submitted:\r\n Auto-Notified\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++) {
        rp_init(&r, loops[i], strlen(loops[i]));
        if (build(&r, &rc, 1) != ELOOP)
            fail_msg("case %zu: not refused", i);
        assert_int_equal(r.out.len, 0);
    }
    static const char *const fine[] = {
        "Auto-Submitted: no\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n",
        "Auto-Submitted: No (a comment)\r\n\r\n",
        "Subject: Content-Type: multipart/report\r\n\r\n",
        "X-Content-Type: multipart/report\r\n\r\nContent-Type: multipart/report\r\n",
        "",
        "no header at all, and no line end",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        rp_init(&r, fine[i], strlen(fine[i]));
        if (build(&r, &rc, 1) != 0)
            fail_msg("case %zu: refused", i);
        buf_free(&r.out);
    }
}

static void test_bad_args(void **state)
{
    (void)state;
    static const char *const tokens[] = {"", "a=b", "a b", "a\r\n",
                                         "0123456789012345678901234567890123456789012345678"};
    static const char *const statuses[] = {"5.1",    "6.1.1", "5.1.1.1", "5.1111.1",
                                           "5.1.1 ", "x",     NULL};
    ims_report_rcpt rc = failed("bob@example.com", "5.1.1", NULL, 0);
    rp r;
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        rp_init(&r, small_msg, strlen(small_msg));
        r.opt.token = tokens[i];
        assert_int_equal(build(&r, &rc, 1), EINVAL);
    }
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        rp_init(&r, small_msg, strlen(small_msg));
        rc.status = statuses[i];
        assert_int_equal(build(&r, &rc, 1), EINVAL);
    }
    rc.status = "5.1.1";
    rc.address = "";
    rp_init(&r, small_msg, strlen(small_msg));
    assert_int_equal(build(&r, &rc, 1), EINVAL);
    rc.address = "bob@example.com";
    rp_init(&r, small_msg, strlen(small_msg));
    r.orig.sender = NULL;
    assert_int_equal(build(&r, &rc, 1), EINVAL);
    rp_init(&r, small_msg, strlen(small_msg));
    r.opt.write = NULL;
    assert_int_equal(build(&r, &rc, 1), EINVAL);
    rp_init(&r, small_msg, strlen(small_msg));
    assert_int_equal(build(&r, &rc, 0), ENODATA);

    /* errors of read and write come back */
    rp_init(&r, small_msg, strlen(small_msg));
    r.s.fail = EIO;
    assert_int_equal(build(&r, &rc, 1), EIO);
    assert_int_equal(r.out.len, 0);
}

/* A subject that tries to end its line and add headers, and a long one. */
static void test_subject(void **state)
{
    (void)state;
    static const char *const hostile[] = {
        "Subject: hi\r\n\tBcc: victim@example.com\r\n\r\nx\r\n",
        "Subject: hi\r\n Bcc: victim@example.com\r\n\r\n",
        "Subject: hi\rBcc: victim@example.com\r\n\r\n",
        "Subject: hi\nBcc: victim@example.com\n\n",
        ("Subject: hi\x0b\x0c\x7f"
         "Bcc: victim@example.com\r\n\r\n"),
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        rp r;
        rp_init(&r, hostile[i], strlen(hostile[i]));
        assert_int_equal(build1(&r, failed("b@x.example", "5.1.1", NULL, 0)), 0);
        const char *s = (char *)r.out.data;
        const char *end = strstr(s, "\r\n\r\n");
        /* No header line of the report begins with Bcc */
        for (const char *p = s; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : p)
            assert_true(strncasecmp(p, "Bcc", 3));
        const char *subj = strstr(s, "\r\nSubject: Undeliverable: hi");
        assert_non_null(subj);
        buf_free(&r.out);
    }

    /* 3000 bytes of words: cut to IMS_REPORT_SUBJECT_MAX, folded at spaces */
    char *msg = malloc(4000);
    strcpy(msg, "Subject: ");
    for (int i = 0; i < 300; i++)
        strcat(msg, "word12345 ");
    strcat(msg, "\r\n\r\nbody\r\n");
    rp r;
    rp_init(&r, msg, strlen(msg));
    assert_int_equal(build1(&r, failed("b@x.example", "5.1.1", NULL, 0)), 0);
    const char *s = (char *)r.out.data;
    const char *subj = strstr(s, "\r\nSubject: ") + 2, *next = subj;
    size_t total = 0;
    do {
        const char *eol = strstr(next, "\r\n");
        assert_in_range(eol - next, 1, IMS_REPORT_FOLD);
        total += (size_t)(eol - next);
        next = eol + 2;
    } while (*next == ' ');
    assert_in_range(total, IMS_REPORT_SUBJECT_MAX - 10,
                    IMS_REPORT_SUBJECT_MAX + strlen("Subject: Undeliverable: "));
    buf_free(&r.out);

    /* One long word: never past 998 octets; a cut never splits a UTF-8 sequence */
    strcpy(msg, "Subject: ");
    for (int i = 0; i < 1000; i++)
        strcat(msg, "\xc3\xa9");
    strcat(msg, "\r\n\r\n");
    rp_init(&r, msg, strlen(msg));
    assert_int_equal(build1(&r, failed("b@x.example", "5.1.1", NULL, 0)), 0);
    s = (char *)r.out.data;
    /* folded after "Undeliverable:", the one space */
    subj = strstr(s, "\r\nSubject: Undeliverable:\r\n ");
    assert_non_null(subj);
    subj += 28;
    const char *eol = strstr(subj, "\r\n");
    assert_in_range(eol - subj, IMS_REPORT_SUBJECT_MAX - 3, IMS_REPORT_SUBJECT_MAX);
    assert_true(base_utf8_valid(subj, (size_t)(eol - subj)));
    assert_true(r.info.eightbit);
    /* the text part is ASCII: '?' for each 8-bit byte */
    char *text = part(&r, 0);
    assert_non_null(strstr(text, "Subject:"));
    assert_non_null(strstr(text, "??????"));
    for (const char *p = text; *p; p++)
        assert_true((unsigned char)*p < 0x80);
    free(text);
    /* the returned original holds the 8-bit header: it and the multipart are labelled */
    assert_non_null(strstr(s, "\r\nContent-Transfer-Encoding: 8bit\r\n"));
    buf_free(&r.out);
    free(msg);
}

/* Long diagnostics: folded in the delivery-status part, wrapped in the text. */
static void test_long_diag(void **state)
{
    (void)state;
    char diag[3000];
    strcpy(diag, "550 5.7.1 ");
    for (int i = 0; i < 100; i++)
        strcat(diag, "rejected ");
    strcat(diag, "https://example.com/");
    size_t n = strlen(diag);
    memset(diag + n, 'x', 1500);
    diag[n + 1500] = '\0';
    rp r;
    rp_init(&r, small_msg, strlen(small_msg));
    ims_report_rcpt rc = failed("bob@example.com", "5.7.1", diag, 550);
    assert_int_equal(build(&r, &rc, 1), 0);
    char *ds = part(&r, 1);
    const char *d = strstr(ds, "Diagnostic-Code: smtp; 550 5.7.1 rejected");
    assert_non_null(d);
    size_t lines = 0, total = 0;
    for (const char *p = d;; lines++) {
        const char *eol = strstr(p, "\r\n");
        assert_in_range(eol - p, 1, IMS_REPORT_LINE_MAX);
        total += (size_t)(eol - p);
        p = eol + 2;
        if (*p != ' ')
            break;
    }
    assert_true(lines >= 10);
    /* cut to IMS_REPORT_FIELD_MAX, plus the field name, "smtp; " and the folds' breaks */
    assert_in_range(total, IMS_REPORT_FIELD_MAX, IMS_REPORT_FIELD_MAX + 40);
    free(ds);
    char *text = part(&r, 0);
    for (const char *p = text; *p;) {
        const char *eol = strstr(p, "\r\n");
        assert_in_range(eol - p, 0, IMS_REPORT_TEXT_WIDTH);
        p = eol + 2;
    }
    assert_non_null(strstr(text, "MSEXCH:IMS:Contoso:Europe:IMS1 3550 550 5.7.1 rejected"));
    free(text);
    buf_free(&r.out);
}

/* A big original: headers only past the cap; lines made CRLF and at most 998 octets. */
static void test_big_original(void **state)
{
    (void)state;
    size_t n = IMS_REPORT_RETURN_MAX + 1;
    char *msg = malloc(n);
    const char *head = "Subject: big\nX-Long: ";
    size_t hl = strlen(head);
    memcpy(msg, head, hl);
    memset(msg + hl, 'h', 2000); /* a header line of 2000 bytes, bare LF ends */
    memcpy(msg + hl + 2000, "\n\n", 2);
    for (size_t i = hl + 2002; i < n; i++)
        msg[i] = (i % 1500 == 0) ? '\n' : (i % 1777 == 0) ? '\r' : 'b';
    rp r;
    rp_init(&r, msg, n);
    assert_int_equal(build1(&r, failed("b@x.example", "5.3.4", NULL, 0)), 0);
    assert_false(r.info.full);
    assert_true(r.info.cut);
    char *ret = part(&r, 2);
    assert_true(!strncmp(ret, "Content-Type: text/rfc822-headers\r\n", 35));
    assert_null(strstr(ret, "bbb"));
    assert_non_null(strstr(ret, "\r\nSubject: big\r\nX-Long: hhh"));
    free(ret);
    char *text = part(&r, 0);
    assert_non_null(strstr(text, "larger than 1048576 bytes: only its headers"));
    assert_non_null(strstr(text, "MSEXCH:IMS:Contoso:Europe:IMS1 3903 (000B099C) Message exceeds"));
    free(text);
    buf_free(&r.out);

    /* at the cap, all of it comes back (normalised: check_invariants holds) */
    rp_init(&r, msg, n - 1);
    assert_int_equal(build1(&r, failed("b@x.example", "5.3.4", NULL, 0)), 0);
    assert_true(r.info.full);
    assert_false(r.info.cut);
    assert_in_range(r.out.len, n, n + n / 100); /* CR made CRLF, long lines broken */
    buf_free(&r.out);
    free(msg);
}

/* The boundary never occurs in what the report holds, whatever the content. */
static void test_boundary(void **state)
{
    (void)state;
    static const struct {
        const char *content, *diag, *want;
    } cases[] = {
        {"Subject: x\r\n\r\n--=_IMS_" TOKEN ".0=\r\n", NULL, "=_IMS_" TOKEN ".1="},
        {"Subject: =_IMS_" TOKEN ".0=\r\n\r\n=_IMS_" TOKEN ".1=", "=_IMS_" TOKEN ".2=",
         "=_IMS_" TOKEN ".3="},
        /* near misses do not count */
        {"Subject: x\r\n\r\n=_IMS_" TOKEN ".01= =_IMS_" TOKEN ".0x =_IMS_" TOKEN "0= ==_IMS_" TOKEN
         ".00=",
         NULL, BOUNDARY0},
        {"Subject: x\r\n\r\n=_IMS_" TOKEN ".123456= ==_IMS_" TOKEN ".0=", NULL,
         "=_IMS_" TOKEN ".1="},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp r;
        rp_init(&r, cases[i].content, strlen(cases[i].content));
        ims_report_rcpt rc = failed("b@x.example", "5.1.1", cases[i].diag, 0);
        assert_int_equal(ims_report_build(&r.orig, &rc, 1, &r.opt, &r.info), 0);
        const char *bnd = check_invariants(&r.out);
        if (strcmp(bnd, cases[i].want))
            fail_msg("case %zu: got %s, want %s", i, bnd, cases[i].want);
        buf_free(&r.out);
    }
}

/* 8-bit content is labelled; the report says so. */
static void test_eightbit(void **state)
{
    (void)state;
    static const char msg[] = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n";
    rp r;
    rp_init(&r, msg, strlen(msg));
    assert_int_equal(build1(&r, failed("b@x.example", "5.1.1", NULL, 0)), 0);
    assert_true(r.info.eightbit);
    const char *s = (char *)r.out.data;
    assert_non_null(strstr(s, "\r\nSubject: Undeliverable: caf\xc3\xa9\r\n"));
    const char *hdr_end = strstr(s, "\r\n\r\n");
    const char *cte = strstr(s, "Content-Transfer-Encoding: 8bit\r\n");
    assert_true(cte && cte < hdr_end);
    char *ret = part(&r, 2);
    assert_non_null(strstr(ret, "Content-Transfer-Encoding: 8bit\r\n"));
    free(ret);
    buf_free(&r.out);
}

static void test_diag_table(void **state)
{
    (void)state;
    static const struct {
        const char *status;
        unsigned smtp;
        unsigned code;
        const char *hex, *text;
    } cases[] = {
        {"5.1.1", 550, 3550, NULL, NULL},
        {"5.1.3", 553, 3553, NULL, NULL},
        {"4.2.2", 452, 3452, NULL, NULL},
        {"5.1.1", 0, 0, "000C05A6", "Unknown Recipient"},
        {"5.1.4", 0, 0, "000C0595", "Ambiguous Recipient"},
        {"5.1.2", 0, 3902, "000B099C", "Host Unknown"},
        {"5.1.10", 0, 3902, "000B099C", "Host Unknown"},
        {"5.4.4", 0, 3902, "000B099C", "Host Unknown"},
        {"5.3.4", 0, 3903, "000B099C", "Message exceeds size limit."},
        {"5.2.3", 0, 3903, "000B099C", "Message exceeds size limit."},
        {"5.4.6", 0, 0, "00120270", "Too Many Hops"},
        {"5.5.3", 0, 0, "00010256", "Too many recipients."},
        {"4.4.2", 0, 0, NULL, NULL},
        {"5.4.7", 0, 0, NULL, NULL},
        {"5.6.3", 0, 0, NULL, NULL},
        {"5.7.1", 0, 0, NULL, NULL},
        {"5.1.11", 0, 0, NULL, NULL},
        {NULL, 0, 0, NULL, NULL},
        {"5.1.1", 999, 0, "000C05A6", "Unknown Recipient"}, /* not a reply code */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ims_report_diag d;
        ims_report_diag_map(cases[i].status, cases[i].smtp, &d);
        if (d.code != cases[i].code)
            fail_msg("case %zu: got code %u, want %u", i, d.code, cases[i].code);
        if (cases[i].hex)
            assert_string_equal(d.hex, cases[i].hex);
        else
            assert_null(d.hex);
        if (cases[i].text)
            assert_string_equal(d.text, cases[i].text);
        else
            assert_null(d.text);
    }
}

static void test_names(void **state)
{
    (void)state;
    ims_settings *s = calloc(1, sizeof *s);
    ims_report_names nm;
    strcpy(s->site_dn, "/o=Contoso/ou=Europe/cn=Configuration");
    strcpy(s->home_dsa, "IMS1");
    strcpy(s->site_domain, "example.net");
    ims_report_names_from_settings(s, "host1", &nm);
    assert_string_equal(nm.org, "Contoso");
    assert_string_equal(nm.site, "Europe");
    assert_string_equal(nm.server, "IMS1");
    assert_string_equal(nm.postmaster, "postmaster@example.net");
    strcpy(s->site_dn, "/OU=Site 2/O=Org Two");
    s->home_dsa[0] = '\0';
    s->site_domain[0] = '\0';
    ims_report_names_from_settings(s, "host1", &nm);
    assert_string_equal(nm.org, "Org Two");
    assert_string_equal(nm.site, "Site 2");
    assert_string_equal(nm.server, "host1");
    char want[300];
    snprintf(want, sizeof want, "postmaster@%s", nm.mta);
    assert_string_equal(nm.postmaster, want);
    strcpy(s->site_dn, "garbage");
    ims_report_names_from_settings(s, NULL, &nm);
    assert_string_equal(nm.org, "");
    assert_string_equal(nm.site, "");
    assert_string_equal(nm.server, "");
    free(s);
}

/* ims_report_read_fd over a file, content at an offset. */
static void test_read_fd(void **state)
{
    (void)state;
    char path[] = "/tmp/report_test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    const char *spool = "IMS-SPOOL 1\nfrom x\n\n";
    assert_int_equal(base_write_all(fd, spool, strlen(spool)), 0);
    assert_int_equal(base_write_all(fd, small_msg, strlen(small_msg)), 0);
    assert_int_equal(base_write_all(fd, "done 0\n", 7), 0);
    ims_report_fd file = {fd, strlen(spool), strlen(small_msg)};
    rp r;
    rp_init(&r, NULL, 0);
    r.orig.size = file.len;
    r.orig.read = ims_report_read_fd;
    r.orig.read_arg = &file;
    assert_int_equal(build1(&r, failed("b@x.example", "5.1.1", NULL, 0)), 0);
    char *ret = part(&r, 2);
    assert_non_null(strstr(ret, "Hello Bob.\r\n.\r\nBye\r\n"));
    assert_null(strstr(ret, "done 0"));
    assert_null(strstr(ret, "IMS-SPOOL"));
    free(ret);
    buf_free(&r.out);
    close(fd);
}

/* Sample reports for tests/e2e/test_report_parse.py, written when IMS_REPORT_SAMPLES names
 * a directory (the names are what the Python test expects). */
static void save(const char *dir, const char *name, rp *r, const ims_report_rcpt *rc, size_t n)
{
    assert_int_equal(build(r, rc, n), 0);
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.eml", dir, name);
        assert_int_equal(base_write_file_atomic(path, r->out.data, r->out.len, 0644), 0);
    }
    buf_free(&r->out);
}

static void test_samples(void **state)
{
    (void)state;
    const char *dir = getenv("IMS_REPORT_SAMPLES");
    rp r;
    ims_report_rcpt rc[3] = {
        failed("bob@example.com", "5.1.1", "550 5.1.1 <bob@example.com>: user unknown", 550),
        failed("carol@example.com", "5.4.4", "5.4.4 DNS lookup failed: NXDOMAIN", 0),
        failed("dave@example.com", "4.4.1", "4.4.1 connection timed out", 0),
    };
    rc[0].orcpt = "rfc822;bob+40example.com";
    rc[0].remote_mta = "mx.example.com";
    rc[2].action = IMS_REPORT_DELAYED;
    rc[2].notify = SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE;
    rc[2].retry_until = T_REPORT + 2 * 86400;

    rp_init(&r, small_msg, strlen(small_msg));
    r.orig.envid = "ENV+2B1";
    save(dir, "failed-full", &r, rc, 2);

    rp_init(&r, small_msg, strlen(small_msg));
    r.orig.ret = SMTP_RET_HDRS;
    save(dir, "failed-hdrs", &r, rc, 3);

    rp_init(&r, small_msg, strlen(small_msg));
    save(dir, "delayed", &r, rc + 2, 1);

    ims_report_rcpt ok = {"erin@example.com",
                          "rfc822;Erin+2BTag@example.com",
                          SMTP_NOTIFY_SUCCESS,
                          IMS_REPORT_DELIVERED,
                          "2.0.0",
                          NULL,
                          NULL,
                          0,
                          T_ATTEMPT,
                          0};
    rp_init(&r, small_msg, strlen(small_msg));
    r.orig.ret = SMTP_RET_FULL;
    save(dir, "delivered-full", &r, &ok, 1);

    static const char hostile[] =
        "Subject: =?utf-8?q?caf=C3=A9?= hi\r\n\tBcc: victim@example.com\r\n"
        "Content-Type: multipart/mixed; boundary=\"=_IMS_" TOKEN ".0=\"\r\n"
        "\r\n--=_IMS_" TOKEN ".0=\r\n\r\npart\r\n--=_IMS_" TOKEN ".0=--\r\n";
    rp_init(&r, hostile, strlen(hostile));
    save(dir, "collision", &r, rc, 1);

    size_t n = IMS_REPORT_RETURN_MAX + 100;
    char *big = malloc(n);
    memset(big, 'b', n);
    memcpy(big, "Subject: big\r\n\r\n", 16);
    for (size_t i = 80; i < n; i += 80)
        memcpy(big + i - 2, "\r\n", 2);
    rp_init(&r, big, n);
    save(dir, "big-cut", &r, rc, 1);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),       cmocka_unit_test(test_ret),
        cmocka_unit_test(test_orcpt),        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_subject),      cmocka_unit_test(test_long_diag),
        cmocka_unit_test(test_big_original), cmocka_unit_test(test_boundary),
        cmocka_unit_test(test_eightbit),     cmocka_unit_test(test_diag_table),
        cmocka_unit_test(test_names),        cmocka_unit_test(test_read_fd),
        cmocka_unit_test(test_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
