/* source.c - the format-neutral tensor source: a list of tensor infos, a
 * name index, string metadata, and reads delegated to the format. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "source_sink.h"

lt_source *lti_source_new(const char *format, const char *path,
                         const struct lti_source_ops *ops, lt_error *err)
{
    lt_source *src = calloc(1, sizeof *src);
    if (!src || !(src->path = lti_strdup(path))) {
        free(src);
        lti_fail_nomem(err, path);
        return NULL;
    }
    src->format = format;
    src->ops = ops;
    return src;
}

void lt_source_close(lt_source *src)
{
    if (!src)
        return;
    if (src->ops && src->ops->close)
        src->ops->close(src->impl);
    for (size_t i = 0; i < src->n_tensors; i++)
        free((char *)src->tensors[i].name);
    free(src->tensors);
    lti_strmap_free(&src->by_name);
    for (size_t i = 0; i < src->n_meta; i++) {
        free(src->meta_keys[i]);
        free(src->meta_values[i]);
    }
    free(src->meta_keys);
    free(src->meta_values);
    for (size_t i = 0; i < src->n_files; i++)
        free(src->files[i]);
    free(src->files);
    lti_kv_table_free(&src->kvs);
    free(src->path);
    free(src);
}

bool lti_shape_elems(uint32_t n_dims, const uint64_t *shape, uint64_t *out)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if (!lti_mul_u64(n, shape[d], &n))
            return false;
    *out = n;
    return true;
}

lt_status lti_source_add_tensor(lt_source *src, const char *file_path,
                               const char *name, lt_dtype dtype, uint32_t n_dims,
                               const uint64_t *shape, uint64_t offset,
                               uint32_t file_index, lt_error *err)
{
    if (n_dims > LT_MAX_DIMS)
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' has %u dimensions (at most %d)",
                       file_path, name, n_dims, LT_MAX_DIMS);
    lt_tensor_info t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.n_dims = n_dims;
    memcpy(t.shape, shape, n_dims * sizeof *shape);
    t.offset = offset;
    t.file_index = file_index;
    if (!lti_shape_elems(n_dims, shape, &t.n_elems))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': shape overflows", file_path, name);
    if (!lt_dtype_nbytes(dtype, t.n_elems, &t.n_bytes))
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: tensor '%s': %llu elements are not a whole number of %s blocks or overflow",
                       file_path, name, (unsigned long long)t.n_elems, lt_dtype_name(dtype));
    if (!lti_grow((void **)&src->tensors, &src->cap_tensors, src->n_tensors + 1, sizeof t))
        return lti_fail_nomem(err, file_path);
    char *copy = lti_strdup(name);
    if (!copy)
        return lti_fail_nomem(err, file_path);
    int put = lti_strmap_put(&src->by_name, copy, (long)src->n_tensors);
    if (put <= 0) {
        free(copy);
        if (put < 0)
            return lti_fail_nomem(err, file_path);
        return lti_fail(err, LT_ERR_INVALID, "%s: duplicate tensor name '%s'", file_path, name);
    }
    t.name = copy;
    src->tensors[src->n_tensors++] = t;
    return LT_OK;
}

lt_status lti_source_add_meta(lt_source *src, const char *key, const char *value,
                             lt_error *err)
{
    if (!lti_grow((void **)&src->meta_keys, &src->cap_meta, src->n_meta + 1, sizeof(char *)))
        return lti_fail_nomem(err, src->path);
    char **values = realloc(src->meta_values, src->cap_meta * sizeof(char *));
    if (!values)
        return lti_fail_nomem(err, src->path);
    src->meta_values = values;
    char *k = lti_strdup(key), *v = lti_strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return lti_fail_nomem(err, src->path);
    }
    src->meta_keys[src->n_meta] = k;
    src->meta_values[src->n_meta] = v;
    src->n_meta++;
    return LT_OK;
}

lt_status lti_source_add_file(lt_source *src, const char *path, lt_error *err)
{
    char *copy = lti_strdup(path);
    if (!copy || !lti_grow((void **)&src->files, &src->cap_files, src->n_files + 1, sizeof(char *))) {
        free(copy);
        return lti_fail_nomem(err, path);
    }
    src->files[src->n_files++] = copy;
    return LT_OK;
}

const char *lt_source_format(const lt_source *src) { return src->format; }
const char *lt_source_path(const lt_source *src) { return src->path; }
size_t lt_source_tensor_count(const lt_source *src) { return src->n_tensors; }
const lt_tensor_info *lt_source_tensor(const lt_source *src, size_t i) { return &src->tensors[i]; }
long lt_source_find(const lt_source *src, const char *name) { return lti_strmap_get(&src->by_name, name); }
size_t lt_source_meta_count(const lt_source *src) { return src->n_meta; }
const char *lt_source_meta_key(const lt_source *src, size_t i) { return src->meta_keys[i]; }
const char *lt_source_meta_value(const lt_source *src, size_t i) { return src->meta_values[i]; }
size_t lt_source_file_count(const lt_source *src) { return src->n_files; }
const char *lt_source_file_path(const lt_source *src, size_t k) { return src->files[k]; }

const char *lt_source_meta_get(const lt_source *src, const char *key)
{
    for (size_t i = 0; i < src->n_meta; i++)
        if (strcmp(src->meta_keys[i], key) == 0)
            return src->meta_values[i];
    return NULL;
}

lt_status lt_source_read(lt_source *src, size_t i, uint64_t off, void *dst,
                         size_t len, lt_error *err)
{
    if (i >= src->n_tensors)
        return lti_fail(err, LT_ERR_USAGE, "%s: tensor index %zu out of range", src->path, i);
    const lt_tensor_info *t = &src->tensors[i];
    uint64_t end;
    if (!lti_add_u64(off, len, &end) || end > t->n_bytes)
        return lti_fail(err, LT_ERR_USAGE, "%s: read of tensor '%s' past its end", src->path, t->name);
    if (len == 0)
        return LT_OK;
    return src->ops->read(src, t, off, dst, len, err);
}

lt_status lt_source_read_f32(lt_source *src, size_t i, uint64_t first,
                             uint64_t count, float *dst, lt_error *err)
{
    if (i >= src->n_tensors)
        return lti_fail(err, LT_ERR_USAGE, "%s: tensor index %zu out of range", src->path, i);
    const lt_tensor_info *t = &src->tensors[i];
    if (!lt_dtype_is_float(t->dtype))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, not a float type",
                       src->path, t->name, lt_dtype_name(t->dtype));
    uint32_t elem = lt_dtype_block_bytes(t->dtype);
    uint64_t end;
    if (!lti_add_u64(first, count, &end) || end > t->n_elems)
        return lti_fail(err, LT_ERR_USAGE, "%s: read of tensor '%s' past its end", src->path, t->name);
    if (t->dtype == LT_F32)
        return lt_source_read(src, i, first * 4, dst, (size_t)count * 4, err);
    /* Convert through a bounded stack buffer so a caller's f32 buffer is
     * all the memory a read needs. */
    unsigned char raw[16384];
    size_t per_chunk = sizeof raw / elem;
    while (count > 0) {
        size_t n = count < per_chunk ? (size_t)count : per_chunk;
        lt_status s = lt_source_read(src, i, first * elem, raw, n * elem, err);
        if (s != LT_OK)
            return s;
        lt_convert_to_f32(t->dtype, raw, dst, n);
        dst += n;
        first += n;
        count -= n;
    }
    return LT_OK;
}

lt_status lti_source_read_all_f64(lt_source *src, size_t i, double **out, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(src, i);
    bool quantized = lt_dtype_block_elems(t->dtype) > 1;
    if (t->n_elems > SIZE_MAX / sizeof(double) || (!lt_dtype_is_float(t->dtype) && !quantized))
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' of type %s cannot be read as numbers",
                       src->path, t->name, lt_dtype_name(t->dtype));
    double *values = malloc((size_t)t->n_elems * sizeof(double) + 1);
    void *raw = malloc((size_t)t->n_bytes + 1);
    float *dequantized = quantized ? malloc((size_t)t->n_elems * sizeof(float) + 1) : NULL;
    lt_status s = values && raw && (!quantized || dequantized) ? LT_OK : lti_fail_nomem(err, src->path);
    if (s == LT_OK)
        s = lt_source_read(src, i, 0, raw, (size_t)t->n_bytes, err);
    if (s == LT_OK && quantized) {
        if (lt_dequantize_row(t->dtype, raw, dequantized, (size_t)t->n_elems) != LT_OK)
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s': cannot dequantize %s", src->path, t->name,
                        lt_dtype_name(t->dtype));
        for (uint64_t k = 0; s == LT_OK && k < t->n_elems; k++)
            values[k] = dequantized[k];
    } else if (s == LT_OK) {
        lt_convert_to_f64(t->dtype, raw, values, (size_t)t->n_elems);
    }
    free(raw);
    free(dequantized);
    for (uint64_t k = 0; s == LT_OK && k < t->n_elems; k++)
        if (!isfinite(values[k]))
            s = lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' holds NaN or Inf", src->path, t->name);
    if (s != LT_OK) {
        free(values);
        return s;
    }
    *out = values;
    return LT_OK;
}

const void *lti_source_borrow(lt_source *src, size_t i, uint64_t off, size_t len)
{
    uint64_t end;
    if (i >= src->n_tensors || !src->ops->borrow || !lti_add_u64(off, len, &end) || end > src->tensors[i].n_bytes)
        return NULL;
    return src->ops->borrow(src, &src->tensors[i], off, len);
}

void lti_source_release(lt_source *src, size_t i, const void *p, size_t len)
{
    if (p && i < src->n_tensors && src->ops->release)
        src->ops->release(src, &src->tensors[i], p, len);
}
