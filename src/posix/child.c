/* Child processes on POSIX: fork, posix_spawn of this executable with a
 * bootstrap socket, and a pollable handle on each child (a pidfd on Linux,
 * a kqueue elsewhere) so join, is_alive and mp_wait never race with pid
 * reuse and never depend on fds a grandchild might inherit. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#else
#include <pthread.h>
#include <sys/event.h>
#endif

#include "posix.h"

extern char **environ;

#define BOOT_MARKER "--mproc-child"
#define BOOT_FD 3              /* the bootstrap socket; passed handles follow it */
#define BOOT_MAGIC 0x5342504du /* "MPBS" */
/* A spawned child accepts at most this many passed handles and record
 * bytes, so a corrupt channel cannot make it allocate without bound. */
#define BOOT_MAX_HANDLES 4096u
#define BOOT_MAX_RECORD ((uint64_t)1 << 34)
#define BOOT_ALLOC_AHEAD ((size_t)16 << 20)

struct mp__child {
    pid_t pid;
    int waitfd; /* readable once the child has ended */
    bool pidfd; /* waitfd is a pidfd (signals can go through it) */
    bool reaped;
    int code;
};

bool mp__os_has_fork(void)
{
    return true;
}

bool mp__child_outlives_thread(void)
{
#if defined(__linux__)
    return syscall(SYS_gettid) == getpid();
#else
    /* The child's own thread watches the parent process. */
    return true;
#endif
}

#if defined(__linux__)
/* Waits for the child to end without reaping it (WNOWAIT: its pid cannot
 * be reused while kill() may still target it), then makes the caller's
 * end readable. Data rather than EOF: a forked sibling may hold a copy of
 * that end. The pid comes through the socket, so nothing is allocated for
 * the thread (a fork before it runs would copy that allocation). */
static void *exit_watcher(void *arg)
{
    int fd = (int)(intptr_t)arg;
    pid_t pid;
    if (recv(fd, &pid, sizeof pid, MSG_WAITALL) == (ssize_t)sizeof pid) {
        siginfo_t si;
        while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0 && errno == EINTR)
            ;
    }
    send(fd, "x", 1, MSG_NOSIGNAL);
    close(fd);
    return NULL;
}

/* Without pidfd_open (a kernel before 5.3, or a seccomp filter refusing
 * it): a thread per child, blocked in waitid, signals a socket. */
static int open_watcher(pid_t pid, int *fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return mp__fail_os("socketpair(exit watcher)");
    int err = send(sv[0], &pid, sizeof pid, MSG_NOSIGNAL) == (ssize_t)sizeof pid ? 0 : errno;
    if (!err) {
        /* Signals meant for the program never land on this thread. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        err = pthread_create(&t, &at, exit_watcher, (void *)(intptr_t)sv[1]);
        pthread_attr_destroy(&at);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (err) {
        close(sv[0]);
        close(sv[1]);
        return mp__fail(MP_ESYS, "exit watcher thread: %s", strerror(err));
    }
    *fd = sv[0];
    return 0;
}
#endif

static int open_waitfd(pid_t pid, int *fd, bool *pidfd)
{
#if defined(__linux__)
    /* A pidfd is always close-on-exec: no fcntl needed. */
    long r = -1;
    if (mp__fault("pidfd_open"))
        errno = ENOSYS;
    else
        r = syscall(SYS_pidfd_open, pid, 0);
    *pidfd = r >= 0;
    if (r >= 0) {
        *fd = (int)r;
        return 0;
    }
    if (errno == ENOSYS || errno == EPERM) return open_watcher(pid, fd);
    return mp__fail_os("pidfd_open");
#else
    *pidfd = false;
    int kq = kqueue();
    if (kq < 0) return mp__fail_os("kqueue");
    struct kevent ev;
    EV_SET(&ev, pid, EVFILT_PROC, EV_ADD | EV_ONESHOT, NOTE_EXIT, 0, NULL);
    /* ESRCH: it has already exited; the fd must then read as ready. */
    if (kevent(kq, &ev, 1, NULL, 0, NULL) < 0 && errno != ESRCH) {
        int rc = mp__fail_os("kevent(EVFILT_PROC)");
        close(kq);
        return rc;
    }
    *fd = kq;
    return mp__fd_cloexec(kq);
#endif
}

static int child_new(pid_t pid, mp__child_t **out)
{
    mp__child_t *c = mp__calloc(1, sizeof *c);
    int rc = c ? open_waitfd(pid, &c->waitfd, &c->pidfd) : MP_ENOMEM;
    if (rc) {
        /* Without a handle we could never wait: do not leave it running. */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        free(c);
        return rc;
    }
    c->pid = pid;
    *out = c;
    return 0;
}

#if !defined(__linux__)
static pid_t watched_parent;

static void *parent_watcher(void *arg)
{
    (void)arg;
    int kq = kqueue();
    struct kevent ev;
    EV_SET(&ev, watched_parent, EVFILT_PROC, EV_ADD, NOTE_EXIT, 0, NULL);
    if (kq >= 0 && kevent(kq, &ev, 1, NULL, 0, NULL) == 0)
        while (kevent(kq, NULL, 0, &ev, 1, NULL) < 0 && errno == EINTR)
            ;
    _exit(128 + SIGKILL);
    return NULL;
}
#endif

/* sigset_t is opaque; no portable emptiness test exists besides asking
 * about every signal. */
static bool same_sigset(const sigset_t *a, const sigset_t *b)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sigismember(a, sig) != sigismember(b, sig)) return false;
    return true;
}

int mp__child_init(bool daemon, mp_pid_t parent_pid)
{
    if (!daemon) return 0;
#if defined(__linux__)
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) return mp__fail_os("prctl(PR_SET_PDEATHSIG)");
#else
    /* No parent-death signal here: a thread waits for the parent to exit. */
    watched_parent = (pid_t)parent_pid;
    pthread_t t;
    if (pthread_create(&t, NULL, parent_watcher, NULL))
        return mp__fail(MP_ESYS, "pthread_create(parent watcher) failed");
    pthread_detach(t);
#endif
    /* The parent may have died before the line above took effect. */
    if (getppid() != (pid_t)parent_pid) kill(getpid(), SIGKILL);
    return 0;
}

int mp__child_fork(bool daemon, mp__child_t **c, bool *in_child)
{
    /* getpid() is a system call; only the parent-death check needs it. */
    pid_t parent = daemon ? getpid() : 0;
    /* As a spawned child does, the child starts with no signal blocked,
     * whatever the forking thread had blocked. Learning that here, before
     * fork, spares the usual child a system call. */
    sigset_t none, blocked;
    sigemptyset(&none);
    bool any_blocked = !pthread_sigmask(SIG_BLOCK, NULL, &blocked) && !same_sigset(&blocked, &none);
    pid_t pid = fork();
    if (pid < 0) return mp__fail_os("fork");
    if (pid == 0) {
        if (any_blocked) pthread_sigmask(SIG_SETMASK, &none, NULL);
        *in_child = true;
        /* Written only if needed: each page a new child writes is copied. */
        if (c && *c) *c = NULL;
        mp__child_init(daemon, parent);
        return 0;
    }
    *in_child = false;
    return child_new(pid, c);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return mp__fail_os("send(bootstrap)");
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Duplicates each passed handle above every slot the child will use, so
 * the dup2 actions below never overwrite a source before it is read. */
static int stage_handles(const mp__spawn_req_t *rq, int *tmp)
{
    int floor = BOOT_FD + 1 + (int)rq->npass;
    for (size_t i = 0; i < rq->npass; i++) {
        tmp[i] = fcntl((int)rq->pass[i], F_DUPFD_CLOEXEC, floor);
        if (tmp[i] < 0) {
            int rc = mp__fail_os("fcntl(F_DUPFD_CLOEXEC)");
            while (i--)
                close(tmp[i]);
            return rc;
        }
    }
    return 0;
}

static int spawn_process(const mp__spawn_req_t *rq, int boot_fd, const int *tmp, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int err = posix_spawn_file_actions_init(&fa);
    if (err) return mp__fail(MP_ENOMEM, "posix_spawn_file_actions_init: %s", strerror(err));
    posix_spawnattr_init(&at);
    /* A child starts with no signal blocked, whatever thread started it. */
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    err = posix_spawn_file_actions_adddup2(&fa, boot_fd, BOOT_FD);
    for (size_t i = 0; !err && i < rq->npass; i++)
        err = posix_spawn_file_actions_adddup2(&fa, tmp[i], BOOT_FD + 1 + (int)i);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    /* Descriptors the application opened without O_CLOEXEC stay behind. */
    if (!err) err = posix_spawn_file_actions_addclosefrom_np(&fa, BOOT_FD + 1 + (int)rq->npass);
#endif
    char *argv[] = {(char *)rq->exe, BOOT_MARKER, "3", NULL};
    if (!err) err = posix_spawn(pid, rq->exe, &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (err)
        return mp__fail(err == ENOENT ? MP_ENOTFOUND : MP_ESYS, "posix_spawn(%s): %s (errno %d)",
                        rq->exe, strerror(err), err);
    return 0;
}

static int write_bootstrap(int fd, const mp__spawn_req_t *rq)
{
    uint8_t hdr[16];
    uint32_t magic = BOOT_MAGIC, nh = (uint32_t)rq->npass;
    uint64_t len = rq->record_len;
    for (int i = 0; i < 4; i++) {
        hdr[i] = (uint8_t)(magic >> (8 * i));
        hdr[4 + i] = (uint8_t)(nh >> (8 * i));
    }
    for (int i = 0; i < 8; i++)
        hdr[8 + i] = (uint8_t)(len >> (8 * i));
    int rc = send_all(fd, hdr, sizeof hdr);
    return rc ? rc : send_all(fd, rq->record, rq->record_len);
}

int mp__child_spawn(const mp__spawn_req_t *rq, mp__child_t **c)
{
    if (rq->npass > BOOT_MAX_HANDLES)
        return mp__fail(MP_EINVAL, "too many handles for one child (%zu)", rq->npass);
    int sv[2];
    int type = SOCK_STREAM;
#if defined(SOCK_CLOEXEC)
    type |= SOCK_CLOEXEC;
#endif
    if (socketpair(AF_UNIX, type, 0, sv) < 0) return mp__fail_os("socketpair(bootstrap)");
    int *tmp = rq->npass ? malloc(rq->npass * sizeof *tmp) : NULL;
    int rc = rq->npass && !tmp ? mp__fail(MP_ENOMEM, "spawn: handle table") : 0;
#if !defined(SOCK_CLOEXEC)
    if (!rc) rc = mp__fd_cloexec(sv[0]);
    if (!rc) rc = mp__fd_cloexec(sv[1]);
#endif
    if (!rc) rc = stage_handles(rq, tmp);
    pid_t pid = -1;
    if (!rc) {
        rc = spawn_process(rq, sv[1], tmp, &pid);
        for (size_t i = 0; i < rq->npass; i++)
            close(tmp[i]);
    }
    close(sv[1]);
    if (!rc) rc = child_new(pid, c);
    /* A child that died before reading its record reports that through
     * its exit code; the write failing is not the caller's error. */
    if (!rc) write_bootstrap(sv[0], rq);
    close(sv[0]);
    free(tmp);
    return rc;
}

int mp__child_fd(mp__child_t *c)
{
    return c->waitfd;
}

mp_pid_t mp__child_pid(const mp__child_t *c)
{
    return c ? c->pid : -1;
}

static int decode_status(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return -WTERMSIG(st);
    return -1;
}

int mp__child_wait(mp__child_t *c, long timeout_ms, int *code)
{
    if (!c->reaped) {
        if (timeout_ms >= 0) {
            int ready = mp__fd_wait_readable(c->waitfd, timeout_ms);
            if (ready < 0) return ready;
            if (!ready)
                return mp__fail(MP_ETIMEDOUT, "process %lld still running after %ld ms",
                                (long long)c->pid, timeout_ms);
        }
        int st;
        while (waitpid(c->pid, &st, 0) < 0)
            if (errno != EINTR) return mp__fail_os("waitpid");
        c->code = decode_status(st);
        c->reaped = true;
    }
    *code = c->code;
    return 0;
}

int mp__child_signal(mp__child_t *c, bool kill_it)
{
    if (c->reaped) return 0;
    int sig = kill_it ? SIGKILL : SIGTERM;
#if defined(__linux__)
    /* Through the pidfd: never a reused pid. */
    if (c->pidfd &&
        (syscall(SYS_pidfd_send_signal, c->waitfd, sig, NULL, 0) == 0 || errno == ESRCH))
        return 0;
#endif
    if (kill(c->pid, sig) < 0 && errno != ESRCH) return mp__fail_os("kill");
    return 0;
}

void mp__child_free(mp__child_t *c)
{
    if (!c) return;
    if (!c->reaped) {
        int st;
        /* Reap it now if it has ended, so no zombie stays behind. */
        waitpid(c->pid, &st, WNOHANG);
    }
    close(c->waitfd);
    free(c);
}

/* ---- the child side of spawn ---- */

bool mp__bootstrap_is_child(int argc, char **argv)
{
    return argc >= 3 && argv && argv[1] && !strcmp(argv[1], BOOT_MARKER);
}

static int recv_all(int fd, void *p, size_t n)
{
    char *b = p;
    while (n) {
        ssize_t r = recv(fd, b, n, 0);
        if (r == 0) return mp__fail(MP_EOF, "bootstrap channel closed early (the parent died?)");
        if (r < 0) {
            if (errno == EINTR) continue;
            return mp__fail_os("recv(bootstrap)");
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int read_record(int fd, uint64_t len, void **out)
{
    size_t cap = len < BOOT_ALLOC_AHEAD ? (size_t)len : BOOT_ALLOC_AHEAD;
    uint8_t *p = mp__malloc(cap);
    size_t got = 0;
    while (p && got < len) {
        if (got == cap) {
            cap = len - cap < cap ? (size_t)len : cap * 2;
            uint8_t *np = realloc(p, cap);
            if (!np) {
                free(p);
                return mp__fail(MP_ENOMEM, "bootstrap record of %llu bytes",
                                (unsigned long long)len);
            }
            p = np;
        }
        int rc = recv_all(fd, p + got, cap - got);
        if (rc) {
            free(p);
            return rc;
        }
        got = cap;
    }
    if (!p) return MP_ENOMEM;
    *out = p;
    return 0;
}

int mp__bootstrap_read(int argc, char **argv, void **record, size_t *len, mp__osh_t **handles,
                       size_t *nhandles)
{
    if (!mp__bootstrap_is_child(argc, argv) || strcmp(argv[2], "3"))
        return mp__fail(MP_EINVAL, "bad bootstrap arguments");
    uint8_t hdr[16];
    int rc = recv_all(BOOT_FD, hdr, sizeof hdr);
    uint32_t magic = 0, nh = 0;
    uint64_t rlen = 0;
    for (int i = 0; i < 4; i++) {
        magic |= (uint32_t)hdr[i] << (8 * i);
        nh |= (uint32_t)hdr[4 + i] << (8 * i);
    }
    for (int i = 0; i < 8; i++)
        rlen |= (uint64_t)hdr[8 + i] << (8 * i);
    if (!rc && (magic != BOOT_MAGIC || nh > BOOT_MAX_HANDLES || rlen > BOOT_MAX_RECORD))
        rc = mp__fail(MP_EPROTO, "corrupt bootstrap header");
    mp__osh_t *tab = NULL;
    if (!rc && nh) {
        tab = mp__calloc(nh, sizeof *tab);
        rc = tab ? 0 : MP_ENOMEM;
    }
    for (uint32_t i = 0; !rc && i < nh; i++) {
        tab[i] = BOOT_FD + 1 + (int)i;
        rc = mp__fd_cloexec((int)tab[i]);
    }
    if (!rc) rc = read_record(BOOT_FD, rlen, record);
    close(BOOT_FD);
    if (rc) {
        free(tab);
        return rc;
    }
    *len = (size_t)rlen;
    *handles = tab;
    *nhandles = nh;
    return 0;
}
