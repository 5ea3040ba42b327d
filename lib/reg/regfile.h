/* regfile.h - .reg file parsing and writing (internal to lib/reg): the Windows 3.1 "REGEDIT",
 * "REGEDIT4" and "Windows Registry Editor Version 5.00" formats as Windows regedit/reg.exe use
 * them.
 *
 * A pure module: the parser turns bytes into events for a sink, the writer appends .reg text to a
 * buf; neither touches the store. Behaviour follows /work/shared/reference/registry.md 4.1-4.10. */
#ifndef IMS_REGFILE_H
#define IMS_REGFILE_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "reg/reg.h"

/* A physical line longer than this many characters is rejected as a syntax error (with the
 * hex value it would continue). Hex data continued over many lines is not bound by it: the
 * data of one value, as stored, is bounded by REG_MAX_DATA instead, and a value over that is
 * dropped with a diag on the line where it started. */
#define REGFILE_MAX_LINE (1u << 20)

/* regfile_sink - what the parser reports, in file order. Any member may be NULL (ignored).
 * Strings are NUL-terminated UTF-8 (WTF-8 for lone surrogates) and valid only during the call.
 * line is the 1-based physical line the key or value line starts on (a value continued over
 * several hex lines reports its first line), counted as diag counts it. */
typedef struct regfile_sink {
    /* a [key] line (or a Win3.1 HKEY_CLASSES_ROOT line): path is the full key path as written,
     * root not yet validated, trailing backslashes kept as written. Return 0 if the key is
     * open; nonzero if it could not be opened/created: values that follow are then dropped
     * (with a diag) until the next key line. The sink reports its own failure. */
    int (*key)(void *arg, unsigned line, const char *path);
    /* a [-key] line: delete the tree. path starts with 'H' or 'h' (other [-...] lines are
     * diagnosed); the sink validates the root and must never delete a root alone
     * ([-HKEY_CURRENT_USER] deletes nothing). After it no key is open. Return value ignored
     * except negative = fatal abort. */
    int (*delete_key)(void *arg, unsigned line, const char *path);
    /* a value line for the current key; name NULL means the default value (@ or ""). data is
     * the stored bytes (REG_SZ etc. already UTF-16LE with terminator as Windows stores them);
     * data is never NULL, even when len is 0, and len is at most REG_MAX_DATA. */
    int (*value)(void *arg, unsigned line, const char *name, uint32_t type, const uint8_t *data,
                 size_t len);
    /* "name"=- : delete the value of the current key (name NULL: the default value) */
    int (*delete_value)(void *arg, unsigned line, const char *name);
    /* diagnostic for a skipped/odd line: 1-based physical line number and message */
    void (*diag)(void *arg, unsigned line, const char *msg);
} regfile_sink;

/* Any sink callback returning a NEGATIVE value aborts the parse; regfile_parse then returns
 * that value negated (a Win32 error). */

enum regfile_format { REGFILE_NONE, REGFILE_WIN31, REGFILE_V4, REGFILE_V5 };

/* regfile_parse - parse a whole .reg file. A file starting FF FE is UTF-16LE, anything else
 * CP1252. Returns ERROR_SUCCESS (also for a "fuzzy" REGEDITx header: nothing imported,
 * *format = REGFILE_NONE, one diag on line 1), ERROR_INVALID_DATA for an invalid/missing header
 * or a file shorter than 2 bytes (no diag), ERROR_NOT_ENOUGH_MEMORY, ERROR_INVALID_PARAMETER
 * for a NULL sink. format may be NULL. Lines with syntax errors are skipped with a diag and
 * never change the result, as on Windows. */
int regfile_parse(const uint8_t *data, size_t len, const regfile_sink *sink, void *arg,
                  enum regfile_format *format);

/* Writer. version 5 writes UTF-16LE with BOM; version 4 writes CP1252 ("REGEDIT4"), characters
 * CP1252 lacks become '?'. Each function appends to out and returns ERROR_SUCCESS,
 * ERROR_NOT_ENOUGH_MEMORY, or ERROR_INVALID_PARAMETER (bad version, NULL out, malformed UTF-8,
 * NULL data with len > 0); on failure out is left as it was. */
int regfile_write_header(buf *out, int version);
/* regfile_write_key - "\r\n[path]\r\n" */
int regfile_write_key(buf *out, int version, const char *path);
/* regfile_write_value - one value line ("@=" for name NULL or ""), wrapped at 80 columns.
 * REG_SZ is written as a quoted string holding the text up to the first NUL of the first
 * len/2-1 UTF-16 units (Windows and Wine assume the terminator is there, so a value stored
 * without one loses its last character and one with an embedded NUL is cut there); REG_DWORD
 * of exactly 4 bytes as dword:%08x; REG_BINARY as hex:; everything else as hex(type):. */
int regfile_write_value(buf *out, int version, const char *name, uint32_t type, const uint8_t *data,
                        size_t len);
/* regfile_write_end - the final "\r\n" */
int regfile_write_end(buf *out, int version);

#endif
