/* target.c - where a LoRA module or replacement tensor lands in a base
 * model: name resolution across prefix conventions, and shape fit. */
#include <string.h>

#include "source_sink.h"

long lt_base_find(const lt_source *base, const char *target)
{
    long index = lt_source_find(base, target);
    if (index >= 0)
        return index;
    /* drop leading components: adapter names carry the task wrapper
     * ("model.", "transformer.") that a bare base lacks */
    for (const char *dot = strchr(target, '.'); dot; dot = strchr(dot + 1, '.')) {
        index = lt_source_find(base, dot + 1);
        if (index >= 0)
            return index;
    }
    /* the base carries a wrapper prefix the adapter lacks: accept only a
     * unique suffix match so a short name cannot land on the wrong layer */
    size_t target_len = strlen(target);
    long found = -1;
    for (size_t i = 0; i < lt_source_tensor_count(base); i++) {
        const char *name = lt_source_tensor(base, i)->name;
        size_t len = strlen(name);
        if (len > target_len && name[len - target_len - 1] == '.' &&
            strcmp(name + len - target_len, target) == 0) {
            if (found >= 0)
                return -1;
            found = (long)i;
        }
    }
    return found;
}

lt_fit lt_module_fit(const lt_lora_module *m, const lt_tensor_info *base)
{
    switch (m->kind) {
    case LT_MODULE_EMBEDDING:
        return base->n_dims == 2 && base->shape[0] == m->out_features &&
                       base->shape[1] == m->in_features
                   ? LT_FIT_DIRECT
                   : LT_FIT_NONE;
    case LT_MODULE_CONV: {
        if (base->n_dims < 3 || base->shape[0] != m->out_features)
            return LT_FIT_NONE;
        uint64_t in = 1;
        for (uint32_t d = 1; d < base->n_dims; d++)
            if (!lti_mul_u64(in, base->shape[d], &in))
                return LT_FIT_NONE;
        return in == m->in_features ? LT_FIT_DIRECT : LT_FIT_NONE;
    }
    case LT_MODULE_LINEAR:
        break;
    }
    if (base->n_dims != 2)
        return LT_FIT_NONE;
    bool direct = base->shape[0] == m->out_features && base->shape[1] == m->in_features;
    bool transposed = base->shape[0] == m->in_features && base->shape[1] == m->out_features;
    if (direct && transposed)
        return m->fan_in_fan_out ? LT_FIT_TRANSPOSED : LT_FIT_DIRECT;
    if (direct)
        return LT_FIT_DIRECT;
    return transposed ? LT_FIT_TRANSPOSED : LT_FIT_NONE;
}
