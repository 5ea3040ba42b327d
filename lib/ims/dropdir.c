/* dropdir.c - the Pickup directory (ims.h, "the Pickup directory"): the parser of a dropped
 * file's envelope and header section, the fields the service puts before it, the folders'
 * permissions, and its start on pickup.c's engine. */
#include "ims/pickup_int.h"
#include "ims/spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "smtp/smtp.h"

#define DD_ADDR_MAX 1024 /* bytes of one address's text kept (longer: bad, and cut) */

/* --- the parser ------------------------------------------------------------------------- */

void ims_dropdir_msg_free(ims_dropdir_msg *m)
{
    free(m->sender);
    for (size_t i = 0; i < m->nrcpt; i++)
        free(m->rcpts[i].address);
    free(m->rcpts);
    free(m->cuts);
    memset(m, 0, sizeof *m);
}

/* An address being collected: its text outside comments and blanks, capped. */
typedef struct dd_text {
    char v[DD_ADDR_MAX];
    size_t n;
    bool over; /* more than DD_ADDR_MAX bytes: kept cut, it cannot be a path */
} dd_text;

static void text_add(dd_text *t, char c)
{
    if (t->n < sizeof t->v)
        t->v[t->n++] = c;
    else
        t->over = true;
}

typedef int (*dd_addr_fn)(void *arg, const char *a, size_t n);

/* emit - the address of one list element: what was in <> when there was one, else the bare
 * text (a display name without <> gives a text that is no path: the caller sees it bad). */
static int emit(dd_text *bare, dd_text *angle, bool have_angle, dd_addr_fn fn, void *arg)
{
    const dd_text *t = have_angle ? angle : bare;
    int rc = 0;
    if (t->n)
        rc = fn(arg, t->v, t->over ? sizeof t->v : t->n);
    bare->n = angle->n = 0;
    bare->over = angle->over = false;
    return rc;
}

/* addr_list - each address of the RFC 5322 address list v[0..n) to fn: display names,
 * quoted strings, comments (nested), groups ("name: a, b;"), folding. fn's non-zero stops. */
static int addr_list(const char *v, size_t n, dd_addr_fn fn, void *arg)
{
    static dd_text bare_init, angle_init;
    dd_text bare = bare_init, angle = angle_init;
    bool quote = false, in_angle = false, have_angle = false;
    unsigned comment = 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        dd_text *t = in_angle ? &angle : &bare;
        if (comment) {
            if (c == '\\')
                i++;
            else if (c == '(')
                comment++;
            else if (c == ')')
                comment--;
            continue;
        }
        if (quote) {
            if (c == '\\' && i + 1 < n) {
                text_add(t, c);
                c = v[++i];
            } else if (c == '"') {
                quote = false;
            }
            if (c != '\r' && c != '\n')
                text_add(t, c);
            continue;
        }
        switch (c) {
        case '"':
            quote = true;
            text_add(t, c);
            break;
        case '(':
            comment = 1;
            break;
        case '<':
            in_angle = true;
            have_angle = true;
            angle.n = 0;
            angle.over = false;
            break;
        case '>':
            in_angle = false;
            break;
        case ',':
        case ';':
            if (in_angle) {
                text_add(t, c);
                break;
            }
            if (emit(&bare, &angle, have_angle, fn, arg))
                return 1;
            have_angle = false;
            break;
        case ':':
            if (in_angle) {
                text_add(t, c); /* a source route: refused as a path later */
                break;
            }
            bare.n = 0; /* what came before was a group's name */
            bare.over = false;
            break;
        case ' ':
        case '\t':
        case '\r':
        case '\n':
            break;
        default:
            text_add(t, c);
        }
    }
    return emit(&bare, &angle, have_angle, fn, arg);
}

typedef struct dd_state {
    ims_dropdir_msg *m;
    int err;         /* ENOMEM, or EBADMSG for too many recipients */
    char *candidate; /* the sender found so far in the header fields */
    int cand_rank;   /* 0 none, 1 From, 2 Sender */
    int rank;        /* the rank of the field being read */
} dd_state;

static int rcpt_cb(void *arg, const char *a, size_t n)
{
    dd_state *st = arg;
    if (st->m->nrcpt >= IMS_SPOOL_MAX_RCPTS) {
        st->err = EBADMSG;
        return 1;
    }
    if ((st->err = ims_pickup_rcpt_add(&st->m->rcpts, &st->m->nrcpt, a, n)))
        return 1;
    return 0;
}

/* sender_cb - the first valid mailbox of a Sender: or From: field is a sender candidate. */
static int sender_cb(void *arg, const char *a, size_t n)
{
    dd_state *st = arg;
    smtp_path path;
    if (st->cand_rank >= st->rank || ims_pickup_path(a, n, SMTP_PATH_REVERSE, &path) ||
        !path.mailbox[0])
        return 0;
    char *c = strdup(path.mailbox);
    if (!c) {
        st->err = ENOMEM;
        return 1;
    }
    free(st->candidate);
    st->candidate = c;
    st->cand_rank = st->rank;
    return 1; /* the first one only */
}

static int add_cut(ims_dropdir_msg *m, size_t off, size_t len)
{
    if ((m->ncut & (m->ncut - 1)) == 0) {
        ims_dropdir_cut *c = realloc(m->cuts, (m->ncut ? m->ncut * 2 : 1) * sizeof *c);
        if (!c)
            return ENOMEM;
        m->cuts = c;
    }
    m->cuts[m->ncut++] = (ims_dropdir_cut){off, len};
    return 0;
}

/* field_name_len - the length of the field name p[0..n) starts with (printable ASCII but
 * ':', then ':'); 0 when the line is no field. */
static size_t field_name_len(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] > 32 && p[i] < 127 && p[i] != ':')
        i++;
    return i > 0 && i < n && p[i] == ':' ? i : 0;
}

static bool name_is(const char *p, size_t k, const char *name)
{
    return strlen(name) == k && !strncasecmp(p, name, k);
}

/* envelope_field - an X-Sender or X-Receiver value at the start of the file. */
static int envelope_field(dd_state *st, bool sender, const char *v, size_t n, const char **why)
{
    ims_dropdir_msg *m = st->m;
    if (!sender) {
        m->rcpts_given = true;
        if (addr_list(v, n, rcpt_cb, st) && st->err == EBADMSG)
            *why = "more recipients than a message may have";
        return st->err;
    }
    if (m->sender_given) {
        *why = "more than one X-Sender";
        return EBADMSG;
    }
    while (n && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
        v++, n--;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    smtp_path path;
    if (ims_pickup_path(v, n, SMTP_PATH_REVERSE, &path)) {
        *why = "the X-Sender is not an address";
        return EBADMSG;
    }
    if (!(m->sender = strdup(path.mailbox)))
        return ENOMEM;
    m->sender_given = true;
    return 0;
}

/* header_field - a field of the header section, p[off..end) (folded lines included). */
static int header_field(dd_state *st, const char *p, size_t off, size_t end, unsigned flags,
                        const char **why)
{
    ims_dropdir_msg *m = st->m;
    const char *f = p + off;
    size_t k = field_name_len(f, end - off);
    const char *v = f + k + 1;
    size_t vn = end - off - k - 1;
    bool use_headers = !(flags & IMS_DROPDIR_NO_HEADERS) || (flags & IMS_DROPDIR_NO_ENVELOPE);
    if (name_is(f, k, "Bcc")) {
        if (use_headers && !m->rcpts_given)
            addr_list(v, vn, rcpt_cb, st);
        if (!st->err)
            st->err = add_cut(m, off, end - off);
    } else if (name_is(f, k, "To") || name_is(f, k, "Cc")) {
        if (use_headers && !m->rcpts_given)
            addr_list(v, vn, rcpt_cb, st);
    } else if (name_is(f, k, "From") || name_is(f, k, "Sender")) {
        m->has_from |= name_is(f, k, "From");
        st->rank = name_is(f, k, "Sender") ? 2 : 1;
        if (!m->sender_given)
            addr_list(v, vn, sender_cb, st);
    } else if (name_is(f, k, "Date")) {
        m->has_date = true;
    } else if (name_is(f, k, "Message-ID")) {
        m->has_message_id = true;
    } else if ((flags & IMS_DROPDIR_NO_ENVELOPE) &&
               (name_is(f, k, "X-Sender") || name_is(f, k, "X-Receiver"))) {
        st->err = add_cut(m, off, end - off); /* ims-sendmail writes its own envelope */
    }
    if (st->err == EBADMSG)
        *why = "more recipients than a message may have";
    return st->err;
}

/* line_end - the end of the line at off (after its LF), or SIZE_MAX when it has none in n. */
static size_t line_end(const char *p, size_t n, size_t off)
{
    const char *nl = memchr(p + off, '\n', n - off);
    return nl ? (size_t)(nl - p) + 1 : SIZE_MAX;
}

int ims_dropdir_parse(const char *p, size_t n, bool eof, unsigned flags, ims_dropdir_msg *out,
                      const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    dd_state st = {.m = out};
    bool envelope = !(flags & IMS_DROPDIR_NO_ENVELOPE);
    size_t off = 0;
    int rc = 0;
    for (;;) {
        if (off > IMS_DROPDIR_HEADER_MAX) {
            rc = EBADMSG, *why = "its header section is too long";
            break;
        }
        if (off == n) {
            if (eof)
                out->header_end = n;
            else
                rc = EAGAIN;
            break;
        }
        size_t le = line_end(p, n, off);
        if (le == SIZE_MAX && !eof) {
            rc = EAGAIN;
            break;
        }
        if (le == SIZE_MAX)
            le = n;
        size_t len = le - off;
        if (memchr(p + off, 0, len)) {
            rc = EBADMSG, *why = "its header section has a NUL";
            break;
        }
        if (len == 1 || (len == 2 && p[off] == '\r')) {
            out->header_end = le; /* the empty line: the body follows */
            break;
        }
        if (!field_name_len(p + off, len)) {
            out->header_end = off; /* no field (or a continuation first): the body */
            break;
        }
        /* The field goes on over the lines that start with a blank. */
        size_t end = le;
        while (end < n && (p[end] == ' ' || p[end] == '\t')) {
            size_t e = line_end(p, n, end);
            if (e == SIZE_MAX && !eof)
                break;
            end = e == SIZE_MAX ? n : e;
        }
        if (end > IMS_DROPDIR_HEADER_MAX) {
            rc = EBADMSG, *why = "its header section is too long";
            break;
        }
        if ((end == n && !eof) || (end < n && (p[end] == ' ' || p[end] == '\t'))) {
            rc = EAGAIN; /* the next line may go on with this field */
            break;
        }
        if (memchr(p + le, 0, end - le)) {
            rc = EBADMSG, *why = "its header section has a NUL";
            break;
        }
        size_t k = field_name_len(p + off, len);
        bool xs = name_is(p + off, k, "X-Sender"), xr = name_is(p + off, k, "X-Receiver");
        if (envelope && (xs || xr)) {
            rc = envelope_field(&st, xs, p + off + k + 1, end - off - k - 1, why);
            out->content_off = end;
        } else {
            envelope = false;
            rc = header_field(&st, p, off, end, flags, why);
        }
        if (rc)
            break;
        off = end;
    }
    if (rc == EAGAIN && n > IMS_DROPDIR_HEADER_MAX)
        rc = EBADMSG, *why = "its header section is too long";
    if (!rc && !out->sender_given && st.candidate) {
        out->sender = st.candidate;
        st.candidate = NULL;
    }
    free(st.candidate);
    bool need = !(flags & IMS_DROPDIR_NO_HEADERS);
    if (!rc && need && !out->sender)
        rc = EBADMSG, *why = "it names no sender (X-Sender, Sender or From)";
    else if (!rc && need && !out->nrcpt)
        rc = EBADMSG, *why = "it names no recipient (X-Receiver, To, Cc or Bcc)";
    if (rc) {
        ims_dropdir_msg_free(out);
        return rc;
    }
    return 0;
}

/* --- what the service adds ------------------------------------------------------------- */

/* clean_name - name with characters other than [A-Za-z0-9._-] as '?', cut to fit out. */
static void clean_name(const char *name, char *out, size_t n)
{
    size_t k = 0;
    for (; name && name[k] && k + 1 < n; k++) {
        char c = name[k];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        out[k] = ok ? c : '?';
    }
    out[k] = 0;
}

void ims_dropdir_origin(unsigned long uid, const char *name, char *out, size_t n)
{
    char clean[64];
    clean_name(name, clean, sizeof clean);
    snprintf(out, n, "pickup uid %lu%s%s", uid, clean[0] ? " " : "", clean);
}

static void rfc5322_now(time_t now, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

int ims_dropdir_head(const ims_dropdir_msg *m, const char *sender, unsigned long uid,
                     const char *user, const char *host, const char *file, time_t now, buf *out)
{
    char date[64], who[64], fname[NAME_MAX + 1];
    rfc5322_now(now, date, sizeof date);
    clean_name(user, who, sizeof who);
    clean_name(file, fname, sizeof fname);
    /* As Postfix's "(Postfix, from userid 1001)": the kernel's word on who dropped it. */
    int rc = buf_printf(out,
                        "Received: by %s (IMS Pickup directory, file %s,\r\n"
                        "\tfrom userid %lu%s%s);\r\n\t%s\r\n",
                        host, fname, uid, who[0] ? " " : "", who, date);
    if (!rc && !m->has_date)
        rc = buf_printf(out, "Date: %s\r\n", date);
    if (!rc && !m->has_message_id) {
        uint8_t r[12];
        if ((rc = base_random(r, sizeof r)))
            return rc;
        char hex[sizeof r * 2 + 1];
        for (size_t i = 0; i < sizeof r; i++)
            snprintf(hex + 2 * i, 3, "%02X", r[i]);
        rc = buf_printf(out, "Message-ID: <%s.%lld@%s>\r\n", hex, (long long)now, host);
    }
    if (!rc && !m->has_from && sender && *sender)
        rc = buf_printf(out, "From: %s\r\n", sender);
    return rc;
}

/* --- the folders ------------------------------------------------------------------------ */

int ims_dropdir_claim_dir(const char *dir, char *out, size_t n)
{
    int k = snprintf(out, n, "%s/%s", dir, IMS_DROPDIR_CLAIM_DIR);
    return k < 0 || (size_t)k >= n ? ENAMETOOLONG : 0;
}

/* own_dir - fd is a directory of ours: its mode made mode (and, with group, its group our
 * group first, so that a setgid bit holds). */
static int own_dir(int fd, mode_t mode, bool group)
{
    struct stat st;
    if (fstat(fd, &st))
        return errno;
    if (!S_ISDIR(st.st_mode))
        return ENOTDIR;
    if (st.st_uid != geteuid())
        return EPERM;
    if (group && st.st_gid != getegid() && fchown(fd, (uid_t)-1, getegid()))
        return errno;
    if ((st.st_mode & 07777) != mode && fchmod(fd, mode))
        return errno;
    return 0;
}

/* sub_dir - dir_fd's sub made when missing and owned with mode. */
static int sub_dir(int dir_fd, const char *sub, mode_t mode)
{
    if (mkdirat(dir_fd, sub, 0700) && errno != EEXIST)
        return errno;
    int fd = openat(dir_fd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? ENOTDIR : errno;
    int rc = own_dir(fd, mode, false);
    close(fd);
    return rc;
}

int ims_dropdir_prepare(const char *dir)
{
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof parent, "%s", dir) >= (int)sizeof parent)
        return ENAMETOOLONG;
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent)
        return EINVAL;
    *slash = 0;
    /* RootDir: others may pass through it to Pickup (not list it; its other folders are
     * 0750). */
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return errno;
    struct stat st;
    int rc = fstat(pfd, &st) ? errno : 0;
    if (!rc && st.st_uid != geteuid())
        rc = EPERM;
    if (!rc && !(st.st_mode & S_IXOTH) && fchmod(pfd, (st.st_mode & 07777) | S_IXOTH))
        rc = errno;
    close(pfd);
    if (rc)
        return rc;
    if (mkdir(dir, 0700) && errno != EEXIST)
        return errno;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? ENOTDIR : errno;
    /* Archive and .taking first, while Pickup may still be closed to others. */
    rc = sub_dir(fd, IMS_DROPDIR_ARCHIVE, 0700);
    if (!rc)
        rc = sub_dir(fd, IMS_DROPDIR_CLAIM_DIR, 0700);
    if (!rc)
        rc = own_dir(fd, IMS_DROPDIR_MODE, true);
    close(fd);
    return rc;
}

int ims_dropdir_start(const ims_dropdir_options *opt, ims_pickup **out)
{
    *out = NULL;
    if (!opt || !opt->dir)
        return EINVAL;
    char claim[PATH_MAX], archive[PATH_MAX];
    if (ims_dropdir_claim_dir(opt->dir, claim, sizeof claim) ||
        snprintf(archive, sizeof archive, "%s/%s", opt->dir, IMS_DROPDIR_ARCHIVE) >=
            (int)sizeof archive)
        return ENAMETOOLONG;
    ims_pickup_config cf = {
        .dropdir = true,
        .watch = opt->dir,
        .claim = claim,
        .bad = archive,
        .store_dir = opt->store_dir,
        .host = opt->host,
        .spool = opt->spool,
        .router = opt->router,
        .log = opt->log,
        .max_size = opt->max_size,
        .retry_ms = opt->retry_ms,
    };
    return ims_pickup_start_config(&cf, out);
}
