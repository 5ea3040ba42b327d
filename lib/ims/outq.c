/* outq.c - the outbound queue (RootDir\Out): a record per recipient grouped by destination,
 * a scheduler by next try, jobs for the SMTP client, durable results (group commit), retries,
 * time-outs, delay notices and non-delivery reports. Every file operation runs in the queue's
 * own thread; the caller's thread (imsd's event loop) only touches memory. */
#include "ims/spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"

#define OQ_BUCKETS 4096      /* destinations hash: chained, so any number fits */
#define OQ_MSG_BUCKETS 65536 /* messages by queue id: chained */
#define OQ_SYNC_THREADS 8    /* a commit round's files synced together */
#define OQ_EVENT_TEXT 512    /* bytes of one event's text */
#define OQ_ROUND_MAX 1024    /* commits gathered into one round */
#define OQ_NOT_ATTEMPTED "4.4.2 not attempted (the connection ended first)"

typedef struct oq_msg oq_msg;
typedef struct oq_unit oq_unit;

#define OQ_ACTOR_MAX 128 /* bytes of who asked for an administrator's action */

/* An administrator's action in progress: done once each of its parts (commits, connections
 * a delete waits for) is over. */
typedef struct oq_action {
    ims_outq_action_fn done;
    void *arg;
    unsigned parts;
    int err;
    ims_queue_outcome o;
    bool ndr;
    char actor[OQ_ACTOR_MAX];
} oq_action;

/* A message's recipients for one destination: they are scheduled and sent together. */
struct oq_unit {
    ims_sched_node node; /* due (ims_clock_ms) while waiting */
    oq_msg *m;
    ims_outq_dest *d;
    size_t *ri; /* indices into m->f.rcpts */
    size_t nri;
    enum { U_WAIT, U_LOADING, U_READY, U_BUSY, U_FINAL, U_HELD } st;
    size_t taken; /* U_READY/U_BUSY: recipients of the pending list handed out */
    size_t *pend; /* U_READY/U_BUSY: the recipients of this attempt (not final) */
    size_t npend;
    unsigned jobs; /* jobs out and not finished */
    oq_unit *next; /* in the destination's ready list */
};

struct oq_msg {
    char id[IMS_QUEUE_ID_LEN + 1];
    ims_spool_file f; /* the envelope and the records (rcpts[].state ...): the loop's */
    ims_priority prio;
    oq_unit *units;
    size_t nunits;
    char *content; /* loaded, or NULL */
    size_t clen;
    int eightbit; /* the content has a byte above 127: -1 not looked at yet, 0, 1 */
    bool loading;
    bool removing; /* every recipient final: its file is going */
    unsigned busy; /* units ready or busy, reports and commits in flight */
    unsigned reports;
    bool held;          /* the administrator's hold: no unit is scheduled */
    bool *inflight;     /* per recipient: in a job now (taken, its result not yet in) */
    oq_action *del;     /* a delete waiting for units in a connection now */
    unsigned del_units; /* ... this many */
    oq_msg *prev, *next;
    oq_msg *hnext; /* in the queue's table by id */
};

struct ims_outq_iter {
    ims_outq *q;
    oq_msg *at; /* the next message to show; NULL: the end */
    bool started;
    ims_queue_rcpt *rc;
    size_t caprc;
    ims_outq_iter *next; /* the queue's list of walks: a message's removal moves them on */
};

struct ims_outq_dest {
    ims_outq_dest *hnext;
    ims_route_kind kind;
    char name[IMS_HOST_MAX];
    oq_unit *ready, **ready_tail;
    size_t nready;
    uint64_t dead_until; /* ims_clock_ms; 0: alive */
    smtp_result fail;    /* while dead: why (every waiting recipient gets it) */
    char fail_remote[IMS_OUTQ_HOST_TEXT];
    void *user; /* the transport's */
};

struct ims_outq_job {
    ims_outq *q;
    oq_unit *u;
    size_t *ri; /* file indices of this job's recipients */
    size_t n;
    smtp_client_msg msg;
    smtp_client_rcpt *rc;
    size_t off;                  /* read position in the content */
    bool peer_dsn;               /* the peer offered DSN: it sends the receipts, not we */
    char tls[IMS_TRACK_TLS_MAX]; /* "TLSv1.3 <cipher>" when sent under TLS, else "" */
    struct oq_res {
        bool have;
        smtp_result r;
        char remote[IMS_OUTQ_HOST_TEXT];
    } * res;
};

/* Work for the queue's thread, and its answer. */
typedef enum oq_kind {
    T_SCAN,
    T_ENV,
    T_CONTENT,
    T_COMMIT,
    T_REPORT,
    T_REMOVE,
    T_BAD,
    T_RECEIPT
} oq_kind;

typedef struct oq_track {
    unsigned event;
    size_t rcpt;
    char *detail; /* the remote, NUL, its reply, NUL, a related queue id, NUL; or NULL */
} oq_track;

/* track_detail - what an oq_track's detail holds (NULL when out of memory: the line goes
 * without them). */
static char *track_detail(const char *remote, const char *reply, const char *ref)
{
    remote = remote ? remote : "";
    reply = reply ? reply : "";
    ref = ref ? ref : "";
    size_t a = strlen(remote) + 1, b = strlen(reply) + 1, c = strlen(ref) + 1;
    char *d = malloc(a + b + c);
    if (d) {
        memcpy(d, remote, a);
        memcpy(d + a, reply, b);
        memcpy(d + a + b, ref, c);
    }
    return d;
}

typedef struct oq_task {
    struct oq_task *next;
    oq_kind kind;
    char id[IMS_QUEUE_ID_LEN + 1];
    oq_msg *m;
    buf recs;                    /* T_COMMIT: status records to append */
    oq_track *track;             /* T_COMMIT: tracking lines to write */
    char tls[IMS_TRACK_TLS_MAX]; /* T_COMMIT of a job: its TLS protocol and cipher, or "" */
    size_t ntrack;
    char report_qid[IMS_QUEUE_ID_LEN + 1]; /* T_REPORT: the spooled report's queue id */
    void (*done)(void *arg);
    void *arg;
    ims_outq_job *job; /* T_COMMIT of a job: freed on completion */
    oq_action *act;    /* T_COMMIT of an administrator's action: one of its parts */
    char actor[OQ_ACTOR_MAX];
    /* T_REPORT */
    ims_report_rcpt *rr;
    size_t nrr;
    size_t *rr_idx;
    bool delayed;
    struct oq_rr_text {
        char remote[IMS_OUTQ_HOST_TEXT];
        char enh[SMTP_ENH_MAX + 1];
        char diag[SPOOL_STATUS_TEXT_MAX];
    } * rt;       /* the strings rr points at: the task's own (a record's text may change) */
    bool spooled; /* T_REPORT: the spool took it (its callback answered) */
    bool nothing; /* T_REPORT: nothing to report (NOTIFY, an automatic message) */
    ims_report_action action;
    ims_rcpt to, to2; /* the sender; the administrator's copy (admin_copy) */
    bool admin_copy;
    /* T_REPORT, T_RECEIPT: where the report goes, allocated for them only (every other task,
     * a queue's start has one per message, stays small) */
    struct oq_addrs {
        char to_dest[IMS_HOST_MAX], to_maildir[PATH_MAX], admin_maildir[PATH_MAX];
    } * ad;
    /* answers */
    int err;
    ims_spool_file f; /* T_ENV */
    ims_priority prio;
    unsigned hops;
    bool preload;  /* T_ENV: load the content too */
    bool unlink;   /* T_COMMIT: every recipient is final: remove the file, not append */
    bool in_round; /* T_COMMIT: taken into the thread's commit round */
    bool scanned;  /* T_ENV: one of the start's scan (counted in scan_unread) */
    char *content; /* T_CONTENT, T_ENV with preload */
    size_t clen;
    char text[OQ_EVENT_TEXT]; /* an event to log, when not empty */
    unsigned ev;
} oq_task;

/* How long a commit round waits for the spool's next syncfs to cover it, while mail comes in
 * (ims_recycler_wait_covered), before it syncs Out itself. Short: a connection sends its next
 * message only once its last one's records are durable, so this wait is every connection's
 * latency, and a syncfs of our own costs about as much (relayed at 100 sessions x 4 KiB, 5 ms
 * gave 2,074-2,195 msg/s, 1 ms 2,501-2,668; syncs a message 0.14 either way, and 0.30
 * against 0.22 at 20 sessions). */
#define OQ_SHARE_MS 1

struct ims_outq {
    ims_settings s;
    ims_spool *spool;
    _Atomic(ims_recycler *) syncer; /* the spool's syncs, once it is open; NULL: none */
    ims_router *router;
    ims_tracking *tracking;
    ims_log *log;
    char host[256];
    char root[PATH_MAX];
    char bad_dir[PATH_MAX];
    char store_dir[PATH_MAX];
    bool no_space; /* a disk-full episode: a record commit failed for want of space (loop's) */
    ims_report_names names;
    void (*ready)(void *arg, ims_outq_dest *d);
    void *ready_arg;
    int64_t offset;
    int out_fd, archive_fd, efd;
    ims_sync_pool *pool;

    /* the loop's */
    ims_sched sched;
    ims_outq_dest *buckets[OQ_BUCKETS];
    oq_msg *msgs;
    oq_msg *by_id[OQ_MSG_BUCKETS];
    size_t loaded_bytes;
    oq_msg **loadq; /* messages waiting for their content, beyond the budget */
    size_t nloadq, caploadq;
    ims_outq_stats st;
    atomic_uint_least32_t report_seq;
    ims_outq_iter *iters;

    /* shared with the thread */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    oq_task *work, **work_tail; /* posted to the thread */
    oq_task *answers, **answers_tail;
    size_t scan_unread;       /* the scan's answers the loop has not taken yet */
    pthread_cond_t scan_room; /* scan_unread went down, or stopping */
    bool stopping;
    pthread_t thread;
    bool running;
};

/* --- small helpers ---------------------------------------------------------------------- */

static time_t wall_now(const ims_outq *q)
{
    return time(NULL) + (time_t)q->offset;
}

static void wake_fd(int efd)
{
    uint64_t one = 1;
    if (write(efd, &one, sizeof one) < 0)
        return; /* EAGAIN: it is readable anyway */
}

static void post(ims_outq *q, oq_task *t)
{
    t->next = NULL;
    pthread_mutex_lock(&q->lock);
    *q->work_tail = t;
    q->work_tail = &t->next;
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
}

static oq_task *task_new(oq_kind kind, oq_msg *m)
{
    oq_task *t = calloc(1, sizeof *t);
    if (t) {
        t->kind = kind;
        t->m = m;
        if (m)
            memcpy(t->id, m->id, sizeof t->id);
    }
    return t;
}

static void task_free(oq_task *t)
{
    buf_free(&t->recs);
    for (size_t i = 0; t->track && i < t->ntrack; i++)
        free(t->track[i].detail);
    free(t->track);
    free(t->rr);
    free(t->rr_idx);
    free(t->rt);
    free(t->content);
    free(t->ad);
    ims_spool_file_free(&t->f);
    free(t);
}

static uint32_t hash_name(ims_route_kind kind, const char *name)
{
    uint32_t h = 2166136261u ^ (uint32_t)kind;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ (uint32_t)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p)) * 16777619u;
    return h % OQ_BUCKETS;
}

static ims_outq_dest *dest_get(ims_outq *q, ims_route_kind kind, const char *name)
{
    uint32_t h = hash_name(kind, name);
    for (ims_outq_dest *d = q->buckets[h]; d; d = d->hnext)
        if (d->kind == kind && !strcasecmp(d->name, name))
            return d;
    ims_outq_dest *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->kind = kind;
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ready_tail = &d->ready;
    d->hnext = q->buckets[h];
    q->buckets[h] = d;
    return d;
}

/* enh_len - the length of the enhanced code "c.sss.ddd" (class 2, 4 or 5, one to three digits
 * each after it; RFC 3463 2) p starts with, followed by a space or the end; 0 when none. A
 * damaged record's "5...." must not reach a report's Status field. */
static size_t enh_len(const char *p)
{
    if (p[0] != '2' && p[0] != '4' && p[0] != '5')
        return 0;
    size_t i = 1;
    for (int part = 0; part < 2; part++) {
        if (p[i] != '.')
            return 0;
        size_t d = strspn(p + ++i, "0123456789");
        if (d < 1 || d > 3)
            return 0;
        i += d;
    }
    return p[i] == ' ' || p[i] == 0 ? i : 0;
}

void ims_spool_status_split(const char *text, bool permanent, char *remote, size_t rn,
                            const char **diag, unsigned *code, char enh[SMTP_ENH_MAX + 1])
{
    const char *bar = text ? strchr(text, '|') : NULL;
    const char *d = bar ? bar + 1 : text ? text : "";
    size_t len = bar ? (size_t)(bar - text) : 0;
    if (len >= rn)
        len = rn - 1;
    memcpy(remote, text ? text : "", len);
    remote[len] = 0;
    *diag = d;
    *code = 0;
    const char *p = d;
    if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
        p[3] == ' ') {
        *code = (unsigned)((p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0'));
        p += 4;
    }
    size_t n = enh_len(p);
    if (n) {
        memcpy(enh, p, n);
        enh[n] = 0;
    } else {
        /* RFC 3463 has no class 3: a 3xx reply recorded as a failure (a damaged record, or
         * a peer answering 354 out of turn) gets the class of the failure. */
        unsigned cls = *code / 100;
        snprintf(enh, SMTP_ENH_MAX + 1, "%c.0.0",
                 cls == 2 || cls == 4 || cls == 5 ? (char)('0' + cls)
                 : permanent                      ? '5'
                                                  : '4');
    }
    /* A transient failure made final (a time-out, no retries) keeps its 4.x.x: Action:
     * failed with the last status, as Postfix reports it (RFC 3463 4.4.7). */
}

/* --- the thread ------------------------------------------------------------------------- */

/* read_all_at - n bytes of fd at off; EBADMSG when the file is shorter. */
static int read_all_at(int fd, char *p, size_t n, uint64_t off)
{
    size_t got;
    int rc = base_pread_all(fd, p, n, off, &got);
    return rc ? rc : got < n ? EBADMSG : 0;
}

/* received - our trace header (RFC 5321 4.4) before the content that goes out, CRLF. */
static int received(const ims_spool_file *f, buf *out)
{
    char date[64], ip[IMS_SPOOL_MAX_FIELD + 16];
    struct tm tm;
    time_t when = f->time;
    gmtime_r(&when, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (!strcmp(f->client_ip, "unknown"))
        snprintf(ip, sizeof ip, "unknown");
    else if (strchr(f->client_ip, ':'))
        snprintf(ip, sizeof ip, "[IPv6:%s]", f->client_ip);
    else
        snprintf(ip, sizeof ip, "[%s]", f->client_ip);
    int rc = buf_printf(out, "Received: from %s (%s)\r\n", f->helo, ip);
    rc = rc ? rc : ims_spool_received_tls(f, "\r\n", out);
    return rc ? rc
              : buf_printf(out, "\tby %s with %s id %s;\r\n\t%s\r\n", f->host,
                           ims_spool_received_with(f), f->id, date);
}

/* hops - Received fields in the header section h[0..n) (RFC 5321 6.3's loop count). */
static unsigned count_hops(const char *h, size_t n)
{
    unsigned k = 0;
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(h + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (h + i)) : n - i;
        if (len == 0 || (len == 1 && h[i] == '\r'))
            break; /* the end of the header section */
        if (len >= 9 && !strncasecmp(h + i, "Received:", 9))
            k++;
        i += len + 1;
    }
    return k;
}

/* load_content - what goes out for f (open on fd): our Received, then the content. */
static int load_content(int fd, const ims_spool_file *f, char **content, size_t *clen)
{
    buf b = BUF_INIT;
    int err = received(f, &b);
    size_t head = b.len;
    err = err ? err : buf_reserve(&b, (size_t)f->content_len + 1);
    if (!err)
        err = read_all_at(fd, (char *)b.data + head, (size_t)f->content_len, f->content_off);
    if (err) {
        buf_free(&b);
        return err;
    }
    *clen = head + (size_t)f->content_len;
    *content = (char *)b.data;
    return 0;
}

/* archive - t's file is damaged (cut short, garbled, its checksums wrong): to Out/Archive,
 * never deleted, with the event its answer logs. */
static void archive(ims_outq *q, oq_task *t)
{
    int mv = renameat(q->out_fd, t->id, q->archive_fd, t->id) ? errno : 0;
    t->ev = IMS_EV_SPOOL_ARCHIVED;
    snprintf(t->text, sizeof t->text,
             "The outbound queue file %.300s/Out/%s cannot be read (cut short or damaged); %s%s",
             q->root, t->id,
             mv ? "moving it to Out/Archive failed: " : "it was moved to Out/Archive",
             mv ? strerror(mv) : "");
}

static void th_env(ims_outq *q, oq_task *t)
{
    int fd = openat(q->out_fd, t->id, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t->err = errno;
        return;
    }
    t->err = ims_spool_file_read(fd, &t->f);
    /* A damaged envelope may still parse (a changed address): its checksum tells. */
    if (!t->err && (t->err = ims_spool_file_verify_envelope(fd, &t->f)))
        ims_spool_file_free(&t->f);
    /* A new message is about to be sent: its content comes along (one read, one hop). */
    if (!t->err && t->preload && t->f.content_len <= IMS_OUTQ_PRELOAD_MAX &&
        !load_content(fd, &t->f, &t->content, &t->clen) &&
        !ims_spool_body_ok(&t->f, t->content + (t->clen - (size_t)t->f.content_len),
                           (size_t)t->f.content_len)) {
        /* Damaged content is never sent: the file goes to Out/Archive below. */
        free(t->content);
        t->content = NULL;
        t->clen = 0;
        ims_spool_file_free(&t->f);
        t->err = EBADMSG;
    } else if (!t->err && t->content) {
        t->prio = ims_priority_of_headers(t->content, t->clen);
        unsigned h = count_hops(t->content, t->clen);
        t->hops = h ? h - 1 : 0; /* ours is not a hop yet */
    } else if (!t->err) {
        size_t n =
            t->f.content_len < IMS_HEADER_SCAN_MAX ? (size_t)t->f.content_len : IMS_HEADER_SCAN_MAX;
        char *h = malloc(n + 1);
        if (h && !read_all_at(fd, h, n, t->f.content_off)) {
            t->prio = ims_priority_of_headers(h, n);
            t->hops = count_hops(h, n);
        }
        free(h);
    }
    close(fd);
    if (t->err == EBADMSG)
        archive(q, t);
}

static void th_content(ims_outq *q, oq_task *t)
{
    int fd = openat(q->out_fd, t->id, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t->err = errno;
        return;
    }
    ims_spool_file f;
    t->err = ims_spool_file_read(fd, &f);
    if (!t->err) {
        t->err = load_content(fd, &f, &t->content, &t->clen);
        /* The start-up scan read envelopes only: damaged content is found here, unsent. */
        if (!t->err && !ims_spool_body_ok(&f, t->content + (t->clen - (size_t)f.content_len),
                                          (size_t)f.content_len)) {
            free(t->content);
            t->content = NULL;
            t->clen = 0;
            t->err = EBADMSG;
        }
        ims_spool_file_free(&f);
    }
    close(fd);
    if (t->err == EBADMSG)
        archive(q, t);
}

/* th_commit_round - append every commit's records, then sync those files together. */
static void th_commit_round(ims_outq *q, oq_task **ts, size_t n)
{
    int *fds = calloc(n, sizeof *fds), *errs = calloc(n, sizeof *errs);
    size_t *slot = calloc(n, sizeof *slot); /* task i's file in fds, + 1; 0: none */
    if (!fds || !errs || !slot) {
        for (size_t i = 0; i < n; i++)
            ts[i]->err = ENOMEM;
        free(fds);
        free(errs);
        free(slot);
        return;
    }
    size_t k = 0, unlinked = 0;
    /* A finished file goes to the spool's recycler, for a later message to reuse (an inode
     * made and freed per message is the file system's largest cost), when on its file system. */
    ims_recycler *rc = atomic_load(&q->syncer);
    if (rc && !ims_recycler_same_fs(rc, q->out_fd))
        rc = NULL;
    for (size_t i = 0; i < n; i++) {
        oq_task *t = ts[i];
        int fd = -1;
        if (t->unlink) {
            /* The file's removal is the record: made durable by the one fsync of Out below,
             * for every message the round finishes. */
            if (rc && ims_recycler_adopt(rc, q->out_fd, t->id) == 0)
                unlinked++;
            else if (unlinkat(q->out_fd, t->id, 0) && errno != ENOENT)
                t->err = errno;
            else
                unlinked++;
        } else if (t->recs.len) {
            fd = openat(q->out_fd, t->id, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (fd < 0)
                t->err = errno;
            else if ((t->err = ims_append_whole(fd, t->recs.data, t->recs.len))) {
                close(fd);
                fd = -1;
            }
        }
        if (fd >= 0) {
            fds[k++] = fd;
            slot[i] = k;
        }
    }
    /* Out is open for the queue's life: the anchor of one syncfs for the round's files, which
     * makes the removals above durable too; or the spool's next syncfs does it, when one
     * comes soon (Out and In are both in RootDir). */
    int sync_err = 0;
    if (k || unlinked) {
        bool whole_fs = ims_pool_sync_shared(q->pool, atomic_load(&q->syncer), OQ_SHARE_MS,
                                             q->out_fd, fds, errs, k, true);
        sync_err = unlinked && !whole_fs && fsync(q->out_fd) ? errno : 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (ts[i]->unlink && !ts[i]->err)
            ts[i]->err = sync_err;
    }
    ims_tracking_hold(q->tracking); /* the round's lines in one write */
    for (size_t i = 0; i < n; i++) {
        oq_task *t = ts[i];
        if (slot[i]) {
            if (!t->err)
                t->err = errs[slot[i] - 1];
            close(fds[slot[i] - 1]);
        }
        if (t->err || !q->tracking)
            continue;
        const ims_spool_file *f = &t->m->f;
        for (size_t j = 0; j < t->ntrack; j++) {
            const oq_track *tr = &t->track[j];
            const char *d = tr->detail;
            ims_track_line l = {
                .when = time(NULL),
                .event = tr->event,
                .qid = f->id,
                .sender = f->sender,
                .rcpt = tr->rcpt < f->nrcpt ? f->rcpts[tr->rcpt].address : f->sender,
                .size = f->content_len,
                .client = f->client_ip,
                .host = f->host,
                .tls =
                    tr->event == IMS_TRACK_TRANSFERRED_OUTBOUND || tr->event == IMS_TRACK_REPORT_OUT
                        ? (t->tls[0] ? t->tls : "plain")
                        : NULL,
                .remote = d,
                .reply = d ? d + strlen(d) + 1 : NULL,
            };
            if (d)
                l.ref = l.reply + strlen(l.reply) + 1;
            if (tr->event >= IMS_TRACK_ADMIN_DELETED_NDR && tr->event <= IMS_TRACK_ADMIN_RETRY)
                l.actor = t->actor;
            ims_tracking_put(q->tracking, &l);
        }
    }
    (void)ims_tracking_release(q->tracking);
    free(fds);
    free(errs);
    free(slot);
}

struct oq_writer {
    buf b;
};

static int write_buf(void *arg, const void *p, size_t n)
{
    return buf_add(&((struct oq_writer *)arg)->b, p, n);
}

static void report_spooled(void *arg, int err, const char *qid);

/* th_report - build the report from the file's content and spool it (its done callback runs
 * in the loop, from ims_spool_dispatch). */
static void th_report(ims_outq *q, oq_task *t)
{
    oq_msg *m = t->m;
    if (q->stopping || !q->spool) {
        t->err = ECANCELED; /* the spool may be closing: made again at the next start */
        return;
    }
    int fd = openat(q->out_fd, t->id, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t->err = errno;
        return;
    }
    ims_report_fd rf;
    ims_report_original o;
    ims_spool_report_original(&m->f, fd, &rf, &o);
    char token[IMS_REPORT_TOKEN_MAX];
    snprintf(token, sizeof token, "%s.%" PRIu32 ".%c", m->id,
             (uint32_t)atomic_fetch_add(&q->report_seq, 1), t->delayed ? 'd' : 'f');
    struct oq_writer w = {BUF_INIT};
    ims_report_options opt = {
        .names = &q->names,
        .token = token,
        .date = time(NULL),
        .delay_default = q->s.delay_notification != 0,
        .write = write_buf,
        .write_arg = &w,
    };
    ims_report_info info;
    t->err = ims_report_build(&o, t->rr, t->nrr, &opt, &info);
    close(fd);
    if (!t->err) {
        ims_envelope e = {0};
        ims_rcpt both[2] = {t->to, t->to2};
        e.sender = "";
        e.rcpts = both;
        e.nrcpt = t->admin_copy ? 2 : 1;
        e.host = q->host;
        e.helo = q->host;
        t->err = ims_spool_submit(q->spool, &e, w.b.data, w.b.len, report_spooled, t);
        if (!t->err)
            t = NULL; /* the callback has it now */
    }
    buf_free(&w.b);
    if (t && (t->err == ENODATA || t->err == ELOOP || t->err == ENOMSG)) {
        t->err = 0;
        t->nothing = true; /* not an error: it counts as reported all the same */
    }
}

/* th_bad - a report that cannot be delivered: its content goes to the gateway's Bad folder
 * (a Maildir) for the administrator. */
static void th_bad(ims_outq *q, oq_task *t)
{
    int fd = openat(q->out_fd, t->id, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t->err = errno;
        return;
    }
    char path[PATH_MAX], sub[PATH_MAX];
    int n1 = snprintf(path, sizeof path, "%s/new/%s.ims-out", q->bad_dir, t->id);
    int n2 = snprintf(sub, sizeof sub, "%s/new", q->bad_dir);
    if (n1 < 0 || (size_t)n1 >= sizeof path || n2 < 0 || (size_t)n2 >= sizeof sub) {
        close(fd);
        t->err = ENAMETOOLONG;
        return;
    }
    char *c = malloc(t->m->f.content_len + 1);
    t->err = c ? read_all_at(fd, c, (size_t)t->m->f.content_len, t->m->f.content_off) : ENOMEM;
    close(fd);
    if (!t->err) {
        base_mkdir_p(sub, 0700);
        t->err = base_write_file_atomic(path, c, (size_t)t->m->f.content_len, 0600);
    }
    free(c);
}

/* th_receipt - a report made elsewhere (the delivery thread's receipts): routed to its
 * sender and spooled from <>. t->content holds it, t->ad->to_dest the sender. */
static void th_receipt(ims_outq *q, oq_task *t)
{
    if (q->stopping || !q->spool)
        return;
    ims_route route;
    char where[PATH_MAX];
    if (ims_router_route(q->router, t->ad->to_dest, &route) ||
        ims_route_dest(&route, q->store_dir, where, sizeof where))
        return; /* no such sender here: nobody to tell */
    ims_rcpt r = {.address = t->ad->to_dest, .route = route.kind};
    if (route.kind == IMS_ROUTE_LOCAL)
        r.maildir = where;
    else
        r.dest = where;
    ims_envelope e = {.sender = "", .rcpts = &r, .nrcpt = 1, .host = q->host, .helo = q->host};
    ims_spool_submit(q->spool, &e, t->content, t->clen, NULL, NULL);
}

static void th_remove(ims_outq *q, oq_task *t)
{
    if (unlinkat(q->out_fd, t->id, 0) && errno != ENOENT)
        t->err = errno;
}

/* A start's queue files, read in inode order: a cold start (nothing in the page cache) then
 * reads the inode tables and the files' blocks in ascending order, not in the directory's
 * hash order, and reads a batch of files at once across the pool's threads (100,000 files
 * took 14-17 s one by one in hash order). */
#define OQ_SCAN_BATCH 256 /* files whose envelopes are read at once */
/* Answers the scan may have waiting for the loop: a task per message is far larger than the
 * message it makes, and 100,000 of them waiting at once doubled a start's peak memory. */
#define OQ_SCAN_AHEAD (4 * OQ_SCAN_BATCH)

typedef struct oq_name {
    ino_t ino;
    char id[IMS_QUEUE_ID_LEN + 1];
} oq_name;

static int name_cmp(const void *a, const void *b)
{
    ino_t x = ((const oq_name *)a)->ino, y = ((const oq_name *)b)->ino;
    return x < y ? -1 : x > y;
}

typedef struct oq_scan {
    ims_outq *q;
    oq_task **t;
} oq_scan;

static void scan_env(void *arg, size_t i)
{
    oq_scan *sc = arg;
    th_env(sc->q, sc->t[i]);
}

static void th_scan(ims_outq *q)
{
    DIR *dir = base_opendirat(q->out_fd, ".");
    if (!dir)
        return;
    oq_name *names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        if (!ims_spool_id_valid(de->d_name))
            continue;
        if (n == cap) {
            size_t c = cap ? cap * 2 : 1024;
            oq_name *v = realloc(names, c * sizeof *v);
            if (!v)
                break; /* as a task that cannot be made: the rest wait for the next start */
            names = v;
            cap = c;
        }
        names[n].ino = de->d_ino;
        memcpy(names[n].id, de->d_name, IMS_QUEUE_ID_LEN + 1);
        n++;
    }
    closedir(dir);
    if (n)
        qsort(names, n, sizeof *names, name_cmp);
    oq_task *batch[OQ_SCAN_BATCH];
    oq_scan sc = {.q = q, .t = batch};
    for (size_t at = 0; at < n;) {
        pthread_mutex_lock(&q->lock);
        while (q->scan_unread >= OQ_SCAN_AHEAD && !q->stopping)
            pthread_cond_wait(&q->scan_room, &q->lock);
        bool stop = q->stopping;
        pthread_mutex_unlock(&q->lock);
        if (stop)
            break; /* the rest is read at the next start */
        size_t k = 0;
        for (; k < OQ_SCAN_BATCH && at < n; k++, at++) {
            if (!(batch[k] = task_new(T_ENV, NULL))) {
                at = n;
                break;
            }
            memcpy(batch[k]->id, names[at].id, IMS_QUEUE_ID_LEN + 1);
            batch[k]->scanned = true;
        }
        ims_pool_run(q->pool, k, scan_env, &sc);
        pthread_mutex_lock(&q->lock);
        for (size_t i = 0; i < k; i++) {
            *q->answers_tail = batch[i];
            q->answers_tail = &batch[i]->next;
        }
        q->scan_unread += k;
        pthread_mutex_unlock(&q->lock);
        wake_fd(q->efd); /* the loop takes a batch in while the next one is read */
    }
    free(names);
    wake_fd(q->efd);
}

static void answer(ims_outq *q, oq_task *t)
{
    pthread_mutex_lock(&q->lock);
    t->next = NULL;
    *q->answers_tail = t;
    q->answers_tail = &t->next;
    pthread_mutex_unlock(&q->lock);
    wake_fd(q->efd);
}

static void *outq_main(void *arg)
{
    ims_outq *q = arg;
    oq_task **round = calloc(OQ_ROUND_MAX, sizeof *round);
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (!q->work && !q->stopping)
            pthread_cond_wait(&q->wake, &q->lock);
        if (!q->work && q->stopping)
            break;
        oq_task *list = q->work;
        q->work = NULL;
        q->work_tail = &q->work;
        pthread_mutex_unlock(&q->lock);
        /* Commits first and together: each round is one sync of each file it touches. */
        size_t n = 0;
        for (oq_task *t = list, *next; t; t = next) {
            next = t->next;
            if (t->kind == T_COMMIT && round && n < OQ_ROUND_MAX) {
                round[n++] = t;
                t->in_round = true;
            }
        }
        if (n)
            th_commit_round(q, round, n);
        for (oq_task *t = list, *next; t; t = next) {
            next = t->next;
            switch (t->kind) {
            case T_SCAN:
                th_scan(q);
                free(t);
                continue;
            case T_ENV:
                th_env(q, t);
                break;
            case T_CONTENT:
                th_content(q, t);
                break;
            case T_COMMIT:
                if (!t->in_round) /* beyond OQ_ROUND_MAX: a round of its own */
                    th_commit_round(q, &t, 1);
                break;
            case T_REPORT:
                th_report(q, t);
                if (!t->err && !t->nothing)
                    continue; /* spooled: report_spooled answers */
                break;
            case T_REMOVE:
                th_remove(q, t);
                break;
            case T_BAD:
                th_bad(q, t);
                break;
            case T_RECEIPT:
                th_receipt(q, t);
                task_free(t);
                continue;
            }
            answer(q, t);
        }
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    free(round);
    return NULL;
}

static void report_spooled(void *arg, int err, const char *qid)
{
    oq_task *t = arg;
    if (!err && qid) /* for the tracking lines: the report's own id */
        snprintf(t->report_qid, sizeof t->report_qid, "%s", qid);
    /* In ims_spool_dispatch's thread (the loop's, or the closing one): only queued. */
    t->err = err;
    t->spooled = !err;
    answer(t->arg, t);
}

/* --- the loop's side -------------------------------------------------------------------- */

static bool final(const ims_spool_rcpt_rec *r)
{
    return r->state == IMS_RCPT_DONE || r->state == IMS_RCPT_FAILED;
}

static void log_task(ims_outq *q, const oq_task *t)
{
    if (t->text[0])
        ims_log_event(q->log, t->ev ? t->ev : IMS_EV_INTERNAL, IMS_CAT_MESSAGE_TRANSFER,
                      IMS_SEV_ERROR, IMS_LEVEL_NONE, "%s", t->text);
}

static void msg_free(oq_msg *m)
{
    for (size_t i = 0; i < m->nunits; i++) {
        free(m->units[i].ri);
        free(m->units[i].pend);
    }
    free(m->units);
    free(m->inflight);
    free(m->content);
    ims_spool_file_free(&m->f);
    free(m);
}

static uint32_t hash_id(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % OQ_MSG_BUCKETS;
}

static oq_msg *msg_find(ims_outq *q, const char *qid)
{
    for (oq_msg *m = q->by_id[hash_id(qid)]; m; m = m->hnext)
        if (!strcmp(m->id, qid))
            return m;
    return NULL;
}

static void msg_unlink(ims_outq *q, oq_msg *m)
{
    for (oq_msg **pp = &q->by_id[hash_id(m->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == m) {
            *pp = m->hnext;
            break;
        }
    if (m->prev)
        m->prev->next = m->next;
    else
        q->msgs = m->next;
    if (m->next)
        m->next->prev = m->prev;
}

static void content_drop(ims_outq *q, oq_msg *m)
{
    if (m->content && m->busy == 0) {
        q->loaded_bytes -= m->clen;
        free(m->content);
        m->content = NULL;
    }
}

static void unit_schedule(ims_outq *q, oq_unit *u, uint64_t due)
{
    u->st = U_WAIT;
    if (ims_sched_add(&q->sched, &u->node, due))
        u->st = U_WAIT; /* out of memory: it waits for the next start */
}

static void report_post(ims_outq *q, oq_msg *m, const size_t *idx, size_t n,
                        ims_report_action action);

/* msg_check_done - when every recipient is final and reported, the file goes. */
static void msg_check_done(ims_outq *q, oq_msg *m)
{
    if (m->removing || m->busy || m->reports || m->loading)
        return;
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->route == IMS_ROUTE_LOCAL)
            continue;
        if (!final(r) || (r->state == IMS_RCPT_FAILED && !r->reported))
            return;
    }
    m->removing = true;
    oq_task *t = task_new(T_REMOVE, m);
    if (t)
        post(q, t);
}

/* unit_final - the unit's recipients are all final now. */
static bool unit_is_final(const oq_unit *u)
{
    for (size_t i = 0; i < u->nri; i++)
        if (!final(&u->m->f.rcpts[u->ri[i]]))
            return false;
    return true;
}

static void load_next(ims_outq *q);
static void unit_defer_dead(ims_outq *q, oq_unit *u, uint64_t now);

/* unit_ready - a unit's content is in memory: on its destination's ready list. */
static void unit_ready(ims_outq *q, oq_unit *u, uint64_t now)
{
    ims_outq_dest *d = u->d;
    if (u->m->held) {
        u->st = unit_is_final(u) ? U_FINAL : U_HELD;
        return;
    }
    if (d->dead_until > now) {
        unit_defer_dead(q, u, now);
        return;
    }
    u->npend = 0;
    for (size_t i = 0; i < u->nri; i++)
        if (!final(&u->m->f.rcpts[u->ri[i]]))
            u->pend[u->npend++] = u->ri[i];
    if (!u->npend) {
        u->st = U_FINAL;
        return;
    }
    u->st = U_READY;
    u->taken = 0;
    u->m->busy++;
    u->next = NULL;
    *d->ready_tail = u;
    d->ready_tail = &u->next;
    if (d->nready++ == 0 && q->ready)
        q->ready(q->ready_arg, d);
}

static void content_request(ims_outq *q, oq_msg *m)
{
    if (m->content || m->loading)
        return;
    if (q->loaded_bytes >= IMS_OUTQ_LOAD_BUDGET) {
        if (q->nloadq == q->caploadq) {
            size_t cap = q->caploadq ? q->caploadq * 2 : 64;
            oq_msg **v = realloc(q->loadq, cap * sizeof *v);
            if (!v)
                return; /* tried again at its unit's next due time */
            q->loadq = v;
            q->caploadq = cap;
        }
        q->loadq[q->nloadq++] = m;
        m->loading = true;
        return;
    }
    oq_task *t = task_new(T_CONTENT, m);
    if (!t)
        return;
    m->loading = true;
    q->loaded_bytes += (size_t)m->f.content_len;
    post(q, t);
}

static void load_next(ims_outq *q)
{
    size_t i = 0;
    while (i < q->nloadq && q->loaded_bytes < IMS_OUTQ_LOAD_BUDGET) {
        oq_msg *m = q->loadq[i++];
        m->loading = false;
        content_request(q, m);
    }
    if (i) {
        memmove(q->loadq, q->loadq + i, (q->nloadq - i) * sizeof *q->loadq);
        q->nloadq -= i;
    }
}

/* expire_or_notice - a unit due at wall time `now`: its message's time-out fails what is
 * pending (true: nothing is to be tried); past DelayNotification its sender hears once. */
static bool expire_or_notice(ims_outq *q, oq_unit *u, time_t now)
{
    oq_msg *m = u->m;
    uint64_t tmo = ims_message_timeout_ms(&q->s, m->prio);
    size_t *idx = malloc((u->nri ? u->nri : 1) * sizeof *idx), n = 0;
    if (!idx)
        return false;
    bool expired = now > m->f.time && (uint64_t)(now - m->f.time) * 1000 >= tmo;
    if (expired) {
        buf recs = BUF_INIT;
        for (size_t i = 0; i < u->nri; i++) {
            ims_spool_rcpt_rec *r = &m->f.rcpts[u->ri[i]];
            if (final(r))
                continue;
            char text[SPOOL_STATUS_TEXT_MAX];
            const char *bar = r->last ? strchr(r->last, '|') : NULL;
            snprintf(text, sizeof text,
                     "%.*s|4.4.7 Message expired: not delivered within %u "
                     "minutes%s%s",
                     bar ? (int)(bar - r->last) : 0, bar ? r->last : "", (unsigned)(tmo / 60000),
                     r->last ? "; last: " : "",
                     bar       ? bar + 1
                     : r->last ? r->last
                               : "");
            free(r->last);
            r->last = strdup(text);
            r->state = IMS_RCPT_FAILED;
            ims_spool_status_format(&recs, u->ri[i], IMS_RCPT_FAILED, 0, 0, text);
            idx[n++] = u->ri[i];
            q->st.failed++;
        }
        if (n) {
            oq_task *t = task_new(T_COMMIT, m);
            if (t) {
                t->recs = recs;
                m->busy++;
                post(q, t);
            } else {
                buf_free(&recs);
            }
            report_post(q, m, idx, n, IMS_REPORT_FAILED);
        } else {
            buf_free(&recs);
        }
        free(idx);
        return true;
    }
    uint64_t dly = ims_delay_notice_ms(&q->s, m->prio);
    if (dly != IMS_NEVER && now > m->f.time && (uint64_t)(now - m->f.time) * 1000 >= dly) {
        for (size_t i = 0; i < u->nri; i++) {
            ims_spool_rcpt_rec *r = &m->f.rcpts[u->ri[i]];
            if (r->state == IMS_RCPT_DEFERRED && !r->delay_noticed) {
                r->delay_noticed = true;
                idx[n++] = u->ri[i];
            }
        }
        if (n)
            report_post(q, m, idx, n, IMS_REPORT_DELAYED);
    }
    free(idx);
    return false;
}

static void apply(ims_outq *q, oq_msg *m, size_t i, const smtp_result *r, const char *remote,
                  buf *recs, oq_track *track, size_t *ntrack, size_t *fails, size_t *nfails);

/* unit_defer_dead - u is due while its destination is dead: its pending recipients get the
 * destination's last failure, recorded; it waits for its next retry. */
static void unit_defer_dead(ims_outq *q, oq_unit *u, uint64_t now)
{
    oq_msg *m = u->m;
    ims_outq_dest *d = u->d;
    oq_task *t = task_new(T_COMMIT, m);
    size_t *fails = calloc(u->nri ? u->nri : 1, sizeof *fails), nfails = 0;
    if (t)
        t->track = calloc(u->nri ? u->nri : 1, sizeof *t->track);
    if (!t || !fails || !t->track) {
        if (t)
            task_free(t);
        free(fails);
        unit_schedule(q, u, d->dead_until);
        return;
    }
    unsigned attempts = 0;
    for (size_t i = 0; i < u->nri; i++) {
        apply(q, m, u->ri[i], &d->fail, d->fail_remote, &t->recs, t->track, &t->ntrack, fails,
              &nfails);
        if (m->f.rcpts[u->ri[i]].attempts > attempts)
            attempts = m->f.rcpts[u->ri[i]].attempts;
    }
    m->busy++;
    post(q, t);
    if (nfails)
        report_post(q, m, fails, nfails, IMS_REPORT_FAILED);
    free(fails);
    if (unit_is_final(u)) {
        u->st = U_FINAL;
        return;
    }
    uint64_t ms = ims_retry_delay_ms(&q->s, attempts);
    unit_schedule(q, u, ms == IMS_NEVER ? d->dead_until : now + ms);
}

/* unit_due - its time has come. */
static void unit_due(ims_outq *q, oq_unit *u, uint64_t now)
{
    if (unit_is_final(u)) {
        u->st = U_FINAL;
        msg_check_done(q, u->m);
        return;
    }
    if (u->d->dead_until > now) {
        /* The destination failed a moment ago: this unit is deferred with that failure,
         * recorded as if tried, without a connection of its own. */
        if (expire_or_notice(q, u, wall_now(q))) {
            u->st = U_FINAL;
            msg_check_done(q, u->m);
            return;
        }
        unit_defer_dead(q, u, now);
        return;
    }
    if (expire_or_notice(q, u, wall_now(q))) {
        u->st = U_FINAL;
        msg_check_done(q, u->m);
        return;
    }
    u->st = U_LOADING;
    if (u->m->content)
        unit_ready(q, u, now);
    else
        content_request(q, u->m);
}

/* fail_pending - every remote recipient not final fails with text (recorded; the reports
 * follow from msg_add's check of unreported failures). */
static void fail_pending(ims_outq *q, oq_msg *m, const char *text)
{
    oq_task *c = task_new(T_COMMIT, m);
    if (!c)
        return;
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->route == IMS_ROUTE_LOCAL || final(r))
            continue;
        free(r->last);
        r->last = strdup(text);
        r->state = IMS_RCPT_FAILED;
        ims_spool_status_format(&c->recs, i, IMS_RCPT_FAILED, 0, 0, text);
        q->st.failed++;
        q->st.rcpts--;
    }
    m->busy++;
    post(q, c);
}

/* msg_add - a message read from Out: units by destination, scheduled by their records. */
static void msg_add(ims_outq *q, oq_task *t, uint64_t now)
{
    if (msg_find(q, t->id))
        return; /* a handover of a file recovery found too */
    oq_msg *m = calloc(1, sizeof *m);
    if (!m)
        return;
    m->eightbit = -1;
    memcpy(m->id, t->id, sizeof m->id);
    m->f = t->f;
    memset(&t->f, 0, sizeof t->f);
    m->prio = t->prio;
    m->held = m->f.held;
    if (t->content) {
        m->content = t->content;
        m->clen = t->clen;
        q->loaded_bytes += m->clen;
        t->content = NULL;
    }
    m->units = calloc(m->f.nrcpt, sizeof *m->units);
    m->inflight = calloc(m->f.nrcpt ? m->f.nrcpt : 1, sizeof *m->inflight);
    if (!m->units || !m->inflight) {
        msg_free(m);
        return;
    }
    time_t wnow = wall_now(q);
    oq_track *track = calloc(m->f.nrcpt, sizeof *track);
    size_t ntrack = 0;
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->route == IMS_ROUTE_LOCAL || !r->dest)
            continue;
        ims_outq_dest *d = dest_get(q, r->route, r->dest);
        if (!d)
            continue;
        oq_unit *u = NULL;
        for (size_t k = 0; k < m->nunits && !u; k++)
            if (m->units[k].d == d)
                u = &m->units[k];
        if (!u) {
            u = &m->units[m->nunits++];
            u->m = m;
            u->d = d;
            u->ri = calloc(m->f.nrcpt, sizeof *u->ri);
            u->pend = calloc(m->f.nrcpt, sizeof *u->pend);
            if (!u->ri || !u->pend) {
                m->nunits--;
                free(u->ri);
                free(u->pend);
                continue;
            }
        }
        u->ri[u->nri++] = i;
        if (!final(r)) {
            q->st.rcpts++;
            if (r->state == IMS_RCPT_PENDING && track)
                track[ntrack++] = (oq_track){IMS_TRACK_QUEUED_OUTBOUND, i};
        }
    }
    m->next = q->msgs;
    if (q->msgs)
        q->msgs->prev = m;
    q->msgs = m;
    uint32_t h = hash_id(m->id);
    m->hnext = q->by_id[h];
    q->by_id[h] = m;
    q->st.messages++;
    if (ntrack && q->tracking) {
        oq_task *tt = task_new(T_COMMIT, m);
        if (tt) {
            tt->track = track;
            tt->ntrack = ntrack;
            track = NULL;
            m->busy++;
            post(q, tt);
        }
    }
    free(track);
    char text[SPOOL_STATUS_TEXT_MAX];
    if (t->hops >= IMS_OUTQ_MAX_HOPS) {
        /* A loop between gateways: every pending recipient fails (RFC 5321 6.3). */
        snprintf(text, sizeof text,
                 "|5.4.6 Too many hops: %u Received fields (the limit is %u), a mail loop", t->hops,
                 IMS_OUTQ_MAX_HOPS);
        fail_pending(q, m, text);
    } else if (q->s.outbound_size_limit && m->f.content_len > q->s.outbound_size_limit) {
        snprintf(text, sizeof text,
                 "|5.3.4 Message exceeds the outbound size limit (%llu bytes, OutboundSizeLimit "
                 "%u)",
                 (unsigned long long)m->f.content_len, (unsigned)q->s.outbound_size_limit);
        fail_pending(q, m, text);
    }
    /* Failed recipients whose report was never spooled (a crash between the two) get it. */
    size_t *idx = malloc((m->f.nrcpt ? m->f.nrcpt : 1) * sizeof *idx), nidx = 0;
    for (size_t i = 0; idx && i < m->f.nrcpt; i++)
        if (m->f.rcpts[i].route != IMS_ROUTE_LOCAL && m->f.rcpts[i].state == IMS_RCPT_FAILED &&
            !m->f.rcpts[i].reported)
            idx[nidx++] = i;
    if (nidx)
        report_post(q, m, idx, nidx, IMS_REPORT_FAILED);
    free(idx);
    for (size_t k = 0; k < m->nunits; k++) {
        oq_unit *u = &m->units[k];
        uint64_t due = now;
        for (size_t i = 0; i < u->nri; i++) {
            const ims_spool_rcpt_rec *r = &m->f.rcpts[u->ri[i]];
            if (r->state == IMS_RCPT_DEFERRED && r->next_try > wnow) {
                uint64_t d = now + (uint64_t)(r->next_try - wnow) * 1000;
                if (due == now || d < due)
                    due = d;
            } else if (!final(r)) {
                due = now;
                break;
            }
        }
        if (unit_is_final(u))
            u->st = U_FINAL;
        else if (m->held)
            u->st = U_HELD;
        else
            unit_schedule(q, u, due);
    }
    msg_check_done(q, m);
}

/* --- reports ----------------------------------------------------------------------------- */

static void report_post(ims_outq *q, oq_msg *m, const size_t *idx, size_t n,
                        ims_report_action action)
{
    bool delayed = action == IMS_REPORT_DELAYED;
    if (action == IMS_REPORT_RELAYED && !m->f.sender[0])
        return; /* no receipts for mail from <> */
    if (!m->f.sender[0]) {
        /* Nobody to tell: a report's own failure, or mail from <>. Event 4120 and the
         * message goes to Bad (not for a delay: it is still being tried). */
        if (delayed)
            return;
        ims_log_event(q->log, IMS_EV_OUT_NDR_FAILED, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      "Message %s from the null sender could not be delivered to %s: %s; no "
                      "report is sent for it, and it was put in the gateway's Bad folder",
                      m->id, m->f.rcpts[idx[0]].address,
                      m->f.rcpts[idx[0]].last ? m->f.rcpts[idx[0]].last : "failed");
        oq_task *t = task_new(T_BAD, m);
        if (!t)
            return;
        t->rr_idx = malloc(n * sizeof *t->rr_idx);
        if (t->rr_idx)
            memcpy(t->rr_idx, idx, n * sizeof *idx);
        t->nrr = t->rr_idx ? n : 0;
        m->reports++;
        post(q, t);
        return;
    }
    oq_task *t = task_new(T_REPORT, m);
    if (!t)
        return;
    t->delayed = delayed;
    t->action = action;
    t->arg = q;
    t->rr = calloc(n, sizeof *t->rr);
    t->rr_idx = malloc(n * sizeof *t->rr_idx);
    t->rt = calloc(n, sizeof *t->rt);
    t->ad = calloc(1, sizeof *t->ad);
    if (!t->rr || !t->rr_idx || !t->rt || !t->ad) {
        task_free(t);
        return;
    }
    /* The report's recipient: the original sender, routed as any address. */
    ims_route route;
    int e = ims_router_route(q->router, m->f.sender, &route);
    if (e) {
        ims_log_event(q->log, IMS_EV_OUT_NDR_FAILED, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE, "The report on message %s cannot be sent to <%s>: %s", m->id,
                      m->f.sender, e == ENOENT ? "no such mailbox" : strerror(e));
        task_free(t);
        if (!delayed)
            for (size_t i = 0; i < n; i++)
                m->f.rcpts[idx[i]].reported = true;
        return;
    }
    t->to.address = m->f.sender;
    t->to.route = route.kind;
    char *where = route.kind == IMS_ROUTE_LOCAL ? t->ad->to_maildir : t->ad->to_dest;
    if (ims_route_dest(&route, q->store_dir, where,
                       route.kind == IMS_ROUTE_LOCAL ? sizeof t->ad->to_maildir
                                                     : sizeof t->ad->to_dest)) {
        task_free(t);
        return;
    }
    if (route.kind == IMS_ROUTE_LOCAL)
        t->to.maildir = t->ad->to_maildir;
    else
        t->to.dest = t->ad->to_dest;
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        ims_spool_rcpt_rec *r = &m->f.rcpts[idx[i]];
        ims_report_rcpt *rr = &t->rr[i];
        const char *diag;
        unsigned code;
        struct oq_rr_text *rt = &t->rt[i];
        ims_spool_status_split(r->last, !delayed, rt->remote, sizeof rt->remote, &diag, &code,
                               rt->enh);
        snprintf(rt->diag, sizeof rt->diag, "%s", diag);
        unsigned notify = 0;
        if (r->notify)
            smtp_notify_parse(r->notify, strlen(r->notify), &notify);
        rr->address = r->address;
        rr->orcpt = r->orcpt;
        rr->notify = notify;
        rr->action = action;
        rr->status = rt->enh;
        rr->remote_mta = rt->remote[0] ? rt->remote : NULL;
        rr->diagnostic = rt->diag[0] ? rt->diag : NULL;
        rr->smtp_code = code;
        rr->last_attempt = now;
        if (delayed)
            rr->retry_until = m->f.time + (time_t)(ims_message_timeout_ms(&q->s, m->prio) / 1000);
        t->rr_idx[i] = idx[i];
    }
    t->nrr = n;
    /* The administrator's copy (the Internet Mail page's "NDR notifications"): of every NDR
     * with AdminNdrCopy, else of the selected type only, an ambiguous address (x.1.4). */
    bool copy = false;
    for (size_t i = 0; action == IMS_REPORT_FAILED && i < n && !copy; i++)
        copy = q->s.admin_ndr_copy || !strcmp(t->rt[i].enh + 1, ".1.4");
    if (copy && strcasecmp(m->f.sender, q->names.postmaster)) {
        int w = snprintf(t->ad->admin_maildir, sizeof t->ad->admin_maildir, "%s/%s", q->store_dir,
                         q->s.administrator_mailbox);
        if (w > 0 && (size_t)w < sizeof t->ad->admin_maildir) {
            t->to2.address = q->names.postmaster;
            t->to2.maildir = t->ad->admin_maildir;
            t->to2.route = IMS_ROUTE_LOCAL;
            t->admin_copy = true;
        }
    }
    m->reports++;
    post(q, t);
}

/* --- the administrator's actions and views ------------------------------------------------- */

static void action_part_done(oq_action *a, int err)
{
    if (err && !a->err)
        a->err = err;
    if (--a->parts)
        return;
    if (a->done)
        a->done(a->arg, a->err, &a->o);
    free(a);
}

/* ready_unlink - take u off its destination's ready list (it is on it). */
static void ready_unlink(ims_outq_dest *d, oq_unit *u)
{
    for (oq_unit **pp = &d->ready; *pp; pp = &(*pp)->next) {
        if (*pp != u)
            continue;
        *pp = u->next;
        if (d->ready_tail == &u->next)
            d->ready_tail = pp;
        d->nready--;
        return;
    }
}

/* action_commit - a commit of recs and track lines that is one part of a. The task owns the
 * buffers from now on, also when it cannot be made (then a gets ENOMEM). */
static void action_commit(ims_outq *q, oq_msg *m, oq_action *a, buf *recs, oq_track *track,
                          size_t ntrack)
{
    oq_task *t = task_new(T_COMMIT, m);
    a->parts++;
    if (!t) {
        buf_free(recs);
        free(track);
        action_part_done(a, ENOMEM);
        return;
    }
    t->recs = *recs;
    *recs = (buf)BUF_INIT;
    t->track = track;
    t->ntrack = ntrack;
    t->act = a;
    snprintf(t->actor, sizeof t->actor, "%s", a->actor);
    m->busy++;
    post(q, t);
}

/* unit_delete - the recipients of u not final fail as deleted by a (with their reports when
 * a->ndr); counted into a->o; u is final afterwards. Its records are one part of a. */
static void unit_delete(ims_outq *q, oq_unit *u, oq_action *a)
{
    oq_msg *m = u->m;
    buf recs = BUF_INIT;
    oq_track *track = calloc(u->nri ? u->nri : 1, sizeof *track);
    size_t *fails = calloc(u->nri ? u->nri : 1, sizeof *fails), nfails = 0, ntrack = 0;
    char text[SPOOL_STATUS_TEXT_MAX];
    snprintf(text, sizeof text, "|%s (%s)", IMS_QUEUE_DELETED_TEXT, a->actor);
    bool silent = !a->ndr || !m->f.sender[0]; /* nobody to tell about mail from <> */
    for (size_t i = 0; track && fails && i < u->nri; i++) {
        ims_spool_rcpt_rec *r = &m->f.rcpts[u->ri[i]];
        if (final(r))
            continue;
        char *copy = strdup(text);
        if (!copy)
            break;
        free(r->last);
        r->last = copy;
        r->state = IMS_RCPT_FAILED;
        ims_spool_status_format(&recs, u->ri[i], IMS_RCPT_FAILED, 0, 0, text);
        if (silent) {
            r->reported = true;
            buf_printf(&recs, "reported %zu\n", u->ri[i]);
        } else {
            fails[nfails++] = u->ri[i];
        }
        track[ntrack++] =
            (oq_track){silent ? IMS_TRACK_ADMIN_DELETED : IMS_TRACK_ADMIN_DELETED_NDR, u->ri[i]};
        q->st.failed++;
        q->st.rcpts--;
        a->o.changed++;
    }
    u->st = U_FINAL;
    if (ntrack) {
        action_commit(q, m, a, &recs, track, ntrack);
    } else {
        buf_free(&recs); /* nothing was left to delete: no record, no commit */
        free(track);
    }
    if (nfails)
        report_post(q, m, fails, nfails, IMS_REPORT_FAILED);
    free(fails);
}

/* attempt_over_admin - u's connection is done with it, and meanwhile its message was deleted
 * (what was delivered stays delivered, the rest is deleted) or held. */
static void attempt_over_admin(ims_outq *q, oq_unit *u)
{
    oq_msg *m = u->m;
    if (m->del) {
        oq_action *a = m->del;
        for (size_t k = 0; k < u->taken; k++)
            if (m->f.rcpts[u->pend[k]].state == IMS_RCPT_DONE)
                a->o.delivered++;
        if (--m->del_units == 0)
            m->del = NULL;
        unit_delete(q, u, a);
        action_part_done(a, 0); /* the wait for this unit */
        return;
    }
    u->st = unit_is_final(u) ? U_FINAL : U_HELD;
}

/* unit_stop - u is not to be tried any more for now: out of the scheduler or its
 * destination's ready list. Returns false when it is in a connection now (U_BUSY: then the
 * recipients not yet handed out are cut from the attempt). */
static bool unit_stop(ims_outq *q, oq_unit *u)
{
    switch (u->st) {
    case U_WAIT:
        ims_sched_remove(&q->sched, &u->node);
        return true;
    case U_READY:
        ready_unlink(u->d, u);
        u->m->busy--;
        return true;
    case U_BUSY:
        if (u->taken < u->npend) {
            ready_unlink(u->d, u);
            u->npend = u->taken;
        }
        return false;
    case U_LOADING: /* the content's arrival looks at the message's state */
    case U_FINAL:
    case U_HELD:
        return true;
    }
    return true;
}

static size_t unit_open_rcpts(const oq_unit *u)
{
    size_t n = 0;
    for (size_t i = 0; i < u->nri; i++)
        n += !final(&u->m->f.rcpts[u->ri[i]]);
    return n;
}

int ims_outq_action(ims_outq *q, const char *qid, ims_queue_action act, const char *actor,
                    uint64_t now, ims_outq_action_fn done, void *arg)
{
    oq_msg *m = msg_find(q, qid);
    if (!m || m->removing)
        return ENOENT;
    if (m->del)
        return EALREADY; /* being deleted */
    if ((act == IMS_QA_HOLD && m->held) || (act == IMS_QA_RELEASE && !m->held))
        return EALREADY;
    if (act == IMS_QA_RETRY && m->held)
        return EBUSY;
    oq_action *a = calloc(1, sizeof *a);
    oq_track *track = calloc(1, sizeof *track);
    if (!a || !track) {
        free(a);
        free(track);
        return ENOMEM;
    }
    a->done = done;
    a->arg = arg;
    a->ndr = act == IMS_QA_DELETE_NDR;
    snprintf(a->actor, sizeof a->actor, "%s", actor && *actor ? actor : "unknown");
    a->parts = 1; /* this call's own, dropped at the end */
    buf recs = BUF_INIT;
    unsigned ev = IMS_TRACK_ADMIN_RETRY;
    const char *what = "retried now";
    for (size_t k = 0; k < m->nunits; k++) {
        oq_unit *u = &m->units[k];
        size_t open = unit_open_rcpts(u);
        if (!open) {
            a->o.unchanged += u->nri;
            continue;
        }
        a->o.unchanged += u->nri - open;
        switch (act) {
        case IMS_QA_HOLD:
            if (unit_stop(q, u) && u->st != U_LOADING)
                u->st = U_HELD;
            a->o.changed += open;
            break;
        case IMS_QA_RELEASE:
            if (u->st == U_HELD)
                unit_schedule(q, u, now);
            a->o.changed += open;
            break;
        case IMS_QA_RETRY:
            u->d->dead_until = 0;
            if (u->st == U_WAIT) {
                ims_sched_remove(&q->sched, &u->node);
                unit_schedule(q, u, now);
                a->o.changed += open;
            } else {
                a->o.unchanged += open; /* being tried already */
            }
            break;
        case IMS_QA_DELETE:
        case IMS_QA_DELETE_NDR:
            if (unit_stop(q, u)) {
                unit_delete(q, u, a);
            } else {
                /* In a connection now: its results come first (attempt_over_admin). */
                a->parts++;
                m->del = a;
                m->del_units++;
            }
            break;
        }
    }
    switch (act) {
    case IMS_QA_HOLD:
        m->held = true;
        buf_printf(&recs, "hold\n");
        ev = IMS_TRACK_ADMIN_HELD;
        what = "held";
        break;
    case IMS_QA_RELEASE:
        m->held = false;
        buf_printf(&recs, "release\n");
        ev = IMS_TRACK_ADMIN_RELEASED;
        what = "released";
        break;
    case IMS_QA_RETRY:
        break;
    case IMS_QA_DELETE:
        what = "deleted without a non-delivery report";
        break;
    case IMS_QA_DELETE_NDR:
        what = "deleted with a non-delivery report to the sender";
        break;
    }
    size_t ntrack = 0;
    if (act != IMS_QA_DELETE && act != IMS_QA_DELETE_NDR)
        track[ntrack++] = (oq_track){ev, SIZE_MAX};
    action_commit(q, m, a, &recs, track, ntrack);
    ims_log_event(q->log, IMS_EV_QUEUE_ACTION, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_INFO,
                  IMS_LEVEL_NONE, "Message %s from <%s> in the outbound queue was %s by %s", m->id,
                  m->f.sender, what, a->actor);
    action_part_done(a, 0);
    msg_check_done(q, m);
    wake_fd(q->efd); /* what is due now (a retry, a release) runs at the next dispatch */
    return 0;
}

int ims_outq_iter_new(ims_outq *q, ims_outq_iter **out)
{
    ims_outq_iter *it = calloc(1, sizeof *it);
    if (!it)
        return ENOMEM;
    it->q = q;
    it->next = q->iters;
    q->iters = it;
    *out = it;
    return 0;
}

static ims_queue_rcpt_state view_state(const oq_msg *m, size_t i)
{
    const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
    if (r->state == IMS_RCPT_DONE)
        return IMS_QRCPT_DONE;
    if (r->state == IMS_RCPT_FAILED)
        return IMS_QRCPT_FAILED;
    if (m->inflight[i])
        return IMS_QRCPT_SENDING;
    return m->held ? IMS_QRCPT_HELD : IMS_QRCPT_WAITING;
}

bool ims_outq_iter_next(ims_outq_iter *it, uint64_t now, ims_queue_msg *view)
{
    if (!it->started) {
        it->at = it->q->msgs;
        it->started = true;
    }
    oq_msg *m = it->at;
    while (m && m->removing)
        m = m->next; /* every recipient is final and its file is going: it has left */
    if (!m)
        return false;
    if (m->f.nrcpt > it->caprc) {
        ims_queue_rcpt *v = realloc(it->rc, m->f.nrcpt * sizeof *v);
        if (!v)
            return false;
        it->rc = v;
        it->caprc = m->f.nrcpt;
    }
    it->at = m->next;
    time_t wnow = time(NULL);
    size_t n = 0;
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->route == IMS_ROUTE_LOCAL)
            continue; /* delivered into its mailbox before the message came here */
        ims_queue_rcpt *v = &it->rc[n++];
        v->address = r->address;
        v->route = r->route;
        v->dest = r->dest;
        v->state = view_state(m, i);
        v->attempts = r->attempts;
        v->last = r->last;
        const char *bar = r->last ? strchr(r->last, '|') : NULL;
        v->remote_len = bar ? (size_t)(bar - r->last) : 0;
        /* The record's next try, or better the scheduler's (a retry now, ms precision). */
        v->next_try =
            v->state == IMS_QRCPT_WAITING && r->state == IMS_RCPT_DEFERRED ? r->next_try : 0;
        for (size_t k = 0; k < m->nunits && v->state == IMS_QRCPT_WAITING; k++) {
            const oq_unit *u = &m->units[k];
            if (u->st != U_WAIT)
                continue;
            for (size_t j = 0; j < u->nri; j++)
                if (u->ri[j] == i)
                    v->next_try =
                        u->node.due > now ? wnow + (time_t)((u->node.due - now + 999) / 1000) : 0;
        }
    }
    view->id = m->id;
    view->sender = m->f.sender;
    view->arrival = m->f.time;
    view->size = m->f.content_len;
    view->held = m->held;
    view->rcpts = it->rc;
    view->nrcpt = n;
    return true;
}

void ims_outq_iter_free(ims_outq_iter *it)
{
    if (!it)
        return;
    for (ims_outq_iter **pp = &it->q->iters; *pp; pp = &(*pp)->next)
        if (*pp == it) {
            *pp = it->next;
            break;
        }
    free(it->rc);
    free(it);
}

/* --- answers ------------------------------------------------------------------------------ */

static void job_free(ims_outq_job *j)
{
    if (!j)
        return;
    free(j->rc);
    free(j->res);
    free(j->ri);
    free(j);
}

/* msg_gone - its file is removed: the message leaves the queue. */
static void msg_gone(ims_outq *q, oq_msg *m)
{
    for (ims_outq_iter *it = q->iters; it; it = it->next)
        if (it->at == m)
            it->at = m->next;
    for (size_t i = 0; i < m->nunits; i++)
        ims_sched_remove(&q->sched, &m->units[i].node);
    msg_unlink(q, m);
    q->st.messages--;
    if (m->content)
        q->loaded_bytes -= m->clen;
    msg_free(m);
}

/* commit_space - a record commit's part in a disk-full episode: one event when the first
 * fails for want of space (the results stay in memory and retries go on as scheduled; a
 * record is not made again, so a restart before the message leaves Out may send it again:
 * never lost), one when a commit succeeds again; no per-message event for such failures. */
static void commit_space(ims_outq *q, int err)
{
    char out[PATH_MAX + 8], fs[PATH_MAX + 160];
    if (ims_err_no_space(err) == q->no_space || (err && !ims_err_no_space(err)))
        return;
    q->no_space = !q->no_space;
    snprintf(out, sizeof out, "%s/Out", q->root);
    if (q->no_space)
        ims_log_event(q->log, IMS_EV_DISK_FULL, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                      IMS_LEVEL_NONE,
                      "The disk is full: delivery results could not be recorded in %s: %s; "
                      "the queue goes on with them in memory (a restart before such a "
                      "message has left the queue may send it again)",
                      ims_fs_describe(out, fs, sizeof fs), strerror(err));
    else
        ims_log_event(q->log, IMS_EV_DISK_SPACE_BACK, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_INFO,
                      IMS_LEVEL_NONE,
                      "Disk space is back: delivery results are recorded again in %s",
                      ims_fs_describe(out, fs, sizeof fs));
}

static void on_answer(ims_outq *q, oq_task *t, uint64_t now)
{
    oq_msg *m = t->m;
    log_task(q, t);
    switch (t->kind) {
    case T_SCAN:
        break;
    case T_ENV:
        if (!t->err)
            msg_add(q, t, now);
        break;
    case T_CONTENT:
        m->loading = false;
        if (t->err == EBADMSG && !m->busy && !m->reports && !m->removing) {
            /* Damaged (event 4117 logged above; the file is in Out/Archive): it leaves the
             * queue, else each retry would read it again. */
            q->loaded_bytes -= (size_t)m->f.content_len;
            msg_gone(q, m);
            break;
        }
        if (t->err) {
            q->loaded_bytes -= (size_t)m->f.content_len;
            ims_log_event(q->log, IMS_EV_INTERNAL, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE, "Unable to read message %s of the outbound queue: %s",
                          m->id, strerror(t->err));
            for (size_t k = 0; k < m->nunits; k++)
                if (m->units[k].st == U_LOADING)
                    unit_schedule(q, &m->units[k], now + IMS_OUTQ_DEAD_MS);
            break;
        }
        q->loaded_bytes -= (size_t)m->f.content_len;
        m->content = t->content;
        m->clen = t->clen;
        q->loaded_bytes += m->clen;
        t->content = NULL;
        for (size_t k = 0; k < m->nunits; k++)
            if (m->units[k].st == U_LOADING)
                unit_ready(q, &m->units[k], now);
        content_drop(q, m);
        break;
    case T_COMMIT: {
        commit_space(q, t->err);
        if (t->err && !ims_err_no_space(t->err))
            ims_log_event(q->log, IMS_EV_INTERNAL, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE,
                          "Unable to record delivery results of message %s: %s (a restart "
                          "may send it again)",
                          m->id, strerror(t->err));
        ims_outq_job *j = t->job;
        if (j) {
            oq_unit *u = j->u;
            if (--u->jobs == 0 && u->taken >= u->npend && (m->del || m->held)) {
                /* The attempt is over, and the administrator acted meanwhile. */
                m->busy--;
                attempt_over_admin(q, u);
                content_drop(q, m);
            } else if (u->jobs == 0 && u->taken >= u->npend) {
                /* The attempt is over: what is not final waits for its next try. */
                m->busy--;
                uint64_t due = UINT64_MAX;
                time_t wnow = wall_now(q);
                for (size_t i = 0; i < u->nri; i++) {
                    const ims_spool_rcpt_rec *r = &m->f.rcpts[u->ri[i]];
                    if (r->state == IMS_RCPT_DEFERRED) {
                        uint64_t d =
                            r->next_try > wnow ? now + (uint64_t)(r->next_try - wnow) * 1000 : now;
                        if (d < due)
                            due = d;
                    }
                }
                if (due != UINT64_MAX) {
                    /* ms precision for short intervals: the record has seconds */
                    unsigned att = 0;
                    for (size_t i = 0; i < u->nri; i++)
                        if (m->f.rcpts[u->ri[i]].attempts > att)
                            att = m->f.rcpts[u->ri[i]].attempts;
                    uint64_t ms = ims_retry_delay_ms(&q->s, att);
                    if (ms != IMS_NEVER && now + ms < due)
                        due = now + ms;
                    unit_schedule(q, u, due);
                    expire_or_notice(q, u, wall_now(q));
                } else {
                    u->st = U_FINAL;
                }
                content_drop(q, m);
            }
            void (*done)(void *) = t->done;
            void *arg = t->arg;
            job_free(j);
            m->busy--;
            if (done)
                done(arg);
        } else {
            m->busy--;
        }
        if (t->act)
            action_part_done(t->act, t->err);
        if (t->unlink) {
            if (!t->err) {
                msg_gone(q, m);
                break;
            }
            /* The removal failed: the records go in the file after all, and the file is
             * removed later the usual way. */
            m->removing = false;
            oq_task *c = task_new(T_COMMIT, m);
            if (c) {
                c->recs = t->recs;
                t->recs = (buf)BUF_INIT;
                m->busy++;
                post(q, c);
            }
        }
        content_drop(q, m);
        msg_check_done(q, m);
        break;
    }
    case T_REPORT:
        m->reports--;
        if (t->spooled && t->action == IMS_REPORT_RELAYED) {
            q->st.reports++;
        } else if (t->spooled) {
            q->st.reports++;
            if (t->delayed)
                q->st.delays++;
            else
                q->st.ndrs++;
            buf recs = BUF_INIT;
            for (size_t i = 0; i < t->nrr; i++) {
                buf_printf(&recs, "%s %zu\n", t->delayed ? "delayed" : "reported", t->rr_idx[i]);
                if (!t->delayed)
                    m->f.rcpts[t->rr_idx[i]].reported = true;
            }
            oq_task *c = task_new(T_COMMIT, m);
            if (c) {
                c->recs = recs;
                /* One 1017 per recipient reported on: its last remote and reply, and the
                 * report's queue id (a bounce can be followed to its report). */
                c->track = calloc(t->nrr ? t->nrr : 1, sizeof *c->track);
                for (size_t i = 0; c->track && i < t->nrr; i++)
                    c->track[c->ntrack++] =
                        (oq_track){IMS_TRACK_REPORT_GENERATED, t->rr_idx[i],
                                   track_detail(t->rt[i].remote, t->rt[i].diag, t->report_qid)};
                m->busy++;
                post(q, c);
            } else {
                buf_free(&recs);
            }
        } else if (t->err) {
            ims_log_event(q->log, IMS_EV_OUT_NDR_FAILED, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE,
                          "Unable to make the %s report on message %s: %s; it is tried again "
                          "at the next start",
                          t->delayed ? "delay" : "non-delivery", m->id, strerror(t->err));
        } else if (t->action == IMS_REPORT_FAILED) {
            /* nothing to report (NOTIFY=NEVER, an automatic message) */
            for (size_t i = 0; i < t->nrr; i++)
                m->f.rcpts[t->rr_idx[i]].reported = true;
            buf recs = BUF_INIT;
            for (size_t i = 0; i < t->nrr; i++)
                buf_printf(&recs, "reported %zu\n", t->rr_idx[i]);
            oq_task *c = task_new(T_COMMIT, m);
            if (c) {
                c->recs = recs;
                m->busy++;
                post(q, c);
            } else {
                buf_free(&recs);
            }
        }
        msg_check_done(q, m);
        break;
    case T_RECEIPT:
        break; /* never answered */
    case T_BAD:
        m->reports--;
        for (size_t i = 0; i < t->nrr; i++)
            m->f.rcpts[t->rr_idx[i]].reported = true;
        if (t->err)
            ims_log_event(q->log, IMS_EV_INTERNAL, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE, "Unable to put message %s in the Bad folder %s: %s",
                          m->id, q->bad_dir, strerror(t->err));
        msg_check_done(q, m);
        break;
    case T_REMOVE:
        if (t->err) {
            ims_log_event(q->log, IMS_EV_INTERNAL, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_ERROR,
                          IMS_LEVEL_NONE, "Unable to remove %s/Out/%s: %s", q->root, m->id,
                          strerror(t->err));
        }
        msg_gone(q, m);
        break;
    }
    task_free(t);
}

void ims_outq_dispatch(ims_outq *q, uint64_t now)
{
    uint64_t v;
    if (read(q->efd, &v, sizeof v) < 0) {
        /* nothing was signalled: still look at what is due */
    }
    pthread_mutex_lock(&q->lock);
    oq_task *list = q->answers;
    q->answers = NULL;
    q->answers_tail = &q->answers;
    size_t scanned = 0;
    for (oq_task *t = list; t; t = t->next)
        scanned += t->scanned;
    if (scanned) { /* taken: the scan may read further */
        q->scan_unread -= scanned;
        pthread_cond_signal(&q->scan_room);
    }
    pthread_mutex_unlock(&q->lock);
    for (oq_task *t = list, *next; t; t = next) {
        next = t->next;
        on_answer(q, t, now);
    }
    load_next(q);
    for (ims_sched_node *n; (n = ims_sched_pop_due(&q->sched, now));)
        unit_due(q, (oq_unit *)((char *)n - offsetof(oq_unit, node)), now);
}

bool ims_outq_next_due(const ims_outq *q, uint64_t *due)
{
    return ims_sched_next(&q->sched, due);
}

void ims_outq_receipt(void *arg, const char *sender, const void *data, size_t len)
{
    ims_outq *q = arg;
    oq_task *t = task_new(T_RECEIPT, NULL);
    if (t)
        t->ad = calloc(1, sizeof *t->ad);
    if (!t || !t->ad || strlen(sender) >= sizeof t->ad->to_dest ||
        !(t->content = malloc(len ? len : 1))) {
        if (t)
            task_free(t);
        return; /* a receipt lost, as after a crash */
    }
    memcpy(t->content, data, len);
    t->clen = len;
    snprintf(t->ad->to_dest, sizeof t->ad->to_dest, "%s", sender);
    post(q, t);
}

void ims_outq_handover(void *arg, const char *qid)
{
    ims_outq *q = arg;
    oq_task *t = task_new(T_ENV, NULL);
    if (!t)
        return; /* found at the next start */
    snprintf(t->id, sizeof t->id, "%s", qid);
    t->preload = true;
    post(q, t);
}

int ims_outq_fd(const ims_outq *q)
{
    return q->efd;
}

/* --- destinations and jobs ------------------------------------------------------------------ */

ims_route_kind ims_outq_dest_route(const ims_outq_dest *d)
{
    return d->kind;
}

const char *ims_outq_dest_name(const ims_outq_dest *d)
{
    return d->name;
}

void *ims_outq_dest_user(const ims_outq_dest *d)
{
    return d->user;
}

void ims_outq_dest_set_user(ims_outq_dest *d, void *user)
{
    d->user = user;
}

void ims_outq_set_spool(ims_outq *q, ims_spool *sp)
{
    q->spool = sp;
    atomic_store(&q->syncer, ims_spool_recycler(sp));
}

size_t ims_outq_dest_ready(const ims_outq_dest *d)
{
    return d->nready;
}

/* apply - recipient index i of m gets result r (from remote): its new state into m and a
 * record into recs; failed ones into fails (for the report). Returns whether it changed. */
static void apply(ims_outq *q, oq_msg *m, size_t i, const smtp_result *r, const char *remote,
                  buf *recs, oq_track *track, size_t *ntrack, size_t *fails, size_t *nfails)
{
    ims_spool_rcpt_rec *rec = &m->f.rcpts[i];
    if (final(rec))
        return;
    char res[SMTP_REPLY_TEXT_MAX + 32], text[SPOOL_STATUS_TEXT_MAX + IMS_OUTQ_HOST_TEXT];
    smtp_result_format(r, res, sizeof res);
    snprintf(text, sizeof text, "%s|%s", remote ? remote : "", res);
    text[SPOOL_STATUS_TEXT_MAX - 1] = 0; /* a record's text is at most this */
    if (r->outcome == SMTP_DELIVERED) {
        rec->state = IMS_RCPT_DONE;
        rec->done = true;
        free(rec->last);
        rec->last = strdup(text); /* for a relayed receipt */
        ims_spool_status_format(recs, i, IMS_RCPT_DONE, 0, 0, NULL);
        track[(*ntrack)++] =
            (oq_track){m->f.sender[0] ? IMS_TRACK_TRANSFERRED_OUTBOUND : IMS_TRACK_REPORT_OUT, i,
                       track_detail(remote, res, NULL)};
        q->st.delivered++;
        q->st.rcpts--;
        ims_latency_add(&q->st.latency_remote, (int64_t)(wall_now(q) - m->f.time));
        return;
    }
    unsigned attempts = rec->attempts + 1;
    uint64_t delay = r->outcome == SMTP_TRANSIENT ? ims_retry_delay_ms(&q->s, attempts) : IMS_NEVER;
    time_t wnow = wall_now(q);
    uint64_t tmo = ims_message_timeout_ms(&q->s, m->prio);
    bool expired = wnow > m->f.time && (uint64_t)(wnow - m->f.time) * 1000 >= tmo;
    free(rec->last);
    rec->last = strdup(text);
    if (delay == IMS_NEVER || expired) {
        rec->state = IMS_RCPT_FAILED;
        ims_spool_status_format(recs, i, IMS_RCPT_FAILED, 0, 0, text);
        fails[(*nfails)++] = i;
        q->st.failed++;
        q->st.rcpts--;
        return;
    }
    rec->state = IMS_RCPT_DEFERRED;
    rec->attempts = attempts;
    rec->next_try = wnow + (time_t)((delay + 999) / 1000);
    ims_spool_status_format(recs, i, IMS_RCPT_DEFERRED, attempts, rec->next_try, text);
    track[(*ntrack)++] = (oq_track){IMS_TRACK_DEFERRED, i, track_detail(remote, res, NULL)};
    q->st.deferred++;
}

void ims_outq_dest_failed(ims_outq *q, ims_outq_dest *d, const smtp_result *r, const char *remote,
                          uint64_t now)
{
    uint64_t first = ims_retry_delay_ms(&q->s, 1);
    uint64_t dead = first < IMS_OUTQ_DEAD_MS ? first : IMS_OUTQ_DEAD_MS;
    if (r->outcome == SMTP_TRANSIENT) {
        d->dead_until = now + dead;
        d->fail = *r;
        snprintf(d->fail_remote, sizeof d->fail_remote, "%s", remote ? remote : "");
    }
    oq_unit *list = d->ready;
    d->ready = NULL;
    d->ready_tail = &d->ready;
    d->nready = 0;
    for (oq_unit *u = list, *next; u; u = next) {
        next = u->next;
        oq_msg *m = u->m;
        oq_task *t = task_new(T_COMMIT, m);
        size_t *fails = calloc(u->npend ? u->npend : 1, sizeof *fails), nfails = 0;
        if (t)
            t->track = calloc(u->npend ? u->npend : 1, sizeof *t->track);
        if (!t || !fails || !t->track) {
            if (t)
                task_free(t);
            free(fails);
            m->busy--;
            unit_schedule(q, u, now + dead);
            continue;
        }
        for (size_t i = u->taken; i < u->npend; i++)
            apply(q, m, u->pend[i], r, remote, &t->recs, t->track, &t->ntrack, fails, &nfails);
        u->taken = u->npend;
        m->busy++; /* the commit's */
        post(q, t);
        if (nfails)
            report_post(q, m, fails, nfails, IMS_REPORT_FAILED);
        free(fails);
        if (u->jobs)
            continue; /* its jobs in flight end the attempt (the commit's answer) */
        m->busy--;    /* the unit's */
        if (unit_is_final(u)) {
            u->st = U_FINAL;
        } else {
            uint64_t due = now + (r->outcome == SMTP_TRANSIENT ? dead : 0);
            unit_schedule(q, u, due);
            expire_or_notice(q, u, wall_now(q));
        }
        content_drop(q, m);
    }
}

static int job_read(void *arg, char *p, size_t cap, size_t *got)
{
    ims_outq_job *j = arg;
    oq_msg *m = j->u->m;
    size_t left = m->clen - j->off;
    size_t n = left < cap ? left : cap;
    memcpy(p, m->content + j->off, n);
    j->off += n;
    *got = n;
    return 0;
}

/* has_eightbit - a byte above 127 in p[0..n), looked for a word at a time: once per message,
 * not per job. */
static bool has_eightbit(const char *p, size_t n)
{
    const uint64_t high = 0x8080808080808080ull;
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t w;
        memcpy(&w, p + k, 8);
        if (w & high)
            return true;
    }
    for (; k < n; k++)
        if ((unsigned char)p[k] >= 0x80)
            return true;
    return false;
}

ims_outq_job *ims_outq_take(ims_outq *q, ims_outq_dest *d)
{
    oq_unit *u = d->ready;
    if (!u)
        return NULL;
    size_t max = q->s.max_recipients ? q->s.max_recipients : SMTP_CLIENT_RCPT_DEFAULT;
    if (max > SMTP_CLIENT_RCPT_LIMIT)
        max = SMTP_CLIENT_RCPT_LIMIT;
    size_t n = u->npend - u->taken < max ? u->npend - u->taken : max;
    ims_outq_job *j = calloc(1, sizeof *j);
    if (j) {
        j->rc = calloc(n, sizeof *j->rc);
        j->res = calloc(n, sizeof *j->res);
        j->ri = calloc(n, sizeof *j->ri);
    }
    if (!j || !j->rc || !j->res || !j->ri) {
        job_free(j);
        return NULL;
    }
    oq_msg *m = u->m;
    j->q = q;
    j->u = u;
    j->n = n;
    for (size_t k = 0; k < n; k++) {
        size_t i = u->pend[u->taken + k];
        const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        j->ri[k] = i;
        m->inflight[i] = true;
        j->rc[k].addr = r->address;
        if (r->notify)
            smtp_notify_parse(r->notify, strlen(r->notify), &j->rc[k].notify);
        j->rc[k].orcpt = r->orcpt;
    }
    u->taken += n;
    u->jobs++;
    u->st = U_BUSY;
    if (u->taken >= u->npend) {
        d->ready = u->next;
        if (!d->ready)
            d->ready_tail = &d->ready;
        d->nready--;
    }
    j->msg.from = m->f.sender;
    j->msg.rcpt = j->rc;
    j->msg.nrcpt = n;
    j->msg.size = m->clen;
    if (m->eightbit < 0)
        m->eightbit = has_eightbit(m->content, m->clen);
    j->msg.eightbit = m->eightbit;
    j->msg.ret = !m->f.ret                       ? SMTP_RET_NONE
                 : !strcasecmp(m->f.ret, "HDRS") ? SMTP_RET_HDRS
                                                 : SMTP_RET_FULL;
    j->msg.envid = m->f.envid;
    j->msg.read = job_read;
    j->msg.read_arg = j;
    return j;
}

const smtp_client_msg *ims_outq_job_msg(ims_outq_job *j)
{
    j->off = 0;
    return &j->msg;
}

const char *ims_outq_job_id(const ims_outq_job *j)
{
    return j->u->m->id;
}

void ims_outq_job_peer_dsn(ims_outq_job *j, bool offered)
{
    j->peer_dsn = offered;
}

void ims_outq_job_tls(ims_outq_job *j, const char *tls)
{
    snprintf(j->tls, sizeof j->tls, "%s", tls ? tls : "");
}

void ims_outq_job_result(ims_outq_job *j, size_t i, const smtp_result *r, const char *remote)
{
    if (i >= j->n)
        return;
    j->res[i].have = true;
    j->res[i].r = *r;
    snprintf(j->res[i].remote, sizeof j->res[i].remote, "%s", remote ? remote : "");
}

/* finishes - the job of unit u that just got its results is the message's last business:
 * every recipient is final and reported, nothing else of it is in flight. Then the file's
 * removal is its record (one directory sync for the round, instead of one per file). */
static bool finishes(const oq_msg *m, const oq_unit *u)
{
    if (m->busy != 1 || m->reports || m->loading || m->removing || u->jobs != 1 ||
        u->taken < u->npend)
        return false;
    for (size_t i = 0; i < m->f.nrcpt; i++) {
        const ims_spool_rcpt_rec *r = &m->f.rcpts[i];
        if (r->route != IMS_ROUTE_LOCAL &&
            (!final(r) || (r->state == IMS_RCPT_FAILED && !r->reported)))
            return false;
    }
    return true;
}

void ims_outq_job_finish(ims_outq *q, ims_outq_job *j, void (*done)(void *arg), void *arg)
{
    oq_msg *m = j->u->m;
    for (size_t k = 0; k < j->n; k++)
        m->inflight[j->ri[k]] = false; /* its result is in (or it was not attempted) */
    oq_task *t = task_new(T_COMMIT, m);
    size_t *fails = calloc(j->n, sizeof *fails), nfails = 0;
    if (t)
        t->track = calloc(j->n, sizeof *t->track);
    if (!t || !fails || !t->track) {
        /* Without memory nothing is recorded: the recipients are tried again (a duplicate,
         * within the window docs/ims.md names). */
        if (t)
            task_free(t);
        free(fails);
        t = NULL;
    }
    for (size_t k = 0; t && k < j->n; k++) {
        smtp_result na = {.outcome = SMTP_TRANSIENT, .stage = SMTP_STAGE_GREETING, .local = true};
        snprintf(na.enh, sizeof na.enh, "4.4.2");
        snprintf(na.text, sizeof na.text, "not attempted (the connection ended first)");
        apply(q, m, j->ri[k], j->res[k].have ? &j->res[k].r : &na,
              j->res[k].have ? j->res[k].remote : NULL, &t->recs, t->track, &t->ntrack, fails,
              &nfails);
    }
    if (!t) {
        t = task_new(T_COMMIT, m);
        if (!t) {
            /* give up cleanly: the job is dropped; its unit waits for the next start */
            job_free(j);
            if (done)
                done(arg);
            return;
        }
    }
    /* NOTIFY=SUCCESS to a peer without DSN: we say it was relayed (RFC 3461 5.2.2). */
    size_t nrelayed = 0;
    for (size_t k = 0; fails && k < j->n && !j->peer_dsn; k++) {
        unsigned notify = 0;
        const ims_spool_rcpt_rec *r = &m->f.rcpts[j->ri[k]];
        if (j->res[k].have && j->res[k].r.outcome == SMTP_DELIVERED && r->notify &&
            smtp_notify_parse(r->notify, strlen(r->notify), &notify) == SMTP_R_NONE &&
            (notify & SMTP_NOTIFY_SUCCESS))
            fails[nfails + nrelayed++] = j->ri[k];
    }
    if (nrelayed)
        report_post(q, m, fails + nfails, nrelayed, IMS_REPORT_RELAYED);
    t->job = j;
    memcpy(t->tls, j->tls, sizeof t->tls);
    t->done = done;
    t->arg = arg;
    t->unlink = !nfails && finishes(m, j->u);
    if (t->unlink)
        m->removing = true;
    m->busy++;
    post(q, t);
    if (nfails)
        report_post(q, m, fails, nfails, IMS_REPORT_FAILED);
    free(fails);
}

void ims_outq_get_stats(const ims_outq *q, ims_outq_stats *st)
{
    *st = q->st;
}

/* --- open and close ------------------------------------------------------------------------ */

static int open_dir(const char *root, const char *sub, int *fd)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", root, sub);
    if (n < 0 || (size_t)n >= sizeof path)
        return ENAMETOOLONG;
    int rc = base_mkdir_p(path, 0700);
    if (rc)
        return rc;
    *fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *fd < 0 ? errno : 0;
}

int ims_outq_open(const char *root_dir, const ims_outq_options *opt, ims_outq **out)
{
    *out = NULL;
    if (!opt || !opt->settings || !opt->router)
        return EINVAL;
    ims_outq *q = calloc(1, sizeof *q);
    if (!q)
        return ENOMEM;
    q->s = *opt->settings;
    q->spool = opt->spool;
    atomic_init(&q->syncer, ims_spool_recycler(opt->spool));
    q->router = opt->router;
    q->tracking = opt->tracking;
    q->log = opt->log;
    q->ready = opt->ready;
    q->ready_arg = opt->ready_arg;
    q->offset = opt->time_offset;
    snprintf(q->host, sizeof q->host, "%s", opt->host ? opt->host : "localhost");
    snprintf(q->root, sizeof q->root, "%s", root_dir);
    snprintf(q->bad_dir, sizeof q->bad_dir, "%s", opt->bad_dir ? opt->bad_dir : "");
    snprintf(q->store_dir, sizeof q->store_dir, "%s", opt->store_dir ? opt->store_dir : "");
    ims_report_names_from_settings(&q->s, q->host, &q->names);
    q->out_fd = q->archive_fd = q->efd = -1;
    ims_sched_init(&q->sched);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->scan_room, NULL);
    q->work_tail = &q->work;
    q->answers_tail = &q->answers;
    int rc = open_dir(root_dir, "Out", &q->out_fd);
    rc = rc ? rc : open_dir(root_dir, "Out/Archive", &q->archive_fd);
    if (!rc) {
        q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        rc = q->efd < 0 ? errno : 0;
    }
    rc = rc ? rc : ims_pool_start(OQ_SYNC_THREADS, &q->pool);
    if (!rc) {
        rc = pthread_create(&q->thread, NULL, outq_main, q);
        q->running = !rc;
    }
    if (!rc) {
        oq_task *t = task_new(T_SCAN, NULL);
        if (!t)
            rc = ENOMEM;
        else
            post(q, t);
    }
    if (rc) {
        ims_outq_close(q);
        return rc;
    }
    *out = q;
    return 0;
}

void ims_outq_stop(ims_outq *q)
{
    if (!q || !q->running)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_signal(&q->wake);
    pthread_cond_broadcast(&q->scan_room); /* a scan waiting for the loop ends */
    pthread_mutex_unlock(&q->lock);
    pthread_join(q->thread, NULL);
    q->running = false;
}

void ims_outq_close(ims_outq *q)
{
    if (!q)
        return;
    ims_outq_stop(q);
    /* What the thread answered and nobody took: freed (reports spooled but not yet answered
     * are the spool's: it runs their callbacks before it closes, and they only queue). */
    for (oq_task *t = q->answers, *next; t; t = next) {
        next = t->next;
        if (t->kind == T_COMMIT)
            job_free(t->job);
        task_free(t);
    }
    for (oq_task *t = q->work, *next; t; t = next) {
        next = t->next;
        if (t->kind == T_COMMIT)
            job_free(t->job);
        task_free(t);
    }
    ims_sched_fini(&q->sched); /* it touches the nodes: before the messages go */
    for (oq_msg *m = q->msgs, *next; m; m = next) {
        next = m->next;
        msg_free(m);
    }
    for (size_t i = 0; i < OQ_BUCKETS; i++)
        for (ims_outq_dest *d = q->buckets[i], *next; d; d = next) {
            next = d->hnext;
            free(d);
        }
    free(q->loadq);
    if (q->pool)
        ims_pool_stop(q->pool);
    if (q->out_fd >= 0)
        close(q->out_fd);
    if (q->archive_fd >= 0)
        close(q->archive_fd);
    if (q->efd >= 0)
        close(q->efd);
    pthread_cond_destroy(&q->wake);
    pthread_cond_destroy(&q->scan_room);
    pthread_mutex_destroy(&q->lock);
    free(q);
}
