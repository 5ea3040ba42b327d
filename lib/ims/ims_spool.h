/* ims_spool.h - the inbound spool (RootDir\In) with group commit, delivery from it into the
 * recipients' Maildirs through the gateway's MTS-IN, and the message tracking log.
 * (To be merged into ims.h by its owner; the part marked "internal" then moves to a private
 * header.)
 *
 * Functions return 0 or an errno value and never print or exit. The spool runs two threads
 * of its own (a committer and a deliverer) but calls the caller back only in the caller's
 * thread: ims_spool_fd() becomes readable when something is ready and ims_spool_dispatch()
 * runs the completion callbacks and logs the spool's events there. lib/ims does not depend on
 * an event loop: the program polls the descriptor with its own. */
#ifndef IMS_IMS_SPOOL_H
#define IMS_IMS_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ims/ims.h"

/* Event IDs (source MSExchangeIMC) the spool logs, with the original's numbers. */
#define IMS_EV_SPOOL_RECOVERED 1003   /* start-up recovery summary (ours) */
#define IMS_EV_SPOOL_MOVE_FAILED 4055 /* cannot move a file from Work to In */
#define IMS_EV_SPOOL_OPEN_FAILED 4070 /* a temporary message file could not be written */
#define IMS_EV_SPOOL_ARCHIVED 4117    /* unreadable spool file moved to In\Archive */
#define IMS_EV_SPOOL_DEFERRED 4182    /* delivery into a mailbox failed: retried later */

/* Message tracking event numbers (KB Q173364). */
#define IMS_TRACK_RECEIVED_INBOUND 1012
#define IMS_TRACK_TRANSFERRED_INBOUND 1013

#define IMS_QUEUE_ID_LEN 16           /* upper-case hex digits: seconds, then a counter */
#define IMS_SPOOL_MAX_FIELD 4096      /* bytes of one envelope field (an address, a path) */
#define IMS_SPOOL_MAX_RCPTS 65536     /* recipients of one message */
#define IMS_SPOOL_RETRY_MIN_MS 1000   /* first delivery retry after a failure */
#define IMS_SPOOL_RETRY_MAX_MS 300000 /* the backoff doubles up to this */
#define IMS_SPOOL_IO_THREADS 16       /* threads that do a round's file work together */

/* --- the envelope ----------------------------------------------------------------------- */

/* A recipient as the SMTP server resolved it. Strings must not hold CR, LF or TAB. */
typedef struct ims_rcpt {
    const char *address; /* the forward-path without <> */
    const char *maildir; /* absolute path of the mailbox's Maildir (its new/ gets the copy) */
    const char *notify;  /* DSN NOTIFY= value, or NULL */
    const char *orcpt;   /* DSN ORCPT= value, or NULL */
} ims_rcpt;

typedef struct ims_envelope {
    const char *sender;    /* the reverse-path without <>; "" is the null sender */
    const ims_rcpt *rcpts; /* 1 to IMS_SPOOL_MAX_RCPTS */
    size_t nrcpt;
    const char *client_ip; /* numeric ("192.0.2.1", "2001:db8::1"); NULL: "unknown" */
    const char *helo;      /* the client's HELO/EHLO argument; NULL: "unknown" */
    const char *host;      /* our name in Received; NULL: the spool's host */
    time_t time;           /* when the message was received; 0: now */
    const char *envid;     /* DSN ENVID=, or NULL */
    const char *ret;       /* DSN RET= (FULL or HDRS), or NULL */
} ims_envelope;

/* --- the tracking log ------------------------------------------------------------------- */

/* One file per GMT day, <dir>/yyyymmdd.log, one tab-separated line per event and recipient:
 *   date-time GMT ("2024-05-01 13:45:07 GMT"), event number, queue id, sender ("<>" for the
 *   null sender), recipient, size in bytes (of the content as received), client IP, our host.
 * Each line is one write() on an O_APPEND descriptor, so writers in several threads or
 * processes never interleave inside a line. */
typedef struct ims_tracking ims_tracking;

/* ims_tracking_open - the log in dir (made when missing, mode 0750). Thread-safe. */
int ims_tracking_open(const char *dir, ims_tracking **out);
/* ims_tracking_write - append one line; `when` chooses the file and the first column. Tabs
 * and line breaks in the fields are written as spaces. */
int ims_tracking_write(ims_tracking *t, time_t when, unsigned event, const char *queue_id,
                       const char *sender, const char *rcpt, uint64_t size, const char *client_ip,
                       const char *host);
void ims_tracking_close(ims_tracking *t);

/* --- the spool -------------------------------------------------------------------------- */

typedef struct ims_spool ims_spool;
typedef struct ims_spool_msg ims_spool_msg;

/* done - called once per committed message, in the thread that calls ims_spool_dispatch (or
 * ims_spool_close). err 0: the message is on stable storage under queue_id, answer 250;
 * otherwise an errno value and nothing of it remains: answer 451/452. */
typedef void (*ims_spool_done_fn)(void *arg, int err, const char *queue_id);

typedef struct ims_spool_options {
    /* The gateway mailbox's MTS-IN folder (a Maildir: ".../MSExchangeIMC/.MTS-IN"). NULL: no
     * delivery; committed messages stay in In (a later open with a gateway delivers them). */
    const char *mts_in;
    const char *tracking_dir; /* NULL: no tracking log */
    const char *host;         /* our host name; NULL: gethostname() */
    ims_log *log;             /* events, logged in the dispatching thread; NULL: none */
    bool archive;             /* delivered spool files go to In\Archive instead of away */
    /* Extra time a commit round waits to gather more messages, in microseconds. 0: natural
     * batching only (a round takes whatever arrived while the previous one ran). */
    unsigned commit_window_us;
    unsigned retry_min_ms; /* 0: IMS_SPOOL_RETRY_MIN_MS */
    unsigned retry_max_ms; /* 0: IMS_SPOOL_RETRY_MAX_MS */
    /* Threads that create and sync a round's files together (more concurrent syncs let the
     * block layer merge more cache flushes). 0: IMS_SPOOL_IO_THREADS, also the maximum. */
    unsigned io_threads;
} ims_spool_options;

/* ims_spool_open - the spool under root_dir (its In, Work and In/Archive are made when
 * missing). Recovery first: files in Work (never acknowledged) are deleted; files in In are
 * kept and queued for delivery; a file in In whose header is unknown or corrupt moves to
 * In/Archive (event 4117). Then the committer thread (and, with opt->mts_in, the delivery
 * thread) starts. opt may be NULL (no delivery, no tracking). EBUSY when another spool has
 * root_dir open (a lock on Work, released by the kernel when its holder dies). */
int ims_spool_open(const char *root_dir, const ims_spool_options *opt, ims_spool **out);

/* ims_spool_begin - start a message (after the end of RCPT, at DATA). Copies the envelope.
 * EINVAL for an invalid envelope (no recipient, a field with CR/LF/TAB or too long, a
 * relative Maildir path). No file is made until the content outgrows a memory buffer. */
int ims_spool_begin(ims_spool *sp, const ims_envelope *env, ims_spool_msg **out);
/* ims_spool_write - append content bytes (as the caller wants them stored: the spool does
 * not convert line ends or unstuff dots). Buffered; a full buffer is written to the file in
 * Work (page cache: no sync here). After an error the handle keeps failing with that error
 * and its commit reports it. */
int ims_spool_write(ims_spool_msg *m, const void *data, size_t n);
/* ims_spool_commit - hand the message to the committer; returns at once. done(arg, ...) is
 * called exactly once, by ims_spool_dispatch, after the message is durable (or failed).
 * The handle is gone afterwards. */
void ims_spool_commit(ims_spool_msg *m, ims_spool_done_fn done, void *arg);
/* ims_spool_abort - drop an uncommitted message (its file in Work goes); no callback. */
void ims_spool_abort(ims_spool_msg *m);
/* ims_spool_submit - begin + write + commit of a whole message. Returns 0 (done will be
 * called once) or the error of begin (done will not be called). */
int ims_spool_submit(ims_spool *sp, const ims_envelope *env, const void *data, size_t len,
                     ims_spool_done_fn done, void *arg);

/* ims_spool_fd - readable when ims_spool_dispatch has work (non-blocking eventfd). */
int ims_spool_fd(const ims_spool *sp);
/* ims_spool_dispatch - run the callbacks of finished commits and log queued events, in the
 * caller's thread. Never blocks. Returns the number of callbacks run. */
size_t ims_spool_dispatch(ims_spool *sp);

typedef struct ims_spool_stats {
    uint64_t committed;  /* messages made durable */
    uint64_t failed;     /* commits that failed */
    uint64_t rounds;     /* commit rounds (one directory fsync each) */
    uint64_t file_syncs; /* fdatasync calls on spool files */
    uint64_t dir_syncs;  /* fsync calls on In */
    uint64_t delivered;  /* recipients delivered (or found delivered) */
    uint64_t deferred;   /* recipient deliveries that failed and wait for a retry */
    uint64_t finished;   /* messages delivered to all recipients and removed from In */
    uint64_t queued;     /* messages now waiting for (or in) delivery */
} ims_spool_stats;

/* ims_spool_get_stats - counters since open. Thread-safe. */
void ims_spool_get_stats(ims_spool *sp, ims_spool_stats *st);
/* ims_spool_close - wait for the pending commits (their callbacks run here), stop delivery
 * after its current round (what is left stays in In for the next open), free everything.
 * Every handle from ims_spool_begin must have been committed or aborted. */
void ims_spool_close(ims_spool *sp);

/* --- internal to lib/ims (spool.c, deliver.c) ------------------------------------------- */

/* A spool file as read back. Format (version 1), text lines up to an empty line, then the
 * content, then status records appended by delivery:
 *   IMS-SPOOL 1
 *   id <queue id>           time <unix seconds>      client <ip>     helo <name>
 *   host <our name>         from <reverse-path>      [envid <x>]     [ret <x>]
 *   rcpt <notify|->\t<orcpt|->\t<address>\t<maildir>     (one per recipient, in order)
 *   size <20 digits>        (the content's length)
 *   <empty line> <content> done <index>\n ...         */
typedef struct ims_spool_rcpt_rec {
    char *address, *maildir, *notify, *orcpt; /* notify and orcpt NULL when absent */
    bool done;
} ims_spool_rcpt_rec;

typedef struct ims_spool_file {
    char id[IMS_QUEUE_ID_LEN + 1];
    time_t time;
    char *sender, *client_ip, *helo, *host, *envid, *ret;
    ims_spool_rcpt_rec *rcpts;
    size_t nrcpt;
    uint64_t content_off, content_len; /* where the content is in the file */
    uint64_t file_size;
} ims_spool_file;

/* ims_spool_file_read - parse the spool file open on fd. EBADMSG when it is not a spool file
 * of a known version or is cut short; an errno value for a read error. */
int ims_spool_file_read(int fd, ims_spool_file *f);
void ims_spool_file_free(ims_spool_file *f);
/* ims_spool_id_valid - name is a queue id (IMS_QUEUE_ID_LEN upper-case hex digits). */
bool ims_spool_id_valid(const char *name);

/* The I/O pool: ims_pool_run calls fn(arg, i) for i in [0, n) from the pool's threads and the
 * caller's at once, and returns when all are done. Several callers may run batches at once.
 * ims_pool_sync: fdatasync (fsync when !data_only) of fds[0..n), errs[i] getting 0 or errno.
 * A NULL pool runs everything in the caller. fn must not call ims_pool_run itself. */
typedef struct ims_sync_pool ims_sync_pool;
typedef void (*ims_pool_fn)(void *arg, size_t i);
int ims_pool_start(unsigned threads, ims_sync_pool **out);
void ims_pool_run(ims_sync_pool *p, size_t n, ims_pool_fn fn, void *arg);
/* ims_pool_post - fn(arg, 0) in a pool thread later (now, in the caller, without a pool);
 * ims_pool_stop runs what was posted before it returns. */
void ims_pool_post(ims_sync_pool *p, ims_pool_fn fn, void *arg);
void ims_pool_sync(ims_sync_pool *p, const int *fds, int *errs, size_t n, bool data_only);
void ims_pool_stop(ims_sync_pool *p);

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
    ims_spool_event_fn event;
    void *event_arg;
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
