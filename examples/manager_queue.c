/* A manager's queues and lock as the ordinary types (Python's
 * manager.Queue() and manager.Lock()): workers take numbers from a jobs
 * queue, put their squares on a results queue, and print under the
 * manager's lock. The same code would work with mp_queue_create and
 * mp_lock_create; through a manager the objects also reach processes that
 * connect later, over TCP with an authkey. */
#include <stdio.h>

#include <mproc.h>

#define WORKERS 3
#define JOBS 12
#define STOP (-1)

static int worker(mp_args_t *args)
{
    mp_queue_t *jobs, *results;
    mp_lock_t *print_lock;
    if (mp_args_queue(args, 0, &jobs) || mp_args_queue(args, 1, &results) ||
        mp_args_lock(args, 2, &print_lock))
        return 1;
    int done = 0;
    for (;;) {
        int x;
        size_t n;
        if (mp_queue_get_into(jobs, &x, sizeof x, &n, MP_FOREVER) || n != sizeof x) return 1;
        mp_queue_task_done(jobs);
        if (x == STOP) break;
        long sq = (long)x * x;
        if (mp_queue_put(results, &sq, sizeof sq, MP_FOREVER)) return 1;
        done++;
    }
    mp_lock_acquire(print_lock, MP_FOREVER);
    printf("%s did %d jobs\n", mp_current_name(), done);
    fflush(stdout);
    mp_lock_release(print_lock);
    return 0;
}

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, mp_last_error_detail());
    return 1;
}

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    mp_manager_t *manager;
    mp_queue_t *jobs, *results;
    mp_lock_t *print_lock;
    if (mp_manager_start(&manager, NULL) || mp_manager_queue(manager, "jobs", 0, &jobs) ||
        mp_manager_queue(manager, "results", 0, &results) ||
        mp_manager_lock(manager, "print", &print_lock))
        return fail("manager");

    mp_args_t *args;
    mp_args_create(&args);
    mp_args_add_handle(args, MP_HANDLE(jobs));
    mp_args_add_handle(args, MP_HANDLE(results));
    mp_args_add_handle(args, MP_HANDLE(print_lock));
    mp_process_t *p[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        mp_process_opts_t opts = {.target = worker, .args = args};
        if (mp_process_create(&p[i], &opts) || mp_process_start(p[i])) return fail("process");
    }
    mp_args_free(args);

    for (int x = 1; x <= JOBS; x++)
        mp_queue_put(jobs, &x, sizeof x, MP_FOREVER);
    for (int i = 0; i < WORKERS; i++) {
        int stop = STOP;
        mp_queue_put(jobs, &stop, sizeof stop, MP_FOREVER);
    }
    if (mp_queue_join(jobs, MP_FOREVER)) return fail("join the jobs queue");

    long sum = 0;
    for (int i = 0; i < JOBS; i++) {
        long sq;
        size_t n;
        if (mp_queue_get_into(results, &sq, sizeof sq, &n, MP_FOREVER)) return fail("result");
        sum += sq;
    }
    int bad = 0;
    for (int i = 0; i < WORKERS; i++) {
        int code = -1;
        mp_process_join(p[i], MP_FOREVER);
        mp_process_exitcode(p[i], &code);
        bad |= code != 0;
        mp_process_free(p[i]);
    }
    printf("sum of squares 1..%d = %ld (expected %d)\n", JOBS, sum,
           JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6);
    mp_queue_free(jobs);
    mp_queue_free(results);
    mp_lock_free(print_lock);
    mp_manager_free(manager);
    return bad || sum != JOBS * (JOBS + 1) * (2 * JOBS + 1) / 6;
}
