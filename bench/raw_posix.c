/* The raw floors on POSIX: an AF_UNIX socketpair to a forked child (what
 * mp_pipe is built on), fork + waitpid, posix_spawn + waitpid. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
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

/* Listens at *sa (a TCP port 0 becomes the real one), forks a child that
 * connects there and runs role, and accepts it. */
static int listen_child_start(struct sockaddr_storage *sa, socklen_t sl, raw_role_t role,
                              raw_stream_t **s, raw_child_t **c)
{
    bool tcp = sa->ss_family == AF_INET;
    int l = socket(sa->ss_family, SOCK_STREAM, 0);
    if (l < 0) return tcp_fail("socket", -1, -1);
    if (bind(l, (struct sockaddr *)sa, sl) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)sa, &sl))
        return tcp_fail("bind/listen", l, -1);
    pid_t pid = fork();
    if (pid == 0) {
        close(l);
        int fd = socket(sa->ss_family, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)sa, sl)) _exit(3);
        if (tcp) no_delay(fd);
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
    if (tcp) no_delay(fd);
    me->fd = fd;
    ch->pid = pid;
    *s = me;
    *c = ch;
    return 0;
}

static socklen_t loopback(struct sockaddr_storage *ss)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memset(ss, 0, sizeof *ss);
    memcpy(ss, &sa, sizeof sa);
    return sizeof sa;
}

int raw_tcp_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    struct sockaddr_storage ss;
    socklen_t sl = loopback(&ss);
    return listen_child_start(&ss, sl, role, s, c);
}

int raw_unix_child_start(raw_role_t role, raw_stream_t **s, raw_child_t **c)
{
    static unsigned counter;
    struct sockaddr_storage ss;
    struct sockaddr_un *un = (struct sockaddr_un *)&ss;
    memset(&ss, 0, sizeof ss);
    un->sun_family = AF_UNIX;
    snprintf(un->sun_path, sizeof un->sun_path, "/tmp/mproc-bench-raw-%ld-%u.sock", (long)getpid(),
             ++counter);
    unlink(un->sun_path);
    int rc = listen_child_start(&ss, sizeof *un, role, s, c);
    unlink(un->sun_path);
    return rc;
}

/* The connecting child of raw_tcp_connects. */
static int connect_loop(const struct sockaddr_storage *ss, socklen_t sl, long total)
{
    for (long i = 0; i < total; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *)ss, sl)) return 41;
        no_delay(fd);
        uint8_t b = 0;
        ssize_t n;
        while ((n = recv(fd, &b, 1, 0)) < 0 && errno == EINTR)
            ;
        close(fd);
        if (n != 1 || b != (uint8_t)i) return 42;
    }
    return 0;
}

int raw_tcp_connects(long count, long warm, double *us)
{
    struct sockaddr_storage ss;
    socklen_t sl = loopback(&ss);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0) return tcp_fail("socket", -1, -1);
    if (bind(l, (struct sockaddr *)&ss, sl) || listen(l, 16) ||
        getsockname(l, (struct sockaddr *)&ss, &sl))
        return tcp_fail("bind/listen", l, -1);
    long total = warm + count;
    pid_t pid = fork();
    if (pid == 0) {
        close(l);
        _exit(connect_loop(&ss, sl, total));
    }
    if (pid < 0) return tcp_fail("fork", l, -1);
    int rc = 0;
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < total; i++) {
        if (i == warm) t0 = raw_now_ns();
        int fd;
        while ((fd = accept(l, NULL, NULL)) < 0 && errno == EINTR)
            ;
        if (fd < 0) {
            rc = bench_fail("accept: %s", strerror(errno));
            break;
        }
        no_delay(fd);
        uint8_t b = (uint8_t)i;
        if (send(fd, &b, 1, MSG_NOSIGNAL) != 1) rc = bench_fail("send: %s", strerror(errno));
        close(fd);
    }
    *us = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    close(l);
    int code = 0;
    if (rc) kill(pid, SIGKILL);
    int jrc = wait_pid(pid, &code);
    if (!rc)
        rc = jrc ? jrc : code ? bench_fail("the raw connecting child exited with %d", code) : 0;
    return rc;
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

/* Waits for every child in pid[0..n); *code is the first nonzero status. */
static int wait_all(const pid_t *pid, int n, int *code)
{
    int rc = 0;
    *code = 0;
    for (int i = 0; i < n; i++) {
        int c = 0, w = wait_pid(pid[i], &c);
        if (!rc) rc = w;
        if (!*code) *code = c;
    }
    return rc;
}

int raw_fork_join_n(int n, int *code)
{
    pid_t pid[RAW_MAX_CHILDREN];
    int started = 0, rc = 0;
    for (; started < n && started < RAW_MAX_CHILDREN; started++) {
        pid[started] = fork();
        if (pid[started] == 0) _exit(0);
        if (pid[started] < 0) {
            rc = bench_fail("fork: %s", strerror(errno));
            break;
        }
    }
    int wrc = wait_all(pid, started, code);
    return rc ? rc : wrc;
}

int raw_spawn_join_n(int n, int *code)
{
    const char *exe = self_exe();
    if (!exe) return bench_fail("cannot find this executable's path");
    char *argv[] = {(char *)exe, RAW_CHILD_FLAG, NULL};
    pid_t pid[RAW_MAX_CHILDREN];
    int started = 0, rc = 0;
    for (; started < n && started < RAW_MAX_CHILDREN; started++) {
        int err = posix_spawn(&pid[started], exe, NULL, NULL, argv, environ);
        if (err) {
            rc = bench_fail("posix_spawn(%s): %s", exe, strerror(err));
            break;
        }
    }
    int wrc = wait_all(pid, started, code);
    return rc ? rc : wrc;
}

/* A robust mutex, as mp_lock's: an owner's death must be detectable. */
int raw_mutex_loop(long count, double *ns, long *held)
{
    pthread_mutex_t *m =
        mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return bench_fail("mmap: %s", strerror(errno));
    pthread_mutexattr_t a;
    int err = pthread_mutexattr_init(&a);
    if (!err) err = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
#if !defined(__APPLE__)
    if (!err) err = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
#endif
    if (!err) err = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (err) {
        munmap(m, sizeof *m);
        return bench_fail("pthread_mutex_init(pshared, robust): %s", strerror(err));
    }
    volatile long inside = 0;
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !err && i < count; i++) {
        err = pthread_mutex_lock(m);
        if (err) break;
        inside = inside + 1;
        err = pthread_mutex_unlock(m);
    }
    *ns = (double)(raw_now_ns() - t0) / (double)count;
    *held = inside;
    pthread_mutex_destroy(m);
    munmap(m, sizeof *m);
    return err ? bench_fail("pthread_mutex_lock/unlock: %s", strerror(err)) : 0;
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
