/* sink.c - the format-neutral tensor sink: tensors are declared first so
 * the format can lay out the whole file, then written in any order. */
#include <stdlib.h>
#include <string.h>

#include "source_sink.h"

lt_sink *lti_sink_new(const char *format, const char *path,
                     const lt_sink_options *opts, const struct lti_sink_ops *ops,
                     lt_error *err)
{
    lt_sink *sink = calloc(1, sizeof *sink);
    if (!sink || !(sink->path = lti_strdup(path))) {
        free(sink);
        lti_fail_nomem(err, path);
        return NULL;
    }
    sink->format = format;
    sink->ops = ops;
    if (opts)
        sink->opts = *opts;
    return sink;
}

static void sink_free(lt_sink *sink)
{
    for (size_t i = 0; i < sink->n_tensors; i++)
        free(sink->tensors[i].name);
    free(sink->tensors);
    lti_strmap_free(&sink->by_name);
    for (size_t i = 0; i < sink->n_meta; i++) {
        free(sink->meta_keys[i]);
        free(sink->meta_values[i]);
    }
    free(sink->meta_keys);
    free(sink->meta_values);
    for (size_t i = 0; i < sink->n_kvs; i++) {
        free(sink->kvs[i].key);
        free(sink->kvs[i].value);
    }
    free(sink->kvs);
    free(sink->path);
    free(sink);
}

long lt_sink_add_tensor(lt_sink *sink, const char *name, lt_dtype dtype,
                        uint32_t n_dims, const uint64_t *shape, lt_error *err)
{
    if (sink->begun) {
        lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s' declared after the header was written",
                sink->path, name);
        return -1;
    }
    if (n_dims > LT_MAX_DIMS || dtype <= LT_DTYPE_INVALID || dtype >= LT_DTYPE_COUNT) {
        lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s': bad dtype or dimensions", sink->path, name);
        return -1;
    }
    lti_sink_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.n_dims = n_dims;
    memcpy(t.shape, shape, n_dims * sizeof *shape);
    if (!lti_shape_elems(n_dims, shape, &t.n_elems) || !lt_dtype_nbytes(dtype, t.n_elems, &t.n_bytes)) {
        lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s': shape overflows or is not whole %s blocks",
                sink->path, name, lt_dtype_name(dtype));
        return -1;
    }
    if (!lti_grow((void **)&sink->tensors, &sink->cap_tensors, sink->n_tensors + 1, sizeof t) ||
        !(t.name = lti_strdup(name))) {
        lti_fail_nomem(err, sink->path);
        return -1;
    }
    int put = lti_strmap_put(&sink->by_name, t.name, (long)sink->n_tensors);
    if (put <= 0) {
        free(t.name);
        if (put < 0)
            lti_fail_nomem(err, sink->path);
        else
            lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s' declared twice", sink->path, name);
        return -1;
    }
    sink->tensors[sink->n_tensors] = t;
    return (long)sink->n_tensors++;
}

lt_status lt_sink_set_meta(lt_sink *sink, const char *key, const char *value,
                           lt_error *err)
{
    if (sink->begun)
        return lti_fail(err, LT_ERR_USAGE, "%s: metadata set after the header was written", sink->path);
    char *v = lti_strdup(value);
    if (!v)
        return lti_fail_nomem(err, sink->path);
    for (size_t i = 0; i < sink->n_meta; i++) {
        if (strcmp(sink->meta_keys[i], key) == 0) {
            free(sink->meta_values[i]);
            sink->meta_values[i] = v;
            return LT_OK;
        }
    }
    char *k = lti_strdup(key);
    if (!k || !lti_grow((void **)&sink->meta_keys, &sink->cap_meta, sink->n_meta + 1, sizeof(char *))) {
        free(k);
        free(v);
        return lti_fail_nomem(err, sink->path);
    }
    char **values = realloc(sink->meta_values, sink->cap_meta * sizeof(char *));
    if (!values) {
        free(k);
        free(v);
        return lti_fail_nomem(err, sink->path);
    }
    sink->meta_values = values;
    sink->meta_keys[sink->n_meta] = k;
    sink->meta_values[sink->n_meta] = v;
    sink->n_meta++;
    return LT_OK;
}

lt_status lt_sink_begin(lt_sink *sink, lt_error *err)
{
    if (sink->begun)
        return lti_fail(err, LT_ERR_USAGE, "%s: sink already begun", sink->path);
    lt_status s = sink->ops->begin(sink, err);
    if (s == LT_OK)
        sink->begun = true;
    return s;
}

uint64_t lt_sink_tensor_bytes(const lt_sink *sink, long index)
{
    if (index < 0 || (size_t)index >= sink->n_tensors)
        return 0;
    return sink->tensors[index].n_bytes;
}

lt_status lt_sink_write(lt_sink *sink, long index, uint64_t off,
                        const void *data, size_t len, lt_error *err)
{
    if (!sink->begun || index < 0 || (size_t)index >= sink->n_tensors)
        return lti_fail(err, LT_ERR_USAGE, "%s: write to an undeclared tensor or before begin", sink->path);
    const lti_sink_tensor *t = &sink->tensors[index];
    uint64_t end;
    if (!lti_add_u64(off, len, &end) || end > t->n_bytes)
        return lti_fail(err, LT_ERR_USAGE, "%s: write past the end of tensor '%s'", sink->path, t->name);
    if (len == 0)
        return LT_OK;
    return sink->ops->write(sink, t, off, data, len, err);
}

lt_status lt_sink_commit(lt_sink *sink, lt_error *err)
{
    lt_status s;
    if (!sink->begun) {
        s = lt_sink_begin(sink, err);
        if (s != LT_OK) {
            lt_sink_abort(sink);
            return s;
        }
    }
    s = sink->ops->commit(sink, err);
    if (s != LT_OK)
        sink->ops->abort(sink);
    sink_free(sink);
    return s;
}

void lt_sink_abort(lt_sink *sink)
{
    if (!sink)
        return;
    sink->ops->abort(sink);
    sink_free(sink);
}
