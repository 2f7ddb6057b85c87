/*
 * gguf.c - the GGUF file format (ggml / llama.cpp): parsing and reading.
 *
 * Layout (spec/gguf.md has the full rules, numbered G1...; the code cites
 * them where it checks them).  All integers little-endian:
 *
 *   0   "GGUF"            magic
 *   4   u32 version       2 or 3 (1 and big-endian files are refused)
 *   8   i64 n_tensors
 *   16  i64 n_kv
 *   24  n_kv x { string key; u32 value_type; value }
 *           string = u64 length + that many bytes (no NUL)
 *           array  = u32 element type, u64 count, count elements
 *       n_tensors x { string name; u32 n_dims; n_dims x i64 ne;
 *                     u32 ggml type; u64 offset }
 *   PAD(end of the infos, alignment)   the data section; tensor bytes at
 *                                      data start + offset
 *
 * ne[] lists dimensions fastest first; lt_tensor_info.shape is outermost
 * first, so the reader reverses it (ne = [in, out] -> shape [out, in]).
 *
 * Every length and count in the header is untrusted: before anything is
 * allocated or read for it, it is compared with the bytes that remain in
 * the file, as ggml's gguf.cpp does.  All header bytes go through one small
 * buffered cursor so that a vocabulary of 150,000 strings is not 300,000
 * system calls.  The writer is in gguf_write.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_lora.h"
#include "format.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4       /* GGML_MAX_DIMS */
#define GGUF_MAX_NAME 63      /* GGML_MAX_NAME (64) less the NUL */
/* The fewest bytes a KV pair (empty key, u8 value) and a tensor info (empty
 * name, no dims) take: what a count is checked against before the loop. */
#define GGUF_MIN_KV_BYTES (8 + 4 + 1)
#define GGUF_MIN_INFO_BYTES (8 + 4 + 4 + 8)

/* ------------------------------------------------------------------ */
/* Value types                                                          */
/* ------------------------------------------------------------------ */


static uint64_t load_le(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = (v << 8) | p[i];
    return v;
}

/* ------------------------------------------------------------------ */
/* Parsed state                                                         */
/* ------------------------------------------------------------------ */

/* One tensor info as read, before it joins the source. */
struct info {
    char *name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    lt_dtype dtype;
    uint64_t offset, n_bytes;
    size_t order;                /* position in the file, breaks ties        */
};

/* What an open GGUF source keeps (lt_source.impl). */
struct gguf_file {
    lti_rfile file;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_start;         /* absolute offset of the data section      */
    lti_kv_table kvs;             /* handed to the source once open           */
};

static void gguf_file_free(struct gguf_file *g)
{
    if (!g)
        return;
    lti_kv_table_free(&g->kvs);
    if (g->file.fd >= 0 || g->file.path)
        lti_rfile_close(&g->file);
    free(g);
}

/* ------------------------------------------------------------------ */
/* The cursor: header bytes in order, with the bytes remaining known    */
/* ------------------------------------------------------------------ */

struct cursor {
    const char *path;
    const lti_rfile *file;
    uint64_t pos;                /* next byte to parse                       */
    uint64_t buf_start;          /* file offset of buf[0]                    */
    size_t buf_len;
    unsigned char buf[1 << 16];
};

static uint64_t remaining(const struct cursor *c)
{
    return c->file->size - c->pos;
}

/* G1: copy n bytes at the cursor into dst and advance; `what` names them
 * for the message when the file ends first. */
static lt_status take(struct cursor *c, void *dst, uint64_t n, const char *what, lt_error *err)
{
    if (n > remaining(c))
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: file truncated: %s at byte %" PRIu64 " needs %" PRIu64
                       " bytes, %" PRIu64 " remain", c->path, what, c->pos, n, remaining(c));
    unsigned char *out = dst;
    while (n > 0) {
        if (c->pos >= c->buf_start + c->buf_len) { /* the cursor only moves forward */
            if (n >= sizeof c->buf) { /* a big string: straight into dst */
                lt_status s = lti_rfile_pread(c->file, c->pos, out, (size_t)n, err);
                if (s == LT_OK)
                    c->pos += n;
                return s;
            }
            uint64_t want = remaining(c) < sizeof c->buf ? remaining(c) : sizeof c->buf;
            lt_status s = lti_rfile_pread(c->file, c->pos, c->buf, (size_t)want, err);
            if (s != LT_OK)
                return s;
            c->buf_start = c->pos;
            c->buf_len = (size_t)want;
        }
        size_t at = (size_t)(c->pos - c->buf_start);
        size_t chunk = c->buf_len - at;
        if (chunk > n)
            chunk = (size_t)n;
        memcpy(out, c->buf + at, chunk);
        out += chunk;
        c->pos += chunk;
        n -= chunk;
    }
    return LT_OK;
}

static lt_status take_u32(struct cursor *c, uint32_t *v, const char *what, lt_error *err)
{
    unsigned char b[4];
    lt_status s = take(c, b, 4, what, err);
    *v = (uint32_t)load_le(b, 4);
    return s;
}

static lt_status take_u64(struct cursor *c, uint64_t *v, const char *what, lt_error *err)
{
    unsigned char b[8];
    lt_status s = take(c, b, 8, what, err);
    *v = load_le(b, 8);
    return s;
}

/* G5: a string's u64 length, checked against what remains before anything
 * is allocated. */
static lt_status take_string_len(struct cursor *c, uint64_t *len, const char *what, lt_error *err)
{
    lt_status s = take_u64(c, len, what, err);
    if (s == LT_OK && *len > remaining(c))
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: %s: string length %" PRIu64 " at byte %" PRIu64
                       " runs past the end of the file (%" PRIu64 " bytes remain)",
                       c->path, what, *len, c->pos - 8, remaining(c));
    return s;
}

/* A string that becomes a C string (key, tensor name): malloc'd, NUL
 * terminated; one with a NUL inside is refused (G6, G11), since it would name
 * something else once cut there. */
static lt_status take_cstring(struct cursor *c, char **out, const char *what, lt_error *err)
{
    uint64_t len;
    lt_status s = take_string_len(c, &len, what, err);
    if (s != LT_OK)
        return s;
    char *text = malloc((size_t)len + 1);
    if (!text)
        return lti_fail_nomem(err, c->path);
    s = take(c, text, len, what, err);
    text[len] = '\0';
    if (s == LT_OK && strlen(text) != len)
        s = lti_fail(err, LT_ERR_INVALID, "%s: %s contains a NUL byte", c->path, what);
    if (s != LT_OK) {
        free(text);
        return s;
    }
    *out = text;
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* Key-value pairs                                                      */
/* ------------------------------------------------------------------ */

/* The value of kv (type fields set): count elements of elem_type. */
static lt_status take_value(struct cursor *c, lti_kv *kv, lt_error *err)
{
    const char *key = lti_show(kv->key).text;
    char what[200];
    snprintf(what, sizeof what, "value of key '%s'", key);
    uint32_t size = lti_kv_fixed_size(kv->elem_type);
    if (size > 0) {
        uint64_t bytes;
        if (!lti_mul_u64(kv->count, size, &bytes) || bytes > remaining(c)) /* G9 */
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: key '%s': array of %" PRIu64 " %s elements runs past the end "
                           "of the file (%" PRIu64 " bytes remain)", c->path, key, kv->count,
                           lt_gguf_type_name((int)kv->elem_type), remaining(c));
        kv->data = malloc(bytes ? (size_t)bytes : 1);
        if (!kv->data)
            return lti_fail_nomem(err, c->path);
        return take(c, kv->data, bytes, what, err);
    }
    /* strings: each takes at least its 8-byte length */
    uint64_t least;
    if (!lti_mul_u64(kv->count, 8, &least) || least > remaining(c)) /* G9 */
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: key '%s': array of %" PRIu64 " strings runs past the end of the "
                       "file (%" PRIu64 " bytes remain)", c->path, key, kv->count, remaining(c));
    kv->strings = malloc(kv->count ? (size_t)kv->count * sizeof *kv->strings : 1);
    if (!kv->strings)
        return lti_fail_nomem(err, c->path);
    size_t used = 0, cap = 0;
    for (uint64_t j = 0; j < kv->count; j++) {
        uint64_t len;
        lt_status s = take_string_len(c, &len, what, err);
        if (s != LT_OK)
            return s;
        /* len <= remaining, so the blob stays within the file's size */
        if (!lti_grow((void **)&kv->data, &cap, used + (size_t)len + 1, 1))
            return lti_fail_nomem(err, c->path);
        s = take(c, kv->data + used, len, what, err);
        if (s != LT_OK)
            return s;
        kv->data[used + len] = '\0';
        kv->strings[j] = (lti_kv_string){.offset = used, .len = len};
        used += (size_t)len + 1;
    }
    if (!kv->data && !(kv->data = calloc(1, 1)))
        return lti_fail_nomem(err, c->path);
    return LT_OK;
}

/* One pair at the cursor into g->kvs (G5-G9). */
static lt_status take_kv(struct cursor *c, struct gguf_file *g, uint64_t index, lt_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "key %" PRIu64, index);
    char *key_text = NULL;
    lt_status s = take_cstring(c, &key_text, what, err);
    if (s != LT_OK)
        return s;
    bool duplicate = false;
    lti_kv *kv = lti_kv_table_add(&g->kvs, key_text, &duplicate); /* freed with the rest */
    if (!kv)
        return lti_fail_nomem(err, c->path);
    if (duplicate) /* G6 */
        return lti_fail(err, LT_ERR_INVALID, "%s: duplicate key '%s'", c->path,
                       lti_show(kv->key).text);
    const char *key = lti_show(kv->key).text;
    snprintf(what, sizeof what, "type of key %" PRIu64, index);
    s = take_u32(c, &kv->type, what, err);
    if (s != LT_OK)
        return s;
    kv->elem_type = kv->type;
    kv->count = 1;
    if (kv->type == LT_GGUF_ARRAY) {
        s = take_u32(c, &kv->elem_type, what, err);
        if (s == LT_OK)
            s = take_u64(c, &kv->count, what, err);
        if (s != LT_OK)
            return s;
        if (kv->elem_type == LT_GGUF_ARRAY) /* G8 */
            return lti_fail(err, LT_ERR_INVALID, "%s: key '%s' is an array of arrays, which "
                           "GGUF does not allow", c->path, key);
    }
    if (lti_kv_fixed_size(kv->elem_type) == 0 && kv->elem_type != LT_GGUF_STRING) /* G7 */
        return lti_fail(err, LT_ERR_INVALID, "%s: key '%s' has unknown value type %" PRIu32,
                       c->path, key, kv->elem_type);
    return take_value(c, kv, err);
}

/* G10: general.alignment, when present, is a u32 power of two. */
static lt_status check_alignment(const char *path, struct gguf_file *g, lt_error *err)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    long at = lti_strmap_get(&g->kvs.index, "general.alignment");
    if (at < 0)
        return LT_OK;
    const lti_kv *kv = &g->kvs.items[at];
    if (kv->type != LT_GGUF_U32)
        return lti_fail(err, LT_ERR_INVALID, "%s: general.alignment has type %s, not u32", path,
                       lt_gguf_type_name((int)kv->type));
    uint32_t a = (uint32_t)load_le(kv->data, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return lti_fail(err, LT_ERR_INVALID, "%s: general.alignment %" PRIu32
                       " is not a power of two", path, a);
    g->alignment = a;
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* Tensor infos                                                         */
/* ------------------------------------------------------------------ */

/* One tensor info at the cursor (G11-G18). */
static lt_status take_info(struct cursor *c, lti_strmap *names, struct info *t, uint64_t index,
                           lt_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "name of tensor %" PRIu64, index);
    lt_status s = take_cstring(c, &t->name, what, err);
    if (s != LT_OK)
        return s;
    const char *name = lti_show(t->name).text;
    size_t name_len = strlen(t->name);
    if (name_len > GGUF_MAX_NAME) /* G11 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor %" PRIu64 " name '%s' is %zu bytes "
                       "long, more than the %d ggml allows", c->path, index, name, name_len,
                       GGUF_MAX_NAME);
    int put = lti_strmap_put(names, t->name, (long)index);
    if (put < 0)
        return lti_fail_nomem(err, c->path);
    if (put == 0) /* G12 */
        return lti_fail(err, LT_ERR_INVALID, "%s: duplicate tensor name '%s'", c->path, name);
    snprintf(what, sizeof what, "info of tensor %" PRIu64, index);
    s = take_u32(c, &t->n_dims, what, err);
    if (s != LT_OK)
        return s;
    if (t->n_dims > GGUF_MAX_DIMS) /* G13 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' has %" PRIu32 " dimensions, more "
                       "than the %d GGUF allows", c->path, name, t->n_dims, GGUF_MAX_DIMS);
    uint64_t n_elems = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        s = take_u64(c, &t->ne[d], what, err);
        if (s != LT_OK)
            return s;
        if (t->ne[d] > (uint64_t)INT64_MAX) /* G14 */
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' dimension %" PRIu32
                           " is negative (%" PRId64 ")", c->path, name, d, (int64_t)t->ne[d]);
        if (!lti_mul_u64(n_elems, t->ne[d], &n_elems))
            overflow = true;
    }
    if (overflow || n_elems > (uint64_t)INT64_MAX) /* G15 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': element count overflows 63 bits",
                       c->path, name);
    uint32_t ggml_type;
    s = take_u32(c, &ggml_type, what, err);
    if (s != LT_OK)
        return s;
    t->dtype = lt_dtype_from_ggml(ggml_type);
    if (t->dtype == LT_DTYPE_INVALID) /* G16 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' has unknown ggml type %" PRIu32,
                       c->path, name, ggml_type);
    uint32_t block = lt_dtype_block_elems(t->dtype);
    uint64_t ne0 = t->n_dims ? t->ne[0] : 1;
    if (ne0 % block != 0) /* G17 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': row of %" PRIu64 " elements is "
                       "not a multiple of the %s block size %" PRIu32, c->path, name, ne0,
                       lt_dtype_name(t->dtype), block);
    if (!lt_dtype_nbytes(t->dtype, n_elems, &t->n_bytes)) /* G15 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': size in bytes overflows 64 bits",
                       c->path, name);
    return take_u64(c, &t->offset, what, err);
}

static int compare_infos(const void *a, const void *b)
{
    const struct info *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* G19-G21 on infos sorted by offset: aligned, inside the file, and no two
 * tensors sharing a byte. */
static lt_status check_placement(const char *path, const struct gguf_file *g,
                                 const struct info *t, size_t n, lt_error *err)
{
    const struct info *prev = NULL; /* the non-empty tensor ending last */
    uint64_t prev_end = 0;
    for (size_t i = 0; i < n; i++) {
        const char *name = lti_show(t[i].name).text;
        if (t[i].offset % g->alignment != 0) /* G19 */
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' offset %" PRIu64 " is not a "
                           "multiple of the alignment %" PRIu64, path, name, t[i].offset,
                           g->alignment);
        uint64_t begin, end;
        if (!lti_add_u64(g->data_start, t[i].offset, &begin) ||
            !lti_add_u64(begin, t[i].n_bytes, &end) || end > g->file.size) /* G20 */
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' data (offset %" PRIu64 ", %"
                           PRIu64 " bytes) runs past the end of the file (%" PRIu64 " bytes, "
                           "data section at %" PRIu64 ")", path, name, t[i].offset,
                           t[i].n_bytes, g->file.size, g->data_start);
        if (t[i].n_bytes == 0)
            continue;
        if (prev && t[i].offset < prev_end) /* G21 */
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' (offset %" PRIu64 ") overlaps "
                           "tensor '%s' (ends at %" PRIu64 ")", path, name, t[i].offset,
                           lti_show(prev->name).text, prev_end);
        prev = &t[i];
        prev_end = t[i].offset + t[i].n_bytes;
    }
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* The whole header                                                     */
/* ------------------------------------------------------------------ */

/* G2-G4: magic, version, counts. */
static lt_status take_preamble(struct cursor *c, struct gguf_file *g, uint64_t *n_tensors,
                               uint64_t *n_kv, lt_error *err)
{
    char magic[4];
    lt_status s = take(c, magic, 4, "magic", err);
    if (s != LT_OK)
        return s;
    if (memcmp(magic, GGUF_MAGIC, 4) != 0) /* G2 */
        return lti_fail(err, LT_ERR_INVALID, "%s: not a GGUF file (magic is not \"GGUF\")",
                       c->path);
    s = take_u32(c, &g->version, "version", err);
    if (s != LT_OK)
        return s;
    if (g->version == 1) /* G3 */
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported", c->path);
    if (g->version != 0 && (g->version & 0xFFFF) == 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: big-endian GGUF is not supported", c->path);
    if (g->version != 2 && g->version != 3)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: GGUF version %" PRIu32 " is not supported "
                       "(only 2 and 3)", c->path, g->version);
    s = take_u64(c, n_tensors, "tensor count", err);
    if (s == LT_OK)
        s = take_u64(c, n_kv, "key-value count", err);
    if (s != LT_OK)
        return s;
    /* G4: counts are i64 in the file; each item takes a minimum size */
    const struct {
        uint64_t count;
        uint64_t least;
        const char *what;
    } counts[] = {{*n_kv, GGUF_MIN_KV_BYTES, "key-value"}, {*n_tensors, GGUF_MIN_INFO_BYTES, "tensor"}};
    for (size_t k = 0; k < 2; k++) {
        if (counts[k].count > (uint64_t)INT64_MAX)
            return lti_fail(err, LT_ERR_INVALID, "%s: %s count is negative (%" PRId64 ")",
                           c->path, counts[k].what, (int64_t)counts[k].count);
        uint64_t bytes;
        if (!lti_mul_u64(counts[k].count, counts[k].least, &bytes) || bytes > remaining(c))
            return lti_fail(err, LT_ERR_INVALID, "%s: %s count %" PRIu64 " needs more than the %"
                           PRIu64 " bytes left in the file", c->path, counts[k].what,
                           counts[k].count, remaining(c));
    }
    return LT_OK;
}

/* Parse and check the header of g->file; fills g and the infos (sorted by
 * offset). */
static lt_status parse_header(const char *path, struct gguf_file *g, struct info **out_infos,
                              size_t *out_n, lt_error *err)
{
    struct cursor *c = malloc(sizeof *c);
    if (!c)
        return lti_fail_nomem(err, path);
    *c = (struct cursor){.path = path, .file = &g->file};
    uint64_t n_tensors = 0, n_kv = 0;
    struct info *infos = NULL;
    size_t n_infos = 0, cap_infos = 0;
    lti_strmap names = {0};
    lt_status s = take_preamble(c, g, &n_tensors, &n_kv, err);
    for (uint64_t i = 0; s == LT_OK && i < n_kv; i++)
        s = take_kv(c, g, i, err);
    if (s == LT_OK)
        s = check_alignment(path, g, err);
    for (uint64_t i = 0; s == LT_OK && i < n_tensors; i++) {
        if (!lti_grow((void **)&infos, &cap_infos, n_infos + 1, sizeof *infos)) {
            s = lti_fail_nomem(err, path);
            break;
        }
        memset(&infos[n_infos], 0, sizeof *infos);
        infos[n_infos].order = n_infos;
        n_infos++;
        s = take_info(c, &names, &infos[n_infos - 1], i, err);
    }
    if (s == LT_OK) {
        /* G18: the data section starts at the next multiple of the alignment;
         * with no tensor data it may lie past the end (vocab-only files) */
        uint64_t pad = (g->alignment - c->pos % g->alignment) % g->alignment;
        g->data_start = c->pos + pad;
        if (n_infos > 1)
            qsort(infos, n_infos, sizeof *infos, compare_infos);
        s = check_placement(path, g, infos, n_infos, err);
    }
    lti_strmap_free(&names);
    free(c);
    *out_infos = infos;
    *out_n = n_infos;
    return s;
}

/* ------------------------------------------------------------------ */
/* The source                                                           */
/* ------------------------------------------------------------------ */

static lt_status gguf_read(lt_source *src, const lt_tensor_info *t, uint64_t off, void *dst,
                           size_t len, lt_error *err)
{
    const struct gguf_file *g = src->impl;
    uint64_t at;
    if (!lti_add_u64(g->data_start, t->offset, &at) || !lti_add_u64(at, off, &at))
        return lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s' has no valid location", src->path,
                       lti_show(t->name).text);
    return lti_rfile_pread(&g->file, at, dst, len, err);
}

static const void *gguf_borrow(lt_source *src, const lt_tensor_info *t, uint64_t off, size_t len)
{
    const struct gguf_file *g = src->impl;
    uint64_t at;
    if (!lti_add_u64(g->data_start, t->offset, &at) || !lti_add_u64(at, off, &at))
        return NULL;
    return lti_rfile_at(&g->file, at, len);
}

static void gguf_release(lt_source *src, const lt_tensor_info *t, const void *p, size_t len)
{
    (void)t;
    lti_rfile_release(&((const struct gguf_file *)src->impl)->file, p, len);
}

static void gguf_close(void *impl)
{
    gguf_file_free(impl);
}

static const struct lti_source_ops gguf_source_ops = {
    .read = gguf_read, .borrow = gguf_borrow, .release = gguf_release, .close = gguf_close};

/* String scalars go into the generic metadata too, so `inspect` shows them;
 * one holding a NUL would be cut short there and is left out. */
static lt_status add_string_meta(lt_source *src, lt_error *err)
{
    for (size_t i = 0; i < src->kvs.n; i++) {
        const lti_kv *kv = &src->kvs.items[i];
        if (kv->type != LT_GGUF_STRING)
            continue;
        const char *value = (const char *)kv->data;
        if (strlen(value) != kv->strings[0].len)
            continue;
        lt_status s = lti_source_add_meta(src, kv->key, value, err);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}

static lt_source *gguf_open(const char *path, lt_error *err)
{
    struct gguf_file *g = calloc(1, sizeof *g);
    if (!g) {
        lti_fail_nomem(err, path);
        return NULL;
    }
    g->file.fd = -1;
    struct info *infos = NULL;
    size_t n_infos = 0;
    lt_source *src = NULL;
    lt_status s = lti_rfile_open(&g->file, path, err);
    if (s == LT_OK)
        s = parse_header(path, g, &infos, &n_infos, err);
    if (s == LT_OK) {
        src = lti_source_new("gguf", path, &gguf_source_ops, err);
        s = src ? LT_OK : LT_ERR_NOMEM;
    }
    if (s == LT_OK) {
        src->impl = g;
        src->kvs = g->kvs; /* typed metadata is the source's own */
        memset(&g->kvs, 0, sizeof g->kvs);
        g = NULL; /* the source owns it now */
        s = lti_source_add_file(src, path, err);
    }
    for (size_t i = 0; s == LT_OK && i < n_infos; i++) {
        const struct info *t = &infos[i];
        uint64_t shape[GGUF_MAX_DIMS];
        for (uint32_t d = 0; d < t->n_dims; d++)
            shape[d] = t->ne[t->n_dims - 1 - d];
        s = lti_source_add_tensor(src, path, t->name, t->dtype, t->n_dims, shape, t->offset, 0,
                                 err);
    }
    if (s == LT_OK)
        s = add_string_meta(src, err);
    for (size_t i = 0; i < n_infos; i++)
        free(infos[i].name);
    free(infos);
    gguf_file_free(g);
    if (s != LT_OK) {
        lt_source_close(src);
        return NULL;
    }
    return src;
}

static int gguf_bid(const lti_probe *probe)
{
    if (probe->is_dir)
        return 0;
    if (probe->head_len >= 4 && memcmp(probe->head, GGUF_MAGIC, 4) == 0)
        return 100;
    /* a broken file named like one gets our error, not "unrecognized" */
    return lti_ends_with(probe->path, ".gguf") ? 10 : 0;
}

/* ------------------------------------------------------------------ */
/* Public key-value getters                                             */
/* ------------------------------------------------------------------ */

/* The GGUF state of src, or NULL for any other format. */
static const struct gguf_file *gguf_of(const lt_source *src)
{
    return src && src->ops == &gguf_source_ops ? src->impl : NULL;
}

uint32_t lt_source_gguf_version(const lt_source *src)
{
    const struct gguf_file *g = gguf_of(src);
    return g ? g->version : 0;
}

uint64_t lt_source_gguf_alignment(const lt_source *src)
{
    const struct gguf_file *g = gguf_of(src);
    return g ? g->alignment : 0;
}


const lti_format lti_format_gguf = {
    .name = "gguf",
    .bid = gguf_bid,
    .open = gguf_open,
    .create = lti_gguf_sink_create,
    .adapter_bid = gguf_bid,
    .open_adapter = lti_gguf_lora_open,
};
