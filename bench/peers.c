/* Peers: what a user would pick instead of mproc, on the same workloads —
 * CPython's multiprocessing (bench/peers/mp_peers.py, run as a
 * subprocess) and ZeroMQ's ipc transport (bench/peers/zmq_peers.c). Each
 * is reported with the ratio mproc/peer of the metric; a peer that cannot
 * run here is reported as skipped with the reason. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "raw.h"

#if defined(MPROC_BENCH_HAVE_ZMQ)
int zmq_peer_pair_pingpong(long count, double *us);
int zmq_peer_push_pull_64(long count, double *mitems);
int zmq_peer_push_pull_1m(long count, double *gbs);
#define ZMQ_FN(f) f
#else
#define ZMQ_FN(f) NULL
#endif

/* A peer runs fewer repetitions than mproc's workloads: CPython's are slow
 * and each starts an interpreter. */
#define PEER_REPS 3
#define PEER_QUICK_REPS 1

typedef struct {
    const char *name;     /* "cpython-pipe" */
    const char *workload; /* the mproc workload it is compared with */
    const char *title;
    const char *unit; /* must be the workload's for a ratio */
    bool zmq;         /* a ZeroMQ peer (fn), else a case of mp_peers.py */
    const char *py_case;
    bench_fn fn;
    long count, quick_count;
} bench_peer_t;

/* Counts are smaller than mproc's where the peer is slow: the metric is a
 * rate or a time per operation, so it does not depend on the count. */
static const bench_peer_t peers[] = {
    {"cpython-pipe", "w1", "CPython Pipe send_bytes/recv_bytes ping-pong, 64 B", "us/round trip",
     false, "pipe-pingpong", NULL, 5000, 1000},
    {"zmq-pair", "w1", "ZeroMQ ipc PAIR ping-pong, 64 B", "us/round trip", true, NULL,
     ZMQ_FN(zmq_peer_pair_pingpong), 20000, 2000},
    {"cpython-pipe-bulk", "w2", "CPython Pipe bulk, 1 MiB messages", "GB/s", false, "pipe-bulk",
     NULL, 300, 50},
    {"cpython-queue", "w3", "CPython Queue, 64 B items 1->1", "M items/s", false, "queue-64", NULL,
     100000, 20000},
    {"cpython-simplequeue", "w3", "CPython SimpleQueue, 64 B items 1->1", "M items/s", false,
     "simplequeue-64", NULL, 100000, 20000},
    {"zmq-push-pull", "w3", "ZeroMQ ipc PUSH/PULL, 64 B items", "M items/s", true, NULL,
     ZMQ_FN(zmq_peer_push_pull_64), 500000, 50000},
    {"cpython-queue-1m", "w4", "CPython Queue, 1 MiB items", "GB/s", false, "queue-1mib", NULL, 200,
     30},
    {"zmq-push-pull-1m", "w4", "ZeroMQ ipc PUSH/PULL, 1 MiB items", "GB/s", true, NULL,
     ZMQ_FN(zmq_peer_push_pull_1m), 500, 50},
    {"cpython-pool-map", "w5", "CPython Pool(2).map, default chunksize, 200,000 tasks", "M tasks/s",
     false, "pool-map", NULL, 200000, 200000},
    {"cpython-imap-unordered", "w5-imap", "CPython Pool(2).imap_unordered, chunksize 1",
     "M tasks/s", false, "pool-imap-unordered", NULL, 20000, 5000},
    {"cpython-apply-async", "w6", "CPython Pool(1).apply_async round trip", "us/round trip", false,
     "apply-async", NULL, 1000, 300},
    {"cpython-fork", "w7-fork", "CPython Process start + join, fork", "ms/process", false,
     "process-fork", NULL, 30, 10},
    {"cpython-spawn", "w7-spawn", "CPython Process start + join, spawn", "ms/process", false,
     "process-spawn", NULL, 5, 2},
    {"cpython-manager-dict", "w8", "CPython Manager().dict() set+get from a child", "ops/s", false,
     "manager-dict", NULL, 1000, 300},
};
#define NPEERS (sizeof peers / sizeof peers[0])

typedef struct {
    const bench_peer_t *p;
    const char *skipped; /* why, or NULL */
    int reps;
    double v[PEER_REPS], median, mproc, ratio;
    bool have_ratio;
} peer_result_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#if defined(_WIN32)
static const char *run_python(const bench_peer_t *p, long count, peer_result_t *r)
{
    (void)p;
    (void)count;
    (void)r;
    return "CPython peers run on POSIX builds only (no python3 beside a Windows build)";
}
#else
/* Runs mp_peers.py CASE COUNT REPS: one line "values: ..." or "skipped: why". */
static const char *run_python(const bench_peer_t *p, long count, peer_result_t *r)
{
    static char why[1200];
    const char *py = getenv("MPROC_BENCH_PYTHON");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s '%s/mp_peers.py' %s %ld %d 2>&1", py && *py ? py : "python3",
             MPROC_BENCH_PEERS_DIR, p->py_case, count, r->reps);
    FILE *f = popen(cmd, "r");
    if (!f) return "cannot run python3";
    char line[1024] = "";
    char last[1024] = "";
    bool got = false;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "values:", 7)) {
            char *s = line + 7, *end;
            int n = 0;
            for (double v = strtod(s, &end); end != s && n < r->reps; v = strtod(s, &end)) {
                r->v[n++] = v;
                s = end;
            }
            got = n == r->reps;
        } else if (!strncmp(line, "skipped:", 8)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(why, sizeof why, "%.200s", line + 9);
            pclose(f);
            return why;
        } else {
            snprintf(last, sizeof last, "%s", line);
        }
    }
    int st = pclose(f);
    if (st != 0 || !got) {
        last[strcspn(last, "\n")] = 0;
        snprintf(why, sizeof why, "python3 failed (status %d): %.1000s", st, last);
        return why;
    }
    return NULL;
}
#endif

static int run_peer(const bench_peer_t *p, bool quick, int reps, peer_result_t *r)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    int most = quick ? PEER_QUICK_REPS : PEER_REPS;
    r->reps = reps < most ? reps : most;
    long count = quick ? p->quick_count : p->count;
    if (p->zmq && !p->fn) {
        r->skipped = "libzmq not found when mproc-bench was built";
    } else if (p->zmq) {
        for (int i = 0; i < r->reps; i++) {
            int rc = p->fn(count, &r->v[i]);
            if (rc == BENCH_SKIP) {
                r->skipped = "not available on this platform";
                break;
            }
            if (rc) {
                fprintf(stderr, "mproc-bench: peer %s: FAILED: %s\n", p->name, bench_error());
                return BENCH_FAIL;
            }
        }
    } else {
        r->skipped = run_python(p, count, r);
        if (r->skipped && strstr(r->skipped, "python3 failed") && strstr(r->skipped, "mp_peers:")) {
            fprintf(stderr, "mproc-bench: peer %s: FAILED: %s\n", p->name, r->skipped);
            return BENCH_FAIL;
        }
    }
    if (r->skipped) return 0;
    r->median = median_of(r->v, r->reps);
    const char *unit = NULL;
    if (bench_result_median(p->workload, &unit, &r->mproc) && !strcmp(unit, p->unit)) {
        r->ratio = r->mproc / r->median;
        r->have_ratio = true;
    }
    return 0;
}

static void print_peer(const peer_result_t *r)
{
    const bench_peer_t *p = r->p;
    printf("%-22s %s  [%s; vs %s]\n", p->name, p->title, p->unit, p->workload);
    if (r->skipped) {
        printf("          skipped: %s\n\n", r->skipped);
        return;
    }
    printf("          peer      %10.4g\n", r->median);
    if (r->have_ratio)
        printf("          mproc     %10.4g\n          mproc/peer %9.3f\n\n", r->mproc, r->ratio);
    else
        printf("          mproc/peer: no %s result in this run\n\n", p->workload);
    fflush(stdout);
}

static void json_peer(const peer_result_t *r, bool first)
{
    const bench_peer_t *p = r->p;
    printf("%s\n  {\"name\": \"%s\", \"workload\": \"%s\", \"title\": \"%s\", \"unit\": \"%s\", ",
           first ? "" : ",", p->name, p->workload, p->title, p->unit);
    if (r->skipped) {
        printf("\"skipped\": \"%s\"}", r->skipped);
        return;
    }
    printf("\"median\": %.6g, \"values\": [", r->median);
    for (int i = 0; i < r->reps; i++)
        printf("%s%.6g", i ? ", " : "", r->v[i]);
    printf("]");
    if (r->have_ratio) printf(", \"mproc\": %.6g, \"ratio\": %.6g", r->mproc, r->ratio);
    printf("}");
}

size_t peers_count(bool (*selected)(const char *workload))
{
    size_t n = 0;
    for (size_t i = 0; i < NPEERS; i++)
        n += selected(peers[i].workload);
    return n;
}

int peers_run(bool (*selected)(const char *workload), bool quick, int reps, bool json)
{
    static peer_result_t res[NPEERS];
    size_t n = 0;
    if (!json) printf("peers: mproc/peer is the ratio of the medians of the metric\n\n");
    for (size_t i = 0; i < NPEERS; i++) {
        if (!selected(peers[i].workload)) continue;
        if (json) fprintf(stderr, "mproc-bench: peer %s\n", peers[i].name);
        if (run_peer(&peers[i], quick, reps, &res[n])) return BENCH_FAIL;
        if (!json) print_peer(&res[n]);
        n++;
    }
    if (json) {
        printf(",\n \"peers\": [");
        for (size_t i = 0; i < n; i++)
            json_peer(&res[i], i == 0);
        printf("\n ]");
    }
    return 0;
}
