/* protolog.c - the SMTP protocol log in RootDir\Log: one file per concurrent connection,
 * L0000001.LOG and up, a record per line, written at the Diagnostics level asked for. */
#include "ims/ims.h"
#include "ims/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

struct ims_protolog {
    char *dir;
    unsigned level;
    bool *taken; /* taken[i]: L<i+1> is held by an open connection */
    size_t ntaken;
};

struct ims_protolog_conn {
    ims_protolog *pl;
    unsigned level; /* the log's when the connection began: one level a session */
    size_t slot;
    int fd;
    uint64_t id;
    char cmdbuf[IMS_PROTOLOG_LINE_MAX]; /* a reply line split across calls */
    size_t cmdlen;
    char databuf[IMS_PROTOLOG_LINE_MAX]; /* a content line split across calls */
    size_t datalen;
};

int ims_protolog_open(const char *dir, unsigned level, ims_protolog **out)
{
    *out = NULL;
    if (level == IMS_LEVEL_NONE)
        return 0;
    return ims_protolog_create(dir, level, out);
}

int ims_protolog_create(const char *dir, unsigned level, ims_protolog **out)
{
    *out = NULL;
    ims_protolog *pl = calloc(1, sizeof *pl);
    if (!pl || !(pl->dir = strdup(dir))) {
        free(pl);
        return ENOMEM;
    }
    pl->level = level;
    *out = pl;
    return 0;
}

void ims_protolog_set_level(ims_protolog *pl, unsigned level)
{
    if (pl)
        pl->level = level;
}

unsigned ims_protolog_level(const ims_protolog *pl)
{
    return pl ? pl->level : IMS_LEVEL_NONE;
}

void ims_protolog_close(ims_protolog *pl)
{
    if (!pl)
        return;
    free(pl->taken);
    free(pl->dir);
    free(pl);
}

/* slot_take - the lowest free number, growing the table as needed; SIZE_MAX when full. */
static size_t slot_take(ims_protolog *pl)
{
    for (size_t i = 0; i < pl->ntaken; i++)
        if (!pl->taken[i]) {
            pl->taken[i] = true;
            return i;
        }
    if (pl->ntaken >= IMS_PROTOLOG_MAX_FILES)
        return SIZE_MAX;
    size_t n = pl->ntaken ? pl->ntaken * 2 : 16;
    if (n > IMS_PROTOLOG_MAX_FILES)
        n = IMS_PROTOLOG_MAX_FILES;
    bool *t = realloc(pl->taken, n * sizeof *t);
    if (!t)
        return SIZE_MAX;
    memset(t + pl->ntaken, 0, (n - pl->ntaken) * sizeof *t);
    pl->taken = t;
    size_t slot = pl->ntaken;
    pl->ntaken = n;
    pl->taken[slot] = true;
    return slot;
}

/* record - one line: time, connection id, mark, text (control characters made '?'), whole
 * or not at all even if the disk fills. */
static void record(ims_protolog_conn *c, char mark, const char *text, size_t n)
{
    char line[IMS_PROTOLOG_LINE_MAX + 96];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int h = snprintf(line, sizeof line, "%04d-%02d-%02d %02d:%02d:%02d GMT\t%llu\t%c\t",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (unsigned long long)c->id, mark);
    if (h < 0)
        return;
    size_t len = (size_t)h;
    if (n > IMS_PROTOLOG_LINE_MAX)
        n = IMS_PROTOLOG_LINE_MAX;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        line[len++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    line[len++] = '\n';
    /* A failed log write must not disturb the mail: it is dropped. */
    (void)ims_append_whole(c->fd, line, len);
}

/* begin - take a file for connection conn_id and write its "+" line, text. */
static int begin(ims_protolog *pl, uint64_t conn_id, const char *text, size_t n,
                 ims_protolog_conn **out)
{
    *out = NULL;
    if (!pl || pl->level == IMS_LEVEL_NONE)
        return 0;
    size_t slot = slot_take(pl);
    if (slot == SIZE_MAX)
        return 0;
    char path[PATH_MAX], old[PATH_MAX];
    snprintf(path, sizeof path, "%s/L%07zu.LOG", pl->dir, slot + 1);
    snprintf(old, sizeof old, "%s/L%07zu.OLD", pl->dir, slot + 1);
    struct stat st;
    if (stat(path, &st) == 0 && (uint64_t)st.st_size >= IMS_PROTOLOG_FILE_MAX)
        rename(path, old); /* only this event loop writes the file: no race */
    ims_protolog_conn *c = calloc(1, sizeof *c);
    int fd = c ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640) : -1;
    if (fd < 0) {
        int e = c ? errno : ENOMEM;
        free(c);
        pl->taken[slot] = false;
        return e;
    }
    c->pl = pl;
    c->level = pl->level;
    c->slot = slot;
    c->fd = fd;
    c->id = conn_id;
    record(c, '+', text, n);
    *out = c;
    return 0;
}

int ims_protolog_begin(ims_protolog *pl, uint64_t conn_id, const char *peer, const char *local,
                       ims_protolog_conn **out)
{
    char text[256];
    int n = snprintf(text, sizeof text, "Connection from %s to %s", peer ? peer : "unknown",
                     local ? local : "unknown");
    return begin(pl, conn_id, text, n > 0 ? (size_t)n : 0, out);
}

int ims_protolog_begin_out(ims_protolog *pl, uint64_t conn_id, const char *remote,
                           ims_protolog_conn **out)
{
    char text[256];
    int n = snprintf(text, sizeof text, "Connection to %s (outbound)", remote ? remote : "unknown");
    return begin(pl, conn_id, text, n > 0 ? (size_t)n : 0, out);
}

void ims_protolog_command(ims_protolog_conn *c, const char *p, size_t n)
{
    if (c && c->level >= IMS_LEVEL_MEDIUM)
        record(c, '<', p, n);
}

/* lines - split CRLF-ended text into records; an unfinished line waits in pend (cut at
 * IMS_PROTOLOG_LINE_MAX bytes). */
static void lines(ims_protolog_conn *c, char mark, char *pend, size_t *plen, const char *p,
                  size_t n)
{
    while (n) {
        const char *lf = memchr(p, '\n', n);
        size_t k = lf ? (size_t)(lf - p) : n;
        size_t room = IMS_PROTOLOG_LINE_MAX - *plen;
        size_t take = k < room ? k : room;
        memcpy(pend + *plen, p, take);
        *plen += take;
        if (!lf)
            return;
        size_t len = *plen;
        if (len && pend[len - 1] == '\r')
            len--;
        record(c, mark, pend, len);
        *plen = 0;
        p += k + 1;
        n -= k + 1;
    }
}

void ims_protolog_reply(ims_protolog_conn *c, const char *p, size_t n)
{
    if (c && c->level >= IMS_LEVEL_MEDIUM)
        lines(c, '>', c->cmdbuf, &c->cmdlen, p, n);
}

void ims_protolog_content(ims_protolog_conn *c, const char *p, size_t n)
{
    if (c && c->level >= IMS_LEVEL_MAXIMUM)
        lines(c, 'D', c->databuf, &c->datalen, p, n);
}

void ims_protolog_end(ims_protolog_conn *c, const char *summary)
{
    if (!c)
        return;
    if (c->datalen) /* content that never ended its line (a dropped connection) */
        record(c, 'D', c->databuf, c->datalen);
    record(c, '-', summary, strlen(summary));
    close(c->fd);
    c->pl->taken[c->slot] = false;
    free(c);
}
