/* reg.h - the contract of lib/reg: a Windows-compatible registry on LMDB.
 *
 * Root keys HKLM, HKU, HKCU, HKCR and HKCC; hives stored one LMDB environment each under
 * $IMS_ROOT/registry; typed values; case-insensitive, case-preserving names; volatile and
 * owner-bound keys; change notification; .reg import and export; regf hive files.
 *
 * Every function returns a Win32 error number (ERROR_SUCCESS = 0) and never exits or
 * prints. Names passed in and out are NUL-terminated UTF-8 (WTF-8 for lone surrogates);
 * value data is raw bytes exactly as Windows stores it (strings UTF-16LE with terminator).
 *
 * Threads: a reg_ctx and everything opened from it belong to one thread at a time. Any
 * number of processes may use the same hives at once. */
#ifndef IMS_REG_H
#define IMS_REG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/base.h"

/* Win32 error numbers (winerror.h). */
#define ERROR_SUCCESS 0
#define ERROR_FILE_NOT_FOUND 2
#define ERROR_PATH_NOT_FOUND 3
#define ERROR_ACCESS_DENIED 5
#define ERROR_INVALID_HANDLE 6
#define ERROR_NOT_ENOUGH_MEMORY 8
#define ERROR_INVALID_DATA 13
#define ERROR_NOT_SAME_DEVICE 17
#define ERROR_WRITE_FAULT 29
#define ERROR_READ_FAULT 30
#define ERROR_INVALID_PARAMETER 87
#define ERROR_INSUFFICIENT_BUFFER 122
#define ERROR_BAD_PATHNAME 161
#define ERROR_ALREADY_EXISTS 183
#define ERROR_FILENAME_EXCED_RANGE 206
#define ERROR_MORE_DATA 234
#define ERROR_NO_MORE_ITEMS 259
#define ERROR_NOACCESS 998
#define ERROR_BADDB 1009
#define ERROR_BADKEY 1010
#define ERROR_CANTOPEN 1011
#define ERROR_CANTREAD 1012
#define ERROR_CANTWRITE 1013
#define ERROR_REGISTRY_CORRUPT 1015
#define ERROR_REGISTRY_IO_FAILED 1016
#define ERROR_NOT_REGISTRY_FILE 1017
#define ERROR_KEY_DELETED 1018
#define ERROR_KEY_HAS_CHILDREN 1020
#define ERROR_CHILD_MUST_BE_VOLATILE 1021
#define ERROR_PRIVILEGE_NOT_HELD 1314
#define ERROR_DISK_FULL 112

/* Value types (winnt.h). Any other 32-bit number is kept as opaque bytes. */
#define REG_NONE 0
#define REG_SZ 1
#define REG_EXPAND_SZ 2
#define REG_BINARY 3
#define REG_DWORD 4
#define REG_DWORD_BIG_ENDIAN 5
#define REG_LINK 6
#define REG_MULTI_SZ 7
#define REG_RESOURCE_LIST 8
#define REG_FULL_RESOURCE_DESCRIPTOR 9
#define REG_RESOURCE_REQUIREMENTS_LIST 10
#define REG_QWORD 11

/* Key options (REG_OPTION_*) and our extension. */
#define REG_OPTION_NON_VOLATILE 0x0
#define REG_OPTION_VOLATILE 0x1
/* REG_OPTION_OWNER_BOUND - with a reg_owner: the key (volatile) exists only while the owner
 * lives; it disappears for every reader the moment the owning process dies. */
#define REG_OPTION_OWNER_BOUND 0x10000

/* Create dispositions. */
#define REG_CREATED_NEW_KEY 1
#define REG_OPENED_EXISTING_KEY 2

/* Access wanted when opening a key. Write access to a hive is checked when it is opened. */
#define REG_READ 0x1
#define REG_WRITE 0x2
/* Registry views (KEY_WOW64_64KEY, KEY_WOW64_32KEY), or-ed into access. The 32-bit view of
 * HKLM\Software is HKLM\Software\Wow6432Node, and of Software\Classes' CLSID, DirectShow,
 * Interface, Media Type and MediaFoundation (HKLM's, HKCU's, HKCR's) their Classes\Wow6432Node
 * copies; all else is shared, and a path naming Wow6432Node itself is never redirected again
 * (docs/registry.md). With neither flag a key is opened in the view of the key it is opened
 * from; a root is in the 64-bit view. Both at once: ERROR_INVALID_PARAMETER. */
#define REG_WOW64_64KEY 0x0100
#define REG_WOW64_32KEY 0x0200

/* Notification filters (RegNotifyChangeKeyValue). */
#define REG_NOTIFY_CHANGE_NAME 0x1
#define REG_NOTIFY_CHANGE_ATTRIBUTES 0x2
#define REG_NOTIFY_CHANGE_LAST_SET 0x4
#define REG_NOTIFY_CHANGE_SECURITY 0x8

/* Limits (Microsoft's registry element size limits). */
#define REG_MAX_KEY_NAME 255        /* characters in one key name component */
#define REG_MAX_DEPTH 512           /* key levels below a hive root */
#define REG_MAX_VALUE_NAME 16383    /* characters in a value name */
#define REG_MAX_DATA (64u << 20)    /* bytes of one value's data */
#define REG_MAX_IMPORT (256u << 20) /* bytes of one .reg file */

typedef enum reg_root {
    REG_ROOT_HKCR, /* HKEY_CLASSES_ROOT: HKCU\Software\Classes over HKLM\Software\Classes */
    REG_ROOT_HKCU, /* HKEY_CURRENT_USER: HKU\<SID of the context's user> */
    REG_ROOT_HKLM, /* HKEY_LOCAL_MACHINE */
    REG_ROOT_HKU,  /* HKEY_USERS: one hive per SID or loaded hive */
    REG_ROOT_HKCC, /* HKEY_CURRENT_CONFIG: HKLM\System\CurrentControlSet\Hardware Profiles\Current
                    */
} reg_root;

typedef struct reg_ctx reg_ctx;       /* a process's view of the registry */
typedef struct reg_key reg_key;       /* an open key */
typedef struct reg_owner reg_owner;   /* a liveness token that owner-bound keys follow */
typedef struct reg_notify reg_notify; /* a change-notification registration */

/* --- context ------------------------------------------------------------------------- */

/* reg_ctx_open - a context on the registry under root (NULL: base_state_root()), with the
 * effective user as the user of HKCU. *out is freed with reg_ctx_close. */
int reg_ctx_open(const char *root, reg_ctx **out);
/* reg_ctx_set_user - make HKCU the hive of uid (root only, or the caller's own uid). */
int reg_ctx_set_user(reg_ctx *ctx, uid_t uid);
/* reg_ctx_user_sid - the SID of HKCU's user, "S-1-22-1-<uid>"; valid while ctx is open. */
const char *reg_ctx_user_sid(const reg_ctx *ctx);
/* reg_ctx_root_dir - the state root of ctx; valid while ctx is open. */
const char *reg_ctx_root_dir(const reg_ctx *ctx);
/* reg_ctx_damaged - the data file (".../data.mdb") of the last hive that ctx refused to open
 * because it is damaged (ERROR_BADDB: cut short, not an LMDB file, another LMDB version), or
 * NULL when none was; valid while ctx is open, until the next open of a hive. */
const char *reg_ctx_damaged(const reg_ctx *ctx);
/* reg_ctx_close - close every hive; keys and owners opened from ctx must be closed first. */
void reg_ctx_close(reg_ctx *ctx);

/* reg_uid_sid - write the SID of a Unix uid ("S-1-22-1-<uid>", as Samba maps Unix users). */
void reg_uid_sid(uid_t uid, char out[32]);

/* --- roots and paths ----------------------------------------------------------------- */

/* reg_root_parse - match a root name (long or short form, any case) of n bytes. Returns
 * ERROR_SUCCESS or ERROR_BADKEY. */
int reg_root_parse(const char *name, size_t n, reg_root *out);
/* reg_root_name - the long name ("HKEY_LOCAL_MACHINE"). reg_root_short - "HKLM". */
const char *reg_root_name(reg_root root);
const char *reg_root_short(reg_root root);
/* reg_path_split - split "ROOT[\sub\path]" into the root and a pointer into path at the
 * subpath ("" when none). Returns ERROR_SUCCESS or ERROR_BADKEY. */
int reg_path_split(const char *path, reg_root *root, const char **sub);

/* --- keys ---------------------------------------------------------------------------- */

/* reg_key_open_root - a handle to a root key. Free with reg_key_close. */
int reg_key_open_root(reg_ctx *ctx, reg_root root, reg_key **out);
/* reg_key_open - open parent\subkey (subkey NULL or "" opens parent again, in the view access
 * names; trailing backslashes are ignored; a leading one gives ERROR_BAD_PATHNAME). access:
 * REG_READ, REG_WRITE and at most one of REG_WOW64_32KEY, REG_WOW64_64KEY (neither: parent's
 * view); *out keeps the view for the keys opened and created from it. Returns
 * ERROR_FILE_NOT_FOUND when missing, ERROR_KEY_DELETED when parent was deleted,
 * ERROR_ACCESS_DENIED when access cannot be granted, ERROR_INVALID_PARAMETER for both view
 * flags. */
int reg_key_open(reg_key *parent, const char *subkey, unsigned access, reg_key **out);
/* reg_key_open_path - open "ROOT\sub\path" from ctx (access as reg_key_open's). */
int reg_key_open_path(reg_ctx *ctx, const char *path, unsigned access, reg_key **out);
/* reg_key_create - open or create parent\subkey and its missing parents, in one
 * transaction, in parent's view. options: REG_OPTION_VOLATILE, REG_OPTION_OWNER_BOUND (with
 * owner; implies volatile). *disposition (may be NULL) gets REG_CREATED_NEW_KEY or
 * REG_OPENED_EXISTING_KEY. A non-volatile key under a volatile one:
 * ERROR_CHILD_MUST_BE_VOLATILE. out may be NULL. */
int reg_key_create(reg_key *parent, const char *subkey, unsigned options, reg_owner *owner,
                   reg_key **out, unsigned *disposition);
/* reg_key_create_ex - reg_key_create with access (RegCreateKeyEx's samDesired): only the view
 * flags REG_WOW64_32KEY and REG_WOW64_64KEY matter, both at once is ERROR_INVALID_PARAMETER;
 * *out keeps the view. */
int reg_key_create_ex(reg_key *parent, const char *subkey, unsigned options, unsigned access,
                      reg_owner *owner, reg_key **out, unsigned *disposition);
/* reg_key_close - release a handle (NULL is allowed). */
void reg_key_close(reg_key *key);

typedef struct reg_key_info {
    uint32_t subkeys;            /* number of subkeys */
    uint32_t values;             /* number of values */
    uint32_t max_subkey_len;     /* longest subkey name, UTF-16 units */
    uint32_t max_value_name_len; /* longest value name, UTF-16 units */
    uint32_t max_value_len;      /* largest value data, bytes */
    uint64_t last_write;         /* FILETIME of the last change to the key */
    bool is_volatile;            /* created with REG_OPTION_VOLATILE */
    bool is_owner_bound;         /* bound to a live owner */
} reg_key_info;
/* reg_key_query_info - counts, lengths and times of key (RegQueryInfoKey). */
int reg_key_query_info(reg_key *key, reg_key_info *info);

/* Enumeration callbacks: return 0 to go on, anything else to stop; that value is returned
 * by the enumeration. Pointers passed to the callback are valid only during the call. */
typedef int (*reg_subkey_fn)(void *arg, const char *name);
typedef int (*reg_value_fn)(void *arg, const char *name, uint32_t type, const uint8_t *data,
                            size_t len);
/* reg_key_enum_subkeys - subkeys sorted case-insensitively (upper-case folding, as Windows). */
int reg_key_enum_subkeys(reg_key *key, reg_subkey_fn fn, void *arg);
/* reg_key_enum_values - values in creation order (name "" is the default value). */
int reg_key_enum_values(reg_key *key, reg_value_fn fn, void *arg);
/* reg_key_enum_subkey - the index-th subkey's name into name (replacing its contents), as
 * RegEnumKeyEx does; ERROR_NO_MORE_ITEMS past the end. O(index): prefer the callbacks. */
int reg_key_enum_subkey(reg_key *key, uint32_t index, buf *name);

/* reg_key_delete - delete parent\subkey (subkey "" deletes parent itself), found in parent's
 * view. ERROR_ACCESS_DENIED while it has subkeys or when it is a root. */
int reg_key_delete(reg_key *parent, const char *subkey);
/* reg_key_delete_ex - RegDeleteKeyEx: reg_key_delete with subkey found in the view access
 * names (REG_WOW64_32KEY or REG_WOW64_64KEY; neither: parent's view; both:
 * ERROR_INVALID_PARAMETER). */
int reg_key_delete_ex(reg_key *parent, const char *subkey, unsigned access);
/* reg_key_delete_tree - RegDeleteTree: with a subkey, delete it and everything below; with
 * NULL or "", delete every subkey and value of parent but keep parent. Subkeys are found in
 * parent's view. */
int reg_key_delete_tree(reg_key *parent, const char *subkey);
/* reg_key_copy_tree - copy the values and, recursively, the subkeys of src into dst,
 * overwriting values of the same name and keeping what only dst has. recursive false copies
 * only src's values. Key classes are not copied. */
int reg_key_copy_tree(reg_key *src, reg_key *dst, bool recursive);
/* reg_key_rename - rename parent\subkey to newname (one component). ERROR_ACCESS_DENIED when
 * a sibling has that name, ERROR_INVALID_PARAMETER for a bad name. */
int reg_key_rename(reg_key *parent, const char *subkey, const char *newname);
/* reg_key_move - move parent\subkey with its subtree under new_parent (same hive) as
 * newname, in one transaction; handles to the key stay valid. ERROR_NOT_SAME_DEVICE across
 * hives, ERROR_ACCESS_DENIED when new_parent has a key of that name, ERROR_INVALID_PARAMETER
 * for a move into its own subtree, ERROR_CHILD_MUST_BE_VOLATILE for a stable key moved under
 * a volatile one. */
int reg_key_move(reg_key *parent, const char *subkey, reg_key *new_parent, const char *newname);
/* reg_key_root - the root the key was opened under. */
reg_root reg_key_root(const reg_key *key);

/* --- values -------------------------------------------------------------------------- */

/* reg_value_get - the type and data of name (NULL or "" is the default value); data gets the
 * bytes appended after being emptied; either out pointer may be NULL. */
int reg_value_get(reg_key *key, const char *name, uint32_t *type, buf *data);
/* reg_value_set - create or replace a value; a replaced value keeps its place in the order. */
int reg_value_set(reg_key *key, const char *name, uint32_t type, const void *data, size_t len);
/* reg_value_delete - ERROR_FILE_NOT_FOUND when there is no such value. */
int reg_value_delete(reg_key *key, const char *name);

/* UTF-8 helpers for C callers. */
/* reg_value_set_sz - store s as REG_SZ (or REG_EXPAND_SZ with type) in UTF-16LE + NUL. */
int reg_value_set_sz(reg_key *key, const char *name, uint32_t type, const char *s);
/* reg_value_get_sz - a REG_SZ/REG_EXPAND_SZ as UTF-8 up to its first NUL (appended to out
 * after emptying it). ERROR_INVALID_DATA for other types. */
int reg_value_get_sz(reg_key *key, const char *name, buf *out);
/* reg_value_set_dword / get_dword - a REG_DWORD; get gives ERROR_INVALID_DATA for another
 * type or size. */
int reg_value_set_dword(reg_key *key, const char *name, uint32_t v);
int reg_value_get_dword(reg_key *key, const char *name, uint32_t *v);
/* reg_value_set_multi_sz - a REG_MULTI_SZ from n UTF-8 strings. */
int reg_value_set_multi_sz(reg_key *key, const char *name, const char *const *strs, size_t n);

/* --- transactions -------------------------------------------------------------------- */

/* reg_txn_begin - start a write transaction on key's hive: every change made through keys
 * of that hive joins it until reg_txn_commit or reg_txn_abort, so a group of changes is
 * seen all at once or not at all. One per hive at a time; other writers wait. */
int reg_txn_begin(reg_key *key);
/* reg_txn_commit - make the changes durable and visible. reg_txn_abort - drop them. */
int reg_txn_commit(reg_key *key);
void reg_txn_abort(reg_key *key);

/* --- owner-bound keys ---------------------------------------------------------------- */

/* reg_owner_new - a new owner in key's hive: a lock this process holds until
 * reg_owner_release or its death. Free with reg_owner_release. */
int reg_owner_new(reg_key *key, reg_owner **out);
/* reg_owner_release - drop owner's lock; the keys bound to it go (for a shared owner: once
 * no process holds it any more). */
void reg_owner_release(reg_owner *owner);

#define REG_TOKEN_SIZE 16 /* bytes of a shared owner's token */

/* reg_owner_join - hold the shared owner named by token (REG_TOKEN_SIZE bytes, chosen by the
 * caller, e.g. a profile's unique id) in key's hive. Any number of processes of the hive's
 * user may hold it at once; keys bound to it with reg_key_bind live while any holder does,
 * SIGKILL included. Free with reg_owner_release. */
int reg_owner_join(reg_key *key, const uint8_t token[REG_TOKEN_SIZE], reg_owner **out);
/* reg_owner_held - *held is true while some process holds the shared owner token. */
int reg_owner_held(reg_key *key, const uint8_t token[REG_TOKEN_SIZE], bool *held);
/* reg_key_bind - bind an existing key and its subtree to the shared owner token: from now on
 * they exist only while some process holds it, and vanish for every reader the moment the
 * last holder is gone (at once when none holds it now). Handles opened before the bind may
 * go on reading values until they are reopened. ERROR_ACCESS_DENIED for a root,
 * ERROR_ALREADY_EXISTS when the key is already bound to another owner. */
int reg_key_bind(reg_key *key, const uint8_t token[REG_TOKEN_SIZE]);

/* --- change notification ------------------------------------------------------------- */

/* reg_notify_new - watch key (and its subtree when subtree is true) for the changes in
 * filter. The registration is armed at once and fires once (RegNotifyChangeKeyValue). */
int reg_notify_new(reg_key *key, bool subtree, unsigned filter, reg_notify **out);
/* reg_notify_fd - a descriptor that becomes readable when the hive changed; poll it from an
 * event loop, then call reg_notify_check. */
int reg_notify_fd(const reg_notify *n);
/* reg_notify_check - *fired is true when a change matching the registration happened since
 * it was armed (or re-armed); checking re-arms it. Drains the descriptor. */
int reg_notify_check(reg_notify *n, bool *fired);
/* reg_notify_free - drop the registration. */
void reg_notify_free(reg_notify *n);

/* --- .reg files ---------------------------------------------------------------------- */

/* reg_diag_fn - told of each line an import skipped (1-based line, what was wrong). */
typedef void (*reg_diag_fn)(void *arg, unsigned line, const char *msg);

#define REG_IMPORT_LONG_ROOTS 0x1 /* regedit: accept only HKEY_* root names */
/* REG_WOW64_32KEY or REG_WOW64_64KEY in reg_import's flags: the view the file's keys are
 * written in (reg import /reg:32 puts HKLM\Software\X into HKLM\Software\Wow6432Node\X);
 * both: ERROR_INVALID_PARAMETER. */

/* reg_import - import a .reg file's bytes (REGEDIT4 in CP1252, or "Windows Registry Editor
 * Version 5.00" in UTF-16LE with BOM or 8-bit). Lines with errors are reported to diag and
 * skipped, as Windows does. All changes to one hive are one transaction: a storage failure
 * leaves that hive as it was. Returns ERROR_SUCCESS, ERROR_INVALID_DATA for a missing or
 * invalid header, or a storage error. A "fuzzy" REGEDIT header imports nothing and
 * succeeds. */
int reg_import(reg_ctx *ctx, const uint8_t *data, size_t len, unsigned flags, reg_diag_fn diag,
               void *arg);

#define REG_EXPORT_REGEDIT4 0x1 /* REGEDIT4 in CP1252 instead of version 5 in UTF-16LE */

/* reg_export - append to out the .reg file regedit writes for key and its subtree (in key's
 * view); path is the full name to print for key ("HKEY_CURRENT_USER\Software\Test"). */
int reg_export(reg_key *key, const char *path, unsigned flags, buf *out);

/* --- regf hive files (through libhivex) ---------------------------------------------- */

/* reg_hive_save - write key and its subtree (in key's view) to a Windows hive file
 * (RegSaveKey). */
int reg_hive_save(reg_key *key, const char *file);
/* reg_hive_restore - replace key's values and subkeys by a hive file's (RegRestoreKey). */
int reg_hive_restore(reg_key *key, const char *file);
/* reg_hive_load - make a hive file readable and writable as HKU\name (RegLoadKey); root must
 * be REG_ROOT_HKU (HKLM is one hive here: ERROR_INVALID_PARAMETER). ERROR_ALREADY_EXISTS
 * when name is taken, ERROR_PRIVILEGE_NOT_HELD when the caller may not load hives (only root
 * or the owner of the state root may). */
int reg_hive_load(reg_ctx *ctx, reg_root root, const char *name, const char *file);
/* reg_hive_unload - write a loaded hive back to its file and remove it (RegUnLoadKey). */
int reg_hive_unload(reg_ctx *ctx, reg_root root, const char *name);

/* --- errors -------------------------------------------------------------------------- */

/* reg_strerror - the Windows message text for a Win32 error number ("The system cannot find
 * the file specified."). Never NULL. */
const char *reg_strerror(int err);
/* reg_errno_to_win32 - the Win32 error for an errno value. */
int reg_errno_to_win32(int e);

#endif
