/* import.c - REG IMPORT: apply a .reg file. Lines the parser skips are reported on stderr
 * with their line number; like reg.exe, the import still succeeds. */
#include "reg_cli.h"

#include <errno.h>
#include <stdio.h>

/* import_diag - one skipped line: "reg: FILE:LINE: what was wrong". */
static void import_diag(void *arg, unsigned line, const char *msg)
{
    fflush(stdout);
    fprintf(stderr, reg_msg_text(REG_MSG_IMPORT_DIAG), (const char *)arg, line, msg);
    fputc('\n', stderr);
}

int reg_cmd_import(const reg_cli_args *a)
{
    const char *file = a->pos[0];
    buf data = BUF_INIT;
    int e = base_read_file(file, REG_MAX_IMPORT, &data);
    if (e) {
        buf_free(&data);
        if (e == ENOENT) {
            reg_cli_error(REG_MSG_FILE_OPEN);
            return REG_CLI_EXIT_FAIL;
        }
        return reg_cli_errno_error(e);
    }
    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx)) {
        buf_free(&data);
        return REG_CLI_EXIT_FAIL;
    }
    int err = reg_import(ctx, data.data ? data.data : (const uint8_t *)"", data.len, a->view,
                         import_diag, (void *)file);
    int rc;
    if (err == ERROR_INVALID_DATA) {
        reg_cli_error(REG_MSG_NOT_REG_FILE);
        rc = REG_CLI_EXIT_FAIL;
    } else {
        rc = err ? reg_cli_store_error(err) : reg_cli_success();
    }
    reg_ctx_close(ctx);
    buf_free(&data);
    return rc;
}
