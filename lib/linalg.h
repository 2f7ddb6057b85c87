/*
 * linalg.h - the dense linear algebra behind resize, combine and extract
 * (spec/linalg.md).  Internal to libloratool; the tests include it.
 */
#ifndef LT_LINALG_H
#define LT_LINALG_H

#include "loratool.h"

/* Matrices are row-major: element (i, j) of a matrix with leading
 * dimension ld is p[i * ld + j], and ld >= its column count.  Every call
 * checks its sizes for overflow (LT_ERR_USAGE), refuses NaN or Inf in its
 * inputs (LT_ERR_INVALID, "...: matrix holds NaN or Inf") and reports
 * allocation failure as LT_ERR_NOMEM.  Outputs must not overlap inputs.
 * Results are the same bytes for any thread count. */

/* C = alpha * op(A) op(B) + beta * C, with op(A) m x k and op(B) k x n:
 * op(A) = A (stored m x k) or, with trans_a, A^T (A stored k x m); the same
 * for B.  When beta == 0, C is only written (it may hold anything).
 * Each element is accumulated in its own precision (f32 / f64) as
 * ((a_i0 b_0j + a_i1 b_1j) + ...) in that order, then alpha * sum + beta * c;
 * no fused multiply-add, so the bytes do not depend on the CPU either.
 * threads: worker threads, 0 = one per online processor. */
lt_status lti_gemm_f32(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                      size_t ldc, unsigned threads, lt_error *err);
lt_status lti_gemm_f64(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, double alpha,
                      const double *a, size_t lda, const double *b, size_t ldb, double beta,
                      double *c, size_t ldc, unsigned threads, lt_error *err);

/* Thin Householder QR of the m x n matrix A: A = Q R with p = min(m, n),
 * Q m x p with orthonormal columns (formed explicitly), R p x n upper
 * triangular (upper trapezoidal when n > m; zeros below the diagonal are
 * written).  Diagonal entries of R may be negative.  q or r may be NULL
 * when not wanted. */
lt_status lti_qr_f64(size_t m, size_t n, const double *a, size_t lda, double *q, size_t ldq,
                    double *r, size_t ldr, lt_error *err);

/* Thin SVD A = U diag(s) V^T of the m x n matrix A, p = min(m, n): s[p]
 * descending and >= 0, U m x p and V n x p with orthonormal columns (u or
 * v may be NULL).  One-sided Jacobi (Hestenes) on the triangular factor of
 * a QR; singular values carry an error of a few units of 1e-16 * ||A||_2
 * or better.  Zero and rank-deficient matrices are fine (singular vectors
 * of zero singular values complete the orthonormal sets).  A matrix on
 * which Jacobi does not converge in 60 sweeps gives LT_ERR_UNSUPPORTED
 * ("did not converge"); never seen in practice. */
lt_status lti_svd_f64(size_t m, size_t n, const double *a, size_t lda, double *u, size_t ldu,
                     double *s, double *v, size_t ldv, lt_error *err);

/* Truncated SVD of the product B A of B (m x r) and A (r x n), without
 * forming the m x n matrix: QR of B and of A^T, SVD of the small core
 * R_B R_A^T, rotate back (cost O((m + n) r^2)).  Returns the top k
 * triples: s[k] descending, U m x k, V n x k (u or v may be NULL), so that
 * B A ~= U diag(s) V^T, exactly when k >= min(m, n, r).  Triples beyond
 * min(m, n, r) do not exist: s is 0 there and those columns of U and V are
 * zero.  A weighted sum of adapters sum_i w_i B_i A_i is the product of the
 * concatenations [w_1 B_1 | ... | w_k B_k] (m x sum r_i) and
 * [A_1; ...; A_k] (sum r_i x n); the caller builds them and passes
 * r = sum r_i. */
lt_status lti_lowrank_svd_f64(size_t m, size_t n, size_t r, const double *b, size_t ldb,
                             const double *a, size_t lda, size_t k, double *u, size_t ldu,
                             double *s, double *v, size_t ldv, lt_error *err);

/* As lti_lowrank_svd_f64 with k = r singular values (s holds r; zero
 * beyond min(m, n, r)), but singular vectors only for the leading kk
 * triples, kk = choose(ctx, s, r) capped at min(m, n, r): the rank rule
 * sees every value (and may edit them, e.g. zero rounding noise) before any
 * vector is formed.  U is m x kk and V n x kk in arrays with ldu, ldv >= r
 * (columns kk.. untouched); *kk_out gets kk.  choose NULL keeps r.
 * b_scratch: B is the caller's to lose (with ldb == r it is factored in
 * place instead of copied, and holds garbage afterwards); else B is only
 * read.  The results are the same bytes either way. */
lt_status lti_lowrank_svd_rule_f64(size_t m, size_t n, size_t r, double *b, size_t ldb, bool b_scratch,
                                  const double *a, size_t lda,
                                  size_t (*choose)(void *ctx, double *s, size_t n_s), void *ctx,
                                  size_t *kk_out, double *u, size_t ldu, double *s, double *v,
                                  size_t ldv, lt_error *err);

/* Recommended settings for lti_randomized_svd_f64. */
#define LTI_RSVD_OVERSAMPLE 10
#define LTI_RSVD_POWER_ITERS 2

/* Approximate top-k SVD of a dense m x n f32 matrix W (a fine-tuned minus
 * base delta), computed in f64: randomized range finder with a Gaussian
 * test matrix of k + oversample columns drawn from SEED (same seed, same
 * result), power_iters power iterations with QR re-orthonormalization
 * between products, then an exact SVD of the projected matrix (Halko,
 * Martinsson, Tropp 2011, alg. 4.4 + 5.1).  Outputs as lti_lowrank_svd_f64:
 * s[k], U m x k, V n x k; triples beyond min(m, n) are zero.  Reads W
 * 2 * power_iters + 2 times; threads as for lti_gemm_f64. */
lt_status lti_randomized_svd_f64(size_t m, size_t n, const float *w, size_t ldw, size_t k,
                                size_t oversample, unsigned power_iters, uint64_t seed,
                                unsigned threads, double *u, size_t ldu, double *s, double *v,
                                size_t ldv, lt_error *err);

/* Rank choice on singular values s[0..n) sorted descending (finite, >= 0).
 * lti_rank_for_energy: the smallest k with sum_{i<k} s_i^2 >= fraction *
 * sum_i s_i^2 (sums accumulated in index order); at least 1 when the total
 * is positive, 0 when every s_i is 0; n when fraction > 1.
 * lti_rank_for_ratio: the number of i with s_i > s_0 / ratio (0 when s_0 is
 * 0). */
size_t lti_rank_for_energy(const double *s, size_t n, double fraction);
size_t lti_rank_for_ratio(const double *s, size_t n, double ratio);

/* ---- Householder building blocks (lib/linalg_qr.c), for the files
 * above; row-major f64, sizes already checked by the caller. ---- */

/* Euclidean norm of n elements at stride inc, without overflow or harmful
 * underflow. */
double lti_norm2(const double *x, size_t n, size_t inc);

/* In-place QR of W (m x n, leading dimension ldw): R on and above the
 * diagonal, reflector vectors v_j below it (v_j[j] = 1 implied),
 * H_j = I - tau[j] v_j v_j^T, A = H_0 ... H_{p-1} R, p = min(m, n).
 * work holds n doubles. */
void lti_qr_factor(size_t m, size_t n, double *w, size_t ldw, double *tau, double *work);

/* Q (m x p) = H_0 ... H_{p-1} I[:, :p] from lti_qr_factor's W and tau;
 * work holds p doubles. */
void lti_qr_form_q(size_t m, size_t n, const double *w, size_t ldw, const double *tau, double *q,
                   size_t ldq, double *work);

/* The p x n upper trapezoid of a factored W into r (zeros below). */
void lti_qr_copy_r(size_t m, size_t n, const double *w, size_t ldw, double *r, size_t ldr);

/* Tall-skinny Householder QR of W (m x r, leading dimension r, m >= r >=
 * 1), computed in cache-sized row blocks; Q is never formed.  On return
 * rows 0..r-1 of W hold R on and above the diagonal, the rest of W and AUX
 * (lti_tsqr_aux_count(m, r) doubles) the reflectors.  False: out of
 * memory (W is then unusable).  Same bytes on every thread count and ISA. */
size_t lti_tsqr_aux_count(size_t m, size_t r);
bool lti_tsqr_factor(size_t m, size_t r, double *w, double *aux);

/* U (m x k, leading dimension ldu) = Q [X] for the Q of lti_tsqr_factor's
 * W and AUX, X r x k (leading dimension k, overwritten): the leading
 * columns of Q rotated by X, at 4 m r k flops instead of forming Q.
 * False: out of memory. */
bool lti_tsqr_apply_q(size_t m, size_t r, const double *w, const double *aux, size_t k, double *x,
                      double *u, size_t ldu);

#endif
