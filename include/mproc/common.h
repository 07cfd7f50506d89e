/* mproc: conventions shared by every part of the API — errors, timeouts,
 * buffers, handles and the start of a program. */
#ifndef MPROC_COMMON_H
#define MPROC_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* MP_EXTERN marks the public symbols: only they are exported from the
 * shared library. Consumers of the static library on Windows define
 * MPROC_STATIC (the CMake target does it for them). */
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

/* Every call that can fail returns 0 or one of these (negative) codes. */
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

enum {
#define MP__ERRNO_ENUM(name, val, text) MP_##name = (val),
    MP_ERRNO_MAP(MP__ERRNO_ENUM)
#undef MP__ERRNO_ENUM
};

MP_EXTERN const char *mp_strerror(int err);
MP_EXTERN const char *mp_err_name(int err);
/* Thread-local text describing the last failure in this thread: which OS
 * call failed and its errno / GetLastError. Never NULL. */
MP_EXTERN const char *mp_last_error_detail(void);

/* Timeouts are milliseconds; MP_FOREVER blocks, 0 never blocks. */
#define MP_FOREVER (-1L)

typedef struct {
    void *data;
    size_t len;
} mp_iov_t;

/* Releases memory the library allocated for the caller. */
MP_EXTERN void mp_free(void *p);
/* Frees each v[i].data, then v itself. */
MP_EXTERN void mp_iov_free(mp_iov_t *v, size_t n);

/* Process ids are the OS's, widened to one type on every platform. */
typedef int64_t mp_pid_t;

/* Every shareable object starts with a handle header; MP_HANDLE(x) views
 * it as one (for mp_wait, mp_args_add_handle, mp_handle_export). */
typedef struct mp_handle mp_handle_t;
#define MP_HANDLE(x) ((mp_handle_t *)(x))

typedef struct mp_args mp_args_t;
typedef struct mp_process mp_process_t;
typedef struct mp_conn mp_conn_t;
typedef struct mp_listener mp_listener_t;

/* Start methods: how a child process begins. */
typedef enum { MP_START_DEFAULT = 0, MP_START_FORK, MP_START_SPAWN } mp_start_method_t;

/* The first line of main(). In a spawned child it runs the target and
 * exits; in every other process it records argv and returns 0. */
MP_EXTERN int mp_init(int argc, char **argv);
/* MP_ENOSYS for fork on Windows. */
MP_EXTERN int mp_set_start_method(mp_start_method_t m);
/* The method MP_START_DEFAULT stands for: MPROC_START_METHOD=fork|spawn if
 * set, else fork on POSIX and spawn on Windows. */
MP_EXTERN mp_start_method_t mp_get_start_method(void);
/* The program spawned children run (default: this executable). */
MP_EXTERN int mp_set_executable(const char *path);
MP_EXTERN int mp_cpu_count(void);
MP_EXTERN mp_pid_t mp_getpid(void);
MP_EXTERN mp_pid_t mp_parent_pid(void);
/* "MainProcess" in the first process, the child's name in children. */
MP_EXTERN const char *mp_current_name(void);

#ifdef __cplusplus
}
#endif
#endif
