/*
 * bnb_read.c - reading a bitsandbytes-quantized weight as its dequantized
 * values, a chunk of elements at a time, so a read of any size needs only
 * a fixed amount of memory beyond the caller's buffer.
 *
 * The arithmetic is bitsandbytes' CPU reference (spec/bnb.md, "Values"),
 * in float32, every operation rounded on its own (-ffp-contract=off):
 *   4-bit:   absmax[b] = nested_code[qabsmax[b]] * nested_absmax[b / nbs]
 *                        + nested_offset                    (double quant)
 *            value[e]  = code[nibble(e)] * absmax[e / blocksize]
 *   int8:    value[e]  = ((float)q[e] * SCB[row]) * (float)(1/127 as bnb writes it)
 * then rounded once to the tensor's dtype.
 */
#include <stdlib.h>
#include <string.h>

#include "bnb.h"

/* Elements per chunk of a read: 64 Ki.  A chunk costs three preads, and
 * system calls are dear (4 Ki chunks spent 10% of a merge's time in
 * them); the scratch, about 1 MiB, is allocated once per read, and a
 * merge reads a million elements at a time. */
#define CHUNK_ELEMS ((size_t)1 << 16)

/* Two code values, the products of one packed byte (a vector of two
 * floats: both multiplied by the block's scale at once, each product the
 * same IEEE multiplication as one at a time). */
typedef float float2 __attribute__((vector_size(8)));

/* bitsandbytes multiplies by this Python float; torch rounds it to float32. */
#define INT8_SCALE 7.874015718698502e-3

static lt_status read_floats(lt_source *inner, size_t i, uint64_t first, size_t count, float *dst,
                             lt_error *err)
{
    return lt_source_read_f32(inner, i, first, count, dst, err);
}

/* absmax of blocks [b0, b0 + nb) as float32, dequantizing the nested
 * quantization when there is one.  scratch holds nb bytes. */
static lt_status block_absmax(bnb_impl *impl, const bnb_tensor *q, uint64_t b0, size_t nb,
                              float *absmax, unsigned char *scratch, lt_error *err)
{
    lt_source *inner = impl->inner;
    if (!q->nested)
        return read_floats(inner, q->part[BNB_PART_ABSMAX], b0, nb, absmax, err);
    lt_status s = lt_source_read(inner, q->part[BNB_PART_ABSMAX], b0, scratch, nb, err);
    if (s != LT_OK)
        return s;
    uint64_t nbs = q->nested_blocksize;
    uint64_t n0 = b0 / nbs, n1 = (b0 + nb - 1) / nbs;
    float nested[64];
    for (uint64_t at = n0; at <= n1; at += 64) {
        size_t k = (size_t)(n1 - at + 1 < 64 ? n1 - at + 1 : 64);
        s = read_floats(inner, q->part[BNB_PART_NESTED_ABSMAX], at, k, nested, err);
        if (s != LT_OK)
            return s;
        for (size_t j = 0; j < nb; j++) {
            uint64_t nblock = (b0 + j) / nbs;
            if (nblock < at || nblock >= at + k)
                continue;
            float v = q->nested_code[scratch[j]] * nested[nblock - at];
            absmax[j] = v + q->nested_offset;
        }
    }
    return LT_OK;
}

static lt_status dequantize_4bit(bnb_impl *impl, const bnb_tensor *q, uint64_t first, size_t count,
                                 float *dst, float *absmax, unsigned char *scratch, const float2 *pair,
                                 lt_error *err)
{
    uint64_t bs = q->blocksize;
    uint64_t b0 = first / bs, b1 = (first + count - 1) / bs;
    lt_status s = block_absmax(impl, q, b0, (size_t)(b1 - b0 + 1), absmax, scratch, err);
    if (s != LT_OK)
        return s;
    /* element e lives in byte e / 2: the high nibble when e is even */
    uint64_t byte0 = first / 2, byte1 = (first + count - 1) / 2;
    size_t nbytes = (size_t)(byte1 - byte0 + 1);
    /* read, not borrowed: a chunk's few KiB cost less to copy than a
     * mapping's release (madvise) per chunk */
    const unsigned char *packed = scratch;
    s = lt_source_read(impl->inner, q->part[BNB_PART_WEIGHT], byte0, scratch, nbytes, err);
    if (s != LT_OK)
        return s;
    const float *code = q->code;
    uint64_t e = first, end = first + count;
    while (e < end) {
        uint64_t block_end = (e / bs + 1) * bs;
        if (block_end > end)
            block_end = end;
        float scale = absmax[e / bs - b0];
        /* blocks hold an even count, so only the read's ends split a byte */
        if (e & 1) {
            dst[e - first] = code[packed[e / 2 - byte0] & 15u] * scale;
            e++;
        }
        float *out = dst + (e - first);
        const unsigned char *in = packed + (e / 2 - byte0);
        size_t pairs = (size_t)(block_end - e) / 2;
        const float2 s2 = {scale, scale};
        for (size_t k = 0; k < pairs; k++) {
            float2 v = pair[in[k]] * s2;
            memcpy(out + 2 * k, &v, sizeof v);
        }
        e += 2 * pairs;
        if (e < block_end) {
            dst[e - first] = code[packed[e / 2 - byte0] >> 4] * scale;
            e++;
        }
    }
    return LT_OK;
}

static lt_status dequantize_int8(bnb_impl *impl, const bnb_tensor *q, uint64_t first, size_t count,
                                 float *dst, float *scb, unsigned char *scratch, lt_error *err)
{
    uint64_t r0 = first / q->cols, r1 = (first + count - 1) / q->cols;
    lt_status s = read_floats(impl->inner, q->part[BNB_PART_SCB], r0, (size_t)(r1 - r0 + 1), scb, err);
    if (s != LT_OK)
        return s;
    const signed char *w = (const signed char *)scratch;
    s = lt_source_read(impl->inner, q->part[BNB_PART_WEIGHT], first, scratch, count, err);
    if (s != LT_OK)
        return s;
    const float scale = (float)INT8_SCALE;
    for (size_t j = 0; j < count; j++) {
        float v = (float)w[j] * scb[(first + j) / q->cols - r0];
        dst[j] = v * scale;
    }
    return LT_OK;
}

/* Scratch for one chunk: absmax / SCB floats and packed or int8 bytes. */
typedef struct chunk_scratch {
    float2 pair[256];        /* byte -> its two code values (4-bit)       */
    float *values;           /* CHUNK_ELEMS                               */
    float *scales;           /* CHUNK_ELEMS + 2 (one per block or row)    */
    unsigned char *bytes;    /* CHUNK_ELEMS                               */
} chunk_scratch;

static bool scratch_alloc(chunk_scratch *c)
{
    c->values = malloc(CHUNK_ELEMS * sizeof(float));
    c->scales = malloc((CHUNK_ELEMS + 2) * sizeof(float));
    c->bytes = malloc(CHUNK_ELEMS);
    return c->values && c->scales && c->bytes;
}

static void scratch_free(chunk_scratch *c)
{
    free(c->values);
    free(c->scales);
    free(c->bytes);
}

static lt_status dequantize_chunk(bnb_impl *impl, const bnb_tensor *q, uint64_t first, size_t count,
                                  chunk_scratch *c, lt_error *err)
{
    if (q->kind == BNB_INT8)
        return dequantize_int8(impl, q, first, count, c->values, c->scales, c->bytes, err);
    return dequantize_4bit(impl, q, first, count, c->values, c->scales, c->bytes, c->pair, err);
}

/* float32 -> BF16, rounded to nearest even, as lt_f32_to_bf16 rounds:
 * the carry trick is exact for every finite value and infinity (a value
 * that rounds past the largest finite one becomes infinity); NaNs go
 * through the library's encoder.  A loop the compiler vectorizes, where
 * the general encoder is not. */
static void floats_to_bf16(const float *src, unsigned char *dst, size_t n)
{
    unsigned nan = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        uint32_t h = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
        nan |= (u & 0x7FFFFFFFu) > 0x7F800000u;
        dst[2 * i] = (unsigned char)h;
        dst[2 * i + 1] = (unsigned char)(h >> 8);
    }
    for (size_t i = 0; nan && i < n; i++)
        if (src[i] != src[i]) {
            uint16_t h = lt_f32_to_bf16(src[i]);
            dst[2 * i] = (unsigned char)h;
            dst[2 * i + 1] = (unsigned char)(h >> 8);
        }
}

/* ---- the source ops ---- */

static size_t tensor_index(const lt_source *src, const lt_tensor_info *t)
{
    return (size_t)(t - lt_source_tensor(src, 0));
}

static lt_status bnb_read(lt_source *src, const lt_tensor_info *t, uint64_t off, void *dst, size_t len,
                          lt_error *err)
{
    bnb_impl *impl = src->impl;
    size_t i = tensor_index(src, t);
    if (impl->quant_of[i] < 0)
        return lt_source_read(impl->inner, impl->inner_of[i], off, dst, len, err);
    const bnb_tensor *q = &impl->quants[impl->quant_of[i]];
    size_t es = lt_dtype_block_bytes(q->out);
    uint64_t first = off / es, end = (off + len + es - 1) / es;
    chunk_scratch c = {0};
    /* float -> double is exact, and the double path rounds to F16 (and
     * F32) with vectorized code: the same values as rounding the floats */
    double *wide = q->out == LT_BF16 ? NULL : malloc(CHUNK_ELEMS * sizeof *wide);
    unsigned char *converted = malloc(CHUNK_ELEMS * es);
    if ((q->out != LT_BF16 && !wide) || !converted || !scratch_alloc(&c)) {
        free(wide);
        free(converted);
        scratch_free(&c);
        return lti_fail_nomem(err, src->path);
    }
    if (q->kind != BNB_INT8)
        for (unsigned b = 0; b < 256; b++)
            c.pair[b] = (float2){q->code[b >> 4], q->code[b & 15u]};
    lt_status s = LT_OK;
    for (uint64_t e = first; s == LT_OK && e < end;) {
        size_t n = (size_t)(end - e < CHUNK_ELEMS ? end - e : CHUNK_ELEMS);
        s = dequantize_chunk(impl, q, e, n, &c, err);
        if (s == LT_OK && q->out == LT_BF16) {
            floats_to_bf16(c.values, converted, n);
        } else if (s == LT_OK) {
            for (size_t k = 0; k < n; k++)
                wide[k] = c.values[k];
            s = lt_convert_from_f64(q->out, wide, converted, n);
        }
        if (s != LT_OK)
            break;
        /* the part of [e*es, (e+n)*es) that lies inside [off, off+len) */
        uint64_t lo = e * es > off ? e * es : off, hi = (e + n) * es < off + len ? (e + n) * es : off + len;
        memcpy((unsigned char *)dst + (lo - off), converted + (lo - e * es), (size_t)(hi - lo));
        e += n;
    }
    free(wide);
    free(converted);
    scratch_free(&c);
    return s;
}

static const void *bnb_borrow(lt_source *src, const lt_tensor_info *t, uint64_t off, size_t len)
{
    bnb_impl *impl = src->impl;
    size_t i = tensor_index(src, t);
    return impl->quant_of[i] < 0 ? lti_source_borrow(impl->inner, impl->inner_of[i], off, len) : NULL;
}

static void bnb_release(lt_source *src, const lt_tensor_info *t, const void *p, size_t len)
{
    bnb_impl *impl = src->impl;
    size_t i = tensor_index(src, t);
    if (impl->quant_of[i] < 0)
        lti_source_release(impl->inner, impl->inner_of[i], p, len);
}

static void bnb_close(void *p)
{
    bnb_impl *impl = p;
    if (!impl)
        return;
    lt_source_close(impl->inner);
    free(impl->quant_of);
    free(impl->inner_of);
    free(impl->quants);
    free(impl);
}

const struct lti_source_ops lti_bnb_source_ops = {
    .read = bnb_read, .borrow = bnb_borrow, .release = bnb_release, .close = bnb_close};
