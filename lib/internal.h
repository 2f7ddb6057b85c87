/*
 * internal.h - what lib/ shares with formats/ but not with users.
 *
 * Naming: public calls are lt_*, these shared internals are lt_* too but are
 * declared only here; everything else is static in its file.
 */
#ifndef LT_INTERNAL_H
#define LT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "loratool.h"

#if defined(__GNUC__)
#define LT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LT_PRINTF(a, b)
#endif

/* ---- errors (lib/error.c) ---- */

/* Fill err (if not NULL) with status and a formatted message; returns
 * status so callers can write `return lt_fail(err, LT_ERR_INVALID, ...)`. */
lt_status lt_fail(lt_error *err, lt_status status, const char *fmt, ...) LT_PRINTF(3, 4);
/* I/O failure: "<path>: <what>: <strerror(errno)>", LT_ERR_IO. */
lt_status lt_fail_errno(lt_error *err, const char *path, const char *what);
/* Out of memory, naming what could not be allocated. */
lt_status lt_fail_nomem(lt_error *err, const char *path);

/* ---- checked arithmetic: true when the result fits ---- */
static inline bool lt_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool lt_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* A rows x cols matrix with leading dimension ld (>= cols) whose
 * (rows - 1) * ld + cols elements of es bytes are addressable in size_t. */
static inline bool lt_matrix_extent_ok(size_t rows, size_t cols, size_t ld, size_t es)
{
    size_t n;
    if (rows == 0 || cols == 0)
        return true;
    return ld >= cols && !__builtin_mul_overflow(rows - 1, ld, &n) && !__builtin_add_overflow(n, cols, &n) &&
           !__builtin_mul_overflow(n, es, &n);
}

/* ---- small allocation helpers (lib/util.c); NULL on failure ---- */
char *lt_strdup(const char *s);
char *lt_strndup(const char *s, size_t n);
/* malloc'd printf; NULL on failure */
char *lt_asprintf(const char *fmt, ...) LT_PRINTF(1, 2);
/* Join a directory and a file name with one '/'. malloc'd; NULL on failure */
char *lt_path_join(const char *dir, const char *name);
bool lt_is_dir(const char *path);
bool lt_is_file(const char *path);
/* Grow *array (of elem_size items, capacity *cap) to hold at least need
 * items; false on overflow or allocation failure. */
bool lt_grow(void **array, size_t *cap, size_t need, size_t elem_size);

/* ---- threads (lib/parallel.c) ---- */

#define LT_MAX_THREADS 256u
/* ASKED, or one per online processor when 0; at most LT_MAX_THREADS. */
unsigned lt_thread_count(unsigned asked);
/* fn(ctx, i) for every i < n, on up to lt_thread_count(threads) threads
 * (the caller's among them), each i once, in no particular order; returns
 * when all are done.  Tasks report failure through ctx. */
void lt_parallel_for(size_t n, unsigned threads, void (*fn)(void *ctx, size_t i), void *ctx);

/* ---- string -> index map (lib/strmap.c); keys are borrowed ---- */
typedef struct lt_strmap {
    const char **keys;
    long *values;
    size_t cap;   /* power of two, or 0 */
    size_t count;
} lt_strmap;
/* Insert key -> value.  Returns 1 when inserted, 0 when the key was already
 * present (map unchanged), -1 on allocation failure. */
int lt_strmap_put(lt_strmap *map, const char *key, long value);
/* Value for key, or -1. */
long lt_strmap_get(const lt_strmap *map, const char *key);
void lt_strmap_free(lt_strmap *map);

/* ---- files (lib/fileio.c) ---- */

/* A file opened for positional reads. */
typedef struct lt_rfile {
    int fd;
    uint64_t size;
    char *path;
    const unsigned char *map;   /* whole-file read-only mapping of large files, or NULL */
} lt_rfile;

lt_status lt_rfile_open(lt_rfile *f, const char *path, lt_error *err);
/* Read exactly len bytes at off; an attempt past the end of the file is
 * LT_ERR_INVALID ("<path>: file truncated ..."). Thread-safe. */
lt_status lt_rfile_pread(const lt_rfile *f, uint64_t off, void *dst, size_t len,
                         lt_error *err);
void lt_rfile_close(lt_rfile *f);
/* The bytes [off, off + len) in place, when the file is mapped and the
 * range inside it; else NULL (use lt_rfile_pread).  lt_rfile_release drops
 * the range's whole pages from this process's resident set (they stay in
 * the page cache), so streaming through a mapping keeps memory bounded. */
const void *lt_rfile_at(const lt_rfile *f, uint64_t off, size_t len);
void lt_rfile_release(const lt_rfile *f, const void *p, size_t len);

/* Read a whole small file (config JSON, index) into a NUL-terminated
 * malloc'd buffer; refuses files larger than max_bytes. */
lt_status lt_read_small_file(const char *path, size_t max_bytes, char **out,
                             size_t *out_len, lt_error *err);

/* An output file written under a temporary name in its final directory and
 * renamed into place by lt_wfile_commit. */
typedef struct lt_wfile {
    int fd;
    char *final_path;
    char *tmp_path;
    bool durable;   /* fsync before the rename (set after create) */
} lt_wfile;

lt_status lt_wfile_create(lt_wfile *f, const char *final_path, lt_error *err);
/* Give the file its final size, with its blocks allocated where the
 * filesystem can (so a full disk is an error now, not halfway through). */
lt_status lt_wfile_reserve(lt_wfile *f, uint64_t size, lt_error *err);
/* Write exactly len bytes at off. Thread-safe. */
lt_status lt_wfile_pwrite(lt_wfile *f, uint64_t off, const void *buf, size_t len,
                          lt_error *err);
/* Close and rename to the final name; when durable, fsync the file first
 * and its directory after. */
lt_status lt_wfile_commit(lt_wfile *f, lt_error *err);
/* Close and unlink the temporary file. Safe on a zeroed or committed f. */
void lt_wfile_abort(lt_wfile *f);
/* Write a whole small file atomically (temp + rename), durably. */
lt_status lt_write_file_atomic(const char *path, const void *data, size_t len,
                               lt_error *err);

/* ---- sources: how formats build them (lib/source.c) ---- */

struct lt_source_ops {
    /* Read len bytes at off of tensor t (bounds already checked). */
    lt_status (*read)(lt_source *src, const lt_tensor_info *t, uint64_t off,
                      void *dst, size_t len, lt_error *err);
    /* Optional: the same bytes in place (a mapping), or NULL. */
    const void *(*borrow)(lt_source *src, const lt_tensor_info *t, uint64_t off, size_t len);
    void (*release)(lt_source *src, const lt_tensor_info *t, const void *p, size_t len);
    /* Free the format's private state. */
    void (*close)(void *impl);
};

struct lt_source {
    const char *format;               /* static string                      */
    char *path;
    const struct lt_source_ops *ops;
    void *impl;                       /* the format's private state         */
    lt_tensor_info *tensors;
    size_t n_tensors, cap_tensors;
    lt_strmap by_name;
    char **meta_keys, **meta_values;
    size_t n_meta, cap_meta;
    char **files;
    size_t n_files, cap_files;
};

lt_source *lt_source_new(const char *format, const char *path,
                         const struct lt_source_ops *ops, lt_error *err);
/* Append a tensor; computes n_elems and n_bytes with overflow checks.
 * LT_ERR_INVALID naming `file_path` on duplicate names, bad dims, overflow
 * or a shape that is not a whole number of blocks. */
lt_status lt_source_add_tensor(lt_source *src, const char *file_path,
                               const char *name, lt_dtype dtype, uint32_t n_dims,
                               const uint64_t *shape, uint64_t offset,
                               uint32_t file_index, lt_error *err);
lt_status lt_source_add_meta(lt_source *src, const char *key, const char *value,
                             lt_error *err);
lt_status lt_source_add_file(lt_source *src, const char *path, lt_error *err);

/* Bytes [off, off + len) of tensor i in place, or NULL when the format
 * cannot lend them (then lt_source_read); give them back with
 * lt_source_release once used.  Thread-safe. */
const void *lt_source_borrow(lt_source *src, size_t i, uint64_t off, size_t len);
void lt_source_release(lt_source *src, size_t i, const void *p, size_t len);

/* Read all of float tensor i as doubles into a malloc'd array (adapter
 * factors: small).  NaN or Inf values are LT_ERR_INVALID naming the
 * tensor; quantized GGUF tensors are dequantized. */
lt_status lt_source_read_all_f64(lt_source *src, size_t i, double **out, lt_error *err);

/* Match with the outcome made visible (lib/regex.c): 1 match, 0 no match,
 * -1 when the step budget ran out (lt_regex_fullmatch/search report -1 as
 * no match). */
int lt_regex_exec(const lt_regex *re, const char *subject, bool search);

/* Truncated factors of a dense delta DIFF (m x n, f32) by randomized SVD
 * under opts->rule (FIXED: that rank; ENERGY: the smallest rank up to
 * opts->max_rank keeping that fraction of TOTAL = ||DIFF||_F^2): *b_out
 * [m, rank] = U sqrt(S), *a_out [rank, n] = sqrt(S) V^T (malloc'd), the
 * report entry's new_rank, energy_kept, rel_error and zero filled
 * (lib/extract.c; shared with TIES/DARE in lib/surgery.c). */
lt_status lt_factors_from_dense(const lt_extract_options *opts, const float *diff, uint64_t m, uint64_t n,
                                double total, uint32_t *rank_out, float **a_out, float **b_out,
                                lt_surgery_module *rep, lt_error *err);

/* A module's factors as malloc'd doubles in PEFT layout: *b_out [b_rows,
 * r] times b_factor, *a_out [r, a_cols] with AdaLoRA's E folded in
 * (embeddings: b_rows = dim, a_cols = vocab).  lib/surgery.c. */
lt_status lt_module_factors_f64(const lt_adapter *ad, const lt_lora_module *m, double b_factor, double **b_out,
                                double **a_out, lt_error *err);

/* Element count of a shape, overflow-checked. */
bool lt_shape_elems(uint32_t n_dims, const uint64_t *shape, uint64_t *out);

/* ---- sinks: how formats implement them (lib/sink.c) ---- */

typedef struct lt_sink_tensor {
    char *name;
    lt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[LT_MAX_DIMS];
    uint64_t n_elems, n_bytes;
    uint64_t offset;       /* absolute file offset, set by the format's begin */
    uint32_t file_index;   /* shard, set by the format's begin                */
} lt_sink_tensor;

struct lt_sink_ops {
    lt_status (*begin)(lt_sink *sink, lt_error *err);
    lt_status (*write)(lt_sink *sink, const lt_sink_tensor *t, uint64_t off,
                       const void *data, size_t len, lt_error *err);
    lt_status (*commit)(lt_sink *sink, lt_error *err);
    void (*abort)(lt_sink *sink);   /* remove temp files, free impl          */
};

struct lt_sink {
    const char *format;
    char *path;
    lt_sink_options opts;
    const struct lt_sink_ops *ops;
    void *impl;
    lt_sink_tensor *tensors;
    size_t n_tensors, cap_tensors;
    lt_strmap by_name;
    char **meta_keys, **meta_values;
    size_t n_meta, cap_meta;
    bool begun;
};

lt_sink *lt_sink_new(const char *format, const char *path,
                     const lt_sink_options *opts, const struct lt_sink_ops *ops,
                     lt_error *err);

/* ---- formats (formats/registry.c) ---- */

/* What a format sees when bidding for a path. */
typedef struct lt_probe {
    const char *path;
    bool is_dir;
    const unsigned char *head;   /* first bytes of a regular file */
    size_t head_len;
} lt_probe;

typedef struct lt_format {
    const char *name;
    /* 0 = not mine; higher = more certain (100 = magic bytes matched) */
    int (*bid)(const lt_probe *probe);
    lt_source *(*open)(const char *path, lt_error *err);
    /* NULL when the format cannot be written */
    lt_sink *(*create)(const char *path, const lt_sink_options *opts, lt_error *err);
} lt_format;

extern const lt_format lt_format_safetensors;
extern const lt_format lt_format_safetensors_sharded;
extern const lt_format lt_format_peft;
extern const lt_format lt_format_gguf;
extern const lt_format lt_format_torch_bin;

/* Bytes of one element of a fixed-size GGUF value type; 0 for string,
 * array and unknown ids. */
static inline uint32_t lt_gguf_fixed_size(int type)
{
    switch (type) {
    case LT_GGUF_U8: case LT_GGUF_I8: case LT_GGUF_BOOL: return 1;
    case LT_GGUF_U16: case LT_GGUF_I16: return 2;
    case LT_GGUF_U32: case LT_GGUF_I32: case LT_GGUF_F32: return 4;
    case LT_GGUF_U64: case LT_GGUF_I64: case LT_GGUF_F64: return 8;
    default: return 0;
    }
}

/* The GGUF writer (formats/gguf_write.c), the create op of lt_format_gguf. */
lt_sink *lt_gguf_sink_create(const char *path, const lt_sink_options *opts, lt_error *err);

#endif
