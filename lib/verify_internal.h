/* verify_internal.h - what lib/verify.c (the plan, untouched and replaced
 * tensors, the report), lib/verify_forward.c (the forward check of merged
 * tensors) and lib/diff.c share.  Internal to lib/. */
#ifndef LT_VERIFY_INTERNAL_H
#define LT_VERIFY_INTERNAL_H

#include <pthread.h>

#include "core.h"

/* Elements read per step: 256 KB of BF16 per file.  Read into buffers
 * this small, the data stays in the core's cache between the kernel's copy
 * and our passes over it; this beat mapping the files (page-table and TLB
 * work per 4 KB page) and larger chunks (measured: bench/verify_bench.py). */
#define VERIFY_CHUNK_ELEMS (1u << 17)

/* One low-rank term on a base tensor viewed as rows x cols:
 * delta = coef (rows x rank) @ vec (rank x cols), as spec/merge.md builds
 * it; a lora_bias term is coef [1], vec = w s bias. */
typedef struct verify_op {
    const lt_adapter *adapter;
    const lt_lora_module *module;
    lt_fit fit;
    double factor;          /* input weight x module scale                  */
    bool bias;              /* the lora_bias term of module                 */
    uint32_t rank;
    double *coef, *vec;     /* loaded while the tensor is checked           */
    double *magnitude;      /* DoRA, or NULL                                */
    double *u;              /* rank x K: vec @ x_k                          */
    double *vec_abs;        /* rank: sum_j |vec[t, j]|                      */
} verify_op;

typedef struct verify_tensor {
    lt_verify_kind kind;
    long out_index;                 /* -1: none                             */
    verify_op *ops;
    size_t n_ops, cap_ops;
    const lt_adapter *rep_adapter;  /* REPLACED: the adapter and its tensor */
    long rep_tensor;
    const lt_adapter *tok_adapter;  /* trainable token rows, or NULL        */
    const lt_replacement *tok;
} verify_tensor;

/* Buffers a task keeps from tensor to tensor: a fresh allocation of this
 * size is fresh pages, a page fault each 4 KB every time.  Slot k grows to
 * the largest size asked of it and never shrinks. */
#define VERIFY_SLOTS 8
typedef struct verify_scratch {
    void *buf[VERIFY_SLOTS];
    size_t cap[VERIFY_SLOTS];
    struct verify_scratch *next;
} verify_scratch;

/* Slot SLOT of s, at least BYTES long (contents undefined), or NULL when
 * out of memory. */
void *verify_scratch_get(verify_scratch *s, unsigned slot, size_t bytes);

typedef struct verify_ctx {
    lt_source *base, *out;
    lt_verify_options opts;
    double threshold;               /* noise units                          */
    lt_verify_report *report;
    pthread_mutex_t pool_lock;      /* guards pool                          */
    verify_scratch *pool;           /* scratch no task holds                */
} verify_ctx;

/* Rows x cols view of a tensor: shape[0] x the rest; 1 x n for vectors. */
void verify_view(const lt_tensor_info *t, uint64_t *rows, uint64_t *cols);

/* Same number of dimensions and the same extents. */
bool verify_same_shape(const lt_tensor_info *x, const lt_tensor_info *y);

/* Read all of tensor i of src as float64 (quantized blocks dequantized);
 * NaN or Inf is LT_ERR_INVALID.  *out is malloc'd. */
lt_status verify_read_f64(lt_source *src, size_t i, double **out, lt_error *err);

/* Read COUNT rows from row R0 (in the first file's order) of tensor i of
 * src, whose rows are ROW_BYTES long; inv (may be NULL) gives the row of
 * src that holds each row of the first file. */
lt_status verify_read_rows(lt_source *src, size_t i, uint64_t r0, uint64_t count, uint64_t row_bytes,
                           const uint64_t *inv, unsigned char *dst, lt_error *err);

/* Load op's factors as the merge builds them (lib/merge_plan.c): B scaled
 * by op->factor once, AdaLoRA's E folded into A, then C and V by op->fit;
 * a bias op gets C = [1], V = factor x lora_B.bias.  verify_free_op frees
 * what was loaded. */
lt_status verify_load_op(verify_op *op, lt_error *err);
void verify_free_op(verify_op *op);

/* The forward check of a MERGED tensor (verify_forward.c): fills *vt,
 * which already has name and kind.  INV as for verify_read_rows; the
 * buffers come from SCRATCH. */
lt_status verify_forward(verify_ctx *ctx, size_t base_index, verify_tensor *t, const uint64_t *inv,
                         verify_scratch *scratch, lt_verify_tensor *vt, lt_error *err);

/* Mark vt failed with a formatted reason (the first reason wins). */
void verify_problem(lt_verify_tensor *vt, const char *fmt, ...) LT_PRINTF(2, 3);

#endif
