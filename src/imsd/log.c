/* log.c - imsd's event sink: every event to syslog as the MSExchangeIMC source, and in
 * console mode to stderr too, with a timestamp; the last error is kept for STATUS=, the last
 * IMSD_SINK_RECENT events for the administrator's page. */
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
    pthread_mutex_lock(&sink->lock);
    imsd_recent_event *r = &sink->recent[sink->seq % IMSD_SINK_RECENT];
    r->seq = ++sink->seq;
    r->at = time(NULL);
    r->id = ev->id;
    r->category = (uint8_t)ev->category;
    r->severity = (uint8_t)ev->severity;
    snprintf(r->text, sizeof r->text, "%s", ev->text);
    pthread_mutex_unlock(&sink->lock);
    if (ev->severity == IMS_SEV_ERROR) {
        sink->last_error_id = ev->id;
        snprintf(sink->last_error, sizeof sink->last_error, "%s", ev->text);
    }
}

void imsd_sink_open(imsd_sink *sink, ims_log *log, bool console)
{
    memset(sink, 0, sizeof *sink);
    sink->console = console;
    pthread_mutex_init(&sink->lock, NULL);
    openlog(IMS_SERVICE_NAME, LOG_PID, LOG_DAEMON);
    log->fn = sink_event;
    log->arg = sink;
}

void imsd_sink_close(imsd_sink *sink)
{
    closelog();
    pthread_mutex_destroy(&sink->lock);
}

int imsd_sink_recent_json(imsd_sink *sink, uint64_t since, buf *out)
{
    pthread_mutex_lock(&sink->lock);
    uint64_t first = sink->seq > IMSD_SINK_RECENT ? sink->seq - IMSD_SINK_RECENT + 1 : 1;
    if (since + 1 > first)
        first = since + 1;
    int rc = buf_addc(out, '[');
    for (uint64_t q = first; !rc && q <= sink->seq; q++) {
        const imsd_recent_event *r = &sink->recent[(q - 1) % IMSD_SINK_RECENT];
        rc = buf_printf(out, "%s{\"seq\":%llu,\"time\":%lld,\"id\":%u,\"category\":",
                        q == first ? "" : ",", (unsigned long long)r->seq, (long long)r->at, r->id);
        if (!rc)
            rc = ims_json_string(out, ims_category_name((ims_category)r->category));
        if (!rc)
            rc = buf_adds(out, ",\"severity\":");
        if (!rc)
            rc = ims_json_string(out, ims_severity_name((ims_severity)r->severity));
        if (!rc)
            rc = buf_adds(out, ",\"text\":");
        if (!rc)
            rc = ims_json_string(out, r->text);
        if (!rc)
            rc = buf_addc(out, '}');
    }
    pthread_mutex_unlock(&sink->lock);
    return rc ? rc : buf_addc(out, ']');
}
