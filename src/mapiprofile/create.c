/* create.c - mapiprofile create: a profile with its message services and their settings,
 * made completely or not at all. MAPI makes each step atomic but not the sequence, so a
 * failed step deletes the profile again, and SIGINT, SIGTERM, SIGHUP and SIGQUIT are held
 * back while the sequence runs: one that arrives stops it between two steps and the profile
 * is deleted before the command exits. */
#include "mapiprofile.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The Exchange service that --home-server and --mailbox configure. */
#define CREATE_EMS_SERVICE "MSEMS"

/* One --service with its --display and --set options. */
typedef struct create_service {
    const char *name;
    const char *display;
    mapi_prop *props; /* --set values, in order */
    size_t n;
} create_service;

typedef struct create_plan {
    const char *name;
    unsigned flags; /* mapi_profile_create flags */
    bool make_default;
    create_service *svcs;
    size_t nsvcs;
    mapi_prop ems[2]; /* PR_PROFILE_HOME_SERVER, PR_PROFILE_USER from the options */
    size_t nems;
} create_plan;

static void plan_free(create_plan *p)
{
    for (size_t i = 0; i < p->nsvcs; i++)
        mapi_props_free(p->svcs[i].props, p->svcs[i].n);
    free(p->svcs);
}

/* parse_set - one --set TAG=VALUE into prop. Returns MP_EXIT_OK or a usage error. */
static int parse_set(const mp_command *c, const char *arg, mapi_prop *prop)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return mp_usage_error(c, "create: --set takes TAG=VALUE, not \"%s\"", arg);
    char tagname[128];
    size_t len = (size_t)(eq - arg);
    if (len >= sizeof tagname)
        return mp_usage_error(c, "create: --set: unknown property tag \"%.*s\"", (int)len, arg);
    memcpy(tagname, arg, len);
    tagname[len] = '\0';
    uint32_t tag;
    if (mapi_tag_parse(tagname, &tag) != S_OK)
        return mp_usage_error(c, "create: --set: unknown property tag \"%s\"", tagname);
    mapi_err e = mapi_prop_parse_text(tag, eq + 1, prop);
    if (e == MAPI_E_NOT_ENOUGH_MEMORY)
        return mp_fail(e, MP_ABOUT_SERVICE, "create");
    if (e) {
        const char *type = mapi_type_name(PROP_TYPE(tag));
        return mp_usage_error(c, "create: --set %s: \"%s\" is not a value of type %s", tagname,
                              eq + 1, type ? type : "unknown");
    }
    return MP_EXIT_OK;
}

/* make_plan - the options in command-line order: --display and --set belong to the --service
 * before them. Checks everything that can be checked without the registry. */
static int make_plan(const mp_args *a, create_plan *p)
{
    const mp_command *c = a->cmd;
    p->name = a->pos[0];
    p->make_default = mp_has(a, MP_CREATE_DEFAULT);
    if (mp_has(a, MP_CREATE_DEFAULT_SERVICES))
        p->flags |= MAPI_DEFAULT_SERVICES;
    p->svcs = calloc(a->n ? a->n : 1, sizeof *p->svcs);
    if (!p->svcs)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "create");
    bool ems = false;
    for (size_t i = 0; i < a->n; i++) {
        const mp_item *it = &a->items[i];
        create_service *last = p->nsvcs ? &p->svcs[p->nsvcs - 1] : NULL;
        switch (it->opt) {
        case MP_CREATE_SERVICE:
            if (!*it->value)
                return mp_usage_error(c, "create: --service needs a service name");
            p->svcs[p->nsvcs++].name = it->value;
            ems = ems || !strcasecmp(it->value, CREATE_EMS_SERVICE);
            break;
        case MP_CREATE_DISPLAY:
            if (!last)
                return mp_usage_error(c, "create: --display must follow the --service it names");
            if (last->display)
                return mp_usage_error(c, "create: --display given twice for service \"%s\"",
                                      last->name);
            last->display = it->value;
            break;
        case MP_CREATE_SET: {
            if (!last)
                return mp_usage_error(c, "create: --set must follow the --service it configures");
            if (!last->props && !(last->props = calloc(a->n, sizeof *last->props)))
                return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "create");
            int rc = parse_set(c, it->value, &last->props[last->n]);
            if (rc)
                return rc;
            last->n++;
            break;
        }
        default:
            break;
        }
    }
    const char *home = mp_value(a, MP_CREATE_HOME_SERVER);
    const char *mailbox = mp_value(a, MP_CREATE_MAILBOX);
    if ((home && !*home) || (mailbox && !*mailbox))
        return mp_usage_error(c, "create: --%s needs a value",
                              home && !*home ? "home-server" : "mailbox");
    if ((home || mailbox) && !ems && !(p->flags & MAPI_DEFAULT_SERVICES))
        return mp_usage_error(
            c, "create: --home-server and --mailbox configure the " CREATE_EMS_SERVICE
               " service: add --service " CREATE_EMS_SERVICE);
    /* The mailbox is stored as given: a distinguished name ("/o=Org/ou=Site/cn=Recipients/
     * cn=IMS") or an alias ("IMS") that Exchange resolves when it connects. */
    if (home) {
        p->ems[p->nems].tag = PR_PROFILE_HOME_SERVER;
        p->ems[p->nems++].v.str = (char *)home;
    }
    if (mailbox) {
        p->ems[p->nems].tag = PR_PROFILE_USER;
        p->ems[p->nems++].v.str = (char *)mailbox;
    }
    return MP_EXIT_OK;
}

/* check_catalogue - every service named is in the catalogue: refuse before making anything. */
static int check_catalogue(mp_ctx *ctx, const create_plan *p)
{
    if (!p->nsvcs && !(p->flags & MAPI_DEFAULT_SERVICES))
        return MP_EXIT_OK;
    const mapisvc *cat = mapi_catalogue(ctx->mapi);
    if (!cat)
        return mp_error("create \"%s\": no catalogue of message services: %s does not exist "
                        "(IMS_MAPISVC names another)",
                        p->name, mapisvc_default_path(reg_ctx_root_dir(ctx->reg)));
    for (size_t i = 0; i < p->nsvcs; i++)
        if (!mapisvc_display(cat, p->svcs[i].name))
            return mp_fail(MAPI_E_NOT_FOUND, MP_ABOUT_SERVICE, "create \"%s\": service \"%s\"",
                           p->name, p->svcs[i].name);
    return MP_EXIT_OK;
}

/* configure - ConfigureMsgService on one service with props; Exchange's entry point writes
 * the home server and mailbox into the global profile section. */
static mapi_err configure(mapi_svcadmin *adm, const mapi_uid *uid, const mapi_prop *props, size_t n,
                          const mapi_prop *extra, size_t nextra)
{
    if (!n && !nextra)
        return S_OK;
    mapi_prop *all = calloc(n + nextra, sizeof *all);
    if (!all)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    if (n)
        memcpy(all, props, n * sizeof *all);
    if (nextra)
        memcpy(all + n, extra, nextra * sizeof *all);
    mapi_err e = mapi_service_configure(adm, uid, all, n + nextra);
    free(all); /* shallow copies: the values belong to the plan */
    return e;
}

/* find_ems - the uid of the Exchange service in the profile (from --default-services). */
static mapi_err find_ems(mapi_svcadmin *adm, mapi_uid *uid)
{
    mapi_service_row *rows;
    size_t n;
    mapi_err e = mapi_service_table(adm, &rows, &n);
    if (e)
        return e;
    e = MAPI_E_NOT_FOUND;
    for (size_t i = 0; i < n && e; i++)
        if (!strcasecmp(rows[i].name, CREATE_EMS_SERVICE)) {
            *uid = rows[i].uid;
            e = S_OK;
        }
    mapi_service_rows_free(rows, n);
    return e;
}

/* The steps after CreateProfile, for the message of the one that failed. */
typedef enum create_step { CREATE_STEP_OPEN, CREATE_STEP_SERVICE, CREATE_STEP_DEFAULT } create_step;

/* build - the steps after CreateProfile. On failure, *step tells which step failed (and
 * *svc_name which service) and the caller deletes the profile; a held-back signal stops it
 * between steps. */
static mapi_err build(mp_ctx *ctx, const create_plan *p, const sigset_t *held, int *sig,
                      create_step *step, const char **svc_name)
{
    mapi_svcadmin *adm;
    *step = CREATE_STEP_OPEN;
    mapi_err e = mapi_admin_services(ctx->mapi, p->name, &adm);
    if (e)
        return e;
    bool ems_done = p->nems == 0;
    for (size_t i = 0; i < p->nsvcs && !e && !(*sig = mp_pending_signal(held)); i++) {
        const create_service *s = &p->svcs[i];
        mapi_uid uid;
        *svc_name = s->name;
        *step = CREATE_STEP_SERVICE;
        e = mapi_service_create(adm, s->name, s->display, &uid);
        if (e || (*sig = mp_pending_signal(held)))
            break;
        bool ems = !ems_done && !strcasecmp(s->name, CREATE_EMS_SERVICE);
        e = configure(adm, &uid, s->props, s->n, ems ? p->ems : NULL, ems ? p->nems : 0);
        ems_done = ems_done || ems;
    }
    if (!e && !*sig && !ems_done) {
        mapi_uid uid;
        *svc_name = CREATE_EMS_SERVICE;
        *step = CREATE_STEP_SERVICE;
        e = find_ems(adm, &uid);
        if (!e && !(*sig = mp_pending_signal(held)))
            e = configure(adm, &uid, NULL, 0, p->ems, p->nems);
    }
    if (!e && !*sig && p->make_default && !(*sig = mp_pending_signal(held))) {
        *step = CREATE_STEP_DEFAULT;
        e = mapi_profile_set_default(ctx->mapi, p->name);
    }
    mapi_svcadmin_release(adm);
    return e;
}

int mp_cmd_create(mp_ctx *ctx, const mp_args *a)
{
    create_plan p = {0};
    int rc = make_plan(a, &p);
    if (!rc)
        rc = check_catalogue(ctx, &p);
    if (rc) {
        plan_free(&p);
        return rc;
    }

    sigset_t held, old;
    mp_hold_signals(&held, &old);

    int sig = mp_pending_signal(&held);
    bool made = false;
    create_step step = CREATE_STEP_OPEN;
    const char *svc = "";
    mapi_err e = S_OK;
    if (!sig) {
        e = mapi_profile_create(ctx->mapi, p.name, p.flags);
        made = e == S_OK;
    }
    if (made && !(sig = mp_pending_signal(&held)))
        e = build(ctx, &p, &held, &sig, &step, &svc);
    if (!sig)
        sig = mp_pending_signal(&held);

    if (e || sig) {
        if (!made && e == MAPI_E_NO_ACCESS)
            rc = mp_fail(
                e, mapi_profile_exists(ctx->mapi, p.name) == S_OK ? MP_ABOUT_NEW : MP_ABOUT_DENIED,
                "create \"%s\"", p.name);
        else if (!made && e)
            rc = mp_fail(e, MP_ABOUT_NEW, "create \"%s\"", p.name);
        else if (e && step == CREATE_STEP_SERVICE)
            rc = mp_fail(e, MP_ABOUT_SERVICE, "create \"%s\": service \"%s\"", p.name, svc);
        else if (e && step == CREATE_STEP_DEFAULT)
            rc = mp_fail(e, MP_ABOUT_PROFILE, "create \"%s\": make it the default", p.name);
        else if (e)
            rc = mp_fail(e, MP_ABOUT_PROFILE, "create \"%s\"", p.name);
        if (sig) {
            mp_error("interrupted: profile \"%s\" not created", p.name);
            rc = MP_EXIT_SIGNAL_BASE + sig;
        }
        mapi_err de = made ? mapi_profile_delete(ctx->mapi, p.name) : S_OK;
        if (de)
            mp_fail(de, MP_ABOUT_PROFILE, "the incomplete profile \"%s\" could not be deleted",
                    p.name);
    } else {
        printf("Profile \"%s\" created.\n", p.name);
        rc = fflush(stdout) ? MP_EXIT_FAIL : MP_EXIT_OK;
    }
    plan_free(&p);
    /* A signal still held back is for a process that exits with a status anyway. */
    if (!sig)
        sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}
