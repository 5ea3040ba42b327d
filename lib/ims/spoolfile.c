/* spoolfile.c - the spool file format: queue ids, the rules for envelope fields, and the
 * reader of a spool file with the status records delivery appended to it. */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define SPOOL_MAX_ENVELOPE (16u << 20) /* bytes of envelope (or of status) a reader accepts */
#define SPOOL_READ_CHUNK 4096

bool ims_spool_id_valid(const char *name)
{
    size_t i = 0;
    for (; name[i]; i++)
        if (i >= IMS_QUEUE_ID_LEN ||
            !((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'A' && name[i] <= 'F')))
            return false;
    return i == IMS_QUEUE_ID_LEN;
}

bool ims_spool_field_ok(const char *s, bool may_be_empty)
{
    if (!s)
        return false;
    size_t n = strcspn(s, "\r\n\t");
    return s[n] == 0 && n <= IMS_SPOOL_MAX_FIELD && (n > 0 || may_be_empty);
}

bool ims_spool_pickup_name_ok(const char *name)
{
    return ims_spool_field_ok(name, false) && name[0] != '.' && !strchr(name, '/');
}

void ims_spool_file_free(ims_spool_file *f)
{
    free(f->pickup);
    free(f->dropdir);
    free(f->tls);
    free(f->auth);
    free(f->sender);
    free(f->client_ip);
    free(f->helo);
    free(f->host);
    free(f->envid);
    free(f->ret);
    for (size_t i = 0; i < f->nrcpt; i++) {
        free(f->rcpts[i].address);
        free(f->rcpts[i].maildir);
        free(f->rcpts[i].dest);
        free(f->rcpts[i].last);
        free(f->rcpts[i].notify);
        free(f->rcpts[i].orcpt);
    }
    free(f->rcpts);
    memset(f, 0, sizeof *f);
}

bool ims_spool_tls_ok(const char *s)
{
    if (!ims_spool_field_ok(s, false))
        return false;
    size_t words = 1, len = 0;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == ' ') {
            if (len == 0 || ++words > 2)
                return false;
            len = 0;
        } else if (c < 0x21 || c > 0x7e || c == '(' || c == ')' || c == '\\') {
            return false;
        } else {
            len++;
        }
    }
    return words == 2 && len > 0;
}

const char *ims_spool_received_with(const ims_spool_file *f)
{
    bool tls = f->tls && *f->tls, auth = f->auth && *f->auth;
    return tls && auth ? "ESMTPSA" : tls ? "ESMTPS" : auth ? "ESMTPA" : "ESMTP";
}

int ims_spool_received_tls(const ims_spool_file *f, const char *eol, buf *out)
{
    if (!f->tls || !*f->tls)
        return 0;
    const char *sp = strchr(f->tls, ' ');
    if (!sp) /* not from a file the reader accepted; say what there is */
        return buf_printf(out, "\t(using %s)%s", f->tls, eol);
    return buf_printf(out, "\t(using %.*s with cipher %s)%s", (int)(sp - f->tls), f->tls, sp + 1,
                      eol);
}

/* set_once - a string field that may appear once, under the writer's rules for fields (a file
 * damaged since must not hand a CR or an over-long value to a header or a log). */
static int set_once(char **field, const char *v)
{
    if (*field || !ims_spool_field_ok(v, true))
        return EBADMSG;
    return (*field = strdup(v)) ? 0 : ENOMEM;
}

static int parse_uint(const char *v, uint64_t *out)
{
    if (!*v)
        return EBADMSG;
    uint64_t x = 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9' || x > (UINT64_MAX - 9) / 10)
            return EBADMSG;
        x = x * 10 + (uint64_t)(*v - '0');
    }
    *out = x;
    return 0;
}

static int parse_rcpt(ims_spool_file *f, char *v)
{
    char *part[4];
    for (int i = 0; i < 4; i++) {
        part[i] = v;
        char *tab = strchr(v, '\t');
        if ((i < 3) != (tab != NULL))
            return EBADMSG;
        if (tab) {
            *tab = 0;
            v = tab + 1;
        }
    }
    /* The route: a mailbox's path (the only form version 1 has), dns:<domain> or
     * smarthost:<spec>. */
    ims_route_kind route = IMS_ROUTE_LOCAL;
    const char *dest = part[3];
    if (!strncmp(dest, "dns:", 4)) {
        route = IMS_ROUTE_DNS;
        dest += 4;
        if (f->version < 2 || !smtp_domain_valid(dest, strlen(dest), false))
            return EBADMSG;
    } else if (!strncmp(dest, "smarthost:", 10)) {
        route = IMS_ROUTE_SMARTHOST;
        dest += 10;
        char host[SMTP_DOMAIN_MAX + 1];
        bool literal;
        uint16_t port;
        if (f->version < 2 || ims_host_parse(dest, host, &literal, &port))
            return EBADMSG;
    } else if (dest[0] != '/') {
        return EBADMSG;
    }
    for (int i = 0; i < 4; i++)
        if (!ims_spool_field_ok(part[i], false))
            return EBADMSG;
    if (f->nrcpt >= IMS_SPOOL_MAX_RCPTS)
        return EBADMSG;
    if ((f->nrcpt & (f->nrcpt - 1)) == 0) { /* grow at powers of two */
        size_t cap = f->nrcpt ? f->nrcpt * 2 : 1;
        ims_spool_rcpt_rec *r = realloc(f->rcpts, cap * sizeof *r);
        if (!r)
            return ENOMEM;
        f->rcpts = r;
    }
    ims_spool_rcpt_rec *r = &f->rcpts[f->nrcpt];
    memset(r, 0, sizeof *r);
    f->nrcpt++;
    r->address = strdup(part[2]);
    r->route = route;
    char **where = route == IMS_ROUTE_LOCAL ? &r->maildir : &r->dest;
    *where = strdup(dest);
    r->notify = strcmp(part[0], "-") ? strdup(part[0]) : NULL;
    r->orcpt = strcmp(part[1], "-") ? strdup(part[1]) : NULL;
    if (!r->address || !*where || (strcmp(part[0], "-") && !r->notify) ||
        (strcmp(part[1], "-") && !r->orcpt))
        return ENOMEM;
    return 0;
}

/* parse_sum - "<8 hex> <8 hex>": the envelope's and the content's CRC-32C. */
static int parse_sum(ims_spool_file *f, const char *v)
{
    uint32_t x[2];
    for (int k = 0; k < 2; k++, v++) {
        x[k] = 0;
        for (int i = 0; i < 8; i++, v++) {
            int d = *v >= '0' && *v <= '9' ? *v - '0' : *v >= 'a' && *v <= 'f' ? *v - 'a' + 10 : -1;
            if (d < 0)
                return EBADMSG;
            x[k] = x[k] << 4 | (uint32_t)d;
        }
        if (*v != (k ? 0 : ' '))
            return EBADMSG;
    }
    f->has_sum = true;
    f->env_sum = x[0];
    f->body_sum = x[1];
    return 0;
}

/* parse_line - one "key value" line of the envelope. */
static int parse_line(ims_spool_file *f, char *line, bool *have_time, bool *have_size)
{
    char *v = strchr(line, ' ');
    if (!v)
        return EBADMSG;
    *v++ = 0;
    uint64_t x;
    if (!strcmp(line, "id")) {
        if (f->id[0] || !ims_spool_id_valid(v))
            return EBADMSG;
        memcpy(f->id, v, IMS_QUEUE_ID_LEN + 1);
        return 0;
    }
    if (!strcmp(line, "time")) {
        if (*have_time || parse_uint(v, &x) || x > INT64_MAX)
            return EBADMSG;
        f->time = (time_t)x;
        *have_time = true;
        return 0;
    }
    if (!strcmp(line, "size")) {
        if (*have_size || strlen(v) != SPOOL_SIZE_DIGITS || parse_uint(v, &f->content_len))
            return EBADMSG;
        *have_size = true;
        return 0;
    }
    if (!strcmp(line, "client"))
        return set_once(&f->client_ip, v);
    if (!strcmp(line, "helo"))
        return set_once(&f->helo, v);
    if (!strcmp(line, "host"))
        return *v ? set_once(&f->host, v) : EBADMSG;
    if (!strcmp(line, "from"))
        return set_once(&f->sender, v);
    if (!strcmp(line, "envid"))
        return set_once(&f->envid, v);
    if (!strcmp(line, "ret"))
        return set_once(&f->ret, v);
    if (!strcmp(line, "rcpt"))
        return parse_rcpt(f, v);
    if (!strcmp(line, "pickup") && f->version >= 2)
        return ims_spool_pickup_name_ok(v) && !f->dropdir ? set_once(&f->pickup, v) : EBADMSG;
    if (!strcmp(line, "dropdir") && f->version >= 2)
        return ims_spool_pickup_name_ok(v) && !f->pickup ? set_once(&f->dropdir, v) : EBADMSG;
    if (!strcmp(line, "tls") && f->version >= 2)
        return ims_spool_tls_ok(v) ? set_once(&f->tls, v) : EBADMSG;
    if (!strcmp(line, "auth") && f->version >= 2)
        return *v ? set_once(&f->auth, v) : EBADMSG;
    return EBADMSG; /* versions 1 and 2 have no other keys */
}

/* read_envelope - bytes from the start of the file through the empty line that ends the
 * envelope; *len gets the envelope's length with that line. */
static int read_envelope(int fd, buf *b, size_t *len)
{
    for (;;) {
        if (b->len >= SPOOL_MAX_ENVELOPE)
            return EBADMSG;
        int rc = buf_reserve(b, SPOOL_READ_CHUNK);
        if (rc)
            return rc;
        ssize_t r = pread(fd, b->data + b->len, SPOOL_READ_CHUNK, (off_t)b->len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        if (r == 0)
            return EBADMSG;
        size_t from = b->len ? b->len - 1 : 0;
        b->len += (size_t)r;
        for (size_t i = from; i + 1 < b->len; i++)
            if (b->data[i] == '\n' && b->data[i + 1] == '\n') {
                *len = i + 2;
                return 0;
            }
    }
}

/* status_line - one status record; anything that does not parse (a line cut short by a crash
 * during its append, a record of a later version) counts as not written: delivery then finds
 * the copy already there (EEXIST) and records it again, a transport tries again. */
static void status_line(ims_spool_file *f, char *line)
{
    if (!strcmp(line, "hold") || !strcmp(line, "release")) {
        f->held = line[0] == 'h';
        return;
    }
    char *sp = strchr(line, ' ');
    if (!sp)
        return;
    *sp = 0;
    char *v = sp + 1, *tab = strchr(v, '\t');
    if (tab)
        *tab++ = 0;
    uint64_t idx;
    if (parse_uint(v, &idx) || idx >= f->nrcpt)
        return;
    ims_spool_rcpt_rec *r = &f->rcpts[idx];
    /* The notes about reports come after the states they are about. */
    if (!strcmp(line, "reported") && !tab) {
        r->reported = r->state == IMS_RCPT_FAILED;
        return;
    }
    if (!strcmp(line, "delayed") && !tab) {
        r->delay_noticed = true;
        return;
    }
    if (r->state == IMS_RCPT_DONE || r->state == IMS_RCPT_FAILED)
        return; /* final */
    if (!strcmp(line, "done") && !tab) {
        r->state = IMS_RCPT_DONE;
        r->done = true;
        free(r->last);
        r->last = NULL;
        return;
    }
    if (f->version < 2 || !tab)
        return;
    char *text = tab;
    uint64_t attempts = 0, next = 0;
    if (!strcmp(line, "defer")) {
        char *t2 = strchr(tab, '\t'), *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
        if (!t3)
            return;
        *t2 = 0;
        *t3 = 0;
        if (parse_uint(tab, &attempts) || attempts > UINT32_MAX || parse_uint(t2 + 1, &next) ||
            next > INT64_MAX)
            return;
        text = t3 + 1;
    } else if (strcmp(line, "fail")) {
        return;
    }
    if (strlen(text) >= SPOOL_STATUS_TEXT_MAX)
        return; /* longer than a writer makes: damage */
    char *copy = strdup(text);
    if (!copy)
        return; /* as if unread: the state stays what it was */
    for (char *c = copy; *c; c++)
        if (*c == '\r')
            *c = ' '; /* a damaged file's CR must not reach a report or a log */
    free(r->last);
    r->last = copy;
    if (line[0] == 'd') {
        r->state = IMS_RCPT_DEFERRED;
        r->attempts = (unsigned)attempts;
        r->next_try = (time_t)next;
    } else {
        r->state = IMS_RCPT_FAILED;
    }
}

/* read_status - the status records after the content. */
static int read_status(int fd, ims_spool_file *f)
{
    uint64_t from = f->content_off + f->content_len;
    if (f->file_size <= from)
        return 0;
    size_t n = (size_t)(f->file_size - from);
    if (n > SPOOL_MAX_ENVELOPE)
        n = SPOOL_MAX_ENVELOPE;
    char *p = malloc(n + 1);
    if (!p)
        return ENOMEM;
    size_t got;
    (void)base_pread_all(fd, p, n, from, &got); /* what could be read: a record cut short is none */
    p[got] = 0;
    for (char *line = p, *nl; (nl = memchr(line, '\n', got - (size_t)(line - p))); line = nl + 1) {
        *nl = 0;
        status_line(f, line);
    }
    free(p);
    return 0;
}

int ims_append_whole(int fd, const void *p, size_t n)
{
    const char *c = p;
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        ssize_t w = write(fd, c + done, n - done);
        if (w > 0)
            done += (size_t)w;
        else if (w == 0 || errno != EINTR) {
            rc = w == 0 ? EIO : errno;
            break;
        }
    }
    if (rc && done) {
        /* O_APPEND left the offset just past what was written: that is cut off again, so
         * the file is as it was (the records count as not written, and are made again at
         * the retry). No lseek before the write: the common case costs one system call. */
        off_t end = lseek(fd, 0, SEEK_CUR);
        int cut = end >= (off_t)done ? ftruncate(fd, end - (off_t)done) : -1;
        (void)cut;
    }
    return rc;
}

int ims_spool_status_format(buf *out, size_t index, ims_rcpt_state state, unsigned attempts,
                            time_t next_try, const char *text)
{
    char clean[SPOOL_STATUS_TEXT_MAX];
    size_t n = 0;
    for (const char *t = text ? text : ""; *t && n + 1 < sizeof clean; t++)
        clean[n++] = *t == '\r' || *t == '\n' || *t == '\t' ? ' ' : *t;
    clean[n] = 0;
    switch (state) {
    case IMS_RCPT_DONE:
        return buf_printf(out, "done %zu\n", index);
    case IMS_RCPT_DEFERRED:
        return buf_printf(out, "defer %zu\t%u\t%lld\t%s\n", index, attempts, (long long)next_try,
                          clean);
    case IMS_RCPT_FAILED:
        return buf_printf(out, "fail %zu\t%s\n", index, clean);
    case IMS_RCPT_PENDING:
        break;
    }
    return EINVAL;
}

void ims_spool_report_original(const ims_spool_file *f, int fd, ims_report_fd *rf,
                               ims_report_original *o)
{
    *rf = (ims_report_fd){fd, f->content_off, f->content_len};
    *o = (ims_report_original){
        .sender = f->sender,
        .arrival = f->time,
        .envid = f->envid,
        .ret = !f->ret                       ? SMTP_RET_NONE
               : !strcasecmp(f->ret, "HDRS") ? SMTP_RET_HDRS
                                             : SMTP_RET_FULL,
        .client_ip = f->client_ip,
        .helo = f->helo,
        .size = f->content_len,
        .read = ims_report_read_fd,
        .read_arg = rf,
    };
}

/* crc_range - the CRC-32C of n bytes of fd from off, continuing crc. */
static int crc_range(int fd, uint64_t off, uint64_t n, uint32_t *crc)
{
    char chunk[SPOOL_READ_CHUNK];
    while (n) {
        size_t want = n < sizeof chunk ? (size_t)n : sizeof chunk, got;
        int rc = base_pread_all(fd, chunk, want, off, &got);
        if (rc)
            return rc;
        if (got < want)
            return EBADMSG;
        *crc = base_crc32c(*crc, chunk, got);
        off += got;
        n -= got;
    }
    return 0;
}

int ims_spool_file_verify(int fd, const ims_spool_file *f)
{
    if (!f->has_sum)
        return 0;
    uint32_t env = 0, body = 0;
    int rc = crc_range(fd, 0, f->sum_off, &env);
    rc = rc ? rc : crc_range(fd, f->content_off, f->content_len, &body);
    if (!rc && (env != f->env_sum || body != f->body_sum))
        rc = EBADMSG;
    return rc;
}

int ims_spool_file_verify_envelope(int fd, const ims_spool_file *f)
{
    if (!f->has_sum)
        return 0;
    uint32_t env = 0;
    int rc = crc_range(fd, 0, f->sum_off, &env);
    return rc ? rc : env != f->env_sum ? EBADMSG : 0;
}

bool ims_spool_body_ok(const ims_spool_file *f, const char *content, size_t len)
{
    return !f->has_sum || (len == f->content_len && base_crc32c(0, content, len) == f->body_sum);
}

int ims_spool_file_read(int fd, ims_spool_file *f)
{
    memset(f, 0, sizeof *f);
    buf b = BUF_INIT;
    size_t envlen = 0;
    int rc = read_envelope(fd, &b, &envlen);
    if (!rc) {
        b.data[envlen - 1] = 0; /* the envelope as one string, without its empty line */
        char *save = NULL, *line = strtok_r((char *)b.data, "\n", &save);
        if (line && !strcmp(line, SPOOL_MAGIC))
            f->version = 2;
        else if (line && !strcmp(line, SPOOL_MAGIC_V1))
            f->version = 1;
        else
            rc = EBADMSG;
        bool have_time = false, have_size = false;
        while (!rc && (line = strtok_r(NULL, "\n", &save))) {
            if (!strncmp(line, "sum ", 4) && f->version >= 2) {
                /* The checksums cover every byte before their digits. */
                rc = f->has_sum || !have_size || parse_sum(f, line + 4) ? EBADMSG : 0;
                f->sum_off = (uint64_t)(line + 4 - (char *)b.data);
                continue;
            }
            rc = f->has_sum ? EBADMSG : parse_line(f, line, &have_time, &have_size);
        }
        if (!rc && (!f->id[0] || !have_time || !have_size || !f->client_ip || !f->helo ||
                    !f->host || !f->sender || !f->nrcpt))
            rc = EBADMSG;
    }
    buf_free(&b);
    struct stat st;
    if (!rc && fstat(fd, &st))
        rc = errno;
    if (!rc) {
        f->content_off = envlen;
        f->file_size = (uint64_t)st.st_size;
        if (f->file_size < f->content_off || f->file_size - f->content_off < f->content_len)
            rc = EBADMSG; /* cut short */
    }
    if (!rc)
        rc = read_status(fd, f);
    if (rc)
        ims_spool_file_free(f);
    return rc;
}
