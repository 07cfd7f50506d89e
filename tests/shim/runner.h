/* The OS side of the Criterion stand-in's runner. criterion.c holds what
 * is the same everywhere (registration, assertions, arguments, verdicts);
 * criterion_win32.c and criterion_posix.c start and watch the test
 * processes. */
#ifndef MP_SHIM_RUNNER_H
#define MP_SHIM_RUNNER_H

#include <stdbool.h>

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

/* Runs this executable again as "<exe> --shim-run NAME" with our standard
 * streams, kills it after LIMIT seconds, and kills whatever processes it
 * left behind. ARGV0 is this program's argv[0]. */
void cr__os_run_child(const char *argv0, const char *name, double limit, struct cr__outcome *out);

#endif
