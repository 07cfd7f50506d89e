/** @file
 * The version of the headers, in one place (CMake reads it from here). */
#ifndef MPROC_VERSION_H
#define MPROC_VERSION_H

/** Incremented for incompatible API or ABI changes. */
#define MPROC_VERSION_MAJOR 0
/** Incremented for additions that keep compatibility. */
#define MPROC_VERSION_MINOR 1
/** Incremented for fixes. */
#define MPROC_VERSION_PATCH 0
/** "MAJOR.MINOR.PATCH". */
#define MPROC_VERSION_STRING "0.1.0"

#endif
