/* The test binary's main: mp_init first, so a spawned child re-entering
 * this executable runs its target instead of the test runner. */
#include <criterion/criterion.h>

#include <mproc.h>

#if !defined(_WIN32)
/* Criterion runs each test in a re-executed copy of this program whose
 * main() BoxFort replaces, and our spawned children inherit the variable
 * that makes it do so. A constructor still runs in both (glibc and macOS
 * pass it argc/argv), after the library's and before main: it does what
 * main's first line does for a normal program. */
__attribute__((constructor)) static void init_before_boxfort(int argc, char **argv)
{
    mp_init(argc, argv);
}
#endif

int main(int argc, char **argv)
{
    mp_init(argc, argv);
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
