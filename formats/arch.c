/* arch.c - what renaming an adapter between Hugging Face and GGUF names
 * needs to know of the base model: its GGUF architecture and head counts,
 * from a config.json (or a model directory holding one) or a GGUF model's
 * keys (spec/convert.md). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

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
