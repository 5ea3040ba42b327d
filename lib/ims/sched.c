/* sched.c - the scheduler: what waits for its next try, in a binary min-heap by due time.
 * The caller says what time it is, so a retry schedule is tested in microseconds. */
#include "ims/ims.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t ims_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ims_sched_init(ims_sched *s)
{
    memset(s, 0, sizeof *s);
}

void ims_sched_fini(ims_sched *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->heap[i]->slot = 0;
    free(s->heap);
    memset(s, 0, sizeof *s);
}

/* before - a comes first: earlier, or as early and scheduled first (equal times keep their
 * order, so a test's outcome does not depend on the heap's shape). */
static bool before(const ims_sched_node *a, const ims_sched_node *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void put(ims_sched *s, size_t i, ims_sched_node *n)
{
    s->heap[i] = n;
    n->slot = i + 1;
}

static void sift_up(ims_sched *s, size_t i)
{
    ims_sched_node *n = s->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(n, s->heap[parent]))
            break;
        put(s, i, s->heap[parent]);
        i = parent;
    }
    put(s, i, n);
}

static void sift_down(ims_sched *s, size_t i)
{
    ims_sched_node *n = s->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n)
            break;
        if (c + 1 < s->n && before(s->heap[c + 1], s->heap[c]))
            c++;
        if (!before(s->heap[c], n))
            break;
        put(s, i, s->heap[c]);
        i = c;
    }
    put(s, i, n);
}

int ims_sched_add(ims_sched *s, ims_sched_node *node, uint64_t due)
{
    if (node->slot) {
        ims_sched_remove(s, node);
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        ims_sched_node **h = realloc(s->heap, cap * sizeof *h);
        if (!h)
            return ENOMEM;
        s->heap = h;
        s->cap = cap;
    }
    node->due = due;
    node->seq = s->next_seq++;
    s->heap[s->n++] = node;
    sift_up(s, s->n - 1);
    return 0;
}

void ims_sched_remove(ims_sched *s, ims_sched_node *node)
{
    if (!node->slot || node->slot > s->n || s->heap[node->slot - 1] != node)
        return; /* not queued here */
    size_t i = node->slot - 1;
    node->slot = 0;
    ims_sched_node *last = s->heap[--s->n];
    if (i == s->n)
        return;
    put(s, i, last);
    if (i > 0 && before(last, s->heap[(i - 1) / 2]))
        sift_up(s, i);
    else
        sift_down(s, i);
}

ims_sched_node *ims_sched_pop_due(ims_sched *s, uint64_t now)
{
    if (!s->n || s->heap[0]->due > now)
        return NULL;
    ims_sched_node *n = s->heap[0];
    ims_sched_remove(s, n);
    return n;
}

bool ims_sched_next(const ims_sched *s, uint64_t *due)
{
    if (!s->n)
        return false;
    *due = s->heap[0]->due;
    return true;
}

size_t ims_sched_count(const ims_sched *s)
{
    return s->n;
}
