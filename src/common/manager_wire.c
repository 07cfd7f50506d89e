/* The manager's wire format (docs/PROTOCOL.md): requests and replies as
 * plain little-endian integers and length-prefixed byte strings. Parsing
 * never trusts a count or a length it has not checked against the bytes
 * that remain. */
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"

/* What each op takes: integers (the object id first, for object ops) and
 * blobs. */
typedef struct {
    uint8_t nint, nblob;
} shape_t;

static shape_t shape_of(uint8_t op)
{
    switch (op) {
    case MP__M_HELLO: /* version, client id */
        return (shape_t){2, 0};
    case MP__M_OPEN: /* kind, p1, p2; name (empty: anonymous) */
        return (shape_t){3, 1};
    case MP__M_SHUTDOWN:
        return (shape_t){0, 0};
    case MP__M_REFRESH: /* oid */
    case MP__M_D_LEN:
    case MP__M_D_ITEMS:
    case MP__M_D_CLEAR:
    case MP__M_L_LEN:
    case MP__M_L_ITEMS:
    case MP__M_SEM_RELEASE:
    case MP__M_SEM_VALUE:
    case MP__M_EV_SET:
    case MP__M_EV_CLEAR:
    case MP__M_EV_IS_SET:
    case MP__M_Q_QSIZE:
    case MP__M_Q_TASK_DONE:
        return (shape_t){1, 0};
    case MP__M_GROW: /* oid, generation, stripe, bytes, entries */
        return (shape_t){5, 0};
    case MP__M_D_SET: /* oid; key, value */
        return (shape_t){1, 2};
    case MP__M_D_GET: /* oid; key */
    case MP__M_D_DEL:
    case MP__M_D_POP:
        return (shape_t){1, 1};
    case MP__M_D_INCR: /* oid, by; key */
        return (shape_t){2, 1};
    case MP__M_D_CAS: /* oid, expect present; key, expect, value */
        return (shape_t){2, 3};
    case MP__M_L_APPEND: /* oid; value */
        return (shape_t){1, 1};
    case MP__M_L_GET: /* oid, index */
    case MP__M_L_POP:
        return (shape_t){2, 0};
    case MP__M_L_SET: /* oid, index; value */
        return (shape_t){2, 1};
    case MP__M_LK_ACQUIRE: /* oid, thread, timeout */
        return (shape_t){3, 0};
    case MP__M_LK_RELEASE:  /* oid, thread */
    case MP__M_LK_DROP:     /* oid, thread */
    case MP__M_SEM_ACQUIRE: /* oid, timeout */
    case MP__M_EV_WAIT:
    case MP__M_Q_JOIN:
        return (shape_t){2, 0};
    case MP__M_Q_PUT: /* oid, timeout; item */
        return (shape_t){2, 1};
    case MP__M_Q_GET: /* oid, timeout, capacity (-1: any) */
        return (shape_t){3, 0};
    default:
        return (shape_t){0xff, 0xff};
    }
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int bad(const char *what)
{
    return mp__fail(MP_EPROTO, "manager message: %s", what);
}

int mp__mreq_decode(const void *buf, size_t len, mp__mreq_t *rq)
{
    const uint8_t *p = buf;
    memset(rq, 0, sizeof *rq);
    if (len < 3) return bad("shorter than its header");
    rq->op = p[0];
    rq->nint = p[1];
    rq->nblob = p[2];
    if (rq->nint > MP__M_MAX_INTS || rq->nblob > MP__M_MAX_BLOBS) return bad("too many fields");
    size_t pos = 3;
    if ((len - pos) / 8 < rq->nint) return bad("truncated integers");
    for (unsigned i = 0; i < rq->nint; i++, pos += 8)
        rq->i[i] = (int64_t)get_le(p + pos, 8);
    for (unsigned b = 0; b < rq->nblob; b++) {
        if (len - pos < 4) return bad("truncated length");
        uint64_t n = get_le(p + pos, 4);
        pos += 4;
        if (n > len - pos) return bad("a byte string runs past the end");
        rq->s[b] = p + pos;
        rq->n[b] = (size_t)n;
        pos += (size_t)n;
    }
    return pos == len ? 0 : bad("trailing bytes");
}

int mp__mreq_check(const mp__mreq_t *rq)
{
    shape_t s = shape_of(rq->op);
    if (s.nint == 0xff) return mp__fail(MP_EPROTO, "manager: unknown request 0x%02x", rq->op);
    if (s.nint != rq->nint || s.nblob != rq->nblob)
        return mp__fail(MP_EPROTO, "manager: request 0x%02x with %u integers and %u strings",
                        rq->op, rq->nint, rq->nblob);
    return 0;
}

size_t mp__mreq_encode(const mp__mreq_t *rq, uint8_t *scratch, mp_iov_t *iov)
{
    uint8_t *p = scratch;
    p[0] = rq->op;
    p[1] = rq->nint;
    p[2] = rq->nblob;
    size_t pos = 3;
    for (unsigned i = 0; i < rq->nint; i++, pos += 8)
        put_le(p + pos, (uint64_t)rq->i[i], 8);
    size_t n = 0;
    size_t start = 0;
    for (unsigned b = 0; b < rq->nblob; b++) {
        put_le(p + pos, rq->n[b], 4);
        pos += 4;
        iov[n++] = (mp_iov_t){p + start, pos - start};
        start = pos;
        if (rq->n[b]) iov[n++] = (mp_iov_t){(void *)rq->s[b], rq->n[b]};
    }
    if (pos > start) iov[n++] = (mp_iov_t){p + start, pos - start};
    return n;
}

/* ---- replies: i32 status, u8 nint, u32 nblob, integers, blobs ---- */

#define REP_HDR 9

int mp__mrep_decode(void *msg, size_t len, mp__mrep_t *rp)
{
    memset(rp, 0, sizeof *rp);
    rp->msg = msg;
    const uint8_t *p = msg;
    if (len < REP_HDR) return bad("reply shorter than its header");
    int64_t st = (int32_t)(uint32_t)get_le(p, 4);
    rp->nint = p[4];
    uint64_t nblob = get_le(p + 5, 4);
    if (st > 0 || st < MP_ESYS) return bad("reply with an unknown status");
    rp->status = (int)st;
    if (rp->nint > MP__M_MAX_INTS) return bad("reply with too many integers");
    size_t pos = REP_HDR;
    if ((len - pos) / 8 < rp->nint) return bad("truncated reply integers");
    for (unsigned i = 0; i < rp->nint; i++, pos += 8)
        rp->i[i] = (int64_t)get_le(p + pos, 8);
    /* Each blob takes at least its 4-byte length: bounds the arrays. */
    if (nblob > (len - pos) / 4) return bad("reply with more strings than bytes");
    rp->nblob = (uint32_t)nblob;
    if (nblob <= 2) {
        rp->s = rp->s1;
        rp->n = rp->n1;
    } else {
        rp->s = malloc((size_t)nblob * sizeof *rp->s);
        rp->n = malloc((size_t)nblob * sizeof *rp->n);
        if (!rp->s || !rp->n) return mp__fail(MP_ENOMEM, "reply of %u strings", rp->nblob);
    }
    for (uint32_t b = 0; b < rp->nblob; b++) {
        if (len - pos < 4) return bad("truncated reply length");
        uint64_t n = get_le(p + pos, 4);
        pos += 4;
        if (n > len - pos) return bad("a reply string runs past the end");
        rp->s[b] = p + pos;
        rp->n[b] = (size_t)n;
        pos += (size_t)n;
    }
    return pos == len ? 0 : bad("trailing reply bytes");
}

void mp__mrep_release(mp__mrep_t *rp)
{
    if (rp->s != rp->s1) free((void *)rp->s);
    if (rp->n != rp->n1) free(rp->n);
    mp_free(rp->msg);
    memset(rp, 0, sizeof *rp);
}

void mp__mrepw_begin(mp__mrepw_t *b, int status, uint8_t nint, const int64_t *ints)
{
    uint8_t hdr[REP_HDR + 8 * MP__M_MAX_INTS];
    if (nint > MP__M_MAX_INTS) nint = MP__M_MAX_INTS;
    b->w.len = 0;
    b->w.err = 0;
    b->nblob = 0;
    put_le(hdr, (uint32_t)(int32_t)status, 4);
    hdr[4] = nint;
    put_le(hdr + 5, 0, 4);
    for (unsigned i = 0; i < nint; i++)
        put_le(hdr + REP_HDR + 8 * i, (uint64_t)ints[i], 8);
    b->nblob_at = 5;
    mp__wbuf_raw(&b->w, hdr, REP_HDR + 8u * nint);
}

void mp__mrepw_blob(mp__mrepw_t *b, const void *p, size_t n)
{
    uint8_t len[4];
    if (n > UINT32_MAX) {
        b->w.err = mp__fail(MP_EMSGSIZE, "reply string of %zu bytes", n);
        return;
    }
    put_le(len, n, 4);
    mp__wbuf_raw(&b->w, len, 4);
    mp__wbuf_raw(&b->w, p, n);
    b->nblob++;
}

int mp__mrepw_end(mp__mrepw_t *b)
{
    if (!b->w.err) put_le(b->w.p + b->nblob_at, b->nblob, 4);
    return b->w.err;
}

void mp__mrepw_error(mp__mrepw_t *b, int status)
{
    const char *d = mp_last_error_detail();
    size_t n = strlen(d);
    mp__mrepw_begin(b, status, 0, NULL);
    mp__mrepw_blob(b, d, n < MP__M_DETAIL_MAX ? n : MP__M_DETAIL_MAX);
    mp__mrepw_end(b);
}
