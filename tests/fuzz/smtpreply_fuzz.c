/* smtpreply_fuzz.c - libFuzzer target for the SMTP reply parser: any bytes. A reply parsed must
 * be well-formed (code, enhanced code of its class, lines within the input, clean bounded
 * text), parse the same from exactly its own bytes, and be "more" without its last byte. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"

static void check_reply(const smtp_reply *r, size_t n)
{
    CHECK(r->code >= 200 && r->code <= 599);
    CHECK(r->used > 0 && r->used <= n);
    CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX);
    CHECK(r->used <= r->nlines * (SMTP_REPLY_LINE_MAX));
    size_t e = strnlen(r->enh, sizeof r->enh);
    CHECK(e < sizeof r->enh);
    if (e)
        CHECK(e >= 5 && r->enh[0] == (char)('0' + r->code / 100) && r->enh[1] == '.');
    size_t t = strnlen(r->text, sizeof r->text);
    CHECK(t <= SMTP_REPLY_TEXT_MAX);
    for (size_t i = 0; i < t; i++)
        CHECK(r->text[i] >= 0x20 && r->text[i] <= 0x7e);
    for (size_t i = 0; i < r->nlines; i++) {
        CHECK(r->line[i].off + r->line[i].len <= r->used);
        CHECK(r->line[i].len <= SMTP_REPLY_LINE_MAX - 6);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    const char *p = (const char *)d;
    static smtp_reply r, again;
    smtp_reply_status st = smtp_reply_parse(p, n, &r);
    CHECK((unsigned)st <= SMTP_REPLY_NUL);
    CHECK(smtp_reply_status_name(st)[0] != '?');
    if (st != SMTP_REPLY_DONE) {
        CHECK(r.code == 0 && r.used == 0 && r.nlines == 0);
        if (st == SMTP_REPLY_MORE) /* what is waiting is bounded */
            CHECK(!memchr(p, '\0', n));
        return 0;
    }
    check_reply(&r, n);
    CHECK(p[r.used - 1] == '\n');
    /* Its own bytes give the same reply... */
    CHECK(smtp_reply_parse(p, r.used, &again) == SMTP_REPLY_DONE);
    CHECK(again.used == r.used && again.code == r.code && again.nlines == r.nlines);
    CHECK(!strcmp(again.enh, r.enh) && !strcmp(again.text, r.text));
    /* ... and without the last line end there is no reply yet. */
    CHECK(smtp_reply_parse(p, r.used - 1, &again) == SMTP_REPLY_MORE);
    return 0;
}
