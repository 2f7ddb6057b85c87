/*
 * quant_k.c - packing f32 into ggml's K-quant super-blocks (Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K) exactly as ggml's reference quantizers do.
 *
 * Source of every rule: ggml/src/ggml-quants.c of ggml-org/ggml (commit
 * d99724f2b141fed9e1a9f402213506c081433465, 2026-08-21): nearest_int,
 * make_qx_quants, make_q3_quants, make_qkx2_quants and
 * quantize_row_{q2,q3,q4,q5,q6}_K_ref (what ggml_quantize_chunk and so
 * llama-quantize run when no importance matrix is given).  The block
 * layouts are the ones lib/quant.c's dequantizers read.
 *
 * Bit-exactness.  The searches below compare float sums, so a result
 * depends on every rounding: each expression is evaluated with the same
 * float operations in the same order as ggml's C (written out with
 * explicit casts where C's usual conversions do it implicitly), and this
 * file is compiled with -ffp-contract=off.  ggml builds its reference
 * quantizers in libggml-base with -O3 -std=gnu11 and no -march flag: GNU
 * C permits contraction, but baseline x86-64 has no FMA instruction, so an
 * x86-64 build rounds every product and sum separately, as we do (checked
 * against such a build; see testdata/gguf_quants/README.md).  Builds whose
 * baseline has FMA (aarch64, or x86-64 with -march=native forced onto
 * ggml-base) may fuse some products into sums and can differ from both in
 * rare last-bit cases.  No sum is reassociated: the searches run eight
 * sub-blocks side by side in vector lanes (quant.h), each lane doing its
 * own sub-block's operations in ggml's order.
 */
#include <math.h>
#include <string.h>

#include "quant.h"

/* Values below this magnitude count as zero (ggml-quants.c GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/*
 * ggml's nearest_int: adding 1.5 * 2^23 leaves round-to-nearest-even of
 * the value in the low mantissa bits (exact for |f| < 2^22, which ggml
 * asserts; outside that, and for NaN, it yields the same defined bits as
 * ggml's release build, which is what we reproduce).
 */
static inline int nearest_int(float f)
{
    float biased = f + 12582912.f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

/* ------------------------------------------------------------------ */
/* Scale searches                                                       */
/* ------------------------------------------------------------------ */

/* The searches run on eight sub-blocks at once, one per lane (quant.h):
 * the sequential sums stay sequential within a lane. */

/* nearest_int lane by lane, clamped to lo..hi */
static inline __attribute__((always_inline)) vi8 clamped_x8(vf8 f, int lo, int hi)
{
    vi8 l = ((vi8)(f + splat(12582912.f)) & splat_i(0x007fffff)) - splat_i(0x00400000);
    l = select_i(l < lo, splat_i(lo), l);
    return select_i(l > hi, splat_i(hi), l);
}
#define level_x8(f, nmax) clamped_x8(f, 0, nmax)

/*
 * make_qkx2_quants, lane j = one sub-block: levels L in 0..nmax for x ~
 * scale * L - min_out, min_out >= 0.  x[i], w[i]: element i of each
 * sub-block (n elements, n <= 32).  First guess: the grid spanning
 * [min(x, 0), max x]; then nstep + 1 trial grids with nmax + rmin +
 * rdelta * k steps over the current [min, max] (min moves when a trial
 * wins), each refit by weighted least squares for scale and offset (offset
 * clamped to <= 0); the trial with the smallest weighted error (absolute
 * if use_abs, else squared) wins, ties keep the earlier one.  A sub-block
 * with max == min (after min is raised to 0) gets L = 0, scale 0.
 */
static inline __attribute__((always_inline)) void
fit_scale_and_min_x8(int n, int nmax, const vf8 *x, const vf8 *w, vi8 *L, vf8 *scale_out, vf8 *min_out,
                     float rmin, float rdelta, int nstep, int use_abs)
{
    vi8 trial[32];
    vf8 min = x[0], max = x[0];
    vf8 sum_w = w[0];
    vf8 sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        min = select_f(x[i] < min, x[i], min);
        max = select_f(x[i] > max, x[i], max);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    min = select_f(min > 0, splat(0), min);
    const vi8 flat = max == min;
    const vf8 flat_min = min;
    vf8 iscale = splat((float)nmax) / (max - min);
    vf8 scale = splat(1) / iscale;
    vf8 best_error = splat(0);
    for (int i = 0; i < n; i++) {
        vf8 diff = scale * __builtin_convertvector(level_x8(iscale * (x[i] - min), nmax), vf8) + min - x[i];
        diff = use_abs ? fabs_x8(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    /* the levels of the best grid so far are level_x8(best_iscale * (x -
     * best_offset)): kept as those two, the levels made once at the end */
    vf8 best_iscale = iscale, best_offset = min;
    for (int step = 0; step <= nstep; step++) {
        iscale = splat(rmin + rdelta * (float)step + (float)nmax) / (max - min);
        vf8 sum_l = splat(0), sum_l2 = splat(0), sum_xl = splat(0);
        for (int i = 0; i < n; i++) {
            trial[i] = level_x8(iscale * (x[i] - min), nmax);
            vf8 l = __builtin_convertvector(trial[i], vf8);
            vf8 wl = w[i] * l;
            sum_l += wl;
            sum_l2 += wl * l;
            sum_xl += wl * x[i];
        }
        vf8 D = sum_w * sum_l2 - sum_l * sum_l;
        vf8 this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        vf8 this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const vi8 clamp = this_min > 0;
        this_min = select_f(clamp, splat(0), this_min);
        this_scale = select_f(clamp, sum_xl / sum_l2, this_scale);
        vf8 error = splat(0);
        for (int i = 0; i < n; i++) {
            vf8 diff = this_scale * __builtin_convertvector(trial[i], vf8) + this_min - x[i];
            diff = use_abs ? fabs_x8(diff) : diff * diff;
            error += w[i] * diff;
        }
        const vi8 better = (D > 0) & (error < best_error);
        best_iscale = select_f(better, iscale, best_iscale);
        best_offset = select_f(better, min, best_offset);
        best_error = select_f(better, error, best_error);
        scale = select_f(better, this_scale, scale);
        min = select_f(better, this_min, min);
    }
    for (int i = 0; i < n; i++)
        L[i] = level_x8(best_iscale * (x[i] - best_offset), nmax) & ~flat;
    *scale_out = select_f(flat, splat(0), scale);
    *min_out = -select_f(flat, flat_min, min);
}

/* fit_scale_and_min_x8 on sub-blocks j = 0..7 of n elements each (x + n*j,
 * w + n*j), in and out of the lane layout. */
LT_LANES_CLONES
static void fit_eight_sub_blocks(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scales,
                                 float *mins, float rmin, float rdelta, int nstep, int use_abs)
{
    vf8 xt[32], wt[32], scale, min;
    vi8 Lt[32];
    to_lanes(n, x, xt);
    to_lanes(n, w, wt);
    fit_scale_and_min_x8(n, nmax, xt, wt, Lt, &scale, &min, rmin, rdelta, nstep, use_abs);
    for (int j = 0; j < 8; j++) {
        scales[j] = scale[j];
        mins[j] = min[j];
        for (int i = 0; i < n; i++)
            L[n * j + i] = (uint8_t)Lt[i][j];
    }
}

/*
 * make_qx_quants with rmse_type 1 (weights x^2), as Q6_K calls it, for
 * eight sub-blocks of 16 in the lanes (as fit_scale_and_min_x8): symmetric
 * levels l in -nmax..nmax-1 (stored as l + nmax) for x ~ scale * l.  The
 * grid through the value of largest magnitude (the first one on ties) at
 * level -nmax is refit by weighted least squares, then 18 neighbouring
 * grids (nmax + 0.1 k, k = -9..9, k != 0) replace it when they explain
 * more of x (sumlx^2 / suml2 larger).  A sub-block below GROUP_MAX_EPS
 * gets L = 0, scale 0.
 */
/* The first grid of make_qx_quants / make_q3_quants for eight sub-blocks
 * of 16 in the lanes: the grid through the value of largest magnitude
 * (the first one on ties) at level -nmax; raw levels l in -nmax..nmax-1
 * into L, sums sumlx = sum w x l and suml2 = sum w l^2 with w = x^2.
 * *max_out is that value; returns the mask of the sub-blocks below
 * GROUP_MAX_EPS (their other results are meaningless). */
static inline __attribute__((always_inline)) vi8 symmetric_first_grid_x8(const vf8 *x, int nmax, vi8 *L,
                                                                         vf8 *max_out, vf8 *sumlx_out,
                                                                         vf8 *suml2_out)
{
    vf8 max = splat(0), amax = splat(0);
    for (int i = 0; i < 16; i++) {
        vf8 ax = fabs_x8(x[i]);
        vi8 larger = ax > amax;
        amax = select_f(larger, ax, amax);
        max = select_f(larger, x[i], max);
    }
    vf8 iscale = splat((float)-nmax) / max;
    vf8 sumlx = splat(0), suml2 = splat(0);
    for (int i = 0; i < 16; i++) {
        L[i] = clamped_x8(iscale * x[i], -nmax, nmax - 1);
        vf8 l = __builtin_convertvector(L[i], vf8);
        vf8 w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    *max_out = max;
    *sumlx_out = sumlx;
    *suml2_out = suml2;
    return amax < splat(GROUP_MAX_EPS);
}

/* Lanes back to sub-blocks: L[16 j + i] = Lt[i][j] + nmax, or 0 in a
 * sub-block below GROUP_MAX_EPS; scales[j] likewise. */
static inline __attribute__((always_inline)) void symmetric_from_lanes(const vi8 *Lt, vf8 scale, vi8 zero,
                                                                      int nmax, int8_t *L, float *scales)
{
    for (int j = 0; j < 8; j++) {
        scales[j] = zero[j] ? 0.f : scale[j];
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(zero[j] ? 0 : Lt[i][j] + nmax);
    }
}

/*
 * make_qx_quants with rmse_type 1 (weights x^2), as Q6_K calls it, for
 * eight sub-blocks of 16 (x_rows, 128 values) in the lanes: symmetric
 * levels l in -nmax..nmax-1 (stored as l + nmax) for x ~ scale * l.  The
 * first grid is refit by weighted least squares, then 18 neighbouring
 * grids (nmax + 0.1 k, k = -9..9, k != 0) replace it when they explain
 * more of x (sumlx^2 / suml2 larger).
 */
LT_LANES_CLONES
static void fit_symmetric_eight(const float *x_rows, int nmax, int8_t *L, float *scales)
{
    vf8 x[32], max, sumlx, suml2;
    vi8 Lt[16];
    to_lanes(16, x_rows, x);
    const vi8 zero = symmetric_first_grid_x8(x, nmax, Lt, &max, &sumlx, &suml2);
    vf8 best_iscale = splat((float)-nmax) / max;
    vf8 scale = select_f(suml2 != 0, sumlx / suml2, splat(0));
    vf8 best = scale * sumlx;
    for (int k = -9; k <= 9; k++) {
        if (k == 0)
            continue;
        vf8 iscale = splat(-((float)nmax + 0.1f * (float)k)) / max;
        sumlx = suml2 = splat(0);
        for (int i = 0; i < 16; i++) {
            vf8 l = __builtin_convertvector(clamped_x8(iscale * x[i], -nmax, nmax - 1), vf8);
            vf8 w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        const vi8 better = (suml2 > 0) & (sumlx * sumlx > best * suml2);
        vf8 this_scale = sumlx / suml2;
        best_iscale = select_f(better, iscale, best_iscale);
        scale = select_f(better, this_scale, scale);
        best = select_f(better, this_scale * sumlx, best);
    }
    for (int i = 0; i < 16; i++)
        Lt[i] = clamped_x8(best_iscale * x[i], -nmax, nmax - 1);
    symmetric_from_lanes(Lt, scale, zero, nmax, L, scales);
}

/*
 * make_q3_quants with do_rmse, as Q3_K calls it, for eight sub-blocks of
 * 16 in the lanes: from the first grid, up to 5 passes of coordinate
 * descent: each level in turn moves to the one the others' fit suggests
 * when that raises sumlx^2 / suml2 (weights x^2).  ggml stops a sub-block
 * after a pass without change; running such a pass again changes nothing
 * (the same state gives the same decisions), so the lanes stop together.
 */
LT_LANES_CLONES
static void fit_symmetric_descent_eight(const float *x_rows, int nmax, int8_t *L, float *scales)
{
    vf8 x[32], max, sumlx, suml2;
    vi8 Lt[16];
    to_lanes(16, x_rows, x);
    const vi8 zero = symmetric_first_grid_x8(x, nmax, Lt, &max, &sumlx, &suml2);
    for (int pass = 0; pass < 5; pass++) {
        vi8 changed = splat_i(0);
        for (int i = 0; i < 16; i++) {
            vf8 w = x[i] * x[i];
            vf8 l = __builtin_convertvector(Lt[i], vf8);
            vf8 slx = sumlx - w * x[i] * l;
            vf8 sl2 = suml2 - w * l * l;
            vi8 new_l = clamped_x8(x[i] * sl2 / slx, -nmax, nmax - 1);
            vf8 nl = __builtin_convertvector(new_l, vf8);
            slx += w * x[i] * nl;
            sl2 += w * nl * nl;
            const vi8 take = (sumlx - w * x[i] * l > 0) & (new_l != Lt[i]) & (sl2 > 0) &
                             (slx * slx * suml2 > sumlx * sumlx * sl2);
            Lt[i] = select_i(take, new_l, Lt[i]);
            sumlx = select_f(take, slx, sumlx);
            suml2 = select_f(take, sl2, suml2);
            changed |= take;
        }
        int any = 0;
        for (int j = 0; j < 8; j++)
            any |= changed[j];
        if (!any)
            break;
    }
    symmetric_from_lanes(Lt, select_f(suml2 > 0, sumlx / suml2, splat(0)), zero, nmax, L, scales);
}

/* The final levels of a sub-block from its stored scale d (and offset dm
 * where the type has a min): out[i] = clamp(nearest_int((x[i] + dm) / d),
 * lo, hi) + add, or without the "+ dm" when with_offset is 0 (ggml
 * divides x itself there).  n is a multiple of 8; eight at a time, each
 * lane the same division and rounding as ggml's scalar loop. */
static inline __attribute__((always_inline)) void levels_from_scale(const float *x, int n, int with_offset,
                                                                   float dm, float d, int lo, int hi,
                                                                   int add, unsigned char *out)
{
    for (int i = 0; i < n; i += 8) {
        vf8 v;
        memcpy(&v, x + i, sizeof v);
        if (with_offset)
            v = v + splat(dm);
        vi8 l = clamped_x8(v / splat(d), lo, hi) + splat_i(add);
        for (int k = 0; k < 8; k++)
            out[i + k] = (unsigned char)l[k];
    }
}

/* ------------------------------------------------------------------ */
/* Packing shared by several types                                      */
/* ------------------------------------------------------------------ */

/* Q2_K / Q3_K low bits: in each 128-element half, byte l of its 32 holds
 * elements l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7. */
static void pack_2bit(const uint8_t *L, unsigned char *qs)
{
    for (int half = 0; half < LTI_QK_K; half += 128)
        for (int l = 0; l < 32; l++)
            qs[half / 4 + l] = (unsigned char)(L[half + l] | L[half + l + 32] << 2 |
                                               L[half + l + 64] << 4 | L[half + l + 96] << 6);
}

/* Q4_K / Q5_K: the 8 six-bit scales and mins into 12 bytes (the layout
 * lti_k4_scale_min reads; quantize_row_q4_K_ref's packing). */
static void pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, unsigned char *q)
{
    for (int j = 0; j < 4; j++) {
        q[j] = ls[j];
        q[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; j++) {
        q[j + 4] = (unsigned char)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
        q[j - 4] |= (unsigned char)((ls[j] >> 4) << 6);
        q[j] |= (unsigned char)((lm[j] >> 4) << 6);
    }
}

/*
 * Q4_K and Q5_K (quantize_row_q4_K_ref / q5_K_ref): per 32-element
 * sub-block, weights av + |x| (av = rms of the sub-block) and an affine
 * fit with nmax levels; the scales and mins are quantized to 6 bits
 * against their maxima (d = max / 63, dmin = max min / 63, both f16), and
 * the levels are recomputed from the stored scales, except in sub-blocks
 * whose stored scale is zero, which keep the fit's levels.
 */
static void quant_k4_family(const float *x, int nmax, float rmin, int nstep, unsigned char *d_dmin,
                            unsigned char *packed_scales, uint8_t *L)
{
    float scales[8], mins[8], weights[LTI_QK_K];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[32 * j + l] = av_x + fabsf(xs[l]);
    }
    fit_eight_sub_blocks(32, nmax, x, weights, L, scales, mins, rmin, 0.1f, nstep, 0);
    for (int j = 0; j < 8; j++) {
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        /* ggml stores nearest_int into a uint8_t, then caps at 63 */
        ls[j] = (uint8_t)imin(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)imin(63, (uint8_t)nearest_int(inv_min * mins[j]));
    }
    pack_scale_min_k4(ls, lm, packed_scales);
    lti_put_half(d_dmin, max_scale / 63.f);
    lti_put_half(d_dmin + 2, max_min / 63.f);
    const float d_all = lti_half_at(d_dmin), dmin_all = lti_half_at(d_dmin + 2);
    for (int j = 0; j < 8; j++) {
        unsigned sc, m;
        lti_k4_scale_min(packed_scales, j, &sc, &m);
        const float d = d_all * (float)sc;
        if (d == 0)
            continue;
        const float dm = dmin_all * (float)m;
        levels_from_scale(x + 32 * j, 32, 1, dm, d, 0, nmax, 0, L + 32 * j);
    }
}

/* ------------------------------------------------------------------ */
/* The five types                                                       */
/* ------------------------------------------------------------------ */

/* Q2_K (quantize_row_q2_K_ref), layout in quant.c: 16 sub-blocks of 16,
 * weights |x|, affine fit with 4 levels and absolute error; 4-bit scales
 * and mins against their maxima (d = max / 15, dmin = max min / 15). */
void lti_quant_q2_k(const float *x, unsigned char *b)
{
    uint8_t L[LTI_QK_K];
    float scales[16], mins[16], weights[LTI_QK_K];
    float max_scale = 0, max_min = 0;
    unsigned char *sc = b, *d_dmin = b + 80;
    for (int i = 0; i < LTI_QK_K; i++)
        weights[i] = fabsf(x[i]);
    for (int half = 0; half < 2; half++)
        fit_eight_sub_blocks(16, 3, x + 128 * half, weights + 128 * half, L + 128 * half, scales + 8 * half,
                             mins + 8 * half, -0.5f, 0.1f, 15, 1);
    for (int j = 0; j < 16; j++) {
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    if (max_scale > 0) {
        float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; j++)
            sc[j] = (unsigned char)nearest_int(iscale * scales[j]);
        lti_put_half(d_dmin, max_scale / 15.f);
    } else {
        memset(sc, 0, 16);
        lti_put_half(d_dmin, 0.f);
    }
    if (max_min > 0) {
        float iscale = 15.f / max_min;
        for (int j = 0; j < 16; j++)
            /* ggml shifts the int; a NaN min (a block whose range
             * overflows f32) makes it negative: shift its bits instead */
            sc[j] |= (unsigned char)((unsigned)nearest_int(iscale * mins[j]) << 4);
        lti_put_half(d_dmin + 2, max_min / 15.f);
    } else {
        lti_put_half(d_dmin + 2, 0.f);
    }
    const float d_all = lti_half_at(d_dmin), dmin_all = lti_half_at(d_dmin + 2);
    for (int j = 0; j < 16; j++) {
        const float d = d_all * (float)(sc[j] & 0xF);
        if (d == 0)
            continue;
        const float dm = dmin_all * (float)(sc[j] >> 4);
        levels_from_scale(x + 16 * j, 16, 1, dm, d, 0, 3, 0, L + 16 * j);
    }
    pack_2bit(L, b + 16);
}

/* Q3_K (quantize_row_q3_K_ref): 16 sub-blocks of 16 with levels -4..3
 * from fit_symmetric_descent; the signed scales become 6-bit values
 * (stored + 32) against the scale of largest magnitude, d = that / -32. */
void lti_quant_q3_k(const float *x, unsigned char *b)
{
    int8_t L[LTI_QK_K];
    float scales[16];
    float max_scale = 0, amax = 0;
    unsigned char *hmask = b, *packed = b + 96;
    fit_symmetric_descent_eight(x, 4, L, scales);
    fit_symmetric_descent_eight(x + 128, 4, L + 128, scales + 8);
    for (int j = 0; j < 16; j++) {
        float a = fabsf(scales[j]);
        if (a > amax) {
            amax = a;
            max_scale = scales[j];
        }
    }
    memset(packed, 0, 12);
    if (max_scale != 0) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            /* ggml keeps nearest_int in an int8_t before clamping */
            int l = imax(-32, imin(31, (int8_t)nearest_int(iscale * scales[j]))) + 32;
            if (j < 8)
                packed[j] = (unsigned char)(l & 0xF);
            else
                packed[j - 8] |= (unsigned char)((l & 0xF) << 4);
            packed[8 + j % 4] |= (unsigned char)((l >> 4) << (2 * (j / 4)));
        }
        lti_put_half(b + 108, 1 / iscale);
    } else {
        lti_put_half(b + 108, 0.f);
    }
    const float d_all = lti_half_at(b + 108);
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int s = (low | ((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        const float d = d_all * (float)s;
        if (d == 0)
            continue;
        levels_from_scale(x + 16 * j, 16, 0, 0, d, -4, 3, 4, (unsigned char *)L + 16 * j);
    }
    /* third bit of element 32k + l goes to bit k of hmask[l] */
    memset(hmask, 0, 32);
    uint8_t low2[LTI_QK_K];
    for (int k = 0; k < 8; k++)
        for (int m = 0; m < 32; m++) {
            int high = L[32 * k + m] > 3; /* branch-free: the bits are random */
            hmask[m] |= (unsigned char)(high << k);
            low2[32 * k + m] = (uint8_t)(L[32 * k + m] - 4 * high);
        }
    pack_2bit(low2, b + 32);
}

/* Q4_K (quantize_row_q4_K_ref): 15 levels, 21 trial grids from nmax - 1. */
void lti_quant_q4_k(const float *x, unsigned char *b)
{
    uint8_t L[LTI_QK_K];
    quant_k4_family(x, 15, -1.f, 20, b, b + 4, L);
    unsigned char *q = b + 16;
    for (int j = 0; j < LTI_QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++)
            q[l] = (unsigned char)(L[j + l] | L[j + l + 32] << 4);
}

/* Q5_K (quantize_row_q5_K_ref): 31 levels, 16 trial grids from nmax - 0.5;
 * the fifth bit of element 32k + l is bit k of qh[l]. */
void lti_quant_q5_k(const float *x, unsigned char *b)
{
    uint8_t L[LTI_QK_K];
    quant_k4_family(x, 31, -0.5f, 15, b, b + 4, L);
    unsigned char *qh = b + 16, *ql = b + 48;
    memset(qh, 0, 32);
    for (int j = 0; j < LTI_QK_K; j += 64, ql += 32) {
        const unsigned bit_lo = 1u << (j / 32), bit_hi = bit_lo << 1;
        for (int l = 0; l < 32; l++) {
            int lo = L[j + l], hi = L[j + l + 32];
            if (lo > 15) {
                lo -= 16;
                qh[l] |= (unsigned char)bit_lo;
            }
            if (hi > 15) {
                hi -= 16;
                qh[l] |= (unsigned char)bit_hi;
            }
            ql[l] = (unsigned char)(lo | hi << 4);
        }
    }
}

/* Q6_K (quantize_row_q6_K_ref): 16 sub-blocks of 16 with levels -32..31
 * from fit_symmetric; 8-bit signed scales against the scale of largest
 * magnitude (d = that / -128); a block whose scales are all below
 * GROUP_MAX_EPS is all zero bytes. */
void lti_quant_q6_k(const float *x, unsigned char *b)
{
    int8_t L[LTI_QK_K];
    float scales[16];
    float max_scale = 0, max_abs_scale = 0;
    fit_symmetric_eight(x, 32, L, scales);
    fit_symmetric_eight(x + 128, 32, L + 128, scales + 8);
    for (int j = 0; j < 16; j++) {
        float a = fabsf(scales[j]);
        if (a > max_abs_scale) {
            max_abs_scale = a;
            max_scale = scales[j];
        }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
        memset(b, 0, 210);
        return;
    }
    int8_t *sc = (int8_t *)(b + 192);
    float iscale = -128.f / max_scale;
    lti_put_half(b + 208, 1 / iscale);
    for (int j = 0; j < 16; j++)
        sc[j] = (int8_t)imin(127, nearest_int(iscale * scales[j]));
    const float d_all = lti_half_at(b + 208);
    for (int j = 0; j < 16; j++) {
        const float d = d_all * (float)sc[j];
        if (d == 0)
            continue;
        levels_from_scale(x + 16 * j, 16, 0, 0, d, -32, 31, 32, (unsigned char *)L + 16 * j);
    }
    unsigned char *ql = b, *qh = b + 128;
    for (int j = 0; j < LTI_QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
            ql[l] = (unsigned char)((q1 & 0xF) | (q3 & 0xF) << 4);
            ql[l + 32] = (unsigned char)((q2 & 0xF) | (q4 & 0xF) << 4);
            qh[l] = (unsigned char)((q1 >> 4) | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}
