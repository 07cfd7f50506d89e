/* W5 Pool map of many tiny tasks and W6 apply_async round trip, against
 * the same work done by hand: raw children squaring 64-bit integers sent
 * to them in CPython-framed messages over a socketpair / named pipe. */
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define POOL_WORKERS 2
#define WARM_TASKS 20

/* The task of both workloads: one int64 in, its square out. */
static int square(const void *in, size_t n, mp_buf_t *out)
{
    int64_t x;
    if (n != sizeof x) return mp_task_fail(out, "wanted 8 bytes, got %zu", n);
    memcpy(&x, in, sizeof x);
    x *= x;
    return mp_buf_set(out, &x, sizeof x);
}

static int64_t *inputs(long count)
{
    int64_t *v = malloc((size_t)count * sizeof *v);
    for (long i = 0; v && i < count; i++)
        v[i] = i;
    return v;
}

/* Every result must be its input's square: a map that skipped, repeated
 * or reordered an item fails here. */
static int check_squares(const int64_t *out, long count, const char *who)
{
    for (long i = 0; i < count; i++)
        if (out[i] != (int64_t)i * i)
            return bench_fail("%s: item %ld came back as %lld", who, i, (long long)out[i]);
    return 0;
}

static int pool_new(int workers, mp_pool_t **p)
{
    mp_pool_opts_t o = {.processes = workers};
    int rc = mp_pool_create(p, &o);
    return rc ? bench_fail_mp(rc, "mp_pool_create") : 0;
}

static double mtasks_per_s(long count, uint64_t t0, uint64_t t1)
{
    return (double)count / ((double)(t1 - t0) / 1e9) / 1e6;
}

/* W5: map_fixed with the automatic chunksize on an idle pool (started,
 * and its workers warmed, outside the clock). */
int w5_mproc(long count, double *value)
{
    mp_pool_t *p;
    int64_t *in = inputs(count), *out = malloc((size_t)count * sizeof *out);
    int rc = in && out ? pool_new(POOL_WORKERS, &p) : bench_fail("w5: out of memory");
    if (rc) goto done;
    rc = mp_pool_map_fixed(p, square, in, 8, WARM_TASKS, out, 8, 1);
    if (rc) {
        rc = bench_fail_mp(rc, "mp_pool_map_fixed (warm-up)");
    } else {
        memset(out, 0, (size_t)count * sizeof *out);
        uint64_t t0 = raw_now_ns();
        rc = mp_pool_map_fixed(p, square, in, 8, (size_t)count, out, 8, 0);
        uint64_t t1 = raw_now_ns();
        *value = mtasks_per_s(count, t0, t1);
        rc = rc ? bench_fail_mp(rc, "mp_pool_map_fixed") : check_squares(out, count, "mproc");
    }
    mp_pool_free(p);
done:
    free(in);
    free(out);
    return rc;
}

/* W5 with chunksize 1 through imap_unordered: one task per message. */
int w5_imap_mproc(long count, double *value)
{
    mp_pool_t *p;
    int64_t *in = inputs(count), *out = calloc((size_t)count, sizeof *out);
    mp_iov_t *iov = malloc((size_t)count * sizeof *iov);
    unsigned char *seen = calloc((size_t)count, 1);
    int rc =
        in && out && iov && seen ? pool_new(POOL_WORKERS, &p) : bench_fail("w5: out of memory");
    if (rc) goto done;
    for (long i = 0; i < count; i++)
        iov[i] = (mp_iov_t){&in[i], sizeof in[i]};
    mp_iter_t *it = NULL;
    uint64_t t0 = raw_now_ns();
    rc = mp_pool_imap_unordered(p, square, iov, (size_t)count, 1, &it);
    if (rc) rc = bench_fail_mp(rc, "mp_pool_imap_unordered");
    long got = 0;
    while (!rc) {
        void *r = NULL;
        size_t len = 0, index = 0;
        rc = mp_iter_next(it, MP_FOREVER, &r, &len, &index);
        if (rc == MP_EOF) {
            rc = 0;
            break;
        }
        if (rc) {
            rc = bench_fail_mp(rc, "mp_iter_next");
        } else if (len != 8 || index >= (size_t)count || seen[index]) {
            rc = bench_fail("mproc: a result of %zu bytes for item %zu (a repeat: %d)", len, index,
                            index < (size_t)count && seen[index]);
        } else {
            seen[index] = 1;
            memcpy(&out[index], r, 8);
            got++;
        }
        mp_free(r);
    }
    uint64_t t1 = raw_now_ns();
    *value = mtasks_per_s(count, t0, t1);
    mp_iter_free(it);
    mp_pool_free(p);
    if (!rc && got != count) rc = bench_fail("mproc: %ld results for %ld tasks", got, count);
    if (!rc) rc = check_squares(out, count, "mproc");
done:
    free(seen);
    free(iov);
    free(in);
    free(out);
    return rc;
}

/* The floor of W5: the items split by hand in POOL_WORKERS parts, one
 * message each way per part, to raw children started outside the clock. */
int w5_raw(long count, double *value)
{
    raw_stream_t *s[POOL_WORKERS] = {0};
    raw_child_t *c[POOL_WORKERS] = {0};
    raw_reader_t *r = calloc(1, sizeof *r);
    int64_t *in = inputs(count), *out = calloc((size_t)count, sizeof *out);
    int rc = r && in && out ? 0 : bench_fail("w5 raw: out of memory");
    int started = 0;
    for (; !rc && started < POOL_WORKERS; started++)
        rc = raw_child_start(RAW_ROLE_SQUARE, &s[started], &c[started]);
    if (rc) started--;
    long part = (count + POOL_WORKERS - 1) / POOL_WORKERS;
    uint64_t t0 = raw_now_ns();
    for (int i = 0; !rc && i < POOL_WORKERS; i++) {
        long lo = i * part, n = lo + part > count ? count - lo : part;
        rc = raw_frame_send(s[i], in + lo, (size_t)n * 8);
    }
    for (int i = 0; !rc && i < POOL_WORKERS; i++) {
        long lo = i * part, n = lo + part > count ? count - lo : part;
        size_t len = 0;
        *r = (raw_reader_t){.s = s[i], .direct = true};
        rc = raw_frame_recv(r, out + lo, (size_t)n * 8, &len);
        if (!rc && len != (size_t)n * 8) rc = bench_fail("raw: a part of %zu bytes", len);
    }
    uint64_t t1 = raw_now_ns();
    *value = mtasks_per_s(count, t0, t1);
    /* All ends first: a later child holds copies of an earlier one's. */
    for (int i = 0; i < started; i++)
        raw_stream_close(s[i]);
    for (int i = 0; i < started; i++) {
        int code = 0;
        int jrc = raw_child_join(c[i], &code);
        if (!rc && (jrc || code)) rc = jrc ? jrc : bench_fail("a raw child exited with %d", code);
    }
    if (rc == RAW_EOF) rc = bench_fail("raw: a child closed its stream early");
    if (!rc) rc = check_squares(out, count, "raw");
    free(r);
    free(in);
    free(out);
    return rc;
}

/* One apply_async + get of a tiny task; the result must be the square. */
static int apply_one(mp_pool_t *p, int64_t x)
{
    mp_result_t *res;
    int rc = mp_pool_apply_async(p, square, &x, sizeof x, &res);
    if (rc) return bench_fail_mp(rc, "mp_pool_apply_async");
    void *out = NULL;
    size_t len = 0;
    rc = mp_result_get(res, MP_FOREVER, &out, &len);
    mp_result_free(res);
    int64_t y = 0;
    if (!rc && len == sizeof y) memcpy(&y, out, sizeof y);
    mp_free(out);
    if (rc) return bench_fail_mp(rc, "mp_result_get");
    return y == x * x
               ? 0
               : bench_fail("mproc: %lld squared came back as %lld", (long long)x, (long long)y);
}

/* W6: µs per apply_async round trip on an idle pool of one worker. */
int w6_mproc(long count, double *value)
{
    mp_pool_t *p;
    int rc = pool_new(1, &p);
    if (rc) return rc;
    for (int i = 0; !rc && i < WARM_TASKS; i++)
        rc = apply_one(p, i);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = apply_one(p, i);
    uint64_t t1 = raw_now_ns();
    *value = (double)(t1 - t0) / 1e3 / (double)count;
    mp_pool_free(p);
    return rc;
}

static int raw_apply_one(raw_reader_t *r, int64_t x)
{
    int rc = raw_frame_send(r->s, &x, sizeof x);
    int64_t y = 0;
    size_t len = 0;
    if (!rc) rc = raw_frame_recv(r, &y, sizeof y, &len);
    if (rc == RAW_EOF) return bench_fail("raw: the worker closed its stream");
    if (rc) return rc;
    if (len != sizeof y || y != x * x)
        return bench_fail("raw: %lld squared came back as %lld", (long long)x, (long long)y);
    return 0;
}

/* The floor of W6: the same request and response, framed, over a raw
 * stream to a child doing the same work. */
int w6_raw(long count, double *value)
{
    raw_stream_t *s;
    raw_child_t *c;
    raw_reader_t *r = calloc(1, sizeof *r);
    if (!r) return bench_fail("w6 raw: out of memory");
    int rc = raw_child_start(RAW_ROLE_SQUARE, &s, &c);
    if (rc) {
        free(r);
        return rc;
    }
    r->s = s;
    for (int i = 0; !rc && i < WARM_TASKS; i++)
        rc = raw_apply_one(r, i);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = raw_apply_one(r, i);
    uint64_t t1 = raw_now_ns();
    *value = (double)(t1 - t0) / 1e3 / (double)count;
    raw_stream_close(s);
    int code = 0;
    int jrc = raw_child_join(c, &code);
    if (!rc && (jrc || code)) rc = jrc ? jrc : bench_fail("the raw worker exited with %d", code);
    free(r);
    return rc;
}

/* ---- W12: pool create + close + join ---- */

#define W12_WARM 2

/* One pool of POOL_WORKERS started, closed and joined: join returns only
 * after every worker has exited, so the workers really ran. */
static int pool_cycle(mp_start_method_t m)
{
    mp_pool_opts_t o = {.processes = POOL_WORKERS, .start_method = m};
    mp_pool_t *p;
    int rc = mp_pool_create(&p, &o);
    if (rc) return rc == MP_ENOSYS ? BENCH_SKIP : bench_fail_mp(rc, "mp_pool_create");
    rc = mp_pool_close(p);
    if (rc) rc = bench_fail_mp(rc, "mp_pool_close");
    if (!rc) {
        rc = mp_pool_join(p, MP_FOREVER);
        if (rc) rc = bench_fail_mp(rc, "mp_pool_join");
    }
    mp_pool_free(p);
    return rc;
}

static int raw_cycle(bool fork_it)
{
    int code = -1;
    int rc = fork_it ? raw_fork_join_n(POOL_WORKERS, &code) : raw_spawn_join_n(POOL_WORKERS, &code);
    if (rc) return rc;
    return code ? bench_fail("a raw child exited with %d", code) : 0;
}

static int cycle(bool mproc, bool fork_it)
{
    return mproc ? pool_cycle(fork_it ? MP_START_FORK : MP_START_SPAWN) : raw_cycle(fork_it);
}

/* ms per pool (or per group of POOL_WORKERS raw children). */
static int per_pool(bool mproc, bool fork_it, long count, double *value)
{
    int rc = 0;
    for (int i = 0; !rc && i < W12_WARM; i++)
        rc = cycle(mproc, fork_it);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = cycle(mproc, fork_it);
    *value = (double)(raw_now_ns() - t0) / 1e6 / (double)count;
    return rc;
}

int w12_fork_mproc(long count, double *value)
{
    return per_pool(true, true, count, value);
}

int w12_fork_raw(long count, double *value)
{
    return per_pool(false, true, count, value);
}

int w12_spawn_mproc(long count, double *value)
{
    return per_pool(true, false, count, value);
}

int w12_spawn_raw(long count, double *value)
{
    return per_pool(false, false, count, value);
}
