/*
 * fuzz_weights.h - tiny valid safetensors files for the targets whose
 * input is a JSON file beside weights (adapter_config.json, the sharded
 * index).  Written once per process with the library's own sink, so the
 * fuzzed JSON is the only thing that varies.
 */
#ifndef LT_FUZZ_WEIGHTS_H
#define LT_FUZZ_WEIGHTS_H

#include "fuzz_common.h"

typedef struct fuzz_tensor {
    const char *name;
    lt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[3];
} fuzz_tensor;

/* Write PATH as a safetensors file holding TENSORS (values 0.25, 0.5, ...
 * so nothing is NaN). */
static inline void fuzz_write_weights(const char *path, const fuzz_tensor *tensors, size_t n)
{
    lt_error err;
    lt_sink *sink = lt_sink_create("safetensors", path, NULL, &err);
    FUZZ_ASSERT(sink != NULL);
    FUZZ_ASSERT(lt_sink_set_meta(sink, "format", "pt", &err) == LT_OK);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(lt_sink_add_tensor(sink, tensors[i].name, tensors[i].dtype, tensors[i].n_dims,
                                       tensors[i].shape, &err) == (long)i);
    FUZZ_ASSERT(lt_sink_begin(sink, &err) == LT_OK);
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = lt_sink_tensor_bytes(sink, (long)i);
        uint64_t elems = 1;
        for (uint32_t d = 0; d < tensors[i].n_dims; d++)
            elems *= tensors[i].shape[d];
        float *values = malloc((size_t)elems * sizeof *values + 1);
        unsigned char *raw = malloc((size_t)bytes + 1);
        FUZZ_ASSERT(values && raw);
        for (uint64_t e = 0; e < elems; e++)
            values[e] = 0.25f * (float)(e % 7 + 1);
        FUZZ_ASSERT(lt_convert_from_f32(tensors[i].dtype, values, raw, (size_t)elems) == LT_OK);
        FUZZ_ASSERT(lt_sink_write(sink, (long)i, 0, raw, (size_t)bytes, &err) == LT_OK);
        free(values);
        free(raw);
    }
    FUZZ_ASSERT(lt_sink_commit(sink, &err) == LT_OK);
}

#endif
