/* Named shared memory (multiprocessing.shared_memory) on the seam's named
 * segments, and segments inside packed handles and export blobs. */
#include <stdlib.h>
#include <string.h>

#include "handle.h"

#define SHM_TAG 0x55484d53u /* "SMHU" */
#define RANDOM_LEN 16
#define RANDOM_TRIES 8

struct mp_shm {
    mp_handle_t h;
    mp__seg_t *seg;
};

/* ---- segments across processes ---- */

int mp__seg_pack(mp__seg_t *s, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp__seg_ref_t ref;
    int rc = mp__seg_ref(s, t == NULL, &ref);
    if (rc) return rc;
    mp__wbuf_blob(w, ref.bytes, ref.len);
    mp__wbuf_u32(w, (uint32_t)ref.nosh);
    for (size_t i = 0; i < ref.nosh; i++) {
        int idx = mp__ostab_add(t, ref.osh[i]);
        if (idx < 0) return idx;
        mp__wbuf_u32(w, (uint32_t)idx);
    }
    return w->err;
}

int mp__seg_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, const mp__seg_spec_t *expect,
                   mp__seg_t **out)
{
    mp__seg_ref_t ref;
    size_t n = 0;
    const void *p = mp__rbuf_blob(r, &n);
    uint32_t nosh = mp__rbuf_u32(r);
    if (r->err) return r->err;
    if (n > sizeof ref.bytes || nosh > MP__SEG_OSH_MAX)
        return mp__rbuf_bad(r, "segment reference out of range");
    memcpy(ref.bytes, p, n);
    ref.len = n;
    ref.nosh = nosh;
    uint32_t idx[MP__SEG_OSH_MAX];
    for (uint32_t i = 0; i < nosh; i++) {
        idx[i] = mp__rbuf_u32(r);
        if (r->err) return r->err;
        if (idx[i] >= ntab || tab[idx[i]] == MP__OSH_INVALID)
            return mp__rbuf_bad(r, "segment refers to a missing handle");
        ref.osh[i] = tab[idx[i]];
    }
    int rc = mp__seg_from_ref(&ref, expect, out);
    /* The entries it kept are its own now; the rest stay in the table,
     * whose owner closes what nobody claimed. */
    for (uint32_t i = 0; i < nosh; i++)
        if (ref.osh[i] == MP__OSH_INVALID) tab[idx[i]] = MP__OSH_INVALID;
    return rc;
}

/* ---- mp_shm ---- */

static int shm_wrap(mp__seg_t *seg, mp_shm_t **out)
{
    mp_shm_t *s = mp__calloc(1, sizeof *s);
    if (!s) {
        mp__seg_close(seg);
        return MP_ENOMEM;
    }
    s->seg = seg;
    mp__handle_init(&s->h, MP__H_SHM);
    *out = s;
    return 0;
}

static int random_name(char *out)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint8_t r[RANDOM_LEN];
    int rc = mp__os_random(r, sizeof r);
    for (int i = 0; !rc && i < RANDOM_LEN; i++)
        out[i] = alphabet[r[i] & 31];
    out[RANDOM_LEN] = 0;
    return rc;
}

int mp_shm_create(mp_shm_t **s, const char *name, size_t size)
{
    if (!s || !size) return mp__fail(MP_EINVAL, "mp_shm_create: needs an out-pointer and a size");
    mp__seg_spec_t spec = {.size = size, .tag = SHM_TAG, .name = name};
    char rnd[RANDOM_LEN + 1];
    mp__seg_t *seg = NULL;
    int rc;
    if (name) {
        rc = mp__seg_create(&spec, &seg);
    } else {
        spec.name = rnd;
        rc = MP_EEXIST;
        for (int i = 0; rc == MP_EEXIST && i < RANDOM_TRIES; i++) {
            rc = random_name(rnd);
            if (!rc) rc = mp__seg_create(&spec, &seg);
        }
    }
    return rc ? rc : shm_wrap(seg, s);
}

int mp_shm_open(mp_shm_t **s, const char *name)
{
    if (!s || !name) return mp__fail(MP_EINVAL, "mp_shm_open: NULL argument");
    mp__seg_t *seg;
    int rc = mp__seg_open(name, SHM_TAG, &seg);
    return rc ? rc : shm_wrap(seg, s);
}

static mp_shm_t *shm_check(mp_shm_t *s)
{
    return mp__handle_check(MP_HANDLE(s), MP__H_SHM) ? NULL : s;
}

void *mp_shm_ptr(mp_shm_t *s)
{
    return shm_check(s) ? mp__seg_ptr(s->seg) : NULL;
}

size_t mp_shm_size(mp_shm_t *s)
{
    return shm_check(s) ? mp__seg_size(s->seg) : 0;
}

const char *mp_shm_name(mp_shm_t *s)
{
    return shm_check(s) ? mp__seg_name(s->seg) : NULL;
}

int mp_shm_unlink(mp_shm_t *s)
{
    int rc = mp__handle_check(MP_HANDLE(s), MP__H_SHM);
    return rc ? rc : mp__seg_unlink(s->seg);
}

void mp_shm_free(mp_shm_t *s)
{
    if (!s) return; /* as free(NULL): no error, the last detail stays */
    if (!shm_check(s)) return;
    mp__handle_fini(&s->h);
    mp__seg_close(s->seg);
    free(s);
}

static int shm_pack(mp_handle_t *h, mp__wbuf_t *w, mp__ostab_t *t)
{
    return mp__seg_pack(((mp_shm_t *)h)->seg, w, t);
}

static int shm_export(mp_handle_t *h, mp__wbuf_t *w)
{
    return shm_pack(h, w, NULL);
}

static int shm_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_handle_t **out)
{
    static const mp__seg_spec_t expect = {.tag = SHM_TAG};
    mp__seg_t *seg;
    mp_shm_t *s;
    int rc = mp__seg_unpack(r, tab, ntab, &expect, &seg);
    if (!rc) rc = shm_wrap(seg, &s);
    if (!rc) *out = &s->h;
    return rc;
}

static int shm_import(mp__rbuf_t *r, mp_handle_t **out)
{
    return shm_unpack(r, NULL, 0, out);
}

static void shm_free_h(mp_handle_t *h)
{
    mp_shm_free((mp_shm_t *)h);
}

const mp__htype_ops_t mp__shm_ops = {
    .name = "shared memory",
    .pack = shm_pack,
    .unpack = shm_unpack,
    .free = shm_free_h,
    .export_blob = shm_export,
    .import_blob = shm_import,
};
