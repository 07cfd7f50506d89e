/* Processes: create, start by fork or spawn, join, signal (the shared part
 * of CPython's popen_fork / popen_spawn_* launchers). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch.h"

enum { P_CREATED, P_STARTED, P_DONE };

struct mp_process {
    mp_handle_t h;
    char *name;
    mp_target_fn target;
    mp_args_t *args;
    bool daemon;
    mp_start_method_t method;
    int state;
    mp__child_t *child;
    mp_pid_t pid;
    int exitcode;
};

static atomic_uint process_counter;

static int check(mp_process_t *p)
{
    return mp__handle_check(MP_HANDLE(p), MP__H_PROCESS);
}

int mp_process_create(mp_process_t **out, const mp_process_opts_t *o)
{
    if (!out || !o || !o->target)
        return mp__fail(MP_EINVAL, "mp_process_create: a target is required");
    mp_start_method_t m = mp__start_method_resolve(o->start_method);
    if (m == MP_START_FORK && !mp__os_has_fork())
        return mp__fail(MP_ENOSYS, "the fork start method does not exist on this platform");
    mp_process_t *p = mp__calloc(1, sizeof *p);
    if (!p) return MP_ENOMEM;
    char auto_name[32];
    snprintf(auto_name, sizeof auto_name, "Process-%u", atomic_fetch_add(&process_counter, 1) + 1);
    p->name = mp__strdup(o->name ? o->name : auto_name);
    int rc = p->name ? mp__args_copy(o->args, &p->args) : MP_ENOMEM;
    if (rc) {
        free(p->name);
        free(p);
        return rc;
    }
    p->target = o->target;
    p->daemon = o->daemon;
    p->method = m;
    mp__handle_init(&p->h, MP__H_PROCESS);
    *out = p;
    return 0;
}

/* Handles kept without an allocation: in a new child, every heap page
 * malloc and free write is copied first (a page fault each). */
#define KEEP_ON_STACK 8

static void run_forked_child(mp_process_t *p, mp_pid_t parent)
{
    mp_handle_t *few[KEEP_ON_STACK];
    size_t n = mp__args_handles(p->args, NULL, 0);
    mp_handle_t **keep = n <= KEEP_ON_STACK ? few : malloc(n * sizeof *keep);
    if (!keep) mp__os_exit(MP_EXIT_BOOTSTRAP);
    mp__args_handles(p->args, keep, n);
    mp__handle_drop_others(keep, n);
    if (keep != few) free(keep);
    atomic_store(&process_counter, 0);
    mp__set_identity_fork(p->name, parent);
    int code = p->target(p->args);
    fflush(NULL);
    mp__os_exit(code);
}

static int start_fork(mp_process_t *p)
{
    mp_pid_t parent = mp__os_getpid();
    bool in_child = false;
    /* Unflushed output would otherwise be written twice. */
    fflush(NULL);
    int rc = mp__child_fork(p->daemon, &p->child, &in_child);
    if (!rc && in_child) run_forked_child(p, parent);
    return rc;
}

static int start_spawn(mp_process_t *p)
{
    if (!mp__initialised())
        return mp__fail(MP_ESTATE, "spawn needs mp_init(argc, argv) as the first line of main()");
    const char *exe = mp__executable();
    if (!exe) return MP_ESYS;
    mp__launch_t l = {
        .name = p->name, .parent = mp__os_getpid(), .daemon = p->daemon, .args = p->args};
    const void *addr;
    memcpy(&addr, &p->target, sizeof addr);
    int rc = mp__module_locate(addr, &l.module, &l.offset, &l.ident);
    if (rc) return rc;
    mp__wbuf_t w = {0};
    mp__ostab_t t = {0};
    rc = mp__launch_pack(&l, &w, &t);
    if (!rc) {
        mp__spawn_req_t rq = {.exe = exe,
                              .record = w.p,
                              .record_len = w.len,
                              .pass = t.v,
                              .npass = t.n,
                              .daemon = p->daemon};
        rc = mp__child_spawn(&rq, &p->child);
    }
    free(l.module);
    mp__wbuf_release(&w);
    mp__ostab_release(&t);
    return rc;
}

int mp_process_start(mp_process_t *p)
{
    int rc = check(p);
    if (rc) return rc;
    if (p->state != P_CREATED)
        return mp__fail(MP_ESTATE, "process %s was already started", p->name);
    rc = p->method == MP_START_FORK ? start_fork(p) : start_spawn(p);
    if (rc) return rc;
    p->pid = mp__child_pid(p->child);
    p->state = P_STARTED;
    return 0;
}

static int reap(mp_process_t *p, long timeout_ms)
{
    if (p->state == P_CREATED) return mp__fail(MP_ESTATE, "process %s was not started", p->name);
    if (p->state == P_DONE) return 0;
    int code = 0;
    int rc = mp__child_wait(p->child, timeout_ms, &code);
    if (rc) return rc;
    p->exitcode = code;
    p->state = P_DONE;
    return 0;
}

int mp_process_join(mp_process_t *p, long timeout_ms)
{
    int rc = check(p);
    return rc ? rc : reap(p, timeout_ms);
}

int mp_process_is_alive(mp_process_t *p)
{
    int rc = check(p);
    if (rc) return rc;
    if (p->state != P_STARTED) return 0;
    rc = reap(p, 0);
    return rc == MP_ETIMEDOUT ? 1 : rc;
}

int mp_process_exitcode(mp_process_t *p, int *code)
{
    int rc = check(p);
    if (rc) return rc;
    rc = reap(p, 0);
    if (rc == MP_ETIMEDOUT) return mp__fail(MP_EBUSY, "process %s is still running", p->name);
    if (!rc && code) *code = p->exitcode;
    return rc;
}

mp_pid_t mp_process_pid(mp_process_t *p)
{
    return check(p) ? 0 : p->pid;
}

const char *mp_process_name(mp_process_t *p)
{
    return check(p) ? NULL : p->name;
}

bool mp_process_daemon(mp_process_t *p)
{
    return check(p) ? false : p->daemon;
}

static int signal_child(mp_process_t *p, bool kill)
{
    int rc = check(p);
    if (rc) return rc;
    if (p->state == P_CREATED) return mp__fail(MP_ESTATE, "process %s was not started", p->name);
    if (p->state == P_DONE || reap(p, 0) == 0) return 0;
    return mp__child_signal(p->child, kill);
}

int mp_process_terminate(mp_process_t *p)
{
    return signal_child(p, false);
}

int mp_process_kill(mp_process_t *p)
{
    return signal_child(p, true);
}

void mp_process_free(mp_process_t *p)
{
    if (!p) return; /* as free(NULL): no error, the last detail stays */
    if (check(p)) return;
    mp__handle_fini(&p->h);
    if (p->child) mp__child_free(p->child);
    mp_args_free(p->args);
    free(p->name);
    free(p);
}

static int process_waitable(mp_handle_t *h, mp__waitable_t *w, bool *ready_now)
{
    mp_process_t *p = (mp_process_t *)h;
    if (p->state == P_CREATED) return mp__fail(MP_ESTATE, "process %s was not started", p->name);
    *ready_now = p->state == P_DONE;
    w->child = p->child;
    return 0;
}

static void process_free(mp_handle_t *h)
{
    mp_process_free((mp_process_t *)h);
}

const mp__htype_ops_t mp__process_ops = {
    .name = "process",
    .waitable = process_waitable,
    .free = process_free,
};
