/* add.c - REG ADD: create a key and set a value, converting /d text to the bytes of the type
 * given with /t exactly as reg.exe does. */
#include "reg_cli.h"

#include <stdio.h>
#include <string.h>

/* hex_digit - the value of a hex digit, or -1. */
static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* parse_number - a REG_DWORD or REG_QWORD number: hexadecimal when the second character is
 * x or X ("0x1f"), decimal otherwise ("0123" is 123); no sign, no trailing text, no
 * overflow past max. QWORD also takes "-1" for all bits set, as reg.exe does. */
static bool parse_number(const char *s, uint64_t max, bool allow_minus_one, uint64_t *out)
{
    if (allow_minus_one && strcmp(s, "-1") == 0) {
        *out = max;
        return true;
    }
    unsigned base = 10;
    if (s[0] && (s[1] == 'x' || s[1] == 'X')) {
        /* Only "0x" is a prefix; "1x5" stops parsing at the x, which is trailing text. */
        if (s[0] != '0')
            return false;
        base = 16;
        s += 2;
    }
    if (!*s)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        int d = hex_digit(*s);
        if (d < 0 || (unsigned)d >= base)
            return false;
        if (v > (max - (uint64_t)d) / base)
            return false;
        v = v * base + (uint64_t)d;
    }
    *out = v;
    return true;
}

typedef enum add_conv {
    ADD_CONV_OK,
    ADD_CONV_NUMBER, /* not a valid number */
    ADD_CONV_HEX,    /* not valid hex */
    ADD_CONV_STRING, /* not a valid MULTI_SZ list */
    ADD_CONV_UTF8,   /* not UTF-8 */
    ADD_CONV_NOMEM,
} add_conv;

/* parse_binary - hex digits only; an odd count puts the first digit in a byte of its own
 * ("DeAdBeEf0DD" is 0d ea db ee f0 dd). */
static add_conv parse_binary(const char *s, buf *out)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (hex_digit(s[i]) < 0)
            return ADD_CONV_HEX;
    size_t i = 0;
    if (n % 2) {
        if (buf_addc(out, (uint8_t)hex_digit(s[0])))
            return ADD_CONV_NOMEM;
        i = 1;
    }
    for (; i < n; i += 2)
        if (buf_addc(out, (uint8_t)(hex_digit(s[i]) << 4 | hex_digit(s[i + 1]))))
            return ADD_CONV_NOMEM;
    return ADD_CONV_OK;
}

/* parse_multi_sz - the list in s, strings separated by sep (one character) or, without
 * sep, by the two characters \0. Empty strings inside the list are refused, a single
 * trailing separator is allowed; the result ends with the double NUL of a MULTI_SZ. */
static add_conv parse_multi_sz(const char *s, const char *sep, buf *out)
{
    buf list = BUF_INIT; /* UTF-8 with a NUL byte for each separator */
    size_t seplen = sep ? strlen(sep) : 2;
    add_conv rc = ADD_CONV_OK;
    for (size_t i = 0; s[i] && rc == ADD_CONV_OK;) {
        bool is_sep = sep ? strncmp(s + i, sep, seplen) == 0 : (s[i] == '\\' && s[i + 1] == '0');
        int err = is_sep ? buf_addc(&list, 0) : buf_addc(&list, (uint8_t)s[i]);
        if (err) {
            rc = ADD_CONV_NOMEM;
            break;
        }
        i += is_sep ? seplen : 1;
        /* An empty string: a separator right after another, or a first string that is
         * empty and followed by more. */
        size_t n = list.len;
        if (n >= 2 && list.data[n - 2] == 0 && (list.data[n - 1] == 0 || n == 2))
            rc = ADD_CONV_STRING;
    }
    if (rc == ADD_CONV_OK && base_utf8_to_utf16((const char *)list.data, list.len, out))
        rc = base_utf8_valid((const char *)list.data, list.len) ? ADD_CONV_NOMEM : ADD_CONV_UTF8;
    /* Terminate the last string unless the input ended in a separator, then the list. */
    if (rc == ADD_CONV_OK && list.len && list.data[list.len - 1] != 0 && buf_add_u16(out, 0))
        rc = ADD_CONV_NOMEM;
    if (rc == ADD_CONV_OK && buf_add_u16(out, 0))
        rc = ADD_CONV_NOMEM;
    buf_free(&list);
    return rc;
}

/* convert_data - the bytes to store for data (NULL when /d was not given). */
static add_conv convert_data(uint32_t type, const char *data, const char *sep, buf *out)
{
    uint64_t v;
    switch (type) {
    case REG_DWORD:
    case REG_DWORD_BIG_ENDIAN:
        /* Stored little-endian for BIG_ENDIAN too: reg.exe has always done so. */
        if (!parse_number(data, UINT32_MAX, false, &v))
            return ADD_CONV_NUMBER;
        for (int i = 0; i < 4; i++)
            if (buf_addc(out, (uint8_t)(v >> (8 * i))))
                return ADD_CONV_NOMEM;
        return ADD_CONV_OK;
    case REG_QWORD:
        v = 0;
        if (data && !parse_number(data, UINT64_MAX, true, &v))
            return ADD_CONV_NUMBER;
        for (int i = 0; i < 8; i++)
            if (buf_addc(out, (uint8_t)(v >> (8 * i))))
                return ADD_CONV_NOMEM;
        return ADD_CONV_OK;
    case REG_BINARY:
        return data ? parse_binary(data, out) : ADD_CONV_OK;
    case REG_MULTI_SZ:
        return parse_multi_sz(data ? data : "", sep, out);
    default: /* REG_SZ, REG_EXPAND_SZ, REG_NONE: the text as typed, NUL-terminated */
        if (!data)
            data = "";
        if (base_utf8_to_utf16(data, strlen(data), out))
            return base_utf8_valid(data, strlen(data)) ? ADD_CONV_NOMEM : ADD_CONV_UTF8;
        return buf_add_u16(out, 0) ? ADD_CONV_NOMEM : ADD_CONV_OK;
    }
}

int reg_cmd_add(const reg_cli_args *a)
{
    if (a->has[REG_ADD_V] && a->has[REG_ADD_VE])
        return reg_cli_syntax(a->op);
    const char *sep = a->val[REG_ADD_S];
    if (sep && !reg_cli_one_char(sep))
        return reg_cli_syntax(a->op);

    uint32_t type = REG_SZ;
    const char *tname = a->val[REG_ADD_T];
    if (tname && !reg_cli_type_parse(tname, &type)) {
        reg_cli_error(REG_MSG_BAD_TYPE, tname);
        return REG_CLI_EXIT_FAIL;
    }
    const char *data = a->val[REG_ADD_D];
    if (!data && (type == REG_DWORD || type == REG_DWORD_BIG_ENDIAN)) {
        reg_cli_error(REG_MSG_NEED_DATA, reg_cli_type_name(type));
        return REG_CLI_EXIT_FAIL;
    }
    const char *name = a->val[REG_ADD_V] ? a->val[REG_ADD_V] : "";
    if (!reg_cli_utf8_ok(name))
        return REG_CLI_EXIT_FAIL;

    /* Convert before touching the store: a bad /d changes nothing. */
    buf bytes = BUF_INIT;
    switch (convert_data(type, data, sep, &bytes)) {
    case ADD_CONV_OK:
        break;
    case ADD_CONV_NUMBER:
        reg_cli_error(REG_MSG_BAD_NUMBER);
        buf_free(&bytes);
        return REG_CLI_EXIT_FAIL;
    case ADD_CONV_HEX:
        reg_cli_error(REG_MSG_BAD_HEX);
        buf_free(&bytes);
        return REG_CLI_EXIT_FAIL;
    case ADD_CONV_STRING:
        reg_cli_error(REG_MSG_BAD_STRING);
        buf_free(&bytes);
        return REG_CLI_EXIT_FAIL;
    case ADD_CONV_UTF8:
        reg_cli_error(REG_MSG_BAD_UTF8);
        buf_free(&bytes);
        return REG_CLI_EXIT_FAIL;
    case ADD_CONV_NOMEM:
        buf_free(&bytes);
        return reg_cli_store_error(ERROR_NOT_ENOUGH_MEMORY);
    }

    reg_ctx *ctx;
    if (reg_cli_ctx_open(&ctx)) {
        buf_free(&bytes);
        return REG_CLI_EXIT_FAIL;
    }
    reg_key *key = NULL;
    unsigned disposition = 0;
    int rc = REG_CLI_EXIT_OK;
    int err = reg_cli_key_create(ctx, &a->key[0], a->view, &key, &disposition);
    if (err) {
        rc = reg_cli_store_error(err);
        goto out;
    }
    /* Only an existing value of an existing key needs the user's consent. */
    if (!a->has[REG_ADD_F] && disposition == REG_OPENED_EXISTING_KEY &&
        reg_value_get(key, name, NULL, NULL) == ERROR_SUCCESS) {
        const char *shown = *name ? name : reg_msg_text(REG_MSG_DEFAULT_NAME);
        if (reg_cli_confirm(false, REG_MSG_PROMPT_OVERWRITE, shown) != REG_CLI_YES) {
            rc = reg_cli_cancelled();
            goto out;
        }
    }
    err = reg_value_set(key, name, type, bytes.data ? bytes.data : (const uint8_t *)"", bytes.len);
    rc = err ? reg_cli_store_error(err) : reg_cli_success();
out:
    reg_key_close(key);
    reg_ctx_close(ctx);
    buf_free(&bytes);
    return rc;
}
