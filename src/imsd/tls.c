/* tls.c - the SMTP server's certificate: TlsCertificateFile and TlsKeyFile read into an
 * OpenSSL context at start (before root is given up), checked, and read again when either
 * file changes, without a restart. Connections take the context current when they start TLS;
 * OpenSSL's reference count keeps an old one alive for the sessions that still use it. */
#include "imsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* What the files looked like when last read: a change in any of these is a new certificate
 * (an editor's rename, certbot's new symlink target, an overwrite in place). */
typedef struct tls_stamp {
    bool ok; /* stat() worked */
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} tls_stamp;

struct imsd_tls {
    ims_log *log;
    char cert_file[IMS_TLS_FILE_MAX];
    char key_file[IMS_TLS_FILE_MAX]; /* the certificate file when TlsKeyFile is "" */
    SSL_CTX *ctx;                    /* NULL: STARTTLS is not offered now */
    time_t not_after;                /* the certificate's end, checked on each look */
    tls_stamp cert_stamp, key_stamp; /* the files' last look */
    struct event *timer;
    char subject[256]; /* for events */
};

static void stamp_take(const char *path, tls_stamp *st)
{
    struct stat sb;
    memset(st, 0, sizeof *st);
    if (stat(path, &sb))
        return;
    st->ok = true;
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = sb.st_size;
    st->mtime = sb.st_mtim;
}

static bool stamp_same(const tls_stamp *a, const tls_stamp *b)
{
    return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* ssl_why - OpenSSL's first queued error as text (the queue is emptied). */
static void ssl_why(char *why, size_t n, const char *what)
{
    unsigned long e = ERR_get_error();
    char text[256] = "";
    if (e)
        ERR_error_string_n(e, text, sizeof text);
    ERR_clear_error();
    snprintf(why, n, "%s%s%s", what, text[0] ? ": " : "", text);
}

/* asn1_time_t - an ASN1_TIME as time_t (0 when it cannot be read). */
static time_t asn1_time_t(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return timegm(&tm);
}

/* ctx_load - a server context from the files, or NULL with why said. Only TLS 1.2 and 1.3;
 * for 1.2 only ECDHE key exchange with AEAD ciphers (forward secrecy), the server's order;
 * no compression, no renegotiation. Buffers are released while a session is idle: a
 * thousand idle TLS sessions must not hold a thousand pairs of 16 KiB records. */
static SSL_CTX *ctx_load(imsd_tls *t, char *why, size_t n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_why(why, n, "out of memory");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20")) {
        ssl_why(why, n, "the TLS settings were refused");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* One TLS 1.3 session ticket, not OpenSSL's two: a mail client resumes one session at a
     * time, and each ticket costs a write and CPU at every handshake. */
    SSL_CTX_set_num_tickets(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        ssl_why(why, n, "the certificate file is not a readable PEM certificate chain");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        ssl_why(why, n,
                mismatch ? "the private key does not belong to the certificate"
                         : "the key file is not a readable PEM private key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_why(why, n, "the private key does not belong to the certificate");
        goto fail;
    }
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (!cert) {
        snprintf(why, n, "the certificate file holds no certificate");
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
        snprintf(why, n, "the certificate is not valid yet");
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
        snprintf(why, n, "the certificate has expired");
        goto fail;
    }
    t->not_after = asn1_time_t(X509_get0_notAfter(cert));
    t->subject[0] = 0;
    X509_NAME_oneline(X509_get_subject_name(cert), t->subject, sizeof t->subject);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* tls_read - (re)read the files. A good pair replaces the context; a bad one is an event, and
 * at a reload the old context stays (a half-written renewal must not stop TLS). */
static void tls_read(imsd_tls *t, bool reload)
{
    stamp_take(t->cert_file, &t->cert_stamp);
    stamp_take(t->key_file, &t->key_stamp);
    char why[512];
    SSL_CTX *ctx = ctx_load(t, why, sizeof why);
    if (!ctx) {
        ims_log_event(t->log, IMS_EV_TLS_SERVER, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The server certificate %s (key %s) cannot be used: %s. %s", t->cert_file,
                      t->key_file, why,
                      reload && t->ctx ? "The certificate read before stays in use"
                                       : "STARTTLS is not offered, and submissions listeners "
                                         "refuse connections, until a usable pair is in place");
        return;
    }
    SSL_CTX_free(t->ctx); /* sessions that use it hold their own reference */
    t->ctx = ctx;
    if (reload)
        ims_log_event(t->log, IMS_EV_TLS_RELOADED, IMS_CAT_INIT_TERM, IMS_SEV_INFO, IMS_LEVEL_NONE,
                      "The server certificate %s was read again (%s); new TLS sessions use it",
                      t->cert_file, t->subject);
}

/* tls_look - the timer: read the files again when they changed; stop offering a certificate
 * that expired while in use. */
static void tls_look(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_tls *t = arg;
    tls_stamp c, k;
    stamp_take(t->cert_file, &c);
    stamp_take(t->key_file, &k);
    if (!stamp_same(&c, &t->cert_stamp) || !stamp_same(&k, &t->key_stamp)) {
        tls_read(t, true);
        return;
    }
    if (t->ctx && t->not_after && time(NULL) > t->not_after) {
        ims_log_event(t->log, IMS_EV_TLS_SERVER, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The server certificate %s has expired: STARTTLS is not offered until "
                      "it is renewed",
                      t->cert_file);
        SSL_CTX_free(t->ctx);
        t->ctx = NULL;
    }
}

int imsd_tls_open(const ims_settings *s, ims_log *log, imsd_tls **out)
{
    *out = NULL;
    if (!s->tls_certificate_file[0])
        return 0;
    imsd_tls *t = calloc(1, sizeof *t);
    if (!t)
        return ENOMEM;
    t->log = log;
    snprintf(t->cert_file, sizeof t->cert_file, "%s", s->tls_certificate_file);
    snprintf(t->key_file, sizeof t->key_file, "%s",
             s->tls_key_file[0] ? s->tls_key_file : s->tls_certificate_file);
    tls_read(t, false);
    *out = t;
    return 0;
}

int imsd_tls_watch(imsd_tls *t, struct event_base *base, unsigned seconds)
{
    if (!t)
        return 0;
    t->timer = event_new(base, -1, EV_PERSIST, tls_look, t);
    struct timeval tv = {(time_t)seconds, 0};
    if (!t->timer || event_add(t->timer, &tv))
        return ENOMEM;
    return 0;
}

SSL_CTX *imsd_tls_ctx(const imsd_tls *t)
{
    return t ? t->ctx : NULL;
}

void imsd_tls_free(imsd_tls *t)
{
    if (!t)
        return;
    if (t->timer)
        event_free(t->timer);
    SSL_CTX_free(t->ctx);
    free(t);
}

void imsd_tls_describe(SSL *ssl, char *out, size_t size)
{
    const char *cipher = ssl ? SSL_get_cipher_name(ssl) : NULL;
    snprintf(out, size, "%s %s", ssl ? SSL_get_version(ssl) : "?", cipher ? cipher : "?");
}
