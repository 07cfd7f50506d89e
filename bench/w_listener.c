/* W10 Listener/Client (issue 6): a ping-pong of 64-byte messages over a
 * connection from mp_listener_accept to a child's mp_client_connect, over
 * TCP loopback (with an authkey) and a unix socket, against raw sockets of
 * the same kind with the same framing; and the cost of a connection:
 * connect + authkey handshake, against a raw TCP connect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define MSG 64
#define WARM_ROUND_TRIPS 200
#define WARM_CONNECTS 10
/* Generous: only a dead or stuck child makes an accept wait this long. */
#define ACCEPT_TIMEOUT_MS 60000

static const char authkey[] = "mproc-bench-authkey";

static void stamp(uint8_t *msg, long i)
{
    memset(msg, 0xa5, MSG);
    for (int k = 0; k < 8; k++)
        msg[k] = msg[MSG - 8 + k] = (uint8_t)((unsigned long)i >> (8 * k));
}

/* The child of the ping-pong: connects, echoes every message until the
 * connection ends. args: address. */
static int echo_target(mp_args_t *a)
{
    const char *addr;
    mp_conn_t *c;
    if (mp_args_str(a, 0, &addr) || mp_client_connect(addr, authkey, sizeof authkey - 1, &c))
        return 31;
    uint8_t buf[4 * MSG];
    int code = 0;
    for (;;) {
        size_t n = 0;
        int rc = mp_conn_recv_bytes_into(c, buf, sizeof buf, &n);
        if (rc == MP_EOF) break;
        if (rc || mp_conn_send_bytes(c, buf, n)) {
            code = 32;
            break;
        }
    }
    mp_conn_free(c);
    return code;
}

/* The child of the connection workload: connects total times, closing
 * each connection at once. args: address, total. */
static int connect_target(mp_args_t *a)
{
    const char *addr;
    int64_t total = 0;
    if (mp_args_str(a, 0, &addr) || mp_args_int(a, 1, &total)) return 41;
    for (int64_t i = 0; i < total; i++) {
        mp_conn_t *c;
        if (mp_client_connect(addr, authkey, sizeof authkey - 1, &c)) return 42;
        mp_conn_free(c);
    }
    return 0;
}

static int start_child(int (*target)(mp_args_t *), const char *addr, long total, mp_process_t **p)
{
    mp_args_t *a;
    int rc = mp_args_create(&a);
    if (!rc) rc = mp_args_add_str(a, addr);
    if (!rc && total) rc = mp_args_add_int(a, total);
    mp_process_opts_t o = {.target = target, .args = a};
    if (!rc) rc = mp_process_create(p, &o);
    if (!rc) {
        rc = mp_process_start(*p);
        if (rc) mp_process_free(*p);
    }
    mp_args_free(a);
    return rc ? bench_fail_mp(rc, "starting the W10 child") : 0;
}

/* Joins the child (killing it first after a failure) and checks its exit. */
static int finish_child(mp_process_t *p, int rc)
{
    int code = -1;
    if (rc) mp_process_kill(p);
    int jrc = mp_process_join(p, MP_FOREVER);
    if (!jrc) jrc = mp_process_exitcode(p, &code);
    mp_process_free(p);
    if (!rc && jrc) rc = bench_fail_mp(jrc, "joining the W10 child");
    if (!rc && code) rc = bench_fail("the W10 child exited with %d", code);
    return rc;
}

static int round_trip(mp_conn_t *c, long i)
{
    uint8_t out[MSG], in[4 * MSG];
    stamp(out, i);
    size_t n = 0;
    int rc = mp_conn_send_bytes(c, out, MSG);
    if (!rc) rc = mp_conn_recv_bytes_into(c, in, sizeof in, &n);
    if (rc) return bench_fail_mp(rc, "mproc: send/recv");
    return n == MSG && !memcmp(in, out, MSG)
               ? 0
               : bench_fail("mproc: echo %ld differs (%zu bytes)", i, n);
}

/* µs per round trip over a connection accepted from a child at addr. */
static int pingpong(const char *addr, long count, double *value)
{
    mp_listener_t *l;
    int rc = mp_listener_create(&l, addr, authkey, sizeof authkey - 1);
    if (rc) return rc == MP_ENOSYS ? BENCH_SKIP : bench_fail_mp(rc, "mp_listener_create");
    mp_process_t *p = NULL;
    mp_conn_t *c = NULL;
    rc = start_child(echo_target, mp_listener_address(l), 0, &p);
    if (!rc) {
        rc = mp_listener_accept(l, ACCEPT_TIMEOUT_MS, &c);
        if (rc) rc = bench_fail_mp(rc, "mp_listener_accept");
    }
    for (long i = 0; !rc && i < WARM_ROUND_TRIPS; i++)
        rc = round_trip(c, i);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = round_trip(c, i);
    *value = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    mp_conn_free(c);
    if (p) rc = finish_child(p, rc);
    mp_listener_free(l);
    return rc;
}

/* The floor: the same framed 64-byte messages, echoed by a child over a
 * raw socket of the same kind. */
static int raw_pingpong(int (*start)(raw_role_t, raw_stream_t **, raw_child_t **), long count,
                        double *value)
{
    raw_stream_t *s;
    raw_child_t *ch;
    raw_reader_t *r = calloc(1, sizeof *r);
    if (!r) return bench_fail("raw: out of memory");
    int rc = start(RAW_ROLE_ECHO, &s, &ch);
    if (rc) {
        free(r);
        return rc;
    }
    r->s = s;
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < WARM_ROUND_TRIPS + count; i++) {
        if (i == WARM_ROUND_TRIPS) t0 = raw_now_ns();
        uint8_t out[MSG], in[MSG];
        stamp(out, i);
        size_t n = 0;
        rc = raw_frame_send(s, out, MSG);
        if (!rc) rc = raw_frame_recv(r, in, sizeof in, &n);
        if (rc == RAW_EOF) rc = bench_fail("raw: the echo child closed its socket");
        if (!rc && (n != MSG || memcmp(in, out, MSG))) rc = bench_fail("raw: echo %ld differs", i);
    }
    *value = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    free(r);
    raw_stream_close(s);
    int code = -1;
    int jrc = raw_child_join(ch, &code);
    if (!rc && (jrc || code))
        rc = jrc ? jrc : bench_fail("the raw echo child exited with %d", code);
    return rc;
}

int w10_tcp_mproc(long count, double *value)
{
    return pingpong("tcp://127.0.0.1:0", count, value);
}

int w10_tcp_raw(long count, double *value)
{
    return raw_pingpong(raw_tcp_child_start, count, value);
}

int w10_unix_mproc(long count, double *value)
{
    static unsigned n;
    char addr[96];
    snprintf(addr, sizeof addr, "unix:/tmp/mproc-bench-%lld-%u.sock", (long long)mp_getpid(), ++n);
    return pingpong(addr, count, value);
}

int w10_unix_raw(long count, double *value)
{
    return raw_pingpong(raw_unix_child_start, count, value);
}

/* µs per connection: a child connects warm + count times (authkey
 * handshake included) and this process accepts each; an accept returns
 * once the handshake has succeeded on both sides. */
int w10_connect_mproc(long count, double *value)
{
    mp_listener_t *l;
    int rc = mp_listener_create(&l, "tcp://127.0.0.1:0", authkey, sizeof authkey - 1);
    if (rc) return bench_fail_mp(rc, "mp_listener_create");
    mp_process_t *p = NULL;
    rc = start_child(connect_target, mp_listener_address(l), WARM_CONNECTS + count, &p);
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < WARM_CONNECTS + count; i++) {
        if (i == WARM_CONNECTS) t0 = raw_now_ns();
        mp_conn_t *c;
        rc = mp_listener_accept(l, ACCEPT_TIMEOUT_MS, &c);
        if (rc)
            rc = bench_fail_mp(rc, "mp_listener_accept");
        else
            mp_conn_free(c);
    }
    *value = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    if (p) rc = finish_child(p, rc);
    mp_listener_free(l);
    return rc;
}

int w10_connect_raw(long count, double *value)
{
    return raw_tcp_connects(count, WARM_CONNECTS, value);
}
