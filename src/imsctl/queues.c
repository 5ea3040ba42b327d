/* queues.c - `imsctl queues`: the service's four queues (the original's Queues page) listed,
 * filtered and summed up by destination domain, and the actions on one message or a filtered
 * set (hold, release, retry, delete with or without an NDR), through the control socket. */
#include "imsctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/base.h"

#define QC_FILTER_WORDS 16    /* filter words a request carries at most */
#define QC_WORD_MAX 1100      /* bytes of one filter word ("sender=" and an address) */
#define QC_BATCH 512          /* queue ids one action request names */
#define QC_FIELDS 9           /* fields of a listing line at most (an R line has 9) */
#define QC_DOMAINS_MAX 100000 /* destinations the summary keeps */

static const char queues_usage[] =
    "usage: imsctl queues [FILTER...] [--json | --summary]\n"
    "       imsctl queues hold|release|retry|delete|delete-ndr (QUEUE-ID... | FILTER... | "
    "--all)\n"
    "FILTER: --queue in|mts-in|mts-out|out (repeatable), --id QUEUE-ID, --sender ADDR ('<>'\n"
    "        the null sender), --recipient ADDR, --domain DOMAIN, --older-than AGE (N, Ns,\n"
    "        Nm, Nh, Nd)\n";

static const char *const queue_titles[][2] = {
    {"In", "inbound messages awaiting conversion"},
    {"MTS-IN", "inbound messages awaiting delivery"},
    {"MTS-OUT", "outbound messages awaiting conversion"},
    {"Out", "outbound messages awaiting delivery"},
};

typedef struct qc_args {
    char words[QC_FILTER_WORDS][QC_WORD_MAX];
    int nwords;
    bool json, summary, all;
    const char *action;
    char **ids;
    int nids;
} qc_args;

static int usage_error(const char *fmt, const char *what)
{
    fputs("imsctl: ", stderr);
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    fputs(queues_usage, stderr);
    return IC_EXIT_USAGE;
}

/* parse_age - "90", "90s", "15m", "2h", "3d" into seconds. */
static int parse_age(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return EINVAL;
    unsigned long long mul = 1;
    if (*end == 's')
        end++;
    else if (*end == 'm')
        mul = 60, end++;
    else if (*end == 'h')
        mul = 3600, end++;
    else if (*end == 'd')
        mul = 86400, end++;
    if (*end || v > UINT64_MAX / mul)
        return EINVAL;
    *out = v * mul;
    return 0;
}

static int add_word(qc_args *a, const char *key, const char *value)
{
    if (a->nwords == QC_FILTER_WORDS)
        return usage_error("%s", "too many filters");
    int n = snprintf(a->words[a->nwords], QC_WORD_MAX, "%s=%s", key, value);
    if (n < 0 || n >= QC_WORD_MAX)
        return usage_error("the value of --%s is too long", key);
    a->nwords++;
    return 0;
}

static int parse(int argc, char **argv, qc_args *a)
{
    static const char *const actions[] = {"hold", "release", "retry", "delete", "delete-ndr"};
    int i = 0;
    if (argc > 0)
        for (size_t k = 0; k < sizeof actions / sizeof actions[0]; k++)
            if (!strcmp(argv[0], actions[k]))
                a->action = actions[k], i = 1;
    a->ids = calloc((size_t)argc + 1, sizeof *a->ids);
    if (!a->ids)
        return ic_error("out of memory");
    for (; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        static const struct {
            const char *opt, *key;
        } valued[] = {{"--queue", "queue"},    {"--id", "id"},         {"--sender", "sender"},
                      {"--recipient", "rcpt"}, {"--domain", "domain"}, {"--older-than", "age"}};
        bool done = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !done; k++) {
            if (strcmp(o, valued[k].opt))
                continue;
            done = true;
            if (!v || !*v)
                return usage_error("%s needs a value", o);
            i++;
            int rc;
            if (!strcmp(valued[k].key, "age")) {
                unsigned long long age;
                if (parse_age(v, &age))
                    return usage_error("--older-than wants N, Ns, Nm, Nh or Nd, not \"%s\"", v);
                char num[32];
                snprintf(num, sizeof num, "%llu", age);
                rc = add_word(a, "age", num);
            } else if (!strcmp(valued[k].key, "queue")) {
                if (strcasecmp(v, "in") && strcasecmp(v, "mts-in") && strcasecmp(v, "mts-out") &&
                    strcasecmp(v, "out"))
                    return usage_error("--queue wants in, mts-in, mts-out or out, not \"%s\"", v);
                rc = add_word(a, "queue", v);
            } else {
                rc = add_word(a, valued[k].key, v);
            }
            if (rc)
                return rc;
        }
        if (done)
            continue;
        if (!strcmp(o, "--json"))
            a->json = true;
        else if (!strcmp(o, "--summary"))
            a->summary = true;
        else if (!strcmp(o, "--all") && a->action)
            a->all = true;
        else if (o[0] == '-')
            return usage_error("unknown option \"%s\"", o);
        else if (a->action)
            a->ids[a->nids++] = argv[i];
        else
            return usage_error("unexpected argument \"%s\" (an action comes first)", o);
    }
    if (a->json && a->summary)
        return usage_error("%s", "--json and --summary do not go together");
    if (a->action && (a->json || a->summary))
        return usage_error("%s", "an action prints its results as text");
    if (a->action && !a->nids && !a->nwords && !a->all)
        return usage_error("%s needs queue ids, filters, or --all", a->action);
    if (a->action && a->nids && (a->nwords || a->all))
        return usage_error("%s", "give queue ids or filters, not both");
    return 0;
}

/* split - the tab-separated fields of line (changed in place) into f; their count. */
static size_t split(char *line, char **f, size_t max)
{
    size_t n = 0;
    while (n < max) {
        f[n++] = line;
        char *tab = strchr(line, '\t');
        if (!tab)
            break;
        *tab = 0;
        line = tab + 1;
    }
    return n;
}

static void when_text(long long t, char *out, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !localtime_r(&tt, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(out, n, "-");
}

static void size_text(unsigned long long b, char *out, size_t n)
{
    if (b < 1024)
        snprintf(out, n, "%llu B", b);
    else if (b < 1024 * 1024)
        snprintf(out, n, "%.1f KiB", (double)b / 1024);
    else
        snprintf(out, n, "%.1f MiB", (double)b / (1024 * 1024));
}

static void age_text(long long secs, char *out, size_t n)
{
    if (secs < 0)
        secs = 0;
    if (secs < 120)
        snprintf(out, n, "%llds", secs);
    else if (secs < 7200)
        snprintf(out, n, "%lldm", secs / 60);
    else if (secs < 172800)
        snprintf(out, n, "%lldh", secs / 3600);
    else
        snprintf(out, n, "%lldd", secs / 86400);
}

/* --- the listing -------------------------------------------------------------------------- */

typedef struct qc_dom {
    char *name;
    unsigned long long rcpts, msgs;
    long long oldest;
    char *last_msg; /* the id of the message last counted (messages counted once) */
} qc_dom;

typedef struct qc_list {
    bool json, summary;
    size_t count[IMS_QUEUE_KINDS], rcpts[IMS_QUEUE_KINDS];
    int cur; /* the queue of the current message */
    bool first_json;
    char cur_id[256];
    long long cur_arrival;
    char **ids; /* action mode: the ids listed */
    size_t nids, capids;
    bool collect;
    qc_dom *doms;
    size_t ndoms, capdoms;
    bool bad;
} qc_list;

static int queue_index(const char *name)
{
    for (int i = 0; i < IMS_QUEUE_KINDS; i++)
        if (!strcmp(queue_titles[i][0], name))
            return i;
    return -1;
}

static void dom_count(qc_list *l, const char *addr, const char *state)
{
    if (!strcmp(state, "done") || !strcmp(state, "failed"))
        return;
    const char *at = strrchr(addr, '@');
    const char *d = at ? at + 1 : "(local)";
    qc_dom *x = NULL;
    for (size_t i = 0; i < l->ndoms && !x; i++)
        if (!strcasecmp(l->doms[i].name, d))
            x = &l->doms[i];
    if (!x) {
        if (l->ndoms == QC_DOMAINS_MAX)
            return;
        if (l->ndoms == l->capdoms) {
            size_t cap = l->capdoms ? l->capdoms * 2 : 64;
            qc_dom *v = realloc(l->doms, cap * sizeof *v);
            if (!v)
                return;
            l->doms = v;
            l->capdoms = cap;
        }
        x = &l->doms[l->ndoms++];
        memset(x, 0, sizeof *x);
        x->name = strdup(d);
        x->oldest = l->cur_arrival;
        if (!x->name) {
            l->ndoms--;
            return;
        }
    }
    x->rcpts++;
    if (!x->last_msg || strcmp(x->last_msg, l->cur_id)) {
        free(x->last_msg);
        x->last_msg = strdup(l->cur_id);
        x->msgs++;
    }
    if (l->cur_arrival < x->oldest)
        x->oldest = l->cur_arrival;
}

static int list_line(void *arg, const char *line, size_t len)
{
    qc_list *l = arg;
    if (l->json) {
        printf("%s%.*s", l->first_json ? "\n " : ",\n ", (int)len, line);
        l->first_json = false;
        return 0;
    }
    char *copy = strndup(line, len), *f[QC_FIELDS];
    if (!copy)
        return ENOMEM;
    size_t n = split(copy, f, QC_FIELDS);
    if (f[0][0] == 'M' && n == 7) {
        int q = queue_index(f[1]);
        if (q < 0) {
            l->bad = true;
            free(copy);
            return 0;
        }
        l->count[q]++;
        snprintf(l->cur_id, sizeof l->cur_id, "%s", f[2]);
        l->cur_arrival = atoll(f[4]);
        if (l->collect) {
            if (l->nids == l->capids) {
                size_t cap = l->capids ? l->capids * 2 : 256;
                char **v = realloc(l->ids, cap * sizeof *v);
                if (!v) {
                    free(copy);
                    return ENOMEM;
                }
                l->ids = v;
                l->capids = cap;
            }
            if (!(l->ids[l->nids] = strdup(f[2]))) {
                free(copy);
                return ENOMEM;
            }
            l->nids++;
        } else if (!l->summary) {
            if (q != l->cur)
                printf("%s== %s: %s ==\n", l->cur >= 0 ? "\n" : "", queue_titles[q][0],
                       queue_titles[q][1]);
            char when[32], size[32];
            when_text(l->cur_arrival, when, sizeof when);
            size_text(strtoull(f[5], NULL, 10), size, sizeof size);
            printf("%-16s  %s  %9s  from <%s>%s\n", f[2], when, size, f[3],
                   atoi(f[6]) ? "  [held]" : "");
        }
        l->cur = q;
    } else if (f[0][0] == 'R' && n == 9 && l->cur >= 0) {
        l->rcpts[l->cur]++;
        if (l->summary && l->cur == IMS_QUEUE_OUT)
            dom_count(l, f[1], f[4]);
        if (!l->summary && !l->collect) {
            char next[48] = "";
            long long nt = atoll(f[6]);
            if (nt > 0) {
                char w[32];
                when_text(nt, w, sizeof w);
                snprintf(next, sizeof next, "  next %s", w);
            }
            unsigned att = (unsigned)strtoul(f[5], NULL, 10);
            char attempts[32] = "";
            if (att)
                snprintf(attempts, sizeof attempts, "  attempts %u", att);
            printf("    %s  %s%s%s\n", f[1], f[4], attempts, next);
            if (f[8][0] || f[7][0])
                printf("        %s%s%s\n", f[7], f[7][0] ? " " : "", f[8]);
        }
    } else {
        l->bad = true;
    }
    free(copy);
    return 0;
}

static int dom_cmp(const void *a, const void *b)
{
    const qc_dom *x = a, *y = b;
    if (x->rcpts != y->rcpts)
        return x->rcpts < y->rcpts ? 1 : -1;
    return strcasecmp(x->name, y->name);
}

static void print_summary(qc_list *l)
{
    qsort(l->doms, l->ndoms, sizeof *l->doms, dom_cmp);
    printf("%-40s %10s %10s %8s\n", "Destination domain (Out)", "Recipients", "Messages", "Oldest");
    time_t now = time(NULL);
    for (size_t i = 0; i < l->ndoms; i++) {
        char age[32];
        age_text((long long)now - l->doms[i].oldest, age, sizeof age);
        printf("%-40s %10llu %10llu %8s\n", l->doms[i].name, l->doms[i].rcpts, l->doms[i].msgs,
               age);
    }
    if (!l->ndoms)
        printf("(nothing waits in Out)\n");
}

static void list_free(qc_list *l)
{
    for (size_t i = 0; i < l->nids; i++)
        free(l->ids[i]);
    free(l->ids);
    for (size_t i = 0; i < l->ndoms; i++) {
        free(l->doms[i].name);
        free(l->doms[i].last_msg);
    }
    free(l->doms);
}

/* run_list - the queues request with the filter words (and format=tsv unless json). */
static int run_list(const ic_paths *p, const qc_args *a, qc_list *l, char *err, size_t errn)
{
    const char *req[QC_FILTER_WORDS + 2];
    int n = 0;
    req[n++] = "queues";
    for (int i = 0; i < a->nwords; i++)
        req[n++] = a->words[i];
    if (!l->json)
        req[n++] = "format=tsv";
    return ic_control_call(p, n, req, list_line, l, err, errn);
}

static int service_error(int rc, const char *err)
{
    if (ic_control_not_running(rc)) {
        fprintf(stderr, "imsctl: the service is not running\n");
        return IC_EXIT_STOPPED;
    }
    return ic_error("queues: %s", err);
}

/* --- actions ------------------------------------------------------------------------------ */

typedef struct qc_act {
    size_t ok, failed;
} qc_act;

static int act_line(void *arg, const char *line, size_t len)
{
    qc_act *x = arg;
    char *copy = strndup(line, len), *f[3];
    if (!copy)
        return ENOMEM;
    if (split(copy, f, 3) == 3) {
        bool ok = !strcmp(f[1], "ok");
        printf("%s: %s%s\n", f[0], ok ? "" : "not done: ", f[2]);
        if (ok)
            x->ok++;
        else
            x->failed++;
    }
    free(copy);
    return 0;
}

static int run_actions(const ic_paths *p, const char *action, char **ids, size_t nids)
{
    qc_act x = {0};
    char err[512];
    const char *req[QC_BATCH + 2];
    for (size_t at = 0; at < nids;) {
        int n = 0;
        req[n++] = "queue-action";
        req[n++] = action;
        while (at < nids && n < QC_BATCH + 2)
            req[n++] = ids[at++];
        int rc = ic_control_call(p, n, req, act_line, &x, err, sizeof err);
        if (rc)
            return service_error(rc, err);
    }
    if (nids > 1)
        printf("%zu done, %zu not done\n", x.ok, x.failed);
    return x.failed ? IC_EXIT_FAIL : IC_EXIT_OK;
}

int ic_cmd_queues(int argc, char **argv)
{
    qc_args *a = calloc(1, sizeof *a);
    if (!a)
        return ic_error("out of memory");
    int rc = parse(argc, argv, a);
    if (rc) {
        free(a->ids);
        free(a);
        return rc;
    }
    ic_paths p;
    if (ic_paths_init(&p)) {
        free(a->ids);
        free(a);
        return ic_error("the state root's path is too long");
    }
    qc_list l = {.json = a->json, .summary = a->summary, .cur = -1, .first_json = true};
    char err[512];
    int status = IC_EXIT_OK;
    if (a->action && a->nids) {
        status = run_actions(&p, a->action, a->ids, (size_t)a->nids);
    } else if (a->action) {
        /* the filtered set: listed first, then acted on by id */
        l.collect = true;
        rc = run_list(&p, a, &l, err, sizeof err);
        if (rc)
            status = service_error(rc, err);
        else if (!l.nids)
            printf("no message matches\n");
        else
            status = run_actions(&p, a->action, l.ids, l.nids);
    } else {
        if (l.json)
            printf("[");
        rc = run_list(&p, a, &l, err, sizeof err);
        if (l.json)
            printf("%s]\n", l.first_json ? "" : "\n");
        if (rc) {
            status = service_error(rc, err);
        } else if (l.bad) {
            status = ic_error("queues: the service's answer has a malformed line");
        } else if (l.summary) {
            print_summary(&l);
        } else if (!l.json) {
            size_t total = 0;
            for (int i = 0; i < IMS_QUEUE_KINDS; i++)
                total += l.count[i];
            printf("%s", total ? "\n" : "");
            for (int i = 0; i < IMS_QUEUE_KINDS; i++)
                printf("%s%s %zu message%s (%zu recipient%s)", i ? ", " : "", queue_titles[i][0],
                       l.count[i], l.count[i] == 1 ? "" : "s", l.rcpts[i],
                       l.rcpts[i] == 1 ? "" : "s");
            printf("\n");
        }
    }
    list_free(&l);
    free(a->ids);
    free(a);
    return status;
}
