/*
 * test_linalg.c - GEMM, QR, Jacobi SVD, low-rank SVD, randomized SVD and
 * the rank helpers, against numpy/LAPACK references
 * (testdata/make_linalg_ref.py).  Usage: test_linalg [REFERENCE_DIR],
 * default build/testdata/linalg; missing reference files are a failure.
 * Set LT_TEST_VERBOSE=1 to print the measured errors.
 */
#include <float.h>
#include <math.h>

#include "check.h"
#include "loratool.h"
#include "linalg.h"

static const char *reference_dir = "build/testdata/linalg";
static int verbose;

/* ------------------------------------------------------------------ */
/* Reference files                                                     */
/* ------------------------------------------------------------------ */

/* Load REFERENCE_DIR/name, which must hold exactly count elements of
 * elem_size bytes; NULL (and a failed check) otherwise. */
static void *ref_load(const char *name, size_t count, size_t elem_size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", reference_dir, name);
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s (run testdata/make_linalg_ref.py first)", path);
    if (!f)
        return NULL;
    void *buf = malloc(count * elem_size + 1);
    size_t got = buf ? fread(buf, elem_size, count, f) : 0;
    int extra = fgetc(f);
    fclose(f);
    CHECK_MSG(got == count && extra == EOF, "%s: expected %zu elements", path, count);
    if (got != count || extra != EOF) {
        free(buf);
        return NULL;
    }
    return buf;
}

static double *load_f64(const char *name, size_t count) { return ref_load(name, count, 8); }
static float *load_f32(const char *name, size_t count) { return ref_load(name, count, 4); }

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static double frob(const double *a, size_t m, size_t n, size_t ld)
{
    double s = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            s += a[i * ld + j] * a[i * ld + j];
    return sqrt(s);
}

/* max |X^T X - I| for X (rows x cols, leading dimension ld). */
static double orth_error(const double *x, size_t rows, size_t cols, size_t ld)
{
    double worst = 0;
    for (size_t a = 0; a < cols; a++)
        for (size_t b = 0; b < cols; b++) {
            double d = 0;
            for (size_t i = 0; i < rows; i++)
                d += x[i * ld + a] * x[i * ld + b];
            d -= a == b ? 1.0 : 0.0;
            if (fabs(d) > worst)
                worst = fabs(d);
        }
    return worst;
}

/* ||U diag(s) V^T - A||_F with U m x k, V n x k. */
static double recon_error(const double *a, size_t lda, const double *u, const double *s,
                          const double *v, size_t m, size_t n, size_t k)
{
    double sum = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double x = 0;
            for (size_t c = 0; c < k; c++)
                x += u[i * k + c] * s[c] * v[j * k + c];
            x -= a[i * lda + j];
            sum += x * x;
        }
    return sqrt(sum);
}

/* Singular values agree: |s - ref| <= rel * ref + floor * ref[0] for each
 * value.  floor covers values that are rounding noise in both (zero
 * singular values of rank-deficient matrices).  Returns the largest
 * relative error among values above the floor. */
static double check_values(const char *what, const double *s, const double *ref, size_t p,
                           double rel, double floor)
{
    double worst = 0;
    for (size_t i = 0; i < p; i++) {
        double d = fabs(s[i] - ref[i]);
        CHECK_MSG(d <= rel * ref[i] + floor * ref[0], "%s: s[%zu] = %.17g, numpy %.17g", what, i,
                  s[i], ref[i]);
        CHECK_MSG(s[i] >= 0 && (i == 0 || s[i] <= s[i - 1]), "%s: s not descending at %zu", what, i);
        if (ref[i] > 1e3 * floor * ref[0] && d / ref[i] > worst)
            worst = d / ref[i];
    }
    return worst;
}

/* ------------------------------------------------------------------ */
/* GEMM                                                                */
/* ------------------------------------------------------------------ */

typedef struct gemm_case {
    const char *name;
    bool ta, tb;
    size_t m, n, k;
    double alpha, beta;
} gemm_case;

static const gemm_case gemm_cases[] = {
    {"g1", false, false, 1, 1, 1, 1.0, 0.0},
    {"g2nn", false, false, 17, 33, 65, 1.0, 0.0},
    {"g2tn", true, false, 17, 33, 65, 0.5, 0.0},
    {"g2nt", false, true, 17, 33, 65, 1.0, 2.0},
    {"g2tt", true, true, 17, 33, 65, -1.5, 0.25},
    {"g3", false, false, 256, 300, 70, 1.0, 0.0},
    {"g3tt", true, true, 256, 300, 70, 0.75, -0.5},
    {"g4", false, false, 130, 260, 600, 1.0, 1.0},
};

typedef struct gemm_data {
    float *a, *b, *c0;
    double *ref, *bound;
    size_t ar, ac, br, bc; /* stored shapes */
} gemm_data;

static bool gemm_load(const gemm_case *g, gemm_data *d)
{
    char name[256];
    d->ar = g->ta ? g->k : g->m, d->ac = g->ta ? g->m : g->k;
    d->br = g->tb ? g->n : g->k, d->bc = g->tb ? g->k : g->n;
    snprintf(name, sizeof name, "gemm_%s_a.f32", g->name);
    d->a = load_f32(name, d->ar * d->ac);
    snprintf(name, sizeof name, "gemm_%s_b.f32", g->name);
    d->b = load_f32(name, d->br * d->bc);
    snprintf(name, sizeof name, "gemm_%s_c0.f32", g->name);
    d->c0 = load_f32(name, g->m * g->n);
    snprintf(name, sizeof name, "gemm_%s_ref.f64", g->name);
    d->ref = load_f64(name, g->m * g->n);
    snprintf(name, sizeof name, "gemm_%s_bound.f64", g->name);
    d->bound = load_f64(name, g->m * g->n);
    return d->a && d->b && d->c0 && d->ref && d->bound;
}

static void gemm_free(gemm_data *d)
{
    free(d->a), free(d->b), free(d->c0), free(d->ref), free(d->bound);
}

/* Copy rows x cols into a buffer with leading dimension cols + 3 whose
 * padding holds NaN (never to be read). */
static float *pad_f32(const float *x, size_t rows, size_t cols)
{
    size_t ld = cols + 3;
    float *p = malloc(rows * ld * sizeof *p);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < ld; j++)
            p[i * ld + j] = j < cols ? x[i * cols + j] : NAN;
    return p;
}

static double *pad_f64(const float *x, size_t rows, size_t cols)
{
    size_t ld = cols + 3;
    double *p = malloc(rows * ld * sizeof *p);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < ld; j++)
            p[i * ld + j] = j < cols ? x[i * cols + j] : NAN;
    return p;
}

/* f32 and f64 products vs numpy's float64 result.  Error bound for a
 * k-term dot product plus the alpha/beta step: (k + 3) u sum|a_ip b_pj|
 * (+ |beta c|), u the unit roundoff; the f64 reference itself carries the
 * same kind of error at 2^-53, hence the doubled f64 bound. */
static void test_gemm_vs_numpy(void)
{
    double worst32 = 0, worst64 = 0;
    for (size_t ci = 0; ci < sizeof gemm_cases / sizeof *gemm_cases; ci++) {
        const gemm_case *g = &gemm_cases[ci];
        gemm_data d;
        if (!gemm_load(g, &d)) {
            gemm_free(&d);
            continue;
        }
        size_t ldc = g->n + 3;
        float *a = pad_f32(d.a, d.ar, d.ac), *b = pad_f32(d.b, d.br, d.bc);
        float *c = pad_f32(d.c0, g->m, g->n);
        double *a64 = pad_f64(d.a, d.ar, d.ac), *b64 = pad_f64(d.b, d.br, d.bc);
        double *c64 = pad_f64(d.c0, g->m, g->n);
        lt_error err = {0};
        lt_status st = lti_gemm_f32(g->ta, g->tb, g->m, g->n, g->k, (float)g->alpha, a, d.ac + 3, b,
                                   d.bc + 3, (float)g->beta, c, ldc, 0, &err);
        CHECK_MSG(st == LT_OK, "%s: %s", g->name, err.message);
        st = lti_gemm_f64(g->ta, g->tb, g->m, g->n, g->k, g->alpha, a64, d.ac + 3, b64, d.bc + 3,
                         g->beta, c64, ldc, 0, &err);
        CHECK_MSG(st == LT_OK, "%s: %s", g->name, err.message);
        double tol32 = (double)(g->k + 3) * 0x1p-24, tol64 = 2.0 * (double)(g->k + 3) * 0x1p-53;
        for (size_t i = 0; i < g->m; i++) {
            for (size_t j = 0; j < g->n; j++) {
                double ref = d.ref[i * g->n + j], bound = d.bound[i * g->n + j];
                double e32 = fabs(c[i * ldc + j] - ref), e64 = fabs(c64[i * ldc + j] - ref);
                CHECK_MSG(e32 <= tol32 * bound, "%s f32 (%zu,%zu): %.9g vs %.17g", g->name, i, j,
                          c[i * ldc + j], ref);
                CHECK_MSG(e64 <= tol64 * bound, "%s f64 (%zu,%zu): %.17g vs %.17g", g->name, i, j,
                          c64[i * ldc + j], ref);
                if (bound > 0) {
                    worst32 = fmax(worst32, e32 / (bound * 0x1p-24));
                    worst64 = fmax(worst64, e64 / (bound * 0x1p-53));
                }
            }
            for (size_t j = g->n; j < ldc; j++)
                CHECK_MSG(isnan(c[i * ldc + j]) && isnan(c64[i * ldc + j]),
                          "%s: padding of C written", g->name);
        }
        free(a), free(b), free(c), free(a64), free(b64), free(c64);
        gemm_free(&d);
    }
    if (verbose)
        printf("  gemm: max error / (u sum|ab|): f32 %.3g, f64 %.3g\n", worst32, worst64);
}

/* The documented order: t = ((a_0 b_0 + a_1 b_1) + ...) in the element
 * type, then alpha t + beta c.  A plain loop doing exactly that must give
 * the same bits, whatever ISA clone and thread count the library used. */
static void test_gemm_exact_order(void)
{
    for (size_t ci = 0; ci < sizeof gemm_cases / sizeof *gemm_cases; ci++) {
        const gemm_case *g = &gemm_cases[ci];
        gemm_data d;
        if (!gemm_load(g, &d)) {
            gemm_free(&d);
            continue;
        }
        float *c = malloc(g->m * g->n * sizeof *c);
        double *c64 = malloc(g->m * g->n * sizeof *c64);
        double *a64 = malloc(d.ar * d.ac * sizeof *a64), *b64 = malloc(d.br * d.bc * sizeof *b64);
        for (size_t i = 0; i < d.ar * d.ac; i++)
            a64[i] = d.a[i];
        for (size_t i = 0; i < d.br * d.bc; i++)
            b64[i] = d.b[i];
        memcpy(c, d.c0, g->m * g->n * sizeof *c);
        for (size_t i = 0; i < g->m * g->n; i++)
            c64[i] = d.c0[i];
        lt_error err;
        CHECK(lti_gemm_f32(g->ta, g->tb, g->m, g->n, g->k, (float)g->alpha, d.a, d.ac, d.b, d.bc,
                          (float)g->beta, c, g->n, 3, &err) == LT_OK);
        CHECK(lti_gemm_f64(g->ta, g->tb, g->m, g->n, g->k, g->alpha, a64, d.ac, b64, d.bc, g->beta,
                          c64, g->n, 3, &err) == LT_OK);
        size_t bad32 = 0, bad64 = 0;
        for (size_t i = 0; i < g->m; i++)
            for (size_t j = 0; j < g->n; j++) {
                float t = 0;
                double t64 = 0;
                for (size_t p = 0; p < g->k; p++) {
                    size_t ia = g->ta ? p * d.ac + i : i * d.ac + p;
                    size_t ib = g->tb ? j * d.bc + p : p * d.bc + j;
                    t += d.a[ia] * d.b[ib];
                    t64 += a64[ia] * b64[ib];
                }
                float want = g->beta == 0 ? (float)g->alpha * t
                                          : (float)g->alpha * t + (float)g->beta * d.c0[i * g->n + j];
                double want64 = g->beta == 0 ? g->alpha * t64
                                             : g->alpha * t64 + g->beta * (double)d.c0[i * g->n + j];
                bad32 += memcmp(&want, &c[i * g->n + j], sizeof want) != 0;
                bad64 += memcmp(&want64, &c64[i * g->n + j], sizeof want64) != 0;
            }
        CHECK_MSG(bad32 == 0 && bad64 == 0, "%s: %zu f32 and %zu f64 elements differ from the "
                  "sequential sum", g->name, bad32, bad64);
        free(c), free(c64), free(a64), free(b64);
        gemm_free(&d);
    }
}

/* Deterministic: the same bytes for 1, 2, 3 and 7 threads. */
static void test_gemm_threads(void)
{
    const size_t m = 300, n = 500, k = 700;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
    double *a64 = malloc(m * k * sizeof *a64), *b64 = malloc(k * n * sizeof *b64);
    uint64_t x = 12345;
    for (size_t i = 0; i < m * k; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        a64[i] = a[i] = (float)((double)(x >> 11) * 0x1p-53 - 0.5);
    }
    for (size_t i = 0; i < k * n; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        b64[i] = b[i] = (float)((double)(x >> 11) * 0x1p-53 - 0.5);
    }
    static const unsigned counts[] = {1, 2, 3, 7};
    float *c[4];
    double *c64[4];
    for (int t = 0; t < 4; t++) {
        lt_error err;
        c[t] = malloc(m * n * sizeof(float));
        c64[t] = malloc(m * n * sizeof(double));
        CHECK(lti_gemm_f32(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, c[t], n, counts[t], &err) ==
              LT_OK);
        CHECK(lti_gemm_f64(true, false, m, n, k, 1.0, a64, m, b64, n, 0.0, c64[t], n, counts[t],
                          &err) == LT_OK);
        if (t > 0) {
            CHECK_MSG(memcmp(c[0], c[t], m * n * sizeof(float)) == 0, "f32: %u threads differ",
                      counts[t]);
            CHECK_MSG(memcmp(c64[0], c64[t], m * n * sizeof(double)) == 0, "f64: %u threads differ",
                      counts[t]);
        }
    }
    for (int t = 0; t < 4; t++)
        free(c[t]), free(c64[t]);
    free(a), free(b), free(a64), free(b64);
}

static void test_gemm_edges(void)
{
    lt_error err;
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c[4] = {1, 2, 3, 4};
    /* k = 0: C = beta C */
    CHECK(lti_gemm_f32(false, false, 2, 2, 0, 1.0f, a, 1, b, 2, 2.0f, c, 2, 1, &err) == LT_OK);
    CHECK(c[0] == 2 && c[1] == 4 && c[2] == 6 && c[3] == 8);
    /* beta = 0: C is not read (NaN there is fine) */
    float cn[4] = {NAN, NAN, NAN, NAN};
    CHECK(lti_gemm_f32(false, false, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, cn, 2, 1, &err) == LT_OK);
    /* [1 2 3; 4 5 6] [1 0; 0 1; 1 1] = [4 5; 10 11] */
    CHECK(cn[0] == 4 && cn[1] == 5 && cn[2] == 10 && cn[3] == 11);
    /* empty */
    CHECK(lti_gemm_f32(false, false, 0, 5, 3, 1.0f, NULL, 3, NULL, 5, 0.0f, NULL, 5, 1, &err) == LT_OK);
    /* leading dimension too small */
    CHECK(lti_gemm_f32(false, false, 2, 2, 3, 1.0f, a, 2, b, 2, 0.0f, c, 2, 1, &err) == LT_ERR_USAGE);
    /* size overflow */
    CHECK(lti_gemm_f64(false, false, SIZE_MAX / 2, 2, 3, 1.0, (double *)c, 3, (double *)b, 2, 0.0,
                      (double *)c, 2, 1, &err) == LT_ERR_USAGE);
    /* NaN / Inf refused */
    a[4] = NAN;
    err.message[0] = 0;
    CHECK(lti_gemm_f32(false, false, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2, 1, &err) == LT_ERR_INVALID);
    CHECK(strstr(err.message, "NaN or Inf") != NULL);
    a[4] = 5;
    b[1] = INFINITY;
    CHECK(lti_gemm_f32(false, false, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2, 1, &err) == LT_ERR_INVALID);
    b[1] = 0;
    c[0] = NAN; /* read when beta != 0 */
    CHECK(lti_gemm_f32(false, false, 2, 2, 3, 1.0f, a, 3, b, 2, 1.0f, c, 2, 1, &err) == LT_ERR_INVALID);
    double a64[4] = {1, 2, 3, -INFINITY}, c64[4];
    CHECK(lti_gemm_f64(false, false, 2, 2, 2, 1.0, a64, 2, a64, 2, 0.0, c64, 2, 1, &err) ==
          LT_ERR_INVALID);
}

/* ------------------------------------------------------------------ */
/* QR                                                                  */
/* ------------------------------------------------------------------ */

static void test_qr(void)
{
    static const struct { const char *name; size_t m, n; bool full_rank; } cases[] = {
        {"tall", 50, 20, true}, {"wide", 20, 50, true}, {"rankdef", 30, 30, false},
        {"one", 1, 1, true},    {"col", 100, 1, true},  {"row", 1, 7, true},
    };
    double worst_res = 0, worst_orth = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        size_t m = cases[ci].m, n = cases[ci].n, p = m < n ? m : n;
        char name[128];
        snprintf(name, sizeof name, "qr_%s_a.f64", cases[ci].name);
        double *a = load_f64(name, m * n);
        snprintf(name, sizeof name, "qr_%s_rdiag.f64", cases[ci].name);
        double *rd = load_f64(name, p);
        if (!a || !rd) {
            free(a), free(rd);
            continue;
        }
        double *q = malloc(m * p * sizeof *q), *r = malloc(p * n * sizeof *r);
        lt_error err;
        CHECK_MSG(lti_qr_f64(m, n, a, n, q, p, r, n, &err) == LT_OK, "%s: %s", cases[ci].name,
                  err.message);
        double na = frob(a, m, n, n), res = 0;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double x = -a[i * n + j];
                for (size_t c = 0; c < p; c++)
                    x += q[i * p + c] * r[c * n + j];
                res += x * x;
            }
        res = sqrt(res) / na;
        double orth = orth_error(q, m, p, p);
        CHECK_MSG(res <= 1e-14, "%s: ||QR - A|| / ||A|| = %.3g", cases[ci].name, res);
        CHECK_MSG(orth <= 1e-14, "%s: ||Q^T Q - I|| = %.3g", cases[ci].name, orth);
        for (size_t i = 0; i < p; i++)
            for (size_t j = 0; j < i && j < n; j++)
                CHECK_MSG(r[i * n + j] == 0, "%s: R(%zu,%zu) below the diagonal", cases[ci].name,
                          i, j);
        /* |diag R| is unique for a full-rank matrix; for a rank-deficient
         * one only up to rounding (both are noise past the rank). */
        for (size_t i = 0; i < p; i++)
            CHECK_MSG(fabs(fabs(r[i * n + i]) - rd[i]) <=
                          (cases[ci].full_rank ? 1e-12 * rd[i] : 1e-12 * na),
                      "%s: |R(%zu,%zu)| = %.17g, numpy %.17g", cases[ci].name, i, i,
                      fabs(r[i * n + i]), rd[i]);
        worst_res = fmax(worst_res, res);
        worst_orth = fmax(worst_orth, orth);
        /* R only, Q only */
        double *r2 = malloc(p * n * sizeof *r2);
        CHECK(lti_qr_f64(m, n, a, n, NULL, 0, r2, n, &err) == LT_OK);
        CHECK(memcmp(r, r2, p * n * sizeof *r2) == 0);
        free(r2);
        free(a), free(rd), free(q), free(r);
    }
    if (verbose)
        printf("  qr: max ||QR-A||/||A|| %.3g, max |Q^TQ-I| %.3g\n", worst_res, worst_orth);
}

/* ------------------------------------------------------------------ */
/* SVD                                                                 */
/* ------------------------------------------------------------------ */

/* Tolerances: singular values within 1e-5 relative of numpy (the brief's
 * requirement; measured ~1e-13) plus 64 eps ||A||_2 absolute, the size of
 * the rounding error both LAPACK and Jacobi make (it dominates for the
 * zero singular values of rank-deficient matrices and is 1e-6 relative
 * for the smallest value of the cond 1e10 matrix).  Reconstruction and
 * orthogonality to 1e-13. */
#define SV_REL 1e-5
#define SV_FLOOR (64 * DBL_EPSILON)

static void svd_case(const char *cname, size_t m, size_t n, double *worst_rel, double *worst_rec,
                     double *worst_orth)
{
    size_t p = m < n ? m : n;
    char name[128];
    snprintf(name, sizeof name, "svd_%s_a.f64", cname);
    double *a = load_f64(name, m * n);
    snprintf(name, sizeof name, "svd_%s_s.f64", cname);
    double *ref = load_f64(name, p);
    if (!a || !ref) {
        free(a), free(ref);
        return;
    }
    /* input with a leading dimension larger than n */
    size_t lda = n + 2;
    double *ap = calloc(m * lda, sizeof *ap);
    for (size_t i = 0; i < m; i++)
        memcpy(ap + i * lda, a + i * n, n * sizeof *a);
    double *u = malloc(m * p * sizeof *u), *v = malloc(n * p * sizeof *v);
    double *s = malloc(p * sizeof *s), *s2 = malloc(p * sizeof *s2);
    lt_error err;
    CHECK_MSG(lti_svd_f64(m, n, ap, lda, u, p, s, v, p, &err) == LT_OK, "%s: %s", cname, err.message);
    double rel = check_values(cname, s, ref, p, SV_REL, SV_FLOOR);
    double na = frob(a, m, n, n);
    double rec = recon_error(a, n, u, s, v, m, n, p);
    double ou = orth_error(u, m, p, p), ov = orth_error(v, n, p, p);
    CHECK_MSG(rec <= 1e-13 * na, "%s: ||U S V^T - A|| = %.3g, ||A|| = %.3g", cname, rec, na);
    CHECK_MSG(ou <= 1e-13 && ov <= 1e-13, "%s: orthogonality U %.3g V %.3g", cname, ou, ov);
    /* values only: the same values */
    CHECK(lti_svd_f64(m, n, ap, lda, NULL, 0, s2, NULL, 0, &err) == LT_OK);
    CHECK_MSG(memcmp(s, s2, p * sizeof *s) == 0, "%s: values differ without vectors", cname);
    *worst_rel = fmax(*worst_rel, rel);
    *worst_rec = fmax(*worst_rec, na > 0 ? rec / na : rec);
    *worst_orth = fmax(*worst_orth, fmax(ou, ov));
    if (verbose)
        printf("  svd %-8s %3zux%-3zu max rel err %.3g, recon %.3g, orth %.3g\n", cname, m, n, rel,
               na > 0 ? rec / na : rec, fmax(ou, ov));
    free(a), free(ref), free(ap), free(u), free(v), free(s), free(s2);
}

static void test_svd_vs_numpy(void)
{
    static const struct { const char *name; size_t m, n; } cases[] = {
        {"rand", 40, 30}, {"wide", 30, 40}, {"cond", 50, 50},  {"rankdef", 60, 40},
        {"tall", 300, 20}, {"zero", 10, 7}, {"one", 1, 1},     {"row", 1, 5},
        {"equal", 20, 20}, {"big", 200, 150}, {"tiny", 30, 25},
    };
    double rel = 0, rec = 0, orth = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        svd_case(cases[i].name, cases[i].m, cases[i].n, &rel, &rec, &orth);
    if (verbose)
        printf("  svd: max rel err %.3g, max recon %.3g, max orth %.3g\n", rel, rec, orth);
}

static void test_svd_known(void)
{
    /* diag(3, -5, 0) padded: values 5, 3, 0; empty matrix is fine */
    double a[4 * 3] = {3, 0, 0, 0, -5, 0, 0, 0, 0, 0, 0, 0};
    double u[12], s[3], v[9];
    lt_error err;
    CHECK(lti_svd_f64(4, 3, a, 3, u, 3, s, v, 3, &err) == LT_OK);
    CHECK(s[0] == 5 && s[1] == 3 && s[2] == 0);
    CHECK(orth_error(u, 4, 3, 3) <= 1e-15 && orth_error(v, 3, 3, 3) <= 1e-15);
    CHECK(lti_svd_f64(0, 3, NULL, 3, NULL, 0, NULL, NULL, 0, &err) == LT_OK);
    CHECK(lti_svd_f64(4, 3, a, 2, u, 3, s, v, 3, &err) == LT_ERR_USAGE);
}

/* ------------------------------------------------------------------ */
/* Low-rank product                                                    */
/* ------------------------------------------------------------------ */

/* Dense B A (m x n) for checking. */
static double *dense_product(const double *b, const double *a, size_t m, size_t n, size_t r)
{
    double *d = malloc(m * n * sizeof *d);
    lt_error err;
    CHECK(lti_gemm_f64(false, false, m, n, r, 1.0, b, r, a, n, 0.0, d, n, 1, &err) == LT_OK);
    return d;
}

static void lowrank_check(const char *cname, const double *b, const double *a, size_t m, size_t n,
                          size_t r, const double *ref, double *worst)
{
    size_t p = m < n ? m : n;
    if (r < p)
        p = r;
    size_t k = p + 2; /* two more than exist: must come back zero */
    double *u = malloc(m * k * sizeof *u), *v = malloc(n * k * sizeof *v), *s = malloc(k * sizeof *s);
    lt_error err;
    CHECK_MSG(lti_lowrank_svd_f64(m, n, r, b, r, a, n, k, u, k, s, v, k, &err) == LT_OK, "%s: %s",
              cname, err.message);
    double rel = check_values(cname, s, ref, p, SV_REL, SV_FLOOR);
    CHECK_MSG(s[p] == 0 && s[p + 1] == 0, "%s: values beyond min(m,n,r) not zero", cname);
    bool zero_cols = true;
    for (size_t i = 0; i < m; i++)
        zero_cols &= u[i * k + p] == 0 && u[i * k + p + 1] == 0;
    for (size_t i = 0; i < n; i++)
        zero_cols &= v[i * k + p] == 0 && v[i * k + p + 1] == 0;
    CHECK_MSG(zero_cols, "%s: vectors beyond min(m,n,r) not zero", cname);
    /* orthonormal columns 0..p */
    double *up = malloc(m * p * sizeof *up), *vp = malloc(n * p * sizeof *vp);
    for (size_t i = 0; i < m; i++)
        memcpy(up + i * p, u + i * k, p * sizeof *u);
    for (size_t i = 0; i < n; i++)
        memcpy(vp + i * p, v + i * k, p * sizeof *v);
    double ou = orth_error(up, m, p, p), ov = orth_error(vp, n, p, p);
    CHECK_MSG(ou <= 1e-13 && ov <= 1e-13, "%s: orthogonality U %.3g V %.3g", cname, ou, ov);
    double *d = dense_product(b, a, m, n, r);
    double rec = recon_error(d, n, up, s, vp, m, n, p), nd = frob(d, m, n, n);
    CHECK_MSG(rec <= 1e-13 * frob(b, m, r, r) * frob(a, r, n, n), "%s: reconstruction %.3g", cname,
              rec);
    if (verbose)
        printf("  lowrank %-6s %zux%zu @ %zux%zu: max rel err %.3g, recon %.3g, orth %.3g\n",
               cname, m, r, r, n, rel, nd > 0 ? rec / nd : rec, fmax(ou, ov));
    *worst = fmax(*worst, rel);
    free(u), free(v), free(s), free(up), free(vp), free(d);
}

static void test_lowrank_vs_numpy(void)
{
    static const struct { const char *name; size_t m, n, r; } cases[] = {
        {"main", 512, 384, 16}, {"rank1", 300, 200, 1}, {"over", 10, 12, 24},
        {"zero", 50, 60, 4},    {"def", 120, 90, 8},
    };
    double worst = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        size_t m = cases[ci].m, n = cases[ci].n, r = cases[ci].r, p = m < n ? m : n;
        if (r < p)
            p = r;
        char name[128];
        snprintf(name, sizeof name, "lr_%s_b.f64", cases[ci].name);
        double *b = load_f64(name, m * r);
        snprintf(name, sizeof name, "lr_%s_a.f64", cases[ci].name);
        double *a = load_f64(name, r * n);
        snprintf(name, sizeof name, "lr_%s_s.f64", cases[ci].name);
        double *ref = load_f64(name, p);
        if (b && a && ref)
            lowrank_check(cases[ci].name, b, a, m, n, r, ref, &worst);
        free(b), free(a), free(ref);
    }
    if (verbose)
        printf("  lowrank: max rel err %.3g\n", worst);
}

/* Factors near 1e150 / 1e140: the product overflows nothing inside. */
static void test_lowrank_scaled(void)
{
    double *b = load_f64("lr_scaled_b.f64", 64 * 8), *a = load_f64("lr_scaled_a.f64", 8 * 48);
    double *ref = load_f64("lr_scaled_s.f64", 8);
    if (b && a && ref) {
        double s[8];
        lt_error err;
        CHECK(lti_lowrank_svd_f64(64, 48, 8, b, 8, a, 48, 8, NULL, 0, s, NULL, 0, &err) == LT_OK);
        check_values("scaled", s, ref, 8, 1e-12, SV_FLOOR);
    }
    free(b), free(a), free(ref);
}

/* A weighted sum of two adapters by concatenation, as documented:
 * [0.7 B1 | -1.3 B2] (200 x 12) times [A1; A2] (12 x 150). */
static void test_lowrank_sum(void)
{
    double *b1 = load_f64("lr_sum_b1.f64", 200 * 8), *a1 = load_f64("lr_sum_a1.f64", 8 * 150);
    double *b2 = load_f64("lr_sum_b2.f64", 200 * 4), *a2 = load_f64("lr_sum_a2.f64", 4 * 150);
    double *ref = load_f64("lr_sum_s.f64", 12);
    if (b1 && a1 && b2 && a2 && ref) {
        double *b = malloc(200 * 12 * sizeof *b), *a = malloc(12 * 150 * sizeof *a);
        for (size_t i = 0; i < 200; i++)
            for (size_t j = 0; j < 12; j++)
                b[i * 12 + j] = j < 8 ? 0.7 * b1[i * 8 + j] : -1.3 * b2[i * 4 + j - 8];
        memcpy(a, a1, 8 * 150 * sizeof *a);
        memcpy(a + 8 * 150, a2, 4 * 150 * sizeof *a);
        double worst = 0;
        lowrank_check("sum", b, a, 200, 150, 12, ref, &worst);
        free(b), free(a);
    }
    free(b1), free(a1), free(b2), free(a2), free(ref);
}

/* ------------------------------------------------------------------ */
/* Randomized SVD                                                      */
/* ------------------------------------------------------------------ */

/*
 * W = rank 8 (values 20 ... 3) + 1e-3 N(0,1) noise, 512 x 512, k = 8,
 * oversampling 10, 2 power iterations.  Tolerance: with Q from the range
 * finder, sigma_j(Q^T W) <= sigma_j(W) and sigma_j^2 - sigma~_j^2 <=
 * ||(I - QQ^T) W||^2 =: eps^2.  Halko et al. 2011 cor. 10.10 bounds
 * E[eps] by (1 + 4 sqrt(2 min(m,n) / (l' - 1)))^(1/(2q+1)) sigma_{l'+1} for
 * l = l' + p' with l' >= 2, p' >= 2; with l' = 9 (p' = 9), q = 2: eps <= ~2.2
 * sigma_10 ~ 0.1.  So the relative error of sigma_j is below eps^2 /
 * (2 sigma_j^2) <= 0.01 / (2 * 9) ~ 6e-4 for sigma_8 = 3; we check
 * (3 sigma_10)^2 / (2 sigma_j^2) per value (in practice ~1e-15, as the
 * power iterations shrink the noise directions by (sigma_10/sigma_j)^5).
 * Singular vectors (Wedin): sin(angle) <= eps / gap_j, gap_j the distance
 * from sigma_j to its neighbours, so 1 - |cos| <= (3 sigma_10 / gap_j)^2.
 */
static void test_randomized(void)
{
    const size_t m = 512, n = 512, k = 8;
    float *w = load_f32("rs_w.f32", m * n);
    double *ref = load_f64("rs_s.f64", 20), *uref = load_f64("rs_u.f64", m * k);
    double *vref = load_f64("rs_v.f64", n * k);
    if (w && ref && uref && vref) {
        double *u = malloc(m * k * sizeof *u), *v = malloc(n * k * sizeof *v), s[8];
        double *u3 = malloc(m * k * sizeof *u), *v3 = malloc(n * k * sizeof *v), s3[8];
        lt_error err;
        CHECK_MSG(lti_randomized_svd_f64(m, n, w, n, k, LTI_RSVD_OVERSAMPLE, LTI_RSVD_POWER_ITERS, 42,
                                        1, u, k, s, v, k, &err) == LT_OK,
                  "%s", err.message);
        double worst = 0, worst_vec = 0;
        for (size_t j = 0; j < k; j++) {
            double tol = (3 * ref[9]) * (3 * ref[9]) / (2 * ref[j] * ref[j]);
            double rel = fabs(s[j] - ref[j]) / ref[j];
            CHECK_MSG(rel <= tol, "s[%zu] = %.17g, numpy %.17g", j, s[j], ref[j]);
            double du = 0, dv = 0;
            for (size_t i = 0; i < m; i++)
                du += u[i * k + j] * uref[i * k + j];
            for (size_t i = 0; i < n; i++)
                dv += v[i * k + j] * vref[i * k + j];
            double gap = fmin(j > 0 ? ref[j - 1] - ref[j] : INFINITY, ref[j] - ref[j + 1]);
            double vtol = (3 * ref[9] / gap) * (3 * ref[9] / gap);
            CHECK_MSG(fabs(du) >= 1 - vtol && fabs(dv) >= 1 - vtol, "vector %zu: %.17g %.17g", j,
                      du, dv);
            /* signs agree between U and V: u^T W v = +sigma */
            CHECK(du * dv > 0);
            worst = fmax(worst, rel);
            worst_vec = fmax(worst_vec, fmax(1 - fabs(du), 1 - fabs(dv)));
        }
        CHECK(orth_error(u, m, k, k) <= 1e-13 && orth_error(v, n, k, k) <= 1e-13);
        /* Same seed, other thread count: the same bytes. */
        CHECK(lti_randomized_svd_f64(m, n, w, n, k, LTI_RSVD_OVERSAMPLE, LTI_RSVD_POWER_ITERS, 42, 3,
                                    u3, k, s3, v3, k, &err) == LT_OK);
        CHECK(memcmp(s, s3, sizeof s) == 0 && memcmp(u, u3, m * k * sizeof *u) == 0 &&
              memcmp(v, v3, n * k * sizeof *v) == 0);
        if (verbose)
            printf("  randomized 512x512 k=8: max rel err of s %.3g, max 1-|cos| %.3g\n", worst,
                   worst_vec);
        free(u), free(v), free(u3), free(v3);
    }
    free(w), free(ref), free(uref), free(vref);

    /* Exact rank 8: the range is captured exactly, values to ~1e-14. */
    float *we = load_f32("rs_exact_w.f32", 300 * 200);
    double *re = load_f64("rs_exact_s.f64", 8);
    if (we && re) {
        double s[10];
        lt_error err;
        CHECK(lti_randomized_svd_f64(300, 200, we, 200, 10, 4, 0, 7, 0, NULL, 0, s, NULL, 0, &err) ==
              LT_OK);
        double rel = check_values("rs_exact", s, re, 8, 1e-12, SV_FLOOR);
        CHECK_MSG(s[8] <= 1e-5 * s[0] && s[9] <= 1e-5 * s[0], "rank 8: s[8] = %.3g", s[8]);
        if (verbose)
            printf("  randomized exact rank 8 (no power iterations): max rel err %.3g\n", rel);
    }
    free(we), free(re);
}

/* ------------------------------------------------------------------ */
/* Rank helpers, NaN refusal                                           */
/* ------------------------------------------------------------------ */

static void test_rank_helpers(void)
{
    static const double fractions[6] = {0.0, 0.5, 0.9, 0.99, 0.999, 1.0};
    static const double ratios[5] = {1.0, 1.5, 10.0, 100.0, 1e6};
    double *s = load_f64("rank_s.f64", 4 * 16);
    int64_t *energy = ref_load("rank_energy.i64", 4 * 6, 8);
    int64_t *ratio = ref_load("rank_ratio.i64", 4 * 5, 8);
    if (s && energy && ratio) {
        for (size_t v = 0; v < 4; v++) {
            for (size_t f = 0; f < 6; f++)
                CHECK_MSG(lti_rank_for_energy(s + v * 16, 16, fractions[f]) ==
                              (size_t)energy[v * 6 + f],
                          "vector %zu fraction %g: %zu, numpy %lld", v, fractions[f],
                          lti_rank_for_energy(s + v * 16, 16, fractions[f]),
                          (long long)energy[v * 6 + f]);
            for (size_t q = 0; q < 5; q++)
                CHECK_MSG(lti_rank_for_ratio(s + v * 16, 16, ratios[q]) == (size_t)ratio[v * 5 + q],
                          "vector %zu ratio %g: %zu, numpy %lld", v, ratios[q],
                          lti_rank_for_ratio(s + v * 16, 16, ratios[q]), (long long)ratio[v * 5 + q]);
        }
        CHECK(lti_rank_for_energy(s, 16, 1.5) == 16);
    }
    double one[1] = {2.0};
    CHECK(lti_rank_for_energy(one, 1, 0.5) == 1);
    CHECK(lti_rank_for_energy(one, 0, 0.5) == 0);
    CHECK(lti_rank_for_ratio(one, 0, 2.0) == 0);
    double huge[2] = {1e300, 1e299};
    CHECK(lti_rank_for_energy(huge, 2, 0.995) == 2 && lti_rank_for_energy(huge, 2, 0.98) == 1);
    free(s), free(energy), free(ratio);
}

static void test_nan_refused(void)
{
    double a[12], q[12], r[12], s[3];
    float w[12];
    for (int i = 0; i < 12; i++)
        a[i] = w[i] = (float)(i * i % 7) - 3.0f;
    for (int bad = 0; bad < 2; bad++) {
        double x = bad ? INFINITY : NAN;
        a[5] = x;
        w[7] = (float)x;
        lt_error err = {0};
        CHECK(lti_qr_f64(4, 3, a, 3, q, 3, r, 3, &err) == LT_ERR_INVALID);
        CHECK(strstr(err.message, "matrix holds NaN or Inf") != NULL);
        CHECK(lti_svd_f64(4, 3, a, 3, q, 3, s, r, 3, &err) == LT_ERR_INVALID);
        CHECK(lti_svd_f64(3, 4, a, 4, NULL, 0, s, NULL, 0, &err) == LT_ERR_INVALID);
        CHECK(lti_lowrank_svd_f64(4, 4, 3, a, 3, a, 4, 2, q, 2, s, r, 2, &err) == LT_ERR_INVALID);
        CHECK(lti_lowrank_svd_f64(3, 3, 4, a + 4, 4, a + 1, 3, 2, q, 2, s, r, 2, &err) ==
              LT_ERR_INVALID);
        CHECK(lti_randomized_svd_f64(4, 3, w, 3, 2, 10, 2, 1, 1, q, 2, s, r, 2, &err) ==
              LT_ERR_INVALID);
        CHECK(strstr(err.message, "NaN or Inf") != NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        reference_dir = argv[1];
    verbose = getenv("LT_TEST_VERBOSE") != NULL;
    RUN(test_gemm_vs_numpy);
    RUN(test_gemm_exact_order);
    RUN(test_gemm_threads);
    RUN(test_gemm_edges);
    RUN(test_qr);
    RUN(test_svd_vs_numpy);
    RUN(test_svd_known);
    RUN(test_lowrank_vs_numpy);
    RUN(test_lowrank_scaled);
    RUN(test_lowrank_sum);
    RUN(test_randomized);
    RUN(test_rank_helpers);
    RUN(test_nan_refused);
    return check_done();
}
