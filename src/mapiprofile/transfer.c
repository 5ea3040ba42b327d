/* transfer.c - mapiprofile export and import: one profile to and from a .reg file, as
 * regedit writes it for the profile's key. An import takes a file that holds exactly one
 * profile and nothing else, and --as renames it by rewriting only the file's key lines. */
#include "mapiprofile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define TRANSFER_ROOT_LONG "HKEY_CURRENT_USER"
#define TRANSFER_HEADER_V5 "Windows Registry Editor Version 5.00"
#define TRANSFER_HEADER_V4 "REGEDIT4"
/* How many diagnostics of a failed import are shown; the rest are counted. */
#define TRANSFER_MAX_DIAGS 10

/* --- export ----------------------------------------------------------------------------- */

int mp_cmd_export(mp_ctx *ctx, const mp_args *a)
{
    const char *file = a->pos[1];
    char *name = mp_canonical_name(ctx, a->pos[0]);
    if (!name)
        return mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "export \"%s\"", a->pos[0]);
    int rc = MP_EXIT_OK;
    mapi_err e = mapi_profile_exists(ctx->mapi, name);
    struct stat st;
    if (e)
        rc = mp_fail(e, MP_ABOUT_PROFILE, "export \"%s\"", a->pos[0]);
    else if (!mp_has(a, MP_EXPORT_FORCE) && lstat(file, &st) == 0)
        rc = mp_error("export \"%s\": %s exists (--force replaces it)", name, file);
    buf path = BUF_INIT, out = BUF_INIT;
    reg_key *key = NULL;
    if (!rc && (buf_printf(&path, "HKCU\\%s\\%s", MAPI_PROFILES_PATH, name) || !buf_cstr(&path)))
        rc = mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "export \"%s\"", name);
    int err = rc ? 0 : reg_key_open_path(ctx->reg, (char *)path.data, REG_READ, &key);
    if (err)
        rc = mp_fail(mapi_err_from_reg(err), MP_ABOUT_PROFILE, "export \"%s\"", name);
    /* The file names the key with the long root name, as regedit writes it. */
    path.len = 0;
    if (!rc && (buf_printf(&path, TRANSFER_ROOT_LONG "\\%s\\%s", MAPI_PROFILES_PATH, name) ||
                !buf_cstr(&path)))
        rc = mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "export \"%s\"", name);
    if (!rc && (err = reg_export(key, (char *)path.data, 0, &out)))
        rc = mp_fail(mapi_err_from_reg(err), MP_ABOUT_PROFILE, "export \"%s\"", name);
    /* 0600: a profile may hold passwords and the like. */
    if (!rc && (err = base_write_file_atomic(file, out.data, out.len, 0600)))
        rc = mp_error("export \"%s\": cannot write %s: %s", name, file, strerror(err));
    if (!rc)
        rc = printf("Profile \"%s\" exported to %s.\n", name, file) < 0;
    reg_key_close(key);
    buf_free(&path);
    buf_free(&out);
    free(name);
    return rc;
}

/* --- reading a .reg file ------------------------------------------------------------------ */

/* A key line of the file and where the profile's name is in it. */
typedef struct key_line {
    size_t name_start; /* offset of the name in the file, bytes */
    size_t name_len;   /* bytes the name takes in the file */
} key_line;

typedef struct reg_scan {
    const uint8_t *data;
    size_t len;
    bool utf16; /* UTF-16LE with BOM; else 8-bit text in code page 1252 */
    char *name; /* the profile's name (UTF-8), from the first key line */
    key_line *keys;
    size_t nkeys;
} reg_scan;

static void scan_free(reg_scan *s)
{
    free(s->name);
    free(s->keys);
}

/* unit_at - the code unit at byte offset off. */
static unsigned unit_at(const reg_scan *s, size_t off)
{
    return s->utf16 ? (unsigned)(s->data[off] | s->data[off + 1] << 8) : s->data[off];
}

/* decode - the text of units [off, off + n bytes) as UTF-8 (appended to out). */
static int decode(const reg_scan *s, size_t off, size_t n, buf *out)
{
    if (s->utf16)
        return base_utf16_to_utf8(s->data + off, n / 2, out);
    buf u = BUF_INIT;
    int rc = base_cp1252_to_utf16(s->data + off, n, &u);
    if (!rc)
        rc = base_utf16_to_utf8(u.data ? u.data : (const uint8_t *)"", u.len / 2, out);
    buf_free(&u);
    return rc;
}

/* encode - UTF-8 text in the file's encoding (appended to out). EILSEQ when code page 1252
 * cannot write it exactly. */
static int encode(const reg_scan *s, const char *text, buf *out)
{
    buf u = BUF_INIT, a = BUF_INIT, back = BUF_INIT;
    int rc = base_utf8_to_utf16(text, strlen(text), &u);
    if (!rc && s->utf16)
        rc = buf_add(out, u.data ? u.data : (const uint8_t *)"", u.len);
    if (!rc && !s->utf16)
        rc = base_utf16_to_cp1252(u.data ? u.data : (const uint8_t *)"", u.len / 2, &a);
    if (!rc && !s->utf16) {
        /* Unmappable characters became '?': check the round trip. */
        reg_scan plain = {a.data ? a.data : (const uint8_t *)"", a.len, false, NULL, NULL, 0};
        rc = decode(&plain, 0, a.len, &back);
        const char *got = rc ? NULL : buf_cstr(&back);
        if (!rc && !got)
            rc = ENOMEM;
        else if (!rc && strcmp(got, text))
            rc = EILSEQ;
        if (!rc)
            rc = buf_add(out, a.data ? a.data : (const uint8_t *)"", a.len);
    }
    buf_free(&u);
    buf_free(&a);
    buf_free(&back);
    return rc;
}

/* units_of - how many bytes UTF-8 text decoded from the file took there. */
static size_t units_of(const reg_scan *s, const char *text, size_t n)
{
    size_t chars = 0, units = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c & 0xc0) == 0x80)
            continue;
        chars++;
        units += c >= 0xf0 ? 2 : 1; /* beyond the BMP: a surrogate pair */
    }
    return s->utf16 ? units * 2 : chars;
}

/* check_key - a key line must name a key of one profile: HKEY_CURRENT_USER (or HKCU)\
 * <Profiles path>\<name>[\...]. Returns NULL when it does, else what is wrong; *name gets
 * the profile's name (a pointer into text, nlen bytes). */
static const char *check_key(const char *text, size_t len, const char **name, size_t *nlen)
{
    if (len > 1 && text[1] == '-')
        return "it deletes a key";
    if (memchr(text, '\0', len))
        return "it holds a NUL character";
    const char *close = NULL;
    for (size_t i = len; i-- > 1;)
        if (text[i] == ']') {
            close = text + i;
            break;
        }
    if (!close)
        return "it is not a key line";
    const char *path = text + 1, *end = close;
    const char *bs = memchr(path, '\\', (size_t)(end - path));
    reg_root root;
    if (!bs || reg_root_parse(path, (size_t)(bs - path), &root) || root != REG_ROOT_HKCU)
        return "the key is not under HKEY_CURRENT_USER\\" MAPI_PROFILES_PATH;
    const char *sub = bs + 1;
    size_t plen = strlen(MAPI_PROFILES_PATH);
    /* The registry ignores trailing backslashes: "...\\Profiles\\" is the Profiles key. */
    while (end > sub && end[-1] == '\\')
        end--;
    if ((size_t)(end - sub) < plen || strncasecmp(sub, MAPI_PROFILES_PATH, plen) ||
        (sub + plen < end && sub[plen] != '\\'))
        return "the key is not under HKEY_CURRENT_USER\\" MAPI_PROFILES_PATH;
    if (sub + plen == end)
        return "the key is the Profiles key itself, not a profile";
    *name = sub + plen + 1;
    const char *stop = memchr(*name, '\\', (size_t)(end - *name));
    *nlen = (size_t)((stop ? stop : end) - *name);
    if (!*nlen)
        return "the key name has an empty part";
    return NULL;
}

/* scan - check a .reg file holds one profile and nothing else, and find its key lines.
 * Returns MP_EXIT_OK or reports the problem. */
static int scan(const char *file, reg_scan *s)
{
    size_t off = 0, unit = 1;
    if (s->len >= 2 && s->data[0] == 0xff && s->data[1] == 0xfe) {
        s->utf16 = true;
        unit = 2;
        off = 2;
    }
    size_t end = s->len - (s->len - off) % unit;
    buf line = BUF_INIT;
    int rc = MP_EXIT_OK;
    unsigned lineno = 0;
    while (off < end && !rc) {
        size_t start = off, stop = off;
        while (stop < end && unit_at(s, stop) != '\r' && unit_at(s, stop) != '\n')
            stop += unit;
        off = stop;
        if (off < end && unit_at(s, off) == '\r')
            off += unit;
        if (off < end && unit_at(s, off) == '\n') /* LF, or the LF of CRLF */
            off += unit;
        lineno++;
        /* Leading spaces and tabs are skipped before the header and every line. */
        size_t first = start;
        while (first < stop && (unit_at(s, first) == ' ' || unit_at(s, first) == '\t'))
            first += unit;
        line.len = 0;
        if (decode(s, first, stop - first, &line) || !buf_cstr(&line)) {
            rc = mp_error("import %s: out of memory", file);
            break;
        }
        const char *text = (const char *)line.data;
        if (lineno == 1) {
            if (strcmp(text, TRANSFER_HEADER_V5) && strcmp(text, TRANSFER_HEADER_V4))
                rc = mp_error("import %s: not a .reg file (its first line must be \"%s\" or "
                              "\"%s\")",
                              file, TRANSFER_HEADER_V5, TRANSFER_HEADER_V4);
            continue;
        }
        /* Every line that opens a key is checked, also one that an importer would skip. */
        if (text[0] != '[')
            continue;
        const char *name;
        size_t nlen;
        const char *why = check_key(text, line.len, &name, &nlen);
        if (why) {
            rc = mp_error("import %s: line %u: %s: %s; the file must hold one profile and "
                          "nothing else: nothing imported",
                          file, lineno, text, why);
            break;
        }
        if (!s->name) {
            if (!(s->name = strndup(name, nlen)))
                rc = mp_error("import %s: out of memory", file);
        } else if (strlen(s->name) != nlen || strncasecmp(s->name, name, nlen)) {
            rc = mp_error("import %s: line %u: the key belongs to profile \"%.*s\", not to \"%s\": "
                          "the file must hold one profile: nothing imported",
                          file, lineno, (int)nlen, name, s->name);
        }
        key_line *k = rc ? NULL : realloc(s->keys, (s->nkeys + 1) * sizeof *k);
        if (!rc && !k)
            rc = mp_error("import %s: out of memory", file);
        if (rc)
            break;
        s->keys = k;
        /* Up to the name the line is ASCII: one unit a byte of the decoded text. */
        size_t before = (size_t)(name - text);
        s->keys[s->nkeys++] = (key_line){first + before * unit, units_of(s, name, nlen)};
    }
    if (!rc && lineno == 0)
        rc = mp_error("import %s: the file is empty", file);
    if (!rc && !s->name)
        rc = mp_error("import %s: the file holds no profile", file);
    buf_free(&line);
    return rc;
}

/* rename_keys - the file with the profile's name in every key line replaced by name. */
static int rename_keys(const reg_scan *s, const char *name, buf *out)
{
    buf enc = BUF_INIT;
    int rc = encode(s, name, &enc);
    size_t off = 0;
    for (size_t i = 0; i < s->nkeys && !rc; i++) {
        const key_line *k = &s->keys[i];
        rc = buf_add(out, s->data + off, k->name_start - off);
        if (!rc)
            rc = buf_add(out, enc.data ? enc.data : (const uint8_t *)"", enc.len);
        off = k->name_start + k->name_len;
    }
    if (!rc)
        rc = buf_add(out, s->data + off, s->len - off);
    buf_free(&enc);
    return rc;
}

/* --- import ------------------------------------------------------------------------------ */

typedef struct import_diag {
    const char *file;
    unsigned n;
} import_diag;

static void import_diag_fn(void *arg, unsigned line, const char *msg)
{
    import_diag *d = arg;
    if (d->n++ < TRANSFER_MAX_DIAGS)
        mp_error("import %s: line %u: %s", d->file, line, msg);
}

/* search_key - the profile's PR_SEARCH_KEY, if it has a well-formed one. */
static bool search_key(mapi_svcadmin *adm, uint8_t key[16])
{
    mapi_prop p;
    if (mapi_section_get_prop(adm, &MAPI_UID_PROFILE_INSTANCE, PR_SEARCH_KEY, &p) != S_OK)
        return false;
    bool ok = p.v.bin.cb == 16;
    if (ok)
        memcpy(key, p.v.bin.lpb, 16);
    mapi_prop_clear(&p);
    return ok;
}

/* key_taken - another live profile has this PR_SEARCH_KEY (the file came from a profile that
 * still exists under another name): the two must not share one identity. */
static bool key_taken(mp_ctx *ctx, const char *self, const uint8_t key[16])
{
    mapi_profile_row *rows;
    size_t n;
    bool taken = false;
    if (mapi_profile_table(ctx->mapi, &rows, &n) != S_OK)
        return false;
    for (size_t i = 0; i < n && !taken; i++) {
        mapi_svcadmin *adm;
        uint8_t other[16];
        if (!strcasecmp(rows[i].name, self) ||
            mapi_admin_services(ctx->mapi, rows[i].name, &adm) != S_OK)
            continue;
        taken = search_key(adm, other) && !memcmp(other, key, 16);
        mapi_svcadmin_release(adm);
    }
    mapi_profile_rows_free(rows, n);
    return taken;
}

/* settle - make the imported profile one of its own: a fresh PR_SEARCH_KEY for a renamed
 * copy, for a profile without one, or for one whose original is still there; the new name
 * in PR_PROFILE_NAME. */
static mapi_err settle(mp_ctx *ctx, const char *name, bool renamed)
{
    mapi_svcadmin *adm;
    mapi_err e = mapi_admin_services(ctx->mapi, name, &adm);
    if (e)
        return e;
    uint8_t key[16];
    if (renamed || !search_key(adm, key) || key_taken(ctx, name, key))
        e = mp_new_search_key(adm);
    mapi_prop old;
    if (!e && renamed &&
        mapi_section_get_prop(adm, &MAPI_UID_GLOBAL, PR_PROFILE_NAME, &old) == S_OK) {
        mapi_prop_clear(&old);
        mapi_prop pn = {.tag = PR_PROFILE_NAME};
        pn.v.str = (char *)name;
        e = mapi_section_set_props(adm, &MAPI_UID_GLOBAL, &pn, 1);
        /* A name code page 1252 cannot spell lives only in the key name (as MAPI does it). */
        if (e == MAPI_E_BAD_CHARWIDTH)
            e = S_OK;
    }
    mapi_svcadmin_release(adm);
    return e;
}

int mp_cmd_import(mp_ctx *ctx, const mp_args *a)
{
    const char *file = a->pos[0], *as = mp_value(a, MP_IMPORT_AS);
    buf data = BUF_INIT, renamed = BUF_INIT;
    int err = base_read_file(file, REG_MAX_IMPORT, &data);
    if (err) {
        buf_free(&data);
        return mp_error("import %s: %s", file,
                        err == EFBIG ? "the file is too large" : strerror(err));
    }
    reg_scan s = {data.data ? data.data : (const uint8_t *)"", data.len, false, NULL, NULL, 0};
    int rc = scan(file, &s);
    const char *target = as ? as : s.name;
    if (!rc && mapi_profile_name_ok(target))
        rc = mp_fail(MAPI_E_INVALID_PARAMETER, as ? MP_ABOUT_TARGET : MP_ABOUT_NEW, "import \"%s\"",
                     target);
    /* MAPI's answer to a name that is taken (CreateProfile, CopyProfile). */
    if (!rc && mapi_profile_exists(ctx->mapi, target) == S_OK)
        rc = mp_fail(MAPI_E_NO_ACCESS, MP_ABOUT_NEW, "import \"%s\"", target);
    const uint8_t *bytes = s.data;
    size_t len = s.len;
    if (!rc && as) {
        err = rename_keys(&s, as, &renamed);
        if (err == EILSEQ)
            rc = mp_error("import %s: --as \"%s\": a REGEDIT4 file is in code page 1252, "
                          "which cannot write that name",
                          file, as);
        else if (err)
            rc = mp_fail(MAPI_E_NOT_ENOUGH_MEMORY, MP_ABOUT_PROFILE, "import \"%s\"", as);
        bytes = renamed.data;
        len = renamed.len;
    }
    if (rc) {
        scan_free(&s);
        buf_free(&data);
        buf_free(&renamed);
        return rc;
    }

    /* From here on the profile exists in part or in full: finish it or remove it. */
    sigset_t held, old;
    mp_hold_signals(&held, &old);
    import_diag diag = {file, 0};
    int sig = mp_pending_signal(&held);
    err = sig ? 0 : reg_import(ctx->reg, bytes, len, 0, import_diag_fn, &diag);
    bool made = !sig && mapi_profile_exists(ctx->mapi, target) == S_OK;
    mapi_err e = S_OK;
    if (err)
        rc = mp_error("import %s: %s", file, reg_strerror(err));
    else if (diag.n)
        rc = mp_error("import %s: %u line%s could not be imported: nothing imported", file, diag.n,
                      diag.n == 1 ? "" : "s");
    else if (!sig && !made)
        rc = mp_fail(MAPI_E_NOT_FOUND, MP_ABOUT_PROFILE, "import \"%s\"", target);
    else if (!sig && !(sig = mp_pending_signal(&held)) && (e = settle(ctx, target, as != NULL)))
        rc = mp_fail(e, MP_ABOUT_PROFILE, "import \"%s\"", target);
    if (!sig)
        sig = mp_pending_signal(&held);
    if (sig) {
        mp_error("interrupted: profile \"%s\" not imported", target);
        rc = MP_EXIT_SIGNAL_BASE + sig;
    }
    if (rc && made && (e = mapi_profile_delete(ctx->mapi, target)))
        mp_fail(e, MP_ABOUT_PROFILE, "the incomplete profile \"%s\" could not be deleted", target);
    if (!rc) {
        if (as)
            printf("Profile \"%s\" imported as \"%s\".\n", s.name, as);
        else
            printf("Profile \"%s\" imported.\n", s.name);
        rc = fflush(stdout) ? MP_EXIT_FAIL : MP_EXIT_OK;
    }
    if (!sig)
        sigprocmask(SIG_SETMASK, &old, NULL);
    scan_free(&s);
    buf_free(&data);
    buf_free(&renamed);
    return rc;
}
