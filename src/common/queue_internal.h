/* Queue internals shared by queue.c (the API, waiting, handles) and
 * queue_ring.c (the data structure in shared memory).
 *
 * One private segment holds a ring and the state below. Producers take
 * the put lock, consumers the get lock (robust mutexes), so one producer
 * and one consumer never wait for each other. Items that do not fit the
 * ring live in the segment's extension space: an item larger than a
 * quarter of the ring in a range of its own (a BIG entry names it), and
 * when the ring is full, further entries go to chain buffers (a LINK entry
 * names the next one; a sealed buffer sends the reader back to the ring).
 *
 * Crash safety: each side's state exists twice and one store of *cur
 * switches between the copies (pcommit, ccommit), so a process killed
 * inside put or get leaves either the old or the new state, never a mix.
 * An entry is written whole before the switch that makes it part of the
 * queue; what the state implies for others (the entry's tag, published
 * counters, a buffer's end) is written after it, and the next holder of
 * the lock writes it again when the lock reports its owner died. */
#ifndef MP_QUEUE_INTERNAL_H
#define MP_QUEUE_INTERNAL_H

#include <stdalign.h>

#include "handle.h"

#define Q_MAGIC 0x5150514du /* "MQPQ" */
#define Q_VERSION 1u
#define Q_TRACK 32 /* extension ranges kept for reuse */
#define Q_MAPS 16  /* mapped windows per side of a handle */

enum { Q_LOCK_PUT, Q_LOCK_GET, Q_NLOCK };
enum { Q_WQ_GET, Q_WQ_PUT, Q_WQ_JOIN, Q_NWQ };

/* A range of extension space the queue keeps: reusable once consumers
 * are past what used it (chain buffer number stamp: nleft >= stamp; item
 * index stamp: nget > stamp). cap 0: a free slot. */
typedef struct {
    uint64_t off, cap, stamp;
    uint64_t buffer;
} q_range_t;

/* Producer state. hot changes on every put; cold on the slow paths. */
typedef struct {
    uint64_t tail;     /* ring position after the last entry */
    uint64_t last;     /* ring position of the last entry (Q_NONE: none yet) */
    uint64_t nput;     /* items put, ever */
    uint64_t buf_pos;  /* in the chain buffer being filled */
    uint64_t seal_cap; /* nonzero: the buffer just left still to be sealed */
} q_phot_t;

#define Q_NONE UINT64_MAX

typedef struct {
    uint64_t ext_next;                     /* extension space handed out so far */
    uint64_t nbuf;                         /* chain buffers made */
    uint64_t buf_off, buf_cap;             /* the chain buffer being filled; cap 0: the ring */
    uint64_t seal_off, seal_end, seal_num; /* the buffer just left: its number */
    uint64_t kept;                         /* bytes in range[] */
    q_range_t range[Q_TRACK];
} q_pcold_t;

typedef struct {
    q_phot_t hot;
    q_pcold_t cold;
} q_pstate_t;

/* Consumer state. */
typedef struct {
    uint64_t head;    /* ring position of the next entry */
    uint64_t nget;    /* items taken, ever */
    uint64_t buf_pos; /* in the chain buffer being read */
    uint64_t rel_len; /* nonzero: [rel_off, +rel_len) is to be given back */
} q_chot_t;

typedef struct {
    uint64_t nleft;            /* chain buffers read to the end */
    uint64_t buf_off, buf_cap; /* the chain buffer being read; cap 0: the ring */
    uint64_t buf_untracked;    /* give that buffer back when leaving it */
    uint64_t rel_off;
} q_ccold_t;

typedef struct {
    q_chot_t hot;
    q_ccold_t cold;
} q_cstate_t;

/* The shared part; the ring follows it (q_ring). */
typedef struct {
    uint32_t magic, version; /* constant after create */
    uint64_t ring_cap;       /* a power of two */
    uint64_t maxsize;        /* 0: unbounded */
    uint64_t key;            /* random: mixed into the tags of ring entries */
    uint32_t joinable;
    /* Published by producers. head_hint: a head seen once (never ahead). */
    alignas(64) _Atomic uint64_t nput_pub;
    _Atomic uint64_t ext_pub, head_hint;
    _Atomic uint32_t put_seq; /* nput's low bits, stored last: sleeping consumers wait on it */
    /* Published by consumers. chain_pub: they read a chain buffer now. */
    alignas(64) _Atomic uint64_t head_pub;
    _Atomic uint64_t nget_pub, nleft_pub;
    _Atomic uint32_t get_seq; /* nget's low bits: producers of a full queue wait on it */
    _Atomic uint32_t chain_pub;
    /* Registered sleepers of each side (consumers and mp_wait; producers). */
    alignas(64) _Atomic uint32_t get_sleepers;
    _Atomic uint32_t put_sleepers;
    alignas(64) _Atomic uint64_t ndone;
    _Atomic uint32_t done_seq; /* joiners sleep on it */
    alignas(64) _Atomic uint32_t pcur;
    alignas(64) q_pstate_t pst[2];
    alignas(64) _Atomic uint32_t ccur;
    alignas(64) q_cstate_t cst[2];
} q_shm_t;

/* A window of extension space mapped into this process. */
typedef struct {
    uint64_t off;
    size_t len;
    void *p;
    uint64_t used;
} q_win_t;

typedef struct {
    q_win_t w[Q_MAPS];
    uint64_t tick;
    unsigned last; /* the window used last */
} q_cache_t;

struct mp_queue {
    mp_handle_t h;
    mp__seg_t *seg; /* NULL once dropped in a forked child */
    q_shm_t *q;
    mp_pid_t closed_by; /* close is per process: a forked child starts open */
    q_cache_t pc;       /* used under the put lock only */
    q_cache_t cc;       /* used under the get lock only */
    uint64_t nget_seen; /* consumers' count as last read here, under the put lock */
};

/* Where a taken item goes: the caller's buffer, or one allocated. */
typedef struct {
    void *buf;
    size_t cap;
    void **out; /* non-NULL: allocate */
    size_t *len;
} q_sink_t;

static inline uint8_t *q_ring(q_shm_t *q)
{
    return (uint8_t *)(q + 1);
}

/* queue_ring.c */
int mp__q_format(q_shm_t *q, uint64_t ring_cap, uint64_t maxsize, bool joinable);
int mp__q_validate(const q_shm_t *q, size_t seg_size);
/* Under the put lock: appends an item (room in a bounded queue was
 * checked by the caller) and publishes it. */
int mp__q_put_locked(mp_queue_t *h, const void *buf, size_t len, uint64_t *nput);
/* Under the get lock: takes the oldest item into the sink; MP_EEMPTY.
 * *nput / *nget: the count after this item. */
int mp__q_take_locked(mp_queue_t *h, const q_sink_t *s, uint64_t *nget);
/* Under a lock whose owner died: makes the state whole again. */
void mp__q_repair_put(mp_queue_t *h);
void mp__q_repair_get(mp_queue_t *h);
/* Unmaps every window of a cache. */
void mp__q_cache_clear(q_cache_t *c);
/* Without a lock, for a consumer about to wait: whether the entry at the
 * head may be there, and the word to spin on until it comes (the tag of
 * the entry at the head; put_seq while consumers read a chain buffer). */
bool mp__q_maybe_ready(mp_queue_t *h);
_Atomic uint32_t *mp__q_spin_word(mp_queue_t *h);

#endif
