/* peft.c - PEFT adapter directories: adapter_config.json + weights.
 *
 * The config is parsed with cJSON into lt_peft_config; the weights file is
 * opened as a tensor source and every key is classified (spec/peft.md):
 * LoRA factors grouped into modules, everything else a replacement tensor.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "regex.h"

#define CONFIG_NAME "adapter_config.json"
#define CONFIG_MAX_BYTES (16u << 20)
#define PEFT_PREFIX "base_model.model."

/* One rank_pattern / alpha_pattern entry, compiled as PEFT matches it:
 * re.match(rf"(.*\.)?({key})$", module_name). */
typedef struct pattern_entry {
    char *key;
    lti_regex *re;
    double value;
} pattern_entry;

/* One trainable_token_indices entry: the module it names (NULL for the
 * list form, which means the input embedding) and its token ids. */
typedef struct token_set {
    char *module;
    uint64_t *ids;
    size_t n;
} token_set;

typedef struct string_list {
    char **items;
    size_t count, cap;
} string_list;

struct lt_adapter {
    char *dir;
    char *config_path;
    lt_peft_config cfg;
    char *owned_strings[8];       /* peft_type, task_type, ... (freed)   */
    string_list targets, to_save, unknown, warnings;
    pattern_entry *rank_pattern, *alpha_pattern;
    size_t n_rank_pattern, n_alpha_pattern;
    lt_source *weights;
    lt_lora_module *modules;
    size_t n_modules, cap_modules;
    lti_strmap module_index;       /* module name -> index              */
    lt_replacement *replacements;
    size_t n_replacements, cap_replacements;
    token_set *token_sets;        /* trainable_token_indices             */
    size_t n_token_sets;
    uint64_t lora_params, replacement_params;
};

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

static void patterns_free(pattern_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(entries[i].key);
        lti_regex_free(entries[i].re);
    }
    free(entries);
}

void lt_adapter_close(lt_adapter *ad)
{
    if (!ad)
        return;
    free(ad->dir);
    free(ad->config_path);
    for (size_t i = 0; i < sizeof ad->owned_strings / sizeof *ad->owned_strings; i++)
        free(ad->owned_strings[i]);
    list_free(&ad->targets);
    list_free(&ad->to_save);
    list_free(&ad->unknown);
    list_free(&ad->warnings);
    patterns_free(ad->rank_pattern, ad->n_rank_pattern);
    patterns_free(ad->alpha_pattern, ad->n_alpha_pattern);
    for (size_t i = 0; i < ad->n_modules; i++) {
        free((char *)ad->modules[i].name);
        free((char *)ad->modules[i].target);
    }
    free(ad->modules);
    lti_strmap_free(&ad->module_index);
    for (size_t i = 0; i < ad->n_replacements; i++)
        free((char *)ad->replacements[i].target);
    free(ad->replacements);
    for (size_t i = 0; i < ad->n_token_sets; i++) {
        free(ad->token_sets[i].module);
        free(ad->token_sets[i].ids);
    }
    free(ad->token_sets);
    lt_source_close(ad->weights);
    free(ad);
}

static lt_status warn(lt_adapter *ad, lt_error *err, const char *fmt, const char *arg)
{
    char *line = lti_asprintf(fmt, arg);
    if (!line || !list_push(&ad->warnings, line)) {
        free(line);
        return lti_fail_nomem(err, ad->config_path);
    }
    free(line);
    return LT_OK;
}

/* ---- config ---- */

/* Copy a string field into the adapter (slot = which owned string). */
static const char *own_string(lt_adapter *ad, int slot, const cJSON *item)
{
    if (!cJSON_IsString(item) || !item->valuestring)
        return NULL;
    ad->owned_strings[slot] = lti_strdup(item->valuestring);
    return ad->owned_strings[slot];
}

static lt_status config_bool(lt_adapter *ad, const cJSON *root, const char *key, bool *out,
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

static lt_status config_string_list(lt_adapter *ad, const cJSON *item, const char *key,
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

static lt_status config_patterns(lt_adapter *ad, const cJSON *root, const char *key,
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

static lt_status token_ids(lt_adapter *ad, const cJSON *list, token_set *set, lt_error *err)
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
static lt_status config_token_sets(lt_adapter *ad, const cJSON *item, lt_error *err)
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

static lt_status parse_config(lt_adapter *ad, const char *text, lt_error *err)
{
    const char *error_at = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &error_at, true);
    if (!root)
        return lti_fail(err, LT_ERR_INVALID, "%s: invalid JSON near byte %ld", ad->config_path,
                       error_at ? (long)(error_at - text) : 0L);
    lt_status s = LT_OK;
    lt_peft_config *cfg = &ad->cfg;
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
    cfg->peft_type = own_string(ad, 0, type);
    cfg->task_type = own_string(ad, 1, cJSON_GetObjectItemCaseSensitive(root, "task_type"));
    cfg->base_model = own_string(ad, 2, cJSON_GetObjectItemCaseSensitive(root, "base_model_name_or_path"));
    cfg->peft_version = own_string(ad, 3, cJSON_GetObjectItemCaseSensitive(root, "peft_version"));

    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (r && !cJSON_IsNull(r)) {
        if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble > 1e7 ||
            r->valuedouble != floor(r->valuedouble)) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: 'r' must be a positive integer", ad->config_path);
            goto done;
        }
        cfg->r = (uint32_t)r->valuedouble;
    }
    const cJSON *alpha = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (alpha && !cJSON_IsNull(alpha)) {
        if (!cJSON_IsNumber(alpha) || !isfinite(alpha->valuedouble)) {
            s = lti_fail(err, LT_ERR_INVALID, "%s: 'lora_alpha' must be a number", ad->config_path);
            goto done;
        }
        cfg->lora_alpha = alpha->valuedouble;
    } else if (strcmp(cfg->peft_type, "LORA") == 0 && !alpha) {
        cfg->lora_alpha = 8;
    }
    const cJSON *init_r = cJSON_GetObjectItemCaseSensitive(root, "init_r");
    if (cJSON_IsNumber(init_r) && init_r->valuedouble >= 1 && init_r->valuedouble <= 1e7)
        cfg->adalora_init_r = (uint32_t)init_r->valuedouble;

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
        cfg->bias = own_string(ad, 4, bias);
    }
    const cJSON *replication = cJSON_GetObjectItemCaseSensitive(root, "layer_replication");
    cfg->has_layer_replication = replication && !cJSON_IsNull(replication);

    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsString(targets)) {
        cfg->target_regex = own_string(ad, 5, targets);
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
    if ((s = config_token_sets(ad, cJSON_GetObjectItemCaseSensitive(root, "trainable_token_indices"), err)))
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
    cfg->target_modules = (const char *const *)ad->targets.items;
    cfg->n_modules_to_save = ad->to_save.count;
    cfg->modules_to_save = (const char *const *)ad->to_save.items;
    cfg->n_unknown_keys = ad->unknown.count;
    cfg->unknown_keys = (const char *const *)ad->unknown.items;
done:
    cJSON_Delete(root);
    return s;
}

/* ---- weights: key classification ---- */

typedef enum key_role {
    ROLE_A, ROLE_B, ROLE_E, ROLE_BIAS, ROLE_EMB_A, ROLE_EMB_B, ROLE_MAGNITUDE
} key_role;

static const struct {
    const char *suffix;
    key_role role;
} lora_suffixes[] = {
    {".lora_A.weight", ROLE_A},
    {".lora_B.weight", ROLE_B},
    {".lora_B.bias", ROLE_BIAS},
    {".lora_embedding_A", ROLE_EMB_A},
    {".lora_embedding_B", ROLE_EMB_B},
    {".lora_magnitude_vector.weight", ROLE_MAGNITUDE},
    {".lora_magnitude_vector", ROLE_MAGNITUDE},
    {".lora_A", ROLE_A}, /* AdaLoRA saves its factors without ".weight" */
    {".lora_B", ROLE_B},
    {".lora_E", ROLE_E},
};

/* Markers of PEFT / LyCORIS methods that are not LoRA. */
static const struct {
    const char *marker;
    const char *type;
} foreign_markers[] = {
    {"hada_w", "LOHA"},        {"lokr_w", "LOKR"},         {"ia3_l", "IA3"},
    {"vera_lambda", "VERA"},   {"oft_r", "OFT"},           {"oft_R", "OFT"},
    {"boft_R", "BOFT"},        {"prompt_embeddings", "PROMPT_TUNING"},
    {".lora_up.", "kohya LoRA"}, {".lora_down.", "kohya LoRA"},
};

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

static lt_status module_for(lt_adapter *ad, const char *name, size_t name_len, lt_lora_module **out,
                            lt_error *err)
{
    char *copy = lti_strndup(name, name_len);
    if (!copy)
        return lti_fail_nomem(err, ad->dir);
    long index = lti_strmap_get(&ad->module_index, copy);
    if (index >= 0) {
        free(copy);
        *out = &ad->modules[index];
        return LT_OK;
    }
    if (!lti_grow((void **)&ad->modules, &ad->cap_modules, ad->n_modules + 1, sizeof **out) ||
        lti_strmap_put(&ad->module_index, copy, (long)ad->n_modules) < 0) {
        free(copy);
        return lti_fail_nomem(err, ad->dir);
    }
    lt_lora_module *m = &ad->modules[ad->n_modules++];
    memset(m, 0, sizeof *m);
    m->name = copy;
    m->tensor_a = m->tensor_b = m->tensor_e = m->tensor_magnitude = m->tensor_bias = -1;
    *out = m;
    return LT_OK;
}

static lt_status add_replacement(lt_adapter *ad, const lt_tensor_info *t, long index,
                                 const char *target, lt_replacement_kind kind, lt_error *err)
{
    if (!lti_grow((void **)&ad->replacements, &ad->cap_replacements, ad->n_replacements + 1,
                 sizeof *ad->replacements))
        return lti_fail_nomem(err, ad->dir);
    lt_replacement *r = &ad->replacements[ad->n_replacements];
    r->key = t->name;
    r->target = lti_strdup(target);
    if (!r->target)
        return lti_fail_nomem(err, ad->dir);
    r->kind = kind;
    r->tensor = index;
    r->n_params = t->n_elems;
    ad->n_replacements++;
    ad->replacement_params += t->n_elems;
    return LT_OK;
}

static lt_status classify_key(lt_adapter *ad, long index, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(ad->weights, (size_t)index);
    const char *key = t->name;
    const char *path = lt_source_path(ad->weights);
    if (strncmp(key, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0)
        key += strlen(PEFT_PREFIX);
    size_t len = strlen(key);

    for (size_t i = 0; i < sizeof lora_suffixes / sizeof *lora_suffixes; i++) {
        if (!ends_with(key, len, lora_suffixes[i].suffix))
            continue;
        size_t name_len = len - strlen(lora_suffixes[i].suffix);
        if (name_len == 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: key '%s' names no module", path, t->name);
        lt_lora_module *m = NULL;
        lt_status s = module_for(ad, key, name_len, &m, err);
        if (s != LT_OK)
            return s;
        long *slot = NULL;
        switch (lora_suffixes[i].role) {
        case ROLE_A: slot = &m->tensor_a; break;
        case ROLE_B: slot = &m->tensor_b; break;
        case ROLE_E: slot = &m->tensor_e; break;
        case ROLE_BIAS: slot = &m->tensor_bias; break;
        case ROLE_MAGNITUDE: slot = &m->tensor_magnitude; break;
        case ROLE_EMB_A: slot = &m->tensor_a; m->kind = LT_MODULE_EMBEDDING; break;
        case ROLE_EMB_B: slot = &m->tensor_b; m->kind = LT_MODULE_EMBEDDING; break;
        }
        if (*slot >= 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has two tensors for '%s'", path,
                           m->name, lora_suffixes[i].suffix + 1);
        *slot = index;
        return LT_OK;
    }
    for (size_t i = 0; i < sizeof foreign_markers / sizeof *foreign_markers; i++)
        if (strstr(key, foreign_markers[i].marker))
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unsupported adapter type %s (key '%s')",
                           path, foreign_markers[i].type, t->name);
    if (strstr(key, ".lora_"))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unrecognized LoRA key '%s'", path, t->name);

    static const char token_suffix[] = ".token_adapter.trainable_tokens_delta";
    if (ends_with(key, len, token_suffix)) {
        char *target = lti_asprintf("%.*s.weight", (int)(len - strlen(token_suffix)), key);
        if (!target)
            return lti_fail_nomem(err, path);
        lt_status s = add_replacement(ad, t, index, target, LT_REPLACE_TOKEN_ROWS, err);
        free(target);
        return s;
    }
    return add_replacement(ad, t, index, key, LT_REPLACE_FULL, err);
}

/* Rank from rank_pattern, then r (PEFT's get_pattern_key: first key that
 * matches wins, in the config's order).  *found is NULL when none matches;
 * a key whose match ran out of the regex budget is an error, never a
 * mismatch. */
static lt_status find_pattern(const lt_adapter *ad, const char *what, const pattern_entry *entries, size_t n,
                              const char *name, const pattern_entry **found, lt_error *err)
{
    *found = NULL;
    for (size_t i = 0; i < n; i++) {
        int r = lti_regex_exec(entries[i].re, name, false);
        if (r < 0)
            return lti_fail(err, LT_ERR_UNSUPPORTED,
                            "%s: %s key '%s': the match exceeds the regex budget (module '%s')",
                            ad->config_path, what, entries[i].key, name);
        if (r == 1) {
            *found = &entries[i];
            break;
        }
    }
    return LT_OK;
}

static uint64_t elems_of(const lt_adapter *ad, long index)
{
    return index >= 0 ? lt_source_tensor(ad->weights, (size_t)index)->n_elems : 0;
}

static lt_status check_module(lt_adapter *ad, lt_lora_module *m, lt_error *err)
{
    const char *path = lt_source_path(ad->weights);
    const lt_peft_config *cfg = &ad->cfg;
    bool adalora = strcmp(cfg->peft_type, "ADALORA") == 0;
    if (m->tensor_a < 0 || m->tensor_b < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has %s but no %s", path, m->name,
                       m->tensor_a < 0 ? "lora_B" : "lora_A", m->tensor_a < 0 ? "lora_A" : "lora_B");
    const lt_tensor_info *a = lt_source_tensor(ad->weights, (size_t)m->tensor_a);
    const lt_tensor_info *b = lt_source_tensor(ad->weights, (size_t)m->tensor_b);
    if (!lt_dtype_is_float(a->dtype) || !lt_dtype_is_float(b->dtype))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': LoRA factors of dtype %s/%s", path,
                       m->name, lt_dtype_name(a->dtype), lt_dtype_name(b->dtype));
    if (a->n_dims < 2 || b->n_dims < 2)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_A and lora_B must have at least 2 dimensions",
                       path, m->name);
    if (m->kind == LT_MODULE_EMBEDDING) {
        /* A [r, vocab], B [dim, r]; the base weight is [vocab, dim] */
        if (a->n_dims != 2 || b->n_dims != 2 || b->shape[1] != a->shape[0])
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': lora_embedding_B [%llu, %llu] does not fit lora_embedding_A [%llu, %llu]",
                           path, m->name, (unsigned long long)b->shape[0], (unsigned long long)b->shape[1],
                           (unsigned long long)a->shape[0], (unsigned long long)a->shape[1]);
        m->rank = (uint32_t)a->shape[0];
        m->out_features = a->shape[1];
        m->in_features = b->shape[0];
    } else {
        /* Linear: A [r, in], B [out, r].  Conv: A [r, in, k...], B [out, r, 1...] */
        uint64_t kernel = 1;
        for (uint32_t d = 2; d < a->n_dims; d++)
            kernel *= a->shape[d];
        for (uint32_t d = 2; d < b->n_dims; d++)
            if (b->shape[d] != 1 && !(b->n_dims == 3 && a->n_dims == 2))
                return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_B must be 1x1 over the kernel",
                               path, m->name);
        /* PEFT 0.3 enable_lora (merged QKV): A [r * groups, in] is a Linear,
         * B [out, r, 1] a grouped Conv1d; taken as a linear module with
         * B [out, r] (the kernel axis is 1) and rank r */
        bool grouped = b->n_dims == 3 && a->n_dims == 2;
        if (grouped && (b->shape[2] != 1 || b->shape[1] == 0 || a->shape[0] % b->shape[1] != 0))
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': legacy grouped lora_B [%llu, %llu, %llu] does not fit lora_A [%llu, %llu]",
                           path, m->name, (unsigned long long)b->shape[0], (unsigned long long)b->shape[1],
                           (unsigned long long)b->shape[2], (unsigned long long)a->shape[0],
                           (unsigned long long)a->shape[1]);
        if (grouped) {
            m->kind = LT_MODULE_LINEAR;
            m->rank = (uint32_t)b->shape[1];
            m->out_features = b->shape[0];
            m->in_features = a->shape[1];
        } else if (a->n_dims != b->n_dims || b->shape[1] != a->shape[0])
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: module '%s': lora_B %s[%llu, %llu] does not fit lora_A [%llu, %llu] (rank mismatch)",
                           path, m->name, b->n_dims > 2 ? "(conv) " : "", (unsigned long long)b->shape[0],
                           (unsigned long long)b->shape[1], (unsigned long long)a->shape[0],
                           (unsigned long long)a->shape[1]);
        if (!grouped) {
            m->kind = a->n_dims > 2 ? LT_MODULE_CONV : LT_MODULE_LINEAR;
            m->rank = (uint32_t)a->shape[0];
            m->out_features = b->shape[0];
            if (!lti_mul_u64(a->shape[1], kernel, &m->in_features))
                return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': shape overflows", path, m->name);
        }
    }
    if (a->shape[0] == 0 || a->shape[0] > 0xFFFFFFFFu)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has rank %llu", path, m->name,
                       (unsigned long long)a->shape[0]);
    if (m->tensor_e >= 0) {
        const lt_tensor_info *e = lt_source_tensor(ad->weights, (size_t)m->tensor_e);
        if (e->n_elems != m->rank)
            return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_E has %llu elements, rank is %u",
                           path, m->name, (unsigned long long)e->n_elems, m->rank);
    } else if (adalora) {
        return lti_fail(err, LT_ERR_INVALID, "%s: AdaLoRA module '%s' has no lora_E", path, m->name);
    }
    if (m->tensor_magnitude >= 0 &&
        lt_source_tensor(ad->weights, (size_t)m->tensor_magnitude)->n_elems != m->out_features)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': DoRA magnitude has %llu elements, expected %llu",
                       path, m->name,
                       (unsigned long long)lt_source_tensor(ad->weights, (size_t)m->tensor_magnitude)->n_elems,
                       (unsigned long long)m->out_features);
    if (m->tensor_bias >= 0 &&
        lt_source_tensor(ad->weights, (size_t)m->tensor_bias)->n_elems != m->out_features)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_B.bias has %llu elements, expected %llu",
                       path, m->name,
                       (unsigned long long)lt_source_tensor(ad->weights, (size_t)m->tensor_bias)->n_elems,
                       (unsigned long long)m->out_features);

    const pattern_entry *rank_entry, *alpha_entry;
    lt_status found = find_pattern(ad, "rank_pattern", ad->rank_pattern, ad->n_rank_pattern, m->name, &rank_entry, err);
    if (found == LT_OK)
        found = find_pattern(ad, "alpha_pattern", ad->alpha_pattern, ad->n_alpha_pattern, m->name, &alpha_entry, err);
    if (found != LT_OK)
        return found;
    uint64_t config_rank = rank_entry ? (uint64_t)rank_entry->value : cfg->r;
    if (!adalora && config_rank != m->rank)
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: module '%s': lora_A has %u rows but the config gives rank %llu (%s)", path,
                       m->name, m->rank, (unsigned long long)config_rank,
                       rank_entry ? "rank_pattern" : "r");
    m->alpha = alpha_entry ? alpha_entry->value : cfg->lora_alpha;
    if (adalora) {
        /* SVDLinear: scaling = lora_alpha if > 0 else r, divided by
         * ranknum + 1e-5 where ranknum (never saved) is init_r; PEFT
         * builds the layers with r = init_r, hence the fallback */
        double scaling = m->alpha > 0 ? m->alpha : (double)cfg->adalora_init_r;
        m->scale = scaling / ((double)cfg->adalora_init_r + 1e-5);
    } else {
        m->scale = cfg->use_rslora ? m->alpha / sqrt((double)m->rank) : m->alpha / (double)m->rank;
    }
    m->fan_in_fan_out = cfg->fan_in_fan_out;
    m->target = lti_asprintf("%s.weight", m->name);
    if (!m->target)
        return lti_fail_nomem(err, path);
    m->n_params = elems_of(ad, m->tensor_a) + elems_of(ad, m->tensor_b) + elems_of(ad, m->tensor_e) +
                  elems_of(ad, m->tensor_magnitude) + elems_of(ad, m->tensor_bias);
    ad->lora_params += m->n_params;
    return LT_OK;
}

/* The token ids a trainable_tokens_delta's rows go to: the
 * trainable_token_indices entry naming its module (exactly, or as its last
 * components), else the list form. */
static lt_status attach_token_ids(lt_adapter *ad, lt_replacement *r, lt_error *err)
{
    const char *path = lt_source_path(ad->weights);
    size_t module_len = strlen(r->target) - strlen(".weight");
    const token_set *found = NULL;
    for (size_t i = 0; i < ad->n_token_sets && !found; i++) {
        const token_set *set = &ad->token_sets[i];
        size_t n = set->module ? strlen(set->module) : 0;
        if (set->module && n <= module_len && strncmp(r->target + module_len - n, set->module, n) == 0 &&
            (n == module_len || r->target[module_len - n - 1] == '.'))
            found = set;
    }
    for (size_t i = 0; i < ad->n_token_sets && !found; i++)
        if (!ad->token_sets[i].module)
            found = &ad->token_sets[i];
    if (!found)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' has no trainable_token_indices in the config", path, r->key);
    const lt_tensor_info *t = lt_source_tensor(ad->weights, (size_t)r->tensor);
    if (t->n_dims != 2 || t->shape[0] != found->n)
        return lti_fail(err, LT_ERR_INVALID, "%s: '%s' has %llu rows for %zu trainable token ids", path, r->key,
                       (unsigned long long)(t->n_dims ? t->shape[0] : 0), found->n);
    r->token_indices = found->ids;
    r->n_token_indices = found->n;
    return LT_OK;
}

/* The weights file of an adapter directory, malloc'd; NULL if none.  Any
 * entry of the name counts (opening it refuses a FIFO or directory). */
static char *find_weights(const char *dir, lt_error *err)
{
    char *path = lti_path_join(dir, "adapter_model.safetensors");
    if (path && access(path, F_OK) == 0)
        return path;
    free(path);
    path = lti_path_join(dir, "adapter_model.bin");
    if (path && access(path, F_OK) == 0)
        return path; /* legacy torch.save weights (formats/torch_bin.c) */
    lti_fail(err, LT_ERR_INVALID, "%s: no adapter_model.safetensors or adapter_model.bin in the adapter directory",
            dir);
    free(path);
    return NULL;
}

/* A lone weights file is not a PEFT adapter; name the method when its keys
 * show one (kohya/LyCORIS files, for instance), so the refusal is useful. */
static void refuse_single_file(const char *path, lt_error *err)
{
    lt_source *src = lt_source_open(path, err);
    if (!src)
        return;
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        const char *key = lt_source_tensor(src, i)->name;
        for (size_t k = 0; k < sizeof foreign_markers / sizeof *foreign_markers; k++) {
            if (strstr(key, foreign_markers[k].marker)) {
                lti_fail(err, LT_ERR_UNSUPPORTED,
                        "%s: unsupported adapter type %s (not a PEFT directory; key '%s')", path,
                        foreign_markers[k].type, key);
                lt_source_close(src);
                return;
            }
        }
    }
    lt_source_close(src);
    lti_fail(err, LT_ERR_INVALID, "%s: a weights file, not a PEFT adapter directory (needs %s)", path,
            CONFIG_NAME);
}

/* A GGUF LoRA adapter (llama.cpp): pairs "<target>.lora_a" [r, in] /
 * "<target>.lora_b" [out, r], one alpha for the file (spec/convert.md).
 * Module names are the GGUF target names without ".weight". */
static bool gguf_kv_is(lt_source *src, const char *key, const char *want)
{
    long k = lt_source_kv_find(src, key);
    const char *v = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    return v && strcmp(v, want) == 0;
}

static lt_status gguf_modules(lt_adapter *ad, lt_error *err)
{
    lt_source *src = ad->weights;
    const char *path = lt_source_path(src);
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        size_t len = strlen(t->name);
        bool is_a = len > 7 && strcmp(t->name + len - 7, ".lora_a") == 0;
        bool is_b = len > 7 && strcmp(t->name + len - 7, ".lora_b") == 0;
        if (!is_a && !is_b)
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' is not a lora_a/lora_b factor", path, t->name);
        size_t target_len = len - 7;
        size_t name_len = target_len > 7 && strncmp(t->name + target_len - 7, ".weight", 7) == 0 ? target_len - 7
                                                                                                 : target_len;
        lt_lora_module *m = NULL;
        lt_status s = module_for(ad, t->name, name_len, &m, err);
        if (s != LT_OK)
            return s;
        long *slot = is_a ? &m->tensor_a : &m->tensor_b;
        if (*slot >= 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: two tensors for '%s'", path, t->name);
        *slot = (long)i;
        if (!m->target && !(m->target = lti_strndup(t->name, target_len)))
            return lti_fail_nomem(err, path);
    }
    long k = lt_source_kv_find(src, "adapter.lora.alpha");
    double alpha = 0;
    if (k >= 0 && !lt_source_kv_f64(src, (size_t)k, 0, &alpha))
        alpha = 0;
    ad->cfg.lora_alpha = alpha;
    for (size_t i = 0; i < ad->n_modules; i++) {
        lt_lora_module *m = &ad->modules[i];
        if (m->tensor_a < 0 || m->tensor_b < 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: '%s' lacks its %s", path, m->name, m->tensor_a < 0 ? "lora_a" : "lora_b");
        const lt_tensor_info *a = lt_source_tensor(src, (size_t)m->tensor_a);
        const lt_tensor_info *b = lt_source_tensor(src, (size_t)m->tensor_b);
        bool embedding = strncmp(m->name, "token_embd", 10) == 0;
        if (!embedding && (a->n_dims != 2 || b->n_dims != 2 || b->shape[1] != a->shape[0] || a->shape[0] == 0 ||
                           a->shape[0] > 0xFFFFFFFFu))
            return lti_fail(err, LT_ERR_INVALID, "%s: '%s': lora_b does not fit lora_a", path, m->name);
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
            m->kind = LT_MODULE_LINEAR;
            m->rank = (uint32_t)a->shape[0];
            m->in_features = a->shape[1];
            m->out_features = b->shape[0];
        }
        m->alpha = alpha;
        /* llama.cpp: alpha / r, or 1 when alpha is 0 or absent */
        m->scale = alpha > 0 ? alpha / (double)m->rank : 1.0;
        m->n_params = a->n_elems + b->n_elems;
        ad->lora_params += m->n_params;
        if (m->rank > ad->cfg.r)
            ad->cfg.r = m->rank;
    }
    return ad->n_modules ? LT_OK : lti_fail(err, LT_ERR_INVALID, "%s: no lora_a/lora_b tensors", path);
}

static lt_adapter *open_gguf_adapter(const char *path, lt_source *src, lt_error *err)
{
    lt_adapter *ad = calloc(1, sizeof *ad);
    if (!ad || !(ad->dir = lti_strdup(path)) || !(ad->config_path = lti_strdup(path)) ||
        !(ad->owned_strings[0] = lti_strdup("LORA"))) {
        lt_adapter_close(ad);
        lt_source_close(src);
        lti_fail_nomem(err, path);
        return NULL;
    }
    ad->weights = src;
    ad->cfg.peft_type = ad->owned_strings[0];
    ad->cfg.bias = "none";
    lt_status s = gguf_kv_is(src, "general.type", "adapter") && gguf_kv_is(src, "adapter.type", "lora")
                      ? gguf_modules(ad, err)
                      : lti_fail(err, LT_ERR_INVALID, "%s: a GGUF file that is not a LoRA adapter "
                                "(general.type / adapter.type)", path);
    if (s != LT_OK) {
        lt_adapter_close(ad);
        return NULL;
    }
    return ad;
}

lt_adapter *lt_adapter_open(const char *dir, lt_error *err)
{
    if (!lti_is_dir(dir)) {
        lt_source *src = lt_source_open(dir, err); /* else err says why (missing, a FIFO) */
        if (src && strcmp(lt_source_format(src), "gguf") == 0)
            return open_gguf_adapter(dir, src, err);
        lt_source_close(src);
        if (lti_is_file(dir))
            refuse_single_file(dir, err);
        return NULL;
    }
    lt_adapter *ad = calloc(1, sizeof *ad);
    if (!ad || !(ad->dir = lti_strdup(dir)) || !(ad->config_path = lti_path_join(dir, CONFIG_NAME))) {
        lt_adapter_close(ad);
        lti_fail_nomem(err, dir);
        return NULL;
    }
    char *text = NULL;
    lt_status s = access(ad->config_path, F_OK) != 0 && errno == ENOENT
                      ? lti_fail(err, LT_ERR_INVALID, "%s: not an adapter directory (no %s)", dir, CONFIG_NAME)
                      : lti_read_small_file(ad->config_path, CONFIG_MAX_BYTES, &text, NULL, err);
    if (s == LT_OK)
        s = parse_config(ad, text, err);
    free(text);
    if (s != LT_OK) {
        lt_adapter_close(ad);
        return NULL;
    }
    char *weights = find_weights(dir, err);
    if (!weights || !(ad->weights = lt_source_open(weights, err))) {
        free(weights);
        lt_adapter_close(ad);
        return NULL;
    }
    free(weights);
    ad->weights->format = "peft";
    for (size_t i = 0; i < lt_source_tensor_count(ad->weights) && s == LT_OK; i++)
        s = classify_key(ad, (long)i, err);
    for (size_t i = 0; i < ad->n_modules && s == LT_OK; i++)
        s = check_module(ad, &ad->modules[i], err);
    for (size_t i = 0; i < ad->n_replacements && s == LT_OK; i++)
        if (ad->replacements[i].kind == LT_REPLACE_TOKEN_ROWS)
            s = attach_token_ids(ad, &ad->replacements[i], err);
    if (s == LT_OK && ad->n_modules == 0 && ad->n_replacements == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: adapter has no tensors", lt_source_path(ad->weights));
    if (s != LT_OK) {
        lt_adapter_close(ad);
        return NULL;
    }
    return ad;
}

const lt_peft_config *lt_adapter_config(const lt_adapter *ad) { return &ad->cfg; }
lt_source *lt_adapter_source(const lt_adapter *ad) { return ad->weights; }
size_t lt_adapter_module_count(const lt_adapter *ad) { return ad->n_modules; }
const lt_lora_module *lt_adapter_module(const lt_adapter *ad, size_t i) { return &ad->modules[i]; }
size_t lt_adapter_replacement_count(const lt_adapter *ad) { return ad->n_replacements; }
const lt_replacement *lt_adapter_replacement(const lt_adapter *ad, size_t i) { return &ad->replacements[i]; }
uint64_t lt_adapter_lora_params(const lt_adapter *ad) { return ad->lora_params; }
uint64_t lt_adapter_replacement_params(const lt_adapter *ad) { return ad->replacement_params; }
size_t lt_adapter_warning_count(const lt_adapter *ad) { return ad->warnings.count; }
const char *lt_adapter_warning(const lt_adapter *ad, size_t i) { return ad->warnings.items[i]; }

/* ---- as a tensor source: lt_source_open on an adapter directory ---- */

static int peft_bid(const lti_probe *probe)
{
    if (!probe->is_dir)
        return 0;
    char *config = lti_path_join(probe->path, CONFIG_NAME);
    int bid = config && lti_is_file(config) ? 100 : 0;
    free(config);
    return bid;
}

static lt_source *peft_open(const char *path, lt_error *err)
{
    char *weights = find_weights(path, err);
    if (!weights)
        return NULL;
    lt_source *src = lt_source_open(weights, err);
    free(weights);
    if (src)
        src->format = "peft";
    return src;
}

const lti_format lti_format_peft = {
    .name = "peft",
    .bid = peft_bid,
    .open = peft_open,
    .create = NULL,
};
