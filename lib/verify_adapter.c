/* verify_adapter.c - lt_verify_adapter: is adapter OUT the weighted sum of
 * the inputs, module by module?  (spec/verify.md)
 *
 * Every module's delta is a product C V in its base tensor's layout (the
 * merge's, lib/merge_plan.c).  The difference of the deltas is one product
 * of stacked factors, P Q with P = [C_1 .. C_n, -C_out] and
 * Q = [V_1; ..; V_n; V_out], and ||P Q||_F = ||R_P R_Q^T||_F for the
 * triangular factors of thin QRs of P and Q^T: small R x R matrices, never
 * the dense delta, and accurate where P Q nearly cancels (forming the Gram
 * matrices P^T P and Q Q^T instead would lose half the digits there).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linalg.h"
#include "verify_internal.h"

#define NAME_BUF 512

typedef struct module_entry {
    char *target;
    verify_op *terms;       /* the inputs' terms                            */
    size_t n_terms, cap_terms;
    verify_op out_term;
    bool in_out;
} module_entry;

void lt_verify_adapter_report_free(lt_verify_adapter_report *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->n_modules; i++) {
        free(report->modules[i].target);
        free(report->modules[i].problem);
    }
    free(report->modules);
    memset(report, 0, sizeof *report);
}

static bool is_gguf(const lt_adapter *ad)
{
    return strcmp(lt_source_format(lt_adapter_source(ad)), "gguf") == 0;
}

/* Rows and columns of a module's delta in its base tensor's layout. */
static void delta_dims(const verify_op *op, uint64_t *rows, uint64_t *cols)
{
    const lt_lora_module *m = op->module;
    bool b_rows = op->fit == LT_FIT_DIRECT && m->kind != LT_MODULE_EMBEDDING;
    *rows = b_rows ? m->out_features : m->in_features;
    *cols = b_rows ? m->in_features : m->out_features;
    if (m->kind == LT_MODULE_EMBEDDING) /* [vocab, dim] = A^T B^T */
        *rows = m->out_features, *cols = m->in_features;
}

/* Double-precision unit roundoff of a factor dtype (quantized: half the
 * step of a block relative to its largest element). */
static double unit_roundoff(lt_dtype t)
{
    switch (t) {
    case LT_F64: return ldexp(1.0, -53);
    case LT_F32: return ldexp(1.0, -24);
    case LT_F16: return ldexp(1.0, -11);
    case LT_BF16: return ldexp(1.0, -8);
    case LT_Q8_0: return 1.0 / 254;
    default: return 1.0 / 16;
    }
}

static lt_status make_term(const lt_adapter *ad, const lt_lora_module *m, double weight, verify_op *op,
                           lt_error *err)
{
    if (m->tensor_magnitude >= 0 || m->tensor_bias >= 0 || m->kind == LT_MODULE_CONV)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' is %s: its delta is not a plain low-rank product",
                       lt_source_path(lt_adapter_source(ad)), m->name,
                       m->tensor_magnitude >= 0 ? "DoRA" : m->tensor_bias >= 0 ? "lora_bias" : "conv");
    memset(op, 0, sizeof *op);
    op->adapter = ad;
    op->module = m;
    op->factor = weight * m->scale;
    op->fit = m->fan_in_fan_out && m->kind == LT_MODULE_LINEAR ? LT_FIT_TRANSPOSED : LT_FIT_DIRECT;
    return LT_OK;
}

/* Key of a module: its target, mapped to GGUF names for a non-GGUF adapter
 * when a map is given.  Returns false when the map has no name for it. */
static bool module_key(const lt_name_map *map, const lt_adapter *ad, const lt_lora_module *m, char *buf, size_t size)
{
    if (map && !is_gguf(ad))
        return map->map(map->ctx, m->target, buf, size) > 0;
    return (size_t)snprintf(buf, size, "%s", m->target) < size;
}

static module_entry *find_or_add(module_entry **entries, size_t *n, size_t *cap, lti_strmap *index, const char *key,
                                 lt_error *err)
{
    long at = lti_strmap_get(index, key);
    if (at >= 0)
        return &(*entries)[at];
    if (!lti_grow((void **)entries, cap, *n + 1, sizeof **entries)) {
        lti_fail_nomem(err, "verify");
        return NULL;
    }
    module_entry *e = &(*entries)[*n];
    memset(e, 0, sizeof *e);
    if (!(e->target = lti_strdup(key)) || lti_strmap_put(index, e->target, (long)*n) < 0) {
        free(e->target);
        lti_fail_nomem(err, "verify");
        return NULL;
    }
    (*n)++;
    return e;
}

/* ||R_P R_Q^T||_F for P [rows, R] and QT [cols, R] (row-major). */
static lt_status product_norm(const double *p, const double *qt, uint64_t rows, uint64_t cols, uint64_t rank,
                              double *out, lt_error *err)
{
    size_t p1 = (size_t)(rows < rank ? rows : rank), p2 = (size_t)(cols < rank ? cols : rank);
    double *rp = malloc(p1 * rank * sizeof *rp + 1), *rq = malloc(p2 * rank * sizeof *rq + 1);
    lt_status s = rp && rq ? LT_OK : lti_fail_nomem(err, "verify");
    if (s == LT_OK)
        s = lti_qr_f64((size_t)rows, (size_t)rank, p, (size_t)rank, NULL, 0, rp, (size_t)rank, err);
    if (s == LT_OK)
        s = lti_qr_f64((size_t)cols, (size_t)rank, qt, (size_t)rank, NULL, 0, rq, (size_t)rank, err);
    double sum = 0;
    for (size_t i = 0; s == LT_OK && i < p1; i++)
        for (size_t j = 0; j < p2; j++) {
            double x = 0;
            for (size_t k = 0; k < rank; k++)
                x += rp[i * rank + k] * rq[j * rank + k];
            sum += x * x;
        }
    *out = sqrt(sum);
    free(rp);
    free(rq);
    return s;
}

/* Stack the terms' factors (the last one negated when NEG_LAST) and return
 * ||sum C V||_F. */
static lt_status stacked_norm(verify_op *const *terms, size_t n, bool neg_last, uint64_t rows, uint64_t cols,
                              double *out, lt_error *err)
{
    uint64_t rank = 0;
    for (size_t t = 0; t < n; t++)
        rank += terms[t]->rank;
    if (rank == 0 || rows == 0 || cols == 0) {
        *out = 0;
        return LT_OK;
    }
    double *p = malloc((size_t)(rows * rank) * sizeof *p + 1), *qt = malloc((size_t)(cols * rank) * sizeof *qt + 1);
    if (!p || !qt) {
        free(p);
        free(qt);
        return lti_fail_nomem(err, "verify");
    }
    uint64_t at = 0;
    for (size_t t = 0; t < n; t++) {
        const verify_op *op = terms[t];
        double sign = neg_last && t == n - 1 ? -1.0 : 1.0;
        for (uint64_t i = 0; i < rows; i++)
            for (uint32_t k = 0; k < op->rank; k++)
                p[i * rank + at + k] = sign * op->coef[i * op->rank + k];
        for (uint64_t j = 0; j < cols; j++)
            for (uint32_t k = 0; k < op->rank; k++)
                qt[j * rank + at + k] = op->vec[(uint64_t)k * cols + j];
        at += op->rank;
    }
    lt_status s = product_norm(p, qt, rows, cols, rank, out, err);
    free(p);
    free(qt);
    return s;
}

/* Put the rows of a non-GGUF term's C in GGUF order (llama's Q/K). */
static lt_status permute_coef(const lt_name_map *map, verify_op *op, uint64_t rows, lt_error *err)
{
    if (!map || !map->rows || is_gguf(op->adapter))
        return LT_OK;
    uint64_t *from = malloc((size_t)rows * sizeof *from + 1);
    double *c = malloc((size_t)(rows * op->rank) * sizeof *c + 1);
    lt_status s = from && c ? LT_OK : lti_fail_nomem(err, "verify");
    if (s == LT_OK && map->rows(map->ctx, op->module->target, rows, from)) {
        for (uint64_t j = 0; j < rows && s == LT_OK; j++) {
            if (from[j] >= rows)
                s = lti_fail(err, LT_ERR_INVALID, "verify: row map of '%s' out of range", op->module->target);
            else
                memcpy(c + j * op->rank, op->coef + from[j] * op->rank, op->rank * sizeof *c);
        }
        if (s == LT_OK) {
            free(op->coef);
            op->coef = c;
            c = NULL;
        }
    }
    free(from);
    free(c);
    return s;
}

static lt_status check_entry(module_entry *e, const lt_name_map *map, double rtol, lt_verify_module *vm,
                             lt_error *err)
{
    verify_op **all = malloc((e->n_terms + 1) * sizeof *all);
    if (!all)
        return lti_fail_nomem(err, "verify");
    uint64_t rows, cols, r2, c2;
    delta_dims(&e->out_term, &rows, &cols);
    lt_status s = LT_OK;
    for (size_t t = 0; t < e->n_terms; t++) {
        all[t] = &e->terms[t];
        delta_dims(all[t], &r2, &c2);
        if (r2 != rows || c2 != cols)
            s = LT_ERR_INVALID; /* a result, not an error: reported below */
    }
    all[e->n_terms] = &e->out_term;
    if (s != LT_OK) {
        free(all);
        vm->failed = true;
        vm->problem = lti_asprintf("delta shapes differ: OUT [%llu, %llu]", (unsigned long long)rows,
                                   (unsigned long long)cols);
        return LT_OK;
    }
    for (size_t t = 0; t <= e->n_terms && s == LT_OK; t++) {
        s = verify_load_op(all[t], err);
        if (s == LT_OK)
            s = permute_coef(map, all[t], rows, err);
    }
    double num = 0, den = 0;
    if (s == LT_OK)
        s = stacked_norm(all, e->n_terms + 1, true, rows, cols, &num, err);
    if (s == LT_OK)
        s = stacked_norm(all, e->n_terms, false, rows, cols, &den, err);
    for (size_t t = 0; t <= e->n_terms; t++)
        verify_free_op(all[t]);
    free(all);
    if (s != LT_OK)
        return s;
    vm->rel_error = den > 0 ? num / den : num > 0 ? INFINITY : 0;
    if (!(vm->rel_error <= rtol)) {
        vm->failed = true;
        vm->problem = lti_asprintf("relative error %.3g > tolerance %.3g", vm->rel_error, rtol);
    }
    return LT_OK;
}

lt_status lt_verify_adapter(const lt_merge_input *inputs, size_t n_inputs, const lt_adapter *out,
                            const lt_name_map *map, double rtol, lt_verify_adapter_report *report,
                            lt_error *err)
{
    memset(report, 0, sizeof *report);
    module_entry *entries = NULL;
    size_t n = 0, cap = 0;
    lti_strmap index = {0};
    char key[NAME_BUF];
    lt_status s = LT_OK;
    if (!(rtol > 0)) { /* from OUT's factor dtypes */
        double u = 0;
        lt_source *src = lt_adapter_source(out);
        for (size_t k = 0; k < lt_adapter_module_count(out); k++) {
            const lt_lora_module *m = lt_adapter_module(out, k);
            u = fmax(u, fmax(unit_roundoff(lt_source_tensor(src, (size_t)m->tensor_a)->dtype),
                             unit_roundoff(lt_source_tensor(src, (size_t)m->tensor_b)->dtype)));
        }
        rtol = 8 * (u > 0 ? u : ldexp(1.0, -24));
    }
    report->rtol = rtol;
    for (size_t k = 0; k < lt_adapter_module_count(out) && s == LT_OK; k++) {
        const lt_lora_module *m = lt_adapter_module(out, k);
        if (!module_key(map, out, m, key, sizeof key)) {
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' has no GGUF name", lt_source_path(lt_adapter_source(out)),
                         m->name);
            break;
        }
        module_entry *e = find_or_add(&entries, &n, &cap, &index, key, err);
        if (!e)
            s = LT_ERR_NOMEM;
        else if (e->in_out)
            s = lti_fail(err, LT_ERR_INVALID, "%s: two modules change '%s'", lt_source_path(lt_adapter_source(out)), key);
        else if ((s = make_term(out, m, 1.0, &e->out_term, err)) == LT_OK)
            e->in_out = true;
    }
    for (size_t in = 0; in < n_inputs && s == LT_OK; in++) {
        const lt_adapter *ad = inputs[in].adapter;
        for (size_t k = 0; k < lt_adapter_module_count(ad) && s == LT_OK; k++) {
            const lt_lora_module *m = lt_adapter_module(ad, k);
            if (!module_key(map, ad, m, key, sizeof key)) {
                s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' has no GGUF name",
                             lt_source_path(lt_adapter_source(ad)), m->name);
                break;
            }
            module_entry *e = find_or_add(&entries, &n, &cap, &index, key, err);
            if (!e || !lti_grow((void **)&e->terms, &e->cap_terms, e->n_terms + 1, sizeof *e->terms)) {
                s = e ? lti_fail_nomem(err, "verify") : LT_ERR_NOMEM;
                break;
            }
            s = make_term(ad, m, inputs[in].weight, &e->terms[e->n_terms], err);
            if (s == LT_OK)
                e->n_terms++;
        }
    }
    if (s == LT_OK && !(report->modules = calloc(n + 1, sizeof *report->modules)))
        s = lti_fail_nomem(err, "verify");
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        module_entry *e = &entries[i];
        lt_verify_module *vm = &report->modules[report->n_modules++];
        vm->target = e->target;
        e->target = NULL;
        vm->in_out = e->in_out;
        vm->in_inputs = e->n_terms > 0;
        vm->rank_out = e->in_out ? e->out_term.module->rank : 0;
        for (size_t t = 0; t < e->n_terms; t++)
            vm->rank_inputs += e->terms[t].module->rank;
        if (!vm->in_out || !vm->in_inputs) {
            vm->failed = true;
            vm->rel_error = NAN;
            vm->problem = lti_strdup(vm->in_out ? "only in OUT" : "only in the inputs");
            continue;
        }
        s = check_entry(e, map, rtol, vm, err);
    }
    for (size_t i = 0; i < n; i++) {
        free(entries[i].target);
        free(entries[i].terms);
    }
    free(entries);
    lti_strmap_free(&index);
    if (s != LT_OK) {
        lt_verify_adapter_report_free(report);
        return s;
    }
    for (size_t i = 0; i < report->n_modules; i++)
        report->n_failed += report->modules[i].failed;
    return LT_OK;
}
