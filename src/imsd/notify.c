/* notify.c - systemd's readiness protocol (sd_notify) by hand, without libsystemd: datagrams
 * to the AF_UNIX socket NOTIFY_SOCKET names, a path or an abstract name starting with '@'. */
#include "imsd.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOTIFY_MSG_MAX 2048 /* one notification: a few short "KEY=value" lines */

int imsd_notify_open(imsd_notify *n)
{
    memset(n, 0, sizeof *n);
    n->fd = -1;
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return 0;
    size_t len = strlen(name);
    if ((name[0] != '/' && name[0] != '@') || len >= sizeof n->addr.sun_path)
        return EINVAL;
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, name, len);
    if (name[0] == '@')
        n->addr.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0)
        return errno;
    /* Connect now, while the process may still be root: a path socket's permission is
     * checked here, and the service account may not be allowed to write to it later. When
     * the receiver is not there yet, each send addresses it again. */
    n->connected = connect(n->fd, (struct sockaddr *)&n->addr, n->addrlen) == 0;
    return 0;
}

int imsd_notify_send(imsd_notify *n, const char *msg)
{
    if (n->fd < 0)
        return 0;
    size_t len = strlen(msg);
    ssize_t r;
    /* Never block the service on a receiver that does not read. */
    int flags = MSG_NOSIGNAL | MSG_DONTWAIT;
    do {
        r = n->connected ? send(n->fd, msg, len, flags)
                         : sendto(n->fd, msg, len, flags, (struct sockaddr *)&n->addr, n->addrlen);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno;
    return (size_t)r == len ? 0 : EMSGSIZE;
}

int imsd_notify_sendf(imsd_notify *n, const char *fmt, ...)
{
    if (n->fd < 0)
        return 0;
    char msg[NOTIFY_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        return EINVAL;
    /* A STATUS= text cut short is still worth sending. */
    return imsd_notify_send(n, msg);
}

void imsd_notify_close(imsd_notify *n)
{
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
}
