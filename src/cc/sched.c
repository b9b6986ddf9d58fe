/* sched.c: the scheduler: how many instances of a type fit on a node, the
 * cluster's capacity per type, and placing a request's instances on nodes
 * by GREEDY or ROUNDROBIN.  Pure functions over a copy of the node table,
 * so they are tested without a cluster (tests/unit/test_cc_sched.c). */
#include <stdint.h>
#include <string.h>

#include "cc.h"

int64_t sched_fits(const struct cc_res *r, const struct cc_itype *t)
{
    int64_t fit = INT64_MAX;
    const int64_t have[3] = {r->cores, r->memory_mb, r->disk_gb};
    const int64_t need[3] = {t->cores, t->memory_mb, t->disk_gb};
    bool asks = false;
    for (int i = 0; i < 3; i++) {
        if (need[i] <= 0)
            continue;
        asks = true;
        int64_t f = have[i] > 0 ? have[i] / need[i] : 0;
        if (f < fit)
            fit = f;
    }
    return asks ? fit : 0;
}

void sched_capacity(const struct sched_node *nodes, size_t n,
                    const struct cc_itype *t, int64_t *max, int64_t *available)
{
    *max = 0;
    *available = 0;
    for (size_t i = 0; i < n; i++) {
        if (!nodes[i].usable)
            continue;
        *max += sched_fits(&nodes[i].max, t);
        *available += sched_fits(&nodes[i].free, t);
    }
}

static void take(struct cc_res *r, const struct cc_itype *t)
{
    r->cores -= t->cores;
    r->memory_mb -= t->memory_mb;
    r->disk_gb -= t->disk_gb;
}

int sched_place(enum cc_policy policy, struct sched_node *nodes, size_t n,
                const struct cc_itype *t, size_t count, size_t *cursor,
                size_t *out)
{
    if (n == 0 || count == 0)
        return count == 0 ? 0 : -1;
    /* Work on a copy of the free resources: a request that does not fit
     * whole changes nothing. */
    struct cc_res free_copy[CC_MAX_NODES];
    if (n > CC_MAX_NODES)
        n = CC_MAX_NODES;
    for (size_t i = 0; i < n; i++)
        free_copy[i] = nodes[i].free;
    size_t cur = *cursor;
    for (size_t k = 0; k < count; k++) {
        size_t start = 0;
        if (policy == CC_SCHED_ROUNDROBIN)
            start = cur == SIZE_MAX ? 0 : (cur + 1) % n;
        size_t chosen = SIZE_MAX;
        for (size_t j = 0; j < n; j++) {
            size_t i = (start + j) % n;
            if (nodes[i].usable && sched_fits(&free_copy[i], t) > 0) {
                chosen = i;
                break;
            }
        }
        if (chosen == SIZE_MAX)
            return -1;
        take(&free_copy[chosen], t);
        out[k] = chosen;
        cur = chosen;
    }
    for (size_t i = 0; i < n; i++)
        nodes[i].free = free_copy[i];
    if (policy == CC_SCHED_ROUNDROBIN)
        *cursor = cur;
    return 0;
}
