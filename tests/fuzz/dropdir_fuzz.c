/* dropdir_fuzz.c - libFuzzer target for the Pickup directory's parser: any bytes as a dropped
 * file, read whole or cut where the first byte says (EAGAIN then), with and without the
 * envelope. What parses must be consistent: offsets inside the input, cuts in order within
 * the header section, addresses present, a sender and a recipient unless not needed. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ims/ims.h"
#include "fuzz.h"

static void one(const char *p, size_t n, bool eof, unsigned flags)
{
    ims_dropdir_msg m;
    const char *why;
    int rc = ims_dropdir_parse(p, n, eof, flags, &m, &why);
    if (rc) {
        CHECK(rc == EAGAIN || rc == ENOMEM || (rc == EBADMSG && why));
        CHECK(!eof || rc != EAGAIN);
        return;
    }
    CHECK(m.content_off <= m.header_end && m.header_end <= n);
    size_t prev = m.content_off;
    for (size_t i = 0; i < m.ncut; i++) {
        CHECK(m.cuts[i].off >= prev && m.cuts[i].len > 0);
        prev = m.cuts[i].off + m.cuts[i].len;
        CHECK(prev <= m.header_end);
    }
    for (size_t i = 0; i < m.nrcpt; i++)
        CHECK(m.rcpts[i].address && strlen(m.rcpts[i].address) <= IMS_SPOOL_MAX_FIELD);
    if (!(flags & IMS_DROPDIR_NO_HEADERS))
        CHECK(m.sender && m.nrcpt);
    ims_dropdir_msg_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (!n)
        return 0;
    unsigned flags = d[0] & 3;
    const char *p = (const char *)d + 1;
    size_t len = n - 1;
    one(p, len, true, flags);
    size_t cut = len ? (size_t)d[0] * len / 256 : 0;
    one(p, cut, false, flags);
    return 0;
}
