/*
 * core.h - the helpers every part of libloratool shares (lib/ and
 * formats/): error filling, checked arithmetic, allocation, threads, a
 * string map, and safe file I/O.  Not installed; internal names are lti_*.
 */
#ifndef LT_CORE_H
#define LT_CORE_H

#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#include "loratool.h"

#if defined(__GNUC__)
#define LT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LT_PRINTF(a, b)
#endif

/* Hot loops built twice, for AVX2 and for baseline x86-64, the one the CPU
 * runs chosen at load time.  Both do the same IEEE operations in the same
 * order (nothing fused: -ffp-contract=off, and "avx2" does not enable FMA),
 * so the output bytes do not depend on the CPU.  -DLT_NO_TARGET_CLONES
 * builds the baseline code alone: the test build links such a second
 * loratool (BUILD/generic/loratool) and tests/test_isa.sh compares its
 * output with the dispatching one's. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__) && \
    !defined(LT_NO_TARGET_CLONES)
#define LT_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LT_TARGET_CLONES
#endif

/* ---- errors (lib/error.c) ---- */

/* Fill err (if not NULL) with status and a formatted message; returns
 * status so callers can write `return lti_fail(err, LT_ERR_INVALID, ...)`. */
lt_status lti_fail(lt_error *err, lt_status status, const char *fmt, ...) LT_PRINTF(3, 4);
/* Rewrite the NUL-terminated MSG (in a buffer of SIZE <= LT_ERROR_MAX
 * bytes) with every control character as \xNN, cutting what no longer
 * fits: what lti_fail does to every message. */
void lti_escape_controls(char *msg, size_t size);
/* I/O failure: "<path>: <what>: <strerror(errno)>", LT_ERR_IO. */
lt_status lti_fail_errno(lt_error *err, const char *path, const char *what);
/* Out of memory, naming what could not be allocated. */
lt_status lti_fail_nomem(lt_error *err, const char *path);

/* ---- checked arithmetic: true when the result fits ---- */
static inline bool lti_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool lti_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* A rows x cols matrix with leading dimension ld (>= cols) whose
 * (rows - 1) * ld + cols elements of es bytes are addressable in size_t. */
static inline bool lti_matrix_extent_ok(size_t rows, size_t cols, size_t ld, size_t es)
{
    size_t n;
    if (rows == 0 || cols == 0)
        return true;
    return ld >= cols && !__builtin_mul_overflow(rows - 1, ld, &n) && !__builtin_add_overflow(n, cols, &n) &&
           !__builtin_mul_overflow(n, es, &n);
}

/* True when s ends with suffix. */
static inline bool lti_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* ---- small allocation helpers (lib/util.c); NULL on failure ---- */
char *lti_strdup(const char *s);
char *lti_strndup(const char *s, size_t n);
/* malloc'd printf; NULL on failure */
char *lti_asprintf(const char *fmt, ...) LT_PRINTF(1, 2);
/* Join a directory and a file name with one '/'. malloc'd; NULL on failure */
char *lti_path_join(const char *dir, const char *name);
bool lti_is_dir(const char *path);
bool lti_is_file(const char *path);
/* Grow *array (of elem_size items, capacity *cap) to hold at least need
 * items; false on overflow or allocation failure. */
bool lti_grow(void **array, size_t *cap, size_t need, size_t elem_size);

/* A name as it may appear in a one-line error message: control characters
 * shown as '?', long names cut with "...".  Use as lti_show(name).text in
 * the argument list of lti_fail (the temporary lives until the call ends). */
typedef struct lti_shown {
    char text[160];
} lti_shown;
lti_shown lti_show(const char *s);

/* ---- threads (lib/parallel.c) ---- */

#define LT_MAX_THREADS 256u
/* ASKED, or one per online processor when 0; at most LT_MAX_THREADS. */
unsigned lti_thread_count(unsigned asked);
/* fn(ctx, i) for every i < n, on up to lti_thread_count(threads) threads
 * (the caller's among them), each i once, in no particular order; returns
 * when all are done.  Tasks report failure through ctx. */
void lti_parallel_for(size_t n, unsigned threads, void (*fn)(void *ctx, size_t i), void *ctx);

/* ---- string -> index map (lib/strmap.c); keys are borrowed ---- */
typedef struct lti_strmap {
    const char **keys;
    long *values;
    size_t cap;   /* power of two, or 0 */
    size_t count;
} lti_strmap;
/* Insert key -> value.  Returns 1 when inserted, 0 when the key was already
 * present (map unchanged), -1 on allocation failure. */
int lti_strmap_put(lti_strmap *map, const char *key, long value);
/* Value for key, or -1. */
long lti_strmap_get(const lti_strmap *map, const char *key);
void lti_strmap_free(lti_strmap *map);

/* ---- files (lib/fileio.c) ---- */

/* A file opened for positional reads. */
typedef struct lti_rfile {
    int fd;
    uint64_t size;
    char *path;
    const unsigned char *map;   /* whole-file read-only mapping of large files, or NULL */
} lti_rfile;

/* Open path read-only without ever blocking (a FIFO would), refuse what is
 * not a regular file (LT_ERR_INVALID, "<path>: not a regular file (a
 * FIFO)"), and fill *st; *fd_out receives a blocking descriptor, or -1. */
struct stat;
lt_status lti_open_regular(const char *path, int *fd_out, struct stat *st, lt_error *err);
lt_status lti_rfile_open(lti_rfile *f, const char *path, lt_error *err);
/* Read exactly len bytes at off; an attempt past the end of the file is
 * LT_ERR_INVALID ("<path>: file truncated ..."). Thread-safe. */
lt_status lti_rfile_pread(const lti_rfile *f, uint64_t off, void *dst, size_t len,
                         lt_error *err);
void lti_rfile_close(lti_rfile *f);
/* The bytes [off, off + len) in place, when the file is mapped and the
 * range inside it; else NULL (use lti_rfile_pread).  lti_rfile_release drops
 * the range's whole pages from this process's resident set (they stay in
 * the page cache), so streaming through a mapping keeps memory bounded. */
const void *lti_rfile_at(const lti_rfile *f, uint64_t off, size_t len);
void lti_rfile_release(const lti_rfile *f, const void *p, size_t len);

/* Read a whole small file (config JSON, index) into a NUL-terminated
 * malloc'd buffer; refuses files larger than max_bytes. */
lt_status lti_read_small_file(const char *path, size_t max_bytes, char **out,
                             size_t *out_len, lt_error *err);

/* Temporary paths for an output OUT are "<dir of OUT>/.<name of
 * OUT>" LTI_TEMP_MARK "<pid>-<6 random characters>" (lt_remove_temporaries
 * finds them by it). */
#define LTI_TEMP_MARK ".tmp-"

/* An output file written unnamed (O_TMPFILE) or under a temporary name in
 * its final directory, and renamed into place by lti_wfile_commit. */
typedef struct lti_wfile {
    int fd;
    char *final_path;
    char *tmp_path;     /* NULL while the file is unnamed */
    bool durable;   /* fsync before the rename (set after create) */
} lti_wfile;

lt_status lti_wfile_create(lti_wfile *f, const char *final_path, lt_error *err);
/* Give the file its final size, with its blocks allocated where the
 * filesystem can (so a full disk is an error now, not halfway through). */
lt_status lti_wfile_reserve(lti_wfile *f, uint64_t size, lt_error *err);
/* Write exactly len bytes at off. Thread-safe. */
lt_status lti_wfile_pwrite(lti_wfile *f, uint64_t off, const void *buf, size_t len,
                          lt_error *err);
/* Close and rename to the final name; when durable, fsync the file first
 * and its directory after. */
lt_status lti_wfile_commit(lti_wfile *f, lt_error *err);
/* Close and unlink the temporary file. Safe on a zeroed or committed f. */
void lti_wfile_abort(lti_wfile *f);
/* An output directory built under a hidden temporary name beside its
 * final one (tmp_path: write the files there) and moved into place whole
 * by lti_wdir_commit.  An existing final directory is replaced only when
 * it holds nothing but regular files loratool writes (adapter and shard
 * files, their index and config, README.md, a model's side files);
 * otherwise create and commit fail with LT_ERR_USAGE naming what is in the
 * way.  The replacement swaps the two (renameat2 RENAME_EXCHANGE), then
 * removes the old one; where the swap is not supported, the old directory
 * is renamed aside first (then OUT is briefly absent). */
typedef struct lti_wdir {
    char *final_path;
    char *tmp_path;
} lti_wdir;

lt_status lti_wdir_create(lti_wdir *d, const char *final_path, lt_error *err);
/* Move into place (durable: fsync the parent directory after).  On
 * failure the temporary directory is removed and an old one left as it
 * was.  Either way d is released. */
lt_status lti_wdir_commit(lti_wdir *d, bool durable, lt_error *err);
/* Remove the temporary directory and its files. Safe on a zeroed or
 * committed d. */
void lti_wdir_abort(lti_wdir *d);

/* Remove directory PATH and the entries in it that are not directories
 * (best effort; never follows PATH if it is a link).  Async-signal-safe:
 * system calls on a stack buffer only (open, getdents64, unlinkat). */
void lti_remove_flat_dir(const char *path);

/* Write a whole small file atomically (temp + rename), durably. */
lt_status lti_write_file_atomic(const char *path, const void *data, size_t len,
                               lt_error *err);

#endif
