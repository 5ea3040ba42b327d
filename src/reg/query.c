/* query.c - REG QUERY: list a key's values and subkeys in reg.exe's layout, one value
 * (/v, /ve), recursively (/s), or search names and data (/f, /k, /d, /c, /e, /t). */
#include "reg_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

typedef struct query_state {
    const char *sep; /* /se: MULTI_SZ separator in output, NULL for \0 */
    bool verbose;    /* /z */
    bool recurse;    /* /s */
    /* search mode (/f or /t) */
    bool in_keys, in_names, in_data;
    bool case_sensitive, exact;
    uint32_t type_mask; /* bit per type; 0: every type */
    uint16_t *pattern;  /* UTF-16 units, upper-cased unless /c */
    size_t pattern_len;
    unsigned matches;
    buf out; /* output of the key being shown, written once it is complete */
} query_state;

static void flush_out(query_state *q)
{
    reg_cli_write(&q->out);
    q->out.len = 0;
}

/* to_units - s as UTF-16 units, upper-cased when fold; *out is malloc'ed. */
static int to_units(const char *s, bool fold, uint16_t **out, size_t *n)
{
    buf b = BUF_INIT;
    int err = base_utf8_to_utf16(s, strlen(s), &b);
    if (err) {
        buf_free(&b);
        return err;
    }
    *n = b.len / 2;
    *out = malloc((*n ? *n : 1) * sizeof **out);
    if (!*out) {
        buf_free(&b);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    for (size_t i = 0; i < *n; i++) {
        uint16_t u = (uint16_t)(b.data[2 * i] | b.data[2 * i + 1] << 8);
        if (fold && (u < 0xd800 || u > 0xdfff))
            u = (uint16_t)towupper(u);
        (*out)[i] = u;
    }
    buf_free(&b);
    return 0;
}

/* glob - p matches all of s, with * for any run and ? for one unit. Greedy with one
 * backtrack point, so linear in practice. */
static bool glob(const uint16_t *p, size_t pn, const uint16_t *s, size_t sn)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < sn) {
        if (pi < pn && (p[pi] == '?' || p[pi] == s[si])) {
            pi++;
            si++;
        } else if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* matches - the search pattern against text (the pattern carries the * around it that
 * makes a match anywhere in the text, unless /e asked for exact matches). */
static bool matches(const query_state *q, const char *text)
{
    uint16_t *s;
    size_t n;
    if (to_units(text, !q->case_sensitive, &s, &n))
        return false;
    bool hit = glob(q->pattern, q->pattern_len, s, n);
    free(s);
    return hit;
}

static const char *shown_name(const char *name)
{
    return *name ? name : reg_msg_text(REG_MSG_DEFAULT_NAME);
}

static int add_value_line(query_state *q, const char *name, uint32_t type, const uint8_t *data,
                          size_t len)
{
    if (reg_cli_format_value(&q->out, shown_name(name), type, data, len, q->sep, q->verbose))
        return ERROR_NOT_ENOUGH_MEMORY;
    return 0;
}

/* open_child - a subkey found by enumeration; one deleted meanwhile is skipped (*key NULL). */
static int open_child(reg_key *parent, const char *name, reg_key **key)
{
    *key = NULL;
    int err = reg_key_open(parent, name, REG_READ, key);
    if (err == ERROR_FILE_NOT_FOUND || err == ERROR_KEY_DELETED)
        return 0;
    return err;
}

/* query_all - the plain listing. The queried key shows a header only when it has values;
 * with /s every subkey shows its header and a blank line, values or not. */
static int query_all(query_state *q, reg_key *key, const char *path, bool recursing)
{
    reg_cli_values vals = {0};
    reg_cli_names subs = {0};
    int err = reg_cli_values_load(key, &vals);
    if (!err && (vals.n || recursing) && buf_printf(&q->out, "%s\n", path))
        err = ERROR_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; !err && i < vals.n; i++)
        err = add_value_line(q, vals.v[i].name, vals.v[i].type, vals.v[i].data, vals.v[i].len);
    if (!err && (vals.n || recursing) && buf_addc(&q->out, '\n'))
        err = ERROR_NOT_ENOUGH_MEMORY;
    flush_out(q);
    if (!err)
        err = reg_cli_subkeys_load(key, &subs);
    for (size_t i = 0; !err && i < subs.n; i++) {
        char *child = reg_cli_join(path, subs.v[i]);
        if (!child) {
            err = ERROR_NOT_ENOUGH_MEMORY;
            break;
        }
        if (q->recurse) {
            reg_key *sub;
            err = open_child(key, subs.v[i], &sub);
            if (!err && sub)
                err = query_all(q, sub, child, true);
            reg_key_close(sub);
        } else if (buf_printf(&q->out, "%s\n", child)) {
            err = ERROR_NOT_ENOUGH_MEMORY;
        }
        free(child);
        flush_out(q);
    }
    reg_cli_values_free(&vals);
    reg_cli_names_free(&subs);
    return err;
}

/* query_value_tree - /v or /ve with /s: every key of the subtree that has the value. */
static int query_value_tree(query_state *q, reg_key *key, const char *path, const char *name,
                            const char *typed)
{
    buf data = BUF_INIT;
    uint32_t type;
    int err = reg_value_get(key, name, &type, &data);
    if (err == ERROR_SUCCESS) {
        q->matches++;
        if (buf_printf(&q->out, "%s\n", path) ||
            add_value_line(q, typed, type, data.data ? data.data : (const uint8_t *)"", data.len) ||
            buf_addc(&q->out, '\n'))
            err = ERROR_NOT_ENOUGH_MEMORY;
        flush_out(q);
    } else if (err == ERROR_FILE_NOT_FOUND) {
        err = 0;
    }
    buf_free(&data);
    reg_cli_names subs = {0};
    if (!err)
        err = reg_cli_subkeys_load(key, &subs);
    for (size_t i = 0; !err && i < subs.n; i++) {
        reg_key *sub;
        char *child = reg_cli_join(path, subs.v[i]);
        if (!child)
            err = ERROR_NOT_ENOUGH_MEMORY;
        if (!err)
            err = open_child(key, subs.v[i], &sub);
        if (!err && sub) {
            err = query_value_tree(q, sub, child, name, typed);
            reg_key_close(sub);
        }
        free(child);
    }
    reg_cli_names_free(&subs);
    return err;
}

/* search_tree - /f or /t: the values of key that match, its subkeys whose names match,
 * and with /s the same below. name_matched: key's own name matched (shown by its parent's
 * search, printed here so that the path is printed once). */
static int search_tree(query_state *q, reg_key *key, const char *path, bool name_matched)
{
    reg_cli_values vals = {0};
    reg_cli_names subs = {0};
    buf text = BUF_INIT;
    buf lines = BUF_INIT;
    unsigned hits = 0;
    int err = 0;
    if (name_matched) {
        q->matches++;
        if (buf_printf(&q->out, "%s\n", path))
            err = ERROR_NOT_ENOUGH_MEMORY;
    }
    if (!err && (q->in_names || q->in_data))
        err = reg_cli_values_load(key, &vals);
    for (size_t i = 0; !err && i < vals.n; i++) {
        const reg_cli_value *v = &vals.v[i];
        if (q->type_mask && (v->type >= 32 || !(q->type_mask & (1u << v->type))))
            continue;
        bool hit = q->in_names && matches(q, shown_name(v->name));
        if (!hit && q->in_data) {
            text.len = 0;
            if (reg_cli_format_data(&text, v->type, v->data, v->len, q->sep) || !buf_cstr(&text))
                err = ERROR_NOT_ENOUGH_MEMORY;
            else
                hit = matches(q, (const char *)text.data);
        }
        if (!err && hit) {
            hits++;
            if (reg_cli_format_value(&lines, shown_name(v->name), v->type, v->data, v->len, q->sep,
                                     q->verbose))
                err = ERROR_NOT_ENOUGH_MEMORY;
        }
    }
    if (!err && hits) {
        q->matches += hits;
        if ((!name_matched && buf_printf(&q->out, "%s\n", path)) ||
            buf_add(&q->out, lines.data, lines.len) || buf_addc(&q->out, '\n'))
            err = ERROR_NOT_ENOUGH_MEMORY;
    }
    flush_out(q);
    if (!err)
        err = reg_cli_subkeys_load(key, &subs);
    for (size_t i = 0; !err && i < subs.n; i++) {
        bool hit = q->in_keys && matches(q, subs.v[i]);
        if (!hit && !q->recurse)
            continue;
        char *child = reg_cli_join(path, subs.v[i]);
        if (!child) {
            err = ERROR_NOT_ENOUGH_MEMORY;
            break;
        }
        if (q->recurse) {
            reg_key *sub;
            err = open_child(key, subs.v[i], &sub);
            if (!err && sub)
                err = search_tree(q, sub, child, hit);
            reg_key_close(sub);
        } else {
            q->matches++;
            if (buf_printf(&q->out, "%s\n", child))
                err = ERROR_NOT_ENOUGH_MEMORY;
            flush_out(q);
        }
        free(child);
    }
    reg_cli_values_free(&vals);
    reg_cli_names_free(&subs);
    buf_free(&text);
    buf_free(&lines);
    return err;
}

/* parse_types - /t: type names separated by commas. */
static bool parse_types(const char *list, uint32_t *mask)
{
    char *copy = strdup(list);
    if (!copy)
        return false;
    bool ok = true;
    char *save = NULL;
    *mask = 0;
    for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save)) {
        uint32_t type;
        ok = reg_cli_type_parse(t, &type);
        if (ok)
            *mask |= 1u << type;
    }
    free(copy);
    return ok && *mask;
}

int reg_cmd_query(const reg_cli_args *a)
{
    const bool *has = a->has;
    const char *value = a->val[REG_QUERY_V];
    bool search = has[REG_QUERY_F] || has[REG_QUERY_T];
    bool names_only = has[REG_QUERY_V] && !value; /* /v without a name, with /f */
    if ((has[REG_QUERY_V] && has[REG_QUERY_VE]) ||
        ((has[REG_QUERY_K] || has[REG_QUERY_D] || has[REG_QUERY_C] || has[REG_QUERY_E]) &&
         !has[REG_QUERY_F]) ||
        (names_only && !has[REG_QUERY_F]) || ((value || has[REG_QUERY_VE]) && search))
        return reg_cli_syntax(a->op);
    const char *sep = a->val[REG_QUERY_SE];
    if (sep && !reg_cli_one_char(sep))
        return reg_cli_syntax(a->op);

    query_state q = {.sep = sep, .verbose = has[REG_QUERY_Z], .recurse = has[REG_QUERY_S]};
    int err;
    if (has[REG_QUERY_T] && !parse_types(a->val[REG_QUERY_T], &q.type_mask)) {
        reg_cli_error(REG_MSG_BAD_TYPE, a->val[REG_QUERY_T]);
        return REG_CLI_EXIT_FAIL;
    }
    if ((value && !reg_cli_utf8_ok(value)) ||
        (a->val[REG_QUERY_F] && !reg_cli_utf8_ok(a->val[REG_QUERY_F])))
        return REG_CLI_EXIT_FAIL;
    if (search) {
        q.case_sensitive = has[REG_QUERY_C];
        q.exact = has[REG_QUERY_E];
        q.in_keys = has[REG_QUERY_K];
        q.in_names = names_only;
        q.in_data = has[REG_QUERY_D];
        if (!q.in_keys && !q.in_names && !q.in_data) {
            /* Everything, except that a type filter is about values, not key names. */
            q.in_keys = !has[REG_QUERY_T];
            q.in_names = q.in_data = true;
        }
        const char *pattern = has[REG_QUERY_F] ? a->val[REG_QUERY_F] : "*";
        char *wrapped = NULL;
        if (!q.exact && asprintf(&wrapped, "*%s*", pattern) < 0)
            return reg_cli_store_error(ERROR_NOT_ENOUGH_MEMORY);
        err = to_units(wrapped ? wrapped : pattern, !q.case_sensitive, &q.pattern, &q.pattern_len);
        free(wrapped);
        if (err)
            return reg_cli_store_error(ERROR_NOT_ENOUGH_MEMORY);
    }

    const reg_cli_key *k = &a->key[0];
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx)) {
        free(q.pattern);
        return REG_CLI_EXIT_FAIL;
    }
    reg_key *key = NULL;
    int rc = REG_CLI_EXIT_OK;
    err = reg_cli_key_open(ctx, k, REG_READ | a->view, &key);
    if (err) {
        rc = reg_cli_store_error(err);
        goto out;
    }

    if (search) {
        putchar('\n');
        err = search_tree(&q, key, k->path, false);
        if (!err) {
            reg_cli_out(REG_MSG_SEARCH_END, q.matches);
            putchar('\n');
            /* Like reg.exe, a search that found nothing fails. */
            rc = q.matches ? REG_CLI_EXIT_OK : REG_CLI_EXIT_FAIL;
        }
    } else if (value || has[REG_QUERY_VE]) {
        const char *name = value ? value : "";
        /* The name is shown as typed, not as stored. */
        const char *typed = value ? value : reg_msg_text(REG_MSG_DEFAULT_NAME);
        if (q.recurse) {
            putchar('\n');
            err = query_value_tree(&q, key, k->path, name, typed);
            if (!err) {
                reg_cli_out(REG_MSG_SEARCH_END, q.matches);
                putchar('\n');
                rc = q.matches ? REG_CLI_EXIT_OK : REG_CLI_EXIT_FAIL;
            }
        } else {
            buf data = BUF_INIT;
            uint32_t type;
            err = reg_value_get(key, name, &type, &data);
            if (err == ERROR_FILE_NOT_FOUND && !value) {
                /* An unset default value is shown, as reg.exe does, not an error. */
                err = 0;
                if (buf_printf(&q.out, "\n%s\n", k->path) ||
                    reg_cli_format_value(&q.out, typed, REG_SZ, NULL, 0, sep, q.verbose) ||
                    buf_addc(&q.out, '\n'))
                    err = ERROR_NOT_ENOUGH_MEMORY;
            } else if (!err) {
                if (buf_printf(&q.out, "\n%s\n", k->path) ||
                    add_value_line(&q, typed, type, data.data ? data.data : (const uint8_t *)"",
                                   data.len) ||
                    buf_addc(&q.out, '\n'))
                    err = ERROR_NOT_ENOUGH_MEMORY;
            }
            buf_free(&data);
            flush_out(&q);
        }
    } else {
        putchar('\n');
        err = query_all(&q, key, k->path, false);
    }
    if (err)
        rc = reg_cli_store_error(err);
out:
    reg_key_close(key);
    reg_ctx_close(ctx);
    buf_free(&q.out);
    free(q.pattern);
    return rc;
}
