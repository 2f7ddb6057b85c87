/* surgery.c - resize and combine LoRA adapters exactly (spec/surgery.md).
 *
 * Every module's delta is a product B (m x R) A (R x n) with the scale
 * folded into B.  Its truncated SVD comes from QR factors of B and A^T and
 * the R x R core (lti_lowrank_svd_f64), so the m x n delta is never formed:
 * O((m + n) R^2) per module.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source_sink.h"
#include "linalg.h"
#include "surgery.h"

void lt_surgery_report_free(lt_surgery_report *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->n_modules; i++)
        free(report->modules[i].name);
    free(report->modules);
    memset(report, 0, sizeof *report);
}

/* One module of the output, in PEFT layout, before saving. */

lt_status lti_module_factors_f64(const lt_adapter *ad, const lt_lora_module *m, double b_factor, double **b_out,
                                double **a_out, lt_error *err)
{
    lt_source *src = lt_adapter_source(ad);
    const lt_tensor_info *ta = lt_source_tensor(src, (size_t)m->tensor_a);
    if (ta->shape[m->a_transposed ? 1 : 0] != m->rank)
        /* PEFT 0.3's enable_lora (merged QKV): A stacks one group per
         * enabled output slice; only inspect/audit understand it */
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: module '%s': legacy enable_lora factors (lora_A has %llu rows for rank %u): only inspect and audit read them",
                       lt_source_path(src), m->name, (unsigned long long)ta->shape[m->a_transposed ? 1 : 0], m->rank);
    double *a = NULL, *b = NULL, *e = NULL;
    lt_status s = lti_source_read_all_f64(src, (size_t)m->tensor_a, &a, err);
    if (s == LT_OK)
        s = lti_source_read_all_f64(src, (size_t)m->tensor_b, &b, err);
    if (s == LT_OK && m->tensor_e >= 0)
        s = lti_source_read_all_f64(src, (size_t)m->tensor_e, &e, err);
    if (s != LT_OK) {
        free(a);
        free(b);
        free(e);
        return s;
    }
    uint64_t r = m->rank;
    uint64_t a_cols = m->kind == LT_MODULE_EMBEDDING ? m->out_features : m->in_features;
    uint64_t b_rows = m->kind == LT_MODULE_EMBEDDING ? m->in_features : m->out_features;
    if (m->a_transposed) { /* stored [a_cols, r] */
        double *t = malloc((size_t)(r * a_cols) * sizeof *t + 1);
        if (!t) {
            free(a);
            free(b);
            free(e);
            return lti_fail_nomem(err, m->name);
        }
        for (uint64_t j = 0; j < a_cols; j++)
            for (uint64_t k = 0; k < r; k++)
                t[k * a_cols + j] = a[j * r + k];
        free(a);
        a = t;
    }
    if (e)
        for (uint64_t k = 0; k < r; k++)
            for (uint64_t j = 0; j < a_cols; j++)
                a[k * a_cols + j] *= e[k];
    free(e);
    if (b_factor != 1.0)
        for (uint64_t i = 0; i < b_rows * r; i++)
            b[i] *= b_factor;
    *b_out = b;
    *a_out = a;
    return LT_OK;
}

/* The factors of one input module for surgery: b times weight * scale. */
static lt_status load_scaled_factors(const lt_adapter *ad, const lt_lora_module *m, double weight,
                                     double **b_out, double **a_out, lt_error *err)
{
    if (m->tensor_magnitude >= 0 || m->tensor_bias >= 0 || m->kind == LT_MODULE_CONV)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' is %s: its delta is not a plain low-rank product",
                       lt_source_path(lt_adapter_source(ad)), m->name,
                       m->tensor_magnitude >= 0 ? "DoRA" : m->tensor_bias >= 0 ? "lora_bias" : "conv");
    return lti_module_factors_f64(ad, m, weight * m->scale, b_out, a_out, err);
}

static double frobenius(const double *x, uint64_t n)
{
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += x[i] * x[i];
    return sqrt(sum);
}

/* Singular values of a product that cancels (an adapter combined with its
 * negative) come out as rounding noise, about eps * ||B|| ||A||, not 0: call
 * those 0, so the rank rules and the zero-delta report see the exact sum. */
static void drop_rounding_noise(double *sv, uint64_t r, double scale)
{
    double tol = 1e-13 * scale;
    for (uint64_t i = 0; i < r; i++)
        if (sv[i] <= tol)
            sv[i] = 0;
}

static size_t choose_rank(const lt_rank_rule *rule, const double *s, size_t n)
{
    size_t k = n;
    switch (rule->kind) {
    case LT_RANK_KEEP: k = n; break;
    case LT_RANK_FIXED: k = rule->value < (double)n ? (size_t)rule->value : n; break;
    case LT_RANK_ENERGY: k = lti_rank_for_energy(s, n, rule->value); break;
    case LT_RANK_RATIO: k = lti_rank_for_ratio(s, n, rule->value); break;
    }
    return k < 1 ? 1 : k;
}

/* The rank rule, seen by the SVD before it forms any singular vector. */
typedef struct rule_ctx {
    const lt_rank_rule *rule;
    double scale; /* ||B||_F ||A||_F, for drop_rounding_noise */
} rule_ctx;

static size_t choose_for_svd(void *ctx, double *s, size_t n)
{
    const rule_ctx *rc = ctx;
    drop_rounding_noise(s, n, rc->scale);
    return choose_rank(rc->rule, s, n);
}

/* Truncate b (m x R) a (R x n) by RULE into om, filling the report entry. */
static lt_status truncate_product(double *b, const double *a, uint64_t m, uint64_t n, uint64_t r,
                                  const lt_rank_rule *rule, lti_out_module *om, lt_surgery_module *rep,
                                  lt_error *err)
{
    double *u = malloc((size_t)(m * r) * sizeof *u + 1), *v = malloc((size_t)(n * r) * sizeof *v + 1);
    double *sv = malloc((size_t)r * sizeof *sv + 1);
    lt_status s = u && v && sv ? LT_OK : lti_fail_nomem(err, om->name);
    rule_ctx rc = {rule, frobenius(b, m * r) * frobenius(a, r * n)};
    size_t k = 0;
    if (s == LT_OK) /* b is the caller's to free: factored in place */
        s = lti_lowrank_svd_rule_f64((size_t)m, (size_t)n, (size_t)r, b, (size_t)r, true, a, (size_t)n, choose_for_svd,
                                    &rc, &k, u, (size_t)r, sv, v, (size_t)r, err);
    if (s == LT_OK) {
        double total = 0, kept = 0;
        for (uint64_t i = 0; i < r; i++)
            total += sv[i] * sv[i];
        for (size_t i = 0; i < k; i++)
            kept += sv[i] * sv[i];
        rep->zero = total == 0;
        rep->energy_kept = total > 0 ? kept / total : 1.0;
        rep->rel_error = total > 0 ? sqrt(fmax(0.0, total - kept) / total) : 0.0;
        rep->new_rank = (uint32_t)k;
        om->rank = (uint32_t)k;
        om->b = malloc((size_t)(m * k) * sizeof(float) + 1);
        om->a = malloc((size_t)(k * n) * sizeof(float) + 1);
        if (!om->a || !om->b)
            s = lti_fail_nomem(err, om->name);
        for (size_t j = 0; j < k; j++) /* sv[j] is sqrt(s_j) from here on */
            sv[j] = sqrt(sv[j]);
        for (uint64_t i = 0; s == LT_OK && i < m; i++)
            for (size_t j = 0; j < k; j++)
                om->b[i * k + j] = (float)(u[i * r + j] * sv[j]);
        for (size_t j = 0; s == LT_OK && j < k; j++)
            for (uint64_t c = 0; c < n; c++)
                om->a[j * n + c] = (float)(sv[j] * v[c * r + j]);
    }
    free(u);
    free(v);
    free(sv);
    return s;
}

/* Exact: keep the concatenated factors (scale already in b). */
static lt_status keep_product(const double *b, const double *a, uint64_t m, uint64_t n, uint64_t r,
                              lti_out_module *om, lt_surgery_module *rep, lt_error *err)
{
    om->rank = (uint32_t)r;
    om->b = malloc((size_t)(m * r) * sizeof(float) + 1);
    om->a = malloc((size_t)(r * n) * sizeof(float) + 1);
    if (!om->a || !om->b)
        return lti_fail_nomem(err, om->name);
    for (uint64_t i = 0; i < m * r; i++)
        om->b[i] = (float)b[i];
    for (uint64_t i = 0; i < r * n; i++)
        om->a[i] = (float)a[i];
    rep->new_rank = (uint32_t)r;
    rep->energy_kept = 1.0;
    rep->rel_error = 0.0;
    /* the largest singular value says whether the sum cancels */
    double *sv = malloc((size_t)r * sizeof *sv + 1);
    if (!sv)
        return lti_fail_nomem(err, om->name);
    lt_status s = lti_lowrank_svd_f64((size_t)m, (size_t)n, (size_t)r, b, (size_t)r, a, (size_t)n, (size_t)r,
                                     NULL, 0, sv, NULL, 0, err);
    if (s == LT_OK) {
        drop_rounding_noise(sv, r, frobenius(b, m * r) * frobenius(a, r * n));
        rep->zero = sv[0] == 0;
    }
    free(sv);
    return s;
}

static lt_status report_init(lt_surgery_report *report, size_t n, lt_error *err)
{
    memset(report, 0, sizeof *report);
    report->modules = calloc(n + 1, sizeof *report->modules);
    return report->modules ? LT_OK : lti_fail_nomem(err, "surgery");
}

lt_status lt_resize(const lt_adapter *ad, const lt_rank_rule *rule, lt_adapter **out, lt_surgery_report *report,
                    lt_error *err)
{
    return lt_combine_with(&ad, (const double[]){1.0}, 1, rule, NULL, NULL, out, report, err);
}

lt_status lt_resize_with(const lt_adapter *ad, const lt_rank_rule *rule, lt_progress_fn progress, void *ctx,
                         lt_adapter **out, lt_surgery_report *report, lt_error *err)
{
    return lt_combine_with(&ad, (const double[]){1.0}, 1, rule, progress, ctx, out, report, err);
}

/* Index of the first adapter module called name in ad, or -1. */
static long module_index(const lt_adapter *ad, const char *name)
{
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++)
        if (strcmp(lt_adapter_module(ad, i)->name, name) == 0)
            return (long)i;
    return -1;
}

/* Gather every adapter's factors for one module name into concatenated
 * b [m, R] and a [R, n]. */
static lt_status gather(const lt_adapter *const *ads, const double *weights, size_t n_ads,
                        const lt_lora_module *first, double **b_out, double **a_out, uint64_t *r_out,
                        lt_error *err)
{
    uint64_t m = first->kind == LT_MODULE_EMBEDDING ? first->in_features : first->out_features;
    uint64_t n = first->kind == LT_MODULE_EMBEDDING ? first->out_features : first->in_features;
    uint64_t total_r = 0;
    size_t n_from = 0, only = 0; /* adapters that have the module */
    for (size_t i = 0; i < n_ads; i++) {
        long k = module_index(ads[i], first->name);
        if (k < 0)
            continue;
        const lt_lora_module *mk = lt_adapter_module(ads[i], (size_t)k);
        if (mk->kind != first->kind || mk->out_features != first->out_features ||
            mk->in_features != first->in_features)
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s' has shape [%llu, %llu] here but [%llu, %llu] in another adapter (different base models?)",
                           lt_source_path(lt_adapter_source(ads[i])), mk->name,
                           (unsigned long long)mk->out_features, (unsigned long long)mk->in_features,
                           (unsigned long long)first->out_features, (unsigned long long)first->in_features);
        total_r += mk->rank;
        n_from++;
        only = i;
    }
    if (n_from == 1) { /* resize: the one adapter's factors as they are */
        const lt_lora_module *mk = lt_adapter_module(ads[only], (size_t)module_index(ads[only], first->name));
        *r_out = total_r;
        return load_scaled_factors(ads[only], mk, weights[only], b_out, a_out, err);
    }
    double *b = calloc((size_t)(m * total_r) + 1, sizeof *b), *a = calloc((size_t)(total_r * n) + 1, sizeof *a);
    if (!a || !b) {
        free(a);
        free(b);
        return lti_fail_nomem(err, first->name);
    }
    uint64_t col = 0;
    lt_status s = LT_OK;
    for (size_t i = 0; i < n_ads && s == LT_OK; i++) {
        long k = module_index(ads[i], first->name);
        if (k < 0)
            continue;
        const lt_lora_module *mk = lt_adapter_module(ads[i], (size_t)k);
        double *bi = NULL, *ai = NULL;
        s = load_scaled_factors(ads[i], mk, weights[i], &bi, &ai, err);
        if (s != LT_OK)
            break;
        for (uint64_t row = 0; row < m; row++)
            memcpy(b + row * total_r + col, bi + row * mk->rank, mk->rank * sizeof *b);
        memcpy(a + col * n, ai, (size_t)(mk->rank * n) * sizeof *a);
        col += mk->rank;
        free(bi);
        free(ai);
    }
    if (s != LT_OK) {
        free(a);
        free(b);
        return s;
    }
    *b_out = b;
    *a_out = a;
    *r_out = total_r;
    return LT_OK;
}

/* Modules are independent: threads take them in turn from a counter.
 * Each module's result does not depend on which thread computed it. */
typedef struct combine_job {
    const lt_adapter *const *ads;
    const double *weights;
    size_t n_ads;
    const lt_rank_rule *rule;
    const lt_lora_module **unique;
    lti_out_module *mods;
    lt_surgery_report *report;
    size_t n_modules;
    lt_progress_fn progress;
    void *progress_ctx;
    size_t next;              /* guarded by lock */
    size_t done;              /* guarded by lock */
    bool failed;              /* guarded by lock */
    lt_error error;           /* first error, guarded by lock */
    pthread_mutex_t lock;
} combine_job;

static lt_status combine_module(combine_job *job, size_t j, lt_error *err)
{
    const lt_lora_module *first = job->unique[j];
    lti_out_module *om = &job->mods[j];
    lt_surgery_module *rep = &job->report->modules[j];
    om->name = lti_strdup(first->name);
    rep->name = lti_strdup(first->name);
    if (!om->name || !rep->name)
        return lti_fail_nomem(err, first->name);
    om->embedding = first->kind == LT_MODULE_EMBEDDING;
    om->b_rows = om->embedding ? first->in_features : first->out_features;
    om->a_cols = om->embedding ? first->out_features : first->in_features;
    double *b = NULL, *a = NULL;
    uint64_t r = 0;
    lt_status s = gather(job->ads, job->weights, job->n_ads, first, &b, &a, &r, err);
    if (s != LT_OK)
        return s;
    rep->old_rank = (uint32_t)r;
    s = job->rule->kind == LT_RANK_KEEP ? keep_product(b, a, om->b_rows, om->a_cols, r, om, rep, err)
                                        : truncate_product(b, a, om->b_rows, om->a_cols, r, job->rule, om, rep, err);
    free(a);
    free(b);
    return s;
}

static void *combine_worker(void *arg)
{
    combine_job *job = arg;
    lt_error err;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        size_t j = job->next++;
        bool stop = job->failed || j >= job->n_modules;
        pthread_mutex_unlock(&job->lock);
        if (stop)
            break;
        bool ok = combine_module(job, j, &err) == LT_OK;
        pthread_mutex_lock(&job->lock);
        if (!ok && !job->failed) {
            job->failed = true;
            job->error = err;
        }
        if (ok && job->progress && !job->failed) /* under the lock: serialized */
            job->progress(job->progress_ctx, ++job->done, job->n_modules);
        pthread_mutex_unlock(&job->lock);
    }
    return NULL;
}

static lt_status run_jobs(combine_job *job, lt_error *err)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n_threads = online > 1 ? (size_t)online : 1;
    if (n_threads > job->n_modules)
        n_threads = job->n_modules ? job->n_modules : 1;
    if (n_threads > 64)
        n_threads = 64;
    pthread_t threads[64];
    size_t started = 0;
    pthread_mutex_init(&job->lock, NULL);
    for (; started + 1 < n_threads; started++)
        if (pthread_create(&threads[started], NULL, combine_worker, job) != 0)
            break;
    combine_worker(job);
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&job->lock);
    if (job->failed) {
        if (err)
            *err = job->error;
        return job->error.status;
    }
    return LT_OK;
}

lt_status lt_combine(const lt_adapter *const *ads, const double *weights, size_t n_ads,
                     const lt_rank_rule *rule, lt_adapter **out, lt_surgery_report *report, lt_error *err)
{
    return lt_combine_with(ads, weights, n_ads, rule, NULL, NULL, out, report, err);
}

lt_status lt_combine_with(const lt_adapter *const *ads, const double *weights, size_t n_ads,
                          const lt_rank_rule *rule, lt_progress_fn progress, void *ctx, lt_adapter **out,
                          lt_surgery_report *report, lt_error *err)
{
    *out = NULL;
    const char *label = lti_adapter_path(ads[0]);
    /* the union of module names, in first-seen order */
    size_t cap = 0;
    for (size_t i = 0; i < n_ads; i++)
        cap += lt_adapter_module_count(ads[i]);
    const lt_lora_module **unique = calloc(cap + 1, sizeof *unique);
    lti_out_module *mods = calloc(cap + 1, sizeof *mods);
    size_t n_unique = 0;
    lt_status s = unique && mods ? report_init(report, cap, err) : lti_fail_nomem(err, label);
    for (size_t i = 0; i < n_ads && s == LT_OK; i++)
        for (size_t k = 0; k < lt_adapter_module_count(ads[i]); k++) {
            const lt_lora_module *m = lt_adapter_module(ads[i], k);
            bool seen = false;
            for (size_t j = 0; j < n_unique && !seen; j++)
                seen = strcmp(unique[j]->name, m->name) == 0;
            if (!seen)
                unique[n_unique++] = m;
            report->params_before += m->n_params;
        }
    if (s == LT_OK) {
        report->n_modules = n_unique;
        combine_job job;
        memset(&job, 0, sizeof job);
        job.ads = ads;
        job.weights = weights;
        job.n_ads = n_ads;
        job.rule = rule;
        job.unique = unique;
        job.mods = mods;
        job.report = report;
        job.n_modules = n_unique;
        job.progress = progress;
        job.progress_ctx = ctx;
        s = run_jobs(&job, err);
        for (size_t j = 0; j < n_unique; j++)
            report->params_after += (uint64_t)mods[j].rank * (mods[j].b_rows + mods[j].a_cols);
    }
    if (s == LT_OK)
        s = lti_surgery_model(label, mods, n_unique, ads, n_ads, out, err);
    lti_out_modules_free(mods, n_unique);
    free(unique);
    if (s != LT_OK)
        lt_surgery_report_free(report);
    return s;
}

/* ---- TIES and DARE on dense deltas ---- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

typedef struct ranked { float magnitude; uint64_t index; } ranked;

static int by_magnitude_desc(const void *x, const void *y)
{
    const ranked *a = x, *b = y;
    if (a->magnitude != b->magnitude)
        return a->magnitude > b->magnitude ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* TIES trim: zero all but the k = density * count largest magnitudes. */
static lt_status trim_to_density(float *tau, uint64_t count, double density, lt_error *err)
{
    uint64_t keep = (uint64_t)(density * (double)count);
    if (keep >= count)
        return LT_OK;
    ranked *order = malloc((size_t)count * sizeof *order + 1);
    if (!order)
        return lti_fail_nomem(err, "ties");
    for (uint64_t i = 0; i < count; i++)
        order[i] = (ranked){fabsf(tau[i]), i};
    qsort(order, (size_t)count, sizeof *order, by_magnitude_desc);
    for (uint64_t i = keep; i < count; i++)
        tau[order[i].index] = 0;
    free(order);
    return LT_OK;
}

/* The dense delta of adapter i's module: w s B A as f32 [rows, cols]. */
static lt_status dense_delta(const lt_adapter *ad, const lt_lora_module *m, double weight, float *out,
                             uint64_t rows, uint64_t cols, lt_error *err)
{
    double *b, *a;
    lt_status s = load_scaled_factors(ad, m, weight, &b, &a, err);
    if (s != LT_OK)
        return s;
    uint64_t r = m->rank;
    double *row = malloc((size_t)cols * sizeof *row + 1);
    if (!row)
        s = lti_fail_nomem(err, m->name);
    for (uint64_t i = 0; s == LT_OK && i < rows; i++) {
        memset(row, 0, (size_t)cols * sizeof *row);
        for (uint64_t k = 0; k < r; k++)
            for (uint64_t j = 0; j < cols; j++)
                row[j] += b[i * r + k] * a[k * cols + j];
        for (uint64_t j = 0; j < cols; j++)
            out[i * cols + j] = (float)row[j];
    }
    free(row);
    free(a);
    free(b);
    return s;
}

static void merge_ties(float *const *tau, size_t n, uint64_t count, float *out)
{
    for (uint64_t j = 0; j < count; j++) {
        double total = 0;
        for (size_t i = 0; i < n; i++)
            total += tau[i][j];
        double sum = 0;
        int agree = 0;
        for (size_t i = 0; i < n; i++)
            if (tau[i][j] != 0 && (tau[i][j] > 0) == (total > 0) && total != 0) {
                sum += tau[i][j];
                agree++;
            }
        out[j] = agree ? (float)(sum / agree) : 0.0f;
    }
}

static void merge_dare(float *const *tau, size_t n, uint64_t count, double density, uint64_t seed,
                       const char *name, float *out)
{
    memset(out, 0, (size_t)count * sizeof *out);
    double sum_scale = 1.0 / density;
    for (size_t i = 0; i < n; i++) {
        uint64_t state = seed ^ name_hash(name) ^ (0xD1B54A32D192ED03ULL * (i + 1));
        for (uint64_t j = 0; j < count; j++) {
            double u = (double)(splitmix64(&state) >> 11) * 0x1p-53;
            if (tau[i][j] != 0 && u < density)
                out[j] = (float)((double)out[j] + (double)tau[i][j] * sum_scale);
        }
    }
}

lt_status lt_combine_dense(const lt_adapter *const *ads, const double *weights, size_t n_ads,
                           lt_combine_method method, double density, uint64_t seed, uint32_t rank,
                           lt_adapter **out, lt_surgery_report *report, lt_error *err)
{
    return lt_combine_dense_with(ads, weights, n_ads, method, density, seed, rank, NULL, NULL, out, report, err);
}

/* The number of distinct module names over all adapters (the modules
 * lt_combine_dense_with writes), for progress. */
static size_t count_unique_modules(const lt_adapter *const *ads, size_t n_ads)
{
    size_t total = 0;
    for (size_t i = 0; i < n_ads; i++)
        for (size_t k = 0; k < lt_adapter_module_count(ads[i]); k++) {
            const char *name = lt_adapter_module(ads[i], k)->name;
            bool seen = module_index(ads[i], name) < (long)k;
            for (size_t e = 0; e < i && !seen; e++)
                seen = module_index(ads[e], name) >= 0;
            total += !seen;
        }
    return total;
}

lt_status lt_combine_dense_with(const lt_adapter *const *ads, const double *weights, size_t n_ads,
                                lt_combine_method method, double density, uint64_t seed, uint32_t rank,
                                lt_progress_fn progress, void *ctx, lt_adapter **out,
                                lt_surgery_report *report, lt_error *err)
{
    *out = NULL;
    const char *label = lti_adapter_path(ads[0]);
    if (!(density > 0 && density <= 1))
        return lti_fail(err, LT_ERR_USAGE, "%s: density must be in (0, 1]", label);
    size_t cap = 0;
    uint32_t max_rank = 1;
    for (size_t i = 0; i < n_ads; i++) {
        cap += lt_adapter_module_count(ads[i]);
        for (size_t k = 0; k < lt_adapter_module_count(ads[i]); k++)
            if (lt_adapter_module(ads[i], k)->rank > max_rank)
                max_rank = lt_adapter_module(ads[i], k)->rank;
    }
    if (rank == 0)
        rank = max_rank;
    size_t total_modules = progress ? count_unique_modules(ads, n_ads) : 0;
    lti_out_module *mods = calloc(cap + 1, sizeof *mods);
    float **tau = calloc(n_ads + 1, sizeof *tau);
    lt_status s = mods && tau ? report_init(report, cap, err) : lti_fail_nomem(err, label);
    size_t n_out = 0;
    for (size_t i = 0; i < n_ads && s == LT_OK; i++) {
        for (size_t k = 0; k < lt_adapter_module_count(ads[i]) && s == LT_OK; k++) {
            const lt_lora_module *first = lt_adapter_module(ads[i], k);
            report->params_before += first->n_params;
            bool seen = false;
            for (size_t j = 0; j < n_out && !seen; j++)
                seen = strcmp(mods[j].name, first->name) == 0;
            if (seen)
                continue;
            lti_out_module *om = &mods[n_out];
            lt_surgery_module *rep = &report->modules[n_out];
            om->name = lti_strdup(first->name);
            rep->name = lti_strdup(first->name);
            report->n_modules = ++n_out;
            if (!om->name || !rep->name) {
                s = lti_fail_nomem(err, label);
                break;
            }
            om->embedding = first->kind == LT_MODULE_EMBEDDING;
            om->b_rows = om->embedding ? first->in_features : first->out_features;
            om->a_cols = om->embedding ? first->out_features : first->in_features;
            uint64_t count = om->b_rows * om->a_cols;
            float *merged = malloc((size_t)count * sizeof *merged + 1);
            size_t n_tau = 0;
            uint32_t input_rank = 0;
            s = merged ? LT_OK : lti_fail_nomem(err, om->name);
            for (size_t a = 0; a < n_ads && s == LT_OK; a++) {
                long idx = module_index(ads[a], first->name);
                if (idx < 0)
                    continue;
                const lt_lora_module *ma = lt_adapter_module(ads[a], (size_t)idx);
                if (ma->out_features != first->out_features || ma->in_features != first->in_features) {
                    s = lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has another shape in another adapter",
                                lt_source_path(lt_adapter_source(ads[a])), ma->name);
                    break;
                }
                input_rank += ma->rank;
                tau[n_tau] = malloc((size_t)count * sizeof(float) + 1);
                s = tau[n_tau] ? dense_delta(ads[a], ma, weights[a], tau[n_tau], om->b_rows, om->a_cols, err)
                               : lti_fail_nomem(err, om->name);
                n_tau++;
                if (s == LT_OK && method == LT_COMBINE_TIES)
                    s = trim_to_density(tau[n_tau - 1], count, density, err);
            }
            if (s == LT_OK) {
                if (method == LT_COMBINE_TIES)
                    merge_ties(tau, n_tau, count, merged);
                else
                    merge_dare(tau, n_tau, count, density, seed, om->name, merged);
                double total = 0;
                for (uint64_t j = 0; j < count; j++)
                    total += (double)merged[j] * merged[j];
                lt_extract_options eo = {.rule = {LT_RANK_FIXED, rank}, .seed = seed};
                s = lti_factors_from_dense(&eo, merged, om->b_rows, om->a_cols, total, &om->rank, &om->a, &om->b,
                                          rep, err);
                rep->old_rank = input_rank;
                report->params_after += (uint64_t)om->rank * (om->b_rows + om->a_cols);
            }
            if (s == LT_OK && progress)
                progress(ctx, n_out, total_modules);
            for (size_t a = 0; a < n_tau; a++)
                free(tau[a]);
            free(merged);
        }
    }
    if (s == LT_OK)
        s = lti_surgery_model(label, mods, n_out, ads, n_ads, out, err);
    lti_out_modules_free(mods, n_out);
    free(tau);
    if (s != LT_OK)
        lt_surgery_report_free(report);
    return s;
}
