/* Byte streams on POSIX: connected AF_UNIX stream sockets. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "posix.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif
#define IOV_CHUNK 64

struct mp__stream {
    int fd;
    bool is_socket;
};

static int stream_new(int fd, bool is_socket, mp__stream_t **out)
{
    mp__stream_t *s = mp__malloc(sizeof *s);
    if (!s) return MP_ENOMEM;
    s->fd = fd;
    s->is_socket = is_socket;
    *out = s;
    return 0;
}

static int socket_setup(int fd)
{
#if defined(SO_NOSIGPIPE)
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one) < 0)
        return mp__fail_os("setsockopt(SO_NOSIGPIPE)");
#endif
#if defined(SOCK_CLOEXEC)
    (void)fd;
    return 0;
#else
    return mp__fd_cloexec(fd);
#endif
}

int mp__stream_pair(mp__stream_t **a, mp__stream_t **b, bool duplex)
{
    int fds[2];
    int type = SOCK_STREAM;
#if defined(SOCK_CLOEXEC)
    type |= SOCK_CLOEXEC;
#endif
    if (socketpair(AF_UNIX, type, 0, fds) < 0) return mp__fail_os("socketpair");
    int rc = socket_setup(fds[0]);
    if (!rc) rc = socket_setup(fds[1]);
    /* Simplex: the reading end can never write and vice versa, so a stray
     * write is an error rather than data nobody reads. */
    if (!rc && !duplex && (shutdown(fds[0], SHUT_WR) < 0 || shutdown(fds[1], SHUT_RD) < 0))
        rc = mp__fail_os("shutdown");
    if (!rc) rc = stream_new(fds[0], true, a);
    if (!rc) {
        rc = stream_new(fds[1], true, b);
        if (rc) free(*a);
    }
    if (rc) {
        close(fds[0]);
        close(fds[1]);
    }
    return rc;
}

static ssize_t read_once(mp__stream_t *s, void *buf, size_t cap, bool nowait)
{
    if (s->is_socket) return recv(s->fd, buf, cap, nowait ? MSG_DONTWAIT : 0);
    return read(s->fd, buf, cap);
}

int mp__stream_read(mp__stream_t *s, void *buf, size_t cap, size_t *got, long timeout_ms)
{
    /* A blocking read (the common case) needs no clock. */
    uint64_t start = timeout_ms >= 0 ? mp__os_now_ns() : 0;
    *got = 0;
    if (cap > SSIZE_MAX) cap = SSIZE_MAX;
    for (;;) {
        if (timeout_ms >= 0) {
            int ready = mp__fd_wait_readable(s->fd, mp__timeout_left(timeout_ms, start));
            if (ready < 0) return ready;
            if (!ready) return mp__fail(MP_ETIMEDOUT, "read: no data within %ld ms", timeout_ms);
        }
        ssize_t n = read_once(s, buf, cap, timeout_ms >= 0);
        if (n > 0) {
            *got = (size_t)n;
            return 0;
        }
        if (n == 0) return mp__fail(MP_EOF, "the peer closed the stream");
        if (errno == ECONNRESET)
            return mp__fail(MP_EOF, "the peer closed the stream with data unread");
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
            return mp__fail_os(s->is_socket ? "recv" : "read");
    }
}

/* Pipes have no MSG_NOSIGNAL: block SIGPIPE for this thread and consume a
 * pending one, so the process-wide disposition stays the caller's. */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int n)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t w = writev(fd, iov, n);
    int saved = errno;
    sigset_t pending;
    int sig;
    if (w < 0 && saved == EPIPE && !sigpending(&pending) && sigismember(&pending, SIGPIPE))
        sigwait(&pipe_set, &sig);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return w;
}

static ssize_t write_once(mp__stream_t *s, struct iovec *iov, int n)
{
    if (!s->is_socket) return writev_nosigpipe(s->fd, iov, n);
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = n;
    return sendmsg(s->fd, &m, MSG_NOSIGNAL);
}

int mp__stream_write(mp__stream_t *s, const mp_iov_t *iov, size_t n)
{
    struct iovec v[IOV_CHUNK];
    size_t next = 0; /* first buffer not yet in v */
    size_t off = 0;  /* bytes of iov[next - ...] already written, see below */
    while (next < n) {
        int k = 0;
        for (size_t i = next; i < n && k < IOV_CHUNK; i++, k++) {
            v[k].iov_base = (char *)iov[i].data + (i == next ? off : 0);
            v[k].iov_len = iov[i].len - (i == next ? off : 0);
        }
        ssize_t w = write_once(s, v, k);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            if (errno == EPIPE || errno == ECONNRESET)
                return mp__fail(MP_EOF, "the peer closed the stream");
            return mp__fail_os(s->is_socket ? "sendmsg" : "writev");
        }
        /* Advance past what was written, possibly mid-buffer. */
        size_t left = (size_t)w;
        while (next < n && left >= iov[next].len - off) {
            left -= iov[next].len - off;
            off = 0;
            next++;
        }
        off += left;
    }
    return 0;
}

int mp__stream_poll(mp__stream_t *s, long timeout_ms)
{
    return mp__fd_wait_readable(s->fd, timeout_ms);
}

void mp__stream_close(mp__stream_t *s)
{
    if (!s) return;
    close(s->fd);
    free(s);
}

void mp__stream_forget(mp__stream_t *s)
{
    mp__stream_close(s);
}

int mp__stream_fd(mp__stream_t *s)
{
    return s->fd;
}

mp__osh_t mp__stream_osh(mp__stream_t *s)
{
    return s->fd;
}

int mp__stream_adopt(mp__osh_t h, mp__stream_t **s)
{
    if (h < 0 || h > INT_MAX)
        return mp__fail(MP_EINVAL, "not a file descriptor: %lld", (long long)h);
    int fd = (int)h;
    struct stat st;
    if (fstat(fd, &st) < 0) return mp__fail_os("fstat(passed stream)");
    int rc = mp__fd_cloexec(fd);
    return rc ? rc : stream_new(fd, S_ISSOCK(st.st_mode), s);
}
