/* The runner of the Criterion stand-in (see criterion/criterion.h).
 *
 * The parent runs the tests one after another, each in a fresh copy of
 * this executable started with "--shim-run suite::name", inside a job
 * object: a crash or a hang ends that test only, a timeout kills it, and
 * whatever processes it leaves behind are killed with it. The child's exit
 * code is the verdict: 0 passed, 1 failed, SKIP_CODE skipped, anything
 * else a crash. Raw Win32 only: the library under test is not used here. */
#include <windows.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criterion/criterion.h"

#define DEFAULT_TIMEOUT_S 120.0
#define SKIP_CODE 77
#define RUN_FLAG "--shim-run"
#define RUN_FLAG_W L"--shim-run"

struct criterion_test_set {
    struct criterion_test **v;
    size_t n;
};

static struct criterion_test *tests;
static struct criterion_suite *suites;
static const char *filter;
static const char *run_only;

/* State of the test running in this process. */
static jmp_buf test_exit;
static DWORD test_thread;
static volatile LONG expect_failed;

void cr__register_test(struct criterion_test *t)
{
    t->next = tests;
    tests = t;
}

void cr__register_suite(struct criterion_suite *s)
{
    s->next = suites;
    suites = s;
}

static const struct criterion_suite *suite_of(const struct criterion_test *t)
{
    for (const struct criterion_suite *s = suites; s; s = s->next)
        if (!strcmp(s->name, t->suite)) return s;
    return NULL;
}

static void vreport(const char *tag, const char *file, int line, const char *expr, const char *fmt,
                    va_list ap)
{
    fprintf(stderr, "[%s] %s:%d: ", tag, file, line);
    if (expr) fprintf(stderr, "Assertion failed: %s", expr);
    if (fmt && *fmt) {
        fputs(expr ? ": " : "", stderr);
        vfprintf(stderr, fmt, ap);
    }
    fputc('\n', stderr);
    fflush(stderr);
}

void cr__nonfatal(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("FAIL", file, line, expr, fmt, ap);
    va_end(ap);
    InterlockedExchange(&expect_failed, 1);
}

void cr__fatal(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("FAIL", file, line, expr, fmt, ap);
    va_end(ap);
    /* longjmp only within the test's own thread; from any other the
     * process ends here with the same verdict. */
    if (GetCurrentThreadId() == test_thread) longjmp(test_exit, 1);
    fflush(NULL);
    _Exit(1);
}

void cr__skip(const char *fmt, ...)
{
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs("[SKIP] ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    fflush(NULL);
    if (GetCurrentThreadId() == test_thread) longjmp(test_exit, 2);
    _Exit(SKIP_CODE);
}

void cr__log(const char *level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

static int by_name(const void *a, const void *b)
{
    const struct criterion_test *x = *(struct criterion_test *const *)a;
    const struct criterion_test *y = *(struct criterion_test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

struct criterion_test_set *criterion_initialize(void)
{
    struct criterion_test_set *set = calloc(1, sizeof *set);
    size_t n = 0;
    for (struct criterion_test *t = tests; t; t = t->next)
        n++;
    if (set) set->v = calloc(n ? n : 1, sizeof *set->v);
    if (!set || !set->v) {
        fputs("criterion shim: out of memory\n", stderr);
        exit(2);
    }
    for (struct criterion_test *t = tests; t; t = t->next)
        set->v[set->n++] = t;
    qsort(set->v, set->n, sizeof *set->v, by_name);
    return set;
}

void criterion_finalize(struct criterion_test_set *set)
{
    if (set) free(set->v);
    free(set);
}

static void usage(const char *prog)
{
    printf("usage: %s [--filter SUBSTRING] [--list]\n"
           "  runs each test in its own process; --filter keeps the tests whose\n"
           "  \"suite::name\" or \"suite/name\" contains SUBSTRING\n",
           prog);
}

static bool list_only;

int criterion_handle_args(int argc, char *argv[], bool handle_unknown_arg)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--filter") && i + 1 < argc)
            filter = argv[++i];
        else if (!strncmp(a, "--filter=", 9))
            filter = a + 9;
        else if (!strcmp(a, RUN_FLAG) && i + 1 < argc)
            run_only = argv[++i];
        else if (!strcmp(a, "--list"))
            list_only = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        } else if ((!strcmp(a, "-j") || !strcmp(a, "--jobs")) && i + 1 < argc)
            i++; /* accepted for Criterion's command lines; tests run one at a time */
        else if (!strncmp(a, "--jobs=", 7) || !strncmp(a, "--verbose", 9))
            continue;
        else if (handle_unknown_arg) {
            /* Exit rather than return 0: main would report success. */
            fprintf(stderr, "criterion shim: unknown argument '%s'\n", a);
            usage(argv[0]);
            exit(2);
        }
    }
    return 1;
}

/* ---- in the child: run one test ---- */

static LONG WINAPI on_crash(EXCEPTION_POINTERS *ep)
{
    fprintf(stderr, "[CRASH] exception 0x%08lx at %p\n",
            (unsigned long)ep->ExceptionRecord->ExceptionCode,
            ep->ExceptionRecord->ExceptionAddress);
    fflush(stderr);
    /* End with the exception code, without a debugger (winedbg under Wine). */
    return EXCEPTION_EXECUTE_HANDLER;
}

static int run_here(struct criterion_test_set *set)
{
    const char *sep = strstr(run_only, "::");
    struct criterion_test *volatile t = NULL;
    for (size_t i = 0; sep && i < set->n && !t; i++)
        if (strlen(set->v[i]->suite) == (size_t)(sep - run_only) &&
            !strncmp(set->v[i]->suite, run_only, (size_t)(sep - run_only)) &&
            !strcmp(set->v[i]->name, sep + 2))
            t = set->v[i];
    if (!t) {
        fprintf(stderr, "criterion shim: no test named %s\n", run_only);
        return 2;
    }
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(on_crash);
    const struct criterion_suite *volatile s = suite_of(t);
    test_thread = GetCurrentThreadId();
    int code = 0;
    int how = setjmp(test_exit);
    if (!how) {
        if (s && s->data.init) s->data.init();
        if (t->data.init) t->data.init();
        t->fn();
    }
    if (how != 2) {
        /* Teardown runs after a failed assertion too; a failure inside it
         * jumps back here with how == 1, and must not run it again. */
        static int torn;
        if (!torn++) {
            if (t->data.fini) t->data.fini();
            if (s && s->data.fini) s->data.fini();
        }
    }
    if (how == 2)
        code = SKIP_CODE;
    else if (how == 1 || expect_failed)
        code = 1;
    fflush(NULL);
    return code;
}

/* ---- in the parent: run each test in a child ---- */

static double test_timeout(const struct criterion_test *t)
{
    const struct criterion_suite *volatile s = suite_of(t);
    if (t->data.timeout > 0) return t->data.timeout;
    if (s && s->data.timeout > 0) return s->data.timeout;
    return DEFAULT_TIMEOUT_S;
}

static bool selected(const struct criterion_test *t)
{
    if (!filter) return true;
    char a[512], b[512];
    snprintf(a, sizeof a, "%s::%s", t->suite, t->name);
    snprintf(b, sizeof b, "%s/%s", t->suite, t->name);
    return strstr(a, filter) || strstr(b, filter);
}

/* Starts the child with our standard handles, inherited through a handle
 * list so that nothing else leaks into it, in a new kill-on-close job. */
static bool start_child(const struct criterion_test *t, HANDLE *job, PROCESS_INFORMATION *pi)
{
    static wchar_t exe[32768];
    if (!exe[0] && !GetModuleFileNameW(NULL, exe, sizeof exe / sizeof *exe)) return false;
    char name[512];
    wchar_t wname[512];
    snprintf(name, sizeof name, "%s::%s", t->suite, t->name);
    if (!MultiByteToWideChar(CP_UTF8, 0, name, -1, wname, 512)) return false;
    size_t cap = wcslen(exe) + wcslen(wname) + 32;
    wchar_t *cmd = malloc(cap * sizeof *cmd);
    if (!cmd) return false;
    swprintf(cmd, cap, L"\"%ls\" " RUN_FLAG_W L" %ls", exe, wname);

    STARTUPINFOEXW si;
    memset(&si, 0, sizeof si);
    si.StartupInfo.cb = sizeof si;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    HANDLE list[3];
    DWORD nlist = 0;
    const DWORD which[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
    HANDLE *slot[3] = {&si.StartupInfo.hStdInput, &si.StartupInfo.hStdOutput,
                       &si.StartupInfo.hStdError};
    for (int i = 0; i < 3; i++) {
        HANDLE h = GetStdHandle(which[i]), dup = NULL;
        if (h && h != INVALID_HANDLE_VALUE &&
            DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0, TRUE,
                            DUPLICATE_SAME_ACCESS))
            list[nlist++] = dup;
        *slot[i] = dup;
    }
    SIZE_T size = 0;
    InitializeProcThreadAttributeList(NULL, 1, 0, &size);
    si.lpAttributeList = malloc(size);
    bool ok =
        si.lpAttributeList && InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size);
    if (ok && nlist)
        ok = UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                       list, nlist * sizeof *list, NULL, NULL);
    *job = ok ? CreateJobObjectW(NULL, NULL) : NULL;
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
    memset(&li, 0, sizeof li);
    li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    ok = *job && SetInformationJobObject(*job, JobObjectExtendedLimitInformation, &li, sizeof li);
    /* Suspended until it is in the job, so that all it starts is too. */
    /* Wine fails a start now and then with ERROR_INTERNAL_ERROR (the new
     * process died before it ran any of its code): try again. */
    bool started = false;
    for (int attempt = 0; ok && !started && attempt < 5; attempt++) {
        started = CreateProcessW(exe, cmd, NULL, NULL, nlist > 0,
                                 CREATE_SUSPENDED | EXTENDED_STARTUPINFO_PRESENT, NULL, NULL,
                                 &si.StartupInfo, pi);
        if (!started && GetLastError() != ERROR_INTERNAL_ERROR) break;
    }
    ok = started;
    if (ok && !AssignProcessToJobObject(*job, pi->hProcess)) {
        TerminateProcess(pi->hProcess, 1);
        CloseHandle(pi->hProcess);
        CloseHandle(pi->hThread);
        ok = false;
    }
    if (ok) ResumeThread(pi->hThread);
    if (!ok && *job) {
        CloseHandle(*job);
        *job = NULL;
    }
    if (si.lpAttributeList) {
        DeleteProcThreadAttributeList(si.lpAttributeList);
        free(si.lpAttributeList);
    }
    for (DWORD i = 0; i < nlist; i++)
        CloseHandle(list[i]);
    free(cmd);
    return ok;
}

enum verdict { PASSED, FAILED, SKIPPED };

static enum verdict run_child(const struct criterion_test *t)
{
    char name[512];
    snprintf(name, sizeof name, "%s::%s", t->suite, t->name);
    if (t->data.disabled) {
        printf("[SKIP] %s (disabled)\n", name);
        return SKIPPED;
    }
    fflush(NULL);
    HANDLE job;
    PROCESS_INFORMATION pi;
    if (!start_child(t, &job, &pi)) {
        printf("[FAIL] %s: cannot start it (error %lu)\n", name, (unsigned long)GetLastError());
        return FAILED;
    }
    CloseHandle(pi.hThread);
    double limit = test_timeout(t);
    ULONGLONG start = GetTickCount64();
    DWORD w = WaitForSingleObject(pi.hProcess, (DWORD)(limit * 1000.0));
    double secs = (double)(GetTickCount64() - start) / 1000.0;
    DWORD code = 0;
    if (w != WAIT_OBJECT_0)
        TerminateProcess(pi.hProcess, 1);
    else
        GetExitCodeProcess(pi.hProcess, &code);
    /* Whatever the test started and left running goes with it. */
    TerminateJobObject(job, 1);
    CloseHandle(job);
    CloseHandle(pi.hProcess);

    enum verdict v = FAILED;
    if (w != WAIT_OBJECT_0) {
        printf("[TIMEOUT] %s (killed after %.0f s)\n", name, limit);
    } else if (t->data.signal) {
        v = code != 0 && code != 1 && code != SKIP_CODE ? PASSED : FAILED;
        printf("[%s] %s (expected a crash, exit code 0x%lx, %.2f s)\n", v ? "FAIL" : "PASS", name,
               (unsigned long)code, secs);
    } else if (t->data.exit_code && code == (DWORD)t->data.exit_code) {
        v = PASSED;
        printf("[PASS] %s (exit code %lu as expected, %.2f s)\n", name, (unsigned long)code, secs);
    } else if (code == 0 && !t->data.exit_code) {
        v = PASSED;
        printf("[PASS] %s (%.2f s)\n", name, secs);
    } else if (code == SKIP_CODE) {
        v = SKIPPED;
        printf("[SKIP] %s\n", name);
    } else if (code == 1) {
        printf("[FAIL] %s (%.2f s)\n", name, secs);
    } else {
        printf("[CRASH] %s (exit code 0x%lx, %.2f s)\n", name, (unsigned long)code, secs);
    }
    fflush(stdout);
    return v;
}

int criterion_run_all_tests(struct criterion_test_set *set)
{
    if (run_only) exit(run_here(set));
    if (list_only) {
        for (size_t i = 0; i < set->n; i++)
            if (selected(set->v[i])) printf("%s::%s\n", set->v[i]->suite, set->v[i]->name);
        return 1;
    }
    size_t passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < set->n; i++) {
        if (!selected(set->v[i])) continue;
        enum verdict v = run_child(set->v[i]);
        passed += v == PASSED;
        failed += v == FAILED;
        skipped += v == SKIPPED;
    }
    printf("%zu passed, %zu failed", passed, failed);
    if (skipped) printf(", %zu skipped", skipped);
    printf("\n");
    fflush(stdout);
    return failed == 0;
}
