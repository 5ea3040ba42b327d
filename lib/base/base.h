/* base.h - the contract of lib/base: growable buffers, UTF-8/UTF-16/CP1252 conversion,
 * atomic file writes, Windows time, random bytes, the state root.
 *
 * Functions return 0 on success or an errno value (ENOMEM, EILSEQ, ...); they never exit and
 * never print. Callers that speak Win32 or MAPI map these codes at their own boundary. */
#ifndef IMS_BASE_H
#define IMS_BASE_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* The default state root when IMS_ROOT is not set. */
#define BASE_DEFAULT_ROOT "/var/lib/ims"

/* buf - a growable byte buffer. Zero-initialise (BUF_INIT) before use; buf_free releases it. */
typedef struct buf {
    uint8_t *data; /* NULL until the first byte is added */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
} buf;
#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* buf_reserve - make room for at least n more bytes. Returns 0 or ENOMEM. */
int buf_reserve(buf *b, size_t n);
/* buf_reserve_capped - as buf_reserve, but the capacity never grows past cap bytes when the
 * need fits in cap (geometric growth would otherwise take twice the memory of a large,
 * bounded input). Returns 0 or ENOMEM. */
int buf_reserve_capped(buf *b, size_t n, size_t cap);
/* buf_add - append n bytes. Returns 0 or ENOMEM (the buffer is unchanged then). */
int buf_add(buf *b, const void *p, size_t n);
/* buf_addc - append one byte. */
int buf_addc(buf *b, uint8_t c);
/* buf_adds - append a NUL-terminated string, without its NUL. */
int buf_adds(buf *b, const char *s);
/* buf_printf - append formatted text (no NUL counted in len, but one is kept after it). */
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* buf_add_u16 - append one UTF-16 code unit, little-endian. */
int buf_add_u16(buf *b, uint16_t u);
/* buf_cstr - make data NUL-terminated (not counted in len) and return it; NULL on ENOMEM. */
char *buf_cstr(buf *b);
/* buf_detach - hand the allocation to the caller (free() it); the buffer is empty afterwards.
 * Returns a NUL-terminated copy even for an empty buffer, or NULL on ENOMEM. */
char *buf_detach(buf *b, size_t *len);
/* buf_free - release the memory; the buffer can be reused. */
void buf_free(buf *b);

/* Text conversion. Registry strings are UTF-16LE as Windows stores them; C callers see
 * UTF-8. Unpaired surrogates survive the trip as WTF-8 (generalised UTF-8), so the
 * conversion is lossless in both directions. */

/* base_utf8_to_utf16 - append the UTF-16LE form of s[0..n) to out (no terminator).
 * Returns 0, EILSEQ on a malformed sequence (out unchanged), or ENOMEM. */
int base_utf8_to_utf16(const char *s, size_t n, buf *out);
/* base_utf16_to_utf8 - append the UTF-8 (WTF-8) form of nunits UTF-16LE code units at p.
 * Returns 0 or ENOMEM. Never fails on content. */
int base_utf16_to_utf8(const uint8_t *p, size_t nunits, buf *out);
/* base_utf16_decode - one code point from UTF-16LE units at p (nunits available); stores
 * the number of units used in *used. A lone surrogate decodes as itself. */
uint32_t base_utf16_decode(const uint8_t *p, size_t nunits, size_t *used);
/* base_cp1252_to_utf16 - append the UTF-16LE form of CP1252 bytes. Returns 0 or ENOMEM. */
int base_cp1252_to_utf16(const uint8_t *s, size_t n, buf *out);
/* base_utf16_to_cp1252 - append the CP1252 form; unmappable characters become '?'.
 * Returns 0 or ENOMEM. */
int base_utf16_to_cp1252(const uint8_t *p, size_t nunits, buf *out);
/* base_utf8_valid - true when s[0..n) is well-formed UTF-8 (WTF-8 surrogates allowed). */
bool base_utf8_valid(const char *s, size_t n);

/* Files. */

/* base_read_file - read a whole file (at most max bytes) into out. Returns 0, an errno
 * value from open/read, or EFBIG when the file is larger than max. */
int base_read_file(const char *path, size_t max, buf *out);
/* base_write_all - write all n bytes to fd, retrying short writes and EINTR. Returns 0 or
 * an errno value. */
int base_write_all(int fd, const void *p, size_t n);
/* base_write_file_atomic - write data to path through a temporary file in the same
 * directory: write, fsync, rename, fsync the directory. On failure nothing replaces path
 * and the temporary file is removed. Returns 0 or an errno value. */
int base_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* base_mkdir_p - create a directory and its missing parents with mode. Returns 0 or errno. */
int base_mkdir_p(const char *path, unsigned mode);
/* base_pread_all - read n bytes of fd from off into p, retrying short reads and EINTR; *got
 * gets how many were read (fewer than n only at the end of the file). Returns 0 or errno. */
int base_pread_all(int fd, void *p, size_t n, uint64_t off, size_t *got);
/* base_opendirat - a directory stream of name under dirfd (name "." : dirfd's own
 * directory), from a descriptor of its own (dirfd's offset is untouched, and the stream
 * starts at the beginning); a symbolic link is not followed unless name is ".". NULL with
 * errno set on failure. The caller closes it with closedir. */
DIR *base_opendirat(int dirfd, const char *name);
/* base_rename_noreplace - move from (under fromfd) to to (under tofd) unless to exists: one
 * renameat2(RENAME_NOREPLACE), or where the file system has no such flag a link and an unlink
 * of from (which refuses to replace too). Returns 0, EEXIST when to exists (from is left
 * where it is), or another errno value. */
int base_rename_noreplace(int fromfd, const char *from, int tofd, const char *to);

/* Time. */

/* base_filetime_now - the current time as a Windows FILETIME (100 ns ticks since 1601). */
uint64_t base_filetime_now(void);
/* base_boot_id - the kernel's boot id (16 bytes) from /proc/sys/kernel/random/boot_id.
 * Returns 0 or an errno value. */
int base_boot_id(uint8_t id[16]);

/* base_crc32c - CRC-32C (Castagnoli, as iSCSI and ext4 use it) of n bytes, continuing crc:
 * 0 to start, the previous result to go on (crc of "123456789" is 0xe3069283). */
uint32_t base_crc32c(uint32_t crc, const void *data, size_t n);
/* base_crc32c_table - the same, always by the table (what a CPU without SSE 4.2 runs). */
uint32_t base_crc32c_table(uint32_t crc, const void *data, size_t n);

/* base_sha256 - the SHA-256 digest of n bytes. */
void base_sha256(const void *data, size_t n, uint8_t out[32]);

/* Base64 (RFC 4648 section 4, the standard alphabet with '=' padding), as SASL uses it. */

/* BASE_B64_LEN - the encoded length of n bytes, without the NUL. */
#define BASE_B64_LEN(n) ((((n) + 2) / 3) * 4)

/* base_b64_encode - encode p[0..n) into out, NUL-terminated; size must be at least
 * BASE_B64_LEN(n) + 1. Returns the encoded length, or (size_t)-1 when out is too small (out is
 * then ""). */
size_t base_b64_encode(const void *p, size_t n, char *out, size_t size);
/* base_b64_decode - decode s[0..n) strictly: only the alphabet, length a multiple of 4, '='
 * only as the last one or two characters, and the unused bits of the last group zero (so
 * each text has one meaning). An empty s decodes to nothing. Writes at most size bytes to
 * out; *outlen gets how many. Returns 0, EILSEQ for text that is not base64, or E2BIG when
 * the result would not fit. Allocates nothing. */
int base_b64_decode(const char *s, size_t n, uint8_t *out, size_t size, size_t *outlen);

/* Randomness and the state root. */

/* base_random - fill p with n bytes from the kernel's random source. Returns 0 or errno. */
int base_random(void *p, size_t n);
/* base_state_root - IMS_ROOT from the environment, or BASE_DEFAULT_ROOT. Never NULL. */
const char *base_state_root(void);

#endif
