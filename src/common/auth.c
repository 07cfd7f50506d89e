/* The authkey handshake, message for message as CPython 3.11 and 3.12+
 * (Lib/multiprocessing/connection.py); see auth.h and RESEARCH.md §2.3-2.5. */
#include <stdio.h>
#include <string.h>

#include "auth.h"

#define CHALLENGE "#CHALLENGE#"
#define CHALLENGE_LEN 11u
#define WELCOME "#WELCOME#"
#define FAILURE "#FAILURE#"
#define STATUS_LEN 9u
/* Random bytes in a challenge: 40 in the modern form (MESSAGE_LENGTH, which
 * must differ from the legacy lengths 16 and 20), 20 in the legacy one. */
#define MODERN_NONCE 40u
#define LEGACY_NONCE 20u
#define MD5_LEN 16u
/* The longest allowed name, "sha3_256" (_MAX_DIGEST_LEN). */
#define MAX_NAME 8u

static const char *const names[MP__DIGEST_COUNT] = {
    [MP__DIGEST_MD5] = "md5",           [MP__DIGEST_SHA256] = "sha256",
    [MP__DIGEST_SHA384] = "sha384",     [MP__DIGEST_SHA3_256] = "sha3_256",
    [MP__DIGEST_SHA3_384] = "sha3_384",
};

const char *mp__digest_name(mp__digest_t d)
{
    return (unsigned)d < MP__DIGEST_COUNT ? names[d] : "?";
}

int mp__digest_lookup(const char *name, size_t len, mp__digest_t *d)
{
    for (int i = 0; i < MP__DIGEST_COUNT; i++) {
        if (strlen(names[i]) == len && !memcmp(names[i], name, len)) {
            *d = (mp__digest_t)i;
            return 0;
        }
    }
    return mp__fail(MP_EINVAL,
                    "digest \"%.*s\" is not one of md5, sha256, sha384, sha3_256, "
                    "sha3_384",
                    (int)(len > 16 ? 16 : len), name);
}

bool mp__auth_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (uint8_t)(x[i] ^ y[i]);
    return diff == 0;
}

int mp__auth_parse(const uint8_t *m, size_t len, mp__digest_t *d, size_t *prefix_len)
{
    if (len == MD5_LEN || len == LEGACY_NONCE) {
        *d = MP__DIGEST_MD5;
        *prefix_len = 0;
        return 0;
    }
    /* '}' must come within bytes 1..MAX_NAME+1, as find(b'}', 1, 10). */
    size_t end = len < MAX_NAME + 2 ? len : MAX_NAME + 2;
    if (len > 0 && m[0] == '{') {
        for (size_t i = 1; i < end; i++) {
            if (m[i] != '}') continue;
            if (mp__digest_lookup((const char *)m + 1, i - 1, d)) break;
            *prefix_len = i + 1;
            return 0;
        }
    }
    return mp__fail(MP_EAUTH,
                    "handshake: a message of %zu bytes with an unsupported length, "
                    "no digest prefix or an unsupported digest",
                    len);
}

static int md5_refused(void)
{
    return mp__fail(MP_EAUTH, "handshake: the peer uses legacy HMAC-MD5 (CPython <= 3.11), "
                              "which this end refuses");
}

int mp__auth_verify(const mp__auth_t *a, const uint8_t *body, size_t len, const uint8_t *resp,
                    size_t rlen)
{
    mp__digest_t d = MP__DIGEST_SHA256;
    size_t skip = 0;
    int rc = mp__auth_parse(resp, rlen, &d, &skip);
    if (rc) return rc;
    if (d == MP__DIGEST_MD5 && a->refuse_md5) return md5_refused();
    uint8_t want[MP__HMAC_MAX];
    size_t wlen;
    rc = mp__hmac(d, a->key, a->keylen, body, len, want, &wlen);
    if (rc == MP_ENOSYS)
        return mp__fail(MP_EAUTH,
                        "handshake: the peer answered with HMAC-%s, which this "
                        "platform lacks",
                        names[d]);
    if (rc) return rc;
    if (wlen != rlen - skip)
        return mp__fail(MP_EAUTH, "handshake: expected an HMAC-%s of %zu bytes, got %zu", names[d],
                        wlen, rlen - skip);
    if (!mp__auth_equal(want, resp + skip, wlen))
        return mp__fail(MP_EAUTH, "handshake: the peer's digest is wrong (a different authkey)");
    return 0;
}

int mp__auth_respond(const mp__auth_t *a, const uint8_t *body, size_t len, uint8_t *out,
                     size_t *outlen)
{
    mp__digest_t d = MP__DIGEST_SHA256;
    size_t skip = 0;
    int rc = mp__auth_parse(body, len, &d, &skip);
    if (rc) return rc;
    if (d == MP__DIGEST_MD5 && a->refuse_md5) return md5_refused();
    bool prefixed = skip > 0;
    rc = mp__hmac(d, a->key, a->keylen, body, len, out, outlen);
    if (rc == MP_ENOSYS && !prefixed) {
        /* No MD5 here (FIPS): answer as CPython does then, in the modern
         * form; a legacy peer will refuse it, a modern one accepts it. */
        d = MP__DIGEST_SHA256;
        prefixed = true;
        rc = mp__hmac(d, a->key, a->keylen, body, len, out, outlen);
    }
    if (rc == MP_ENOSYS)
        return mp__fail(MP_EAUTH,
                        "handshake: the peer asks for HMAC-%s, which this platform "
                        "lacks",
                        names[d]);
    if (rc) return rc;
    size_t head = 0;
    if (prefixed) {
        /* The reply names its digest: "{name}" + MAC. */
        head = strlen(names[d]) + 2;
        memmove(out + head, out, *outlen);
        out[0] = '{';
        memcpy(out + 1, names[d], head - 2);
        out[head - 1] = '}';
    }
    *outlen += head;
    return 0;
}

/* Transport results caused by the peer are authentication failures; time-
 * outs and local failures keep their code. */
static int peer_failed(int rc, const char *step)
{
    if (rc != MP_EOF && rc != MP_EPROTO && rc != MP_EMSGSIZE) return rc;
    char why[256];
    snprintf(why, sizeof why, "%s", mp_last_error_detail());
    return mp__fail(MP_EAUTH, "handshake: %s: %s", step, why);
}

static int auth_send(mp_conn_t *c, const void *p, size_t n, const char *step)
{
    int rc = mp_conn_send_bytes(c, p, n);
    return rc ? peer_failed(rc, step) : 0;
}

static int auth_recv(mp_conn_t *c, uint8_t *buf, size_t *len, const char *step)
{
    int rc = mp_conn_recv_bytes_into(c, buf, MP__AUTH_MAX_MESSAGE, len);
    return rc ? peer_failed(rc, step) : 0;
}

int mp__auth_deliver(mp_conn_t *c, const mp__auth_t *a, const uint8_t *nonce)
{
    uint8_t msg[CHALLENGE_LEN + MAX_NAME + 2 + MODERN_NONCE];
    memcpy(msg, CHALLENGE, CHALLENGE_LEN);
    size_t n = CHALLENGE_LEN, nonce_len = LEGACY_NONCE;
    if (a->digest != MP__DIGEST_MD5) {
        n += (size_t)snprintf((char *)msg + n, MAX_NAME + 3, "{%s}", mp__digest_name(a->digest));
        nonce_len = MODERN_NONCE;
    } else if (a->refuse_md5) {
        return mp__fail(MP_EINVAL, "handshake: a legacy MD5 challenge with MD5 refused");
    }
    int rc = 0;
    if (nonce)
        memcpy(msg + n, nonce, nonce_len);
    else
        rc = mp__os_random(msg + n, nonce_len);
    n += nonce_len;
    if (!rc) rc = auth_send(c, msg, n, "sending the challenge");
    uint8_t reply[MP__AUTH_MAX_MESSAGE];
    size_t rlen = 0;
    if (!rc) rc = auth_recv(c, reply, &rlen, "reading the reply to our challenge");
    if (rc) return rc;
    rc = mp__auth_verify(a, msg + CHALLENGE_LEN, n - CHALLENGE_LEN, reply, rlen);
    if (rc) {
        /* Tell the peer (as CPython does) but keep the reason: the peer
         * may well have gone already. */
        char why[256];
        snprintf(why, sizeof why, "%s", mp_last_error_detail());
        mp_conn_send_bytes(c, FAILURE, STATUS_LEN);
        return mp__fail(rc, "%s", why);
    }
    return auth_send(c, WELCOME, STATUS_LEN, "sending WELCOME");
}

int mp__auth_answer(mp_conn_t *c, const mp__auth_t *a)
{
    uint8_t msg[MP__AUTH_MAX_MESSAGE];
    size_t n = 0;
    int rc = auth_recv(c, msg, &n, "reading the peer's challenge");
    if (rc) return rc;
    if (n < CHALLENGE_LEN || memcmp(msg, CHALLENGE, CHALLENGE_LEN))
        return mp__fail(MP_EAUTH, "handshake: expected a challenge, got %zu other bytes", n);
    if (n - CHALLENGE_LEN < LEGACY_NONCE)
        return mp__fail(MP_EAUTH, "handshake: challenge too short (%zu bytes)", n - CHALLENGE_LEN);
    uint8_t reply[MP__AUTH_MAX_RESPONSE];
    size_t rlen = 0;
    rc = mp__auth_respond(a, msg + CHALLENGE_LEN, n - CHALLENGE_LEN, reply, &rlen);
    if (!rc) rc = auth_send(c, reply, rlen, "sending our reply");
    if (!rc) rc = auth_recv(c, msg, &n, "reading the verdict on our reply");
    if (rc) return rc;
    if (n != STATUS_LEN || memcmp(msg, WELCOME, STATUS_LEN))
        return mp__fail(MP_EAUTH, "handshake: the peer rejected our digest (a different "
                                  "authkey?)");
    return 0;
}
