/* store.h - the contract of lib/store: the message store, one Maildir per mailbox under
 * <IMS_ROOT>/store, folders as Maildir++ subfolders (".MTS-IN"), readable by Dovecot, mutt
 * and any Maildir tool.
 *
 * Functions return 0 or an errno value; they never exit or print. */
#ifndef IMS_STORE_H
#define IMS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define STORE_MAX_NAME 255 /* bytes in a mailbox alias or a folder name */

typedef struct store store;

/* store_open - the store rooted at dir (made, with mode 0700, when create is true). *out is
 * freed with store_close. ENOENT when it does not exist and create is false. */
int store_open(const char *dir, bool create, store **out);
void store_close(store *st);
/* store_dir - the store's directory (valid while st is open). */
const char *store_dir(const store *st);
/* store_mailbox_ensure - make the Maildir of mailbox `alias` (cur, new, tmp) when missing;
 * *path (may be NULL) gets its directory, malloc'd: free it. EINVAL for a bad alias (empty,
 * too long, '/', a leading '.'). */
int store_mailbox_ensure(store *st, const char *alias, char **path);
/* store_folder_ensure - make folder `name` of a mailbox (a Maildir++ subfolder ".name" with
 * cur, new, tmp, and the maildirfolder marker) when missing. EINVAL for a bad name. */
int store_folder_ensure(store *st, const char *alias, const char *name);
/* STORE_TMP_MAX_AGE - Maildir's rule: a file in tmp/ not accessed for 36 hours is a writer's
 * leftover (a crash, a full disk) and may be removed by anyone who looks through the Maildir. */
#define STORE_TMP_MAX_AGE (36 * 3600)
/* store_tmp_clean - remove the files of every mailbox's tmp/ and of each of its folders' tmp/
 * that were neither read nor written since before now - STORE_TMP_MAX_AGE; *removed (may be
 * NULL) counts them. Fresh files stay: a writer may be at work. Returns 0, or the errno value
 * of the store directory's listing (a mailbox or file that cannot be read is skipped). */
int store_tmp_clean(store *st, time_t now, size_t *removed);
/* store_maildir_give - hand the Maildir at path (it, cur, new and tmp; and the store directory
 * above it when root owns that) to uid:gid: root makes mailboxes that the service account
 * delivers into. Symbolic links are not followed. Returns 0 or an errno value. */
int store_maildir_give(const char *path, uid_t uid, gid_t gid);

/* ===========================================================================================
 * The directory of recipients (directory.c, address.c).
 *
 * Kept in the registry apart from the mail, as Exchange kept its directory:
 *   HKLM\Software\IMS\Directory\Domains      one REG_DWORD value per accepted domain, named
 *                                            by the domain in lower case; data 1 (0: not
 *                                            accepted)
 *   HKLM\Software\IMS\Directory\Mailboxes\<alias>
 *       DisplayName     REG_SZ
 *       ProxyAddresses  REG_MULTI_SZ, Exchange's form: exactly one "SMTP:primary@domain",
 *                       any number of "smtp:secondary@domain"; entries of other types
 *                       ("X400:...") are kept but not used
 * A mailbox's Maildir is <IMS_ROOT>/store/<alias>, derived, never stored. Every change is one
 * registry transaction: it is seen whole or not at all, by every process.
 *
 * Functions return 0 or an errno value; the errors that say something about the request are
 *   EINVAL      bad alias, address, domain or display name; an address whose domain is not
 *               accepted; an address given twice; removing the primary address
 *   EEXIST      the domain, mailbox or address (of this mailbox) exists already
 *   ENOENT      no such domain, mailbox or address (of this mailbox)
 *   EADDRINUSE  the address belongs to another mailbox
 *   EBUSY       a domain still used by some mailbox's address cannot be removed
 *   E2BIG       more than DIR_MAX_ADDRESSES addresses
 * and registry failures map to EACCES (no write access to HKLM), EPERM, ENOENT, ENOMEM,
 * ENOSPC or EIO (the dir_err tells them from the answers above).
 * Functions taking a dir_err fill it (when not NULL) with the precise reason, the item at
 * fault and, for a registry failure, the Win32 error: dir_err_format makes the message.
 *
 * Threads: a directory belongs, as the reg_ctx it was opened on, to one thread at a time. */

#include "reg/reg.h"

#define DIR_KEY "Software\\IMS\\Directory" /* under HKLM */
#define DIR_DOMAINS_KEY DIR_KEY "\\Domains"
#define DIR_MAILBOXES_KEY DIR_KEY "\\Mailboxes"
#define DIR_STORE_SUBDIR "store" /* the Maildirs: <IMS_ROOT>/store/<alias> */

#define DIR_MAX_ALIAS 64       /* bytes of an alias: [A-Za-z0-9._-], not starting with '.' */
#define DIR_MAX_LOCAL 64       /* bytes of an address's local part (RFC 5321 4.5.3.1.1) */
#define DIR_MAX_DOMAIN 253     /* bytes of a domain name (RFC 1035, without the final dot) */
#define DIR_MAX_LABEL 63       /* bytes of one domain label */
#define DIR_MAX_ADDRESS 254    /* bytes of an address (RFC 5321's 256-byte path less "<>") */
#define DIR_MAX_NAME 256       /* characters of a display name (Exchange's limit) */
#define DIR_MAX_ADDRESSES 1024 /* SMTP addresses of one mailbox */
/* DIR_RESERVED_ALIAS - the gateway's own mailbox in the store (lib/ims): no recipient may
 * share its Maildir. Compared without regard to case. */
#define DIR_RESERVED_ALIAS "MSExchangeIMC"

typedef struct directory directory;

/* dir_reason - why a change or a query was refused. */
typedef enum dir_reason {
    DIR_OK = 0,
    DIR_BAD_ALIAS,           /* EINVAL: the alias breaks the rules */
    DIR_RESERVED,            /* EINVAL: the alias is DIR_RESERVED_ALIAS */
    DIR_BAD_NAME,            /* EINVAL: display name empty, too long, control characters */
    DIR_BAD_DOMAIN,          /* EINVAL: not a domain name */
    DIR_BAD_ADDRESS,         /* EINVAL: not local@domain with a dot-atom local part */
    DIR_DOMAIN_NOT_ACCEPTED, /* EINVAL: the address's domain is not an accepted domain */
    DIR_ADDRESS_REPEATED,    /* EINVAL: the same address twice in one request */
    DIR_PRIMARY_REMOVED,     /* EINVAL: the primary address cannot be removed */
    DIR_NO_ADDRESS,          /* EINVAL: a mailbox needs an address */
    DIR_TOO_MANY_ADDRESSES,  /* E2BIG */
    DIR_DOMAIN_EXISTS,       /* EEXIST */
    DIR_MAILBOX_EXISTS,      /* EEXIST (aliases are compared without regard to case) */
    DIR_ADDRESS_EXISTS,      /* EEXIST: already an address of this mailbox */
    DIR_NO_SUCH_DOMAIN,      /* ENOENT */
    DIR_NO_SUCH_MAILBOX,     /* ENOENT */
    DIR_NO_SUCH_ADDRESS,     /* ENOENT: not an address of this mailbox */
    DIR_ADDRESS_TAKEN,       /* EADDRINUSE: owner names the mailbox that has it */
    DIR_DOMAIN_IN_USE,       /* EBUSY: owner names a mailbox with an address in it */
    DIR_REGISTRY,            /* the registry failed: reg_error */
    DIR_MAILDIR,             /* the Maildir could not be made: sys_error */
    DIR_SYSTEM,              /* memory and the like: sys_error */
    DIR_BAD_PASSWORD,        /* EINVAL: empty, longer than DIR_MAX_PASSWORD, or with a NUL */
    DIR_HASH,                /* libcrypt could not make a hash: sys_error */
} dir_reason;

typedef struct dir_err {
    dir_reason reason;
    int reg_error;                     /* Win32 error with DIR_REGISTRY */
    int sys_error;                     /* errno value with DIR_MAILDIR, DIR_SYSTEM */
    char subject[DIR_MAX_ADDRESS + 1]; /* the alias, domain or address at fault (cut short) */
    char owner[DIR_MAX_ALIAS + 1];     /* DIR_ADDRESS_TAKEN, DIR_DOMAIN_IN_USE */
} dir_err;

/* dir_err_format - a one-line message for err ("address "a@b.example" belongs to mailbox
 * "bob""), without a final period, into out (always terminated). Returns out. */
const char *dir_err_format(const dir_err *err, char *out, size_t size);

/* Validation (address.c): the rules the directory applies, for callers that check early. */
/* dir_alias_valid - 1..DIR_MAX_ALIAS bytes of [A-Za-z0-9._-], not starting with '.'. */
bool dir_alias_valid(const char *alias);
/* dir_domain_valid - labels of letters, digits and '-' (not first or last), 1..DIR_MAX_LABEL
 * bytes each, joined by '.', DIR_MAX_DOMAIN bytes at most (RFC 5321 "Domain"; no address
 * literals, no final dot). */
bool dir_domain_valid(const char *domain);
/* dir_address_valid - local@domain: a dot-atom local part (RFC 5322 atext, no quoted
 * strings) of at most DIR_MAX_LOCAL bytes and a dir_domain_valid domain, DIR_MAX_ADDRESS
 * bytes in all. */
bool dir_address_valid(const char *address);
/* dir_name_valid - a display name: valid UTF-8, 1..DIR_MAX_NAME characters, no control
 * characters. */
bool dir_name_valid(const char *name);

/* dir_open - the directory in reg's HKLM, its index loaded and watched for changes (made by
 * any process). Needs only read access; the Directory key need not exist yet. Free with
 * dir_close before reg is closed. */
int dir_open(reg_ctx *reg, directory **out);
void dir_close(directory *d);

/* dir_notify_fd - a descriptor that becomes readable when the directory may have changed:
 * poll it from an event loop and call dir_refresh. It stays the same for the dir's life. */
int dir_notify_fd(const directory *d);
/* dir_refresh - reload the index when the registry changed since the last load (or when
 * the last reload failed). Cheap when nothing changed. On failure the previous index stays
 * in use and the next call tries again. */
int dir_refresh(directory *d);

/* dir_lookup - the alias of the mailbox that has address (the whole address compared
 * without regard to case; only addresses in accepted domains count); *alias is malloc'd.
 * ENOENT when no mailbox has it. Refreshes first when the notify descriptor is readable,
 * so callers without an event loop see every committed change; a reload that fails is
 * returned (a temporary failure: retry later), with *alias NULL. */
int dir_lookup(directory *d, const char *address, char **alias);
/* dir_is_local_domain - domain (any case) is accepted. Refreshes as dir_lookup does; when
 * the reload fails the last index loaded answers. */
bool dir_is_local_domain(directory *d, const char *domain);

/* dir_names_free - free a list from dir_domain_list or dir_mailbox_list. */
void dir_names_free(char **names, size_t n);

/* Domains. Read from the registry, not the index: always current. */
/* dir_domain_add - accept mail for domain (stored lower-cased). EEXIST when accepted. */
int dir_domain_add(directory *d, const char *domain, dir_err *err);
/* dir_domain_remove - stop accepting domain. ENOENT when not accepted, EBUSY while a
 * mailbox has an address in it (remove those addresses first). */
int dir_domain_remove(directory *d, const char *domain, dir_err *err);
/* dir_domain_list - the accepted domains, sorted; *names (NULL when none) is freed with
 * dir_names_free. */
int dir_domain_list(directory *d, char ***names, size_t *n);

/* dir_mailbox - a mailbox as dir_mailbox_show reports it; free with dir_mailbox_free. */
typedef struct dir_mailbox {
    char *alias;        /* as stored (the case it was created with) */
    char *display_name; /* "" when the registry has none */
    char *primary;      /* NULL when the registry has no "SMTP:" entry */
    char **secondary;   /* the "smtp:" entries, in stored order */
    size_t nsecondary;
    char *maildir; /* <IMS_ROOT>/store/<alias> */
    bool password; /* a password is set (its PasswordId is there; the hash is never shown) */
} dir_mailbox;
void dir_mailbox_free(dir_mailbox *m);

/* dir_mailbox_add - a new mailbox: alias, display name (NULL: the alias), addresses[0] the
 * primary SMTP address and the rest secondary ones. Every address must be valid, in an
 * accepted domain, given once and belong to no other mailbox. The Maildir is made (as the
 * calling user) when missing; an existing one, left by a removed mailbox of that alias, is
 * taken over with its mail. *maildir (may be NULL) gets its path, malloc'd. */
int dir_mailbox_add(directory *d, const char *alias, const char *display_name,
                    const char *const *addresses, size_t n, char **maildir, dir_err *err);

/* dir_change - what dir_mailbox_set changes; zero-initialise and fill what is wanted. */
typedef struct dir_change {
    const char *display_name; /* the new display name; NULL: keep */
    const char *const *add;   /* secondary addresses to add */
    size_t nadd;
    const char *const *remove; /* addresses to remove (not the primary, unless primary
                                * names another) */
    size_t nremove;
    const char *primary; /* the new primary address (added when the mailbox lacks
                          * it; the old primary becomes secondary); NULL: keep */
} dir_change;
/* dir_mailbox_set - apply c in one transaction: removals (each must be an address of the
 * mailbox), then additions (checked as dir_mailbox_add checks), then the primary. */
int dir_mailbox_set(directory *d, const char *alias, const dir_change *c, dir_err *err);
/* dir_mailbox_remove - delete the mailbox from the directory. Its Maildir and the mail in it
 * stay: an admin command never deletes mail. */
int dir_mailbox_remove(directory *d, const char *alias, dir_err *err);
/* dir_mailbox_show - the mailbox alias (any case). */
int dir_mailbox_show(directory *d, const char *alias, dir_mailbox *out, dir_err *err);
/* dir_mailbox_list - the aliases in the registry's order (without regard to case, as Windows
 * sorts keys); keys whose names break the alias rules (made by hand) are skipped. Free with
 * dir_names_free. */
int dir_mailbox_list(directory *d, char ***names, size_t *n);

/* ===========================================================================================
 * Passwords: the mailboxes are the accounts of SMTP AUTH (password.c, directory.c).
 *
 * A password is kept only as a yescrypt hash made with libcrypt, as Debian hashes its users'
 * passwords ("$y$..." at libcrypt's default cost). HKLM is readable by every local user
 * (docs/registry.md: its data.mdb is 0644), so the hash is not kept there but in the service
 * account's own hive, which only that account and root can read (mode 0600 in a 0700
 * directory owned by the account):
 *   HKLM\Software\IMS\Directory\Mailboxes\<alias>
 *       PasswordId          REG_BINARY  DIR_PASSWORD_ID_BYTES random bytes, new at every set
 *   HKU\<SID of the service account>\Software\IMS\Directory\Passwords
 *       <PasswordId as 32 lowercase hex digits>   REG_SZ   the hash
 * A hash is only ever found through the id its mailbox holds now, so a password left behind
 * by a removed mailbox, or by a change cut short, never opens a new mailbox of the same alias;
 * and every set or clear changes HKLM, which wakes the directory's watchers.
 *
 * The hive is HKCU of the directory's registry context: imsd, the service account, uses its
 * own; imsadm run as root points the context at the service account with reg_ctx_set_user
 * before dir_open. Setting a password writes the hash there first, then the id in HKLM (one
 * transaction each); the hash an old id named is deleted afterwards. */

#define DIR_PASSWORDS_KEY DIR_KEY "\\Passwords" /* under HKCU of the service account */
#define DIR_PASSWORD_ID_VALUE "PasswordId"      /* REG_BINARY in the mailbox's key */
#define DIR_PASSWORD_ID_BYTES 16
/* DIR_MAX_PASSWORD - bytes of a password: libcrypt hashes at most 511 (its
 * CRYPT_MAX_PASSPHRASE_SIZE less the NUL); RFC 4616 has servers accept 255 at least. */
#define DIR_MAX_PASSWORD 511
#define DIR_MAX_HASH 255 /* bytes of a stored hash (yescrypt's are 73); longer: ignored */

/* dir_password_valid - len bytes at password are a password the directory takes: 1 to
 * DIR_MAX_PASSWORD bytes, none of them NUL (any other bytes: UTF-8 is not required). */
bool dir_password_valid(const char *password, size_t len);

/* dir_password_set - give mailbox alias (any case) the password (NUL-terminated): a new random
 * salt, a yescrypt hash, a new PasswordId. Costs one hash (about 30 ms, 16 MiB). Needs write
 * access to HKLM and to HKCU of reg's user. EINVAL (DIR_BAD_ALIAS, DIR_BAD_PASSWORD), ENOENT
 * (DIR_NO_SUCH_MAILBOX), DIR_HASH, or a registry failure. */
int dir_password_set(directory *d, const char *alias, const char *password, dir_err *err);
/* dir_password_clear - the mailbox has no password any more (none set: 0, nothing done).
 * ENOENT (DIR_NO_SUCH_MAILBOX) or a registry failure. */
int dir_password_clear(directory *d, const char *alias, dir_err *err);

/* dir_auth_lookup - the account of an SMTP AUTH login, from the index (no hashing, no
 * registry read unless the directory changed: for the event loop's thread). login is the
 * alias (without regard to case) or any SMTP address of the mailbox that dir_lookup finds.
 * Returns 0 with the stored alias and the hash (NUL-terminated, copied into hash of hashsize
 * bytes: DIR_MAX_HASH + 1 always suffices); ENOENT when there is no such account or it has
 * no password (callers must not tell these apart to the client); ERANGE when hashsize is too
 * small; another errno value when the reload the refresh made failed. alias and hash are ""
 * unless 0 is returned. Refreshes as dir_lookup does. */
int dir_auth_lookup(directory *d, const char *login, char alias[DIR_MAX_ALIAS + 1], char *hash,
                    size_t hashsize);

/* dir_password_verify - the len bytes at password match hash (from dir_auth_lookup). Pure and
 * thread-safe: for a worker thread (it costs one yescrypt computation, about 30 ms of CPU at
 * the default cost). With hash NULL, or one that is not a "$y$" hash, or a password that
 * dir_password_valid refuses, it still computes a yescrypt hash of the default cost (over a
 * fixed setting) and returns false: an unknown account takes as long as a wrong password.
 * The result is compared in constant time. Memory: libcrypt's struct crypt_data (32 KiB)
 * and a copy of the password are on the heap, never the caller's stack (a worker thread
 * may have a small one), wiped and freed before returning; yescrypt itself allocates its
 * 16 MiB of working memory for the call. False also when memory runs out. */
bool dir_password_verify(const char *hash, const char *password, size_t len);

#endif
