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
/* Whether a daemon child started from the calling thread stays tied to
 * the process rather than to this thread (Linux ties the parent-death
 * signal to the starting thread: true only on the main thread). */
bool mp__child_outlives_thread(void);
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
/* mp__os_cpu_count read once per process (common code, util.c): spinning
 * waiters ask on every wait whether another CPU could free what they wait
 * for, and the count is a system call. */
int mp__cpu_count_cached(void);
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
/* Offers the rest of this thread's time slice to another runnable thread
 * (sched_yield / SwitchToThread); returns at once when there is none. */
void mp__os_yield(void);
/* Records the last OS error (errno / GetLastError) for the call named and
 * returns the MP_E* code it maps to. */
int mp__fail_os(const char *call);

/* ==== Listener and Client: endpoints, message streams, HMAC ==== */

/* An address already split by src/common/listener.c. PRIVATE lets the
 * backend pick a fresh local endpoint only this user can reach. */
typedef enum { MP__ADDR_PRIVATE, MP__ADDR_TCP, MP__ADDR_UNIX, MP__ADDR_PIPE } mp__addr_kind_t;

typedef struct {
    mp__addr_kind_t kind;
    const char *host; /* TCP: a name or a numeric address, without brackets */
    uint16_t port;    /* TCP: 0 lets a listener pick a free port */
    const char *path; /* UNIX: a filesystem path; PIPE: the name after \\.\pipe\ */
} mp__addr_t;

typedef struct mp__server mp__server_t;

/* Starts listening. A TCP host that is not loopback needs allow_remote
 * (MP_EPERM otherwise); backlog <= 0 picks a default. Kinds this platform
 * lacks give MP_ENOSYS with a detail. */
int mp__server_open(const mp__addr_t *a, int backlog, bool allow_remote, mp__server_t **s);
/* The address clients connect to, in mproc's syntax ("tcp://127.0.0.1:4242"
 * with the real port, "unix:/path", "pipe:name"). Owned by s. */
const char *mp__server_address(const mp__server_t *s);
/* Waits up to timeout_ms for a peer. *message tells that the stream keeps
 * message boundaries (see mp__stream_msg_read) and carries no headers. */
int mp__server_accept(mp__server_t *s, long timeout_ms, mp__stream_t **st, bool *message);
/* Stops listening; remove_name also deletes the name it created (socket
 * file, private directory), which only the creating process should do. */
void mp__server_close(mp__server_t *s, bool remove_name);
/* Connects to a listening address, waiting at most timeout_ms. */
int mp__stream_connect(const mp__addr_t *a, long timeout_ms, mp__stream_t **st, bool *message);

/* Message streams (Windows named pipes in PIPE_TYPE_MESSAGE, the form
 * CPython's PipeConnection speaks): one msg_write is one message, and
 * reads never run past the end of a message. msg_read waits up to
 * timeout_ms for data of the current or else the next message, and reports
 * in *left the bytes of that message still unread after the *got it
 * returns; an empty message is *got == 0 with *left == 0. Backends without
 * message streams never create one and return MP_ENOSYS here. */
int mp__stream_msg_read(mp__stream_t *s, void *buf, size_t cap, size_t *got, uint64_t *left,
                        long timeout_ms);
int mp__stream_msg_write(mp__stream_t *s, const void *buf, size_t len);

/* The digests of CPython's handshake (_ALLOWED_DIGESTS). */
typedef enum {
    MP__DIGEST_MD5,
    MP__DIGEST_SHA256,
    MP__DIGEST_SHA384,
    MP__DIGEST_SHA3_256,
    MP__DIGEST_SHA3_384,
    MP__DIGEST_COUNT
} mp__digest_t;
#define MP__HMAC_MAX 64

/* HMAC-d(key, msg) into out (room for MP__HMAC_MAX bytes); *outlen gets
 * its size. MP_ENOSYS when this platform's crypto lacks d. */
int mp__hmac(mp__digest_t d, const void *key, size_t keylen, const void *msg, size_t len,
             uint8_t *out, size_t *outlen);

/* ==== shared segments, robust mutexes and wait queues (sync, shm, queue) ====
 *
 * A segment is memory shared between processes plus this process's share
 * of the OS objects that go with it. Its layout is [backend header][robust
 * mutexes][wait queues][user area]; callers see the user area only and
 * name mutexes and wait queues by index. A segment is either private
 * (spec.name NULL: reachable only through mp__seg_ref, i.e. inheritance,
 * a spawned child's handle table or an export blob) or named (mp_shm).
 * Every segment carries a random key that a ref repeats, so a blob that
 * names the wrong object is refused, and a tag and shape (size, nmutex,
 * nwq) that rebuilding checks against what the caller expects.
 *
 * Lifetime: mp__seg_close releases this process's share. A private segment
 * disappears when the last process holding it closes it or dies. A named
 * one keeps its name while a holder is alive (a lease of holder pids in the
 * header); the last holder to close it, or mp__seg_unlink, removes the
 * name, and a name whose holders all died is removed by the next create of
 * that name (best effort where the OS cannot enumerate names; see
 * docs/DECISIONS.md). A process holds one segment object per OS object:
 * opening/rebuilding one it already holds returns the same object with one
 * more reference. */
#include <stdatomic.h>

typedef struct mp__seg mp__seg_t;

#define MP__SEG_MAX_MUTEX 8u
#define MP__SEG_MAX_WQ 8u
#define MP__SEG_NAME_MAX 26u /* user names: [A-Za-z0-9_-]{1,26} (macOS: 31 with a prefix) */

typedef struct {
    size_t size;      /* bytes of the user area, > 0; zeroed at create */
    unsigned nmutex;  /* robust mutexes, at most MP__SEG_MAX_MUTEX */
    unsigned nwq;     /* wait queues, at most MP__SEG_MAX_WQ */
    uint32_t tag;     /* the caller's type tag, checked when rebuilt */
    const char *name; /* NULL: private; else a user name (MP_EEXIST if taken) */
    bool ext;         /* private only: has extension space (Windows makes a file for it) */
} mp__seg_spec_t;

int mp__seg_create(const mp__seg_spec_t *spec, mp__seg_t **out);
/* Opens a named segment. MP_ENOTFOUND when no live segment has the name;
 * MP_ETYPE when it has another tag. */
int mp__seg_open(const char *name, uint32_t tag, mp__seg_t **out);
/* The user area (aligned to 64 bytes; to a page for named segments). */
void *mp__seg_ptr(mp__seg_t *s);
size_t mp__seg_size(mp__seg_t *s);
/* Named segments: the name, and removing it now (MP_ENOTFOUND if it is
 * already gone). Holders keep their mappings. */
const char *mp__seg_name(mp__seg_t *s);
int mp__seg_unlink(mp__seg_t *s);
/* Releases this process's share (one reference). Also what a forked child
 * calls for a segment it was not given. */
void mp__seg_close(mp__seg_t *s);

/* A segment as bytes (and, for a spawned child, OS handles) that another
 * process rebuilds it from. by_name=false: for a child of this process;
 * the handles go in osh and must reach the child (a spawn handle table).
 * by_name=true: for any process of this user while this one still holds
 * the segment (an export blob); no handles. */
#define MP__SEG_REF_MAX 160u
#define MP__SEG_OSH_MAX (2u + MP__SEG_MAX_MUTEX + MP__SEG_MAX_WQ)
typedef struct {
    uint8_t bytes[MP__SEG_REF_MAX];
    size_t len;
    mp__osh_t osh[MP__SEG_OSH_MAX];
    size_t nosh;
} mp__seg_ref_t;
int mp__seg_ref(mp__seg_t *s, bool by_name, mp__seg_ref_t *ref);
/* Rebuilds a segment. expect gives tag, nmutex, nwq and (if nonzero) size;
 * a ref that is malformed, of another shape or whose object is gone fails
 * with MP_EPROTO / MP_ETYPE / MP_ENOTFOUND, never a crash. Handles in
 * ref->osh that it keeps are set to MP__OSH_INVALID; the caller closes the
 * rest. */
int mp__seg_from_ref(mp__seg_ref_t *ref, const mp__seg_spec_t *expect, mp__seg_t **out);

/* Robust mutex i of s, owned by the calling thread. 0; MP_EOWNERDEAD: it
 * is now held by the caller, its previous owner died holding it, and it
 * works normally from here on (the caller repairs the state it guards);
 * MP_ETIMEDOUT (timeout 0 = try). Not re-entrant; unlock only by the
 * owning thread. */
int mp__seg_lock(mp__seg_t *s, unsigned i, long timeout_ms);
int mp__seg_unlock(mp__seg_t *s, unsigned i);

/* Wait queue q of s: the cross-process futex.
 *
 * mp__seg_wait blocks while *word == expected: it returns 0 once it saw
 * *word != expected or was woken, and MP_ETIMEDOUT when timeout_ms passed
 * first. With timeout_ms 0 it only spins and looks, never touching q (so
 * then word may be any word of the user area). It may return 0
 * spuriously (a signal, a wake meant for an earlier value, a waker that
 * raced): callers re-check their condition in a loop and pass the
 * remaining timeout. Before sleeping it spins up to spin_ns re-reading
 * *word (never on a one-CPU machine); an idle sleeper uses no CPU. word
 * must lie in s's user area, and every waiter on q must wait on the same
 * word (a queue per condition, not per segment).
 *
 * mp__seg_wake wakes up to n sleepers of q (MP__WAKE_ALL: all). It must
 * follow the change to *word, made with a seq_cst atomic store or
 * read-modify-write, so a waiter either sees the new value or is woken.
 * It costs no system call when nobody sleeps on q.
 *
 * A waker killed between changing *word and calling wake leaves sleepers
 * asleep until their timeout: callers that must survive that wait in
 * slices (src/common/sync.c uses 1 s). Linux: a non-private futex on the
 * word. Portable POSIX: a FIFO per queue carrying wake tokens. Windows: a
 * named semaphore per queue. */
#define MP__WAKE_ALL UINT32_MAX
int mp__seg_wait(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t expected,
                 long timeout_ms, uint32_t spin_ns);
int mp__seg_wake(mp__seg_t *s, unsigned q, const _Atomic uint32_t *word, uint32_t n);

/* Extension space of a private segment (queues: items that do not fit
 * their ring). Bytes addressed by offset, 0 to MP__SEG_EXT_MAX, beyond the
 * user area of the same OS object: what one holder writes there stays for
 * as long as any holder is alive, after the writer ended, and goes with
 * the last holder however it ends. Nothing is allocated until committed;
 * release gives the pages back (the range then reads as zeroes). Offsets
 * and lengths are multiples of mp__seg_ext_unit(). Commits of one segment
 * must not run concurrently (the caller serializes them). Only segments
 * created with spec.ext have extension space (else MP_EINVAL; POSIX gives
 * every private one some), and expect.ext must match when rebuilt. */
#define MP__SEG_EXT_MAX ((uint64_t)1 << 60)
size_t mp__seg_ext_unit(void);
/* Allocates [off, off+len): MP_ENOMEM when the system has no room. */
int mp__seg_ext_commit(mp__seg_t *s, uint64_t off, uint64_t len);
/* Maps [off, off+len) of committed space into this process, its pages
 * present (no fault on first touch). */
int mp__seg_ext_map(mp__seg_t *s, uint64_t off, size_t len, void **p);
void mp__seg_ext_unmap(void *p, size_t len);
/* Gives the pages of [off, off+len) back to the OS; idempotent. */
void mp__seg_ext_release(mp__seg_t *s, uint64_t off, uint64_t len);

/* The calling thread's id: nonzero and unique among the live threads of
 * the whole system (a robust owner). */
uint64_t mp__os_thread_id(void);

/* ==== threads, mutexes and condition variables (in-process: the pool) ====
 * Plain in-process primitives for the pool's handler thread and the threads
 * that wait on it; C11 <threads.h> is missing on MinGW. Objects live on the
 * heap so this header names no OS type. */
typedef struct mp__thread mp__thread_t;
typedef struct mp__mutex mp__mutex_t;
typedef struct mp__cond mp__cond_t;

/* Runs fn(arg) in a new thread. */
int mp__thread_start(mp__thread_t **t, void (*fn)(void *), void *arg);
/* Waits for the thread to return, then frees t. */
void mp__thread_join(mp__thread_t *t);
/* True when the caller is thread t. */
bool mp__thread_is_current(const mp__thread_t *t);

int mp__mutex_create(mp__mutex_t **m);
void mp__mutex_lock(mp__mutex_t *m);
void mp__mutex_unlock(mp__mutex_t *m);
void mp__mutex_free(mp__mutex_t *m);

int mp__cond_create(mp__cond_t **c);
/* Atomically releases m and waits for a signal, at most timeout_ms
 * (MP_FOREVER: no limit); holds m again on return. 0 may be spurious
 * (callers re-check their predicate); MP_ETIMEDOUT once the time passed. */
int mp__cond_wait(mp__cond_t *c, mp__mutex_t *m, long timeout_ms);
void mp__cond_signal(mp__cond_t *c);
void mp__cond_broadcast(mp__cond_t *c);
void mp__cond_free(mp__cond_t *c);

#endif
