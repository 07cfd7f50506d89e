/** @file
 * Listener and Client (multiprocessing.connection.Listener/Client).
 *
 * Addresses:
 *   "tcp://host:port"   IPv4, a host name, or [IPv6]; port 0 lets a
 *                       listener pick a free one; an empty host is
 *                       127.0.0.1 ("tcp://:0").
 *   "unix:/path"        a Unix-domain socket (POSIX; the listener removes
 *                       the file when the process that created it frees it).
 *   "pipe:name"         the Windows named pipe `\\.\pipe\name`, in message
 *                       mode like CPython's AF_PIPE (Windows only).
 *   NULL                a private local address only this user can reach:
 *                       a socket in a fresh 0700 directory on POSIX, a
 *                       random pipe name on Windows.
 * A malformed address is MP_EINVAL with a detail naming what is wrong; a
 * kind this platform lacks is MP_ENOSYS.
 *
 * With an authkey, every connection runs CPython's handshake (mutual HMAC
 * challenge-response), so a C program and a Python one can talk: HMAC-MD5
 * as Python <= 3.11 and the "{sha256}" form of 3.12+ are both understood.
 * Before it succeeds a peer's messages are bounded to 256 bytes; a wrong
 * key is MP_EAUTH on our side (AuthenticationError on Python's). */
#ifndef MPROC_LISTENER_H
#define MPROC_LISTENER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The bound on incoming messages a connection from a listener or a client
 * starts with after the handshake (raise it with mp_conn_set_max_message;
 * a peer must really send the bytes before they are allocated anyway). */
#define MP_LISTENER_MAX_MESSAGE ((size_t)1 << 30)

/** A listener's options (mp_listener_create_ex); zero-initialise and set
 * what you need. */
typedef struct {
    const void *authkey; /**< NULL: no handshake */
    size_t keylen;       /**< bytes at authkey */
    /** Safety switch, off by default: a TCP listener without an authkey
     * (or with an empty one) is refused with MP_EPERM. */
    bool allow_no_authkey;
    /** Safety switch, off by default: a TCP host that is not a loopback
     * address ("tcp://0.0.0.0:5000") is refused with MP_EPERM. */
    bool allow_remote;
    /** The digest our challenge asks for: NULL or "sha256" (CPython 3.12+),
     * "sha384", "sha3_256", "sha3_384" (where the platform has SHA-3), or
     * "md5" for the legacy 20-byte challenge of 3.11. Peers may answer
     * with any of them; legacy peers answer MD5 to every challenge. */
    const char *digest;
    bool refuse_md5;           /**< reject peers that only speak HMAC-MD5 */
    int backlog;               /**< 0: a default */
    long handshake_timeout_ms; /**< 0: only accept's timeout bounds it */
    size_t max_message;        /**< 0: MP_LISTENER_MAX_MESSAGE */
} mp_listener_opts_t;

/** mp_listener_create_ex with only an authkey set. */
MP_EXTERN int mp_listener_create(mp_listener_t **l, const char *address, const void *authkey,
                                 size_t keylen);
/** Listens at address (see the file's description; NULL: a private local
 * address). MP_EEXIST when the address is taken. */
MP_EXTERN int mp_listener_create_ex(mp_listener_t **l, const char *address,
                                    const mp_listener_opts_t *o);
/** The address clients connect to, with the real port for "tcp://...:0". */
MP_EXTERN const char *mp_listener_address(mp_listener_t *l);
/** Waits for a peer and authenticates it; timeout_ms covers both (and the
 * handshake also stops at handshake_timeout_ms), so with an authkey a
 * timeout of 0 only succeeds if the whole handshake needs no waiting.
 * MP_ETIMEDOUT; MP_EAUTH for a peer that failed the handshake (a wrong
 * key, garbage, a message over the bound, a close): the listener stays
 * usable, call again for the next. */
MP_EXTERN int mp_listener_accept(mp_listener_t *l, long timeout_ms, mp_conn_t **c);
/** Stops listening and releases it (a "unix:" socket file goes when the
 * process that created the listener frees it). Connections it accepted
 * stay open. */
MP_EXTERN void mp_listener_free(mp_listener_t *l);

/** A client's options (mp_client_connect_ex). */
typedef struct {
    const void *authkey; /**< NULL: no handshake (the listener must have none) */
    size_t keylen;       /**< bytes at authkey */
    const char *digest;  /**< our challenge to the listener, as above */
    bool refuse_md5;     /**< reject a listener that only speaks HMAC-MD5 */
    long timeout_ms;     /**< connect and handshake; 0 or MP_FOREVER: no limit */
    size_t max_message;  /**< 0: MP_LISTENER_MAX_MESSAGE */
} mp_client_opts_t;

/** mp_client_connect_ex with only an authkey set. */
MP_EXTERN int mp_client_connect(const char *address, const void *authkey, size_t keylen,
                                mp_conn_t **c);
/** Connects to a listener and runs the handshake (multiprocessing.connection.
 * Client). MP_ENOTFOUND when nobody listens there, MP_EAUTH for a wrong key
 * or a peer that breaks the handshake. */
MP_EXTERN int mp_client_connect_ex(const char *address, const mp_client_opts_t *o, mp_conn_t **c);

#ifdef __cplusplus
}
#endif
#endif
