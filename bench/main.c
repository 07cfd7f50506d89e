/* mproc-bench: runs each workload for mproc and for its raw OS floor in the
 * same run, one repetition of each in turn, and reports both and the ratio
 * mproc/raw against the workload's target. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "bench.h"
#include "raw.h"

#ifndef MPROC_BENCH_BUILD_TYPE
#define MPROC_BENCH_BUILD_TYPE ""
#endif

#define DEFAULT_REPS 7
#define QUICK_REPS 3
#define MAX_REPS 101
/* Seconds one side of one repetition should take at most: on a slow
 * system (Wine, a small VM) the table's counts are cut down to fit, but
 * never below a tenth of them (nor MIN_COUNT). */
#define BUDGET_FULL 1.0
#define BUDGET_QUICK 0.15
#define MIN_COUNT 3

/* The workloads. A new one is a pair of functions and a line here. */
static const bench_workload_t workloads[] = {
    {"w1", "pipe ping-pong, 64 B messages", "us/round trip", false, 1.15, 30000, 3000, w1_mproc,
     w1_raw, "the same framing over a socketpair (POSIX) / named pipe (Windows)"},
    {"w2", "pipe bulk, 1 MiB messages, recv_bytes_into", "GB/s", true, 0.9, 1024, 96, w2_mproc,
     w2_raw, "the same framing over a socketpair / named pipe, read straight to the buffer"},
    {"w2-alloc", "pipe bulk, 1 MiB messages, recv_bytes + mp_free", "GB/s", true, 0, 1024, 96,
     w2_mproc_alloc, w2_raw, "as w2"},
    {"w3", "queue, 64 B items, 1 producer -> 1 consumer process", "M items/s", true, 0.5, 2000000,
     200000, w3_mproc, w3_raw, "an SPSC ring of 64 B slots in shared memory, spinning"},
    {"w3-2x2", "queue, 64 B items, 2 producers -> 2 consumers, aggregate", "M items/s", true, 0.5,
     2000000, 200000, w3_2x2_mproc, w3_mproc, "mproc's own 1 -> 1 figure (w3)"},
    {"w3-lat", "queue ping-pong, 64 B items, two queues, both waiting in get", "us/round trip",
     false, 0, 100000, 10000, w3_lat_mproc, w3_lat_raw,
     "two SPSC rings in shared memory, spinning"},
    {"w3-idle", "queue get blocked 1 s on an empty queue: wall time off the CPU", "%", true, 0.98,
     1, 1, w3_idle_mproc, w3_idle_raw, "the OS's sleep for 1 s"},
    {"w4", "queue, 1 MiB items, 1 producer -> 1 consumer process", "GB/s", true, 0.5, 2000, 200,
     w4_mproc, w4_raw, "an SPSC ring of 1 MiB slots in shared memory, copy in and out"},
    {"w5", "pool map_fixed of tiny tasks, auto chunksize, 2 workers", "M tasks/s", true, 0.5,
     200000, 200000, w5_mproc, w5_raw,
     "the items split by hand over 2 raw children, one message per part"},
    {"w5-imap", "pool imap_unordered of tiny tasks, chunksize 1", "M tasks/s", true, 0, 200000,
     20000, w5_imap_mproc, w5_raw, "as w5"},
    {"w6", "pool apply_async round trip, one tiny task, 1 worker", "us/round trip", false, 2.0,
     20000, 2000, w6_mproc, w6_raw, "the same request/response framed over a raw stream"},
    {"w7-fork", "process start + join, fork", "ms/process", false, 1.5, 600, 100, w7_fork_mproc,
     w7_fork_raw, "fork + _exit(0) + waitpid"},
    {"w7-spawn", "process start + join, spawn", "ms/process", false, 2.0, 300, 40, w7_spawn_mproc,
     w7_spawn_raw, "posix_spawn / CreateProcess of this executable, which exits at once"},
    {"w8", "manager dict set+get from a child, 64 B values", "ops/s", true, 0, 200000, 20000,
     w8_mproc, w8_raw, "one request/response round trip per operation (w1's echo)"},
    {"w8-tcp", "manager dict set/get over TCP loopback, 64 B values", "us/op", false, 1.5, 20000,
     2000, w8_tcp_mproc, w8_tcp_raw,
     "an 80 B request and its echo over TCP loopback, same framing"},
    {"w8-4x", "manager dict, 4 client processes, aggregate", "ops/s", true, 1.0, 1000000, 20000,
     w8_4x_mproc, w8_4x_one, "the same with one client process (mproc, not the OS)"},
    {"w9", "lock handoff, ping-pong through two semaphores", "us/round trip", false, 1.3, 30000,
     3000, w9_mproc, w9_raw, "two process-shared semaphores: sem_t (futex) / kernel semaphores"},
    {"w10-tcp", "Listener/Client ping-pong, 64 B, TCP loopback + authkey", "us/round trip", false,
     1.15, 30000, 3000, w10_tcp_mproc, w10_tcp_raw,
     "the same framing over a raw TCP loopback socket (POSIX)"},
    {"w10-unix", "Listener/Client ping-pong, 64 B, unix socket", "us/round trip", false, 1.15,
     30000, 3000, w10_unix_mproc, w10_unix_raw,
     "the same framing over a raw AF_UNIX socket bound to a path"},
    {"w10-connect", "Client connect + authkey handshake, TCP loopback", "us/connection", false, 0,
     1000, 100, w10_connect_mproc, w10_connect_raw,
     "a raw TCP connect, accepted and answered with one byte"},
    {"w11", "Lock acquire + release, uncontended", "ns/pair", false, 1.5, 5000000, 500000,
     w11_mproc, w11_raw, "a robust process-shared pthread mutex (POSIX) / kernel mutex (Windows)"},
    {"w12-fork", "pool create + close + join, 2 workers, fork", "ms/pool", false, 1.5, 300, 40,
     w12_fork_mproc, w12_fork_raw, "fork + _exit(0) of 2 children, then waitpid of both"},
    {"w12-spawn", "pool create + close + join, 2 workers, spawn", "ms/pool", false, 2.0, 150, 20,
     w12_spawn_mproc, w12_spawn_raw,
     "posix_spawn / CreateProcess of 2 children of this executable, then wait for both"},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static char error_text[1024];
static char skip_text[160];

int bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
    return BENCH_FAIL;
}

int bench_fail_mp(int rc, const char *what)
{
    return bench_fail("%s: %s: %s", what, mp_err_name(rc), mp_last_error_detail());
}

int bench_skip(const char *why)
{
    snprintf(skip_text, sizeof skip_text, "%s", why);
    return BENCH_SKIP;
}

const char *bench_error(void)
{
    return error_text;
}

typedef struct {
    double median, min, max;
} stats_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static stats_t stats_of(const double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    stats_t st = {n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2, s[0], s[n - 1]};
    return st;
}

typedef struct {
    const bench_workload_t *w;
    long count;
    int reps;
    bool skipped;
    char why[sizeof skip_text]; /* when skipped */
    double mproc[MAX_REPS], raw[MAX_REPS], ratio[MAX_REPS];
    stats_t m, r, q;
} result_t;

static bool meets(const result_t *res)
{
    const bench_workload_t *w = res->w;
    if (w->target <= 0) return true;
    return w->higher_is_better ? res->q.median >= w->target : res->q.median <= w->target;
}

static int failed(const bench_workload_t *w, const char *side, int rep)
{
    fprintf(stderr, "mproc-bench: %s (%s, %s %d): FAILED: %s\n", w->name, side,
            rep ? "repetition" : "calibration", rep, bench_error());
    return BENCH_FAIL;
}

/* The count that keeps one side of a repetition within budget seconds: a
 * short untimed run of the floor (which also warms up) tells. */
static int calibrate(const bench_workload_t *w, long max, double budget, long *count)
{
    long probe = max / 50 > 0 ? max / 50 : 1;
    double unused;
    uint64_t t0 = raw_now_ns();
    int rc = w->raw(probe, &unused);
    uint64_t t1 = raw_now_ns();
    if (rc) return rc == BENCH_SKIP ? rc : failed(w, "raw", 0);
    double fit = budget / ((double)(t1 - t0) / 1e9 / (double)probe);
    long least = max / 10 > MIN_COUNT ? max / 10 : MIN_COUNT;
    bool fixed = w->count == w->quick_count;
    *count = fit >= (double)max || fixed ? max : fit <= (double)least ? least : (long)fit;
    return 0;
}

static void mark_skipped(result_t *res)
{
    res->skipped = true;
    snprintf(res->why, sizeof res->why, "%s",
             skip_text[0] ? skip_text : "not available on this platform");
}

/* Runs w; 0, BENCH_SKIP, or BENCH_FAIL after saying what went wrong. */
static int run(const bench_workload_t *w, long max, double budget, int reps, result_t *res)
{
    memset(res, 0, sizeof *res);
    res->w = w;
    res->reps = reps;
    skip_text[0] = 0;
    int rc = calibrate(w, max, budget, &res->count);
    if (rc == BENCH_SKIP) mark_skipped(res);
    if (rc) return rc;
    for (int i = 0; i < reps; i++) {
        rc = w->mproc(res->count, &res->mproc[i]);
        if (rc == BENCH_SKIP) mark_skipped(res);
        if (rc) return rc == BENCH_SKIP ? rc : failed(w, "mproc", i + 1);
        rc = w->raw(res->count, &res->raw[i]);
        if (rc) return failed(w, "raw", i + 1);
        if (!(res->mproc[i] > 0) || !(res->raw[i] > 0)) {
            fprintf(stderr, "mproc-bench: %s: a measurement came out as zero\n", w->name);
            return BENCH_FAIL;
        }
        res->ratio[i] = res->mproc[i] / res->raw[i];
    }
    res->m = stats_of(res->mproc, reps);
    res->r = stats_of(res->raw, reps);
    res->q = stats_of(res->ratio, reps);
    return 0;
}

static void print_human(const result_t *res)
{
    const bench_workload_t *w = res->w;
    if (res->skipped) {
        printf("%-9s %s\n          skipped: %s\n\n", w->name, w->title, res->why);
        return;
    }
    printf("%-9s %s  [%s, %s is better; %ld per repetition]\n", w->name, w->title, w->unit,
           w->higher_is_better ? "higher" : "lower", res->count);
    printf("          raw floor: %s\n", w->floor);
    printf("          mproc     %10.3f  (%.3f - %.3f)\n", res->m.median, res->m.min, res->m.max);
    printf("          raw       %10.3f  (%.3f - %.3f)\n", res->r.median, res->r.min, res->r.max);
    printf("          mproc/raw %10.3f  (%.3f - %.3f)", res->q.median, res->q.min, res->q.max);
    if (w->target > 0)
        printf("  target %s %.2f  %s", w->higher_is_better ? ">=" : "<=", w->target,
               meets(res) ? "PASS" : "MISS");
    printf("\n\n");
    fflush(stdout);
}

static void json_values(const char *key, const double *v, int n, stats_t st)
{
    printf("\"%s\": {\"median\": %.6g, \"min\": %.6g, \"max\": %.6g, \"values\": [", key, st.median,
           st.min, st.max);
    for (int i = 0; i < n; i++)
        printf("%s%.6g", i ? ", " : "", v[i]);
    printf("]}");
}

static void print_json(const result_t *res, size_t n, bool quick, int reps)
{
    printf("{\"mproc_version\": \"%s\", \"os\": \"%s\", \"build_type\": \"%s\", "
           "\"default_start_method\": \"%s\", \"cpus\": %d, \"quick\": %s, \"reps\": %d,\n"
           " \"workloads\": [",
           mp_version(), raw_os_name(), MPROC_BENCH_BUILD_TYPE,
           mp_get_start_method() == MP_START_FORK ? "fork" : "spawn", mp_cpu_count(),
           quick ? "true" : "false", reps);
    for (size_t i = 0; i < n; i++) {
        const bench_workload_t *w = res[i].w;
        printf("%s\n  {\"name\": \"%s\", \"title\": \"%s\", \"unit\": \"%s\", "
               "\"better\": \"%s\", \"count\": %ld, \"floor\": \"%s\", ",
               i ? "," : "", w->name, w->title, w->unit, w->higher_is_better ? "higher" : "lower",
               res[i].count, w->floor);
        if (res[i].skipped) {
            printf("\"skipped\": true, \"skip_reason\": \"%s\"}", res[i].why);
            continue;
        }
        json_values("mproc", res[i].mproc, res[i].reps, res[i].m);
        printf(", ");
        json_values("raw", res[i].raw, res[i].reps, res[i].r);
        printf(", ");
        json_values("ratio", res[i].ratio, res[i].reps, res[i].q);
        if (w->target > 0)
            printf(", \"target\": %.6g, \"target_op\": \"%s\", \"pass\": %s", w->target,
                   w->higher_is_better ? ">=" : "<=", meets(&res[i]) ? "true" : "false");
        printf("}");
    }
    printf("\n ]");
}

static result_t results[NWORKLOADS];
static size_t nresults;

bool bench_result_median(const char *workload, const char **unit, double *median)
{
    for (size_t i = 0; i < nresults; i++)
        if (!strcmp(results[i].w->name, workload) && !results[i].skipped) {
            *unit = results[i].w->unit;
            *median = results[i].m.median;
            return true;
        }
    return false;
}

static bool selected_name(const char *name, const char *only)
{
    if (!only) return true;
    size_t n = strlen(only);
    return !strncmp(name, only, n) && (name[n] == 0 || name[n] == '-');
}

static bool selected(const bench_workload_t *w, const char *only)
{
    return selected_name(w->name, only);
}

static const char *only_name;

/* A peer's workload may be one this build lacks (w3 before w_queue.c). */
static bool peer_selected(const char *workload)
{
    return selected_name(workload, only_name);
}

static int usage(FILE *f, int code)
{
    fprintf(f,
            "usage: mproc-bench [--quick] [--json] [--only NAME] [--reps N] [--strict] "
            "[--no-peers] [--list]\n"
            "  --quick     %d repetitions of smaller counts (well under 30 s)\n"
            "  --json      machine-readable results on stdout\n"
            "  --only NAME one workload (\"w7\" selects w7-fork and w7-spawn)\n"
            "  --reps N    repetitions (default %d)\n"
            "  --strict    exit with 3 when a target is missed\n"
            "  --no-peers  leave out CPython and ZeroMQ (bench/peers)\n"
            "  --list      the workloads and their targets\n",
            QUICK_REPS, DEFAULT_REPS);
    return code;
}

static void list(void)
{
    for (size_t i = 0; i < NWORKLOADS; i++) {
        const bench_workload_t *w = &workloads[i];
        printf("%-9s %-50s %s", w->name, w->title, w->unit);
        if (w->target > 0)
            printf("  target mproc/raw %s %.2f", w->higher_is_better ? ">=" : "<=", w->target);
        printf("\n");
    }
}

static void header(bool quick, int reps)
{
    const char *bt = MPROC_BENCH_BUILD_TYPE;
    printf("mproc-bench %s on %s, build type \"%s\", default start method %s, %d CPUs, "
           "%d repetitions%s\n",
           mp_version(), raw_os_name(), bt,
           mp_get_start_method() == MP_START_FORK ? "fork" : "spawn", mp_cpu_count(), reps,
           quick ? " (quick)" : "");
    if (strcmp(bt, "Release") && strcmp(bt, "RelWithDebInfo") && strcmp(bt, "MinSizeRel"))
        printf("warning: an unoptimised build; configure with -DCMAKE_BUILD_TYPE=Release\n");
    printf("each line: median (min - max) over the repetitions; mproc/raw is the median of the\n"
           "per-repetition ratios of the metric, mproc and raw measured in turn\n\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], RAW_CHILD_FLAG)) return raw_child_main(argc, argv);

    bool quick = false, json = false, strict = false, with_peers = true;
    const char *only = NULL;
    int reps = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--no-peers")) {
            with_peers = false;
        } else if (!strcmp(argv[i], "--strict")) {
            strict = true;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > MAX_REPS) {
                fprintf(stderr, "mproc-bench: --reps takes 1 to %d\n", MAX_REPS);
                return 2;
            }
        } else if (!strcmp(argv[i], "--list")) {
            list();
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            return usage(stdout, 0);
        } else {
            fprintf(stderr, "mproc-bench: unknown argument %s\n", argv[i]);
            return usage(stderr, 2);
        }
    }
    if (!reps) reps = quick ? QUICK_REPS : DEFAULT_REPS;

    size_t n = 0;
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (selected(&workloads[i], only)) n++;
    only_name = only;
    if (!n && !(with_peers && peers_count(peer_selected))) {
        fprintf(stderr, "mproc-bench: no workload named %s; --list shows them\n", only);
        return 2;
    }
    if (!json) header(quick, reps);
    bool all_met = true;
    n = 0;
    for (size_t i = 0; i < NWORKLOADS; i++) {
        const bench_workload_t *w = &workloads[i];
        if (!selected(w, only)) continue;
        result_t *res = &results[n++];
        if (json) fprintf(stderr, "mproc-bench: %s\n", w->name);
        int rc = run(w, quick ? w->quick_count : w->count, quick ? BUDGET_QUICK : BUDGET_FULL, reps,
                     res);
        if (rc == BENCH_FAIL) return 1;
        if (!res->skipped) all_met &= meets(res);
        if (!json) print_human(res);
        nresults = n;
    }
    if (json) print_json(results, n, quick, reps);
    if (with_peers && peers_run(peer_selected, quick, reps, json)) return 1;
    if (json) printf("}\n");
    return strict && !all_met ? 3 : 0;
}
