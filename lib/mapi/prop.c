/* prop.c - MAPI property tags and values: tag and type names, the bytes a property is stored as
 * in a profile section (REG_BINARY), text for people and from MAPISVC.INF, result names. */
#include "mapi/mapi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- well-known section uids ------------------------------------------------------------ */

const mapi_uid MAPI_UID_GLOBAL = {{0x13, 0xdb, 0xb0, 0xc8, 0xaa, 0x05, 0x10, 0x1a, 0x9b, 0xb0, 0x00,
                                   0xaa, 0x00, 0x2f, 0xc4, 0x5a}};
const mapi_uid MAPI_UID_PROFILE_INSTANCE = {{0x85, 0x03, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0,
                                             0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46}};
const mapi_uid MAPI_UID_SERVICES = {{0x92, 0x07, 0xf3, 0xe0, 0xa3, 0xb1, 0x10, 0x19, 0x90, 0x8b,
                                     0x08, 0x00, 0x2b, 0x2a, 0x56, 0xc2}};

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* hex_bytes - exactly 2*n hex digits at s to n bytes. */
static bool hex_bytes(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit((unsigned char)s[2 * i]);
        int lo = hi < 0 ? -1 : hex_digit((unsigned char)s[2 * i + 1]);
        if (lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

void mapi_uid_hex(const mapi_uid *uid, char out[33])
{
    static const char hexchars[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hexchars[uid->ab[i] >> 4];
        out[2 * i + 1] = hexchars[uid->ab[i] & 15];
    }
    out[32] = 0;
}

mapi_err mapi_uid_parse(const char *hex, mapi_uid *out)
{
    mapi_uid u;
    if (!hex || !out || strlen(hex) != 32 || !hex_bytes(hex, u.ab, 16))
        return MAPI_E_INVALID_PARAMETER;
    *out = u;
    return S_OK;
}

/* --- results ------------------------------------------------------------------------------ */

typedef struct err_name {
    mapi_err e;
    const char *name;
} err_name;

static const err_name err_names[] = {
    {S_OK, "S_OK"},
    {MAPI_E_CALL_FAILED, "MAPI_E_CALL_FAILED"},
    {MAPI_E_NOT_ENOUGH_MEMORY, "MAPI_E_NOT_ENOUGH_MEMORY"},
    {MAPI_E_INVALID_PARAMETER, "MAPI_E_INVALID_PARAMETER"},
    {MAPI_E_NO_ACCESS, "MAPI_E_NO_ACCESS"},
    {MAPI_E_NO_SUPPORT, "MAPI_E_NO_SUPPORT"},
    {MAPI_E_BAD_CHARWIDTH, "MAPI_E_BAD_CHARWIDTH"},
    {MAPI_E_STRING_TOO_LONG, "MAPI_E_STRING_TOO_LONG"},
    {MAPI_E_UNKNOWN_FLAGS, "MAPI_E_UNKNOWN_FLAGS"},
    {MAPI_E_INVALID_ENTRYID, "MAPI_E_INVALID_ENTRYID"},
    {MAPI_E_CORRUPT_DATA, "MAPI_E_CORRUPT_DATA"},
    {MAPI_E_BUSY, "MAPI_E_BUSY"},
    {MAPI_E_NOT_ENOUGH_DISK, "MAPI_E_NOT_ENOUGH_DISK"},
    {MAPI_E_NOT_ENOUGH_RESOURCES, "MAPI_E_NOT_ENOUGH_RESOURCES"},
    {MAPI_E_NOT_FOUND, "MAPI_E_NOT_FOUND"},
    {MAPI_E_LOGON_FAILED, "MAPI_E_LOGON_FAILED"},
    {MAPI_E_USER_CANCEL, "MAPI_E_USER_CANCEL"},
    {MAPI_E_NETWORK_ERROR, "MAPI_E_NETWORK_ERROR"},
    {MAPI_E_EXTENDED_ERROR, "MAPI_E_EXTENDED_ERROR"},
    {MAPI_E_END_OF_SESSION, "MAPI_E_END_OF_SESSION"},
    {MAPI_E_BAD_VALUE, "MAPI_E_BAD_VALUE"},
    {MAPI_E_INVALID_TYPE, "MAPI_E_INVALID_TYPE"},
    {MAPI_E_TYPE_NO_SUPPORT, "MAPI_E_TYPE_NO_SUPPORT"},
    {MAPI_E_TIMEOUT, "MAPI_E_TIMEOUT"},
    {MAPI_E_CORRUPT_STORE, "MAPI_E_CORRUPT_STORE"},
    {MAPI_E_COLLISION, "MAPI_E_COLLISION"},
    {MAPI_E_NOT_INITIALIZED, "MAPI_E_NOT_INITIALIZED"},
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *err_lookup(mapi_err e)
{
    for (size_t i = 0; i < ARRAY_LEN(err_names); i++)
        if (err_names[i].e == e)
            return err_names[i].name;
    return NULL;
}

const char *mapi_strerror(mapi_err e)
{
    /* Unknown codes are written into a per-thread buffer: valid until this thread's next call
     * with an unknown code. */
    static _Thread_local char unknown[16];
    const char *name = err_lookup(e);
    if (name)
        return name;
    snprintf(unknown, sizeof unknown, "0x%08" PRIx32, e);
    return unknown;
}

mapi_err mapi_err_from_reg(int win32)
{
    switch (win32) {
    case ERROR_SUCCESS:
        return S_OK;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_KEY_DELETED:
        return MAPI_E_NOT_FOUND;
    case ERROR_ACCESS_DENIED:
        return MAPI_E_NO_ACCESS;
    case ERROR_NOT_ENOUGH_MEMORY:
        return MAPI_E_NOT_ENOUGH_MEMORY;
    case ERROR_DISK_FULL:
        return MAPI_E_NOT_ENOUGH_DISK;
    case ERROR_INVALID_PARAMETER:
        return MAPI_E_INVALID_PARAMETER;
    case ERROR_BADDB:
    case ERROR_REGISTRY_CORRUPT:
        return MAPI_E_CORRUPT_STORE;
    default:
        return MAPI_E_CALL_FAILED;
    }
}

/* --- tag and type names ------------------------------------------------------------------- */

typedef struct tag_entry {
    uint32_t tag;
    const char *name;
} tag_entry;

#define TAG(type, id, name)                                                                        \
    {                                                                                              \
        PROP_TAG(type, id), name                                                                   \
    }
/* String properties come in two forms, as mapitags.h defines them: the bare name is the
 * PT_STRING8 form (a non-Unicode build's PT_TSTRING), "_W" the PT_UNICODE one. */
#define STR(id, name)                                                                              \
    {PROP_TAG(PT_STRING8, id), name},                                                              \
    {                                                                                              \
        PROP_TAG(PT_UNICODE, id), name "_W"                                                        \
    }
#define MVSTR(id, name)                                                                            \
    {PROP_TAG(PT_MV_STRING8, id), name},                                                           \
    {                                                                                              \
        PROP_TAG(PT_MV_UNICODE, id), name "_W"                                                     \
    }

/* Tags of mapitags.h and edkmdb.h that profiles and MAPISVC.INF use. Where two tags share an
 * id (0x6609), both are listed; the first of an id names it for other types. */
static const tag_entry tag_table[] = {
    /* Identity of objects. */
    TAG(PT_BINARY, 0x0FFF, "PR_ENTRYID"),
    TAG(PT_LONG, 0x0FFE, "PR_OBJECT_TYPE"),
    TAG(PT_BINARY, 0x0FFD, "PR_ICON"),
    TAG(PT_BINARY, 0x0FFC, "PR_MINI_ICON"),
    TAG(PT_BINARY, 0x0FFB, "PR_STORE_ENTRYID"),
    TAG(PT_BINARY, 0x0FFA, "PR_STORE_RECORD_KEY"),
    TAG(PT_BINARY, 0x0FF9, "PR_RECORD_KEY"),
    TAG(PT_BINARY, 0x0FF8, "PR_MAPPING_SIGNATURE"),
    TAG(PT_LONG, 0x0FF7, "PR_ACCESS_LEVEL"),
    TAG(PT_BINARY, 0x0FF6, "PR_INSTANCE_KEY"),
    TAG(PT_LONG, 0x0FF5, "PR_ROW_TYPE"),
    TAG(PT_LONG, 0x0FF4, "PR_ACCESS"),
    /* Common to all objects. */
    STR(0x3001, "PR_DISPLAY_NAME"),
    STR(0x3002, "PR_ADDRTYPE"),
    STR(0x3003, "PR_EMAIL_ADDRESS"),
    STR(0x3004, "PR_COMMENT"),
    TAG(PT_LONG, 0x3005, "PR_DEPTH"),
    STR(0x3006, "PR_PROVIDER_DISPLAY"),
    TAG(PT_SYSTIME, 0x3007, "PR_CREATION_TIME"),
    TAG(PT_SYSTIME, 0x3008, "PR_LAST_MODIFICATION_TIME"),
    TAG(PT_LONG, 0x3009, "PR_RESOURCE_FLAGS"),
    STR(0x300A, "PR_PROVIDER_DLL_NAME"),
    TAG(PT_BINARY, 0x300B, "PR_SEARCH_KEY"),
    TAG(PT_BINARY, 0x300C, "PR_PROVIDER_UID"),
    TAG(PT_LONG, 0x300D, "PR_PROVIDER_ORDINAL"),
    /* Message stores. */
    TAG(PT_LONG, 0x340D, "PR_STORE_SUPPORT_MASK"),
    TAG(PT_LONG, 0x340E, "PR_STORE_STATE"),
    TAG(PT_BINARY, 0x3414, "PR_MDB_PROVIDER"),
    /* Address book. */
    TAG(PT_LONG, 0x3900, "PR_DISPLAY_TYPE"),
    STR(0x39FE, "PR_SMTP_ADDRESS"),
    STR(0x3A00, "PR_ACCOUNT"),
    STR(0x3A20, "PR_TRANSMITABLE_DISPLAY_NAME"),
    /* Profile sections. */
    TAG(PT_BINARY, 0x3D00, "PR_STORE_PROVIDERS"),
    TAG(PT_BINARY, 0x3D01, "PR_AB_PROVIDERS"),
    TAG(PT_BINARY, 0x3D02, "PR_TRANSPORT_PROVIDERS"),
    TAG(PT_BOOLEAN, 0x3D04, "PR_DEFAULT_PROFILE"),
    TAG(PT_MV_BINARY, 0x3D05, "PR_AB_SEARCH_PATH"),
    TAG(PT_BINARY, 0x3D06, "PR_AB_DEFAULT_DIR"),
    TAG(PT_BINARY, 0x3D07, "PR_AB_DEFAULT_PAB"),
    TAG(PT_BINARY, 0x3D08, "PR_FILTERING_HOOKS"),
    STR(0x3D09, "PR_SERVICE_NAME"),
    STR(0x3D0A, "PR_SERVICE_DLL_NAME"),
    STR(0x3D0B, "PR_SERVICE_ENTRY_NAME"),
    TAG(PT_BINARY, 0x3D0C, "PR_SERVICE_UID"),
    TAG(PT_BINARY, 0x3D0D, "PR_SERVICE_EXTRA_UIDS"),
    TAG(PT_BINARY, 0x3D0E, "PR_SERVICES"),
    MVSTR(0x3D0F, "PR_SERVICE_SUPPORT_FILES"),
    MVSTR(0x3D10, "PR_SERVICE_DELETE_FILES"),
    TAG(PT_BINARY, 0x3D11, "PR_AB_SEARCH_PATH_UPDATE"),
    STR(0x3D12, "PR_PROFILE_NAME"),
    /* Status objects. */
    STR(0x3E00, "PR_IDENTITY_DISPLAY"),
    TAG(PT_BINARY, 0x3E01, "PR_IDENTITY_ENTRYID"),
    TAG(PT_LONG, 0x3E02, "PR_RESOURCE_METHODS"),
    TAG(PT_LONG, 0x3E03, "PR_RESOURCE_TYPE"),
    TAG(PT_LONG, 0x3E04, "PR_STATUS_CODE"),
    TAG(PT_BINARY, 0x3E05, "PR_IDENTITY_SEARCH_KEY"),
    TAG(PT_BINARY, 0x3E06, "PR_OWN_STORE_ENTRYID"),
    STR(0x3E07, "PR_RESOURCE_PATH"),
    STR(0x3E08, "PR_STATUS_STRING"),
    TAG(PT_LONG, 0x3E0B, "PR_REMOTE_PROGRESS"),
    STR(0x3E0C, "PR_REMOTE_PROGRESS_TEXT"),
    TAG(PT_BOOLEAN, 0x3E0D, "PR_REMOTE_VALIDATE_OK"),
    /* Exchange's profile properties (edkmdb.h, pidProfileMin 0x6600). */
    TAG(PT_LONG, 0x6600, "PR_PROFILE_VERSION"),
    TAG(PT_LONG, 0x6601, "PR_PROFILE_CONFIG_FLAGS"),
    STR(0x6602, "PR_PROFILE_HOME_SERVER"),
    STR(0x6603, "PR_PROFILE_USER"),
    TAG(PT_LONG, 0x6604, "PR_PROFILE_CONNECT_FLAGS"),
    TAG(PT_LONG, 0x6605, "PR_PROFILE_TRANSPORT_FLAGS"),
    TAG(PT_LONG, 0x6606, "PR_PROFILE_UI_STATE"),
    STR(0x6607, "PR_PROFILE_UNRESOLVED_NAME"),
    STR(0x6608, "PR_PROFILE_UNRESOLVED_SERVER"),
    TAG(PT_LONG, 0x6609, "PR_PROFILE_OPEN_FLAGS"),
    STR(0x6609, "PR_PROFILE_BINDING_ORDER"),
    TAG(PT_LONG, 0x660A, "PR_PROFILE_TYPE"),
    STR(0x660B, "PR_PROFILE_MAILBOX"),
    STR(0x660C, "PR_PROFILE_SERVER"),
    TAG(PT_LONG, 0x660D, "PR_PROFILE_MAX_RESTRICT"),
    STR(0x660E, "PR_PROFILE_AB_FILES_PATH"),
    STR(0x660F, "PR_PROFILE_FAVFLD_DISPLAY_NAME"),
    STR(0x6610, "PR_PROFILE_OFFLINE_STORE_PATH"),
    TAG(PT_BINARY, 0x6611, "PR_PROFILE_OFFLINE_INFO"),
    STR(0x6612, "PR_PROFILE_HOME_SERVER_DN"),
    MVSTR(0x6613, "PR_PROFILE_HOME_SERVER_ADDRS"),
    STR(0x6614, "PR_PROFILE_SERVER_DN"),
    STR(0x6615, "PR_PROFILE_FAVFLD_COMMENT"),
    STR(0x6616, "PR_PROFILE_ALLPUB_DISPLAY_NAME"),
    STR(0x6617, "PR_PROFILE_ALLPUB_COMMENT"),
    TAG(PT_BINARY, 0x6687, "PR_PROFILE_ADDR_INFO"),
    TAG(PT_BINARY, 0x6689, "PR_PROFILE_OPTIONS_DATA"),
    TAG(PT_BINARY, 0x67F0, "PR_PROFILE_SECURE_MAILBOX"),
};

const char *mapi_tag_name(uint32_t tag)
{
    for (size_t i = 0; i < ARRAY_LEN(tag_table); i++)
        if (tag_table[i].tag == tag)
            return tag_table[i].name;
    /* Another type under a known id (PT_ERROR in a row, say): the bare name. The string
     * forms never get here, both are in the table. */
    for (size_t i = 0; i < ARRAY_LEN(tag_table); i++)
        if (PROP_ID(tag_table[i].tag) == PROP_ID(tag))
            return tag_table[i].name;
    return NULL;
}

/* is_hex8 - exactly 8 hex digits. */
static bool is_hex8(const char *s)
{
    for (int i = 0; i < 8; i++)
        if (hex_digit((unsigned char)s[i]) < 0)
            return false;
    return s[8] == 0;
}

static uint32_t hex32(const char *s, int digits)
{
    uint32_t v = 0;
    for (int i = 0; i < digits; i++)
        v = v << 4 | (uint32_t)hex_digit((unsigned char)s[i]);
    return v;
}

mapi_err mapi_tag_parse(const char *s, uint32_t *tag)
{
    if (!s || !tag)
        return MAPI_E_INVALID_PARAMETER;
    const char *h = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? s + 2 : s;
    if (is_hex8(h)) {
        *tag = hex32(h, 8); /* MAPISVC.INF's order: the tag as written, id first */
        return S_OK;
    }
    for (size_t i = 0; i < ARRAY_LEN(tag_table); i++)
        if (!strcasecmp(tag_table[i].name, s)) {
            *tag = tag_table[i].tag;
            return S_OK;
        }
    /* "_A" names the PT_STRING8 form explicitly, as mapitags.h's PR_..._A do. */
    size_t n = strlen(s);
    if (n > 2 && s[n - 2] == '_' && (s[n - 1] == 'A' || s[n - 1] == 'a')) {
        for (size_t i = 0; i < ARRAY_LEN(tag_table); i++) {
            uint32_t t = PROP_TYPE(tag_table[i].tag) & ~MV_FLAG;
            if (t == PT_STRING8 && strlen(tag_table[i].name) == n - 2 &&
                !strncasecmp(tag_table[i].name, s, n - 2)) {
                *tag = tag_table[i].tag;
                return S_OK;
            }
        }
    }
    return MAPI_E_NOT_FOUND;
}

void mapi_tag_value_name(uint32_t tag, char out[9])
{
    snprintf(out, 9, "%04x%04x", (unsigned)PROP_TYPE(tag), (unsigned)PROP_ID(tag));
}

mapi_err mapi_tag_from_value_name(const char *name, uint32_t *tag)
{
    if (!name || !tag || !is_hex8(name))
        return MAPI_E_INVALID_PARAMETER;
    *tag = PROP_TAG(hex32(name, 4), hex32(name + 4, 4));
    return S_OK;
}

typedef struct type_entry {
    uint32_t type;
    const char *name;
} type_entry;

static const type_entry type_table[] = {
    {PT_UNSPECIFIED, "PT_UNSPECIFIED"},
    {PT_NULL, "PT_NULL"},
    {PT_I2, "PT_I2"},
    {PT_LONG, "PT_LONG"},
    {PT_R4, "PT_R4"},
    {PT_DOUBLE, "PT_DOUBLE"},
    {PT_CURRENCY, "PT_CURRENCY"},
    {PT_APPTIME, "PT_APPTIME"},
    {PT_ERROR, "PT_ERROR"},
    {PT_BOOLEAN, "PT_BOOLEAN"},
    {PT_OBJECT, "PT_OBJECT"},
    {PT_I8, "PT_I8"},
    {PT_STRING8, "PT_STRING8"},
    {PT_UNICODE, "PT_UNICODE"},
    {PT_SYSTIME, "PT_SYSTIME"},
    {PT_CLSID, "PT_CLSID"},
    {PT_BINARY, "PT_BINARY"},
    {MV_FLAG | PT_I2, "PT_MV_I2"},
    {PT_MV_LONG, "PT_MV_LONG"},
    {MV_FLAG | PT_R4, "PT_MV_R4"},
    {MV_FLAG | PT_DOUBLE, "PT_MV_DOUBLE"},
    {MV_FLAG | PT_CURRENCY, "PT_MV_CURRENCY"},
    {MV_FLAG | PT_APPTIME, "PT_MV_APPTIME"},
    {MV_FLAG | PT_I8, "PT_MV_I8"},
    {PT_MV_STRING8, "PT_MV_STRING8"},
    {PT_MV_UNICODE, "PT_MV_UNICODE"},
    {MV_FLAG | PT_SYSTIME, "PT_MV_SYSTIME"},
    {MV_FLAG | PT_CLSID, "PT_MV_CLSID"},
    {PT_MV_BINARY, "PT_MV_BINARY"},
};

const char *mapi_type_name(uint32_t type)
{
    for (size_t i = 0; i < ARRAY_LEN(type_table); i++)
        if (type_table[i].type == type)
            return type_table[i].name;
    return NULL;
}

/* --- named values of PT_LONG properties ------------------------------------------------------ */

typedef struct value_name {
    uint32_t value;
    const char *name;
    bool shown; /* used when formatting (names that share a value are only parsed) */
} value_name;

typedef struct value_names {
    uint16_t id; /* of a PT_LONG property */
    bool flags;  /* a bit mask, else an enumeration */
    const value_name *v;
    size_t n;
} value_names;

/* PR_RESOURCE_FLAGS: SERVICE_* on message services (mapix.h), STATUS_* on providers
 * (mapidefs.h), HOOK_* on spooler hooks (mapihook.h). The families share values; the number
 * alone cannot tell which applies, so formatting uses the provider names, which most
 * sections carry. */
static const value_name resource_flags[] = {
    {0x00000001, "STATUS_DEFAULT_OUTBOUND", true},
    {0x00000002, "STATUS_DEFAULT_STORE", true},
    {0x00000004, "STATUS_PRIMARY_IDENTITY", true},
    {0x00000008, "STATUS_SIMPLE_STORE", true},
    {0x00000010, "STATUS_XP_PREFER_LAST", true},
    {0x00000020, "STATUS_NO_PRIMARY_IDENTITY", true},
    {0x00000040, "STATUS_NO_DEFAULT_STORE", true},
    {0x00000080, "STATUS_TEMP_SECTION", true},
    {0x00000100, "STATUS_OWN_STORE", true},
    {0x00000200, "HOOK_INBOUND", true},
    {0x00000400, "HOOK_OUTBOUND", true},
    {0x00000800, "STATUS_NEED_IPM_TREE", true},
    {0x00001000, "STATUS_PRIMARY_STORE", true},
    {0x00002000, "STATUS_SECONDARY_STORE", true},
    {0x00000001, "SERVICE_DEFAULT_STORE", false},
    {0x00000002, "SERVICE_SINGLE_COPY", false},
    {0x00000004, "SERVICE_CREATE_WITH_STORE", false},
    {0x00000008, "SERVICE_PRIMARY_IDENTITY", false},
    {0x00000020, "SERVICE_NO_PRIMARY_IDENTITY", false},
};

static const value_name resource_types[] = {
    {33, "MAPI_STORE_PROVIDER", true}, {34, "MAPI_AB", true},
    {35, "MAPI_AB_PROVIDER", true},    {36, "MAPI_TRANSPORT_PROVIDER", true},
    {37, "MAPI_SPOOLER", true},        {38, "MAPI_PROFILE_PROVIDER", true},
    {39, "MAPI_SUBSYSTEM", true},      {40, "MAPI_HOOK_PROVIDER", true},
};

static const value_name object_types[] = {
    {1, "MAPI_STORE", true},   {2, "MAPI_ADDRBOOK", true}, {3, "MAPI_FOLDER", true},
    {4, "MAPI_ABCONT", true},  {5, "MAPI_MESSAGE", true},  {6, "MAPI_MAILUSER", true},
    {7, "MAPI_ATTACH", true},  {8, "MAPI_DISTLIST", true}, {9, "MAPI_PROFSECT", true},
    {10, "MAPI_STATUS", true}, {11, "MAPI_SESSION", true}, {12, "MAPI_FORMINFO", true},
};

/* edkmdb.h */
static const value_name config_flags[] = {
    {0x01, "CONFIG_SERVICE", true},
    {0x02, "CONFIG_SHOW_STARTUP_UI", true},
    {0x04, "CONFIG_SHOW_CONNECT_UI", true},
    {0x08, "CONFIG_PROMPT_FOR_CREDENTIALS", true},
};

static const value_name connect_flags[] = {
    {0x01, "CONNECT_USE_ADMIN_PRIVILEGE", true},
    {0x02, "CONNECT_NO_RPC_ENCRYPTION", true},
    {0x04, "CONNECT_USE_SEPARATE_CONNECTION", true},
    {0x08, "CONNECT_NO_UNDER_COVER_CONNECTION", true},
    {0x10, "CONNECT_ANONYMOUS_ACCESS", true},
    {0x20, "CONNECT_NO_NOTIFICATIONS", true},
    {0x40, "CONNECT_NO_ADDRESS_RESOLUTION", true},
    {0x80, "CONNECT_RESTORE_DATABASE", true},
};

static const value_name transport_flags[] = {
    {0x01, "TRANSPORT_DOWNLOAD", true},
    {0x02, "TRANSPORT_UPLOAD", true},
};

static const value_name open_flags[] = {
    {0x01, "OPENSTORE_USE_ADMIN_PRIVILEGE", true}, {0x02, "OPENSTORE_PUBLIC", true},
    {0x04, "OPENSTORE_HOME_LOGON", true},          {0x08, "OPENSTORE_TAKE_OWNERSHIP", true},
    {0x10, "OPENSTORE_OVERRIDE_HOME_MDB", true},   {0x20, "OPENSTORE_TRANSPORT", true},
    {0x40, "OPENSTORE_REMOTE_TRANSPORT", true},
};

static const value_name profile_types[] = {
    {1, "PROFILE_PRIMARY_USER", true},
    {2, "PROFILE_DELEGATE", true},
    {3, "PROFILE_PUBLIC_STORE", true},
    {4, "PROFILE_SUBSCRIPTION", true},
};

#define NAMES(id, flags, table)                                                                    \
    {                                                                                              \
        id, flags, table, ARRAY_LEN(table)                                                         \
    }
static const value_names long_names[] = {
    NAMES(0x3009, true, resource_flags), NAMES(0x3E03, false, resource_types),
    NAMES(0x0FFE, false, object_types),  NAMES(0x6601, true, config_flags),
    NAMES(0x6604, true, connect_flags),  NAMES(0x6605, true, transport_flags),
    NAMES(0x6609, true, open_flags),     NAMES(0x660A, false, profile_types),
};

static const value_names *names_for(uint32_t tag)
{
    if ((PROP_TYPE(tag) & ~MV_FLAG) != PT_LONG)
        return NULL;
    for (size_t i = 0; i < ARRAY_LEN(long_names); i++)
        if (long_names[i].id == PROP_ID(tag))
            return &long_names[i];
    return NULL;
}

/* --- the stored form ---------------------------------------------------------------------- */

/* type_size - bytes of one stored value of a single-valued type: > 0 fixed, 0 counted
 * (strings, binary), -1 for a type that is never stored. */
static int type_size(uint32_t type)
{
    switch (type) {
    case PT_I2:
    case PT_BOOLEAN:
        return 2;
    case PT_LONG:
    case PT_R4:
    case PT_ERROR:
        return 4;
    case PT_DOUBLE:
    case PT_APPTIME:
    case PT_CURRENCY:
    case PT_I8:
    case PT_SYSTIME:
        return 8;
    case PT_CLSID:
        return 16;
    case PT_STRING8:
    case PT_UNICODE:
    case PT_BINARY:
        return 0;
    default:
        return -1;
    }
}

/* split_type - the base type of a storable tag and whether it is multi-valued. MAPI has no
 * multi-valued PT_BOOLEAN or PT_ERROR. */
static mapi_err split_type(uint32_t tag, uint32_t *base, bool *mv)
{
    uint32_t t = PROP_TYPE(tag);
    *mv = (t & MV_FLAG) != 0;
    *base = t & ~MV_FLAG;
    if (type_size(*base) < 0 || (*mv && (*base == PT_BOOLEAN || *base == PT_ERROR)))
        return MAPI_E_INVALID_TYPE;
    return S_OK;
}

static int put_le(buf *out, uint64_t v, int size)
{
    uint8_t b[8];
    for (int i = 0; i < size; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return buf_add(out, b, (size_t)size);
}

static uint64_t get_le(const uint8_t *p, int size)
{
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static mapi_err from_errno(int rc)
{
    return rc == ENOMEM ? MAPI_E_NOT_ENOUGH_MEMORY : rc ? MAPI_E_BAD_VALUE : S_OK;
}

/* encode_string8 - UTF-8 to code page 1252 plus NUL. A character the code page cannot hold is
 * refused rather than written as '?': the round trip through CP1252 must give it back. */
static mapi_err encode_string8(const char *s, buf *out)
{
    buf u16 = BUF_INIT, back = BUF_INIT;
    size_t start = out->len;
    mapi_err e = from_errno(base_utf8_to_utf16(s, strlen(s), &u16));
    if (!e)
        e = from_errno(base_utf16_to_cp1252(u16.data, u16.len / 2, out));
    if (!e && out->len > start)
        e = from_errno(base_cp1252_to_utf16(out->data + start, out->len - start, &back));
    if (!e && (back.len != u16.len || (u16.len && memcmp(back.data, u16.data, u16.len))))
        e = MAPI_E_BAD_CHARWIDTH;
    if (!e && buf_addc(out, 0))
        e = MAPI_E_NOT_ENOUGH_MEMORY;
    buf_free(&u16);
    buf_free(&back);
    if (e)
        out->len = start;
    return e;
}

static mapi_err encode_unicode(const char *s, buf *out)
{
    size_t start = out->len;
    mapi_err e = from_errno(base_utf8_to_utf16(s, strlen(s), out));
    if (!e && buf_add_u16(out, 0))
        e = MAPI_E_NOT_ENOUGH_MEMORY;
    if (e)
        out->len = start;
    return e;
}

/* encode_value - one value of a base type, without a length prefix. */
static mapi_err encode_value(uint32_t base, const mapi_prop *p, buf *out)
{
    uint32_t u32;
    uint64_t u64;
    int rc = 0;
    switch (base) {
    case PT_I2:
        rc = put_le(out, (uint16_t)p->v.i, 2);
        break;
    case PT_BOOLEAN:
        rc = put_le(out, p->v.b ? 1 : 0, 2);
        break;
    case PT_LONG:
        rc = put_le(out, (uint32_t)p->v.l, 4);
        break;
    case PT_ERROR:
        rc = put_le(out, p->v.err, 4);
        break;
    case PT_R4:
        memcpy(&u32, &p->v.flt, 4);
        rc = put_le(out, u32, 4);
        break;
    case PT_DOUBLE:
    case PT_APPTIME:
        memcpy(&u64, &p->v.dbl, 8);
        rc = put_le(out, u64, 8);
        break;
    case PT_CURRENCY:
    case PT_I8:
        rc = put_le(out, (uint64_t)p->v.li, 8);
        break;
    case PT_SYSTIME:
        rc = put_le(out, p->v.ft, 8);
        break;
    case PT_CLSID:
        if (p->v.bin.cb != 16 || !p->v.bin.lpb)
            return MAPI_E_BAD_VALUE;
        rc = buf_add(out, p->v.bin.lpb, 16);
        break;
    case PT_BINARY:
        if (p->v.bin.cb && !p->v.bin.lpb)
            return MAPI_E_BAD_VALUE;
        if (p->v.bin.cb)
            rc = buf_add(out, p->v.bin.lpb, p->v.bin.cb);
        break;
    case PT_STRING8:
        return p->v.str ? encode_string8(p->v.str, out) : MAPI_E_BAD_VALUE;
    case PT_UNICODE:
        return p->v.str ? encode_unicode(p->v.str, out) : MAPI_E_BAD_VALUE;
    default:
        return MAPI_E_INVALID_TYPE;
    }
    return rc ? MAPI_E_NOT_ENOUGH_MEMORY : S_OK;
}

static mapi_err encode_mv(uint32_t base, const mapi_prop *p, buf *out)
{
    if ((p->v.mv.n && !p->v.mv.v) || p->v.mv.n > UINT32_MAX)
        return MAPI_E_BAD_VALUE;
    if (put_le(out, p->v.mv.n, 4))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    bool counted = type_size(base) == 0;
    for (size_t i = 0; i < p->v.mv.n; i++) {
        size_t at = out->len;
        if (counted && put_le(out, 0, 4))
            return MAPI_E_NOT_ENOUGH_MEMORY;
        mapi_err e = encode_value(base, &p->v.mv.v[i], out);
        if (e)
            return e;
        if (counted) {
            size_t len = out->len - at - 4;
            if (len > UINT32_MAX)
                return MAPI_E_BAD_VALUE;
            for (int k = 0; k < 4; k++)
                out->data[at + (size_t)k] = (uint8_t)(len >> (8 * k));
        }
    }
    return S_OK;
}

mapi_err mapi_prop_encode(const mapi_prop *p, buf *out)
{
    if (!p || !out)
        return MAPI_E_INVALID_PARAMETER;
    uint32_t base;
    bool mv;
    mapi_err e = split_type(p->tag, &base, &mv);
    if (e)
        return e;
    size_t start = out->len;
    e = mv ? encode_mv(base, p, out) : encode_value(base, p, out);
    if (e)
        out->len = start; /* nothing half-written */
    return e;
}

/* decode_value - one value of a base type from exactly len bytes. */
static mapi_err decode_value(uint32_t base, const uint8_t *d, size_t len, mapi_prop *v)
{
    int size = type_size(base);
    if (size > 0 && len != (size_t)size)
        return MAPI_E_CORRUPT_DATA;
    uint32_t u32;
    uint64_t u64;
    buf b = BUF_INIT;
    int rc = 0;
    switch (base) {
    case PT_I2:
        v->v.i = (int16_t)(uint16_t)get_le(d, 2);
        return S_OK;
    case PT_BOOLEAN:
        v->v.b = get_le(d, 2) != 0;
        return S_OK;
    case PT_LONG:
        v->v.l = (int32_t)(uint32_t)get_le(d, 4);
        return S_OK;
    case PT_ERROR:
        v->v.err = (mapi_err)get_le(d, 4);
        return S_OK;
    case PT_R4:
        u32 = (uint32_t)get_le(d, 4);
        memcpy(&v->v.flt, &u32, 4);
        return S_OK;
    case PT_DOUBLE:
    case PT_APPTIME:
        u64 = get_le(d, 8);
        memcpy(&v->v.dbl, &u64, 8);
        return S_OK;
    case PT_CURRENCY:
    case PT_I8:
        v->v.li = (int64_t)get_le(d, 8);
        return S_OK;
    case PT_SYSTIME:
        v->v.ft = get_le(d, 8);
        return S_OK;
    case PT_CLSID:
    case PT_BINARY:
        v->v.bin.cb = len;
        v->v.bin.lpb = NULL;
        if (len && !(v->v.bin.lpb = malloc(len)))
            return MAPI_E_NOT_ENOUGH_MEMORY;
        if (len)
            memcpy(v->v.bin.lpb, d, len);
        return S_OK;
    case PT_STRING8:
        /* Exactly one terminator, at the end. */
        if (!len || d[len - 1] || memchr(d, 0, len - 1))
            return MAPI_E_CORRUPT_DATA;
        {
            buf u16 = BUF_INIT;
            rc = base_cp1252_to_utf16(d, len - 1, &u16);
            if (!rc)
                rc = base_utf16_to_utf8(u16.data, u16.len / 2, &b);
            buf_free(&u16);
        }
        break;
    case PT_UNICODE:
        if (len < 2 || len % 2 || d[len - 2] || d[len - 1])
            return MAPI_E_CORRUPT_DATA;
        for (size_t i = 0; i + 2 < len; i += 2)
            if (!d[i] && !d[i + 1])
                return MAPI_E_CORRUPT_DATA;
        rc = base_utf16_to_utf8(d, len / 2 - 1, &b);
        break;
    default:
        return MAPI_E_INVALID_TYPE;
    }
    if (!rc && !(v->v.str = buf_detach(&b, NULL)))
        rc = ENOMEM;
    buf_free(&b);
    return rc ? MAPI_E_NOT_ENOUGH_MEMORY : S_OK;
}

/* decode_mv - a count, then the values; the count is checked against the bytes before any
 * allocation, so memory stays proportional to n. */
static mapi_err decode_mv(uint32_t tag, uint32_t base, const uint8_t *d, size_t n, mapi_prop *out)
{
    if (n < 4)
        return MAPI_E_CORRUPT_DATA;
    size_t count = (size_t)get_le(d, 4), rest = n - 4;
    const uint8_t *p = d + 4;
    int size = type_size(base);
    if (size > 0 ? (rest % (size_t)size || rest / (size_t)size != count) : count > rest / 4)
        return MAPI_E_CORRUPT_DATA;
    out->v.mv.n = 0;
    out->v.mv.v = NULL;
    if (count && !(out->v.mv.v = calloc(count, sizeof(mapi_prop))))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; i < count; i++) {
        size_t len = (size_t)size;
        if (size == 0) {
            if (rest < 4)
                return MAPI_E_CORRUPT_DATA;
            len = (size_t)get_le(p, 4);
            p += 4;
            rest -= 4;
        }
        if (len > rest)
            return MAPI_E_CORRUPT_DATA;
        mapi_prop *v = &out->v.mv.v[i];
        v->tag = PROP_TAG(base, PROP_ID(tag));
        mapi_err e = decode_value(base, p, len, v);
        if (e)
            return e;
        out->v.mv.n = i + 1;
        p += len;
        rest -= len;
    }
    return rest ? MAPI_E_CORRUPT_DATA : S_OK;
}

/* set_null - the empty state: PT_NULL under the same id. */
static void set_null(mapi_prop *p, uint32_t tag)
{
    memset(p, 0, sizeof *p);
    p->tag = PROP_TAG(PT_NULL, PROP_ID(tag));
}

mapi_err mapi_prop_decode(uint32_t tag, const uint8_t *data, size_t n, mapi_prop *out)
{
    static const uint8_t none[1];
    if (!out)
        return MAPI_E_INVALID_PARAMETER;
    set_null(out, tag);
    if (!data && n)
        return MAPI_E_INVALID_PARAMETER;
    if (!data)
        data = none;
    uint32_t base;
    bool mv;
    mapi_err e = split_type(tag, &base, &mv);
    if (e)
        return e;
    mapi_prop p;
    memset(&p, 0, sizeof p);
    p.tag = tag;
    e = mv ? decode_mv(tag, base, data, n, &p) : decode_value(base, data, n, &p);
    if (e) {
        mapi_prop_clear(&p);
        return e;
    }
    *out = p;
    return S_OK;
}

/* clear_value - free what one value of a base type owns. */
static void clear_value(uint32_t base, mapi_prop *v)
{
    switch (base) {
    case PT_STRING8:
    case PT_UNICODE:
        free(v->v.str);
        break;
    case PT_BINARY:
    case PT_CLSID:
        free(v->v.bin.lpb);
        break;
    default:
        break;
    }
}

void mapi_prop_clear(mapi_prop *p)
{
    if (!p)
        return;
    uint32_t t = PROP_TYPE(p->tag);
    if (t & MV_FLAG) {
        uint32_t base = t & ~MV_FLAG;
        for (size_t i = 0; p->v.mv.v && i < p->v.mv.n; i++)
            clear_value(base, &p->v.mv.v[i]);
        free(p->v.mv.v);
    } else {
        clear_value(t, p);
    }
    set_null(p, p->tag);
}

void mapi_props_free(mapi_prop *props, size_t n)
{
    for (size_t i = 0; props && i < n; i++)
        mapi_prop_clear(&props[i]);
    free(props);
}

/* copy_value - a deep copy of one value of a base type into a zeroed dst. */
static mapi_err copy_value(uint32_t base, const mapi_prop *src, mapi_prop *dst)
{
    dst->v = src->v;
    switch (base) {
    case PT_STRING8:
    case PT_UNICODE:
        if (src->v.str && !(dst->v.str = strdup(src->v.str))) {
            return MAPI_E_NOT_ENOUGH_MEMORY;
        }
        break;
    case PT_BINARY:
    case PT_CLSID:
        dst->v.bin.lpb = NULL;
        if (src->v.bin.cb && src->v.bin.lpb) {
            if (!(dst->v.bin.lpb = malloc(src->v.bin.cb)))
                return MAPI_E_NOT_ENOUGH_MEMORY;
            memcpy(dst->v.bin.lpb, src->v.bin.lpb, src->v.bin.cb);
        } else {
            dst->v.bin.cb = 0;
        }
        break;
    default:
        break;
    }
    return S_OK;
}

mapi_err mapi_prop_copy(const mapi_prop *src, mapi_prop *dst)
{
    if (!src || !dst)
        return MAPI_E_INVALID_PARAMETER;
    mapi_prop p;
    memset(&p, 0, sizeof p);
    p.tag = src->tag;
    uint32_t t = PROP_TYPE(src->tag);
    mapi_err e = S_OK;
    if (t & MV_FLAG) {
        size_t n = src->v.mv.v ? src->v.mv.n : 0;
        if (n && !(p.v.mv.v = calloc(n, sizeof(mapi_prop))))
            e = MAPI_E_NOT_ENOUGH_MEMORY;
        for (size_t i = 0; !e && i < n; i++) {
            p.v.mv.v[i].tag = src->v.mv.v[i].tag;
            e = copy_value(t & ~MV_FLAG, &src->v.mv.v[i], &p.v.mv.v[i]);
            p.v.mv.n = i + 1; /* a failed value holds nothing: copy_value nulls it */
        }
    } else {
        e = copy_value(t, src, &p);
        if (e)
            memset(&p.v, 0, sizeof p.v);
    }
    if (e) {
        mapi_prop_clear(&p);
        set_null(dst, src->tag);
        return e;
    }
    *dst = p;
    return S_OK;
}

/* --- time: FILETIME <-> ISO 8601 ---------------------------------------------------------- */

#define FT_PER_SECOND 10000000ull
#define SECONDS_PER_DAY 86400ull
#define DAYS_1601_TO_1970 134774 /* days from 1601-01-01 to 1970-01-01 */

/* civil_from_days / days_from_civil - proleptic Gregorian dates and days since 1970-01-01
 * (the well-known era-based method). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int format_systime(buf *out, uint64_t ft)
{
    uint64_t secs = ft / FT_PER_SECOND, frac = ft % FT_PER_SECOND;
    int64_t y;
    unsigned m, d, sod = (unsigned)(secs % SECONDS_PER_DAY);
    civil_from_days((int64_t)(secs / SECONDS_PER_DAY) - DAYS_1601_TO_1970, &y, &m, &d);
    int rc = buf_printf(out, "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u", y, m, d, sod / 3600,
                        sod / 60 % 60, sod % 60);
    if (!rc && frac)
        rc = buf_printf(out, ".%07u", (unsigned)frac);
    return rc ? rc : buf_addc(out, 'Z');
}

/* digits - n decimal digits at *s into *v, advancing *s. */
static bool digits(const char **s, int n, unsigned *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if ((*s)[i] < '0' || (*s)[i] > '9')
            return false;
        *v = *v * 10 + (unsigned)((*s)[i] - '0');
    }
    *s += n;
    return true;
}

/* parse_systime - "YYYY-MM-DDTHH:MM:SS[.f{1,7}][Z]" (UTC) to a FILETIME, 1601 onwards. */
static bool parse_systime(const char *s, uint64_t *ft)
{
    unsigned y = 0, mo, d, h, mi, sec, frac = 0;
    int yd = 0;
    while (s[yd] >= '0' && s[yd] <= '9')
        yd++;
    if (yd < 4 || yd > 5 || !digits(&s, yd, &y) || *s++ != '-' || !digits(&s, 2, &mo) ||
        *s++ != '-' || !digits(&s, 2, &d))
        return false;
    if ((*s++ | 0x20) != 't' || !digits(&s, 2, &h) || *s++ != ':' || !digits(&s, 2, &mi) ||
        *s++ != ':' || !digits(&s, 2, &sec))
        return false;
    if (*s == '.') {
        s++;
        int n = 0;
        for (; s[n] >= '0' && s[n] <= '9'; n++)
            if (n < 7)
                frac = frac * 10 + (unsigned)(s[n] - '0');
        if (n < 1 || n > 7)
            return false;
        for (int k = n; k < 7; k++)
            frac *= 10;
        s += n;
    }
    if (*s == 'Z' || *s == 'z')
        s++;
    static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (*s || y < 1601 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || sec > 59)
        return false;
    uint64_t days = (uint64_t)(days_from_civil(y, mo, d) + DAYS_1601_TO_1970);
    uint64_t secs = days * SECONDS_PER_DAY + h * 3600u + mi * 60u + sec;
    if (secs > (UINT64_MAX - frac) / FT_PER_SECOND)
        return false;
    *ft = secs * FT_PER_SECOND + frac;
    return true;
}

/* --- text for people -------------------------------------------------------------------------- */

/* is_uid_list - binary properties that hold concatenated 16-byte MAPIUIDs. */
static bool is_uid_list(uint32_t tag)
{
    return tag == PR_STORE_PROVIDERS || tag == PR_AB_PROVIDERS || tag == PR_TRANSPORT_PROVIDERS ||
           tag == PR_SERVICES || tag == PR_SERVICE_EXTRA_UIDS;
}

static size_t utf8_seq_len(unsigned char c)
{
    return c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
}

static int format_string(buf *out, const char *s)
{
    int rc = buf_addc(out, '"');
    size_t n = s ? strlen(s) : 0;
    for (size_t i = 0; !rc && i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t l = c >= 0x80 ? utf8_seq_len(c) : 1;
        if (c == '"' || c == '\\') {
            rc = buf_addc(out, '\\');
            if (!rc)
                rc = buf_addc(out, c);
        } else if (c < 0x20 || c == 0x7f ||
                   (c >= 0x80 && (!l || i + l > n || !base_utf8_valid(s + i, l)))) {
            rc = buf_printf(out, "\\x%02x", c);
            l = 1;
        } else {
            rc = buf_add(out, s + i, l);
        }
        i += l;
    }
    return rc ? rc : buf_addc(out, '"');
}

static int format_hex(buf *out, const uint8_t *p, size_t n, bool uid_groups)
{
    static const char digits_lc[] = "0123456789abcdef";
    int rc = buf_reserve(out, n * 2 + n / 16 + 1);
    for (size_t i = 0; !rc && i < n; i++) {
        if (uid_groups && i && i % 16 == 0)
            rc = buf_addc(out, ' ');
        if (!rc)
            rc = buf_addc(out, (uint8_t)digits_lc[p[i] >> 4]);
        if (!rc)
            rc = buf_addc(out, (uint8_t)digits_lc[p[i] & 15]);
    }
    return rc;
}

static int format_long(buf *out, uint32_t tag, int32_t l)
{
    const value_names *vn = names_for(tag);
    uint32_t u = (uint32_t)l;
    if (vn && vn->flags) {
        int rc = buf_printf(out, "0x%08" PRIx32, u);
        uint32_t left = u;
        const char *sep = " (";
        for (size_t i = 0; !rc && i < vn->n; i++) {
            if (!vn->v[i].shown || (u & vn->v[i].value) != vn->v[i].value)
                continue;
            rc = buf_printf(out, "%s%s", sep, vn->v[i].name);
            left &= ~vn->v[i].value;
            sep = "|";
        }
        if (!rc && left && left != u)
            rc = buf_printf(out, "|0x%08" PRIx32, left);
        if (!rc && left != u)
            rc = buf_addc(out, ')');
        return rc;
    }
    for (size_t i = 0; vn && i < vn->n; i++)
        if (vn->v[i].value == u)
            return buf_printf(out, "%" PRId32 " (%s)", l, vn->v[i].name);
    return buf_printf(out, "%" PRId32 " (0x%08" PRIx32 ")", l, u);
}

static int format_clsid(buf *out, const uint8_t *g)
{
    return buf_printf(out, "{%08" PRIX32 "-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X}",
                      (uint32_t)get_le(g, 4), (unsigned)get_le(g + 4, 2),
                      (unsigned)get_le(g + 6, 2), g[8], g[9], g[10], g[11], g[12], g[13], g[14],
                      g[15]);
}

static int format_value(buf *out, uint32_t base, uint32_t tag, const mapi_prop *p)
{
    const char *name;
    switch (base) {
    case PT_I2:
        return buf_printf(out, "%d", p->v.i);
    case PT_LONG:
        return format_long(out, tag, p->v.l);
    case PT_R4:
        return buf_printf(out, "%.9g", (double)p->v.flt);
    case PT_DOUBLE:
    case PT_APPTIME:
        return buf_printf(out, "%.17g", p->v.dbl);
    case PT_CURRENCY:
    case PT_I8:
        return buf_printf(out, "%" PRId64, p->v.li);
    case PT_ERROR:
        name = err_lookup(p->v.err);
        return name ? buf_adds(out, name) : buf_printf(out, "0x%08" PRIx32, p->v.err);
    case PT_BOOLEAN:
        return buf_adds(out, p->v.b ? "TRUE" : "FALSE");
    case PT_STRING8:
    case PT_UNICODE:
        return format_string(out, p->v.str);
    case PT_SYSTIME:
        return format_systime(out, p->v.ft);
    case PT_CLSID:
        if (p->v.bin.cb == 16 && p->v.bin.lpb)
            return format_clsid(out, p->v.bin.lpb);
        return format_hex(out, p->v.bin.lpb, p->v.bin.lpb ? p->v.bin.cb : 0, false);
    case PT_BINARY:
        return format_hex(out, p->v.bin.lpb, p->v.bin.lpb ? p->v.bin.cb : 0, is_uid_list(tag));
    default:
        return EINVAL;
    }
}

mapi_err mapi_prop_format(const mapi_prop *p, buf *out)
{
    if (!p || !out)
        return MAPI_E_INVALID_PARAMETER;
    uint32_t base;
    bool mv;
    mapi_err e = split_type(p->tag, &base, &mv);
    if (e)
        return e;
    size_t start = out->len;
    int rc;
    if (!mv) {
        rc = format_value(out, base, p->tag, p);
    } else {
        uint32_t etag = PROP_TAG(base, PROP_ID(p->tag));
        size_t n = p->v.mv.v ? p->v.mv.n : 0;
        rc = buf_addc(out, '[');
        for (size_t i = 0; !rc && i < n; i++) {
            if (i)
                rc = buf_adds(out, ", ");
            if (!rc)
                rc = format_value(out, base, etag, &p->v.mv.v[i]);
        }
        if (!rc)
            rc = buf_addc(out, ']');
    }
    if (rc) {
        out->len = start;
        return MAPI_E_NOT_ENOUGH_MEMORY;
    }
    return S_OK;
}

/* --- text from MAPISVC.INF ----------------------------------------------------------------- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* trimmed - s[0..n) without leading and trailing white space, as a new string. */
static char *trimmed(const char *s, size_t n)
{
    while (n && is_space(*s))
        s++, n--;
    while (n && is_space(s[n - 1]))
        n--;
    return strndup(s, n);
}

/* parse_integer - decimal (optionally negative) or 0x hex; octal is not a thing here. */
static bool parse_integer(const char *s, int64_t min, uint64_t max, int64_t *out)
{
    bool neg = *s == '-';
    if (neg)
        s++;
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (base == 16 ? hex_digit((unsigned char)*s) < 0 : !(*s >= '0' && *s <= '9'))
        return false;
    errno = 0;
    char *end;
    unsigned long long u = strtoull(s, &end, base);
    if (errno || *end)
        return false;
    if (neg) {
        if (u > (uint64_t) - (min + 1) + 1)
            return false;
        *out = u ? -(int64_t)(u - 1) - 1 : 0;
    } else {
        if (u > max)
            return false;
        *out = (int64_t)u;
    }
    return true;
}

/* parse_long - a number, or known names and numbers joined by '|'. */
static mapi_err parse_long(uint32_t tag, const char *s, int32_t *out)
{
    const value_names *vn = names_for(tag);
    uint32_t v = 0;
    const char *p = s;
    for (;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        char *tok = trimmed(p, len);
        if (!tok)
            return MAPI_E_NOT_ENOUGH_MEMORY;
        int64_t n;
        bool ok = false;
        if (parse_integer(tok, INT32_MIN, UINT32_MAX, &n)) {
            v |= (uint32_t)n;
            ok = true;
        }
        for (size_t i = 0; !ok && vn && i < vn->n; i++)
            if (!strcasecmp(tok, vn->v[i].name)) {
                v |= vn->v[i].value;
                ok = true;
            }
        free(tok);
        if (!ok)
            return MAPI_E_BAD_VALUE;
        if (!bar)
            break;
        p = bar + 1;
    }
    *out = (int32_t)v;
    return S_OK;
}

/* parse_hex - hex digit pairs, white space allowed between pairs. */
static mapi_err parse_hex(const char *s, mapi_prop *v)
{
    size_t n = strlen(s);
    uint8_t *b = malloc(n / 2 + 1);
    if (!b)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    size_t cb = 0;
    for (size_t i = 0; i < n;) {
        if (is_space(s[i])) {
            i++;
            continue;
        }
        if (i + 1 >= n || !hex_bytes(s + i, b + cb, 1)) {
            free(b);
            return MAPI_E_BAD_VALUE;
        }
        cb++;
        i += 2;
    }
    if (!cb) {
        free(b);
        b = NULL;
    }
    v->v.bin.cb = cb;
    v->v.bin.lpb = b;
    return S_OK;
}

/* parse_clsid - "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}" or 32 hex digits in byte order. */
static mapi_err parse_clsid(const char *s, mapi_prop *v)
{
    uint8_t g[16];
    size_t n = strlen(s);
    if (n == 32) {
        if (!hex_bytes(s, g, 16))
            return MAPI_E_BAD_VALUE;
    } else if (n == 38 && s[0] == '{' && s[37] == '}' && s[9] == '-' && s[14] == '-' &&
               s[19] == '-' && s[24] == '-') {
        uint8_t t[16];
        char h[33];
        memcpy(h, s + 1, 8);
        memcpy(h + 8, s + 10, 4);
        memcpy(h + 12, s + 15, 4);
        memcpy(h + 16, s + 20, 4);
        memcpy(h + 20, s + 25, 12);
        h[32] = 0;
        if (!hex_bytes(h, t, 16))
            return MAPI_E_BAD_VALUE;
        /* Data1, Data2 and Data3 are little-endian in memory. */
        static const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
        for (int i = 0; i < 16; i++)
            g[i] = t[order[i]];
    } else {
        return MAPI_E_BAD_VALUE;
    }
    if (!(v->v.bin.lpb = malloc(16)))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    memcpy(v->v.bin.lpb, g, 16);
    v->v.bin.cb = 16;
    return S_OK;
}

static mapi_err parse_error(const char *s, mapi_err *out)
{
    for (size_t i = 0; i < ARRAY_LEN(err_names); i++)
        if (!strcasecmp(s, err_names[i].name)) {
            *out = err_names[i].e;
            return S_OK;
        }
    int64_t n;
    if (!parse_integer(s, INT32_MIN, UINT32_MAX, &n))
        return MAPI_E_BAD_VALUE;
    *out = (mapi_err)(uint32_t)n;
    return S_OK;
}

static mapi_err parse_double(const char *s, double *out)
{
    if (!*s || is_space(*s))
        return MAPI_E_BAD_VALUE;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end || errno == ERANGE)
        return MAPI_E_BAD_VALUE;
    *out = d;
    return S_OK;
}

/* parse_value - one value of a base type; numbers and names are trimmed, strings are not. */
static mapi_err parse_value(uint32_t base, uint32_t tag, const char *text, mapi_prop *v)
{
    if (base == PT_STRING8 || base == PT_UNICODE) {
        size_t n = strlen(text);
        if (!base_utf8_valid(text, n))
            return MAPI_E_BAD_VALUE;
        if (base == PT_STRING8) {
            buf scratch = BUF_INIT; /* refuse now what encoding would refuse later */
            mapi_err e = encode_string8(text, &scratch);
            buf_free(&scratch);
            if (e)
                return e;
        }
        return (v->v.str = strdup(text)) ? S_OK : MAPI_E_NOT_ENOUGH_MEMORY;
    }
    char *s = trimmed(text, strlen(text));
    if (!s)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    mapi_err e = S_OK;
    int64_t n;
    double d;
    switch (base) {
    case PT_I2:
        if (!parse_integer(s, INT16_MIN, UINT16_MAX, &n))
            e = MAPI_E_BAD_VALUE;
        else
            v->v.i = (int16_t)(uint16_t)n;
        break;
    case PT_LONG:
        e = parse_long(tag, s, &v->v.l);
        break;
    case PT_ERROR:
        e = parse_error(s, &v->v.err);
        break;
    case PT_BOOLEAN:
        if (!strcasecmp(s, "TRUE") || !strcmp(s, "1"))
            v->v.b = true;
        else if (!strcasecmp(s, "FALSE") || !strcmp(s, "0"))
            v->v.b = false;
        else
            e = MAPI_E_BAD_VALUE;
        break;
    case PT_R4:
        if (!(e = parse_double(s, &d)))
            v->v.flt = (float)d;
        break;
    case PT_DOUBLE:
    case PT_APPTIME:
        e = parse_double(s, &v->v.dbl);
        break;
    case PT_CURRENCY:
    case PT_I8:
        if (!parse_integer(s, INT64_MIN, UINT64_MAX, &n))
            e = MAPI_E_BAD_VALUE;
        else
            v->v.li = n;
        break;
    case PT_SYSTIME:
        if (parse_systime(s, &v->v.ft))
            break;
        if (!parse_integer(s, 0, UINT64_MAX, &n))
            e = MAPI_E_BAD_VALUE;
        else
            v->v.ft = (uint64_t)n;
        break;
    case PT_CLSID:
        e = parse_clsid(s, v);
        break;
    case PT_BINARY:
        e = parse_hex(s, v);
        break;
    default:
        e = MAPI_E_INVALID_TYPE;
        break;
    }
    free(s);
    return e;
}

/* parse_mv - comma-separated values, each trimmed; empty items are skipped. */
static mapi_err parse_mv(uint32_t base, uint32_t tag, const char *text, mapi_prop *out)
{
    size_t max = 1;
    for (const char *c = text; *c; c++)
        max += *c == ',';
    out->v.mv.n = 0;
    if (!(out->v.mv.v = calloc(max, sizeof(mapi_prop))))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    uint32_t etag = PROP_TAG(base, PROP_ID(tag));
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        char *item = trimmed(p, comma ? (size_t)(comma - p) : strlen(p));
        if (!item)
            return MAPI_E_NOT_ENOUGH_MEMORY;
        mapi_err e = S_OK;
        if (*item) {
            mapi_prop *v = &out->v.mv.v[out->v.mv.n];
            v->tag = etag;
            e = parse_value(base, etag, item, v);
            if (!e)
                out->v.mv.n++;
        }
        free(item);
        if (e)
            return e;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (!out->v.mv.n) {
        free(out->v.mv.v);
        out->v.mv.v = NULL;
    }
    return S_OK;
}

mapi_err mapi_prop_parse_text(uint32_t tag, const char *text, mapi_prop *out)
{
    if (!out)
        return MAPI_E_INVALID_PARAMETER;
    set_null(out, tag);
    if (!text)
        return MAPI_E_INVALID_PARAMETER;
    uint32_t base;
    bool mv;
    mapi_err e = split_type(tag, &base, &mv);
    if (e)
        return e;
    mapi_prop p;
    memset(&p, 0, sizeof p);
    p.tag = tag;
    e = mv ? parse_mv(base, tag, text, &p) : parse_value(base, tag, text, &p);
    if (e) {
        mapi_prop_clear(&p);
        return e;
    }
    *out = p;
    return S_OK;
}
