/* names.c - Hugging Face <-> GGUF tensor names for the architectures
 * llama.cpp's converter handles the same way (spec/convert.md).
 *
 * A name is split into a per-layer part ("model.layers.N.<suffix>" <->
 * "blk.N.<gguf suffix>") and whole-model names (embeddings, final norm,
 * output head).  Tables are per family; the first table entry that matches
 * wins, in both directions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

typedef struct name_pair {
    const char *hf;     /* suffix after "model.layers.N." or a whole name */
    const char *gguf;   /* suffix after "blk.N." or a whole name          */
} name_pair;

static const name_pair global_names[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
    {NULL, NULL},
};

/* llama, mistral, qwen2, qwen3: pre-norm attention and gated MLP */
static const name_pair llama_layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {NULL, NULL},
};

/* gemma2, gemma3: norms after attention and after the MLP too */
static const name_pair gemma2_layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
    {"post_attention_layernorm", "post_attention_norm"},
    {"pre_feedforward_layernorm", "ffn_norm"},
    {"post_feedforward_layernorm", "post_ffw_norm"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {NULL, NULL},
};

/* phi3: fused projections */
static const name_pair phi3_layer_names[] = {
    {"input_layernorm", "attn_norm"},
    {"self_attn.qkv_proj", "attn_qkv"},
    {"self_attn.o_proj", "attn_output"},
    {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {NULL, NULL},
};

static const struct {
    const char *arch;             /* GGUF general.architecture */
    const name_pair *layers;
    bool permute_qk;              /* llama.cpp permutes q/k rows for llama */
} families[] = {
    {"llama", llama_layer_names, true},     {"qwen2", llama_layer_names, false},
    {"qwen3", llama_layer_names, false},    {"gemma", llama_layer_names, false},
    {"gemma2", gemma2_layer_names, false},  {"gemma3", gemma2_layer_names, false},
    {"phi3", phi3_layer_names, false},
};

static int family_of(const char *arch)
{
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        if (strcmp(families[i].arch, arch) == 0)
            return (int)i;
    return -1;
}

const char *lti_arch_from_hf_model_type(const char *model_type)
{
    static const struct { const char *hf, *arch; } types[] = {
        {"llama", "llama"}, {"mistral", "llama"}, {"mixtral", "llama"}, {"qwen2", "qwen2"},
        {"qwen3", "qwen3"}, {"gemma", "gemma"},   {"gemma2", "gemma2"}, {"gemma3", "gemma3"},
        {"gemma3_text", "gemma3"}, {"phi3", "phi3"},
    };
    for (size_t i = 0; model_type && i < sizeof types / sizeof *types; i++)
        if (strcmp(types[i].hf, model_type) == 0)
            return types[i].arch;
    return NULL;
}

bool lti_arch_supported(const char *arch) { return family_of(arch) >= 0; }

bool lti_arch_permutes_qk(const char *arch)
{
    int f = family_of(arch);
    return f >= 0 && families[f].permute_qk;
}

/* Split "stem.weight" / "stem.bias" into the stem and the suffix. */
static const char *param_suffix(const char *name, size_t *stem_len)
{
    static const char *const suffixes[] = {".weight", ".bias"};
    size_t len = strlen(name);
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(suffixes[i]);
        if (len > n && strcmp(name + len - n, suffixes[i]) == 0) {
            *stem_len = len - n;
            return suffixes[i];
        }
    }
    *stem_len = len;
    return "";
}

/* Parse "<prefix><N>.<rest>"; returns rest or NULL. */
static const char *layer_rest(const char *stem, size_t stem_len, const char *prefix, unsigned long *layer)
{
    size_t plen = strlen(prefix);
    if (stem_len <= plen || strncmp(stem, prefix, plen) != 0)
        return NULL;
    const char *p = stem + plen;
    char *end;
    if (*p < '0' || *p > '9')
        return NULL;
    *layer = strtoul(p, &end, 10);
    if (*end != '.' || end > stem + stem_len)
        return NULL;
    return end + 1;
}

/* The GGUF or the HF name of a pair. */
static const char *side(const name_pair *p, bool gguf) { return gguf ? p->gguf : p->hf; }

static char *map_name(const char *arch, const char *name, bool to_gguf)
{
    int f = family_of(arch);
    if (f < 0)
        return NULL;
    /* multimodal wrappers keep the text model under language_model. */
    if (to_gguf && strncmp(name, "language_model.", 15) == 0)
        name += 15;
    size_t stem_len;
    const char *suffix = param_suffix(name, &stem_len);
    for (const name_pair *p = global_names; p->hf; p++)
        if (strlen(side(p, !to_gguf)) == stem_len && strncmp(name, side(p, !to_gguf), stem_len) == 0)
            return lti_asprintf("%s%s", side(p, to_gguf), suffix);
    unsigned long layer;
    const char *rest = layer_rest(name, stem_len, to_gguf ? "model.layers." : "blk.", &layer);
    if (!rest)
        return NULL;
    size_t rest_len = stem_len - (size_t)(rest - name);
    for (const name_pair *p = families[f].layers; p->hf; p++)
        if (strlen(side(p, !to_gguf)) == rest_len && strncmp(rest, side(p, !to_gguf), rest_len) == 0)
            return lti_asprintf(to_gguf ? "blk.%lu.%s%s" : "model.layers.%lu.%s%s", layer, side(p, to_gguf), suffix);
    return NULL;
}

char *lti_name_hf_to_gguf(const char *arch, const char *hf_name) { return map_name(arch, hf_name, true); }
char *lti_name_gguf_to_hf(const char *arch, const char *gguf_name) { return map_name(arch, gguf_name, false); }

/* llama.cpp's Q/K permutation of rows (spec/convert.md): with hd = rows per
 * head, GGUF row h*hd + 2t + s holds HF row h*hd + s*hd/2 + t. */
uint64_t lti_qk_hf_row_of_gguf_row(uint64_t gguf_row, uint64_t n_head, uint64_t n_rows)
{
    uint64_t hd = n_rows / n_head;
    uint64_t h = gguf_row / hd, within = gguf_row % hd;
    return h * hd + (within % 2) * (hd / 2) + within / 2;
}

uint64_t lti_qk_gguf_row_of_hf_row(uint64_t hf_row, uint64_t n_head, uint64_t n_rows)
{
    uint64_t hd = n_rows / n_head;
    uint64_t h = hf_row / hd, within = hf_row % hd;
    return h * hd + 2 * (within % (hd / 2)) + within / (hd / 2);
}
