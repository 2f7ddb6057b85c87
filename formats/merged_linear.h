/*
 * merged_linear.h - merged layers (loralib's MergedLinear, PEFT <= 0.3's
 * enable_lora) as one plain LoRA on the fused weight (spec/loralib.md),
 * shared by the loralib reader (formats/loralib.c) and the PEFT reader
 * (formats/peft.c).
 */
#ifndef LT_MERGED_LINEAR_H
#define LT_MERGED_LINEAR_H

#include "format.h"

/* Replace AD's source by an in-memory one that owns it and reads each of
 * its tensors by reference under the same index, so modules can be given
 * computed factors next to the file's.  The new source keeps the old
 * source's format name.  Returns it (owned by AD), or NULL with err set. */
lt_source *lti_adapter_wrap_source(lt_adapter *ad, lt_error *err);

/* The layout of one merged layer. */
typedef struct lti_merged_groups {
    const bool *mask;     /* groups of the fused output rows, in order       */
    size_t n_groups;      /* contiguous equal row blocks (loralib, PEFT 0.3) */
    uint32_t r;           /* rank per group: the scale is alpha / r          */
    double alpha;         /* NaN when unknown                                */
} lti_merged_groups;

/* Expand module M of AD (whose source MEM came from
 * lti_adapter_wrap_source): its lora_A [R, in] stacks the enabled groups'
 * factors; its lora_B [O', c] (or [O', c, 1], a kernel-1 Conv1d) holds
 * R / c diagonal blocks (the grouped conv1d of loralib's merge_AB) whose
 * O' rows go, in order, to the rows of the enabled groups (zero_pad).  M
 * becomes a Linear module of rank R on the fused weight [out, in], out =
 * O' / enabled x n_groups, with lora_B [out, R] built in memory
 * (block-diagonal, zero rows for disabled groups, B's dtype), scale
 * alpha / r and alpha = alpha x R / r (so alpha / rank is the same scale,
 * checked exactly).  n_params stays the file's element count. */
lt_status lti_merged_linear_expand(lt_adapter *ad, lt_source *mem, lt_lora_module *m,
                                   const lti_merged_groups *g, lt_error *err);

#endif
