/* store.c - the message store's mailboxes and folders as Maildir++ directories. */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

struct store {
    char *dir;
};

int store_open(const char *dir, bool create, store **out)
{
    *out = NULL;
    struct stat st;
    if (stat(dir, &st)) {
        if (errno != ENOENT || !create)
            return errno;
        int rc = base_mkdir_p(dir, 0700);
        if (rc)
            return rc;
    } else if (!S_ISDIR(st.st_mode)) {
        return ENOTDIR;
    }
    store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return ENOMEM;
    }
    *out = s;
    return 0;
}

void store_close(store *st)
{
    if (!st)
        return;
    free(st->dir);
    free(st);
}

const char *store_dir(const store *st)
{
    return st->dir;
}

static bool name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n <= STORE_MAX_NAME && name[0] != '.' && !strchr(name, '/');
}

/* maildir_make - dir and its cur, new, tmp (mode 0700), each made only when missing. */
static int maildir_make(const char *dir)
{
    static const char *subs[] = {"", "/cur", "/new", "/tmp"};
    for (size_t i = 0; i < 4; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s%s", dir, subs[i]) >= (int)sizeof p)
            return ENAMETOOLONG;
        if (mkdir(p, 0700) && errno != EEXIST)
            return errno;
    }
    return 0;
}

int store_mailbox_ensure(store *st, const char *alias, char **path)
{
    if (path)
        *path = NULL;
    if (!name_ok(alias))
        return EINVAL;
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", st->dir, alias) >= (int)sizeof p)
        return ENAMETOOLONG;
    int rc = maildir_make(p);
    if (!rc && path && !(*path = strdup(p)))
        rc = ENOMEM;
    return rc;
}

int store_folder_ensure(store *st, const char *alias, const char *name)
{
    if (!name_ok(alias) || !name_ok(name))
        return EINVAL;
    int rc = store_mailbox_ensure(st, alias, NULL);
    if (rc)
        return rc;
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s/.%s", st->dir, alias, name) >= (int)sizeof p)
        return ENAMETOOLONG;
    if ((rc = maildir_make(p)))
        return rc;
    /* Maildir++ marks a folder with an empty "maildirfolder" file. */
    char marker[PATH_MAX];
    if (snprintf(marker, sizeof marker, "%s/maildirfolder", p) >= (int)sizeof marker)
        return ENAMETOOLONG;
    int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

/* tmp_clean_dir - store_tmp_clean's work in one Maildir's tmp/ (maildir_fd: the Maildir). */
static void tmp_clean_dir(int maildir_fd, time_t before, size_t *removed)
{
    DIR *dir = base_opendirat(maildir_fd, "tmp");
    if (!dir)
        return;
    int fd = dirfd(dir);
    struct dirent *e;
    struct stat st;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.' && fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && st.st_atime < before && st.st_mtime < before &&
            unlinkat(fd, e->d_name, 0) == 0)
            (*removed)++;
    closedir(dir);
}

int store_tmp_clean(store *st, time_t now, size_t *removed)
{
    size_t dummy = 0;
    if (!removed)
        removed = &dummy;
    *removed = 0;
    time_t before = now - STORE_TMP_MAX_AGE;
    DIR *top = opendir(st->dir);
    if (!top)
        return errno;
    struct dirent *m;
    while ((m = readdir(top))) {
        if (!name_ok(m->d_name))
            continue;
        int mfd = openat(dirfd(top), m->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (mfd < 0)
            continue;
        tmp_clean_dir(mfd, before, removed);
        /* Its Maildir++ folders: ".name" directories (not "." and ".."). */
        DIR *sub = base_opendirat(mfd, ".");
        for (struct dirent *f; sub && (f = readdir(sub));) {
            if (f->d_name[0] != '.' || !strcmp(f->d_name, ".") || !strcmp(f->d_name, ".."))
                continue;
            int ffd = openat(mfd, f->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (ffd >= 0) {
                tmp_clean_dir(ffd, before, removed);
                close(ffd);
            }
        }
        if (sub)
            closedir(sub);
        close(mfd);
    }
    closedir(top);
    return 0;
}

/* give_dir - hand the directory path (not a symbolic link: root would hand over what it
 * points to) to uid:gid. errno value. */
static int give_dir(const char *path, uid_t uid, gid_t gid)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    int e = fstat(fd, &st) ? errno : 0;
    if (!e && (st.st_uid != uid || st.st_gid != gid) && fchown(fd, uid, gid))
        e = errno;
    close(fd);
    return e;
}

int store_maildir_give(const char *path, uid_t uid, gid_t gid)
{
    /* The store directory too when root has it: imsd gives it to the account at its start,
     * but a running service must reach the new Maildir now. */
    char store_path[PATH_MAX];
    if (snprintf(store_path, sizeof store_path, "%s", path) >= (int)sizeof store_path)
        return ENAMETOOLONG;
    char *slash = strrchr(store_path, '/');
    if (slash)
        *slash = '\0';
    struct stat st;
    int e = 0;
    if (slash && !lstat(store_path, &st) && S_ISDIR(st.st_mode) && st.st_uid == 0)
        e = give_dir(store_path, uid, gid);
    static const char *const subs[] = {"", "/cur", "/new", "/tmp"};
    for (size_t i = 0; !e && i < sizeof subs / sizeof subs[0]; i++) {
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s%s", path, subs[i]) >= (int)sizeof p)
            e = ENAMETOOLONG;
        else
            e = give_dir(p, uid, gid);
    }
    return e;
}
