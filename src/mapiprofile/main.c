/* main.c - the mapiprofile command: main, the command table and its help texts, argument
 * parsing, --user, and opening the registry and MAPI for the commands. */
#include "mapiprofile.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* --- the command table ------------------------------------------------------------------- */

/* Each option table is in the order of the MP_<COMMAND>_* index constants of mapiprofile.h. */
static const mp_option list_options[] = {{"verbose", false, false}};
static const mp_option create_options[] = {
    {"default", false, false}, {"default-services", false, false}, {"service", true, true},
    {"display", true, true},   {"home-server", true, false},       {"mailbox", true, false},
    {"set", true, true},
};
static const mp_option set_default_options[] = {{"clear", false, false}};
static const mp_option export_options[] = {{"force", false, false}};
static const mp_option import_options[] = {{"as", true, false}};
static const mp_option logon_options[] = {{"hold", true, false}};

#define MP_NOPT(t) (sizeof(t) / sizeof((t)[0]))

static const mp_command commands[] = {
    {"list", "list [--verbose]",
     "List the profiles, one a line, sorted by name: \" [default]\" marks the default profile,\n"
     "\" [in use]\" one with logon sessions. --verbose also lists each profile's message\n"
     "services (service name and display name). Prints nothing when there are no profiles.\n",
     list_options, MP_NOPT(list_options), 0, 0, mp_cmd_list},
    {"create",
     "create NAME [--default] [--default-services]\n"
     "       [--service SERVICE [--display TEXT] [--set TAG=VALUE]...]...\n"
     "       [--home-server SERVER] [--mailbox MAILBOX]",
     "Create the profile NAME (1 to 64 characters, no backslash, no leading or trailing\n"
     "space) with the message services given, and make it the default with --default.\n"
     "\n"
     "  --default-services     add the services of [Default Services] in mapisvc.inf\n"
     "  --service SERVICE      add a service of the catalogue ([Services] in mapisvc.inf)\n"
     "  --display TEXT         the display name of the service before it\n"
     "  --set TAG=VALUE        configure the service before it: TAG is a property name\n"
     "                         (PR_PROFILE_HOME_SERVER_DN) or its tag in 8 hex digits, id\n"
     "                         first (6612001e); VALUE is written as mapisvc.inf writes it\n"
     "  --home-server SERVER   the Exchange home server of the MSEMS service\n"
     "  --mailbox MAILBOX      its mailbox: a distinguished name (/o=.../cn=IMS) or an alias\n"
     "\n"
     "Either the whole profile is made or none of it: a step that fails, or Ctrl-C, removes\n"
     "what was made.\n",
     create_options, MP_NOPT(create_options), 1, 1, mp_cmd_create},
    {"delete", "delete NAME",
     "Delete the profile NAME. A profile in use is hidden at once and removed when its last\n"
     "logon session ends.\n",
     NULL, 0, 1, 1, mp_cmd_delete},
    {"copy", "copy FROM TO",
     "Copy the profile FROM to a new profile TO, with an identity (PR_SEARCH_KEY) of its own.\n",
     NULL, 0, 2, 2, mp_cmd_copy},
    {"rename", "rename FROM TO",
     "Rename the profile FROM to TO. A profile in use keeps its name until its last logon\n"
     "session ends; the default profile stays the default.\n",
     NULL, 0, 2, 2, mp_cmd_rename},
    {"set-default", "set-default NAME | set-default --clear",
     "Make the profile NAME the default profile, or with --clear have no default profile.\n",
     set_default_options, MP_NOPT(set_default_options), 0, 1, mp_cmd_set_default},
    {"get-default", "get-default",
     "Print the name of the default profile; exit status 1 when there is none.\n", NULL, 0, 0, 0,
     mp_cmd_get_default},
    {"dump", "dump NAME",
     "Print every section of the profile NAME (its MAPIUID, and what it is) and each of its\n"
     "properties: tag name, type and value.\n",
     NULL, 0, 1, 1, mp_cmd_dump},
    {"export", "export NAME FILE [--force]",
     "Write the profile NAME to FILE as a .reg file (Windows Registry Editor Version 5.00,\n"
     "UTF-16LE), readable only by its owner. An existing FILE is replaced only with --force.\n",
     export_options, MP_NOPT(export_options), 2, 2, mp_cmd_export},
    {"import", "import FILE [--as NAME]",
     "Import the profile a .reg file holds (every key of FILE must belong to one profile). A\n"
     "profile of that name must not exist. --as NAME imports it under another name, with an\n"
     "identity (PR_SEARCH_KEY) of its own.\n",
     import_options, MP_NOPT(import_options), 1, 1, mp_cmd_import},
    {"logon", "logon NAME [--hold SECONDS]",
     "Log on to the profile NAME (MAPILogonEx) and off again: a test of the profile. With\n"
     "--hold the session is held for up to SECONDS (at most 3600), or until SIGINT or\n"
     "SIGTERM; the profile is \"in use\" meanwhile.\n",
     logon_options, MP_NOPT(logon_options), 1, 1, mp_cmd_logon},
};

static const char general_usage[] =
    "Usage: mapiprofile [--user USER] COMMAND [ARGUMENTS]\n"
    "       mapiprofile --help | mapiprofile COMMAND --help\n"
    "\n"
    "Administer the MAPI profiles of the Windows Messaging Subsystem, kept in the IMS registry\n"
    "under HKEY_CURRENT_USER\\" MAPI_PROFILES_PATH ".\n"
    "\n"
    "Commands:\n"
    "  list [--verbose]                  list the profiles\n"
    "  create NAME [OPTIONS]             create a profile with message services\n"
    "  delete NAME                       delete a profile\n"
    "  copy FROM TO                      copy a profile\n"
    "  rename FROM TO                    rename a profile\n"
    "  set-default NAME | --clear        set or clear the default profile\n"
    "  get-default                       print the default profile\n"
    "  dump NAME                         print a profile's sections and properties\n"
    "  export NAME FILE [--force]        write a profile to a .reg file\n"
    "  import FILE [--as NAME]           read a profile from a .reg file\n"
    "  logon NAME [--hold SECONDS]       log on to a profile (and hold the session)\n"
    "\n"
    "Options:\n"
    "  --user USER   the profiles of USER (a name or a uid) instead of the caller's; root only\n"
    "  --help        this text\n"
    "\n"
    "Environment: IMS_ROOT (the state root, default " BASE_DEFAULT_ROOT "), IMS_MAPISVC (the\n"
    "catalogue of message services, mapisvc.inf).\n"
    "Exit status: 0 done, 1 failed, 2 usage error, 130 create or import interrupted (SIGINT).\n";

/* --- arguments -------------------------------------------------------------------------- */

bool mp_has(const mp_args *a, int opt)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt == opt)
            return true;
    return false;
}

const char *mp_value(const mp_args *a, int opt)
{
    const char *v = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->items[i].opt == opt)
            v = a->items[i].value;
    return v;
}

static bool is_help(const char *s)
{
    return !strcmp(s, "--help") || !strcmp(s, "-h");
}

static const mp_command *find_command(const char *name)
{
    for (size_t i = 0; i < MP_NOPT(commands); i++)
        if (!strcmp(commands[i].name, name))
            return &commands[i];
    return NULL;
}

static void command_help(const mp_command *c)
{
    printf("Usage: mapiprofile [--user USER] %s\n\n%s", c->synopsis, c->help);
}

/* parse_command_args - the arguments after the command word, into a->items in order.
 * Returns MP_EXIT_OK or the exit status of a usage error (already reported). */
static int parse_command_args(const mp_command *c, int argc, char **argv, mp_args *a)
{
    a->cmd = c;
    a->items = calloc((size_t)argc + 1, sizeof *a->items);
    if (!a->items)
        return mp_error("out of memory");
    bool options_end = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (options_end || arg[0] != '-' || !strcmp(arg, "-")) {
            if (a->npos == c->max_pos)
                return mp_usage_error(c, "%s: unexpected argument \"%s\"", c->name, arg);
            a->pos[a->npos++] = arg;
            a->items[a->n++] = (mp_item){MP_POSITIONAL, arg};
            continue;
        }
        if (!strcmp(arg, "--")) {
            options_end = true;
            continue;
        }
        if (arg[1] != '-')
            return mp_usage_error(c, "%s: unknown option \"%s\"", c->name, arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int opt = -1;
        for (size_t k = 0; k < c->noptions; k++)
            if (strlen(c->options[k].name) == len && !strncmp(c->options[k].name, name, len))
                opt = (int)k;
        if (opt < 0)
            return mp_usage_error(c, "%s: unknown option \"--%.*s\"", c->name, (int)len, name);
        const mp_option *o = &c->options[opt];
        if (!o->repeatable && mp_has(a, opt))
            return mp_usage_error(c, "%s: --%s given twice", c->name, o->name);
        const char *value = NULL;
        if (o->value) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return mp_usage_error(c, "%s: --%s needs a value", c->name, o->name);
        } else if (eq) {
            return mp_usage_error(c, "%s: --%s takes no value", c->name, o->name);
        }
        a->items[a->n++] = (mp_item){opt, value};
    }
    if (a->npos < c->min_pos)
        return mp_usage_error(c, "%s: missing %s", c->name,
                              a->npos == 0 && c->min_pos == 1 ? "argument" : "arguments");
    return MP_EXIT_OK;
}

/* user_uid - the uid --user names: a user name, else a decimal uid. */
static bool user_uid(const char *s, uid_t *uid)
{
    struct passwd *pw = getpwnam(s);
    if (pw) {
        *uid = pw->pw_uid;
        return true;
    }
    if (!*s || strspn(s, "0123456789") != strlen(s))
        return false;
    errno = 0;
    unsigned long v = strtoul(s, NULL, 10);
    /* (uid_t)-1 means "no change" to the system calls: no user has it. */
    if (errno || v >= (unsigned long)(uid_t)-1)
        return false;
    *uid = (uid_t)v;
    return true;
}

/* --- helpers the commands share ----------------------------------------------------------- */

const mapi_profile_row *mp_find_row(const mapi_profile_row *rows, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcasecmp(rows[i].name, name))
            return &rows[i];
    return NULL;
}

char *mp_canonical_name(mp_ctx *ctx, const char *name)
{
    mapi_profile_row *rows;
    size_t n;
    char *out = NULL;
    if (mapi_profile_table(ctx->mapi, &rows, &n) == S_OK) {
        const mapi_profile_row *r = mp_find_row(rows, n, name);
        if (r)
            out = strdup(r->name);
        mapi_profile_rows_free(rows, n);
        if (r)
            return out;
    }
    return strdup(name);
}

mapi_err mp_new_search_key(mapi_svcadmin *adm)
{
    uint8_t key[16];
    if (base_random(key, sizeof key))
        return MAPI_E_CALL_FAILED;
    mapi_prop p = {.tag = PR_SEARCH_KEY};
    p.v.bin.cb = sizeof key;
    p.v.bin.lpb = key;
    return mapi_section_set_props(adm, &MAPI_UID_PROFILE_INSTANCE, &p, 1);
}

void mp_hold_signals(sigset_t *held, sigset_t *old)
{
    sigemptyset(held);
    sigaddset(held, SIGINT);
    sigaddset(held, SIGTERM);
    sigaddset(held, SIGHUP);
    sigaddset(held, SIGQUIT);
    sigprocmask(SIG_BLOCK, held, old);
}

int mp_pending_signal(const sigset_t *held)
{
    sigset_t pending;
    if (sigpending(&pending))
        return 0;
    for (int s = 1; s < NSIG; s++)
        if (sigismember(held, s) == 1 && sigismember(&pending, s) == 1)
            return s;
    return 0;
}

/* open_ctx - the registry (IMS_ROOT) with HKCU of the caller or of --user, and MAPI on it. */
static int open_ctx(bool have_user, uid_t uid, mp_ctx *ctx)
{
    int rc = reg_ctx_open(NULL, &ctx->reg);
    if (rc)
        return mp_error("cannot open the registry in %s: %s", base_state_root(), reg_strerror(rc));
    if (have_user && (rc = reg_ctx_set_user(ctx->reg, uid)))
        return mp_error("--user: cannot use the profiles of uid %lu: %s", (unsigned long)uid,
                        reg_strerror(rc));
    mapi_err e = mapi_init(ctx->reg, NULL, &ctx->mapi);
    if (e)
        return mp_fail(e, MP_ABOUT_PROFILE, "cannot initialise MAPI (catalogue %s)",
                       mapisvc_default_path(reg_ctx_root_dir(ctx->reg)));
    return MP_EXIT_OK;
}

static void close_ctx(mp_ctx *ctx)
{
    if (ctx->mapi)
        mapi_fini(ctx->mapi);
    if (ctx->reg)
        reg_ctx_close(ctx->reg);
}

int main(int argc, char **argv)
{
    bool have_user = false;
    uid_t uid = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        if (is_help(arg)) {
            fputs(general_usage, stdout);
            return fflush(stdout) ? MP_EXIT_FAIL : MP_EXIT_OK;
        }
        if (!strcmp(arg, "--")) {
            i++;
            break;
        }
        const char *user = NULL;
        if (!strncmp(arg, "--user=", 7))
            user = arg + 7;
        else if (!strcmp(arg, "--user") && i + 1 < argc)
            user = argv[++i];
        else if (!strcmp(arg, "--user"))
            return mp_usage_error(NULL, "--user needs a value");
        else
            return mp_usage_error(NULL, "unknown option \"%s\"", arg);
        if (have_user)
            return mp_usage_error(NULL, "--user given twice");
        if (geteuid() != 0)
            return mp_usage_error(NULL, "--user: only root may name a user");
        if (!user_uid(user, &uid))
            return mp_usage_error(NULL, "--user: no such user \"%s\"", user);
        have_user = true;
    }
    if (i >= argc)
        return mp_usage_error(NULL, "no command given");
    const mp_command *c = find_command(argv[i]);
    if (!c)
        return mp_usage_error(NULL, "unknown command \"%s\"", argv[i]);
    for (int k = i + 1; k < argc && strcmp(argv[k], "--"); k++)
        if (is_help(argv[k])) {
            command_help(c);
            return fflush(stdout) ? MP_EXIT_FAIL : MP_EXIT_OK;
        }

    mp_args args = {0};
    int rc = parse_command_args(c, argc - i - 1, argv + i + 1, &args);
    mp_ctx ctx = {0};
    if (!rc)
        rc = open_ctx(have_user, uid, &ctx);
    if (!rc)
        rc = c->run(&ctx, &args);
    close_ctx(&ctx);
    free(args.items);
    /* Output that could not be written (a full disk, a closed pipe) is a failure. */
    if (fflush(stdout) != 0 && rc == MP_EXIT_OK)
        rc = mp_error("cannot write the output: %s", strerror(errno));
    return rc;
}
