/* mapi_int.h - internals of lib/mapi shared by profile.c and service.c (not the contract). */
#ifndef IMS_MAPI_INT_H
#define IMS_MAPI_INT_H

#include "mapi/mapi.h"

#define MAPI_WMS_PATH "Software\\Microsoft\\Windows NT\\CurrentVersion\\Windows Messaging Subsystem"
#define MAPI_DELETED_PATH MAPI_WMS_PATH "\\Deleted Profiles" /* profiles awaiting deletion */
#define MAPI_RENAMES_PATH MAPI_WMS_PATH "\\Pending Renames"  /* old name = new name */
#define MAPI_DEFAULT_VALUE "DefaultProfile"
#define MAPI_MAX_SERVICES 256 /* services in one profile */
#define MAPI_MAX_SECTION_PROPS 4096

struct mapi_ctx {
    reg_ctx *reg;
    reg_key *hkcu;
    mapisvc *svc;
    reg_owner *owner; /* made on first use: what MAPI_PROFILE_BOUND profiles live by */
};

struct mapi_svcadmin {
    mapi_ctx *ctx;
    reg_key *profile; /* the profile's key: held by id, so a rename does not lose it */
};

/* mapi_section_key - open (create when asked) the section uid of a profile. */
mapi_err mapi_section_key(reg_key *profile, const mapi_uid *uid, bool create, reg_key **out);
/* mapi_section_write - store props in an open section key. */
mapi_err mapi_section_write(reg_key *sec, const mapi_prop *props, size_t n);
/* mapi_section_read_prop - one property of an open section key. */
mapi_err mapi_section_read_prop(reg_key *sec, uint32_t tag, mapi_prop *out);
/* mapi_services_create_in - CreateMsgService inside the caller's transaction. */
mapi_err mapi_service_create_in(mapi_ctx *ctx, reg_key *profile, const char *service,
                                const char *display, mapi_uid *uid);
/* mapi_new_uid - 16 random bytes. */
mapi_err mapi_new_uid(mapi_uid *uid);

#endif
