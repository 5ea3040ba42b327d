/* main.c - ims-sendmail: the sendmail command line Unix programs and cron expect, writing the
 * message into the service's Pickup directory (docs/man/ims-sendmail.8). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "base/base.h"
#include "ims/ims.h"
#include "reg/reg.h"
#include "smtp/smtp.h"

#define SM_READ_CHUNK 65536
#define SM_MAX_ARGS_RCPTS 4096 /* recipients on the command line */

typedef struct sm_opts {
    bool extract;         /* -t */
    bool dot_ok;          /* -i / -oi: a lone "." does not end input */
    bool smtp;            /* -bs */
    bool verbose;         /* -v */
    const char *from;     /* -f */
    const char *fullname; /* -F */
} sm_opts;

typedef struct sm_ctx {
    char pickup[4000];
    char domain[256];
    char user[64];
    uint64_t max_size;
} sm_ctx;

static void die(int code, const char *fmt, const char *arg)
{
    fprintf(stderr, "ims-sendmail: ");
    fprintf(stderr, fmt, arg ? arg : "");
    fputc('\n', stderr);
    exit(code);
}

static void quiet_log(void *arg, const ims_event *ev)
{
    (void)arg;
    (void)ev;
}

/* load - RootDir, SiteDomain and InboundSizeLimit from the registry under IMS_ROOT. */
static void load(sm_ctx *c)
{
    reg_ctx *reg;
    if (reg_ctx_open(NULL, &reg))
        die(EX_TEMPFAIL, "cannot open the registry under IMS_ROOT%s", NULL);
    ims_log log = {.fn = quiet_log};
    ims_settings *s = calloc(1, sizeof *s);
    if (!s)
        die(EX_OSERR, "out of memory%s", NULL);
    if (ims_settings_load(reg, &log, s) != IMS_OK)
        die(EX_TEMPFAIL, "cannot read the service's settings%s", NULL);
    if (snprintf(c->pickup, sizeof c->pickup, "%s/Pickup", s->root_dir) >= (int)sizeof c->pickup)
        die(EX_CONFIG, "RootDir is too long%s", NULL);
    snprintf(c->domain, sizeof c->domain, "%s", s->site_domain[0] ? s->site_domain : "localhost");
    c->max_size = s->inbound_size_limit ? s->inbound_size_limit : IMS_PICKUP_SIZE_MAX;
    free(s);
    reg_ctx_close(reg);
    struct passwd *pw = getpwuid(getuid());
    if (!pw)
        die(EX_NOUSER, "the calling user (uid %s) has no name", NULL);
    snprintf(c->user, sizeof c->user, "%s", pw->pw_name);
}

/* address - a into out, "@domain" added to a bare local part; false when it is no address. */
static bool address(const sm_ctx *c, const char *a, char *out, size_t n)
{
    if (strchr(a, '@') || !strcasecmp(a, "postmaster"))
        snprintf(out, n, "%s", a);
    else
        snprintf(out, n, "%s@%s", a, c->domain);
    char tmp[SMTP_PATH_MAX + 3];
    int k = snprintf(tmp, sizeof tmp, "<%s>", out);
    smtp_path p;
    return k > 0 && (size_t)k < sizeof tmp &&
           smtp_parse_path(tmp, (size_t)k, SMTP_PATH_FORWARD, &p, NULL) == SMTP_R_NONE;
}

/* read_input - stdin into b (bounded); a lone "." line ends it unless dot_ok. */
static void read_input(const sm_ctx *c, bool dot_ok, buf *b)
{
    char line[SM_READ_CHUNK];
    bool bol = true;
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        if (bol && !dot_ok &&
            (!strcmp(line, ".\n") || !strcmp(line, ".\r\n") || !strcmp(line, ".")))
            break;
        bol = n && line[n - 1] == '\n';
        if (b->len + n > c->max_size)
            die(EX_DATAERR, "the message is over the size limit%s", NULL);
        if (buf_add(b, line, n))
            die(EX_OSERR, "out of memory%s", NULL);
    }
    if (ferror(stdin))
        die(EX_NOINPUT, "cannot read the message: %s", strerror(errno));
}

static void hex_name(char *out, size_t n)
{
    uint8_t r[16];
    if (base_random(r, sizeof r))
        die(EX_OSERR, "no random bytes%s", NULL);
    for (size_t i = 0; i < sizeof r && 2 * i + 2 < n; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* drop - the envelope and msg[0..n) (X-Sender/X-Receiver fields cut) into the Pickup
 * directory: written as .<random>, synced, renamed to <random>. 0 or an EX_ code. */
static int drop(const sm_ctx *c, const char *sender, char **rcpts, size_t nrcpt,
                const char *fullname, const char *msg, size_t n, const ims_dropdir_msg *hm,
                const char **why)
{
    buf out = BUF_INIT;
    int rc = buf_printf(&out, "X-Sender: <%s>\n", sender);
    for (size_t i = 0; !rc && i < nrcpt; i++)
        rc = buf_printf(&out, "X-Receiver: <%s>\n", rcpts[i]);
    if (!rc && !hm->has_from && fullname && *sender) {
        char clean[256];
        size_t k = 0;
        for (; fullname[k] && k + 1 < sizeof clean; k++)
            clean[k] = fullname[k] == '"' || fullname[k] == '\\' || (unsigned char)fullname[k] < 32
                           ? ' '
                           : fullname[k];
        clean[k] = 0;
        rc = buf_printf(&out, "From: \"%s\" <%s>\n", clean, sender);
    }
    size_t from = 0;
    for (size_t k = 0; !rc && k < hm->ncut; k++) {
        rc = buf_add(&out, msg + from, hm->cuts[k].off - from);
        from = hm->cuts[k].off + hm->cuts[k].len;
    }
    if (!rc)
        rc = buf_add(&out, msg + from, n - from);
    if (rc) {
        *why = "out of memory";
        return EX_OSERR;
    }
    char tmp[PATH_MAX + 64], fin[PATH_MAX + 64], name[40];
    hex_name(name, sizeof name);
    snprintf(tmp, sizeof tmp, "%.4000s/.%s", c->pickup, name);
    hex_name(name, sizeof name);
    snprintf(fin, sizeof fin, "%.4000s/%s", c->pickup, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, IMS_DROPDIR_FILE_MODE);
    if (fd < 0) {
        int e = errno;
        buf_free(&out);
        *why = strerror(e);
        return e == EACCES || e == EPERM ? EX_NOPERM : e == ENOENT ? EX_UNAVAILABLE : EX_CANTCREAT;
    }
    /* The mode the service needs whatever the umask: the group is the service's (setgid). */
    int e = fchmod(fd, IMS_DROPDIR_FILE_MODE) ? errno : 0;
    if (!e)
        e = base_write_all(fd, out.data, out.len);
    if (!e && fsync(fd))
        e = errno;
    if (close(fd) && !e)
        e = errno;
    if (!e && rename(tmp, fin))
        e = errno;
    buf_free(&out);
    if (e) {
        unlink(tmp);
        *why = strerror(e);
        return EX_TEMPFAIL;
    }
    return 0;
}

/* submit - one message: its recipients from args (and with extract from its header). */
static int submit(const sm_ctx *c, const sm_opts *o, char **args, size_t nargs, const char *msg,
                  size_t n, const char **why)
{
    char sender[SMTP_PATH_MAX + 1];
    if (o->from && !*o->from)
        sender[0] = 0;
    else if (o->from && !strcmp(o->from, "<>"))
        sender[0] = 0;
    else if (!address(c, o->from ? o->from : c->user, sender, sizeof sender)) {
        *why = "the sender is no address";
        return EX_DATAERR;
    }
    ims_dropdir_msg hm;
    int rc =
        ims_dropdir_parse(msg, n, true, IMS_DROPDIR_NO_ENVELOPE | IMS_DROPDIR_NO_HEADERS, &hm, why);
    if (rc) {
        return rc == ENOMEM ? EX_OSERR : EX_DATAERR;
    }
    size_t total = nargs + (o->extract ? hm.nrcpt : 0);
    char **rcpts = calloc(total ? total : 1, sizeof *rcpts);
    size_t nr = 0;
    int ex = rcpts ? 0 : EX_OSERR;
    for (size_t i = 0; !ex && i < total; i++) {
        const char *a = i < nargs ? args[i] : hm.rcpts[i - nargs].address;
        char q[SMTP_PATH_MAX + 1];
        if (!address(c, a, q, sizeof q)) {
            *why = "a recipient is no address";
            ex = EX_NOUSER;
        } else if (!(rcpts[nr++] = strdup(q))) {
            ex = EX_OSERR;
        }
    }
    if (!ex && !nr) {
        *why = "no recipients";
        ex = EX_USAGE;
    }
    if (!ex)
        ex = drop(c, sender, rcpts, nr, o->fullname, msg, n, &hm, why);
    for (size_t i = 0; i < nr; i++)
        free(rcpts[i]);
    free(rcpts);
    ims_dropdir_msg_free(&hm);
    return ex;
}

/* --- -bs: SMTP on standard input and output ------------------------------------------- */

typedef struct bs_state {
    const sm_ctx *c;
    const sm_opts *o;
    buf data;
    int result;
} bs_state;

static bool bs_local(void *arg, const char *domain)
{
    (void)arg;
    (void)domain;
    return true; /* the service routes: every domain is taken here */
}

static int bs_begin(void *arg, const smtp_envelope *env)
{
    (void)env;
    ((bs_state *)arg)->data.len = 0;
    return 0;
}

static int bs_chunk(void *arg, const char *p, size_t n)
{
    return buf_add(&((bs_state *)arg)->data, p, n);
}

static void bs_end(void *arg, const smtp_envelope *env);
static smtp_session *bs_session;

static void bs_end(void *arg, const smtp_envelope *env)
{
    bs_state *st = arg;
    char **args = calloc(env->nrcpt, sizeof *args);
    bool ok = args != NULL;
    for (size_t i = 0; ok && i < env->nrcpt; i++)
        args[i] = (char *)env->rcpt[i].path.mailbox;
    sm_opts o = *st->o;
    o.extract = false;
    o.from = env->from->mailbox[0] ? env->from->mailbox : "<>";
    const char *why = NULL;
    int ex =
        ok ? submit(st->c, &o, args, env->nrcpt, (const char *)st->data.data, st->data.len, &why)
           : EX_OSERR;
    free(args);
    if (ex)
        st->result = ex;
    smtp_session_data_done(bs_session, ex == 0, NULL);
}

static int run_bs(const sm_ctx *c, const sm_opts *o)
{
    bs_state st = {.c = c, .o = o, .data = BUF_INIT};
    smtp_config cfg;
    smtp_config_defaults(&cfg);
    cfg.fqdn = c->domain;
    cfg.max_size = c->max_size;
    cfg.is_local = bs_local;
    smtp_callbacks cb = {
        .arg = &st, .data_begin = bs_begin, .data_chunk = bs_chunk, .data_end = bs_end};
    if (smtp_session_new(&cfg, &cb, NULL, NULL, &bs_session))
        die(EX_SOFTWARE, "cannot start the SMTP session%s", NULL);
    char in[4096];
    for (;;) {
        size_t len;
        const char *out = smtp_session_output(bs_session, &len);
        if (out && len) {
            fwrite(out, 1, len, stdout);
            fflush(stdout);
            smtp_session_output_drain(bs_session, len);
        }
        if (smtp_session_want_close(bs_session))
            break;
        ssize_t r = read(STDIN_FILENO, in, sizeof in);
        if (r <= 0)
            break;
        size_t used = 0, off = 0;
        while (off < (size_t)r) {
            if (smtp_session_input(bs_session, in + off, (size_t)r - off, &used))
                die(EX_OSERR, "out of memory%s", NULL);
            off += used;
            if (smtp_session_want_close(bs_session))
                break;
            const char *o2 = smtp_session_output(bs_session, &len);
            if (o2 && len) {
                fwrite(o2, 1, len, stdout);
                smtp_session_output_drain(bs_session, len);
            }
        }
    }
    fflush(stdout);
    smtp_session_free(bs_session);
    buf_free(&st.data);
    return st.result;
}

static void usage(void)
{
    fprintf(stderr, "usage: ims-sendmail [-t] [-i] [-f sender] [-F name] [-bm | -bs] [-v] "
                    "[-oX...] [--] [recipient ...]\n");
    exit(EX_USAGE);
}

int main(int argc, char **argv)
{
    sm_opts o = {0};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (a[0] != '-' || !a[1])
            break;
        if (!strcmp(a, "-t"))
            o.extract = true;
        else if (!strcmp(a, "-i") || !strcmp(a, "-oi"))
            o.dot_ok = true;
        else if (!strcmp(a, "-bm"))
            o.smtp = false;
        else if (!strcmp(a, "-bs"))
            o.smtp = true;
        else if (!strcmp(a, "-v"))
            o.verbose = true;
        else if (!strncmp(a, "-f", 2) || !strncmp(a, "-F", 2) || !strncmp(a, "-r", 2)) {
            const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v)
                usage();
            if (a[1] == 'F')
                o.fullname = v;
            else
                o.from = v;
        } else if (!strncmp(a, "-o", 2) || !strncmp(a, "-B", 2) || !strcmp(a, "-n") ||
                   !strcmp(a, "-m") || !strncmp(a, "-N", 2) || !strncmp(a, "-R", 2) ||
                   !strncmp(a, "-V", 2)) {
            /* Options other sendmails take that change nothing here: ignored quietly.
             * Those with a separate value (-N, -R, -V, -B) take it along. */
            if (!a[2] && (a[1] == 'N' || a[1] == 'R' || a[1] == 'V' || a[1] == 'B') && i + 1 < argc)
                i++;
        } else {
            fprintf(stderr, "ims-sendmail: unknown option %s\n", a);
            usage();
        }
    }
    sm_ctx c = {0};
    load(&c);
    if (o.smtp)
        return run_bs(&c, &o);
    buf msg = BUF_INIT;
    read_input(&c, o.dot_ok, &msg);
    const char *why = NULL;
    int ex = submit(&c, &o, argv + i, (size_t)(argc - i), (const char *)msg.data, msg.len, &why);
    buf_free(&msg);
    if (ex)
        fprintf(stderr, "ims-sendmail: %s\n", why ? why : "the message was not submitted");
    else if (o.verbose)
        fprintf(stderr, "ims-sendmail: the message is in %s\n", c.pickup);
    return ex;
}
