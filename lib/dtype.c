/*
 * dtype.c - the element-type table and exact conversions to and from f32.
 *
 * Every type fact (names, ggml ids, block geometry) lives in one static
 * table indexed by lt_dtype, so that adding a type is one line.  The ggml
 * ids and block sizes were checked against ggml's ggml.h (enum ggml_type)
 * and ggml-common.h (the block_* structs and their static_asserts).
 *
 * The four narrow float formats (F16, BF16, F8_E5M2, F8_E4M3) share one
 * encoder and one decoder driven by a small format description, so the
 * rounding logic exists once.  They work on bit patterns with integer
 * arithmetic, so they do not depend on the FPU rounding mode, on
 * flush-to-zero settings or on flags like -ffast-math.  Only F64 <-> f32
 * uses C casts, which are exact / round-to-nearest-even in the default
 * floating-point environment (a flush-to-zero environment would flush
 * subnormals there).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "source_sink.h"

/* ------------------------------------------------------------------ */
/* The type table                                                      */
/* ------------------------------------------------------------------ */

typedef struct dtype_info {
    const char *name;             /* canonical name (safetensors, else ggml) */
    const char *safetensors_name; /* NULL when safetensors lacks the type   */
    int ggml_id;                  /* -1 when ggml lacks the type            */
    uint32_t block_elems;         /* 1 for plain types                      */
    uint32_t block_bytes;
} dtype_info;

static const dtype_info dtype_table[LT_DTYPE_COUNT] = {
    [LT_DTYPE_INVALID] = {"INVALID", NULL, -1, 0, 0},

    [LT_BOOL] = {"BOOL", "BOOL", -1, 1, 1},
    [LT_U8] = {"U8", "U8", -1, 1, 1},
    [LT_I8] = {"I8", "I8", 24, 1, 1},
    [LT_I16] = {"I16", "I16", 25, 1, 2},
    [LT_U16] = {"U16", "U16", -1, 1, 2},
    [LT_I32] = {"I32", "I32", 26, 1, 4},
    [LT_U32] = {"U32", "U32", -1, 1, 4},
    [LT_I64] = {"I64", "I64", 27, 1, 8},
    [LT_U64] = {"U64", "U64", -1, 1, 8},
    [LT_F16] = {"F16", "F16", 1, 1, 2},
    [LT_BF16] = {"BF16", "BF16", 30, 1, 2},
    [LT_F32] = {"F32", "F32", 0, 1, 4},
    [LT_F64] = {"F64", "F64", 28, 1, 8},
    [LT_F8_E4M3] = {"F8_E4M3", "F8_E4M3", -1, 1, 1},
    [LT_F8_E5M2] = {"F8_E5M2", "F8_E5M2", -1, 1, 1},
    [LT_F8_E8M0] = {"F8_E8M0", "F8_E8M0", -1, 1, 1},
    [LT_C64] = {"C64", "C64", -1, 1, 8}, /* complex of two f32 */

    /* ggml blocks: block_q4_0 = {f16 d; u8 qs[16]} and so on */
    [LT_Q4_0] = {"Q4_0", NULL, 2, 32, 18},
    [LT_Q4_1] = {"Q4_1", NULL, 3, 32, 20},
    [LT_Q5_0] = {"Q5_0", NULL, 6, 32, 22},
    [LT_Q5_1] = {"Q5_1", NULL, 7, 32, 24},
    [LT_Q8_0] = {"Q8_0", NULL, 8, 32, 34},
    [LT_Q8_1] = {"Q8_1", NULL, 9, 32, 36},
    [LT_Q2_K] = {"Q2_K", NULL, 10, 256, 84},
    [LT_Q3_K] = {"Q3_K", NULL, 11, 256, 110},
    [LT_Q4_K] = {"Q4_K", NULL, 12, 256, 144},
    [LT_Q5_K] = {"Q5_K", NULL, 13, 256, 176},
    [LT_Q6_K] = {"Q6_K", NULL, 14, 256, 210},
    [LT_Q8_K] = {"Q8_K", NULL, 15, 256, 292},
    [LT_IQ2_XXS] = {"IQ2_XXS", NULL, 16, 256, 66},
    [LT_IQ2_XS] = {"IQ2_XS", NULL, 17, 256, 74},
    [LT_IQ3_XXS] = {"IQ3_XXS", NULL, 18, 256, 98},
    [LT_IQ1_S] = {"IQ1_S", NULL, 19, 256, 50},
    [LT_IQ4_NL] = {"IQ4_NL", NULL, 20, 32, 18},
    [LT_IQ3_S] = {"IQ3_S", NULL, 21, 256, 110},
    [LT_IQ2_S] = {"IQ2_S", NULL, 22, 256, 82},
    [LT_IQ4_XS] = {"IQ4_XS", NULL, 23, 256, 136},
    [LT_IQ1_M] = {"IQ1_M", NULL, 29, 256, 56},
    [LT_TQ1_0] = {"TQ1_0", NULL, 34, 256, 54},
    [LT_TQ2_0] = {"TQ2_0", NULL, 35, 256, 66},
    [LT_MXFP4] = {"MXFP4", NULL, 39, 32, 17},
};

/* The table entry for t, or NULL when t is not a real type. */
static const dtype_info *dtype_lookup(lt_dtype t)
{
    /* Compare as unsigned so that a negative value cast to lt_dtype is
     * rejected too. */
    if ((unsigned)t == (unsigned)LT_DTYPE_INVALID || (unsigned)t >= (unsigned)LT_DTYPE_COUNT)
        return NULL;
    return &dtype_table[t];
}

const char *lt_dtype_name(lt_dtype t)
{
    const dtype_info *info = dtype_lookup(t);
    return info ? info->name : "INVALID";
}

lt_dtype lt_dtype_from_safetensors(const char *name)
{
    if (!name)
        return LT_DTYPE_INVALID;
    for (int t = 1; t < LT_DTYPE_COUNT; t++) {
        const char *st_name = dtype_table[t].safetensors_name;
        if (st_name && strcmp(st_name, name) == 0)
            return (lt_dtype)t;
    }
    return LT_DTYPE_INVALID;
}

lt_dtype lt_dtype_from_ggml(uint32_t ggml_id)
{
    for (int t = 1; t < LT_DTYPE_COUNT; t++) {
        if (dtype_table[t].ggml_id >= 0 && (uint32_t)dtype_table[t].ggml_id == ggml_id)
            return (lt_dtype)t;
    }
    return LT_DTYPE_INVALID;
}

int lt_dtype_ggml_id(lt_dtype t)
{
    const dtype_info *info = dtype_lookup(t);
    return info ? info->ggml_id : -1;
}

uint32_t lt_dtype_block_elems(lt_dtype t)
{
    const dtype_info *info = dtype_lookup(t);
    return info ? info->block_elems : 0;
}

uint32_t lt_dtype_block_bytes(lt_dtype t)
{
    const dtype_info *info = dtype_lookup(t);
    return info ? info->block_bytes : 0;
}

bool lt_dtype_is_float(lt_dtype t)
{
    switch (t) {
    case LT_F16:
    case LT_BF16:
    case LT_F32:
    case LT_F64:
    case LT_F8_E4M3:
    case LT_F8_E5M2:
        return true;
    default:
        return false;
    }
}

bool lt_dtype_nbytes(lt_dtype t, uint64_t n, uint64_t *out_bytes)
{
    const dtype_info *info = dtype_lookup(t);
    if (!info || n % info->block_elems != 0)
        return false;
    uint64_t bytes;
    if (!lti_mul_u64(n / info->block_elems, info->block_bytes, &bytes))
        return false;
    if (out_bytes)
        *out_bytes = bytes;
    return true;
}

/* ------------------------------------------------------------------ */
/* Bit access                                                          */
/* ------------------------------------------------------------------ */

static uint32_t f32_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static float f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Little-endian loads and stores byte by byte, so that the file byte order
 * holds on any host; compilers turn these into plain moves on x86/ARM. */
static uint16_t load_le16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p)
{
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static void store_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void store_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void store_le64(unsigned char *p, uint64_t v)
{
    store_le32(p, (uint32_t)v);
    store_le32(p + 4, (uint32_t)(v >> 32));
}

/* ------------------------------------------------------------------ */
/* Narrow float formats                                                */
/* ------------------------------------------------------------------ */

#define F32_SIGN 0x80000000u
#define F32_EXP_MASK 0x7F800000u
#define F32_MANT_MASK 0x007FFFFFu
#define F32_MANT_BITS 23
#define F32_BIAS 127

/* A binary format with 1 sign bit, some exponent bits and man_bits
 * mantissa bits, its magnitude codes ordered like the values they encode
 * (true of every IEEE-like format), which is what lets rounding carry from
 * the mantissa into the exponent by plain addition. */
typedef struct narrow_format {
    unsigned man_bits;
    int bias;
    uint32_t sign_bit;
    uint32_t max_finite;    /* largest finite magnitude code            */
    uint32_t overflow_code; /* what larger magnitudes and Inf become: the
                             * Inf code, or the NaN code for E4M3FN     */
    /* NaN output.  quiet_bit != 0: IEEE style, Inf code | quiet bit | the
     * top payload bits of the f32 NaN.  quiet_bit == 0: the fixed nan_code
     * (the F8 types, as torch encodes them). */
    uint32_t quiet_bit;
    uint32_t nan_code;
    /* true: the all-ones exponent holds Inf and NaNs (IEEE); false: only
     * the all-ones magnitude is NaN and there is no Inf (E4M3FN). */
    bool ieee_specials;
} narrow_format;

static const narrow_format fmt_f16 = {10, 15, 0x8000u, 0x7BFFu, 0x7C00u, 0x0200u, 0, true};
static const narrow_format fmt_bf16 = {7, 127, 0x8000u, 0x7F7Fu, 0x7F80u, 0x0040u, 0, true};
static const narrow_format fmt_e5m2 = {2, 15, 0x80u, 0x7Bu, 0x7Cu, 0, 0x7Fu, true};
/* torch.float8_e4m3fn: no Inf, S.1111.111 is NaN, so S.1111.110 = 448 is
 * the maximum and whatever rounds past it is NaN, as torch does. */
static const narrow_format fmt_e4m3 = {3, 7, 0x80u, 0x7Eu, 0x7Fu, 0, 0x7Fu, false};

/* m / 2^shift rounded to nearest, ties to even.  m < 2^24. */
static uint32_t shift_right_rne(uint32_t m, unsigned shift)
{
    if (shift == 0)
        return m;
    if (shift > 25) /* m / 2^shift < 1/2: rounds to 0 */
        return 0;
    uint32_t quotient = m >> shift;
    uint32_t remainder = m & ((UINT32_C(1) << shift) - 1);
    uint32_t half = UINT32_C(1) << (shift - 1);
    /* Written without branches: on real data the outcome is random, and a
     * mispredicted branch per element costs more than the arithmetic. */
    uint32_t round_up = (uint32_t)(remainder > half) | ((uint32_t)(remainder == half) & quotient);
    return quotient + (round_up & 1);
}

/* f32 -> the narrow format, rounding once to nearest-even. */
static uint32_t narrow_encode(float value, const narrow_format *fmt)
{
    uint32_t bits = f32_bits(value);
    uint32_t sign = (bits >> 31) * fmt->sign_bit; /* branch-free: signs are random */
    uint32_t exp_field = (bits & F32_EXP_MASK) >> F32_MANT_BITS;
    uint32_t mant = bits & F32_MANT_MASK;

    if (exp_field == 0xFF) {
        if (mant == 0) /* Inf */
            return sign | fmt->overflow_code;
        if (fmt->quiet_bit)
            return sign | fmt->overflow_code | fmt->quiet_bit |
                   (mant >> (F32_MANT_BITS - fmt->man_bits));
        return sign | fmt->nan_code;
    }

    /* value = significand * 2^(exponent - 23) with significand < 2^24 */
    int exponent;
    uint32_t significand;
    if (exp_field == 0) {
        exponent = 1 - F32_BIAS;
        significand = mant;
    } else {
        exponent = (int)exp_field - F32_BIAS;
        significand = mant | (UINT32_C(1) << F32_MANT_BITS);
    }

    /* The target's spacing at this exponent is 2^(e - man_bits) where e is
     * the exponent, raised to the minimum normal one for subnormal
     * results.  Counting in that unit, the rounded quotient q of a normal
     * result already carries the implicit bit, so
     *     code = ((e - min_exponent) << man_bits) + q
     * gives the biased exponent and mantissa at once, and a rounding carry
     * (q == 2^(man_bits+1)) or a subnormal rounding up to the smallest
     * normal moves into the exponent field by itself. */
    int min_exponent = 1 - fmt->bias;
    int target_exponent = exponent > min_exponent ? exponent : min_exponent;
    unsigned shift = (unsigned)(F32_MANT_BITS - (int)fmt->man_bits + (target_exponent - exponent));
    uint32_t quotient = shift_right_rne(significand, shift);
    uint32_t code = ((uint32_t)(target_exponent - min_exponent) << fmt->man_bits) + quotient;

    if (code > fmt->max_finite)
        return sign | fmt->overflow_code;
    return sign | code;
}

/* The narrow format -> f32, exactly.  NaN payloads are widened bit for
 * bit (a signaling NaN stays signaling), like numpy and torch do.  The
 * narrow formats decoded here (F16, the F8 types) have all their values,
 * subnormals included, inside f32's normal range. */
static float narrow_decode(uint32_t code, const narrow_format *fmt)
{
    uint32_t sign = (uint32_t)((code & fmt->sign_bit) != 0) << 31; /* branch-free */
    uint32_t magnitude = code & (fmt->sign_bit - 1);
    uint32_t mant_mask = (UINT32_C(1) << fmt->man_bits) - 1;
    uint32_t exp_field = magnitude >> fmt->man_bits;
    uint32_t mant = magnitude & mant_mask;
    unsigned widen = F32_MANT_BITS - fmt->man_bits;

    bool is_special = fmt->ieee_specials ? magnitude >= fmt->overflow_code
                                         : magnitude == fmt->nan_code;
    if (is_special)
        return f32_from_bits(sign | F32_EXP_MASK | mant << widen);

    if (exp_field == 0) {
        if (mant == 0)
            return f32_from_bits(sign);
        /* Subnormal: shift the leading one up to the implicit position. */
        int exponent = 1 - fmt->bias;
        while (!(mant & (mant_mask + 1))) {
            mant <<= 1;
            exponent--;
        }
        mant &= mant_mask;
        return f32_from_bits(sign | (uint32_t)(exponent + F32_BIAS) << F32_MANT_BITS |
                             mant << widen);
    }
    uint32_t f32_exp = (uint32_t)((int)exp_field - fmt->bias + F32_BIAS);
    return f32_from_bits(sign | f32_exp << F32_MANT_BITS | mant << widen);
}

float lt_f16_to_f32(uint16_t h) { return narrow_decode(h, &fmt_f16); }
uint16_t lt_f32_to_f16(float f) { return (uint16_t)narrow_encode(f, &fmt_f16); }

/* BF16 is the top half of an f32 by definition, subnormals included (they
 * map onto f32 subnormals, which narrow_decode does not produce). */
float lt_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }
uint16_t lt_f32_to_bf16(float f) { return (uint16_t)narrow_encode(f, &fmt_bf16); }

float lt_f8e4m3_to_f32(uint8_t v) { return narrow_decode(v, &fmt_e4m3); }
uint8_t lt_f32_to_f8e4m3(float f) { return (uint8_t)narrow_encode(f, &fmt_e4m3); }

float lt_f8e5m2_to_f32(uint8_t v) { return narrow_decode(v, &fmt_e5m2); }
uint8_t lt_f32_to_f8e5m2(float f) { return (uint8_t)narrow_encode(f, &fmt_e5m2); }

/* ------------------------------------------------------------------ */
/* Array conversions                                                   */
/* ------------------------------------------------------------------ */

static double f64_from_bits(uint64_t bits)
{
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static uint64_t f64_bits(double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    return bits;
}

lt_status lt_convert_to_f32(lt_dtype src_type, const void *src, float *dst, size_t n)
{
    const unsigned char *in = src;
    switch (src_type) {
    case LT_F32:
        for (size_t i = 0; i < n; i++)
            dst[i] = f32_from_bits(load_le32(in + 4 * i));
        return LT_OK;
    case LT_F64:
        /* A C cast rounds to nearest-even in the default rounding mode,
         * the only one the library runs in. */
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)f64_from_bits(load_le64(in + 8 * i));
        return LT_OK;
    case LT_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = lt_f16_to_f32(load_le16(in + 2 * i));
        return LT_OK;
    case LT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = lt_bf16_to_f32(load_le16(in + 2 * i));
        return LT_OK;
    case LT_F8_E4M3:
        for (size_t i = 0; i < n; i++)
            dst[i] = lt_f8e4m3_to_f32(in[i]);
        return LT_OK;
    case LT_F8_E5M2:
        for (size_t i = 0; i < n; i++)
            dst[i] = lt_f8e5m2_to_f32(in[i]);
        return LT_OK;
    default:
        return LT_ERR_UNSUPPORTED;
    }
}

lt_status lt_convert_from_f32(lt_dtype dst_type, const float *src, void *dst, size_t n)
{
    unsigned char *out = dst;
    switch (dst_type) {
    case LT_F32:
        for (size_t i = 0; i < n; i++)
            store_le32(out + 4 * i, f32_bits(src[i]));
        return LT_OK;
    case LT_F64:
        for (size_t i = 0; i < n; i++)
            store_le64(out + 8 * i, f64_bits((double)src[i]));
        return LT_OK;
    case LT_F16:
        for (size_t i = 0; i < n; i++)
            store_le16(out + 2 * i, lt_f32_to_f16(src[i]));
        return LT_OK;
    case LT_BF16:
        for (size_t i = 0; i < n; i++)
            store_le16(out + 2 * i, lt_f32_to_bf16(src[i]));
        return LT_OK;
    case LT_F8_E4M3:
        for (size_t i = 0; i < n; i++)
            out[i] = lt_f32_to_f8e4m3(src[i]);
        return LT_OK;
    case LT_F8_E5M2:
        for (size_t i = 0; i < n; i++)
            out[i] = lt_f32_to_f8e5m2(src[i]);
        return LT_OK;
    default:
        return LT_ERR_UNSUPPORTED;
    }
}

bool lt_dtype_is_numeric(lt_dtype t)
{
    switch (t) {
    case LT_Q4_0: case LT_Q4_1: case LT_Q5_0: case LT_Q5_1: case LT_Q8_0:
    case LT_Q2_K: case LT_Q3_K: case LT_Q4_K: case LT_Q5_K: case LT_Q6_K:
        return true;
    default:
        return lt_dtype_is_float(t);
    }
}

/* Block types go through f32 one block at a time. */
static lt_status blocks_to_f64(lt_dtype t, const unsigned char *in, double *dst, size_t n)
{
    float chunk[256];
    size_t per = lt_dtype_block_elems(t), bytes = lt_dtype_block_bytes(t);
    if (per == 0 || n % per != 0 || per > 256)
        return LT_ERR_USAGE;
    for (size_t done = 0; done < n; done += per, in += bytes) {
        lt_status s = lt_dequantize_row(t, in, chunk, per);
        if (s != LT_OK)
            return s;
        for (size_t i = 0; i < per; i++)
            dst[done + i] = chunk[i];
    }
    return LT_OK;
}

/* Whole blocks, up to 256 values a call (blocks are independent, and the
 * 32-element types quantize eight blocks at a time). */
static lt_status f64_to_blocks(lt_dtype t, const double *src, unsigned char *out, size_t n)
{
    float chunk[256];
    size_t per = lt_dtype_block_elems(t), bytes = lt_dtype_block_bytes(t);
    if (per == 0 || n % per != 0 || per > 256)
        return LT_ERR_USAGE;
    const size_t step = 256 / per * per;
    for (size_t done = 0; done < n; done += step) {
        size_t m = n - done < step ? n - done : step;
        for (size_t i = 0; i < m; i++)
            chunk[i] = (float)src[done + i];
        lt_status s = lt_quantize_row(t, chunk, out + done / per * bytes, m);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}

/* The merge kernel's conversions, built for AVX2 and baseline x86-64
 * (chosen at load time): the same IEEE operations either way, so the
 * same bytes. */
#define LT_CONVERT_CLONES LT_TARGET_CLONES /* core.h */

/* (static, so the clones' resolver stays internal to the library) */
LT_CONVERT_CLONES
static lt_status convert_to_f64(lt_dtype src_type, const void *src, double *dst, size_t n)
{
    const unsigned char *in = src;
    float chunk[256];
    if (lt_dtype_block_elems(src_type) > 1)
        return blocks_to_f64(src_type, in, dst, n);
    if (src_type == LT_F64) {
        for (size_t i = 0; i < n; i++)
            dst[i] = f64_from_bits(load_le64(in + 8 * i));
        return LT_OK;
    }
    /* The merge kernel's hot paths: exact values without the generic
     * decoder.  (NaN payloads may be quieted here; values are what count.) */
    if (src_type == LT_BF16) {
        for (size_t i = 0; i < n; i++)
            dst[i] = f32_from_bits((uint32_t)load_le16(in + 2 * i) << 16);
        return LT_OK;
    }
    if (src_type == LT_F16) {
        /* branch-free, so it vectorizes: normal halves rebias the exponent
         * (+112), Inf/NaN move to the f32 all-ones exponent, subnormals
         * are their mantissa times 2^-24 (exact); the sign is or-ed in */
        for (size_t i = 0; i < n; i++) {
            uint16_t h16;
            memcpy(&h16, in + 2 * i, 2);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            h16 = (uint16_t)(h16 << 8 | h16 >> 8);
#endif
            uint32_t h = h16, ax = h & 0x7FFFu, e = ax >> 10;
            uint32_t normal = (ax << 13) + (e == 31 ? 0x70000000u : 0x38000000u);
            uint32_t subnormal = f32_bits((float)ax * 0x1p-24f);
            uint32_t bits = (e == 0 ? subnormal : normal) | (h & 0x8000u) << 16;
            dst[i] = (double)f32_from_bits(bits);
        }
        return LT_OK;
    }
    if (!lt_dtype_is_float(src_type))
        return LT_ERR_UNSUPPORTED;
    size_t elem = lt_dtype_block_bytes(src_type);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < 256 ? n - done : 256;
        lt_convert_to_f32(src_type, in + done * elem, chunk, m);
        for (size_t i = 0; i < m; i++)
            dst[done + i] = chunk[i];
        done += m;
    }
    return LT_OK;
}

/* double -> float rounded to odd: truncated toward zero, lowest bit set when
 * inexact.  Rounding such a float again to a format of at most 22
 * significant bits equals rounding the double directly (the f32 keeps two
 * more bits than the target plus a sticky bit), so F16/BF16/F8 results are
 * rounded once. */
static float f32_round_to_odd(double d)
{
    float f = (float)d;
    if (d != d || (double)f == d)
        return f;
    if (f - f != 0) /* overflowed to Inf: truncation gives +-FLT_MAX (odd) */
        return d < 0 ? -FLT_MAX : FLT_MAX;
    uint32_t bits = f32_bits(f);
    if (fabs((double)f) > fabs(d))
        bits -= 1; /* one step toward zero: f was rounded away from it */
    return f32_from_bits(bits | 1u);
}

/* f32_round_to_odd without branches, as bits, for the vectorized paths:
 * an overflow to Inf steps back to FLT_MAX by the same "one step toward
 * zero"; NaN stays NaN. */
static inline uint32_t f32_bits_round_to_odd(double d)
{
    float f = (float)d;
    double back = f;
    uint32_t bits = f32_bits(f);
    bits -= (uint32_t)(fabs(back) > fabs(d));
    return bits | (uint32_t)(back != d);
}

LT_CONVERT_CLONES
static lt_status convert_from_f64(lt_dtype dst_type, const double *src, void *dst, size_t n)
{
    unsigned char *out = dst;
    float chunk[256];
    if (dst_type == LT_F64) {
        for (size_t i = 0; i < n; i++)
            store_le64(out + 8 * i, f64_bits(src[i]));
        return LT_OK;
    }
    if (lt_dtype_block_elems(dst_type) > 1)
        return f64_to_blocks(dst_type, src, out, n);
    if (!lt_dtype_is_float(dst_type))
        return LT_ERR_UNSUPPORTED;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (dst_type == LT_BF16 && (uintptr_t)dst % sizeof(uint16_t) == 0) {
        /* The merge kernel's output path, written without branches so the
         * compiler vectorizes it: round-to-odd f32, then round to nearest
         * even on the top 16 bits, NaN kept quiet. */
        uint16_t *restrict halves = (uint16_t *)dst;
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = f32_bits_round_to_odd(src[i]);
            uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
            uint32_t quiet_nan = (bits >> 16) | 0x40u;
            halves[i] = (uint16_t)((bits & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded);
        }
        return LT_OK;
    }
    if (dst_type == LT_F16 && (uintptr_t)dst % sizeof(uint16_t) == 0) {
        /* The same for F16: round-to-odd f32, then RNE to half.  Half
         * subnormals come from adding 0.5f, whose ulp is the subnormal
         * quantum 2^-24, so the FPU's own round-to-nearest-even does it. */
        uint16_t *restrict halves = (uint16_t *)dst;
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = f32_bits_round_to_odd(src[i]);
            uint32_t sign = (bits >> 16) & 0x8000u, ax = bits & 0x7FFFFFFFu;
            uint32_t subnormal = f32_bits(f32_from_bits(ax) + 0.5f) - 0x3F000000u;
            uint32_t normal = (ax - 0x38000000u + 0xFFFu + ((ax >> 13) & 1u)) >> 13;
            uint32_t h = ax < 0x38800000u ? subnormal : normal;
            h = ax >= 0x477FF000u ? 0x7C00u : h;                        /* rounds past 65504 */
            h = ax > 0x7F800000u ? 0x7E00u | ((ax >> 13) & 0x3FFu) : h; /* NaN stays quiet NaN */
            halves[i] = (uint16_t)(sign | h);
        }
        return LT_OK;
    }
#endif
    size_t elem = lt_dtype_block_bytes(dst_type);
    for (size_t done = 0; done < n;) {
        size_t m = n - done < 256 ? n - done : 256;
        for (size_t i = 0; i < m; i++)
            chunk[i] = dst_type == LT_F32 ? (float)src[done + i] : f32_round_to_odd(src[done + i]);
        lt_convert_from_f32(dst_type, chunk, out + done * elem, m);
        done += m;
    }
    return LT_OK;
}

lt_status lt_convert_to_f64(lt_dtype src_type, const void *src, double *dst, size_t n)
{
    return convert_to_f64(src_type, src, dst, n);
}

lt_status lt_convert_from_f64(lt_dtype dst_type, const double *src, void *dst, size_t n)
{
    return convert_from_f64(dst_type, src, dst, n);
}
