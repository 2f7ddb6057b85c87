/* verify_forward.c - the forward check of one merged tensor
 * (spec/verify.md).
 *
 * For K probe vectors x of random signs, each output row's y = W'x (W'
 * from OUT) is compared with the LoRA forward path y_ref = Wx + sum c (V x)
 * in float64.  If OUT holds the correctly rounded merge, y - y_ref =
 * sum_j e_j x_j with |e_j| <= h_j (half an ulp of the stored value, or the
 * step of its quantization block), and since the signs are drawn after OUT
 * was written, Hoeffding's inequality bounds
 *   P(|y - y_ref| >= T sigma) <= 2 exp(-T^2 / 2),  sigma^2 = sum_j h_j^2,
 * for every row and probe, whatever the errors e_j are.  T is chosen so
 * that the union over every check of the file stays below the stated
 * false-alarm probability.  Our own float64 rounding is added as slack.
 *
 * Tensors with DoRA terms, and every merged tensor under --exact, are
 * also computed densely, one row at a time (the merge's float64 path, in
 * its order), so that the row norm of DoRA and the exact bytes are known.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "verify_internal.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* Probe k of a tensor: cols signs +-1 from splitmix64 seeded with
 * seed ^ fnv1a(base tensor name) ^ (k+1) * golden ratio, one bit each,
 * least significant bit first (spec/verify.md). */
static void draw_probe(uint64_t seed, const char *name, uint32_t k, double *x, uint64_t cols)
{
    uint64_t state = seed ^ fnv1a(name) ^ ((uint64_t)(k + 1) * 0x9E3779B97F4A7C15ull), bits = 0;
    for (uint64_t j = 0; j < cols; j++) {
        if (j % 64 == 0)
            bits = splitmix64(&state);
        x[j] = (bits >> (j % 64)) & 1 ? -1.0 : 1.0;
    }
}

/* Square of the largest error a correctly stored element can carry, per
 * exponent field of float type t: half an ulp of the stored value (the
 * spacing above it, which also covers values rounded up onto a power of
 * two).  Returns false for types without an error model here. */
typedef struct noise_model {
    lt_dtype type;
    unsigned exp_shift, exp_bits, size;  /* float types                     */
    double half_ulp_sq[2048];            /* by exponent field               */
} noise_model;

static bool noise_model_init(noise_model *nm, lt_dtype t)
{
    int mant, bias;
    nm->type = t;
    switch (t) {
    case LT_F16: mant = 10, nm->exp_bits = 5, bias = 15, nm->size = 2; break;
    case LT_BF16: mant = 7, nm->exp_bits = 8, bias = 127, nm->size = 2; break;
    case LT_F32: mant = 23, nm->exp_bits = 8, bias = 127, nm->size = 4; break;
    case LT_F64: mant = 52, nm->exp_bits = 11, bias = 1023, nm->size = 8; break;
    case LT_Q8_0: case LT_Q4_0: return true;
    case LT_Q4_1: case LT_Q5_0: case LT_Q5_1: case LT_Q2_K: case LT_Q3_K: case LT_Q4_K: case LT_Q5_K: case LT_Q6_K:
        return true;
    default: return false;
    }
    nm->exp_shift = (unsigned)mant;
    for (unsigned e = 0; e < (1u << nm->exp_bits); e++) {
        /* the ulp of a number with exponent field e; subnormals share e = 1's */
        double ulp = ldexp(1.0, (int)(e ? e : 1) - bias - mant);
        nm->half_ulp_sq[e] = ulp * ulp / 4;
    }
    return true;
}

/* The row kernels are built for AVX2 and for baseline x86-64, chosen at
 * load time: the same IEEE operations lane by lane either way (nothing is
 * fused: -ffp-contract=off), so the same bits.  Lane l of a 4-wide
 * accumulator sums the elements j = l mod 4, the few left over are added
 * as the scalar loops these kernels replaced added them, and the lanes as
 * (0 + 1) + (2 + 3): the same order, so results did not move. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define LT_VERIFY_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LT_VERIFY_CLONES
#endif
#define LT_INLINE static inline __attribute__((always_inline))

typedef double vd4 __attribute__((vector_size(32)));
typedef uint64_t vu4 __attribute__((vector_size(32)));
typedef uint16_t vh4 __attribute__((vector_size(8)));

LT_INLINE vd4 load4(const double *p)
{
    vd4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

LT_INLINE vd4 abs4(vd4 v) { return (vd4)((vu4)v & 0x7FFFFFFFFFFFFFFFull); }

LT_INLINE double lanes_sum(vd4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

/* F16 and BF16 (the common case): h_j^2 = 2^(2 (e - bias - mant) - 2) is
 * built as the bits of a double from the exponent field e (subnormals
 * take e = 1): the table's values, without a lookup per element. */
LT_VERIFY_CLONES
static double noise_sq_2byte(const noise_model *nm, const unsigned char *raw, uint64_t cols)
{
    unsigned mask = (1u << nm->exp_bits) - 1;
    uint64_t j = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    int bias = nm->exp_bits == 5 ? 15 : 127;
    uint64_t c = (uint64_t)(1023 - 2 * (bias + (int)nm->exp_shift) - 2);
    vd4 acc = {0, 0, 0, 0};
    for (; j + 4 <= cols; j += 4) {
        vh4 h;
        memcpy(&h, raw + 2 * j, sizeof h);
        vu4 e = (__builtin_convertvector(h, vu4) >> nm->exp_shift) & mask;
        e += (vu4)(e == 0) & 1;
        acc += (vd4)((2 * e + c) << 52);
    }
    double s[4] = {acc[0], acc[1], acc[2], acc[3]};
#else
    double s[4] = {0, 0, 0, 0};
#endif
    for (; j < cols; j++) {
        unsigned bits = raw[2 * j] | (unsigned)raw[2 * j + 1] << 8;
        s[j % 4] += nm->half_ulp_sq[(bits >> nm->exp_shift) & mask];
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* sum_j h_j^2 over one row of raw OUT bytes. */
static double row_noise_sq(const noise_model *nm, const unsigned char *raw, uint64_t cols)
{
    double sum = 0;
    if (nm->type == LT_Q8_0 || nm->type == LT_Q4_0) {
        /* Q8_0: x = q d, d = f16(amax / 127): |error| <= d/2 + 127 d 2^-11
         * (<= 0.57 d).  Q4_0: the extreme of the other sign clips to 7 d,
         * a full step: <= d + 8 d 2^-11 (<= 1.01 d). */
        double k = nm->type == LT_Q8_0 ? 0.57 : 1.01;
        unsigned bb = lt_dtype_block_bytes(nm->type);
        for (uint64_t b = 0; b < cols / 32; b++) {
            const unsigned char *p = raw + b * bb;
            double d = fabs(lt_f16_to_f32((uint16_t)(p[0] | p[1] << 8))) * k;
            sum += 32 * d * d;
        }
        return sum;
    }
    if (lt_dtype_block_elems(nm->type) > 1) {
        /* the other ggml block types: each element lies within one
         * quantization step of its value, the step being at most the
         * block's range over its levels (2^bits - 1); a K-quant's 6-bit
         * sub-block scales and a clipped extreme are covered by taking 1.5
         * such steps (spec/verify.md) */
        unsigned bits = nm->type == LT_Q2_K ? 2 : nm->type == LT_Q3_K ? 3 : nm->type == LT_Q6_K ? 6
                        : (nm->type == LT_Q5_0 || nm->type == LT_Q5_1 || nm->type == LT_Q5_K) ? 5 : 4;
        uint32_t per = lt_dtype_block_elems(nm->type), bb = lt_dtype_block_bytes(nm->type);
        float vals[256];
        for (uint64_t b = 0; b < cols / per; b++) {
            if (lt_dequantize_row(nm->type, raw + b * bb, vals, per) != LT_OK)
                return INFINITY;
            float lo = vals[0], hi = vals[0];
            for (uint32_t j = 1; j < per; j++) {
                lo = vals[j] < lo ? vals[j] : lo;
                hi = vals[j] > hi ? vals[j] : hi;
            }
            double h = 1.5 * ((double)hi - (double)lo) / (double)((1u << bits) - 1);
            sum += per * h * h;
        }
        return sum;
    }
    unsigned mask = (1u << nm->exp_bits) - 1;
    if (nm->size == 2)
        return noise_sq_2byte(nm, raw, cols);
    for (uint64_t j = 0; j < cols; j++) {
        const unsigned char *p = raw + j * nm->size;
        uint64_t bits = 0;
        for (unsigned b = 0; b < nm->size; b++)
            bits |= (uint64_t)p[b] << (8 * b);
        sum += nm->half_ulp_sq[(bits >> nm->exp_shift) & mask];
    }
    return sum;
}

lt_status verify_load_op(verify_op *op, lt_error *err)
{
    lt_source *src = lt_adapter_source(op->adapter);
    const lt_lora_module *m = op->module;
    if (op->bias) {
        lt_status s = verify_read_f64(src, (size_t)m->tensor_bias, &op->vec, err);
        if (s != LT_OK)
            return s;
        for (uint64_t i = 0; i < m->out_features; i++)
            op->vec[i] *= op->factor;
        if (!(op->coef = malloc(sizeof(double))))
            return lti_fail_nomem(err, "verify");
        op->coef[0] = 1.0;
        op->rank = 1;
        return LT_OK;
    }
    const lt_tensor_info *ta = lt_source_tensor(src, (size_t)m->tensor_a);
    if (ta->shape[m->a_transposed ? 1 : 0] != m->rank)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': lora_A has %llu rows for rank %u",
                       lt_source_path(src), m->name, (unsigned long long)ta->shape[m->a_transposed ? 1 : 0], m->rank);
    double *a = NULL, *b = NULL, *e = NULL;
    lt_status s = verify_read_f64(src, (size_t)m->tensor_a, &a, err);
    if (s == LT_OK)
        s = verify_read_f64(src, (size_t)m->tensor_b, &b, err);
    if (s == LT_OK && m->tensor_e >= 0)
        s = verify_read_f64(src, (size_t)m->tensor_e, &e, err);
    if (s == LT_OK && m->tensor_magnitude >= 0)
        s = verify_read_f64(src, (size_t)m->tensor_magnitude, &op->magnitude, err);
    uint64_t r = m->rank;
    uint64_t a_cols = m->kind == LT_MODULE_EMBEDDING ? m->out_features : m->in_features;
    uint64_t b_rows = m->kind == LT_MODULE_EMBEDDING ? m->in_features : m->out_features;
    double *a_t = NULL, *b_t = NULL;
    if (s == LT_OK) {
        a_t = malloc((size_t)(r * a_cols) * sizeof *a_t + 1);
        b_t = malloc((size_t)(r * b_rows) * sizeof *b_t + 1);
        if (!a_t || !b_t)
            s = lti_fail_nomem(err, "verify");
    }
    if (s == LT_OK) {
        /* a_t = A [r, a_cols] in row-major order */
        for (uint64_t k = 0; k < r; k++)
            for (uint64_t j = 0; j < a_cols; j++)
                a_t[k * a_cols + j] = m->a_transposed ? a[j * r + k] : a[k * a_cols + j];
        if (e)
            for (uint64_t k = 0; k < r; k++)
                for (uint64_t j = 0; j < a_cols; j++)
                    a_t[k * a_cols + j] *= e[k];
        if (op->factor != 1.0)
            for (uint64_t i = 0; i < b_rows * r; i++)
                b[i] *= op->factor;
        op->rank = (uint32_t)r;
        if (op->fit == LT_FIT_DIRECT && m->kind != LT_MODULE_EMBEDDING) {
            op->coef = b, b = NULL;    /* [out, r] */
            op->vec = a_t, a_t = NULL; /* [r, in]  */
        } else {
            for (uint64_t i = 0; i < b_rows; i++) /* B^T [r, b_rows] */
                for (uint64_t k = 0; k < r; k++)
                    b_t[k * b_rows + i] = b[i * r + k];
            double *coef = a; /* A^T [a_cols, r] */
            for (uint64_t k = 0; k < r; k++)
                for (uint64_t j = 0; j < a_cols; j++)
                    coef[j * r + k] = a_t[k * a_cols + j];
            op->coef = coef, a = NULL;
            op->vec = b_t, b_t = NULL;
        }
    }
    free(a);
    free(b);
    free(e);
    free(a_t);
    free(b_t);
    return s;
}

void verify_free_op(verify_op *op)
{
    free(op->coef);
    free(op->vec);
    free(op->magnitude);
    free(op->u);
    free(op->vec_abs);
    op->coef = op->vec = op->magnitude = op->u = op->vec_abs = NULL;
}

LT_VERIFY_CLONES
static double dot(const double *a, const double *b, uint64_t n)
{
    vd4 acc = {0, 0, 0, 0};
    uint64_t j = 0;
    for (; j + 4 <= n; j += 4)
        acc += load4(a + j) * load4(b + j);
    for (; j < n; j++)
        acc[0] += a[j] * b[j];
    return lanes_sum(acc);
}

LT_VERIFY_CLONES
static double abs_sum(const double *a, uint64_t n)
{
    vd4 acc = {0, 0, 0, 0};
    uint64_t j = 0;
    for (; j + 4 <= n; j += 4)
        acc += abs4(load4(a + j));
    for (; j < n; j++)
        acc[0] += fabs(a[j]);
    return lanes_sum(acc);
}

/* What the check needs of one row, base values w and OUT values o, in one
 * pass per two probes (k, k + 1) rather than one per product: wx[k] and
 * ox[k] as dot(w or o, probe k), and abs_sum of w and of o.  PROBES holds
 * K rows of n. */
LT_VERIFY_CLONES
static void row_sums(const double *w, const double *o, uint64_t n, const double *probes, uint32_t K, double *wx,
                     double *ox, double *w_abs, double *o_abs)
{
    for (uint32_t k = 0; k < K; k += 2) {
        const double *p = probes + (uint64_t)k * n, *q = probes + (uint64_t)(k + 1 < K ? k + 1 : k) * n;
        vd4 wp = {0, 0, 0, 0}, wq = wp, op = wp, oq = wp, wa = wp, oa = wp;
        uint64_t j = 0;
        if (k == 0) {
            for (; j + 4 <= n; j += 4) {
                vd4 x = load4(w + j), y = load4(o + j), pv = load4(p + j), qv = load4(q + j);
                wp += x * pv, wq += x * qv, op += y * pv, oq += y * qv;
                wa += abs4(x), oa += abs4(y);
            }
        } else {
            for (; j + 4 <= n; j += 4) {
                vd4 x = load4(w + j), y = load4(o + j), pv = load4(p + j), qv = load4(q + j);
                wp += x * pv, wq += x * qv, op += y * pv, oq += y * qv;
            }
        }
        for (; j < n; j++) {
            wp[0] += w[j] * p[j], wq[0] += w[j] * q[j], op[0] += o[j] * p[j], oq[0] += o[j] * q[j];
            wa[0] += fabs(w[j]), oa[0] += fabs(o[j]);
        }
        wx[k] = lanes_sum(wp), ox[k] = lanes_sum(op);
        if (k + 1 < K)
            wx[k + 1] = lanes_sum(wq), ox[k + 1] = lanes_sum(oq);
        if (k == 0)
            *w_abs = lanes_sum(wa), *o_abs = lanes_sum(oa);
    }
}

typedef struct row_bufs {
    unsigned char *raw_base, *raw_out, *expect;
    double *w, *o, *dense, *probes, *token_row;
} row_bufs;

static void free_bufs(row_bufs *b)
{
    free(b->raw_base);
    free(b->raw_out);
    free(b->expect);
    free(b->w);
    free(b->o);
    free(b->dense);
    free(b->probes);
    free(b->token_row);
}

/* Row i of the merge computed densely in the merge's float64 order:
 * the base value, each term's products in rank order, DoRA after its term.
 * Returns false when a DoRA row norm is zero. */
static bool dense_row(const verify_tensor *t, const double *w, uint64_t i, uint64_t cols, double *acc)
{
    memcpy(acc, w, (size_t)cols * sizeof *acc);
    for (size_t q = 0; q < t->n_ops; q++) {
        const verify_op *op = &t->ops[q];
        uint64_t row = op->bias ? 0 : i;
        for (uint32_t k = 0; k < op->rank; k++) {
            double c = op->coef[row * op->rank + k];
            const double *v = op->vec + (uint64_t)k * cols;
            for (uint64_t j = 0; j < cols; j++)
                acc[j] += c * v[j];
        }
        if (op->magnitude) {
            double sum = 0;
            for (uint64_t j = 0; j < cols; j++)
                sum += acc[j] * acc[j];
            double norm = sqrt(sum);
            if (!(norm > 0))
                return false;
            double f = op->magnitude[i] / norm;
            for (uint64_t j = 0; j < cols; j++)
                acc[j] *= f;
        }
    }
    return true;
}

/* Index in the token replacement of base row i, or -1. */
static long token_slot(const verify_tensor *t, uint64_t i)
{
    if (!t->tok)
        return -1;
    for (size_t k = 0; k < t->tok->n_token_indices; k++)
        if (t->tok->token_indices[k] == i)
            return (long)k;
    return -1;
}

lt_status verify_forward(verify_ctx *ctx, size_t base_index, verify_tensor *t, const uint64_t *inv,
                         lt_verify_tensor *vt, lt_error *err)
{
    const lt_tensor_info *bt = lt_source_tensor(ctx->base, base_index);
    const lt_tensor_info *ot = lt_source_tensor(ctx->out, (size_t)t->out_index);
    const uint32_t K = ctx->opts.probes;
    uint64_t rows, cols;
    verify_view(bt, &rows, &cols);
    lt_dtype od = ot->dtype;
    if (rows == 0 || cols == 0)
        return LT_OK; /* an empty tensor: nothing to compute */
    noise_model *nm = malloc(sizeof *nm);
    if (!nm)
        return lti_fail_nomem(err, "verify");
    if (!noise_model_init(nm, od) || (lt_dtype_block_elems(od) > 1 && cols % lt_dtype_block_elems(od))) {
        free(nm);
        verify_problem(vt, "no error model for OUT's dtype %s%s", lt_dtype_name(od),
                       lt_dtype_block_elems(od) > 1 ? " (verify knows F16, BF16, F32, F64, Q4_0..Q8_0, Q2_K..Q6_K)" : "");
        return LT_OK;
    }
    uint64_t base_row = cols / lt_dtype_block_elems(bt->dtype) * lt_dtype_block_bytes(bt->dtype);
    uint64_t out_row = cols / lt_dtype_block_elems(od) * lt_dtype_block_bytes(od);
    bool dense = ctx->opts.exact;
    uint64_t rank_total = 0;
    lt_status s = LT_OK;
    for (size_t q = 0; q < t->n_ops && s == LT_OK; q++) {
        s = verify_load_op(&t->ops[q], err);
        dense = dense || t->ops[q].magnitude;
        rank_total += t->ops[q].rank;
    }
    row_bufs b = {0};
    uint64_t per = VERIFY_CHUNK_ELEMS / cols ? VERIFY_CHUNK_ELEMS / cols : 1;
    if (per > rows)
        per = rows;
    if (s == LT_OK) {
        b.raw_base = malloc((size_t)(per * base_row) + 1);
        b.raw_out = malloc((size_t)(per * out_row) + 1);
        b.expect = malloc((size_t)out_row + 1);
        b.w = malloc((size_t)cols * sizeof(double) + 1); /* one row: stays in cache */
        b.o = malloc((size_t)cols * sizeof(double) + 1);
        b.dense = malloc((size_t)cols * sizeof(double) + 1);
        b.token_row = malloc((size_t)cols * sizeof(double) + 1);
        b.probes = malloc((size_t)(K * cols) * sizeof(double) + 1);
        if (!b.raw_base || !b.raw_out || !b.expect || !b.w || !b.o || !b.dense || !b.token_row || !b.probes)
            s = lti_fail_nomem(err, "verify");
    }
    for (uint32_t k = 0; s == LT_OK && k < K; k++)
        draw_probe(ctx->opts.seed, bt->name, k, b.probes + (uint64_t)k * cols, cols);
    /* u = V x for each term and probe: the low-rank path's K products */
    for (size_t q = 0; s == LT_OK && q < t->n_ops; q++) {
        verify_op *op = &t->ops[q];
        op->u = malloc((size_t)op->rank * K * sizeof(double) + 1);
        op->vec_abs = malloc((size_t)op->rank * sizeof(double) + 1);
        if (!op->u || !op->vec_abs) {
            s = lti_fail_nomem(err, "verify");
            break;
        }
        for (uint32_t r = 0; r < op->rank; r++) {
            op->vec_abs[r] = abs_sum(op->vec + (uint64_t)r * cols, cols);
            for (uint32_t k = 0; k < K; k++)
                op->u[r * K + k] = dot(op->vec + (uint64_t)r * cols, b.probes + (uint64_t)k * cols, cols);
        }
    }
    double *wx = calloc(K, sizeof *wx), *yref = calloc(K, sizeof *yref), *ox = calloc(K, sizeof *ox);
    if (s == LT_OK && (!wx || !yref || !ox))
        s = lti_fail_nomem(err, "verify");
    double sum_res = 0, sum_delta = 0, sum_applied = 0;
    const double u53 = ldexp(1.0, -52);
    for (uint64_t r0 = 0; s == LT_OK && r0 < rows; r0 += per) {
        uint64_t n = rows - r0 < per ? rows - r0 : per;
        s = lt_source_read(ctx->base, base_index, r0 * base_row, b.raw_base, (size_t)(n * base_row), err);
        if (s == LT_OK)
            s = verify_read_rows(ctx->out, (size_t)t->out_index, r0, n, out_row, inv, b.raw_out, err);
        for (uint64_t ri = 0; ri < n && s == LT_OK; ri++) {
            uint64_t i = r0 + ri;
            const double *w = b.w, *o = b.o;
            const unsigned char *raw_o = b.raw_out + ri * out_row;
            if (lt_convert_to_f64(bt->dtype, b.raw_base + ri * base_row, b.w, (size_t)cols) != LT_OK ||
                lt_convert_to_f64(od, raw_o, b.o, (size_t)cols) != LT_OK) {
                s = lti_fail(err, LT_ERR_UNSUPPORTED, "verify: tensor '%s': cannot read %s or %s as numbers",
                             bt->name, lt_dtype_name(bt->dtype), lt_dtype_name(od));
                break;
            }
            long slot = token_slot(t, i);
            if (slot >= 0) { /* a trainable token's row: the saved values, rounded once */
                lt_source *asrc = lt_adapter_source(t->tok_adapter);
                const lt_tensor_info *tt = lt_source_tensor(asrc, (size_t)t->tok->tensor);
                unsigned char *raw_t = malloc((size_t)tt->n_bytes / tt->shape[0] + 1);
                s = raw_t ? lt_source_read(asrc, (size_t)t->tok->tensor, (uint64_t)slot * (tt->n_bytes / tt->shape[0]),
                                           raw_t, (size_t)(tt->n_bytes / tt->shape[0]), err)
                          : lti_fail_nomem(err, "verify");
                if (s == LT_OK && (lt_convert_to_f64(tt->dtype, raw_t, b.token_row, (size_t)cols) != LT_OK ||
                                   lt_convert_from_f64(od, b.token_row, b.expect, (size_t)cols) != LT_OK))
                    s = lti_fail(err, LT_ERR_UNSUPPORTED, "verify: tensor '%s': cannot convert token rows", bt->name);
                free(raw_t);
                if (s == LT_OK && memcmp(b.expect, raw_o, (size_t)out_row))
                    verify_problem(vt, "row %llu (trainable token) differs from the adapter's row",
                                   (unsigned long long)i);
                continue;
            }
            double a_ref, a_out, a_w;
            row_sums(w, o, cols, b.probes, K, wx, ox, &a_w, &a_out);
            if (dense) {
                if (!dense_row(t, w, i, cols, b.dense)) {
                    verify_problem(vt, "row %llu: DoRA weight norm is zero", (unsigned long long)i);
                    continue;
                }
                for (uint32_t k = 0; k < K; k++)
                    yref[k] = dot(b.dense, b.probes + (uint64_t)k * cols, cols);
                a_ref = abs_sum(b.dense, cols) + a_w;
                if (ctx->opts.exact) {
                    if (lt_convert_from_f64(od, b.dense, b.expect, (size_t)cols) != LT_OK) {
                        s = lti_fail(err, LT_ERR_UNSUPPORTED, "verify: tensor '%s': cannot round to %s", bt->name,
                                     lt_dtype_name(od));
                        break;
                    }
                    unsigned es = lt_dtype_block_bytes(od), ee = lt_dtype_block_elems(od);
                    for (uint64_t j = 0; j < cols / ee; j++) {
                        if (memcmp(b.expect + j * es, raw_o + j * es, es) == 0)
                            continue;
                        if (vt->exact_bad++ == 0) {
                            double want;
                            lt_convert_to_f64(od, b.expect + j * es, b.token_row, ee);
                            want = b.token_row[0];
                            verify_problem(vt, "--exact: element [%llu, %llu] is %.9g, the rounded merge is %.9g%s",
                                           (unsigned long long)i, (unsigned long long)(j * ee), o[j * ee], want,
                                           ee > 1 ? " (first of its block)" : "");
                        }
                    }
                }
            } else {
                a_ref = a_w;
                for (uint32_t k = 0; k < K; k++)
                    yref[k] = wx[k];
                for (size_t q = 0; q < t->n_ops; q++) {
                    const verify_op *op = &t->ops[q];
                    const double *c = op->coef + (op->bias ? 0 : i) * op->rank;
                    for (uint32_t r = 0; r < op->rank; r++) {
                        a_ref += fabs(c[r]) * op->vec_abs[r];
                        for (uint32_t k = 0; k < K; k++)
                            yref[k] += c[r] * op->u[r * K + k];
                    }
                }
            }
            double sigma = sqrt(row_noise_sq(nm, raw_o, cols));
            /* our float64 dot products and sums: far below any tolerance */
            double slack = (double)(cols + rank_total + 8) * u53 * (a_ref + a_out);
            bool finite = true; /* a finite row's sum |o| overflows only in F64 */
            for (uint64_t j = 0; j < cols && finite && !isfinite(a_out); j++)
                finite = isfinite(o[j]);
            if (!finite) {
                verify_problem(vt, "row %llu holds NaN or Inf", (unsigned long long)i);
                continue;
            }
            vt->rows_checked++;
            for (uint32_t k = 0; k < K; k++) {
                double y = ox[k];
                double res = y - yref[k], excess = fabs(res) - slack;
                double z = excess <= 0 ? 0 : sigma > 0 ? excess / sigma : INFINITY;
                sum_res += res * res;
                sum_delta += (yref[k] - wx[k]) * (yref[k] - wx[k]);
                sum_applied += (y - wx[k]) * (yref[k] - wx[k]);
                if (z > vt->worst || (vt->rows_checked == 1 && k == 0)) {
                    vt->worst = z;
                    vt->worst_row = i;
                }
            }
        }
    }
    vt->rel_error = sum_delta > 0 ? sqrt(sum_res / sum_delta) : sum_res > 0 ? INFINITY : 0;
    if (s == LT_OK && vt->worst > ctx->threshold) {
        double applied = sum_delta > 0 ? sum_applied / sum_delta : NAN;
        free(vt->problem); /* the forward check's verdict comes first */
        vt->problem = NULL;
        verify_problem(vt,
                       "row %llu: residual %.3g noise units > threshold %.3g; relative error %.3g; OUT carries %.3g "
                       "times the expected delta",
                       (unsigned long long)vt->worst_row, vt->worst, ctx->threshold, vt->rel_error, applied);
    }
    free(wx);
    free(yref);
    free(ox);
    free_bufs(&b);
    for (size_t q = 0; q < t->n_ops; q++)
        verify_free_op(&t->ops[q]);
    free(nm);
    return s;
}
