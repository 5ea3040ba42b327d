/* session.c - what the service says on an inbound connection. Until the SMTP server (issue 6)
 * takes this place, every connection is refused with a 421 reply: service not available. */
#include "imsd.h"

#include <string.h>

#define SESSION_REFUSE_SECONDS 10 /* a refused connection is closed by then in any case */
#define SESSION_LINE_MAX 512      /* RFC 5321's limit for a reply line, CRLF included */

/* session_clean - a registry value must not end the reply line early or add another. */
static void session_clean(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

void imsd_session_open(imsd_conn *c)
{
    imsd_server *srv = imsd_conn_server(c);
    char name[sizeof srv->settings->common_name];
    snprintf(name, sizeof name, "%s", srv->settings->common_name);
    session_clean(name);
    char line[SESSION_LINE_MAX];
    int n = snprintf(line, sizeof line,
                     "421 4.3.2 %s Service not available, closing transmission channel\r\n", name);
    srv->stats->conn_in_rejected++;
    if (n < 0 || (size_t)n >= sizeof line || imsd_conn_set_deadline(c, SESSION_REFUSE_SECONDS) ||
        imsd_conn_write(c, line, (size_t)n)) {
        imsd_conn_close(c);
        return;
    }
    imsd_conn_close_when_sent(c);
}

void imsd_session_input(imsd_conn *c, struct evbuffer *in)
{
    (void)c;
    /* Nothing is read on a refused connection. */
    evbuffer_drain(in, evbuffer_get_length(in));
}

void imsd_session_stopping(imsd_conn *c)
{
    /* A refused connection is already closing: nothing to hurry. */
    (void)c;
}

void imsd_session_closed(imsd_conn *c)
{
    /* No session state yet (issue 6 frees its SMTP session here). */
    (void)c;
}
