/* pickup_int.h - lib/ims's private contract between pickup.c and its unit tests: the
 * envelope of an MTS-OUT file and the conversion of its content to CRLF lines. */
#ifndef IMS_PICKUP_INT_H
#define IMS_PICKUP_INT_H

#include "ims/ims.h"

typedef struct ims_pickup_rcpt {
    char *address; /* the mailbox ("local@domain", "postmaster"); when bad, the value as
                    * written with control characters as '?' (for the event) */
    bool bad;      /* not an address a route can be found for (syntax, a literal domain) */
} ims_pickup_rcpt;

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

#endif
