/* describe.c - one description of a file or adapter, built once as JSON
 * and rendered either as JSON (--json) or as text, so the two never drift.
 * inspect and audit both use it. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static cJSON *shape_json(uint32_t n_dims, const uint64_t *shape)
{
    cJSON *arr = cJSON_CreateArray();
    for (uint32_t d = 0; arr && d < n_dims; d++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)shape[d]));
    return arr;
}

static cJSON *string_array(size_t n, const char *const *items)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
    return arr;
}

static const char *kind_name(lt_module_kind kind)
{
    switch (kind) {
    case LT_MODULE_LINEAR: return "linear";
    case LT_MODULE_EMBEDDING: return "embedding";
    case LT_MODULE_CONV: return "conv";
    }
    return "?";
}

/* format, tensors, parameters, bytes, dtypes, metadata (+ tensor_list) */
static void describe_source(cJSON *out, const char *path, const lt_source *src, bool with_tensors)
{
    uint64_t params = 0, bytes = 0;
    size_t count_by_dtype[LT_DTYPE_COUNT] = {0};
    size_t n = lt_source_tensor_count(src);
    lt_quant_info q, first_q;
    size_t n_quant = 0;
    for (size_t i = 0; i < n; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        bool quant = lt_source_tensor_quant(src, i, &q);
        if (quant && n_quant++ == 0)
            first_q = q;
        params += t->n_elems; /* a quantized weight counts its logical elements */
        bytes += quant ? q.packed_bytes : t->n_bytes;
        count_by_dtype[t->dtype]++;
    }
    cJSON_AddStringToObject(out, "path", path);
    cJSON_AddStringToObject(out, "format", lt_source_format(src));
    cJSON_AddNumberToObject(out, "tensors", (double)n);
    cJSON_AddNumberToObject(out, "parameters", (double)params);
    cJSON_AddNumberToObject(out, "bytes", (double)bytes);
    cJSON *dtypes = cJSON_AddObjectToObject(out, "dtypes");
    for (int t = 0; t < LT_DTYPE_COUNT; t++)
        if (count_by_dtype[t])
            cJSON_AddNumberToObject(dtypes, lt_dtype_name((lt_dtype)t), (double)count_by_dtype[t]);
    if (n_quant) {
        cJSON *qj = cJSON_AddObjectToObject(out, "quantization");
        cJSON_AddStringToObject(qj, "method", first_q.method);
        cJSON_AddStringToObject(qj, "type", first_q.type);
        cJSON_AddNumberToObject(qj, "blocksize", first_q.blocksize);
        cJSON_AddBoolToObject(qj, "double_quant", first_q.double_quant);
        if (first_q.double_quant)
            cJSON_AddNumberToObject(qj, "nested_blocksize", first_q.nested_blocksize);
        cJSON_AddStringToObject(qj, "compute_dtype", lt_dtype_name(first_q.compute_dtype));
        cJSON_AddNumberToObject(qj, "quantized_tensors", (double)n_quant);
    }
    cJSON *meta = cJSON_AddObjectToObject(out, "metadata");
    for (size_t i = 0; i < lt_source_meta_count(src); i++)
        cJSON_AddStringToObject(meta, lt_source_meta_key(src, i), lt_source_meta_value(src, i));
    if (lt_source_file_count(src) > 1) {
        cJSON *files = cJSON_AddArrayToObject(out, "files");
        for (size_t k = 0; k < lt_source_file_count(src); k++)
            cJSON_AddItemToArray(files, cJSON_CreateString(lt_source_file_path(src, k)));
    }
    if (!with_tensors)
        return;
    cJSON *list = cJSON_AddArrayToObject(out, "tensor_list");
    for (size_t i = 0; i < n; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        cJSON *item = cJSON_CreateObject();
        bool quant = lt_source_tensor_quant(src, i, &q);
        cJSON_AddStringToObject(item, "name", t->name);
        cJSON_AddStringToObject(item, "dtype", quant ? q.storage : lt_dtype_name(t->dtype));
        cJSON_AddItemToObject(item, "shape", shape_json(t->n_dims, t->shape));
        cJSON_AddNumberToObject(item, "offset", (double)t->offset);
        cJSON_AddNumberToObject(item, "bytes", (double)(quant ? q.packed_bytes : t->n_bytes));
        if (quant) {
            /* the logical tensor reads as compute_dtype; its storage is these parts */
            cJSON_AddStringToObject(item, "compute_dtype", lt_dtype_name(q.compute_dtype));
            cJSON *parts = cJSON_AddArrayToObject(item, "parts");
            for (size_t k = 0; k < q.n_parts; k++) {
                cJSON *part = cJSON_CreateObject();
                cJSON_AddStringToObject(part, "name", q.parts[k].name);
                cJSON_AddNumberToObject(part, "offset", (double)q.parts[k].offset);
                cJSON_AddNumberToObject(part, "bytes", (double)q.parts[k].n_bytes);
                if (lt_source_file_count(src) > 1)
                    cJSON_AddNumberToObject(part, "file", (double)q.parts[k].file_index);
                cJSON_AddItemToArray(parts, part);
            }
        }
        if (lt_source_file_count(src) > 1)
            cJSON_AddNumberToObject(item, "file", (double)t->file_index);
        cJSON_AddItemToArray(list, item);
    }
}

static void describe_adapter(cJSON *out, const lt_adapter *ad)
{
    const lt_peft_config *cfg = lt_adapter_config(ad);
    const lt_source *src = lt_adapter_source(ad);
    cJSON *a = cJSON_AddObjectToObject(out, "adapter");
    cJSON_AddStringToObject(a, "peft_type", cfg->peft_type);
    if (cfg->base_model)
        cJSON_AddStringToObject(a, "base_model", cfg->base_model);
    else
        cJSON_AddNullToObject(a, "base_model");
    if (cfg->task_type)
        cJSON_AddStringToObject(a, "task_type", cfg->task_type);
    if (cfg->peft_version)
        cJSON_AddStringToObject(a, "peft_version", cfg->peft_version);
    uint32_t max_rank = 0;
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++)
        if (lt_adapter_module(ad, i)->rank > max_rank)
            max_rank = lt_adapter_module(ad, i)->rank;
    cJSON_AddNumberToObject(a, "rank", max_rank);
    cJSON_AddNumberToObject(a, "alpha", cfg->lora_alpha);
    cJSON_AddBoolToObject(a, "use_rslora", cfg->use_rslora);
    cJSON_AddBoolToObject(a, "use_dora", cfg->use_dora);
    cJSON_AddBoolToObject(a, "fan_in_fan_out", cfg->fan_in_fan_out);
    cJSON_AddBoolToObject(a, "rank_pattern", cfg->has_rank_pattern);
    cJSON_AddBoolToObject(a, "alpha_pattern", cfg->has_alpha_pattern);
    cJSON_AddStringToObject(a, "bias", cfg->bias);
    if (cfg->target_regex)
        cJSON_AddStringToObject(a, "target_modules", cfg->target_regex);
    else
        cJSON_AddItemToObject(a, "target_modules", string_array(cfg->n_target_modules, cfg->target_modules));
    cJSON_AddItemToObject(a, "modules_to_save", string_array(cfg->n_modules_to_save, cfg->modules_to_save));
    cJSON_AddNumberToObject(a, "modules", (double)lt_adapter_module_count(ad));
    uint64_t lora = lt_adapter_lora_params(ad), replaced = lt_adapter_replacement_params(ad);
    cJSON_AddNumberToObject(a, "lora_parameters", (double)lora);
    cJSON_AddNumberToObject(a, "replacement_parameters", (double)replaced);
    cJSON_AddNumberToObject(a, "trainable_parameters", (double)(lora + replaced));
    cJSON *modules = cJSON_AddArrayToObject(a, "module_list");
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", m->name);
        cJSON_AddStringToObject(item, "target", m->target);
        cJSON_AddStringToObject(item, "kind", kind_name(m->kind));
        cJSON_AddNumberToObject(item, "rank", m->rank);
        cJSON_AddNumberToObject(item, "alpha", m->alpha);
        cJSON_AddNumberToObject(item, "scale", m->scale);
        uint64_t shape[2] = {m->out_features, m->in_features};
        cJSON_AddItemToObject(item, "shape", shape_json(2, shape));
        cJSON_AddNumberToObject(item, "parameters", (double)m->n_params);
        if (m->tensor_magnitude >= 0)
            cJSON_AddBoolToObject(item, "dora", true);
        if (m->tensor_bias >= 0)
            cJSON_AddBoolToObject(item, "lora_bias", true);
        if (m->conv_groups > 1)
            cJSON_AddNumberToObject(item, "conv_groups", m->conv_groups);
        cJSON_AddItemToArray(modules, item);
    }
    cJSON *repl = cJSON_AddArrayToObject(a, "replacement_list");
    for (size_t i = 0; i < lt_adapter_replacement_count(ad); i++) {
        const lt_replacement *r = lt_adapter_replacement(ad, i);
        const lt_tensor_info *t = lt_source_tensor(src, (size_t)r->tensor);
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "name", r->key);
        cJSON_AddStringToObject(item, "target", r->target);
        cJSON_AddStringToObject(item, "kind", r->kind == LT_REPLACE_FULL ? "full" : "token_rows");
        cJSON_AddItemToObject(item, "shape", shape_json(t->n_dims, t->shape));
        cJSON_AddNumberToObject(item, "parameters", (double)r->n_params);
        cJSON_AddItemToArray(repl, item);
    }
    cJSON_AddItemToObject(a, "unknown_config_keys", string_array(cfg->n_unknown_keys, cfg->unknown_keys));
}

static bool is_gguf_adapter(const lt_source *src)
{
    long k = lt_source_kv_find(src, "general.type");
    const char *type = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    return type && strcmp(type, "adapter") == 0;
}

/* One GGUF value as JSON: numbers, bools and strings as themselves; an
 * array of up to 16 elements as an array, a longer one as its type and
 * length. */
static cJSON *gguf_value_json(const lt_source *src, size_t i)
{
    int type = lt_source_kv_type(src, i);
    uint64_t n = lt_source_kv_len(src, i);
    if (type == LT_GGUF_ARRAY && n > 16) {
        cJSON *summary = cJSON_CreateObject();
        cJSON_AddStringToObject(summary, "type", lt_gguf_type_name(lt_source_kv_elem_type(src, i)));
        cJSON_AddNumberToObject(summary, "length", (double)n);
        return summary;
    }
    int elem = type == LT_GGUF_ARRAY ? lt_source_kv_elem_type(src, i) : type;
    cJSON *arr = type == LT_GGUF_ARRAY ? cJSON_CreateArray() : NULL;
    for (uint64_t j = 0; j < (type == LT_GGUF_ARRAY ? n : 1); j++) {
        cJSON *item;
        double d;
        bool b;
        const char *str;
        if (elem == LT_GGUF_STRING && (str = lt_source_kv_str(src, i, j, NULL)))
            item = cJSON_CreateString(str);
        else if (elem == LT_GGUF_BOOL && lt_source_kv_bool(src, i, j, &b))
            item = cJSON_CreateBool(b);
        else if (lt_source_kv_f64(src, i, j, &d))
            item = cJSON_CreateNumber(d);
        else
            item = cJSON_CreateNull();
        if (!arr)
            return item;
        cJSON_AddItemToArray(arr, item);
    }
    return arr;
}

static void describe_gguf(cJSON *out, const lt_source *src)
{
    cJSON *g = cJSON_AddObjectToObject(out, "gguf");
    cJSON_AddNumberToObject(g, "version", lt_source_gguf_version(src));
    cJSON_AddNumberToObject(g, "alignment", (double)lt_source_gguf_alignment(src));
    long k = lt_source_kv_find(src, "general.architecture");
    const char *arch = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    k = lt_source_kv_find(src, "general.type");
    const char *type = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    if (arch)
        cJSON_AddStringToObject(g, "architecture", arch);
    else
        cJSON_AddNullToObject(g, "architecture");
    cJSON_AddStringToObject(g, "type", type ? type : "model");
    cJSON *kv = cJSON_AddObjectToObject(g, "kv");
    for (size_t i = 0; i < lt_source_kv_count(src); i++)
        cJSON_AddItemToObject(kv, lt_source_kv_key(src, i), gguf_value_json(src, i));
}

cJSON *cli_describe(const char *path, const cli_describe_opts *opts, lt_adapter **adapter_out,
                    lt_source **base_out, lt_error *err)
{
    /* an adapter directory is opened as an adapter first, so a non-LoRA
     * config is refused by its type before its weights are looked at */
    lt_adapter *ad = NULL;
    lt_source *src = NULL, *base = NULL;
    char config[4096];
    bool is_adapter = (size_t)snprintf(config, sizeof config, "%s/adapter_config.json", path) <
                          sizeof config &&
                      access(config, F_OK) == 0;
    if (opts->base_path && !(base = lt_source_open(opts->base_path, err)))
        return NULL;
    lt_adapter_open_options adapter_opts = {0};
    if (opts->adapter_opts)
        adapter_opts = *opts->adapter_opts;
    adapter_opts.base = base;
    adapter_opts.describe_only = true;
    if (is_adapter) {
        ad = lt_adapter_open_with(path, &adapter_opts, err);
    } else if ((src = lt_source_open(path, err)) && (is_gguf_adapter(src) || cli_source_is_loralib(src))) {
        ad = lt_adapter_open_with(path, &adapter_opts, err);
        if (!ad) {
            lt_source_close(src);
            src = NULL;
        }
    }
    /* the file itself (a model's own source may hold computed tensors) */
    if (ad && !src)
        src = lt_source_open(path, err);
    if (!src) {
        lt_adapter_close(ad);
        lt_source_close(base);
        return NULL;
    }
    cJSON *out = cJSON_CreateObject();
    describe_source(out, path, src, opts->with_tensors);
    if (strcmp(lt_source_format(src), "gguf") == 0)
        describe_gguf(out, src);
    if (ad)
        describe_adapter(out, ad);
    if (base) {
        uint64_t base_params = 0;
        for (size_t i = 0; i < lt_source_tensor_count(base); i++)
            base_params += lt_source_tensor(base, i)->n_elems;
        cJSON *b = cJSON_AddObjectToObject(out, "base");
        cJSON_AddStringToObject(b, "path", lt_source_path(base));
        cJSON_AddStringToObject(b, "format", lt_source_format(base));
        cJSON_AddNumberToObject(b, "parameters", (double)base_params);
        if (ad) {
            /* PEFT's print_trainable_parameters: all = base + adapter */
            uint64_t trainable = lt_adapter_lora_params(ad) + lt_adapter_replacement_params(ad);
            double all = (double)base_params + (double)trainable;
            cJSON_AddNumberToObject(out, "trainable_percent", all > 0 ? 100.0 * (double)trainable / all : 0);
        }
    }
    if (adapter_out)
        *adapter_out = ad;
    else if (ad)
        lt_adapter_close(ad);
    lt_source_close(src);
    if (base_out)
        *base_out = base;
    else
        lt_source_close(base);
    return out;
}

/* ---- text rendering ---- */

static double num(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(item) ? item->valuedouble : 0;
}

/* Equal, or both NaN (unknown alpha). */
static bool same_number(double x, double y) { return x == y || (isnan(x) && isnan(y)); }

static const char *str(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static bool flag(const cJSON *obj, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static void print_shape(const cJSON *shape)
{
    const cJSON *d;
    int i = 0;
    putchar('[');
    cJSON_ArrayForEach(d, shape) printf("%s%.0f", i++ ? ", " : "", d->valuedouble);
    putchar(']');
}

/* Module name with each run of digits replaced by '*', to group layers. */
static void layer_pattern(const char *name, char *out, size_t size)
{
    size_t n = 0;
    for (const char *p = name; *p && n + 2 < size; p++) {
        if (isdigit((unsigned char)*p)) {
            out[n++] = '*';
            while (isdigit((unsigned char)p[1]))
                p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

/* Print modules grouped by (layer pattern, rank, alpha, scale, shape). */
static void print_module_groups(const cJSON *modules)
{
    size_t n = (size_t)cJSON_GetArraySize(modules);
    bool *done = calloc(n ? n : 1, sizeof *done);
    if (!done)
        return;
    char pattern_i[512], pattern_j[512];
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        const cJSON *mi = cJSON_GetArrayItem(modules, (int)i);
        layer_pattern(str(mi, "name"), pattern_i, sizeof pattern_i);
        char *shape_i = cJSON_PrintUnformatted(cJSON_GetObjectItem(mi, "shape"));
        size_t count = 0;
        for (size_t j = i; j < n; j++) {
            const cJSON *mj = cJSON_GetArrayItem(modules, (int)j);
            layer_pattern(str(mj, "name"), pattern_j, sizeof pattern_j);
            char *shape_j = cJSON_PrintUnformatted(cJSON_GetObjectItem(mj, "shape"));
            bool same = !done[j] && strcmp(pattern_i, pattern_j) == 0 &&
                        num(mi, "rank") == num(mj, "rank") && same_number(num(mi, "alpha"), num(mj, "alpha")) &&
                        same_number(num(mi, "scale"), num(mj, "scale")) && shape_i && shape_j &&
                        strcmp(shape_i, shape_j) == 0;
            cJSON_free(shape_j);
            if (same) {
                done[j] = true;
                count++;
            }
        }
        cJSON_free(shape_i);
        printf("  %3zu x %s  rank %.0f  ", count, count > 1 ? pattern_i : str(mi, "name"), num(mi, "rank"));
        if (isnan(num(mi, "alpha")))
            printf("alpha unknown  %s ", str(mi, "kind")); /* a loralib checkpoint without --alpha */
        else
            printf("alpha %g  scale %g  %s ", num(mi, "alpha"), num(mi, "scale"), str(mi, "kind"));
        print_shape(cJSON_GetObjectItem(mi, "shape"));
        printf("%s%s", flag(mi, "dora") ? " dora" : "", flag(mi, "lora_bias") ? " lora_bias" : "");
        if (cJSON_GetObjectItem(mi, "conv_groups"))
            printf(" groups %.0f", num(mi, "conv_groups"));
        printf("\n");
    }
    free(done);
}

/* Every string (and key) of value, escaped in place (cli_escape). */
static void escape_strings(cJSON *value)
{
    for (cJSON *item = value; item; item = item->next) {
        if (item->string && !(item->type & cJSON_StringIsConst)) {
            char *key = cli_escape(item->string);
            if (key) {
                cJSON_free(item->string);
                item->string = key;
            }
        }
        if (cJSON_IsString(item) && item->valuestring) {
            char *text = cli_escape(item->valuestring);
            if (text) {
                cJSON_free(item->valuestring);
                item->valuestring = text;
            }
        }
        escape_strings(item->child);
    }
}

static void print_description(const cJSON *desc);

void cli_print_description(const cJSON *desc)
{
    /* names come from files: print them escaped (the JSON output is
     * escaped by JSON itself) */
    cJSON *shown = cJSON_Duplicate(desc, true);
    if (shown)
        escape_strings(shown->child);
    print_description(shown ? shown : desc);
    cJSON_Delete(shown);
}

static void print_description(const cJSON *desc)
{
    char buf[40], buf2[40];
    printf("path:         %s\n", str(desc, "path"));
    printf("format:       %s\n", str(desc, "format"));
    printf("tensors:      %.0f (", num(desc, "tensors"));
    const cJSON *item;
    int i = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItem(desc, "dtypes"))
        printf("%s%s: %.0f", i++ ? ", " : "", item->string, item->valuedouble);
    printf(")\n");
    printf("parameters:   %s\n", cli_count((uint64_t)num(desc, "parameters"), buf, sizeof buf));
    printf("bytes:        %s\n", cli_count((uint64_t)num(desc, "bytes"), buf, sizeof buf));
    const cJSON *quant = cJSON_GetObjectItem(desc, "quantization");
    if (quant) {
        printf("quantization: %s %s", str(quant, "method"), str(quant, "type"));
        if (num(quant, "blocksize") > 0)
            printf(", blocksize %.0f", num(quant, "blocksize"));
        if (cJSON_IsTrue(cJSON_GetObjectItem(quant, "double_quant")))
            printf(", double quant (blocksize %.0f)", num(quant, "nested_blocksize"));
        printf(", compute dtype %s, %.0f quantized tensors\n", str(quant, "compute_dtype"),
               num(quant, "quantized_tensors"));
    }
    const cJSON *meta = cJSON_GetObjectItem(desc, "metadata");
    if (cJSON_GetArraySize(meta) > 0) {
        printf("metadata:\n");
        cJSON_ArrayForEach(item, meta) {
            const char *value = item->valuestring;
            size_t len = strlen(value);
            printf("  %s = %.*s%s\n", item->string, len > 60 ? 60 : (int)len, value,
                   len > 60 ? "..." : "");
        }
    }
    const cJSON *files = cJSON_GetObjectItem(desc, "files");
    if (files) {
        printf("files:        %d shards\n", cJSON_GetArraySize(files));
        cJSON_ArrayForEach(item, files) printf("  %s\n", item->valuestring);
    }
    const cJSON *a = cJSON_GetObjectItem(desc, "adapter");
    if (a) {
        printf("adapter:      %s", str(a, "peft_type"));
        if (str(a, "task_type"))
            printf(", task %s", str(a, "task_type"));
        if (str(a, "peft_version"))
            printf(", peft %s", str(a, "peft_version"));
        printf("\nbase model:   %s\n", str(a, "base_model") ? str(a, "base_model") : "(not given)");
        const cJSON *targets = cJSON_GetObjectItem(a, "target_modules");
        /* a GGUF LoRA names no target modules: no empty line for it */
        if (cJSON_IsString(targets)) {
            printf("targets:      regex %s\n", targets->valuestring);
        } else if (cJSON_GetArraySize(targets) > 0) {
            i = 0;
            printf("targets:      ");
            cJSON_ArrayForEach(item, targets) printf("%s%s", i++ ? ", " : "", item->valuestring);
            printf("\n");
        }
        printf("flags:       ");
        static const char *const flags[] = {"use_rslora", "use_dora", "fan_in_fan_out",
                                            "rank_pattern", "alpha_pattern"};
        int shown = 0;
        for (size_t f = 0; f < sizeof flags / sizeof *flags; f++)
            if (flag(a, flags[f]))
                printf(" %s", flags[f]), shown++;
        if (strcmp(str(a, "bias"), "none") != 0)
            printf(" bias=%s", str(a, "bias")), shown++;
        printf("%s\n", shown ? "" : " none");
        printf("modules:      %.0f LoRA modules, %s parameters, max rank %.0f, ", num(a, "modules"),
               cli_count((uint64_t)num(a, "lora_parameters"), buf, sizeof buf), num(a, "rank"));
        if (isnan(num(a, "alpha")))
            printf("alpha unknown\n");
        else
            printf("lora_alpha %g\n", num(a, "alpha"));
        print_module_groups(cJSON_GetObjectItem(a, "module_list"));
        const cJSON *repl = cJSON_GetObjectItem(a, "replacement_list");
        if (cJSON_GetArraySize(repl) > 0) {
            printf("replacements: %d tensors, %s parameters\n", cJSON_GetArraySize(repl),
                   cli_count((uint64_t)num(a, "replacement_parameters"), buf, sizeof buf));
            cJSON_ArrayForEach(item, repl) {
                printf("  %s (%s) ", str(item, "target"), str(item, "kind"));
                print_shape(cJSON_GetObjectItem(item, "shape"));
                putchar('\n');
            }
        }
        printf("trainable:    %s parameters\n",
               cli_count((uint64_t)num(a, "trainable_parameters"), buf, sizeof buf));
        const cJSON *unknown = cJSON_GetObjectItem(a, "unknown_config_keys");
        if (cJSON_GetArraySize(unknown) > 0) {
            printf("unknown config keys:");
            cJSON_ArrayForEach(item, unknown) printf(" %s", item->valuestring);
            putchar('\n');
        }
    }
    const cJSON *b = cJSON_GetObjectItem(desc, "base");
    if (b) {
        printf("base:         %s (%s), %s parameters\n", str(b, "path"), str(b, "format"),
               cli_count((uint64_t)num(b, "parameters"), buf2, sizeof buf2));
        if (cJSON_GetObjectItem(desc, "trainable_percent"))
            printf("trainable%%:   %.4f%% of base + adapter\n", num(desc, "trainable_percent"));
    }
    const cJSON *list = cJSON_GetObjectItem(desc, "tensor_list");
    if (list) {
        printf("tensor list:\n");
        cJSON_ArrayForEach(item, list) {
            printf("  %-60s %-5s ", str(item, "name"), str(item, "dtype"));
            print_shape(cJSON_GetObjectItem(item, "shape"));
            printf(" @%.0f +%.0f\n", num(item, "offset"), num(item, "bytes"));
        }
    }
}
