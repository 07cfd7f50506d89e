/** @file
 * Named shared memory (multiprocessing.shared_memory.SharedMemory):
 * segments any process of this user can open by name. */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A mapping of a named segment. */
typedef struct mp_shm mp_shm_t;

/** Names are 1 to MP_SHM_NAME_MAX of A-Z a-z 0-9 _ - (short enough for
 * macOS once prefixed). */
#define MP_SHM_NAME_MAX 26

/** Creates size zeroed bytes under name (NULL: a random name). Never
 * attaches to an existing segment: MP_EEXIST. Only this user may open it. */
MP_EXTERN int mp_shm_create(mp_shm_t **s, const char *name, size_t size);
/** Maps an existing segment by name; MP_ENOTFOUND when no segment has
 * this name (or it was unlinked). */
MP_EXTERN int mp_shm_open(mp_shm_t **s, const char *name);
/** Where the segment is mapped in this process (page-aligned). */
MP_EXTERN void *mp_shm_ptr(mp_shm_t *s);
/** The segment's size in bytes, as created. */
MP_EXTERN size_t mp_shm_size(mp_shm_t *s);
/** The name to open it by (the random one when created with NULL). */
MP_EXTERN const char *mp_shm_name(mp_shm_t *s);
/** Removes the name now; holders keep their mappings (MP_ENOTFOUND when it
 * is already gone). Without it, the name goes with the last holder. */
MP_EXTERN int mp_shm_unlink(mp_shm_t *s);
/** Unmaps it and releases the handle; the last holder's free removes the
 * name. */
MP_EXTERN void mp_shm_free(mp_shm_t *s);

#ifdef __cplusplus
}
#endif
#endif
