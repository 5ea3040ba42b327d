/* export.c - reg_export: a key and its subtree as the .reg file regedit writes (the key,
 * its values in creation order, then its subkeys depth first in sorted order). */
#include "reg/regfile.h"
#include "reg/store.h"

#include <string.h>

struct export
{
    buf *out;
    int version;
    reg_key *key;
    const char *path;
};

static int export_value(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    struct export *ex = arg;
    return regfile_write_value(ex->out, ex->version, *name ? name : NULL, type, data, len);
}

static int export_key(struct export *ex);

static int export_subkey(void *arg, const char *name)
{
    struct export *ex = arg;
    reg_key *k;
    int rc = reg_key_open(ex->key, name, 0, &k);
    if (rc)
        return rc == ERROR_FILE_NOT_FOUND ? 0 : rc; /* gone since it was listed */
    buf path = BUF_INIT;
    if (buf_printf(&path, "%s\\%s", ex->path, name) || !buf_cstr(&path)) {
        reg_key_close(k);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    struct export sub = {ex->out, ex->version, k, (char *)path.data};
    rc = export_key(&sub);
    buf_free(&path);
    reg_key_close(k);
    return rc;
}

static int export_key(struct export *ex)
{
    int rc = regfile_write_key(ex->out, ex->version, ex->path);
    if (!rc)
        rc = reg_key_enum_values(ex->key, export_value, ex);
    if (!rc)
        rc = reg_key_enum_subkeys(ex->key, export_subkey, ex);
    return rc;
}

int reg_export(reg_key *key, const char *path, unsigned flags, buf *out)
{
    if (!key || !path)
        return ERROR_INVALID_PARAMETER;
    struct export ex = {out, (flags & REG_EXPORT_REGEDIT4) ? 4 : 5, key, path};
    size_t start = out->len;
    int rc = regfile_write_header(out, ex.version);
    if (!rc)
        rc = export_key(&ex);
    if (!rc)
        rc = regfile_write_end(out, ex.version);
    if (rc)
        out->len = start;
    return rc;
}
