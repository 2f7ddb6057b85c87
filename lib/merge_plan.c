/* merge_plan.c - deciding what a merge does to every base tensor, and
 * loading the adapters' factors in the layout the kernel wants.
 *
 * Every base tensor is viewed as rows x cols (shape[0] x the rest).  A
 * low-rank op adds  coef (rows x r) @ vec (r x cols)  to it:
 *   base [out, in] (Linear, conv):   coef = w s B,   vec = A
 *   base [in, out] (GPT-2 Conv1D):   coef = A^T,     vec = w s B^T
 *   embedding [vocab, dim]:          coef = A^T,     vec = w s B^T
 * so one kernel serves every layout (merge_run.c).
 */
#include <stdatomic.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge_internal.h"
#include "surgery.h"

void lt_merge_plan_free(lt_merge_plan *plan)
{
    if (!plan)
        return;
    for (size_t i = 0; i < plan->n_tensors; i++) {
        plan_tensor *t = &plan->tensors[i];
        for (size_t k = 0; k < t->n_ops; k++) {
            free(t->ops[k].coef);
            free(t->ops[k].vec);
            free(t->ops[k].magnitude);
        }
        free(t->ops);
        free(t->name);
        free(t->row_ids);
        free(t->row_values);
        merge_fast_free(t->fast);
    }
    free(plan->tensors);
    lti_strmap_free(&plan->by_name);
    for (size_t i = 0; i < plan->n_skipped; i++)
        free(plan->skipped[i]);
    free(plan->skipped);
    free(plan->modules_merged);
    free(plan->inputs);
    free(plan);
}

static lt_status add_skipped(lt_merge_plan *plan, const char *line, lt_error *err)
{
    char *copy = lti_strdup(line);
    if (!copy || !lti_grow((void **)&plan->skipped, &plan->cap_skipped, plan->n_skipped + 1,
                          sizeof(char *))) {
        free(copy);
        return lti_fail_nomem(err, "merge");
    }
    plan->skipped[plan->n_skipped++] = copy;
    plan->stats.modules_skipped++;
    return LT_OK;
}

static lt_status load_f64(const lt_adapter *ad, long index, double **out, lt_error *err)
{
    return lti_source_read_all_f64(lt_adapter_source(ad), (size_t)index, out, err);
}

/* Build coef and vec for a low-rank op (see the comment at the top). */
static lt_status build_lowrank(merge_op *op, const lt_adapter *ad, const lt_lora_module *m,
                               double factor, lt_error *err)
{
    double *a = NULL, *b = NULL;
    lt_status s = lti_module_factors_f64(ad, m, factor, &b, &a, err);
    if (s != LT_OK)
        return s;
    uint64_t r = m->rank;
    /* A is [r, a_cols]; B is [b_rows, r] (conv: trailing 1s) */
    uint64_t a_cols = m->kind == LT_MODULE_EMBEDDING ? m->out_features : m->in_features;
    uint64_t b_rows = m->kind == LT_MODULE_EMBEDDING ? m->in_features : m->out_features;
    op->rank = (uint32_t)r;
    bool b_is_coef = op->fit == LT_FIT_DIRECT && m->kind != LT_MODULE_EMBEDDING;
    if (b_is_coef) {
        op->coef = b, b = NULL; /* [out, r] */
        op->vec = a, a = NULL;  /* [r, in]  */
    } else {
        double *a_t = malloc((size_t)(a_cols * r) * sizeof *a_t + 1);
        double *b_t = malloc((size_t)(b_rows * r) * sizeof *b_t + 1);
        if (!a_t || !b_t) {
            free(a_t);
            free(b_t);
            s = lti_fail_nomem(err, "merge");
        } else {
            for (uint64_t k = 0; k < r; k++)
                for (uint64_t j = 0; j < a_cols; j++)
                    a_t[j * r + k] = a[k * a_cols + j];
            for (uint64_t i = 0; i < b_rows; i++)
                for (uint64_t k = 0; k < r; k++)
                    b_t[k * b_rows + i] = b[i * r + k];
            op->coef = a_t; /* [a_cols, r] */
            op->vec = b_t;  /* [r, b_rows] */
        }
    }
    free(a);
    free(b);
    return s;
}

static lt_status add_op(plan_tensor *t, const merge_op *op, lt_error *err)
{
    if (!lti_grow((void **)&t->ops, &t->cap_ops, t->n_ops + 1, sizeof *op))
        return lti_fail_nomem(err, "merge");
    t->ops[t->n_ops++] = *op;
    return LT_OK;
}

static lt_status plan_module(lt_merge_plan *plan, size_t input, const lt_lora_module *m,
                             lt_error *err)
{
    const lt_adapter *ad = plan->inputs[input].adapter;
    const char *apath = lt_source_path(lt_adapter_source(ad));
    char line[1024];
    long index = lt_base_find(plan->base, m->target);
    if (index < 0) {
        if (!plan->opts.allow_missing)
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': target '%s' not found in base %s (use --allow-missing to skip)",
                           apath, m->name, m->target, lt_source_path(plan->base));
        snprintf(line, sizeof line, "%s: module %s: target %s not in base", apath, m->name, m->target);
        return add_skipped(plan, line, err);
    }
    plan_tensor *t = &plan->tensors[index];
    const lt_tensor_info *bt = lt_source_tensor(plan->base, (size_t)index);
    merge_op op = {.input = input, .module = m, .fit = lt_module_fit(m, bt)};
    if (op.fit == LT_FIT_NONE)
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: module '%s': adapter shape [%llu, %llu] does not fit base tensor '%s' [%llu%s%llu%s]",
                       apath, m->name, (unsigned long long)m->out_features,
                       (unsigned long long)m->in_features, bt->name, (unsigned long long)bt->shape[0],
                       bt->n_dims > 1 ? ", " : "", bt->n_dims > 1 ? (unsigned long long)bt->shape[1] : 0ULL,
                       bt->n_dims > 2 ? ", ..." : "");
    if (!lt_dtype_is_numeric(bt->dtype))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: base tensor '%s' has dtype %s: cannot merge into it",
                       lt_source_path(plan->base), bt->name, lt_dtype_name(bt->dtype));
    /* a block-quantized tensor that gets a delta: written in the asked
     * dtype, or re-quantized where we have ggml's quantizer, else F16 (as
     * llama-export-lora does) */
    if (lt_dtype_block_elems(bt->dtype) > 1 && t->out_dtype == bt->dtype && bt->dtype != LT_Q8_0 &&
        bt->dtype != LT_Q4_0)
        t->out_dtype = LT_F16;
    if (t->action == ACT_REPLACE)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' targets '%s', which an adapter also replaces",
                       apath, m->name, bt->name);
    if (lt_dtype_block_elems(bt->dtype) > 1 && plan->opts.out_dtype != LT_DTYPE_INVALID)
        t->out_dtype = plan->opts.out_dtype;
    if (m->tensor_magnitude >= 0 && (op.fit != LT_FIT_DIRECT || m->kind != LT_MODULE_LINEAR))
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: module '%s': DoRA is merged for Linear layers stored [out, in] only", apath, m->name);
    double factor = plan->inputs[input].weight * m->scale;
    op.factor = factor;
    op.rank = m->rank; /* the factors are loaded later, all modules at once */
    lt_status s = LT_OK;
    if (m->tensor_magnitude >= 0 && !plan->opts.check_only)
        s = load_f64(ad, m->tensor_magnitude, &op.magnitude, err);
    if (s == LT_OK)
        s = add_op(t, &op, err);
    if (s != LT_OK) {
        free(op.coef);
        free(op.vec);
        free(op.magnitude);
        return s;
    }
    t->action = ACT_MERGE;
    plan->modules_merged[input]++;
    if (m->tensor_bias < 0)
        return LT_OK;

    /* lora_bias: bias' = bias + w s lora_B.bias, on "<module>.bias" */
    char *bias_name = lti_asprintf("%.*s.bias", (int)(strlen(bt->name) - strlen(".weight")), bt->name);
    if (!bias_name)
        return lti_fail_nomem(err, "merge");
    long bias_index = lt_source_find(plan->base, bias_name);
    free(bias_name);
    if (bias_index < 0 || lt_source_tensor(plan->base, (size_t)bias_index)->n_elems != m->out_features)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has a lora bias but base tensor '%s' has no bias of %llu elements",
                       apath, m->name, bt->name, (unsigned long long)m->out_features);
    if (plan->opts.check_only)
        return LT_OK;
    merge_op bias_op = {.input = input, .module = m, .fit = LT_FIT_DIRECT, .rank = 1};
    s = load_f64(ad, m->tensor_bias, &bias_op.vec, err);
    if (s != LT_OK)
        return s;
    for (uint64_t i = 0; i < m->out_features; i++)
        bias_op.vec[i] *= factor;
    bias_op.coef = malloc(sizeof(double));
    if (!bias_op.coef) {
        free(bias_op.vec);
        return lti_fail_nomem(err, "merge");
    }
    bias_op.coef[0] = 1.0;
    plan->tensors[bias_index].action = ACT_MERGE;
    s = add_op(&plan->tensors[bias_index], &bias_op, err);
    if (s != LT_OK) {
        free(bias_op.vec);
        free(bias_op.coef);
    }
    return s;
}

static plan_tensor *append_tensor(lt_merge_plan *plan, lt_error *err)
{
    if (!lti_grow((void **)&plan->tensors, &plan->cap_tensors, plan->n_tensors + 1, sizeof *plan->tensors)) {
        lti_fail_nomem(err, "merge");
        return NULL;
    }
    plan_tensor *t = &plan->tensors[plan->n_tensors++];
    memset(t, 0, sizeof *t);
    t->base_index = -1;
    t->replace_tensor = -1;
    return t;
}

static int by_row_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* PEFT's trainable tokens: the saved rows replace the embedding's rows at
 * the configured token ids (index_copy), after any LoRA delta. */
static lt_status plan_token_rows(lt_merge_plan *plan, const lt_replacement *r, lt_source *asrc, const char *apath,
                                 lt_error *err)
{
    long index = lt_base_find(plan->base, r->target);
    if (index < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: trainable tokens '%s': base has no '%s'", apath, r->key, r->target);
    plan_tensor *t = &plan->tensors[index];
    const lt_tensor_info *bt = lt_source_tensor(plan->base, (size_t)index);
    const lt_tensor_info *rt = lt_source_tensor(asrc, (size_t)r->tensor);
    if (bt->n_dims != 2 || rt->n_dims != 2 || rt->shape[1] != bt->shape[1] || !lt_dtype_is_numeric(bt->dtype))
        return lti_fail(err, LT_ERR_INVALID, "%s: trainable tokens '%s' do not fit base tensor '%s'", apath, r->key,
                       bt->name);
    if (t->action == ACT_REPLACE || t->n_rows)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' is replaced twice", apath, bt->name);
    size_t n = r->n_token_indices;
    uint64_t cols = bt->shape[1];
    /* sort (id, row) pairs by id: ids then index the rows in order */
    uint64_t *pairs = malloc(n * 2 * sizeof *pairs + 1);
    if (!pairs)
        return lti_fail_nomem(err, apath);
    lt_status s = LT_OK;
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        if (r->token_indices[i] >= bt->shape[0])
            s = lti_fail(err, LT_ERR_INVALID, "%s: trainable token id %llu is past the %llu rows of '%s'", apath,
                         (unsigned long long)r->token_indices[i], (unsigned long long)bt->shape[0], bt->name);
        pairs[2 * i] = r->token_indices[i];
        pairs[2 * i + 1] = i;
    }
    if (s == LT_OK)
        qsort(pairs, n, 2 * sizeof *pairs, by_row_id);
    for (size_t i = 1; i < n && s == LT_OK; i++)
        if (pairs[2 * i] == pairs[2 * i - 2])
            s = lti_fail(err, LT_ERR_INVALID, "%s: trainable token id %llu is listed twice", apath,
                         (unsigned long long)pairs[2 * i]);
    double *values = NULL;
    if (s == LT_OK && !plan->opts.check_only) {
        s = lti_source_read_all_f64(asrc, (size_t)r->tensor, &values, err);
        t->row_ids = malloc(n * sizeof *t->row_ids + 1);
        t->row_values = malloc((size_t)(n * cols) * sizeof *t->row_values + 1);
        if (s == LT_OK && (!t->row_ids || !t->row_values))
            s = lti_fail_nomem(err, apath);
        for (size_t i = 0; i < n && s == LT_OK; i++) {
            t->row_ids[i] = pairs[2 * i];
            memcpy(t->row_values + i * cols, values + pairs[2 * i + 1] * cols, (size_t)cols * sizeof *values);
        }
    }
    free(pairs);
    free(values);
    if (s != LT_OK)
        return s;
    t->n_rows = n;
    t->action = ACT_MERGE;
    if (lt_dtype_block_elems(bt->dtype) > 1 && t->out_dtype == bt->dtype && bt->dtype != LT_Q8_0 &&
        bt->dtype != LT_Q4_0)
        t->out_dtype = LT_F16;
    return LT_OK;
}

static lt_status plan_replacement(lt_merge_plan *plan, size_t input, const lt_replacement *r,
                                  lt_error *err)
{
    const lt_adapter *ad = plan->inputs[input].adapter;
    const lt_source *asrc = lt_adapter_source(ad);
    const char *apath = lt_source_path(asrc);
    const lt_tensor_info *rt = lt_source_tensor(asrc, (size_t)r->tensor);
    if (r->kind == LT_REPLACE_TOKEN_ROWS)
        return plan_token_rows(plan, r, lt_adapter_source(ad), apath, err);
    long index = lt_base_find(plan->base, r->target);
    plan_tensor *t;
    if (index >= 0) {
        t = &plan->tensors[index];
        const lt_tensor_info *bt = lt_source_tensor(plan->base, (size_t)index);
        if (bt->n_dims != rt->n_dims || memcmp(bt->shape, rt->shape, bt->n_dims * sizeof *bt->shape) != 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: replacement '%s' does not have the shape of base tensor '%s'",
                           apath, r->key, bt->name);
        if (!lt_dtype_is_float(rt->dtype) && rt->dtype != bt->dtype)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: replacement '%s' has dtype %s, base has %s", apath,
                           r->key, lt_dtype_name(rt->dtype), lt_dtype_name(bt->dtype));
    } else {
        long existing = lti_strmap_get(&plan->by_name, r->target);
        if (existing >= 0) {
            t = &plan->tensors[existing];
        } else {
            /* a head the base does not have (a task model's classifier) */
            if (!(t = append_tensor(plan, err)))
                return LT_ERR_NOMEM;
            t->name = lti_strdup(r->target);
            if (!t->name || lti_strmap_put(&plan->by_name, t->name, (long)(t - plan->tensors)) < 0)
                return lti_fail_nomem(err, "merge");
            t->action = ACT_ADD;
            t->n_dims = rt->n_dims;
            memcpy(t->shape, rt->shape, sizeof t->shape);
            t->in_dtype = rt->dtype;
            t->out_dtype = plan->opts.out_dtype != LT_DTYPE_INVALID && lt_dtype_is_float(rt->dtype)
                               ? plan->opts.out_dtype
                               : rt->dtype;
            t->replace_input = input;
            t->replace_tensor = r->tensor;
            return LT_OK;
        }
    }
    if (t->action == ACT_REPLACE || t->action == ACT_ADD)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' is replaced by two adapters", apath, t->name);
    if (t->action == ACT_MERGE)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' is both replaced and changed by a LoRA module", apath,
                       t->name);
    t->action = ACT_REPLACE;
    t->replace_input = input;
    t->replace_tensor = r->tensor;
    t->in_dtype = rt->dtype;
    return LT_OK;
}

/* In check-only mode with a listener, a failed check is reported and
 * planning goes on (allocation failures still stop it). */
static lt_status violation(lt_merge_plan *plan, lt_status s, lt_error *err)
{
    if (s == LT_OK || s == LT_ERR_NOMEM || !plan->opts.check_only || !plan->opts.on_violation)
        return s;
    plan->opts.on_violation(plan->opts.violation_ctx, err ? err->message : "merge check failed");
    return LT_OK;
}

static lt_status check_config(const lt_adapter *ad, lt_error *err)
{
    const lt_peft_config *cfg = lt_adapter_config(ad);
    const char *path = lt_source_path(lt_adapter_source(ad));
    if (cfg->has_layer_replication)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: layer_replication is set: the merged weights would not describe the replicated layers",
                       path);
    return LT_OK;
}

/* ---- the factors and the kernels' bounds, on all threads ---- */

typedef struct load_task {
    lt_merge_plan *plan;
    merge_op *op;
    lt_status status;
    lt_error error;
} load_task;

static void load_one(void *ctx, size_t i)
{
    load_task *task = (load_task *)ctx + i;
    const lt_adapter *ad = task->plan->inputs[task->op->input].adapter;
    task->status = build_lowrank(task->op, ad, task->op->module, task->op->factor, &task->error);
}

/* Whether task a's module comes before b's (inputs in order, then each
 * adapter's modules in order). */
static bool module_before(const load_task *a, const load_task *b)
{
    return a->op->input != b->op->input ? a->op->input < b->op->input : a->op->module < b->op->module;
}

/* Read every low-rank op's factors (the costly part of planning); of
 * several errors, the first module's is reported, as a serial run would. */
static lt_status load_factors(lt_merge_plan *plan, lt_error *err)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < plan->n_tensors; i++)
        for (size_t q = 0; q < plan->tensors[i].n_ops; q++)
            n += !plan->tensors[i].ops[q].coef;
    load_task *tasks = calloc(n ? n : 1, sizeof *tasks);
    if (!tasks)
        return lti_fail_nomem(err, "merge");
    for (size_t i = 0; i < plan->n_tensors; i++)
        for (size_t q = 0; q < plan->tensors[i].n_ops; q++)
            if (!plan->tensors[i].ops[q].coef)
                tasks[k++] = (load_task){.plan = plan, .op = &plan->tensors[i].ops[q]};
    lti_parallel_for(n, plan->opts.threads, load_one, tasks);
    const load_task *first = NULL;
    for (size_t i = 0; i < n; i++)
        if (tasks[i].status != LT_OK && (!first || module_before(&tasks[i], first)))
            first = &tasks[i];
    lt_status s = first ? first->status : LT_OK;
    if (first && err)
        *err = first->error;
    free(tasks);
    return s;
}

typedef struct prepare_task {
    lt_merge_plan *plan;
    atomic_bool failed;
} prepare_task;

static void prepare_one(void *ctx, size_t i)
{
    prepare_task *task = ctx;
    if (merge_fast_prepare(&task->plan->tensors[i], NULL) != LT_OK)
        atomic_store(&task->failed, true);
}

static lt_status prepare_kernels(lt_merge_plan *plan, lt_error *err)
{
    prepare_task task = {.plan = plan};
    atomic_init(&task.failed, false);
    lti_parallel_for(plan->n_tensors, plan->opts.threads, prepare_one, &task);
    return atomic_load(&task.failed) ? lti_fail_nomem(err, "merge") : LT_OK;
}

lt_merge_plan *lt_merge_plan_create(lt_source *base, const lt_merge_input *inputs, size_t n_inputs,
                                    const lt_merge_options *opts, lt_error *err)
{
    lt_merge_plan *plan = calloc(1, sizeof *plan);
    if (!plan) {
        lti_fail_nomem(err, "merge");
        return NULL;
    }
    plan->base = base;
    if (opts)
        plan->opts = *opts;
    plan->inputs = calloc(n_inputs ? n_inputs : 1, sizeof *plan->inputs);
    plan->modules_merged = calloc(n_inputs ? n_inputs : 1, sizeof *plan->modules_merged);
    if (!plan->inputs || !plan->modules_merged) {
        lt_merge_plan_free(plan);
        lti_fail_nomem(err, "merge");
        return NULL;
    }
    memcpy(plan->inputs, inputs, n_inputs * sizeof *inputs);
    plan->n_inputs = n_inputs;
    lt_dtype out = plan->opts.out_dtype;
    if (out != LT_DTYPE_INVALID && out != LT_F32 && out != LT_F16 && out != LT_BF16) {
        lt_merge_plan_free(plan);
        lti_fail(err, LT_ERR_USAGE, "merge: output dtype must be F32, F16 or BF16");
        return NULL;
    }
    lt_status s = LT_OK;
    size_t n_base = lt_source_tensor_count(base);
    for (size_t i = 0; i < n_base && s == LT_OK; i++) {
        const lt_tensor_info *bt = lt_source_tensor(base, i);
        plan_tensor *t = append_tensor(plan, err);
        if (!t || !(t->name = lti_strdup(bt->name))) {
            s = LT_ERR_NOMEM;
            lti_fail_nomem(err, "merge");
            break;
        }
        if (lti_strmap_put(&plan->by_name, t->name, (long)i) < 0)
            s = lti_fail_nomem(err, "merge");
        t->base_index = (long)i;
        t->n_dims = bt->n_dims;
        memcpy(t->shape, bt->shape, sizeof t->shape);
        t->in_dtype = bt->dtype;
        /* --dtype applies to float tensors, and to block-quantized ones
         * that get a delta (planned below); others keep their bytes */
        t->out_dtype = out != LT_DTYPE_INVALID && lt_dtype_is_float(bt->dtype) ? out : bt->dtype;
        t->action = t->out_dtype == bt->dtype ? ACT_COPY : ACT_CONVERT;
    }
    for (size_t in = 0; in < n_inputs && s == LT_OK; in++) {
        const lt_adapter *ad = inputs[in].adapter;
        s = violation(plan, check_config(ad, err), err);
        for (size_t k = 0; k < lt_adapter_replacement_count(ad) && s == LT_OK; k++)
            s = violation(plan, plan_replacement(plan, in, lt_adapter_replacement(ad, k), err), err);
    }
    for (size_t in = 0; in < n_inputs && s == LT_OK; in++) {
        const lt_adapter *ad = inputs[in].adapter;
        for (size_t k = 0; k < lt_adapter_module_count(ad) && s == LT_OK; k++)
            s = violation(plan, plan_module(plan, in, lt_adapter_module(ad, k), err), err);
    }
    if (s == LT_OK && !plan->opts.check_only)
        s = load_factors(plan, err);
    if (s != LT_OK) {
        lt_merge_plan_free(plan);
        return NULL;
    }
    for (size_t i = 0; i < plan->n_tensors; i++) {
        plan_tensor *t = &plan->tensors[i];
        switch (t->action) {
        case ACT_COPY: plan->stats.tensors_copied++; break;
        case ACT_CONVERT: plan->stats.tensors_converted++; break;
        case ACT_MERGE: plan->stats.tensors_merged++; break;
        case ACT_REPLACE: plan->stats.tensors_replaced++; break;
        case ACT_ADD: plan->stats.tensors_added++; break;
        }
        uint64_t elems, bytes;
        if (!lti_shape_elems(t->n_dims, t->shape, &elems) || !lt_dtype_nbytes(t->out_dtype, elems, &bytes)) {
            lti_fail(err, LT_ERR_INVALID, "merge: tensor '%s' is too large", t->name);
            lt_merge_plan_free(plan);
            return NULL;
        }
        t->n_elems = elems;
        t->rows = t->n_dims >= 1 ? t->shape[0] : 1;
        t->cols = t->rows ? elems / t->rows : 0;
        if (t->n_dims == 1 && t->n_ops) { /* a bias: one row of [out] */
            t->rows = 1;
            t->cols = elems;
        }
        plan->stats.bytes_written += bytes;
    }
    if (!plan->opts.double_kernel_only && !plan->opts.check_only && (s = prepare_kernels(plan, err)) != LT_OK) {
        lt_merge_plan_free(plan);
        return NULL;
    }
    plan->stats.tensors_total = plan->n_tensors;
    return plan;
}

lt_merge_stats lt_merge_plan_stats(const lt_merge_plan *plan) { return plan->stats; }

size_t lt_merge_plan_modules_merged(const lt_merge_plan *plan, size_t input)
{
    return input < plan->n_inputs ? plan->modules_merged[input] : 0;
}

size_t lt_merge_plan_skipped_count(const lt_merge_plan *plan) { return plan->n_skipped; }
const char *lt_merge_plan_skipped(const lt_merge_plan *plan, size_t i) { return plan->skipped[i]; }
