/* Connections over a stream the library (or a test) made itself. */
#ifndef MP_CONNECTION_INTERNAL_H
#define MP_CONNECTION_INTERNAL_H

#include "internal.h"

/* Wraps s as a connection end; the connection owns s from then on. */
int mp__conn_wrap(mp__stream_t *s, bool readable, bool writable, mp_conn_t **out);

#endif
