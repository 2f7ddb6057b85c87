/*
 * surgery.h - what resize/combine (lib/surgery.c) and extract
 * (lib/extract.c) share.  Internal to lib/ (formats/convert.c reads factors through it).
 */
#ifndef LT_SURGERY_H
#define LT_SURGERY_H

#include "source_sink.h"

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
