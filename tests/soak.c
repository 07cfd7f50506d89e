/* Soak driver (scripts/soak.sh; not part of CI): rounds of a mixed load
 * on the primitives across 8 processes, some killed at random points,
 * until a deadline. After every round it checks the invariants below and
 * that this process's descriptors and memory stay flat; it prints a
 * summary and exits nonzero on the first broken invariant.
 *
 * Invariants per round (K = workers killed in the round):
 *   - counter: the increments acknowledged <= the shared counter <=
 *     acknowledged + K (a worker killed between increment and ack);
 *   - queue: each producer's items arrive in order, none twice, none
 *     invented; every acknowledged item arrives, and all of a survivor's;
 *   - pool: a map of squares over 200 items gives every square;
 *   - the lock stays usable (a dead holder shows as MP_EOWNERDEAD once).
 * Across rounds: open descriptors equal after every round; resident
 * memory grows less than 8 MiB from round 10 to the end. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mproc.h>

#define WORKERS 8
#define STEPS 200
#define JOIN_MS 120000L

static int fail(const char *what, int rc)
{
    fprintf(stderr, "soak: %s: %s (%s)\n", what, mp_err_name(rc), mp_last_error_detail());
    return 1;
}

/* A worker: STEPS times, increment the counter under the lock, put an item
 * (id, step) on the queue, acknowledge the step on its pipe. */
static int worker(mp_args_t *a)
{
    int64_t id;
    mp_lock_t *l;
    mp_value_t *v;
    mp_queue_t *q;
    mp_conn_t *ack;
    if (mp_args_int(a, 0, &id) || mp_args_lock(a, 1, &l) || mp_args_value(a, 2, &v) ||
        mp_args_queue(a, 3, &q) || mp_args_conn(a, 4, &ack))
        return 10;
    for (uint32_t step = 0; step < STEPS; step++) {
        int rc = mp_lock_acquire(l, JOIN_MS);
        if (rc && rc != MP_EOWNERDEAD) return 11;
        ++*(uint64_t *)mp_value_ptr(v);
        if (mp_lock_release(l)) return 12;
        uint32_t item[2] = {(uint32_t)id, step};
        if (mp_queue_put(q, item, sizeof item, JOIN_MS)) return 13;
        if (mp_conn_send_bytes(ack, &step, sizeof step)) return 14;
    }
    return 0;
}

static int square(const void *in, size_t inlen, mp_buf_t *out)
{
    (void)inlen;
    int64_t x;
    memcpy(&x, in, sizeof x);
    x *= x;
    return mp_buf_set(out, &x, sizeof x);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR's own descriptor */
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    uint64_t rounds, started, killed, acks, items, pool_items, owner_dead;
} totals_t;

/* Drains the queue; checks the per-producer order. */
static int drain(mp_queue_t *q, int64_t *next, totals_t *t, long timeout_ms)
{
    for (;;) {
        uint32_t item[2];
        size_t len = 0;
        int rc = mp_queue_get_into(q, item, sizeof item, &len, timeout_ms);
        if (rc == MP_EEMPTY || rc == MP_ETIMEDOUT) return 0;
        if (rc) return fail("queue get", rc);
        if (len != sizeof item || item[0] >= WORKERS || item[1] != (uint32_t)next[item[0]]) {
            fprintf(stderr, "soak: queue item (%u, %u) out of order or invented\n", item[0],
                    item[1]);
            return 1;
        }
        next[item[0]]++;
        t->items++;
    }
}

static int one_round(mp_lock_t *l, mp_value_t *v, mp_queue_t *q, mp_pool_t *pool, totals_t *t)
{
    *(uint64_t *)mp_value_ptr(v) = 0;
    mp_process_t *p[WORKERS];
    mp_conn_t *ack[WORKERS];
    int64_t acks[WORKERS] = {0}, next[WORKERS] = {0};
    int kill_at[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        mp_conn_t *theirs;
        mp_args_t *a;
        int rc = mp_pipe(&ack[i], &theirs, false);
        if (!rc) rc = mp_args_create(&a);
        if (rc) return fail("setup", rc);
        mp_args_add_int(a, i);
        mp_args_add_handle(a, MP_HANDLE(l));
        mp_args_add_handle(a, MP_HANDLE(v));
        mp_args_add_handle(a, MP_HANDLE(q));
        mp_args_add_handle(a, MP_HANDLE(theirs));
        mp_process_opts_t o = {.target = worker, .args = a};
        rc = mp_process_create(&p[i], &o);
        if (!rc) rc = mp_process_start(p[i]);
        mp_args_free(a);
        mp_conn_free(theirs);
        if (rc) return fail("start", rc);
        t->started++;
        /* About one worker in three dies, after a random number of acks. */
        kill_at[i] = rand() % 3 == 0 ? rand() % STEPS : -1;
    }
    int killed = 0;
    for (int i = 0; i < WORKERS; i++) {
        for (;;) {
            if (kill_at[i] >= 0 && acks[i] >= kill_at[i]) {
                /* Acks already in the pipe are still read: they count. */
                mp_process_kill(p[i]);
                kill_at[i] = -2;
                killed++;
            }
            uint32_t step;
            size_t n;
            int rc = mp_conn_recv_bytes_into(ack[i], &step, sizeof step, &n);
            if (rc == MP_EOF) break;
            if (rc) return fail("ack", rc);
            acks[i]++;
            if (drain(q, next, t, 0)) return 1; /* keeps the queue from filling */
        }
    }
    for (int i = 0; i < WORKERS; i++) {
        int rc = mp_process_join(p[i], JOIN_MS), code = 0;
        if (!rc) rc = mp_process_exitcode(p[i], &code);
        if (rc) return fail("join", rc);
        if (code != 0 && code != -9) {
            fprintf(stderr, "soak: worker %d exited with %d\n", i, code);
            return 1;
        }
        mp_process_free(p[i]);
        mp_conn_free(ack[i]);
    }
    if (drain(q, next, t, 200)) return 1;
    int64_t sum = 0;
    for (int i = 0; i < WORKERS; i++) {
        sum += acks[i];
        if ((kill_at[i] == -1 && next[i] != STEPS) || next[i] < acks[i]) {
            fprintf(stderr, "soak: worker %d: %lld of %d items arrived\n", i, (long long)next[i],
                    STEPS);
            return 1;
        }
    }
    int rc = mp_lock_acquire(l, JOIN_MS);
    if (rc == MP_EOWNERDEAD) t->owner_dead++;
    if (rc && rc != MP_EOWNERDEAD) return fail("lock after the round", rc);
    uint64_t counter = *(uint64_t *)mp_value_ptr(v);
    mp_lock_release(l);
    if (counter < (uint64_t)sum || counter > (uint64_t)sum + (uint64_t)killed) {
        fprintf(stderr, "soak: counter %llu, acknowledged %lld, killed %d\n",
                (unsigned long long)counter, (long long)sum, killed);
        return 1;
    }
    int64_t in[200], out[200];
    for (int i = 0; i < 200; i++)
        in[i] = i;
    rc = mp_pool_map_fixed(pool, square, in, sizeof *in, 200, out, sizeof *out, 0);
    if (rc) return fail("pool map", rc);
    for (int i = 0; i < 200; i++)
        if (out[i] != (int64_t)i * i) {
            fprintf(stderr, "soak: pool gave %lld for %d squared\n", (long long)out[i], i);
            return 1;
        }
    t->pool_items += 200;
    t->acks += (uint64_t)sum;
    t->killed += (uint64_t)killed;
    t->rounds++;
    return 0;
}

int main(int argc, char **argv)
{
    int rc = mp_init(argc, argv);
    if (rc) return fail("mp_init", rc);
    double minutes = argc > 1 ? atof(argv[1]) : 1.0;
    unsigned seed = argc > 2 ? (unsigned)atoi(argv[2]) : (unsigned)time(NULL);
    srand(seed);
    mp_lock_t *l;
    mp_value_t *v;
    mp_queue_t *q;
    mp_pool_t *pool;
    mp_pool_opts_t po = {.processes = 2};
    if ((rc = mp_lock_create(&l)) || (rc = mp_value_create(&v, sizeof(uint64_t))) ||
        (rc = mp_queue_create(&q, NULL)) || (rc = mp_pool_create(&pool, &po)))
        return fail("create", rc);
    totals_t t = {0};
    time_t end = time(NULL) + (time_t)(minutes * 60);
    int fds0 = -1;
    long rss10 = 0, rss = 0;
    int bad = 0;
    printf("soak: %.1f min, seed %u, %d workers, %s\n", minutes, seed, WORKERS,
           mp_get_start_method() == MP_START_FORK ? "fork" : "spawn");
    while (!bad && time(NULL) < end) {
        bad = one_round(l, v, q, pool, &t);
        int fds = count_fds();
        rss = rss_kib();
        if (t.rounds == 1) fds0 = fds;
        if (t.rounds == 10) rss10 = rss;
        if (!bad && fds != fds0) {
            fprintf(stderr, "soak: %d descriptors open after round %llu, %d after round 1\n", fds,
                    (unsigned long long)t.rounds, fds0);
            bad = 1;
        }
    }
    if (!bad && rss10 && rss - rss10 > 8 * 1024) {
        fprintf(stderr, "soak: resident memory grew from %ld to %ld KiB\n", rss10, rss);
        bad = 1;
    }
    mp_pool_close(pool);
    mp_pool_join(pool, JOIN_MS);
    mp_pool_free(pool);
    mp_queue_free(q);
    mp_value_free(v);
    mp_lock_free(l);
    printf("soak: %s after %llu rounds: %llu processes started, %llu killed, %llu increments "
           "acknowledged, %llu queue items, %llu pool items, %llu owner-dead recoveries; "
           "descriptors %d, resident %ld KiB (round 10: %ld KiB)\n",
           bad ? "FAILED" : "passed", (unsigned long long)t.rounds, (unsigned long long)t.started,
           (unsigned long long)t.killed, (unsigned long long)t.acks, (unsigned long long)t.items,
           (unsigned long long)t.pool_items, (unsigned long long)t.owner_dead, count_fds(), rss,
           rss10);
    return bad;
}
