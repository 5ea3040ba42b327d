/* mapisvc.c - the MAPISVC.INF reader (the catalogue of message services, their providers and
 * the property entries CreateMsgService copies into a profile) and where the catalogue is. */
#include "mapi/mapi.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#ifndef IMS_DATADIR
#define IMS_DATADIR "/usr/local/share/ims"
#endif

#define MAPISVC_MAX_SECTIONS 1024 /* sections of one file; later ones are ignored */
#define MAPISVC_MAX_ENTRIES 256   /* entries of one section, and names in one list */
#define MAPISVC_DIAG_MAX 512      /* bytes of one diagnostic message */
#define MAPISVC_HASH_SLOTS 2048   /* open addressing for section names: > 2 x the limit */
_Static_assert(MAPISVC_HASH_SLOTS >= 2 * MAPISVC_MAX_SECTIONS &&
                   (MAPISVC_HASH_SLOTS & (MAPISVC_HASH_SLOTS - 1)) == 0,
               "the section table has free slots and a power-of-two size");

/* One section as parsed: the public part and where its parts came from. */
typedef struct svc_sect {
    mapisvc_section pub;
    unsigned line;           /* of its first header */
    unsigned providers_line; /* of its Providers= entry, 0 when none */
    unsigned sections_line;  /* of its Sections= entry */
    size_t nentries;         /* entries counted against MAPISVC_MAX_ENTRIES */
    bool full_reported;
} svc_sect;

/* A name list of [Services] or [Default Services]. */
typedef struct svc_list {
    char **names;
    char **displays;
    unsigned *lines;
    size_t n;
    bool full_reported;
} svc_list;

struct mapisvc {
    svc_list services;
    svc_list defaults;
    svc_sect *sects;
    size_t nsects;
    size_t cap;
    uint16_t slots[MAPISVC_HASH_SLOTS]; /* section index + 1 by name hash, 0 when free */
};

typedef enum where {
    IN_NOTHING,  /* before the first section */
    IN_SKIPPED,  /* a section that is not read (bad header, over the limit, ignored) */
    IN_SERVICES, /* [Services] */
    IN_DEFAULTS, /* [Default Services] */
    IN_SECTION,  /* a service, provider or extra section */
} where;

typedef struct parser {
    mapisvc *svc;
    void (*diag)(void *, unsigned, const char *);
    void *arg;
    where at;
    size_t cur; /* section index when IN_SECTION */
    bool have_services;
    bool have_defaults;
    bool limit_reported;
} parser;

/* Keys that MAPISVC.INF files carry in service sections and that are not properties: the
 * setup wizard's entry point, Office's install id, the uid an extra section is written to. */
static const char *const non_property_keys[] = {"WIZARD_ENTRY_NAME", "PR_SERVICE_INSTALL_ID",
                                                "UID"};

__attribute__((format(printf, 3, 4))) static void diagf(parser *ps, unsigned line, const char *fmt,
                                                        ...)
{
    if (!ps->diag)
        return;
    char msg[MAPISVC_DIAG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ps->diag(ps->arg, line, msg);
}

/* grow - room for one more element in *arr (n in use, *cap allocated). */
static bool grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* trim - strip white space in place at both ends; returns the new start. */
static char *trim(char *s)
{
    while (is_ws(*s))
        s++;
    size_t n = strlen(s);
    while (n && is_ws(s[n - 1]))
        s[--n] = 0;
    return s;
}

/* --- freeing --------------------------------------------------------------------------------- */

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static void list_free(svc_list *l)
{
    free_names(l->names, l->n);
    free_names(l->displays, l->n);
    free(l->lines);
}

void mapisvc_free(mapisvc *svc)
{
    if (!svc)
        return;
    list_free(&svc->services);
    list_free(&svc->defaults);
    for (size_t i = 0; i < svc->nsects; i++) {
        mapisvc_section *s = &svc->sects[i].pub;
        free(s->name);
        mapi_props_free(s->props, s->nprops);
        free_names(s->providers, s->nproviders);
        free_names(s->sections, s->nsections);
    }
    free(svc->sects);
    free(svc);
}

/* --- sections ------------------------------------------------------------------------------ */

/* name_hash - FNV-1a of the name folded to lower case (names compare without case). */
static size_t name_hash(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        unsigned c = *p >= 'A' && *p <= 'Z' ? *p + 32u : *p;
        h = (h ^ c) * 16777619u;
    }
    return h & (MAPISVC_HASH_SLOTS - 1);
}

/* find_slot - the slot of name, or the free slot where it would go. Lookups stay cheap
 * however many references and repeated headers a file has. */
static size_t find_slot(const mapisvc *svc, const char *name)
{
    size_t i = name_hash(name);
    while (svc->slots[i] && strcasecmp(svc->sects[svc->slots[i] - 1].pub.name, name))
        i = (i + 1) & (MAPISVC_HASH_SLOTS - 1);
    return i;
}

static svc_sect *find_sect(const mapisvc *svc, const char *name)
{
    size_t i = find_slot(svc, name);
    return svc->slots[i] ? &svc->sects[svc->slots[i] - 1] : NULL;
}

/* section_header - "[name]": the section that the following entries belong to. */
static mapi_err section_header(parser *ps, unsigned line, char *s)
{
    size_t n = strlen(s);
    if (n < 2 || s[n - 1] != ']') {
        diagf(ps, line, "section header without ']'; its entries are ignored");
        ps->at = IN_SKIPPED;
        return S_OK;
    }
    s[n - 1] = 0;
    char *name = trim(s + 1);
    if (!*name) {
        diagf(ps, line, "section without a name; its entries are ignored");
        ps->at = IN_SKIPPED;
        return S_OK;
    }
    bool services = !strcasecmp(name, "Services");
    if (services || !strcasecmp(name, "Default Services")) {
        bool *seen = services ? &ps->have_services : &ps->have_defaults;
        if (*seen)
            diagf(ps, line, "section [%s] repeated; entries merged", name);
        *seen = true;
        ps->at = services ? IN_SERVICES : IN_DEFAULTS;
        return S_OK;
    }
    if (!strcasecmp(name, "Help File Mappings")) {
        ps->at = IN_SKIPPED; /* help files for configuration dialogs we do not have */
        return S_OK;
    }
    mapisvc *svc = ps->svc;
    svc_sect *sec = find_sect(svc, name);
    if (sec) {
        diagf(ps, line, "section [%s] repeated (first at line %u); entries merged", name,
              sec->line);
        ps->at = IN_SECTION;
        ps->cur = (size_t)(sec - svc->sects);
        return S_OK;
    }
    if (svc->nsects >= MAPISVC_MAX_SECTIONS) {
        if (!ps->limit_reported)
            diagf(ps, line, "more than %u sections; the rest is ignored", MAPISVC_MAX_SECTIONS);
        ps->limit_reported = true;
        ps->at = IN_SKIPPED;
        return S_OK;
    }
    if (!grow((void **)&svc->sects, &svc->cap, svc->nsects, sizeof *svc->sects))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    sec = &svc->sects[svc->nsects];
    memset(sec, 0, sizeof *sec);
    if (!(sec->pub.name = strdup(name)))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    sec->line = line;
    svc->slots[find_slot(svc, name)] = (uint16_t)(svc->nsects + 1);
    ps->cur = svc->nsects++;
    ps->at = IN_SECTION;
    return S_OK;
}

/* --- [Services] and [Default Services] --------------------------------------------------- */

static mapi_err list_entry(parser *ps, svc_list *l, const char *what, unsigned line,
                           const char *key, const char *value)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcasecmp(l->names[i], key)) {
            diagf(ps, line, "service %s repeated in [%s] (first at line %u); ignored", key, what,
                  l->lines[i]);
            return S_OK;
        }
    if (l->n >= MAPISVC_MAX_ENTRIES) {
        if (!l->full_reported)
            diagf(ps, line, "more than %u entries in [%s]; the rest is ignored",
                  MAPISVC_MAX_ENTRIES, what);
        l->full_reported = true;
        return S_OK;
    }
    /* One more slot in each of the three arrays (at most MAPISVC_MAX_ENTRIES of them). */
    char **names = realloc(l->names, (l->n + 1) * sizeof *names);
    if (!names)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    l->names = names;
    char **displays = realloc(l->displays, (l->n + 1) * sizeof *displays);
    if (!displays)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    l->displays = displays;
    unsigned *lines = realloc(l->lines, (l->n + 1) * sizeof *lines);
    if (!lines)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    l->lines = lines;
    char *n = strdup(key), *d = strdup(value);
    if (!n || !d) {
        free(n);
        free(d);
        return MAPI_E_NOT_ENOUGH_MEMORY;
    }
    l->names[l->n] = n;
    l->displays[l->n] = d;
    l->lines[l->n] = line;
    l->n++;
    return S_OK;
}

/* --- service and provider sections ------------------------------------------------------- */

/* name_list - "Providers=" or "Sections=": comma-separated section names. */
static mapi_err name_list(parser *ps, unsigned line, const char *key, const char *value,
                          char ***names, size_t *n)
{
    size_t cap = 0;
    char *copy = strdup(value);
    if (!copy)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    mapi_err e = S_OK;
    for (char *p = copy; !e && p;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = 0;
        char *name = trim(p);
        p = comma ? comma + 1 : NULL;
        if (!*name) {
            diagf(ps, line, "empty name in %s=", key);
            continue;
        }
        if (*n >= MAPISVC_MAX_ENTRIES) {
            diagf(ps, line, "more than %u names in %s=; the rest is ignored", MAPISVC_MAX_ENTRIES,
                  key);
            break;
        }
        char *dup = strdup(name);
        if (!dup || !grow((void **)names, &cap, *n, sizeof **names)) {
            free(dup);
            e = MAPI_E_NOT_ENOUGH_MEMORY;
            break;
        }
        (*names)[(*n)++] = dup;
    }
    free(copy);
    return e;
}

/* is_hex_key - a tag written as 8 hex digits (MAPISVC.INF's form for tags without a name). */
static bool is_hex_key(const char *key)
{
    if (key[0] == '0' && (key[1] == 'x' || key[1] == 'X'))
        key += 2;
    size_t i = 0;
    while (key[i] && strchr("0123456789abcdefABCDEF", key[i]))
        i++;
    return i == 8 && !key[i];
}

/* value_bytes - the value as a byte dump: an even number (2 to 16) of hex digits. */
static size_t value_bytes(const char *value, uint8_t out[8])
{
    size_t n = strlen(value);
    if (n < 2 || n > 16 || n % 2)
        return 0;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned b;
        char pair[3] = {value[2 * i], value[2 * i + 1], 0};
        if (!strchr("0123456789abcdefABCDEF", pair[0]) ||
            !strchr("0123456789abcdefABCDEF", pair[1]) || sscanf(pair, "%x", &b) != 1)
            return 0;
        out[i] = (uint8_t)b;
    }
    return n / 2;
}

/* entry_value - the value of a property entry. Entries with a hex tag write numbers the way
 * MAPI stores them, as the bytes in memory order ("66090003=0C000000" is 12, KB 294470); a
 * value of exactly the type's size in hex digits is read that way, anything else as text. */
static mapi_err entry_value(uint32_t tag, bool hex_key, const char *value, mapi_prop *out)
{
    uint32_t type = PROP_TYPE(tag);
    uint8_t b[8];
    size_t n;
    if (hex_key && !(type & MV_FLAG) && type != PT_STRING8 && type != PT_UNICODE &&
        type != PT_BINARY && type != PT_CLSID && (n = value_bytes(value, b)) &&
        mapi_prop_decode(tag, b, n, out) == S_OK)
        return S_OK;
    return mapi_prop_parse_text(tag, value, out);
}

static mapi_err section_entry(parser *ps, unsigned line, const char *key, const char *value)
{
    svc_sect *sec = &ps->svc->sects[ps->cur];
    mapisvc_section *s = &sec->pub;
    if (sec->nentries >= MAPISVC_MAX_ENTRIES) {
        if (!sec->full_reported)
            diagf(ps, line, "more than %u entries in [%s]; the rest is ignored",
                  MAPISVC_MAX_ENTRIES, s->name);
        sec->full_reported = true;
        return S_OK;
    }
    sec->nentries++;
    bool providers = !strcasecmp(key, "Providers");
    if (providers || !strcasecmp(key, "Sections")) {
        unsigned *at = providers ? &sec->providers_line : &sec->sections_line;
        if (*at) {
            diagf(ps, line, "%s= repeated in [%s] (first at line %u); ignored", key, s->name, *at);
            return S_OK;
        }
        *at = line;
        return providers ? name_list(ps, line, "Providers", value, &s->providers, &s->nproviders)
                         : name_list(ps, line, "Sections", value, &s->sections, &s->nsections);
    }
    for (size_t i = 0; i < sizeof non_property_keys / sizeof *non_property_keys; i++)
        if (!strcasecmp(key, non_property_keys[i]))
            return S_OK;
    uint32_t tag;
    if (mapi_tag_parse(key, &tag) != S_OK) {
        diagf(ps, line, "unknown property %s; ignored", key);
        return S_OK;
    }
    for (size_t i = 0; i < s->nprops; i++)
        if (s->props[i].tag == tag) {
            diagf(ps, line, "property %s repeated in [%s]; the first is kept", key, s->name);
            return S_OK;
        }
    mapi_prop p;
    mapi_err e = entry_value(tag, is_hex_key(key), value, &p);
    if (e == MAPI_E_NOT_ENOUGH_MEMORY)
        return e;
    if (e) {
        diagf(ps, line, "bad value for %s (%s); ignored", key, mapi_strerror(e));
        return S_OK;
    }
    mapi_prop *props = realloc(s->props, (s->nprops + 1) * sizeof *props);
    if (!props) {
        mapi_prop_clear(&p);
        return MAPI_E_NOT_ENOUGH_MEMORY;
    }
    s->props = props;
    s->props[s->nprops++] = p;
    return S_OK;
}

/* --- lines ----------------------------------------------------------------------------------- */

static mapi_err parse_line(parser *ps, unsigned line, char *text)
{
    char *s = trim(text);
    if (!*s || *s == ';')
        return S_OK;
    if (*s == '[')
        return section_header(ps, line, s);
    char *eq = strchr(s, '=');
    if (!eq) {
        diagf(ps, line, "not a key=value entry; ignored");
        return S_OK;
    }
    *eq = 0;
    char *key = trim(s), *value = trim(eq + 1);
    /* Windows' profile-string reader drops one pair of enclosing double quotes. */
    size_t vn = strlen(value);
    if (vn >= 2 && value[0] == '"' && value[vn - 1] == '"') {
        value[vn - 1] = 0;
        value++;
    }
    if (!*key) {
        diagf(ps, line, "entry without a key; ignored");
        return S_OK;
    }
    switch (ps->at) {
    case IN_NOTHING:
        diagf(ps, line, "entry before the first section; ignored");
        return S_OK;
    case IN_SKIPPED:
        return S_OK;
    case IN_SERVICES:
        return list_entry(ps, &ps->svc->services, "Services", line, key, value);
    case IN_DEFAULTS:
        return list_entry(ps, &ps->svc->defaults, "Default Services", line, key, value);
    case IN_SECTION:
        return section_entry(ps, line, key, value);
    }
    return S_OK;
}

/* check_links - every name that [Services], [Default Services], Providers= and Sections=
 * give must have its section. */
static void check_links(parser *ps)
{
    mapisvc *svc = ps->svc;
    for (size_t i = 0; i < svc->services.n; i++)
        if (!find_sect(svc, svc->services.names[i]))
            diagf(ps, svc->services.lines[i], "service %s has no section [%s]",
                  svc->services.names[i], svc->services.names[i]);
    for (size_t i = 0; i < svc->defaults.n; i++) {
        bool listed = false;
        for (size_t k = 0; !listed && k < svc->services.n; k++)
            listed = !strcasecmp(svc->defaults.names[i], svc->services.names[k]);
        if (!listed)
            diagf(ps, svc->defaults.lines[i], "default service %s is not in [Services]",
                  svc->defaults.names[i]);
    }
    for (size_t i = 0; i < svc->nsects; i++) {
        const svc_sect *sec = &svc->sects[i];
        for (size_t k = 0; k < sec->pub.nproviders; k++)
            if (!find_sect(svc, sec->pub.providers[k]))
                diagf(ps, sec->providers_line, "provider %s of [%s] has no section",
                      sec->pub.providers[k], sec->pub.name);
        for (size_t k = 0; k < sec->pub.nsections; k++)
            if (!find_sect(svc, sec->pub.sections[k]))
                diagf(ps, sec->sections_line, "section %s named by [%s] is missing",
                      sec->pub.sections[k], sec->pub.name);
    }
}

/* to_utf8 - the text as UTF-8. MAPISVC.INF is written in the ANSI code page on Windows, or as
 * UTF-16LE with a byte order mark; UTF-8 (with or without its mark) is taken as it is. */
static mapi_err to_utf8(const char *text, size_t len, buf *out, const char **t, size_t *n)
{
    const uint8_t *u = (const uint8_t *)text;
    int rc = 0;
    if (len >= 2 && u[0] == 0xff && u[1] == 0xfe) {
        rc = base_utf16_to_utf8(u + 2, (len - 2) / 2, out);
    } else if (len >= 3 && u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) {
        *t = text + 3;
        *n = len - 3;
        return S_OK;
    } else if (!base_utf8_valid(text, len)) {
        buf u16 = BUF_INIT;
        rc = base_cp1252_to_utf16(u, len, &u16);
        if (!rc)
            rc = base_utf16_to_utf8(u16.data, u16.len / 2, out);
        buf_free(&u16);
    } else {
        *t = text;
        *n = len;
        return S_OK;
    }
    if (rc)
        return MAPI_E_NOT_ENOUGH_MEMORY;
    *t = out->data ? (const char *)out->data : "";
    *n = out->len;
    return S_OK;
}

mapi_err mapisvc_parse(const char *text, size_t len, void (*diag)(void *, unsigned, const char *),
                       void *arg, mapisvc **out)
{
    if (!out || (!text && len))
        return MAPI_E_INVALID_PARAMETER;
    *out = NULL;
    parser ps = {.diag = diag, .arg = arg, .at = IN_NOTHING};
    if (len > MAPISVC_MAX_FILE) {
        diagf(&ps, 0, "larger than %u bytes", MAPISVC_MAX_FILE);
        return MAPI_E_CORRUPT_DATA;
    }
    if (!(ps.svc = calloc(1, sizeof *ps.svc)))
        return MAPI_E_NOT_ENOUGH_MEMORY;
    buf conv = BUF_INIT;
    const char *t = "";
    size_t n = 0;
    char *line = malloc(MAPISVC_MAX_LINE + 1);
    mapi_err e = line ? to_utf8(text ? text : "", len, &conv, &t, &n) : MAPI_E_NOT_ENOUGH_MEMORY;
    unsigned lineno = 0;
    for (size_t pos = 0; !e && pos < n;) {
        const char *nl = memchr(t + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - t) : n, ll = end - pos;
        lineno++;
        if (ll && t[pos + ll - 1] == '\r')
            ll--;
        if (ll > MAPISVC_MAX_LINE) {
            diagf(&ps, lineno, "line longer than %u bytes; ignored", MAPISVC_MAX_LINE);
        } else if (memchr(t + pos, 0, ll)) {
            diagf(&ps, lineno, "NUL byte in line; ignored");
        } else {
            memcpy(line, t + pos, ll);
            line[ll] = 0;
            e = parse_line(&ps, lineno, line);
        }
        pos = end + 1;
    }
    free(line);
    buf_free(&conv);
    if (!e && !ps.have_services) {
        diagf(&ps, 0, "no [Services] section");
        e = MAPI_E_CORRUPT_DATA;
    }
    if (e) {
        mapisvc_free(ps.svc);
        return e;
    }
    check_links(&ps);
    *out = ps.svc;
    return S_OK;
}

mapi_err mapisvc_load(const char *path, void (*diag)(void *, unsigned, const char *), void *arg,
                      mapisvc **out)
{
    if (!path || !out)
        return MAPI_E_INVALID_PARAMETER;
    *out = NULL;
    buf b = BUF_INIT;
    int rc = base_read_file(path, MAPISVC_MAX_FILE, &b);
    mapi_err e;
    switch (rc) {
    case 0:
        e = mapisvc_parse((const char *)b.data, b.len, diag, arg, out);
        break;
    case ENOENT:
    case ENOTDIR:
        e = MAPI_E_NOT_FOUND;
        break;
    case EACCES:
    case EPERM:
        e = MAPI_E_NO_ACCESS;
        break;
    case ENOMEM:
        e = MAPI_E_NOT_ENOUGH_MEMORY;
        break;
    case EFBIG:
        if (diag) {
            char msg[64];
            snprintf(msg, sizeof msg, "larger than %u bytes", MAPISVC_MAX_FILE);
            diag(arg, 0, msg);
        }
        e = MAPI_E_CORRUPT_DATA;
        break;
    default:
        e = MAPI_E_CALL_FAILED;
        break;
    }
    buf_free(&b);
    return e;
}

size_t mapisvc_services(const mapisvc *svc, const char *const **names)
{
    if (names)
        *names = svc ? (const char *const *)svc->services.names : NULL;
    return svc ? svc->services.n : 0;
}

size_t mapisvc_default_services(const mapisvc *svc, const char *const **names)
{
    if (names)
        *names = svc ? (const char *const *)svc->defaults.names : NULL;
    return svc ? svc->defaults.n : 0;
}

const char *mapisvc_display(const mapisvc *svc, const char *service)
{
    for (size_t i = 0; svc && service && i < svc->services.n; i++)
        if (!strcasecmp(svc->services.names[i], service))
            return svc->services.displays[i];
    return NULL;
}

const mapisvc_section *mapisvc_section_get(const mapisvc *svc, const char *name)
{
    const svc_sect *s = svc && name ? find_sect(svc, name) : NULL;
    return s ? &s->pub : NULL;
}

/* --- where the catalogue is ---------------------------------------------------------------- */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

const char *mapisvc_default_path(const char *state_root)
{
    /* Per thread, so that concurrent callers do not overwrite each other's answer. */
    static _Thread_local char path[PATH_MAX];
    const char *env = getenv("IMS_MAPISVC");
    if (env && *env) {
        if (strlen(env) >= sizeof path)
            return env;
        memcpy(path, env, strlen(env) + 1);
        return path;
    }
    if (!state_root)
        state_root = base_state_root();
    int n = snprintf(path, sizeof path, "%s/mapisvc.inf", state_root);
    if (n > 0 && (size_t)n < sizeof path && is_file(path))
        return path;
    /* A program run from the build tree (build/bin, build/tests; build/san/bin under SAN=1)
     * finds the repository's copy. */
    char *exe = realpath("/proc/self/exe", NULL);
    if (exe) {
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = 0;
        static const char *const rel[] = {"/../../data/mapisvc.inf", "/../../../data/mapisvc.inf"};
        for (size_t i = 0; slash && i < sizeof rel / sizeof *rel; i++) {
            n = snprintf(path, sizeof path, "%s%s", exe, rel[i]);
            if (n > 0 && (size_t)n < sizeof path && is_file(path)) {
                free(exe);
                return path;
            }
        }
        free(exe);
    }
    snprintf(path, sizeof path, "%s", IMS_DATADIR "/mapisvc.inf");
    return path;
}
