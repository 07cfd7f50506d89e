/* Process: start, join, exit codes, signals, names, args, daemons. */
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "platform.h"
#include "testlib.h"

static int exit_with_arg(mp_args_t *a)
{
    int64_t v = -1;
    return mp_args_int(a, 0, &v) ? 99 : (int)v;
}

Test(process, exit_code_and_state, .timeout = TEST_TIMEOUT)
{
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_int(a, 7));
    mp_process_opts_t o = {.target = exit_with_arg, .args = a};
    mp_process_t *p;
    ASSERT_OK(mp_process_create(&p, &o));
    mp_args_free(a); /* create copied what it needs */
    ASSERT_RC(mp_process_join(p, 0), MP_ESTATE);
    ASSERT_RC(mp_process_exitcode(p, &(int){0}), MP_ESTATE);
    cr_assert_eq(mp_process_is_alive(p), 0);
    ASSERT_OK(mp_process_start(p));
    ASSERT_RC(mp_process_start(p), MP_ESTATE);
    cr_assert_gt(mp_process_pid(p), 0);
    cr_assert_eq(join_code(p), 7);
    cr_assert_eq(mp_process_is_alive(p), 0);
    ASSERT_OK(mp_process_join(p, 0)); /* joining again is fine */
    mp_process_free(p);
}

static int report_identity(mp_args_t *a)
{
    mp_conn_t *c;
    int64_t parent = 0;
    const char *s = NULL;
    const void *b = NULL;
    size_t n = 0;
    if (mp_args_conn(a, 0, &c) || mp_args_int(a, 1, &parent) || mp_args_str(a, 2, &s) ||
        mp_args_bytes(a, 3, &b, &n))
        return 10;
    if (mp_args_count(a) != 4 || mp_args_int(a, 2, &parent) != MP_ETYPE ||
        mp_args_int(a, 9, &parent) != MP_EINVAL)
        return 11;
    char msg[256];
    snprintf(msg, sizeof msg, "%s|%d|%s|%zu|%d", mp_current_name(),
             mp_parent_pid() == (mp_pid_t)parent, s, n, n == 3 && !memcmp(b, "\0\1\2", 3));
    return mp_conn_send_bytes(c, msg, strlen(msg)) ? 12 : 0;
}

Test(process, args_name_and_parent_reach_the_child, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(w)));
    ASSERT_OK(mp_args_add_int(a, mp_getpid()));
    ASSERT_OK(mp_args_add_str(a, "héllo"));
    ASSERT_OK(mp_args_add_bytes(a, "\0\1\2", 3));
    mp_process_opts_t o = {.target = report_identity, .args = a, .name = "worker-7"};
    mp_process_t *p;
    ASSERT_OK(mp_process_create(&p, &o));
    cr_assert_str_eq(mp_process_name(p), "worker-7");
    ASSERT_OK(mp_process_start(p));
    mp_args_free(a);
    mp_conn_free(w);
    expect_msg(r, "worker-7|1|héllo|3|1");
    cr_assert_eq(join_code(p), 0);
    cr_assert_str_eq(mp_current_name(), "MainProcess");
    mp_process_free(p);
    mp_conn_free(r);
}

static int noop(mp_args_t *a)
{
    (void)a;
    return 0;
}

Test(process, default_names_count_from_one, .timeout = TEST_TIMEOUT)
{
    mp_process_opts_t o = {.target = noop};
    mp_process_t *p1, *p2;
    ASSERT_OK(mp_process_create(&p1, &o));
    ASSERT_OK(mp_process_create(&p2, &o));
    int n1 = 0, n2 = 0;
    cr_assert_eq(sscanf(mp_process_name(p1), "Process-%d", &n1), 1);
    cr_assert_eq(sscanf(mp_process_name(p2), "Process-%d", &n2), 1);
    cr_assert_eq(n2, n1 + 1);
    mp_process_free(p1);
    mp_process_free(p2);
}

/* Blocks until its connection reaches EOF: a child that runs until told. */
static int block_on_conn(mp_args_t *a)
{
    mp_conn_t *c;
    void *buf;
    size_t n;
    if (mp_args_conn(a, 0, &c)) return 10;
    int rc = mp_conn_recv_bytes(c, &buf, &n);
    return rc == MP_EOF ? 0 : 11;
}

static mp_process_t *start_blocked(mp_conn_t **keep)
{
    mp_conn_t *r, *w;
    ASSERT_OK(mp_pipe(&r, &w, false));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(r)));
    mp_process_t *p = start_proc(block_on_conn, a);
    mp_args_free(a);
    mp_conn_free(r);
    *keep = w;
    return p;
}

Test(process, join_timeout_then_release, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *w;
    mp_process_t *p = start_blocked(&w);
    ASSERT_RC(mp_process_join(p, 50), MP_ETIMEDOUT);
    cr_assert_eq(mp_process_is_alive(p), 1);
    ASSERT_RC(mp_process_exitcode(p, &(int){0}), MP_EBUSY);
    mp_conn_free(w); /* EOF lets the child finish */
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
}

Test(process, terminate_reads_minus_15, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *w;
    mp_process_t *p = start_blocked(&w);
    ASSERT_OK(mp_process_terminate(p));
    cr_assert_eq(join_code(p), -15);
    ASSERT_OK(mp_process_terminate(p)); /* an ended process: nothing to do */
    mp_conn_free(w);
    mp_process_free(p);
}

Test(process, kill_reads_minus_9, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *w;
    mp_process_t *p = start_blocked(&w);
    ASSERT_OK(mp_process_kill(p));
    cr_assert_eq(join_code(p), -9);
    mp_conn_free(w);
    mp_process_free(p);
}

Test(process, target_in_shared_library, .timeout = TEST_TIMEOUT)
{
    mp_process_t *p = start_proc(mp_testlib_target, NULL);
    cr_assert_eq(join_code(p), 42);
    mp_process_free(p);
}

Test(process, explicit_spawn_from_any_default, .timeout = TEST_TIMEOUT)
{
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_int(a, 3));
    mp_process_opts_t o = {.target = exit_with_arg, .args = a, .start_method = MP_START_SPAWN};
    mp_process_t *p;
    ASSERT_OK(mp_process_create(&p, &o));
    ASSERT_OK(mp_process_start(p));
    cr_assert_eq(join_code(p), 3);
    mp_process_free(p);
    mp_args_free(a);
}

/* Where the executable is another program, the child cannot find the
 * target: it must say so and exit with MP_EXIT_BOOTSTRAP, not crash. */
Test(process, unresolvable_target_exits_with_bootstrap_code, .timeout = TEST_TIMEOUT)
{
    char other[4096];
    char *exe = NULL;
    ASSERT_OK(mp__os_exe_path(&exe));
    char *slash = strrchr(exe, '/');
    char *bslash = strrchr(exe, '\\');
    if (bslash > slash) slash = bslash;
    cr_assert_not_null(slash);
    const char *ext = strstr(slash, ".exe") ? ".exe" : "";
    snprintf(other, sizeof other, "%.*smproc_test_other%s", (int)(slash - exe + 1), exe, ext);
    mp_free(exe);
    ASSERT_OK(mp_set_executable(other));
    mp_process_opts_t o = {.target = noop, .start_method = MP_START_SPAWN};
    mp_process_t *p;
    ASSERT_OK(mp_process_create(&p, &o));
    ASSERT_OK(mp_process_start(p));
    cr_assert_eq(join_code(p), MP_EXIT_BOOTSTRAP);
    mp_process_free(p);
}

Test(process, bad_arguments, .timeout = TEST_TIMEOUT)
{
    mp_process_t *p;
    mp_process_opts_t o = {0};
    ASSERT_RC(mp_process_create(&p, &o), MP_EINVAL);
    ASSERT_RC(mp_process_create(&p, NULL), MP_EINVAL);
    ASSERT_RC(mp_process_join(NULL, 0), MP_EINVAL);
    mp_conn_t *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    ASSERT_RC(mp_process_start((mp_process_t *)a), MP_ETYPE);
    mp_conn_free(a);
    mp_conn_free(b);
    cr_assert_gt(mp_cpu_count(), 0);
    cr_assert_gt(mp_getpid(), 0);
    cr_assert_str_eq(mp_err_name(MP_EOWNERDEAD), "MP_EOWNERDEAD");
    cr_assert_str_neq(mp_strerror(MP_EOF), "unknown error");
}

/* Middle process: starts a daemon grandchild holding conn 0, reports, then
 * blocks on conn 1 until it is killed. */
static int start_daemon_then_block(mp_args_t *a)
{
    mp_conn_t *to_daemon, *report;
    if (mp_args_conn(a, 0, &to_daemon) || mp_args_conn(a, 1, &report)) return 10;
    mp_args_t *da;
    mp_process_t *d;
    if (mp_args_create(&da) || mp_args_add_handle(da, MP_HANDLE(to_daemon))) return 11;
    mp_process_opts_t o = {.target = block_on_conn, .args = da, .daemon = true};
    if (mp_process_create(&d, &o) || mp_process_start(d)) return 12;
    mp_conn_close(to_daemon); /* only the daemon holds it now */
    if (mp_conn_send_bytes(report, "up", 2)) return 13;
    void *buf;
    size_t n;
    mp_conn_recv_bytes(report, &buf, &n); /* never answered: killed here */
    return 14;
}

Test(process, daemon_dies_with_killed_parent, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *dr, *dw, *me, *mid;
    ASSERT_OK(mp_pipe(&dr, &dw, true));
    ASSERT_OK(mp_pipe(&me, &mid, true));
    mp_args_t *a;
    ASSERT_OK(mp_args_create(&a));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(dr)));
    ASSERT_OK(mp_args_add_handle(a, MP_HANDLE(mid)));
    mp_process_t *p = start_proc(start_daemon_then_block, a);
    mp_args_free(a);
    mp_conn_free(dr);
    mp_conn_free(mid);
    expect_msg(me, "up");
    ASSERT_OK(mp_process_kill(p));
    cr_assert_eq(join_code(p), -9);
    /* The daemon held the only other end of dw: its death is EOF here. The
     * daemon blocks reading forever, so only its death can end this. */
    int rc = mp_conn_poll(dw, JOIN_MS);
    cr_assert_eq(rc, 1, "the daemon outlived its parent: %s %s", mp_err_name(rc),
                 mp_last_error_detail());
    mp_process_free(p);
    mp_conn_free(dw);
    mp_conn_free(me);
}

Test(process, wait_on_processes_and_connections, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *w;
    mp_process_t *blocked = start_blocked(&w);
    mp_process_t *quick = start_proc(noop, NULL);
    mp_conn_t *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    mp_handle_t *hs[3] = {MP_HANDLE(blocked), MP_HANDLE(quick), MP_HANDLE(a)};
    size_t ready[3], n = 0;
    ASSERT_OK(mp_wait(hs, 3, JOIN_MS, ready, &n));
    cr_assert_eq(n, 1);
    cr_assert_eq(ready[0], 1, "the process that ended is the one ready");
    ASSERT_OK(mp_conn_send_bytes(b, "x", 1));
    ASSERT_OK(mp_wait(hs, 3, JOIN_MS, ready, &n));
    cr_assert_eq(n, 2);
    cr_assert_eq(ready[0], 1);
    cr_assert_eq(ready[1], 2);
    mp_handle_t *only[1] = {MP_HANDLE(blocked)};
    ASSERT_OK(mp_wait(only, 1, 20, ready, &n));
    cr_assert_eq(n, 0, "nothing ready: timeout with nready 0");
    mp_conn_free(w);
    cr_assert_eq(join_code(blocked), 0);
    cr_assert_eq(join_code(quick), 0);
    mp_process_free(blocked);
    mp_process_free(quick);
    mp_conn_free(a);
    mp_conn_free(b);
}

/* A child gets only the handles in its args: an end the parent closes
 * reads as EOF at once, although a child started after it is running. */
Test(process, children_get_only_the_handles_passed, .timeout = TEST_TIMEOUT)
{
    mp_conn_t *a, *b;
    ASSERT_OK(mp_pipe(&a, &b, true));
    mp_conn_t *w;
    mp_process_t *p = start_blocked(&w);
    mp_conn_free(b);
    cr_assert_eq(mp_conn_poll(a, JOIN_MS), 1, "a child kept the closed end open");
    void *buf;
    size_t n;
    ASSERT_RC(mp_conn_recv_bytes(a, &buf, &n), MP_EOF);
    cr_assert_eq(mp_process_is_alive(p), 1);
    mp_conn_free(w);
    cr_assert_eq(join_code(p), 0);
    mp_process_free(p);
    mp_conn_free(a);
}
