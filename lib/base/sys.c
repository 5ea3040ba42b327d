/* sys.c - files, time, randomness and the state root: the thin layer over the system. */
#include "base/base.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int base_read_file(const char *path, size_t max, buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    size_t start = out->len;
    int rc = 0;
    for (;;) {
        if ((rc = buf_reserve(out, 65536)))
            break;
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
            break;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len - start > max) {
            rc = EFBIG;
            break;
        }
    }
    close(fd);
    if (rc)
        out->len = start;
    return rc;
}

/* fsync_dir - make a rename or a new entry in dir durable. */
static int fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return ENOMEM;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) ? errno : 0;
    close(fd);
    return rc;
}

int base_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int base_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
    char tmp[4096];
    uint32_t r;
    if (base_random(&r, sizeof r))
        r = (uint32_t)getpid();
    int n = snprintf(tmp, sizeof tmp, "%s.tmp%08x", path, r);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno;
    int rc = base_write_all(fd, data, len);
    if (!rc && fsync(fd))
        rc = errno;
    if (close(fd) && !rc)
        rc = errno;
    if (!rc && rename(tmp, path))
        rc = errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return fsync_dir(path);
}

int base_mkdir_p(const char *path, unsigned mode)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, mode) && errno != EEXIST)
            return errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) && errno != EEXIST)
        return errno;
    return 0;
}

uint64_t base_filetime_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* 11644473600 s separate 1601-01-01 from 1970-01-01. */
    return ((uint64_t)ts.tv_sec + 11644473600ULL) * 10000000ULL + (uint64_t)ts.tv_nsec / 100;
}

int base_boot_id(uint8_t id[16])
{
    buf b = BUF_INIT;
    int rc = base_read_file("/proc/sys/kernel/random/boot_id", 128, &b);
    if (rc)
        return rc;
    /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx\n": take the 32 hex digits. */
    size_t k = 0;
    memset(id, 0, 16);
    for (size_t i = 0; i < b.len && k < 32; i++) {
        int c = b.data[i], v;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else
            continue;
        id[k / 2] = (uint8_t)(id[k / 2] | (k % 2 ? v : v << 4));
        k++;
    }
    buf_free(&b);
    return k == 32 ? 0 : EINVAL;
}

int base_random(void *p, size_t n)
{
    uint8_t *q = p;
    while (n > 0) {
        ssize_t r = getrandom(q, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

const char *base_state_root(void)
{
    const char *r = getenv("IMS_ROOT");
    return r && *r ? r : BASE_DEFAULT_ROOT;
}

DIR *base_opendirat(int dirfd, const char *name)
{
    int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (strcmp(name, ".") ? O_NOFOLLOW : 0);
    int fd = openat(dirfd, name, flags);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir && fd >= 0) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return dir;
}

int base_rename_noreplace(int fromfd, const char *from, int tofd, const char *to)
{
    if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return errno;
    if (linkat(fromfd, from, tofd, to, 0))
        return errno;
    unlinkat(fromfd, from, 0);
    return 0;
}

int base_pread_all(int fd, void *p, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, (char *)p + *got, n - *got, (off_t)(off + *got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}
