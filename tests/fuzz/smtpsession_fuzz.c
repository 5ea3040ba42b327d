/* smtpsession_fuzz.c - libFuzzer target for the SMTP server session: the first 4 bytes choose
 * the configuration and how the rest is cut into reads; the rest is what a client sends. The
 * session must never crash, never hold more output than its bound, only stop reading for a
 * reason it reports, answer in well-formed reply lines only, and pair every data_begin with
 * exactly one data_end or data_abort. Every pending commit is finished with data_done. The
 * trace callback must show every reply byte exactly once; mail_check refuses now and then.
 * STARTTLS is offered (or the session is under TLS from the start, a submissions listener):
 * when the session wants TLS, the bytes the client pipelined after the command are thrown
 * away (or the client waited for the 220) and the handshake succeeds or fails. AUTH PLAIN
 * and LOGIN are offered under TLS, or also without it: auth_check accepts one password
 * (FUZZ_PASSWORD) and refuses the others, calling smtp_session_auth_done from inside the
 * callback or after the input call returns; sender_check refuses now and then. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"

#define FUZZ_HEADER 4
#define FUZZ_REPLY_SLACK 1024       /* one command's replies beyond SMTP_OUTPUT_MAX */
#define FUZZ_PASSWORD "fuzz-secret" /* "AGFsaWNlAGZ1enotc2VjcmV0" is PLAIN's alice with it */

struct fuzz {
    smtp_session *s;
    unsigned begun, refused, ended, aborted, commits;
    bool in_data;
    uint64_t bytes;
    uint64_t traced; /* reply bytes the trace callback was shown */
    unsigned mails;  /* mail_check calls */
    unsigned live;   /* recipient tokens attached and not yet released */
    bool auth_later; /* auth_check leaves smtp_session_auth_done to the loop */
    bool auth_without_tls;
    bool tls;        /* the handshake was made (or TLS from the start) */
    unsigned checks; /* auth_check calls */
    unsigned senders;
    /* auth_later: the answer the loop gives */
    bool pending;
    smtp_auth_result result;
    char account[SMTP_AUTH_USER_MAX + 1];
};

/* fz_rcpts_held - every recipient of the envelope carries its token. */
static bool fz_rcpts_held(struct fuzz *f, const smtp_envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        if (env->rcpt[i].data != &f->live)
            return false;
    return env->nrcpt <= f->live;
}

static bool fz_local(void *arg, const char *domain)
{
    (void)arg;
    return smtp_domain_match("local.test", domain);
}

/* fz_rcpt attaches a counted token to every recipient it answers; the session must hand each
 * back exactly once (fz_release), whatever the input did to the transaction. */
static unsigned fz_rcpt(void *arg, const smtp_path *addr, smtp_addr_class cls, void **data)
{
    struct fuzz *f = arg;
    CHECK(cls == SMTP_ADDR_LOCAL || cls == SMTP_ADDR_REMOTE);
    CHECK(*data == NULL);
    *data = &f->live;
    f->live++;
    size_t len = strlen(addr->local);
    if (cls == SMTP_ADDR_REMOTE)
        return len % 3 == 1 ? 453 : 250;
    return len % 5 == 1 ? 550 : len % 7 == 3 ? 451 : 250;
}

static void fz_release(void *arg, void *data)
{
    struct fuzz *f = arg;
    CHECK(data == &f->live && f->live > 0);
    f->live--;
}

static int fz_begin(void *arg, const smtp_envelope *env)
{
    struct fuzz *f = arg;
    CHECK(!f->in_data && env->nrcpt >= 1 && env->from && env->helo && fz_rcpts_held(f, env));
    CHECK(env->tls == f->tls && env->account);
    CHECK(strlen(env->account) <= SMTP_AUTH_USER_MAX);
    for (const char *a = env->account; *a; a++)
        CHECK((unsigned char)*a >= 0x20 && *a != 0x7f); /* cleaned for logs and Received */
    f->begun++;
    if (f->begun % 11 == 5) {
        f->refused++; /* now and then the spool cannot be opened */
        return 1;
    }
    f->in_data = true;
    f->bytes = 0;
    return 0;
}

static int fz_chunk(void *arg, const char *p, size_t n)
{
    struct fuzz *f = arg;
    CHECK(f->in_data && n > 0);
    /* Clean data only: CRLF line ends, no NUL. */
    for (size_t i = 0; i < n; i++) {
        CHECK(p[i] != '\0');
        if (p[i] == '\n')
            CHECK(i > 0 ? p[i - 1] == '\r' : true);
    }
    f->bytes += n;
    return 0;
}

static void fz_end(void *arg, const smtp_envelope *env)
{
    struct fuzz *f = arg;
    CHECK(f->in_data && env->size == f->bytes && env->nrcpt >= 1 && fz_rcpts_held(f, env));
    f->in_data = false;
    f->ended++;
}

static void fz_abort(void *arg)
{
    struct fuzz *f = arg;
    CHECK(f->in_data);
    f->in_data = false;
    f->aborted++;
}

static void check_output(const char *o, size_t len);

static void fz_trace(void *arg, smtp_trace_kind kind, const char *p, size_t n)
{
    struct fuzz *f = arg;
    if (kind == SMTP_TRACE_REPLY) {
        check_output(p, n); /* whole reply lines */
        f->traced += n;
    } else {
        CHECK(kind == SMTP_TRACE_COMMAND && memchr(p, '\n', n) == NULL);
    }
}

static unsigned fz_mail_check(void *arg, const smtp_path *from)
{
    struct fuzz *f = arg;
    (void)from;
    f->mails++;
    return f->mails % 5 == 0 ? 452 : f->mails % 7 == 0 ? 0 : 250;
}

/* fz_auth_check - credentials as the decoders hand them over: a user name without NUL within
 * its limit, a password of passlen bytes; only offered under TLS unless allowed without. */
static void fz_auth_check(void *arg, const char *mech, const smtp_sasl_creds *creds)
{
    struct fuzz *f = arg;
    CHECK(!strcmp(mech, "PLAIN") || !strcmp(mech, "LOGIN"));
    CHECK(f->tls || f->auth_without_tls);
    CHECK(!f->in_data && !f->pending && smtp_session_authenticating(f->s));
    size_t ulen = strnlen(creds->user, sizeof creds->user);
    CHECK(ulen >= 1 && ulen <= SMTP_AUTH_USER_MAX);
    CHECK(creds->passlen >= 1 && creds->passlen <= SMTP_AUTH_PASS_MAX &&
          strnlen(creds->pass, sizeof creds->pass) == creds->passlen);
    f->checks++;
    smtp_auth_result r = strcmp(creds->pass, FUZZ_PASSWORD) ? SMTP_AUTH_FAILED
                         : f->checks % 13 == 0              ? SMTP_AUTH_TEMP
                                                            : SMTP_AUTH_OK;
    if (f->auth_later) {
        f->pending = true;
        f->result = r;
        memcpy(f->account, creds->user, ulen + 1);
        return;
    }
    CHECK(smtp_session_auth_done(f->s, r, creds->user) == 0);
    CHECK(!smtp_session_authenticating(f->s));
}

static smtp_reply_id fz_sender_check(void *arg, const char *account, const smtp_path *from)
{
    struct fuzz *f = arg;
    CHECK(account && from && !strcmp(account, smtp_session_account(f->s)));
    f->senders++;
    return f->senders % 6 == 0            ? SMTP_R_SENDER_NOT_OWNED
           : strlen(from->local) % 9 == 4 ? SMTP_R_SENDER_NOT_LOCAL
           : f->senders % 17 == 0         ? SMTP_R_LOCAL_ERROR
                                          : SMTP_R_NONE;
}

/* check_output - reply lines only: "ddd" then ' ' or '-', printable text, CRLF. */
static void check_output(const char *o, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *lf = memchr(o + i, '\n', len - i);
        CHECK(lf != NULL);
        size_t end = (size_t)(lf - o);
        CHECK(end - i >= 5 && o[end - 1] == '\r');
        CHECK(o[i] >= '2' && o[i] <= '5' && o[i + 1] >= '0' && o[i + 1] <= '5' && o[i + 2] >= '0' &&
              o[i + 2] <= '9' && (o[i + 3] == ' ' || o[i + 3] == '-'));
        for (size_t k = i; k < end - 1; k++)
            CHECK((unsigned char)o[k] >= 0x20 && o[k] != 0x7f);
        i = end + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < FUZZ_HEADER)
        return 0;
    uint8_t sel = d[0], cut = d[1], errs = d[2], sizes = d[3];
    d += FUZZ_HEADER, n -= FUZZ_HEADER;

    smtp_relay_policy policy = {0};
    policy.flags = sel >> 4;
    smtp_relay_list_add(&policy.allow, "10.0.0.0;255.0.0.0");
    smtp_relay_list_add(&policy.deny, "10.9.0.0;255.255.0.0");
    smtp_config cfg;
    smtp_config_defaults(&cfg);
    cfg.fqdn = "mx.local.test";
    cfg.is_local = fz_local;
    cfg.relay = &policy;
    cfg.advertise_extensions = !(sel & 1);
    cfg.max_size = (sel & 2) ? (uint64_t)sizes * 4 : 0;
    cfg.max_errors = 1 + errs % 20;
    cfg.max_line = (sel & 4) ? SMTP_LINE_MIN : SMTP_LINE_MAX;
    cfg.mode = (sel & 8) && (errs & 0x80) ? SMTP_TRANSFER_NONE : SMTP_TRANSFER_INOUT;
    /* TLS and AUTH: cut's low bit cuts the reads, the others choose (it seeds the reads'
     * generator too); errs's 0x40 makes a submission listener, with 0x20 a submissions one. */
    bool pipelined = cut & 8; /* the client sends on after STARTTLS */
    bool handshake_fails = (cut & 0x30) == 0x30;
    cfg.auth = true;
    cfg.auth_without_tls = cut & 2;
    cfg.auth_required = errs & 0x40;
    cfg.auth_relay = cfg.auth_required;
    cfg.tls = cfg.auth_required && (errs & 0x20);
    cfg.starttls = !cfg.tls && !(cut & 0x40);

    struct fuzz f = {0};
    f.auth_later = cut & 4;
    f.auth_without_tls = cfg.auth_without_tls;
    f.tls = cfg.tls;
    smtp_callbacks cb = {&f,     fz_rcpt,    fz_begin,      fz_chunk,
                         fz_end, fz_abort,   fz_trace,      fz_mail_check,
                         NULL,   fz_release, fz_auth_check, fz_sender_check};
    uint64_t sent = 0; /* output bytes drained */
    smtp_ip client, local;
    smtp_ip_parse((sel & 0x20) ? "10.1.2.3" : "192.0.2.10", &client);
    smtp_ip_parse("192.0.2.1", &local);
    smtp_session *s;
    if (smtp_session_new(&cfg, &cb, &client, &local, &s))
        abort();
    f.s = s;
    CHECK(smtp_session_tls(s) == cfg.tls);
    if (sel & 0x40)
        smtp_session_set_authenticated(s, true);

    size_t off = 0, avail = 0;
    uint32_t rng = cut * 2654435761u + 1;
    for (unsigned rounds = 0; rounds < 100000; rounds++) {
        if (avail == off && avail < n) {
            /* The next read: 1 to 256 bytes, or everything, by a tiny generator. */
            rng = rng * 1103515245u + 12345u;
            size_t step = (cut & 1) ? n : 1 + ((rng >> 16) & 0xff);
            avail = avail + step < n ? avail + step : n;
        }
        size_t used = 0, len;
        int rc = smtp_session_input(s, (const char *)d + off, avail - off, &used);
        CHECK(rc == 0 && used <= avail - off);
        off += used;
        const char *o = smtp_session_output(s, &len);
        CHECK(len <= SMTP_OUTPUT_MAX + FUZZ_REPLY_SLACK);
        bool full = len >= SMTP_OUTPUT_MAX;
        check_output(o, len);
        /* Drain all of it, or now and then only the first line, as a slow socket would. */
        const char *lf = len ? memchr(o, '\n', len) : NULL;
        size_t take = (rng & 3) == 0 && lf ? (size_t)(lf - o) + 1 : len;
        smtp_session_output_drain(s, take);
        sent += take;
        if (smtp_session_want_close(s))
            break;
        if (smtp_session_committing(s)) {
            CHECK(!f.in_data);
            f.commits++;
            CHECK(smtp_session_data_done(s, f.commits % 3 != 0, (f.commits & 1) ? "Q" : NULL) == 0);
            continue;
        }
        if (smtp_session_want_tls(s)) {
            CHECK(!f.in_data && !f.tls && cfg.starttls);
            if (handshake_fails)
                break; /* the connection is closed */
            /* What came after the STARTTLS line is never fed to the session (CVE-2011-0411):
             * the rest of this read is thrown away; or the client waited for the 220. */
            if (pipelined)
                off = avail;
            else
                avail = off;
            CHECK(smtp_session_tls_started(s) == 0);
            CHECK(smtp_session_tls(s) && !smtp_session_want_tls(s));
            CHECK(smtp_session_tls_started(s) != 0);
            CHECK(!smtp_session_account(s)[0]); /* RFC 3207 4.2: not authenticated */
            f.tls = true;
            continue;
        }
        if (smtp_session_authenticating(s)) {
            CHECK(f.auth_later && f.pending);
            f.pending = false;
            CHECK(smtp_session_auth_done(s, f.result, f.account) == 0);
            CHECK(!smtp_session_authenticating(s));
            continue;
        }
        CHECK(!f.pending);
        CHECK(off == avail || full);
        if (off == n)
            break;
    }
    /* A pending commit is always finished before the session goes. */
    if (smtp_session_committing(s))
        CHECK(smtp_session_data_done(s, true, NULL) == 0);
    CHECK(smtp_session_data_done(s, true, NULL) != 0);
    /* So is a pending check (a real caller may also just free the session). */
    if (smtp_session_authenticating(s)) {
        CHECK(f.pending);
        CHECK(smtp_session_auth_done(s, f.result, f.account) == 0);
    }
    CHECK(smtp_session_auth_done(s, SMTP_AUTH_OK, "x") != 0);
    size_t left;
    smtp_session_output(s, &left);
    /* every reply traced, once (also one made inside auth_check) */
    CHECK(f.traced == sent + left);
    smtp_session_stats st;
    smtp_session_stats_get(s, &st);
    CHECK(st.errors <= cfg.max_errors);
    smtp_session_free(s);
    CHECK(!f.in_data);  /* freed during DATA: data_abort came */
    CHECK(f.live == 0); /* every recipient's data handed back exactly once */
    CHECK(f.begun == f.refused + f.ended + f.aborted);
    smtp_relay_policy_free(&policy);
    return 0;
}
