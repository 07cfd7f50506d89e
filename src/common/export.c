/* mp_handle_export / mp_handle_import: a shareable object as a small
 * versioned blob that an unrelated process rebuilds it from.
 *
 * Blob: "MPHX", u32 version, u8 handle type, the type's bytes (segments by
 * name or by the exporter's /proc entry, never OS handle numbers alone).
 * Every reader is bounded (wire.h), and every reference is checked against
 * the object's random key before anything is written to it. */
#include <string.h>

#include "handle.h"

static const uint8_t magic[4] = {'M', 'P', 'H', 'X'};
#define EXPORT_VERSION 1u

int mp__handle_export_into(mp_handle_t *h, mp__wbuf_t *w)
{
    int rc = mp__handle_check(h, 0);
    if (rc) return rc;
    const mp__htype_ops_t *ops = mp__handle_ops_of(h);
    if (!ops || !ops->export_blob)
        return mp__fail(MP_ETYPE, "a %s cannot be exported", ops ? ops->name : "handle");
    mp__wbuf_u8(w, (uint8_t)h->ops_type);
    rc = ops->export_blob(h, w);
    return rc ? rc : w->err;
}

int mp__handle_import_from(mp__rbuf_t *r, mp_handle_t **out)
{
    uint8_t type = mp__rbuf_u8(r);
    if (r->err) return r->err;
    const mp__htype_ops_t *ops = mp__handle_ops(type);
    if (!ops || !ops->import_blob) return mp__rbuf_bad(r, "blob of a type that cannot be imported");
    return ops->import_blob(r, out);
}

int mp_handle_export(mp_handle_t *h, void **blob, size_t *len)
{
    if (!blob || !len) return mp__fail(MP_EINVAL, "mp_handle_export: NULL out-pointer");
    mp__wbuf_t w = {0};
    mp__wbuf_raw(&w, magic, sizeof magic);
    mp__wbuf_u32(&w, EXPORT_VERSION);
    int rc = mp__handle_export_into(h, &w);
    if (rc) {
        mp__wbuf_release(&w);
        return rc;
    }
    *blob = w.p;
    *len = w.len;
    return 0;
}

int mp_handle_import(const void *blob, size_t len, mp_handle_t **h)
{
    if (!blob || !h) return mp__fail(MP_EINVAL, "mp_handle_import: NULL argument");
    mp__rbuf_t r;
    mp__rbuf_init(&r, blob, len);
    const void *m = mp__rbuf_raw(&r, sizeof magic);
    if (!m || memcmp(m, magic, sizeof magic))
        return mp__fail(MP_EPROTO, "not an mproc export blob");
    if (mp__rbuf_u32(&r) != EXPORT_VERSION)
        return mp__rbuf_bad(&r, "export blob of another version");
    mp_handle_t *out = NULL;
    int rc = mp__handle_import_from(&r, &out);
    if (!rc && r.pos != r.len) {
        mp__handle_free(out);
        rc = mp__rbuf_bad(&r, "trailing bytes after the export blob");
    }
    if (!rc) *h = out;
    return rc;
}
