/* tracking.c - message tracking (KB Q173364): Tracking.log/yyyymmdd.log, named by GMT date,
 * one tab-separated line per event and recipient, all times in GMT. */
#include "ims/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"

#define TRACKING_LINE_MAX 8448  /* bytes of one line (8 fields, the TLS one short) */
#define TRACKING_FIELD_MAX 1024 /* bytes kept of one text field */

struct ims_tracking {
    pthread_mutex_t lock; /* guards fd and day: the committer and the deliverer both log */
    char *dir;
    int fd;   /* the open day's file, or -1 */
    long day; /* days since the epoch of the open file */
};

int ims_tracking_open(const char *dir, ims_tracking **out)
{
    *out = NULL;
    int rc = base_mkdir_p(dir, 0750);
    if (rc)
        return rc;
    ims_tracking *t = calloc(1, sizeof *t);
    if (!t || !(t->dir = strdup(dir))) {
        free(t);
        return ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->fd = -1;
    t->day = -1;
    *out = t;
    return 0;
}

void ims_tracking_close(ims_tracking *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    pthread_mutex_destroy(&t->lock);
    free(t->dir);
    free(t);
}

/* put_field - a text field, tabs and line breaks made spaces so a line stays one record. */
static size_t put_field(char *p, size_t room, const char *s)
{
    size_t n = 0;
    if (!s)
        s = "";
    for (; *s && n + 1 < room && n < TRACKING_FIELD_MAX; s++)
        p[n++] = (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s;
    return n;
}

/* day_fd - the descriptor of the file for `day`, opened (O_APPEND) when the day changes. */
static int day_fd(ims_tracking *t, long day, const struct tm *tm)
{
    if (t->fd >= 0 && t->day == day)
        return 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%04d%02d%02d.log", t->dir, tm->tm_year + 1900,
                 tm->tm_mon + 1, tm->tm_mday) >= (int)sizeof path)
        return ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    if (t->fd >= 0)
        close(t->fd);
    t->fd = fd;
    t->day = day;
    return 0;
}

int ims_tracking_write(ims_tracking *t, time_t when, unsigned event, const char *queue_id,
                       const char *sender, const char *rcpt, uint64_t size, const char *client_ip,
                       const char *host)
{
    return ims_tracking_write_tls(t, when, event, queue_id, sender, rcpt, size, client_ip, host,
                                  NULL);
}

int ims_tracking_write_tls(ims_tracking *t, time_t when, unsigned event, const char *queue_id,
                           const char *sender, const char *rcpt, uint64_t size,
                           const char *client_ip, const char *host, const char *tls)
{
    struct tm tm;
    if (!gmtime_r(&when, &tm))
        return EINVAL;
    char line[TRACKING_LINE_MAX];
    size_t n = (size_t)snprintf(line, sizeof line, "%04d-%02d-%02d %02d:%02d:%02d GMT\t%u\t",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                tm.tm_sec, event);
    /* Each field takes at most TRACKING_FIELD_MAX bytes and a tab: the line always fits. */
    n += put_field(line + n, sizeof line - n, queue_id);
    line[n++] = '\t';
    n += put_field(line + n, sizeof line - n, sender && *sender ? sender : "<>");
    line[n++] = '\t';
    n += put_field(line + n, sizeof line - n, rcpt);
    n += (size_t)snprintf(line + n, sizeof line - n, "\t%llu\t", (unsigned long long)size);
    n += put_field(line + n, sizeof line - n, client_ip);
    line[n++] = '\t';
    n += put_field(line + n, sizeof line - n, host);
    if (tls) {
        line[n++] = '\t';
        n += put_field(line + n, sizeof line - n, tls);
    }
    line[n++] = '\n';

    pthread_mutex_lock(&t->lock);
    int rc = day_fd(t, (long)(when / 86400), &tm);
    if (!rc) {
        /* One write per line: O_APPEND places it whole at the end of the file. */
        ssize_t w = write(t->fd, line, n);
        if (w < 0)
            rc = errno;
        else if ((size_t)w != n)
            rc = EIO;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}
