/* smtpcmd_fuzz.c - libFuzzer target for the SMTP command parser: any bytes as one command line.
 * Whatever parses must be consistent (verb known, strings terminated and within their limits,
 * NOTIFY well-formed), and a parsed MAIL/RCPT path must parse again from its canonical form to
 * the same mailbox. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/smtp.h"
#include "fuzz.h"

static void check_path(const smtp_cmd *c)
{
    const smtp_path *p = &c->path;
    CHECK(strnlen(p->local, sizeof p->local) < sizeof p->local);
    CHECK(strnlen(p->domain, sizeof p->domain) < sizeof p->domain);
    CHECK(strnlen(p->mailbox, sizeof p->mailbox) < sizeof p->mailbox);
    CHECK(strlen(p->local) <= SMTP_LOCAL_MAX);
    if (p->flags & SMTP_PATH_NULL) {
        CHECK(c->verb == SMTP_VERB_MAIL && !p->mailbox[0]);
        return;
    }
    /* "<" mailbox ">" is a path again, naming the same mailbox. */
    char again[SMTP_PATH_MAX + 3];
    size_t m = strlen(p->mailbox);
    again[0] = '<';
    memcpy(again + 1, p->mailbox, m);
    again[m + 1] = '>';
    smtp_path q;
    smtp_path_kind kind = c->verb == SMTP_VERB_MAIL ? SMTP_PATH_REVERSE : SMTP_PATH_FORWARD;
    CHECK(smtp_parse_path(again, m + 2, kind, &q, NULL) == SMTP_R_NONE);
    CHECK(!strcmp(q.mailbox, p->mailbox) && !strcmp(q.local, p->local) &&
          !strcmp(q.domain, p->domain));
    unsigned keep = SMTP_PATH_LITERAL | SMTP_PATH_POSTMASTER | SMTP_PATH_QUOTED_KEPT;
    CHECK((q.flags & keep) == (p->flags & keep));
    CHECK(!(q.flags & (SMTP_PATH_ROUTE | SMTP_PATH_TRAILING_DOT)));
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    smtp_cmd c;
    smtp_reply_id rc = smtp_parse_command((const char *)d, n, &c);
    CHECK((unsigned)rc < SMTP_R_COUNT);
    CHECK((unsigned)c.verb < SMTP_VERB_COUNT);
    if (rc != SMTP_R_NONE) {
        unsigned code = smtp_reply_code(rc);
        CHECK(code >= 500 && code <= 555);
        return 0;
    }
    CHECK(c.verb != SMTP_VERB_UNKNOWN);
    CHECK(!memchr(d, '\0', n));
    if (c.arg)
        CHECK(c.arg >= (const char *)d && c.arg + c.arg_len <= (const char *)d + n);
    switch (c.verb) {
    case SMTP_VERB_HELO:
    case SMTP_VERB_EHLO:
        CHECK(c.helo[0] && strnlen(c.helo, sizeof c.helo) < sizeof c.helo);
        CHECK(smtp_domain_valid(c.helo, strlen(c.helo), true) ||
              smtp_literal_valid(c.helo, strlen(c.helo)));
        break;
    case SMTP_VERB_MAIL:
    case SMTP_VERB_RCPT:
        check_path(&c);
        CHECK(strlen(c.mail.envid) <= SMTP_ENVID_MAX);
        CHECK(strlen(c.rcpt.orcpt) <= SMTP_ORCPT_MAX);
        CHECK(!(c.rcpt.notify & SMTP_NOTIFY_NEVER) || c.rcpt.notify == SMTP_NOTIFY_NEVER);
        CHECK(c.verb == SMTP_VERB_RCPT || (!c.rcpt.notify && !c.rcpt.orcpt[0]));
        CHECK(c.verb == SMTP_VERB_MAIL ||
              (!c.mail.has_size && !c.mail.envid[0] && c.mail.body == SMTP_BODY_NONE &&
               c.mail.ret == SMTP_RET_NONE));
        break;
    case SMTP_VERB_DATA:
    case SMTP_VERB_RSET:
    case SMTP_VERB_QUIT:
        CHECK(!c.arg);
        break;
    case SMTP_VERB_VRFY:
        CHECK(c.arg && c.arg_len);
        break;
    default:
        break;
    }
    return 0;
}
