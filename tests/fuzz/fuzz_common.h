/*
 * fuzz_common.h - what every fuzz target (tests/fuzz/fuzz_*.c) shares: the
 * checks of the library's promises and a scratch directory for parsers
 * that take a path.
 *
 * Promises checked on every input:
 *   - a failing call fills lt_error with a non-OK status and a one-line
 *     printable message: non-empty, NUL-terminated inside the buffer, no
 *     byte below 0x20 and no DEL (bytes >= 0x80 are UTF-8 text);
 *   - a source that opened is internally consistent: unique names, shape
 *     products equal n_elems, n_bytes = dtype size x elements, every
 *     tensor inside its file, offsets ascending per file, and its bytes
 *     readable through the public calls.
 * A broken promise aborts, which libFuzzer reports as a crash and the
 * replay driver (replay_main.c) as a failed case.
 *
 * Static state is fine here: this is a test harness, not the library.
 */
#ifndef LT_FUZZ_COMMON_H
#define LT_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loratool.h"
#include "source_sink.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define FUZZ_ASSERT(cond)                                                          \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz check failed: %s:%d: %s\n", __FILE__, __LINE__, \
                    #cond);                                                        \
            abort();                                                               \
        }                                                                          \
    } while (0)

static inline void fuzz_print_escaped(const char *what, const char *s, size_t n)
{
    fprintf(stderr, "%s: \"", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\"\n");
}

/* True when the n bytes at s hold no control character. */
static inline bool fuzz_one_line(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* A string the library hands out as one line (a warning, a message). */
static inline void fuzz_check_line(const char *what, const char *s)
{
    FUZZ_ASSERT(s != NULL);
    size_t n = strlen(s);
    if (n == 0 || !fuzz_one_line(s, n)) {
        fuzz_print_escaped(what, s, n);
        FUZZ_ASSERT(!"a line from the library is empty or holds a control character");
    }
}

/* FUZZ_VERBOSE=1 in the environment: each input's outcome on stderr (to
 * see what a corpus file reaches when replayed). */
static inline bool fuzz_verbose(void)
{
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    return verbose;
}

static inline void fuzz_note_ok(const char *what)
{
    if (fuzz_verbose())
        fprintf(stderr, "  ok: %s\n", what);
}

/* The error promise of a failed call. */
static inline void fuzz_check_error(const lt_error *err)
{
    if (fuzz_verbose())
        fprintf(stderr, "  error: %s\n", err->message);
    FUZZ_ASSERT(err->status == LT_ERR_USAGE || err->status == LT_ERR_INVALID ||
                err->status == LT_ERR_UNSUPPORTED || err->status == LT_ERR_IO ||
                err->status == LT_ERR_NOMEM);
    size_t n = strnlen(err->message, LT_ERROR_MAX);
    FUZZ_ASSERT(n < LT_ERROR_MAX);
    if (n == 0 || !fuzz_one_line(err->message, n)) {
        fuzz_print_escaped("error message", err->message, n);
        FUZZ_ASSERT(!"error message is empty or spans more than one line");
    }
}

static inline void fuzz_error_reset(lt_error *err)
{
    err->status = LT_OK;
    memset(err->message, 0, sizeof err->message);
}

/* ---- scratch directory: /dev/shm (memory) when there is one ---- */

static char fuzz_dir_path[64];

static int fuzz_remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void fuzz_remove_dir(void)
{
    if (fuzz_dir_path[0])
        nftw(fuzz_dir_path, fuzz_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* The scratch directory of this process, made on first use and removed at
 * exit. */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_path[0])
        return fuzz_dir_path;
    const char *base = lti_is_dir("/dev/shm") && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/loratool-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_remove_dir);
    return fuzz_dir_path;
}

/* PATH = scratch directory + "/" + NAME (static buffer per call site). */
static inline void fuzz_path(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", fuzz_dir(), name);
    FUZZ_ASSERT(n > 0 && (size_t)n < cap);
}

static inline void fuzz_write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const unsigned char *p = data;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        size -= (size_t)w;
    }
    close(fd);
}

static inline void fuzz_mkdir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        perror(path);
        abort();
    }
}

static inline uint64_t fuzz_file_size(const char *path)
{
    struct stat st;
    FUZZ_ASSERT(stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

/* The input as the scratch file NAME (one name per target), its path. */
static inline const char *fuzz_input_file(const char *name, const unsigned char *data, size_t size)
{
    static char path[128];
    if (!path[0])
        fuzz_path(path, sizeof path, name);
    fuzz_write_file(path, data, size);
    return path;
}

/* lt_source_open(PATH): NULL, the error promise checked, when it fails or
 * when the source is of another format than FORMAT (the first bytes of a
 * file decide, so a fuzzed .safetensors may well be a GGUF). */
static inline lt_source *fuzz_open_source(const char *path, const char *format)
{
    lt_error err;
    fuzz_error_reset(&err);
    lt_source *src = lt_source_open(path, &err);
    if (!src) {
        fuzz_check_error(&err);
        return NULL;
    }
    if (strcmp(lt_source_format(src), format) != 0) {
        lt_source_close(src);
        return NULL;
    }
    fuzz_note_ok("source opened");
    return src;
}

/* ---- an opened source must be consistent and readable ---- */

/* DATA_START (may be NULL): per file, where tensor offsets count from, when
 * the target knows it; else offsets are checked against the file size. */
static inline void fuzz_check_source(lt_source *src, const uint64_t *data_start)
{
    FUZZ_ASSERT(lt_source_format(src) && lt_source_path(src));
    size_t n_files = lt_source_file_count(src);
    FUZZ_ASSERT(n_files >= 1 || lt_source_tensor_count(src) == 0);
    uint64_t sizes[64];
    FUZZ_ASSERT(n_files <= 64);
    for (size_t k = 0; k < n_files; k++)
        sizes[k] = fuzz_file_size(lt_source_file_path(src, k));

    size_t n = lt_source_tensor_count(src);
    bool ordered = strcmp(lt_source_format(src), "torch") != 0;
    uint32_t last_file = 0;
    uint64_t last_offset = 0;
    static unsigned char buf[4096];
    for (size_t i = 0; i < n; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        FUZZ_ASSERT(t->name != NULL);
        FUZZ_ASSERT(lt_source_find(src, t->name) == (long)i);   /* names unique */
        FUZZ_ASSERT(t->dtype > LT_DTYPE_INVALID && t->dtype < LT_DTYPE_COUNT);
        FUZZ_ASSERT(t->n_dims <= LT_MAX_DIMS);
        uint64_t elems = 1;
        for (uint32_t d = 0; d < LT_MAX_DIMS; d++) {
            if (d >= t->n_dims) {
                FUZZ_ASSERT(t->shape[d] == 0);
                continue;
            }
            FUZZ_ASSERT(!__builtin_mul_overflow(elems, t->shape[d], &elems));
        }
        FUZZ_ASSERT(elems == t->n_elems);
        uint64_t bytes = 0;
        FUZZ_ASSERT(lt_dtype_nbytes(t->dtype, t->n_elems, &bytes));
        FUZZ_ASSERT(bytes == t->n_bytes);
        FUZZ_ASSERT(t->file_index < n_files);
        uint64_t start = data_start ? data_start[t->file_index] : 0, end;
        FUZZ_ASSERT(!__builtin_add_overflow(start, t->offset, &end));
        FUZZ_ASSERT(!__builtin_add_overflow(end, t->n_bytes, &end));
        FUZZ_ASSERT(end <= sizes[t->file_index]);
        /* file order: shard by shard, ascending offset.  Not for torch
         * files, whose tensors come sorted by name and may share storage
         * (views), as formats/torch_bin.c says; loratool.h's "ascending
         * offset" for lt_source_tensor does not hold there. */
        FUZZ_ASSERT(t->file_index >= last_file);
        if (t->file_index == last_file && i > 0 && ordered)
            FUZZ_ASSERT(t->offset >= last_offset);
        last_file = t->file_index;
        last_offset = t->offset;

        /* the bytes are there: first block and last byte */
        lt_error err;
        fuzz_error_reset(&err);
        if (t->n_bytes > 0) {
            size_t len = t->n_bytes < sizeof buf ? (size_t)t->n_bytes : sizeof buf;
            FUZZ_ASSERT(lt_source_read(src, i, 0, buf, len, &err) == LT_OK);
            FUZZ_ASSERT(lt_source_read(src, i, t->n_bytes - 1, buf, 1, &err) == LT_OK);
        }
        /* past the end is refused, with a proper message */
        fuzz_error_reset(&err);
        FUZZ_ASSERT(lt_source_read(src, i, t->n_bytes, buf, 1, &err) != LT_OK);
        fuzz_check_error(&err);
        if (lt_dtype_is_float(t->dtype) && t->n_elems > 0) {
            float f[64];
            uint64_t count = t->n_elems < 64 ? t->n_elems : 64;
            fuzz_error_reset(&err);
            FUZZ_ASSERT(lt_source_read_f32(src, i, t->n_elems - count, count, f, &err) == LT_OK);
        }
        /* the whole tensor as doubles (dequantizes ggml blocks) when small */
        if (lt_dtype_is_numeric(t->dtype) && t->n_elems <= 4096) {
            double *all = NULL;
            fuzz_error_reset(&err);
            if (lti_source_read_all_f64(src, i, &all, &err) != LT_OK)
                fuzz_check_error(&err);   /* NaN/Inf values are refused */
            free(all);
        }
    }
    for (size_t i = 0; i < lt_source_meta_count(src); i++) {
        const char *key = lt_source_meta_key(src, i), *value = lt_source_meta_value(src, i);
        FUZZ_ASSERT(key && value);
        FUZZ_ASSERT(lt_source_meta_get(src, key) != NULL);
    }
}

/* ---- an opened adapter must be consistent ---- */

static inline uint64_t fuzz_elems(lt_source *src, long index)
{
    if (index < 0)
        return 0;
    FUZZ_ASSERT((size_t)index < lt_source_tensor_count(src));
    return lt_source_tensor(src, (size_t)index)->n_elems;
}

static inline void fuzz_check_adapter(const lt_adapter *ad)
{
    const lt_peft_config *cfg = lt_adapter_config(ad);
    lt_source *src = lt_adapter_source(ad);
    FUZZ_ASSERT(cfg && src && cfg->peft_type && cfg->bias);
    for (size_t i = 0; i < cfg->n_target_modules; i++)
        FUZZ_ASSERT(cfg->target_modules[i] != NULL);
    for (size_t i = 0; i < cfg->n_modules_to_save; i++)
        FUZZ_ASSERT(cfg->modules_to_save[i] != NULL);
    for (size_t i = 0; i < cfg->n_unknown_keys; i++)
        FUZZ_ASSERT(cfg->unknown_keys[i] != NULL);
    for (size_t i = 0; i < lt_adapter_warning_count(ad); i++)
        fuzz_check_line("warning", lt_adapter_warning(ad, i));
    uint64_t lora = 0, replaced = 0;
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        FUZZ_ASSERT(m->name && m->target);
        FUZZ_ASSERT(m->tensor_a >= 0 && m->tensor_b >= 0);
        FUZZ_ASSERT(m->rank > 0);
        FUZZ_ASSERT(isfinite(m->alpha) && isfinite(m->scale));
        const lt_tensor_info *a = lt_source_tensor(src, (size_t)m->tensor_a);
        const lt_tensor_info *b = lt_source_tensor(src, (size_t)m->tensor_b);
        FUZZ_ASSERT(a->n_dims >= 2 && b->n_dims >= 2);
        /* the delta [out, in] is B [out, r] times A [r, in] */
        if (m->a_transposed)
            FUZZ_ASSERT(a->shape[1] == m->rank);
        else if (m->kind == LT_MODULE_EMBEDDING)
            FUZZ_ASSERT(a->shape[0] == m->rank && a->shape[1] == m->out_features &&
                        b->shape[0] == m->in_features && b->shape[1] == m->rank);
        else
            FUZZ_ASSERT(b->shape[0] == m->out_features && b->shape[1] == m->rank &&
                        a->shape[0] % m->rank == 0);
        uint64_t p = fuzz_elems(src, m->tensor_a) + fuzz_elems(src, m->tensor_b) +
                     fuzz_elems(src, m->tensor_e) + fuzz_elems(src, m->tensor_magnitude) +
                     fuzz_elems(src, m->tensor_bias);
        FUZZ_ASSERT(p == m->n_params);
        if (m->tensor_e >= 0)
            FUZZ_ASSERT(fuzz_elems(src, m->tensor_e) == m->rank);
        if (m->tensor_magnitude >= 0)
            FUZZ_ASSERT(fuzz_elems(src, m->tensor_magnitude) == m->out_features);
        lora += m->n_params;
    }
    for (size_t i = 0; i < lt_adapter_replacement_count(ad); i++) {
        const lt_replacement *r = lt_adapter_replacement(ad, i);
        FUZZ_ASSERT(r->key && r->target);
        FUZZ_ASSERT(r->n_params == fuzz_elems(src, r->tensor));
        if (r->kind == LT_REPLACE_TOKEN_ROWS) {
            const lt_tensor_info *t = lt_source_tensor(src, (size_t)r->tensor);
            FUZZ_ASSERT(t->n_dims == 2 && t->shape[0] == r->n_token_indices);
            FUZZ_ASSERT(r->n_token_indices == 0 || r->token_indices != NULL);
        }
        replaced += r->n_params;
    }
    FUZZ_ASSERT(lora == lt_adapter_lora_params(ad));
    FUZZ_ASSERT(replaced == lt_adapter_replacement_params(ad));
}

#endif
