/* copy.c - REG COPY: copy the values (and with /s the subkeys) of one key into another,
 * overwriting values of the same name after asking (Yes/No/All) unless /f. */
#include "reg_cli.h"

#include <stdlib.h>
#include <string.h>

typedef struct copy_state {
    bool force;   /* /f, or All was answered */
    bool recurse; /* /s */
} copy_state;

/* inside - key b lies below key a (same root, a's path a prefix of b's). */
static bool inside(const reg_cli_key *a, const reg_cli_key *b)
{
    if (a->root != b->root || !*b->sub)
        return false;
    if (!*a->sub)
        return true;
    bool found = false;
    for (const char *p = strchr(b->sub, '\\'); p && !found; p = strchr(p + 1, '\\')) {
        char *prefix = strndup(b->sub, (size_t)(p - b->sub));
        if (!prefix)
            return true; /* the careful answer: copy from a snapshot */
        found = reg_cli_name_equal(prefix, a->sub);
        free(prefix);
    }
    return found;
}

/* copy_values - vals into dst, asking about each value that dst already has. */
static int copy_values(copy_state *c, const reg_cli_values *vals, reg_key *dst,
                       const char *dst_path)
{
    int err = 0;
    for (size_t i = 0; !err && i < vals->n; i++) {
        const reg_cli_value *v = &vals->v[i];
        if (!c->force && reg_value_get(dst, v->name, NULL, NULL) == ERROR_SUCCESS) {
            const char *shown = *v->name ? v->name : reg_msg_text(REG_MSG_DEFAULT_NAME);
            reg_cli_answer ans = reg_cli_confirm(true, REG_MSG_PROMPT_COPY, shown, dst_path);
            if (ans == REG_CLI_NO)
                continue;
            if (ans == REG_CLI_ALL)
                c->force = true;
        }
        err = reg_value_set(dst, v->name, v->type, v->data, v->len);
    }
    return err;
}

/* copy_tree - src into dst, walking both. Each key's lists are read before anything is
 * written below it. */
static int copy_tree(copy_state *c, reg_key *src, reg_key *dst, const char *dst_path)
{
    reg_cli_values vals = {0};
    int err = reg_cli_values_load(src, &vals);
    if (!err)
        err = copy_values(c, &vals, dst, dst_path);
    reg_cli_values_free(&vals);
    if (err || !c->recurse)
        return err;
    reg_cli_names subs = {0};
    err = reg_cli_subkeys_load(src, &subs);
    for (size_t i = 0; !err && i < subs.n; i++) {
        const char *name = subs.v[i];
        char *child_path = reg_cli_join(dst_path, name);
        reg_key *s = NULL, *d = NULL;
        err = child_path ? reg_key_open(src, name, REG_READ, &s) : ERROR_NOT_ENOUGH_MEMORY;
        if (err == ERROR_FILE_NOT_FOUND) {
            err = 0; /* deleted meanwhile */
        } else if (!err) {
            err = reg_key_create(dst, name, REG_OPTION_NON_VOLATILE, NULL, &d, NULL);
            if (!err)
                err = copy_tree(c, s, d, child_path);
        }
        reg_key_close(s);
        reg_key_close(d);
        free(child_path);
    }
    reg_cli_names_free(&subs);
    return err;
}

/* A source subtree read into memory: used when the destination lies inside the source,
 * so that the copy holds the source as it was before the destination was created. */
typedef struct snap {
    char *name;
    reg_cli_values vals;
    struct snap *subs;
    size_t nsubs;
} snap;

static void snap_free(snap *s)
{
    for (size_t i = 0; i < s->nsubs; i++)
        snap_free(&s->subs[i]);
    free(s->subs);
    free(s->name);
    reg_cli_values_free(&s->vals);
}

static int snap_load(reg_key *key, snap *s)
{
    reg_cli_names names = {0};
    int err = reg_cli_values_load(key, &s->vals);
    if (!err)
        err = reg_cli_subkeys_load(key, &names);
    if (!err && names.n && !(s->subs = calloc(names.n, sizeof *s->subs)))
        err = ERROR_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; !err && i < names.n; i++) {
        reg_key *sub = NULL;
        err = reg_key_open(key, names.v[i], REG_READ, &sub);
        if (err == ERROR_FILE_NOT_FOUND) {
            err = 0; /* deleted meanwhile */
            continue;
        }
        snap *child = &s->subs[s->nsubs++];
        child->name = names.v[i];
        names.v[i] = NULL;
        if (!err)
            err = snap_load(sub, child);
        reg_key_close(sub);
    }
    reg_cli_names_free(&names);
    return err;
}

static int snap_write(copy_state *c, const snap *s, reg_key *dst, const char *dst_path)
{
    int err = copy_values(c, &s->vals, dst, dst_path);
    for (size_t i = 0; !err && i < s->nsubs; i++) {
        reg_key *d = NULL;
        char *child_path = reg_cli_join(dst_path, s->subs[i].name);
        err = child_path
                  ? reg_key_create(dst, s->subs[i].name, REG_OPTION_NON_VOLATILE, NULL, &d, NULL)
                  : ERROR_NOT_ENOUGH_MEMORY;
        if (!err)
            err = snap_write(c, &s->subs[i], d, child_path);
        reg_key_close(d);
        free(child_path);
    }
    return err;
}

int reg_cmd_copy(const reg_cli_args *a)
{
    const reg_cli_key *src_arg = &a->key[0], *dst_arg = &a->key[1];
    if (reg_cli_key_equal(src_arg, dst_arg)) {
        reg_cli_error(REG_MSG_SAME_KEY);
        return REG_CLI_EXIT_FAIL;
    }
    copy_state c = {.force = a->has[REG_COPY_F], .recurse = a->has[REG_COPY_S]};
    /* A destination inside the source would be copied into itself: read the source first. */
    bool from_snapshot = c.recurse && inside(src_arg, dst_arg);

    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    reg_key *src = NULL, *dst = NULL;
    snap snapshot = {0};
    unsigned disposition = 0;
    int err = reg_cli_key_open(ctx, src_arg, REG_READ | a->view, &src);
    if (!err && from_snapshot)
        err = snap_load(src, &snapshot);
    if (!err)
        err = reg_cli_key_create(ctx, dst_arg, a->view, &dst, &disposition);
    if (!err) {
        /* The library copies in one go when there is nothing to ask and the two trees are
         * apart; otherwise copy value by value, asking. */
        bool ask = !c.force && disposition != REG_CREATED_NEW_KEY;
        if (from_snapshot)
            err = snap_write(&c, &snapshot, dst, dst_arg->path);
        else if (ask || (c.recurse && inside(dst_arg, src_arg)))
            err = copy_tree(&c, src, dst, dst_arg->path);
        else
            err = reg_key_copy_tree(src, dst, c.recurse);
    }
    snap_free(&snapshot);
    int rc = err ? reg_cli_store_error(err) : reg_cli_success();
    reg_key_close(src);
    reg_key_close(dst);
    reg_ctx_close(ctx);
    return rc;
}
