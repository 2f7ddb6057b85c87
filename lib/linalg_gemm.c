/*
 * linalg_gemm.c - dense matrix products C = alpha * op(A) op(B) + beta * C
 * in f32 and f64 (spec/linalg.md).
 *
 * Layout: row-major, explicit leading dimensions.  C is cut into tiles of
 * GEMM_MC x GEMM_NC; worker threads take tiles from a shared counter.  Per
 * tile, k is walked in chunks of GEMM_KC: the A rows and B columns of the
 * chunk are packed (zero-padded) into contiguous panels and a register-tile
 * micro-kernel adds them into an accumulator tile T.  Every element of T
 * starts at 0 and receives its products a_ip * b_pj in the order p = 0, 1,
 * ..., k-1 one at a time (the micro-kernel vectorizes across columns of C,
 * never across p), so the result does not depend on the thread count, the
 * tile sizes, the chunking of k or the instruction set chosen at run time;
 * then c = alpha * t + beta * c (c not read when beta == 0).
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source_sink.h"
#include "linalg.h"

#define GEMM_MR 4      /* rows of the micro-kernel tile                  */
#define GEMM_MC 64     /* rows of a C tile (multiple of GEMM_MR)         */
#define GEMM_NC 128    /* columns of a C tile (multiple of both NRs)     */
#define GEMM_KC 256    /* depth of one packed chunk                      */
#define GEMM_NR32 16   /* micro-kernel columns, f32                      */
#define GEMM_NR64 8    /* micro-kernel columns, f64                      */
#define GEMM_MAX_THREADS 256
/* Below this many multiply-adds a product runs on the calling thread. */
#define GEMM_SERIAL_WORK (1u << 18)

#define LT_CLONES LT_TARGET_CLONES /* core.h */

typedef struct gemm_job {
    bool f64;
    bool ta, tb;
    size_t m, n, k;
    const void *a, *b;
    void *c;
    size_t lda, ldb, ldc;
    double alpha64, beta64;
    float alpha32, beta32;
    size_t tiles_n, tiles;
    atomic_size_t next;   /* next tile to claim                           */
    atomic_size_t done;   /* tiles finished                               */
} gemm_job;

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }
static size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

/* The micro-kernels: t[i][j] += sum_p ap[p][i] * bp[p][j] for a 4 x NR
 * tile, p in order, one multiply and one add per product.  The tile lives
 * in eight named 32-byte vectors (gcc keeps an array of them in memory):
 * ymm registers in the AVX2 clone, xmm pairs in the baseline one; the
 * element-wise IEEE operations are the same in both. */
typedef double v4d __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));

#define LT_VEC_IO(V, T)                                                                \
    static inline V ld_##V(const T *p)                                                 \
    {                                                                                  \
        V x;                                                                           \
        memcpy(&x, p, sizeof x);                                                       \
        return x;                                                                      \
    }                                                                                  \
    static inline void st_##V(T *p, V x) { memcpy(p, &x, sizeof x); }
LT_VEC_IO(v4d, double)
LT_VEC_IO(v8f, float)

#define LT_GEMM_KERNEL(T, V, SUF, NR, W)                                               \
    LT_CLONES static void kern_##SUF(size_t kc, const T *restrict ap,                 \
                                     const T *restrict bp, T *restrict t, size_t ldt)  \
    {                                                                                  \
        V c00 = ld_##V(t), c01 = ld_##V(t + W);                                        \
        V c10 = ld_##V(t + ldt), c11 = ld_##V(t + ldt + W);                            \
        V c20 = ld_##V(t + 2 * ldt), c21 = ld_##V(t + 2 * ldt + W);                    \
        V c30 = ld_##V(t + 3 * ldt), c31 = ld_##V(t + 3 * ldt + W);                    \
        for (size_t p = 0; p < kc; p++) {                                              \
            const V b0 = ld_##V(bp + p * NR), b1 = ld_##V(bp + p * NR + W);            \
            const T *av = ap + p * GEMM_MR;                                            \
            c00 += av[0] * b0, c01 += av[0] * b1;                                      \
            c10 += av[1] * b0, c11 += av[1] * b1;                                      \
            c20 += av[2] * b0, c21 += av[2] * b1;                                      \
            c30 += av[3] * b0, c31 += av[3] * b1;                                      \
        }                                                                              \
        st_##V(t, c00), st_##V(t + W, c01);                                            \
        st_##V(t + ldt, c10), st_##V(t + ldt + W, c11);                                \
        st_##V(t + 2 * ldt, c20), st_##V(t + 2 * ldt + W, c21);                        \
        st_##V(t + 3 * ldt, c30), st_##V(t + 3 * ldt + W, c31);                        \
    }
_Static_assert(GEMM_MR == 4 && GEMM_NR32 == 16 && GEMM_NR64 == 8, "the kernels are written for 4 x 2 vectors");
LT_GEMM_KERNEL(float, v8f, f32, GEMM_NR32, 8)
LT_GEMM_KERNEL(double, v4d, f64, GEMM_NR64, 4)

/*
 * The typed parts: micro-kernel, packing and one tile.  Instantiated for
 * float (NR 16) and double (NR 8).
 */
#define LT_GEMM_TYPED(T, SUF, NR, ALPHA, BETA)                                         \
    static void tile_##SUF(const gemm_job *job, size_t tile, T *apack, T *bpack,       \
                           T *tbuf)                                                    \
    {                                                                                  \
        const T *a = job->a, *b = job->b;                                              \
        T *c = job->c;                                                                 \
        const size_t i0 = tile / job->tiles_n * GEMM_MC;                               \
        const size_t j0 = tile % job->tiles_n * GEMM_NC;                               \
        const size_t mc = min_sz(GEMM_MC, job->m - i0);                                \
        const size_t nc = min_sz(GEMM_NC, job->n - j0);                                \
        const size_t mcp = round_up(mc, GEMM_MR), ncp = round_up(nc, NR);              \
        const size_t lda = job->lda, ldb = job->ldb, ldc = job->ldc;                   \
        memset(tbuf, 0, mcp * ncp * sizeof(T));                                        \
        for (size_t p0 = 0; p0 < job->k; p0 += GEMM_KC) {                              \
            const size_t kc = min_sz(GEMM_KC, job->k - p0);                            \
            /* A panel: for each group of MR rows, kc x MR, row index fastest. */      \
            for (size_t ir = 0; ir < mcp; ir += GEMM_MR) {                             \
                T *dst = apack + ir * kc;                                              \
                for (size_t ii = 0; ii < GEMM_MR; ii++) {                              \
                    const size_t i = i0 + ir + ii;                                     \
                    if (ir + ii >= mc) {                                               \
                        for (size_t p = 0; p < kc; p++)                                \
                            dst[p * GEMM_MR + ii] = 0;                                 \
                    } else if (!job->ta) {                                             \
                        const T *src = a + i * lda + p0;                               \
                        for (size_t p = 0; p < kc; p++)                                \
                            dst[p * GEMM_MR + ii] = src[p];                            \
                    } else {                                                           \
                        for (size_t p = 0; p < kc; p++)                                \
                            dst[p * GEMM_MR + ii] = a[(p0 + p) * lda + i];             \
                    }                                                                  \
                }                                                                      \
            }                                                                          \
            /* B panel: for each group of NR columns, kc x NR, column fastest. */      \
            for (size_t jr = 0; jr < ncp; jr += NR) {                                  \
                T *dst = bpack + jr * kc;                                              \
                const size_t w = nc > jr ? min_sz(NR, nc - jr) : 0;                    \
                for (size_t p = 0; p < kc; p++) {                                      \
                    T *d = dst + p * NR;                                               \
                    if (!job->tb) {                                                    \
                        const T *src = b + (p0 + p) * ldb + j0 + jr;                   \
                        for (size_t jj = 0; jj < w; jj++)                              \
                            d[jj] = src[jj];                                           \
                    } else {                                                           \
                        for (size_t jj = 0; jj < w; jj++)                              \
                            d[jj] = b[(j0 + jr + jj) * ldb + p0 + p];                  \
                    }                                                                  \
                    for (size_t jj = w; jj < NR; jj++)                                 \
                        d[jj] = 0;                                                     \
                }                                                                      \
            }                                                                          \
            for (size_t jr = 0; jr < ncp; jr += NR)                                    \
                for (size_t ir = 0; ir < mcp; ir += GEMM_MR)                           \
                    kern_##SUF(kc, apack + ir * kc, bpack + jr * kc,                   \
                               tbuf + ir * ncp + jr, ncp);                             \
        }                                                                              \
        const T alpha = job->ALPHA, beta = job->BETA;                                  \
        for (size_t i = 0; i < mc; i++) {                                              \
            T *crow = c + (i0 + i) * ldc + j0;                                         \
            const T *trow = tbuf + i * ncp;                                            \
            if (beta == 0) {                                                           \
                for (size_t j = 0; j < nc; j++)                                        \
                    crow[j] = alpha * trow[j];                                         \
            } else {                                                                   \
                for (size_t j = 0; j < nc; j++)                                        \
                    crow[j] = alpha * trow[j] + beta * crow[j];                        \
            }                                                                          \
        }                                                                              \
    }

LT_GEMM_TYPED(float, f32, GEMM_NR32, alpha32, beta32)
LT_GEMM_TYPED(double, f64, GEMM_NR64, alpha64, beta64)

/* Claim tiles until none are left.  Returns NULL; a worker that cannot
 * allocate its buffers claims nothing (the caller notices tiles undone). */
static void *gemm_worker(void *arg)
{
    gemm_job *job = arg;
    size_t es = job->f64 ? sizeof(double) : sizeof(float);
    size_t kc = job->k ? min_sz(GEMM_KC, job->k) : 1;
    void *apack = malloc(GEMM_MC * kc * es);
    void *bpack = malloc(GEMM_NC * kc * es);
    void *tbuf = malloc(GEMM_MC * GEMM_NC * es);
    if (apack && bpack && tbuf) {
        for (;;) {
            size_t t = atomic_fetch_add(&job->next, 1);
            if (t >= job->tiles)
                break;
            if (job->f64)
                tile_f64(job, t, apack, bpack, tbuf);
            else
                tile_f32(job, t, apack, bpack, tbuf);
            atomic_fetch_add(&job->done, 1);
        }
    }
    free(apack);
    free(bpack);
    free(tbuf);
    return NULL;
}

/* True when rows x cols at p (leading dimension ld) are all finite. */
static bool finite_f32(const float *p, size_t rows, size_t cols, size_t ld)
{
    for (size_t i = 0; i < rows; i++) {
        const float *r = p + i * ld;
        v8f acc = {0};
        float tail = 0;
        size_t j = 0;
        for (; j + 8 <= cols; j += 8)
            acc += ld_v8f(r + j) * 0.0f; /* NaN iff some element is NaN or Inf */
        for (; j < cols; j++)
            tail += r[j] * 0.0f;
        for (int e = 0; e < 8; e++)
            tail += acc[e];
        if (tail != 0)
            return false;
    }
    return true;
}

static bool finite_f64(const double *p, size_t rows, size_t cols, size_t ld)
{
    for (size_t i = 0; i < rows; i++) {
        const double *r = p + i * ld;
        v4d acc = {0};
        double tail = 0;
        size_t j = 0;
        for (; j + 4 <= cols; j += 4)
            acc += ld_v4d(r + j) * 0.0;
        for (; j < cols; j++)
            tail += r[j] * 0.0;
        for (int e = 0; e < 4; e++)
            tail += acc[e];
        if (tail != 0)
            return false;
    }
    return true;
}


static lt_status gemm_run(gemm_job *job, unsigned threads, const char *fn, lt_error *err)
{
    const size_t m = job->m, n = job->n, k = job->k;
    const size_t es = job->f64 ? sizeof(double) : sizeof(float);
    size_t ar = job->ta ? k : m, ac = job->ta ? m : k;
    size_t br = job->tb ? n : k, bc = job->tb ? k : n;
    if (!lti_matrix_extent_ok(ar, ac, job->lda, es) || !lti_matrix_extent_ok(br, bc, job->ldb, es) ||
        !lti_matrix_extent_ok(m, n, job->ldc, es))
        return lti_fail(err, LT_ERR_USAGE, "%s: leading dimension too small or matrix too large", fn);
    if (m == 0 || n == 0) /* nothing to write, nothing read */
        return LT_OK;
    if (!job->c || (k && (!job->a || !job->b)))
        return lti_fail(err, LT_ERR_USAGE, "%s: NULL matrix", fn);
    bool beta_zero = job->f64 ? job->beta64 == 0 : job->beta32 == 0;
    bool ok = job->f64 ? finite_f64(job->a, ar, ac, job->lda) && finite_f64(job->b, br, bc, job->ldb)
                       : finite_f32(job->a, ar, ac, job->lda) && finite_f32(job->b, br, bc, job->ldb);
    if (ok && !beta_zero)
        ok = job->f64 ? finite_f64(job->c, m, n, job->ldc) : finite_f32(job->c, m, n, job->ldc);
    if (ok)
        ok = job->f64 ? isfinite(job->alpha64) && isfinite(job->beta64)
                      : isfinite(job->alpha32) && isfinite(job->beta32);
    if (!ok)
        return lti_fail(err, LT_ERR_INVALID, "%s: matrix holds NaN or Inf", fn);

    size_t tiles_m = (m + GEMM_MC - 1) / GEMM_MC;
    job->tiles_n = (n + GEMM_NC - 1) / GEMM_NC;
    job->tiles = tiles_m * job->tiles_n; /* <= m * n, no overflow */
    atomic_init(&job->next, 0);
    atomic_init(&job->done, 0);

    size_t nt = threads;
    if (nt == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        nt = online > 0 ? (size_t)online : 1;
    }
    if (nt > job->tiles)
        nt = job->tiles;
    if (nt > GEMM_MAX_THREADS)
        nt = GEMM_MAX_THREADS;
    /* m*n*k multiply-adds; small products are not worth a thread. */
    size_t work;
    if (!__builtin_mul_overflow(m, n, &work) && !__builtin_mul_overflow(work, k, &work) &&
        work < GEMM_SERIAL_WORK)
        nt = 1;
    pthread_t tid[GEMM_MAX_THREADS];
    size_t started = 0;
    for (; started + 1 < nt; started++)
        if (pthread_create(&tid[started], NULL, gemm_worker, job) != 0)
            break;
    gemm_worker(job);
    for (size_t i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    if (atomic_load(&job->done) != job->tiles)
        return lti_fail_nomem(err, fn);
    return LT_OK;
}

lt_status lti_gemm_f32(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                      const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                      size_t ldc, unsigned threads, lt_error *err)
{
    gemm_job job = {.f64 = false, .ta = trans_a, .tb = trans_b, .m = m, .n = n, .k = k,
                    .a = a, .b = b, .c = c, .lda = lda, .ldb = ldb, .ldc = ldc,
                    .alpha32 = alpha, .beta32 = beta};
    return gemm_run(&job, threads, "matrix product", err);
}

lt_status lti_gemm_f64(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, double alpha,
                      const double *a, size_t lda, const double *b, size_t ldb, double beta,
                      double *c, size_t ldc, unsigned threads, lt_error *err)
{
    gemm_job job = {.f64 = true, .ta = trans_a, .tb = trans_b, .m = m, .n = n, .k = k,
                    .a = a, .b = b, .c = c, .lda = lda, .ldb = ldb, .ldc = ldc,
                    .alpha64 = alpha, .beta64 = beta};
    return gemm_run(&job, threads, "matrix product", err);
}
