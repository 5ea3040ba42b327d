/* main.c - imsd, the Microsoft Exchange Internet Mail Service (MSExchangeIMC) in the
 * foreground: arguments, the start sequence, the event loop with its signals, and the stop. */
#include "imsd.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define IMSD_LISTENERS_TEXT_MAX (IMS_MAX_LISTENERS * (IMSD_ADDR_MAX + 2))
#define IMSD_NSIGNALS 3 /* SIGTERM, SIGINT, SIGHUP */

static const char usage_text[] = "usage: imsd [-console]\n"
                                 "       imsd --help | --version\n";

static const char help_text[] =
    "Run the Microsoft Exchange Internet Mail Service (MSExchangeIMC) in the foreground.\n"
    "\n"
    "  -console, --console   also print events on stderr and statistics on stdout every\n"
    "                        ConsoleStatFrequency seconds (as Parameters DisplayErrsOnConsole\n"
    "                        >= 10 does)\n"
    "  --help                this text\n"
    "  --version             the version\n"
    "\n"
    "The state (registry, message store, run directory) is under IMS_ROOT (default\n"
    "/var/lib/ims); the settings are under HKLM\\" IMS_SERVICE_KEY ".\n"
    "Started as root, imsd binds its listeners, then runs as the service account (the\n"
    "service key's ObjectName); started as another user, that user is the account.\n"
    "SIGTERM or SIGINT stops it: sessions in flight get ShutdownTimeout seconds, the MAPI\n"
    "profile is deleted, exit status 0. A failed start exits 1, a usage error 2, and 3\n"
    "when imsd already runs on this IMS_ROOT. With NOTIFY_SOCKET set, imsd reports READY=1\n"
    "and STOPPING=1 as systemd's Type=notify services do.\n";

/* imsd - everything one run of the service holds: no global state. */
typedef struct imsd {
    bool console;
    imsd_sink sink;
    ims_log log;
    imsd_notify notify;
    ims_settings settings;
    const char *root;
    imsd_run run;
    imsd_account account;
    imsd_bound bound[IMS_MAX_LISTENERS];
    size_t nbound;
    imsd_tls *tls; /* the server certificate, read before root is given up; NULL: none */
    reg_ctx *reg;
    bool reg_damaged;   /* the start failed on a damaged hive file: IMSD_EXIT_DAMAGED */
    mapisvc *catalogue; /* MAPISVC.INF, read before root is given up; the service takes it */
    ims_service *svc;
    imsd_stats stats;
    struct event_base *base;
    imsd_server server;
    bool server_up;
    struct event *signals[IMSD_NSIGNALS];
    imsd_diag *diag;       /* the Diagnostics levels and logging values, live; console mode */
    imsd_control *control; /* run/control: imsctl's requests */
    imsd_queues *queues;   /* the queues' commands */
    imsd_bound metrics;    /* MetricsAddress's socket until the loop serves it; fd -1: none */
    imsd_http *http;       /* ... served */
    imsd_admin *admin;     /* the administrator's page on it */
    char listeners[IMSD_LISTENERS_TEXT_MAX];       /* "a b", for the status file */
    char listeners_event[IMSD_LISTENERS_TEXT_MAX]; /* "a, b", for event 1000 */
} imsd;

/* --- arguments ------------------------------------------------------------------------ */

/* parse_args - returns -1 to go on, or the exit status. */
static int parse_args(int argc, char **argv, bool *console)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-console") || !strcmp(a, "--console")) {
            *console = true;
        } else if (!strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            fputs("\n", stdout);
            fputs(help_text, stdout);
            return IMSD_EXIT_OK;
        } else if (!strcmp(a, "--version")) {
            printf("imsd (IMS) %s\n", IMSD_VERSION);
            return IMSD_EXIT_OK;
        } else {
            fprintf(stderr, "imsd: unknown argument '%s'\n", a);
            fputs(usage_text, stderr);
            return IMSD_EXIT_USAGE;
        }
    }
    return -1;
}

/* --- signals and the loop ------------------------------------------------------------- */

static const int stop_signals[IMSD_NSIGNALS] = {SIGTERM, SIGINT, SIGHUP};

/* signals_block - hold the stop signals while starting and stopping: a SIGTERM then waits
 * for the loop (and stops the service cleanly) instead of killing a half-made start. */
static int signals_block(int how)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < IMSD_NSIGNALS; i++)
        sigaddset(&set, stop_signals[i]);
    return sigprocmask(how, &set, NULL) ? errno : 0;
}

static int ignore_sigpipe(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGPIPE, &sa, NULL) ? errno : 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    imsd *d = arg;
    if (sig == SIGHUP) {
        /* The original read its settings only at start; so do we, but for the logging
         * ones, which follow the registry's change notification (diagwatch.c) without a signal. */
        ims_log_event(&d->log, IMS_EV_RELOAD_IGNORED, IMS_CAT_INIT_TERM, IMS_SEV_INFO,
                      IMS_LEVEL_NONE,
                      "Settings changes take effect at the next start; the Diagnostics levels, "
                      "DisplayErrsOnConsole and ConsoleStatFrequency apply at once");
        return;
    }
    if (!d->server.stopping)
        imsd_notify_send(&d->notify, "STOPPING=1");
    imsd_server_stop(&d->server, d->settings.shutdown_timeout);
}

/* loop_setup - the event base, the listeners, the signals, the live diagnostics (with the
 * console's timer). Returns 0 or an errno value. */
static int loop_setup(imsd *d)
{
    d->base = event_base_new();
    if (!d->base)
        return ENOMEM;
    imsd_stats_init(&d->stats);
    int e = imsd_server_init(&d->server, d->base, &d->settings, &d->log, &d->stats, d->bound,
                             d->nbound);
    d->nbound = 0; /* the server owns the sockets now */
    d->server_up = true;
    if (e)
        return e;
    d->server.tls = d->tls;
    if (imsd_tls_watch(d->tls, d->base, IMSD_TLS_LOOK_SECONDS))
        return ENOMEM;
    /* Nothing is accepted before the loop runs, so the SMTP side is ready by then. */
    if (imsd_mail_open(&d->server, d->reg, ims_service_gateway(d->svc)))
        return EIO;
    char ctl_path[PATH_MAX];
    if (snprintf(ctl_path, sizeof ctl_path, "%s/%s", d->run.dir, IMSD_CTL_FILE) >=
        (int)sizeof ctl_path)
        return ENAMETOOLONG;
    if ((e = imsd_control_open(d->base, ctl_path, d->account.uid, &d->log, &d->control)))
        return e;
    if ((e = imsd_stats_start(&d->stats, &d->server, d->control)))
        return e;
    if ((e = imsd_queues_start(&d->server, d->control, ims_service_gateway(d->svc), &d->queues)))
        return e;
    if (d->metrics.fd >= 0 && ((e = imsd_http_open(d->base, &d->metrics, &d->log, &d->http)) ||
                               (e = imsd_stats_serve(d->http, &d->server))))
        return e;
    if (d->http) {
        imsd_admin_options ao = {.http = d->http,
                                 .srv = &d->server,
                                 .sink = &d->sink,
                                 .queues = d->queues,
                                 .listener = d->metrics.name,
                                 .run_dir = d->run.dir,
                                 .profile = ims_service_profile(d->svc),
                                 .listeners = d->listeners,
                                 .account = d->account.name,
                                 .started = time(NULL)};
        if ((e = imsd_admin_start(&ao, &d->admin)))
            return e;
    }
    for (size_t i = 0; i < IMSD_NSIGNALS; i++) {
        d->signals[i] = evsignal_new(d->base, stop_signals[i], on_signal, d);
        if (!d->signals[i] || evsignal_add(d->signals[i], NULL))
            return ENOMEM;
    }
    imsd_diag_options dopt = {.base = d->base,
                              .reg = d->reg,
                              .server = &d->server,
                              .log = &d->log,
                              .settings = &d->settings,
                              .sink = &d->sink,
                              .console_arg = d->console,
                              .stats = &d->stats};
    return imsd_diag_start(&dopt, &d->diag);
}

static void loop_free(imsd *d)
{
    imsd_control_close(d->control); /* first: its commands look at what follows */
    d->control = NULL;
    imsd_queues_free(d->queues);
    d->queues = NULL;
    imsd_http_free(d->http);
    d->http = NULL;
    imsd_admin_free(d->admin); /* after the endpoint: its answers owed are cancelled */
    d->admin = NULL;
    imsd_stats_stop(&d->stats);
    imsd_diag_free(d->diag); /* before the mail state: it uses the router's lock */
    d->diag = NULL;
    for (size_t i = 0; i < IMSD_NSIGNALS; i++) {
        if (d->signals[i])
            event_free(d->signals[i]);
        d->signals[i] = NULL;
    }
    if (d->server_up)
        imsd_server_free(&d->server);
    d->server_up = false;
    imsd_mail_close(&d->server); /* after the sessions: pending commits still finish */
    imsd_tls_free(d->tls);       /* its timer is on the base */
    d->tls = NULL;
    if (d->base)
        event_base_free(d->base);
    d->base = NULL;
}

/* --- start and stop ------------------------------------------------------------------- */

/* start_failed - the event is logged; tell the supervisor (and the terminal) its text. */
static int start_failed(imsd *d)
{
    imsd_tls_free(d->tls); /* a failed start may have read the certificate */
    d->tls = NULL;
    const char *text = d->sink.last_error[0] ? d->sink.last_error : "The start failed";
    imsd_notify_sendf(&d->notify, "STATUS=%s", text);
    /* The console has shown the event already; otherwise it went to syslog only, and whoever
     * started imsd by hand would see nothing. */
    if (!d->sink.console)
        fprintf(stderr, "imsd: %s\n", text);
    /* A damaged hive is not fixed by starting again: a supervisor may tell it by its status. */
    return d->reg_damaged ? IMSD_EXIT_DAMAGED : IMSD_EXIT_FAILED;
}

/* load_settings - the settings, read as the invoking user; the registry is closed again,
 * for LMDB must not be kept across the change of user. */
static int load_settings(imsd *d)
{
    int rc = reg_ctx_open(NULL, &d->reg);
    if (rc) {
        ims_log_event(&d->log, IMS_EV_SETTING_INVALID, IMS_CAT_INIT_TERM, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      "The configuration could not be loaded from the registry under %s: %s",
                      d->root, reg_strerror(rc));
        return IMS_EV_SETTING_INVALID;
    }
    rc = ims_settings_load(d->reg, &d->log, &d->settings);
    d->reg_damaged = rc && reg_ctx_damaged(d->reg);
    reg_ctx_close(d->reg);
    d->reg = NULL;
    if (rc)
        return rc;
    ims_log_set_levels(&d->log, d->settings.levels);
    if (d->settings.display_errs_on_console >= IMSD_CONSOLE_LEVEL)
        d->sink.console = true; /* d->console stays what the command line said */
    return IMS_OK;
}

/* fd_limit_raise - take the hard limit of open files as the soft one (a unit's default soft
 * limit, 1024, would cap the sessions far below MaxInboundConnections), and warn when even that
 * is short: each connection needs a descriptor, two with the protocol log on. */
static void fd_limit_raise(imsd *d)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl))
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    const ims_settings *s = &d->settings;
    uint64_t per = s->levels[IMS_CAT_SMTP_PROTOCOL_LOG] ? 2 : 1;
    uint64_t need = (uint64_t)s->max_inbound_connections * per + IMSD_FD_RESERVE;
    if (s->max_inbound_connections && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Only %llu file descriptors may be open (RLIMIT_NOFILE), fewer than the %llu "
                      "that MaxInboundConnections (%u) needs: connections past that are refused "
                      "until others end",
                      (unsigned long long)rl.rlim_cur, (unsigned long long)need,
                      s->max_inbound_connections);
}

/* become_account - listeners bound, folders handed over, root given up (when it was root),
 * and the registry opened again as the account: HKCU is its hive from now on. */
static int become_account(imsd *d)
{
    fd_limit_raise(d);
    int rc = imsd_account_resolve(&d->settings, &d->log, &d->account);
    if (!rc)
        rc = imsd_listeners_bind(&d->settings, &d->log, d->bound, &d->nbound);
    if (!rc)
        rc = imsd_http_bind(&d->settings, &d->log, &d->metrics);
    if (!rc && d->account.drop)
        rc = imsd_dirs_prepare(&d->settings, d->root, &d->run, &d->account, &d->log);
    /* The key is read while imsd may still read what only root can (/etc/ssl/private). */
    if (!rc && imsd_tls_open(&d->settings, &d->log, &d->tls))
        rc = IMS_EV_INTERNAL;
    if (!rc)
        rc = imsd_privs_drop(&d->account, &d->log);
    if (rc)
        return rc;
    if (access(d->root, R_OK | X_OK)) {
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The state root %s is not accessible to the service account %s: %s", d->root,
                      d->account.name, strerror(errno));
        return IMS_EV_INTERNAL;
    }
    rc = reg_ctx_open(NULL, &d->reg);
    if (rc) {
        ims_log_event(&d->log, IMS_EV_MAPI_INIT_FAILED, IMS_CAT_INIT_TERM, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      "Unable to start the Internet Mail Service because MAPI could not be "
                      "initialized: opening the registry as %s failed with %s",
                      d->account.name, reg_strerror(rc));
        return IMS_EV_MAPI_INIT_FAILED;
    }
    return IMS_OK;
}

/* read_catalogue - MAPISVC.INF is read while imsd still has the rights it was started with:
 * the service account may not reach a catalogue that root can (a checkout under /root, mode
 * 0700), and a MAPI error code after the drop would not say why. */
static int read_catalogue(imsd *d)
{
    const char *path = mapisvc_default_path(d->root);
    mapi_err e = mapisvc_load(path, NULL, NULL, &d->catalogue);
    if (!e)
        return IMS_OK;
    ims_log_event(&d->log, IMS_EV_MAPI_INIT_FAILED, IMS_CAT_INIT_TERM, IMS_SEV_ERROR,
                  IMS_LEVEL_NONE,
                  "Unable to start the Internet Mail Service because MAPI could not be "
                  "initialized: the message service catalogue %s cannot be read (%s); set "
                  "IMS_MAPISVC to a MAPISVC.INF, or put one at %s/mapisvc.inf",
                  path, mapi_strerror(e), d->root);
    return IMS_EV_MAPI_INIT_FAILED;
}

/* go_ready - the status file, READY=1, event 1000. Returns IMS_OK or an event ID. */
static int go_ready(imsd *d)
{
    const char *profile = ims_service_profile(d->svc);
    int rc =
        imsd_run_write_status(&d->run, &d->log, profile, time(NULL), d->listeners, d->account.name);
    if (rc)
        return rc;
    int e = imsd_notify_sendf(&d->notify, "READY=1\nMAINPID=%ld\nSTATUS=Running as %s",
                              (long)getpid(), profile);
    if (e)
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to send READY=1 to NOTIFY_SOCKET: %s", strerror(e));
    ims_log_event(&d->log, IMS_EV_STARTED, IMS_CAT_INIT_TERM, IMS_SEV_INFO, IMS_LEVEL_NONE,
                  "The Microsoft Exchange Internet Mail Service started: profile %s, "
                  "listening on %s",
                  profile, d->listeners_event[0] ? d->listeners_event : "no address");
    return IMS_OK;
}

/* absolute_env - make a path in the environment absolute: imsd changes directory to "/"
 * once it runs as the account, and relative paths would then name other places. */
static void absolute_env(const char *name)
{
    const char *v = getenv(name);
    char cwd[PATH_MAX];
    if (!v || !*v || v[0] == '/' || !getcwd(cwd, sizeof cwd))
        return;
    buf abs = BUF_INIT;
    if (buf_printf(&abs, "%s/%s", cwd, v) == 0 && buf_cstr(&abs))
        setenv(name, (char *)abs.data, 1);
    buf_free(&abs);
}

static int service_run(imsd *d)
{
    absolute_env("IMS_ROOT");
    absolute_env("IMS_MAPISVC");
    d->root = base_state_root();
    int rc = load_settings(d);
    if (rc)
        return start_failed(d);
    rc = imsd_run_lock(&d->run, d->root, &d->log);
    if (rc == IMSD_EXIT_RUNNING)
        return IMSD_EXIT_RUNNING;
    if (rc || read_catalogue(d) || become_account(d))
        return start_failed(d);
    imsd_listeners_text(d->bound, d->nbound, " ", d->listeners, sizeof d->listeners);
    imsd_listeners_text(d->bound, d->nbound, ", ", d->listeners_event, sizeof d->listeners_event);
    rc = ims_service_start_with(&d->settings, d->reg, d->catalogue, &d->log, &d->svc);
    d->catalogue = NULL; /* the service's now, whatever came of it */
    if (rc && reg_ctx_damaged(d->reg)) {
        /* The account's hive: the library's event says what failed, this one which file. */
        d->reg_damaged = true;
        ims_log_event(&d->log, IMS_EV_MAPI_INIT_FAILED, IMS_CAT_INIT_TERM, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      "Unable to start the Internet Mail Service because MAPI could not be "
                      "initialized: the registry hive file %s is damaged; restore it from a backup",
                      reg_ctx_damaged(d->reg));
    }
    if (rc)
        return start_failed(d); /* logged, and undone, by the library */

    int e = loop_setup(d);
    if (e)
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to set up the event loop: %s", strerror(e));
    if (e || go_ready(d)) {
        loop_free(d);
        ims_service_stop(d->svc);
        d->svc = NULL;
        return start_failed(d);
    }
    if ((e = signals_block(SIG_UNBLOCK)))
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to unblock the stop signals: %s", strerror(e));
    e = event_base_dispatch(d->base) < 0 ? EIO : 0;
    /* Hold the signals again: nothing may kill the stop halfway (the loop is gone). */
    int b = signals_block(SIG_BLOCK);
    if (b)
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to block the stop signals: %s", strerror(b));
    if (e)
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "The event loop failed; stopping");
    if (!d->server.stopping)
        imsd_notify_send(&d->notify, "STOPPING=1");
    loop_free(d);
    imsd_run_remove_status(&d->run, &d->log);
    ims_service_stop(d->svc); /* logs off, deletes the profile, logs event 1001 */
    d->svc = NULL;
    return e ? IMSD_EXIT_FAILED : IMSD_EXIT_OK;
}

int main(int argc, char **argv)
{
    imsd *d = calloc(1, sizeof *d);
    if (!d) {
        fprintf(stderr, "imsd: out of memory\n");
        return IMSD_EXIT_FAILED;
    }
    int status = parse_args(argc, argv, &d->console);
    if (status >= 0) {
        free(d);
        return status;
    }
    for (size_t i = 0; i < IMS_MAX_LISTENERS; i++)
        d->bound[i].fd = -1;
    d->run.lockfd = -1;
    d->metrics.fd = -1;
    /* The run directory and the status file are shared with imsctl and other users at the
     * modes the protocol names (0755, 0644); an inherited umask must not narrow them. Private
     * state (store, hives) is made with explicit private modes. */
    umask(022);
    imsd_sink_open(&d->sink, &d->log, d->console);
    int e = signals_block(SIG_BLOCK);
    if (!e)
        e = ignore_sigpipe();
    if (e) {
        ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to set up signal handling: %s", strerror(e));
        status = IMSD_EXIT_FAILED;
    } else {
        if ((e = imsd_notify_open(&d->notify)))
            ims_log_event(&d->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING,
                          IMS_LEVEL_NONE, "NOTIFY_SOCKET cannot be used: %s", strerror(e));
        status = service_run(d);
    }
    mapisvc_free(d->catalogue); /* a start that failed before the service took it */
    if (d->reg)
        reg_ctx_close(d->reg);
    imsd_listeners_close(d->bound, d->nbound);
    imsd_listeners_close(&d->metrics, 1);
    imsd_run_close(&d->run);
    imsd_notify_close(&d->notify);
    imsd_sink_close(&d->sink);
    free(d);
    return status;
}
