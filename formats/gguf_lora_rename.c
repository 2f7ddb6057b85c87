/* gguf_lora_rename.c - a LoRA model seen under the other naming: a GGUF
 * LoRA as the PEFT adapter it stands for (Hugging Face names, HF row
 * order, alpha from the file), and a PEFT adapter as a GGUF LoRA over a
 * GGUF model (GGUF names, llama.cpp's Q/K row order, exact scales: merged
 * into a GGUF base, each element is rounded once). */
#include <stdlib.h>
#include <string.h>

#include "gguf_lora.h"
#include "names.h"

static int by_tensor_a(const void *x, const void *y)
{
    long a = (*(const lt_lora_module *const *)x)->tensor_a, b = (*(const lt_lora_module *const *)y)->tensor_a;
    return (a > b) - (a < b);
}

/* One module of a GGUF LoRA as F32 factors in PEFT layout, HF row order. */
static lt_status add_hf_module(lt_adapter *out, lt_source *mem, const lt_adapter *in, const lt_lora_module *m,
                               const lt_arch_info *arch, double alpha, lt_error *err)
{
    lt_source *src = lt_adapter_source(in);
    const char *path = lt_source_path(src);
    char *hf = lti_name_gguf_to_hf(arch->arch, m->target);
    if (!hf)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: '%s.lora_a': no Hugging Face name for it", path, m->target);
    const lt_tensor_info *ta = lt_source_tensor(src, (size_t)m->tensor_a);
    float *a = NULL, *b = NULL;
    lt_status s = lti_gguf_read_f32(src, m->tensor_a, &a, err);
    if (s == LT_OK)
        s = lti_gguf_read_f32(src, m->tensor_b, &b, err);
    uint64_t r = m->rank, a_cols = m->a_transposed ? ta->shape[0] : ta->shape[1];
    uint64_t b_rows = lt_source_tensor(src, (size_t)m->tensor_b)->shape[0];
    if (s == LT_OK && m->a_transposed) { /* lora_a = A^T [vocab, r] */
        float *a_t = malloc((size_t)ta->n_elems * sizeof *a_t + 1);
        if (a_t)
            lti_transpose_f32(a, ta->shape[0], ta->shape[1], a_t);
        else
            s = lti_fail_nomem(err, path);
        free(a);
        a = a_t;
    }
    uint32_t n_head = lti_gguf_permuted_heads(arch, hf);
    if (s == LT_OK && n_head) {
        size_t name_len = strlen(hf) - (lti_ends_with(hf, ".weight") ? 7 : 0);
        char *module = lti_strndup(hf, name_len);
        s = module ? lti_gguf_permute_rows(b, b_rows, (size_t)r * sizeof *b, n_head, false, module, err)
                   : lti_fail_nomem(err, path);
        free(module);
    }
    size_t hf_len = strlen(hf);
    if (hf_len > 7 && strcmp(hf + hf_len - 7, ".weight") == 0)
        hf_len -= 7;
    char *a_name = lti_asprintf("%.*s.lora_A", (int)hf_len, hf), *b_name = lti_asprintf("%.*s.lora_B", (int)hf_len, hf);
    long ia = -1, ib = -1;
    if (s == LT_OK && (!a_name || !b_name))
        s = lti_fail_nomem(err, path);
    if (s == LT_OK) {
        ia = lti_memsource_add(mem, a_name, LT_F32, 2, (uint64_t[]){r, a_cols}, a, err);
        a = NULL;
        ib = ia >= 0 ? lti_memsource_add(mem, b_name, LT_F32, 2, (uint64_t[]){b_rows, r}, b, err) : -1;
        b = NULL;
        if (ib < 0)
            s = err ? err->status : LT_ERR_NOMEM;
    }
    lt_lora_module *o = NULL;
    if (s == LT_OK)
        s = lti_adapter_module(out, hf, hf_len, &o, err);
    if (s == LT_OK)
        s = lti_adapter_set_target(out, o, hf, strlen(hf), err);
    if (s == LT_OK) {
        o->kind = m->kind;
        o->rank = m->rank;
        /* alpha 0 in GGUF means scale 1: PEFT gets alpha = r */
        o->alpha = alpha > 0 ? alpha : (double)m->rank;
        o->scale = o->alpha / (double)m->rank;
        o->out_features = m->out_features;
        o->in_features = m->in_features;
        o->tensor_a = ia;
        o->tensor_b = ib;
        o->n_params = r * a_cols + b_rows * r;
    }
    free(a);
    free(b);
    free(a_name);
    free(b_name);
    free(hf);
    return s;
}

lt_adapter *lt_adapter_to_hf(const lt_adapter *ad, const lt_arch_info *arch, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    const char *own_arch = lt_adapter_gguf_arch(ad);
    if (!own_arch) {
        lti_fail(err, LT_ERR_USAGE, "%s: not a GGUF LoRA adapter (its names are Hugging Face names already)", path);
        return NULL;
    }
    if (own_arch[0] && strcmp(own_arch, arch->arch) != 0) {
        lti_fail(err, LT_ERR_INVALID, "%s: adapter architecture %s does not match the base's %s", path, own_arch,
                 arch->arch);
        return NULL;
    }
    size_t n = lt_adapter_module_count(ad);
    const lt_lora_module **order = calloc(n + 1, sizeof *order);
    lt_adapter *out = lti_adapter_new(path, NULL, err);
    lt_source *mem = out ? lti_memsource_new(path, err) : NULL;
    lt_status s = order ? (mem ? LT_OK : (err ? err->status : LT_ERR_NOMEM)) : lti_fail_nomem(err, path);
    if (mem)
        lti_adapter_set_source(out, mem);
    for (size_t i = 0; order && i < n; i++)
        order[i] = lt_adapter_module(ad, i);
    if (order) /* modules in the order of their lora_a tensors */
        qsort(order, n, sizeof *order, by_tensor_a);
    double alpha = lt_adapter_config(ad)->lora_alpha;
    for (size_t i = 0; i < n && s == LT_OK; i++)
        s = add_hf_module(out, mem, ad, order[i], arch, alpha, err);
    free(order);
    if (s == LT_OK) {
        lt_peft_config *cfg = lti_adapter_config_mut(out);
        cfg->peft_type = "LORA";
        cfg->bias = "none";
        cfg->lora_alpha = alpha;
    }
    if (s != LT_OK) {
        lt_adapter_close(out);
        return NULL;
    }
    return out;
}

/* Module M of a PEFT adapter under its GGUF name: A as it is, B with its
 * rows in llama.cpp's order (bytes moved, values untouched), the same
 * scale. */
static lt_status add_gguf_module(lt_adapter *out, lt_source *mem, const lt_adapter *in, const lt_lora_module *m,
                                 const lt_arch_info *arch, lt_error *err)
{
    lt_source *src = lt_adapter_source(in);
    char *gguf = lti_gguf_name_of(in, m, arch, err);
    if (!gguf)
        return err ? err->status : LT_ERR_UNSUPPORTED;
    lt_lora_module copy = *m;
    copy.tensor_a = lti_memsource_add_ref(mem, lt_source_tensor(src, (size_t)m->tensor_a)->name, src,
                                          (size_t)m->tensor_a, err);
    lt_status s = copy.tensor_a >= 0 ? LT_OK : (err ? err->status : LT_ERR_NOMEM);
    uint32_t n_head = lti_gguf_permuted_heads(arch, m->target);
    const lt_tensor_info *tb = lt_source_tensor(src, (size_t)m->tensor_b);
    if (s == LT_OK && n_head) {
        void *b = malloc((size_t)tb->n_bytes + 1);
        s = b ? lt_source_read(src, (size_t)m->tensor_b, 0, b, (size_t)tb->n_bytes, err) : lti_fail_nomem(err, gguf);
        if (s == LT_OK && tb->shape[0] == 0)
            s = lti_fail(err, LT_ERR_INVALID, "%s: module '%s': lora_B has no rows", lt_source_path(src), m->name);
        if (s == LT_OK)
            s = lti_gguf_permute_rows(b, tb->shape[0], (size_t)(tb->n_bytes / tb->shape[0]), n_head, true, m->name, err);
        if (s == LT_OK) {
            copy.tensor_b = lti_memsource_add(mem, tb->name, tb->dtype, tb->n_dims, tb->shape, b, err);
            b = NULL;
        }
        free(b);
    } else if (s == LT_OK) {
        copy.tensor_b = lti_memsource_add_ref(mem, tb->name, src, (size_t)m->tensor_b, err);
    }
    if (s == LT_OK && copy.tensor_b < 0)
        s = err ? err->status : LT_ERR_NOMEM;
    if (s == LT_OK && m->tensor_e >= 0 &&
        (copy.tensor_e = lti_memsource_add_ref(mem, lt_source_tensor(src, (size_t)m->tensor_e)->name, src,
                                               (size_t)m->tensor_e, err)) < 0)
        s = err ? err->status : LT_ERR_NOMEM;
    size_t len = strlen(gguf) - (lti_ends_with(gguf, ".weight") ? 7 : 0);
    lt_lora_module *o = NULL;
    if (s == LT_OK)
        s = lti_adapter_module(out, gguf, len, &o, err);
    if (s == LT_OK)
        s = lti_adapter_set_target(out, o, gguf, strlen(gguf), err);
    if (s == LT_OK) {
        copy.name = o->name;
        copy.target = o->target;
        *o = copy;
    }
    free(gguf);
    return s;
}

lt_adapter *lt_adapter_for_gguf(const lt_adapter *ad, const lt_arch_info *arch, lt_error *err)
{
    const char *path = lt_source_path(lt_adapter_source(ad));
    if (lt_adapter_gguf_arch(ad)) {
        lti_fail(err, LT_ERR_USAGE, "%s: already a GGUF LoRA adapter", path);
        return NULL;
    }
    lt_status s = lti_gguf_check_representable(ad, err);
    lt_adapter *out = s == LT_OK ? lti_adapter_new(path, NULL, err) : NULL;
    lt_source *mem = out ? lti_memsource_new(path, err) : NULL;
    if (!mem) {
        lt_adapter_close(out);
        return NULL;
    }
    lti_adapter_set_source(out, mem);
    *lti_adapter_config_mut(out) = *lt_adapter_config(ad); /* strings borrowed from AD */
    s = lti_adapter_set_gguf_arch(out, arch->arch, err);
    for (size_t i = 0; i < lt_adapter_module_count(ad) && s == LT_OK; i++)
        s = add_gguf_module(out, mem, ad, lt_adapter_module(ad, i), arch, err);
    if (s != LT_OK) {
        lt_adapter_close(out);
        return NULL;
    }
    return out;
}
