/* loralib.c - microsoft/LoRA (loralib) checkpoints: a torch.save zip or a
 * safetensors file holding a state dict whose LoRA keys end in ".lora_A" /
 * ".lora_B" (spec/loralib.md).  The file has no config: ranks come from
 * the shapes, lora_alpha, merged-layer groups and fan_in_fan_out from the
 * caller (lt_adapter_open_options), layer kinds and replacements from the
 * base model's shapes.  The result is a plain LoRA model (lib/adapter.h);
 * merged layers are expanded by formats/merged_linear.c, conv layers
 * (ConvLoRA) by formats/loralib_conv.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loralib_conv.h"
#include "merged_linear.h"

#define ENABLE_MAX 64

static bool is_lora_key(const char *key)
{
    return lti_ends_with(key, ".lora_A") || lti_ends_with(key, ".lora_B");
}

static int loralib_adapter_bid(const lti_probe *probe)
{
    if (probe->is_dir || probe->head_len < 9)
        return 0;
    bool zip = memcmp(probe->head, "PK\x03\x04", 4) == 0;
    bool safetensors = probe->head[8] == '{';
    if (!zip && !safetensors)
        return 0;
    lt_source *src = lt_source_open(probe->path, NULL);
    int bid = 0;
    for (size_t i = 0; src && i < lt_source_tensor_count(src) && !bid; i++)
        if (is_lora_key(lt_source_tensor(src, i)->name))
            bid = 90;
    lt_source_close(src);
    return bid;
}

static bool same_shape(const lt_tensor_info *x, const lt_tensor_info *y)
{
    if (x->n_dims != y->n_dims)
        return false;
    for (uint32_t d = 0; d < x->n_dims; d++)
        if (x->shape[d] != y->shape[d])
            return false;
    return true;
}

static void shape_text(const lt_tensor_info *t, char *buf, size_t cap)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

/* The base tensor "<module>.weight", or -1 with err set. */
static long find_base_weight(const char *path, const lt_source *base, const lt_lora_module *m, lt_error *err)
{
    long bi = lt_base_find(base, m->target);
    if (bi < 0)
        lti_fail(err, LT_ERR_INVALID, "%s: module '%s': the base has no tensor '%s'", path, m->name, m->target);
    return bi;
}

/* A plain layer (Linear or Embedding: A [r, x], B [y, r]): the kind from
 * how the delta lies on the base weight.  loralib gives a transposed delta
 * only for Embedding ([num_embeddings, dim] weights, no bias) and for
 * fan_in_fan_out Linear layers (GPT-2 Conv1D, which has a bias). */
static lt_status plain_layer(const char *path, const lt_source *base, lt_lora_module *m, bool fan_in_fan_out,
                             lt_error *err)
{
    m->kind = LT_MODULE_LINEAR;
    m->fan_in_fan_out = fan_in_fan_out;
    if (!base)
        return LT_OK;
    long bi = find_base_weight(path, base, m, err);
    if (bi < 0)
        return err ? err->status : LT_ERR_INVALID;
    const lt_tensor_info *w = lt_source_tensor(base, (size_t)bi);
    lt_fit fit = lt_module_fit(m, w);
    if (fit == LT_FIT_NONE) {
        char shape[96];
        shape_text(w, shape, sizeof shape);
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': delta [%llu, %llu] does not fit base '%s' %s", path,
                       m->name, (unsigned long long)m->out_features, (unsigned long long)m->in_features, w->name,
                       shape);
    }
    if (fit == LT_FIT_DIRECT)
        return LT_OK;
    if (w->shape[0] == w->shape[1])
        return LT_OK; /* square: transposed because --fan-in-fan-out says so */
    char *bias = lti_asprintf("%s.bias", m->name);
    if (!bias)
        return lti_fail_nomem(err, path);
    bool has_bias = lt_base_find(base, bias) >= 0;
    free(bias);
    if (has_bias) {
        m->fan_in_fan_out = true;
        return LT_OK;
    }
    uint64_t vocab = m->in_features;   /* A [r, num_embeddings], B [dim, r] */
    m->kind = LT_MODULE_EMBEDDING;
    m->in_features = m->out_features;
    m->out_features = vocab;
    m->fan_in_fan_out = false;
    return LT_OK;
}

/* The output rows of a merged layer's base weight [out, in] or [in, out]. */
static lt_status fused_rows(const char *path, const lt_source *base, const lt_lora_module *m, uint64_t in,
                            uint64_t *out, lt_error *err)
{
    long bi = find_base_weight(path, base, m, err);
    if (bi < 0)
        return err ? err->status : LT_ERR_INVALID;
    const lt_tensor_info *w = lt_source_tensor(base, (size_t)bi);
    if (w->n_dims == 2 && w->shape[1] == in)
        *out = w->shape[0];
    else if (w->n_dims == 2 && w->shape[0] == in)
        *out = w->shape[1];
    else
        return lti_fail(err, LT_ERR_INVALID, "%s: merged layer '%s': lora_A has %llu columns; base '%s' has no such side",
                       path, m->name, (unsigned long long)in, w->name);
    return LT_OK;
}

/* A merged layer: A [r x enabled, in], B [out / groups x enabled, r]. */
static lt_status merged_layer(lt_adapter *ad, lt_source *mem, const lt_adapter_open_options *o, lt_lora_module *m,
                              double alpha, lt_error *err)
{
    const char *path = lt_source_path(mem);
    const lt_tensor_info *a = lt_source_tensor(mem, (size_t)m->tensor_a);
    const lt_tensor_info *b = lt_source_tensor(mem, (size_t)m->tensor_b);
    uint64_t r = b->shape[1], enabled = a->shape[0] / r;
    bool all[ENABLE_MAX];
    lti_merged_groups g = {.mask = o->enable_lora, .n_groups = o->n_enable_lora, .r = (uint32_t)r, .alpha = alpha};
    if (o->enable_lora) {
        size_t on = 0;
        for (size_t i = 0; i < o->n_enable_lora; i++)
            on += o->enable_lora[i];
        if (on != enabled)
            return lti_fail(err, LT_ERR_USAGE,
                           "%s: merged layer '%s' stores %llu enabled group(s) (lora_A %llu rows of rank %llu); "
                           "--enable-lora enables %zu",
                           path, m->name, (unsigned long long)enabled, (unsigned long long)a->shape[0],
                           (unsigned long long)r, on);
    } else if (!o->base && o->describe_only) {
        /* inspect without a base: the stored factors as they are, said so */
        char line[512];
        snprintf(line, sizeof line,
                 "merged layer '%s': %llu enabled groups of rank %llu; the groups need --base or --enable-lora",
                 m->name, (unsigned long long)enabled, (unsigned long long)r);
        m->rank = (uint32_t)a->shape[0];
        m->out_features = b->shape[0];
        m->in_features = a->shape[1];
        m->scale = alpha / (double)r;
        m->alpha = alpha * (double)enabled;
        return lti_adapter_warn(ad, line, err);
    } else {
        if (!o->base)
            return lti_fail(err, LT_ERR_USAGE,
                           "%s: merged layer '%s' (%llu enabled groups): its groups need --base or --enable-lora",
                           path, m->name, (unsigned long long)enabled);
        uint64_t out = 0;
        lt_status s = fused_rows(path, o->base, m, a->shape[1], &out, err);
        if (s != LT_OK)
            return s;
        uint64_t group_rows = b->shape[0] / enabled;
        if (b->shape[0] % enabled || out % group_rows || out / group_rows < enabled)
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: merged layer '%s': lora_B has %llu rows; the base weight's %llu rows are no whole "
                           "number of groups",
                           path, m->name, (unsigned long long)b->shape[0], (unsigned long long)out);
        if (out / group_rows > enabled)
            return lti_fail(err, LT_ERR_USAGE,
                           "%s: merged layer '%s' has %llu of %llu groups enabled: give --enable-lora MASK", path,
                           m->name, (unsigned long long)enabled, (unsigned long long)(out / group_rows));
        if (enabled > ENABLE_MAX)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: merged layer '%s' has %llu groups", path, m->name,
                           (unsigned long long)enabled);
        for (size_t i = 0; i < enabled; i++)
            all[i] = true;
        g.mask = all;
        g.n_groups = (size_t)enabled;
    }
    lt_status s = lti_merged_linear_expand(ad, mem, m, &g, err);
    if (s != LT_OK)
        return s;
    m->fan_in_fan_out = o->fan_in_fan_out;
    if (!o->base)
        return LT_OK;
    long bi = find_base_weight(path, o->base, m, err);
    if (bi < 0)
        return err ? err->status : LT_ERR_INVALID;
    lt_fit fit = lt_module_fit(m, lt_source_tensor(o->base, (size_t)bi));
    if (fit == LT_FIT_NONE)
        return lti_fail(err, LT_ERR_INVALID, "%s: merged layer '%s': fused delta [%llu, %llu] does not fit base '%s'",
                       path, m->name, (unsigned long long)m->out_features, (unsigned long long)m->in_features,
                       lt_source_tensor(o->base, (size_t)bi)->name);
    m->fan_in_fan_out = fit == LT_FIT_TRANSPOSED; /* stored [in, out], as PEFT's flag says */
    return LT_OK;
}

static lt_status check_layer(lt_adapter *ad, lt_source *mem, const lt_adapter_open_options *o, lt_lora_module *m,
                             double alpha, lt_error *err)
{
    const char *path = lt_source_path(mem);
    if (m->tensor_a < 0 || m->tensor_b < 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has %s but no %s", path, m->name,
                       m->tensor_a < 0 ? "lora_B" : "lora_A", m->tensor_a < 0 ? "lora_A" : "lora_B");
    const lt_tensor_info *a = lt_source_tensor(mem, (size_t)m->tensor_a);
    const lt_tensor_info *b = lt_source_tensor(mem, (size_t)m->tensor_b);
    if (!lt_dtype_is_float(a->dtype) || !lt_dtype_is_float(b->dtype))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: module '%s': LoRA factors of dtype %s/%s", path, m->name,
                       lt_dtype_name(a->dtype), lt_dtype_name(b->dtype));
    if (a->n_dims != 2 || b->n_dims != 2 || a->shape[0] == 0 || b->shape[1] == 0 || a->shape[0] > 0xFFFFFFFFu ||
        a->shape[0] % b->shape[1] != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_A %s and lora_B %s are not loralib factors", path,
                       m->name, a->n_dims == 2 ? "[r, in]" : "(not 2-D)", b->n_dims == 2 ? "[out, r]" : "(not 2-D)");
    char *target = lti_asprintf("%s.weight", m->name);
    lt_status s = target ? lti_adapter_set_target(ad, m, target, strlen(target), err) : lti_fail_nomem(err, path);
    free(target);
    if (s != LT_OK)
        return s;
    m->n_params = a->n_elems + b->n_elems;
    if (a->shape[0] != b->shape[1])
        return merged_layer(ad, mem, o, m, alpha, err);
    /* a conv weight (3-D to 5-D) makes it a ConvLoRA: A [r k, in k],
     * B [out / groups k, r k] (so A's rows equal B's columns, as here) */
    long bi = o->base ? lt_base_find(o->base, m->target) : -1;
    if (bi >= 0 && lt_source_tensor(o->base, (size_t)bi)->n_dims >= 3)
        return lti_loralib_conv_expand(mem, m, lt_source_tensor(o->base, (size_t)bi), alpha, err);
    m->rank = (uint32_t)a->shape[0];
    m->out_features = b->shape[0];
    m->in_features = a->shape[1];
    m->alpha = alpha;
    m->scale = alpha / (double)m->rank;
    return plain_layer(path, o->base, m, o->fan_in_fan_out, err);
}

/* A tensor that is not a LoRA factor: a replacement when the base has a
 * tensor of its name and shape (a bias saved with bias='all'/'lora_only',
 * a classifier head, the rest of a full state dict). */
/* Whether the file's bytes of tensors I and J are the same. */
static lt_status same_bytes(lt_source *mem, size_t i, size_t j, bool *same, lt_error *err)
{
    uint64_t n = lt_source_tensor(mem, i)->n_bytes;
    *same = false;
    if (n != lt_source_tensor(mem, j)->n_bytes || n > SIZE_MAX / 4)
        return LT_OK;
    unsigned char *x = malloc((size_t)n + 1), *y = malloc((size_t)n + 1);
    lt_status s = x && y ? lt_source_read(mem, i, 0, x, (size_t)n, err) : lti_fail_nomem(err, lt_source_path(mem));
    if (s == LT_OK)
        s = lt_source_read(mem, j, 0, y, (size_t)n, err);
    if (s == LT_OK)
        *same = memcmp(x, y, (size_t)n) == 0;
    free(x);
    free(y);
    return s;
}

/* loralib's ConvLoRA registers its conv's parameters on itself too, so a
 * state dict holds "<m>.bias" and "<m>.conv.bias" (bias='all'), or
 * "<m>.weight" and "<m>.conv.weight", for the same tensor.  True when T is
 * such a second name: "<m>.conv.<p>" with "<m>.lora_A" and "<m>.<p>" (same
 * shape and bytes) in the file. */
static lt_status conv_alias(lt_source *mem, size_t index, bool *alias, lt_error *err)
{
    const char *name = lt_source_tensor(mem, index)->name;
    const char *conv = NULL; /* the last ".conv.": "<m>" may hold one */
    for (const char *at = strstr(name, ".conv."); at; at = strstr(at + 1, ".conv."))
        conv = at;
    *alias = false;
    if (!conv || conv == name)
        return LT_OK;
    char *lora_a = lti_asprintf("%.*s.lora_A", (int)(conv - name), name);
    char *first = lti_asprintf("%.*s%s", (int)(conv - name), name, conv + strlen(".conv"));
    lt_status s = lora_a && first ? LT_OK : lti_fail_nomem(err, lt_source_path(mem));
    long k = s == LT_OK ? lt_source_find(mem, first) : -1;
    if (s == LT_OK && lt_source_find(mem, lora_a) >= 0 && k >= 0 &&
        same_shape(lt_source_tensor(mem, index), lt_source_tensor(mem, (size_t)k)))
        s = same_bytes(mem, index, (size_t)k, alias, err);
    free(lora_a);
    free(first);
    return s;
}

static lt_status other_tensor(lt_adapter *ad, lt_source *mem, const lt_source *base, long index, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(mem, (size_t)index);
    const char *path = lt_source_path(mem);
    if (strstr(t->name, "lora_"))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: unrecognized LoRA key '%s'", path, t->name);
    if (base) {
        long bi = lt_base_find(base, t->name);
        bool alias = false;
        if (bi < 0) {
            lt_status s = conv_alias(mem, (size_t)index, &alias, err);
            if (s != LT_OK)
                return s;
        }
        if (alias)
            return LT_OK; /* the same parameter, merged under its first name */
        if (bi < 0 || !same_shape(t, lt_source_tensor(base, (size_t)bi))) {
            char shape[96];
            shape_text(t, shape, sizeof shape);
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: tensor '%s' %s is no LoRA factor and matches no base tensor by name and shape", path,
                           t->name, shape);
        }
    }
    lt_replacement r = {.key = t->name, .target = t->name, .kind = LT_REPLACE_FULL, .tensor = index,
                        .n_params = t->n_elems};
    return lti_adapter_add_replacement(ad, &r, err);
}

static lt_status fill_model(lt_adapter *ad, lt_source *mem, const lt_adapter_open_options *o, lt_error *err)
{
    const char *path = lt_source_path(mem);
    double alpha = o->has_alpha ? o->alpha : NAN;
    size_t n_file = lt_source_tensor_count(mem);
    lt_status s = LT_OK;
    for (size_t i = 0; i < n_file && s == LT_OK; i++) {
        const char *key = lt_source_tensor(mem, i)->name;
        if (!is_lora_key(key)) {
            s = other_tensor(ad, mem, o->base, (long)i, err);
            continue;
        }
        size_t len = strlen(key) - strlen(".lora_A");
        if (len == 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: key '%s' names no module", path, key);
        lt_lora_module *m = NULL;
        if ((s = lti_adapter_module(ad, key, len, &m, err)) != LT_OK)
            return s;
        long *slot = key[len + 6] == 'A' ? &m->tensor_a : &m->tensor_b;
        if (*slot >= 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: module '%s' has two '%s' tensors", path, m->name, key + len + 1);
        *slot = (long)i;
    }
    for (size_t i = 0; i < lt_adapter_module_count(ad) && s == LT_OK; i++)
        s = check_layer(ad, mem, o, lti_adapter_module_mut(ad, i), alpha, err);
    if (s == LT_OK && lt_adapter_module_count(ad) == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: no LoRA factors", path);
    return s;
}

static lt_adapter *loralib_open_with(const char *path, const lt_adapter_open_options *opts, lt_error *err)
{
    if (!opts) { /* a command that takes no --alpha: say how to get there */
        lti_fail(err, LT_ERR_USAGE,
                "%s: a loralib checkpoint does not record lora_alpha: convert it to a PEFT directory first "
                "(loratool convert %s -o DIR --base MODEL --alpha A)",
                path, path);
        return NULL;
    }
    const lt_adapter_open_options *o = opts;
    if (!o->describe_only && !o->has_alpha) {
        lti_fail(err, LT_ERR_USAGE, "%s: a loralib checkpoint does not record lora_alpha: give --alpha", path);
        return NULL;
    }
    if (!o->describe_only && !o->base) {
        lti_fail(err, LT_ERR_USAGE, "%s: a loralib checkpoint needs --base naming the model it is for", path);
        return NULL;
    }
    if (o->has_alpha && !isfinite(o->alpha)) {
        lti_fail(err, LT_ERR_USAGE, "%s: lora_alpha must be a finite number", path);
        return NULL;
    }
    lt_source *file = lt_source_open(path, err);
    if (!file)
        return NULL;
    lt_adapter *ad = lti_adapter_new(path, NULL, err);
    if (!ad) {
        lt_source_close(file);
        return NULL;
    }
    lti_adapter_set_source(ad, file);
    lt_source *mem = lti_adapter_wrap_source(ad, err);
    lt_peft_config *cfg = lti_adapter_config_mut(ad);
    cfg->peft_type = "LORA";
    cfg->bias = "none";
    cfg->lora_alpha = o->has_alpha ? o->alpha : NAN;
    cfg->fan_in_fan_out = o->fan_in_fan_out;
    if (!mem || fill_model(ad, mem, o, err) != LT_OK) {
        lt_adapter_close(ad);
        return NULL;
    }
    mem->format = "loralib";
    /* the config's r and flag: the first layer's rank; fan_in_fan_out
     * when any layer is transposed (what a PEFT config can say) */
    cfg->r = lt_adapter_module(ad, 0)->rank;
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++)
        cfg->fan_in_fan_out |= lt_adapter_module(ad, i)->fan_in_fan_out;
    return ad;
}

static lt_adapter *loralib_open_adapter(const char *path, lt_error *err)
{
    return loralib_open_with(path, NULL, err);
}

static int no_bid(const lti_probe *probe)
{
    (void)probe;
    return 0;
}

const lti_format lti_format_loralib = {
    .name = "loralib",
    .bid = no_bid,
    .open = NULL,
    .create = NULL,
    .adapter_bid = loralib_adapter_bid,
    .open_adapter = loralib_open_adapter,
    .open_adapter_with = loralib_open_with,
};
