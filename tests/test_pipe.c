/* Pipe and connections: framing, direction, EOF, bounds, big messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

/* The seed program: a sender sends url_0..url_9 and "END". */
static int sender(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    char msg[32];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(msg, sizeof msg, "url_%d", i);
        if (mp_conn_send_bytes(c, msg, (size_t)n)) return 11;
    }
    return mp_conn_send_bytes(c, "END", 3) ? 12 : 0;
}

Test(pipe, seed_sender_receiver_in_order, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    mp_process_t *p = start_proc(sender, a);
    mp_args_free(a);
    char want[32];
    for (int i = 0; i < 10; i++) {
        snprintf(want, sizeof want, "url_%d", i);
        expect_msg(r, want);
    }
    expect_msg(r, "END");
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_conn_free(r);
    mp_conn_free(w);
}

/* Echoes each message back, upper-cased, until EOF. */
static int echo_upper(mp_args_t *a)
{
    mp_conn_t *c;
    if (mp_args_conn(a, 0, &c)) return 10;
    for (;;) {
        void *buf;
        size_t n;
        int rc = mp_conn_recv_bytes(c, &buf, &n);
        if (rc == MP_EOF) return 0;
        if (rc) return 11;
        for (size_t i = 0; i < n; i++) {
            char *ch = (char *)buf + i;
            if (*ch >= 'a' && *ch <= 'z') *ch = (char)(*ch - 'a' + 'A');
        }
        rc = mp_conn_send_bytes(c, buf, n);
        mp_free(buf);
        if (rc) return 12;
    }
}

static mp_process_t *start_echo(mp_conn_t **mine)
{
    mp_conn_t *child;
    ASSERT_OK(mp_pipe(mine, &child, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(child)));
    mp_process_t *p = start_proc(echo_upper, a);
    mp_args_free(a);
    mp_conn_free(child);
    return p;
}

Test(pipe, duplex_both_ways, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *c;
    mp_process_t *p = start_echo(&c);
    ASSERT_OK(mp_conn_send_bytes(c, "hello", 5));
    expect_msg(c, "HELLO");
    mp_iov_t parts[3] = {{"ab", 2}, {NULL, 0}, {"cd", 2}};
    ASSERT_OK(mp_conn_sendv(c, parts, 3));
    expect_msg(c, "ABCD");
    ASSERT_OK(mp_conn_send_bytes(c, NULL, 0));
    expect_msg(c, "");
    ASSERT_OK(mp_conn_close(c));
    cr_assert_eq(join_code(p), 0);
    ASSERT_RC(mp_conn_send_bytes(c, "x", 1), MP_ECLOSED);
    mp_process_free(p);
    mp_conn_free(c);
}

Test(pipe, simplex_wrong_direction, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    cr_assert(mp_conn_readable(r) && !mp_conn_writable(r));
    cr_assert(!mp_conn_readable(w) && mp_conn_writable(w));
    ASSERT_RC(mp_conn_send_bytes(r, "x", 1), MP_EPERM);
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(w, &buf, &n), MP_EPERM);
    ASSERT_RC(mp_conn_poll(w, 0), MP_EPERM);
    ASSERT_OK(mp_conn_send_bytes(w, "ok", 2));
    expect_msg(r, "ok");
    mp_conn_free(r);
    mp_conn_free(w);
}

Test(pipe, eof_after_peer_process_exits, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    mp_process_t *p = start_proc(sender, a);
    mp_args_free(a);
    mp_conn_free(w); /* the child now holds the only writer */
    for (int i = 0; i < 11; i++) {
        void *buf;
        size_t n;
        ASSERT_OK(mp_conn_recv_bytes(r, &buf, &n));
        mp_free(buf);
    }
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(r, &buf, &n), MP_EOF);
    ASSERT_RC(mp_conn_recv_bytes(r, &buf, &n), MP_EOF);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_conn_free(r);
}

Test(pipe, write_to_a_dead_peer_is_eof_not_sigpipe, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    mp_conn_free(b);
    char big[65536] = {0};
    int rc = 0;
    for (int i = 0; i < 64 && !rc; i++)
        rc = mp_conn_send_bytes(a, big, sizeof big);
    ASSERT_RC(rc, MP_EOF);
    mp_conn_free(a);
}

Test(pipe, recv_into_short_buffer_keeps_message, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    ASSERT_OK(mp_conn_send_bytes(w, "0123456789", 10));
    ASSERT_OK(mp_conn_send_bytes(w, "next", 4));
    char small[4];
    size_t n = 0;
    ASSERT_RC(mp_conn_recv_bytes_into(r, small, sizeof small, &n), MP_EMSGSIZE);
    cr_assert_eq(n, 10, "the size of the message is reported");
    cr_assert_eq(mp_conn_poll(r, 0), 1);
    char big[16];
    ASSERT_OK(mp_conn_recv_bytes_into(r, big, sizeof big, &n));
    cr_assert_eq(n, 10);
    cr_assert(!memcmp(big, "0123456789", 10));
    expect_msg(r, "next");
    mp_conn_free(r);
    mp_conn_free(w);
}

Test(pipe, poll_with_timeout, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    cr_assert_eq(mp_conn_poll(r, 0), 0);
    cr_assert_eq(mp_conn_poll(r, 30), 0);
    ASSERT_OK(mp_conn_send_bytes(w, "x", 1));
    cr_assert_eq(mp_conn_poll(r, MP_FOREVER), 1);
    cr_assert_eq(mp_conn_poll(r, 0), 1, "polling does not consume");
    expect_msg(r, "x");
    cr_assert_eq(mp_conn_poll(r, 0), 0);
    mp_conn_free(w);
    cr_assert_eq(mp_conn_poll(r, JOIN_MS), 1, "EOF is readable");
    mp_conn_free(r);
}

static int count_up(mp_args_t *a)
{
    mp_conn_t *c;
    int64_t n;
    if (mp_args_conn(a, 0, &c) || mp_args_int(a, 1, &n)) return 10;
    for (int64_t i = 0; i < n; i++)
        if (mp_conn_send_bytes(c, &i, sizeof i)) return 11;
    return 0;
}

Test(pipe, ten_thousand_messages_in_order, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    ASSERT_OK(mp_args_add_int(a, 10000));
    mp_process_t *p = start_proc(count_up, a);
    mp_args_free(a);
    mp_conn_free(w);
    for (int64_t i = 0; i < 10000; i++) {
        int64_t v = -1;
        size_t n = 0;
        ASSERT_OK(mp_conn_recv_bytes_into(r, &v, sizeof v, &n));
        cr_assert_eq(n, sizeof v);
        cr_assert_eq(v, i, "message %lld arrived as %lld", (long long)i, (long long)v);
    }
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(r, &buf, &n), MP_EOF);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_conn_free(r);
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

Test(pipe, sixty_four_mib_round_trip, .timeout = TEST_TIMEOUT)
{
    size_t size = (size_t)64 << 20;
    unsigned char *big = malloc(size);
    cr_assert_not_null(big);
    for (size_t i = 0; i < size; i++)
        big[i] = (unsigned char)(i * 2654435761u >> 13);
    uint64_t sum = checksum(big, size);
    mp_conn_t *c;
    mp_process_t *p = start_echo(&c);
    /* Lower-case letters change on the way back; compare with that. */
    for (size_t i = 0; i < size; i++)
        if (big[i] >= 'a' && big[i] <= 'z') big[i] = (unsigned char)(big[i] - 'a' + 'A');
    uint64_t want = checksum(big, size);
    (void)sum;
    ASSERT_OK(mp_conn_send_bytes(c, big, size));
    void *back;
    size_t n;
    ASSERT_OK(mp_conn_recv_bytes(c, &back, &n));
    cr_assert_eq(n, size);
    cr_assert_eq(checksum(back, n), want);
    mp_free(back);
    free(big);
    mp_conn_free(c);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
}

Test(pipe, closed_and_freed_handles, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_OK(mp_conn_close(a));
    ASSERT_OK(mp_conn_close(a)); /* closing twice is harmless */
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(a, &buf, &n), MP_ECLOSED);
    ASSERT_RC(mp_conn_poll(a, 0), MP_ECLOSED);
    ASSERT_RC(mp_conn_recv_bytes(b, &buf, &n), MP_EOF);
    ASSERT_RC(mp_pipe(NULL, &b, true), MP_EINVAL);
    ASSERT_RC(mp_conn_recv_bytes(NULL, &buf, &n), MP_EINVAL);
    mp_conn_free(a);
    mp_conn_free(b);
}
