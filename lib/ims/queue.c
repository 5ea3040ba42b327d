/* queue.c - the outbound queue's schedule as pure functions of the settings: retry intervals
 * (RetryInterval), message time-outs by priority and the priority read from the headers. */
#include "ims/ims.h"

#include <string.h>
#include <strings.h>

#define MS_PER_HOUR 3600000u
#define MS_PER_MINUTE 60000u
#define FRACTION_SCALE 1000000000u /* 10^IMS_RETRY_FRACTION_DIGITS */
#define TOKEN_MAX 16               /* bytes of a priority value compared (the longest known: 10) */

/* --- RetryInterval ----------------------------------------------------------------------- */

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* parse_hours - one decimal of hours in [p, end), blanks already trimmed, as nanohours
 * (hours * 10^9). Returns 0 or -1. */
static int parse_hours(const char *p, const char *end, uint64_t *nanohours)
{
    uint64_t whole = 0, frac = 0, scale = FRACTION_SCALE;
    bool digits = false;
    for (; p < end && *p >= '0' && *p <= '9'; p++, digits = true)
        if ((whole = whole * 10 + (uint64_t)(*p - '0')) > IMS_RETRY_HOURS_MAX)
            return -1;
    if (p < end && *p == '.') {
        unsigned n = 0;
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, digits = true) {
            if (++n > IMS_RETRY_FRACTION_DIGITS)
                return -1;
            scale /= 10;
            frac += (uint64_t)(*p - '0') * scale;
        }
    }
    if (p != end || !digits)
        return -1;
    *nanohours = whole * FRACTION_SCALE + frac;
    return *nanohours > (uint64_t)IMS_RETRY_HOURS_MAX * FRACTION_SCALE ? -1 : 0;
}

int ims_retry_parse(const char *text, uint64_t ms[IMS_RETRY_MAX], size_t *n)
{
    size_t count = 0;
    bool zero = false;
    const char *p = text;
    if (strnlen(text, IMS_RETRY_TEXT_MAX) == IMS_RETRY_TEXT_MAX)
        return -1;
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        while (p < end && blank(*p))
            p++;
        while (end > p && blank(end[-1]))
            end--;
        uint64_t nh;
        if (count == IMS_RETRY_MAX || parse_hours(p, end, &nh))
            return -1;
        /* Nanohours to milliseconds (1 h = 3.6e6 ms = 3.6e-3 ms per nanohour), to the nearest. */
        uint64_t v = (nh * (MS_PER_HOUR / 100000u) + FRACTION_SCALE / 100000u / 2) /
                     (FRACTION_SCALE / 100000u);
        if (nh == 0)
            zero = true;
        else if (v == 0)
            return -1; /* below a millisecond */
        ms[count++] = v;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (zero && count > 1)
        return -1; /* "0" means no retries only alone: "1,0" would retry at once, forever */
    *n = zero ? 0 : count;
    return 0;
}

uint64_t ims_retry_delay_ms(const ims_settings *s, unsigned attempts)
{
    if (attempts == 0)
        return 0;
    if (s->nretry == 0)
        return IMS_NEVER;
    size_t i = attempts < s->nretry ? attempts - 1 : s->nretry - 1;
    return s->retry_ms[i];
}

/* --- priority ---------------------------------------------------------------------------- */

/* The fields looked at, in the order of their precedence. */
enum { FIELD_PRIORITY, FIELD_IMPORTANCE, FIELD_X_PRIORITY, NFIELDS };

static const struct {
    const char *name;
    const char *values[3]; /* the value of each class: urgent, normal, non-urgent */
} fields[NFIELDS] = {
    [FIELD_PRIORITY] = {"Priority", {"urgent", "normal", "non-urgent"}},
    [FIELD_IMPORTANCE] = {"Importance", {"high", "normal", "low"}},
    [FIELD_X_PRIORITY] = {"X-Priority", {NULL, NULL, NULL}}, /* digits: x_priority() */
};

static const ims_priority classes[3] = {IMS_PRIORITY_URGENT, IMS_PRIORITY_NORMAL,
                                        IMS_PRIORITY_NONURGENT};

/* x_priority - "1" .. "5", perhaps followed by a comment ("1 (Highest)"). */
static int x_priority(const char *tok, size_t n, ims_priority *out)
{
    if (n != 1 || tok[0] < '1' || tok[0] > '5')
        return -1;
    *out = tok[0] <= '2'   ? IMS_PRIORITY_URGENT
           : tok[0] == '3' ? IMS_PRIORITY_NORMAL
                           : IMS_PRIORITY_NONURGENT;
    return 0;
}

/* field_value - the class a field's value names: its first token (after blanks and line
 * breaks of the folding; up to a blank, ';' or '('). Returns 0 or -1 (unknown). */
static int field_value(int f, const char *p, const char *end, ims_priority *out)
{
    while (p < end && (blank(*p) || *p == '\r' || *p == '\n'))
        p++;
    const char *tok = p;
    while (p < end && !blank(*p) && *p != '\r' && *p != '\n' && *p != ';' && *p != '(')
        p++;
    size_t n = (size_t)(p - tok);
    if (f == FIELD_X_PRIORITY)
        return x_priority(tok, n, out);
    if (n >= TOKEN_MAX)
        return -1;
    for (int c = 0; c < 3; c++)
        if (strlen(fields[f].values[c]) == n && !strncasecmp(tok, fields[f].values[c], n)) {
            *out = classes[c];
            return 0;
        }
    return -1;
}

/* line_end - the end of the line at p (after its LF, or end). */
static const char *line_end(const char *p, const char *end)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));
    return lf ? lf + 1 : end;
}

ims_priority ims_priority_of_headers(const char *hdrs, size_t len)
{
    const char *p = hdrs, *end = hdrs + (len < IMS_HEADER_SCAN_MAX ? len : IMS_HEADER_SCAN_MAX);
    bool found[NFIELDS] = {false};
    ims_priority got[NFIELDS] = {IMS_PRIORITY_NORMAL};
    while (p < end && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n')) {
        /* One field: its first line and every folded line after it. */
        const char *field_end = line_end(p, end);
        while (field_end < end && blank(*field_end))
            field_end = line_end(field_end, end);
        const char *colon = memchr(p, ':', (size_t)(field_end - p));
        if (colon) {
            const char *name_end = colon;
            while (name_end > p && blank(name_end[-1]))
                name_end--; /* RFC 5322 4.5.3's obsolete blanks before the colon */
            size_t n = (size_t)(name_end - p);
            for (int f = 0; f < NFIELDS; f++)
                if (!found[f] && strlen(fields[f].name) == n &&
                    !strncasecmp(p, fields[f].name, n) &&
                    field_value(f, colon + 1, field_end, &got[f]) == 0)
                    found[f] = true;
        }
        p = field_end;
    }
    for (int f = 0; f < NFIELDS; f++)
        if (found[f])
            return got[f];
    return IMS_PRIORITY_NORMAL;
}

const char *ims_priority_name(ims_priority p)
{
    switch (p) {
    case IMS_PRIORITY_URGENT:
        return "urgent";
    case IMS_PRIORITY_NONURGENT:
        return "non-urgent";
    case IMS_PRIORITY_NORMAL:
        break;
    }
    return "normal";
}

/* --- time-outs --------------------------------------------------------------------------- */

uint64_t ims_message_timeout_ms(const ims_settings *s, ims_priority p)
{
    uint32_t minutes = p == IMS_PRIORITY_URGENT      ? s->message_timeout_urgent
                       : p == IMS_PRIORITY_NONURGENT ? s->message_timeout_nonurgent
                                                     : s->message_timeout_normal;
    return (uint64_t)minutes * MS_PER_MINUTE;
}

uint64_t ims_delay_notice_ms(const ims_settings *s, ims_priority p)
{
    uint64_t at = (uint64_t)s->delay_notification * MS_PER_MINUTE;
    if (at == 0 || at >= ims_message_timeout_ms(s, p))
        return IMS_NEVER;
    return at;
}
