/* tlsload.c - a load generator for inbound SMTP over STARTTLS, because Postfix's smtp-source
 * cannot speak TLS. It drives imsd and Postfix alike (bench/starttls.sh), as a real MTA peer
 * does: one connection per message, each doing connect, banner, EHLO, STARTTLS, a full TLS
 * handshake (no session resumption), EHLO again, MAIL, RCPT, DATA, QUIT, without pipelining.
 *
 *   tlsload [-s SESSIONS] [-m MESSAGES] [-l SIZE] [-f FROM] [-t TO] [-M HELO]
 *           [--tls13 | --tls12] [--cafile FILE] [--plain] [--quickack] [-w SECONDS]
 *           [-T SECONDS] [--handshakes | --idle N] HOST:PORT
 *
 * Modes:
 *   (default)     MESSAGES messages, SESSIONS connections at once; prints messages, seconds,
 *                 msgs/s and the TLS protocol, cipher and key exchange group used.
 *   --handshakes  MESSAGES connections that do connect, EHLO, STARTTLS, the handshake and QUIT
 *                 (under TLS), SESSIONS at once: handshakes per second.
 *   --idle N      N sessions that do EHLO, STARTTLS, EHLO and then stay idle; at most SESSIONS
 *                 of them are being set up at once. Once all N are idle it prints "idle N
 *                 ready" on its own line and holds them until SIGTERM, SIGINT or end of file on
 *                 standard input (so standard input must stay open: a pipe or a terminal).
 *
 * Any reply other than the one expected (220 banner, 250 EHLO, 220 STARTTLS, 2xx MAIL and RCPT,
 * 354 DATA, 2xx after the dot, 221 QUIT), a closed connection, a failed handshake, no progress
 * on a connection for -w SECONDS (default 60), a run longer than -T SECONDS (default 600, the
 * idle hold included) or a signal before the end: a message on stderr and exit 1. Usage: 2.
 * The final line on stdout is key=value fields, for scripts (bench/starttls.py reads it).
 *
 * --tls13 / --tls12 pin the protocol (default: TLS 1.2 or later, the server's choice).
 * The certificate is not verified unless --cafile names the CA file to verify it with (then
 * the chain and HOST, a name or an IP address, are checked). --plain leaves STARTTLS out, for
 * comparison with the same client without TLS. --quickack sets TCP_QUICKACK before each wait
 * for the server, so that the client acknowledges at once: without it a server that writes two
 * small TLS records in a row with Nagle's algorithm on (a session ticket, then the EHLO reply)
 * waits for Linux's delayed acknowledgement, about 40 ms, as it would with a real MTA peer;
 * with it the run shows the server's own cost. The message: From, To, Date, Message-Id and
 * Subject fields as smtp-source writes them, then SIZE bytes of body (lines of 78 "X" and
 * CRLF; a last line of 1 or 2 bytes is made 3). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TL_MAX_SESSIONS 20000   /* connections at once, idle ones included */
#define TL_MAX_MESSAGES 1000000 /* messages or handshakes in one run */
#define TL_MAX_SIZE (64 << 20)  /* body bytes */
#define TL_IN_MAX 8192          /* bytes of one reply (an EHLO reply is a few hundred) */
#define TL_OUT_MAX 2048         /* one command, or a message's header */
#define TL_ADDR_MAX 512         /* -f, -t and -M */
#define TL_STEPS_MAX 64         /* steps of one connection per wake-up before others get a turn */
#define TL_LINE 78              /* body characters a line, before CRLF */
#define TL_FD_SPARE 16          /* descriptors kept beside the connections */

enum mode {
    MODE_MAIL,
    MODE_HANDSHAKES,
    MODE_IDLE,
};

/* Where a connection is; each phase but CONNECT, HANDSHAKE and IDLE waits for one reply. */
enum phase {
    PH_CONNECT,   /* a non-blocking connect() under way */
    PH_BANNER,    /* the 220 greeting */
    PH_EHLO,      /* EHLO in plain text */
    PH_STARTTLS,  /* 220 to STARTTLS */
    PH_HANDSHAKE, /* SSL_connect() under way */
    PH_EHLO_TLS,  /* EHLO again, under TLS */
    PH_MAIL,
    PH_RCPT,
    PH_DATA, /* 354 */
    PH_DOT,  /* the reply to the message's end */
    PH_QUIT,
    PH_IDLE, /* set up, holding */
};

/* What each phase waits for: an exact code, or (code < 10) any code of that class. */
static const struct {
    const char *what;
    int want;
} phase_reply[] = {
    [PH_CONNECT] = {"connect", 0},
    [PH_BANNER] = {"the greeting", 220},
    [PH_EHLO] = {"EHLO", 250},
    [PH_STARTTLS] = {"STARTTLS", 220},
    [PH_HANDSHAKE] = {"the TLS handshake", 0},
    [PH_EHLO_TLS] = {"EHLO after STARTTLS", 250},
    [PH_MAIL] = {"MAIL FROM", 2},
    [PH_RCPT] = {"RCPT TO", 2},
    [PH_DATA] = {"DATA", 354},
    [PH_DOT] = {"the end of the message", 2},
    [PH_QUIT] = {"QUIT", 221},
    [PH_IDLE] = {"an idle session", 0},
};

typedef struct conn {
    int fd; /* -1: the slot is free */
    SSL *ssl;
    enum phase ph;
    unsigned id;      /* connection number, from 1 */
    short events;     /* what to poll for */
    double deadline;  /* monotonic seconds; 0: none (idle) */
    double tls_start; /* when STARTTLS was sent */
    bool starttls;    /* the plain EHLO reply offered it */
    size_t inlen;
    size_t outlen, outoff;
    const char *body; /* after out: the shared body with its final dot, or NULL */
    size_t bodyoff;
    char out[TL_OUT_MAX];
    char in[TL_IN_MAX];
} conn;

/* The run: the options, the connections and what has been counted. */
typedef struct run {
    enum mode mode;
    unsigned sessions, target; /* at once; messages, handshakes or idle sessions in all */
    size_t size;
    const char *from, *to, *helo;
    bool plain;
    bool quickack; /* TCP_QUICKACK before each wait for input */
    double step_timeout, run_timeout;
    char host[256];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool host_is_ip;
    SSL_CTX *ctx;
    char *body; /* the message body and ".\r\n" */
    size_t bodylen;
    char date[64];

    conn *conns;       /* cap slots */
    unsigned cap;      /* slots */
    unsigned *slots;   /* stack of free slot numbers */
    unsigned nfree;    /* on it */
    unsigned started;  /* connections opened */
    unsigned busy;     /* open and not idle */
    unsigned idle;     /* open and idle */
    unsigned finished; /* messages accepted, handshakes done (QUIT answered) */
    unsigned handshakes;
    double tls_ms; /* summed STARTTLS-to-handshake-done time */
    double t0;
    char proto[32], cipher[128], group[64]; /* of the first handshake */
    unsigned differing;                     /* handshakes with another protocol or cipher */
} run;

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* fatal - the run cannot go on: say why on stderr, exit 1 (the kernel closes the sockets). */
static void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fatal(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tlsload: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* conn_fail - a connection went wrong: that is the end of the run. */
static void conn_fail(const run *r, const conn *c, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
static void conn_fail(const run *r, const conn *c, const char *fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fatal("connection %u (%s): %s; %u done before", c->id, phase_reply[c->ph].what, why,
          r->finished);
}

/* ssl_text - OpenSSL's first queued error (or the verify result) as text; the queue is emptied. */
static const char *ssl_text(const conn *c, char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "no OpenSSL error queued");
    ERR_clear_error();
    if (v != X509_V_OK) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, " (certificate: %s)", X509_verify_cert_error_string(v));
    }
    return buf;
}

enum {
    IO_WAIT = -1, /* nothing now: c->events says what to wait for */
};

/* ssl_io - the meaning of an SSL_*_ex() call that returned rc <= 0: IO_WAIT, or 0 (closed). */
static ssize_t ssl_io(const run *r, conn *c, int rc, const char *what)
{
    char buf[256];
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        c->events = POLLIN;
        return IO_WAIT;
    case SSL_ERROR_WANT_WRITE:
        c->events = POLLOUT;
        return IO_WAIT;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || errno == ECONNRESET || errno == EPIPE)
            return 0; /* closed (without close_notify, or reset) */
        conn_fail(r, c, "%s: %s", what, strerror(errno));
    default:
        conn_fail(r, c, "%s: %s", what, ssl_text(c, buf, sizeof buf));
    }
}

/* conn_recv - read what there is: bytes, 0 when the peer closed, or IO_WAIT. */
static ssize_t conn_recv(const run *r, conn *c, char *p, size_t n)
{
    if (c->ssl) {
        size_t got;
        errno = 0;
        int rc = SSL_read_ex(c->ssl, p, n, &got);
        return rc == 1 ? (ssize_t)got : ssl_io(r, c, rc, "TLS read");
    }
    ssize_t got = recv(c->fd, p, n, 0);
    if (got >= 0)
        return got;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->events = POLLIN;
        return IO_WAIT;
    }
    if (errno == ECONNRESET)
        return 0;
    conn_fail(r, c, "read: %s", strerror(errno));
}

/* conn_send - write some of p: bytes written (> 0), or IO_WAIT. A closed peer ends the run. */
static ssize_t conn_send(const run *r, conn *c, const char *p, size_t n)
{
    if (c->ssl) {
        size_t put;
        errno = 0;
        int rc = SSL_write_ex(c->ssl, p, n, &put);
        if (rc == 1)
            return (ssize_t)put;
        ssize_t got = ssl_io(r, c, rc, "TLS write");
        if (got == 0)
            conn_fail(r, c, "the server closed the connection while we were writing");
        return got;
    }
    ssize_t put = send(c->fd, p, n, MSG_NOSIGNAL);
    if (put > 0)
        return put;
    if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->events = POLLOUT;
        return IO_WAIT;
    }
    conn_fail(r, c, "write: %s", put < 0 ? strerror(errno) : "nothing written");
}

/* conn_cmd - queue one command line for sending and go to phase ph. */
static void conn_cmd(conn *c, enum phase ph, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_cmd(conn *c, enum phase ph, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->out, sizeof c->out, fmt, ap);
    va_end(ap);
    c->outlen = n < 0 ? 0 : (size_t)n < sizeof c->out ? (size_t)n : sizeof c->out - 1;
    c->outoff = 0;
    c->body = NULL;
    c->ph = ph;
}

/* keyword - does an EHLO line's text (after "250-") name the extension kw? */
static bool keyword(const char *text, size_t len, const char *kw)
{
    size_t k = strlen(kw);
    return len >= k && !strncasecmp(text, kw, k) && (len == k || text[k] == ' ');
}

/* reply_take - take the first complete reply out of c->in: 1 with its code and first line, 0
 * when it is not all there yet. A malformed reply ends the run. */
static int reply_take(const run *r, conn *c, int *code, char *first, size_t firstn)
{
    size_t pos = 0;
    for (unsigned lines = 0; pos < c->inlen; lines++) { /* bounded by the buffer */
        char *line = c->in + pos;
        char *nl = memchr(line, '\n', c->inlen - pos);
        if (!nl)
            return 0;
        size_t len = (size_t)(nl - line);
        if (len && line[len - 1] == '\r')
            len--;
        bool ok = len >= 3 && isdigit((unsigned char)line[0]) && isdigit((unsigned char)line[1]) &&
                  isdigit((unsigned char)line[2]) && (len == 3 || line[3] == ' ' || line[3] == '-');
        int lc = ok ? (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0') : 0;
        if (!ok || (lines && lc != *code))
            conn_fail(r, c, "a malformed reply: \"%.*s\"", (int)(len < 200 ? len : 200), line);
        if (!lines) {
            *code = lc;
            snprintf(first, firstn, "%.*s", (int)len, line);
        } else if (len > 4 && keyword(line + 4, len - 4, "STARTTLS")) {
            c->starttls = true;
        }
        pos = (size_t)(nl - c->in) + 1;
        if (len == 3 || line[3] == ' ') {
            memmove(c->in, c->in + pos, c->inlen - pos);
            c->inlen -= pos;
            return 1;
        }
    }
    return 0;
}

static void conn_close(run *r, conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl); /* a close_notify, as MTAs send; not waiting for the peer's */
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    close(c->fd);
    if (c->ph == PH_IDLE)
        r->idle--;
    else
        r->busy--;
    c->fd = -1;
    c->ssl = NULL;
    r->slots[r->nfree++] = (unsigned)(c - r->conns);
}

/* tls_note - the first handshake's protocol, cipher and group; later ones that differ count. */
static void tls_note(run *r, conn *c)
{
    const char *proto = SSL_get_version(c->ssl);
    const char *cipher = SSL_get_cipher_name(c->ssl);
    r->handshakes++;
    r->tls_ms += (now_s() - c->tls_start) * 1e3;
    if (r->proto[0]) {
        if (strcmp(proto, r->proto) || strcmp(cipher, r->cipher))
            r->differing++;
        return;
    }
    snprintf(r->proto, sizeof r->proto, "%s", proto);
    snprintf(r->cipher, sizeof r->cipher, "%s", cipher);
    snprintf(r->group, sizeof r->group, "unknown");
    EVP_PKEY *key = NULL;
    if (SSL_get_peer_tmp_key(c->ssl, &key) && key) {
        size_t len = 0;
        if (EVP_PKEY_get_group_name(key, r->group, sizeof r->group, &len) != 1) {
            const char *t = EVP_PKEY_get0_type_name(key);
            snprintf(r->group, sizeof r->group, "%s", t ? t : "unknown");
        }
        EVP_PKEY_free(key);
    }
    ERR_clear_error();
}

/* tls_begin - the server said 220 to STARTTLS: start the handshake. */
static void tls_begin(run *r, conn *c)
{
    if (c->inlen)
        conn_fail(r, c, "%zu bytes after the 220 to STARTTLS (RFC 3207 forbids them)", c->inlen);
    c->ssl = SSL_new(r->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        fatal("SSL_new: out of memory");
    SSL_set_connect_state(c->ssl);
    if (!r->host_is_ip)
        SSL_set_tlsext_host_name(c->ssl, r->host);
    if (SSL_CTX_get_verify_mode(r->ctx) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        int ok = r->host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, r->host)
                               : X509_VERIFY_PARAM_set1_host(vp, r->host, 0);
        if (ok != 1)
            fatal("cannot set the name to verify (%s)", r->host);
    }
    c->ph = PH_HANDSHAKE;
}

/* after_ehlo - the session is ready for its work (under TLS, or plain with --plain). */
static void after_ehlo(run *r, conn *c)
{
    if (r->mode == MODE_MAIL) {
        conn_cmd(c, PH_MAIL, "MAIL FROM:<%s>\r\n", r->from);
    } else if (r->mode == MODE_HANDSHAKES) {
        conn_cmd(c, PH_QUIT, "QUIT\r\n");
    } else {
        c->ph = PH_IDLE;
        c->deadline = 0;
        c->events = POLLIN;
        r->busy--;
        r->idle++;
    }
}

/* message_header - the message's header fields, as smtp-source writes them, into c->out. */
static void message_header(run *r, conn *c)
{
    int n = snprintf(c->out, sizeof c->out,
                     "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\nMessage-Id: <%04x.%04x.%04x@%s>\r\n"
                     "Subject: tlsload message %u\r\n\r\n",
                     r->from, r->to, r->date, (unsigned)getpid() & 0xffff, c->id >> 16 & 0xffff,
                     c->id & 0xffff, r->helo, c->id);
    c->outlen = n < 0 ? 0 : (size_t)n < sizeof c->out ? (size_t)n : sizeof c->out - 1;
    c->outoff = 0;
    c->body = r->body;
    c->bodyoff = 0;
    c->ph = PH_DOT;
}

/* on_reply - a complete reply in phase c->ph: check it and go on. */
static void on_reply(run *r, conn *c, int code, const char *first)
{
    int want = phase_reply[c->ph].want;
    if (want < 10 ? code / 100 != want : code != want) {
        char w[16];
        snprintf(w, sizeof w, want < 10 ? "%dxx" : "%d", want);
        conn_fail(r, c, "got \"%s\", want %s", first, w);
    }
    switch (c->ph) {
    case PH_BANNER:
        conn_cmd(c, PH_EHLO, "EHLO %s\r\n", r->helo);
        break;
    case PH_EHLO:
        if (r->plain)
            after_ehlo(r, c);
        else if (!c->starttls)
            conn_fail(r, c, "the server does not offer STARTTLS");
        else {
            conn_cmd(c, PH_STARTTLS, "STARTTLS\r\n");
            c->tls_start = now_s();
        }
        break;
    case PH_STARTTLS:
        tls_begin(r, c);
        break;
    case PH_EHLO_TLS:
        after_ehlo(r, c);
        break;
    case PH_MAIL:
        conn_cmd(c, PH_RCPT, "RCPT TO:<%s>\r\n", r->to);
        break;
    case PH_RCPT:
        conn_cmd(c, PH_DATA, "DATA\r\n");
        break;
    case PH_DATA:
        message_header(r, c);
        break;
    case PH_DOT:
        r->finished++;
        conn_cmd(c, PH_QUIT, "QUIT\r\n");
        break;
    case PH_QUIT:
        if (r->mode == MODE_HANDSHAKES)
            r->finished++;
        conn_close(r, c);
        break;
    default:
        conn_fail(r, c, "a reply in a phase that expects none: \"%s\"", first);
    }
}

/* conn_step - one step of c: 1 when it made progress, 0 when it waits (c->events set, or the
 * connection closed). */
static int conn_step(run *r, conn *c)
{
    if (c->ph == PH_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len))
            err = errno;
        if (err)
            conn_fail(r, c, "%s", strerror(err));
        c->ph = PH_BANNER;
        return 1;
    }
    if (c->outoff < c->outlen || (c->body && c->bodyoff < r->bodylen)) {
        bool head = c->outoff < c->outlen;
        const char *p = head ? c->out + c->outoff : c->body + c->bodyoff;
        size_t n = head ? c->outlen - c->outoff : r->bodylen - c->bodyoff;
        ssize_t put = conn_send(r, c, p, n);
        if (put == IO_WAIT)
            return 0;
        if (head)
            c->outoff += (size_t)put;
        else
            c->bodyoff += (size_t)put;
        return 1;
    }
    if (c->ph == PH_HANDSHAKE) {
        errno = 0;
        int rc = SSL_connect(c->ssl);
        if (rc != 1) {
            if (ssl_io(r, c, rc, "TLS handshake") == IO_WAIT)
                return 0;
            conn_fail(r, c, "the server closed the connection during the handshake");
        }
        tls_note(r, c);
        if (r->mode == MODE_HANDSHAKES)
            conn_cmd(c, PH_QUIT, "QUIT\r\n");
        else
            conn_cmd(c, PH_EHLO_TLS, "EHLO %s\r\n", r->helo);
        return 1;
    }
    if (c->ph == PH_IDLE) { /* readable: TLS tickets are taken in; anything else is trouble */
        ssize_t got = conn_recv(r, c, c->in, sizeof c->in);
        if (got == IO_WAIT)
            return 0;
        if (got == 0)
            conn_fail(r, c, "the server closed an idle session");
        conn_fail(r, c, "the server said \"%.*s\" to an idle session", (int)(got < 200 ? got : 200),
                  c->in);
    }
    int code = 0;
    char first[512];
    if (reply_take(r, c, &code, first, sizeof first)) {
        on_reply(r, c, code, first);
        return c->fd >= 0;
    }
    if (c->inlen == sizeof c->in)
        conn_fail(r, c, "a reply longer than %zu bytes", sizeof c->in);
    ssize_t got = conn_recv(r, c, c->in + c->inlen, sizeof c->in - c->inlen);
    if (got == IO_WAIT)
        return 0;
    if (got == 0)
        conn_fail(r, c, "the server closed the connection");
    c->inlen += (size_t)got;
    return 1;
}

/* conn_run - run c until it waits; a bounded number of steps, so that no connection holds the
 * others up (after TL_STEPS_MAX it asks to be called again at once). */
static void conn_run(run *r, conn *c)
{
    if (c->ph != PH_IDLE)
        c->deadline = now_s() + r->step_timeout;
    for (int i = 0; i < TL_STEPS_MAX; i++) {
        if (!conn_step(r, c)) {
            int one = 1; /* quick acknowledgements stop after each send: on again */
            if (r->quickack && c->fd >= 0 && (c->events & POLLIN))
                setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
            return;
        }
    }
    c->events = POLLOUT; /* writable at once: back here on the next round */
}

/* conn_open - a new connection in a free slot, its connect() started. */
static void conn_open(run *r)
{
    conn *c = &r->conns[r->slots[--r->nfree]];
    memset(c, 0, offsetof(conn, out));
    c->id = ++r->started;
    c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        fatal("socket: %s", strerror(errno));
    r->busy++;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->deadline = now_s() + r->step_timeout;
    if (connect(c->fd, (struct sockaddr *)&r->addr, r->addrlen) == 0) {
        c->ph = PH_BANNER;
        c->events = POLLIN;
    } else if (errno == EINPROGRESS) {
        c->ph = PH_CONNECT;
        c->events = POLLOUT;
    } else {
        conn_fail(r, c, "%s", strerror(errno));
    }
}

static void make_body(run *r)
{
    size_t n = r->size, last = n % (TL_LINE + 2);
    if (last == 1 || last == 2)
        n += 3 - last;
    r->bodylen = n + 3;
    r->body = malloc(r->bodylen + 1);
    if (!r->body)
        fatal("out of memory for a %zu byte body", n);
    for (size_t i = 0; i < n; i += TL_LINE + 2) {
        size_t len = n - i < TL_LINE + 2 ? n - i : TL_LINE + 2;
        memset(r->body + i, 'X', len - 2);
        memcpy(r->body + i + len - 2, "\r\n", 2);
    }
    memcpy(r->body + n, ".\r\n", 4);
}

static void make_ctx(run *r, int version, const char *cafile)
{
    r->ctx = SSL_CTX_new(TLS_client_method());
    if (!r->ctx)
        fatal("SSL_CTX_new: out of memory");
    int lo = version ? version : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(r->ctx, lo) != 1 ||
        (version && SSL_CTX_set_max_proto_version(r->ctx, version) != 1))
        fatal("this OpenSSL cannot do the TLS version asked for");
    SSL_CTX_set_session_cache_mode(r->ctx, SSL_SESS_CACHE_OFF); /* a full handshake each time */
    SSL_CTX_set_mode(r->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    if (cafile) {
        if (SSL_CTX_load_verify_locations(r->ctx, cafile, NULL) != 1)
            fatal("--cafile %s: not a readable PEM file of certificates", cafile);
        SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(r->ctx, SSL_VERIFY_NONE, NULL);
    }
}

/* resolve - HOST:PORT ([v6]:PORT for IPv6) into r->addr. */
static void resolve(run *r, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg || !colon[1])
        fatal("%s: want HOST:PORT", arg);
    const char *h = arg;
    size_t hl = (size_t)(colon - arg);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof r->host)
        fatal("%s: the host name is too long", arg);
    memcpy(r->host, h, hl);
    r->host[hl] = 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int e = getaddrinfo(r->host, colon + 1, &hints, &ai);
    if (e || !ai)
        fatal("%s: %s", arg, e ? gai_strerror(e) : "no address");
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    struct in6_addr a6;
    r->host_is_ip = inet_pton(AF_INET, r->host, &a6) == 1 || inet_pton(AF_INET6, r->host, &a6) == 1;
}

/* descriptors - make room for cap connections (the soft limit up to the hard one). */
static void descriptors(unsigned cap)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)cap + TL_FD_SPARE;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        fatal("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want)
            fatal("%u sessions need %llu descriptors; the limit is %llu (ulimit -n)", cap,
                  (unsigned long long)want, (unsigned long long)rl.rlim_cur);
    }
}

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
    fprintf(
        stderr,
        "usage: tlsload [-s SESSIONS] [-m MESSAGES] [-l SIZE] [-f FROM] [-t TO] [-M HELO]\n"
        "               [--tls13 | --tls12] [--cafile FILE] [--plain] [--quickack] [-w SECONDS]\n"
        "               [-T SECONDS] [--handshakes | --idle N] HOST:PORT\n");
    exit(2);
}

static unsigned long num(const char *arg, const char *opt, unsigned long lo, unsigned long hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || arg[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "tlsload: %s %s: want a number from %lu to %lu\n", opt, arg, lo, hi);
        exit(2);
    }
    return v;
}

static double seconds_arg(const char *arg, const char *opt)
{
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end || !(v > 0 && v <= 86400)) {
        fprintf(stderr, "tlsload: %s %s: want seconds, more than 0, at most 86400\n", opt, arg);
        exit(2);
    }
    return v;
}

static const char *addr_arg(const char *arg, const char *opt)
{
    if (strlen(arg) >= TL_ADDR_MAX || strpbrk(arg, "\r\n<>")) {
        fprintf(stderr, "tlsload: %s: at most %d characters, no CR, LF, < or >\n", opt,
                TL_ADDR_MAX - 1);
        exit(2);
    }
    return arg;
}

static void parse(run *r, int argc, char **argv)
{
    enum { OPT_TLS13 = 256, OPT_TLS12, OPT_CAFILE, OPT_IDLE, OPT_HANDSHAKES, OPT_PLAIN, OPT_QUICK };
    static const struct option longopts[] = {
        {"tls13", no_argument, NULL, OPT_TLS13},
        {"tls12", no_argument, NULL, OPT_TLS12},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"idle", required_argument, NULL, OPT_IDLE},
        {"handshakes", no_argument, NULL, OPT_HANDSHAKES},
        {"plain", no_argument, NULL, OPT_PLAIN},
        {"quickack", no_argument, NULL, OPT_QUICK},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int version = 0, opt;
    const char *cafile = NULL;
    bool modes = false;
    while ((opt = getopt_long(argc, argv, "s:m:l:f:t:M:w:T:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 's':
            r->sessions = (unsigned)num(optarg, "-s", 1, TL_MAX_SESSIONS);
            break;
        case 'm':
            r->target = (unsigned)num(optarg, "-m", 1, TL_MAX_MESSAGES);
            break;
        case 'l':
            r->size = num(optarg, "-l", 0, TL_MAX_SIZE);
            break;
        case 'f':
            r->from = addr_arg(optarg, "-f");
            break;
        case 't':
            r->to = addr_arg(optarg, "-t");
            break;
        case 'M':
            r->helo = addr_arg(optarg, "-M");
            break;
        case 'w':
            r->step_timeout = seconds_arg(optarg, "-w");
            break;
        case 'T':
            r->run_timeout = seconds_arg(optarg, "-T");
            break;
        case OPT_TLS13:
        case OPT_TLS12:
            if (version)
                usage();
            version = opt == OPT_TLS13 ? TLS1_3_VERSION : TLS1_2_VERSION;
            break;
        case OPT_CAFILE:
            cafile = optarg;
            break;
        case OPT_IDLE:
        case OPT_HANDSHAKES:
            if (modes)
                usage();
            modes = true;
            r->mode = opt == OPT_IDLE ? MODE_IDLE : MODE_HANDSHAKES;
            if (opt == OPT_IDLE)
                r->target = (unsigned)num(optarg, "--idle", 0, TL_MAX_SESSIONS);
            break;
        case OPT_PLAIN:
            r->plain = true;
            break;
        case OPT_QUICK:
            r->quickack = true;
            break;
        default:
            usage();
        }
    }
    if (optind != argc - 1 || (r->plain && (version || cafile || r->mode == MODE_HANDSHAKES)))
        usage();
    if (r->mode == MODE_HANDSHAKES && r->plain)
        usage();
    resolve(r, argv[optind]);
    make_ctx(r, version, cafile);
}

/* report - the closing line: key=value fields. */
static void report(const run *r, double secs)
{
    static const char *const what[] = {
        [MODE_MAIL] = "messages", [MODE_HANDSHAKES] = "handshakes", [MODE_IDLE] = "idle"};
    static const char *const per[] = {
        [MODE_MAIL] = "msgs", [MODE_HANDSHAKES] = "handshakes", [MODE_IDLE] = "sessions"};
    printf("tlsload: %s=%u seconds=%.3f %s/s=%.1f sessions=%u", what[r->mode], r->finished, secs,
           per[r->mode], secs > 0 ? r->finished / secs : 0.0, r->sessions);
    if (r->mode == MODE_MAIL)
        printf(" size=%zu", r->size);
    bool tls = !r->plain && r->handshakes;
    printf(" protocol=%s cipher=%s group=%s tls_ms=%.2f differing=%u quickack=%d\n",
           tls        ? r->proto
           : r->plain ? "plain"
                      : "none",
           tls ? r->cipher : "none", tls ? r->group : "none", tls ? r->tls_ms / r->handshakes : 0.0,
           r->differing, r->quickack);
    fflush(stdout);
}

/* hold - the idle sessions are up: wait for a signal or end of file on stdin, still watching
 * them (a server that drops one ends the run with an error). */
static void hold(run *r, struct pollfd *pfd, conn **who, const sigset_t *open_mask)
{
    double end = r->t0 + r->run_timeout;
    bool eof = false;
    while (!got_signal && !eof) { /* bounded: by the run time-out */
        double left = end - now_s();
        if (left <= 0)
            fatal("held %u idle sessions until the %g s time-out without a signal or EOF", r->idle,
                  r->run_timeout);
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = 0, .events = POLLIN};
        for (unsigned i = 0; i < r->cap; i++) {
            if (r->conns[i].fd >= 0) {
                who[n] = &r->conns[i];
                pfd[n++] = (struct pollfd){.fd = r->conns[i].fd, .events = r->conns[i].events};
            }
        }
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        int rc = ppoll(pfd, n, &ts, open_mask);
        if (rc < 0 && errno != EINTR)
            fatal("ppoll: %s", strerror(errno));
        if (rc <= 0)
            continue;
        if (pfd[0].revents) {
            char buf[512];
            ssize_t got = read(0, buf, sizeof buf);
            eof = got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN);
        }
        for (nfds_t i = 1; i < n; i++)
            if (pfd[i].revents)
                conn_run(r, who[i]);
    }
    unsigned held = r->idle;
    for (unsigned i = 0; i < r->cap; i++)
        if (r->conns[i].fd >= 0)
            conn_close(r, &r->conns[i]);
    printf("tlsload: idle=%u ended by %s\n", held, eof ? "end of file" : "a signal");
}

int main(int argc, char **argv)
{
    run r = {
        .mode = MODE_MAIL,
        .sessions = 1,
        .target = 1,
        .from = "tlsload@client.test",
        .to = "postmaster@localhost",
        .helo = "tlsload.test",
        .step_timeout = 60,
        .run_timeout = 600,
    };
    parse(&r, argc, argv);
    r.cap = r.mode == MODE_IDLE ? (r.target ? r.target : 1) : r.sessions;
    if (r.mode != MODE_IDLE && r.sessions > r.target)
        r.sessions = r.target; /* no more at once than there are to do */
    descriptors(r.cap);
    make_body(&r);
    time_t t = time(NULL);
    strftime(r.date, sizeof r.date, "%a, %d %b %Y %H:%M:%S %z", localtime(&t));

    r.conns = calloc(r.cap, sizeof *r.conns);
    r.slots = calloc(r.cap, sizeof *r.slots);
    struct pollfd *pfd = calloc((size_t)r.cap + 1, sizeof *pfd);
    conn **who = calloc((size_t)r.cap + 1, sizeof *who);
    if (!r.conns || !r.slots || !pfd || !who)
        fatal("out of memory for %u sessions", r.cap);
    for (unsigned i = 0; i < r.cap; i++) {
        r.conns[i].fd = -1;
        r.slots[r.nfree++] = r.cap - 1 - i;
    }

    /* The signals are taken only inside ppoll(), so none is lost between a check and a wait. */
    sigset_t block, open_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &open_mask);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    r.t0 = now_s();
    double end = r.t0 + r.run_timeout;
    /* Bounded: every connection either makes progress or ends the run at its step time-out,
     * and the whole run ends at the run time-out. */
    for (;;) {
        while (r.busy < r.sessions && r.started < r.target && r.nfree)
            conn_open(&r);
        if (!r.busy && r.started == r.target)
            break;
        double now = now_s();
        if (now > end)
            fatal("the run took longer than %g s (-T): %u of %u done", r.run_timeout, r.finished,
                  r.target);
        double wake = end;
        nfds_t n = 0;
        for (unsigned i = 0; i < r.cap; i++) {
            conn *c = &r.conns[i];
            if (c->fd < 0 || c->ph == PH_IDLE)
                continue; /* idle ones are watched once all are up */
            if (c->deadline < now)
                conn_fail(&r, c, "no progress for %g s (-w)", r.step_timeout);
            if (c->deadline < wake)
                wake = c->deadline;
            who[n] = c;
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = c->events};
        }
        double left = wake - now;
        struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
        int rc = ppoll(pfd, n, &ts, &open_mask);
        if (got_signal)
            fatal("interrupted by signal %d: %u of %u done", (int)got_signal, r.finished, r.target);
        if (rc < 0 && errno != EINTR)
            fatal("ppoll: %s", strerror(errno));
        for (nfds_t i = 0; rc > 0 && i < n; i++)
            if (pfd[i].revents)
                conn_run(&r, who[i]);
    }
    double secs = now_s() - r.t0;
    if (r.mode == MODE_IDLE) {
        r.finished = r.idle;
        printf("idle %u ready\n", r.idle);
        report(&r, secs);
        hold(&r, pfd, who, &open_mask);
    } else {
        report(&r, secs);
    }
    for (unsigned i = 0; i < r.cap; i++)
        if (r.conns[i].fd >= 0)
            conn_close(&r, &r.conns[i]);
    SSL_CTX_free(r.ctx);
    free(r.body);
    free(r.conns);
    free(r.slots);
    free(pfd);
    free(who);
    return 0;
}
