/* queuerec_fuzz.c - libFuzzer target for the outbound queue's status records (done, defer,
 * fail, reported, delayed, hold, release after an Out file's content), read back by
 * ims_spool_file_read behind a fixed valid envelope, which random spool files rarely reach,
 * and their texts split for a report (ims_spool_status_split: its Status well-formed). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/spool_int.h"
#include "fuzz.h"

#define NRCPT 4

/* A version 2 envelope with a recipient of each route, and its four bytes of content. */
static const char ENVELOPE[] = "IMS-SPOOL 2\nid 00000000000000B1\ntime 1\nclient 192.0.2.1\n"
                               "helo h\nhost h\nfrom s@x\n"
                               "rcpt -\t-\ta@b\t/m\n"
                               "rcpt -\t-\tu@x\tdns:x.example\n"
                               "rcpt -\t-\tv@y\tsmarthost:[192.0.2.1]:25\n"
                               "rcpt -\t-\tw@z\tdns:z.example\n"
                               "size 00000000000000000004\n\nab\r\n";

/* What the reader must make of the records: the model of status_line's rules. */
typedef struct {
    ims_rcpt_state state;
    unsigned attempts;
    time_t next_try;
    char last[SPOOL_STATUS_TEXT_MAX];
    bool reported, delayed;
} model;

/* read_back - the file of envelope and records, read; 0 or the reader's error. */
static int read_back(const void *recs, size_t n, ims_spool_file *f)
{
    int fd = memfd_create("out", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK(write(fd, ENVELOPE, sizeof ENVELOPE - 1) == (ssize_t)(sizeof ENVELOPE - 1));
    CHECK(write(fd, recs, n) == (ssize_t)n);
    int rc = ims_spool_file_read(fd, f);
    close(fd);
    return rc;
}

/* enh_ok - e is "c.sss.ddd": class 2, 4 or 5, one to three digits each after it. */
static bool enh_ok(const char *e)
{
    if (e[0] != '2' && e[0] != '4' && e[0] != '5')
        return false;
    size_t i = 1;
    for (int part = 0; part < 2; part++) {
        if (e[i++] != '.')
            return false;
        size_t d = strspn(e + i, "0123456789");
        if (d < 1 || d > 3)
            return false;
        i += d;
    }
    return e[i] == 0;
}

/* check_split - what a report takes from a record's text (Remote-MTA, Diagnostic-Code,
 * Status) is well-formed whatever the text. */
static void check_split(const char *text, bool permanent)
{
    char remote[256], enh[SMTP_ENH_MAX + 1];
    const char *diag;
    unsigned code;
    ims_spool_status_split(text, permanent, remote, sizeof remote, &diag, &code, enh);
    CHECK(strlen(remote) < sizeof remote && !strchr(remote, '|'));
    CHECK(diag >= text && diag <= text + strlen(text));
    CHECK(code == 0 || (code >= 200 && code <= 599));
    CHECK(enh_ok(enh));
}

/* check_file - what any read file must hold, whatever its records said. */
static void check_file(const ims_spool_file *f)
{
    CHECK(f->nrcpt == NRCPT);
    for (size_t i = 0; i < f->nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &f->rcpts[i];
        CHECK(r->state <= IMS_RCPT_FAILED);
        CHECK(r->done == (r->state == IMS_RCPT_DONE));
        CHECK((r->last != NULL) == (r->state == IMS_RCPT_DEFERRED || r->state == IMS_RCPT_FAILED));
        if (r->last) {
            CHECK(!strpbrk(r->last, "\r\n") && strlen(r->last) < SPOOL_STATUS_TEXT_MAX);
            check_split(r->last, r->state == IMS_RCPT_FAILED);
        }
        CHECK(!r->reported || r->state == IMS_RCPT_FAILED);
    }
}

/* raw - the input as the records, any bytes. */
static void raw(const uint8_t *d, size_t n)
{
    ims_spool_file f;
    int rc = read_back(d, n, &f);
    if (rc) {
        CHECK(rc == ENOMEM);
        return;
    }
    check_file(&f);
    ims_spool_file_free(&f);
}

/* apply - one record on the model, as the reader takes it. */
static void apply(model *m, bool *held, unsigned op, size_t idx, unsigned attempts, time_t next,
                  const char *clean)
{
    if (op == 5 || op == 6) {
        *held = op == 5;
        return;
    }
    model *r = &m[idx];
    if (op == 3) {
        r->reported = r->state == IMS_RCPT_FAILED;
        return;
    }
    if (op == 4) {
        r->delayed = true;
        return;
    }
    if (r->state == IMS_RCPT_DONE || r->state == IMS_RCPT_FAILED)
        return;
    r->state = op == 0 ? IMS_RCPT_DONE : op == 1 ? IMS_RCPT_DEFERRED : IMS_RCPT_FAILED;
    r->attempts = op == 1 ? attempts : r->attempts;
    r->next_try = op == 1 ? next : r->next_try;
    snprintf(r->last, sizeof r->last, "%s", op == 0 ? "" : clean);
}

/* modelled - records made by the writer (ims_spool_status_format) from the input, each read
 * back as the model says: [op][index][attempts][text length][text] each. */
static void modelled(const uint8_t *d, size_t n)
{
    model m[NRCPT];
    memset(m, 0, sizeof m);
    bool held = false;
    buf recs = BUF_INIT;
    while (n >= 4) {
        unsigned op = d[0] % 7, attempts = d[2];
        size_t idx = d[1] % NRCPT, len = d[3] * 8u;
        time_t next = (time_t)d[1] * 1000003;
        d += 4, n -= 4;
        if (len > n)
            len = n;
        char *text = malloc(len + 1);
        CHECK(text);
        memcpy(text, d, len);
        text[len] = 0;
        d += len, n -= len;
        static const char *const notes[] = {"reported", "delayed", "hold", "release"};
        if (op <= 2) {
            ims_rcpt_state st = op == 0   ? IMS_RCPT_DONE
                                : op == 1 ? IMS_RCPT_DEFERRED
                                          : IMS_RCPT_FAILED;
            CHECK(ims_spool_status_format(&recs, idx, st, attempts, next, text) == 0);
        } else if (op <= 4) {
            CHECK(buf_printf(&recs, "%s %zu\n", notes[op - 3], idx) == 0);
        } else {
            CHECK(buf_printf(&recs, "%s\n", notes[op - 3]) == 0);
        }
        /* The writer's text: to the first NUL, cut to fit, line breaks and tabs as spaces. */
        char clean[SPOOL_STATUS_TEXT_MAX];
        size_t k = 0;
        for (const char *t = text; *t && k + 1 < sizeof clean; t++)
            clean[k++] = *t == '\r' || *t == '\n' || *t == '\t' ? ' ' : *t;
        clean[k] = 0;
        free(text);
        apply(m, &held, op, idx, attempts, next, clean);
    }
    ims_spool_file f;
    int rc = read_back(recs.data, recs.len, &f);
    buf_free(&recs);
    if (rc) {
        CHECK(rc == ENOMEM);
        return;
    }
    check_file(&f);
    CHECK(f.held == held);
    for (size_t i = 0; i < NRCPT; i++) {
        const ims_spool_rcpt_rec *r = &f.rcpts[i];
        CHECK(r->state == m[i].state && r->reported == m[i].reported &&
              r->delay_noticed == m[i].delayed);
        if (r->state == IMS_RCPT_DEFERRED)
            CHECK(r->attempts == m[i].attempts && r->next_try == m[i].next_try);
        if (r->last)
            CHECK(!strcmp(r->last, m[i].last));
    }
    ims_spool_file_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n == 0)
        return 0;
    if (d[0] & 1)
        modelled(d + 1, n - 1);
    else
        raw(d + 1, n - 1);
    return 0;
}
