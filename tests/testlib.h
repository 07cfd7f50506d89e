#ifndef MP_TESTLIB_H
#define MP_TESTLIB_H
#include <mproc.h>
#if defined(_WIN32)
__declspec(dllimport)
#endif
    int mp_testlib_target(mp_args_t *args);
#endif
