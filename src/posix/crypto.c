/* HMAC for the Listener/Client handshake: the system's CommonCrypto on
 * macOS, OpenSSL's libcrypto elsewhere. Never a hand-written digest. */
#include <limits.h>

#include "posix.h"

#if defined(__APPLE__)
#include <CommonCrypto/CommonHMAC.h>
#else
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif

static const char *const digest_names[MP__DIGEST_COUNT] = {"md5", "sha256", "sha384", "sha3_256",
                                                           "sha3_384"};

static int unsupported(mp__digest_t d)
{
    return mp__fail(MP_ENOSYS, "HMAC-%s is not available from this platform's crypto",
                    (unsigned)d < MP__DIGEST_COUNT ? digest_names[d] : "?");
}

#if defined(__APPLE__)

int mp__hmac(mp__digest_t d, const void *key, size_t keylen, const void *msg, size_t len,
             uint8_t *out, size_t *outlen)
{
    CCHmacAlgorithm alg;
    switch (d) {
    case MP__DIGEST_MD5:
        alg = kCCHmacAlgMD5;
        *outlen = CC_MD5_DIGEST_LENGTH;
        break;
    case MP__DIGEST_SHA256:
        alg = kCCHmacAlgSHA256;
        *outlen = CC_SHA256_DIGEST_LENGTH;
        break;
    case MP__DIGEST_SHA384:
        alg = kCCHmacAlgSHA384;
        *outlen = CC_SHA384_DIGEST_LENGTH;
        break;
    default: /* CommonCrypto has no SHA-3 */
        return unsupported(d);
    }
    CCHmac(alg, key, keylen, msg, len, out);
    return 0;
}

#else

static const EVP_MD *evp_digest(mp__digest_t d)
{
    switch (d) {
    case MP__DIGEST_MD5:
        return EVP_md5();
    case MP__DIGEST_SHA256:
        return EVP_sha256();
    case MP__DIGEST_SHA384:
        return EVP_sha384();
    case MP__DIGEST_SHA3_256:
        return EVP_sha3_256();
    case MP__DIGEST_SHA3_384:
        return EVP_sha3_384();
    default:
        return NULL;
    }
}

int mp__hmac(mp__digest_t d, const void *key, size_t keylen, const void *msg, size_t len,
             uint8_t *out, size_t *outlen)
{
    static const unsigned char no_key[1];
    const EVP_MD *md = evp_digest(d);
    unsigned int n = 0;
    if (keylen > INT_MAX) return mp__fail(MP_EINVAL, "HMAC key of %zu bytes", keylen);
    /* A NULL key means "the previous key" to HMAC(); an empty one is valid. */
    if (!md || !HMAC(md, keylen ? key : no_key, (int)keylen, msg, len, out, &n))
        return unsupported(d); /* e.g. MD5 under a FIPS provider */
    *outlen = n;
    return 0;
}

#endif
