/*
 * quant.h - the block quantizers of lib/quant.c and lib/quant_k.c, one
 * ggml block at a time.  Internal to lib/; the public entry point is
 * lt_quantize_row.
 *
 * Each function reads one block of finite f32 values (32 elements for the
 * Q4_1 / Q5_0 / Q5_1 family, 256 for the K-quants) and writes that type's
 * block bytes, bit for bit as ggml's quantize_row_<type>_ref does on an
 * x86-64 build (see the notes in quant_k.c on float evaluation order).
 */
#ifndef LT_QUANT_H
#define LT_QUANT_H

#include <stdint.h>

#define LTI_QK 32    /* elements of a Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 block */
#define LTI_QK_K 256 /* elements of a K-quant super-block                    */

/* Read a little-endian f16 at p / write f as one (rounded to nearest even). */
float lti_half_at(const unsigned char *p);
void lti_put_half(unsigned char *p, float f);

/* ggml's float -> small integer conversions as x86-64 performs them
 * (cvttss2si: truncation toward zero; NaN and values outside int32 give
 * INT32_MIN), which is what ggml's reference builds do for the casts
 * (int8_t)f and (uint8_t)f.  Only reached with such values when a block's
 * range overflows f32. */
int32_t lti_trunc_x86(float v);

/* Scale and min (6 bits each) of sub-block j (0..7) of Q4_K / Q5_K from
 * their 12 packed bytes q. */
void lti_k4_scale_min(const unsigned char *q, int j, unsigned *scale, unsigned *min);

void lti_quant_q2_k(const float *x, unsigned char *block);
void lti_quant_q3_k(const float *x, unsigned char *block);
void lti_quant_q4_k(const float *x, unsigned char *block);
void lti_quant_q5_k(const float *x, unsigned char *block);
void lti_quant_q6_k(const float *x, unsigned char *block);

#endif
