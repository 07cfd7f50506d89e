/* mp_wait: multiprocessing.connection.wait over any waitable handle. */
#include <stdlib.h>
#include <string.h>

#include "handle.h"

#define SMALL 16

int mp_wait(mp_handle_t **hs, size_t n, long timeout_ms, size_t *ready, size_t *nready)
{
    if (!nready || (n && (!hs || !ready))) return mp__fail(MP_EINVAL, "mp_wait: NULL argument");
    *nready = 0;
    mp__waitable_t wsmall[SMALL];
    bool rsmall[SMALL];
    mp__waitable_t *w = n <= SMALL ? wsmall : calloc(n, sizeof *w);
    bool *r = n <= SMALL ? rsmall : calloc(n, sizeof *r);
    int rc = (w && r) ? 0 : mp__fail(MP_ENOMEM, "mp_wait: %zu handles", n);
    bool any_now = false;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = mp__handle_check(hs[i], 0);
        const mp__htype_ops_t *ops = rc ? NULL : mp__handle_ops(hs[i]->type);
        if (!rc && (!ops || !ops->waitable))
            rc = mp__fail(MP_ETYPE, "mp_wait: a %s cannot be waited on", ops ? ops->name : "?");
        if (rc) break;
        memset(&w[i], 0, sizeof w[i]);
        r[i] = false;
        rc = ops->waitable(hs[i], &w[i], &r[i]);
        any_now |= r[i];
    }
    if (!rc) {
        /* Items ready already still let the others be polled once. */
        bool *polled = r;
        bool psmall[SMALL];
        if (any_now) {
            polled = n <= SMALL ? psmall : calloc(n, sizeof *polled);
            if (!polled) rc = mp__fail(MP_ENOMEM, "mp_wait: %zu handles", n);
        }
        if (!rc) rc = mp__wait_many(w, n, any_now ? 0 : timeout_ms, polled);
        if (rc >= 0) {
            rc = 0;
            for (size_t i = 0; i < n; i++)
                if (r[i] || polled[i]) ready[(*nready)++] = i;
        }
        if (polled != r && polled != psmall) free(polled);
    }
    if (w != wsmall) free(w);
    if (r != rsmall) free(r);
    return rc;
}
