/* hive.c - REG SAVE, RESTORE, LOAD and UNLOAD: keys to and from Windows hive (regf) files
 * through the library's reg_hive_* functions. */
#include "reg_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int reg_cmd_save(const reg_cli_args *a)
{
    const reg_cli_key *k = &a->key[0];
    const char *file = a->pos[1];
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    reg_key *key = NULL;
    char *tmp = NULL;
    int rc;
    int err = reg_cli_key_open(ctx, k, REG_READ | a->view, &key);
    if (err) {
        rc = reg_cli_store_error(err);
        goto done;
    }
    if (!a->has[REG_SAVE_Y] && access(file, F_OK) == 0 &&
        reg_cli_confirm(false, REG_MSG_PROMPT_FILE, file) != REG_CLI_YES) {
        rc = reg_cli_cancelled();
        goto done;
    }
    /* Save beside the file and rename over it: RegSaveKey will not write over a file, and
     * the old file stays whole until the new one is complete. */
    uint32_t r;
    if (base_random(&r, sizeof r))
        r = (uint32_t)getpid();
    if (asprintf(&tmp, "%s.tmp%08x", file, r) < 0) {
        tmp = NULL;
        rc = reg_cli_store_error(ERROR_NOT_ENOUGH_MEMORY);
        goto done;
    }
    err = reg_hive_save(key, tmp);
    if (err) {
        unlink(tmp);
        rc = reg_cli_store_error(err);
        goto done;
    }
    if (rename(tmp, file) != 0) {
        int e = errno;
        unlink(tmp);
        rc = reg_cli_errno_error(e);
        goto done;
    }
    rc = reg_cli_success();
done:
    free(tmp);
    reg_key_close(key);
    reg_ctx_close(ctx);
    return rc;
}

/* file_readable - check a hive file before the library sees it, so that a missing file is
 * reported as a missing file and not as a missing key. Prints the error. */
static bool file_readable(const char *file)
{
    if (access(file, R_OK) == 0)
        return true;
    reg_cli_errno_error(errno);
    return false;
}

int reg_cmd_restore(const reg_cli_args *a)
{
    if (!file_readable(a->pos[1]))
        return REG_CLI_EXIT_FAIL;
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    reg_key *key = NULL;
    int err = reg_cli_key_open(ctx, &a->key[0], REG_READ | REG_WRITE | a->view, &key);
    if (!err)
        err = reg_hive_restore(key, a->pos[1]);
    int rc = err ? reg_cli_store_error(err) : reg_cli_success();
    reg_key_close(key);
    reg_ctx_close(ctx);
    return rc;
}

/* hive_name - LOAD and UNLOAD name a hive as HKLM\name or HKU\name: one key below one of
 * those two roots. Prints the error. */
static bool hive_name(const reg_cli_args *a, const reg_cli_key *k)
{
    if ((k->root == REG_ROOT_HKLM || k->root == REG_ROOT_HKU) && *k->sub && !strchr(k->sub, '\\'))
        return true;
    reg_cli_error(REG_MSG_BAD_KEY, a->op->name);
    return false;
}

int reg_cmd_load(const reg_cli_args *a)
{
    const reg_cli_key *k = &a->key[0];
    if (!hive_name(a, k) || !file_readable(a->pos[1]))
        return REG_CLI_EXIT_FAIL;
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    int err = reg_hive_load(ctx, k->root, k->sub, a->pos[1]);
    int rc = err ? reg_cli_store_error(err) : reg_cli_success();
    reg_ctx_close(ctx);
    return rc;
}

int reg_cmd_unload(const reg_cli_args *a)
{
    const reg_cli_key *k = &a->key[0];
    if (!hive_name(a, k))
        return REG_CLI_EXIT_FAIL;
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    int err = reg_hive_unload(ctx, k->root, k->sub);
    int rc = err ? reg_cli_store_error(err) : reg_cli_success();
    reg_ctx_close(ctx);
    return rc;
}
