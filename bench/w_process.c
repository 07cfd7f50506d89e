/* W7 process start + join: mp_process with fork and with spawn against
 * fork + waitpid and a bare start of this same executable. */
#include <mproc.h>

#include "bench.h"
#include "raw.h"

#define WARM_PROCESSES 3
#define CHILD_CODE 0

static int empty_target(mp_args_t *a)
{
    (void)a;
    return CHILD_CODE;
}

static int mp_one(mp_start_method_t m)
{
    mp_process_opts_t o = {.target = empty_target, .start_method = m};
    mp_process_t *p;
    int rc = mp_process_create(&p, &o);
    if (rc) return rc == MP_ENOSYS ? BENCH_SKIP : bench_fail_mp(rc, "mp_process_create");
    int code = -1000;
    rc = mp_process_start(p);
    if (!rc) rc = mp_process_join(p, MP_FOREVER);
    if (!rc) rc = mp_process_exitcode(p, &code);
    mp_process_free(p);
    if (rc) return bench_fail_mp(rc, "start/join");
    return code == CHILD_CODE ? 0 : bench_fail("the child exited with %d", code);
}

static int raw_one(bool fork_it)
{
    int code = -1000;
    int rc = fork_it ? raw_fork_join(&code) : raw_spawn_join(&code);
    if (rc) return rc;
    return code == CHILD_CODE ? 0 : bench_fail("the raw child exited with %d", code);
}

/* ms per process over count starts, after a few untimed ones. */
static int per_process(int (*one)(void), long count, double *value)
{
    int rc = 0;
    for (int i = 0; !rc && i < WARM_PROCESSES; i++)
        rc = one();
    uint64_t t0 = raw_now_ns();
    for (long i = 0; !rc && i < count; i++)
        rc = one();
    uint64_t t1 = raw_now_ns();
    *value = (double)(t1 - t0) / 1e6 / (double)count;
    return rc;
}

static int mp_fork_one(void)
{
    return mp_one(MP_START_FORK);
}

static int mp_spawn_one(void)
{
    return mp_one(MP_START_SPAWN);
}

static int raw_fork_one(void)
{
    return raw_one(true);
}

static int raw_spawn_one(void)
{
    return raw_one(false);
}

int w7_fork_mproc(long count, double *value)
{
    return per_process(mp_fork_one, count, value);
}

int w7_fork_raw(long count, double *value)
{
    return per_process(raw_fork_one, count, value);
}

int w7_spawn_mproc(long count, double *value)
{
    return per_process(mp_spawn_one, count, value);
}

int w7_spawn_raw(long count, double *value)
{
    return per_process(raw_spawn_one, count, value);
}
