/*
 * linalg_qr.c - Householder QR building blocks (spec/linalg.md): the
 * textbook unblocked factorization used on small matrices, and a tall-skinny
 * QR (TSQR) for the m x r factors of LoRA products, m in the thousands and r
 * in the tens, which never forms Q.
 *
 * Why TSQR: the unblocked factorization streams the whole m x r matrix from
 * memory twice per column (2 r passes over up to 5 MiB for an 11008 x 64
 * factor), so it runs at memory speed.  Here the matrix is consumed in
 * blocks of TS_ROWS rows that stay in cache: the first block gets a plain
 * QR; each later block is annihilated against the current r x r triangle R
 * by reflectors whose vectors are e_j in R's rows plus a dense part in the
 * block (the structure of LAPACK's "triangular-pentagonal" QR), so every
 * reflector touches only row j of R and the block.  Reflectors are applied
 * TS_NB at a time as a compact WY block I - V T V^T (Schreiber and Van
 * Loan 1989), so the block is read once per TS_NB columns, by small
 * register-tiled loops that gcc vectorizes across columns.
 *
 * The result is Householder QR of the whole matrix (backward stable, Q
 * orthonormal to working precision), applied in a fixed order: the bytes do
 * not depend on threads or the instruction set (no FMA; vectors never run
 * across the summation index).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "source_sink.h"
#include "linalg.h"

#define TS_ROWS 256 /* rows per block after the first                   */
#define TS_NB 4     /* reflectors per compact WY block                  */
#define TS_CW 8     /* columns per register tile                        */

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* Euclidean norm of n elements at stride inc, without overflow or
 * harmful underflow. */
double lti_norm2(const double *x, size_t n, size_t inc)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i * inc]) > mx)
            mx = fabs(x[i * inc]);
    if (mx == 0)
        return 0;
    double sum = 0;
    if (mx > 0x1p-500 && mx < 0x1p500) {
        for (size_t i = 0; i < n; i++)
            sum += x[i * inc] * x[i * inc];
        return sqrt(sum);
    }
    for (size_t i = 0; i < n; i++) {
        double y = x[i * inc] / mx;
        sum += y * y;
    }
    return mx * sqrt(sum);
}

/* ------------------------------------------------------------------ */
/* Householder QR                                                      */
/* ------------------------------------------------------------------ */

/* In-place QR of W (m x n, leading dimension ldw): on return R is on and
 * above the diagonal, the reflector vectors v_j below it (v_j[j] = 1
 * implied), H_j = I - tau[j] v_j v_j^T, A = H_0 ... H_{p-1} R.  work holds
 * n doubles. */
/* AVX2 and baseline builds of the reflector loops (element-wise, so both
 * give identical results; no FMA contraction). */
#define LT_CLONES LT_TARGET_CLONES /* core.h */

/* Apply H_j = I - tau v v^T, v = (1, w[j+1.., j]) stored below the
 * diagonal of column j of W, to rows j.. and columns c0 .. c0 + nc of A:
 * A -= tau v (v^T A).  wk holds nc doubles. */
LT_CLONES static void apply_reflector(size_t m, size_t j, const double *w, size_t ldw, double tau, double *a,
                                 size_t lda, size_t c0, size_t nc, double *restrict wk)
{
    double *rowj = a + j * lda + c0;
    for (size_t c = 0; c < nc; c++)
        wk[c] = rowj[c];
    for (size_t i = j + 1; i < m; i++) {
        const double vi = w[i * ldw + j];
        const double *restrict row = a + i * lda + c0;
        for (size_t c = 0; c < nc; c++)
            wk[c] += vi * row[c];
    }
    for (size_t c = 0; c < nc; c++)
        wk[c] *= tau;
    for (size_t c = 0; c < nc; c++)
        rowj[c] -= wk[c];
    for (size_t i = j + 1; i < m; i++) {
        const double vi = w[i * ldw + j];
        double *restrict row = a + i * lda + c0;
        for (size_t c = 0; c < nc; c++)
            row[c] -= vi * wk[c];
    }
}

LT_CLONES static void qr_factor(size_t m, size_t n, double *w, size_t ldw, double *tau, double *work)
{
    size_t p = min_sz(m, n);
    for (size_t j = 0; j < p; j++) {
        double alpha = w[j * ldw + j];
        double xnorm = m > j + 1 ? lti_norm2(w + (j + 1) * ldw + j, m - j - 1, ldw) : 0;
        if (xnorm == 0) {
            tau[j] = 0; /* H_j = I */
            continue;
        }
        double beta = -copysign(hypot(alpha, xnorm), alpha);
        tau[j] = (beta - alpha) / beta;
        double d = alpha - beta; /* |d| >= |beta| >= every |x_i|: no overflow */
        for (size_t i = j + 1; i < m; i++)
            w[i * ldw + j] /= d;
        w[j * ldw + j] = beta;
        /* Apply H_j to the trailing columns: W -= tau v (v^T W). */
        size_t nc = n - j - 1;
        if (nc == 0)
            continue;
        apply_reflector(m, j, w, ldw, tau[j], w, ldw, j + 1, nc, work);
    }
}

/* Q (m x p, p = min(m, n)) = H_0 ... H_{p-1} I[:, :p], accumulated
 * backwards.  work holds p doubles. */
LT_CLONES static void qr_form_q(size_t m, size_t n, const double *w, size_t ldw, const double *tau,
                             double *q, size_t ldq, double *work)
{
    size_t p = min_sz(m, n);
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < p; c++)
            q[i * ldq + c] = i == c ? 1.0 : 0.0;
    for (size_t j = p; j-- > 0;) {
        if (tau[j] == 0)
            continue;
        size_t nc = p - j;
        apply_reflector(m, j, w, ldw, tau[j], q, ldq, j, nc, work);
    }
}

/* Copy the p x n upper trapezoid of a factored W into r (zeros below). */
void lti_qr_copy_r(size_t m, size_t n, const double *w, size_t ldw, double *r, size_t ldr)
{
    size_t p = min_sz(m, n);
    for (size_t i = 0; i < p; i++)
        for (size_t c = 0; c < n; c++)
            r[i * ldr + c] = c >= i ? w[i * ldw + c] : 0.0;
}

/* The cloned functions stay static: gcc exports a clone dispatcher
 * whatever -fvisibility says. */
void lti_qr_factor(size_t m, size_t n, double *w, size_t ldw, double *tau, double *work)
{
    qr_factor(m, n, w, ldw, tau, work);
}

void lti_qr_form_q(size_t m, size_t n, const double *w, size_t ldw, const double *tau, double *q,
                   size_t ldq, double *work)
{
    qr_form_q(m, n, w, ldw, tau, q, ldq, work);
}

/* ------------------------------------------------------------------ */
/* Tall-skinny QR                                                      */
/* ------------------------------------------------------------------ */

/* Rows of the first block: at least r, so its plain QR yields the r x r
 * triangle (and Q stays orthonormal when the matrix is rank-deficient). */
static size_t ts_first(size_t m, size_t r) { return min_sz(m, r > TS_ROWS ? r : TS_ROWS); }

static size_t ts_panels(size_t r) { return (r + TS_NB - 1) / TS_NB; }

size_t lti_tsqr_aux_count(size_t m, size_t r)
{
    size_t b0 = ts_first(m, r), blocks = (m - b0 + TS_ROWS - 1) / TS_ROWS;
    /* r taus for the first block, one TS_NB x TS_NB T per panel of each
     * later block; m, r come from matrices already allocated, no overflow */
    return r + blocks * ts_panels(r) * TS_NB * TS_NB;
}

/* Four doubles as one value: element-wise IEEE arithmetic, a ymm register
 * in the AVX2 clone and two xmm registers in the baseline one (same
 * results).  Named accumulators, because gcc keeps an array of them in
 * memory. */
typedef double v4d __attribute__((vector_size(32)));

static inline v4d ld4(const double *p)
{
    v4d x;
    memcpy(&x, p, sizeof x);
    return x;
}

static inline void st4(double *p, v4d x) { memcpy(p, &x, sizeof x); }

/* W (TS_NB x nc, ld ldw) += V^T C over bs rows: V the TS_NB reflector
 * columns (stride ldv), C bs x nc (stride ldc).  Each W element adds its
 * products in row order, whichever loop below handles it. */
LT_CLONES static void ts_vtc(size_t bs, const double *v, size_t ldv, const double *c, size_t ldc, size_t nc,
                             double *w, size_t ldw)
{
    size_t c0 = 0;
    for (; c0 + 8 <= nc; c0 += 8) {
        v4d a0 = ld4(w + c0), b0 = ld4(w + c0 + 4), a1 = ld4(w + ldw + c0), b1 = ld4(w + ldw + c0 + 4);
        v4d a2 = ld4(w + 2 * ldw + c0), b2 = ld4(w + 2 * ldw + c0 + 4);
        v4d a3 = ld4(w + 3 * ldw + c0), b3 = ld4(w + 3 * ldw + c0 + 4);
        for (size_t i = 0; i < bs; i++) {
            const double *vr = v + i * ldv;
            v4d x = ld4(c + i * ldc + c0), y = ld4(c + i * ldc + c0 + 4);
            a0 += vr[0] * x, b0 += vr[0] * y;
            a1 += vr[1] * x, b1 += vr[1] * y;
            a2 += vr[2] * x, b2 += vr[2] * y;
            a3 += vr[3] * x, b3 += vr[3] * y;
        }
        st4(w + c0, a0), st4(w + c0 + 4, b0), st4(w + ldw + c0, a1), st4(w + ldw + c0 + 4, b1);
        st4(w + 2 * ldw + c0, a2), st4(w + 2 * ldw + c0 + 4, b2);
        st4(w + 3 * ldw + c0, a3), st4(w + 3 * ldw + c0 + 4, b3);
    }
    for (; c0 + 4 <= nc; c0 += 4) {
        v4d a0 = ld4(w + c0), a1 = ld4(w + ldw + c0), a2 = ld4(w + 2 * ldw + c0), a3 = ld4(w + 3 * ldw + c0);
        for (size_t i = 0; i < bs; i++) {
            const double *vr = v + i * ldv;
            v4d x = ld4(c + i * ldc + c0);
            a0 += vr[0] * x, a1 += vr[1] * x, a2 += vr[2] * x, a3 += vr[3] * x;
        }
        st4(w + c0, a0), st4(w + ldw + c0, a1), st4(w + 2 * ldw + c0, a2), st4(w + 3 * ldw + c0, a3);
    }
    for (; c0 < nc; c0++)
        for (size_t i = 0; i < bs; i++)
            for (int q = 0; q < TS_NB; q++)
                w[q * ldw + c0] += v[i * ldv + q] * c[i * ldc + c0];
}

/* C (bs x nc) -= V W, each element as c - (((v0 w0 + v1 w1) + v2 w2) + v3 w3). */
LT_CLONES static void ts_cvw(size_t bs, const double *v, size_t ldv, const double *w, size_t ldw, double *c,
                             size_t ldc, size_t nc)
{
    size_t c0 = 0;
    for (; c0 + 8 <= nc; c0 += 8) {
        v4d a0 = ld4(w + c0), b0 = ld4(w + c0 + 4), a1 = ld4(w + ldw + c0), b1 = ld4(w + ldw + c0 + 4);
        v4d a2 = ld4(w + 2 * ldw + c0), b2 = ld4(w + 2 * ldw + c0 + 4);
        v4d a3 = ld4(w + 3 * ldw + c0), b3 = ld4(w + 3 * ldw + c0 + 4);
        for (size_t i = 0; i < bs; i++) {
            const double *vr = v + i * ldv;
            double *cr = c + i * ldc + c0;
            v4d x = ((vr[0] * a0 + vr[1] * a1) + vr[2] * a2) + vr[3] * a3;
            v4d y = ((vr[0] * b0 + vr[1] * b1) + vr[2] * b2) + vr[3] * b3;
            st4(cr, ld4(cr) - x), st4(cr + 4, ld4(cr + 4) - y);
        }
    }
    for (; c0 + 4 <= nc; c0 += 4) {
        v4d a0 = ld4(w + c0), a1 = ld4(w + ldw + c0), a2 = ld4(w + 2 * ldw + c0), a3 = ld4(w + 3 * ldw + c0);
        for (size_t i = 0; i < bs; i++) {
            const double *vr = v + i * ldv;
            double *cr = c + i * ldc + c0;
            st4(cr, ld4(cr) - (((vr[0] * a0 + vr[1] * a1) + vr[2] * a2) + vr[3] * a3));
        }
    }
    for (; c0 < nc; c0++)
        for (size_t i = 0; i < bs; i++) {
            const double *vr = v + i * ldv;
            c[i * ldc + c0] -= ((vr[0] * w[c0] + vr[1] * w[ldw + c0]) + vr[2] * w[2 * ldw + c0]) + vr[3] * w[3 * ldw + c0];
        }
}

_Static_assert(TS_NB == 4, "ts_vtc and ts_cvw are written out for four reflectors");

/* sum_i x[i] y[i], i < n, in four vector lanes added as
 * (l0 + l1) + (l2 + l3), then the tail: a fixed order. */
LT_CLONES static double dot(const double *x, const double *y, size_t n)
{
    v4d acc = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        acc += ld4(x + i) * ld4(y + i);
    double tail = 0;
    for (; i < n; i++)
        tail += x[i] * y[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + tail;
}

/* A column's norm in one pass where its square cannot have over- or
 * underflowed; lti_norm2's scaled passes otherwise. */
static double col_norm(const double *x, size_t n)
{
    double ss = dot(x, x, n);
    return ss >= 0x1p-900 && ss <= 0x1p900 ? sqrt(ss) : lti_norm2(x, n, 1);
}

/* T (TS_NB x TS_NB, upper triangular) of the block reflector
 * H_0 ... H_{nb-1} = I - V T V^T, from the dense parts of the vectors
 * (columns of pc, bs long; their unit parts e_j are mutually orthogonal). */
static void ts_build_t(size_t bs, const double *pc, const double *tau, double *t)
{
    memset(t, 0, TS_NB * TS_NB * sizeof *t);
    for (int q = 0; q < TS_NB; q++) {
        t[q * TS_NB + q] = tau[q];
        if (tau[q] == 0)
            continue;
        double z[TS_NB];
        for (int p = 0; p < q; p++)
            z[p] = dot(pc + (size_t)p * bs, pc + (size_t)q * bs, bs) * -tau[q];
        for (int p = 0; p < q; p++) {
            double s = 0;
            for (int x = p; x < q; x++)
                s += t[p * TS_NB + x] * z[x];
            t[p * TS_NB + q] = s;
        }
    }
}

/* Annihilate one block (bs x r, stride r) against R (rows 0..r-1 of the
 * same matrix, upper triangle).  Afterwards the block holds the dense
 * parts of the reflector vectors; t gets one T per panel (the tau of
 * reflector j is on T's diagonal).  wk holds TS_NB * r doubles, pc
 * TS_NB * TS_ROWS: the panel's columns, contiguous while it is factored. */
static void ts_step(size_t r, double *rr, double *blk, size_t bs, double *t, double *wk, double *pc)
{
    for (size_t j0 = 0; j0 < r; j0 += TS_NB) {
        size_t nb = min_sz(TS_NB, r - j0);
        double tau[TS_NB] = {0};
        for (size_t q = 0; q < nb; q++)
            for (size_t i = 0; i < bs; i++)
                pc[q * bs + i] = blk[i * r + j0 + q];
        for (size_t q = 0; q < nb; q++) {
            size_t j = j0 + q;
            double *x = pc + q * bs;
            double alpha = rr[j * r + j];
            double xnorm = col_norm(x, bs);
            if (xnorm == 0)
                continue; /* H_j = I; the block's column is zero already */
            double beta = -copysign(hypot(alpha, xnorm), alpha);
            tau[q] = (beta - alpha) / beta;
            double d = alpha - beta;
            for (size_t i = 0; i < bs; i++)
                x[i] /= d;
            rr[j * r + j] = beta;
            for (size_t e = q + 1; e < nb; e++) { /* the panel's later columns */
                double *y = pc + e * bs;
                double w = (rr[j * r + j0 + e] + dot(x, y, bs)) * tau[q];
                rr[j * r + j0 + e] -= w;
                for (size_t i = 0; i < bs; i++)
                    y[i] -= x[i] * w;
            }
        }
        for (size_t q = 0; q < nb; q++)
            for (size_t i = 0; i < bs; i++)
                blk[i * r + j0 + q] = pc[q * bs + i];
        double *tp = t + j0 / TS_NB * TS_NB * TS_NB;
        ts_build_t(bs, pc, tau, tp);
        size_t c0 = j0 + nb, nc = r - c0;
        if (nc == 0)
            continue; /* the last panel, also the only one shorter than TS_NB */
        /* trailing columns: C -= V T^T (V^T C), V^T C = R rows + V_blk^T C_blk */
        for (size_t q = 0; q < TS_NB; q++)
            memcpy(wk + q * nc, rr + (j0 + q) * r + c0, nc * sizeof *wk);
        ts_vtc(bs, blk + j0, r, blk + c0, r, nc, wk, nc);
        for (size_t q = TS_NB; q-- > 0;) /* W = T^T W in place, last row first */
            for (size_t c = 0; c < nc; c++) {
                double s = 0;
                for (size_t p = 0; p <= q; p++)
                    s += tp[p * TS_NB + q] * wk[p * nc + c];
                wk[q * nc + c] = s;
            }
        for (size_t q = 0; q < TS_NB; q++)
            for (size_t c = 0; c < nc; c++)
                rr[(j0 + q) * r + c0 + c] -= wk[q * nc + c];
        ts_cvw(bs, blk + j0, r, wk, nc, blk + c0, r, nc);
    }
}

bool lti_tsqr_factor(size_t m, size_t r, double *w, double *aux)
{
    double *wk = malloc(TS_NB * (r + TS_ROWS) * sizeof *wk);
    if (!wk)
        return false;
    size_t b0 = ts_first(m, r);
    qr_factor(b0, r, w, r, aux, wk);
    double *t = aux + r;
    for (size_t i0 = b0; i0 < m; i0 += TS_ROWS) {
        ts_step(r, w, w + i0 * r, min_sz(TS_ROWS, m - i0), t, wk, wk + TS_NB * r);
        t += ts_panels(r) * TS_NB * TS_NB;
    }
    free(wk);
    return true;
}

bool lti_tsqr_apply_q(size_t m, size_t r, const double *w, const double *aux, size_t k, double *x, double *u,
                      size_t ldu)
{
    double *wk = malloc((TS_NB * k + 1) * sizeof *wk);
    if (!wk)
        return false;
    size_t b0 = ts_first(m, r), np = ts_panels(r);
    size_t blocks = (m - b0 + TS_ROWS - 1) / TS_ROWS;
    /* Q X = H_(first block) H_(block 1) ... [X; 0]: the last block's
     * reflectors act first, each block's panels last to first. */
    for (size_t s = blocks; s-- > 0;) {
        size_t i0 = b0 + s * TS_ROWS, bs = min_sz(TS_ROWS, m - i0);
        const double *blk = w + i0 * r;
        const double *t = aux + r + s * np * TS_NB * TS_NB;
        double *y = u + i0 * ldu;
        for (size_t i = 0; i < bs; i++)
            memset(y + i * ldu, 0, k * sizeof *y);
        for (size_t p = np; p-- > 0;) {
            size_t j0 = p * TS_NB, nb = min_sz(TS_NB, r - j0);
            const double *tp = t + p * TS_NB * TS_NB;
            if (nb < TS_NB) { /* a short last panel: one reflector at a time */
                for (size_t q = nb; q-- > 0;) {
                    size_t j = j0 + q;
                    double tau = tp[q * TS_NB + q];
                    for (size_t c = 0; tau != 0 && c < k; c++) {
                        double wv = x[j * k + c];
                        for (size_t i = 0; i < bs; i++)
                            wv += blk[i * r + j] * y[i * ldu + c];
                        wv *= tau;
                        x[j * k + c] -= wv;
                        for (size_t i = 0; i < bs; i++)
                            y[i * ldu + c] -= blk[i * r + j] * wv;
                    }
                }
                continue;
            }
            /* C -= V T (V^T C) on C = [X rows j0..; Y] */
            memcpy(wk, x + j0 * k, TS_NB * k * sizeof *wk);
            ts_vtc(bs, blk + j0, r, y, ldu, k, wk, k);
            for (size_t q = 0; q < TS_NB; q++) /* W = T W in place, first row first */
                for (size_t c = 0; c < k; c++) {
                    double sum = 0;
                    for (size_t e = q; e < TS_NB; e++)
                        sum += tp[q * TS_NB + e] * wk[e * k + c];
                    wk[q * k + c] = sum;
                }
            for (size_t q = 0; q < TS_NB; q++)
                for (size_t c = 0; c < k; c++)
                    x[(j0 + q) * k + c] -= wk[q * k + c];
            ts_cvw(bs, blk + j0, r, wk, k, y, ldu, k);
        }
    }
    /* the first block: plain reflectors on [X; 0] */
    for (size_t i = 0; i < b0; i++)
        for (size_t c = 0; c < k; c++)
            u[i * ldu + c] = i < r ? x[i * k + c] : 0.0;
    for (size_t j = r; j-- > 0;)
        if (aux[j] != 0)
            apply_reflector(b0, j, w, r, aux[j], u, ldu, 0, k, wk);
    free(wk);
    return true;
}
