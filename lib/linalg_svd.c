/*
 * linalg_svd.c - Householder QR, one-sided Jacobi SVD, the SVD of a
 * low-rank product, randomized SVD and rank choice (spec/linalg.md).
 *
 * All f64, row-major.  Conventions shared by the routines below:
 *   - a column-oriented working matrix is kept transposed ("rows are the
 *     columns"), so the inner loops run over contiguous memory;
 *   - inputs are copied and scaled by a power of two (exact) so that the
 *     largest magnitude lies in [0.5, 1): no overflow in dot products, and
 *     the scale is put back on the singular values at the end;
 *   - nothing depends on thread timing: the only threaded part is
 *     lti_gemm_f64, which is deterministic.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "source_sink.h"
#include "linalg.h"

#define JACOBI_MAX_SWEEPS 60

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* malloc for rows x cols doubles, overflow-checked; never malloc(0).
 * Sets *fail on failure (and returns NULL); a NULL fail flag stays set. */
static double *dalloc(size_t rows, size_t cols, bool *fail)
{
    size_t n;
    if (__builtin_mul_overflow(rows, cols, &n) || __builtin_mul_overflow(n, sizeof(double), &n)) {
        *fail = true;
        return NULL;
    }
    double *p = malloc(n ? n : sizeof(double));
    if (!p)
        *fail = true;
    return p;
}


/* Largest magnitude of a rows x cols matrix; -1 when it holds NaN or Inf. */
static double max_abs(const double *p, size_t rows, size_t cols, size_t ld)
{
    double mx = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double x = fabs(p[i * ld + j]);
            if (!(x <= DBL_MAX))
                return -1;
            if (x > mx)
                mx = x;
        }
    return mx;
}

/* Exponent e with mx * 2^-e in [0.5, 1); 0 for mx == 0. */
static int scale_exp(double mx)
{
    int e = 0;
    if (mx > 0)
        frexp(mx, &e);
    return e;
}

lt_status lti_qr_f64(size_t m, size_t n, const double *a, size_t lda, double *q, size_t ldq,
                    double *r, size_t ldr, lt_error *err)
{
    static const char fn[] = "QR decomposition";
    size_t p = min_sz(m, n);
    if (!lti_matrix_extent_ok(m, n, lda, sizeof(double)) || (q && !lti_matrix_extent_ok(m, p, ldq, sizeof(double))) ||
        (r && !lti_matrix_extent_ok(p, n, ldr, sizeof(double))))
        return lti_fail(err, LT_ERR_USAGE, "%s: leading dimension too small or matrix too large", fn);
    if (p == 0)
        return LT_OK;
    if (!a)
        return lti_fail(err, LT_ERR_USAGE, "%s: NULL matrix", fn);
    if (max_abs(a, m, n, lda) < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: matrix holds NaN or Inf", fn);
    bool fail = false;
    double *w = dalloc(m, n, &fail);
    double *tau = dalloc(p, 1, &fail);
    double *work = dalloc(n, 1, &fail);
    if (fail) {
        free(w), free(tau), free(work);
        return lti_fail_nomem(err, fn);
    }
    for (size_t i = 0; i < m; i++)
        memcpy(w + i * n, a + i * lda, n * sizeof(double));
    lti_qr_factor(m, n, w, n, tau, work);
    if (r)
        lti_qr_copy_r(m, n, w, n, r, ldr);
    if (q)
        lti_qr_form_q(m, n, w, n, tau, q, ldq, work);
    free(w), free(tau), free(work);
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* One-sided Jacobi SVD                                                */
/* ------------------------------------------------------------------ */

/*
 * Hestenes' one-sided Jacobi on a matrix X given by its columns: row i of
 * gt (ncol rows, len long, contiguous) is column i of X.  Each pair of
 * columns (i, j), in cyclic row order, is rotated to be orthogonal unless
 * already |x_i . x_j| <= tol ||x_i|| ||x_j||; the same rotations are applied
 * to the rows of vt (ncol x ncol).  Converged when a whole sweep rotates
 * nothing.  Returns false after JACOBI_MAX_SWEEPS sweeps without that.
 */
static bool jacobi(size_t ncol, size_t len, double *gt, double *vt, size_t vlen)
{
    /* Rounding noise of a computed dot product is about sqrt(len) eps
     * relative to the norms; a threshold at that level is reached. */
    const double tol = DBL_EPSILON * fmax(2.0 * sqrt((double)len), 4.0);
    for (int sweep = 0; sweep < JACOBI_MAX_SWEEPS; sweep++) {
        size_t rotations = 0;
        for (size_t i = 0; i + 1 < ncol; i++) {
            double *restrict gi = gt + i * len;
            double *restrict vi = vt + i * vlen;
            for (size_t j = i + 1; j < ncol; j++) {
                double *restrict gj = gt + j * len;
                double *restrict vj = vt + j * vlen;
                double aa = 0, bb = 0, ab = 0;
                for (size_t t = 0; t < len; t++) {
                    aa += gi[t] * gi[t];
                    bb += gj[t] * gj[t];
                    ab += gi[t] * gj[t];
                }
                if (aa == 0 || bb == 0 || fabs(ab) <= tol * sqrt(aa) * sqrt(bb))
                    continue;
                rotations++;
                /* Rutishauser's formulas: the smaller root t of
                 * t^2 + 2 zeta t - 1 = 0 makes the pair orthogonal. */
                double zeta = (bb - aa) / (2.0 * ab);
                double t;
                if (fabs(zeta) > 0x1p100)
                    t = 0.5 / zeta;
                else
                    t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1.0 + zeta * zeta));
                double c = 1.0 / sqrt(1.0 + t * t), s = c * t;
                for (size_t q = 0; q < len; q++) {
                    double x = gi[q], y = gj[q];
                    gi[q] = c * x - s * y;
                    gj[q] = s * x + c * y;
                }
                for (size_t q = 0; q < vlen; q++) {
                    double x = vi[q], y = vj[q];
                    vi[q] = c * x - s * y;
                    vj[q] = s * x + c * y;
                }
            }
        }
        if (rotations == 0)
            return true;
    }
    return false;
}

/* order[0..n) = indices of sig sorted descending, ties by index. */
static void sort_desc(const double *sig, size_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t x = order[i] = i, j = i;
        while (j > 0 && sig[order[j - 1]] < sig[x]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = x;
    }
}

/* Rows 0..nrows of rows (each len long, contiguous) are orthonormal except
 * rows from first on, which may be zero or inaccurate: re-orthogonalize
 * each of those against all earlier rows (two Gram-Schmidt passes) and,
 * when little is left, replace it by the unit vector e_t that keeps the
 * most.  Afterwards all nrows rows are orthonormal (nrows <= len). */
static void complete_rows(double *rows, size_t nrows, size_t len, size_t first)
{
    for (size_t c = first; c < nrows; c++) {
        double *x = rows + c * len;
        for (size_t attempt = 0; attempt <= len; attempt++) {
            if (attempt > 0) { /* unit vector e_{attempt-1} */
                memset(x, 0, len * sizeof(double));
                x[attempt - 1] = 1.0;
            }
            double before = lti_norm2(x, len, 1);
            if (before == 0)
                continue;
            for (int pass = 0; pass < 2; pass++)
                for (size_t b = 0; b < c; b++) {
                    const double *y = rows + b * len;
                    double d = 0;
                    for (size_t t = 0; t < len; t++)
                        d += y[t] * x[t];
                    for (size_t t = 0; t < len; t++)
                        x[t] -= d * y[t];
                }
            double after = lti_norm2(x, len, 1);
            if (after > 0.5 * before) {
                for (size_t t = 0; t < len; t++)
                    x[t] /= after;
                break;
            }
        }
    }
}

/*
 * SVD of W (m x n, m >= n >= 1, contiguous, largest magnitude in
 * [0.5, 1), destroyed).  A = QR; Jacobi on the columns of R^T (the rows of
 * R), which converges faster than on R (Drmac and Veselic 2008):
 * R^T V' = G, so R^T = (G S^-1) S V'^T, R = V' S (G S^-1)^T and
 * A = (Q V') S (G S^-1)^T.  sig gets the n singular values (descending);
 * U (m x n) and V (n x n) when wanted.
 */
static lt_status svd_tall(size_t m, size_t n, double *w, double *sig, double *u, size_t ldu,
                          double *v, size_t ldv, const char *fn, lt_error *err)
{
    bool fail = false;
    double *tau = dalloc(n, 1, &fail);
    double *work = dalloc(n, 1, &fail);
    double *gt = dalloc(n, n, &fail);
    double *vt = dalloc(n, n, &fail);
    double *nrm = dalloc(n, 1, &fail);
    double *rows = dalloc(n, n, &fail);
    double *q = u ? dalloc(m, n, &fail) : NULL;
    size_t *order = NULL;
    if (!fail) {
        order = malloc(n * sizeof *order); /* n * n did not overflow */
        fail = !order;
    }
    lt_status st = LT_OK;
    if (fail) {
        st = lti_fail_nomem(err, fn);
        goto out;
    }
    lti_qr_factor(m, n, w, n, tau, work);
    lti_qr_copy_r(m, n, w, n, gt, n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            vt[i * n + j] = i == j ? 1.0 : 0.0;
    if (!jacobi(n, n, gt, vt, n)) {
        st = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: Jacobi SVD did not converge in %d sweeps", fn,
                     JACOBI_MAX_SWEEPS);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        nrm[i] = lti_norm2(gt + i * n, n, 1);
    sort_desc(nrm, order, n);
    for (size_t c = 0; c < n; c++)
        sig[c] = nrm[order[c]];
    if (u) {
        /* U = Q V'(:, order): rows of `rows` are the columns V'(:, order). */
        lti_qr_form_q(m, n, w, n, tau, q, n, work);
        for (size_t c = 0; c < n; c++)
            memcpy(rows + c * n, vt + order[c] * n, n * sizeof(double));
        st = lti_gemm_f64(false, true, m, n, n, 1.0, q, n, rows, n, 0.0, u, ldu, 1, err);
        if (st != LT_OK)
            goto out;
    }
    if (v) {
        /* V(:, c) = G(:, order[c]) / sigma_c; columns of numerically zero
         * singular values are re-orthogonalized or replaced. */
        size_t first_bad = n;
        double tiny = sig[0] * DBL_EPSILON * (double)n;
        for (size_t c = 0; c < n; c++) {
            const double *g = gt + order[c] * n;
            double *x = rows + c * n;
            if (sig[c] > 0x1p-900)
                for (size_t t = 0; t < n; t++)
                    x[t] = g[t] / sig[c];
            else
                memset(x, 0, n * sizeof(double));
            if (first_bad == n && !(sig[c] > tiny))
                first_bad = c;
        }
        complete_rows(rows, n, n, first_bad);
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < n; c++)
                v[i * ldv + c] = rows[c * n + i];
    }
out:
    free(tau), free(work), free(gt), free(vt), free(nrm), free(rows), free(q), free(order);
    return st;
}

/* lti_svd_f64 after the argument checks. */
static lt_status svd_checked(size_t m, size_t n, const double *a, size_t lda, double *u, size_t ldu,
                             double *s, double *v, size_t ldv, const char *fn, lt_error *err)
{
    size_t p = min_sz(m, n);
    if (p == 0)
        return LT_OK;
    double mx = max_abs(a, m, n, lda);
    if (mx < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: matrix holds NaN or Inf", fn);
    if (mx == 0) { /* zero matrix: s = 0, U and V the leading identity columns */
        for (size_t c = 0; c < p; c++)
            s[c] = 0;
        for (size_t i = 0; u && i < m; i++)
            for (size_t c = 0; c < p; c++)
                u[i * ldu + c] = i == c ? 1.0 : 0.0;
        for (size_t i = 0; v && i < n; i++)
            for (size_t c = 0; c < p; c++)
                v[i * ldv + c] = i == c ? 1.0 : 0.0;
        return LT_OK;
    }
    int e = scale_exp(mx);
    bool tall = m >= n;
    size_t rows = tall ? m : n, cols = tall ? n : m;
    bool fail = false;
    double *w = dalloc(rows, cols, &fail);
    if (fail)
        return lti_fail_nomem(err, fn);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double x = ldexp(a[i * lda + j], -e);
            if (tall)
                w[i * cols + j] = x;
            else
                w[j * cols + i] = x;
        }
    lt_status st = tall ? svd_tall(m, n, w, s, u, ldu, v, ldv, fn, err)
                        : svd_tall(n, m, w, s, v, ldv, u, ldu, fn, err);
    free(w);
    if (st == LT_OK)
        for (size_t c = 0; c < p; c++)
            s[c] = ldexp(s[c], e);
    return st;
}

lt_status lti_svd_f64(size_t m, size_t n, const double *a, size_t lda, double *u, size_t ldu,
                     double *s, double *v, size_t ldv, lt_error *err)
{
    static const char fn[] = "SVD";
    size_t p = min_sz(m, n);
    if (!lti_matrix_extent_ok(m, n, lda, sizeof(double)) || (u && !lti_matrix_extent_ok(m, p, ldu, sizeof(double))) ||
        (v && !lti_matrix_extent_ok(n, p, ldv, sizeof(double))))
        return lti_fail(err, LT_ERR_USAGE, "%s: leading dimension too small or matrix too large", fn);
    if (p > 0 && (!a || !s))
        return lti_fail(err, LT_ERR_USAGE, "%s: NULL matrix", fn);
    return svd_checked(m, n, a, lda, u, ldu, s, v, ldv, fn, err);
}

/* ------------------------------------------------------------------ */
/* Truncated SVD of a low-rank product                                 */
/* ------------------------------------------------------------------ */

/* Columns kk..k of U (rows x k) and V, and s[kk..k), set to zero. */
static void zero_tail(size_t kk, size_t k, size_t m, size_t n, double *u, size_t ldu, double *s,
                      double *v, size_t ldv)
{
    for (size_t c = kk; c < k; c++)
        s[c] = 0;
    for (size_t i = 0; u && i < m; i++)
        for (size_t c = kk; c < k; c++)
            u[i * ldu + c] = 0;
    for (size_t i = 0; v && i < n; i++)
        for (size_t c = kk; c < k; c++)
            v[i * ldv + c] = 0;
}

/* Copy x (rows x cols, leading dimension ld) times 2^e into w (leading
 * dimension ldw, transposed when trans): exact, as ldexp, but a multiply
 * where 2^e is a normal double (both round the exact product once). */
static void copy_scaled(const double *x, size_t rows, size_t cols, size_t ld, int e, bool trans, double *w,
                        size_t ldw)
{
    if (e < -1022 || e > 1023) {
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                w[trans ? j * ldw + i : i * ldw + j] = ldexp(x[i * ld + j], e);
        return;
    }
    const double f = ldexp(1.0, e);
    if (!trans) {
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                w[i * ldw + j] = x[i * ld + j] * f;
        return;
    }
    /* transposed in 16 x 16 tiles: both sides touch whole cache lines */
    for (size_t i0 = 0; i0 < rows; i0 += 16)
        for (size_t j0 = 0; j0 < cols; j0 += 16) {
            size_t i1 = min_sz(rows, i0 + 16), j1 = min_sz(cols, j0 + 16);
            for (size_t j = j0; j < j1; j++)
                for (size_t i = i0; i < i1; i++)
                    w[j * ldw + i] = x[i * ld + j] * f;
        }
}

/* The body of lti_lowrank_svd_f64 and lti_lowrank_svd_rule_f64 after the
 * argument checks: s gets k values; vectors for the first kk (chosen by
 * choose, else min(k, p)).  Factors with at least r rows each take the
 * tall-skinny QR, whose Q is applied to the kept columns only; others the
 * plain QR with Q formed. */
static lt_status lowrank(size_t m, size_t n, size_t r, const double *b, size_t ldb, double *b_scratch,
                         const double *a, size_t lda, size_t k, size_t (*choose)(void *, double *, size_t), void *ctx,
                         size_t *kk_out, double *u, size_t ldu, double *s, double *v, size_t ldv,
                         const char *fn, lt_error *err)
{
    double mb = max_abs(b, m, r, ldb), ma = max_abs(a, r, n, lda);
    if (mb < 0 || ma < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: matrix holds NaN or Inf", fn);
    size_t p = min_sz(min_sz(m, n), r), kk = min_sz(k, p);
    *kk_out = 0;
    if (p == 0) { /* an empty product: zero values and vectors, still as many as the rule keeps */
        zero_tail(0, k, m, n, u, ldu, s, v, ldv);
        *kk_out = choose ? min_sz(choose(ctx, s, k), k) : 0;
        return LT_OK;
    }
    const bool ts = m >= r && n >= r;
    const size_t kb = min_sz(m, r), ka = min_sz(n, r);
    const int eb = scale_exp(mb), ea = scale_exp(ma);
    bool fail = false;
    /* B's copy may be B itself (the caller's scratch, leading dimension r) */
    double *wb = b_scratch ? b_scratch : dalloc(m, r, &fail), *wa = dalloc(n, r, &fail);
    double *taub = dalloc(ts ? lti_tsqr_aux_count(m, r) : kb, 1, &fail);
    double *taua = dalloc(ts ? lti_tsqr_aux_count(n, r) : ka, 1, &fail), *work = dalloc(r, 1, &fail);
    double *rb = dalloc(kb, r, &fail), *ra = dalloc(ka, r, &fail), *core = dalloc(kb, ka, &fail);
    double *uc = dalloc(kb, p, &fail), *vc = dalloc(ka, p, &fail), *sc = dalloc(p, 1, &fail);
    lt_status st = LT_OK;
    if (fail) {
        st = lti_fail_nomem(err, fn);
        goto out;
    }
    /* B * 2^-eb and A^T * 2^-ea, exact scalings. */
    copy_scaled(b, m, r, ldb, -eb, false, wb, r);
    copy_scaled(a, r, n, lda, -ea, true, wa, r);
    if (ts) {
        if (!lti_tsqr_factor(m, r, wb, taub) || !lti_tsqr_factor(n, r, wa, taua)) {
            st = lti_fail_nomem(err, fn);
            goto out;
        }
    } else {
        lti_qr_factor(m, r, wb, r, taub, work);
        lti_qr_factor(n, r, wa, r, taua, work);
    }
    lti_qr_copy_r(kb, r, wb, r, rb, r);
    lti_qr_copy_r(ka, r, wa, r, ra, r);
    /* core = R_B R_A^T (kb x ka); B A = Q_B core Q_A^T. */
    st = lti_gemm_f64(false, true, kb, ka, r, 1.0, rb, r, ra, r, 0.0, core, ka, 1, err);
    if (st == LT_OK)
        st = svd_checked(kb, ka, core, ka, u ? uc : NULL, p, sc, v ? vc : NULL, p, fn, err);
    if (st != LT_OK)
        goto out;
    for (size_t c = 0; c < k; c++)
        s[c] = c < p ? ldexp(sc[c], eb + ea) : 0.0;
    size_t kz = kk; /* columns kk..kz exist but are zero (past p) */
    if (choose) {
        kz = min_sz(choose(ctx, s, k), k);
        kk = min_sz(kz, p);
    }
    for (int side = 0; side < 2 && st == LT_OK; side++) {
        double *out = side ? v : u, *vecs = side ? vc : uc, *w = side ? wa : wb, *aux = side ? taua : taub;
        size_t rows = side ? n : m, ldo = side ? ldv : ldu, kq = side ? ka : kb;
        if (!out || kk == 0)
            continue;
        if (ts) {
            /* the kept columns of the core's vectors, r x kk, rotated by Q */
            for (size_t i = 0; i < r; i++)
                memmove(vecs + i * kk, vecs + i * p, kk * sizeof *vecs);
            if (!lti_tsqr_apply_q(rows, r, w, aux, kk, vecs, out, ldo))
                st = lti_fail_nomem(err, fn);
            continue;
        }
        double *q = dalloc(rows, kq, &fail);
        if (!q) {
            st = lti_fail_nomem(err, fn);
            continue;
        }
        lti_qr_form_q(rows, r, w, r, aux, q, kq, work);
        st = lti_gemm_f64(false, false, rows, kk, kq, 1.0, q, kq, vecs, p, 0.0, out, ldo, 1, err);
        free(q);
    }
    if (st != LT_OK)
        goto out;
    *kk_out = kz;
    if (!choose)
        zero_tail(kk, k, m, n, u, ldu, s, v, ldv);
    else /* s[kk..kz) is 0 already */
        for (size_t c = kk; c < kz; c++) {
            for (size_t i = 0; u && i < m; i++)
                u[i * ldu + c] = 0;
            for (size_t i = 0; v && i < n; i++)
                v[i * ldv + c] = 0;
        }
out:
    if (!b_scratch)
        free(wb);
    free(wa), free(taub), free(taua), free(work), free(rb), free(ra), free(core);
    free(uc), free(vc), free(sc);
    return st;
}

/* The shared argument checks; ldu, ldv >= kcols. */
static lt_status lowrank_args(size_t m, size_t n, size_t r, const double *b, size_t ldb, const double *a,
                              size_t lda, size_t kcols, const double *u, size_t ldu, const double *s,
                              const double *v, size_t ldv, const char *fn, lt_error *err)
{
    if (!lti_matrix_extent_ok(m, r, ldb, sizeof(double)) || !lti_matrix_extent_ok(r, n, lda, sizeof(double)) ||
        (u && !lti_matrix_extent_ok(m, kcols, ldu, sizeof(double))) ||
        (v && !lti_matrix_extent_ok(n, kcols, ldv, sizeof(double))))
        return lti_fail(err, LT_ERR_USAGE, "%s: leading dimension too small or matrix too large", fn);
    if (kcols && (!s || (m && r && !b) || (r && n && !a)))
        return lti_fail(err, LT_ERR_USAGE, "%s: NULL matrix", fn);
    return LT_OK;
}

lt_status lti_lowrank_svd_f64(size_t m, size_t n, size_t r, const double *b, size_t ldb,
                             const double *a, size_t lda, size_t k, double *u, size_t ldu,
                             double *s, double *v, size_t ldv, lt_error *err)
{
    static const char fn[] = "SVD of a low-rank product";
    size_t kk;
    lt_status st = lowrank_args(m, n, r, b, ldb, a, lda, k, u, ldu, s, v, ldv, fn, err);
    if (st != LT_OK || k == 0)
        return st;
    return lowrank(m, n, r, b, ldb, NULL, a, lda, k, NULL, NULL, &kk, u, ldu, s, v, ldv, fn, err);
}

lt_status lti_lowrank_svd_rule_f64(size_t m, size_t n, size_t r, double *b, size_t ldb, bool b_scratch,
                                  const double *a, size_t lda,
                                  size_t (*choose)(void *ctx, double *s, size_t n_s), void *ctx,
                                  size_t *kk_out, double *u, size_t ldu, double *s, double *v,
                                  size_t ldv, lt_error *err)
{
    static const char fn[] = "SVD of a low-rank product";
    *kk_out = 0;
    lt_status st = lowrank_args(m, n, r, b, ldb, a, lda, r, u, ldu, s, v, ldv, fn, err);
    if (st != LT_OK || r == 0)
        return st;
    return lowrank(m, n, r, b, ldb, b_scratch && ldb == r ? b : NULL, a, lda, r, choose, ctx, kk_out, u, ldu, s,
                   v, ldv, fn, err);
}


/* ------------------------------------------------------------------ */
/* Randomized SVD                                                      */
/* ------------------------------------------------------------------ */

/* splitmix64 (Steele, Lea, Flood 2014): a fine stream for test matrices. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* n standard normal values, Box-Muller on pairs of uniforms. */
static void gaussian_fill(double *x, size_t n, uint64_t seed)
{
    uint64_t st = seed;
    const double two_pi = 6.283185307179586476925286766559;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = (double)((splitmix64(&st) >> 11) + 1) * 0x1p-53; /* (0, 1] */
        double u2 = (double)(splitmix64(&st) >> 11) * 0x1p-53;       /* [0, 1) */
        double rad = sqrt(-2.0 * log(u1));
        x[i] = rad * cos(two_pi * u2);
        if (i + 1 < n)
            x[i + 1] = rad * sin(two_pi * u2);
    }
}

typedef struct rsvd_op {
    size_t m, n, l;
    const float *w;
    size_t ldw;
    double *blk;      /* blk_rows x n f64 copy of some rows of W */
    size_t blk_rows;
    unsigned threads;
} rsvd_op;

/* out (m x l) = W x (x: n x l), or with trans out (n x l) = W^T x (x: m x l).
 * W is converted to f64 blk_rows rows at a time; W^T x is accumulated
 * block after block in row order (deterministic). */
static lt_status rsvd_apply(const rsvd_op *op, bool trans, const double *x, double *out,
                            lt_error *err)
{
    const size_t n = op->n, l = op->l;
    for (size_t i0 = 0; i0 < op->m; i0 += op->blk_rows) {
        size_t br = min_sz(op->blk_rows, op->m - i0);
        for (size_t i = 0; i < br; i++) {
            const float *src = op->w + (i0 + i) * op->ldw;
            double *dst = op->blk + i * n;
            for (size_t j = 0; j < n; j++)
                dst[j] = src[j];
        }
        lt_status st;
        if (!trans)
            st = lti_gemm_f64(false, false, br, l, n, 1.0, op->blk, n, x, l, 0.0, out + i0 * l, l,
                             op->threads, err);
        else
            st = lti_gemm_f64(true, false, n, l, br, 1.0, op->blk, n, x + i0 * l, l,
                             i0 == 0 ? 0.0 : 1.0, out, l, op->threads, err);
        if (st != LT_OK)
            return st;
    }
    return LT_OK;
}

/* y (rows x l, rows >= l) <- the Q of its thin QR. */
static void orthonormalize(double *y, size_t rows, size_t l, double *q, double *tau, double *work)
{
    lti_qr_factor(rows, l, y, l, tau, work);
    lti_qr_form_q(rows, l, y, l, tau, q, l, work);
    memcpy(y, q, rows * l * sizeof(double));
}

lt_status lti_randomized_svd_f64(size_t m, size_t n, const float *w, size_t ldw, size_t k,
                                size_t oversample, unsigned power_iters, uint64_t seed,
                                unsigned threads, double *u, size_t ldu, double *s, double *v,
                                size_t ldv, lt_error *err)
{
    static const char fn[] = "randomized SVD";
    if (!lti_matrix_extent_ok(m, n, ldw, sizeof(float)) || (u && !lti_matrix_extent_ok(m, k, ldu, sizeof(double))) ||
        (v && !lti_matrix_extent_ok(n, k, ldv, sizeof(double))))
        return lti_fail(err, LT_ERR_USAGE, "%s: leading dimension too small or matrix too large", fn);
    if (k == 0)
        return LT_OK;
    if (!s || (m && n && !w))
        return lti_fail(err, LT_ERR_USAGE, "%s: NULL matrix", fn);
    for (size_t i = 0; i < m; i++) {
        const float *row = w + i * ldw;
        float acc = 0;
        for (size_t j = 0; j < n; j++)
            acc += row[j] * 0.0f; /* NaN iff some element is NaN or Inf */
        if (acc != 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: matrix holds NaN or Inf", fn);
    }
    size_t p = min_sz(m, n), l;
    if (__builtin_add_overflow(k, oversample, &l))
        l = SIZE_MAX;
    l = min_sz(l, p);
    size_t kk = min_sz(k, p);
    if (p == 0) {
        zero_tail(0, k, m, n, u, ldu, s, v, ldv);
        return LT_OK;
    }
    size_t big = m > n ? m : n;
    rsvd_op op = {.m = m, .n = n, .l = l, .w = w, .ldw = ldw, .threads = threads};
    op.blk_rows = n >= (1u << 20) ? 1 : min_sz(m, ((size_t)1 << 20) / n); /* ~8 MiB */
    bool fail = false;
    op.blk = dalloc(op.blk_rows, n, &fail);
    double *y = dalloc(m, l, &fail), *z = dalloc(n, l, &fail), *q = dalloc(big, l, &fail);
    double *tau = dalloc(l, 1, &fail), *work = dalloc(l, 1, &fail);
    double *ub = dalloc(n, l, &fail), *vb = dalloc(l, l, &fail), *sb = dalloc(l, 1, &fail);
    lt_status st = LT_OK;
    if (fail) {
        st = lti_fail_nomem(err, fn);
        goto out;
    }
    /* Y = W Omega, Omega n x l Gaussian; Q = orth(Y). */
    gaussian_fill(z, n * l, seed);
    st = rsvd_apply(&op, false, z, y, err);
    if (st != LT_OK)
        goto out;
    orthonormalize(y, m, l, q, tau, work);
    for (unsigned it = 0; it < power_iters; it++) { /* Halko alg. 4.4 */
        if ((st = rsvd_apply(&op, true, y, z, err)) != LT_OK)
            goto out;
        orthonormalize(z, n, l, q, tau, work);
        if ((st = rsvd_apply(&op, false, z, y, err)) != LT_OK)
            goto out;
        orthonormalize(y, m, l, q, tau, work);
    }
    /* B = Q^T W (l x n), held as B^T = W^T Q; B^T = Ub S Vb^T, so
     * W ~= Q B = (Q Vb) S Ub^T (Halko alg. 5.1). */
    if ((st = rsvd_apply(&op, true, y, z, err)) != LT_OK)
        goto out;
    st = svd_checked(n, l, z, l, v ? ub : NULL, l, sb, u ? vb : NULL, l, fn, err);
    if (st != LT_OK)
        goto out;
    if (u)
        st = lti_gemm_f64(false, false, m, kk, l, 1.0, y, l, vb, l, 0.0, u, ldu, 1, err);
    if (st != LT_OK)
        goto out;
    for (size_t i = 0; v && i < n; i++)
        for (size_t c = 0; c < kk; c++)
            v[i * ldv + c] = ub[i * l + c];
    for (size_t c = 0; c < kk; c++)
        s[c] = sb[c];
    zero_tail(kk, k, m, n, u, ldu, s, v, ldv);
out:
    free(op.blk), free(y), free(z), free(q), free(tau), free(work), free(ub), free(vb), free(sb);
    return st;
}

/* ------------------------------------------------------------------ */
/* Rank choice                                                         */
/* ------------------------------------------------------------------ */

size_t lti_rank_for_energy(const double *s, size_t n, double fraction)
{
    /* Squares of values beyond 2^500 would overflow: scale those (only). */
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(s[i]) > mx)
            mx = fabs(s[i]);
    double sc = mx > 0x1p500 ? ldexp(1.0, -scale_exp(mx)) : 1.0;
    double total = 0;
    for (size_t i = 0; i < n; i++)
        total += (s[i] * sc) * (s[i] * sc);
    if (!(total > 0))
        return 0;
    double target = fraction * total, cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += (s[i] * sc) * (s[i] * sc);
        if (cum >= target)
            return i + 1;
    }
    return n;
}

size_t lti_rank_for_ratio(const double *s, size_t n, double ratio)
{
    if (n == 0 || !(s[0] > 0))
        return 0;
    double cut = s[0] / ratio;
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] > cut)
            count++;
    return count;
}
