/* merge_rows.c - the arithmetic of a merge: rows of one tensor from
 * their input bytes to their output bytes.
 *
 * The float64 path defines every value: the base element, then each term
 * c_k v_k added in rank order (four at a time), module by module, rounded
 * once to the output type.  Tensors the vector kernel can take
 * (merge_fast.c) go through it, and the elements it flags come back here
 * one by one, computed by exact_element with the float64 path's
 * operations in the float64 path's order.
 */
#include <math.h>
#include <string.h>

#include "merge_internal.h"

#define REDO_ROWS 32u /* rows the vector kernel does between redos */

/* Smallest magnitude that rounds to Inf in the output dtype: the largest
 * finite value plus half an ulp. */
static double overflow_threshold(lt_dtype t)
{
    switch (t) {
    case LT_F16: return 65520.0;
    case LT_BF16: return 0x1.ffp127;       /* (2 - 2^-8) * 2^127 */
    case LT_F32: return 0x1.ffffffp127;    /* (2 - 2^-24) * 2^127 */
    /* block types are quantized from values rounded to f32 */
    default: return lt_dtype_block_elems(t) > 1 ? 0x1.ffffffp127 : INFINITY;
    }
}

/* acc[i, :] += sum_k coef[row0 + i, k] * vec[k, :] for nr rows, keeping
 * each element's additions in k order (four at a time to save loads). */
/* Built twice (AVX2 and baseline x86-64, chosen at load time); both do the
 * same IEEE double operations in the same order (no FMA contraction in
 * ISO C mode), so the output bytes do not depend on the machine's ISA. */
LT_TARGET_CLONES /* core.h */
static void add_lowrank(double *acc, uint64_t nr, uint64_t cols, const merge_op *op, uint64_t row0)
{
    uint32_t r = op->rank;
    for (uint64_t i = 0; i < nr; i++) {
        double *restrict row = acc + i * cols;
        const double *coef = op->coef + (row0 + i) * r;
        uint32_t k = 0;
        for (; k + 4 <= r; k += 4) {
            const double c0 = coef[k], c1 = coef[k + 1], c2 = coef[k + 2], c3 = coef[k + 3];
            const double *restrict v0 = op->vec + (uint64_t)k * cols;
            const double *restrict v1 = v0 + cols, *restrict v2 = v1 + cols, *restrict v3 = v2 + cols;
            for (uint64_t j = 0; j < cols; j++)
                row[j] = (((row[j] + c0 * v0[j]) + c1 * v1[j]) + c2 * v2[j]) + c3 * v3[j];
        }
        for (; k < r; k++) {
            const double c = coef[k];
            const double *restrict v = op->vec + (uint64_t)k * cols;
            for (uint64_t j = 0; j < cols; j++)
                row[j] += c * v[j];
        }
    }
}

/* Element j of one row as the double path computes it: the operations of
 * lt_convert_to_f64 and add_lowrank for that element, in their order. */
static double exact_element(const plan_tensor *t, const unsigned char *raw_row, uint64_t row, uint64_t j)
{
    double x = NAN;
    const unsigned char *p = raw_row + j * lt_dtype_block_bytes(t->in_dtype);
    if (t->in_dtype == LT_BF16 || t->in_dtype == LT_F16) { /* the common cases, without a call's set-up */
        uint16_t h = (uint16_t)(p[0] | p[1] << 8);
        x = t->in_dtype == LT_BF16 ? lt_bf16_to_f32(h) : lt_f16_to_f32(h);
    } else {
        (void)lt_convert_to_f64(t->in_dtype, p, &x, 1);
    }
    const uint64_t cols = t->cols;
    for (size_t q = 0; q < t->n_ops; q++) {
        const merge_op *op = &t->ops[q];
        const double *coef = op->coef + row * op->rank, *v = op->vec + j;
        uint32_t k = 0;
        for (; k + 4 <= op->rank; k += 4, v += 4 * cols)
            x = (((x + coef[k] * v[0]) + coef[k + 1] * v[cols]) + coef[k + 2] * v[2 * cols]) +
                coef[k + 3] * v[3 * cols];
        for (; k < op->rank; k++, v += cols)
            x += coef[k] * v[0];
    }
    return x;
}

/* DoRA: W' = (m / ||W + dW||_row) (W + dW), row by row. */
static lt_status apply_dora(double *acc, uint64_t nr, uint64_t cols, const merge_op *op, uint64_t row0,
                            const char *name, lt_error *err)
{
    for (uint64_t i = 0; i < nr; i++) {
        double *row = acc + i * cols, sum = 0;
        for (uint64_t j = 0; j < cols; j++)
            sum += row[j] * row[j];
        double norm = sqrt(sum);
        if (!(norm > 0))
            return lti_fail(err, LT_ERR_INVALID, "merge: tensor '%s' row %llu: DoRA weight norm is zero", name,
                           (unsigned long long)(row0 + i));
        double factor = op->magnitude[row0 + i] / norm;
        for (uint64_t j = 0; j < cols; j++)
            row[j] *= factor;
    }
    return LT_OK;
}

/* The base value of element j of an item's raw bytes (the whole block is
 * decoded for block types).  Only for the rare finiteness check. */
static double base_value(lt_dtype type, const unsigned char *raw, uint64_t j)
{
    double block[256];
    uint64_t per = lt_dtype_block_elems(type);
    if (per > 256 || lt_convert_to_f64(type, raw + j / per * lt_dtype_block_bytes(type), block, (size_t)per) != LT_OK)
        return NAN;
    return block[j % per];
}

/* A merged value that is NaN, Inf or out of the output's range is an
 * error, unless the base value was not finite already. */
static lt_status check_merged(const plan_tensor *t, double x, double limit, const unsigned char *raw, uint64_t j,
                              uint64_t row, lt_error *err)
{
    if (fabs(x) < limit || !isfinite(base_value(t->in_dtype, raw, j))) /* NaN fails the first test */
        return LT_OK;
    return lti_fail(err, LT_ERR_INVALID, "merge: tensor '%s': merged value at row %llu is %s in %s", t->name,
                   (unsigned long long)row, isnan(x) ? "NaN" : isinf(x) ? "Inf" : "out of range",
                   lt_dtype_name(t->out_dtype));
}

/* The vector kernel, then the double path for the elements it flags.  Of
 * several bad values the first in row order is reported, as the double
 * path would. */
static lt_status merge_rows_fast(const plan_tensor *t, uint64_t first, uint64_t count, const unsigned char *raw,
                                 unsigned char *out, uint64_t *redo, lt_error *err)
{
    const size_t in_size = lt_dtype_block_bytes(t->in_dtype), out_size = lt_dtype_block_bytes(t->out_dtype);
    const double limit = overflow_threshold(t->out_dtype);
    uint64_t first_bad = UINT64_MAX;
    /* a few rows at a time, so the elements to redo are still in cache */
    for (uint64_t r0 = 0; r0 < count; r0 += REDO_ROWS) {
        uint64_t nr = count - r0 < REDO_ROWS ? count - r0 : REDO_ROWS, at = r0 * t->cols;
        size_t n_redo = merge_fast_rows(t, raw + at * in_size, first + r0, nr, out + at * out_size, redo);
        for (size_t q = 0; q < n_redo; q++) {
            uint64_t e = at + redo[q], i = e / t->cols;
            double x = exact_element(t, raw + i * t->cols * in_size, first + i, e % t->cols);
            if (check_merged(t, x, limit, raw, e, first + i, NULL) != LT_OK)
                first_bad = e < first_bad ? e : first_bad;
            (void)lt_convert_from_f64(t->out_dtype, &x, out + e * out_size, 1);
        }
    }
    if (first_bad != UINT64_MAX) {
        uint64_t i = first_bad / t->cols;
        return check_merged(t, exact_element(t, raw + i * t->cols * in_size, first + i, first_bad % t->cols),
                            limit, raw, first_bad, first + i, err);
    }
    return LT_OK;
}

lt_status merge_rows(const plan_tensor *t, uint64_t first, uint64_t count, const unsigned char *raw,
                     unsigned char *out, double *acc, uint64_t *redo, lt_error *err)
{
    if (t->fast)
        return merge_rows_fast(t, first, count, raw, out, redo, err);
    uint64_t n = count * t->cols;
    lt_status s;
    if (lt_convert_to_f64(t->in_dtype, raw, acc, (size_t)n) != LT_OK)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "merge: tensor '%s': cannot read %s", t->name,
                       lt_dtype_name(t->in_dtype));
    for (size_t k = 0; k < t->n_ops; k++) {
        add_lowrank(acc, count, t->cols, &t->ops[k], first);
        if (t->ops[k].magnitude &&
            (s = apply_dora(acc, count, t->cols, &t->ops[k], first, t->name, err)) != LT_OK)
            return s;
    }
    for (size_t i = 0; i < t->n_rows; i++) /* trainable token rows, set last */
        if (t->row_ids[i] >= first && t->row_ids[i] < first + count)
            memcpy(acc + (t->row_ids[i] - first) * t->cols, t->row_values + i * t->cols,
                   (size_t)t->cols * sizeof *acc);
    double limit = overflow_threshold(t->out_dtype);
    for (uint64_t j = 0; j < n; j++)
        if ((s = check_merged(t, acc[j], limit, raw, j, first + j / t->cols, err)) != LT_OK)
            return s;
    if (lt_convert_from_f64(t->out_dtype, acc, out, (size_t)n) != LT_OK)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "merge: tensor '%s': cannot write %s", t->name,
                       lt_dtype_name(t->out_dtype));
    return LT_OK;
}

