/* merge_internal.h - the merge plan, shared by merge_plan.c (deciding)
 * and merge_run.c (streaming the tensors through the kernel). */
#ifndef LT_MERGE_INTERNAL_H
#define LT_MERGE_INTERNAL_H

#include "source_sink.h"

typedef enum tensor_action {
    ACT_COPY,      /* bytes as they are                                */
    ACT_CONVERT,   /* dtype changes, values do not                     */
    ACT_MERGE,     /* one or more ops add to it                        */
    ACT_REPLACE,   /* values come from an adapter tensor               */
    ACT_ADD        /* an adapter tensor the base lacks                 */
} tensor_action;

/* acc[rows, cols] += coef[rows, rank] @ vec[rank, cols]; then, for DoRA,
 * each row is scaled by magnitude[row] / ||row||. */
typedef struct merge_op {
    size_t input;
    const lt_lora_module *module;
    lt_fit fit;
    uint32_t rank;
    double factor;       /* weight * scale, folded into B when loaded */
    double *coef;        /* NULL until loaded (merge_plan.c)          */
    double *vec;
    double *magnitude;   /* DoRA, or NULL */
} merge_op;

/* The vector kernel's bounds for a tensor (merge_fast.c). */
typedef struct merge_fast merge_fast;

/* Builds of the vector kernel, best first. */
typedef enum merge_isa { MERGE_ISA_AVX512, MERGE_ISA_AVX2, MERGE_ISA_BASELINE } merge_isa;

typedef struct plan_tensor {
    char *name;
    tensor_action action;
    long base_index;          /* -1 for ACT_ADD                      */
    size_t replace_input;     /* ACT_REPLACE / ACT_ADD               */
    long replace_tensor;
    lt_dtype in_dtype, out_dtype;
    uint32_t n_dims;
    uint64_t shape[LT_MAX_DIMS];
    uint64_t n_elems, rows, cols;
    merge_op *ops;
    size_t n_ops, cap_ops;
    /* trainable token rows: row row_ids[i] becomes row i of row_values
     * ([n_rows, cols]), after the ops; row_ids ascending */
    uint64_t *row_ids;
    double *row_values;
    size_t n_rows;
    merge_fast *fast;         /* NULL: every element on the double path */
} plan_tensor;

struct lt_merge_plan {
    lt_source *base;
    lt_merge_input *inputs;
    size_t n_inputs;
    lt_merge_options opts;
    plan_tensor *tensors;
    size_t n_tensors, cap_tensors;
    lti_strmap by_name;
    size_t *modules_merged;
    char **skipped;
    size_t n_skipped, cap_skipped;
    lt_merge_stats stats;
};

/* Bytes of n elements (n whole blocks for the block types). */
static inline uint64_t merge_bytes_of(lt_dtype t, uint64_t n)
{
    return n / lt_dtype_block_elems(t) * lt_dtype_block_bytes(t);
}

/* Rows [first, first + count) of merged tensor T (merge_rows.c): RAW, their
 * input bytes, to OUT, their output bytes.  ACC: scratch of count * cols
 * doubles; REDO: scratch of count * cols indices.  Errors: a NaN, Inf or
 * out-of-range result where the base was finite (the first in row order),
 * a DoRA row of norm zero. */
lt_status merge_rows(const plan_tensor *t, uint64_t first, uint64_t count, const unsigned char *raw,
                     unsigned char *out, double *acc, uint64_t *redo, lt_error *err);

/* An output buffer: filled by its worker, written by merge_write.c. */
typedef struct out_slot {
    unsigned char *data;
    long index;        /* sink tensor                          */
    uint64_t off;      /* byte offset in that tensor           */
    size_t len;
    /* instead of data: bytes lent by a source's mapping, given back to
     * lent_from (tensor lent_index) once written */
    const unsigned char *lent;
    lt_source *lent_from;
    size_t lent_index;
    bool queued;       /* guarded by the writer's lock         */
} out_slot;

typedef struct merge_writer merge_writer;

/* A writer for SINK shared by n_workers workers, each with two slots.
 * NULL when out of memory. */
merge_writer *merge_writer_create(lt_sink *sink, size_t n_workers);
void merge_writer_free(merge_writer *w);
/* One of the caller's two slots that is not queued (waits for one). */
out_slot *merge_writer_slot(merge_writer *w, out_slot pair[2]);
/* Queue a filled slot; the caller may end up writing queued slots itself. */
void merge_writer_submit(merge_writer *w, out_slot *slot);
/* Wait until neither of the caller's slots is queued. */
void merge_writer_drain(merge_writer *w, out_slot pair[2]);
/* Whether a write failed; the first error into *err (may be NULL). */
bool merge_writer_failed(merge_writer *w, lt_error *err);

/* Give T the vector kernel when its ops and dtypes allow it (F32, F16 or
 * BF16 in and out, no DoRA, no token rows, bounded rank and factor
 * range); else leave t->fast NULL.  Errors: out of memory only. */
lt_status merge_fast_prepare(plan_tensor *t, lt_error *err);
void merge_fast_free(merge_fast *f);
/* Run T on another build of the kernel (tests): false when T has no
 * kernel or the machine lacks that instruction set. */
bool merge_fast_set_isa(plan_tensor *t, merge_isa isa);

/* Merge rows [row0, row0 + nr) of T from RAW (those rows' input bytes)
 * into DST (their output bytes).  Elements whose rounding could differ
 * from the double path's are listed in REDO (indices into the block, in
 * no particular order; REDO has room for nr * cols) and their DST bytes
 * must be overwritten by the caller; returns how many. */
size_t merge_fast_rows(const plan_tensor *t, const unsigned char *raw, uint64_t row0, uint64_t nr,
                       unsigned char *dst, uint64_t *redo);

#endif
