/* mproc: locks, semaphores, events, conditions and barriers shared between
 * processes (multiprocessing.Lock, RLock, Semaphore, BoundedSemaphore,
 * Event, Condition, Barrier), and shared values and arrays
 * (multiprocessing.Value, Array).
 *
 * Every object works in the process that created it, in children that got
 * it in their args (fork or spawn), and in any process of the same user
 * that imports an exported blob (mp_handle_export). Each process frees its
 * own handle; the OS objects go with the last one, and never outlive every
 * process that used them, even when those were killed. */
#ifndef MPROC_SYNC_H
#define MPROC_SYNC_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_lock mp_lock_t;
typedef struct mp_rlock mp_rlock_t;
typedef struct mp_semaphore mp_semaphore_t;
typedef struct mp_event mp_event_t;
typedef struct mp_condition mp_condition_t;
typedef struct mp_barrier mp_barrier_t;
typedef struct mp_value mp_value_t;
typedef struct mp_value mp_array_t; /* an Array is a Value of n elements */

/* Lock: held by one thread of one process at a time. acquire returns 0;
 * MP_ETIMEDOUT (timeout 0 tries once); MP_EOWNERDEAD when it was acquired
 * but its last owner died holding it (the lock works normally after; the
 * data it guards may need repair); MP_EPERM when the calling thread holds
 * it already (a Lock is not re-entrant: that would deadlock). release:
 * MP_EPERM unless the calling thread holds it (unlike Python, ownership is
 * tracked, which is what makes owner death detectable). */
MP_EXTERN int mp_lock_create(mp_lock_t **l);
MP_EXTERN int mp_lock_acquire(mp_lock_t *l, long timeout_ms);
MP_EXTERN int mp_lock_release(mp_lock_t *l);
MP_EXTERN void mp_lock_free(mp_lock_t *l);

/* RLock: re-entrant; released when release was called as often as
 * acquire. release by a thread that does not hold it: MP_EPERM. */
MP_EXTERN int mp_rlock_create(mp_rlock_t **l);
MP_EXTERN int mp_rlock_acquire(mp_rlock_t *l, long timeout_ms);
MP_EXTERN int mp_rlock_release(mp_rlock_t *l);
MP_EXTERN void mp_rlock_free(mp_rlock_t *l);

/* Semaphore: max 0 is unbounded (up to INT32_MAX); otherwise a release
 * that would pass max fails with MP_EINVAL (BoundedSemaphore). Counts are
 * not owned: a process that dies keeps what it acquired. value works on
 * every platform. */
MP_EXTERN int mp_semaphore_create(mp_semaphore_t **s, unsigned value, unsigned max);
MP_EXTERN int mp_semaphore_acquire(mp_semaphore_t *s, long timeout_ms);
MP_EXTERN int mp_semaphore_release(mp_semaphore_t *s);
MP_EXTERN int mp_semaphore_value(mp_semaphore_t *s, unsigned *v);
MP_EXTERN void mp_semaphore_free(mp_semaphore_t *s);

MP_EXTERN int mp_event_create(mp_event_t **e);
MP_EXTERN int mp_event_set(mp_event_t *e);
MP_EXTERN int mp_event_clear(mp_event_t *e);
/* 1 when set, 0 when not, or a negative code. */
MP_EXTERN int mp_event_is_set(mp_event_t *e);
/* 0 once the event is set; MP_ETIMEDOUT. */
MP_EXTERN int mp_event_wait(mp_event_t *e, long timeout_ms);
MP_EXTERN void mp_event_free(mp_event_t *e);

/* Condition over lock (NULL: a lock of its own). The lock must stay alive
 * as long as the condition. wait, notify and notify_all need the lock held
 * by the calling thread (MP_EPERM otherwise). wait releases it, sleeps and
 * re-acquires it before returning, also on MP_ETIMEDOUT (MP_EOWNERDEAD if
 * its owner died meanwhile). No spurious wake-ups: notify(c, n) wakes at
 * most n of the threads waiting when it was called, and a woken wait
 * returns 0. A waiter that dies strands nobody. */
MP_EXTERN int mp_condition_create(mp_condition_t **c, mp_lock_t *lock);
MP_EXTERN int mp_condition_acquire(mp_condition_t *c, long timeout_ms);
MP_EXTERN int mp_condition_release(mp_condition_t *c);
MP_EXTERN int mp_condition_wait(mp_condition_t *c, long timeout_ms);
MP_EXTERN int mp_condition_notify(mp_condition_t *c, unsigned n);
MP_EXTERN int mp_condition_notify_all(mp_condition_t *c);
MP_EXTERN void mp_condition_free(mp_condition_t *c);

/* Barrier of parties. wait returns 0 with index 0..parties-1 (the last to
 * arrive gets parties-1) once all arrived; MP_ESTATE when the barrier is or
 * becomes broken (abort, a waiter's timeout, a party that died inside the
 * barrier's own lock); MP_ETIMEDOUT for the waiter whose timeout broke it.
 * reset makes it usable again (waiters still inside get MP_ESTATE). */
MP_EXTERN int mp_barrier_create(mp_barrier_t **b, unsigned parties);
MP_EXTERN int mp_barrier_wait(mp_barrier_t *b, long timeout_ms, unsigned *index);
MP_EXTERN int mp_barrier_abort(mp_barrier_t *b);
MP_EXTERN int mp_barrier_reset(mp_barrier_t *b);
/* 1 when broken, 0 when not, or a negative code. */
MP_EXTERN int mp_barrier_broken(mp_barrier_t *b);
/* How many parties wait in the current generation (a party that died
 * waiting still counts as arrived). */
MP_EXTERN int mp_barrier_n_waiting(mp_barrier_t *b, unsigned *n);
MP_EXTERN void mp_barrier_free(mp_barrier_t *b);

/* Value: size bytes of zeroed shared memory with an RLock for it
 * (multiprocessing.Value(..., lock=True)); Array: n elements of elem_size.
 * The memory is aligned for any type. */
MP_EXTERN int mp_value_create(mp_value_t **v, size_t size);
MP_EXTERN void *mp_value_ptr(mp_value_t *v);
MP_EXTERN size_t mp_value_size(mp_value_t *v);
MP_EXTERN mp_rlock_t *mp_value_lock(mp_value_t *v);
MP_EXTERN void mp_value_free(mp_value_t *v);
MP_EXTERN int mp_array_create(mp_array_t **a, size_t elem_size, size_t n);
MP_EXTERN void *mp_array_ptr(mp_array_t *a);
MP_EXTERN size_t mp_array_len(mp_array_t *a);
MP_EXTERN mp_rlock_t *mp_array_lock(mp_array_t *a);
MP_EXTERN void mp_array_free(mp_array_t *a);

/* A shareable object as a small versioned blob (mp_free it) that another
 * running process of this user imports while an exporting process still
 * holds the object. A malformed or foreign blob gives MP_EINVAL or
 * MP_EPROTO; an object that is gone, MP_ENOTFOUND. Free the imported handle
 * with its type's free function. */
MP_EXTERN int mp_handle_export(mp_handle_t *h, void **blob, size_t *len);
MP_EXTERN int mp_handle_import(const void *blob, size_t len, mp_handle_t **h);

#ifdef __cplusplus
}
#endif
#endif
