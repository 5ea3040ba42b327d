/* notify.c - change notification (RegNotifyChangeKeyValue) across processes: writers add a
 * journal record per change and touch the hive's notify file after commit; a watcher polls
 * an inotify descriptor on that file and reads the journal records since it was armed. */
#include "reg/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

struct reg_notify {
    reg_hive *hive;
    uint64_t id;
    bool subtree;
    unsigned filter;
    uint64_t seen; /* journal seq checked up to */
    int fd;
};

static int current_seq(reg_hive *h, uint64_t *seq)
{
    MDB_txn *txn;
    int rc = reg_hive_rtxn(h, &txn);
    if (rc)
        return rc;
    MDB_val k = {3, "seq"}, v;
    rc = mdb_get(txn, h->db_meta, &k, &v);
    if (!rc && v.mv_size == 8)
        memcpy(seq, v.mv_data, 8);
    reg_hive_rtxn_done(h, txn);
    return rc ? reg_mdb_err(rc) : ERROR_SUCCESS;
}

int reg_notify_new(reg_key *key, bool subtree, unsigned filter, reg_notify **out)
{
    *out = NULL;
    if (!key || key->kind != KH_REAL)
        return ERROR_INVALID_HANDLE;
    reg_notify *n = calloc(1, sizeof *n);
    if (!n)
        return ERROR_NOT_ENOUGH_MEMORY;
    n->hive = key->hive;
    n->id = key->id;
    n->subtree = subtree;
    n->filter = filter;
    n->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    buf p = BUF_INIT;
    int rc = n->fd < 0 ? reg_errno_to_win32(errno) : ERROR_SUCCESS;
    if (!rc && (buf_printf(&p, "%s/notify", key->hive->dir) || !buf_cstr(&p)))
        rc = ERROR_NOT_ENOUGH_MEMORY;
    if (!rc) {
        /* The file exists once anybody wrote; make it now if we may, so we can watch it. */
        int fd = open((char *)p.data, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
        if (inotify_add_watch(n->fd, (char *)p.data, IN_ATTRIB | IN_MODIFY) < 0)
            rc = reg_errno_to_win32(errno);
    }
    buf_free(&p);
    if (!rc)
        rc = current_seq(n->hive, &n->seen);
    if (rc) {
        reg_notify_free(n);
        return rc;
    }
    *out = n;
    return ERROR_SUCCESS;
}

int reg_notify_fd(const reg_notify *n)
{
    return n->fd;
}

static bool matches(const reg_notify *n, const uint8_t *rec, size_t len)
{
    if (len < 8)
        return true;
    uint32_t filter, cnt;
    memcpy(&filter, rec, 4);
    memcpy(&cnt, rec + 4, 4);
    if (len < 8 + 8ull * cnt)
        return true;
    if (!(filter & n->filter))
        return false;
    for (uint32_t i = 0; i < cnt; i++) {
        uint64_t id;
        memcpy(&id, rec + 8 + 8 * i, 8);
        if (id == n->id)
            return i == 0 || n->subtree;
    }
    return false;
}

int reg_notify_check(reg_notify *n, bool *fired)
{
    *fired = false;
    char evbuf[4096];
    while (read(n->fd, evbuf, sizeof evbuf) > 0)
        ;
    reg_hive *h = n->hive;
    MDB_txn *txn;
    int rc = reg_hive_rtxn(h, &txn);
    if (rc)
        return rc;
    MDB_val k = {3, "seq"}, v;
    uint64_t last = n->seen;
    if (mdb_get(txn, h->db_meta, &k, &v) == 0 && v.mv_size == 8)
        memcpy(&last, v.mv_data, 8);
    if (last > n->seen) {
        MDB_cursor *cur;
        rc = reg_mdb_err(mdb_cursor_open(txn, h->db_journal, &cur));
        if (!rc) {
            uint8_t kb[8];
            reg_be64(kb, n->seen + 1);
            MDB_val jk = {8, kb}, jv;
            int crc = mdb_cursor_get(cur, &jk, &jv, MDB_SET_RANGE);
            /* Records older than the journal keeps are gone: a watcher that far behind
             * cannot tell, so it fires. */
            if (crc || reg_rd_be64(jk.mv_data) != n->seen + 1)
                *fired = true;
            while (!crc && !*fired && reg_rd_be64(jk.mv_data) <= last) {
                if (matches(n, jv.mv_data, jv.mv_size))
                    *fired = true;
                crc = mdb_cursor_get(cur, &jk, &jv, MDB_NEXT);
            }
            mdb_cursor_close(cur);
        }
        n->seen = last;
    }
    reg_hive_rtxn_done(h, txn);
    return rc;
}

void reg_notify_free(reg_notify *n)
{
    if (!n)
        return;
    if (n->fd >= 0)
        close(n->fd);
    free(n);
}
