/* spool_int.h - lib/ims's private contract between the spool's files (spool.c: writing and
 * commit rounds; spoolfile.c: the format; recover.c: start-up recovery; pool.c: the I/O pool),
 * deliver.c and tracking.c, and the unit tests. */
#ifndef IMS_SPOOL_INT_H
#define IMS_SPOOL_INT_H

#include "ims/ims.h"

/* A spool file as read back. Format (version 2), text lines up to an empty line, then the
 * content, then status records appended by the transports:
 *   IMS-SPOOL 2
 *   id <queue id>           time <unix seconds>      client <ip>     helo <name>
 *   host <our name>         from <reverse-path>      [envid <x>]     [ret <x>]
 *   [pickup <name>]         (MTS-OUT: the message's claim file, ims_envelope's pickup)
 *   [dropdir <name>]        (the Pickup directory's claim file, ims_envelope's dropdir; a
 *                            file has at most one of pickup and dropdir)
 *   [tls <protocol> <cipher>]  (the message came under TLS, ims_envelope's tls:
 *                            "tls TLSv1.3 TLS_AES_256_GCM_SHA384"; ims_spool_tls_ok's form)
 *   [auth <account>]        (the client had authenticated as account, ims_envelope's auth)
 *   rcpt <notify|->\t<orcpt|->\t<address>\t<route>   (one per recipient, in order); route:
 *        /<maildir>          a mailbox of ours (IMS_ROUTE_LOCAL)
 *        dns:<domain>        the domain's mail exchangers (IMS_ROUTE_DNS)
 *        smarthost:<spec>    a host (IMS_ROUTE_SMARTHOST; spec as ims_host_parse takes it)
 *   size <20 digits>        (the content's length)
 *   [sum <8 hex> <8 hex>]   (CRC-32C of every byte before these digits, and of the content;
 *                            always the last line when present: files written before it
 *                            existed, or by other tools, have none and are not checked)
 *   <empty line> <content> <status records>
 * Status records, one a line, the last about a recipient telling its state:
 *   done <index>                                        delivered (final)
 *   defer <index>\t<attempts>\t<next try, unix s>\t<text>  a transient failure
 *   fail <index>\t<text>                                 a permanent failure (final)
 *   reported <index>     after fail: its non-delivery report is in the spool (no second one)
 *   delayed <index>      its sender got the delay notice (DelayNotification: once)
 *   hold                 the administrator held the message: nothing is tried
 *   release              ... until this (the last of the two tells; readers before these
 *                        records existed skip both, a line without an index)
 * A defer or fail text is "<remote MTA>|<reply or reason>" (the remote part may be empty): the
 * report needs both.
 * A final state is not undone by a later record. Version 1 is version 2 with only mailboxes
 * and only done records; it is read as such. The optional keys (envid, ret, pickup, dropdir,
 * tls, auth) appear at most once each; a file written before tls and auth existed has
 * neither and reads as plain text without AUTH. */
typedef enum ims_rcpt_state {
    IMS_RCPT_PENDING,  /* nothing recorded yet */
    IMS_RCPT_DEFERRED, /* failed for now: attempts, next_try and last say how */
    IMS_RCPT_DONE,     /* delivered */
    IMS_RCPT_FAILED,   /* failed for good: last says why */
} ims_rcpt_state;

typedef struct ims_spool_rcpt_rec {
    char *address, *notify, *orcpt; /* notify and orcpt NULL when absent */
    ims_route_kind route;
    char *maildir; /* LOCAL: the Maildir; NULL otherwise */
    char *dest;    /* DNS: the domain; SMARTHOST: the host spec; NULL for LOCAL */
    bool done;     /* state == IMS_RCPT_DONE */
    ims_rcpt_state state;
    unsigned attempts;  /* DEFERRED: failed tries so far */
    time_t next_try;    /* DEFERRED: not before (unix seconds) */
    char *last;         /* DEFERRED, FAILED: the last reply or reason; NULL otherwise */
    bool reported;      /* FAILED and its NDR spooled ("reported") */
    bool delay_noticed; /* the delay notice was sent ("delayed") */
} ims_spool_rcpt_rec;

/* ims_append_whole - append n bytes (whole lines: status records of a spool file, a tracking
 * or protocol log line) to a file open with O_APPEND by its only writer, all or nothing. An
 * append that fails halfway (ENOSPC after a short write, say) is cut off again: a torn last
 * line would otherwise join the next append's first line into one that does not parse, and
 * that record would be lost too. Returns 0 or an errno value (the file is then as it was,
 * unless the truncation failed as well). */
int ims_append_whole(int fd, const void *p, size_t n);

/* ims_spool_status_format - the status record for recipient index into out: state DONE,
 * DEFERRED (with attempts, next_try and text) or FAILED (with text). text is cut to fit one
 * line; CR, LF and TAB in it become spaces. Returns 0, EINVAL (PENDING) or ENOMEM. */
int ims_spool_status_format(buf *out, size_t index, ims_rcpt_state state, unsigned attempts,
                            time_t next_try, const char *text);

typedef struct ims_spool_file {
    unsigned version; /* 1 or 2, as the file says */
    char id[IMS_QUEUE_ID_LEN + 1];
    time_t time;
    char *sender, *client_ip, *helo, *host, *envid, *ret;
    char *pickup;  /* MTS-OUT's claim name, or NULL */
    char *dropdir; /* the Pickup directory's claim name, or NULL */
    char *tls;     /* "<protocol> <cipher>" when it came under TLS, or NULL */
    char *auth;    /* the authenticated account, or NULL */
    bool held;     /* the last of "hold" and "release" was hold */
    ims_spool_rcpt_rec *rcpts;
    size_t nrcpt;
    uint64_t content_off, content_len; /* where the content is in the file */
    bool has_sum;                      /* a sum line: ims_spool_file_verify can check it */
    uint32_t env_sum, body_sum;
    uint64_t sum_off; /* the envelope's checksum covers the bytes before this offset */
    uint64_t file_size;
} ims_spool_file;

#define SPOOL_MAGIC "IMS-SPOOL 2"
#define SPOOL_MAGIC_V1 "IMS-SPOOL 1"        /* read as version 2 with mailboxes and done records */
#define SPOOL_STATUS_TEXT_MAX 1024          /* bytes of a status record's text */
#define SPOOL_MAGIC_PREFIX "IMS-SPOOL "     /* any version: a newer one is "unknown", not "bad" */
#define SPOOL_SIZE_DIGITS 20                /* the size field is fixed-width: patched at commit */
#define SPOOL_SUM_BLANK "00000000 00000000" /* the sum line's digits before the commit */

/* ims_spool_status_split - a status record's text "<remote>|<reply or reason>" (outq.c; the
 * reports' Remote-MTA, Diagnostic-Code and Status come from it): the remote part into remote
 * (rn bytes, cut to fit; "" without a '|'), *diag pointing into text after the '|', *code the
 * reply's code (0 for ours), enh the enhanced code the reply starts with when it is
 * well-formed (class 2, 4 or 5, "c.sss.ddd", RFC 3463 2), else "<class>.0.0" with the class
 * of the code when it is 2, 4 or 5, else 5 (permanent) or 4. text NULL counts as "". Allocates
 * nothing. */
void ims_spool_status_split(const char *text, bool permanent, char *remote, size_t rn,
                            const char **diag, unsigned *code, char enh[SMTP_ENH_MAX + 1]);

/* ims_spool_field_ok - s fits on its line of the spool file and in a header: no CR, LF or
 * tab, at most IMS_SPOOL_MAX_FIELD bytes, empty only when may_be_empty. */
bool ims_spool_field_ok(const char *s, bool may_be_empty);

/* ims_spool_pickup_name_ok - name can be a claim file's name: a field, not empty, no '/',
 * not starting with '.'. */
bool ims_spool_pickup_name_ok(const char *name);

/* ims_spool_tls_ok - s can be the tls field: "<protocol> <cipher>", two words of printable
 * ASCII, one space between, none of '(', ')' and '\\' in them (Received puts them in a
 * comment, RFC 5322 3.2.2), at most IMS_SPOOL_MAX_FIELD bytes. */
bool ims_spool_tls_ok(const char *s);

/* ims_spool_received_with - the protocol Received names for f (RFC 3848): "ESMTP", "ESMTPS"
 * (tls), "ESMTPA" (auth) or "ESMTPSA" (both). */
const char *ims_spool_received_with(const ims_spool_file *f);
/* ims_spool_received_tls - append Received's line about TLS for f, as Postfix writes it
 * between the from and the by clauses: "\t(using TLSv1.3 with cipher
 * TLS_AES_256_GCM_SHA384)" and eol. Nothing when f came in plain text. 0 or ENOMEM. */
int ims_spool_received_tls(const ims_spool_file *f, const char *eol, buf *out);

/* ims_spool_file_read - parse the spool file open on fd. EBADMSG when it is not a spool file
 * of a known version or is cut short; an errno value for a read error. */
int ims_spool_file_read(int fd, ims_spool_file *f);
/* ims_spool_file_verify - 0 when f (read from fd) has no sum line or its checksums match the
 * bytes in the file; EBADMSG when they do not (written only in part: the service stopped
 * while committing it, before any acknowledgement; or damaged since); an errno value for a
 * read error. Reads the whole envelope and content. */
int ims_spool_file_verify(int fd, const ims_spool_file *f);
/* ims_spool_file_verify_envelope - as ims_spool_file_verify for the envelope only (a few
 * hundred bytes: cheap where the content is not read, as at the outbound queue's start). */
int ims_spool_file_verify_envelope(int fd, const ims_spool_file *f);
/* ims_spool_body_ok - the content of f, as read into memory (len bytes), matches its checksum
 * (true as well when f has no sum line). */
bool ims_spool_body_ok(const ims_spool_file *f, const char *content, size_t len);
/* ims_spool_report_original - the original of a report on f (open on fd), its content read
 * through rf (filled here; both must outlive o's use). */
void ims_spool_report_original(const ims_spool_file *f, int fd, ims_report_fd *rf,
                               ims_report_original *o);
void ims_spool_file_free(ims_spool_file *f);
/* ims_spool_id_valid - name is a queue id (IMS_QUEUE_ID_LEN upper-case hex digits). */
bool ims_spool_id_valid(const char *name);

/* Recovery (recover.c): ims_spool_recover deletes every file in Work (none was acknowledged)
 * and lists in ids (sorted: ids start with the time) the spool files of In, moving files that
 * are not spool files to In/Archive (event 4117 each; root names RootDir in the texts).
 * *removed and *archived count them. ids->ids is the caller's to free. 0 or an errno value. */
typedef struct ims_id_list {
    char (*ids)[IMS_QUEUE_ID_LEN + 1];
    size_t n, cap;
} ims_id_list;
int ims_spool_recover(int work_fd, int in_fd, const char *root, ims_log *log, ims_id_list *ids,
                      size_t *removed, size_t *archived);

/* The I/O pool: ims_pool_run calls fn(arg, i) for i in [0, n) from the pool's threads and the
 * caller's at once, and returns when all are done. Several callers may run batches at once.
 * ims_pool_sync: fdatasync (fsync when !data_only) of fds[0..n), errs[i] getting 0 or errno.
 * With anchor >= 0 (a descriptor its user keeps open for its life) and at least
 * IMS_POOL_SYNCFS_MIN of fds on anchor's file system, those are made durable by one
 * syncfs(anchor) instead, data and metadata (names in directories too) alike, each getting
 * its result; the rest are synced one by one. anchor -1: always one by one. Returns true
 * when such a syncfs succeeded: then everything on anchor's file system written or renamed
 * before the call is durable, directories included.
 * A NULL pool runs everything in the caller. fn must not call ims_pool_run itself. */
#define IMS_POOL_SYNCFS_MIN 2 /* one fdatasync of a lone file costs less than a syncfs */
typedef struct ims_sync_pool ims_sync_pool;
typedef void (*ims_pool_fn)(void *arg, size_t i);
int ims_pool_start(unsigned threads, ims_sync_pool **out);
void ims_pool_run(ims_sync_pool *p, size_t n, ims_pool_fn fn, void *arg);
/* ims_pool_post - fn(arg, 0) in a pool thread later (now, in the caller, without a pool);
 * ims_pool_stop runs what was posted before it returns. */
void ims_pool_post(ims_sync_pool *p, ims_pool_fn fn, void *arg);
bool ims_pool_sync(ims_sync_pool *p, int anchor, const int *fds, int *errs, size_t n,
                   bool data_only);
typedef struct ims_recycler ims_recycler;
/* ims_pool_sync_shared - ims_pool_sync for a writer beside the committer: when anchor is on
 * the file system r's syncs cover, everything on it written before the call is made durable
 * by one of r's syncs that comes within share_ms (the committer's rounds) or, failing that,
 * by one syncfs(anchor) of its own, numbered in r so that others may share it; each of fds on
 * that file system then gets its own write-back error (sync_file_range's wait), the rest are
 * synced one by one in the pool. It syncs even when n is 0 (a round of removals alone).
 * r NULL or another file system: ims_pool_sync. Returns true when that whole-file-system sync
 * succeeded (then directories on it are durable too). */
bool ims_pool_sync_shared(ims_sync_pool *p, ims_recycler *r, unsigned share_ms, int anchor,
                          const int *fds, int *errs, size_t n, bool data_only);
void ims_pool_stop(ims_sync_pool *p);

/* The recycler (recycle.c): files of finished messages kept in Work for new ones, and the
 * sequence of In's fsyncs (whoever makes them: the committer every round, the deliverer when
 * nobody did for a while), which tells when a file's leaving In is durable.
 * - The deliverer moves a finished spool file from In to Work under a name from
 *   ims_recycler_reserve (0, or ENOSPC when max files wait already: it then removes the file
 *   as before) and hands it over with ims_recycler_put with its size (over
 *   IMS_RECYCLE_KEEP_BYTES, or with no room, it is removed instead). It stays pending (its
 *   content intact: a crash may still bring it back into In) until an In sync begun after the
 *   put succeeds; then it is free.
 * - Every sync of In is bracketed: seq = ims_recycler_sync_begin, then
 *   ims_recycler_sync_end(seq, succeeded) (which frees what it covers). Outside file_syncs
 *   they are syncfs() calls of RootDir's file system, so they cover every write to it.
 *   ims_recycler_mark returns the sequence number of the next sync to begin,
 *   ims_recycler_covered whether a sync with at least that number has succeeded and no sync
 *   failed after the mark (a failure may have reported, to its caller alone, the write-back
 *   error of a change made before it ended): a change made before mark is durable once
 *   covered. A pending file put before a failure is never freed (it is removed at the end).
 *   ims_recycler_wait_covered waits at most ms for that, and only when a commit round's
 *   sync began within the last ms (false: not covered, sync yourself). The committer begins
 *   its rounds' syncs with ims_recycler_round_begin, every other writer with
 *   ims_recycler_sync_begin: both are numbered alike and cover alike, but only rounds say
 *   that another sync is coming soon.
 *   ims_spool_recycler returns the spool's, for other writers on RootDir's file system (the
 *   outbound queue), or NULL when its syncs are no syncfs (file_syncs);
 *   ims_recycler_same_fs whether fd is on the file system its syncs cover.
 * - ims_recycler_adopt does the same for another writer's finished file: dir_fd/name (a
 *   single-linked regular file of at most IMS_RECYCLE_KEEP_BYTES, on r's file system) is
 *   moved into Work and put (0), or left where it is with an errno value (ENOSPC: no room;
 *   EFBIG: not a file to keep), for the caller to remove as before. Its leaving dir_fd must
 *   be made durable by a sync of r like any other.
 * - ims_recycler_take opens a free file for writing at offset 0, not emptied (its name in
 *   Work in name, its size in *size: the writer must cut what it does not overwrite), or
 *   returns -1 when there is none.
 * Thread-safe. Start-up recovery removes what is left in Work. A NULL recycler keeps no files
 * and covers nothing. new: 0 or ENOMEM; free: removes the files it holds (work_fd must still
 * be open) and frees r; the caller's work_fd stays open. */
#define IMS_RECYCLE_PREFIX "free."
#define IMS_RECYCLE_NAME 24
#define IMS_RECYCLE_MAX 256           /* files kept for reuse, pending or free */
#define IMS_RECYCLE_KEEP_BYTES 131072 /* bigger files are not kept */
int ims_recycler_new(int work_fd, size_t max, ims_recycler **out);
int ims_recycler_reserve(ims_recycler *r, char name[IMS_RECYCLE_NAME]);
void ims_recycler_put(ims_recycler *r, const char *name, uint64_t size);
int ims_recycler_adopt(ims_recycler *r, int dir_fd, const char *name);
uint64_t ims_recycler_mark(ims_recycler *r);
bool ims_recycler_covered(ims_recycler *r, uint64_t need);
bool ims_recycler_wait_covered(ims_recycler *r, uint64_t need, unsigned ms);
bool ims_recycler_same_fs(ims_recycler *r, int fd);
uint64_t ims_recycler_sync_begin(ims_recycler *r);
uint64_t ims_recycler_round_begin(ims_recycler *r);
void ims_recycler_sync_end(ims_recycler *r, uint64_t seq, bool ok);
int ims_recycler_take(ims_recycler *r, char name[IMS_RECYCLE_NAME], uint64_t *size);
void ims_recycler_stats(ims_recycler *r, uint64_t *kept, uint64_t *reused);
void ims_recycler_free(ims_recycler *r);
ims_recycler *ims_spool_recycler(ims_spool *sp);

/* The delivery thread. Events go through event() (spool.c queues them for dispatch). */
typedef void (*ims_spool_event_fn)(void *arg, unsigned id, ims_category cat, ims_severity sev,
                                   unsigned level, const char *text);
typedef struct ims_deliver_config {
    const char *root_dir;
    const char *mts_in;
    bool archive;
    unsigned retry_min_ms, retry_max_ms;
    ims_tracking *tracking; /* may be NULL */
    ims_sync_pool *pool;    /* may be NULL: syncs one after another */
    bool file_syncs;        /* ims_spool_options' */
    ims_recycler *recycler; /* finished spool files go back through it; NULL: unlinked */
    int work_fd;            /* Work, where recycled files wait (with a recycler) */
    ims_spool_event_fn event;
    void *event_arg;
    /* The outbound queue's: when set, a message whose mailboxes have their copies and whose
     * other recipients are pending moves to RootDir's Out, then handover(arg, qid) is
     * called from the delivery thread. */
    void (*handover)(void *arg, const char *qid);
    void *handover_arg;
    const ims_report_names *report_names; /* receipts (ims_spool_options'), or NULL */
    void (*receipt)(void *arg, const char *sender, const void *data, size_t len);
    void *receipt_arg;
} ims_deliver_config;

typedef struct ims_deliverer ims_deliverer;
/* ims_deliverer_start - open the folders, remove MTS-IN leftovers whose spool file is gone,
 * start the thread. */
int ims_deliverer_start(const ims_deliver_config *cfg, ims_deliverer **out);
/* ims_deliverer_enqueue - queue In/<qid>; recovered: it was in In at start (look in cur/ too
 * before delivering, in case a mail reader moved an earlier copy there). */
int ims_deliverer_enqueue(ims_deliverer *d, const char *qid, bool recovered);
/* ims_deliverer_stats - fill the delivery counters of st. */
void ims_deliverer_stats(ims_deliverer *d, ims_spool_stats *st);
/* ims_deliverer_stop - finish the current round, join, free. */
void ims_deliverer_stop(ims_deliverer *d);

#endif
