/*
 * gguf_lora.h - what the GGUF LoRA plug-in's files share: the reader
 * (formats/gguf_lora.c), the writer (gguf_lora_write.c) and the renaming
 * between Hugging Face and GGUF names (gguf_lora_rename.c).
 */
#ifndef LT_GGUF_LORA_H
#define LT_GGUF_LORA_H

#include "adapter.h"
#include "format.h"

/* general.type = adapter and adapter.type = lora. */
bool lti_gguf_is_lora(lt_source *src);
/* Open a GGUF LoRA file as a model with GGUF names (the adapter opener of
 * lti_format_gguf). */
lt_adapter *lti_gguf_lora_open(const char *path, lt_error *err);

/* Heads the rows of HF_TARGET are permuted in by llama.cpp (Q/K of
 * architectures that permute), or 0. */
uint32_t lti_gguf_permuted_heads(const lt_arch_info *arch, const char *hf_target);
/* Reorder the rows of a [rows, row_bytes] matrix: to_gguf: GGUF order from
 * HF order; else the reverse.  WHAT names it in errors. */
lt_status lti_gguf_permute_rows(void *m, uint64_t rows, size_t row_bytes, uint32_t n_head, bool to_gguf,
                                const char *what, lt_error *err);
/* Tensor INDEX of SRC as malloc'd f32 values (dequantized if need be). */
lt_status lti_gguf_read_f32(lt_source *src, long index, float **out, lt_error *err);
/* out[cols x rows] = in[rows x cols]^T */
void lti_transpose_f32(const float *in, uint64_t rows, uint64_t cols, float *out);
/* LT_ERR_UNSUPPORTED naming what a GGUF LoRA cannot hold (replacement
 * tensors, DoRA, lora biases, conv modules). */
lt_status lti_gguf_check_representable(const lt_adapter *ad, lt_error *err);
/* The GGUF name of module M's target in ARCH, malloc'd; NULL with err set. */
char *lti_gguf_name_of(const lt_adapter *ad, const lt_lora_module *m, const lt_arch_info *arch, lt_error *err);

#endif
