/* Dict and list proxies. A local proxy maps the object's store segment and
 * works on it directly (manager_store.c); it asks the server only when the
 * store moved to a new generation or is full. A TCP proxy sends every call
 * to the server, which runs the same store code on the same data. */
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"

/* Rounds of refresh/grow one call may take before giving up: each round
 * means another process grew the store meanwhile. */
#define MAX_ROUNDS 64

typedef struct {
    mp_handle_t h;
    int kind;
    mp__mclient_t *cl;
    uint64_t oid;
    mp__mutex_t *mu; /* the view, which a refresh replaces */
    mp__sview_t v;   /* v.seg NULL: remote */
    bool local;
} proxy_t;

struct mp_dict {
    proxy_t p;
};
struct mp_list {
    proxy_t p;
};

/* Opens a store reference the server sent. MP__S_MOVED when it went stale
 * before we got to it: the server replaced that generation meanwhile (its
 * name may even name another segment by now, which the segment's key
 * tells). */
static int open_ref(int kind, const uint8_t *bytes, size_t n, mp__seg_t **seg)
{
    if (n > MP__SEG_REF_MAX) return mp__fail(MP_EPROTO, "manager: bad store reference");
    mp__seg_ref_t ref = {.len = n};
    memcpy(ref.bytes, bytes, n);
    mp__seg_spec_t spec;
    mp__store_spec(kind, &spec);
    int rc = mp__seg_from_ref(&ref, &spec, seg);
    return rc == MP_ENOTFOUND || rc == MP_EPROTO ? MP__S_MOVED : rc;
}

/* Replaces the view with the store the server now holds for the object. */
static int adopt_ref(proxy_t *p, const mp__mrep_t *rp)
{
    if (rp->nblob != 1) return mp__fail(MP_EPROTO, "manager: bad store reference");
    mp__seg_t *seg;
    int rc = open_ref(p->kind, rp->s[0], rp->n[0], &seg);
    mp__sview_t nv;
    if (!rc) rc = mp__sview_open(seg, p->kind, &nv);
    if (rc) return rc;
    mp__sview_close(&p->v);
    p->v = nv;
    return 0;
}

static int server_store(proxy_t *p, uint8_t op, const mp__sneed_t *need)
{
    mp__mreq_t rq = {.op = op, .nint = 1, .i = {(int64_t)p->oid}};
    if (op == MP__M_GROW) {
        rq.nint = 5;
        rq.i[1] = p->v.gen;
        rq.i[2] = need->stripe;
        rq.i[3] = (int64_t)need->bytes;
        rq.i[4] = (int64_t)need->entries;
    }
    mp__mrep_t rp;
    int rc = mp__mclient_call(p->cl, &rq, &rp);
    if (!rc) rc = adopt_ref(p, &rp);
    mp__mrep_release(&rp);
    return rc;
}

static int local_call(proxy_t *p, mp__scall_t *c)
{
    int rc = mp__mclient_alive(p->cl);
    if (rc) return rc;
    mp__mutex_lock(p->mu);
    for (int round = 0;; round++) {
        mp__sneed_t need;
        /* No view yet: the reference this proxy came with was stale. */
        rc = p->v.seg ? mp__store_call(&p->v, c, &need) : MP__S_MOVED;
        if (rc != MP__S_MOVED && rc != MP__S_FULL) break;
        if (round == MAX_ROUNDS) {
            rc = mp__fail(MP_EBUSY, "manager: the store keeps moving");
            break;
        }
        rc = server_store(p, rc == MP__S_MOVED ? MP__M_REFRESH : MP__M_GROW, &need);
        if (rc < 0) break;
    }
    mp__mutex_unlock(p->mu);
    return rc;
}

/* ---- the remote path ---- */

static int copy_blob(const mp__mrep_t *rp, uint32_t i, void **out, size_t *len)
{
    void *d = mp__malloc(rp->n[i]);
    if (!d) return MP_ENOMEM;
    if (rp->n[i]) memcpy(d, rp->s[i], rp->n[i]);
    *out = d;
    *len = rp->n[i];
    return 0;
}

static int take_items(const mp__mrep_t *rp, mp__scall_t *c)
{
    bool pairs = c->op == MP__M_D_ITEMS;
    size_t n = pairs ? rp->nblob / 2 : rp->nblob;
    if (pairs && rp->nblob % 2) return mp__fail(MP_EPROTO, "manager: odd items reply");
    mp_iov_t *k = mp__calloc(n, sizeof *k), *v = pairs ? mp__calloc(n, sizeof *v) : NULL;
    int rc = k && (v || !pairs) ? 0 : MP_ENOMEM;
    size_t i = 0;
    for (; !rc && i < n; i++) {
        rc = copy_blob(rp, (uint32_t)(pairs ? 2 * i : i), &k[i].data, &k[i].len);
        if (!rc && pairs) {
            rc = copy_blob(rp, (uint32_t)(2 * i + 1), &v[i].data, &v[i].len);
            if (rc) free(k[i].data);
        }
    }
    if (rc) {
        if (k) mp_iov_free(k, i);
        if (v) mp_iov_free(v, i);
        return rc;
    }
    *c->keys = k;
    if (pairs) *c->vals = v;
    *c->count = n;
    return 0;
}

static int take_result(const mp__mrep_t *rp, mp__scall_t *c)
{
    switch (c->op) {
    case MP__M_D_GET:
    case MP__M_D_POP:
    case MP__M_L_GET:
    case MP__M_L_POP:
        if (rp->nblob != 1) break;
        return copy_blob(rp, 0, c->out, c->outlen);
    case MP__M_D_LEN:
    case MP__M_L_LEN:
        if (rp->nint != 1 || rp->i[0] < 0) break;
        *c->count = (size_t)rp->i[0];
        return 0;
    case MP__M_D_INCR:
        if (rp->nint != 1) break;
        if (c->num) *c->num = rp->i[0];
        return 0;
    case MP__M_D_ITEMS:
    case MP__M_L_ITEMS:
        return take_items(rp, c);
    default:
        return 0;
    }
    return mp__fail(MP_EPROTO, "manager: unexpected reply");
}

static int remote_call(proxy_t *p, mp__scall_t *c)
{
    mp__mreq_t rq = {.op = c->op, .nint = 1, .i = {(int64_t)p->oid}};
    switch (c->op) {
    case MP__M_D_SET:
        rq.nblob = 2;
        rq.s[1] = c->val;
        rq.n[1] = c->vl;
        /* fall through */
    case MP__M_D_GET:
    case MP__M_D_DEL:
    case MP__M_D_POP:
        rq.nblob = rq.nblob ? rq.nblob : 1;
        rq.s[0] = c->k;
        rq.n[0] = c->kl;
        break;
    case MP__M_D_INCR:
        rq.nint = 2;
        rq.i[1] = c->n;
        rq.nblob = 1;
        rq.s[0] = c->k;
        rq.n[0] = c->kl;
        break;
    case MP__M_D_CAS:
        rq.nint = 2;
        rq.i[1] = c->has_x;
        rq.nblob = 3;
        rq.s[0] = c->k;
        rq.n[0] = c->kl;
        rq.s[1] = c->x;
        rq.n[1] = c->xl;
        rq.s[2] = c->val;
        rq.n[2] = c->vl;
        break;
    case MP__M_L_SET:
        rq.nint = 2;
        rq.i[1] = c->n;
        /* fall through */
    case MP__M_L_APPEND:
        rq.nblob = 1;
        rq.s[0] = c->val;
        rq.n[0] = c->vl;
        break;
    case MP__M_L_GET:
    case MP__M_L_POP:
        rq.nint = 2;
        rq.i[1] = c->n;
        break;
    default:
        break;
    }
    mp__mrep_t rp;
    int rc = mp__mclient_call(p->cl, &rq, &rp);
    if (!rc) rc = take_result(&rp, c);
    mp__mrep_release(&rp);
    return rc;
}

static int run(proxy_t *p, mp__htype_t type, mp__scall_t *c)
{
    int rc = mp__handle_check(&p->h, type);
    if (rc) return rc;
    if (c->kl > MP_MANAGER_MAX_ITEM || c->vl > MP_MANAGER_MAX_ITEM - c->kl ||
        c->xl > MP_MANAGER_MAX_ITEM)
        return mp__fail(MP_EMSGSIZE, "manager items are limited to %zu bytes",
                        (size_t)MP_MANAGER_MAX_ITEM);
    return p->local ? local_call(p, c) : remote_call(p, c);
}

/* ---- making proxies ---- */

int mp__proxy_open(mp__mclient_t *cl, int kind, const char *name, int64_t p1, int64_t p2,
                   uint64_t *oid, bool *local, mp__seg_t **seg)
{
    size_t nl = name ? strlen(name) : 0;
    if (name && (!nl || nl > MP_MANAGER_NAME_MAX))
        return mp__fail(MP_EINVAL, "a manager object name has 1 to %d bytes", MP_MANAGER_NAME_MAX);
    mp__mreq_t rq = {.op = MP__M_OPEN, .nint = 3, .i = {kind, p1, p2}, .nblob = 1};
    rq.s[0] = (const uint8_t *)(name ? name : "");
    rq.n[0] = nl;
    mp__mrep_t rp;
    int rc = mp__mclient_call(cl, &rq, &rp);
    if (!rc && (rp.nint != 2 || rp.i[1] != kind || rp.i[0] <= 0 || rp.nblob > 1))
        rc = mp__fail(MP_EPROTO, "manager: unexpected reply to open");
    *seg = NULL;
    *local = !rc && rp.nblob == 1;
    if (!rc) *oid = (uint64_t)rp.i[0];
    if (*local) rc = open_ref(kind, rp.s[0], rp.n[0], seg);
    mp__mrep_release(&rp);
    return rc == MP__S_MOVED ? 0 : rc; /* the first call refreshes */
}

static int wrap(mp__htype_t type, int kind, mp__mclient_t *cl, uint64_t oid, bool local,
                mp__seg_t *seg, proxy_t **out)
{
    proxy_t *p = mp__calloc(1, sizeof *p);
    int rc = p ? mp__mutex_create(&p->mu) : MP_ENOMEM;
    if (!rc && seg) {
        rc = mp__sview_open(seg, kind, &p->v);
        seg = NULL;
    }
    if (rc) {
        if (seg) mp__seg_close(seg);
        if (p && p->mu) mp__mutex_free(p->mu);
        free(p);
        return rc;
    }
    p->kind = kind;
    p->cl = cl;
    p->oid = oid;
    p->local = local;
    mp__mclient_ref(cl);
    mp__handle_init(&p->h, type);
    *out = p;
    return 0;
}

int mp__dict_wrap(mp__mclient_t *cl, uint64_t oid, bool local, mp__seg_t *seg, mp_dict_t **out)
{
    return wrap(MP__H_DICT, MP__MK_DICT, cl, oid, local, seg, (proxy_t **)out);
}

int mp__list_wrap(mp__mclient_t *cl, uint64_t oid, bool local, mp__seg_t *seg, mp_list_t **out)
{
    return wrap(MP__H_LIST, MP__MK_LIST, cl, oid, local, seg, (proxy_t **)out);
}

static void proxy_free(proxy_t *p, mp__htype_t type)
{
    if (mp__handle_check(&p->h, type)) return;
    mp__handle_fini(&p->h);
    mp__sview_close(&p->v);
    mp__mclient_unref(p->cl);
    mp__mutex_free(p->mu);
    free(p);
}

/* ---- crossing into other processes ---- */

static int proxy_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    proxy_t *p = (proxy_t *)h;
    int rc = mp__mclient_pack(p->cl, w, t);
    if (rc) return rc;
    mp__wbuf_u64(w, p->oid);
    mp__mutex_lock(p->mu);
    /* 0: remote; 1: local, its store follows; 2: local, to be refreshed. */
    mp__wbuf_u8(w, !p->local ? 0 : p->v.seg ? 1 : 2);
    if (p->local && p->v.seg) rc = mp__seg_pack(p->v.seg, w, t);
    mp__mutex_unlock(p->mu);
    return rc ? rc : w->err;
}

static int proxy_unpack(mp__htype_t type, int kind, mp__rbuf_t *r, mp__osh_t *tab, size_t ntab,
                        mp_handle_t **out)
{
    mp__mclient_t *cl;
    int rc = mp__mclient_unpack(r, tab, ntab, &cl);
    if (rc) return rc;
    uint64_t oid = mp__rbuf_u64(r);
    uint8_t local = mp__rbuf_u8(r);
    rc = r->err;
    if (!rc && (local > 2 || !oid)) rc = mp__rbuf_bad(r, "manager proxy fields");
    mp__seg_t *seg = NULL;
    if (!rc && local == 1) {
        mp__seg_spec_t spec;
        mp__store_spec(kind, &spec);
        rc = mp__seg_unpack(r, tab, ntab, &spec, &seg);
        /* An exporter that moved on to a newer store: start from the server's. */
        if (rc == MP_ENOTFOUND) rc = 0;
    }
    if (!rc) rc = wrap(type, kind, cl, oid, local != 0, seg, (proxy_t **)out);
    mp__mclient_unref(cl);
    return rc;
}

static int proxy_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return proxy_pack(h, w, NULL);
}

/* A forked child that was not given the proxy: only its mapping goes; the
 * client's connections are handles of their own, dropped by the fork. */
static void proxy_drop_after_fork(mp_handle_t *h)
{
    mp__sview_close(&((proxy_t *)h)->v);
}

static int dict_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    return proxy_unpack(MP__H_DICT, MP__MK_DICT, r, tab, ntab, out);
}

static int dict_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return dict_unpack(r, NULL, 0, out);
}

static void dict_free_h(mp_handle_t *h)
{
    proxy_free((proxy_t *)h, MP__H_DICT);
}

const mp__htype_ops_t mp__dict_ops = {
    .name = "manager dict",
    .pack = proxy_pack,
    .unpack = dict_unpack,
    .drop_after_fork = proxy_drop_after_fork,
    .free = dict_free_h,
    .export_blob = proxy_export,
    .import_blob = dict_import,
};

static int list_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    return proxy_unpack(MP__H_LIST, MP__MK_LIST, r, tab, ntab, out);
}

static int list_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return list_unpack(r, NULL, 0, out);
}

static void list_free_h(mp_handle_t *h)
{
    proxy_free((proxy_t *)h, MP__H_LIST);
}

const mp__htype_ops_t mp__list_ops = {
    .name = "manager list",
    .pack = proxy_pack,
    .unpack = list_unpack,
    .drop_after_fork = proxy_drop_after_fork,
    .free = list_free_h,
    .export_blob = proxy_export,
    .import_blob = list_import,
};

/* ---- the public dict and list calls ---- */

static bool bad_buf(const void *p, size_t n)
{
    return !p && n;
}

int mp_dict_set(mp_dict_t *d, const void *k, size_t kl, const void *v, size_t vl)
{
    if (bad_buf(k, kl) || bad_buf(v, vl)) return mp__fail(MP_EINVAL, "mp_dict_set: NULL buffer");
    mp__scall_t c = {.op = MP__M_D_SET, .k = k, .kl = kl, .val = v, .vl = vl};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_get(mp_dict_t *d, const void *k, size_t kl, void **v, size_t *vl)
{
    if (bad_buf(k, kl) || !v || !vl) return mp__fail(MP_EINVAL, "mp_dict_get: NULL argument");
    mp__scall_t c = {.op = MP__M_D_GET, .k = k, .kl = kl, .out = v, .outlen = vl};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_del(mp_dict_t *d, const void *k, size_t kl)
{
    if (bad_buf(k, kl)) return mp__fail(MP_EINVAL, "mp_dict_del: NULL key");
    mp__scall_t c = {.op = MP__M_D_DEL, .k = k, .kl = kl};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_pop(mp_dict_t *d, const void *k, size_t kl, void **v, size_t *vl)
{
    if (bad_buf(k, kl) || !v || !vl) return mp__fail(MP_EINVAL, "mp_dict_pop: NULL argument");
    mp__scall_t c = {.op = MP__M_D_POP, .k = k, .kl = kl, .out = v, .outlen = vl};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_len(mp_dict_t *d, size_t *n)
{
    if (!n) return mp__fail(MP_EINVAL, "mp_dict_len: NULL out-pointer");
    mp__scall_t c = {.op = MP__M_D_LEN, .count = n};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_items(mp_dict_t *d, mp_iov_t **keys, mp_iov_t **vals, size_t *n)
{
    if (!keys || !vals || !n) return mp__fail(MP_EINVAL, "mp_dict_items: NULL out-pointer");
    mp__scall_t c = {.op = MP__M_D_ITEMS, .keys = keys, .vals = vals, .count = n};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_clear(mp_dict_t *d)
{
    mp__scall_t c = {.op = MP__M_D_CLEAR};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_incr(mp_dict_t *d, const void *k, size_t kl, int64_t by, int64_t *now)
{
    if (bad_buf(k, kl)) return mp__fail(MP_EINVAL, "mp_dict_incr: NULL key");
    mp__scall_t c = {.op = MP__M_D_INCR, .k = k, .kl = kl, .n = by, .num = now};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

int mp_dict_cas(mp_dict_t *d, const void *k, size_t kl, const void *expect, size_t el,
                const void *v, size_t vl)
{
    if (bad_buf(k, kl) || bad_buf(v, vl) || (!expect && el))
        return mp__fail(MP_EINVAL, "mp_dict_cas: NULL buffer");
    mp__scall_t c = {.op = MP__M_D_CAS,
                     .k = k,
                     .kl = kl,
                     .x = expect,
                     .xl = el,
                     .has_x = expect != NULL,
                     .val = v,
                     .vl = vl};
    return run((proxy_t *)d, MP__H_DICT, &c);
}

void mp_dict_free(mp_dict_t *d)
{
    if (d) proxy_free((proxy_t *)d, MP__H_DICT);
}

int mp_list_append(mp_list_t *l, const void *v, size_t vl)
{
    if (bad_buf(v, vl)) return mp__fail(MP_EINVAL, "mp_list_append: NULL buffer");
    mp__scall_t c = {.op = MP__M_L_APPEND, .val = v, .vl = vl};
    return run((proxy_t *)l, MP__H_LIST, &c);
}

int mp_list_get(mp_list_t *l, long i, void **v, size_t *vl)
{
    if (!v || !vl) return mp__fail(MP_EINVAL, "mp_list_get: NULL out-pointer");
    mp__scall_t c = {.op = MP__M_L_GET, .n = i, .out = v, .outlen = vl};
    return run((proxy_t *)l, MP__H_LIST, &c);
}

int mp_list_set(mp_list_t *l, long i, const void *v, size_t vl)
{
    if (bad_buf(v, vl)) return mp__fail(MP_EINVAL, "mp_list_set: NULL buffer");
    mp__scall_t c = {.op = MP__M_L_SET, .n = i, .val = v, .vl = vl};
    return run((proxy_t *)l, MP__H_LIST, &c);
}

int mp_list_pop(mp_list_t *l, long i, void **v, size_t *vl)
{
    if (!v || !vl) return mp__fail(MP_EINVAL, "mp_list_pop: NULL out-pointer");
    mp__scall_t c = {.op = MP__M_L_POP, .n = i, .out = v, .outlen = vl};
    return run((proxy_t *)l, MP__H_LIST, &c);
}

int mp_list_len(mp_list_t *l, size_t *n)
{
    if (!n) return mp__fail(MP_EINVAL, "mp_list_len: NULL out-pointer");
    mp__scall_t c = {.op = MP__M_L_LEN, .count = n};
    return run((proxy_t *)l, MP__H_LIST, &c);
}

int mp_list_items(mp_list_t *l, mp_iov_t **items, size_t *n)
{
    if (!items || !n) return mp__fail(MP_EINVAL, "mp_list_items: NULL out-pointer");
    mp__scall_t c = {.op = MP__M_L_ITEMS, .keys = items, .count = n};
    return run((proxy_t *)l, MP__H_LIST, &c);
}

void mp_list_free(mp_list_t *l)
{
    if (l) proxy_free((proxy_t *)l, MP__H_LIST);
}
