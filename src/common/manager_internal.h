/* Internals of the manager: manager.c (lifecycle and the public entry
 * points), manager_server.c (the server), manager_client.c (connections
 * to a server and the calls on them), manager_proxy.c (dict and list
 * proxies), manager_wire.c (the wire format of docs/PROTOCOL.md) and
 * manager_store.c (dicts and lists in shared segments). */
#ifndef MP_MANAGER_INTERNAL_H
#define MP_MANAGER_INTERNAL_H

#include "handle.h"
#include "mproc/manager.h"

/* ==== wire format (docs/PROTOCOL.md) ==== */

#define MP__M_VERSION 1
/* Requests a server accepts: an item, its key and the framing around it. */
#define MP__M_MAX_REQUEST (MP_MANAGER_MAX_ITEM + 4096)
#define MP__M_MAX_INTS 5
#define MP__M_MAX_BLOBS 3
#define MP__M_DETAIL_MAX 256

enum {
    MP__M_HELLO = 0x01,
    MP__M_OPEN = 0x02,
    MP__M_SHUTDOWN = 0x03,
    MP__M_REFRESH = 0x04,
    MP__M_GROW = 0x05,
    MP__M_D_SET = 0x10,
    MP__M_D_GET = 0x11,
    MP__M_D_DEL = 0x12,
    MP__M_D_POP = 0x13,
    MP__M_D_LEN = 0x14,
    MP__M_D_ITEMS = 0x15,
    MP__M_D_CLEAR = 0x16,
    MP__M_D_INCR = 0x17,
    MP__M_D_CAS = 0x18,
    MP__M_L_APPEND = 0x20,
    MP__M_L_GET = 0x21,
    MP__M_L_SET = 0x22,
    MP__M_L_POP = 0x23,
    MP__M_L_LEN = 0x24,
    MP__M_L_ITEMS = 0x25,
    MP__M_LK_ACQUIRE = 0x30,
    MP__M_LK_RELEASE = 0x31,
    MP__M_LK_DROP = 0x32,
    MP__M_SEM_ACQUIRE = 0x38,
    MP__M_SEM_RELEASE = 0x39,
    MP__M_SEM_VALUE = 0x3a,
    MP__M_EV_SET = 0x40,
    MP__M_EV_CLEAR = 0x41,
    MP__M_EV_IS_SET = 0x42,
    MP__M_EV_WAIT = 0x43,
    MP__M_Q_PUT = 0x48,
    MP__M_Q_GET = 0x49,
    MP__M_Q_QSIZE = 0x4a,
    MP__M_Q_TASK_DONE = 0x4b,
    MP__M_Q_JOIN = 0x4c,
};

/* Object kinds (OPEN). */
enum {
    MP__MK_DICT = 1,
    MP__MK_LIST,
    MP__MK_LOCK,
    MP__MK_RLOCK,
    MP__MK_SEMAPHORE,
    MP__MK_EVENT,
    MP__MK_QUEUE,
    MP__MK_COUNT
};

/* A decoded request or reply: integers, and byte strings pointing into
 * the message (s[i] is never NULL for a present blob). */
typedef struct {
    uint8_t op;
    uint8_t nint, nblob;
    int64_t i[MP__M_MAX_INTS];
    const uint8_t *s[MP__M_MAX_BLOBS];
    size_t n[MP__M_MAX_BLOBS];
} mp__mreq_t;

/* Parses a request; MP_EPROTO for anything malformed (never reads past
 * len). The shape of the op is checked by mp__mreq_check. */
int mp__mreq_decode(const void *buf, size_t len, mp__mreq_t *rq);
/* MP_EPROTO unless rq has the integers and blobs its op takes. */
int mp__mreq_check(const mp__mreq_t *rq);
/* Encodes a request into iov (room for 1 + 2 * MP__M_MAX_BLOBS); the
 * fixed parts go to scratch. Returns the number of buffers. */
#define MP__M_SCRATCH (3 + 8 * MP__M_MAX_INTS + 4 * MP__M_MAX_BLOBS)
size_t mp__mreq_encode(const mp__mreq_t *rq, uint8_t *scratch, mp_iov_t *iov);

/* A reply: a status (0 or an MP_E* code), integers and blobs. Error
 * replies carry one blob, a detail text. */
typedef struct {
    int status;
    uint8_t nint;
    int64_t i[MP__M_MAX_INTS];
    uint32_t nblob;
    const uint8_t **s; /* nblob entries, allocated by decode (or small) */
    size_t *n;
    const uint8_t *s1[2];
    size_t n1[2];
    void *msg; /* the received message, owned */
} mp__mrep_t;

int mp__mrep_decode(void *msg, size_t len, mp__mrep_t *rp);
void mp__mrep_release(mp__mrep_t *rp);

/* A reply under construction (server side). */
typedef struct {
    mp__wbuf_t w;
    uint32_t nblob;
    size_t nblob_at; /* where the blob count goes */
} mp__mrepw_t;

void mp__mrepw_begin(mp__mrepw_t *b, int status, uint8_t nint, const int64_t *ints);
void mp__mrepw_blob(mp__mrepw_t *b, const void *p, size_t n);
/* Patches the blob count; the message is b->w.p, b->w.len. */
int mp__mrepw_end(mp__mrepw_t *b);
/* An error reply with the thread's last detail. */
void mp__mrepw_error(mp__mrepw_t *b, int status);

/* ==== dicts and lists in shared segments (manager_store.c) ==== */

#define MP__S_STRIPES 8
#define MP__S_MOVED 1 /* a newer generation exists: refresh and retry */
#define MP__S_FULL 2  /* no room: ask the server to grow, then retry */

typedef struct {
    unsigned stripe;
    uint64_t bytes;   /* arena bytes the failed call needed */
    uint64_t entries; /* entries (dict buckets, list slots) it needed */
} mp__sneed_t;

/* This process's validated view of a store segment: the layout is fixed
 * for the life of a generation, so it is read once. */
typedef struct mp__shdr mp__shdr_t;
typedef struct mp__sstripe mp__sstripe_t;
typedef struct {
    mp__seg_t *seg;
    uint8_t *base;
    uint64_t size;
    mp__shdr_t *h;
    mp__sstripe_t *st;
    uint64_t *slots; /* dict buckets / list items */
    uint64_t nslots;
    uint64_t seed[2];
    uint32_t gen;
    int kind;
    unsigned nstripe;
    uint64_t ar_off[MP__S_STRIPES], ar_size[MP__S_STRIPES];
} mp__sview_t;

void mp__store_spec(int kind, mp__seg_spec_t *spec);
/* Adopts seg (also on failure, when it is closed). */
int mp__sview_open(mp__seg_t *seg, int kind, mp__sview_t *v);
void mp__sview_close(mp__sview_t *v);
/* Server: a new empty store; a bigger next generation of old holding its
 * data (old is then MOVED; MP__S_MOVED when it was already); closing. */
int mp__sview_create(int kind, mp__sview_t *v);
int mp__sview_grow(mp__sview_t *old, const mp__sneed_t *need, mp__sview_t *out);
void mp__sview_mark_closed(mp__sview_t *v);

/* One dict or list call, as the local path and the server both run it. */
typedef struct {
    uint8_t op; /* MP__M_D_* / MP__M_L_* */
    const void *k, *x, *val;
    size_t kl, xl, vl;
    bool has_x;
    int64_t n; /* incr's step, a list index */
    void **out;
    size_t *outlen;
    int64_t *num;
    size_t *count;
    mp_iov_t **keys, **vals;
} mp__scall_t;

/* Returns 0, an MP_E* code, MP__S_MOVED or MP__S_FULL (need says what
 * the store lacked). */
int mp__store_call(mp__sview_t *v, mp__scall_t *c, mp__sneed_t *need);

/* The server's liveness segment: its mutex is held by the serving thread
 * for as long as the server runs, and closed is set when it stops. */
#define MP__ALIVE_TAG 0x564c414du /* "MALV" */
typedef struct {
    _Atomic uint32_t closed;
} mp__alive_t;

/* ==== connections to a server (manager_client.c) ==== */

typedef struct mp__mclient mp__mclient_t;

/* The client of this process for (address, key): found or made, one more
 * reference. No connection is opened until one is needed. */
int mp__mclient_get(const char *address, const void *key, size_t keylen, bool has_key,
                    mp__mclient_t **out);
void mp__mclient_ref(mp__mclient_t *cl);
void mp__mclient_unref(mp__mclient_t *cl);
/* Opens a connection now (for mp_manager_connect: its errors as they are). */
int mp__mclient_connect(mp__mclient_t *cl);
/* Proxies of a manager that was shut down or freed here: MP_ECLOSED. */
void mp__mclient_close(mp__mclient_t *cl);
const char *mp__mclient_address(const mp__mclient_t *cl);
/* A request and its reply. A reply with a nonzero status returns that
 * status (with its detail recorded); rp stays valid either way (it may
 * carry integers with an error) and the caller releases it. */
int mp__mclient_call(mp__mclient_t *cl, const mp__mreq_t *rq, mp__mrep_t *rp);
/* 0 while the server runs; MP_ECLOSED after a shutdown, MP_EOF once it
 * died (noticed within 32 calls or a second). Cheap: meant for every
 * local call. */
int mp__mclient_alive(mp__mclient_t *cl);
/* Packs / unpacks a client reference (address, key, liveness segment). */
int mp__mclient_pack(mp__mclient_t *cl, mp__wbuf_t *w, mp__ostab_t *t);
int mp__mclient_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp__mclient_t **out);

/* ==== proxies (manager_proxy.c) ==== */

/* OPEN: the object id; for a local client's dict or list *local, and its
 * store in *seg (NULL when the reference went stale before it could be
 * opened: the proxy's first call asks for the current one). */
int mp__proxy_open(mp__mclient_t *cl, int kind, const char *name, int64_t p1, int64_t p2,
                   uint64_t *oid, bool *local, mp__seg_t **seg);
int mp__dict_wrap(mp__mclient_t *cl, uint64_t oid, bool local, mp__seg_t *seg, mp_dict_t **out);
int mp__list_wrap(mp__mclient_t *cl, uint64_t oid, bool local, mp__seg_t *seg, mp_list_t **out);

/* ==== managers (manager.c) ==== */

/* The client of a usable manager (MP_ECLOSED once it was shut down). */
int mp__manager_client(mp_manager_t *m, mp__mclient_t **cl);

/* ==== the server (manager_server.c) ==== */

typedef struct mp__msrv mp__msrv_t;

/* Serves o until a SHUTDOWN; ready (may be NULL) gets the address once it
 * listens. parent (may be NULL): a connection whose EOF also stops it. */
int mp__msrv_run(const mp_manager_opts_t *o, mp_conn_t *parent,
                 void (*ready)(const char *address, void *arg), void *arg);

/* The request handler without a network, for the fuzz target: a server
 * with no listener, and one session on it. */
int mp__msrv_create_detached(mp__msrv_t **s);
void mp__msrv_free_detached(mp__msrv_t *s);
/* Handles one request message as a session of client_id would; *stop when
 * it was a SHUTDOWN. */
int mp__msrv_handle(mp__msrv_t *s, uint64_t client_id, const void *msg, size_t len,
                    mp__mrepw_t *reply, bool *stop);

#endif
