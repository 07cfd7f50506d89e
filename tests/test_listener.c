/* Listener and Client: addresses, C to C across processes, the authkey
 * handshake with wrong keys, hostile and stalled peers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "connection_internal.h"
#include "helpers.h"

#define KEY "listener test key"
#define KEYLEN (sizeof KEY - 1)
/* Long enough for a loaded machine or Wine, short enough to keep tests
 * quick where a timeout is the expected outcome. */
#define STALL_MS 300L

static mp_listener_t *listen_at(const char *address, const void *key, size_t keylen)
{
    mp_listener_t *l = NULL;
    ASSERT_OK(mp_listener_create(&l, address, key, keylen));
    cr_assert(mp_listener_address(l) != NULL);
    return l;
}

/* Child: connects to args[0] with key args[1] (empty bytes: no key),
 * sends args[2], expects it back upper-cased, and reports by exit code. */
static int client_round_trip(mp_args_t *a)
{
    const char *address, *msg;
    const void *key;
    size_t keylen;
    if (mp_args_str(a, 0, &address) || mp_args_bytes(a, 1, &key, &keylen) ||
        mp_args_str(a, 2, &msg))
        return 10;
    mp_conn_t *c;
    int rc = mp_client_connect(address, keylen ? key : NULL, keylen, &c);
    if (rc == MP_EAUTH) return 20;
    if (rc) return 11;
    if (mp_conn_send_bytes(c, msg, strlen(msg))) return 12;
    char buf[256];
    size_t n;
    if (mp_conn_recv_bytes_into(c, buf, sizeof buf, &n)) return 13;
    for (size_t i = 0; i < n; i++)
        if (buf[i] != (msg[i] >= 'a' && msg[i] <= 'z' ? msg[i] - 'a' + 'A' : msg[i])) return 14;
    mp_conn_free(c);
    return 0;
}

static mp_process_t *start_client(const char *address, const void *key, size_t keylen,
                                  const char *msg)
{
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, address));
    ASSERT_OK(mp_args_add_bytes(a, key ? key : "", keylen));
    ASSERT_OK(mp_args_add_str(a, msg));
    mp_process_t *p = start_proc(client_round_trip, a);
    mp_args_free(a);
    return p;
}

/* Accepts one peer and answers its message upper-cased. */
static void serve_one(mp_listener_t *l)
{
    mp_conn_t *c;
    ASSERT_OK(mp_listener_accept(l, JOIN_MS, &c));
    void *buf;
    size_t n;
    ASSERT_OK(mp_conn_recv_bytes(c, &buf, &n));
    for (size_t i = 0; i < n; i++) {
        char *ch = (char *)buf + i;
        if (*ch >= 'a' && *ch <= 'z') *ch = (char)(*ch - 'a' + 'A');
    }
    ASSERT_OK(mp_conn_send_bytes(c, buf, n));
    mp_free(buf);
    mp_conn_free(c);
}

static void round_trip_at(const char *address)
{
    mp_listener_t *l = listen_at(address, KEY, KEYLEN);
    mp_process_t *p = start_client(mp_listener_address(l), KEY, KEYLEN, "hello listener");
    serve_one(l);
    cr_assert_eq(join_code(p), 0, "the client process failed");
    mp_process_free(p);
    mp_listener_free(l);
}

Test(listener, private_address_round_trip_with_a_child, .timeout = TEST_TIMEOUT)
{
    round_trip_at(NULL);
}

Test(listener, tcp_round_trip_with_a_child, .timeout = TEST_TIMEOUT)
{
    round_trip_at("tcp://127.0.0.1:0");
}

/* Child: connects to args[0] and echoes every message until EOF. */
static int client_echo(mp_args_t *a)
{
    const char *address;
    if (mp_args_str(a, 0, &address)) return 10;
    mp_conn_t *c;
    if (mp_client_connect(address, KEY, KEYLEN, &c)) return 11;
    for (;;) {
        void *buf;
        size_t n;
        int rc = mp_conn_recv_bytes(c, &buf, &n);
        if (rc == MP_EOF) break;
        if (rc) return 12;
        rc = mp_conn_send_bytes(c, buf, n);
        mp_free(buf);
        if (rc) return 13;
    }
    mp_conn_free(c);
    return 0;
}

/* Sizes around the connection's 64 KiB read buffer and the pipe buffers:
 * on Windows the private address is a message-mode pipe, where a message
 * larger than a read arrives in parts (ERROR_MORE_DATA). */
Test(listener, message_sizes_round_trip_on_the_private_address, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at(NULL, KEY, KEYLEN);
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, mp_listener_address(l)));
    mp_process_t *p = start_proc(client_echo, a);
    mp_args_free(a);
    mp_conn_t *c;
    ASSERT_OK(mp_listener_accept(l, JOIN_MS, &c));
    static const size_t sizes[] = {0, 1, 255, 65535, 65536, 65537, 100000, 3u << 20, 0, 7};
    uint8_t *out = malloc(3u << 20), *in = malloc(3u << 20);
    cr_assert(out && in);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], got = 0;
        for (size_t k = 0; k < n; k++)
            out[k] = (uint8_t)(k * 31 + i);
        /* Two buffers: one message all the same. */
        mp_iov_t v[2] = {{out, n / 2}, {out + n / 2, n - n / 2}};
        ASSERT_OK(mp_conn_sendv(c, v, 2));
        if (n > 1) {
            /* A short buffer first: the size comes back, the message stays. */
            ASSERT_RC(mp_conn_recv_bytes_into(c, in, n - 1, &got), MP_EMSGSIZE);
            cr_assert_eq(got, n);
        }
        ASSERT_OK(mp_conn_recv_bytes_into(c, in, 3u << 20, &got));
        cr_assert_eq(got, n, "message %zu: %zu bytes back, sent %zu", i, got, n);
        cr_assert(!memcmp(in, out, n), "message %zu of %zu bytes came back changed", i, n);
    }
    free(out);
    free(in);
    mp_conn_free(c);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_listener_free(l);
}

Test(listener, tcp_port_zero_reports_the_real_port, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at("tcp://:0", KEY, KEYLEN);
    const char *addr = mp_listener_address(l);
    unsigned port = 0;
    cr_assert_eq(sscanf(addr, "tcp://127.0.0.1:%u", &port), 1, "address %s", addr);
    cr_assert(port > 0 && port < 65536, "address %s", addr);
    mp_listener_free(l);
}

Test(listener, ipv6_loopback, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = NULL;
    int rc = mp_listener_create(&l, "tcp://[::1]:0", KEY, KEYLEN);
    if (rc) cr_skip_test("no IPv6 loopback here: %s", mp_last_error_detail());
    cr_assert(!strncmp(mp_listener_address(l), "tcp://[::1]:", 12), "%s", mp_listener_address(l));
    mp_process_t *p = start_client(mp_listener_address(l), KEY, KEYLEN, "over ipv6");
    serve_one(l);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_listener_free(l);
}

#if !defined(_WIN32)
Test(listener, unix_socket_round_trip_and_cleanup, .timeout = TEST_TIMEOUT)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/mproc-test-%lld.sock", (long long)mp_getpid());
    char address[80];
    snprintf(address, sizeof address, "unix:%s", path);
    round_trip_at(address);
    struct stat st;
    cr_assert(stat(path, &st) != 0, "the socket file outlived its listener");
}

Test(listener, private_address_is_removed_on_free, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at(NULL, KEY, KEYLEN);
    const char *addr = mp_listener_address(l);
    cr_assert(!strncmp(addr, "unix:/", 6), "%s", addr);
    char path[256], dir[256];
    snprintf(path, sizeof path, "%s", addr + 5);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    struct stat st;
    cr_assert_eq(stat(dir, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0700, "private directory mode %o", st.st_mode & 0777);
    mp_listener_free(l);
    cr_assert(stat(path, &st) != 0 && stat(dir, &st) != 0, "%s outlived its listener", dir);
}

/* Under fork a child holds a copy of the listener; freeing it there must
 * not remove the socket file the parent still listens on. */
static mp_listener_t *forked_copy;

static int free_forked_copy(mp_args_t *a)
{
    (void)a;
    if (!forked_copy) return 10;
    mp_listener_free(forked_copy);
    return 0;
}

Test(listener, a_forked_child_freeing_its_copy_keeps_the_address, .timeout = TEST_TIMEOUT)
{
    if (mp_get_start_method() != MP_START_FORK)
        cr_skip_test("only a forked child has a copy of the listener");
    forked_copy = listen_at(NULL, KEY, KEYLEN);
    mp_process_t *p = start_proc(free_forked_copy, NULL);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    struct stat st;
    cr_assert_eq(stat(mp_listener_address(forked_copy) + 5, &st), 0,
                 "the child removed the parent's socket file");
    mp_process_t *c = start_client(mp_listener_address(forked_copy), KEY, KEYLEN, "still here");
    serve_one(forked_copy);
    cr_assert_eq(join_code(c), 0);
    mp_process_free(c);
    mp_listener_free(forked_copy);
}

Test(listener, pipe_addresses_are_windows_only, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l;
    ASSERT_RC(mp_listener_create(&l, "pipe:mproc-test", KEY, KEYLEN), MP_ENOSYS);
    cr_assert(strstr(mp_last_error_detail(), "Windows"), "%s", mp_last_error_detail());
    mp_conn_t *c;
    ASSERT_RC(mp_client_connect("pipe:mproc-test", KEY, KEYLEN, &c), MP_ENOSYS);
}
#else
Test(listener, named_pipe_round_trip, .timeout = TEST_TIMEOUT)
{
    char address[80];
    snprintf(address, sizeof address, "pipe:mproc-test-%lld", (long long)mp_getpid());
    round_trip_at(address);
}

Test(listener, unix_addresses_are_posix_only, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l;
    ASSERT_RC(mp_listener_create(&l, "unix:/tmp/x.sock", KEY, KEYLEN), MP_ENOSYS);
}
#endif

Test(listener, malformed_addresses, .timeout = TEST_TIMEOUT)
{
    static const char *const bad[] = {
        "",
        "tcp://",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:-1",
        "tcp://127.0.0.1:12a",
        "tcp://127.0.0.1:123456",
        "tcp://::1:80",
        "tcp://[::1:80",
        "tcp://[::1]80",
        "tcp://[]:80",
        "tcp://a b:80",
        "tcp://host/x:80",
        "unix:",
        "pipe:",
        "pipe:a\\b",
        "udp://127.0.0.1:80",
        "127.0.0.1:80",
        "TCP://127.0.0.1:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mp_listener_t *l = NULL;
        int rc = mp_listener_create(&l, bad[i], KEY, KEYLEN);
        cr_assert_eq(rc, MP_EINVAL, "\"%s\" -> %s", bad[i], mp_err_name(rc));
        cr_assert(strstr(mp_last_error_detail(), "address"), "\"%s\": %s", bad[i],
                  mp_last_error_detail());
        mp_conn_t *c = NULL;
        rc = mp_client_connect(bad[i], KEY, KEYLEN, &c);
        cr_assert_eq(rc, MP_EINVAL, "connect \"%s\" -> %s", bad[i], mp_err_name(rc));
    }
    char longpipe[300] = "pipe:";
    memset(longpipe + 5, 'p', 260);
    longpipe[265] = 0;
    mp_listener_t *l;
    ASSERT_RC(mp_listener_create(&l, longpipe, KEY, KEYLEN), MP_EINVAL);
    mp_conn_t *c;
    ASSERT_RC(mp_client_connect(NULL, KEY, KEYLEN, &c), MP_EINVAL);
    ASSERT_RC(mp_listener_create(&l, NULL, NULL, 3), MP_EINVAL);
    mp_listener_opts_t o = {.authkey = KEY, .keylen = KEYLEN, .digest = "sha512"};
    ASSERT_RC(mp_listener_create_ex(&l, NULL, &o), MP_EINVAL);
}

Test(listener, tcp_safety_switches, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l;
    ASSERT_RC(mp_listener_create(&l, "tcp://127.0.0.1:0", NULL, 0), MP_EPERM);
    cr_assert(strstr(mp_last_error_detail(), "authkey"), "%s", mp_last_error_detail());
    ASSERT_RC(mp_listener_create(&l, "tcp://127.0.0.1:0", "", 0), MP_EPERM);
    ASSERT_RC(mp_listener_create(&l, "tcp://0.0.0.0:0", KEY, KEYLEN), MP_EPERM);
    cr_assert(strstr(mp_last_error_detail(), "allow_remote"), "%s", mp_last_error_detail());

    mp_listener_opts_t o = {.allow_no_authkey = true};
    ASSERT_OK(mp_listener_create_ex(&l, "tcp://127.0.0.1:0", &o));
    mp_listener_free(l);
    mp_listener_opts_t r = {.authkey = KEY, .keylen = KEYLEN, .allow_remote = true};
    ASSERT_OK(mp_listener_create_ex(&l, "tcp://0.0.0.0:0", &r));
    cr_assert(!strncmp(mp_listener_address(l), "tcp://0.0.0.0:", 14), "%s", mp_listener_address(l));
    mp_listener_free(l);
}

Test(listener, connecting_to_nobody_is_not_found, .timeout = TEST_TIMEOUT)
{
    /* Take a free port, then close it: nobody listens there now. */
    mp_listener_t *l = listen_at("tcp://127.0.0.1:0", KEY, KEYLEN);
    char addr[64];
    snprintf(addr, sizeof addr, "%s", mp_listener_address(l));
    mp_listener_free(l);
    mp_conn_t *c;
    ASSERT_RC(mp_client_connect(addr, KEY, KEYLEN, &c), MP_ENOTFOUND);
}

Test(listener, wrong_key_fails_both_sides_and_accept_goes_on, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at(NULL, KEY, KEYLEN);
    mp_process_t *bad = start_client(mp_listener_address(l), "other key", 9, "intruder");
    mp_conn_t *c;
    ASSERT_RC(mp_listener_accept(l, JOIN_MS, &c), MP_EAUTH);
    cr_assert_eq(join_code(bad), 20, "the client with the wrong key did not get MP_EAUTH");
    mp_process_free(bad);
    /* The listener goes on: the next peer with the right key gets in. */
    mp_process_t *good = start_client(mp_listener_address(l), KEY, KEYLEN, "friend");
    serve_one(l);
    cr_assert_eq(join_code(good), 0);
    mp_process_free(good);
    mp_listener_free(l);
}

Test(listener, keyed_client_refuses_a_listener_without_key, .timeout = TEST_TIMEOUT)
{
    /* A listener with no key sends no challenge; the client waits for one
     * and gets the listener's first message instead: not a challenge. */
    mp_listener_t *l = listen_at(NULL, NULL, 0);
    mp_process_t *p = start_client(mp_listener_address(l), KEY, KEYLEN, "hi");
    mp_conn_t *c;
    ASSERT_OK(mp_listener_accept(l, JOIN_MS, &c));
    ASSERT_OK(mp_conn_send_bytes(c, "#WELCOME#", 9));
    cr_assert_eq(join_code(p), 20);
    mp_process_free(p);
    mp_conn_free(c);
    mp_listener_free(l);
}

/* A peer that skips the handshake: a keyless connect to a keyed listener
 * gives the test a framed line to it. The connection waits in the kernel's
 * backlog, so one thread can queue the peer's bytes and then accept. */
static void framed_reply(mp_listener_t *l, const void *reply, size_t n)
{
    mp_conn_t *peer;
    ASSERT_OK(mp_client_connect(mp_listener_address(l), NULL, 0, &peer));
    ASSERT_OK(mp_conn_send_bytes(peer, reply, n));
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_listener_accept(l, JOIN_MS, &c), MP_EAUTH);
    void *buf;
    size_t len;
    ASSERT_OK(mp_conn_recv_bytes(peer, &buf, &len));
    cr_assert(len > 11 && !memcmp(buf, "#CHALLENGE#", 11), "the first frame is the challenge");
    mp_free(buf);
    mp_conn_free(peer);
}

/* A raw byte line to a TCP listener, for what a framed connection cannot
 * send. */
static mp__stream_t *raw_peer(mp_listener_t *l, const void *bytes, size_t n)
{
    unsigned port = 0;
    cr_assert_eq(sscanf(mp_listener_address(l), "tcp://127.0.0.1:%u", &port), 1);
    mp__addr_t a = {.kind = MP__ADDR_TCP, .host = "127.0.0.1", .port = (uint16_t)port};
    mp__stream_t *s;
    bool message;
    ASSERT_OK(mp__stream_connect(&a, JOIN_MS, &s, &message));
    if (n) {
        mp_iov_t v = {(void *)bytes, n};
        ASSERT_OK(mp__stream_write(s, &v, 1));
    }
    return s;
}

static void raw_bytes_refused(mp_listener_t *l, const void *bytes, size_t n, bool close_after)
{
    mp__stream_t *s = raw_peer(l, bytes, n);
    if (close_after) {
        mp__stream_close(s);
        s = NULL;
    }
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_listener_accept(l, JOIN_MS, &c), MP_EAUTH);
    mp__stream_close(s);
}

Test(listener, garbage_and_oversized_preauth_messages, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at("tcp://127.0.0.1:0", KEY, KEYLEN);
    framed_reply(l, "garbage", 7);
    /* 257 bytes: one over CPython's pre-auth bound. */
    char big[257];
    memset(big, 'x', sizeof big);
    framed_reply(l, big, sizeof big);
    cr_assert(strstr(mp_last_error_detail(), "256"), "%s", mp_last_error_detail());
    /* An HTTP request read as a length prefix (0x47455420 bytes), 1 GiB,
     * 2^62 in the long form, a negative length: refused from the header,
     * nothing allocated. Then a truncated frame and a bare close. */
    static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_bytes_refused(l, http, sizeof http - 1, false);
    raw_bytes_refused(l, "\x40\0\0\0", 4, false);
    raw_bytes_refused(l, "\xff\xff\xff\xff\x40\0\0\0\0\0\0\0", 12, false);
    raw_bytes_refused(l, "\xff\xff\xff\xfe", 4, false);
    raw_bytes_refused(l, "\0\0\0\x30#CHAL", 9, true);
    raw_bytes_refused(l, NULL, 0, true);
    /* Through all of that the listener still serves a proper client. */
    mp_process_t *p = start_client(mp_listener_address(l), KEY, KEYLEN, "after the storm");
    serve_one(l);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_listener_free(l);
}

Test(listener, stalled_peer_times_out_and_accept_goes_on, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at("tcp://127.0.0.1:0", KEY, KEYLEN);
    /* Silent after connecting, and silent after half a header. */
    mp__stream_t *quiet = raw_peer(l, NULL, 0);
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_listener_accept(l, STALL_MS, &c), MP_ETIMEDOUT);
    mp__stream_t *half = raw_peer(l, "\0\0", 2);
    ASSERT_RC(mp_listener_accept(l, STALL_MS, &c), MP_ETIMEDOUT);
    mp_process_t *p = start_client(mp_listener_address(l), KEY, KEYLEN, "not stalled");
    serve_one(l);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp__stream_close(quiet);
    mp__stream_close(half);
    mp_listener_free(l);
}

Test(listener, handshake_timeout_bounds_a_blocking_accept, .timeout = TEST_TIMEOUT)
{
    mp_listener_opts_t o = {.authkey = KEY, .keylen = KEYLEN, .handshake_timeout_ms = STALL_MS};
    mp_listener_t *l;
    ASSERT_OK(mp_listener_create_ex(&l, "tcp://127.0.0.1:0", &o));
    mp__stream_t *quiet = raw_peer(l, NULL, 0);
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_listener_accept(l, MP_FOREVER, &c), MP_ETIMEDOUT);
    mp__stream_close(quiet);
    mp_listener_free(l);
}

Test(listener, accept_times_out_without_peers, .timeout = TEST_TIMEOUT)
{
    mp_listener_t *l = listen_at(NULL, KEY, KEYLEN);
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_listener_accept(l, 0, &c), MP_ETIMEDOUT);
    ASSERT_RC(mp_listener_accept(l, 50, &c), MP_ETIMEDOUT);
    mp_listener_free(l);
}

/* Child: connects with the key and sends args[1] bytes, then waits for
 * the listener to hang up. */
static int client_send_size(mp_args_t *a)
{
    const char *address;
    int64_t size;
    if (mp_args_str(a, 0, &address) || mp_args_int(a, 1, &size)) return 10;
    mp_conn_t *c;
    if (mp_client_connect(address, KEY, KEYLEN, &c)) return 11;
    char *buf = calloc(1, (size_t)size);
    int rc = buf ? mp_conn_send_bytes(c, buf, (size_t)size) : -1;
    free(buf);
    if (rc) return 12;
    void *got;
    size_t n;
    rc = mp_conn_recv_bytes(c, &got, &n);
    mp_conn_free(c);
    return rc == MP_EOF ? 0 : 13;
}

Test(listener, bounds_after_the_handshake, .timeout = TEST_TIMEOUT)
{
    mp_listener_opts_t o = {.authkey = KEY, .keylen = KEYLEN, .max_message = 1000};
    mp_listener_t *l;
    ASSERT_OK(mp_listener_create_ex(&l, NULL, &o));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_str(a, mp_listener_address(l)));
    ASSERT_OK(mp_args_add_int(a, 1001));
    mp_process_t *p = start_proc(client_send_size, a);
    mp_args_free(a);
    mp_conn_t *c;
    ASSERT_OK(mp_listener_accept(l, JOIN_MS, &c));
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(c, &buf, &n), MP_EMSGSIZE);
    /* 0 restores the listener's bound, not "unbounded". */
    ASSERT_OK(mp_conn_set_max_message(c, 0));
    mp_conn_free(c);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_listener_free(l);
}
