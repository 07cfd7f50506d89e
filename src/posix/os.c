/* The process itself on POSIX: ids, clock, randomness, error mapping. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/random.h>
#endif
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

#include "posix.h"

int mp__os_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

mp_pid_t mp__os_getpid(void)
{
    return (mp_pid_t)getpid();
}

mp_pid_t mp__os_getppid(void)
{
    return (mp_pid_t)getppid();
}

int mp__os_exe_path(char **path)
{
#if defined(__APPLE__)
    uint32_t size = 0;
    _NSGetExecutablePath(NULL, &size);
    char *raw = mp__malloc(size);
    if (!raw) return MP_ENOMEM;
    _NSGetExecutablePath(raw, &size);
    *path = realpath(raw, NULL);
    free(raw);
    return *path ? 0 : mp__fail_os("realpath(executable)");
#else
    size_t cap = 256;
    for (;;) {
        char *buf = mp__malloc(cap);
        if (!buf) return MP_ENOMEM;
        ssize_t n = readlink("/proc/self/exe", buf, cap);
        if (n < 0) {
            free(buf);
            return mp__fail_os("readlink(/proc/self/exe)");
        }
        if ((size_t)n < cap) {
            buf[n] = 0;
            *path = buf;
            return 0;
        }
        free(buf);
        cap *= 2;
    }
#endif
}

void mp__os_exit(int code)
{
    _exit(code);
}

int mp__os_random(void *buf, size_t n)
{
#if defined(__linux__)
    unsigned char *p = buf;
    while (n) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return mp__fail_os("getrandom");
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
#else
    arc4random_buf(buf, n);
    return 0;
#endif
}

uint64_t mp__os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void mp__os_yield(void)
{
    sched_yield();
}

void mp__osh_close(mp__osh_t h)
{
    if (h >= 0) close((int)h);
}

static int map_errno(int e)
{
    switch (e) {
    case EINVAL:
        return MP_EINVAL;
    case ENOMEM:
    case ENOBUFS:
        return MP_ENOMEM;
    case ETIMEDOUT:
        return MP_ETIMEDOUT;
    case EPIPE:
    case ECONNRESET:
        return MP_EOF;
    case EACCES:
    case EPERM:
        return MP_EPERM;
    case ENOENT:
    case ESRCH:
        return MP_ENOTFOUND;
    case EEXIST:
        return MP_EEXIST;
    case EMSGSIZE:
        return MP_EMSGSIZE;
    case ENOSYS:
        return MP_ENOSYS;
    case EBADF:
        return MP_ECLOSED;
    default:
        return MP_ESYS;
    }
}

int mp__fail_os(const char *call)
{
    int e = errno;
    return mp__fail(map_errno(e), "%s: %s (errno %d)", call, strerror(e), e);
}

int mp__fd_cloexec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
        return mp__fail_os("fcntl(FD_CLOEXEC)");
    return 0;
}

int mp__fd_wait_readable(int fd, long timeout_ms)
{
    uint64_t start = mp__os_now_ns();
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long left = mp__timeout_left(timeout_ms, start);
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n >= 0) {
            if (n == 0 && timeout_ms >= 0 && mp__timeout_left(timeout_ms, start) > 0)
                continue; /* a long timeout clipped to INT_MAX */
            return n > 0;
        }
        if (errno != EINTR) return mp__fail_os("poll");
    }
}
