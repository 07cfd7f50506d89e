/* The live-handle list and type dispatch (see handle.h). */
#include <stdatomic.h>
#include <stdlib.h>

#include "handle.h"

#define MP__HANDLE_MAGIC 0x6d70484eu /* "mpHN" */

static mp_handle_t *live;
static atomic_flag live_lock = ATOMIC_FLAG_INIT;

static void lock_live(void)
{
    while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire))
        ;
}

static void unlock_live(void)
{
    atomic_flag_clear_explicit(&live_lock, memory_order_release);
}

static const mp__htype_ops_t *const type_ops[MP__H_TYPE_COUNT] = {
    [MP__H_CONN] = &mp__conn_ops,
    [MP__H_PROCESS] = &mp__process_ops,
    [MP__H_LOCK] = &mp__lock_ops,
    [MP__H_RLOCK] = &mp__rlock_ops,
    [MP__H_SEMAPHORE] = &mp__semaphore_ops,
    [MP__H_EVENT] = &mp__event_ops,
    [MP__H_CONDITION] = &mp__condition_ops,
    [MP__H_BARRIER] = &mp__barrier_ops,
    [MP__H_SHM] = &mp__shm_ops,
    [MP__H_VALUE] = &mp__value_ops,
    [MP__H_MANAGER] = &mp__manager_ops,
    [MP__H_DICT] = &mp__dict_ops,
    [MP__H_LIST] = &mp__list_ops,
    [MP__H_QUEUE] = &mp__queue_ops,
    [MP__H_REMOTE] = &mp__remote_ops,
};

const mp__htype_ops_t *mp__handle_ops(int type)
{
    if (type <= 0 || type >= MP__H_TYPE_COUNT) return NULL;
    return type_ops[type];
}

void mp__handle_init(mp_handle_t *h, mp__htype_t type)
{
    mp__handle_init_as(h, type, type);
}

bool mp__handle_is_remote(const mp_handle_t *h)
{
    return h && h->magic == MP__HANDLE_MAGIC && h->ops_type == MP__H_REMOTE;
}

const mp__htype_ops_t *mp__handle_ops_of(const mp_handle_t *h)
{
    return mp__handle_ops(h->ops_type);
}

void mp__handle_init_as(mp_handle_t *h, mp__htype_t type, mp__htype_t ops_type)
{
    h->magic = MP__HANDLE_MAGIC;
    h->type = (uint16_t)type;
    h->ops_type = (uint16_t)ops_type;
    h->prev = NULL;
    lock_live();
    h->next = live;
    if (live) live->prev = h;
    live = h;
    unlock_live();
}

void mp__handle_fini(mp_handle_t *h)
{
    lock_live();
    if (h->prev)
        h->prev->next = h->next;
    else if (live == h)
        live = h->next;
    if (h->next) h->next->prev = h->prev;
    unlock_live();
    h->magic = 0;
    h->prev = h->next = NULL;
}

int mp__handle_check(const mp_handle_t *h, mp__htype_t type)
{
    if (!h || h->magic != MP__HANDLE_MAGIC) return mp__fail(MP_EINVAL, "not a live mproc handle");
    if (type && h->type != type) {
        const mp__htype_ops_t *got = mp__handle_ops(h->type);
        const mp__htype_ops_t *want = mp__handle_ops(type);
        return mp__fail(MP_ETYPE, "handle is a %s, not a %s", got ? got->name : "?",
                        want ? want->name : "?");
    }
    return 0;
}

void mp__handle_drop_others(mp_handle_t *const *keep, size_t nkeep)
{
    /* Runs in a freshly forked child with one thread: no lock needed, and
     * taking it could deadlock on a copy another thread held at fork. */
    for (mp_handle_t *h = live; h; h = h->next) {
        bool kept = false;
        for (size_t i = 0; i < nkeep && !kept; i++)
            kept = keep[i] == h;
        const mp__htype_ops_t *ops = mp__handle_ops_of(h);
        if (!kept && ops && ops->drop_after_fork) ops->drop_after_fork(h);
    }
    atomic_flag_clear(&live_lock);
}

int mp__handle_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    int rc = mp__handle_check(h, 0);
    if (rc) return rc;
    const mp__htype_ops_t *ops = mp__handle_ops_of(h);
    if (!ops || !ops->pack)
        return mp__fail(MP_ETYPE, "a %s cannot be passed to another process",
                        ops ? ops->name : "handle");
    mp__wbuf_u8(w, (uint8_t)h->ops_type);
    return ops->pack(h, w, t);
}

int mp__handle_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    uint8_t type = mp__rbuf_u8(r);
    if (r->err) return r->err;
    const mp__htype_ops_t *ops = mp__handle_ops(type);
    if (!ops || !ops->unpack) return mp__rbuf_bad(r, "unknown handle type");
    return ops->unpack(r, tab, ntab, out);
}

void mp__handle_free(mp_handle_t *h)
{
    if (!h) return; /* as free(NULL): no error, the last detail stays */
    if (mp__handle_check(h, 0)) return;
    const mp__htype_ops_t *ops = mp__handle_ops_of(h);
    if (ops && ops->free) ops->free(h);
}

int mp__ostab_add(mp__ostab_t *t, mp__osh_t h)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 8;
        mp__osh_t *v = realloc(t->v, cap * sizeof *v);
        if (!v) return mp__fail(MP_ENOMEM, "handle table of %zu entries", cap);
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n] = h;
    return (int)t->n++;
}

void mp__ostab_release(mp__ostab_t *t)
{
    free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
}
