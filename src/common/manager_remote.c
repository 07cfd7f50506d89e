/* The client half of manager-served locks, events, semaphores and queues
 * (see manager_remote.h): each call is one request; a call that waits does
 * so in the server, on its own pooled connection. */
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"
#include "manager_remote.h"

struct mp__remote {
    mp__mclient_t *cl;
    uint64_t oid;
    int kind;
};

static bool remote_kind(int kind)
{
    return kind == MP__MK_LOCK || kind == MP__MK_RLOCK || kind == MP__MK_SEMAPHORE ||
           kind == MP__MK_EVENT || kind == MP__MK_QUEUE;
}

static int remote_new(mp__mclient_t *cl, uint64_t oid, int kind, mp__remote_t **out)
{
    mp__remote_t *r = mp__calloc(1, sizeof *r);
    if (!r) return MP_ENOMEM;
    r->cl = cl;
    r->oid = oid;
    r->kind = kind;
    mp__mclient_ref(cl);
    *out = r;
    return 0;
}

int mp__remote_open(mp_manager_t *m, int kind, const char *name, int64_t p1, int64_t p2,
                    mp__remote_t **out)
{
    mp__mclient_t *cl;
    int rc = mp__manager_client(m, &cl);
    if (!rc && (!out || !remote_kind(kind))) rc = mp__fail(MP_EINVAL, "manager: bad object kind");
    uint64_t oid = 0;
    bool local = false;
    mp__seg_t *seg = NULL;
    if (!rc) rc = mp__proxy_open(cl, kind, name, p1, p2, &oid, &local, &seg);
    if (seg) mp__seg_close(seg);
    if (!rc && local) rc = mp__fail(MP_EPROTO, "manager: a store for a kind %d", kind);
    return rc ? rc : remote_new(cl, oid, kind, out);
}

void mp__remote_free(mp__remote_t *r)
{
    if (!r) return;
    mp__mclient_unref(r->cl);
    free(r);
}

int mp__remote_kind(const mp__remote_t *r)
{
    return r->kind;
}

int mp__remote_pack(mp__remote_t *r, mp__wbuf_t *w, mp__ostab_t *t)
{
    int rc = mp__mclient_pack(r->cl, w, t);
    mp__wbuf_u64(w, r->oid);
    mp__wbuf_u8(w, (uint8_t)r->kind);
    return rc ? rc : w->err;
}

int mp__remote_unpack(mp__rbuf_t *rb, mp__osh_t *tab, size_t ntab, mp__remote_t **out)
{
    mp__mclient_t *cl;
    int rc = mp__mclient_unpack(rb, tab, ntab, &cl);
    if (rc) return rc;
    uint64_t oid = mp__rbuf_u64(rb);
    uint8_t kind = mp__rbuf_u8(rb);
    rc = rb->err;
    if (!rc && (!oid || !remote_kind(kind))) rc = mp__rbuf_bad(rb, "manager object reference");
    if (!rc) rc = remote_new(cl, oid, kind, out);
    mp__mclient_unref(cl);
    return rc;
}

/* One request on the object; rp (may be NULL) keeps the reply, which the
 * caller releases. */
static int call(mp__remote_t *r, uint8_t op, uint8_t nint, int64_t a, int64_t b, const void *blob,
                size_t n, mp__mrep_t *rp)
{
    mp__mreq_t rq = {.op = op, .nint = nint, .i = {(int64_t)r->oid, a, b}};
    if (blob) {
        rq.nblob = 1;
        rq.s[0] = blob;
        rq.n[0] = n;
    }
    mp__mrep_t own;
    mp__mrep_t *p = rp ? rp : &own;
    int rc = mp__mclient_call(r->cl, &rq, p);
    if (!rp) mp__mrep_release(&own);
    return rc;
}

static int64_t wire_timeout(long timeout_ms)
{
    return timeout_ms < 0 ? -1 : timeout_ms;
}

int mp__remote_lock_acquire(mp__remote_t *r, long timeout_ms)
{
    return call(r, MP__M_LK_ACQUIRE, 3, (int64_t)mp__os_thread_id(), wire_timeout(timeout_ms), NULL,
                0, NULL);
}

int mp__remote_lock_release(mp__remote_t *r)
{
    return call(r, MP__M_LK_RELEASE, 2, (int64_t)mp__os_thread_id(), 0, NULL, 0, NULL);
}

int mp__remote_lock_drop(mp__remote_t *r)
{
    return call(r, MP__M_LK_DROP, 2, (int64_t)mp__os_thread_id(), 0, NULL, 0, NULL);
}

int mp__remote_sem_acquire(mp__remote_t *r, long timeout_ms)
{
    return call(r, MP__M_SEM_ACQUIRE, 2, wire_timeout(timeout_ms), 0, NULL, 0, NULL);
}

int mp__remote_sem_release(mp__remote_t *r)
{
    return call(r, MP__M_SEM_RELEASE, 1, 0, 0, NULL, 0, NULL);
}

/* A reply's first integer, checked against [0, max]. */
static int reply_int(mp__remote_t *r, uint8_t op, uint8_t want, int64_t max, int64_t *out)
{
    mp__mrep_t rp;
    int rc = call(r, op, 1, 0, 0, NULL, 0, &rp);
    if (!rc && (rp.nint != want || rp.i[0] < 0 || rp.i[0] > max))
        rc = mp__fail(MP_EPROTO, "manager: unexpected reply");
    if (!rc) {
        out[0] = rp.i[0];
        if (want > 1) out[1] = rp.i[1];
    }
    mp__mrep_release(&rp);
    return rc;
}

int mp__remote_sem_value(mp__remote_t *r, unsigned *v)
{
    int64_t x;
    int rc = reply_int(r, MP__M_SEM_VALUE, 1, UINT32_MAX, &x);
    if (!rc) *v = (unsigned)x;
    return rc;
}

int mp__remote_event_set(mp__remote_t *r)
{
    return call(r, MP__M_EV_SET, 1, 0, 0, NULL, 0, NULL);
}

int mp__remote_event_clear(mp__remote_t *r)
{
    return call(r, MP__M_EV_CLEAR, 1, 0, 0, NULL, 0, NULL);
}

int mp__remote_event_is_set(mp__remote_t *r)
{
    int64_t x;
    int rc = reply_int(r, MP__M_EV_IS_SET, 1, 1, &x);
    return rc ? rc : (int)x;
}

int mp__remote_event_wait(mp__remote_t *r, long timeout_ms)
{
    return call(r, MP__M_EV_WAIT, 2, wire_timeout(timeout_ms), 0, NULL, 0, NULL);
}

int mp__remote_queue_put(mp__remote_t *r, const void *buf, size_t len, long timeout_ms)
{
    if (len > MP_MANAGER_MAX_ITEM)
        return mp__fail(MP_EMSGSIZE, "manager queue items are limited to %zu bytes",
                        (size_t)MP_MANAGER_MAX_ITEM);
    return call(r, MP__M_Q_PUT, 2, wire_timeout(timeout_ms), 0, buf ? buf : "", len, NULL);
}

int mp__remote_queue_get(mp__remote_t *r, void **out, void *into, size_t cap, size_t *len,
                         long timeout_ms)
{
    mp__mrep_t rp;
    int64_t want = out || cap > INT64_MAX ? -1 : (int64_t)cap;
    int rc = call(r, MP__M_Q_GET, 3, wire_timeout(timeout_ms), want, NULL, 0, &rp);
    if (rc == MP_EMSGSIZE && rp.nint == 1 && rp.i[0] >= 0) *len = (size_t)rp.i[0];
    if (!rc && rp.nblob != 1) rc = mp__fail(MP_EPROTO, "manager: unexpected reply");
    if (!rc && !out && rp.n[0] > cap) rc = mp__fail(MP_EPROTO, "manager: item over the limit");
    if (!rc) {
        *len = rp.n[0];
        if (out && !(*out = mp__malloc(rp.n[0]))) rc = MP_ENOMEM;
        if (!rc && rp.n[0]) memcpy(out ? *out : into, rp.s[0], rp.n[0]);
    }
    mp__mrep_release(&rp);
    return rc;
}

int mp__remote_queue_qsize(mp__remote_t *r, size_t *n, size_t *maxsize)
{
    int64_t x[2];
    int rc = reply_int(r, MP__M_Q_QSIZE, 2, INT64_MAX, x);
    if (!rc && x[1] < 0) rc = mp__fail(MP_EPROTO, "manager: unexpected reply");
    if (!rc) {
        if (n) *n = (size_t)x[0];
        if (maxsize) *maxsize = (size_t)x[1];
    }
    return rc;
}

int mp__remote_queue_task_done(mp__remote_t *r)
{
    return call(r, MP__M_Q_TASK_DONE, 1, 0, 0, NULL, 0, NULL);
}

int mp__remote_queue_join(mp__remote_t *r, long timeout_ms)
{
    return call(r, MP__M_Q_JOIN, 2, wire_timeout(timeout_ms), 0, NULL, 0, NULL);
}
