/* compare.c - REG COMPARE: compare the values (one with /v or /ve) and with /s the subkeys
 * of two keys; "<" marks what only the first has or how it differs, ">" the second, "="
 * what both have alike. Exit 0 identical, 2 different, 1 error. */
#include "reg_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cmp_state {
    bool show_diff;    /* /od (the default) or /oa */
    bool show_same;    /* /os or /oa */
    bool recurse;      /* /s */
    const char *value; /* /v name or "" for /ve; NULL: every value */
    bool different;
    buf out;
} cmp_state;

/* emit - one entry: "<mark> KEY" and, for a value, its query line. */
static int emit(cmp_state *c, char mark, const char *path, const char *name, uint32_t type,
                const uint8_t *data, size_t len)
{
    if (mark != '=')
        c->different = true;
    if (mark == '=' ? !c->show_same : !c->show_diff)
        return 0;
    c->out.len = 0;
    int err = buf_printf(&c->out, "%c %s\n", mark, path);
    if (!err && name)
        err = reg_cli_format_value(&c->out, *name ? name : reg_msg_text(REG_MSG_DEFAULT_NAME), type,
                                   data ? data : (const uint8_t *)"", len, NULL, false);
    if (err)
        return ERROR_NOT_ENOUGH_MEMORY;
    reg_cli_write(&c->out);
    return 0;
}

static bool same_data(uint32_t t1, const buf *d1, uint32_t t2, const buf *d2)
{
    return t1 == t2 && d1->len == d2->len && (!d1->len || memcmp(d1->data, d2->data, d1->len) == 0);
}

/* compare_value - name in both keys; shown names: name1 and name2 as each key has it. */
static int compare_value(cmp_state *c, reg_key *k1, const char *path1, const char *name1,
                         reg_key *k2, const char *path2, const char *name2)
{
    buf d1 = BUF_INIT, d2 = BUF_INIT;
    uint32_t t1 = 0, t2 = 0;
    int e1 = reg_value_get(k1, name1, &t1, &d1);
    int e2 = reg_value_get(k2, name2, &t2, &d2);
    int err = 0;
    if (e1 && e1 != ERROR_FILE_NOT_FOUND)
        err = e1;
    else if (e2 && e2 != ERROR_FILE_NOT_FOUND)
        err = e2;
    else if (!e1 && !e2 && same_data(t1, &d1, t2, &d2))
        err = emit(c, '=', path1, name1, t1, d1.data, d1.len);
    else {
        if (!e1)
            err = emit(c, '<', path1, name1, t1, d1.data, d1.len);
        if (!err && !e2)
            err = emit(c, '>', path2, name2, t2, d2.data, d2.len);
    }
    buf_free(&d1);
    buf_free(&d2);
    return err;
}

static int compare_keys(cmp_state *c, reg_key *k1, const char *path1, reg_key *k2,
                        const char *path2)
{
    int err = 0;
    if (c->value) {
        err = compare_value(c, k1, path1, c->value, k2, path2, c->value);
    } else {
        reg_cli_values v1 = {0}, v2 = {0};
        err = reg_cli_values_load(k1, &v1);
        if (!err)
            err = reg_cli_values_load(k2, &v2);
        /* First's values in its order (with their match in the second), then the second's
         * values that the first lacks. */
        for (size_t i = 0; !err && i < v1.n; i++)
            err = compare_value(c, k1, path1, v1.v[i].name, k2, path2, v1.v[i].name);
        for (size_t i = 0; !err && i < v2.n; i++) {
            int e = reg_value_get(k1, v2.v[i].name, NULL, NULL);
            if (e == ERROR_FILE_NOT_FOUND)
                err = emit(c, '>', path2, v2.v[i].name, v2.v[i].type, v2.v[i].data, v2.v[i].len);
            else
                err = e;
        }
        reg_cli_values_free(&v1);
        reg_cli_values_free(&v2);
    }
    if (err || !c->recurse)
        return err;

    reg_cli_names s1 = {0}, s2 = {0};
    err = reg_cli_subkeys_load(k1, &s1);
    if (!err)
        err = reg_cli_subkeys_load(k2, &s2);
    for (size_t i = 0; !err && i < s1.n; i++) {
        reg_key *a = NULL, *b = NULL;
        char *p1 = reg_cli_join(path1, s1.v[i]);
        char *p2 = reg_cli_join(path2, s1.v[i]);
        if (!p1 || !p2)
            err = ERROR_NOT_ENOUGH_MEMORY;
        if (!err)
            err = reg_key_open(k1, s1.v[i], REG_READ, &a);
        if (!err) {
            err = reg_key_open(k2, s1.v[i], REG_READ, &b);
            if (err == ERROR_FILE_NOT_FOUND)
                err = emit(c, '<', p1, NULL, 0, NULL, 0);
            else if (!err)
                err = compare_keys(c, a, p1, b, p2);
        } else if (err == ERROR_FILE_NOT_FOUND) {
            err = 0; /* deleted meanwhile */
        }
        reg_key_close(a);
        reg_key_close(b);
        free(p1);
        free(p2);
    }
    for (size_t i = 0; !err && i < s2.n; i++) {
        reg_key *a = NULL;
        int e = reg_key_open(k1, s2.v[i], REG_READ, &a);
        reg_key_close(a);
        if (e == ERROR_FILE_NOT_FOUND) {
            char *p2 = reg_cli_join(path2, s2.v[i]);
            err = p2 ? emit(c, '>', p2, NULL, 0, NULL, 0) : ERROR_NOT_ENOUGH_MEMORY;
            free(p2);
        } else {
            err = e;
        }
    }
    reg_cli_names_free(&s1);
    reg_cli_names_free(&s2);
    return err;
}

int reg_cmd_compare(const reg_cli_args *a)
{
    const bool *has = a->has;
    if ((has[REG_COMPARE_V] && has[REG_COMPARE_VE]) ||
        has[REG_COMPARE_OA] + has[REG_COMPARE_OD] + has[REG_COMPARE_OS] + has[REG_COMPARE_ON] > 1)
        return reg_cli_syntax(a->op);
    const char *value = has[REG_COMPARE_VE] ? "" : a->val[REG_COMPARE_V];
    if (value && !reg_cli_utf8_ok(value))
        return REG_CLI_EXIT_FAIL;
    cmp_state c = {
        .show_diff = !has[REG_COMPARE_OS] && !has[REG_COMPARE_ON],
        .show_same = has[REG_COMPARE_OA] || has[REG_COMPARE_OS],
        .recurse = has[REG_COMPARE_S],
        .value = value,
    };

    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    reg_key *k1 = NULL, *k2 = NULL;
    int rc;
    int err = reg_cli_key_open(ctx, &a->key[0], REG_READ | a->view, &k1);
    if (!err)
        err = reg_cli_key_open(ctx, &a->key[1], REG_READ | a->view, &k2);
    if (!err)
        err = compare_keys(&c, k1, a->key[0].path, k2, a->key[1].path);
    if (err) {
        rc = reg_cli_store_error(err);
    } else {
        putchar('\n');
        puts(reg_msg_text(c.different ? REG_MSG_COMPARE_DIFFERENT : REG_MSG_COMPARE_IDENTICAL));
        rc = c.different ? REG_CLI_EXIT_DIFFERENT : REG_CLI_EXIT_OK;
    }
    buf_free(&c.out);
    reg_key_close(k1);
    reg_key_close(k2);
    reg_ctx_close(ctx);
    return rc;
}
