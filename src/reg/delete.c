/* delete.c - REG DELETE: a key and its subtree, one value (/v, /ve) or all values (/va),
 * after asking unless /f. Root keys are never deleted. */
#include "reg_cli.h"

#include <stdio.h>

/* delete_all_values - /va: the values of key, not its subkeys, in one transaction so that
 * a failure leaves them all. */
static int delete_all_values(reg_key *key)
{
    reg_cli_values vals = {0};
    int err = reg_cli_values_load(key, &vals);
    if (err || !vals.n) {
        reg_cli_values_free(&vals);
        return err;
    }
    err = reg_txn_begin(key);
    if (!err) {
        for (size_t i = 0; !err && i < vals.n; i++)
            err = reg_value_delete(key, vals.v[i].name);
        if (err)
            reg_txn_abort(key);
        else
            err = reg_txn_commit(key);
    }
    reg_cli_values_free(&vals);
    return err;
}

int reg_cmd_delete(const reg_cli_args *a)
{
    const bool *has = a->has;
    if (has[REG_DELETE_V] + has[REG_DELETE_VE] + has[REG_DELETE_VA] > 1)
        return reg_cli_syntax(a->op);
    const char *value = a->val[REG_DELETE_V];
    if (value && !reg_cli_utf8_ok(value))
        return REG_CLI_EXIT_FAIL;
    const reg_cli_key *k = &a->key[0];
    bool whole_key = !has[REG_DELETE_V] && !has[REG_DELETE_VE] && !has[REG_DELETE_VA];
    if (whole_key && !*k->sub) {
        reg_cli_error(REG_MSG_ROOT_DELETE, k->path);
        return REG_CLI_EXIT_FAIL;
    }

    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    reg_key *key = NULL, *root = NULL;
    int rc = REG_CLI_EXIT_OK;
    /* Open first, so that nobody is asked about a key that is not there. */
    int err = reg_cli_key_open(ctx, k, REG_READ | REG_WRITE | a->view, &key);
    if (err) {
        rc = reg_cli_store_error(err);
        goto out;
    }
    const char *name = value ? value : "";
    if (!whole_key && !has[REG_DELETE_VA]) {
        err = reg_value_get(key, name, NULL, NULL);
        if (err) {
            rc = reg_cli_store_error(err);
            goto out;
        }
    }
    if (!has[REG_DELETE_F]) {
        reg_cli_answer ans;
        if (whole_key)
            ans = reg_cli_confirm(false, REG_MSG_PROMPT_DELETE_KEY, k->path);
        else if (has[REG_DELETE_VA])
            ans = reg_cli_confirm(false, REG_MSG_PROMPT_DELETE_ALL, k->path);
        else
            ans = reg_cli_confirm(false, REG_MSG_PROMPT_DELETE_VALUE,
                                  *name ? name : reg_msg_text(REG_MSG_DEFAULT_NAME));
        if (ans != REG_CLI_YES) {
            rc = reg_cli_cancelled();
            goto out;
        }
    }
    if (whole_key) {
        reg_key_close(key);
        key = NULL;
        err = reg_cli_root_open(ctx, k->root, a->view, &root);
        if (!err)
            err = reg_key_delete_tree(root, k->sub);
    } else if (has[REG_DELETE_VA]) {
        err = delete_all_values(key);
    } else {
        err = reg_value_delete(key, name);
    }
    rc = err ? reg_cli_store_error(err) : reg_cli_success();
out:
    reg_key_close(key);
    reg_key_close(root);
    reg_ctx_close(ctx);
    return rc;
}
