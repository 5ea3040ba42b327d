/* install.c - imsctl install and uninstall: the service key HKLM\System\CurrentControlSet\
 * Services\MSExchangeIMC and its Parameters, as Windows' service control manager keeps them. */
#include "imsctl.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

#define IC_SELF_EXE "/proc/self/exe"
#define IC_IMSD_NAME "imsd"

int ic_image_default(char *out, size_t n)
{
    char self[PATH_MAX];
    if (!realpath(IC_SELF_EXE, self))
        return errno;
    char *slash = strrchr(self, '/');
    if (!slash)
        return ENOENT;
    *slash = 0;
    return snprintf(out, n, "%s/%s", self, IC_IMSD_NAME) >= (int)n ? ENAMETOOLONG : 0;
}

int ic_image_path(reg_ctx *reg, bool *installed, char *out, size_t n)
{
    *installed = false;
    reg_key *svc;
    int rc = reg_key_open_path(reg, "HKLM\\" IMS_SERVICE_KEY, REG_READ, &svc);
    if (rc == ERROR_FILE_NOT_FOUND)
        return ERROR_SUCCESS;
    if (rc)
        return rc;
    *installed = true;
    buf b = BUF_INIT;
    rc = reg_value_get_sz(svc, "ImagePath", &b);
    reg_key_close(svc);
    if (rc == ERROR_FILE_NOT_FOUND || (rc == ERROR_SUCCESS && b.len == 0)) {
        buf_free(&b);
        rc = ic_image_default(out, n);
        return rc ? reg_errno_to_win32(rc) : ERROR_SUCCESS;
    }
    if (rc) {
        buf_free(&b);
        return rc;
    }
    /* Windows quotes an ImagePath with spaces; the path is taken whole, without arguments. */
    const char *p = (const char *)b.data;
    size_t len = b.len;
    if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
        p++;
        len -= 2;
    }
    if (len >= n) {
        buf_free(&b);
        return ERROR_FILENAME_EXCED_RANGE;
    }
    memcpy(out, p, len);
    out[len] = 0;
    buf_free(&b);
    return ERROR_SUCCESS;
}

/* --- printing what is stored --------------------------------------------------------------- */

static const char *type_name(uint32_t type)
{
    switch (type) {
    case REG_SZ:
        return "REG_SZ";
    case REG_EXPAND_SZ:
        return "REG_EXPAND_SZ";
    case REG_BINARY:
        return "REG_BINARY";
    case REG_DWORD:
        return "REG_DWORD";
    case REG_MULTI_SZ:
        return "REG_MULTI_SZ";
    case REG_QWORD:
        return "REG_QWORD";
    default:
        return "REG_NONE";
    }
}

/* print_value - one value as `reg query` prints it ("    Name    REG_SZ    data"). */
static int print_value(void *arg, const char *name, uint32_t type, const uint8_t *data, size_t len)
{
    (void)arg;
    buf text = BUF_INIT;
    if ((type == REG_SZ || type == REG_EXPAND_SZ || type == REG_MULTI_SZ) && len >= 2) {
        size_t units = len / 2;
        /* Drop the terminators; REG_MULTI_SZ's inner NULs print as reg.exe does: "\0". */
        while (units && !data[2 * units - 2] && !data[2 * units - 1])
            units--;
        size_t start = 0;
        for (size_t i = 0; i <= units; i++) {
            if (i < units && (data[2 * i] || data[2 * i + 1]))
                continue;
            if (start)
                buf_adds(&text, "\\0");
            base_utf16_to_utf8(data + 2 * start, i - start, &text);
            start = i + 1;
            if (type != REG_MULTI_SZ)
                break;
        }
    } else if (type == REG_DWORD && len == 4) {
        uint32_t v = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 |
                     (uint32_t)data[3] << 24;
        buf_printf(&text, "0x%x", v);
    } else {
        for (size_t i = 0; i < len; i++)
            buf_printf(&text, "%02X", data[i]);
    }
    const char *s = buf_cstr(&text);
    printf("    %s    %s    %s\n", *name ? name : "(Default)", type_name(type), s ? s : "");
    buf_free(&text);
    return 0;
}

/* print_key - the values of HKLM\path, with its full name first. */
static int print_key(reg_ctx *reg, const char *path)
{
    reg_key *k;
    char full[PATH_MAX];
    snprintf(full, sizeof full, "HKLM\\%s", path);
    int rc = reg_key_open_path(reg, full, REG_READ, &k);
    if (rc)
        return rc;
    printf("HKEY_LOCAL_MACHINE\\%s\n", path);
    rc = reg_key_enum_values(k, print_value, NULL);
    printf("\n");
    reg_key_close(k);
    return rc;
}

/* --- install ------------------------------------------------------------------------------- */

/* service_account - the account to write: root must name a user that exists and is not root;
 * anyone else installs for itself. Returns IC_EXIT_OK or an exit status (reported). */
static int service_account(const char *given, char *out, size_t n)
{
    if (geteuid() == 0) {
        if (!given)
            return ic_usage_error("install: as root, --account USER is needed: the service's "
                                  "network side must not run as root");
        errno = 0;
        struct passwd *pw = getpwnam(given);
        if (!pw)
            return errno ? ic_error("cannot look up the user \"%s\": %s", given, strerror(errno))
                         : ic_error("no such user: \"%s\"", given);
        if (pw->pw_uid == 0)
            return ic_usage_error("install: the account \"%s\" is root: the service's network "
                                  "side must not run as root",
                                  given);
        snprintf(out, n, "%s", pw->pw_name);
        return IC_EXIT_OK;
    }
    struct passwd *pw = getpwuid(geteuid());
    if (!pw)
        return ic_error("the calling user (uid %u) has no user name", (unsigned)geteuid());
    if (given && strcmp(given, pw->pw_name))
        return ic_usage_error("install: only root installs the service for another account; "
                              "as %s, the service runs as %s",
                              pw->pw_name, pw->pw_name);
    if (snprintf(out, n, "%s", pw->pw_name) >= (int)n)
        return ic_error("the user name \"%s\" is too long", pw->pw_name);
    return IC_EXIT_OK;
}

/* blocked_dir - the first directory on the way to path (path included, as far as it exists)
 * that the account cannot enter, found by asking the kernel as that account (a forked child
 * takes its uid and groups: modes, groups and ACLs all count). out gets "" when every one can
 * be entered. Returns 0 or an errno value (the check itself failed). */
static int blocked_dir(const struct passwd *pw, const char *path, char *out, size_t n)
{
    out[0] = 0;
    int fds[2];
    if (pipe(fds))
        return errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return e;
    }
    if (pid == 0) {
        close(fds[0]);
        if (initgroups(pw->pw_name, pw->pw_gid) || setgid(pw->pw_gid) || setuid(pw->pw_uid))
            _exit(2);
        char prefix[PATH_MAX];
        size_t len = strlen(path);
        if (len >= sizeof prefix)
            _exit(2);
        for (size_t i = 1; i <= len; i++) {
            if (i < len && path[i] != '/')
                continue;
            memcpy(prefix, path, i);
            prefix[i] = 0;
            struct stat st;
            if (stat(prefix, &st) && errno == ENOENT)
                break; /* made later, by root, inside what was checked */
            if (access(prefix, X_OK)) {
                ssize_t w = write(fds[1], prefix, i);
                _exit(w == (ssize_t)i ? 1 : 2);
            }
        }
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    for (int tries = 0; tries < 64 && got < n - 1; tries++) {
        ssize_t r = read(fds[0], out + got, n - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    out[got] = 0;
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return errno;
    return WIFEXITED(st) && WEXITSTATUS(st) <= 1 ? 0 : EPERM;
}

/* account_reaches - root installs for an account that must reach the state root (and RootDir)
 * after it gives up root: say so now, in one sentence, rather than let the service fail later
 * on a MAPI or registry code. Returns IC_EXIT_OK or IC_EXIT_FAIL (reported). */
static int account_reaches(const char *account, const char *root_dir)
{
    if (geteuid() != 0)
        return IC_EXIT_OK;
    struct passwd *pw = getpwnam(account);
    if (!pw)
        return ic_error("no such user: \"%s\"", account);
    const char *paths[] = {base_state_root(), root_dir};
    for (size_t i = 0; i < 2; i++) {
        if (!paths[i] || paths[i][0] != '/')
            continue;
        char blocked[PATH_MAX];
        int e = blocked_dir(pw, paths[i], blocked, sizeof blocked);
        if (e)
            return ic_error("cannot check whether %s can reach %s: %s", account, paths[i],
                            strerror(e));
        if (blocked[0])
            return ic_error("the service account %s cannot enter %s, so it cannot reach %s: "
                            "move the state (IMS_ROOT, or for make run the checkout) to a "
                            "directory %s can enter, or let it through (chmod o+x %s)",
                            account, blocked, paths[i], account, blocked);
    }
    return IC_EXIT_OK;
}

/* add_domains - --domain: the accepted domains, and the administrator's mailbox (it gets
 * postmaster mail) when it does not exist yet. What is there already is left as it is, so
 * install can run again (make run does, each time). Returns IC_EXIT_OK or IC_EXIT_FAIL. */
static int add_domains(reg_ctx *reg, const ic_install_args *a, const char *account)
{
    if (!a->ndomain)
        return IC_EXIT_OK;
    directory *d;
    int rc = dir_open(reg, &d);
    if (rc)
        return ic_error("cannot open the directory: %s", strerror(rc));
    ims_settings s;
    ims_settings_defaults(&s, reg_ctx_root_dir(reg));
    char text[512];
    dir_err err;
    int status = IC_EXIT_OK;
    for (size_t i = 0; i < a->ndomain && !status; i++) {
        rc = dir_domain_add(d, a->domain[i], &err);
        if (rc == 0)
            printf("Accepted domain %s added.\n", a->domain[i]);
        else if (err.reason != DIR_DOMAIN_EXISTS)
            status = ic_error("cannot add the domain %s: %s", a->domain[i],
                              dir_err_format(&err, text, sizeof text));
    }
    dir_mailbox mb;
    if (!status && dir_mailbox_show(d, s.administrator_mailbox, &mb, &err) == 0) {
        dir_mailbox_free(&mb);
    } else if (!status) {
        char address[DIR_MAX_ADDRESS + 1];
        snprintf(address, sizeof address, "postmaster@%s", a->domain[0]);
        const char *addrs[] = {address};
        char *maildir = NULL;
        if (dir_mailbox_add(d, s.administrator_mailbox, "Postmaster", addrs, 1, &maildir, &err))
            status = ic_error("cannot make the administrator's mailbox %s: %s",
                              s.administrator_mailbox, dir_err_format(&err, text, sizeof text));
        else
            printf("Mailbox %s <%s> added: it receives postmaster mail (%s).\n",
                   s.administrator_mailbox, address, maildir);
        /* As root, the Maildir goes to the account that delivers into it. */
        struct passwd *pw = geteuid() == 0 && !status ? getpwnam(account) : NULL;
        int e = pw ? store_maildir_give(maildir, pw->pw_uid, pw->pw_gid) : 0;
        if (e)
            status = ic_error("the Maildir %s could not be given to the service account %s: %s",
                              maildir, account, strerror(e));
        free(maildir);
    }
    dir_close(d);
    return status;
}

int ic_cmd_install(const ic_install_args *a)
{
    char account[sizeof((ims_settings *)0)->account];
    int status = service_account(a->account, account, sizeof account);
    if (status)
        return status;
    if ((status = account_reaches(account, a->root_dir)))
        return status;
    char image[PATH_MAX];
    int rc = ic_image_default(image, sizeof image);
    if (rc)
        return ic_error("cannot find the imsd next to imsctl: %s", strerror(rc));
    if (access(image, X_OK))
        ic_warn("%s: %s (start will fail until it is there)", image, strerror(errno));
    reg_ctx *reg;
    if ((rc = reg_ctx_open(NULL, &reg)))
        return ic_error("cannot open the registry under %s: %s", base_state_root(),
                        reg_strerror(rc));
    rc = ims_install(reg, image, account, a->nlisten ? a->listen : NULL, a->nlisten, a->root_dir);
    if (rc) {
        reg_ctx_close(reg);
        return ic_error("cannot install the service: %s", reg_strerror(rc));
    }
    printf("%s installed: it runs %s as %s.\n\n", IMS_SERVICE_NAME, image, account);
    rc = print_key(reg, IMS_SERVICE_KEY);
    if (!rc)
        rc = print_key(reg, IMS_PARAMETERS_KEY);
    if (rc) {
        reg_ctx_close(reg);
        return ic_error("cannot read back the service key: %s", reg_strerror(rc));
    }
    status = add_domains(reg, a, account);
    reg_ctx_close(reg);
    if (status)
        return status;
    ic_paths p;
    ic_state st;
    if (!ic_paths_init(&p) && !ic_probe(&p, &st) && st.running)
        printf("%s is running: the new settings apply after `imsctl restart`.\n", IMS_SERVICE_NAME);
    return IC_EXIT_OK;
}

/* --- uninstall ----------------------------------------------------------------------------- */

int ic_cmd_uninstall(void)
{
    ic_paths p;
    ic_state st;
    int rc = ic_paths_init(&p);
    if (rc || (rc = ic_probe(&p, &st)))
        return ic_error("cannot tell whether %s runs (%s): %s", IMS_SERVICE_NAME, p.pid_file,
                        strerror(rc));
    if (st.running)
        return ic_error("%s is running (pid %ld): stop it first (imsctl stop)", IMS_SERVICE_NAME,
                        (long)st.pid);
    reg_ctx *reg;
    if ((rc = reg_ctx_open(NULL, &reg)))
        return ic_error("cannot open the registry under %s: %s", base_state_root(),
                        reg_strerror(rc));
    /* Said afterwards: the working folders and the store are not removed. */
    buf root_dir = BUF_INIT;
    reg_key *par;
    if (reg_key_open_path(reg, "HKLM\\" IMS_PARAMETERS_KEY, REG_READ, &par) == ERROR_SUCCESS) {
        reg_value_get_sz(par, "RootDir", &root_dir);
        reg_key_close(par);
    }
    rc = ims_uninstall(reg);
    reg_ctx_close(reg);
    if (rc == ERROR_FILE_NOT_FOUND) {
        buf_free(&root_dir);
        printf("%s is not installed.\n", IMS_SERVICE_NAME);
        return IC_EXIT_OK;
    }
    if (rc) {
        buf_free(&root_dir);
        return ic_error("cannot uninstall the service: %s", reg_strerror(rc));
    }
    const char *rd = buf_cstr(&root_dir);
    printf("%s uninstalled.", IMS_SERVICE_NAME);
    if (rd && *rd)
        printf(" Its working folders (%s) and message store are left in place.", rd);
    printf("\n");
    buf_free(&root_dir);
    return IC_EXIT_OK;
}
