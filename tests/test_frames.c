/* Hostile and corrupt frames, written raw under a connection. */
#include <stdlib.h>
#include <string.h>

#include "connection_internal.h"
#include "helpers.h"

/* A connection reading from a raw stream the test writes bytes into. */
static void raw_pair(mp_conn_t **c, mp__stream_t **raw)
{
    mp__stream_t *s;
    ASSERT_OK(mp__stream_pair(&s, raw, true));
    ASSERT_OK(mp__conn_wrap(s, true, true, c));
}

static void raw_write(mp__stream_t *raw, const void *p, size_t n)
{
    mp_iov_t v = {(void *)p, n};
    ASSERT_OK(mp__stream_write(raw, &v, 1));
}

Test(frames, bounded_connection_refuses_oversized_message, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    ASSERT_OK(mp_conn_set_max_message(c, 1024));
    /* Announces 2^62 bytes: refused from the header alone. */
    static const unsigned char hdr[12] = {0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0};
    raw_write(raw, hdr, sizeof hdr);
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EMSGSIZE);
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EPROTO);
    cr_assert_eq(mp_conn_poll(c, 0), 1, "a broken connection does not block");
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(frames, huge_unbounded_prefix_then_eof_is_a_protocol_error, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    /* 2^40 bytes announced, 3 sent: the reader must not allocate 1 TiB. */
    static const unsigned char hdr[15] = {0xff, 0xff, 0xff, 0xff, 0,   0,   1,  0,
                                          0,    0,    0,    0,    'a', 'b', 'c'};
    raw_write(raw, hdr, sizeof hdr);
    mp__stream_close(raw);
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EPROTO);
    mp_conn_free(c);
}

Test(frames, negative_length_is_a_protocol_error, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    static const unsigned char hdr[4] = {0xff, 0xff, 0xff, 0xfb};
    raw_write(raw, hdr, sizeof hdr);
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EPROTO);
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(frames, truncated_frames, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    static const unsigned char part[6] = {0, 0, 0, 100, 'x', 'y'};
    raw_write(raw, part, sizeof part);
    mp__stream_close(raw);
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EPROTO);
    mp_conn_free(c);

    raw_pair(&c, &raw);
    raw_write(raw, part, 2); /* half a header */
    mp__stream_close(raw);
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EPROTO);
    mp_conn_free(c);
}

Test(frames, cpython_escape_accepted_for_small_sizes, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    static const unsigned char f[15] = {0xff, 0xff, 0xff, 0xff, 0,   0,   0,  0,
                                        0,    0,    0,    3,    'a', 'b', 'c'};
    raw_write(raw, f, sizeof f);
    expect_msg(c, "abc");
    mp_conn_free(c);
    mp__stream_close(raw);
}

Test(frames, writer_uses_cpython_header, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp__stream_t *raw;
    raw_pair(&c, &raw);
    ASSERT_OK(mp_conn_send_bytes(c, "hi", 2));
    unsigned char got[6];
    size_t have = 0;
    while (have < sizeof got) {
        size_t n = 0;
        ASSERT_OK(mp__stream_read(raw, got + have, sizeof got - have, &n, JOIN_MS));
        have += n;
    }
    static const unsigned char want[6] = {0, 0, 0, 2, 'h', 'i'};
    cr_assert(!memcmp(got, want, sizeof want));
    mp_conn_free(c);
    mp__stream_close(raw);
}
