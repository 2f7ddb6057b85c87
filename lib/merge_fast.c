/* merge_fast.c - the vector merge kernel, with a proof per element that
 * its rounded result equals the double path's.
 *
 * The double path (merge_run.c) computes x64 = w + sum_k C_k V_k in
 * float64, one multiply and one add per term in a fixed order, and rounds
 * x64 once to the output type.  This kernel computes the same sum in
 * float64 vectors, rows in blocks, fused multiply-adds where the machine
 * has them: a value y that may differ from x64 in its last bits.  With a
 * bound E >= |y - x64|, when no rounding boundary of the output type (a
 * midpoint between two neighbours) lies within [y - E, y + E], y and x64
 * round to the same value and y's rounding is written.  Otherwise, and for
 * what the test cannot judge (near zero, near overflow, NaN, F16 Inf), the
 * element is flagged and the caller recomputes it on the double path.  So
 * the output bytes are the double path's, on every machine, for every
 * thread count, fused or not.  E is some 2^-45 of the value, so flags are
 * rare: exact ties, and values within about 2^-40 of zero.
 *
 * Bound, with u = 2^-53, N = the summed rank, S = sum_k |C_k V_k|:
 *   this kernel's N products and sums:  2N u S (1 + 2N u)    (unfused)
 *   its final w + D:                     u |y| (1 + u)
 *   the double path's own error:         (2N + 1) u (|w| + S) (1 + 2N u)
 *   underflow:                           none while every nonzero C, V is
 *                                        within [2^-400, 2^400]; partial
 *                                        sums below 2^-1022: 2N 2^-1075
 * E = K |y| + (4N + 16) 2^-52 S' + 2^-40 |w| + 2^-1000, S' = (sum_k
 * |C_ik|)(max_k |V_kj|) >= S, covers these with a factor of two to spare
 * (for E's own rounding) for N <= 2048.  K is 2^-51 for F32 outputs; for
 * F16 and BF16 it is 2^-23, which also keeps y's rounding to float32 (the
 * step before the 16-bit rounding) on the same side of every midpoint.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "merge_internal.h"

#define MAX_FAST_RANK 2048u
#define MIN_FAST_COLS 16u   /* two vectors of the widest kernel */

struct merge_fast {
    uint32_t rank;      /* summed over the ops                              */
    double *row_bound;  /* [rows]: (4N + 16) 2^-52 sum_k |C_ik|, rounded up */
    double *col_max;    /* [cols]: max_k |V_kj|                             */
    float *row_bound32; /* the same as float32, rounded up                  */
    float *col_max32;
};

void merge_fast_free(merge_fast *f)
{
    if (!f)
        return;
    free(f->row_bound);
    free(f->col_max);
    free(f->row_bound32);
    free(f->col_max32);
    free(f);
}

/* Zero, or a finite magnitude whose products cannot underflow. */
static bool fast_value_ok(double v)
{
    double a = fabs(v);
    return a == 0 || (a >= 0x1p-400 && a <= 0x1p400);
}

/* float32 of a nonnegative bound, never below it (an underflow to zero is
 * covered by the bound's 2^-126 floor). */
static float round_up_f32(double v) { return (float)(v * (1 + 0x1p-20)); }

static bool fast_dtype(lt_dtype t) { return t == LT_BF16 || t == LT_F16 || t == LT_F32; }

static bool fast_eligible(const plan_tensor *t, uint64_t *rank)
{
    if (t->action != ACT_MERGE || !fast_dtype(t->in_dtype) || !fast_dtype(t->out_dtype) || t->n_rows ||
        t->cols < MIN_FAST_COLS)
        return false;
    *rank = 0;
    for (size_t k = 0; k < t->n_ops; k++) {
        const merge_op *op = &t->ops[k];
        if (op->magnitude)
            return false;
        *rank += op->rank;
        for (uint64_t i = 0; i < t->rows * op->rank; i++)
            if (!fast_value_ok(op->coef[i]))
                return false;
        for (uint64_t i = 0; i < (uint64_t)op->rank * t->cols; i++)
            if (!fast_value_ok(op->vec[i]))
                return false;
    }
    return *rank > 0 && *rank <= MAX_FAST_RANK;
}

lt_status merge_fast_prepare(plan_tensor *t, lt_error *err)
{
    uint64_t rank;
    if (!fast_eligible(t, &rank))
        return LT_OK;
    merge_fast *f = calloc(1, sizeof *f);
    if (!f)
        return lt_fail_nomem(err, "merge");
    f->rank = (uint32_t)rank;
    f->row_bound = malloc((size_t)t->rows * sizeof *f->row_bound);
    f->col_max = calloc((size_t)t->cols, sizeof *f->col_max);
    f->row_bound32 = malloc((size_t)t->rows * sizeof *f->row_bound32);
    f->col_max32 = malloc((size_t)t->cols * sizeof *f->col_max32);
    if (!f->row_bound || !f->col_max || !f->row_bound32 || !f->col_max32) {
        merge_fast_free(f);
        return lt_fail_nomem(err, "merge");
    }
    /* (1 + 2^-40): room for the rounding of the sum and the product */
    const double row_factor = (4.0 * (double)rank + 16) * 0x1p-52 * (1 + 0x1p-40);
    const double row_factor32 = row_factor + 0x1p-23 + 0x1p-39;
    for (uint64_t i = 0; i < t->rows; i++) {
        double sum = 0;
        for (size_t k = 0; k < t->n_ops; k++)
            for (uint32_t q = 0; q < t->ops[k].rank; q++)
                sum += fabs(t->ops[k].coef[i * t->ops[k].rank + q]);
        f->row_bound[i] = row_factor * sum;
        f->row_bound32[i] = round_up_f32(row_factor32 * sum);
    }
    for (size_t k = 0; k < t->n_ops; k++)
        for (uint64_t q = 0; q < t->ops[k].rank; q++)
            for (uint64_t j = 0; j < t->cols; j++) {
                double v = fabs(t->ops[k].vec[q * t->cols + j]);
                if (v > f->col_max[j])
                    f->col_max[j] = v;
            }
    for (uint64_t j = 0; j < t->cols; j++)
        f->col_max32[j] = round_up_f32(f->col_max[j]);
    t->fast = f;
    return LT_OK;
}

/* The kernel, written once in lib/merge_fast_kernel.h with GCC vector
 * types (LANES doubles a vector) and built here for AVX-512, AVX2 and
 * baseline x86-64 (chosen at run time).  Each build gets its own copy of the helpers so that GCC
 * lowers their vector operations for that build's instruction set. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4,prefer-vector-width=512")
#define KERNEL(name) name##_v4
#define LANES 8
#include "merge_fast_kernel.h"
#undef KERNEL
#undef LANES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define KERNEL(name) name##_v3
#define LANES 4
#include "merge_fast_kernel.h"
#undef KERNEL
#undef LANES
#pragma GCC pop_options
#endif

#define KERNEL(name) name##_baseline
#define LANES 2
#include "merge_fast_kernel.h"
#undef KERNEL
#undef LANES

size_t merge_fast_rows(const plan_tensor *t, const unsigned char *raw, uint64_t row0, uint64_t nr,
                       unsigned char *dst, unsigned char *flags, uint64_t *redo)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    if (__builtin_cpu_supports("x86-64-v4"))
        return rows_v4(t, raw, row0, nr, dst, flags, redo);
    if (__builtin_cpu_supports("x86-64-v3"))
        return rows_v3(t, raw, row0, nr, dst, flags, redo);
#endif
    return rows_baseline(t, raw, row0, nr, dst, flags, redo);
}
