/*
 * loralib_conv.h - loralib's ConvLoRA layers (Conv1d/2d/3d wrappers) as one
 * conv LoRA module in PEFT's layout (spec/loralib.md, "ConvLoRA").
 */
#ifndef LT_LORALIB_CONV_H
#define LT_LORALIB_CONV_H

#include "format.h"

/* Read module M of AD (source MEM from lti_adapter_wrap_source; lora_A
 * [r k, in k], lora_B [out / groups k, r k], both 2-D) as a ConvLoRA on
 * the base conv weight W [out, in / groups, k, ...] (k the one int
 * kernel_size; r, in and groups from the shapes, refused with the reason
 * when the shapes decide no such layer or loralib's view is inconsistent).
 * Its delta (B @ A).view(W.shape) * alpha / r becomes a LT_MODULE_CONV
 * module of rank R = D r k whose factors are built in memory (the
 * factors' dtypes, bytes copied, zeros elsewhere): each W element is one
 * element of B @ A, so it is one product of a row of B and a column
 * block of A; A' [R, W.shape[1], kernel...] stacks A's columns shifted by
 * each of the D offsets at which rows of B @ A start inside rows of W,
 * B' [out, R, 1...] puts each row of B at its offset's block.  With
 * groups 1 that is B's bytes as [out, k r k] and A' block-diagonal (k
 * copies of A): PEFT's conv form.  conv_groups = groups; scale alpha / r,
 * alpha stored as alpha R / r (checked to give the same scale). */
lt_status lti_loralib_conv_expand(lt_source *mem, lt_lora_module *m, const lt_tensor_info *w, double alpha,
                                  lt_error *err);

#endif
