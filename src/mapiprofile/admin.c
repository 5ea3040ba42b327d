/* admin.c - the mapiprofile commands that administer whole profiles (IProfAdmin): list,
 * delete, copy, rename, set-default, get-default, and logon, which tests one. */
#include "mapiprofile.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* print_services - the message services of a profile, indented, for list --verbose. */
static mapi_err print_services(mp_ctx *ctx, const char *profile)
{
    mapi_svcadmin *adm;
    mapi_err e = mapi_admin_services(ctx->mapi, profile, &adm);
    if (e)
        return e;
    mapi_service_row *rows;
    size_t n;
    e = mapi_service_table(adm, &rows, &n);
    if (!e) {
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
            if (strlen(rows[i].name) > w)
                w = strlen(rows[i].name);
        for (size_t i = 0; i < n; i++)
            printf("    %-*s  %s\n", (int)w, rows[i].name, rows[i].display);
        mapi_service_rows_free(rows, n);
    }
    mapi_svcadmin_release(adm);
    return e;
}

int mp_cmd_list(mp_ctx *ctx, const mp_args *a)
{
    mapi_profile_row *rows;
    size_t n;
    mapi_err e = mapi_profile_table(ctx->mapi, &rows, &n);
    if (e)
        return mp_fail(e, MP_ABOUT_PROFILE, "list");
    bool verbose = mp_has(a, MP_LIST_VERBOSE);
    int rc = MP_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        printf("%s%s%s\n", rows[i].name, rows[i].is_default ? " [default]" : "",
               rows[i].in_use ? " [in use]" : "");
        /* A profile deleted since the table was read is no failure of the listing. */
        if (verbose && (e = print_services(ctx, rows[i].name)) && e != MAPI_E_LOGON_FAILED)
            rc = mp_fail(e, MP_ABOUT_PROFILE, "list \"%s\"", rows[i].name);
    }
    mapi_profile_rows_free(rows, n);
    return rc;
}

int mp_cmd_delete(mp_ctx *ctx, const mp_args *a)
{
    const char *name = a->pos[0];
    mapi_profile_row *rows;
    size_t n;
    mapi_err e = mapi_profile_table(ctx->mapi, &rows, &n);
    if (e)
        return mp_fail(e, MP_ABOUT_PROFILE, "delete \"%s\"", name);
    const mapi_profile_row *r = mp_find_row(rows, n, name);
    bool busy = r && r->in_use;
    char *stored = r ? strdup(r->name) : NULL;
    mapi_profile_rows_free(rows, n);
    if (r && !stored)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "delete \"%s\"", name);
    e = r ? mapi_profile_delete(ctx->mapi, stored) : MAPI_E_NOT_FOUND;
    int rc;
    if (e)
        rc = mp_fail(e, MP_ABOUT_PROFILE, "delete \"%s\"", name);
    else if (busy)
        rc = printf("Profile \"%s\" is in use: it will be deleted when its last session ends.\n",
                    stored) < 0;
    else
        rc = printf("Profile \"%s\" deleted.\n", stored) < 0;
    free(stored);
    return rc;
}

int mp_cmd_copy(mp_ctx *ctx, const mp_args *a)
{
    const char *from = a->pos[0], *to = a->pos[1];
    if (mapi_profile_name_ok(to))
        return mp_fail(MAPI_E_INVALID_PARAMETER, MP_ABOUT_TARGET, "copy \"%s\" to \"%s\"", from,
                       to);
    char *src = mp_canonical_name(ctx, from);
    if (!src)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "copy \"%s\"", from);
    mapi_err e = mapi_profile_exists(ctx->mapi, src);
    if (!e)
        e = mapi_profile_copy(ctx->mapi, src, to);
    int rc;
    if (e)
        rc = mp_fail(e, e == MAPI_E_NOT_FOUND ? MP_ABOUT_PROFILE : MP_ABOUT_TARGET,
                     "copy \"%s\" to \"%s\"", from, to);
    else
        rc = printf("Profile \"%s\" copied to \"%s\".\n", src, to) < 0;
    free(src);
    return rc;
}

int mp_cmd_rename(mp_ctx *ctx, const mp_args *a)
{
    const char *from = a->pos[0], *to = a->pos[1];
    if (mapi_profile_name_ok(to))
        return mp_fail(MAPI_E_INVALID_PARAMETER, MP_ABOUT_TARGET, "rename \"%s\" to \"%s\"", from,
                       to);
    mapi_profile_row *rows;
    size_t n;
    mapi_err e = mapi_profile_table(ctx->mapi, &rows, &n);
    if (e)
        return mp_fail(e, MP_ABOUT_PROFILE, "rename \"%s\"", from);
    const mapi_profile_row *r = mp_find_row(rows, n, from);
    bool busy = r && r->in_use;
    char *src = r ? strdup(r->name) : NULL;
    mapi_profile_rows_free(rows, n);
    if (r && !src)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "rename \"%s\"", from);
    e = r ? mapi_profile_rename(ctx->mapi, src, to) : MAPI_E_NOT_FOUND;
    int rc;
    if (e)
        rc = mp_fail(e, e == MAPI_E_NOT_FOUND ? MP_ABOUT_PROFILE : MP_ABOUT_TARGET,
                     "rename \"%s\" to \"%s\"", from, to);
    else if (busy)
        rc = printf("Profile \"%s\" is in use: it will be renamed to \"%s\" when its last "
                    "session ends.\n",
                    src, to) < 0;
    else
        rc = printf("Profile \"%s\" renamed to \"%s\".\n", src, to) < 0;
    free(src);
    return rc;
}

int mp_cmd_set_default(mp_ctx *ctx, const mp_args *a)
{
    bool clear = mp_has(a, MP_SET_DEFAULT_CLEAR);
    if (clear == (a->npos == 1))
        return mp_usage_error(a->cmd, "set-default: give either a profile name or --clear");
    if (clear) {
        mapi_err e = mapi_profile_set_default(ctx->mapi, NULL);
        if (e)
            return mp_fail(e, MP_ABOUT_DEFAULT, "set-default --clear");
        return printf("There is no default profile now.\n") < 0;
    }
    /* The default is stored by name: store the name as the profile has it. */
    char *name = mp_canonical_name(ctx, a->pos[0]);
    if (!name)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "set-default");
    mapi_err e = mapi_profile_set_default(ctx->mapi, name);
    int rc = e ? mp_fail(e, MP_ABOUT_PROFILE, "set-default \"%s\"", a->pos[0])
               : printf("Profile \"%s\" is now the default profile.\n", name) < 0;
    free(name);
    return rc;
}

int mp_cmd_get_default(mp_ctx *ctx, const mp_args *a)
{
    (void)a;
    char *name;
    mapi_err e = mapi_profile_get_default(ctx->mapi, &name);
    if (e)
        return mp_fail(e, MP_ABOUT_DEFAULT, "get-default");
    int rc = printf("%s\n", name) < 0;
    free(name);
    return rc;
}

/* hold - wait until seconds have passed or one of the held-back signals (SIGINT, SIGTERM,
 * ...) arrived: it ends the wait instead of the process, so the session ends properly. */
static void hold(long seconds, const sigset_t *sigs)
{
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += seconds;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            return;
        struct timespec left = {end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec};
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000L;
        }
        if (sigtimedwait(sigs, NULL, &left) >= 0)
            return;
        if (errno != EINTR && errno != EAGAIN)
            return;
    }
}

int mp_cmd_logon(mp_ctx *ctx, const mp_args *a)
{
    const char *name = a->pos[0];
    long seconds = 0;
    const char *h = mp_value(a, MP_LOGON_HOLD);
    if (h) {
        char *end;
        errno = 0;
        seconds = strtol(h, &end, 10);
        if (errno || end == h || *end || seconds < 0 || seconds > MP_HOLD_MAX)
            return mp_usage_error(a->cmd, "logon: --hold takes 0 to %d seconds, not \"%s\"",
                                  MP_HOLD_MAX, h);
    }
    sigset_t sigs, old;
    mp_hold_signals(&sigs, &old);
    mapi_session *s;
    mapi_err e =
        mapi_logon(ctx->mapi, name,
                   MAPI_EXPLICIT_PROFILE | MAPI_NEW_SESSION | MAPI_EXTENDED | MAPI_NO_MAIL, &s);
    if (e) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return mp_fail(e, MP_ABOUT_SESSION, "logon \"%s\"", name);
    }
    printf("Logged on to \"%s\".\n", mapi_session_profile(s));
    /* Whoever waits for the line (a test, a script) must get it now, not at exit. */
    int rc = fflush(stdout) ? MP_EXIT_FAIL : MP_EXIT_OK;
    if (seconds > 0)
        hold(seconds, &sigs);
    e = mapi_logoff(s);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (e)
        return mp_fail(e, MP_ABOUT_SESSION, "logoff \"%s\"", name);
    if (printf("Logged off.\n") < 0)
        rc = MP_EXIT_FAIL;
    return rc;
}
