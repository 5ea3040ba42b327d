/* imsctl.h - private interface between the files of the imsctl command: exit codes, limits,
 * the run-state protocol shared with imsd (pid lock, status file, readiness) and the commands. */
#ifndef IMS_IMSCTL_H
#define IMS_IMSCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "ims/ims.h"

/* Exit codes (status follows LSB: 3 = not running). */
#define IC_EXIT_OK 0
#define IC_EXIT_FAIL 1
#define IC_EXIT_USAGE 2
#define IC_EXIT_STOPPED 3

/* imsd's exit codes (the protocol). */
#define IC_IMSD_START_FAILED 1
#define IC_IMSD_USAGE 2
#define IC_IMSD_ALREADY_RUNNING 3

/* Time limits, in seconds. */
#define IC_START_TIMEOUT 30 /* start: how long imsd gets to report READY=1 */
#define IC_STOP_TIMEOUT 60  /* stop: how long imsd gets to let go of its pid lock */
#define IC_TIMEOUT_MAX 3600 /* the largest --timeout accepted */
#define IC_KILL_WAIT 10     /* after SIGKILL (or a start timeout's SIGTERM): the last wait */
#define IC_POLL_MS 20       /* interval of the bounded polling loops */
/* start: how many times imsd is run when it finds its pid lock taken but nobody holds it
 * afterwards (a probe of the lock, by imsctl status or stop, holds it for a moment). */
#define IC_START_ATTEMPTS 5

/* Protocol files under <state root>/run. */
#define IC_RUN_DIR "run"
#define IC_PID_FILE "imsd.pid"
#define IC_STATUS_FILE "imsd.status"
#define IC_STATUS_MAX 4096 /* bytes of the status file read */
#define IC_NOTIFY_MAX 4096 /* bytes of one readiness datagram */
#define IC_STATUS_TEXT 512 /* bytes kept of a STATUS= text */

/* --- messages (main.c) ------------------------------------------------------------------ */

/* ic_error - print "imsctl: <message>" to stderr; returns IC_EXIT_FAIL. */
int ic_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* ic_usage_error - as ic_error, plus a pointer to --help; returns IC_EXIT_USAGE. */
int ic_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* ic_warn - print "imsctl: warning: <message>" to stderr. */
void ic_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- run state (state.c) ------------------------------------------------------------------ */

/* ic_paths - the protocol's file names for the state root. */
typedef struct ic_paths {
    char root[PATH_MAX];
    char run_dir[PATH_MAX];
    char pid_file[PATH_MAX];
    char status_file[PATH_MAX];
} ic_paths;
/* ic_paths_init - fill p for base_state_root(). Returns 0 or ENAMETOOLONG. */
int ic_paths_init(ic_paths *p);

/* ic_state - what the pid lock says. */
typedef struct ic_state {
    bool running; /* some process holds the lock */
    pid_t pid;    /* the holder's pid, from the pid file (0 when running but unreadable) */
} ic_state;
/* ic_probe - try a shared lock on the pid file: refused = running. Returns 0 or an errno
 * value (the file exists but cannot be opened or locked). */
int ic_probe(const ic_paths *p, ic_state *st);

/* ic_status - the status file's fields, trusted only when its pid is the lock holder's. */
typedef struct ic_status {
    pid_t pid;
    char profile[128];
    long long started; /* unix seconds, -1 when missing */
    char listeners[1024];
    char account[64];
} ic_status;
/* ic_status_read - read and parse the status file. Returns 0, an errno value, or EBADMSG
 * when it lacks pid=. */
int ic_status_read(const ic_paths *p, ic_status *s);

/* --- the control socket (ctlclient.c) ------------------------------------------------------ */

#define IC_CONTROL_FILE "control" /* under the run directory: imsd's control socket */
#define IC_CTL_TIMEOUT 30         /* seconds without a byte from the service: give up */
#define IC_CTL_LINE_MAX (1 << 20) /* bytes of one answer line */

/* ic_control_call - send argv[0..argc-1] to the running service's control socket and hand
 * each body line (un-stuffed, without its LF, NUL-terminated at len) to line(arg, ...), which
 * returns 0 to go on (anything else stops the call, which returns it). Returns 0 (.OK);
 * ENOENT or ECONNREFUSED (the service is not running: ic_control_not_running); EPERM (not
 * root nor the service account); EREMOTEIO (the service answered .ERR: its text in err);
 * ETIMEDOUT, EPROTO (a cut or malformed answer), EINVAL/E2BIG (a bad request) or another
 * errno value. err (errn bytes) always gets a message for a non-zero return. line may be
 * NULL (the body is ignored). */
int ic_control_call(const ic_paths *p, int argc, const char *const *argv,
                    int (*line)(void *arg, const char *line, size_t len), void *arg, char *err,
                    size_t errn);
/* ic_control_not_running - rc from ic_control_call says the service is not running. */
bool ic_control_not_running(int rc);

/* --- registry helpers (install.c) -------------------------------------------------------- */

/* ic_image_default - the imsd next to this program: dirname(realpath(/proc/self/exe))/imsd.
 * Returns 0 or an errno value. */
int ic_image_default(char *out, size_t n);
/* ic_image_path - the ImagePath of the service key (quotes stripped) into out; *installed is
 * false when there is no service key. A missing ImagePath gives ic_image_default. Returns a
 * Win32 error (other than a missing key). */
int ic_image_path(reg_ctx *reg, bool *installed, char *out, size_t n);

/* --- commands (install.c, control.c, diag.c)
 * ------------------------------------------------------ */

#define IC_MAX_DOMAINS 16 /* --domain given at most this often */

typedef struct ic_install_args {
    const char *account;
    const char *listen[IMS_MAX_LISTENERS];
    size_t nlisten;
    const char *root_dir;
    const char *domain[IC_MAX_DOMAINS]; /* --domain: accepted domains to add */
    size_t ndomain;
} ic_install_args;

int ic_cmd_install(const ic_install_args *a);
int ic_cmd_uninstall(void);
int ic_cmd_start(unsigned timeout);
int ic_cmd_stop(unsigned timeout, bool force);
int ic_cmd_restart(unsigned timeout, bool force);
int ic_cmd_status(void);
/* ic_cmd_queues - `imsctl queues` with its arguments (after the command word): queues.c. */
int ic_cmd_queues(int argc, char **argv);
/* ic_cmd_stats - stats.c: the counters of the running service (exit 3: not running). */
int ic_cmd_stats(bool json);
/* ic_cmd_diagnostics - no argument: list the levels; CATEGORY: its level; CATEGORY LEVEL: set
 * it (diag.c). */
int ic_cmd_diagnostics(int argc, char **argv);

/* --- track (track.c) ------------------------------------------------------------------ */

/* ic_cmd_track - `imsctl track` with its arguments (after the command word). */
int ic_cmd_track(int argc, char **argv);

#endif
