/** @file
 * Connections and pipes (multiprocessing.connection): message streams
 * between processes. A message is a byte string of any length, delivered
 * whole and in order. */
#ifndef MPROC_CONNECTION_H
#define MPROC_CONNECTION_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Two connected ends (multiprocessing.Pipe). duplex=false: c1 only
 * receives, c2 only sends (MP_EPERM otherwise). */
MP_EXTERN int mp_pipe(mp_conn_t **c1, mp_conn_t **c2, bool duplex);
/** Sends len bytes as one message; MP_EOF when the peer end is gone
 * (never SIGPIPE). */
MP_EXTERN int mp_conn_send_bytes(mp_conn_t *c, const void *buf, size_t len);
/** The n buffers go out as one message. */
MP_EXTERN int mp_conn_sendv(mp_conn_t *c, const mp_iov_t *iov, size_t n);
/** Waits for the next message and returns it whole. MP_EOF once every
 * holder of the peer end has closed it or died. The buffer is the
 * caller's to mp_free (non-NULL even for an empty message). */
MP_EXTERN int mp_conn_recv_bytes(mp_conn_t *c, void **buf, size_t *len);
/** The next message into the caller's buffer. MP_EMSGSIZE when cap is
 * short: *len holds the size and the message stays
 * readable. */
MP_EXTERN int mp_conn_recv_bytes_into(mp_conn_t *c, void *buf, size_t cap, size_t *len);
/** The largest message this end accepts; a larger announced length fails
 * with MP_EMSGSIZE before anything is allocated, and the connection can no
 * longer be read (MP_EPROTO after). 0 restores the default (no bound for
 * pipes). */
MP_EXTERN int mp_conn_set_max_message(mp_conn_t *c, size_t max);
/** 1 when a message (or EOF) is readable, 0 when timeout_ms passed. */
MP_EXTERN int mp_conn_poll(mp_conn_t *c, long timeout_ms);
/** Whether this end may receive (false for a simplex pipe's sending end). */
MP_EXTERN bool mp_conn_readable(mp_conn_t *c);
/** Whether this end may send (false for a simplex pipe's receiving end). */
MP_EXTERN bool mp_conn_writable(mp_conn_t *c);
/** Closes this process's end; later calls on it give MP_ECLOSED. */
MP_EXTERN int mp_conn_close(mp_conn_t *c);
/** Closes this end if open and releases the handle. */
MP_EXTERN void mp_conn_free(mp_conn_t *c);

/** Waits until any of hs is ready: a connection readable, a process ended,
 * a queue holding an item (multiprocessing.connection.wait).
 * ready (room for n) receives the indexes of the ready ones. Returns 0 with
 * *nready == 0 when timeout_ms passed. */
MP_EXTERN int mp_wait(mp_handle_t **hs, size_t n, long timeout_ms, size_t *ready, size_t *nready);

#ifdef __cplusplus
}
#endif
#endif
