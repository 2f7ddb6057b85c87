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

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif

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

/* h_j^2 of four F16 or BF16 values (little-endian bytes at p), C as
 * noise_sq_2byte computes it. */
LT_INLINE vd4 noise4(const unsigned char *p, unsigned shift, unsigned mask, uint64_t c)
{
    vh4 h;
    memcpy(&h, p, sizeof h);
    vu4 e = (__builtin_convertvector(h, vu4) >> shift) & mask;
    e += (vu4)(e == 0) & 1;
    return (vd4)((2 * e + c) << 52);
}

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
    for (; j + 4 <= cols; j += 4)
        acc += noise4(raw + 2 * j, nm->exp_shift, mask, c);
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

typedef uint16_t vh8 __attribute__((vector_size(16)));
typedef uint32_t vw8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef float vf8 __attribute__((vector_size(32)));

/* Eight F16 (f16) or BF16 values, little-endian bytes at p, as doubles in
 * lo (the first four) and hi: exact, as lt_convert_to_f64 converts them
 * (F16 branch-free: normal numbers rebias the exponent, Inf/NaN get the
 * all-ones exponent, subnormals are their mantissa times 2^-24).  *bits
 * gets the raw values for the noise. */
LT_INLINE void half8(const unsigned char *p, bool f16, vd4 *lo, vd4 *hi, vw8 *bits)
{
    vh8 h;
    memcpy(&h, p, sizeof h);
    vw8 x = __builtin_convertvector(h, vw8), f;
    if (f16) {
        vw8 ax = x & 0x7FFF, e = ax >> 10, zero = (vw8)(e == 0);
        vw8 normal = (ax << 13) + 0x38000000 + ((vw8)(e == 31) & 0x38000000);
        vw8 sub = (vw8)(__builtin_convertvector((vi8)ax, vf8) * 0x1p-24f);
        f = (sub & zero) | (normal & ~zero) | (x & 0x8000) << 16;
    } else {
        f = x << 16;
    }
    *lo = __builtin_convertvector(__builtin_shufflevector((vf8)f, (vf8)f, 0, 1, 2, 3), vd4);
    *hi = __builtin_convertvector(__builtin_shufflevector((vf8)f, (vf8)f, 4, 5, 6, 7), vd4);
    *bits = x;
}

/* h_j^2 of eight raw F16 or BF16 values, as noise4 computes it, built in
 * 32-bit lanes (the high word of each double). */
LT_INLINE void noise8(vw8 x, unsigned shift, unsigned mask, uint32_t c, vd4 *lo, vd4 *hi)
{
    vw8 e = (x >> shift) & mask;
    e += (vw8)(e == 0) & 1;
    vw8 t = (2 * e + c) << 20;
    *lo = (vd4)(__builtin_convertvector(__builtin_shufflevector(t, t, 0, 1, 2, 3), vu4) << 32);
    *hi = (vd4)(__builtin_convertvector(__builtin_shufflevector(t, t, 4, 5, 6, 7), vu4) << 32);
}

/* One pass of half_rows over elements [from, n) for probes p and q (and,
 * on the first pass, |w|, |o| and the noise), continuing the accumulators
 * ACC: wp, wq, op, oq, wa, oa, ns, four lanes each. */
LT_INLINE void half_pass_body(const unsigned char *w, const unsigned char *o, uint64_t from, uint64_t n,
                              const double *p, const double *q, bool first, const noise_model *nm, bool w_f16,
                              bool o_f16, double acc[7][4])
{
    unsigned shift = nm->exp_shift, mask = (1u << nm->exp_bits) - 1;
    uint32_t c = (uint32_t)(1023 - 2 * ((nm->exp_bits == 5 ? 15 : 127) + (int)shift) - 2);
    uint64_t n8 = n / 8 * 8, n4 = n / 4 * 4;
    vd4 wp = load4(acc[0]), wq = load4(acc[1]), op = load4(acc[2]), oq = load4(acc[3]);
    vd4 wa = load4(acc[4]), oa = load4(acc[5]), ns = load4(acc[6]);
    vd4 x0, x1, y0, y1, h0, h1;
    vw8 wb, ob;
#define LT_HALF_STEP(J, W, O, ALL)                                                                             \
    do {                                                                                                       \
        half8(W, w_f16, &x0, &x1, &wb);                                                                        \
        half8(O, o_f16, &y0, &y1, &ob);                                                                        \
        vd4 p0 = load4(p + (J)), q0 = load4(q + (J));                                                          \
        wp += x0 * p0, wq += x0 * q0, op += y0 * p0, oq += y0 * q0;                                            \
        if (ALL) {                                                                                             \
            vd4 p1 = load4(p + (J) + 4), q1 = load4(q + (J) + 4);                                              \
            wp += x1 * p1, wq += x1 * q1, op += y1 * p1, oq += y1 * q1;                                        \
        }                                                                                                      \
        if (first) {                                                                                           \
            noise8(ob, shift, mask, c, &h0, &h1);                                                              \
            wa += abs4(x0), oa += abs4(y0), ns += h0;                                                          \
            if (ALL)                                                                                           \
                wa += abs4(x1), oa += abs4(y1), ns += h1;                                                      \
        }                                                                                                      \
    } while (0)
    for (uint64_t j = from; j < n8; j += 8)
        LT_HALF_STEP(j, w + 2 * j, o + 2 * j, true);
    if (n8 < n) { /* 1..7 elements left: zero-padded to eight */
        unsigned char wt[16] = {0}, ot[16] = {0};
        memcpy(wt, w + 2 * n8, (size_t)(2 * (n - n8)));
        memcpy(ot, o + 2 * n8, (size_t)(2 * (n - n8)));
        if (n4 > n8) /* a whole four: into the lanes */
            LT_HALF_STEP(n8, wt, ot, false);
        else
            half8(wt, w_f16, &x0, &x1, &wb), half8(ot, o_f16, &y0, &y1, &ob);
        noise8(ob, shift, mask, c, &h0, &h1);
        double xs[8], ys[8], hs[8];
        memcpy(xs, &x0, sizeof x0), memcpy(xs + 4, &x1, sizeof x1);
        memcpy(ys, &y0, sizeof y0), memcpy(ys + 4, &y1, sizeof y1);
        memcpy(hs, &h0, sizeof h0), memcpy(hs + 4, &h1, sizeof h1);
        for (uint64_t j = n4; j < n; j++) { /* the last 1..3, as the scalar loops added them */
            double xj = xs[j - n8], yj = ys[j - n8];
            wp[0] += xj * p[j], wq[0] += xj * q[j], op[0] += yj * p[j], oq[0] += yj * q[j];
            wa[0] += fabs(xj), oa[0] += fabs(yj);
            ns[j % 4] += hs[j - n8];
        }
    }
#undef LT_HALF_STEP
    memcpy(acc[0], &wp, sizeof wp), memcpy(acc[1], &wq, sizeof wq), memcpy(acc[2], &op, sizeof op);
    memcpy(acc[3], &oq, sizeof oq), memcpy(acc[4], &wa, sizeof wa), memcpy(acc[5], &oa, sizeof oa);
    memcpy(acc[6], &ns, sizeof ns);
}

LT_VERIFY_CLONES
static void half_pass(const unsigned char *w, const unsigned char *o, uint64_t from, uint64_t n, const double *p,
                      const double *q, bool first, const noise_model *nm, bool w_f16, bool o_f16, double acc[7][4])
{
    /* one instance per type pair, so that half8's test leaves the loops */
    if (w_f16 && o_f16)
        half_pass_body(w, o, from, n, p, q, first, nm, true, true, acc);
    else if (w_f16)
        half_pass_body(w, o, from, n, p, q, first, nm, true, false, acc);
    else if (o_f16)
        half_pass_body(w, o, from, n, p, q, first, nm, false, true, acc);
    else
        half_pass_body(w, o, from, n, p, q, first, nm, false, false, acc);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LT_VERIFY_AVX2 __attribute__((target("avx2,f16c")))

/* Eight F16 or BF16 values at p as doubles, and their raw bits. */
LT_VERIFY_AVX2 LT_INLINE void half8_avx2(const unsigned char *p, bool f16, __m256d *lo, __m256d *hi, __m256i *bits)
{
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m256i x = _mm256_cvtepu16_epi32(h);
    __m256 f = f16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
    *bits = x;
}

/* half_rows_body for AVX2 machines, in intrinsics (GCC's lowering of the
 * generic vectors wastes half the time here): the same operations in the
 * same order, lane by lane, so the same bits.  Used for the whole 8-wide
 * part of each pass; the generic code does the rest. */
LT_VERIFY_AVX2 LT_INLINE void half_pass_avx2_body(const unsigned char *w, const unsigned char *o, uint64_t n8,
                                                  const double *p, const double *q, bool first, const noise_model *nm,
                                                  bool w_f16, bool o_f16, double acc[7][4])
{
    __m256d wp = _mm256_loadu_pd(acc[0]), wq = _mm256_loadu_pd(acc[1]), op = _mm256_loadu_pd(acc[2]);
    __m256d oq = _mm256_loadu_pd(acc[3]), wa = _mm256_loadu_pd(acc[4]), oa = _mm256_loadu_pd(acc[5]);
    __m256d ns = _mm256_loadu_pd(acc[6]);
    const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
    const __m256i mask = _mm256_set1_epi32((int)((1u << nm->exp_bits) - 1)), one = _mm256_set1_epi32(1);
    const __m256i c = _mm256_set1_epi32(1023 - 2 * ((nm->exp_bits == 5 ? 15 : 127) + (int)nm->exp_shift) - 2);
    const __m128i shift = _mm_cvtsi32_si128((int)nm->exp_shift);
    for (uint64_t j = 0; j < n8; j += 8) {
        __m256d x0, x1, y0, y1;
        __m256i wb, ob;
        half8_avx2(w + 2 * j, w_f16, &x0, &x1, &wb);
        half8_avx2(o + 2 * j, o_f16, &y0, &y1, &ob);
        __m256d p0 = _mm256_loadu_pd(p + j), q0 = _mm256_loadu_pd(q + j);
        __m256d p1 = _mm256_loadu_pd(p + j + 4), q1 = _mm256_loadu_pd(q + j + 4);
        wp = _mm256_add_pd(wp, _mm256_mul_pd(x0, p0)), wq = _mm256_add_pd(wq, _mm256_mul_pd(x0, q0));
        op = _mm256_add_pd(op, _mm256_mul_pd(y0, p0)), oq = _mm256_add_pd(oq, _mm256_mul_pd(y0, q0));
        wp = _mm256_add_pd(wp, _mm256_mul_pd(x1, p1)), wq = _mm256_add_pd(wq, _mm256_mul_pd(x1, q1));
        op = _mm256_add_pd(op, _mm256_mul_pd(y1, p1)), oq = _mm256_add_pd(oq, _mm256_mul_pd(y1, q1));
        if (first) {
            /* h^2 from the exponent field e (at least 1): (2 e + c) in
             * the high word of a double */
            __m256i e = _mm256_max_epu32(_mm256_and_si256(_mm256_srl_epi32(ob, shift), mask), one);
            __m256i t = _mm256_slli_epi32(_mm256_add_epi32(_mm256_add_epi32(e, e), c), 20);
            __m256d h0 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(t)), 32));
            __m256d h1 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(t, 1)), 32));
            wa = _mm256_add_pd(wa, _mm256_and_pd(x0, abs_mask)), oa = _mm256_add_pd(oa, _mm256_and_pd(y0, abs_mask));
            ns = _mm256_add_pd(ns, h0);
            wa = _mm256_add_pd(wa, _mm256_and_pd(x1, abs_mask)), oa = _mm256_add_pd(oa, _mm256_and_pd(y1, abs_mask));
            ns = _mm256_add_pd(ns, h1);
        }
        (void)wb;
    }
    _mm256_storeu_pd(acc[0], wp), _mm256_storeu_pd(acc[1], wq), _mm256_storeu_pd(acc[2], op);
    _mm256_storeu_pd(acc[3], oq), _mm256_storeu_pd(acc[4], wa), _mm256_storeu_pd(acc[5], oa);
    _mm256_storeu_pd(acc[6], ns);
}

LT_VERIFY_AVX2
static void half_pass_avx2(const unsigned char *w, const unsigned char *o, uint64_t n8, const double *p,
                           const double *q, bool first, const noise_model *nm, bool w_f16, bool o_f16, double acc[7][4])
{
    if (w_f16 && o_f16)
        half_pass_avx2_body(w, o, n8, p, q, first, nm, true, true, acc);
    else if (w_f16)
        half_pass_avx2_body(w, o, n8, p, q, first, nm, true, false, acc);
    else if (o_f16)
        half_pass_avx2_body(w, o, n8, p, q, first, nm, false, true, acc);
    else
        half_pass_avx2_body(w, o, n8, p, q, first, nm, false, false, acc);
}
#endif

/* row_sums and noise_sq_2byte in one pass per two probes, straight from
 * the raw rows, when base and OUT are both F16 or BF16 (w_f16, o_f16 say
 * which): no row of doubles is written and read back.  The same
 * operations in the same order as those two (eight elements a step: lanes
 * j mod 4 twice), so the same results. */
static void half_rows(const unsigned char *w, const unsigned char *o, uint64_t n, const double *probes, uint32_t K,
                      const noise_model *nm, double *wx, double *ox, double *w_abs, double *o_abs, double *noise_sq,
                      bool w_f16, bool o_f16)
{
    for (uint32_t k = 0; k < K; k += 2) {
        const double *p = probes + (uint64_t)k * n, *q = probes + (uint64_t)(k + 1 < K ? k + 1 : k) * n;
        double acc[7][4] = {{0}};
        uint64_t done = 0;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
        if (__builtin_cpu_supports("x86-64-v3")) {
            done = n / 8 * 8;
            half_pass_avx2(w, o, done, p, q, k == 0, nm, w_f16, o_f16, acc);
        }
#endif
        half_pass(w, o, done, n, p, q, k == 0, nm, w_f16, o_f16, acc);
        wx[k] = (acc[0][0] + acc[0][1]) + (acc[0][2] + acc[0][3]);
        ox[k] = (acc[2][0] + acc[2][1]) + (acc[2][2] + acc[2][3]);
        if (k + 1 < K) {
            wx[k + 1] = (acc[1][0] + acc[1][1]) + (acc[1][2] + acc[1][3]);
            ox[k + 1] = (acc[3][0] + acc[3][1]) + (acc[3][2] + acc[3][3]);
        }
        if (k == 0) {
            *w_abs = (acc[4][0] + acc[4][1]) + (acc[4][2] + acc[4][3]);
            *o_abs = (acc[5][0] + acc[5][1]) + (acc[5][2] + acc[5][3]);
            *noise_sq = (acc[6][0] + acc[6][1]) + (acc[6][2] + acc[6][3]);
        }
    }
}

typedef struct row_bufs {
    unsigned char *raw_base, *raw_out, *expect;
    double *w, *o, *dense, *probes, *token_row;
} row_bufs;

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
                         verify_scratch *scratch, lt_verify_tensor *vt, lt_error *err)
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
        b.raw_base = verify_scratch_get(scratch, 0, (size_t)(per * base_row));
        b.raw_out = verify_scratch_get(scratch, 1, (size_t)(per * out_row));
        b.expect = verify_scratch_get(scratch, 2, (size_t)out_row);
        b.w = verify_scratch_get(scratch, 3, (size_t)cols * sizeof(double)); /* one row: stays in cache */
        b.o = verify_scratch_get(scratch, 4, (size_t)cols * sizeof(double));
        b.dense = verify_scratch_get(scratch, 5, (size_t)cols * sizeof(double));
        b.token_row = verify_scratch_get(scratch, 6, (size_t)cols * sizeof(double));
        b.probes = verify_scratch_get(scratch, 7, (size_t)(K * cols) * sizeof(double));
        if (!b.raw_base || !b.raw_out || !b.expect || !b.w || !b.o || !b.dense || !b.token_row || !b.probes)
            s = lti_fail_nomem(err, "verify");
    }
    /* both F16 or BF16 and no row computed densely: the fused kernel */
    bool halves = !dense && (bt->dtype == LT_F16 || bt->dtype == LT_BF16) && (od == LT_F16 || od == LT_BF16);
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    halves = false;
#endif
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
            const unsigned char *raw_o = b.raw_out + ri * out_row, *raw_w = b.raw_base + ri * base_row;
            if (!halves && (lt_convert_to_f64(bt->dtype, raw_w, b.w, (size_t)cols) != LT_OK ||
                            lt_convert_to_f64(od, raw_o, b.o, (size_t)cols) != LT_OK)) {
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
            double a_ref, a_out = 0, a_w = 0, noise_sq = 0;
            if (halves) {
                half_rows(raw_w, raw_o, cols, b.probes, K, nm, wx, ox, &a_w, &a_out, &noise_sq, bt->dtype == LT_F16,
                          od == LT_F16);
            } else {
                row_sums(w, o, cols, b.probes, K, wx, ox, &a_w, &a_out);
                noise_sq = row_noise_sq(nm, raw_o, cols);
            }
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
            double sigma = sqrt(noise_sq);
            /* our float64 dot products and sums: far below any tolerance */
            double slack = (double)(cols + rank_total + 8) * u53 * (a_ref + a_out);
            bool finite = true; /* a finite row's sum |o| overflows only in F64 */
            if (!isfinite(a_out) && halves)
                lt_convert_to_f64(od, raw_o, b.o, (size_t)cols);
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
    for (size_t q = 0; q < t->n_ops; q++)
        verify_free_op(&t->ops[q]);
    free(nm);
    return s;
}
