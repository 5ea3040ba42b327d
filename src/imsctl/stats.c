/* stats.c - `imsctl stats [--json]`: the running service's performance counters (the control
 * command "stats"), as a table with the original's names, or as JSON for scripts. */
#include "imsctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_ROWS_MAX 512 /* counters kept from one answer */
#define STATS_FIELDS 6     /* key, value, rate 10 s, rate 60 s, original, help */

typedef struct stat_row {
    char *field[STATS_FIELDS];
} stat_row;

typedef struct stat_rows {
    stat_row v[STATS_ROWS_MAX];
    size_t n;
    bool bad;
} stat_rows;

/* take_line - one "stats" line, TAB-separated fields, copied. */
static int take_line(void *arg, const char *line, size_t len)
{
    stat_rows *rows = arg;
    if (rows->n == STATS_ROWS_MAX)
        return 0; /* more than we show: the rest is dropped */
    stat_row *r = &rows->v[rows->n];
    const char *p = line, *end = line + len;
    for (size_t i = 0; i < STATS_FIELDS; i++) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));
        const char *stop = tab ? tab : end;
        r->field[i] = strndup(p, (size_t)(stop - p));
        if (!r->field[i])
            return ENOMEM;
        p = tab ? tab + 1 : end;
    }
    if (!r->field[0][0] || !r->field[1][0]) {
        rows->bad = true;
        for (size_t i = 0; i < STATS_FIELDS; i++)
            free(r->field[i]);
        return 0;
    }
    rows->n++;
    return 0;
}

static void rows_free(stat_rows *rows)
{
    for (size_t k = 0; k < rows->n; k++)
        for (size_t i = 0; i < STATS_FIELDS; i++)
            free(rows->v[k].field[i]);
    rows->n = 0;
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* json_object - "name": {key: field i, ...}; rates "-" are left out. */
static void json_object(const stat_rows *rows, const char *name, size_t i, bool number)
{
    printf("  \"%s\": {", name);
    bool first = true;
    for (size_t k = 0; k < rows->n; k++) {
        const char *v = rows->v[k].field[i];
        if (!v[0] || !strcmp(v, "-"))
            continue;
        printf("%s\n    ", first ? "" : ",");
        json_string(rows->v[k].field[0]);
        fputs(": ", stdout);
        if (number)
            fputs(v, stdout);
        else
            json_string(v);
        first = false;
    }
    printf("%s}", first ? "" : "\n  ");
}

static void print_json(const stat_rows *rows)
{
    fputs("{\n", stdout);
    json_object(rows, "counters", 1, true);
    fputs(",\n", stdout);
    json_object(rows, "rates_10s", 2, true);
    fputs(",\n", stdout);
    json_object(rows, "rates_60s", 3, true);
    fputs(",\n", stdout);
    json_object(rows, "original", 4, false);
    fputs("\n}\n", stdout);
}

static void print_table(const stat_rows *rows)
{
    printf("%-40s %14s %10s %10s  %s\n", "Counter", "Value", "/s 10 s", "/s 60 s", "Original name");
    for (size_t k = 0; k < rows->n; k++) {
        char *const *f = rows->v[k].field;
        printf("%-40s %14s %10s %10s  %s\n", f[0], f[1], f[2], f[3], f[4]);
    }
}

int ic_cmd_stats(bool json)
{
    ic_paths p;
    if (ic_paths_init(&p))
        return ic_error("the state root's path is too long");
    stat_rows *rows = calloc(1, sizeof *rows);
    if (!rows)
        return ic_error("out of memory");
    char err[512];
    static const char *const req[] = {"stats"};
    int rc = ic_control_call(&p, 1, req, take_line, rows, err, sizeof err);
    int status = IC_EXIT_OK;
    if (ic_control_not_running(rc)) {
        fprintf(stderr, "imsctl: the service is not running\n");
        status = IC_EXIT_STOPPED;
    } else if (rc) {
        status = ic_error("stats: %s", err);
    } else if (rows->bad) {
        status = ic_error("stats: the service's answer has a malformed line");
    } else if (json) {
        print_json(rows);
    } else {
        print_table(rows);
    }
    rows_free(rows);
    free(rows);
    return status;
}
