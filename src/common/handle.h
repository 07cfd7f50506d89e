/* The common header of every shareable object, and the one mechanism by
 * which objects cross into another process: each type packs itself into
 * bytes plus a table of OS handles, and unpacks itself on the other side. */
#ifndef MP_HANDLE_H
#define MP_HANDLE_H

#include "internal.h"
#include "wire.h"

typedef enum {
    MP__H_CONN = 1,
    MP__H_PROCESS,
    /* sync.c, shm.c */
    MP__H_LOCK,
    MP__H_RLOCK,
    MP__H_SEMAPHORE,
    MP__H_EVENT,
    MP__H_CONDITION,
    MP__H_BARRIER,
    MP__H_SHM,
    MP__H_VALUE,
    /* manager*.c */
    MP__H_MANAGER,
    MP__H_DICT,
    MP__H_LIST,
    /* queue.c */
    MP__H_QUEUE,
    /* manager_handles.c: a lock, event, semaphore or queue the manager
     * serves (its type is the public one; this type's ops serve it) */
    MP__H_REMOTE,
    MP__H_TYPE_COUNT
} mp__htype_t;

struct mp_handle {
    uint32_t magic; /* MP__HANDLE_MAGIC while the object is alive */
    uint16_t type;
    uint16_t ops_type;             /* whose ops serve it: type, or MP__H_REMOTE */
    struct mp_handle *prev, *next; /* this process's live handles */
};

/* OS handles that travel beside a packed blob (to a spawned child). */
typedef struct {
    mp__osh_t *v;
    size_t n, cap;
} mp__ostab_t;

/* Appends h and returns its index in the table, or a negative code. */
int mp__ostab_add(mp__ostab_t *t, mp__osh_t h);
void mp__ostab_release(mp__ostab_t *t);

typedef struct {
    const char *name;
    /* Serializes h for a child; OS handles go to t, named by index. */
    int (*pack)(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t);
    /* Rebuilds an object from pack's bytes; takes the table entries it
     * uses and sets them to MP__OSH_INVALID. */
    int (*unpack)(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out);
    /* In a forked child, for a handle its target was not given: release
     * this process's share of the OS objects without affecting others. */
    void (*drop_after_fork)(mp_handle_t *h);
    /* For mp_wait: what to wait on, or *ready_now when no wait is needed. */
    int (*waitable)(mp_handle_t *h, mp__waitable_t *w, bool *ready_now);
    void (*free)(mp_handle_t *h);
    /* mp_handle_export / mp_handle_import (export.c): the object as bytes
     * any process of this user can rebuild it from while this one still
     * holds it. NULL: the type cannot be exported. */
    int (*export_blob)(mp_handle_t *h, mp__wbuf_t *w);
    int (*import_blob)(mp__rbuf_t *r, mp_handle_t **out);
    /* For mp_wait on a handle with no OS waitable (waitable leaves w
     * empty): sleeps up to timeout_ms or until it may have become ready. */
    int (*sleep)(mp_handle_t *h, long timeout_ms);
} mp__htype_ops_t;

/* Registers a new object of type in this process's live list. */
void mp__handle_init(mp_handle_t *h, mp__htype_t type);
/* A public type served by another type's ops (manager-served objects). */
void mp__handle_init_as(mp_handle_t *h, mp__htype_t type, mp__htype_t ops_type);
/* 1 for a live manager-served object (sets no error detail). */
bool mp__handle_is_remote(const mp_handle_t *h);
/* The ops that serve h (not checked: h must be live). */
const mp__htype_ops_t *mp__handle_ops_of(const mp_handle_t *h);
/* Removes it from the list and poisons the header. */
void mp__handle_fini(mp_handle_t *h);
/* MP_EINVAL for NULL or a freed/foreign pointer; MP_ETYPE for another
 * type (type 0 accepts any). */
int mp__handle_check(const mp_handle_t *h, mp__htype_t type);
const mp__htype_ops_t *mp__handle_ops(int type);
/* In a forked child: drops every live handle not in keep. */
void mp__handle_drop_others(mp_handle_t *const *keep, size_t nkeep);
/* Packs/unpacks a handle with its type tag. */
int mp__handle_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t);
int mp__handle_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out);
/* Frees any handle through its type. */
void mp__handle_free(mp_handle_t *h);

extern const mp__htype_ops_t mp__conn_ops;
extern const mp__htype_ops_t mp__process_ops;

/* export.c: a handle with its type tag inside an export blob (for objects
 * that hold other objects, e.g. a condition's lock). */
int mp__handle_export_into(mp_handle_t *h, mp__wbuf_t *w);
int mp__handle_import_from(mp__rbuf_t *r, mp_handle_t **out);

/* shm.c: a shared segment inside a packed handle (t: for a spawned child)
 * or an export blob (t NULL: by name; unpack then gets no table). */
int mp__seg_pack(mp__seg_t *s, mp__wbuf_t *w, mp__ostab_t *t);
int mp__seg_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, const mp__seg_spec_t *expect,
                   mp__seg_t **out);

/* sync.c, shm.c */
extern const mp__htype_ops_t mp__lock_ops;
extern const mp__htype_ops_t mp__rlock_ops;
extern const mp__htype_ops_t mp__semaphore_ops;
extern const mp__htype_ops_t mp__event_ops;
extern const mp__htype_ops_t mp__condition_ops;
extern const mp__htype_ops_t mp__barrier_ops;
extern const mp__htype_ops_t mp__shm_ops;
extern const mp__htype_ops_t mp__value_ops;

/* manager.c, manager_proxy.c */
extern const mp__htype_ops_t mp__manager_ops;
extern const mp__htype_ops_t mp__dict_ops;
extern const mp__htype_ops_t mp__list_ops;

/* queue.c */
extern const mp__htype_ops_t mp__queue_ops;

/* manager_handles.c */
extern const mp__htype_ops_t mp__remote_ops;

#endif
