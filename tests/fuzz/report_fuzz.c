/* report_fuzz.c - libFuzzer target for the report builder (lib/ims report.c): arbitrary
 * original content, ORCPT, diagnostic and remote MTA. Every report must end its lines CRLF,
 * hold no line over 998 octets and no bare CR or LF, and hold its boundary only as the
 * Content-Type parameter and the delimiter lines. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ims/ims.h"
#include "fuzz.h"

/* the report's own Content-Type header (a subject may hold "boundary=" too) */
#define CONTENT_TYPE "\r\nContent-Type: multipart/report; report-type=delivery-status;"
#define FIELD_MAX 2048 /* bytes of a fuzzed string field (more than the builder keeps) */

typedef struct mem {
    const uint8_t *p;
    size_t n;
} mem;

static int mem_read(void *arg, uint64_t off, void *p, size_t n, size_t *got)
{
    const mem *m = arg;
    *got = 0;
    if (off >= m->n)
        return 0;
    if (n > m->n - off)
        n = (size_t)(m->n - off);
    memcpy(p, m->p + off, n);
    *got = n;
    return 0;
}

static int out_write(void *arg, const void *p, size_t n)
{
    return buf_add(arg, p, n);
}

/* take - the next field: bytes up to a 0xFF (or the end), NUL-free, as a string. */
static char *take(const uint8_t **d, size_t *n)
{
    const uint8_t *end = memchr(*d, 0xff, *n);
    size_t len = end ? (size_t)(end - *d) : *n;
    size_t keep = len < FIELD_MAX ? len : FIELD_MAX;
    char *s = malloc(keep + 1);
    CHECK(s);
    size_t k = 0;
    for (size_t i = 0; i < keep; i++)
        if ((*d)[i])
            s[k++] = (char)(*d)[i];
    s[k] = '\0';
    *d += len + (end ? 1 : 0);
    *n -= len + (end ? 1 : 0);
    return s;
}

static void check(const buf *b)
{
    const char *s = (const char *)b->data;
    size_t n = b->len, col = 0;
    CHECK(n >= 2);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            CHECK(i + 1 < n && s[i + 1] == '\n');
            CHECK(col <= IMS_REPORT_LINE_MAX);
            col = 0;
            i++;
        } else {
            CHECK(s[i] != '\n');
            col++;
        }
    }
    CHECK(col == 0);
    const char *ct = memmem(s, n, CONTENT_TYPE, strlen(CONTENT_TYPE));
    CHECK(ct);
    const char *bp = memmem(ct, n - (size_t)(ct - s), "boundary=\"", 10);
    CHECK(bp);
    bp += 10;
    const char *q = memchr(bp, '"', n - (size_t)(bp - s));
    CHECK(q && q > bp && q - bp <= 70);
    size_t bl = (size_t)(q - bp), seen = 0;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), bp, bl)); p += bl) {
        seen++;
        if (p == bp)
            continue;
        CHECK(p >= s + 4 && !memcmp(p - 4, "\r\n--", 4));
        CHECK(!memcmp(p + bl, "\r\n", 2) || !memcmp(p + bl, "--\r\n", 4));
    }
    CHECK(seen == 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 2)
        return 0;
    uint8_t flags = d[0];
    d++, n--;
    char *orcpt = take(&d, &n), *diag = take(&d, &n), *mta = take(&d, &n);
    mem content = {d, n};
    static const ims_report_names names = {"ims.example.net", "Org", "Site", "Server",
                                           "postmaster@example.net"};
    ims_report_original orig = {"alice@example.org",
                                1714570800,
                                (flags & 0x40) ? orcpt : NULL,
                                (smtp_ret)(flags % 3),
                                "192.0.2.1",
                                "client.example",
                                n,
                                mem_read,
                                &content};
    buf out = BUF_INIT;
    ims_report_options opt = {&names, "FUZZ.1", 1714571160, true, out_write, &out};
    ims_report_rcpt rc = {"bob@example.com", orcpt,     0,    (ims_report_action)((flags >> 2) % 5),
                          "5.1.1",           mta,       diag, (flags & 0x80) ? 550 : 0,
                          1714571100,        1714657560};
    if (rc.action == IMS_REPORT_DELAYED)
        rc.status = "4.4.1";
    else if (rc.action != IMS_REPORT_FAILED)
        rc.status = "2.0.0";
    if (rc.action != IMS_REPORT_FAILED)
        rc.notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY;
    ims_report_info info;
    int err = ims_report_build(&orig, &rc, 1, &opt, &info);
    if (!err) {
        CHECK(info.size == out.len && info.reported == 1);
        check(&out);
    } else {
        CHECK(err == ELOOP && out.len == 0);
    }
    buf_free(&out);
    free(orcpt);
    free(diag);
    free(mta);
    return 0;
}
