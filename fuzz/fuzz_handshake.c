/* libFuzzer target: the authkey handshake against arbitrary peer bytes.
 *
 * Input: one control byte, then the raw bytes the peer sends (frames and
 * all). Control bit 0: 0 = we are the listener (deliver, then answer),
 * 1 = the client (answer, then deliver); bits 1-2: the digest of our
 * challenge (sha256, md5, sha384, sha3_256); bit 3: refuse_md5. The key
 * and our nonce are fixed (FUZZ_KEY, zeros) so seeds can carry valid
 * replies and the fuzzer reaches every step. Reads never wait: the
 * connection's deadline is 0 once the peer's bytes are queued. */
#include <stdint.h>
#include <string.h>

#include "auth.h"
#include "connection_internal.h"

#define FUZZ_KEY "fuzz key"
#define MAX_INPUT 65536 /* stays within a socket buffer: writes never block */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT) return 0;
    static const mp__digest_t digests[4] = {MP__DIGEST_SHA256, MP__DIGEST_MD5, MP__DIGEST_SHA384,
                                            MP__DIGEST_SHA3_256};
    uint8_t ctl = data[0];
    mp__auth_t a = {.key = FUZZ_KEY,
                    .keylen = sizeof FUZZ_KEY - 1,
                    .digest = digests[(ctl >> 1) & 3],
                    .refuse_md5 = (ctl & 8) && digests[(ctl >> 1) & 3] != MP__DIGEST_MD5};
    mp__stream_t *mine, *peer;
    if (mp__stream_pair(&mine, &peer, true)) return 0;
    mp_conn_t *c;
    if (mp__conn_wrap(mine, true, true, &c)) {
        mp__stream_close(mine);
        mp__stream_close(peer);
        return 0;
    }
    mp__conn_set_default_max(c, MP__AUTH_MAX_MESSAGE);
    mp_iov_t v = {(void *)(data + 1), size - 1};
    if (size > 1) mp__stream_write(peer, &v, 1);
    mp__conn_set_deadline(c, 0);
    static const uint8_t nonce[40];
    int rc;
    if (ctl & 1) {
        rc = mp__auth_answer(c, &a);
        if (!rc) rc = mp__auth_deliver(c, &a, nonce);
    } else {
        rc = mp__auth_deliver(c, &a, nonce);
        if (!rc) rc = mp__auth_answer(c, &a);
    }
    (void)rc;
    mp_conn_free(c);
    mp__stream_close(peer);
    return 0;
}
