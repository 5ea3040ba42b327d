/* reg_cli.h - private interface between the files of the reg command: the operation table,
 * argument parsing, key arguments, prompts, messages and value formatting. */
#ifndef IMS_REG_CLI_H
#define IMS_REG_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reg/reg.h"

/* Exit codes: reg.exe's, plus COMPARE's "different". */
#define REG_CLI_EXIT_OK 0
#define REG_CLI_EXIT_FAIL 1
#define REG_CLI_EXIT_DIFFERENT 2

/* Positional arguments an operation takes at most (COPY, COMPARE, EXPORT: two). */
#define REG_CLI_MAX_POS 2
/* Switches one operation knows at most (QUERY has the most). */
#define REG_CLI_MAX_SWITCHES 16
/* How often a prompt is repeated for an answer that is not one of the choices. */
#define REG_CLI_PROMPT_TRIES 3
/* Longest answer line kept; the rest of a longer line is read and dropped. */
#define REG_CLI_ANSWER_MAX 64

/* --- messages (messages.c) ----------------------------------------------------------- */

/* Every text the command prints. Templates take printf arguments as documented. */
typedef enum reg_msg {
    REG_MSG_SUCCESS,             /* The operation completed successfully. */
    REG_MSG_CANCELLED,           /* answered No */
    REG_MSG_SYNTAX,              /* %s: operation name, upper case */
    REG_MSG_SYNTAX_GENERAL,      /* no operation */
    REG_MSG_BAD_OPERATION,       /* %s: the word given */
    REG_MSG_BAD_KEY,             /* %s: operation name */
    REG_MSG_REMOTE,              /* \\computer\... */
    REG_MSG_NOT_FOUND,           /* missing key or value */
    REG_MSG_ACCESS_DENIED,       /* ERROR_ACCESS_DENIED */
    REG_MSG_BAD_TYPE,            /* %s: the type given to /t */
    REG_MSG_BAD_NUMBER,          /* /d for DWORD/QWORD */
    REG_MSG_BAD_HEX,             /* /d for BINARY */
    REG_MSG_BAD_STRING,          /* /d for MULTI_SZ */
    REG_MSG_NEED_DATA,           /* %s: type name that needs /d */
    REG_MSG_BAD_UTF8,            /* an argument is not UTF-8 */
    REG_MSG_SAME_KEY,            /* COPY onto itself */
    REG_MSG_ROOT_DELETE,         /* %s: root key path */
    REG_MSG_FILE_OPEN,           /* IMPORT: file cannot be opened */
    REG_MSG_NOT_REG_FILE,        /* IMPORT: bad header */
    REG_MSG_IMPORT_DIAG,         /* %s file, %u line, %s text */
    REG_MSG_SEARCH_END,          /* %u matches */
    REG_MSG_DEFAULT_NAME,        /* (Default) */
    REG_MSG_VALUE_NOT_SET,       /* (value not set) */
    REG_MSG_COMPARE_IDENTICAL,   /* Result Compared: Identical */
    REG_MSG_COMPARE_DIFFERENT,   /* Result Compared: Different */
    REG_MSG_PROMPT_OVERWRITE,    /* %s: value name */
    REG_MSG_PROMPT_COPY,         /* %s value name, %s destination key */
    REG_MSG_PROMPT_DELETE_KEY,   /* %s: key path */
    REG_MSG_PROMPT_DELETE_VALUE, /* %s: value name */
    REG_MSG_PROMPT_DELETE_ALL,   /* %s: key path */
    REG_MSG_PROMPT_FILE,         /* %s: file name */
    REG_MSG_USAGE,               /* reg /? */
    REG_MSG_USAGE_VIEW,          /* the /reg:32 /reg:64 paragraph after each operation's usage */
    REG_MSG_USAGE_VIEW_HIVE,     /* the same for LOAD and UNLOAD, which ignore the view */
    REG_MSG_USAGE_ADD,
    REG_MSG_USAGE_QUERY,
    REG_MSG_USAGE_DELETE,
    REG_MSG_USAGE_COPY,
    REG_MSG_USAGE_EXPORT,
    REG_MSG_USAGE_IMPORT,
    REG_MSG_USAGE_COMPARE,
    REG_MSG_USAGE_SAVE,
    REG_MSG_USAGE_RESTORE,
    REG_MSG_USAGE_LOAD,
    REG_MSG_USAGE_UNLOAD,
    REG_MSG_COUNT
} reg_msg;

/* reg_msg_text - the text or printf template of a message. */
const char *reg_msg_text(reg_msg id);

/* --- operations and their arguments (reg.c) ------------------------------------------ */

typedef enum reg_cli_argkind {
    REG_CLI_FLAG,     /* /f */
    REG_CLI_VALUE,    /* /v name: the next argument, whatever it looks like */
    REG_CLI_OPTVALUE, /* QUERY /v: a name unless the next argument is a switch of the op */
} reg_cli_argkind;

typedef struct reg_cli_switch {
    const char *name; /* without the leading / or -, lower case */
    reg_cli_argkind kind;
    bool repeatable; /* EXPORT /y may be given more than once */
} reg_cli_switch;

/* A validated key argument. */
typedef struct reg_cli_key {
    reg_root root;
    char *sub;  /* the subpath as typed without one trailing backslash; "" for a root */
    char *path; /* long root name [+ "\" sub]: every message and output line uses it */
} reg_cli_key;

struct reg_cli_op;

typedef struct reg_cli_args {
    const struct reg_cli_op *op;
    const char *pos[REG_CLI_MAX_POS]; /* positional arguments as typed */
    reg_cli_key key[REG_CLI_MAX_POS]; /* those of them that are keys */
    bool has[REG_CLI_MAX_SWITCHES];   /* by index into op->switches */
    const char *val[REG_CLI_MAX_SWITCHES];
    unsigned view; /* /reg:32: REG_WOW64_32KEY, /reg:64: REG_WOW64_64KEY, else 0 */
} reg_cli_args;

typedef struct reg_cli_op {
    const char *name;       /* "ADD" */
    const char *positional; /* one letter per positional: 'K' key, 'F' file */
    const reg_cli_switch *switches;
    size_t nswitches;
    reg_msg usage;
    reg_msg view_usage; /* what /reg:32 and /reg:64 do for it */
    int (*run)(const reg_cli_args *a);
} reg_cli_op;

/* The operations, one per file. */
int reg_cmd_add(const reg_cli_args *a);
int reg_cmd_query(const reg_cli_args *a);
int reg_cmd_delete(const reg_cli_args *a);
int reg_cmd_copy(const reg_cli_args *a);
int reg_cmd_export(const reg_cli_args *a);
int reg_cmd_import(const reg_cli_args *a);
int reg_cmd_compare(const reg_cli_args *a);
int reg_cmd_save(const reg_cli_args *a);
int reg_cmd_restore(const reg_cli_args *a);
int reg_cmd_load(const reg_cli_args *a);
int reg_cmd_unload(const reg_cli_args *a);

/* Indexes into each operation's switch table (the dispatch table in reg.c): the order of
 * the table entries. */
enum { REG_ADD_V, REG_ADD_VE, REG_ADD_T, REG_ADD_S, REG_ADD_D, REG_ADD_F };
enum {
    REG_QUERY_V,
    REG_QUERY_VE,
    REG_QUERY_S,
    REG_QUERY_SE,
    REG_QUERY_F,
    REG_QUERY_K,
    REG_QUERY_D,
    REG_QUERY_C,
    REG_QUERY_E,
    REG_QUERY_T,
    REG_QUERY_Z
};
enum { REG_DELETE_V, REG_DELETE_VE, REG_DELETE_VA, REG_DELETE_F };
enum { REG_COPY_S, REG_COPY_F };
enum { REG_EXPORT_Y };
enum {
    REG_COMPARE_V,
    REG_COMPARE_VE,
    REG_COMPARE_OA,
    REG_COMPARE_OD,
    REG_COMPARE_OS,
    REG_COMPARE_ON,
    REG_COMPARE_S
};
enum { REG_SAVE_Y };

/* --- output and messages (reg.c) ----------------------------------------------------- */

/* reg_cli_error - "ERROR: <message>" on stderr (stdout is flushed first so the two
 * streams stay in order on a terminal). */
void reg_cli_error(reg_msg id, ...);
/* reg_cli_syntax - the invalid-syntax error of op (NULL: the general one). Returns 1. */
int reg_cli_syntax(const reg_cli_op *op);
/* reg_cli_store_error - the error for a Win32 error number from the library. Returns 1. */
int reg_cli_store_error(int err);
/* reg_cli_errno_error - the error for an errno value from a file operation. Returns 1. */
int reg_cli_errno_error(int e);
/* reg_cli_success - "The operation completed successfully." on stdout. Returns 0. */
int reg_cli_success(void);
/* reg_cli_cancelled - the cancel message on stdout. Returns 0. */
int reg_cli_cancelled(void);
/* reg_cli_out - printf a message template to stdout. */
void reg_cli_out(reg_msg id, ...);

typedef enum reg_cli_answer { REG_CLI_NO, REG_CLI_YES, REG_CLI_ALL } reg_cli_answer;
/* reg_cli_confirm - print a prompt message (no newline) and read the answer from stdin:
 * the first character, Y, N or (with allow_all) A, any case. End of input is No; other
 * answers ask again up to REG_CLI_PROMPT_TRIES times, then No. */
reg_cli_answer reg_cli_confirm(bool allow_all, reg_msg id, ...);

/* --- registry helpers (reg.c) -------------------------------------------------------- */

/* reg_cli_ctx_open - the registry context (IMS_ROOT); prints the error. */
int reg_cli_ctx_open(reg_ctx **ctx);
/* reg_cli_root_open - open a root key in view (REG_WOW64_* or 0); returns a Win32 error. */
int reg_cli_root_open(reg_ctx *ctx, reg_root root, unsigned view, reg_key **out);
/* reg_cli_key_open - open a key argument (access may hold a view flag); returns a Win32
 * error, prints nothing. */
int reg_cli_key_open(reg_ctx *ctx, const reg_cli_key *k, unsigned access, reg_key **out);
/* reg_cli_key_create - open or create a key argument in view; returns a Win32 error. */
int reg_cli_key_create(reg_ctx *ctx, const reg_cli_key *k, unsigned view, reg_key **out,
                       unsigned *disposition);
/* reg_cli_name_equal - registry name equality: case-insensitive, as Windows folds case. */
bool reg_cli_name_equal(const char *a, const char *b);
/* reg_cli_key_equal - the same key: same root and equal subpaths. */
bool reg_cli_key_equal(const reg_cli_key *a, const reg_cli_key *b);
/* reg_cli_join - "a\b" in a new allocation (NULL on ENOMEM). */
char *reg_cli_join(const char *a, const char *b);
/* reg_cli_utf8_ok - true when s is well-formed UTF-8; prints the error otherwise. */
bool reg_cli_utf8_ok(const char *s);

/* A value read from a key. */
typedef struct reg_cli_value {
    char *name;
    uint32_t type;
    uint8_t *data;
    size_t len;
} reg_cli_value;
typedef struct reg_cli_values {
    reg_cli_value *v;
    size_t n, cap;
} reg_cli_values;
/* reg_cli_values_load - every value of key, in the key's order. */
int reg_cli_values_load(reg_key *key, reg_cli_values *out);
void reg_cli_values_free(reg_cli_values *vals);

/* A list of names (subkeys). */
typedef struct reg_cli_names {
    char **v;
    size_t n, cap;
} reg_cli_names;
/* reg_cli_subkeys_load - the names of key's subkeys, in enumeration order. */
int reg_cli_subkeys_load(reg_key *key, reg_cli_names *out);
void reg_cli_names_free(reg_cli_names *names);

/* --- value formatting (reg.c) -------------------------------------------------------- */

/* reg_cli_type_name - "REG_SZ" for a known type, NULL for another number. */
const char *reg_cli_type_name(uint32_t type);
/* reg_cli_type_parse - a type name as ADD /t and QUERY /t take it; false when unknown. */
bool reg_cli_type_parse(const char *name, uint32_t *type);
/* reg_cli_format_data - append data as reg query shows it; sep joins REG_MULTI_SZ strings
 * (NULL: the two characters \0). */
int reg_cli_format_data(buf *out, uint32_t type, const uint8_t *data, size_t len, const char *sep);
/* reg_cli_format_value - append a query value line "    name    TYPE    data\n"; verbose
 * adds " (N)" after the type name, as /z does. data NULL prints (value not set). */
int reg_cli_format_value(buf *out, const char *name, uint32_t type, const uint8_t *data, size_t len,
                         const char *sep, bool verbose);
/* reg_cli_write - write a buffer to stdout. */
void reg_cli_write(const buf *b);

/* reg_cli_one_char - true when s is exactly one UTF-8 character (the /s and /se rule). */
bool reg_cli_one_char(const char *s);

#endif
