/* libFuzzer target: the connection frame parser (CPython's length-prefix
 * framing) against arbitrary bytes.
 *
 * Input: one control byte, then the raw stream. Control bits 0-1 pick the
 * bound (none, 16, 256, 65536 bytes); bit 2 reads with recv_bytes_into and
 * a 64-byte buffer instead of recv_bytes. The stream is then closed, and
 * messages are read until an error, which must be one of the documented
 * codes; every message must respect the bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"

#define MAX_INPUT 65536 /* stays within a socket buffer: writes never block */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT) return 0;
    static const size_t bounds[4] = {0, 16, 256, 65536};
    uint8_t ctl = data[0];
    size_t bound = bounds[ctl & 3];
    mp__stream_t *mine, *peer;
    if (mp__stream_pair(&mine, &peer, true)) return 0;
    mp_conn_t *c;
    if (mp__conn_wrap(mine, true, true, &c)) {
        mp__stream_close(mine);
        mp__stream_close(peer);
        return 0;
    }
    if (bound) mp_conn_set_max_message(c, bound);
    mp_iov_t v = {(void *)(data + 1), size - 1};
    if (size > 1) mp__stream_write(peer, &v, 1);
    mp__stream_close(peer);
    for (int i = 0; i < 4096; i++) {
        size_t n = 0;
        int rc;
        if (ctl & 4) {
            uint8_t buf[64];
            rc = mp_conn_recv_bytes_into(c, buf, sizeof buf, &n);
            if (rc == MP_EMSGSIZE && n > sizeof buf) break; /* short buffer: message kept */
        } else {
            void *p = NULL;
            rc = mp_conn_recv_bytes(c, &p, &n);
            mp_free(p);
        }
        if (rc) {
            if (rc != MP_EOF && rc != MP_EPROTO && rc != MP_EMSGSIZE) abort();
            break;
        }
        if (bound && n > bound) abort(); /* a message over the bound got through */
    }
    mp_conn_free(c);
    return 0;
}
