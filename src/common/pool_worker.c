/* A pool worker: runs the initializer, says hello, then runs the units it
 * is sent, in order, and sends back each item's outcome.
 *
 * Outcomes are batched so that tiny tasks do not cost a write (and a
 * wake-up of the pool) each: a batch goes out at the end of every message
 * received, once it holds FLUSH_BYTES, once an item ran SLOW_NS or a
 * finished result waited MAX_DELAY_NS, and after every item when the pool
 * enforces a task timeout (so the pool knows which item is running). The
 * clock is read every `stride` items, a stride that grows while items are
 * tiny and drops to 1 when one is slow. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

#define SLOW_NS 200000u
#define MAX_DELAY_NS 1000000u
#define FLUSH_BYTES 65536u
/* A result this large goes out in a message of its own, without a copy. */
#define BIG_RESULT 65536u
#define MAX_STRIDE 256u
#define TEXT_MAX 2048u
/* Exit code of a worker sent something it cannot parse. */
#define EXIT_PROTOCOL 3

struct mp_buf {
    uint8_t *p; /* where the result goes: own, or a slot in the batch */
    size_t len, cap;
    uint8_t *own;
    size_t own_cap;
    char *text; /* TEXT_MAX bytes once a failure needed it */
    bool failed;
};

typedef struct {
    mp_task_fn f; /* NULL: not resolvable, see err and why */
    int err;
    char *why;
} wfn_t;

typedef struct {
    mp__plink_t *link;
    bool flush_each;
    uint64_t maxtasks, units_done;
    wfn_t *fns;
    size_t nfns;
    mp__precv_t in;
    mp__pbuf_t out;
    uint64_t nitems; /* outcomes in out */
    size_t run_at;   /* offset of the open run's count; 0: no run open */
    uint32_t run_n;
    uint64_t t_mark;   /* start of the busy time not yet reported */
    uint64_t t_check;  /* the last clock reading */
    uint64_t t_oldest; /* when the oldest outcome in out was ready, about */
    unsigned stride, countdown;
    mp_buf_t buf;
    bool out_warm;
} wk_t;

/* ---- what a task calls ---- */

static bool own_reserve(mp_buf_t *b, size_t n)
{
    if (n > b->own_cap) {
        size_t cap = b->own_cap ? b->own_cap : 256;
        while (cap < n)
            cap = cap > SIZE_MAX / 2 ? n : cap * 2;
        uint8_t *p = realloc(b->own, cap);
        if (!p) return false;
        b->own = p;
        b->own_cap = cap;
    }
    b->p = b->own;
    b->cap = b->own_cap;
    return true;
}

void *mp_buf_alloc(mp_buf_t *out, size_t n)
{
    if (!out) return NULL;
    /* Never NULL for n == 0 either: NULL means failure. */
    if ((n > out->cap || !out->p) && !own_reserve(out, n ? n : 1)) return NULL;
    out->len = n;
    return out->p;
}

/* n (at most 16) bytes from p to d: every load before any store, since p
 * may point into d; fixed-size copies compile to plain moves. */
static inline void small_copy(uint8_t *d, const uint8_t *p, size_t n)
{
    if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + n - 4, &b, 4);
    } else if (n) {
        uint8_t a = p[0], b = p[n / 2], c = p[n - 1];
        d[0] = a;
        d[n / 2] = b;
        d[n - 1] = c;
    }
}

int mp_buf_set(mp_buf_t *out, const void *p, size_t n)
{
    if (!out || (!p && n)) return mp__fail(MP_EINVAL, "mp_buf_set: NULL argument");
    /* Tiny results are the common case: no call into libc. */
    if (n <= 16 && n <= out->cap) {
        small_copy(out->p, p, n);
        out->len = n;
        return 0;
    }
    if (n <= out->cap) {
        memmove(out->p, p, n);
        out->len = n;
        return 0;
    }
    if (!own_reserve(out, n)) return mp__fail(MP_ENOMEM, "mp_buf_set: %zu bytes", n);
    memcpy(out->p, p, n);
    out->len = n;
    return 0;
}

static char *text_buf(mp_buf_t *b)
{
    if (!b->text) b->text = malloc(TEXT_MAX);
    return b->text;
}

int mp_task_fail(mp_buf_t *out, const char *fmt, ...)
{
    if (!out) return MP_ETASK;
    out->failed = true;
    char *t = text_buf(out);
    if (t && !fmt) {
        t[0] = 0;
    } else if (t) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t, TEXT_MAX, fmt, ap);
        va_end(ap);
    }
    return MP_ETASK;
}

/* ---- batching outcomes ---- */

static void close_run(wk_t *w)
{
    if (!w->run_at) return;
    if (w->run_n) {
        for (int i = 0; i < 4; i++)
            w->out.p[w->run_at + (size_t)i] = (uint8_t)(w->run_n >> (8 * i));
    } else {
        w->out.len = w->run_at - 1; /* drop the empty run's tag and count */
    }
    w->run_at = 0;
    w->run_n = 0;
}

static int send_batch(wk_t *w, uint64_t now, const mp_iov_t *extra, size_t nextra)
{
    uint8_t hdr[1 + 2 * MP__P_VARINT_MAX];
    mp__pbuf_t h = {hdr, 0, sizeof hdr};
    hdr[h.len++] = MP__PW_RESULTS;
    mp__pbuf_varint(&h, now - w->t_mark);
    mp__pbuf_varint(&h, w->nitems);
    mp_iov_t v[4] = {{hdr, h.len}, {w->out.p, w->out.len}};
    for (size_t i = 0; i < nextra; i++)
        v[2 + i] = extra[i];
    int rc = mp__plink_send(w->link, v, 2 + nextra);
    w->out.len = 0;
    w->nitems = 0;
    /* A send that waited for the pool to read is not busy time, nor part
     * of the next item's. */
    w->t_check = w->t_mark = mp__os_now_ns();
    return rc;
}

static int flush(wk_t *w)
{
    close_run(w);
    if (!w->nitems) return 0;
    w->t_check = mp__os_now_ns();
    return send_batch(w, w->t_check, NULL, 0);
}

static void count_item(wk_t *w)
{
    if (w->nitems++ == 0) w->t_oldest = w->t_check;
}

static int check_clock(wk_t *w)
{
    uint64_t now = mp__os_now_ns();
    uint64_t per = (now - w->t_check) / w->stride;
    w->t_check = now;
    if (per >= SLOW_NS)
        w->stride = 1;
    else if (w->stride < MAX_STRIDE)
        w->stride *= 2;
    w->countdown = w->stride;
    return per >= SLOW_NS || now - w->t_oldest >= MAX_DELAY_NS ? flush(w) : 0;
}

static inline int after_item(wk_t *w)
{
    if (w->flush_each || w->out.len >= FLUSH_BYTES) return flush(w);
    return --w->countdown ? 0 : check_clock(w);
}

/* Runs one item; the text of a failure is left in *why. */
static int call(wk_t *w, const wfn_t *fe, const void *in, size_t len, const char **why)
{
    mp_buf_t *b = &w->buf;
    b->len = 0;
    b->failed = false;
    if (!fe->f) {
        *why = fe->why ? fe->why : "the task function cannot be resolved";
        return fe->err;
    }
    int rc = fe->f(in, len, b);
    if (!rc && !b->failed) return 0;
    char *t = text_buf(b);
    if (t && !b->failed) snprintf(t, TEXT_MAX, "the task returned %d", rc);
    *why = t ? t : "the task failed";
    return MP_ETASK;
}

static int put_failure(wk_t *w, int code, const char *why)
{
    size_t n = strlen(why);
    int rc = mp__pbuf_reserve(&w->out, 1 + 2 * MP__P_VARINT_MAX + n);
    if (rc) return rc;
    mp__pbuf_varint(&w->out, mp__status_enc(code));
    mp__pbuf_varint(&w->out, n);
    memcpy(w->out.p + w->out.len, why, n);
    w->out.len += n;
    return 0;
}

/* Item i of a fixed unit failed (st, why) or gave a result of the wrong
 * size (st 0): a failure entry after the run so far. */
static int fixed_failure(wk_t *w, int st, const char *why, size_t out_size)
{
    mp_buf_t *b = &w->buf;
    if (!st) {
        st = MP_EMSGSIZE;
        char *t = text_buf(b);
        if (t)
            snprintf(t, TEXT_MAX, "the result has %zu bytes; map_fixed expects %zu", b->len,
                     out_size);
        why = t ? t : "the result has the wrong size";
    }
    close_run(w);
    int rc = mp__pbuf_reserve(&w->out, 1);
    if (rc) return rc;
    w->out.p[w->out.len++] = MP__PR_FAIL;
    return put_failure(w, st, why);
}

/* Items of a fixed unit until the next clock check or flush, at most n:
 * each result is written straight into its place in the batch. Returns
 * how many ran (a failed one included), or a negative code. */
static int64_t fixed_stretch(wk_t *w, const wfn_t *fe, const uint8_t *in, size_t n, size_t in_size,
                             size_t out_size)
{
    size_t k = w->flush_each ? 1 : w->countdown;
    if (out_size) {
        size_t fit = w->out.len < FLUSH_BYTES ? (FLUSH_BYTES - w->out.len) / out_size + 1 : 1;
        if (k > fit) k = fit;
    }
    if (k > n) k = n;
    if (w->run_n > UINT32_MAX - k) close_run(w);
    int rc = mp__pbuf_reserve(&w->out, 5 + k * out_size);
    if (rc) return rc;
    if (!w->run_at) {
        w->out.p[w->out.len++] = MP__PR_RUN;
        w->run_at = w->out.len;
        w->out.len += 4;
    }
    if (!w->nitems) w->t_oldest = w->t_check;
    mp_buf_t *b = &w->buf;
    size_t i = 0;
    for (; i < k; i++) {
        uint8_t *slot = w->out.p + w->out.len;
        b->p = slot;
        b->cap = out_size;
        const char *why = NULL;
        int st = call(w, fe, in + i * in_size, in_size, &why);
        if (st || b->len != out_size) {
            w->run_n += (uint32_t)i;
            rc = fixed_failure(w, st, why, out_size);
            i++;
            break;
        }
        if (b->p != slot) memcpy(slot, b->p, out_size);
        w->out.len += out_size;
    }
    if (w->run_at) w->run_n += (uint32_t)i;
    w->nitems += i;
    b->p = b->own;
    b->cap = b->own_cap;
    return rc ? rc : (int64_t)i;
}

/* A fixed unit's items, stretch by stretch. */
static int run_fixed(wk_t *w, const wfn_t *fe, const uint8_t *in, size_t count, size_t in_size,
                     size_t out_size)
{
    for (size_t i = 0; i < count;) {
        int64_t k = fixed_stretch(w, fe, in + i * in_size, count - i, in_size, out_size);
        if (k < 0) return (int)k;
        i += (size_t)k;
        int rc = 0;
        if (w->flush_each || w->out.len >= FLUSH_BYTES)
            rc = flush(w);
        else if (!(w->countdown -= (unsigned)k))
            rc = check_clock(w);
        if (rc) return rc;
    }
    return 0;
}

static int var_item(wk_t *w, const wfn_t *fe, const uint8_t *in, size_t len)
{
    const char *why = NULL;
    int st = call(w, fe, in, len, &why);
    mp_buf_t *b = &w->buf;
    int rc;
    if (st) {
        rc = put_failure(w, st, why);
    } else if (b->len >= BIG_RESULT) {
        rc = flush(w);
        if (rc) return rc;
        uint8_t head[1 + MP__P_VARINT_MAX];
        mp__pbuf_t h = {head, 0, sizeof head};
        mp__pbuf_varint(&h, 0);
        mp__pbuf_varint(&h, b->len);
        mp_iov_t v[2] = {{head, h.len}, {b->p, b->len}};
        w->nitems = 1;
        w->t_check = mp__os_now_ns();
        return send_batch(w, w->t_check, v, 2);
    } else {
        rc = mp__pbuf_reserve(&w->out, 1 + MP__P_VARINT_MAX + b->len);
        if (!rc) {
            mp__pbuf_varint(&w->out, 0);
            mp__pbuf_varint(&w->out, b->len);
            if (b->len) memcpy(w->out.p + w->out.len, b->p, b->len);
            w->out.len += b->len;
        }
    }
    if (rc) return rc;
    count_item(w);
    return after_item(w);
}

/* ---- reading what the pool sends ---- */

static int protocol_error(const char *what)
{
    return mp__fail(MP_EPROTO, "pool worker: %s", what);
}

static void define_fn(wk_t *w, mp__prd_t *r)
{
    uint64_t id = mp__prd_varint(r);
    uint64_t plen = mp__prd_varint(r);
    const uint8_t *path = mp__prd_bytes(r, plen);
    uint64_t offset = mp__prd_varint(r);
    uint64_t ident = mp__prd_varint(r);
    if (r->bad || id >= MP__P_MAX_FNS || memchr(path, 0, plen)) {
        r->bad = true;
        return;
    }
    if (id >= w->nfns) {
        wfn_t *v = realloc(w->fns, (id + 1) * sizeof *v);
        if (!v) {
            r->bad = true;
            return;
        }
        memset(v + w->nfns, 0, (id + 1 - w->nfns) * sizeof *v);
        w->fns = v;
        w->nfns = id + 1;
    }
    wfn_t *fe = &w->fns[id];
    char *module = malloc(plen + 1);
    void *addr = NULL;
    int rc = MP_ENOMEM;
    if (module) {
        memcpy(module, path, plen);
        module[plen] = 0;
        rc = mp__module_resolve(module, offset, ident, &addr);
        free(module);
    }
    free(fe->why);
    fe->why = NULL;
    fe->f = NULL;
    fe->err = rc;
    if (rc) {
        fe->why = mp__strdup(mp_last_error_detail());
        return;
    }
    /* A code address travels as data; converting it back is the point. */
    memcpy(&fe->f, &addr, sizeof fe->f);
}

/* One-time work (resolving a function, sizing a buffer) is no item's:
 * counted, it would make the pool hold back the next map of tiny items
 * as if they were slow. Only before any outcome of the message, so that
 * no item's time is lost. */
static void restart_clock(wk_t *w)
{
    if (!w->nitems) w->t_check = w->t_mark = mp__os_now_ns();
}

static int run_unit(wk_t *w, mp__prd_t *r)
{
    uint64_t id = mp__prd_varint(r);
    uint8_t mode = mp__prd_u8(r);
    uint64_t count = mp__prd_varint(r);
    if (r->bad || id >= w->nfns || (!w->fns[id].f && !w->fns[id].err))
        return protocol_error("a unit names an undefined function");
    const wfn_t *fe = &w->fns[id];
    /* Sized once, at the first unit (a worker that never gets one never
     * touches it): growing it while items run would make them look slow. */
    bool first = w->out.cap < 2 * FLUSH_BYTES;
    int rc = mp__pbuf_reserve(&w->out, 2 * FLUSH_BYTES);
    if (rc) return rc;
    if (first) restart_clock(w);
    if (mode == MP__PU_FIXED) {
        uint64_t in_size = mp__prd_varint(r), out_size = mp__prd_varint(r);
        mp__prd_align(r, MP__P_ALIGN_FIXED);
        if (in_size && count > UINT64_MAX / in_size) r->bad = true;
        const uint8_t *in = mp__prd_bytes(r, count * in_size);
        if (r->bad || out_size > SIZE_MAX / 2) return protocol_error("a fixed unit is truncated");
        rc = run_fixed(w, fe, in, (size_t)count, (size_t)in_size, (size_t)out_size);
    } else if (mode == MP__PU_VAR) {
        for (uint64_t i = 0; !rc && i < count; i++) {
            uint64_t len = mp__prd_varint(r);
            mp__prd_align(r, MP__P_ALIGN_VAR);
            const uint8_t *in = mp__prd_bytes(r, len);
            if (r->bad) return protocol_error("an item is truncated");
            rc = var_item(w, fe, in, (size_t)len);
        }
    } else {
        return protocol_error("a unit of unknown mode");
    }
    close_run(w);
    w->units_done++;
    return rc;
}

/* 1: the worker is done (told to quit, or its quota reached). */
static int handle_message(wk_t *w, const void *msg, size_t len)
{
    mp__prd_t r;
    mp__prd_init(&r, msg, len);
    while (mp__prd_more(&r)) {
        uint8_t tag = mp__prd_u8(&r);
        int rc = 0;
        if (tag == MP__PW_DEF) {
            define_fn(w, &r);
            restart_clock(w);
            if (r.bad) rc = protocol_error("a bad function definition");
        } else if (tag == MP__PW_UNIT) {
            rc = run_unit(w, &r);
            if (!rc && w->maxtasks && w->units_done >= w->maxtasks) return 1;
        } else if (tag == MP__PW_QUIT) {
            return 1;
        } else {
            rc = protocol_error("an unknown record");
        }
        if (rc) return rc;
    }
    return 0;
}

/* Once the first tasks ran and their results went out, while the pool
 * has nothing more for this worker: every page of its buffers touched, so
 * that a large map later pays no page fault per page it fills. */
static void warm(wk_t *w)
{
    mp__precv_warm(&w->in, MP__P_RECV_WARM);
    if (w->out_warm) return;
    mp__plink_warm(w->link);
    memset(w->out.p, 0, w->out.cap);
    w->out_warm = true;
}

/* 1 once the worker is done (told to quit, its quota reached, or the pool
 * gone), or a negative code. */
static int serve(wk_t *w)
{
    for (;;) {
        const uint8_t *msg;
        size_t len;
        int rc = mp__plink_recv(w->link, &w->in, &msg, &len);
        if (rc) return rc == MP_EOF ? 1 : rc;
        /* A lone quit needs no clock (in a new child, its first reading
         * costs page faults). */
        if (len == 1 && msg[0] == MP__PW_QUIT) return 1;
        w->t_check = w->t_mark = mp__os_now_ns();
        w->countdown = w->stride = 1;
        rc = handle_message(w, msg, len);
        if (rc < 0) return rc;
        int frc = flush(w);
        if (frc) return frc == MP_EOF ? 1 : frc;
        if (rc) return rc;
        if (w->units_done) warm(w);
    }
}

/* ---- start ---- */

static int say_hello(wk_t *w, int init_rc, const char *why)
{
    size_t n = init_rc && why ? strlen(why) : 0;
    mp__pbuf_t h = {0};
    int rc = mp__pbuf_reserve(&h, 1 + 2 * MP__P_VARINT_MAX + n);
    if (rc) return rc;
    h.p[h.len++] = MP__PW_HELLO;
    mp__pbuf_varint(&h, mp__zigzag_enc(init_rc));
    mp__pbuf_varint(&h, n);
    if (n) memcpy(h.p + h.len, why, n);
    mp_iov_t v = {h.p, h.len + n};
    rc = mp__plink_send(w->link, &v, 1);
    mp__pbuf_release(&h);
    return rc;
}

static int run_initializer(const mp__wconfig_t *c, mp_args_t *initargs, const char **why)
{
    void *addr = NULL;
    int rc = mp__module_resolve(c->init.module, c->init.offset, c->init.ident, &addr);
    if (rc) {
        *why = mp_last_error_detail();
        return rc;
    }
    int (*init)(mp_args_t *);
    memcpy(&init, &addr, sizeof init);
    rc = init(initargs);
    if (rc) *why = "the initializer failed";
    return rc;
}

static void worker_release(wk_t *w)
{
    for (size_t i = 0; i < w->nfns; i++)
        free(w->fns[i].why);
    free(w->fns);
    mp__pbuf_release(&w->out);
    mp__precv_release(&w->in);
    free(w->buf.own);
    free(w->buf.text);
    mp__plink_free(w->link);
}

int mp__pool_worker_main(mp_args_t *args)
{
    const void *cfg;
    size_t cfg_len;
    mp_handle_t *h;
    mp__wconfig_t c;
    if (mp_args_bytes(args, 0, &cfg, &cfg_len) || mp_args_handle(args, 1, &h) ||
        mp__wconfig_unpack(cfg, cfg_len, &c))
        return EXIT_PROTOCOL;
    wk_t w;
    memset(&w, 0, sizeof w);
    w.flush_each = c.flush_each;
    w.maxtasks = c.maxtasks;
    mp_args_t *initargs = NULL;
    int rc = mp__plink_wrap(h, &w.link);
    if (!rc) rc = mp_args_create(&initargs);
    if (!rc) rc = mp__pool_args_append(initargs, args, 2);
    if (rc) {
        free(c.init.module);
        mp_args_free(initargs);
        worker_release(&w);
        return EXIT_PROTOCOL;
    }
    const char *why = NULL;
    int init_rc = c.init.module ? run_initializer(&c, initargs, &why) : 0;
    free(c.init.module);
    rc = c.quiet ? 0 : say_hello(&w, init_rc, why);
    int code = 0;
    if (!rc && !init_rc) {
        code = serve(&w) < 0 ? EXIT_PROTOCOL : 0;
    } else if (init_rc) {
        code = 1;
    }
    /* Output the tasks wrote goes out before the pool sees this worker end. */
    fflush(NULL);
    worker_release(&w);
    mp_args_free(initargs);
    return code;
}
