/* events.c - the service's event log: the original's event IDs and categories, filtered by
 * the Diagnostics Logging levels (atomic: changed live), handed to the program's sink. */
#include "ims/ims.h"

#include <stdarg.h>
#include <stdio.h>

#define IMS_EVENT_MAX 1024 /* bytes of one event's text */

static const char *const category_names[IMS_CAT_COUNT] = {
    "Initialization/Termination", "Addressing",          "Message Transfer",
    "SMTP Interface Events",      "Internal Processing", "Content Conversion",
    "SMTP Protocol Log",          "Message Archival",
};

const char *ims_category_name(ims_category c)
{
    return (unsigned)c < IMS_CAT_COUNT ? category_names[c] : "Unknown";
}

unsigned ims_log_level(const ims_log *log, ims_category c)
{
    if (!log || (unsigned)c >= IMS_CAT_COUNT)
        return IMS_LEVEL_NONE;
    return atomic_load_explicit(&log->levels[c], memory_order_relaxed);
}

void ims_log_set_level(ims_log *log, ims_category c, unsigned level)
{
    if (log && (unsigned)c < IMS_CAT_COUNT)
        atomic_store_explicit(&log->levels[c], (uint8_t)level, memory_order_relaxed);
}

void ims_log_set_levels(ims_log *log, const uint8_t *levels)
{
    for (int c = 0; c < IMS_CAT_COUNT; c++)
        ims_log_set_level(log, (ims_category)c, levels[c]);
}

const char *ims_severity_name(ims_severity s)
{
    switch (s) {
    case IMS_SEV_ERROR:
        return "Error";
    case IMS_SEV_WARNING:
        return "Warning";
    default:
        return "Information";
    }
}

void ims_log_event(ims_log *log, unsigned id, ims_category cat, ims_severity sev, unsigned level,
                   const char *fmt, ...)
{
    if (!log || !log->fn)
        return;
    /* Errors are always logged; the rest when the category's level reaches theirs. */
    if (sev != IMS_SEV_ERROR && level > IMS_LEVEL_NONE && (unsigned)cat < IMS_CAT_COUNT &&
        ims_log_level(log, cat) < level)
        return;
    char text[IMS_EVENT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* One event, one line: a value from outside must not forge a second one. */
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    ims_event ev = {id, cat, sev, text};
    log->fn(log->arg, &ev);
}
