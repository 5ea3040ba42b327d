/* import.c - reg_import: a .reg file's lines applied to the store. The file is parsed first
 * into a list of operations; they are then applied hive by hive, each hive's in one write
 * transaction, so a storage failure leaves that hive as it was and no two hives are ever
 * locked at once (which could deadlock against another importer). */
#include "reg/regfile.h"
#include "reg/store.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define VIEW_FLAGS (REG_WOW64_32KEY | REG_WOW64_64KEY)

enum op_kind { OP_KEY, OP_DELKEY, OP_VALUE, OP_DELVALUE };

struct op {
    enum op_kind kind;
    size_t seq;    /* position in the file, to keep file order inside a hive */
    unsigned line; /* the line of the file it came from, for messages */
    char *group;   /* "HKLM" or "HKU\<name>": which hive the key lives in */
    reg_root root; /* of the key (for OP_KEY and OP_DELKEY) */
    char *path;    /* subpath under root (OP_KEY, OP_DELKEY) */
    char *name;    /* value name, NULL for the default value */
    uint32_t type;
    uint8_t *data;
    size_t len;
};

struct import {
    reg_ctx *ctx;
    unsigned flags;
    reg_diag_fn diag;
    void *arg;
    struct op *ops;
    size_t n, cap;
    bool have_key; /* a key line opened a key: values may follow */
    const char *cur_group;
    int err; /* out of memory while parsing */
};

static void say(struct import *im, unsigned line, const char *fmt, const char *what)
{
    if (!im->diag)
        return;
    buf m = BUF_INIT;
    if (buf_printf(&m, fmt, what) == 0 && buf_cstr(&m))
        im->diag(im->arg, line, (char *)m.data);
    buf_free(&m);
}

static struct op *op_add(struct import *im, enum op_kind kind)
{
    if (im->n == im->cap) {
        size_t cap = im->cap ? im->cap * 2 : 64;
        struct op *p = realloc(im->ops, cap * sizeof *p);
        if (!p)
            return NULL;
        im->ops = p;
        im->cap = cap;
    }
    struct op *o = &im->ops[im->n];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->seq = im->n++;
    return o;
}

/* classes_in_user - true when HKCU\Software\Classes has the first component of sub (in
 * the view of flags). */
static bool classes_in_user(reg_ctx *ctx, const char *sub, unsigned flags)
{
    reg_key *cu, *k;
    if (reg_key_open_root(ctx, REG_ROOT_HKCU, &cu))
        return false;
    const char *bs = strchr(sub, '\\');
    buf p = BUF_INIT;
    bool yes = false;
    if (buf_adds(&p, "Software\\Classes\\") == 0 &&
        buf_add(&p, sub, bs ? (size_t)(bs - sub) : strlen(sub)) == 0 && buf_cstr(&p) &&
        reg_key_open(cu, (char *)p.data, flags & VIEW_FLAGS, &k) == 0) {
        reg_key_close(k);
        yes = true;
    }
    buf_free(&p);
    reg_key_close(cu);
    return yes;
}

/* resolve - the hive group, root and subpath of a full key path; false if the root is bad. */
static bool resolve(struct import *im, const char *path, char **group, reg_root *root, char **sub)
{
    const char *bs = strchr(path, '\\');
    size_t n = bs ? (size_t)(bs - path) : strlen(path);
    if (reg_root_parse(path, n, root))
        return false;
    if ((im->flags & REG_IMPORT_LONG_ROOTS) && n < 5)
        return false;
    const char *rest = bs ? bs + 1 : path + n;
    buf g = BUF_INIT;
    int rc = 0;
    switch (*root) {
    case REG_ROOT_HKLM:
    case REG_ROOT_HKCC:
        rc = buf_adds(&g, "HKLM");
        break;
    case REG_ROOT_HKCU:
        rc = buf_printf(&g, "HKU\\%s", reg_ctx_user_sid(im->ctx));
        break;
    case REG_ROOT_HKU: {
        const char *e = strchr(rest, '\\');
        size_t hn = e ? (size_t)(e - rest) : strlen(rest);
        rc = buf_adds(&g, "HKU\\") || buf_add(&g, rest, hn);
        break;
    }
    case REG_ROOT_HKCR:
        if (classes_in_user(im->ctx, rest, im->flags))
            rc = buf_printf(&g, "HKU\\%s", reg_ctx_user_sid(im->ctx));
        else
            rc = buf_adds(&g, "HKLM");
        break;
    }
    if (rc || !buf_cstr(&g)) {
        buf_free(&g);
        im->err = ERROR_NOT_ENOUGH_MEMORY;
        return false;
    }
    *group = buf_detach(&g, NULL);
    *sub = strdup(rest);
    if (!*group || !*sub) {
        free(*group);
        free(*sub);
        im->err = ERROR_NOT_ENOUGH_MEMORY;
        return false;
    }
    return true;
}

static int sink_key(void *arg, unsigned line, const char *path)
{
    struct import *im = arg;
    char *group, *sub;
    reg_root root;
    if (!resolve(im, path, &group, &root, &sub)) {
        im->have_key = false;
        if (im->err)
            return -im->err;
        say(im, line, "Unable to import the registry key '%s': invalid root key", path);
        return 1;
    }
    struct op *o = op_add(im, OP_KEY);
    if (!o) {
        free(group);
        free(sub);
        return -ERROR_NOT_ENOUGH_MEMORY;
    }
    o->line = line;
    o->group = group;
    o->root = root;
    o->path = sub;
    im->have_key = true;
    im->cur_group = group;
    return 0;
}

static int sink_delete_key(void *arg, unsigned line, const char *path)
{
    struct import *im = arg;
    char *group, *sub;
    reg_root root;
    im->have_key = false;
    if (!resolve(im, path, &group, &root, &sub)) {
        if (im->err)
            return -im->err;
        say(im, line, "Unable to delete the registry key '%s': invalid root key", path);
        return 0;
    }
    struct op *o = op_add(im, OP_DELKEY);
    if (!o) {
        free(group);
        free(sub);
        return -ERROR_NOT_ENOUGH_MEMORY;
    }
    o->line = line;
    o->group = group;
    o->root = root;
    o->path = sub;
    return 0;
}

static int add_value(struct import *im, enum op_kind kind, unsigned line, const char *name,
                     uint32_t type, const uint8_t *data, size_t len)
{
    if (!im->have_key)
        return 0;
    struct op *o = op_add(im, kind);
    if (!o)
        return -ERROR_NOT_ENOUGH_MEMORY;
    o->line = line;
    o->group = strdup(im->cur_group);
    o->name = name ? strdup(name) : NULL;
    o->type = type;
    o->len = len;
    o->data = malloc(len ? len : 1);
    if (!o->group || (name && !o->name) || !o->data)
        return -ERROR_NOT_ENOUGH_MEMORY;
    if (len)
        memcpy(o->data, data, len);
    return 0;
}

static int sink_value(void *arg, unsigned line, const char *name, uint32_t type,
                      const uint8_t *data, size_t len)
{
    return add_value(arg, OP_VALUE, line, name, type, data, len);
}

static int sink_delete_value(void *arg, unsigned line, const char *name)
{
    return add_value(arg, OP_DELVALUE, line, name, 0, NULL, 0);
}

static void sink_diag(void *arg, unsigned line, const char *msg)
{
    struct import *im = arg;
    if (im->diag)
        im->diag(im->arg, line, msg);
}

static int op_cmp(const void *a, const void *b)
{
    const struct op *x = a, *y = b;
    int c = strcasecmp(x->group, y->group);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* fatal - errors that mean the storage failed, not that one line could not be applied. */
static bool fatal(int rc)
{
    return rc == ERROR_NOT_ENOUGH_MEMORY || rc == ERROR_DISK_FULL || rc == ERROR_BADDB ||
           rc == ERROR_REGISTRY_IO_FAILED || rc == ERROR_REGISTRY_CORRUPT;
}

/* group_anchor - a key in the group's hive to hold its transaction (the hive root). */
static int group_anchor(reg_ctx *ctx, const char *group, reg_key **out)
{
    if (!strcasecmp(group, "HKLM"))
        return reg_key_open_root(ctx, REG_ROOT_HKLM, out);
    reg_key *hku;
    int rc = reg_key_open_root(ctx, REG_ROOT_HKU, &hku);
    if (rc)
        return rc;
    rc = reg_key_create(hku, group + 4, 0, NULL, out, NULL);
    reg_key_close(hku);
    return rc;
}

/* view_root - a handle on root in the view the import was asked for. */
static int view_root(struct import *im, reg_root root, reg_key **out)
{
    reg_key *r;
    int rc = reg_key_open_root(im->ctx, root, &r);
    if (rc || !(im->flags & VIEW_FLAGS)) {
        *out = rc ? NULL : r;
        return rc;
    }
    rc = reg_key_open(r, NULL, im->flags & VIEW_FLAGS, out);
    reg_key_close(r);
    return rc;
}

static int apply_group(struct import *im, struct op *ops, size_t n)
{
    reg_key *anchor;
    int rc = group_anchor(im->ctx, ops[0].group, &anchor);
    if (rc) {
        if (fatal(rc))
            return rc;
        for (size_t i = 0; i < n; i++)
            if (ops[i].kind == OP_KEY)
                say(im, ops[i].line, "Unable to import the registry key '%s'", ops[i].path);
        return ERROR_SUCCESS;
    }
    if ((rc = reg_txn_begin(anchor))) {
        reg_key_close(anchor);
        return rc;
    }
    reg_key *cur = NULL, *roots[5] = {0};
    for (size_t i = 0; i < n && !fatal(rc); i++) {
        struct op *o = &ops[i];
        rc = ERROR_SUCCESS;
        if (o->kind == OP_KEY || o->kind == OP_DELKEY) {
            reg_key_close(cur);
            cur = NULL;
            if (!roots[o->root] && (rc = view_root(im, o->root, &roots[o->root])))
                break;
        }
        switch (o->kind) {
        case OP_KEY:
            rc = reg_key_create(roots[o->root], o->path, 0, NULL, &cur, NULL);
            if (rc && !fatal(rc))
                say(im, o->line, "Unable to import the registry key '%s'", o->path);
            break;
        case OP_DELKEY:
            /* A root alone is never deleted; a missing key is no error. */
            if (*o->path && (o->root != REG_ROOT_HKU || strchr(o->path, '\\'))) {
                rc = reg_key_delete_tree(roots[o->root], o->path);
                if (rc == ERROR_FILE_NOT_FOUND)
                    rc = ERROR_SUCCESS;
            }
            break;
        case OP_VALUE:
            if (cur)
                rc = reg_value_set(cur, o->name, o->type, o->data, o->len);
            if (rc && !fatal(rc))
                say(im, o->line, "Unable to set the value '%s'", o->name ? o->name : "(Default)");
            break;
        case OP_DELVALUE:
            if (cur) {
                rc = reg_value_delete(cur, o->name);
                if (rc == ERROR_FILE_NOT_FOUND)
                    rc = ERROR_SUCCESS;
            }
            break;
        }
    }
    reg_key_close(cur);
    for (int r = 0; r < 5; r++)
        reg_key_close(roots[r]);
    if (fatal(rc)) {
        reg_txn_abort(anchor);
    } else {
        rc = reg_txn_commit(anchor);
    }
    reg_key_close(anchor);
    return rc;
}

int reg_import(reg_ctx *ctx, const uint8_t *data, size_t len, unsigned flags, reg_diag_fn diag,
               void *arg)
{
    if (len > REG_MAX_IMPORT)
        return ERROR_INVALID_DATA;
    if ((flags & VIEW_FLAGS) == VIEW_FLAGS)
        return ERROR_INVALID_PARAMETER;
    struct import im = {.ctx = ctx, .flags = flags, .diag = diag, .arg = arg};
    regfile_sink sink = {sink_key, sink_delete_key, sink_value, sink_delete_value, sink_diag};
    int rc = regfile_parse(data, len, &sink, &im, NULL);
    if (!rc && im.err)
        rc = im.err;
    if (!rc) {
        if (im.n)
            qsort(im.ops, im.n, sizeof *im.ops, op_cmp);
        for (size_t i = 0; i < im.n && !rc;) {
            size_t j = i + 1;
            while (j < im.n && !strcasecmp(im.ops[j].group, im.ops[i].group))
                j++;
            rc = apply_group(&im, im.ops + i, j - i);
            i = j;
        }
    }
    for (size_t i = 0; i < im.n; i++) {
        free(im.ops[i].group);
        free(im.ops[i].path);
        free(im.ops[i].name);
        free(im.ops[i].data);
    }
    free(im.ops);
    return rc;
}
