/* Allocation, time and CPU-count helpers every file of the library uses. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *mp__malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) mp__fail(MP_ENOMEM, "malloc(%zu) failed", n);
    return p;
}

void *mp__calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) mp__fail(MP_ENOMEM, "calloc(%zu, %zu) failed", n, size);
    return p;
}

char *mp__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mp__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void mp_free(void *p)
{
    free(p);
}

void mp_iov_free(mp_iov_t *v, size_t n)
{
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        free(v[i].data);
    free(v);
}

long mp__timeout_left(long timeout_ms, uint64_t start_ns)
{
    if (timeout_ms < 0) return MP_FOREVER;
    uint64_t spent_ms = (mp__os_now_ns() - start_ns) / 1000000u;
    return spent_ms >= (uint64_t)timeout_ms ? 0 : timeout_ms - (long)spent_ms;
}

int mp__cpu_count_cached(void)
{
    static _Atomic int n;
    int v = atomic_load_explicit(&n, memory_order_relaxed);
    if (!v) {
        v = mp__os_cpu_count();
        atomic_store_explicit(&n, v, memory_order_relaxed);
    }
    return v;
}
