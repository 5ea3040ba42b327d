/* regfx.h - the unit tests' fixture of a private state root: a registry context on a fresh
 * temporary directory, and an event log that records "<id>;" for each event (fx.events).
 * Include after cmocka.h; setup and teardown are cmocka's group-less fixtures. */
#ifndef IMS_TESTS_REGFX_H
#define IMS_TESTS_REGFX_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ims/ims.h"

struct fx {
    char dir[64];
    reg_ctx *reg;
    ims_log log;
    char events[8192]; /* "id;" for each event */
};

static inline void fx_sink(void *arg, const ims_event *ev)
{
    struct fx *fx = arg;
    size_t n = strlen(fx->events);
    snprintf(fx->events + n, sizeof fx->events - n, "%u;", ev->id);
}

static inline int fx_rm(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static inline int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    strcpy(fx->dir, "/tmp/ims_unit.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_int_equal(reg_ctx_open(fx->dir, &fx->reg), 0);
    fx->log.fn = fx_sink;
    fx->log.arg = fx;
    *state = fx;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *fx = *state;
    reg_ctx_close(fx->reg);
    nftw(fx->dir, fx_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* count_events - occurrences of "id;" in the events string. */
static inline int count_events(const char *events, const char *id)
{
    int n = 0;
    for (const char *p = events; (p = strstr(p, id)); p += strlen(id))
        n++;
    return n;
}

#endif
