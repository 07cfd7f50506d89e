/* W1 pipe ping-pong and W2 pipe bulk: mp_pipe to a child started with
 * mp_process (the default start method) against the same framing over the
 * raw stream the OS offers (raw.h). */
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define W1_MSG 64
#define W2_MSG ((size_t)1 << 20)
/* Largest message a bulk sender agrees to send. */
#define BULK_MAX ((size_t)64 << 20)
#define WARM_ROUND_TRIPS 200
#define WARM_BULK 4

/* ---- message contents: a fixed pattern, stamped with a sequence number
 * at the start, middle and end ---- */

static uint8_t pattern_at(size_t i)
{
    return (uint8_t)(i % 251);
}

static void bulk_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = pattern_at(i);
}

/* Where seq is written: start, middle and end (start only when small). */
static size_t stamp_offsets(size_t n, size_t off[3])
{
    if (n < 8) return 0;
    off[0] = 0;
    if (n < 24) return 1;
    off[1] = (n / 2) & ~(size_t)7;
    off[2] = n - 8;
    return 3;
}

static void bulk_stamp(uint8_t *p, size_t n, uint64_t seq)
{
    size_t off[3];
    size_t k = stamp_offsets(n, off);
    for (size_t i = 0; i < k; i++)
        put_u64(p + off[i], seq);
}

/* The unstamped bytes every message must carry, built once. */
static const uint8_t *reference(size_t n)
{
    static uint8_t *ref;
    static size_t have;
    if (n > have) {
        uint8_t *p = realloc(ref, n);
        if (!p) return NULL;
        ref = p;
        have = n;
        bulk_fill(ref, n);
    }
    return ref;
}

static int bulk_check(const uint8_t *p, size_t n, uint64_t seq, bool full)
{
    size_t off[3];
    size_t k = stamp_offsets(n, off);
    for (size_t i = 0; i < k; i++)
        if (get_u64(p + off[i]) != seq)
            return bench_fail("message %llu carries sequence number %llu at byte %zu",
                              (unsigned long long)seq, (unsigned long long)get_u64(p + off[i]),
                              off[i]);
    if (!full) return 0;
    const uint8_t *ref = reference(n);
    if (!ref) return bench_fail("bulk_check: out of memory");
    size_t from = 0;
    for (size_t i = 0; i <= k; i++) {
        size_t to = i < k ? off[i] : n;
        if (to > from && memcmp(p + from, ref + from, to - from))
            return bench_fail("message %llu is corrupt between bytes %zu and %zu",
                              (unsigned long long)seq, from, to);
        from = to + 8;
    }
    return 0;
}

static void bulk_encode_go(uint8_t out[16], uint64_t count, uint64_t size)
{
    put_u64(out, count);
    put_u64(out + 8, size);
}

int bulk_serve(const bulk_chan_t *c)
{
    uint8_t *msg = NULL;
    uint64_t have = 0;
    int code = 0;
    for (;;) {
        uint8_t go[16];
        int rc = c->recv_go(c->ch, go);
        if (rc == 1) break;
        uint64_t count = get_u64(go), size = get_u64(go + 8);
        if (rc || size > BULK_MAX) {
            code = 21;
            break;
        }
        if (size != have) {
            free(msg);
            msg = malloc(size ? size : 1);
            if (!msg) {
                code = 22;
                break;
            }
            have = size;
            bulk_fill(msg, size);
        }
        for (uint64_t i = 0; i < count && !code; i++) {
            bulk_stamp(msg, size, i);
            if (c->send(c->ch, msg, size)) code = 23;
        }
        if (code) break;
    }
    free(msg);
    return code;
}

static double elapsed_us(uint64_t t0, uint64_t t1)
{
    return (double)(t1 - t0) / 1e3;
}

/* ---- mproc side ---- */

static int echo_target(mp_args_t *a)
{
    static uint8_t buf[65536];
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    for (;;) {
        size_t n = 0;
        int rc = mp_conn_recv_bytes_into(c, buf, sizeof buf, &n);
        if (rc == MP_EOF) return 0;
        if (rc) return 11;
        if (mp_conn_send_bytes(c, buf, n)) return 12;
    }
}

static int mp_recv_go(void *ch, uint8_t go[16])
{
    size_t n = 0;
    int rc = mp_conn_recv_bytes_into(ch, go, 16, &n);
    if (rc == MP_EOF) return 1;
    return rc || n != 16 ? -1 : 0;
}

static int mp_send(void *ch, const void *p, size_t n)
{
    return mp_conn_send_bytes(ch, p, n);
}

static int bulk_target(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    bulk_chan_t chan = {c, mp_recv_go, mp_send};
    return bulk_serve(&chan);
}

/* A child running target with the other end of a new duplex pipe. */
static int mp_child_start(mp_target_fn target, mp_conn_t **mine, mp_process_t **p)
{
    mp_conn_t *theirs = NULL;
    mp_args_t *a = NULL;
    *mine = NULL;
    int rc = mp_pipe(mine, &theirs, true);
    if (!rc) rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(theirs));
    mp_process_opts_t o = {.target = target, .args = a};
    if (!rc) rc = mp_process_create(p, &o);
    if (!rc) {
        rc = mp_process_start(*p);
        if (rc) mp_process_free(*p);
    }
    mp_args_free(a);
    mp_conn_free(theirs);
    if (rc) {
        mp_conn_free(*mine);
        return bench_fail_mp(rc, "starting the child");
    }
    return 0;
}

/* Closes our end (the child sees EOF) and expects a clean exit. */
static int mp_child_finish(mp_conn_t *mine, mp_process_t *p, int rc)
{
    mp_conn_free(mine);
    int jrc = mp_process_join(p, 60000);
    int code = -1000;
    if (!jrc) jrc = mp_process_exitcode(p, &code);
    mp_process_free(p);
    if (rc) return rc;
    if (jrc) return bench_fail_mp(jrc, "joining the child");
    return code ? bench_fail("the child exited with %d", code) : 0;
}

static int mp_round_trip(mp_conn_t *c, uint8_t *out, uint8_t *in, long i)
{
    bulk_stamp(out, W1_MSG, (uint64_t)i);
    int rc = mp_conn_send_bytes(c, out, W1_MSG);
    if (rc) return bench_fail_mp(rc, "mp_conn_send_bytes");
    size_t n = 0;
    rc = mp_conn_recv_bytes_into(c, in, W1_MSG, &n);
    if (rc) return bench_fail_mp(rc, "mp_conn_recv_bytes_into");
    if (n != W1_MSG || memcmp(in, out, W1_MSG))
        return bench_fail("round trip %ld came back wrong (%zu bytes)", i, n);
    return 0;
}

int w1_mproc(long count, double *value)
{
    mp_conn_t *c;
    mp_process_t *p;
    int rc = mp_child_start(echo_target, &c, &p);
    if (rc) return rc;
    uint8_t out[W1_MSG], in[W1_MSG];
    bulk_fill(out, sizeof out);
    for (long i = 0; !rc && i < WARM_ROUND_TRIPS; i++)
        rc = mp_round_trip(c, out, in, i);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = mp_round_trip(c, out, in, i);
    uint64_t t1 = raw_now_ns();
    *value = elapsed_us(t0, t1) / (double)count;
    return mp_child_finish(c, p, rc);
}

static int mp_send_go(mp_conn_t *c, uint64_t count)
{
    uint8_t go[16];
    bulk_encode_go(go, count, W2_MSG);
    int rc = mp_conn_send_bytes(c, go, sizeof go);
    return rc ? bench_fail_mp(rc, "sending go") : 0;
}

static int mp_bulk_recv(mp_conn_t *c, bool alloc, uint8_t *buf, uint64_t seq, bool full)
{
    size_t n = 0;
    if (!alloc) {
        int rc = mp_conn_recv_bytes_into(c, buf, W2_MSG, &n);
        if (rc) return bench_fail_mp(rc, "mp_conn_recv_bytes_into");
        return n == W2_MSG ? bulk_check(buf, n, seq, full) : bench_fail("message of %zu bytes", n);
    }
    void *p = NULL;
    int rc = mp_conn_recv_bytes(c, &p, &n);
    if (rc) return bench_fail_mp(rc, "mp_conn_recv_bytes");
    rc = n == W2_MSG ? bulk_check(p, n, seq, full) : bench_fail("message of %zu bytes", n);
    mp_free(p);
    return rc;
}

static int w2_run(long count, bool alloc, double *value)
{
    mp_conn_t *c;
    mp_process_t *p;
    int rc = mp_child_start(bulk_target, &c, &p);
    if (rc) return rc;
    uint8_t *buf = malloc(W2_MSG);
    if (!buf) rc = bench_fail("out of memory");
    if (!rc) memset(buf, 0, W2_MSG); /* fault its pages in before timing */
    if (!rc) rc = mp_send_go(c, WARM_BULK);
    for (uint64_t i = 0; !rc && i < WARM_BULK; i++)
        rc = mp_bulk_recv(c, alloc, buf, i, true);
    uint64_t t0 = raw_now_ns();
    if (!rc) rc = mp_send_go(c, (uint64_t)count);
    for (uint64_t i = 0; !rc && i < (uint64_t)count; i++)
        rc = mp_bulk_recv(c, alloc, buf, i, i == 0 || i + 1 == (uint64_t)count);
    uint64_t t1 = raw_now_ns();
    *value = (double)count * (double)W2_MSG / (double)(t1 - t0);
    free(buf);
    return mp_child_finish(c, p, rc);
}

int w2_mproc(long count, double *value)
{
    return w2_run(count, false, value);
}

int w2_mproc_alloc(long count, double *value)
{
    return w2_run(count, true, value);
}

/* ---- raw side ---- */

static int raw_finish(raw_stream_t *s, raw_child_t *ch, int rc)
{
    raw_stream_close(s);
    int code = -1000;
    int jrc = raw_child_join(ch, &code);
    if (rc) return rc;
    if (jrc) return jrc;
    return code ? bench_fail("the raw child exited with %d", code) : 0;
}

static int raw_round_trip(raw_reader_t *r, uint8_t *out, uint8_t *in, long i)
{
    bulk_stamp(out, W1_MSG, (uint64_t)i);
    int rc = raw_frame_send(r->s, out, W1_MSG);
    size_t n = 0;
    if (!rc) rc = raw_frame_recv(r, in, W1_MSG, &n);
    if (rc == RAW_EOF) return bench_fail("the raw echo child closed early");
    if (rc) return rc;
    if (n != W1_MSG || memcmp(in, out, W1_MSG))
        return bench_fail("round trip %ld came back wrong (%zu bytes)", i, n);
    return 0;
}

int w1_raw(long count, double *value)
{
    raw_stream_t *s;
    raw_child_t *ch;
    int rc = raw_child_start(RAW_ROLE_ECHO, &s, &ch);
    if (rc) return rc;
    raw_reader_t *r = calloc(1, sizeof *r);
    if (!r) return raw_finish(s, ch, bench_fail("out of memory"));
    r->s = s;
    uint8_t out[W1_MSG], in[W1_MSG];
    bulk_fill(out, sizeof out);
    for (long i = 0; !rc && i < WARM_ROUND_TRIPS; i++)
        rc = raw_round_trip(r, out, in, i);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = raw_round_trip(r, out, in, i);
    uint64_t t1 = raw_now_ns();
    *value = elapsed_us(t0, t1) / (double)count;
    free(r);
    return raw_finish(s, ch, rc);
}

static int raw_send_go(raw_stream_t *s, uint64_t count)
{
    uint8_t go[16];
    bulk_encode_go(go, count, W2_MSG);
    int rc = raw_frame_send(s, go, sizeof go);
    return rc == RAW_EOF ? bench_fail("the raw bulk child closed early") : rc;
}

static int raw_bulk_recv(raw_reader_t *r, uint8_t *buf, uint64_t seq, bool full)
{
    size_t n = 0;
    int rc = raw_frame_recv(r, buf, W2_MSG, &n);
    if (rc == RAW_EOF) return bench_fail("the raw bulk child closed early");
    if (rc) return rc;
    return n == W2_MSG ? bulk_check(buf, n, seq, full) : bench_fail("message of %zu bytes", n);
}

int w2_raw(long count, double *value)
{
    raw_stream_t *s;
    raw_child_t *ch;
    int rc = raw_child_start(RAW_ROLE_BULK, &s, &ch);
    if (rc) return rc;
    raw_reader_t *r = calloc(1, sizeof *r);
    uint8_t *buf = malloc(W2_MSG);
    if (!r || !buf) rc = bench_fail("out of memory");
    if (!rc) {
        r->s = s;
        r->direct = true;
        memset(buf, 0, W2_MSG);
        rc = raw_send_go(s, WARM_BULK);
    }
    for (uint64_t i = 0; !rc && i < WARM_BULK; i++)
        rc = raw_bulk_recv(r, buf, i, true);
    uint64_t t0 = raw_now_ns();
    if (!rc) rc = raw_send_go(s, (uint64_t)count);
    for (uint64_t i = 0; !rc && i < (uint64_t)count; i++)
        rc = raw_bulk_recv(r, buf, i, i == 0 || i + 1 == (uint64_t)count);
    uint64_t t1 = raw_now_ns();
    *value = (double)count * (double)W2_MSG / (double)(t1 - t0);
    free(buf);
    free(r);
    return raw_finish(s, ch, rc);
}
