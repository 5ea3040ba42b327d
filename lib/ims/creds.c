/* creds.c - the client credentials file (ClientCredentialsFile): user names and passwords for
 * AUTH to smart hosts and routed domains, read with ssh's care about who may read it, kept
 * only in memory and wiped when freed. */
#include "ims/ims.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct ims_cred {
    char dest[IMS_HOST_MAX];
    char user[SMTP_AUTH_FIELD_MAX + 1];
    char pass[SMTP_AUTH_FIELD_MAX + 1];
} ims_cred;

struct ims_creds {
    size_t n;
    ims_cred v[IMS_CREDS_MAX];
};

/* parse_line - "<dest> <user> <password...>" of l[0..len) into c. Returns 0 or -1. */
static int parse_line(const char *l, size_t len, ims_cred *c)
{
    size_t i = 0;
    const char *f[2];
    size_t fl[2];
    for (int k = 0; k < 2; k++) {
        while (i < len && (l[i] == ' ' || l[i] == '\t'))
            i++;
        f[k] = l + i;
        while (i < len && l[i] != ' ' && l[i] != '\t')
            i++;
        fl[k] = (size_t)(l + i - f[k]);
    }
    while (i < len && (l[i] == ' ' || l[i] == '\t'))
        i++;
    size_t pl = len - i;
    if (!fl[0] || !fl[1] || !pl || fl[0] >= sizeof c->dest || fl[1] > SMTP_AUTH_FIELD_MAX ||
        pl > SMTP_AUTH_FIELD_MAX || memchr(l, '\0', len))
        return -1;
    memcpy(c->dest, f[0], fl[0]);
    c->dest[fl[0]] = 0;
    memcpy(c->user, f[1], fl[1]);
    c->user[fl[1]] = 0;
    memcpy(c->pass, l + i, pl);
    c->pass[pl] = 0;
    return 0;
}

/* parse - the file's text into c. Returns 0 or EINVAL (why says which line). */
static int parse(const char *p, size_t n, ims_creds *c, char *why, size_t wn)
{
    size_t line = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end = nl ? (size_t)(nl - p) : n, len = end - i;
        line++;
        if (len && p[i + len - 1] == '\r')
            len--;
        const char *l = p + i;
        i = end + 1;
        size_t lead = 0;
        while (lead < len && (l[lead] == ' ' || l[lead] == '\t'))
            lead++;
        if (lead == len || l[lead] == '#')
            continue;
        if (len >= IMS_CREDS_LINE_MAX || c->n == IMS_CREDS_MAX || parse_line(l, len, &c->v[c->n])) {
            snprintf(why, wn,
                     "line %zu is not \"<destination> <user name> <password>\" (or is too long, "
                     "or one line too many)",
                     line);
            return EINVAL;
        }
        c->n++;
    }
    return 0;
}

int ims_creds_load(const char *path, ims_creds **out, char *why, size_t n)
{
    *out = NULL;
    snprintf(why, n, "%s", "");
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT)
            snprintf(why, n, "%s cannot be opened: %s", path, strerror(e));
        return e == ELOOP ? EPERM : e;
    }
    struct stat st;
    int e = 0;
    if (fstat(fd, &st))
        e = errno;
    else if (!S_ISREG(st.st_mode))
        e = EPERM, snprintf(why, n, "%s is not a regular file", path);
    else if (st.st_uid != 0 && st.st_uid != geteuid())
        e = EPERM, snprintf(why, n, "%s is owned by uid %u, neither root nor the service account",
                            path, (unsigned)st.st_uid);
    else if (st.st_mode & (S_IRWXG | S_IRWXO))
        e = EPERM, snprintf(why, n, "%s may be read or written by others (mode %04o): chmod 600 it",
                            path, (unsigned)(st.st_mode & 07777));
    else if (st.st_size > IMS_CREDS_FILE_MAX)
        e = EFBIG, snprintf(why, n, "%s is over %u bytes", path, (unsigned)IMS_CREDS_FILE_MAX);
    char *text = NULL;
    ims_creds *c = NULL;
    size_t len = 0;
    if (!e && (!(text = malloc(IMS_CREDS_FILE_MAX + 1)) || !(c = calloc(1, sizeof *c))))
        e = ENOMEM;
    while (!e) {
        ssize_t r = read(fd, text + len, IMS_CREDS_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            e = errno;
            snprintf(why, n, "%s cannot be read: %s", path, strerror(e));
        } else if (r == 0) {
            break;
        } else if ((len += (size_t)r) > IMS_CREDS_FILE_MAX) {
            e = EFBIG, snprintf(why, n, "%s is over %u bytes", path, (unsigned)IMS_CREDS_FILE_MAX);
        }
    }
    close(fd);
    if (!e)
        e = parse(text, len, c, why, n);
    if (text) {
        explicit_bzero(text, IMS_CREDS_FILE_MAX + 1);
        free(text);
    }
    if (e) {
        if (!why[0])
            snprintf(why, n, "%s: %s", path, strerror(e));
        ims_creds_free(c);
        return e;
    }
    *out = c;
    return 0;
}

void ims_creds_free(ims_creds *c)
{
    if (!c)
        return;
    explicit_bzero(c, sizeof *c);
    free(c);
}

size_t ims_creds_count(const ims_creds *c)
{
    return c ? c->n : 0;
}

/* is_parent - domain is d or a sub-domain of it (whole labels). */
static bool is_parent(const char *d, const char *domain)
{
    size_t dn = strlen(d), n = strlen(domain);
    if (dn > n || strcasecmp(domain + n - dn, d))
        return false;
    return dn == n || domain[n - dn - 1] == '.';
}

bool ims_creds_find(const ims_creds *c, const ims_settings *s, ims_route_kind kind,
                    const char *name, const char **user, const char **pass)
{
    if (!c)
        return false;
    const ims_cred *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->n; i++) {
        const ims_cred *e = &c->v[i];
        if (kind == IMS_ROUTE_DNS) {
            size_t dn = strlen(e->dest);
            if (is_parent(e->dest, name) && dn > best_len)
                best = e, best_len = dn;
            continue;
        }
        if (ims_host_same(e->dest, name)) {
            best = e; /* the smart host by its spec: nothing is more specific */
            break;
        }
        for (size_t k = 0; !best && k < s->nroutes; k++)
            if (!strcasecmp(s->routes[k].domain, e->dest) && ims_host_same(s->routes[k].host, name))
                best = e;
    }
    if (!best)
        return false;
    *user = best->user;
    *pass = best->pass;
    return true;
}
