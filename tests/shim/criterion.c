/* The runner of the Criterion stand-in (see criterion/criterion.h), the
 * part that is the same on every OS.
 *
 * The parent runs the tests, several at once as Criterion does (--jobs,
 * CRITERION_JOBS; one at a time on Windows), each in a fresh copy of this
 * executable started with "--shim-run suite::name" (runner.h; the OS side
 * keeps every process the test starts with it, kills them all when it
 * ends, and kills it on timeout). The child's exit code is the verdict:
 * 0 passed, 1 failed, CR__SKIP_CODE skipped, anything else (or a signal)
 * a crash. The library under test is not used here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criterion/criterion.h"
#include "runner.h"

#define DEFAULT_TIMEOUT_S 120.0

struct criterion_test_set {
    struct criterion_test **v;
    size_t n;
};

static struct criterion_test *tests;
static struct criterion_suite *suites;
static const char *filter;
static const char *run_only;
static const char *argv0;
static bool list_only;
static unsigned jobs; /* 0: unset */

/* State of the test running in this process. */
static jmp_buf test_exit;
static atomic_int expect_failed;

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
    atomic_store(&expect_failed, 1);
}

void cr__fatal(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport("FAIL", file, line, expr, fmt, ap);
    va_end(ap);
    /* longjmp only within the test's own thread; from any other the
     * process ends here with the same verdict. */
    if (cr__os_on_test_thread()) longjmp(test_exit, 1);
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
    if (cr__os_on_test_thread()) longjmp(test_exit, 2);
    _Exit(CR__SKIP_CODE);
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
    printf("usage: %s [--filter PATTERN] [--list] [--jobs N]\n"
           "  runs each test in its own process, N at once (default: CRITERION_JOBS,\n"
           "  else the CPUs online); --filter keeps the tests whose\n"
           "  \"suite/name\" matches PATTERN, a glob (*, ?, [set]) as Criterion's;\n"
           "  \"!(A|B)\" keeps those that match neither glob A nor B; a PATTERN\n"
           "  without those characters keeps the tests whose \"suite::name\" or\n"
           "  \"suite/name\" contains it\n",
           prog);
}

/* A count of jobs; anything but a positive number ends the program, as a
 * mistyped command line should. */
static unsigned parse_jobs(const char *s)
{
    char *end;
    unsigned long n = strtoul(s, &end, 10);
    if (end == s || *end || n == 0 || n > 1024) {
        fprintf(stderr, "criterion shim: bad job count '%s'\n", s);
        exit(2);
    }
    return (unsigned)n;
}

int criterion_handle_args(int argc, char *argv[], bool handle_unknown_arg)
{
    argv0 = argc > 0 ? argv[0] : "mproc_tests";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--filter") && i + 1 < argc)
            filter = argv[++i];
        else if (!strncmp(a, "--filter=", 9))
            filter = a + 9;
        else if (!strcmp(a, CR__RUN_FLAG) && i + 1 < argc)
            run_only = argv[++i];
        else if (!strcmp(a, "--list"))
            list_only = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(argv[0]);
            return 0;
        } else if ((!strcmp(a, "-j") || !strcmp(a, "--jobs")) && i + 1 < argc)
            jobs = parse_jobs(argv[++i]);
        else if (!strncmp(a, "--jobs=", 7))
            jobs = parse_jobs(a + 7);
        else if (!strncmp(a, "-j", 2) && a[2])
            jobs = parse_jobs(a + 2);
        else if (!strncmp(a, "--verbose", 9))
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
    const struct criterion_suite *volatile s = suite_of(t);
    cr__os_enter_test();
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
        code = CR__SKIP_CODE;
    else if (how == 1 || atomic_load(&expect_failed))
        code = 1;
    fflush(NULL);
    return code;
}

/* ---- in the parent: run each test in a child ---- */

static double test_timeout(const struct criterion_test *t)
{
    const struct criterion_suite *s = suite_of(t);
    if (t->data.timeout > 0) return t->data.timeout;
    if (s && s->data.timeout > 0) return s->data.timeout;
    return DEFAULT_TIMEOUT_S;
}

/* A shell-style glob: '*' any run, '?' any one character, "[a-z]" and
 * "[!a-z]" a set. */
static bool glob_match(const char *p, const char *s)
{
    for (; *p; p++, s++) {
        if (*p == '*') {
            while (p[1] == '*')
                p++;
            for (;; s++) {
                if (glob_match(p + 1, s)) return true;
                if (!*s) return false;
            }
        }
        if (!*s) return false;
        if (*p == '[') {
            const char *q = p + 1;
            bool negate = *q == '!';
            q += negate;
            const char *first = q;
            bool in = false;
            while (*q && (q == first || *q != ']')) {
                if (q[1] == '-' && q[2] && q[2] != ']') {
                    in |= *s >= q[0] && *s <= q[2];
                    q += 3;
                } else {
                    in |= *s == *q++;
                }
            }
            if (*q == ']') {
                if (in == negate) return false;
                p = q;
                continue;
            }
            /* No closing bracket: '[' is a plain character. */
        }
        if (*p != '?' && *p != *s) return false;
    }
    return !*s;
}

/* "!(A|B|...)", the one extended glob supported: a name that matches none
 * of the globs A, B, ... */
static bool none_match(const char *alts, size_t len, const char *s)
{
    char one[256];
    while (len) {
        size_t n = strcspn(alts, "|");
        n = n < len ? n : len;
        if (n < sizeof one) {
            memcpy(one, alts, n);
            one[n] = 0;
            if (glob_match(one, s)) return false;
        }
        alts += n + (n < len);
        len -= n + (n < len);
    }
    return true;
}

static bool selected(const struct criterion_test *t)
{
    if (!filter) return true;
    char a[512], b[512];
    snprintf(a, sizeof a, "%s::%s", t->suite, t->name);
    snprintf(b, sizeof b, "%s/%s", t->suite, t->name);
    size_t len = strlen(filter);
    if (len >= 3 && !strncmp(filter, "!(", 2) && filter[len - 1] == ')')
        return none_match(filter + 2, len - 3, b);
    if (strpbrk(filter, "*?[")) return glob_match(filter, b);
    return strstr(a, filter) || strstr(b, filter);
}

enum verdict { PASSED, FAILED, SKIPPED };

static bool is_crash_code(unsigned long code)
{
    return code != 0 && code != 1 && code != CR__SKIP_CODE;
}

static enum verdict judge(const struct criterion_test *t, const char *name,
                          const struct cr__outcome *o, double limit)
{
    bool signalled = o->end == CR__SIGNALLED;
    unsigned long code = o->code, want = (unsigned long)t->data.exit_code;
    enum verdict v = FAILED;
    if (o->end == CR__NOT_STARTED) {
        printf("[FAIL] %s: cannot run it (%s)\n", name, o->detail);
    } else if (o->end == CR__TIMED_OUT) {
        printf("[TIMEOUT] %s (killed after %.0f s)\n", name, limit);
    } else if (t->data.signal) {
        /* A signal on POSIX; on Windows a crash is an exit code. */
        bool ok = signalled ? code == (unsigned long)t->data.signal : is_crash_code(code);
        v = ok ? PASSED : FAILED;
        printf("[%s] %s (expected a crash, %s %lu, %.2f s)\n", ok ? "PASS" : "FAIL", name,
               signalled ? "signal" : "exit code", code, o->secs);
    } else if (signalled) {
        printf("[CRASH] %s (signal %lu, %.2f s)\n", name, code, o->secs);
    } else if (want && code == want) {
        v = PASSED;
        printf("[PASS] %s (exit code %lu as expected, %.2f s)\n", name, code, o->secs);
    } else if (code == 0 && !want) {
        v = PASSED;
        printf("[PASS] %s (%.2f s)\n", name, o->secs);
    } else if (code == CR__SKIP_CODE) {
        v = SKIPPED;
        printf("[SKIP] %s\n", name);
    } else if (code == 1) {
        printf("[FAIL] %s (%.2f s)\n", name, o->secs);
    } else {
        printf("[CRASH] %s (exit code 0x%lx, %.2f s)\n", name, code, o->secs);
    }
    return v;
}

struct run {
    struct criterion_test **v; /* the tests started */
    size_t passed, failed, skipped;
};

static void tally(struct run *r, enum verdict v)
{
    r->passed += v == PASSED;
    r->failed += v == FAILED;
    r->skipped += v == SKIPPED;
}

/* A test's output, whole, then its verdict. */
static void on_done(size_t i, const struct cr__outcome *o, FILE *output, void *ctx)
{
    struct run *r = ctx;
    const struct criterion_test *t = r->v[i];
    char name[512], buf[4096];
    snprintf(name, sizeof name, "%s::%s", t->suite, t->name);
    size_t got;
    while (output && (got = fread(buf, 1, sizeof buf, output)) > 0)
        fwrite(buf, 1, got, stdout);
    tally(r, judge(t, name, o, test_timeout(t)));
    fflush(stdout);
}

static unsigned jobs_wanted(void)
{
    if (jobs) return jobs;
    const char *env = getenv("CRITERION_JOBS");
    if (env && *env) return parse_jobs(env);
    unsigned n = cr__os_default_jobs();
    return n ? n : 1;
}

int criterion_run_all_tests(struct criterion_test_set *set)
{
    if (run_only) exit(run_here(set));
    if (list_only) {
        for (size_t i = 0; i < set->n; i++)
            if (selected(set->v[i])) printf("%s::%s\n", set->v[i]->suite, set->v[i]->name);
        return 1;
    }
    struct run r = {calloc(set->n + 1, sizeof *r.v), 0, 0, 0};
    const char **names = calloc(set->n + 1, sizeof *names);
    double *limits = calloc(set->n + 1, sizeof *limits);
    char(*name)[512] = calloc(set->n + 1, sizeof *name);
    if (!r.v || !names || !limits || !name) {
        fputs("criterion shim: out of memory\n", stderr);
        exit(2);
    }
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct criterion_test *t = set->v[i];
        if (!selected(t)) continue;
        snprintf(name[n], sizeof name[n], "%s::%s", t->suite, t->name);
        if (t->data.disabled) {
            printf("[SKIP] %s (disabled)\n", name[n]);
            tally(&r, SKIPPED);
            continue;
        }
        r.v[n] = t;
        names[n] = name[n];
        limits[n] = test_timeout(t);
        n++;
    }
    fflush(NULL);
    cr__os_run_children(argv0, n, names, limits, jobs_wanted(), on_done, &r);
    printf("%zu passed, %zu failed", r.passed, r.failed);
    if (r.skipped) printf(", %zu skipped", r.skipped);
    printf("\n");
    fflush(stdout);
    free(name);
    free(limits);
    free(names);
    free(r.v);
    return r.failed == 0;
}
