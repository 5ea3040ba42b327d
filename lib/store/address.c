/* address.c - the directory's rules for aliases, domain names, SMTP addresses (RFC 5321 and
 * 5322, the plain forms only) and display names. */
#include "store/store.h"

#include <string.h>

static bool is_alpha(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

bool dir_alias_valid(const char *alias)
{
    if (!alias)
        return false;
    size_t n = strlen(alias);
    if (n < 1 || n > DIR_MAX_ALIAS || alias[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)alias[i];
        if (!is_alpha(c) && !is_digit(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* domain_span_valid - d[0..n) is a domain name (see dir_domain_valid). */
static bool domain_span_valid(const char *d, size_t n)
{
    if (n < 1 || n > DIR_MAX_DOMAIN)
        return false;
    size_t label = 0; /* bytes of the current label so far */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            /* An empty label, or one ending in '-'. */
            if (!label || d[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alpha(c) || is_digit(c) || (c == '-' && label)) {
            if (++label > DIR_MAX_LABEL)
                return false;
        } else {
            return false;
        }
    }
    return label && d[n - 1] != '-';
}

bool dir_domain_valid(const char *domain)
{
    return domain && domain_span_valid(domain, strlen(domain));
}

/* is_atext - RFC 5322 atext: letters, digits and these printable specials. */
static bool is_atext(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

bool dir_address_valid(const char *address)
{
    if (!address)
        return false;
    size_t n = strlen(address);
    const char *at = strchr(address, '@');
    if (!at || n > DIR_MAX_ADDRESS)
        return false;
    size_t local = (size_t)(at - address);
    if (local < 1 || local > DIR_MAX_LOCAL)
        return false;
    /* dot-atom: atoms of atext joined by single dots. */
    for (size_t i = 0; i < local; i++) {
        unsigned char c = (unsigned char)address[i];
        if (c == '.') {
            if (i == 0 || i == local - 1 || address[i - 1] == '.')
                return false;
        } else if (!is_atext(c)) {
            return false;
        }
    }
    return domain_span_valid(at + 1, n - local - 1);
}

/* utf8_next - the code point at s (valid UTF-8 assumed) and its length in *len. */
static unsigned utf8_next(const unsigned char *s, size_t *len)
{
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    if (s[0] < 0xE0) {
        *len = 2;
        return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    }
    if (s[0] < 0xF0) {
        *len = 3;
        return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    }
    *len = 4;
    return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

bool dir_name_valid(const char *name)
{
    if (!name || !*name)
        return false;
    size_t n = strlen(name);
    /* Every character takes at most 4 bytes: a longer text cannot be short enough. */
    if (n > 4u * DIR_MAX_NAME || !base_utf8_valid(name, n))
        return false;
    size_t chars = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        unsigned cp = utf8_next((const unsigned char *)name + i, &len);
        /* C0 and C1 controls and DEL: a name is one line of text. Lone surrogates (WTF-8)
         * are no text either. */
        if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || (cp >= 0xD800 && cp < 0xE000))
            return false;
        i += len;
        if (++chars > DIR_MAX_NAME)
            return false;
    }
    return true;
}
