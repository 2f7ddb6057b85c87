/* merge_fast_kernel.h - the vector merge kernel's body, included by
 * merge_fast.c once per instruction set with KERNEL(name) (a suffix for
 * every name defined here) and LANES (doubles per vector) defined.  The
 * error bound and the test it feeds are explained in merge_fast.c. */

typedef double KERNEL(vd) __attribute__((vector_size(8 * LANES)));
typedef int64_t KERNEL(vl) __attribute__((vector_size(8 * LANES)));
typedef uint64_t KERNEL(vq) __attribute__((vector_size(8 * LANES)));
typedef float KERNEL(vf) __attribute__((vector_size(4 * LANES)));
/* twice LANES floats: the 16-bit outputs' test runs on two vd at once */
typedef float KERNEL(vf2) __attribute__((vector_size(8 * LANES)));
typedef uint32_t KERNEL(vu2) __attribute__((vector_size(8 * LANES)));
typedef int32_t KERNEL(vi2) __attribute__((vector_size(8 * LANES)));
typedef uint16_t KERNEL(vh2) __attribute__((vector_size(4 * LANES)));
typedef int8_t KERNEL(vb2) __attribute__((vector_size(2 * LANES)));
typedef int8_t KERNEL(vb) __attribute__((vector_size(LANES)));

#undef ROW_BLOCK
#define ROW_BLOCK (LANES == 8 ? 8 : 4) /* rows sharing each load of the vec matrix */

static inline __attribute__((always_inline)) KERNEL(vd) KERNEL(load_vd)(const double *p)
{
    KERNEL(vd) v;
    memcpy(&v, p, sizeof v);
    return v;
}

#undef LOW_HALF
#undef HIGH_HALF
#if LANES == 8
#define LOW_HALF 0, 1, 2, 3, 4, 5, 6, 7
#define HIGH_HALF 8, 9, 10, 11, 12, 13, 14, 15
#elif LANES == 4
#define LOW_HALF 0, 1, 2, 3
#define HIGH_HALF 4, 5, 6, 7
#else
#define LOW_HALF 0, 1
#define HIGH_HALF 2, 3
#endif

/* Half precision to float32 and back (round to nearest even, subnormals
 * included): the F16C instructions where merge_fast.c names them, else
 * integer steps. */
#ifdef KERNEL_F16_TO_F32
#define KERNEL_HAS_F16C 1
static inline __attribute__((always_inline)) KERNEL(vf2) KERNEL(f16_to_f32)(KERNEL(vh2) h)
{
    return (KERNEL(vf2))KERNEL_F16_TO_F32(h);
}
#else
#define KERNEL_HAS_F16C 0
static inline __attribute__((always_inline)) KERNEL(vf2) KERNEL(f16_to_f32)(KERNEL(vh2) h)
{
    /* the magnitude's bits moved into float32 position, times 2^112, is
     * exact for normal and subnormal halves alike; Inf and NaN get the
     * float32 exponent of all ones instead */
    KERNEL(vu2) u = __builtin_convertvector(h, KERNEL(vu2));
    KERNEL(vu2) bits = (u & 0x7fffu) << 13;
    KERNEL(vu2) finite = (KERNEL(vu2))((KERNEL(vf2))bits * 0x1p112f);
    KERNEL(vu2) special = (KERNEL(vu2))((u & 0x7c00u) == 0x7c00u);
    KERNEL(vu2) mag = (finite & ~special) | ((bits | 0x7f800000u) & special);
    return (KERNEL(vf2))(mag | ((u & 0x8000u) << 16));
}
#endif

/* 2 * LANES base values as float32, exactly. */
static inline __attribute__((always_inline)) KERNEL(vf2) KERNEL(load_base)(lt_dtype in, const unsigned char *p)
{
    KERNEL(vf2) f;
    if (in == LT_F32) {
        memcpy(&f, p, sizeof f);
        return f;
    }
    KERNEL(vh2) h;
    memcpy(&h, p, sizeof h);
    if (in == LT_F16)
        return KERNEL(f16_to_f32)(h);
    return (KERNEL(vf2))(__builtin_convertvector(h, KERNEL(vu2)) << 16);
}

static inline __attribute__((always_inline)) KERNEL(vd) KERNEL(low_vd)(KERNEL(vf2) f)
{
    return __builtin_convertvector(__builtin_shufflevector(f, f, LOW_HALF), KERNEL(vd));
}

static inline __attribute__((always_inline)) KERNEL(vd) KERNEL(high_vd)(KERNEL(vf2) f)
{
    return __builtin_convertvector(__builtin_shufflevector(f, f, HIGH_HALF), KERNEL(vd));
}

/* F16 and BF16 outputs: yf = w + (float)d in float32 (d = (d0, d1)), the
 * bound, the test, and yf rounded to the output type; store per lane
 * whether that rounding is proven equal to the double path's (0) or not
 * (-1).  A midpoint is a float32 whose low bits (16 for BF16, 13 for F16)
 * are 100...0 (F16 subnormals: see below).  A lane that passes is not a
 * tie, so rounding half up is rounding to nearest even there.  Returns
 * the flags. */
static inline __attribute__((always_inline)) KERNEL(vb2) KERNEL(finish16)(lt_dtype out, KERNEL(vf2) w,
                                                                          KERNEL(vd) d0, KERNEL(vd) d1,
                                                                          KERNEL(vf2) bound_s, unsigned char *dst)
{
    const KERNEL(vu2) abs_mask = (KERNEL(vu2)){0} + 0x7fffffffu;
    KERNEL(vf) h0 = __builtin_convertvector(d0, KERNEL(vf)), h1 = __builtin_convertvector(d1, KERNEL(vf));
    KERNEL(vf2) df = __builtin_shufflevector(h0, h1, LOW_HALF, HIGH_HALF), yf = w + df;
    KERNEL(vu2) yb = (KERNEL(vu2))yf;
    KERNEL(vf2) ay = (KERNEL(vf2))(yb & abs_mask), adf = (KERNEL(vf2))((KERNEL(vu2))df & abs_mask);
    KERNEL(vf2) e = 0x1.0004p-24f * (ay + adf) + bound_s;
    KERNEL(vi2) ok;
    KERNEL(vu2) r;
    /* no midpoint but `mid` within a quarter cell: e * 2^(26 - low bits) < |yf| */
    if (out == LT_BF16) {
        KERNEL(vf2) mid = (KERNEL(vf2))((yb & 0xffff0000u) | 0x8000u);
        KERNEL(vf2) dist = (KERNEL(vf2))((KERNEL(vu2))(yf - mid) & abs_mask);
        ok = (e < dist) & (e * 1024.0f < ay) & (ay < 0x1p120f) & (ay >= 0x1p-100f);
        r = (yb + 0x8000u) >> 16; /* the sign rides along: no carry reaches it */
    } else {
        /* below 2^-14 F16 is a grid of 2^-24, as on [2^-14, 2^-13): there the
         * test runs on t = |yf| + 2^-14 (rounded by at most 2^-38, which
         * joins e); e < |yf| keeps the double path's value off zero and on
         * yf's side of it */
        KERNEL(vu2) small = (KERNEL(vu2))(ay < 0x1p-14f);
        KERNEL(vf2) t = (KERNEL(vf2))(((KERNEL(vu2))(ay + 0x1p-14f) & small) | ((KERNEL(vu2))ay & ~small));
        KERNEL(vf2) mid = (KERNEL(vf2))(((KERNEL(vu2))t & ~0x1fffu) | 0x1000u);
        KERNEL(vf2) dist = (KERNEL(vf2))((KERNEL(vu2))(t - mid) & abs_mask), es = e + 0x1p-38f;
        ok = (es < dist) & (es * 8192.0f < t) & (t < 32768.0f) & (e < ay);
#if KERNEL_HAS_F16C
        KERNEL(vh2) packed = (KERNEL(vh2))KERNEL_F32_TO_F16(yf);
        memcpy(dst, &packed, sizeof packed);
        return __builtin_convertvector(~ok, KERNEL(vb2));
#else
        /* subnormal halves: |yf| in units of 2^-24, to the nearest integer */
        KERNEL(vu2) r_sub = __builtin_convertvector((ay * 0x1p24f + 0x1p23f) - 0x1p23f, KERNEL(vu2));
        r = ((((yb & abs_mask) + 0x1000u) >> 13) - (112u << 10));
        r = ((r & ~(KERNEL(vu2))small) | (r_sub & (KERNEL(vu2))small)) | ((yb >> 16) & 0x8000u);
#endif
    }
    KERNEL(vh2) packed = __builtin_convertvector(r, KERNEL(vh2));
    memcpy(dst, &packed, sizeof packed);
    return __builtin_convertvector(~ok, KERNEL(vb2));
}

/* F32 outputs: the same test in double, on LANES values.  Midpoints are
 * the doubles whose low 29 bits are 100...0.  Returns the flags. */
static inline __attribute__((always_inline)) KERNEL(vb) KERNEL(finish32)(KERNEL(vd) y, KERNEL(vd) w,
                                                                         KERNEL(vd) bound_s, unsigned char *dst)
{
    const KERNEL(vq) abs_mask = (KERNEL(vq)){0} + 0x7fffffffffffffffu;
    const uint64_t half_cell = (uint64_t)1 << 28;
    KERNEL(vq) yb = (KERNEL(vq))y;
    KERNEL(vd) ay = (KERNEL(vd))(yb & abs_mask), aw = (KERNEL(vd))((KERNEL(vq))w & abs_mask);
    KERNEL(vd) e = 0x1p-51 * ay + bound_s + 0x1p-40 * aw + 0x1p-1000;
    KERNEL(vd) mid = (KERNEL(vd))((yb & ~(2 * half_cell - 1)) | half_cell);
    KERNEL(vd) dist = (KERNEL(vd))((KERNEL(vq))(y - mid) & abs_mask);
    KERNEL(vl) ok = (e < dist) & (e * 0x1p26 < ay) & (ay >= 0x1p-126) & (ay < 0x1p120);
    KERNEL(vf) yf = __builtin_convertvector(y, KERNEL(vf));
    memcpy(dst, &yf, sizeof yf);
    return __builtin_convertvector(~ok, KERNEL(vb));
}

/* Append to redo the elements first, first + 1, ... whose flag byte (of
 * n) is set. */
static inline __attribute__((always_inline)) size_t KERNEL(note)(const void *flags, size_t n, uint64_t first,
                                                                 uint64_t *redo, size_t n_redo)
{
    uint64_t words[2] = {0, 0};
    memcpy(words, flags, n);
    if (!(words[0] | words[1]))
        return n_redo;
    const unsigned char *bytes = flags;
    for (size_t q = 0; q < n; q++)
        if (bytes[q])
            redo[n_redo++] = first + q;
    return n_redo;
}

/* RB rows from `row`, block-relative `first` (their first element): every
 * column pair of vectors accumulates all ops' terms for the RB rows at
 * once, so each load of the vec matrix serves RB rows.  Appends the
 * flagged elements to redo; returns their new count. */
static inline __attribute__((always_inline)) size_t
KERNEL(row_block)(const plan_tensor *t, lt_dtype in, lt_dtype out, const int rb, const unsigned char *src,
                  uint64_t row, uint64_t first, unsigned char *dst, uint64_t *redo, size_t n_redo)
{
    const merge_fast *f = t->fast;
    const uint64_t cols = t->cols;
    const size_t in_size = in == LT_F32 ? 4 : 2, out_size = out == LT_F32 ? 4 : 2;
    uint64_t j = 0;
    for (; j + 2 * LANES <= cols; j += 2 * LANES) {
        KERNEL(vd) d[ROW_BLOCK][2];
#pragma GCC unroll 8
        for (int r = 0; r < rb; r++)
            d[r][0] = d[r][1] = (KERNEL(vd)){0};
        for (size_t q = 0; q < t->n_ops; q++) {
            const merge_op *op = &t->ops[q];
            const double *c = op->coef + row * op->rank, *v = op->vec + j;
            for (uint32_t k = 0; k < op->rank; k++, v += cols) {
                KERNEL(vd) v0 = KERNEL(load_vd)(v), v1 = KERNEL(load_vd)(v + LANES);
#pragma GCC unroll 8
                for (int r = 0; r < rb; r++) {
                    const double ck = c[(uint64_t)r * op->rank + k];
                    d[r][0] += ck * v0;
                    d[r][1] += ck * v1;
                }
            }
        }
        /* flags per row, and their union: one test per block when none is set */
        KERNEL(vb2) bad[ROW_BLOCK], any = {0};
#pragma GCC unroll 8
        for (int r = 0; r < rb; r++) {
            const unsigned char *in_row = src + (uint64_t)r * cols * in_size;
            unsigned char *out_row = dst + (uint64_t)r * cols * out_size;
            KERNEL(vf2) w = KERNEL(load_base)(in, in_row + j * in_size);
            if (out == LT_F32) {
                const double bound = f->row_bound[row + (uint64_t)r];
                KERNEL(vd) w0 = KERNEL(low_vd)(w), w1 = KERNEL(high_vd)(w);
                KERNEL(vb) bad0 = KERNEL(finish32)(w0 + d[r][0], w0, bound * KERNEL(load_vd)(f->col_norm + j),
                                                   out_row + j * 4);
                KERNEL(vb) bad1 = KERNEL(finish32)(w1 + d[r][1], w1, bound * KERNEL(load_vd)(f->col_norm + j + LANES),
                                                   out_row + (j + LANES) * 4);
                bad[r] = __builtin_shufflevector(bad0, bad1, LOW_HALF, HIGH_HALF);
            } else {
                KERNEL(vf2) col;
                memcpy(&col, f->col_norm32 + j, sizeof col);
                bad[r] = KERNEL(finish16)(out, w, d[r][0], d[r][1], f->row_bound32[row + (uint64_t)r] * col,
                                          out_row + j * 2);
            }
            any |= bad[r];
        }
        uint64_t words[2] = {0, 0};
        memcpy(words, &any, sizeof any);
        if (words[0] | words[1])
            for (int r = 0; r < rb; r++)
                n_redo = KERNEL(note)(&bad[r], sizeof bad[r], first + (uint64_t)r * cols + j, redo, n_redo);
    }
    for (int r = 0; r < rb; r++) /* the tail goes the double way */
        for (uint64_t q = j; q < cols; q++)
            redo[n_redo++] = first + (uint64_t)r * cols + q;
    return n_redo;
}

static inline __attribute__((always_inline)) size_t
KERNEL(rows_body)(const plan_tensor *t, lt_dtype in, lt_dtype out, const unsigned char *raw, uint64_t row0,
                  uint64_t nr, unsigned char *dst, uint64_t *redo)
{
    const uint64_t cols = t->cols;
    const size_t in_size = in == LT_F32 ? 4 : 2, out_size = out == LT_F32 ? 4 : 2;
    size_t n_redo = 0;
    uint64_t i = 0;
    for (; i + ROW_BLOCK <= nr; i += ROW_BLOCK)
        n_redo = KERNEL(row_block)(t, in, out, ROW_BLOCK, raw + i * cols * in_size, row0 + i, i * cols,
                                   dst + i * cols * out_size, redo, n_redo);
    for (; i < nr; i++)
        n_redo = KERNEL(row_block)(t, in, out, 1, raw + i * cols * in_size, row0 + i, i * cols,
                                   dst + i * cols * out_size, redo, n_redo);
    return n_redo;
}

/* One body per (input, output) pair, so the dtype tests leave the loops. */
#define KERNEL_PAIR(i_, o_) KERNEL(rows_body)(t, i_, o_, raw, row0, nr, dst, redo)
static size_t KERNEL(rows)(const plan_tensor *t, const unsigned char *raw, uint64_t row0, uint64_t nr,
                           unsigned char *dst, uint64_t *redo)
{
    lt_dtype in = t->in_dtype;
    switch (t->out_dtype) {
    case LT_BF16:
        return in == LT_BF16 ? KERNEL_PAIR(LT_BF16, LT_BF16)
               : in == LT_F16 ? KERNEL_PAIR(LT_F16, LT_BF16) : KERNEL_PAIR(LT_F32, LT_BF16);
    case LT_F16:
        return in == LT_BF16 ? KERNEL_PAIR(LT_BF16, LT_F16)
               : in == LT_F16 ? KERNEL_PAIR(LT_F16, LT_F16) : KERNEL_PAIR(LT_F32, LT_F16);
    default:
        return in == LT_BF16 ? KERNEL_PAIR(LT_BF16, LT_F32)
               : in == LT_F16 ? KERNEL_PAIR(LT_F16, LT_F32) : KERNEL_PAIR(LT_F32, LT_F32);
    }
}
#undef KERNEL_PAIR

/* this build's parameters, so that the next build can define its own */
#undef KERNEL
#undef LANES
#undef KERNEL_F16_TO_F32
#undef KERNEL_F32_TO_F16
#undef KERNEL_HAS_F16C
