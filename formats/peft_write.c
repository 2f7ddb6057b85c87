/* peft_write.c - any LoRA model saved as a PEFT LoRA adapter directory
 * (adapter_config.json + adapter_model.safetensors). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format.h"

/* One module as it is saved: factors in PEFT layout as f32. */
typedef struct save_module {
    const char *name;
    uint32_t rank;
    double alpha;
    bool embedding;              /* saved as lora_embedding_A/B          */
    uint32_t n_dims;             /* 2, or a conv's 3 to 5 (both factors) */
    uint64_t a_shape[LT_MAX_DIMS], b_shape[LT_MAX_DIMS];
    uint64_t a_elems, b_elems;
    float *a, *b;
} save_module;

typedef struct save_spec {
    const lt_adapter *model;
    lt_dtype dtype;
    save_module *modules;
    size_t n_modules;
} save_spec;

static double rank_of(const save_module *m) { return m->rank; }
static double alpha_of(const save_module *m) { return m->alpha; }

/* The value of a field that occurs most often (the first among ties), so the
 * config's r / lora_alpha cover most modules and the patterns stay short. */
static double most_common(const save_spec *spec, double (*field)(const save_module *),
                          double fallback)
{
    double best = fallback;
    size_t best_count = 0;
    for (size_t i = 0; i < spec->n_modules; i++) {
        size_t count = 0;
        for (size_t j = 0; j < spec->n_modules; j++)
            count += field(&spec->modules[j]) == field(&spec->modules[i]);
        if (count > best_count)
            best = field(&spec->modules[i]), best_count = count;
    }
    return best;
}

/* A module name as a regex matching itself ('.' and other specials escaped). */
static char *regex_escape(const char *name)
{
    char *out = malloc(strlen(name) * 2 + 1), *p = out;
    if (!out)
        return NULL;
    for (; *name; name++) {
        if (strchr(".^$*+?()[]{}|\\", *name))
            *p++ = '\\';
        *p++ = *name;
    }
    *p = '\0';
    return out;
}

static lt_status write_config(const char *dir, const save_spec *spec, lt_error *err)
{
    uint32_t r = (uint32_t)most_common(spec, rank_of, 8);
    double alpha = most_common(spec, alpha_of, 8);
    cJSON *root = cJSON_CreateObject();
    cJSON *targets = cJSON_CreateArray(), *ranks = cJSON_CreateObject(), *alphas = cJSON_CreateObject();
    bool ok = root && targets && ranks && alphas;
    for (size_t i = 0; ok && i < spec->n_modules; i++) {
        const save_module *m = &spec->modules[i];
        const char *last = strrchr(m->name, '.');
        last = last ? last + 1 : m->name;
        bool seen = false;
        const cJSON *item;
        cJSON_ArrayForEach(item, targets) seen = seen || strcmp(item->valuestring, last) == 0;
        if (!seen)
            cJSON_AddItemToArray(targets, cJSON_CreateString(last));
        if (m->rank == r && m->alpha == alpha)
            continue;
        char *key = regex_escape(m->name);
        ok = key != NULL;
        if (ok && m->rank != r)
            cJSON_AddNumberToObject(ranks, key, m->rank);
        if (ok && m->alpha != alpha)
            cJSON_AddNumberToObject(alphas, key, m->alpha);
        free(key);
    }
    if (!ok) {
        cJSON_Delete(root);
        cJSON_Delete(targets);
        cJSON_Delete(ranks);
        cJSON_Delete(alphas);
        return lti_fail_nomem(err, dir);
    }
    const lt_peft_config *cfg = lt_adapter_config(spec->model);
    cJSON_AddStringToObject(root, "peft_type", "LORA");
    if (cfg->task_type)
        cJSON_AddStringToObject(root, "task_type", cfg->task_type);
    else
        cJSON_AddNullToObject(root, "task_type");
    if (cfg->base_model)
        cJSON_AddStringToObject(root, "base_model_name_or_path", cfg->base_model);
    else
        cJSON_AddNullToObject(root, "base_model_name_or_path");
    cJSON_AddNumberToObject(root, "r", r);
    cJSON_AddNumberToObject(root, "lora_alpha", alpha);
    cJSON_AddItemToObject(root, "target_modules", targets);
    cJSON_AddItemToObject(root, "rank_pattern", ranks);
    cJSON_AddItemToObject(root, "alpha_pattern", alphas);
    cJSON_AddBoolToObject(root, "use_rslora", cfg->use_rslora);
    cJSON_AddBoolToObject(root, "use_dora", false);
    cJSON_AddBoolToObject(root, "fan_in_fan_out", cfg->fan_in_fan_out);
    cJSON_AddStringToObject(root, "bias", "none");
    cJSON_AddNumberToObject(root, "lora_dropout", 0);
    cJSON_AddBoolToObject(root, "inference_mode", true);
    cJSON *to_save = cJSON_CreateArray();
    for (size_t k = 0; to_save && k < cfg->n_modules_to_save; k++) {
        bool seen = false;
        const cJSON *item;
        cJSON_ArrayForEach(item, to_save) seen = seen || strcmp(item->valuestring, cfg->modules_to_save[k]) == 0;
        if (!seen)
            cJSON_AddItemToArray(to_save, cJSON_CreateString(cfg->modules_to_save[k]));
    }
    if (cJSON_GetArraySize(to_save) > 0)
        cJSON_AddItemToObject(root, "modules_to_save", to_save);
    else {
        cJSON_Delete(to_save);
        cJSON_AddNullToObject(root, "modules_to_save");
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char *path = lti_path_join(dir, "adapter_config.json");
    lt_status s = text && path ? lti_write_file_atomic(path, text, strlen(text), err) : lti_fail_nomem(err, dir);
    cJSON_free(text);
    free(path);
    return s;
}

static lt_status write_weights(const char *dir, const save_spec *spec, lt_error *err)
{
    char *path = lti_path_join(dir, "adapter_model.safetensors");
    if (!path)
        return lti_fail_nomem(err, dir);
    lt_sink *sink = lt_sink_create("safetensors", path, NULL, err);
    free(path);
    if (!sink)
        return err ? err->status : LT_ERR_IO;
    lt_status s = lt_sink_set_meta(sink, "format", "pt", err);
    for (size_t i = 0; i < spec->n_modules && s == LT_OK; i++) {
        const save_module *m = &spec->modules[i];
        const uint64_t *a_shape = m->a_shape, *b_shape = m->b_shape;
        char *a_name = m->embedding ? lti_asprintf("base_model.model.%s.lora_embedding_A", m->name)
                                    : lti_asprintf("base_model.model.%s.lora_A.weight", m->name);
        char *b_name = m->embedding ? lti_asprintf("base_model.model.%s.lora_embedding_B", m->name)
                                    : lti_asprintf("base_model.model.%s.lora_B.weight", m->name);
        if (!a_name || !b_name)
            s = lti_fail_nomem(err, dir);
        else if (lt_sink_add_tensor(sink, a_name, spec->dtype, m->n_dims, a_shape, err) < 0 ||
                 lt_sink_add_tensor(sink, b_name, spec->dtype, m->n_dims, b_shape, err) < 0)
            s = err ? err->status : LT_ERR_USAGE;
        free(a_name);
        free(b_name);
    }
    /* replacement tensors follow the factors, keys as saved */
    const lt_adapter *model = spec->model;
    lt_source *src = lt_adapter_source(model);
    for (size_t i = 0; i < lt_adapter_replacement_count(model) && s == LT_OK; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, (size_t)lt_adapter_replacement(model, i)->tensor);
        if (lt_sink_add_tensor(sink, t->name, t->dtype, t->n_dims, t->shape, err) < 0)
            s = lti_fail(err, LT_ERR_INVALID, "%s: replacement tensor '%s' comes from two adapters", dir, t->name);
    }
    if (s == LT_OK)
        s = lt_sink_begin(sink, err);
    long next = (long)(2 * spec->n_modules);
    for (size_t i = 0; i < lt_adapter_replacement_count(model) && s == LT_OK; i++, next++) {
        size_t index = (size_t)lt_adapter_replacement(model, i)->tensor;
        uint64_t bytes = lt_source_tensor(src, index)->n_bytes;
        void *raw = malloc((size_t)bytes + 1);
        s = raw ? lt_source_read(src, index, 0, raw, (size_t)bytes, err) : lti_fail_nomem(err, dir);
        if (s == LT_OK)
            s = lt_sink_write(sink, next, 0, raw, (size_t)bytes, err);
        free(raw);
    }
    size_t elem = lt_dtype_block_bytes(spec->dtype);
    for (size_t i = 0; i < spec->n_modules && s == LT_OK; i++) {
        const save_module *m = &spec->modules[i];
        const float *factor[2] = {m->a, m->b};
        uint64_t count[2] = {m->a_elems, m->b_elems};
        for (int f = 0; f < 2 && s == LT_OK; f++) {
            void *bytes = malloc((size_t)count[f] * elem + 1);
            if (!bytes) {
                s = lti_fail_nomem(err, dir);
                break;
            }
            lt_convert_from_f32(spec->dtype, factor[f], bytes, (size_t)count[f]);
            s = lt_sink_write(sink, (long)(2 * i + (size_t)f), 0, bytes, (size_t)count[f] * elem, err);
            free(bytes);
        }
    }
    if (s != LT_OK) {
        lt_sink_abort(sink);
        return s;
    }
    return lt_sink_commit(sink, err);
}

/* A conv module in PEFT's form: lora_A [r, in, k...], lora_B [out, r, 1...]
 * (PEFT's lora_A is the base conv's kernel with r outputs, lora_B a
 * 1x1 conv).  A grouped base conv has no such form: PEFT's lora_A then
 * takes every input channel (its delta is no weight of the base's shape). */
static lt_status check_conv(const char *path, const lt_lora_module *m, const lt_tensor_info *a,
                            const lt_tensor_info *b, lt_error *err)
{
    if (m->conv_groups > 1)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                        "%s: module '%s' is a conv layer with %u groups (loralib's grouped ConvLoRA): PEFT's conv LoRA "
                        "cannot hold its delta (use 'loratool merge')",
                        path, m->name, m->conv_groups);
    bool ok = a->n_dims >= 3 && a->n_dims <= 5 && b->n_dims == a->n_dims && a->shape[0] == m->rank &&
              b->shape[1] == m->rank && b->shape[0] == m->out_features;
    for (uint32_t d = 2; ok && d < b->n_dims; d++)
        ok = b->shape[d] == 1;
    if (!ok)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                        "%s: module '%s': conv factors are not lora_A [r, in, k...] and lora_B [out, r, 1...]", path,
                        m->name);
    return LT_OK;
}

/* What a PEFT LoRA directory cannot hold, as LT_ERR_UNSUPPORTED. */
static lt_status check_saveable(const lt_adapter *ad, const lt_lora_module *m, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    const char *what = m->tensor_e >= 0 ? "AdaLoRA's lora_E" : m->tensor_magnitude >= 0 ? "DoRA magnitudes"
                       : m->tensor_bias >= 0 ? "a lora bias" : m->a_transposed ? "a transposed lora_A" : NULL;
    if (what)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s' has %s: not saved as a plain PEFT LoRA", path,
                        m->name, what);
    const lt_tensor_info *a = lt_source_tensor(lt_adapter_source(ad), (size_t)m->tensor_a);
    const lt_tensor_info *b = lt_source_tensor(lt_adapter_source(ad), (size_t)m->tensor_b);
    if (m->kind == LT_MODULE_CONV && m->rank > 0)
        return check_conv(path, m, a, b, err);
    if (a->n_dims != 2 || b->n_dims != 2 || m->rank == 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': factors are not 2-D matrices of rank >= 1", path,
                        m->name);
    return LT_OK;
}

static lt_status read_factor(lt_source *src, long index, float **out, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(src, (size_t)index);
    *out = malloc((size_t)t->n_elems * sizeof **out + 1);
    if (!*out)
        return lti_fail_nomem(err, lt_source_path(src));
    return lt_source_read_f32(src, (size_t)index, 0, t->n_elems, *out, err);
}

lt_status lt_adapter_save_peft(const lt_adapter *ad, const char *dir, lt_dtype dtype, lt_error *err)
{
    if (dtype != LT_F32 && dtype != LT_F16 && dtype != LT_BF16)
        return lti_fail(err, LT_ERR_USAGE, "%s: adapter factors must be saved as F32, F16 or BF16", dir);
    size_t n = lt_adapter_module_count(ad);
    lt_source *src = lt_adapter_source(ad);
    save_spec spec = {.model = ad, .dtype = dtype, .modules = calloc(n + 1, sizeof(save_module))};
    lt_status s = spec.modules ? LT_OK : lti_fail_nomem(err, dir);
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        if ((s = check_saveable(ad, m, err)) != LT_OK)
            break;
        const lt_tensor_info *a = lt_source_tensor(src, (size_t)m->tensor_a);
        const lt_tensor_info *b = lt_source_tensor(src, (size_t)m->tensor_b);
        save_module *sm = &spec.modules[spec.n_modules++];
        *sm = (save_module){.name = m->name, .rank = m->rank, .alpha = m->alpha,
                            .embedding = m->kind == LT_MODULE_EMBEDDING, .n_dims = a->n_dims,
                            .a_elems = a->n_elems, .b_elems = b->n_elems};
        memcpy(sm->a_shape, a->shape, sizeof sm->a_shape);
        memcpy(sm->b_shape, b->shape, sizeof sm->b_shape);
        s = read_factor(src, m->tensor_a, &sm->a, err);
        if (s == LT_OK)
            s = read_factor(src, m->tensor_b, &sm->b, err);
    }
    lti_wdir out = {0}; /* built beside DIR, moved into place whole */
    if (s == LT_OK)
        s = lti_wdir_create(&out, dir, err);
    if (s == LT_OK)
        s = write_weights(out.tmp_path, &spec, err);
    if (s == LT_OK)
        s = write_config(out.tmp_path, &spec, err);
    s = s == LT_OK ? lti_wdir_commit(&out, true, err) : (lti_wdir_abort(&out), s);
    for (size_t i = 0; i < spec.n_modules; i++) {
        free(spec.modules[i].a);
        free(spec.modules[i].b);
    }
    free(spec.modules);
    return s;
}
