/* Manager-served locks, events, semaphores and queues behind the ordinary
 * mp_lock_t, mp_rlock_t, mp_event_t, mp_semaphore_t and mp_queue_t: such
 * an object holds an mp__remote_t instead of shared memory, and each call
 * on it is forwarded to the manager (manager_remote.c), which keeps the
 * state and tracks lock owners by client process and thread.
 *
 * sync.c and queue.c dispatch to these when an object is remote; the
 * functions return what the ordinary calls document (MP_ETIMEDOUT,
 * MP_EOWNERDEAD, MP_EFULL, MP_EEMPTY...), plus MP_ECLOSED / MP_EOF once
 * the manager stopped or died. */
#ifndef MP_MANAGER_REMOTE_H
#define MP_MANAGER_REMOTE_H

#include "handle.h"

typedef struct mp__remote mp__remote_t;

/* kind: one of the MP__MK_* of manager_internal.h (lock, rlock,
 * semaphore, event, queue); p1, p2 as OPEN takes them (semaphore value and
 * bound; queue maxsize and joinable). */
int mp__remote_open(mp_manager_t *m, int kind, const char *name, int64_t p1, int64_t p2,
                    mp__remote_t **out);
void mp__remote_free(mp__remote_t *r);
/* The object inside a packed handle (t NULL: an export blob). */
int mp__remote_pack(mp__remote_t *r, mp__wbuf_t *w, mp__ostab_t *t);
int mp__remote_unpack(mp__rbuf_t *rb, mp__osh_t *tab, size_t ntab, mp__remote_t **out);

/* Lock and RLock (the server knows which). */
int mp__remote_lock_acquire(mp__remote_t *r, long timeout_ms);
int mp__remote_lock_release(mp__remote_t *r);
int mp__remote_sem_acquire(mp__remote_t *r, long timeout_ms);
int mp__remote_sem_release(mp__remote_t *r);
int mp__remote_sem_value(mp__remote_t *r, unsigned *v);
int mp__remote_event_set(mp__remote_t *r);
int mp__remote_event_clear(mp__remote_t *r);
/* 1 or 0, or a negative code. */
int mp__remote_event_is_set(mp__remote_t *r);
int mp__remote_event_wait(mp__remote_t *r, long timeout_ms);
int mp__remote_queue_put(mp__remote_t *r, const void *buf, size_t len, long timeout_ms);
/* out non-NULL: an allocated copy; else into (cap bytes), MP_EMSGSIZE with
 * *len set when it is short (the item stays). */
int mp__remote_queue_get(mp__remote_t *r, void **out, void *into, size_t cap, size_t *len,
                         long timeout_ms);
int mp__remote_queue_qsize(mp__remote_t *r, size_t *n, size_t *maxsize);
int mp__remote_queue_task_done(mp__remote_t *r);
int mp__remote_queue_join(mp__remote_t *r, long timeout_ms);

#endif
