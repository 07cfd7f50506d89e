/* The fault-injection seam: tests make chosen OS calls fail, through the
 * environment so that the children a test starts fail the same way. Live
 * only with MPROC_FAULT_INJECTION (a CMake option, on with the tests). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bool mp__fault(const char *point)
{
#if defined(MPROC_FAULT_INJECTION)
    /* MPROC_FAULT_INJECT is a comma-separated list of point names. Read on
     * each call: fault points sit on slow paths (creating objects). */
    const char *list = getenv("MPROC_FAULT_INJECT");
    size_t n = strlen(point);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !memcmp(p, point, n)) return true;
        p = end ? end + 1 : NULL;
    }
#else
    (void)point;
#endif
    return false;
}
