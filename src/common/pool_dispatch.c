/* Batches out to the workers and their outcomes back in.
 *
 * A worker gets more units while it is busy, so that it never waits for a
 * round trip: up to TARGET_NS of work in all, by a running estimate of
 * how long an item of each task function takes (workers report how long
 * they were busy). The sum counts what the worker holds, whatever its
 * function, so a unit goes behind others only if they are known to end
 * soon: a task of unknown or long duration may be one that waits for
 * another task (a consumer waiting for its producer), and whatever queued
 * behind it on its worker would wait with it, though another worker is
 * idle or about to be. Those go only to idle workers, as in CPython's
 * pool.
 *
 * A thread that must keep reading (the handler) only writes what surely
 * fits in the pipe, SAFE_BYTES, or anything to an idle worker, which is
 * reading; a thread that waits anyway may write more. */
#include <stdlib.h>
#include <string.h>

#include "pool_internal.h"

#define TARGET_NS 2000000u
/* Below every backend's pipe buffer (macOS socketpairs hold 8 KiB). */
#define SAFE_BYTES 8192u
/* Batches are cut at these sizes so that a worker has the next batch
 * before it runs dry: outcomes come back at least once per batch. */
#define BATCH_BYTES 4096u
#define BATCH_BYTES_BLOCK 65536u
/* A batch buffer grown past this is released after its write. */
#define KEEP_BYTES (1u << 20)
/* map_fixed chunks this large go out from the caller's array. */
#define DIRECT_BYTES 2048u

/* ---- FIFOs of units (capacity a power of two) ---- */

int mp__uring_push(mp__uring_t *q, const mp__unit_t *u, bool front)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        mp__unit_t *v = malloc(cap * sizeof *v);
        if (!v) return mp__fail(MP_ENOMEM, "a queue of %zu units", cap);
        for (size_t i = 0; i < q->len; i++)
            v[i] = *mp__uring_at(q, i);
        free(q->v);
        q->v = v;
        q->cap = cap;
        q->head = 0;
    }
    if (front) {
        q->head = (q->head + q->cap - 1) & (q->cap - 1);
        q->v[q->head] = *u;
    } else {
        q->v[(q->head + q->len) & (q->cap - 1)] = *u;
    }
    q->len++;
    return 0;
}

mp__unit_t *mp__uring_at(mp__uring_t *q, size_t i)
{
    return &q->v[(q->head + i) & (q->cap - 1)];
}

void mp__uring_pop(mp__uring_t *q)
{
    q->head = (q->head + 1) & (q->cap - 1);
    q->len--;
}

void mp__uring_release(mp__uring_t *q)
{
    free(q->v);
    memset(q, 0, sizeof *q);
}

void mp__pool_purge_retry(mp_pool_t *p, mp__job_t *j)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->retry.len; i++) {
        mp__unit_t u = *mp__uring_at(&p->retry, i);
        if (u.job != j) *mp__uring_at(&p->retry, keep++) = u;
    }
    p->retry.len = keep;
}

/* ---- task functions ---- */

int mp__pool_fn_id(mp_pool_t *p, mp_task_fn f, uint32_t *id)
{
    for (size_t i = 0; i < p->nfns; i++)
        if (p->fns[i].f == f) {
            *id = (uint32_t)i;
            return 0;
        }
    if (p->nfns >= MP__P_MAX_FNS)
        return mp__fail(MP_EINVAL, "more than %u task functions in one pool", MP__P_MAX_FNS);
    if (p->nfns == p->fcap) {
        size_t cap = p->fcap ? p->fcap * 2 : 8;
        mp__pfn_t *v = realloc(p->fns, cap * sizeof *v);
        if (!v) return mp__fail(MP_ENOMEM, "a table of %zu task functions", cap);
        p->fns = v;
        p->fcap = cap;
    }
    mp__pfn_t *e = &p->fns[p->nfns];
    const void *addr;
    memcpy(&addr, &f, sizeof addr);
    int rc = mp__module_locate(addr, &e->ref.module, &e->ref.offset, &e->ref.ident);
    if (rc) return rc;
    e->f = f;
    /* No estimate yet: a stale one (the table is reallocated) would let
     * a task of unknown duration be queued behind another. */
    e->est_ns = 0;
    *id = (uint32_t)p->nfns++;
    return 0;
}

static size_t def_bytes(const mp_pool_t *p, uint32_t fn)
{
    return 1 + 4 * MP__P_VARINT_MAX + strlen(p->fns[fn].ref.module);
}

static void encode_def(mp_pool_t *p, mp__pbuf_t *b, uint32_t fn)
{
    const mp__fnref_t *r = &p->fns[fn].ref;
    size_t n = strlen(r->module);
    b->p[b->len++] = MP__PW_DEF;
    mp__pbuf_varint(b, fn);
    mp__pbuf_varint(b, n);
    memcpy(b->p + b->len, r->module, n);
    b->len += n;
    mp__pbuf_varint(b, r->offset);
    mp__pbuf_varint(b, r->ident);
}

/* ---- units ---- */

/* The encoded size of u, at most. */
static size_t unit_bytes(const mp__unit_t *u)
{
    const mp__job_t *j = u->job;
    size_t b = 2 + 5 * MP__P_VARINT_MAX + MP__P_ALIGN_FIXED;
    if (j->fin) return b + u->count * j->in_size;
    for (size_t i = 0; i < u->count; i++)
        b += MP__P_VARINT_MAX + MP__P_ALIGN_VAR + j->vin[u->first + i].len;
    return b;
}

/* Room for one more run written from a caller's array. */
static bool seg_room(mp__worker_t *w)
{
    if (w->nsegs < w->segcap) return true;
    size_t cap = w->segcap ? w->segcap * 2 : 8;
    mp__pseg_t *s = realloc(w->segs, cap * sizeof *s);
    if (!s) return false;
    w->segs = s;
    mp_iov_t *v = realloc(w->iov, (2 * cap + 1) * sizeof *v);
    if (!v) return false;
    w->iov = v;
    w->segcap = cap;
    return true;
}

/* Needs unit_bytes(u) reserved. A map_fixed chunk of DIRECT_BYTES or more
 * is not copied: the write reads it from the caller's array, which the
 * call keeps until every such write ended (see all_done in pool_jobs.c). */
static void encode_unit(mp__worker_t *w, const mp__unit_t *u)
{
    mp__pbuf_t *b = &w->out;
    mp__job_t *j = u->job;
    b->p[b->len++] = MP__PW_UNIT;
    mp__pbuf_varint(b, j->fn);
    b->p[b->len++] = j->fin ? MP__PU_FIXED : MP__PU_VAR;
    mp__pbuf_varint(b, u->count);
    if (j->fin) {
        mp__pbuf_varint(b, j->in_size);
        mp__pbuf_varint(b, j->out_size);
        /* Aligned at its offset in the message, the runs included. */
        while ((b->len + w->ext) % MP__P_ALIGN_FIXED)
            b->p[b->len++] = 0;
        size_t n = u->count * j->in_size;
        const uint8_t *src = j->fin + u->first * j->in_size;
        if (n >= DIRECT_BYTES && j->kind == MP__J_FIXED && seg_room(w)) {
            w->segs[w->nsegs++] = (mp__pseg_t){b->len, src, n, j};
            w->ext += n;
            j->writing++;
            return;
        }
        if (n) memcpy(b->p + b->len, src, n);
        b->len += n;
        return;
    }
    for (size_t i = 0; i < u->count; i++) {
        const mp_iov_t *v = &j->vin[u->first + i];
        mp__pbuf_varint(b, v->len);
        mp__pbuf_pad(b, MP__P_ALIGN_VAR);
        if (v->len) memcpy(b->p + b->len, v->data, v->len);
        b->len += v->len;
    }
}

/* The next unit to dispatch: units to run again first, then the oldest
 * job's next chunk. */
static bool peek(mp_pool_t *p, mp__unit_t *u, bool *retry)
{
    if (p->retry.len) {
        *u = *mp__uring_at(&p->retry, 0);
        *retry = true;
        return true;
    }
    mp__job_t *j = p->qhead;
    if (!j) return false;
    u->job = j;
    u->first = j->next;
    u->count = j->n - j->next < j->chunk ? j->n - j->next : j->chunk;
    *retry = false;
    return true;
}

static void take(mp_pool_t *p, const mp__unit_t *u, bool retry)
{
    if (retry) {
        mp__uring_pop(&p->retry);
        return;
    }
    mp__job_t *j = u->job;
    j->next += u->count;
    if (j->next == j->n) {
        p->qhead = j->next_job;
        if (!p->qhead) p->qtail = NULL;
        j->next_job = NULL;
        j->queued = false;
    }
}

static bool has_fn(mp__worker_t *w, uint32_t fn)
{
    return fn < w->has_fn_cap && w->has_fn[fn];
}

static int mark_fn(mp__worker_t *w, uint32_t fn)
{
    if (fn >= w->has_fn_cap) {
        size_t cap = w->has_fn_cap ? w->has_fn_cap : 8;
        while (cap <= fn)
            cap *= 2;
        uint8_t *v = realloc(w->has_fn, cap);
        if (!v) return mp__fail(MP_ENOMEM, "a table of %zu functions", cap);
        memset(v + w->has_fn_cap, 0, cap - w->has_fn_cap);
        w->has_fn = v;
        w->has_fn_cap = cap;
    }
    w->has_fn[fn] = 1;
    return 0;
}

static bool quota_left(const mp_pool_t *p, const mp__worker_t *w)
{
    return !p->maxtasks || w->units_sent < p->maxtasks;
}

/* Whether w has room for more items of function fn beside what it holds. */
static bool has_room(const mp_pool_t *p, const mp__worker_t *w, int mode, uint32_t fn)
{
    if (!w->items) return true;
    uint64_t est = p->fns[fn].est_ns;
    if (mode == MP__D_IDLE || w->blind || !est || est > TARGET_NS || w->work_ns > TARGET_NS - est)
        return false;
    return mode == MP__D_BLOCK || w->bytes < SAFE_BYTES;
}

static mp__worker_t *pick(mp_pool_t *p, int mode, uint32_t fn)
{
    mp__worker_t *best = NULL;
    for (size_t i = 0; i < p->nws; i++) {
        mp__worker_t *w = p->ws[i];
        if (w->state != MP__W_READY || w->sending || !quota_left(p, w) || !has_room(p, w, mode, fn))
            continue;
        if (!best || w->items < best->items) best = w;
    }
    return best;
}

/* The estimated time of count items of est_ns each, capped past
 * TARGET_NS (a worker holding that much gets nothing more anyway). */
static uint64_t unit_ns(uint64_t est_ns, size_t count)
{
    return est_ns && count > TARGET_NS / est_ns ? TARGET_NS + 1 : est_ns * count;
}

/* What of u's estimated time is left once got of its items are answered. */
static uint64_t unit_left_ns(const mp__unit_t *u, size_t got)
{
    return u->est_ns * (u->count - got) / u->count;
}

/* Moves units into w's batch while it has room; returns how many. The
 * first unit for an idle worker goes whatever its size. */
static size_t fill(mp_pool_t *p, mp__worker_t *w, int mode)
{
    mp__pbuf_t *b = &w->out;
    size_t cap = mode == MP__D_BLOCK ? BATCH_BYTES_BLOCK : BATCH_BYTES;
    int room_mode = mode == MP__D_IDLE ? MP__D_NOBLOCK : mode;
    size_t units = 0;
    mp__unit_t u;
    bool retry;
    b->len = 0;
    w->nsegs = w->ext = 0;
    while (quota_left(p, w) && peek(p, &u, &retry)) {
        uint32_t fn = u.job->fn;
        bool define = !has_fn(w, fn);
        size_t need = unit_bytes(&u) + (define ? def_bytes(p, fn) : 0);
        size_t wire = b->len + w->ext;
        if (w->items && (!has_room(p, w, room_mode, fn) || (wire && wire + need > cap) ||
                         (mode != MP__D_BLOCK && w->bytes + need > SAFE_BYTES)))
            break;
        if (mp__pbuf_reserve(b, need) || (define && mark_fn(w, fn))) break;
        u.bytes = need;
        u.blind = !p->fns[fn].est_ns;
        u.est_ns = unit_ns(p->fns[fn].est_ns, u.count);
        if (mp__uring_push(&w->held, &u, false)) {
            if (define) w->has_fn[fn] = 0;
            break;
        }
        if (define) encode_def(p, b, fn);
        encode_unit(w, &u);
        take(p, &u, retry);
        w->items += u.count;
        w->bytes += need;
        w->blind += u.blind;
        w->work_ns += u.est_ns;
        w->units_sent++;
        units++;
    }
    return units;
}

/* Marks w's batch as being written (no other thread fills it meanwhile). */
static void send_begin(mp_pool_t *p, mp__worker_t *w, bool was_idle)
{
    w->sending = true;
    if (p->timeout_ms && was_idle) {
        w->head_start = mp__os_now_ns();
        if (w->head_start + (uint64_t)p->timeout_ms * 1000000u < p->sleep_until) mp__pool_wake(p);
    }
}

static void send_end(mp_pool_t *p, mp__worker_t *w, int rc)
{
    w->sending = false;
    for (size_t i = 0; i < w->nsegs; i++) {
        mp__job_t *j = w->segs[i].job;
        /* Its caller may be waiting for this write alone. */
        if (!--j->writing && j->done == j->n) mp__cond_broadcast(p->cv);
    }
    w->nsegs = w->ext = 0;
    if (w->out.cap > KEEP_BYTES) mp__pbuf_release(&w->out);
    /* A worker that cannot be written to is dead or broken: its end shows
     * the handler, which fails what it held. */
    if (rc && w->state != MP__W_GONE) mp_process_kill(w->proc);
    if (w->state == MP__W_GONE || rc) {
        mp__pool_wake(p);
        mp__cond_broadcast(p->cv);
    }
}

static int send_out(mp__worker_t *w)
{
    mp_iov_t one = {w->out.p, w->out.len};
    if (!w->nsegs) return mp__plink_send(w->link, &one, 1);
    size_t n = 0, pos = 0;
    for (size_t i = 0; i < w->nsegs; i++) {
        const mp__pseg_t *s = &w->segs[i];
        w->iov[n++] = (mp_iov_t){w->out.p + pos, s->at - pos};
        w->iov[n++] = (mp_iov_t){(void *)s->data, s->len};
        pos = s->at;
    }
    w->iov[n++] = (mp_iov_t){w->out.p + pos, w->out.len - pos};
    return mp__plink_send(w->link, w->iov, n);
}

void mp__pool_send(mp_pool_t *p, mp__worker_t *w, bool was_idle)
{
    send_begin(p, w, was_idle);
    mp__mutex_unlock(p->mu);
    int rc = send_out(w);
    mp__mutex_lock(p->mu);
    send_end(p, w, rc);
}

/* The function of the next unit to dispatch, if there is one. */
static bool next_fn(mp_pool_t *p, uint32_t *fn)
{
    mp__unit_t u;
    bool retry;
    if (p->state == MP__S_TERM || p->broken || !peek(p, &u, &retry)) return false;
    *fn = u.job->fn;
    return true;
}

/* Batches for up to this many workers are filled before any is written,
 * so that idle workers all start at once and the mutex is released once
 * per round, not once per worker. */
#define SEND_ROUND 16

void mp__pool_dispatch(mp_pool_t *p, int mode)
{
    for (;;) {
        mp__worker_t *v[SEND_ROUND];
        size_t n = 0;
        uint32_t fn;
        while (n < SEND_ROUND && next_fn(p, &fn)) {
            mp__worker_t *w = pick(p, mode, fn);
            bool was_idle = w && !w->items;
            if (!w || !fill(p, w, mode)) break;
            send_begin(p, w, was_idle);
            v[n++] = w;
        }
        if (!n) break;
        int rc[SEND_ROUND];
        mp__mutex_unlock(p->mu);
        for (size_t i = 0; i < n; i++)
            rc[i] = send_out(v[i]);
        mp__mutex_lock(p->mu);
        for (size_t i = 0; i < n; i++)
            send_end(p, v[i], rc[i]);
    }
    uint32_t fn;
    if (mode != MP__D_BLOCK) p->need_blocker = next_fn(p, &fn) && pick(p, MP__D_BLOCK, fn);
}

/* ---- outcomes ---- */

static bool hello(mp_pool_t *p, mp__worker_t *w, mp__prd_t *r)
{
    int64_t rc = mp__zigzag_dec(mp__prd_varint(r));
    uint64_t n = mp__prd_varint(r);
    const uint8_t *why = mp__prd_bytes(r, n);
    if (r->bad || r->p != r->end) return false;
    w->greeted = true;
    if (rc)
        mp__pool_break(p, "the initializer failed in worker %lld (%lld): %.*s",
                       (long long)mp_process_pid(w->proc), (long long)rc, (int)n,
                       (const char *)why);
    else if (w->state == MP__W_STARTING)
        w->state = MP__W_READY;
    return true;
}

/* One fixed unit's entry: a run of successes or one failure; returns how
 * many items it answered (0: malformed). */
static size_t fixed_entry(mp__job_t *j, size_t idx, size_t left, mp__prd_t *r)
{
    uint8_t tag = mp__prd_u8(r);
    if (tag == MP__PR_RUN) {
        const uint8_t *c = mp__prd_bytes(r, 4);
        if (!c) return 0;
        size_t cnt = (size_t)c[0] | (size_t)c[1] << 8 | (size_t)c[2] << 16 | (size_t)c[3] << 24;
        if (!cnt || cnt > left || (j->out_size && cnt > SIZE_MAX / j->out_size)) return 0;
        const uint8_t *data = mp__prd_bytes(r, (uint64_t)cnt * j->out_size);
        if (!data) return 0;
        mp__job_fixed_ok(j, idx, cnt, data);
        return cnt;
    }
    if (tag != MP__PR_FAIL) return 0;
    int st = mp__status_dec(mp__prd_varint(r));
    uint64_t tlen = mp__prd_varint(r);
    const uint8_t *text = mp__prd_bytes(r, tlen);
    if (!text || !st) return 0;
    mp__job_item(j, idx, st, NULL, 0, (const char *)text, (size_t)tlen);
    return 1;
}

static size_t var_entry(mp__job_t *j, size_t idx, mp__prd_t *r)
{
    uint64_t sv = mp__prd_varint(r);
    uint64_t len = mp__prd_varint(r);
    const uint8_t *data = mp__prd_bytes(r, len);
    if (!data) return 0;
    if (sv)
        mp__job_item(j, idx, mp__status_dec(sv), NULL, 0, (const char *)data, (size_t)len);
    else
        mp__job_item(j, idx, 0, data, (size_t)len, NULL, 0);
    return 1;
}

/* Folds the time items of fn took into its estimate: an average over a
 * batch of LEARN_ITEMS or more replaces it (a few items from a cold
 * start must not hold back a long map of tiny ones). */
#define LEARN_ITEMS 64u
static void learn(mp_pool_t *p, uint32_t fn, uint64_t per, uint64_t n)
{
    uint64_t *e = &p->fns[fn].est_ns;
    per = per ? per : 1;
    *e = *e && n < LEARN_ITEMS ? (3 * *e + per) / 4 : per;
}

static bool results(mp_pool_t *p, mp__worker_t *w, mp__prd_t *r)
{
    uint64_t busy = mp__prd_varint(r);
    uint64_t n = mp__prd_varint(r);
    if (r->bad || n > w->items) return false;
    uint64_t per = n ? busy / n : 0, total = n;
    uint32_t last_fn = UINT32_MAX;
    while (n) {
        mp__unit_t *u = mp__uring_at(&w->held, 0);
        size_t left = u->count - w->got;
        if (left > n) left = (size_t)n;
        size_t idx = u->first + w->got;
        /* A worker's first results are not learnt from: its first items
         * ran cold (code and data paged in, buffers sized) and would make
         * tiny tasks look slow for the next map. */
        if (u->job->fn != last_fn && w->answered) {
            last_fn = u->job->fn;
            learn(p, last_fn, per, total);
        }
        size_t m = u->job->fin ? fixed_entry(u->job, idx, left, r) : var_entry(u->job, idx, r);
        if (!m) return false;
        n -= m;
        w->items -= m;
        w->work_ns -= unit_left_ns(u, w->got) - unit_left_ns(u, w->got + m);
        w->got += m;
        if (w->got == u->count) {
            w->bytes -= u->bytes;
            w->blind -= u->blind;
            w->got = 0;
            mp__uring_pop(&w->held);
        }
    }
    if (r->p != r->end) return false;
    p->got_results = w->answered = true;
    if (w->items && p->timeout_ms) w->head_start = mp__os_now_ns();
    return true;
}

void mp__pool_on_message(mp_pool_t *p, mp__worker_t *w, const uint8_t *msg, size_t len)
{
    mp__prd_t r;
    mp__prd_init(&r, msg, len);
    uint8_t tag = mp__prd_u8(&r);
    bool ok = false;
    if (tag == MP__PW_HELLO && !w->greeted)
        ok = hello(p, w, &r);
    else if (tag == MP__PW_RESULTS && w->greeted)
        ok = results(p, w, &r);
    if (!ok) mp__pool_worker_lost(p, w, MP_EWORKER, "the worker sent a malformed message");
}
