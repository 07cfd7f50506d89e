/* The manager's server (BaseManager's Server): a listener, a thread per
 * connection, and the objects. Dicts and lists are shared stores (local
 * clients use them directly; the server runs TCP clients' calls on them
 * and grows them). Locks, events, semaphores and queues are state here:
 * every call on them is a request, and a call that waits (acquire, get,
 * wait) waits in its connection's thread, looking at the connection every
 * WAIT_SLICE_MS so that a client that died while waiting is noticed.
 *
 * Lock owners are (client id, thread id): a client process whose every
 * connection closed has died (or let go of the manager), so the locks it
 * held are released and their next owner is told MP_EOWNERDEAD.
 *
 * Requests are bounded before they are read (the listener's message
 * bound), parsed by manager_wire.c, and a malformed one gets an MP_EPROTO
 * reply; nothing a client sends is ever executed or trusted as a size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "manager_internal.h"

#define ACCEPT_SLICE_MS 1000L
#define WAIT_SLICE_MS 100L
#define STOP_GRACE_MS 2000L
/* A server process waits this long for its sessions to end before it
 * exits: those of clients still connected would end only with the exit. */
#define OWN_GRACE_MS 250L
#define HANDSHAKE_MS 5000L
#define WAKE_MS 2000L
#define MAX_SESSIONS 1024u
#define SEM_MAX 0x7fffffff

typedef struct qitem {
    struct qitem *next;
    size_t len;
    uint8_t data[];
} qitem_t;

typedef struct {
    uint64_t id;
    int kind;
    char *name; /* NULL: anonymous */
    /* dicts and lists */
    mp__mutex_t *mu; /* the view: calls of TCP clients, growth */
    mp__sview_t v;
    /* the rest, under the server's mutex */
    mp__cond_t *cv;
    uint64_t owner_client, owner_thread; /* thread 0: free */
    uint32_t depth;
    bool owner_dead;
    uint32_t value, max; /* semaphore */
    bool flag;           /* event */
    qitem_t *head, *tail;
    uint64_t qlen, maxsize, unfinished;
    bool joinable;
} obj_t;

typedef struct session session_t;
struct session {
    mp__msrv_t *srv;
    mp_conn_t *c; /* NULL: a detached server's session */
    /* Its own stop pipe (a connection serves one thread at a time): the
     * accepting thread closes stop_w to end the session. */
    mp_conn_t *stop_r, *stop_w;
    uint64_t client_id;
    bool hello;
    mp__thread_t *th;
    session_t *next;
    _Atomic int done;
    bool left; /* the server stopped without it: it frees itself */
    mp__mrepw_t rep;
};

typedef struct cref {
    uint64_t id;
    unsigned conns;
    struct cref *next;
} cref_t;

struct mp__msrv {
    mp__mutex_t *mu;
    obj_t **objs;
    size_t nobj, cap;
    cref_t *clients;
    bool local, detached;
    _Atomic int stopping;
    mp__seg_t *alive;
    mp_listener_t *l;
    char *wake_address;
    uint8_t *key;
    size_t keylen;
    bool has_key;
    mp_conn_t *stop_r, *stop_w; /* the parent watcher's */
    session_t *sessions;        /* touched by the accepting thread only */
    size_t nsessions;
    mp__thread_t *watcher;
    mp_conn_t *parent;
    mp__cond_t *pause; /* the accepting thread's naps; sessions that end */
    bool own_process;  /* started by mp_manager_start: it exits after */
    int refs;          /* the server's run, and each session */
};

static const mp__seg_spec_t alive_spec = {sizeof(mp__alive_t), 1, 0, MP__ALIVE_TAG, NULL, false};

/* ---- objects ---- */

static bool is_store(int kind)
{
    return kind == MP__MK_DICT || kind == MP__MK_LIST;
}

static void obj_free(obj_t *o)
{
    if (o->mu) mp__mutex_free(o->mu);
    if (o->cv) mp__cond_free(o->cv);
    mp__sview_close(&o->v);
    for (qitem_t *q = o->head, *n; q; q = n) {
        n = q->next;
        free(q);
    }
    free(o->name);
    free(o);
}

static int obj_new(mp__msrv_t *srv, int kind, const uint8_t *name, size_t nl, obj_t **out)
{
    if (srv->nobj == srv->cap) {
        size_t cap = srv->cap ? srv->cap * 2 : 16;
        obj_t **v = realloc(srv->objs, cap * sizeof *v);
        if (!v) return mp__fail(MP_ENOMEM, "manager: %zu objects", cap);
        srv->objs = v;
        srv->cap = cap;
    }
    obj_t *o = mp__calloc(1, sizeof *o);
    if (!o) return MP_ENOMEM;
    o->kind = kind;
    int rc = 0;
    if (nl && !(o->name = mp__malloc(nl + 1))) rc = MP_ENOMEM;
    if (o->name) {
        memcpy(o->name, name, nl);
        o->name[nl] = 0;
    }
    if (!rc && is_store(kind)) rc = mp__mutex_create(&o->mu);
    if (!rc && is_store(kind)) rc = mp__sview_create(kind, &o->v);
    if (!rc && !is_store(kind)) rc = mp__cond_create(&o->cv);
    if (rc) {
        obj_free(o);
        return rc;
    }
    srv->objs[srv->nobj++] = o;
    o->id = srv->nobj;
    *out = o;
    return 0;
}

static int find_obj(mp__msrv_t *srv, int64_t id, obj_t **out)
{
    mp__mutex_lock(srv->mu);
    obj_t *o = id > 0 && (uint64_t)id <= srv->nobj ? srv->objs[id - 1] : NULL;
    mp__mutex_unlock(srv->mu);
    if (!o) return mp__fail(MP_ENOTFOUND, "no manager object %lld", (long long)id);
    *out = o;
    return 0;
}

static int kind_of_op(uint8_t op)
{
    if (op >= MP__M_D_SET && op <= MP__M_D_CAS) return MP__MK_DICT;
    if (op >= MP__M_L_APPEND && op <= MP__M_L_ITEMS) return MP__MK_LIST;
    if (op >= MP__M_SEM_ACQUIRE && op <= MP__M_SEM_VALUE) return MP__MK_SEMAPHORE;
    if (op >= MP__M_EV_SET && op <= MP__M_EV_WAIT) return MP__MK_EVENT;
    if (op >= MP__M_Q_PUT && op <= MP__M_Q_JOIN) return MP__MK_QUEUE;
    return MP__MK_LOCK; /* and RLOCK */
}

static int find_typed(mp__msrv_t *srv, const mp__mreq_t *rq, obj_t **out)
{
    int rc = find_obj(srv, rq->i[0], out);
    if (rc) return rc;
    int want = kind_of_op(rq->op), have = (*out)->kind;
    if (have == want || (want == MP__MK_LOCK && have == MP__MK_RLOCK)) return 0;
    return mp__fail(MP_ETYPE, "manager object %lld is of another kind", (long long)rq->i[0]);
}

/* ---- replies ---- */

static void reply_ok(mp__mrepw_t *rep, uint8_t nint, const int64_t *ints)
{
    mp__mrepw_begin(rep, 0, nint, ints);
}

static int store_ref(obj_t *o, mp__mrepw_t *rep, const int64_t *ints, uint8_t nint)
{
    mp__seg_ref_t ref;
    int rc = mp__seg_ref(o->v.seg, true, &ref);
    if (rc) return rc;
    reply_ok(rep, nint, ints);
    mp__mrepw_blob(rep, ref.bytes, ref.len);
    return 0;
}

/* ---- HELLO and OPEN ---- */

static int op_hello(mp__msrv_t *srv, session_t *ss, const mp__mreq_t *rq, mp__mrepw_t *rep)
{
    if (ss->hello) return mp__fail(MP_EPROTO, "manager: a second greeting");
    if (rq->i[0] != MP__M_VERSION)
        return mp__fail(MP_EPROTO, "manager: protocol version %lld is not %d", (long long)rq->i[0],
                        MP__M_VERSION);
    if (!rq->i[1]) return mp__fail(MP_EPROTO, "manager: client id 0");
    cref_t *c = NULL;
    mp__mutex_lock(srv->mu);
    for (c = srv->clients; c && c->id != (uint64_t)rq->i[1]; c = c->next)
        ;
    if (!c && (c = mp__calloc(1, sizeof *c))) {
        c->id = (uint64_t)rq->i[1];
        c->next = srv->clients;
        srv->clients = c;
    }
    if (c) c->conns++;
    mp__mutex_unlock(srv->mu);
    if (!c) return MP_ENOMEM;
    ss->client_id = (uint64_t)rq->i[1];
    ss->hello = true;
    int64_t ints[2] = {MP__M_VERSION, srv->local && srv->alive};
    if (!ints[1]) {
        reply_ok(rep, 2, ints);
        return 0;
    }
    mp__seg_ref_t ref;
    int rc = mp__seg_ref(srv->alive, true, &ref);
    if (rc) return rc;
    reply_ok(rep, 2, ints);
    mp__mrepw_blob(rep, ref.bytes, ref.len);
    return 0;
}

static int check_params(int kind, int64_t p1, int64_t p2)
{
    if (kind <= 0 || kind >= MP__MK_COUNT) return mp__fail(MP_EINVAL, "manager: unknown kind");
    if (kind == MP__MK_SEMAPHORE &&
        (p1 < 0 || p1 > SEM_MAX || p2 < 0 || p2 > SEM_MAX || (p2 && p1 > p2)))
        return mp__fail(MP_EINVAL, "semaphore value %lld out of range (max %lld)", (long long)p1,
                        (long long)p2);
    if (kind == MP__MK_QUEUE && (p1 < 0 || p2 < 0 || p2 > 1))
        return mp__fail(MP_EINVAL, "queue size %lld out of range", (long long)p1);
    return 0;
}

static void init_params(obj_t *o, int64_t p1, int64_t p2)
{
    if (o->kind == MP__MK_SEMAPHORE) {
        o->value = (uint32_t)p1;
        o->max = (uint32_t)p2;
    } else if (o->kind == MP__MK_QUEUE) {
        o->maxsize = (uint64_t)p1;
        o->joinable = p2 == 1;
    }
}

static int op_open(mp__msrv_t *srv, const mp__mreq_t *rq, mp__mrepw_t *rep)
{
    int kind = rq->i[0] > 0 && rq->i[0] < MP__MK_COUNT ? (int)rq->i[0] : 0;
    int rc = check_params(kind, rq->i[1], rq->i[2]);
    if (rc) return rc;
    const uint8_t *name = rq->s[0];
    size_t nl = rq->n[0];
    if (nl > MP_MANAGER_NAME_MAX || memchr(name, 0, nl))
        return mp__fail(MP_EINVAL, "a manager object name has at most %d bytes, no NUL",
                        MP_MANAGER_NAME_MAX);
    obj_t *o = NULL;
    mp__mutex_lock(srv->mu);
    if (atomic_load(&srv->stopping)) rc = mp__fail(MP_ECLOSED, "the manager is shutting down");
    for (size_t i = 0; !rc && nl && i < srv->nobj; i++) {
        obj_t *x = srv->objs[i];
        if (x->name && strlen(x->name) == nl && !memcmp(x->name, name, nl)) {
            o = x;
            break;
        }
    }
    if (!rc && o && o->kind != kind)
        rc = mp__fail(MP_ETYPE, "the name \"%.*s\" belongs to an object of another kind", (int)nl,
                      (const char *)name);
    if (!rc && !o) {
        rc = obj_new(srv, kind, name, nl, &o);
        if (!rc) init_params(o, rq->i[1], rq->i[2]);
    }
    mp__mutex_unlock(srv->mu);
    if (rc) return rc;
    int64_t ints[2] = {(int64_t)o->id, kind};
    if (!is_store(kind) || !srv->local) {
        reply_ok(rep, 2, ints);
        return 0;
    }
    mp__mutex_lock(o->mu);
    rc = store_ref(o, rep, ints, 2);
    mp__mutex_unlock(o->mu);
    return rc;
}

/* ---- dicts and lists ---- */

static int grow_locked(obj_t *o, const mp__sneed_t *need)
{
    mp__sview_t nv;
    int rc = mp__sview_grow(&o->v, need, &nv);
    if (rc == MP__S_MOVED) return mp__fail(MP_EPROTO, "manager: the store moved under the server");
    if (rc) return rc;
    mp__sview_close(&o->v);
    o->v = nv;
    return 0;
}

static int op_store_ref(mp__msrv_t *srv, const mp__mreq_t *rq, mp__mrepw_t *rep)
{
    if (!srv->local) return mp__fail(MP_EPERM, "manager: shared stores are for local clients");
    obj_t *o;
    int rc = find_obj(srv, rq->i[0], &o);
    if (!rc && !is_store(o->kind)) rc = mp__fail(MP_ETYPE, "manager: not a dict or list");
    if (rc) return rc;
    mp__mutex_lock(o->mu);
    if (rq->op == MP__M_GROW && rq->i[1] == (int64_t)o->v.gen) {
        mp__sneed_t need = {.stripe = rq->i[2] < 0 || rq->i[2] > MP__S_STRIPES ? MP__S_STRIPES
                                                                               : (unsigned)rq->i[2],
                            .bytes = (uint64_t)rq->i[3],
                            .entries = (uint64_t)rq->i[4]};
        rc = grow_locked(o, &need);
    }
    if (!rc) rc = store_ref(o, rep, NULL, 0);
    mp__mutex_unlock(o->mu);
    return rc;
}

static void reply_items(mp__mrepw_t *rep, mp_iov_t *k, mp_iov_t *v, size_t n)
{
    reply_ok(rep, 0, NULL);
    for (size_t i = 0; i < n; i++) {
        mp__mrepw_blob(rep, k[i].data, k[i].len);
        if (v) mp__mrepw_blob(rep, v[i].data, v[i].len);
    }
    mp_iov_free(k, n);
    if (v) mp_iov_free(v, n);
}

static int op_store(mp__msrv_t *srv, const mp__mreq_t *rq, mp__mrepw_t *rep)
{
    obj_t *o;
    int rc = find_typed(srv, rq, &o);
    if (rc) return rc;
    void *out = NULL;
    size_t outlen = 0, count = 0;
    int64_t num = 0;
    mp_iov_t *keys = NULL, *vals = NULL;
    mp__scall_t c = {.op = rq->op,
                     .out = &out,
                     .outlen = &outlen,
                     .num = &num,
                     .count = &count,
                     .keys = &keys,
                     .vals = &vals};
    switch (rq->op) {
    case MP__M_D_CAS:
        c.has_x = rq->i[1] != 0;
        c.x = rq->s[1];
        c.xl = rq->n[1];
        c.val = rq->s[2];
        c.vl = rq->n[2];
        /* fall through */
    case MP__M_D_GET:
    case MP__M_D_DEL:
    case MP__M_D_POP:
        c.k = rq->s[0];
        c.kl = rq->n[0];
        break;
    case MP__M_D_SET:
        c.k = rq->s[0];
        c.kl = rq->n[0];
        c.val = rq->s[1];
        c.vl = rq->n[1];
        break;
    case MP__M_D_INCR:
        c.k = rq->s[0];
        c.kl = rq->n[0];
        c.n = rq->i[1];
        break;
    case MP__M_L_SET:
    case MP__M_L_APPEND:
        c.val = rq->s[0];
        c.vl = rq->n[0];
        c.n = rq->nint > 1 ? rq->i[1] : 0;
        break;
    case MP__M_L_GET:
    case MP__M_L_POP:
        c.n = rq->i[1];
        break;
    default:
        break;
    }
    mp__mutex_lock(o->mu);
    for (int round = 0;; round++) {
        mp__sneed_t need;
        rc = mp__store_call(&o->v, &c, &need);
        if (rc == MP__S_FULL && round < 4) {
            rc = grow_locked(o, &need);
            if (!rc) continue;
        } else if (rc > 0) {
            rc = mp__fail(MP_EPROTO, "manager: the store cannot take the item");
        }
        break;
    }
    mp__mutex_unlock(o->mu);
    if (rc) return rc;
    switch (rq->op) {
    case MP__M_D_GET:
    case MP__M_D_POP:
    case MP__M_L_GET:
    case MP__M_L_POP:
        reply_ok(rep, 0, NULL);
        mp__mrepw_blob(rep, out, outlen);
        mp_free(out);
        break;
    case MP__M_D_LEN:
    case MP__M_L_LEN:
        num = (int64_t)count;
        /* fall through */
    case MP__M_D_INCR:
        reply_ok(rep, 1, &num);
        break;
    case MP__M_D_ITEMS:
    case MP__M_L_ITEMS:
        reply_items(rep, keys, vals, count);
        break;
    default:
        reply_ok(rep, 0, NULL);
    }
    return 0;
}

/* ---- waiting (with the server's mutex held) ---- */

/* One slice of a wait on o: 0 to look again; MP_ETIMEDOUT; MP_ECLOSED once
 * the server stops; MP_EOF when the waiting client went away. */
static int wait_turn(mp__msrv_t *srv, session_t *ss, obj_t *o, long timeout_ms, uint64_t start)
{
    if (atomic_load(&srv->stopping)) return mp__fail(MP_ECLOSED, "the manager was shut down");
    long left = mp__timeout_left(timeout_ms, start);
    if (left == 0 || srv->detached) return MP_ETIMEDOUT;
    long slice = left < 0 || left > WAIT_SLICE_MS ? WAIT_SLICE_MS : left;
    int rc = mp__cond_wait(o->cv, srv->mu, slice);
    if (atomic_load(&srv->stopping)) return mp__fail(MP_ECLOSED, "the manager was shut down");
    /* A waiting client sends nothing: a readable connection is its end. */
    if (rc == MP_ETIMEDOUT && ss->c && mp_conn_poll(ss->c, 0) != 0)
        return mp__fail(MP_EOF, "the waiting client went away");
    return 0;
}

static int timed_out(int code, const char *what, long timeout_ms)
{
    return mp__fail(code, "%s within %ld ms", what, timeout_ms);
}

/* ---- locks ---- */

static int lock_acquire(mp__msrv_t *srv, session_t *ss, obj_t *o, uint64_t tid, long timeout_ms)
{
    uint64_t cid = ss->client_id, start = mp__os_now_ns();
    if (o->owner_thread == tid && o->owner_client == cid) {
        if (o->kind == MP__MK_LOCK)
            return mp__fail(MP_EPERM, "this thread holds the lock already (a Lock is not "
                                      "re-entrant; an RLock is)");
        if (o->depth == UINT32_MAX) return mp__fail(MP_EINVAL, "RLock re-entered too often");
        o->depth++;
        return 0;
    }
    for (;;) {
        if (!o->owner_thread) {
            o->owner_thread = tid;
            o->owner_client = cid;
            o->depth = 1;
            bool dead = o->owner_dead;
            o->owner_dead = false;
            return dead ? mp__fail(MP_EOWNERDEAD, "the previous owner died holding the lock") : 0;
        }
        int rc = wait_turn(srv, ss, o, timeout_ms, start);
        if (rc == MP_ETIMEDOUT) return timed_out(rc, "lock not acquired", timeout_ms);
        if (rc) return rc;
    }
}

static int lock_release(obj_t *o, uint64_t cid, uint64_t tid)
{
    if (o->owner_thread != tid || o->owner_client != cid)
        return mp__fail(MP_EPERM, "the lock is not held by this thread");
    if (--o->depth > 0) return 0;
    o->owner_thread = o->owner_client = 0;
    mp__cond_broadcast(o->cv);
    return 0;
}

/* A proxy freed by a thread that holds the lock: released at every depth,
 * as freeing an ordinary lock its holder holds releases it. Nothing to do
 * for a thread that does not hold it. */
static void lock_drop(obj_t *o, uint64_t cid, uint64_t tid)
{
    if (o->owner_thread != tid || o->owner_client != cid) return;
    o->depth = 1;
    lock_release(o, cid, tid);
}

/* ---- queues ---- */

static int queue_put(mp__msrv_t *srv, session_t *ss, obj_t *o, const mp__mreq_t *rq)
{
    uint64_t start = mp__os_now_ns();
    while (o->maxsize && o->qlen >= o->maxsize) {
        int rc = wait_turn(srv, ss, o, (long)rq->i[1], start);
        if (rc == MP_ETIMEDOUT) return timed_out(MP_EFULL, "queue full", (long)rq->i[1]);
        if (rc) return rc;
    }
    qitem_t *q = mp__malloc(sizeof *q + rq->n[0]);
    if (!q) return MP_ENOMEM;
    q->next = NULL;
    q->len = rq->n[0];
    if (q->len) memcpy(q->data, rq->s[0], q->len);
    if (o->tail)
        o->tail->next = q;
    else
        o->head = q;
    o->tail = q;
    o->qlen++;
    o->unfinished++;
    mp__cond_broadcast(o->cv);
    return 0;
}

static int queue_get(mp__msrv_t *srv, session_t *ss, obj_t *o, const mp__mreq_t *rq,
                     mp__mrepw_t *rep, bool *replied)
{
    uint64_t start = mp__os_now_ns();
    while (!o->head) {
        int rc = wait_turn(srv, ss, o, (long)rq->i[1], start);
        if (rc == MP_ETIMEDOUT) return timed_out(MP_EEMPTY, "queue empty", (long)rq->i[1]);
        if (rc) return rc;
    }
    qitem_t *q = o->head;
    if (rq->i[2] >= 0 && q->len > (uint64_t)rq->i[2]) {
        /* get_into with a short buffer: the item stays, its size goes back. */
        int64_t len = (int64_t)q->len;
        mp__fail(MP_EMSGSIZE, "item of %zu bytes does not fit a buffer of %lld", q->len,
                 (long long)rq->i[2]);
        const char *d = mp_last_error_detail();
        mp__mrepw_begin(rep, MP_EMSGSIZE, 1, &len);
        mp__mrepw_blob(rep, d, strlen(d));
        *replied = true;
        return MP_EMSGSIZE;
    }
    o->head = q->next;
    if (!o->head) o->tail = NULL;
    o->qlen--;
    reply_ok(rep, 0, NULL);
    mp__mrepw_blob(rep, q->data, q->len);
    free(q);
    *replied = true;
    mp__cond_broadcast(o->cv);
    return 0;
}

/* ---- locks, semaphores, events and queues: one place, under the mutex ---- */

static int sync_call(mp__msrv_t *srv, session_t *ss, obj_t *o, const mp__mreq_t *rq,
                     mp__mrepw_t *rep, bool *replied)
{
    int64_t r[2] = {0, 0};
    uint8_t nr = 0;
    int rc = 0;
    uint64_t start = mp__os_now_ns();
    switch (rq->op) {
    case MP__M_LK_ACQUIRE:
        rc = rq->i[1] ? lock_acquire(srv, ss, o, (uint64_t)rq->i[1], (long)rq->i[2])
                      : mp__fail(MP_EINVAL, "thread id 0");
        break;
    case MP__M_LK_RELEASE:
        rc = lock_release(o, ss->client_id, (uint64_t)rq->i[1]);
        break;
    case MP__M_LK_DROP:
        lock_drop(o, ss->client_id, (uint64_t)rq->i[1]);
        break;
    case MP__M_SEM_ACQUIRE:
        while (!rc && !o->value) {
            rc = wait_turn(srv, ss, o, (long)rq->i[1], start);
            if (rc == MP_ETIMEDOUT) rc = timed_out(rc, "semaphore not acquired", (long)rq->i[1]);
        }
        if (!rc) o->value--;
        break;
    case MP__M_SEM_RELEASE:
        if (o->value >= (o->max ? o->max : (uint32_t)SEM_MAX)) {
            rc = mp__fail(MP_EINVAL, "semaphore released past its bound of %u",
                          o->max ? o->max : (uint32_t)SEM_MAX);
            break;
        }
        o->value++;
        mp__cond_broadcast(o->cv);
        break;
    case MP__M_SEM_VALUE:
        r[nr++] = o->value;
        break;
    case MP__M_EV_SET:
        o->flag = true;
        mp__cond_broadcast(o->cv);
        break;
    case MP__M_EV_CLEAR:
        o->flag = false;
        break;
    case MP__M_EV_IS_SET:
        r[nr++] = o->flag;
        break;
    case MP__M_EV_WAIT:
        while (!rc && !o->flag) {
            rc = wait_turn(srv, ss, o, (long)rq->i[1], start);
            if (rc == MP_ETIMEDOUT) rc = timed_out(rc, "event not set", (long)rq->i[1]);
        }
        break;
    case MP__M_Q_PUT:
        rc = queue_put(srv, ss, o, rq);
        break;
    case MP__M_Q_GET:
        rc = queue_get(srv, ss, o, rq, rep, replied);
        break;
    case MP__M_Q_QSIZE:
        r[nr++] = (int64_t)o->qlen;
        r[nr++] = (int64_t)o->maxsize;
        break;
    case MP__M_Q_TASK_DONE:
        if (!o->joinable)
            rc = mp__fail(MP_ETYPE, "the queue is not joinable");
        else if (!o->unfinished)
            rc = mp__fail(MP_EINVAL, "task_done called more times than items were put");
        else if (--o->unfinished == 0)
            mp__cond_broadcast(o->cv);
        break;
    case MP__M_Q_JOIN:
        if (!o->joinable) rc = mp__fail(MP_ETYPE, "the queue is not joinable");
        while (!rc && o->unfinished) {
            rc = wait_turn(srv, ss, o, (long)rq->i[1], start);
            if (rc == MP_ETIMEDOUT) rc = timed_out(rc, "queue not joined", (long)rq->i[1]);
        }
        break;
    default:
        rc = mp__fail(MP_EPROTO, "manager: unknown request");
    }
    if (!rc && !*replied) reply_ok(rep, nr, r);
    return rc;
}

static int op_sync(mp__msrv_t *srv, session_t *ss, const mp__mreq_t *rq, mp__mrepw_t *rep,
                   bool *replied)
{
    obj_t *o;
    int rc = find_typed(srv, rq, &o);
    if (rc) return rc;
    mp__mutex_lock(srv->mu);
    rc = sync_call(srv, ss, o, rq, rep, replied);
    mp__mutex_unlock(srv->mu);
    return rc;
}

/* ---- clients that leave ---- */

static void client_left(mp__msrv_t *srv, uint64_t id)
{
    mp__mutex_lock(srv->mu);
    cref_t **p = &srv->clients;
    while (*p && (*p)->id != id)
        p = &(*p)->next;
    cref_t *c = *p;
    if (c && --c->conns == 0) {
        *p = c->next;
        free(c);
        for (size_t i = 0; i < srv->nobj; i++) {
            obj_t *o = srv->objs[i];
            if ((o->kind == MP__MK_LOCK || o->kind == MP__MK_RLOCK) && o->owner_thread &&
                o->owner_client == id) {
                o->owner_thread = o->owner_client = 0;
                o->depth = 0;
                o->owner_dead = true;
                mp__cond_broadcast(o->cv);
            }
        }
    }
    mp__mutex_unlock(srv->mu);
}

/* ---- stopping ---- */

static void wake_acceptor(mp__msrv_t *srv)
{
    if (!srv->wake_address) return;
    mp_client_opts_t o = {
        .authkey = srv->has_key ? srv->key : NULL, .keylen = srv->keylen, .timeout_ms = WAKE_MS};
    mp_conn_t *c;
    /* If this fails, the accept loop notices at its next slice. */
    if (!mp_client_connect_ex(srv->wake_address, &o, &c)) mp_conn_free(c);
}

static bool begin_stop(mp__msrv_t *srv)
{
    mp__mutex_lock(srv->mu);
    bool first = !atomic_exchange(&srv->stopping, 1);
    for (size_t i = 0; first && i < srv->nobj; i++) {
        obj_t *o = srv->objs[i];
        if (is_store(o->kind)) {
            mp__mutex_lock(o->mu);
            mp__sview_mark_closed(&o->v);
            mp__mutex_unlock(o->mu);
        } else {
            mp__cond_broadcast(o->cv);
        }
    }
    if (first && srv->alive) {
        mp__alive_t *a = mp__seg_ptr(srv->alive);
        atomic_store(&a->closed, 1);
    }
    mp__mutex_unlock(srv->mu);
    return first;
}

/* ---- one request ---- */

static int dispatch(mp__msrv_t *srv, session_t *ss, const mp__mreq_t *rq, mp__mrepw_t *rep,
                    bool *stop, bool *replied)
{
    switch (rq->op) {
    case MP__M_HELLO:
        return op_hello(srv, ss, rq, rep);
    case MP__M_OPEN:
        return op_open(srv, rq, rep);
    case MP__M_SHUTDOWN:
        *stop = true;
        begin_stop(srv);
        reply_ok(rep, 0, NULL);
        return 0;
    case MP__M_REFRESH:
    case MP__M_GROW:
        return op_store_ref(srv, rq, rep);
    default:
        break;
    }
    int kind = kind_of_op(rq->op);
    if (is_store(kind)) return op_store(srv, rq, rep);
    return op_sync(srv, ss, rq, rep, replied);
}

/* Handles one message; *close when the session must end after the reply. */
static void process(mp__msrv_t *srv, session_t *ss, const void *msg, size_t len, bool *stop,
                    bool *close)
{
    mp__mrepw_t *rep = &ss->rep;
    mp__mreq_t rq;
    bool replied = false;
    int rc = mp__mreq_decode(msg, len, &rq);
    if (!rc) rc = mp__mreq_check(&rq);
    if (!rc && !ss->hello && rq.op != MP__M_HELLO)
        rc = mp__fail(MP_EPROTO, "manager: a client must greet first");
    if (!rc) rc = dispatch(srv, ss, &rq, rep, stop, &replied);
    if (rc && !replied) mp__mrepw_error(rep, rc);
    if (mp__mrepw_end(rep)) {
        /* The reply itself failed (memory, a string over 4 GiB). */
        mp__mrepw_error(rep, rep->w.err);
        mp__mrepw_end(rep);
    }
    /* Without a greeting there is nobody to talk to; a waiting client that
     * went away is gone. */
    if (!ss->hello || rc == MP_EOF) *close = true;
}

/* ---- sessions ----
 * A session reads without a deadline: a client that stops in the middle of
 * a message holds only its own thread. In a server process of its own
 * (mp_manager_start) a session blocks in a plain read, one system call per
 * request as a raw request/response costs; a stopping server joins the
 * sessions that end within OWN_GRACE_MS (their clients closed) and the
 * process's exit ends the others. mp_manager_serve returns to its
 * caller instead, so there a session waits on its connection and a stop
 * pipe together, and a stopping server waits STOP_GRACE_MS for sessions
 * stuck in a message, then leaves them to end on their own. Whoever frees
 * a session (the accepting thread, or a left session itself) drops its
 * reference to the server. */

static void srv_unref(mp__msrv_t *srv);

static void session_release(session_t *ss)
{
    if (ss->stop_w) mp_conn_free(ss->stop_w);
    if (ss->stop_r) mp_conn_free(ss->stop_r);
    mp_conn_free(ss->c);
    mp__wbuf_release(&ss->rep.w);
    mp__msrv_t *srv = ss->srv;
    free(ss);
    srv_unref(srv);
}

static void session_main(void *arg)
{
    session_t *ss = arg;
    mp__msrv_t *srv = ss->srv;
    for (;;) {
        int rc = 0;
        if (ss->stop_r) {
            mp_handle_t *hs[2] = {MP_HANDLE(ss->c), MP_HANDLE(ss->stop_r)};
            size_t ready[2], nready = 0;
            rc = mp_wait(hs, 2, MP_FOREVER, ready, &nready);
            if (rc || (nready && ready[0] != 0)) break;
        }
        if (atomic_load(&srv->stopping)) break;
        void *msg = NULL;
        size_t len = 0;
        rc = mp_conn_recv_bytes(ss->c, &msg, &len);
        if (rc) break;
        if (atomic_load(&srv->stopping)) {
            mp_free(msg);
            break;
        }
        bool stop = false, close = false;
        process(srv, ss, msg, len, &stop, &close);
        mp_free(msg);
        rc = mp_conn_send_bytes(ss->c, ss->rep.w.p, ss->rep.w.len);
        if (stop) wake_acceptor(srv);
        if (rc || close || stop) break;
    }
    if (ss->hello) client_left(srv, ss->client_id);
    mp_conn_close(ss->c);
    mp__mutex_lock(srv->mu);
    atomic_store(&ss->done, 1);
    bool left = ss->left;
    mp__cond_broadcast(srv->pause);
    mp__mutex_unlock(srv->mu);
    if (left) session_release(ss); /* its thread handle is never joined */
}

static void session_free(session_t *ss)
{
    if (ss->stop_w) mp_conn_free(ss->stop_w);
    ss->stop_w = NULL;
    mp__thread_join(ss->th);
    session_release(ss);
}

/* Frees the sessions that ended. */
static void reap(mp__msrv_t *srv)
{
    session_t **p = &srv->sessions;
    while (*p) {
        session_t *ss = *p;
        if (atomic_load(&ss->done)) {
            *p = ss->next;
            srv->nsessions--;
            session_free(ss);
        } else {
            p = &ss->next;
        }
    }
}

/* Stopping: wakes every session, waits up to grace_ms for them (joining
 * each), leaves the rest. */
static void end_sessions(mp__msrv_t *srv, long grace_ms)
{
    for (session_t *ss = srv->sessions; ss; ss = ss->next) {
        mp_conn_free(ss->stop_w);
        ss->stop_w = NULL;
    }
    uint64_t start = mp__os_now_ns();
    mp__mutex_lock(srv->mu);
    for (;;) {
        session_t *ss = srv->sessions;
        while (ss && atomic_load(&ss->done))
            ss = ss->next;
        long left = mp__timeout_left(grace_ms, start);
        if (!ss || !left) break;
        mp__cond_wait(srv->pause, srv->mu, left);
    }
    for (session_t **p = &srv->sessions; *p;) {
        session_t *ss = *p;
        if (atomic_load(&ss->done)) {
            p = &ss->next;
            continue;
        }
        ss->left = true;
        *p = ss->next;
        srv->nsessions--;
    }
    mp__mutex_unlock(srv->mu);
    reap(srv);
}

static void start_session(mp__msrv_t *srv, mp_conn_t *c)
{
    session_t *ss = srv->nsessions < MAX_SESSIONS ? mp__calloc(1, sizeof *ss) : NULL;
    if (ss) {
        ss->srv = srv;
        ss->c = c;
    }
    if (!ss || (!srv->own_process && mp_pipe(&ss->stop_r, &ss->stop_w, false))) {
        if (ss && ss->stop_r) mp_conn_free(ss->stop_r);
        free(ss);
        mp_conn_free(c);
        return;
    }
    mp__mutex_lock(srv->mu);
    srv->refs++;
    mp__mutex_unlock(srv->mu);
    if (mp__thread_start(&ss->th, session_main, ss)) {
        session_release(ss);
        return;
    }
    ss->next = srv->sessions;
    srv->sessions = ss;
    srv->nsessions++;
}

/* ---- the server's life ---- */

static void srv_free(mp__msrv_t *srv)
{
    for (size_t i = 0; i < srv->nobj; i++)
        obj_free(srv->objs[i]);
    free(srv->objs);
    for (cref_t *c = srv->clients, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    if (srv->alive) mp__seg_close(srv->alive);
    if (srv->l) mp_listener_free(srv->l);
    /* Only what exists: freeing NULL would overwrite the failure's detail. */
    if (srv->stop_r) mp_conn_free(srv->stop_r);
    if (srv->stop_w) mp_conn_free(srv->stop_w);
    if (srv->key) {
        memset(srv->key, 0, srv->keylen);
        free(srv->key);
    }
    free(srv->wake_address);
    if (srv->pause) mp__cond_free(srv->pause);
    if (srv->mu) mp__mutex_free(srv->mu);
    free(srv);
}

static void srv_unref(mp__msrv_t *srv)
{
    mp__mutex_lock(srv->mu);
    bool last = --srv->refs == 0;
    mp__mutex_unlock(srv->mu);
    if (last) srv_free(srv);
}

static int srv_new(bool detached, mp__msrv_t **out)
{
    mp__msrv_t *srv = mp__calloc(1, sizeof *srv);
    if (!srv) return MP_ENOMEM;
    srv->detached = detached;
    srv->refs = 1;
    int rc = mp__mutex_create(&srv->mu);
    if (!rc) rc = mp__cond_create(&srv->pause);
    if (rc) {
        srv_free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

/* The address the server itself connects to in order to wake its accept:
 * a wildcard host is reached through loopback. */
static int wake_address(mp__msrv_t *srv, const char *addr)
{
    const char *v4 = "tcp://0.0.0.0:", *v6 = "tcp://[::]:";
    char buf[320];
    if (!strncmp(addr, v4, strlen(v4)))
        snprintf(buf, sizeof buf, "tcp://127.0.0.1:%s", addr + strlen(v4));
    else if (!strncmp(addr, v6, strlen(v6)))
        snprintf(buf, sizeof buf, "tcp://[::1]:%s", addr + strlen(v6));
    else
        snprintf(buf, sizeof buf, "%s", addr);
    srv->wake_address = mp__strdup(buf);
    return srv->wake_address ? 0 : MP_ENOMEM;
}

static int srv_listen(mp__msrv_t *srv, const mp_manager_opts_t *o)
{
    mp_listener_opts_t lo = {.authkey = o->authkey,
                             .keylen = o->keylen,
                             .allow_remote = o->allow_remote,
                             .handshake_timeout_ms = HANDSHAKE_MS,
                             .max_message = MP__M_MAX_REQUEST};
    int rc = mp_listener_create_ex(&srv->l, o->address, &lo);
    if (rc) return rc;
    srv->local = !o->address || strncmp(o->address, "tcp://", 6) != 0;
    srv->has_key = o->authkey != NULL;
    srv->keylen = o->keylen;
    if (srv->has_key) {
        srv->key = mp__malloc(o->keylen);
        if (!srv->key) return MP_ENOMEM;
        if (o->keylen) memcpy(srv->key, o->authkey, o->keylen);
    }
    return wake_address(srv, mp_listener_address(srv->l));
}

static int srv_alive(mp__msrv_t *srv)
{
    int rc = mp__seg_create(&alive_spec, &srv->alive);
    if (!rc) rc = mp__seg_lock(srv->alive, 0, MP_FOREVER);
    return rc;
}

static void watch_parent(void *arg)
{
    mp__msrv_t *srv = arg;
    mp_handle_t *hs[2] = {MP_HANDLE(srv->parent), MP_HANDLE(srv->stop_r)};
    size_t ready[2], nready = 0;
    mp_wait(hs, 2, MP_FOREVER, ready, &nready);
    if (!atomic_load(&srv->stopping) && begin_stop(srv)) wake_acceptor(srv);
}

static void accept_loop(mp__msrv_t *srv)
{
    while (!atomic_load(&srv->stopping)) {
        mp_conn_t *c = NULL;
        int rc = mp__listener_accept_within(srv->l, ACCEPT_SLICE_MS, &c);
        reap(srv);
        if (rc == MP_ETIMEDOUT || rc == MP_EAUTH || rc == MP_EOF || rc == MP_EPROTO) continue;
        if (rc) {
            /* Out of descriptors or memory: let the clients go on a while. */
            mp__mutex_lock(srv->mu);
            mp__cond_wait(srv->pause, srv->mu, 100);
            mp__mutex_unlock(srv->mu);
            continue;
        }
        if (atomic_load(&srv->stopping))
            mp_conn_free(c);
        else
            start_session(srv, c);
    }
}

int mp__msrv_run(const mp_manager_opts_t *o, mp_conn_t *parent,
                 void (*ready)(const char *address, void *arg), void *arg)
{
    mp__msrv_t *srv;
    int rc = srv_new(false, &srv);
    if (rc) return rc;
    srv->parent = parent;
    srv->own_process = parent != NULL;
    rc = srv_alive(srv);
    if (!rc) rc = mp_pipe(&srv->stop_r, &srv->stop_w, false);
    if (!rc) rc = srv_listen(srv, o);
    if (!rc && parent) rc = mp__thread_start(&srv->watcher, watch_parent, srv);
    if (rc) {
        if (srv->alive) mp__seg_unlock(srv->alive, 0);
        srv_free(srv);
        return rc;
    }
    if (ready) ready(mp_listener_address(srv->l), arg);
    accept_loop(srv);
    /* Closing the write ends wakes the watcher (and the sessions). */
    mp_conn_free(srv->stop_w);
    srv->stop_w = NULL;
    /* A server process's sessions read without a stop pipe: those of
     * clients that closed (the starter closes its connections at shutdown)
     * end by themselves and are joined; the rest end with the process. */
    end_sessions(srv, srv->own_process ? OWN_GRACE_MS : STOP_GRACE_MS);
    if (srv->watcher) mp__thread_join(srv->watcher);
    mp__seg_unlock(srv->alive, 0);
    mp_listener_free(srv->l); /* the address goes now, whoever is left */
    srv->l = NULL;
    /* Sessions still reading hold references of their own: what they use
     * stays until the last of them ends (or the process exits). */
    srv_unref(srv);
    return 0;
}

/* ---- without a network (the fuzz target) ---- */

int mp__msrv_create_detached(mp__msrv_t **s)
{
    int rc = srv_new(true, s);
    if (!rc) (*s)->local = true;
    return rc;
}

void mp__msrv_free_detached(mp__msrv_t *s)
{
    if (s) srv_unref(s);
}

int mp__msrv_handle(mp__msrv_t *s, uint64_t client_id, const void *msg, size_t len,
                    mp__mrepw_t *reply, bool *stop)
{
    session_t ss = {.srv = s, .client_id = client_id ? client_id : 1, .hello = true};
    ss.rep = *reply;
    bool close = false;
    *stop = false;
    process(s, &ss, msg, len, stop, &close);
    *reply = ss.rep;
    return 0;
}
