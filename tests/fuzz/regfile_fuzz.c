/* regfile_fuzz.c - libFuzzer target for the .reg parser and writer: every event of the input is
 * re-written with the writer (versions 5 and 4), and the version 5 file must parse back, without
 * a single diagnostic, to exactly the same keys and values. Event lines must be in file order. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reg/regfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

typedef struct fz {
    buf trace; /* keys and values, as binary records */
    buf v5;    /* the events re-written, when write is set */
    buf v4;
    bool write;
    unsigned diags;
    unsigned line; /* of the last event */
} fz;

/* fz_record - append a length-prefixed field to the trace. */
static void fz_record(buf *t, const void *p, size_t n)
{
    uint64_t len = n;
    if (buf_add(t, &len, sizeof len) || buf_add(t, p, n))
        abort();
}

/* fz_line - events come after the header line, in file order. */
static void fz_line(fz *f, unsigned line)
{
    if (line < 2 || line < f->line)
        abort();
    f->line = line;
}

/* fz_canonical_sz - REG_SZ data that the writer's quoted form keeps whole: text without NULs
 * plus one terminator. Other REG_SZ data is cut on export, as on Windows. */
static bool fz_canonical_sz(const uint8_t *d, size_t n)
{
    if (n < 2 || n % 2 || d[n - 2] || d[n - 1])
        return false;
    for (size_t i = 0; i + 2 < n; i += 2)
        if (!d[i] && !d[i + 1])
            return false;
    return true;
}

static int fz_key(void *arg, unsigned line, const char *path)
{
    fz *f = arg;
    fz_line(f, line);
    fz_record(&f->trace, "K", 1);
    fz_record(&f->trace, path, strlen(path));
    if (f->write) {
        if (regfile_write_key(&f->v5, 5, path) || regfile_write_key(&f->v4, 4, path))
            abort();
    }
    return 0;
}

static int fz_value(void *arg, unsigned line, const char *name, uint32_t type, const uint8_t *data,
                    size_t len)
{
    fz *f = arg;
    fz_line(f, line);
    if (!data || len > REG_MAX_DATA)
        abort();
    if (type == REG_SZ && !fz_canonical_sz(data, len))
        return 0;
    fz_record(&f->trace, "V", 1);
    fz_record(&f->trace, name ? name : "", name ? strlen(name) + 1 : 0);
    fz_record(&f->trace, &type, sizeof type);
    fz_record(&f->trace, data, len);
    if (f->write) {
        if (regfile_write_value(&f->v5, 5, name, type, data, len) ||
            regfile_write_value(&f->v4, 4, name, type, data, len))
            abort();
    }
    return 0;
}

static int fz_delete(void *arg, unsigned line, const char *path)
{
    fz_line(arg, line);
    if (!path || (path[0] != 'H' && path[0] != 'h'))
        abort();
    return 0;
}

static int fz_delete_value(void *arg, unsigned line, const char *name)
{
    (void)name;
    fz_line(arg, line);
    return 0;
}

static void fz_diag(void *arg, unsigned line, const char *msg)
{
    fz *f = arg;
    if (!line || !msg)
        abort();
    f->diags++;
}

static const regfile_sink fz_sink = {fz_key, fz_delete, fz_value, fz_delete_value, fz_diag};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    fz first = {BUF_INIT, BUF_INIT, BUF_INIT, true, 0, 0};
    enum regfile_format fmt;
    if (regfile_write_header(&first.v5, 5) || regfile_write_header(&first.v4, 4))
        abort();
    int rc = regfile_parse(d, n, &fz_sink, &first, &fmt);
    if (rc != ERROR_SUCCESS && rc != ERROR_INVALID_DATA)
        abort();
    if (regfile_write_end(&first.v5, 5) || regfile_write_end(&first.v4, 4))
        abort();

    fz again = {BUF_INIT, BUF_INIT, BUF_INIT, false, 0, 0};
    if (regfile_parse(first.v5.data, first.v5.len, &fz_sink, &again, &fmt) != ERROR_SUCCESS ||
        fmt != REGFILE_V5 || again.diags)
        abort();
    if (again.trace.len != first.trace.len ||
        (first.trace.len && memcmp(again.trace.data, first.trace.data, first.trace.len)))
        abort();

    /* The version 4 file is lossy (CP1252); it must still parse. */
    fz v4 = {BUF_INIT, BUF_INIT, BUF_INIT, false, 0, 0};
    if (regfile_parse(first.v4.data, first.v4.len, &fz_sink, &v4, &fmt) != ERROR_SUCCESS ||
        fmt != REGFILE_V4)
        abort();

    buf_free(&first.trace);
    buf_free(&first.v5);
    buf_free(&first.v4);
    buf_free(&again.trace);
    buf_free(&v4.trace);
    return 0;
}
