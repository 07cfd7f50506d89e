/* HMAC for the Listener/Client handshake, from the system's CNG (bcrypt).
 * Never a hand-written digest. SHA-3 exists in CNG from Windows 11 24H2;
 * where it does not, those digests are MP_ENOSYS. */
#include "win32.h"

#include <bcrypt.h>

static const wchar_t *const algorithms[MP__DIGEST_COUNT] = {L"MD5", L"SHA256", L"SHA384",
                                                            L"SHA3-256", L"SHA3-384"};
static const char *const names[MP__DIGEST_COUNT] = {"md5", "sha256", "sha384", "sha3_256",
                                                    "sha3_384"};

int mp__hmac(mp__digest_t d, const void *key, size_t keylen, const void *msg, size_t len,
             uint8_t *out, size_t *outlen)
{
    if ((unsigned)d >= MP__DIGEST_COUNT)
        return mp__fail(MP_ENOSYS, "HMAC with digest %u", (unsigned)d);
    if (keylen > 0xffffffffu) return mp__fail(MP_EINVAL, "HMAC key of %zu bytes", keylen);
    BCRYPT_ALG_HANDLE alg;
    NTSTATUS st =
        BCryptOpenAlgorithmProvider(&alg, algorithms[d], NULL, BCRYPT_ALG_HANDLE_HMAC_FLAG);
    if (st < 0)
        return mp__fail(MP_ENOSYS, "HMAC-%s is not available from CNG (NTSTATUS 0x%08lx)", names[d],
                        (unsigned long)st);
    static UCHAR no_key[1];
    DWORD size = 0;
    ULONG got = 0;
    BCRYPT_HASH_HANDLE h = NULL;
    const char *call = "BCryptGetProperty";
    st = BCryptGetProperty(alg, BCRYPT_HASH_LENGTH, (PUCHAR)&size, sizeof size, &got, 0);
    if (st >= 0 && size > MP__HMAC_MAX) st = (NTSTATUS)0xC0000023L; /* STATUS_BUFFER_TOO_SMALL */
    if (st >= 0) {
        call = "BCryptCreateHash";
        st = BCryptCreateHash(alg, &h, NULL, 0, keylen ? (PUCHAR)key : no_key, (ULONG)keylen, 0);
    }
    const UCHAR *p = msg;
    while (st >= 0 && len) {
        ULONG k = len > 0x40000000u ? 0x40000000u : (ULONG)len;
        call = "BCryptHashData";
        st = BCryptHashData(h, (PUCHAR)p, k, 0);
        p += k;
        len -= k;
    }
    if (st >= 0) {
        call = "BCryptFinishHash";
        st = BCryptFinishHash(h, out, size, 0);
    }
    if (h) BCryptDestroyHash(h);
    BCryptCloseAlgorithmProvider(alg, 0);
    if (st < 0)
        return mp__fail(MP_ESYS, "%s for HMAC-%s: NTSTATUS 0x%08lx", call, names[d],
                        (unsigned long)st);
    *outlen = size;
    return 0;
}
