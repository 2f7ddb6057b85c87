/* model_hparams.h - the GGUF hyperparameter keys of a whole-model
 * conversion, read from config.json (formats/model_hparams.c;
 * spec/convert.md, "Models"). */
#ifndef LT_MODEL_HPARAMS_H
#define LT_MODEL_HPARAMS_H

#include "format.h"

/* What the weights say, checked against config.json. */
typedef struct lti_model_shape {
    uint64_t blocks;          /* highest blk.N + 1                          */
    uint64_t embd_rows;       /* token_embd rows (0: no embedding tensor)   */
    uint64_t embd_cols;
    bool has_output;          /* an output.weight (lm_head) is present      */
} lti_model_shape;

/* What the conversion has to add beyond the keys. */
typedef struct lti_model_extras {
    uint64_t vocab_size;      /* tokens the model has (config or rows)      */
    double *rope_freqs;       /* LLaMA 3.x: the rope_freqs.weight factors   */
    uint32_t n_rope_freqs;    /* (malloc'd; free it), else NULL / 0         */
    size_t keys;              /* hyperparameter keys set                    */
} lti_model_extras;

/* Read CONFIG_PATH (a config.json) for architecture ARCH and set on SINK
 * every hyperparameter key llama.cpp reads for it (<arch>.context_length,
 * embedding and feed-forward lengths, head counts and lengths, RMS epsilon,
 * rope base, dimensions and scaling, vocab size, gemma's softcaps and
 * sliding window).  A config value that changes the model's arithmetic in
 * a way llama.cpp's ARCH cannot express (mixture of experts, longrope,
 * dynamic rope, ...) is refused by name (LT_ERR_UNSUPPORTED); a value
 * that contradicts the weights is LT_ERR_INVALID.  *EXTRAS is filled on
 * success. */
lt_status lti_model_hparams_set(lt_sink *sink, const char *arch, const char *config_path,
                                const lti_model_shape *shape, lti_model_extras *extras, lt_error *err);

#endif
