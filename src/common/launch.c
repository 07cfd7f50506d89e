/* Launch records (see launch.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch.h"

static const uint8_t magic[4] = {'M', 'P', 'L', 'R'};
#define LAUNCH_VERSION 1u

int mp__launch_pack(const mp__launch_t *l, mp__wbuf_t *w, mp__ostab_t *t)
{
    mp__wbuf_raw(w, magic, sizeof magic);
    mp__wbuf_u32(w, LAUNCH_VERSION);
    mp__wbuf_str(w, l->name);
    mp__wbuf_u64(w, (uint64_t)l->parent);
    mp__wbuf_u8(w, l->daemon);
    mp__wbuf_str(w, l->module);
    mp__wbuf_u64(w, l->offset);
    mp__wbuf_u64(w, l->ident);
    int rc = mp__args_pack(l->args, w, t);
    return rc ? rc : w->err;
}

void mp__launch_release(mp__launch_t *l)
{
    free(l->name);
    free(l->module);
    mp_args_free(l->args);
    memset(l, 0, sizeof *l);
}

int mp__launch_unpack(const void *p, size_t n, mp__osh_t *tab, size_t ntab, mp__launch_t *l)
{
    mp__rbuf_t r;
    mp__rbuf_init(&r, p, n);
    memset(l, 0, sizeof *l);
    const void *m = mp__rbuf_raw(&r, sizeof magic);
    if (!m || memcmp(m, magic, sizeof magic)) return mp__rbuf_bad(&r, "launch record has no magic");
    if (mp__rbuf_u32(&r) != LAUNCH_VERSION)
        return mp__rbuf_bad(&r, "launch record of another version");
    l->name = mp__rbuf_str(&r);
    l->parent = (mp_pid_t)mp__rbuf_u64(&r);
    l->daemon = mp__rbuf_u8(&r) != 0;
    l->module = mp__rbuf_str(&r);
    l->offset = mp__rbuf_u64(&r);
    l->ident = mp__rbuf_u64(&r);
    int rc = r.err ? r.err : mp__args_unpack(&r, tab, ntab, &l->args);
    if (!rc && r.pos != r.len) rc = mp__rbuf_bad(&r, "trailing bytes after the launch record");
    if (rc) mp__launch_release(l);
    return rc;
}

int mp__launch_run(const void *p, size_t n, mp__osh_t *tab, size_t ntab, int *exitcode)
{
    mp__launch_t l;
    int rc = mp__launch_unpack(p, n, tab, ntab, &l);
    for (size_t i = 0; i < ntab; i++)
        if (tab[i] != MP__OSH_INVALID) {
            mp__osh_close(tab[i]);
            tab[i] = MP__OSH_INVALID;
        }
    if (rc) return rc;
    void *addr = NULL;
    rc = mp__module_resolve(l.module, l.offset, l.ident, &addr);
    if (rc) {
        mp__fail(rc, "cannot resolve the target at offset %llu in %s: %s",
                 (unsigned long long)l.offset, l.module, mp_last_error_detail());
        mp__launch_release(&l);
        return rc;
    }
    rc = mp__child_init(l.daemon, l.parent);
    if (rc) {
        mp__launch_release(&l);
        return rc;
    }
    mp__set_identity(l.name, l.parent);
    mp_target_fn target;
    /* A code address travels as data; converting it back is the point. */
    memcpy(&target, &addr, sizeof target);
    *exitcode = target(l.args);
    mp__launch_release(&l);
    return 0;
}
