/* smtpclient_fuzz.c - libFuzzer target for the SMTP client session: the first bytes choose the
 * messages (recipients, 8-bit, DSN, a second message) and how the input is cut; then comes
 * the message data, then what the peer sends. Whatever the peer says, every recipient gets
 * exactly one result and every message one msg_done, results carry clean text, the output
 * never has a bare CR or LF or a line over 1000 octets, carries no 8-bit byte to a peer
 * without 8BITMIME, and waits in bounded amounts. The low bits of the fourth byte choose the
 * TLS policy, credentials and whether the handshake fails: AUTH is only ever sent under TLS,
 * and no message goes in plain text when the policy requires TLS. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reg/reg.h"
#include "smtp/smtp.h"
#include "fuzz.h"

#define FUZZ_HEADER 4
#define FUZZ_OUTPUT_MAX (SMTP_CLIENT_OUTPUT_LOW + 8 * SMTP_CLIENT_READ_MAX)

struct fuzz {
    const uint8_t *data;
    size_t data_len, data_off[2];
    unsigned step;
    unsigned results[2][4];
    unsigned done[2];
    size_t cur; /* the message being sent */
    /* Output invariants, across drains. */
    size_t line; /* octets of the current output line */
    bool cr;     /* the last output byte was a CR */
    bool eight;  /* an 8-bit byte was sent */
    smtp_client *c;
    smtp_tls_policy tls;
};

static void fz_rcpt(void *arg, const smtp_client_msg *m, size_t i, const smtp_result *r)
{
    struct fuzz *f = arg;
    (void)m;
    CHECK(i < 4 && f->results[f->cur][i] == 0 && f->done[f->cur] == 0);
    f->results[f->cur][i]++;
    CHECK((unsigned)r->outcome <= SMTP_PERMANENT && (unsigned)r->stage <= SMTP_STAGE_QUIT);
    CHECK(r->local == (r->code == 0));
    CHECK(r->code == 0 || (r->code >= 200 && r->code <= 599));
    CHECK(r->outcome != SMTP_DELIVERED || (r->code / 100 == 2 && r->stage == SMTP_STAGE_DOT));
    CHECK(r->enh[0] && strnlen(r->enh, sizeof r->enh) < sizeof r->enh);
    size_t t = strnlen(r->text, sizeof r->text);
    CHECK(t < sizeof r->text);
    for (size_t k = 0; k < t; k++)
        CHECK(r->text[k] >= 0x20 && r->text[k] <= 0x7e);
}

static void fz_done(void *arg, const smtp_client_msg *m)
{
    struct fuzz *f = arg;
    for (size_t i = 0; i < m->nrcpt; i++)
        CHECK(f->results[f->cur][i] == 1);
    CHECK(f->done[f->cur] == 0);
    f->done[f->cur]++;
}

static void fz_trace(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    struct fuzz *f = arg;
    CHECK(n <= SMTP_REPLY_LINE_MAX);
    if (kind == SMTP_TRACE_COMMAND && f->c) {
        bool tls = smtp_client_tls_active(f->c);
        if (n >= 4 && !memcmp(p, "AUTH", 4))
            CHECK(tls);
        if (n >= 4 && !memcmp(p, "MAIL", 4) && f->tls >= SMTP_TLS_ENCRYPT)
            CHECK(tls);
    }
    for (size_t i = 0; i < n; i++)
        CHECK(p[i] >= 0x20 && p[i] <= 0x7e);
}

static int fz_read(void *arg, char *p, size_t cap, size_t *got)
{
    struct fuzz *f = arg;
    size_t *off = &f->data_off[f->cur];
    size_t k = f->data_len - *off;
    if (k > cap)
        k = cap;
    f->step = f->step * 1103515245u + 12345u;
    size_t s = 1 + ((f->step >> 16) % 3000);
    if (k > s)
        k = s;
    if (k == 0 && (f->step >> 8) % 97 == 0)
        return -1; /* now and then the spool cannot be read */
    memcpy(p, f->data + *off, k);
    *off += k;
    *got = k;
    return 0;
}

/* check_output - the wire form: CRLF line ends only, lines of at most 1000 octets. */
static void check_output(struct fuzz *f, const char *o, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)o[i];
        if (f->cr)
            CHECK(c == '\n');
        else
            CHECK(c != '\n');
        f->cr = c == '\r';
        if (c >= 0x80)
            f->eight = true;
        f->line++;
        if (c == '\n') {
            CHECK(f->line <= 1000);
            f->line = 0;
        }
    }
}

static void drain(struct fuzz *f, smtp_client *c)
{
    for (unsigned rounds = 0; rounds < 100000; rounds++) {
        size_t len;
        const char *o = smtp_client_output(c, &len);
        CHECK(len <= FUZZ_OUTPUT_MAX);
        if (!len)
            return;
        check_output(f, o, len);
        smtp_client_output_drain(c, len);
    }
    abort(); /* output without end */
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < FUZZ_HEADER)
        return 0;
    uint8_t sel = d[0], cut = d[1], opt = d[3] & 0xf;
    size_t dlen = ((size_t)d[2] << 4 | d[3] >> 4);
    d += FUZZ_HEADER, n -= FUZZ_HEADER;
    if (dlen > n)
        dlen = n;

    struct fuzz f = {0};
    f.data = d;
    f.data_len = dlen;
    f.step = cut;
    const uint8_t *peer = d + dlen;
    size_t npeer = n - dlen;

    static const char *const addrs[] = {"a@b.example", "postmaster", "\"x y\"@c.example",
                                        "d@[192.0.2.1]"};
    smtp_client_rcpt rcpt[4];
    for (size_t i = 0; i < 4; i++)
        rcpt[i] = (smtp_client_rcpt){addrs[i], (sel & 0x10) ? SMTP_NOTIFY_FAILURE : 0,
                                     (sel & 0x20) ? "rfc822;a+40b.example" : NULL};
    smtp_client_msg m[2];
    for (size_t k = 0; k < 2; k++)
        m[k] = (smtp_client_msg){k ? "" : "s@a.example",
                                 rcpt,
                                 1 + ((sel >> (2 * k)) & 3),
                                 dlen + (sel & 0x40 ? 100000 : 0),
                                 (sel & 0x80) != 0,
                                 (sel & 0x20) ? SMTP_RET_HDRS : SMTP_RET_NONE,
                                 (sel & 0x10) ? "ENV+2B1" : NULL,
                                 fz_read,
                                 &f};
    size_t nmsg = 1 + (cut & 1);

    f.tls = (smtp_tls_policy)(opt & 3);
    bool creds = opt & 4, tls_fails = opt & 8;
    smtp_client_config cfg = {"client.example", 3, f.tls, creds ? "user" : NULL,
                              creds ? "secret" : NULL};
    smtp_client_callbacks cb = {&f, fz_rcpt, fz_done, fz_trace};
    smtp_client *c;
    CHECK(smtp_client_new(&cfg, &cb, &c) == 0);
    f.c = c;
    size_t sent = 0;
    uint32_t rng = cut * 2654435761u + 7;
    size_t off = 0;
    while (!smtp_client_want_close(c)) {
        if (sent < nmsg && smtp_client_ready(c)) {
            if (sent)
                CHECK(f.done[sent - 1] == 1);
            f.cur = sent;
            int rc = smtp_client_send(c, &m[sent]);
            CHECK(rc == 0 || (rc == ERROR_INVALID_PARAMETER && m[sent].nrcpt > 3));
            if (rc) {
                nmsg = sent;
                break;
            }
            sent++;
        } else if (sent == nmsg && smtp_client_ready(c) && (cut & 2)) {
            smtp_client_quit(c);
        }
        drain(&f, c);
        if (off == npeer)
            break;
        rng = rng * 1103515245u + 12345u;
        size_t step = (cut & 4) ? npeer - off : 1 + ((rng >> 16) & 0x7f);
        if (step > npeer - off)
            step = npeer - off;
        CHECK(smtp_client_input(c, (const char *)peer + off, step) == 0);
        off += step;
        if (smtp_client_tls_wanted(c))
            smtp_client_tls_done(c, !tls_fails, "fuzz");
        CHECK(smtp_client_timeout_secs(c) <= SMTP_TIMEOUT_DATA_TERM);
    }
    if (cut & 8)
        smtp_client_timeout(c);
    else
        smtp_client_eof(c);
    drain(&f, c);
    CHECK(smtp_client_want_close(c));
    CHECK(smtp_client_timeout_secs(c) == 0);
    /* Every message submitted is done, each recipient with exactly one result. */
    for (size_t k = 0; k < sent; k++) {
        CHECK(f.done[k] == 1);
        for (size_t i = 0; i < m[k].nrcpt; i++)
            CHECK(f.results[k][i] == 1);
    }
    if (!smtp_client_extensions(c)->eightbitmime)
        CHECK(!f.eight);
    smtp_client_free(c);
    return 0;
}
