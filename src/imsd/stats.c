/* stats.c - the service's counters, and the statistics block the console shows every
 * ConsoleStatFrequency seconds, as MSEXCIMC -console did. */
#include "imsd.h"

#include <string.h>

#define STATS_STAMP_MAX 32
#define SECONDS_PER_DAY 86400
#define SECONDS_PER_HOUR 3600
#define SECONDS_PER_MINUTE 60

void imsd_stats_init(imsd_stats *st)
{
    memset(st, 0, sizeof *st);
    clock_gettime(CLOCK_MONOTONIC, &st->started);
}

void imsd_stats_print(const imsd_stats *st, FILE *f)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long up = (long long)(now.tv_sec - st->started.tv_sec);
    if (up < 0)
        up = 0;
    char stamp[STATS_STAMP_MAX];
    time_t wall = time(NULL);
    struct tm tm;
    if (!localtime_r(&wall, &tm) || !strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(stamp, sizeof stamp, "%lld", (long long)wall);
    /* A fixed layout: one block, the same lines in the same columns every time, so that a
     * terminal left running reads like a table and a script can cut columns out of it. */
    fprintf(f,
            "---- %s statistics at %s, up %lldd %02lld:%02lld:%02lld ----\n"
            "Connections inbound    current %10u   total    %10llu   rejected %10llu\n"
            "Messages               inbound %10llu   outbound %10llu\n"
            "Queues                 MTS-IN  %10u   MTS-OUT  %10u\n"
            "                       inbound %10u   outbound %10u\n",
            IMS_SERVICE_NAME, stamp, up / SECONDS_PER_DAY, up % SECONDS_PER_DAY / SECONDS_PER_HOUR,
            up % SECONDS_PER_HOUR / SECONDS_PER_MINUTE, up % SECONDS_PER_MINUTE,
            st->conn_in_current, (unsigned long long)st->conn_in_total,
            (unsigned long long)st->conn_in_rejected, (unsigned long long)st->msg_in,
            (unsigned long long)st->msg_out, st->queued_mts_in, st->queued_mts_out, st->queued_in,
            st->queued_out);
    fflush(f);
}
