/* Bounded little-endian encoding (see wire.h). */
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static bool wbuf_reserve(mp__wbuf_t *w, size_t n)
{
    if (w->err) return false;
    if (n <= w->cap - w->len) return true;
    size_t cap = w->cap ? w->cap : 64;
    while (cap - w->len < n) {
        if (cap > SIZE_MAX / 2) {
            w->err = mp__fail(MP_ENOMEM, "wire buffer of %zu bytes is too large", w->len + n);
            return false;
        }
        cap *= 2;
    }
    uint8_t *p = realloc(w->p, cap);
    if (!p) {
        w->err = mp__fail(MP_ENOMEM, "realloc(%zu) failed", cap);
        return false;
    }
    w->p = p;
    w->cap = cap;
    return true;
}

void mp__wbuf_raw(mp__wbuf_t *w, const void *p, size_t n)
{
    if (!wbuf_reserve(w, n)) return;
    if (n) memcpy(w->p + w->len, p, n);
    w->len += n;
}

void mp__wbuf_u8(mp__wbuf_t *w, uint8_t v)
{
    mp__wbuf_raw(w, &v, 1);
}

void mp__wbuf_u32(mp__wbuf_t *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    mp__wbuf_raw(w, b, sizeof b);
}

void mp__wbuf_u64(mp__wbuf_t *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    mp__wbuf_raw(w, b, sizeof b);
}

void mp__wbuf_blob(mp__wbuf_t *w, const void *p, size_t n)
{
    mp__wbuf_u64(w, n);
    mp__wbuf_raw(w, p, n);
}

void mp__wbuf_str(mp__wbuf_t *w, const char *s)
{
    mp__wbuf_blob(w, s, strlen(s));
}

void mp__wbuf_release(mp__wbuf_t *w)
{
    free(w->p);
    w->p = NULL;
    w->len = w->cap = 0;
}

void mp__rbuf_init(mp__rbuf_t *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = 0;
}

int mp__rbuf_bad(mp__rbuf_t *r, const char *what)
{
    if (!r->err)
        r->err =
            mp__fail(MP_EPROTO, "malformed data: %s (at byte %zu of %zu)", what, r->pos, r->len);
    return r->err;
}

const void *mp__rbuf_raw(mp__rbuf_t *r, size_t n)
{
    if (r->err) return NULL;
    if (n > r->len - r->pos) {
        mp__rbuf_bad(r, "truncated");
        return NULL;
    }
    const void *p = r->p + r->pos;
    r->pos += n;
    return p;
}

uint8_t mp__rbuf_u8(mp__rbuf_t *r)
{
    const uint8_t *b = mp__rbuf_raw(r, 1);
    return b ? b[0] : 0;
}

uint32_t mp__rbuf_u32(mp__rbuf_t *r)
{
    const uint8_t *b = mp__rbuf_raw(r, 4);
    uint32_t v = 0;
    for (int i = 0; b && i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}

uint64_t mp__rbuf_u64(mp__rbuf_t *r)
{
    const uint8_t *b = mp__rbuf_raw(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

const void *mp__rbuf_blob(mp__rbuf_t *r, size_t *n)
{
    uint64_t len = mp__rbuf_u64(r);
    if (r->err) return NULL;
    if (len > r->len - r->pos) {
        mp__rbuf_bad(r, "length runs past the end");
        return NULL;
    }
    *n = (size_t)len;
    return mp__rbuf_raw(r, (size_t)len);
}

char *mp__rbuf_str(mp__rbuf_t *r)
{
    size_t n = 0;
    const char *p = mp__rbuf_blob(r, &n);
    if (!p) return NULL;
    if (memchr(p, 0, n)) {
        mp__rbuf_bad(r, "NUL inside a string");
        return NULL;
    }
    char *s = mp__malloc(n + 1);
    if (!s) {
        r->err = MP_ENOMEM;
        return NULL;
    }
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}
