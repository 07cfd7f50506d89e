/* The authkey handshake against the published CPython test vectors
 * (RESEARCH.md §2.4-2.5), byte for byte, and against hostile peers. The
 * test plays the peer by writing raw frames under a connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "connection_internal.h"
#include "helpers.h"

static const char KEY[] = "secret";

/* A connection whose peer is the raw stream the test drives. */
static void raw_pair(mp_conn_t **c, mp__stream_t **raw)
{
    mp__stream_t *s;
    ASSERT_OK(mp__stream_pair(&s, raw, true));
    ASSERT_OK(mp__conn_wrap(s, true, true, c));
}

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = 0;
    for (; hex[0] && hex[1]; hex += 2) {
        unsigned v;
        cr_assert_eq(sscanf(hex, "%2x", &v), 1);
        out[n++] = (uint8_t)v;
    }
    return n;
}

static void raw_write(mp__stream_t *raw, const void *p, size_t n)
{
    mp_iov_t v = {(void *)p, n};
    ASSERT_OK(mp__stream_write(raw, &v, 1));
}

/* Writes one frame: a 4-byte big-endian length and the payload. */
static void raw_frame(mp__stream_t *raw, const void *p, size_t n)
{
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    raw_write(raw, h, 4);
    if (n) raw_write(raw, p, n);
}

/* Reads exactly n bytes from the raw end and checks they are want. */
static void raw_expect(mp__stream_t *raw, const uint8_t *want, size_t n)
{
    uint8_t *got = malloc(n);
    size_t have = 0;
    while (have < n) {
        size_t k = 0;
        ASSERT_OK(mp__stream_read(raw, got + have, n - have, &k, JOIN_MS));
        have += k;
    }
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "byte %zu: got %02x, wanted %02x", i, got[i], want[i]);
    free(got);
}

static void raw_expect_hex(mp__stream_t *raw, const char *hex)
{
    uint8_t want[512];
    raw_expect(raw, want, unhex(hex, want));
}

static void raw_expect_frame(mp__stream_t *raw, const void *p, size_t n)
{
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    raw_expect(raw, h, 4);
    raw_expect(raw, p, n);
}

static mp__auth_t key_auth(mp__digest_t d)
{
    mp__auth_t a = {.key = KEY, .keylen = strlen(KEY), .digest = d};
    return a;
}

#define HEX_CHALLENGE "234348414c4c454e474523"
#define HEX_SHA256_TAG "7b7368613235367d"
#define HEX_0_13 "000102030405060708090a0b0c0d0e0f10111213"
#define LEGACY_MAC "7defa9cc46abc3583325d17ccda75190"
#define SHA256_MAC "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989"
#define MD5_OF_MODERN "8e48d2bb349b4b72b9382999ed5b62eb"

/* 00..27 hex (40 bytes). */
static void nonce40(uint8_t *n)
{
    for (int i = 0; i < 40; i++)
        n[i] = (uint8_t)i;
}

static void modern_challenge_body(uint8_t *b)
{
    memcpy(b, "{sha256}", 8);
    nonce40(b + 8);
}

Test(auth, vector_legacy_answer, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    uint8_t frame[64];
    size_t n = unhex("0000001f" HEX_CHALLENGE HEX_0_13, frame);
    raw_write(raw, frame, n);
    raw_frame(raw, "#WELCOME#", 9);
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    ASSERT_OK(mp__auth_answer(c, &a));
    /* CPython 3.11's reply to its own challenge, verified against 3.11.7. */
    raw_expect_hex(raw, "00000010" LEGACY_MAC);
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(auth, vector_modern_answer, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    uint8_t body[48];
    modern_challenge_body(body);
    uint8_t frame[64];
    size_t n = unhex("0000003b" HEX_CHALLENGE HEX_SHA256_TAG, frame);
    memcpy(frame + n, body + 8, 40);
    raw_write(raw, frame, n + 40);
    raw_frame(raw, "#WELCOME#", 9);
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    ASSERT_OK(mp__auth_answer(c, &a));
    raw_expect_hex(raw, "00000028" HEX_SHA256_TAG SHA256_MAC);
    mp_conn_free(c);
    mp__stream_close(raw);
}

/* deliver with a fixed nonce: the challenge frame is the 3.12 vector. */
static void deliver_modern_with_reply(const char *reply_hex, int want_rc, const char *verdict,
                                      bool refuse_md5)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    uint8_t reply[128];
    size_t rn = unhex(reply_hex, reply);
    raw_frame(raw, reply, rn);
    uint8_t nonce[40];
    nonce40(nonce);
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    a.refuse_md5 = refuse_md5;
    ASSERT_RC(mp__auth_deliver(c, &a, nonce), want_rc);
    uint8_t frame[64];
    size_t n = unhex("0000003b" HEX_CHALLENGE HEX_SHA256_TAG, frame);
    memcpy(frame + n, nonce, 40);
    raw_expect(raw, frame, n + 40);
    raw_expect_frame(raw, verdict, 9);
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(auth, vector_modern_deliver, .timeout = TEST_TIMEOUT)
{
    deliver_modern_with_reply(HEX_SHA256_TAG SHA256_MAC, 0, "#WELCOME#", false);
}

Test(auth, modern_deliver_accepts_a_legacy_md5_reply, .timeout = TEST_TIMEOUT)
{
    /* A 3.11 client MD5s the whole prefixed body: RESEARCH.md's vector. */
    deliver_modern_with_reply(MD5_OF_MODERN, 0, "#WELCOME#", false);
}

Test(auth, refuse_md5_rejects_a_legacy_reply, .timeout = TEST_TIMEOUT)
{
    deliver_modern_with_reply(MD5_OF_MODERN, MP_EAUTH, "#FAILURE#", true);
}

Test(auth, wrong_digest_is_refused_with_failure, .timeout = TEST_TIMEOUT)
{
    /* The right form from another key: one flipped byte. */
    deliver_modern_with_reply(HEX_SHA256_TAG
                              "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6988",
                              MP_EAUTH, "#FAILURE#", false);
    cr_assert(strstr(mp_last_error_detail(), "digest"), "%s", mp_last_error_detail());
}

Test(auth, unsupported_digests_and_garbage_replies, .timeout = TEST_TIMEOUT)
{
    /* {sha512} is not in CPython's allowed set; {} names nothing; 17 bytes
     * is neither legacy nor prefixed; '}' too far; no '}' at all. */
    deliver_modern_with_reply("7b7368613531327d" SHA256_MAC SHA256_MAC, MP_EAUTH, "#FAILURE#",
                              false);
    deliver_modern_with_reply("7b7d" SHA256_MAC, MP_EAUTH, "#FAILURE#", false);
    deliver_modern_with_reply("0102030405060708090a0b0c0d0e0f1011", MP_EAUTH, "#FAILURE#", false);
    deliver_modern_with_reply("7b61616161616161616161617d" SHA256_MAC, MP_EAUTH, "#FAILURE#",
                              false);
    deliver_modern_with_reply("7b736861323536" SHA256_MAC, MP_EAUTH, "#FAILURE#", false);
    deliver_modern_with_reply("", MP_EAUTH, "#FAILURE#", false);
}

Test(auth, vector_legacy_deliver, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    uint8_t mac[16];
    unhex(LEGACY_MAC, mac);
    raw_frame(raw, mac, 16);
    uint8_t nonce[20];
    for (int i = 0; i < 20; i++)
        nonce[i] = (uint8_t)i;
    mp__auth_t a = key_auth(MP__DIGEST_MD5);
    ASSERT_OK(mp__auth_deliver(c, &a, nonce));
    raw_expect_hex(raw, "0000001f" HEX_CHALLENGE HEX_0_13);
    raw_expect_frame(raw, "#WELCOME#", 9);
    mp_conn_free(c);
    mp__stream_close(raw);
}

/* The other digests of CPython's set, each answered and verified. */
static void check_digest(const char *name, const char *mac_hex)
{
    mp__digest_t d;
    ASSERT_OK(mp__digest_lookup(name, strlen(name), &d));
    uint8_t body[48], out[MP__AUTH_MAX_RESPONSE];
    modern_challenge_body(body);
    size_t n = 0;
    /* A challenge that asks for this digest, answered and checked. */
    uint8_t labelled[64];
    size_t ln = (size_t)snprintf((char *)labelled, sizeof labelled, "{%s}", name);
    memcpy(labelled + ln, body + 8, 40);
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    ASSERT_OK(mp__auth_respond(&a, labelled, ln + 40, out, &n));
    cr_assert(!memcmp(out, labelled, ln), "the reply names the digest");
    ASSERT_OK(mp__auth_verify(&a, labelled, ln + 40, out, n));
    if (mac_hex) {
        /* Python's hmac.new(b"secret", b"{sha256}" + bytes(range(40)), name). */
        uint8_t want[64], mac[MP__HMAC_MAX];
        size_t wn = unhex(mac_hex, want), mn = 0;
        ASSERT_OK(mp__hmac(d, KEY, strlen(KEY), body, 48, mac, &mn));
        cr_assert_eq(mn, wn);
        cr_assert(!memcmp(mac, want, wn), "HMAC-%s differs from Python's", name);
    }
}

Test(auth, sha384_reply_and_hmac, .timeout = TEST_TIMEOUT)
{
    check_digest("sha384", "98030e6b3d09dd7eb5b7cf5f0a8c32b12ddb22d4d698e98b35f0f4690116fa5bcd"
                           "125f45b2d89a7fc2f902c009a6f961");
}

Test(auth, sha3_replies_where_the_platform_has_sha3, .timeout = TEST_TIMEOUT)
{
    uint8_t mac[MP__HMAC_MAX];
    size_t n;
    if (mp__hmac(MP__DIGEST_SHA3_256, "k", 1, "m", 1, mac, &n) == MP_ENOSYS)
        cr_skip_test("this platform's crypto has no SHA-3: %s", mp_last_error_detail());
    check_digest("sha3_256", "4267b9809ac390ef0e6594601ec515dd8b6c2134c01fbdcd90fcc05750ec16ce");
    check_digest("sha3_384", "8f7c0b025ef0a88432bc2c75e9272002839245e5afc9d59271c99679e10afcd3bf"
                             "fa25c63dae3cfdeab6bcf4de17d2ac");
}

/* answer_challenge against a hostile or failing listener. */
static void answer_expect_auth_failure(const void *first, size_t n, const char *verdict)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    raw_frame(raw, first, n);
    if (verdict) raw_frame(raw, verdict, strlen(verdict));
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    ASSERT_RC(mp__auth_answer(c, &a), MP_EAUTH);
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(auth, answer_refuses_bad_challenges, .timeout = TEST_TIMEOUT)
{
    answer_expect_auth_failure("#CHALLENGE#0123456789012345678", 30, NULL); /* 19 bytes */
    answer_expect_auth_failure("#CHALLENGX#01234567890123456789", 31, NULL);
    answer_expect_auth_failure("", 0, NULL);
    /* 40 bytes without a digest prefix: 3.12's _create_response refuses. */
    answer_expect_auth_failure("#CHALLENGE#0123456789012345678901234567890123456789", 51, NULL);
    uint8_t big[300];
    memset(big, 'A', sizeof big);
    memcpy(big, "#CHALLENGE#", 11);
    answer_expect_auth_failure(big, sizeof big, NULL); /* over the 256-byte bound */
    cr_assert(strstr(mp_last_error_detail(), "256"), "%s", mp_last_error_detail());
}

Test(auth, answer_sees_failure_verdict, .timeout = TEST_TIMEOUT)
{
    uint8_t ch[11 + 48];
    memcpy(ch, "#CHALLENGE#", 11);
    modern_challenge_body(ch + 11);
    answer_expect_auth_failure(ch, sizeof ch, "#FAILURE#");
    answer_expect_auth_failure(ch, sizeof ch, "#WELCOME#!");
}

Test(auth, peer_closing_mid_handshake_is_an_auth_failure, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    mp__stream_close(raw);
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    ASSERT_RC(mp__auth_deliver(c, &a, NULL), MP_EAUTH);
    mp_conn_free(c);
}

Test(auth, stalled_peer_times_out_under_a_deadline, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    /* Half a frame, then silence. */
    raw_write(raw, "\0\0", 2);
    mp__conn_set_deadline(c, 200);
    mp__auth_t a = key_auth(MP__DIGEST_SHA256);
    ASSERT_RC(mp__auth_answer(c, &a), MP_ETIMEDOUT);
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(auth, constant_time_compare_and_lookup, .timeout = TEST_TIMEOUT)
{
    cr_assert(mp__auth_equal("abcd", "abcd", 4));
    cr_assert(!mp__auth_equal("abcd", "abce", 4));
    cr_assert(!mp__auth_equal("xbcd", "abcd", 4));
    cr_assert(mp__auth_equal("", "", 0));
    mp__digest_t d;
    ASSERT_RC(mp__digest_lookup("sha512", 6, &d), MP_EINVAL);
    ASSERT_RC(mp__digest_lookup("sha25", 5, &d), MP_EINVAL);
    ASSERT_OK(mp__digest_lookup("md5", 3, &d));
    cr_assert_eq(d, MP__DIGEST_MD5);
}
