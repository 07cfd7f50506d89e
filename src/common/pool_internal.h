/* Internals of the pool (pool.c: lifecycle and the handler thread;
 * pool_dispatch.c: batches out, results in; pool_jobs.c: the calls users
 * wait on; pool_worker.c: the worker process; pool_link.c: transport). */
#ifndef MP_POOL_INTERNAL_H
#define MP_POOL_INTERNAL_H

#include "args.h"
#include "mproc/pool.h"

/* ---- transport: how batches travel between the pool and one worker ----
 * A duplex connection today. Only these calls touch it, so a shared-memory
 * queue could carry batches instead without changing the pool. */
typedef struct mp__plink mp__plink_t;

/* A new link: *parent stays in the pool, *child goes into the worker's args
 * (the caller frees it once the worker has started). */
int mp__plink_pair(mp__plink_t **parent, mp_handle_t **child);
/* The worker's end, from the handle in its args (which keeps owning it). */
int mp__plink_wrap(mp_handle_t *h, mp__plink_t **l);
/* One message made of the buffers, in order. MP_EOF when the peer is gone. */
int mp__plink_send(mp__plink_t *l, const mp_iov_t *iov, size_t n);
/* Where a reader's messages land: one buffer kept (and kept warm: a first
 * touch of a page costs more than copying its data) for every message up
 * to MP__P_RECV_KEEP bytes, a larger one in a block of its own freed at
 * the next read. */
typedef struct {
    uint8_t *p;
    size_t cap;
    void *spill;
    bool warm;
} mp__precv_t;
#define MP__P_RECV_KEEP (1u << 20)
/* What a reader warms: the largest message a busy map sends either way (a
 * batch of 64 KiB of units and one more unit; results flushed at 64 KiB
 * and one more stretch). */
#define MP__P_RECV_WARM (96u << 10)
/* The next message, in r until the next call. MP_EOF when the peer is
 * gone. */
int mp__plink_recv(mp__plink_t *l, mp__precv_t *r, const uint8_t **msg, size_t *len);
/* Gives r at least n bytes, every page touched, once in r's life. */
void mp__precv_warm(mp__precv_t *r, size_t n);
void mp__precv_release(mp__precv_t *r);
/* 1 when recv would not wait for the first byte, else 0. */
int mp__plink_poll(mp__plink_t *l);
/* Touches the link's own read buffers (see mp__precv_t). */
void mp__plink_warm(mp__plink_t *l);
/* What mp_wait waits on for incoming messages. */
mp_handle_t *mp__plink_waitable(mp__plink_t *l);
void mp__plink_free(mp__plink_t *l);

/* ---- the wire: records inside messages ----
 * Pool -> worker: DEF (a task function, once per worker), UNIT (a chunk of
 * items), QUIT. Worker -> pool: HELLO (after the initializer), RESULTS (the
 * outcomes of the next items in the order they were sent). Integers are
 * LEB128 varints; item inputs are aligned inside the message so a task may
 * read them in place. */
enum {
    MP__PW_DEF = 'D',
    MP__PW_UNIT = 'U',
    MP__PW_QUIT = 'Q',
    MP__PW_HELLO = 'H',
    MP__PW_RESULTS = 'R',
};
/* Unit modes: items of any size, or an array of fixed-size items. */
enum { MP__PU_VAR = 0, MP__PU_FIXED = 1 };
/* In a fixed unit's results: a run of successes (u32 count, then count *
 * out_size bytes), or one failed item. Variable items each start with a
 * varint status (0: ok, then a length and bytes). */
enum { MP__PR_RUN = 'r', MP__PR_FAIL = 'f' };
#define MP__P_ALIGN_VAR 8u
#define MP__P_ALIGN_FIXED 16u
#define MP__P_VARINT_MAX 10u
/* Bounds a worker applies to what it is sent. */
#define MP__P_MAX_FNS 65536u
#define MP__P_CONFIG_VERSION 1u

typedef struct {
    uint8_t *p;
    size_t len, cap;
} mp__pbuf_t;

/* Room for n more bytes; MP_ENOMEM. */
int mp__pbuf_grow(mp__pbuf_t *b, size_t n);
static inline int mp__pbuf_reserve(mp__pbuf_t *b, size_t n)
{
    return n <= b->cap - b->len ? 0 : mp__pbuf_grow(b, n);
}
void mp__pbuf_release(mp__pbuf_t *b);

static inline size_t mp__varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Needs MP__P_VARINT_MAX bytes reserved. */
static inline void mp__pbuf_varint(mp__pbuf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        b->p[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->p[b->len++] = (uint8_t)v;
}

/* Pads with zeros until len is a multiple of align (reserved already). */
static inline void mp__pbuf_pad(mp__pbuf_t *b, size_t align)
{
    while (b->len % align)
        b->p[b->len++] = 0;
}

typedef struct {
    const uint8_t *base, *p, *end;
    bool bad;
} mp__prd_t;

static inline void mp__prd_init(mp__prd_t *r, const void *p, size_t len)
{
    r->base = r->p = p;
    r->end = r->p + len;
    r->bad = false;
}

static inline bool mp__prd_more(const mp__prd_t *r)
{
    return !r->bad && r->p < r->end;
}

static inline uint64_t mp__prd_varint(mp__prd_t *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) break;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

static inline uint8_t mp__prd_u8(mp__prd_t *r)
{
    if (r->p >= r->end) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

/* n bytes in place, or NULL (and bad) past the end. */
static inline const uint8_t *mp__prd_bytes(mp__prd_t *r, uint64_t n)
{
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}

/* Skips the padding that aligned the writer's offset. */
static inline void mp__prd_align(mp__prd_t *r, size_t align)
{
    size_t off = (size_t)(r->p - r->base);
    mp__prd_bytes(r, (align - off % align) % align);
}

/* Status codes travel as their magnitude (0 is success). */
static inline uint64_t mp__status_enc(int code)
{
    return code < 0 ? (uint64_t) - (int64_t)code : (uint64_t)code;
}

/* A decoded status: a known MP_E* code, anything else reads as MP_EPROTO. */
static inline int mp__status_dec(uint64_t v)
{
    return v == 0 ? 0 : v <= (uint64_t)-MP_ESYS ? -(int)v : MP_EPROTO;
}

static inline uint64_t mp__zigzag_enc(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t mp__zigzag_dec(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* ---- the worker's configuration (the first of its args) ---- */
typedef struct {
    char *module; /* NULL: none */
    uint64_t offset, ident;
} mp__fnref_t;

typedef struct {
    uint64_t maxtasks; /* units; 0: unlimited */
    bool flush_each;   /* send each result before the next item starts */
    bool quiet;        /* no hello: the pool counts the worker ready at once */
    mp__fnref_t init;
} mp__wconfig_t;

int mp__wconfig_pack(const mp__wconfig_t *c, mp__wbuf_t *w);
/* On success c->init.module is malloc'd (or NULL). */
int mp__wconfig_unpack(const void *p, size_t n, mp__wconfig_t *c);

/* The worker process's target. */
int mp__pool_worker_main(mp_args_t *args);

/* Appends src[from..] to dst (handles referenced, not copied). */
int mp__pool_args_append(mp_args_t *dst, mp_args_t *src, size_t from);

/* ==== the pool's side ====
 * One mutex guards everything below. Only the handler thread reads from
 * workers, resolves items, starts and retires workers; any thread may queue
 * work and write batches to a worker (one writer per worker at a time,
 * marked by `sending`, the mutex released during the write). */

enum { MP__J_APPLY = 1, MP__J_MAP, MP__J_FIXED, MP__J_IMAP, MP__J_IMAP_UNORDERED };
/* How a thread may dispatch: IDLE only to workers with nothing in flight
 * (a submitting thread: the rest batches up for the handler); NOBLOCK
 * never more than surely fits in the worker's pipe (the handler, which
 * must keep reading); BLOCK anything (a thread that waits anyway). */
enum { MP__D_IDLE, MP__D_NOBLOCK, MP__D_BLOCK };
enum { MP__S_RUN, MP__S_CLOSED, MP__S_TERM };
enum { MP__W_STARTING, MP__W_READY, MP__W_RETIRING, MP__W_GONE };

typedef struct {
    void *data;
    size_t len;
    char *text;
    int status;
    bool ready;
} mp__slot_t;

/* A job: one apply_async, map or imap call. mp_result_t and mp_iter_t are
 * views of it. Referenced by its user and, until its last item has an
 * outcome and its callback ran, by the pool. */
typedef struct mp_result mp__job_t;
struct mp_result {
    uint32_t magic;
    uint8_t kind;
    bool queued;    /* in the pool's list of jobs with items to dispatch */
    bool cancelled; /* items not yet dispatched are dropped */
    bool taken;     /* apply: the output was handed over */
    int refs;
    mp_pool_t *pool;
    uint32_t fn;
    size_t n, chunk;
    size_t next; /* first item not yet dispatched */
    size_t done; /* items with an outcome, or dropped */
    /* inputs: an array of fixed-size items, or buffers */
    const uint8_t *fin;
    size_t in_size;
    const mp_iov_t *vin;
    void *own;      /* the copy of the inputs an asynchronous call keeps */
    size_t writing; /* map_fixed: writes in flight that read fin */
    /* outputs */
    uint8_t *fout; /* map_fixed: the caller's array */
    size_t out_size;
    mp_iov_t *vout;       /* map */
    mp__slot_t *slots;    /* apply, imap */
    size_t *order;        /* imap_unordered: indexes as they completed */
    size_t norder, given; /* imap: items handed to the caller */
    int err;              /* map: the first failure */
    size_t err_index;
    char *err_text;
    void (*cb)(mp_result_t *, void *);
    void *ud;
    mp__job_t *next_job;
};

typedef struct {
    mp__job_t *job;
    size_t first, count;
    size_t bytes;    /* its share of a worker's pipe */
    bool blind;      /* sent while its function's duration was unknown */
    uint64_t est_ns; /* its items' estimated time when sent (capped) */
} mp__unit_t;

/* A FIFO of units. */
typedef struct {
    mp__unit_t *v;
    size_t head, len, cap;
} mp__uring_t;

int mp__uring_push(mp__uring_t *q, const mp__unit_t *u, bool front);
mp__unit_t *mp__uring_at(mp__uring_t *q, size_t i);
void mp__uring_pop(mp__uring_t *q);
void mp__uring_release(mp__uring_t *q);

/* A run of a map_fixed caller's input array written straight from there,
 * inserted in a batch before its byte `at`. */
typedef struct {
    size_t at;
    const uint8_t *data;
    size_t len;
    mp__job_t *job;
} mp__pseg_t;

typedef struct {
    mp_process_t *proc;
    mp__plink_t *link; /* NULL once closed */
    int state;
    bool sending;
    bool greeted;  /* its hello came: the initializer ran */
    bool warm;     /* its link and batch buffer were touched */
    bool answered; /* it sent results before */
    size_t units_sent;
    mp__uring_t held;    /* units sent, oldest first */
    size_t got;          /* items of the oldest unit already answered */
    size_t items, bytes; /* in flight */
    size_t blind;        /* held units that are blind (see mp__unit_t) */
    uint64_t work_ns;    /* estimated time of the held items not answered */
    uint64_t head_start; /* when its current item started, at the latest */
    uint8_t *has_fn;     /* which task functions it was sent */
    size_t has_fn_cap;
    mp__pbuf_t out;   /* the batch being written */
    mp__pseg_t *segs; /* the batch's runs written from callers' arrays */
    size_t nsegs, segcap;
    size_t ext;    /* their bytes */
    mp_iov_t *iov; /* 2 * segcap + 1, for the write */
} mp__worker_t;

typedef struct {
    mp_task_fn f;
    mp__fnref_t ref;
    uint64_t est_ns; /* time an item takes, averaged; 0: none ended yet */
} mp__pfn_t;

struct mp_pool {
    uint32_t magic;
    mp__mutex_t *mu;
    mp__cond_t *cv; /* outcomes, start, end of the handler */
    int refs;       /* the user's and one per job */
    int state;
    bool started, handler_done, joined;
    bool ending; /* a thread ends a pool that has no handler (see end_here) */
    int start_rc;
    int broken; /* nonzero: the code every task now fails with */
    char *broken_text;
    mp__thread_t *thread;
    mp_conn_t *wake_r, *wake_w;
    bool wake_sent;
    uint64_t sleep_until; /* the handler's next wake-up; 0 while awake */
    int nproc;
    size_t maxtasks;
    long timeout_ms;
    mp_start_method_t method;
    void *config; /* the packed worker configuration */
    size_t config_len;
    mp_args_t *initargs;
    char *init_module;
    mp__worker_t **ws;
    size_t nws, wcap;
    mp__pfn_t *fns;
    size_t nfns, fcap;
    mp__job_t *qhead, *qtail; /* jobs with items to dispatch */
    mp__uring_t retry;        /* units to dispatch again, first */
    size_t waiters;
    bool notify;       /* outcomes a waiter may be waiting for */
    bool need_blocker; /* work only a thread that may block can send */
    mp__job_t *cbs;    /* finished jobs whose callback is due */
    mp__precv_t rbuf;  /* the handler's: where messages from workers land */
    bool got_results;  /* a worker sent results: rbuf is worth warming */
    unsigned counter;
    /* the handler's mp_wait arrays: what each entry is */
    mp_handle_t **wset;
    size_t *wready;
    struct mp__wslot *wmap;
    size_t wset_cap;
};

/* pool.c */
void mp__pool_wake(mp_pool_t *p);
/* Mutex held: starts the handler thread unless it runs or ran. */
int mp__pool_start_handler(mp_pool_t *p);
/* Every task from now on fails with MP_EWORKER and this text. */
void mp__pool_break(mp_pool_t *p, const char *fmt, ...)
#if defined(__MINGW32__)
    __attribute__((format(gnu_printf, 2, 3)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The worker died or misbehaved: code for the item it was running (the
 * others fail with MP_EWORKER, or are dispatched again when none of them
 * can have started). */
void mp__pool_worker_lost(mp_pool_t *p, mp__worker_t *w, int code, const char *why);
bool mp__pool_has_work(const mp_pool_t *p);
/* Drops one reference; true when the caller must destroy p after
 * unlocking. */
bool mp__pool_unref(mp_pool_t *p);
void mp__pool_destroy(mp_pool_t *p);

/* pool_dispatch.c */
int mp__pool_fn_id(mp_pool_t *p, mp_task_fn f, uint32_t *id);
void mp__pool_dispatch(mp_pool_t *p, int mode);
/* Writes w's batch (w->out), the mutex released meanwhile. */
void mp__pool_send(mp_pool_t *p, mp__worker_t *w, bool was_idle);
/* A message from w; a malformed one makes w lost. */
void mp__pool_on_message(mp_pool_t *p, mp__worker_t *w, const uint8_t *msg, size_t len);
/* Pulls queued units of j out of the retry list (j was cancelled). */
void mp__pool_purge_retry(mp_pool_t *p, mp__job_t *j);

/* pool_jobs.c */
/* Item idx's outcome (data and text are copied). */
void mp__job_item(mp__job_t *j, size_t idx, int status, const void *data, size_t len,
                  const char *text, size_t tlen);
/* count successful fixed-size items from idx, out_size bytes each. */
void mp__job_fixed_ok(mp__job_t *j, size_t idx, size_t count, const uint8_t *data);
/* Fails count items from idx with code and text. */
void mp__job_fail(mp__job_t *j, size_t idx, size_t count, int code, const char *text);
/* Drops the items not yet dispatched. */
void mp__job_cancel(mp__job_t *j);
/* Drops a reference the pool or user held; frees j at zero. True when
 * the pool must then be destroyed (see mp__pool_unref). */
bool mp__job_unref(mp__job_t *j);

#endif
