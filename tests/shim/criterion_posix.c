/* The POSIX side of the Criterion stand-in's runner (runner.h), for a
 * native build without Criterion (MPROC_TEST_SHIM: the ThreadSanitizer
 * build, where BoxFort's arena collides with TSan's shadow memory).
 *
 * Each test runs in a fresh copy of this executable, started by
 * posix_spawn in a process group of its own: a timeout kills the group,
 * and when the test ends whatever it left running in the group is killed
 * too, while its exited leader still holds the group's id (so the id
 * cannot name another group yet). A SIGCHLD handler writing to a pipe
 * lets the parent wait for the end or the timeout in poll. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runner.h"

extern char **environ;

static pthread_t test_thread;
static int chld_pipe[2] = {-1, -1};

void cr__os_enter_test(void)
{
    /* A crash ends the process with its signal: the parent reports it. */
    test_thread = pthread_self();
}

bool cr__os_on_test_thread(void)
{
    return pthread_equal(pthread_self(), test_thread) != 0;
}

static void on_sigchld(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t n = write(chld_pipe[1], "", 1); /* full pipe: a wake-up is pending anyway */
    (void)n;
    errno = saved;
}

static bool watch_children(void)
{
    if (chld_pipe[0] >= 0) return true;
    if (pipe(chld_pipe)) return false;
    for (int i = 0; i < 2; i++)
        if (fcntl(chld_pipe[i], F_SETFD, FD_CLOEXEC) || fcntl(chld_pipe[i], F_SETFL, O_NONBLOCK))
            return false;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGCHLD, &sa, NULL) == 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* This executable: /proc/self/exe where there is one, else argv[0]
 * (searched in PATH when it has no slash). */
static int start_child(const char *argv0, const char *name, pid_t *pid)
{
    static const char proc_exe[] = "/proc/self/exe";
    bool proc = access(proc_exe, X_OK) == 0;
    char *argv[] = {(char *)argv0, CR__RUN_FLAG, (char *)name, NULL};
    posix_spawnattr_t attr;
    int rc = posix_spawnattr_init(&attr);
    if (rc) return rc;
    sigset_t none;
    sigemptyset(&none);
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    if (!rc) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc)
        rc = proc ? posix_spawn(pid, proc_exe, NULL, &attr, argv, environ)
                  : posix_spawnp(pid, argv0, NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    return rc;
}

/* Waits until the child has exited (left unreaped) or LIMIT seconds have
 * passed; true when it exited. */
static bool wait_exit(pid_t pid, double limit, double start)
{
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) {
            if (si.si_pid == pid) return true;
        } else if (errno != EINTR) {
            return true; /* cannot watch it: the waitpid below tells */
        }
        double left = limit - (now() - start);
        if (left <= 0) return false;
        struct pollfd p = {chld_pipe[0], POLLIN, 0};
        double ms = left * 1000.0 + 1.0;
        poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        char drain[64];
        while (read(chld_pipe[0], drain, sizeof drain) > 0)
            continue;
    }
}

void cr__os_run_child(const char *argv0, const char *name, double limit, struct cr__outcome *out)
{
    pid_t pid;
    int rc = watch_children() ? start_child(argv0, name, &pid) : errno;
    if (rc) {
        out->end = CR__NOT_STARTED;
        snprintf(out->detail, sizeof out->detail, "%s", strerror(rc));
        return;
    }
    double start = now();
    bool exited = wait_exit(pid, limit, start);
    out->secs = now() - start;
    /* Whatever the test started and left running goes with it (and the
     * test itself on timeout). */
    kill(-pid, SIGKILL);
    int status = 0;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
        continue;
    if (got < 0) {
        out->end = CR__NOT_STARTED;
        snprintf(out->detail, sizeof out->detail, "waitpid: %s", strerror(errno));
    } else if (!exited) {
        out->end = CR__TIMED_OUT;
    } else if (WIFSIGNALED(status)) {
        out->end = CR__SIGNALLED;
        out->code = (unsigned long)WTERMSIG(status);
    } else {
        out->end = CR__EXITED;
        out->code = (unsigned long)WEXITSTATUS(status);
    }
}
