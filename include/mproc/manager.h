/* mproc: managers (multiprocessing.managers): a server process that owns
 * shared dicts, lists, queues, locks, events and semaphores, reachable
 * from children, from unrelated local processes and over TCP.
 *
 * Dicts and lists live in shared memory that the server keeps alive: a
 * local process (any address but tcp://) reads and writes them directly
 * under a robust lock, without waking the server; a TCP client sends each
 * operation to the server, which runs it on the same data. The wire format
 * is docs/PROTOCOL.md.
 *
 * A name gets the object of that name, creating it on first use (MP_ETYPE
 * when the name belongs to an object of another kind); NULL creates an
 * anonymous object. Objects live as long as the manager. Keys and values
 * are bytes. Proxies (dicts, lists and the manager's queues, locks,
 * events and semaphores) are thread-safe, travel in a child's args (fork
 * and spawn) and through mp_handle_export / mp_handle_import; a process
 * that has none reaches the manager with mp_manager_connect.
 *
 * Once the manager was shut down or freed, calls on its proxies return
 * MP_ECLOSED; when its server died, MP_EOF (local dict and list calls
 * notice it at their next call). Nothing waits on a manager that is gone. */
#ifndef MPROC_MANAGER_H
#define MPROC_MANAGER_H

#include "common.h"
#include "queue.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_manager mp_manager_t;
typedef struct mp_dict mp_dict_t;
typedef struct mp_list mp_list_t;

/* The largest key + value (or list item) a manager stores. */
#define MP_MANAGER_MAX_ITEM ((size_t)64 << 20)
/* The longest object name, in bytes (no NUL inside). */
#define MP_MANAGER_NAME_MAX 255

typedef struct {
    /* NULL: a private local address; "unix:/path", "pipe:name", or
     * "tcp://host:port" (port 0 picks one: see mp_manager_address). */
    const char *address;
    /* NULL: no handshake, which only local addresses allow; TCP needs a
     * key (MP_EPERM without one). The key is never logged. */
    const void *authkey;
    size_t keylen;
    mp_start_method_t start_method; /* mp_manager_start's server process */
    bool allow_remote;              /* a TCP host that is not loopback */
    /* mp_manager_serve: called once it listens, with the real address. */
    void (*ready)(const char *address, void *arg);
    void *ready_arg;
} mp_manager_opts_t;

/* Starts a server process (a daemon child: it ends with this process) and
 * connects to it. o NULL: a private local address, no key. */
MP_EXTERN int mp_manager_start(mp_manager_t **m, const mp_manager_opts_t *o);
/* Attaches to a running manager (BaseManager.connect). MP_EAUTH for a
 * wrong key. */
MP_EXTERN int mp_manager_connect(mp_manager_t **m, const char *address, const void *authkey,
                                 size_t keylen);
/* Serves in the calling process until a client shuts the manager down
 * (BaseManager.serve_forever); returns 0 then. */
MP_EXTERN int mp_manager_serve(const mp_manager_opts_t *o);
MP_EXTERN const char *mp_manager_address(mp_manager_t *m);
/* Stops the server (from any client: the starter, or one that connected).
 * MP_ECLOSED when it was already shut down through m. */
MP_EXTERN int mp_manager_shutdown(mp_manager_t *m);
/* Shuts a started server down (and waits for it); detaches otherwise. */
MP_EXTERN void mp_manager_free(mp_manager_t *m);

/* Dict. get/pop/del of a missing key: MP_ENOTFOUND. */
MP_EXTERN int mp_manager_dict(mp_manager_t *m, const char *name, mp_dict_t **d);
MP_EXTERN int mp_dict_set(mp_dict_t *d, const void *k, size_t kl, const void *v, size_t vl);
MP_EXTERN int mp_dict_get(mp_dict_t *d, const void *k, size_t kl, void **v, size_t *vl);
MP_EXTERN int mp_dict_del(mp_dict_t *d, const void *k, size_t kl);
MP_EXTERN int mp_dict_pop(mp_dict_t *d, const void *k, size_t kl, void **v, size_t *vl);
MP_EXTERN int mp_dict_len(mp_dict_t *d, size_t *n);
/* A consistent snapshot; each key and value is mp_free'd by the caller (or
 * use mp_iov_free on both arrays). */
MP_EXTERN int mp_dict_items(mp_dict_t *d, mp_iov_t **keys, mp_iov_t **vals, size_t *n);
MP_EXTERN int mp_dict_clear(mp_dict_t *d);
/* Atomic counter (Python's Value, without the race of d[k] += 1): the value
 * is an int64 stored as 8 bytes little-endian; a missing key counts as 0.
 * MP_ETYPE when the value has another size; MP_EINVAL on overflow. *now
 * (may be NULL) gets the new value. */
MP_EXTERN int mp_dict_incr(mp_dict_t *d, const void *k, size_t kl, int64_t by, int64_t *now);
/* Sets k to v if its value equals expect: MP_EBUSY when it differs,
 * MP_ENOTFOUND when k is missing. expect NULL (el 0): set only if k is
 * missing (MP_EBUSY when it exists). */
MP_EXTERN int mp_dict_cas(mp_dict_t *d, const void *k, size_t kl, const void *expect, size_t el,
                          const void *v, size_t vl);
MP_EXTERN void mp_dict_free(mp_dict_t *d);

/* List. Indexes count from the end when negative, as in Python; out of
 * range: MP_EINVAL. pop(-1) takes the last item. */
MP_EXTERN int mp_manager_list(mp_manager_t *m, const char *name, mp_list_t **l);
MP_EXTERN int mp_list_append(mp_list_t *l, const void *v, size_t vl);
MP_EXTERN int mp_list_get(mp_list_t *l, long i, void **v, size_t *vl);
MP_EXTERN int mp_list_set(mp_list_t *l, long i, const void *v, size_t vl);
MP_EXTERN int mp_list_pop(mp_list_t *l, long i, void **v, size_t *vl);
MP_EXTERN int mp_list_len(mp_list_t *l, size_t *n);
MP_EXTERN int mp_list_items(mp_list_t *l, mp_iov_t **items, size_t *n);
MP_EXTERN void mp_list_free(mp_list_t *l);

/* Queues, locks, events and semaphores the manager serves, as the ordinary
 * types: every mp_queue_*, mp_lock_*... call works on them, each one a
 * request to the manager (waits wait there). A lock whose holding process
 * died (or let go of every proxy of the manager) is released and its next
 * owner gets MP_EOWNERDEAD. A manager queue is joinable (task_done, join),
 * as Python's Manager().Queue() is; maxsize 0: unbounded. An existing name
 * keeps the maxsize or value it was created with. */
MP_EXTERN int mp_manager_queue(mp_manager_t *m, const char *name, size_t maxsize, mp_queue_t **q);
MP_EXTERN int mp_manager_lock(mp_manager_t *m, const char *name, mp_lock_t **l);
MP_EXTERN int mp_manager_rlock(mp_manager_t *m, const char *name, mp_rlock_t **l);
MP_EXTERN int mp_manager_event(mp_manager_t *m, const char *name, mp_event_t **e);
MP_EXTERN int mp_manager_semaphore(mp_manager_t *m, const char *name, unsigned value,
                                   mp_semaphore_t **s);

#ifdef __cplusplus
}
#endif
#endif
