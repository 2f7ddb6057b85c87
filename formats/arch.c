/* arch.c - what renaming an adapter between Hugging Face and GGUF names
 * needs to know of the base model: its GGUF architecture and head counts,
 * from a config.json (or a model directory holding one) or a GGUF model's
 * keys (spec/convert.md). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

/* ---- architecture facts ---- */

/* KEY of a config, a whole number >= 1 when present (else LT_ERR_INVALID
 * naming it); *out stays 0 when it is absent or null. */
static lt_status config_dim(const cJSON *cfg, const char *key, const char *path, uint64_t *out, lt_error *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *out = 0;
    if (!item || cJSON_IsNull(item))
        return LT_OK;
    if (!cJSON_IsNumber(item) || item->valuedouble < 1 || item->valuedouble > 1e15 ||
        item->valuedouble != floor(item->valuedouble))
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' must be a positive integer", path, key);
    *out = (uint64_t)item->valuedouble;
    return LT_OK;
}

lt_status lti_read_config_json(const char *path, cJSON **root_out, lt_error *err)
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
    *root_out = root;
    return LT_OK;
}

static lt_status arch_from_config(const char *path, lt_arch_info *out, lt_error *err)
{
    cJSON *root = NULL;
    lt_status s = lti_read_config_json(path, &root, err);
    if (s != LT_OK)
        return s;
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
    snprintf(out->arch, sizeof out->arch, "%s", arch);
    uint64_t heads = 0, kv_heads = 0;
    s = config_dim(cfg, "num_attention_heads", path, &heads, err);
    if (s == LT_OK)
        s = config_dim(cfg, "num_key_value_heads", path, &kv_heads, err);
    if (s == LT_OK && (heads > 0xFFFFFFFFu || kv_heads > 0xFFFFFFFFu))
        s = lti_fail(err, LT_ERR_INVALID, "%s: head counts beyond 2^32", path);
    out->n_head = (uint32_t)heads;
    out->n_head_kv = kv_heads ? (uint32_t)kv_heads : out->n_head;
    if (s == LT_OK)
        s = config_dim(cfg, "hidden_size", path, &out->n_embd, err);
    if (s == LT_OK)
        s = config_dim(cfg, "intermediate_size", path, &out->n_ff, err);
    if (s == LT_OK)
        s = config_dim(cfg, "head_dim", path, &out->head_dim, err);
    if (s == LT_OK)
        s = config_dim(cfg, "vocab_size", path, &out->n_vocab, err);
    cJSON_Delete(root);
    if (s != LT_OK)
        return s;
    if (!out->head_dim && out->n_head && out->n_embd % out->n_head == 0)
        out->head_dim = out->n_embd / out->n_head;
    if (out->n_head == 0 && lti_arch_permutes_qk(arch))
        return lti_fail(err, LT_ERR_INVALID, "%s: no num_attention_heads (needed for the Q/K permutation)", path);
    return LT_OK;
}

/* <arch>.NAME of a GGUF model, an integer >= 1 when present (else
 * LT_ERR_INVALID naming it); *out stays 0 when it is absent. */
static lt_status gguf_dim(lt_source *src, const char *arch, const char *name, uint64_t *out, lt_error *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, name);
    long k = lt_source_kv_find(src, key);
    *out = 0;
    if (k < 0)
        return LT_OK;
    if (lt_source_kv_type(src, (size_t)k) == LT_GGUF_ARRAY || !lt_source_kv_u64(src, (size_t)k, 0, out) || *out == 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: %s must be a positive integer", lt_source_path(src), key);
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
    uint64_t heads = 0, kv_heads = 0;
    lt_status s = gguf_dim(src, arch, "attention.head_count", &heads, err);
    if (s == LT_OK)
        s = gguf_dim(src, arch, "attention.head_count_kv", &kv_heads, err);
    if (s == LT_OK && (heads > 0xFFFFFFFFu || kv_heads > 0xFFFFFFFFu))
        s = lti_fail(err, LT_ERR_INVALID, "%s: head counts beyond 2^32", lt_source_path(src));
    out->n_head = (uint32_t)heads;
    out->n_head_kv = kv_heads ? (uint32_t)kv_heads : out->n_head;
    if (s == LT_OK)
        s = gguf_dim(src, arch, "embedding_length", &out->n_embd, err);
    if (s == LT_OK)
        s = gguf_dim(src, arch, "feed_forward_length", &out->n_ff, err);
    if (s == LT_OK)
        s = gguf_dim(src, arch, "attention.key_length", &out->head_dim, err);
    if (s != LT_OK)
        return s;
    if (!out->head_dim && out->n_head && out->n_embd % out->n_head == 0)
        out->head_dim = out->n_embd / out->n_head;
    long embd = lt_source_find(src, "token_embd.weight");
    if (embd >= 0 && lt_source_tensor(src, (size_t)embd)->n_dims == 2)
        out->n_vocab = lt_source_tensor(src, (size_t)embd)->shape[0];
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
