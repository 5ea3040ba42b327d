/* export.c - REG EXPORT: write a key and its subtree to a .reg file (regedit's version 5
 * format, UTF-16LE), replacing the file atomically; an existing file is overwritten only
 * after asking, or with /y. */
#include "reg_cli.h"

#include <errno.h>
#include <unistd.h>

/* Files are created 0666 less the umask, as any editor would create them. */
#define REG_EXPORT_FILE_MODE 0666

int reg_cmd_export(const reg_cli_args *a)
{
    const reg_cli_key *k = &a->key[0];
    const char *file = a->pos[1];
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx))
        return REG_CLI_EXIT_FAIL;
    reg_key *key = NULL;
    buf out = BUF_INIT;
    int rc;
    int err = reg_cli_key_open(ctx, k, REG_READ | a->view, &key);
    if (err) {
        rc = reg_cli_store_error(err);
        goto done;
    }
    if (!a->has[REG_EXPORT_Y] && access(file, F_OK) == 0 &&
        reg_cli_confirm(false, REG_MSG_PROMPT_FILE, file) != REG_CLI_YES) {
        rc = reg_cli_cancelled();
        goto done;
    }
    err = reg_export(key, k->path, 0, &out);
    if (err) {
        rc = reg_cli_store_error(err);
        goto done;
    }
    /* open() in base_write_file_atomic applies the umask to the mode. */
    int e = base_write_file_atomic(file, out.data ? out.data : (const uint8_t *)"", out.len,
                                   REG_EXPORT_FILE_MODE);
    rc = e ? reg_cli_errno_error(e) : reg_cli_success();
done:
    buf_free(&out);
    reg_key_close(key);
    reg_ctx_close(ctx);
    return rc;
}
