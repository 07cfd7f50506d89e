/* The platform seam: the only interface through which code in src/common
 * reaches the operating system. src/posix and src/win32 each implement all
 * of it; nothing above this line knows which one it runs on.
 *
 * Conventions: functions return 0 or a negative MP_E* code and leave a
 * detail (mp__fail / mp__fail_os) on failure; EINTR is retried inside with
 * the remaining timeout; every OS handle created here is close-on-exec /
 * non-inheritable. */
#ifndef MP_PLATFORM_H
#define MP_PLATFORM_H

#include "mproc/common.h"

/* An OS handle as a number: an fd on POSIX, a HANDLE on Windows. It is
 * what travels in a launch record's handle table. */
typedef intptr_t mp__osh_t;
#define MP__OSH_INVALID ((mp__osh_t)-1)

/* Closes an OS handle nobody claimed (e.g. an unused table entry). */
void mp__osh_close(mp__osh_t h);

/* ---- byte streams: the transport under a connection ---- */
typedef struct mp__stream mp__stream_t;

/* A connected pair. For duplex=false, a only reads and b only writes. */
int mp__stream_pair(mp__stream_t **a, mp__stream_t **b, bool duplex);
/* Reads what is available, up to cap bytes, waiting up to timeout_ms for
 * the first byte. 0 with *got > 0; MP_EOF when the peer is gone;
 * MP_ETIMEDOUT. */
int mp__stream_read(mp__stream_t *s, void *buf, size_t cap, size_t *got, long timeout_ms);
/* Writes all of the buffers, in order, as one contiguous run of bytes.
 * MP_EOF when the peer is gone; never raises SIGPIPE. */
int mp__stream_write(mp__stream_t *s, const mp_iov_t *iov, size_t n);
/* 1 when a read would not block (data or EOF), 0 after timeout_ms. */
int mp__stream_poll(mp__stream_t *s, long timeout_ms);
void mp__stream_close(mp__stream_t *s);
/* The OS handle under the stream (still owned by the stream). */
mp__osh_t mp__stream_osh(mp__stream_t *s);
/* Adopts an OS handle received from a parent as a stream. */
int mp__stream_adopt(mp__osh_t h, mp__stream_t **s);
/* After fork, in the child: drop the stream without touching the peer
 * (closes this process's copy of the handle only). */
void mp__stream_forget(mp__stream_t *s);

/* ---- child processes ---- */
typedef struct mp__child mp__child_t;

typedef struct {
    const char *exe;    /* the program to run: this executable by default */
    const void *record; /* the launch record, written to the bootstrap channel */
    size_t record_len;
    const mp__osh_t *pass; /* handles the child receives, in table order */
    size_t npass;
    bool daemon; /* dies with this process, even when it is killed */
} mp__spawn_req_t;

/* Starts exe afresh. The child's mp__bootstrap_read receives the record
 * and a table holding, in the child, the handles of rq->pass in order. */
int mp__child_spawn(const mp__spawn_req_t *rq, mp__child_t **c);
/* Whether mp__child_fork can work here. */
bool mp__os_has_fork(void);
/* fork(): *c is set in the parent; in the child *in_child is true, *c is
 * NULL, and the child has already been set up as mp__child_init does.
 * MP_ENOSYS where fork does not exist. */
int mp__child_fork(bool daemon, mp__child_t **c, bool *in_child);
mp_pid_t mp__child_pid(const mp__child_t *c);
/* Waits up to timeout_ms for the child to end and reaps it. 0 and *code
 * (an exit status, or -N for signal N; Windows reports terminate as -15
 * and kill as -9); MP_ETIMEDOUT while it runs. */
int mp__child_wait(mp__child_t *c, long timeout_ms, int *code);
/* kill=false: SIGTERM / TerminateProcess; kill=true: SIGKILL. */
int mp__child_signal(mp__child_t *c, bool kill);
/* Releases the handle; does not stop the child. */
void mp__child_free(mp__child_t *c);

/* In a process this library spawned: true when argv carries the bootstrap
 * marker. Then reads the launch record and the table of handles the parent
 * passed (both malloc'd, the caller frees). */
bool mp__bootstrap_is_child(int argc, char **argv);
int mp__bootstrap_read(int argc, char **argv, void **record, size_t *len, mp__osh_t **handles,
                       size_t *nhandles);
/* Applies what a new child must do before its target runs: daemon children
 * arrange to die with parent_pid (and exit at once if it is already gone). */
int mp__child_init(bool daemon, mp_pid_t parent_pid);

/* ---- waiting on several things ---- */
typedef struct {
    mp__stream_t *stream; /* readable or EOF */
    mp__child_t *child;   /* ended */
} mp__waitable_t;

/* Sets ready[i] for each item that is ready; returns how many (0 after
 * timeout_ms), or a negative code. */
int mp__wait_many(const mp__waitable_t *w, size_t n, long timeout_ms, bool *ready);

/* ---- identifying code across processes (spawn targets) ---- */
/* The module (executable or shared library) holding addr: its path, the
 * offset of addr in it and an identity of the loaded image, so a spawned
 * child can check it runs the same binary. *path is malloc'd. */
int mp__module_locate(const void *addr, char **path, uint64_t *offset, uint64_t *ident);
/* The address of offset in the loaded module path, after checking ident.
 * MP_ENOTFOUND when the module is not loaded; MP_EPROTO when it differs. */
int mp__module_resolve(const char *path, uint64_t offset, uint64_t ident, void **addr);

/* ---- the process itself ---- */
int mp__os_cpu_count(void);
mp_pid_t mp__os_getpid(void);
mp_pid_t mp__os_getppid(void);
/* This executable's full path, malloc'd. */
int mp__os_exe_path(char **path);
/* Ends the process at once, without atexit handlers or stdio flushing of
 * a forked copy of the parent's buffers. */
void mp__os_exit(int code);
/* Cryptographically strong random bytes. */
int mp__os_random(void *buf, size_t n);
/* A monotonic clock in nanoseconds. */
uint64_t mp__os_now_ns(void);
/* Records the last OS error (errno / GetLastError) for the call named and
 * returns the MP_E* code it maps to. */
int mp__fail_os(const char *call);

#endif
