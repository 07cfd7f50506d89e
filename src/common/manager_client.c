/* Clients of a manager: one per (address, key) in each process, shared by
 * every proxy of that manager there. A client keeps a pool of connections:
 * a call takes an idle one (or opens one), so threads never share a
 * connection and a call that blocks (a lock acquire) blocks only its own.
 * After a fork the child never touches the parent's connections (the fork
 * closed its copies): it opens its own and takes a new client id, since
 * the server tracks lock owners by client id and thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_internal.h"

#define CONNECT_MS 30000L
#define PROBE_CALLS 32u

struct mp__mclient {
    mp__mclient_t *next; /* the registry of this process */
    bool listed;
    int refs;
    char *address;
    uint8_t *key;
    size_t keylen;
    bool has_key;
    mp__mutex_t *mu; /* the pool, the id and the liveness segment */
    mp_conn_t **idle;
    size_t nidle, cap;
    mp_pid_t pid; /* the process the pool belongs to */
    uint64_t id;
    _Atomic(mp__seg_t *) alive;
    _Atomic int closed; /* shut down or freed here: MP_ECLOSED */
    _Atomic int dead;   /* the server is gone: MP_EOF */
    /* When to look at the liveness mutex next: after PROBE_CALLS calls or
     * once the second (time()) changed. */
    _Atomic uint32_t calls;
    _Atomic int64_t probe_sec;
};

static mp__mclient_t *registry;
static atomic_flag registry_lock = ATOMIC_FLAG_INIT;

static void reg_lock(void)
{
    while (atomic_flag_test_and_set_explicit(&registry_lock, memory_order_acquire))
        ;
}

static void reg_unlock(void)
{
    atomic_flag_clear_explicit(&registry_lock, memory_order_release);
}

static void reg_remove_locked(mp__mclient_t *cl)
{
    for (mp__mclient_t **p = &registry; *p; p = &(*p)->next)
        if (*p == cl) {
            *p = cl->next;
            break;
        }
    cl->listed = false;
}

static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--)
        *v++ = 0;
}

static void client_destroy(mp__mclient_t *cl)
{
    for (size_t i = 0; i < cl->nidle; i++)
        mp_conn_free(cl->idle[i]);
    free(cl->idle);
    mp__seg_t *alive = atomic_load(&cl->alive);
    if (alive) mp__seg_close(alive);
    if (cl->key) {
        wipe(cl->key, cl->keylen);
        free(cl->key);
    }
    if (cl->mu) mp__mutex_free(cl->mu);
    free(cl->address);
    free(cl);
}

static bool same(const mp__mclient_t *cl, const char *address, const void *key, size_t keylen,
                 bool has_key)
{
    return !strcmp(cl->address, address) && cl->has_key == has_key && cl->keylen == keylen &&
           (!keylen || !memcmp(cl->key, key, keylen));
}

static int new_id(uint64_t *id)
{
    int rc;
    do
        rc = mp__os_random(id, sizeof *id);
    while (!rc && !*id);
    return rc;
}

int mp__mclient_get(const char *address, const void *key, size_t keylen, bool has_key,
                    mp__mclient_t **out)
{
    reg_lock();
    for (mp__mclient_t *cl = registry; cl; cl = cl->next)
        if (same(cl, address, key, keylen, has_key)) {
            cl->refs++;
            reg_unlock();
            *out = cl;
            return 0;
        }
    reg_unlock();
    mp__mclient_t *cl = mp__calloc(1, sizeof *cl);
    if (!cl) return MP_ENOMEM;
    cl->refs = 1;
    cl->has_key = has_key;
    cl->keylen = keylen;
    cl->pid = mp__os_getpid();
    cl->address = mp__strdup(address);
    int rc = cl->address ? mp__mutex_create(&cl->mu) : MP_ENOMEM;
    if (!rc && has_key) {
        cl->key = mp__malloc(keylen);
        if (!cl->key) rc = MP_ENOMEM;
        if (!rc && keylen) memcpy(cl->key, key, keylen);
    }
    if (!rc) rc = new_id(&cl->id);
    if (rc) {
        client_destroy(cl);
        return rc;
    }
    reg_lock();
    cl->next = registry;
    registry = cl;
    cl->listed = true;
    reg_unlock();
    *out = cl;
    return 0;
}

void mp__mclient_ref(mp__mclient_t *cl)
{
    reg_lock();
    cl->refs++;
    reg_unlock();
}

void mp__mclient_unref(mp__mclient_t *cl)
{
    if (!cl) return;
    reg_lock();
    bool last = --cl->refs == 0;
    if (last && cl->listed) reg_remove_locked(cl);
    reg_unlock();
    if (last) client_destroy(cl);
}

/* Later lookups of this address get a fresh client: a new manager may
 * come to listen there. */
static void unlist(mp__mclient_t *cl)
{
    reg_lock();
    if (cl->listed) reg_remove_locked(cl);
    reg_unlock();
}

void mp__mclient_close(mp__mclient_t *cl)
{
    atomic_store(&cl->closed, 1);
    unlist(cl);
    /* Idle connections close now, so the server's sessions for them end
     * before it exits rather than with it; busy ones close when their
     * call returns them. */
    mp__mutex_lock(cl->mu);
    bool mine = cl->pid == mp__os_getpid();
    for (size_t i = 0; mine && i < cl->nidle; i++)
        mp_conn_free(cl->idle[i]);
    if (mine) cl->nidle = 0;
    mp__mutex_unlock(cl->mu);
}

static int gone(mp__mclient_t *cl, const char *why)
{
    char copy[160];
    snprintf(copy, sizeof copy, "%s", why); /* why may be the detail we overwrite */
    atomic_store(&cl->dead, 1);
    unlist(cl);
    return mp__fail(MP_EOF, "the manager at %s is gone (%s)", cl->address, copy);
}

const char *mp__mclient_address(const mp__mclient_t *cl)
{
    return cl->address;
}

/* Local clients: the server's liveness segment, adopted once (the copy
 * another thread or proxy brought is closed). */
static void set_alive(mp__mclient_t *cl, mp__seg_t *alive)
{
    mp__seg_t *none = NULL;
    if (!atomic_compare_exchange_strong(&cl->alive, &none, alive)) mp__seg_close(alive);
}

static const mp__seg_spec_t alive_spec = {sizeof(mp__alive_t), 1, 0, MP__ALIVE_TAG, NULL, false};

int mp__mclient_alive(mp__mclient_t *cl)
{
    if (atomic_load_explicit(&cl->closed, memory_order_relaxed))
        return mp__fail(MP_ECLOSED, "the manager was shut down");
    if (atomic_load_explicit(&cl->dead, memory_order_relaxed))
        return mp__fail(MP_EOF, "the manager's server is gone");
    mp__seg_t *a = atomic_load_explicit(&cl->alive, memory_order_acquire);
    if (!a) return 0;
    mp__alive_t *st = mp__seg_ptr(a);
    if (atomic_load_explicit(&st->closed, memory_order_acquire))
        return mp__fail(MP_ECLOSED, "the manager was shut down");
    /* The serving thread holds this mutex for as long as the server runs:
     * taking it means the server died. Trying it writes a line every
     * process shares, so it is tried once per PROBE_CALLS calls or when the
     * second changed, not per call; a monotonic clock read costs as much
     * as the rest of a dict call on a virtual machine (kvm-clock, ~100 ns),
     * time() a few nanoseconds. */
    uint32_t n = atomic_load_explicit(&cl->calls, memory_order_relaxed) + 1;
    int64_t sec = (int64_t)time(NULL);
    if (n < PROBE_CALLS && sec == atomic_load_explicit(&cl->probe_sec, memory_order_relaxed)) {
        atomic_store_explicit(&cl->calls, n, memory_order_relaxed);
        return 0;
    }
    atomic_store_explicit(&cl->calls, 0, memory_order_relaxed);
    atomic_store_explicit(&cl->probe_sec, sec, memory_order_relaxed);
    int rc = mp__seg_lock(a, 0, 0);
    if (rc == MP_ETIMEDOUT) return 0;
    if (rc == 0 || rc == MP_EOWNERDEAD) {
        mp__seg_unlock(a, 0);
        return gone(cl, "its server process died");
    }
    return rc;
}

/* ---- connections ---- */

static int adopt_alive(mp__mclient_t *cl, const uint8_t *ref, size_t n)
{
    mp__seg_ref_t r = {.len = n, .nosh = 0};
    if (n > sizeof r.bytes) return mp__fail(MP_EPROTO, "manager: liveness reference too long");
    memcpy(r.bytes, ref, n);
    mp__seg_t *s;
    int rc = mp__seg_from_ref(&r, &alive_spec, &s);
    if (!rc) set_alive(cl, s);
    return rc;
}

static int exchange(mp_conn_t *c, const mp__mreq_t *rq, mp__mrep_t *rp)
{
    memset(rp, 0, sizeof *rp);
    uint8_t scratch[MP__M_SCRATCH];
    mp_iov_t iov[1 + 2 * MP__M_MAX_BLOBS];
    size_t n = mp__mreq_encode(rq, scratch, iov);
    int rc = mp_conn_sendv(c, iov, n);
    void *msg = NULL;
    size_t len = 0;
    if (!rc) rc = mp_conn_recv_bytes(c, &msg, &len);
    if (!rc) rc = mp__mrep_decode(msg, len, rp);
    if (rc && msg && !rp->msg) mp_free(msg);
    return rc;
}

static int hello(mp__mclient_t *cl, mp_conn_t *c, uint64_t id)
{
    mp__mreq_t rq = {.op = MP__M_HELLO, .nint = 2, .i = {MP__M_VERSION, (int64_t)id}};
    mp__mrep_t rp;
    int rc = exchange(c, &rq, &rp);
    if (!rc && rp.status) rc = mp__fail(rp.status, "manager refused the connection");
    if (!rc && (rp.nint != 2 || rp.i[0] != MP__M_VERSION || rp.nblob != (rp.i[1] ? 1u : 0u)))
        rc = mp__fail(MP_EPROTO, "manager: unexpected greeting");
    if (!rc && rp.i[1] && !atomic_load(&cl->alive)) rc = adopt_alive(cl, rp.s[0], rp.n[0]);
    mp__mrep_release(&rp);
    return rc;
}

static int open_conn(mp__mclient_t *cl, uint64_t id, mp_conn_t **out)
{
    mp_client_opts_t o = {
        .authkey = cl->has_key ? cl->key : NULL, .keylen = cl->keylen, .timeout_ms = CONNECT_MS};
    mp_conn_t *c;
    int rc = mp_client_connect_ex(cl->address, &o, &c);
    if (rc) return rc;
    rc = hello(cl, c, id);
    if (rc) {
        mp_conn_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* In a forked child: the pool's connections are the parent's (already
 * closed here by the fork), and the id names the parent. */
static int after_fork_locked(mp__mclient_t *cl)
{
    mp_pid_t me = mp__os_getpid();
    if (cl->pid == me) return 0;
    for (size_t i = 0; i < cl->nidle; i++)
        mp_conn_free(cl->idle[i]);
    cl->nidle = 0;
    cl->pid = me;
    return new_id(&cl->id);
}

static int take_conn(mp__mclient_t *cl, mp_conn_t **out)
{
    mp__mutex_lock(cl->mu);
    int rc = after_fork_locked(cl);
    uint64_t id = cl->id;
    *out = NULL;
    if (!rc && cl->nidle) *out = cl->idle[--cl->nidle];
    mp__mutex_unlock(cl->mu);
    if (rc || *out) return rc;
    return open_conn(cl, id, out);
}

static void give_conn(mp__mclient_t *cl, mp_conn_t *c)
{
    mp__mutex_lock(cl->mu);
    bool keep = !atomic_load(&cl->closed);
    if (keep && cl->nidle == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 4;
        mp_conn_t **v = realloc(cl->idle, cap * sizeof *v);
        if (v) {
            cl->idle = v;
            cl->cap = cap;
        } else {
            keep = false;
        }
    }
    if (keep) cl->idle[cl->nidle++] = c;
    mp__mutex_unlock(cl->mu);
    if (!keep) mp_conn_free(c);
}

int mp__mclient_connect(mp__mclient_t *cl)
{
    mp_conn_t *c;
    int rc = take_conn(cl, &c);
    if (!rc) give_conn(cl, c);
    return rc;
}

int mp__mclient_call(mp__mclient_t *cl, const mp__mreq_t *rq, mp__mrep_t *rp)
{
    memset(rp, 0, sizeof *rp);
    if (atomic_load(&cl->closed)) return mp__fail(MP_ECLOSED, "the manager was shut down");
    if (atomic_load(&cl->dead)) return mp__fail(MP_EOF, "the manager's server is gone");
    mp_conn_t *c;
    int rc = take_conn(cl, &c);
    /* The key worked before (it made this client): a refusal now, even one
     * the handshake calls MP_EAUTH, is a server that went away. */
    if (rc == MP_ENOMEM) return rc;
    if (rc) return gone(cl, mp_last_error_detail());
    rc = exchange(c, rq, rp);
    if (rc) {
        /* A pooled connection the server dropped (it stopped): not worth a
         * retry, the manager is gone either way. */
        if (rc != MP_ENOMEM) rc = gone(cl, mp_last_error_detail());
        mp_conn_free(c);
        mp__mrep_release(rp);
        return rc;
    }
    give_conn(cl, c);
    if (!rp->status) return 0;
    if (rp->nblob == 1)
        mp__fail(rp->status, "manager: %.*s", (int)rp->n[0], (const char *)rp->s[0]);
    else
        mp__fail(rp->status, "manager: %s", mp_strerror(rp->status));
    return rp->status;
}

/* ---- a client inside a packed proxy ---- */

int mp__mclient_pack(mp__mclient_t *cl, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp__wbuf_str(w, cl->address);
    mp__wbuf_u8(w, cl->has_key);
    mp__wbuf_blob(w, cl->key, cl->keylen);
    mp__seg_t *alive = atomic_load(&cl->alive);
    mp__wbuf_u8(w, alive != NULL);
    if (alive) return mp__seg_pack(alive, w, t);
    return w->err;
}

int mp__mclient_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp__mclient_t **out)
{
    char *address = mp__rbuf_str(r);
    uint8_t has_key = mp__rbuf_u8(r);
    size_t keylen = 0;
    const void *key = mp__rbuf_blob(r, &keylen);
    uint8_t has_alive = mp__rbuf_u8(r);
    int rc = r->err;
    if (!rc && (has_key > 1 || has_alive > 1 || (!has_key && keylen)))
        rc = mp__rbuf_bad(r, "manager client flags");
    mp__seg_t *alive = NULL;
    if (!rc && has_alive) rc = mp__seg_unpack(r, tab, ntab, &alive_spec, &alive);
    if (!rc) rc = mp__mclient_get(address, key, keylen, has_key, out);
    if (!rc && alive)
        set_alive(*out, alive);
    else if (alive)
        mp__seg_close(alive);
    free(address);
    return rc;
}
