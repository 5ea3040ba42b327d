/* diagwatch.c - the Diagnostics levels and Parameters' logging values, live: a change notification
 * on the service key wakes the loop, which reads them again and applies what changed (the
 * event log's levels, the SMTP protocol log's, console mode and its statistics) without a
 * restart, logging one event that says what changed. The original needed a restart. */
#include "imsd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DIAG_FILTER (REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET)
#define DIAG_RETRY_SECONDS 1 /* a watch that cannot be set is tried again this often */
#define DIAG_TEXT_MAX 900    /* bytes of the change list in one event (below its limit) */

struct imsd_diag {
    imsd_diag_options o;
    ims_router *router; /* its lock guards o.reg and everything opened from it */
    reg_key *lm;        /* HKLM */
    /* The watch: on the service key, or while that does not exist on its nearest existing
     * ancestor (a change there may be the key's creation). */
    reg_key *watch_key;
    reg_notify *watch;
    bool watch_is_service;
    struct event *ev;    /* on the watch's descriptor */
    int ev_fd;           /* the descriptor ev is on (-1: none) */
    struct event *retry; /* armed when the watch could not be set */
    struct event *console_timer;
    unsigned console_secs; /* the timer's period */
    ims_diag cur;          /* the values in use */
};

/* --- console mode ------------------------------------------------------------------------- */

static void on_console_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    imsd_diag *g = arg;
    imsd_stats_print(g->o.server, stdout);
}

/* console_update - console mode is -console or DisplayErrsOnConsole >= IMSD_CONSOLE_LEVEL:
 * events on stderr, statistics on stdout every ConsoleStatFrequency seconds. */
static void console_update(imsd_diag *g)
{
    bool on = g->o.console_arg || g->cur.display_errs_on_console >= IMSD_CONSOLE_LEVEL;
    atomic_store_explicit(&g->o.sink->console, on, memory_order_relaxed);
    unsigned secs = on ? g->cur.console_stat_frequency : 0;
    if (g->console_timer && secs == g->console_secs)
        return;
    if (g->console_timer)
        event_free(g->console_timer);
    g->console_timer = NULL;
    g->console_secs = 0;
    if (!secs)
        return;
    g->console_timer = event_new(g->o.base, -1, EV_PERSIST, on_console_tick, g);
    struct timeval tv = {(time_t)secs, 0};
    if (!g->console_timer || event_add(g->console_timer, &tv)) {
        if (g->console_timer)
            event_free(g->console_timer);
        g->console_timer = NULL;
        ims_log_event(g->o.log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to start the console's statistics: out of memory");
        return;
    }
    g->console_secs = secs;
}

/* --- applying a change -------------------------------------------------------------------- */

/* note - append "what old -> new" to the change list. */
static void note(char *text, size_t *used, const char *what, const char *old, const char *now)
{
    if (*used >= DIAG_TEXT_MAX)
        return;
    int n = snprintf(text + *used, DIAG_TEXT_MAX - *used, "%s%s %s -> %s", *used ? "; " : "", what,
                     old, now);
    if (n > 0)
        *used += (size_t)n < DIAG_TEXT_MAX - *used ? (size_t)n : DIAG_TEXT_MAX - *used;
}

/* apply - make next the values in use: the log's levels (read by every thread), the settings'
 * copies (read on this thread), the protocol log's level for new connections, console mode. */
static void apply(imsd_diag *g, const ims_diag *next)
{
    char text[DIAG_TEXT_MAX + 1] = "";
    size_t used = 0;
    ims_settings *s = g->o.settings;
    for (int c = 0; c < IMS_CAT_COUNT; c++) {
        unsigned was = g->cur.levels[c], now = next->levels[c];
        if (was == now)
            continue;
        ims_log_set_level(g->o.log, (ims_category)c, now);
        s->levels[c] = (uint8_t)now;
        if (c == IMS_CAT_SMTP_PROTOCOL_LOG)
            imsd_mail_protolog_level(g->o.server, now);
        note(text, &used, ims_category_name((ims_category)c), ims_level_name(was),
             ims_level_name(now));
    }
    char was[16], now[16];
    if (next->display_errs_on_console != g->cur.display_errs_on_console) {
        snprintf(was, sizeof was, "%u", g->cur.display_errs_on_console);
        snprintf(now, sizeof now, "%u", next->display_errs_on_console);
        note(text, &used, "DisplayErrsOnConsole", was, now);
        s->display_errs_on_console = next->display_errs_on_console;
    }
    if (next->console_stat_frequency != g->cur.console_stat_frequency) {
        snprintf(was, sizeof was, "%u", g->cur.console_stat_frequency);
        snprintf(now, sizeof now, "%u", next->console_stat_frequency);
        note(text, &used, "ConsoleStatFrequency", was, now);
        s->console_stat_frequency = next->console_stat_frequency;
    }
    g->cur = *next;
    console_update(g);
    if (used)
        ims_log_event(g->o.log, IMS_EV_DIAG_CHANGED, IMS_CAT_INIT_TERM, IMS_SEV_INFO,
                      IMS_LEVEL_NONE, "Diagnostics logging: %s", text);
}

/* --- the watch (under the router's lock) -------------------------------------------------- */

/* watch_reset - make the watch follow the service key: kept while it is on that key and the
 * key lives, moved otherwise. Win32 error. */
static int watch_reset(imsd_diag *g)
{
    reg_key_info info;
    if (g->watch && g->watch_is_service && !reg_key_query_info(g->watch_key, &info))
        return ERROR_SUCCESS;
    static const char *const paths[] = {IMS_SERVICE_KEY, "System\\CurrentControlSet\\Services",
                                        "System\\CurrentControlSet", "System", ""};
    size_t nposs = sizeof paths / sizeof paths[0], found = 0;
    reg_key *k = NULL;
    int rc = ERROR_FILE_NOT_FOUND;
    for (; found < nposs; found++)
        if ((rc = reg_key_open(g->lm, paths[found], REG_READ, &k)) != ERROR_FILE_NOT_FOUND)
            break;
    if (rc)
        return rc;
    reg_notify *n;
    if ((rc = reg_notify_new(k, true, DIAG_FILTER, &n))) {
        reg_key_close(k);
        return rc;
    }
    reg_notify_free(g->watch);
    reg_key_close(g->watch_key);
    g->watch = n;
    g->watch_key = k;
    g->watch_is_service = found == 0;
    return ERROR_SUCCESS;
}

/* One look at the registry, made under the router's lock. */
struct diag_pass {
    imsd_diag *g;
    bool force;   /* read whether or not the watch fired (start, a retry) */
    bool quiet;   /* log no invalid value: the start has logged them */
    bool fired;   /* out: the values were read into next */
    int watch_rc; /* out: Win32 error of setting the watch */
    ims_diag next;
};

static int pass_locked(void *arg)
{
    struct diag_pass *p = arg;
    imsd_diag *g = p->g;
    bool fired = p->force || !g->watch;
    if (!fired && reg_notify_check(g->watch, &fired)) {
        g->watch_is_service = false; /* a watch that cannot be read is replaced */
        fired = true;
    }
    if (!fired)
        return 0;
    /* Watch first, then read: a change after the read fires the watch again. */
    p->watch_rc = watch_reset(g);
    p->next = g->cur;
    p->fired = ims_diag_load(g->o.reg, p->quiet ? NULL : g->o.log, &p->next) == IMS_OK;
    return 0;
}

static void on_change(evutil_socket_t fd, short what, void *arg);

/* pass - look, apply, and keep the loop's event on the watch's current descriptor. */
static void pass(imsd_diag *g, bool force, bool quiet)
{
    struct diag_pass p = {.g = g, .force = force, .quiet = quiet};
    ims_router_locked(g->router, pass_locked, &p);
    if (p.fired)
        apply(g, &p.next);
    int fd = g->watch ? reg_notify_fd(g->watch) : -1;
    if (fd != g->ev_fd) {
        if (g->ev)
            event_free(g->ev);
        g->ev = NULL;
        g->ev_fd = -1;
        if (fd >= 0 && (g->ev = event_new(g->o.base, fd, EV_READ | EV_PERSIST, on_change, g)) &&
            event_add(g->ev, NULL) == 0) {
            g->ev_fd = fd;
        } else if (g->ev) {
            event_free(g->ev);
            g->ev = NULL;
        }
    }
    if (p.watch_rc || g->ev_fd < 0 || (p.force && !p.fired)) {
        /* No watch or no read now (the registry failed us): again shortly rather than never. */
        struct timeval tv = {DIAG_RETRY_SECONDS, 0};
        event_add(g->retry, &tv);
    }
}

static void on_change(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pass(arg, false, false);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pass(arg, true, false); /* a change while there was no watch went unseen: read */
}

/* --- start and stop ----------------------------------------------------------------------- */

static int open_lm(void *arg)
{
    imsd_diag *g = arg;
    return reg_key_open_root(g->o.reg, REG_ROOT_HKLM, &g->lm);
}

static int close_keys(void *arg)
{
    imsd_diag *g = arg;
    reg_notify_free(g->watch);
    reg_key_close(g->watch_key);
    reg_key_close(g->lm);
    return 0;
}

int imsd_diag_start(const imsd_diag_options *o, imsd_diag **out)
{
    *out = NULL;
    imsd_diag *g = calloc(1, sizeof *g);
    if (!g)
        return ENOMEM;
    g->o = *o;
    g->ev_fd = -1;
    g->router = imsd_mail_router(o->server);
    ims_diag_from_settings(o->settings, &g->cur);
    g->retry = evtimer_new(o->base, on_retry, g);
    if (!g->router || !g->retry) {
        imsd_diag_free(g);
        return ENOMEM;
    }
    int rc = ims_router_locked(g->router, open_lm, g);
    if (rc) {
        /* Without HKLM nothing can change live; the service runs on what it started with. */
        ims_log_event(o->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Unable to follow the Diagnostics key (%s): its changes take effect at the "
                      "next start",
                      reg_strerror(rc));
        console_update(g);
        *out = g;
        return 0;
    }
    console_update(g);
    pass(g, true, true);
    *out = g;
    return 0;
}

void imsd_diag_free(imsd_diag *g)
{
    if (!g)
        return;
    if (g->ev)
        event_free(g->ev);
    if (g->retry)
        event_free(g->retry);
    if (g->console_timer)
        event_free(g->console_timer);
    if (g->router)
        ims_router_locked(g->router, close_keys, g);
    free(g);
}
