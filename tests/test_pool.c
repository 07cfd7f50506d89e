/* Pool: every call, ordering, task failures, workers that die, timeouts,
 * terminate, maxtasksperchild, initializers and their handles. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* kill, nanosleep */
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#if defined(_WIN32)
#include <windows.h>
#else
#include <errno.h>
#include <pthread.h>
#include <sys/types.h>
#include <time.h>
#endif

static void sleep_ms(int ms)
{
#if defined(_WIN32)
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
#endif
}

/* The task kills its own process, as SIGKILL or the OOM killer would. */
static void kill_self(void)
{
#if defined(_WIN32)
    TerminateProcess(GetCurrentProcess(), 9);
#else
    raise(SIGKILL);
#endif
}

/* A segmentation fault, raised: a real invalid store would be caught by
 * UBSan in the sanitizer build before it faults. */
static void crash(void)
{
    raise(SIGSEGV);
}

/* Whether process pid has ended (it was a child this test reaped or a
 * process of another test's pool: either way it is no longer running). */
static bool pid_gone(mp_pid_t pid)
{
#if defined(_WIN32)
    HANDLE h = OpenProcess(SYNCHRONIZE, FALSE, (DWORD)pid);
    if (!h) return true;
    bool gone = WaitForSingleObject(h, 0) == WAIT_OBJECT_0;
    CloseHandle(h);
    return gone;
#else
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
#endif
}

/* ---- tasks ---- */

static int square(const void *in, size_t n, mp_buf_t *out)
{
    int32_t x;
    if (n != sizeof x) return mp_task_fail(out, "wanted 4 bytes, got %zu", n);
    memcpy(&x, in, sizeof x);
    x *= x;
    return mp_buf_set(out, &x, sizeof x);
}

enum {
    OP_SQUARE,
    OP_SLEEP,
    OP_KILL,
    OP_EXIT,
    OP_CRASH,
    OP_FAIL,
    OP_PID,
    OP_BIG,
    OP_SLEEP_PID,
    OP_SIGTERM
};

typedef struct {
    int32_t op, arg;
} ctl_t;

/* What the tests need a worker to do, chosen by the input. */
static int ctl(const void *in, size_t n, mp_buf_t *out)
{
    ctl_t c;
    if (n != sizeof c) return mp_task_fail(out, "bad control of %zu bytes", n);
    memcpy(&c, in, sizeof c);
    mp_pid_t pid = mp_getpid();
    switch (c.op) {
    case OP_SQUARE:
        c.arg *= c.arg;
        return mp_buf_set(out, &c.arg, sizeof c.arg);
    case OP_SLEEP:
        sleep_ms(c.arg);
        return mp_buf_set(out, &c.arg, sizeof c.arg);
    case OP_KILL:
        kill_self();
        return 1;
    case OP_EXIT:
        exit(c.arg);
    case OP_CRASH:
        crash();
        return 1;
    case OP_FAIL:
        return mp_task_fail(out, "task %d failed on purpose", (int)c.arg);
    case OP_PID:
        return mp_buf_set(out, &pid, sizeof pid);
    case OP_BIG: {
        uint8_t *p = mp_buf_alloc(out, (size_t)c.arg);
        if (!p) return mp_task_fail(out, "no memory for %d bytes", (int)c.arg);
        for (int32_t i = 0; i < c.arg; i++)
            p[i] = (uint8_t)(i * 7 + 3);
        return 0;
    }
    case OP_SLEEP_PID:
        sleep_ms(c.arg);
        return mp_buf_set(out, &pid, sizeof pid);
    case OP_SIGTERM:
        raise(SIGTERM);
        return 1;
    }
    return mp_task_fail(out, "unknown op %d", (int)c.op);
}

/* Returns its input reversed. */
static int reverse(const void *in, size_t n, mp_buf_t *out)
{
    uint8_t *p = mp_buf_alloc(out, n);
    if (!p) return 1;
    for (size_t i = 0; i < n; i++)
        p[i] = ((const uint8_t *)in)[n - 1 - i];
    return 0;
}

/* ---- helpers ---- */

static mp_pool_t *new_pool(int processes)
{
    mp_pool_opts_t o = {.processes = processes};
    mp_pool_t *p = NULL;
    ASSERT_OK(mp_pool_create(&p, &o));
    return p;
}

static void close_join_free(mp_pool_t *p)
{
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_join(p, JOIN_MS));
    mp_pool_free(p);
}

static int run_ctl(mp_pool_t *p, int op, int arg, void *res, size_t size)
{
    ctl_t c = {op, arg};
    void *out = NULL;
    size_t n = 0;
    int rc = mp_pool_apply(p, ctl, &c, sizeof c, &out, &n);
    if (!rc) {
        cr_assert_eq(n, size, "result of %zu bytes, wanted %zu", n, size);
        memcpy(res, out, size);
        mp_free(out);
    }
    return rc;
}

static mp_result_t *async_ctl(mp_pool_t *p, int op, int arg)
{
    ctl_t c = {op, arg};
    mp_result_t *r = NULL;
    ASSERT_OK(mp_pool_apply_async(p, ctl, &c, sizeof c, &r));
    return r;
}

static mp_pid_t worker_pid(mp_pool_t *p)
{
    mp_pid_t pid = 0;
    ASSERT_OK(run_ctl(p, OP_PID, 0, &pid, sizeof pid));
    return pid;
}

/* ---- the calls ---- */

Test(pool, apply_and_async_results, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    int32_t v = 0;
    ASSERT_OK(run_ctl(p, OP_SQUARE, 12, &v, sizeof v));
    cr_assert_eq(v, 144);

    mp_result_t *r = async_ctl(p, OP_SQUARE, 9);
    ASSERT_OK(mp_result_wait(r, JOIN_MS));
    cr_assert_eq(mp_result_ready(r), 1);
    cr_assert_null(mp_result_error(r));
    ASSERT_OK(mp_result_get(r, 0, NULL, NULL));
    void *out;
    size_t n;
    ASSERT_OK(mp_result_get(r, JOIN_MS, &out, &n));
    cr_assert_eq(n, 4);
    cr_assert_eq(*(int32_t *)out, 81);
    mp_free(out);
    ASSERT_RC(mp_result_get(r, 0, &out, &n), MP_ESTATE);
    mp_result_free(r);

    r = async_ctl(p, OP_SLEEP, 500);
    ASSERT_RC(mp_result_wait(r, 10), MP_ETIMEDOUT);
    ASSERT_RC(mp_result_get(r, 0, &out, &n), MP_ETIMEDOUT);
    cr_assert_eq(mp_result_ready(r), 0);
    cr_assert_null(mp_result_error(r));
    mp_result_free(r); /* still running: its outcome is dropped */
    close_join_free(p);
}

Test(pool, map_keeps_order_for_any_sizes, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(3);
    enum { N = 300 };
    mp_iov_t in[N];
    for (size_t i = 0; i < N; i++) {
        in[i].len = i * 37 % 1000;
        in[i].data = malloc(in[i].len + 1);
        for (size_t k = 0; k < in[i].len; k++)
            ((uint8_t *)in[i].data)[k] = (uint8_t)(i + k);
    }
    size_t chunks[] = {0, 1, 7, N + 5};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        mp_iov_t *out = NULL;
        ASSERT_OK(mp_pool_map(p, reverse, in, N, chunks[c], &out));
        for (size_t i = 0; i < N; i++) {
            cr_assert_eq(out[i].len, in[i].len, "item %zu chunk %zu", i, chunks[c]);
            cr_assert_not_null(out[i].data);
            for (size_t k = 0; k < in[i].len; k++)
                cr_assert_eq(((uint8_t *)out[i].data)[k],
                             ((uint8_t *)in[i].data)[in[i].len - 1 - k]);
        }
        mp_iov_free(out, N);
    }
    mp_iov_t *out = (mp_iov_t *)in;
    ASSERT_OK(mp_pool_map(p, reverse, in, 0, 0, &out));
    cr_assert_null(out);
    for (size_t i = 0; i < N; i++)
        free(in[i].data);
    close_join_free(p);
}

Test(pool, map_fixed_any_chunksize, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 10007 };
    int32_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    for (int i = 0; i < N; i++)
        in[i] = i - 5000;
    size_t chunks[] = {0, 1, 7, N + 5};
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        memset(out, 0xff, N * sizeof *out);
        ASSERT_OK(mp_pool_map_fixed(p, square, in, 4, N, out, 4, chunks[c]));
        for (int i = 0; i < N; i++)
            cr_assert_eq(out[i], (i - 5000) * (i - 5000), "item %d chunk %zu", i, chunks[c]);
    }
    ASSERT_OK(mp_pool_map_fixed(p, square, in, 4, 0, out, 4, 0));
    free(in);
    free(out);
    close_join_free(p);
}

/* Results bigger than inputs: x -> {x, x * x, -x}, 24 bytes from 4. */
static int widen(const void *in, size_t n, mp_buf_t *out)
{
    int32_t x;
    if (n != sizeof x) return mp_task_fail(out, "wanted 4 bytes, got %zu", n);
    memcpy(&x, in, sizeof x);
    int64_t r[3] = {x, (int64_t)x * x, -(int64_t)x};
    return mp_buf_set(out, r, sizeof r);
}

/* No result at all: map_fixed with out_size 0. */
static int check_only(const void *in, size_t n, mp_buf_t *out)
{
    (void)in;
    return n == 4 ? mp_buf_set(out, NULL, 0) : mp_task_fail(out, "wanted 4 bytes");
}

/* Many items (many chunks, batches cut mid-chunk), one item, out_size
 * larger than in_size, and out_size 0, under the automatic and explicit
 * chunksizes. */
Test(pool, map_fixed_sizes_and_counts, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 30011 };
    int32_t *in = malloc(N * sizeof *in);
    int64_t *out = malloc(N * 3 * sizeof *out);
    cr_assert(in && out);
    for (int i = 0; i < N; i++)
        in[i] = i - 15000;
    size_t counts[] = {1, 2, N};
    size_t chunks[] = {0, 1000, N};
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++)
        for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
            memset(out, 0xff, N * 3 * sizeof *out);
            ASSERT_OK(mp_pool_map_fixed(p, widen, in, 4, counts[k], out, 24, chunks[c]));
            for (size_t i = 0; i < counts[k]; i++) {
                int64_t x = in[i];
                cr_assert(out[3 * i] == x && out[3 * i + 1] == x * x && out[3 * i + 2] == -x,
                          "item %zu of %zu, chunksize %zu", i, counts[k], chunks[c]);
            }
            ASSERT_OK(mp_pool_map_fixed(p, check_only, in, 4, counts[k], NULL, 0, chunks[c]));
        }
    free(in);
    free(out);
    close_join_free(p);
}

/* n ints 0, 1, 2, ... and room for n results. */
static void iota_arrays(int n, int32_t **in, int32_t **out)
{
    *in = malloc((size_t)n * sizeof **in);
    *out = malloc((size_t)n * sizeof **out);
    cr_assert(*in && *out);
    for (int i = 0; i < n; i++)
        (*in)[i] = i;
}

/* The first n of iota_arrays' ints squared through the pool, checked. */
static void map_squares(mp_pool_t *p, const int32_t *in, int32_t *out, int n, size_t chunk)
{
    memset(out, 0, (size_t)n * sizeof *out);
    ASSERT_OK(mp_pool_map_fixed(p, square, in, 4, (size_t)n, out, 4, chunk));
    for (int i = 0; i < n; i++)
        cr_assert_eq(out[i], i * i, "item %d of %d chunksize %zu", i, n, chunk);
}

/* An item failing deep inside a big map_fixed: the call reports that
 * item, its text, and the pool goes on. */
static int fail_at(const void *in, size_t n, mp_buf_t *out)
{
    int32_t x;
    memcpy(&x, in, sizeof x);
    if (x == 31337) return mp_task_fail(out, "no %d", (int)x);
    return mp_buf_set(out, in, n);
}

Test(pool, map_fixed_failure_in_the_middle, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 50000 };
    int32_t *in, *out;
    iota_arrays(N, &in, &out);
    ASSERT_RC(mp_pool_map_fixed(p, fail_at, in, 4, N, out, 4, 0), MP_ETASK);
    cr_assert_eq(mp_pool_failed_index(), 31337);
    cr_assert(strstr(mp_last_error_detail(), "item 31337"), "%s", mp_last_error_detail());
    cr_assert(strstr(mp_last_error_detail(), "no 31337"), "%s", mp_last_error_detail());
    map_squares(p, in, out, 1000, 0);
    free(in);
    free(out);
    close_join_free(p);
}

/* A worker killed in the middle of a big map_fixed: MP_EWORKER, at or
 * before the item that killed it (what the worker held and had not
 * answered fails with it), and a replacement runs the next map. */
static int kill_at(const void *in, size_t n, mp_buf_t *out)
{
    int32_t x;
    memcpy(&x, in, sizeof x);
    if (x == 25000) kill_self();
    return mp_buf_set(out, in, n);
}

Test(pool, map_fixed_worker_killed_mid_map, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 50000 };
    int32_t *in, *out;
    iota_arrays(N, &in, &out);
    ASSERT_RC(mp_pool_map_fixed(p, kill_at, in, 4, N, out, 4, 0), MP_EWORKER);
    cr_assert_leq(mp_pool_failed_index(), 25000);
    map_squares(p, in, out, 1000, 0);
    free(in);
    free(out);
    close_join_free(p);
}

/* 64-byte items: each word of the input plus the item's first word. */
static int add_first(const void *in, size_t n, mp_buf_t *out)
{
    uint32_t w[16];
    if (n != sizeof w) return mp_task_fail(out, "wanted 64 bytes, got %zu", n);
    memcpy(w, in, sizeof w);
    for (int i = 1; i < 16; i++)
        w[i] += w[0];
    return mp_buf_set(out, w, sizeof w);
}

static void check_add_first(const uint32_t *in, const uint32_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 16; k++) {
            uint32_t want = in[16 * i + k] + (k ? in[16 * i] : 0);
            cr_assert_eq(out[16 * i + k], want, "item %zu word %d of %zu", i, k, n);
        }
}

/* The buffers messages land in are kept from call to call: messages of
 * every size in turn (tiny, larger than what is kept warm, larger than
 * what is kept at all, then tiny again) each arrive whole and right. */
Test(pool, buffers_kept_across_calls_of_any_size, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 40000 }; /* 2.5 MiB each way */
    uint32_t *in = malloc(N * 64), *out = malloc(N * 64);
    cr_assert(in && out);
    for (size_t i = 0; i < (size_t)N * 16; i++)
        in[i] = (uint32_t)(i * 2654435761u);
    /* items per unit: 1, automatic, 3000 (192 KiB), N (all in one) */
    size_t chunks[] = {1, 0, 3000, N, 0, 1};
    size_t counts[] = {50, N, N, N, 7, 50};
    for (int round = 0; round < 2; round++)
        for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
            memset(out, 0xee, (size_t)N * 64);
            ASSERT_OK(mp_pool_map_fixed(p, add_first, in, 64, counts[c], out, 64, chunks[c]));
            check_add_first(in, out, counts[c]);
        }
    free(in);
    free(out);
    close_join_free(p);
}

/* A worker killed in a big map once the pool's buffers are warm (a map
 * ran before): the map fails with MP_EWORKER, the replacement's buffers
 * are fresh, and maps of every size still come back right. */
Test(pool, worker_killed_mid_map_after_warm_up, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 50000 };
    int32_t *in, *out;
    iota_arrays(N, &in, &out);
    for (int k = 0; k < 3; k++) {
        map_squares(p, in, out, N / 2, 0);
        ASSERT_RC(mp_pool_map_fixed(p, kill_at, in, 4, N, out, 4, 0), MP_EWORKER);
        cr_assert_leq(mp_pool_failed_index(), 25000);
    }
    size_t chunks[] = {1, 0, N};
    for (size_t c = 0; c < 3; c++)
        map_squares(p, in, out, 20000, chunks[c]);
    free(in);
    free(out);
    close_join_free(p);
}

/* 12-byte items (a, b, c) -> a * b - c, 8 bytes. */
static int mul_sub(const void *in, size_t n, mp_buf_t *out)
{
    int32_t v[3];
    if (n != sizeof v) return mp_task_fail(out, "wanted 12 bytes, got %zu", n);
    memcpy(v, in, sizeof v);
    if (v[0] == -1) kill_self();
    int64_t r = (int64_t)v[0] * v[1] - v[2];
    return mp_buf_set(out, &r, sizeof r);
}

/* Chunks big enough to be written straight from the caller's array and
 * small ones copied into the batch, mixed in the same messages, with an
 * item size that leaves every offset unaligned unless padded: every
 * item arrives whole and in order, and the array is the caller's again
 * when the call returns (it is changed and mapped again at once). */
Test(pool, map_fixed_inputs_written_from_the_callers_array, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 60001 };
    int32_t *in = malloc((size_t)N * 12);
    int64_t *out = malloc((size_t)N * 8);
    cr_assert(in && out);
    size_t chunks[] = {0, 1, 100, 170, 171, 1000, 5000, N};
    for (int round = 0; round < 2; round++)
        for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
            for (int i = 0; i < N; i++) {
                in[3 * i] = i + round;
                in[3 * i + 1] = (int32_t)c - i % 7;
                in[3 * i + 2] = i * 3;
            }
            memset(out, 0xee, (size_t)N * 8);
            ASSERT_OK(mp_pool_map_fixed(p, mul_sub, in, 12, N, out, 8, chunks[c]));
            for (int i = 0; i < N; i++) {
                int64_t want = (int64_t)in[3 * i] * in[3 * i + 1] - in[3 * i + 2];
                cr_assert_eq(out[i], want, "item %d chunksize %zu", i, chunks[c]);
            }
        }
    /* A worker dying in a chunk written from the caller's array: the call
     * returns MP_EWORKER (no write left reading the array), and the pool
     * goes on. */
    for (int i = 0; i < N; i++)
        in[3 * i] = i == N / 3 ? -1 : i;
    ASSERT_RC(mp_pool_map_fixed(p, mul_sub, in, 12, N, out, 8, N / 2 + 1), MP_EWORKER);
    cr_assert_leq(mp_pool_failed_index(), (size_t)N / 3);
    in[3 * (N / 3)] = 5;
    ASSERT_OK(mp_pool_map_fixed(p, mul_sub, in, 12, N, out, 8, 0));
    cr_assert_eq(out[N / 3], (int64_t)5 * in[3 * (N / 3) + 1] - in[3 * (N / 3) + 2]);
    free(in);
    free(out);
    close_join_free(p);
}

/* A result of the wrong size fails that item of map_fixed. */
static int square_but_short(const void *in, size_t n, mp_buf_t *out)
{
    int32_t x;
    memcpy(&x, in, sizeof x);
    if (x == 5) return mp_buf_set(out, "abc", 3);
    return square(in, n, out);
}

Test(pool, map_fixed_wrong_result_size, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    int32_t in[40], out[40];
    for (int i = 0; i < 40; i++)
        in[i] = i;
    ASSERT_RC(mp_pool_map_fixed(p, square_but_short, in, 4, 40, out, 4, 3), MP_EMSGSIZE);
    cr_assert_eq(mp_pool_failed_index(), 5);
    cr_assert(strstr(mp_last_error_detail(), "item 5"), "%s", mp_last_error_detail());
    close_join_free(p);
}

Test(pool, imap_in_order, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(3);
    enum { N = 60 };
    ctl_t c[N];
    mp_iov_t in[N];
    for (int i = 0; i < N; i++) {
        /* Later items finish first: order must still hold. */
        c[i] = (ctl_t){OP_SLEEP, i < 10 ? 10 - i : 0};
        in[i] = (mp_iov_t){&c[i], sizeof c[i]};
    }
    mp_iter_t *it;
    ASSERT_OK(mp_pool_imap(p, ctl, in, N, 1, &it));
    for (size_t i = 0; i < N; i++) {
        void *out;
        size_t n, idx = 999;
        ASSERT_OK(mp_iter_next(it, JOIN_MS, &out, &n, &idx));
        cr_assert_eq(idx, i);
        cr_assert_eq(*(int32_t *)out, c[i].arg);
        mp_free(out);
    }
    ASSERT_RC(mp_iter_next(it, JOIN_MS, NULL, NULL, NULL), MP_EOF);
    mp_iter_free(it);
    close_join_free(p);
}

Test(pool, imap_unordered_yields_all, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 5000 };
    int32_t *v = malloc(N * sizeof *v);
    mp_iov_t *in = malloc(N * sizeof *in);
    bool *seen = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        v[i] = i;
        in[i] = (mp_iov_t){&v[i], sizeof v[i]};
    }
    mp_iter_t *it;
    ASSERT_OK(mp_pool_imap_unordered(p, square, in, N, 1, &it));
    /* The inputs were copied: changing them now changes nothing. */
    memset(v, 0, N * sizeof *v);
    for (int k = 0; k < N; k++) {
        void *out;
        size_t n, idx = SIZE_MAX;
        ASSERT_OK(mp_iter_next(it, JOIN_MS, &out, &n, &idx));
        cr_assert_lt(idx, N);
        cr_assert(!seen[idx], "index %zu twice", idx);
        seen[idx] = true;
        cr_assert_eq(*(int32_t *)out, (int32_t)(idx * idx));
        mp_free(out);
    }
    ASSERT_RC(mp_iter_next(it, 0, NULL, NULL, NULL), MP_EOF);
    mp_iter_free(it);
    ASSERT_OK(mp_pool_imap_unordered(p, square, in, 0, 1, &it));
    ASSERT_RC(mp_iter_next(it, 0, NULL, NULL, NULL), MP_EOF);
    mp_iter_free(it);
    free(v);
    free(in);
    free(seen);
    close_join_free(p);
}

Test(pool, iterator_freed_early, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 2000 };
    ctl_t c = {OP_SLEEP, 1};
    mp_iov_t *in = malloc(N * sizeof *in);
    for (int i = 0; i < N; i++)
        in[i] = (mp_iov_t){&c, sizeof c};
    mp_iter_t *it;
    ASSERT_OK(mp_pool_imap(p, ctl, in, N, 1, &it));
    for (int i = 0; i < 3; i++) {
        void *out;
        size_t n;
        ASSERT_OK(mp_iter_next(it, JOIN_MS, &out, &n, NULL));
        mp_free(out);
    }
    mp_iter_free(it);
    free(in);
    /* The items never started are dropped: close and join end soon. */
    close_join_free(p);
}

Test(pool, many_async_submissions, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 3000 };
    mp_result_t **r = malloc(N * sizeof *r);
    for (int i = 0; i < N; i++)
        r[i] = async_ctl(p, OP_SQUARE, i);
    for (int i = N; i-- > 0;) {
        void *out;
        size_t n;
        ASSERT_OK(mp_result_get(r[i], JOIN_MS, &out, &n));
        cr_assert_eq(*(int32_t *)out, i * i);
        mp_free(out);
        mp_result_free(r[i]);
    }
    free(r);
    close_join_free(p);
}

Test(pool, results_and_inputs_of_any_size, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    int32_t sizes[] = {0, 1, 65535, 65536, 3 << 20};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        ctl_t c = {OP_BIG, sizes[s]};
        void *out;
        size_t n;
        ASSERT_OK(mp_pool_apply(p, ctl, &c, sizeof c, &out, &n));
        cr_assert_eq(n, (size_t)sizes[s]);
        for (int32_t i = 0; i < sizes[s]; i++)
            cr_assert_eq(((uint8_t *)out)[i], (uint8_t)(i * 7 + 3));
        mp_free(out);
    }
    size_t big = (size_t)5 << 20;
    uint8_t *in = malloc(big);
    for (size_t i = 0; i < big; i++)
        in[i] = (uint8_t)(i * 13);
    mp_iov_t v[3] = {{in, big}, {in, 10}, {in, big - 1}};
    mp_iov_t *out;
    ASSERT_OK(mp_pool_map(p, reverse, v, 3, 1, &out));
    for (size_t k = 0; k < 3; k++) {
        cr_assert_eq(out[k].len, v[k].len);
        for (size_t i = 0; i < v[k].len; i += 4093)
            cr_assert_eq(((uint8_t *)out[k].data)[i], in[v[k].len - 1 - i]);
    }
    mp_iov_free(out, 3);
    free(in);
    close_join_free(p);
}

/* ---- failures ---- */

Test(pool, task_failure_carries_its_text, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    int32_t v;
    ASSERT_RC(run_ctl(p, OP_FAIL, 7, &v, sizeof v), MP_ETASK);
    cr_assert(strstr(mp_last_error_detail(), "task 7 failed on purpose"), "%s",
              mp_last_error_detail());

    mp_result_t *r = async_ctl(p, OP_FAIL, 8);
    ASSERT_RC(mp_result_get(r, JOIN_MS, NULL, NULL), MP_ETASK);
    cr_assert_str_eq(mp_result_error(r), "task 8 failed on purpose");
    mp_result_free(r);

    /* A task returning nonzero without a text still fails. */
    ctl_t c = {99, 0};
    ASSERT_RC(mp_pool_apply(p, reverse, NULL, 0, NULL, NULL), 0);
    ASSERT_RC(mp_pool_apply(p, ctl, &c, sizeof c - 1, NULL, NULL), MP_ETASK);

    enum { N = 30 };
    ctl_t cs[N];
    mp_iov_t in[N];
    for (int i = 0; i < N; i++) {
        cs[i] = (ctl_t){i == 13 || i == 20 ? OP_FAIL : OP_SQUARE, i};
        in[i] = (mp_iov_t){&cs[i], sizeof cs[i]};
    }
    mp_iov_t *out = (mp_iov_t *)in;
    ASSERT_RC(mp_pool_map(p, ctl, in, N, 1, &out), MP_ETASK);
    cr_assert_null(out);
    cr_assert_eq(mp_pool_failed_index(), 13);
    cr_assert(strstr(mp_last_error_detail(), "task 13 failed on purpose"), "%s",
              mp_last_error_detail());

    /* An iterator reports the failed item and goes on. */
    mp_iter_t *it;
    ASSERT_OK(mp_pool_imap(p, ctl, in, N, 2, &it));
    for (size_t i = 0; i < N; i++) {
        void *o;
        size_t n, idx = 999;
        int rc = mp_iter_next(it, JOIN_MS, &o, &n, &idx);
        cr_assert_eq(idx, i);
        if (i == 13 || i == 20) {
            cr_assert_eq(rc, MP_ETASK, "item %zu: %s", i, mp_err_name(rc));
            continue;
        }
        ASSERT_OK(rc);
        cr_assert_eq(*(int32_t *)o, (int32_t)(i * i));
        mp_free(o);
    }
    ASSERT_RC(mp_iter_next(it, 0, NULL, NULL, NULL), MP_EOF);
    mp_iter_free(it);
    close_join_free(p);
}

/* A worker that dies fails only what it held; a new one takes its place. */
static void check_death(int op, int arg, const char *why)
{
    mp_pool_t *p = new_pool(1);
    mp_pid_t before = worker_pid(p);
    int32_t v;
    ASSERT_RC(run_ctl(p, op, arg, &v, sizeof v), MP_EWORKER);
    if (why)
        cr_assert(strstr(mp_last_error_detail(), why), "%s: no \"%s\"", mp_last_error_detail(),
                  why);
    mp_pid_t after = worker_pid(p);
    cr_assert_neq(before, after, "the dead worker was replaced");
    ASSERT_OK(run_ctl(p, OP_SQUARE, 5, &v, sizeof v));
    cr_assert_eq(v, 25);
    close_join_free(p);
}

Test(pool, worker_killed_mid_task, .timeout = TEST_TIMEOUT)
{
#if defined(_WIN32)
    check_death(OP_KILL, 0, "exited with code 9");
#else
    check_death(OP_KILL, 0, "killed by signal 9");
#endif
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

Test(pool, task_calls_exit, .timeout = TEST_TIMEOUT)
{
#if defined(UNDER_ASAN)
    /* exit() runs LeakSanitizer's check, which in a worker forked from the
     * pool's thread cannot find that thread's stack: it reports the buffers
     * held there and changes the exit (or aborts, with abort_on_error). */
    check_death(OP_EXIT, 7, "died");
#else
    check_death(OP_EXIT, 7, "exited with code 7");
#endif
}

Test(pool, task_crashes, .timeout = TEST_TIMEOUT)
{
    check_death(OP_CRASH, 0, NULL);
}

/* Workers take signals as any process does (whatever thread started them). */
Test(pool, task_raises_sigterm, .timeout = TEST_TIMEOUT)
{
#if defined(_WIN32)
    check_death(OP_SIGTERM, 0, NULL);
#else
    check_death(OP_SIGTERM, 0, "killed by signal 15");
#endif
}

/* Tasks around the dead one complete; map names the item that died. */
Test(pool, map_reports_the_item_that_killed_its_worker, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    enum { N = 12 };
    ctl_t c[N];
    mp_iov_t in[N];
    for (int i = 0; i < N; i++) {
        /* Slow neighbours: their results leave the worker at once. */
        c[i] = (ctl_t){i == 7 ? OP_KILL : OP_SLEEP, 20};
        in[i] = (mp_iov_t){&c[i], sizeof c[i]};
    }
    mp_iov_t *out;
    ASSERT_RC(mp_pool_map(p, ctl, in, N, 1, &out), MP_EWORKER);
    cr_assert_eq(mp_pool_failed_index(), 7);

    mp_result_t *r[N];
    for (int i = 0; i < N; i++)
        r[i] = async_ctl(p, OP_SLEEP, 1);
    mp_result_t *dead = async_ctl(p, OP_KILL, 0);
    for (int i = 0; i < N; i++)
        r[N - 1 - i] = r[N - 1 - i];
    int ok = 0;
    for (int i = 0; i < N; i++) {
        int rc = mp_result_get(r[i], JOIN_MS, NULL, NULL);
        cr_assert(rc == 0 || rc == MP_EWORKER, "%s", mp_err_name(rc));
        ok += rc == 0;
        mp_result_free(r[i]);
    }
    ASSERT_RC(mp_result_get(dead, JOIN_MS, NULL, NULL), MP_EWORKER);
    mp_result_free(dead);
    cr_assert_gt(ok, 0);
    close_join_free(p);
}

Test(pool, task_timeout_replaces_the_worker, .timeout = TEST_TIMEOUT)
{
    /* Room for a quick task on a fresh worker under valgrind (300 ms was
     * not always enough there). */
    mp_pool_opts_t o = {.processes = 1, .task_timeout_ms = 1000};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    mp_pid_t before = worker_pid(p);
    mp_result_t *slow = async_ctl(p, OP_SLEEP, 60000);
    /* Queued behind the slow one on the same worker: never started, so
     * it runs on the replacement. */
    mp_result_t *next = async_ctl(p, OP_SQUARE, 6);
    ASSERT_RC(mp_result_get(slow, JOIN_MS, NULL, NULL), MP_ETIMEDOUT);
    cr_assert(strstr(mp_result_error(slow), "task_timeout_ms"), "%s", mp_result_error(slow));
    void *out;
    size_t n;
    ASSERT_OK(mp_result_get(next, JOIN_MS, &out, &n));
    cr_assert_eq(*(int32_t *)out, 36);
    mp_free(out);
    cr_assert_neq(worker_pid(p), before);
    mp_result_free(slow);
    mp_result_free(next);

    ctl_t c[6];
    mp_iov_t in[6];
    for (int i = 0; i < 6; i++) {
        c[i] = (ctl_t){OP_SLEEP, i == 4 ? 60000 : 1};
        in[i] = (mp_iov_t){&c[i], sizeof c[i]};
    }
    mp_iov_t *res;
    ASSERT_RC(mp_pool_map(p, ctl, in, 6, 2, &res), MP_ETIMEDOUT);
    cr_assert_eq(mp_pool_failed_index(), 4);
    close_join_free(p);
}

/* The initializer reports each worker's pid on the connection it gets. */
static int report_pid(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 2;
    mp_pid_t pid = mp_getpid();
    return mp_conn_send_bytes(c, &pid, sizeof pid) ? 3 : 0;
}

static mp_pid_t recv_pid(mp_conn_t *c)
{
    mp_pid_t pid = 0;
    size_t n = 0;
    ASSERT_OK(mp_conn_recv_bytes_into(c, &pid, sizeof pid, &n));
    cr_assert_eq(n, sizeof pid);
    return pid;
}

Test(pool, terminate_with_tasks_pending, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    mp_pool_opts_t o = {.processes = 2, .initializer = report_pid, .initargs = a};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    mp_args_free(a);
    mp_pid_t pids[2] = {recv_pid(r), recv_pid(r)};
    enum { N = 10 };
    mp_result_t *res[N];
    for (int i = 0; i < N; i++)
        res[i] = async_ctl(p, OP_SLEEP, 60000);
    ASSERT_OK(mp_pool_terminate(p));
    for (int i = 0; i < 2; i++)
        cr_assert(pid_gone(pids[i]), "worker %lld outlived terminate", (long long)pids[i]);
    for (int i = 0; i < N; i++) {
        ASSERT_RC(mp_result_get(res[i], 0, NULL, NULL), MP_ECLOSED);
        mp_result_free(res[i]);
    }
    ASSERT_OK(mp_pool_join(p, JOIN_MS));
    ASSERT_RC(mp_pool_apply_async(p, ctl, &o, 8, &res[0]), MP_ESTATE);
    mp_pool_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
}

Test(pool, free_without_close_terminates, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    mp_result_t *slow = async_ctl(p, OP_SLEEP, 60000);
    mp_pool_free(p);
    /* The result outlives its pool. */
    ASSERT_RC(mp_result_get(slow, JOIN_MS, NULL, NULL), MP_ECLOSED);
    cr_assert_str_eq(mp_result_error(slow), "the pool was terminated");
    mp_result_free(slow);
}

Test(pool, close_then_submit_and_join, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p = new_pool(2);
    ASSERT_RC(mp_pool_join(p, 0), MP_ESTATE);
    mp_result_t *r = async_ctl(p, OP_SLEEP, 200);
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_close(p));
    mp_result_t *r2;
    ctl_t c = {OP_SQUARE, 2};
    ASSERT_RC(mp_pool_apply_async(p, ctl, &c, sizeof c, &r2), MP_ESTATE);
    ASSERT_RC(mp_pool_apply(p, ctl, &c, sizeof c, NULL, NULL), MP_ESTATE);
    mp_iov_t in = {&c, sizeof c};
    mp_iov_t *out;
    ASSERT_RC(mp_pool_map(p, ctl, &in, 1, 0, &out), MP_ESTATE);
    cr_assert_eq(mp_pool_failed_index(), SIZE_MAX);
    mp_iter_t *it;
    ASSERT_RC(mp_pool_imap(p, ctl, &in, 1, 0, &it), MP_ESTATE);
    /* Work queued before close still completes. */
    ASSERT_OK(mp_pool_join(p, JOIN_MS));
    ASSERT_OK(mp_result_get(r, 0, NULL, NULL));
    mp_result_free(r);
    ASSERT_OK(mp_pool_terminate(p));
    mp_pool_free(p);
}

Test(pool, maxtasksperchild_replaces_workers, .timeout = TEST_TIMEOUT)
{
    mp_pool_opts_t o = {.processes = 1, .maxtasksperchild = 2};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    mp_pid_t pid[6];
    for (int i = 0; i < 6; i++)
        pid[i] = worker_pid(p);
    for (int i = 0; i < 6; i += 2) {
        cr_assert_eq(pid[i], pid[i + 1], "two tasks per worker");
        if (i) cr_assert_neq(pid[i], pid[i - 1], "then a new worker");
    }
    close_join_free(p);
}

Test(pool, initializer_runs_once_per_worker, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    mp_pool_opts_t o = {.processes = 2, .initializer = report_pid, .initargs = a};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    mp_args_free(a);
    enum { N = 40 };
    ctl_t c = {OP_SLEEP_PID, 2};
    mp_iov_t in[N];
    for (int i = 0; i < N; i++)
        in[i] = (mp_iov_t){&c, sizeof c};
    mp_iov_t *out;
    ASSERT_OK(mp_pool_map(p, ctl, in, N, 1, &out));
    close_join_free(p);
    mp_pid_t inits[2] = {recv_pid(r), recv_pid(r)};
    cr_assert_neq(inits[0], inits[1]);
    cr_assert_eq(mp_conn_poll(r, 0), 0, "no third initializer ran");
    for (int i = 0; i < N; i++) {
        mp_pid_t pid;
        memcpy(&pid, out[i].data, sizeof pid);
        cr_assert(pid == inits[0] || pid == inits[1]);
    }
    mp_iov_free(out, N);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* The initializer keeps a handle from its initargs for later tasks. */
static mp_conn_t *kept_conn;

static int keep_conn(mp_args_t *a)
{
    int64_t n;
    const char *s;
    const void *b;
    size_t blen;
    if (mp_args_count(a) != 4 || mp_args_int(a, 1, &n) || n != 42 || mp_args_str(a, 2, &s) ||
        strcmp(s, "tag") || mp_args_bytes(a, 3, &b, &blen) || blen != 3)
        return 2;
    return mp_args_conn(a, 0, &kept_conn) ? 3 : 0;
}

static int send_on_kept(const void *in, size_t n, mp_buf_t *out)
{
    (void)out;
    return kept_conn && !mp_conn_send_bytes(kept_conn, in, n) ? 0 : 1;
}

Test(pool, handle_in_initargs_used_by_tasks, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    ASSERT_OK(mp_args_add_int(a, 42));
    ASSERT_OK(mp_args_add_str(a, "tag"));
    ASSERT_OK(mp_args_add_bytes(a, "xyz", 3));
    mp_pool_opts_t o = {.processes = 1, .initializer = keep_conn, .initargs = a};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    mp_args_free(a);
    for (int i = 0; i < 10; i++) {
        char msg[16];
        int len = snprintf(msg, sizeof msg, "task %d", i);
        ASSERT_OK(mp_pool_apply(p, send_on_kept, msg, (size_t)len, NULL, NULL));
        expect_msg(r, msg);
    }
    close_join_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* Tasks that wait for each other: a consumer blocks until its producer,
 * submitted after it, runs. They need two workers, as in CPython; what
 * matters is that the producer never waits behind the consumer. */
static mp_conn_t *pc_in, *pc_out;

static int keep_pair(mp_args_t *a)
{
    return mp_args_conn(a, 0, &pc_in) || mp_args_conn(a, 1, &pc_out) ? 2 : 0;
}

static int consumer(const void *in, size_t n, mp_buf_t *out)
{
    (void)in;
    (void)n;
    void *msg;
    size_t len;
    if (mp_conn_recv_bytes(pc_in, &msg, &len)) return mp_task_fail(out, "recv failed");
    int rc = mp_buf_set(out, msg, len);
    mp_free(msg);
    return rc;
}

static int producer(const void *in, size_t n, mp_buf_t *out)
{
    (void)out;
    return mp_conn_send_bytes(pc_out, in, n) ? 1 : 0;
}

Test(pool, dependent_tasks_do_not_queue_behind_each_other, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(r)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    mp_pool_opts_t o = {.processes = 2, .initializer = keep_pair, .initargs = a};
    mp_pool_t *p;
    for (int round = 0; round < 3; round++) {
        ASSERT_OK(mp_pool_create(&p, &o));
        mp_result_t *c, *pr;
        ASSERT_OK(mp_pool_apply_async(p, consumer, NULL, 0, &c));
        ASSERT_OK(mp_pool_apply_async(p, producer, "item", 4, &pr));
        void *out;
        size_t n;
        ASSERT_OK(mp_result_get(c, JOIN_MS, &out, &n));
        cr_assert(n == 4 && !memcmp(out, "item", 4));
        mp_free(out);
        ASSERT_OK(mp_result_get(pr, JOIN_MS, NULL, NULL));
        mp_result_free(c);
        mp_result_free(pr);
        close_join_free(p);
    }
    mp_args_free(a);
    mp_conn_free(r);
    mp_conn_free(w);
}

static int failing_init(mp_args_t *a)
{
    (void)a;
    return 5;
}

Test(pool, failing_initializer_breaks_the_pool, .timeout = TEST_TIMEOUT)
{
    mp_pool_opts_t o = {.processes = 2, .initializer = failing_init};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    int32_t v;
    ASSERT_RC(run_ctl(p, OP_SQUARE, 3, &v, sizeof v), MP_EWORKER);
    cr_assert(strstr(mp_last_error_detail(), "initializer"), "%s", mp_last_error_detail());
    ASSERT_RC(run_ctl(p, OP_SQUARE, 3, &v, sizeof v), MP_EWORKER);
    close_join_free(p);
}

/* ---- callbacks ---- */

static _Thread_local bool in_test_thread;

typedef struct {
    mp_conn_t *report;
    bool called;
    bool in_caller;
} cb_state_t;

static void on_done_cb(mp_result_t *r, void *ud)
{
    cb_state_t *s = ud;
    s->called = true;
    s->in_caller = in_test_thread;
    int rc = mp_result_get(r, 0, NULL, NULL);
    if (s->report) mp_conn_send_bytes(s->report, &rc, sizeof rc);
}

static void free_in_cb(mp_result_t *r, void *ud)
{
    mp_result_free(r);
    mp_conn_send_bytes(ud, "freed", 5);
}

Test(pool, on_done_callbacks, .timeout = TEST_TIMEOUT)
{
    in_test_thread = true;
    mp_pool_t *p = new_pool(2);
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));

    cb_state_t pending = {w, false, false};
    mp_result_t *slow = async_ctl(p, OP_SLEEP, 100);
    ASSERT_OK(mp_result_on_done(slow, on_done_cb, &pending));
    ASSERT_RC(mp_result_on_done(slow, on_done_cb, &pending), MP_ESTATE);
    int rc = -1;
    size_t n;
    ASSERT_OK(mp_conn_recv_bytes_into(r, &rc, sizeof rc, &n));
    cr_assert_eq(rc, 0);
    cr_assert(pending.called && !pending.in_caller, "called in the pool's thread");

    cb_state_t done = {NULL, false, false};
    ASSERT_OK(mp_result_on_done(slow, on_done_cb, &done) == MP_ESTATE ? 0 : -1);
    mp_result_free(slow);
    mp_result_t *quick = async_ctl(p, OP_SQUARE, 3);
    ASSERT_OK(mp_result_wait(quick, JOIN_MS));
    ASSERT_OK(mp_result_on_done(quick, on_done_cb, &done));
    cr_assert(done.called && done.in_caller, "called at once in this thread");
    mp_result_free(quick);

    /* A callback may free its result (fire and forget). */
    mp_result_t *ff = async_ctl(p, OP_SLEEP, 50);
    ASSERT_OK(mp_result_on_done(ff, free_in_cb, w));
    expect_msg(r, "freed");
    close_join_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* ---- bad input ---- */

Test(pool, bad_arguments, .timeout = TEST_TIMEOUT)
{
    mp_pool_t *p;
    mp_pool_opts_t o = {.processes = -1};
    ASSERT_RC(mp_pool_create(NULL, NULL), MP_EINVAL);
    ASSERT_RC(mp_pool_create(&p, &o), MP_EINVAL);
    o = (mp_pool_opts_t){.task_timeout_ms = -5};
    ASSERT_RC(mp_pool_create(&p, &o), MP_EINVAL);
    ASSERT_OK(mp_pool_create(&p, NULL)); /* processes 0: mp_cpu_count() */
    mp_result_t *r = NULL;
    int32_t x = 1, y[2];
    ASSERT_RC(mp_pool_apply_async(p, NULL, &x, 4, &r), MP_EINVAL);
    ASSERT_RC(mp_pool_apply_async(p, square, NULL, 4, &r), MP_EINVAL);
    ASSERT_RC(mp_pool_apply_async(p, square, &x, 4, NULL), MP_EINVAL);
    ASSERT_RC(mp_pool_map(p, square, NULL, 3, 0, (mp_iov_t **)&r), MP_EINVAL);
    mp_iov_t bad = {NULL, 4};
    ASSERT_RC(mp_pool_map(p, square, &bad, 1, 0, (mp_iov_t **)&r), MP_EINVAL);
    ASSERT_RC(mp_pool_map_fixed(p, square, &x, 4, SIZE_MAX / 2, y, 4, 0), MP_EINVAL);
    ASSERT_RC(mp_pool_map_fixed(p, square, &x, 4, 1, NULL, 4, 0), MP_EINVAL);
    mp_iter_t *it;
    ASSERT_RC(mp_pool_imap(p, square, &bad, 1, 0, &it), MP_EINVAL);
    ASSERT_RC(mp_pool_apply_async((mp_pool_t *)&o, square, &x, 4, &r), MP_EINVAL);
    ASSERT_RC(mp_result_get(NULL, 0, NULL, NULL), MP_EINVAL);
    ASSERT_RC(mp_result_wait((mp_result_t *)&o, 0), MP_EINVAL);
    ASSERT_RC(mp_iter_next(NULL, 0, NULL, NULL, NULL), MP_EINVAL);
    ASSERT_RC(mp_pool_join(NULL, 0), MP_EINVAL);
    cr_assert_null(mp_result_error(NULL));
    mp_result_free(NULL);
    mp_iter_free(NULL);
    mp_pool_free(NULL);
    cr_assert_eq(mp_buf_set(NULL, &x, 4), MP_EINVAL);
    cr_assert_null(mp_buf_alloc(NULL, 4));
    cr_assert_eq(mp_task_fail(NULL, "x"), MP_ETASK);
    /* An iterator is not a result. */
    mp_iov_t one = {&x, 4};
    ASSERT_OK(mp_pool_imap(p, square, &one, 1, 0, &it));
    ASSERT_RC(mp_result_get((mp_result_t *)it, 0, NULL, NULL), MP_ETYPE);
    mp_iter_free(it);
    ASSERT_OK(mp_pool_terminate(p));
    ASSERT_OK(mp_pool_join(p, JOIN_MS));
    mp_pool_free(p);
}

/* ---- pools that get no task, and where a pool is made ---- */

/* A pool of two whose initializer reports each worker's pid on *r. */
static mp_args_t *reporting_args; /* static: see reporting_pool */

static mp_pool_t *reporting_pool(mp_conn_t **r, mp_conn_t **w)
{
    ASSERT_OK(mp_pipe(r, w, false));
    /* Held in a static while the workers fork, not on this thread's
     * stack: a worker forked by another thread has no copy of this
     * thread, and valgrind would count the block lost in it. */
    ASSERT_OK(mp_args_create(&reporting_args));
    ASSERT_OK(mp_args_add_handle(reporting_args, MP_HANDLE(*w)));
    mp_pool_opts_t o = {.processes = 2, .initializer = report_pid, .initargs = reporting_args};
    mp_pool_t *p;
    ASSERT_OK(mp_pool_create(&p, &o));
    mp_args_free(reporting_args);
    reporting_args = NULL;
    return p;
}

Test(pool, taskless_pool_closes_and_joins, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    mp_pool_t *p = reporting_pool(&r, &w);
    mp_pid_t pids[2] = {recv_pid(r), recv_pid(r)};
    ASSERT_OK(mp_pool_close(p));
    ASSERT_OK(mp_pool_join(p, JOIN_MS));
    for (int i = 0; i < 2; i++)
        cr_assert(pid_gone(pids[i]), "worker %lld outlived join", (long long)pids[i]);
    ASSERT_OK(mp_pool_join(p, 0));
    ctl_t c = {OP_SQUARE, 2};
    ASSERT_RC(mp_pool_apply(p, ctl, &c, sizeof c, NULL, NULL), MP_ESTATE);
    mp_pool_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
}

Test(pool, taskless_pool_terminates, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    mp_pool_t *p = reporting_pool(&r, &w);
    mp_pid_t pids[2] = {recv_pid(r), recv_pid(r)};
    ASSERT_OK(mp_pool_terminate(p));
    for (int i = 0; i < 2; i++)
        cr_assert(pid_gone(pids[i]), "worker %lld outlived terminate", (long long)pids[i]);
    ASSERT_OK(mp_pool_join(p, JOIN_MS));
    mp_pool_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* A thread running one of the functions below, on both platforms. */
typedef struct {
    void (*fn)(void);
} thread_box_t;

#if defined(_WIN32)
typedef HANDLE test_thread_t;

static DWORD WINAPI thread_main(LPVOID arg)
{
    ((thread_box_t *)arg)->fn();
    return 0;
}

static test_thread_t thread_run(thread_box_t *b)
{
    HANDLE t = CreateThread(NULL, 0, thread_main, b, 0, NULL);
    cr_assert_not_null(t);
    return t;
}

static void thread_wait(test_thread_t t)
{
    cr_assert_eq(WaitForSingleObject(t, INFINITE), WAIT_OBJECT_0);
    CloseHandle(t);
}
#else
typedef pthread_t test_thread_t;

static void *thread_main(void *arg)
{
    ((thread_box_t *)arg)->fn();
    return NULL;
}

static test_thread_t thread_run(thread_box_t *b)
{
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, thread_main, b), 0);
    return t;
}

static void thread_wait(test_thread_t t)
{
    cr_assert_eq(pthread_join(t, NULL), 0);
}
#endif

/* A pool made by a thread that then ends keeps its workers: nothing ties
 * their lives to that thread (Linux's parent-death signal would). */
static mp_conn_t *made_r, *made_w;
static mp_pool_t *made;

static void make_pool(void)
{
    made = reporting_pool(&made_r, &made_w);
}

Test(pool, made_by_a_thread_that_ends, .timeout = TEST_TIMEOUT)
{
    static thread_box_t b = {make_pool};
    thread_wait(thread_run(&b));
    mp_pid_t pids[2] = {recv_pid(made_r), recv_pid(made_r)};
    enum { N = 40 };
    ctl_t c = {OP_SLEEP_PID, 2};
    mp_iov_t in[N];
    for (int i = 0; i < N; i++)
        in[i] = (mp_iov_t){&c, sizeof c};
    mp_iov_t *out;
    ASSERT_OK(mp_pool_map(made, ctl, in, N, 1, &out));
    for (int i = 0; i < N; i++) {
        mp_pid_t pid;
        memcpy(&pid, out[i].data, sizeof pid);
        cr_assert(pid == pids[0] || pid == pids[1], "task %d ran in a replacement worker", i);
    }
    mp_iov_free(out, N);
    cr_assert_eq(mp_conn_poll(made_r, 0), 0, "no worker was replaced");
    close_join_free(made);
    mp_conn_free(made_r);
    mp_conn_free(made_w);
}

/* Reports the worker's pid on conn 0, then waits on conn 1 for a message
 * that never comes: a worker that never gets ready, nor quits. */
static int report_then_block(mp_args_t *a)
{
    mp_conn_t *wait_on;
    int rc = report_pid(a);
    if (rc || mp_args_conn(a, 1, &wait_on)) return 2;
    void *buf;
    size_t n;
    mp_conn_recv_bytes(wait_on, &buf, &n);
    return 3;
}

static mp_pool_t *stuck;
static int stuck_terminate_rc = -1;

static void terminate_stuck(void)
{
    stuck_terminate_rc = mp_pool_terminate(stuck);
}

/* A join without limit on workers that never quit, and terminate from
 * another thread (most often once the join waits): both return, and the
 * workers are gone. */
Test(pool, terminate_ends_a_join_on_stuck_workers, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w, *never_r, *never_w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    ASSERT_OK(mp_pipe(&never_r, &never_w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(never_r)));
    mp_pool_opts_t o = {.processes = 2, .initializer = report_then_block, .initargs = a};
    ASSERT_OK(mp_pool_create(&stuck, &o));
    mp_args_free(a);
    mp_pid_t pids[2] = {recv_pid(r), recv_pid(r)};
    ASSERT_OK(mp_pool_close(stuck));
    static thread_box_t b = {terminate_stuck};
    test_thread_t t = thread_run(&b);
    ASSERT_OK(mp_pool_join(stuck, MP_FOREVER));
    thread_wait(t);
    ASSERT_OK(stuck_terminate_rc);
    for (int i = 0; i < 2; i++)
        cr_assert(pid_gone(pids[i]), "worker %lld outlived terminate", (long long)pids[i]);
    mp_pool_free(stuck);
    mp_conn_free(r);
    mp_conn_free(w);
    mp_conn_free(never_r);
    mp_conn_free(never_w);
}

/* ---- the parent killed outright ---- */

/* Middle process: runs a pool whose workers hold conn 0, reports, then
 * blocks until it is killed. */
static int pool_then_block(mp_args_t *a)
{
    mp_conn_t *held, *report;
    if (mp_args_conn(a, 0, &held) || mp_args_conn(a, 1, &report)) return 10;
    mp_args_t *ia;
    if (mp_args_create(&ia) || mp_args_add_handle(ia, MP_HANDLE(held))) return 11;
    mp_pool_opts_t o = {.processes = 2, .initializer = report_pid, .initargs = ia};
    mp_pool_t *p;
    if (mp_pool_create(&p, &o)) return 12;
    mp_args_free(ia);
    ctl_t c = {OP_SQUARE, 2};
    if (mp_pool_apply(p, ctl, &c, sizeof c, NULL, NULL)) return 13;
    if (mp_conn_send_bytes(report, "up", 2)) return 14;
    void *buf;
    size_t n;
    mp_conn_recv_bytes(report, &buf, &n); /* never answered: killed here */
    return 15;
}

Test(pool, workers_die_with_a_killed_parent, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w, *me, *mid;
    ASSERT_OK(mp_pipe(&r, &w, false));
    ASSERT_OK(mp_pipe(&me, &mid, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(mid)));
    mp_process_t *proc = start_proc(pool_then_block, a);
    mp_args_free(a);
    mp_conn_free(w);
    mp_conn_free(mid);
    recv_pid(r);
    recv_pid(r);
    expect_msg(me, "up");
    ASSERT_OK(mp_process_kill(proc));
    cr_assert_eq(join_code(proc), -9);
    /* The workers held the only other copies of w, and a worker closes
     * it only by ending: EOF once both are gone, nothing if one lives. */
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(r, &buf, &n), MP_EOF);
    mp_process_free(proc);
    mp_conn_free(r);
    mp_conn_free(me);
}
