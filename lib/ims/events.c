/* events.c - the service's event log: the original's event IDs and categories, filtered by
 * the Diagnostics Logging levels (atomic: changed live), handed to the program's sink. */
#include "ims/ims.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

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

bool ims_err_no_space(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

/* mount_point - the top of path's file system: the last directory going up from it whose
 * device is still path's. Returns 0 or -1 (path cannot be resolved). */
static int mount_point(const char *path, char *out, size_t n)
{
    char cur[PATH_MAX];
    struct stat st, up;
    if (!realpath(path, cur) || stat(cur, &st))
        return -1;
    while (strcmp(cur, "/")) {
        char *slash = strrchr(cur, '/');
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%.*s", slash == cur ? 1 : (int)(slash - cur), cur);
        if (stat(parent, &up) || up.st_dev != st.st_dev)
            break;
        snprintf(cur, sizeof cur, "%s", parent);
    }
    snprintf(out, n, "%s", cur);
    return 0;
}

char *ims_fs_describe(const char *path, char *out, size_t n)
{
    char mnt[PATH_MAX];
    struct statvfs vfs;
    bool have_mnt = !mount_point(path, mnt, sizeof mnt);
    bool have_free = !statvfs(path, &vfs);
    unsigned long long avail = have_free ? (unsigned long long)vfs.f_bavail * vfs.f_frsize : 0;
    if (have_mnt && have_free)
        snprintf(out, n, "%s (file system mounted at %s, %llu bytes free)", path, mnt, avail);
    else if (have_mnt)
        snprintf(out, n, "%s (file system mounted at %s)", path, mnt);
    else if (have_free)
        snprintf(out, n, "%s (%llu bytes free)", path, avail);
    else
        snprintf(out, n, "%s", path);
    return out;
}
