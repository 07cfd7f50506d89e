/* Locks, semaphores, events, conditions, barriers, values across
 * processes, and what happens when a process dies holding or waiting. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "helpers.h"
#include "platform.h"

#define KILL_TRIALS 200
#define OSEM_COUNTS 2
#define COUNT_PROCS 4
#define COUNT_EACH 10000

static mp_args_t *args_of(mp_handle_t *h1, mp_handle_t *h2, mp_handle_t *h3)
{
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    if (h1) ASSERT_OK(mp_args_add_handle(a, h1));
    if (h2) ASSERT_OK(mp_args_add_handle(a, h2));
    if (h3) ASSERT_OK(mp_args_add_handle(a, h3));
    return a;
}

static mp_process_t *start_with(mp_target_fn fn, mp_handle_t *h1, mp_handle_t *h2, mp_handle_t *h3)
{
    mp_args_t *a = args_of(h1, h2, h3);
    mp_process_t *p = start_proc(fn, a);
    mp_args_free(a);
    return p;
}

/* A deterministic stream for the kill trials, so a failure replays. */
static uint32_t next_random(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* ---- mutual exclusion ---- */

/* Adds 1 to the shared counter n times under the lock. */
static int count_n(mp_args_t *a, int n)
{
    mp_lock_t *l;
    mp_value_t *v;
    if (mp_args_lock(a, 0, &l) || mp_args_value(a, 1, &v)) return 10;
    volatile uint64_t *c = mp_value_ptr(v);
    for (int i = 0; i < n; i++) {
        if (mp_lock_acquire(l, MP_FOREVER)) return 11;
        uint64_t seen = *c;
        *c = seen + 1; /* a lost update shows in the total */
        if (mp_lock_release(l)) return 12;
    }
    return 0;
}

static int count_up(mp_args_t *a)
{
    return count_n(a, COUNT_EACH);
}

Test(sync, lock_mutual_exclusion_4_processes, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    mp_value_t *v;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_value_create(&v, sizeof(uint64_t)));
    mp_process_t *p[COUNT_PROCS];
    for (int i = 0; i < COUNT_PROCS; i++)
        p[i] = start_with(count_up, MP_HANDLE(l), MP_HANDLE(v), NULL);
    for (int i = 0; i < COUNT_PROCS; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
    cr_assert_eq(*(uint64_t *)mp_value_ptr(v), (uint64_t)COUNT_PROCS * COUNT_EACH);
    mp_value_free(v);
    mp_lock_free(l);
}

static int count_alone(mp_args_t *a)
{
    return count_n(a, COUNT_EACH / 10);
}

/* The parent frees its lock and value before the children can have taken
 * them from their args (a spawned child takes them only once started):
 * theirs stay whole. */
Test(sync, children_keep_a_lock_their_parent_freed_at_start, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    mp_value_t *v;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_value_create(&v, sizeof(uint64_t)));
    mp_process_t *p[2];
    for (int i = 0; i < 2; i++)
        p[i] = start_with(count_alone, MP_HANDLE(l), MP_HANDLE(v), NULL);
    mp_lock_free(l);
    mp_value_free(v);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
}

static int try_lock_held_elsewhere(mp_args_t *a)
{
    mp_lock_t *l;
    mp_rlock_t *r;
    if (mp_args_lock(a, 0, &l) || mp_args_rlock(a, 1, &r)) return 10;
    if (mp_lock_acquire(l, 0) != MP_ETIMEDOUT) return 11;
    if (mp_lock_acquire(l, 30) != MP_ETIMEDOUT) return 12;
    if (mp_lock_release(l) != MP_EPERM) return 13;
    if (mp_rlock_release(r) != MP_EPERM) return 14;
    if (mp_rlock_acquire(r, 0) != MP_ETIMEDOUT) return 15;
    return 0;
}

Test(sync, lock_and_rlock_ownership, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    mp_rlock_t *r;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_rlock_create(&r));
    ASSERT_RC(mp_lock_release(l), MP_EPERM);
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_RC(mp_lock_acquire(l, 0), MP_EPERM); /* not re-entrant */
    ASSERT_OK(mp_rlock_acquire(r, MP_FOREVER));
    ASSERT_OK(mp_rlock_acquire(r, 0)); /* re-entrant */
    ASSERT_OK(mp_rlock_acquire(r, 100));
    mp_process_t *p = start_with(try_lock_held_elsewhere, MP_HANDLE(l), MP_HANDLE(r), NULL);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_RC(mp_rlock_release(r), MP_EPERM);
    ASSERT_OK(mp_lock_release(l));
    ASSERT_RC(mp_lock_release(l), MP_EPERM);
    ASSERT_RC(mp_lock_acquire(NULL, 0), MP_EINVAL);
    ASSERT_RC(mp_rlock_acquire((mp_rlock_t *)l, 0), MP_ETYPE);
    mp_rlock_free(r);
    mp_lock_free(l);
}

/* ---- semaphores ---- */

static int sem_take_two(mp_args_t *a)
{
    mp_semaphore_t *s;
    mp_event_t *e;
    if (mp_args_semaphore(a, 0, &s) || mp_args_event(a, 1, &e)) return 10;
    if (mp_semaphore_acquire(s, JOIN_MS)) return 11;
    if (mp_event_set(e)) return 12;
    /* The second one needs the parent's release. */
    return mp_semaphore_acquire(s, JOIN_MS) ? 13 : 0;
}

Test(sync, semaphore_bound_and_cross_process, .timeout = TEST_TIMEOUT)
{
    mp_semaphore_t *s;
    mp_event_t *e;
    unsigned v = 99;
    ASSERT_RC(mp_semaphore_create(&s, 3, 2), MP_EINVAL);
    ASSERT_OK(mp_semaphore_create(&s, 1, 2));
    ASSERT_OK(mp_event_create(&e));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_RC(mp_semaphore_release(s), MP_EINVAL); /* past the bound */
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, 2);
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    mp_process_t *p = start_with(sem_take_two, MP_HANDLE(s), MP_HANDLE(e), NULL);
    ASSERT_OK(mp_event_wait(e, JOIN_MS));
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, 0);
    ASSERT_RC(mp_semaphore_acquire(s, 0), MP_ETIMEDOUT);
    ASSERT_RC(mp_semaphore_acquire(s, 20), MP_ETIMEDOUT);
    ASSERT_OK(mp_semaphore_release(s));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, 0);
    mp_semaphore_free(s);
    mp_event_free(e);

    mp_semaphore_t *u;
    ASSERT_OK(mp_semaphore_create(&u, 0, 0)); /* unbounded */
    for (int i = 0; i < 1000; i++)
        ASSERT_OK(mp_semaphore_release(u));
    ASSERT_OK(mp_semaphore_value(u, &v));
    cr_assert_eq(v, 1000);
    mp_semaphore_free(u);
}

/* ---- events ---- */

static int event_relay(mp_args_t *a)
{
    mp_event_t *in, *out;
    if (mp_args_event(a, 0, &in) || mp_args_event(a, 1, &out)) return 10;
    if (mp_event_wait(in, JOIN_MS)) return 11;
    if (mp_event_is_set(in) != 1) return 12;
    return mp_event_set(out) ? 13 : 0;
}

Test(sync, event_across_processes, .timeout = TEST_TIMEOUT)
{
    mp_event_t *in, *out;
    ASSERT_OK(mp_event_create(&in));
    ASSERT_OK(mp_event_create(&out));
    cr_assert_eq(mp_event_is_set(in), 0);
    ASSERT_RC(mp_event_wait(in, 0), MP_ETIMEDOUT);
    ASSERT_RC(mp_event_wait(in, 30), MP_ETIMEDOUT);
    mp_process_t *p = start_with(event_relay, MP_HANDLE(in), MP_HANDLE(out), NULL);
    ASSERT_OK(mp_event_set(in));
    ASSERT_OK(mp_event_wait(out, JOIN_MS));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    ASSERT_OK(mp_event_clear(in));
    cr_assert_eq(mp_event_is_set(in), 0);
    mp_event_free(in);
    mp_event_free(out);
}

/* ---- conditions ---- */

/* Announces itself (holding the lock, so the parent's acquire means the
 * waiter is inside wait), waits, then counts its wake-up. */
static int cond_waiter(mp_args_t *a)
{
    mp_condition_t *c;
    mp_semaphore_t *arrived;
    mp_value_t *woken;
    if (mp_args_condition(a, 0, &c) || mp_args_semaphore(a, 1, &arrived) ||
        mp_args_value(a, 2, &woken))
        return 10;
    if (mp_condition_acquire(c, JOIN_MS)) return 11;
    if (mp_semaphore_release(arrived)) return 12;
    if (mp_condition_wait(c, JOIN_MS)) return 13;
    (*(volatile int *)mp_value_ptr(woken))++;
    return mp_condition_release(c) ? 14 : 0;
}

static int woken_count(mp_condition_t *c, mp_value_t *woken)
{
    ASSERT_OK(mp_condition_acquire(c, JOIN_MS));
    int n = *(volatile int *)mp_value_ptr(woken);
    ASSERT_OK(mp_condition_release(c));
    return n;
}

Test(sync, condition_notify_n_and_timeout, .timeout = TEST_TIMEOUT)
{
    mp_condition_t *c;
    mp_semaphore_t *arrived;
    mp_value_t *woken;
    ASSERT_OK(mp_condition_create(&c, NULL));
    ASSERT_OK(mp_semaphore_create(&arrived, 0, 0));
    ASSERT_OK(mp_value_create(&woken, sizeof(int)));
    ASSERT_RC(mp_condition_wait(c, 0), MP_EPERM); /* lock not held */
    ASSERT_RC(mp_condition_notify(c, 1), MP_EPERM);
    ASSERT_OK(mp_condition_acquire(c, 0));
    ASSERT_RC(mp_condition_wait(c, 30), MP_ETIMEDOUT);
    ASSERT_OK(mp_condition_release(c)); /* held again after the timeout */

    mp_process_t *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = start_with(cond_waiter, MP_HANDLE(c), MP_HANDLE(arrived), MP_HANDLE(woken));
    for (int i = 0; i < 3; i++)
        ASSERT_OK(mp_semaphore_acquire(arrived, JOIN_MS));
    ASSERT_OK(mp_condition_acquire(c, JOIN_MS)); /* all three are inside wait now */
    ASSERT_OK(mp_condition_notify(c, 2));
    ASSERT_OK(mp_condition_release(c));
    while (woken_count(c, woken) < 2)
        ;
    cr_assert_eq(woken_count(c, woken), 2, "notify(2) woke more than two");
    ASSERT_OK(mp_condition_acquire(c, JOIN_MS));
    ASSERT_OK(mp_condition_notify_all(c));
    ASSERT_OK(mp_condition_release(c));
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(join_code(p[i]), 0);
        mp_process_free(p[i]);
    }
    cr_assert_eq(woken_count(c, woken), 3);
    mp_value_free(woken);
    mp_semaphore_free(arrived);
    mp_condition_free(c);
}

Test(sync, condition_with_a_given_lock, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    mp_condition_t *c;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_condition_create(&c, l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_RC(mp_condition_acquire(c, 0), MP_EPERM); /* the same lock */
    ASSERT_OK(mp_condition_notify(c, 1));            /* nobody waits: fine */
    ASSERT_RC(mp_condition_wait(c, 0), MP_ETIMEDOUT);
    ASSERT_OK(mp_condition_release(c));
    ASSERT_RC(mp_lock_release(l), MP_EPERM);
    mp_condition_free(c);
    mp_lock_free(l);
}

/* ---- barriers ---- */

static int barrier_party(mp_args_t *a)
{
    mp_barrier_t *b;
    mp_value_t *seen;
    if (mp_args_barrier(a, 0, &b) || mp_args_value(a, 1, &seen)) return 10;
    unsigned idx = 99;
    if (mp_barrier_wait(b, JOIN_MS, &idx)) return 11;
    if (idx > 2) return 12;
    atomic_fetch_or((_Atomic unsigned *)mp_value_ptr(seen), 1u << idx);
    return 0;
}

Test(sync, barrier_of_three, .timeout = TEST_TIMEOUT)
{
    mp_barrier_t *b;
    mp_value_t *seen;
    ASSERT_RC(mp_barrier_create(&b, 0), MP_EINVAL);
    ASSERT_OK(mp_barrier_create(&b, 3));
    ASSERT_OK(mp_value_create(&seen, sizeof(unsigned)));
    for (int round = 0; round < 3; round++) {
        *(_Atomic unsigned *)mp_value_ptr(seen) = 0;
        mp_process_t *p1 = start_with(barrier_party, MP_HANDLE(b), MP_HANDLE(seen), NULL);
        mp_process_t *p2 = start_with(barrier_party, MP_HANDLE(b), MP_HANDLE(seen), NULL);
        unsigned idx = 99;
        ASSERT_OK(mp_barrier_wait(b, JOIN_MS, &idx));
        cr_assert(idx <= 2);
        cr_assert_eq(join_code(p1), 0);
        cr_assert_eq(join_code(p2), 0);
        unsigned all = atomic_load((_Atomic unsigned *)mp_value_ptr(seen)) | 1u << idx;
        cr_assert_eq(all, 7u, "indexes were not 0, 1 and 2");
        mp_process_free(p1);
        mp_process_free(p2);
    }
    cr_assert_eq(mp_barrier_broken(b), 0);
    mp_value_free(seen);
    mp_barrier_free(b);
}

static int barrier_expect_broken(mp_args_t *a)
{
    mp_barrier_t *b;
    if (mp_args_barrier(a, 0, &b)) return 10;
    unsigned idx;
    return mp_barrier_wait(b, JOIN_MS, &idx) == MP_ESTATE ? 0 : 11;
}

static void wait_n_waiting(mp_barrier_t *b, unsigned want)
{
    unsigned n = 0;
    uint64_t spins = 0;
    do {
        ASSERT_OK(mp_barrier_n_waiting(b, &n));
        cr_assert(++spins < 100000000u, "no party arrived");
    } while (n != want);
}

Test(sync, barrier_broken_by_timeout_abort_and_reset, .timeout = TEST_TIMEOUT)
{
    mp_barrier_t *b;
    ASSERT_OK(mp_barrier_create(&b, 3));
    /* A waiter that times out breaks it for everyone, itself first. */
    mp_process_t *p = start_with(barrier_expect_broken, MP_HANDLE(b), NULL, NULL);
    wait_n_waiting(b, 1);
    unsigned idx;
    ASSERT_RC(mp_barrier_wait(b, 20, &idx), MP_ETIMEDOUT);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    cr_assert_eq(mp_barrier_broken(b), 1);
    ASSERT_RC(mp_barrier_wait(b, JOIN_MS, &idx), MP_ESTATE);

    ASSERT_OK(mp_barrier_reset(b));
    cr_assert_eq(mp_barrier_broken(b), 0);
    p = start_with(barrier_expect_broken, MP_HANDLE(b), NULL, NULL);
    wait_n_waiting(b, 1);
    ASSERT_OK(mp_barrier_abort(b));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);

    /* reset with a waiter inside: it is released with MP_ESTATE. */
    ASSERT_OK(mp_barrier_reset(b));
    p = start_with(barrier_expect_broken, MP_HANDLE(b), NULL, NULL);
    wait_n_waiting(b, 1);
    ASSERT_OK(mp_barrier_reset(b));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_barrier_free(b);
}

Test(sync, barrier_of_one_passes_alone, .timeout = TEST_TIMEOUT)
{
    mp_barrier_t *b;
    ASSERT_OK(mp_barrier_create(&b, 1));
    unsigned idx = 99;
    ASSERT_OK(mp_barrier_wait(b, 0, &idx));
    cr_assert_eq(idx, 0);
    ASSERT_OK(mp_barrier_wait(b, 0, NULL));
    mp_barrier_free(b);
}

/* ---- values and arrays ---- */

static int fill_array(mp_args_t *a)
{
    mp_array_t *arr;
    if (mp_args_array(a, 0, &arr)) return 10;
    int *v = mp_array_ptr(arr);
    if (mp_array_len(arr) != 100 || mp_rlock_acquire(mp_array_lock(arr), JOIN_MS)) return 11;
    for (int i = 0; i < 100; i++)
        v[i] = v[i] * 2 + 1;
    return mp_rlock_release(mp_array_lock(arr)) ? 12 : 0;
}

Test(sync, array_both_ways, .timeout = TEST_TIMEOUT)
{
    mp_array_t *arr;
    ASSERT_RC(mp_array_create(&arr, sizeof(int), 0), MP_EINVAL);
    ASSERT_RC(mp_array_create(&arr, SIZE_MAX / 2, 3), MP_ENOMEM);
    ASSERT_OK(mp_array_create(&arr, sizeof(int), 100));
    int *v = mp_array_ptr(arr);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(v[i], 0);
    for (int i = 0; i < 100; i++)
        v[i] = i;
    mp_process_t *p = start_with(fill_array, MP_HANDLE(arr), NULL, NULL);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(v[i], 2 * i + 1);
    cr_assert_eq(mp_value_size(arr), 100 * sizeof(int));
    mp_array_free(arr);
}

/* ---- owner death ---- */

/* Takes the lock (an RLock twice) and releases it, forever, counting. */
static int hammer(mp_args_t *a)
{
    mp_handle_t *h;
    mp_conn_t *c;
    mp_value_t *count;
    if (mp_args_handle(a, 0, &h) || mp_args_conn(a, 1, &c) || mp_args_value(a, 2, &count))
        return 10;
    mp_lock_t *l = NULL;
    mp_rlock_t *r = NULL;
    mp_semaphore_t *s = NULL;
    if (mp_args_lock(a, 0, &l) && mp_args_rlock(a, 0, &r) && mp_args_semaphore(a, 0, &s)) return 11;
    _Atomic uint64_t *n = mp_value_ptr(count);
    if (mp_conn_send_bytes(c, "go", 2)) return 12;
    /* An owner-tracked semaphore: all its counts, then all back. */
    while (s) {
        for (int k = 0; k < OSEM_COUNTS; k++)
            if (mp_semaphore_acquire(s, MP_FOREVER)) return 17;
        atomic_fetch_add(n, 1);
        for (int k = 0; k < OSEM_COUNTS; k++)
            if (mp_semaphore_release(s)) return 18;
    }
    for (;;) {
        int rc = l ? mp_lock_acquire(l, MP_FOREVER) : mp_rlock_acquire(r, MP_FOREVER);
        if (rc && rc != MP_EOWNERDEAD) return 13;
        if (r && mp_rlock_acquire(r, 0)) return 14;
        atomic_fetch_add(n, 1);
        for (volatile int i = 0; i < 200; i++)
            ;
        if (r && mp_rlock_release(r)) return 15;
        rc = l ? mp_lock_release(l) : mp_rlock_release(r);
        if (rc) return 16;
    }
}

typedef enum { K_LOCK, K_RLOCK, K_OSEM } kind_t;

static int take(mp_handle_t *h, kind_t k, long timeout_ms)
{
    switch (k) {
    case K_LOCK:
        return mp_lock_acquire((mp_lock_t *)h, timeout_ms);
    case K_RLOCK:
        return mp_rlock_acquire((mp_rlock_t *)h, timeout_ms);
    default:
        return mp_semaphore_acquire((mp_semaphore_t *)h, timeout_ms);
    }
}

static int give(mp_handle_t *h, kind_t k)
{
    switch (k) {
    case K_LOCK:
        return mp_lock_release((mp_lock_t *)h);
    case K_RLOCK:
        return mp_rlock_release((mp_rlock_t *)h);
    default:
        return mp_semaphore_release((mp_semaphore_t *)h);
    }
}

/* Kills a hammering child at a random point of its loop, KILL_TRIALS
 * times; each time the lock must be acquirable (perhaps with
 * MP_EOWNERDEAD) and work normally after. */
static void kill_trials(mp_handle_t *h, kind_t kind, uint32_t seed)
{
    int takes = kind == K_OSEM ? OSEM_COUNTS : 1;
    mp_value_t *count;
    ASSERT_OK(mp_value_create(&count, sizeof(uint64_t)));
    _Atomic uint64_t *n = mp_value_ptr(count);
    int dead_owner = 0;
    for (int t = 0; t < test_kills(KILL_TRIALS); t++) {
        mp_conn_t *mine, *theirs;
        ASSERT_OK(mp_pipe(&mine, &theirs, true));
        atomic_store(n, 0);
        mp_process_t *p = start_with(hammer, h, MP_HANDLE(theirs), MP_HANDLE(count));
        mp_conn_free(theirs);
        expect_msg(mine, "go");
        uint64_t target = next_random(&seed) % 300;
        while (atomic_load(n) < target && mp_process_is_alive(p) == 1)
            ;
        ASSERT_OK(mp_process_kill(p));
        cr_assert_eq(join_code(p), -9, "the hammer failed instead of being killed");
        mp_process_free(p);
        for (int k = 0; k < takes; k++) {
            int rc = take(h, kind, JOIN_MS);
            cr_assert(rc == 0 || rc == MP_EOWNERDEAD, "trial %d: %s", t, mp_err_name(rc));
            dead_owner += rc == MP_EOWNERDEAD;
        }
        for (int k = 0; k < takes; k++)
            ASSERT_OK(give(h, kind));
        for (int k = 0; k < takes; k++)
            ASSERT_OK(take(h, kind, 0));
        for (int k = 0; k < takes; k++)
            ASSERT_OK(give(h, kind));
        mp_conn_free(mine);
    }
    cr_log_info("%d counts or locks taken over from %d killed owners", dead_owner,
                test_kills(KILL_TRIALS));
    mp_value_free(count);
}

Test(sync, lock_owner_killed_at_random, .timeout = 600)
{
    mp_lock_t *l;
    ASSERT_OK(mp_lock_create(&l));
    kill_trials(MP_HANDLE(l), K_LOCK, 12345);
    mp_lock_free(l);
}

Test(sync, rlock_owner_killed_at_random, .timeout = 600)
{
    mp_rlock_t *r;
    ASSERT_OK(mp_rlock_create(&r));
    kill_trials(MP_HANDLE(r), K_RLOCK, 777);
    mp_rlock_free(r);
}

Test(sync, owned_semaphore_holder_killed_at_random, .timeout = 600)
{
    mp_semaphore_t *s;
    ASSERT_OK(mp_semaphore_create_owned(&s, OSEM_COUNTS));
    kill_trials(MP_HANDLE(s), K_OSEM, 4242);
    unsigned v = 0;
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, OSEM_COUNTS);
    mp_semaphore_free(s);
}

/* Holds the lock (or the condition's lock) and blocks until killed. */
static int hold_and_block(mp_args_t *a)
{
    mp_handle_t *h;
    mp_conn_t *c;
    mp_event_t *never;
    if (mp_args_handle(a, 0, &h) || mp_args_conn(a, 1, &c) || mp_args_event(a, 2, &never))
        return 10;
    mp_lock_t *l;
    mp_rlock_t *r;
    mp_condition_t *cv;
    mp_semaphore_t *s;
    int rc;
    if (!mp_args_lock(a, 0, &l))
        rc = mp_lock_acquire(l, JOIN_MS);
    else if (!mp_args_semaphore(a, 0, &s))
        rc = mp_semaphore_acquire(s, JOIN_MS);
    else if (!mp_args_rlock(a, 0, &r))
        rc = mp_rlock_acquire(r, JOIN_MS);
    else if (!mp_args_condition(a, 0, &cv))
        rc = mp_condition_acquire(cv, JOIN_MS);
    else
        return 11;
    if (rc || mp_conn_send_bytes(c, "held", 4)) return 12;
    mp_event_wait(never, MP_FOREVER);
    return 13;
}

static void kill_holder(mp_handle_t *h)
{
    mp_conn_t *mine, *theirs;
    mp_event_t *never;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_event_create(&never));
    mp_process_t *p = start_with(hold_and_block, h, MP_HANDLE(theirs), MP_HANDLE(never));
    expect_msg(mine, "held");
    ASSERT_OK(mp_process_kill(p));
    cr_assert_eq(join_code(p), -9);
    mp_process_free(p);
    mp_conn_free(mine);
    mp_conn_free(theirs);
    mp_event_free(never);
}

Test(sync, owner_death_on_every_lock_kind, .timeout = TEST_TIMEOUT)
{
    mp_lock_t *l;
    mp_rlock_t *r;
    mp_condition_t *c;
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_rlock_create(&r));
    ASSERT_OK(mp_condition_create(&c, NULL));

    kill_holder(MP_HANDLE(l));
    ASSERT_RC(mp_lock_acquire(l, JOIN_MS), MP_EOWNERDEAD);
    ASSERT_OK(mp_lock_release(l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));

    kill_holder(MP_HANDLE(r));
    ASSERT_RC(mp_rlock_acquire(r, JOIN_MS), MP_EOWNERDEAD);
    ASSERT_OK(mp_rlock_acquire(r, 0));
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_OK(mp_rlock_release(r));
    ASSERT_RC(mp_rlock_release(r), MP_EPERM);

    kill_holder(MP_HANDLE(c));
    ASSERT_RC(mp_condition_acquire(c, JOIN_MS), MP_EOWNERDEAD);
    ASSERT_RC(mp_condition_wait(c, 10), MP_ETIMEDOUT);
    ASSERT_OK(mp_condition_release(c));

    mp_condition_free(c);
    mp_rlock_free(r);
    mp_lock_free(l);
}

typedef struct {
    mp_semaphore_t *s;
    int rc;
} release_arg_t;

static void try_release(void *arg)
{
    release_arg_t *r = arg;
    r->rc = mp_semaphore_release(r->s);
}

Test(sync, owned_semaphore_counts_owners_and_export, .timeout = TEST_TIMEOUT)
{
    mp_semaphore_t *s;
    ASSERT_RC(mp_semaphore_create_owned(&s, 0), MP_EINVAL);
    ASSERT_RC(mp_semaphore_create_owned(&s, MP_SEMAPHORE_OWNED_MAX + 1), MP_EINVAL);
    ASSERT_RC(mp_semaphore_create_owned(NULL, 1), MP_EINVAL);
    ASSERT_OK(mp_semaphore_create_owned(&s, 2));
    ASSERT_RC(mp_semaphore_release(s), MP_EPERM);
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_OK(mp_semaphore_acquire(s, 0));
    ASSERT_RC(mp_semaphore_acquire(s, 0), MP_ETIMEDOUT);
    ASSERT_RC(mp_semaphore_acquire(s, 20), MP_ETIMEDOUT);
    unsigned v = 9;
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, 0);
    /* Another thread holds none of it. */
    release_arg_t r = {s, 0};
    mp__thread_t *t;
    ASSERT_OK(mp__thread_start(&t, try_release, &r));
    mp__thread_join(t);
    cr_assert_eq(r.rc, MP_EPERM);
    ASSERT_OK(mp_semaphore_release(s));

    /* The kind survives an export: the imported handle is owner-tracked. */
    void *blob;
    size_t len;
    mp_handle_t *h;
    ASSERT_OK(mp_handle_export(MP_HANDLE(s), &blob, &len));
    ASSERT_OK(mp_handle_import(blob, len, &h));
    free(blob);
    mp_semaphore_t *s2 = (mp_semaphore_t *)h;
    ASSERT_OK(mp_semaphore_acquire(s2, 0));
    ASSERT_RC(mp_semaphore_acquire(s2, 0), MP_ETIMEDOUT);
    ASSERT_OK(mp_semaphore_release(s2));
    ASSERT_OK(mp_semaphore_release(s2));
    ASSERT_RC(mp_semaphore_release(s2), MP_EPERM);
    mp_semaphore_free(s2);

    /* A holder killed: its count comes back with MP_EOWNERDEAD. */
    kill_holder(MP_HANDLE(s));
    int dead = 0;
    for (int k = 0; k < 2; k++) {
        int rc = mp_semaphore_acquire(s, JOIN_MS);
        cr_assert(rc == 0 || rc == MP_EOWNERDEAD, "%s", mp_err_name(rc));
        dead += rc == MP_EOWNERDEAD;
    }
    cr_assert_eq(dead, 1);
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_release(s));
    ASSERT_OK(mp_semaphore_value(s, &v));
    cr_assert_eq(v, 2);
    mp_semaphore_free(s);
}

static int cond_wait_once(mp_args_t *a)
{
    mp_condition_t *c;
    mp_semaphore_t *arrived;
    if (mp_args_condition(a, 0, &c) || mp_args_semaphore(a, 1, &arrived)) return 10;
    if (mp_condition_acquire(c, JOIN_MS) || mp_semaphore_release(arrived)) return 11;
    int rc = mp_condition_wait(c, JOIN_MS);
    mp_condition_release(c);
    return rc ? 12 : 0;
}

Test(sync, killed_condition_waiter_strands_nobody, .timeout = TEST_TIMEOUT)
{
    mp_condition_t *c;
    mp_semaphore_t *arrived;
    ASSERT_OK(mp_condition_create(&c, NULL));
    ASSERT_OK(mp_semaphore_create(&arrived, 0, 0));
    mp_process_t *doomed = start_with(cond_wait_once, MP_HANDLE(c), MP_HANDLE(arrived), NULL);
    ASSERT_OK(mp_semaphore_acquire(arrived, JOIN_MS));
    ASSERT_OK(mp_condition_acquire(c, JOIN_MS)); /* it is inside wait */
    ASSERT_OK(mp_condition_release(c));
    ASSERT_OK(mp_process_kill(doomed));
    cr_assert_eq(join_code(doomed), -9);
    mp_process_free(doomed);

    mp_process_t *p = start_with(cond_wait_once, MP_HANDLE(c), MP_HANDLE(arrived), NULL);
    ASSERT_OK(mp_semaphore_acquire(arrived, JOIN_MS));
    ASSERT_OK(mp_condition_acquire(c, JOIN_MS));
    ASSERT_OK(mp_condition_notify(c, 1)); /* the dead waiter must not swallow it */
    ASSERT_OK(mp_condition_release(c));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_semaphore_free(arrived);
    mp_condition_free(c);
}

static int barrier_wait_ok(mp_args_t *a)
{
    mp_barrier_t *b;
    if (mp_args_barrier(a, 0, &b)) return 10;
    return mp_barrier_wait(b, JOIN_MS, NULL) ? 11 : 0;
}

Test(sync, killed_barrier_waiter_strands_nobody, .timeout = TEST_TIMEOUT)
{
    mp_barrier_t *b;
    ASSERT_OK(mp_barrier_create(&b, 3));
    mp_process_t *doomed = start_with(barrier_wait_ok, MP_HANDLE(b), NULL, NULL);
    wait_n_waiting(b, 1);
    ASSERT_OK(mp_process_kill(doomed));
    cr_assert_eq(join_code(doomed), -9);
    mp_process_free(doomed);
    /* The dead party had arrived: the two others complete the barrier. */
    mp_process_t *p = start_with(barrier_wait_ok, MP_HANDLE(b), NULL, NULL);
    ASSERT_OK(mp_barrier_wait(b, JOIN_MS, NULL));
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_barrier_free(b);
}
