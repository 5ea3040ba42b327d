/* main.c - the imsctl command: control of the Internet Mail Service (MSExchangeIMC) as `net
 * start` and `sc` control a Windows service. Argument parsing, help texts and messages. */
#include "imsctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "Usage: imsctl COMMAND [OPTIONS]\n"
    "       imsctl --help\n"
    "\n"
    "Control the Internet Mail Service (" IMS_SERVICE_NAME "), whose settings live in the IMS\n"
    "registry under HKEY_LOCAL_MACHINE\\" IMS_SERVICE_KEY ".\n"
    "\n"
    "Commands:\n"
    "  install [--account USER] [--listen ADDRESS:PORT]... [--root-dir DIR]\n"
    "          [--domain NAME]...\n"
    "                           write the service key and its Parameters\n"
    "  uninstall                delete the service key (the service must be stopped)\n"
    "  start [--timeout S]      start imsd and wait until it is ready (default 30 s)\n"
    "  stop [--timeout S] [--force]\n"
    "                           stop it cleanly and wait until it is gone (default 60 s);\n"
    "                           --force kills it (SIGKILL) when the time runs out\n"
    "  restart [--timeout S] [--force]\n"
    "                           stop (when running), then start\n"
    "  status                   running or not: pid, profile, uptime, listeners, account\n"
    "  queues [FILTER...] [--json | --summary]\n"
    "                           the four queues (In, MTS-IN, MTS-OUT, Out): each message\n"
    "                           with its recipients, their state, attempts, next try and\n"
    "                           last reply; --summary: Out by destination domain\n"
    "  queues ACTION (QUEUE-ID... | FILTER... | --all)\n"
    "                           ACTION: hold, release, retry, delete, delete-ndr (delete\n"
    "                           with a non-delivery report to the sender)\n"
    "  track [--id QID] [--message-id ID] [--sender ADDR] [--recipient ADDR]\n"
    "        [--since DATE] [--until DATE] [--json]\n"
    "                           a message's life from the tracking log, every event in\n"
    "                           time order; DATE is YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\"\n"
    "                           (GMT), default the last 30 days; exit 1: nothing matched\n"
    "  diagnostics [CATEGORY [LEVEL]]\n"
    "                           list the Diagnostics Logging levels, or set CATEGORY's to\n"
    "                           LEVEL; the running service applies it at once\n"
    "  stats [--json]           the running service's performance counters (exit 3: it\n"
    "                           is not running); --json for scripts\n"
    "\n"
    "install options:\n"
    "  --account USER           the service account (ObjectName): imsd runs as USER. Root\n"
    "                           must name one (not root); a user installs for itself only\n"
    "  --listen ADDRESS:PORT    an SMTP listener ([v6]:PORT for IPv6), repeatable; the\n"
    "                           default keeps ListenAddresses, or writes " IMS_INSTALL_LISTEN "\n"
    "  --root-dir DIR           RootDir, the working folders; default keeps RootDir, or\n"
    "                           writes <state root>/imcdata\n"
    "  --domain NAME            accept mail for NAME (repeatable), and make the\n"
    "                           administrator's mailbox (AdministratorMailbox, default\n"
    "                           postmaster: postmaster@NAME) when it does not exist\n"
    "\n"
    "queues filters (all must hold):\n"
    "  --queue in|mts-in|mts-out|out   that queue (repeatable)\n"
    "  --id QUEUE-ID, --sender ADDR ('<>': the null sender), --recipient ADDR,\n"
    "  --domain DOMAIN (a recipient's), --older-than AGE (N, Ns, Nm, Nh, Nd)\n"
    "\n"
    "diagnostics arguments:\n"
    "  CATEGORY                 the value name (\"SMTP Protocol Log\") or an alias:\n"
    "                           init, addressing, transfer, interface, internal,\n"
    "                           conversion, protocol-log, archival (and the value name in\n"
    "                           lower case with dashes, smtp-protocol-log); any case\n"
    "  LEVEL                    none, minimum, medium, maximum, or 0 to 5\n"
    "\n"
    "Environment: IMS_ROOT (the state root, default " BASE_DEFAULT_ROOT ").\n"
    "Exit status: 0 done (status: running), 1 failed, 2 usage error, 3 (status, stats)\n"
    "stopped.\n";

int ic_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imsctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return IC_EXIT_FAIL;
}

int ic_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imsctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'imsctl --help'.\n", stderr);
    va_end(ap);
    return IC_EXIT_USAGE;
}

void ic_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imsctl: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* The options of all commands; each command accepts a subset (its mask). */
enum {
    OPT_ACCOUNT,
    OPT_LISTEN,
    OPT_ROOT_DIR,
    OPT_TIMEOUT,
    OPT_FORCE,
    OPT_DOMAIN,
    OPT_JSON,
    OPT_COUNT,
};
static const struct {
    const char *name;
    bool value;
} options[OPT_COUNT] = {
    [OPT_ACCOUNT] = {"account", true},   [OPT_LISTEN] = {"listen", true},
    [OPT_ROOT_DIR] = {"root-dir", true}, [OPT_TIMEOUT] = {"timeout", true},
    [OPT_FORCE] = {"force", false},      [OPT_DOMAIN] = {"domain", true},
    [OPT_JSON] = {"json", false},
};

#define BIT(o) (1u << (o))

typedef struct command {
    const char *name;
    unsigned options; /* BIT(OPT_*) it accepts */
} command;

static const command commands[] = {
    {"install", BIT(OPT_ACCOUNT) | BIT(OPT_LISTEN) | BIT(OPT_ROOT_DIR) | BIT(OPT_DOMAIN)},
    {"uninstall", 0},
    {"start", BIT(OPT_TIMEOUT)},
    {"stop", BIT(OPT_TIMEOUT) | BIT(OPT_FORCE)},
    {"restart", BIT(OPT_TIMEOUT) | BIT(OPT_FORCE)},
    {"status", 0},
    {"diagnostics", 0}, /* positional arguments: ic_cmd_diagnostics parses them */
    {"stats", BIT(OPT_JSON)},
};

/* parsed - what the options said. */
typedef struct parsed {
    ic_install_args install;
    bool has_timeout;
    unsigned timeout;
    bool force;
    bool json;
} parsed;

static int parse_timeout(const char *text, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (!*text || *text < '0' || *text > '9' || *end || errno || v < 1 || v > IC_TIMEOUT_MAX)
        return ic_usage_error("--timeout wants whole seconds from 1 to %d, not \"%s\"",
                              IC_TIMEOUT_MAX, text);
    *out = (unsigned)v;
    return IC_EXIT_OK;
}

/* parse_options - the arguments after the command word. Returns IC_EXIT_OK or a usage
 * error's status (already reported). */
static int parse_options(const command *c, int argc, char **argv, parsed *p)
{
    unsigned seen = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) || !arg[2])
            return ic_usage_error("%s: unexpected argument \"%s\"", c->name, arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int opt = -1;
        for (int k = 0; k < OPT_COUNT; k++)
            if ((c->options & BIT(k)) && strlen(options[k].name) == len &&
                !strncmp(options[k].name, name, len))
                opt = k;
        if (opt < 0)
            return ic_usage_error("%s: unknown option \"--%.*s\"", c->name, (int)len, name);
        if (opt != OPT_LISTEN && opt != OPT_DOMAIN && (seen & BIT(opt)))
            return ic_usage_error("%s: --%s given twice", c->name, options[opt].name);
        seen |= BIT(opt);
        const char *value = NULL;
        if (options[opt].value) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return ic_usage_error("%s: --%s needs a value", c->name, options[opt].name);
        } else if (eq) {
            return ic_usage_error("%s: --%s takes no value", c->name, options[opt].name);
        }
        int rc = IC_EXIT_OK;
        switch (opt) {
        case OPT_ACCOUNT:
            if (!*value)
                return ic_usage_error("install: --account needs a user name");
            p->install.account = value;
            break;
        case OPT_LISTEN: {
            ims_listen l;
            if (ims_listen_parse(value, &l))
                return ic_usage_error("install: --listen wants ADDRESS:PORT (a numeric address, "
                                      "[v6]:PORT for IPv6), not \"%s\"",
                                      value);
            if (p->install.nlisten == IMS_MAX_LISTENERS)
                return ic_usage_error("install: at most %d --listen addresses", IMS_MAX_LISTENERS);
            p->install.listen[p->install.nlisten++] = value;
            break;
        }
        case OPT_ROOT_DIR:
            if (value[0] != '/')
                return ic_usage_error("install: --root-dir wants an absolute path, not \"%s\"",
                                      value);
            p->install.root_dir = value;
            break;
        case OPT_DOMAIN:
            if (!dir_domain_valid(value))
                return ic_usage_error("install: --domain wants a domain name, not \"%s\"", value);
            if (p->install.ndomain == IC_MAX_DOMAINS)
                return ic_usage_error("install: at most %d --domain names", IC_MAX_DOMAINS);
            p->install.domain[p->install.ndomain++] = value;
            break;
        case OPT_TIMEOUT:
            rc = parse_timeout(value, &p->timeout);
            p->has_timeout = true;
            break;
        case OPT_FORCE:
            p->force = true;
            break;
        case OPT_JSON:
            p->json = true;
            break;
        }
        if (rc)
            return rc;
    }
    return IC_EXIT_OK;
}

/* absolute_env - make a relative path in the environment variable name absolute: imsd runs
 * from "/" (it gives up its working directory), and RootDir is written from IMS_ROOT. */
static int absolute_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v || v[0] == '/')
        return 0;
    char abs[PATH_MAX], cwd[PATH_MAX];
    if (!realpath(v, abs)) {
        if (!getcwd(cwd, sizeof cwd))
            return errno;
        if (snprintf(abs, sizeof abs, "%s/%s", cwd, v) >= (int)sizeof abs)
            return ENAMETOOLONG;
    }
    return setenv(name, abs, 1) ? errno : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return ic_usage_error("a command is needed (install, uninstall, start, stop, restart, "
                              "status, stats, queues, track, diagnostics)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage_text, stdout);
        return IC_EXIT_OK;
    }
    const command *c = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, argv[1]))
            c = &commands[i];
    if (!c && !strcmp(argv[1], "queues")) /* its own options (queues.c) */
        return absolute_env("IMS_ROOT") ? ic_error("cannot make IMS_ROOT absolute")
                                        : ic_cmd_queues(argc - 2, argv + 2);
    if (!c && !strcmp(argv[1], "track")) /* its own options (track.c) */
        return absolute_env("IMS_ROOT") ? ic_error("cannot make IMS_ROOT absolute")
                                        : ic_cmd_track(argc - 2, argv + 2);
    if (!c)
        return ic_usage_error("unknown command \"%s\"", argv[1]);
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage_text, stdout);
            return IC_EXIT_OK;
        }
    static const char *const path_vars[] = {"IMS_ROOT", "IMS_MAPISVC"};
    for (size_t i = 0; i < sizeof path_vars / sizeof path_vars[0]; i++) {
        int e = absolute_env(path_vars[i]);
        if (e)
            return ic_error("cannot make %s absolute: %s", path_vars[i], strerror(e));
    }
    if (!strcmp(c->name, "diagnostics"))
        return ic_cmd_diagnostics(argc - 2, argv + 2);
    parsed p = {0};
    int rc = parse_options(c, argc - 2, argv + 2, &p);
    if (rc)
        return rc;
    /* Line-buffered output: a start's progress shows even when stdout is a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(c->name, "install"))
        return ic_cmd_install(&p.install);
    if (!strcmp(c->name, "uninstall"))
        return ic_cmd_uninstall();
    if (!strcmp(c->name, "start"))
        return ic_cmd_start(p.has_timeout ? p.timeout : IC_START_TIMEOUT);
    if (!strcmp(c->name, "stop"))
        return ic_cmd_stop(p.has_timeout ? p.timeout : IC_STOP_TIMEOUT, p.force);
    if (!strcmp(c->name, "restart"))
        return ic_cmd_restart(p.has_timeout ? p.timeout : 0, p.force);
    if (!strcmp(c->name, "stats"))
        return ic_cmd_stats(p.json);
    return ic_cmd_status();
}
