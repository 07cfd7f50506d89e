/* The raw floors on POSIX: an AF_UNIX socketpair to a forked child (what
 * mp_pipe is built on), fork + waitpid, posix_spawn + waitpid. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__APPLE__)
#include <mach-o/dyld.h>
#endif

#include "bench.h"
#include "raw.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

extern char **environ;

struct raw_stream {
    int fd;
};

struct raw_child {
    pid_t pid;
};

uint64_t raw_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *raw_os_name(void)
{
    return "posix";
}

static int decode(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
}

static int wait_pid(pid_t pid, int *code)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return bench_fail("waitpid: %s", strerror(errno));
    *code = decode(st);
    return 0;
}

int raw_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    raw_stream_t *me = malloc(sizeof *me);
    raw_child_t *ch = malloc(sizeof *ch);
    int sv[2];
    if (!me || !ch) {
        free(me);
        free(ch);
        return bench_fail("raw_child_start: out of memory");
    }
    int type = SOCK_STREAM;
#if defined(SOCK_CLOEXEC)
    type |= SOCK_CLOEXEC;
#endif
    if (socketpair(AF_UNIX, type, 0, sv) < 0) {
        free(me);
        free(ch);
        return bench_fail("socketpair: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        raw_stream_t mine = {sv[1]};
        _exit(raw_role_run(role, &mine));
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        free(me);
        free(ch);
        return bench_fail("fork: %s", strerror(errno));
    }
    me->fd = sv[0];
    ch->pid = pid;
    *s = me;
    *c = ch;
    return 0;
}

static int tcp_fail(const char *what, int fd1, int fd2)
{
    int e = errno;
    if (fd1 >= 0) close(fd1);
    if (fd2 >= 0) close(fd2);
    return bench_fail("%s: %s", what, strerror(e));
}

static void no_delay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int raw_tcp_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) return tcp_fail("socket", -1, -1);
    if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&sa, &sl))
        return tcp_fail("bind/listen", l, -1);
    pid_t pid = fork();
    if (pid == 0) {
        close(l);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa)) _exit(3);
        no_delay(fd);
        raw_stream_t mine = {fd};
        _exit(raw_role_run(role, &mine));
    }
    if (pid < 0) return tcp_fail("fork", l, -1);
    int fd = accept(l, NULL, NULL);
    close(l);
    raw_stream_t *me = malloc(sizeof *me);
    raw_child_t *ch = malloc(sizeof *ch);
    if (fd < 0 || !me || !ch) {
        free(me);
        free(ch);
        int code;
        kill(pid, SIGKILL);
        wait_pid(pid, &code);
        return tcp_fail("accept", fd, -1);
    }
    no_delay(fd);
    me->fd = fd;
    ch->pid = pid;
    *s = me;
    *c = ch;
    return 0;
}

int raw_child_join(raw_child_t *c, int *code)
{
    int rc = wait_pid(c->pid, code);
    free(c);
    return rc;
}

void raw_stream_close(raw_stream_t *s)
{
    if (!s) return;
    close(s->fd);
    free(s);
}

int raw_write(raw_stream_t *s, const void *a, size_t na, const void *b, size_t nb)
{
    struct iovec v[2] = {{(void *)a, na}, {(void *)b, nb}};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = v;
    m.msg_iovlen = b ? 2 : 1;
    while (m.msg_iovlen) {
        ssize_t w = sendmsg(s->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EPIPE || errno == ECONNRESET) return RAW_EOF;
            return bench_fail("sendmsg: %s", strerror(errno));
        }
        size_t left = (size_t)w;
        while (m.msg_iovlen && left >= m.msg_iov->iov_len) {
            left -= m.msg_iov->iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen) {
            m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + left;
            m.msg_iov->iov_len -= left;
        }
    }
    return 0;
}

int raw_read(raw_stream_t *s, void *buf, size_t cap, size_t *got)
{
    *got = 0;
    if (cap > SSIZE_MAX) cap = SSIZE_MAX;
    for (;;) {
        ssize_t n = recv(s->fd, buf, cap, 0);
        if (n > 0) {
            *got = (size_t)n;
            return 0;
        }
        if (n == 0 || errno == ECONNRESET) return RAW_EOF;
        if (errno != EINTR) return bench_fail("recv: %s", strerror(errno));
    }
}

int raw_fork_join(int *code)
{
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return bench_fail("fork: %s", strerror(errno));
    return wait_pid(pid, code);
}

/* This executable, resolved once, as mproc resolves it for spawn. */
static const char *self_exe(void)
{
    static char path[PATH_MAX];
    if (path[0]) return path;
#if defined(__APPLE__)
    uint32_t size = sizeof path;
    char raw[PATH_MAX];
    if (_NSGetExecutablePath(raw, &size) || !realpath(raw, path)) return NULL;
#else
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return NULL;
    path[n] = 0;
#endif
    return path;
}

int raw_spawn_join(int *code)
{
    const char *exe = self_exe();
    if (!exe) return bench_fail("cannot find this executable's path");
    char *argv[] = {(char *)exe, RAW_CHILD_FLAG, NULL};
    pid_t pid;
    int err = posix_spawn(&pid, exe, NULL, NULL, argv, environ);
    if (err) return bench_fail("posix_spawn(%s): %s", exe, strerror(err));
    return wait_pid(pid, code);
}

static int sem_wait_retry(sem_t *s)
{
    while (sem_wait(s) < 0)
        if (errno != EINTR) return -1;
    return 0;
}

int raw_sem_pingpong(long count, double *us)
{
    sem_t *sem =
        mmap(NULL, 2 * sizeof *sem, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sem == MAP_FAILED) return bench_fail("mmap: %s", strerror(errno));
    sem_t *ping = &sem[0], *pong = &sem[1];
    if (sem_init(ping, 1, 0) < 0 || sem_init(pong, 1, 0) < 0) {
        munmap(sem, 2 * sizeof *sem);
        return bench_fail("sem_init(pshared): %s", strerror(errno));
    }
    long total = count + RAW_WARM_ROUNDS;
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < total; i++)
            if (sem_wait_retry(ping) || sem_post(pong) < 0) _exit(21);
        _exit(0);
    }
    int rc = pid < 0 ? bench_fail("fork: %s", strerror(errno)) : 0;
    uint64_t t0 = 0;
    for (long i = 0; !rc && i < total; i++) {
        if (i == RAW_WARM_ROUNDS) t0 = raw_now_ns();
        if (sem_post(ping) < 0 || sem_wait_retry(pong))
            rc = bench_fail("sem_post/sem_wait: %s", strerror(errno));
    }
    *us = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    int code = 0;
    if (pid > 0) {
        if (rc) kill(pid, SIGKILL);
        int jrc = wait_pid(pid, &code);
        if (!rc) rc = jrc ? jrc : code ? bench_fail("the raw child exited with %d", code) : 0;
    }
    int left[2] = {-1, -1};
    sem_getvalue(ping, &left[0]);
    sem_getvalue(pong, &left[1]);
    if (!rc && (left[0] || left[1]))
        rc = bench_fail("raw: semaphores left at %d and %d", left[0], left[1]);
    sem_destroy(ping);
    sem_destroy(pong);
    munmap(sem, 2 * sizeof *sem);
    return rc;
}

int raw_child_main(int argc, char **argv)
{
    (void)argv;
    /* Roles run in forked children here; a spawned raw child only exits. */
    return argc == 2 ? 0 : 2;
}
