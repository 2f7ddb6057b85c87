/* verify.c - lt_verify_merged: is OUT the merge of INPUTS into BASE?
 * (spec/verify.md).
 *
 * The plan mirrors the merge's (lib/merge_plan.c, spec/merge.md): every
 * module's target found as the merge finds it, the terms of each base
 * tensor in the merge's order (adapter by adapter, module by module), the
 * replacements and trainable token rows.  Then OUT is walked in its own
 * order: merged tensors get the forward check (verify_forward.c), the
 * others are compared byte for byte with what they must hold, and every
 * tensor OUT lacks or has in excess fails.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify_internal.h"

#define NAME_BUF 512
#define DEFAULT_SEED 0x6C6F7261746F6F6Cull /* "loratool" */

const char *lt_verify_kind_name(lt_verify_kind k)
{
    static const char *const names[] = {"merged", "copied", "converted", "replaced",
                                        "added",  "missing", "extra",    "skipped"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

void lt_verify_report_free(lt_verify_report *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->n_tensors; i++) {
        free(report->tensors[i].name);
        free(report->tensors[i].problem);
    }
    free(report->tensors);
    for (size_t i = 0; i < report->n_skipped_modules; i++)
        free(report->skipped_modules[i]);
    free(report->skipped_modules);
    memset(report, 0, sizeof *report);
}

void verify_problem(lt_verify_tensor *vt, const char *fmt, ...)
{
    vt->failed = true;
    if (vt->problem)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    vt->problem = lti_strdup(line);
}

void verify_view(const lt_tensor_info *t, uint64_t *rows, uint64_t *cols)
{
    *rows = t->n_dims >= 2 ? t->shape[0] : 1;
    *cols = *rows ? t->n_elems / *rows : 0;
}

lt_status verify_read_f64(lt_source *src, size_t i, double **out, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(src, i);
    *out = NULL;
    if (t->n_elems > SIZE_MAX / sizeof(double) / 2 || !lt_dtype_is_numeric(t->dtype))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' of type %s cannot be read as numbers",
                       lt_source_path(src), t->name, lt_dtype_name(t->dtype));
    double *values = malloc((size_t)t->n_elems * sizeof *values + 1);
    unsigned char *raw = malloc((size_t)t->n_bytes + 1);
    lt_status s = values && raw ? LT_OK : lti_fail_nomem(err, lt_source_path(src));
    if (s == LT_OK)
        s = lt_source_read(src, i, 0, raw, (size_t)t->n_bytes, err);
    if (s == LT_OK && lt_convert_to_f64(t->dtype, raw, values, (size_t)t->n_elems) != LT_OK)
        s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s': cannot read %s", lt_source_path(src), t->name,
                     lt_dtype_name(t->dtype));
    for (uint64_t k = 0; s == LT_OK && k < t->n_elems; k++)
        if (!isfinite(values[k]))
            s = lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' holds NaN or Inf", lt_source_path(src), t->name);
    free(raw);
    if (s != LT_OK) {
        free(values);
        return s;
    }
    *out = values;
    return LT_OK;
}

lt_status verify_read_rows(lt_source *src, size_t i, uint64_t r0, uint64_t count, uint64_t row_bytes,
                           const uint64_t *inv, unsigned char *dst, lt_error *err)
{
    if (!inv)
        return lt_source_read(src, i, r0 * row_bytes, dst, (size_t)(count * row_bytes), err);
    for (uint64_t k = 0; k < count; k++) {
        lt_status s = lt_source_read(src, i, inv[r0 + k] * row_bytes, dst + k * row_bytes, (size_t)row_bytes, err);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}

void *verify_scratch_get(verify_scratch *s, unsigned slot, size_t bytes)
{
    if (bytes >= s->cap[slot]) { /* one byte more: a size of 0 is a buffer too */
        free(s->buf[slot]);
        s->buf[slot] = bytes < SIZE_MAX ? malloc(bytes + 1) : NULL;
        s->cap[slot] = s->buf[slot] ? bytes + 1 : 0;
    }
    return s->buf[slot];
}

static verify_scratch *scratch_take(verify_ctx *ctx)
{
    pthread_mutex_lock(&ctx->pool_lock);
    verify_scratch *s = ctx->pool;
    if (s)
        ctx->pool = s->next;
    pthread_mutex_unlock(&ctx->pool_lock);
    return s ? s : calloc(1, sizeof *s);
}

static void scratch_give(verify_ctx *ctx, verify_scratch *s)
{
    pthread_mutex_lock(&ctx->pool_lock);
    s->next = ctx->pool;
    ctx->pool = s;
    pthread_mutex_unlock(&ctx->pool_lock);
}

static void scratch_free_all(verify_ctx *ctx)
{
    while (ctx->pool) {
        verify_scratch *s = ctx->pool;
        ctx->pool = s->next;
        for (unsigned k = 0; k < VERIFY_SLOTS; k++)
            free(s->buf[k]);
        free(s);
    }
}

bool verify_same_shape(const lt_tensor_info *x, const lt_tensor_info *y)
{
    if (x->n_dims != y->n_dims)
        return false;
    for (uint32_t d = 0; d < x->n_dims; d++)
        if (x->shape[d] != y->shape[d])
            return false;
    return true;
}

/* OUT's tensor must hold exactly SRC's tensor rounded once to OUT's dtype
 * (the bytes themselves when the dtype is kept). */
static lt_status compare_expected(lt_source *src, size_t si, lt_source *out, size_t oi, const uint64_t *inv,
                                  verify_scratch *scratch, lt_verify_tensor *vt, lt_error *err)
{
    const lt_tensor_info *st = lt_source_tensor(src, si), *ot = lt_source_tensor(out, oi);
    lt_dtype od = ot->dtype;
    uint64_t rows = st->n_dims >= 1 && inv ? st->shape[0] : st->n_dims >= 2 ? st->shape[0] : 1;
    uint64_t cols = rows ? st->n_elems / rows : 0;
    unsigned be = lt_dtype_block_elems(od) > lt_dtype_block_elems(st->dtype) ? lt_dtype_block_elems(od)
                                                                             : lt_dtype_block_elems(st->dtype);
    if (cols % be) {
        if (inv) {
            verify_problem(vt, "permuted rows are not whole %u-element blocks", be);
            return LT_OK;
        }
        rows = 1, cols = st->n_elems;
    }
    bool same = st->dtype == od;
    if (!same && (!lt_dtype_is_numeric(st->dtype) || !lt_dtype_is_numeric(od))) {
        verify_problem(vt, "dtype %s where %s was expected", lt_dtype_name(od), lt_dtype_name(st->dtype));
        return LT_OK;
    }
    uint64_t src_row = cols / lt_dtype_block_elems(st->dtype) * lt_dtype_block_bytes(st->dtype);
    uint64_t out_row = cols / lt_dtype_block_elems(od) * lt_dtype_block_bytes(od);
    uint64_t per = cols && VERIFY_CHUNK_ELEMS / cols ? VERIFY_CHUNK_ELEMS / cols : 1;
    if (per > rows)
        per = rows ? rows : 1;
    unsigned char *raw = verify_scratch_get(scratch, 0, (size_t)(per * src_row));
    unsigned char *got = verify_scratch_get(scratch, 1, (size_t)(per * out_row));
    unsigned char *want = same ? raw : verify_scratch_get(scratch, 2, (size_t)(per * out_row));
    double *values = same ? NULL : verify_scratch_get(scratch, 3, (size_t)(per * cols) * sizeof *values);
    lt_status s = raw && got && want && (same || values) ? LT_OK : lti_fail_nomem(err, "verify");
    for (uint64_t r0 = 0; s == LT_OK && r0 < rows && !vt->failed; r0 += per) {
        uint64_t n = rows - r0 < per ? rows - r0 : per;
        s = lt_source_read(src, si, r0 * src_row, raw, (size_t)(n * src_row), err);
        if (s == LT_OK)
            s = verify_read_rows(out, oi, r0, n, out_row, inv, got, err);
        if (s != LT_OK)
            break;
        if (!same && (lt_convert_to_f64(st->dtype, raw, values, (size_t)(n * cols)) != LT_OK ||
                      lt_convert_from_f64(od, values, want, (size_t)(n * cols)) != LT_OK)) {
            verify_problem(vt, "cannot check a conversion from %s to %s", lt_dtype_name(st->dtype),
                           lt_dtype_name(od));
            break;
        }
        if (memcmp(want, got, (size_t)(n * out_row)) == 0)
            continue;
        uint64_t at = 0;
        while (want[at] == got[at])
            at++;
        uint64_t elem = at / lt_dtype_block_bytes(od) * lt_dtype_block_elems(od);
        verify_problem(vt, "element [%llu, %llu] differs from %s's %s", (unsigned long long)(r0 + elem / cols),
                       (unsigned long long)(elem % cols), lt_source_path(src), same ? "bytes" : "value rounded to");
        if (!same) {
            size_t len = strlen(vt->problem);
            char *longer = lti_asprintf("%.*s %s", (int)len, vt->problem, lt_dtype_name(od));
            if (longer) {
                free(vt->problem);
                vt->problem = longer;
            }
        }
    }
    return s;
}

typedef struct added_tensor {
    const lt_adapter *adapter;
    const lt_replacement *rep;
    long out_index;
} added_tensor;

typedef struct verify_plan {
    verify_tensor *tensors;      /* one per base tensor                    */
    size_t n;
    added_tensor *added;
    size_t n_added, cap_added;
    long *claim;                 /* per OUT tensor: base index, -2 - added */
} verify_plan;

static void plan_free(verify_plan *p)
{
    for (size_t i = 0; p->tensors && i < p->n; i++)
        free(p->tensors[i].ops);
    free(p->tensors);
    free(p->added);
    free(p->claim);
}

static lt_status add_op(verify_tensor *t, const verify_op *op, lt_error *err)
{
    if (!lti_grow((void **)&t->ops, &t->cap_ops, t->n_ops + 1, sizeof *op))
        return lti_fail_nomem(err, "verify");
    t->ops[t->n_ops++] = *op;
    t->kind = LT_VERIFY_MERGED;
    return LT_OK;
}

static lt_status skip_module(lt_verify_report *r, const char *line, lt_error *err)
{
    size_t cap = r->n_skipped_modules;
    char *copy = lti_strdup(line);
    if (!copy || !lti_grow((void **)&r->skipped_modules, &cap, r->n_skipped_modules + 1, sizeof(char *))) {
        free(copy);
        return lti_fail_nomem(err, "verify");
    }
    r->skipped_modules[r->n_skipped_modules++] = copy;
    return LT_OK;
}

static lt_status plan_module(verify_ctx *ctx, verify_plan *p, const lt_merge_input *in, const lt_lora_module *m,
                             lt_error *err)
{
    const char *apath = lt_source_path(lt_adapter_source(in->adapter));
    long index = lt_base_find(ctx->base, m->target);
    if (index < 0) {
        char line[1024];
        if (!ctx->opts.allow_missing)
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': target '%s' not found in base %s (use --allow-missing to skip)", apath,
                           m->name, m->target, lt_source_path(ctx->base));
        snprintf(line, sizeof line, "%s: module %s: target %s not in base", apath, m->name, m->target);
        return skip_module(ctx->report, line, err);
    }
    const lt_tensor_info *bt = lt_source_tensor(ctx->base, (size_t)index);
    verify_op op = {.adapter = in->adapter, .module = m, .fit = lt_module_fit(m, bt), .factor = in->weight * m->scale};
    if (op.fit == LT_FIT_NONE)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': adapter shape [%llu, %llu] does not fit base tensor '%s'",
                       apath, m->name, (unsigned long long)m->out_features, (unsigned long long)m->in_features, bt->name);
    if (m->tensor_magnitude >= 0 && (op.fit != LT_FIT_DIRECT || m->kind != LT_MODULE_LINEAR))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': DoRA is merged for Linear layers stored [out, in] only",
                       apath, m->name);
    lt_status s = add_op(&p->tensors[index], &op, err);
    if (s != LT_OK || m->tensor_bias < 0)
        return s;
    /* lora_bias: "<module>.bias" gets w s lora_B.bias */
    char *bias_name = lti_asprintf("%.*s.bias", (int)(strlen(bt->name) - strlen(".weight")), bt->name);
    if (!bias_name)
        return lti_fail_nomem(err, "verify");
    long bias_index = lt_source_find(ctx->base, bias_name);
    free(bias_name);
    if (bias_index < 0 || lt_source_tensor(ctx->base, (size_t)bias_index)->n_elems != m->out_features)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has a lora bias but base tensor '%s' has no bias of %llu elements",
                       apath, m->name, bt->name, (unsigned long long)m->out_features);
    verify_op bias_op = {.adapter = in->adapter, .module = m, .fit = LT_FIT_DIRECT, .factor = op.factor, .bias = true};
    return add_op(&p->tensors[bias_index], &bias_op, err);
}

/* Name in OUT of a BASE name; returns the map's answer (1, 0, -1). */
static int out_name(const verify_ctx *ctx, const char *name, char *buf, size_t size)
{
    if (ctx->opts.map)
        return ctx->opts.map->map(ctx->opts.map->ctx, name, buf, size);
    snprintf(buf, size, "%s", name);
    return strlen(name) < size ? 1 : -1;
}

static lt_status plan_replacement(verify_ctx *ctx, verify_plan *p, const lt_adapter *ad, const lt_replacement *r,
                                  lt_error *err)
{
    const char *apath = lt_source_path(lt_adapter_source(ad));
    long index = lt_base_find(ctx->base, r->target);
    if (r->kind == LT_REPLACE_TOKEN_ROWS) {
        if (index < 0 || p->tensors[index].tok)
            return lti_fail(err, LT_ERR_INVALID, "%s: trainable tokens '%s': base has no '%s', or it has two sets",
                           apath, r->key, r->target);
        p->tensors[index].tok = r;
        p->tensors[index].tok_adapter = ad;
        p->tensors[index].kind = LT_VERIFY_MERGED;
        return LT_OK;
    }
    if (index >= 0) {
        verify_tensor *t = &p->tensors[index];
        if (t->n_ops || t->rep_adapter)
            return lti_fail(err, LT_ERR_INVALID, "%s: '%s' is replaced twice, or replaced and changed by a module", apath,
                           r->target);
        t->kind = LT_VERIFY_REPLACED;
        t->rep_adapter = ad;
        t->rep_tensor = r->tensor;
        return LT_OK;
    }
    char name[NAME_BUF];
    long oi = out_name(ctx, r->target, name, sizeof name) > 0 ? lt_source_find(ctx->out, name) : -1;
    if (!lti_grow((void **)&p->added, &p->cap_added, p->n_added + 1, sizeof *p->added))
        return lti_fail_nomem(err, "verify");
    p->added[p->n_added++] = (added_tensor){ad, r, oi};
    return LT_OK;
}

static lt_status make_plan(verify_ctx *ctx, verify_plan *p, const lt_merge_input *inputs, size_t n_inputs,
                           lt_error *err)
{
    size_t nb = lt_source_tensor_count(ctx->base), no = lt_source_tensor_count(ctx->out);
    p->n = nb;
    p->tensors = calloc(nb + 1, sizeof *p->tensors);
    p->claim = malloc((no + 1) * sizeof *p->claim);
    if (!p->tensors || !p->claim)
        return lti_fail_nomem(err, "verify");
    for (size_t j = 0; j < no; j++)
        p->claim[j] = -1;
    char name[NAME_BUF];
    for (size_t i = 0; i < nb; i++) {
        verify_tensor *t = &p->tensors[i];
        const lt_tensor_info *bt = lt_source_tensor(ctx->base, i);
        int how = out_name(ctx, bt->name, name, sizeof name);
        t->out_index = how > 0 ? lt_source_find(ctx->out, name) : -1;
        t->kind = how == 0 ? LT_VERIFY_SKIPPED : t->out_index < 0 ? LT_VERIFY_MISSING : LT_VERIFY_COPIED;
        if (t->out_index >= 0) {
            if (p->claim[t->out_index] != -1)
                t->out_index = -1, t->kind = LT_VERIFY_MISSING; /* two base tensors onto one name */
            else
                p->claim[t->out_index] = (long)i;
        }
    }
    lt_status s = LT_OK;
    for (size_t in = 0; in < n_inputs && s == LT_OK; in++) {
        const lt_adapter *ad = inputs[in].adapter;
        if (lt_adapter_config(ad)->has_layer_replication)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: layer_replication: merging is undefined",
                           lt_source_path(lt_adapter_source(ad)));
        for (size_t k = 0; k < lt_adapter_module_count(ad) && s == LT_OK; k++)
            s = plan_module(ctx, p, &inputs[in], lt_adapter_module(ad, k), err);
        for (size_t k = 0; k < lt_adapter_replacement_count(ad) && s == LT_OK; k++)
            s = plan_replacement(ctx, p, ad, lt_adapter_replacement(ad, k), err);
    }
    for (size_t k = 0; k < p->n_added && s == LT_OK; k++) {
        long oi = p->added[k].out_index;
        if (oi >= 0 && p->claim[oi] == -1)
            p->claim[oi] = -2 - (long)k;
        else
            p->added[k].out_index = -1;
    }
    return s;
}

static lt_verify_tensor *new_entry(lt_verify_report *r, size_t *cap, const char *name, lt_verify_kind kind)
{
    if (!lti_grow((void **)&r->tensors, cap, r->n_tensors + 1, sizeof *r->tensors))
        return NULL;
    lt_verify_tensor *vt = &r->tensors[r->n_tensors];
    memset(vt, 0, sizeof *vt);
    if (!(vt->name = lti_strdup(name)))
        return NULL;
    r->n_tensors++;
    vt->kind = kind;
    return vt;
}

/* Row order of OUT for base tensor i: *inv_out (malloc'd) or NULL. */
static lt_status row_map(const verify_ctx *ctx, const lt_tensor_info *bt, uint64_t **inv_out, lt_error *err)
{
    *inv_out = NULL;
    if (!ctx->opts.map || !ctx->opts.map->rows || bt->n_dims < 1)
        return LT_OK;
    uint64_t rows = bt->shape[0];
    uint64_t *perm = malloc((size_t)rows * sizeof *perm + 1), *inv = malloc((size_t)rows * sizeof *inv + 1);
    if (!perm || !inv) {
        free(perm);
        free(inv);
        return lti_fail_nomem(err, "verify");
    }
    lt_status s = LT_OK;
    if (ctx->opts.map->rows(ctx->opts.map->ctx, bt->name, rows, perm)) {
        for (uint64_t j = 0; j < rows && s == LT_OK; j++)
            if (perm[j] >= rows)
                s = lti_fail(err, LT_ERR_INVALID, "verify: row map of '%s' out of range", bt->name);
            else
                inv[perm[j]] = j;
        if (s == LT_OK) {
            *inv_out = inv;
            inv = NULL;
        }
    }
    free(perm);
    free(inv);
    return s;
}

/* Check OUT's tensor j into report entry j (one task; tasks run on
 * several threads and share nothing they write). */
static lt_status check_out_tensor(verify_ctx *ctx, verify_plan *p, size_t j, verify_scratch *scratch, lt_error *err)
{
    const lt_tensor_info *ot = lt_source_tensor(ctx->out, j);
    long claim = p->claim[j];
    lt_verify_tensor *vt = &ctx->report->tensors[j];
    vt->kind = LT_VERIFY_EXTRA;
    if (!(vt->name = lti_strdup(ot->name)))
        return lti_fail_nomem(err, "verify");
    if (claim == -1) {
        verify_problem(vt, "not in BASE and no adapter adds it");
        return LT_OK;
    }
    if (claim <= -2) { /* a replacement with no base counterpart */
        const added_tensor *a = &p->added[-2 - claim];
        lt_source *asrc = lt_adapter_source(a->adapter);
        vt->kind = LT_VERIFY_ADDED;
        if (!verify_same_shape(lt_source_tensor(asrc, (size_t)a->rep->tensor), ot)) {
            verify_problem(vt, "shape differs from the adapter's '%s'", a->rep->key);
            return LT_OK;
        }
        return compare_expected(asrc, (size_t)a->rep->tensor, ctx->out, j, NULL, scratch, vt, err);
    }
    verify_tensor *t = &p->tensors[claim];
    const lt_tensor_info *bt = lt_source_tensor(ctx->base, (size_t)claim);
    vt->kind = t->kind == LT_VERIFY_COPIED && ot->dtype != bt->dtype ? LT_VERIFY_CONVERTED : t->kind;
    if (!verify_same_shape(bt, ot)) {
        verify_problem(vt, "shape differs from BASE's '%s'", bt->name);
        return LT_OK;
    }
    uint64_t *inv = NULL;
    lt_status s = row_map(ctx, bt, &inv, err);
    if (s != LT_OK)
        return s;
    switch (t->kind) {
    case LT_VERIFY_MERGED: s = verify_forward(ctx, (size_t)claim, t, inv, scratch, vt, err); break;
    case LT_VERIFY_REPLACED:
        if (!verify_same_shape(lt_source_tensor(lt_adapter_source(t->rep_adapter), (size_t)t->rep_tensor), ot))
            verify_problem(vt, "shape differs from the adapter's replacement");
        else
            s = compare_expected(lt_adapter_source(t->rep_adapter), (size_t)t->rep_tensor, ctx->out, j, inv, scratch,
                                 vt, err);
        break;
    default: s = compare_expected(ctx->base, (size_t)claim, ctx->out, j, inv, scratch, vt, err); break;
    }
    free(inv);
    return s;
}

typedef struct check_job {
    verify_ctx *ctx;
    verify_plan *plan;
    lt_status *status;   /* per OUT tensor */
    lt_error *errors;
} check_job;

static void check_task(void *arg, size_t j)
{
    check_job *job = arg;
    verify_scratch *scratch = scratch_take(job->ctx);
    job->status[j] = scratch ? check_out_tensor(job->ctx, job->plan, j, scratch, &job->errors[j])
                             : lti_fail_nomem(&job->errors[j], "verify");
    if (scratch)
        scratch_give(job->ctx, scratch);
}

lt_status lt_verify_merged(lt_source *base, const lt_merge_input *inputs, size_t n_inputs, lt_source *out,
                           const lt_verify_options *opts, lt_verify_report *report, lt_error *err)
{
    memset(report, 0, sizeof *report);
    verify_ctx ctx = {.base = base, .out = out, .report = report, .pool_lock = PTHREAD_MUTEX_INITIALIZER};
    if (opts)
        ctx.opts = *opts;
    if (!ctx.opts.probes)
        ctx.opts.probes = 2;
    if (!ctx.opts.seed)
        ctx.opts.seed = DEFAULT_SEED;
    if (ctx.opts.false_alarm == 0)
        ctx.opts.false_alarm = 1e-9;
    if (ctx.opts.probes > 64 || !(ctx.opts.false_alarm > 0 && ctx.opts.false_alarm < 1))
        return lti_fail(err, LT_ERR_USAGE, "verify: probes must be 1..64 and the false-alarm probability in (0, 1)");
    verify_plan plan = {0};
    lt_status s = make_plan(&ctx, &plan, inputs, n_inputs, err);
    /* the union bound runs over every row and probe of every merged tensor */
    double checks = 0;
    for (size_t i = 0; s == LT_OK && i < plan.n; i++)
        if (plan.tensors[i].kind == LT_VERIFY_MERGED) {
            uint64_t rows, cols;
            verify_view(lt_source_tensor(base, i), &rows, &cols);
            checks += (double)rows * ctx.opts.probes;
        }
    ctx.threshold = sqrt(2.0 * log(2.0 * (checks > 1 ? checks : 1) / ctx.opts.false_alarm));
    report->threshold = ctx.threshold;
    report->probes = ctx.opts.probes;
    report->seed = ctx.opts.seed;
    report->false_alarm = ctx.opts.false_alarm;
    size_t n_out = lt_source_tensor_count(out), cap = n_out + 1;
    check_job job = {&ctx, &plan, calloc(n_out + 1, sizeof(lt_status)), calloc(n_out + 1, sizeof(lt_error))};
    if (s == LT_OK && (!(report->tensors = calloc(cap, sizeof *report->tensors)) || !job.status || !job.errors))
        s = lti_fail_nomem(err, "verify");
    if (s == LT_OK) {
        report->n_tensors = n_out;
        lti_parallel_for(n_out, ctx.opts.threads, check_task, &job);
        scratch_free_all(&ctx);
        for (size_t j = 0; j < n_out && s == LT_OK; j++) /* the first error in OUT's order */
            if ((s = job.status[j]) != LT_OK && err)
                *err = job.errors[j];
    }
    free(job.status);
    free(job.errors);
    for (size_t i = 0; s == LT_OK && i < plan.n; i++) {
        if (plan.tensors[i].out_index >= 0 || plan.tensors[i].kind == LT_VERIFY_SKIPPED)
            continue;
        lt_verify_tensor *vt = new_entry(report, &cap, lt_source_tensor(base, i)->name, LT_VERIFY_MISSING);
        if (!vt)
            s = lti_fail_nomem(err, "verify");
        else
            verify_problem(vt, "in BASE but not in OUT");
    }
    for (size_t k = 0; s == LT_OK && k < plan.n_added; k++) {
        if (plan.added[k].out_index >= 0)
            continue;
        lt_verify_tensor *vt = new_entry(report, &cap, plan.added[k].rep->target, LT_VERIFY_MISSING);
        if (!vt)
            s = lti_fail_nomem(err, "verify");
        else
            verify_problem(vt, "an adapter adds it, but OUT lacks it");
    }
    plan_free(&plan);
    if (s != LT_OK) {
        lt_verify_report_free(report);
        return s;
    }
    for (size_t i = 0; i < report->n_tensors; i++) {
        report->n_failed += report->tensors[i].failed;
        if (report->tensors[i].kind == LT_VERIFY_MERGED)
            report->checks += report->tensors[i].rows_checked * report->probes;
    }
    return LT_OK;
}
