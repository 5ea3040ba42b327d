/* trackread.c - reading the message tracking log: queries over the day files by queue id,
 * Message-ID, sender, recipient and time, with a per-day sidecar index that is only a cache. */
#include "ims/ims.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define TR_MAGIC "IMSTIDX1"       /* index format; bump when the layout or the hash changes */
#define TR_HEAD 32                /* magic, covered size, inode, entry count */
#define TR_CHUNK (1u << 20)       /* bytes read at once when a file is read whole */
#define TR_MAX_FILES 100000       /* day files considered by one query */
#define TR_INDEX_MAX (1ull << 32) /* a day file this big is not indexed (32-bit offsets) */
#define TR_ROUNDS 3               /* life passes: the messages, their reports, theirs */
#define TR_DAY 86400

/* Index keys: the hash covers the kind and the key folded to lower case. */
enum { K_QID = 'q', K_MSGID = 'm', K_SENDER = 's', K_RCPT = 'r' };

typedef struct tr_entry {
    uint32_t hash;
    uint32_t off; /* where the line starts */
} tr_entry;

typedef struct tr_day {
    long day;
    char name[16]; /* yyyymmdd.log */
} tr_day;

/* One message being collected. */
typedef struct tr_msg {
    char *qid;
    size_t first; /* discovery order */
    struct tr_ev {
        ims_track_line l;
        uint64_t seq; /* file order */
    } * ev;
    size_t nev, cap;
    bool searched; /* its life was looked for */
} tr_msg;

typedef struct tr_state {
    const char *dir;
    const ims_track_query *q;
    ims_track_result *res;
    tr_msg *msgs;
    size_t nmsgs, cap;
    uint32_t *table; /* open addressing over msgs: index + 1, 0 empty */
    size_t tsize;    /* power of two, at least twice the most messages */
    char **lines;    /* every kept line's text (the results' strings point into them) */
    size_t nlines, lcap;
    uint64_t seq;
} tr_state;

/* hash_key - FNV-1a over the kind and key (case folded); Message-IDs without <>. */
static uint32_t hash_key(int kind, const char *s)
{
    size_t n = strlen(s);
    if (kind == K_MSGID) {
        while (n && (*s == '<' || *s == ' ')) {
            s++;
            n--;
        }
        while (n && (s[n - 1] == '>' || s[n - 1] == ' '))
            n--;
    }
    uint32_t h = 2166136261u;
    h = (h ^ (uint8_t)kind) * 16777619u;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c - 'A' + 'a');
        h = (h ^ c) * 16777619u;
    }
    return h;
}

/* msgid_equal - a and b the same Message-ID, either with or without <> (case-insensitive). */
static bool msgid_equal(const char *a, const char *b)
{
    size_t na, nb;
    while (*a == '<' || *a == ' ')
        a++;
    while (*b == '<' || *b == ' ')
        b++;
    for (na = strlen(a); na && (a[na - 1] == '>' || a[na - 1] == ' '); na--)
        ;
    for (nb = strlen(b); nb && (b[nb - 1] == '>' || b[nb - 1] == ' '); nb--)
        ;
    return na == nb && !strncasecmp(a, b, na);
}

static bool addr_equal(const char *query, const char *field)
{
    if (!strcmp(query, "<>") || !*query)
        return !strcmp(field, "<>") || !*field;
    size_t n = strlen(query);
    if (query[0] == '<' && n > 2 && query[n - 1] == '>')
        return strlen(field) == n - 2 && !strncasecmp(query + 1, field, n - 2);
    return !strcasecmp(query, field);
}

/* matches - l meets every criterion of q. */
static bool matches(const ims_track_query *q, const ims_track_line *l)
{
    return l->when >= q->since && l->when <= q->until && (!q->qid || !strcasecmp(q->qid, l->qid)) &&
           (!q->message_id || (*l->message_id && msgid_equal(q->message_id, l->message_id))) &&
           (!q->sender || addr_equal(q->sender, l->sender)) &&
           (!q->rcpt || addr_equal(q->rcpt, l->rcpt));
}

/* --- the messages ---------------------------------------------------------------------- */

static uint32_t str_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* msg_find - the message with queue id qid, or NULL. */
static tr_msg *msg_find(tr_state *st, const char *qid)
{
    for (size_t i = str_hash(qid) & (st->tsize - 1);; i = (i + 1) & (st->tsize - 1)) {
        uint32_t k = st->table[i];
        if (!k)
            return NULL;
        if (!strcmp(st->msgs[k - 1].qid, qid))
            return &st->msgs[k - 1];
    }
}

/* msg_add - the message qid, added when new; NULL when full (truncated) or out of memory. */
static tr_msg *msg_add(tr_state *st, const char *qid, int *err)
{
    tr_msg *m = msg_find(st, qid);
    if (m)
        return m;
    if (st->nmsgs == IMS_TRACK_MAX_MESSAGES) {
        st->res->truncated = true;
        return NULL;
    }
    if (st->nmsgs == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 16;
        tr_msg *p = realloc(st->msgs, cap * sizeof *p);
        if (!p) {
            *err = ENOMEM;
            return NULL;
        }
        st->msgs = p;
        st->cap = cap;
    }
    m = &st->msgs[st->nmsgs];
    *m = (tr_msg){.qid = strdup(qid), .first = st->nmsgs};
    if (!m->qid) {
        *err = ENOMEM;
        return NULL;
    }
    size_t i = str_hash(qid) & (st->tsize - 1);
    while (st->table[i])
        i = (i + 1) & (st->tsize - 1);
    st->table[i] = (uint32_t)++st->nmsgs;
    return m;
}

/* keep - a copy of the line text in st (the events point into it); NULL: no memory. */
static char *keep(tr_state *st, const char *text, size_t n)
{
    if (st->nlines == st->lcap) {
        size_t cap = st->lcap ? st->lcap * 2 : 64;
        char **p = realloc(st->lines, cap * sizeof *p);
        if (!p)
            return NULL;
        st->lines = p;
        st->lcap = cap;
    }
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    memcpy(c, text, n);
    c[n] = 0;
    st->lines[st->nlines++] = c;
    return c;
}

/* add_event - line (parsed into l, in a scratch buffer) to message m: copied and parsed again
 * in st's storage. */
static int add_event(tr_state *st, tr_msg *m, const char *text, size_t n)
{
    if (m->nev == IMS_TRACK_MAX_EVENTS) {
        st->res->truncated = true;
        return 0;
    }
    if (m->nev == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct tr_ev *p = realloc(m->ev, cap * sizeof *p);
        if (!p)
            return ENOMEM;
        m->ev = p;
        m->cap = cap;
    }
    char *c = keep(st, text, n);
    if (!c)
        return ENOMEM;
    if (ims_track_parse(c, n, &m->ev[m->nev].l))
        return 0; /* cannot happen: it parsed before */
    m->ev[m->nev++].seq = st->seq++;
    return 0;
}

/* --- reading day files ----------------------------------------------------------------- */

/* line_fn - one complete line (without its LF) at offset off; nonzero stops the scan. */
typedef int (*line_fn)(void *arg, const char *line, size_t n, uint64_t off);

/* scan - every complete line of fd from offset from; *end gets the offset after the last
 * one. Lines longer than IMS_TRACK_LINE_MAX are skipped (not a writer's). */
static int scan(int fd, uint64_t from, uint64_t *end, line_fn fn, void *arg)
{
    char *b = malloc(TR_CHUNK + IMS_TRACK_LINE_MAX);
    if (!b)
        return ENOMEM;
    size_t have = 0;      /* bytes in b not yet consumed */
    uint64_t base = from; /* file offset of b[0] */
    bool skipping = false;
    int rc = 0;
    for (;;) {
        ssize_t r = pread(fd, b + have, TR_CHUNK, (off_t)(base + have));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
            break;
        }
        if (r == 0)
            break;
        have += (size_t)r;
        size_t pos = 0;
        for (;;) {
            char *nl = memchr(b + pos, '\n', have - pos);
            if (!nl)
                break;
            size_t n = (size_t)(nl - (b + pos));
            if (!skipping && n <= IMS_TRACK_LINE_MAX && (rc = fn(arg, b + pos, n, base + pos)))
                goto out;
            skipping = false;
            pos += n + 1;
        }
        if (have - pos > IMS_TRACK_LINE_MAX) { /* an endless line: drop what we have */
            skipping = true;
            pos = have;
        }
        memmove(b, b + pos, have - pos);
        base += pos;
        have -= pos;
    }
out:
    *end = base; /* a line cut short at the end is not covered yet */
    free(b);
    return rc;
}

/* read_line - the line at off into b (IMS_TRACK_LINE_MAX + 1 bytes); its length, or -1. */
static ssize_t read_line(int fd, uint64_t off, char *b)
{
    size_t have = 0;
    while (have < IMS_TRACK_LINE_MAX + 1) {
        size_t want = have ? IMS_TRACK_LINE_MAX + 1 - have : 1024;
        ssize_t r = pread(fd, b + have, want, (off_t)(off + have));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        char *nl = memchr(b + have, '\n', (size_t)r);
        if (nl)
            return nl - b;
        have += (size_t)r;
    }
    return -1;
}

/* --- the index ------------------------------------------------------------------------- */

/* A day's index: entries sorted by hash, then offset (lookups are binary searches). Either
 * mapped from its file (map) or built in memory (e). */
typedef struct tr_index {
    tr_entry *e;
    size_t n, cap;
    void *map; /* the mapped file, or NULL */
    size_t maplen;
} tr_index;

static void index_free(tr_index *x)
{
    if (x->map)
        munmap(x->map, x->maplen);
    else
        free(x->e);
    memset(x, 0, sizeof *x);
}

static int cmp_entry(const void *a, const void *b)
{
    const tr_entry *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->off > y->off) - (x->off < y->off);
}

/* index_find - the first entry of x with hash h or above. */
static size_t index_find(const tr_index *x, uint32_t h)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->e[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int index_push(tr_index *x, uint32_t hash, uint64_t off)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 4096;
        tr_entry *p = realloc(x->e, cap * sizeof *p);
        if (!p)
            return ENOMEM;
        x->e = p;
        x->cap = cap;
    }
    x->e[x->n++] = (tr_entry){hash, (uint32_t)off};
    return 0;
}

/* index_line - the keys of one line into the index. */
static int index_line(void *arg, const char *line, size_t n, uint64_t off)
{
    char tmp[IMS_TRACK_LINE_MAX + 1];
    memcpy(tmp, line, n);
    ims_track_line l;
    if (ims_track_parse(tmp, n, &l))
        return 0;
    tr_index *x = arg;
    int rc = index_push(x, hash_key(K_QID, l.qid), off);
    uint32_t hs = hash_key(K_SENDER, l.sender), hr = hash_key(K_RCPT, l.rcpt);
    rc = rc ? rc : index_push(x, hs, off);
    if (!rc && hr != hs)
        rc = index_push(x, hr, off);
    if (!rc && *l.message_id)
        rc = index_push(x, hash_key(K_MSGID, l.message_id), off);
    return rc;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* index_save - x (covering `covered` bytes of the log with inode ino) to path, atomically;
 * given to the owner of the log's folder when we are root, so the service can extend it. */
static int index_save(const char *dir, const char *path, const tr_index *x, uint64_t covered,
                      uint64_t ino)
{
    char idir[PATH_MAX], tmp[PATH_MAX];
    struct stat ds;
    if (stat(dir, &ds))
        return errno;
    snprintf(idir, sizeof idir, "%s/%s", dir, IMS_TRACK_INDEX_DIR);
    if (mkdir(idir, 0750) == 0) {
        if (geteuid() == 0 && chown(idir, ds.st_uid, ds.st_gid))
            return errno;
    } else if (errno != EEXIST) {
        return errno;
    }
    if (snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) >= (int)sizeof tmp)
        return ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    uint8_t head[TR_HEAD];
    memcpy(head, TR_MAGIC, 8);
    put64(head + 8, covered);
    put64(head + 16, ino);
    put64(head + 24, x->n);
    int rc = base_write_all(fd, head, sizeof head);
    rc = rc ? rc : base_write_all(fd, x->e, x->n * sizeof *x->e);
    if (!rc && geteuid() == 0 && fchown(fd, ds.st_uid, ds.st_gid))
        rc = errno;
    if (close(fd) && !rc)
        rc = errno;
    if (!rc && rename(tmp, path))
        rc = errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* index_load - the index of the log open on fd (size and inode in ls): mapped when it covers
 * the whole log, else extended by the log's tail or built again, sorted, and saved (failure to
 * save is not an error: the entries serve this query). index_free(x) afterwards. */
static int index_load(tr_state *st, const char *name, int fd, const struct stat *ls, tr_index *x)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s/%.8s.idx", st->dir, IMS_TRACK_INDEX_DIR, name) >=
        (int)sizeof path)
        return ENAMETOOLONG;
    uint64_t covered = 0;
    int ifd = open(path, O_RDONLY | O_CLOEXEC);
    if (ifd >= 0) {
        uint8_t head[TR_HEAD];
        struct stat is;
        if (pread(ifd, head, sizeof head, 0) == (ssize_t)sizeof head &&
            !memcmp(head, TR_MAGIC, 8) && !fstat(ifd, &is) &&
            get64(head + 16) == (uint64_t)ls->st_ino && get64(head + 8) <= (uint64_t)ls->st_size &&
            get64(head + 24) < SIZE_MAX / sizeof(tr_entry) / 2 &&
            (uint64_t)is.st_size == TR_HEAD + get64(head + 24) * sizeof(tr_entry)) {
            size_t n = (size_t)get64(head + 24);
            /* The index ends at a line's end: a log written again in place rarely does. */
            char last = '\n';
            uint64_t c = get64(head + 8);
            void *map = c && (pread(fd, &last, 1, (off_t)(c - 1)) != 1 || last != '\n')
                            ? MAP_FAILED
                            : mmap(NULL, (size_t)is.st_size, PROT_READ, MAP_SHARED, ifd, 0);
            if (map != MAP_FAILED) {
                covered = get64(head + 8);
                x->map = map;
                x->maplen = (size_t)is.st_size;
                x->e = (tr_entry *)((char *)map + TR_HEAD);
                x->n = n;
            }
        }
        close(ifd);
    }
    if (x->map && covered == (uint64_t)ls->st_size)
        return 0; /* the usual case: read nothing but the pages a lookup touches */
    /* The log grew since (or there is none): the old entries copied, the tail added. */
    tr_index b = {0};
    if (x->map && x->n) {
        b.e = malloc(x->n * 2 * sizeof *b.e);
        if (!b.e) {
            index_free(x);
            return ENOMEM;
        }
        memcpy(b.e, x->e, x->n * sizeof *b.e);
        b.n = x->n;
        b.cap = x->n * 2;
    }
    index_free(x);
    uint64_t end;
    int rc = scan(fd, covered, &end, index_line, &b);
    if (rc) {
        index_free(&b);
        return rc;
    }
    if (b.n)
        qsort(b.e, b.n, sizeof *b.e, cmp_entry);
    *x = b;
    st->res->index_built++;
    index_save(st->dir, path, x, end, (uint64_t)ls->st_ino); /* a cache: failure is fine */
    return 0;
}

/* --- the query ------------------------------------------------------------------------- */

static int cmp_day(const void *a, const void *b)
{
    long x = ((const tr_day *)a)->day, y = ((const tr_day *)b)->day;
    return (x > y) - (x < y);
}

/* list_days - the day files of dir between days lo and hi, in order. */
static int list_days(const char *dir, long lo, long hi, tr_day **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno;
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && *n < TR_MAX_FILES) {
        int y, m, dd, used = 0;
        if (strlen(e->d_name) != 12 || strcmp(e->d_name + 8, ".log") ||
            sscanf(e->d_name, "%4d%2d%2d.log%n", &y, &m, &dd, &used) != 3 || used != 12 ||
            strspn(e->d_name, "0123456789") != 8)
            continue;
        struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = dd};
        long day = (long)(timegm(&tm) / TR_DAY);
        if (day < lo || day > hi)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            tr_day *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = ENOMEM;
                break;
            }
            *out = p;
        }
        (*out)[*n].day = day;
        memcpy((*out)[*n].name, e->d_name, 13); /* checked above: 12 bytes and the NUL */
        (*n)++;
    }
    closedir(d);
    if (!rc && *n)
        qsort(*out, *n, sizeof **out, cmp_day);
    return rc;
}

/* A pass over one day file: phase 0 finds the matching lines, phase 1 the lives. */
typedef struct tr_pass {
    tr_state *st;
    int phase;
    size_t from, upto; /* phase 1: the messages whose lives this pass collects */
    int err;
} tr_pass;

/* take_line - one candidate line: matched (phase 0) or kept for its message (phase 1). */
static int take_line(void *arg, const char *line, size_t n, uint64_t off)
{
    (void)off;
    tr_pass *p = arg;
    tr_state *st = p->st;
    char tmp[IMS_TRACK_LINE_MAX + 1];
    memcpy(tmp, line, n);
    ims_track_line l;
    if (ims_track_parse(tmp, n, &l))
        return 0;
    if (p->phase == 0) {
        if (matches(st->q, &l) && !msg_add(st, l.qid, &p->err) && p->err)
            return p->err;
        return 0;
    }
    tr_msg *m = msg_find(st, l.qid);
    if (!m || (size_t)(m - st->msgs) < p->from || (size_t)(m - st->msgs) >= p->upto)
        return 0;
    int rc = add_event(st, m, line, n);
    /* A report's own queue id: its life is looked for in the next pass. */
    if (!rc && l.event == IMS_TRACK_REPORT_GENERATED && *l.ref && !msg_add(st, l.ref, &rc) && rc)
        return rc;
    return rc;
}

/* addr_key - the key of an address as the query gives it: "<a@b>" is a@b, "" and "<>" the
 * null sender (written "<>"). */
static uint32_t addr_key(int kind, const char *a)
{
    char b[IMS_TRACK_FIELD_MAX + 1];
    size_t n = strlen(a);
    if (!n || !strcmp(a, "<>"))
        return hash_key(kind, "<>");
    if (a[0] == '<' && n > 2 && a[n - 1] == '>' && n - 2 < sizeof b) {
        memcpy(b, a + 1, n - 2);
        b[n - 2] = 0;
        return hash_key(kind, b);
    }
    return hash_key(kind, a);
}

/* query_key - the index key for phase 0: the most selective criterion, or 0 (none). */
static uint32_t query_key(const ims_track_query *q, bool *have)
{
    *have = true;
    if (q->qid)
        return hash_key(K_QID, q->qid);
    if (q->message_id)
        return hash_key(K_MSGID, q->message_id);
    if (q->rcpt)
        return addr_key(K_RCPT, q->rcpt);
    if (q->sender)
        return addr_key(K_SENDER, q->sender);
    *have = false;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* lookup - the offsets of the lines of x whose entries have one of the hashes want[0..nwant),
 * in file order, each once (a line's several keys), into *out (the caller's to free). */
static int lookup(const tr_index *x, const uint32_t *want, size_t nwant, uint64_t **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (size_t w = 0; w < nwant; w++)
        for (size_t i = index_find(x, want[w]); i < x->n && x->e[i].hash == want[w]; i++) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *p = realloc(*out, cap * sizeof *p);
                if (!p)
                    return ENOMEM;
                *out = p;
            }
            (*out)[(*n)++] = x->e[i].off;
        }
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (!k || (*out)[k - 1] != (*out)[i])
            (*out)[k++] = (*out)[i];
    *n = k;
    return 0;
}

/* day_pass - pass p over day file name: through its index for the hashes want[0..nwant)
 * (sorted), else the file read whole (nwant 0: no key; no_index; no usable index). */
static int day_pass(tr_pass *p, const char *name, const uint32_t *want, size_t nwant)
{
    tr_state *st = p->st;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", st->dir, name) >= (int)sizeof path)
        return ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    struct stat ls;
    int rc = fstat(fd, &ls) ? errno : 0;
    tr_index x = {0};
    bool indexed = !rc && nwant && !st->q->no_index && (uint64_t)ls.st_size < TR_INDEX_MAX;
    if (indexed && index_load(st, name, fd, &ls, &x))
        indexed = false; /* read whole instead */
    if (!rc && indexed) {
        uint64_t *offs = NULL;
        size_t n = 0;
        char *b = malloc(IMS_TRACK_LINE_MAX + 1);
        rc = b ? lookup(&x, want, nwant, &offs, &n) : ENOMEM;
        for (size_t i = 0; !rc && i < n; i++) {
            ssize_t len = read_line(fd, offs[i], b);
            if (len >= 0)
                rc = take_line(p, b, (size_t)len, offs[i]);
        }
        free(offs);
        free(b);
    } else if (!rc) {
        uint64_t end;
        st->res->files_read++;
        rc = scan(fd, 0, &end, take_line, p);
    }
    index_free(&x);
    close(fd);
    return rc ? rc : p->err;
}

static int cmp_ev(const void *a, const void *b)
{
    const struct tr_ev *x = a, *y = b;
    if (x->l.when != y->l.when)
        return x->l.when < y->l.when ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_msg(const void *a, const void *b)
{
    const ims_track_msg *x = a, *y = b;
    time_t tx = x->nevents ? x->events[0].when : 0, ty = y->nevents ? y->events[0].when : 0;
    if (tx != ty)
        return tx < ty ? -1 : 1;
    return strcmp(x->qid, y->qid);
}

/* finish - the collected messages as the result (those with events), sorted. */
static int finish(tr_state *st)
{
    ims_track_result *r = st->res;
    r->msgs = calloc(st->nmsgs ? st->nmsgs : 1, sizeof *r->msgs);
    if (!r->msgs)
        return ENOMEM;
    for (size_t i = 0; i < st->nmsgs; i++) {
        tr_msg *m = &st->msgs[i];
        if (!m->nev)
            continue;
        qsort(m->ev, m->nev, sizeof *m->ev, cmp_ev);
        ims_track_line *ev = malloc(m->nev * sizeof *ev);
        if (!ev)
            return ENOMEM;
        ims_track_msg *o = &r->msgs[r->nmsgs++];
        *o = (ims_track_msg){.qid = m->qid, .message_id = "", .events = ev, .nevents = m->nev};
        for (size_t k = 0; k < m->nev; k++) {
            ev[k] = m->ev[k].l;
            if (!*o->message_id && *ev[k].message_id)
                o->message_id = ev[k].message_id;
        }
        o->sender = ev[0].sender;
    }
    qsort(r->msgs, r->nmsgs, sizeof *r->msgs, cmp_msg);
    return 0;
}

/* The result's storage: the state's message array and lines live on in priv. */
typedef struct tr_priv {
    tr_msg *msgs;
    size_t nmsgs;
    char **lines;
    size_t nlines;
} tr_priv;

int ims_track_find(const char *dir, const ims_track_query *q, ims_track_result *out)
{
    memset(out, 0, sizeof *out);
    tr_state st = {.dir = dir, .q = q, .res = out};
    tr_priv *pv = calloc(1, sizeof *pv);
    if (!pv)
        return ENOMEM;
    out->priv = pv;
    st.tsize = 1;
    while (st.tsize < 2 * (size_t)IMS_TRACK_MAX_MESSAGES)
        st.tsize <<= 1;
    st.table = calloc(st.tsize, sizeof *st.table);
    if (!st.table)
        return ENOMEM;
    long lo = (long)(q->since / TR_DAY), hi = (long)(q->until / TR_DAY);
    tr_day *days = NULL;
    size_t ndays = 0;
    int rc = q->since > q->until ? EINVAL
                                 : list_days(dir, lo - IMS_TRACK_LIFE_DAYS,
                                             hi + IMS_TRACK_LIFE_DAYS, &days, &ndays);
    tr_pass p = {.st = &st};
    bool have_key;
    uint32_t key = query_key(q, &have_key);
    for (size_t i = 0; !rc && i < ndays && days[i].day <= hi; i++)
        if (days[i].day >= lo)
            rc = day_pass(&p, days[i].name, &key, have_key ? 1 : 0);
    /* The lives: each pass collects the messages not yet searched (the previous pass may
     * have added reports), by their queue ids' hashes. */
    uint32_t *want = NULL;
    for (int round = 0; !rc && round < TR_ROUNDS; round++) {
        size_t from = 0;
        while (from < st.nmsgs && st.msgs[from].searched)
            from++;
        if (from == st.nmsgs)
            break;
        size_t upto = st.nmsgs, nwant = 0;
        free(want);
        if (!(want = malloc((upto - from) * sizeof *want))) {
            rc = ENOMEM;
            break;
        }
        for (size_t k = from; k < upto; k++)
            want[nwant++] = hash_key(K_QID, st.msgs[k].qid);
        qsort(want, nwant, sizeof *want, cmp_u32);
        size_t u = 0;
        for (size_t k = 0; k < nwant; k++)
            if (!u || want[u - 1] != want[k])
                want[u++] = want[k];
        p = (tr_pass){.st = &st, .phase = 1, .from = from, .upto = upto};
        for (size_t i = 0; !rc && i < ndays; i++)
            rc = day_pass(&p, days[i].name, want, u);
        for (size_t k = from; k < upto; k++)
            st.msgs[k].searched = true;
    }
    free(want);
    free(days);
    free(st.table);
    if (!rc)
        rc = finish(&st);
    pv->msgs = st.msgs;
    pv->nmsgs = st.nmsgs;
    pv->lines = st.lines;
    pv->nlines = st.nlines;
    return rc;
}

void ims_track_result_free(ims_track_result *r)
{
    tr_priv *pv = r->priv;
    for (size_t i = 0; i < r->nmsgs; i++)
        free(r->msgs[i].events);
    free(r->msgs);
    if (pv) {
        for (size_t i = 0; i < pv->nmsgs; i++) {
            free(pv->msgs[i].qid);
            free(pv->msgs[i].ev);
        }
        free(pv->msgs);
        for (size_t i = 0; i < pv->nlines; i++)
            free(pv->lines[i]);
        free(pv->lines);
        free(pv);
    }
    memset(r, 0, sizeof *r);
}
