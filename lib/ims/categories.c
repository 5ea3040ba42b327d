/* categories.c - the Diagnostics Logging vocabulary: categories by value name or alias, levels by
 * name or number, as `imsctl diagnostics` and the live reload's events write them. */
#include "ims/ims.h"

#include <string.h>
#include <strings.h>

#define ALIASES_MAX 4 /* aliases of one category */

/* Aliases for the command line: the value name made one lower-case word, and shorter ones
 * (the value names hold blanks and a slash, awkward in a shell). */
static const struct {
    const char *alias[ALIASES_MAX];
    const char *text; /* the same, for help and error messages */
} aliases[IMS_CAT_COUNT] = {
    [IMS_CAT_INIT_TERM] = {{"initialization-termination", "init-term", "init"},
                           "initialization-termination, init-term, init"},
    [IMS_CAT_ADDRESSING] = {{"addressing"}, "addressing"},
    [IMS_CAT_MESSAGE_TRANSFER] = {{"message-transfer", "transfer"}, "message-transfer, transfer"},
    [IMS_CAT_SMTP_INTERFACE] = {{"smtp-interface-events", "smtp-interface", "interface"},
                                "smtp-interface-events, smtp-interface, interface"},
    [IMS_CAT_INTERNAL] = {{"internal-processing", "internal"}, "internal-processing, internal"},
    [IMS_CAT_CONTENT_CONVERSION] = {{"content-conversion", "conversion"},
                                    "content-conversion, conversion"},
    [IMS_CAT_SMTP_PROTOCOL_LOG] = {{"smtp-protocol-log", "protocol-log", "protolog"},
                                   "smtp-protocol-log, protocol-log, protolog"},
    [IMS_CAT_MESSAGE_ARCHIVAL] = {{"message-archival", "archival"}, "message-archival, archival"},
};

int ims_category_parse(const char *text, ims_category *out)
{
    if (!text)
        return -1;
    for (int c = 0; c < IMS_CAT_COUNT; c++) {
        bool hit = !strcasecmp(text, ims_category_name((ims_category)c));
        for (size_t i = 0; !hit && i < ALIASES_MAX && aliases[c].alias[i]; i++)
            hit = !strcasecmp(text, aliases[c].alias[i]);
        if (hit) {
            *out = (ims_category)c;
            return 0;
        }
    }
    return -1;
}

const char *ims_category_aliases(ims_category c)
{
    return (unsigned)c < IMS_CAT_COUNT ? aliases[c].text : "";
}

static const char *const level_names[IMS_LEVEL_HIGHEST + 1] = {
    "None", "Minimum", "Minimum (2)", "Medium", "Medium (4)", "Maximum",
};

int ims_level_parse(const char *text, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned level;
    } words[] = {{"none", IMS_LEVEL_NONE},     {"minimum", IMS_LEVEL_MINIMUM},
                 {"medium", IMS_LEVEL_MEDIUM}, {"maximum", IMS_LEVEL_MAXIMUM},
                 {"min", IMS_LEVEL_MINIMUM},   {"max", IMS_LEVEL_MAXIMUM}};
    if (!text || !*text)
        return -1;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcasecmp(text, words[i].name)) {
            *out = words[i].level;
            return 0;
        }
    /* One digit: "05" or "+5" are not what anybody means by a level. */
    if (text[0] >= '0' && text[0] <= '0' + IMS_LEVEL_HIGHEST && !text[1]) {
        *out = (unsigned)(text[0] - '0');
        return 0;
    }
    return -1;
}

const char *ims_level_name(unsigned level)
{
    return level <= IMS_LEVEL_HIGHEST ? level_names[level] : "Invalid";
}
