/* Internals shared by the files of src/common (never installed). */
#ifndef MP_INTERNAL_H
#define MP_INTERNAL_H

#include "mproc.h"
#include "platform.h"

/* Records a detail for mp_last_error_detail() and returns code. */
int mp__fail(int code, const char *fmt, ...)
#if defined(__MINGW32__)
    /* For MinGW "printf" means msvcrt's, which lacks %zu; in C11 mode its
     * stdio is MinGW's own C99 printf, which gnu_printf describes. */
    __attribute__((format(gnu_printf, 2, 3)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Remaining milliseconds of a timeout that started at start_ns; MP_FOREVER
 * stays MP_FOREVER, an expired one is 0. */
long mp__timeout_left(long timeout_ms, uint64_t start_ns);

void *mp__malloc(size_t n);
void *mp__calloc(size_t n, size_t size);
char *mp__strdup(const char *s);

/* The start method actually used for m (resolving MP_START_DEFAULT). */
mp_start_method_t mp__start_method_resolve(mp_start_method_t m);
/* True once mp_init ran in this process. */
bool mp__initialised(void);
/* The executable children are spawned from (mp_set_executable or ours). */
const char *mp__executable(void);
/* Set in a child before its target runs. */
void mp__set_identity(const char *name, mp_pid_t parent);
/* The same in a forked child, keeping a pointer to name (which must stay
 * alive as long as the process). */
void mp__set_identity_fork(const char *name, mp_pid_t parent);

#endif
