/** @file
 * Processes and their arguments (multiprocessing.Process). A child runs a
 * target function with an args list; docs/start-methods.md says how both
 * reach it under fork and spawn. */
#ifndef MPROC_PROCESS_H
#define MPROC_PROCESS_H

#include "common.h"
#include "manager.h"
#include "queue.h"
#include "shm.h"
#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The exit code of a spawned child that cannot start (a target it cannot
 * resolve, a corrupt launch record); it says why on stderr first. */
#define MP_EXIT_BOOTSTRAP 120

/** An empty args list: Python's args tuple, of bytes, strings, integers
 * and shareable handles, read back by position in the child. */
MP_EXTERN int mp_args_create(mp_args_t **a);
/** Appends a copy of n bytes at p. */
MP_EXTERN int mp_args_add_bytes(mp_args_t *a, const void *p, size_t n);
/** Appends a copy of the string s. */
MP_EXTERN int mp_args_add_str(mp_args_t *a, const char *s);
/** Appends a 64-bit integer. */
MP_EXTERN int mp_args_add_int(mp_args_t *a, int64_t v);
/** Appends a shareable object (MP_HANDLE(x)); the child gets its own handle
 * on the same object. The handle is referenced, not copied: keep it alive
 * until the process (or pool) that takes these args has been started. */
MP_EXTERN int mp_args_add_handle(mp_args_t *a, mp_handle_t *h);
/** How many arguments the list holds. */
MP_EXTERN size_t mp_args_count(const mp_args_t *a);

/** @name Getters
 * Each reads argument i. They fail with MP_EINVAL past the end and
 * MP_ETYPE when the argument is of another type; what they return belongs
 * to the args list (a child's handles live as long as the child). @{ */

/** Bytes: *p points into the list, *n is their count. */
MP_EXTERN int mp_args_bytes(mp_args_t *a, size_t i, const void **p, size_t *n);
/** A string, NUL-terminated, owned by the list. */
MP_EXTERN int mp_args_str(mp_args_t *a, size_t i, const char **s);
/** An integer. */
MP_EXTERN int mp_args_int(mp_args_t *a, size_t i, int64_t *v);
/** A handle of any type (compare with the typed getters below). */
MP_EXTERN int mp_args_handle(mp_args_t *a, size_t i, mp_handle_t **h);
/** A connection end. */
MP_EXTERN int mp_args_conn(mp_args_t *a, size_t i, mp_conn_t **c);
/** A Lock. */
MP_EXTERN int mp_args_lock(mp_args_t *a, size_t i, mp_lock_t **l);
/** An RLock. */
MP_EXTERN int mp_args_rlock(mp_args_t *a, size_t i, mp_rlock_t **l);
/** A semaphore (bounded or not). */
MP_EXTERN int mp_args_semaphore(mp_args_t *a, size_t i, mp_semaphore_t **s);
/** An event. */
MP_EXTERN int mp_args_event(mp_args_t *a, size_t i, mp_event_t **e);
/** A condition (its lock comes with it). */
MP_EXTERN int mp_args_condition(mp_args_t *a, size_t i, mp_condition_t **c);
/** A barrier. */
MP_EXTERN int mp_args_barrier(mp_args_t *a, size_t i, mp_barrier_t **b);
/** Named shared memory, mapped in the child. */
MP_EXTERN int mp_args_shm(mp_args_t *a, size_t i, mp_shm_t **s);
/** A Value, mapped in the child. */
MP_EXTERN int mp_args_value(mp_args_t *a, size_t i, mp_value_t **v);
/** An Array, mapped in the child. */
MP_EXTERN int mp_args_array(mp_args_t *a, size_t i, mp_array_t **v);
/** A queue. */
MP_EXTERN int mp_args_queue(mp_args_t *a, size_t i, mp_queue_t **q);
/** A manager's dict proxy. */
MP_EXTERN int mp_args_dict(mp_args_t *a, size_t i, mp_dict_t **d);
/** A manager's list proxy. */
MP_EXTERN int mp_args_list(mp_args_t *a, size_t i, mp_list_t **l);
/** @} */

/** Releases the list and its copies; the handles it referenced are not
 * freed (they are the caller's). */
MP_EXTERN void mp_args_free(mp_args_t *a);

/** A process's target: it runs in the child, and its return value is the
 * child's exit code. Under spawn it must be a function of the program or
 * of a library it links (it travels as module and offset). */
typedef int (*mp_target_fn)(mp_args_t *args);

/** What mp_process_create starts; zero-initialise and set what you need. */
typedef struct {
    mp_target_fn target;            /**< required */
    mp_args_t *args;                /**< copied at create; may be NULL */
    const char *name;               /**< NULL: "Process-N" */
    bool daemon;                    /**< dies with its parent, always */
    mp_start_method_t start_method; /**< MP_START_DEFAULT: see mp_get_start_method */
} mp_process_opts_t;

/** A process not yet started (Python's Process(...)). */
MP_EXTERN int mp_process_create(mp_process_t **p, const mp_process_opts_t *o);
/** Starts the child; at most once per process (MP_ESTATE after). Spawn
 * without mp_init in main is MP_ESTATE. */
MP_EXTERN int mp_process_start(mp_process_t *p);
/** Waits for the child to end; MP_ETIMEDOUT when it is still running after
 * timeout_ms, MP_ESTATE before start. */
MP_EXTERN int mp_process_join(mp_process_t *p, long timeout_ms);
/** 1 while the started child runs, 0 before start and after it ended, or a
 * negative code. */
MP_EXTERN int mp_process_is_alive(mp_process_t *p);
/** The child's exit code: its target's return value; -N when ended by
 * signal N (terminate reads as -15 and kill as -9 on every platform).
 * MP_EBUSY while it runs, MP_ESTATE before start. */
MP_EXTERN int mp_process_exitcode(mp_process_t *p, int *code);
/** The child's OS process id; 0 before start. */
MP_EXTERN mp_pid_t mp_process_pid(mp_process_t *p);
/** The name given in the options, or "Process-N". */
MP_EXTERN const char *mp_process_name(mp_process_t *p);
/** Whether the child dies with its parent. */
MP_EXTERN bool mp_process_daemon(mp_process_t *p);
/** Asks the child to stop: SIGTERM, or TerminateProcess on Windows. */
MP_EXTERN int mp_process_terminate(mp_process_t *p);
/** Stops the child at once: SIGKILL, or TerminateProcess on Windows. */
MP_EXTERN int mp_process_kill(mp_process_t *p);
/** Releases the handle. A child still running is not stopped by it. */
MP_EXTERN void mp_process_free(mp_process_t *p);

#ifdef __cplusplus
}
#endif
#endif
