/* libFuzzer target: the manager's request parser and handler
 * (src/common/manager_wire.c, manager_server.c, manager_store.c) against
 * arbitrary requests, on a server without a network.
 *
 * Input: a sequence of requests, each a 2-byte little-endian length and
 * that many bytes (at most MAX_REQUESTS of them). Every request must get a
 * reply that parses, whose status is 0 or a documented code; waits never
 * wait (the detached server treats every timeout as 0). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manager_internal.h"

#define MAX_INPUT 65536
#define MAX_REQUESTS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) return 0;
    mp__msrv_t *srv;
    if (mp__msrv_create_detached(&srv)) return 0;
    mp__mrepw_t rep = {0};
    size_t pos = 0;
    for (int n = 0; n < MAX_REQUESTS && size - pos >= 2; n++) {
        size_t len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
        pos += 2;
        if (len > size - pos) len = size - pos;
        bool stop = false;
        mp__msrv_handle(srv, 1 + (uint64_t)(n & 1), data + pos, len, &rep, &stop);
        pos += len;
        if (rep.w.err) abort();
        /* The reply must be one a client can read. */
        void *copy = malloc(rep.w.len ? rep.w.len : 1);
        if (!copy) abort();
        memcpy(copy, rep.w.p, rep.w.len);
        mp__mrep_t rp;
        if (mp__mrep_decode(copy, rep.w.len, &rp)) abort();
        if (rp.status && rp.nblob != 1) abort(); /* an error carries its detail */
        mp__mrep_release(&rp);
    }
    mp__wbuf_release(&rep.w);
    mp__msrv_free_detached(srv);
    return 0;
}
