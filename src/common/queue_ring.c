/* The queue's data structure in shared memory (queue_internal.h).
 *
 * Entries are 16-byte aligned: a header {tag, len, type}, then the item
 * (DATA) or a reference {off, size, cap} into extension space (BIG: an
 * item of its own; LINK: the next chain buffer). A ring entry is there
 * when its tag is the mix of its position and the queue's key: consumers
 * read the entry's own line to learn that, and no counter the producers
 * would have to write on every put. A chain buffer starts with an end
 * word, whose top bit seals it (the reader goes back to the ring).
 *
 * Producers always leave room for one LINK in the ring, so a full ring can
 * still point to a chain. An entry is written whole, then the state switch
 * makes it part of the queue, then its tag (or the buffer's end) makes it
 * visible; a repair re-tags the last ring entry of the state. Memory of
 * extension space is allocated in the same switch that publishes the
 * entry naming it, so a producer killed half-way loses nothing: the next
 * one hands out the same space again. */
#include <stdlib.h>
#include <string.h>

#include "queue_internal.h"

enum { E_DATA = 1, E_BIG = 2, E_LINK = 3 };
#define E_KIND 0xffu
#define E_UNTRACKED 0x100u /* the consumer gives the range back when done */
#define E_HDR 16u
#define E_REF 48u   /* header + q_ref_t, padded: a BIG or LINK entry */
#define BUF_HDR 64u /* a chain buffer's end word, then entries */
#define SEALED ((uint64_t)1 << 63)
#define KEEP_RINGS 8u /* extension space kept for reuse, in rings */
#define AGAIN 1       /* internal: the reader moved; look again */

/* tag_lo is stored last: a reader that sees it sees the rest. */
typedef struct {
    _Atomic uint32_t tag_lo;
    uint32_t tag_hi;
    uint32_t len, type;
} q_ent_t;

typedef struct {
    uint64_t off, size, cap;
} q_ref_t;

_Static_assert(sizeof(q_ent_t) == E_HDR && E_HDR + sizeof(q_ref_t) <= E_REF, "entry layout");

static uint64_t align16(uint64_t v)
{
    return (v + 15) & ~(uint64_t)15;
}

static uint64_t round_up(uint64_t v, uint64_t unit)
{
    return (v + unit - 1) / unit * unit;
}

static uint64_t pow2_at_least(uint64_t v)
{
    uint64_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static int corrupt(const char *what)
{
    return mp__fail(MP_EPROTO, "queue memory is corrupt: %s", what);
}

/* Chain buffers are one ring long (at least one unit). */
static uint64_t buffer_cap(const q_shm_t *q)
{
    uint64_t unit = mp__seg_ext_unit();
    return q->ring_cap < unit ? unit : q->ring_cap;
}

/* ---- the ring ---- */

static void ring_write(q_shm_t *q, uint64_t pos, const void *src, size_t n)
{
    if (!n) return;
    uint64_t o = pos & (q->ring_cap - 1);
    size_t first = n < q->ring_cap - o ? n : (size_t)(q->ring_cap - o);
    memcpy(q_ring(q) + o, src, first);
    memcpy(q_ring(q), (const uint8_t *)src + first, n - first);
}

static void ring_read(q_shm_t *q, uint64_t pos, void *dst, size_t n)
{
    if (!n) return;
    uint64_t o = pos & (q->ring_cap - 1);
    size_t first = n < q->ring_cap - o ? n : (size_t)(q->ring_cap - o);
    memcpy(dst, q_ring(q) + o, first);
    memcpy((uint8_t *)dst + first, q_ring(q), n - first);
}

/* Headers never wrap: positions and the ring are multiples of 16. */
static q_ent_t *ring_entry(q_shm_t *q, uint64_t pos)
{
    return (q_ent_t *)(void *)(q_ring(q) + (pos & (q->ring_cap - 1)));
}

/* The tag of the entry at pos (never 0, the value of fresh memory). Any
 * other position, including this slot's in other laps, has another. */
static uint64_t tag_of(const q_shm_t *q, uint64_t pos)
{
    uint64_t z = pos + q->key;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return (z ^ (z >> 31)) | 1;
}

static bool tag_ok(q_shm_t *q, uint64_t pos)
{
    q_ent_t *e = ring_entry(q, pos);
    uint64_t t = tag_of(q, pos);
    return atomic_load_explicit(&e->tag_lo, memory_order_acquire) == (uint32_t)t &&
           e->tag_hi == (uint32_t)(t >> 32);
}

/* Writes the header of the entry at pos, all but what publishes it. */
static void ring_header(q_shm_t *q, uint64_t pos, uint32_t len, uint32_t type)
{
    q_ent_t *e = ring_entry(q, pos);
    e->tag_hi = (uint32_t)(tag_of(q, pos) >> 32);
    e->len = len;
    e->type = type;
}

static void ring_publish(q_shm_t *q, uint64_t pos)
{
    atomic_store_explicit(&ring_entry(q, pos)->tag_lo, (uint32_t)tag_of(q, pos),
                          memory_order_release);
}

/* Free bytes after tail, looking at the consumers' head only when the
 * last one seen leaves less than need. */
static uint64_t ring_free(q_shm_t *q, uint64_t tail, uint64_t need)
{
    uint64_t head = atomic_load_explicit(&q->head_hint, memory_order_relaxed);
    if (tail - head > q->ring_cap || q->ring_cap - (tail - head) < need) {
        head = atomic_load_explicit(&q->head_pub, memory_order_acquire);
        atomic_store_explicit(&q->head_hint, head, memory_order_relaxed);
    }
    return tail - head > q->ring_cap ? 0 : q->ring_cap - (tail - head);
}

/* ---- windows on extension space ---- */

void mp__q_cache_clear(q_cache_t *c)
{
    for (unsigned i = 0; i < Q_MAPS; i++)
        if (c->w[i].p) mp__seg_ext_unmap(c->w[i].p, c->w[i].len);
    memset(c, 0, sizeof *c);
}

static void cache_drop(q_cache_t *c, uint64_t off)
{
    for (unsigned i = 0; i < Q_MAPS; i++)
        if (c->w[i].p && c->w[i].off == off) {
            mp__seg_ext_unmap(c->w[i].p, c->w[i].len);
            memset(&c->w[i], 0, sizeof c->w[i]);
        }
}

/* [off, off+len) mapped, kept for later calls; the least recently used
 * window makes room. NULL with *rc on failure. */
static uint8_t *cache_map(mp_queue_t *h, q_cache_t *c, uint64_t off, uint64_t len, int *rc)
{
    q_win_t *last = &c->w[c->last];
    if (last->p && last->off == off && last->len >= len) {
        last->used = ++c->tick; /* callers hold several windows at once */
        return last->p;
    }
    q_win_t *victim = NULL;
    for (unsigned i = 0; i < Q_MAPS; i++) {
        q_win_t *w = &c->w[i];
        if (w->p && w->off == off && w->len >= len) {
            w->used = ++c->tick;
            c->last = i;
            return w->p;
        }
        if (!victim || (victim->p && (!w->p || w->used < victim->used))) victim = w;
    }
    cache_drop(c, off); /* a shorter window of the same range */
    if (victim->p) mp__seg_ext_unmap(victim->p, victim->len);
    memset(victim, 0, sizeof *victim);
    if (len > SIZE_MAX) {
        *rc = mp__fail(MP_ENOMEM, "a queue item does not fit this address space");
        return NULL;
    }
    void *p;
    *rc = mp__seg_ext_map(h->seg, off, (size_t)len, &p);
    if (*rc) return NULL;
    *victim = (q_win_t){.off = off, .len = (size_t)len, .p = p, .used = ++c->tick};
    c->last = (unsigned)(victim - c->w);
    return p;
}

static _Atomic uint64_t *end_word(uint8_t *buffer)
{
    return (_Atomic uint64_t *)(void *)buffer;
}

/* ---- committing a state ---- */

/* Makes n the producers' state: written into the spare copy, switched to
 * with one store. full: the cold part changed too, and is then copied
 * over the old copy as well, so the cold parts agree between calls and a
 * commit of the hot part alone (the next one writes the hot part of the
 * copy it switches to) is enough. A repair makes them agree again. */
static void pcommit(q_shm_t *q, const q_pstate_t *n, bool full)
{
    uint32_t c = atomic_load_explicit(&q->pcur, memory_order_relaxed);
    q_pstate_t *spare = &q->pst[(c + 1) & 1], *old = &q->pst[c & 1];
    if (full)
        *spare = *n;
    else
        spare->hot = n->hot;
    atomic_store_explicit(&q->pcur, c + 1, memory_order_release);
    /* Not one store to the old copy before the switch: a process killed
     * in between would leave a current state half overwritten. */
    atomic_signal_fence(memory_order_seq_cst);
    if (full) *old = *n;
}

static void ccommit(q_shm_t *q, const q_cstate_t *n, bool full)
{
    uint32_t c = atomic_load_explicit(&q->ccur, memory_order_relaxed);
    q_cstate_t *spare = &q->cst[(c + 1) & 1], *old = &q->cst[c & 1];
    if (full)
        *spare = *n;
    else
        spare->hot = n->hot;
    atomic_store_explicit(&q->ccur, c + 1, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    if (full) *old = *n;
}

static const q_pstate_t *pcur(q_shm_t *q)
{
    return &q->pst[atomic_load_explicit(&q->pcur, memory_order_relaxed) & 1];
}

static const q_cstate_t *ccur(q_shm_t *q)
{
    return &q->cst[atomic_load_explicit(&q->ccur, memory_order_relaxed) & 1];
}

/* ---- producers ---- */

static int store_end(mp_queue_t *h, uint64_t off, uint64_t cap, uint64_t end)
{
    int rc = 0;
    uint8_t *b = cache_map(h, &h->pc, off, cap, &rc);
    if (b) atomic_store_explicit(end_word(b), end, memory_order_release);
    return rc;
}

/* Seals the buffer state n left, unless the consumers are past it (and
 * may have given it back): again after a producer died, or when doing it
 * the first time failed. */
static int reseal(mp_queue_t *h, const q_pstate_t *n)
{
    if (!n->hot.seal_cap || atomic_load(&h->q->nleft_pub) >= n->cold.seal_num) return 0;
    return store_end(h, n->cold.seal_off, n->hot.seal_cap, SEALED | n->cold.seal_end);
}

/* What state n implies for consumers, in the order they rely on: the
 * count before anything it counts becomes visible. again: after a repair,
 * when the seal may concern a buffer consumers gave back already. */
static int ppublish(mp_queue_t *h, const q_pstate_t *n, bool again)
{
    q_shm_t *q = h->q;
    int rc = 0;
    atomic_store_explicit(&q->ext_pub, n->cold.ext_next, memory_order_relaxed);
    atomic_store_explicit(&q->nput_pub, n->hot.nput, memory_order_release);
    if (n->cold.buf_cap) rc = store_end(h, n->cold.buf_off, n->cold.buf_cap, n->hot.buf_pos);
    if (!rc && again)
        rc = reseal(h, n);
    else if (!rc && n->hot.seal_cap)
        rc = store_end(h, n->cold.seal_off, n->hot.seal_cap, SEALED | n->cold.seal_end);
    if (n->hot.last != Q_NONE && !tag_ok(q, n->hot.last)) ring_publish(q, n->hot.last);
    atomic_store_explicit(&q->put_seq, (uint32_t)n->hot.nput, memory_order_release);
    return rc;
}

void mp__q_repair_put(mp_queue_t *h)
{
    q_shm_t *q = h->q;
    uint32_t c = atomic_load_explicit(&q->pcur, memory_order_relaxed);
    q_pstate_t st = q->pst[c & 1];
    q->pst[(c + 1) & 1] = st;
    ppublish(h, &st, true);
}

typedef struct {
    uint64_t off[Q_TRACK], cap[Q_TRACK];
    unsigned n;
} q_drops_t;

static bool range_idle(const q_range_t *r, uint64_t nget, uint64_t nleft)
{
    return r->buffer ? nleft >= r->stamp : nget > r->stamp;
}

/* Extension space for a chain buffer or a BIG item: a kept range of size
 * class cap that consumers are done with, else new space (kept while the
 * budget allows, possibly after dropping idle ranges of other sizes into
 * drops; otherwise exact bytes the consumer gives back: *tracked false). */
static int range_take(mp_queue_t *h, q_pstate_t *n, uint64_t cap, uint64_t exact, bool buffer,
                      uint64_t stamp, q_drops_t *drops, uint64_t *off, bool *tracked)
{
    q_shm_t *q = h->q;
    uint64_t nget = atomic_load_explicit(&q->nget_pub, memory_order_acquire);
    uint64_t nleft = atomic_load_explicit(&q->nleft_pub, memory_order_acquire);
    q_range_t *slot = NULL;
    for (unsigned i = 0; i < Q_TRACK; i++) {
        q_range_t *r = &n->cold.range[i];
        if (r->cap == cap && range_idle(r, nget, nleft)) {
            *r = (q_range_t){.off = r->off, .cap = cap, .stamp = stamp, .buffer = buffer};
            *off = r->off;
            *tracked = true;
            return 0;
        }
        if (!r->cap && !slot) slot = r;
    }
    uint64_t budget = KEEP_RINGS * buffer_cap(q);
    for (unsigned i = 0; i < Q_TRACK && (!slot || n->cold.kept + cap > budget); i++) {
        q_range_t *r = &n->cold.range[i];
        if (!r->cap || !range_idle(r, nget, nleft)) continue;
        drops->off[drops->n] = r->off;
        drops->cap[drops->n++] = r->cap;
        n->cold.kept -= r->cap;
        memset(r, 0, sizeof *r);
        if (!slot) slot = r;
    }
    *tracked = slot && n->cold.kept + cap <= budget;
    uint64_t len = *tracked ? cap : exact;
    uint64_t at = n->cold.ext_next;
    if (len > MP__SEG_EXT_MAX - at)
        return mp__fail(MP_ENOMEM, "the queue's extension space is exhausted");
    int rc = mp__seg_ext_commit(h->seg, at, len);
    if (rc) return rc;
    n->cold.ext_next = at + len;
    if (*tracked) {
        *slot = (q_range_t){.off = at, .cap = cap, .stamp = stamp, .buffer = buffer};
        n->cold.kept += cap;
    }
    *off = at;
    return 0;
}

/* A new chain buffer, empty, mapped at *b. */
static int new_buffer(mp_queue_t *h, q_pstate_t *n, q_drops_t *drops, q_ref_t *ref, uint32_t *flags,
                      uint8_t **b)
{
    uint64_t cap = buffer_cap(h->q), off;
    bool tracked;
    int rc = range_take(h, n, cap, cap, true, n->cold.nbuf + 1, drops, &off, &tracked);
    if (rc) return rc;
    *b = cache_map(h, &h->pc, off, cap, &rc);
    if (!*b) return rc;
    atomic_store_explicit(end_word(*b), 0, memory_order_relaxed);
    n->cold.nbuf++;
    *ref = (q_ref_t){.off = off, .size = 0, .cap = cap};
    *flags = E_LINK | (tracked ? 0 : E_UNTRACKED);
    return 0;
}

/* Where an entry goes: the ring or a chain buffer. */
typedef struct {
    uint8_t *at;  /* in a chain buffer, or NULL: the ring */
    uint64_t pos; /* the ring position */
} q_dst_t;

static void put_entry(q_shm_t *q, const q_dst_t *d, uint32_t type, const void *p, uint32_t len)
{
    if (d->at) {
        q_ent_t *e = (q_ent_t *)(void *)d->at;
        e->len = len;
        e->type = type;
        if (len) memcpy(d->at + E_HDR, p, len);
    } else {
        ring_header(q, d->pos, len, type);
        ring_write(q, d->pos + E_HDR, p, len);
    }
}

/* Chooses where an entry of es bytes goes and updates n (tail, last,
 * chain, seal) to match; a LINK it needs is written here. */
static int place(mp_queue_t *h, q_pstate_t *n, uint64_t es, q_drops_t *drops, q_dst_t *d)
{
    q_shm_t *q = h->q;
    uint64_t free = ring_free(q, n->hot.tail, q->ring_cap);
    int rc = 0;
    *d = (q_dst_t){.at = NULL, .pos = n->hot.tail};
    uint8_t *b = NULL;
    if (n->cold.buf_cap) {
        b = cache_map(h, &h->pc, n->cold.buf_off, n->cold.buf_cap, &rc);
        if (!b) return rc;
        /* Back to the ring once it is half empty: the buffer ends here. */
        if (free >= q->ring_cap / 2 && free >= es + E_REF) {
            n->cold.seal_num = n->cold.nbuf;
            n->cold.seal_off = n->cold.buf_off;
            n->hot.seal_cap = n->cold.buf_cap;
            n->cold.seal_end = n->hot.buf_pos;
            n->cold.buf_cap = 0;
            n->hot.buf_pos = 0;
            n->hot.last = n->hot.tail;
            n->hot.tail += es;
            return 0;
        }
        if (n->hot.buf_pos + es + E_REF <= n->cold.buf_cap) {
            d->at = b + n->hot.buf_pos;
            n->hot.buf_pos += es;
            return 0;
        }
    } else if (free >= es + E_REF) {
        n->hot.last = n->hot.tail;
        n->hot.tail += es;
        return 0;
    }
    if (free < E_REF && !b) return corrupt("no room left for a link in the ring");
    q_ref_t ref = {0, 0, 0};
    uint32_t flags = 0;
    uint8_t *nb = NULL;
    rc = new_buffer(h, n, drops, &ref, &flags, &nb);
    if (rc) return rc;
    q_dst_t link = {.at = b ? b + n->hot.buf_pos : NULL, .pos = n->hot.tail};
    put_entry(q, &link, flags, &ref, sizeof ref);
    if (b) {
        n->cold.seal_num = n->cold.nbuf - 1; /* new_buffer counted the new one */
        n->cold.seal_off = n->cold.buf_off;
        n->hot.seal_cap = n->cold.buf_cap;
        n->cold.seal_end = n->hot.buf_pos + E_REF;
    } else {
        n->hot.last = n->hot.tail;
        n->hot.tail += E_REF;
    }
    n->cold.buf_off = ref.off;
    n->cold.buf_cap = ref.cap;
    n->hot.buf_pos = BUF_HDR + es;
    d->at = nb + BUF_HDR;
    return 0;
}

/* An item larger than a quarter of the ring: into a range of its own. */
static int fill_big(mp_queue_t *h, q_pstate_t *n, const void *buf, size_t len, q_drops_t *drops,
                    q_ref_t *ref, uint32_t *type)
{
    uint64_t unit = mp__seg_ext_unit();
    uint64_t exact = round_up(len, unit), off;
    bool tracked;
    int rc =
        range_take(h, n, pow2_at_least(exact), exact, false, n->hot.nput, drops, &off, &tracked);
    if (rc) return rc;
    uint64_t cap = tracked ? pow2_at_least(exact) : exact;
    void *p;
    if (tracked) {
        p = cache_map(h, &h->pc, off, cap, &rc);
        if (!p) return rc;
    } else {
        rc = mp__seg_ext_map(h->seg, off, (size_t)cap, &p);
        if (rc) return rc;
    }
    memcpy(p, buf, len);
    if (!tracked) mp__seg_ext_unmap(p, (size_t)cap);
    *ref = (q_ref_t){.off = off, .size = len, .cap = cap};
    *type = E_BIG | (tracked ? 0 : E_UNTRACKED);
    return 0;
}

static int put_slow(mp_queue_t *h, const void *buf, size_t len, bool big, uint64_t es)
{
    q_shm_t *q = h->q;
    q_pstate_t n = *pcur(q);
    n.hot.seal_cap = 0;
    q_drops_t drops;
    drops.n = 0;
    q_ref_t ref;
    uint32_t type = E_DATA;
    int rc = 0;
    if (big) rc = fill_big(h, &n, buf, len, &drops, &ref, &type);
    q_dst_t d;
    if (!rc) rc = place(h, &n, es, &drops, &d);
    if (rc) return rc;
    if (big)
        put_entry(q, &d, type, &ref, sizeof ref);
    else
        put_entry(q, &d, E_DATA, buf, (uint32_t)len);
    n.hot.nput++;
    pcommit(q, &n, true);
    ppublish(h, &n, false);
    for (unsigned i = 0; i < drops.n; i++) {
        cache_drop(&h->pc, drops.off[i]);
        mp__seg_ext_release(h->seg, drops.off[i], drops.cap[i]);
    }
    return 0;
}

int mp__q_put_locked(mp_queue_t *h, const void *buf, size_t len, uint64_t *nput)
{
    q_shm_t *q = h->q;
    const q_pstate_t *cur = pcur(q);
    /* A seal whose publication failed (the next put clears the record). */
    int rc = reseal(h, cur);
    if (rc) return rc;
    bool big = len > q->ring_cap / 4 - E_HDR;
    uint64_t es = big ? E_REF : E_HDR + align16(len);
    *nput = cur->hot.nput + 1;
    q_pstate_t n;
    n.hot = cur->hot;
    n.hot.nput++;
    n.hot.seal_cap = 0;
    uint8_t *b = NULL;
    if (big) return put_slow(h, buf, len, big, es);
    if (!cur->cold.buf_cap) {
        /* The common case: into the ring. */
        if (ring_free(q, cur->hot.tail, es + E_REF) < es + E_REF)
            return put_slow(h, buf, len, big, es);
        q_dst_t d = {.at = NULL, .pos = cur->hot.tail};
        put_entry(q, &d, E_DATA, buf, (uint32_t)len);
        n.hot.last = cur->hot.tail;
        n.hot.tail += es;
    } else {
        /* Appending to the chain buffer being filled; going back to the
         * ring is decided where a buffer is full (put_slow). */
        if (cur->hot.buf_pos + es + E_REF > cur->cold.buf_cap)
            return put_slow(h, buf, len, big, es);
        b = cache_map(h, &h->pc, cur->cold.buf_off, cur->cold.buf_cap, &rc);
        if (!b) return rc;
        q_dst_t d = {.at = b + cur->hot.buf_pos, .pos = 0};
        put_entry(q, &d, E_DATA, buf, (uint32_t)len);
        n.hot.buf_pos += es;
    }
    pcommit(q, &n, false);
    atomic_store_explicit(&q->nput_pub, n.hot.nput, memory_order_release);
    if (b)
        atomic_store_explicit(end_word(b), n.hot.buf_pos, memory_order_release);
    else
        ring_publish(q, n.hot.last);
    atomic_store_explicit(&q->put_seq, (uint32_t)n.hot.nput, memory_order_release);
    return 0;
}

/* ---- consumers ---- */

static void cpublish(mp_queue_t *h, const q_cstate_t *n)
{
    q_shm_t *q = h->q;
    atomic_store_explicit(&q->head_pub, n->hot.head, memory_order_release);
    atomic_store_explicit(&q->nleft_pub, n->cold.nleft, memory_order_release);
    atomic_store_explicit(&q->chain_pub, n->cold.buf_cap != 0, memory_order_release);
    atomic_store_explicit(&q->nget_pub, n->hot.nget, memory_order_release);
    atomic_store_explicit(&q->get_seq, (uint32_t)n->hot.nget, memory_order_release);
}

/* Gives back what state n says is to be given back (again after a
 * repair: releasing is idempotent). */
static void cgive_back(mp_queue_t *h, const q_cstate_t *n)
{
    if (!n->hot.rel_len) return;
    cache_drop(&h->cc, n->cold.rel_off);
    mp__seg_ext_release(h->seg, n->cold.rel_off, n->hot.rel_len);
}

static void cfinish(mp_queue_t *h, const q_cstate_t *n, bool full)
{
    ccommit(h->q, n, full);
    cpublish(h, n);
    cgive_back(h, n);
}

void mp__q_repair_get(mp_queue_t *h)
{
    q_shm_t *q = h->q;
    uint32_t c = atomic_load_explicit(&q->ccur, memory_order_relaxed);
    q_cstate_t st = q->cst[c & 1];
    q->cst[(c + 1) & 1] = st;
    cpublish(h, &st);
    cgive_back(h, &st);
}

bool mp__q_maybe_ready(mp_queue_t *h)
{
    q_shm_t *q = h->q;
    if (atomic_load_explicit(&q->chain_pub, memory_order_acquire)) return true;
    return tag_ok(q, atomic_load_explicit(&q->head_pub, memory_order_acquire));
}

_Atomic uint32_t *mp__q_spin_word(mp_queue_t *h)
{
    q_shm_t *q = h->q;
    if (atomic_load_explicit(&q->chain_pub, memory_order_acquire)) return &q->put_seq;
    return &ring_entry(q, atomic_load_explicit(&q->head_pub, memory_order_acquire))->tag_lo;
}

/* Room for an item of size bytes in the sink. */
static int sink_prepare(const q_sink_t *s, uint64_t size, void **dst)
{
    if (size > SIZE_MAX) return mp__fail(MP_EMSGSIZE, "a queue item larger than memory");
    *s->len = (size_t)size;
    if (s->out) {
        *dst = malloc(size ? (size_t)size : 1);
        return *dst ? 0 : mp__fail(MP_ENOMEM, "a queue item of %zu bytes", (size_t)size);
    }
    if (size > s->cap)
        return mp__fail(MP_EMSGSIZE, "the item has %zu bytes, the buffer %zu", (size_t)size,
                        s->cap);
    *dst = s->buf;
    return 0;
}

static void sink_done(const q_sink_t *s, void *dst)
{
    if (s->out) *s->out = dst;
}

static bool ref_ok(q_shm_t *q, const q_ref_t *r, bool link)
{
    uint64_t unit = mp__seg_ext_unit();
    uint64_t ext = atomic_load_explicit(&q->ext_pub, memory_order_acquire);
    if (!r->cap || r->off % unit || r->cap % unit || r->cap > ext || r->off > ext - r->cap)
        return false;
    return link ? r->cap == buffer_cap(q) && !r->size : r->size <= r->cap;
}

static int take_big(mp_queue_t *h, q_cstate_t *n, const q_ref_t *r, bool untracked,
                    const q_sink_t *s)
{
    if (!ref_ok(h->q, r, false)) return corrupt("an item's reference");
    void *src = NULL;
    int rc = 0;
    if (untracked)
        rc = mp__seg_ext_map(h->seg, r->off, (size_t)r->cap, &src);
    else
        src = cache_map(h, &h->cc, r->off, r->cap, &rc);
    if (rc) return rc;
    void *dst;
    rc = sink_prepare(s, r->size, &dst);
    if (!rc) {
        memcpy(dst, src, (size_t)r->size);
        n->hot.nget++;
        if (untracked) {
            n->hot.rel_len = r->cap;
            n->cold.rel_off = r->off;
        }
    }
    if (untracked) mp__seg_ext_unmap(src, (size_t)r->cap);
    if (rc) return rc;
    cfinish(h, n, true);
    sink_done(s, dst);
    return 0;
}

static int enter_buffer(mp_queue_t *h, q_cstate_t *n, const q_ref_t *r, bool untracked)
{
    if (!ref_ok(h->q, r, true)) return corrupt("a link");
    n->cold.buf_off = r->off;
    n->cold.buf_cap = r->cap;
    n->cold.buf_untracked = untracked;
    n->hot.buf_pos = BUF_HDR;
    cfinish(h, n, true);
    return AGAIN;
}

/* The reader is done with its chain buffer. */
static void leave_buffer(q_cstate_t *n)
{
    n->cold.nleft++;
    n->hot.rel_len = n->cold.buf_untracked ? n->cold.buf_cap : 0;
    n->cold.rel_off = n->cold.buf_off;
    n->cold.buf_cap = 0;
}

static bool ref_entry(uint32_t type, uint32_t len)
{
    uint32_t kind = type & E_KIND;
    return (kind == E_BIG || kind == E_LINK) && len == sizeof(q_ref_t) &&
           !(type & ~(E_KIND | E_UNTRACKED));
}

/* A BIG or LINK entry; n is the state after it. */
static int take_ref(mp_queue_t *h, q_cstate_t *n, uint32_t type, const q_ref_t *r, bool in_buffer,
                    const q_sink_t *s)
{
    bool untracked = type & E_UNTRACKED;
    if ((type & E_KIND) == E_BIG) return take_big(h, n, r, untracked, s);
    if (in_buffer) leave_buffer(n);
    return enter_buffer(h, n, r, untracked);
}

static int take_ring(mp_queue_t *h, const q_cstate_t *cur, const q_sink_t *s)
{
    q_shm_t *q = h->q;
    uint64_t head = cur->hot.head;
    if (!tag_ok(q, head)) return MP_EEMPTY;
    const q_ent_t *e = ring_entry(q, head);
    uint32_t len = e->len, type = e->type;
    q_cstate_t n = *cur;
    n.hot.rel_len = 0;
    if (type == E_DATA) {
        if (len > q->ring_cap / 4) return corrupt("an entry longer than the ring allows");
        void *dst;
        int rc = sink_prepare(s, len, &dst);
        if (rc) return rc;
        ring_read(q, head + E_HDR, dst, len);
        n.hot.head += E_HDR + align16(len);
        n.hot.nget++;
        ccommit(q, &n, false);
        cpublish(h, &n);
        sink_done(s, dst);
        return 0;
    }
    if (!ref_entry(type, len)) return corrupt("an entry of unknown kind");
    q_ref_t r;
    ring_read(q, head + E_HDR, &r, sizeof r);
    n.hot.head += E_REF;
    return take_ref(h, &n, type, &r, false, s);
}

static int take_buffer(mp_queue_t *h, const q_cstate_t *cur, const q_sink_t *s)
{
    uint64_t cap = cur->cold.buf_cap, pos = cur->hot.buf_pos;
    int rc = 0;
    uint8_t *b = cache_map(h, &h->cc, cur->cold.buf_off, cap, &rc);
    if (!b) return rc;
    uint64_t end = atomic_load_explicit(end_word(b), memory_order_acquire);
    uint64_t e_end = end & ~SEALED;
    if (e_end > cap || pos > e_end || pos < BUF_HDR) return corrupt("chain buffer positions");
    q_cstate_t n = *cur;
    n.hot.rel_len = 0;
    if (pos == e_end) {
        if (!(end & SEALED)) return MP_EEMPTY;
        leave_buffer(&n);
        cfinish(h, &n, true);
        return AGAIN;
    }
    uint64_t avail = e_end - pos;
    if (avail < E_HDR) return corrupt("a chain buffer entry");
    const q_ent_t *e = (const q_ent_t *)(const void *)(b + pos);
    uint32_t len = e->len, type = e->type;
    if (type == E_DATA) {
        uint64_t es = E_HDR + align16(len);
        if (es > avail) return corrupt("an entry longer than its chain buffer");
        void *dst;
        rc = sink_prepare(s, len, &dst);
        if (rc) return rc;
        if (len) memcpy(dst, b + pos + E_HDR, len);
        n.hot.buf_pos += es;
        n.hot.nget++;
        ccommit(h->q, &n, false);
        cpublish(h, &n);
        sink_done(s, dst);
        return 0;
    }
    if (!ref_entry(type, len) || avail < E_REF) return corrupt("an entry of unknown kind");
    q_ref_t r;
    memcpy(&r, b + pos + E_HDR, sizeof r);
    n.hot.buf_pos += E_REF;
    return take_ref(h, &n, type, &r, true, s);
}

int mp__q_take_locked(mp_queue_t *h, const q_sink_t *s, uint64_t *nget)
{
    for (;;) {
        const q_cstate_t *cur = ccur(h->q);
        *nget = cur->hot.nget + 1;
        int rc = cur->cold.buf_cap ? take_buffer(h, cur, s) : take_ring(h, cur, s);
        if (rc != AGAIN) return rc;
    }
}

/* ---- layout ---- */

int mp__q_format(q_shm_t *q, uint64_t ring_cap, uint64_t maxsize, bool joinable)
{
    int rc = mp__os_random(&q->key, sizeof q->key);
    if (rc) return rc;
    q->version = Q_VERSION;
    q->ring_cap = ring_cap;
    q->maxsize = maxsize;
    q->joinable = joinable;
    q->pst[0].hot.last = q->pst[1].hot.last = Q_NONE;
    q->magic = Q_MAGIC;
    return 0;
}

int mp__q_validate(const q_shm_t *q, size_t seg_size)
{
    if (seg_size < sizeof *q || q->magic != Q_MAGIC || q->version != Q_VERSION)
        return mp__fail(MP_EPROTO, "not a queue (or one of another version)");
    uint64_t r = q->ring_cap;
    if (r < 4096 || r > ((uint64_t)1 << 30) || (r & (r - 1)) || seg_size - sizeof *q != r ||
        q->joinable > 1)
        return mp__fail(MP_EPROTO, "the queue's header is inconsistent");
    return 0;
}
