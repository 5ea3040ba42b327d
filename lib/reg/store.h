/* store.h - internals of lib/reg shared by its files: hives on LMDB, key records, name
 * folding. Not part of the module's contract (that is reg.h).
 *
 * On-disk layout, one LMDB environment per hive ($IMS_ROOT/registry/HKLM,
 * $IMS_ROOT/registry/HKU/<name>), with these databases:
 *   keys      id (u64 BE)                     -> key record (struct keyrec + name + class)
 *   children  parent id (u64 BE) + fold key   -> child id (u64 LE)
 *   values    key id (u64 BE) + fold key      -> value record (struct valrec + name + data)
 *   vorder    key id (u64 BE) + seq (u32 BE)  -> fold key of the value (creation order)
 *   owned     token (16) + key id (u64 BE)    -> kind (owner-bound keys, for purging):
 *                                               "" or 0 exclusive owner, 1 shared owner
 *   volatile  key id (u64 BE)                 -> "" (topmost volatile keys, for purging)
 *   journal   change seq (u64 BE)             -> filter (u32), n (u32), ids (u64 LE) x n
 *   meta      "version" | "next_id" | "seq" | "boot" -> numbers / boot id
 * Ids are never reused, so a value record under an id proves its key still exists. */
#ifndef IMS_REG_STORE_H
#define IMS_REG_STORE_H

#include <lmdb.h>

#include "reg/reg.h"

#define REG_STORE_VERSION 1u     /* bump on any change of the layout above */
#define REG_MAPSIZE (1ull << 32) /* address space reserved per hive; the file grows as used */
#define REG_FOLD_MAX 240         /* fold-key units kept verbatim; longer names end in a hash */
#define REG_FOLD_PREFIX 224      /* units kept before the hash when a name is longer */
#define REG_FOLDKEY_MAX (2 * REG_FOLD_MAX)
#define REG_JOURNAL_KEEP 4096 /* change records kept for notification */
#define REG_ROOT_ID 1         /* id of every hive's root key */
#define REG_TOKEN_LEN 16

#define KF_VOLATILE 0x1  /* created volatile: gone when the boot id changes */
#define KF_OWNED 0x2     /* under an owner-bound key: gone when the owner dies */
#define KF_OWNER_TOP 0x4 /* the key that was created owner-bound itself (or bound) */
#define KF_SHARED 0x8    /* its owner is shared: alive while any process holds the lock */

/* keyrec - the fixed head of a key record; name and class (UTF-16LE) follow it. */
struct keyrec {
    uint64_t parent;              /* parent id, 0 for the hive root */
    uint64_t last_write;          /* FILETIME */
    uint32_t flags;               /* KF_* */
    uint32_t next_seq;            /* next value creation sequence number */
    uint8_t boot[16];             /* boot id at creation, for volatile keys */
    uint8_t token[REG_TOKEN_LEN]; /* owner token, for KF_OWNED keys */
    uint16_t name_units;
    uint16_t class_units;
    uint32_t pad;
};

/* valrec - the fixed head of a value record; name (UTF-16LE) and data follow it. */
struct valrec {
    uint32_t seq; /* creation order */
    uint32_t type;
    uint32_t name_units;
    uint32_t pad;
};

/* reg_owner_cache - what this process knows of one owner token's liveness. */
struct owner_cache {
    uint8_t token[REG_TOKEN_LEN];
    int fd;      /* lock file opened read-only, -1 if missing */
    bool shared; /* a shared owner: any lock means alive, and it may come back */
    bool dead;   /* an exclusive owner's death is forever: tokens are never reused */
};

typedef struct reg_hive {
    struct reg_hive *next;
    reg_ctx *ctx;
    bool hku;   /* a hive under HKU (else HKLM) */
    char *name; /* "HKLM" or the HKU child name as stored on disk */
    char *dir;
    MDB_env *env;
    MDB_dbi db_keys, db_children, db_values, db_vorder, db_owned, db_volatile, db_journal, db_meta;
    bool writable;
    MDB_txn *wtxn;     /* the write transaction in progress, if any */
    bool explicit_txn; /* wtxn was started by reg_txn_begin */
    bool dirty;        /* wtxn changed something: touch the notify file after commit */
    bool purge_wanted; /* a reader met a dead key: purge at the next write */
    MDB_txn *rtxn;     /* a reset read transaction kept for renewal */
    struct owner_cache *owners;
    size_t nowners;
} reg_hive;

struct reg_ctx {
    char *root;   /* state root */
    char *regdir; /* root/registry */
    uid_t uid;    /* user of HKCU */
    uid_t euid;
    bool privileged; /* root, or the owner of the state root */
    char sid[32];
    uint8_t boot[16];
    reg_hive *hives;
    char *damaged; /* the data file of the last hive refused as damaged (reg_ctx_damaged) */
};

enum key_kind { KH_REAL, KH_HKU, KH_HKCR };

struct reg_key {
    reg_ctx *ctx;
    reg_root root;
    enum key_kind kind;
    reg_hive *hive; /* KH_REAL */
    uint64_t id;
    uint32_t flags;
    uint8_t boot[16];
    uint8_t token[REG_TOKEN_LEN];
    unsigned depth; /* levels below the hive root */
    bool wow32;     /* in the 32-bit view: keys opened from it without a view flag are too */
    uint8_t at;     /* where the key is in the paths WOW64 redirects (enum view_at, key.c) */
    uint64_t lid;   /* the key at the handle's logical place: id, or id's parent for a key
                       opened as Software in the 32-bit view (id is then its Wow6432Node) */
};

struct reg_owner {
    reg_hive *hive;
    bool shared;
    uint8_t token[REG_TOKEN_LEN];
    int fd;
    char *path;
};

/* folding (fold.c) */
extern const uint16_t reg_fold_table[][2];
extern const size_t reg_fold_table_len;
uint16_t reg_fold_unit(uint16_t u);
/* reg_foldkey - the index key of a UTF-8 name: folded UTF-16 units, big-endian, hashed past
 * REG_FOLD_MAX units. *units gets the name's length in UTF-16 units. Returns ERROR_*. */
int reg_foldkey(const char *name, size_t n, uint8_t out[REG_FOLDKEY_MAX], size_t *outlen,
                size_t *units);

/* hives (hive.c) */
/* reg_hive_get - the open hive (HKLM when hkuname is NULL); create makes it when missing
 * and permitted, and *created (may be NULL) says whether this call made it. */
int reg_hive_get(reg_ctx *ctx, const char *hkuname, bool create, reg_hive **out, bool *created);
int reg_hive_rtxn(reg_hive *h, MDB_txn **txn);
void reg_hive_rtxn_done(reg_hive *h, MDB_txn *txn);
int reg_hive_wbegin(reg_hive *h, MDB_txn **txn, bool *own);
int reg_hive_wend(reg_hive *h, MDB_txn *txn, bool own, int rc);
int reg_hive_drop(reg_ctx *ctx, const char *hkuname);
int reg_mdb_err(int rc);
char *reg_owner_path(reg_hive *h, const uint8_t token[REG_TOKEN_LEN], bool shared);
bool reg_owner_alive(reg_hive *h, const uint8_t token[REG_TOKEN_LEN], bool shared);
int reg_purge_stale(reg_hive *h, MDB_txn *txn);

/* key records (key.c) */
int reg_keyrec_get(reg_hive *h, MDB_txn *txn, uint64_t id, struct keyrec *rec, MDB_val *raw);
bool reg_keyrec_live(reg_hive *h, const struct keyrec *rec);
int reg_journal_add(reg_hive *h, MDB_txn *txn, uint64_t id, uint32_t filter);
int reg_tree_delete(reg_hive *h, MDB_txn *txn, uint64_t id, bool keep_top);
int reg_key_check(reg_key *key, MDB_txn *txn, struct keyrec *rec);
int reg_foldkey_u16(const uint8_t *units, size_t n, uint8_t out[REG_FOLDKEY_MAX], size_t *outlen);
void reg_be64(uint8_t *p, uint64_t v);
uint64_t reg_rd_be64(const uint8_t *p);

#endif
