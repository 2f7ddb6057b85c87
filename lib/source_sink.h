/*
 * source_sink.h - how a format builds an lt_source and implements an
 * lt_sink: the structs behind the public handles and their builders.
 * Used by lib/ (the format-neutral halves) and formats/ (the plug-ins).
 */
#ifndef LT_SOURCE_SINK_H
#define LT_SOURCE_SINK_H

#include "kv.h"

/* ---- sources: how formats build them (lib/source.c) ---- */

struct lti_source_ops {
    /* Read len bytes at off of tensor t (bounds already checked). */
    lt_status (*read)(lt_source *src, const lt_tensor_info *t, uint64_t off,
                      void *dst, size_t len, lt_error *err);
    /* Optional: the same bytes in place (a mapping), or NULL. */
    const void *(*borrow)(lt_source *src, const lt_tensor_info *t, uint64_t off, size_t len);
    void (*release)(lt_source *src, const lt_tensor_info *t, const void *p, size_t len);
    /* Free the format's private state. */
    void (*close)(void *impl);
};

struct lt_source {
    const char *format;               /* static string                      */
    char *path;
    const struct lti_source_ops *ops;
    void *impl;                       /* the format's private state         */
    lt_tensor_info *tensors;
    size_t n_tensors, cap_tensors;
    lti_strmap by_name;
    char **meta_keys, **meta_values;
    size_t n_meta, cap_meta;
    char **files;
    size_t n_files, cap_files;
    lti_kv_table kvs;                 /* typed metadata (lib/kv.h)          */
};

lt_source *lti_source_new(const char *format, const char *path,
                         const struct lti_source_ops *ops, lt_error *err);
/* Append a tensor; computes n_elems and n_bytes with overflow checks.
 * LT_ERR_INVALID naming `file_path` on duplicate names, bad dims, overflow
 * or a shape that is not a whole number of blocks. */
lt_status lti_source_add_tensor(lt_source *src, const char *file_path,
                               const char *name, lt_dtype dtype, uint32_t n_dims,
                               const uint64_t *shape, uint64_t offset,
                               uint32_t file_index, lt_error *err);
lt_status lti_source_add_meta(lt_source *src, const char *key, const char *value,
                             lt_error *err);
lt_status lti_source_add_file(lt_source *src, const char *path, lt_error *err);

/* Bytes [off, off + len) of tensor i in place, or NULL when the format
 * cannot lend them (then lt_source_read); give them back with
 * lti_source_release once used.  Thread-safe. */
const void *lti_source_borrow(lt_source *src, size_t i, uint64_t off, size_t len);
void lti_source_release(lt_source *src, size_t i, const void *p, size_t len);

/* Read all of float tensor i as doubles into a malloc'd array (adapter
 * factors: small).  NaN or Inf values are LT_ERR_INVALID naming the
 * tensor; quantized GGUF tensors are dequantized. */
lt_status lti_source_read_all_f64(lt_source *src, size_t i, double **out, lt_error *err);




/* Element count of a shape, overflow-checked. */
bool lti_shape_elems(uint32_t n_dims, const uint64_t *shape, uint64_t *out);

/* ---- sinks: how formats implement them (lib/sink.c) ---- */

typedef struct lti_sink_tensor {
    char *name;
    lt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[LT_MAX_DIMS];
    uint64_t n_elems, n_bytes;
    uint64_t offset;       /* absolute file offset, set by the format's begin */
    uint32_t file_index;   /* shard, set by the format's begin                */
} lti_sink_tensor;

struct lti_sink_ops {
    lt_status (*begin)(lt_sink *sink, lt_error *err);
    lt_status (*write)(lt_sink *sink, const lti_sink_tensor *t, uint64_t off,
                       const void *data, size_t len, lt_error *err);
    lt_status (*commit)(lt_sink *sink, lt_error *err);
    void (*abort)(lt_sink *sink);   /* remove temp files, free impl          */
    bool typed_kvs;                 /* the file holds typed key-value pairs  */
    /* Optional: vet a typed pair before it is stored (a key the format
     * gives a meaning, such as GGUF's general.alignment).  VALUE as
     * lt_sink_set_kv / _array take it; ARRAY tells which. */
    lt_status (*check_kv)(lt_sink *sink, const char *key, int type, const void *value, bool array,
                          lt_error *err);
};

struct lt_sink {
    const char *format;
    char *path;
    lt_sink_options opts;
    const struct lti_sink_ops *ops;
    void *impl;
    lti_sink_tensor *tensors;
    size_t n_tensors, cap_tensors;
    lti_strmap by_name;
    char **meta_keys, **meta_values;
    size_t n_meta, cap_meta;
    lti_kv_out *kvs;                  /* typed pairs, in the order first set */
    size_t n_kvs, cap_kvs;
    bool begun;
};

lt_sink *lti_sink_new(const char *format, const char *path,
                     const lt_sink_options *opts, const struct lti_sink_ops *ops,
                     lt_error *err);

#endif
