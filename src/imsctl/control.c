/* control.c - imsctl start, stop, restart and status: imsd is started with a readiness socket
 * of our own (systemd's sd_notify protocol) and waited for; stopped with SIGTERM and waited
 * for until its pid lock is free. */
#include "imsctl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define IC_NOTIFY_ENV "NOTIFY_SOCKET"
#define IC_NOTIFY_PREFIX "ims-notify"
#define IC_NOTIFY_NAME 64 /* bytes of the socket's name: prefix, pid, 16 hex digits */
#define IC_DEV_NULL "/dev/null"
#define IC_EXEC_FAILED 127 /* the child's exit status when exec fails (as the shell's) */

/* --- time ---------------------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* wait_unlocked - poll the pid lock until nobody holds it or deadline (monotonic ms) passes.
 * Returns true when it is free. */
static bool wait_unlocked(const ic_paths *p, long long deadline)
{
    for (;;) {
        ic_state st;
        if (ic_probe(p, &st) == 0 && !st.running)
            return true;
        if (now_ms() >= deadline)
            return false;
        sleep_ms(IC_POLL_MS);
    }
}

/* --- readiness ------------------------------------------------------------------------------ */

/* notify - the socket imsd reports to, and what it said so far. */
typedef struct notify {
    int fd;
    char env[sizeof IC_NOTIFY_ENV "=@" + IC_NOTIFY_NAME];
    pid_t child;
    bool ready;
    pid_t main_pid;
    char status[IC_STATUS_TEXT];
} notify;

/* notify_open - an abstract AF_UNIX datagram socket "@ims-notify-<pid>-<random>" that passes
 * the sender's credentials, so only the child's own messages count. Returns 0 or errno. */
static int notify_open(notify *n)
{
    memset(n, 0, sizeof *n);
    uint64_t r;
    int rc = base_random(&r, sizeof r);
    if (rc)
        return rc;
    char name[IC_NOTIFY_NAME];
    int len = snprintf(name, sizeof name, "%s-%ld-%016llx", IC_NOTIFY_PREFIX, (long)getpid(),
                       (unsigned long long)r);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (len < 0 || (size_t)len + 1 >= sizeof sa.sun_path)
        return ENAMETOOLONG;
    memcpy(sa.sun_path + 1, name, (size_t)len); /* sun_path[0] = 0: the abstract namespace */
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0)
        return errno;
    int one = 1;
    if (setsockopt(n->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) ||
        bind(n->fd, (struct sockaddr *)&sa,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len))) {
        rc = errno;
        close(n->fd);
        n->fd = -1;
        return rc;
    }
    snprintf(n->env, sizeof n->env, "%s=@%s", IC_NOTIFY_ENV, name);
    return 0;
}

/* notify_parse - one datagram's "KEY=value" lines. */
static void notify_parse(notify *n, char *msg)
{
    char *save = NULL;
    for (char *line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strcmp(line, "READY=1")) {
            n->ready = true;
        } else if (!strncmp(line, "STATUS=", 7)) {
            snprintf(n->status, sizeof n->status, "%s", line + 7);
        } else if (!strncmp(line, "MAINPID=", 8)) {
            char *end;
            long v = strtol(line + 8, &end, 10);
            if (end != line + 8 && !*end && v > 0 && v <= INT32_MAX)
                n->main_pid = (pid_t)v;
        }
    }
}

/* notify_drain - read every queued datagram; those not from the child are ignored. */
static void notify_drain(notify *n)
{
    for (;;) {
        char msg[IC_NOTIFY_MAX + 1];
        union {
            struct cmsghdr align;
            char space[CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = {msg, IC_NOTIFY_MAX};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = control.space,
                            .msg_controllen = sizeof control.space};
        ssize_t got = recvmsg(n->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN: nothing more */
        }
        const struct ucred *cred = NULL;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
                c->cmsg_len == CMSG_LEN(sizeof(struct ucred)))
                cred = (const struct ucred *)CMSG_DATA(c);
        if (!cred || cred->pid != n->child || (mh.msg_flags & MSG_TRUNC))
            continue;
        msg[got] = 0;
        notify_parse(n, msg);
    }
}

/* --- spawning ------------------------------------------------------------------------------ */

/* child_env - environ without NOTIFY_SOCKET, plus ours. malloc'd (the strings are shared). */
static char **child_env(const char *notify_env)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], IC_NOTIFY_ENV "=", sizeof IC_NOTIFY_ENV))
            env[k++] = environ[i];
    env[k++] = (char *)notify_env;
    env[k] = NULL;
    return env;
}

/* spawn - fork and exec image in a session of its own, with the standard descriptors on
 * /dev/null (events go to syslog). Returns 0 and the pid, or errno (exec failures included:
 * the child reports them through a close-on-exec pipe). */
static int spawn(const char *image, const notify *n, pid_t *pid)
{
    char **env = child_env(n->env);
    if (!env)
        return ENOMEM;
    int null = open(IC_DEV_NULL, O_RDWR | O_CLOEXEC);
    int pipefd[2];
    if (null < 0 || pipe2(pipefd, O_CLOEXEC)) {
        int e = errno;
        if (null >= 0)
            close(null);
        free(env);
        return e;
    }
    char *const argv[] = {(char *)image, NULL};
    pid_t child = fork();
    if (child == 0) {
        /* Only async-signal-safe calls from here on. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int e = 0;
        if (setsid() < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
            e = errno;
        if (!e) {
            execve(image, argv, env);
            e = errno;
        }
        ssize_t w = write(pipefd[1], &e, sizeof e);
        (void)w;
        _exit(IC_EXEC_FAILED);
    }
    int e = child < 0 ? errno : 0;
    close(pipefd[1]);
    close(null);
    free(env);
    if (!e) {
        /* EOF at the exec, or the errno of a failed one. */
        int child_err = 0;
        ssize_t got;
        while ((got = read(pipefd[0], &child_err, sizeof child_err)) < 0 && errno == EINTR)
            ;
        if (got == (ssize_t)sizeof child_err) {
            e = child_err;
            while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    close(pipefd[0]);
    *pid = child;
    return e;
}

/* exit_text - why the child ended, for the failure message. */
static void exit_text(int wstatus, char *out, size_t n)
{
    if (WIFEXITED(wstatus)) {
        int code = WEXITSTATUS(wstatus);
        const char *why = code == IC_IMSD_START_FAILED      ? " (start failed)"
                          : code == IC_IMSD_USAGE           ? " (usage error)"
                          : code == IC_IMSD_ALREADY_RUNNING ? " (already running)"
                                                            : "";
        snprintf(out, n, "imsd exited with status %d%s", code, why);
    } else if (WIFSIGNALED(wstatus)) {
        snprintf(out, n, "imsd was killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    } else {
        snprintf(out, n, "imsd ended (wait status 0x%x)", (unsigned)wstatus);
    }
}

/* reap_within - wait for the child to end, up to ms; true when it did. */
static bool reap_within(pid_t child, long long ms, int *wstatus)
{
    long long deadline = now_ms() + ms;
    for (;;) {
        pid_t w = waitpid(child, wstatus, WNOHANG);
        if (w == child || (w < 0 && errno == ECHILD))
            return true;
        if (now_ms() >= deadline)
            return false;
        sleep_ms(IC_POLL_MS);
    }
}

/* wait_ready - wait for the child's READY=1, its exit, or the deadline. Returns true when it
 * exited (*wstatus then says how). */
static bool wait_ready(notify *n, long long deadline, int *wstatus)
{
    for (;;) {
        notify_drain(n);
        if (n->ready)
            return false;
        pid_t w = waitpid(n->child, wstatus, WNOHANG);
        if (w == n->child) {
            /* What it said just before it went may still be queued. */
            notify_drain(n);
            return true;
        }
        long long left = deadline - now_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd = {n->fd, POLLIN, 0};
        poll(&pfd, 1, (int)(left < IC_POLL_MS ? left : IC_POLL_MS));
    }
}

/* start_result - report how the start went (the child is ready, has exited, or is not ready
 * in time: then it is stopped, as the service control manager does). */
static int start_result(const ic_paths *p, const notify *n, pid_t child, bool exited, int wstatus,
                        unsigned timeout)
{
    if (n->ready && !exited) {
        /* The profile: from "STATUS=Running as <profile>", else from the status file. */
        static const char running_as[] = "Running as ";
        char profile[IC_STATUS_TEXT] = "";
        ic_status s;
        if (!strncmp(n->status, running_as, sizeof running_as - 1))
            snprintf(profile, sizeof profile, "%s", n->status + sizeof running_as - 1);
        else if (!ic_status_read(p, &s) && s.pid == child)
            snprintf(profile, sizeof profile, "%s", s.profile);
        printf("%s started (pid %ld, profile %s).\n", IMS_SERVICE_NAME, (long)child,
               *profile ? profile : "unknown");
        return IC_EXIT_OK;
    }
    if (exited) {
        char why[IC_STATUS_TEXT + 64];
        if (*n->status && !n->ready)
            snprintf(why, sizeof why, "%s", n->status);
        else
            exit_text(wstatus, why, sizeof why);
        return ic_error("start failed: %s", why);
    }
    kill(child, SIGTERM);
    if (!reap_within(child, (long long)IC_KILL_WAIT * 1000, &wstatus)) {
        kill(child, SIGKILL);
        reap_within(child, (long long)IC_KILL_WAIT * 1000, &wstatus);
    }
    return ic_error("start failed: imsd did not report ready within %u s%s%s (stopped it)", timeout,
                    *n->status ? "; its last status: " : "", n->status);
}

/* --- start --------------------------------------------------------------------------------- */

/* root_may_start - as root, refuse a state root root does not own: its owner writes HKLM and
 * so would choose what root runs (ImagePath) and as whom (ObjectName). */
static int root_may_start(const ic_paths *p)
{
    if (geteuid() != 0)
        return IC_EXIT_OK;
    struct stat st;
    if (stat(p->root, &st))
        return ic_error("%s: %s", p->root, strerror(errno));
    if (st.st_uid != 0)
        return ic_error("%s belongs to uid %u, who writes its registry: as root, start only a "
                        "service whose state root belongs to root (or run imsctl as that user)",
                        p->root, (unsigned)st.st_uid);
    return IC_EXIT_OK;
}

int ic_cmd_start(unsigned timeout)
{
    ic_paths p;
    ic_state st;
    int rc = ic_paths_init(&p);
    if (rc || (rc = ic_probe(&p, &st)))
        return ic_error("cannot tell whether %s runs (%s): %s", IMS_SERVICE_NAME, p.pid_file,
                        strerror(rc));
    if (st.running) {
        printf("%s is already running (pid %ld).\n", IMS_SERVICE_NAME, (long)st.pid);
        return IC_EXIT_OK;
    }
    reg_ctx *reg;
    if ((rc = reg_ctx_open(NULL, &reg)))
        return ic_error("cannot open the registry under %s: %s", p.root, reg_strerror(rc));
    bool installed;
    char image[PATH_MAX];
    rc = ic_image_path(reg, &installed, image, sizeof image);
    if (rc && reg_ctx_damaged(reg)) {
        /* imsd would refuse it too (exit 4): say which file, once. */
        ic_error("the registry hive file %s is damaged: %s", reg_ctx_damaged(reg),
                 reg_strerror(rc));
        reg_ctx_close(reg);
        return IC_EXIT_FAIL;
    }
    reg_ctx_close(reg);
    if (rc)
        return ic_error("cannot read the service key: %s", reg_strerror(rc));
    if (!installed)
        return ic_error("the service is not installed (imsctl install)");
    int status = root_may_start(&p);
    if (status)
        return status;

    notify n;
    if ((rc = notify_open(&n)))
        return ic_error("cannot make the readiness socket: %s", strerror(rc));
    long long deadline = now_ms() + (long long)timeout * 1000;
    pid_t child = -1;
    int wstatus = 0;
    bool exited = false;
    for (int attempt = 1;; attempt++) {
        n.status[0] = 0;
        if ((rc = spawn(image, &n, &child))) {
            close(n.fd);
            return ic_error("start failed: cannot run %s: %s", image, strerror(rc));
        }
        n.child = child;
        exited = wait_ready(&n, deadline, &wstatus);
        if (!exited || n.ready || !WIFEXITED(wstatus) ||
            WEXITSTATUS(wstatus) != IC_IMSD_ALREADY_RUNNING)
            break;
        /* imsd found its pid lock taken. Another imsd, or only somebody's probe of it (ours
         * included): a probe holds the lock for a moment, an imsd for good. */
        if (ic_probe(&p, &st) == 0 && st.running) {
            close(n.fd);
            printf("%s is already running (pid %ld).\n", IMS_SERVICE_NAME, (long)st.pid);
            return IC_EXIT_OK;
        }
        if (attempt == IC_START_ATTEMPTS || now_ms() >= deadline)
            break;
        sleep_ms(IC_POLL_MS);
    }
    close(n.fd);
    return start_result(&p, &n, child, exited, wstatus, timeout);
}

/* --- stop ---------------------------------------------------------------------------------- */

/* signal_holder - send sig to the lock holder st->pid through a pidfd, re-checking after
 * opening it that the pid is still the holder's, so a reused pid is never signalled.
 * Returns 0, ESRCH (it is gone already) or another errno value. */
static int signal_holder(const ic_paths *p, const ic_state *st, int sig)
{
#ifdef SYS_pidfd_open
    int pfd = (int)syscall(SYS_pidfd_open, st->pid, 0);
    if (pfd >= 0) {
        ic_state again;
        int rc = 0;
        if (ic_probe(p, &again) == 0 && (!again.running || again.pid != st->pid))
            rc = ESRCH;
        else if (syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0))
            rc = errno;
        close(pfd);
        return rc;
    }
    if (errno != ENOSYS)
        return errno;
#else
    (void)p;
#endif
    return kill(st->pid, sig) ? errno : 0;
}

int ic_cmd_stop(unsigned timeout, bool force)
{
    ic_paths p;
    ic_state st;
    int rc = ic_paths_init(&p);
    if (rc || (rc = ic_probe(&p, &st)))
        return ic_error("cannot tell whether %s runs (%s): %s", IMS_SERVICE_NAME, p.pid_file,
                        strerror(rc));
    if (!st.running) {
        printf("%s is not running.\n", IMS_SERVICE_NAME);
        return IC_EXIT_OK;
    }
    if (st.pid <= 0)
        return ic_error("%s runs, but its pid file %s names no pid", IMS_SERVICE_NAME, p.pid_file);
    rc = signal_holder(&p, &st, SIGTERM);
    if (rc && rc != ESRCH)
        return ic_error("cannot stop %s (pid %ld): %s", IMS_SERVICE_NAME, (long)st.pid,
                        strerror(rc));
    if (wait_unlocked(&p, now_ms() + (long long)timeout * 1000)) {
        printf("%s stopped.\n", IMS_SERVICE_NAME);
        return IC_EXIT_OK;
    }
    if (!force)
        return ic_error("%s (pid %ld) did not stop within %u s (imsctl stop --force kills it)",
                        IMS_SERVICE_NAME, (long)st.pid, timeout);
    rc = signal_holder(&p, &st, SIGKILL);
    if (rc && rc != ESRCH)
        return ic_error("cannot kill %s (pid %ld): %s", IMS_SERVICE_NAME, (long)st.pid,
                        strerror(rc));
    if (!wait_unlocked(&p, now_ms() + (long long)IC_KILL_WAIT * 1000))
        return ic_error("%s (pid %ld) is still there after SIGKILL", IMS_SERVICE_NAME,
                        (long)st.pid);
    ic_warn("%s did not stop within %u s: killed it (SIGKILL)", IMS_SERVICE_NAME, timeout);
    printf("%s stopped.\n", IMS_SERVICE_NAME);
    return IC_EXIT_OK;
}

int ic_cmd_restart(unsigned timeout, bool force)
{
    int rc = ic_cmd_stop(timeout ? timeout : IC_STOP_TIMEOUT, force);
    if (rc)
        return rc;
    return ic_cmd_start(timeout ? timeout : IC_START_TIMEOUT);
}

/* --- status -------------------------------------------------------------------------------- */

int ic_cmd_status(void)
{
    ic_paths p;
    ic_state st;
    int rc = ic_paths_init(&p);
    if (rc || (rc = ic_probe(&p, &st)))
        return ic_error("cannot tell whether %s runs (%s): %s", IMS_SERVICE_NAME, p.pid_file,
                        strerror(rc));
    if (!st.running) {
        /* Whether it is installed at all is worth a word; it is stopped either way. */
        reg_ctx *reg;
        bool installed = true;
        char image[PATH_MAX];
        if (reg_ctx_open(NULL, &reg) == ERROR_SUCCESS) {
            if (ic_image_path(reg, &installed, image, sizeof image))
                installed = true;
            reg_ctx_close(reg);
        }
        printf("%s is %s.\n", IMS_SERVICE_NAME, installed ? "stopped" : "not installed");
        return IC_EXIT_STOPPED;
    }
    ic_status s;
    if (ic_status_read(&p, &s) || s.pid != st.pid) {
        /* The lock is held but the status file is not (yet) this process's: still starting. */
        printf("%s is starting (pid %ld).\n", IMS_SERVICE_NAME, (long)st.pid);
        return IC_EXIT_OK;
    }
    printf("%s is running.\n", IMS_SERVICE_NAME);
    printf("  pid:        %ld\n", (long)s.pid);
    printf("  profile:    %s\n", s.profile);
    if (s.started >= 0) {
        long long up = (long long)time(NULL) - s.started;
        if (up < 0)
            up = 0;
        printf("  uptime:     %lld:%02lld:%02lld\n", up / 3600, up / 60 % 60, up % 60);
    }
    printf("  listeners:  %s\n", s.listeners);
    printf("  account:    %s\n", s.account);
    return IC_EXIT_OK;
}
