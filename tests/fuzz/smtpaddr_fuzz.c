/* smtpaddr_fuzz.c - libFuzzer target for SMTP addresses: the first byte picks the path kind and
 * which domains are "local", the rest is a path. An address classified LOCAL or REMOTE must be
 * a plain one (no relay trick survives), and the same bytes as a relay-list line, an IP address
 * or a domain pattern must not upset the other parsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reg/reg.h"
#include "smtp/smtp.h"
#include "fuzz.h"

/* fuzz_local - a domain is ours by a bit of the selector and its length. */
static bool fuzz_local(void *arg, const char *domain)
{
    unsigned sel = *(const unsigned *)arg;
    CHECK(domain[0] != '\0');
    return smtp_domain_match("local.test", domain) || ((sel >> 1) & 1) ^ (strlen(domain) & 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n == 0)
        return 0;
    unsigned sel = d[0];
    const char *s = (const char *)d + 1;
    size_t len = n - 1;
    smtp_path_kind kind = (sel & 1) ? SMTP_PATH_FORWARD : SMTP_PATH_REVERSE;
    smtp_path p;
    size_t used = 0;
    smtp_reply_id rc = smtp_parse_path(s, len, kind, &p, (sel & 4) ? &used : NULL);
    if (rc == SMTP_R_NONE) {
        if (sel & 4)
            CHECK(used >= 2 && used <= len && used <= SMTP_PATH_MAX);
        CHECK(strlen(p.local) <= SMTP_LOCAL_MAX && strlen(p.domain) <= SMTP_DOMAIN_MAX);
        CHECK(strlen(p.mailbox) < SMTP_PATH_MAX);
        smtp_refusal why;
        smtp_addr_class cls = smtp_addr_classify(&p, fuzz_local, &sel, &why);
        if (cls == SMTP_ADDR_REFUSED) {
            CHECK(why != SMTP_REFUSE_NONE);
        } else {
            /* Nothing that could route the message elsewhere gets through. */
            CHECK(why == SMTP_REFUSE_NONE);
            CHECK(!strpbrk(p.local, "%!\"@"));
            CHECK(!(p.flags & (SMTP_PATH_ROUTE | SMTP_PATH_LITERAL | SMTP_PATH_TRAILING_DOT |
                               SMTP_PATH_QUOTED_KEPT | SMTP_PATH_NULL)));
            CHECK(!strchr(p.domain, '[') && !strchr(p.domain, ']'));
            if (p.flags & SMTP_PATH_POSTMASTER)
                CHECK(cls == SMTP_ADDR_LOCAL && !p.domain[0]);
            else
                CHECK(p.domain[0] && p.domain[strlen(p.domain) - 1] != '.');
        }
    } else {
        CHECK(!p.mailbox[0] && !p.flags);
    }

    /* The same bytes, NUL-terminated, for the text-based parsers. */
    char *text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, s, len);
    text[len] = '\0';
    smtp_relay_list l = {0};
    int lrc = smtp_relay_list_add(&l, text);
    CHECK(lrc == ERROR_SUCCESS ? l.n == 1 : l.n == 0);
    smtp_ip ip;
    char back[64];
    if (smtp_ip_parse(text, &ip) == ERROR_SUCCESS) {
        CHECK(ip.family == 4 || ip.family == 6);
        smtp_ip again;
        CHECK(smtp_ip_parse(smtp_ip_format(&ip, back, sizeof back), &again) == ERROR_SUCCESS);
        CHECK(!memcmp(&ip, &again, sizeof ip));
        if (l.n)
            (void)smtp_relay_list_match(&l, &ip);
    }
    smtp_relay_list_free(&l);
    /* Domain matching: the text split in two at the selector. */
    size_t cut = len ? sel % (len + 1) : 0;
    const char *pats[] = {text + cut, "local.test", ""};
    char *head = strndup(text, cut);
    if (head) {
        bool m = smtp_domain_match(text + cut, head);
        long best = smtp_domain_best(pats, 3, head);
        CHECK(best >= -1 && best <= 1);
        CHECK(!m || best >= 0);
        free(head);
    }
    (void)smtp_domain_valid(text, strlen(text), sel & 8);
    (void)smtp_literal_valid(text, strlen(text));
    free(text);
    return 0;
}
