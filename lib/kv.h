/*
 * kv.h - typed metadata (the typed key-value pairs of GGUF headers) as a
 * core concept of sources and sinks: lib/ reads, stores and copies it
 * without knowing any file format.  Values are kept little-endian, fixed
 * types packed, strings as (u64 length, bytes), arrays as (u32 element
 * type, u64 count, elements): the layout GGUF files use, so a writer can
 * emit them as they are.
 */
#ifndef LT_KV_H
#define LT_KV_H

#include "core.h"

/* Bytes of one element of a fixed-size value type; 0 for string, array
 * and unknown ids. */
static inline uint32_t lti_kv_fixed_size(int type)
{
    switch (type) {
    case LT_GGUF_U8: case LT_GGUF_I8: case LT_GGUF_BOOL: return 1;
    case LT_GGUF_U16: case LT_GGUF_I16: return 2;
    case LT_GGUF_U32: case LT_GGUF_I32: case LT_GGUF_F32: return 4;
    case LT_GGUF_U64: case LT_GGUF_I64: case LT_GGUF_F64: return 8;
    default: return 0;
    }
}

/* ---- a growing byte buffer; `failed` sticks after an allocation failure ---- */
typedef struct lti_bytes {
    unsigned char *data;
    size_t len, cap;
    bool failed;
} lti_bytes;

void lti_bytes_put(lti_bytes *b, const void *p, size_t n);
void lti_bytes_put_le(lti_bytes *b, uint64_t v, unsigned n);
/* u64 length, then the bytes (no NUL) */
void lti_bytes_put_string(lti_bytes *b, const char *s);

/* ---- read side: the pairs a source was opened with ---- */

typedef struct lti_kv_string {
    uint64_t offset, len;
} lti_kv_string;

/* One pair.  Scalars are stored as one-element arrays so that every getter
 * has a single path. */
typedef struct lti_kv {
    char *key;
    uint32_t type;             /* LT_GGUF_* of the pair (ARRAY for arrays) */
    uint32_t elem_type;        /* element type; == type for a scalar       */
    uint64_t count;            /* elements; 1 for a scalar                 */
    unsigned char *data;       /* fixed types: count x size, LE; strings:
                                  the bytes, each followed by a NUL        */
    lti_kv_string *strings;    /* string types: count entries into data    */
} lti_kv;

typedef struct lti_kv_table {
    lti_kv *items;
    size_t n, cap;
    lti_strmap index;          /* key -> item (keys owned by items)        */
} lti_kv_table;

/* A new zeroed pair at the end of the table (key owned: freed with it; on
 * failure freed here), or NULL (out of memory).  Its index gets the key;
 * *duplicate is set when the key was already there (the pair is added all
 * the same, so the caller can report and free the table). */
lti_kv *lti_kv_table_add(lti_kv_table *t, char *key, bool *duplicate);
void lti_kv_table_free(lti_kv_table *t);

/* ---- write side: the pairs set on a sink, encoded ---- */

/* A typed pair, its value encoded as it follows the u32 type in a file. */
typedef struct lti_kv_out {
    char *key;
    uint32_t type;
    unsigned char *value;
    size_t value_len;
} lti_kv_out;

#endif
