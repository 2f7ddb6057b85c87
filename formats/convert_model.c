/* convert_model.c - whole weight files between safetensors (Hugging Face
 * names and row order) and GGUF (llama.cpp names and row order), tensor by
 * tensor, streamed (spec/convert.md, "Models"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

/* Gemma's RMSNorm multiplies by (1 + w); llama.cpp stores 1 + w. */
static bool gemma_norm(const char *arch, const char *gguf_name)
{
    size_t len = strlen(gguf_name);
    return strncmp(arch, "gemma", 5) == 0 && len > 12 && strcmp(gguf_name + len - 12, "_norm.weight") == 0;
}

/* Which heads count a tensor's rows are permuted with, or 0. */
static uint32_t permute_heads(const lt_arch_info *arch, const char *hf_name)
{
    if (!lti_arch_permutes_qk(arch->arch))
        return 0;
    static const char *const q[] = {"self_attn.q_proj.weight", "self_attn.q_proj.bias"};
    static const char *const k[] = {"self_attn.k_proj.weight", "self_attn.k_proj.bias"};
    size_t len = strlen(hf_name);
    for (int i = 0; i < 2; i++) {
        if (len >= strlen(q[i]) && strcmp(hf_name + len - strlen(q[i]), q[i]) == 0)
            return arch->n_head;
        if (len >= strlen(k[i]) && strcmp(hf_name + len - strlen(k[i]), k[i]) == 0)
            return arch->n_head_kv;
    }
    return 0;
}

typedef struct model_tensor {
    size_t src_index;
    char *out_name;
    char *hf_name;          /* for the permutation test                    */
    lt_dtype out_dtype;
    uint32_t heads;         /* rows permuted in n heads, or 0              */
    double add;             /* +1 / -1 for gemma norms, else 0             */
} model_tensor;

static lt_status copy_tensor(lt_source *src, const model_tensor *mt, lt_sink *sink, long index, bool to_gguf,
                             lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(src, mt->src_index);
    uint64_t rows = t->n_dims ? t->shape[0] : 1, cols = rows ? t->n_elems / rows : 0;
    if (mt->heads && (rows % mt->heads || (rows / mt->heads) % 2))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': %llu rows do not split into %u heads of even size",
                       lt_source_path(src), t->name, (unsigned long long)rows, mt->heads);
    /* row by row when permuting, else in chunks of whole rows */
    uint64_t step = mt->heads ? 1 : (cols >= (1u << 18) ? 1 : (1u << 18) / (cols ? cols : 1));
    uint64_t in_row, out_row;
    if (!lt_dtype_nbytes(t->dtype, cols, &in_row) || !lt_dtype_nbytes(mt->out_dtype, cols, &out_row))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': rows are not whole blocks", lt_source_path(src), t->name);
    unsigned char *raw = malloc((size_t)(step * in_row) + 1), *out = malloc((size_t)(step * out_row) + 1);
    double *values = malloc((size_t)(step * cols) * sizeof *values + 1);
    lt_status s = raw && out && values ? LT_OK : lti_fail_nomem(err, t->name);
    for (uint64_t r = 0; s == LT_OK && r < rows; r += step) {
        uint64_t n = rows - r < step ? rows - r : step;
        uint64_t from = r;
        if (mt->heads)
            from = to_gguf ? lti_qk_hf_row_of_gguf_row(r, mt->heads, rows) : lti_qk_gguf_row_of_hf_row(r, mt->heads, rows);
        s = lt_source_read(src, mt->src_index, from * in_row, raw, (size_t)(n * in_row), err);
        if (s != LT_OK)
            break;
        const unsigned char *bytes = raw;
        if (t->dtype != mt->out_dtype || mt->add != 0) {
            if (lt_convert_to_f64(t->dtype, raw, values, (size_t)(n * cols)) != LT_OK) {
                s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s': cannot convert %s", lt_source_path(src), t->name,
                            lt_dtype_name(t->dtype));
                break;
            }
            for (uint64_t j = 0; j < n * cols; j++)
                values[j] += mt->add;
            if (lt_convert_from_f64(mt->out_dtype, values, out, (size_t)(n * cols)) != LT_OK) {
                s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s': cannot write %s", lt_source_path(src), t->name,
                            lt_dtype_name(mt->out_dtype));
                break;
            }
            bytes = out;
        }
        s = lt_sink_write(sink, index, r * out_row, bytes, (size_t)(n * out_row), err);
    }
    free(raw);
    free(out);
    free(values);
    return s;
}

lt_status lt_convert_model(lt_source *src, const lt_arch_info *arch, const char *out_path, lt_dtype outtype,
                           size_t *skipped, lt_error *err)
{
    const char *path = lt_source_path(src);
    bool to_gguf = strcmp(lt_source_format(src), "gguf") != 0;
    if (outtype != LT_DTYPE_INVALID && outtype != LT_F32 && outtype != LT_F16 && outtype != LT_BF16)
        return lti_fail(err, LT_ERR_USAGE, "%s: model --outtype must be f32, f16 or bf16", out_path);
    size_t n = lt_source_tensor_count(src);
    model_tensor *mts = calloc(n + 1, sizeof *mts);
    if (!mts)
        return lti_fail_nomem(err, path);
    size_t count = 0;
    *skipped = 0;
    lt_status s = LT_OK;
    uint64_t blocks = 0;
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        size_t len = strlen(t->name);
        if (to_gguf && len > 20 && strcmp(t->name + len - 20, "rotary_emb.inv_freq") == 0) {
            (*skipped)++; /* recomputed by llama.cpp, never stored */
            continue;
        }
        char *mapped = to_gguf ? lti_name_hf_to_gguf(arch->arch, t->name) : lti_name_gguf_to_hf(arch->arch, t->name);
        if (!mapped) {
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' has no %s name for architecture %s", path, t->name,
                        to_gguf ? "GGUF" : "Hugging Face", arch->arch);
            break;
        }
        model_tensor *mt = &mts[count++];
        mt->src_index = i;
        mt->out_name = mapped;
        mt->hf_name = lti_strdup(to_gguf ? t->name : mapped);
        mt->heads = mt->hf_name ? permute_heads(arch, mt->hf_name) : 0;
        const char *gguf_name = to_gguf ? mapped : t->name;
        mt->add = gemma_norm(arch->arch, gguf_name) ? (to_gguf ? 1.0 : -1.0) : 0.0;
        /* llama.cpp keeps 1-D tensors in F32 */
        mt->out_dtype = to_gguf && t->n_dims <= 1 && lt_dtype_is_float(t->dtype) ? LT_F32
                        : outtype != LT_DTYPE_INVALID && lt_dtype_is_float(t->dtype) ? outtype
                        : lt_dtype_block_elems(t->dtype) > 1 && !to_gguf ? LT_F32
                                                                      : t->dtype;
        unsigned long layer;
        if (sscanf(gguf_name, "blk.%lu.", &layer) == 1 && layer + 1 > blocks)
            blocks = layer + 1;
    }
    lt_sink *sink = NULL;
    if (s == LT_OK && !(sink = lt_sink_create(to_gguf ? "gguf" : "safetensors", out_path, NULL, err)))
        s = err ? err->status : LT_ERR_IO;
    if (s == LT_OK && to_gguf) {
        char key[96];
        uint32_t value = (uint32_t)blocks;
        s = lt_sink_set_kv(sink, "general.architecture", LT_GGUF_STRING, arch->arch, err);
        snprintf(key, sizeof key, "%s.block_count", arch->arch);
        if (s == LT_OK)
            s = lt_sink_set_kv(sink, key, LT_GGUF_U32, &value, err);
        snprintf(key, sizeof key, "%s.attention.head_count", arch->arch);
        if (s == LT_OK && arch->n_head)
            s = lt_sink_set_kv(sink, key, LT_GGUF_U32, &arch->n_head, err);
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch->arch);
        if (s == LT_OK && arch->n_head_kv)
            s = lt_sink_set_kv(sink, key, LT_GGUF_U32, &arch->n_head_kv, err);
    } else if (s == LT_OK) {
        s = lt_sink_set_meta(sink, "format", "pt", err);
    }
    for (size_t i = 0; i < count && s == LT_OK; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, mts[i].src_index);
        if (lt_sink_add_tensor(sink, mts[i].out_name, mts[i].out_dtype, t->n_dims, t->shape, err) < 0)
            s = err ? err->status : LT_ERR_INVALID;
    }
    if (s == LT_OK)
        s = lt_sink_begin(sink, err);
    for (size_t i = 0; i < count && s == LT_OK; i++)
        s = copy_tensor(src, &mts[i], sink, (long)i, to_gguf, err);
    if (sink)
        s = s == LT_OK ? lt_sink_commit(sink, err) : (lt_sink_abort(sink), s);
    for (size_t i = 0; i < count; i++) {
        free(mts[i].out_name);
        free(mts[i].hf_name);
    }
    free(mts);
    return s;
}
