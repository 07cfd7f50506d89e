/** @file
 * Pools of worker processes (multiprocessing.Pool). A task is a function
 * from bytes to bytes run in a worker; results come back as blocking
 * calls, async results with callbacks, or iterators. */
#ifndef MPROC_POOL_H
#define MPROC_POOL_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A pool of worker processes. */
typedef struct mp_pool mp_pool_t;
/** The pending outcome of one task (Python's AsyncResult). */
typedef struct mp_result mp_result_t;
/** The results of a lazy map, one at a time. */
typedef struct mp_iter mp_iter_t;
/** Where a task writes its result (owned by the worker running it). */
typedef struct mp_buf mp_buf_t;

/** A task: reads inlen bytes at in (aligned to 8 bytes; 16 for the start of
 * a map_fixed chunk), writes its result to out, returns 0 on success.
 * Any other return is a failure the caller sees as MP_ETASK. Under spawn a
 * task function travels as (module, offset) and is checked in the worker. */
typedef int (*mp_task_fn)(const void *in, size_t inlen, mp_buf_t *out);

/** The result is a copy of the n bytes at p (the last call wins). */
MP_EXTERN int mp_buf_set(mp_buf_t *out, const void *p, size_t n);
/** The result is n bytes the task fills in at the pointer returned; NULL
 * when memory is short (the task should then fail). */
MP_EXTERN void *mp_buf_alloc(mp_buf_t *out, size_t n);
/** Marks the task failed with a message (printf-style): the caller gets
 * MP_ETASK and the text. Returns MP_ETASK, for `return mp_task_fail(...)`. */
MP_EXTERN int mp_task_fail(mp_buf_t *out, const char *fmt, ...)
#if defined(__MINGW32__)
    __attribute__((format(gnu_printf, 2, 3))) /* the library's vsnprintf is C99's */
#elif defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/** A pool's options; zero-initialise and set what you need. */
typedef struct {
    int processes; /**< 0: mp_cpu_count() */
    /** Runs once in each worker before its first task; nonzero makes the
     * pool broken (every task fails with MP_EWORKER). */
    int (*initializer)(mp_args_t *initargs);
    /** Copied at create; handles in it are referenced and must stay alive
     * until the pool is freed (replacement workers receive them). In a
     * worker they live as long as the worker. */
    mp_args_t *initargs;
    size_t maxtasksperchild;        /**< 0: unlimited; a map chunk counts as one */
    long task_timeout_ms;           /**< 0: none; see docs/DECISIONS.md */
    mp_start_method_t start_method; /**< how workers start */
} mp_pool_opts_t;

/** Starts the workers. o may be NULL (all defaults). */
MP_EXTERN int mp_pool_create(mp_pool_t **p, const mp_pool_opts_t *o);
/** Runs f on one input and waits. *out is the caller's to mp_free. */
MP_EXTERN int mp_pool_apply(mp_pool_t *p, mp_task_fn f, const void *in, size_t inlen, void **out,
                            size_t *outlen);
/** Submits f on one input (copied) without waiting; the outcome arrives
 * in *r (mp_result_get, mp_result_on_done). */
MP_EXTERN int mp_pool_apply_async(mp_pool_t *p, mp_task_fn f, const void *in, size_t inlen,
                                  mp_result_t **r);

/** 0 once the result is ready (whatever its outcome); MP_ETIMEDOUT. */
MP_EXTERN int mp_result_wait(mp_result_t *r, long timeout_ms);
/** 1 ready, 0 pending, or a negative code. */
MP_EXTERN int mp_result_ready(mp_result_t *r);
/** Waits, then returns the task's outcome: 0 and its bytes in *out (the
 * caller's to mp_free; handed over once, a second get gives MP_ESTATE),
 * or MP_ETASK (text: mp_result_error), MP_EWORKER (its worker died),
 * MP_ETIMEDOUT (ran past task_timeout_ms, or timeout_ms passed while
 * waiting: then mp_result_ready is 0), MP_ECLOSED (pool terminated).
 * out and outlen may be NULL to learn only the outcome. */
MP_EXTERN int mp_result_get(mp_result_t *r, long timeout_ms, void **out, size_t *outlen);
/** Why the task failed; NULL while pending or after success. Valid until
 * the result is freed. */
MP_EXTERN const char *mp_result_error(mp_result_t *r);
/** Calls cb(r, ud) once the result is ready: at once in this thread when it
 * already is, else in the pool's thread (cb must not block nor join or free
 * the pool; it may free r). One callback per result (MP_ESTATE after). */
MP_EXTERN int mp_result_on_done(mp_result_t *r, void (*cb)(mp_result_t *, void *), void *ud);
/** Releases the result; a task still running goes on, its outcome dropped. */
MP_EXTERN void mp_result_free(mp_result_t *r);

/** f over in[0..n) in chunks (0: ceil(n / (4 * processes)), as CPython).
 * *out gets n results in order (free with mp_iov_free(*out, n)). On a
 * failure no more items start, *out is NULL, the error is the first
 * failing item's (its text in mp_last_error_detail), and
 * mp_pool_failed_index() names that item. */
MP_EXTERN int mp_pool_map(mp_pool_t *p, mp_task_fn f, const mp_iov_t *in, size_t n,
                          size_t chunksize, mp_iov_t **out);
/** The same over an array of n items of in_size bytes, each result exactly
 * out_size bytes written to out[i * out_size] (another size fails that
 * item with MP_EMSGSIZE). No allocation per item on either side. */
MP_EXTERN int mp_pool_map_fixed(mp_pool_t *p, mp_task_fn f, const void *in, size_t in_size,
                                size_t n, void *out, size_t out_size, size_t chunksize);
/** After mp_pool_map / mp_pool_map_fixed failed in this thread: the index
 * of the item that failed (SIZE_MAX when the call failed as a whole, e.g.
 * bad arguments or a closed pool). */
MP_EXTERN size_t mp_pool_failed_index(void);

/** Lazy maps: results come from mp_iter_next in input order (imap) or as
 * they complete (imap_unordered). Inputs are copied at the call. */
MP_EXTERN int mp_pool_imap(mp_pool_t *p, mp_task_fn f, const mp_iov_t *in, size_t n,
                           size_t chunksize, mp_iter_t **it);
/** As mp_pool_imap, with results in the order they complete. */
MP_EXTERN int mp_pool_imap_unordered(mp_pool_t *p, mp_task_fn f, const mp_iov_t *in, size_t n,
                                     size_t chunksize, mp_iter_t **it);
/** The next result and its input index: 0 with *out (the caller's to
 * mp_free); a failed item's code (MP_ETASK... with *index set and its text
 * in mp_last_error_detail) after which iteration goes on; MP_EOF at the
 * end; MP_ETIMEDOUT when nothing came within timeout_ms. */
MP_EXTERN int mp_iter_next(mp_iter_t *it, long timeout_ms, void **out, size_t *outlen,
                           size_t *index);
/** Releases the iterator; items not yet started are dropped. */
MP_EXTERN void mp_iter_free(mp_iter_t *it);

/** No more tasks (MP_ESTATE for later submissions); workers exit when the
 * queued work is done. */
MP_EXTERN int mp_pool_close(mp_pool_t *p);
/** Stops every worker now; results still pending complete with MP_ECLOSED. */
MP_EXTERN int mp_pool_terminate(mp_pool_t *p);
/** After close or terminate: waits until every worker has exited.
 * MP_ESTATE while the pool is running. */
MP_EXTERN int mp_pool_join(mp_pool_t *p, long timeout_ms);
/** Terminates the pool unless it was joined, and releases it. Results and
 * iterators stay valid until they are freed. */
MP_EXTERN void mp_pool_free(mp_pool_t *p);

#ifdef __cplusplus
}
#endif
#endif
