/*
 * quant.c - ggml's block-quantized types: expanding blocks to f32, and
 * packing f32 into Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 (the K-quants are
 * packed in quant_k.c).
 *
 * The block layouts and the arithmetic were read from ggml's
 * ggml-common.h (the block_* structs) and ggml-quants.c (dequantize_row_*,
 * quantize_row_q8_0_ref, quantize_row_q4_0_ref).  Every product and sum is
 * done in f32 in the same order as there, so results are bit for bit the
 * same (the build uses -ffp-contract=off, so nothing is fused).  All
 * multi-byte fields are little-endian; "f16" is an IEEE half.
 *
 * Notation in the diagrams: byte offsets on top, field names below; a
 * "nibble" is 4 bits, low nibble first.
 */
#include <float.h>
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "quant.h"
#include "source_sink.h"

#define QK LTI_QK
#define QK_K LTI_QK_K

float lti_half_at(const unsigned char *p)
{
    return lt_f16_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

/* ------------------------------------------------------------------ */
/* 32-element blocks                                                    */
/* ------------------------------------------------------------------ */

/*
 * Q8_0, 34 bytes:   0      2                                  34
 *                   | d f16 | qs: 32 x i8                      |
 *   y[j] = qs[j] * d
 */
static void dequant_q8_0(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b);
    for (int j = 0; j < QK; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/*
 * Q4_0, 18 bytes:   0      2                     18
 *                   | d f16 | qs: 16 bytes        |
 *   byte qs[j] = (high nibble: element j+16)(low nibble: element j)
 *   y = (nibble - 8) * d
 */
static void dequant_q4_0(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b);
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)((b[2 + j] & 0x0F) - 8) * d;
        y[j + QK / 2] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

/*
 * Q4_1, 20 bytes:   0      2      4                     20
 *                   | d f16 | m f16 | qs: 16 bytes        |
 *   nibbles as Q4_0; y = nibble * d + m
 */
static void dequant_q4_1(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b), m = lti_half_at(b + 2);
    for (int j = 0; j < QK / 2; j++) {
        y[j] = (float)(b[4 + j] & 0x0F) * d + m;
        y[j + QK / 2] = (float)(b[4 + j] >> 4) * d + m;
    }
}

/* The 5-bit values of a Q5 block: low 4 bits from the nibbles, the fifth
 * bit of element j from bit j of the u32 qh. */
static void q5_values(const unsigned char *qh_bytes, const unsigned char *qs, int *x)
{
    uint32_t qh = (uint32_t)qh_bytes[0] | (uint32_t)qh_bytes[1] << 8 |
                  (uint32_t)qh_bytes[2] << 16 | (uint32_t)qh_bytes[3] << 24;
    for (int j = 0; j < QK / 2; j++) {
        x[j] = (qs[j] & 0x0F) | (int)(((qh >> j) << 4) & 0x10);
        x[j + QK / 2] = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
    }
}

/*
 * Q5_0, 22 bytes:   0      2          6                     22
 *                   | d f16 | qh: u32  | qs: 16 bytes        |
 *   y = (5-bit value - 16) * d
 */
static void dequant_q5_0(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b);
    int x[QK];
    q5_values(b + 2, b + 6, x);
    for (int j = 0; j < QK; j++)
        y[j] = (float)(x[j] - 16) * d;
}

/*
 * Q5_1, 24 bytes:   0      2      4          8                     24
 *                   | d f16 | m f16 | qh: u32  | qs: 16 bytes        |
 *   y = 5-bit value * d + m
 */
static void dequant_q5_1(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b), m = lti_half_at(b + 2);
    int x[QK];
    q5_values(b + 4, b + 8, x);
    for (int j = 0; j < QK; j++)
        y[j] = (float)x[j] * d + m;
}

/* ------------------------------------------------------------------ */
/* K-quants: 256-element super-blocks                                   */
/* ------------------------------------------------------------------ */

/*
 * Q2_K, 84 bytes:   0               16                   80      82      84
 *                   | scales: 16 B   | qs: 64 B           | d f16 | dmin  |
 *   16 sub-blocks of 16; scales[s] = (4-bit min)(4-bit scale).
 *   Each 128-element half uses 32 qs bytes; element 32*k + l of the half
 *   (k = 0..3) is bits 2k..2k+1 of qs[l].
 *   y = d * scale * q - dmin * min
 */
static void dequant_q2_k(const unsigned char *b, float *y)
{
    const unsigned char *scales = b, *q = b + 16;
    const float d = lti_half_at(b + 80), min = lti_half_at(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                unsigned char sc = scales[is++];
                const float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

/* Q3_K's 16 six-bit scales from their 12 packed bytes:
 *   bytes 0-7:  low nibbles = low 4 bits of scales 0-7,
 *               high nibbles = low 4 bits of scales 8-15
 *   bytes 8-11: bits 2k..2k+1 of byte 8+i = high 2 bits of scale 4k+i */
static int q3_k_scale(const unsigned char *packed, int j)
{
    int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
    int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (int)(int8_t)(uint8_t)(low | high << 4) - 32;
}

/*
 * Q3_K, 110 bytes:  0              32               96            108     110
 *                   | hmask: 32 B   | qs: 64 B       | scales: 12 B | d f16 |
 *   2 low bits as in Q2_K; the third bit of element 32*k + l (k = 0..7
 *   over the whole block) is bit k of hmask[l]; a clear bit subtracts 4.
 *   y = d * (scale - 32) * q3, q3 in -4..3
 */
static void dequant_q3_k(const unsigned char *b, float *y)
{
    const unsigned char *hm = b, *q = b + 32, *packed = b + 96;
    const float d_all = lti_half_at(b + 108);
    int is = 0;
    unsigned m = 1;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                const float dl = d_all * (float)q3_k_scale(packed, is++);
                for (int l = 0; l < 16; l++) {
                    int low = (q[l + 16 * half] >> shift) & 3;
                    int high = (hm[l + 16 * half] & m) ? 0 : 4;
                    *y++ = dl * (float)(low - high);
                }
            }
            m <<= 1;
        }
        q += 32;
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of Q4_K / Q5_K, packed in
 * 12 bytes:
 *   j < 4:  scale = low 6 bits of byte j,   min = low 6 bits of byte j+4
 *   j >= 4: scale = low nibble of byte j+4 | top 2 bits of byte j-4 << 4
 *           min   = high nibble of byte j+4 | top 2 bits of byte j << 4 */
void lti_k4_scale_min(const unsigned char *q, int j, unsigned *scale, unsigned *min)
{
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/*
 * Q4_K, 144 bytes:  0      2       4              16                    144
 *                   | d f16 | dmin  | scales: 12 B  | qs: 128 B           |
 *   8 sub-blocks of 32; each 64 elements share 32 qs bytes: low nibbles
 *   the first 32, high nibbles the next 32.
 *   y = d * scale * q - dmin * min
 */
static void dequant_q4_k(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b), min = lti_half_at(b + 2);
    const unsigned char *scales = b + 4, *q = b + 16;
    for (int is = 0; is < 8; is += 2) {
        unsigned sc, m;
        lti_k4_scale_min(scales, is, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        lti_k4_scale_min(scales, is + 1, &sc, &m);
        const float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)(q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (float)(q[l] >> 4) - m2;
        q += 32;
    }
}

/*
 * Q5_K, 176 bytes:  0      2       4              16            48          176
 *                   | d f16 | dmin  | scales: 12 B  | qh: 32 B     | qs: 128 B |
 *   as Q4_K, plus a fifth bit: element 32*k + l (k = 0..7) has bit k of
 *   qh[l] as its value 16.
 */
static void dequant_q5_k(const unsigned char *b, float *y)
{
    const float d = lti_half_at(b), min = lti_half_at(b + 2);
    const unsigned char *scales = b + 4, *qh = b + 16, *ql = b + 48;
    unsigned u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2) {
        unsigned sc, m;
        lti_k4_scale_min(scales, is, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        lti_k4_scale_min(scales, is + 1, &sc, &m);
        const float d2 = d * (float)sc, m2 = min * (float)m;
        for (int l = 0; l < 32; l++)
            *y++ = d1 * (float)((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++)
            *y++ = d2 * (float)((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        ql += 32;
        u1 <<= 2;
        u2 <<= 2;
    }
}

/*
 * Q6_K, 210 bytes:  0              128            192              208     210
 *                   | ql: 128 B     | qh: 64 B      | scales: 16 i8   | d f16 |
 *   Per 128-element half (64 ql, 32 qh, 8 scales), for l = 0..31:
 *     element l      = ql[l]    low nibble | qh[l] bits 0-1 << 4
 *     element l + 32 = ql[l+32] low nibble | qh[l] bits 2-3 << 4
 *     element l + 64 = ql[l]    high nibble| qh[l] bits 4-5 << 4
 *     element l + 96 = ql[l+32] high nibble| qh[l] bits 6-7 << 4
 *   16 sub-blocks of 16, each with a signed 8-bit scale.
 *   y = d * scale * (q6 - 32)
 */
static void dequant_q6_k(const unsigned char *b, float *y)
{
    const unsigned char *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = lti_half_at(b + 208);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* ------------------------------------------------------------------ */
/* Rows                                                                 */
/* ------------------------------------------------------------------ */

typedef void (*dequant_fn)(const unsigned char *block, float *y);

static dequant_fn dequantizer(lt_dtype type)
{
    switch (type) {
    case LT_Q4_0: return dequant_q4_0;
    case LT_Q4_1: return dequant_q4_1;
    case LT_Q5_0: return dequant_q5_0;
    case LT_Q5_1: return dequant_q5_1;
    case LT_Q8_0: return dequant_q8_0;
    case LT_Q2_K: return dequant_q2_k;
    case LT_Q3_K: return dequant_q3_k;
    case LT_Q4_K: return dequant_q4_k;
    case LT_Q5_K: return dequant_q5_k;
    case LT_Q6_K: return dequant_q6_k;
    default: return NULL;
    }
}

lt_status lt_dequantize_row(lt_dtype type, const void *src, float *dst, size_t n)
{
    switch (type) {
    case LT_F32: case LT_F16: case LT_BF16: case LT_F64:
        return lt_convert_to_f32(type, src, dst, n);
    default:
        break;
    }
    dequant_fn fn = dequantizer(type);
    if (!fn)
        return LT_ERR_UNSUPPORTED;
    size_t block_elems = lt_dtype_block_elems(type), block_bytes = lt_dtype_block_bytes(type);
    if (n % block_elems != 0)
        return LT_ERR_USAGE;
    const unsigned char *in = src;
    for (size_t i = 0; i < n / block_elems; i++)
        fn(in + i * block_bytes, dst + i * block_elems);
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* Quantization (ggml's reference rounding)                             */
/* ------------------------------------------------------------------ */

void lti_put_half(unsigned char *p, float f)
{
    uint16_t h = lt_f32_to_f16(f);
    p[0] = (unsigned char)h;
    p[1] = (unsigned char)(h >> 8);
}

/* ggml's float -> small integer casts (int8_t)f and (uint8_t)f as its
 * x86-64 build performs them: cvttss2si, truncation toward zero, with NaN
 * and values outside int32 giving INT32_MIN; the caller keeps the low
 * byte.  Reached with such values only when a block's range overflows f32
 * or its 1/d is infinite. */
#if defined(__SSE2__)
static inline int32_t trunc_x86(float v) { return _mm_cvttss_si32(_mm_set_ss(v)); }
#else
static inline int32_t trunc_x86(float v)
{
    return v >= -2147483648.0f && v < 2147483648.0f ? (int32_t)v : INT32_MIN;
}
#endif

/* ggml's MAX(a, b), (a > b ? a : b), exactly; on SSE2 it is maxss, which
 * GCC does not pick on its own (it would branch). */
static inline float max_like_ggml(float a, float b)
{
#if defined(__SSE2__)
    return _mm_cvtss_f32(_mm_max_ss(_mm_set_ss(a), _mm_set_ss(b)));
#else
    return a > b ? a : b;
#endif
}

/* Q8_0: d = absmax / 127 (stored as f16, rounded to nearest even);
 * q = round(x / d) with halves away from zero, using 1/d of the unrounded
 * f32 d as ggml does, converted to int8 as ggml's x86-64 build does
 * (trunc_x86): NaN, and the infinities that an f32-subnormal block's
 * 1/d gives, become 0. */
static void quant_q8_0(const float *x, unsigned char *b)
{
    float amax = 0.0f;
    for (int j = 0; j < QK; j++)
        amax = max_like_ggml(amax, fabsf(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    lti_put_half(b, d);
    for (int j = 0; j < QK; j++)
        b[2 + j] = (unsigned char)(uint32_t)trunc_x86(roundf(x[j] * id));
}

/* ggml's MIN(cap, (int8_t)v) as its x86-64 build computes it: the cast
 * keeps the low byte of the truncated value (trunc_x86); a negative
 * result wraps when stored into the uint8_t that ggml keeps it in. */
static unsigned level_int8_capped(float v, int cap)
{
    int low = (int8_t)(uint8_t)(uint32_t)trunc_x86(v);
    return (uint8_t)(low < cap ? low : cap);
}

/* Q4_0: d = (the value of largest magnitude, first one on ties) / -8, so
 * that value maps to -8 exactly; level = (int8_t)(x * id + 8.5) capped at
 * 15, with id = 1/d in f32 and the product and the sum rounded separately,
 * as ggml's x86-64 build (no FMA in libggml-base) does.  A build that fuses
 * them into an FMA (gguf-py emulates that one in float64) differs in rare
 * last-bit cases; see quant_k.c. */
static void quant_q4_0(const float *x, unsigned char *b)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    lti_put_half(b, d);
    for (int j = 0; j < QK / 2; j++) {
        unsigned q0 = level_int8_capped(x[j] * id + 8.5f, 15);
        unsigned q1 = level_int8_capped(x[j + QK / 2] * id + 8.5f, 15);
        b[2 + j] = (unsigned char)(q0 | q1 << 4);
    }
}

/* The extremes of a block as ggml's Q4_1 / Q5_1 find them (min starts at
 * FLT_MAX, max at -FLT_MAX; strict comparisons). */
static void block_min_max(const float *x, float *min_out, float *max_out)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

/* Q4_1 (quantize_row_q4_1_ref): d = (max - min) / 15, m = min; level =
 * (int8_t)((x - min) / d + 0.5) capped at 15, the product by the f32 1/d
 * and the sum rounded separately. */
static void quant_q4_1(const float *x, unsigned char *b)
{
    float min, max;
    block_min_max(x, &min, &max);
    const float d = (max - min) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    lti_put_half(b, d);
    lti_put_half(b + 2, min);
    for (int j = 0; j < QK / 2; j++) {
        unsigned q0 = level_int8_capped((x[j] - min) * id + 0.5f, 15);
        unsigned q1 = level_int8_capped((x[j + QK / 2] - min) * id + 0.5f, 15);
        b[4 + j] = (unsigned char)(q0 | q1 << 4);
    }
}

/* The Q5 layout: low nibbles as Q4_0, the fifth bit of element j in bit j
 * of the little-endian u32 qh. */
static void pack_q5(const unsigned *q, unsigned char *qh_bytes, unsigned char *qs)
{
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (unsigned char)((q[j] & 0x0F) | (q[j + QK / 2] & 0x0F) << 4);
        qh |= ((q[j] & 0x10u) >> 4) << j;
        qh |= ((q[j + QK / 2] & 0x10u) >> 4) << (j + QK / 2);
    }
    for (int k = 0; k < 4; k++)
        qh_bytes[k] = (unsigned char)(qh >> (8 * k));
}

/* Q5_0 (quantize_row_q5_0_ref): as Q4_0 with 32 levels: d = (value of
 * largest magnitude, first on ties) / -16, level = (int8_t)(x / d + 16.5)
 * capped at 31, product and sum rounded separately. */
static void quant_q5_0(const float *x, unsigned char *b)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    unsigned q[QK];
    lti_put_half(b, d);
    for (int j = 0; j < QK; j++)
        q[j] = level_int8_capped(x[j] * id + 16.5f, 31);
    pack_q5(q, b + 2, b + 6);
}

/* Q5_1 (quantize_row_q5_1_ref): d = (max - min) / 31, m = min; level =
 * (uint8_t)((x - min) / d + 0.5), not capped (x86-64: the low byte of the
 * truncated value). */
static void quant_q5_1(const float *x, unsigned char *b)
{
    float min, max;
    block_min_max(x, &min, &max);
    const float d = (max - min) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    unsigned q[QK];
    lti_put_half(b, d);
    lti_put_half(b + 2, min);
    for (int j = 0; j < QK; j++)
        q[j] = (uint8_t)(uint32_t)trunc_x86((x[j] - min) * id + 0.5f);
    pack_q5(q, b + 4, b + 8);
}

/* ------------------------------------------------------------------ */
/* Eight 32-element blocks at once (quant.h's lanes)                     */
/* ------------------------------------------------------------------ */

/* trunc_x86 lane by lane: C's conversion where it is defined, INT32_MIN
 * elsewhere (NaN, out of int32), as cvttss2si / cvttps2dq give. */
static inline __attribute__((always_inline)) vi8 trunc_x86_x8(vf8 v)
{
    vi8 in_range = (v >= splat(-2147483648.0f)) & (v < splat(2147483648.0f));
    vi8 t = __builtin_convertvector(select_f(in_range, v, splat(0)), vi8);
    return select_i(in_range, t, splat_i(INT32_MIN));
}

/* level_int8_capped lane by lane: the low byte as int8, capped, as uint8 */
static inline __attribute__((always_inline)) vi8 int8_capped_x8(vf8 v, int cap)
{
    vi8 low = ((trunc_x86_x8(v) & splat_i(0xff)) ^ splat_i(0x80)) - splat_i(0x80);
    return select_i(low < cap, low, splat_i(cap)) & splat_i(0xff);
}

/* roundf (halves away from zero) then trunc_x86, lane by lane: below 2^23
 * in magnitude the fraction v - trunc(v) is exact; above, v is whole. */
static inline __attribute__((always_inline)) vi8 round_trunc_x86_x8(vf8 v)
{
    vi8 small = fabs_x8(v) < splat(8388608.0f);
    vi8 t = __builtin_convertvector(select_f(small, v, splat(0)), vi8);
    vf8 frac = fabs_x8(v - __builtin_convertvector(t, vf8));
    vi8 away = select_i(v < 0, splat_i(-1), splat_i(1));
    vi8 rounded = t + select_i(frac >= splat(0.5f), away, splat_i(0));
    return select_i(small, rounded, trunc_x86_x8(v));
}

enum legacy_kind { LEG_Q4_0, LEG_Q4_1, LEG_Q5_0, LEG_Q5_1, LEG_Q8_0 };

/* The scalar quantizers above, for eight consecutive blocks of x in the
 * lanes: the same comparisons, products and roundings per block. */
LT_LANES_CLONES
static void quant_legacy_eight(enum legacy_kind kind, const float *x, unsigned char *out, size_t block_bytes)
{
    vf8 xt[32];
    vi8 q[32];
    to_lanes(32, x, xt);
    vf8 d, id, min = splat(0);
    if (kind == LEG_Q4_1 || kind == LEG_Q5_1) {
        vf8 max = splat(-FLT_MAX);
        min = splat(FLT_MAX);
        for (int i = 0; i < 32; i++) {
            min = select_f(xt[i] < min, xt[i], min);
            max = select_f(xt[i] > max, xt[i], max);
        }
        d = (max - min) / splat(kind == LEG_Q4_1 ? 15 : 31);
    } else if (kind == LEG_Q8_0) {
        vf8 amax = splat(0);
        for (int i = 0; i < 32; i++) {
            vf8 a = fabs_x8(xt[i]);
            amax = select_f(amax > a, amax, a);
        }
        d = amax / splat(127.0f);
    } else {
        vf8 amax = splat(0), max = splat(0);
        for (int i = 0; i < 32; i++) {
            vf8 a = fabs_x8(xt[i]);
            vi8 larger = amax < a;
            amax = select_f(larger, a, amax);
            max = select_f(larger, xt[i], max);
        }
        d = max / splat(kind == LEG_Q4_0 ? -8.0f : -16.0f);
    }
    id = select_f(d != 0, splat(1.0f) / d, splat(0));
    for (int i = 0; i < 32; i++) {
        switch (kind) {
        case LEG_Q4_0: q[i] = int8_capped_x8(xt[i] * id + splat(8.5f), 15); break;
        case LEG_Q5_0: q[i] = int8_capped_x8(xt[i] * id + splat(16.5f), 31); break;
        case LEG_Q4_1: q[i] = int8_capped_x8((xt[i] - min) * id + splat(0.5f), 15); break;
        case LEG_Q5_1: q[i] = trunc_x86_x8((xt[i] - min) * id + splat(0.5f)) & splat_i(0xff); break;
        case LEG_Q8_0: q[i] = round_trunc_x86_x8(xt[i] * id) & splat_i(0xff); break;
        }
    }
    for (int j = 0; j < 8; j++) {
        unsigned char *b = out + (size_t)j * block_bytes;
        unsigned lv[QK];
        for (int i = 0; i < QK; i++)
            lv[i] = (unsigned)q[i][j];
        lti_put_half(b, d[j]);
        switch (kind) {
        case LEG_Q8_0:
            for (int i = 0; i < QK; i++)
                b[2 + i] = (unsigned char)lv[i];
            break;
        case LEG_Q4_0:
        case LEG_Q4_1: {
            unsigned char *qs = b + (kind == LEG_Q4_0 ? 2 : 4);
            if (kind == LEG_Q4_1)
                lti_put_half(b + 2, min[j]);
            for (int i = 0; i < QK / 2; i++)
                qs[i] = (unsigned char)(lv[i] | lv[i + QK / 2] << 4);
            break;
        }
        case LEG_Q5_0:
            pack_q5(lv, b + 2, b + 6);
            break;
        case LEG_Q5_1:
            lti_put_half(b + 2, min[j]);
            pack_q5(lv, b + 4, b + 8);
            break;
        }
    }
}

/* No NaN or Inf in x[0..n): an all-ones exponent field nowhere (integer
 * operations, so the compiler may vectorize the test). */
static bool all_finite(const float *x, size_t n)
{
    uint32_t non_finite = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        non_finite |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return non_finite == 0;
}

lt_status lt_quantize_row(lt_dtype type, const float *src, void *dst, size_t n)
{
    void (*fn)(const float *, unsigned char *);
    bool finite_only = true; /* Q8_0 and Q4_0 define what NaN becomes */
    int legacy = -1;         /* the 32-element types also run eight blocks at once */
    switch (type) {
    case LT_Q8_0: fn = quant_q8_0; finite_only = false; legacy = LEG_Q8_0; break;
    case LT_Q4_0: fn = quant_q4_0; finite_only = false; legacy = LEG_Q4_0; break;
    case LT_Q4_1: fn = quant_q4_1; legacy = LEG_Q4_1; break;
    case LT_Q5_0: fn = quant_q5_0; legacy = LEG_Q5_0; break;
    case LT_Q5_1: fn = quant_q5_1; legacy = LEG_Q5_1; break;
    case LT_Q2_K: fn = lti_quant_q2_k; break;
    case LT_Q3_K: fn = lti_quant_q3_k; break;
    case LT_Q4_K: fn = lti_quant_q4_k; break;
    case LT_Q5_K: fn = lti_quant_q5_k; break;
    case LT_Q6_K: fn = lti_quant_q6_k; break;
    default: return LT_ERR_UNSUPPORTED;
    }
    size_t block_elems = lt_dtype_block_elems(type), block_bytes = lt_dtype_block_bytes(type);
    if (n % block_elems != 0)
        return LT_ERR_USAGE;
    /* ggml's searches have no defined answer for NaN or Inf: refuse them
     * before writing anything */
    if (finite_only && !all_finite(src, n))
        return LT_ERR_INVALID;
    unsigned char *out = dst;
    size_t i = 0, blocks = n / block_elems;
    if (legacy >= 0)
        for (; i + 8 <= blocks; i += 8)
            quant_legacy_eight((enum legacy_kind)legacy, src + i * block_elems, out + i * block_bytes, block_bytes);
    for (; i < blocks; i++)
        fn(src + i * block_elems, out + i * block_bytes);
    return LT_OK;
}
