/* password.h - lib/store's internal interface between the directory (directory.c) and the
 * hashing of passwords (password.c). Not installed, not for other modules. */
#ifndef IMS_STORE_PASSWORD_H
#define IMS_STORE_PASSWORD_H

#include <stddef.h>

/* dir_pw_hash - a yescrypt hash of password (NUL-terminated, dir_password_valid) with a new
 * random salt at libcrypt's default cost, into out (size bytes, DIR_MAX_HASH + 1 suffice).
 * Returns 0, ENOMEM, ERANGE (out too small) or the errno value libcrypt left (EINVAL when
 * yescrypt is not supported, or EIO when it gave no errno). */
int dir_pw_hash(const char *password, char *out, size_t size);

#endif
