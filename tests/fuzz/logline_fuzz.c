/* logline_fuzz.c - libFuzzer target for the tracking log's and the protocol log's writers fed
 * what peers control (addresses, HELO names, replies, commands, content): each line written
 * must stay one line of the format, within its bound, and the tracking line must read back
 * (ims_track_parse) as the fields written, tabs and line breaks made spaces. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ims/ims.h"
#include "fuzz.h"

#define MAX_FILE (1u << 20)

static char dir[64];

/* slurp - the one file in dir into p (up to size-1 bytes, NUL after); its length. The file
 * is removed, so every input starts from an empty log. */
static size_t slurp(char *p, size_t size)
{
    DIR *dh = opendir(dir);
    CHECK(dh);
    size_t len = 0;
    int files = 0;
    for (struct dirent *e; (e = readdir(dh));) {
        if (e->d_name[0] == '.')
            continue;
        char path[128];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY);
        CHECK(fd >= 0);
        ssize_t r;
        while ((r = read(fd, p + len, size - 1 - len)) > 0)
            len += (size_t)r;
        close(fd);
        unlink(path);
        files++;
    }
    closedir(dh);
    CHECK(files <= 1);
    p[len] = 0;
    return len;
}

/* expect - what put_field writes of s: to its NUL, cut at IMS_TRACK_FIELD_MAX, tab, CR and
 * LF as spaces. */
static void expect(const char *s, char *out)
{
    size_t k = 0;
    for (; s && *s && k < IMS_TRACK_FIELD_MAX; s++)
        out[k++] = *s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s;
    out[k] = 0;
}

/* tracking - fields from the input split at NUL bytes: [8 bytes time][4 event][8 size] then
 * qid, sender, rcpt, client, host, tls, remote, reply, message-id, ref, actor. */
static void tracking(const uint8_t *d, size_t n)
{
    if (n < 20)
        return;
    uint64_t when, size;
    uint32_t event;
    memcpy(&when, d, 8);
    memcpy(&event, d + 8, 4);
    memcpy(&size, d + 12, 8);
    d += 20, n -= 20;
    char *text = malloc(n + 1);
    CHECK(text);
    memcpy(text, d, n);
    text[n] = 0;
    const char *f[11] = {0};
    char *p = text;
    for (size_t i = 0; i < 11 && p <= text + n; i++) {
        f[i] = p;
        p += strlen(p) + 1;
    }
    ims_track_line l = {.when = (time_t)(when % 253402300800u), /* years 1970 to 9999 */
                        .event = event % 1000001,
                        .qid = f[0],
                        .sender = f[1],
                        .rcpt = f[2],
                        .size = size,
                        .client = f[3],
                        .host = f[4],
                        .tls = f[5],
                        .remote = f[6],
                        .reply = f[7],
                        .message_id = f[8],
                        .ref = f[9],
                        .actor = f[10]};
    ims_tracking *t;
    CHECK(ims_tracking_open(dir, &t) == 0);
    CHECK(ims_tracking_put(t, &l) == 0);
    ims_tracking_close(t);
    static char line[IMS_TRACK_LINE_MAX + 2];
    size_t len = slurp(line, sizeof line);
    /* One line: its only LF the last byte, no CR or NUL, within the bound. */
    CHECK(len >= 1 && len <= IMS_TRACK_LINE_MAX && line[len - 1] == '\n');
    CHECK(strlen(line) == len && memchr(line, '\n', len) == line + len - 1 && !strchr(line, '\r'));
    size_t tabs = 0;
    for (size_t i = 0; i < len; i++)
        tabs += line[i] == '\t';
    CHECK(tabs >= 7 && tabs <= IMS_TRACK_FIELDS - 1);
    ims_track_line r;
    CHECK(ims_track_parse(line, len - 1, &r) == 0);
    CHECK(r.when == l.when && r.event == l.event && r.size == l.size);
    static char want[IMS_TRACK_FIELD_MAX + 1];
    const char *in[] = {l.qid,    l.rcpt,  l.client,     l.host, l.tls,
                        l.remote, l.reply, l.message_id, l.ref,  l.actor};
    const char *out[] = {r.qid,    r.rcpt,  r.client,     r.host, r.tls,
                         r.remote, r.reply, r.message_id, r.ref,  r.actor};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        expect(in[i], want);
        CHECK(!strcmp(out[i], want));
    }
    expect(l.sender && *l.sender ? l.sender : "<>", want);
    CHECK(!strcmp(r.sender, want));
    free(text);
}

/* protolog - a connection's records: [kind][length][bytes] each, kind 0 a command, 1 reply
 * bytes, 2 content bytes (both split into lines by the writer). */
static void protolog(const uint8_t *d, size_t n)
{
    ims_protolog *pl;
    CHECK(ims_protolog_create(dir, IMS_LEVEL_MAXIMUM, &pl) == 0);
    ims_protolog_conn *c;
    CHECK(ims_protolog_begin(pl, 42, "192.0.2.1:4711", "192.0.2.2:25", &c) == 0 && c);
    size_t records = 1, replies = 0, contents = 0, cmds = 0;
    bool dpend = false;
    while (n >= 2) {
        unsigned kind = d[0] % 3;
        size_t len = d[1] * 4u;
        d += 2, n -= 2;
        if (len > n)
            len = n;
        if (kind == 0) {
            ims_protolog_command(c, (const char *)d, len);
            cmds++;
        } else {
            size_t lf = 0;
            for (size_t i = 0; i < len; i++)
                lf += d[i] == '\n';
            if (kind == 1) {
                ims_protolog_reply(c, (const char *)d, len);
                replies += lf;
            } else {
                ims_protolog_content(c, (const char *)d, len);
                contents += lf;
                if (len)
                    dpend = d[len - 1] != '\n';
            }
        }
        d += len, n -= len;
    }
    ims_protolog_end(c, "QUIT");
    ims_protolog_close(pl);
    records += cmds + replies + contents + (dpend ? 1 : 0) + 1;
    static char file[MAX_FILE];
    size_t len = slurp(file, sizeof file);
    CHECK(len < sizeof file - 1);
    /* Every record one line: "<date> GMT\t42\t<mark>\t<text>", the text without control
     * characters and within IMS_PROTOLOG_LINE_MAX, marks in the order written. */
    size_t seen = 0, cnt[256] = {0};
    for (char *p = file, *nl; p < file + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(file + len - p));
        CHECK(nl);
        size_t ll = (size_t)(nl - p);
        CHECK(ll > 27 && !memcmp(p + 19, " GMT\t42\t", 8) && p[28] == '\t');
        unsigned char mark = (unsigned char)p[27];
        CHECK(seen || mark == '+');
        CHECK(strchr("+<>D-", mark));
        CHECK(mark != '-' || nl + 1 == file + len);
        const char *t = p + 29;
        CHECK((size_t)(nl - t) <= IMS_PROTOLOG_LINE_MAX);
        for (; t < nl; t++)
            CHECK((unsigned char)*t >= 0x20 && *t != 0x7f);
        for (size_t i = 0; i < 19; i++)
            CHECK(p[i] >= '0' || p[i] == '-' || p[i] == ' ' || p[i] == ':');
        cnt[mark]++;
        seen++;
    }
    CHECK(seen == records);
    CHECK(cnt['<'] == cmds && cnt['>'] == replies && cnt['D'] == contents + (dpend ? 1 : 0));
    CHECK(cnt['+'] == 1 && cnt['-'] == 1);
}

/* rm_dir - the (empty) log directory, at exit. */
static void rm_dir(void)
{
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/logline_fuzz.XXXXXX");
        CHECK(mkdtemp(dir));
        atexit(rm_dir);
    }
    if (n == 0)
        return 0;
    if (d[0] & 1)
        protolog(d + 1, n - 1);
    else
        tracking(d + 1, n - 1);
    return 0;
}
