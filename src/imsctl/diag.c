/* diag.c - imsctl diagnostics: the Diagnostics Logging levels of the service key, listed or
 * set one at a time. The running service follows the key's change notification, so a new
 * level takes effect at once (the original needed a restart). */
#include "imsctl.h"

#include <stdio.h>
#include <string.h>

#define IC_CATEGORY_WIDTH                                                                          \
    28 /* the widest category name, "Initialization/Termination", and room                         \
        */

/* usage_bad - a CATEGORY or LEVEL that is none: say so, then what they may be. */
static int usage_bad(const char *what, const char *text)
{
    fprintf(stderr, "imsctl: diagnostics: no %s \"%s\"\n", what, text);
    fputs("Categories (the value name, or an alias):\n", stderr);
    for (int c = 0; c < IMS_CAT_COUNT; c++)
        fprintf(stderr, "  \"%s\": %s\n", ims_category_name((ims_category)c),
                ims_category_aliases((ims_category)c));
    fputs("Levels: none, minimum (min), medium, maximum (max), or 0 to 5 (0, 1, 3, 5 as Exchange "
          "writes "
          "them).\n",
          stderr);
    fputs("Try 'imsctl --help'.\n", stderr);
    return IC_EXIT_USAGE;
}

/* open_service - the service key, REG_READ or with write; a missing one is "not installed". */
static int open_service(reg_ctx *reg, unsigned access, reg_key **out)
{
    int rc = reg_key_open_path(reg, "HKLM\\" IMS_SERVICE_KEY, access, out);
    if (rc == ERROR_FILE_NOT_FOUND)
        return ic_error("the service is not installed (imsctl install)");
    if (rc)
        return ic_error("cannot open HKLM\\%s: %s", IMS_SERVICE_KEY, reg_strerror(rc));
    return IC_EXIT_OK;
}

/* level_text - a registry value as the list shows it: "5 Maximum", "None" when absent. */
static void level_text(reg_key *diag, ims_category c, char *out, size_t n)
{
    uint32_t v;
    int rc = diag ? reg_value_get_dword(diag, ims_category_name(c), &v) : ERROR_FILE_NOT_FOUND;
    if (rc == ERROR_FILE_NOT_FOUND)
        snprintf(out, n, "0 None (not set)");
    else if (rc)
        snprintf(out, n, "invalid (not a REG_DWORD: the service keeps the level it has)");
    else if (v > IMS_LEVEL_HIGHEST)
        snprintf(out, n, "%u invalid (above %d: the service keeps the level it has)", v,
                 IMS_LEVEL_HIGHEST);
    else
        snprintf(out, n, "%u %s", v, ims_level_name(v));
}

/* list - every category (or only one) with its level. */
static int list(reg_ctx *reg, const ims_category *only)
{
    reg_key *svc, *diag = NULL;
    int status = open_service(reg, REG_READ, &svc);
    if (status)
        return status;
    int rc = reg_key_open(svc, "Diagnostics", REG_READ, &diag);
    reg_key_close(svc);
    if (rc && rc != ERROR_FILE_NOT_FOUND)
        return ic_error("cannot open HKLM\\%s: %s", IMS_DIAGNOSTICS_KEY, reg_strerror(rc));
    for (int c = 0; c < IMS_CAT_COUNT; c++) {
        if (only && *only != (ims_category)c)
            continue;
        char text[128];
        level_text(diag, (ims_category)c, text, sizeof text);
        printf("%-*s %s\n", IC_CATEGORY_WIDTH, ims_category_name((ims_category)c), text);
    }
    reg_key_close(diag);
    return IC_EXIT_OK;
}

/* set - one category's level, the Diagnostics key made when it is missing. */
static int set(reg_ctx *reg, ims_category c, unsigned level)
{
    reg_key *svc, *diag;
    int status = open_service(reg, REG_READ | REG_WRITE, &svc);
    if (status)
        return status;
    int rc = reg_key_create(svc, "Diagnostics", 0, NULL, &diag, NULL);
    reg_key_close(svc);
    if (rc)
        return ic_error("cannot open HKLM\\%s: %s", IMS_DIAGNOSTICS_KEY, reg_strerror(rc));
    char was[128];
    level_text(diag, c, was, sizeof was);
    rc = reg_value_set_dword(diag, ims_category_name(c), level);
    reg_key_close(diag);
    if (rc)
        return ic_error("cannot set \"%s\" under HKLM\\%s: %s", ims_category_name(c),
                        IMS_DIAGNOSTICS_KEY, reg_strerror(rc));
    printf("%s: %s -> %u %s\n", ims_category_name(c), was, level, ims_level_name(level));
    return IC_EXIT_OK;
}

int ic_cmd_diagnostics(int argc, char **argv)
{
    if (argc > 2)
        return ic_usage_error("diagnostics: at most CATEGORY and LEVEL, not \"%s\"", argv[2]);
    ims_category c;
    unsigned level = 0;
    if (argc >= 1 && ims_category_parse(argv[0], &c))
        return usage_bad("category", argv[0]);
    if (argc == 2 && ims_level_parse(argv[1], &level))
        return usage_bad("level", argv[1]);
    reg_ctx *reg;
    int rc = reg_ctx_open(NULL, &reg);
    if (rc)
        return ic_error("cannot open the registry: %s", reg_strerror(rc));
    int status = argc == 2 ? set(reg, c, level) : list(reg, argc ? &c : NULL);
    reg_ctx_close(reg);
    return status;
}
