/* Interoperability with the real CPython: a C listener with Python's
 * multiprocessing.connection.Client, a Python Listener with a C client,
 * messages both ways (a 10 MiB one included) and wrong keys both ways.
 * python3 of the machine (3.11 speaks the legacy HMAC-MD5 handshake) and,
 * where pyenv has them, 3.12 and 3.13 (the "{sha256}" form). The Python
 * side is tests/py/mp_peer.py. POSIX only: it runs Python with posix_spawn. */
#if !defined(_WIN32)
#define _POSIX_C_SOURCE 200809L /* strdup, posix_spawn, glob */
#endif
#include "helpers.h"

#if defined(_WIN32)

Test(interop, posix_only)
{
    cr_skip_test("the CPython interop tests run on POSIX only (they posix_spawn python3)");
}

#else

#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PEER MPROC_TEST_PY_DIR "/mp_peer.py"
#define BIG (10u * 1024 * 1024)
#define KEY "interop key"
#define KEY_HEX "696e7465726f70206b6579"
#define WRONG_KEY_HEX "77726f6e67"

/* The interpreter to run, or NULL after cr_skip_test-worthy absence. An
 * empty version means python3 from PATH; else pyenv's newest 3.<minor>. */
static char *find_python(const char *minor)
{
    if (!*minor) {
        const char *path = getenv("PATH");
        char *copy = strdup(path ? path : "");
        char *found = NULL;
        for (char *dir = strtok(copy, ":"); dir && !found; dir = strtok(NULL, ":")) {
            char cand[4096];
            snprintf(cand, sizeof cand, "%s/python3", dir);
            if (!access(cand, X_OK)) found = strdup(cand);
        }
        free(copy);
        return found;
    }
    const char *root = getenv("PYENV_ROOT");
    const char *home = getenv("HOME");
    char pat[4096];
    if (root)
        snprintf(pat, sizeof pat, "%s/versions/3.%s.*/bin/python3", root, minor);
    else
        snprintf(pat, sizeof pat, "%s/.pyenv/versions/3.%s.*/bin/python3", home ? home : "", minor);
    glob_t g;
    char *found = NULL;
    if (!glob(pat, 0, NULL, &g)) {
        if (g.gl_pathc) found = strdup(g.gl_pathv[g.gl_pathc - 1]);
        globfree(&g);
    }
    return found;
}

static char *python_or_skip(const char *minor)
{
    char *py = find_python(minor);
    if (!py) {
        if (*minor)
            cr_skip_test("no CPython 3.%s here (looked for ~/.pyenv/versions/3.%s.*/bin/python3)",
                         minor, minor);
        else
            cr_skip_test("no python3 on PATH");
    }
    return py;
}

typedef struct {
    pid_t pid;
    FILE *out; /* the peer's stdout */
} peer_t;

/* Runs argv, its stdout on a pipe. */
static peer_t run(char *const argv[])
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    peer_t p;
    int err = posix_spawn(&p.pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    cr_assert_eq(err, 0, "posix_spawn(%s): %s", argv[0], strerror(err));
    p.out = fdopen(fds[0], "r");
    cr_assert(p.out != NULL);
    return p;
}

/* mp_peer.py role address key, run by python. */
static peer_t peer_start(const char *python, const char *role, const char *address,
                         const char *key_hex)
{
    char *argv[] = {(char *)python,  (char *)PEER,    (char *)role,
                    (char *)address, (char *)key_hex, NULL};
    return run(argv);
}

/* The peer's exit code (-N for signal N). */
static int peer_wait(peer_t *p)
{
    int st;
    while (waitpid(p->pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
    fclose(p->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void expect_prefix(mp_conn_t *c, const char *prefix)
{
    char buf[256];
    size_t n = 0;
    ASSERT_OK(mp_conn_recv_bytes_into(c, buf, sizeof buf, &n));
    cr_assert(n >= strlen(prefix) && !memcmp(buf, prefix, strlen(prefix)), "got \"%.*s\"", (int)n,
              buf);
}

/* The C half of mp_peer.py's exchange. */
static void exchange(mp_conn_t *c)
{
    ASSERT_OK(mp_conn_send_bytes(c, "hello from C", 12));
    expect_prefix(c, "hello from Python 3.");
    ASSERT_OK(mp_conn_send_bytes(c, "", 0));
    expect_msg(c, "");
    uint8_t *big = malloc(BIG);
    cr_assert(big != NULL);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (uint8_t)(i % 251);
    ASSERT_OK(mp_conn_send_bytes(c, big, BIG));
    void *back;
    size_t n;
    ASSERT_OK(mp_conn_recv_bytes(c, &back, &n));
    cr_assert_eq(n, BIG);
    const uint8_t *b = back;
    for (size_t i = 0; i < BIG; i++)
        if (b[i] != big[BIG - 1 - i]) cr_assert_fail("byte %zu of the 10 MiB echo differs", i);
    mp_free(back);
    free(big);
    ASSERT_OK(mp_conn_send_bytes(c, "bye", 3));
}

static void unix_address(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "unix:/tmp/mproc-interop-%lld-%s.sock", (long long)getpid(), tag);
}

/* A C listener (with opts) and a Python client. */
static void c_listener_py_client(const char *minor, const char *address,
                                 const mp_listener_opts_t *o, const char *client_key,
                                 int want_accept, int want_python)
{
    char *py = python_or_skip(minor);
    mp_listener_t *l;
    ASSERT_OK(mp_listener_create_ex(&l, address, o));
    peer_t p = peer_start(py, "connect", mp_listener_address(l), client_key);
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_listener_accept(l, JOIN_MS, &c), want_accept);
    if (!want_accept) {
        exchange(c);
        mp_conn_free(c);
    }
    cr_assert_eq(peer_wait(&p), want_python, "%s exited with another code", py);
    mp_listener_free(l);
    free(py);
}

/* A Python listener and a C client. */
static void py_listener_c_client(const char *minor, const char *address, const char *py_key,
                                 const mp_client_opts_t *o, int want_connect, int want_python)
{
    char *py = python_or_skip(minor);
    peer_t p = peer_start(py, "listen", address, py_key);
    char real[512];
    cr_assert(fgets(real, sizeof real, p.out) != NULL, "%s printed no address", py);
    real[strcspn(real, "\n")] = 0;
    mp_conn_t *c = NULL;
    ASSERT_RC(mp_client_connect_ex(real, o, &c), want_connect);
    if (!want_connect) {
        exchange(c);
        mp_conn_free(c);
    }
    cr_assert_eq(peer_wait(&p), want_python, "%s exited with another code", py);
    free(py);
}

/* Whether python speaks only the legacy handshake (CPython <= 3.11). */
static bool python_is_legacy(const char *python)
{
    char *argv[] = {(char *)python, "-c", "import sys; print(sys.version_info < (3, 12))", NULL};
    peer_t p = run(argv);
    char line[16] = "";
    cr_assert(fgets(line, sizeof line, p.out) != NULL);
    cr_assert_eq(peer_wait(&p), 0);
    return !strncmp(line, "True", 4);
}

static const mp_listener_opts_t keyed = {.authkey = KEY, .keylen = sizeof KEY - 1};
static const mp_client_opts_t client_keyed = {.authkey = KEY, .keylen = sizeof KEY - 1};
static const mp_client_opts_t client_wrong = {.authkey = "wrong", .keylen = 5};

/* Each interpreter: both directions over TCP and a Unix socket, wrong
 * keys both ways. */
#define INTEROP_TESTS(tag, minor)                                                                  \
    Test(interop, tag##_c_listener_tcp, .timeout = TEST_TIMEOUT)                                   \
    {                                                                                              \
        c_listener_py_client(minor, "tcp://127.0.0.1:0", &keyed, KEY_HEX, 0, 0);                   \
    }                                                                                              \
    Test(interop, tag##_c_listener_unix, .timeout = TEST_TIMEOUT)                                  \
    {                                                                                              \
        char a[128];                                                                               \
        unix_address(a, sizeof a, #tag "c");                                                       \
        c_listener_py_client(minor, a, &keyed, KEY_HEX, 0, 0);                                     \
    }                                                                                              \
    Test(interop, tag##_py_listener_tcp, .timeout = TEST_TIMEOUT)                                  \
    {                                                                                              \
        py_listener_c_client(minor, "tcp://127.0.0.1:0", KEY_HEX, &client_keyed, 0, 0);            \
    }                                                                                              \
    Test(interop, tag##_py_listener_unix, .timeout = TEST_TIMEOUT)                                 \
    {                                                                                              \
        char a[128];                                                                               \
        unix_address(a, sizeof a, #tag "p");                                                       \
        py_listener_c_client(minor, a, KEY_HEX, &client_keyed, 0, 0);                              \
    }                                                                                              \
    Test(interop, tag##_wrong_key_python_client, .timeout = TEST_TIMEOUT)                          \
    {                                                                                              \
        c_listener_py_client(minor, "tcp://127.0.0.1:0", &keyed, WRONG_KEY_HEX, MP_EAUTH, 3);      \
    }                                                                                              \
    Test(interop, tag##_wrong_key_c_client, .timeout = TEST_TIMEOUT)                               \
    {                                                                                              \
        py_listener_c_client(minor, "tcp://127.0.0.1:0", KEY_HEX, &client_wrong, MP_EAUTH, 3);     \
    }                                                                                              \
    Test(interop, tag##_no_key_both_sides, .timeout = TEST_TIMEOUT)                                \
    {                                                                                              \
        mp_listener_opts_t o = {.allow_no_authkey = true};                                         \
        c_listener_py_client(minor, "tcp://127.0.0.1:0", &o, "-", 0, 0);                           \
    }

INTEROP_TESTS(python3, "")
INTEROP_TESTS(py312, "12")
INTEROP_TESTS(py313, "13")

/* Our legacy challenge (20 bytes, MD5) to a modern Python, and a modern
 * Python asked for sha384: the compatibility switches of RESEARCH §2.5. */
Test(interop, py312_legacy_md5_challenge, .timeout = TEST_TIMEOUT)
{
    mp_listener_opts_t o = keyed;
    o.digest = "md5";
    c_listener_py_client("12", "tcp://127.0.0.1:0", &o, KEY_HEX, 0, 0);
}

Test(interop, py313_sha384_challenges_both_ways, .timeout = TEST_TIMEOUT)
{
    mp_listener_opts_t o = keyed;
    o.digest = "sha384";
    c_listener_py_client("13", "tcp://127.0.0.1:0", &o, KEY_HEX, 0, 0);
    mp_client_opts_t co = client_keyed;
    co.digest = "sha384";
    py_listener_c_client("13", "tcp://127.0.0.1:0", KEY_HEX, &co, 0, 0);
}

/* refuse_md5 keeps a legacy (3.11) peer out, in both directions. */
Test(interop, python3_refuse_md5_against_a_legacy_peer, .timeout = TEST_TIMEOUT)
{
    char *py = python_or_skip("");
    bool legacy = python_is_legacy(py);
    free(py);
    if (!legacy) cr_skip_test("python3 here speaks the modern handshake: nothing to refuse");
    mp_listener_opts_t o = keyed;
    o.refuse_md5 = true;
    mp_client_opts_t co = client_keyed;
    co.refuse_md5 = true;
    c_listener_py_client("", "tcp://127.0.0.1:0", &o, KEY_HEX, MP_EAUTH, 3);
    /* We hang up on its MD5 challenge: Python's accept sees EOFError. */
    py_listener_c_client("", "tcp://127.0.0.1:0", KEY_HEX, &co, MP_EAUTH, 5);
}

#endif
