/* Listening endpoints and client connections on POSIX: TCP (IPv4, IPv6)
 * and Unix-domain stream sockets. Every fd is close-on-exec and never
 * raises SIGPIPE (MSG_NOSIGNAL in stream.c, SO_NOSIGPIPE here). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "posix.h"

#define DEFAULT_BACKLOG SOMAXCONN
#define PRIVATE_NAME "listener"
/* A full Unix-socket backlog has no readiness to wait for: retry after a
 * short pause, within the caller's timeout. */
#define BACKLOG_RETRY_MS 5

struct mp__server {
    int fd;
    char *address; /* what clients connect to, in mproc's syntax */
    char *path;    /* Unix: the socket file this server created */
    char *dir;     /* private address: the directory holding it */
};

static int fail_at(int code, const char *what, const char *where)
{
    int e = errno;
    return mp__fail(code, "%s(%s): %s (errno %d)", what, where, strerror(e), e);
}

/* The MP_E* code errno maps to, with a detail naming the address. */
static int os_fail_at(const char *what, const char *where)
{
    int e = errno;
    int code = mp__fail_os(what);
    errno = e;
    return fail_at(code, what, where);
}

/* A connection attempt nobody answered is "not found", so callers (e.g. a
 * client waiting for its server to come up) can tell it from failures. */
static int connect_failed(const char *where)
{
    if (errno == ECONNREFUSED || errno == ENOENT)
        return fail_at(MP_ENOTFOUND, "connect: nobody listens at", where);
    return os_fail_at("connect", where);
}

static int set_nonblocking(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0)
        return mp__fail_os("fcntl(O_NONBLOCK)");
    return 0;
}

/* Per-socket options: SIGPIPE off where it is a socket option (macOS),
 * Nagle off for TCP (a message is one write; waiting helps nothing). */
static int tune(int fd, int family)
{
    int one = 1;
#if defined(SO_NOSIGPIPE)
    if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) < 0)
        return mp__fail_os("setsockopt(SO_NOSIGPIPE)");
#endif
    if (family != AF_UNIX && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return mp__fail_os("setsockopt(TCP_NODELAY)");
    return 0;
}

static int socket_new(int family, int *out)
{
    int type = SOCK_STREAM;
#if defined(SOCK_CLOEXEC)
    type |= SOCK_CLOEXEC;
#endif
    int fd = socket(family, type, 0);
    if (fd < 0) return mp__fail_os("socket");
    int rc = 0;
#if !defined(SOCK_CLOEXEC)
    rc = mp__fd_cloexec(fd);
#endif
    if (!rc) rc = tune(fd, family);
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static int resolve(const mp__addr_t *a, bool passive, struct addrinfo **res)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)a->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int e = getaddrinfo(a->host, port, &hints, res);
    if (!e) return 0;
    if (e == EAI_SYSTEM) return os_fail_at("getaddrinfo", a->host);
    if (e == EAI_MEMORY) return mp__fail(MP_ENOMEM, "getaddrinfo(%s): out of memory", a->host);
    return mp__fail(MP_ENOTFOUND, "getaddrinfo(%s): %s", a->host, gai_strerror(e));
}

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
    }
    return false;
}

/* "tcp://127.0.0.1:4242" or "tcp://[::1]:4242" for a bound socket. */
static int tcp_address(int fd, char **out)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return mp__fail_os("getsockname");
    char host[INET6_ADDRSTRLEN];
    unsigned port;
    const void *raw;
    if (ss.ss_family == AF_INET6) {
        raw = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        raw = &((struct sockaddr_in *)&ss)->sin_addr;
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (!inet_ntop(ss.ss_family, raw, host, sizeof host)) return mp__fail_os("inet_ntop");
    char buf[INET6_ADDRSTRLEN + 16];
    snprintf(buf, sizeof buf, ss.ss_family == AF_INET6 ? "tcp://[%s]:%u" : "tcp://%s:%u", host,
             port);
    *out = mp__strdup(buf);
    return *out ? 0 : MP_ENOMEM;
}

static int listen_on(int fd, const struct sockaddr *sa, socklen_t len, int backlog,
                     const char *where)
{
    if (bind(fd, sa, len) < 0) {
        if (errno == EADDRINUSE) return fail_at(MP_EEXIST, "bind: address in use", where);
        return os_fail_at("bind", where);
    }
    if (listen(fd, backlog) < 0) return os_fail_at("listen", where);
    /* accept() after poll() must not block if the peer went away between. */
    return set_nonblocking(fd, true);
}

static int open_tcp(mp__server_t *s, const mp__addr_t *a, int backlog, bool allow_remote)
{
    struct addrinfo *res;
    int rc = resolve(a, true, &res);
    if (rc) return rc;
    rc = mp__fail(MP_ENOTFOUND, "%s: no address to listen on", a->host);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!allow_remote && !is_loopback(ai->ai_addr)) {
            rc = mp__fail(MP_EPERM,
                          "tcp://%s: not a loopback address; listening on it needs "
                          "mp_listener_opts_t.allow_remote",
                          a->host);
            continue;
        }
        int fd = -1;
        rc = socket_new(ai->ai_family, &fd);
        if (rc) continue;
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
            rc = mp__fail_os("setsockopt(SO_REUSEADDR)");
        if (!rc) rc = listen_on(fd, ai->ai_addr, ai->ai_addrlen, backlog, a->host);
        if (!rc) rc = tcp_address(fd, &s->address);
        if (!rc) {
            s->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return rc;
}

static int unix_sockaddr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof sun->sun_path)
        return mp__fail(MP_EINVAL, "unix:%s: a socket path has at most %zu bytes", path,
                        sizeof sun->sun_path - 1);
    memcpy(sun->sun_path, path, n);
    return 0;
}

static int open_unix(mp__server_t *s, const char *path, int backlog)
{
    struct sockaddr_un sun;
    int rc = unix_sockaddr(path, &sun);
    int fd = -1;
    if (!rc) rc = socket_new(AF_UNIX, &fd);
    if (rc) return rc;
    rc = listen_on(fd, (struct sockaddr *)&sun, sizeof sun, backlog, path);
    if (!rc) {
        size_t n = strlen(path) + 6;
        s->address = mp__malloc(n);
        s->path = mp__strdup(path);
        if (!s->address || !s->path) rc = MP_ENOMEM;
        if (!rc) snprintf(s->address, n, "unix:%s", path);
        if (rc) unlink(path);
    }
    if (rc) {
        close(fd);
        return rc;
    }
    s->fd = fd;
    return 0;
}

/* A socket in a fresh directory only this user can enter (mkdtemp makes
 * it 0700), as CPython's arbitrary_address('AF_UNIX') in get_temp_dir(). */
static int open_private(mp__server_t *s, int backlog)
{
    const char *base = getenv("TMPDIR");
    struct sockaddr_un probe;
    if (!base || !*base || strlen(base) + 32 >= sizeof probe.sun_path) base = "/tmp";
    size_t n = strlen(base) + sizeof "/mproc-XXXXXX/" PRIVATE_NAME;
    char *dir = mp__malloc(n), *path = mp__malloc(n);
    int rc = dir && path ? 0 : MP_ENOMEM;
    if (!rc) {
        snprintf(dir, n, "%s/mproc-XXXXXX", base);
        if (!mkdtemp(dir)) rc = os_fail_at("mkdtemp", dir);
    }
    if (!rc) {
        snprintf(path, n, "%s/%s", dir, PRIVATE_NAME);
        rc = open_unix(s, path, backlog);
        if (rc) rmdir(dir);
    }
    free(path);
    if (rc) {
        free(dir);
        return rc;
    }
    s->dir = dir;
    return 0;
}

static void server_free(mp__server_t *s)
{
    free(s->address);
    free(s->path);
    free(s->dir);
    free(s);
}

int mp__server_open(const mp__addr_t *a, int backlog, bool allow_remote, mp__server_t **out)
{
    mp__server_t *s = mp__calloc(1, sizeof *s);
    if (!s) return MP_ENOMEM;
    s->fd = -1;
    if (backlog <= 0) backlog = DEFAULT_BACKLOG;
    int rc;
    switch (a->kind) {
    case MP__ADDR_TCP:
        rc = open_tcp(s, a, backlog, allow_remote);
        break;
    case MP__ADDR_UNIX:
        rc = open_unix(s, a->path, backlog);
        break;
    case MP__ADDR_PRIVATE:
        rc = open_private(s, backlog);
        break;
    default:
        rc = mp__fail(MP_ENOSYS,
                      "pipe:%s: named pipes are Windows-only; use unix:/path or "
                      "tcp://host:port here",
                      a->path);
    }
    if (rc) {
        server_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

const char *mp__server_address(const mp__server_t *s)
{
    return s->address;
}

static int accept_once(int lfd)
{
#if defined(__linux__) || defined(__FreeBSD__)
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
#else
    /* No accept4: a spawn racing in another thread may see this fd before
     * FD_CLOEXEC is set (libuv accepts the same window on macOS). */
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC); /* cannot fail on a valid fd */
    return fd;
#endif
}

/* The accepted socket as a stream: blocking (BSDs copy O_NONBLOCK from
 * the listening socket) and tuned like every other. */
static int adopt_socket(int fd, mp__stream_t **st)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ? mp__fail_os("getsockname") : 0;
    if (!rc) rc = set_nonblocking(fd, false);
    if (!rc) rc = tune(fd, ss.ss_family);
    if (!rc) rc = mp__stream_adopt(fd, st);
    if (rc) close(fd);
    return rc;
}

int mp__server_accept(mp__server_t *s, long timeout_ms, mp__stream_t **st, bool *message)
{
    uint64_t start = mp__os_now_ns();
    *message = false;
    for (;;) {
        int ready = mp__fd_wait_readable(s->fd, mp__timeout_left(timeout_ms, start));
        if (ready < 0) return ready;
        if (!ready) return mp__fail(MP_ETIMEDOUT, "accept: no peer within %ld ms", timeout_ms);
        int fd = accept_once(s->fd);
        if (fd >= 0) return adopt_socket(fd, st);
        /* The peer left before we took it, or a signal: wait for the next. */
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED &&
            errno != EPROTO)
            return os_fail_at("accept", s->address);
    }
}

void mp__server_close(mp__server_t *s, bool remove_name)
{
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    if (remove_name && s->path) unlink(s->path);
    if (remove_name && s->dir) rmdir(s->dir);
    server_free(s);
}

static int wait_writable(int fd, long timeout_ms)
{
    uint64_t start = mp__os_now_ns();
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        long left = mp__timeout_left(timeout_ms, start);
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0) return 1;
        if (n == 0 && mp__timeout_left(timeout_ms, start) == 0) return 0;
        if (n < 0 && errno != EINTR) return mp__fail_os("poll");
    }
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* connect() bounded by timeout_ms: non-blocking, then back to blocking. */
static int connect_fd(int fd, const struct sockaddr *sa, socklen_t len, long timeout_ms,
                      const char *where)
{
    uint64_t start = mp__os_now_ns();
    int rc = set_nonblocking(fd, true);
    while (!rc && connect(fd, sa, len) < 0) {
        long left = mp__timeout_left(timeout_ms, start);
        if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
            if (!left) return mp__fail(MP_ETIMEDOUT, "connect(%s): backlog full", where);
            pause_ms(left < 0 || left > BACKLOG_RETRY_MS ? BACKLOG_RETRY_MS : left);
            continue;
        }
        if (errno != EINPROGRESS && errno != EINTR) return connect_failed(where);
        int ready = wait_writable(fd, left);
        if (ready < 0) return ready;
        if (!ready) return mp__fail(MP_ETIMEDOUT, "connect(%s): no answer in time", where);
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            return mp__fail_os("getsockopt(SO_ERROR)");
        if (err) {
            errno = err;
            return connect_failed(where);
        }
        break;
    }
    return rc ? rc : set_nonblocking(fd, false);
}

static int connect_tcp(const mp__addr_t *a, long timeout_ms, int *out)
{
    struct addrinfo *res;
    int rc = resolve(a, false, &res);
    if (rc) return rc;
    char where[300];
    snprintf(where, sizeof where, "tcp://%s:%u", a->host, (unsigned)a->port);
    uint64_t start = mp__os_now_ns();
    rc = mp__fail(MP_ENOTFOUND, "%s: no address", where);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = -1;
        rc = socket_new(ai->ai_family, &fd);
        if (!rc)
            rc = connect_fd(fd, ai->ai_addr, ai->ai_addrlen, mp__timeout_left(timeout_ms, start),
                            where);
        if (!rc) {
            *out = fd;
            break;
        }
        if (fd >= 0) close(fd);
        if (rc == MP_ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    return rc;
}

static int connect_unix(const char *path, long timeout_ms, int *out)
{
    struct sockaddr_un sun;
    int rc = unix_sockaddr(path, &sun);
    int fd = -1;
    if (!rc) rc = socket_new(AF_UNIX, &fd);
    if (rc) return rc;
    char where[sizeof sun.sun_path + 8];
    snprintf(where, sizeof where, "unix:%s", path);
    rc = connect_fd(fd, (struct sockaddr *)&sun, sizeof sun, timeout_ms, where);
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int mp__stream_connect(const mp__addr_t *a, long timeout_ms, mp__stream_t **st, bool *message)
{
    *message = false;
    int fd = -1, rc;
    switch (a->kind) {
    case MP__ADDR_TCP:
        rc = connect_tcp(a, timeout_ms, &fd);
        break;
    case MP__ADDR_UNIX:
        rc = connect_unix(a->path, timeout_ms, &fd);
        break;
    case MP__ADDR_PIPE:
        rc = mp__fail(MP_ENOSYS, "pipe:%s: named pipes are Windows-only", a->path);
        break;
    default:
        rc = mp__fail(MP_EINVAL, "a client needs an address to connect to");
    }
    if (!rc) {
        rc = mp__stream_adopt(fd, st);
        if (rc) close(fd);
    }
    return rc;
}

/* POSIX has no message streams: nothing here creates one. */
int mp__stream_msg_read(mp__stream_t *s, void *buf, size_t cap, size_t *got, uint64_t *left,
                        long timeout_ms)
{
    (void)s, (void)buf, (void)cap, (void)timeout_ms;
    *got = 0;
    *left = 0;
    return mp__fail(MP_ENOSYS, "message streams are Windows named pipes");
}

int mp__stream_msg_write(mp__stream_t *s, const void *buf, size_t len)
{
    (void)s, (void)buf, (void)len;
    return mp__fail(MP_ENOSYS, "message streams are Windows named pipes");
}
