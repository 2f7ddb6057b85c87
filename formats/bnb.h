/*
 * bnb.h - what the two bitsandbytes files share; not part of any public API.
 *
 *   bnb.c       finding the quantized weights of a safetensors checkpoint
 *               written by transformers + bitsandbytes, checking their
 *               quantization state, lti_format_bnb, lt_source_tensor_quant
 *   bnb_read.c  the read op: dequantizing a byte range, streamed
 *
 * The facts (layout, arithmetic, tables) are in spec/bnb.md.
 */
#ifndef LT_FORMATS_BNB_H
#define LT_FORMATS_BNB_H

#include "format.h"
#include "source_sink.h"

/* Inner tensors a quantized weight is made of (indexes into the inner
 * source); BNB_ABSENT when the part does not exist. */
enum {
    BNB_PART_WEIGHT,           /* packed 4-bit U8, or the int8 weight       */
    BNB_PART_ABSMAX,           /* 4-bit: F32 (or U8 with double quant)      */
    BNB_PART_QUANT_MAP,        /* 4-bit: F32 [16]                           */
    BNB_PART_NESTED_ABSMAX,    /* 4-bit double quant: F32                   */
    BNB_PART_NESTED_QUANT_MAP, /* 4-bit double quant: F32 [256]             */
    BNB_PART_STATE,            /* 4-bit: the JSON blob (U8)                 */
    BNB_PART_SCB,              /* int8: F32 row scales                      */
    BNB_PART_WEIGHT_FORMAT,    /* int8: optional, 0 = row-major             */
    BNB_N_PARTS
};
#define BNB_ABSENT ((size_t)-1)

typedef enum bnb_kind { BNB_NF4, BNB_FP4, BNB_INT8 } bnb_kind;

typedef struct bnb_tensor {
    bnb_kind kind;
    size_t part[BNB_N_PARTS];
    uint64_t n_elems;          /* logical elements                          */
    uint64_t blocksize;        /* 4-bit: elements per absmax                */
    bool nested;               /* 4-bit: absmax itself quantized            */
    uint64_t nested_blocksize; /* absmax values per nested absmax           */
    float nested_offset;       /* added to every dequantized absmax         */
    float code[16];            /* 4-bit code table, checked against bnb's   */
    float nested_code[256];    /* double quant: the 8-bit table, from file  */
    uint64_t cols;             /* int8: elements per row (per SCB value)    */
    lt_dtype out;              /* the dtype the tensor reads as             */
} bnb_tensor;

typedef struct bnb_impl {
    lt_source *inner;          /* the safetensors (single or sharded) source */
    long *quant_of;            /* per tensor: index into quants, or -1       */
    size_t *inner_of;          /* per tensor: the inner tensor it reads      */
    bnb_tensor *quants;
    size_t n_quants;
} bnb_impl;

extern const struct lti_source_ops lti_bnb_source_ops;

#endif
