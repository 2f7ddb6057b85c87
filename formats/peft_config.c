/* peft_config.c - adapter_config.json of a PEFT adapter (spec/peft.md):
 * parsed with cJSON into the model's lt_peft_config, with the patterns
 * (rank_pattern, alpha_pattern: Python regexes) and trainable token ids
 * kept for the weights' reader in formats/peft.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peft.h"
#include "safetensors.h" /* lti_st_utf8_valid */

/* Keys of LoraConfig / AdaLoraConfig and of older PEFT releases: anything
 * else is reported as unknown (not fatal). */
static const char *const known_config_keys[] = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode",
    "auto_mapping", "r", "target_modules", "exclude_modules", "lora_alpha", "lora_dropout",
    "fan_in_fan_out", "bias", "use_rslora", "modules_to_save", "init_lora_weights",
    "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
    "megatron_config", "megatron_core", "trainable_token_indices", "loftq_config",
    "eva_config", "corda_config", "use_dora", "use_qalora", "qalora_group_size",
    "layer_replication", "runtime_config", "lora_bias", "target_parameters", "peft_version",
    "alora_invocation_tokens", "arrow_config", "ensure_weight_tying", "use_bdlora",
    "lora_ga_config", "enable_lora", "merge_weights",
    /* AdaLoRA */
    "target_r", "init_r", "tinit", "tfinal", "deltaT", "beta1", "beta2", "orth_reg_weight",
    "total_step",
    NULL,
};

/* PEFT types that are not LoRA-family products we can compute with. */
static bool is_supported_type(const char *type)
{
    return strcmp(type, "LORA") == 0 || strcmp(type, "ADALORA") == 0;
}

static bool list_push(string_list *list, const char *text)
{
    char *copy = lti_strdup(text);
    if (!copy || !lti_grow((void **)&list->items, &list->cap, list->count + 1, sizeof(char *))) {
        free(copy);
        return false;
    }
    list->items[list->count++] = copy;
    return true;
}

static void list_free(string_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void lti_peft_patterns_free(pattern_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(entries[i].key);
        lti_regex_free(entries[i].re);
    }
    free(entries);
}

/* The strings of LIST handed to the model: the array and each string are
 * kept by it from now on (LIST is emptied).  NULL when empty or out of
 * memory. */
static const char *const *keep_list(peft_parse *ad, string_list *list)
{
    if (list->count == 0)
        return NULL;
    char **items = list->items;
    size_t n = list->count;
    memset(list, 0, sizeof *list);
    bool ok = lti_adapter_keep(ad->model, items) != NULL;
    for (size_t i = 0; i < n; i++)
        if (ok)
            ok = lti_adapter_keep(ad->model, items[i]) != NULL;
        else
            free(items[i]);
    return ok ? (const char *const *)items : NULL;
}

void lti_peft_parse_free(peft_parse *p)
{
    list_free(&p->targets);
    list_free(&p->to_save);
    list_free(&p->unknown);
    lti_peft_patterns_free(p->rank_pattern, p->n_rank_pattern);
    lti_peft_patterns_free(p->alpha_pattern, p->n_alpha_pattern);
    for (size_t i = 0; i < p->n_token_sets; i++) {
        free(p->token_sets[i].module);
        free(p->token_sets[i].ids);
    }
    free(p->token_sets);
    free(p->enable_lora);
    memset(p, 0, sizeof *p);
}

static lt_status warn(peft_parse *ad, lt_error *err, const char *fmt, const char *arg)
{
    char line[LT_ERROR_MAX];
    snprintf(line, sizeof line, fmt, arg);
    lti_escape_controls(line, sizeof line); /* one printable line, whatever the key holds */
    return lti_adapter_warn(ad->model, line, err);
}

/* A string field copied into the model, or NULL when not a string. */
static const char *own_string(peft_parse *ad, const cJSON *item)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return NULL;
    return lti_adapter_keep_str(ad->model, item->valuestring, strlen(item->valuestring));
}

static lt_status config_bool(peft_parse *ad, const cJSON *root, const char *key, bool *out,
                             lt_error *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item || cJSON_IsNull(item))
        return LT_OK;
    if (!cJSON_IsBool(item))
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' must be true or false", ad->config_path, key);
    *out = cJSON_IsTrue(item);
    return LT_OK;
}

static lt_status config_string_list(peft_parse *ad, const cJSON *item, const char *key,
                                    string_list *out, lt_error *err)
{
    if (!item || cJSON_IsNull(item))
        return LT_OK;
    if (!cJSON_IsArray(item))
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' must be a list of strings", ad->config_path, key);
    const cJSON *elem;
    cJSON_ArrayForEach(elem, item) {
        if (!cJSON_IsString(elem))
            return lti_fail(err, LT_ERR_INVALID, "%s: '%s' must be a list of strings",
                           ad->config_path, key);
        if (!list_push(out, elem->valuestring))
            return lti_fail_nomem(err, ad->config_path);
    }
    return LT_OK;
}

static lt_status config_patterns(peft_parse *ad, const cJSON *root, const char *key,
                                 pattern_entry **out, size_t *n_out, lt_error *err)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!obj || cJSON_IsNull(obj))
        return LT_OK;
    if (!cJSON_IsObject(obj))
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' must be an object", ad->config_path, key);
    size_t n = (size_t)cJSON_GetArraySize(obj);
    if (n == 0)
        return LT_OK;
    pattern_entry *entries = calloc(n, sizeof *entries);
    if (!entries)
        return lti_fail_nomem(err, ad->config_path);
    *out = entries;
    const cJSON *item;
    size_t i = 0;
    cJSON_ArrayForEach(item, obj) {
        if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
            return lti_fail(err, LT_ERR_INVALID, "%s: %s['%s'] must be a number", ad->config_path,
                           key, item->string);
        /* a rank is a whole number >= 1 (it is compared with the factors'
         * rows); alphas may be any finite number, negative ones included */
        if (strcmp(key, "rank_pattern") == 0 &&
            (item->valuedouble < 1 || item->valuedouble > 1e7 || item->valuedouble != floor(item->valuedouble)))
            return lti_fail(err, LT_ERR_INVALID, "%s: rank_pattern['%s'] is %g: a rank is a whole number >= 1",
                           ad->config_path, item->string, item->valuedouble);
        entries[i].key = lti_strdup(item->string);
        char *wrapped = lti_asprintf("(.*\\.)?(%s)$", item->string);
        if (!entries[i].key || !wrapped) {
            free(wrapped);
            return lti_fail_nomem(err, ad->config_path);
        }
        lt_error re_err;
        entries[i].re = lti_regex_compile(wrapped, &re_err);
        free(wrapped);
        entries[i].value = item->valuedouble;
        *n_out = ++i;
        if (!entries[i - 1].re)
            return lti_fail(err, re_err.status, "%s: %s key '%s': %s", ad->config_path, key,
                           item->string, re_err.message);
    }
    return LT_OK;
}

static lt_status token_ids(peft_parse *ad, const cJSON *list, token_set *set, lt_error *err)
{
    if (!cJSON_IsArray(list))
        return lti_fail(err, LT_ERR_INVALID, "%s: trainable_token_indices must hold lists of token ids",
                       ad->config_path);
    size_t n = (size_t)cJSON_GetArraySize(list);
    set->ids = calloc(n + 1, sizeof *set->ids);
    if (!set->ids)
        return lti_fail_nomem(err, ad->config_path);
    const cJSON *id;
    cJSON_ArrayForEach(id, list) {
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 1e15 ||
            id->valuedouble != floor(id->valuedouble))
            return lti_fail(err, LT_ERR_INVALID, "%s: trainable_token_indices: token ids are non-negative integers",
                           ad->config_path);
        set->ids[set->n++] = (uint64_t)id->valuedouble;
    }
    return LT_OK;
}

/* trainable_token_indices: a list (the input embedding) or an object
 * {module name: list}. */
static lt_status config_token_sets(peft_parse *ad, const cJSON *item, lt_error *err)
{
    if (!item || cJSON_IsNull(item))
        return LT_OK;
    size_t n = cJSON_IsObject(item) ? (size_t)cJSON_GetArraySize(item) : 1;
    ad->token_sets = calloc(n + 1, sizeof *ad->token_sets);
    if (!ad->token_sets)
        return lti_fail_nomem(err, ad->config_path);
    if (!cJSON_IsObject(item)) {
        ad->n_token_sets = 1;
        return token_ids(ad, item, &ad->token_sets[0], err);
    }
    const cJSON *entry;
    cJSON_ArrayForEach(entry, item) {
        token_set *set = &ad->token_sets[ad->n_token_sets++];
        if (!(set->module = lti_strdup(entry->string)))
            return lti_fail_nomem(err, ad->config_path);
        lt_status s = token_ids(ad, entry, set, err);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}

/* PEFT <= 0.3's enable_lora: the groups of a merged layer (null: none). */
static lt_status config_enable_lora(peft_parse *ad, const cJSON *item, lt_error *err)
{
    if (!item || cJSON_IsNull(item))
        return LT_OK;
    int n = cJSON_GetArraySize(item);
    if (!cJSON_IsArray(item) || n < 1 || n > 4096)
        return lti_fail(err, LT_ERR_INVALID, "%s: 'enable_lora' must be a list of booleans", ad->config_path);
    if (!(ad->enable_lora = calloc((size_t)n, sizeof *ad->enable_lora)))
        return lti_fail_nomem(err, ad->config_path);
    const cJSON *flag;
    cJSON_ArrayForEach(flag, item) {
        if (!cJSON_IsBool(flag))
            return lti_fail(err, LT_ERR_INVALID, "%s: 'enable_lora' must be a list of booleans", ad->config_path);
        ad->enable_lora[ad->n_enable_lora++] = cJSON_IsTrue(flag);
    }
    return LT_OK;
}

/* r, lora_alpha and AdaLoRA's init_r. */
static lt_status config_numbers(peft_parse *ad, const cJSON *root, lt_peft_config *cfg, lt_error *err)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (r && !cJSON_IsNull(r)) {
        if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 1e7 ||
            r->valuedouble != floor(r->valuedouble)) {
            return lti_fail(err, LT_ERR_INVALID, "%s: 'r' must be a positive integer", ad->config_path);
        }
        cfg->r = (uint32_t)r->valuedouble;
    }
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (alpha && !cJSON_IsNull(alpha)) {
        if (!cJSON_IsNumber(alpha) || !isfinite(alpha->valuedouble)) {
            return lti_fail(err, LT_ERR_INVALID, "%s: 'lora_alpha' must be a number", ad->config_path);
        }
        cfg->lora_alpha = alpha->valuedouble;
    } else if (strcmp(cfg->peft_type, "LORA") == 0 && !alpha) {
        cfg->lora_alpha = 8;
    }
    const cJSON *init_r = cJSON_GetObjectItemCaseSensitive(root, "init_r");
    if (init_r && !cJSON_IsNull(init_r)) {
        if (!cJSON_IsNumber(init_r) || init_r->valuedouble < 1 || init_r->valuedouble > 1e7 ||
            init_r->valuedouble != floor(init_r->valuedouble))
            return lti_fail(err, LT_ERR_INVALID, "%s: 'init_r' must be a positive integer", ad->config_path);
        cfg->adalora_init_r = (uint32_t)init_r->valuedouble;
    }
    return LT_OK;
}

lt_status lti_peft_parse_config(peft_parse *ad, const char *text, lt_error *err)
{
    size_t bad_at = 0;
    if (!lti_st_utf8_valid(text, strlen(text), &bad_at))
        return lti_fail(err, LT_ERR_INVALID, "%s: not valid UTF-8 (byte %zu)", ad->config_path, bad_at);
    const char *error_at = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &error_at, true);
    if (!root)
        return lti_fail(err, LT_ERR_INVALID, "%s: invalid JSON near byte %ld", ad->config_path,
                       error_at ? (long)(error_at - text) : 0L);
    lt_status s = LT_OK;
    lt_peft_config *cfg = lti_adapter_config_mut(ad->model);
    cfg->r = 8;
    cfg->lora_alpha = 8;
    cfg->adalora_init_r = 12;
    cfg->bias = "none";
    if (!cJSON_IsObject(root)) {
        s = lti_fail(err, LT_ERR_INVALID, "%s: top level is not a JSON object", ad->config_path);
        goto done;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (!cJSON_IsString(type)) {
        s = lti_fail(err, LT_ERR_UNSUPPORTED,
                    "%s: not a PEFT adapter config (no peft_type; made by another tool?)",
                    ad->config_path);
        goto done;
    }
    if (!is_supported_type(type->valuestring)) {
        s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unsupported adapter type %s (only LORA and ADALORA)",
                    ad->config_path, type->valuestring);
        goto done;
    }
    cfg->peft_type = own_string(ad, type);
    cfg->task_type = own_string(ad, cJSON_GetObjectItemCaseSensitive(root, "task_type"));
    cfg->base_model = own_string(ad, cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path"));
    cfg->peft_version = own_string(ad, cJSON_GetObjectItemCaseSensitive(root, "peft_version"));

    if ((s = config_numbers(ad, root, cfg, err)))
        goto done;
    if ((s = config_bool(ad, root, "use_rslora", &cfg->use_rslora, err)) ||
        (s = config_bool(ad, root, "use_dora", &cfg->use_dora, err)) ||
        (s = config_bool(ad, root, "fan_in_fan_out", &cfg->fan_in_fan_out, err)) ||
        (s = config_bool(ad, root, "lora_bias", &cfg->lora_bias, err)))
        goto done;
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (cJSON_IsString(bias)) {
        if (strcmp(bias->valuestring, "none") && strcmp(bias->valuestring, "all") &&
            strcmp(bias->valuestring, "lora_only")) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: 'bias' must be none, all or lora_only",
                        ad->config_path);
            goto done;
        }
        cfg->bias = own_string(ad, bias);
    }
    const cJSON *replication = cJSON_GetObjectItemCaseSensitive(root, "layer_replication");
    cfg->has_layer_replication = replication && !cJSON_IsNull(replication);

    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsString(targets)) {
        cfg->target_regex = own_string(ad, targets);
        lt_error re_err;
        lti_regex *re = lti_regex_compile(cfg->target_regex, &re_err);
        if (!re) {
            s = lti_fail(err, re_err.status, "%s: target_modules: %s", ad->config_path, re_err.message);
            goto done;
        }
        lti_regex_free(re);
    } else if ((s = config_string_list(ad, targets, "target_modules", &ad->targets, err))) {
        goto done;
    }
    if ((s = config_string_list(ad, cJSON_GetObjectItemCaseSensitive(root, "modules_to_save"),
                                "modules_to_save", &ad->to_save, err)))
        goto done;
    /* AdaLoRA saves rank_pattern as per-rank keep masks ("...lora_E":
     * [true, false, ...]); the saved tensors already have the pruned rank */
    bool adalora = strcmp(cfg->peft_type, "ADALORA") == 0;
    if ((!adalora &&
         (s = config_patterns(ad, root, "rank_pattern", &ad->rank_pattern, &ad->n_rank_pattern, err))) ||
        (s = config_patterns(ad, root, "alpha_pattern", &ad->alpha_pattern, &ad->n_alpha_pattern, err)))
        goto done;
    if ((s = config_token_sets(ad, cJSON_GetObjectItemCaseSensitive(root, "trainable_token_indices"), err)) ||
        (s = config_enable_lora(ad, cJSON_GetObjectItemCaseSensitive(root, "enable_lora"), err)))
        goto done;
    cfg->has_rank_pattern = ad->n_rank_pattern > 0;
    cfg->has_alpha_pattern = ad->n_alpha_pattern > 0;

    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        bool known = false;
        for (size_t k = 0; known_config_keys[k] && !known; k++)
            known = strcmp(item->string, known_config_keys[k]) == 0;
        if (!known) {
            if (!list_push(&ad->unknown, item->string)) {
                s = lti_fail_nomem(err, ad->config_path);
                goto done;
            }
            if ((s = warn(ad, err, "unknown config key '%s' ignored", item->string)))
                goto done;
        }
    }
    cfg->n_target_modules = ad->targets.count;
    cfg->target_modules = keep_list(ad, &ad->targets);
    cfg->n_modules_to_save = ad->to_save.count;
    cfg->modules_to_save = keep_list(ad, &ad->to_save);
    cfg->n_unknown_keys = ad->unknown.count;
    cfg->unknown_keys = keep_list(ad, &ad->unknown);
    if ((cfg->n_target_modules && !cfg->target_modules) || (cfg->n_modules_to_save && !cfg->modules_to_save) ||
        (cfg->n_unknown_keys && !cfg->unknown_keys))
        s = lti_fail_nomem(err, ad->config_path);
done:
    cJSON_Delete(root);
    return s;
}
