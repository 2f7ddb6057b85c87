/* convert_model.c - whole weight files between safetensors (Hugging Face
 * names and row order) and GGUF (llama.cpp names and row order), tensor by
 * tensor, streamed (spec/convert.md, "Models"). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_hparams.h"
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

/* The tokenizer.* keys of the GGUF VOCAB_PATH, after checking its token
 * count against the model's VOCAB_SIZE tokens (0: unknown). */
static lt_status copy_vocab(lt_sink *sink, const char *vocab_path, uint64_t vocab_size, size_t *copied, lt_error *err)
{
    lt_source *voc = lt_source_open(vocab_path, err);
    if (!voc)
        return err ? err->status : LT_ERR_INVALID;
    lt_status s = LT_OK;
    long k = lt_source_kv_find(voc, "tokenizer.ggml.tokens");
    uint64_t tokens = k >= 0 && lt_source_kv_type(voc, (size_t)k) == LT_GGUF_ARRAY ? lt_source_kv_len(voc, (size_t)k) : 0;
    if (strcmp(lt_source_format(voc), "gguf") != 0 || tokens == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: --vocab must be a GGUF with a tokenizer.ggml.tokens array", vocab_path);
    else if (vocab_size == 0)
        s = lti_fail(err, LT_ERR_INVALID, "%s: the model's vocabulary size is unknown (no config.json vocab_size and "
                     "no token embedding), so the vocabulary cannot be checked", vocab_path);
    else if (tokens != vocab_size)
        s = lti_fail(err, LT_ERR_INVALID, "%s: %llu tokens, but the model has a vocabulary of %llu", vocab_path,
                     (unsigned long long)tokens, (unsigned long long)vocab_size);
    size_t before = lt_source_kv_count(voc);
    if (s == LT_OK)
        s = lt_sink_copy_kvs_prefix(sink, voc, "tokenizer.", err);
    *copied = 0;
    for (size_t i = 0; s == LT_OK && i < before; i++)
        *copied += strncmp(lt_source_kv_key(voc, i), "tokenizer.", 10) == 0;
    lt_source_close(voc);
    return s;
}

/* general.architecture and the hyperparameters: from config.json when
 * given, else only the block and head counts. */
static lt_status model_keys(lt_sink *sink, const lt_arch_info *arch, const char *config, const lti_model_shape *shape,
                            lti_model_extras *extras, lt_error *err)
{
    lt_status s = lt_sink_set_kv(sink, "general.architecture", LT_GGUF_STRING, arch->arch, err);
    if (s == LT_OK && config)
        return lti_model_hparams_set(sink, arch->arch, config, shape, extras, err);
    char key[96];
    uint32_t value = (uint32_t)shape->blocks;
    snprintf(key, sizeof key, "%s.block_count", arch->arch);
    if (s == LT_OK)
        s = lt_sink_set_kv(sink, key, LT_GGUF_U32, &value, err);
    snprintf(key, sizeof key, "%s.attention.head_count", arch->arch);
    if (s == LT_OK && arch->n_head)
        s = lt_sink_set_kv(sink, key, LT_GGUF_U32, &arch->n_head, err);
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch->arch);
    if (s == LT_OK && arch->n_head_kv)
        s = lt_sink_set_kv(sink, key, LT_GGUF_U32, &arch->n_head_kv, err);
    extras->vocab_size = shape->embd_rows;
    return s;
}

lt_status lt_convert_model(lt_source *src, const lt_arch_info *arch, const char *out_path, lt_dtype outtype,
                           size_t *skipped, lt_error *err)
{
    lt_model_convert_options opts = {.outtype = outtype};
    lt_model_convert_report report;
    lt_status s = lt_convert_model_with(src, arch, &opts, out_path, &report, err);
    *skipped = report.skipped;
    return s;
}

lt_status lt_convert_model_with(lt_source *src, const lt_arch_info *arch, const lt_model_convert_options *opts,
                                const char *out_path, lt_model_convert_report *report, lt_error *err)
{
    static const lt_model_convert_options no_options = {.outtype = LT_DTYPE_INVALID};
    lt_model_convert_report unused;
    if (!opts)
        opts = &no_options;
    if (!report)
        report = &unused;
    memset(report, 0, sizeof *report);
    const char *path = lt_source_path(src);
    lt_dtype outtype = opts->outtype;
    bool to_gguf = strcmp(lt_source_format(src), "gguf") != 0;
    if (outtype != LT_DTYPE_INVALID && outtype != LT_F32 && outtype != LT_F16 && outtype != LT_BF16)
        return lti_fail(err, LT_ERR_USAGE, "%s: model --outtype must be f32, f16 or bf16", out_path);
    char *config = NULL;
    if (to_gguf && opts->config && !(config = lti_is_dir(opts->config) ? lti_path_join(opts->config, "config.json")
                                                                      : lti_strdup(opts->config)))
        return lti_fail_nomem(err, path);
    size_t n = lt_source_tensor_count(src);
    model_tensor *mts = calloc(n + 1, sizeof *mts);
    if (!mts) {
        free(config);
        return lti_fail_nomem(err, path);
    }
    size_t count = 0;
    lt_status s = LT_OK;
    lti_model_shape shape = {0, 0, 0, false};
    lti_model_extras extras;
    memset(&extras, 0, sizeof extras);
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        size_t len = strlen(t->name);
        if (to_gguf && len > 20 && strcmp(t->name + len - 20, "rotary_emb.inv_freq") == 0) {
            report->skipped++; /* recomputed by llama.cpp, never stored */
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
        if (sscanf(gguf_name, "blk.%lu.", &layer) == 1 && layer + 1 > shape.blocks)
            shape.blocks = layer + 1;
        if (strcmp(gguf_name, "token_embd.weight") == 0 && t->n_dims == 2) {
            shape.embd_rows = t->shape[0];
            shape.embd_cols = t->shape[1];
        }
        shape.has_output |= strcmp(gguf_name, "output.weight") == 0;
    }
    lt_sink *sink = NULL;
    if (s == LT_OK && !(sink = lt_sink_create(to_gguf ? "gguf" : "safetensors", out_path, NULL, err)))
        s = err ? err->status : LT_ERR_IO;
    if (s == LT_OK && to_gguf) {
        s = model_keys(sink, arch, config, &shape, &extras, err);
        report->hparam_keys = config ? extras.keys : 0;
        report->vocab_size = extras.vocab_size;
        if (s == LT_OK && opts->vocab)
            s = copy_vocab(sink, opts->vocab, extras.vocab_size, &report->tokenizer_keys, err);
    } else if (s == LT_OK) {
        s = lt_sink_set_meta(sink, "format", "pt", err);
    }
    for (size_t i = 0; i < count && s == LT_OK; i++) {
        const lt_tensor_info *t = lt_source_tensor(src, mts[i].src_index);
        if (lt_sink_add_tensor(sink, mts[i].out_name, mts[i].out_dtype, t->n_dims, t->shape, err) < 0)
            s = err ? err->status : LT_ERR_INVALID;
    }
    long freqs_index = -1;
    if (s == LT_OK && extras.rope_freqs) {
        uint64_t len = extras.n_rope_freqs;
        if ((freqs_index = lt_sink_add_tensor(sink, "rope_freqs.weight", LT_F32, 1, &len, err)) < 0)
            s = err ? err->status : LT_ERR_INVALID;
        report->rope_freqs = s == LT_OK;
    }
    if (s == LT_OK)
        s = lt_sink_begin(sink, err);
    for (size_t i = 0; i < count && s == LT_OK; i++) {
        s = copy_tensor(src, &mts[i], sink, (long)i, to_gguf, err);
        if (s == LT_OK && opts->progress)
            opts->progress(opts->progress_ctx, i + 1, count);
    }
    if (s == LT_OK && freqs_index >= 0) {
        unsigned char *bytes = malloc((size_t)extras.n_rope_freqs * 4 + 1);
        s = !bytes ? lti_fail_nomem(err, out_path)
                   : lt_convert_from_f64(LT_F32, extras.rope_freqs, bytes, extras.n_rope_freqs);
        if (s == LT_OK)
            s = lt_sink_write(sink, freqs_index, 0, bytes, (size_t)extras.n_rope_freqs * 4, err);
        free(bytes);
    }
    if (sink)
        s = s == LT_OK ? lt_sink_commit(sink, err) : (lt_sink_abort(sink), s);
    for (size_t i = 0; i < count; i++) {
        free(mts[i].out_name);
        free(mts[i].hf_name);
    }
    free(mts);
    free(extras.rope_freqs);
    free(config);
    return s;
}
