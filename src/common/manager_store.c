/* Manager dicts and lists in shared segments: every local process maps the
 * segment and works on it directly under a robust mutex; the server maps it
 * too, keeps it alive, serves TCP clients from it and builds the next,
 * bigger generation when one fills up.
 *
 * Layout of the user area: [header][stripes][slots][arena of each stripe].
 * A dict has 8 stripes, each with its own mutex, allocator and share of the
 * buckets (a key's stripe is hash & 7, whatever the bucket count), so
 * processes working on different keys rarely meet. A list has one stripe;
 * its slots are the items in order. Entries live in the arenas, allocated
 * by size class with a free list per class; offsets are from the user area.
 *
 * Crash safety: a process killed while holding a stripe leaves it usable.
 * Every change is built aside and published by one 8-byte store (a bucket
 * link, a slot, a count, a twin entry's value word), so the next owner
 * (told by MP_EOWNERDEAD) finds at worst a leaked entry and a stale count,
 * which it recounts; the one multi-store change, a list pop from the
 * middle, is journaled. Whatever the segment holds, offsets are checked
 * before use: a corrupt store gives MP_EPROTO, never a wild access. */
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"

#define TAG(a, b, c, d)                                                                            \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define DICT_TAG TAG('M', 'D', 'C', 'T')
#define LIST_TAG TAG('M', 'L', 'S', 'T')
#define STORE_MAGIC 0x3253504du /* "MPS2" */

enum { S_LIVE, S_MOVED, S_CLOSED };

#define NCLASS 45 /* size classes up to 2^27 bytes, two per power of two */
#define ENT_HDR 32u
#define DICT_MIN_ARENA 2048u
#define LIST_MIN_ARENA 8192u
#define DICT_MIN_SLOTS 64u
#define LIST_MIN_SLOTS 64u
#define MAX_NEED_ENTRIES (1u << 20)
#define TWIN_MAX 1024u /* dict values up to this size get two halves */
#define OPTIMISTIC_TRIES 4
#define LOCK_TRIES 6
#define YIELD_TRIES 8

struct mp__shdr {
    uint32_t magic;
    uint32_t kind;
    _Atomic uint32_t state;
    uint32_t gen;
    uint64_t seed[2];
    uint64_t nslots, slots_off;
    uint32_t nstripe, pad;
    /* A list pop from the middle in progress: index + 1 (0: none), the
     * entry it took, and the length before it. */
    uint64_t pend_index, pend_off, pend_count;
};

/* seq is odd while the stripe's links change: lock-free readers of a dict
 * check it did not move while they looked (a seqlock); values changed in
 * place (small ones with one store, others in a twin entry's spare half)
 * do not move it, so a set that replaces a value writes none of these
 * lines. What a set that relinks writes (seq, live, the free lists of
 * classes up to 128 bytes) shares seq's cache line. */
struct mp__sstripe {
    _Alignas(64) _Atomic uint64_t seq;
    uint64_t live; /* bytes of reachable entries (by class capacity) */
    uint64_t used; /* bump pointer into the arena */
    uint64_t free_head[NCLASS];
    _Atomic uint64_t count;
    uint64_t arena_off, arena_size;
};

/* A dict entry with a value of up to TWIN_MAX bytes has two value halves
 * (twin): a set that fits writes the half readers are not told of, then
 * publishes it, its length and a new version with one store to vword, so
 * the entry never moves and the stripe's shared lines are not written (4
 * processes replacing values churned the allocator's lines between cores
 * and every read missed). A process killed before that store leaves the
 * old value. Other entries have one value area and sel 0. */
#define VW(vlen, ver, sel) ((uint64_t)(vlen) << 32 | (uint64_t)(ver) << 1 | (uint64_t)(sel))
#define VW_LEN(w) ((uint32_t)((w) >> 32))
#define VW_VER(w) ((uint32_t)((w) >> 1) & 0x7fffffffu)
#define VW_SEL(w) ((unsigned)((w)&1))

typedef struct {
    uint64_t next;
    uint64_t hash;
    uint32_t klen;
    uint16_t cls, twin;
    _Atomic uint64_t vword; /* vlen << 32 | version << 1 | half in use */
} ent_t;

_Static_assert(sizeof(ent_t) == ENT_HDR, "entry header size");

/* An entry whose bounds were checked, with the fields read once. */
typedef struct {
    ent_t *e;
    uint64_t off, cap;
    uint64_t vword, half; /* half: bytes a value may have in place */
    uint32_t klen, vlen;
    uint8_t *key, *val;
} eref_t;

static int corrupt(void)
{
    return mp__fail(MP_EPROTO, "the manager's shared store is corrupt");
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* ---- size classes: 64, 128, 192, 256, 384, 512, 768, ... ----
 * Every class is a multiple of the 64-byte cache line, and arenas start on
 * one: two entries never share a line, so processes writing different keys
 * do not pull each other's lines (false sharing halved the throughput of 4
 * processes on one dict). The classes below 64 and 96 are not used. */

static uint64_t class_cap(unsigned c)
{
    if (c == 0) return 32;
    unsigned k = (c + 1) / 2 + 5;
    return c & 1 ? (uint64_t)3 << (k - 2) : (uint64_t)1 << k;
}

static unsigned size_class(uint64_t s)
{
    if (s <= 64) return 2;
    unsigned k = 64u - (unsigned)__builtin_clzll(s - 1);
    unsigned c = s <= (uint64_t)3 << (k - 2) ? 2 * (k - 6) + 1 : 2 * (k - 6) + 2;
    return c == 3 ? 4 : c;
}

/* ---- SipHash-1-3 with the store's random key: hostile keys cannot pile
 * into one bucket ---- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash13(const uint64_t key[2], const uint8_t *m, size_t n)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ key[0], v1 = 0x646f72616e646f6dull ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ key[0], v3 = 0x7465646279746573ull ^ key[1];
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t x = 0;
        for (int j = 0; j < 8; j++)
            x |= (uint64_t)m[i + j] << (8 * j);
        v3 ^= x;
        SIPROUND;
        v0 ^= x;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t j = 0; j < n - i; j++)
        b |= (uint64_t)m[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- layout ---- */

static unsigned stripes_of(int kind)
{
    return kind == MP__MK_DICT ? MP__S_STRIPES : 1;
}

static uint64_t stripes_off(void)
{
    return round_up(sizeof(mp__shdr_t), 64);
}

void mp__store_spec(int kind, mp__seg_spec_t *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->nmutex = stripes_of(kind);
    spec->tag = kind == MP__MK_DICT ? DICT_TAG : LIST_TAG;
}

/* Checks the geometry a header announces against the segment's size and
 * keeps it in v: it never changes during a generation. */
static int view_layout(mp__sview_t *v)
{
    mp__shdr_t *h = v->h;
    uint64_t size = v->size;
    unsigned ns = stripes_of(v->kind);
    uint64_t st_end = stripes_off() + ns * sizeof(mp__sstripe_t);
    if (size < st_end || h->magic != STORE_MAGIC || h->kind != (uint32_t)v->kind ||
        h->nstripe != ns)
        return corrupt();
    uint64_t n = h->nslots, off = h->slots_off;
    if (!n || n > size / 8 || off < st_end || off % 8 || off > size - n * 8) return corrupt();
    if (v->kind == MP__MK_DICT && (n & (n - 1) || n < MP__S_STRIPES)) return corrupt();
    uint64_t slots_end = off + n * 8;
    for (unsigned i = 0; i < ns; i++) {
        uint64_t a = v->st[i].arena_off, as = v->st[i].arena_size;
        if (a < slots_end || a % 8 || as < ENT_HDR || as > size || a > size - as) return corrupt();
        v->ar_off[i] = a;
        v->ar_size[i] = as;
    }
    v->nstripe = ns;
    v->nslots = n;
    v->slots = (uint64_t *)(v->base + off);
    v->seed[0] = h->seed[0];
    v->seed[1] = h->seed[1];
    v->gen = h->gen;
    return 0;
}

int mp__sview_open(mp__seg_t *seg, int kind, mp__sview_t *v)
{
    memset(v, 0, sizeof *v);
    v->seg = seg;
    v->kind = kind;
    v->base = mp__seg_ptr(seg);
    v->size = mp__seg_size(seg);
    v->h = (mp__shdr_t *)v->base;
    v->st = (mp__sstripe_t *)(v->base + stripes_off());
    int rc = view_layout(v);
    if (rc) {
        mp__seg_close(seg);
        memset(v, 0, sizeof *v);
    }
    return rc;
}

void mp__sview_close(mp__sview_t *v)
{
    if (v->seg) mp__seg_close(v->seg);
    memset(v, 0, sizeof *v);
}

/* A new segment for a store of nslots and these arena sizes. */
static int store_make(int kind, uint64_t nslots, const uint64_t *arena, uint32_t gen,
                      const uint64_t *seed, mp__sview_t *v)
{
    unsigned ns = stripes_of(kind);
    uint64_t off = stripes_off() + ns * sizeof(mp__sstripe_t);
    uint64_t slots_off = round_up(off, 64);
    uint64_t total = round_up(slots_off + nslots * 8, 64);
    for (unsigned i = 0; i < ns; i++)
        total += arena[i];
    if (total > SIZE_MAX / 2)
        return mp__fail(MP_ENOMEM, "store of %llu bytes", (unsigned long long)total);
    mp__seg_spec_t spec;
    mp__store_spec(kind, &spec);
    spec.size = (size_t)total;
    mp__seg_t *seg;
    int rc = mp__seg_create(&spec, &seg);
    if (rc) return rc;
    uint8_t *base = mp__seg_ptr(seg);
    mp__shdr_t *h = (mp__shdr_t *)base;
    h->magic = STORE_MAGIC;
    h->kind = (uint32_t)kind;
    h->gen = gen;
    h->nslots = nslots;
    h->slots_off = slots_off;
    h->nstripe = ns;
    if (seed) {
        h->seed[0] = seed[0];
        h->seed[1] = seed[1];
    } else {
        rc = mp__os_random(h->seed, sizeof h->seed);
    }
    mp__sstripe_t *st = (mp__sstripe_t *)(base + stripes_off());
    uint64_t a = round_up(slots_off + nslots * 8, 64);
    for (unsigned i = 0; i < ns; i++) {
        st[i].arena_off = a;
        st[i].arena_size = arena[i];
        a += arena[i];
    }
    atomic_store(&h->state, S_LIVE);
    if (rc) {
        mp__seg_close(seg);
        return rc;
    }
    return mp__sview_open(seg, kind, v);
}

int mp__sview_create(int kind, mp__sview_t *v)
{
    uint64_t arena[MP__S_STRIPES];
    for (unsigned i = 0; i < MP__S_STRIPES; i++)
        arena[i] = kind == MP__MK_DICT ? DICT_MIN_ARENA : LIST_MIN_ARENA;
    return store_make(kind, kind == MP__MK_DICT ? DICT_MIN_SLOTS : LIST_MIN_SLOTS, arena, 0, NULL,
                      v);
}

void mp__sview_mark_closed(mp__sview_t *v)
{
    atomic_store(&v->h->state, S_CLOSED);
}

/* ---- entries and the allocator ---- */

static bool ent_at(const mp__sview_t *v, unsigned si, uint64_t off, eref_t *r)
{
    uint64_t a = v->ar_off[si], n = v->ar_size[si];
    if (off < a || off % 8 || off - a > n - ENT_HDR) return false;
    ent_t *e = (ent_t *)(v->base + off);
    uint32_t cls = e->cls, kl = e->klen, twin = e->twin;
    /* Acquire: a lock-free reader copies the half this names after it. */
    uint64_t w = atomic_load_explicit(&e->vword, memory_order_acquire);
    if (cls >= NCLASS || twin > 1 || (VW_SEL(w) && !twin)) return false;
    uint64_t cap = class_cap(cls);
    if (cap > n - (off - a) || ENT_HDR + pad8(kl) > cap) return false;
    uint64_t room = cap - ENT_HDR - pad8(kl), half = twin ? room / 2 & ~(uint64_t)7 : room;
    if (VW_LEN(w) > half) return false;
    r->e = e;
    r->off = off;
    r->cap = cap;
    r->vword = w;
    r->half = half;
    r->klen = kl;
    r->vlen = VW_LEN(w);
    r->key = (uint8_t *)e + ENT_HDR;
    r->val = r->key + pad8(kl) + VW_SEL(w) * half;
    return true;
}

/* An entry of class cls, or 0 when the arena is full. */
static uint64_t ent_alloc(mp__sview_t *v, unsigned si, unsigned cls)
{
    mp__sstripe_t *st = &v->st[si];
    uint64_t off = st->free_head[cls];
    eref_t r;
    if (off) {
        if (ent_at(v, si, off, &r) && r.e->cls == cls) {
            st->free_head[cls] = r.e->next;
            return off;
        }
        st->free_head[cls] = 0; /* a broken list: drop it, the space leaks */
    }
    uint64_t cap = class_cap(cls), used = st->used;
    if (used > v->ar_size[si] || cap > v->ar_size[si] - used) return 0;
    st->used = used + cap;
    return v->ar_off[si] + used;
}

static void ent_free(mp__sview_t *v, unsigned si, const eref_t *r)
{
    mp__sstripe_t *st = &v->st[si];
    uint32_t cls = r->e->cls;
    r->e->next = st->free_head[cls];
    st->free_head[cls] = r->off;
    st->live = st->live > r->cap ? st->live - r->cap : 0;
}

/* Whether a dict entry for a value of vl bytes gets two halves. */
static bool twin_for(size_t vl)
{
    return vl <= TWIN_MAX;
}

static unsigned ent_class(size_t kl, size_t vl, bool twin)
{
    return size_class(ENT_HDR + pad8(kl) + (twin ? 2 * pad8(vl) : vl));
}

/* Writes an entry at off (allocated for this size); not yet reachable. */
static void ent_fill(mp__sview_t *v, uint64_t off, unsigned cls, bool twin, uint64_t next,
                     uint64_t hash, const void *k, size_t kl, const void *val, size_t vl)
{
    ent_t *e = (ent_t *)(v->base + off);
    e->next = next;
    e->hash = hash;
    e->klen = (uint32_t)kl;
    e->cls = (uint16_t)cls;
    e->twin = twin;
    atomic_store_explicit(&e->vword, VW(vl, 0, 0), memory_order_relaxed);
    uint8_t *p = (uint8_t *)e + ENT_HDR;
    if (kl) memcpy(p, k, kl);
    if (vl) memcpy(p + pad8(kl), val, vl);
}

/* Overwrites up to 8 bytes at p (8-aligned, with 8 bytes of room: values
 * start 8-aligned and entries are multiples of 8) with one store, which a
 * process killed around it cannot tear. */
static void store8(uint8_t *p, const void *bytes, size_t n)
{
    _Atomic uint64_t *w = (_Atomic uint64_t *)(void *)p;
    uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
    memcpy(&v, bytes, n);
    atomic_store_explicit(w, v, memory_order_relaxed);
}

static int need_room(mp__sneed_t *need, unsigned si, uint64_t bytes, uint64_t entries)
{
    if (need) {
        need->stripe = si;
        need->bytes = bytes;
        need->entries = entries;
    }
    return MP__S_FULL;
}

static int copy_out(const void *p, size_t n, void **out, size_t *outlen)
{
    void *c = mp__malloc(n);
    if (!c) return MP_ENOMEM;
    if (n) memcpy(c, p, n);
    *out = c;
    *outlen = n;
    return 0;
}

/* ---- the seqlock of a dict stripe (writers hold its mutex) ---- */

static void seq_enter(mp__sstripe_t *st)
{
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    atomic_store_explicit(&st->seq, s | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void seq_leave(mp__sstripe_t *st)
{
    uint64_t s = atomic_load_explicit(&st->seq, memory_order_relaxed);
    atomic_store_explicit(&st->seq, (s | 1) + 1, memory_order_release);
}

/* ---- locking, and repair after an owner died ---- */

static void dict_repair(mp__sview_t *v, unsigned si);
static void list_repair(mp__sview_t *v);

static int state_check(mp__sview_t *v)
{
    uint32_t s = atomic_load_explicit(&v->h->state, memory_order_acquire);
    if (s == S_LIVE) return 0;
    if (s == S_MOVED) return MP__S_MOVED;
    return mp__fail(MP_ECLOSED, "the manager was shut down");
}

/* Tries, then yields, before sleeping. A stripe is held for well under a
 * microsecond, while a sleep and its wake-up cost 30-40 us here: without
 * the tries, 4 processes on one dict spent a sixth of their time in futex
 * calls. A holder that stays busy longer was most likely preempted (more
 * clients than cores); a yield lets it run, on this core, sooner than a
 * sleep would, and costs about a system call. */
static int lock_stripe(mp__sview_t *v, unsigned si)
{
    int rc = mp__seg_lock(v->seg, si, 0);
    for (int i = 0; rc == MP_ETIMEDOUT && i < LOCK_TRIES; i++)
        rc = mp__seg_lock(v->seg, si, 0);
    for (int i = 0; rc == MP_ETIMEDOUT && i < YIELD_TRIES; i++) {
        mp__os_yield();
        rc = mp__seg_lock(v->seg, si, 0);
    }
    if (rc == MP_ETIMEDOUT) rc = mp__seg_lock(v->seg, si, MP_FOREVER);
    if (rc == MP_EOWNERDEAD) {
        if (v->kind == MP__MK_DICT)
            dict_repair(v, si);
        else
            list_repair(v);
        rc = 0;
    }
    if (rc) return rc;
    rc = state_check(v);
    if (rc) mp__seg_unlock(v->seg, si);
    return rc;
}

static void unlock_stripe(mp__sview_t *v, unsigned si)
{
    mp__seg_unlock(v->seg, si);
}

static int lock_all(mp__sview_t *v)
{
    for (unsigned i = 0; i < v->nstripe; i++) {
        int rc = lock_stripe(v, i);
        if (rc) {
            while (i--)
                unlock_stripe(v, i);
            return rc;
        }
    }
    return 0;
}

static void unlock_all(mp__sview_t *v)
{
    for (unsigned i = v->nstripe; i-- > 0;)
        unlock_stripe(v, i);
}

/* ---- dict ---- */

typedef struct {
    uint64_t hash;
    unsigned si;
    uint64_t *bucket;
} kpos_t;

static kpos_t key_pos(const mp__sview_t *v, const void *k, size_t kl)
{
    kpos_t p;
    p.hash = siphash13(v->seed, k, kl);
    p.si = (unsigned)(p.hash & (MP__S_STRIPES - 1));
    p.bucket = &v->slots[p.hash & (v->nslots - 1)];
    return p;
}

/* The most entries an arena can hold: a longer chain is a cycle. */
static uint64_t walk_limit(const mp__sview_t *v, unsigned si)
{
    return v->ar_size[si] / 32 + 1;
}

/* Finds k in its chain: 0 with *link (what points to it) and *r; else
 * MP_ENOTFOUND with *link at the chain's end; MP_EPROTO if corrupt. */
static int find(mp__sview_t *v, const kpos_t *p, const void *k, size_t kl, uint64_t **link,
                eref_t *r)
{
    uint64_t *l = p->bucket;
    uint64_t limit = walk_limit(v, p->si);
    while (*l) {
        if (!limit-- || !ent_at(v, p->si, *l, r)) return corrupt();
        if (r->e->hash == p->hash && r->klen == kl && !memcmp(r->key, k, kl)) {
            *link = l;
            return 0;
        }
        l = &r->e->next;
    }
    *link = l;
    return MP_ENOTFOUND;
}

static void dict_repair(mp__sview_t *v, unsigned si)
{
    uint64_t count = 0, live = 0;
    for (uint64_t b = si; b < v->nslots; b += MP__S_STRIPES) {
        uint64_t *l = &v->slots[b];
        uint64_t limit = walk_limit(v, si);
        eref_t r;
        while (*l) {
            if (!limit-- || !ent_at(v, si, *l, &r)) {
                *l = 0; /* cut a broken chain: what follows is lost */
                break;
            }
            count++;
            live += r.cap;
            l = &r.e->next;
        }
    }
    atomic_store_explicit(&v->st[si].count, count, memory_order_relaxed);
    v->st[si].live = live;
    seq_leave(&v->st[si]); /* an owner that died inside a change left it odd */
}

static bool stripe_full(const mp__sview_t *v, unsigned si)
{
    uint64_t per = v->nslots / MP__S_STRIPES;
    return atomic_load_explicit(&v->st[si].count, memory_order_relaxed) >= per;
}

/* Writes val into the half of a twin entry that readers are not using and
 * publishes it. The fence is the seqlock writer's: the version a reader
 * sees moved before any byte it could see change. */
static void twin_set(const eref_t *r, const void *val, size_t vl)
{
    uint64_t w = r->vword;
    unsigned sel = VW_SEL(w) ^ 1u;
    atomic_thread_fence(memory_order_release);
    if (vl) memcpy(r->key + pad8(r->klen) + sel * r->half, val, vl);
    atomic_store_explicit(&r->e->vword, VW(vl, (VW_VER(w) + 1) & 0x7fffffffu, sel),
                          memory_order_release);
}

/* Puts (k, val) where link points: replacing old (found) or as a new head
 * of the chain. Called with the stripe held. */
static int dict_put(mp__sview_t *v, const kpos_t *p, uint64_t *link, const eref_t *old, bool found,
                    const void *k, size_t kl, const void *val, size_t vl, mp__sneed_t *need)
{
    /* A small value of the same size (a counter, a flag) changes in place. */
    if (found && vl == old->vlen && vl <= 8) {
        if (vl) store8(old->val, val, vl);
        return 0;
    }
    if (found && old->e->twin && vl <= old->half) {
        twin_set(old, val, vl);
        return 0;
    }
    bool twin = twin_for(vl);
    unsigned cls = ent_class(kl, vl, twin);
    if (!found && stripe_full(v, p->si)) return need_room(need, p->si, 0, 1);
    mp__sstripe_t *st = &v->st[p->si];
    seq_enter(st);
    uint64_t off = ent_alloc(v, p->si, cls);
    if (!off) {
        seq_leave(st);
        return need_room(need, p->si, class_cap(cls), 0);
    }
    if (found) {
        ent_fill(v, off, cls, twin, old->e->next, p->hash, k, kl, val, vl);
        *link = off;
        ent_free(v, p->si, old);
    } else {
        ent_fill(v, off, cls, twin, *p->bucket, p->hash, k, kl, val, vl);
        *p->bucket = off;
        atomic_store_explicit(&st->count,
                              atomic_load_explicit(&st->count, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    st->live += class_cap(cls);
    seq_leave(st);
    return 0;
}

static int item_size_ok(size_t kl, size_t vl)
{
    if (kl > MP_MANAGER_MAX_ITEM || vl > MP_MANAGER_MAX_ITEM - kl)
        return mp__fail(MP_EMSGSIZE, "key and value of %zu + %zu bytes exceed %zu", kl, vl,
                        MP_MANAGER_MAX_ITEM);
    return 0;
}

static int dict_set(mp__sview_t *v, const void *k, size_t kl, const void *val, size_t vl,
                    mp__sneed_t *need)
{
    int rc = item_size_ok(kl, vl);
    if (rc) return rc;
    kpos_t p = key_pos(v, k, kl);
    rc = lock_stripe(v, p.si);
    if (rc) return rc;
    uint64_t *link;
    eref_t r;
    rc = find(v, &p, k, kl, &link, &r);
    if (rc == 0 || rc == MP_ENOTFOUND)
        rc = dict_put(v, &p, link, &r, rc == 0, k, kl, val, vl, need);
    unlock_stripe(v, p.si);
    return rc;
}

/* A read without the mutex: the reader writes nothing shared, so readers
 * and writers of other keys do not pull each other's cache lines. 1 when
 * it could not get a stable view (the caller takes the mutex). */
static int dict_get_optimistic(mp__sview_t *v, const kpos_t *p, const void *k, size_t kl,
                               void **val, size_t *vl)
{
    mp__sstripe_t *st = &v->st[p->si];
    for (int i = 0; i < OPTIMISTIC_TRIES; i++) {
        uint64_t s1 = atomic_load_explicit(&st->seq, memory_order_acquire);
        if (s1 & 1) continue;
        uint64_t *link;
        eref_t r;
        int rc = find(v, p, k, kl, &link, &r);
        uint64_t small = 0;
        void *copy = NULL;
        size_t n = rc ? 0 : r.vlen;
        if (!rc && n <= 8) {
            if (n) /* one load, as small values are stored */
                small =
                    atomic_load_explicit((_Atomic uint64_t *)(void *)r.val, memory_order_relaxed);
        } else if (!rc && !(copy = malloc(n)))
            return mp__fail(MP_ENOMEM, "malloc(%zu) failed", n);
        else if (!rc)
            memcpy(copy, r.val, n);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&st->seq, memory_order_relaxed) != s1 ||
            (!rc && atomic_load_explicit(&r.e->vword, memory_order_relaxed) != r.vword)) {
            free(copy);
            continue;
        }
        int st_rc = state_check(v); /* also orders the read before a move */
        if (st_rc || rc) {
            free(copy);
            if (st_rc) return st_rc;
            return rc == MP_ENOTFOUND ? mp__fail(rc, "no such key") : rc;
        }
        if (n <= 8 && !(copy = mp__malloc(n))) return MP_ENOMEM;
        if (n <= 8) memcpy(copy, &small, n);
        *val = copy;
        *vl = n;
        return 0;
    }
    return 1;
}

static int dict_get(mp__sview_t *v, const void *k, size_t kl, void **val, size_t *vl)
{
    kpos_t p = key_pos(v, k, kl);
    int rc = dict_get_optimistic(v, &p, k, kl, val, vl);
    if (rc <= 0) return rc;
    rc = lock_stripe(v, p.si);
    if (rc) return rc;
    uint64_t *link;
    eref_t r;
    rc = find(v, &p, k, kl, &link, &r);
    if (!rc) rc = copy_out(r.val, r.vlen, val, vl);
    unlock_stripe(v, p.si);
    return rc == MP_ENOTFOUND ? mp__fail(rc, "no such key") : rc;
}

static int dict_del(mp__sview_t *v, const void *k, size_t kl, void **val, size_t *vl)
{
    kpos_t p = key_pos(v, k, kl);
    int rc = lock_stripe(v, p.si);
    if (rc) return rc;
    uint64_t *link;
    eref_t r;
    rc = find(v, &p, k, kl, &link, &r);
    if (!rc && val) rc = copy_out(r.val, r.vlen, val, vl);
    if (!rc) {
        mp__sstripe_t *st = &v->st[p.si];
        seq_enter(st);
        *link = r.e->next;
        uint64_t c = atomic_load_explicit(&st->count, memory_order_relaxed);
        atomic_store_explicit(&st->count, c ? c - 1 : 0, memory_order_relaxed);
        ent_free(v, p.si, &r);
        seq_leave(st);
    }
    unlock_stripe(v, p.si);
    return rc == MP_ENOTFOUND ? mp__fail(rc, "no such key") : rc;
}

static int dict_len(mp__sview_t *v, size_t *n)
{
    int rc = state_check(v);
    if (rc) return rc;
    uint64_t total = 0;
    for (unsigned i = 0; i < v->nstripe; i++)
        total += atomic_load_explicit(&v->st[i].count, memory_order_relaxed);
    /* Moved meanwhile: the count may miss what went to the next one. */
    rc = state_check(v);
    if (!rc) *n = (size_t)total;
    return rc;
}

/* Visits every entry of a dict whose stripes are all held. */
static int dict_walk(mp__sview_t *v, int (*fn)(void *ctx, const eref_t *r), void *ctx)
{
    for (uint64_t b = 0; b < v->nslots; b++) {
        unsigned si = (unsigned)(b & (MP__S_STRIPES - 1));
        uint64_t off = v->slots[b], limit = walk_limit(v, si);
        eref_t r;
        while (off) {
            if (!limit-- || !ent_at(v, si, off, &r)) return corrupt();
            int rc = fn(ctx, &r);
            if (rc) return rc;
            off = r.e->next;
        }
    }
    return 0;
}

typedef struct {
    mp_iov_t *keys, *vals;
    size_t n, cap;
} items_t;

static int count_one(void *ctx, const eref_t *r)
{
    (void)r;
    ((items_t *)ctx)->cap++;
    return 0;
}

static int take_one(void *ctx, const eref_t *r)
{
    items_t *it = ctx;
    if (it->n == it->cap) return corrupt();
    mp_iov_t *k = &it->keys[it->n], *val = &it->vals[it->n];
    int rc = copy_out(r->key, r->klen, &k->data, &k->len);
    if (rc) return rc;
    rc = copy_out(r->val, r->vlen, &val->data, &val->len);
    if (rc) {
        free(k->data);
        return rc;
    }
    it->n++;
    return 0;
}

static int dict_items(mp__sview_t *v, mp_iov_t **keys, mp_iov_t **vals, size_t *n)
{
    int rc = lock_all(v);
    if (rc) return rc;
    items_t it = {0};
    rc = dict_walk(v, count_one, &it);
    if (!rc) {
        it.keys = mp__calloc(it.cap, sizeof *it.keys);
        it.vals = mp__calloc(it.cap, sizeof *it.vals);
        if (!it.keys || !it.vals) rc = MP_ENOMEM;
    }
    if (!rc) rc = dict_walk(v, take_one, &it);
    unlock_all(v);
    if (rc) {
        for (size_t i = 0; i < it.n; i++) {
            free(it.keys[i].data);
            free(it.vals[i].data);
        }
        free(it.keys);
        free(it.vals);
        return rc;
    }
    *keys = it.keys;
    *vals = it.vals;
    *n = it.n;
    return 0;
}

static int dict_clear(mp__sview_t *v)
{
    int rc = lock_all(v);
    if (rc) return rc;
    for (unsigned i = 0; i < v->nstripe; i++)
        seq_enter(&v->st[i]);
    for (uint64_t b = 0; b < v->nslots; b++)
        v->slots[b] = 0;
    for (unsigned i = 0; i < v->nstripe; i++) {
        mp__sstripe_t *st = &v->st[i];
        atomic_store_explicit(&st->count, 0, memory_order_relaxed);
        memset(st->free_head, 0, sizeof st->free_head);
        st->live = 0;
        st->used = 0;
        seq_leave(st);
    }
    unlock_all(v);
    return 0;
}

static void enc_i64(uint8_t *b, int64_t x)
{
    uint64_t u = (uint64_t)x;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(u >> (8 * i));
}

static int64_t get_i64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u |= (uint64_t)p[i] << (8 * i);
    return (int64_t)u;
}

static int dict_incr(mp__sview_t *v, const void *k, size_t kl, int64_t by, int64_t *now,
                     mp__sneed_t *need)
{
    int rc = item_size_ok(kl, 8);
    if (rc) return rc;
    kpos_t p = key_pos(v, k, kl);
    rc = lock_stripe(v, p.si);
    if (rc) return rc;
    uint64_t *link;
    eref_t r;
    rc = find(v, &p, k, kl, &link, &r);
    int64_t cur = 0;
    if (!rc && r.vlen != 8)
        rc = mp__fail(MP_ETYPE, "the value is %u bytes, not an 8-byte counter", r.vlen);
    if (!rc) cur = get_i64(r.val);
    if ((!rc || rc == MP_ENOTFOUND) &&
        ((by > 0 && cur > INT64_MAX - by) || (by < 0 && cur < INT64_MIN - by))) {
        unlock_stripe(v, p.si);
        return mp__fail(MP_EINVAL, "counter overflow");
    }
    uint8_t b[8];
    if (!rc) {
        enc_i64(b, cur + by);
        store8(r.val, b, 8);
    } else if (rc == MP_ENOTFOUND) {
        enc_i64(b, by);
        rc = dict_put(v, &p, link, &r, false, k, kl, b, 8, need);
    }
    unlock_stripe(v, p.si);
    if (!rc && now) *now = cur + by;
    return rc;
}

static int dict_cas(mp__sview_t *v, const void *k, size_t kl, const void *expect, size_t el,
                    const void *val, size_t vl, mp__sneed_t *need)
{
    int rc = item_size_ok(kl, vl);
    if (rc) return rc;
    kpos_t p = key_pos(v, k, kl);
    rc = lock_stripe(v, p.si);
    if (rc) return rc;
    uint64_t *link;
    eref_t r;
    rc = find(v, &p, k, kl, &link, &r);
    if (rc == 0 && !expect)
        rc = mp__fail(MP_EBUSY, "the key exists");
    else if (rc == 0 && (r.vlen != el || memcmp(r.val, expect, el)))
        rc = mp__fail(MP_EBUSY, "the value differs from the expected one");
    else if (rc == MP_ENOTFOUND && expect)
        rc = mp__fail(MP_ENOTFOUND, "no such key");
    else if (rc == 0 || rc == MP_ENOTFOUND)
        rc = dict_put(v, &p, link, &r, rc == 0, k, kl, val, vl, need);
    unlock_stripe(v, p.si);
    return rc;
}

/* ---- list ---- */

static uint64_t list_count(const mp__sview_t *v)
{
    return atomic_load_explicit(&v->st[0].count, memory_order_relaxed);
}

static void list_set_count(mp__sview_t *v, uint64_t n)
{
    atomic_store_explicit(&v->st[0].count, n, memory_order_relaxed);
}

/* Finishes a pop from the middle that its owner did not: the shift runs
 * upward one slot at a time, so the first duplicate slot at or after the
 * index tells how far it got. */
static void list_repair(mp__sview_t *v)
{
    mp__shdr_t *h = v->h;
    uint64_t n = list_count(v);
    if (n > v->nslots) n = v->nslots;
    uint64_t pi = h->pend_index, c0 = h->pend_count;
    if (pi && n == c0 && c0 >= 1 && pi <= c0) {
        uint64_t i = pi - 1, from = i;
        if (v->slots[i] != h->pend_off) {
            from = c0 - 1;
            for (uint64_t j = i; j + 1 < c0; j++)
                if (v->slots[j] == v->slots[j + 1]) {
                    from = j + 1;
                    break;
                }
        }
        for (uint64_t j = from; j + 1 < c0; j++)
            v->slots[j] = v->slots[j + 1];
        list_set_count(v, c0 - 1);
        n = c0 - 1;
    }
    h->pend_index = 0;
    uint64_t live = 0;
    eref_t r;
    for (uint64_t j = 0; j < n; j++)
        if (ent_at(v, 0, v->slots[j], &r)) live += r.cap;
    list_set_count(v, n);
    v->st[0].live = live;
}

/* Python's index rule: negative counts from the end. */
static int list_index(const mp__sview_t *v, int64_t i, uint64_t *out)
{
    uint64_t n = list_count(v);
    if (n > v->nslots) return corrupt();
    if (i < 0 && (uint64_t) - (i + 1) < n)
        *out = n - (uint64_t) - (i + 1) - 1;
    else if (i >= 0 && (uint64_t)i < n)
        *out = (uint64_t)i;
    else
        return mp__fail(MP_EINVAL, "list index %lld out of range (length %llu)", (long long)i,
                        (unsigned long long)n);
    return 0;
}

static int list_entry(mp__sview_t *v, uint64_t i, eref_t *r)
{
    return ent_at(v, 0, v->slots[i], r) ? 0 : corrupt();
}

static int list_append(mp__sview_t *v, const void *val, size_t vl, mp__sneed_t *need)
{
    int rc = item_size_ok(0, vl);
    if (!rc) rc = lock_stripe(v, 0);
    if (rc) return rc;
    uint64_t n = list_count(v);
    unsigned cls = size_class(ENT_HDR + vl);
    uint64_t off = 0;
    if (n >= v->nslots)
        rc = need_room(need, 0, 0, n + 1);
    else if (!(off = ent_alloc(v, 0, cls)))
        rc = need_room(need, 0, class_cap(cls), 0);
    if (!rc) {
        ent_fill(v, off, cls, false, 0, 0, NULL, 0, val, vl);
        v->slots[n] = off;
        list_set_count(v, n + 1);
        v->st[0].live += class_cap(cls);
    }
    unlock_stripe(v, 0);
    return rc;
}

static int list_get(mp__sview_t *v, int64_t i, void **val, size_t *vl)
{
    int rc = lock_stripe(v, 0);
    if (rc) return rc;
    uint64_t at;
    eref_t r;
    rc = list_index(v, i, &at);
    if (!rc) rc = list_entry(v, at, &r);
    if (!rc) rc = copy_out(r.val, r.vlen, val, vl);
    unlock_stripe(v, 0);
    return rc;
}

static int list_set(mp__sview_t *v, int64_t i, const void *val, size_t vl, mp__sneed_t *need)
{
    int rc = item_size_ok(0, vl);
    if (!rc) rc = lock_stripe(v, 0);
    if (rc) return rc;
    uint64_t at, off = 0;
    eref_t r;
    unsigned cls = size_class(ENT_HDR + vl);
    rc = list_index(v, i, &at);
    if (!rc) rc = list_entry(v, at, &r);
    if (!rc && !(off = ent_alloc(v, 0, cls))) rc = need_room(need, 0, class_cap(cls), 0);
    if (!rc) {
        ent_fill(v, off, cls, false, 0, 0, NULL, 0, val, vl);
        v->slots[at] = off;
        v->st[0].live += class_cap(cls);
        ent_free(v, 0, &r);
    }
    unlock_stripe(v, 0);
    return rc;
}

static int list_pop(mp__sview_t *v, int64_t i, void **val, size_t *vl)
{
    int rc = lock_stripe(v, 0);
    if (rc) return rc;
    uint64_t at, n = list_count(v);
    eref_t r;
    rc = list_index(v, i, &at);
    if (!rc) rc = list_entry(v, at, &r);
    if (!rc) rc = copy_out(r.val, r.vlen, val, vl);
    if (!rc) {
        mp__shdr_t *h = v->h;
        if (at + 1 < n) {
            h->pend_off = r.off;
            h->pend_count = n;
            h->pend_index = at + 1; /* the journal entry is valid from here */
            for (uint64_t j = at; j + 1 < n; j++)
                v->slots[j] = v->slots[j + 1];
        }
        list_set_count(v, n - 1);
        h->pend_index = 0;
        ent_free(v, 0, &r);
    }
    unlock_stripe(v, 0);
    return rc;
}

static int list_len(mp__sview_t *v, size_t *n)
{
    int rc = state_check(v);
    if (rc) return rc;
    uint64_t c = list_count(v);
    rc = state_check(v);
    if (!rc) *n = (size_t)c;
    return rc;
}

static int list_items(mp__sview_t *v, mp_iov_t **items, size_t *n)
{
    int rc = lock_stripe(v, 0);
    if (rc) return rc;
    uint64_t c = list_count(v);
    mp_iov_t *out = NULL;
    size_t got = 0;
    if (c > v->nslots)
        rc = corrupt();
    else if (!(out = mp__calloc((size_t)c, sizeof *out)))
        rc = MP_ENOMEM;
    for (; !rc && got < c; got++) {
        eref_t r;
        rc = list_entry(v, got, &r);
        if (!rc) rc = copy_out(r.val, r.vlen, &out[got].data, &out[got].len);
        if (rc) break;
    }
    unlock_stripe(v, 0);
    if (rc) {
        mp_iov_free(out, got);
        return rc;
    }
    *items = out;
    *n = (size_t)c;
    return 0;
}

/* ---- growth (server) ---- */

static uint64_t arena_for(uint64_t live, uint64_t extra, uint64_t min)
{
    uint64_t want = (live + extra) * 2;
    return round_up(want < min ? min : want, 64);
}

/* Copies every reachable entry of old into the fresh store nv. */
static int copy_dict(mp__sview_t *old, mp__sview_t *nv)
{
    for (uint64_t b = 0; b < old->nslots; b++) {
        unsigned si = (unsigned)(b & (MP__S_STRIPES - 1));
        uint64_t off = old->slots[b], limit = walk_limit(old, si);
        eref_t r;
        while (off && limit-- && ent_at(old, si, off, &r)) {
            bool twin = twin_for(r.vlen);
            unsigned cls = ent_class(r.klen, r.vlen, twin);
            uint64_t no = ent_alloc(nv, si, cls);
            if (!no) return mp__fail(MP_ENOMEM, "store growth: arena too small");
            uint64_t *bucket = &nv->slots[r.e->hash & (nv->nslots - 1)];
            ent_fill(nv, no, cls, twin, *bucket, r.e->hash, r.key, r.klen, r.val, r.vlen);
            *bucket = no;
            mp__sstripe_t *st = &nv->st[si];
            atomic_store_explicit(&st->count,
                                  atomic_load_explicit(&st->count, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            st->live += class_cap(cls);
            off = r.e->next;
        }
    }
    return 0;
}

static int copy_list(mp__sview_t *old, mp__sview_t *nv)
{
    uint64_t n = list_count(old);
    if (n > old->nslots) n = old->nslots;
    uint64_t k = 0;
    for (uint64_t j = 0; j < n; j++) {
        eref_t r;
        if (!ent_at(old, 0, old->slots[j], &r)) continue;
        unsigned cls = ent_class(0, r.vlen, false);
        uint64_t no = ent_alloc(nv, 0, cls);
        if (!no) return mp__fail(MP_ENOMEM, "store growth: arena too small");
        ent_fill(nv, no, cls, false, 0, 0, NULL, 0, r.val, r.vlen);
        nv->slots[k++] = no;
        nv->st[0].live += class_cap(cls);
    }
    list_set_count(nv, k);
    return 0;
}

int mp__sview_grow(mp__sview_t *old, const mp__sneed_t *need, mp__sview_t *out)
{
    if (need->stripe >= old->nstripe || need->bytes > MP_MANAGER_MAX_ITEM + 4096 ||
        need->entries > MAX_NEED_ENTRIES)
        return mp__fail(MP_EINVAL, "store growth: request out of range");
    int rc = lock_all(old);
    if (rc) return rc;
    uint64_t total = 0, arena[MP__S_STRIPES];
    for (unsigned i = 0; i < old->nstripe; i++) {
        total += atomic_load_explicit(&old->st[i].count, memory_order_relaxed);
        uint64_t extra = i == need->stripe ? need->bytes : 0;
        arena[i] = arena_for(old->st[i].live, extra,
                             old->kind == MP__MK_DICT ? DICT_MIN_ARENA : LIST_MIN_ARENA);
    }
    uint64_t nslots = old->nslots;
    if (old->kind == MP__MK_DICT) {
        /* Load factor 1 per stripe: double while the buckets are short. */
        while (nslots < (total + need->entries) * 2 || (need->entries && nslots == old->nslots))
            nslots *= 2;
    } else {
        while (nslots < total + need->entries + 1)
            nslots *= 2;
    }
    rc = store_make(old->kind, nslots, arena, old->gen + 1, old->seed, out);
    if (!rc) rc = old->kind == MP__MK_DICT ? copy_dict(old, out) : copy_list(old, out);
    if (rc) {
        if (out->seg) mp__sview_close(out);
    } else {
        atomic_store_explicit(&old->h->state, S_MOVED, memory_order_release);
    }
    unlock_all(old);
    return rc;
}

/* ---- one call, by op ---- */

int mp__store_call(mp__sview_t *v, mp__scall_t *c, mp__sneed_t *need)
{
    switch (c->op) {
    case MP__M_D_SET:
        return dict_set(v, c->k, c->kl, c->val, c->vl, need);
    case MP__M_D_GET:
        return dict_get(v, c->k, c->kl, c->out, c->outlen);
    case MP__M_D_DEL:
        return dict_del(v, c->k, c->kl, NULL, NULL);
    case MP__M_D_POP:
        return dict_del(v, c->k, c->kl, c->out, c->outlen);
    case MP__M_D_LEN:
        return dict_len(v, c->count);
    case MP__M_D_ITEMS:
        return dict_items(v, c->keys, c->vals, c->count);
    case MP__M_D_CLEAR:
        return dict_clear(v);
    case MP__M_D_INCR:
        return dict_incr(v, c->k, c->kl, c->n, c->num, need);
    case MP__M_D_CAS:
        return dict_cas(v, c->k, c->kl, c->has_x ? c->x : NULL, c->xl, c->val, c->vl, need);
    case MP__M_L_APPEND:
        return list_append(v, c->val, c->vl, need);
    case MP__M_L_GET:
        return list_get(v, c->n, c->out, c->outlen);
    case MP__M_L_SET:
        return list_set(v, c->n, c->val, c->vl, need);
    case MP__M_L_POP:
        return list_pop(v, c->n, c->out, c->outlen);
    case MP__M_L_LEN:
        return list_len(v, c->count);
    case MP__M_L_ITEMS:
        return list_items(v, c->keys, c->count);
    default:
        return mp__fail(MP_EINVAL, "manager: not a dict or list call");
    }
}
