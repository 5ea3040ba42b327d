/* tracking.c - message tracking (KB Q173364): Tracking.log/yyyymmdd.log, named by GMT date,
 * one tab-separated line per event and recipient, all times in GMT; writing and parsing one
 * line. */
#include "ims/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/base.h"

#define TRACKING_PWBUF 4096 /* getpwuid_r's buffer */

struct ims_tracking {
    pthread_mutex_t lock; /* guards all below: the committer and the deliverer both log */
    char *dir;
    int fd;         /* the open day's file, or -1 */
    long day;       /* days since the epoch of the open file */
    unsigned holds; /* ims_tracking_hold calls not yet released */
    char *held;     /* lines kept while held (IMS_TRACK_HELD_BYTES, made at first use) */
    size_t nheld;   /* bytes in held, all lines of the day held_day */
    long held_day;
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

static int flush_held(ims_tracking *t);

void ims_tracking_close(ims_tracking *t)
{
    if (!t)
        return;
    (void)flush_held(t); /* a hold left open: its lines are still written */
    free(t->held);
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
    for (; *s && n + 1 < room && n < IMS_TRACK_FIELD_MAX; s++)
        p[n++] = (*s == '\t' || *s == '\n' || *s == '\r') ? ' ' : *s;
    return n;
}

/* day_fd - the descriptor of the file for `day`, opened (O_APPEND) when the day changes. */
static int day_fd(ims_tracking *t, long day)
{
    if (t->fd >= 0 && t->day == day)
        return 0;
    time_t at = (time_t)day * 86400;
    struct tm tm;
    if (!gmtime_r(&at, &tm))
        return EINVAL;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%04d%02d%02d.log", t->dir, tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday) >= (int)sizeof path)
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
    ims_track_line l = {.when = when,
                        .event = event,
                        .qid = queue_id,
                        .sender = sender,
                        .rcpt = rcpt,
                        .size = size,
                        .client = client_ip,
                        .host = host,
                        .tls = tls};
    return ims_tracking_put(t, &l);
}

int ims_tracking_put(ims_tracking *t, const ims_track_line *l)
{
    struct tm tm;
    if (!gmtime_r(&l->when, &tm))
        return EINVAL;
    char line[IMS_TRACK_LINE_MAX];
    size_t n = (size_t)snprintf(line, sizeof line, "%04d-%02d-%02d %02d:%02d:%02d GMT\t%u\t",
                                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                tm.tm_sec, l->event);
    /* Each field takes at most IMS_TRACK_FIELD_MAX bytes and a tab: the line always fits. */
    n += put_field(line + n, sizeof line - n, l->qid);
    line[n++] = '\t';
    n += put_field(line + n, sizeof line - n, l->sender && *l->sender ? l->sender : "<>");
    line[n++] = '\t';
    n += put_field(line + n, sizeof line - n, l->rcpt);
    n += (size_t)snprintf(line + n, sizeof line - n, "\t%llu\t", (unsigned long long)l->size);
    n += put_field(line + n, sizeof line - n, l->client);
    line[n++] = '\t';
    n += put_field(line + n, sizeof line - n, l->host);
    /* The new fields, up to the last one that is not empty (an old reader's line stays as
     * it was when they are all empty). */
    const char *more[] = {l->tls, l->remote, l->reply, l->message_id, l->ref, l->actor};
    size_t nmore = sizeof more / sizeof more[0];
    while (nmore && (!more[nmore - 1] || !*more[nmore - 1]))
        nmore--;
    for (size_t i = 0; i < nmore; i++) {
        line[n++] = '\t';
        n += put_field(line + n, sizeof line - n, more[i]);
    }
    line[n++] = '\n';

    long day = (long)(l->when / 86400);
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    /* Held lines stay in order and in one day's file: a line that does not join them has
     * them written first. */
    if (t->nheld && (day != t->held_day || t->nheld + n > IMS_TRACK_HELD_BYTES || !t->holds))
        rc = flush_held(t);
    if (t->holds && !t->held)
        t->held = malloc(IMS_TRACK_HELD_BYTES); /* none: each line is written at once */
    if (!rc && t->holds && t->held) {
        memcpy(t->held + t->nheld, line, n);
        t->nheld += n;
        t->held_day = day;
    } else if (!rc && !(rc = day_fd(t, day))) {
        /* O_APPEND places it at the end of the file; a short write (the disk full) is cut
         * back, so the line is whole or not there. */
        rc = ims_append_whole(t->fd, line, n);
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* flush_held - the held lines written in one append, whole or not at all (the lock held). */
static int flush_held(ims_tracking *t)
{
    if (!t->nheld)
        return 0;
    int rc = day_fd(t, t->held_day);
    if (!rc)
        rc = ims_append_whole(t->fd, t->held, t->nheld);
    t->nheld = 0; /* written or lost, as a line written at once would be */
    return rc;
}

void ims_tracking_hold(ims_tracking *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->lock);
    t->holds++;
    pthread_mutex_unlock(&t->lock);
}

int ims_tracking_release(ims_tracking *t)
{
    if (!t)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    if (t->holds && !--t->holds)
        rc = flush_held(t);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

int ims_tracking_admin(ims_tracking *t, unsigned event, const char *qid, const char *sender,
                       const char *rcpt, const char *actor)
{
    ims_track_line l = {.when = time(NULL),
                        .event = event,
                        .qid = qid,
                        .sender = sender,
                        .rcpt = rcpt,
                        .actor = actor && *actor ? actor : "unknown"};
    return ims_tracking_put(t, &l);
}

char *ims_tracking_actor(uid_t uid, char *out, size_t size)
{
    struct passwd pw, *res = NULL;
    char pwbuf[TRACKING_PWBUF];
    if (getpwuid_r(uid, &pw, pwbuf, sizeof pwbuf, &res) == 0 && res)
        snprintf(out, size, "%s (uid %lu)", res->pw_name, (unsigned long)uid);
    else
        snprintf(out, size, "uid %lu", (unsigned long)uid);
    return out;
}

const char *ims_track_event_name(unsigned event)
{
    static const struct {
        unsigned event;
        const char *name;
    } names[] = {
        {IMS_TRACK_QUEUED_OUTBOUND, "Queued outbound"},
        {IMS_TRACK_TRANSFERRED_OUTBOUND, "Transferred outbound"},
        {IMS_TRACK_RECEIVED_INBOUND, "Received inbound"},
        {IMS_TRACK_TRANSFERRED_INBOUND, "Transferred inbound"},
        {1014, "Message rerouted"},
        {1015, "Report transferred in"},
        {IMS_TRACK_REPORT_OUT, "Report transferred out"},
        {IMS_TRACK_REPORT_GENERATED, "Report generated"},
        {IMS_TRACK_DEFERRED, "Deferred, will retry"},
        {IMS_TRACK_ADMIN_DELETED_NDR, "Deleted by administrator, NDR sent"},
        {IMS_TRACK_ADMIN_DELETED, "Deleted by administrator, no NDR"},
        {IMS_TRACK_ADMIN_HELD, "Held by administrator"},
        {IMS_TRACK_ADMIN_RELEASED, "Released by administrator"},
        {IMS_TRACK_ADMIN_RETRY, "Retry requested by administrator"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].event == event)
            return names[i].name;
    return "Event";
}

bool ims_track_message_id(const char *head, size_t n, char *out, size_t size)
{
    static const char name[] = "message-id:";
    size_t i = 0;
    while (i < n) {
        size_t eol = i;
        while (eol < n && head[eol] != '\n')
            eol++;
        size_t len = eol - i;
        if (len && head[i + len - 1] == '\r')
            len--;
        if (!len)
            return false; /* the header ends */
        if (len >= sizeof name - 1 && !strncasecmp(head + i, name, sizeof name - 1)) {
            /* The value, with its continuation lines (folded: start with a blank). */
            size_t o = 0;
            size_t p = i + sizeof name - 1;
            for (;;) {
                for (; p < eol; p++) {
                    char c = head[p] == '\t' || head[p] == '\r' ? ' ' : head[p];
                    if ((c == ' ' && (!o || out[o - 1] == ' ')) || o + 1 >= size)
                        continue;
                    out[o++] = c;
                }
                if (eol + 1 >= n || (head[eol + 1] != ' ' && head[eol + 1] != '\t'))
                    break;
                p = eol + 1;
                for (eol = p; eol < n && head[eol] != '\n'; eol++)
                    ;
            }
            while (o && out[o - 1] == ' ')
                o--;
            if (size)
                out[o] = 0;
            return o > 0;
        }
        i = eol + 1;
    }
    return false;
}

/* parse_time - "yyyy-mm-dd hh:mm:ss GMT" as seconds since the epoch; -1 when it is not. */
static time_t parse_time(const char *s)
{
    int y, mo, d, h, mi, se, used = 0;
    if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d GMT%n", &y, &mo, &d, &h, &mi, &se, &used) != 6 ||
        (size_t)used != strlen(s) || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || se > 60 || h < 0 || mi < 0 || se < 0)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    return timegm(&tm);
}

/* parse_num - a decimal number of at most 20 digits, all of s. */
static bool parse_num(const char *s, uint64_t max, uint64_t *out)
{
    if (!*s || strlen(s) > 20)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

int ims_track_parse(char *line, size_t n, ims_track_line *l)
{
    char *f[IMS_TRACK_FIELDS];
    size_t nf = 0;
    char *p = line, *end = line + n;
    f[nf++] = p;
    for (; p < end; p++) {
        if (*p == '\t') {
            *p = 0;
            if (nf == IMS_TRACK_FIELDS)
                break; /* a later version's fields */
            f[nf++] = p + 1;
        } else if (!*p) {
            return EBADMSG;
        }
    }
    *end = 0;
    if (nf < 8)
        return EBADMSG;
    for (size_t i = nf; i < IMS_TRACK_FIELDS; i++)
        f[i] = end;
    uint64_t ev;
    memset(l, 0, sizeof *l);
    if ((l->when = parse_time(f[0])) < 0 || !parse_num(f[1], 1000000, &ev) ||
        !parse_num(f[5], UINT64_MAX, &l->size))
        return EBADMSG;
    l->event = (unsigned)ev;
    const char **dst[] = {&l->qid, &l->sender, &l->rcpt,  NULL,           &l->client, &l->host,
                          &l->tls, &l->remote, &l->reply, &l->message_id, &l->ref,    &l->actor};
    for (size_t i = 0; i < sizeof dst / sizeof dst[0]; i++)
        if (dst[i])
            *dst[i] = f[i + 2];
    return 0;
}
