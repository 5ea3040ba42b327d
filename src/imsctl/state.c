/* state.c - the run state imsd publishes under <state root>/run: the pid lock (held while imsd
 * lives: the kernel drops it on any death) and the status file it writes once ready. */
#include "imsctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* A pid file the lock holder has truncated but not yet rewritten reads empty: re-read it this
 * many times, IC_POLL_MS apart, before giving up on the pid. */
#define IC_PID_READ_TRIES 25
#define IC_PID_TEXT 32

static int join(char *out, size_t n, const char *a, const char *b)
{
    return snprintf(out, n, "%s/%s", a, b) >= (int)n ? ENAMETOOLONG : 0;
}

int ic_paths_init(ic_paths *p)
{
    const char *root = base_state_root();
    if (snprintf(p->root, sizeof p->root, "%s", root) >= (int)sizeof p->root)
        return ENAMETOOLONG;
    int rc = join(p->run_dir, sizeof p->run_dir, p->root, IC_RUN_DIR);
    if (!rc)
        rc = join(p->pid_file, sizeof p->pid_file, p->run_dir, IC_PID_FILE);
    if (!rc)
        rc = join(p->status_file, sizeof p->status_file, p->run_dir, IC_STATUS_FILE);
    return rc;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* read_pid - the decimal pid the file holds, or 0. */
static pid_t read_pid(int fd)
{
    char text[IC_PID_TEXT];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || (*end && *end != '\n') || v <= 0 || v > INT32_MAX)
        return 0;
    return (pid_t)v;
}

int ic_probe(const ic_paths *p, ic_state *st)
{
    st->running = false;
    st->pid = 0;
    int fd = open(p->pid_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    int rc = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        /* Nobody holds it exclusively: no imsd. Let go at once, so a starting imsd gets it. */
        flock(fd, LOCK_UN);
    } else if (errno == EWOULDBLOCK) {
        st->running = true;
        for (int i = 0; i < IC_PID_READ_TRIES && !(st->pid = read_pid(fd)); i++)
            sleep_ms(IC_POLL_MS);
    } else {
        rc = errno;
    }
    close(fd);
    return rc;
}

/* set_field - copy a status value into a fixed field. */
static void set_field(char *out, size_t n, const char *v)
{
    snprintf(out, n, "%s", v);
}

int ic_status_read(const ic_paths *p, ic_status *s)
{
    memset(s, 0, sizeof *s);
    s->started = -1;
    buf b = BUF_INIT;
    int rc = base_read_file(p->status_file, IC_STATUS_MAX, &b);
    if (rc) {
        buf_free(&b);
        return rc;
    }
    char *text = buf_cstr(&b);
    if (!text) {
        buf_free(&b);
        return ENOMEM;
    }
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        const char *v = eq + 1;
        char *end;
        if (!strcmp(line, "pid")) {
            long pid = strtol(v, &end, 10);
            if (end != v && !*end && pid > 0 && pid <= INT32_MAX)
                s->pid = (pid_t)pid;
        } else if (!strcmp(line, "profile")) {
            set_field(s->profile, sizeof s->profile, v);
        } else if (!strcmp(line, "started")) {
            long long t = strtoll(v, &end, 10);
            if (end != v && !*end && t >= 0)
                s->started = t;
        } else if (!strcmp(line, "listeners")) {
            set_field(s->listeners, sizeof s->listeners, v);
        } else if (!strcmp(line, "account")) {
            set_field(s->account, sizeof s->account, v);
        }
    }
    buf_free(&b);
    return s->pid ? 0 : EBADMSG;
}
