/* client_int.h - lib/smtp's private contract between client.c and downgrade.c: the streaming
 * MIME converter that makes 8-bit message data 7-bit for a peer without 8BITMIME. */
#ifndef IMS_SMTP_CLIENT_INT_H
#define IMS_SMTP_CLIENT_INT_H

#include "smtp/smtp.h"

#define MIME7_CTE_MAX 256 /* a Content-Transfer-Encoding field held until its header ends */

/* mime7_emit_fn - converted output: n bytes continuing the current output line, which ends
 * after them when eol (the line end itself is the writer's to add). */
typedef void (*mime7_emit_fn)(void *arg, const char *p, size_t n, bool eol);

typedef enum mime7_cte {
    M7_CTE_NONE, /* no Content-Transfer-Encoding field */
    M7_CTE_7BIT,
    M7_CTE_8BIT,
    M7_CTE_BINARY,
    M7_CTE_OTHER, /* quoted-printable, base64, unknown, duplicated or unreadable */
} mime7_cte;

typedef enum mime7_type {
    M7_TYPE_LEAF,    /* any leaf type (text/plain when absent) */
    M7_TYPE_MULTI,   /* any multipart type with a usable boundary */
    M7_TYPE_MESSAGE, /* message/rfc822 */
    M7_TYPE_OPAQUE,  /* multipart without a boundary, or an unreadable Content-Type */
} mime7_type;

typedef struct mime7_level {
    char b[SMTP_MIME_BOUNDARY_MAX + 1];
    size_t len;
    unsigned depth; /* of the multipart entity */
} mime7_level;

/* mime7 - the converter's state; embed it and mime7_init it for each message. */
typedef struct mime7 {
    mime7_emit_fn emit;
    void *arg;
    bool declared8; /* the message was declared 8BITMIME */
    int fail;       /* sticky: non-zero once an unconvertible 8-bit byte was seen */

    mime7_level stack[SMTP_MIME_DEPTH_MAX];
    size_t nstack;
    unsigned depth; /* of the current entity */
    bool top;       /* the current entity is the message itself */
    bool in_hdr;    /* in the current entity's header block */
    bool qp;        /* the body is being encoded (else passed, 8-bit refused) */

    /* The header field being assembled: its lines joined by '\n'. */
    char field[SMTP_MIME_FIELD_MAX];
    size_t flen;
    bool fopen; /* a field is being assembled */
    bool fover; /* it outgrew field: the rest passes as it comes */
    char held[MIME7_CTE_MAX];
    size_t hlen;
    bool hold;
    mime7_cte cte;
    mime7_type type;
    char boundary[SMTP_MIME_BOUNDARY_MAX + 1];
    size_t blen;
    bool mimever;

    /* Quoted-printable output line. */
    char qline[SMTP_QP_LINE_MAX + 8];
    size_t qlen;
    int qpend;  /* a space or tab not yet written (it may end the line), or -1 */
    bool qsoft; /* the output line began after a soft break */
} mime7;

/* mime7_init - start a message. */
void mime7_init(mime7 *m, bool declared8, mime7_emit_fn emit, void *arg);
/* mime7_piece - n bytes of one input line (no CR or LF in them): bol when they start the
 * line, eol when it ends after them. Returns 0, or non-zero when 8-bit data that cannot be
 * converted was found (then and ever after: nothing more is emitted). */
int mime7_piece(mime7 *m, const char *p, size_t n, bool bol, bool eol);
/* mime7_end - the end of the data (after the last line's eol). Returns as mime7_piece. */
int mime7_end(mime7 *m);

#endif
