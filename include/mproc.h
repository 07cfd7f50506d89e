/* mproc: Python's multiprocessing for C. One header for the whole API. */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/process.h"
#include "mproc/connection.h"

#ifdef __cplusplus
extern "C" {
#endif

MP_EXTERN const char *mp_version(void);

#ifdef __cplusplus
}
#endif
#endif
