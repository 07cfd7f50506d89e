/* mproc: queues between processes (multiprocessing.Queue, JoinableQueue).
 *
 * A queue lives in shared memory; there is no pipe and no feeder thread.
 * An item is in the queue when put returns, so a producer may exit right
 * after it (nothing is lost) and joining a producer never waits for a
 * consumer. Items keep their order per producer; any number of producers
 * and consumers, in any processes, may use one queue at once. A process
 * killed at any moment (even inside put or get) never blocks the others
 * and never makes them see a torn item: every item whose put returned is
 * delivered once, except the one a killed consumer was taking.
 *
 * Items are 0 bytes to any size: those larger than a quarter of the ring
 * (segment_bytes) travel in memory of their own, and an unbounded queue
 * whose ring is full goes on in more memory rather than block. A queue
 * keeps up to 8 x segment_bytes of that memory for reuse; all of it goes
 * with the last process that holds the queue, however that one ends.
 *
 * A queue passes to children in their args (mp_args_add_handle, read back
 * with mp_args_queue), to pool workers (initargs, or an export blob as a
 * task's input) and to any process of the same user through
 * mp_handle_export / mp_handle_import. mp_wait accepts queues: one is ready
 * when it holds an item. */
#ifndef MPROC_QUEUE_H
#define MPROC_QUEUE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_queue mp_queue_t;

typedef struct {
    size_t maxsize;       /* items; 0: unbounded (put never blocks) */
    bool joinable;        /* JoinableQueue: task_done and join */
    size_t segment_bytes; /* the ring, rounded up to a power of two between
                             4 KiB and 1 GiB; 0: 1 MiB */
} mp_queue_opts_t;

/* o NULL: an unbounded, non-joinable queue with the default ring. */
MP_EXTERN int mp_queue_create(mp_queue_t **q, const mp_queue_opts_t *o);
/* Copies len bytes in. A bounded queue that is full waits up to timeout_ms
 * for room, then fails with MP_EFULL (timeout 0 never waits). MP_ECLOSED
 * after mp_queue_close in this process. */
MP_EXTERN int mp_queue_put(mp_queue_t *q, const void *buf, size_t len, long timeout_ms);
/* Takes the oldest item, waiting up to timeout_ms for one (MP_EEMPTY).
 * *buf is allocated (release it with mp_free). */
MP_EXTERN int mp_queue_get(mp_queue_t *q, void **buf, size_t *len, long timeout_ms);
/* As mp_queue_get into the caller's buffer. MP_EMSGSIZE when the item is
 * larger than cap: *len holds its size and it stays at the head. */
MP_EXTERN int mp_queue_get_into(mp_queue_t *q, void *buf, size_t cap, size_t *len, long timeout_ms);
/* Exact on every platform: items put and not yet taken. */
MP_EXTERN int mp_queue_qsize(mp_queue_t *q, size_t *n);
/* 1 or 0 (or a negative code). */
MP_EXTERN int mp_queue_empty(mp_queue_t *q);
MP_EXTERN int mp_queue_full(mp_queue_t *q);
/* Joinable queues (MP_ETYPE otherwise). task_done called more often than
 * items were put: MP_EINVAL. join waits until every item put was marked
 * done (MP_ETIMEDOUT). */
MP_EXTERN int mp_queue_task_done(mp_queue_t *q);
MP_EXTERN int mp_queue_join(mp_queue_t *q, long timeout_ms);
/* This process puts and gets no more through this handle (MP_ECLOSED
 * after, as in Python); other processes are not affected. */
MP_EXTERN int mp_queue_close(mp_queue_t *q);
MP_EXTERN void mp_queue_free(mp_queue_t *q);

#ifdef __cplusplus
}
#endif
#endif
