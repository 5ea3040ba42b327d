/* track.c - `imsctl track`: a message's life from the tracking log (<state root>/Tracking.log),
 * found by queue id, Message-ID, sender or recipient in a time range; text or JSON. */
#include "imsctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"

#define TRACK_DEFAULT_DAYS 30 /* the range when --since is not given */
#define TRACK_DAY 86400

static const char track_usage[] =
    "Usage: imsctl track [--id QID] [--message-id ID] [--sender ADDR] [--recipient ADDR]\n"
    "                    [--since DATE] [--until DATE] [--json]\n"
    "DATE: YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\" (GMT); default: the last 30 days.\n";

enum { T_ID, T_MSGID, T_SENDER, T_RCPT, T_SINCE, T_UNTIL, T_JSON, T_COUNT };
static const struct {
    const char *name;
    bool value;
} track_opts[T_COUNT] = {
    [T_ID] = {"id", true},          [T_MSGID] = {"message-id", true}, [T_SENDER] = {"sender", true},
    [T_RCPT] = {"recipient", true}, [T_SINCE] = {"since", true},      [T_UNTIL] = {"until", true},
    [T_JSON] = {"json", false},
};

/* parse_date - DATE into *out; a date alone is its first second (end: its last). */
static bool parse_date(const char *s, bool end, time_t *out)
{
    int y, mo, d, h = 0, mi = 0, se = 0, used = 0;
    size_t n = strlen(s);
    if (n == 10) {
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10)
            return false;
        if (end) {
            h = 23;
            mi = se = 59;
        }
    } else if (n == 19) {
        if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &used) != 6 ||
            used != 19 || s[10] != ' ')
            return false;
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= '0' && s[i] <= '9') && i != 4 && i != 7 && i != 10 && i != 13 && i != 16)
            return false;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = se};
    time_t t = timegm(&tm);
    struct tm back;
    if (!gmtime_r(&t, &back) || back.tm_mday != d) /* 2026-02-30 */
        return false;
    *out = t;
    return true;
}

static void put_time(FILE *o, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    fprintf(o, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* json_str - s as a JSON string: control characters escaped; a field that is not UTF-8 (a
 * raw 8-bit address) has its bytes >= 0x80 escaped as Latin-1, so the output always parses. */
static void json_str(FILE *o, const char *s)
{
    bool utf8 = base_utf8_valid(s, strlen(s));
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
            fprintf(o, "\\u%04x", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

static void json_field(FILE *o, const char *name, const char *v, bool comma)
{
    fprintf(o, "%s\"%s\": ", comma ? ", " : "", name);
    json_str(o, v);
}

static void print_json(FILE *o, const ims_track_result *r)
{
    fputs("[\n", o);
    for (size_t i = 0; i < r->nmsgs; i++) {
        const ims_track_msg *m = &r->msgs[i];
        fputs("  {", o);
        json_field(o, "queue_id", m->qid, false);
        json_field(o, "message_id", m->message_id, true);
        json_field(o, "sender", m->sender, true);
        fputs(", \"events\": [\n", o);
        for (size_t k = 0; k < m->nevents; k++) {
            const ims_track_line *e = &m->events[k];
            fputs("    {\"time\": \"", o);
            put_time(o, e->when);
            fprintf(o, " GMT\", \"event\": %u", e->event);
            json_field(o, "name", ims_track_event_name(e->event), true);
            json_field(o, "queue_id", e->qid, true);
            json_field(o, "sender", e->sender, true);
            json_field(o, "recipient", e->rcpt, true);
            fprintf(o, ", \"size\": %llu", (unsigned long long)e->size);
            json_field(o, "client", e->client, true);
            json_field(o, "host", e->host, true);
            json_field(o, "tls", e->tls, true);
            json_field(o, "remote", e->remote, true);
            json_field(o, "reply", e->reply, true);
            json_field(o, "message_id", e->message_id, true);
            json_field(o, "report_queue_id", e->ref, true);
            json_field(o, "actor", e->actor, true);
            fprintf(o, "}%s\n", k + 1 < m->nevents ? "," : "");
        }
        fprintf(o, "  ]}%s\n", i + 1 < r->nmsgs ? "," : "");
    }
    fputs("]\n", o);
}

static void print_text(FILE *o, const ims_track_result *r)
{
    for (size_t i = 0; i < r->nmsgs; i++) {
        const ims_track_msg *m = &r->msgs[i];
        fprintf(o, "%sMessage %s\n", i ? "\n" : "", m->qid);
        fprintf(o, "  Message-ID: %s\n", *m->message_id ? m->message_id : "(none)");
        fprintf(o, "  Sender:     %s\n", m->sender);
        for (size_t k = 0; k < m->nevents; k++) {
            const ims_track_line *e = &m->events[k];
            fputs("  ", o);
            put_time(o, e->when);
            fprintf(o, " GMT  %u %-34s %s", e->event, ims_track_event_name(e->event), e->rcpt);
            if (e->event == IMS_TRACK_RECEIVED_INBOUND && *e->client)
                fprintf(o, "  from %s", e->client);
            if (*e->remote)
                fprintf(o, "  remote %s", e->remote);
            if (*e->reply)
                fprintf(o, "  reply \"%s\"", e->reply);
            if (*e->tls && strcmp(e->tls, "plain"))
                fprintf(o, "  (%s)", e->tls);
            if (*e->ref)
                fprintf(o, "  report %s", e->ref);
            if (*e->actor)
                fprintf(o, "  by %s", e->actor);
            fputc('\n', o);
        }
    }
}

int ic_cmd_track(int argc, char **argv)
{
    const char *val[T_COUNT] = {0};
    bool seen[T_COUNT] = {0};
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            fputs(track_usage, stdout);
            return IC_EXIT_OK;
        }
        if (strncmp(arg, "--", 2) || !arg[2])
            return ic_usage_error("track: unexpected argument \"%s\"", arg);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int opt = -1;
        for (int k = 0; k < T_COUNT; k++)
            if (strlen(track_opts[k].name) == len && !strncmp(track_opts[k].name, name, len))
                opt = k;
        if (opt < 0)
            return ic_usage_error("track: unknown option \"--%.*s\"", (int)len, name);
        if (seen[opt])
            return ic_usage_error("track: --%s given twice", track_opts[opt].name);
        seen[opt] = true;
        if (!track_opts[opt].value) {
            if (eq)
                return ic_usage_error("track: --%s takes no value", track_opts[opt].name);
            continue;
        }
        if (eq)
            val[opt] = eq + 1;
        else if (i + 1 < argc)
            val[opt] = argv[++i];
        else
            return ic_usage_error("track: --%s needs a value", track_opts[opt].name);
        if (!*val[opt] && opt != T_SENDER)
            return ic_usage_error("track: --%s needs a value", track_opts[opt].name);
        if (strlen(val[opt]) >= IMS_TRACK_FIELD_MAX)
            return ic_usage_error("track: --%s is longer than %d bytes", track_opts[opt].name,
                                  IMS_TRACK_FIELD_MAX - 1);
    }
    ims_track_query q = {
        .qid = val[T_ID], .message_id = val[T_MSGID], .sender = val[T_SENDER], .rcpt = val[T_RCPT]};
    q.until = time(NULL);
    if (val[T_UNTIL] && !parse_date(val[T_UNTIL], true, &q.until))
        return ic_usage_error("track: --until wants YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\" (GMT), "
                              "not \"%s\"",
                              val[T_UNTIL]);
    q.since = q.until - (time_t)TRACK_DEFAULT_DAYS * TRACK_DAY;
    if (val[T_SINCE] && !parse_date(val[T_SINCE], false, &q.since))
        return ic_usage_error("track: --since wants YYYY-MM-DD or \"YYYY-MM-DD HH:MM:SS\" (GMT), "
                              "not \"%s\"",
                              val[T_SINCE]);
    if (q.since > q.until)
        return ic_usage_error("track: --since is after --until");
    if (getenv("IMS_TRACK_NO_INDEX")) /* benchmarks: the cost without the index */
        q.no_index = true;

    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/Tracking.log", base_state_root()) >= (int)sizeof dir)
        return ic_error("the state root's path is too long");
    ims_track_result r;
    int rc = ims_track_find(dir, &q, &r);
    if (rc == ENOENT) {
        ims_track_result_free(&r);
        fprintf(stderr, "imsctl: no tracking log in %s\n", dir);
        return IC_EXIT_FAIL;
    }
    if (rc) {
        ims_track_result_free(&r);
        return ic_error("cannot read the tracking log in %s: %s", dir, strerror(rc));
    }
    if (!r.nmsgs) {
        ims_track_result_free(&r);
        if (seen[T_JSON])
            fputs("[]\n", stdout);
        fputs("imsctl: no message matched\n", stderr);
        return IC_EXIT_FAIL;
    }
    if (seen[T_JSON])
        print_json(stdout, &r);
    else
        print_text(stdout, &r);
    if (r.truncated)
        ic_warn("more matched than shown (at most %d messages of %d events each)",
                IMS_TRACK_MAX_MESSAGES, IMS_TRACK_MAX_EVENTS);
    ims_track_result_free(&r);
    return fflush(stdout) ? ic_error("cannot write the output: %s", strerror(errno)) : IC_EXIT_OK;
}
