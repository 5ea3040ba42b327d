/* store.h - the contract of lib/store: the message store, one Maildir per mailbox under
 * <IMS_ROOT>/store, folders as Maildir++ subfolders (".MTS-IN"), readable by Dovecot, mutt
 * and any Maildir tool.
 *
 * Functions return 0 or an errno value; they never exit or print. */
#ifndef IMS_STORE_H
#define IMS_STORE_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
