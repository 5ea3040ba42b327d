/* reg.c - the reg command: main, the operation table, reg.exe's argument and key-name rules,
 * and the helpers the operations share (messages, prompts, value formatting). */
#include "reg_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <wctype.h>

/* --- the dispatch table ---------------------------------------------------------------- */

/* Each table is in the order of the REG_<OP>_* index constants of reg_cli.h. */
static const reg_cli_switch add_switches[] = {
    {"v", REG_CLI_VALUE, false}, {"ve", REG_CLI_FLAG, false}, {"t", REG_CLI_VALUE, false},
    {"s", REG_CLI_VALUE, false}, {"d", REG_CLI_VALUE, false}, {"f", REG_CLI_FLAG, false},
};
static const reg_cli_switch query_switches[] = {
    {"v", REG_CLI_OPTVALUE, false}, {"ve", REG_CLI_FLAG, false}, {"s", REG_CLI_FLAG, false},
    {"se", REG_CLI_VALUE, false},   {"f", REG_CLI_VALUE, false}, {"k", REG_CLI_FLAG, false},
    {"d", REG_CLI_FLAG, false},     {"c", REG_CLI_FLAG, false},  {"e", REG_CLI_FLAG, false},
    {"t", REG_CLI_VALUE, false},    {"z", REG_CLI_FLAG, false},
};
static const reg_cli_switch delete_switches[] = {
    {"v", REG_CLI_VALUE, false},
    {"ve", REG_CLI_FLAG, false},
    {"va", REG_CLI_FLAG, false},
    {"f", REG_CLI_FLAG, false},
};
static const reg_cli_switch copy_switches[] = {
    {"s", REG_CLI_FLAG, false},
    {"f", REG_CLI_FLAG, false},
};
/* reg.exe accepts EXPORT's /y more than once (Wine's tests check it). */
static const reg_cli_switch export_switches[] = {
    {"y", REG_CLI_FLAG, true},
};
static const reg_cli_switch compare_switches[] = {
    {"v", REG_CLI_VALUE, false}, {"ve", REG_CLI_FLAG, false}, {"oa", REG_CLI_FLAG, false},
    {"od", REG_CLI_FLAG, false}, {"os", REG_CLI_FLAG, false}, {"on", REG_CLI_FLAG, false},
    {"s", REG_CLI_FLAG, false},
};
static const reg_cli_switch save_switches[] = {
    {"y", REG_CLI_FLAG, false},
};

#define REG_CLI_NSW(t) (sizeof(t) / sizeof((t)[0]))
/* reg_cli_args holds REG_CLI_MAX_SWITCHES flags: no table may have more entries. */
_Static_assert(REG_CLI_NSW(add_switches) <= REG_CLI_MAX_SWITCHES, "add switches");
_Static_assert(REG_CLI_NSW(query_switches) <= REG_CLI_MAX_SWITCHES, "query switches");
_Static_assert(REG_CLI_NSW(delete_switches) <= REG_CLI_MAX_SWITCHES, "delete switches");
_Static_assert(REG_CLI_NSW(compare_switches) <= REG_CLI_MAX_SWITCHES, "compare switches");

static const reg_cli_op reg_ops[] = {
    {"ADD", "K", add_switches, REG_CLI_NSW(add_switches), REG_MSG_USAGE_ADD, REG_MSG_USAGE_VIEW,
     reg_cmd_add},
    {"QUERY", "K", query_switches, REG_CLI_NSW(query_switches), REG_MSG_USAGE_QUERY,
     REG_MSG_USAGE_VIEW, reg_cmd_query},
    {"DELETE", "K", delete_switches, REG_CLI_NSW(delete_switches), REG_MSG_USAGE_DELETE,
     REG_MSG_USAGE_VIEW, reg_cmd_delete},
    {"COPY", "KK", copy_switches, REG_CLI_NSW(copy_switches), REG_MSG_USAGE_COPY,
     REG_MSG_USAGE_VIEW, reg_cmd_copy},
    {"EXPORT", "KF", export_switches, REG_CLI_NSW(export_switches), REG_MSG_USAGE_EXPORT,
     REG_MSG_USAGE_VIEW, reg_cmd_export},
    {"IMPORT", "F", NULL, 0, REG_MSG_USAGE_IMPORT, REG_MSG_USAGE_VIEW, reg_cmd_import},
    {"COMPARE", "KK", compare_switches, REG_CLI_NSW(compare_switches), REG_MSG_USAGE_COMPARE,
     REG_MSG_USAGE_VIEW, reg_cmd_compare},
    {"SAVE", "KF", save_switches, REG_CLI_NSW(save_switches), REG_MSG_USAGE_SAVE,
     REG_MSG_USAGE_VIEW, reg_cmd_save},
    {"RESTORE", "KF", NULL, 0, REG_MSG_USAGE_RESTORE, REG_MSG_USAGE_VIEW, reg_cmd_restore},
    {"LOAD", "KF", NULL, 0, REG_MSG_USAGE_LOAD, REG_MSG_USAGE_VIEW_HIVE, reg_cmd_load},
    {"UNLOAD", "K", NULL, 0, REG_MSG_USAGE_UNLOAD, REG_MSG_USAGE_VIEW_HIVE, reg_cmd_unload},
};

/* --- messages ---------------------------------------------------------------------------- */

static void reg_cli_verror(reg_msg id, va_list ap)
{
    fflush(stdout);
    fputs("ERROR: ", stderr);
    vfprintf(stderr, reg_msg_text(id), ap);
    fputc('\n', stderr);
}

void reg_cli_error(reg_msg id, ...)
{
    va_list ap;
    va_start(ap, id);
    reg_cli_verror(id, ap);
    va_end(ap);
}

int reg_cli_syntax(const reg_cli_op *op)
{
    if (op)
        reg_cli_error(REG_MSG_SYNTAX, op->name);
    else
        reg_cli_error(REG_MSG_SYNTAX_GENERAL);
    return REG_CLI_EXIT_FAIL;
}

/* The context of this run (one a process), so that an error can name a damaged hive file. */
static const reg_ctx *cli_ctx;

int reg_cli_store_error(int err)
{
    fflush(stdout);
    const char *damaged = cli_ctx && err == ERROR_BADDB ? reg_ctx_damaged(cli_ctx) : NULL;
    if (damaged)
        fprintf(stderr, "ERROR: The registry hive file %s is damaged: %s\n", damaged,
                reg_strerror(err));
    else if (err == ERROR_FILE_NOT_FOUND)
        reg_cli_error(REG_MSG_NOT_FOUND);
    else if (err == ERROR_ACCESS_DENIED)
        reg_cli_error(REG_MSG_ACCESS_DENIED);
    else
        fprintf(stderr, "ERROR: %s\n", reg_strerror(err));
    return REG_CLI_EXIT_FAIL;
}

int reg_cli_errno_error(int e)
{
    /* Not through reg_cli_store_error: a missing file is not a missing key. */
    fflush(stdout);
    fprintf(stderr, "ERROR: %s\n", reg_strerror(reg_errno_to_win32(e)));
    return REG_CLI_EXIT_FAIL;
}

void reg_cli_out(reg_msg id, ...)
{
    va_list ap;
    va_start(ap, id);
    vprintf(reg_msg_text(id), ap);
    va_end(ap);
}

int reg_cli_success(void)
{
    puts(reg_msg_text(REG_MSG_SUCCESS));
    return REG_CLI_EXIT_OK;
}

int reg_cli_cancelled(void)
{
    puts(reg_msg_text(REG_MSG_CANCELLED));
    return REG_CLI_EXIT_OK;
}

reg_cli_answer reg_cli_confirm(bool allow_all, reg_msg id, ...)
{
    char *prompt = NULL;
    va_list ap;
    va_start(ap, id);
    int n = vasprintf(&prompt, reg_msg_text(id), ap);
    va_end(ap);
    if (n < 0)
        return REG_CLI_NO;
    /* Typed answers are echoed by the terminal, which ends the line; piped ones are not. */
    bool tty = isatty(STDIN_FILENO);
    reg_cli_answer ans = REG_CLI_NO;
    for (int tries = 0; tries < REG_CLI_PROMPT_TRIES; tries++) {
        fputs(prompt, stdout);
        fflush(stdout);
        char line[REG_CLI_ANSWER_MAX];
        if (!fgets(line, sizeof line, stdin)) {
            putchar('\n');
            break;
        }
        if (!strchr(line, '\n')) {
            int c;
            while ((c = getchar()) != EOF && c != '\n')
                ;
        }
        if (!tty)
            putchar('\n');
        int c = (unsigned char)line[0];
        if (c == 'y' || c == 'Y') {
            ans = REG_CLI_YES;
            break;
        }
        if (c == 'n' || c == 'N')
            break;
        if (allow_all && (c == 'a' || c == 'A')) {
            ans = REG_CLI_ALL;
            break;
        }
    }
    free(prompt);
    return ans;
}

/* --- registry helpers ------------------------------------------------------------------- */

int reg_cli_ctx_open(reg_ctx **ctx)
{
    int err = reg_ctx_open(NULL, ctx);
    if (err)
        return reg_cli_store_error(err);
    cli_ctx = *ctx;
    return 0;
}

int reg_cli_root_open(reg_ctx *ctx, reg_root root, unsigned view, reg_key **out)
{
    reg_key *r;
    int err = reg_key_open_root(ctx, root, &r);
    if (err || !view) {
        *out = err ? NULL : r;
        return err;
    }
    err = reg_key_open(r, NULL, view, out);
    reg_key_close(r);
    return err;
}

int reg_cli_key_open(reg_ctx *ctx, const reg_cli_key *k, unsigned access, reg_key **out)
{
    reg_key *root;
    int err = reg_key_open_root(ctx, k->root, &root);
    if (err)
        return err;
    err = reg_key_open(root, k->sub, access, out);
    reg_key_close(root);
    return err;
}

int reg_cli_key_create(reg_ctx *ctx, const reg_cli_key *k, unsigned view, reg_key **out,
                       unsigned *disposition)
{
    reg_key *root;
    int err = reg_key_open_root(ctx, k->root, &root);
    if (err)
        return err;
    err = reg_key_create_ex(root, k->sub, REG_OPTION_NON_VOLATILE, view, NULL, out, disposition);
    reg_key_close(root);
    return err;
}

/* name_fold_units - the UTF-16 form of s for a case-insensitive comparison. */
static int name_fold_units(const char *s, buf *out)
{
    int rc = base_utf8_to_utf16(s, strlen(s), out);
    if (rc)
        return rc;
    for (size_t i = 0; i + 1 < out->len; i += 2) {
        uint16_t u = (uint16_t)(out->data[i] | out->data[i + 1] << 8);
        /* Windows folds each UTF-16 unit to upper case; surrogates stay as they are. */
        if (u < 0xd800 || u > 0xdfff)
            u = (uint16_t)towupper(u);
        out->data[i] = (uint8_t)u;
        out->data[i + 1] = (uint8_t)(u >> 8);
    }
    return 0;
}

bool reg_cli_name_equal(const char *a, const char *b)
{
    buf ua = BUF_INIT, ub = BUF_INIT;
    bool eq;
    if (name_fold_units(a, &ua) || name_fold_units(b, &ub))
        eq = strcasecmp(a, b) == 0;
    else
        eq = ua.len == ub.len && (ua.len == 0 || memcmp(ua.data, ub.data, ua.len) == 0);
    buf_free(&ua);
    buf_free(&ub);
    return eq;
}

bool reg_cli_key_equal(const reg_cli_key *a, const reg_cli_key *b)
{
    return a->root == b->root && reg_cli_name_equal(a->sub, b->sub);
}

char *reg_cli_join(const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, "%s\\%s", a, b) < 0)
        return NULL;
    return s;
}

bool reg_cli_utf8_ok(const char *s)
{
    if (base_utf8_valid(s, strlen(s)))
        return true;
    reg_cli_error(REG_MSG_BAD_UTF8);
    return false;
}

bool reg_cli_one_char(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || !base_utf8_valid(s, n))
        return false;
    /* One character: one lead byte, the rest continuation bytes. */
    for (size_t i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            return false;
    return true;
}

static int values_add(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    reg_cli_values *vals = arg;
    if (vals->n == vals->cap) {
        size_t cap = vals->cap ? vals->cap * 2 : 16;
        reg_cli_value *v = realloc(vals->v, cap * sizeof *v);
        if (!v)
            return ERROR_NOT_ENOUGH_MEMORY;
        vals->v = v;
        vals->cap = cap;
    }
    reg_cli_value *v = &vals->v[vals->n];
    v->name = strdup(name);
    v->data = malloc(len ? len : 1);
    if (!v->name || !v->data) {
        free(v->name);
        free(v->data);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    if (len)
        memcpy(v->data, data, len);
    v->type = type;
    v->len = len;
    vals->n++;
    return 0;
}

int reg_cli_values_load(reg_key *key, reg_cli_values *out)
{
    return reg_key_enum_values(key, values_add, out);
}

void reg_cli_values_free(reg_cli_values *vals)
{
    for (size_t i = 0; i < vals->n; i++) {
        free(vals->v[i].name);
        free(vals->v[i].data);
    }
    free(vals->v);
    vals->v = NULL;
    vals->n = vals->cap = 0;
}

static int names_add(void *arg, const char *name)
{
    reg_cli_names *names = arg;
    if (names->n == names->cap) {
        size_t cap = names->cap ? names->cap * 2 : 16;
        char **v = realloc(names->v, cap * sizeof *v);
        if (!v)
            return ERROR_NOT_ENOUGH_MEMORY;
        names->v = v;
        names->cap = cap;
    }
    if (!(names->v[names->n] = strdup(name)))
        return ERROR_NOT_ENOUGH_MEMORY;
    names->n++;
    return 0;
}

int reg_cli_subkeys_load(reg_key *key, reg_cli_names *out)
{
    return reg_key_enum_subkeys(key, names_add, out);
}

void reg_cli_names_free(reg_cli_names *names)
{
    for (size_t i = 0; i < names->n; i++)
        free(names->v[i]);
    free(names->v);
    names->v = NULL;
    names->n = names->cap = 0;
}

/* --- value formatting ------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t type;
} type_names[] = {
    {"REG_NONE", REG_NONE},
    {"REG_SZ", REG_SZ},
    {"REG_EXPAND_SZ", REG_EXPAND_SZ},
    {"REG_BINARY", REG_BINARY},
    {"REG_DWORD", REG_DWORD},
    {"REG_DWORD_BIG_ENDIAN", REG_DWORD_BIG_ENDIAN},
    {"REG_LINK", REG_LINK},
    {"REG_MULTI_SZ", REG_MULTI_SZ},
    {"REG_RESOURCE_LIST", REG_RESOURCE_LIST},
    {"REG_FULL_RESOURCE_DESCRIPTOR", REG_FULL_RESOURCE_DESCRIPTOR},
    {"REG_RESOURCE_REQUIREMENTS_LIST", REG_RESOURCE_REQUIREMENTS_LIST},
    {"REG_QWORD", REG_QWORD},
};

const char *reg_cli_type_name(uint32_t type)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (type_names[i].type == type)
            return type_names[i].name;
    return NULL;
}

/* The types /t accepts. REG_LINK and the resource types are shown by QUERY but cannot be
 * written from the command line (as in Wine, whose tests expect REG_LINK to fail). */
static const struct {
    const char *name;
    uint32_t type;
} settable_types[] = {
    {"REG_NONE", REG_NONE},
    {"REG_SZ", REG_SZ},
    {"REG_EXPAND_SZ", REG_EXPAND_SZ},
    {"REG_BINARY", REG_BINARY},
    {"REG_DWORD", REG_DWORD},
    {"REG_DWORD_LITTLE_ENDIAN", REG_DWORD},
    {"REG_DWORD_BIG_ENDIAN", REG_DWORD_BIG_ENDIAN},
    {"REG_MULTI_SZ", REG_MULTI_SZ},
    {"REG_QWORD", REG_QWORD},
};

bool reg_cli_type_parse(const char *name, uint32_t *type)
{
    for (size_t i = 0; i < sizeof settable_types / sizeof settable_types[0]; i++) {
        if (strcasecmp(settable_types[i].name, name) == 0) {
            *type = settable_types[i].type;
            return true;
        }
    }
    return false;
}

static int format_hex(buf *out, const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789ABCDEF";
    int rc = buf_reserve(out, len * 2);
    for (size_t i = 0; !rc && i < len; i++) {
        rc = buf_addc(out, (uint8_t)digits[data[i] >> 4]);
        if (!rc)
            rc = buf_addc(out, (uint8_t)digits[data[i] & 0xf]);
    }
    return rc;
}

static uint16_t unit_at(const uint8_t *data, size_t i)
{
    return (uint16_t)(data[2 * i] | data[2 * i + 1] << 8);
}

int reg_cli_format_data(buf *out, uint32_t type, const uint8_t *data, size_t len, const char *sep)
{
    size_t units = len / 2;
    switch (type) {
    case REG_SZ:
    case REG_EXPAND_SZ: {
        /* The text up to the first NUL; an odd last byte cannot be a character. */
        size_t n = 0;
        while (n < units && unit_at(data, n))
            n++;
        return base_utf16_to_utf8(data, n, out);
    }
    case REG_DWORD:
    case REG_DWORD_BIG_ENDIAN:
        /* Both are stored little-endian by reg add (as on Windows), so both read so. */
        if (len == 4) {
            uint32_t v = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                         (uint32_t)data[3] << 24;
            return buf_printf(out, "0x%" PRIx32, v);
        }
        break;
    case REG_QWORD:
        if (len == 8) {
            uint64_t v = 0;
            for (int i = 7; i >= 0; i--)
                v = v << 8 | data[i];
            return buf_printf(out, "0x%" PRIx64, v);
        }
        break;
    case REG_MULTI_SZ: {
        /* Drop the list terminator (up to two NULs), then show each NUL as the separator. */
        for (int i = 0; i < 2 && units > 0 && unit_at(data, units - 1) == 0; i++)
            units--;
        size_t start = 0;
        for (size_t i = 0; i <= units; i++) {
            if (i < units && unit_at(data, i))
                continue;
            int rc = base_utf16_to_utf8(data + 2 * start, i - start, out);
            if (!rc && i < units)
                rc = buf_adds(out, sep ? sep : "\\0");
            if (rc)
                return rc;
            start = i + 1;
        }
        return 0;
    }
    default:
        break;
    }
    /* REG_BINARY, REG_NONE, unknown types and numbers of an odd size: the bytes in hex. */
    return format_hex(out, data, len);
}

int reg_cli_format_value(buf *out, const char *name, uint32_t type, const uint8_t *data, size_t len,
                         const char *sep, bool verbose)
{
    const char *tname = reg_cli_type_name(type);
    int rc = buf_printf(out, "    %s    ", name);
    if (!rc)
        rc = tname ? buf_adds(out, tname) : buf_printf(out, "0x%" PRIx32, type);
    if (!rc && verbose)
        rc = buf_printf(out, " (%" PRIu32 ")", type);
    if (!rc)
        rc = buf_adds(out, "    ");
    if (!rc)
        rc = data ? reg_cli_format_data(out, type, data, len, sep)
                  : buf_adds(out, reg_msg_text(REG_MSG_VALUE_NOT_SET));
    if (!rc)
        rc = buf_addc(out, '\n');
    return rc;
}

void reg_cli_write(const buf *b)
{
    if (b->len)
        fwrite(b->data, 1, b->len, stdout);
}

/* --- argument parsing ------------------------------------------------------------------- */

static bool is_help(const char *s)
{
    return (s[0] == '/' || s[0] == '-') && (strcmp(s + 1, "?") == 0 || strcasecmp(s + 1, "h") == 0);
}

/* view_switch - the view /reg:32 or /reg:64 names (name without its / or -), or 0. */
static unsigned view_switch(const char *name)
{
    if (strcasecmp(name, "reg:32") == 0)
        return REG_WOW64_32KEY;
    if (strcasecmp(name, "reg:64") == 0)
        return REG_WOW64_64KEY;
    return 0;
}

/* find_switch - the index of the switch word s in op's table, or -1. */
static int find_switch(const reg_cli_op *op, const char *s)
{
    if ((s[0] != '/' && s[0] != '-') || !s[1])
        return -1;
    for (size_t i = 0; i < op->nswitches; i++)
        if (strcasecmp(op->switches[i].name, s + 1) == 0)
            return (int)i;
    return -1;
}

static bool is_op_switch(const reg_cli_op *op, const char *s)
{
    return find_switch(op, s) >= 0 || ((s[0] == '/' || s[0] == '-') && view_switch(s + 1));
}

static void key_free(reg_cli_key *k)
{
    free(k->sub);
    free(k->path);
    k->sub = k->path = NULL;
}

/* parse_key - reg.exe's rules for a key argument: ROOT[\subkey[\]]. Prints the error. */
static int parse_key(const reg_cli_op *op, const char *arg, reg_cli_key *k)
{
    size_t n = strlen(arg);
    /* Too short for any root, or ending in two backslashes (an empty last name). */
    if (n < 3 || (arg[n - 1] == '\\' && arg[n - 2] == '\\')) {
        reg_cli_error(REG_MSG_BAD_KEY, op->name);
        return REG_CLI_EXIT_FAIL;
    }
    if (arg[0] == '\\' && arg[1] == '\\' && arg[2] != '\\') {
        reg_cli_error(REG_MSG_REMOTE);
        return REG_CLI_EXIT_FAIL;
    }
    const char *bs = strchr(arg, '\\');
    size_t rootlen = bs ? (size_t)(bs - arg) : n;
    /* "ROOT\" alone names no key: reg.exe refuses it rather than taking the root. */
    if (reg_root_parse(arg, rootlen, &k->root) != ERROR_SUCCESS || (bs && !bs[1])) {
        reg_cli_error(REG_MSG_BAD_KEY, op->name);
        return REG_CLI_EXIT_FAIL;
    }
    const char *sub = bs ? bs + 1 : "";
    size_t sublen = strlen(sub);
    if (sublen && sub[sublen - 1] == '\\')
        sublen--;
    k->sub = strndup(sub, sublen);
    if (!k->sub)
        return reg_cli_store_error(ERROR_NOT_ENOUGH_MEMORY);
    if (!reg_cli_utf8_ok(k->sub)) {
        key_free(k);
        return REG_CLI_EXIT_FAIL;
    }
    int len = sublen ? asprintf(&k->path, "%s\\%s", reg_root_name(k->root), k->sub)
                     : asprintf(&k->path, "%s", reg_root_name(k->root));
    if (len < 0) {
        k->path = NULL;
        key_free(k);
        return reg_cli_store_error(ERROR_NOT_ENOUGH_MEMORY);
    }
    return 0;
}

/* parse_args - positionals first (validated), then switches, by reg.exe's rules: a switch
 * starts with / or -, is matched without regard to case, may be given once (unless the
 * table says otherwise), and one taking a value takes the next argument whatever it is. */
static int parse_args(const reg_cli_op *op, int argc, char **argv, reg_cli_args *a)
{
    size_t npos = strlen(op->positional);
    if ((size_t)argc < npos)
        return reg_cli_syntax(op);
    for (size_t i = 0; i < npos; i++) {
        a->pos[i] = argv[i];
        if (op->positional[i] == 'K' && parse_key(op, argv[i], &a->key[i]))
            return REG_CLI_EXIT_FAIL;
    }
    for (int i = (int)npos; i < argc; i++) {
        const char *s = argv[i];
        unsigned view = (s[0] == '/' || s[0] == '-') ? view_switch(s + 1) : 0;
        if (view) {
            /* /reg:32 and /reg:64 exclude each other: one view switch at most. */
            if (a->view)
                return reg_cli_syntax(op);
            a->view = view;
            continue;
        }
        int idx = find_switch(op, s);
        if (idx < 0)
            return reg_cli_syntax(op);
        const reg_cli_switch *sw = &op->switches[idx];
        if (a->has[idx] && !sw->repeatable)
            return reg_cli_syntax(op);
        a->has[idx] = true;
        if (sw->kind == REG_CLI_VALUE) {
            if (i + 1 >= argc)
                return reg_cli_syntax(op);
            a->val[idx] = argv[++i];
        } else if (sw->kind == REG_CLI_OPTVALUE) {
            if (i + 1 < argc && !is_op_switch(op, argv[i + 1]))
                a->val[idx] = argv[++i];
        }
    }
    return 0;
}

static const reg_cli_op *find_op(const char *name)
{
    for (size_t i = 0; i < sizeof reg_ops / sizeof reg_ops[0]; i++)
        if (strcasecmp(reg_ops[i].name, name) == 0)
            return &reg_ops[i];
    return NULL;
}

int main(int argc, char **argv)
{
    /* Only for towupper in name comparisons; all text is handled as UTF-8 bytes. */
    setlocale(LC_CTYPE, "C.UTF-8");

    if (argc < 2)
        return reg_cli_syntax(NULL);
    if (is_help(argv[1])) {
        if (argc > 2)
            return reg_cli_syntax(NULL);
        fputs(reg_msg_text(REG_MSG_USAGE), stdout);
        return REG_CLI_EXIT_OK;
    }
    const reg_cli_op *op = find_op(argv[1]);
    if (!op) {
        reg_cli_error(REG_MSG_BAD_OPERATION, argv[1]);
        return REG_CLI_EXIT_FAIL;
    }
    if (argc == 2)
        return reg_cli_syntax(op);
    if (argc == 3 && is_help(argv[2])) {
        fputs(reg_msg_text(op->usage), stdout);
        fputs(reg_msg_text(op->view_usage), stdout);
        return REG_CLI_EXIT_OK;
    }

    reg_cli_args args = {.op = op};
    int rc = parse_args(op, argc - 2, argv + 2, &args);
    if (!rc)
        rc = op->run(&args);
    for (size_t i = 0; i < REG_CLI_MAX_POS; i++)
        key_free(&args.key[i]);
    /* Output that could not be written (a full disk, a closed pipe) is a failure. */
    if (fflush(stdout) != 0 && rc == REG_CLI_EXIT_OK)
        rc = REG_CLI_EXIT_FAIL;
    return rc;
}
