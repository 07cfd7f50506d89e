/* The OS side of the Criterion stand-in's runner. criterion.c holds what
 * is the same everywhere (registration, assertions, arguments, verdicts);
 * criterion_win32.c and criterion_posix.c start and watch the test
 * processes. */
#ifndef MP_SHIM_RUNNER_H
#define MP_SHIM_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The exit code of a skipped test. */
#define CR__SKIP_CODE 77
#define CR__RUN_FLAG "--shim-run"

/* Called in the test process just before the test: remembers its thread
 * (an assertion there unwinds to the runner, elsewhere it ends the
 * process) and makes a crash end the process with a report. */
void cr__os_enter_test(void);
bool cr__os_on_test_thread(void);

/* CR__NOT_STARTED: it could not be started or watched. */
enum cr__end { CR__EXITED, CR__SIGNALLED, CR__TIMED_OUT, CR__NOT_STARTED };

struct cr__outcome {
    enum cr__end end;
    unsigned long code; /* CR__EXITED: exit code; CR__SIGNALLED: signal */
    double secs;
    char detail[160]; /* CR__NOT_STARTED: why */
};

/* Called as each test ends, with the stream holding what it wrote, read
 * from its start (NULL: it wrote straight to our standard streams). */
typedef void cr__done_fn(size_t i, const struct cr__outcome *o, FILE *output, void *ctx);

/* Runs this executable again as "<exe> --shim-run NAMES[i]" for each of
 * the N tests, up to JOBS at once (POSIX; Windows runs them one at a time
 * and ignores JOBS), kills each after LIMITS[i] seconds, kills whatever
 * processes it left behind, and calls DONE. With more than one job each
 * test's output is captured and handed to DONE, so that the lines of
 * tests running together never interleave. ARGV0 is this program's
 * argv[0]. */
void cr__os_run_children(const char *argv0, size_t n, const char *const names[],
                         const double limits[], unsigned jobs, cr__done_fn *done, void *ctx);

/* How many tests run at once unless told: the CPUs online (POSIX), 1
 * (Windows). */
unsigned cr__os_default_jobs(void);

#endif
