/*
 * check.h - the tiny test harness every C test program uses.
 *
 * A test program defines `static void test_name(void)` functions that call
 * CHECK / CHECK_EQ_* and ends main() with `RUN(test_name); ...; return
 * check_done();`.  Each RUN prints one line, "PASS name" or "FAIL name",
 * preceded by the failing checks; tests/run.sh counts those lines across all
 * programs and prints the final "N passed, N failed" line.
 */
#ifndef LT_TEST_CHECK_H
#define LT_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_case_failures;
static int check_total_failed;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            check_case_failures++;                                             \
            if (check_case_failures <= 10)                                     \
                printf("  %s:%d: check failed: %s\n", __FILE__, __LINE__,      \
                       #cond);                                                 \
        }                                                                      \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            check_case_failures++;                                             \
            if (check_case_failures <= 10) {                                   \
                printf("  %s:%d: check failed: %s: ", __FILE__, __LINE__,      \
                       #cond);                                                 \
                printf(__VA_ARGS__);                                           \
                printf("\n");                                                  \
            }                                                                  \
        }                                                                      \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                     \
    CHECK_MSG((uint64_t)(a) == (uint64_t)(b), "%" PRIu64 " != %" PRIu64,       \
              (uint64_t)(a), (uint64_t)(b))

#define CHECK_STR(a, b)                                                        \
    CHECK_MSG((a) != NULL && strcmp((a), (b)) == 0, "\"%s\" != \"%s\"",        \
              (a) ? (a) : "(null)", (b))

#define RUN(fn)                                                                \
    do {                                                                       \
        check_case_failures = 0;                                               \
        fn();                                                                  \
        if (check_case_failures) {                                             \
            check_total_failed++;                                              \
            printf("FAIL %s\n", #fn);                                          \
        } else {                                                               \
            printf("PASS %s\n", #fn);                                          \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

static inline int check_done(void) { return check_total_failed ? 1 : 0; }

#endif
