/* gguf_lora_write.c - any LoRA model written as a GGUF LoRA file that
 * llama.cpp loads (spec/convert.md).  A model with Hugging Face names is
 * renamed through the architecture's map, its Q/K factors permuted to
 * llama.cpp's row order, and each module's exact scale folded into lora_b
 * where the file's alpha / r would differ.  A model that already has GGUF
 * names (a GGUF LoRA, or what resize/combine made of GGUF LoRAs) is written
 * in F32 with alpha 0 (scale 1), its scales folded into lora_b. */
#include <stdlib.h>
#include <string.h>

#include "gguf_lora.h"
#include "surgery.h"

typedef struct gguf_factor {
    char *name;
    float *values; /* [rows, cols] */
    uint64_t rows, cols;
    lt_dtype dtype;
} gguf_factor;

static lt_dtype factor_dtype(lt_dtype outtype, uint64_t cols)
{
    if (outtype == LT_Q8_0 && cols % 32 != 0)
        return LT_F16; /* Q8_0 needs whole 32-element blocks along ne[0] */
    return outtype;
}

static lt_status to_floats(const double *in, uint64_t n, float **out, const char *what, lt_error *err)
{
    float *f = malloc((size_t)n * sizeof *f + 1);
    if (!f)
        return lti_fail_nomem(err, what);
    for (uint64_t i = 0; i < n; i++)
        f[i] = (float)in[i];
    *out = f;
    return LT_OK;
}

/* lora_a / lora_b of one module named GGUF (its GGUF target): B carries
 * b_factor, rows permuted in N_HEAD heads when not 0; token_embd's lora_a is
 * A^T. */
static lt_status module_factors(const lt_adapter *ad, const lt_lora_module *m, const char *gguf, double b_factor,
                                uint32_t n_head, lt_dtype outtype, gguf_factor out[2], lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    uint64_t r = m->rank;
    uint64_t a_cols = m->kind == LT_MODULE_EMBEDDING ? m->out_features : m->in_features;
    uint64_t b_rows = m->kind == LT_MODULE_EMBEDDING ? m->in_features : m->out_features;
    double *a64 = NULL, *b64 = NULL;
    float *a = NULL, *b = NULL;
    lt_status s = lti_module_factors_f64(ad, m, b_factor, &b64, &a64, err);
    if (s == LT_OK)
        s = to_floats(a64, r * a_cols, &a, path, err);
    if (s == LT_OK)
        s = to_floats(b64, b_rows * r, &b, path, err);
    free(a64);
    free(b64);
    if (s == LT_OK && n_head)
        s = lti_gguf_permute_rows(b, b_rows, (size_t)r * sizeof *b, n_head, true, m->name, err);
    if (s == LT_OK && m->kind == LT_MODULE_EMBEDDING) {
        float *a_t = malloc((size_t)(a_cols * r) * sizeof *a_t + 1);
        if (a_t)
            lti_transpose_f32(a, r, a_cols, a_t);
        else
            s = lti_fail_nomem(err, path);
        free(a);
        a = a_t;
    }
    if (s != LT_OK) {
        free(a);
        free(b);
        return s;
    }
    if (m->kind == LT_MODULE_EMBEDDING)
        out[0] = (gguf_factor){lti_asprintf("%s.lora_a", gguf), a, a_cols, r, factor_dtype(outtype, r)};
    else
        out[0] = (gguf_factor){lti_asprintf("%s.lora_a", gguf), a, r, a_cols, factor_dtype(outtype, a_cols)};
    out[1] = (gguf_factor){lti_asprintf("%s.lora_b", gguf), b, b_rows, r, factor_dtype(outtype, r)};
    return out[0].name && out[1].name ? LT_OK : lti_fail_nomem(err, path);
}

static lt_status write_factor(lt_sink *sink, long index, const gguf_factor *f, lt_error *err)
{
    uint64_t n = f->rows * f->cols, bytes;
    if (!lt_dtype_nbytes(f->dtype, n, &bytes))
        return lti_fail(err, LT_ERR_INVALID, "%s: bad size", f->name);
    void *raw = malloc((size_t)bytes + 1);
    if (!raw)
        return lti_fail_nomem(err, f->name);
    lt_status s = f->dtype == LT_Q8_0 ? lt_quantize_row(f->dtype, f->values, raw, (size_t)n)
                                      : lt_convert_from_f32(f->dtype, f->values, raw, (size_t)n);
    if (s == LT_OK)
        s = lt_sink_write(sink, index, 0, raw, (size_t)bytes, err);
    free(raw);
    return s;
}

static lt_status write_file(const char *out_path, const char *arch, float alpha, const gguf_factor *factors,
                            size_t n, lt_error *err)
{
    lt_sink *sink = lt_sink_create("gguf", out_path, NULL, err);
    if (!sink)
        return err ? err->status : LT_ERR_IO;
    lt_status s = lt_sink_set_kv(sink, "general.architecture", LT_GGUF_STRING, arch, err);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "general.type", LT_GGUF_STRING, "adapter", err);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "adapter.type", LT_GGUF_STRING, "lora", err);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "adapter.lora.alpha", LT_GGUF_F32, &alpha, err);
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        uint64_t shape[2] = {factors[i].rows, factors[i].cols};
        if (lt_sink_add_tensor(sink, factors[i].name, factors[i].dtype, 2, shape, err) < 0)
            s = err ? err->status : LT_ERR_INVALID;
    }
    if (s == LT_OK)
        s = lt_sink_begin(sink, err);
    for (size_t i = 0; i < n && s == LT_OK; i++)
        s = write_factor(sink, (long)i, &factors[i], err);
    if (s != LT_OK) {
        lt_sink_abort(sink);
        return s;
    }
    return lt_sink_commit(sink, err);
}

lt_status lt_adapter_save_gguf(const lt_adapter *ad, const lt_arch_info *arch, const char *out_path,
                               lt_dtype outtype, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    const char *own_arch = lt_adapter_gguf_arch(ad);
    if (!own_arch && !arch)
        return lti_fail(err, LT_ERR_USAGE,
                        "%s: GGUF output needs GGUF LoRA inputs (convert PEFT adapters with 'loratool convert')",
                        out_path);
    if (outtype != LT_F32 && outtype != LT_F16 && outtype != LT_BF16 && outtype != LT_Q8_0)
        return lti_fail(err, LT_ERR_USAGE, "%s: --outtype must be f32, f16, bf16 or q8_0", out_path);
    lt_status s = lti_gguf_check_representable(ad, err);
    if (s != LT_OK)
        return s;
    size_t n = lt_adapter_module_count(ad);
    /* HF names: the file keeps the adapter's alpha and llama.cpp computes
     * alpha / r, so B carries the rest of each module's scale; GGUF names:
     * alpha 0 (scale 1) and B carries all of it */
    double file_alpha = own_arch ? 0 : lt_adapter_config(ad)->lora_alpha;
    gguf_factor *factors = calloc(2 * n + 1, sizeof *factors);
    if (!factors)
        return lti_fail_nomem(err, path);
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        double runtime_scale = file_alpha > 0 ? file_alpha / (double)m->rank : 1.0;
        char *gguf = own_arch ? lti_strdup(m->target) : lti_gguf_name_of(ad, m, arch, err);
        if (!gguf)
            s = own_arch ? lti_fail_nomem(err, path) : (err ? err->status : LT_ERR_UNSUPPORTED);
        else
            s = module_factors(ad, m, gguf, m->scale / runtime_scale, own_arch ? 0 : lti_gguf_permuted_heads(arch, m->target),
                               own_arch ? LT_F32 : outtype, &factors[2 * i], err);
        free(gguf);
    }
    if (s == LT_OK)
        s = write_file(out_path, own_arch ? own_arch : arch->arch, (float)file_alpha, factors, 2 * n, err);
    for (size_t i = 0; i < 2 * n; i++) {
        free(factors[i].name);
        free(factors[i].values);
    }
    free(factors);
    return s;
}
