/** @file
 * mproc: Python's multiprocessing for C. One header for the whole API;
 * docs/tutorial.md starts from here. */
#ifndef MPROC_H
#define MPROC_H

#include "mproc/common.h"
#include "mproc/process.h"
#include "mproc/connection.h"
#include "mproc/listener.h"
#include "mproc/sync.h"
#include "mproc/shm.h"
#include "mproc/pool.h"
#include "mproc/queue.h"
#include "mproc/manager.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The version of the library actually linked, "MAJOR.MINOR.PATCH"
 * (MPROC_VERSION_STRING is the one of the headers compiled against). */
MP_EXTERN const char *mp_version(void);

#ifdef __cplusplus
}
#endif
#endif
