/* mapi.h - the contract of lib/mapi: the Windows Messaging Subsystem on the registry.
 *
 * MAPI profiles live under the user's HKCU\Software\Microsoft\Windows NT\CurrentVersion\
 * Windows Messaging Subsystem\Profiles, laid out as Windows lays them out: one key per
 * profile, one subkey per profile section named by its MAPIUID in 32 lowercase hex digits,
 * one REG_BINARY value per property named by its tag ("001e3001": type first, then id).
 * Profiles are administered with IProfAdmin's semantics and message services with
 * IMsgServiceAdmin's; logon sessions belong to their process and deleting a profile in use
 * is deferred until its last session ends, SIGKILL included.
 *
 * Functions return S_OK (0) or a MAPI_E_* value and never exit or print. Strings in and out
 * are UTF-8. Anything a function allocates for the caller says who frees it. */
#ifndef IMS_MAPI_H
#define IMS_MAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "reg/reg.h"

typedef uint32_t mapi_err;

/* Results (mapicode.h, winerror.h). */
#define S_OK 0u
#define MAPI_E_CALL_FAILED 0x80004005u
#define MAPI_E_NOT_ENOUGH_MEMORY 0x8007000Eu
#define MAPI_E_INVALID_PARAMETER 0x80070057u
#define MAPI_E_NO_ACCESS 0x80070005u
#define MAPI_E_NO_SUPPORT 0x80040102u
#define MAPI_E_BAD_CHARWIDTH 0x80040103u
#define MAPI_E_STRING_TOO_LONG 0x80040105u
#define MAPI_E_UNKNOWN_FLAGS 0x80040106u
#define MAPI_E_INVALID_ENTRYID 0x80040107u
#define MAPI_E_CORRUPT_DATA 0x8004011Bu
#define MAPI_E_BUSY 0x8004010Bu
#define MAPI_E_NOT_ENOUGH_DISK 0x8004010Du
#define MAPI_E_NOT_ENOUGH_RESOURCES 0x8004010Eu
#define MAPI_E_NOT_FOUND 0x8004010Fu
#define MAPI_E_LOGON_FAILED 0x80040111u
#define MAPI_E_USER_CANCEL 0x80040113u
#define MAPI_E_NETWORK_ERROR 0x80040115u
#define MAPI_E_EXTENDED_ERROR 0x80040119u
#define MAPI_E_END_OF_SESSION 0x80040200u
#define MAPI_E_BAD_VALUE 0x80040301u
#define MAPI_E_INVALID_TYPE 0x80040302u
#define MAPI_E_TYPE_NO_SUPPORT 0x80040303u
#define MAPI_E_TIMEOUT 0x80040401u
#define MAPI_E_CORRUPT_STORE 0x80040600u
#define MAPI_E_COLLISION 0x80040604u
#define MAPI_E_NOT_INITIALIZED 0x80040605u

/* mapi_strerror - "MAPI_E_NOT_FOUND" and the like (a hex number for unknown codes, in a
 * static buffer then); never NULL. */
const char *mapi_strerror(mapi_err e);
/* mapi_err_from_reg - a registry (Win32) error as the MAPI result a caller expects. */
mapi_err mapi_err_from_reg(int win32);

/* --- property tags and values --------------------------------------------------------- */

#define PT_UNSPECIFIED 0x0000u
#define PT_NULL 0x0001u
#define PT_I2 0x0002u
#define PT_LONG 0x0003u
#define PT_R4 0x0004u
#define PT_DOUBLE 0x0005u
#define PT_CURRENCY 0x0006u
#define PT_APPTIME 0x0007u
#define PT_ERROR 0x000Au
#define PT_BOOLEAN 0x000Bu
#define PT_OBJECT 0x000Du
#define PT_I8 0x0014u
#define PT_STRING8 0x001Eu
#define PT_UNICODE 0x001Fu
#define PT_SYSTIME 0x0040u
#define PT_CLSID 0x0048u
#define PT_BINARY 0x0102u
#define MV_FLAG 0x1000u
#define PT_MV_LONG (MV_FLAG | PT_LONG)
#define PT_MV_STRING8 (MV_FLAG | PT_STRING8)
#define PT_MV_UNICODE (MV_FLAG | PT_UNICODE)
#define PT_MV_BINARY (MV_FLAG | PT_BINARY)

#define PROP_TAG(type, id) ((((uint32_t)(id)) << 16) | ((uint32_t)(type)))
#define PROP_TYPE(tag) ((uint32_t)(tag)&0xffffu)
#define PROP_ID(tag) ((uint32_t)(tag) >> 16)

/* Tags the profile layer uses (mapitags.h, edkmdb.h). */
#define PR_DISPLAY_NAME PROP_TAG(PT_STRING8, 0x3001)
#define PR_DISPLAY_NAME_W PROP_TAG(PT_UNICODE, 0x3001)
#define PR_PROVIDER_DISPLAY PROP_TAG(PT_STRING8, 0x3006)
#define PR_RESOURCE_FLAGS PROP_TAG(PT_LONG, 0x3009)
#define PR_PROVIDER_DLL_NAME PROP_TAG(PT_STRING8, 0x300A)
#define PR_SEARCH_KEY PROP_TAG(PT_BINARY, 0x300B)
#define PR_PROVIDER_UID PROP_TAG(PT_BINARY, 0x300C)
#define PR_PROVIDER_ORDINAL PROP_TAG(PT_LONG, 0x300D)
#define PR_STORE_PROVIDERS PROP_TAG(PT_BINARY, 0x3D00)
#define PR_AB_PROVIDERS PROP_TAG(PT_BINARY, 0x3D01)
#define PR_TRANSPORT_PROVIDERS PROP_TAG(PT_BINARY, 0x3D02)
#define PR_DEFAULT_PROFILE PROP_TAG(PT_BOOLEAN, 0x3D04)
#define PR_SERVICE_NAME PROP_TAG(PT_STRING8, 0x3D09)
#define PR_SERVICE_DLL_NAME PROP_TAG(PT_STRING8, 0x3D0A)
#define PR_SERVICE_ENTRY_NAME PROP_TAG(PT_STRING8, 0x3D0B)
#define PR_SERVICE_UID PROP_TAG(PT_BINARY, 0x3D0C)
#define PR_SERVICE_EXTRA_UIDS PROP_TAG(PT_BINARY, 0x3D0D)
#define PR_SERVICES PROP_TAG(PT_BINARY, 0x3D0E)
#define PR_SERVICE_SUPPORT_FILES PROP_TAG(PT_MV_STRING8, 0x3D0F)
#define PR_SERVICE_DELETE_FILES PROP_TAG(PT_MV_STRING8, 0x3D10)
#define PR_PROFILE_NAME PROP_TAG(PT_STRING8, 0x3D12)
#define PR_IDENTITY_ENTRYID PROP_TAG(PT_BINARY, 0x3E01)
#define PR_RESOURCE_TYPE PROP_TAG(PT_LONG, 0x3E03)
#define PR_PROFILE_VERSION PROP_TAG(PT_LONG, 0x6600)
#define PR_PROFILE_CONFIG_FLAGS PROP_TAG(PT_LONG, 0x6601)
#define PR_PROFILE_HOME_SERVER PROP_TAG(PT_STRING8, 0x6602)
#define PR_PROFILE_USER PROP_TAG(PT_STRING8, 0x6603)
#define PR_PROFILE_CONNECT_FLAGS PROP_TAG(PT_LONG, 0x6604)
#define PR_PROFILE_TYPE PROP_TAG(PT_LONG, 0x660A)
#define PR_PROFILE_MAILBOX PROP_TAG(PT_STRING8, 0x660B)
#define PR_PROFILE_SERVER PROP_TAG(PT_STRING8, 0x660C)
#define PR_PROFILE_HOME_SERVER_DN PROP_TAG(PT_STRING8, 0x6612)
#define PR_PROFILE_SERVER_DN PROP_TAG(PT_STRING8, 0x6614)

/* Resource types (PR_RESOURCE_TYPE). */
#define MAPI_STORE_PROVIDER 33u
#define MAPI_AB 34u
#define MAPI_AB_PROVIDER 35u
#define MAPI_TRANSPORT_PROVIDER 36u
#define MAPI_SPOOLER 37u
#define MAPI_PROFILE_PROVIDER 38u

/* A MAPIUID: 16 bytes, written in key names as 32 lowercase hex digits in byte order. */
typedef struct mapi_uid {
    uint8_t ab[16];
} mapi_uid;
extern const mapi_uid MAPI_UID_GLOBAL;           /* 13dbb0c8aa05101a9bb000aa002fc45a */
extern const mapi_uid MAPI_UID_PROFILE_INSTANCE; /* 8503020000000000c000000000000046 */
extern const mapi_uid MAPI_UID_SERVICES;         /* 9207f3e0a3b11019908b08002b2a56c2 */
/* mapi_uid_hex - the key name of a section ("%02x" x 16); out has room for 33 bytes. */
void mapi_uid_hex(const mapi_uid *uid, char out[33]);
/* mapi_uid_parse - 32 hex digits (either case) to a uid. Returns S_OK or MAPI_E_INVALID_PARAMETER.
 */
mapi_err mapi_uid_parse(const char *hex, mapi_uid *out);

/* mapi_prop - one property value. Strings are UTF-8 whatever the type (PT_STRING8 is stored
 * in code page 1252, PT_UNICODE in UTF-16LE); binary values are counted bytes; multi-valued
 * properties hold n values of their base type in mv. */
typedef struct mapi_prop mapi_prop;
struct mapi_prop {
    uint32_t tag;
    union {
        int16_t i;    /* PT_I2 */
        int32_t l;    /* PT_LONG */
        float flt;    /* PT_R4 */
        double dbl;   /* PT_DOUBLE, PT_APPTIME */
        bool b;       /* PT_BOOLEAN */
        int64_t li;   /* PT_I8, PT_CURRENCY */
        uint64_t ft;  /* PT_SYSTIME (FILETIME) */
        mapi_err err; /* PT_ERROR */
        char *str;    /* PT_STRING8, PT_UNICODE: UTF-8, NUL-terminated */
        struct {
            size_t cb;
            uint8_t *lpb;
        } bin; /* PT_BINARY, PT_CLSID (16 bytes) */
        struct {
            size_t n;
            mapi_prop *v; /* n values, each with tag = this tag without MV_FLAG */
        } mv;             /* any MV_FLAG type */
    } v;
};

/* mapi_prop_encode - the bytes a property is stored as in a profile's REG_BINARY value:
 * PT_I2 2, PT_LONG/PT_R4/PT_ERROR 4, PT_BOOLEAN 2 (0 or 1), 8-byte types 8 bytes, all
 * little-endian; PT_STRING8 CP1252 plus NUL; PT_UNICODE UTF-16LE plus NUL; PT_BINARY raw;
 * PT_CLSID 16 bytes; multi-valued: a 4-byte count, then each value, variable-length ones
 * preceded by their 4-byte length. Appends to out. Returns S_OK, MAPI_E_INVALID_TYPE for a
 * type that cannot be stored (PT_OBJECT, PT_NULL, PT_UNSPECIFIED), MAPI_E_BAD_VALUE for a
 * malformed value (PT_CLSID not 16 bytes), MAPI_E_NOT_ENOUGH_MEMORY. */
mapi_err mapi_prop_encode(const mapi_prop *p, buf *out);
/* mapi_prop_decode - the inverse: a property of tag from n stored bytes. Never trusts the
 * bytes: MAPI_E_CORRUPT_DATA when they do not fit the type. *out is filled and owns its
 * memory: free with mapi_prop_clear. */
mapi_err mapi_prop_decode(uint32_t tag, const uint8_t *data, size_t n, mapi_prop *out);
/* mapi_prop_copy - a deep copy (free with mapi_prop_clear). */
mapi_err mapi_prop_copy(const mapi_prop *src, mapi_prop *dst);
/* mapi_prop_clear - free what a property owns; it is left with PT_NULL. */
void mapi_prop_clear(mapi_prop *p);
/* mapi_props_free - clear n properties and free the array. */
void mapi_props_free(mapi_prop *props, size_t n);

/* mapi_tag_name - the name of a known tag ("PR_DISPLAY_NAME"), or NULL. */
const char *mapi_tag_name(uint32_t tag);
/* mapi_tag_parse - a tag from a name ("PR_DISPLAY_NAME", as in MAPISVC.INF) or 8 hex digits
 * in either order of writing: "3001001e" (MAPISVC.INF, tag order) is taken as written.
 * Returns S_OK or MAPI_E_NOT_FOUND. */
mapi_err mapi_tag_parse(const char *s, uint32_t *tag);
/* mapi_tag_value_name - the registry value name of a tag: type first ("001e3001"). */
void mapi_tag_value_name(uint32_t tag, char out[9]);
/* mapi_tag_from_value_name - the inverse; MAPI_E_INVALID_PARAMETER for anything but 8 hex
 * digits. */
mapi_err mapi_tag_from_value_name(const char *name, uint32_t *tag);
/* mapi_type_name - "PT_STRING8" and the like, or NULL. */
const char *mapi_type_name(uint32_t type);
/* mapi_prop_format - a property's value as text for people (appended to out): numbers in
 * decimal (PT_LONG also in hex), strings quoted, binary as hex, flags and resource types by
 * name where the tag is known. */
mapi_err mapi_prop_format(const mapi_prop *p, buf *out);
/* mapi_prop_parse_text - a value of tag's type from text as MAPISVC.INF writes it: numbers
 * in decimal or 0x hex or a '|'-separated list of known flag names, strings as they are,
 * binary as hex digits, booleans TRUE/FALSE/1/0. */
mapi_err mapi_prop_parse_text(uint32_t tag, const char *text, mapi_prop *out);

/* --- MAPISVC.INF: the catalogue of message services ------------------------------------ */

/* One provider or service section: its name and its property entries. */
typedef struct mapisvc_section {
    char *name;       /* section name, e.g. "EMS_MDB_private" */
    mapi_prop *props; /* property entries, in file order */
    size_t nprops;
    char **providers; /* for a service: the "Providers=" list, in order */
    size_t nproviders;
    char **sections; /* for a service: the "Sections=" list (extra sections) */
    size_t nsections;
} mapisvc_section;

typedef struct mapisvc mapisvc;

#define MAPISVC_MAX_FILE (1u << 20) /* bytes of a MAPISVC.INF */
#define MAPISVC_MAX_LINE 4096       /* bytes of one line */

/* mapisvc_parse - read a MAPISVC.INF's text. Lines that cannot be understood are reported
 * to diag (line, message) and skipped; references to missing sections are reported too.
 * Returns S_OK, MAPI_E_CORRUPT_DATA when the text has no [Services] section, or
 * MAPI_E_NOT_ENOUGH_MEMORY. *out: free with mapisvc_free. */
mapi_err mapisvc_parse(const char *text, size_t len, void (*diag)(void *, unsigned, const char *),
                       void *arg, mapisvc **out);
/* mapisvc_load - mapisvc_parse of a file. MAPI_E_NOT_FOUND when it does not exist. */
mapi_err mapisvc_load(const char *path, void (*diag)(void *, unsigned, const char *), void *arg,
                      mapisvc **out);
void mapisvc_free(mapisvc *svc);
/* mapisvc_services - the [Services] names in file order (valid while svc lives). */
size_t mapisvc_services(const mapisvc *svc, const char *const **names);
/* mapisvc_default_services - the [Default Services] names in file order. */
size_t mapisvc_default_services(const mapisvc *svc, const char *const **names);
/* mapisvc_display - the display name [Services] gives a service, or NULL. */
const char *mapisvc_display(const mapisvc *svc, const char *service);
/* mapisvc_section - a section by name (case-insensitive), or NULL. */
const mapisvc_section *mapisvc_section_get(const mapisvc *svc, const char *name);
/* mapisvc_default_path - where the catalogue is: $IMS_MAPISVC if set, else
 * <state root>/mapisvc.inf if it exists, else the installed copy. Valid until the next call. */
const char *mapisvc_default_path(const char *state_root);

/* --- profiles (IProfAdmin) ------------------------------------------------------------ */

#define MAPI_PROFILE_NAME_MAX 64 /* characters */
#define MAPI_PROFILES_PATH                                                                         \
    "Software\\Microsoft\\Windows NT\\CurrentVersion\\Windows Messaging Subsystem\\Profiles"

#define MAPI_DEFAULT_SERVICES 0x1u /* CreateProfile: add the [Default Services] */
/* MAPI_PROFILE_BOUND - ours: the profile is volatile and bound to this process (to the
 * mapi_ctx): it exists exactly while the process lives and mapi_fini has not been called,
 * so a service's own profile never outlives it, SIGKILL included. */
#define MAPI_PROFILE_BOUND 0x100u

typedef struct mapi_ctx mapi_ctx;

/* mapi_init - MAPI for the user of reg's HKCU, with the catalogue at mapisvc_path (NULL:
 * mapisvc_default_path). *out: free with mapi_fini, before reg is closed. */
mapi_err mapi_init(reg_ctx *reg, const char *mapisvc_path, mapi_ctx **out);
/* mapi_init_catalogue - mapi_init with a catalogue already read (NULL: none), which the
 * context takes over in every case (mapi_fini frees it; so does a failure). For a service
 * that reads its files before it gives up the rights to them. */
mapi_err mapi_init_catalogue(reg_ctx *reg, mapisvc *catalogue, mapi_ctx **out);
void mapi_fini(mapi_ctx *ctx);
/* mapi_catalogue - the message service catalogue in use (valid while ctx lives). */
const mapisvc *mapi_catalogue(const mapi_ctx *ctx);

typedef struct mapi_profile_row {
    char *name;      /* PR_DISPLAY_NAME */
    bool is_default; /* PR_DEFAULT_PROFILE */
    bool in_use;     /* has logon sessions (our addition) */
} mapi_profile_row;

/* mapi_profile_table - GetProfileTable: every profile not marked for deletion, sorted by name.
 * *rows: free with mapi_profile_rows_free. */
mapi_err mapi_profile_table(mapi_ctx *ctx, mapi_profile_row **rows, size_t *n);
void mapi_profile_rows_free(mapi_profile_row *rows, size_t n);
/* mapi_profile_name_ok - S_OK for a valid new name (1 to 64 characters, no leading or trailing
 * space, no backslash or control character), else MAPI_E_INVALID_PARAMETER. */
mapi_err mapi_profile_name_ok(const char *name);
/* mapi_profile_create - CreateProfile, in one registry transaction: MAPI_E_NO_ACCESS when the
 * name exists (also when another process creates it at the same moment: exactly one wins).
 * flags: MAPI_DEFAULT_SERVICES, MAPI_PROFILE_BOUND. */
mapi_err mapi_profile_create(mapi_ctx *ctx, const char *name, unsigned flags);
/* mapi_profile_delete - DeleteProfile: MAPI_E_NOT_FOUND when missing; a profile in use is
 * hidden at once and removed when its last session ends. */
mapi_err mapi_profile_delete(mapi_ctx *ctx, const char *name);
/* mapi_profile_copy - CopyProfile: MAPI_E_NOT_FOUND (source), MAPI_E_NO_ACCESS (target
 * exists). The copy gets its own PR_SEARCH_KEY. */
mapi_err mapi_profile_copy(mapi_ctx *ctx, const char *from, const char *to);
/* mapi_profile_rename - RenameProfile: deferred while the profile is in use (it keeps its old
 * name until its last session ends). MAPI_E_NOT_FOUND, MAPI_E_NO_ACCESS (target exists). */
mapi_err mapi_profile_rename(mapi_ctx *ctx, const char *from, const char *to);
/* mapi_profile_set_default - SetDefaultProfile (NULL clears). MAPI_E_NOT_FOUND. */
mapi_err mapi_profile_set_default(mapi_ctx *ctx, const char *name);
/* mapi_profile_get_default - the default profile's name (free it), MAPI_E_NOT_FOUND if none. */
mapi_err mapi_profile_get_default(mapi_ctx *ctx, char **name);
/* mapi_profile_exists - S_OK when the profile exists and is not marked for deletion. */
mapi_err mapi_profile_exists(mapi_ctx *ctx, const char *name);

/* --- message services (IMsgServiceAdmin) and profile sections --------------------------- */

typedef struct mapi_svcadmin mapi_svcadmin;

/* mapi_admin_services - AdminServices: MAPI_E_LOGON_FAILED when the profile does not exist.
 * Free with mapi_svcadmin_release. */
mapi_err mapi_admin_services(mapi_ctx *ctx, const char *profile, mapi_svcadmin **out);
void mapi_svcadmin_release(mapi_svcadmin *adm);

typedef struct mapi_service_row {
    mapi_uid uid;  /* PR_SERVICE_UID */
    char *name;    /* PR_SERVICE_NAME */
    char *display; /* PR_DISPLAY_NAME */
} mapi_service_row;

/* mapi_service_create - CreateMsgService: a service from the catalogue with its providers, in
 * one transaction. MAPI_E_NOT_FOUND for an unknown service, MAPI_E_NO_ACCESS for a second
 * copy of a SERVICE_SINGLE_COPY service. uid (may be NULL) gets the new service's uid. */
mapi_err mapi_service_create(mapi_svcadmin *adm, const char *service, const char *display,
                             mapi_uid *uid);
/* mapi_service_configure - ConfigureMsgService without UI: set props on the service (the
 * service's configuration entry point validates them and may write the profile's global
 * section, as Exchange's does). MAPI_E_NOT_FOUND for an unknown uid. */
mapi_err mapi_service_configure(mapi_svcadmin *adm, const mapi_uid *uid, const mapi_prop *props,
                                size_t n);
/* mapi_service_delete - DeleteMsgService: the service and its provider sections. */
mapi_err mapi_service_delete(mapi_svcadmin *adm, const mapi_uid *uid);
/* mapi_service_table - GetMsgServiceTable, in PR_SERVICES order. Free rows with
 * mapi_service_rows_free. */
mapi_err mapi_service_table(mapi_svcadmin *adm, mapi_service_row **rows, size_t *n);
void mapi_service_rows_free(mapi_service_row *rows, size_t n);

/* mapi_section_get_props - OpenProfileSection + GetProps: every property of the section uid
 * (all of them, in registry order). MAPI_E_NOT_FOUND when there is no such section. *props:
 * free with mapi_props_free. */
mapi_err mapi_section_get_props(mapi_svcadmin *adm, const mapi_uid *uid, mapi_prop **props,
                                size_t *n);
/* mapi_section_get_prop - one property; MAPI_E_NOT_FOUND when the section lacks it. */
mapi_err mapi_section_get_prop(mapi_svcadmin *adm, const mapi_uid *uid, uint32_t tag,
                               mapi_prop *out);
/* mapi_section_set_props - SetProps (profile sections are not transacted: effective at once,
 * all n in one registry transaction); creates the section when missing. */
mapi_err mapi_section_set_props(mapi_svcadmin *adm, const mapi_uid *uid, const mapi_prop *props,
                                size_t n);
/* mapi_section_list - the uids of all sections of the profile, sorted. Free *uids. */
mapi_err mapi_section_list(mapi_svcadmin *adm, mapi_uid **uids, size_t *n);

/* --- logon sessions (MAPILogonEx) ----------------------------------------------------- */

#define MAPI_LOGON_UI 0x1u
#define MAPI_NEW_SESSION 0x2u
#define MAPI_EXPLICIT_PROFILE 0x10u
#define MAPI_EXTENDED 0x20u
#define MAPI_NO_MAIL 0x8000u
#define MAPI_NT_SERVICE 0x10000u

typedef struct mapi_session mapi_session;

/* mapi_logon - MAPILogonEx with an explicit profile: MAPI_E_LOGON_FAILED when it does not
 * exist or is marked for deletion. The session belongs to this process: it ends at
 * mapi_logoff or when the process dies in any way. Free with mapi_logoff. */
mapi_err mapi_logon(mapi_ctx *ctx, const char *profile, unsigned flags, mapi_session **out);
/* mapi_session_profile - the profile's name (valid while the session lives). */
const char *mapi_session_profile(const mapi_session *s);
/* mapi_session_admin - the profile's services and sections, through the session. */
mapi_err mapi_session_admin(mapi_session *s, mapi_svcadmin **out);
/* mapi_logoff - end the session; a profile marked for deletion goes with its last one, and
 * a deferred rename happens then. */
mapi_err mapi_logoff(mapi_session *s);

#endif
