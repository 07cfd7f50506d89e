/* mp_wait: multiprocessing.connection.wait over any waitable handle. */
#include <stdlib.h>
#include <string.h>

#include "handle.h"

#define SMALL 16

/* Asks each handle what to wait on; *any_now when one is ready already. */
static int collect(mp_handle_t **hs, size_t n, mp__waitable_t *w, bool *now, bool *any_now)
{
    for (size_t i = 0; i < n; i++) {
        int rc = mp__handle_check(hs[i], 0);
        if (rc) return rc;
        const mp__htype_ops_t *ops = mp__handle_ops_of(hs[i]);
        if (!ops || !ops->waitable)
            return mp__fail(MP_ETYPE, "mp_wait: a %s cannot be waited on",
                            ops ? ops->name : "handle");
        rc = ops->waitable(hs[i], &w[i], &now[i]);
        if (rc) return rc;
        *any_now |= now[i];
    }
    return 0;
}

/* Handles with nothing for the OS to wait on (queues) leave w[i] empty.
 * With some of those, the OS waits for the others in slices (or, if there
 * are no others, the first such handle sleeps through its ops->sleep),
 * and they are asked again after every slice. */
#define SLICE_FIRST_MS 1L
#define SLICE_MAX_MS 50L

static bool bare(const mp__waitable_t *w)
{
    return !w->stream && !w->child;
}

static int wait_sliced(mp_handle_t **hs, size_t n, mp__waitable_t *w, bool *now, bool *polled,
                       long timeout_ms)
{
    mp__waitable_t *os = malloc(n * sizeof *os);
    size_t *idx = malloc(n * sizeof *idx);
    bool *got = malloc(n * sizeof *got);
    size_t nos = 0, first_bare = n;
    int rc = os && idx && got ? 0 : mp__fail(MP_ENOMEM, "mp_wait: %zu handles", n);
    for (size_t i = 0; !rc && i < n; i++) {
        if (!bare(&w[i])) {
            idx[nos] = i;
            os[nos++] = w[i];
        } else if (first_bare == n) {
            first_bare = i;
        }
    }
    uint64_t start = mp__os_now_ns();
    long slice = SLICE_FIRST_MS;
    while (!rc) {
        long left = mp__timeout_left(timeout_ms, start);
        long t = left < 0 || left > slice ? slice : left;
        if (nos) {
            memset(got, 0, nos * sizeof *got);
            rc = mp__wait_many(os, nos, t, got);
        } else if (t) {
            rc = mp__handle_ops_of(hs[first_bare])->sleep(hs[first_bare], t);
        }
        bool any = rc > 0;
        rc = rc > 0 ? 0 : rc;
        for (size_t k = 0; !rc && k < nos; k++)
            polled[idx[k]] = got[k];
        for (size_t i = 0; !rc && i < n; i++)
            if (bare(&w[i])) {
                const mp__htype_ops_t *ops = mp__handle_ops_of(hs[i]);
                rc = ops->waitable(hs[i], &w[i], &now[i]);
                any |= now[i];
            }
        if (rc || any || left == 0) break;
        slice = slice * 2 > SLICE_MAX_MS ? SLICE_MAX_MS : slice * 2;
    }
    free(os);
    free(idx);
    free(got);
    return rc;
}

static int wait_all(mp_handle_t **hs, size_t n, mp__waitable_t *w, bool *now, bool *polled,
                    bool any_now, long timeout_ms)
{
    bool some_bare = false;
    for (size_t i = 0; i < n; i++) {
        some_bare |= bare(&w[i]);
        if (bare(&w[i]) && !mp__handle_ops_of(hs[i])->sleep)
            return mp__fail(MP_ETYPE, "mp_wait: a %s gave nothing to wait on",
                            mp__handle_ops_of(hs[i])->name);
    }
    if (!some_bare) return mp__wait_many(w, n, any_now ? 0 : timeout_ms, polled);
    return wait_sliced(hs, n, w, now, polled, any_now ? 0 : timeout_ms);
}

int mp_wait(mp_handle_t **hs, size_t n, long timeout_ms, size_t *ready, size_t *nready)
{
    if (!nready || (n && (!hs || !ready))) return mp__fail(MP_EINVAL, "mp_wait: NULL argument");
    *nready = 0;
    mp__waitable_t w_small[SMALL];
    bool now_small[SMALL], polled_small[SMALL];
    mp__waitable_t *w = w_small;
    bool *now = now_small, *polled = polled_small;
    if (n > SMALL) {
        w = malloc(n * sizeof *w);
        now = malloc(n * sizeof *now);
        polled = malloc(n * sizeof *polled);
    }
    int rc = 0;
    if (!w || !now || !polled) {
        rc = mp__fail(MP_ENOMEM, "mp_wait: %zu handles", n);
    } else {
        memset(w, 0, n * sizeof *w);
        memset(now, 0, n * sizeof *now);
        memset(polled, 0, n * sizeof *polled);
        bool any_now = false;
        rc = collect(hs, n, w, now, &any_now);
        /* Handles ready already still let the others be polled once. */
        if (!rc) rc = wait_all(hs, n, w, now, polled, any_now, timeout_ms);
        if (rc > 0) rc = 0;
        for (size_t i = 0; !rc && i < n; i++)
            if (now[i] || polled[i]) ready[(*nready)++] = i;
    }
    if (n > SMALL) {
        free(w);
        free(now);
        free(polled);
    }
    return rc;
}
