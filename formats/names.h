/* names.h - Hugging Face <-> GGUF naming and llama.cpp's Q/K row order
 * (formats/names.c; spec/convert.md). */
#ifndef LT_NAMES_H
#define LT_NAMES_H

#include "format.h"

/* GGUF architecture for a config.json model_type ("mistral" -> "llama"),
 * or NULL when we have no name map for it.  Static string. */
const char *lti_arch_from_hf_model_type(const char *model_type);
bool lti_arch_supported(const char *arch);
/* llama.cpp's converter permutes the rows of q_proj/k_proj for this arch. */
bool lti_arch_permutes_qk(const char *arch);

/* "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight" and
 * back; malloc'd, NULL when the name has no counterpart. */
char *lti_name_hf_to_gguf(const char *arch, const char *hf_name);
char *lti_name_gguf_to_hf(const char *arch, const char *gguf_name);

/* Row maps of the Q/K permutation for a tensor of n_rows rows in n_head
 * heads. */
uint64_t lti_qk_hf_row_of_gguf_row(uint64_t gguf_row, uint64_t n_head, uint64_t n_rows);
uint64_t lti_qk_gguf_row_of_hf_row(uint64_t hf_row, uint64_t n_head, uint64_t n_rows);

/* A model's config.json (formats/arch.c): parsed, and a JSON object, or
 * LT_ERR_INVALID; *root is the caller's to cJSON_Delete. */
struct cJSON;
lt_status lti_read_config_json(const char *path, struct cJSON **root, lt_error *err);

#endif
