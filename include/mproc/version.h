/* mproc: the version, in one place. */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

#define MPROC_VERSION_MAJOR 0
#define MPROC_VERSION_MINOR 1
#define MPROC_VERSION_PATCH 0
#define MPROC_VERSION_STRING "0.1.0"

#endif
