/* spoolfile_fuzz.c - libFuzzer target for what the queue reads back: a spool file (version 1
 * or 2, status records included) of any bytes, a message's header section for its priority,
 * and RetryInterval's text. The first byte picks which. A file that reads must be one the
 * queue can trust: recipients with a valid route, content inside the file, known states, and
 * tls and auth that Received can show (one line, a well-formed comment), and a sum line
 * whose checksums ims_spool_file_verify either finds matching the bytes or reports damaged. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/spool_int.h"
#include "fuzz.h"

static void spool_file(const uint8_t *d, size_t n)
{
    int fd = memfd_create("spool", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(write(fd, d, n) == (ssize_t)n);
    ims_spool_file f;
    int rc = ims_spool_file_read(fd, &f);
    if (rc) {
        close(fd);
        CHECK(rc == EBADMSG || rc == ENOMEM);
        return;
    }
    /* The sum line: only in version 2, its digits inside the envelope; the checksums either
     * match the bytes (what recovery keeps) or the file is damaged, nothing else. */
    CHECK(!f.has_sum || (f.version == 2 && f.sum_off > 4 && f.sum_off + 17 < f.content_off));
    rc = ims_spool_file_verify(fd, &f);
    CHECK(rc == 0 || (rc == EBADMSG && f.has_sum));
    if (f.has_sum && rc == 0)
        CHECK(base_crc32c(0, d, f.sum_off) == f.env_sum &&
              base_crc32c(0, d + f.content_off, f.content_len) == f.body_sum);
    close(fd);
    CHECK(f.version == 1 || f.version == 2);
    CHECK(ims_spool_id_valid(f.id));
    CHECK(f.nrcpt >= 1 && f.nrcpt <= IMS_SPOOL_MAX_RCPTS);
    CHECK(f.content_off <= f.file_size && f.content_len <= f.file_size - f.content_off);
    CHECK(f.sender && f.client_ip && f.helo && f.host);
    CHECK(!strpbrk(f.sender, "\r\n\t") && !strpbrk(f.helo, "\r\n\t") &&
          !strpbrk(f.host, "\r\n\t") && !strpbrk(f.client_ip, "\r\n\t"));
    /* How it came: what Received is made of must make one line of it and a comment. */
    CHECK(!f.tls || (f.version == 2 && ims_spool_tls_ok(f.tls)));
    CHECK(!f.auth || (f.version == 2 && f.auth[0] && !strpbrk(f.auth, "\r\n\t")));
    const char *with = ims_spool_received_with(&f);
    CHECK(!strcmp(with, f.tls ? (f.auth ? "ESMTPSA" : "ESMTPS") : f.auth ? "ESMTPA" : "ESMTP"));
    buf line = BUF_INIT;
    CHECK(ims_spool_received_tls(&f, "\r\n", &line) == 0);
    if (f.tls) {
        const char *t = buf_cstr(&line);
        CHECK(t && line.len > 4 && !strncmp(t, "\t(using ", 8) && strstr(t, " with cipher "));
        CHECK(!strcmp(t + line.len - 3, ")\r\n") && strcspn(t, "\r\n") == line.len - 2);
    } else {
        CHECK(line.len == 0);
    }
    buf_free(&line);
    for (size_t i = 0; i < f.nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &f.rcpts[i];
        CHECK(r->address && r->address[0]);
        CHECK(!strpbrk(r->address, "\r\n\t"));
        if (r->route == IMS_ROUTE_LOCAL) {
            CHECK(r->maildir && r->maildir[0] == '/' && !r->dest);
        } else {
            CHECK(f.version == 2);
            CHECK(r->route == IMS_ROUTE_DNS || r->route == IMS_ROUTE_SMARTHOST);
            CHECK(r->dest && !r->maildir);
        }
        CHECK(r->state <= IMS_RCPT_FAILED);
        CHECK(r->done == (r->state == IMS_RCPT_DONE));
        CHECK((r->last != NULL) == (r->state == IMS_RCPT_DEFERRED || r->state == IMS_RCPT_FAILED));
        if (r->last)
            CHECK(!strpbrk(r->last, "\r\n") && strlen(r->last) < SPOOL_STATUS_TEXT_MAX);
        CHECK(!strpbrk(r->route == IMS_ROUTE_LOCAL ? r->maildir : r->dest, "\r\n\t"));
    }
    ims_spool_file_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n == 0)
        return 0;
    unsigned sel = d[0] % 3;
    d++, n--;
    if (sel == 0) {
        spool_file(d, n);
    } else if (sel == 1) {
        ims_priority p = ims_priority_of_headers((const char *)d, n);
        CHECK(p == IMS_PRIORITY_NORMAL || p == IMS_PRIORITY_URGENT || p == IMS_PRIORITY_NONURGENT);
        CHECK(ims_priority_name(p)[0]);
    } else {
        char *text = malloc(n + 1);
        CHECK(text);
        memcpy(text, d, n);
        text[n] = 0;
        uint64_t ms[IMS_RETRY_MAX];
        size_t k = 99;
        if (ims_retry_parse(text, ms, &k) == 0) {
            CHECK(k <= IMS_RETRY_MAX);
            for (size_t i = 0; i < k; i++)
                CHECK(ms[i] >= 1 && ms[i] <= (uint64_t)IMS_RETRY_HOURS_MAX * 3600 * 1000);
        }
        free(text);
    }
    return 0;
}
