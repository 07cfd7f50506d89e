/** @file
 * Conventions shared by every part of the API: errors, timeouts, buffers,
 * handles, start methods and the start of a program. */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** @def MP_EXTERN
 * Marks the public symbols: only they are exported from the shared
 * library. Consumers of the static library on Windows define MPROC_STATIC
 * (the CMake target mproc::mproc_static does it for them). */
#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(MPROC_STATIC)
#define MP_EXTERN
#elif defined(MPROC_BUILDING)
#define MP_EXTERN __declspec(dllexport)
#else
#define MP_EXTERN __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define MP_EXTERN __attribute__((visibility("default")))
#else
#define MP_EXTERN
#endif

/** Every call that can fail returns 0 or one of these negative codes:
 * XX(name, value, text) for each; the enum below defines MP_<name>. */
#define MP_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(ETIMEDOUT, -3, "timed out")                                                                 \
    XX(EEMPTY, -4, "queue is empty")                                                               \
    XX(EFULL, -5, "queue is full")                                                                 \
    XX(EOF, -6, "end of file: the peer closed")                                                    \
    XX(ECLOSED, -7, "handle is closed")                                                            \
    XX(EMSGSIZE, -8, "message too large")                                                          \
    XX(EPROTO, -9, "protocol error: corrupt or hostile data")                                      \
    XX(EAUTH, -10, "authentication failed")                                                        \
    XX(EPERM, -11, "operation not permitted")                                                      \
    XX(EBUSY, -12, "busy: still running or not matched")                                           \
    XX(ESTATE, -13, "wrong state for this call")                                                   \
    XX(ENOTFOUND, -14, "not found")                                                                \
    XX(EEXIST, -15, "already exists")                                                              \
    XX(ETYPE, -16, "handle or argument of another type")                                           \
    XX(EWORKER, -17, "the worker process died")                                                    \
    XX(ETASK, -18, "the task reported failure")                                                    \
    XX(EOWNERDEAD, -19, "acquired; the previous owner died holding it")                            \
    XX(ENOSYS, -20, "not supported on this platform")                                              \
    XX(ESYS, -21, "operating system error")

/** The error codes, MP_EINVAL (-1) to MP_ESYS (-21); the text of each is
 * in MP_ERRNO_MAP and mp_strerror. */
enum {
#define MP__ERRNO_ENUM(name, val, text) MP_##name = (val),
    MP_ERRNO_MAP(MP__ERRNO_ENUM)
#undef MP__ERRNO_ENUM
};

/** A short English text for an MP_E* code ("timed out"); "success" for 0,
 * "unknown error" for a code that is not one. */
MP_EXTERN const char *mp_strerror(int err);
/** The code's symbolic name ("MP_ETIMEDOUT"; "OK" for 0, "MP_EUNKNOWN"
 * for a code that is not one), for logs and test output. */
MP_EXTERN const char *mp_err_name(int err);
/** Thread-local text describing the last failure in this thread: which OS
 * call failed and its errno / GetLastError, or what was wrong with an
 * argument or a message. Never NULL; the thread's next failure
 * overwrites it. */
MP_EXTERN const char *mp_last_error_detail(void);

/** Timeouts are milliseconds: MP_FOREVER blocks, 0 never blocks. */
#define MP_FOREVER (-1L)

/** A byte buffer: an item of a map's input or output, a part of a message
 * sent with mp_conn_sendv. */
typedef struct {
    void *data; /**< the bytes */
    size_t len; /**< how many */
} mp_iov_t;

/** Releases memory the library allocated for the caller (received
 * messages, results, export blobs). NULL is ignored. */
MP_EXTERN void mp_free(void *p);
/** Frees each v[i].data, then v itself: for arrays the library returned
 * (mp_pool_map's output, mp_dict_items). */
MP_EXTERN void mp_iov_free(mp_iov_t *v, size_t n);

/** Process ids are the OS's, widened to one type on every platform (a
 * DWORD on Windows, a pid_t on POSIX). */
typedef int64_t mp_pid_t;

/** Every shareable object starts with a handle header: connections,
 * processes, locks and the other synchronisation objects, shared memory,
 * values, queues and manager proxies. */
typedef struct mp_handle mp_handle_t;
/** Views any mproc object as its handle (for mp_wait, mp_args_add_handle,
 * mp_handle_export). */
#define MP_HANDLE(x) ((mp_handle_t *)(x))

/** A child's arguments: Python's args tuple (see process.h). */
typedef struct mp_args mp_args_t;
/** A child process (multiprocessing.Process). */
typedef struct mp_process mp_process_t;
/** One end of a connection: a pipe's, or one made by a listener or a
 * client. */
typedef struct mp_conn mp_conn_t;
/** A listening endpoint (multiprocessing.connection.Listener). */
typedef struct mp_listener mp_listener_t;

/** How a child process begins (docs/start-methods.md). */
typedef enum {
    MP_START_DEFAULT = 0, /**< what mp_get_start_method says */
    MP_START_FORK,        /**< a copy of the parent (POSIX only) */
    MP_START_SPAWN        /**< a fresh run of the program, handed its args */
} mp_start_method_t;

/** The first line of main(). In a spawned child it runs the target and
 * exits with its return value (never returning); in every other process
 * it records argv and returns 0. Code before it runs in every spawned
 * child too. */
MP_EXTERN int mp_init(int argc, char **argv);
/** Sets the method MP_START_DEFAULT stands for in this process, over
 * MPROC_START_METHOD. MP_ENOSYS for fork on Windows. */
MP_EXTERN int mp_set_start_method(mp_start_method_t m);
/** The method MP_START_DEFAULT stands for: the one mp_set_start_method
 * set, else MPROC_START_METHOD=fork|spawn if set, else fork on POSIX and
 * spawn on Windows. */
MP_EXTERN mp_start_method_t mp_get_start_method(void);
/** The program spawned children run (default: this executable). It must
 * call mp_init first; a target in the main program resolves only in the
 * same binary (the child exits with MP_EXIT_BOOTSTRAP otherwise). */
MP_EXTERN int mp_set_executable(const char *path);
/** The number of CPUs the OS reports (at least 1). */
MP_EXTERN int mp_cpu_count(void);
/** This process's id. */
MP_EXTERN mp_pid_t mp_getpid(void);
/** The id of the process that started this one (for a spawned child, the
 * mproc parent, as recorded at launch). */
MP_EXTERN mp_pid_t mp_parent_pid(void);
/** "MainProcess" in the first process, the child's name in children. */
MP_EXTERN const char *mp_current_name(void);

#ifdef __cplusplus
}
#endif
#endif
