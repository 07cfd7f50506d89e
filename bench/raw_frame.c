/* CPython's multiprocessing.connection framing (a 4-byte big-endian length,
 * then the payload) over a raw stream, and the loops raw children run. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "raw.h"

/* Below this a message is copied behind its header and goes out in one
 * write, as CPython does; above it the two parts are gathered. */
#define SMALL_MSG 16384

int raw_frame_send(raw_stream_t *s, const void *p, size_t n)
{
    if (n > 0x7fffffffu) return bench_fail("raw_frame_send: %zu bytes is too long", n);
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    if (n > SMALL_MSG) return raw_write(s, hdr, 4, p, n);
    uint8_t one[4 + SMALL_MSG];
    memcpy(one, hdr, 4);
    if (n) memcpy(one + 4, p, n);
    return raw_write(s, one, 4 + n, NULL, 0);
}

static size_t take(raw_reader_t *r, uint8_t *dst, size_t n)
{
    size_t have = r->len - r->pos;
    if (n > have) n = have;
    memcpy(dst, r->buf + r->pos, n);
    r->pos += n;
    return n;
}

/* RAW_EOF only when the stream ended before the first byte. */
static int read_exact(raw_reader_t *r, uint8_t *dst, size_t n)
{
    size_t done = take(r, dst, n);
    while (done < n) {
        size_t got = 0;
        int rc;
        if (r->direct || n - done >= RAW_RBUF / 2) {
            rc = raw_read(r->s, dst + done, n - done, &got);
            done += got;
        } else {
            r->pos = r->len = 0;
            rc = raw_read(r->s, r->buf, RAW_RBUF, &got);
            r->len = got;
            done += take(r, dst + done, n - done);
        }
        if (rc == RAW_EOF && done > 0) return bench_fail("truncated frame (%zu of %zu)", done, n);
        if (rc) return rc;
    }
    return 0;
}

int raw_frame_recv(raw_reader_t *r, void *dst, size_t cap, size_t *len)
{
    uint8_t h[4];
    int rc = read_exact(r, h, 4);
    if (rc) return rc;
    if (h[0] & 0x80) return bench_fail("raw_frame_recv: unexpected length prefix %02x", h[0]);
    size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    *len = n;
    if (n > cap) return bench_fail("raw_frame_recv: %zu bytes for a buffer of %zu", n, cap);
    rc = read_exact(r, dst, n);
    return rc == RAW_EOF ? bench_fail("raw_frame_recv: truncated payload") : rc;
}

static int echo_loop(raw_reader_t *r, uint8_t *msg)
{
    for (;;) {
        size_t n = 0;
        int rc = raw_frame_recv(r, msg, RAW_RBUF, &n);
        if (rc == RAW_EOF) return 0;
        if (rc) return 11;
        if (raw_frame_send(r->s, msg, n)) return 12;
    }
}

/* Squares each int64 of a message and sends them back: the raw worker
 * of W5 (one message per part of the work) and W6 (one per task). */
static int square_loop(raw_reader_t *r)
{
    int64_t *v = malloc(RAW_SQUARE_MAX);
    int code = v ? 0 : 13;
    while (!code) {
        size_t n = 0;
        int rc = raw_frame_recv(r, v, RAW_SQUARE_MAX, &n);
        if (rc == RAW_EOF) break;
        if (rc || n % sizeof *v) code = 14;
        for (size_t i = 0; !code && i < n / sizeof *v; i++)
            v[i] *= v[i];
        if (!code && raw_frame_send(r->s, v, n)) code = 15;
    }
    free(v);
    return code;
}

static int raw_recv_go(void *ch, uint8_t go[16])
{
    size_t n = 0;
    int rc = raw_frame_recv(ch, go, 16, &n);
    if (rc == RAW_EOF) return 1;
    return rc || n != 16 ? -1 : 0;
}

static int raw_send(void *ch, const void *p, size_t n)
{
    return raw_frame_send(((raw_reader_t *)ch)->s, p, n);
}

int raw_role_run(raw_role_t role, raw_stream_t *s)
{
    raw_reader_t *r = calloc(1, sizeof *r);
    uint8_t *msg = malloc(RAW_RBUF);
    int code = 2;
    if (r && msg) {
        r->s = s;
        if (role == RAW_ROLE_ECHO) code = echo_loop(r, msg);
        bulk_chan_t chan = {r, raw_recv_go, raw_send};
        if (role == RAW_ROLE_BULK) code = bulk_serve(&chan);
        if (role == RAW_ROLE_SQUARE) code = square_loop(r);
    }
    free(msg);
    free(r);
    return code;
}
