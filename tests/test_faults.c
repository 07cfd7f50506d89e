/* Faults from outside: failing OS calls (through the MPROC_FAULT_INJECT
 * seam, src/common/fault.c), exhausted descriptors, signal storms, parents
 * that die, handles closed early, stale references. Each test states what
 * must hold afterwards and checks it. docs/RELIABILITY.md catalogues them. */
#if !defined(_WIN32)
#define _DEFAULT_SOURCE /* setenv, setitimer, nanosleep under -std=c11 */
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#endif

#include "helpers.h"

static void set_fault(const char *points)
{
#if defined(_WIN32)
    _putenv_s("MPROC_FAULT_INJECT", points ? points : "");
#else
    if (points)
        setenv("MPROC_FAULT_INJECT", points, 1);
    else
        unsetenv("MPROC_FAULT_INJECT");
#endif
}

static void need_fault_seam(void)
{
#if !defined(MPROC_FAULT_INJECTION)
    cr_skip("built without MPROC_FAULT_INJECTION");
#endif
}

/* ---- freeing NULL ---- */

/* Must hold: every *_free(NULL) is a no-op, as free(NULL) is, and leaves
 * the detail of the last real failure in place. */
Test(faults, free_null_keeps_the_last_detail, .timeout = TEST_TIMEOUT)
{
    mp_shm_t *s;
    ASSERT_RC(mp_shm_open(&s, "no-such-segment-at-all"), MP_ENOTFOUND);
    char before[512];
    snprintf(before, sizeof before, "%s", mp_last_error_detail());
    cr_assert(before[0], "a failure leaves a detail");
    mp_conn_free(NULL);
    mp_process_free(NULL);
    mp_shm_free(NULL);
    mp_pool_free(NULL);
    mp_result_free(NULL);
    mp_iter_free(NULL);
    mp_args_free(NULL);
    mp_listener_free(NULL);
    mp_lock_free(NULL);
    mp_rlock_free(NULL);
    mp_semaphore_free(NULL);
    mp_event_free(NULL);
    mp_condition_free(NULL);
    mp_barrier_free(NULL);
    mp_value_free(NULL);
    mp_array_free(NULL);
    mp_queue_free(NULL);
    mp_manager_free(NULL);
    mp_dict_free(NULL);
    mp_list_free(NULL);
    mp_iov_free(NULL, 3);
    cr_assert_str_eq(mp_last_error_detail(), before);
}

/* ---- a stale reference ---- */

/* Must hold: a blob naming a segment whose name was removed and made
 * again names nothing (MP_ENOTFOUND), never the new object. */
Test(faults, stale_by_name_reference_is_not_found, .timeout = TEST_TIMEOUT)
{
    char name[40];
    snprintf(name, sizeof name, "tstale%lld", (long long)mp_getpid());
    mp_shm_t *s, *n;
    ASSERT_OK(mp_shm_create(&s, name, 4096));
    void *blob;
    size_t len;
    ASSERT_OK(mp_handle_export(MP_HANDLE(s), &blob, &len));
    ASSERT_OK(mp_shm_unlink(s));
    mp_shm_free(s);
    ASSERT_OK(mp_shm_create(&n, name, 4096));
    strcpy(mp_shm_ptr(n), "new");
    mp_handle_t *h = NULL;
    ASSERT_RC(mp_handle_import(blob, len, &h), MP_ENOTFOUND);
    cr_assert_null(h);
    mp_free(blob);
    ASSERT_OK(mp_shm_unlink(n));
    mp_shm_free(n);
}

/* ---- pidfd_open refused (old kernel, seccomp) ---- */

static int exit_with(mp_args_t *a)
{
    int64_t v = 0;
    if (mp_args_int(a, 0, &v)) return 100;
    return (int)v;
}

static int block_on_conn(mp_args_t *a)
{
    mp_conn_t *c;
    void *buf;
    size_t n;
    if (mp_args_conn(a, 0, &c)) return 100;
    return mp_conn_recv_bytes(c, &buf, &n) == MP_EOF ? 0 : 101;
}

/* Must hold (Linux): with pidfd_open failing ENOSYS every child is still
 * tracked: join with and without a timeout, mp_wait, kill, exit codes. On
 * other systems the point does not exist and the same checks run. */
Test(faults, children_tracked_without_pidfd, .timeout = TEST_TIMEOUT)
{
    need_fault_seam();
    set_fault("pidfd_open");
    mp_process_t *p[3];
    for (int i = 0; i < 3; i++) {
        mp_args_t *a;
        ASSERT_OK(mp_args_create(&a));
        ASSERT_OK(mp_args_add_int(a, 40 + i));
        p[i] = start_proc(exit_with, a);
        mp_args_free(a);
    }
    mp_handle_t *hs[3] = {MP_HANDLE(p[0]), MP_HANDLE(p[1]), MP_HANDLE(p[2])};
    size_t ready[3], nready = 0;
    ASSERT_OK(mp_wait(hs, 3, JOIN_MS, ready, &nready));
    cr_assert_geq(nready, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(join_code(p[i]), 40 + i);
    ASSERT_OK(mp_process_join(p[0], MP_FOREVER)); /* joined again: same answer */

    /* One blocks until killed: a timed join times out, then sees -9. */
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    mp_process_t *b = start_proc(block_on_conn, a);
    mp_args_free(a);
    mp_conn_free(theirs);
    ASSERT_RC(mp_process_join(b, 50), MP_ETIMEDOUT);
    cr_assert_eq(mp_process_is_alive(b), 1);
    ASSERT_OK(mp_process_kill(b));
    cr_assert_eq(join_code(b), -9);
    set_fault(NULL);
    for (int i = 0; i < 3; i++)
        mp_process_free(p[i]);
    mp_process_free(b);
    mp_conn_free(mine);
}

/* ---- shared memory creation failing ---- */

/* Must hold: a full /dev/shm (a refused commit charge on Windows) is
 * MP_ENOMEM from every creator, leaves nothing behind, and creation works
 * again once there is room. */
Test(faults, shared_memory_exhausted, .timeout = TEST_TIMEOUT)
{
    need_fault_seam();
    set_fault("shm_nospace");
    mp_shm_t *s = NULL;
    mp_lock_t *l = NULL;
    mp_value_t *v = NULL;
    mp_semaphore_t *sem = NULL;
    for (int i = 0; i < 50; i++) { /* repeated: no leak adds up to a crash */
        ASSERT_RC(mp_shm_create(&s, NULL, 1 << 20), MP_ENOMEM);
        ASSERT_RC(mp_lock_create(&l), MP_ENOMEM);
        ASSERT_RC(mp_value_create(&v, 8), MP_ENOMEM);
        ASSERT_RC(mp_semaphore_create(&sem, 1, 0), MP_ENOMEM);
    }
    cr_assert(mp_last_error_detail()[0], "the failure is explained");
    set_fault(NULL);
    ASSERT_OK(mp_shm_create(&s, NULL, 1 << 20));
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_lock_acquire(l, 0));
    ASSERT_OK(mp_lock_release(l));
    mp_lock_free(l);
    mp_shm_free(s);
}

/* ---- closing handles early ---- */

static int recv_code(mp_args_t *a)
{
    mp_conn_t *c;
    void *buf;
    size_t n;
    if (mp_args_conn(a, 0, &c)) return 100;
    return mp_conn_recv_bytes(c, &buf, &n) == MP_ECLOSED ? 7 : 101;
}

/* Must hold: a connection closed before the child starts is never a live
 * end in the child: spawn refuses to pass it (MP_ECLOSED from start), fork
 * hands over the closed object (MP_ECLOSED on use there); either way the
 * process can be freed. A parent closing its end while the child blocks
 * in recv ends that recv with MP_EOF. */
Test(faults, handles_closed_early, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *mine, *theirs;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_conn_close(theirs));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    mp_process_t *p = NULL;
    mp_process_opts_t o = {.target = recv_code, .args = a};
    ASSERT_OK(mp_process_create(&p, &o));
    int rc = mp_process_start(p);
    if (rc)
        cr_assert_eq(rc, MP_ECLOSED, "start: %s", mp_err_name(rc));
    else
        cr_assert_eq(join_code(p), 7, "the child did not see a closed end");
    mp_process_free(p);
    mp_args_free(a);
    mp_conn_free(theirs);
    mp_conn_free(mine);

    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    p = start_proc(block_on_conn, a);
    mp_args_free(a);
    mp_conn_free(theirs);
    mp_conn_free(mine); /* the child's recv must end with MP_EOF: exit 0 */
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
}

/* ---- a parent dying outright ---- */

static int wait_eof_then_report(mp_args_t *a)
{
    mp_conn_t *from_parent, *report;
    if (mp_args_conn(a, 0, &from_parent) || mp_args_conn(a, 1, &report)) return 100;
    void *buf;
    size_t n;
    int rc = mp_conn_recv_bytes(from_parent, &buf, &n);
    return mp_conn_send_bytes(report, rc == MP_EOF ? "eof" : "other", rc == MP_EOF ? 3 : 5) ? 101
                                                                                            : 0;
}

/* The middle process: starts a non-daemon child holding a pipe to it,
 * says "up", then blocks until it is killed. */
static int start_child_then_block(mp_args_t *a)
{
    mp_conn_t *report, *up;
    if (mp_args_conn(a, 0, &report) || mp_args_conn(a, 1, &up)) return 10;
    mp_conn_t *keep, *give;
    if (mp_pipe(&keep, &give, true)) return 11;
    mp_args_t *ca;
    if (mp_args_create(&ca) || mp_args_add_handle(ca, MP_HANDLE(give)) ||
        mp_args_add_handle(ca, MP_HANDLE(report)))
        return 12;
    mp_process_opts_t o = {.target = wait_eof_then_report, .args = ca};
    mp_process_t *c;
    if (mp_process_create(&c, &o) || mp_process_start(c)) return 13;
    mp_conn_close(give);
    mp_conn_close(report);
    if (mp_conn_send_bytes(up, "up", 2)) return 14;
    void *buf;
    size_t n;
    mp_conn_recv_bytes(up, &buf, &n); /* never answered: killed here */
    return 15;
}

/* Must hold: a non-daemon child outlives its killed parent and sees EOF on
 * the pipe the parent held (the daemon case: test_process.c,
 * daemon_dies_with_killed_parent). */
Test(faults, orphan_sees_eof_from_killed_parent, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *rep_r, *rep_w, *up_me, *up_mid;
    ASSERT_OK(mp_pipe(&rep_r, &rep_w, false));
    ASSERT_OK(mp_pipe(&up_me, &up_mid, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(rep_w)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(up_mid)));
    mp_process_t *p = start_proc(start_child_then_block, a);
    mp_args_free(a);
    mp_conn_free(rep_w);
    mp_conn_free(up_mid);
    expect_msg(up_me, "up");
    ASSERT_OK(mp_process_kill(p));
    cr_assert_eq(join_code(p), -9);
    ASSERT_OK(mp_conn_poll(rep_r, JOIN_MS) == 1 ? 0 : MP_ETIMEDOUT);
    expect_msg(rep_r, "eof");
    mp_process_free(p);
    mp_conn_free(rep_r);
    mp_conn_free(up_me);
}

/* ---- POSIX only: descriptor exhaustion, signal storms ---- */

#if defined(_WIN32)
Test(faults, descriptors_exhausted)
{
    cr_skip("RLIMIT_NOFILE is POSIX; Windows handles have no per-process limit to lower");
}

Test(faults, eintr_storm_during_blocking_calls)
{
    cr_skip("setitimer and EINTR are POSIX; Win32 waits are not interrupted by APCs here");
}
#else

static int open_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0) n++;
    return n;
}

static bool clean_code(int rc)
{
    return rc == MP_ESYS || rc == MP_ENOMEM || rc == MP_EPROTO;
}

/* Must hold: with RLIMIT_NOFILE just above what is open, pipes, locks,
 * queues and processes fail with a clean MP_E* code and a detail, no
 * crash and no descriptor leaked; after raising the limit all work. */
Test(faults, descriptors_exhausted, .timeout = TEST_TIMEOUT)
{
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    int base = open_fds();
    struct rlimit low = {(rlim_t)base + 16, old.rlim_max};
    if (low.rlim_cur > old.rlim_cur) cr_skip("descriptor limit already lower than needed");
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    mp_conn_t *ends[64];
    int n = 0, rc = 0;
    while (n + 2 <= 64 && !(rc = mp_pipe(&ends[n], &ends[n + 1], true)))
        n += 2;
    if (!rc) {
        /* Valgrind keeps descriptors of its own and does not pass a
         * lowered limit on: nothing to test there. */
        for (int i = 0; i < n; i++)
            mp_conn_free(ends[i]);
        setrlimit(RLIMIT_NOFILE, &old);
        cr_skip("the lowered descriptor limit is not enforced here (valgrind?)");
    }
    cr_assert(clean_code(rc), "mp_pipe at the limit: %s", mp_err_name(rc));
    cr_assert(mp_last_error_detail()[0]);
    /* Every creator fails cleanly now. */
    mp_lock_t *l;
    mp_queue_t *q;
    mp_process_t *p;
    rc = mp_lock_create(&l);
    if (!rc) mp_lock_free(l);
    cr_assert(rc == 0 || clean_code(rc), "lock: %s", mp_err_name(rc));
    rc = mp_queue_create(&q, NULL);
    if (!rc) mp_queue_free(q);
    cr_assert(rc == 0 || clean_code(rc), "queue: %s", mp_err_name(rc));
    mp_process_opts_t o = {.target = exit_with};
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_int(a, 7));
    o.args = a;
    ASSERT_OK(mp_process_create(&p, &o));
    rc = mp_process_start(p);
    cr_assert(rc == 0 || clean_code(rc), "process: %s", mp_err_name(rc));
    if (!rc) cr_assert_eq(join_code(p), 7);
    mp_process_free(p);
    for (int i = 0; i < n; i++)
        mp_conn_free(ends[i]);
    cr_assert_eq(open_fds(), base, "descriptors leaked");
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    p = start_proc(exit_with, a);
    cr_assert_eq(join_code(p), 7);
    mp_process_free(p);
    mp_args_free(a);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void storm(bool on)
{
    struct itimerval t = {{0, on ? 1000 : 0}, {0, on ? 1000 : 0}};
    setitimer(ITIMER_REAL, &t, NULL);
}

static int hold_then_answer(mp_args_t *a)
{
    mp_conn_t *c;
    mp_lock_t *l;
    mp_queue_t *q;
    if (mp_args_conn(a, 0, &c) || mp_args_lock(a, 1, &l) || mp_args_queue(a, 2, &q)) return 100;
    if (mp_lock_acquire(l, JOIN_MS)) return 101;
    if (mp_conn_send_bytes(c, "held", 4)) return 102;
    /* The parent is blocked in acquire, under the storm, meanwhile. The nap
     * only makes that last; nothing depends on its length. */
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (mp_lock_release(l)) return 103;
    nanosleep(&ts, NULL);
    if (mp_queue_put(q, "item", 4, JOIN_MS)) return 104;
    nanosleep(&ts, NULL);
    return mp_conn_send_bytes(c, "answer", 6) ? 105 : 42;
}

/* Must hold: with SIGALRM every millisecond (a handler without SA_RESTART)
 * blocking recv, lock acquire, queue get, mp_wait and join give their
 * normal results; none returns an EINTR-like error. */
Test(faults, eintr_storm_during_blocking_calls, .timeout = TEST_TIMEOUT)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
    mp_conn_t *mine, *theirs;
    mp_lock_t *l;
    mp_queue_t *q;
    ASSERT_OK(mp_pipe(&mine, &theirs, true));
    ASSERT_OK(mp_lock_create(&l));
    ASSERT_OK(mp_queue_create(&q, NULL));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(theirs)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(l)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(q)));
    storm(true);
    mp_process_t *p = start_proc(hold_then_answer, a);
    mp_args_free(a);
    expect_msg(mine, "held");
    ASSERT_OK(mp_lock_acquire(l, JOIN_MS));
    ASSERT_OK(mp_lock_release(l));
    void *buf;
    size_t len;
    ASSERT_OK(mp_queue_get(q, &buf, &len, JOIN_MS));
    cr_assert_eq(len, 4);
    mp_free(buf);
    mp_handle_t *hs[] = {MP_HANDLE(mine)};
    size_t ready[1], nready = 0;
    ASSERT_OK(mp_wait(hs, 1, JOIN_MS, ready, &nready));
    cr_assert_eq(nready, 1);
    expect_msg(mine, "answer");
    ASSERT_OK(mp_process_join(p, MP_FOREVER));
    int code = 0;
    ASSERT_OK(mp_process_exitcode(p, &code));
    storm(false);
    cr_assert_eq(code, 42);
    cr_assert_gt(alarms, 10, "the storm happened (%d signals)", (int)alarms);
    mp_process_free(p);
    mp_queue_free(q);
    mp_lock_free(l);
    mp_conn_free(theirs);
    mp_conn_free(mine);
}
#endif
