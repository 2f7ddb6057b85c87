/* surgery_model.c - the model resize, combine and extract return: computed
 * factors held in memory, replacement tensors carried over from the
 * inputs by reference. */
#include <stdlib.h>
#include <string.h>

#include "surgery.h"

void lti_out_modules_free(lti_out_module *mods, size_t n)
{
    for (size_t i = 0; mods && i < n; i++) {
        free(mods[i].name);
        free(mods[i].a);
        free(mods[i].b);
    }
    free(mods);
}

static lt_status add_module(lt_adapter *ad, lt_source *mem, lti_out_module *om, bool fan_in_fan_out,
                            lt_error *err)
{
    char *a_name = lti_asprintf("%s.lora_A", om->name), *b_name = lti_asprintf("%s.lora_B", om->name);
    char *target = lti_asprintf("%s.weight", om->name);
    lt_status s = a_name && b_name && target ? LT_OK : lti_fail_nomem(err, om->name);
    long ia = -1, ib = -1;
    if (s == LT_OK) {
        ia = lti_memsource_add(mem, a_name, LT_F32, 2, (uint64_t[]){om->rank, om->a_cols}, om->a, err);
        om->a = NULL;
        ib = ia >= 0 ? lti_memsource_add(mem, b_name, LT_F32, 2, (uint64_t[]){om->b_rows, om->rank}, om->b, err) : -1;
        om->b = NULL;
        if (ib < 0)
            s = err ? err->status : LT_ERR_NOMEM;
    }
    lt_lora_module *m = NULL;
    if (s == LT_OK)
        s = lti_adapter_module(ad, om->name, strlen(om->name), &m, err);
    if (s == LT_OK)
        s = lti_adapter_set_target(ad, m, target, strlen(target), err);
    if (s == LT_OK) {
        m->kind = om->embedding ? LT_MODULE_EMBEDDING : LT_MODULE_LINEAR;
        m->rank = om->rank;
        m->alpha = (double)om->rank;
        m->scale = 1.0;
        /* PEFT's view: an embedding's delta is [vocab, dim] */
        m->out_features = om->embedding ? om->a_cols : om->b_rows;
        m->in_features = om->embedding ? om->b_rows : om->a_cols;
        m->fan_in_fan_out = fan_in_fan_out;
        m->tensor_a = ia;
        m->tensor_b = ib;
        m->n_params = (uint64_t)om->rank * (om->a_cols + om->b_rows);
    }
    free(a_name);
    free(b_name);
    free(target);
    return s;
}

/* The inputs' replacement tensors and the union of their modules_to_save. */
static lt_status carry_replacements(lt_adapter *ad, lt_source *mem, const lt_adapter *const *ads, size_t n_ads,
                                    lt_error *err)
{
    size_t cap = 0;
    for (size_t k = 0; k < n_ads; k++)
        cap += lt_adapter_config(ads[k])->n_modules_to_save;
    const char **to_save = cap ? lti_adapter_keep(ad, calloc(cap, sizeof *to_save)) : NULL;
    if (cap && !to_save)
        return lti_fail_nomem(err, lti_adapter_path(ad));
    lt_peft_config *cfg = lti_adapter_config_mut(ad);
    cfg->modules_to_save = to_save;
    for (size_t k = 0; k < n_ads; k++) {
        const lt_peft_config *in = lt_adapter_config(ads[k]);
        for (size_t j = 0; j < in->n_modules_to_save; j++) {
            bool seen = false;
            for (size_t i = 0; i < cfg->n_modules_to_save && !seen; i++)
                seen = strcmp(to_save[i], in->modules_to_save[j]) == 0;
            if (!seen && !(to_save[cfg->n_modules_to_save++] =
                               lti_adapter_keep_str(ad, in->modules_to_save[j], strlen(in->modules_to_save[j]))))
                return lti_fail_nomem(err, lti_adapter_path(ad));
        }
        lt_source *src = lt_adapter_source(ads[k]);
        for (size_t i = 0; i < lt_adapter_replacement_count(ads[k]); i++) {
            lt_replacement r = *lt_adapter_replacement(ads[k], i);
            const char *key = lt_source_tensor(src, (size_t)r.tensor)->name;
            if (lt_source_find(mem, key) >= 0)
                return lti_fail(err, LT_ERR_INVALID, "%s: replacement tensor '%s' comes from two adapters",
                                lt_source_path(src), key);
            long index = lti_memsource_add_ref(mem, key, src, (size_t)r.tensor, err);
            if (index < 0)
                return err ? err->status : LT_ERR_NOMEM;
            r.tensor = index;
            r.key = lt_source_tensor(mem, (size_t)index)->name;
            lt_status s = lti_adapter_add_replacement(ad, &r, err);
            if (s != LT_OK)
                return s;
        }
    }
    return LT_OK;
}

static const char *keep(lt_adapter *ad, const char *s)
{
    return s ? lti_adapter_keep_str(ad, s, strlen(s)) : NULL;
}

lt_status lti_surgery_model(const char *label, lti_out_module *mods, size_t n, const lt_adapter *const *ads,
                            size_t n_ads, lt_adapter **out, lt_error *err)
{
    *out = NULL;
    lt_adapter *ad = lti_adapter_new(label, NULL, err);
    lt_source *mem = ad ? lti_memsource_new(label, err) : NULL;
    if (!mem) {
        lt_adapter_close(ad);
        return err ? err->status : LT_ERR_NOMEM;
    }
    lti_adapter_set_source(ad, mem);
    lt_peft_config *cfg = lti_adapter_config_mut(ad);
    cfg->peft_type = "LORA";
    cfg->bias = "none";
    lt_status s = LT_OK;
    if (n_ads > 0) {
        const lt_peft_config *first = lt_adapter_config(ads[0]);
        cfg->fan_in_fan_out = first->fan_in_fan_out;
        if ((first->base_model && !(cfg->base_model = keep(ad, first->base_model))) ||
            (first->task_type && !(cfg->task_type = keep(ad, first->task_type))))
            s = lti_fail_nomem(err, label);
        bool gguf = true;
        for (size_t k = 0; k < n_ads; k++)
            gguf = gguf && lt_adapter_gguf_arch(ads[k]) && lt_adapter_gguf_arch(ads[k])[0];
        if (s == LT_OK && gguf)
            s = lti_adapter_set_gguf_arch(ad, lt_adapter_gguf_arch(ads[0]), err);
    }
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        s = add_module(ad, mem, &mods[i], cfg->fan_in_fan_out, err);
        if (s == LT_OK && mods[i].rank > cfg->r)
            cfg->r = mods[i].rank;
    }
    cfg->lora_alpha = cfg->r;
    if (s == LT_OK)
        s = carry_replacements(ad, mem, ads, n_ads, err);
    if (s != LT_OK) {
        lt_adapter_close(ad);
        return s;
    }
    *out = ad;
    return LT_OK;
}
