/* pickup_int.h - lib/ims's private contract between pickup.c (the engine of MTS-OUT and the
 * Pickup directory), dropdir.c and their unit tests: the envelope of an MTS-OUT file, the
 * conversion of content to CRLF lines, the engine's set-up and a dropped file's head. */
#ifndef IMS_PICKUP_INT_H
#define IMS_PICKUP_INT_H

#include <time.h>

#include "base/base.h"
#include "ims/ims.h"

/* A receiver: the Pickup directory's type (ims.h). */
typedef ims_dropdir_rcpt ims_pickup_rcpt;

/* ims_pickup_path - v[0..n), "<addr>" or a bare "addr", as a path of kind. 0 or -1. */
int ims_pickup_path(const char *v, size_t n, smtp_path_kind kind, smtp_path *path);
/* ims_pickup_rcpt_add - v[0..n) appended to *rcpts (*nrcpt of them, grown at powers of two):
 * its mailbox, or, when it is no path a route can be found for, the text with bad set.
 * 0 or ENOMEM. */
int ims_pickup_rcpt_add(ims_pickup_rcpt **rcpts, size_t *nrcpt, const char *v, size_t n);

typedef struct ims_pickup_env {
    char *sender; /* the reverse-path's mailbox; "" is the null sender */
    ims_pickup_rcpt *rcpts;
    size_t nrcpt;
    size_t content_off; /* where the content (the first line after the envelope) starts */
} ims_pickup_env;

/* ims_pickup_parse - the envelope at the start of p[0..n) (eof: n is the whole file). Header
 * names are case-insensitive; a value is "<addr>" or a bare addr, blanks around it ignored.
 * Returns 0 (*out filled: free with ims_pickup_env_free), EAGAIN (the envelope may go on past
 * n: call again with more), EBADMSG (*why: a static text; no X-Sender, two, an X-Sender that
 * is no address, no X-Receiver, a folded envelope line, more than IMS_SPOOL_MAX_RCPTS
 * receivers, more than IMS_PICKUP_ENVELOPE_MAX bytes) or ENOMEM. *out is empty on failure. */
int ims_pickup_parse(const char *p, size_t n, bool eof, ims_pickup_env *out, const char **why);
void ims_pickup_env_free(ims_pickup_env *e);

/* The content's line ends: CRLF and LF become CRLF; a CR not followed by LF, or a NUL, is an
 * error (SMTP refuses both); a last line without its end gets a CRLF. */
typedef struct ims_pickup_conv {
    bool cr;      /* the last byte seen was a CR */
    bool mid;     /* inside a line: bytes since the last line end */
    uint64_t out; /* bytes written */
} ims_pickup_conv;

/* ims_pickup_crlf - convert in[0..n) onto out. 0, EBADMSG or ENOMEM. */
int ims_pickup_crlf(ims_pickup_conv *c, const char *in, size_t n, buf *out);
/* ims_pickup_crlf_end - the end of the content. 0, EBADMSG (a CR last) or ENOMEM. */
int ims_pickup_crlf_end(ims_pickup_conv *c, buf *out);

/* How the engine (pickup.c) is set up: MTS-OUT (ims_pickup_start) or the Pickup directory
 * (ims_dropdir_start). Strings are copied. */
typedef struct ims_pickup_config {
    bool dropdir;          /* the Pickup directory: dropdir.c's parser, head, events */
    const char *watch;     /* where files arrive: MTS-OUT's new/, or Pickup */
    const char *claim;     /* the claim directory (same file system as watch) */
    const char *bad;       /* where bad files go: Bad's new/, or Pickup/Archive */
    const char *store_dir; /* as ims_pickup_options' */
    const char *host;
    ims_spool *spool;
    ims_router *router;
    ims_log *log;
    uint64_t max_size;
    unsigned retry_ms;
} ims_pickup_config;

/* ims_pickup_start_config - start the engine as cf says. As ims_pickup_start. */
int ims_pickup_start_config(const ims_pickup_config *cf, ims_pickup **out);

/* ims_dropdir_head - what goes before a dropped file's message (CRLF lines, appended to out):
 * our Received field, naming the file's owner (uid, and user when not NULL) and its name,
 * dated now; then Date (now), Message-ID (random, @host) and From (sender, when not empty)
 * for those m lacks. 0 or ENOMEM. */
int ims_dropdir_head(const ims_dropdir_msg *m, const char *sender, unsigned long uid,
                     const char *user, const char *host, const char *file, time_t now, buf *out);

#endif
