/* stats.c - the service's counters: one table naming each (ours, the original's, the
 * Prometheus name), a one-second history for rates, the console's statistics block (as
 * MSEXCIMC -console showed), the control commands "stats" and "stats-history", and /metrics. */
#include "imsd.h"

#include <errno.h>
#include <stddef.h>

#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#define STATS_STAMP_MAX 32
#define SECONDS_PER_DAY 86400
#define SECONDS_PER_HOUR 3600
#define SECONDS_PER_MINUTE 60
#define STATS_RATE_SHORT 10 /* seconds: the rates "stats" shows */
#define STATS_RATE_LONG 60

/* --- the table --------------------------------------------------------------------------- */

typedef struct stat_def {
    const char *key;      /* ours: "stats" and --json */
    const char *family;   /* the Prometheus metric family */
    const char *label[2]; /* one label, or none */
    ims_metric_type type; /* counter or gauge */
    const char *original; /* the original's counter (Q156063 3.2.10), or NULL */
    const char *help;     /* the family's HELP (the first of a family's rows says it) */
    size_t off, size;     /* the value in imsd_snap: uint64_t or unsigned */
    bool rate;            /* "stats" shows its rate per second */
} stat_def;

#define F(m) offsetof(imsd_snap, m), sizeof(((imsd_snap *)0)->m)
#define C IMS_METRIC_COUNTER
#define G IMS_METRIC_GAUGE

static const stat_def defs[] = {
    {"uptime_seconds",
     "ims_uptime_seconds",
     {0},
     G,
     NULL,
     "Seconds since the service started",
     F(uptime),
     false},
    {"connections_inbound",
     "ims_connections_inbound",
     {0},
     G,
     "Connections Inbound",
     "Inbound SMTP connections open now",
     F(own.conn_in_current),
     false},
    {"connections_inbound_total",
     "ims_connections_inbound_total",
     {0},
     C,
     "Connections Total Inbound",
     "Inbound SMTP connections accepted",
     F(own.conn_in_total),
     true},
    {"connections_rejected_total",
     "ims_connections_rejected_total",
     {0},
     C,
     "Connections Total Rejected",
     "Inbound connections refused (MaxInboundConnections, no memory)",
     F(own.conn_in_rejected),
     false},
    {"client_limit_refusals_total",
     "ims_client_limit_refusals_total",
     {0},
     C,
     NULL,
     "Connections, messages and recipients refused by a per-client limit",
     F(own.client_refused),
     false},
    {"stress",
     "ims_stress",
     {0},
     G,
     NULL,
     "1 while the inbound side is under stress (StressThreshold reached), else 0",
     F(own.stress),
     false},
    {"stress_sessions_closed_total",
     "ims_stress_sessions_closed_total",
     {0},
     C,
     NULL,
     "Idle sessions closed under stress to make room for a new connection",
     F(own.stress_closed),
     false},
    {"messages_received_total",
     "ims_messages_received_total",
     {0},
     C,
     "Inbound Messages Total",
     "Messages received over SMTP and made durable",
     F(own.msg_in),
     true},
    {"bytes_received_total",
     "ims_bytes_received_total",
     {0},
     C,
     "Inbound Bytes Total",
     "Bytes of the messages received over SMTP",
     F(own.bytes_in),
     true},
    {"ndrs_received_total",
     "ims_ndrs_received_total",
     {0},
     C,
     "NDRs Total Inbound",
     "Reports received over SMTP (from the null sender)",
     F(own.ndr_in),
     false},
    {"connections_outbound",
     "ims_connections_outbound",
     {0},
     G,
     "Connections Outbound",
     "Outbound SMTP connections open or opening now",
     F(own.conn_out_current),
     false},
    {"connections_outbound_total",
     "ims_connections_outbound_total",
     {0},
     C,
     "Connections Total Outbound",
     "Outbound SMTP connections attempted",
     F(own.conn_out_total),
     true},
    {"connections_outbound_failed_total",
     "ims_connections_outbound_failed_total",
     {0},
     C,
     "Connections Total Failed",
     "Outbound connections that did not get past the greeting (refused, timed out, dropped)",
     F(own.conn_out_failed),
     false},
    {"messages_sent_total",
     "ims_messages_sent_total",
     {0},
     C,
     "Outbound Messages Total",
     "Messages a remote server accepted for at least one recipient",
     F(own.msg_out),
     true},
    {"bytes_sent_total",
     "ims_bytes_sent_total",
     {0},
     C,
     "Outbound Bytes Total",
     "Bytes of the messages sent",
     F(own.bytes_out),
     true},
    {"ndrs_sent_total",
     "ims_ndrs_sent_total",
     {0},
     C,
     "NDRs Total Outbound",
     "Non-delivery reports the service generated",
     F(outq.ndrs),
     false},
    {"delay_notices_sent_total",
     "ims_delay_notices_sent_total",
     {0},
     C,
     NULL,
     "Delay notices the service generated",
     F(outq.delays),
     false},
    {"queue_messages.inbound",
     "ims_queue_messages",
     {"queue", "inbound"},
     G,
     "Queued Inbound",
     "Messages in a queue now: inbound (In, awaiting delivery), mts-in, mts-out, outbound (Out)",
     F(spool.queued),
     false},
    {"queue_messages.mts-in",
     "ims_queue_messages",
     {"queue", "mts-in"},
     G,
     "Queued MTS-IN",
     NULL,
     F(spool.mts_in_queued),
     false},
    {"queue_messages.mts-out",
     "ims_queue_messages",
     {"queue", "mts-out"},
     G,
     "Queued MTS-OUT",
     NULL,
     F(mts_out_queued),
     false},
    {"queue_messages.outbound",
     "ims_queue_messages",
     {"queue", "outbound"},
     G,
     "Queued Outbound",
     NULL,
     F(outq.messages),
     false},
    {"queue_bytes.mts-in",
     "ims_queue_bytes",
     {"queue", "mts-in"},
     G,
     "Bytes Queued MTS-IN",
     "Bytes of the messages in a queue now",
     F(spool.mts_in_bytes),
     false},
    {"queue_bytes.mts-out",
     "ims_queue_bytes",
     {"queue", "mts-out"},
     G,
     "Bytes Queued MTS-OUT",
     NULL,
     F(mts_out.bytes),
     false},
    {"queue_recipients.outbound",
     "ims_queue_recipients",
     {"queue", "outbound"},
     G,
     NULL,
     "Recipients not final in a queue now",
     F(outq.rcpts),
     false},
    {"mts_in_entered_total",
     "ims_mts_in_messages_entered_total",
     {0},
     C,
     "Messages Entering MTS-IN",
     "Messages written into the gateway's MTS-IN",
     F(spool.mts_in_entered),
     false},
    {"mts_out_entered_total",
     "ims_mts_out_messages_entered_total",
     {0},
     C,
     "Messages Entering MTS-OUT",
     "Messages the service took from the gateway's MTS-OUT",
     F(mts_out.entered),
     false},
    {"mts_out_left_total",
     "ims_mts_out_messages_left_total",
     {0},
     C,
     "Messages Leaving MTS-OUT",
     "Messages taken from MTS-OUT that were spooled or moved to Bad",
     F(mts_out.left),
     false},
    {"pickup_messages_total",
     "ims_pickup_messages_total",
     {0},
     C,
     NULL,
     "Messages spooled from the Pickup directory",
     F(pickup.taken),
     false},
    {"mts_out_bad_total",
     "ims_mts_out_bad_total",
     {0},
     C,
     NULL,
     "Files of MTS-OUT moved to the gateway's Bad folder as unusable",
     F(mts_out.bad),
     false},
    {"pickup_bad_total",
     "ims_pickup_bad_total",
     {0},
     C,
     NULL,
     "Files of the Pickup directory moved to Pickup/Archive as unusable",
     F(pickup.bad),
     false},
    {"spool_commit_rounds_total",
     "ims_spool_commit_rounds_total",
     {0},
     C,
     NULL,
     "Spool commit rounds (one sync of In each)",
     F(spool.rounds),
     true},
    {"spool_messages_committed_total",
     "ims_spool_messages_committed_total",
     {0},
     C,
     NULL,
     "Messages the spool made durable (divided by the rounds: messages per round)",
     F(spool.committed),
     true},
    {"spool_file_syncs_total",
     "ims_spool_file_syncs_total",
     {0},
     C,
     NULL,
     "fdatasync calls on spool files (SyncPerFile 1; 0 when rounds are synced by syncfs)",
     F(spool.file_syncs),
     false},
    {"spool_files_reused_total",
     "ims_spool_files_reused_total",
     {0},
     C,
     NULL,
     "New messages written into a finished message's file (Work/free.<n>) instead of a new one",
     F(spool.files_reused),
     false},
    {"spool_commit_failures_total",
     "ims_spool_commit_failures_total",
     {0},
     C,
     NULL,
     "Spool commits that failed",
     F(spool.failed),
     false},
    {"recipients_delivered_total.local",
     "ims_recipients_delivered_total",
     {"route", "local"},
     C,
     NULL,
     "Recipients delivered: local (into a mailbox), remote (to a remote server)",
     F(spool.delivered),
     true},
    {"recipients_delivered_total.remote",
     "ims_recipients_delivered_total",
     {"route", "remote"},
     C,
     NULL,
     NULL,
     F(outq.delivered),
     true},
    {"recipients_deferred_total.local",
     "ims_recipients_deferred_total",
     {"route", "local"},
     C,
     NULL,
     "Delivery attempts of a recipient that failed and wait for a retry",
     F(spool.deferred),
     false},
    {"recipients_deferred_total.remote",
     "ims_recipients_deferred_total",
     {"route", "remote"},
     C,
     NULL,
     NULL,
     F(outq.deferred),
     false},
    {"recipients_failed_total.remote",
     "ims_recipients_failed_total",
     {"route", "remote"},
     C,
     NULL,
     "Recipients that failed for good (a report follows when asked for)",
     F(outq.failed),
     false},
    {"tls_handshakes_total.inbound",
     "ims_tls_handshakes_total",
     {"direction", "inbound"},
     C,
     NULL,
     "TLS handshakes completed",
     F(own.tls_in_ok),
     false},
    {"tls_handshakes_total.outbound",
     "ims_tls_handshakes_total",
     {"direction", "outbound"},
     C,
     NULL,
     NULL,
     F(own.tls_out_ok),
     false},
    {"tls_handshakes_failed_total.inbound",
     "ims_tls_handshakes_failed_total",
     {"direction", "inbound"},
     C,
     NULL,
     "TLS handshakes that failed",
     F(own.tls_in_failed),
     false},
    {"tls_handshakes_failed_total.outbound",
     "ims_tls_handshakes_failed_total",
     {"direction", "outbound"},
     C,
     NULL,
     NULL,
     F(own.tls_out_failed),
     false},
    {"dns_failures_total",
     "ims_dns_failures_total",
     {0},
     C,
     NULL,
     "Lookups of a destination's mail exchangers or addresses that failed",
     F(own.dns_failures),
     false},
};

#undef F
#undef C
#undef G

#define NDEFS (sizeof defs / sizeof defs[0])

static uint64_t def_value(const stat_def *d, const imsd_snap *s)
{
    const char *p = (const char *)s + d->off;
    if (d->size == sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    unsigned v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* --- the history ------------------------------------------------------------------------- */

typedef struct stats_sample {
    time_t wall;   /* unix seconds */
    uint64_t mono; /* ims_clock_ms */
    uint64_t v[NDEFS];
} stats_sample;

typedef struct imsd_stats_ring {
    imsd_server *srv;
    struct event *timer;
    stats_sample s[IMSD_STATS_HISTORY];
    size_t head, n; /* the next slot; samples kept */
} imsd_stats_ring;

void imsd_stats_init(imsd_stats *st)
{
    memset(st, 0, sizeof *st);
    clock_gettime(CLOCK_MONOTONIC, &st->started);
}

/* sample_at - the k-th newest sample (0: the newest); k < ring->n. */
static const stats_sample *sample_at(const imsd_stats_ring *r, size_t k)
{
    return &r->s[(r->head + IMSD_STATS_HISTORY - 1 - k) % IMSD_STATS_HISTORY];
}

static void take_sample(imsd_stats_ring *r)
{
    imsd_snap snap;
    imsd_stats_snapshot(r->srv, &snap);
    stats_sample *x = &r->s[r->head];
    x->wall = time(NULL);
    x->mono = ims_clock_ms();
    for (size_t i = 0; i < NDEFS; i++)
        x->v[i] = def_value(&defs[i], &snap);
    r->head = (r->head + 1) % IMSD_STATS_HISTORY;
    if (r->n < IMSD_STATS_HISTORY)
        r->n++;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    take_sample(arg);
}

/* rate - per second of counter i over the last `secs` seconds (the oldest sample within
 * them); -1 when the history is too short. */
static double rate(const imsd_stats_ring *r, size_t i, unsigned secs)
{
    if (!r || r->n < 2)
        return -1;
    const stats_sample *now = sample_at(r, 0), *then = NULL;
    for (size_t k = 1; k < r->n; k++) {
        const stats_sample *x = sample_at(r, k);
        if (now->mono - x->mono > (uint64_t)secs * 1000)
            break;
        then = x;
    }
    if (!then || now->mono <= then->mono || now->v[i] < then->v[i])
        return -1;
    return (double)(now->v[i] - then->v[i]) * 1000.0 / (double)(now->mono - then->mono);
}

/* --- snapshots --------------------------------------------------------------------------- */

void imsd_stats_snapshot(imsd_server *srv, imsd_snap *out)
{
    memset(out, 0, sizeof *out);
    out->own = *srv->stats;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long up = (long long)(now.tv_sec - srv->stats->started.tv_sec);
    out->uptime = up < 0 ? 0 : (uint64_t)up;
    imsd_mail_stats(srv, out);
    out->mts_out_queued =
        out->mts_out.entered > out->mts_out.left ? out->mts_out.entered - out->mts_out.left : 0;
    imsd_server_states(srv, out);
}

/* --- the console ------------------------------------------------------------------------- */

void imsd_stats_print(imsd_server *srv, FILE *f)
{
    imsd_snap s;
    imsd_stats_snapshot(srv, &s);
    long long up = (long long)s.uptime;
    char stamp[STATS_STAMP_MAX];
    time_t wall = time(NULL);
    struct tm tm;
    if (!localtime_r(&wall, &tm) || !strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(stamp, sizeof stamp, "%lld", (long long)wall);
    /* A fixed layout: one block, the same lines in the same columns every time, so that a
     * terminal left running reads like a table and a script can cut columns out of it. */
    fprintf(f,
            "---- %s statistics at %s, up %lldd %02lld:%02lld:%02lld ----\n"
            "Connections inbound    current %10u   total    %10llu   rejected %10llu\n"
            "Connections outbound   current %10u   total    %10llu   failed   %10llu\n"
            "Messages               inbound %10llu   outbound %10llu\n"
            "Queues                 MTS-IN  %10llu   MTS-OUT  %10llu\n"
            "                       inbound %10llu   outbound %10llu\n"
            "NDRs                   inbound %10llu   outbound %10llu\n",
            IMS_SERVICE_NAME, stamp, up / SECONDS_PER_DAY, up % SECONDS_PER_DAY / SECONDS_PER_HOUR,
            up % SECONDS_PER_HOUR / SECONDS_PER_MINUTE, up % SECONDS_PER_MINUTE,
            s.own.conn_in_current, (unsigned long long)s.own.conn_in_total,
            (unsigned long long)s.own.conn_in_rejected, s.own.conn_out_current,
            (unsigned long long)s.own.conn_out_total, (unsigned long long)s.own.conn_out_failed,
            (unsigned long long)s.own.msg_in, (unsigned long long)s.own.msg_out,
            (unsigned long long)s.spool.mts_in_queued, (unsigned long long)s.mts_out_queued,
            (unsigned long long)s.spool.queued, (unsigned long long)s.outq.messages,
            (unsigned long long)s.own.ndr_in, (unsigned long long)s.outq.ndrs);
    fflush(f);
}

/* --- the control commands ---------------------------------------------------------------- */

static void rate_text(double r, char *out, size_t n)
{
    if (r < 0)
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%.3f", r);
}

/* ctl_stats - "stats": one line per counter, TAB-separated: key, value, rate per second over
 * the last 10 s and 60 s ("-": not kept, or not known yet), the original's name ("" when
 * none), what it counts. Then the session states and the latency histograms. */
static void ctl_stats(void *arg, imsd_ctl_req *r, int argc, char **argv)
{
    (void)argv;
    imsd_stats *st = arg;
    if (argc != 1) {
        imsd_ctl_end(r, EINVAL, "stats takes no arguments");
        return;
    }
    imsd_server *srv = st->ring->srv;
    imsd_snap s;
    imsd_stats_snapshot(srv, &s);
    const char *help = "";
    for (size_t i = 0; i < NDEFS; i++) {
        const stat_def *d = &defs[i];
        if (d->help)
            help = d->help;
        char r10[32], r60[32];
        rate_text(d->rate ? rate(st->ring, i, STATS_RATE_SHORT) : -1, r10, sizeof r10);
        rate_text(d->rate ? rate(st->ring, i, STATS_RATE_LONG) : -1, r60, sizeof r60);
        imsd_ctl_printf(r, "%s\t%llu\t%s\t%s\t%s\t%s\n", d->key,
                        (unsigned long long)def_value(d, &s), r10, r60,
                        d->original ? d->original : "", help);
    }
    for (size_t i = 0; i < s.nstates; i++)
        imsd_ctl_printf(r, "sessions_inbound.%s\t%llu\t-\t-\t\tInbound sessions in this state\n",
                        s.state_name[i], (unsigned long long)s.state_count[i]);
    const ims_latency *lat[2] = {&s.spool.latency_local, &s.outq.latency_remote};
    static const char *const route[2] = {"local", "remote"};
    for (size_t k = 0; k < 2; k++) {
        uint64_t total = 0;
        for (size_t b = 0; b <= IMS_LATENCY_BUCKETS; b++) {
            total += lat[k]->count[b];
            if (b < IMS_LATENCY_BUCKETS)
                imsd_ctl_printf(r,
                                "delivery_latency_seconds.%s.le_%u\t%llu\t-\t-\t\tRecipients "
                                "delivered within this many seconds of arrival\n",
                                route[k], ims_latency_bound(b), (unsigned long long)total);
        }
        imsd_ctl_printf(r,
                        "delivery_latency_seconds.%s.count\t%llu\t-\t-\t\tRecipients delivered "
                        "(latency observed)\n"
                        "delivery_latency_seconds.%s.sum\t%llu\t-\t-\t\tTheir latencies, "
                        "seconds added up\n",
                        route[k], (unsigned long long)total, route[k],
                        (unsigned long long)lat[k]->sum);
    }
    imsd_ctl_end(r, 0, NULL);
}

/* history_cursor - a stats-history stream's place: the samples copied at its start. */
typedef struct history_cursor {
    stats_sample *rows;
    size_t n, next;
} history_cursor;

static bool history_more(void *arg, imsd_ctl_req *r)
{
    history_cursor *h = arg;
    for (int k = 0; k < 32 && h->next < h->n; k++, h->next++) {
        const stats_sample *x = &h->rows[h->next];
        buf line = BUF_INIT;
        int rc = buf_printf(&line, "%lld", (long long)x->wall);
        for (size_t i = 0; !rc && i < NDEFS; i++)
            rc = buf_printf(&line, "\t%llu", (unsigned long long)x->v[i]);
        if (!rc)
            rc = buf_addc(&line, '\n');
        if (rc) {
            buf_free(&line);
            imsd_ctl_end(r, ENOMEM, "out of memory");
            free(h->rows);
            free(h);
            return false;
        }
        imsd_ctl_write(r, line.data, line.len);
        buf_free(&line);
    }
    if (h->next < h->n)
        return false;
    free(h->rows);
    free(h);
    return true;
}

static void history_cancel(void *arg)
{
    history_cursor *h = arg;
    free(h->rows);
    free(h);
}

/* ctl_history - "stats-history": a header line "time<TAB>key..." (the keys of "stats"'s
 * table), then one line per second kept, oldest first: unix time and every value. */
static void ctl_history(void *arg, imsd_ctl_req *r, int argc, char **argv)
{
    (void)argv;
    imsd_stats *st = arg;
    if (argc != 1) {
        imsd_ctl_end(r, EINVAL, "stats-history takes no arguments");
        return;
    }
    const imsd_stats_ring *ring = st->ring;
    history_cursor *h = calloc(1, sizeof *h);
    if (h && ring->n)
        h->rows = calloc(ring->n, sizeof *h->rows);
    if (!h || (ring->n && !h->rows)) {
        free(h);
        imsd_ctl_end(r, ENOMEM, "out of memory");
        return;
    }
    for (size_t k = 0; k < ring->n; k++)
        h->rows[k] = *sample_at(ring, ring->n - 1 - k);
    h->n = ring->n;
    buf head = BUF_INIT;
    int rc = buf_adds(&head, "time");
    for (size_t i = 0; !rc && i < NDEFS; i++)
        rc = buf_printf(&head, "\t%s", defs[i].key);
    if (!rc)
        rc = buf_addc(&head, '\n');
    if (rc) {
        buf_free(&head);
        history_cancel(h);
        imsd_ctl_end(r, ENOMEM, "out of memory");
        return;
    }
    imsd_ctl_write(r, head.data, head.len);
    buf_free(&head);
    imsd_ctl_stream(r, history_more, h, history_cancel);
}

int imsd_stats_history_json(const imsd_stats *st, int64_t since, buf *out)
{
    const imsd_stats_ring *ring = st->ring;
    int rc = buf_adds(out, "{\"keys\":[");
    for (size_t i = 0; !rc && i < NDEFS; i++) {
        if (i)
            rc = buf_addc(out, ',');
        if (!rc)
            rc = ims_json_string(out, defs[i].key);
    }
    if (!rc)
        rc = buf_adds(out, "],\"samples\":[");
    bool first = true;
    for (size_t k = ring ? ring->n : 0; !rc && k-- > 0;) {
        const stats_sample *x = sample_at(ring, k);
        if ((int64_t)x->wall <= since)
            continue;
        rc = buf_printf(out, "%s[%lld,%llu", first ? "" : ",", (long long)x->wall,
                        (unsigned long long)x->mono);
        for (size_t i = 0; !rc && i < NDEFS; i++)
            rc = buf_printf(out, ",%llu", (unsigned long long)x->v[i]);
        if (!rc)
            rc = buf_addc(out, ']');
        first = false;
    }
    return rc ? rc : buf_adds(out, "]}");
}

int imsd_stats_start(imsd_stats *st, imsd_server *srv, imsd_control *ctl)
{
    imsd_stats_ring *r = calloc(1, sizeof *r);
    if (!r)
        return ENOMEM;
    r->srv = srv;
    r->timer = event_new(srv->base, -1, EV_PERSIST, on_tick, r);
    struct timeval one = {1, 0};
    if (!r->timer || event_add(r->timer, &one)) {
        if (r->timer)
            event_free(r->timer);
        free(r);
        return ENOMEM;
    }
    st->ring = r;
    take_sample(r);
    if (ctl && (imsd_control_register(ctl, "stats", ctl_stats, st) ||
                imsd_control_register(ctl, "stats-history", ctl_history, st)))
        return ENOMEM;
    return 0;
}

void imsd_stats_stop(imsd_stats *st)
{
    if (!st->ring)
        return;
    event_free(st->ring->timer);
    free(st->ring);
    st->ring = NULL;
}

/* --- /metrics ---------------------------------------------------------------------------- */

int imsd_stats_metrics(imsd_server *srv, buf *out)
{
    imsd_snap s;
    imsd_stats_snapshot(srv, &s);
    int rc = 0;
    for (size_t i = 0; !rc && i < NDEFS; i++) {
        const stat_def *d = &defs[i];
        if (i == 0 || strcmp(defs[i - 1].family, d->family))
            rc = ims_metric_head(out, d->family, d->help, d->type);
        const char *labels[3] = {d->label[0], d->label[1], NULL};
        if (!rc)
            rc = ims_metric_sample(out, d->family, d->label[0] ? labels : NULL, def_value(d, &s));
    }
    if (!rc)
        rc = ims_metric_head(out, "ims_sessions_inbound",
                             "Inbound SMTP sessions open now, by state", IMS_METRIC_GAUGE);
    for (size_t i = 0; !rc && i < s.nstates; i++) {
        const char *labels[3] = {"state", s.state_name[i], NULL};
        rc = ims_metric_sample(out, "ims_sessions_inbound", labels, s.state_count[i]);
    }
    if (!rc)
        rc = ims_metric_head(out, "ims_delivery_latency_seconds",
                             "Seconds from a message's arrival to a recipient's final delivery",
                             IMS_METRIC_HISTOGRAM);
    const char *local[3] = {"route", "local", NULL}, *remote[3] = {"route", "remote", NULL};
    if (!rc)
        rc = ims_metric_histogram(out, "ims_delivery_latency_seconds", local,
                                  &s.spool.latency_local);
    if (!rc)
        rc = ims_metric_histogram(out, "ims_delivery_latency_seconds", remote,
                                  &s.outq.latency_remote);
    return rc;
}

/* metrics_get - GET /metrics: the Prometheus text exposition format, version 0.0.4. */
static void metrics_get(void *arg, struct evhttp_request *req)
{
    imsd_server *srv = arg;
    buf b = BUF_INIT;
    struct evbuffer *body = evbuffer_new();
    if (!body || imsd_stats_metrics(srv, &b) || evbuffer_add(body, b.data, b.len)) {
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, HTTP_OK, "OK", body);
    }
    if (body)
        evbuffer_free(body);
    buf_free(&b);
}

int imsd_stats_serve(imsd_http *h, imsd_server *srv)
{
    return imsd_http_route(h, "/metrics", metrics_get, srv);
}
