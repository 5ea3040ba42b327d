/* queues.c - the four queues as the administrator sees them (the original's Queues page):
 * listings as JSON lines, and the actions (hold, release, retry, delete with or without an
 * NDR), for the control socket's `queues` and `queue-action` and for the admin page. */
#include "imsd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/base.h"

#define QS_TEXT_MAX 256 /* bytes of an action's answer line */

struct imsd_queues {
    imsd_server *srv;
    char root_dir[PATH_MAX];
    char gateway[PATH_MAX];
};

struct imsd_queue_walk {
    imsd_queues *qs;
    imsd_queue_filter f;
    int stage; /* an ims_queue_kind, IMS_QUEUE_KINDS: done */
    bool tsv;  /* imsctl's tab-separated lines instead of JSON */
    ims_queue_dir *dir;
    ims_outq_iter *it;
    time_t now;
};

/* --- filters ---------------------------------------------------------------------------- */

int imsd_queue_filter_parse(imsd_queue_filter *f, int n, char **words, const char **bad)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < n; i++) {
        char *w = words[i], *eq = strchr(w, '=');
        *bad = w;
        if (!eq || eq == w)
            return EINVAL;
        size_t klen = (size_t)(eq - w);
        const char *v = eq + 1;
        if (klen == 5 && !strncmp(w, "queue", 5)) {
            ims_queue_kind k;
            if (ims_queue_parse(v, &k))
                return EINVAL;
            f->queues |= 1u << k;
        } else if (klen == 2 && !strncmp(w, "id", 2) && *v) {
            f->id = v;
        } else if (klen == 6 && !strncmp(w, "sender", 6) && *v) {
            f->sender = v;
        } else if (klen == 4 && !strncmp(w, "rcpt", 4) && *v) {
            f->rcpt = v;
        } else if (klen == 6 && !strncmp(w, "domain", 6) && *v) {
            f->domain = v;
        } else if (klen == 3 && !strncmp(w, "age", 3) && *v) {
            char *end;
            errno = 0;
            unsigned long long a = strtoull(v, &end, 10);
            if (errno || *end || *v == '-')
                return EINVAL;
            f->min_age = a;
        } else {
            return EINVAL;
        }
    }
    *bad = NULL;
    return 0;
}

static bool rcpt_matches(const imsd_queue_filter *f, const ims_queue_rcpt *r)
{
    if (f->rcpt && (!r->address || strcasecmp(r->address, f->rcpt)))
        return false;
    if (f->domain) {
        const char *at = r->address ? strrchr(r->address, '@') : NULL;
        if (!at || strcasecmp(at + 1, f->domain))
            return false;
    }
    return true;
}

static bool msg_matches(const imsd_queue_filter *f, const ims_queue_msg *m, time_t now)
{
    if (f->id && strcasecmp(f->id, m->id))
        return false;
    if (f->sender) {
        const char *want = strcmp(f->sender, "<>") ? f->sender : "";
        if (strcasecmp(want, m->sender ? m->sender : ""))
            return false;
    }
    if (f->min_age && (now < m->arrival || (uint64_t)(now - m->arrival) < f->min_age))
        return false;
    if (!f->rcpt && !f->domain)
        return true;
    for (size_t i = 0; i < m->nrcpt; i++)
        if (rcpt_matches(f, &m->rcpts[i]))
            return true;
    return false;
}

/* --- JSON ------------------------------------------------------------------------------- */

static const char *state_name(ims_queue_rcpt_state st)
{
    switch (st) {
    case IMS_QRCPT_WAITING:
        return "waiting";
    case IMS_QRCPT_SENDING:
        return "sending";
    case IMS_QRCPT_HELD:
        return "held";
    case IMS_QRCPT_DONE:
        return "done";
    case IMS_QRCPT_FAILED:
        return "failed";
    }
    return "waiting";
}

static const char *route_name(ims_route_kind k)
{
    return k == IMS_ROUTE_LOCAL ? "mailbox" : k == IMS_ROUTE_SMARTHOST ? "smarthost" : "dns";
}

static void msg_json(buf *b, ims_queue_kind kind, const ims_queue_msg *m)
{
    buf_printf(b, "{\"queue\":\"%s\",\"id\":", ims_queue_name(kind));
    ims_json_string(b, m->id);
    buf_add(b, ",\"sender\":", 10);
    ims_json_string(b, m->sender);
    buf_printf(b, ",\"arrival\":%lld,\"size\":%llu,\"held\":%s,\"recipients\":[",
               (long long)m->arrival, (unsigned long long)m->size, m->held ? "true" : "false");
    for (size_t i = 0; i < m->nrcpt; i++) {
        const ims_queue_rcpt *r = &m->rcpts[i];
        buf_add(b, i ? ",{\"address\":" : "{\"address\":", i ? 12 : 11);
        ims_json_string(b, r->address);
        buf_printf(b, ",\"route\":\"%s\",\"destination\":", route_name(r->route));
        ims_json_string(b, r->dest);
        buf_printf(b, ",\"state\":\"%s\",\"attempts\":%u,\"next_try\":%lld,\"remote\":",
                   state_name(r->state), r->attempts, (long long)r->next_try);
        size_t rl = r->last ? r->remote_len : 0;
        ims_json_string_n(b, r->last, rl);
        buf_add(b, ",\"reply\":", 9);
        const char *reply = r->last ? r->last + rl + (r->last[rl] == '|') : "";
        ims_json_string(b, reply);
        buf_add(b, "}", 1);
    }
    buf_add(b, "]}\n", 3);
}

/* tsv_field - a tab-separated field: tabs, line ends and other control bytes become spaces. */
static void tsv_field(buf *b, const char *s, size_t n)
{
    buf_add(b, "\t", 1);
    for (size_t i = 0; s && i < n; i++) {
        char c = s[i];
        if ((unsigned char)c < 0x20 || c == 0x7f)
            c = ' ';
        buf_add(b, &c, 1);
    }
}

/* msg_tsv - the listing for imsctl: "M" queue id sender arrival size held, then one "R" line
 * per recipient: address route destination state attempts next_try remote reply. */
static void msg_tsv(buf *b, ims_queue_kind kind, const ims_queue_msg *m)
{
    buf_add(b, "M", 1);
    tsv_field(b, ims_queue_name(kind), strlen(ims_queue_name(kind)));
    tsv_field(b, m->id, strlen(m->id));
    tsv_field(b, m->sender, m->sender ? strlen(m->sender) : 0);
    buf_printf(b, "\t%lld\t%llu\t%d\n", (long long)m->arrival, (unsigned long long)m->size,
               m->held ? 1 : 0);
    for (size_t i = 0; i < m->nrcpt; i++) {
        const ims_queue_rcpt *r = &m->rcpts[i];
        buf_add(b, "R", 1);
        tsv_field(b, r->address, r->address ? strlen(r->address) : 0);
        tsv_field(b, route_name(r->route), strlen(route_name(r->route)));
        tsv_field(b, r->dest, r->dest ? strlen(r->dest) : 0);
        buf_printf(b, "\t%s\t%u\t%lld", state_name(r->state), r->attempts, (long long)r->next_try);
        size_t rl = r->last ? r->remote_len : 0;
        tsv_field(b, r->last, rl);
        const char *reply = r->last ? r->last + rl + (r->last[rl] == '|') : "";
        tsv_field(b, reply, strlen(reply));
        buf_add(b, "\n", 1);
    }
}

/* --- walks ------------------------------------------------------------------------------ */

int imsd_queue_walk_new(imsd_queues *qs, const imsd_queue_filter *f, imsd_queue_walk **out)
{
    imsd_queue_walk *w = calloc(1, sizeof *w);
    if (!w)
        return ENOMEM;
    w->qs = qs;
    w->f = *f;
    w->stage = -1;
    w->now = time(NULL);
    *out = w;
    return 0;
}

/* walk_advance - on to the next queue the filter wants. Returns 0, ENOMEM, or ENOENT at the
 * end. */
static int walk_advance(imsd_queue_walk *w)
{
    ims_queue_dir_close(w->dir);
    w->dir = NULL;
    ims_outq_iter_free(w->it);
    w->it = NULL;
    for (w->stage++; w->stage < IMS_QUEUE_KINDS; w->stage++) {
        if (w->f.queues && !(w->f.queues & (1u << w->stage)))
            continue;
        if (w->stage == IMS_QUEUE_OUT) {
            ims_outq *q = imsd_mail_outq(w->qs->srv);
            if (!q)
                continue;
            return ims_outq_iter_new(q, &w->it);
        }
        int rc =
            ims_queue_dir_open((ims_queue_kind)w->stage, w->qs->root_dir, w->qs->gateway, &w->dir);
        if (rc == ENOMEM)
            return rc;
        if (!rc)
            return 0;
    }
    return ENOENT;
}

int imsd_queue_walk_step(imsd_queue_walk *w, size_t max, buf *out)
{
    if (w->stage < 0 && walk_advance(w) == ENOENT)
        return 0;
    size_t shown = 0, looked = 0;
    /* Looking at non-matching messages costs too: a step is bounded by both. */
    while (shown < max && looked < max * 16) {
        if (w->stage >= IMS_QUEUE_KINDS)
            return 0;
        ims_queue_msg m;
        int got;
        if (w->it)
            got = ims_outq_iter_next(w->it, ims_clock_ms(), &m) ? 1 : 0;
        else
            got = ims_queue_dir_next(w->dir, &m);
        if (got == ENOMEM)
            return ENOMEM;
        if (got == 0) {
            int rc = walk_advance(w);
            if (rc == ENOENT)
                return 0;
            if (rc)
                return rc;
            continue;
        }
        looked++;
        if (!msg_matches(&w->f, &m, w->now))
            continue;
        if (w->tsv)
            msg_tsv(out, (ims_queue_kind)w->stage, &m);
        else
            msg_json(out, (ims_queue_kind)w->stage, &m);
        shown++;
    }
    return 1;
}

void imsd_queue_walk_free(imsd_queue_walk *w)
{
    if (!w)
        return;
    ims_queue_dir_close(w->dir);
    ims_outq_iter_free(w->it);
    free(w);
}

/* --- actions ---------------------------------------------------------------------------- */

typedef struct qs_act {
    imsd_queues *qs;
    ims_queue_action act;
    char id[IMS_QUEUE_ID_LEN + 1 + 256];
    int err;
    char text[QS_TEXT_MAX];
    imsd_queue_act_fn done;
    void *arg;
} qs_act;

static const char *action_done_word(ims_queue_action a)
{
    switch (a) {
    case IMS_QA_HOLD:
        return "held";
    case IMS_QA_RELEASE:
        return "released";
    case IMS_QA_RETRY:
        return "retrying";
    case IMS_QA_DELETE:
        return "deleted";
    case IMS_QA_DELETE_NDR:
        return "deleted with a non-delivery report";
    }
    return "done";
}

int imsd_queue_action_parse(const char *word, ims_queue_action *act)
{
    static const struct {
        const char *name;
        ims_queue_action act;
    } names[] = {{"hold", IMS_QA_HOLD},
                 {"release", IMS_QA_RELEASE},
                 {"retry", IMS_QA_RETRY},
                 {"delete", IMS_QA_DELETE},
                 {"delete-ndr", IMS_QA_DELETE_NDR}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(word, names[i].name)) {
            *act = names[i].act;
            return 0;
        }
    return EINVAL;
}

static void act_finish(qs_act *a)
{
    a->done(a->arg, a->id, a->err, a->text);
    free(a);
}

static void act_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    act_finish(arg);
}

/* act_answer_later - the answer is known now; it goes from the loop, as every answer does. */
static int act_answer_later(qs_act *a)
{
    if (event_base_once(a->qs->srv->base, -1, EV_TIMEOUT, act_later, a, NULL)) {
        free(a);
        return ENOMEM;
    }
    return 0;
}

static void act_outq_done(void *arg, int err, const ims_queue_outcome *o)
{
    qs_act *a = arg;
    a->err = err;
    if (err) {
        snprintf(a->text, sizeof a->text, "the change could not be recorded: %s", strerror(err));
    } else if (a->act == IMS_QA_DELETE || a->act == IMS_QA_DELETE_NDR) {
        int n = snprintf(a->text, sizeof a->text, "%s: %zu recipient%s", action_done_word(a->act),
                         o->changed, o->changed == 1 ? "" : "s");
        if (o->delivered && n > 0 && (size_t)n < sizeof a->text)
            snprintf(a->text + n, sizeof a->text - (size_t)n,
                     "; %zu %s being sent and %s delivered", o->delivered,
                     o->delivered == 1 ? "was" : "were", o->delivered == 1 ? "was" : "were");
    } else {
        snprintf(a->text, sizeof a->text, "%s: %zu recipient%s", action_done_word(a->act),
                 o->changed, o->changed == 1 ? "" : "s");
    }
    act_finish(a);
}

/* in_dir - the queue that holds a file named id among the queues that are directories. */
static bool in_dir(const char *dir, const char *sub, const char *id)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s/%s", dir, sub, id) >= (int)sizeof path)
        return false;
    return access(path, F_OK) == 0;
}

/* mts_out_delete - a message from the organisation not yet taken for conversion: its file
 * goes (the conversion's claim is a rename out of new/, so exactly one of the two wins). */
static void mts_out_delete(qs_act *a, const char *actor)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/.MTS-OUT/new/%s", a->qs->gateway, a->id) >=
        (int)sizeof path) {
        a->err = ENAMETOOLONG;
        snprintf(a->text, sizeof a->text, "not in a queue");
        return;
    }
    if (unlink(path)) {
        a->err = errno;
        snprintf(a->text, sizeof a->text, "%s",
                 errno == ENOENT ? "not in MTS-OUT any more: taken for conversion (it is in In "
                                   "or Out now, under a queue id)"
                                 : strerror(errno));
        return;
    }
    ims_log_event(a->qs->srv->log, IMS_EV_QUEUE_ACTION, IMS_CAT_MESSAGE_TRANSFER, IMS_SEV_INFO,
                  IMS_LEVEL_NONE,
                  "Message %s in MTS-OUT (awaiting conversion) was deleted by %s, without a "
                  "report",
                  a->id, actor);
    snprintf(a->text, sizeof a->text, "deleted from MTS-OUT");
}

int imsd_queue_act(imsd_queues *qs, ims_queue_action act, const char *id, const char *actor,
                   imsd_queue_act_fn done, void *arg)
{
    qs_act *a = calloc(1, sizeof *a);
    if (!a)
        return ENOMEM;
    a->qs = qs;
    a->act = act;
    a->done = done;
    a->arg = arg;
    snprintf(a->id, sizeof a->id, "%s", id);
    bool name_ok = *id && !strchr(id, '/') && id[0] != '.' && strlen(id) < sizeof a->id;
    char upper[IMS_QUEUE_ID_LEN + 1];
    size_t n = strlen(id);
    if (n == IMS_QUEUE_ID_LEN) {
        for (size_t i = 0; i < n; i++)
            upper[i] = (char)(id[i] >= 'a' && id[i] <= 'f' ? id[i] - 32 : id[i]);
        upper[n] = 0;
    } else {
        upper[0] = 0;
    }
    ims_outq *q = imsd_mail_outq(qs->srv);
    if (q && upper[0]) {
        int rc = ims_outq_action(q, upper, act, actor, ims_clock_ms(), act_outq_done, a);
        if (rc == 0)
            return 0;
        if (rc == ENOMEM) {
            free(a);
            return ENOMEM;
        }
        if (rc != ENOENT) {
            a->err = rc;
            snprintf(a->text, sizeof a->text, "%s",
                     rc == EBUSY                               ? "held: release it first"
                     : rc == EALREADY && act == IMS_QA_HOLD    ? "held already"
                     : rc == EALREADY && act == IMS_QA_RELEASE ? "not held"
                     : rc == EALREADY                          ? "being deleted"
                                                               : strerror(rc));
            return act_answer_later(a);
        }
    }
    a->err = ENOENT;
    if (name_ok && in_dir(qs->root_dir, "In", upper[0] ? upper : id)) {
        snprintf(a->text, sizeof a->text,
                 "in In, being delivered into mailboxes: only messages in Out can be %s",
                 action_done_word(act));
    } else if (name_ok && in_dir(qs->gateway, ".MTS-OUT/new", id)) {
        if (act == IMS_QA_DELETE || act == IMS_QA_DELETE_NDR) {
            a->err = 0;
            mts_out_delete(a, actor);
        } else {
            snprintf(a->text, sizeof a->text,
                     "in MTS-OUT, awaiting conversion: it can only be deleted there");
        }
    } else {
        snprintf(a->text, sizeof a->text, "not in a queue (delivered, deleted, or never queued)");
    }
    return act_answer_later(a);
}

/* --- the control commands --------------------------------------------------------------- */

typedef struct qs_list {
    imsd_queue_walk *w;
    buf out;
    char **words; /* the filter's strings, copied: the request's argv goes with it */
    int nwords;
} qs_list;

static void list_free(qs_list *l)
{
    imsd_queue_walk_free(l->w);
    buf_free(&l->out);
    for (int i = 0; i < l->nwords; i++)
        free(l->words[i]);
    free(l->words);
    free(l);
}

static bool list_more(void *arg, imsd_ctl_req *r)
{
    qs_list *l = arg;
    l->out.len = 0;
    int rc = imsd_queue_walk_step(l->w, IMSD_QUEUES_BATCH, &l->out);
    if (l->out.len)
        imsd_ctl_write(r, l->out.data, l->out.len);
    if (rc == 1)
        return false;
    if (rc == ENOMEM)
        imsd_ctl_end(r, ENOMEM, "out of memory");
    list_free(l);
    return true;
}

static void list_cancel(void *arg)
{
    list_free(arg);
}

static void ctl_queues(void *arg, imsd_ctl_req *r, int argc, char **argv)
{
    imsd_queues *qs = arg;
    qs_list *l = calloc(1, sizeof *l);
    if (l && argc > 1)
        l->words = calloc((size_t)argc - 1, sizeof *l->words);
    if (!l || (argc > 1 && !l->words)) {
        free(l);
        imsd_ctl_end(r, ENOMEM, "out of memory");
        return;
    }
    for (int i = 1; i < argc; i++) {
        if (!(l->words[l->nwords] = strdup(argv[i]))) {
            list_free(l);
            imsd_ctl_end(r, ENOMEM, "out of memory");
            return;
        }
        l->nwords++;
    }
    bool tsv = l->nwords > 0 && !strcmp(l->words[l->nwords - 1], "format=tsv");
    imsd_queue_filter f;
    const char *bad;
    if (imsd_queue_filter_parse(&f, l->nwords - (tsv ? 1 : 0), l->words, &bad)) {
        char text[QS_TEXT_MAX];
        snprintf(text, sizeof text, "bad filter \"%.128s\"", bad);
        list_free(l);
        imsd_ctl_end(r, EINVAL, text);
        return;
    }
    if (imsd_queue_walk_new(qs, &f, &l->w)) {
        list_free(l);
        imsd_ctl_end(r, ENOMEM, "out of memory");
        return;
    }
    l->w->tsv = tsv;
    imsd_ctl_stream(r, list_more, l, list_cancel);
}

typedef struct qs_batch {
    imsd_ctl_req *r;
    size_t pending; /* answers to come, and this call's own while it runs */
} qs_batch;

static void batch_drop(qs_batch *b)
{
    if (--b->pending == 0) {
        imsd_ctl_end(b->r, 0, NULL);
        free(b);
    }
}

static void batch_one(void *arg, const char *id, int err, const char *text)
{
    qs_batch *b = arg;
    imsd_ctl_printf(b->r, "%s\t%s\t%s\n", id, err ? "error" : "ok", text);
    batch_drop(b);
}

static void ctl_action(void *arg, imsd_ctl_req *r, int argc, char **argv)
{
    imsd_queues *qs = arg;
    ims_queue_action act;
    if (argc < 3 || imsd_queue_action_parse(argv[1], &act)) {
        imsd_ctl_end(r, EINVAL,
                     "usage: queue-action hold|release|retry|delete|delete-ndr QUEUE-ID...");
        return;
    }
    if (argc - 2 > IMSD_QUEUES_ACT_MAX) {
        imsd_ctl_end(r, E2BIG, "too many queue ids in one request");
        return;
    }
    qs_batch *b = calloc(1, sizeof *b);
    if (!b) {
        imsd_ctl_end(r, ENOMEM, "out of memory");
        return;
    }
    b->r = r;
    b->pending = 1; /* this call's own, so no answer ends the request early */
    const char *who = imsd_ctl_who(r);
    for (int i = 2; i < argc; i++) {
        b->pending++;
        if (imsd_queue_act(qs, act, argv[i], who, batch_one, b)) {
            b->pending--;
            imsd_ctl_printf(r, "%s\terror\tout of memory\n", argv[i]);
        }
    }
    batch_drop(b); /* this call's own */
}

int imsd_queues_start(imsd_server *srv, imsd_control *ctl, const char *gateway, imsd_queues **out)
{
    imsd_queues *qs = calloc(1, sizeof *qs);
    if (!qs)
        return ENOMEM;
    qs->srv = srv;
    snprintf(qs->root_dir, sizeof qs->root_dir, "%s", srv->settings->root_dir);
    snprintf(qs->gateway, sizeof qs->gateway, "%s", gateway ? gateway : "");
    if (ctl && (imsd_control_register(ctl, "queues", ctl_queues, qs) ||
                imsd_control_register(ctl, "queue-action", ctl_action, qs))) {
        free(qs);
        return ENOMEM;
    }
    *out = qs;
    return 0;
}

void imsd_queues_free(imsd_queues *qs)
{
    free(qs);
}
