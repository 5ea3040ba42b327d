/* regfile_test.c - tests of the .reg parser and writer (lib/reg/regfile.c): sink event traces
 * for the edge cases of registry.md section 4 (most from Wine's programs/reg/tests/import.c),
 * golden export files byte for byte, write-then-parse round trips, and the line numbers
 * reg_import (lib/reg/import.c) reports. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "reg/regfile.h"

/* ------------------------------------------------------------------------------------------
 * A sink that records every event as text: "key P", "nokey P" (refused), "del P", "value N T D",
 * "delval N", "diag L", joined with '|'. N is "@" for the default value, T the type in hex, D
 * the data: "..." decoded as UTF-16 for types 1, 2 and 7 of even length (\0 \n \r \\ \" and
 * \x{hex} for other non-ASCII), else x: and the bytes in hex; with sizes set, #len instead.
 * With lines set, " @L" (the line passed) ends every event but diag. */

typedef struct trace {
    buf out;
    bool messages;   /* add ": message" to diag events */
    bool lines;      /* add " @line" to the other events */
    bool sizes;      /* value data as #length only */
    int value_rc;    /* what value() returns from the abort_at-th value on */
    int key_rc;      /* what key() returns for an accepted root */
    int del_rc;      /* what delete_key() returns */
    unsigned values; /* values seen */
    unsigned abort_at;
} trace;

static void tr_sep(trace *t)
{
    if (t->out.len)
        buf_addc(&t->out, '|');
}

/* tr_root_ok - the roots the glue accepts, as far as the tests need: a known name in any case,
 * then a backslash or the end. */
static bool tr_root_ok(const char *path)
{
    static const char *const roots[] = {"HKEY_CURRENT_USER", "HKCU", "HKEY_CLASSES_ROOT",
                                        "HKEY_LOCAL_MACHINE"};
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++) {
        size_t n = strlen(roots[i]);
        if (!strncasecmp(path, roots[i], n) && (path[n] == 0 || path[n] == '\\'))
            return true;
    }
    return false;
}

static void tr_data(buf *b, uint32_t type, const uint8_t *d, size_t n)
{
    if ((type == 1 || type == 2 || type == 7) && n % 2 == 0) {
        buf_addc(b, '"');
        for (size_t i = 0; i < n; i += 2) {
            unsigned c = d[i] | (unsigned)d[i + 1] << 8;
            if (c == 0)
                buf_adds(b, "\\0");
            else if (c == '\n')
                buf_adds(b, "\\n");
            else if (c == '\r')
                buf_adds(b, "\\r");
            else if (c == '\\')
                buf_adds(b, "\\\\");
            else if (c == '"')
                buf_adds(b, "\\\"");
            else if (c >= 0x20 && c < 0x7f)
                buf_addc(b, (uint8_t)c);
            else
                buf_printf(b, "\\x{%x}", c);
        }
        buf_addc(b, '"');
    } else {
        buf_adds(b, "x:");
        for (size_t i = 0; i < n; i++)
            buf_printf(b, "%02x", d[i]);
    }
}

static void tr_line(trace *t, unsigned line)
{
    if (t->lines)
        buf_printf(&t->out, " @%u", line);
}

static int tr_key(void *arg, unsigned line, const char *path)
{
    trace *t = arg;
    bool ok = tr_root_ok(path);
    tr_sep(t);
    buf_printf(&t->out, "%s %s", ok ? "key" : "nokey", path);
    tr_line(t, line);
    return ok ? t->key_rc : 1;
}

static int tr_delete_key(void *arg, unsigned line, const char *path)
{
    trace *t = arg;
    tr_sep(t);
    buf_printf(&t->out, "del %s", path);
    tr_line(t, line);
    return t->del_rc;
}

static int tr_value(void *arg, unsigned line, const char *name, uint32_t type, const uint8_t *data,
                    size_t len)
{
    trace *t = arg;
    assert_non_null(data);
    tr_sep(t);
    buf_printf(&t->out, "value %s %x ", name ? name : "@", (unsigned)type);
    if (t->sizes)
        buf_printf(&t->out, "#%zu", len);
    else
        tr_data(&t->out, type, data, len);
    tr_line(t, line);
    t->values++;
    return t->abort_at && t->values >= t->abort_at ? t->value_rc : 0;
}

static int tr_delete_value(void *arg, unsigned line, const char *name)
{
    trace *t = arg;
    tr_sep(t);
    buf_printf(&t->out, "delval %s", name ? name : "@");
    tr_line(t, line);
    return 0;
}

static void tr_diag(void *arg, unsigned line, const char *msg)
{
    trace *t = arg;
    tr_sep(t);
    buf_printf(&t->out, "diag %u", line);
    if (t->messages)
        buf_printf(&t->out, ": %s", msg);
}

static const regfile_sink tr_sink = {tr_key, tr_delete_key, tr_value, tr_delete_value, tr_diag};

/* utf16_file - the UTF-16LE form of UTF-8 text, with a BOM first. */
static void utf16_file(buf *out, const char *s, size_t n)
{
    assert_int_equal(buf_add(out, "\xff\xfe", 2), 0);
    assert_int_equal(base_utf8_to_utf16(s, n, out), 0);
}

/* parse_trace - parse len bytes and return the trace (free it) and the result. */
static char *parse_trace(trace *t, const uint8_t *data, size_t len, int *rc,
                         enum regfile_format *fmt)
{
    *rc = regfile_parse(data, len, &tr_sink, t, fmt);
    char *s = buf_detach(&t->out, NULL);
    assert_non_null(s);
    return s;
}

/* ------------------------------------------------------------------------------------------
 * The parse table */

enum enc {
    ANSI, /* body as bytes */
    U16,  /* body is UTF-8 text, stored as UTF-16LE after a BOM */
    RAW,  /* body as bytes, len given (may hold NULs) */
};

/* expected format + 1, so that 0 means "not checked" */
enum { F_ANY, F_NONE, F_WIN31, F_V4, F_V5 };

typedef struct pcase {
    const char *what;
    enum enc enc;
    const char *body;
    size_t len;
    int rc;
    int fmt;
    const char *want;
} pcase;

#define H4 "REGEDIT4\n"
#define H5 "Windows Registry Editor Version 5.00\n"
#define K "[HKCU\\T]\n"
#define KT "key HKCU\\T"
#define OK ERROR_SUCCESS
#define BAD ERROR_INVALID_DATA
/* A4: a REGEDIT4 ANSI file whose body starts on line 3 after [HKCU\T]. U5: the same as a
 * UTF-16 version 5 file. W31: a REGEDIT file whose body starts on line 2. */
#define A4(what, body, want)                                                                       \
    {                                                                                              \
        what, ANSI, H4 K body, 0, OK, F_V4, KT want                                                \
    }
#define U5(what, body, want)                                                                       \
    {                                                                                              \
        what, U16, H5 K body, 0, OK, F_V5, KT want                                                 \
    }
#define W31(what, body, want)                                                                      \
    {                                                                                              \
        what, ANSI, "REGEDIT\r\n" body, 0, OK, F_WIN31, want                                       \
    }
#define HDR(what, body, rc, fmt, want)                                                             \
    {                                                                                              \
        what, ANSI, body, 0, rc, fmt, want                                                         \
    }
#define RAWC(what, lit, rc, fmt, want)                                                             \
    {                                                                                              \
        what, RAW, lit, sizeof(lit) - 1, rc, fmt, want                                             \
    }

static const pcase parse_cases[] = {
    /* 4.1 headers */
    HDR("lowercase regedit", "regedit\n", BAD, F_NONE, ""),
    HDR("lowercase regedit4", "regedit4\n", BAD, F_NONE, ""),
    HDR("Regedit4", "Regedit4\n\n" K "\"Test3\"=\"Value\"\n", BAD, F_NONE, ""),
    HDR("REGEDIT without newline", "REGEDIT", OK, F_WIN31, ""),
    HDR("REGEDIT", "REGEDIT\n", OK, F_WIN31, ""),
    HDR("REGEDIT4", "REGEDIT4\n", OK, F_V4, ""),
    HDR("REGEDIT4 without newline", "REGEDIT4", OK, F_V4, ""),
    HDR("space before header", " REGEDIT4\n" K "\"a\"=\"b\"\n", OK, F_V4, KT "|value a 1 \"b\\0\""),
    HDR("tab before header", "\tREGEDIT4\n" K "\"a\"=\"b\"\n", OK, F_V4, KT "|value a 1 \"b\\0\""),
    HDR("blanks before header", " \t REGEDIT4\n" K, OK, F_V4, KT),
    HDR("blank first line", "\nREGEDIT4\n" K, BAD, F_NONE, ""),
    HDR("AREGEDIT4", "AREGEDIT4\n" K, BAD, F_NONE, ""),
    HDR("1REGEDIT4", "1REGEDIT4\n" K, BAD, F_NONE, ""),
    HDR("REGEDIT3 is fuzzy", "REGEDIT3\n\n" K "\"Test1\"=\"Value\"\n", OK, F_NONE, "diag 1"),
    HDR("REGEDIT5 is fuzzy", "REGEDIT5\n" K "\"a\"=\"b\"\n", OK, F_NONE, "diag 1"),
    HDR("REGEDIT9 is fuzzy", "REGEDIT9\n", OK, F_NONE, "diag 1"),
    HDR("REGEDIT 4 is fuzzy", "REGEDIT 4\n" K, OK, F_NONE, "diag 1"),
    HDR("REGEDIT4 FOO is fuzzy", "REGEDIT4 FOO\n" K, OK, F_NONE, "diag 1"),
    HDR("REGEDIT4FOO is fuzzy", "REGEDIT4FOO\n" K, OK, F_NONE, "diag 1"),
    HDR("trailing blank makes it fuzzy", "REGEDIT4 \n" K, OK, F_NONE, "diag 1"),
    HDR("version 4.00", "Windows Registry Editor Version 4.00\n\n" K "\"Test9\"=\"Value\"\n", BAD,
        F_NONE, ""),
    HDR("version 5", "Windows Registry Editor Version 5\n\n" K, BAD, F_NONE, ""),
    HDR("upper-case v5", "WINDOWS REGISTRY EDITOR VERSION 5.00\n\n" K, BAD, F_NONE, ""),
    HDR("lower-case version", "Windows Registry Editor version 5.00\n\n" K, BAD, F_NONE, ""),
    HDR("v5 header in an ANSI file", H5 K "\"Test4\"=\"Value4\"\n", OK, F_V5,
        KT "|value Test4 1 \"Value4\\0\""),
    HDR("v5 header without newline", "Windows Registry Editor Version 5.00", OK, F_V5, ""),
    HDR("UTF-8 BOM", "\xef\xbb\xbfREGEDIT4\n" K, BAD, F_NONE, ""),
    HDR("UTF-8 BOM v5", "\xef\xbb\xbfWindows Registry Editor Version 5.00\n" K, BAD, F_NONE, ""),
    RAWC("empty file", "", BAD, F_NONE, ""),
    RAWC("one byte", "R", BAD, F_NONE, ""),
    RAWC("BOM only", "\xff\xfe", BAD, F_NONE, ""),
    RAWC("UTF-16 without BOM",
         "R\0E\0G\0E\0D\0I\0T\0"
         "4\0\n\0",
         BAD, F_NONE, ""),
    RAWC("UTF-16 odd last byte",
         "\xff\xfeR\0E\0G\0E\0D\0I\0T\0"
         "4\0X",
         OK, F_V4, ""),
    RAWC("NUL ends the header", "REGEDIT4\0junk\n" K, OK, F_V4, KT),
    {"u16 REGEDIT4", U16, "REGEDIT4\n" K "\"Unicode1\"=\"Value1\"\n", 0, OK, F_V4,
     KT "|value Unicode1 1 \"Value1\\0\""},
    {"u16 REGEDIT", U16, "REGEDIT\n", 0, OK, F_WIN31, ""},
    {"u16 v5 without newline", U16, "Windows Registry Editor Version 5.00", 0, OK, F_V5, ""},
    {"u16 blanks before header", U16, " \tWindows Registry Editor Version 5.00\n" K, 0, OK, F_V5,
     KT},
    {"u16 blank first line", U16, "\nWindows Registry Editor Version 5.00\n" K, 0, BAD, F_NONE, ""},
    {"u16 fuzzy", U16, "REGEDIT4FOO\n" K "\"a\"=\"b\"\n", 0, OK, F_NONE, "diag 1"},
    {"u16 v5 wrong case", U16, "WINDOWS Registry Editor Version 5.00\n", 0, BAD, F_NONE, ""},

    /* 4.1 line ends */
    HDR("CR line ends", "REGEDIT4\r[HKCU\\T]\r\"a\"=\"b\"\r\"c\"=dword:2\r", OK, F_V4,
        KT "|value a 1 \"b\\0\"|value c 4 x:02000000"),
    HDR("CRLF line ends", "REGEDIT4\r\n\r\n[HKCU\\T]\r\n\"a\"=\"b\"\r\n\r\n", OK, F_V4,
        KT "|value a 1 \"b\\0\""),
    HDR("LF CR is two line ends", "REGEDIT4\n\r[HKCU\\T]\n\r\"a\"=hex:01,\\\n\r  02\n\r", OK, F_V4,
        KT "|value a 3 x:0102"),
    A4("no final newline", "\"Wine5\"=\"No newline\"", "|value Wine5 1 \"No newline\\0\""),
    A4("blank lines", "\"Line1\"=\"Value1\"\n\n\"Line2\"=\"Value2\"\n\n\n\n",
       "|value Line1 1 \"Value1\\0\"|value Line2 1 \"Value2\\0\""),
    RAWC("NUL cuts a line", H4 K "\"a\"=\"b\"\0junk\n\"c\"=\"d\"\n", OK, F_V4,
         KT "|diag 3|value a 1 \"b\\0\"|value c 1 \"d\\0\""),
    RAWC("u16 NUL cuts a line",
         "\xff\xfeR\0E\0G\0E\0D\0I\0T\0"
         "4\0\n\0[\0H\0K\0C\0U\0]\0\0\0x\0\n\0",
         OK, F_V4, "diag 2|key HKCU"),

    /* 4.2 line classification and comments */
    A4("comment lines end in a backslash",
       "#comment\\\n\"Wine8\"=\"Line 1\"\n;comment\\\n\"Wine9\"=\"Line 2\"\n",
       "|value Wine8 1 \"Line 1\\0\"|value Wine9 1 \"Line 2\\0\""),
    A4("commented-out values",
       "#\"C1\"=\"V1\"\n;\"C2\"=\"V2\"\n    #\"C3\"=\"V3\"\n\t;\"C4\"=\"V4\"\n", ""),
    A4("# after a string", "\"Wine10\"=\"Value 1\"#comment\n\"Wine11\"=\"Value 2\";comment\n",
       "|diag 3|value Wine11 1 \"Value 2\\0\""),
    A4("blanks before a comment",
       "\"a\"=\"v\"  ;c\n\"b\"=\"v\"\t\t;c\n\"c\"=\"v\"  #c\n\"d\"=\"v\"\t\t#c\n",
       "|value a 1 \"v\\0\"|value b 1 \"v\\0\"|diag 5|diag 6"),
    A4("dword and comments", "\"Wine12\"=dword:01020304 #comment\n\"Wine13\"=dword:02040608 ;c\n",
       "|diag 3|value Wine13 4 x:08060402"),
    A4("data starting with a comment character",
       "\"Wine20\"=#\"Value 8\"\n\"Wine21\"=;\"Value 9\"\n\"Wine22\"=\"#comment1\"\n"
       "\"Wine25\"=\"Value;comment4\"\n\"Wine26\"=\"Value #comment5\"\n",
       "|diag 3|diag 4|value Wine22 1 \"#comment1\\0\"|value Wine25 1 \"Value;comment4\\0\""
       "|value Wine26 1 \"Value #comment5\\0\""),
    A4("dword next to comment characters",
       "\"Wine28\"=#dword:00000001\n\"Wine29\"=;dword:00000002\n"
       "\"Wine30\"=dword:00000003#comment\n\"Wine31\"=dword:00000004;comment\n",
       "|diag 3|diag 4|diag 5|value Wine31 4 x:04000000"),
    A4("text after the closing quote", "\"Wine37a\"=\"foo\"bar\"\n\"Wine37b\"=\"foo\"\"bar\"\n",
       "|diag 3|diag 4"),
    A4("lines that are neither keys nor values",
       "NameNoQuotes=\"Asdffdsa\"\nNameNoBeginQuote\"=\"Asdffdsa\"\n\\\"x\"=\"y\"\n"
       "HKCU\\T\\No_Opening_Bracket]\n",
       "|diag 3|diag 4|diag 5|diag 6"),
    A4("bad quoting",
       "\"NameNoEndQuote=\"Asdffdsa\"\n\"MixedQuotes=Asdffdsa\"\n\"TestNoBeginQuote\"=Asdffdsa\"\n"
       "\"TestNoEndQuote\"=\"Asdffdsa\n\"TestNoQuotes\"=Asdffdsa\n",
       "|diag 3|diag 4|diag 5|diag 6|diag 7"),
    A4("empty or unquoted data",
       "\"Test38a\"=\n\"Test38b\"=\\\"\n\"Test38c\"=\\\"Value\\\"\n\"Test38d\"=\\\"Value\"\n",
       "|diag 3|diag 4|diag 5|diag 6"),
    A4("empty string, empty name", "\"Empty string\"=\"\"\n\"\"=\"Default Value Name\"\n",
       "|value Empty string 1 \"\\0\"|value @ 1 \"Default Value Name\\0\""),
    A4("no continuation outside hex",
       "\"Wine41a\"=dword:1234\\\n5678\n\"Wine41b\"=\"Test \\\nValue\"\n",
       "|diag 3|diag 4|diag 5|diag 6"),
    A4("key name split over lines", "[HKCU\\T\\\nSubkey1]\n[HKCU\\T\n\\Subkey2]\n",
       "|diag 3|diag 4|diag 5|diag 6"),
    A4("value name split over lines",
       "\"Wine\\\n42a\"=\"Value 1\"\n\"Wine42b\"=\"Value 2\"\n\"Wine\n\\42c\"=\"Value 3\"\n",
       "|diag 3|diag 4|value Wine42b 1 \"Value 2\\0\"|diag 6|diag 7"),

    /* 4.4 / 4.5 strings and escapes */
    A4("escaped quotes", "\"double\\\"quote\"=\"valid \\\"or\\\" not\"\n",
       "|value double\"quote 1 \"valid \\\"or\\\" not\\0\""),
    A4("escaped backslash in a name", "\"Wine\\\\31\"=\"Test value\"\n",
       "|value Wine\\31 1 \"Test value\\0\""),
    A4("punctuation in a name", "\"123/\\\"4;'5\"=\"Random value name\"\n",
       "|value 123/\"4;'5 1 \"Random value name\\0\""),
    A4("escaped backslash before 0", "\"Wine69a\"=\"\\\\0\"\n\"Wine69e\"=\"Value3\\\\0Value4\"\n",
       "|value Wine69a 1 \"\\\\0\\0\"|value Wine69e 1 \"Value3\\\\0Value4\\0\""),
    A4("\\0 is invalid",
       "\"Wine70a\"=\"\\0\"\n\"Wine70e\"=\"Value3\\0Value4\"\n\"Wine70f\"=\"\\0V\"\n",
       "|diag 3|diag 4|diag 5"),
    A4("\\0 in a name is invalid", "\"a\\0b\"=\"x\"\n", "|diag 3"),
    A4("unknown escapes are kept", "\"x\"=\"a\\qb\"\n\"n\\%\"=\"v\"\n",
       "|diag 3|value x 1 \"aqb\\0\"|diag 4|value n% 1 \"v\\0\""),
    A4("\\n \\r \\\\ escapes", "\"x\"=\"a\\nb\\rc\\\\d\"\n", "|value x 1 \"a\\nb\\rc\\\\d\\0\""),
    A4("escaped closing quote", "\"x\"=\"abc\\\"\n", "|diag 3"),
    A4("backslash at the end of a string line", "\"x\"=\"abc\\\n", "|diag 3"),
    A4("escape reported on a rejected line", "\"x\"=\"a\\qb\n", "|diag 3|diag 3"),
    A4("quotes and slashes as data", "\"count/up\"=\"one/two/three\"\n\"\\\\foo\\\\bar\"=\"\"\n",
       "|value count/up 1 \"one/two/three\\0\"|value \\foo\\bar 1 \"\\0\""),
    A4("CP1252 text", "\"caf\xe9\"=\"\x80\x81\"\n[HKCU\\\xe9]\n",
       "|value caf\xc3\xa9 1 \"\\x{20ac}\\x{81}\\0\"|key HKCU\\\xc3\xa9"),

    /* 4.4 whitespace */
    A4("blanks around names and =",
       "  \"Wine5a\"=\"Leading spaces\"\n\t\t\"Wine5b\"\t\t=\"Leading tabs\"\n"
       "    \"Wine5d\"    \t    =    \t    \"More whitespace\"\n"
       "  \"  Wine6c  \"  =  \"  Spaces everywhere  \"  \n"
       "\"Wine8b\"=\"Trailing tabs and spaces\"\t  \t\n",
       "|value Wine5a 1 \"Leading spaces\\0\"|value Wine5b 1 \"Leading tabs\\0\""
       "|value Wine5d 1 \"More whitespace\\0\"|value   Wine6c   1 \"  Spaces everywhere  \\0\""
       "|value Wine8b 1 \"Trailing tabs and spaces\\0\""),
    A4("default value forms", "@=\"Test\"\n@  =  \"Test Value\"\n@foo=\"x\"\n@\n",
       "|value @ 1 \"Test\\0\"|value @ 1 \"Test Value\\0\"|diag 5|diag 6"),

    /* 4.5 dword */
    A4("short dwords", "\"Wine32a\"=dword:1\n\"Wine32b\"=dword:4444\n\"c\"=dword:ABCDEF01\n",
       "|value Wine32a 4 x:01000000|value Wine32b 4 x:44440000|value c 4 x:01efcdab"),
    A4("bad dwords",
       "\"a\"=dword:\n\"b\"=dword:hello\n\"c\"=dword:123456789\n\"d\"=dword:012345678\n"
       "\"e\"=dword:000000001\n",
       "|diag 3|diag 4|diag 5|diag 6|diag 7"),
    A4("dwords with junk",
       "\"a\"=dword:12345678abc\n\"b\"=dword:12345678 abc\n\"c\"=dword:0x123\n"
       "\"d\"=dword:123 456\n\"e\"=dword:1234 5678\n",
       "|diag 3|diag 4|diag 5|diag 6|diag 7"),
    A4("dword comments",
       "\"a\"=dword:1234;5678\n\"b\"=dword:1234 ;5678\n\"c\"=dword:1234#5678\n"
       "\"d\"=dword:1234 #5678\n",
       "|value a 4 x:34120000|value b 4 x:34120000|diag 5|diag 6"),
    A4("dword blanks",
       "\"a\"=dword:  00000008\n\"b\"=dword:\t\t00000008\n\t@\t=\tdword:\t00000008\t\n",
       "|value a 4 x:08000000|value b 4 x:08000000|value @ 4 x:08000000"),
    A4("dword: then a comment is 0", "\"a\"=dword:;c\n", "|value a 4 x:00000000"),
    A4("dword:ffffffff", "\"a\"=dword:ffffffff\n", "|value a 4 x:ffffffff"),
    A4("type tags are case-sensitive",
       "\"a\"=DWORD:1\n\"b\"=Hex:01\n\"c\"=HEX(2):41\n\"d\"=str:\"x\"\n\"e\"=quote\n",
       "|diag 3|diag 4|diag 5|diag 6|diag 7"),

    /* 4.5 hex */
    A4("binary", "\"Wine45a\"=hex:11,22,33,44,55,66,77,88\n",
       "|value Wine45a 3 x:1122334455667788"),
    A4("empty hex lists",
       "\"a\"=hex(1):\n\"b\"=hex(2):\n\"c\"=hex(3):\n\"d\"=hex(4):\n\"e\"=hex(7):\n"
       "\"f\"=hex(100):\n\"g\"=hex(abcd):\n\"h\"=hex:\n\"i\"=hex(0):\n",
       "|value a 1 \"\"|value b 2 \"\"|value c 3 x:|value d 4 x:|value e 7 \"\""
       "|value f 100 x:|value g abcd x:|value h 3 x:|value i 0 x:"),
    A4("hex type range",
       "\"a\"=hex(0):56,61\n\"b\"=hex(10):56\n\"c\"=hex(100):56\n\"d\"=hex(7fff):56\n"
       "\"e\"=hex(ffff):56\n\"f\"=hex(7fffffff):56\n\"g\"=hex(ffffffff):56\n\"h\"=hex(A):56\n",
       "|value a 0 x:5661|value b 10 x:56|value c 100 x:56|value d 7fff x:56|value e ffff x:56"
       "|value f 7fffffff x:56|value g ffffffff x:56|value h a x:56"),
    A4("bad hex types",
       "\"i\"=hex(100000000):56\n\"j\"=hex(0x2):56\n\"k\"=hex(0X2):56\n\"l\"=hex(x2):56\n"
       "\"m\"=hex(2)56\n\"n\"=hex(2:56\n\"o\"=hex(:56\n\"p\"=hex(\n",
       "|diag 3|diag 4|diag 5|diag 6|diag 7|diag 8|diag 9|diag 10"),
    A4("bytes above ff", "\"Wine51a\"=hex(0):25,50,100,54\n\"Wine51b\"=hex(0):25,1a4,100\n",
       "|diag 3|diag 4"),
    A4("trailing comma", "\"Wine49\"=hex(2):25,50,41,54,48,25,00,\n",
       "|value Wine49 2 \"%PATH%\\0\""),
    A4("empty byte", "\"a\"=hex:11,,22\n", "|diag 3"),
    A4("blanks before bytes", "\"a\"=hex: 11,\t22\n\"b\"=hex:11 ,22\n", "|value a 3 x:1122|diag 4"),
    A4("upper-case and one-digit bytes", "\"a\"=hex:AB,cD,0\n", "|value a 3 x:abcd00"),
    A4("hex comments", "\"Wine50a\"=hex(2):25,50,00  ;comment\n\"Wine50c\"=hex(2):25,50,00  #c\n",
       "|value Wine50a 2 \"%P\\0\"|diag 4"),
    A4("backslash placement",
       "\"Wine52a\"=hex(2):25,48\\,4f,4d,45,25,00\n\"Wine52b\"=hex(2):25,48,\\4f,4d,45,25,00\n"
       "\"Wine52c\"=hex(2):25,48\\ ,4f,4d,45,25,00\n\"Wine52d\"=hex(2):25,48,\\ 4f,4d,45,25,00\n"
       "\"Wine52e\"=hex(2):\\25,48,4f,4d,45,25,00\n\"Wine52f\"=hex(2):\\ 25,48,4f,4d,45,25,00\n"
       "\"Wine52g\"=hex(2):25,48,4\\f,4d,45,25,00\n\"Wine52i\"=hex(2):25,50,\\,41,54,48,25,00\n",
       "|diag 3|diag 4|diag 5|diag 6|diag 7|diag 8|diag 9|diag 10"),
    A4("backslash splitting a byte", "\"Wine52h\"=hex(2):25,48,4\\\n  f,4d,45,25,00\n",
       "|diag 3|diag 4"),
    A4("double backslash", "\"Wine52j\"=hex(2):25,48,4f,4d,45,25,5c,\\\\\n  25,50,41,54,48,25,00\n",
       "|diag 3|diag 4"),
    A4("comma then backslash", "\"Wine52k\"=hex(2):,\\\n  25,48,4f,4d,45,25,00\n",
       "|diag 3|diag 4"),
    A4("backslash right after the prefix", "\"Wine52l\"=hex(2):\\\n  25,48,4f,4d,45,25,00\n",
       "|value Wine52l 2 \"%HOME%\\0\""),
    A4("continuation and comments",
       "\"Wine53a\"=hex(2):25,48,4f,4d,45,25,5c,\\\n  25,50,41,54,48,25,00\n"
       "\"Wine53b\"=hex(2):25,48,4f,4d,45,25,5c\\\n  25,50,41,54,48,25,00\n"
       "\"Wine53c\"=hex(2):25,48,4f,4d,45,25,5c,  \\  ;comment\n  25,50,41,54,48,25,00\n"
       "\"Wine53d\"=hex(2):25,48,4f,4d,45,25,5c  \\  ;comment\n  25,50,41,54,48,25,00\n"
       "\"Wine53e\"=hex(2):25,48,4f,4d,45,25,5c,\\\t  ;comment\n  25,50,41,54,48,25,00\n"
       "\"Wine53f\"=hex(2):25,48,4f,4d,45,25,5c\\\t  ;comment\n  25,50,41,54,48,25,00\n",
       "|value Wine53a 2 \"%HOME%\\\\%PATH%\\0\"|diag 5|diag 6"
       "|value Wine53c 2 \"%HOME%\\\\%PATH%\\0\"|diag 9|diag 10"
       "|value Wine53e 2 \"%HOME%\\\\%PATH%\\0\"|diag 13|diag 14"),
    A4("key line after a continuation is consumed",
       "\"Wine54a\"=hex(2):4c,69,6e,65,20,\\\n[HKCU\\T\\Subkey1]\n\"after\"=\"x\"\n",
       "|diag 4|value after 1 \"x\\0\""),
    A4("key line after a bad backslash is read",
       "\"Wine54b\"=hex(2):4c,69,6e,65,20\\\n[HKCU\\T\\Subkey2]\n", "|diag 3|key HKCU\\T\\Subkey2"),
    A4("lines after a dangling backslash",
       "\"Wine55a\"=hex(2):4c,69,6e,65,20,\\\n\"Wine55b\"=\"Test value\"\n"
       "\"Wine55c\"=hex(2):4c,69,6e,65,20,\\\n;comment\n\"Wine55d\"=\"Test value\"\n"
       "\"Wine55e\"=hex(2):4c,69,6e,65,20,\\\n#comment\n\"Wine55f\"=\"Test value\"\n"
       "\"Wine55g\"=hex(2):4c,69,6e,65,20,\\\n\n\"Wine55h\"=\"Test value\"\n"
       "\"Wine55i\"=hex(2):4c,69,6e,65,20\\\n\"Wine55j\"=\"Test value\"\n",
       "|diag 4|diag 7|diag 9|value Wine55f 1 \"Test value\\0\"|diag 13|diag 14"
       "|value Wine55j 1 \"Test value\\0\""),
    A4("default value after a dangling backslash",
       "\"Wine58a\"=hex(2):4c,69,6e,65,20,\\\n@=\"Default value 1\"\n"
       "\"Wine58c\"=hex(2):4c,69,6e,65,20,\\\n#comment\n@=\"Default value 3\"\n"
       "\"Wine58e\"=hex(2):4c,69,6e,65,20\\\n@=\"Default value 5\"\n",
       "|diag 4|diag 6|value @ 1 \"Default value 3\\0\"|diag 8|value @ 1 \"Default value 5\\0\""),
    A4("backslash-only continuation line",
       "\"Wine59a\"=hex:11,22,33,\\\n\\\n  44,55,66\n\"Wine59b\"=hex:11,22,33,\\\n  \\\n  "
       "44,55,66\n",
       "|diag 4|diag 5|diag 7|diag 8"),
    A4("comment line inside a continuation",
       "\"Wine60a\"=hex(7):4c,69,6e,65,20,\\\n  63,6f,6e,63,61,74,\\\n;comment\n"
       "  65,6e,\\;comment\n  61,74,69,6f,6e,00,00\n",
       "|value Wine60a 7 \"Line concatenation\\0\\0\""),
    A4("# line inside a continuation",
       "\"Wine60c\"=hex(7):4c,69,6e,65,20,\\\n  63,6f,6e,63,61,74,\\\n#comment\n"
       "  65,6e,\\;comment\n  61,74,69,6f,6e,00,00\n",
       "|diag 5|diag 6|diag 7"),
    A4("blank lines inside a continuation",
       "\"Wine60e\"=hex(7):4c,69,6e,65,20,\\\n  63,6f,6e,\\\n\n  63,61,74,\\\n\n\n  65,6e,\\\n"
       "\t \t\n  61,74,69,6f,6e,00,00\n",
       "|value Wine60e 7 \"Line concatenation\\0\\0\""),
    A4("continuation with tabs",
       "\t  \"Wine4c\"=hex(7):4c,69,6e,65,20,\\\n        63,6f,6e,\\;comment\n"
       "\t\t\t\t63,61,74,\\;comment\n  \t65,6e,61,74,69,6f,6e,00,00\n",
       "|value Wine4c 7 \"Line concatenation\\0\\0\""),
    A4("#comment after a continuation backslash",
       "\"Multi-Line9\"=hex(7):4c,69,6e,\\;comment\n  65,20,\\#comment\n  63,61\n",
       "|diag 4|diag 5"),
    A4("slash is not a continuation", "\"Wine61a\"=hex(0):25,48,5c,/\n  25,50,41\n",
       "|diag 3|diag 4"),
    A4("comma on the continuation line",
       "\"Wine63a\"=hex(7):4c,69,6e,65,20,\\\n  ,63,6f,6e\n\"Wine63b\"=hex(7):4c,69,\\\n  "
       "63,,6f,6e\n",
       "|diag 4|diag 6"),
    A4("a comment ends hex data",
       "\"Wine64a\"=hex(7):4c,69,6e,65,00,00\n"
       "\"Wine64d\"=hex(7):4c,69,6e,65,20,\\;comment\n  63,6f,6e,63,61,74,\n"
       "  65,6e,61,74,69,6f,6e,00,00\n"
       "\"Wine64e\"=hex(7):4c,69,6e,65,20,\\\n  63,6f,6e,63,61,74,;comment\n"
       "  65,6e,61,74,69,6f,6e,00,00\n",
       "|value Wine64a 7 \"Line\\0\\0\"|value Wine64d 7 \"Line concat\\0\"|diag 6"
       "|value Wine64e 7 \"Line concat\\0\"|diag 9"),
    A4("bad continuation after a good one",
       "\"Wine43c\"=hex(0):56,00,61,00,6c,00\\\n,75,00,65,00,00,00\n", "|diag 3|diag 4"),
    A4("trailing blanks after a comma on a continuation line", "\"a\"=hex:11,\\\n  22,  \n",
       "|diag 4"),
    A4("trailing blanks after a comma on the first line", "\"a\"=hex:11,22,  \n",
       "|value a 3 x:1122"),
    A4("end of file after a backslash", "\"Wine62a\"=hex(0):56,61,6c,75,65,\\",
       "|value Wine62a 0 x:56616c7565"),
    A4("end of file after a backslash, hex(2)", "\"Wine62b\"=hex(2):25,50,41,54,48,25,\\",
       "|value Wine62b 2 \"%PATH%\\0\""),
    A4("end of file after a backslash and newline", "\"Wine62c\"=hex:11,22,33,44,55,\\\n",
       "|value Wine62c 3 x:1122334455"),
    A4("end of file after a backslash, hex(7)", "\"Wine62d\"=hex(7):4c,69,6e,65,\\",
       "|value Wine62d 7 \"Line\\0\""),
    A4("end of file after a backslash, hex(100)", "\"Wine62e\"=hex(100):56,61,6c,75,65,\\",
       "|value Wine62e 100 x:56616c7565"),
    A4("end of file after a bad backslash", "\"Wine62f\"=hex(7):4c,69,6e,65,20\\", "|diag 3"),
    A4("end of file after a comment line", "\"a\"=hex(2):41,\\\n;c\n", "|value a 2 \"A\\0\""),
    A4("end of file after hex(2):\\", "\"a\"=hex(2):\\", "|value a 2 \"\""),
    A4("null termination",
       "\"Wine66a\"=hex(7):4c,69,6e,65\n\"Wine66b\"=hex(7):4c,69,6e,65,\n"
       "\"Wine66c\"=hex(7):4c,69,6e,65,00\n\"Wine66e\"=hex(7):4c,69,6e,65,00,00\n"
       "\"Wine67a\"=hex(2):25,50,41,54,48,25\n\"s\"=hex(1):41,42\n",
       "|value Wine66a 7 \"Line\\0\"|value Wine66b 7 \"Line\\0\"|value Wine66c 7 \"Line\\0\""
       "|value Wine66e 7 \"Line\\0\\0\"|value Wine67a 2 \"%PATH%\\0\"|value s 1 \"AB\\0\""),
    A4("no fix-up for other types", "\"a\"=hex(4):01,02\n\"b\"=hex(0):41\n\"c\"=hex(6):41\n",
       "|value a 4 x:0102|value b 0 x:41|value c 6 x:41"),
    A4("hex(1) of NULs", "\"Wine4b\"=hex(1):00,00,00,00\n", "|value Wine4b 1 \"\\0\\0\\0\\0\""),
    A4("hex(1) ending in a comment", "\"a\"=hex(1):;c\n", "|value a 1 \"\""),
    A4("CP1252 hex string", "\"a\"=hex(2):80,e9,00\n", "|value a 2 \"\\x{20ac}\\x{e9}\\0\""),
    /* numbers go through wcstoul: these were checked against Wine 8.0's reg import */
    A4("hex(N) with blanks, sign, 0x after a blank, or nothing",
       "\"a\"=hex( 2):41\n\"b\"=hex(+3):41\n\"c\"=hex():41\n\"d\"=hex(-1):41\n"
       "\"e\"=hex( 0x2):41\n",
       "|value a 2 \"A\\0\"|value b 3 x:41|value c 0 x:41|value d ffffffff x:41"
       "|value e 2 \"A\\0\""),
    A4("bytes with 0x or a sign", "\"h\"=hex:0x11,22\n\"i\"=hex:-0,22\n\"j\"=hex:-1\n",
       "|value h 3 x:1122|value i 3 x:0022|diag 5"),

    /* 4.3 keys */
    A4("no closing bracket", "[HKCU\\T\\No_Closing_Bracket\n\"a\"=\"b\"\n",
       "|diag 3|value a 1 \"b\\0\""),
    A4("blank after [ keeps the key", "[ HKCU\\T\\Subkey1a]\n\"after\"=\"x\"\n[\tHKCU\\T\\S1b]\n",
       "|diag 3|value after 1 \"x\\0\"|diag 5"),
    A4("trailing blanks are part of the key", "[HKCU\\T\\Subkey1c ]\n[HKCU\\T\\Subkey1d\t]\n",
       "|key HKCU\\T\\Subkey1c |key HKCU\\T\\Subkey1d\t"),
    A4("trailing backslashes are kept", "[HKCU\\T\\Subkey1e\\]\n[HKCU\\T\\Subkey1f\\\\]\n",
       "|key HKCU\\T\\Subkey1e\\|key HKCU\\T\\Subkey1f\\\\"),
    A4("quote and slash in a key", "[HKCU\\T\\Subkey\"1]\n[HKCU\\T\\Subkey/2]\n",
       "|key HKCU\\T\\Subkey\"1|key HKCU\\T\\Subkey/2"),
    A4("the last ] closes the key", "[HKCU\\T\\a]b] junk\n", "|key HKCU\\T\\a]b"),
    A4("blanks before [", "  [HKCU\\T\\x]\n\t\"a\"=\"b\"\n", "|key HKCU\\T\\x|value a 1 \"b\\0\""),
    A4("root names in any case", "[hkey_CURRENT_user\\T]\n[HkEy_CuRrEnT_uSeR\\T]\n",
       "|key hkey_CURRENT_user\\T|key HkEy_CuRrEnT_uSeR\\T"),
    A4("refused key drops values",
       "[HKEY_CURRENT_USERS\\T\\Subkey4b]\n\"Wine46b\"=dword:12345678\n\"x\"=-\n[HKCU\\T]\n"
       "\"y\"=dword:1\n",
       "|nokey HKEY_CURRENT_USERS\\T\\Subkey4b|diag 4|diag 5|key HKCU\\T|value y 4 x:01000000"),
    A4("empty key name", "[]\n\"a\"=\"b\"\n", "|nokey |diag 4"),
    A4("delete keys", "[-HKCU\\T\\Subkey2a]\n[-hKeY_cUrReNt_UsEr\\T\\sUbKeY3B]\n[-HKCU]\n",
       "|del HKCU\\T\\Subkey2a|del hKeY_cUrReNt_UsEr\\T\\sUbKeY3B|del HKCU"),
    A4("the path must follow [- directly",
       "[ -HKCU\\T\\Subkey2a]\n\"a\"=\"1\"\n[\t-HKCU\\T\\Subkey2b]\n[- HKCU\\T\\Subkey2a]\n"
       "\"b\"=\"2\"\n[-\tHKCU\\T\\Subkey2b]\n[-]\n[-XYZ]\n",
       "|diag 3|value a 1 \"1\\0\"|diag 5|diag 6|diag 7|diag 8|diag 9|diag 10"),
    A4("no key after a deletion", "[-HKCU\\T\\Subkey4a]\n\"Wine46a\"=dword:12345678\n",
       "|del HKCU\\T\\Subkey4a|diag 4"),
    HDR("values before any key", H4 "\"a\"=\"b\"\n\"c\"=-\n", OK, F_V4, "diag 2|diag 3"),
    A4("delete values",
       "\"Wine46a\"=-\n\"Wine46b\"=  -\n\"Wine46c\"=  \t-\t  \n\"Wine46d\"=-\"Test\"\n"
       "\"Wine46e\"=- ;comment\n\"Wine46f\"=- #comment\n@=-\n\"\"=-\n\"Wine46g\"=-1\n",
       "|delval Wine46a|delval Wine46b|delval Wine46c|diag 6|delval Wine46e|diag 8|delval @"
       "|delval @|diag 11"),

    /* 4.7 Windows 3.1 */
    W31("win31 value", "HKEY_CLASSES_ROOT\\T = Value0\r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"Value0\\0\""),
    W31("win31 =value", "HKEY_CLASSES_ROOT\\T =Value1\r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"Value1\\0\""),
    W31("win31 one space skipped", "HKEY_CLASSES_ROOT\\T =  Value2\r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \" Value2\\0\""),
    W31("win31 trailing space kept", "HKEY_CLASSES_ROOT\\T = Value3 \r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"Value3 \\0\""),
    W31("win31 without =", "HKEY_CLASSES_ROOT\\T Value4\r\nHKEY_CLASSES_ROOT\\U  Value5\r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"Value4\\0\"|key HKEY_CLASSES_ROOT\\U|value @ 1 "
        "\"Value5\\0\""),
    W31("win31 empty value", "HKEY_CLASSES_ROOT\\T\r\nHKEY_CLASSES_ROOT\\U  \r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"\\0\"|key HKEY_CLASSES_ROOT\\U|value @ 1 \"\\0\""),
    W31("win31 no newline", "HKEY_CLASSES_ROOT\\T = No newline",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"No newline\\0\""),
    W31("win31 tab ends the key", "HKEY_CLASSES_ROOT\\T\t=\tx\r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"\\x{9}x\\0\""),
    W31("win31 ignored lines",
        " HKEY_CLASSES_ROOT\\T = V1a\r\n\tHKEY_CLASSES_ROOT\\T = V1c\r\n"
        ";HKEY_CLASSES_ROOT\\T = V2a\r\n#HKEY_CLASSES_ROOT\\T = V2b\r\n"
        "hkey_classes_root\\T = V3a\r\nHkey_Classes_Root\\T = V3c\r\n[HKCU\\T]\r\n\r\n",
        "diag 2|diag 3|diag 6|diag 7|diag 8"),
    W31("win31 refused key", "HKEY_CLASSES_ROOTX = v\r\n", "nokey HKEY_CLASSES_ROOTX"),
    W31("win31 no escapes", "HKEY_CLASSES_ROOT\\T = a\\\"b\"\r\n",
        "key HKEY_CLASSES_ROOT\\T|value @ 1 \"a\\\\\\\"b\\\"\\0\""),
    {"u16 win31", U16, "REGEDIT\nHKEY_CLASSES_ROOT\\T = \xe2\x82\xac\n", 0, OK, F_WIN31,
     "key HKEY_CLASSES_ROOT\\T|value @ 1 \"\\x{20ac}\\0\""},

    /* UTF-16 files */
    U5("u16 string", "\"Wine2\"=\"Test Value\"\n", "|value Wine2 1 \"Test Value\\0\""),
    U5("u16 non-ASCII", "\"caf\xc3\xa9\"=\"\xe2\x82\xac\xf0\x9f\x98\x80\"\n",
       "|value caf\xc3\xa9 1 \"\\x{20ac}\\x{d83d}\\x{de00}\\0\""),
    U5("u16 key with non-ASCII", "[HKCU\\T\\\xe2\x82\xac]\n", "|key HKCU\\T\\\xe2\x82\xac"),
    U5("u16 hex(7) continued",
       "\"Wine3\"=hex(7):4c,00,69,00,6e,00,65,00,20,00,63,00,\\\n  6f,00,00,00,00,00\n",
       "|value Wine3 7 \"Line co\\0\\0\""),
    U5("u16 null termination",
       "\"a\"=hex(7):4c,00,69,00\n\"b\"=hex(7):4c,00,69,00,00,00\n"
       "\"c\"=hex(7):4c,00,69,00,00,00,00,00\n\"d\"=hex(2):25,00,50,00,\n",
       "|value a 7 \"Li\\0\"|value b 7 \"Li\\0\"|value c 7 \"Li\\0\\0\"|value d 2 \"%P\\0\""),
    U5("u16 odd byte counts", "\"a\"=hex(2):41,00,42\n\"b\"=hex(1):41\n\"c\"=hex(3):41\n",
       "|value a 2 \"AB\\0\"|value b 1 \"A\\0\"|value c 3 x:41"),
    U5("u16 hex string bytes are not CP1252", "\"a\"=hex(2):80,00,00,00\n",
       "|value a 2 \"\\x{80}\\0\""),
    U5("u16 unknown escape of a surrogate pair", "\"x\"=\"\\\xf0\x9f\x98\x80\"\n",
       "|diag 3|value x 1 \"\\x{d83d}\\x{de00}\\0\""),
    U5("u16 comments and deletions",
       "#c\n;c\n\"Wine10\"=\"Value 1\"#comment\n\"a\"=- ;x\n[-HKCU\\T\\S]\n\"b\"=\"c\"\n",
       "|diag 5|delval a|del HKCU\\T\\S|diag 8"),
    U5("u16 dword and binary", "\"a\"=dword:00000123\n\"b\"=hex:11,22,\\\n  33\n",
       "|value a 4 x:23010000|value b 3 x:112233"),
};

static void test_parse_table(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof parse_cases / sizeof *parse_cases; i++) {
        const pcase *c = &parse_cases[i];
        buf in = BUF_INIT;
        if (c->enc == U16)
            utf16_file(&in, c->body, strlen(c->body));
        else
            assert_int_equal(buf_add(&in, c->body, c->enc == RAW ? c->len : strlen(c->body)), 0);
        trace t = {BUF_INIT};
        int rc;
        enum regfile_format fmt;
        char *got = parse_trace(&t, in.data, in.len, &rc, &fmt);
        bool fmt_ok = c->fmt == F_ANY || (int)fmt == c->fmt - 1;
        if (rc != c->rc || strcmp(got, c->want) || !fmt_ok) {
            print_error("case \"%s\":\n  got  rc %d format %d trace %s\n  want rc %d format %d "
                        "trace %s\n",
                        c->what, rc, (int)fmt, got, c->rc, c->fmt - 1, c->want);
            failures++;
        }
        free(got);
        buf_free(&in);
    }
    assert_int_equal(failures, 0);
}

/* ------------------------------------------------------------------------------------------
 * Messages, limits, aborts */

static void test_messages(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *want;
    } cases[] = {
        {H4 K "\"x\"=\"a\\qb\"\n",
         KT "|diag 3: Unrecognized escape sequence [\\q]|value x 1 \"aqb\\0\""},
        {H4 K "\"x\"=\"\\\xe9\"\n",
         KT "|diag 3: Unrecognized escape sequence [\\\xc3\xa9]|value x 1 \"\\x{e9}\\0\""},
        {"REGEDIT5\n", "diag 1: unsupported header (only REGEDIT, REGEDIT4 and Windows Registry "
                       "Editor Version 5.00 are read): nothing imported"},
        {H4 "\"x\"=\"y\"\n", "diag 2: value ignored: no key is open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        trace t = {BUF_INIT, .messages = true};
        int rc;
        char *got =
            parse_trace(&t, (const uint8_t *)cases[i].body, strlen(cases[i].body), &rc, NULL);
        assert_int_equal(rc, ERROR_SUCCESS);
        if (strcmp(got, cases[i].want))
            print_error("case %zu: got %s\n  want %s\n", i, got, cases[i].want);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
}

/* repeat - append n copies of s. */
static void repeat(buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(buf_adds(b, s), 0);
}

static void test_line_limit(void **state)
{
    (void)state;
    /* A string line of exactly REGFILE_MAX_LINE characters is read; one more is not. */
    buf in = BUF_INIT;
    buf_adds(&in, H4 K "\"a\"=\"");
    repeat(&in, "x", REGFILE_MAX_LINE - 6);
    buf_adds(&in, "\"\n\"b\"=\"");
    repeat(&in, "x", REGFILE_MAX_LINE - 5);
    buf_adds(&in, "\"\n\"c\"=\"ok\"\n");
    trace t = {BUF_INIT};
    int rc;
    char *got = parse_trace(&t, in.data, in.len, &rc, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    assert_true(strncmp(got, KT "|value a 1 \"xxx", strlen(KT) + 15) == 0);
    const char *tail = strrchr(got, '|');
    assert_non_null(tail);
    assert_string_equal(tail, "|value c 1 \"ok\\0\"");
    assert_non_null(strstr(got, "\\0\"|diag 4|value c"));
    assert_int_equal(strlen(got), strlen(KT "|value a 1 \"") + REGFILE_MAX_LINE - 6 +
                                      strlen("\\0\"|diag 4|value c 1 \"ok\\0\""));
    free(got);

    /* Hex data continued over many short lines is not bound by the line limit: here about
     * 1.5 times REGFILE_MAX_LINE characters in all. */
    in.len = 0;
    buf_adds(&in, H4 K "\"h\"=hex:00,\\\n");
    size_t lines = REGFILE_MAX_LINE / 50;
    repeat(&in, "  00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00,\\\n",
           lines);
    buf_adds(&in, "  00\n\"c\"=\"ok\"\n");
    trace ts = {BUF_INIT, .sizes = true, .lines = true};
    got = parse_trace(&ts, in.data, in.len, &rc, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    char want[128];
    snprintf(want, sizeof want, KT " @2|value h 3 #%zu @3|value c 1 #6 @%zu", 2 + 24 * lines,
             lines + 5);
    assert_string_equal(got, want);
    free(got);

    /* But each physical line of hex data still is: a continuation line one character too
     * long drops the value (reported on that line, naming the first), a first line too. The
     * long line is: pad blanks, mid, "00," repeated, "00", then post. */
    static const struct {
        const char *pre, *mid, *post;
        size_t extra;     /* characters over REGFILE_MAX_LINE */
        const char *want; /* "%zu" is the data length of an accepted value */
    } hex_cases[] = {
        {H4 K "\"h\"=hex:01,\\\n", "", "\n\"c\"=\"ok\"\n", 0, KT "|value h 3 #%zu|value c 1 #6"},
        {H4 K "\"h\"=hex:01,\\\n", "", "\n\"c\"=\"ok\"\n", 1,
         KT "|diag 4: syntax error: line longer than 1048576 characters: the hex value from "
            "line 3 is dropped|value c 1 #6"},
        {H4 K, "\"h\"=hex:", ",\\\n  01\n\"c\"=\"ok\"\n", 0, KT "|value h 3 #%zu|value c 1 #6"},
        {H4 K, "\"h\"=hex:", ",\\\n  01\n\"c\"=\"ok\"\n", 1,
         KT "|diag 3: syntax error: line longer than 1048576 characters: line ignored|diag 4: "
            "syntax error: not a [key], @= or \"name\"= line (a line is never continued except "
            "in hex data): line ignored|value c 1 #6"},
    };
    for (size_t i = 0; i < sizeof hex_cases / sizeof *hex_cases; i++) {
        size_t post_len = strcspn(hex_cases[i].post, "\n");
        size_t fixed = strlen(hex_cases[i].mid) + 2 + post_len;
        size_t bytes = (REGFILE_MAX_LINE - fixed - 1) / 3;
        size_t pad = REGFILE_MAX_LINE - fixed - 3 * bytes + hex_cases[i].extra;
        in.len = 0;
        buf_adds(&in, hex_cases[i].pre);
        repeat(&in, " ", pad);
        buf_adds(&in, hex_cases[i].mid);
        repeat(&in, "00,", bytes);
        buf_adds(&in, "00");
        buf_adds(&in, hex_cases[i].post);
        trace tm = {BUF_INIT, .sizes = true, .messages = true};
        got = parse_trace(&tm, in.data, in.len, &rc, NULL);
        assert_int_equal(rc, ERROR_SUCCESS);
        char w[512];
        snprintf(w, sizeof w, hex_cases[i].want, bytes + 2); /* "01" or the "01" line: + 2 */
        if (strcmp(got, w))
            print_error("hex case %zu: got %s\n  want %s\n", i, got, w);
        assert_string_equal(got, w);
        free(got);
    }

    /* A long first line that starts with REGEDIT is still a fuzzy header. */
    in.len = 0;
    buf_adds(&in, "REGEDIT");
    repeat(&in, "4", REGFILE_MAX_LINE);
    buf_adds(&in, "\n" K);
    got = parse_trace(&t, in.data, in.len, &rc, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    assert_string_equal(got, "diag 1");
    free(got);
    buf_free(&in);
}

/* The line passed with each event: the line a key or value starts on, however lines end. */
static void test_event_lines(void **state)
{
    (void)state;
    static const pcase cases[] = {
        {"value after a multi-line hex continuation", ANSI,
         H4 K "\"a\"=hex:01,\\\n  02,\\\n\n;c\n  03\n\"b\"=dword:1\n\"c\"=-\n[-HKCU\\T\\X]\n", 0,
         OK, F_V4,
         KT " @2|value a 3 x:010203 @3|value b 4 x:01000000 @8|delval c @9|del HKCU\\T\\X @10"},
        {"CRLF", ANSI,
         "REGEDIT4\r\n\r\n[HKCU\\T]\r\n\"a\"=hex:01,\\\r\n  02\r\n\r\n[HKCU\\U]\r\n@=\"x\"\r\n", 0,
         OK, F_V4, KT " @3|value a 3 x:0102 @4|key HKCU\\U @7|value @ 1 \"x\\0\" @8"},
        {"bare CR", ANSI, "REGEDIT4\r\r[HKCU\\T]\r\"a\"=hex:01,\\\r  02\r[HKCU\\U]\r\"b\"=-\r", 0,
         OK, F_V4, KT " @3|value a 3 x:0102 @4|key HKCU\\U @6|delval b @7"},
        {"LF CR is two line ends", ANSI, "REGEDIT4\n\r[HKCU\\T]\n\r\"a\"=\"b\"\n", 0, OK, F_V4,
         KT " @3|value a 1 \"b\\0\" @5"},
        {"UTF-16 CRLF", U16,
         H5 "\r\n[HKCU\\T]\r\n\"a\"=hex(7):41,00,\\\r\n  00,00\r\n\"b\"=\"c\"\r\n", 0, OK, F_V5,
         KT " @3|value a 7 \"A\\0\" @4|value b 1 \"c\\0\" @6"},
        {"value after a consumed line", ANSI, H4 K "\"x\"=hex:01,\\\n[HKCU\\T\\S]\n\"y\"=\"z\"\n",
         0, OK, F_V4, KT " @2|diag 4|value y 1 \"z\\0\" @5"},
        {"win31", ANSI, "REGEDIT\r\n\r\nHKEY_CLASSES_ROOT\\T = v\r\n", 0, OK, F_WIN31,
         "key HKEY_CLASSES_ROOT\\T @3|value @ 1 \"v\\0\" @3"},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const pcase *c = &cases[i];
        buf in = BUF_INIT;
        if (c->enc == U16)
            utf16_file(&in, c->body, strlen(c->body));
        else
            assert_int_equal(buf_adds(&in, c->body), 0);
        trace t = {BUF_INIT, .lines = true};
        int rc;
        enum regfile_format fmt;
        char *got = parse_trace(&t, in.data, in.len, &rc, &fmt);
        if (rc != c->rc || (int)fmt != c->fmt - 1 || strcmp(got, c->want)) {
            print_error("case \"%s\":\n  got  rc %d format %d trace %s\n  want rc %d format %d "
                        "trace %s\n",
                        c->what, rc, (int)fmt, got, c->rc, c->fmt - 1, c->want);
            failures++;
        }
        free(got);
        buf_free(&in);
    }
    assert_int_equal(failures, 0);
}

/* The data of one value is bounded by REG_MAX_DATA, not by the line length. A hex(2) value in a
 * CP1252 file takes two bytes of data per byte written ("0," each), so 64 MiB files suffice. */
static void test_data_limit(void **state)
{
    (void)state;
    enum { PER_LINE = 4096, LINES = REG_MAX_DATA / 2 / PER_LINE };
    static const struct {
        const char *last; /* the last data line after PER_LINE - 1 bytes */
        const char *want;
    } cases[] = {
        /* exactly REG_MAX_DATA bytes, the last character NUL: kept as it is */
        {"0\n", KT " @2|value big 2 #67108864 @3|value after 1 #6 @8196"},
        /* as many bytes but no NUL at the end: the terminator takes it over the limit */
        {"41\n", KT " @2|diag 3: value data longer than 67108864 bytes: value dropped"
                    "|value after 1 #6 @8196"},
        /* one byte more */
        {"0,0\n", KT " @2|diag 3: value data longer than 67108864 bytes: value dropped"
                     "|value after 1 #6 @8196"},
    };
    buf line = BUF_INIT, in = BUF_INIT;
    repeat(&line, "0,", PER_LINE);
    assert_int_equal(buf_adds(&line, "\\\n"), 0);
    assert_int_equal(buf_reserve(&in, (size_t)LINES * line.len + 64), 0); /* no realloc copies */
    assert_int_equal(buf_adds(&in, H4 K "\"big\"=hex(2):\\\n"), 0);
    for (size_t i = 0; i + 1 < LINES; i++)
        assert_int_equal(buf_add(&in, line.data, line.len), 0);
    repeat(&in, "0,", PER_LINE - 1);
    size_t prefix = in.len;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        in.len = prefix;
        assert_int_equal(buf_adds(&in, cases[i].last), 0);
        assert_int_equal(buf_adds(&in, "\"after\"=\"ok\"\n"), 0);
        trace t = {BUF_INIT, .messages = true, .lines = true, .sizes = true};
        int rc;
        char *got = parse_trace(&t, in.data, in.len, &rc, NULL);
        assert_int_equal(rc, ERROR_SUCCESS);
        if (strcmp(got, cases[i].want))
            print_error("case %zu: got %s\n  want %s\n", i, got, cases[i].want);
        assert_string_equal(got, cases[i].want);
        free(got);
    }
    buf_free(&line);
    buf_free(&in);
}

static void test_abort(void **state)
{
    (void)state;
    const char *body = H4 K "\"a\"=\"1\"\n\"b\"=\"2\"\n\"c\"=\"3\"\n[HKCU\\U]\n";
    int rc;

    trace t = {BUF_INIT, .abort_at = 2, .value_rc = -ERROR_DISK_FULL};
    char *got = parse_trace(&t, (const uint8_t *)body, strlen(body), &rc, NULL);
    assert_int_equal(rc, ERROR_DISK_FULL);
    assert_string_equal(got, KT "|value a 1 \"1\\0\"|value b 1 \"2\\0\"");
    free(got);

    /* A positive value result is not an error. */
    trace t2 = {BUF_INIT, .abort_at = 1, .value_rc = 1};
    got = parse_trace(&t2, (const uint8_t *)body, strlen(body), &rc, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    assert_string_equal(got, KT "|value a 1 \"1\\0\"|value b 1 \"2\\0\"|value c 1 \"3\\0\"|key "
                                "HKCU\\U");
    free(got);

    trace t3 = {BUF_INIT, .key_rc = -ERROR_ACCESS_DENIED};
    got = parse_trace(&t3, (const uint8_t *)body, strlen(body), &rc, NULL);
    assert_int_equal(rc, ERROR_ACCESS_DENIED);
    assert_string_equal(got, KT);
    free(got);

    const char *del = H4 "[-HKCU\\A]\n[-HKCU\\B]\n";
    trace t4 = {BUF_INIT, .del_rc = 1};
    got = parse_trace(&t4, (const uint8_t *)del, strlen(del), &rc, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    assert_string_equal(got, "del HKCU\\A|del HKCU\\B");
    free(got);
    trace t5 = {BUF_INIT, .del_rc = -ERROR_NOT_ENOUGH_MEMORY};
    got = parse_trace(&t5, (const uint8_t *)del, strlen(del), &rc, NULL);
    assert_int_equal(rc, ERROR_NOT_ENOUGH_MEMORY);
    assert_string_equal(got, "del HKCU\\A");
    free(got);
}

static void test_parse_args(void **state)
{
    (void)state;
    const char *body = H4 K "\"a\"=\"1\"\nbad\n";
    enum regfile_format fmt = REGFILE_V5;
    assert_int_equal(regfile_parse((const uint8_t *)body, strlen(body), NULL, NULL, &fmt),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(fmt, REGFILE_NONE);
    assert_int_equal(regfile_parse(NULL, 4, &tr_sink, NULL, NULL), ERROR_INVALID_PARAMETER);
    /* A sink without callbacks is allowed. */
    regfile_sink none = {0};
    assert_int_equal(regfile_parse((const uint8_t *)body, strlen(body), &none, NULL, &fmt),
                     ERROR_SUCCESS);
    assert_int_equal(fmt, REGFILE_V4);
}

/* ------------------------------------------------------------------------------------------
 * Writer */

/* u16 - append the UTF-16LE form of the first n bytes of UTF-8 s. */
static void u16(buf *b, const char *s, size_t n)
{
    assert_int_equal(base_utf8_to_utf16(s, n, b), 0);
}

/* wsz - write a string value: UTF-8 s (n bytes, may hold NULs) as UTF-16LE, with a final
 * terminator when term is set. */
static void wsz(buf *out, int version, const char *name, uint32_t type, const char *s, size_t n,
                bool term)
{
    buf d = BUF_INIT;
    u16(&d, s, n);
    if (term)
        buf_add_u16(&d, 0);
    assert_int_equal(
        regfile_write_value(out, version, name, type, d.data ? d.data : (const uint8_t *)"", d.len),
        ERROR_SUCCESS);
    buf_free(&d);
}

static void wbin(buf *out, int version, const char *name, uint32_t type, const void *d, size_t n)
{
    assert_int_equal(regfile_write_value(out, version, name, type, d, n), ERROR_SUCCESS);
}

/* expect_u16 - out must be the BOM and the UTF-16LE form of the UTF-8 text want. */
static void expect_u16(const buf *out, const char *want)
{
    buf w = BUF_INIT;
    utf16_file(&w, want, strlen(want));
    if (out->len != w.len || memcmp(out->data, w.data, w.len)) {
        buf got = BUF_INIT;
        if (out->len >= 2)
            base_utf16_to_utf8(out->data + 2, (out->len - 2) / 2, &got);
        print_error("got %zu bytes:\n%.*s\nwant %zu bytes:\n%s\n", out->len, (int)got.len,
                    (char *)got.data, w.len, want);
        buf_free(&got);
    }
    assert_int_equal(out->len, w.len);
    assert_memory_equal(out->data, w.data, w.len);
    buf_free(&w);
}

/* The export of section 7 of registry.md, observed from Wine 8.0's reg export. */
static const char golden7[] =
    "Windows Registry Editor Version 5.00\r\n"
    "\r\n"
    "[HKEY_CURRENT_USER\\Software\\Test]\r\n"
    "@=\"default data\"\r\n"
    "\"MyBE\"=hex(5):04,03,02,01\r\n"
    "\"MyBinary\"=hex:de,ad,be,ef,00,11,22,33\r\n"
    "\"MyDword\"=dword:1234abcd\r\n"
    "\"MyExpand\"=hex(2):25,00,53,00,79,00,73,00,74,00,65,00,6d,00,52,00,6f,00,6f,00,\\\r\n"
    "  74,00,25,00,5c,00,73,00,79,00,73,00,74,00,65,00,6d,00,33,00,32,00,00,00\r\n"
    "\"MyMulti\"=hex(7):6f,00,6e,00,65,00,00,00,74,00,77,00,6f,00,00,00,74,00,68,00,\\\r\n"
    "  72,00,65,00,65,00,00,00,00,00\r\n"
    "\"MyNone\"=hex(0):78,00,79,00,7a,00,00,00\r\n"
    "\"MyQword\"=hex(b):f0,de,bc,9a,78,56,34,12\r\n"
    "\"MySz\"=\"Hello World\"\r\n"
    "\"Quote\\\"Back\\\\slash\"=\"a \\\"quoted\\\" \\\\ value\"\r\n"
    "\"Str\"=\"hello\"\r\n"
    "\r\n"
    "[HKEY_CURRENT_USER\\Software\\Test\\Sub1]\r\n"
    "\r\n"
    "[HKEY_CURRENT_USER\\Software\\Test\\Sub1\\Sub2]\r\n"
    "\"Deep\"=\"deep value\"\r\n"
    "\r\n";

static void test_write_golden_v5(void **state)
{
    (void)state;
    buf out = BUF_INIT;
    const char *k = "HKEY_CURRENT_USER\\Software\\Test";
    assert_int_equal(regfile_write_header(&out, 5), ERROR_SUCCESS);
    assert_int_equal(regfile_write_key(&out, 5, k), ERROR_SUCCESS);
    wsz(&out, 5, NULL, REG_SZ, "default data", 12, true);
    wbin(&out, 5, "MyBE", REG_DWORD_BIG_ENDIAN, "\x04\x03\x02\x01", 4);
    wbin(&out, 5, "MyBinary", REG_BINARY, "\xde\xad\xbe\xef\x00\x11\x22\x33", 8);
    wbin(&out, 5, "MyDword", REG_DWORD, "\xcd\xab\x34\x12", 4);
    wsz(&out, 5, "MyExpand", REG_EXPAND_SZ, "%SystemRoot%\\system32", 21, true);
    wsz(&out, 5, "MyMulti", REG_MULTI_SZ, "one\0two\0three\0", 14, true);
    wsz(&out, 5, "MyNone", REG_NONE, "xyz", 3, true);
    wbin(&out, 5, "MyQword", REG_QWORD, "\xf0\xde\xbc\x9a\x78\x56\x34\x12", 8);
    wsz(&out, 5, "MySz", REG_SZ, "Hello World", 11, true);
    wsz(&out, 5, "Quote\"Back\\slash", REG_SZ, "a \"quoted\" \\ value", 18, true);
    wsz(&out, 5, "Str", REG_SZ, "hello", 5, true);
    assert_int_equal(regfile_write_key(&out, 5, "HKEY_CURRENT_USER\\Software\\Test\\Sub1"), 0);
    assert_int_equal(regfile_write_key(&out, 5, "HKEY_CURRENT_USER\\Software\\Test\\Sub1\\Sub2"),
                     0);
    wsz(&out, 5, "Deep", REG_SZ, "deep value", 10, true);
    assert_int_equal(regfile_write_end(&out, 5), ERROR_SUCCESS);
    assert_int_equal(out.len, 1468); /* the size Wine's file has */
    assert_memory_equal(out.data, "\xff\xfeW\0i\0n\0d\0o\0w\0s\0 \0R\0", 20);
    expect_u16(&out, golden7);
    buf_free(&out);
}

#define N10 "NNNNNNNNNN"
#define N90 N10 N10 N10 N10 N10 N10 N10 N10 N10

static void test_write_forms(void **state)
{
    (void)state;
    uint8_t seq[60];
    for (size_t i = 0; i < sizeof seq; i++)
        seq[i] = (uint8_t)i;
    const char *longname = N90;
    buf out = BUF_INIT;
    assert_int_equal(regfile_write_header(&out, 5), ERROR_SUCCESS);
    /* REG_SZ as Windows prints it: len/2-1 units, up to the first NUL */
    wsz(&out, 5, "noterm", REG_SZ, "abc", 3, false);
    wsz(&out, 5, "nul", REG_SZ, "a\0b", 3, true);
    wbin(&out, 5, "odd", REG_SZ, "a\0b\0c\0d", 7);
    wbin(&out, 5, "one", REG_SZ, "a", 1);
    wbin(&out, 5, "empty", REG_SZ, "", 0);
    wsz(&out, 5, "esc", REG_SZ, "\r\n\\\";#", 6, true);
    /* DWORD: only 4 bytes use dword: */
    wbin(&out, 5, "dw2", REG_DWORD, "\x01\x02", 2);
    wbin(&out, 5, "dw0", REG_DWORD, "", 0);
    wbin(&out, 5, "dw8", REG_DWORD, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    /* hex forms */
    wbin(&out, 5, "b0", REG_BINARY, "", 0);
    wbin(&out, 5, "t100", 0x100, "\xff", 1);
    wbin(&out, 5, "tmax", 0xffffffff, "", 0);
    wbin(&out, 5, "sz0", REG_EXPAND_SZ, "", 0);
    /* names */
    wsz(&out, 5, "", REG_SZ, "default", 7, true);
    wsz(&out, 5, "a\"b\\c\rd\ne", REG_SZ, "x", 1, true);
    wsz(&out, 5, "caf\xc3\xa9 \xe2\x82\xac", REG_SZ, "\xf0\x9f\x98\x80", 4, true);
    /* wrapping: 23 bytes reach column 77 on the first line, 25 on the next ones */
    wbin(&out, 5, "B", REG_BINARY, seq, sizeof seq);
    wbin(&out, 5, longname, REG_BINARY, seq, 2);
    assert_int_equal(regfile_write_key(&out, 5, "HKEY_LOCAL_MACHINE\\x]y"), ERROR_SUCCESS);
    assert_int_equal(regfile_write_end(&out, 5), ERROR_SUCCESS);
    expect_u16(
        &out,
        "Windows Registry Editor Version 5.00\r\n"
        "\"noterm\"=\"ab\"\r\n"
        "\"nul\"=\"a\"\r\n"
        "\"odd\"=\"ab\"\r\n"
        "\"one\"=\"\"\r\n"
        "\"empty\"=\"\"\r\n"
        "\"esc\"=\"\\r\\n\\\\\\\";#\"\r\n"
        "\"dw2\"=hex(4):01,02\r\n"
        "\"dw0\"=hex(4):\r\n"
        "\"dw8\"=hex(4):01,02,03,04,05,06,07,08\r\n"
        "\"b0\"=hex:\r\n"
        "\"t100\"=hex(100):ff\r\n"
        "\"tmax\"=hex(ffffffff):\r\n"
        "\"sz0\"=hex(2):\r\n"
        "@=\"default\"\r\n"
        "\"a\\\"b\\\\c\\rd\\ne\"=\"x\"\r\n"
        "\"caf\xc3\xa9 \xe2\x82\xac\"=\"\xf0\x9f\x98\x80\"\r\n"
        "\"B\"=hex:00,01,02,03,04,05,06,07,08,09,0a,0b,0c,0d,0e,0f,10,11,12,13,14,15,16,\\\r\n"
        "  17,18,19,1a,1b,1c,1d,1e,1f,20,21,22,23,24,25,26,27,28,29,2a,2b,2c,2d,2e,2f,\\\r\n"
        "  30,31,32,33,34,35,36,37,38,39,3a,3b\r\n"
        "\"" N90 "\"=hex:00,\\\r\n"
        "  01\r\n"
        "\r\n"
        "[HKEY_LOCAL_MACHINE\\x]y]\r\n"
        "\r\n");
    buf_free(&out);
}

static void test_write_v4(void **state)
{
    (void)state;
    buf out = BUF_INIT;
    assert_int_equal(regfile_write_header(&out, 4), ERROR_SUCCESS);
    assert_int_equal(regfile_write_key(&out, 4, "HKEY_CURRENT_USER\\Software\\Caf\xc3\xa9"), 0);
    wsz(&out, 4, NULL, REG_SZ, "\xe2\x82\xac caf\xc3\xa9 \xe4\xb8\xad \"q\"", 17, true);
    wsz(&out, 4, "MyExpand", REG_EXPAND_SZ, "%SystemRoot%\\system32", 21, true);
    wsz(&out, 4, "M", REG_MULTI_SZ, "one\0two\0", 8, true);
    wsz(&out, 4, "E", REG_EXPAND_SZ, "\xe2\x82\xac", 3, true);
    wbin(&out, 4, "B", REG_BINARY, "\x01\x02", 2);
    wbin(&out, 4, "D", REG_DWORD, "\x01\0\0\0", 4);
    wsz(&out, 4, "\xc3\xa9t\xc3\xa9", REG_SZ, "x", 1, true);
    assert_int_equal(regfile_write_end(&out, 4), ERROR_SUCCESS);
    static const char want[] =
        "REGEDIT4\r\n"
        "\r\n"
        "[HKEY_CURRENT_USER\\Software\\Caf\xe9]\r\n"
        "@=\"\x80 caf\xe9 ? \\\"q\\\"\"\r\n"
        "\"MyExpand\"=hex(2):25,53,79,73,74,65,6d,52,6f,6f,74,25,5c,73,79,73,74,65,6d,33,\\\r\n"
        "  32,00\r\n"
        "\"M\"=hex(7):6f,6e,65,00,74,77,6f,00,00\r\n"
        "\"E\"=hex(2):80,00\r\n"
        "\"B\"=hex:01,02\r\n"
        "\"D\"=dword:00000001\r\n"
        "\"\xe9t\xe9\"=\"x\"\r\n"
        "\r\n";
    if (out.len != sizeof want - 1 || memcmp(out.data, want, out.len))
        print_error("got:\n%.*s\nwant:\n%s\n", (int)out.len, (char *)out.data, want);
    assert_int_equal(out.len, sizeof want - 1);
    assert_memory_equal(out.data, want, out.len);
    buf_free(&out);
}

static void test_write_errors(void **state)
{
    (void)state;
    buf out = BUF_INIT;
    assert_int_equal(regfile_write_header(&out, 5), ERROR_SUCCESS);
    size_t len = out.len;
    assert_int_equal(regfile_write_header(&out, 3), ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_header(NULL, 5), ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_key(&out, 6, "HKCU"), ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_key(&out, 5, NULL), ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_key(&out, 5, "HKCU\\\xff"), ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_value(&out, 5, "\xc3", REG_SZ, (const uint8_t *)"a\0", 2),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_value(&out, 5, "x", REG_BINARY, NULL, 1),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_value(&out, 0, "x", REG_BINARY, NULL, 0),
                     ERROR_INVALID_PARAMETER);
    assert_int_equal(regfile_write_end(&out, 7), ERROR_INVALID_PARAMETER);
    assert_int_equal(out.len, len);
    /* NULL data is fine when empty */
    assert_int_equal(regfile_write_value(&out, 5, "x", REG_BINARY, NULL, 0), ERROR_SUCCESS);
    buf_free(&out);
}

/* ------------------------------------------------------------------------------------------
 * Round trips: what the writer writes, the parser reads back unchanged. */

typedef struct rt_value {
    const char *name; /* NULL: default */
    uint32_t type;
    const char *data;
    size_t len;
} rt_value;

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    char longname[200];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    const rt_value values[] = {
        {NULL, REG_SZ, "d\0e\0f\0\0", 8},
        {"str", REG_SZ, "a\0\"\0\\\0\r\0\n\0;\0#\0\0", 16},
        {"\"q\" \\ [k] =x ;c #c\r\n", REG_SZ, "\0", 2},
        {"  lead", REG_SZ, " \0 \0\0", 6},
        {"uni", REG_SZ, "\xac\x20\x3d\xd8\x00\xde\x00\xd8\0", 10}, /* euro, pair, lone high */
        {"dw", REG_DWORD, "\x78\x56\x34\x12", 4},
        {"dw2", REG_DWORD, "\x78\x56", 2},
        {"dw0", REG_DWORD, "", 0},
        {"bin0", REG_BINARY, "", 0},
        {"big", REG_BINARY, (const char *)big, sizeof big},
        {longname, REG_BINARY, (const char *)big, 40},
        {"exp", REG_EXPAND_SZ, "%\0P\0%\0\0", 8},
        {"multi", REG_MULTI_SZ, "a\0\0\0b\0\0\0\0", 10},
        {"none", REG_NONE, "\x01", 1},
        {"odd type", 0x12345678, "\x01\x02\x03", 3},
        {"qword", REG_QWORD, "\x01\x02\x03\x04\x05\x06\x07\x08", 8},
        {"link", REG_LINK, "", 0},
        {"sz via hex", REG_EXPAND_SZ, "", 0},
    };
    buf out = BUF_INIT;
    trace w = {BUF_INIT};
    assert_int_equal(regfile_write_header(&out, 5), 0);
    const char *keys[] = {"HKEY_CURRENT_USER\\Software\\A", "HKCU\\Sub \xe2\x82\xac ]x",
                          "HKEY_LOCAL_MACHINE\\Software\\B\\"};
    for (size_t k = 0; k < 3; k++) {
        assert_int_equal(regfile_write_key(&out, 5, keys[k]), 0);
        tr_key(&w, 0, keys[k]);
        for (size_t i = k; i < sizeof values / sizeof *values; i += 2) {
            const rt_value *v = &values[i];
            assert_int_equal(
                regfile_write_value(&out, 5, v->name, v->type, (const uint8_t *)v->data, v->len),
                0);
            tr_value(&w, 0, v->name, v->type, (const uint8_t *)v->data, v->len);
        }
    }
    assert_int_equal(regfile_write_end(&out, 5), 0);
    trace t = {BUF_INIT};
    int rc;
    enum regfile_format fmt;
    char *got = parse_trace(&t, out.data, out.len, &rc, &fmt);
    char *expect = buf_detach(&w.out, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    assert_int_equal(fmt, REGFILE_V5);
    if (strcmp(got, expect))
        print_error("got  %s\nwant %s\n", got, expect);
    assert_string_equal(got, expect);
    free(got);
    free(expect);

    /* Version 4 keeps what CP1252 can hold. */
    out.len = 0;
    assert_int_equal(regfile_write_header(&out, 4), 0);
    assert_int_equal(regfile_write_key(&out, 4, "HKCU\\Caf\xc3\xa9"), 0);
    tr_key(&w, 0, "HKCU\\Caf\xc3\xa9");
    const rt_value v4[] = {
        {"caf\xc3\xa9", REG_SZ, "\xac\x20 \0\xe9\0\0", 8},
        {NULL, REG_EXPAND_SZ, "%\0T\0%\0\0", 8},
        {"m", REG_MULTI_SZ, "a\0\0\0b\0\0\0\0", 10},
        {"b", REG_BINARY, (const char *)big, 100},
        {"d", REG_DWORD, "\1\0\0\0", 4},
    };
    for (size_t i = 0; i < sizeof v4 / sizeof *v4; i++) {
        assert_int_equal(regfile_write_value(&out, 4, v4[i].name, v4[i].type,
                                             (const uint8_t *)v4[i].data, v4[i].len),
                         0);
        tr_value(&w, 0, v4[i].name, v4[i].type, (const uint8_t *)v4[i].data, v4[i].len);
    }
    assert_int_equal(regfile_write_end(&out, 4), 0);
    got = parse_trace(&t, out.data, out.len, &rc, &fmt);
    expect = buf_detach(&w.out, NULL);
    assert_int_equal(rc, ERROR_SUCCESS);
    assert_int_equal(fmt, REGFILE_V4);
    if (strcmp(got, expect))
        print_error("got  %s\nwant %s\n", got, expect);
    assert_string_equal(got, expect);
    free(got);
    free(expect);
    buf_free(&out);
}

/* A sink that keeps the values named "big" and the line of each value. */
typedef struct capture {
    buf data;
    uint32_t type;
    unsigned big_line, after_line, values, diags;
} capture;

static int cap_value(void *arg, unsigned line, const char *name, uint32_t type, const uint8_t *data,
                     size_t len)
{
    capture *c = arg;
    c->values++;
    if (name && !strcmp(name, "big")) {
        c->big_line = line;
        c->type = type;
        c->data.len = 0;
        assert_int_equal(buf_add(&c->data, data, len), 0);
    } else if (name && !strcmp(name, "after")) {
        c->after_line = line;
    }
    return 0;
}

static void cap_diag(void *arg, unsigned line, const char *msg)
{
    capture *c = arg;
    print_error("unexpected diag %u: %s\n", line, msg);
    c->diags++;
}

/* A value of 2 MiB, far more than REGFILE_MAX_LINE characters once written, exported in both
 * versions, reads back unchanged, and the value after it has the right line. */
static void test_big_value_round_trip(void **state)
{
    (void)state;
    enum { BIG = 2u << 20 };
    uint8_t *big = malloc(BIG);
    assert_non_null(big);
    uint32_t x = 12345;
    for (size_t i = 0; i < BIG; i++) {
        x = x * 1103515245u + 12345u;
        big[i] = (uint8_t)(x >> 16);
    }
    static const regfile_sink sink = {NULL, NULL, cap_value, NULL, cap_diag};
    for (int version = 4; version <= 5; version++) {
        buf out = BUF_INIT;
        assert_int_equal(regfile_write_header(&out, version), 0);
        assert_int_equal(regfile_write_key(&out, version, "HKEY_CURRENT_USER\\Software\\Big"), 0);
        assert_int_equal(
            regfile_write_value(&out, version, "small", REG_SZ, (const uint8_t *)"x\0\0", 4), 0);
        assert_int_equal(regfile_write_value(&out, version, "big", REG_BINARY, big, BIG), 0);
        assert_int_equal(
            regfile_write_value(&out, version, "after", REG_DWORD, (const uint8_t *)"\1\0\0\0", 4),
            0);
        assert_int_equal(regfile_write_end(&out, version), 0);
        /* The line of "after", counted in the written file: one more than the LFs before it. */
        size_t w = version == 5 ? 2 : 1;
        unsigned want_after = 1;
        for (size_t i = version == 5 ? 2 : 0; i + w <= out.len; i += w) {
            if (out.data[i] == '\n' && (w == 1 || out.data[i + 1] == 0))
                want_after++;
            if (out.data[i] == '"' && i + 7 * w <= out.len && out.data[i + w] == 'a' &&
                out.data[i + 2 * w] == 'f' && out.data[i + 5 * w] == 'r')
                break;
        }
        capture c = {BUF_INIT};
        enum regfile_format fmt;
        assert_int_equal(regfile_parse(out.data, out.len, &sink, &c, &fmt), ERROR_SUCCESS);
        assert_int_equal(fmt, version == 5 ? REGFILE_V5 : REGFILE_V4);
        assert_int_equal(c.diags, 0);
        assert_int_equal(c.values, 3);
        assert_int_equal(c.type, REG_BINARY);
        assert_int_equal(c.data.len, BIG);
        assert_memory_equal(c.data.data, big, BIG);
        assert_int_equal(c.big_line, 5); /* header, blank, key, small */
        assert_true(want_after > 80000); /* 2 MiB at 25 bytes a line */
        assert_int_equal(c.after_line, want_after);
        buf_free(&c.data);
        buf_free(&out);
    }
    free(big);
}

/* ------------------------------------------------------------------------------------------
 * reg_import's messages carry the line of the file, also for failures found when the
 * operations are applied to the store after parsing. */

typedef struct msgs {
    buf out; /* "L: message", joined with '|' */
} msgs;

static void msg_diag(void *arg, unsigned line, const char *msg)
{
    msgs *m = arg;
    if (m->out.len)
        buf_addc(&m->out, '|');
    buf_printf(&m->out, "%u: %s", line, msg);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void test_import_lines(void **state)
{
    (void)state;
    char dir[] = "/tmp/regfile_test.XXXXXX";
    assert_non_null(mkdtemp(dir));
    reg_ctx *ctx;
    assert_int_equal(reg_ctx_open(dir, &ctx), ERROR_SUCCESS);
    char longname[REG_MAX_VALUE_NAME + 2], longkey[REG_MAX_KEY_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    buf in = BUF_INIT, want = BUF_INIT;
    buf_printf(&in,
               "REGEDIT4\r\n"                             /* 1 */
               "\r\n"                                     /* 2 */
               "[HKEY_BOGUS\\A]\r\n"                      /* 3: bad root */
               "[HKEY_CURRENT_USER\\Software\\T]\r\n"     /* 4 */
               "\"ok\"=\"1\"\r\n"                         /* 5 */
               "\"%s\"=hex:01,\\\r\n"                     /* 6: name too long */
               "  02\r\n"                                 /* 7 */
               "[HKEY_CURRENT_USER\\Software\\T\\%s]\r\n" /* 8: key name too long */
               "\"lost\"=\"1\"\r\n"                       /* 9: no key */
               "[-HKEY_BOGUS\\B]\r\n"                     /* 10: bad root */
               "[HKEY_CURRENT_USER\\Software\\T]\r\n"     /* 11 */
               "@=hex:zz\r\n",                            /* 12: syntax error */
               longname, longkey);
    buf_printf(&want,
               "3: Unable to import the registry key 'HKEY_BOGUS\\A': invalid root key|"
               "10: Unable to delete the registry key 'HKEY_BOGUS\\B': invalid root key|12: "
               "syntax error: bad hex data (bytes are 1-2 hex digits separated by commas; a "
               "line may end with ,\\ to continue): value dropped|"
               "6: Unable to set the value '%s'|8: Unable to import the registry key "
               "'Software\\T\\%s'",
               longname, longkey);
    msgs m = {BUF_INIT};
    assert_int_equal(reg_import(ctx, in.data, in.len, 0, msg_diag, &m), ERROR_SUCCESS);
    assert_non_null(buf_cstr(&m.out));
    assert_non_null(buf_cstr(&want));
    if (strcmp((char *)m.out.data, (char *)want.data))
        print_error("got  %s\nwant %s\n", (char *)m.out.data, (char *)want.data);
    assert_string_equal((char *)m.out.data, (char *)want.data);
    /* what could be imported was */
    reg_key *k;
    assert_int_equal(reg_key_open_path(ctx, "HKEY_CURRENT_USER\\Software\\T", 0, &k), 0);
    buf v = BUF_INIT;
    assert_int_equal(reg_value_get_sz(k, "ok", &v), 0);
    assert_non_null(buf_cstr(&v));
    assert_string_equal((char *)v.data, "1");
    assert_int_equal(reg_value_get(k, longname, NULL, NULL), ERROR_FILE_NOT_FOUND);
    assert_int_equal(reg_value_get(k, "lost", NULL, NULL), ERROR_FILE_NOT_FOUND);
    buf_free(&v);
    reg_key_close(k);
    reg_ctx_close(ctx);
    buf_free(&in);
    buf_free(&want);
    buf_free(&m.out);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),          cmocka_unit_test(test_messages),
        cmocka_unit_test(test_line_limit),           cmocka_unit_test(test_abort),
        cmocka_unit_test(test_parse_args),           cmocka_unit_test(test_write_golden_v5),
        cmocka_unit_test(test_write_forms),          cmocka_unit_test(test_write_v4),
        cmocka_unit_test(test_write_errors),         cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_event_lines),          cmocka_unit_test(test_data_limit),
        cmocka_unit_test(test_big_value_round_trip), cmocka_unit_test(test_import_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
