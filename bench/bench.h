/* mproc-bench: each workload runs for mproc and for its raw OS floor in
 * the same run, interleaved, and is reported as a ratio of the two. */
#ifndef MPROC_BENCH_H
#define MPROC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* MinGW's printf attribute means msvcrt's dialect, which lacks %zu; the
 * bench is built with __USE_MINGW_ANSI_STDIO, whose dialect is GNU's. */
#if defined(__MINGW_PRINTF_FORMAT)
#define BENCH_PRINTF_FORMAT __MINGW_PRINTF_FORMAT
#else
#define BENCH_PRINTF_FORMAT printf
#endif

/* Little-endian 64-bit stamps in messages and items, so both sides of a
 * workload agree whatever the host (compilers turn these into one load or
 * store). */
static inline void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* What a side of a workload returns besides 0. */
#define BENCH_FAIL (-1) /* a wrong answer or a failed call; see bench_error() */
#define BENCH_SKIP 1    /* not available on this platform */

/* One repetition of one side: does count operations and stores the metric
 * (in the workload's unit) in *value. Checks its own results. */
typedef int (*bench_fn)(long count, double *value);

typedef struct {
    const char *name;  /* the --only key: "w1", "w7-fork" ("w7" selects both) */
    const char *title; /* what is measured */
    const char *unit;  /* of the metric, e.g. "us/round trip" */
    bool higher_is_better;
    /* On the ratio mproc/raw of the metric: at most this for a time, at
     * least this for a throughput. 0: reported, no target. */
    double target;
    /* Operations per repetition. Equal counts mean the count is the
     * workload itself (W5's 200,000 tasks): calibration never cuts it. */
    long count, quick_count;
    bench_fn mproc, raw;
    const char *floor; /* one line: what the raw side is */
} bench_workload_t;

/* Records why a benchmark failed; returns BENCH_FAIL. */
int bench_fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(BENCH_PRINTF_FORMAT, 1, 2)))
#endif
    ;
/* bench_fail with mproc's error name and detail appended. */
int bench_fail_mp(int rc, const char *what);
const char *bench_error(void);
/* Records why a workload cannot run here (shown instead of the generic
 * "not available on this platform"); returns BENCH_SKIP. */
int bench_skip(const char *why);

/* The workloads (w_pipe.c, w_process.c). */
int w1_mproc(long count, double *value);
int w1_raw(long count, double *value);
int w2_mproc(long count, double *value);
int w2_mproc_alloc(long count, double *value);
int w2_raw(long count, double *value);
int w7_fork_mproc(long count, double *value);
int w7_fork_raw(long count, double *value);
int w7_spawn_mproc(long count, double *value);
int w7_spawn_raw(long count, double *value);
/* Queues (w_queue.c). */
int w3_mproc(long count, double *value);
int w3_raw(long count, double *value);
int w3_2x2_mproc(long count, double *value);
int w3_lat_mproc(long count, double *value);
int w3_lat_raw(long count, double *value);
int w3_idle_mproc(long count, double *value);
int w3_idle_raw(long count, double *value);
int w4_mproc(long count, double *value);
int w4_raw(long count, double *value);
/* w_manager.c */
int w8_mproc(long count, double *value);
int w8_raw(long count, double *value);
int w8_tcp_mproc(long count, double *value);
int w8_tcp_raw(long count, double *value);
int w8_4x_mproc(long count, double *value);
int w8_4x_one(long count, double *value);
/* w_pool.c */
int w5_mproc(long count, double *value);
int w5_imap_mproc(long count, double *value);
int w5_raw(long count, double *value);
int w6_mproc(long count, double *value);
int w6_raw(long count, double *value);
/* w_lock.c */
int w9_mproc(long count, double *value);
int w9_raw(long count, double *value);
int w11_mproc(long count, double *value);
int w11_raw(long count, double *value);
/* w_pool.c: pool create + close + join */
int w12_fork_mproc(long count, double *value);
int w12_fork_raw(long count, double *value);
int w12_spawn_mproc(long count, double *value);
int w12_spawn_raw(long count, double *value);
/* w_listener.c */
int w10_tcp_mproc(long count, double *value);
int w10_tcp_raw(long count, double *value);
int w10_unix_mproc(long count, double *value);
int w10_unix_raw(long count, double *value);
int w10_connect_mproc(long count, double *value);
int w10_connect_raw(long count, double *value);

/* The median of mproc's side of a workload that ran, and its unit. */
bool bench_result_median(const char *workload, const char **unit, double *median);
/* Runs the peers (peers.c) of the workloads selected; BENCH_FAIL after a
 * peer gave a wrong answer. */
int peers_run(bool (*selected)(const char *workload), bool quick, int reps, bool json);
/* How many peers compare with the workloads selected. */
size_t peers_count(bool (*selected)(const char *workload));

/* The sending child of W2 over either kind of channel (w_pipe.c): waits
 * for a go message (how many messages of what size), sends them, until the
 * channel ends. */
typedef struct {
    void *ch;
    /* One 16-byte go message: 0, 1 at a clean end, anything else an error. */
    int (*recv_go)(void *ch, uint8_t go[16]);
    int (*send)(void *ch, const void *p, size_t n); /* 0 or an error */
} bulk_chan_t;
/* Returns the child's exit code: 0 after a clean end. */
int bulk_serve(const bulk_chan_t *c);

#endif
