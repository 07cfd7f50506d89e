/* mproc: named shared memory (multiprocessing.shared_memory). */
#ifndef MPROC_SHM_H
#define MPROC_SHM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_shm mp_shm_t;

/* Names are 1 to MP_SHM_NAME_MAX of A-Z a-z 0-9 _ - (short enough for
 * macOS once prefixed). */
#define MP_SHM_NAME_MAX 26

/* Creates size zeroed bytes under name (NULL: a random name). Never
 * attaches to an existing segment: MP_EEXIST. Only this user may open it. */
MP_EXTERN int mp_shm_create(mp_shm_t **s, const char *name, size_t size);
/* MP_ENOTFOUND when no segment has this name (or it was unlinked). */
MP_EXTERN int mp_shm_open(mp_shm_t **s, const char *name);
/* Page-aligned. */
MP_EXTERN void *mp_shm_ptr(mp_shm_t *s);
MP_EXTERN size_t mp_shm_size(mp_shm_t *s);
MP_EXTERN const char *mp_shm_name(mp_shm_t *s);
/* Removes the name now; holders keep their mappings (MP_ENOTFOUND when it
 * is already gone). Without it, the name goes with the last holder. */
MP_EXTERN int mp_shm_unlink(mp_shm_t *s);
MP_EXTERN void mp_shm_free(mp_shm_t *s);

#ifdef __cplusplus
}
#endif
#endif
