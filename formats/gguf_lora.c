/* gguf_lora.c - GGUF LoRA adapters (llama.cpp): the only place that knows
 * their keys (general.type = adapter, adapter.type = lora,
 * adapter.lora.alpha) and tensor names ("<gguf target>.lora_a" [r, in],
 * ".lora_b" [out, r]; token_embd's lora_a transposed).  Reads them into
 * the core model; writes any model as one; and renames a model between
 * Hugging Face and GGUF names with llama.cpp's Q/K row order
 * (spec/convert.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_lora.h"
#include "names.h"
#include "surgery.h"

/* ---- reading ---- */

static bool kv_string_is(lt_source *src, const char *key, const char *want)
{
    long k = lt_source_kv_find(src, key);
    const char *v = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    return v && strcmp(v, want) == 0;
}

bool lti_gguf_is_lora(lt_source *src)
{
    return kv_string_is(src, "general.type", "adapter") && kv_string_is(src, "adapter.type", "lora");
}

/* Pair the factors into modules named after their GGUF target without
 * ".weight". */
static lt_status pair_factors(lt_adapter *ad, lt_source *src, lt_error *err)
{
    const char *path = lt_source_path(src);
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        size_t len = strlen(t->name);
        bool is_a = lti_ends_with(t->name, ".lora_a"), is_b = lti_ends_with(t->name, ".lora_b");
        if (!is_a && !is_b)
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' is not a lora_a/lora_b factor", path, t->name);
        size_t target_len = len - 7;
        size_t name_len = target_len > 7 && strncmp(t->name + target_len - 7, ".weight", 7) == 0 ? target_len - 7
                                                                                                 : target_len;
        lt_lora_module *m = NULL;
        lt_status s = lti_adapter_module(ad, t->name, name_len, &m, err);
        if (s != LT_OK)
            return s;
        long *slot = is_a ? &m->tensor_a : &m->tensor_b;
        if (*slot >= 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: two tensors for '%s'", path, t->name);
        *slot = (long)i;
        if (!m->target && (s = lti_adapter_set_target(ad, m, t->name, target_len, err)) != LT_OK)
            return s;
    }
    return LT_OK;
}

static lt_status shape_modules(lt_adapter *ad, lt_source *src, double alpha, lt_error *err)
{
    const char *path = lt_source_path(src);
    lt_peft_config *cfg = lti_adapter_config_mut(ad);
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        lt_lora_module *m = lti_adapter_module_mut(ad, i);
        if (m->tensor_a < 0 || m->tensor_b < 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: '%s' lacks its %s", path, m->name,
                            m->tensor_a < 0 ? "lora_a" : "lora_b");
        const lt_tensor_info *a = lt_source_tensor(src, (size_t)m->tensor_a);
        const lt_tensor_info *b = lt_source_tensor(src, (size_t)m->tensor_b);
        if (strncmp(m->name, "token_embd", 10) == 0) {
            /* llama.cpp's token embedding: lora_a = A^T [vocab, r], lora_b = B [dim, r] */
            if (a->n_dims != 2 || b->n_dims != 2 || b->shape[1] != a->shape[1] || a->shape[1] == 0 ||
                a->shape[1] > 0xFFFFFFFFu)
                return lti_fail(err, LT_ERR_INVALID, "%s: '%s': lora_b does not fit lora_a", path, m->name);
            m->kind = LT_MODULE_EMBEDDING;
            m->a_transposed = true;
            m->rank = (uint32_t)a->shape[1];
            m->out_features = a->shape[0]; /* vocab: the base table is [vocab, dim] */
            m->in_features = b->shape[0];
        } else {
            if (a->n_dims != 2 || b->n_dims != 2 || b->shape[1] != a->shape[0] || a->shape[0] == 0 ||
                a->shape[0] > 0xFFFFFFFFu)
                return lti_fail(err, LT_ERR_INVALID, "%s: '%s': lora_b does not fit lora_a", path, m->name);
            m->kind = LT_MODULE_LINEAR;
            m->rank = (uint32_t)a->shape[0];
            m->in_features = a->shape[1];
            m->out_features = b->shape[0];
        }
        m->alpha = alpha;
        /* llama.cpp: alpha / r, or 1 when alpha is 0 or absent */
        m->scale = alpha > 0 ? alpha / (double)m->rank : 1.0;
        m->n_params = a->n_elems + b->n_elems;
        if (m->rank > cfg->r)
            cfg->r = m->rank;
    }
    return lt_adapter_module_count(ad) ? LT_OK : lti_fail(err, LT_ERR_INVALID, "%s: no lora_a/lora_b tensors", path);
}

lt_adapter *lti_gguf_lora_open(const char *path, lt_error *err)
{
    lt_source *src = lt_source_open(path, err);
    if (!src)
        return NULL;
    lt_adapter *ad = lti_adapter_new(path, NULL, err);
    if (!ad) {
        lt_source_close(src);
        return NULL;
    }
    lti_adapter_set_source(ad, src);
    lt_peft_config *cfg = lti_adapter_config_mut(ad);
    cfg->peft_type = "LORA";
    cfg->bias = "none";
    lt_status s = LT_OK;
    if (strcmp(lt_source_format(src), "gguf") != 0 || !lti_gguf_is_lora(src))
        s = lti_fail(err, LT_ERR_INVALID, "%s: a GGUF file that is not a LoRA adapter (general.type / adapter.type)",
                     path);
    long k = s == LT_OK ? lt_source_kv_find(src, "general.architecture") : -1;
    const char *arch = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    if (s == LT_OK)
        s = lti_adapter_set_gguf_arch(ad, arch ? arch : "", err);
    if (s == LT_OK)
        s = pair_factors(ad, src, err);
    double alpha = 0;
    k = lt_source_kv_find(src, "adapter.lora.alpha");
    if (k >= 0 && !lt_source_kv_f64(src, (size_t)k, 0, &alpha))
        alpha = 0;
    cfg->lora_alpha = alpha;
    if (s == LT_OK)
        s = shape_modules(ad, src, alpha, err);
    if (s != LT_OK) {
        lt_adapter_close(ad);
        return NULL;
    }
    return ad;
}

/* ---- shared helpers ---- */

static bool is_q_or_k(const char *hf_target, bool *is_k)
{
    *is_k = lti_ends_with(hf_target, "self_attn.k_proj.weight");
    return *is_k || lti_ends_with(hf_target, "self_attn.q_proj.weight");
}

/* The heads a Q/K target's rows are permuted in, or 0 when its rows keep
 * their order. */
uint32_t lti_gguf_permuted_heads(const lt_arch_info *arch, const char *hf_target)
{
    bool is_k;
    if (!lti_arch_permutes_qk(arch->arch) || !is_q_or_k(hf_target, &is_k))
        return 0;
    return is_k ? arch->n_head_kv : arch->n_head;
}

/* Reorder the rows of a [rows, row_bytes] matrix: to_gguf: GGUF order
 * from HF order; else the reverse. */
lt_status lti_gguf_permute_rows(void *m, uint64_t rows, size_t row_bytes, uint32_t n_head, bool to_gguf,
                              const char *what, lt_error *err)
{
    if (n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: %llu rows do not split into %u heads of even size", what,
                        (unsigned long long)rows, n_head);
    char *copy = malloc((size_t)rows * row_bytes + 1);
    if (!copy)
        return lti_fail_nomem(err, what);
    memcpy(copy, m, (size_t)rows * row_bytes);
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t from = to_gguf ? lti_qk_hf_row_of_gguf_row(r, n_head, rows) : lti_qk_gguf_row_of_hf_row(r, n_head, rows);
        memcpy((char *)m + r * row_bytes, copy + from * row_bytes, row_bytes);
    }
    free(copy);
    return LT_OK;
}

lt_status lti_gguf_read_f32(lt_source *src, long index, float **out, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(src, (size_t)index);
    float *values = malloc((size_t)t->n_elems * sizeof *values + 1);
    if (!values)
        return lti_fail_nomem(err, lt_source_path(src));
    lt_status s;
    if (lt_dtype_is_float(t->dtype)) {
        s = lt_source_read_f32(src, (size_t)index, 0, t->n_elems, values, err);
    } else {
        void *raw = malloc((size_t)t->n_bytes + 1);
        s = raw ? lt_source_read(src, (size_t)index, 0, raw, (size_t)t->n_bytes, err) : lti_fail_nomem(err, "convert");
        if (s == LT_OK && lt_dequantize_row(t->dtype, raw, values, (size_t)t->n_elems) != LT_OK)
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' of type %s cannot be dequantized",
                         lt_source_path(src), t->name, lt_dtype_name(t->dtype));
        free(raw);
    }
    if (s != LT_OK) {
        free(values);
        return s;
    }
    *out = values;
    return LT_OK;
}

void lti_transpose_f32(const float *in, uint64_t rows, uint64_t cols, float *out)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            out[c * rows + r] = in[r * cols + c];
}

/* What a GGUF LoRA cannot hold. */
lt_status lti_gguf_check_representable(const lt_adapter *ad, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    if (lt_adapter_replacement_count(ad) > 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                        "%s: adapter saves full tensors ('%s', modules_to_save / bias): a GGUF LoRA cannot hold them (use 'loratool merge')",
                        path, lt_adapter_replacement(ad, 0)->key);
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        if (m->tensor_magnitude >= 0)
            return lti_fail(err, LT_ERR_UNSUPPORTED,
                            "%s: module '%s' is DoRA: a GGUF LoRA cannot hold magnitudes (use 'loratool merge')", path,
                            m->name);
        if (m->tensor_bias >= 0)
            return lti_fail(err, LT_ERR_UNSUPPORTED,
                            "%s: module '%s' has a lora bias: a GGUF LoRA cannot hold it (use 'loratool merge')", path,
                            m->name);
        if (m->kind == LT_MODULE_CONV)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' is a conv layer: no GGUF LoRA form", path, m->name);
    }
    return LT_OK;
}

/* The GGUF name of a Hugging Face target (an adapter over a bare model:
 * "layers.N..." is tried as "model.layers.N..."), malloc'd; NULL with err
 * set when the architecture has none. */
char *lti_gguf_name_of(const lt_adapter *ad, const lt_lora_module *m, const lt_arch_info *arch, lt_error *err)
{
    char *gguf = lti_name_hf_to_gguf(arch->arch, m->target);
    if (!gguf) {
        char *with_model = lti_asprintf("model.%s", m->target);
        gguf = with_model ? lti_name_hf_to_gguf(arch->arch, with_model) : NULL;
        free(with_model);
    }
    if (!gguf)
        lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': no GGUF name for '%s' in architecture %s",
                 lt_source_path(lt_adapter_source(ad)), m->name, m->target, arch->arch);
    return gguf;
}

