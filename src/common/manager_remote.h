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
int mp__remote_kind(const mp__remote_t *r);
/* The object inside a packed handle (t NULL: an export blob). */
int mp__remote_pack(mp__remote_t *r, mp__wbuf_t *w, mp__ostab_t *t);
int mp__remote_unpack(mp__rbuf_t *rb, mp__osh_t *tab, size_t ntab, mp__remote_t **out);

/* Lock and RLock (the server knows which). */
int mp__remote_lock_acquire(mp__remote_t *r, long timeout_ms);
int mp__remote_lock_release(mp__remote_t *r);
/* Releases the lock at every depth if the calling thread holds it. */
int mp__remote_lock_drop(mp__remote_t *r);
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

/* ---- manager_handles.c: the public objects around these ----
 * The first line of each public call of sync.c and queue.c:
 *   if (mp__handle_is_remote(MP_HANDLE(x))) return mp__rx_...(MP_HANDLE(x), ...);
 * Each checks that h is of the public type the call takes (MP_ETYPE). */
/* In the *_free calls: true when h is manager-served (then freed if it is
 * of that type), false for an ordinary object. */
bool mp__rx_free(mp_handle_t *h, mp__htype_t type);
/* type: MP__H_LOCK or MP__H_RLOCK. */
int mp__rx_lock_acquire(mp_handle_t *h, mp__htype_t type, long timeout_ms);
int mp__rx_lock_release(mp_handle_t *h, mp__htype_t type);
int mp__rx_sem_acquire(mp_handle_t *h, long timeout_ms);
int mp__rx_sem_release(mp_handle_t *h);
int mp__rx_sem_value(mp_handle_t *h, unsigned *v);
int mp__rx_event_set(mp_handle_t *h);
int mp__rx_event_clear(mp_handle_t *h);
int mp__rx_event_is_set(mp_handle_t *h);
int mp__rx_event_wait(mp_handle_t *h, long timeout_ms);
int mp__rx_queue_put(mp_handle_t *h, const void *buf, size_t len, long timeout_ms);
int mp__rx_queue_get(mp_handle_t *h, void **out, size_t *len, long timeout_ms);
int mp__rx_queue_get_into(mp_handle_t *h, void *buf, size_t cap, size_t *len, long timeout_ms);
int mp__rx_queue_qsize(mp_handle_t *h, size_t *n);
int mp__rx_queue_empty(mp_handle_t *h);
int mp__rx_queue_full(mp_handle_t *h);
int mp__rx_queue_task_done(mp_handle_t *h);
int mp__rx_queue_join(mp_handle_t *h, long timeout_ms);
int mp__rx_queue_close(mp_handle_t *h);

#endif
