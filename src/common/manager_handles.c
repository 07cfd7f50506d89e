/* Manager-served locks, events, semaphores and queues as the ordinary
 * public types. Such an object is a handle of its public type (so
 * mp_args_lock and type checks treat it as any lock) whose ops are
 * mp__remote_ops: it packs, exports and frees as a manager reference.
 * The public calls of sync.c and queue.c forward to the mp__rx_* here
 * when mp__handle_is_remote says so; each call is one request
 * (manager_remote.c). */
#include <stdlib.h>

#include "manager_internal.h"
#include "manager_remote.h"
#include "mproc/queue.h"

typedef struct {
    mp_handle_t h;
    mp__remote_t *r;
    mp_pid_t closed_by; /* a queue closed in this process */
    /* A lock's acquisitions through this proxy not yet released: freeing
     * the proxy asks the server to release what the freeing thread holds
     * only then, so freeing an unheld lock costs no request. */
    _Atomic uint32_t holds;
} rproxy_t;

static mp__htype_t public_type(int kind)
{
    switch (kind) {
    case MP__MK_LOCK:
        return MP__H_LOCK;
    case MP__MK_RLOCK:
        return MP__H_RLOCK;
    case MP__MK_SEMAPHORE:
        return MP__H_SEMAPHORE;
    case MP__MK_EVENT:
        return MP__H_EVENT;
    default:
        return MP__H_QUEUE;
    }
}

static int wrap(mp__remote_t *r, mp_handle_t **out)
{
    rproxy_t *p = mp__calloc(1, sizeof *p);
    if (!p) {
        mp__remote_free(r);
        return MP_ENOMEM;
    }
    p->r = r;
    mp__handle_init_as(&p->h, public_type(mp__remote_kind(r)), MP__H_REMOTE);
    *out = &p->h;
    return 0;
}

static int open_as(mp_manager_t *m, int kind, const char *name, int64_t p1, int64_t p2, void *out,
                   const char *fn)
{
    if (!out) return mp__fail(MP_EINVAL, "%s: NULL out-pointer", fn);
    mp__remote_t *r;
    int rc = mp__remote_open(m, kind, name, p1, p2, &r);
    return rc ? rc : wrap(r, (mp_handle_t **)out);
}

int mp_manager_lock(mp_manager_t *m, const char *name, mp_lock_t **l)
{
    return open_as(m, MP__MK_LOCK, name, 0, 0, l, "mp_manager_lock");
}

int mp_manager_rlock(mp_manager_t *m, const char *name, mp_rlock_t **l)
{
    return open_as(m, MP__MK_RLOCK, name, 0, 0, l, "mp_manager_rlock");
}

int mp_manager_event(mp_manager_t *m, const char *name, mp_event_t **e)
{
    return open_as(m, MP__MK_EVENT, name, 0, 0, e, "mp_manager_event");
}

int mp_manager_semaphore(mp_manager_t *m, const char *name, unsigned value, mp_semaphore_t **s)
{
    return open_as(m, MP__MK_SEMAPHORE, name, value, 0, s, "mp_manager_semaphore");
}

/* Always joinable, as Python's Manager().Queue() (a queue.Queue) is. */
int mp_manager_queue(mp_manager_t *m, const char *name, size_t maxsize, mp_queue_t **q)
{
    if (maxsize > INT64_MAX) return mp__fail(MP_EINVAL, "queue maxsize %zu too large", maxsize);
    return open_as(m, MP__MK_QUEUE, name, (int64_t)maxsize, 1, q, "mp_manager_queue");
}

/* ---- the handle type ---- */

static int rx_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    return mp__remote_pack(((rproxy_t *)h)->r, w, t);
}

static int rx_unpack(mp__rbuf_t *rb, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    mp__remote_t *r;
    int rc = mp__remote_unpack(rb, tab, ntab, &r);
    return rc ? rc : wrap(r, out);
}

static int rx_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return rx_pack(h, w, NULL);
}

static int rx_import(mp__rbuf_t *rb, mp_handle_t **out)
{
    return rx_unpack(rb, NULL, 0, out);
}

static void rx_free_h(mp_handle_t *h)
{
    rproxy_t *p = (rproxy_t *)h;
    /* As an ordinary lock freed by its holder: released, not left to the
     * owner-death path (a manager that is gone has nothing to release). */
    if (atomic_load(&p->holds)) mp__remote_lock_drop(p->r);
    mp__handle_fini(h);
    mp__remote_free(p->r);
    free(p);
}

/* mp_wait: a manager queue is ready when it holds an item. There is no
 * local object to wait on, so mp_wait asks again after each slice. */
static int rx_waitable(mp_handle_t *h, mp__waitable_t *w, bool *ready_now)
{
    (void)w;
    rproxy_t *p = (rproxy_t *)h;
    if (mp__remote_kind(p->r) != MP__MK_QUEUE)
        return mp__fail(MP_ETYPE, "mp_wait: a manager %s cannot be waited on",
                        mp__handle_ops(h->type)->name);
    size_t n;
    int rc = mp__remote_queue_qsize(p->r, &n, NULL);
    if (!rc) *ready_now = n > 0;
    return rc;
}

static int rx_sleep(mp_handle_t *h, long timeout_ms)
{
    (void)h;
    mp__mutex_t *mu;
    mp__cond_t *cv = NULL;
    int rc = mp__mutex_create(&mu);
    if (!rc) rc = mp__cond_create(&cv);
    if (!rc) {
        mp__mutex_lock(mu);
        rc = mp__cond_wait(cv, mu, timeout_ms); /* nobody signals it */
        mp__mutex_unlock(mu);
    }
    if (cv) mp__cond_free(cv);
    if (mu) mp__mutex_free(mu);
    return rc == MP_ETIMEDOUT ? 0 : rc;
}

const mp__htype_ops_t mp__remote_ops = {
    .name = "manager object",
    .pack = rx_pack,
    .unpack = rx_unpack,
    .free = rx_free_h,
    .export_blob = rx_export,
    .import_blob = rx_import,
    .waitable = rx_waitable,
    .sleep = rx_sleep,
};

/* ---- the calls sync.c and queue.c forward ---- */

static int get(mp_handle_t *h, mp__htype_t type, mp__remote_t **r)
{
    int rc = mp__handle_check(h, type);
    if (!rc) *r = ((rproxy_t *)h)->r;
    return rc;
}

bool mp__rx_free(mp_handle_t *h, mp__htype_t type)
{
    if (!mp__handle_is_remote(h)) return false;
    if (!mp__handle_check(h, type)) rx_free_h(h);
    return true;
}

int mp__rx_lock_acquire(mp_handle_t *h, mp__htype_t type, long timeout_ms)
{
    mp__remote_t *r;
    int rc = get(h, type, &r);
    if (!rc) rc = mp__remote_lock_acquire(r, timeout_ms);
    if (!rc || rc == MP_EOWNERDEAD) atomic_fetch_add(&((rproxy_t *)h)->holds, 1);
    return rc;
}

int mp__rx_lock_release(mp_handle_t *h, mp__htype_t type)
{
    mp__remote_t *r;
    int rc = get(h, type, &r);
    if (!rc) rc = mp__remote_lock_release(r);
    /* Another proxy's acquisition may be released through this one. */
    uint32_t n = atomic_load(&((rproxy_t *)h)->holds);
    while (!rc && n && !atomic_compare_exchange_weak(&((rproxy_t *)h)->holds, &n, n - 1))
        ;
    return rc;
}

int mp__rx_sem_acquire(mp_handle_t *h, long timeout_ms)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_SEMAPHORE, &r);
    return rc ? rc : mp__remote_sem_acquire(r, timeout_ms);
}

int mp__rx_sem_release(mp_handle_t *h)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_SEMAPHORE, &r);
    return rc ? rc : mp__remote_sem_release(r);
}

int mp__rx_sem_value(mp_handle_t *h, unsigned *v)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_SEMAPHORE, &r);
    if (!rc && !v) rc = mp__fail(MP_EINVAL, "mp_semaphore_value: NULL out-pointer");
    return rc ? rc : mp__remote_sem_value(r, v);
}

int mp__rx_event_set(mp_handle_t *h)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_EVENT, &r);
    return rc ? rc : mp__remote_event_set(r);
}

int mp__rx_event_clear(mp_handle_t *h)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_EVENT, &r);
    return rc ? rc : mp__remote_event_clear(r);
}

int mp__rx_event_is_set(mp_handle_t *h)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_EVENT, &r);
    return rc ? rc : mp__remote_event_is_set(r);
}

int mp__rx_event_wait(mp_handle_t *h, long timeout_ms)
{
    mp__remote_t *r;
    int rc = get(h, MP__H_EVENT, &r);
    return rc ? rc : mp__remote_event_wait(r, timeout_ms);
}

/* io: a put or get, which mp_queue_close ends in this process. */
static int queue_of(mp_handle_t *h, bool io, mp__remote_t **r)
{
    int rc = get(h, MP__H_QUEUE, r);
    rproxy_t *p = (rproxy_t *)h;
    if (!rc && io && p->closed_by && p->closed_by == mp__os_getpid())
        rc = mp__fail(MP_ECLOSED, "the queue was closed in this process");
    return rc;
}

int mp__rx_queue_put(mp_handle_t *h, const void *buf, size_t len, long timeout_ms)
{
    mp__remote_t *r;
    int rc = queue_of(h, true, &r);
    if (!rc && !buf && len) rc = mp__fail(MP_EINVAL, "mp_queue_put: NULL buffer");
    return rc ? rc : mp__remote_queue_put(r, buf, len, timeout_ms);
}

int mp__rx_queue_get(mp_handle_t *h, void **out, size_t *len, long timeout_ms)
{
    mp__remote_t *r;
    int rc = queue_of(h, true, &r);
    if (!rc && (!out || !len)) rc = mp__fail(MP_EINVAL, "mp_queue_get: NULL out-pointer");
    return rc ? rc : mp__remote_queue_get(r, out, NULL, 0, len, timeout_ms);
}

int mp__rx_queue_get_into(mp_handle_t *h, void *buf, size_t cap, size_t *len, long timeout_ms)
{
    mp__remote_t *r;
    int rc = queue_of(h, true, &r);
    if (!rc && ((!buf && cap) || !len))
        rc = mp__fail(MP_EINVAL, "mp_queue_get_into: NULL argument");
    return rc ? rc : mp__remote_queue_get(r, NULL, buf, cap, len, timeout_ms);
}

int mp__rx_queue_qsize(mp_handle_t *h, size_t *n)
{
    mp__remote_t *r;
    int rc = queue_of(h, false, &r);
    if (!rc && !n) rc = mp__fail(MP_EINVAL, "mp_queue_qsize: NULL out-pointer");
    return rc ? rc : mp__remote_queue_qsize(r, n, NULL);
}

int mp__rx_queue_empty(mp_handle_t *h)
{
    mp__remote_t *r;
    size_t n;
    int rc = queue_of(h, false, &r);
    if (!rc) rc = mp__remote_queue_qsize(r, &n, NULL);
    return rc ? rc : n == 0;
}

int mp__rx_queue_full(mp_handle_t *h)
{
    mp__remote_t *r;
    size_t n, max;
    int rc = queue_of(h, false, &r);
    if (!rc) rc = mp__remote_queue_qsize(r, &n, &max);
    return rc ? rc : max && n >= max;
}

int mp__rx_queue_task_done(mp_handle_t *h)
{
    mp__remote_t *r;
    int rc = queue_of(h, false, &r);
    return rc ? rc : mp__remote_queue_task_done(r);
}

int mp__rx_queue_join(mp_handle_t *h, long timeout_ms)
{
    mp__remote_t *r;
    int rc = queue_of(h, false, &r);
    return rc ? rc : mp__remote_queue_join(r, timeout_ms);
}

int mp__rx_queue_close(mp_handle_t *h)
{
    mp__remote_t *r;
    int rc = queue_of(h, false, &r);
    if (!rc) ((rproxy_t *)h)->closed_by = mp__os_getpid();
    return rc;
}
