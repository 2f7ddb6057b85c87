/* convert.c - PEFT LoRA adapters <-> GGUF LoRA adapters (llama.cpp), with
 * the name map, llama.cpp's Q/K row permutation and scale folding
 * (spec/convert.md). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "surgery.h"

/* ---- architecture facts ---- */

static lt_status arch_from_config(const char *path, lt_arch_info *out, lt_error *err)
{
    char *text = NULL;
    lt_status s = lti_read_small_file(path, 16u << 20, &text, NULL, err);
    if (s != LT_OK)
        return s;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lti_fail(err, LT_ERR_INVALID, "%s: not a JSON object", path);
    }
    /* multimodal configs keep the language model's under text_config */
    const cJSON *cfg = root, *text_cfg = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    if (cJSON_IsObject(text_cfg) && cJSON_GetObjectItemCaseSensitive(text_cfg, "num_attention_heads")) {
        cfg = text_cfg;
        if (cJSON_GetObjectItemCaseSensitive(text_cfg, "model_type"))
            type = cJSON_GetObjectItemCaseSensitive(text_cfg, "model_type");
    }
    const char *arch = cJSON_IsString(type) ? lti_arch_from_hf_model_type(type->valuestring) : NULL;
    if (!arch) {
        s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: model_type '%s' has no GGUF name map (llama, mistral, "
                    "qwen2, qwen3, gemma, gemma2, gemma3, phi3)", path,
                    cJSON_IsString(type) ? type->valuestring : "(none)");
        cJSON_Delete(root);
        return s;
    }
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(cfg, "num_attention_heads");
    const cJSON *kv_heads = cJSON_GetObjectItemCaseSensitive(cfg, "num_key_value_heads");
    snprintf(out->arch, sizeof out->arch, "%s", arch);
    out->n_head = cJSON_IsNumber(heads) && heads->valuedouble >= 1 ? (uint32_t)heads->valuedouble : 0;
    out->n_head_kv = cJSON_IsNumber(kv_heads) && kv_heads->valuedouble >= 1 ? (uint32_t)kv_heads->valuedouble
                                                                             : out->n_head;
    cJSON_Delete(root);
    if (out->n_head == 0 && lti_arch_permutes_qk(arch))
        return lti_fail(err, LT_ERR_INVALID, "%s: no num_attention_heads (needed for the Q/K permutation)", path);
    return LT_OK;
}

static lt_status arch_from_gguf(lt_source *src, lt_arch_info *out, lt_error *err)
{
    long k = lt_source_kv_find(src, "general.architecture");
    const char *arch = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    if (!arch || !lti_arch_supported(arch))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: GGUF architecture '%s' has no name map", lt_source_path(src),
                       arch ? arch : "(none)");
    snprintf(out->arch, sizeof out->arch, "%s", arch);
    char key[96];
    uint64_t value = 0;
    snprintf(key, sizeof key, "%s.attention.head_count", arch);
    k = lt_source_kv_find(src, key);
    out->n_head = k >= 0 && lt_source_kv_u64(src, (size_t)k, 0, &value) ? (uint32_t)value : 0;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    k = lt_source_kv_find(src, key);
    out->n_head_kv = k >= 0 && lt_source_kv_u64(src, (size_t)k, 0, &value) ? (uint32_t)value : out->n_head;
    if (out->n_head == 0 && lti_arch_permutes_qk(arch))
        return lti_fail(err, LT_ERR_INVALID, "%s: no %s.attention.head_count", lt_source_path(src), arch);
    return LT_OK;
}

lt_status lt_arch_info_read(const char *base, lt_arch_info *out, lt_error *err)
{
    memset(out, 0, sizeof *out);
    if (lti_is_dir(base)) {
        char *config = lti_path_join(base, "config.json");
        if (!config)
            return lti_fail_nomem(err, base);
        lt_status s = lti_is_file(config) ? arch_from_config(config, out, err)
                                         : lti_fail(err, LT_ERR_INVALID, "%s: no config.json in the base directory", base);
        free(config);
        return s;
    }
    size_t len = strlen(base);
    if (len >= 5 && strcmp(base + len - 5, ".json") == 0)
        return arch_from_config(base, out, err);
    lt_source *src = lt_source_open(base, err);
    if (!src)
        return err ? err->status : LT_ERR_INVALID;
    lt_status s = strcmp(lt_source_format(src), "gguf") == 0
                      ? arch_from_gguf(src, out, err)
                      : lti_fail(err, LT_ERR_USAGE, "%s: --base must be a config.json, a model directory or a GGUF model", base);
    lt_source_close(src);
    return s;
}

/* ---- shared helpers ---- */

static bool is_q_or_k(const char *hf_target, bool *is_k)
{
    size_t len = strlen(hf_target);
    static const char q[] = "self_attn.q_proj.weight", k[] = "self_attn.k_proj.weight";
    *is_k = len >= sizeof k - 1 && strcmp(hf_target + len - (sizeof k - 1), k) == 0;
    return *is_k || (len >= sizeof q - 1 && strcmp(hf_target + len - (sizeof q - 1), q) == 0);
}

/* Reorder the rows of a [rows, cols] f32 matrix in place-ish (via a copy):
 * to_gguf: GGUF order from HF order; else the reverse. */
static lt_status permute_rows(float *m, uint64_t rows, uint64_t cols, uint32_t n_head, bool to_gguf,
                              const char *what, lt_error *err)
{
    if (n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: %llu rows do not split into %u heads of even size", what,
                       (unsigned long long)rows, n_head);
    float *copy = malloc((size_t)(rows * cols) * sizeof *copy + 1);
    if (!copy)
        return lti_fail_nomem(err, what);
    memcpy(copy, m, (size_t)(rows * cols) * sizeof *copy);
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t from = to_gguf ? lti_qk_hf_row_of_gguf_row(r, n_head, rows) : lti_qk_gguf_row_of_hf_row(r, n_head, rows);
        memcpy(m + r * cols, copy + from * cols, (size_t)cols * sizeof *m);
    }
    free(copy);
    return LT_OK;
}

static lt_status read_f32(lt_source *src, long index, float **out, lt_error *err)
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

static void transpose(const float *in, uint64_t rows, uint64_t cols, float *out)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++)
            out[c * rows + r] = in[r * cols + c];
}

/* ---- PEFT -> GGUF ---- */

typedef struct gguf_factor {
    char *name;
    float *values;          /* [rows, cols] */
    uint64_t rows, cols;
    lt_dtype dtype;
} gguf_factor;

static lt_dtype factor_dtype(lt_dtype outtype, uint64_t cols)
{
    if (outtype == LT_Q8_0 && cols % 32 != 0)
        return LT_F16; /* Q8_0 needs whole 32-element blocks along ne[0] */
    return outtype;
}

static lt_status check_convertible(const lt_adapter *ad, const lt_lora_module *m, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    if (m->tensor_magnitude >= 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' is DoRA: a GGUF LoRA cannot hold magnitudes (use 'loratool merge')",
                       path, m->name);
    if (m->tensor_bias >= 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' has a lora bias: a GGUF LoRA cannot hold it (use 'loratool merge')",
                       path, m->name);
    if (m->kind == LT_MODULE_CONV)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' is a conv layer: no GGUF LoRA form", path, m->name);
    return LT_OK;
}

/* Build lora_a / lora_b for one module, scale folded into B so that
 * llama.cpp's alpha_file / r gives the module's exact PEFT scale. */
static lt_status module_factors(const lt_adapter *ad, const lt_lora_module *m, const lt_arch_info *arch,
                                double file_alpha, lt_dtype outtype, gguf_factor out[2], lt_error *err)
{
    lt_source *src = lt_adapter_source(ad);
    const char *path = lt_source_path(src);
    char *gguf = lti_name_hf_to_gguf(arch->arch, m->target);
    if (!gguf) {
        /* an adapter over a bare model: "layers.N..." -> "model.layers.N..." */
        char *with_model = lti_asprintf("model.%s", m->target);
        gguf = with_model ? lti_name_hf_to_gguf(arch->arch, with_model) : NULL;
        free(with_model);
    }
    if (!gguf)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': no GGUF name for '%s' in architecture %s", path,
                       m->name, m->target, arch->arch);
    uint64_t r = m->rank;
    uint64_t a_cols = m->kind == LT_MODULE_EMBEDDING ? m->out_features : m->in_features;
    uint64_t b_rows = m->kind == LT_MODULE_EMBEDDING ? m->in_features : m->out_features;
    /* llama.cpp: s = alpha / r (alpha 0 or absent: s = 1); the rest of the
     * module's PEFT scale is folded into B */
    double runtime_scale = file_alpha > 0 ? file_alpha / (double)r : 1.0;
    double *a64 = NULL, *b64 = NULL;
    float *a = NULL, *b = NULL;
    lt_status s = lti_module_factors_f64(ad, m, m->scale / runtime_scale, &b64, &a64, err);
    if (s == LT_OK) {
        a = malloc((size_t)(r * a_cols) * sizeof *a + 1);
        b = malloc((size_t)(b_rows * r) * sizeof *b + 1);
        if (!a || !b)
            s = lti_fail_nomem(err, path);
        for (uint64_t i = 0; s == LT_OK && i < r * a_cols; i++)
            a[i] = (float)a64[i];
        for (uint64_t i = 0; s == LT_OK && i < b_rows * r; i++)
            b[i] = (float)b64[i];
    }
    free(a64);
    free(b64);
    if (s != LT_OK)
        goto fail;
    bool is_k;
    if (lti_arch_permutes_qk(arch->arch) && is_q_or_k(m->target, &is_k) &&
        (s = permute_rows(b, b_rows, r, is_k ? arch->n_head_kv : arch->n_head, true, m->name, err)) != LT_OK)
        goto fail;
    if (m->kind == LT_MODULE_EMBEDDING) {
        /* token_embd.weight.lora_a is A^T ([vocab, r]); lora_b is B */
        float *a_t = malloc((size_t)(a_cols * r) * sizeof *a_t + 1);
        if (!a_t) {
            s = lti_fail_nomem(err, path);
            goto fail;
        }
        transpose(a, r, a_cols, a_t);
        free(a);
        a = a_t;
        out[0] = (gguf_factor){lti_asprintf("%s.lora_a", gguf), a, a_cols, r, factor_dtype(outtype, r)};
    } else {
        out[0] = (gguf_factor){lti_asprintf("%s.lora_a", gguf), a, r, a_cols, factor_dtype(outtype, a_cols)};
    }
    out[1] = (gguf_factor){lti_asprintf("%s.lora_b", gguf), b, b_rows, r, factor_dtype(outtype, r)};
    free(gguf);
    if (!out[0].name || !out[1].name)
        return lti_fail_nomem(err, path);
    return LT_OK;
fail:
    free(gguf);
    free(a);
    free(b);
    return s;
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

lt_status lt_convert_adapter_to_gguf(const lt_adapter *ad, const lt_arch_info *arch, const char *out_path,
                                     lt_dtype outtype, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    if (outtype != LT_F32 && outtype != LT_F16 && outtype != LT_BF16 && outtype != LT_Q8_0)
        return lti_fail(err, LT_ERR_USAGE, "%s: --outtype must be f32, f16, bf16 or q8_0", out_path);
    if (lt_adapter_replacement_count(ad) > 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: adapter saves full tensors ('%s', modules_to_save / bias): a GGUF LoRA cannot hold them (use 'loratool merge')",
                       path, lt_adapter_replacement(ad, 0)->key);
    size_t n = lt_adapter_module_count(ad);
    for (size_t i = 0; i < n; i++) {
        lt_status s = check_convertible(ad, lt_adapter_module(ad, i), err);
        if (s != LT_OK)
            return s;
    }
    double file_alpha = lt_adapter_config(ad)->lora_alpha;
    gguf_factor *factors = calloc(2 * n + 1, sizeof *factors);
    if (!factors)
        return lti_fail_nomem(err, path);
    lt_status s = LT_OK;
    for (size_t i = 0; i < n && s == LT_OK; i++)
        s = module_factors(ad, lt_adapter_module(ad, i), arch, file_alpha, outtype, &factors[2 * i], err);
    lt_sink *sink = s == LT_OK ? lt_sink_create("gguf", out_path, NULL, err) : NULL;
    if (s == LT_OK && !sink)
        s = err ? err->status : LT_ERR_IO;
    float alpha32 = (float)file_alpha;
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "general.architecture", LT_GGUF_STRING, arch->arch, err);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "general.type", LT_GGUF_STRING, "adapter", err);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "adapter.type", LT_GGUF_STRING, "lora", err);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, "adapter.lora.alpha", LT_GGUF_F32, &alpha32, err);
    for (size_t i = 0; i < 2 * n && s == LT_OK; i++) {
        uint64_t shape[2] = {factors[i].rows, factors[i].cols};
        if (lt_sink_add_tensor(sink, factors[i].name, factors[i].dtype, 2, shape, err) < 0)
            s = err ? err->status : LT_ERR_INVALID;
    }
    if (s == LT_OK)
        s = lt_sink_begin(sink, err);
    for (size_t i = 0; i < 2 * n && s == LT_OK; i++)
        s = write_factor(sink, (long)i, &factors[i], err);
    if (sink)
        s = s == LT_OK ? lt_sink_commit(sink, err) : (lt_sink_abort(sink), s);
    for (size_t i = 0; i < 2 * n; i++) {
        free(factors[i].name);
        free(factors[i].values);
    }
    free(factors);
    return s;
}

/* ---- GGUF -> PEFT ---- */

static bool kv_string_is(lt_source *src, const char *key, const char *want)
{
    long k = lt_source_kv_find(src, key);
    const char *v = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    return v && strcmp(v, want) == 0;
}

lt_status lt_convert_gguf_to_adapter(lt_source *src, const lt_arch_info *arch, const char *out_dir,
                                     lt_error *err)
{
    const char *path = lt_source_path(src);
    if (!kv_string_is(src, "general.type", "adapter") || !kv_string_is(src, "adapter.type", "lora"))
        return lti_fail(err, LT_ERR_INVALID, "%s: not a GGUF LoRA adapter (general.type / adapter.type)", path);
    long ka = lt_source_kv_find(src, "general.architecture");
    const char *own_arch = ka >= 0 ? lt_source_kv_str(src, (size_t)ka, 0, NULL) : NULL;
    if (own_arch && strcmp(own_arch, arch->arch) != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: adapter architecture %s does not match the base's %s", path,
                       own_arch, arch->arch);
    long k = lt_source_kv_find(src, "adapter.lora.alpha");
    double alpha = 0;
    if (k >= 0 && !lt_source_kv_f64(src, (size_t)k, 0, &alpha))
        alpha = 0;
    size_t n_tensors = lt_source_tensor_count(src);
    lt_lora_save_module *mods = calloc(n_tensors / 2 + 1, sizeof *mods);
    float **buffers = calloc(n_tensors + 1, sizeof *buffers);
    char **names = calloc(n_tensors / 2 + 1, sizeof *names);
    size_t n_mods = 0, n_buffers = 0;
    lt_status s = mods && buffers && names ? LT_OK : lti_fail_nomem(err, path);
    for (size_t i = 0; i < n_tensors && s == LT_OK; i++) {
        const lt_tensor_info *ta = lt_source_tensor(src, i);
        size_t len = strlen(ta->name);
        if (len < 7 || strcmp(ta->name + len - 7, ".lora_a") != 0)
            continue;
        char *b_name = lti_strdup(ta->name);
        char *base_name = lti_strndup(ta->name, len - 7);
        if (!b_name || !base_name) {
            free(b_name);
            free(base_name);
            s = lti_fail_nomem(err, path);
            break;
        }
        b_name[len - 1] = 'b';
        long ib = lt_source_find(src, b_name);
        free(b_name);
        char *hf = lti_name_gguf_to_hf(arch->arch, base_name);
        if (ib < 0 || !hf || ta->n_dims != 2) {
            s = lti_fail(err, ib < 0 ? LT_ERR_INVALID : LT_ERR_UNSUPPORTED, "%s: '%s': %s", path, ta->name,
                        ib < 0 ? "no matching lora_b" : !hf ? "no Hugging Face name for it" : "not 2-D");
            free(base_name);
            free(hf);
            break;
        }
        const lt_tensor_info *tb = lt_source_tensor(src, (size_t)ib);
        bool embedding = strcmp(base_name, "token_embd.weight") == 0;
        free(base_name);
        float *a = NULL, *b = NULL;
        s = read_f32(src, (long)i, &a, err);
        if (s == LT_OK)
            s = read_f32(src, ib, &b, err);
        buffers[n_buffers++] = a;
        buffers[n_buffers++] = b;
        lt_lora_save_module *m = &mods[n_mods];
        /* HF module name: the target without ".weight" */
        size_t hf_len = strlen(hf);
        if (hf_len > 7 && strcmp(hf + hf_len - 7, ".weight") == 0)
            hf[hf_len - 7] = '\0';
        names[n_mods] = hf;
        m->name = hf;
        if (s != LT_OK)
            break;
        if (embedding) { /* lora_a = A^T [vocab, r] */
            m->rank = (uint32_t)ta->shape[1];
            m->in_features = ta->shape[0];
            float *a_t = malloc((size_t)ta->n_elems * sizeof *a_t + 1);
            if (!a_t) {
                s = lti_fail_nomem(err, path);
                break;
            }
            transpose(a, ta->shape[0], ta->shape[1], a_t);
            free(a);
            buffers[n_buffers - 2] = a = a_t;
            m->embedding = true;
        } else {
            m->rank = (uint32_t)ta->shape[0];
            m->in_features = ta->shape[1];
        }
        m->out_features = tb->shape[0];
        if (tb->n_dims != 2 || tb->shape[1] != m->rank || m->rank == 0) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: '%s': lora_b shape does not fit lora_a", path, ta->name);
            break;
        }
        bool is_k;
        char target[512];
        snprintf(target, sizeof target, "%s.weight", hf);
        if (lti_arch_permutes_qk(arch->arch) && is_q_or_k(target, &is_k) &&
            (s = permute_rows(b, m->out_features, m->rank, is_k ? arch->n_head_kv : arch->n_head, false, hf, err)) != LT_OK)
            break;
        /* alpha 0 in GGUF means scale 1: PEFT gets alpha = r */
        m->alpha = alpha > 0 ? alpha : (double)m->rank;
        m->a = a;
        m->b = b;
        n_mods++;
    }
    if (s == LT_OK && n_mods == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: no lora_a/lora_b tensor pairs", path);
    if (s == LT_OK) {
        lt_peft_save_spec spec = {.dtype = LT_F32, .modules = mods, .n_modules = n_mods};
        s = lt_peft_save(out_dir, &spec, err);
    }
    for (size_t i = 0; i < n_buffers; i++)
        free(buffers[i]);
    for (size_t i = 0; names && i <= n_mods && i < n_tensors / 2 + 1; i++)
        free(names[i]);
    free(buffers);
    free(names);
    free(mods);
    return s;
}
