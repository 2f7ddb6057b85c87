/* model_hparams.c - config.json -> the GGUF hyperparameter keys llama.cpp
 * reads for a whole model (spec/convert.md, "Hyperparameters").
 *
 * The key names and which of them each architecture reads are facts taken
 * from llama.cpp (src/llama-arch.cpp, src/llama-model.cpp) and its
 * converter (convert_hf_to_gguf.py).  Where a config value changes the
 * arithmetic and llama.cpp's architecture has no way to say it (it would
 * silently compute another model), the conversion is refused naming the
 * config key. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_hparams.h"
#include "names.h"

typedef struct writer {
    lt_sink *sink;
    const char *arch;
    const char *path;         /* config.json, for messages */
    const cJSON *cfg;         /* the language model's object */
    size_t keys;
    lt_error *err;
} writer;

/* A number that is present and not null. */
static bool cfg_number(const cJSON *obj, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v))
        return false;
    *out = v->valuedouble;
    return true;
}

static bool cfg_present(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return v && !cJSON_IsNull(v);
}

static const char *cfg_string(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool whole_u32(double v) { return v >= 0 && v <= 4294967295.0 && v == floor(v); }

/* A positive whole number that fits u32: *out, or false (absent: *present false). */
static lt_status cfg_u32(writer *w, const char *name, bool required, uint32_t *out, bool *present)
{
    double v;
    *present = cfg_number(w->cfg, name, &v);
    if (!*present)
        return required ? lti_fail(w->err, LT_ERR_INVALID, "%s: no '%s' (llama.cpp needs it for a %s model)", w->path,
                                   name, w->arch)
                        : LT_OK;
    if (!whole_u32(v) || v < 1)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: '%s' is %g, not a positive whole number", w->path, name, v);
    *out = (uint32_t)v;
    return LT_OK;
}

static lt_status put_u32(writer *w, const char *suffix, uint32_t value)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    w->keys++;
    return lt_sink_set_kv(w->sink, key, LT_GGUF_U32, &value, w->err);
}

static lt_status put_f32(writer *w, const char *suffix, double value)
{
    char key[128];
    float f = (float)value;
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    w->keys++;
    return lt_sink_set_kv(w->sink, key, LT_GGUF_F32, &f, w->err);
}

static lt_status put_str(writer *w, const char *suffix, const char *value)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    w->keys++;
    return lt_sink_set_kv(w->sink, key, LT_GGUF_STRING, value, w->err);
}

static lt_status refuse(writer *w, const char *key, const char *what)
{
    return lti_fail(w->err, LT_ERR_UNSUPPORTED, "%s: '%s' %s: llama.cpp's %s architecture cannot represent it, "
                    "so the GGUF would compute another model", w->path, key, what, w->arch);
}

static bool is_gemma(const char *arch) { return strncmp(arch, "gemma", 5) == 0; }

/* Config values that change the math and that ARCH cannot express. */
static lt_status refuse_unrepresentable(writer *w, uint32_t n_layer, uint32_t n_embd, uint32_t n_head,
                                        uint32_t head_dim, uint32_t n_ctx)
{
    static const char *const expert_keys[] = {"num_local_experts", "num_experts", "n_routed_experts"};
    double v;
    for (size_t i = 0; i < sizeof expert_keys / sizeof *expert_keys; i++)
        if (cfg_number(w->cfg, expert_keys[i], &v) && v > 0)
            return refuse(w, expert_keys[i], "asks for a mixture of experts");
    const char *act = cfg_string(w->cfg, "hidden_activation");
    if (!act)
        act = cfg_string(w->cfg, "hidden_act");
    if (act && (is_gemma(w->arch) ? strcmp(act, "gelu_pytorch_tanh") != 0 && strcmp(act, "gelu") != 0
                                  : strcmp(act, "silu") != 0))
        return refuse(w, "hidden_act", is_gemma(w->arch) ? "is not gelu_pytorch_tanh" : "is not silu");
    if (cfg_number(w->cfg, "partial_rotary_factor", &v) && v != 1)
        return refuse(w, "partial_rotary_factor", "rotates only part of each head");
    const cJSON *use_swa = cJSON_GetObjectItemCaseSensitive(w->cfg, "use_sliding_window");
    if (cJSON_IsTrue(use_swa))
        return refuse(w, "use_sliding_window", "is true");
    if (strcmp(w->arch, "llama") == 0 && cfg_number(w->cfg, "sliding_window", &v) && v < n_ctx)
        return refuse(w, "sliding_window", "limits attention to a window shorter than the context");
    if (!is_gemma(w->arch) || strcmp(w->arch, "gemma") == 0) {
        if (cfg_present(w->cfg, "attn_logit_softcapping"))
            return refuse(w, "attn_logit_softcapping", "caps attention logits");
        if (cfg_present(w->cfg, "final_logit_softcapping"))
            return refuse(w, "final_logit_softcapping", "caps the output logits");
    }
    if (strcmp(w->arch, "gemma2") == 0 || strcmp(w->arch, "gemma3") == 0) {
        /* llama.cpp scales queries by 1/sqrt(head_dim), or by
         * 1/sqrt(n_embd / n_head) for the 27B models it knows by depth */
        bool big = n_layer == (strcmp(w->arch, "gemma2") == 0 ? 46u : 62u);
        double want = big ? (double)(n_embd / n_head) : (double)head_dim;
        if (cfg_number(w->cfg, "query_pre_attn_scalar", &v) && v != want)
            return refuse(w, "query_pre_attn_scalar", "differs from the attention scale llama.cpp derives");
    }
    if (strcmp(w->arch, "gemma3") == 0) {
        if (cfg_present(w->cfg, "attn_logit_softcapping"))
            return refuse(w, "attn_logit_softcapping", "caps attention logits");
        if (cfg_number(w->cfg, "rope_local_base_freq", &v) && v != 10000)
            return refuse(w, "rope_local_base_freq", "is not the 10000 llama.cpp uses for sliding layers");
        if (cfg_number(w->cfg, "sliding_window_pattern", &v) && v != 6)
            return refuse(w, "sliding_window_pattern", "is not the 6 llama.cpp uses");
    }
    return LT_OK;
}

/* LLaMA 3.x rope: per-frequency divisors, as llama.cpp's rope_freqs tensor
 * holds them (theta_i = pos * base^(-2i/d) / factor_i). */
static lt_status llama3_factors(writer *w, const cJSON *scaling, double base, uint32_t dim, lti_model_extras *ex)
{
    double factor, low = 1, high = 4, old_ctx = 8192;
    if (!cfg_number(scaling, "factor", &factor) || factor <= 0)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: rope_scaling 'llama3' has no positive 'factor'", w->path);
    cfg_number(scaling, "low_freq_factor", &low);
    cfg_number(scaling, "high_freq_factor", &high);
    cfg_number(scaling, "original_max_position_embeddings", &old_ctx);
    if (!(high > low) || old_ctx <= 0)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: rope_scaling 'llama3' needs high_freq_factor > low_freq_factor",
                        w->path);
    ex->n_rope_freqs = dim / 2;
    ex->rope_freqs = malloc((size_t)ex->n_rope_freqs * sizeof *ex->rope_freqs + 1);
    if (!ex->rope_freqs)
        return lti_fail_nomem(w->err, w->path);
    double low_wavelen = old_ctx / low, high_wavelen = old_ctx / high;
    for (uint32_t i = 0; i < ex->n_rope_freqs; i++) {
        double freq = 1.0 / pow(base, 2.0 * i / dim), wavelen = 2 * 3.14159265358979323846 / freq, f = 1;
        if (wavelen > low_wavelen) {
            f = factor;
        } else if (wavelen >= high_wavelen) {
            double smooth = (old_ctx / wavelen - low) / (high - low);
            f = 1 / ((1 - smooth) / factor + smooth);
        }
        ex->rope_freqs[i] = f;
    }
    return LT_OK;
}

static lt_status rope_scaling_keys(writer *w, double base, uint32_t dim, lti_model_extras *ex)
{
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(w->cfg, "rope_scaling");
    if (!scaling || cJSON_IsNull(scaling))
        scaling = cJSON_GetObjectItemCaseSensitive(w->cfg, "rope_parameters");
    if (!scaling || cJSON_IsNull(scaling))
        return LT_OK;
    if (!cJSON_IsObject(scaling))
        return lti_fail(w->err, LT_ERR_INVALID, "%s: rope_scaling is not an object", w->path);
    const char *type = cfg_string(scaling, "rope_type");
    if (!type)
        type = cfg_string(scaling, "type");
    double factor = 1;
    if (!type || strcmp(type, "default") == 0)
        return LT_OK;
    if (strcmp(type, "linear") == 0 || strcmp(type, "yarn") == 0) {
        static const char *const yarn_tuning[] = {"beta_fast", "beta_slow", "attention_factor", "mscale",
                                                  "mscale_all_dim", "truncate"};
        for (size_t i = 0; strcmp(type, "yarn") == 0 && i < sizeof yarn_tuning / sizeof *yarn_tuning; i++)
            if (cfg_present(scaling, yarn_tuning[i])) {
                char key[64];
                snprintf(key, sizeof key, "rope_scaling.%s", yarn_tuning[i]);
                return refuse(w, key, "tunes yarn beyond factor and original length");
            }
        if (!cfg_number(scaling, "factor", &factor) || factor <= 0)
            return lti_fail(w->err, LT_ERR_INVALID, "%s: rope_scaling '%s' has no positive 'factor'", w->path, type);
        lt_status s = put_str(w, "rope.scaling.type", type);
        if (s == LT_OK)
            s = put_f32(w, "rope.scaling.factor", factor);
        double orig;
        if (s == LT_OK && strcmp(type, "yarn") == 0) {
            if (!cfg_number(scaling, "original_max_position_embeddings", &orig) || !whole_u32(orig))
                return lti_fail(w->err, LT_ERR_INVALID, "%s: rope_scaling 'yarn' has no original_max_position_embeddings",
                                w->path);
            s = put_u32(w, "rope.scaling.original_context_length", (uint32_t)orig);
        }
        return s;
    }
    if (strcmp(type, "llama3") == 0 && strcmp(w->arch, "llama") == 0)
        return llama3_factors(w, scaling, base, dim, ex);
    char what[96];
    snprintf(what, sizeof what, "is '%s'", type);
    return refuse(w, "rope_scaling.rope_type", what);
}

static lt_status write_keys(writer *w, const lti_model_shape *shape, lti_model_extras *ex)
{
    uint32_t n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ctx = 0, vocab = 0, swa = 0;
    bool has_kv, has_head_dim, has_vocab, has_swa, unused;
    lt_status s = cfg_u32(w, "num_hidden_layers", true, &n_layer, &unused);
    if (s == LT_OK)
        s = cfg_u32(w, "hidden_size", true, &n_embd, &unused);
    if (s == LT_OK)
        s = cfg_u32(w, "intermediate_size", true, &n_ff, &unused);
    if (s == LT_OK)
        s = cfg_u32(w, "num_attention_heads", true, &n_head, &unused);
    if (s == LT_OK)
        s = cfg_u32(w, "num_key_value_heads", false, &n_head_kv, &has_kv);
    if (s == LT_OK)
        s = cfg_u32(w, "head_dim", false, &head_dim, &has_head_dim);
    if (s == LT_OK)
        s = cfg_u32(w, "max_position_embeddings", true, &n_ctx, &unused);
    if (s == LT_OK)
        s = cfg_u32(w, "vocab_size", false, &vocab, &has_vocab);
    if (s == LT_OK)
        s = cfg_u32(w, "sliding_window", false, &swa, &has_swa);
    if (s != LT_OK)
        return s;
    if (!has_kv)
        n_head_kv = n_head;
    if (!has_head_dim && n_embd % n_head)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: hidden_size %u does not split into %u heads", w->path, n_embd, n_head);
    if (!has_head_dim)
        head_dim = n_embd / n_head;
    if (shape->blocks && shape->blocks != n_layer)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: num_hidden_layers is %u but the weights have %llu blocks", w->path,
                        n_layer, (unsigned long long)shape->blocks);
    if (shape->embd_rows && shape->embd_cols != n_embd)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: hidden_size is %u but the token embedding has %llu columns", w->path,
                        n_embd, (unsigned long long)shape->embd_cols);
    if (shape->embd_rows && has_vocab && shape->embd_rows != vocab)
        return lti_fail(w->err, LT_ERR_INVALID, "%s: vocab_size is %u but the token embedding has %llu rows", w->path,
                        vocab, (unsigned long long)shape->embd_rows);
    ex->vocab_size = has_vocab ? vocab : shape->embd_rows;
    /* HF's default differs by model: LlamaConfig, Qwen2Config, Phi3Config,
     * ... untie, GemmaConfig ties; llama.cpp's gemma always ties */
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(w->cfg, "tie_word_embeddings");
    bool tied = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : is_gemma(w->arch);
    if (!shape->has_output && !tied && !is_gemma(w->arch))
        return lti_fail(w->err, LT_ERR_INVALID, "%s: tie_word_embeddings is false but the weights have no lm_head.weight",
                        w->path);
    double eps, base = strcmp(w->arch, "gemma3") == 0 ? 1e6 : 10000; /* the HF config classes' defaults */
    if (!cfg_number(w->cfg, "rms_norm_eps", &eps) || !(eps > 0))
        return lti_fail(w->err, LT_ERR_INVALID, "%s: no positive 'rms_norm_eps' (llama.cpp needs it for a %s model)",
                        w->path, w->arch);
    if (!cfg_number(w->cfg, "rope_theta", &base)) {
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(w->cfg, "rope_parameters");
        cfg_number(params, "rope_theta", &base);
    }
    if (!(base > 0))
        return lti_fail(w->err, LT_ERR_INVALID, "%s: rope_theta is not positive", w->path);
    s = refuse_unrepresentable(w, n_layer, n_embd, n_head, head_dim, n_ctx);
    if (s == LT_OK) s = put_u32(w, "context_length", n_ctx);
    if (s == LT_OK) s = put_u32(w, "embedding_length", n_embd);
    if (s == LT_OK) s = put_u32(w, "feed_forward_length", n_ff);
    if (s == LT_OK) s = put_u32(w, "block_count", n_layer);
    if (s == LT_OK) s = put_u32(w, "attention.head_count", n_head);
    if (s == LT_OK) s = put_u32(w, "attention.head_count_kv", n_head_kv);
    if (s == LT_OK) s = put_u32(w, "attention.key_length", head_dim);
    if (s == LT_OK) s = put_u32(w, "attention.value_length", head_dim);
    if (s == LT_OK) s = put_f32(w, "attention.layer_norm_rms_epsilon", eps);
    if (s == LT_OK) s = put_f32(w, "rope.freq_base", base);
    if (s == LT_OK) s = put_u32(w, "rope.dimension_count", head_dim);
    if (s == LT_OK && ex->vocab_size) {
        if (ex->vocab_size > UINT32_MAX)
            return lti_fail(w->err, LT_ERR_INVALID, "%s: vocabulary of %llu tokens", w->path,
                            (unsigned long long)ex->vocab_size);
        s = put_u32(w, "vocab_size", (uint32_t)ex->vocab_size);
    }
    if (s == LT_OK)
        s = rope_scaling_keys(w, base, head_dim, ex);
    double cap;
    bool sliding = strcmp(w->arch, "gemma2") == 0 || strcmp(w->arch, "gemma3") == 0 || strcmp(w->arch, "phi3") == 0;
    if (s == LT_OK && sliding && has_swa)
        s = put_u32(w, "attention.sliding_window", swa);
    if (s == LT_OK && strcmp(w->arch, "gemma2") == 0 && cfg_number(w->cfg, "attn_logit_softcapping", &cap))
        s = put_f32(w, "attn_logit_softcapping", cap);
    if (s == LT_OK && (strcmp(w->arch, "gemma2") == 0 || strcmp(w->arch, "gemma3") == 0) &&
        cfg_number(w->cfg, "final_logit_softcapping", &cap))
        s = put_f32(w, "final_logit_softcapping", cap);
    return s;
}

lt_status lti_model_hparams_set(lt_sink *sink, const char *arch, const char *config_path,
                                const lti_model_shape *shape, lti_model_extras *extras, lt_error *err)
{
    memset(extras, 0, sizeof *extras);
    cJSON *root = NULL;
    lt_status s = lti_read_config_json(config_path, &root, err);
    if (s != LT_OK)
        return s;
    /* multimodal configs keep the language model's under text_config */
    const cJSON *text_cfg = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    bool use_text = cJSON_IsObject(text_cfg) && cJSON_GetObjectItemCaseSensitive(text_cfg, "num_attention_heads");
    writer w = {sink, arch, config_path, use_text ? text_cfg : root, 0, err};
    s = write_keys(&w, shape, extras);
    extras->keys = w.keys;
    cJSON_Delete(root);
    if (s != LT_OK) {
        free(extras->rope_freqs);
        extras->rope_freqs = NULL;
        extras->n_rope_freqs = 0;
    }
    return s;
}
