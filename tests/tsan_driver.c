/* The threaded parts of mproc under ThreadSanitizer (scripts/tsan.sh).
 * Criterion's runner cannot run under TSan (BoxFort's arena maps memory
 * TSan's shadow needs), so this plain program drives them instead:
 *   - a pool's handler threads: 4 threads submit tasks at once, results
 *     are collected through on_done callbacks in the pool's thread and by
 *     mp_result_get in the submitters;
 *   - a manager's server threads and a client shared by threads: 4 threads
 *     increment one dict key through their own proxies;
 *   - mp_wait and recv in 4 threads at once, each on its own pipe.
 * Exits 0 when every result is right; TSan's own exit code otherwise. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#define THREADS 4
#define TASKS 50
#define INCRS 100
#define JOIN_MS 120000L

static int fails;

static void check(int rc, const char *what)
{
    if (rc) {
        fprintf(stderr, "tsan_driver: %s: %s (%s)\n", what, mp_err_name(rc),
                mp_last_error_detail());
        fails++;
    }
}

static int twice(const void *in, size_t inlen, mp_buf_t *out)
{
    (void)inlen;
    int64_t x;
    memcpy(&x, in, sizeof x);
    x *= 2;
    return mp_buf_set(out, &x, sizeof x);
}

static mp_pool_t *pool;
static atomic_int callbacks;

static void on_done(mp_result_t *r, void *ud)
{
    (void)r;
    (void)ud;
    atomic_fetch_add(&callbacks, 1);
}

static void *submitter(void *arg)
{
    int64_t base = (int64_t)(intptr_t)arg * 1000;
    mp_result_t *r[TASKS];
    for (int i = 0; i < TASKS; i++) {
        int64_t x = base + i;
        check(mp_pool_apply_async(pool, twice, &x, sizeof x, &r[i]), "apply_async");
        check(mp_result_on_done(r[i], on_done, NULL), "on_done");
    }
    for (int i = 0; i < TASKS; i++) {
        void *out = NULL;
        size_t n = 0;
        check(mp_result_get(r[i], JOIN_MS, &out, &n), "result_get");
        int64_t y = 0;
        if (out && n == sizeof y) memcpy(&y, out, sizeof y);
        if (y != 2 * (base + i)) check(MP_EPROTO, "a wrong result");
        mp_free(out);
        mp_result_free(r[i]);
    }
    return NULL;
}

static mp_manager_t *manager;

static void *incrementer(void *arg)
{
    (void)arg;
    mp_dict_t *d;
    check(mp_manager_dict(manager, "counts", &d), "manager_dict");
    for (int i = 0; i < INCRS; i++) {
        int64_t now;
        check(mp_dict_incr(d, "k", 1, 1, &now), "dict_incr");
    }
    mp_dict_free(d);
    return NULL;
}

static mp_conn_t *ends[THREADS][2];

static void *waiter(void *arg)
{
    intptr_t i = (intptr_t)arg;
    mp_handle_t *h[] = {MP_HANDLE(ends[i][0])};
    size_t ready[1], n = 0;
    check(mp_wait(h, 1, JOIN_MS, ready, &n), "mp_wait");
    void *buf = NULL;
    size_t len = 0;
    check(mp_conn_recv_bytes(ends[i][0], &buf, &len), "recv");
    if (len != sizeof i || memcmp(buf, &i, sizeof i)) check(MP_EPROTO, "a wrong message");
    mp_free(buf);
    return NULL;
}

static void run_threads(void *(*fn)(void *))
{
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, fn, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
}

int main(int argc, char **argv)
{
    check(mp_init(argc, argv), "mp_init");
    mp_pool_opts_t po = {.processes = 2};
    check(mp_pool_create(&pool, &po), "pool_create");
    run_threads(submitter);
    if (atomic_load(&callbacks) != THREADS * TASKS) check(MP_EPROTO, "callbacks missing");
    check(mp_pool_close(pool), "pool_close");
    check(mp_pool_join(pool, JOIN_MS), "pool_join");
    mp_pool_free(pool);

    check(mp_manager_start(&manager, NULL), "manager_start");
    run_threads(incrementer);
    mp_dict_t *d;
    check(mp_manager_dict(manager, "counts", &d), "manager_dict");
    int64_t now = 0;
    check(mp_dict_incr(d, "k", 1, 0, &now), "dict_incr");
    if (now != THREADS * INCRS) check(MP_EPROTO, "lost increments");
    mp_dict_free(d);
    check(mp_manager_shutdown(manager), "manager_shutdown");
    mp_manager_free(manager);

    for (int i = 0; i < THREADS; i++)
        check(mp_pipe(&ends[i][0], &ends[i][1], true), "pipe");
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, waiter, (void *)i);
    for (intptr_t i = 0; i < THREADS; i++)
        check(mp_conn_send_bytes(ends[i][1], &i, sizeof i), "send");
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        mp_conn_free(ends[i][0]);
        mp_conn_free(ends[i][1]);
    }
    printf("tsan_driver: %s\n", fails ? "FAILED" : "passed");
    return fails != 0;
}
