/* metrics.c - the delivery latency histogram and the Prometheus text exposition format
 * (version 0.0.4): HELP and TYPE lines, samples with escaped labels, cumulative buckets. */
#include "ims/ims.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const unsigned latency_bounds[IMS_LATENCY_BUCKETS] = IMS_LATENCY_BOUNDS;

void ims_latency_add(ims_latency *h, int64_t seconds)
{
    uint64_t s = seconds < 0 ? 0 : (uint64_t)seconds;
    size_t i = 0;
    while (i < IMS_LATENCY_BUCKETS && s > latency_bounds[i])
        i++;
    h->count[i]++;
    h->sum += s;
}

unsigned ims_latency_bound(size_t i)
{
    return i < IMS_LATENCY_BUCKETS ? latency_bounds[i] : 0;
}

static bool name_ok(const char *n)
{
    if (!n || !*n)
        return false;
    for (const char *p = n; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
        if (!alpha && !(p > n && *p >= '0' && *p <= '9'))
            return false;
    }
    return true;
}

/* add_escaped - text with \\ and newline escaped, and " too when quoted (label values). */
static int add_escaped(buf *out, const char *text, bool quoted)
{
    for (const char *p = text; *p; p++) {
        int rc;
        if (*p == '\\')
            rc = buf_adds(out, "\\\\");
        else if (*p == '\n')
            rc = buf_adds(out, "\\n");
        else if (*p == '"' && quoted)
            rc = buf_adds(out, "\\\"");
        else
            rc = buf_addc(out, (uint8_t)*p);
        if (rc)
            return ENOMEM;
    }
    return 0;
}

int ims_metric_head(buf *out, const char *name, const char *help, ims_metric_type type)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    if (!name_ok(name) || (unsigned)type > IMS_METRIC_HISTOGRAM)
        return EINVAL;
    if (buf_printf(out, "# HELP %s ", name) || add_escaped(out, help ? help : "", false) ||
        buf_printf(out, "\n# TYPE %s %s\n", name, types[type]))
        return ENOMEM;
    return 0;
}

/* labels_add - "{k="v",...}" with extra ("le", value) last when given; nothing when empty. */
static int labels_add(buf *out, const char *const *labels, const char *le)
{
    bool any = false;
    for (size_t i = 0; labels && labels[i]; i += 2) {
        if (!name_ok(labels[i]) || !labels[i + 1])
            return EINVAL;
        if (buf_adds(out, any ? "," : "{") || buf_printf(out, "%s=\"", labels[i]) ||
            add_escaped(out, labels[i + 1], true) || buf_addc(out, '"'))
            return ENOMEM;
        any = true;
    }
    if (le) {
        if (buf_printf(out, "%sle=\"%s\"", any ? "," : "{", le))
            return ENOMEM;
        any = true;
    }
    if (any && buf_addc(out, '}'))
        return ENOMEM;
    return 0;
}

static int sample(buf *out, const char *name, const char *suffix, const char *const *labels,
                  const char *le, uint64_t value)
{
    if (!name_ok(name))
        return EINVAL;
    if (buf_printf(out, "%s%s", name, suffix))
        return ENOMEM;
    int rc = labels_add(out, labels, le);
    if (rc)
        return rc;
    return buf_printf(out, " %llu\n", (unsigned long long)value) ? ENOMEM : 0;
}

int ims_metric_sample(buf *out, const char *name, const char *const *labels, uint64_t value)
{
    return sample(out, name, "", labels, NULL, value);
}

int ims_metric_histogram(buf *out, const char *name, const char *const *labels,
                         const ims_latency *h)
{
    uint64_t total = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i <= IMS_LATENCY_BUCKETS; i++) {
        total += h->count[i];
        char le[16];
        if (i < IMS_LATENCY_BUCKETS)
            snprintf(le, sizeof le, "%u", latency_bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        rc = sample(out, name, "_bucket", labels, le, total);
    }
    if (!rc)
        rc = sample(out, name, "_sum", labels, NULL, h->sum);
    if (!rc)
        rc = sample(out, name, "_count", labels, NULL, total);
    return rc;
}
