/* Internals shared by the files of src/common (never installed). */
#ifndef MP_INTERNAL_H
#define MP_INTERNAL_H

#include "mproc.h"
#include "platform.h"

/* Records a detail for mp_last_error_detail() and returns code. A macro
 * so the compiler sees the code returned (and so which paths fail): gcc
 * -O3 otherwise takes failure paths for success ones and warns about
 * maybe-uninitialized results. code is evaluated once, before or after
 * the detail is formatted. */
#define mp__fail(code, ...) mp__fail_ret((code), (mp__fail_detail(__VA_ARGS__), 0))
void mp__fail_detail(const char *fmt, ...)
#if defined(__MINGW32__)
    /* For MinGW "printf" means msvcrt's, which lacks %zu; in C11 mode its
     * stdio is MinGW's own C99 printf, which gnu_printf describes. */
    __attribute__((format(gnu_printf, 1, 2)))
#elif defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static inline int mp__fail_ret(int code, int detail_set)
{
    (void)detail_set;
    return code;
}

/* Whether the test seam asks the named fault point to fail (see fault.c):
 * always false unless built with MPROC_FAULT_INJECTION. */
bool mp__fault(const char *point);

/* mp__fail for a fixed text (a string literal): nothing is formatted or
 * copied, for failures on hot paths that callers often retry or discard. */
int mp__fail_lit(int code, const char *text);

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
