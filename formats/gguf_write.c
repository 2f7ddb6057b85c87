/*
 * gguf_write.c - writing GGUF v3 files, and typed key-value pairs on sinks.
 *
 * lt_sink_begin lays the whole file out from the declared tensors (layout
 * in gguf.c and spec/gguf.md):
 *
 *   header   magic, version 3, n_tensors, n_kv, the pairs, the infos
 *   padding  zeros up to a multiple of the alignment: the data section
 *   data     each tensor at offset = running sum of PAD(n_bytes, alignment)
 *            over the tensors before it, in declared order (what ggml's
 *            reader requires), zeros between
 *
 * ne[] is the declared shape reversed (shape [out, in] -> ne [in, out]).
 * Pairs are written in the order first set with lt_sink_set_kv*, then the
 * string metadata set with lt_sink_set_meta whose keys were not set as
 * typed pairs.  The same input gives the same bytes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"

#define GGUF_VERSION_WRITTEN 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 63

struct gguf_writer {
    uint64_t alignment;
    lti_wfile file;
    bool created;
};

/* general.alignment sets the data alignment: a u32 power of two. */
static lt_status gguf_check_kv(lt_sink *sink, const char *key, int type, const void *value, bool array,
                               lt_error *err)
{
    if (strcmp(key, "general.alignment") != 0)
        return LT_OK;
    uint32_t a = !array && type == LT_GGUF_U32 ? *(const uint32_t *)value : 0;
    if (a == 0 || (a & (a - 1)) != 0)
        return lti_fail(err, LT_ERR_USAGE, "%s: general.alignment must be a u32 power of two", sink->path);
    ((struct gguf_writer *)sink->impl)->alignment = a;
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* The writer                                                           */
/* ------------------------------------------------------------------ */

static void writer_free(lt_sink *sink)
{
    struct gguf_writer *w = sink->impl;
    if (!w)
        return;
    free(w);
    sink->impl = NULL;
}

static lt_status check_writable(const lt_sink *sink, lt_error *err)
{
    for (size_t i = 0; i < sink->n_tensors; i++) {
        const lti_sink_tensor *t = &sink->tensors[i];
        const char *name = lti_show(t->name).text;
        if (lt_dtype_ggml_id(t->dtype) < 0)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which GGUF "
                           "cannot store", sink->path, name, lt_dtype_name(t->dtype));
        if (t->n_dims > GGUF_MAX_DIMS)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' has %" PRIu32 " dimensions,"
                           " more than the %d GGUF allows", sink->path, name, t->n_dims,
                           GGUF_MAX_DIMS);
        if (strlen(t->name) > GGUF_MAX_NAME)
            return lti_fail(err, LT_ERR_USAGE, "%s: tensor name '%s' is longer than the %d bytes "
                           "GGUF allows", sink->path, name, GGUF_MAX_NAME);
        uint64_t row = t->n_dims ? t->shape[t->n_dims - 1] : 1;
        if (row % lt_dtype_block_elems(t->dtype) != 0)
            return lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s': rows of %" PRIu64 " elements "
                           "are not whole %s blocks", sink->path, name, row,
                           lt_dtype_name(t->dtype));
    }
    return LT_OK;
}

static bool is_typed_key(const lt_sink *sink, const char *key)
{
    for (size_t i = 0; i < sink->n_kvs; i++)
        if (strcmp(sink->kvs[i].key, key) == 0)
            return true;
    return false;
}

/* The header and the padding after it; sets every tensor's absolute
 * offset.  *data_bytes gets the size of the data section. */
static lt_status build_header(lt_sink *sink, lti_bytes *h, uint64_t *data_bytes, lt_error *err)
{
    struct gguf_writer *w = sink->impl;
    size_t n_meta = 0;
    for (size_t i = 0; i < sink->n_meta; i++)
        n_meta += !is_typed_key(sink, sink->meta_keys[i]);
    lti_bytes_put(h, "GGUF", 4);
    lti_bytes_put_le(h, GGUF_VERSION_WRITTEN, 4);
    lti_bytes_put_le(h, sink->n_tensors, 8);
    lti_bytes_put_le(h, sink->n_kvs + n_meta, 8);
    for (size_t i = 0; i < sink->n_kvs; i++) {
        lti_bytes_put_string(h, sink->kvs[i].key);
        lti_bytes_put_le(h, sink->kvs[i].type, 4);
        lti_bytes_put(h, sink->kvs[i].value, sink->kvs[i].value_len);
    }
    for (size_t i = 0; i < sink->n_meta; i++) {
        if (is_typed_key(sink, sink->meta_keys[i]))
            continue;
        lti_bytes_put_string(h, sink->meta_keys[i]);
        lti_bytes_put_le(h, LT_GGUF_STRING, 4);
        lti_bytes_put_string(h, sink->meta_values[i]);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < sink->n_tensors; i++) {
        lti_sink_tensor *t = &sink->tensors[i];
        lti_bytes_put_string(h, t->name);
        lti_bytes_put_le(h, t->n_dims, 4);
        for (uint32_t d = t->n_dims; d-- > 0;)
            lti_bytes_put_le(h, t->shape[d], 8);
        lti_bytes_put_le(h, (uint32_t)lt_dtype_ggml_id(t->dtype), 4);
        lti_bytes_put_le(h, offset, 8);
        t->offset = offset; /* relative until the header length is known */
        uint64_t padded, pad = (w->alignment - t->n_bytes % w->alignment) % w->alignment;
        if (!lti_add_u64(t->n_bytes, pad, &padded) || !lti_add_u64(offset, padded, &offset))
            return lti_fail(err, LT_ERR_USAGE, "%s: tensor data adds up to more than 2^64 bytes",
                           sink->path);
    }
    while (!h->failed && h->len % w->alignment != 0)
        lti_bytes_put(h, "", 1);
    if (h->failed)
        return lti_fail_nomem(err, sink->path);
    for (size_t i = 0; i < sink->n_tensors; i++)
        sink->tensors[i].offset += h->len;
    *data_bytes = offset;
    return LT_OK;
}

static lt_status gguf_begin(lt_sink *sink, lt_error *err)
{
    struct gguf_writer *w = sink->impl;
    lti_bytes header = {0};
    uint64_t data_bytes = 0, file_size;
    lt_status s = check_writable(sink, err);
    if (s == LT_OK)
        s = build_header(sink, &header, &data_bytes, err);
    if (s == LT_OK && !lti_add_u64(header.len, data_bytes, &file_size))
        s = lti_fail(err, LT_ERR_USAGE, "%s: file would exceed 2^64 bytes", sink->path);
    if (s == LT_OK) {
        s = lti_wfile_create(&w->file, sink->path, err);
        w->created = s == LT_OK;
        w->file.durable = sink->opts.fsync;
    }
    if (s == LT_OK)
        s = lti_wfile_pwrite(&w->file, 0, header.data, header.len, err);
    /* size the file now: padding and tensors never written stay zeros */
    if (s == LT_OK && ftruncate(w->file.fd, (off_t)file_size) != 0)
        s = lti_fail_errno(err, sink->path, "cannot size output file");
    free(header.data);
    if (s != LT_OK && w->created) {
        lti_wfile_abort(&w->file);
        w->created = false;
    }
    return s;
}

static lt_status gguf_write(lt_sink *sink, const lti_sink_tensor *t, uint64_t off,
                            const void *data, size_t len, lt_error *err)
{
    struct gguf_writer *w = sink->impl;
    return lti_wfile_pwrite(&w->file, t->offset + off, data, len, err);
}

static lt_status gguf_commit(lt_sink *sink, lt_error *err)
{
    struct gguf_writer *w = sink->impl;
    lt_status s = lti_wfile_commit(&w->file, err);
    w->created = false; /* committed, or lti_wfile_commit removed its temporary */
    if (s == LT_OK)
        writer_free(sink);
    return s;
}

static void gguf_abort(lt_sink *sink)
{
    struct gguf_writer *w = sink->impl;
    if (!w)
        return;
    if (w->created)
        lti_wfile_abort(&w->file);
    writer_free(sink);
}

static const struct lti_sink_ops gguf_sink_ops = {
    .begin = gguf_begin, .write = gguf_write, .commit = gguf_commit, .abort = gguf_abort,
    .typed_kvs = true, .check_kv = gguf_check_kv};

lt_sink *lti_gguf_sink_create(const char *path, const lt_sink_options *opts, lt_error *err)
{
    if (opts && opts->shard_size > 0) {
        lti_fail(err, LT_ERR_USAGE, "%s: GGUF output cannot be sharded", path);
        return NULL;
    }
    lt_sink *sink = lti_sink_new("gguf", path, opts, &gguf_sink_ops, err);
    if (!sink)
        return NULL;
    struct gguf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        lti_fail_nomem(err, path);
        lt_sink_abort(sink);
        return NULL;
    }
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    w->file.fd = -1;
    sink->impl = w;
    return sink;
}
