/* Python's args tuple for C: typed values, copied at process creation and
 * packed into the launch record under spawn. */
#include <stdlib.h>
#include <string.h>

#include "args.h"

enum { ARG_BYTES = 1, ARG_STR, ARG_INT, ARG_HANDLE };

/* Bound on an unpacked list, so a corrupt record cannot demand a huge
 * allocation up front. */
#define MAX_ARGS 65536u

typedef struct {
    uint8_t type;
    bool owns_handle;
    int64_t i;
    void *p;
    size_t n;
    mp_handle_t *h;
} arg_t;

struct mp_args {
    arg_t *v;
    size_t n, cap;
};

int mp_args_create(mp_args_t **a)
{
    if (!a) return mp__fail(MP_EINVAL, "mp_args_create: NULL out-pointer");
    *a = mp__calloc(1, sizeof **a);
    return *a ? 0 : MP_ENOMEM;
}

static arg_t *push(mp_args_t *a)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        arg_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            mp__fail(MP_ENOMEM, "args: realloc of %zu entries", cap);
            return NULL;
        }
        a->v = v;
        a->cap = cap;
    }
    arg_t *x = &a->v[a->n];
    memset(x, 0, sizeof *x);
    return x;
}

static int add_buffer(mp_args_t *a, uint8_t type, const void *p, size_t n)
{
    if (!a || (!p && n)) return mp__fail(MP_EINVAL, "mp_args_add: NULL argument");
    arg_t *x = push(a);
    if (!x) return MP_ENOMEM;
    /* Strings keep a NUL so getters can hand out C strings. */
    x->p = mp__malloc(n + 1);
    if (!x->p) return MP_ENOMEM;
    if (n) memcpy(x->p, p, n);
    ((char *)x->p)[n] = 0;
    x->n = n;
    x->type = type;
    a->n++;
    return 0;
}

int mp_args_add_bytes(mp_args_t *a, const void *p, size_t n)
{
    return add_buffer(a, ARG_BYTES, p, n);
}

int mp_args_add_str(mp_args_t *a, const char *s)
{
    if (!s) return mp__fail(MP_EINVAL, "mp_args_add_str: NULL string");
    return add_buffer(a, ARG_STR, s, strlen(s));
}

int mp_args_add_int(mp_args_t *a, int64_t v)
{
    if (!a) return mp__fail(MP_EINVAL, "mp_args_add_int: NULL args");
    arg_t *x = push(a);
    if (!x) return MP_ENOMEM;
    x->type = ARG_INT;
    x->i = v;
    a->n++;
    return 0;
}

int mp_args_add_handle(mp_args_t *a, mp_handle_t *h)
{
    if (!a) return mp__fail(MP_EINVAL, "mp_args_add_handle: NULL args");
    int rc = mp__handle_check(h, 0);
    if (rc) return rc;
    arg_t *x = push(a);
    if (!x) return MP_ENOMEM;
    x->type = ARG_HANDLE;
    x->h = h;
    a->n++;
    return 0;
}

size_t mp_args_count(const mp_args_t *a)
{
    return a ? a->n : 0;
}

static int get(mp_args_t *a, size_t i, uint8_t type, arg_t **x)
{
    static const char *const names[] = {"?", "bytes", "str", "int", "handle"};
    if (!a || i >= a->n)
        return mp__fail(MP_EINVAL, "args: no argument %zu (count %zu)", i, a ? a->n : 0);
    if (a->v[i].type != type)
        return mp__fail(MP_ETYPE, "args: argument %zu is %s, not %s", i, names[a->v[i].type],
                        names[type]);
    *x = &a->v[i];
    return 0;
}

int mp_args_bytes(mp_args_t *a, size_t i, const void **p, size_t *n)
{
    arg_t *x = NULL;
    int rc = get(a, i, ARG_BYTES, &x);
    if (rc) return rc;
    if (p) *p = x->p;
    if (n) *n = x->n;
    return 0;
}

int mp_args_str(mp_args_t *a, size_t i, const char **s)
{
    arg_t *x = NULL;
    int rc = get(a, i, ARG_STR, &x);
    if (!rc && s) *s = x->p;
    return rc;
}

int mp_args_int(mp_args_t *a, size_t i, int64_t *v)
{
    arg_t *x = NULL;
    int rc = get(a, i, ARG_INT, &x);
    if (!rc && v) *v = x->i;
    return rc;
}

int mp_args_handle(mp_args_t *a, size_t i, mp_handle_t **h)
{
    arg_t *x = NULL;
    int rc = get(a, i, ARG_HANDLE, &x);
    if (!rc && h) *h = x->h;
    return rc;
}

int mp_args_conn(mp_args_t *a, size_t i, mp_conn_t **c)
{
    mp_handle_t *h;
    int rc = mp_args_handle(a, i, &h);
    if (!rc) rc = mp__handle_check(h, MP__H_CONN);
    if (!rc && c) *c = (mp_conn_t *)h;
    return rc;
}

/* Getters of the synchronisation and shared-memory types (sync.h, shm.h). */
#define MP__ARGS_GETTER(fn, htype, ctype)                                                          \
    int fn(mp_args_t *a, size_t i, ctype **out)                                                    \
    {                                                                                              \
        mp_handle_t *h;                                                                            \
        int rc = mp_args_handle(a, i, &h);                                                         \
        if (!rc) rc = mp__handle_check(h, htype);                                                  \
        if (!rc && out) *out = (ctype *)h;                                                         \
        return rc;                                                                                 \
    }
MP__ARGS_GETTER(mp_args_lock, MP__H_LOCK, mp_lock_t)
MP__ARGS_GETTER(mp_args_rlock, MP__H_RLOCK, mp_rlock_t)
MP__ARGS_GETTER(mp_args_semaphore, MP__H_SEMAPHORE, mp_semaphore_t)
MP__ARGS_GETTER(mp_args_event, MP__H_EVENT, mp_event_t)
MP__ARGS_GETTER(mp_args_condition, MP__H_CONDITION, mp_condition_t)
MP__ARGS_GETTER(mp_args_barrier, MP__H_BARRIER, mp_barrier_t)
MP__ARGS_GETTER(mp_args_shm, MP__H_SHM, mp_shm_t)
MP__ARGS_GETTER(mp_args_value, MP__H_VALUE, mp_value_t)
MP__ARGS_GETTER(mp_args_array, MP__H_VALUE, mp_array_t)
MP__ARGS_GETTER(mp_args_queue, MP__H_QUEUE, mp_queue_t)
MP__ARGS_GETTER(mp_args_dict, MP__H_DICT, mp_dict_t)
MP__ARGS_GETTER(mp_args_list, MP__H_LIST, mp_list_t)
#undef MP__ARGS_GETTER

void mp_args_free(mp_args_t *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].p);
        if (a->v[i].owns_handle) mp__handle_free(a->v[i].h);
    }
    free(a->v);
    free(a);
}

int mp__args_copy(const mp_args_t *a, mp_args_t **out)
{
    int rc = mp_args_create(out);
    for (size_t i = 0; a && !rc && i < a->n; i++) {
        const arg_t *x = &a->v[i];
        switch (x->type) {
        case ARG_INT:
            rc = mp_args_add_int(*out, x->i);
            break;
        case ARG_HANDLE:
            rc = mp_args_add_handle(*out, x->h);
            break;
        default:
            rc = add_buffer(*out, x->type, x->p, x->n);
        }
    }
    if (rc) {
        mp_args_free(*out);
        *out = NULL;
    }
    return rc;
}

size_t mp__args_handles(const mp_args_t *a, mp_handle_t **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; a && i < a->n; i++)
        if (a->v[i].type == ARG_HANDLE) {
            if (n < cap) out[n] = a->v[i].h;
            n++;
        }
    return n;
}

int mp__args_pack(const mp_args_t *a, mp__wbuf_t *w, mp__ostab_t *t)
{
    size_t n = a ? a->n : 0;
    mp__wbuf_u32(w, (uint32_t)n);
    for (size_t i = 0; i < n && !w->err; i++) {
        const arg_t *x = &a->v[i];
        mp__wbuf_u8(w, x->type);
        if (x->type == ARG_INT) {
            mp__wbuf_u64(w, (uint64_t)x->i);
        } else if (x->type == ARG_HANDLE) {
            int rc = mp__handle_pack(x->h, w, t);
            if (rc) return rc;
        } else {
            mp__wbuf_blob(w, x->p, x->n);
        }
    }
    return w->err;
}

static int unpack_one(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_args_t *a)
{
    uint8_t type = mp__rbuf_u8(r);
    if (r->err) return r->err;
    if (type == ARG_INT) return r->err ? r->err : mp_args_add_int(a, (int64_t)mp__rbuf_u64(r));
    if (type == ARG_HANDLE) {
        mp_handle_t *h = NULL;
        int rc = mp__handle_unpack(r, tab, ntab, &h);
        if (rc) return rc;
        rc = mp_args_add_handle(a, h);
        if (rc) {
            mp__handle_free(h);
            return rc;
        }
        a->v[a->n - 1].owns_handle = true;
        return 0;
    }
    if (type != ARG_BYTES && type != ARG_STR) return mp__rbuf_bad(r, "unknown argument type");
    size_t n = 0;
    const void *p = mp__rbuf_blob(r, &n);
    if (!p) return r->err;
    if (type == ARG_STR && memchr(p, 0, n)) return mp__rbuf_bad(r, "NUL inside a string argument");
    return add_buffer(a, type, p, n);
}

int mp__args_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_args_t **out)
{
    uint32_t n = mp__rbuf_u32(r);
    if (r->err) return r->err;
    if (n > MAX_ARGS) return mp__rbuf_bad(r, "too many arguments");
    int rc = mp_args_create(out);
    for (uint32_t i = 0; !rc && i < n; i++)
        rc = unpack_one(r, tab, ntab, *out);
    if (rc) {
        mp_args_free(*out);
        *out = NULL;
    }
    return rc;
}
