/* mapiprofile.h - private interface between the files of the mapiprofile command: the command
 * table, argument parsing, the MAPI context, messages and exit codes. */
#ifndef IMS_MAPIPROFILE_H
#define IMS_MAPIPROFILE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "mapi/mapi.h"

/* Exit codes. An interrupted create exits with 128 + the signal's number (130 for SIGINT). */
#define MP_EXIT_OK 0
#define MP_EXIT_FAIL 1
#define MP_EXIT_USAGE 2
#define MP_EXIT_SIGNAL_BASE 128

/* logon --hold: the longest hold, in seconds. */
#define MP_HOLD_MAX 3600

/* --- arguments (main.c) ----------------------------------------------------------------- */

/* An option a command takes: "--name" or "--name VALUE" / "--name=VALUE". */
typedef struct mp_option {
    const char *name; /* without the leading "--" */
    bool value;       /* takes a value */
    bool repeatable;  /* may be given more than once */
} mp_option;

/* One parsed argument, in command-line order (create's --display and --set belong to the
 * --service before them, so order matters). */
typedef struct mp_item {
    int opt;           /* index into the command's option table, or MP_POSITIONAL */
    const char *value; /* the option's value or the positional argument */
} mp_item;
#define MP_POSITIONAL (-1)

typedef struct mp_args {
    const struct mp_command *cmd;
    mp_item *items; /* every argument after the command word, in order */
    size_t n;
    const char *pos[2]; /* the positional arguments, in order */
    size_t npos;
} mp_args;

/* mp_has - whether option index opt was given; mp_value - its (last) value or NULL. */
bool mp_has(const mp_args *a, int opt);
const char *mp_value(const mp_args *a, int opt);

/* --- the MAPI context (main.c) ------------------------------------------------------------ */

typedef struct mp_ctx {
    reg_ctx *reg;
    mapi_ctx *mapi;
} mp_ctx;

typedef struct mp_command {
    const char *name;
    const char *synopsis; /* the usage line(s) after "mapiprofile " */
    const char *help;     /* what --help prints after the synopsis */
    const mp_option *options;
    size_t noptions;
    size_t min_pos, max_pos; /* positional arguments it takes */
    int (*run)(mp_ctx *ctx, const mp_args *a);
} mp_command;

/* The commands (one file each, or a few per file). */
int mp_cmd_list(mp_ctx *ctx, const mp_args *a);
int mp_cmd_create(mp_ctx *ctx, const mp_args *a);
int mp_cmd_delete(mp_ctx *ctx, const mp_args *a);
int mp_cmd_copy(mp_ctx *ctx, const mp_args *a);
int mp_cmd_rename(mp_ctx *ctx, const mp_args *a);
int mp_cmd_set_default(mp_ctx *ctx, const mp_args *a);
int mp_cmd_get_default(mp_ctx *ctx, const mp_args *a);
int mp_cmd_dump(mp_ctx *ctx, const mp_args *a);
int mp_cmd_export(mp_ctx *ctx, const mp_args *a);
int mp_cmd_import(mp_ctx *ctx, const mp_args *a);
int mp_cmd_logon(mp_ctx *ctx, const mp_args *a);

/* Option indexes: the order of each command's option table (main.c). */
enum { MP_LIST_VERBOSE };
enum {
    MP_CREATE_DEFAULT,
    MP_CREATE_DEFAULT_SERVICES,
    MP_CREATE_SERVICE,
    MP_CREATE_DISPLAY,
    MP_CREATE_HOME_SERVER,
    MP_CREATE_MAILBOX,
    MP_CREATE_SET
};
enum { MP_SET_DEFAULT_CLEAR };
enum { MP_EXPORT_FORCE };
enum { MP_IMPORT_AS };
enum { MP_LOGON_HOLD };

/* --- messages (messages.c) ----------------------------------------------------------------- */

/* What a MAPI error is about: the same code means different things for a profile, a
 * message service or the default profile. */
typedef enum mp_subject {
    MP_ABOUT_PROFILE, /* the profile named in the command */
    MP_ABOUT_NEW,     /* the name of a profile being made, which exists */
    MP_ABOUT_DENIED,  /* the name of a profile being made, which does not exist */
    MP_ABOUT_TARGET,  /* the new name of copy, rename, import --as */
    MP_ABOUT_SERVICE, /* a message service being added or configured */
    MP_ABOUT_DEFAULT, /* the default profile */
    MP_ABOUT_SESSION, /* a logon */
} mp_subject;

/* mp_error_text - the plain-words text of a MAPI error in the given context. */
const char *mp_error_text(mapi_err e, mp_subject about);
/* mp_fail - "mapiprofile: WHAT: TEXT (MAPI_E_NAME)" on stderr, WHAT being printf-formatted.
 * Returns MP_EXIT_FAIL. */
int mp_fail(mapi_err e, mp_subject about, const char *what, ...)
    __attribute__((format(printf, 3, 4)));
/* mp_error - "mapiprofile: TEXT" on stderr (printf-formatted). Returns MP_EXIT_FAIL. */
int mp_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* mp_usage_error - "mapiprofile: TEXT" and a pointer to --help of cmd (NULL: the general
 * one) on stderr. Returns MP_EXIT_USAGE. */
int mp_usage_error(const mp_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- helpers shared by the commands -------------------------------------------------------- */

/* mp_canonical_name - the name a profile is stored under when some live profile matches
 * name case-insensitively (as the registry does), else a copy of name. NULL on ENOMEM. */
char *mp_canonical_name(mp_ctx *ctx, const char *name);
/* mp_find_row - the table row of a profile by name (case-insensitive), or NULL. */
const mapi_profile_row *mp_find_row(const mapi_profile_row *rows, size_t n, const char *name);
/* mp_new_search_key - give a profile a fresh PR_SEARCH_KEY (a copy must not share its
 * identity with the original). */
mapi_err mp_new_search_key(mapi_svcadmin *adm);
/* mp_hold_signals - hold back SIGINT, SIGTERM, SIGHUP and SIGQUIT (the ones that would end
 * the process half-way through a sequence of changes); *old gets the mask to restore. */
void mp_hold_signals(sigset_t *held, sigset_t *old);
/* mp_pending_signal - the first held-back signal that has arrived meanwhile, or 0. */
int mp_pending_signal(const sigset_t *held);

#endif
