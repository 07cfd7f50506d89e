/* The raw OS floors: the least the operating system needs for a workload,
 * written by hand without mproc. raw_posix.c and raw_win32.c implement the
 * OS part; raw_frame.c the CPython framing and the child loops on top. */
#ifndef MPROC_BENCH_RAW_H
#define MPROC_BENCH_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAW_CHILD_FLAG "--bench-raw-child"
#define RAW_EOF 1 /* besides 0 and BENCH_FAIL */

/* A connected byte stream to a child: a socketpair end on POSIX, a named
 * pipe on Windows. */
typedef struct raw_stream raw_stream_t;
typedef struct raw_child raw_child_t;

/* What a raw child does with its stream (raw_role_run). */
typedef enum { RAW_ROLE_ECHO = 1, RAW_ROLE_BULK, RAW_ROLE_SQUARE } raw_role_t;
/* The largest message a RAW_ROLE_SQUARE child takes (bytes of int64s). */
#define RAW_SQUARE_MAX (8u << 20)

uint64_t raw_now_ns(void);
/* "posix" or "windows", for the report. */
const char *raw_os_name(void);

/* Starts a child running role over a new stream; *s is this side. */
int raw_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c);
/* The same over a TCP loopback connection (Nagle off on both ends).
 * BENCH_SKIP where the bench has no raw TCP (Windows). */
int raw_tcp_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c);
/* The same over an AF_UNIX stream socket bound to a path (the kind a
 * "unix:" listener uses). BENCH_SKIP on Windows. */
int raw_unix_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c);
/* A child connects over TCP loopback warm + count times, and this process
 * accepts each and answers it one byte (the connection's number), which
 * the child checks before it closes: *us is the time per connection
 * after warm of them. BENCH_SKIP where the bench has no raw TCP. */
int raw_tcp_connects(long count, long warm, double *us);
/* Waits for the child to end and frees it; *code is its exit status. */
int raw_child_join(raw_child_t *c, int *code);
void raw_stream_close(raw_stream_t *s);
/* Writes all of a, then all of b (may be NULL), in as few calls as the
 * OS allows. 0, RAW_EOF or BENCH_FAIL. */
int raw_write(raw_stream_t *s, const void *a, size_t na, const void *b, size_t nb);
/* Reads what is there, up to cap bytes: 0 with *got > 0, RAW_EOF or
 * BENCH_FAIL. */
int raw_read(raw_stream_t *s, void *buf, size_t cap, size_t *got);

/* fork() + _exit(0) in the child + waitpid(). BENCH_SKIP without fork. */
int raw_fork_join(int *code);
/* Starts this executable with RAW_CHILD_FLAG (it exits at once) and waits. */
int raw_spawn_join(int *code);
/* The same two with n children started before any is waited for; *code is
 * the first nonzero exit status, or 0. */
int raw_fork_join_n(int n, int *code);
int raw_spawn_join_n(int n, int *code);
/* The most children raw_*_join_n start at once. */
#define RAW_MAX_CHILDREN 16

/* count uncontended acquire + release pairs of a process-shared lock
 * (a robust process-shared pthread mutex in shared memory on POSIX, a
 * kernel mutex object on Windows); *ns per pair. *held counts the
 * critical sections entered, for the caller to check. */
int raw_mutex_loop(long count, double *ns, long *held);

/* Two processes hand a token back and forth count times through a pair of
 * process-shared semaphores (sem_t in shared memory on POSIX, semaphore
 * objects inherited by a started child on Windows); *us is the time of
 * one round trip. */
int raw_sem_pingpong(long count, double *us);
/* Untimed round trips before the clock starts, on both sides of W9. */
#define RAW_WARM_ROUNDS 100

/* main() of a process started with RAW_CHILD_FLAG: returns its exit code.
 * Without more arguments it exits at once (the spawn floor). */
int raw_child_main(int argc, char **argv);

/* ---- CPython framing over a raw stream (raw_frame.c) ---- */
#define RAW_RBUF 65536

typedef struct {
    raw_stream_t *s;
    /* No read-ahead: the header, then the payload straight into the
     * caller's buffer (the floor for big messages). Otherwise reads fill
     * a buffer, so a small message costs one read (the floor for small). */
    bool direct;
    size_t pos, len;
    uint8_t buf[RAW_RBUF];
} raw_reader_t;

int raw_frame_send(raw_stream_t *s, const void *p, size_t n);
/* One message into dst: 0, RAW_EOF (clean end before a header) or
 * BENCH_FAIL (a short buffer, a truncated or corrupt frame). */
int raw_frame_recv(raw_reader_t *r, void *dst, size_t cap, size_t *len);
/* The child's side of role over s, until EOF: returns its exit code. */
int raw_role_run(raw_role_t role, raw_stream_t *s);

#endif
