/* The authkey handshake of CPython's multiprocessing.connection
 * (deliver_challenge / answer_challenge), in both of its forms:
 *   legacy (3.3-3.11): a 20-byte challenge, a raw 16-byte HMAC-MD5 reply;
 *   modern (3.12+):    "{sha256}" + 40 bytes, a "{name}"-prefixed reply.
 * A listener runs deliver then answer, a client answer then deliver. */
#ifndef MP_AUTH_H
#define MP_AUTH_H

#include "internal.h"

/* Every handshake message is read with this bound, as CPython's
 * recv_bytes(256): an unauthenticated peer cannot make us allocate. */
#define MP__AUTH_MAX_MESSAGE 256u

typedef struct {
    const void *key;
    size_t keylen;
    /* The digest our challenges ask for. MD5 sends the legacy 20-byte
     * challenge; every other one the prefixed 40-byte form. */
    mp__digest_t digest;
    /* Refuse legacy HMAC-MD5 both in replies and in challenges (for
     * FIPS-minded deployments; a CPython <= 3.11 peer then cannot connect). */
    bool refuse_md5;
} mp__auth_t;

/* Challenges the peer and tells it WELCOME or FAILURE. nonce: NULL for
 * fresh random bytes; tests pass fixed ones to check the published
 * vectors byte for byte. A peer that fails (wrong key, garbage, a message
 * over the bound, EOF) gives MP_EAUTH with a detail; MP_ETIMEDOUT and OS
 * failures pass through. */
int mp__auth_deliver(mp_conn_t *c, const mp__auth_t *a, const uint8_t *nonce);
/* Answers the peer's challenge and expects WELCOME; errors as above. */
int mp__auth_answer(mp_conn_t *c, const mp__auth_t *a);

/* CPython's _get_digest_name_and_payload: a 16- or 20-byte message is
 * legacy MD5 (*prefix_len 0); otherwise it must start "{name}" with an
 * allowed name. MP_EAUTH when neither. */
int mp__auth_parse(const uint8_t *m, size_t len, mp__digest_t *d, size_t *prefix_len);
/* CPython's _verify_challenge: checks resp against our challenge body. */
int mp__auth_verify(const mp__auth_t *a, const uint8_t *body, size_t len, const uint8_t *resp,
                    size_t rlen);
/* CPython's _create_response for a challenge body; out needs room for
 * MP__AUTH_MAX_RESPONSE bytes. */
#define MP__AUTH_MAX_RESPONSE (10u + MP__HMAC_MAX)
int mp__auth_respond(const mp__auth_t *a, const uint8_t *body, size_t len, uint8_t *out,
                     size_t *outlen);

/* Constant-time comparison: its duration does not depend on where the
 * buffers differ. */
bool mp__auth_equal(const void *a, const void *b, size_t n);
/* "sha256" <-> MP__DIGEST_SHA256; MP_EINVAL for a name not in the set. */
int mp__digest_lookup(const char *name, size_t len, mp__digest_t *d);
const char *mp__digest_name(mp__digest_t d);

#endif
