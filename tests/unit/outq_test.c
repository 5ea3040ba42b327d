/* outq_test.c - the outbound queue (lib/ims outq.c) with a real spool and directory: a
 * relayed message is handed over from In to Out, given out as a job, and what its results
 * say is recorded and done: delivered (the file goes), deferred (retried on the schedule),
 * failed (an NDR into the sender's mailbox), a destination that cannot be reached. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ims/ims.h"
#include "ims/spool_int.h"
#include "regfx.h"
#include "store/store.h"

#define WAIT_MS 10000 /* the longest any wait here may take */

struct oq {
    struct fx *fx;
    char root[128], mts_in[160], store[128];
    directory *dir;
    ims_router *router;
    ims_settings s;
    ims_spool *spool;
    ims_outq *q;
    ims_outq_dest *ready; /* the last destination the queue said is ready */
    int done;             /* job_finish callbacks run */
};

static void on_ready(void *arg, ims_outq_dest *d)
{
    ((struct oq *)arg)->ready = d;
}

static void on_done(void *arg)
{
    ((struct oq *)arg)->done++;
}

static void oq_open(struct oq *o)
{
    ims_outq_options qo = {.settings = &o->s,
                           .router = o->router,
                           .log = &o->fx->log,
                           .host = "gw.ims.test",
                           .store_dir = o->store,
                           .bad_dir = o->store,
                           .ready = on_ready,
                           .ready_arg = o};
    assert_int_equal(ims_outq_open(o->root, &qo, &o->q), 0);
    ims_spool_options so = {.mts_in = o->mts_in,
                            .host = "gw.ims.test",
                            .handover = ims_outq_handover,
                            .handover_arg = o->q};
    assert_int_equal(ims_spool_open(o->root, &so, &o->spool), 0);
    ims_outq_set_spool(o->q, o->spool);
}

static void oq_close(struct oq *o)
{
    ims_outq_stop(o->q);
    ims_spool_close(o->spool);
    ims_outq_close(o->q);
    o->q = NULL;
    o->spool = NULL;
}

static void setup_oq(struct oq *o, struct fx *fx)
{
    memset(o, 0, sizeof *o);
    o->fx = fx;
    snprintf(o->root, sizeof o->root, "%s/imcdata", fx->dir);
    snprintf(o->store, sizeof o->store, "%s/store", fx->dir);
    snprintf(o->mts_in, sizeof o->mts_in, "%s/store/gw/.MTS-IN", fx->dir);
    dir_err err;
    assert_int_equal(dir_open(fx->reg, &o->dir), 0);
    assert_int_equal(dir_domain_add(o->dir, "ims.test", &err), 0);
    const char *alice[] = {"alice@ims.test"};
    assert_int_equal(dir_mailbox_add(o->dir, "alice", NULL, alice, 1, NULL, &err), 0);
    store *st;
    assert_int_equal(store_open(o->store, true, &st), 0);
    assert_int_equal(store_mailbox_ensure(st, "alice", NULL), 0);
    store_close(st);
    ims_settings_defaults(&o->s, fx->dir);
    o->s.retry_ms[0] = 50; /* retries at once, for the test */
    o->s.nretry = 1;
    assert_int_equal(ims_router_new(&o->s, o->dir, &o->router), 0);
    oq_open(o);
}

static void teardown_oq(struct oq *o)
{
    if (o->q)
        oq_close(o);
    ims_router_free(o->router);
    dir_close(o->dir);
}

/* pump - run both sides' dispatch until pred holds (bounded). */
static bool pump(struct oq *o, bool (*pred)(struct oq *))
{
    for (int i = 0; i < WAIT_MS / 5; i++) {
        ims_spool_dispatch(o->spool);
        ims_outq_dispatch(o->q, ims_clock_ms());
        if (pred(o))
            return true;
        usleep(5000);
    }
    return false;
}

/* pump_n - n rounds of both sides' dispatch, 5 ms apart: time for what is not to happen. */
static void pump_n(struct oq *o, int n)
{
    for (int i = 0; i < n; i++) {
        ims_spool_dispatch(o->spool);
        ims_outq_dispatch(o->q, ims_clock_ms());
        usleep(5000);
    }
}

static bool has_ready(struct oq *o)
{
    return o->ready && ims_outq_dest_ready(o->ready) > 0;
}

static bool one_done(struct oq *o)
{
    return o->done > 0;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && e->d_type == DT_REG)
            n++;
    closedir(d);
    return n;
}

/* out_empty - Out has no file and the queue has taken note (its removal answered). */
static bool out_empty(struct oq *o)
{
    char p[200];
    snprintf(p, sizeof p, "%s/Out", o->root);
    ims_outq_stats st;
    ims_outq_get_stats(o->q, &st);
    return count_files(p) == 0 && st.messages == 0;
}

static bool alice_has_mail(struct oq *o)
{
    char p[200];
    snprintf(p, sizeof p, "%s/alice/new", o->store);
    return count_files(p) > 0;
}

/* read_first - the first regular file of dir into text (n bytes, terminated). */
static void read_first(const char *dir, char *text, size_t n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) && e->d_type != DT_REG)
        ;
    assert_non_null(e);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    closedir(d);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t got = fread(text, 1, n - 1, f);
    text[got] = 0;
    fclose(f);
}

/* submit_how - a message as it came: under TLS (tls: "<protocol> <cipher>") and AUTH (auth:
 * the account), each NULL when not. */
static void submit_how(struct oq *o, const char *from, const char *to, const char *tls,
                       const char *auth)
{
    ims_rcpt r = {.address = to, .route = IMS_ROUTE_DNS, .dest = strchr(to, '@') + 1};
    ims_envelope e = {.sender = from,
                      .rcpts = &r,
                      .nrcpt = 1,
                      .client_ip = "192.0.2.9",
                      .helo = "client.example",
                      .tls = tls,
                      .auth = auth};
    const char *msg = "Subject: hello\r\nFrom: <a@ims.test>\r\n\r\nbody\r\n";
    assert_int_equal(ims_spool_submit(o->spool, &e, msg, strlen(msg), NULL, NULL), 0);
}

static void submit(struct oq *o, const char *from, const char *to)
{
    submit_how(o, from, to, NULL, NULL);
}

static char *read_job(ims_outq_job *j, size_t *len)
{
    const smtp_client_msg *m = ims_outq_job_msg(j);
    char *p = malloc(m->size + 1);
    size_t got = 0, n;
    while (got < m->size && m->read(m->read_arg, p + got, m->size - got, &n) == 0 && n)
        got += n;
    p[got] = 0;
    *len = got;
    return p;
}

static smtp_result reply(smtp_outcome o, unsigned code, const char *enh, const char *text)
{
    smtp_result r = {.outcome = o, .stage = SMTP_STAGE_DOT, .code = code};
    snprintf(r.enh, sizeof r.enh, "%s", enh);
    snprintf(r.text, sizeof r.text, "%s", text);
    return r;
}

/* Delivered: the job carries the envelope and the content with our Received in front; its
 * 250 is recorded, and the file leaves Out. */
static void test_delivered(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    submit(&o, "alice@ims.test", "bob@remote.test");
    assert_true(pump(&o, has_ready));
    assert_string_equal(ims_outq_dest_name(o.ready), "remote.test");
    assert_int_equal(ims_outq_dest_route(o.ready), IMS_ROUTE_DNS);
    ims_outq_job *j = ims_outq_take(o.q, o.ready);
    assert_non_null(j);
    assert_null(ims_outq_take(o.q, o.ready)); /* one message, one job */
    const smtp_client_msg *m = ims_outq_job_msg(j);
    assert_string_equal(m->from, "alice@ims.test");
    assert_int_equal(m->nrcpt, 1);
    assert_string_equal(m->rcpt[0].addr, "bob@remote.test");
    size_t len;
    char *data = read_job(j, &len);
    assert_int_equal(strncmp(data, "Received: from client.example ([192.0.2.9])", 43), 0);
    assert_non_null(strstr(data, "\r\n\r\nbody\r\n"));
    free(data);
    smtp_result ok = reply(SMTP_DELIVERED, 250, "2.0.0", "ok");
    ims_outq_job_result(j, 0, &ok, "[127.0.0.2]");
    ims_outq_job_finish(o.q, j, on_done, &o);
    assert_true(pump(&o, one_done));
    assert_true(pump(&o, out_empty));
    ims_outq_stats st;
    ims_outq_get_stats(o.q, &st);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.messages, 0);
    assert_int_equal(st.ndrs, 0);
    uint64_t observed = 0;
    for (size_t i = 0; i <= IMS_LATENCY_BUCKETS; i++)
        observed += st.latency_remote.count[i];
    assert_int_equal(observed, 1); /* the delivery's latency */
    /* The finished Out file waits in Work, for the next message written (durably out of Out
     * first: the round's sync freed it). */
    ims_spool_stats sst;
    ims_spool_get_stats(o.spool, &sst);
    assert_int_equal(sst.files_recycled, 1);
    teardown_oq(&o);
}

/* The Received field on what leaves says how the message came (RFC 3848's ESMTP, ESMTPS,
 * ESMTPA, ESMTPSA; the cipher line as Postfix writes it), never the account, CRLF. */
static void test_received_protocols(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    static const struct {
        const char *tls, *auth, *want;
    } cases[] = {
        {NULL, NULL,
         "Received: from client.example ([192.0.2.9])\r\n"
         "\tby gw.ims.test with ESMTP id "},
        {"TLSv1.3 TLS_AES_256_GCM_SHA384", NULL,
         "Received: from client.example ([192.0.2.9])\r\n"
         "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
         "\tby gw.ims.test with ESMTPS id "},
        {NULL, "carol",
         "Received: from client.example ([192.0.2.9])\r\n"
         "\tby gw.ims.test with ESMTPA id "},
        {"TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384", "carol",
         "Received: from client.example ([192.0.2.9])\r\n"
         "\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384)\r\n"
         "\tby gw.ims.test with ESMTPSA id "},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        o.done = 0;
        submit_how(&o, "alice@ims.test", "bob@remote.test", cases[i].tls, cases[i].auth);
        assert_true(pump(&o, has_ready));
        ims_outq_job *j = ims_outq_take(o.q, o.ready);
        assert_non_null(j);
        size_t len;
        char *data = read_job(j, &len);
        if (strncmp(data, cases[i].want, strlen(cases[i].want)))
            fail_msg("case %zu: got\n%s\nwant it to start with\n%s", i, data, cases[i].want);
        /* then the id, the date on its own line, and the content */
        const char *p = data + strlen(cases[i].want);
        assert_int_equal(strspn(p, "0123456789ABCDEF"), 16);
        assert_int_equal(strncmp(p + 16, ";\r\n\t", 4), 0);
        const char *end = strstr(p, "\r\nSubject: hello\r\n");
        assert_non_null(end);
        assert_true(strstr(p + 20, "\r\n") == end); /* the date line is the field's last */
        assert_null(strstr(data, "carol"));
        free(data);
        smtp_result ok = reply(SMTP_DELIVERED, 250, "2.0.0", "ok");
        ims_outq_job_result(j, 0, &ok, "[127.0.0.2]");
        ims_outq_job_finish(o.q, j, on_done, &o);
        assert_true(pump(&o, one_done));
        assert_true(pump(&o, out_empty));
    }
    teardown_oq(&o);
}

/* Deferred: the 451 is a durable record, the recipient comes back after RetryInterval, and
 * also after a restart of the queue. */
static void test_deferred_then_delivered(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    submit(&o, "alice@ims.test", "bob@remote.test");
    assert_true(pump(&o, has_ready));
    ims_outq_job *j = ims_outq_take(o.q, o.ready);
    assert_non_null(j);
    smtp_result busy = reply(SMTP_TRANSIENT, 451, "4.3.0", "try later");
    ims_outq_job_result(j, 0, &busy, "[127.0.0.2]");
    ims_outq_job_finish(o.q, j, on_done, &o);
    assert_true(pump(&o, one_done));
    /* The record is in the file. */
    char dir[200];
    snprintf(dir, sizeof dir, "%s/Out", o.root);
    assert_int_equal(count_files(dir), 1);
    static char text[65536];
    read_first(dir, text, sizeof text);
    assert_non_null(strstr(text, "defer 0\t1\t"));
    assert_non_null(strstr(text, "[127.0.0.2]|451 4.3.0 try later"));
    /* A restart finds it and schedules it again. */
    oq_close(&o);
    o.ready = NULL;
    oq_open(&o);
    assert_true(pump(&o, has_ready));
    j = ims_outq_take(o.q, o.ready);
    assert_non_null(j);
    smtp_result ok = reply(SMTP_DELIVERED, 250, "2.0.0", "ok");
    ims_outq_job_result(j, 0, &ok, "[127.0.0.2]");
    o.done = 0;
    ims_outq_job_finish(o.q, j, on_done, &o);
    assert_true(pump(&o, one_done));
    assert_true(pump(&o, out_empty));
    teardown_oq(&o);
}

/* Failed: the 550 makes an NDR from <> to the sender, delivered into her mailbox; the file
 * goes once the report is spooled. */
static void test_failed_ndr(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    submit(&o, "alice@ims.test", "bob@remote.test");
    assert_true(pump(&o, has_ready));
    ims_outq_job *j = ims_outq_take(o.q, o.ready);
    smtp_result no = reply(SMTP_PERMANENT, 550, "5.1.1", "no such user");
    ims_outq_job_result(j, 0, &no, "[127.0.0.2]");
    ims_outq_job_finish(o.q, j, on_done, &o);
    assert_true(pump(&o, one_done));
    assert_true(pump(&o, alice_has_mail));
    assert_true(pump(&o, out_empty));
    char dir[200];
    snprintf(dir, sizeof dir, "%s/alice/new", o.store);
    static char text[65536];
    read_first(dir, text, sizeof text);
    assert_non_null(strstr(text, "Subject: Undeliverable: hello"));
    assert_non_null(strstr(text, "Status: 5.1.1"));
    assert_non_null(strstr(text, "Final-Recipient: rfc822;bob@remote.test"));
    ims_outq_stats st;
    ims_outq_get_stats(o.q, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.reports, 1);
    assert_int_equal(st.ndrs, 1);
    assert_int_equal(st.delays, 0);
    teardown_oq(&o);
}

/* A destination nobody answers at: its waiting recipients are deferred together, and it is
 * left alone for a while (no job is given out at once). */
static void test_dest_failed(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    o.s.retry_ms[0] = 60000; /* long enough not to come back during the test */
    oq_close(&o);
    oq_open(&o);
    submit(&o, "alice@ims.test", "bob@remote.test");
    submit(&o, "alice@ims.test", "carol@remote.test");
    assert_true(pump(&o, has_ready));
    /* both messages wait for the destination */
    for (int i = 0; i < 400 && ims_outq_dest_ready(o.ready) < 2; i++)
        pump(&o, has_ready), usleep(5000);
    assert_int_equal(ims_outq_dest_ready(o.ready), 2);
    smtp_result r = {.outcome = SMTP_TRANSIENT, .stage = SMTP_STAGE_GREETING, .local = true};
    snprintf(r.enh, sizeof r.enh, "4.4.1");
    snprintf(r.text, sizeof r.text, "connection refused");
    ims_outq_dest_failed(o.q, o.ready, &r, "[127.0.0.3]", ims_clock_ms());
    assert_int_equal(ims_outq_dest_ready(o.ready), 0);
    assert_null(ims_outq_take(o.q, o.ready));
    ims_outq_stats st;
    ims_outq_get_stats(o.q, &st);
    assert_int_equal(st.deferred, 2);
    assert_int_equal(st.messages, 2);
    teardown_oq(&o);
}

/* --- the administrator's actions ---------------------------------------------------------- */

struct act_res {
    int calls, err;
    ims_queue_outcome o;
};

static void on_action(void *arg, int err, const ims_queue_outcome *oc)
{
    struct act_res *r = arg;
    r->calls++;
    r->err = err;
    r->o = *oc;
}

static bool one_message(struct oq *o)
{
    ims_outq_stats st;
    ims_outq_get_stats(o->q, &st);
    return st.messages == 1;
}

static struct act_res *g_act; /* the result pump's predicate looks at */
static bool act_done(struct oq *o)
{
    (void)o;
    return g_act->calls > 0;
}

/* first_id - the queue id of the (newest) message in the queue, through the view. */
static void first_view(struct oq *o, char *id, ims_queue_rcpt *rcpt)
{
    ims_outq_iter *it;
    assert_int_equal(ims_outq_iter_new(o->q, &it), 0);
    ims_queue_msg v;
    assert_true(ims_outq_iter_next(it, ims_clock_ms(), &v));
    snprintf(id, IMS_QUEUE_ID_LEN + 1, "%s", v.id);
    assert_int_equal(v.nrcpt, 1);
    if (rcpt)
        *rcpt = v.rcpts[0];
    ims_outq_iter_free(it);
}

static void act(struct oq *o, const char *id, ims_queue_action a, struct act_res *r)
{
    memset(r, 0, sizeof *r);
    g_act = r;
    assert_int_equal(ims_outq_action(o->q, id, a, "tester (uid 7)", ims_clock_ms(), on_action, r),
                     0);
    assert_true(pump(o, act_done));
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->err, 0);
}

static void defer_once(struct oq *o)
{
    assert_true(pump(o, has_ready));
    ims_outq_job *j = ims_outq_take(o->q, o->ready);
    assert_non_null(j);
    smtp_result busy = reply(SMTP_TRANSIENT, 451, "4.3.0", "greylisted, try later");
    ims_outq_job_result(j, 0, &busy, "[127.0.0.2]");
    o->done = 0;
    ims_outq_job_finish(o->q, j, on_done, o);
    assert_true(pump(o, one_done));
}

/* setup_deferred - a queue whose retries are slow (nothing comes back by itself during a
 * test) with one message to bob, deferred once by a 451. */
static void setup_deferred(struct oq *o, struct fx *fx, uint64_t retry_ms)
{
    setup_oq(o, fx);
    o->s.retry_ms[0] = retry_ms;
    oq_close(o);
    oq_open(o);
    submit(o, "alice@ims.test", "bob@remote.test");
    defer_once(o);
}

/* Held: nothing is given out, the hold is in the file and survives a restart; released, the
 * message goes. The view shows the recipient's last reply verbatim. */
static void test_hold_release(void **state)
{
    struct oq o;
    setup_deferred(&o, *state, 60000);
    char id[IMS_QUEUE_ID_LEN + 1];
    ims_queue_rcpt rc;
    first_view(&o, id, &rc);
    assert_int_equal(rc.state, IMS_QRCPT_WAITING);
    assert_int_equal(rc.attempts, 1);
    assert_string_equal(rc.last, "[127.0.0.2]|451 4.3.0 greylisted, try later");
    assert_int_equal(rc.remote_len, strlen("[127.0.0.2]"));
    assert_true(rc.next_try > time(NULL) + 30);
    struct act_res r;
    act(&o, id, IMS_QA_HOLD, &r);
    assert_int_equal(r.o.changed, 1);
    assert_int_equal(ims_outq_action(o.q, id, IMS_QA_HOLD, "x", ims_clock_ms(), on_action, &r),
                     EALREADY);
    assert_int_equal(ims_outq_action(o.q, id, IMS_QA_RETRY, "x", ims_clock_ms(), on_action, &r),
                     EBUSY);
    first_view(&o, id, &rc);
    assert_int_equal(rc.state, IMS_QRCPT_HELD);
    char dir[200];
    snprintf(dir, sizeof dir, "%s/Out", o.root);
    static char text[65536];
    read_first(dir, text, sizeof text);
    assert_non_null(strstr(text, "\nhold\n"));
    /* a restart keeps it held */
    oq_close(&o);
    o.ready = NULL;
    oq_open(&o);
    pump_n(&o, 40);
    first_view(&o, id, &rc);
    assert_int_equal(rc.state, IMS_QRCPT_HELD);
    assert_true(o.ready == NULL || ims_outq_dest_ready(o.ready) == 0);
    act(&o, id, IMS_QA_RELEASE, &r);
    assert_int_equal(r.o.changed, 1);
    assert_true(pump(&o, has_ready));
    ims_outq_job *j = ims_outq_take(o.q, o.ready);
    assert_non_null(j);
    smtp_result ok = reply(SMTP_DELIVERED, 250, "2.0.0", "ok");
    ims_outq_job_result(j, 0, &ok, "[127.0.0.2]");
    o.done = 0;
    ims_outq_job_finish(o.q, j, on_done, &o);
    assert_true(pump(&o, out_empty));
    assert_int_equal(ims_outq_action(o.q, id, IMS_QA_HOLD, "x", ims_clock_ms(), on_action, &r),
                     ENOENT);
    teardown_oq(&o);
}

/* Retry now: a recipient deferred for a minute is given out at once. */
static void test_retry_now(void **state)
{
    struct oq o;
    setup_deferred(&o, *state, 600000);
    assert_int_equal(ims_outq_dest_ready(o.ready), 0);
    char id[IMS_QUEUE_ID_LEN + 1];
    first_view(&o, id, NULL);
    struct act_res r;
    act(&o, id, IMS_QA_RETRY, &r);
    assert_int_equal(r.o.changed, 1);
    assert_true(pump(&o, has_ready));
    teardown_oq(&o);
}

/* Deleted with an NDR: exactly one report reaches the sender, saying so; without: none. */
static void test_delete(void **state)
{
    struct oq o;
    setup_deferred(&o, *state, 600000);
    char id[IMS_QUEUE_ID_LEN + 1];
    first_view(&o, id, NULL);
    struct act_res r;
    act(&o, id, IMS_QA_DELETE_NDR, &r);
    assert_int_equal(r.o.changed, 1);
    assert_true(pump(&o, alice_has_mail));
    assert_true(pump(&o, out_empty));
    char dir[200];
    snprintf(dir, sizeof dir, "%s/alice/new", o.store);
    assert_int_equal(count_files(dir), 1);
    static char text[65536];
    read_first(dir, text, sizeof text);
    assert_non_null(strstr(text, "Subject: Undeliverable: hello"));
    assert_non_null(strstr(text, "Status: 5.3.2"));
    assert_non_null(strstr(text, "Message deleted from the queue by"));

    submit(&o, "alice@ims.test", "carol@remote.test");
    o.ready = NULL;
    defer_once(&o);
    first_view(&o, id, NULL);
    act(&o, id, IMS_QA_DELETE, &r);
    assert_int_equal(r.o.changed, 1);
    assert_true(pump(&o, out_empty));
    pump_n(&o, 40); /* a report, were one made, would have time to arrive */
    assert_int_equal(count_files(dir), 1);
    teardown_oq(&o);
}

/* A message deleted while a connection sends it: the peer's 250 wins for that recipient
 * (delivered, not deleted, no report); the action answers only after the results. */
static void test_delete_while_sending(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    submit(&o, "alice@ims.test", "bob@remote.test");
    assert_true(pump(&o, has_ready));
    ims_outq_job *j = ims_outq_take(o.q, o.ready);
    assert_non_null(j);
    char id[IMS_QUEUE_ID_LEN + 1];
    ims_queue_rcpt rc;
    first_view(&o, id, &rc);
    assert_int_equal(rc.state, IMS_QRCPT_SENDING);
    struct act_res r;
    memset(&r, 0, sizeof r);
    g_act = &r;
    assert_int_equal(
        ims_outq_action(o.q, id, IMS_QA_DELETE_NDR, "tester", ims_clock_ms(), on_action, &r), 0);
    pump_n(&o, 20);
    assert_int_equal(r.calls, 0); /* waits for the connection */
    smtp_result ok = reply(SMTP_DELIVERED, 250, "2.0.0", "ok");
    ims_outq_job_result(j, 0, &ok, "[127.0.0.2]");
    o.done = 0;
    ims_outq_job_finish(o.q, j, on_done, &o);
    assert_true(pump(&o, act_done));
    assert_int_equal(r.err, 0);
    assert_int_equal(r.o.delivered, 1);
    assert_int_equal(r.o.changed, 0);
    assert_true(pump(&o, out_empty));
    char dir[200];
    snprintf(dir, sizeof dir, "%s/alice/new", o.store);
    assert_int_equal(count_files(dir), 0);
    teardown_oq(&o);
}

/* A walk paused while a message it has not reached leaves the queue skips it safely. */
static void test_iter_removal(void **state)
{
    struct oq o;
    setup_deferred(&o, *state, 600000);
    submit(&o, "alice@ims.test", "carol@remote.test");
    defer_once(&o);
    ims_outq_iter *it;
    assert_int_equal(ims_outq_iter_new(o.q, &it), 0);
    ims_queue_msg v;
    assert_true(ims_outq_iter_next(it, ims_clock_ms(), &v));
    assert_string_equal(v.rcpts[0].address, "carol@remote.test"); /* newest first */
    /* the next one (bob's) goes while the walk waits */
    ims_outq_iter *it2;
    assert_int_equal(ims_outq_iter_new(o.q, &it2), 0);
    assert_true(ims_outq_iter_next(it2, ims_clock_ms(), &v));
    assert_true(ims_outq_iter_next(it2, ims_clock_ms(), &v));
    char id[IMS_QUEUE_ID_LEN + 1];
    snprintf(id, sizeof id, "%s", v.id);
    ims_outq_iter_free(it2);
    struct act_res r;
    act(&o, id, IMS_QA_DELETE, &r);
    assert_true(pump(&o, one_message));
    if (ims_outq_iter_next(it, ims_clock_ms(), &v))
        fail_msg("the walk showed %s (%s) after it left", v.id, v.rcpts[0].address);
    ims_outq_iter_free(it);
    teardown_oq(&o);
}

/* A start reads its queue files in batches across the pool's threads, in inode order, never
 * far ahead of the loop: more files than it may have waiting (and not a multiple of a batch),
 * each deferred with its next try a day away, are all loaded and none is given out; an
 * unreadable one among them goes to Out/Archive; a stop while the scan waits ends it. */
#define MANY_FILES 1500 /* beyond what the scan may have waiting for the loop (1024) */

static bool many_loaded(struct oq *o)
{
    ims_outq_stats st;
    ims_outq_get_stats(o->q, &st);
    return st.messages == MANY_FILES;
}

static void test_start_many(void **state)
{
    struct oq o;
    setup_oq(&o, *state);
    oq_close(&o);
    time_t now = time(NULL);
    char path[300];
    for (unsigned i = 0; i <= MANY_FILES; i++) {
        snprintf(path, sizeof path, "%s/Out/%08X%08X", o.root, (unsigned)now, i);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        if (i == MANY_FILES) { /* the unreadable one */
            fputs("IMS-SPOOL 2\nnot a spool file\n", f);
            fclose(f);
            continue;
        }
        const char *body = "Subject: queued\r\n\r\nbody\r\n";
        fprintf(
            f,
            "IMS-SPOOL 2\nid %08X%08X\ntime %lld\nclient 192.0.2.9\nhelo client.example\n"
            "host gw.ims.test\nfrom alice@ims.test\nrcpt -\t-\tu%u@remote.test\tdns:remote.test\n"
            "size %020zu\n\n%sdefer 0\t1\t%lld\t[127.0.0.2]|451 4.3.0 try later\n",
            (unsigned)now, i, (long long)now - 60, i, strlen(body), body, (long long)now + 86400);
        assert_int_equal(fclose(f), 0);
    }
    /* Stopped while the scan waits for the loop (nothing dispatched): the stop ends it. */
    oq_open(&o);
    usleep(100000);
    oq_close(&o);
    oq_open(&o);
    assert_true(pump(&o, many_loaded));
    pump_n(&o, 4);
    assert_false(has_ready(&o));
    snprintf(path, sizeof path, "%s/Out", o.root);
    assert_int_equal(count_files(path), MANY_FILES);
    snprintf(path, sizeof path, "%s/Out/Archive", o.root);
    assert_int_equal(count_files(path), 1);
    teardown_oq(&o);
}

/* A record's text split for a report: a well-formed enhanced code is kept, a damaged one
 * ("5....", "4.12345": what a garbled Out file can hold) gives way to the code's class (or
 * the failure's, for a 3xx code: RFC 3463 has no class 3), so a report's Status field is
 * always "c.sss.ddd" (both found by queuerec_fuzz). */
static void test_status_split(void **state)
{
    (void)state;
    char remote[64], enh[SMTP_ENH_MAX + 1];
    const char *diag;
    unsigned code;
    ims_spool_status_split("mx.example.net[192.0.2.7]|550 5.1.1 <v@y>: no such user", true, remote,
                           sizeof remote, &diag, &code, enh);
    assert_string_equal(remote, "mx.example.net[192.0.2.7]");
    assert_string_equal(diag, "550 5.1.1 <v@y>: no such user");
    assert_int_equal(code, 550);
    assert_string_equal(enh, "5.1.1");
    ims_spool_status_split("|550 5.... x", true, remote, sizeof remote, &diag, &code, enh);
    assert_string_equal(remote, "");
    assert_int_equal(code, 550);
    assert_string_equal(enh, "5.0.0");
    ims_spool_status_split("mx|451 4.12345 busy", false, remote, sizeof remote, &diag, &code, enh);
    assert_string_equal(enh, "4.0.0");
    ims_spool_status_split("mx|451 4.1234.1 busy", false, remote, sizeof remote, &diag, &code, enh);
    assert_string_equal(enh, "4.0.0");
    ims_spool_status_split("mx|391 busy", false, remote, sizeof remote, &diag, &code, enh);
    assert_int_equal(code, 391);
    assert_string_equal(enh, "4.0.0"); /* no class 3 in RFC 3463 */
    ims_spool_status_split("mx|354 go ahead", true, remote, sizeof remote, &diag, &code, enh);
    assert_string_equal(enh, "5.0.0");
    ims_spool_status_split("4.4.7 no answer", true, remote, sizeof remote, &diag, &code, enh);
    assert_int_equal(code, 0);
    assert_string_equal(enh, "4.4.7");
    ims_spool_status_split(NULL, true, remote, sizeof remote, &diag, &code, enh);
    assert_string_equal(diag, "");
    assert_string_equal(enh, "5.0.0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_received_protocols, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deferred_then_delivered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_ndr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dest_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_while_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iter_removal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_many, setup, teardown),
        cmocka_unit_test(test_status_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
