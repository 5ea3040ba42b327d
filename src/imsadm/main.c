/* main.c - the imsadm command: the directory of recipients (accepted domains, mailboxes and
 * their SMTP addresses) kept in HKLM\Software\IMS\Directory, and the mailboxes' passwords;
 * the running service sees every change at once. Argument parsing, the commands, their output
 * and messages; reading a password from the terminal or standard input. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/ims.h"
#include "reg/reg.h"
#include "store/store.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

#define MSG_MAX 1024 /* bytes of one message from the directory */
/* PW_DRAIN_MAX - bytes of a too long line read away from the terminal, so that the rest does
 * not reach the shell after imsadm exits (a terminal's line holds 4096 at most). */
#define PW_DRAIN_MAX 65536

static const char usage_text[] =
    "Usage: imsadm domain add|remove DOMAIN\n"
    "       imsadm domain list\n"
    "       imsadm mailbox add ALIAS --address ADDRESS... [--name \"DISPLAY NAME\"]\n"
    "       imsadm mailbox set ALIAS [--name \"DISPLAY NAME\"] [--add-address ADDRESS]...\n"
    "                          [--remove-address ADDRESS]... [--primary ADDRESS]\n"
    "       imsadm mailbox remove|show ALIAS\n"
    "       imsadm mailbox password ALIAS [--clear]\n"
    "       imsadm mailbox list\n"
    "       imsadm --help\n"
    "\n"
    "Manage the directory of recipients in HKEY_LOCAL_MACHINE\\" DIR_KEY ":\n"
    "the domains the organisation accepts mail for, and mailboxes with a display name and\n"
    "SMTP addresses (one primary, any number of secondary). The running service sees every\n"
    "change at once.\n"
    "\n"
    "  domain add DOMAIN        accept mail for DOMAIN\n"
    "  domain remove DOMAIN     stop accepting it (no mailbox may have an address in it)\n"
    "  domain list              the accepted domains, one a line\n"
    "  mailbox add ALIAS        a new mailbox and its Maildir (<state root>/store/ALIAS);\n"
    "                           the first --address is the primary one. --address takes\n"
    "                           every following argument up to the next option, and may\n"
    "                           be repeated. The display name defaults to ALIAS\n"
    "  mailbox set ALIAS        change the display name or the addresses: removals first,\n"
    "                           then additions, then the primary (the old one stays, as a\n"
    "                           secondary address)\n"
    "  mailbox remove ALIAS     delete the mailbox from the directory; its Maildir and the\n"
    "                           mail in it are kept\n"
    "  mailbox show ALIAS       alias, display name, addresses, Maildir, whether a\n"
    "                           password is set\n"
    "  mailbox password ALIAS   set the password of SMTP AUTH: asked twice on the\n"
    "                           terminal (not shown), or one line of standard input\n"
    "                           when that is not a terminal; never an argument. Kept\n"
    "                           as a yescrypt hash only the service account can read.\n"
    "                           --clear: the mailbox has no password any more\n"
    "  mailbox list             the aliases, one a line\n"
    "\n"
    "Run it as root or as the service account: a new Maildir must be writable by the\n"
    "service. As root, a new Maildir is given to the service account (ObjectName of\n"
    "HKLM\\" IMS_SERVICE_KEY "); passwords go into that account's own registry\n"
    "hive, so as another user only the service account itself may set them.\n"
    "\n"
    "Environment: IMS_ROOT (the state root, default " BASE_DEFAULT_ROOT ").\n"
    "Exit status: 0 done, 1 failed, 2 usage error.\n";

/* --- messages ------------------------------------------------------------------------- */

static int error_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int error_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imsadm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAIL;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imsadm: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'imsadm --help'.\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("imsadm: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* dir_failed - report a refused change with the directory's reason and a hint where one
 * helps. */
static int dir_failed(const dir_err *e)
{
    char msg[MSG_MAX];
    dir_err_format(e, msg, sizeof msg);
    const char *hint = "";
    if (e->reason == DIR_DOMAIN_NOT_ACCEPTED)
        hint = " (accept it first with imsadm domain add)";
    else if (e->reason == DIR_REGISTRY && e->reg_error == ERROR_ACCESS_DENIED)
        hint = " (only root or the owner of the state root may change HKLM)";
    return error_msg("%s%s", msg, hint);
}

/* --- the service account --------------------------------------------------------------- */

/* account - the service account as the service key names it. */
typedef struct account {
    char name[128]; /* ObjectName as written, "" when not set */
    bool known;     /* resolved to a user */
    uid_t uid;
    gid_t gid;
} account;

/* account_load - ObjectName of the service key, resolved as imsd resolves it: the part after
 * the last backslash (".\user", "DOMAIN\user") is a user name or a uid. */
static void account_load(reg_ctx *reg, account *a)
{
    memset(a, 0, sizeof *a);
    reg_key *svc;
    if (reg_key_open_path(reg, "HKLM\\" IMS_SERVICE_KEY, REG_READ, &svc))
        return;
    buf b = BUF_INIT;
    if (!reg_value_get_sz(svc, "ObjectName", &b) && b.len && b.len < sizeof a->name)
        memcpy(a->name, b.data, b.len);
    buf_free(&b);
    reg_key_close(svc);
    if (!a->name[0])
        return;
    const char *slash = strrchr(a->name, '\\');
    const char *user = slash ? slash + 1 : a->name;
    struct passwd *pw = *user ? getpwnam(user) : NULL;
    if (!pw && *user && strspn(user, "0123456789") == strlen(user) && strlen(user) <= 10)
        pw = getpwuid((uid_t)strtoul(user, NULL, 10));
    if (pw) {
        a->known = true;
        a->uid = pw->pw_uid;
        a->gid = pw->pw_gid;
    }
}

/* maildir_for_service - make a new Maildir usable by the service: as root, give it (and a
 * store directory root made) to the service account; as another user, warn when that is
 * not the service account. Returns EXIT_OK or EXIT_FAIL (reported). */
static int maildir_for_service(reg_ctx *reg, const char *maildir)
{
    account a;
    account_load(reg, &a);
    uid_t me = geteuid();
    if (me != 0) {
        if (a.known && a.uid != me)
            warn("the Maildir %s belongs to you, not to the service account %s: the service "
                 "cannot deliver to it (run imsadm as root or as %s)",
                 maildir, a.name, a.name);
        return EXIT_OK;
    }
    if (!a.name[0]) {
        warn("no service account is set (imsctl install --account USER): the Maildir %s "
             "belongs to root",
             maildir);
        return EXIT_OK;
    }
    if (!a.known) {
        warn("the service account \"%s\" is not a user: the Maildir %s belongs to root", a.name,
             maildir);
        return EXIT_OK;
    }
    if (a.uid == 0)
        return EXIT_OK;
    int e = store_maildir_give(maildir, a.uid, a.gid);
    if (e)
        return error_msg("the mailbox is added, but its Maildir %s could not be given to the "
                         "service account %s: %s",
                         maildir, a.name, strerror(e));
    return EXIT_OK;
}

/* passwords_account_ok - the password will go where the service reads it: HKCU of the
 * context, which main made the service account's when root runs imsadm. Returns EXIT_OK or
 * EXIT_FAIL (reported). */
static int passwords_account_ok(reg_ctx *reg)
{
    account a;
    account_load(reg, &a);
    if (geteuid() == 0) {
        if (!a.name[0])
            return error_msg("no service account is set (imsctl install --account USER): the "
                             "password is kept in that account's registry hive");
        if (!a.known)
            return error_msg("the service account \"%s\" is not a user: the password is kept "
                             "in that account's registry hive",
                             a.name);
        return EXIT_OK;
    }
    if (a.known && a.uid != geteuid())
        return error_msg("the password is kept in the registry hive of the service account %s: "
                         "run imsadm as root or as %s",
                         a.name, a.name);
    return EXIT_OK;
}

/* --- reading a password ---------------------------------------------------------------- */

/* The terminal's settings while echo is off, put back by a signal that ends imsadm. */
static struct termios tty_saved;
static volatile sig_atomic_t tty_echo_off;
static const int tty_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
#define TTY_NSIGNALS (sizeof tty_signals / sizeof tty_signals[0])

static void tty_restore(void)
{
    if (tty_echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
    tty_echo_off = 0;
}

static void tty_on_signal(int sig)
{
    tty_restore();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* read_line - one line from fd into pw (at most DIR_MAX_PASSWORD bytes and a NUL), read a
 * byte at a time so that nothing after it is taken from the input; the newline (and a
 * carriage return before it) is dropped. Returns 0, ENODATA (end of input before any byte),
 * E2BIG (longer than DIR_MAX_PASSWORD: the rest of the line, up to PW_DRAIN_MAX bytes, is
 * read away when drain is true) or an errno value. */
static int read_line(int fd, char pw[DIR_MAX_PASSWORD + 2], size_t *len, bool drain)
{
    size_t n = 0;
    bool any = false;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno;
        if (r == 0) {
            if (!any)
                return ENODATA;
            break;
        }
        any = true;
        if (c == '\n')
            break;
        if (n > DIR_MAX_PASSWORD) {
            for (size_t i = 0; drain && i < PW_DRAIN_MAX && read(fd, &c, 1) == 1 && c != '\n'; i++)
                ;
            return E2BIG;
        }
        pw[n++] = c;
    }
    if (n && pw[n - 1] == '\r')
        n--;
    if (n > DIR_MAX_PASSWORD) /* one byte more fits, for a CR before the newline */
        return E2BIG;
    pw[n] = '\0';
    *len = n;
    return 0;
}

/* line_failed - the message of a read_line failure. */
static int line_failed(int e, const char *from)
{
    if (e == ENODATA)
        return error_msg("no password given (end of input on %s)", from);
    if (e == E2BIG)
        return error_msg("the password is longer than %d bytes", DIR_MAX_PASSWORD);
    return error_msg("cannot read the password from %s: %s", from, strerror(e));
}

/* prompt_line - turn the terminal's echo off, then write prompt to standard error and read
 * a line; the newline the user typed is not echoed, so one is written after it. Echo goes off
 * before the prompt shows (as readpassphrase does): turning it off discards what was typed
 * ahead, so a password typed the moment the prompt appears is neither echoed nor lost. */
static int prompt_line(const char *prompt, char pw[DIR_MAX_PASSWORD + 2], size_t *len)
{
    struct termios t = tty_saved;
    t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t))
        return error_msg("cannot turn off the terminal's echo: %s", strerror(errno));
    tty_echo_off = 1;
    fputs(prompt, stderr);
    fflush(stderr);
    int e = read_line(STDIN_FILENO, pw, len, true);
    tty_restore();
    fputc('\n', stderr);
    return e ? line_failed(e, "the terminal") : EXIT_OK;
}

/* password_from_terminal - asked twice, the two must match. */
static int password_from_terminal(char pw[DIR_MAX_PASSWORD + 2], size_t *len)
{
    if (tcgetattr(STDIN_FILENO, &tty_saved))
        return error_msg("cannot read the terminal's settings: %s", strerror(errno));
    struct sigaction sa = {.sa_handler = tty_on_signal}, old[TTY_NSIGNALS];
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < TTY_NSIGNALS; i++)
        sigaction(tty_signals[i], &sa, &old[i]);
    char again[DIR_MAX_PASSWORD + 2];
    size_t len2 = 0;
    int rc = prompt_line("New password: ", pw, len);
    if (!rc)
        rc = prompt_line("Retype new password: ", again, &len2);
    if (!rc && (len2 != *len || memcmp(pw, again, *len)))
        rc = error_msg("the passwords do not match: nothing changed");
    explicit_bzero(again, sizeof again);
    for (size_t i = 0; i < TTY_NSIGNALS; i++)
        sigaction(tty_signals[i], &old[i], NULL);
    return rc;
}

/* cmd_mailbox_password - set (asked for) or clear the password of alias. */
static int cmd_mailbox_password(reg_ctx *reg, directory *d, const char *alias, bool clear)
{
    dir_err e;
    if (clear)
        return dir_password_clear(d, alias, &e) ? dir_failed(&e) : EXIT_OK;
    int rc = passwords_account_ok(reg);
    if (rc)
        return rc;
    /* Refused before the password is asked for: no such mailbox, no write access. */
    dir_mailbox m;
    if (dir_mailbox_show(d, alias, &m, &e))
        return dir_failed(&e);
    dir_mailbox_free(&m);
    char pw[DIR_MAX_PASSWORD + 2];
    size_t len = 0;
    if (isatty(STDIN_FILENO)) {
        rc = password_from_terminal(pw, &len);
    } else {
        int r = read_line(STDIN_FILENO, pw, &len, false);
        rc = r ? line_failed(r, "standard input") : EXIT_OK;
    }
    if (!rc && !dir_password_valid(pw, len)) {
        e = (dir_err){.reason = DIR_BAD_PASSWORD};
        rc = dir_failed(&e);
    }
    if (!rc && dir_password_set(d, alias, pw, &e))
        rc = dir_failed(&e);
    explicit_bzero(pw, sizeof pw);
    return rc;
}

/* --- commands ------------------------------------------------------------------------- */

/* print_names - one a line. */
static void print_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s\n", names[i]);
}

static int cmd_domain(directory *d, const char *verb, const char *domain)
{
    dir_err e;
    int rc;
    if (!strcmp(verb, "list")) {
        char **names;
        size_t n;
        if ((rc = dir_domain_list(d, &names, &n)))
            return error_msg("cannot read the accepted domains: %s", strerror(rc));
        print_names(names, n);
        dir_names_free(names, n);
        return EXIT_OK;
    }
    rc = !strcmp(verb, "add") ? dir_domain_add(d, domain, &e) : dir_domain_remove(d, domain, &e);
    return rc ? dir_failed(&e) : EXIT_OK;
}

/* mailbox_args - what the options of mailbox add and set said. */
typedef struct mailbox_args {
    const char *name;
    const char **address; /* add: --address; set: --add-address */
    size_t naddress;
    const char **remove;
    size_t nremove;
    const char *primary;
    bool clear; /* password --clear */
} mailbox_args;

static int cmd_mailbox_show(directory *d, const char *alias)
{
    dir_mailbox m;
    dir_err e;
    if (dir_mailbox_show(d, alias, &m, &e))
        return dir_failed(&e);
    printf("Alias:        %s\n", m.alias);
    printf("Display name: %s\n", m.display_name);
    printf("Primary:      %s\n", m.primary ? m.primary : "(none)");
    for (size_t i = 0; i < m.nsecondary; i++)
        printf("Secondary:    %s\n", m.secondary[i]);
    printf("Maildir:      %s\n", m.maildir);
    printf("Password:     %s\n", m.password ? "set" : "none");
    dir_mailbox_free(&m);
    return EXIT_OK;
}

static int cmd_mailbox(reg_ctx *reg, directory *d, const char *verb, const char *alias,
                       const mailbox_args *a)
{
    dir_err e;
    if (!strcmp(verb, "list")) {
        char **names;
        size_t n;
        int rc = dir_mailbox_list(d, &names, &n);
        if (rc)
            return error_msg("cannot read the mailboxes: %s", strerror(rc));
        print_names(names, n);
        dir_names_free(names, n);
        return EXIT_OK;
    }
    if (!strcmp(verb, "show"))
        return cmd_mailbox_show(d, alias);
    if (!strcmp(verb, "password"))
        return cmd_mailbox_password(reg, d, alias, a->clear);
    if (!strcmp(verb, "remove"))
        return dir_mailbox_remove(d, alias, &e) ? dir_failed(&e) : EXIT_OK;
    if (!strcmp(verb, "set")) {
        dir_change c = {.display_name = a->name,
                        .add = a->address,
                        .nadd = a->naddress,
                        .remove = a->remove,
                        .nremove = a->nremove,
                        .primary = a->primary};
        return dir_mailbox_set(d, alias, &c, &e) ? dir_failed(&e) : EXIT_OK;
    }
    char *maildir;
    if (dir_mailbox_add(d, alias, a->name, a->address, a->naddress, &maildir, &e))
        return dir_failed(&e);
    int rc = maildir_for_service(reg, maildir);
    free(maildir);
    return rc;
}

/* --- arguments ------------------------------------------------------------------------ */

enum {
    OPT_ADDRESS,
    OPT_NAME,
    OPT_ADD_ADDRESS,
    OPT_REMOVE_ADDRESS,
    OPT_PRIMARY,
    OPT_CLEAR,
    OPT_COUNT
};
static const char *const option_names[OPT_COUNT] = {
    [OPT_ADDRESS] = "address",         [OPT_NAME] = "name",
    [OPT_ADD_ADDRESS] = "add-address", [OPT_REMOVE_ADDRESS] = "remove-address",
    [OPT_PRIMARY] = "primary",         [OPT_CLEAR] = "clear",
};
#define BIT(o) (1u << (o))

/* command - a verb: its object, how many words follow it and which options it takes. */
typedef struct command {
    const char *object, *verb;
    bool operand; /* takes DOMAIN or ALIAS */
    unsigned options;
} command;

static const command commands[] = {
    {"domain", "add", true, 0},
    {"domain", "remove", true, 0},
    {"domain", "list", false, 0},
    {"mailbox", "add", true, BIT(OPT_ADDRESS) | BIT(OPT_NAME)},
    {"mailbox", "set", true,
     BIT(OPT_NAME) | BIT(OPT_ADD_ADDRESS) | BIT(OPT_REMOVE_ADDRESS) | BIT(OPT_PRIMARY)},
    {"mailbox", "remove", true, 0},
    {"mailbox", "show", true, 0},
    {"mailbox", "password", true, BIT(OPT_CLEAR)},
    {"mailbox", "list", false, 0},
};

/* parse_args - the words after "OBJECT VERB": the operand and the options into *a (its
 * arrays hold up to argc entries). Returns EXIT_OK or a usage error (reported). */
static int parse_args(const command *c, int argc, char **argv, const char **operand,
                      mailbox_args *a)
{
    const char *what = c->operand ? (!strcmp(c->object, "domain") ? "DOMAIN" : "ALIAS") : "";
    unsigned seen = 0;
    *operand = NULL;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) || !arg[2]) {
            if (!c->operand || *operand)
                return usage_error("%s %s: unexpected argument \"%s\"", c->object, c->verb, arg);
            *operand = arg;
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int opt = -1;
        for (int k = 0; k < OPT_COUNT; k++)
            if ((c->options & BIT(k)) && strlen(option_names[k]) == len &&
                !strncmp(option_names[k], name, len))
                opt = k;
        if (opt < 0)
            return usage_error("%s %s: unknown option \"--%.*s\"", c->object, c->verb, (int)len,
                               name);
        bool repeatable = opt == OPT_ADDRESS || opt == OPT_ADD_ADDRESS || opt == OPT_REMOVE_ADDRESS;
        if (!repeatable && (seen & BIT(opt)))
            return usage_error("%s %s: --%s given twice", c->object, c->verb, option_names[opt]);
        seen |= BIT(opt);
        if (opt == OPT_CLEAR) { /* a switch: no value */
            if (eq)
                return usage_error("%s %s: --%s takes no value", c->object, c->verb,
                                   option_names[opt]);
            a->clear = true;
            continue;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
            value = argv[++i];
        else
            return usage_error("%s %s: --%s needs a value", c->object, c->verb, option_names[opt]);
        switch (opt) {
        case OPT_ADDRESS:
            a->address[a->naddress++] = value;
            /* --address ADDRESS...: the words up to the next option are addresses too. */
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2))
                a->address[a->naddress++] = argv[++i];
            break;
        case OPT_ADD_ADDRESS:
            a->address[a->naddress++] = value;
            break;
        case OPT_REMOVE_ADDRESS:
            a->remove[a->nremove++] = value;
            break;
        case OPT_NAME:
            a->name = value;
            break;
        case OPT_PRIMARY:
            a->primary = value;
            break;
        case OPT_CLEAR:
            break;
        }
    }
    if (c->operand && !*operand)
        return usage_error("%s %s: %s is missing", c->object, c->verb, what);
    if (!strcmp(c->verb, "add") && (c->options & BIT(OPT_ADDRESS)) && !a->naddress)
        return usage_error("mailbox add: at least one --address is needed");
    if (!strcmp(c->verb, "set") && !seen)
        return usage_error("mailbox set: nothing to change (--name, --add-address, "
                           "--remove-address, --primary)");
    return EXIT_OK;
}

/* absolute_root - a relative IMS_ROOT made absolute: the Maildir paths shown and the
 * directory's store are then the same from anywhere. */
static int absolute_root(void)
{
    const char *v = getenv("IMS_ROOT");
    if (!v || !*v || v[0] == '/')
        return 0;
    char cwd[PATH_MAX], abs[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return errno;
    if (snprintf(abs, sizeof abs, "%s/%s", cwd, v) >= (int)sizeof abs)
        return ENAMETOOLONG;
    return setenv("IMS_ROOT", abs, 1) ? errno : 0;
}

static bool is_help(const char *arg)
{
    return !strcmp(arg, "--help") || !strcmp(arg, "-h") || !strcmp(arg, "help");
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage_error("an object is needed (domain, mailbox)");
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i]) && (i == 1 || strcmp(argv[i], "help"))) {
            fputs(usage_text, stdout);
            return fflush(stdout) ? EXIT_FAIL : EXIT_OK;
        }
    if (strcmp(argv[1], "domain") && strcmp(argv[1], "mailbox"))
        return usage_error("unknown object \"%s\" (domain, mailbox)", argv[1]);
    if (argc < 3)
        return usage_error("%s: a command is needed", argv[1]);
    const command *c = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].object, argv[1]) && !strcmp(commands[i].verb, argv[2]))
            c = &commands[i];
    if (!c)
        return usage_error("%s: unknown command \"%s\"", argv[1], argv[2]);
    const char **arrays = calloc(2 * (size_t)argc, sizeof *arrays);
    if (!arrays)
        return error_msg("%s", strerror(ENOMEM));
    mailbox_args a = {.address = arrays, .remove = arrays + argc};
    const char *operand;
    int rc = parse_args(c, argc - 3, argv + 3, &operand, &a);
    int e;
    reg_ctx *reg = NULL;
    directory *d = NULL;
    if (!rc && (e = absolute_root()))
        rc = error_msg("cannot make IMS_ROOT absolute: %s", strerror(e));
    if (!rc && (e = reg_ctx_open(NULL, &reg)))
        rc = error_msg("cannot open the registry under %s: %s", base_state_root(), reg_strerror(e));
    /* As root, HKCU is the service account's: where the service reads the passwords. */
    if (!rc && geteuid() == 0) {
        account acct;
        account_load(reg, &acct);
        if (acct.known && acct.uid != 0 && (e = reg_ctx_set_user(reg, acct.uid)))
            rc = error_msg("cannot use the registry of the service account %s: %s", acct.name,
                           reg_strerror(e));
    }
    if (!rc && (e = dir_open(reg, &d)))
        rc = error_msg("cannot read the directory: %s", strerror(e));
    if (!rc)
        rc = !strcmp(c->object, "domain") ? cmd_domain(d, c->verb, operand)
                                          : cmd_mailbox(reg, d, c->verb, operand, &a);
    dir_close(d);
    reg_ctx_close(reg);
    free(arrays);
    if (fflush(stdout) && !rc)
        rc = error_msg("cannot write the output: %s", strerror(errno));
    return rc;
}
