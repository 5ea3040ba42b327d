/* directory.c - the directory of recipients: accepted domains and mailboxes with their SMTP
 * addresses, kept in HKLM\Software\IMS\Directory, their passwords' hashes in the service
 * account's hive, and the in-memory index the SMTP server looks addresses and logins up in,
 * reloaded when the registry says the directory changed. */
#include "store/store.h"
#include "store/password.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#define DIR_PROXY_PRIMARY "SMTP:"   /* Exchange marks the primary address by the upper case */
#define DIR_PROXY_SECONDARY "smtp:" /* and secondary ones by the lower case of the type */
#define DIR_PROXY_PREFIX_LEN 5
#define DIR_NOTIFY_FILTER (REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET)
#define DIR_MAP_MIN 16 /* slots of the smallest hash table */

/* --- small helpers --------------------------------------------------------------------- */

/* strv - a growable array of malloc'd strings. */
typedef struct strv {
    char **v;
    size_t n, cap;
} strv;

static bool strv_take(strv *s, char *p)
{
    if (!p)
        return false;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v) {
            free(p);
            return false;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = p;
    return true;
}

static bool strv_add(strv *s, const char *p)
{
    return strv_take(s, strdup(p));
}

static void strv_remove(strv *s, size_t i)
{
    free(s->v[i]);
    memmove(s->v + i, s->v + i + 1, (s->n - i - 1) * sizeof *s->v);
    s->n--;
}

static void strv_free(strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

void dir_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static void ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* address_domain - the part after the '@' (addresses are checked: there is one). */
static const char *address_domain(const char *address)
{
    const char *at = strrchr(address, '@');
    return at ? at + 1 : "";
}

/* proxy_smtp - the address of an "smtp:" proxy entry (either case of the type), or NULL for
 * another type; *primary tells "SMTP:". */
static const char *proxy_smtp(const char *entry, bool *primary)
{
    if (strncasecmp(entry, DIR_PROXY_SECONDARY, DIR_PROXY_PREFIX_LEN))
        return NULL;
    if (primary)
        *primary = !strncmp(entry, DIR_PROXY_PRIMARY, DIR_PROXY_PREFIX_LEN);
    return entry + DIR_PROXY_PREFIX_LEN;
}

/* --- errors ---------------------------------------------------------------------------- */

static void err_clear(dir_err *e)
{
    if (e)
        memset(e, 0, sizeof *e);
}

/* copy_printable - copy s into out (size bytes), control bytes as '?': the text goes into
 * messages on a terminal. */
static void copy_printable(char *out, size_t size, const char *s)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    out[i] = '\0';
}

/* fail - record reason and the item at fault; returns rc. */
static int fail(dir_err *e, dir_reason reason, const char *subject, const char *owner, int rc)
{
    if (e) {
        e->reason = reason;
        copy_printable(e->subject, sizeof e->subject, subject);
        copy_printable(e->owner, sizeof e->owner, owner);
    }
    return rc;
}

/* win32_errno - the errno value a caller of this module gets for a registry error. */
static int win32_errno(int w)
{
    switch (w) {
    case ERROR_SUCCESS:
        return 0;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return ENOENT;
    case ERROR_ACCESS_DENIED:
        return EACCES;
    case ERROR_PRIVILEGE_NOT_HELD:
        return EPERM;
    case ERROR_NOT_ENOUGH_MEMORY:
        return ENOMEM;
    case ERROR_DISK_FULL:
        return ENOSPC;
    default:
        return EIO;
    }
}

static int fail_reg(dir_err *e, int w)
{
    if (w == ERROR_NOT_ENOUGH_MEMORY) {
        if (e)
            e->reason = DIR_SYSTEM, e->sys_error = ENOMEM;
        return ENOMEM;
    }
    if (e)
        e->reason = DIR_REGISTRY, e->reg_error = w;
    return win32_errno(w);
}

static int fail_sys(dir_err *e, int errnum)
{
    if (e)
        e->reason = DIR_SYSTEM, e->sys_error = errnum;
    return errnum;
}

const char *dir_err_format(const dir_err *err, char *out, size_t size)
{
    if (!size)
        return out;
    const char *s = err->subject, *o = err->owner;
    switch (err->reason) {
    case DIR_OK:
        snprintf(out, size, "no error");
        break;
    case DIR_BAD_ALIAS:
        snprintf(out, size,
                 "invalid alias \"%s\": 1 to %d characters of letters, digits, '.', '_' and "
                 "'-', not starting with '.'",
                 s, DIR_MAX_ALIAS);
        break;
    case DIR_RESERVED:
        snprintf(out, size, "the alias \"%s\" is reserved for the gateway's own mailbox", s);
        break;
    case DIR_BAD_NAME:
        snprintf(out, size,
                 "invalid display name: 1 to %d characters of UTF-8 text without control "
                 "characters",
                 DIR_MAX_NAME);
        break;
    case DIR_BAD_DOMAIN:
        snprintf(out, size,
                 "invalid domain name \"%s\": labels of letters, digits and '-' joined by '.'", s);
        break;
    case DIR_BAD_ADDRESS:
        snprintf(out, size,
                 "invalid address \"%s\": want local@domain (a dot-atom local part of at most "
                 "%d characters, a domain name)",
                 s, DIR_MAX_LOCAL);
        break;
    case DIR_DOMAIN_NOT_ACCEPTED:
        snprintf(out, size, "address \"%s\": \"%s\" is not an accepted domain", s,
                 address_domain(s));
        break;
    case DIR_ADDRESS_REPEATED:
        snprintf(out, size, "address \"%s\" is given twice", s);
        break;
    case DIR_PRIMARY_REMOVED:
        snprintf(out, size,
                 "\"%s\" is the primary address of mailbox \"%s\": name another primary to "
                 "remove it",
                 s, o);
        break;
    case DIR_NO_ADDRESS:
        snprintf(out, size, "mailbox \"%s\" needs at least one address", s);
        break;
    case DIR_TOO_MANY_ADDRESSES:
        snprintf(out, size, "mailbox \"%s\" would have more than %d addresses", s,
                 DIR_MAX_ADDRESSES);
        break;
    case DIR_DOMAIN_EXISTS:
        snprintf(out, size, "domain \"%s\" is already accepted", s);
        break;
    case DIR_MAILBOX_EXISTS:
        snprintf(out, size, "mailbox \"%s\" exists already", s);
        break;
    case DIR_ADDRESS_EXISTS:
        snprintf(out, size, "\"%s\" is already an address of mailbox \"%s\"", s, o);
        break;
    case DIR_NO_SUCH_DOMAIN:
        snprintf(out, size, "domain \"%s\" is not an accepted domain", s);
        break;
    case DIR_NO_SUCH_MAILBOX:
        snprintf(out, size, "no mailbox \"%s\"", s);
        break;
    case DIR_NO_SUCH_ADDRESS:
        snprintf(out, size, "\"%s\" is not an address of mailbox \"%s\"", s, o);
        break;
    case DIR_ADDRESS_TAKEN:
        snprintf(out, size, "address \"%s\" belongs to mailbox \"%s\"", s, o);
        break;
    case DIR_DOMAIN_IN_USE:
        snprintf(out, size, "domain \"%s\" is in use: mailbox \"%s\" has an address in it", s, o);
        break;
    case DIR_REGISTRY: {
        /* Windows' texts end with a period; our messages do not. */
        const char *t = reg_strerror(err->reg_error);
        size_t n = strlen(t);
        if (n && t[n - 1] == '.')
            n--;
        snprintf(out, size, "registry: %.*s (error %d)", (int)n, t, err->reg_error);
        break;
    }
    case DIR_MAILDIR:
        snprintf(out, size, "cannot make the Maildir of \"%s\": %s", s, strerror(err->sys_error));
        break;
    case DIR_BAD_PASSWORD:
        snprintf(out, size, "invalid password: 1 to %d bytes, without NUL bytes", DIR_MAX_PASSWORD);
        break;
    case DIR_HASH:
        snprintf(out, size, "cannot hash the password (libcrypt, yescrypt): %s",
                 strerror(err->sys_error ? err->sys_error : EIO));
        break;
    case DIR_SYSTEM:
    default:
        snprintf(out, size, "%s", strerror(err->sys_error ? err->sys_error : EIO));
        break;
    }
    return out;
}

/* --- reading the directory ------------------------------------------------------------- */

/* mbx - one mailbox key as read: its name, its ProxyAddresses entries, its PasswordId and
 * (read by reload only, from the service account's hive) the hash that id names. */
typedef struct mbx {
    char *alias;
    strv proxies;
    bool has_pwid;
    uint8_t pwid[DIR_PASSWORD_ID_BYTES];
    char *hash; /* NULL: none found */
} mbx;

/* snap - the whole directory as read (inside a transaction: exactly as it is). */
typedef struct snap {
    strv domains; /* lower case */
    mbx *mb;
    size_t nmb;
} snap;

static void snap_free(snap *s)
{
    strv_free(&s->domains);
    for (size_t i = 0; i < s->nmb; i++) {
        free(s->mb[i].alias);
        strv_free(&s->mb[i].proxies);
        free(s->mb[i].hash);
    }
    free(s->mb);
    memset(s, 0, sizeof *s);
}

static int collect_domain(void *arg, const char *name, uint32_t type, const uint8_t *data,
                          size_t len)
{
    uint32_t v;
    if (type != REG_DWORD || len != sizeof v || !dir_domain_valid(name))
        return 0;
    memcpy(&v, data, sizeof v);
    if (!v)
        return 0;
    char *copy = strdup(name);
    if (!copy)
        return ERROR_NOT_ENOUGH_MEMORY;
    ascii_lower(copy);
    return strv_take(arg, copy) ? 0 : ERROR_NOT_ENOUGH_MEMORY;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* load_domains - the accepted domains, lower-cased and sorted. Win32 error. */
static int load_domains(reg_key *lm, strv *out)
{
    reg_key *k;
    int rc = reg_key_open(lm, DIR_DOMAINS_KEY, REG_READ, &k);
    if (rc)
        return rc == ERROR_FILE_NOT_FOUND ? ERROR_SUCCESS : rc;
    rc = reg_key_enum_values(k, collect_domain, out);
    reg_key_close(k);
    if (!rc && out->n)
        qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return rc;
}

static int collect_alias(void *arg, const char *name)
{
    if (!dir_alias_valid(name))
        return 0;
    return strv_add(arg, name) ? 0 : ERROR_NOT_ENOUGH_MEMORY;
}

/* load_aliases - the mailbox keys whose names are valid aliases, in registry order. */
static int load_aliases(reg_key *mailboxes, strv *out)
{
    return reg_key_enum_subkeys(mailboxes, collect_alias, out);
}

/* read_multi_sz - the strings of a REG_MULTI_SZ up to its first empty one (as Windows reads
 * them); nothing for a missing value or another type. Win32 error. */
static int read_multi_sz(reg_key *k, const char *name, strv *out)
{
    buf data = BUF_INIT;
    uint32_t type;
    int rc = reg_value_get(k, name, &type, &data);
    if (rc == ERROR_FILE_NOT_FOUND)
        rc = ERROR_SUCCESS;
    else if (!rc && type == REG_MULTI_SZ) {
        size_t units = data.len / 2, start = 0;
        for (size_t i = 0; i <= units && !rc; i++) {
            if (i < units && (data.data[2 * i] || data.data[2 * i + 1]))
                continue;
            if (i == start)
                break;
            buf s = BUF_INIT;
            if (base_utf16_to_utf8(data.data + 2 * start, i - start, &s) ||
                !strv_take(out, buf_detach(&s, NULL)))
                rc = ERROR_NOT_ENOUGH_MEMORY;
            buf_free(&s);
            start = i + 1;
        }
    }
    buf_free(&data);
    return rc;
}

/* read_pwid - the mailbox's PasswordId: REG_BINARY of exactly DIR_PASSWORD_ID_BYTES; any
 * other value (a hand edit) is no password. Win32 error. */
static int read_pwid(reg_key *k, mbx *m)
{
    buf data = BUF_INIT;
    uint32_t type;
    int rc = reg_value_get(k, DIR_PASSWORD_ID_VALUE, &type, &data);
    if (rc == ERROR_FILE_NOT_FOUND)
        rc = ERROR_SUCCESS;
    else if (!rc && type == REG_BINARY && data.len == DIR_PASSWORD_ID_BYTES) {
        memcpy(m->pwid, data.data, DIR_PASSWORD_ID_BYTES);
        m->has_pwid = true;
    }
    buf_free(&data);
    return rc;
}

/* snap_load - read domains and mailboxes. Inside a write transaction this sees the
 * transaction's state; outside, each call is its own snapshot (a change in between fires
 * the watch again). Win32 error. */
static int snap_load(reg_key *lm, snap *s)
{
    memset(s, 0, sizeof *s);
    int rc = load_domains(lm, &s->domains);
    reg_key *mailboxes = NULL;
    if (!rc) {
        rc = reg_key_open(lm, DIR_MAILBOXES_KEY, REG_READ, &mailboxes);
        if (rc == ERROR_FILE_NOT_FOUND)
            return ERROR_SUCCESS;
    }
    strv aliases = {0};
    if (!rc)
        rc = load_aliases(mailboxes, &aliases);
    if (!rc && aliases.n && !(s->mb = calloc(aliases.n, sizeof *s->mb)))
        rc = ERROR_NOT_ENOUGH_MEMORY;
    for (size_t i = 0; !rc && i < aliases.n; i++) {
        reg_key *k;
        rc = reg_key_open(mailboxes, aliases.v[i], REG_READ, &k);
        if (rc == ERROR_FILE_NOT_FOUND) {
            rc = ERROR_SUCCESS; /* deleted since the enumeration (outside a transaction) */
            continue;
        }
        if (rc)
            break;
        mbx *m = &s->mb[s->nmb++];
        m->alias = aliases.v[i];
        aliases.v[i] = NULL;
        rc = read_multi_sz(k, "ProxyAddresses", &m->proxies);
        if (!rc)
            rc = read_pwid(k, m);
        reg_key_close(k);
    }
    strv_free(&aliases);
    reg_key_close(mailboxes);
    if (rc)
        snap_free(s);
    return rc;
}

static mbx *snap_mailbox(const snap *s, const char *alias)
{
    for (size_t i = 0; i < s->nmb; i++)
        if (!strcasecmp(s->mb[i].alias, alias))
            return &s->mb[i];
    return NULL;
}

static bool snap_domain_accepted(const snap *s, const char *domain)
{
    for (size_t i = 0; i < s->domains.n; i++)
        if (!strcasecmp(s->domains.v[i], domain))
            return true;
    return false;
}

/* snap_owner - the mailbox other than `except` with the SMTP address, or NULL. */
static const mbx *snap_owner(const snap *s, const char *address, const mbx *except)
{
    for (size_t i = 0; i < s->nmb; i++) {
        if (&s->mb[i] == except)
            continue;
        for (size_t j = 0; j < s->mb[i].proxies.n; j++) {
            const char *a = proxy_smtp(s->mb[i].proxies.v[j], NULL);
            if (a && !strcasecmp(a, address))
                return &s->mb[i];
        }
    }
    return NULL;
}

/* --- the index ------------------------------------------------------------------------- */

/* strmap - an open-addressing hash table from lower-cased strings to numbers, sized once
 * for the entries it will get (it is rebuilt, not updated, when the directory changes). */
typedef struct slot {
    char *key; /* NULL: free */
    size_t val;
} slot;
typedef struct strmap {
    slot *slots;
    size_t cap; /* a power of two, at least twice the entries */
} strmap;

/* hash_str - FNV-1a, 64 bits. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static bool map_init(strmap *m, size_t entries)
{
    size_t cap = DIR_MAP_MIN;
    while (cap < 2 * entries)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = m->slots ? cap : 0;
    return m->slots != NULL;
}

/* map_find - the slot of key, or the free slot where it would go. */
static slot *map_find(const strmap *m, const char *key)
{
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->slots[i].key && strcmp(m->slots[i].key, key))
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

/* map_put - add key (taken over) unless present (then it is freed: the first one wins). */
static void map_put(strmap *m, char *key, size_t val)
{
    slot *s = map_find(m, key);
    if (s->key) {
        free(key);
        return;
    }
    s->key = key;
    s->val = val;
}

static const slot *map_get(const strmap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    const slot *s = map_find(m, key);
    return s->key ? s : NULL;
}

static void map_free(strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* dindex - what lookups answer from. */
typedef struct dindex {
    strv aliases;  /* the mailboxes' names */
    char **hashes; /* parallel to aliases: the password's hash, NULL when none */
    strmap addr;   /* lower-cased address -> index into aliases */
    strmap alias;  /* lower-cased alias -> index into aliases (the logins of SMTP AUTH) */
    strmap domain; /* lower-cased accepted domains */
} dindex;

static void index_free(dindex *ix)
{
    for (size_t i = 0; ix->hashes && i < ix->aliases.n; i++)
        free(ix->hashes[i]);
    free(ix->hashes);
    strv_free(&ix->aliases);
    map_free(&ix->addr);
    map_free(&ix->alias);
    map_free(&ix->domain);
}

/* index_build - the index of a snapshot: addresses that are valid and in an accepted domain
 * (a key edited by hand may hold others). Returns 0 or ENOMEM. */
static int index_build(const snap *s, dindex *ix)
{
    memset(ix, 0, sizeof *ix);
    size_t naddr = 0;
    for (size_t i = 0; i < s->nmb; i++)
        naddr += s->mb[i].proxies.n;
    if (!map_init(&ix->domain, s->domains.n) || !map_init(&ix->addr, naddr) ||
        !map_init(&ix->alias, s->nmb) || !(ix->hashes = calloc(s->nmb + 1, sizeof *ix->hashes)))
        goto nomem;
    for (size_t i = 0; i < s->domains.n; i++) {
        char *key = strdup(s->domains.v[i]);
        if (!key)
            goto nomem;
        map_put(&ix->domain, key, 0);
    }
    for (size_t i = 0; i < s->nmb; i++) {
        if (!strv_add(&ix->aliases, s->mb[i].alias))
            goto nomem;
        size_t at = ix->aliases.n - 1;
        if (s->mb[i].hash && !(ix->hashes[at] = strdup(s->mb[i].hash)))
            goto nomem;
        char *lower = strdup(s->mb[i].alias);
        if (!lower)
            goto nomem;
        ascii_lower(lower);
        map_put(&ix->alias, lower, at);
        for (size_t j = 0; j < s->mb[i].proxies.n; j++) {
            const char *a = proxy_smtp(s->mb[i].proxies.v[j], NULL);
            if (!a || !dir_address_valid(a))
                continue;
            char *key = strdup(a);
            if (!key)
                goto nomem;
            ascii_lower(key);
            if (!map_get(&ix->domain, address_domain(key))) {
                free(key);
                continue;
            }
            map_put(&ix->addr, key, ix->aliases.n - 1);
        }
    }
    return 0;
nomem:
    index_free(ix);
    return ENOMEM;
}

/* --- the directory handle -------------------------------------------------------------- */

struct directory {
    reg_ctx *reg;
    reg_key *lm;     /* HKLM */
    char *store_dir; /* <IMS_ROOT>/store */
    /* The watch: on the Directory key, or while that does not exist on its nearest
     * existing ancestor (a change there may be the Directory's creation). */
    reg_key *watch_key;
    reg_notify *watch;
    bool watch_is_dir;
    /* An epoll descriptor holding the watch's: callers keep one descriptor for the dir's
     * life while the watch moves between keys. */
    int epfd;
    bool stale; /* the last reload failed: the next refresh reloads */
    dindex idx;
};

/* watch_reset - make the watch follow the Directory key: kept while it is on that key and
 * the key lives, moved otherwise. Win32 error. */
static int watch_reset(directory *d)
{
    reg_key_info info;
    if (d->watch_is_dir && !reg_key_query_info(d->watch_key, &info))
        return ERROR_SUCCESS;
    static const char *const paths[] = {DIR_KEY, "Software\\IMS", "Software", ""};
    size_t nposs = sizeof paths / sizeof paths[0];
    reg_key *k = NULL;
    int rc = ERROR_FILE_NOT_FOUND;
    size_t found = 0;
    for (; found < nposs; found++)
        if ((rc = reg_key_open(d->lm, paths[found], REG_READ, &k)) != ERROR_FILE_NOT_FOUND)
            break;
    if (rc)
        return rc;
    reg_notify *n;
    if ((rc = reg_notify_new(k, true, DIR_NOTIFY_FILTER, &n))) {
        reg_key_close(k);
        return rc;
    }
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, reg_notify_fd(n), &ev)) {
        rc = reg_errno_to_win32(errno);
        reg_notify_free(n);
        reg_key_close(k);
        return rc;
    }
    if (d->watch) {
        epoll_ctl(d->epfd, EPOLL_CTL_DEL, reg_notify_fd(d->watch), NULL);
        reg_notify_free(d->watch);
        reg_key_close(d->watch_key);
    }
    d->watch = n;
    d->watch_key = k;
    d->watch_is_dir = found == 0;
    return ERROR_SUCCESS;
}

/* --- the hashes, in the service account's hive ------------------------------------------ */

/* pwid_name - the value name of a hash: the PasswordId as lowercase hex. */
static void pwid_name(const uint8_t id[DIR_PASSWORD_ID_BYTES],
                      char out[2 * DIR_PASSWORD_ID_BYTES + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < DIR_PASSWORD_ID_BYTES; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[2 * DIR_PASSWORD_ID_BYTES] = '\0';
}

/* hashes_open - the Passwords key in HKCU of the context's user, opened (access: REG_READ,
 * REG_WRITE) through HKU so that a reader never makes a hive; with create, through HKCU,
 * making the hive (given to that user when root makes it) and the key. Win32 error
 * (ERROR_FILE_NOT_FOUND: no hive or no key). */
static int hashes_open(directory *d, bool create, unsigned access, reg_key **out)
{
    *out = NULL;
    reg_key *root;
    int rc = reg_key_open_root(d->reg, create ? REG_ROOT_HKCU : REG_ROOT_HKU, &root);
    if (rc)
        return rc;
    if (create) {
        rc = reg_key_create(root, DIR_PASSWORDS_KEY, 0, NULL, out, NULL);
    } else {
        buf b = BUF_INIT;
        char *path = buf_printf(&b, "%s\\%s", reg_ctx_user_sid(d->reg), DIR_PASSWORDS_KEY)
                         ? NULL
                         : buf_detach(&b, NULL);
        rc = path ? reg_key_open(root, path, access, out) : ERROR_NOT_ENOUGH_MEMORY;
        free(path);
        buf_free(&b);
    }
    reg_key_close(root);
    return rc;
}

/* hash_delete - remove the hash id named, when it is there: after the id left HKLM, so it is
 * no longer used. A failure leaves a hash no mailbox names, which nothing can use. */
static void hash_delete(directory *d, const uint8_t id[DIR_PASSWORD_ID_BYTES])
{
    reg_key *k;
    if (hashes_open(d, false, REG_READ | REG_WRITE, &k))
        return;
    char name[2 * DIR_PASSWORD_ID_BYTES + 1];
    pwid_name(id, name);
    reg_value_delete(k, name);
    reg_key_close(k);
}

/* load_hashes - the hash of every mailbox with a PasswordId into s. A hive or key that is
 * missing or closed to this user gives no hashes (a process that is not the service account
 * reads the directory without them); a hash that is not a REG_SZ of at most DIR_MAX_HASH
 * printable ASCII bytes is no hash. Win32 error. */
static int load_hashes(directory *d, snap *s)
{
    bool any = false;
    for (size_t i = 0; i < s->nmb; i++)
        any |= s->mb[i].has_pwid;
    if (!any)
        return ERROR_SUCCESS;
    reg_key *k;
    int rc = hashes_open(d, false, REG_READ, &k);
    if (rc == ERROR_FILE_NOT_FOUND || rc == ERROR_ACCESS_DENIED)
        return ERROR_SUCCESS;
    for (size_t i = 0; !rc && i < s->nmb; i++) {
        if (!s->mb[i].has_pwid)
            continue;
        char name[2 * DIR_PASSWORD_ID_BYTES + 1];
        pwid_name(s->mb[i].pwid, name);
        buf h = BUF_INIT;
        rc = reg_value_get_sz(k, name, &h);
        if (rc == ERROR_FILE_NOT_FOUND || rc == ERROR_INVALID_DATA) {
            rc = ERROR_SUCCESS;
        } else if (!rc && h.len && h.len <= DIR_MAX_HASH) {
            bool printable = true;
            for (size_t j = 0; j < h.len; j++)
                printable &= h.data[j] > 0x20 && h.data[j] < 0x7F;
            if (printable && !(s->mb[i].hash = buf_detach(&h, NULL)))
                rc = ERROR_NOT_ENOUGH_MEMORY;
        }
        buf_free(&h);
    }
    reg_key_close(k);
    return rc;
}

/* reload - watch first, then read: a change after the read fires the watch again. Returns 0
 * or an errno value; the old index stays on failure. The hashes are read after HKLM: a new
 * hash is written before the id that names it, an old one deleted after its id went. */
static int reload(directory *d)
{
    snap s;
    int rc = watch_reset(d);
    if (!rc)
        rc = snap_load(d->lm, &s);
    if (!rc && (rc = load_hashes(d, &s)))
        snap_free(&s);
    if (rc) {
        d->stale = true;
        return win32_errno(rc);
    }
    dindex ix;
    int e = index_build(&s, &ix);
    snap_free(&s);
    if (e) {
        d->stale = true;
        return e;
    }
    index_free(&d->idx);
    d->idx = ix;
    d->stale = false;
    return 0;
}

int dir_open(reg_ctx *reg, directory **out)
{
    *out = NULL;
    directory *d = calloc(1, sizeof *d);
    if (!d)
        return ENOMEM;
    d->reg = reg;
    d->epfd = -1;
    buf p = BUF_INIT;
    int rc = 0;
    if (buf_printf(&p, "%s/%s", reg_ctx_root_dir(reg), DIR_STORE_SUBDIR) ||
        !(d->store_dir = buf_detach(&p, NULL)))
        rc = ENOMEM;
    buf_free(&p);
    if (!rc)
        rc = win32_errno(reg_key_open_root(reg, REG_ROOT_HKLM, &d->lm));
    if (!rc && (d->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        rc = errno;
    if (!rc)
        rc = reload(d);
    if (rc) {
        dir_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

void dir_close(directory *d)
{
    if (!d)
        return;
    index_free(&d->idx);
    reg_notify_free(d->watch);
    reg_key_close(d->watch_key);
    reg_key_close(d->lm);
    if (d->epfd >= 0)
        close(d->epfd);
    free(d->store_dir);
    free(d);
}

int dir_notify_fd(const directory *d)
{
    return d->epfd;
}

int dir_refresh(directory *d)
{
    bool fired = false;
    if (reg_notify_check(d->watch, &fired)) {
        /* A watch that cannot be read is replaced by the reload. */
        d->watch_is_dir = false;
        fired = true;
    }
    return fired || d->stale ? reload(d) : 0;
}

/* refresh_if_signalled - the lazy refresh of lookups: only when the descriptor is readable
 * (a zero-timeout poll) or the last reload failed. */
static int refresh_if_signalled(directory *d)
{
    struct pollfd p = {.fd = d->epfd, .events = POLLIN};
    if (poll(&p, 1, 0) > 0 || d->stale)
        return dir_refresh(d);
    return 0;
}

int dir_lookup(directory *d, const char *address, char **alias)
{
    *alias = NULL;
    int rc = refresh_if_signalled(d);
    if (rc)
        return rc;
    char key[DIR_MAX_ADDRESS + 1];
    size_t n = address ? strlen(address) : 0;
    if (!n || n > DIR_MAX_ADDRESS)
        return ENOENT; /* no mailbox can have it */
    memcpy(key, address, n + 1);
    ascii_lower(key);
    const slot *s = map_get(&d->idx.addr, key);
    if (!s)
        return ENOENT;
    return (*alias = strdup(d->idx.aliases.v[s->val])) ? 0 : ENOMEM;
}

bool dir_is_local_domain(directory *d, const char *domain)
{
    refresh_if_signalled(d); /* on failure the last index answers, as documented */
    char key[DIR_MAX_DOMAIN + 1];
    size_t n = domain ? strlen(domain) : 0;
    if (!n || n > DIR_MAX_DOMAIN)
        return false;
    memcpy(key, domain, n + 1);
    ascii_lower(key);
    return map_get(&d->idx.domain, key) != NULL;
}

int dir_auth_lookup(directory *d, const char *login, char alias[DIR_MAX_ALIAS + 1], char *hash,
                    size_t hashsize)
{
    alias[0] = '\0';
    if (hashsize)
        hash[0] = '\0';
    int rc = refresh_if_signalled(d);
    if (rc)
        return rc;
    char key[DIR_MAX_ADDRESS + 1];
    size_t n = login ? strlen(login) : 0;
    if (!n || n > DIR_MAX_ADDRESS)
        return ENOENT; /* no alias or address is that long */
    memcpy(key, login, n + 1);
    ascii_lower(key);
    /* An alias has no '@' (dir_alias_valid), an address always one. */
    const slot *s = map_get(strchr(key, '@') ? &d->idx.addr : &d->idx.alias, key);
    if (!s || !d->idx.hashes[s->val])
        return ENOENT;
    const char *a = d->idx.aliases.v[s->val], *h = d->idx.hashes[s->val];
    if (strlen(h) >= hashsize)
        return ERANGE;
    if (strlen(a) > DIR_MAX_ALIAS)
        return ENOENT; /* cannot happen: the index holds valid aliases only */
    memcpy(alias, a, strlen(a) + 1);
    memcpy(hash, h, strlen(h) + 1);
    return 0;
}

/* --- changes --------------------------------------------------------------------------- */

/* change - an open write transaction with the Directory's keys (made when missing: they
 * vanish again when the transaction is aborted) and the directory as it is inside it. */
typedef struct change {
    reg_key *domains, *mailboxes;
    snap s;
} change;

static int change_begin(directory *d, change *c, dir_err *err)
{
    memset(c, 0, sizeof *c);
    int rc = reg_txn_begin(d->lm);
    if (rc)
        return fail_reg(err, rc);
    rc = reg_key_create(d->lm, DIR_DOMAINS_KEY, 0, NULL, &c->domains, NULL);
    if (!rc)
        rc = reg_key_create(d->lm, DIR_MAILBOXES_KEY, 0, NULL, &c->mailboxes, NULL);
    if (!rc)
        rc = snap_load(d->lm, &c->s);
    if (rc) {
        reg_key_close(c->domains);
        reg_key_close(c->mailboxes);
        reg_txn_abort(d->lm);
        return fail_reg(err, rc);
    }
    return 0;
}

/* change_abort - drop the transaction. */
static void change_abort(directory *d, change *c)
{
    reg_key_close(c->domains);
    reg_key_close(c->mailboxes);
    snap_free(&c->s);
    reg_txn_abort(d->lm);
}

/* change_end - commit when rc is 0, abort otherwise; returns the outcome. */
static int change_end(directory *d, change *c, int rc, dir_err *err)
{
    if (rc) {
        change_abort(d, c);
        return rc;
    }
    reg_key_close(c->domains);
    reg_key_close(c->mailboxes);
    snap_free(&c->s);
    int w = reg_txn_commit(d->lm);
    return w ? fail_reg(err, w) : 0;
}

int dir_domain_add(directory *d, const char *domain, dir_err *err)
{
    err_clear(err);
    if (!dir_domain_valid(domain))
        return fail(err, DIR_BAD_DOMAIN, domain, NULL, EINVAL);
    char name[DIR_MAX_DOMAIN + 1];
    memcpy(name, domain, strlen(domain) + 1);
    ascii_lower(name);
    change c;
    int rc = change_begin(d, &c, err);
    if (rc)
        return rc;
    if (snap_domain_accepted(&c.s, name))
        rc = fail(err, DIR_DOMAIN_EXISTS, name, NULL, EEXIST);
    else if ((rc = reg_value_set_dword(c.domains, name, 1)))
        rc = fail_reg(err, rc);
    return change_end(d, &c, rc, err);
}

/* mailbox_in_domain - a mailbox with an SMTP address in domain, or NULL. */
static const mbx *mailbox_in_domain(const snap *s, const char *domain)
{
    for (size_t i = 0; i < s->nmb; i++)
        for (size_t j = 0; j < s->mb[i].proxies.n; j++) {
            const char *a = proxy_smtp(s->mb[i].proxies.v[j], NULL);
            if (a && !strcasecmp(address_domain(a), domain))
                return &s->mb[i];
        }
    return NULL;
}

int dir_domain_remove(directory *d, const char *domain, dir_err *err)
{
    err_clear(err);
    if (!dir_domain_valid(domain))
        return fail(err, DIR_BAD_DOMAIN, domain, NULL, EINVAL);
    char name[DIR_MAX_DOMAIN + 1];
    memcpy(name, domain, strlen(domain) + 1);
    ascii_lower(name);
    change c;
    int rc = change_begin(d, &c, err);
    if (rc)
        return rc;
    const mbx *user;
    if (!snap_domain_accepted(&c.s, name))
        rc = fail(err, DIR_NO_SUCH_DOMAIN, name, NULL, ENOENT);
    else if ((user = mailbox_in_domain(&c.s, name)))
        rc = fail(err, DIR_DOMAIN_IN_USE, name, user->alias, EBUSY);
    else if ((rc = reg_value_delete(c.domains, name)))
        rc = fail_reg(err, rc);
    return change_end(d, &c, rc, err);
}

int dir_domain_list(directory *d, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    strv v = {0};
    int rc = load_domains(d->lm, &v);
    if (rc) {
        strv_free(&v);
        return win32_errno(rc);
    }
    *names = v.v;
    *n = v.n;
    return 0;
}

int dir_mailbox_list(directory *d, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    reg_key *k;
    int rc = reg_key_open(d->lm, DIR_MAILBOXES_KEY, REG_READ, &k);
    if (rc == ERROR_FILE_NOT_FOUND)
        return 0;
    if (rc)
        return win32_errno(rc);
    strv v = {0};
    rc = load_aliases(k, &v);
    reg_key_close(k);
    if (rc) {
        strv_free(&v);
        return win32_errno(rc);
    }
    *names = v.v;
    *n = v.n;
    return 0;
}

/* check_address_syntax - every address valid and none twice. */
static int check_address_syntax(const char *const *a, size_t n, dir_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!dir_address_valid(a[i]))
            return fail(err, DIR_BAD_ADDRESS, a[i], NULL, EINVAL);
        for (size_t j = 0; j < i; j++)
            if (!strcasecmp(a[i], a[j]))
                return fail(err, DIR_ADDRESS_REPEATED, a[i], NULL, EINVAL);
    }
    return 0;
}

/* check_new_address - address may go to mailbox m (NULL: a new one): its domain accepted,
 * no other mailbox has it. */
static int check_new_address(const snap *s, const mbx *m, const char *address, dir_err *err)
{
    if (!snap_domain_accepted(s, address_domain(address)))
        return fail(err, DIR_DOMAIN_NOT_ACCEPTED, address, NULL, EINVAL);
    const mbx *owner = snap_owner(s, address, m);
    if (owner)
        return fail(err, DIR_ADDRESS_TAKEN, address, owner->alias, EADDRINUSE);
    return 0;
}

/* write_proxies - ProxyAddresses: "SMTP:primary", "smtp:" each secondary, then the entries
 * of other types as they were. Win32 error. */
static int write_proxies(reg_key *k, const char *primary, const strv *secondary, const strv *others)
{
    size_t n = 1 + secondary->n + others->n;
    char **all = calloc(n, sizeof *all);
    if (!all)
        return ERROR_NOT_ENOUGH_MEMORY;
    int rc = ERROR_SUCCESS;
    buf b = BUF_INIT;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i < 1 + secondary->n) {
            const char *a = i ? secondary->v[i - 1] : primary;
            if (buf_printf(&b, "%s%s", i ? DIR_PROXY_SECONDARY : DIR_PROXY_PRIMARY, a) ||
                !(all[i] = buf_detach(&b, NULL)))
                rc = ERROR_NOT_ENOUGH_MEMORY;
        } else if (!(all[i] = strdup(others->v[i - 1 - secondary->n]))) {
            rc = ERROR_NOT_ENOUGH_MEMORY;
        }
    }
    buf_free(&b);
    if (!rc)
        rc = reg_value_set_multi_sz(k, "ProxyAddresses", (const char *const *)all, n);
    for (size_t i = 0; i < n; i++)
        free(all[i]);
    free(all);
    return rc;
}

/* make_maildir - the Maildir of alias, made when missing. errno value. */
static int make_maildir(directory *d, const char *alias, char **path)
{
    store *st;
    int e = store_open(d->store_dir, true, &st);
    if (e)
        return e;
    e = store_mailbox_ensure(st, alias, path);
    store_close(st);
    return e;
}

int dir_mailbox_add(directory *d, const char *alias, const char *display_name,
                    const char *const *addresses, size_t n, char **maildir, dir_err *err)
{
    err_clear(err);
    if (maildir)
        *maildir = NULL;
    if (!dir_alias_valid(alias))
        return fail(err, DIR_BAD_ALIAS, alias, NULL, EINVAL);
    if (!strcasecmp(alias, DIR_RESERVED_ALIAS))
        return fail(err, DIR_RESERVED, alias, NULL, EINVAL);
    if (display_name && !dir_name_valid(display_name))
        return fail(err, DIR_BAD_NAME, NULL, NULL, EINVAL);
    if (!n)
        return fail(err, DIR_NO_ADDRESS, alias, NULL, EINVAL);
    if (n > DIR_MAX_ADDRESSES)
        return fail(err, DIR_TOO_MANY_ADDRESSES, alias, NULL, E2BIG);
    int rc = check_address_syntax(addresses, n, err);
    if (rc)
        return rc;
    change c;
    if ((rc = change_begin(d, &c, err)))
        return rc;
    const mbx *same = snap_mailbox(&c.s, alias);
    if (same)
        rc = fail(err, DIR_MAILBOX_EXISTS, same->alias, NULL, EEXIST);
    for (size_t i = 0; i < n && !rc; i++)
        rc = check_new_address(&c.s, NULL, addresses[i], err);
    reg_key *k = NULL;
    unsigned disp = 0;
    if (!rc && (rc = reg_key_create(c.mailboxes, alias, 0, NULL, &k, &disp)))
        rc = fail_reg(err, rc);
    /* A key the enumeration skipped (a name that is no alias) cannot be an alias of the
     * same letters; anything else existing would have been found above. */
    if (!rc && disp != REG_CREATED_NEW_KEY)
        rc = fail(err, DIR_MAILBOX_EXISTS, alias, NULL, EEXIST);
    if (!rc &&
        (rc = reg_value_set_sz(k, "DisplayName", REG_SZ, display_name ? display_name : alias)))
        rc = fail_reg(err, rc);
    if (!rc) {
        strv secondary = {.v = (char **)addresses + 1, .n = n - 1}, others = {0};
        if ((rc = write_proxies(k, addresses[0], &secondary, &others)))
            rc = fail_reg(err, rc);
    }
    reg_key_close(k);
    /* The Maildir before the commit: a mailbox mail cannot be delivered to is never seen. */
    int e;
    if (!rc && (e = make_maildir(d, alias, maildir))) {
        if (err)
            err->sys_error = e;
        rc = fail(err, DIR_MAILDIR, alias, NULL, e);
    }
    rc = change_end(d, &c, rc, err);
    if (rc && maildir) {
        free(*maildir);
        *maildir = NULL;
    }
    return rc;
}

/* strv_find - the index of address in v (without regard to case), or -1. */
static long strv_find(const strv *v, const char *address)
{
    for (size_t i = 0; i < v->n; i++)
        if (!strcasecmp(v->v[i], address))
            return (long)i;
    return -1;
}

/* proxies_split - a mailbox's entries as primary (NULL when none), secondary addresses and
 * entries of other types. False on ENOMEM. */
static bool proxies_split(const strv *proxies, char **primary, strv *secondary, strv *others)
{
    *primary = NULL;
    for (size_t i = 0; i < proxies->n; i++) {
        bool prim;
        const char *a = proxy_smtp(proxies->v[i], &prim);
        bool ok;
        if (!a)
            ok = strv_add(others, proxies->v[i]);
        else if (prim && !*primary)
            ok = (*primary = strdup(a)) != NULL;
        else
            ok = strv_add(secondary, a);
        if (!ok)
            return false;
    }
    return true;
}

/* apply_change - ch applied to mailbox m's lists (see dir_mailbox_set). errno value. */
static int apply_change(const snap *s, const mbx *m, const dir_change *ch, char **primary,
                        strv *sec, dir_err *err)
{
    const char *removed_primary = NULL;
    for (size_t i = 0; i < ch->nremove; i++) {
        long at = strv_find(sec, ch->remove[i]);
        if (at >= 0) {
            strv_remove(sec, (size_t)at);
        } else if (*primary && !strcasecmp(*primary, ch->remove[i])) {
            removed_primary = ch->remove[i];
            free(*primary);
            *primary = NULL;
        } else {
            return fail(err, DIR_NO_SUCH_ADDRESS, ch->remove[i], m->alias, ENOENT);
        }
    }
    for (size_t i = 0; i < ch->nadd; i++) {
        if (strv_find(sec, ch->add[i]) >= 0 || (*primary && !strcasecmp(*primary, ch->add[i])))
            return fail(err, DIR_ADDRESS_EXISTS, ch->add[i], m->alias, EEXIST);
        int rc = check_new_address(s, m, ch->add[i], err);
        if (rc)
            return rc;
        if (!strv_add(sec, ch->add[i]))
            return fail_sys(err, ENOMEM);
    }
    const char *p = ch->primary;
    if (p && !(*primary && !strcasecmp(*primary, p))) {
        /* A secondary address promoted keeps the form it was stored in. */
        char *promoted = NULL;
        long at = strv_find(sec, p);
        if (at >= 0) {
            promoted = sec->v[at];
            sec->v[at] = NULL;
            strv_remove(sec, (size_t)at);
        } else {
            int rc = check_new_address(s, m, p, err);
            if (rc)
                return rc;
            if (!(promoted = strdup(p)))
                return fail_sys(err, ENOMEM);
        }
        /* The old primary stays, as the first secondary address. */
        if (*primary) {
            char *old = *primary;
            *primary = NULL;
            if (!strv_take(sec, old)) { /* frees old on failure */
                free(promoted);
                return fail_sys(err, ENOMEM);
            }
            memmove(sec->v + 1, sec->v, (sec->n - 1) * sizeof *sec->v);
            sec->v[0] = old;
        }
        *primary = promoted;
    }
    if (!*primary)
        return fail(err, DIR_PRIMARY_REMOVED, removed_primary ? removed_primary : "", m->alias,
                    EINVAL);
    if (1 + sec->n > DIR_MAX_ADDRESSES)
        return fail(err, DIR_TOO_MANY_ADDRESSES, m->alias, NULL, E2BIG);
    return 0;
}

int dir_mailbox_set(directory *d, const char *alias, const dir_change *ch, dir_err *err)
{
    err_clear(err);
    if (!dir_alias_valid(alias))
        return fail(err, DIR_BAD_ALIAS, alias, NULL, EINVAL);
    if (ch->display_name && !dir_name_valid(ch->display_name))
        return fail(err, DIR_BAD_NAME, NULL, NULL, EINVAL);
    if (ch->nadd > DIR_MAX_ADDRESSES)
        return fail(err, DIR_TOO_MANY_ADDRESSES, alias, NULL, E2BIG);
    int rc = check_address_syntax(ch->add, ch->nadd, err);
    if (!rc && ch->primary && !dir_address_valid(ch->primary))
        rc = fail(err, DIR_BAD_ADDRESS, ch->primary, NULL, EINVAL);
    for (size_t i = 0; !rc && i < ch->nremove; i++)
        for (size_t j = 0; !rc && j < i; j++)
            if (!strcasecmp(ch->remove[i], ch->remove[j]))
                rc = fail(err, DIR_ADDRESS_REPEATED, ch->remove[i], NULL, EINVAL);
    if (rc)
        return rc;
    change c;
    if ((rc = change_begin(d, &c, err)))
        return rc;
    const mbx *m = snap_mailbox(&c.s, alias);
    char *primary = NULL;
    strv sec = {0}, others = {0};
    reg_key *k = NULL;
    if (!m)
        rc = fail(err, DIR_NO_SUCH_MAILBOX, alias, NULL, ENOENT);
    else if (!proxies_split(&m->proxies, &primary, &sec, &others))
        rc = fail_sys(err, ENOMEM);
    if (!rc)
        rc = apply_change(&c.s, m, ch, &primary, &sec, err);
    if (!rc && (rc = reg_key_open(c.mailboxes, m->alias, REG_READ | REG_WRITE, &k)))
        rc = fail_reg(err, rc);
    if (!rc && ch->display_name &&
        (rc = reg_value_set_sz(k, "DisplayName", REG_SZ, ch->display_name)))
        rc = fail_reg(err, rc);
    if (!rc && (rc = write_proxies(k, primary, &sec, &others)))
        rc = fail_reg(err, rc);
    reg_key_close(k);
    free(primary);
    strv_free(&sec);
    strv_free(&others);
    return change_end(d, &c, rc, err);
}

int dir_mailbox_remove(directory *d, const char *alias, dir_err *err)
{
    err_clear(err);
    if (!dir_alias_valid(alias))
        return fail(err, DIR_BAD_ALIAS, alias, NULL, EINVAL);
    change c;
    int rc = change_begin(d, &c, err);
    if (rc)
        return rc;
    const mbx *m = snap_mailbox(&c.s, alias);
    if (!m)
        rc = fail(err, DIR_NO_SUCH_MAILBOX, alias, NULL, ENOENT);
    else if ((rc = reg_key_delete_tree(c.mailboxes, m->alias)))
        rc = fail_reg(err, rc);
    /* The Maildir stays: mail is never deleted by an admin command. */
    bool had_pw = m && m->has_pwid;
    uint8_t pwid[DIR_PASSWORD_ID_BYTES];
    if (had_pw)
        memcpy(pwid, m->pwid, sizeof pwid);
    rc = change_end(d, &c, rc, err);
    if (!rc && had_pw)
        hash_delete(d, pwid);
    return rc;
}

/* --- passwords ------------------------------------------------------------------------- */

/* mailbox_exists - a read before any write: a password for no mailbox leaves nothing. */
static int mailbox_exists(directory *d, const char *alias, dir_err *err)
{
    dir_mailbox m;
    int rc = dir_mailbox_show(d, alias, &m, err);
    dir_mailbox_free(&m);
    return rc;
}

int dir_password_set(directory *d, const char *alias, const char *password, dir_err *err)
{
    err_clear(err);
    if (!dir_alias_valid(alias))
        return fail(err, DIR_BAD_ALIAS, alias, NULL, EINVAL);
    if (!password || !dir_password_valid(password, strnlen(password, DIR_MAX_PASSWORD + 1)))
        return fail(err, DIR_BAD_PASSWORD, NULL, NULL, EINVAL);
    int rc = mailbox_exists(d, alias, err);
    if (rc)
        return rc;
    char hash[DIR_MAX_HASH + 1];
    if ((rc = dir_pw_hash(password, hash, sizeof hash))) {
        if (err)
            err->sys_error = rc;
        return fail(err, DIR_HASH, alias, NULL, rc == ENOMEM ? ENOMEM : EIO);
    }
    uint8_t id[DIR_PASSWORD_ID_BYTES];
    if ((rc = base_random(id, sizeof id)))
        return fail_sys(err, rc);
    char name[2 * DIR_PASSWORD_ID_BYTES + 1];
    pwid_name(id, name);
    /* The hash first, in its own transaction: the id that names it comes next. */
    reg_key *hk;
    if ((rc = hashes_open(d, true, REG_READ | REG_WRITE, &hk)))
        return fail_reg(err, rc);
    rc = reg_value_set_sz(hk, name, REG_SZ, hash);
    reg_key_close(hk);
    if (rc)
        return fail_reg(err, rc);
    change c;
    if ((rc = change_begin(d, &c, err))) {
        hash_delete(d, id);
        return rc;
    }
    const mbx *m = snap_mailbox(&c.s, alias);
    reg_key *k = NULL;
    bool had_old = false;
    uint8_t old[DIR_PASSWORD_ID_BYTES];
    if (!m) {
        rc = fail(err, DIR_NO_SUCH_MAILBOX, alias, NULL, ENOENT);
    } else {
        if ((had_old = m->has_pwid))
            memcpy(old, m->pwid, sizeof old);
        if ((rc = reg_key_open(c.mailboxes, m->alias, REG_READ | REG_WRITE, &k)) ||
            (rc = reg_value_set(k, DIR_PASSWORD_ID_VALUE, REG_BINARY, id, sizeof id)))
            rc = fail_reg(err, rc);
    }
    reg_key_close(k);
    rc = change_end(d, &c, rc, err);
    if (rc)
        hash_delete(d, id);
    else if (had_old)
        hash_delete(d, old);
    return rc;
}

int dir_password_clear(directory *d, const char *alias, dir_err *err)
{
    err_clear(err);
    if (!dir_alias_valid(alias))
        return fail(err, DIR_BAD_ALIAS, alias, NULL, EINVAL);
    change c;
    int rc = change_begin(d, &c, err);
    if (rc)
        return rc;
    const mbx *m = snap_mailbox(&c.s, alias);
    reg_key *k = NULL;
    bool had = false;
    uint8_t old[DIR_PASSWORD_ID_BYTES];
    if (!m) {
        rc = fail(err, DIR_NO_SUCH_MAILBOX, alias, NULL, ENOENT);
    } else if ((had = m->has_pwid)) {
        memcpy(old, m->pwid, sizeof old);
        if ((rc = reg_key_open(c.mailboxes, m->alias, REG_READ | REG_WRITE, &k)) ||
            (rc = reg_value_delete(k, DIR_PASSWORD_ID_VALUE)))
            rc = fail_reg(err, rc);
    }
    reg_key_close(k);
    if (!rc && !had) {
        change_abort(d, &c); /* no password: nothing to change */
        return 0;
    }
    rc = change_end(d, &c, rc, err);
    if (!rc)
        hash_delete(d, old);
    return rc;
}

void dir_mailbox_free(dir_mailbox *m)
{
    if (!m)
        return;
    free(m->alias);
    free(m->display_name);
    free(m->primary);
    dir_names_free(m->secondary, m->nsecondary);
    free(m->maildir);
    memset(m, 0, sizeof *m);
}

/* find_alias - the stored name of mailbox alias (any case) into out. */
struct find_arg {
    const char *want;
    char found[DIR_MAX_ALIAS + 1];
};

static int find_alias_cb(void *arg, const char *name)
{
    struct find_arg *f = arg;
    if (strcasecmp(name, f->want) || strlen(name) > DIR_MAX_ALIAS)
        return 0;
    memcpy(f->found, name, strlen(name) + 1);
    return 1;
}

int dir_mailbox_show(directory *d, const char *alias, dir_mailbox *out, dir_err *err)
{
    memset(out, 0, sizeof *out);
    err_clear(err);
    if (!dir_alias_valid(alias))
        return fail(err, DIR_BAD_ALIAS, alias, NULL, EINVAL);
    reg_key *mailboxes = NULL, *k = NULL;
    int rc = reg_key_open(d->lm, DIR_MAILBOXES_KEY, REG_READ, &mailboxes);
    struct find_arg f = {.want = alias};
    if (!rc) {
        rc = reg_key_enum_subkeys(mailboxes, find_alias_cb, &f);
        rc = rc == 1 ? ERROR_SUCCESS : rc ? rc : ERROR_FILE_NOT_FOUND;
    }
    if (!rc)
        rc = reg_key_open(mailboxes, f.found, REG_READ, &k);
    reg_key_close(mailboxes);
    if (rc)
        return rc == ERROR_FILE_NOT_FOUND ? fail(err, DIR_NO_SUCH_MAILBOX, alias, NULL, ENOENT)
                                          : fail_reg(err, rc);
    buf name = BUF_INIT, path = BUF_INIT;
    strv proxies = {0}, sec = {0}, others = {0};
    rc = reg_value_get_sz(k, "DisplayName", &name);
    if (rc == ERROR_FILE_NOT_FOUND || rc == ERROR_INVALID_DATA)
        rc = ERROR_SUCCESS; /* none, or not a string: shown as none */
    if (!rc)
        rc = read_multi_sz(k, "ProxyAddresses", &proxies);
    mbx pw = {0};
    if (!rc)
        rc = read_pwid(k, &pw);
    out->password = pw.has_pwid;
    reg_key_close(k);
    if (rc) {
        rc = fail_reg(err, rc);
    } else if (!proxies_split(&proxies, &out->primary, &sec, &others) ||
               !(out->alias = strdup(f.found)) || !(out->display_name = buf_detach(&name, NULL)) ||
               buf_printf(&path, "%s/%s", d->store_dir, f.found) ||
               !(out->maildir = buf_detach(&path, NULL))) {
        rc = fail_sys(err, ENOMEM);
    }
    buf_free(&name);
    buf_free(&path);
    strv_free(&proxies);
    strv_free(&others);
    if (rc) {
        strv_free(&sec);
        dir_mailbox_free(out);
        return rc;
    }
    out->secondary = sec.v;
    out->nsecondary = sec.n;
    return 0;
}
