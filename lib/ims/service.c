/* service.c - the Internet Mail Service's start and stop (KB Q201121): at start it creates its
 * profile "MSExchangeIMC <suffix>" in the service account's HKCU and logs on with it; at stop
 * it logs off and deletes it. The profile is bound to the process, so the key exists exactly
 * while the service runs, also when it is killed or fails to start. */
#include "ims/ims.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store.h"

#define IMS_GATEWAY_ALIAS "MSExchangeIMC" /* the gateway's mailbox in the store */

struct ims_service {
    ims_log *log;
    mapi_ctx *mapi;
    mapi_session *session;
    store *store;
    char profile[sizeof IMS_PROFILE_PREFIX + IMS_PROFILE_SUFFIX_LEN];
    char *gateway;
};

/* Working folders under RootDir, made when missing (the original re-creates In and Out). */
static const char *const folders[] = {
    "In", "Out", "Work", "Log", "Pickup", "Pickup/Archive", "In/Archive", "Out/Archive"};

static int make_folders(const ims_settings *s, ims_log *log)
{
    int rc = base_mkdir_p(s->root_dir, 0750);
    const char *failed = s->root_dir;
    for (size_t i = 0; !rc && i < sizeof folders / sizeof folders[0]; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", s->root_dir, folders[i]) >= (int)sizeof p) {
            rc = ENAMETOOLONG;
        } else if (mkdir(p, 0750) && errno != EEXIST) {
            rc = errno;
        }
        failed = folders[i];
    }
    if (rc) {
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to create the working folder %s under %s: %s", failed, s->root_dir,
                      strerror(rc));
        return IMS_EV_INTERNAL;
    }
    return IMS_OK;
}

static int mapi_failed(ims_log *log, const char *what, mapi_err e)
{
    ims_log_event(log, IMS_EV_MAPI_INIT_FAILED, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                  "Unable to start the Internet Mail Service because MAPI could not be "
                  "initialized: %s failed with %s",
                  what, mapi_strerror(e));
    return IMS_EV_MAPI_INIT_FAILED;
}

/* make_profile - create the bound profile with the Exchange service set up for the gateway. */
static int make_profile(ims_service *svc, const ims_settings *s)
{
    uint8_t r[5];
    if (base_random(r, sizeof r))
        return mapi_failed(svc->log, "choosing a profile name", MAPI_E_CALL_FAILED);
    snprintf(svc->profile, sizeof svc->profile, "%s%02X%02X%02X%02X%02X", IMS_PROFILE_PREFIX, r[0],
             r[1], r[2], r[3], r[4]);
    mapi_err e = mapi_profile_create(svc->mapi, svc->profile, MAPI_PROFILE_BOUND);
    if (e)
        return mapi_failed(svc->log, "CreateProfile", e);
    mapi_svcadmin *adm;
    mapi_uid uid;
    if ((e = mapi_admin_services(svc->mapi, svc->profile, &adm)))
        return mapi_failed(svc->log, "AdminServices", e);
    e = mapi_service_create(adm, "MSEMS", NULL, &uid);
    if (e) {
        mapi_svcadmin_release(adm);
        return mapi_failed(svc->log, "CreateMsgService(MSEMS)", e);
    }
    /* The gateway logs on as its directory object, as the original logs on to the private
     * store as /o=/ou=/cn=Configuration/cn=Connections/cn=<CommonName>. */
    char dn[512];
    snprintf(dn, sizeof dn, "%s/cn=Configuration/cn=Connections/cn=%s", s->site_dn, s->common_name);
    mapi_prop cfg[3] = {
        {.tag = PR_PROFILE_HOME_SERVER}, {.tag = PR_PROFILE_USER}, {.tag = PR_PROFILE_MAILBOX}};
    cfg[0].v.str = (char *)s->home_dsa;
    cfg[1].v.str = dn;
    cfg[2].v.str = IMS_GATEWAY_ALIAS;
    e = mapi_service_configure(adm, &uid, cfg, 3);
    mapi_svcadmin_release(adm);
    if (e)
        return mapi_failed(svc->log, "ConfigureMsgService(MSEMS)", e);
    return IMS_OK;
}

/* purge_leftovers - IMS profiles an earlier start left (not ours, nobody logged on). */
static void purge_leftovers(ims_service *svc)
{
    mapi_profile_row *rows;
    size_t n;
    if (mapi_profile_table(svc->mapi, &rows, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(rows[i].name, IMS_PROFILE_PREFIX, strlen(IMS_PROFILE_PREFIX)) ||
            !strcmp(rows[i].name, svc->profile) || rows[i].in_use)
            continue;
        mapi_err e = mapi_profile_delete(svc->mapi, rows[i].name);
        ims_log_event(svc->log, IMS_EV_STARTED, IMS_CAT_INIT_TERM,
                      e ? IMS_SEV_WARNING : IMS_SEV_INFO, IMS_LEVEL_MINIMUM,
                      e ? "The profile %s an earlier start left could not be removed: %s"
                        : "Removed the profile %s an earlier start left%s",
                      rows[i].name, e ? mapi_strerror(e) : "");
    }
    mapi_profile_rows_free(rows, n);
}

static int open_store(ims_service *svc, reg_ctx *reg)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/store", reg_ctx_root_dir(reg));
    static const char *const gw_folders[] = {"MTS-IN", "MTS-OUT", "Bad"};
    int rc = store_open(dir, true, &svc->store);
    const char *what = dir;
    if (!rc) {
        rc = store_mailbox_ensure(svc->store, IMS_GATEWAY_ALIAS, &svc->gateway);
        what = IMS_GATEWAY_ALIAS;
    }
    for (size_t i = 0; !rc && i < 3; i++) {
        rc = store_folder_ensure(svc->store, IMS_GATEWAY_ALIAS, gw_folders[i]);
        what = gw_folders[i];
    }
    if (rc) {
        ims_log_event(svc->log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                      "Unable to open the message store's gateway mailbox (%s): %s", what,
                      strerror(rc));
        return IMS_EV_INTERNAL;
    }
    /* Leftovers of writers that died (half copies, garbage): Maildir's 36-hour rule, which
     * readers such as Dovecot apply too. Our own MTS-IN/tmp is cleared by the deliverer. */
    size_t removed = 0;
    if (!store_tmp_clean(svc->store, time(NULL), &removed) && removed)
        ims_log_event(svc->log, IMS_EV_SPOOL_RECOVERED, IMS_CAT_INIT_TERM, IMS_SEV_INFO,
                      IMS_LEVEL_MINIMUM,
                      "Removed %zu files left for over 36 hours in the message store's Maildir "
                      "tmp folders",
                      removed);
    return IMS_OK;
}

/* undo - everything a start did, in reverse. */
static void undo(ims_service *svc)
{
    if (svc->session)
        mapi_logoff(svc->session);
    if (svc->mapi && svc->profile[0])
        mapi_profile_delete(svc->mapi, svc->profile);
    mapi_fini(svc->mapi); /* and a bound profile goes with it in any case */
    store_close(svc->store);
    free(svc->gateway);
    free(svc);
}

int ims_service_start(const ims_settings *s, reg_ctx *reg, const char *mapisvc_path, ims_log *log,
                      ims_service **out)
{
    *out = NULL;
    mapisvc *catalogue = NULL;
    mapi_err e =
        mapisvc_load(mapisvc_path ? mapisvc_path : mapisvc_default_path(reg_ctx_root_dir(reg)),
                     NULL, NULL, &catalogue);
    if (e)
        return mapi_failed(log, "MAPIInitialize (reading MAPISVC.INF)", e);
    return ims_service_start_with(s, reg, catalogue, log, out);
}

int ims_service_start_with(const ims_settings *s, reg_ctx *reg, mapisvc *catalogue, ims_log *log,
                           ims_service **out)
{
    *out = NULL;
    ims_service *svc = calloc(1, sizeof *svc);
    if (!svc) {
        mapisvc_free(catalogue);
        return mapi_failed(log, "allocating the service", MAPI_E_NOT_ENOUGH_MEMORY);
    }
    svc->log = log;
    int rc = make_folders(s, log);
    if (rc) {
        mapisvc_free(catalogue);
        undo(svc);
        return rc;
    }
    mapi_err e = mapi_init_catalogue(reg, catalogue, &svc->mapi);
    if (e) {
        undo(svc);
        return mapi_failed(log, "MAPIInitialize", e);
    }
    if ((rc = make_profile(svc, s))) {
        undo(svc);
        return rc;
    }
    e = mapi_logon(svc->mapi, svc->profile,
                   MAPI_NT_SERVICE | MAPI_NO_MAIL | MAPI_NEW_SESSION | MAPI_EXPLICIT_PROFILE,
                   &svc->session);
    if (e) {
        undo(svc);
        return mapi_failed(log, "MAPILogonEx", e);
    }
    if ((rc = open_store(svc, reg))) {
        undo(svc);
        return rc;
    }
    purge_leftovers(svc);
    *out = svc;
    return IMS_OK;
}

const char *ims_service_profile(const ims_service *svc)
{
    return svc->profile;
}

const char *ims_service_gateway(const ims_service *svc)
{
    return svc->gateway;
}

void ims_service_stop(ims_service *svc)
{
    if (!svc)
        return;
    ims_log *log = svc->log;
    mapi_err e = mapi_logoff(svc->session);
    svc->session = NULL;
    mapi_err d = mapi_profile_delete(svc->mapi, svc->profile);
    svc->profile[0] = 0;
    if (e || d)
        ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_WARNING, IMS_LEVEL_NONE,
                      "Logging off MAPI at shutdown: %s; deleting the profile: %s",
                      mapi_strerror(e), mapi_strerror(d));
    undo(svc);
    ims_log_event(log, IMS_EV_SHUTDOWN, IMS_CAT_INIT_TERM, IMS_SEV_INFO, IMS_LEVEL_NONE,
                  "The Microsoft Exchange Internet Mail Service shut down successfully");
}
