/* libFuzzer target: the launch record a spawned child reads from its
 * bootstrap channel (src/common/launch.c, args.c and every handle type's
 * unpack), against arbitrary bytes.
 *
 * Input: one control byte, then the record. Control bits 0-1 give the
 * number of OS handles passed beside the record (0-3, each one end of a
 * fresh socket pair), as the parent's handle table would. The record is
 * parsed (never run); a failure must be a documented code, and every OS
 * handle not taken by the parse is closed here, as the child does. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "launch.h"

#define MAX_INPUT 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT) return 0;
    size_t ntab = data[0] & 3;
    mp__osh_t tab[3];
    int peers[3];
    for (size_t i = 0; i < ntab; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) abort();
        tab[i] = sv[0];
        peers[i] = sv[1];
    }
    mp__launch_t l;
    int rc = mp__launch_unpack(data + 1, size - 1, tab, ntab, &l);
    if (rc && rc != MP_EPROTO && rc != MP_ENOMEM && rc != MP_ENOTFOUND && rc != MP_ETYPE &&
        rc != MP_EINVAL && rc != MP_ESYS)
        abort();
    if (!rc) mp__launch_release(&l);
    for (size_t i = 0; i < ntab; i++) {
        if (tab[i] != MP__OSH_INVALID) mp__osh_close(tab[i]);
        close(peers[i]);
    }
    return 0;
}
