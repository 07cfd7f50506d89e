/** @file
 * Locks, semaphores, events, conditions and barriers shared between
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

/** A Lock (multiprocessing.Lock). */
typedef struct mp_lock mp_lock_t;
/** A re-entrant lock (multiprocessing.RLock). */
typedef struct mp_rlock mp_rlock_t;
/** A Semaphore or BoundedSemaphore. */
typedef struct mp_semaphore mp_semaphore_t;
/** An Event. */
typedef struct mp_event mp_event_t;
/** A Condition over a Lock. */
typedef struct mp_condition mp_condition_t;
/** A Barrier. */
typedef struct mp_barrier mp_barrier_t;
/** Shared bytes with an RLock (multiprocessing.Value). */
typedef struct mp_value mp_value_t;
/** An Array is a Value of n elements. */
typedef struct mp_value mp_array_t;

/** @name Lock
 * Held by one thread of one process at a time. Unlike Python's, a Lock
 * tracks its owner: that is what makes the death of an owner detectable.
 * @{ */

/** A new, unlocked Lock. */
MP_EXTERN int mp_lock_create(mp_lock_t **l);
/** Returns 0 once held; MP_ETIMEDOUT (timeout 0 tries once);
 * MP_EOWNERDEAD when it was acquired but its last owner died holding it
 * (the lock works normally after; the data it guards may need repair);
 * MP_EPERM when the calling thread holds it already (a Lock is not
 * re-entrant: that would deadlock). */
MP_EXTERN int mp_lock_acquire(mp_lock_t *l, long timeout_ms);
/** MP_EPERM unless the calling thread holds it. */
MP_EXTERN int mp_lock_release(mp_lock_t *l);
/** Releases this process's handle (and the lock, if this thread holds
 * it). */
MP_EXTERN void mp_lock_free(mp_lock_t *l);
/** @} */

/** @name RLock
 * Re-entrant: released when release was called as often as acquire.
 * @{ */

/** A new, unlocked RLock. */
MP_EXTERN int mp_rlock_create(mp_rlock_t **l);
/** As mp_lock_acquire, but the holding thread may acquire again. */
MP_EXTERN int mp_rlock_acquire(mp_rlock_t *l, long timeout_ms);
/** Undoes one acquire; MP_EPERM from a thread that does not hold it. */
MP_EXTERN int mp_rlock_release(mp_rlock_t *l);
/** Releases this process's handle. */
MP_EXTERN void mp_rlock_free(mp_rlock_t *l);
/** @} */

/** @name Semaphore
 * Counts of mp_semaphore_create's semaphores are not owned: a process that
 * dies keeps what it acquired (as in Python); see mp_semaphore_create_owned.
 * @{ */

/** A semaphore at value. max 0 is unbounded (up to INT32_MAX); otherwise
 * a release that would pass max fails with MP_EINVAL (BoundedSemaphore). */
MP_EXTERN int mp_semaphore_create(mp_semaphore_t **s, unsigned value, unsigned max);
/** Takes one; MP_ETIMEDOUT when none came within timeout_ms. */
MP_EXTERN int mp_semaphore_acquire(mp_semaphore_t *s, long timeout_ms);
/** Gives one back (MP_EINVAL past a bounded semaphore's max). */
MP_EXTERN int mp_semaphore_release(mp_semaphore_t *s);
/** The most counts of an owner-tracked semaphore (one robust mutex each). */
#define MP_SEMAPHORE_OWNED_MAX 8u
/** An owner-tracked semaphore of value counts (1 to MP_SEMAPHORE_OWNED_MAX,
 * which is also its bound): a count is held by the thread that acquired
 * it and released only by that thread (else MP_EPERM). When a holder dies,
 * the next acquirer gets its count with MP_EOWNERDEAD (as for a Lock).
 * mp_semaphore_acquire, _release, _value and _free serve both kinds. */
MP_EXTERN int mp_semaphore_create_owned(mp_semaphore_t **s, unsigned value);
/** The current count; works on every platform (Python's get_value does
 * not on macOS). */
MP_EXTERN int mp_semaphore_value(mp_semaphore_t *s, unsigned *v);
/** Releases this process's handle. */
MP_EXTERN void mp_semaphore_free(mp_semaphore_t *s);
/** @} */

/** @name Event
 * @{ */

/** A new event, not set. */
MP_EXTERN int mp_event_create(mp_event_t **e);
/** Sets it and wakes every waiter. */
MP_EXTERN int mp_event_set(mp_event_t *e);
/** Unsets it; later waits block until the next set. */
MP_EXTERN int mp_event_clear(mp_event_t *e);
/** 1 when set, 0 when not, or a negative code. */
MP_EXTERN int mp_event_is_set(mp_event_t *e);
/** 0 once the event is set; MP_ETIMEDOUT. */
MP_EXTERN int mp_event_wait(mp_event_t *e, long timeout_ms);
/** Releases this process's handle. */
MP_EXTERN void mp_event_free(mp_event_t *e);
/** @} */

/** @name Condition
 * wait, notify and notify_all need the lock held by the calling thread
 * (MP_EPERM otherwise). No spurious wake-ups, and a waiter that dies
 * strands nobody.
 * @{ */

/** A condition over lock (NULL: a lock of its own). The lock must stay
 * alive as long as the condition. */
MP_EXTERN int mp_condition_create(mp_condition_t **c, mp_lock_t *lock);
/** Acquires the condition's lock (as mp_lock_acquire). */
MP_EXTERN int mp_condition_acquire(mp_condition_t *c, long timeout_ms);
/** Releases the condition's lock. */
MP_EXTERN int mp_condition_release(mp_condition_t *c);
/** Releases the lock, sleeps until notified, and re-acquires the lock
 * before returning, also on MP_ETIMEDOUT (MP_EOWNERDEAD if its owner died
 * meanwhile). A woken wait returns 0. */
MP_EXTERN int mp_condition_wait(mp_condition_t *c, long timeout_ms);
/** Wakes at most n of the threads waiting when it was called. */
MP_EXTERN int mp_condition_notify(mp_condition_t *c, unsigned n);
/** Wakes every thread waiting when it was called. */
MP_EXTERN int mp_condition_notify_all(mp_condition_t *c);
/** Releases this process's handle (not the lock given at create). */
MP_EXTERN void mp_condition_free(mp_condition_t *c);
/** @} */

/** @name Barrier
 * @{ */

/** A barrier for parties waiters. */
MP_EXTERN int mp_barrier_create(mp_barrier_t **b, unsigned parties);
/** Returns 0 with index 0..parties-1 (the last to arrive gets parties-1)
 * once all arrived; MP_ESTATE when the barrier is or becomes broken (abort,
 * a waiter's timeout, a party that died inside the barrier's own lock);
 * MP_ETIMEDOUT for the waiter whose timeout broke it. */
MP_EXTERN int mp_barrier_wait(mp_barrier_t *b, long timeout_ms, unsigned *index);
/** Breaks the barrier: current and later waiters get MP_ESTATE. */
MP_EXTERN int mp_barrier_abort(mp_barrier_t *b);
/** Makes it usable again (waiters still inside get MP_ESTATE). */
MP_EXTERN int mp_barrier_reset(mp_barrier_t *b);
/** 1 when broken, 0 when not, or a negative code. */
MP_EXTERN int mp_barrier_broken(mp_barrier_t *b);
/** How many parties wait in the current generation (a party that died
 * waiting still counts as arrived). */
MP_EXTERN int mp_barrier_n_waiting(mp_barrier_t *b, unsigned *n);
/** Releases this process's handle. */
MP_EXTERN void mp_barrier_free(mp_barrier_t *b);
/** @} */

/** @name Value and Array
 * Shared memory with an RLock for it (multiprocessing.Value(...,
 * lock=True), Array). The memory is zeroed and aligned for any type.
 * @{ */

/** size bytes of shared memory. */
MP_EXTERN int mp_value_create(mp_value_t **v, size_t size);
/** Where the bytes are mapped in this process. */
MP_EXTERN void *mp_value_ptr(mp_value_t *v);
/** The size given at create. */
MP_EXTERN size_t mp_value_size(mp_value_t *v);
/** The RLock guarding it (owned by the value: do not free it). */
MP_EXTERN mp_rlock_t *mp_value_lock(mp_value_t *v);
/** Releases this process's handle and mapping. */
MP_EXTERN void mp_value_free(mp_value_t *v);
/** n elements of elem_size bytes. */
MP_EXTERN int mp_array_create(mp_array_t **a, size_t elem_size, size_t n);
/** The first element, mapped in this process. */
MP_EXTERN void *mp_array_ptr(mp_array_t *a);
/** The number of elements. */
MP_EXTERN size_t mp_array_len(mp_array_t *a);
/** The RLock guarding it (owned by the array). */
MP_EXTERN mp_rlock_t *mp_array_lock(mp_array_t *a);
/** Releases this process's handle and mapping. */
MP_EXTERN void mp_array_free(mp_array_t *a);
/** @} */

/** @name Export and import
 * A shareable object as a small versioned blob that another running
 * process of this user imports while an exporting process still holds the
 * object (docs/start-methods.md).
 * @{ */

/** The blob for h (release it with mp_free). Connections and processes
 * cannot be exported (MP_ETYPE). */
MP_EXTERN int mp_handle_export(mp_handle_t *h, void **blob, size_t *len);
/** A handle rebuilt from a blob; free it with its type's free function. A
 * malformed or foreign blob gives MP_EINVAL or MP_EPROTO; an object that is
 * gone, MP_ENOTFOUND. */
MP_EXTERN int mp_handle_import(const void *blob, size_t len, mp_handle_t **h);
/** @} */

#ifdef __cplusplus
}
#endif
#endif
