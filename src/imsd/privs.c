/* privs.c - the service account: which it is, the listener sockets bound before root is
 * given up, the folders it must own, and giving up root for good. */
#include "imsd.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define LISTEN_BACKLOG 511  /* as nginx and Redis; the kernel caps it at net.core.somaxconn */
#define STATE_DIR_MODE 0755 /* directories on the way to RootDir: others must pass */
#define ROOTDIR_MODE 0750
#define STORE_DIR_MODE 0700
#define RUN_DIR_MODE 0755
#define ACCOUNT_HINT "set it with imsctl install --account USER"

static int account_refuse(ims_log *log, const char *name, const char *why)
{
    ims_log_event(log, IMS_EV_ACCOUNT, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                  "The service account %s cannot be used: %s; " ACCOUNT_HINT, name, why);
    return IMS_EV_ACCOUNT;
}

/* account_short_name - ObjectName may be written the Windows way, ".\user" or
 * "DOMAIN\user": the part after the last backslash is the Unix user. */
static const char *account_short_name(const char *name)
{
    const char *slash = strrchr(name, '\\');
    return slash ? slash + 1 : name;
}

/* account_uid_text - a user given as a number: its value, or -1. */
static long long account_uid_text(const char *name)
{
    if (!*name || strspn(name, "0123456789") != strlen(name) || strlen(name) > 10)
        return -1;
    long long v = strtoll(name, NULL, 10);
    return v <= (long long)UINT32_MAX - 1 ? v : -1;
}

int imsd_account_resolve(const ims_settings *s, ims_log *log, imsd_account *a)
{
    memset(a, 0, sizeof *a);
    uid_t euid = geteuid();
    if (euid != 0) {
        /* Not root: whoever runs imsd is the service account; ObjectName only informs. */
        a->uid = euid;
        a->gid = getegid();
        struct passwd *pw = getpwuid(euid);
        if (pw)
            snprintf(a->name, sizeof a->name, "%s", pw->pw_name);
        else
            snprintf(a->name, sizeof a->name, "%lu", (unsigned long)euid);
        return IMS_OK;
    }
    a->drop = true;
    const char *name = account_short_name(s->account);
    if (!*name)
        return account_refuse(log, "(not set)", "the service key has no ObjectName");
    errno = 0;
    struct passwd *pw = getpwnam(name);
    int e = errno;
    long long uid = account_uid_text(name);
    if (!pw && uid >= 0) {
        errno = 0;
        pw = getpwuid((uid_t)uid);
        e = errno;
    }
    if (!pw) {
        /* getpw* report "no such user" as 0, ENOENT, ESRCH, EBADF or EPERM. */
        bool missing = e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM;
        return account_refuse(log, name, missing ? "no such user" : strerror(e));
    }
    if (pw->pw_uid == 0)
        return account_refuse(log, name,
                              "it is the superuser (uid 0), and the service "
                              "runs without privileges");
    if (strlen(pw->pw_name) >= sizeof a->name)
        return account_refuse(log, name, "its name is too long");
    a->uid = pw->pw_uid;
    a->gid = pw->pw_gid;
    snprintf(a->name, sizeof a->name, "%s", pw->pw_name);
    return IMS_OK;
}

/* --- listeners ------------------------------------------------------------------------ */

static void listen_format(const char *host, unsigned port, bool v6, char *out, size_t size)
{
    snprintf(out, size, v6 ? "[%s]:%u" : "%s:%u", host, port);
}

static int listen_fail(ims_log *log, const ims_listen *l, const char *why)
{
    char name[IMSD_ADDR_MAX];
    listen_format(l->host, l->port, strchr(l->host, ':') != NULL, name, sizeof name);
    ims_log_event(log, IMS_EV_LISTEN_FAILED, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                  "Unable to bind the TCP/IP listener socket to %s: %s", name, why);
    return IMS_EV_LISTEN_FAILED;
}

/* listen_one - a listening socket on l; 0 or -1 with the event logged. */
static int listen_one(const ims_listen *l, ims_log *log, imsd_bound *out)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)l->port);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(l->host, port, &hints, &ai);
    if (g || !ai) {
        if (ai)
            freeaddrinfo(ai);
        return listen_fail(log, l, g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e = fd < 0 ? errno : 0;
    int on = 1;
    /* A restart must not wait for the last run's connections in TIME_WAIT. */
    if (!e && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on))
        e = errno;
    /* "::" means IPv6 only: IPv4 is listed on its own, as 0.0.0.0. */
    if (!e && ai->ai_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on))
        e = errno;
    if (!e && bind(fd, ai->ai_addr, ai->ai_addrlen))
        e = errno;
    if (!e && listen(fd, LISTEN_BACKLOG))
        e = errno;
    freeaddrinfo(ai);
    struct sockaddr_storage ss = {0};
    socklen_t sslen = sizeof ss;
    if (!e && getsockname(fd, (struct sockaddr *)&ss, &sslen))
        e = errno;
    if (e) {
        if (fd >= 0)
            close(fd);
        return listen_fail(log, l, strerror(e));
    }
    /* The name the kernel bound: port 0 asks it to choose one. */
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo((struct sockaddr *)&ss, sslen, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV)) {
        snprintf(host, sizeof host, "%s", l->host);
        snprintf(serv, sizeof serv, "%u", (unsigned)l->port);
    }
    out->fd = fd;
    out->kind = l->kind;
    listen_format(host, (unsigned)strtoul(serv, NULL, 10), ss.ss_family == AF_INET6, out->name,
                  sizeof out->name);
    return 0;
}

int imsd_listen_one(const ims_listen *l, ims_log *log, imsd_bound *out)
{
    return listen_one(l, log, out) ? IMS_EV_LISTEN_FAILED : IMS_OK;
}

int imsd_listeners_bind(const ims_settings *s, ims_log *log, imsd_bound *out, size_t *nout)
{
    *nout = 0;
    for (size_t i = 0; i < s->nlisten && i < IMS_MAX_LISTENERS; i++) {
        if (listen_one(&s->listen[i], log, &out[*nout])) {
            imsd_listeners_close(out, *nout);
            *nout = 0;
            return IMS_EV_LISTEN_FAILED;
        }
        ++*nout;
    }
    return IMS_OK;
}

void imsd_listeners_close(imsd_bound *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i].fd >= 0)
            close(b[i].fd);
        b[i].fd = -1;
    }
}

void imsd_listeners_text(const imsd_bound *b, size_t n, const char *sep, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        int w = snprintf(out + used, size - used, "%s%s", i ? sep : "", b[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* --- folders and dropping root -------------------------------------------------------- */

static int dir_fail(ims_log *log, const char *path, const imsd_account *a, int err)
{
    ims_log_event(log, IMS_EV_INTERNAL, IMS_CAT_INIT_TERM, IMS_SEV_ERROR, IMS_LEVEL_NONE,
                  "Unable to prepare the folder %s for the service account %s: %s", path, a->name,
                  strerror(err));
    return IMS_EV_INTERNAL;
}

/* dir_own - path exists (made with mode, its parents 0755) and belongs to the account. The
 * last component must not be a symbolic link: root would hand over whatever it points to. */
static int dir_own(const char *path, unsigned mode, const imsd_account *a, ims_log *log)
{
    char parent[PATH_MAX];
    int n = snprintf(parent, sizeof parent, "%s", path);
    if (n < 0 || (size_t)n >= sizeof parent)
        return dir_fail(log, path, a, ENAMETOOLONG);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        int e = base_mkdir_p(parent, STATE_DIR_MODE);
        if (e)
            return dir_fail(log, parent, a, e);
    }
    if (mkdir(path, mode) && errno != EEXIST)
        return dir_fail(log, path, a, errno);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return dir_fail(log, path, a, errno);
    struct stat st;
    int e = fstat(fd, &st) ? errno : 0;
    if (!e && (st.st_uid != a->uid || st.st_gid != a->gid) && fchown(fd, a->uid, a->gid))
        e = errno;
    close(fd);
    return e ? dir_fail(log, path, a, e) : IMS_OK;
}

int imsd_dirs_prepare(const ims_settings *s, const char *root, const imsd_run *run,
                      const imsd_account *a, ims_log *log)
{
    char store_dir[PATH_MAX], tracking[PATH_MAX];
    int n = snprintf(store_dir, sizeof store_dir, "%s/store", root);
    int t = snprintf(tracking, sizeof tracking, "%s/Tracking.log", root);
    if (n < 0 || (size_t)n >= sizeof store_dir || t < 0 || (size_t)t >= sizeof tracking)
        return dir_fail(log, root, a, ENAMETOOLONG);
    int rc = dir_own(run->dir, RUN_DIR_MODE, a, log);
    if (!rc)
        rc = dir_own(store_dir, STORE_DIR_MODE, a, log);
    /* The message tracking log (Exchsrvr\Tracking.log beside Imcdata in the original). */
    if (!rc)
        rc = dir_own(tracking, ROOTDIR_MODE, a, log);
    if (!rc)
        rc = dir_own(s->root_dir, ROOTDIR_MODE, a, log);
    /* The pid file too: a later start as the account itself must be able to open it. */
    if (!rc && run->lockfd >= 0 && fchown(run->lockfd, a->uid, a->gid))
        rc = dir_fail(log, run->pidfile, a, errno);
    return rc;
}

static int drop_fail(ims_log *log, const imsd_account *a, const char *what, int err)
{
    char why[256];
    snprintf(why, sizeof why, "%s failed: %s", what, strerror(err));
    return account_refuse(log, a->name, why);
}

int imsd_privs_drop(const imsd_account *a, ims_log *log)
{
    if (a->drop) {
        /* Groups first: once the uid is not 0 they can no longer be changed. */
        if (initgroups(a->name, a->gid))
            return drop_fail(log, a, "initgroups", errno);
        if (setgid(a->gid))
            return drop_fail(log, a, "setgid", errno);
        if (setuid(a->uid))
            return drop_fail(log, a, "setuid", errno);
        /* setuid as root sets the real, effective and saved IDs: root must be gone for good. */
        if (setuid(0) == 0 || geteuid() != a->uid || getuid() != a->uid || getegid() != a->gid ||
            getgid() != a->gid)
            return account_refuse(log, a->name, "root could be regained after setuid");
    }
    /* Hold no directory busy (an unmount, a removed working copy). */
    if (chdir("/"))
        return drop_fail(log, a, "chdir /", errno);
    return IMS_OK;
}
