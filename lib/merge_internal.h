/* merge_internal.h - the merge plan, shared by merge_plan.c (deciding)
 * and merge_run.c (streaming the tensors through the kernel). */
#ifndef LT_MERGE_INTERNAL_H
#define LT_MERGE_INTERNAL_H

#include "internal.h"

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
    double *coef;
    double *vec;
    double *magnitude;   /* DoRA, or NULL */
} merge_op;

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
} plan_tensor;

struct lt_merge_plan {
    lt_source *base;
    lt_merge_input *inputs;
    size_t n_inputs;
    lt_merge_options opts;
    plan_tensor *tensors;
    size_t n_tensors, cap_tensors;
    lt_strmap by_name;
    size_t *modules_merged;
    char **skipped;
    size_t n_skipped, cap_skipped;
    lt_merge_stats stats;
};

#endif
