/* W3, W4: mp_queue between processes against a bare
 * single-producer single-consumer ring in shared memory, the least any
 * queue between two processes can do: fixed slots, one counter per side,
 * no locks, no sleeping (each side spins while it cannot go on).
 *
 * Set-up is untimed on both sides: processes are started with mp_process
 * and the raw ring lives in an mp_shm block, but the timed part of the
 * floor is plain loads, stores and copies. Every item carries its
 * producer, its sequence number and a checksum (64-byte items) or stamps
 * (1 MiB items), and every consumer checks them and the order per
 * producer. */
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <sched.h>
#include <time.h>
#endif

#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define SMALL 64
#define BIG ((size_t)1 << 20)
#define RAW_SLOTS_SMALL 4096
#define RAW_SLOTS_BIG 4
#define MAX_PRODUCERS 4
#define JOIN_MS 120000L
#define BLOCK_MS 1000L

/* ---- items ---- */

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t sum_of(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < n; i += 8)
        h = mix(h ^ get_u64(p + i));
    return h;
}

/* A 64-byte item: producer, sequence, filler, checksum of the rest. */
static void small_make(uint8_t *p, uint64_t producer, uint64_t seq)
{
    put_u64(p, producer);
    put_u64(p + 8, seq);
    for (size_t i = 16; i < SMALL - 8; i += 8)
        put_u64(p + i, seq * 0x100000001b3u + i);
    put_u64(p + SMALL - 8, sum_of(p, SMALL - 8));
}

/* Per-producer order: next[producer] is the least sequence number still
 * possible (with several consumers, each sees part of each producer's
 * items). *sum adds a digest of every item, to tell lost from duplicated
 * items across consumers. */
static int small_check(const uint8_t *p, size_t n, uint64_t *next, unsigned nprod, uint64_t *sum)
{
    if (n != SMALL) return bench_fail("an item of %zu bytes", n);
    if (get_u64(p + SMALL - 8) != sum_of(p, SMALL - 8)) return bench_fail("a torn item");
    uint64_t producer = get_u64(p), seq = get_u64(p + 8);
    if (producer >= nprod)
        return bench_fail("an item of producer %llu", (unsigned long long)producer);
    if (seq < next[producer])
        return bench_fail("producer %llu: item %llu after %llu", (unsigned long long)producer,
                          (unsigned long long)seq, (unsigned long long)next[producer] - 1);
    next[producer] = seq + 1;
    *sum += mix(producer << 40 | seq);
    return 0;
}

/* What *sum of small_check comes to over items 0..n-1 of producer id. */
static uint64_t sum_expected(uint64_t id, uint64_t n)
{
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++)
        s += mix(id << 40 | i);
    return s;
}

/* A 1 MiB item: a fixed pattern with the sequence number at its start,
 * middle and end; the first and last items are compared in full. */
static const uint8_t *big_pattern(void)
{
    static uint8_t *ref;
    if (!ref && (ref = malloc(BIG)) != NULL)
        for (size_t i = 0; i < BIG; i++)
            ref[i] = (uint8_t)(i % 251);
    return ref;
}

static const size_t big_stamps[3] = {0, BIG / 2, BIG - 8};

static void big_stamp(uint8_t *p, uint64_t seq)
{
    for (int i = 0; i < 3; i++)
        put_u64(p + big_stamps[i], seq);
}

static int big_check(const uint8_t *p, size_t n, uint64_t seq, bool full)
{
    if (n != BIG) return bench_fail("an item of %zu bytes", n);
    for (int i = 0; i < 3; i++)
        if (get_u64(p + big_stamps[i]) != seq)
            return bench_fail("item %llu carries %llu at byte %zu", (unsigned long long)seq,
                              (unsigned long long)get_u64(p + big_stamps[i]), big_stamps[i]);
    if (!full) return 0;
    const uint8_t *ref = big_pattern();
    if (!ref) return bench_fail("out of memory");
    size_t from = 0;
    for (int i = 0; i <= 3; i++) {
        size_t to = i < 3 ? big_stamps[i] : BIG;
        if (to > from && memcmp(p + from, ref + from, to - from))
            return bench_fail("item %llu is corrupt between bytes %zu and %zu",
                              (unsigned long long)seq, from, to);
        from = to + 8;
    }
    return 0;
}

/* ---- child processes ---- */

static int start_child(mp_target_fn target, mp_args_t *a, mp_process_t **p)
{
    mp_process_opts_t o = {.target = target, .args = a};
    int rc = mp_process_create(p, &o);
    if (!rc) {
        rc = mp_process_start(*p);
        if (rc) mp_process_free(*p);
    }
    return rc ? bench_fail_mp(rc, "starting a child") : 0;
}

/* Joins every child and expects clean exits; keeps the first error. */
static int finish_children(mp_process_t **p, int n, int rc)
{
    for (int i = 0; i < n; i++) {
        if (!p[i]) continue;
        if (rc) mp_process_kill(p[i]);
        int jrc = mp_process_join(p[i], JOIN_MS), code = -1000;
        if (!jrc) jrc = mp_process_exitcode(p[i], &code);
        mp_process_free(p[i]);
        if (!rc && jrc) rc = bench_fail_mp(jrc, "joining a child");
        if (!rc && code) rc = bench_fail("a child exited with %d", code);
    }
    return rc;
}

static double per_second(long count, uint64_t t0, uint64_t t1)
{
    return (double)count / ((double)(t1 - t0) / 1e9) / 1e6; /* millions */
}

/* ---- mproc: producers and consumers of 64-byte items ----
 * args of a producer: queue, go event, ready queue, producer id, count.
 * args of a consumer: queue, go event, ready queue, producers, report
 * queue. Consumers stop at the first empty item (one per producer, put
 * after its last), so every consumer gets exactly one of them when there
 * are as many producers as consumers. */

static int mp_producer(mp_args_t *a)
{
    mp_queue_t *q, *ready;
    mp_event_t *go;
    int64_t id, count;
    if (mp_args_queue(a, 0, &q) || mp_args_event(a, 1, &go) || mp_args_queue(a, 2, &ready) ||
        mp_args_int(a, 3, &id) || mp_args_int(a, 4, &count))
        return 10;
    if (mp_queue_put(ready, "", 0, MP_FOREVER) || mp_event_wait(go, MP_FOREVER)) return 11;
    uint8_t item[SMALL];
    for (int64_t i = 0; i < count; i++) {
        small_make(item, (uint64_t)id, (uint64_t)i);
        if (mp_queue_put(q, item, SMALL, MP_FOREVER)) return 12;
    }
    return mp_queue_put(q, "", 0, MP_FOREVER) ? 13 : 0;
}

/* Takes items until the empty one: got[0] counts them, got[1] sums
 * their digests; order checked. */
static int consume_small(mp_queue_t *q, unsigned nprod, uint64_t got[2])
{
    uint64_t next[MAX_PRODUCERS] = {0};
    uint8_t item[SMALL];
    got[0] = got[1] = 0;
    for (;;) {
        size_t n = 0;
        int rc = mp_queue_get_into(q, item, sizeof item, &n, MP_FOREVER);
        if (rc) return bench_fail_mp(rc, "mp_queue_get_into");
        if (!n) return 0;
        rc = small_check(item, n, next, nprod, &got[1]);
        if (rc) return rc;
        got[0]++;
    }
}

static int mp_consumer(mp_args_t *a)
{
    mp_queue_t *q, *ready, *report;
    mp_event_t *go;
    int64_t nprod;
    if (mp_args_queue(a, 0, &q) || mp_args_event(a, 1, &go) || mp_args_queue(a, 2, &ready) ||
        mp_args_int(a, 3, &nprod) || mp_args_queue(a, 4, &report) || nprod < 1 ||
        nprod > MAX_PRODUCERS)
        return 10;
    if (mp_queue_put(ready, "", 0, MP_FOREVER) || mp_event_wait(go, MP_FOREVER)) return 11;
    uint64_t got[2];
    if (consume_small(q, (unsigned)nprod, got)) return 12;
    return mp_queue_put(report, got, sizeof got, MP_FOREVER) ? 13 : 0;
}

typedef struct {
    mp_queue_t *q, *ready, *report;
    mp_event_t *go;
} w3_objs_t;

static int w3_objs(w3_objs_t *o, size_t maxsize)
{
    memset(o, 0, sizeof *o);
    mp_queue_opts_t qo = {.maxsize = maxsize};
    int rc = mp_queue_create(&o->q, &qo);
    if (!rc) rc = mp_queue_create(&o->ready, NULL);
    if (!rc) rc = mp_queue_create(&o->report, NULL);
    if (!rc) rc = mp_event_create(&o->go);
    return rc ? bench_fail_mp(rc, "creating queues") : 0;
}

static void w3_objs_free(w3_objs_t *o)
{
    mp_queue_free(o->q);
    mp_queue_free(o->ready);
    mp_queue_free(o->report);
    mp_event_free(o->go);
}

/* A child with the queue, the go event and the ready queue, then ints x
 * and y (a producer: id, count) or int x and the report queue (a
 * consumer: producers). */
static int start_role(const w3_objs_t *o, bool producer, int64_t x, int64_t y, mp_process_t **p)
{
    mp_args_t *a = NULL;
    int rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(o->q));
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(o->go));
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(o->ready));
    if (!rc) rc = mp_args_add_int(a, x);
    if (!rc) rc = producer ? mp_args_add_int(a, y) : mp_args_add_handle(a, MP_HANDLE(o->report));
    if (rc) {
        mp_args_free(a);
        return bench_fail_mp(rc, "building arguments");
    }
    rc = start_child(producer ? mp_producer : mp_consumer, a, p);
    mp_args_free(a);
    return rc;
}

/* nprod producer children and ncons consumers (children; with one, this
 * process) move count 64-byte items; items/s from go to the last item. */
static int w3_run(int nprod, int ncons, long count, double *value)
{
    w3_objs_t o;
    mp_process_t *p[2 * MAX_PRODUCERS] = {0};
    int np = 0, rc = w3_objs(&o, RAW_SLOTS_SMALL);
    bool here = ncons == 1;
    uint64_t want = 0, got[2] = {0, 0};
    for (int i = 0; !rc && i < nprod; i++) {
        long n = count / nprod + (i < count % nprod);
        want += sum_expected((uint64_t)i, (uint64_t)n);
        rc = start_role(&o, true, i, n, &p[np++]);
    }
    for (int i = 0; !rc && !here && i < ncons; i++)
        rc = start_role(&o, false, nprod, 0, &p[np++]);
    for (int i = 0; !rc && i < np; i++) {
        size_t n;
        char b[1];
        int grc = mp_queue_get_into(o.ready, b, sizeof b, &n, JOIN_MS);
        if (grc) rc = bench_fail_mp(grc, "waiting for the children");
    }
    uint64_t t0 = raw_now_ns();
    if (!rc) rc = mp_event_set(o.go) ? bench_fail("mp_event_set") : 0;
    if (!rc && here) rc = consume_small(o.q, (unsigned)nprod, got);
    for (int i = 0; !rc && !here && i < ncons; i++) {
        uint64_t one[2] = {0, 0};
        size_t n = 0;
        int grc = mp_queue_get_into(o.report, one, sizeof one, &n, JOIN_MS);
        if (grc) rc = bench_fail_mp(grc, "a consumer's report");
        got[0] += one[0];
        got[1] += one[1];
    }
    uint64_t t1 = raw_now_ns();
    if (!rc && got[0] != (uint64_t)count)
        rc = bench_fail("%llu items arrived of %ld", (unsigned long long)got[0], count);
    if (!rc && got[1] != want) rc = bench_fail("items were lost and others came twice");
    *value = per_second(count, t0, t1);
    rc = finish_children(p, np, rc);
    w3_objs_free(&o);
    return rc;
}

int w3_mproc(long count, double *value)
{
    return w3_run(1, 1, count, value);
}

int w3_2x2_mproc(long count, double *value)
{
    return w3_run(2, 2, count, value);
}

/* ---- the raw ring ----
 * Slots of a fixed size; tail is written by the producer only, head by
 * the consumer only, each on a line of its own, and each side keeps the
 * other's last value so it reads the other's line only when it must. */

typedef struct {
    alignas(64) _Atomic uint64_t tail;
    alignas(64) _Atomic uint64_t head;
    alignas(64) _Atomic uint32_t go;
    uint64_t slots, slot_size;
} raw_ring_t;

#define RING_HDR ((sizeof(raw_ring_t) + 63) / 64 * 64)

static uint8_t *raw_slot(raw_ring_t *r, uint64_t i)
{
    return (uint8_t *)r + RING_HDR + (i & (r->slots - 1)) * r->slot_size; /* slots: a power of 2 */
}

typedef struct {
    raw_ring_t *r;
    uint64_t other; /* the other side's counter, last seen */
} raw_end_t;

/* One turn of waiting for the other side: a pause, and after a while
 * the CPU handed over, so that on a machine with more runnable processes
 * than CPUs the floor does not spin away the time slice its peer needs. */
static void raw_spin(unsigned *n)
{
    if (++*n < 256) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        return;
    }
#if defined(_WIN32)
    SwitchToThread();
#else
    sched_yield();
#endif
}

/* Blocks (spinning) until slot tail is free; then the caller fills it. */
static uint8_t *raw_put_begin(raw_end_t *e, uint64_t tail)
{
    for (unsigned n = 0; tail - e->other >= e->r->slots;) {
        e->other = atomic_load_explicit(&e->r->head, memory_order_acquire);
        if (tail - e->other >= e->r->slots) raw_spin(&n);
    }
    return raw_slot(e->r, tail);
}

static void raw_put_end(raw_end_t *e, uint64_t tail)
{
    atomic_store_explicit(&e->r->tail, tail + 1, memory_order_release);
}

static const uint8_t *raw_get_begin(raw_end_t *e, uint64_t head)
{
    for (unsigned n = 0; head >= e->other;) {
        e->other = atomic_load_explicit(&e->r->tail, memory_order_acquire);
        if (head >= e->other) raw_spin(&n);
    }
    return raw_slot(e->r, head);
}

static void raw_get_end(raw_end_t *e, uint64_t head)
{
    atomic_store_explicit(&e->r->head, head + 1, memory_order_release);
}

static int raw_ring_create(uint64_t slots, uint64_t slot_size, mp_shm_t **s, raw_ring_t **r)
{
    int rc = mp_shm_create(s, NULL, RING_HDR + slots * slot_size);
    if (rc) return bench_fail_mp(rc, "mp_shm_create");
    *r = mp_shm_ptr(*s);
    (*r)->slots = slots;
    (*r)->slot_size = slot_size;
    return 0;
}

/* args: ring shm, count, item size. Produces count items once go is set. */
static int raw_producer(mp_args_t *a)
{
    mp_shm_t *s;
    int64_t count, size;
    if (mp_args_shm(a, 0, &s) || mp_args_int(a, 1, &count) || mp_args_int(a, 2, &size)) return 10;
    raw_end_t e = {mp_shm_ptr(s), 0};
    for (unsigned n = 0; !atomic_load_explicit(&e.r->go, memory_order_acquire);)
        raw_spin(&n);
    uint8_t *big = NULL;
    if (size == (int64_t)BIG) {
        big = malloc(BIG);
        if (!big || !big_pattern()) return 11;
        memcpy(big, big_pattern(), BIG);
    }
    for (uint64_t i = 0; i < (uint64_t)count; i++) {
        uint8_t *slot = raw_put_begin(&e, i);
        if (big) {
            big_stamp(big, i);
            memcpy(slot, big, BIG);
        } else {
            small_make(slot, 0, i);
        }
        raw_put_end(&e, i);
    }
    free(big);
    return 0;
}

static int raw_start(mp_shm_t *s, long count, size_t size, mp_process_t **p)
{
    mp_args_t *a = NULL;
    int rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(s));
    if (!rc) rc = mp_args_add_int(a, count);
    if (!rc) rc = mp_args_add_int(a, (int64_t)size);
    if (rc) {
        mp_args_free(a);
        return bench_fail_mp(rc, "building arguments");
    }
    rc = start_child(raw_producer, a, p);
    mp_args_free(a);
    return rc;
}

int w3_raw(long count, double *value)
{
    mp_shm_t *s;
    raw_ring_t *r = NULL;
    mp_process_t *p = NULL;
    int rc = raw_ring_create(RAW_SLOTS_SMALL, SMALL, &s, &r);
    if (rc) return rc;
    rc = raw_start(s, count, SMALL, &p);
    raw_end_t e = {r, 0};
    uint64_t next[1] = {0}, sum = 0;
    uint8_t item[SMALL];
    uint64_t t0 = raw_now_ns();
    atomic_store(&r->go, 1);
    for (uint64_t i = 0; !rc && i < (uint64_t)count; i++) {
        memcpy(item, raw_get_begin(&e, i), SMALL);
        raw_get_end(&e, i);
        rc = small_check(item, SMALL, next, 1, &sum);
    }
    if (!rc && next[0] != (uint64_t)count) rc = bench_fail("items were lost");
    uint64_t t1 = raw_now_ns();
    *value = per_second(count, t0, t1);
    rc = finish_children(&p, 1, rc);
    mp_shm_free(s);
    return rc;
}

/* ---- W4: 1 MiB items, one producer, one consumer ---- */

static int mp_big_producer(mp_args_t *a)
{
    mp_queue_t *q;
    mp_event_t *go;
    int64_t count;
    if (mp_args_queue(a, 0, &q) || mp_args_event(a, 1, &go) || mp_args_int(a, 2, &count)) return 10;
    uint8_t *item = malloc(BIG);
    if (!item || !big_pattern()) return 11;
    memcpy(item, big_pattern(), BIG);
    if (mp_event_wait(go, MP_FOREVER)) return 12;
    for (uint64_t i = 0; i < (uint64_t)count; i++) {
        big_stamp(item, i);
        if (mp_queue_put(q, item, BIG, MP_FOREVER)) return 13;
    }
    free(item);
    return 0;
}

int w4_mproc(long count, double *value)
{
    mp_queue_t *q = NULL;
    mp_event_t *go = NULL;
    mp_args_t *a = NULL;
    mp_process_t *p = NULL;
    /* As many items in flight as the floor's ring holds. */
    mp_queue_opts_t o = {.maxsize = RAW_SLOTS_BIG};
    int rc = mp_queue_create(&q, &o);
    if (!rc) rc = mp_event_create(&go);
    if (!rc) rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(q));
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(go));
    if (!rc) rc = mp_args_add_int(a, count);
    if (rc) rc = bench_fail_mp(rc, "setting up");
    if (!rc) rc = start_child(mp_big_producer, a, &p);
    mp_args_free(a);
    uint8_t *buf = malloc(BIG);
    if (!rc && (!buf || !big_pattern())) rc = bench_fail("out of memory");
    if (!rc) memset(buf, 0, BIG);
    uint64_t t0 = raw_now_ns();
    if (!rc && mp_event_set(go)) rc = bench_fail("mp_event_set");
    for (uint64_t i = 0; !rc && i < (uint64_t)count; i++) {
        size_t n = 0;
        int grc = mp_queue_get_into(q, buf, BIG, &n, JOIN_MS);
        rc = grc ? bench_fail_mp(grc, "mp_queue_get_into")
                 : big_check(buf, n, i, i == 0 || i + 1 == (uint64_t)count);
    }
    uint64_t t1 = raw_now_ns();
    *value = (double)count * (double)BIG / (double)(t1 - t0);
    rc = finish_children(&p, 1, rc);
    free(buf);
    mp_queue_free(q);
    mp_event_free(go);
    return rc;
}

int w4_raw(long count, double *value)
{
    mp_shm_t *s;
    raw_ring_t *r = NULL;
    mp_process_t *p = NULL;
    int rc = raw_ring_create(RAW_SLOTS_BIG, BIG, &s, &r);
    if (rc) return rc;
    rc = raw_start(s, count, BIG, &p);
    uint8_t *buf = malloc(BIG);
    if (!rc && (!buf || !big_pattern())) rc = bench_fail("out of memory");
    if (!rc) memset(buf, 0, BIG);
    raw_end_t e = {r, 0};
    uint64_t t0 = raw_now_ns();
    atomic_store(&r->go, 1);
    for (uint64_t i = 0; !rc && i < (uint64_t)count; i++) {
        memcpy(buf, raw_get_begin(&e, i), BIG);
        raw_get_end(&e, i);
        rc = big_check(buf, BIG, i, i == 0 || i + 1 == (uint64_t)count);
    }
    uint64_t t1 = raw_now_ns();
    *value = (double)count * (double)BIG / (double)(t1 - t0);
    rc = finish_children(&p, 1, rc);
    free(buf);
    mp_shm_free(s);
    return rc;
}

/* ---- W3-lat: ping-pong of 64-byte items through two queues ----
 * The child echoes what it gets until an empty item; both sides wait in
 * get. */

static int mp_echo(mp_args_t *a)
{
    mp_queue_t *in, *out;
    if (mp_args_queue(a, 0, &in) || mp_args_queue(a, 1, &out)) return 10;
    uint8_t item[SMALL];
    for (;;) {
        size_t n = 0;
        if (mp_queue_get_into(in, item, sizeof item, &n, MP_FOREVER)) return 11;
        if (mp_queue_put(out, item, n, MP_FOREVER)) return 12;
        if (!n) return 0;
    }
}

static int mp_ping(mp_queue_t *to, mp_queue_t *from, uint64_t i)
{
    uint8_t item[SMALL], back[SMALL];
    uint64_t next[1] = {i}, sum = 0;
    small_make(item, 0, i);
    int rc = mp_queue_put(to, item, SMALL, MP_FOREVER);
    if (rc) return bench_fail_mp(rc, "mp_queue_put");
    size_t n = 0;
    rc = mp_queue_get_into(from, back, sizeof back, &n, JOIN_MS);
    if (rc) return bench_fail_mp(rc, "mp_queue_get_into");
    rc = small_check(back, n, next, 1, &sum);
    return rc || next[0] == i + 1
               ? rc
               : bench_fail("round trip %llu came back wrong", (unsigned long long)i);
}

#define WARM_PINGS 200

int w3_lat_mproc(long count, double *value)
{
    mp_queue_t *to = NULL, *from = NULL;
    mp_args_t *a = NULL;
    mp_process_t *p = NULL;
    int rc = mp_queue_create(&to, NULL);
    if (!rc) rc = mp_queue_create(&from, NULL);
    if (!rc) rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(to));
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(from));
    if (rc) rc = bench_fail_mp(rc, "setting up");
    if (!rc) rc = start_child(mp_echo, a, &p);
    mp_args_free(a);
    for (long i = 0; !rc && i < WARM_PINGS; i++)
        rc = mp_ping(to, from, (uint64_t)i);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = mp_ping(to, from, (uint64_t)i);
    uint64_t t1 = raw_now_ns();
    *value = (double)(t1 - t0) / 1e3 / (double)count;
    if (!rc && mp_queue_put(to, "", 0, MP_FOREVER)) rc = bench_fail("ending the echo child");
    rc = finish_children(&p, 1, rc);
    mp_queue_free(to);
    mp_queue_free(from);
    return rc;
}

/* Raw: two rings, and the child copies each item from one to the other. */
static int raw_echo(mp_args_t *a)
{
    mp_shm_t *s0, *s1;
    int64_t count;
    if (mp_args_shm(a, 0, &s0) || mp_args_shm(a, 1, &s1) || mp_args_int(a, 2, &count)) return 10;
    raw_end_t in = {mp_shm_ptr(s0), 0}, out = {mp_shm_ptr(s1), 0};
    for (uint64_t i = 0; i < (uint64_t)count; i++) {
        const uint8_t *src = raw_get_begin(&in, i);
        uint8_t item[SMALL];
        memcpy(item, src, SMALL);
        raw_get_end(&in, i);
        memcpy(raw_put_begin(&out, i), item, SMALL);
        raw_put_end(&out, i);
    }
    return 0;
}

static int raw_ping(raw_end_t *to, raw_end_t *from, uint64_t i)
{
    uint8_t back[SMALL];
    uint64_t next[1] = {i}, sum = 0;
    small_make(raw_put_begin(to, i), 0, i);
    raw_put_end(to, i);
    memcpy(back, raw_get_begin(from, i), SMALL);
    raw_get_end(from, i);
    int rc = small_check(back, SMALL, next, 1, &sum);
    return rc || next[0] == i + 1
               ? rc
               : bench_fail("round trip %llu came back wrong", (unsigned long long)i);
}

int w3_lat_raw(long count, double *value)
{
    mp_shm_t *s0 = NULL, *s1 = NULL;
    raw_ring_t *r0 = NULL, *r1 = NULL;
    mp_args_t *a = NULL;
    mp_process_t *p = NULL;
    int rc = raw_ring_create(RAW_SLOTS_SMALL, SMALL, &s0, &r0);
    if (!rc) rc = raw_ring_create(RAW_SLOTS_SMALL, SMALL, &s1, &r1);
    if (!rc && mp_args_create(&a)) rc = bench_fail("mp_args_create");
    if (!rc && (mp_args_add_handle(a, MP_HANDLE(s0)) || mp_args_add_handle(a, MP_HANDLE(s1)) ||
                mp_args_add_int(a, WARM_PINGS + count)))
        rc = bench_fail("building arguments");
    if (!rc) rc = start_child(raw_echo, a, &p);
    mp_args_free(a);
    raw_end_t to = {r0, 0}, from = {r1, 0};
    uint64_t i = 0;
    for (; !rc && i < WARM_PINGS; i++)
        rc = raw_ping(&to, &from, i);
    uint64_t t0 = raw_now_ns();
    for (; !rc && i < (uint64_t)(WARM_PINGS + count); i++)
        rc = raw_ping(&to, &from, i);
    uint64_t t1 = raw_now_ns();
    *value = (double)(t1 - t0) / 1e3 / (double)count;
    rc = finish_children(&p, 1, rc);
    mp_shm_free(s0);
    mp_shm_free(s1);
    return rc;
}

/* ---- W3-idle: a process blocked in get ----
 * The metric is the share of the wall time this process spent off the
 * CPU (percent; higher is better): after its bounded spin a blocked get
 * must cost about what the OS's own sleep does. */

static uint64_t cpu_ns(void)
{
#if defined(_WIN32)
    FILETIME c, e, k, u;
    if (!GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u)) return 0;
    uint64_t kt = (uint64_t)k.dwHighDateTime << 32 | k.dwLowDateTime;
    uint64_t ut = (uint64_t)u.dwHighDateTime << 32 | u.dwLowDateTime;
    return (kt + ut) * 100;
#else
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static void os_sleep_ms(long ms)
{
#if defined(_WIN32)
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts))
        ;
#endif
}

static double off_cpu_percent(uint64_t c0, uint64_t c1, uint64_t t0, uint64_t t1)
{
    double busy = (double)(c1 - c0) / (double)(t1 - t0);
    return 100.0 * (busy < 1 ? 1 - busy : 0);
}

int w3_idle_mproc(long count, double *value)
{
    mp_queue_t *q;
    int rc = mp_queue_create(&q, NULL);
    if (rc) return bench_fail_mp(rc, "mp_queue_create");
    uint64_t t0 = raw_now_ns(), c0 = cpu_ns();
    for (long i = 0; !rc && i < count; i++) {
        uint8_t b[1];
        size_t n = 0;
        int grc = mp_queue_get_into(q, b, sizeof b, &n, BLOCK_MS);
        if (grc != MP_EEMPTY) rc = bench_fail("a get from an empty queue returned %d", grc);
    }
    uint64_t c1 = cpu_ns(), t1 = raw_now_ns();
    mp_queue_free(q);
    *value = off_cpu_percent(c0, c1, t0, t1);
    return rc;
}

int w3_idle_raw(long count, double *value)
{
    uint64_t t0 = raw_now_ns(), c0 = cpu_ns();
    for (long i = 0; i < count; i++)
        os_sleep_ms(BLOCK_MS);
    uint64_t c1 = cpu_ns(), t1 = raw_now_ns();
    *value = off_cpu_percent(c0, c1, t0, t1);
    return 0;
}
