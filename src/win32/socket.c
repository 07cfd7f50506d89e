/* TCP for listeners and clients: Winsock sockets, overlapped, never
 * inheritable, Nagle off (a message is one write; waiting helps nothing). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "win32.h"

#include <ws2tcpip.h>

struct mp__w32_tcp_server {
    SOCKET sock;
};

static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static volatile LONG wsa_started;

static BOOL CALLBACK start_wsa(PINIT_ONCE once, void *param, void **ctx)
{
    (void)once;
    (void)ctx;
    WSADATA wd;
    int e = WSAStartup(MAKEWORD(2, 2), &wd);
    if (e) {
        *(int *)param = mp__w32_fail("WSAStartup", (DWORD)e);
        return FALSE;
    }
    InterlockedExchange(&wsa_started, 1);
    return TRUE;
}

int mp__w32_wsa_init(void)
{
    int rc = MP_ESYS;
    return InitOnceExecuteOnce(&wsa_once, start_wsa, &rc, NULL) ? 0 : rc;
}

bool mp__w32_is_socket(HANDLE h)
{
    if (!wsa_started) return false;
    int type = 0, len = sizeof type;
    return !getsockopt((SOCKET)h, SOL_SOCKET, SO_TYPE, (char *)&type, &len);
}

static int wsa_fail(const char *call)
{
    return mp__w32_fail(call, (DWORD)WSAGetLastError());
}

static int fail_at(int code, const char *what, const char *where)
{
    int e = WSAGetLastError();
    return mp__fail(code, "%s(%s) (error %d)", what, where, e);
}

static int set_blocking(SOCKET s, bool on)
{
    u_long nb = on ? 0 : 1;
    return ioctlsocket(s, (long)FIONBIO, &nb) ? wsa_fail("ioctlsocket(FIONBIO)") : 0;
}

static int socket_new(int family, SOCKET *out)
{
    int rc = mp__w32_wsa_init();
    if (rc) return rc;
    SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) return wsa_fail("WSASocketW");
    *out = s;
    return 0;
}

static int nodelay(SOCKET s)
{
    BOOL one = TRUE;
    if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one))
        return wsa_fail("setsockopt(TCP_NODELAY)");
    return 0;
}

static int resolve(const mp__addr_t *a, bool passive, struct addrinfo **res)
{
    int rc = mp__w32_wsa_init();
    if (rc) return rc;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)a->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int e = getaddrinfo(a->host, port, &hints, res);
    if (!e) return 0;
    if (e == WSA_NOT_ENOUGH_MEMORY || e == EAI_MEMORY)
        return mp__fail(MP_ENOMEM, "getaddrinfo(%s): out of memory", a->host);
    return mp__fail(MP_ENOTFOUND, "getaddrinfo(%s): cannot resolve it (error %d)", a->host, e);
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const IN6_ADDR *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        return !memcmp(a6->s6_addr, one, 16) ||
               (!memcmp(a6->s6_addr, v4mapped, 12) && a6->s6_addr[12] == 127);
    }
    return false;
}

/* "tcp://127.0.0.1:4242" or "tcp://[::1]:4242" for a bound socket. */
static int tcp_address(SOCKET s, char **out)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (getsockname(s, (struct sockaddr *)&ss, &len)) return wsa_fail("getsockname");
    char host[INET6_ADDRSTRLEN];
    unsigned port;
    void *raw;
    if (ss.ss_family == AF_INET6) {
        raw = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        raw = &((struct sockaddr_in *)&ss)->sin_addr;
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (!inet_ntop(ss.ss_family, raw, host, sizeof host)) return wsa_fail("inet_ntop");
    char buf[INET6_ADDRSTRLEN + 16];
    snprintf(buf, sizeof buf, ss.ss_family == AF_INET6 ? "tcp://[%s]:%u" : "tcp://%s:%u", host,
             port);
    *out = mp__strdup(buf);
    return *out ? 0 : MP_ENOMEM;
}

static int listen_on(SOCKET s, const struct addrinfo *ai, int backlog, const char *where)
{
    /* Exclusive: on Windows SO_REUSEADDR would let another socket take the
     * port over from us. */
    BOOL one = TRUE;
    if (setsockopt(s, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one))
        return wsa_fail("setsockopt(SO_EXCLUSIVEADDRUSE)");
    if (bind(s, ai->ai_addr, (int)ai->ai_addrlen)) {
        int e = WSAGetLastError();
        if (e == WSAEADDRINUSE || e == WSAEACCES)
            return fail_at(MP_EEXIST, "bind: address in use", where);
        return wsa_fail("bind");
    }
    if (listen(s, backlog)) return wsa_fail("listen");
    /* accept() after select() must not block if the peer went away. */
    return set_blocking(s, false);
}

int mp__w32_tcp_listen(const mp__addr_t *a, int backlog, bool allow_remote,
                       mp__w32_tcp_server_t **out, char **address)
{
    struct addrinfo *res;
    int rc = resolve(a, true, &res);
    if (rc) return rc;
    rc = mp__fail(MP_ENOTFOUND, "%s: no address to listen on", a->host);
    SOCKET s = INVALID_SOCKET;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!allow_remote && !is_loopback(ai->ai_addr)) {
            rc = mp__fail(MP_EPERM,
                          "tcp://%s: not a loopback address; listening on it needs "
                          "mp_listener_opts_t.allow_remote",
                          a->host);
            continue;
        }
        rc = socket_new(ai->ai_family, &s);
        if (rc) continue;
        rc = listen_on(s, ai, backlog, a->host);
        if (!rc) rc = tcp_address(s, address);
        if (!rc) break;
        closesocket(s);
        s = INVALID_SOCKET;
    }
    freeaddrinfo(res);
    if (rc) return rc;
    *out = mp__calloc(1, sizeof **out);
    if (!*out) {
        closesocket(s);
        free(*address);
        return MP_ENOMEM;
    }
    (*out)->sock = s;
    return 0;
}

/* Waits until s is readable (write=false) or connected (write=true).
 * 1 ready, 0 timed out, <0 error. A failed connect counts as ready; the
 * caller reads SO_ERROR. */
static int wait_socket(SOCKET s, bool write, long timeout_ms)
{
    fd_set fds, exc;
    FD_ZERO(&fds);
    FD_ZERO(&exc);
    FD_SET(s, &fds);
    FD_SET(s, &exc);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int n = select(0, write ? NULL : &fds, write ? &fds : NULL, &exc, timeout_ms < 0 ? NULL : &tv);
    return n < 0 ? wsa_fail("select") : n > 0;
}

/* An accepted or connected socket as a stream: blocking, not inheritable,
 * Nagle off. */
static int adopt_socket(SOCKET s, mp__stream_t **st)
{
    /* accept() copies the listener's flags: inheritable (under Wine at
     * least) and non-blocking. */
    int rc = SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0)
                 ? 0
                 : mp__fail_os("SetHandleInformation");
    if (!rc) rc = set_blocking(s, true);
    if (!rc) rc = nodelay(s);
    if (!rc) rc = mp__w32_stream_new((HANDLE)s, MP__W32_SOCKET, st);
    if (rc) closesocket(s);
    return rc;
}

int mp__w32_tcp_accept(mp__w32_tcp_server_t *t, long timeout_ms, mp__stream_t **st)
{
    uint64_t start = mp__os_now_ns();
    for (;;) {
        int ready = wait_socket(t->sock, false, mp__timeout_left(timeout_ms, start));
        if (ready < 0) return ready;
        if (!ready) return mp__fail(MP_ETIMEDOUT, "accept: no peer within %ld ms", timeout_ms);
        SOCKET s = accept(t->sock, NULL, NULL);
        if (s != INVALID_SOCKET) return adopt_socket(s, st);
        /* The peer left before we took it: wait for the next. */
        int e = WSAGetLastError();
        if (e != WSAEWOULDBLOCK && e != WSAECONNRESET && e != WSAEINTR) return wsa_fail("accept");
    }
}

void mp__w32_tcp_close(mp__w32_tcp_server_t *t)
{
    if (!t) return;
    closesocket(t->sock);
    free(t);
}

/* connect() bounded by timeout_ms: non-blocking, then back to blocking. */
static int connect_socket(SOCKET s, const struct addrinfo *ai, long timeout_ms, const char *where)
{
    int rc = set_blocking(s, false);
    if (rc) return rc;
    if (connect(s, ai->ai_addr, (int)ai->ai_addrlen)) {
        int e = WSAGetLastError();
        if (e != WSAEWOULDBLOCK && e != WSAEINPROGRESS) {
            if (e == WSAECONNREFUSED)
                return fail_at(MP_ENOTFOUND, "connect: nobody listens at", where);
            return wsa_fail("connect");
        }
        int ready = wait_socket(s, true, timeout_ms);
        if (ready < 0) return ready;
        if (!ready) return mp__fail(MP_ETIMEDOUT, "connect(%s): no answer in time", where);
        int err = 0, len = sizeof err;
        if (getsockopt(s, SOL_SOCKET, SO_ERROR, (char *)&err, &len))
            return wsa_fail("getsockopt(SO_ERROR)");
        if (err) {
            WSASetLastError(err);
            if (err == WSAECONNREFUSED)
                return fail_at(MP_ENOTFOUND, "connect: nobody listens at", where);
            return wsa_fail("connect");
        }
    }
    return 0;
}

int mp__w32_tcp_connect(const mp__addr_t *a, long timeout_ms, mp__stream_t **st)
{
    struct addrinfo *res;
    int rc = resolve(a, false, &res);
    if (rc) return rc;
    char where[300];
    snprintf(where, sizeof where, "tcp://%s:%u", a->host, (unsigned)a->port);
    uint64_t start = mp__os_now_ns();
    rc = mp__fail(MP_ENOTFOUND, "%s: no address", where);
    SOCKET s = INVALID_SOCKET;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = socket_new(ai->ai_family, &s);
        if (!rc) rc = connect_socket(s, ai, mp__timeout_left(timeout_ms, start), where);
        if (!rc) break;
        if (s != INVALID_SOCKET) closesocket(s);
        s = INVALID_SOCKET;
        if (rc == MP_ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    return rc ? rc : adopt_socket(s, st);
}
