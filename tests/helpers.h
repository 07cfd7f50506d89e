/* Assertions shared by the tests. */
#ifndef MP_TEST_HELPERS_H
#define MP_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <mproc.h>

/* Generous: a loaded CI machine or Wine may be slow, and a timeout here
 * only turns a hang into a failure. */
#define JOIN_MS 60000L
#define TEST_TIMEOUT 120

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        cr_assert_eq(rc_, 0, "%s -> %s: %s", #expr, mp_err_name(rc_), mp_last_error_detail());     \
    } while (0)

#define ASSERT_RC(expr, want)                                                                      \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        cr_assert_eq(rc_, (want), "%s -> %s, wanted %s: %s", #expr, mp_err_name(rc_),              \
                     mp_err_name(want), mp_last_error_detail());                                   \
    } while (0)

/* Starts target with args in a new process (the suite's start method). */
static inline mp_process_t *start_proc(mp_target_fn target, mp_args_t *args)
{
    mp_process_opts_t o = {.target = target, .args = args};
    mp_process_t *p = NULL;
    ASSERT_OK(mp_process_create(&p, &o));
    ASSERT_OK(mp_process_start(p));
    return p;
}

static inline int join_code(mp_process_t *p)
{
    int code = -1000;
    ASSERT_OK(mp_process_join(p, JOIN_MS));
    ASSERT_OK(mp_process_exitcode(p, &code));
    return code;
}

/* Receives one message and checks it is the string s. */
static inline void expect_msg(mp_conn_t *c, const char *s)
{
    void *buf = NULL;
    size_t len = 0;
    ASSERT_OK(mp_conn_recv_bytes(c, &buf, &len));
    cr_assert_eq(len, strlen(s), "got %zu bytes, wanted \"%s\"", len, s);
    cr_assert(!memcmp(buf, s, len), "got \"%.*s\", wanted \"%s\"", (int)len, (char *)buf, s);
    mp_free(buf);
}

/* How many kills a kill-at-random test makes: n, or fewer when the
 * environment variable MPROC_TEST_KILLS says so (scripts/valgrind.sh and
 * scripts/tsan.sh: the same paths under the checker, a smaller sample of
 * kill points, as each kill costs a process start there). */
static inline int test_kills(int n)
{
    const char *env = getenv("MPROC_TEST_KILLS");
    int want = env ? atoi(env) : 0;
    return want > 0 && want < n ? want : n;
}

#endif
