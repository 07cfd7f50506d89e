/* Queue and JoinableQueue: the API, waiting, and crossing into other
 * processes (the data structure is in queue_ring.c).
 *
 * Waiting: consumers sleep on put_seq, producers of a full bounded queue
 * on get_seq, joiners on done_seq, each after a short spin (a handoff
 * between running processes then costs no system call); see
 * register_sleeper for how wakers and sleepers meet. Sleeps are cut into
 * slices: after a slice with no wake-up, the sleeper repairs what a
 * process killed between changing the state and waking may have left
 * (heal). */
#include <stdlib.h>
#include <string.h>

#include "manager_remote.h"
#include "queue_internal.h"

#define Q_TAG 0x55455551u /* "QUEU" */
#define SPIN_NS 20000u
#define SLICE_MS 1000L
#define RING_DEFAULT ((size_t)1 << 20)
#define RING_MIN ((size_t)4096)
#define RING_MAX ((size_t)1 << 30)
#define ITEM_MAX ((uint64_t)1 << 48)

static const mp__seg_spec_t expect_spec = {
    .nmutex = Q_NLOCK, .nwq = Q_NWQ, .tag = Q_TAG, .ext = true};

/* ---- handles ---- */

static int wrap(mp__seg_t *seg, mp_queue_t **out)
{
    int rc = mp__q_validate(mp__seg_ptr(seg), mp__seg_size(seg));
    mp_queue_t *h = rc ? NULL : mp__calloc(1, sizeof *h);
    if (!rc && !h) rc = MP_ENOMEM;
    if (rc) {
        mp__seg_close(seg);
        return rc;
    }
    h->seg = seg;
    h->q = mp__seg_ptr(seg);
    mp__handle_init(&h->h, MP__H_QUEUE);
    *out = h;
    return 0;
}

/* io: put or get, which mp_queue_close ends in this process. */
static int usable(mp_queue_t *h, bool io)
{
    int rc = mp__handle_check(MP_HANDLE(h), MP__H_QUEUE);
    if (rc) return rc;
    if (!h->seg) return mp__fail(MP_ECLOSED, "the queue was not passed to this process");
    if (io && h->closed_by && h->closed_by == mp__os_getpid())
        return mp__fail(MP_ECLOSED, "the queue was closed in this process");
    return 0;
}

int mp_queue_create(mp_queue_t **out, const mp_queue_opts_t *o)
{
    if (!out) return mp__fail(MP_EINVAL, "mp_queue_create: NULL out-pointer");
    size_t want = o && o->segment_bytes ? o->segment_bytes : RING_DEFAULT;
    if (want > RING_MAX)
        return mp__fail(MP_EINVAL, "segment_bytes %zu is over the limit of %zu", want, RING_MAX);
    size_t ring = RING_MIN;
    while (ring < want)
        ring <<= 1;
    mp__seg_spec_t spec = expect_spec;
    spec.size = sizeof(q_shm_t) + ring;
    mp__seg_t *seg;
    int rc = mp__seg_create(&spec, &seg);
    if (rc) return rc;
    rc = mp__q_format(mp__seg_ptr(seg), ring, o ? o->maxsize : 0, o && o->joinable);
    if (rc) {
        mp__seg_close(seg);
        return rc;
    }
    return wrap(seg, out);
}

/* Releases this process's share: mapped windows, then the segment. */
static void release(mp_queue_t *h)
{
    mp__q_cache_clear(&h->pc);
    mp__q_cache_clear(&h->cc);
    mp__seg_close(h->seg);
    h->seg = NULL;
    h->q = NULL;
}

int mp_queue_close(mp_queue_t *h)
{
    if (mp__handle_is_remote(MP_HANDLE(h))) return mp__rx_queue_close(MP_HANDLE(h));
    int rc = usable(h, false);
    if (!rc) h->closed_by = mp__os_getpid();
    return rc;
}

void mp_queue_free(mp_queue_t *h)
{
    if (!h) return; /* as free(NULL): the last detail stays */
    if (mp__rx_free(MP_HANDLE(h), MP__H_QUEUE)) return;
    if (mp__handle_check(MP_HANDLE(h), MP__H_QUEUE)) return;
    mp__handle_fini(&h->h);
    if (h->seg) release(h);
    free(h);
}

/* ---- locks, repair, waiting ---- */

/* Takes one side's lock. Repairs the state when its last owner died, and
 * wakes everyone who waits on that side (its wake-up may be lost). */
static int lock_side(mp_queue_t *h, unsigned side, long timeout_ms)
{
    int rc = mp__seg_lock(h->seg, side, timeout_ms);
    if (rc != MP_EOWNERDEAD) return rc;
    q_shm_t *q = h->q;
    if (side == Q_LOCK_PUT) {
        mp__q_repair_put(h);
        mp__seg_wake(h->seg, Q_WQ_GET, &q->put_seq, MP__WAKE_ALL);
    } else {
        mp__q_repair_get(h);
        mp__seg_wake(h->seg, Q_WQ_PUT, &q->get_seq, MP__WAKE_ALL);
    }
    return 0;
}

/* Repairs either side if its lock's owner died (without waiting for a
 * lock that a live process holds). */
static void heal(mp_queue_t *h)
{
    for (unsigned side = 0; side < Q_NLOCK; side++)
        if (!lock_side(h, side, 0)) mp__seg_unlock(h->seg, side);
}

/* A lock is held only for a bounded time (at most one item's copy), so a
 * call that must not wait for the queue may still wait for the lock. */
static long lock_ms(long timeout_ms, uint64_t start)
{
    return timeout_ms <= 0 ? MP_FOREVER : mp__timeout_left(timeout_ms, start);
}

static uint64_t now_if(long timeout_ms)
{
    return timeout_ms > 0 ? mp__os_now_ns() : 0;
}

/* Waiting without losing a wake-up, and waking only who sleeps.
 *
 * Each side's last publication stores the low bits of its count in
 * put_seq / get_seq, on the line it writes anyway; the other side waits
 * for that word to change. A waiter reads the word, looks at the queue
 * once more (under the lock), then spins on the word without telling
 * anyone. Only to sleep does it register (get_sleepers / put_sleepers,
 * then a full fence), read the word and look once more. The other side,
 * after publishing, fences and reads the registrations: one of the two
 * sees the other. It makes the system call only on the transition the
 * sleepers wait for (empty to not empty, full to not full), and whoever
 * still finds work after its own step wakes the next sleeper of its kind,
 * so several sleepers all get their turn. A stream thus costs no system
 * call and no write the other side must see beyond the items and counts
 * themselves. */
static void register_sleeper(_Atomic uint32_t *sleepers)
{
    atomic_fetch_add(sleepers, 1);
    atomic_thread_fence(memory_order_seq_cst);
}

static void after_put(mp_queue_t *h, uint64_t nput)
{
    q_shm_t *q = h->q;
    atomic_thread_fence(memory_order_seq_cst);
    bool consumers = atomic_load_explicit(&q->get_sleepers, memory_order_relaxed);
    bool producers = q->maxsize && atomic_load_explicit(&q->put_sleepers, memory_order_relaxed);
    if (!consumers && !producers) return;
    uint64_t got = atomic_load(&q->nget_pub);
    if (consumers && got + 1 >= nput) mp__seg_wake(h->seg, Q_WQ_GET, &q->put_seq, 1);
    if (producers && nput - got < q->maxsize) mp__seg_wake(h->seg, Q_WQ_PUT, &q->get_seq, 1);
}

static void after_get(mp_queue_t *h, uint64_t nget)
{
    q_shm_t *q = h->q;
    /* Only producers of a bounded queue may sleep until a get: for
     * consumers, waking the next one is a courtesy (it looks again after
     * registering anyway), which needs no fence. */
    if (q->maxsize) atomic_thread_fence(memory_order_seq_cst);
    bool consumers = atomic_load_explicit(&q->get_sleepers, memory_order_relaxed);
    bool producers = q->maxsize && atomic_load_explicit(&q->put_sleepers, memory_order_relaxed);
    if (!consumers && !producers) return;
    uint64_t put = atomic_load(&q->nput_pub);
    if (consumers && put > nget) mp__seg_wake(h->seg, Q_WQ_GET, &q->put_seq, 1);
    if (producers && put - nget + 1 >= q->maxsize) mp__seg_wake(h->seg, Q_WQ_PUT, &q->get_seq, 1);
}

/* A put or get that found nothing to do: stage 0 reads the word to spin
 * on (then the caller looks again), 1 spins and then registers (look
 * again), 2 sleeps on the side's word in slices (look again after each).
 * A consumer spins on the tag of the entry it waits for, a line its
 * producer writes anyway. */
typedef struct {
    _Atomic uint32_t *word, *sleepers;
    _Atomic uint32_t *(*spin_word)(mp_queue_t *h);
    _Atomic uint32_t *spin_at;
    unsigned wq, stage;
    uint32_t seen;
    uint64_t start;
    long timeout_ms;
} q_waiter_t;

/* 0: look again; MP_ETIMEDOUT when the caller's time is up. */
static int wait_step(mp_queue_t *h, q_waiter_t *w)
{
    if (w->stage == 0) {
        w->spin_at = w->spin_word ? w->spin_word(h) : w->word;
        w->seen = atomic_load_explicit(w->spin_at, memory_order_acquire);
        w->stage = 1;
        return 0;
    }
    long left = mp__timeout_left(w->timeout_ms, w->start);
    if (left == 0) return MP_ETIMEDOUT;
    int rc;
    if (w->stage == 1) {
        /* Only spins (timeout 0): any word of the segment will do. */
        rc = mp__seg_wait(h->seg, w->wq, w->spin_at, w->seen, 0, SPIN_NS);
        if (rc != MP_ETIMEDOUT) {
            w->stage = 0; /* it changed: start over */
            return rc;
        }
        register_sleeper(w->sleepers);
        w->stage = 2;
    } else {
        long slice = left < 0 || left > SLICE_MS ? SLICE_MS : left;
        rc = mp__seg_wait(h->seg, w->wq, w->word, w->seen, slice, 0);
        if (rc && rc != MP_ETIMEDOUT) return rc;
        /* Nothing cut the slice short: repair what a process killed
         * between changing the queue and waking may have left. */
        if (rc) heal(h);
        if (rc && mp__timeout_left(w->timeout_ms, w->start) == 0) return MP_ETIMEDOUT;
    }
    w->seen = atomic_load_explicit(w->word, memory_order_acquire);
    return 0;
}

static void wait_done(q_waiter_t *w)
{
    if (w->stage == 2) atomic_fetch_sub(w->sleepers, 1);
}

/* ---- put and get ---- */

/* Under the put lock: whether a bounded queue has room, reading the
 * consumers' count only when the one seen last says it is full. */
static bool has_room(mp_queue_t *h)
{
    q_shm_t *q = h->q;
    uint64_t put = atomic_load_explicit(&q->nput_pub, memory_order_relaxed);
    if (put - h->nget_seen < q->maxsize) return true;
    h->nget_seen = atomic_load_explicit(&q->nget_pub, memory_order_acquire);
    return put - h->nget_seen < q->maxsize;
}

int mp_queue_put(mp_queue_t *h, const void *buf, size_t len, long timeout_ms)
{
    if (mp__handle_is_remote(MP_HANDLE(h)))
        return mp__rx_queue_put(MP_HANDLE(h), buf, len, timeout_ms);
    int rc = usable(h, true);
    if (rc) return rc;
    if (!buf && len) return mp__fail(MP_EINVAL, "mp_queue_put: NULL buffer");
    if ((uint64_t)len > ITEM_MAX)
        return mp__fail(MP_EMSGSIZE, "a queue item is at most %llu bytes",
                        (unsigned long long)ITEM_MAX);
    q_shm_t *q = h->q;
    q_waiter_t w = {.word = &q->get_seq,
                    .sleepers = &q->put_sleepers,
                    .wq = Q_WQ_PUT,
                    .start = now_if(timeout_ms),
                    .timeout_ms = timeout_ms};
    for (;;) {
        rc = lock_side(h, Q_LOCK_PUT, lock_ms(timeout_ms, w.start));
        if (rc) break;
        uint64_t nput = 0;
        bool room = !q->maxsize || has_room(h);
        if (room) rc = mp__q_put_locked(h, buf, len, &nput);
        mp__seg_unlock(h->seg, Q_LOCK_PUT);
        if (room) {
            wait_done(&w);
            if (!rc) after_put(h, nput);
            return rc;
        }
        rc = wait_step(h, &w);
        if (rc) break;
    }
    wait_done(&w);
    if (rc != MP_ETIMEDOUT) return rc;
    return mp__fail(MP_EFULL, "the queue is full (maxsize %llu)", (unsigned long long)q->maxsize);
}

static int get_common(mp_queue_t *h, const q_sink_t *s, long timeout_ms)
{
    int rc = usable(h, true);
    if (rc) return rc;
    q_shm_t *q = h->q;
    q_waiter_t w = {.word = &q->put_seq,
                    .sleepers = &q->get_sleepers,
                    .spin_word = mp__q_spin_word,
                    .wq = Q_WQ_GET,
                    .start = now_if(timeout_ms),
                    .timeout_ms = timeout_ms};
    for (;;) {
        /* After reading the word, always look: the guess may predate it. */
        if (w.stage || mp__q_maybe_ready(h)) {
            rc = lock_side(h, Q_LOCK_GET, lock_ms(timeout_ms, w.start));
            if (rc) break;
            uint64_t nget = 0;
            rc = mp__q_take_locked(h, s, &nget);
            mp__seg_unlock(h->seg, Q_LOCK_GET);
            if (rc != MP_EEMPTY) {
                wait_done(&w);
                if (!rc) after_get(h, nget);
                return rc;
            }
        }
        rc = wait_step(h, &w);
        if (rc) break;
    }
    wait_done(&w);
    if (rc != MP_ETIMEDOUT) return rc;
    return mp__fail(MP_EEMPTY, "the queue is empty");
}

int mp_queue_get(mp_queue_t *h, void **buf, size_t *len, long timeout_ms)
{
    if (mp__handle_is_remote(MP_HANDLE(h)))
        return mp__rx_queue_get(MP_HANDLE(h), buf, len, timeout_ms);
    if (!buf || !len) return mp__fail(MP_EINVAL, "mp_queue_get: NULL out-pointer");
    q_sink_t s = {.out = buf, .len = len};
    return get_common(h, &s, timeout_ms);
}

int mp_queue_get_into(mp_queue_t *h, void *buf, size_t cap, size_t *len, long timeout_ms)
{
    if (mp__handle_is_remote(MP_HANDLE(h)))
        return mp__rx_queue_get_into(MP_HANDLE(h), buf, cap, len, timeout_ms);
    if ((!buf && cap) || !len) return mp__fail(MP_EINVAL, "mp_queue_get_into: NULL argument");
    q_sink_t s = {.buf = buf, .cap = cap, .len = len};
    return get_common(h, &s, timeout_ms);
}

/* ---- sizes ---- */

int mp_queue_qsize(mp_queue_t *h, size_t *n)
{
    if (mp__handle_is_remote(MP_HANDLE(h))) return mp__rx_queue_qsize(MP_HANDLE(h), n);
    int rc = usable(h, false);
    if (rc) return rc;
    if (!n) return mp__fail(MP_EINVAL, "mp_queue_qsize: NULL out-pointer");
    heal(h);
    uint64_t got = atomic_load(&h->q->nget_pub);
    *n = (size_t)(atomic_load(&h->q->nput_pub) - got);
    return 0;
}

int mp_queue_empty(mp_queue_t *h)
{
    if (mp__handle_is_remote(MP_HANDLE(h))) return mp__rx_queue_empty(MP_HANDLE(h));
    size_t n;
    int rc = mp_queue_qsize(h, &n);
    return rc ? rc : n == 0;
}

int mp_queue_full(mp_queue_t *h)
{
    if (mp__handle_is_remote(MP_HANDLE(h))) return mp__rx_queue_full(MP_HANDLE(h));
    size_t n;
    int rc = mp_queue_qsize(h, &n);
    return rc ? rc : h->q->maxsize && n >= h->q->maxsize;
}

/* ---- JoinableQueue ---- */

static int joinable(mp_queue_t *h)
{
    int rc = usable(h, false);
    if (!rc && !h->q->joinable) rc = mp__fail(MP_ETYPE, "the queue is not joinable");
    return rc;
}

int mp_queue_task_done(mp_queue_t *h)
{
    if (mp__handle_is_remote(MP_HANDLE(h))) return mp__rx_queue_task_done(MP_HANDLE(h));
    int rc = joinable(h);
    if (rc) return rc;
    q_shm_t *q = h->q;
    uint64_t done = atomic_load(&q->ndone);
    do {
        if (done >= atomic_load(&q->nput_pub))
            return mp__fail(MP_EINVAL, "task_done called more often than items were put");
    } while (!atomic_compare_exchange_weak(&q->ndone, &done, done + 1));
    atomic_fetch_add(&q->done_seq, 1);
    return mp__seg_wake(h->seg, Q_WQ_JOIN, &q->done_seq, MP__WAKE_ALL);
}

int mp_queue_join(mp_queue_t *h, long timeout_ms)
{
    if (mp__handle_is_remote(MP_HANDLE(h))) return mp__rx_queue_join(MP_HANDLE(h), timeout_ms);
    int rc = joinable(h);
    if (rc) return rc;
    q_shm_t *q = h->q;
    uint64_t start = now_if(timeout_ms);
    heal(h);
    for (uint32_t spin = SPIN_NS;; spin = 0) {
        uint32_t seen = atomic_load(&q->done_seq);
        if (atomic_load(&q->ndone) >= atomic_load(&q->nput_pub)) return 0;
        long left = mp__timeout_left(timeout_ms, start);
        if (left == 0)
            return mp__fail(MP_ETIMEDOUT, "unfinished tasks remain after %ld ms", timeout_ms);
        long slice = left < 0 || left > SLICE_MS ? SLICE_MS : left;
        rc = mp__seg_wait(h->seg, Q_WQ_JOIN, &q->done_seq, seen, slice, spin);
        if (rc == MP_ETIMEDOUT)
            heal(h);
        else if (rc)
            return rc;
    }
}

/* ---- the handle's type ---- */

static int q_pack(mp_handle_t *hh, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp_queue_t *h = (mp_queue_t *)hh;
    int rc = usable(h, false);
    return rc ? rc : mp__seg_pack(h->seg, w, t);
}

static int q_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    mp__seg_t *seg;
    mp_queue_t *h;
    int rc = mp__seg_unpack(r, tab, ntab, &expect_spec, &seg);
    if (!rc) rc = wrap(seg, &h);
    if (!rc) *out = &h->h;
    return rc;
}

static int q_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return q_pack(h, w, NULL);
}

static int q_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return q_unpack(r, NULL, 0, out);
}

/* A forked child that was not given the queue: its share goes, the
 * struct stays (the program may still free it). */
static void q_drop_after_fork(mp_handle_t *hh)
{
    mp_queue_t *h = (mp_queue_t *)hh;
    if (h->seg) release(h);
}

/* Ready when it holds an item; there is nothing for the OS to wait on, so
 * mp_wait sleeps on it with q_sleep. */
static int q_waitable(mp_handle_t *hh, mp__waitable_t *w, bool *ready_now)
{
    mp_queue_t *h = (mp_queue_t *)hh;
    (void)w;
    int rc = usable(h, false);
    if (!rc) *ready_now = atomic_load(&h->q->nput_pub) != atomic_load(&h->q->nget_pub);
    return rc;
}

static int q_sleep(mp_handle_t *hh, long timeout_ms)
{
    mp_queue_t *h = (mp_queue_t *)hh;
    int rc = usable(h, false);
    if (rc) return rc;
    q_shm_t *q = h->q;
    register_sleeper(&q->get_sleepers);
    uint32_t seen = atomic_load(&q->put_seq);
    rc = atomic_load(&q->nput_pub) != atomic_load(&q->nget_pub)
             ? 0
             : mp__seg_wait(h->seg, Q_WQ_GET, &q->put_seq, seen, timeout_ms, SPIN_NS);
    atomic_fetch_sub(&q->get_sleepers, 1);
    /* A put wakes one sleeper: pass it on in case a consumer sleeps too. */
    if (!rc && atomic_load(&q->put_seq) != seen) mp__seg_wake(h->seg, Q_WQ_GET, &q->put_seq, 1);
    return rc == MP_ETIMEDOUT ? 0 : rc;
}

static void q_free(mp_handle_t *h)
{
    mp_queue_free((mp_queue_t *)h);
}

const mp__htype_ops_t mp__queue_ops = {
    .name = "queue",
    .pack = q_pack,
    .unpack = q_unpack,
    .drop_after_fork = q_drop_after_fork,
    .waitable = q_waitable,
    .free = q_free,
    .export_blob = q_export,
    .import_blob = q_import,
    .sleep = q_sleep,
};
