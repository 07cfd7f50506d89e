/* ZeroMQ's ipc transport through its C API on mproc-bench's workloads: a
 * forked child with a context of its own (a context must not cross fork)
 * on the other end of an ipc:// socket in a temporary directory. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "../bench.h"
#include "../raw.h"

#define SMALL 64
#define BIG (1u << 20)
#define WARM 100

typedef struct {
    void *ctx, *sock;
    char endpoint[128];
    /* The parent closes it once it has every message: the child stays
     * until then, since a PULL socket may drop what is queued from a peer
     * that has gone. */
    int done;
} zend_t;

static int zopen(zend_t *z, int type, bool bind, const char *endpoint)
{
    snprintf(z->endpoint, sizeof z->endpoint, "%s", endpoint);
    z->ctx = zmq_ctx_new();
    z->sock = z->ctx ? zmq_socket(z->ctx, type) : NULL;
    if (!z->sock) return -1;
    int zero = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof zero);
    return bind ? zmq_bind(z->sock, endpoint) : zmq_connect(z->sock, endpoint);
}

static void zclose(zend_t *z)
{
    if (z->sock) zmq_close(z->sock);
    if (z->ctx) zmq_ctx_term(z->ctx);
}

static int zsend(zend_t *z, const void *p, size_t n)
{
    while (zmq_send(z->sock, p, n, 0) < 0)
        if (zmq_errno() != EINTR) return -1;
    return 0;
}

static int zrecv(zend_t *z, void *p, size_t cap)
{
    int n;
    while ((n = zmq_recv(z->sock, p, cap, 0)) < 0)
        if (zmq_errno() != EINTR) return -1;
    return n;
}

static void endpoint_name(char *buf, size_t cap)
{
    static int counter;
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "ipc://%s/mproc-bench-zmq-%ld-%d", tmp && *tmp ? tmp : "/tmp",
             (long)getpid(), ++counter);
}

typedef enum { Z_ECHO, Z_PUSH } zrole_t;

/* The child: echoes on a PAIR, or pushes total messages of n bytes, each
 * carrying its sequence number at its start. */
static int child(zrole_t role, const char *endpoint, long total, size_t n, int done)
{
    zend_t z = {0};
    int code = 0;
    uint8_t *buf = calloc(1, n > SMALL ? n : SMALL);
    if (!buf || zopen(&z, role == Z_ECHO ? ZMQ_PAIR : ZMQ_PUSH, false, endpoint)) code = 41;
    for (long i = 0; !code && i < total; i++) {
        if (role == Z_ECHO) {
            int got = zrecv(&z, buf, SMALL);
            if (got != SMALL || zsend(&z, buf, SMALL)) code = 42;
        } else {
            memcpy(buf, &i, sizeof i);
            if (zsend(&z, buf, n)) code = 43;
        }
    }
    if (role == Z_PUSH && !code) {
        /* zmq_ctx_term then waits until the parent has taken every
         * message, rather than dropping those still queued. */
        int forever = -1;
        zmq_setsockopt(z.sock, ZMQ_LINGER, &forever, sizeof forever);
    }
    char c;
    while (read(done, &c, 1) < 0 && errno == EINTR)
        ;
    zclose(&z);
    free(buf);
    return code;
}

static int start(zrole_t role, int type, long total, size_t n, zend_t *z, pid_t *pid)
{
    char endpoint[128];
    endpoint_name(endpoint, sizeof endpoint);
    if (zopen(z, type, true, endpoint)) {
        zclose(z);
        return bench_fail("zmq bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
    }
    int done[2];
    if (pipe(done) < 0) {
        zclose(z);
        return bench_fail("pipe: %s", strerror(errno));
    }
    fflush(NULL);
    *pid = fork();
    if (*pid == 0) {
        close(done[1]);
        _exit(child(role, endpoint, total, n, done[0]));
    }
    close(done[0]);
    z->done = done[1];
    if (*pid < 0) {
        close(z->done);
        zclose(z);
        return bench_fail("fork: %s", strerror(errno));
    }
    return 0;
}

static int finish(zend_t *z, pid_t pid, int rc)
{
    close(z->done);
    zclose(z);
    unlink(z->endpoint + strlen("ipc://"));
    int st = 0;
    if (rc) kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (!rc && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        rc = bench_fail("the zmq child failed (status %d)", st);
    return rc;
}

int zmq_peer_pair_pingpong(long count, double *us)
{
    zend_t z = {0};
    pid_t pid;
    int rc = start(Z_ECHO, ZMQ_PAIR, count + WARM, SMALL, &z, &pid);
    if (rc) return rc;
    uint8_t msg[SMALL], back[SMALL];
    for (int i = 0; i < SMALL; i++)
        msg[i] = (uint8_t)i;
    uint64_t t0 = 0;
    for (long i = 0; !rc && i < count + WARM; i++) {
        if (i == WARM) t0 = raw_now_ns();
        memcpy(msg, &i, sizeof i);
        if (zsend(&z, msg, SMALL) || zrecv(&z, back, SMALL) != SMALL || memcmp(msg, back, SMALL))
            rc = bench_fail("zmq PAIR: round trip %ld failed or differs", i);
    }
    *us = (double)(raw_now_ns() - t0) / 1e3 / (double)count;
    return finish(&z, pid, rc);
}

static int pull_stream(long count, size_t n, double *seconds)
{
    zend_t z = {0};
    pid_t pid;
    int rc = start(Z_PUSH, ZMQ_PULL, count, n, &z, &pid);
    if (rc) return rc;
    uint8_t *buf = malloc(n);
    if (!buf) rc = bench_fail("zmq: out of memory");
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++) {
        long seq = -1;
        int got = zrecv(&z, buf, n);
        if (got == (int)n) memcpy(&seq, buf, sizeof seq);
        if (seq != i) rc = bench_fail("zmq PULL: message %ld: %d bytes, number %ld", i, got, seq);
    }
    *seconds = (double)(raw_now_ns() - t0) / 1e9;
    free(buf);
    return finish(&z, pid, rc);
}

int zmq_peer_push_pull_64(long count, double *mitems)
{
    double s = 0;
    int rc = pull_stream(count, SMALL, &s);
    *mitems = (double)count / s / 1e6;
    return rc;
}

int zmq_peer_push_pull_1m(long count, double *gbs)
{
    double s = 0;
    int rc = pull_stream(count, BIG, &s);
    *gbs = (double)count * BIG / s / 1e9;
    return rc;
}
