/* Connections over a stream the library (or a test) made itself. */
#ifndef MP_CONNECTION_INTERNAL_H
#define MP_CONNECTION_INTERNAL_H

#include "internal.h"

/* Wraps s as a connection end; the connection owns s from then on. */
int mp__conn_wrap(mp__stream_t *s, bool readable, bool writable, mp_conn_t **out);

/* Message mode, for transports that keep message boundaries themselves
 * (Windows named pipes in PIPE_TYPE_MESSAGE: CPython's PipeConnection,
 * which a Python peer on a pipe: address speaks). A message then goes out
 * as one mp__stream_msg_write with no length header, and a reader learns
 * its size from mp__stream_msg_read; bounds, recv_bytes_into's short-buffer
 * rule and the rest behave as with headers. Set before any I/O. */
void mp__conn_set_message_mode(mp_conn_t *c);
/* Sets the bound and makes it what mp_conn_set_max_message(c, 0) restores
 * (connections from outside the program start bounded). */
void mp__conn_set_default_max(mp_conn_t *c, size_t max);
/* Reads give up with MP_ETIMEDOUT timeout_ms from now (a timeout inside a
 * message leaves the connection unreadable); MP_FOREVER lifts it. */
void mp__conn_set_deadline(mp_conn_t *c, long timeout_ms);
/* Allocates the read-ahead buffer and touches its free bytes, so that the
 * reads of a burst later pay no page faults (best effort: no error). */
void mp__conn_warm(mp_conn_t *c);

/* mp_listener_accept with wait_ms bounding only the wait for a peer: its
 * handshake then has the listener's handshake_timeout_ms (or no limit).
 * For a loop that accepts in short slices, where a handshake begun late in
 * a slice must not be cut at the slice's end. */
int mp__listener_accept_within(mp_listener_t *l, long wait_ms, mp_conn_t **c);

#endif
