/* log.c - imsd's event sink: every event to syslog as the MSExchangeIMC source, and in
 * console mode to stderr too, with a timestamp; the last error is kept for STATUS=. */
#include "imsd.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define SINK_STAMP_MAX 32 /* "2026-11-26 05:30:00" */

static int sink_priority(ims_severity s)
{
    switch (s) {
    case IMS_SEV_ERROR:
        return LOG_ERR;
    case IMS_SEV_WARNING:
        return LOG_WARNING;
    default:
        return LOG_INFO;
    }
}

static void sink_event(void *arg, const ims_event *ev)
{
    imsd_sink *sink = arg;
    const char *cat = ims_category_name(ev->category);
    const char *sev = ims_severity_name(ev->severity);
    syslog(sink_priority(ev->severity), "Event %u (%s, %s): %s", ev->id, cat, sev, ev->text);
    if (sink->console) {
        char stamp[SINK_STAMP_MAX];
        time_t now = time(NULL);
        struct tm tm;
        if (!localtime_r(&now, &tm) || !strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm))
            snprintf(stamp, sizeof stamp, "%lld", (long long)now);
        fprintf(stderr, "%s Event %u (%s, %s): %s\n", stamp, ev->id, cat, sev, ev->text);
    }
    if (ev->severity == IMS_SEV_ERROR) {
        sink->last_error_id = ev->id;
        snprintf(sink->last_error, sizeof sink->last_error, "%s", ev->text);
    }
}

void imsd_sink_open(imsd_sink *sink, ims_log *log, bool console)
{
    memset(sink, 0, sizeof *sink);
    sink->console = console;
    openlog(IMS_SERVICE_NAME, LOG_PID, LOG_DAEMON);
    log->fn = sink_event;
    log->arg = sink;
}

void imsd_sink_close(imsd_sink *sink)
{
    (void)sink;
    closelog();
}
