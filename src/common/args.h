/* Argument lists: copying, and packing for a spawned child. */
#ifndef MP_ARGS_H
#define MP_ARGS_H

#include "handle.h"

/* A deep copy of bytes and strings; handles are referenced. */
int mp__args_copy(const mp_args_t *a, mp_args_t **out);
/* The handles a list references, for mp__handle_drop_others. */
size_t mp__args_handles(const mp_args_t *a, mp_handle_t **out, size_t cap);
int mp__args_pack(const mp_args_t *a, mp__wbuf_t *w, mp__ostab_t *t);
/* The rebuilt list owns the handles it unpacked: mp_args_free frees them. */
int mp__args_unpack(mp__rbuf_t *r, mp__osh_t *tab, size_t ntab, mp_args_t **out);

#endif
