/* The POSIX side of the Criterion stand-in's runner (runner.h), for a
 * native build without Criterion (MPROC_TEST_SHIM: the ThreadSanitizer
 * build, where BoxFort's arena collides with TSan's shadow memory).
 *
 * Each test runs in a fresh copy of this executable, started by
 * posix_spawn in a process group of its own: a timeout kills the group,
 * and when the test ends whatever it left running in the group is killed
 * too, while its exited leader still holds the group's id (so the id
 * cannot name another group yet). A SIGCHLD handler writing to a pipe
 * lets the parent wait in poll for any test's end or the nearest timeout.
 * With several tests at once, each one's output goes to a temporary file
 * of its own, handed back whole when it ends. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
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

/* This executable: the path /proc/self/exe links to where there is one
 * (read, not executed: under valgrind the link is made to name the
 * program, but executing /proc/self/exe would start valgrind's own tool
 * as the program), else argv[0] (searched in PATH when it has no slash).
 * OUT >= 0: the child's stdout and stderr go there. */
static int start_child(const char *argv0, const char *name, int out, pid_t *pid)
{
    static char exe[PATH_MAX];
    if (!exe[0]) {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
    }
    bool found = exe[0] != 0;
    char *argv[] = {(char *)argv0, CR__RUN_FLAG, (char *)name, NULL};
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc) return rc;
    if (out >= 0) {
        rc = posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
        if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, out, STDERR_FILENO);
    }
    posix_spawnattr_t attr;
    if (!rc) rc = posix_spawnattr_init(&attr);
    if (rc) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigset_t none;
    sigemptyset(&none);
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    if (!rc) rc = posix_spawnattr_setpgroup(&attr, 0);
    if (!rc) rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc)
        rc = found ? posix_spawn(pid, exe, &fa, &attr, argv, environ)
                   : posix_spawnp(pid, argv0, &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

/* A test running. */
struct slot {
    size_t i;
    pid_t pid;
    double start;
    FILE *output; /* NULL: not captured */
};

/* True when the child has exited (left unreaped, so that its process
 * group's id stays ours until the group is killed). */
static bool has_exited(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0) return si.si_pid == pid;
    return errno != EINTR; /* cannot watch it: the waitpid in finish tells */
}

static void finish(struct slot *s, bool exited, struct cr__outcome *out)
{
    out->secs = now() - s->start;
    /* Whatever the test started and left running goes with it (and the
     * test itself on timeout). */
    kill(-s->pid, SIGKILL);
    int status = 0;
    pid_t got;
    while ((got = waitpid(s->pid, &status, 0)) < 0 && errno == EINTR)
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

/* Starts test I in S; false (and DONE called) when it could not start. */
static bool launch(const char *argv0, const char *name, size_t i, bool capture, struct slot *s,
                   cr__done_fn *done, void *ctx)
{
    struct cr__outcome o;
    memset(&o, 0, sizeof o);
    s->i = i;
    s->output = NULL;
    int rc = 0;
    /* tmpfile, not a pipe: a test that writes much never blocks on us. */
    if (capture && !(s->output = tmpfile())) rc = errno;
    if (!rc && s->output && fcntl(fileno(s->output), F_SETFD, FD_CLOEXEC)) rc = errno;
    if (!rc) {
        fflush(NULL);
        rc = watch_children()
                 ? start_child(argv0, name, s->output ? fileno(s->output) : -1, &s->pid)
                 : errno;
    }
    if (!rc) {
        s->start = now();
        return true;
    }
    o.end = CR__NOT_STARTED;
    snprintf(o.detail, sizeof o.detail, "%s", strerror(rc));
    if (s->output) fclose(s->output);
    done(i, &o, NULL, ctx);
    return false;
}

static void report(struct slot *s, bool exited, cr__done_fn *done, void *ctx)
{
    struct cr__outcome o;
    memset(&o, 0, sizeof o);
    finish(s, exited, &o);
    if (s->output) rewind(s->output);
    done(s->i, &o, s->output, ctx);
    if (s->output) fclose(s->output);
}

void cr__os_run_children(const char *argv0, size_t n, const char *const names[],
                         const double limits[], unsigned jobs, cr__done_fn *done, void *ctx)
{
    struct slot one, *slots = jobs > 1 ? calloc(jobs, sizeof *slots) : NULL;
    if (!slots) {
        slots = &one;
        jobs = 1;
    }
    bool capture = jobs > 1;
    size_t next = 0, running = 0;
    for (;;) {
        while (running < jobs && next < n) {
            if (launch(argv0, names[next], next, capture, &slots[running], done, ctx)) running++;
            next++;
        }
        if (!running) break;
        /* Report every test that ended or ran out of time; wait for the
         * next end or the nearest deadline. */
        double wait = -1;
        for (size_t k = 0; k < running;) {
            struct slot *s = &slots[k];
            bool exited = has_exited(s->pid);
            double left = limits[s->i] - (now() - s->start);
            if (exited || left <= 0) {
                report(s, exited, done, ctx);
                slots[k] = slots[--running];
                wait = 0;
                continue;
            }
            if (wait < 0 || left < wait) wait = left;
            k++;
        }
        if (wait <= 0) continue;
        struct pollfd p = {chld_pipe[0], POLLIN, 0};
        double ms = wait * 1000.0 + 1.0;
        poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        char drain[64];
        while (read(chld_pipe[0], drain, sizeof drain) > 0)
            continue;
    }
    if (slots != &one) free(slots);
}

unsigned cr__os_default_jobs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (unsigned)n : 1;
}
