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

#include "core.h"

#define LTI_QK 32    /* elements of a Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 block */
#define LTI_QK_K 256 /* elements of a K-quant super-block                    */

/* Read a little-endian f16 at p / write f as one (rounded to nearest even). */
float lti_half_at(const unsigned char *p);
void lti_put_half(unsigned char *p, float f);

/* Scale and min (6 bits each) of sub-block j (0..7) of Q4_K / Q5_K from
 * their 12 packed bytes q. */
void lti_k4_scale_min(const unsigned char *q, int j, unsigned *scale, unsigned *min);

void lti_quant_q2_k(const float *x, unsigned char *block);
void lti_quant_q3_k(const float *x, unsigned char *block);
void lti_quant_q4_k(const float *x, unsigned char *block);
void lti_quant_q5_k(const float *x, unsigned char *block);
void lti_quant_q6_k(const float *x, unsigned char *block);

/* ---- eight lanes (GCC/clang vector extensions) ----
 * Lane j runs block (or sub-block) j's scalar float operations in ggml's
 * order, so the results are the same bits while the lanes hide each
 * other's latency; branches become per-lane selects (work a lane would
 * have skipped is done and discarded: no lane's value reaches another,
 * and -fno-trapping-math).  On baseline x86-64 each operation is two SSE
 * instructions; LT_LANES_CLONES adds an AVX2 build chosen at load time
 * (the same IEEE operations lane by lane, nothing fused under
 * -ffp-contract=off, so the same bytes). */
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) vf8 splat(float v) { return (vf8){v, v, v, v, v, v, v, v}; }
static inline __attribute__((always_inline)) vi8 splat_i(int32_t v) { return (vi8){v, v, v, v, v, v, v, v}; }

/* mask ? a : b, mask lanes all ones or all zeros (a vector comparison) */
static inline __attribute__((always_inline)) vf8 select_f(vi8 mask, vf8 a, vf8 b) { return (vf8)((mask & (vi8)a) | (~mask & (vi8)b)); }
static inline __attribute__((always_inline)) vi8 select_i(vi8 mask, vi8 a, vi8 b) { return (mask & a) | (~mask & b); }

static inline __attribute__((always_inline)) vf8 fabs_x8(vf8 v) { return (vf8)((vi8)v & splat_i(0x7fffffff)); }

/* Element i of sub-blocks 0..7 (each n long, from x) into lane j of
 * out[i], for i < n; the rest of out[0..31] zero. */
static inline __attribute__((always_inline)) void to_lanes(int n, const float *x, vf8 *out)
{
    for (int i = 0; i < 32; i++)
        out[i] = i >= n ? splat(0)
                        : (vf8){x[i], x[n + i], x[2 * n + i], x[3 * n + i], x[4 * n + i], x[5 * n + i],
                                x[6 * n + i], x[7 * n + i]};
}

/* The lane functions are built for AVX2 and for baseline x86-64, chosen at
 * load time; the same IEEE operations lane by lane either way (nothing is
 * fused: -ffp-contract=off), so the same bytes. */
#define LT_LANES_CLONES LT_TARGET_CLONES /* core.h */

#endif
