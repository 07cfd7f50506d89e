/* Lock, RLock, Semaphore, Event, Condition, Barrier, Value and Array, all
 * built once on the seam's shared segments: robust mutexes (owner death
 * reported as MP_EOWNERDEAD) and wait queues (a cross-process futex).
 *
 * Each object is one small segment holding its state. Semaphores and
 * events are lock-free atomics, so a process killed inside them cannot
 * leave them inconsistent. Waiters sleep in slices of RECHECK_MS so that a
 * waker killed between changing a word and waking cannot strand them. */
#include <stdlib.h>
#include <string.h>

#include "handle.h"
#include "manager_remote.h"

#define TAG(a, b, c, d)                                                                            \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define SPIN_NS 10000u
#define SPIN_SKIP_MAX 64u
#define RECHECK_MS 1000L
#define SEM_VALUE_MAX 0x7fffffffu

/* The part every object here starts with. */
typedef struct {
    mp_handle_t h;
    mp__seg_t *seg;
    void *st; /* the state in the segment */
    /* This process's spin policy for the object (see spin_first). */
    _Atomic uint32_t spin_skip, spin_backoff;
} sobj_t;

typedef struct {
    _Atomic uint64_t owner; /* thread id, 0 when free */
    uint32_t count;         /* RLock depth */
} lock_state_t;

typedef struct {
    _Atomic uint32_t count;
    uint32_t max; /* 0: unbounded */
} sem_state_t;

/* An owner-tracked semaphore: count i is robust mutex i of the segment,
 * so a holder's death hands its count to the next taker with
 * MP_EOWNERDEAD, as for a Lock. */
typedef struct {
    _Atomic uint32_t gen;                      /* bumped by every release */
    _Atomic uint64_t owner[MP__SEG_MAX_MUTEX]; /* holder's thread id, 0 when free */
} osem_state_t;
_Static_assert(MP_SEMAPHORE_OWNED_MAX <= MP__SEG_MAX_MUTEX, "a count per mutex");

typedef struct {
    _Atomic uint32_t flag;
} event_state_t;

/* waiting: waiters not yet granted a wake-up; grants: wake-ups not yet
 * taken. A waiter leaves by taking a grant or, on timeout, by taking
 * itself off waiting, so waiting + grants counts the waiters inside. */
typedef struct {
    _Atomic uint32_t gen; /* bumped by every notify: what waiters sleep on */
    _Atomic uint32_t waiting;
    _Atomic uint32_t grants;
} cond_state_t;

/* passed: bit (g % 64) tells whether generation g ended by all parties
 * arriving (1) or by a break or reset (0). */
typedef struct {
    uint32_t parties;
    uint32_t count;
    _Atomic uint32_t gen;
    _Atomic uint32_t broken;
    _Atomic uint64_t passed;
} barrier_state_t;

struct mp_lock {
    sobj_t o;
};
struct mp_rlock {
    sobj_t o;
};
struct mp_semaphore {
    sobj_t o;
    unsigned owned; /* counts of an owner-tracked semaphore; 0: a plain one */
};
struct mp_event {
    sobj_t o;
};
struct mp_condition {
    sobj_t o;
    mp_lock_t *lock;
    bool own_lock;
};
struct mp_barrier {
    sobj_t o;
};
struct mp_value {
    sobj_t o; /* o.st: the data */
    size_t elem, n;
    mp_rlock_t *lock;
};

static const mp__seg_spec_t lock_spec = {
    .size = sizeof(lock_state_t), .nmutex = 1, .nwq = 0, .tag = TAG('L', 'O', 'C', 'K')};
static const mp__seg_spec_t rlock_spec = {
    .size = sizeof(lock_state_t), .nmutex = 1, .nwq = 0, .tag = TAG('R', 'L', 'C', 'K')};
static const mp__seg_spec_t sem_spec = {
    .size = sizeof(sem_state_t), .nmutex = 0, .nwq = 1, .tag = TAG('S', 'E', 'M', 'A')};
static mp__seg_spec_t osem_spec(unsigned counts)
{
    mp__seg_spec_t spec = {
        .size = sizeof(osem_state_t), .nmutex = counts, .nwq = 1, .tag = TAG('O', 'S', 'E', 'M')};
    return spec;
}
static const mp__seg_spec_t event_spec = {
    .size = sizeof(event_state_t), .nmutex = 0, .nwq = 1, .tag = TAG('E', 'V', 'N', 'T')};
static const mp__seg_spec_t cond_spec = {
    .size = sizeof(cond_state_t), .nmutex = 0, .nwq = 1, .tag = TAG('C', 'O', 'N', 'D')};
static const mp__seg_spec_t barrier_spec = {
    .size = sizeof(barrier_state_t), .nmutex = 1, .nwq = 1, .tag = TAG('B', 'A', 'R', 'R')};
#define VALUE_TAG TAG('V', 'A', 'L', 'U')

/* ---- the common part ---- */

static int sobj_wrap(mp__htype_t type, mp__seg_t *seg, size_t objsize, sobj_t **out)
{
    sobj_t *o = mp__calloc(1, objsize);
    if (!o) {
        mp__seg_close(seg);
        return MP_ENOMEM;
    }
    o->seg = seg;
    o->st = mp__seg_ptr(seg);
    mp__handle_init(&o->h, type);
    *out = o;
    return 0;
}

/* The object comes back as its sobj_t (the first member of every type). */
static int sobj_create(mp__htype_t type, const mp__seg_spec_t *spec, size_t objsize, sobj_t **out)
{
    mp__seg_t *seg;
    int rc = mp__seg_create(spec, &seg);
    return rc ? rc : sobj_wrap(type, seg, objsize, out);
}

static int sobj_unpack(mp__htype_t type, const mp__seg_spec_t *spec, size_t objsize, mp__rbuf_t *r,
                       mp__osh_t *tab, size_t ntab, sobj_t **out)
{
    mp__seg_t *seg;
    int rc = mp__seg_unpack(r, tab, ntab, spec, &seg);
    return rc ? rc : sobj_wrap(type, seg, objsize, out);
}

static void sobj_free(sobj_t *o)
{
    mp__handle_fini(&o->h);
    mp__seg_close(o->seg);
    free(o);
}

static int sobj_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    return mp__seg_pack(((sobj_t *)h)->seg, w, t);
}

static int sobj_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return sobj_pack(h, w, NULL);
}

/* Whether *word changed during a spin before sleeping. A spin wins when
 * the other side runs on another CPU and only burns the time slice it
 * needs when it waits for one (a loaded machine: the sleep-only floor was
 * then 2-3 times faster). So a spin that fails makes this process skip
 * the spin on its next 1, 2, 4 ... SPIN_SKIP_MAX waits on the object, and
 * one that succeeds halves that again. Relaxed: the policy is a hint that
 * threads sharing the handle may race on. */
static bool spin_first(sobj_t *o, const _Atomic uint32_t *word, uint32_t expected)
{
    uint32_t skip = atomic_load_explicit(&o->spin_skip, memory_order_relaxed);
    if (skip) {
        atomic_store_explicit(&o->spin_skip, skip - 1, memory_order_relaxed);
        return false;
    }
    uint32_t backoff = atomic_load_explicit(&o->spin_backoff, memory_order_relaxed);
    /* Timeout 0: only spins and looks. */
    bool changed = mp__seg_wait(o->seg, 0, word, expected, 0, SPIN_NS) == 0;
    if (changed)
        backoff /= 2;
    else
        backoff = !backoff ? 1 : backoff >= SPIN_SKIP_MAX / 2 ? SPIN_SKIP_MAX : backoff * 2;
    atomic_store_explicit(&o->spin_backoff, backoff, memory_order_relaxed);
    if (!changed) atomic_store_explicit(&o->spin_skip, backoff, memory_order_relaxed);
    return changed;
}

/* Sleeps while *word == expected, up to the caller's remaining timeout,
 * in slices: 0 after a wake-up or a slice (the caller looks again). */
static int wait_word(sobj_t *o, const _Atomic uint32_t *word, uint32_t expected, long timeout_ms,
                     uint64_t start)
{
    if (spin_first(o, word, expected)) return 0;
    long left = mp__timeout_left(timeout_ms, start);
    long slice = left < 0 || left > RECHECK_MS ? RECHECK_MS : left;
    int rc = mp__seg_wait(o->seg, 0, word, expected, slice, 0);
    return rc == MP_ETIMEDOUT && slice != left ? 0 : rc;
}

/* What serves h: 0 this process (h is a live object of the type), 1 a
 * manager, or the error. One call on the hot paths instead of two. */
static inline int sobj_served(mp_handle_t *h, mp__htype_t type)
{
    int rc = mp__handle_check(h, type);
    return rc ? rc : h->ops_type != type;
}

static int timed_out(const char *what, long timeout_ms)
{
    return mp__fail(MP_ETIMEDOUT, "%s within %ld ms", what, timeout_ms);
}

/* ---- Lock and RLock ---- */

static int lock_take(sobj_t *o, long timeout_ms, bool reentrant)
{
    lock_state_t *st = o->st;
    uint64_t me = mp__os_thread_id();
    if (atomic_load_explicit(&st->owner, memory_order_relaxed) == me) {
        if (!reentrant)
            return mp__fail(MP_EPERM, "this thread holds the lock already (a Lock is not "
                                      "re-entrant; an RLock is)");
        if (st->count == UINT32_MAX) return mp__fail(MP_EINVAL, "RLock re-entered too often");
        st->count++;
        return 0;
    }
    int rc = mp__seg_lock(o->seg, 0, timeout_ms);
    if (rc && rc != MP_EOWNERDEAD) return rc;
    atomic_store_explicit(&st->owner, me, memory_order_relaxed);
    st->count = 1;
    return rc;
}

static bool lock_held(sobj_t *o)
{
    lock_state_t *st = o->st;
    return atomic_load_explicit(&st->owner, memory_order_relaxed) == mp__os_thread_id();
}

static int lock_give(sobj_t *o, bool reentrant)
{
    lock_state_t *st = o->st;
    if (!lock_held(o)) return mp__fail(MP_EPERM, "the lock is not held by this thread");
    if (reentrant && --st->count > 0) return 0;
    atomic_store_explicit(&st->owner, 0, memory_order_relaxed);
    return mp__seg_unlock(o->seg, 0);
}

int mp_lock_create(mp_lock_t **l)
{
    if (!l) return mp__fail(MP_EINVAL, "mp_lock_create: NULL out-pointer");
    sobj_t *o;
    int rc = sobj_create(MP__H_LOCK, &lock_spec, sizeof **l, &o);
    if (!rc) *l = (void *)o;
    return rc;
}

int mp_lock_acquire(mp_lock_t *l, long timeout_ms)
{
    int rc = sobj_served(MP_HANDLE(l), MP__H_LOCK);
    if (rc == 1) return mp__rx_lock_acquire(MP_HANDLE(l), MP__H_LOCK, timeout_ms);
    return rc ? rc : lock_take(&l->o, timeout_ms, false);
}

int mp_lock_release(mp_lock_t *l)
{
    int rc = sobj_served(MP_HANDLE(l), MP__H_LOCK);
    if (rc == 1) return mp__rx_lock_release(MP_HANDLE(l), MP__H_LOCK);
    return rc ? rc : lock_give(&l->o, false);
}

void mp_lock_free(mp_lock_t *l)
{
    if (!l) return; /* as free(NULL): the last detail stays */
    if (mp__rx_free(MP_HANDLE(l), MP__H_LOCK)) return;
    if (mp__handle_check(MP_HANDLE(l), MP__H_LOCK)) return;
    /* Freed by its holder: release it rather than leave it to owner death. */
    if (lock_held(&l->o)) lock_give(&l->o, false);
    sobj_free(&l->o);
}

int mp_rlock_create(mp_rlock_t **l)
{
    if (!l) return mp__fail(MP_EINVAL, "mp_rlock_create: NULL out-pointer");
    sobj_t *o;
    int rc = sobj_create(MP__H_RLOCK, &rlock_spec, sizeof **l, &o);
    if (!rc) *l = (void *)o;
    return rc;
}

int mp_rlock_acquire(mp_rlock_t *l, long timeout_ms)
{
    int rc = sobj_served(MP_HANDLE(l), MP__H_RLOCK);
    if (rc == 1) return mp__rx_lock_acquire(MP_HANDLE(l), MP__H_RLOCK, timeout_ms);
    return rc ? rc : lock_take(&l->o, timeout_ms, true);
}

int mp_rlock_release(mp_rlock_t *l)
{
    int rc = sobj_served(MP_HANDLE(l), MP__H_RLOCK);
    if (rc == 1) return mp__rx_lock_release(MP_HANDLE(l), MP__H_RLOCK);
    return rc ? rc : lock_give(&l->o, true);
}

void mp_rlock_free(mp_rlock_t *l)
{
    if (!l) return; /* as free(NULL): the last detail stays */
    if (mp__rx_free(MP_HANDLE(l), MP__H_RLOCK)) return;
    if (mp__handle_check(MP_HANDLE(l), MP__H_RLOCK)) return;
    if (lock_held(&l->o)) {
        ((lock_state_t *)l->o.st)->count = 1;
        lock_give(&l->o, true);
    }
    sobj_free(&l->o);
}

static int lock_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    sobj_t *o;
    int rc = sobj_unpack(MP__H_LOCK, &lock_spec, sizeof(mp_lock_t), r, tab, ntab, &o);
    if (!rc) *out = &o->h;
    return rc;
}

static int lock_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return lock_unpack(r, NULL, 0, out);
}

static void lock_free_h(mp_handle_t *h)
{
    mp_lock_free((mp_lock_t *)h);
}

const mp__htype_ops_t mp__lock_ops = {
    .name = "lock",
    .pack = sobj_pack,
    .unpack = lock_unpack,
    .free = lock_free_h,
    .export_blob = sobj_export,
    .import_blob = lock_import,
};

static int rlock_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    sobj_t *o;
    int rc = sobj_unpack(MP__H_RLOCK, &rlock_spec, sizeof(mp_rlock_t), r, tab, ntab, &o);
    if (!rc) *out = &o->h;
    return rc;
}

static int rlock_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return rlock_unpack(r, NULL, 0, out);
}

static void rlock_free_h(mp_handle_t *h)
{
    mp_rlock_free((mp_rlock_t *)h);
}

const mp__htype_ops_t mp__rlock_ops = {
    .name = "rlock",
    .pack = sobj_pack,
    .unpack = rlock_unpack,
    .free = rlock_free_h,
    .export_blob = sobj_export,
    .import_blob = rlock_import,
};

/* ---- Semaphore ---- */

int mp_semaphore_create(mp_semaphore_t **s, unsigned value, unsigned max)
{
    if (!s) return mp__fail(MP_EINVAL, "mp_semaphore_create: NULL out-pointer");
    if (value > SEM_VALUE_MAX || max > SEM_VALUE_MAX || (max && value > max))
        return mp__fail(MP_EINVAL, "semaphore value %u out of range (max %u)", value, max);
    sobj_t *o;
    int rc = sobj_create(MP__H_SEMAPHORE, &sem_spec, sizeof **s, &o);
    if (!rc) *s = (void *)o;
    if (rc) return rc;
    sem_state_t *st = (*s)->o.st;
    st->max = max;
    atomic_store(&st->count, value);
    return 0;
}

int mp_semaphore_create_owned(mp_semaphore_t **s, unsigned value)
{
    if (!s) return mp__fail(MP_EINVAL, "mp_semaphore_create_owned: NULL out-pointer");
    if (value < 1 || value > MP_SEMAPHORE_OWNED_MAX)
        return mp__fail(MP_EINVAL, "owner-tracked semaphore value %u out of range (1 to %u)", value,
                        MP_SEMAPHORE_OWNED_MAX);
    mp__seg_spec_t spec = osem_spec(value);
    sobj_t *o;
    int rc = sobj_create(MP__H_SEMAPHORE, &spec, sizeof **s, &o);
    if (!rc) {
        *s = (void *)o;
        (*s)->owned = value;
    }
    return rc;
}

/* The count this thread holds, or -1. */
static int osem_mine(mp_semaphore_t *s, uint64_t me)
{
    osem_state_t *st = s->o.st;
    for (unsigned i = 0; i < s->owned; i++)
        if (atomic_load_explicit(&st->owner[i], memory_order_relaxed) == me) return (int)i;
    return -1;
}

/* Tries each count not already this thread's (a Win32 mutex would let
 * its owner in again), then sleeps until a release. A dead holder's count
 * is found by the try (MP_EOWNERDEAD), at the latest when the 1 s slice
 * of a sleep ends. */
static int osem_take(mp_semaphore_t *s, long timeout_ms)
{
    osem_state_t *st = s->o.st;
    uint64_t me = mp__os_thread_id(), start = 0;
    for (;;) {
        uint32_t g = atomic_load(&st->gen);
        for (unsigned i = 0; i < s->owned; i++) {
            if (atomic_load_explicit(&st->owner[i], memory_order_relaxed) == me) continue;
            int rc = mp__seg_lock(s->o.seg, i, 0);
            if (rc == MP_ETIMEDOUT) continue;
            if (rc && rc != MP_EOWNERDEAD) return rc;
            atomic_store_explicit(&st->owner[i], me, memory_order_relaxed);
            return rc;
        }
        if (!start) start = mp__os_now_ns();
        int rc = wait_word(&s->o, &st->gen, g, timeout_ms, start);
        if (rc == MP_ETIMEDOUT) return timed_out("semaphore not acquired", timeout_ms);
        if (rc) return rc;
    }
}

static int osem_give(mp_semaphore_t *s)
{
    osem_state_t *st = s->o.st;
    int i = osem_mine(s, mp__os_thread_id());
    if (i < 0)
        return mp__fail(MP_EPERM, "this thread holds no count of the owner-tracked semaphore");
    atomic_store_explicit(&st->owner[i], 0, memory_order_relaxed);
    int rc = mp__seg_unlock(s->o.seg, (unsigned)i);
    if (rc) return rc;
    atomic_fetch_add(&st->gen, 1);
    return mp__seg_wake(s->o.seg, 0, &st->gen, 1);
}

/* Counts without a holder; a dead holder's count stays taken until the
 * next acquirer takes it over. */
static unsigned osem_value(mp_semaphore_t *s)
{
    osem_state_t *st = s->o.st;
    unsigned v = 0;
    for (unsigned i = 0; i < s->owned; i++)
        v += atomic_load_explicit(&st->owner[i], memory_order_relaxed) == 0;
    return v;
}

int mp_semaphore_acquire(mp_semaphore_t *s, long timeout_ms)
{
    int rc = sobj_served(MP_HANDLE(s), MP__H_SEMAPHORE);
    if (rc == 1) return mp__rx_sem_acquire(MP_HANDLE(s), timeout_ms);
    if (rc) return rc;
    if (s->owned) return osem_take(s, timeout_ms);
    sem_state_t *st = s->o.st;
    uint64_t start = 0; /* read only when it must wait: a clock read per take is measurable */
    for (;;) {
        uint32_t c = atomic_load(&st->count);
        while (c > 0)
            if (atomic_compare_exchange_weak(&st->count, &c, c - 1)) return 0;
        if (!start) start = mp__os_now_ns();
        rc = wait_word(&s->o, &st->count, 0, timeout_ms, start);
        if (rc == MP_ETIMEDOUT) return timed_out("semaphore not acquired", timeout_ms);
        if (rc) return rc;
    }
}

int mp_semaphore_release(mp_semaphore_t *s)
{
    int rc = sobj_served(MP_HANDLE(s), MP__H_SEMAPHORE);
    if (rc == 1) return mp__rx_sem_release(MP_HANDLE(s));
    if (rc) return rc;
    if (s->owned) return osem_give(s);
    sem_state_t *st = s->o.st;
    uint32_t limit = st->max ? st->max : SEM_VALUE_MAX;
    uint32_t c = atomic_load(&st->count);
    do {
        if (c >= limit)
            return mp__fail(MP_EINVAL, "semaphore released past its bound of %u", limit);
    } while (!atomic_compare_exchange_weak(&st->count, &c, c + 1));
    return mp__seg_wake(s->o.seg, 0, &st->count, 1);
}

int mp_semaphore_value(mp_semaphore_t *s, unsigned *v)
{
    if (mp__handle_is_remote(MP_HANDLE(s))) return mp__rx_sem_value(MP_HANDLE(s), v);
    int rc = mp__handle_check(MP_HANDLE(s), MP__H_SEMAPHORE);
    if (!rc && !v) rc = mp__fail(MP_EINVAL, "mp_semaphore_value: NULL out-pointer");
    if (!rc) *v = s->owned ? osem_value(s) : atomic_load(&((sem_state_t *)s->o.st)->count);
    return rc;
}

void mp_semaphore_free(mp_semaphore_t *s)
{
    if (!s) return; /* as free(NULL): the last detail stays */
    if (mp__rx_free(MP_HANDLE(s), MP__H_SEMAPHORE)) return;
    if (mp__handle_check(MP_HANDLE(s), MP__H_SEMAPHORE)) return;
    /* Freed by a holder: its counts go back, as a Lock's does. */
    if (s->owned)
        while (osem_mine(s, mp__os_thread_id()) >= 0 && !osem_give(s))
            ;
    sobj_free(&s->o);
}

/* The number of owner-tracked counts (0: a plain semaphore), then the
 * segment: the two kinds have segments of different shapes. */
static int sem_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp__wbuf_u8(w, (uint8_t)((mp_semaphore_t *)h)->owned);
    return sobj_pack(h, w, t);
}

static int sem_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return sem_pack(h, w, NULL);
}

static int sem_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    unsigned owned = mp__rbuf_u8(r);
    if (r->err) return r->err;
    if (owned > MP_SEMAPHORE_OWNED_MAX) return mp__rbuf_bad(r, "semaphore kind out of range");
    mp__seg_spec_t spec = owned ? osem_spec(owned) : sem_spec;
    sobj_t *o;
    int rc = sobj_unpack(MP__H_SEMAPHORE, &spec, sizeof(mp_semaphore_t), r, tab, ntab, &o);
    if (rc) return rc;
    ((mp_semaphore_t *)o)->owned = owned;
    *out = &o->h;
    return 0;
}

static int sem_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return sem_unpack(r, NULL, 0, out);
}

static void sem_free_h(mp_handle_t *h)
{
    mp_semaphore_free((mp_semaphore_t *)h);
}

const mp__htype_ops_t mp__semaphore_ops = {
    .name = "semaphore",
    .pack = sem_pack,
    .unpack = sem_unpack,
    .free = sem_free_h,
    .export_blob = sem_export,
    .import_blob = sem_import,
};

/* ---- Event ---- */

int mp_event_create(mp_event_t **e)
{
    if (!e) return mp__fail(MP_EINVAL, "mp_event_create: NULL out-pointer");
    sobj_t *o;
    int rc = sobj_create(MP__H_EVENT, &event_spec, sizeof **e, &o);
    if (!rc) *e = (void *)o;
    return rc;
}

int mp_event_set(mp_event_t *e)
{
    if (mp__handle_is_remote(MP_HANDLE(e))) return mp__rx_event_set(MP_HANDLE(e));
    int rc = mp__handle_check(MP_HANDLE(e), MP__H_EVENT);
    if (rc) return rc;
    event_state_t *st = e->o.st;
    atomic_store(&st->flag, 1);
    return mp__seg_wake(e->o.seg, 0, &st->flag, MP__WAKE_ALL);
}

int mp_event_clear(mp_event_t *e)
{
    if (mp__handle_is_remote(MP_HANDLE(e))) return mp__rx_event_clear(MP_HANDLE(e));
    int rc = mp__handle_check(MP_HANDLE(e), MP__H_EVENT);
    if (!rc) atomic_store(&((event_state_t *)e->o.st)->flag, 0);
    return rc;
}

int mp_event_is_set(mp_event_t *e)
{
    if (mp__handle_is_remote(MP_HANDLE(e))) return mp__rx_event_is_set(MP_HANDLE(e));
    int rc = mp__handle_check(MP_HANDLE(e), MP__H_EVENT);
    return rc ? rc : (int)atomic_load(&((event_state_t *)e->o.st)->flag);
}

int mp_event_wait(mp_event_t *e, long timeout_ms)
{
    if (mp__handle_is_remote(MP_HANDLE(e))) return mp__rx_event_wait(MP_HANDLE(e), timeout_ms);
    int rc = mp__handle_check(MP_HANDLE(e), MP__H_EVENT);
    if (rc) return rc;
    event_state_t *st = e->o.st;
    uint64_t start = mp__os_now_ns();
    while (!atomic_load(&st->flag)) {
        rc = wait_word(&e->o, &st->flag, 0, timeout_ms, start);
        if (rc == MP_ETIMEDOUT) return timed_out("event not set", timeout_ms);
        if (rc) return rc;
    }
    return 0;
}

void mp_event_free(mp_event_t *e)
{
    if (!e) return; /* as free(NULL): the last detail stays */
    if (mp__rx_free(MP_HANDLE(e), MP__H_EVENT)) return;
    if (!mp__handle_check(MP_HANDLE(e), MP__H_EVENT)) sobj_free(&e->o);
}

static int event_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    sobj_t *o;
    int rc = sobj_unpack(MP__H_EVENT, &event_spec, sizeof(mp_event_t), r, tab, ntab, &o);
    if (!rc) *out = &o->h;
    return rc;
}

static int event_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return event_unpack(r, NULL, 0, out);
}

static void event_free_h(mp_handle_t *h)
{
    mp_event_free((mp_event_t *)h);
}

const mp__htype_ops_t mp__event_ops = {
    .name = "event",
    .pack = sobj_pack,
    .unpack = event_unpack,
    .free = event_free_h,
    .export_blob = sobj_export,
    .import_blob = event_import,
};

/* ---- Condition ---- */

int mp_condition_create(mp_condition_t **c, mp_lock_t *lock)
{
    if (!c) return mp__fail(MP_EINVAL, "mp_condition_create: NULL out-pointer");
    if (lock) {
        int rc = mp__handle_check(MP_HANDLE(lock), MP__H_LOCK);
        if (rc) return rc;
        if (mp__handle_is_remote(MP_HANDLE(lock)))
            return mp__fail(MP_ETYPE, "a condition takes an ordinary lock, not a manager's");
    }
    mp_lock_t *own = NULL;
    if (!lock) {
        int rc = mp_lock_create(&own);
        if (rc) return rc;
    }
    sobj_t *o;
    int rc = sobj_create(MP__H_CONDITION, &cond_spec, sizeof **c, &o);
    if (!rc) *c = (void *)o;
    if (rc) {
        mp_lock_free(own);
        return rc;
    }
    (*c)->lock = lock ? lock : own;
    (*c)->own_lock = !lock;
    return 0;
}

static int cond_check(mp_condition_t *c, bool need_lock)
{
    int rc = mp__handle_check(MP_HANDLE(c), MP__H_CONDITION);
    if (!rc) rc = mp__handle_check(MP_HANDLE(c->lock), MP__H_LOCK);
    if (!rc && need_lock && !lock_held(&c->lock->o))
        rc = mp__fail(MP_EPERM, "the condition's lock is not held by this thread");
    return rc;
}

int mp_condition_acquire(mp_condition_t *c, long timeout_ms)
{
    int rc = cond_check(c, false);
    return rc ? rc : lock_take(&c->lock->o, timeout_ms, false);
}

int mp_condition_release(mp_condition_t *c)
{
    int rc = cond_check(c, false);
    return rc ? rc : lock_give(&c->lock->o, false);
}

static bool take_grant(cond_state_t *st)
{
    uint32_t g = atomic_load(&st->grants);
    while (g > 0)
        if (atomic_compare_exchange_weak(&st->grants, &g, g - 1)) return true;
    return false;
}

/* Only a notify that came after this waiter arrived (the generation moved
 * since g0) lets it take a grant: a waiter never takes a wake-up meant for
 * those who were waiting before it. */
static int cond_sleep(mp_condition_t *c, uint32_t g0, long timeout_ms, bool *woken)
{
    cond_state_t *st = c->o.st;
    uint64_t start = mp__os_now_ns();
    for (;;) {
        uint32_t g = atomic_load(&st->gen);
        if (g != g0 && take_grant(st)) {
            *woken = true;
            return 0;
        }
        int rc = wait_word(&c->o, &st->gen, g, timeout_ms, start);
        if (rc) return rc;
    }
}

int mp_condition_wait(mp_condition_t *c, long timeout_ms)
{
    int rc = cond_check(c, true);
    if (rc) return rc;
    cond_state_t *st = c->o.st;
    atomic_fetch_add(&st->waiting, 1);
    uint32_t g0 = atomic_load(&st->gen);
    rc = lock_give(&c->lock->o, false);
    if (rc) {
        atomic_fetch_sub(&st->waiting, 1);
        return rc;
    }
    bool woken = false;
    int wrc = cond_sleep(c, g0, timeout_ms, &woken);
    int lrc = lock_take(&c->lock->o, MP_FOREVER, false);
    if (lrc && lrc != MP_EOWNERDEAD) return lrc;
    /* Not woken: a grant may have come since (take it: that notify counted
     * us), else leave the waiting count. Under the lock, as notify is. */
    if (!woken) {
        if (atomic_load(&st->gen) != g0 && take_grant(st))
            woken = true;
        else
            atomic_fetch_sub(&st->waiting, 1);
    }
    if (lrc) return lrc;
    if (woken) return 0;
    return wrc == MP_ETIMEDOUT ? timed_out("condition not notified", timeout_ms) : wrc;
}

int mp_condition_notify(mp_condition_t *c, unsigned n)
{
    int rc = cond_check(c, true);
    if (rc) return rc;
    cond_state_t *st = c->o.st;
    uint32_t waiting = atomic_load(&st->waiting);
    uint32_t k = n < waiting ? n : waiting;
    if (!k) return 0;
    /* This order keeps a notifier killed half-way from stranding anyone:
     * waiters wake to no grant and sleep again, or find a grant at their
     * next slice. */
    atomic_fetch_add(&st->gen, 1);
    atomic_fetch_add(&st->grants, k);
    atomic_fetch_sub(&st->waiting, k);
    /* All sleepers look: which k take the grants does not matter. */
    return mp__seg_wake(c->o.seg, 0, &st->gen, MP__WAKE_ALL);
}

int mp_condition_notify_all(mp_condition_t *c)
{
    return mp_condition_notify(c, UINT32_MAX);
}

void mp_condition_free(mp_condition_t *c)
{
    if (!c) return; /* as free(NULL): the last detail stays */
    if (mp__handle_check(MP_HANDLE(c), MP__H_CONDITION)) return;
    if (c->own_lock) mp_lock_free(c->lock);
    sobj_free(&c->o);
}

/* A condition travels with its lock (the lock's own ref follows). */
static int cond_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp_condition_t *c = (mp_condition_t *)h;
    int rc = mp__handle_check(MP_HANDLE(c->lock), MP__H_LOCK);
    if (!rc) rc = sobj_pack(h, w, t);
    return rc ? rc : sobj_pack(MP_HANDLE(c->lock), w, t);
}

static int cond_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return cond_pack(h, w, NULL);
}

static int cond_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    mp_condition_t *c;
    sobj_t *o;
    int rc = sobj_unpack(MP__H_CONDITION, &cond_spec, sizeof *c, r, tab, ntab, &o);
    if (!rc) c = (void *)o;
    if (rc) return rc;
    mp_handle_t *lock;
    rc = lock_unpack(r, tab, ntab, &lock);
    if (rc) {
        sobj_free(&c->o);
        return rc;
    }
    c->lock = (mp_lock_t *)lock;
    c->own_lock = true;
    *out = &c->o.h;
    return 0;
}

static int cond_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return cond_unpack(r, NULL, 0, out);
}

static void cond_free_h(mp_handle_t *h)
{
    mp_condition_free((mp_condition_t *)h);
}

const mp__htype_ops_t mp__condition_ops = {
    .name = "condition",
    .pack = cond_pack,
    .unpack = cond_unpack,
    .free = cond_free_h,
    .export_blob = cond_export,
    .import_blob = cond_import,
};

/* ---- Barrier ---- */

static uint64_t gen_bit(uint32_t g)
{
    return (uint64_t)1 << (g & 63);
}

/* Ends the current generation as broken; its waiters get MP_ESTATE. */
static void barrier_break(barrier_state_t *st)
{
    uint32_t g = atomic_load(&st->gen);
    atomic_fetch_and(&st->passed, ~gen_bit(g));
    atomic_store(&st->broken, 1);
    st->count = 0;
    atomic_store(&st->gen, g + 1);
}

/* The barrier's own lock. A party that died holding it may have left the
 * state half-updated: the barrier is then broken (reset repairs it). */
static int barrier_lock(mp_barrier_t *b, bool *broke)
{
    int rc = mp__seg_lock(b->o.seg, 0, MP_FOREVER);
    *broke = rc == MP_EOWNERDEAD;
    if (*broke) barrier_break(b->o.st);
    return *broke ? 0 : rc;
}

static int barrier_unlock(mp_barrier_t *b, bool wake)
{
    barrier_state_t *st = b->o.st;
    int rc = mp__seg_unlock(b->o.seg, 0);
    int wrc = wake ? mp__seg_wake(b->o.seg, 0, &st->gen, MP__WAKE_ALL) : 0;
    return rc ? rc : wrc;
}

int mp_barrier_create(mp_barrier_t **b, unsigned parties)
{
    if (!b || !parties) return mp__fail(MP_EINVAL, "mp_barrier_create: needs at least one party");
    sobj_t *o;
    int rc = sobj_create(MP__H_BARRIER, &barrier_spec, sizeof **b, &o);
    if (!rc) *b = (void *)o;
    if (!rc) ((barrier_state_t *)(*b)->o.st)->parties = parties;
    return rc;
}

static int barrier_outcome(barrier_state_t *st, uint32_t g, unsigned idx, unsigned *index)
{
    if (!(atomic_load(&st->passed) & gen_bit(g)))
        return mp__fail(MP_ESTATE, "the barrier was broken");
    if (index) *index = idx;
    return 0;
}

static int barrier_timeout(mp_barrier_t *b, uint32_t g, unsigned idx, unsigned *index,
                           long timeout_ms)
{
    barrier_state_t *st = b->o.st;
    bool broke;
    int rc = barrier_lock(b, &broke);
    if (rc) return rc;
    bool still = atomic_load(&st->gen) == g;
    /* Python's rule: a waiter that times out breaks the barrier for all. */
    if (still) barrier_break(st);
    rc = barrier_unlock(b, still || broke);
    if (rc) return rc;
    return still ? timed_out("barrier not passed", timeout_ms) : barrier_outcome(st, g, idx, index);
}

int mp_barrier_wait(mp_barrier_t *b, long timeout_ms, unsigned *index)
{
    int rc = mp__handle_check(MP_HANDLE(b), MP__H_BARRIER);
    if (rc) return rc;
    barrier_state_t *st = b->o.st;
    uint64_t start = mp__os_now_ns();
    bool broke;
    rc = barrier_lock(b, &broke);
    if (rc) return rc;
    if (atomic_load(&st->broken)) {
        rc = barrier_unlock(b, broke);
        return rc ? rc : mp__fail(MP_ESTATE, "the barrier is broken");
    }
    unsigned idx = st->count++;
    uint32_t g = atomic_load(&st->gen);
    if (st->count == st->parties) {
        st->count = 0;
        atomic_fetch_or(&st->passed, gen_bit(g));
        atomic_store(&st->gen, g + 1);
        rc = barrier_unlock(b, true);
        if (!rc && index) *index = idx;
        return rc;
    }
    rc = barrier_unlock(b, false);
    while (!rc && atomic_load(&st->gen) == g)
        rc = wait_word(&b->o, &st->gen, g, timeout_ms, start);
    if (rc == MP_ETIMEDOUT) return barrier_timeout(b, g, idx, index, timeout_ms);
    return rc ? rc : barrier_outcome(st, g, idx, index);
}

int mp_barrier_abort(mp_barrier_t *b)
{
    int rc = mp__handle_check(MP_HANDLE(b), MP__H_BARRIER);
    bool broke;
    if (!rc) rc = barrier_lock(b, &broke);
    if (rc) return rc;
    barrier_break(b->o.st);
    return barrier_unlock(b, true);
}

int mp_barrier_reset(mp_barrier_t *b)
{
    int rc = mp__handle_check(MP_HANDLE(b), MP__H_BARRIER);
    bool broke;
    if (!rc) rc = barrier_lock(b, &broke);
    if (rc) return rc;
    barrier_state_t *st = b->o.st;
    bool waiters = st->count > 0;
    if (waiters) barrier_break(st);
    atomic_store(&st->broken, 0);
    return barrier_unlock(b, waiters || broke);
}

int mp_barrier_broken(mp_barrier_t *b)
{
    int rc = mp__handle_check(MP_HANDLE(b), MP__H_BARRIER);
    return rc ? rc : (int)atomic_load(&((barrier_state_t *)b->o.st)->broken);
}

int mp_barrier_n_waiting(mp_barrier_t *b, unsigned *n)
{
    int rc = mp__handle_check(MP_HANDLE(b), MP__H_BARRIER);
    bool broke;
    if (!rc && !n) rc = mp__fail(MP_EINVAL, "mp_barrier_n_waiting: NULL out-pointer");
    if (!rc) rc = barrier_lock(b, &broke);
    if (rc) return rc;
    *n = ((barrier_state_t *)b->o.st)->count;
    return barrier_unlock(b, broke);
}

void mp_barrier_free(mp_barrier_t *b)
{
    if (!b) return; /* as free(NULL): the last detail stays */
    if (!mp__handle_check(MP_HANDLE(b), MP__H_BARRIER)) sobj_free(&b->o);
}

static int barrier_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    sobj_t *o;
    int rc = sobj_unpack(MP__H_BARRIER, &barrier_spec, sizeof(mp_barrier_t), r, tab, ntab, &o);
    if (!rc) *out = &o->h;
    return rc;
}

static int barrier_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return barrier_unpack(r, NULL, 0, out);
}

static void barrier_free_h(mp_handle_t *h)
{
    mp_barrier_free((mp_barrier_t *)h);
}

const mp__htype_ops_t mp__barrier_ops = {
    .name = "barrier",
    .pack = sobj_pack,
    .unpack = barrier_unpack,
    .free = barrier_free_h,
    .export_blob = sobj_export,
    .import_blob = barrier_import,
};

/* ---- Value and Array ---- */

static int value_make(mp_value_t **v, size_t elem, size_t n)
{
    if (!v || !elem || !n) return mp__fail(MP_EINVAL, "a value needs a size and a count");
    if (n > SIZE_MAX / elem) return mp__fail(MP_ENOMEM, "array of %zu x %zu bytes", n, elem);
    mp_rlock_t *lock;
    int rc = mp_rlock_create(&lock);
    if (rc) return rc;
    mp__seg_spec_t spec = {.size = elem * n, .tag = VALUE_TAG};
    sobj_t *o;
    rc = sobj_create(MP__H_VALUE, &spec, sizeof **v, &o);
    if (!rc) *v = (void *)o;
    if (rc) {
        mp_rlock_free(lock);
        return rc;
    }
    (*v)->elem = elem;
    (*v)->n = n;
    (*v)->lock = lock;
    return 0;
}

int mp_value_create(mp_value_t **v, size_t size)
{
    return value_make(v, size, 1);
}

int mp_array_create(mp_array_t **a, size_t elem_size, size_t n)
{
    return value_make(a, elem_size, n);
}

static mp_value_t *value_check(mp_value_t *v)
{
    return mp__handle_check(MP_HANDLE(v), MP__H_VALUE) ? NULL : v;
}

void *mp_value_ptr(mp_value_t *v)
{
    return value_check(v) ? v->o.st : NULL;
}

size_t mp_value_size(mp_value_t *v)
{
    return value_check(v) ? v->elem * v->n : 0;
}

mp_rlock_t *mp_value_lock(mp_value_t *v)
{
    return value_check(v) ? v->lock : NULL;
}

void mp_value_free(mp_value_t *v)
{
    if (!v) return; /* as free(NULL): the last detail stays */
    if (!value_check(v)) return;
    mp_rlock_free(v->lock);
    sobj_free(&v->o);
}

void *mp_array_ptr(mp_array_t *a)
{
    return mp_value_ptr(a);
}

size_t mp_array_len(mp_array_t *a)
{
    return value_check(a) ? a->n : 0;
}

mp_rlock_t *mp_array_lock(mp_array_t *a)
{
    return mp_value_lock(a);
}

void mp_array_free(mp_array_t *a)
{
    mp_value_free(a);
}

static int value_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp_value_t *v = (mp_value_t *)h;
    mp__wbuf_u64(w, v->elem);
    mp__wbuf_u64(w, v->n);
    int rc = sobj_pack(h, w, t);
    return rc ? rc : sobj_pack(MP_HANDLE(v->lock), w, t);
}

static int value_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return value_pack(h, w, NULL);
}

static int value_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    uint64_t elem = mp__rbuf_u64(r), n = mp__rbuf_u64(r);
    if (r->err) return r->err;
    if (!elem || !n || elem > SIZE_MAX || n > SIZE_MAX / elem)
        return mp__rbuf_bad(r, "value of impossible size");
    mp__seg_spec_t spec = {.size = (size_t)(elem * n), .tag = VALUE_TAG};
    mp_value_t *v;
    sobj_t *o;
    int rc = sobj_unpack(MP__H_VALUE, &spec, sizeof *v, r, tab, ntab, &o);
    if (!rc) v = (void *)o;
    if (rc) return rc;
    mp_handle_t *lock;
    rc = rlock_unpack(r, tab, ntab, &lock);
    if (rc) {
        sobj_free(&v->o);
        return rc;
    }
    v->elem = (size_t)elem;
    v->n = (size_t)n;
    v->lock = (mp_rlock_t *)lock;
    *out = &v->o.h;
    return 0;
}

static int value_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return value_unpack(r, NULL, 0, out);
}

static void value_free_h(mp_handle_t *h)
{
    mp_value_free((mp_value_t *)h);
}

const mp__htype_ops_t mp__value_ops = {
    .name = "value",
    .pack = value_pack,
    .unpack = value_unpack,
    .free = value_free_h,
    .export_blob = value_export,
    .import_blob = value_import,
};
