/* libFuzzer target: mp_handle_import (src/common/export.c and every
 * exportable type's import: segment references by name and by /proc
 * entry) against arbitrary blobs.
 *
 * Input: the blob. An import must fail with a documented code or give a
 * handle, which is then freed. Run it in a scratch directory: a by-name
 * reference opens whatever /dev/shm name the input spells. */
#include <stdint.h>
#include <stdlib.h>

#include "handle.h"

#define MAX_INPUT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT) return 0;
    mp_handle_t *h = NULL;
    int rc = mp_handle_import(data, size, &h);
    if (rc && rc != MP_EPROTO && rc != MP_ENOMEM && rc != MP_ENOTFOUND && rc != MP_ETYPE &&
        rc != MP_EINVAL && rc != MP_ESYS)
        abort();
    if (!rc) mp__handle_free(h);
    return 0;
}
