/* name_map.c - lt_name_map for llama.cpp's conversion of a Hugging Face
 * model to GGUF: the names of formats/names.c and the Q/K row permutation,
 * as lt_convert_model applies them (spec/convert.md), handed to lib/'s
 * diff and verify as data and callbacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

typedef struct hf_gguf_map {
    lt_name_map map;   /* first, so the public pointer is the whole struct */
    lt_arch_info arch;
} hf_gguf_map;

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

static int map_hf_to_gguf(void *ctx, const char *name, char *buf, size_t size)
{
    const hf_gguf_map *m = ctx;
    if (ends_with(name, "rotary_emb.inv_freq"))
        return 0; /* recomputed by llama.cpp, never stored */
    char *mapped = lti_name_hf_to_gguf(m->arch.arch, name);
    if (!mapped)
        return -1;
    int fits = snprintf(buf, size, "%s", mapped) < (int)size;
    free(mapped);
    return fits ? 1 : -1;
}

/* Heads whose rows llama.cpp permutes for this tensor, or 0. */
static uint32_t qk_heads(const hf_gguf_map *m, const char *hf_name)
{
    if (!lti_arch_permutes_qk(m->arch.arch))
        return 0;
    if (ends_with(hf_name, "self_attn.q_proj.weight") || ends_with(hf_name, "self_attn.q_proj.bias"))
        return m->arch.n_head;
    if (ends_with(hf_name, "self_attn.k_proj.weight") || ends_with(hf_name, "self_attn.k_proj.bias"))
        return m->arch.n_head_kv;
    return 0;
}

static bool rows_hf_to_gguf(void *ctx, const char *name, uint64_t rows, uint64_t *first_row_of)
{
    uint32_t heads = qk_heads(ctx, name);
    if (!heads || rows % heads || (rows / heads) % 2)
        return false; /* the caller's comparison then shows the mismatch */
    for (uint64_t j = 0; j < rows; j++)
        first_row_of[j] = lti_qk_hf_row_of_gguf_row(j, heads, rows);
    return true;
}

lt_name_map *lt_name_map_create(const lt_arch_info *arch, lt_error *err)
{
    if (!lti_arch_supported(arch->arch)) {
        lti_fail(err, LT_ERR_UNSUPPORTED, "architecture '%s' has no name map", arch->arch);
        return NULL;
    }
    hf_gguf_map *m = calloc(1, sizeof *m);
    if (!m) {
        lti_fail_nomem(err, "name map");
        return NULL;
    }
    m->arch = *arch;
    m->map.map = map_hf_to_gguf;
    m->map.rows = rows_hf_to_gguf;
    m->map.ctx = m;
    return &m->map;
}

void lt_name_map_free(lt_name_map *map)
{
    free(map); /* the map is the first member of its hf_gguf_map */
}
