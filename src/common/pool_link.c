/* The pool's transport (a duplex connection per worker), its byte buffers,
 * and the worker's configuration record. */
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "pool_internal.h"

struct mp__plink {
    mp_conn_t *c;
    bool owned;
};

static int link_new(mp_conn_t *c, bool owned, mp__plink_t **out)
{
    mp__plink_t *l = mp__malloc(sizeof *l);
    if (!l) return MP_ENOMEM;
    l->c = c;
    l->owned = owned;
    *out = l;
    return 0;
}

int mp__plink_pair(mp__plink_t **parent, mp_handle_t **child)
{
    mp_conn_t *a, *b;
    int rc = mp_pipe(&a, &b, true);
    if (rc) return rc;
    rc = link_new(a, true, parent);
    if (rc) {
        mp_conn_free(a);
        mp_conn_free(b);
        return rc;
    }
    *child = MP_HANDLE(b);
    return 0;
}

int mp__plink_wrap(mp_handle_t *h, mp__plink_t **l)
{
    int rc = mp__handle_check(h, MP__H_CONN);
    return rc ? rc : link_new((mp_conn_t *)h, false, l);
}

int mp__plink_send(mp__plink_t *l, const mp_iov_t *iov, size_t n)
{
    return mp_conn_sendv(l->c, iov, n);
}

#define RECV_FIRST 256u

/* A kept buffer of at least n bytes (its contents need not survive). */
static int precv_grow(mp__precv_t *r, size_t n)
{
    size_t cap = r->cap > n / 2 ? r->cap * 2 : n;
    if (cap > MP__P_RECV_KEEP) cap = n;
    uint8_t *p = malloc(cap);
    if (!p) return mp__fail(MP_ENOMEM, "a buffer of %zu bytes for pool messages", cap);
    free(r->p);
    r->p = p;
    r->cap = cap;
    r->warm = false;
    return 0;
}

int mp__plink_recv(mp__plink_t *l, mp__precv_t *r, const uint8_t **msg, size_t *len)
{
    free(r->spill);
    r->spill = NULL;
    /* Room for the small messages first: a short buffer costs a failed
     * read (and its error detail) before the real one. */
    int rc = r->cap ? 0 : precv_grow(r, RECV_FIRST);
    if (!rc) rc = mp_conn_recv_bytes_into(l->c, r->p, r->cap, len);
    if (rc == MP_EMSGSIZE && *len <= MP__P_RECV_KEEP) {
        /* The message stays readable: it goes into a larger kept buffer. */
        rc = precv_grow(r, *len);
        if (!rc) rc = mp_conn_recv_bytes_into(l->c, r->p, r->cap, len);
    } else if (rc == MP_EMSGSIZE) {
        void *m;
        rc = mp_conn_recv_bytes(l->c, &m, len);
        if (!rc) {
            r->spill = m;
            *msg = m;
            return 0;
        }
    }
    if (!rc) *msg = r->p;
    return rc;
}

void mp__precv_warm(mp__precv_t *r, size_t n)
{
    if (r->warm || (r->cap < n && precv_grow(r, n))) return;
    memset(r->p, 0, r->cap);
    r->warm = true;
}

void mp__precv_release(mp__precv_t *r)
{
    free(r->p);
    free(r->spill);
    memset(r, 0, sizeof *r);
}

int mp__plink_poll(mp__plink_t *l)
{
    return mp_conn_poll(l->c, 0);
}

void mp__plink_warm(mp__plink_t *l)
{
    mp__conn_warm(l->c);
}

mp_handle_t *mp__plink_waitable(mp__plink_t *l)
{
    return MP_HANDLE(l->c);
}

void mp__plink_free(mp__plink_t *l)
{
    if (!l) return;
    if (l->owned) mp_conn_free(l->c);
    free(l);
}

int mp__pbuf_grow(mp__pbuf_t *b, size_t n)
{
    if (n > SIZE_MAX / 2 - b->len)
        return mp__fail(MP_ENOMEM, "a message of more than %zu bytes", b->len + n);
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return mp__fail(MP_ENOMEM, "realloc(%zu) for a pool message", cap);
    b->p = p;
    b->cap = cap;
    return 0;
}

void mp__pbuf_release(mp__pbuf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static const uint8_t config_magic[4] = {'M', 'P', 'W', 'C'};

int mp__wconfig_pack(const mp__wconfig_t *c, mp__wbuf_t *w)
{
    mp__wbuf_raw(w, config_magic, sizeof config_magic);
    mp__wbuf_u32(w, MP__P_CONFIG_VERSION);
    mp__wbuf_u64(w, c->maxtasks);
    mp__wbuf_u8(w, (uint8_t)(c->flush_each | (c->init.module != NULL) << 1 | c->quiet << 2));
    if (c->init.module) {
        mp__wbuf_str(w, c->init.module);
        mp__wbuf_u64(w, c->init.offset);
        mp__wbuf_u64(w, c->init.ident);
    }
    return w->err;
}

int mp__wconfig_unpack(const void *p, size_t n, mp__wconfig_t *c)
{
    mp__rbuf_t r;
    mp__rbuf_init(&r, p, n);
    memset(c, 0, sizeof *c);
    const void *m = mp__rbuf_raw(&r, sizeof config_magic);
    if (!m || memcmp(m, config_magic, sizeof config_magic))
        return mp__rbuf_bad(&r, "not a pool worker configuration");
    if (mp__rbuf_u32(&r) != MP__P_CONFIG_VERSION)
        return mp__rbuf_bad(&r, "pool worker configuration of another version");
    c->maxtasks = mp__rbuf_u64(&r);
    uint8_t flags = mp__rbuf_u8(&r);
    if (flags & ~7u) return mp__rbuf_bad(&r, "unknown pool worker flags");
    c->flush_each = flags & 1;
    c->quiet = flags & 4;
    if (flags & 2) {
        c->init.module = mp__rbuf_str(&r);
        c->init.offset = mp__rbuf_u64(&r);
        c->init.ident = mp__rbuf_u64(&r);
    }
    if (!r.err && r.pos != r.len) mp__rbuf_bad(&r, "trailing bytes after the configuration");
    if (r.err) {
        free(c->init.module);
        c->init.module = NULL;
    }
    return r.err;
}

/* One argument of src, appended to dst: the getters tell its type. */
static int append_one(mp_args_t *dst, mp_args_t *src, size_t i)
{
    int64_t v;
    const char *s;
    const void *b;
    size_t n;
    mp_handle_t *h;
    if (!mp_args_int(src, i, &v)) return mp_args_add_int(dst, v);
    if (!mp_args_str(src, i, &s)) return mp_args_add_str(dst, s);
    if (!mp_args_bytes(src, i, &b, &n)) return mp_args_add_bytes(dst, b, n);
    if (!mp_args_handle(src, i, &h)) return mp_args_add_handle(dst, h);
    return mp__fail(MP_ETYPE, "argument %zu has a type the pool cannot pass on", i);
}

int mp__pool_args_append(mp_args_t *dst, mp_args_t *src, size_t from)
{
    size_t n = mp_args_count(src);
    int rc = 0;
    for (size_t i = from; !rc && i < n; i++)
        rc = append_one(dst, src, i);
    return rc;
}
