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

#include "safetensors.h" /* lti_st_show */

#define GGUF_VERSION_WRITTEN 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 63

/* A typed pair, its value already encoded as it goes in the file after the
 * u32 type: the scalar, or u32 element type + u64 count + elements. */
struct out_kv {
    char *key;
    uint32_t type;
    unsigned char *value;
    size_t value_len;
};

struct gguf_writer {
    struct out_kv *kvs;
    size_t n_kvs, cap_kvs;
    uint64_t alignment;
    lti_wfile file;
    bool created;
};

/* A growing byte buffer; `failed` sticks after an allocation failure. */
struct bytes {
    unsigned char *data;
    size_t len, cap;
    bool failed;
};

static void put(struct bytes *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (!lti_grow((void **)&b->data, &b->cap, b->len + n + 1, 1)) {
        b->failed = true;
        return;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_le(struct bytes *b, uint64_t v, unsigned n)
{
    unsigned char tmp[8];
    for (unsigned i = 0; i < n; i++)
        tmp[i] = (unsigned char)(v >> (8 * i));
    put(b, tmp, n);
}

static void put_string(struct bytes *b, const char *s)
{
    size_t n = strlen(s);
    put_le(b, n, 8);
    put(b, s, n);
}

/* Element k of a C array of `type` (as lt_sink_set_kv documents), encoded
 * little-endian. */
static void put_element(struct bytes *b, int type, const void *values, size_t k)
{
    switch (type) {
    case LT_GGUF_U8: put_le(b, ((const uint8_t *)values)[k], 1); break;
    case LT_GGUF_I8: put_le(b, (uint8_t)((const int8_t *)values)[k], 1); break;
    case LT_GGUF_U16: put_le(b, ((const uint16_t *)values)[k], 2); break;
    case LT_GGUF_I16: put_le(b, (uint16_t)((const int16_t *)values)[k], 2); break;
    case LT_GGUF_U32: put_le(b, ((const uint32_t *)values)[k], 4); break;
    case LT_GGUF_I32: put_le(b, (uint32_t)((const int32_t *)values)[k], 4); break;
    case LT_GGUF_U64: put_le(b, ((const uint64_t *)values)[k], 8); break;
    case LT_GGUF_I64: put_le(b, (uint64_t)((const int64_t *)values)[k], 8); break;
    case LT_GGUF_BOOL: put_le(b, ((const bool *)values)[k] ? 1 : 0, 1); break;
    case LT_GGUF_F32: {
        uint32_t bits;
        memcpy(&bits, (const float *)values + k, 4);
        put_le(b, bits, 4);
        break;
    }
    case LT_GGUF_F64: {
        uint64_t bits;
        memcpy(&bits, (const double *)values + k, 8);
        put_le(b, bits, 8);
        break;
    }
    case LT_GGUF_STRING: put_string(b, ((const char *const *)values)[k]); break;
    }
}

/* ------------------------------------------------------------------ */
/* Key-value pairs on any sink                                          */
/* ------------------------------------------------------------------ */

static const struct lti_sink_ops gguf_sink_ops;

static lt_status store_kv(lt_sink *sink, const char *key, uint32_t type, struct bytes *value,
                          lt_error *err)
{
    struct gguf_writer *w = sink->impl;
    if (value->failed)
        return lti_fail_nomem(err, sink->path);
    for (size_t i = 0; i < w->n_kvs; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].value);
            w->kvs[i].type = type;
            w->kvs[i].value = value->data;
            w->kvs[i].value_len = value->len;
            return LT_OK;
        }
    }
    char *copy = lti_strdup(key);
    if (!copy || !lti_grow((void **)&w->kvs, &w->cap_kvs, w->n_kvs + 1, sizeof *w->kvs)) {
        free(copy);
        free(value->data);
        return lti_fail_nomem(err, sink->path);
    }
    w->kvs[w->n_kvs++] = (struct out_kv){
        .key = copy, .type = type, .value = value->data, .value_len = value->len};
    return LT_OK;
}

/* What both setters check first. */
static lt_status check_kv_call(lt_sink *sink, const char *key, int type, const void *value,
                               lt_error *err)
{
    if (sink->begun)
        return lti_fail(err, LT_ERR_USAGE, "%s: key '%s' set after the header was written",
                       sink->path, key);
    if (!key || !value || (lti_gguf_fixed_size(type) == 0 && type != LT_GGUF_STRING))
        return lti_fail(err, LT_ERR_USAGE, "%s: key '%s': bad value type %d or no value",
                       sink->path, key ? key : "(null)", type);
    return LT_OK;
}

lt_status lt_sink_set_kv(lt_sink *sink, const char *key, int type, const void *value,
                         lt_error *err)
{
    lt_status s = check_kv_call(sink, key, type, value, err);
    if (s != LT_OK)
        return s;
    if (sink->ops != &gguf_sink_ops) {
        if (type == LT_GGUF_STRING)
            return lt_sink_set_meta(sink, key, value, err);
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: %s output holds only string metadata; "
                       "key '%s' has type %s", sink->path, sink->format, key,
                       lt_gguf_type_name(type));
    }
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a = type == LT_GGUF_U32 ? *(const uint32_t *)value : 0;
        if (a == 0 || (a & (a - 1)) != 0)
            return lti_fail(err, LT_ERR_USAGE, "%s: general.alignment must be a u32 power of "
                           "two", sink->path);
        ((struct gguf_writer *)sink->impl)->alignment = a;
    }
    struct bytes b = {0};
    const char *one[1] = {value};
    put_element(&b, type, type == LT_GGUF_STRING ? (const void *)one : value, 0);
    return store_kv(sink, key, (uint32_t)type, &b, err);
}

lt_status lt_sink_set_kv_array(lt_sink *sink, const char *key, int elem_type,
                               const void *values, size_t count, lt_error *err)
{
    static const char none[1];
    lt_status s = check_kv_call(sink, key, elem_type, count ? values : none, err);
    if (s != LT_OK)
        return s;
    if (sink->ops != &gguf_sink_ops)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: %s output holds only string metadata; "
                       "key '%s' is an array", sink->path, sink->format, key);
    if (strcmp(key, "general.alignment") == 0)
        return lti_fail(err, LT_ERR_USAGE, "%s: general.alignment must be a u32 power of two",
                       sink->path);
    struct bytes b = {0};
    put_le(&b, (uint32_t)elem_type, 4);
    put_le(&b, count, 8);
    for (size_t k = 0; k < count; k++)
        put_element(&b, elem_type, values, k);
    return store_kv(sink, key, LT_GGUF_ARRAY, &b, err);
}

/* ------------------------------------------------------------------ */
/* The writer                                                           */
/* ------------------------------------------------------------------ */

static void writer_free(lt_sink *sink)
{
    struct gguf_writer *w = sink->impl;
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kvs; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value);
    }
    free(w->kvs);
    free(w);
    sink->impl = NULL;
}

static lt_status check_writable(const lt_sink *sink, lt_error *err)
{
    for (size_t i = 0; i < sink->n_tensors; i++) {
        const lti_sink_tensor *t = &sink->tensors[i];
        const char *name = lti_st_show(t->name).text;
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

static bool is_typed_key(const struct gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kvs; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return true;
    return false;
}

/* The header and the padding after it; sets every tensor's absolute
 * offset.  *data_bytes gets the size of the data section. */
static lt_status build_header(lt_sink *sink, struct bytes *h, uint64_t *data_bytes, lt_error *err)
{
    struct gguf_writer *w = sink->impl;
    size_t n_meta = 0;
    for (size_t i = 0; i < sink->n_meta; i++)
        n_meta += !is_typed_key(w, sink->meta_keys[i]);
    put(h, "GGUF", 4);
    put_le(h, GGUF_VERSION_WRITTEN, 4);
    put_le(h, sink->n_tensors, 8);
    put_le(h, w->n_kvs + n_meta, 8);
    for (size_t i = 0; i < w->n_kvs; i++) {
        put_string(h, w->kvs[i].key);
        put_le(h, w->kvs[i].type, 4);
        put(h, w->kvs[i].value, w->kvs[i].value_len);
    }
    for (size_t i = 0; i < sink->n_meta; i++) {
        if (is_typed_key(w, sink->meta_keys[i]))
            continue;
        put_string(h, sink->meta_keys[i]);
        put_le(h, LT_GGUF_STRING, 4);
        put_string(h, sink->meta_values[i]);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < sink->n_tensors; i++) {
        lti_sink_tensor *t = &sink->tensors[i];
        put_string(h, t->name);
        put_le(h, t->n_dims, 4);
        for (uint32_t d = t->n_dims; d-- > 0;)
            put_le(h, t->shape[d], 8);
        put_le(h, (uint32_t)lt_dtype_ggml_id(t->dtype), 4);
        put_le(h, offset, 8);
        t->offset = offset; /* relative until the header length is known */
        uint64_t padded, pad = (w->alignment - t->n_bytes % w->alignment) % w->alignment;
        if (!lti_add_u64(t->n_bytes, pad, &padded) || !lti_add_u64(offset, padded, &offset))
            return lti_fail(err, LT_ERR_USAGE, "%s: tensor data adds up to more than 2^64 bytes",
                           sink->path);
    }
    while (!h->failed && h->len % w->alignment != 0)
        put(h, "", 1);
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
    struct bytes header = {0};
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
    .begin = gguf_begin, .write = gguf_write, .commit = gguf_commit, .abort = gguf_abort};


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

/* Size of one C value of a GGUF type, as lt_sink_set_kv takes it. */
static size_t c_value_size(int type)
{
    switch (type) {
    case LT_GGUF_U8: case LT_GGUF_I8: return 1;
    case LT_GGUF_BOOL: return sizeof(bool);
    case LT_GGUF_U16: case LT_GGUF_I16: return 2;
    case LT_GGUF_U32: case LT_GGUF_I32: case LT_GGUF_F32: return 4;
    case LT_GGUF_STRING: return sizeof(const char *);
    default: return 8;
    }
}

/* Element j of key i as the C value lt_sink_set_kv takes, at out. */
static bool read_c_value(const lt_source *src, size_t i, uint64_t j, int type, void *out)
{
    uint64_t u;
    int64_t v;
    double d;
    bool b;
    switch (type) {
    case LT_GGUF_U8: if (!lt_source_kv_u64(src, i, j, &u)) return false; *(uint8_t *)out = (uint8_t)u; return true;
    case LT_GGUF_U16: if (!lt_source_kv_u64(src, i, j, &u)) return false; *(uint16_t *)out = (uint16_t)u; return true;
    case LT_GGUF_U32: if (!lt_source_kv_u64(src, i, j, &u)) return false; *(uint32_t *)out = (uint32_t)u; return true;
    case LT_GGUF_U64: if (!lt_source_kv_u64(src, i, j, &u)) return false; *(uint64_t *)out = u; return true;
    case LT_GGUF_I8: if (!lt_source_kv_i64(src, i, j, &v)) return false; *(int8_t *)out = (int8_t)v; return true;
    case LT_GGUF_I16: if (!lt_source_kv_i64(src, i, j, &v)) return false; *(int16_t *)out = (int16_t)v; return true;
    case LT_GGUF_I32: if (!lt_source_kv_i64(src, i, j, &v)) return false; *(int32_t *)out = (int32_t)v; return true;
    case LT_GGUF_I64: if (!lt_source_kv_i64(src, i, j, &v)) return false; *(int64_t *)out = v; return true;
    case LT_GGUF_F32: if (!lt_source_kv_f64(src, i, j, &d)) return false; *(float *)out = (float)d; return true;
    case LT_GGUF_F64: if (!lt_source_kv_f64(src, i, j, &d)) return false; *(double *)out = d; return true;
    case LT_GGUF_BOOL: if (!lt_source_kv_bool(src, i, j, &b)) return false; *(bool *)out = b; return true;
    case LT_GGUF_STRING: {
        size_t len;
        const char *str = lt_source_kv_str(src, i, j, &len);
        *(const char **)out = str;
        return str && strlen(str) == len; /* our strings end at NUL */
    }
    default: return false;
    }
}

lt_status lt_sink_copy_kvs(lt_sink *sink, const lt_source *src, lt_error *err)
{
    return lt_sink_copy_kvs_prefix(sink, src, "", err);
}

lt_status lt_sink_copy_kvs_prefix(lt_sink *sink, const lt_source *src, const char *prefix, lt_error *err)
{
    for (size_t i = 0; i < lt_source_kv_count(src); i++) {
        const char *key = lt_source_kv_key(src, i);
        if (strncmp(key, prefix, strlen(prefix)) != 0)
            continue;
        int type = lt_source_kv_type(src, i);
        bool array = type == LT_GGUF_ARRAY;
        int elem = array ? lt_source_kv_elem_type(src, i) : type;
        uint64_t n = array ? lt_source_kv_len(src, i) : 1;
        size_t size = c_value_size(elem);
        unsigned char *values = malloc((size_t)n * size + 8);
        if (!values)
            return lti_fail_nomem(err, lt_source_path(src));
        bool ok = true;
        for (uint64_t j = 0; ok && j < n; j++)
            ok = read_c_value(src, i, j, elem, values + j * size);
        lt_status s;
        if (!ok)
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: key '%s' cannot be copied (a string with a NUL byte inside?)",
                        lt_source_path(src), key);
        else if (array)
            s = lt_sink_set_kv_array(sink, key, elem, values, (size_t)n, err);
        else
            s = lt_sink_set_kv(sink, key, type, elem == LT_GGUF_STRING ? *(const char **)values : (const void *)values,
                               err);
        free(values);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}
