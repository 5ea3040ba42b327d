/* hivefile.c - Windows hive files (regf) through libhivex: RegSaveKey, RegRestoreKey,
 * RegLoadKey and RegUnLoadKey, built only on the public registry API of reg.h. */
#include "reg/reg.h"
#include "reg/store.h" /* reg_fold_unit: the same name order as the store */

#include <errno.h>
#include <fcntl.h>
#include <hivex.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- the regf layout (offsets in bytes) ------------------------------------------------ */

#define HIVE_BLOCK 0x1000u       /* base block size; hbins are multiples of it */
#define HIVE_MIN_FILE 0x2000u    /* base block + one hbin: the smallest file hivex opens */
#define HIVE_MAX_FILE (1u << 30) /* largest image we read back after hivex wrote it */
#define HIVE_FILE_MODE 0600      /* hives may hold secrets (MAPI profiles keep passwords) */
#define HIVE_DIR_MODE 0755
#define LOADED_RECORD_MODE 0644

/* base block ("regf") */
#define HDR_SEQ1 0x04
#define HDR_SEQ2 0x08
#define HDR_TIME 0x0c
#define HDR_MAJOR 0x14
#define HDR_MINOR 0x18
#define HDR_TYPE 0x1c
#define HDR_FORMAT 0x20
#define HDR_ROOT 0x24
#define HDR_LENGTH 0x28
#define HDR_CLUSTER 0x2c
#define HDR_NAME 0x30
#define HDR_NAME_BYTES 64 /* the tail of the file name, UTF-16LE */
#define HDR_CHECKSUM 0x1fc
#define HIVE_MAJOR 1
#define HIVE_MINOR 5 /* 1.5 (Windows XP and later): hash leaves and big data records */
#define HIVE_TYPE_PRIMARY 0
#define HIVE_FORMAT_MEMORY 1

/* hive bin ("hbin") */
#define HBIN_OFFSET 0x04
#define HBIN_SIZE 0x08
#define HBIN_TIME 0x14
#define HBIN_HEADER 0x20

/* Cells start with a 32-bit size, negative while in use; offsets count from the first
 * hbin; all cell field offsets below include that size field. */
#define CELL_ALIGN 8
#define CELL_NIL 0xffffffffu
#define CELL_SIG 0x04

/* key node ("nk") */
#define NK_FLAGS 0x06
#define NK_TIME 0x08
#define NK_PARENT 0x14
#define NK_NSUBKEYS 0x18
#define NK_SUBKEYS 0x20
#define NK_VSUBKEYS 0x24
#define NK_NVALUES 0x28
#define NK_VALUES 0x2c
#define NK_SECURITY 0x30
#define NK_CLASS 0x34
#define NK_NAME_LEN 0x4c
#define NK_NAME 0x50
#define NK_HIVE_ENTRY 0x0004
#define NK_NO_DELETE 0x0008
#define NK_COMP_NAME 0x0020 /* name in Latin-1 bytes rather than UTF-16LE */

/* security ("sk") */
#define SK_FLINK 0x08
#define SK_BLINK 0x0c
#define SK_REFS 0x10
#define SK_SD_LEN 0x14
#define SK_SD 0x18

/* value ("vk") */
#define VK_DATA_LEN 0x08
#define VK_DATA 0x0c
#define VK_NAME 0x18
#define VK_DATA_INLINE 0x80000000u

/* hash leaf ("lh") */
#define LH_COUNT 0x06
#define LH_ENTRIES 0x08
#define LH_ENTRY 8

/* big data ("db"): data over BIG_SEGMENT bytes is split into segments of that size. */
#define DB_COUNT 0x06
#define DB_LIST 0x08
#define DB_CELL 16
#define BIG_SEGMENT 16344u
#define BIG_SEGMENT_CELL 16352u /* 4 + BIG_SEGMENT rounded to CELL_ALIGN */
#define BIG_MAX_SEGMENTS 0xffffu

/* The root key's name in a file: Windows' own prototype hives use it, and loaders ignore it
 * (the key is mounted under the name given to RegLoadKey). */
static const char HIVE_ROOT_NAME[] = "$$$PROTO.HIV";

/* Well-known SIDs and access masks for the hive's one security descriptor. */
#define SD_REVISION 1
#define ACL_REVISION 2
#define SE_DACL_PRESENT 0x0004
#define SE_SELF_RELATIVE 0x8000
#define ACE_ALLOWED 0
#define ACE_CONTAINER_INHERIT 0x02
#define ACE_INHERIT_ONLY 0x08
#define KEY_ALL_ACCESS 0x000f003fu
#define KEY_READ_MASK 0x00020019u
#define GENERIC_ALL 0x10000000u
#define SID_AUTH_CREATOR 3
#define SID_AUTH_NT 5
#define RID_LOCAL_SYSTEM 18
#define RID_BUILTIN 32
#define RID_ADMINS 544
#define RID_USERS 545

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static size_t align_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* hive_checksum - XOR of the base block's first 127 words. Windows replaces a sum of 0 by
 * 1 and ~0 by ~1 while hivex does not; hive_seal avoids both values so both accept it. */
static uint32_t hive_checksum(const uint8_t *img)
{
    uint32_t sum = 0;
    for (size_t i = 0; i < HDR_CHECKSUM; i += 4)
        sum ^= get32(img + i);
    return sum;
}

/* hive_seal - store the checksum, nudging the timestamp by one tick if the sum would be one
 * of the two values that Windows and hivex treat differently. */
static void hive_seal(uint8_t *img)
{
    uint32_t sum = hive_checksum(img);
    while (sum == 0 || sum == 0xffffffffu) {
        put32(img + HDR_TIME, get32(img + HDR_TIME) + 1);
        sum = hive_checksum(img);
    }
    put32(img + HDR_CHECKSUM, sum);
}

/* --- a new, empty hive ------------------------------------------------------------------ */

static int sd_add_sid(buf *b, uint8_t authority, const uint32_t *rids, uint8_t n)
{
    uint8_t head[8] = {SD_REVISION, n, 0, 0, 0, 0, 0, authority};
    int rc = buf_add(b, head, sizeof head);
    for (uint8_t i = 0; !rc && i < n; i++) {
        uint8_t r[4];
        put32(r, rids[i]);
        rc = buf_add(b, r, sizeof r);
    }
    return rc;
}

static int sd_add_ace(buf *b, uint8_t flags, uint32_t mask, uint8_t authority, const uint32_t *rids,
                      uint8_t n)
{
    uint8_t head[8] = {ACE_ALLOWED, flags};
    put16(head + 2, (uint16_t)(sizeof head + 8 + 4u * n));
    put32(head + 4, mask);
    int rc = buf_add(b, head, sizeof head);
    return rc ? rc : sd_add_sid(b, authority, rids, n);
}

/* hive_security - a self-relative security descriptor like the one Windows gives a user
 * hive's root: owner Administrators, group SYSTEM, full control for SYSTEM and
 * Administrators, read for Users, full control of subkeys for their creator. */
static int hive_security(buf *sd)
{
    static const uint32_t system[] = {RID_LOCAL_SYSTEM};
    static const uint32_t admins[] = {RID_BUILTIN, RID_ADMINS};
    static const uint32_t users[] = {RID_BUILTIN, RID_USERS};
    static const uint32_t creator[] = {0};
    const size_t head = 20, acl_head = 8;
    buf acl = BUF_INIT;
    int rc = sd_add_ace(&acl, ACE_CONTAINER_INHERIT, KEY_ALL_ACCESS, SID_AUTH_NT, system, 1);
    if (!rc)
        rc = sd_add_ace(&acl, ACE_CONTAINER_INHERIT, KEY_ALL_ACCESS, SID_AUTH_NT, admins, 2);
    if (!rc)
        rc = sd_add_ace(&acl, ACE_CONTAINER_INHERIT, KEY_READ_MASK, SID_AUTH_NT, users, 2);
    if (!rc)
        rc = sd_add_ace(&acl, ACE_CONTAINER_INHERIT | ACE_INHERIT_ONLY, GENERIC_ALL,
                        SID_AUTH_CREATOR, creator, 1);
    if (rc) {
        buf_free(&acl);
        return rc;
    }
    size_t dacl_at = head, owner_at = dacl_at + acl_head + acl.len;
    size_t group_at = owner_at + 8 + 4 * 2;
    uint8_t h[20] = {SD_REVISION, 0};
    put16(h + 2, SE_DACL_PRESENT | SE_SELF_RELATIVE);
    put32(h + 4, (uint32_t)owner_at);
    put32(h + 8, (uint32_t)group_at);
    put32(h + 12, 0); /* no SACL */
    put32(h + 16, (uint32_t)dacl_at);
    uint8_t ah[8] = {ACL_REVISION, 0};
    put16(ah + 2, (uint16_t)(acl_head + acl.len));
    put16(ah + 4, 4); /* four ACEs */
    rc = buf_add(sd, h, sizeof h);
    if (!rc)
        rc = buf_add(sd, ah, sizeof ah);
    if (!rc)
        rc = buf_add(sd, acl.data, acl.len);
    if (!rc)
        rc = sd_add_sid(sd, SID_AUTH_NT, admins, 2);
    if (!rc)
        rc = sd_add_sid(sd, SID_AUTH_NT, system, 1);
    buf_free(&acl);
    return rc;
}

/* hive_template - the bytes of an empty hive: a base block and one hbin holding the root
 * key, its security cell and free space. hivex cannot create a hive, only edit one.
 * file gives the name recorded in the base block. */
static int hive_template(const char *file, uint64_t now, buf *out)
{
    buf sd = BUF_INIT;
    int rc = hive_security(&sd);
    if (!rc)
        rc = buf_reserve(out, HIVE_MIN_FILE);
    if (rc) {
        buf_free(&sd);
        return rc;
    }
    uint8_t *img = out->data;
    memset(img, 0, HIVE_MIN_FILE);

    size_t namelen = sizeof HIVE_ROOT_NAME - 1;
    uint32_t nk_off = HBIN_HEADER;
    uint32_t nk_size = (uint32_t)align_up(NK_NAME + namelen, CELL_ALIGN);
    uint32_t sk_off = nk_off + nk_size;
    uint32_t sk_size = (uint32_t)align_up(SK_SD + sd.len, CELL_ALIGN);
    uint32_t free_off = sk_off + sk_size;

    memcpy(img, "regf", 4);
    put32(img + HDR_SEQ1, 1);
    put32(img + HDR_SEQ2, 1);
    put64(img + HDR_TIME, now);
    put32(img + HDR_MAJOR, HIVE_MAJOR);
    put32(img + HDR_MINOR, HIVE_MINOR);
    put32(img + HDR_TYPE, HIVE_TYPE_PRIMARY);
    put32(img + HDR_FORMAT, HIVE_FORMAT_MEMORY);
    put32(img + HDR_ROOT, nk_off);
    put32(img + HDR_LENGTH, HIVE_BLOCK);
    put32(img + HDR_CLUSTER, 1);
    /* The base block keeps the last 31 characters of the file's name, as Windows does. */
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    buf u16 = BUF_INIT;
    if (base_utf8_to_utf16(base, strlen(base), &u16) == 0) {
        size_t keep = u16.len < HDR_NAME_BYTES - 2 ? u16.len : HDR_NAME_BYTES - 2;
        memcpy(img + HDR_NAME, u16.data + u16.len - keep, keep);
    }
    buf_free(&u16);

    uint8_t *bin = img + HIVE_BLOCK;
    memcpy(bin, "hbin", 4);
    put32(bin + HBIN_OFFSET, 0);
    put32(bin + HBIN_SIZE, HIVE_BLOCK);
    put64(bin + HBIN_TIME, now);

    uint8_t *nk = bin + nk_off;
    put32(nk, (uint32_t) - (int32_t)nk_size);
    memcpy(nk + CELL_SIG, "nk", 2);
    put16(nk + NK_FLAGS, NK_HIVE_ENTRY | NK_NO_DELETE | NK_COMP_NAME);
    put64(nk + NK_TIME, now);
    put32(nk + NK_PARENT, CELL_NIL);
    put32(nk + NK_SUBKEYS, CELL_NIL);
    put32(nk + NK_VSUBKEYS, CELL_NIL);
    put32(nk + NK_VALUES, CELL_NIL);
    put32(nk + NK_SECURITY, sk_off);
    put32(nk + NK_CLASS, CELL_NIL);
    put16(nk + NK_NAME_LEN, (uint16_t)namelen);
    memcpy(nk + NK_NAME, HIVE_ROOT_NAME, namelen);

    /* The only security cell: its list of security cells is itself, used by the root. */
    uint8_t *sk = bin + sk_off;
    put32(sk, (uint32_t) - (int32_t)sk_size);
    memcpy(sk + CELL_SIG, "sk", 2);
    put32(sk + SK_FLINK, sk_off);
    put32(sk + SK_BLINK, sk_off);
    put32(sk + SK_REFS, 1);
    put32(sk + SK_SD_LEN, (uint32_t)sd.len);
    memcpy(sk + SK_SD, sd.data, sd.len);
    buf_free(&sd);

    put32(bin + free_off, HIVE_BLOCK - free_off); /* positive size: free */

    hive_seal(img);
    out->len = HIVE_MIN_FILE;
    return 0;
}

/* --- fixing what hivex writes ------------------------------------------------------------ */

/* Windows finds a subkey by binary search in a hash leaf ordered by the upper-cased UTF-16
 * names, checking each entry's hash of that name first. hivex (1.3.23) gets both right only
 * for ASCII: it puts "µ" before "À" and U+1D11E after U+FF76, and hashes other names
 * wrongly, so Windows would not find such keys. It also writes value data of any size as one
 * cell, where Windows reads data over BIG_SEGMENT bytes through a big data record in 1.4+
 * hives. hive_fixup rewrites those parts of the image after hivex_commit. */

typedef struct hive_fix {
    buf *img;       /* the whole file */
    uint32_t limit; /* end of the hbins, relative to the first */
} hive_fix;

typedef struct lh_entry {
    uint32_t cell;   /* the subkey's nk */
    uint32_t hash;   /* Windows' hash of its name */
    size_t name_at;  /* upper-cased UTF-16 units in the names buffer */
    size_t name_len; /* units */
    const uint16_t *names;
} lh_entry;

/* fix_cell - the position of the used cell at off (relative to the first hbin) in the image
 * when it holds at least need bytes (size field included) and has signature sig (or NULL). */
static uint8_t *fix_cell(const hive_fix *fx, uint32_t off, size_t need, const char *sig)
{
    if (off < HBIN_HEADER || off >= fx->limit || off % 4)
        return NULL;
    uint8_t *c = fx->img->data + HIVE_BLOCK + off;
    int32_t size = (int32_t)get32(c);
    if (size >= 0)
        return NULL;
    size_t len = (size_t)(-(int64_t)size);
    if (len < need || len > fx->limit - off)
        return NULL;
    if (sig && (len < CELL_SIG + 2 || memcmp(c + CELL_SIG, sig, 2)))
        return NULL;
    return c;
}

static int lh_entry_cmp(const void *a, const void *b)
{
    const lh_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    for (size_t i = 0; i < n; i++) {
        uint16_t u = x->names[x->name_at + i], v = y->names[y->name_at + i];
        if (u != v)
            return u < v ? -1 : 1;
    }
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* fix_name - the upper-cased UTF-16 name of nk cell off appended to names; its hash. */
static int fix_name(const hive_fix *fx, uint32_t off, uint16_t **names, size_t *n, size_t *cap,
                    uint32_t *hash)
{
    uint8_t *nk = fix_cell(fx, off, NK_NAME, "nk");
    if (!nk)
        return ERROR_REGISTRY_CORRUPT;
    size_t bytes = get16(nk + NK_NAME_LEN);
    if (!fix_cell(fx, off, NK_NAME + bytes, "nk"))
        return ERROR_REGISTRY_CORRUPT;
    bool comp = get16(nk + NK_FLAGS) & NK_COMP_NAME;
    size_t units = comp ? bytes : bytes / 2;
    if (*n + units > *cap) {
        size_t ncap = (*cap + units) * 2;
        uint16_t *p = realloc(*names, ncap * sizeof *p);
        if (!p)
            return ERROR_NOT_ENOUGH_MEMORY;
        *names = p;
        *cap = ncap;
    }
    uint32_t h = 0;
    for (size_t i = 0; i < units; i++) {
        uint16_t u = comp ? nk[NK_NAME + i] : get16(nk + NK_NAME + 2 * i);
        u = reg_fold_unit(u);
        (*names)[(*n)++] = u;
        h = h * 37 + u;
    }
    *hash = h;
    return 0;
}

/* fix_big - move a value's data of more than BIG_SEGMENT bytes from its single cell into a
 * big data record with segments, in a new hbin appended to the image. */
static int fix_big(hive_fix *fx, uint32_t vk_off, uint32_t len)
{
    uint8_t *vk = fix_cell(fx, vk_off, VK_NAME, "vk");
    if (!vk)
        return ERROR_REGISTRY_CORRUPT;
    uint32_t data_off = get32(vk + VK_DATA);
    if (!fix_cell(fx, data_off, 4 + (size_t)len, NULL))
        return ERROR_REGISTRY_CORRUPT;
    size_t nseg = (len + BIG_SEGMENT - 1) / BIG_SEGMENT;
    if (nseg > BIG_MAX_SEGMENTS)
        return ERROR_INVALID_DATA;
    size_t list_size = align_up(4 + 4 * nseg, CELL_ALIGN);
    size_t used = HBIN_HEADER + DB_CELL + list_size + nseg * BIG_SEGMENT_CELL;
    size_t bin_size = align_up(used, HIVE_BLOCK);
    if ((size_t)fx->limit + bin_size > UINT32_MAX / 2)
        return ERROR_INVALID_DATA;
    if (buf_reserve(fx->img, bin_size))
        return ERROR_NOT_ENOUGH_MEMORY;
    uint32_t bin_off = fx->limit;
    uint8_t *img = fx->img->data;
    uint8_t *bin = img + HIVE_BLOCK + bin_off;
    memset(bin, 0, bin_size);
    memcpy(bin, "hbin", 4);
    put32(bin + HBIN_OFFSET, bin_off);
    put32(bin + HBIN_SIZE, (uint32_t)bin_size);

    uint32_t db_off = bin_off + HBIN_HEADER, list_off = db_off + DB_CELL;
    uint8_t *db = img + HIVE_BLOCK + db_off, *list = img + HIVE_BLOCK + list_off;
    put32(db, (uint32_t) - (int32_t)DB_CELL);
    memcpy(db + CELL_SIG, "db", 2);
    put16(db + DB_COUNT, (uint16_t)nseg);
    put32(db + DB_LIST, list_off);
    put32(list, (uint32_t) - (int32_t)list_size);
    const uint8_t *src = img + HIVE_BLOCK + data_off + 4;
    uint32_t seg_off = list_off + (uint32_t)list_size;
    for (size_t i = 0; i < nseg; i++, seg_off += BIG_SEGMENT_CELL) {
        /* Every segment gets a full-size cell: hivex reads a segment's cell size less 8. */
        uint8_t *seg = img + HIVE_BLOCK + seg_off;
        size_t part = len - i * BIG_SEGMENT < BIG_SEGMENT ? len - i * BIG_SEGMENT : BIG_SEGMENT;
        put32(seg, (uint32_t) - (int32_t)BIG_SEGMENT_CELL);
        memcpy(seg + 4, src + i * BIG_SEGMENT, part);
        put32(list + 4 + 4 * i, seg_off);
    }
    if (used < bin_size)
        put32(img + HIVE_BLOCK + bin_off + used, (uint32_t)(bin_size - used));

    uint8_t *old = img + HIVE_BLOCK + data_off;
    put32(old, (uint32_t) - (int32_t)get32(old)); /* the single cell becomes free space */
    put32(img + HIVE_BLOCK + vk_off + VK_DATA, db_off);
    fx->limit += (uint32_t)bin_size;
    fx->img->len += bin_size;
    return 0;
}

/* fix_values - convert the big values of nk cell off. */
static int fix_values(hive_fix *fx, uint32_t off)
{
    uint8_t *nk = fix_cell(fx, off, NK_NAME, "nk");
    if (!nk)
        return ERROR_REGISTRY_CORRUPT;
    uint32_t n = get32(nk + NK_NVALUES), list_off = get32(nk + NK_VALUES);
    if (n == 0)
        return 0;
    if (n > fx->limit / 4 || !fix_cell(fx, list_off, 4 + 4 * (size_t)n, NULL))
        return ERROR_REGISTRY_CORRUPT;
    for (uint32_t i = 0; i < n; i++) {
        /* Re-read the list each time: fix_big may move the image. */
        uint32_t vk_off = get32(fx->img->data + HIVE_BLOCK + list_off + 4 + 4 * i);
        uint8_t *vk = fix_cell(fx, vk_off, VK_NAME, "vk");
        if (!vk)
            return ERROR_REGISTRY_CORRUPT;
        uint32_t len = get32(vk + VK_DATA_LEN);
        if (!(len & VK_DATA_INLINE) && len > BIG_SEGMENT) {
            int rc = fix_big(fx, vk_off, len);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* fix_node - put the subkey list of nk cell off in Windows order with Windows hashes, convert
 * big values, and do the same for every subkey. */
static int fix_node(hive_fix *fx, uint32_t off, unsigned depth)
{
    if (depth > REG_MAX_DEPTH + 1)
        return ERROR_REGISTRY_CORRUPT;
    int rc = fix_values(fx, off);
    if (rc)
        return rc;
    uint8_t *nk = fix_cell(fx, off, NK_NAME, "nk");
    if (!nk)
        return ERROR_REGISTRY_CORRUPT;
    uint32_t nsub = get32(nk + NK_NSUBKEYS), list_off = get32(nk + NK_SUBKEYS);
    if (nsub == 0)
        return 0;
    /* A hive hivex built from nothing has one hash leaf per key. */
    uint8_t *lh = fix_cell(fx, list_off, LH_ENTRIES, "lh");
    if (!lh || get16(lh + LH_COUNT) != nsub ||
        !fix_cell(fx, list_off, LH_ENTRIES + (size_t)nsub * LH_ENTRY, "lh"))
        return ERROR_REGISTRY_CORRUPT;

    lh_entry *e = calloc(nsub, sizeof *e);
    uint16_t *names = NULL;
    size_t nnames = 0, cap = 0;
    if (!e)
        return ERROR_NOT_ENOUGH_MEMORY;
    for (uint32_t i = 0; i < nsub && !rc; i++) {
        e[i].cell = get32(lh + LH_ENTRIES + i * LH_ENTRY);
        e[i].name_at = nnames;
        rc = fix_name(fx, e[i].cell, &names, &nnames, &cap, &e[i].hash);
        e[i].name_len = nnames - e[i].name_at;
    }
    if (!rc) {
        for (uint32_t i = 0; i < nsub; i++)
            e[i].names = names;
        qsort(e, nsub, sizeof *e, lh_entry_cmp);
        for (uint32_t i = 0; i < nsub; i++) {
            put32(lh + LH_ENTRIES + i * LH_ENTRY, e[i].cell);
            put32(lh + LH_ENTRIES + i * LH_ENTRY + 4, e[i].hash);
        }
    }
    free(names);
    for (uint32_t i = 0; i < nsub && !rc; i++)
        rc = fix_node(fx, e[i].cell, depth + 1);
    free(e);
    return rc;
}

/* hive_fixup - make the image hivex committed what Windows expects, then reseal it. */
static int hive_fixup(buf *img)
{
    if (img->len < HIVE_MIN_FILE || memcmp(img->data, "regf", 4))
        return ERROR_REGISTRY_CORRUPT;
    hive_fix fx = {img, get32(img->data + HDR_LENGTH)};
    if (fx.limit < HIVE_BLOCK || fx.limit > img->len - HIVE_BLOCK)
        return ERROR_REGISTRY_CORRUPT;
    img->len = HIVE_BLOCK + (size_t)fx.limit; /* drop any slack after the last hbin */
    int rc = fix_node(&fx, get32(img->data + HDR_ROOT), 0);
    if (rc)
        return rc;
    put32(img->data + HDR_LENGTH, fx.limit);
    hive_seal(img->data);
    return 0;
}

/* --- errors ----------------------------------------------------------------------------- */

/* hive_open_error - the Win32 error for hivex_open failing with e. */
static int hive_open_error(int e)
{
    switch (e) {
    case ENOENT:
        return ERROR_FILE_NOT_FOUND;
    case ENOTSUP: /* not "regf", bad hbins or root */
    case EINVAL:  /* too small, bad checksum */
        return ERROR_NOT_REGISTRY_FILE;
    case EACCES:
    case EPERM:
        return ERROR_ACCESS_DENIED;
    default:
        return reg_errno_to_win32(e);
    }
}

/* hive_read_error - the Win32 error for hivex failing with e while reading a hive that
 * opened: a damaged structure (bad offsets, loops, hivex's size limits) is corruption. */
static int hive_read_error(int e)
{
    switch (e) {
    case ENOMEM:
        return ERROR_NOT_ENOUGH_MEMORY;
    case EFAULT:
    case ELOOP:
    case ENOTSUP:
    case EINVAL:
    case ERANGE:
    case EILSEQ:
    case 0:
        return ERROR_REGISTRY_CORRUPT;
    default:
        return reg_errno_to_win32(e);
    }
}

/* hive_write_error - the Win32 error for hivex failing with e while building a hive: a name
 * it cannot encode (a lone surrogate) or data over its size limit is invalid data. */
static int hive_write_error(int e)
{
    switch (e) {
    case ENOMEM:
        return ERROR_NOT_ENOUGH_MEMORY;
    case EINVAL:
    case EILSEQ:
    case ERANGE:
    case EOVERFLOW:
    case EEXIST:
        return ERROR_INVALID_DATA;
    default:
        return reg_errno_to_win32(e);
    }
}

/* hive_open - open file with hivex; directories are refused as Windows refuses them. */
static int hive_open(const char *file, int flags, hive_h **out)
{
    struct stat st;
    if (stat(file, &st))
        return hive_open_error(errno);
    if (S_ISDIR(st.st_mode))
        return ERROR_ACCESS_DENIED;
    *out = hivex_open(file, flags);
    return *out ? ERROR_SUCCESS : hive_open_error(errno);
}

/* --- saving ------------------------------------------------------------------------------ */

typedef struct save_values {
    hive_set_value *v;
    size_t n, cap;
} save_values;

static void save_values_free(save_values *sv)
{
    for (size_t i = 0; i < sv->n; i++) {
        free(sv->v[i].key);
        free(sv->v[i].value);
    }
    free(sv->v);
}

static int save_value_cb(void *arg, const char *name, uint32_t type, const uint8_t *data,
                         size_t len)
{
    save_values *sv = arg;
    if (sv->n == sv->cap) {
        size_t ncap = sv->cap ? 2 * sv->cap : 16;
        hive_set_value *p = realloc(sv->v, ncap * sizeof *p);
        if (!p)
            return ERROR_NOT_ENOUGH_MEMORY;
        sv->v = p;
        sv->cap = ncap;
    }
    hive_set_value *v = &sv->v[sv->n];
    v->key = strdup(name);
    v->value = malloc(len ? len : 1); /* hivex copies from value even for empty data */
    if (!v->key || !v->value) {
        free(v->key);
        free(v->value);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    if (len)
        memcpy(v->value, data, len);
    v->len = len;
    v->t = (hive_type)type; /* hivex stores the enum's bits as the type number: any 32 bits */
    sv->n++;
    return 0;
}

/* save_subkey_cb - collect subkey names, NUL-separated: the enumeration is finished before
 * any subkey is opened. */
static int save_subkey_cb(void *arg, const char *name)
{
    buf *names = arg;
    int rc = buf_add(names, name, strlen(name) + 1);
    return rc ? ERROR_NOT_ENOUGH_MEMORY : 0;
}

/* save_node - copy key's values and subtree into hivex node. */
static int save_node(hive_h *h, reg_key *key, hive_node_h node, unsigned depth)
{
    if (depth > REG_MAX_DEPTH)
        return ERROR_INVALID_DATA;
    save_values sv = {NULL, 0, 0};
    int rc = reg_key_enum_values(key, save_value_cb, &sv);
    if (!rc && sv.n && hivex_node_set_values(h, node, sv.n, sv.v, 0))
        rc = hive_write_error(errno);
    save_values_free(&sv);
    if (rc)
        return rc;

    buf names = BUF_INIT;
    rc = reg_key_enum_subkeys(key, save_subkey_cb, &names);
    for (size_t at = 0; !rc && at < names.len; at += strlen((char *)names.data + at) + 1) {
        const char *name = (const char *)names.data + at;
        reg_key *sub;
        rc = reg_key_open(key, name, REG_READ, &sub);
        if (rc == ERROR_FILE_NOT_FOUND) { /* deleted since the enumeration */
            rc = 0;
            continue;
        }
        if (rc)
            break;
        hive_node_h child = hivex_node_add_child(h, node, name);
        if (!child)
            rc = hive_write_error(errno);
        else
            rc = save_node(h, sub, child, depth + 1);
        reg_key_close(sub);
    }
    buf_free(&names);
    return rc;
}

/* save_scratch - a new file next to file holding img, for hivex to work in. */
static int save_scratch(const char *file, const buf *img, buf *path)
{
    if (buf_printf(path, "%s.hiveXXXXXX", file) || !buf_cstr(path))
        return ERROR_NOT_ENOUGH_MEMORY;
    int fd = mkostemp((char *)path->data, O_CLOEXEC);
    if (fd < 0) /* creating a file, ENOENT can only mean a missing directory */
        return errno == ENOENT ? ERROR_PATH_NOT_FOUND : reg_errno_to_win32(errno);
    int rc = 0;
    for (size_t at = 0; !rc && at < img->len;) {
        ssize_t w = write(fd, img->data + at, img->len - at);
        if (w > 0)
            at += (size_t)w;
        else if (w < 0 && errno != EINTR)
            rc = reg_errno_to_win32(errno);
    }
    close(fd);
    if (rc)
        unlink((const char *)path->data);
    return rc;
}

int reg_hive_save(reg_key *key, const char *file)
{
    if (!key || !file || !*file)
        return ERROR_INVALID_PARAMETER;
    buf scratch = BUF_INIT, img = BUF_INIT;
    if (hive_template(file, base_filetime_now(), &img))
        return ERROR_NOT_ENOUGH_MEMORY;
    int rc = save_scratch(file, &img, &scratch);
    if (rc) {
        buf_free(&img);
        buf_free(&scratch);
        return rc;
    }
    const char *tmp = (const char *)scratch.data;
    hive_h *h = hivex_open(tmp, HIVEX_OPEN_WRITE);
    if (!h)
        rc = hive_write_error(errno);
    if (!rc)
        rc = save_node(h, key, hivex_root(h), 0);
    if (!rc && hivex_commit(h, tmp, 0))
        rc = reg_errno_to_win32(errno);
    if (h)
        hivex_close(h);
    img.len = 0;
    if (!rc && (rc = base_read_file(tmp, HIVE_MAX_FILE, &img)))
        rc = reg_errno_to_win32(rc);
    if (!rc)
        rc = hive_fixup(&img);
    if (!rc && (rc = base_write_file_atomic(file, img.data, img.len, HIVE_FILE_MODE)))
        rc = reg_errno_to_win32(rc);
    unlink(tmp);
    buf_free(&img);
    buf_free(&scratch);
    return rc;
}

/* --- restoring --------------------------------------------------------------------------- */

/* Names that cannot pass through the registry API are skipped with everything below them:
 * names with an embedded NUL (hivex's own "special" test hive has "zero\0key"), with a
 * backslash, or empty subkey names. Windows cannot create such names through Win32 either.
 * The rest of the hive is still restored and the call succeeds. */

typedef struct restore_ctx {
    reg_key *stack[REG_MAX_DEPTH + 2]; /* [0] the target key; NULL marks a skipped subtree */
    size_t level;                      /* entries in stack */
    unsigned options;                  /* REG_OPTION_VOLATILE under a volatile target */
    int err;                           /* the Win32 error that stopped the walk */
} restore_ctx;

static int restore_node_start(hive_h *h, void *opaque, hive_node_h node, const char *name)
{
    restore_ctx *rx = opaque;
    if (rx->level == 0) { /* the hive's root is the target key itself */
        rx->level = 1;
        return 0;
    }
    if (rx->level >= sizeof rx->stack / sizeof rx->stack[0]) {
        rx->err = ERROR_REGISTRY_CORRUPT; /* deeper than any key can be */
        return -1;
    }
    reg_key *parent = rx->stack[rx->level - 1], *child = NULL;
    errno = 0;
    size_t len = hivex_node_name_len(h, node);
    if (len == 0 && errno) {
        rx->err = hive_read_error(errno);
        return -1;
    }
    if (parent) {
        bool representable = len == strlen(name) && len > 0 && !strchr(name, '\\');
        int err = representable ? reg_key_create(parent, name, rx->options, NULL, &child, NULL)
                                : ERROR_SUCCESS;
        if (err) {
            rx->err = err;
            return -1;
        }
    }
    rx->stack[rx->level++] = child;
    return 0;
}

static int restore_node_end(hive_h *h, void *opaque, hive_node_h node, const char *name)
{
    (void)h, (void)node, (void)name;
    restore_ctx *rx = opaque;
    if (rx->level > 1)
        reg_key_close(rx->stack[rx->level - 1]);
    rx->level--;
    return 0;
}

static int restore_value(hive_h *h, void *opaque, hive_node_h node, hive_value_h value, hive_type t,
                         size_t len, const char *key, const char *data)
{
    (void)node;
    restore_ctx *rx = opaque;
    reg_key *k = rx->stack[rx->level - 1];
    if (!k)
        return 0;
    errno = 0;
    size_t keylen = hivex_value_key_len(h, value);
    if (keylen == 0 && errno) {
        rx->err = hive_read_error(errno);
        return -1;
    }
    if (keylen != strlen(key)) /* an embedded NUL */
        return 0;
    int err = reg_value_set(k, key, (uint32_t)t, data, len);
    if (err) {
        rx->err = err;
        return -1;
    }
    return 0;
}

/* restore_import - replace key's contents by the hive's in one transaction. */
static int restore_import(hive_h *h, reg_key *key)
{
    static const struct hivex_visitor visitor = {
        .node_start = restore_node_start,
        .node_end = restore_node_end,
        .value_any = restore_value,
    };
    restore_ctx *rx = calloc(1, sizeof *rx);
    if (!rx)
        return ERROR_NOT_ENOUGH_MEMORY;
    reg_key_info info;
    int err = reg_key_query_info(key, &info);
    if (!err && info.is_volatile)
        rx->options = REG_OPTION_VOLATILE;
    rx->stack[0] = key;
    if (!err)
        err = reg_txn_begin(key);
    if (err) {
        free(rx);
        return err;
    }
    err = reg_key_delete_tree(key, NULL);
    if (!err && hivex_visit(h, &visitor, sizeof visitor, rx, 0)) {
        err = rx->err ? rx->err : hive_read_error(errno);
        while (rx->level > 1) /* a failed walk leaves its open keys behind */
            reg_key_close(rx->stack[--rx->level]);
    }
    if (!err)
        err = reg_txn_commit(key);
    else
        reg_txn_abort(key);
    free(rx);
    return err;
}

int reg_hive_restore(reg_key *key, const char *file)
{
    if (!key || !file || !*file)
        return ERROR_INVALID_PARAMETER;
    hive_h *h;
    int rc = hive_open(file, 0, &h);
    if (rc)
        return rc;
    rc = restore_import(h, key);
    hivex_close(h);
    return rc;
}

/* --- loading ----------------------------------------------------------------------------- */

/* A loaded hive is an ordinary HKU hive plus a record of the file it came from, kept in
 * <state root>/registry/loaded/<NAME>, where NAME is the hive name with ASCII letters
 * upper-cased (HKU hive names compare ASCII-case-insensitively). It holds the file's
 * absolute path, so that unloading, from any process, can write the hive back. */

static const char LOADED_DIR[] = "registry/loaded";

/* load_check - the root, name and caller are ones that may load or unload a hive. */
static int load_check(reg_ctx *ctx, reg_root root, const char *name)
{
    if (!ctx || !name)
        return ERROR_INVALID_PARAMETER;
    /* Our HKLM is one hive: a file cannot be mounted inside it. */
    if (root != REG_ROOT_HKU)
        return ERROR_INVALID_PARAMETER;
    size_t n = strlen(name);
    buf u16 = BUF_INIT;
    int conv = base_utf8_to_utf16(name, n, &u16);
    size_t units = u16.len / 2;
    buf_free(&u16);
    /* One key name that is also usable as a file name: no separators, no leading dot. */
    if (conv || n == 0 || n > NAME_MAX || units > REG_MAX_KEY_NAME || strchr(name, '\\') ||
        strchr(name, '/') || name[0] == '.')
        return ERROR_INVALID_PARAMETER;
    /* RegLoadKey needs SeRestorePrivilege: here root or the owner of the registry. */
    struct stat st;
    if (stat(reg_ctx_root_dir(ctx), &st))
        return reg_errno_to_win32(errno);
    uid_t euid = geteuid();
    if (euid != 0 && euid != st.st_uid)
        return ERROR_PRIVILEGE_NOT_HELD;
    return 0;
}

/* load_record_path - the path of name's record; with dir, the directory holding it. */
static int load_record_path(reg_ctx *ctx, const char *name, buf *out, bool dir)
{
    int rc = buf_printf(out, "%s/%s", reg_ctx_root_dir(ctx), LOADED_DIR);
    if (!rc && !dir) {
        rc = buf_addc(out, '/');
        for (const char *p = name; !rc && *p; p++)
            rc = buf_addc(out, (uint8_t)(*p >= 'a' && *p <= 'z' ? *p - ('a' - 'A') : *p));
    }
    if (rc || !buf_cstr(out))
        return ERROR_NOT_ENOUGH_MEMORY;
    return 0;
}

int reg_hive_load(reg_ctx *ctx, reg_root root, const char *name, const char *file)
{
    int rc = load_check(ctx, root, name);
    if (rc)
        return rc;
    if (!file || !*file)
        return ERROR_INVALID_PARAMETER;
    hive_h *h;
    if ((rc = hive_open(file, 0, &h)))
        return rc;
    char *abs = realpath(file, NULL);
    reg_key *hku = NULL, *key = NULL;
    buf dir = BUF_INIT, rec = BUF_INIT;
    if (!abs)
        rc = reg_errno_to_win32(errno);
    if (!rc)
        rc = reg_key_open_root(ctx, REG_ROOT_HKU, &hku);
    if (!rc) {
        rc = reg_key_open(hku, name, REG_READ, &key);
        if (rc == ERROR_SUCCESS) {
            reg_key_close(key);
            key = NULL;
            rc = ERROR_ALREADY_EXISTS;
        } else if (rc == ERROR_FILE_NOT_FOUND) {
            rc = 0;
        }
    }
    if (!rc)
        rc = load_record_path(ctx, name, &dir, true);
    if (!rc)
        rc = load_record_path(ctx, name, &rec, false);
    if (!rc && (rc = base_mkdir_p((const char *)dir.data, HIVE_DIR_MODE)))
        rc = reg_errno_to_win32(rc);
    bool created = false;
    if (!rc) {
        /* The name was free a moment ago; a second process loading the same name at the
         * same moment gets the existing hive back, and so ERROR_ALREADY_EXISTS. */
        unsigned disp = 0;
        rc = reg_key_create(hku, name, REG_OPTION_NON_VOLATILE, NULL, &key, &disp);
        if (!rc && disp != REG_CREATED_NEW_KEY)
            rc = ERROR_ALREADY_EXISTS;
        created = !rc;
    }
    if (!rc)
        rc = restore_import(h, key);
    if (!rc &&
        (rc = base_write_file_atomic((const char *)rec.data, abs, strlen(abs), LOADED_RECORD_MODE)))
        rc = reg_errno_to_win32(rc);
    reg_key_close(key);
    if (rc && created)
        reg_key_delete_tree(hku, name);
    reg_key_close(hku);
    hivex_close(h);
    free(abs);
    buf_free(&dir);
    buf_free(&rec);
    return rc;
}

int reg_hive_unload(reg_ctx *ctx, reg_root root, const char *name)
{
    int rc = load_check(ctx, root, name);
    if (rc)
        return rc;
    buf rec = BUF_INIT, path = BUF_INIT;
    reg_key *hku = NULL, *key = NULL;
    rc = load_record_path(ctx, name, &rec, false);
    if (!rc && (rc = base_read_file((const char *)rec.data, PATH_MAX, &path)))
        rc = rc == ENOENT ? ERROR_INVALID_PARAMETER : reg_errno_to_win32(rc);
    if (!rc && (!buf_cstr(&path) || strlen((char *)path.data) != path.len || path.len == 0))
        rc = ERROR_INVALID_DATA;
    if (!rc)
        rc = reg_key_open_root(ctx, REG_ROOT_HKU, &hku);
    if (!rc) {
        rc = reg_key_open(hku, name, REG_READ, &key);
        if (rc == ERROR_FILE_NOT_FOUND) {
            /* A record without its hive (it was deleted): forget it, nothing is loaded. */
            unlink((const char *)rec.data);
            rc = ERROR_INVALID_PARAMETER;
        }
    }
    if (!rc)
        rc = reg_hive_save(key, (const char *)path.data);
    reg_key_close(key);
    if (!rc)
        rc = reg_key_delete_tree(hku, name);
    if (!rc && unlink((const char *)rec.data) && errno != ENOENT)
        rc = reg_errno_to_win32(errno);
    reg_key_close(hku);
    buf_free(&rec);
    buf_free(&path);
    return rc;
}
