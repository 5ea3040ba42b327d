/* run.c - the run directory <root>/run that imsd and imsctl share: the pid lock imsd holds
 * for its whole life, and the status file it writes once ready. */
#include "imsd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define RUN_DIR_MODE 0755
#define RUN_FILE_MODE 0644
#define RUN_PID_MAX 32 /* "<pid>\n" */

static int run_fail(ims_log *log, const char *what, const char *path, int err)
{
    ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                  "Unable to %s %s: %s", what, path, strerror(err));
    return IMS_EV_INTERNAL;
}

static int run_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s%s%s", dir, name ? "/" : "", name ? name : "");
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* run_report_other - print who holds the lock, from the pid it wrote. */
static void run_report_other(int fd)
{
    char text[RUN_PID_MAX] = "";
    ssize_t n;
    do {
        n = pread(fd, text, sizeof text - 1, 0);
    } while (n < 0 && errno == EINTR);
    text[n > 0 ? n : 0] = '\0';
    char *end;
    long pid = strtol(text, &end, 10);
    if (end != text && pid > 0)
        fprintf(stderr, "imsd: already running (pid %ld)\n", pid);
    else /* between its lock and its write */
        fprintf(stderr, "imsd: already running\n");
}

#define RUN_LOCK_TRIES 25

int imsd_run_lock(imsd_run *r, const char *root, ims_log *log)
{
    r->lockfd = -1;
    if (run_path(r->dir, sizeof r->dir, root, "run") ||
        run_path(r->pidfile, sizeof r->pidfile, r->dir, "imsd.pid") ||
        run_path(r->statusfile, sizeof r->statusfile, r->dir, "imsd.status"))
        return run_fail(log, "use the state root", root, ENAMETOOLONG);
    /* Every user needs to reach run/ (imsctl reads it), so the root too is 0755. */
    int e = base_mkdir_p(root, RUN_DIR_MODE);
    if (e)
        return run_fail(log, "create the state root", root, e);
    if (mkdir(r->dir, RUN_DIR_MODE) && errno != EEXIST)
        return run_fail(log, "create the run directory", r->dir, errno);
    int fd = open(r->pidfile, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, RUN_FILE_MODE);
    if (fd < 0)
        return run_fail(log, "open the pid file", r->pidfile, errno);
    /* imsctl holds a shared lock for a moment when it looks whether we run: a lock that is
     * busy only that long is no other imsd. Bounded: 25 tries over 250 ms. */
    for (int tries = 1;; tries++) {
        e = flock(fd, LOCK_EX | LOCK_NB) ? errno : 0;
        if (e != EWOULDBLOCK || tries == RUN_LOCK_TRIES)
            break;
        usleep(10000);
    }
    if (e) {
        if (e == EWOULDBLOCK) {
            run_report_other(fd);
            close(fd);
            return IMSD_EXIT_RUNNING;
        }
        close(fd);
        return run_fail(log, "lock the pid file", r->pidfile, e);
    }
    char text[RUN_PID_MAX];
    int len = snprintf(text, sizeof text, "%ld\n", (long)getpid());
    ssize_t n;
    if (ftruncate(fd, 0)) {
        e = errno;
        close(fd);
        return run_fail(log, "truncate the pid file", r->pidfile, e);
    }
    do {
        n = pwrite(fd, text, (size_t)len, 0);
    } while (n < 0 && errno == EINTR);
    if (n != len) {
        e = n < 0 ? errno : EIO;
        close(fd);
        return run_fail(log, "write the pid file", r->pidfile, e);
    }
    r->lockfd = fd;
    /* A status file left by an imsd that died is stale now that we hold the lock. */
    if (unlink(r->statusfile) && errno != ENOENT)
        return run_fail(log, "remove the stale status file", r->statusfile, errno);
    return IMS_OK;
}

int imsd_run_write_status(imsd_run *r, ims_log *log, const char *profile, time_t started,
                          const char *listeners, const char *account)
{
    buf b = BUF_INIT;
    int e = buf_printf(&b, "pid=%ld\nprofile=%s\nstarted=%lld\nlisteners=%s\naccount=%s\n",
                       (long)getpid(), profile, (long long)started, listeners, account);
    if (!e)
        e = base_write_file_atomic(r->statusfile, b.data, b.len, RUN_FILE_MODE);
    buf_free(&b);
    return e ? run_fail(log, "write the status file", r->statusfile, e) : IMS_OK;
}

void imsd_run_remove_status(imsd_run *r, ims_log *log)
{
    if (unlink(r->statusfile) && errno != ENOENT)
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to remove the status file %s: %s", r->statusfile, strerror(errno));
}

void imsd_run_close(imsd_run *r)
{
    if (r->lockfd >= 0)
        close(r->lockfd);
    r->lockfd = -1;
}
