/* merge_fast.c - the vector merge kernel, with a proof per element that
 * its rounded result equals the double path's.
 *
 * The double path (merge_run.c) computes x64 = w + sum_k C_k V_k in
 * float64, one multiply and one add per term in a fixed order, and rounds
 * x64 once to the output type.  This kernel computes D = sum_k C_k V_k in
 * float64 vectors, rows in blocks, fused multiply-adds where the machine
 * has them, then y = w + D and a bound E >= |y - x64|.  When no rounding
 * boundary of the output type (a midpoint between two neighbours) lies
 * within [y - E, y + E], y and x64 round to the same value and y's
 * rounding is written.  Otherwise, and for what the test cannot judge
 * (near zero, near overflow, NaN, Inf), the element is flagged and the
 * caller recomputes it on the double path.  So the output bytes are the
 * double path's on every machine, for every thread count, fused or not.
 *
 * F16 and BF16 outputs (the common case) take y = fl32(w + d),
 * d = fl32(D), and test in float32, twice as many lanes a vector.  With
 * u = 2^-24, N = the summed rank (<= 2048), S = sum_k |C_k V_k|:
 *   D's own error (2N float64 roundings):     2N 2^-53 S (1.01)
 *   fl32(D):                                  u |D| <= u |d| (1 + 2u)
 *   fl32(w + d):                              u |y| (1 + 2u)
 *   the double path's error (N + 1 sums
 *   of rounded products, in order):           (N + 1) 2^-53 (|w| + S) (1.01)
 *                                             <= 2^-41 (|y| + 2S)  (|w| <= |y| + S, to first order)
 * so |y - x64| <= u (1 + 2^-16) (|y| + |d|) + ((4N + 4) 2^-53 + 2^-40) S,
 * and E = K1 (|y| + |d|) + KS ||C_i|| ||V_j|| with both constants 2^-14
 * above these (E's own float32 roundings) and S <= ||C_i|| ||V_j||
 * (Cauchy-Schwarz; the norms are rounded up).  F32 outputs test y = w + D in
 * float64 with E = 2^-51 |y| + KS64 ||C_i|| ||V_j|| + 2^-40 |w| + 2^-1000,
 * KS64 = (4N + 16) 2^-52, which holds with a factor of two to spare.
 * Underflow: every nonzero C, V lies within [2^-400, 2^400], so no
 * float64 product underflows; float32 values below 2^-100 (BF16) or 2^-14
 * (F16) go the double way.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

#include "merge_internal.h"

#define MAX_FAST_RANK 2048u
#define MIN_FAST_COLS 16u   /* two vectors of the widest kernel */

struct merge_fast {
    merge_isa isa;      /* which build of the kernel runs                   */
    uint32_t rank;      /* summed over the ops                              */
    double *row_bound;  /* [rows]: KS64 ||C_i||, rounded up                 */
    double *col_norm;   /* [cols]: ||V_j||, rounded up                      */
    float *row_bound32; /* [rows]: KS ||C_i||, rounded up                   */
    float *col_norm32;  /* [cols]: ||V_j||, rounded up                      */
};

void merge_fast_free(merge_fast *f)
{
    if (!f)
        return;
    free(f->row_bound);
    free(f->col_norm);
    free(f->row_bound32);
    free(f->col_norm32);
    free(f);
}

/* Every value zero, or finite with a magnitude whose products cannot
 * underflow: within [2^-400, 2^400], compared as bit patterns (in order
 * for nonnegative doubles), with no early exit, so the loop vectorizes. */
static bool fast_values_ok(const double *v, uint64_t n)
{
    const uint64_t lo = (uint64_t)(1023 - 400) << 52, hi = (uint64_t)(1023 + 400) << 52;
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &v[i], sizeof bits);
        bits &= ~((uint64_t)1 << 63);
        bad |= (uint64_t)(bits != 0) & ((uint64_t)(bits < lo) | (uint64_t)(bits > hi));
    }
    return !bad;
}

/* float32 of a nonnegative bound factor, never below it, and never below
 * 2^-126: a subnormal factor would lose its relative precision, and the
 * other factor can be as large as 2^128 (an independent review found
 * results written wrongly that way).  A product of two such factors that
 * underflows loses at most 2^-150, inside the slack of E's first term. */
static float round_up_f32(double v)
{
    float f = (float)(v * (1 + 0x1p-20));
    return f < 0x1p-126f ? 0x1p-126f : f;
}

/* Whether float arithmetic keeps subnormals, as the proof above assumes:
 * a program built with -ffast-math (or one that set the flags) may run
 * with flush-to-zero or denormals-are-zero.  Then no tensor gets the
 * kernel.  (Threads inherit the creator's floating-point environment.) */
static bool subnormals_kept(void)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    return (_mm_getcsr() & (0x8000u | 0x0040u)) == 0; /* FTZ, DAZ */
#else
    return true;
#endif
}

static bool fast_dtype(lt_dtype t) { return t == LT_BF16 || t == LT_F16 || t == LT_F32; }

static bool fast_eligible(const plan_tensor *t, uint64_t *rank)
{
    if (t->action != ACT_MERGE || !fast_dtype(t->in_dtype) || !fast_dtype(t->out_dtype) || t->n_rows ||
        t->cols < MIN_FAST_COLS || !subnormals_kept())
        return false;
    *rank = 0;
    for (size_t k = 0; k < t->n_ops; k++) {
        const merge_op *op = &t->ops[k];
        if (op->magnitude)
            return false;
        *rank += op->rank;
        if (!fast_values_ok(op->coef, t->rows * op->rank) || !fast_values_ok(op->vec, (uint64_t)op->rank * t->cols))
            return false;
    }
    return *rank > 0 && *rank <= MAX_FAST_RANK;
}

/* The best build this machine runs.  A build with -DLT_NO_TARGET_CLONES
 * (the test build's generic binary, core.h LT_TARGET_CLONES) runs the
 * baseline one. */
static merge_isa best_isa(void)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(LT_NO_TARGET_CLONES)
    if (__builtin_cpu_supports("x86-64-v4"))
        return MERGE_ISA_AVX512;
    if (__builtin_cpu_supports("x86-64-v3"))
        return MERGE_ISA_AVX2;
#endif
    return MERGE_ISA_BASELINE;
}

lt_status merge_fast_prepare(plan_tensor *t, lt_error *err)
{
    uint64_t rank;
    if (!fast_eligible(t, &rank))
        return LT_OK;
    merge_fast *f = calloc(1, sizeof *f);
    if (!f)
        return lti_fail_nomem(err, "merge");
    f->rank = (uint32_t)rank;
    f->isa = best_isa();
    f->row_bound = malloc((size_t)t->rows * sizeof *f->row_bound);
    f->col_norm = calloc((size_t)t->cols, sizeof *f->col_norm);
    f->row_bound32 = malloc((size_t)t->rows * sizeof *f->row_bound32);
    f->col_norm32 = malloc((size_t)t->cols * sizeof *f->col_norm32);
    if (!f->row_bound || !f->col_norm || !f->row_bound32 || !f->col_norm32) {
        merge_fast_free(f);
        return lti_fail_nomem(err, "merge");
    }
    /* the sums of squares (N <= 2048 terms) and their square roots are
     * within 2^-40 of exact: (1 + 2^-30) rounds them up */
    const double up = 1 + 0x1p-30, n = (double)rank;
    const double ks64 = (4 * n + 16) * 0x1p-52;
    const double ks32 = ((4 * n + 4) * 0x1p-53 + 0x1p-40) * (1 + 0x1p-14);
    for (uint64_t i = 0; i < t->rows; i++) {
        double squares = 0;
        for (size_t k = 0; k < t->n_ops; k++)
            for (uint32_t q = 0; q < t->ops[k].rank; q++) {
                double c = t->ops[k].coef[i * t->ops[k].rank + q];
                squares += c * c;
            }
        double norm = sqrt(squares) * up;
        f->row_bound[i] = ks64 * norm * up;
        f->row_bound32[i] = round_up_f32(ks32 * norm);
    }
    for (size_t k = 0; k < t->n_ops; k++)
        for (uint64_t q = 0; q < t->ops[k].rank; q++)
            for (uint64_t j = 0; j < t->cols; j++) {
                double v = t->ops[k].vec[q * t->cols + j];
                f->col_norm[j] += v * v;
            }
    for (uint64_t j = 0; j < t->cols; j++) {
        f->col_norm[j] = sqrt(f->col_norm[j]) * up;
        f->col_norm32[j] = round_up_f32(f->col_norm[j]);
    }
    t->fast = f;
    return LT_OK;
}

/* The kernel, written once in lib/merge_fast_kernel.h with GCC vector
 * types (LANES doubles a vector) and built here for AVX-512, AVX2 and
 * baseline x86-64 (chosen at run time).  Each build gets its own copy of
 * the helpers so that GCC lowers their vector operations for that build's
 * instruction set; the header undefines its parameters at its end. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4,prefer-vector-width=512")
#define KERNEL(name) name##_v4
#define LANES 8
#define KERNEL_F16_TO_F32(h) _mm512_cvtph_ps((__m256i)(h))
#define KERNEL_F32_TO_F16(f) _mm512_cvtps_ph((__m512)(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#include "merge_fast_kernel.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define KERNEL(name) name##_v3
#define LANES 4
#define KERNEL_F16_TO_F32(h) _mm256_cvtph_ps((__m128i)(h))
#define KERNEL_F32_TO_F16(f) _mm256_cvtps_ph((__m256)(f), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#include "merge_fast_kernel.h"
#pragma GCC pop_options
#endif

#define KERNEL(name) name##_baseline
#define LANES 2
#include "merge_fast_kernel.h"

bool merge_fast_set_isa(plan_tensor *t, merge_isa isa)
{
    if (!t->fast || isa < best_isa())
        return false;
    t->fast->isa = isa;
    return true;
}

size_t merge_fast_rows(const plan_tensor *t, const unsigned char *raw, uint64_t row0, uint64_t nr,
                       unsigned char *dst, uint64_t *redo)
{
    switch (t->fast->isa) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    case MERGE_ISA_AVX512: return rows_v4(t, raw, row0, nr, dst, redo);
    case MERGE_ISA_AVX2: return rows_v3(t, raw, row0, nr, dst, redo);
#endif
    default: return rows_baseline(t, raw, row0, nr, dst, redo);
    }
}
