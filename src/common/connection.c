/* Connections: CPython's multiprocessing.connection framing over a byte
 * stream. A message is a 4-byte big-endian signed length and the payload;
 * lengths above 0x7FFFFFFF are sent as FF FF FF FF and an 8-byte length. */
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "handle.h"

/* Reads go through a buffer so that a small message costs one read. */
#define RBUF_CAP 65536u
/* A message is allocated at most this much ahead of the bytes that have
 * really arrived, so a lying length prefix cannot make us allocate it. */
#define ALLOC_AHEAD (16u << 20)
/* Gather list size handled without allocating. */
#define SMALL_IOV 16

struct mp_conn {
    mp_handle_t h;
    mp__stream_t *s;
    bool readable, writable;
    bool closed;
    bool broken; /* a bad frame left the stream out of step: no more reads */
    size_t max_msg;
    uint8_t *rbuf;
    size_t rpos, rlen;
    bool have_len; /* a header was read; its payload is still unread */
    bool big;      /* the last message was big: no read-ahead of the next header */
    uint64_t msg_len;
    bool message;       /* the transport keeps message boundaries: no headers */
    size_t default_max; /* what mp_conn_set_max_message(c, 0) restores */
    uint64_t deadline;  /* reads fail with MP_ETIMEDOUT after it (ns); 0: none */
};

static int conn_new(mp__stream_t *s, bool readable, bool writable, mp_conn_t **out)
{
    mp_conn_t *c = mp__calloc(1, sizeof *c);
    if (!c) return MP_ENOMEM;
    c->s = s;
    c->readable = readable;
    c->writable = writable;
    mp__handle_init(&c->h, MP__H_CONN);
    *out = c;
    return 0;
}

int mp__conn_wrap(mp__stream_t *s, bool readable, bool writable, mp_conn_t **out)
{
    return conn_new(s, readable, writable, out);
}

void mp__conn_set_message_mode(mp_conn_t *c)
{
    c->message = true;
}

void mp__conn_set_default_max(mp_conn_t *c, size_t max)
{
    c->default_max = c->max_msg = max;
}

void mp__conn_set_deadline(mp_conn_t *c, long timeout_ms)
{
    c->deadline = timeout_ms < 0 ? 0 : mp__os_now_ns() + (uint64_t)timeout_ms * 1000000u;
}

static long read_timeout(const mp_conn_t *c)
{
    if (!c->deadline) return MP_FOREVER;
    uint64_t now = mp__os_now_ns();
    return now >= c->deadline ? 0 : (long)((c->deadline - now + 999999u) / 1000000u);
}

/* One transport read into dst. A message stream stops at the end of the
 * current message, and read_exact never asks for more than is left of it. */
static int transport_read(mp_conn_t *c, void *dst, size_t cap, size_t *got)
{
    if (!c->message) return mp__stream_read(c->s, dst, cap, got, read_timeout(c));
    uint64_t left;
    int rc = mp__stream_msg_read(c->s, dst, cap, got, &left, read_timeout(c));
    if (!rc && !*got) return mp__fail(MP_EPROTO, "message stream: a message ended early");
    return rc;
}

/* Message mode: the transport delimits the message, so it goes out whole
 * in one write, without the length header. */
static int send_message(mp_conn_t *c, const mp_iov_t *iov, size_t n, uint64_t total)
{
    if (n == 1) return mp__stream_msg_write(c->s, iov[0].data, iov[0].len);
    if (total > SIZE_MAX)
        return mp__fail(MP_EMSGSIZE, "message of %llu bytes", (unsigned long long)total);
    uint8_t *p = mp__malloc((size_t)total);
    if (!p) return MP_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (iov[i].len) memcpy(p + off, iov[i].data, iov[i].len);
        off += iov[i].len;
    }
    int rc = mp__stream_msg_write(c->s, p, off);
    free(p);
    return rc;
}

int mp_pipe(mp_conn_t **c1, mp_conn_t **c2, bool duplex)
{
    if (!c1 || !c2) return mp__fail(MP_EINVAL, "mp_pipe: NULL out-pointer");
    mp__stream_t *a, *b;
    int rc = mp__stream_pair(&a, &b, duplex);
    if (rc) return rc;
    rc = conn_new(a, true, duplex, c1);
    if (!rc) {
        rc = conn_new(b, duplex, true, c2);
        if (rc) mp_conn_free(*c1);
    } else {
        mp__stream_close(a);
    }
    if (rc) mp__stream_close(b);
    return rc;
}

static int usable(mp_conn_t *c, bool for_read)
{
    int rc = mp__handle_check(MP_HANDLE(c), MP__H_CONN);
    if (rc) return rc;
    if (c->closed) return mp__fail(MP_ECLOSED, "connection is closed");
    if (for_read && !c->readable) return mp__fail(MP_EPERM, "connection is write-only");
    if (!for_read && !c->writable) return mp__fail(MP_EPERM, "connection is read-only");
    if (for_read && c->broken)
        return mp__fail(MP_EPROTO, "connection is unreadable after a bad frame");
    return 0;
}

int mp_conn_sendv(mp_conn_t *c, const mp_iov_t *iov, size_t n)
{
    int rc = usable(c, false);
    if (rc) return rc;
    if (n && !iov) return mp__fail(MP_EINVAL, "mp_conn_sendv: NULL buffers");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!iov[i].data && iov[i].len)
            return mp__fail(MP_EINVAL, "mp_conn_sendv: buffer %zu is NULL", i);
        if (iov[i].len > UINT64_MAX - total)
            return mp__fail(MP_EMSGSIZE, "mp_conn_sendv: total length overflows");
        total += iov[i].len;
    }
    if (c->message) return send_message(c, iov, n, total);
    uint8_t hdr[12];
    size_t hlen = 4;
    if (total <= 0x7fffffffu) {
        for (int i = 0; i < 4; i++)
            hdr[i] = (uint8_t)(total >> (24 - 8 * i));
    } else {
        memset(hdr, 0xff, 4);
        for (int i = 0; i < 8; i++)
            hdr[4 + i] = (uint8_t)(total >> (56 - 8 * i));
        hlen = 12;
    }
    mp_iov_t small[SMALL_IOV];
    mp_iov_t *v = n + 1 <= SMALL_IOV ? small : malloc((n + 1) * sizeof *v);
    if (!v) return mp__fail(MP_ENOMEM, "mp_conn_sendv: %zu buffers", n);
    v[0].data = hdr;
    v[0].len = hlen;
    if (n) memcpy(v + 1, iov, n * sizeof *v);
    rc = mp__stream_write(c->s, v, n + 1);
    if (v != small) free(v);
    return rc;
}

int mp_conn_send_bytes(mp_conn_t *c, const void *buf, size_t len)
{
    mp_iov_t v = {(void *)buf, len};
    return mp_conn_sendv(c, &v, 1);
}

/* Moves up to n buffered bytes to dst. */
static size_t take_buffered(mp_conn_t *c, uint8_t *dst, size_t n)
{
    size_t have = c->rlen - c->rpos;
    if (n > have) n = have;
    if (n) {
        memcpy(dst, c->rbuf + c->rpos, n);
        c->rpos += n;
    }
    return n;
}

static int fill(mp_conn_t *c)
{
    if (!c->rbuf) {
        c->rbuf = mp__malloc(RBUF_CAP);
        if (!c->rbuf) return MP_ENOMEM;
    }
    c->rpos = c->rlen = 0;
    size_t got = 0;
    int rc = transport_read(c, c->rbuf, RBUF_CAP, &got);
    if (!rc) c->rlen = got;
    return rc;
}

void mp__conn_warm(mp_conn_t *c)
{
    if (!c->rbuf && !(c->rbuf = malloc(RBUF_CAP))) return;
    /* Only what holds no buffered bytes. */
    memset(c->rbuf, 0, c->rpos);
    memset(c->rbuf + c->rlen, 0, RBUF_CAP - c->rlen);
}

/* Reads exactly n bytes. MP_EOF only when the stream ended before the
 * first of them; an end inside them is a truncated frame. Read-ahead into
 * rbuf saves a read per small message; around big ones it would only copy
 * their first bytes twice, so then reads go straight to dst. */
static int read_exact(mp_conn_t *c, uint8_t *dst, size_t n, bool ahead)
{
    size_t done = take_buffered(c, dst, n);
    while (done < n) {
        int rc;
        if (!ahead || n - done >= RBUF_CAP / 2) {
            size_t got = 0;
            rc = transport_read(c, dst + done, n - done, &got);
            done += got;
        } else {
            rc = fill(c);
            done += take_buffered(c, dst + done, n - done);
        }
        if (rc == MP_EOF && done > 0)
            return mp__fail(MP_EPROTO,
                            "the peer closed in the middle of a message "
                            "(%zu of %zu bytes)",
                            done, n);
        if (rc) return rc;
    }
    return 0;
}

static int bad_frame(mp_conn_t *c, int code)
{
    c->broken = true;
    return code;
}

/* Message mode: the transport tells the size; the first part of the
 * message lands in rbuf (it holds nothing else between messages). */
static int read_message_size(mp_conn_t *c, uint64_t *len)
{
    if (!c->rbuf) {
        c->rbuf = mp__malloc(RBUF_CAP);
        if (!c->rbuf) return MP_ENOMEM;
    }
    size_t got = 0;
    uint64_t left = 0;
    int rc = mp__stream_msg_read(c->s, c->rbuf, RBUF_CAP, &got, &left, read_timeout(c));
    if (rc == MP_EOF) return mp__fail(MP_EOF, "the peer closed the connection");
    if (rc) return rc == MP_ETIMEDOUT ? rc : bad_frame(c, rc);
    c->rpos = 0;
    c->rlen = got;
    *len = got + left;
    return 0;
}

/* A byte stream: the 4-byte length, or FF FF FF FF and 8 more. */
static int read_length_prefix(mp_conn_t *c, uint64_t *len)
{
    int rc;
    /* Under a deadline, wait for the first byte here so that a timeout
     * between messages leaves the connection usable. */
    if (c->deadline && c->rpos == c->rlen) {
        rc = mp__stream_poll(c->s, read_timeout(c));
        if (rc < 0) return rc;
        if (!rc) return mp__fail(MP_ETIMEDOUT, "no message arrived in time");
    }
    uint8_t b[8];
    rc = read_exact(c, b, 4, !c->big);
    if (rc)
        return rc == MP_EOF ? mp__fail(MP_EOF, "the peer closed the connection") : bad_frame(c, rc);
    uint32_t v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    *len = v;
    if (v == 0xffffffffu) {
        rc = read_exact(c, b, 8, !c->big);
        if (rc) return bad_frame(c, rc == MP_EOF ? mp__fail(MP_EPROTO, "truncated length") : rc);
        *len = 0;
        for (int i = 0; i < 8; i++)
            *len = *len << 8 | b[i];
    } else if (v & 0x80000000u) {
        return bad_frame(c, mp__fail(MP_EPROTO, "negative message length 0x%08x", (unsigned)v));
    }
    return 0;
}

static int read_header(mp_conn_t *c)
{
    if (c->have_len) return 0;
    uint64_t len = 0;
    int rc = c->message ? read_message_size(c, &len) : read_length_prefix(c, &len);
    if (rc) return rc;
    if ((c->max_msg && len > c->max_msg) || len >= SIZE_MAX)
        return bad_frame(c, mp__fail(MP_EMSGSIZE, "message of %llu bytes exceeds the bound of %zu",
                                     (unsigned long long)len, c->max_msg ? c->max_msg : SIZE_MAX));
    c->have_len = true;
    c->msg_len = len;
    return 0;
}

int mp_conn_recv_bytes(mp_conn_t *c, void **buf, size_t *len)
{
    if (!buf || !len) return mp__fail(MP_EINVAL, "mp_conn_recv_bytes: NULL out-pointer");
    int rc = usable(c, true);
    if (!rc) rc = read_header(c);
    if (rc) return rc;
    size_t total = (size_t)c->msg_len;
    size_t cap = total < ALLOC_AHEAD ? total : ALLOC_AHEAD;
    uint8_t *p = mp__malloc(cap);
    size_t got = 0;
    while (p && got < total) {
        if (got == cap) {
            cap = total - cap < cap ? total : cap * 2;
            uint8_t *np = realloc(p, cap);
            if (!np) {
                free(p);
                p = NULL;
                mp__fail(MP_ENOMEM, "realloc(%zu) for a message of %zu bytes", cap, total);
                break;
            }
            p = np;
        }
        rc = read_exact(c, p + got, cap - got, total < RBUF_CAP / 2);
        if (rc) {
            free(p);
            return bad_frame(c, rc == MP_EOF ? MP_EPROTO : rc);
        }
        got = cap;
    }
    if (!p) return bad_frame(c, MP_ENOMEM);
    c->have_len = false;
    c->big = c->msg_len >= RBUF_CAP / 2;
    *buf = p;
    *len = total;
    return 0;
}

int mp_conn_recv_bytes_into(mp_conn_t *c, void *buf, size_t cap, size_t *len)
{
    if (!len || (!buf && cap)) return mp__fail(MP_EINVAL, "mp_conn_recv_bytes_into: NULL argument");
    int rc = usable(c, true);
    if (!rc) rc = read_header(c);
    if (rc) return rc;
    *len = (size_t)c->msg_len;
    if (c->msg_len > cap)
        return mp__fail(MP_EMSGSIZE, "message of %zu bytes does not fit a buffer of %zu", *len,
                        cap);
    rc = read_exact(c, buf, *len, *len < RBUF_CAP / 2);
    if (rc) return bad_frame(c, rc == MP_EOF ? MP_EPROTO : rc);
    c->have_len = false;
    c->big = c->msg_len >= RBUF_CAP / 2;
    return 0;
}

int mp_conn_set_max_message(mp_conn_t *c, size_t max)
{
    int rc = mp__handle_check(MP_HANDLE(c), MP__H_CONN);
    if (!rc) c->max_msg = max ? max : c->default_max;
    return rc;
}

int mp_conn_poll(mp_conn_t *c, long timeout_ms)
{
    int rc = usable(c, true);
    if (rc == MP_EPROTO) return 1; /* a read would not block: it fails at once */
    if (rc) return rc;
    if (c->rpos < c->rlen || c->have_len) return 1;
    return mp__stream_poll(c->s, timeout_ms);
}

bool mp_conn_readable(mp_conn_t *c)
{
    return !mp__handle_check(MP_HANDLE(c), MP__H_CONN) && !c->closed && c->readable;
}

bool mp_conn_writable(mp_conn_t *c)
{
    return !mp__handle_check(MP_HANDLE(c), MP__H_CONN) && !c->closed && c->writable;
}

int mp_conn_close(mp_conn_t *c)
{
    int rc = mp__handle_check(MP_HANDLE(c), MP__H_CONN);
    if (rc) return rc;
    if (!c->closed) {
        mp__stream_close(c->s);
        c->s = NULL;
        c->closed = true;
    }
    return 0;
}

void mp_conn_free(mp_conn_t *c)
{
    if (!c) return; /* as free(NULL): no error, the last detail stays */
    if (mp_conn_close(c)) return;
    mp__handle_fini(&c->h);
    free(c->rbuf);
    free(c);
}

/* A connection end travels as its OS handle (in the table) plus the bytes
 * this process had buffered but not yet consumed. */
static int conn_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp_conn_t *c = (mp_conn_t *)h;
    if (c->closed) return mp__fail(MP_ECLOSED, "cannot pass a closed connection");
    int idx = mp__ostab_add(t, mp__stream_osh(c->s));
    if (idx < 0) return idx;
    mp__wbuf_u32(w, (uint32_t)idx);
    mp__wbuf_u8(w, (uint8_t)(c->readable | c->writable << 1 | c->broken << 2 | c->have_len << 3 |
                             c->message << 4));
    mp__wbuf_u64(w, c->max_msg);
    mp__wbuf_u64(w, c->default_max);
    mp__wbuf_u64(w, c->msg_len);
    mp__wbuf_blob(w, c->rbuf ? c->rbuf + c->rpos : NULL, c->rlen - c->rpos);
    return w->err;
}

static int conn_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    uint32_t idx = mp__rbuf_u32(r);
    uint8_t flags = mp__rbuf_u8(r);
    uint64_t max = mp__rbuf_u64(r);
    uint64_t default_max = mp__rbuf_u64(r);
    uint64_t msg_len = mp__rbuf_u64(r);
    size_t nbuf = 0;
    const void *buf = mp__rbuf_blob(r, &nbuf);
    if (r->err) return r->err;
    if (idx >= ntab || tab[idx] == MP__OSH_INVALID)
        return mp__rbuf_bad(r, "connection refers to a missing handle");
    if (nbuf > RBUF_CAP || max > SIZE_MAX || default_max > SIZE_MAX || (flags & ~31u))
        return mp__rbuf_bad(r, "connection state out of range");
    mp__stream_t *s;
    int rc = mp__stream_adopt(tab[idx], &s);
    if (rc) return rc;
    tab[idx] = MP__OSH_INVALID;
    mp_conn_t *c;
    rc = conn_new(s, flags & 1, flags & 2, &c);
    if (rc) {
        mp__stream_close(s);
        return rc;
    }
    c->broken = flags & 4;
    c->have_len = flags & 8;
    c->message = flags & 16;
    c->max_msg = (size_t)max;
    c->default_max = (size_t)default_max;
    c->msg_len = msg_len;
    if (nbuf) {
        c->rbuf = mp__malloc(RBUF_CAP);
        if (!c->rbuf) {
            mp_conn_free(c);
            return MP_ENOMEM;
        }
        memcpy(c->rbuf, buf, nbuf);
        c->rlen = nbuf;
    }
    *out = &c->h;
    return 0;
}

static void conn_drop_after_fork(mp_handle_t *h)
{
    mp_conn_t *c = (mp_conn_t *)h;
    if (!c->closed) {
        mp__stream_forget(c->s);
        c->s = NULL;
        c->closed = true;
    }
}

static int conn_waitable(mp_handle_t *h, mp__waitable_t *w, bool *ready_now)
{
    mp_conn_t *c = (mp_conn_t *)h;
    int rc = usable(c, true);
    if (rc && rc != MP_EPROTO) return rc;
    *ready_now = rc == MP_EPROTO || c->rpos < c->rlen || c->have_len;
    w->stream = c->s;
    return 0;
}

static void conn_free(mp_handle_t *h)
{
    mp_conn_free((mp_conn_t *)h);
}

const mp__htype_ops_t mp__conn_ops = {
    .name = "connection",
    .pack = conn_pack,
    .unpack = conn_unpack,
    .drop_after_fork = conn_drop_after_fork,
    .waitable = conn_waitable,
    .free = conn_free,
};
