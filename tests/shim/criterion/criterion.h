/* A minimal stand-in for Criterion, for the MinGW build of the tests
 * (Debian ships no Criterion for Windows) and for the native TSan build
 * (MPROC_TEST_SHIM: BoxFort's arena collides with TSan). It covers what
 * the test sources use: Test/TestSuite with .timeout/.init/.fini/.disabled,
 * the cr_assert_* and cr_expect_* families with printf-style messages,
 * cr_skip_test, cr_log_*, and the four calls of a custom main. Each test
 * runs in its own process (see criterion.c).
 *
 * Messages are not format-checked: every assertion passes a trailing ""
 * so that the message may be omitted without an empty __VA_ARGS__ (which
 * C11 forbids); printf ignores the extra argument. */
#ifndef MP_SHIM_CRITERION_H
#define MP_SHIM_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

struct criterion_test_extra_data {
    int sentinel_;
    double timeout; /* seconds; 0: the suite's, else 120 */
    bool disabled;
    const char *description;
    void (*init)(void);
    void (*fini)(void);
    int exit_code; /* the test passes when it exits with this code */
    int signal;    /* nonzero: the test passes when it crashes */
};

struct criterion_test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct criterion_test_extra_data data;
    struct criterion_test *next;
};

struct criterion_suite {
    const char *name;
    struct criterion_test_extra_data data;
    struct criterion_suite *next;
};

struct criterion_test_set;

struct criterion_test_set *criterion_initialize(void);
int criterion_handle_args(int argc, char *argv[], bool handle_unknown_arg);
/* 1 when every test passed (or was skipped), 0 otherwise. */
int criterion_run_all_tests(struct criterion_test_set *tests);
void criterion_finalize(struct criterion_test_set *tests);

void cr__register_test(struct criterion_test *t);
void cr__register_suite(struct criterion_suite *s);
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void cr__fatal(const char *file, int line, const char *expr, const char *fmt, ...);
void cr__nonfatal(const char *file, int line, const char *expr, const char *fmt, ...);
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void cr__skip(const char *fmt, ...);
void cr__log(const char *level, const char *fmt, ...);

#define Test(...) CR__TEST(__VA_ARGS__, .sentinel_ = 0)
#define CR__TEST(suite, name, ...)                                                                 \
    static void suite##_##name##_impl(void);                                                       \
    static struct criterion_test cr__test_##suite##_##name = {                                     \
        #suite, #name, suite##_##name##_impl, {__VA_ARGS__}, NULL};                                \
    __attribute__((constructor)) static void cr__reg_##suite##_##name(void)                        \
    {                                                                                              \
        cr__register_test(&cr__test_##suite##_##name);                                             \
    }                                                                                              \
    static void suite##_##name##_impl(void)

#define TestSuite(...) CR__SUITE(__VA_ARGS__, .sentinel_ = 0)
#define CR__SUITE(suite, ...)                                                                      \
    static struct criterion_suite cr__suite_##suite = {#suite, {__VA_ARGS__}, NULL};               \
    __attribute__((constructor)) static void cr__regsuite_##suite(void)                            \
    {                                                                                              \
        cr__register_suite(&cr__suite_##suite);                                                    \
    }                                                                                              \
    struct cr__suite_end_##suite

/* fatal is 1 (cr_assert: the test stops) or 0 (cr_expect: it goes on). */
#define CR__REPORT_1 cr__fatal
#define CR__REPORT_0 cr__nonfatal
#define CR__CHECK(fatal, cond, expr, ...)                                                          \
    do {                                                                                           \
        if (!(cond)) CR__REPORT_##fatal(__FILE__, __LINE__, expr, __VA_ARGS__);                    \
    } while (0)

#define CR__ONE(fatal, cond, ...) CR__CHECK(fatal, cond, #cond, __VA_ARGS__)
#define CR__NOT(fatal, cond, ...) CR__CHECK(fatal, !(cond), "!(" #cond ")", __VA_ARGS__)
#define CR__CMP(fatal, op, ...) CR__CMP_(fatal, op, __VA_ARGS__, "")
#define CR__CMP_(fatal, op, a, b, ...) CR__CHECK(fatal, (a)op(b), #a " " #op " " #b, __VA_ARGS__)
#define CR__STR(fatal, op, ...) CR__STR_(fatal, op, __VA_ARGS__, "")
#define CR__STR_(fatal, op, a, b, ...)                                                             \
    CR__CHECK(fatal, strcmp((a), (b)) op 0, "strcmp(" #a ", " #b ") " #op " 0", __VA_ARGS__)
#define CR__NULL(fatal, op, ...) CR__NULL_(fatal, op, __VA_ARGS__, "")
#define CR__NULL_(fatal, op, p, ...) CR__CHECK(fatal, (p)op NULL, #p " " #op " NULL", __VA_ARGS__)
#define CR__ZERO(fatal, op, ...) CR__ZERO_(fatal, op, __VA_ARGS__, "")
#define CR__ZERO_(fatal, op, v, ...) CR__CHECK(fatal, (v)op 0, #v " " #op " 0", __VA_ARGS__)
#define CR__ARR(fatal, op, ...) CR__ARR_(fatal, op, __VA_ARGS__, "")
#define CR__ARR_(fatal, op, a, b, n, ...)                                                          \
    CR__CHECK(fatal, memcmp((a), (b), (n)) op 0, "memcmp(" #a ", " #b ", " #n ") " #op " 0",       \
              __VA_ARGS__)
#define CR__FLT(fatal, eq, ...) CR__FLT_(fatal, eq, __VA_ARGS__, "")
#define CR__FLT_(fatal, eq, a, b, eps, ...)                                                        \
    CR__CHECK(fatal, (((a) - (b) <= (eps)) && ((b) - (a) <= (eps))) == (eq),                       \
              CR__FLT_NAME_##eq "(" #a ", " #b ", " #eps ")", __VA_ARGS__)
#define CR__FLT_NAME_1 "float_eq"
#define CR__FLT_NAME_0 "float_neq"
#define CR__EMPTY(fatal, op, ...) CR__EMPTY_(fatal, op, __VA_ARGS__, "")
#define CR__EMPTY_(fatal, op, s, ...) CR__CHECK(fatal, (s)[0] op 0, #s "[0] " #op " 0", __VA_ARGS__)

#define cr_assert(...) CR__ONE(1, __VA_ARGS__, "")
#define cr_expect(...) CR__ONE(0, __VA_ARGS__, "")
#define cr_assert_not(...) CR__NOT(1, __VA_ARGS__, "")
#define cr_expect_not(...) CR__NOT(0, __VA_ARGS__, "")
#define cr_assert_fail(...) cr__fatal(__FILE__, __LINE__, "cr_assert_fail()", "" __VA_ARGS__)
#define cr_expect_fail(...) cr__nonfatal(__FILE__, __LINE__, "cr_expect_fail()", "" __VA_ARGS__)

#define cr_assert_eq(...) CR__CMP(1, ==, __VA_ARGS__)
#define cr_assert_neq(...) CR__CMP(1, !=, __VA_ARGS__)
#define cr_assert_lt(...) CR__CMP(1, <, __VA_ARGS__)
#define cr_assert_leq(...) CR__CMP(1, <=, __VA_ARGS__)
#define cr_assert_gt(...) CR__CMP(1, >, __VA_ARGS__)
#define cr_assert_geq(...) CR__CMP(1, >=, __VA_ARGS__)
#define cr_expect_eq(...) CR__CMP(0, ==, __VA_ARGS__)
#define cr_expect_neq(...) CR__CMP(0, !=, __VA_ARGS__)
#define cr_expect_lt(...) CR__CMP(0, <, __VA_ARGS__)
#define cr_expect_leq(...) CR__CMP(0, <=, __VA_ARGS__)
#define cr_expect_gt(...) CR__CMP(0, >, __VA_ARGS__)
#define cr_expect_geq(...) CR__CMP(0, >=, __VA_ARGS__)

#define cr_assert_null(...) CR__NULL(1, ==, __VA_ARGS__)
#define cr_assert_not_null(...) CR__NULL(1, !=, __VA_ARGS__)
#define cr_expect_null(...) CR__NULL(0, ==, __VA_ARGS__)
#define cr_expect_not_null(...) CR__NULL(0, !=, __VA_ARGS__)
#define cr_assert_zero(...) CR__ZERO(1, ==, __VA_ARGS__)
#define cr_assert_not_zero(...) CR__ZERO(1, !=, __VA_ARGS__)
#define cr_expect_zero(...) CR__ZERO(0, ==, __VA_ARGS__)
#define cr_expect_not_zero(...) CR__ZERO(0, !=, __VA_ARGS__)

#define cr_assert_str_eq(...) CR__STR(1, ==, __VA_ARGS__)
#define cr_assert_str_neq(...) CR__STR(1, !=, __VA_ARGS__)
#define cr_assert_str_lt(...) CR__STR(1, <, __VA_ARGS__)
#define cr_assert_str_gt(...) CR__STR(1, >, __VA_ARGS__)
#define cr_expect_str_eq(...) CR__STR(0, ==, __VA_ARGS__)
#define cr_expect_str_neq(...) CR__STR(0, !=, __VA_ARGS__)
#define cr_assert_str_empty(...) CR__EMPTY(1, ==, __VA_ARGS__)
#define cr_assert_str_not_empty(...) CR__EMPTY(1, !=, __VA_ARGS__)
#define cr_expect_str_empty(...) CR__EMPTY(0, ==, __VA_ARGS__)
#define cr_expect_str_not_empty(...) CR__EMPTY(0, !=, __VA_ARGS__)

#define cr_assert_arr_eq(...) CR__ARR(1, ==, __VA_ARGS__)
#define cr_assert_arr_neq(...) CR__ARR(1, !=, __VA_ARGS__)
#define cr_expect_arr_eq(...) CR__ARR(0, ==, __VA_ARGS__)
#define cr_expect_arr_neq(...) CR__ARR(0, !=, __VA_ARGS__)

#define cr_assert_float_eq(...) CR__FLT(1, 1, __VA_ARGS__)
#define cr_assert_float_neq(...) CR__FLT(1, 0, __VA_ARGS__)
#define cr_expect_float_eq(...) CR__FLT(0, 1, __VA_ARGS__)
#define cr_expect_float_neq(...) CR__FLT(0, 0, __VA_ARGS__)

#define cr_skip_test(...) cr__skip("" __VA_ARGS__)
#define cr_skip(...) cr__skip("" __VA_ARGS__)

#define cr_log_info(...) cr__log("INFO", __VA_ARGS__)
#define cr_log_warn(...) cr__log("WARN", __VA_ARGS__)
#define cr_log_error(...) cr__log("ERR ", __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
