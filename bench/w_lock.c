/* W9 lock handoff between two processes: a token passed back and forth
 * through a pair of mp_semaphores (a Lock cannot be released by the
 * process that did not acquire it, so a handoff between processes is a
 * semaphore pair, as the issue puts it), against a pair of raw
 * process-shared semaphores. */
#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define CHILD_FAILED 31

/* args: ping, pong, rounds. */
static int pong_target(mp_args_t *a)
{
    mp_semaphore_t *ping, *pong;
    int64_t rounds = 0;
    if (mp_args_semaphore(a, 0, &ping) || mp_args_semaphore(a, 1, &pong) ||
        mp_args_int(a, 2, &rounds))
        return CHILD_FAILED;
    for (int64_t i = 0; i < rounds; i++)
        if (mp_semaphore_acquire(ping, MP_FOREVER) || mp_semaphore_release(pong))
            return CHILD_FAILED;
    return 0;
}

static int start_child(mp_semaphore_t *ping, mp_semaphore_t *pong, long total, mp_process_t **p)
{
    mp_args_t *a;
    int rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(ping));
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(pong));
    if (!rc) rc = mp_args_add_int(a, total);
    mp_process_opts_t o = {.target = pong_target, .args = a};
    if (!rc) rc = mp_process_create(p, &o);
    if (!rc) {
        rc = mp_process_start(*p);
        if (rc) mp_process_free(*p);
    }
    mp_args_free(a);
    return rc ? bench_fail_mp(rc, "starting the W9 child") : 0;
}

/* After the child's last release nothing must be left over on either
 * semaphore: a handoff that was lost or doubled shows here. */
static int check_drained(mp_semaphore_t *ping, mp_semaphore_t *pong)
{
    unsigned v[2] = {1, 1};
    int rc = mp_semaphore_value(ping, &v[0]);
    if (!rc) rc = mp_semaphore_value(pong, &v[1]);
    if (rc) return bench_fail_mp(rc, "mp_semaphore_value");
    return v[0] || v[1] ? bench_fail("mproc: semaphores left at %u and %u", v[0], v[1]) : 0;
}

/* µs per round trip (two handoffs). */
int w9_mproc(long count, double *value)
{
    mp_semaphore_t *ping = NULL, *pong = NULL;
    mp_process_t *p = NULL;
    long total = count + RAW_WARM_ROUNDS;
    int rc = mp_semaphore_create(&ping, 0, 0);
    if (!rc) rc = mp_semaphore_create(&pong, 0, 0);
    rc = rc ? bench_fail_mp(rc, "mp_semaphore_create") : start_child(ping, pong, total, &p);
    uint64_t t0 = 0;
    for (long i = 0; !rc && i < total; i++) {
        if (i == RAW_WARM_ROUNDS) t0 = raw_now_ns();
        rc = mp_semaphore_release(ping);
        if (!rc) rc = mp_semaphore_acquire(pong, MP_FOREVER);
        if (rc) rc = bench_fail_mp(rc, "release/acquire");
    }
    *value = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    if (p) {
        int code = -1;
        if (rc) mp_process_kill(p);
        int jrc = mp_process_join(p, MP_FOREVER);
        if (!jrc) jrc = mp_process_exitcode(p, &code);
        if (!rc && jrc) rc = bench_fail_mp(jrc, "joining the W9 child");
        if (!rc && code) rc = bench_fail("the W9 child exited with %d", code);
        mp_process_free(p);
    }
    if (!rc) rc = check_drained(ping, pong);
    mp_semaphore_free(ping);
    mp_semaphore_free(pong);
    return rc;
}

int w9_raw(long count, double *value)
{
    return raw_sem_pingpong(count, value);
}

/* ---- W11: uncontended Lock acquire + release ---- */

#define W11_WARM 1000

/* The lock must be free after the loop and every critical section must
 * have run: a try-acquire at the end proves the first, a counter the
 * second. */
static int lock_loop(mp_lock_t *l, long count, long *held)
{
    volatile long inside = 0;
    for (long i = 0; i < count; i++) {
        int rc = mp_lock_acquire(l, MP_FOREVER);
        if (rc) return bench_fail_mp(rc, "mp_lock_acquire");
        inside = inside + 1;
        rc = mp_lock_release(l);
        if (rc) return bench_fail_mp(rc, "mp_lock_release");
    }
    *held = inside;
    return 0;
}

/* ns per acquire + release of a Lock no other thread or process wants. */
int w11_mproc(long count, double *value)
{
    mp_lock_t *l;
    int rc = mp_lock_create(&l);
    if (rc) return bench_fail_mp(rc, "mp_lock_create");
    long held = 0;
    rc = lock_loop(l, W11_WARM, &held);
    uint64_t t0 = raw_now_ns();
    if (!rc) rc = lock_loop(l, count, &held);
    *value = (double)(raw_now_ns() - t0) / (double)count;
    if (!rc && held != count) rc = bench_fail("mproc: %ld critical sections of %ld", held, count);
    if (!rc) {
        int trc = mp_lock_acquire(l, 0);
        if (!trc) trc = mp_lock_release(l);
        if (trc) rc = bench_fail_mp(trc, "mproc: the lock is not free after the loop");
    }
    mp_lock_free(l);
    return rc;
}

int w11_raw(long count, double *value)
{
    long held = 0;
    int rc = raw_mutex_loop(count, value, &held);
    if (!rc && held != count) rc = bench_fail("raw: %ld critical sections of %ld", held, count);
    return rc;
}
