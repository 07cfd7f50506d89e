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
        const mp__htype_ops_t *ops = mp__handle_ops(hs[i]->type);
        if (!ops || !ops->waitable)
            return mp__fail(MP_ETYPE, "mp_wait: a %s cannot be waited on",
                            ops ? ops->name : "handle");
        rc = ops->waitable(hs[i], &w[i], &now[i]);
        if (rc) return rc;
        *any_now |= now[i];
    }
    return 0;
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
        if (!rc) rc = mp__wait_many(w, n, any_now ? 0 : timeout_ms, polled);
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
