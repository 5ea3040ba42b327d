/* path.c - root key names and "ROOT\sub\path" strings, and Unix users as SIDs. */
#include "reg/store.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
    reg_root root;
    const char *name, *abbr;
} roots[] = {
    {REG_ROOT_HKCR, "HKEY_CLASSES_ROOT", "HKCR"},   {REG_ROOT_HKCU, "HKEY_CURRENT_USER", "HKCU"},
    {REG_ROOT_HKLM, "HKEY_LOCAL_MACHINE", "HKLM"},  {REG_ROOT_HKU, "HKEY_USERS", "HKU"},
    {REG_ROOT_HKCC, "HKEY_CURRENT_CONFIG", "HKCC"},
};

int reg_root_parse(const char *name, size_t n, reg_root *out)
{
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
        if ((strlen(roots[i].name) == n && !strncasecmp(name, roots[i].name, n)) ||
            (strlen(roots[i].abbr) == n && !strncasecmp(name, roots[i].abbr, n))) {
            *out = roots[i].root;
            return ERROR_SUCCESS;
        }
    }
    return ERROR_BADKEY;
}

const char *reg_root_name(reg_root root)
{
    return (unsigned)root < 5 ? roots[root].name : "?";
}

const char *reg_root_short(reg_root root)
{
    return (unsigned)root < 5 ? roots[root].abbr : "?";
}

int reg_path_split(const char *path, reg_root *root, const char **sub)
{
    const char *bs = strchr(path, '\\');
    size_t n = bs ? (size_t)(bs - path) : strlen(path);
    int rc = reg_root_parse(path, n, root);
    if (rc)
        return rc;
    *sub = bs ? bs + 1 : path + n;
    return ERROR_SUCCESS;
}

void reg_uid_sid(uid_t uid, char out[32])
{
    snprintf(out, 32, "S-1-22-1-%u", (unsigned)uid);
}
