/* W8-W10, the manager: a dict used from a child process (local: shared
 * stores, no server call), over TCP loopback (a request per call), and by
 * four clients at once. Every get checks the value the set before it wrote.
 * Children time their own loops and leave the times in the dict, so
 * starting processes is not measured. */
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define VAL 64
#define KEYS 1000
#define WARM_OPS 200
#define CLIENTS 4
#define MSG (16 + VAL) /* a raw request: about a key and a value */

/* One set and one get of client's key i, the value stamped with i. */
static int set_get(mp_dict_t *d, int client, long i)
{
    char key[24];
    int kl = snprintf(key, sizeof key, "c%d-k%ld", client, i % KEYS);
    uint8_t v[VAL], *got = NULL;
    memset(v, 0x5a, sizeof v);
    put_u64(v, (uint64_t)i);
    put_u64(v + VAL - 8, (uint64_t)i);
    size_t n = 0;
    int rc = mp_dict_set(d, key, (size_t)kl, v, sizeof v);
    if (!rc) rc = mp_dict_get(d, key, (size_t)kl, (void **)&got, &n);
    if (!rc && (n != VAL || memcmp(got, v, VAL))) rc = MP_EPROTO;
    mp_free(got);
    return rc;
}

/* count set+get pairs after a warm-up; 2 * count operations. */
static int loop(mp_dict_t *d, int client, long count, uint64_t *t0, uint64_t *t1)
{
    int rc = 0;
    for (long i = 0; !rc && i < WARM_OPS; i++)
        rc = set_get(d, client, i);
    *t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = set_get(d, client, i);
    *t1 = raw_now_ns();
    return rc;
}

/* args: the dict, the client number, count, a start event. Leaves
 * "t<client>" = start and end times (16 bytes). */
static int client_target(mp_args_t *a)
{
    mp_dict_t *d;
    mp_event_t *go;
    int64_t client, count;
    if (mp_args_dict(a, 0, &d) || mp_args_int(a, 1, &client) || mp_args_int(a, 2, &count) ||
        mp_args_event(a, 3, &go))
        return 10;
    if (mp_event_wait(go, MP_FOREVER)) return 11;
    uint64_t t[2];
    if (loop(d, (int)client, (long)count, &t[0], &t[1])) return 12;
    uint8_t out[16];
    put_u64(out, t[0]);
    put_u64(out + 8, t[1]);
    char key[8];
    int kl = snprintf(key, sizeof key, "t%d", (int)client);
    return mp_dict_set(d, key, (size_t)kl, out, sizeof out) ? 13 : 0;
}

/* nclients children on one local dict: aggregate operations per second
 * from the first start to the last end. */
static int clients_run(int nclients, long count, double *value)
{
    mp_manager_t *m;
    int rc = mp_manager_start(&m, NULL);
    if (rc) return bench_fail_mp(rc, "mp_manager_start");
    mp_dict_t *d = NULL;
    mp_event_t *go = NULL;
    mp_process_t *p[CLIENTS] = {0};
    rc = mp_manager_dict(m, NULL, &d);
    if (!rc) rc = mp_manager_event(m, NULL, &go);
    for (int c = 0; !rc && c < nclients; c++) {
        mp_args_t *a;
        rc = mp_args_create(&a);
        if (rc) break;
        rc = mp_args_add_handle(a, MP_HANDLE(d));
        if (!rc) rc = mp_args_add_int(a, c);
        if (!rc) rc = mp_args_add_int(a, count);
        if (!rc) rc = mp_args_add_handle(a, MP_HANDLE(go));
        mp_process_opts_t o = {.target = client_target, .args = a};
        if (!rc) rc = mp_process_create(&p[c], &o);
        if (!rc) rc = mp_process_start(p[c]);
        mp_args_free(a);
    }
    if (!rc) rc = mp_event_set(go);
    int brc = rc ? bench_fail_mp(rc, "starting the clients") : 0;
    uint64_t first = UINT64_MAX, last = 0;
    for (int c = 0; c < nclients && p[c]; c++) {
        int code = -1, jrc = mp_process_join(p[c], MP_FOREVER);
        if (!jrc) jrc = mp_process_exitcode(p[c], &code);
        mp_process_free(p[c]);
        if (!brc && (jrc || code)) brc = bench_fail("client %d: %d / exit %d", c, jrc, code);
        if (brc) continue;
        char key[8];
        int kl = snprintf(key, sizeof key, "t%d", c);
        uint8_t *t = NULL;
        size_t n = 0;
        int g = mp_dict_get(d, key, (size_t)kl, (void **)&t, &n);
        if (g || n != 16) {
            brc = bench_fail_mp(g ? g : MP_EPROTO, "a client's times");
        } else {
            uint64_t t0 = get_u64(t), t1 = get_u64(t + 8);
            first = t0 < first ? t0 : first;
            last = t1 > last ? t1 : last;
        }
        mp_free(t);
    }
    if (!brc && last <= first) brc = bench_fail("client times out of order");
    if (!brc) *value = 2.0 * (double)count * nclients / ((double)(last - first) / 1e9);
    mp_event_free(go);
    mp_dict_free(d);
    mp_manager_free(m);
    return brc;
}

int w8_mproc(long count, double *value)
{
    return clients_run(1, count, value);
}

/* The floor of a manager that serves every call: one request/response
 * round trip per operation (W1's echo), as operations per second. */
int w8_raw(long count, double *value)
{
    double us;
    int rc = w1_raw(count, &us);
    if (!rc) *value = 1e6 / us;
    return rc;
}

int w8_4x_mproc(long count, double *value)
{
    return clients_run(CLIENTS, count, value);
}

int w8_4x_one(long count, double *value)
{
    return clients_run(1, count, value);
}

/* ---- W9: over TCP loopback, each call a request ---- */

int w8_tcp_mproc(long count, double *value)
{
    static const char key[] = "bench-key";
    mp_manager_opts_t o = {
        .address = "tcp://127.0.0.1:0", .authkey = key, .keylen = sizeof key - 1};
    mp_manager_t *m;
    int rc = mp_manager_start(&m, &o);
    if (rc) return bench_fail_mp(rc, "mp_manager_start (tcp)");
    mp_dict_t *d = NULL;
    uint64_t t0 = 0, t1 = 0;
    rc = mp_manager_dict(m, NULL, &d);
    if (!rc) rc = loop(d, 0, count, &t0, &t1);
    mp_dict_free(d);
    mp_manager_free(m);
    if (rc) return bench_fail_mp(rc, "tcp dict set/get");
    *value = (double)(t1 - t0) / 1e3 / (2.0 * (double)count);
    return 0;
}

/* A request of MSG bytes and its echo over a TCP loopback connection to
 * a child, with the same framing. */
int w8_tcp_raw(long count, double *value)
{
    raw_stream_t *s;
    raw_child_t *ch;
    int rc = raw_tcp_child_start(RAW_ROLE_ECHO, &s, &ch);
    if (rc) return rc;
    raw_reader_t *r = calloc(1, sizeof *r);
    if (!r) rc = bench_fail("out of memory");
    uint8_t out[MSG], in[MSG];
    memset(out, 0x5a, sizeof out);
    uint64_t t0 = 0, t1 = 0;
    for (long i = 0; !rc && i < WARM_OPS + 2 * count; i++) {
        if (i == WARM_OPS) t0 = raw_now_ns();
        put_u64(out, (uint64_t)i);
        size_t n = 0;
        rc = raw_frame_send(s, out, sizeof out);
        if (!rc) {
            r->s = s;
            rc = raw_frame_recv(r, in, sizeof in, &n);
        }
        if (!rc && (n != MSG || memcmp(in, out, MSG))) rc = bench_fail("raw echo differs");
        if (rc == RAW_EOF) rc = bench_fail("raw echo ended early");
    }
    t1 = raw_now_ns();
    free(r);
    raw_stream_close(s);
    int code = -1;
    int jrc = raw_child_join(ch, &code);
    if (!rc && (jrc || code)) rc = bench_fail("raw echo child: exit %d", code);
    if (!rc) *value = (double)(t1 - t0) / 1e3 / (2.0 * (double)count);
    return rc;
}
