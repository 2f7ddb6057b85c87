/*
 * surgery.h - what resize/combine (lib/surgery.c) and extract
 * (lib/extract.c) share.  Internal to lib/ (formats/convert.c reads factors through it).
 */
#ifndef LT_SURGERY_H
#define LT_SURGERY_H

#include "adapter.h"

/* One module an operation computed: delta = B A with B [b_rows, rank] and
 * A [rank, a_cols], PEFT layout (an embedding's A is [rank, vocab], its B
 * [dim, rank]); factors malloc'd. */
typedef struct lti_out_module {
    char *name;
    bool embedding;
    uint64_t b_rows, a_cols;
    uint32_t rank;
    float *a, *b;
} lti_out_module;

/* The model an operation returns: MODS[0..n) with alpha = rank (scale 1:
 * the scale lives in the factors), their factors handed over (set NULL in
 * MODS); the replacement tensors of ADS[0..n_ads) carried over by
 * reference (ADS must outlive the model; a key in two of them is
 * LT_ERR_INVALID), with their modules_to_save; base model, task type and
 * fan_in_fan_out from ADS[0] (none when n_ads is 0); GGUF names when every
 * input has them.  LABEL names the model in messages. */
lt_status lti_surgery_model(const char *label, lti_out_module *mods, size_t n, const lt_adapter *const *ads,
                            size_t n_ads, lt_adapter **out, lt_error *err);
void lti_out_modules_free(lti_out_module *mods, size_t n);

/* Truncated factors of a dense delta DIFF (m x n, f32) by randomized SVD
 * under opts->rule (FIXED: that rank; ENERGY: the smallest rank up to
 * opts->max_rank keeping that fraction of TOTAL = ||DIFF||_F^2): *b_out
 * [m, rank] = U sqrt(S), *a_out [rank, n] = sqrt(S) V^T (malloc'd), the
 * report entry's new_rank, energy_kept, rel_error and zero filled
 * (lib/extract.c; shared with TIES/DARE in lib/surgery.c). */
lt_status lti_factors_from_dense(const lt_extract_options *opts, const float *diff, uint64_t m, uint64_t n,
                                double total, uint32_t *rank_out, float **a_out, float **b_out,
                                lt_surgery_module *rep, lt_error *err);

/* A module's factors as malloc'd doubles in PEFT layout: *b_out [b_rows,
 * r] times b_factor, *a_out [r, a_cols] with AdaLoRA's E folded in
 * (embeddings: b_rows = dim, a_cols = vocab).  lib/surgery.c. */
lt_status lti_module_factors_f64(const lt_adapter *ad, const lt_lora_module *m, double b_factor, double **b_out,
                                double **a_out, lt_error *err);
#endif
