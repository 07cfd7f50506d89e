/* Bounded little-endian encoding for everything mproc itself writes for
 * another process (launch records, export blobs): a reader never trusts a
 * length it has not checked against what remains. */
#ifndef MP_WIRE_H
#define MP_WIRE_H

#include "internal.h"

typedef struct {
    uint8_t *p;
    size_t len, cap;
    int err; /* first failure (MP_ENOMEM); later writes do nothing */
} mp__wbuf_t;

void mp__wbuf_u8(mp__wbuf_t *w, uint8_t v);
void mp__wbuf_u32(mp__wbuf_t *w, uint32_t v);
void mp__wbuf_u64(mp__wbuf_t *w, uint64_t v);
void mp__wbuf_raw(mp__wbuf_t *w, const void *p, size_t n);
/* A u64 length, then the bytes. */
void mp__wbuf_blob(mp__wbuf_t *w, const void *p, size_t n);
void mp__wbuf_str(mp__wbuf_t *w, const char *s);
void mp__wbuf_release(mp__wbuf_t *w);

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    int err; /* MP_EPROTO once a read ran past the end or a check failed */
} mp__rbuf_t;

void mp__rbuf_init(mp__rbuf_t *r, const void *p, size_t len);
uint8_t mp__rbuf_u8(mp__rbuf_t *r);
uint32_t mp__rbuf_u32(mp__rbuf_t *r);
uint64_t mp__rbuf_u64(mp__rbuf_t *r);
const void *mp__rbuf_raw(mp__rbuf_t *r, size_t n);
/* A u64 length, then that many bytes (pointing into the buffer). */
const void *mp__rbuf_blob(mp__rbuf_t *r, size_t *n);
/* A blob copied into a NUL-terminated malloc'd string; NULL on failure
 * (a NUL inside is a protocol error). */
char *mp__rbuf_str(mp__rbuf_t *r);
/* Records a protocol error with a detail; returns MP_EPROTO. */
int mp__rbuf_bad(mp__rbuf_t *r, const char *what);

#endif
