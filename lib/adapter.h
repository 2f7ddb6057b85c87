/*
 * adapter.h - how a format (or an operation) builds the LoRA model, the
 * core type lt_adapter (lib/adapter.c).  Readers in formats/ (PEFT
 * directories, legacy .bin, GGUF LoRA) and the operations in lib/
 * (resize, combine, extract) fill one through these builders; everyone
 * else reads it through the accessors in loratool.h.
 */
#ifndef LT_ADAPTER_H
#define LT_ADAPTER_H

#include "source_sink.h"

/* A new, empty model.  PATH names it in messages (the directory or file it
 * came from, or a label for computed models); CONFIG_PATH (may be NULL:
 * then PATH) is the file config errors are reported against.  The config
 * holds zeros and NULLs.  Free with lt_adapter_close. */
lt_adapter *lti_adapter_new(const char *path, const char *config_path, lt_error *err);

const char *lti_adapter_path(const lt_adapter *ad);
const char *lti_adapter_config_path(const lt_adapter *ad);
lt_peft_config *lti_adapter_config_mut(lt_adapter *ad);

/* Give the model its tensor source (owned from now on, closed with it). */
void lti_adapter_set_source(lt_adapter *ad, lt_source *src);

/* Take ownership of a malloc'd block, freed with the model.  Returns block,
 * or NULL after freeing it when the list cannot grow. */
void *lti_adapter_keep(lt_adapter *ad, void *block);
/* A copy of s[0..len) owned by the model, or NULL (out of memory). */
const char *lti_adapter_keep_str(lt_adapter *ad, const char *s, size_t len);

/* The module called name[0..len), added (tensors -1, other fields 0) when
 * new.  The pointer is valid until the next module is added. */
lt_status lti_adapter_module(lt_adapter *ad, const char *name, size_t len, lt_lora_module **out,
                             lt_error *err);
lt_lora_module *lti_adapter_module_mut(lt_adapter *ad, size_t i);
/* Set a module's target (copied). */
lt_status lti_adapter_set_target(lt_adapter *ad, lt_lora_module *m, const char *target, size_t len,
                                 lt_error *err);

/* Append a replacement: r is copied, r->target too (r->key and
 * r->token_indices are borrowed: from the source, or kept blocks). */
lt_status lti_adapter_add_replacement(lt_adapter *ad, const lt_replacement *r, lt_error *err);
lt_replacement *lti_adapter_replacement_mut(lt_adapter *ad, size_t i);

/* Append a warning line (copied). */
lt_status lti_adapter_warn(lt_adapter *ad, const char *line, lt_error *err);

/* Mark the model's names as GGUF tensor names of architecture ARCH (a GGUF
 * LoRA), or as Hugging Face names (NULL, the default). */
lt_status lti_adapter_set_gguf_arch(lt_adapter *ad, const char *arch, lt_error *err);

/* ---- a source whose tensors live in memory (lib/source_mem.c) ---- */

/* An empty in-memory source labelled LABEL (its path), format "memory". */
lt_source *lti_memsource_new(const char *label, lt_error *err);
/* Add a tensor whose bytes are DATA (malloc'd, n_bytes of dtype x shape;
 * owned from now on, freed also on failure).  Returns its index or -1. */
long lti_memsource_add(lt_source *src, const char *name, lt_dtype dtype, uint32_t n_dims,
                       const uint64_t *shape, void *data, lt_error *err);
/* Add a tensor that reads tensor INDEX of FROM (borrowed: FROM must outlive
 * SRC), under NAME.  Returns its index or -1. */
long lti_memsource_add_ref(lt_source *src, const char *name, lt_source *from, size_t index,
                           lt_error *err);

#endif
