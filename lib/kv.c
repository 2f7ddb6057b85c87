/* kv.c - typed metadata (lib/kv.h): the getters of a source's pairs, the
 * setters of a sink's, and copying them from one to the other. */
#include <stdlib.h>
#include <string.h>

#include "kv.h"
#include "source_sink.h"

static const char *const type_names[] = {

    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

const char *lt_gguf_type_name(int type)
{
    if (type < 0 || (size_t)type >= sizeof type_names / sizeof type_names[0])
        return "?";
    return type_names[type];
}

static uint64_t load_le(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

/* ---- tables ---- */

lti_kv *lti_kv_table_add(lti_kv_table *t, char *key, bool *duplicate)
{
    if (!lti_grow((void **)&t->items, &t->cap, t->n + 1, sizeof *t->items)) {
        free(key);
        return NULL;
    }
    lti_kv *kv = &t->items[t->n++];
    memset(kv, 0, sizeof *kv);
    kv->key = key;
    int put = lti_strmap_put(&t->index, key, (long)(t->n - 1));
    *duplicate = put == 0;
    return put < 0 ? NULL : kv;
}

void lti_kv_table_free(lti_kv_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->items[i].key);
        free(t->items[i].data);
        free(t->items[i].strings);
    }
    free(t->items);
    lti_strmap_free(&t->index);
    memset(t, 0, sizeof *t);
}

/* ---- encoding ---- */

void lti_bytes_put(lti_bytes *b, const void *p, size_t n)
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

void lti_bytes_put_le(lti_bytes *b, uint64_t v, unsigned n)
{
    unsigned char tmp[8];
    for (unsigned i = 0; i < n; i++)
        tmp[i] = (unsigned char)(v >> (8 * i));
    lti_bytes_put(b, tmp, n);
}

void lti_bytes_put_string(lti_bytes *b, const char *s)
{
    size_t n = strlen(s);
    lti_bytes_put_le(b, n, 8);
    lti_bytes_put(b, s, n);
}

/* Element k of a C array of `type` (as lt_sink_set_kv documents), encoded
 * little-endian. */
static void put_element(lti_bytes *b, int type, const void *values, size_t k)
{
    switch (type) {
    case LT_GGUF_U8: lti_bytes_put_le(b, ((const uint8_t *)values)[k], 1); break;
    case LT_GGUF_I8: lti_bytes_put_le(b, (uint8_t)((const int8_t *)values)[k], 1); break;
    case LT_GGUF_U16: lti_bytes_put_le(b, ((const uint16_t *)values)[k], 2); break;
    case LT_GGUF_I16: lti_bytes_put_le(b, (uint16_t)((const int16_t *)values)[k], 2); break;
    case LT_GGUF_U32: lti_bytes_put_le(b, ((const uint32_t *)values)[k], 4); break;
    case LT_GGUF_I32: lti_bytes_put_le(b, (uint32_t)((const int32_t *)values)[k], 4); break;
    case LT_GGUF_U64: lti_bytes_put_le(b, ((const uint64_t *)values)[k], 8); break;
    case LT_GGUF_I64: lti_bytes_put_le(b, (uint64_t)((const int64_t *)values)[k], 8); break;
    case LT_GGUF_BOOL: lti_bytes_put_le(b, ((const bool *)values)[k] ? 1 : 0, 1); break;
    case LT_GGUF_F32: {
        uint32_t bits;
        memcpy(&bits, (const float *)values + k, 4);
        lti_bytes_put_le(b, bits, 4);
        break;
    }
    case LT_GGUF_F64: {
        uint64_t bits;
        memcpy(&bits, (const double *)values + k, 8);
        lti_bytes_put_le(b, bits, 8);
        break;
    }
    case LT_GGUF_STRING: lti_bytes_put_string(b, ((const char *const *)values)[k]); break;
    }
}

/* ---- a source's pairs ---- */

/* Element j of pair i when it exists, else NULL. */
static const lti_kv *kv_at(const lt_source *src, size_t i, uint64_t j)
{
    if (!src || i >= src->kvs.n || j >= src->kvs.items[i].count)
        return NULL;
    return &src->kvs.items[i];
}

size_t lt_source_kv_count(const lt_source *src)
{
    return src ? src->kvs.n : 0;
}

const char *lt_source_kv_key(const lt_source *src, size_t i)
{
    return src && i < src->kvs.n ? src->kvs.items[i].key : NULL;
}

long lt_source_kv_find(const lt_source *src, const char *key)
{
    return src && key ? lti_strmap_get(&src->kvs.index, key) : -1;
}

int lt_source_kv_type(const lt_source *src, size_t i)
{
    return src && i < src->kvs.n ? (int)src->kvs.items[i].type : -1;
}

int lt_source_kv_elem_type(const lt_source *src, size_t i)
{
    return src && i < src->kvs.n ? (int)src->kvs.items[i].elem_type : -1;
}

uint64_t lt_source_kv_len(const lt_source *src, size_t i)
{
    return src && i < src->kvs.n ? src->kvs.items[i].count : 0;
}

/* Element j of an integer pair as a sign and magnitude; false when the type
 * is not an integer type. */
static bool integer_at(const lti_kv *kv, uint64_t j, bool *negative, uint64_t *magnitude)
{
    uint32_t size = lti_kv_fixed_size(kv->elem_type);
    bool is_signed;
    switch (kv->elem_type) {
    case LT_GGUF_U8: case LT_GGUF_U16: case LT_GGUF_U32: case LT_GGUF_U64:
        is_signed = false;
        break;
    case LT_GGUF_I8: case LT_GGUF_I16: case LT_GGUF_I32: case LT_GGUF_I64:
        is_signed = true;
        break;
    default:
        return false;
    }
    uint64_t raw = load_le(kv->data + j * size, size);
    uint64_t sign_bit = 1ULL << (8 * size - 1);
    *negative = is_signed && (raw & sign_bit);
    if (*negative) /* two's complement magnitude within `size` bytes */
        *magnitude = (size == 8 ? 0 : (sign_bit << 1)) - raw;
    else
        *magnitude = raw;
    return true;
}

bool lt_source_kv_u64(const lt_source *src, size_t i, uint64_t j, uint64_t *out)
{
    const lti_kv *kv = kv_at(src, i, j);
    bool negative;
    uint64_t magnitude;
    if (!kv || !integer_at(kv, j, &negative, &magnitude) || negative)
        return false;
    *out = magnitude;
    return true;
}

bool lt_source_kv_i64(const lt_source *src, size_t i, uint64_t j, int64_t *out)
{
    const lti_kv *kv = kv_at(src, i, j);
    bool negative;
    uint64_t magnitude;
    if (!kv || !integer_at(kv, j, &negative, &magnitude))
        return false;
    if (!negative && magnitude > (uint64_t)INT64_MAX)
        return false;
    if (negative && magnitude > (uint64_t)INT64_MAX + 1)
        return false;
    *out = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
    return true;
}

bool lt_source_kv_f64(const lt_source *src, size_t i, uint64_t j, double *out)
{
    const lti_kv *kv = kv_at(src, i, j);
    if (!kv)
        return false;
    if (kv->elem_type == LT_GGUF_F32) {
        uint32_t bits = (uint32_t)load_le(kv->data + j * 4, 4);
        float f;
        memcpy(&f, &bits, 4);
        *out = f;
        return true;
    }
    if (kv->elem_type == LT_GGUF_F64) {
        uint64_t bits = load_le(kv->data + j * 8, 8);
        memcpy(out, &bits, 8);
        return true;
    }
    bool negative;
    uint64_t magnitude;
    if (!integer_at(kv, j, &negative, &magnitude))
        return false;
    *out = negative ? -(double)magnitude : (double)magnitude;
    return true;
}

bool lt_source_kv_bool(const lt_source *src, size_t i, uint64_t j, bool *out)
{
    const lti_kv *kv = kv_at(src, i, j);
    if (!kv || kv->elem_type != LT_GGUF_BOOL)
        return false;
    *out = kv->data[j] != 0;
    return true;
}

const char *lt_source_kv_str(const lt_source *src, size_t i, uint64_t j, size_t *len)
{
    const lti_kv *kv = kv_at(src, i, j);
    if (!kv || kv->elem_type != LT_GGUF_STRING)
        return NULL;
    if (len)
        *len = (size_t)kv->strings[j].len;
    return (const char *)kv->data + kv->strings[j].offset;
}

/* ---- a sink's pairs ---- */

static lt_status store_kv(lt_sink *sink, const char *key, uint32_t type, lti_bytes *value,
                          lt_error *err)
{
    if (value->failed)
        return lti_fail_nomem(err, sink->path);
    for (size_t i = 0; i < sink->n_kvs; i++) {
        if (strcmp(sink->kvs[i].key, key) == 0) {
            free(sink->kvs[i].value);
            sink->kvs[i].type = type;
            sink->kvs[i].value = value->data;
            sink->kvs[i].value_len = value->len;
            return LT_OK;
        }
    }
    char *copy = lti_strdup(key);
    if (!copy || !lti_grow((void **)&sink->kvs, &sink->cap_kvs, sink->n_kvs + 1, sizeof *sink->kvs)) {
        free(copy);
        free(value->data);
        return lti_fail_nomem(err, sink->path);
    }
    sink->kvs[sink->n_kvs++] = (lti_kv_out){
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
    if (!key || !value || (lti_kv_fixed_size(type) == 0 && type != LT_GGUF_STRING))
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
    if (!sink->ops->typed_kvs) {
        if (type == LT_GGUF_STRING)
            return lt_sink_set_meta(sink, key, value, err);
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: %s output holds only string metadata; "
                       "key '%s' has type %s", sink->path, sink->format, key,
                       lt_gguf_type_name(type));
    }
    if (sink->ops->check_kv && (s = sink->ops->check_kv(sink, key, type, value, false, err)) != LT_OK)
        return s;
    lti_bytes b = {0};
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
    if (!sink->ops->typed_kvs)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: %s output holds only string metadata; "
                       "key '%s' is an array", sink->path, sink->format, key);
    if (sink->ops->check_kv && (s = sink->ops->check_kv(sink, key, elem_type, values, true, err)) != LT_OK)
        return s;
    lti_bytes b = {0};
    lti_bytes_put_le(&b, (uint32_t)elem_type, 4);
    lti_bytes_put_le(&b, count, 8);
    for (size_t k = 0; k < count; k++)
        put_element(&b, elem_type, values, k);
    return store_kv(sink, key, LT_GGUF_ARRAY, &b, err);
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
    for (size_t i = 0; i < lt_source_kv_count(src); i++) {
        const char *key = lt_source_kv_key(src, i);
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
