/* adapter.c - the LoRA model (lt_adapter): modules whose factors are
 * tensors of a source, replacement tensors, the config they were read
 * with, and warnings.  Format-neutral: formats/ fill it (lib/adapter.h),
 * operations compute new ones, and writers in formats/ save it. */
#include <stdlib.h>
#include <string.h>

#include "adapter.h"

struct lt_adapter {
    char *path;
    char *config_path;
    char *gguf_arch;              /* names are GGUF tensor names, or NULL    */
    lt_peft_config cfg;
    lt_source *weights;
    lt_lora_module *modules;
    size_t n_modules, cap_modules;
    lti_strmap module_index;      /* module name -> index                    */
    lt_replacement *replacements;
    size_t n_replacements, cap_replacements;
    char **warnings;
    size_t n_warnings, cap_warnings;
    void **kept;                  /* blocks freed with the model             */
    size_t n_kept, cap_kept;
};

lt_adapter *lti_adapter_new(const char *path, const char *config_path, lt_error *err)
{
    lt_adapter *ad = calloc(1, sizeof *ad);
    if (!ad || !(ad->path = lti_strdup(path)) || !(ad->config_path = lti_strdup(config_path ? config_path : path))) {
        lt_adapter_close(ad);
        lti_fail_nomem(err, path);
        return NULL;
    }
    return ad;
}

void lt_adapter_close(lt_adapter *ad)
{
    if (!ad)
        return;
    for (size_t i = 0; i < ad->n_modules; i++) {
        free((char *)ad->modules[i].name);
        free((char *)ad->modules[i].target);
    }
    free(ad->modules);
    lti_strmap_free(&ad->module_index);
    for (size_t i = 0; i < ad->n_replacements; i++)
        free((char *)ad->replacements[i].target);
    free(ad->replacements);
    for (size_t i = 0; i < ad->n_warnings; i++)
        free(ad->warnings[i]);
    free(ad->warnings);
    for (size_t i = 0; i < ad->n_kept; i++)
        free(ad->kept[i]);
    free(ad->kept);
    lt_source_close(ad->weights);
    free(ad->gguf_arch);
    free(ad->path);
    free(ad->config_path);
    free(ad);
}

const char *lti_adapter_path(const lt_adapter *ad) { return ad->path; }
const char *lti_adapter_config_path(const lt_adapter *ad) { return ad->config_path; }
lt_peft_config *lti_adapter_config_mut(lt_adapter *ad) { return &ad->cfg; }

void lti_adapter_set_source(lt_adapter *ad, lt_source *src)
{
    lt_source_close(ad->weights);
    ad->weights = src;
}

void *lti_adapter_keep(lt_adapter *ad, void *block)
{
    if (!lti_grow((void **)&ad->kept, &ad->cap_kept, ad->n_kept + 1, sizeof *ad->kept)) {
        free(block);
        return NULL;
    }
    ad->kept[ad->n_kept++] = block;
    return block;
}

const char *lti_adapter_keep_str(lt_adapter *ad, const char *s, size_t len)
{
    char *copy = lti_strndup(s, len);
    return copy ? lti_adapter_keep(ad, copy) : NULL;
}

lt_status lti_adapter_module(lt_adapter *ad, const char *name, size_t len, lt_lora_module **out, lt_error *err)
{
    char *copy = lti_strndup(name, len);
    if (!copy)
        return lti_fail_nomem(err, ad->path);
    long index = lti_strmap_get(&ad->module_index, copy);
    if (index >= 0) {
        free(copy);
        *out = &ad->modules[index];
        return LT_OK;
    }
    if (!lti_grow((void **)&ad->modules, &ad->cap_modules, ad->n_modules + 1, sizeof **out)) {
        free(copy);
        return lti_fail_nomem(err, ad->path);
    }
    if (lti_strmap_put(&ad->module_index, copy, (long)ad->n_modules) < 0) {
        free(copy);
        return lti_fail_nomem(err, ad->path);
    }
    lt_lora_module *m = &ad->modules[ad->n_modules++];
    memset(m, 0, sizeof *m);
    m->name = copy;
    m->tensor_a = m->tensor_b = m->tensor_e = m->tensor_magnitude = m->tensor_bias = -1;
    *out = m;
    return LT_OK;
}

lt_lora_module *lti_adapter_module_mut(lt_adapter *ad, size_t i) { return &ad->modules[i]; }

lt_status lti_adapter_set_target(lt_adapter *ad, lt_lora_module *m, const char *target, size_t len, lt_error *err)
{
    char *copy = lti_strndup(target, len);
    if (!copy)
        return lti_fail_nomem(err, ad->path);
    free((char *)m->target);
    m->target = copy;
    return LT_OK;
}

lt_status lti_adapter_add_replacement(lt_adapter *ad, const lt_replacement *r, lt_error *err)
{
    if (!lti_grow((void **)&ad->replacements, &ad->cap_replacements, ad->n_replacements + 1,
                  sizeof *ad->replacements))
        return lti_fail_nomem(err, ad->path);
    lt_replacement *copy = &ad->replacements[ad->n_replacements];
    *copy = *r;
    if (!(copy->target = lti_strdup(r->target)))
        return lti_fail_nomem(err, ad->path);
    ad->n_replacements++;
    return LT_OK;
}

lt_replacement *lti_adapter_replacement_mut(lt_adapter *ad, size_t i) { return &ad->replacements[i]; }

lt_status lti_adapter_warn(lt_adapter *ad, const char *line, lt_error *err)
{
    char *copy = lti_strdup(line);
    if (!copy || !lti_grow((void **)&ad->warnings, &ad->cap_warnings, ad->n_warnings + 1, sizeof *ad->warnings)) {
        free(copy);
        return lti_fail_nomem(err, ad->config_path);
    }
    ad->warnings[ad->n_warnings++] = copy;
    return LT_OK;
}

lt_status lti_adapter_set_gguf_arch(lt_adapter *ad, const char *arch, lt_error *err)
{
    char *copy = NULL;
    if (arch && !(copy = lti_strdup(arch)))
        return lti_fail_nomem(err, ad->path);
    free(ad->gguf_arch);
    ad->gguf_arch = copy;
    return LT_OK;
}

/* ---- public accessors ---- */

const lt_peft_config *lt_adapter_config(const lt_adapter *ad) { return &ad->cfg; }
lt_source *lt_adapter_source(const lt_adapter *ad) { return ad->weights; }
const char *lt_adapter_gguf_arch(const lt_adapter *ad) { return ad->gguf_arch; }
size_t lt_adapter_module_count(const lt_adapter *ad) { return ad->n_modules; }
const lt_lora_module *lt_adapter_module(const lt_adapter *ad, size_t i) { return &ad->modules[i]; }
size_t lt_adapter_replacement_count(const lt_adapter *ad) { return ad->n_replacements; }
const lt_replacement *lt_adapter_replacement(const lt_adapter *ad, size_t i) { return &ad->replacements[i]; }
size_t lt_adapter_warning_count(const lt_adapter *ad) { return ad->n_warnings; }
const char *lt_adapter_warning(const lt_adapter *ad, size_t i) { return ad->warnings[i]; }

uint64_t lt_adapter_lora_params(const lt_adapter *ad)
{
    uint64_t n = 0;
    for (size_t i = 0; i < ad->n_modules; i++)
        n += ad->modules[i].n_params;
    return n;
}

uint64_t lt_adapter_replacement_params(const lt_adapter *ad)
{
    uint64_t n = 0;
    for (size_t i = 0; i < ad->n_replacements; i++)
        n += ad->replacements[i].n_params;
    return n;
}
