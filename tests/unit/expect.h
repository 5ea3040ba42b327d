/* expect.h - what the unit tests share: literals with their lengths, and a byte-for-byte
 * comparison whose failure shows both sides with CR, LF and other control bytes made visible.
 * Include after cmocka.h. */
#ifndef IMS_TESTS_EXPECT_H
#define IMS_TESTS_EXPECT_H

#include <stdio.h>
#include <string.h>

/* S("...") - a literal with its length, NULs included. */
#define S(lit) lit, sizeof(lit) - 1
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* expect_esc - printable form of bytes p[0..n) into out (size bytes); returns out. */
static inline const char *expect_esc(const char *p, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < size; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            o += (size_t)snprintf(out + o, size - o, "\\r");
        else if (c == '\n')
            o += (size_t)snprintf(out + o, size - o, "\\n\n");
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

/* expect_bytes - fail the test unless got[0..got_len) is want[0..want_len), naming what. */
static inline void expect_bytes(const char *what, const char *got, size_t got_len, const char *want,
                                size_t want_len)
{
    if (got_len == want_len && (!got_len || !memcmp(got, want, got_len)))
        return;
    static char g[32768], w[32768];
    fail_msg("%s:\n--- got (%zu)\n%s\n--- want (%zu)\n%s", what, got_len,
             expect_esc(got, got_len, g, sizeof g), want_len,
             expect_esc(want, want_len, w, sizeof w));
}

#endif
