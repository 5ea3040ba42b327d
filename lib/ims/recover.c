/* recover.c - start-up recovery of the spool: what is in Work was never acknowledged and goes;
 * what is in In was, and is handed back for delivery; what cannot be read goes to In/Archive. */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

static bool is_regular(int dirfd, const struct dirent *d)
{
    if (d->d_type == DT_REG)
        return true;
    if (d->d_type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* clean_work - delete every file in Work: none of them was acknowledged. */
static size_t clean_work(int work_fd)
{
    DIR *dir = base_opendirat(work_fd, ".");
    if (!dir)
        return 0;
    size_t removed = 0;
    struct dirent *d;
    /* Recycled files (recycle.c) are empty and were no message: removed, not counted. */
    while ((d = readdir(dir)))
        if (is_regular(work_fd, d) && unlinkat(work_fd, d->d_name, 0) == 0 &&
            strncmp(d->d_name, IMS_RECYCLE_PREFIX, strlen(IMS_RECYCLE_PREFIX)))
            removed++;
    closedir(dir);
    return removed;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* check_in_file - true when In/<name> is a spool file of ours whose id is its name and whose
 * checksums match (*torn set when they do not: a commit round renames its files into In before
 * the one sync that makes them durable, so a file caught by a crash in between is there in
 * part, and was never acknowledged). */
static bool check_in_file(int in_fd, const char *name, int *err, bool *torn)
{
    *err = 0;
    *torn = false;
    if (!ims_spool_id_valid(name))
        return false;
    int fd = openat(in_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return false;
    }
    ims_spool_file f;
    int rc = ims_spool_file_read(fd, &f);
    if (!rc) {
        rc = ims_spool_file_verify(fd, &f);
        *torn = rc == EBADMSG;
        if (!rc && strcmp(f.id, name))
            rc = EBADMSG;
        ims_spool_file_free(&f);
    }
    close(fd);
    if (rc && rc != EBADMSG)
        *err = rc;
    return rc == 0;
}

/* scan_in - the acknowledged messages in In (sorted: ids start with the time), and files that
 * are not spool files moved to In/Archive. */
static int scan_in(int in_fd, const char *root, ims_log *log, ims_id_list *out, size_t *archived)
{
    DIR *dir = base_opendirat(in_fd, ".");
    if (!dir)
        return errno;
    int archive_fd = openat(in_fd, "Archive", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    struct dirent *d;
    while (!rc && (d = readdir(dir))) {
        if (!is_regular(in_fd, d))
            continue;
        int err;
        bool torn;
        if (check_in_file(in_fd, d->d_name, &err, &torn)) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? out->cap * 2 : 64;
                void *p = realloc(out->ids, cap * sizeof *out->ids);
                if (!p) {
                    rc = ENOMEM;
                    break;
                }
                out->ids = p;
                out->cap = cap;
            }
            memcpy(out->ids[out->n++], d->d_name, IMS_QUEUE_ID_LEN + 1);
            continue;
        }
        if (err) {
            /* Unreadable now (a permission, an I/O error): leave it where it is. */
            ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INTERNAL, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                          "Unable to read the spool file %s/In/%s: %s", root, d->d_name,
                          strerror(err));
            continue;
        }
        int mv = archive_fd < 0                                      ? errno
                 : renameat(in_fd, d->d_name, archive_fd, d->d_name) ? errno
                                                                     : 0;
        if (!mv)
            (*archived)++;
        if (torn)
            ims_log_event(log, IMS_EV_SPOOL_ARCHIVED, IMS_CAT_MESSAGE_ARCHIVAL, IMS_SEV_WARNING,
                          IMS_LEVEL_NONE,
                          "The spool file %s/In/%s does not match its checksums: it was being "
                          "committed when the service stopped (and was never acknowledged) or "
                          "it was damaged since; %s%s",
                          root, d->d_name,
                          mv ? "moving it to In/Archive failed: " : "it was moved to In/Archive",
                          mv ? strerror(mv) : "");
        else
            ims_log_event(log, IMS_EV_SPOOL_ARCHIVED, IMS_CAT_MESSAGE_ARCHIVAL, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE,
                          mv ? "The file %s/In/%s is not a spool file this service can read; "
                               "moving it to In/Archive failed: %s"
                             : "The file %s/In/%s is not a spool file this service can read; "
                               "it was moved to In/Archive%s",
                          root, d->d_name, mv ? strerror(mv) : "");
    }
    closedir(dir);
    if (archive_fd >= 0) {
        if (*archived)
            fsync(archive_fd);
        close(archive_fd);
    }
    if (!rc && out->n)
        qsort(out->ids, out->n, sizeof *out->ids, id_cmp);
    return rc;
}

int ims_spool_recover(int work_fd, int in_fd, const char *root, ims_log *log, ims_id_list *ids,
                      size_t *removed, size_t *archived)
{
    *removed = clean_work(work_fd);
    *archived = 0;
    return scan_in(in_fd, root, log, ids, archived);
}
