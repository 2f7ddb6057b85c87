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

#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* ---- file helpers the format tests share ---- */

/* printf into one of a ring of static buffers: paths for one statement. */
static inline const char *fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));
static inline const char *fmt(const char *format, ...)
{
    static char ring[8][4096];
    static int next;
    char *buf = ring[next++ % 8];
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof ring[0], format, ap);
    va_end(ap);
    return buf;
}

static inline bool write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* Whole file into a malloc'd buffer (*len bytes); NULL when unreadable. */
static inline unsigned char *read_file(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, used = 0, got;
    do {
        if (used == cap) {
            cap = cap ? cap * 2 : 4096;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        got = fread(buf + used, 1, cap - used, f);
        used += got;
    } while (got > 0);
    fclose(f);
    *len = used;
    return buf;
}

static inline int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* rm -rf path */
static inline void remove_tree(const char *path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

#endif
