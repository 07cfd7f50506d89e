/* mproc: processes and their arguments (multiprocessing.Process). */
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

/* A spawned child that cannot start (a target it cannot resolve, a corrupt
 * launch record) says why on stderr and exits with this code. */
#define MP_EXIT_BOOTSTRAP 120

/* Python's args tuple: bytes, strings, integers and shareable handles. */
MP_EXTERN int mp_args_create(mp_args_t **a);
MP_EXTERN int mp_args_add_bytes(mp_args_t *a, const void *p, size_t n);
MP_EXTERN int mp_args_add_str(mp_args_t *a, const char *s);
MP_EXTERN int mp_args_add_int(mp_args_t *a, int64_t v);
/* The handle is referenced, not copied: keep it alive until the process
 * (or pool) that takes these args has been created. */
MP_EXTERN int mp_args_add_handle(mp_args_t *a, mp_handle_t *h);
MP_EXTERN size_t mp_args_count(const mp_args_t *a);
/* Getters fail with MP_EINVAL past the end and MP_ETYPE for another type. */
MP_EXTERN int mp_args_bytes(mp_args_t *a, size_t i, const void **p, size_t *n);
MP_EXTERN int mp_args_str(mp_args_t *a, size_t i, const char **s);
MP_EXTERN int mp_args_int(mp_args_t *a, size_t i, int64_t *v);
MP_EXTERN int mp_args_handle(mp_args_t *a, size_t i, mp_handle_t **h);
MP_EXTERN int mp_args_conn(mp_args_t *a, size_t i, mp_conn_t **c);
MP_EXTERN int mp_args_lock(mp_args_t *a, size_t i, mp_lock_t **l);
MP_EXTERN int mp_args_rlock(mp_args_t *a, size_t i, mp_rlock_t **l);
MP_EXTERN int mp_args_semaphore(mp_args_t *a, size_t i, mp_semaphore_t **s);
MP_EXTERN int mp_args_event(mp_args_t *a, size_t i, mp_event_t **e);
MP_EXTERN int mp_args_condition(mp_args_t *a, size_t i, mp_condition_t **c);
MP_EXTERN int mp_args_barrier(mp_args_t *a, size_t i, mp_barrier_t **b);
MP_EXTERN int mp_args_shm(mp_args_t *a, size_t i, mp_shm_t **s);
MP_EXTERN int mp_args_value(mp_args_t *a, size_t i, mp_value_t **v);
MP_EXTERN int mp_args_array(mp_args_t *a, size_t i, mp_array_t **v);
MP_EXTERN int mp_args_queue(mp_args_t *a, size_t i, mp_queue_t **q);
MP_EXTERN int mp_args_dict(mp_args_t *a, size_t i, mp_dict_t **d);
MP_EXTERN int mp_args_list(mp_args_t *a, size_t i, mp_list_t **l);
MP_EXTERN void mp_args_free(mp_args_t *a);

typedef int (*mp_target_fn)(mp_args_t *args); /* returns the exit code */

typedef struct {
    mp_target_fn target;
    mp_args_t *args;  /* copied at create; may be NULL */
    const char *name; /* NULL: "Process-N" */
    bool daemon;      /* dies with its parent, always */
    mp_start_method_t start_method;
} mp_process_opts_t;

MP_EXTERN int mp_process_create(mp_process_t **p, const mp_process_opts_t *o);
MP_EXTERN int mp_process_start(mp_process_t *p);
/* MP_ETIMEDOUT when the child is still running after timeout_ms. */
MP_EXTERN int mp_process_join(mp_process_t *p, long timeout_ms);
MP_EXTERN int mp_process_is_alive(mp_process_t *p);
/* MP_EBUSY while running; -N when ended by signal N; terminate() reads as
 * -15 and kill() as -9 on every platform. */
MP_EXTERN int mp_process_exitcode(mp_process_t *p, int *code);
MP_EXTERN mp_pid_t mp_process_pid(mp_process_t *p);
MP_EXTERN const char *mp_process_name(mp_process_t *p);
MP_EXTERN bool mp_process_daemon(mp_process_t *p);
MP_EXTERN int mp_process_terminate(mp_process_t *p); /* SIGTERM / TerminateProcess */
MP_EXTERN int mp_process_kill(mp_process_t *p);      /* SIGKILL / TerminateProcess */
/* Releases the handle. A child still running is not stopped by it. */
MP_EXTERN void mp_process_free(mp_process_t *p);

#ifdef __cplusplus
}
#endif
#endif
