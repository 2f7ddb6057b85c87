/* extract.c - a LoRA adapter from a fine-tuned model minus its base, by
 * randomized SVD of each targeted weight's difference (Halko, Martinsson,
 * Tropp 2011, alg. 4.4 + 5.1; spec/surgery.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "source_sink.h"
#include "regex.h"
#include "linalg.h"
#include "surgery.h"

#define DEFAULT_TARGETS                                                                           \
    ".*\\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|qkv_proj|gate_up_proj|"        \
    "query|key|value|out_proj|fc1|fc2|to_q|to_k|to_v)\\.weight"

/* tuned - base for one weight, as f32 (the randomized SVD's input), and
 * ||tuned - base||_F^2 in double. */
static lt_status difference(lt_source *base, size_t bi, lt_source *tuned, size_t ti, float **out,
                            double *energy, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(tuned, ti);
    uint64_t n = t->n_elems;
    float *diff = malloc((size_t)n * sizeof *diff + 1);
    float *row = malloc((64u << 10) * sizeof *row);
    lt_status s = diff && row ? LT_OK : lti_fail_nomem(err, lt_source_path(tuned));
    double sum = 0;
    for (uint64_t first = 0; s == LT_OK && first < n; first += 64u << 10) {
        uint64_t count = n - first < (64u << 10) ? n - first : (64u << 10);
        s = lt_source_read_f32(tuned, ti, first, count, diff + first, err);
        if (s == LT_OK)
            s = lt_source_read_f32(base, bi, first, count, row, err);
        for (uint64_t j = 0; s == LT_OK && j < count; j++) {
            double d = (double)diff[first + j] - (double)row[j];
            if (!isfinite(d))
                s = lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' holds NaN or Inf", lt_source_path(tuned), t->name);
            diff[first + j] = (float)d;
            sum += d * d;
        }
    }
    free(row);
    if (s != LT_OK) {
        free(diff);
        return s;
    }
    *out = diff;
    *energy = sum;
    return LT_OK;
}

typedef struct extracted {
    char *name;
    uint64_t rows, cols;
    uint32_t rank;
    float *a, *b;
    bool embedding;
    bool skip;                   /* a zero delta left out (no --keep-zero) */
} extracted;

/* Embedding tables ([vocab, dim]) get PEFT's lora_embedding_A/B, whose
 * product is the transpose of the delta. */
static bool is_embedding(const char *name)
{
    const char *last = strrchr(name, '.');
    const char *start = last;
    while (start > name && start[-1] != '.')
        start--;
    size_t len = (size_t)(last - start);
    return (len >= 5 && memmem(start, len, "embed", 5) != NULL) || (len == 3 && strncmp(start, "wte", 3) == 0);
}

static lt_status transpose_f32(float **m, uint64_t rows, uint64_t cols, lt_error *err)
{
    float *t = malloc((size_t)(rows * cols) * sizeof *t + 1);
    if (!t)
        return lti_fail_nomem(err, "extract");
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            t[c * rows + r] = (*m)[r * cols + c];
    free(*m);
    *m = t;
    return LT_OK;
}

static lt_status zero_factors(uint64_t m, uint64_t n, double total, uint32_t *rank_out, float **a_out,
                              float **b_out, lt_surgery_module *rep, lt_error *err)
{
    *rank_out = 1;
    rep->new_rank = 1;
    rep->old_rank = 0;
    rep->zero = true;
    rep->energy_kept = 1.0;
    rep->rel_error = 0.0;
    (void)total;
    *b_out = calloc((size_t)m + 1, sizeof(float));
    *a_out = calloc((size_t)n + 1, sizeof(float));
    return *a_out && *b_out ? LT_OK : lti_fail_nomem(err, "svd");
}

lt_status lti_factors_from_dense(const lt_extract_options *opts, const float *diff, uint64_t m, uint64_t n,
                                double total, uint32_t *rank_out, float **a_out, float **b_out,
                                lt_surgery_module *rep, lt_error *err)
{
    uint64_t full = m < n ? m : n;
    uint64_t cap = opts->rule.kind == LT_RANK_FIXED ? (uint64_t)opts->rule.value
                                                     : (opts->max_rank ? opts->max_rank : 256);
    uint64_t k = cap < full ? cap : full;
    double *u = malloc((size_t)(m * k) * sizeof *u + 1), *v = malloc((size_t)(n * k) * sizeof *v + 1);
    double *sv = malloc((size_t)k * sizeof *sv + 1);
    lt_status s = u && v && sv ? LT_OK : lti_fail_nomem(err, "svd");
    /* an empty delta ([m, 0] or [0, n]): exactly zero, one pair of empty
     * zero factors and no SVD */
    if (s == LT_OK && k == 0)
        s = zero_factors(m, n, total, rank_out, a_out, b_out, rep, err);
    if (s == LT_OK && k == 0) {
        free(u);
        free(v);
        free(sv);
        return s;
    }
    if (s == LT_OK)
        s = lti_randomized_svd_f64((size_t)m, (size_t)n, diff, (size_t)n, (size_t)k, LTI_RSVD_OVERSAMPLE,
                                  LTI_RSVD_POWER_ITERS, opts->seed, opts->threads, u, (size_t)k, sv, v, (size_t)k,
                                  err);
    uint64_t keep = k;
    if (s == LT_OK && opts->rule.kind == LT_RANK_ENERGY && total == 0)
        keep = 1; /* a zero delta: one zero pair */
    if (s == LT_OK && opts->rule.kind == LT_RANK_ENERGY && total > 0) {
        double kept = 0;
        for (keep = 0; keep < k && kept < opts->rule.value * total; keep++)
            kept += sv[keep] * sv[keep];
    }
    if (keep < 1)
        keep = 1;
    if (s == LT_OK) {
        double kept = 0;
        for (uint64_t i = 0; i < keep; i++)
            kept += sv[i] * sv[i];
        rep->new_rank = (uint32_t)keep;
        rep->old_rank = (uint32_t)full;
        rep->zero = total == 0;
        rep->energy_kept = total > 0 ? fmin(1.0, kept / total) : 1.0;
        rep->rel_error = total > 0 ? sqrt(fmax(0.0, total - kept) / total) : 0.0;
        *rank_out = (uint32_t)keep;
        float *b = *b_out = malloc((size_t)(m * keep) * sizeof(float) + 1);
        float *a = *a_out = malloc((size_t)(keep * n) * sizeof(float) + 1);
        if (!a || !b)
            s = lti_fail_nomem(err, "svd");
        for (uint64_t j = 0; j < keep; j++) /* sv[j] is sqrt(s_j) from here on */
            sv[j] = sqrt(sv[j]);
        for (uint64_t i = 0; s == LT_OK && i < m; i++)
            for (uint64_t j = 0; j < keep; j++)
                b[i * keep + j] = (float)(u[i * k + j] * sv[j]);
        for (uint64_t j = 0; s == LT_OK && j < keep; j++)
            for (uint64_t c = 0; c < n; c++)
                a[j * n + c] = (float)(sv[j] * v[c * k + j]);
    }
    free(u);
    free(v);
    free(sv);
    return s;
}

/* A 2-D float tensor named "*.weight": what --targets is matched against. */
static bool candidate(lt_source *src, size_t i)
{
    const lt_tensor_info *t = lt_source_tensor(src, i);
    size_t len = strlen(t->name);
    return t->n_dims == 2 && lt_dtype_is_float(t->dtype) && len > 7 && strcmp(t->name + len - 7, ".weight") == 0;
}

lt_status lt_extract(lt_source *base, lt_source *tuned, const lt_extract_options *opts, lt_adapter **out,
                     lt_surgery_report *report, lt_error *err)
{
    *out = NULL;
    memset(report, 0, sizeof *report);
    const char *label = lt_source_path(tuned);
    if (opts->rule.kind != LT_RANK_FIXED && opts->rule.kind != LT_RANK_ENERGY)
        return lti_fail(err, LT_ERR_USAGE, "%s: extract needs --rank or --energy", label);
    lti_regex *re = lti_regex_compile(opts->targets ? opts->targets : DEFAULT_TARGETS, err);
    if (!re)
        return err ? err->status : LT_ERR_USAGE;
    size_t n_tensors = lt_source_tensor_count(tuned);
    extracted *mods = calloc(n_tensors + 1, sizeof *mods);
    report->modules = calloc(n_tensors + 1, sizeof *report->modules);
    size_t n = 0, n_matching = 0;
    lt_status s = mods && report->modules ? LT_OK : lti_fail_nomem(err, label);
    for (size_t i = 0; opts->progress && i < n_tensors; i++) /* the total, for progress */
        n_matching += candidate(tuned, i) && lti_regex_exec(re, lt_source_tensor(tuned, i)->name, false) == 1;
    for (size_t i = 0; i < n_tensors && s == LT_OK; i++) {
        const lt_tensor_info *t = lt_source_tensor(tuned, i);
        size_t len = strlen(t->name);
        if (!candidate(tuned, i))
            continue;
        int matched = lti_regex_exec(re, t->name, false);
        if (matched < 0)
            s = lti_fail(err, LT_ERR_USAGE, "--targets '%s': the match exceeds the regex budget (tensor '%s')",
                         opts->targets ? opts->targets : DEFAULT_TARGETS, t->name);
        if (matched != 1)
            continue;
        long bi = lt_source_find(base, t->name);
        if (bi < 0)
            bi = lt_base_find(base, t->name);
        const lt_tensor_info *bt = bi >= 0 ? lt_source_tensor(base, (size_t)bi) : NULL;
        if (!bt || bt->n_dims != 2 || bt->shape[0] != t->shape[0] || bt->shape[1] != t->shape[1] ||
            !lt_dtype_is_float(bt->dtype)) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' [%llu, %llu] has no counterpart of that shape in %s",
                        lt_source_path(tuned), t->name, (unsigned long long)t->shape[0],
                        (unsigned long long)t->shape[1], lt_source_path(base));
            break;
        }
        extracted *om = &mods[n];
        lt_surgery_module *rep = &report->modules[n];
        om->name = lti_strndup(t->name, len - 7);
        rep->name = lti_strdup(om->name ? om->name : "");
        om->rows = t->shape[0];
        om->cols = t->shape[1];
        report->n_modules = ++n;
        if (!om->name || !rep->name) {
            s = lti_fail_nomem(err, label);
            break;
        }
        float *diff = NULL;
        double total = 0;
        s = difference(base, (size_t)bi, tuned, i, &diff, &total, err);
        if (s == LT_OK)
            s = lti_factors_from_dense(opts, diff, om->rows, om->cols, total, &om->rank, &om->a, &om->b, rep, err);
        om->embedding = is_embedding(t->name);
        if (s == LT_OK && om->embedding) {
            /* delta [vocab, dim] = U S V^T: A = (U sqrt S)^T [r, vocab],
             * B = (sqrt S V^T)^T [dim, r] */
            float *a = om->b, *b = om->a;
            om->a = a;
            om->b = b;
            s = transpose_f32(&om->a, om->rows, om->rank, err);
            if (s == LT_OK)
                s = transpose_f32(&om->b, om->rank, om->cols, err);
        }
        free(diff);
        if (s == LT_OK && opts->progress)
            opts->progress(opts->progress_ctx, n, n_matching > n ? n_matching : n);
        report->params_before += t->n_elems;
        if (s == LT_OK && rep->zero && !opts->keep_zero) {
            /* an unchanged weight needs no module: reported, not written */
            om->skip = true;
            rep->new_rank = 0;
            continue;
        }
        report->params_after += (uint64_t)om->rank * (om->rows + om->cols);
    }
    lti_regex_free(re);
    if (s == LT_OK && n == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: no 2-D weight matches the targets", lt_source_path(tuned));
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += !mods[i].skip;
    if (s == LT_OK && kept == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: every matching weight equals %s's: nothing to extract (--keep-zero "
                     "writes zero factors)", lt_source_path(tuned), lt_source_path(base));
    if (s == LT_OK) {
        lti_out_module *om = calloc(kept + 1, sizeof *om);
        if (!om)
            s = lti_fail_nomem(err, label);
        for (size_t i = 0, j = 0; s == LT_OK && i < n; i++) {
            if (mods[i].skip)
                continue;
            /* an embedding's A is [r, vocab], B [dim, r] */
            bool emb = mods[i].embedding;
            om[j++] = (lti_out_module){mods[i].name, emb, emb ? mods[i].cols : mods[i].rows,
                                       emb ? mods[i].rows : mods[i].cols, mods[i].rank, mods[i].a, mods[i].b};
            mods[i].name = NULL;
            mods[i].a = mods[i].b = NULL;
        }
        if (s == LT_OK)
            s = lti_surgery_model(label, om, kept, NULL, 0, out, err);
        lti_out_modules_free(om, om ? kept : 0);
    }
    for (size_t i = 0; i < n; i++) {
        free(mods[i].name);
        free(mods[i].a);
        free(mods[i].b);
    }
    free(mods);
    if (s != LT_OK)
        lt_surgery_report_free(report);
    return s;
}
