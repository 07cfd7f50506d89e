/* A target that lives in a shared library, for spawn to resolve there. */
#include <mproc.h>

#if defined(_WIN32)
#define TESTLIB_API __declspec(dllexport)
#else
#define TESTLIB_API __attribute__((visibility("default")))
#endif

TESTLIB_API int mp_testlib_target(mp_args_t *args);

int mp_testlib_target(mp_args_t *args)
{
    (void)args;
    return 42;
}
