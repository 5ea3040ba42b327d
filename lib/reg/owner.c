/* owner.c - owners of owner-bound keys: a lock file per owner, write-locked for the owner's
 * life with an open-file-description lock, which the kernel drops on any death (SIGKILL
 * included). Readers test the lock; pids are never trusted, so pid reuse cannot fool them. */
#include "reg/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int reg_owner_new(reg_key *key, reg_owner **out)
{
    *out = NULL;
    if (!key || key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    reg_hive *h = key->hive;
    if (!h->writable)
        return ERROR_ACCESS_DENIED;
    reg_owner *o = calloc(1, sizeof *o);
    if (!o)
        return ERROR_NOT_ENOUGH_MEMORY;
    o->hive = h;
    o->fd = -1;
    int rc = base_random(o->token, sizeof o->token);
    if (rc) {
        free(o);
        return reg_errno_to_win32(rc);
    }
    buf dir = BUF_INIT;
    if (buf_printf(&dir, "%s/owners", h->dir) || !buf_cstr(&dir)) {
        free(o);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    if (mkdir((char *)dir.data, 0755) && errno != EEXIST) {
        rc = reg_errno_to_win32(errno);
        buf_free(&dir);
        free(o);
        return rc;
    }
    buf_free(&dir);
    o->path = reg_owner_path(h, o->token, false);
    if (!o->path) {
        free(o);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    /* Readable by all so that any reader of the hive can test the lock; only a writer of
     * the hive can take the write lock that means "alive". */
    o->fd = open(o->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        rc = reg_errno_to_win32(errno);
        free(o->path);
        free(o);
        return rc;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(o->fd, F_OFD_SETLK, &fl)) {
        rc = reg_errno_to_win32(errno);
        close(o->fd);
        unlink(o->path);
        free(o->path);
        free(o);
        return rc;
    }
    *out = o;
    return ERROR_SUCCESS;
}

int reg_owner_join(reg_key *key, const uint8_t token[REG_TOKEN_LEN], reg_owner **out)
{
    *out = NULL;
    if (!key || key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    reg_hive *h = key->hive;
    if (!h->writable)
        return ERROR_ACCESS_DENIED;
    reg_owner *o = calloc(1, sizeof *o);
    if (!o)
        return ERROR_NOT_ENOUGH_MEMORY;
    o->hive = h;
    o->shared = true;
    memcpy(o->token, token, REG_TOKEN_LEN);
    buf dir = BUF_INIT;
    int rc = ERROR_SUCCESS;
    if (buf_printf(&dir, "%s/owners", h->dir) || !buf_cstr(&dir))
        rc = ERROR_NOT_ENOUGH_MEMORY;
    else if (mkdir((char *)dir.data, 0755) && errno != EEXIST)
        rc = reg_errno_to_win32(errno);
    buf_free(&dir);
    if (!rc && !(o->path = reg_owner_path(h, token, true)))
        rc = ERROR_NOT_ENOUGH_MEMORY;
    /* Only the hive's own user may open it: any lock on it means "alive". */
    if (!rc && (o->fd = open(o->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        rc = reg_errno_to_win32(errno);
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (!rc && fcntl(o->fd, F_OFD_SETLK, &fl)) {
        rc = reg_errno_to_win32(errno);
        close(o->fd);
    }
    if (rc) {
        free(o->path);
        free(o);
        return rc;
    }
    *out = o;
    return ERROR_SUCCESS;
}

int reg_owner_held(reg_key *key, const uint8_t token[REG_TOKEN_LEN], bool *held)
{
    if (!key || key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    *held = reg_owner_alive(key->hive, token, true);
    return ERROR_SUCCESS;
}

void reg_owner_release(reg_owner *o)
{
    if (!o)
        return;
    /* Drop the lock first: from now on every reader sees the keys as gone (for a shared
     * owner: once no other process holds it); then purge them (the purge runs at the
     * start of every write transaction). */
    close(o->fd);
    reg_hive *h = o->hive;
    for (size_t i = 0; i < h->nowners && !o->shared; i++) {
        if (!h->owners[i].shared && !memcmp(h->owners[i].token, o->token, REG_TOKEN_LEN)) {
            h->owners[i].dead = true;
            if (h->owners[i].fd >= 0)
                close(h->owners[i].fd);
            h->owners[i].fd = -1;
        }
    }
    if (!h->wtxn) {
        MDB_txn *txn;
        bool own;
        if (reg_hive_wbegin(h, &txn, &own) == ERROR_SUCCESS)
            reg_hive_wend(h, txn, own, ERROR_SUCCESS);
    }
    if (!o->shared)
        unlink(o->path);
    free(o->path);
    free(o);
}
