/* mapiprop_test.c - unit tests of lib/mapi/prop.c: the stored form of property values, tag and
 * type names, text for people and from MAPISVC.INF, result names, section uids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mapi/mapi.h"

static char *hex(const uint8_t *p, size_t n)
{
    static char out[1024];
    size_t k = n < 500 ? n : 500;
    for (size_t i = 0; i < k; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
    out[2 * k] = 0;
    return out;
}

/* unhex - a hex string as bytes (into a static buffer). */
static const uint8_t *unhex(const char *s, size_t *n)
{
    static uint8_t out[512];
    size_t k = 0;
    for (; s[2 * k] && s[2 * k + 1]; k++) {
        unsigned b;
        sscanf(s + 2 * k, "%2x", &b);
        out[k] = (uint8_t)b;
    }
    *n = k;
    return out;
}

/* values_equal - two values of one base type are the same. */
static bool values_equal(uint32_t base, const mapi_prop *a, const mapi_prop *b)
{
    switch (base) {
    case PT_I2:
        return a->v.i == b->v.i;
    case PT_LONG:
        return a->v.l == b->v.l;
    case PT_ERROR:
        return a->v.err == b->v.err;
    case PT_BOOLEAN:
        return a->v.b == b->v.b;
    case PT_R4:
        return !memcmp(&a->v.flt, &b->v.flt, sizeof(float));
    case PT_DOUBLE:
    case PT_APPTIME:
        return !memcmp(&a->v.dbl, &b->v.dbl, sizeof(double));
    case PT_I8:
    case PT_CURRENCY:
        return a->v.li == b->v.li;
    case PT_SYSTIME:
        return a->v.ft == b->v.ft;
    case PT_STRING8:
    case PT_UNICODE:
        return a->v.str && b->v.str && !strcmp(a->v.str, b->v.str);
    case PT_BINARY:
    case PT_CLSID:
        return a->v.bin.cb == b->v.bin.cb &&
               (!a->v.bin.cb || !memcmp(a->v.bin.lpb, b->v.bin.lpb, a->v.bin.cb));
    default:
        return false;
    }
}

static bool props_equal(const mapi_prop *a, const mapi_prop *b)
{
    if (a->tag != b->tag)
        return false;
    uint32_t t = PROP_TYPE(a->tag);
    if (!(t & MV_FLAG))
        return values_equal(t, a, b);
    if (a->v.mv.n != b->v.mv.n)
        return false;
    for (size_t i = 0; i < a->v.mv.n; i++)
        if (!values_equal(t & ~MV_FLAG, &a->v.mv.v[i], &b->v.mv.v[i]))
            return false;
    return true;
}

/* Values for the tables below. */
static uint8_t bin3[] = {0x01, 0x02, 0xff};
static uint8_t guid[16] = {0x13, 0xdb, 0xb0, 0xc8, 0xaa, 0x05, 0x10, 0x1a,
                           0x9b, 0xb0, 0x00, 0xaa, 0x00, 0x2f, 0xc4, 0x5a};
static mapi_prop mv_long[] = {{.tag = PT_LONG, .v.l = 1}, {.tag = PT_LONG, .v.l = -2}};
static mapi_prop mv_str[] = {{.tag = PT_STRING8, .v.str = "a"}, {.tag = PT_STRING8, .v.str = "bc"}};
static mapi_prop mv_wstr[] = {{.tag = PT_UNICODE, .v.str = "\xc3\xa9"}};
static mapi_prop mv_bin[] = {{.tag = PT_BINARY, .v.bin = {3, bin3}},
                             {.tag = PT_BINARY, .v.bin = {0, NULL}}};
static mapi_prop mv_guid[] = {{.tag = PT_CLSID, .v.bin = {16, guid}}};
static mapi_prop mv_i2[] = {{.tag = PT_I2, .v.i = 7}};

#define ID 0x6700 /* an id without a name */

static const struct {
    mapi_prop p;
    const char *stored; /* hex */
} golden[] = {
    {{.tag = PROP_TAG(PT_LONG, ID), .v.l = 42}, "2a000000"},
    {{.tag = PROP_TAG(PT_LONG, ID), .v.l = -1}, "ffffffff"},
    {{.tag = PROP_TAG(PT_I2, ID), .v.i = -2}, "feff"},
    {{.tag = PROP_TAG(PT_BOOLEAN, ID), .v.b = true}, "0100"},
    {{.tag = PROP_TAG(PT_BOOLEAN, ID), .v.b = false}, "0000"},
    {{.tag = PROP_TAG(PT_ERROR, ID), .v.err = MAPI_E_NOT_FOUND}, "0f010480"},
    {{.tag = PROP_TAG(PT_R4, ID), .v.flt = 1.0f}, "0000803f"},
    {{.tag = PROP_TAG(PT_DOUBLE, ID), .v.dbl = 1.0}, "000000000000f03f"},
    {{.tag = PROP_TAG(PT_APPTIME, ID), .v.dbl = -2.5}, "00000000000004c0"},
    {{.tag = PROP_TAG(PT_I8, ID), .v.li = 0x0102030405060708}, "0807060504030201"},
    {{.tag = PROP_TAG(PT_CURRENCY, ID), .v.li = -1}, "ffffffffffffffff"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 116444736000000000ull}, "00803ed5deb19d01"},
    {{.tag = PR_DISPLAY_NAME, .v.str = "caf\xc3\xa9"}, "636166e900"},
    {{.tag = PR_DISPLAY_NAME, .v.str = "\xe2\x82\xac"}, "8000"},
    {{.tag = PR_DISPLAY_NAME, .v.str = ""}, "00"},
    {{.tag = PR_DISPLAY_NAME_W, .v.str = "A\xc3\xa9"}, "4100e9000000"},
    {{.tag = PR_DISPLAY_NAME_W, .v.str = "\xf0\x9d\x84\x9e"}, "34d81edd0000"},
    {{.tag = PR_DISPLAY_NAME_W, .v.str = ""}, "0000"},
    {{.tag = PR_SEARCH_KEY, .v.bin = {3, bin3}}, "0102ff"},
    {{.tag = PR_SEARCH_KEY, .v.bin = {0, NULL}}, ""},
    {{.tag = PROP_TAG(PT_CLSID, ID), .v.bin = {16, guid}}, "13dbb0c8aa05101a9bb000aa002fc45a"},
    {{.tag = PROP_TAG(PT_MV_LONG, ID), .v.mv = {2, mv_long}}, "0200000001000000feffffff"},
    {{.tag = PROP_TAG(PT_MV_LONG, ID), .v.mv = {0, NULL}}, "00000000"},
    {{.tag = PROP_TAG(MV_FLAG | PT_I2, ID), .v.mv = {1, mv_i2}}, "010000000700"},
    {{.tag = PR_SERVICE_SUPPORT_FILES, .v.mv = {2, mv_str}}, "0200000002000000610003000000626300"},
    {{.tag = PROP_TAG(PT_MV_UNICODE, ID), .v.mv = {1, mv_wstr}}, "0100000004000000e9000000"},
    {{.tag = PROP_TAG(PT_MV_BINARY, ID), .v.mv = {2, mv_bin}}, "02000000030000000102ff00000000"},
    {{.tag = PROP_TAG(MV_FLAG | PT_CLSID, ID), .v.mv = {1, mv_guid}},
     "0100000013dbb0c8aa05101a9bb000aa002fc45a"},
};

/* Every type: the exact bytes, and decoding them gives the value back. */
static void test_encode_golden(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof golden / sizeof *golden; i++) {
        buf b = BUF_INIT;
        assert_int_equal(buf_add(&b, "x", 1), 0); /* encode appends */
        mapi_err e = mapi_prop_encode(&golden[i].p, &b);
        if (e != S_OK || strcmp(hex(b.data + 1, b.len - 1), golden[i].stored))
            fail_msg("case %zu (tag %08x): got %s %s want %s", i, golden[i].p.tag, mapi_strerror(e),
                     hex(b.data + 1, b.len - 1), golden[i].stored);
        mapi_prop d;
        e = mapi_prop_decode(golden[i].p.tag, b.data + 1, b.len - 1, &d);
        if (e != S_OK || !props_equal(&d, &golden[i].p))
            fail_msg("case %zu: decode gave %s or another value", i, mapi_strerror(e));
        /* A deep copy is equal and independent. */
        mapi_prop c;
        assert_int_equal(mapi_prop_copy(&d, &c), S_OK);
        mapi_prop_clear(&d);
        assert_int_equal(PROP_TYPE(d.tag), PT_NULL);
        assert_int_equal(PROP_ID(d.tag), PROP_ID(golden[i].p.tag));
        assert_true(props_equal(&c, &golden[i].p));
        mapi_prop_clear(&c);
        buf_free(&b);
    }
}

static void test_encode_errors(void **state)
{
    (void)state;
    static uint8_t fifteen[15];
    static const struct {
        mapi_prop p;
        mapi_err want;
    } cases[] = {
        {{.tag = PROP_TAG(PT_OBJECT, ID)}, MAPI_E_INVALID_TYPE},
        {{.tag = PROP_TAG(PT_NULL, ID)}, MAPI_E_INVALID_TYPE},
        {{.tag = PROP_TAG(PT_UNSPECIFIED, ID)}, MAPI_E_INVALID_TYPE},
        {{.tag = PROP_TAG(0x0099, ID)}, MAPI_E_INVALID_TYPE},
        {{.tag = PROP_TAG(MV_FLAG | PT_BOOLEAN, ID)}, MAPI_E_INVALID_TYPE},
        {{.tag = PROP_TAG(MV_FLAG | PT_ERROR, ID)}, MAPI_E_INVALID_TYPE},
        {{.tag = PROP_TAG(0x2000 | PT_LONG, ID)}, MAPI_E_INVALID_TYPE}, /* MV_INSTANCE */
        {{.tag = PROP_TAG(PT_CLSID, ID), .v.bin = {15, fifteen}}, MAPI_E_BAD_VALUE},
        {{.tag = PR_DISPLAY_NAME, .v.str = "\xe4\xb8\xad"}, MAPI_E_BAD_CHARWIDTH},
        {{.tag = PR_DISPLAY_NAME, .v.str = "ok \xf0\x9d\x84\x9e"}, MAPI_E_BAD_CHARWIDTH},
        {{.tag = PR_DISPLAY_NAME, .v.str = "\xff"}, MAPI_E_BAD_VALUE},
        {{.tag = PR_DISPLAY_NAME_W, .v.str = "\xc3"}, MAPI_E_BAD_VALUE},
        {{.tag = PR_DISPLAY_NAME, .v.str = NULL}, MAPI_E_BAD_VALUE},
        {{.tag = PR_SEARCH_KEY, .v.bin = {2, NULL}}, MAPI_E_BAD_VALUE},
        {{.tag = PR_SERVICE_SUPPORT_FILES, .v.mv = {1, NULL}}, MAPI_E_BAD_VALUE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf b = BUF_INIT;
        assert_int_equal(buf_add(&b, "keep", 4), 0);
        mapi_err e = mapi_prop_encode(&cases[i].p, &b);
        if (e != cases[i].want || b.len != 4)
            fail_msg("case %zu: got %s (%zu bytes) want %s", i, mapi_strerror(e), b.len,
                     mapi_strerror(cases[i].want));
        buf_free(&b);
    }
    /* An MV of strings fails whole when one value cannot be written. */
    mapi_prop bad[] = {{.tag = PT_STRING8, .v.str = "fine"},
                       {.tag = PT_STRING8, .v.str = "\xe4\xb8\xad"}};
    mapi_prop mv = {.tag = PR_SERVICE_SUPPORT_FILES, .v.mv = {2, bad}};
    buf b = BUF_INIT;
    assert_int_equal(mapi_prop_encode(&mv, &b), MAPI_E_BAD_CHARWIDTH);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_decode_corrupt(void **state)
{
    (void)state;
    static const struct {
        uint32_t tag;
        const char *data; /* hex */
    } cases[] = {
        {PROP_TAG(PT_LONG, ID), "2a0000"},
        {PROP_TAG(PT_LONG, ID), "2a00000000"},
        {PROP_TAG(PT_LONG, ID), ""},
        {PROP_TAG(PT_I2, ID), "01"},
        {PROP_TAG(PT_BOOLEAN, ID), "01"},
        {PROP_TAG(PT_BOOLEAN, ID), "01000000"},
        {PROP_TAG(PT_DOUBLE, ID), "0000000000"},
        {PROP_TAG(PT_SYSTIME, ID), "00803ed5deb19d"},
        {PROP_TAG(PT_CLSID, ID), "13dbb0c8aa05101a9bb000aa002fc4"},
        {PR_DISPLAY_NAME, ""},
        {PR_DISPLAY_NAME, "6162"},     /* no terminator */
        {PR_DISPLAY_NAME, "61006200"}, /* embedded NUL */
        {PR_DISPLAY_NAME, "610000"},   /* two terminators */
        {PR_DISPLAY_NAME_W, ""},
        {PR_DISPLAY_NAME_W, "00"},
        {PR_DISPLAY_NAME_W, "410000"},   /* odd length */
        {PR_DISPLAY_NAME_W, "41004200"}, /* no terminator */
        {PR_DISPLAY_NAME_W, "410000004200"},
        {PR_DISPLAY_NAME_W, "4100000000"},
        {PROP_TAG(PT_MV_LONG, ID), ""},
        {PROP_TAG(PT_MV_LONG, ID), "010000"},
        {PROP_TAG(PT_MV_LONG, ID), "0200000001000000"},   /* count too large */
        {PROP_TAG(PT_MV_LONG, ID), "010000000100000002"}, /* trailing byte */
        {PROP_TAG(PT_MV_LONG, ID), "00000000ff"},
        {PROP_TAG(PT_MV_LONG, ID), "ffffffff01000000"},
        {PR_SERVICE_SUPPORT_FILES, "ffffffff"},                 /* count beyond the bytes */
        {PR_SERVICE_SUPPORT_FILES, "01000000050000006100"},     /* length beyond the bytes */
        {PR_SERVICE_SUPPORT_FILES, "0100000002000000"},         /* value missing */
        {PR_SERVICE_SUPPORT_FILES, "01000000020000006162"},     /* value without NUL */
        {PR_SERVICE_SUPPORT_FILES, "010000000200000061000000"}, /* trailing bytes */
        {PR_SERVICE_SUPPORT_FILES, "0200000002000000610000"},   /* second length cut */
        {PROP_TAG(PT_MV_BINARY, ID), "0100000003000000ffff"},
        {PROP_TAG(PT_MV_UNICODE, ID), "0100000003000000410000"},
        {PROP_TAG(MV_FLAG | PT_CLSID, ID), "0100000013dbb0c8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n;
        const uint8_t *d = unhex(cases[i].data, &n);
        mapi_prop p;
        mapi_err e = mapi_prop_decode(cases[i].tag, d, n, &p);
        if (e != MAPI_E_CORRUPT_DATA)
            fail_msg("case %zu (%08x %s): got %s want MAPI_E_CORRUPT_DATA", i, cases[i].tag,
                     cases[i].data, mapi_strerror(e));
        assert_int_equal(PROP_TYPE(p.tag), PT_NULL);
        mapi_prop_clear(&p);
    }
    mapi_prop p;
    assert_int_equal(mapi_prop_decode(PROP_TAG(PT_OBJECT, ID), (const uint8_t *)"", 0, &p),
                     MAPI_E_INVALID_TYPE);
    assert_int_equal(mapi_prop_decode(PROP_TAG(PT_LONG, ID), NULL, 4, &p),
                     MAPI_E_INVALID_PARAMETER);
}

static void test_decode_lenient(void **state)
{
    (void)state;
    mapi_prop p;
    /* Any nonzero PT_BOOLEAN is true. */
    static const char *const truths[] = {"0100", "0001", "ffff"};
    for (size_t i = 0; i < 3; i++) {
        size_t n;
        const uint8_t *d = unhex(truths[i], &n);
        assert_int_equal(mapi_prop_decode(PR_DEFAULT_PROFILE, d, n, &p), S_OK);
        assert_true(p.v.b);
    }
    assert_int_equal(mapi_prop_decode(PR_DEFAULT_PROFILE, (const uint8_t *)"\0\0", 2, &p), S_OK);
    assert_false(p.v.b);
    /* The bytes CP1252 leaves unassigned survive as C1 controls, and go back as they came. */
    assert_int_equal(mapi_prop_decode(PR_DISPLAY_NAME, (const uint8_t *)"\x81\x9d", 3, &p), S_OK);
    assert_string_equal(p.v.str, "\xc2\x81\xc2\x9d");
    buf b = BUF_INIT;
    assert_int_equal(mapi_prop_encode(&p, &b), S_OK);
    assert_string_equal(hex(b.data, b.len), "819d00");
    mapi_prop_clear(&p);
    buf_free(&b);
    /* Lone surrogates of PT_UNICODE come back unchanged too (WTF-8). */
    assert_int_equal(mapi_prop_decode(PR_DISPLAY_NAME_W, (const uint8_t *)"\x00\xd8\x00", 4, &p),
                     S_OK);
    assert_int_equal(mapi_prop_encode(&p, &b), S_OK);
    assert_string_equal(hex(b.data, b.len), "00d80000");
    mapi_prop_clear(&p);
    buf_free(&b);
    /* An empty MV of strings. */
    assert_int_equal(mapi_prop_decode(PR_SERVICE_SUPPORT_FILES, (const uint8_t *)"\0\0\0", 4, &p),
                     S_OK);
    assert_int_equal(p.v.mv.n, 0);
    mapi_props_free(NULL, 0);
    mapi_prop *arr = calloc(2, sizeof *arr);
    assert_non_null(arr);
    assert_int_equal(mapi_prop_decode(PR_SERVICE_SUPPORT_FILES,
                                      unhex("0200000002000000610003000000626300", &(size_t){0}), 17,
                                      &arr[0]),
                     S_OK);
    assert_int_equal(arr[0].v.mv.n, 2);
    assert_string_equal(arr[0].v.mv.v[1].v.str, "bc");
    assert_int_equal(arr[0].v.mv.v[1].tag, PROP_TAG(PT_STRING8, 0x3D0F));
    arr[1] = p;
    mapi_props_free(arr, 2);
}

static const struct {
    uint32_t tag;
    const char *name;
} names[] = {
    {PR_DISPLAY_NAME, "PR_DISPLAY_NAME"},
    {PR_DISPLAY_NAME_W, "PR_DISPLAY_NAME_W"},
    {PR_PROVIDER_DISPLAY, "PR_PROVIDER_DISPLAY"},
    {PR_RESOURCE_FLAGS, "PR_RESOURCE_FLAGS"},
    {PR_PROVIDER_DLL_NAME, "PR_PROVIDER_DLL_NAME"},
    {PR_SEARCH_KEY, "PR_SEARCH_KEY"},
    {PR_PROVIDER_UID, "PR_PROVIDER_UID"},
    {PR_PROVIDER_ORDINAL, "PR_PROVIDER_ORDINAL"},
    {PR_STORE_PROVIDERS, "PR_STORE_PROVIDERS"},
    {PR_AB_PROVIDERS, "PR_AB_PROVIDERS"},
    {PR_TRANSPORT_PROVIDERS, "PR_TRANSPORT_PROVIDERS"},
    {PR_DEFAULT_PROFILE, "PR_DEFAULT_PROFILE"},
    {PR_SERVICE_NAME, "PR_SERVICE_NAME"},
    {PR_SERVICE_DLL_NAME, "PR_SERVICE_DLL_NAME"},
    {PR_SERVICE_ENTRY_NAME, "PR_SERVICE_ENTRY_NAME"},
    {PR_SERVICE_UID, "PR_SERVICE_UID"},
    {PR_SERVICE_EXTRA_UIDS, "PR_SERVICE_EXTRA_UIDS"},
    {PR_SERVICES, "PR_SERVICES"},
    {PR_SERVICE_SUPPORT_FILES, "PR_SERVICE_SUPPORT_FILES"},
    {PR_SERVICE_DELETE_FILES, "PR_SERVICE_DELETE_FILES"},
    {PR_PROFILE_NAME, "PR_PROFILE_NAME"},
    {PR_IDENTITY_ENTRYID, "PR_IDENTITY_ENTRYID"},
    {PR_RESOURCE_TYPE, "PR_RESOURCE_TYPE"},
    {PR_PROFILE_VERSION, "PR_PROFILE_VERSION"},
    {PR_PROFILE_CONFIG_FLAGS, "PR_PROFILE_CONFIG_FLAGS"},
    {PR_PROFILE_HOME_SERVER, "PR_PROFILE_HOME_SERVER"},
    {PR_PROFILE_USER, "PR_PROFILE_USER"},
    {PR_PROFILE_CONNECT_FLAGS, "PR_PROFILE_CONNECT_FLAGS"},
    {PR_PROFILE_TYPE, "PR_PROFILE_TYPE"},
    {PR_PROFILE_MAILBOX, "PR_PROFILE_MAILBOX"},
    {PR_PROFILE_SERVER, "PR_PROFILE_SERVER"},
    {PR_PROFILE_HOME_SERVER_DN, "PR_PROFILE_HOME_SERVER_DN"},
    {PR_PROFILE_SERVER_DN, "PR_PROFILE_SERVER_DN"},
    {0x0FFF0102, "PR_ENTRYID"},
    {0x0FF90102, "PR_RECORD_KEY"},
    {0x0FFE0003, "PR_OBJECT_TYPE"},
    {0x3003001E, "PR_EMAIL_ADDRESS"},
    {0x3002001F, "PR_ADDRTYPE_W"},
    {0x66060003, "PR_PROFILE_UI_STATE"},
    {0x66090003, "PR_PROFILE_OPEN_FLAGS"},
    {0x6609001E, "PR_PROFILE_BINDING_ORDER"},
    {0x34140102, "PR_MDB_PROVIDER"},
    {0x3D0F101F, "PR_SERVICE_SUPPORT_FILES_W"},
};

static void test_tag_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *got = mapi_tag_name(names[i].tag);
        if (!got || strcmp(got, names[i].name))
            fail_msg("tag %08x: got %s want %s", names[i].tag, got ? got : "NULL", names[i].name);
        uint32_t t = 0;
        mapi_err e = mapi_tag_parse(names[i].name, &t);
        if (e || t != names[i].tag)
            fail_msg("parse %s: got %s %08x want %08x", names[i].name, mapi_strerror(e), t,
                     names[i].tag);
    }
    /* Another type under a known id: the bare name. */
    assert_string_equal(mapi_tag_name(PROP_TAG(PT_ERROR, 0x3009)), "PR_RESOURCE_FLAGS");
    assert_string_equal(mapi_tag_name(PROP_TAG(PT_ERROR, 0x3001)), "PR_DISPLAY_NAME");
    assert_null(mapi_tag_name(0x12340003));
}

static void test_tag_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        mapi_err e;
        uint32_t tag;
    } cases[] = {
        {"pr_display_name", S_OK, PR_DISPLAY_NAME},
        {"Pr_Display_Name_W", S_OK, PR_DISPLAY_NAME_W},
        {"PR_DISPLAY_NAME_A", S_OK, PR_DISPLAY_NAME},
        {"PR_SERVICE_SUPPORT_FILES_A", S_OK, PR_SERVICE_SUPPORT_FILES},
        {"3001001E", S_OK, 0x3001001E},
        {"3001001e", S_OK, 0x3001001E},
        {"66090003", S_OK, 0x66090003},
        {"0x34140102", S_OK, 0x34140102},
        {"12345678", S_OK, 0x12345678},
        {"PR_NOPE", MAPI_E_NOT_FOUND, 0},
        {"PR_RESOURCE_FLAGS_A", MAPI_E_NOT_FOUND, 0},
        {"PR_DISPLAY_NAME ", MAPI_E_NOT_FOUND, 0},
        {"3001001", MAPI_E_NOT_FOUND, 0},
        {"3001001E0", MAPI_E_NOT_FOUND, 0},
        {"3001001G", MAPI_E_NOT_FOUND, 0},
        {"", MAPI_E_NOT_FOUND, 0},
        {"_A", MAPI_E_NOT_FOUND, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint32_t t = 0;
        mapi_err e = mapi_tag_parse(cases[i].s, &t);
        if (e != cases[i].e || (!e && t != cases[i].tag))
            fail_msg("\"%s\": got %s %08x want %s %08x", cases[i].s, mapi_strerror(e), t,
                     mapi_strerror(cases[i].e), cases[i].tag);
    }
}

static void test_value_names(void **state)
{
    (void)state;
    static const struct {
        uint32_t tag;
        const char *name;
    } cases[] = {
        {PR_DISPLAY_NAME, "001e3001"},    {PR_DISPLAY_NAME_W, "001f3001"},
        {PR_SERVICE_UID, "01023d0c"},     {PR_RESOURCE_FLAGS, "00033009"},
        {PR_PROFILE_VERSION, "00036600"}, {PR_SERVICE_SUPPORT_FILES, "101e3d0f"},
        {0xFFFFFFFF, "ffffffff"},         {0, "00000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[9];
        mapi_tag_value_name(cases[i].tag, out);
        assert_string_equal(out, cases[i].name);
        uint32_t t;
        assert_int_equal(mapi_tag_from_value_name(cases[i].name, &t), S_OK);
        assert_int_equal(t, cases[i].tag);
    }
    uint32_t t;
    assert_int_equal(mapi_tag_from_value_name("001E3001", &t), S_OK);
    assert_int_equal(t, PR_DISPLAY_NAME);
    static const char *const bad[] = {"001e300", "001e30010", "0x1e3001",       "001g3001",
                                      "",        " 01e3001",  "PR_DISPLAY_NAME"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(mapi_tag_from_value_name(bad[i], &t), MAPI_E_INVALID_PARAMETER);
    assert_int_equal(mapi_tag_from_value_name(NULL, &t), MAPI_E_INVALID_PARAMETER);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(mapi_type_name(PT_STRING8), "PT_STRING8");
    assert_string_equal(mapi_type_name(PT_UNICODE), "PT_UNICODE");
    assert_string_equal(mapi_type_name(PT_BINARY), "PT_BINARY");
    assert_string_equal(mapi_type_name(PT_SYSTIME), "PT_SYSTIME");
    assert_string_equal(mapi_type_name(PT_MV_LONG), "PT_MV_LONG");
    assert_string_equal(mapi_type_name(PT_MV_STRING8), "PT_MV_STRING8");
    assert_string_equal(mapi_type_name(MV_FLAG | PT_CLSID), "PT_MV_CLSID");
    assert_null(mapi_type_name(0x0099));
    assert_null(mapi_type_name(MV_FLAG | PT_BOOLEAN));
}

static uint8_t uids[32] = {0x13, 0xdb, 0xb0, 0xc8, 0xaa, 0x05, 0x10, 0x1a, 0x9b, 0xb0, 0x00,
                           0xaa, 0x00, 0x2f, 0xc4, 0x5a, 0x92, 0x07, 0xf3, 0xe0, 0xa3, 0xb1,
                           0x10, 0x19, 0x90, 0x8b, 0x08, 0x00, 0x2b, 0x2a, 0x56, 0xc2};

static const struct {
    mapi_prop p;
    const char *text;
} formats[] = {
    {{.tag = PROP_TAG(PT_LONG, ID), .v.l = 42}, "42 (0x0000002a)"},
    {{.tag = PROP_TAG(PT_LONG, ID), .v.l = -1}, "-1 (0xffffffff)"},
    {{.tag = PR_RESOURCE_FLAGS, .v.l = 6},
     "0x00000006 (STATUS_DEFAULT_STORE|STATUS_PRIMARY_IDENTITY)"},
    {{.tag = PR_RESOURCE_FLAGS, .v.l = 0x10040}, "0x00010040 (STATUS_NO_DEFAULT_STORE|0x00010000)"},
    {{.tag = PR_RESOURCE_FLAGS, .v.l = 0x40000}, "0x00040000"},
    {{.tag = PR_RESOURCE_FLAGS, .v.l = 0}, "0x00000000"},
    {{.tag = PR_RESOURCE_TYPE, .v.l = 33}, "33 (MAPI_STORE_PROVIDER)"},
    {{.tag = PR_RESOURCE_TYPE, .v.l = 36}, "36 (MAPI_TRANSPORT_PROVIDER)"},
    {{.tag = PR_RESOURCE_TYPE, .v.l = 99}, "99 (0x00000063)"},
    {{.tag = PR_PROFILE_TYPE, .v.l = 3}, "3 (PROFILE_PUBLIC_STORE)"},
    {{.tag = 0x66090003, .v.l = 12}, "0x0000000c (OPENSTORE_HOME_LOGON|OPENSTORE_TAKE_OWNERSHIP)"},
    {{.tag = PROP_TAG(PT_I2, ID), .v.i = -7}, "-7"},
    {{.tag = PROP_TAG(PT_I8, ID), .v.li = -9000000000}, "-9000000000"},
    {{.tag = PROP_TAG(PT_DOUBLE, ID), .v.dbl = 1.5}, "1.5"},
    {{.tag = PROP_TAG(PT_R4, ID), .v.flt = 0.25f}, "0.25"},
    {{.tag = PROP_TAG(PT_ERROR, ID), .v.err = MAPI_E_NOT_FOUND}, "MAPI_E_NOT_FOUND"},
    {{.tag = PROP_TAG(PT_ERROR, ID), .v.err = 0x80040999}, "0x80040999"},
    {{.tag = PR_DEFAULT_PROFILE, .v.b = true}, "TRUE"},
    {{.tag = PR_DEFAULT_PROFILE, .v.b = false}, "FALSE"},
    {{.tag = PR_DISPLAY_NAME, .v.str = "Caf\xc3\xa9"}, "\"Caf\xc3\xa9\""},
    {{.tag = PR_DISPLAY_NAME, .v.str = "a\"b\\c\nd\x7f"}, "\"a\\\"b\\\\c\\x0ad\\x7f\""},
    {{.tag = PR_DISPLAY_NAME_W, .v.str = "x\xff\xc3"}, "\"x\\xff\\xc3\""},
    {{.tag = PR_DISPLAY_NAME, .v.str = ""}, "\"\""},
    {{.tag = PR_SEARCH_KEY, .v.bin = {3, bin3}}, "0102ff"},
    {{.tag = PR_SEARCH_KEY, .v.bin = {0, NULL}}, ""},
    {{.tag = PR_STORE_PROVIDERS, .v.bin = {32, uids}},
     "13dbb0c8aa05101a9bb000aa002fc45a 9207f3e0a3b11019908b08002b2a56c2"},
    {{.tag = PR_SERVICES, .v.bin = {16, uids}}, "13dbb0c8aa05101a9bb000aa002fc45a"},
    {{.tag = PR_AB_PROVIDERS, .v.bin = {17, uids}}, "13dbb0c8aa05101a9bb000aa002fc45a 92"},
    {{.tag = PR_PROVIDER_UID, .v.bin = {32, uids}},
     "13dbb0c8aa05101a9bb000aa002fc45a9207f3e0a3b11019908b08002b2a56c2"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 0}, "1601-01-01T00:00:00Z"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 116444736000000000ull}, "1970-01-01T00:00:00Z"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 116444736000000001ull},
     "1970-01-01T00:00:00.0000001Z"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 133485408000000000ull}, "2024-01-01T00:00:00Z"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 125911584000000000ull}, "2000-01-01T00:00:00Z"},
    {{.tag = PROP_TAG(PT_SYSTIME, ID), .v.ft = 125962560000000000ull}, "2000-02-29T00:00:00Z"},
    {{.tag = PROP_TAG(PT_CLSID, ID), .v.bin = {16, guid}},
     "{C8B0DB13-05AA-1A10-9BB0-00AA002FC45A}"},
    {{.tag = PR_SERVICE_SUPPORT_FILES, .v.mv = {2, mv_str}}, "[\"a\", \"bc\"]"},
    {{.tag = PROP_TAG(PT_MV_LONG, ID), .v.mv = {2, mv_long}}, "[1 (0x00000001), -2 (0xfffffffe)]"},
    {{.tag = PROP_TAG(PT_MV_LONG, ID), .v.mv = {0, NULL}}, "[]"},
    {{.tag = PROP_TAG(PT_MV_BINARY, ID), .v.mv = {2, mv_bin}}, "[0102ff, ]"},
};

static void test_format(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++) {
        buf b = BUF_INIT;
        assert_int_equal(buf_adds(&b, "> "), 0);
        mapi_err e = mapi_prop_format(&formats[i].p, &b);
        const char *got = buf_cstr(&b);
        if (e || strcmp(got + 2, formats[i].text))
            fail_msg("case %zu: got %s [%s] want [%s]", i, mapi_strerror(e), got + 2,
                     formats[i].text);
        buf_free(&b);
    }
    buf b = BUF_INIT;
    mapi_prop obj = {.tag = PROP_TAG(PT_OBJECT, ID)};
    assert_int_equal(mapi_prop_format(&obj, &b), MAPI_E_INVALID_TYPE);
    assert_int_equal(b.len, 0);
}

static void test_parse_text(void **state)
{
    (void)state;
    static const struct {
        uint32_t tag;
        const char *text;
        mapi_err e;
        int32_t l; /* for PT_LONG */
    } longs[] = {
        {PR_RESOURCE_FLAGS, "SERVICE_SINGLE_COPY|SERVICE_PRIMARY_IDENTITY", S_OK, 0x0a},
        {PR_RESOURCE_FLAGS, "STATUS_DEFAULT_STORE | STATUS_PRIMARY_IDENTITY", S_OK, 6},
        {PR_RESOURCE_FLAGS, "STATUS_PRIMARY_IDENTITY|STATUS_DEFAULT_STORE|STATUS_PRIMARY_STORE",
         S_OK, 0x1006},
        {PR_RESOURCE_FLAGS, "status_no_default_store", S_OK, 0x40},
        {PR_RESOURCE_FLAGS, "SERVICE_NO_PRIMARY_IDENTITY", S_OK, 0x20},
        {PR_RESOURCE_FLAGS, "SERVICE_DEFAULT_STORE|SERVICE_CREATE_WITH_STORE", S_OK, 5},
        {PR_RESOURCE_FLAGS, "HOOK_INBOUND|HOOK_OUTBOUND", S_OK, 0x600},
        {PR_RESOURCE_FLAGS, "STATUS_SECONDARY_STORE|0x10000", S_OK, 0x12000},
        {PR_RESOURCE_FLAGS, " 0x40 ", S_OK, 0x40},
        {PR_RESOURCE_FLAGS, "BOGUS", MAPI_E_BAD_VALUE, 0},
        {PR_RESOURCE_FLAGS, "STATUS_DEFAULT_STORE|", MAPI_E_BAD_VALUE, 0},
        {PR_RESOURCE_FLAGS, "MAPI_AB_PROVIDER", MAPI_E_BAD_VALUE, 0},
        {PR_RESOURCE_TYPE, "MAPI_AB_PROVIDER", S_OK, 35},
        {PR_RESOURCE_TYPE, "MAPI_STORE_PROVIDER", S_OK, 33},
        {PR_RESOURCE_TYPE, "MAPI_TRANSPORT_PROVIDER", S_OK, 36},
        {PR_RESOURCE_TYPE, "36", S_OK, 36},
        {0x66090003, "OPENSTORE_PUBLIC|OPENSTORE_HOME_LOGON", S_OK, 6},
        {PR_PROFILE_TYPE, "PROFILE_PRIMARY_USER", S_OK, 1},
        {PROP_TAG(PT_LONG, ID), "42", S_OK, 42},
        {PROP_TAG(PT_LONG, ID), "-5", S_OK, -5},
        {PROP_TAG(PT_LONG, ID), "010", S_OK, 10},
        {PROP_TAG(PT_LONG, ID), "0xFFFFFFFF", S_OK, -1},
        {PROP_TAG(PT_LONG, ID), "4294967295", S_OK, -1},
        {PROP_TAG(PT_LONG, ID), "-2147483648", S_OK, INT32_MIN},
        {PROP_TAG(PT_LONG, ID), "-2147483649", MAPI_E_BAD_VALUE, 0},
        {PROP_TAG(PT_LONG, ID), "4294967296", MAPI_E_BAD_VALUE, 0},
        {PROP_TAG(PT_LONG, ID), "12abc", MAPI_E_BAD_VALUE, 0},
        {PROP_TAG(PT_LONG, ID), "", MAPI_E_BAD_VALUE, 0},
        {PROP_TAG(PT_LONG, ID), "0x", MAPI_E_BAD_VALUE, 0},
        {PROP_TAG(PT_LONG, ID), "+1", MAPI_E_BAD_VALUE, 0},
        {PROP_TAG(PT_LONG, ID), "STATUS_DEFAULT_STORE", MAPI_E_BAD_VALUE, 0},
    };
    for (size_t i = 0; i < sizeof longs / sizeof *longs; i++) {
        mapi_prop p;
        mapi_err e = mapi_prop_parse_text(longs[i].tag, longs[i].text, &p);
        if (e != longs[i].e || (!e && (p.v.l != longs[i].l || p.tag != longs[i].tag)))
            fail_msg("case %zu \"%s\": got %s %d want %s %d", i, longs[i].text, mapi_strerror(e),
                     e ? 0 : p.v.l, mapi_strerror(longs[i].e), longs[i].l);
        if (e)
            assert_int_equal(PROP_TYPE(p.tag), PT_NULL);
        mapi_prop_clear(&p);
    }

    /* Values of the other types, checked by their stored bytes. */
    static const struct {
        uint32_t tag;
        const char *text;
        mapi_err e;
        const char *stored;
    } others[] = {
        {PR_SERVICE_SUPPORT_FILES, "EMSUI.DLL,EMSABP.DLL", S_OK,
         "020000000a000000454d5355492e444c4c000b000000454d534142502e444c4c00"},
        {PR_SERVICE_SUPPORT_FILES, " a , b ,", S_OK, "02000000020000006100020000006200"},
        {PR_SERVICE_SUPPORT_FILES, "", S_OK, "00000000"},
        {PR_DISPLAY_NAME, "Microsoft Exchange Server", S_OK,
         "4d6963726f736f66742045786368616e67652053657276657200"},
        {PR_DISPLAY_NAME, " sp ", S_OK, "2073702000"},
        {PR_DISPLAY_NAME, "\xe4\xb8\xad", MAPI_E_BAD_CHARWIDTH, NULL},
        {PR_DISPLAY_NAME, "\xff", MAPI_E_BAD_VALUE, NULL},
        {PR_DISPLAY_NAME_W, "\xe4\xb8\xad", S_OK, "2d4e0000"},
        {PR_SEARCH_KEY, "0102ff", S_OK, "0102ff"},
        {PR_SEARCH_KEY, "01 02 FF", S_OK, "0102ff"},
        {PR_SEARCH_KEY, "", S_OK, ""},
        {PR_SEARCH_KEY, "0 1", MAPI_E_BAD_VALUE, NULL},
        {PR_SEARCH_KEY, "abc", MAPI_E_BAD_VALUE, NULL},
        {PR_SEARCH_KEY, "zz", MAPI_E_BAD_VALUE, NULL},
        {PR_STORE_PROVIDERS, "13dbb0c8aa05101a9bb000aa002fc45a 9207f3e0a3b11019908b08002b2a56c2",
         S_OK, "13dbb0c8aa05101a9bb000aa002fc45a9207f3e0a3b11019908b08002b2a56c2"},
        {PR_DEFAULT_PROFILE, "TRUE", S_OK, "0100"},
        {PR_DEFAULT_PROFILE, "false", S_OK, "0000"},
        {PR_DEFAULT_PROFILE, "1", S_OK, "0100"},
        {PR_DEFAULT_PROFILE, "0", S_OK, "0000"},
        {PR_DEFAULT_PROFILE, "yes", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_I2, ID), "-2", S_OK, "feff"},
        {PROP_TAG(PT_I2, ID), "70000", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_I8, ID), "-1", S_OK, "ffffffffffffffff"},
        {PROP_TAG(PT_I8, ID), "0x0102030405060708", S_OK, "0807060504030201"},
        {PROP_TAG(PT_DOUBLE, ID), "1", S_OK, "000000000000f03f"},
        {PROP_TAG(PT_DOUBLE, ID), "1e999", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_R4, ID), "1.0", S_OK, "0000803f"},
        {PROP_TAG(PT_ERROR, ID), "MAPI_E_NOT_FOUND", S_OK, "0f010480"},
        {PROP_TAG(PT_ERROR, ID), "0x80040999", S_OK, "99090480"},
        {PROP_TAG(PT_SYSTIME, ID), "1970-01-01T00:00:00Z", S_OK, "00803ed5deb19d01"},
        {PROP_TAG(PT_SYSTIME, ID), "1970-01-01T00:00:00.0000001Z", S_OK, "01803ed5deb19d01"},
        {PROP_TAG(PT_SYSTIME, ID), "1601-01-01T00:00:00", S_OK, "0000000000000000"},
        {PROP_TAG(PT_SYSTIME, ID), "116444736000000000", S_OK, "00803ed5deb19d01"},
        {PROP_TAG(PT_SYSTIME, ID), "2023-02-29T00:00:00Z", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_SYSTIME, ID), "2024-13-01T00:00:00Z", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_SYSTIME, ID), "1600-12-31T23:59:59Z", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_SYSTIME, ID), "2024-01-01T00:00:60Z", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_SYSTIME, ID), "2024-01-01", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_CLSID, ID), "{C8B0DB13-05AA-1A10-9BB0-00AA002FC45A}", S_OK,
         "13dbb0c8aa05101a9bb000aa002fc45a"},
        {PROP_TAG(PT_CLSID, ID), "13dbb0c8aa05101a9bb000aa002fc45a", S_OK,
         "13dbb0c8aa05101a9bb000aa002fc45a"},
        {PROP_TAG(PT_CLSID, ID), "{C8B0DB13-05AA-1A10-9BB0-00AA002FC45}", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_MV_LONG, ID), "1, 0x10,-1", S_OK, "030000000100000010000000ffffffff"},
        {PROP_TAG(PT_MV_LONG, ID), "1,x", MAPI_E_BAD_VALUE, NULL},
        {PROP_TAG(PT_MV_BINARY, ID), "01,0203", S_OK,
         "02000000010000000102000000"
         "0203"},
        {PROP_TAG(PT_OBJECT, ID), "x", MAPI_E_INVALID_TYPE, NULL},
        {PROP_TAG(MV_FLAG | PT_BOOLEAN, ID), "1", MAPI_E_INVALID_TYPE, NULL},
    };
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        mapi_prop p;
        buf b = BUF_INIT;
        mapi_err e = mapi_prop_parse_text(others[i].tag, others[i].text, &p);
        if (!e)
            e = mapi_prop_encode(&p, &b);
        const char *got = e ? "" : hex(b.data, b.len);
        if (e != others[i].e || (!e && strcmp(got, others[i].stored)))
            fail_msg("case %zu %08x \"%s\": got %s %s want %s %s", i, others[i].tag, others[i].text,
                     mapi_strerror(e), got, mapi_strerror(others[i].e),
                     others[i].stored ? others[i].stored : "");
        mapi_prop_clear(&p);
        buf_free(&b);
    }
}

/* What mapi_prop_format writes for binary and times, parse_text reads back. */
static void test_format_parse_roundtrip(void **state)
{
    (void)state;
    static const size_t picks[] = {11, 12, 13, 14, 15, 16, 17, 18, 23, 24, 25,
                                   26, 27, 28, 29, 30, 31, 32, 33, 34, 35};
    for (size_t k = 0; k < sizeof picks / sizeof *picks; k++) {
        const mapi_prop *src = &formats[picks[k]].p;
        buf b = BUF_INIT;
        assert_int_equal(mapi_prop_format(src, &b), S_OK);
        mapi_prop back;
        mapi_err e = mapi_prop_parse_text(src->tag, buf_cstr(&b), &back);
        if (e || !props_equal(src, &back))
            fail_msg("case %zu [%s]: %s or another value", picks[k], buf_cstr(&b),
                     mapi_strerror(e));
        mapi_prop_clear(&back);
        buf_free(&b);
    }
}

static void test_strerror(void **state)
{
    (void)state;
    static const struct {
        mapi_err e;
        const char *name;
    } cases[] = {
        {S_OK, "S_OK"},
        {MAPI_E_CALL_FAILED, "MAPI_E_CALL_FAILED"},
        {MAPI_E_NOT_ENOUGH_MEMORY, "MAPI_E_NOT_ENOUGH_MEMORY"},
        {MAPI_E_INVALID_PARAMETER, "MAPI_E_INVALID_PARAMETER"},
        {MAPI_E_NO_ACCESS, "MAPI_E_NO_ACCESS"},
        {MAPI_E_NO_SUPPORT, "MAPI_E_NO_SUPPORT"},
        {MAPI_E_BAD_CHARWIDTH, "MAPI_E_BAD_CHARWIDTH"},
        {MAPI_E_STRING_TOO_LONG, "MAPI_E_STRING_TOO_LONG"},
        {MAPI_E_UNKNOWN_FLAGS, "MAPI_E_UNKNOWN_FLAGS"},
        {MAPI_E_INVALID_ENTRYID, "MAPI_E_INVALID_ENTRYID"},
        {MAPI_E_CORRUPT_DATA, "MAPI_E_CORRUPT_DATA"},
        {MAPI_E_BUSY, "MAPI_E_BUSY"},
        {MAPI_E_NOT_ENOUGH_DISK, "MAPI_E_NOT_ENOUGH_DISK"},
        {MAPI_E_NOT_ENOUGH_RESOURCES, "MAPI_E_NOT_ENOUGH_RESOURCES"},
        {MAPI_E_NOT_FOUND, "MAPI_E_NOT_FOUND"},
        {MAPI_E_LOGON_FAILED, "MAPI_E_LOGON_FAILED"},
        {MAPI_E_USER_CANCEL, "MAPI_E_USER_CANCEL"},
        {MAPI_E_NETWORK_ERROR, "MAPI_E_NETWORK_ERROR"},
        {MAPI_E_EXTENDED_ERROR, "MAPI_E_EXTENDED_ERROR"},
        {MAPI_E_END_OF_SESSION, "MAPI_E_END_OF_SESSION"},
        {MAPI_E_BAD_VALUE, "MAPI_E_BAD_VALUE"},
        {MAPI_E_INVALID_TYPE, "MAPI_E_INVALID_TYPE"},
        {MAPI_E_TYPE_NO_SUPPORT, "MAPI_E_TYPE_NO_SUPPORT"},
        {MAPI_E_TIMEOUT, "MAPI_E_TIMEOUT"},
        {MAPI_E_CORRUPT_STORE, "MAPI_E_CORRUPT_STORE"},
        {MAPI_E_COLLISION, "MAPI_E_COLLISION"},
        {MAPI_E_NOT_INITIALIZED, "MAPI_E_NOT_INITIALIZED"},
        {0x80040999, "0x80040999"},
        {1, "0x00000001"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(mapi_strerror(cases[i].e), cases[i].name);
}

static void test_err_from_reg(void **state)
{
    (void)state;
    static const struct {
        int win32;
        mapi_err e;
    } cases[] = {
        {ERROR_SUCCESS, S_OK},
        {ERROR_FILE_NOT_FOUND, MAPI_E_NOT_FOUND},
        {ERROR_PATH_NOT_FOUND, MAPI_E_NOT_FOUND},
        {ERROR_KEY_DELETED, MAPI_E_NOT_FOUND},
        {ERROR_ACCESS_DENIED, MAPI_E_NO_ACCESS},
        {ERROR_NOT_ENOUGH_MEMORY, MAPI_E_NOT_ENOUGH_MEMORY},
        {ERROR_DISK_FULL, MAPI_E_NOT_ENOUGH_DISK},
        {ERROR_INVALID_PARAMETER, MAPI_E_INVALID_PARAMETER},
        {ERROR_BADDB, MAPI_E_CORRUPT_STORE},
        {ERROR_REGISTRY_CORRUPT, MAPI_E_CORRUPT_STORE},
        {ERROR_MORE_DATA, MAPI_E_CALL_FAILED},
        {ERROR_ALREADY_EXISTS, MAPI_E_CALL_FAILED},
        {12345, MAPI_E_CALL_FAILED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (mapi_err_from_reg(cases[i].win32) != cases[i].e)
            fail_msg("%d: got %s want %s", cases[i].win32,
                     mapi_strerror(mapi_err_from_reg(cases[i].win32)), mapi_strerror(cases[i].e));
}

static void test_uids(void **state)
{
    (void)state;
    char out[33];
    mapi_uid_hex(&MAPI_UID_GLOBAL, out);
    assert_string_equal(out, "13dbb0c8aa05101a9bb000aa002fc45a");
    mapi_uid_hex(&MAPI_UID_PROFILE_INSTANCE, out);
    assert_string_equal(out, "8503020000000000c000000000000046");
    mapi_uid_hex(&MAPI_UID_SERVICES, out);
    assert_string_equal(out, "9207f3e0a3b11019908b08002b2a56c2");
    mapi_uid u;
    assert_int_equal(mapi_uid_parse("13DBB0C8AA05101A9BB000AA002FC45A", &u), S_OK);
    assert_memory_equal(u.ab, MAPI_UID_GLOBAL.ab, 16);
    static const char *const bad[] = {
        "13dbb0c8aa05101a9bb000aa002fc45", "13dbb0c8aa05101a9bb000aa002fc45a0",
        "13dbb0c8aa05101a9bb000aa002fc45g", "", "{13dbb0c8aa05101a9bb000aa002fc4}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(mapi_uid_parse(bad[i], &u), MAPI_E_INVALID_PARAMETER);
    assert_int_equal(mapi_uid_parse(NULL, &u), MAPI_E_INVALID_PARAMETER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_golden),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_decode_corrupt),
        cmocka_unit_test(test_decode_lenient),
        cmocka_unit_test(test_tag_names),
        cmocka_unit_test(test_tag_parse),
        cmocka_unit_test(test_value_names),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse_text),
        cmocka_unit_test(test_format_parse_roundtrip),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_err_from_reg),
        cmocka_unit_test(test_uids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
