/*
 * bnb.c - a safetensors checkpoint written by transformers + bitsandbytes
 * (spec/bnb.md), opened as a source whose tensors are the dequantized
 * weights:
 *
 *   4-bit:  W (U8, two 4-bit codes a byte), W.absmax, W.quant_map,
 *           [W.nested_absmax, W.nested_quant_map,]
 *           W.quant_state.bitsandbytes__nf4|fp4 (U8: JSON bytes)
 *   int8:   P.weight (I8 [out, in]), P.SCB (F32 [out]), [P.weight_format]
 *
 * The file (or the shards of a sharded model) is opened with the
 * safetensors reader; this source wraps it: each quantized weight appears
 * once, under W's name, with its logical shape and the quant state's dtype,
 * and the auxiliary tensors disappear.  Every other tensor passes through.
 * Every number taken from the file (JSON fields, shapes, byte counts,
 * block sizes, the nested offset) is checked before it is used.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnb.h"
#include "safetensors.h"

#define STATE_SUFFIX ".quant_state.bitsandbytes__"
#define SCB_SUFFIX ".SCB"
/* The JSON blob holds a handful of fields; anything longer is not one. */
#define MAX_STATE_BYTES 65536

static const char *const part_suffix[BNB_N_PARTS] = {
    [BNB_PART_ABSMAX] = ".absmax",
    [BNB_PART_QUANT_MAP] = ".quant_map",
    [BNB_PART_NESTED_ABSMAX] = ".nested_absmax",
    [BNB_PART_NESTED_QUANT_MAP] = ".nested_quant_map",
};

/* bitsandbytes' 4-bit code tables (functional.py get_4bit_type): NF4 as
 * listed, FP4 as listed divided by its largest magnitude, 12, in float32. */
static void builtin_code(bnb_kind kind, float code[16])
{
    static const double nf4[16] = {
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
        -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
        0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
        0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0};
    static const float fp4[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, 0, -0.0625f, -8, -12, -4, -6, -2, -3};
    for (int i = 0; i < 16; i++)
        code[i] = kind == BNB_NF4 ? (float)nf4[i] : fp4[i] / 12.0f;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static long find_joined(const lt_source *inner, const char *prefix, const char *suffix)
{
    char *name = lti_asprintf("%s%s", prefix, suffix);
    long i = name ? lt_source_find(inner, name) : -1;
    free(name);
    return i;
}

/* ---- checking one quantized weight ---- */

typedef struct open_ctx {
    lt_source *inner;
    const char *path;
    bool *consumed;       /* per inner tensor */
    lt_error *err;
} open_ctx;

static lt_status bad(open_ctx *c, const char *name, const char *what)
{
    return lti_fail(c->err, LT_ERR_INVALID, "%s: bitsandbytes weight '%s': %s", c->path,
                   lti_show(name).text, what);
}

/* A part must exist (or not), have dtype want and count elements. */
static lt_status check_part(open_ctx *c, const char *w, long index, const char *suffix, lt_dtype want,
                            uint64_t count)
{
    char shown[64];
    snprintf(shown, sizeof shown, *suffix ? "'%s'" : "the packed weight%s", suffix);
    if (index < 0) {
        char *msg = lti_asprintf("its quantization state lacks %s", shown);
        lt_status s = bad(c, w, msg ? msg : "a part is missing");
        free(msg);
        return s;
    }
    const lt_tensor_info *t = lt_source_tensor(c->inner, (size_t)index);
    if (t->dtype != want || t->n_elems != count) {
        char *msg = lti_asprintf("%s is %s with %llu elements, expected %s with %llu", shown,
                                 lt_dtype_name(t->dtype), (unsigned long long)t->n_elems,
                                 lt_dtype_name(want), (unsigned long long)count);
        lt_status s = bad(c, w, msg ? msg : "a part has the wrong size");
        free(msg);
        return s;
    }
    return LT_OK;
}

static bool json_uint(const cJSON *item, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0 ||
        item->valuedouble > (double)max || item->valuedouble != floor(item->valuedouble))
        return false;
    *out = (uint64_t)item->valuedouble;
    return true;
}

static lt_dtype torch_dtype(const cJSON *item)
{
    const char *s = cJSON_IsString(item) ? item->valuestring : "";
    return strcmp(s, "bfloat16") == 0 ? LT_BF16 : strcmp(s, "float16") == 0 ? LT_F16
           : strcmp(s, "float32") == 0 ? LT_F32 : LT_DTYPE_INVALID;
}

/* The JSON blob: quant_type, blocksize, dtype, shape, and with double
 * quant nested_blocksize, nested_dtype, nested_offset.  Fills q and the
 * logical shape. */
static lt_status parse_state(open_ctx *c, const char *w, const char *json, size_t len, bnb_tensor *q,
                             uint32_t *n_dims, uint64_t *shape)
{
    static const char *const known[] = {"quant_type", "blocksize", "dtype", "shape",
                                        "nested_blocksize", "nested_dtype", "nested_offset"};
    size_t bad_at;
    if (!lti_st_utf8_valid(json, len, &bad_at))
        return bad(c, w, "quant_state is not UTF-8");
    cJSON *root = cJSON_ParseWithLength(json, len);
    lt_status s = LT_OK;
    if (!cJSON_IsObject(root)) {
        s = bad(c, w, "quant_state is not a JSON object");
        goto done;
    }
    for (const cJSON *item = root->child; item; item = item->next) {
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++)
            ok |= strcmp(item->string, known[k]) == 0;
        for (const cJSON *other = item->next; ok && other; other = other->next)
            ok = strcmp(item->string, other->string) != 0;
        if (!ok) {
            s = bad(c, w, "quant_state has an unknown or repeated key");
            goto done;
        }
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "quant_type");
    const char *want = q->kind == BNB_NF4 ? "nf4" : "fp4";
    if (!cJSON_IsString(type) || strcmp(type->valuestring, want) != 0) {
        s = bad(c, w, "quant_state's quant_type disagrees with its name");
        goto done;
    }
    uint64_t bs;
    if (!json_uint(cJSON_GetObjectItemCaseSensitive(root, "blocksize"), 4096, &bs) || bs < 32 ||
        (bs & (bs - 1))) {
        s = bad(c, w, "quant_state's blocksize is not one of 32, 64, ..., 4096");
        goto done;
    }
    q->blocksize = bs;
    if ((q->out = torch_dtype(cJSON_GetObjectItemCaseSensitive(root, "dtype"))) == LT_DTYPE_INVALID) {
        s = bad(c, w, "quant_state's dtype is not bfloat16, float16 or float32");
        goto done;
    }
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(root, "shape");
    int nd = cJSON_IsArray(dims) ? cJSON_GetArraySize(dims) : -1;
    if (nd < 1 || nd > LT_MAX_DIMS) {
        s = bad(c, w, "quant_state's shape is not a list of 1 to 8 sizes");
        goto done;
    }
    *n_dims = (uint32_t)nd;
    for (int d = 0; d < nd; d++)
        if (!json_uint(cJSON_GetArrayItem(dims, d), 1ULL << 53, &shape[d])) {
            s = bad(c, w, "quant_state's shape holds a size that is not a whole number");
            goto done;
        }
    if (!lti_shape_elems(*n_dims, shape, &q->n_elems)) {
        s = bad(c, w, "quant_state's shape overflows");
        goto done;
    }
    const cJSON *nbs = cJSON_GetObjectItemCaseSensitive(root, "nested_blocksize");
    const cJSON *ndt = cJSON_GetObjectItemCaseSensitive(root, "nested_dtype");
    const cJSON *noff = cJSON_GetObjectItemCaseSensitive(root, "nested_offset");
    if (!q->nested) {
        if (nbs || ndt || noff)
            s = bad(c, w, "quant_state has nested fields but no nested_absmax");
        goto done;
    }
    if (!json_uint(nbs, 1u << 20, &q->nested_blocksize) || q->nested_blocksize == 0) {
        s = bad(c, w, "quant_state's nested_blocksize is missing or not a positive whole number");
        goto done;
    }
    /* bitsandbytes writes float32; another dtype would round absmax again */
    if (torch_dtype(ndt) != LT_F32) {
        s = bad(c, w, "quant_state's nested_dtype is not float32");
        goto done;
    }
    if (!cJSON_IsNumber(noff) || !isfinite(noff->valuedouble) || fabs(noff->valuedouble) > 3.4e38) {
        s = bad(c, w, "quant_state's nested_offset is not a finite float32 number");
        goto done;
    }
    q->nested_offset = (float)noff->valuedouble; /* torch.tensor(float) is float32 */
done:
    cJSON_Delete(root);
    return s;
}

static lt_status check_4bit(open_ctx *c, size_t state_index, bnb_tensor *q, char **w_out,
                            uint32_t *n_dims, uint64_t *shape)
{
    const lt_tensor_info *st = lt_source_tensor(c->inner, state_index);
    const char *at = strstr(st->name, STATE_SUFFIX);
    while (at && strstr(at + 1, STATE_SUFFIX))
        at = strstr(at + 1, STATE_SUFFIX);
    const char *type = at + strlen(STATE_SUFFIX);
    if (strcmp(type, "nf4") != 0 && strcmp(type, "fp4") != 0)
        return lti_fail(c->err, LT_ERR_UNSUPPORTED, "%s: '%s': bitsandbytes quant type '%s' is not nf4 or fp4",
                       c->path, lti_show(st->name).text, lti_show(type).text);
    q->kind = type[0] == 'n' ? BNB_NF4 : BNB_FP4;
    char *w = lti_strndup(st->name, (size_t)(at - st->name));
    if (!w)
        return lti_fail_nomem(c->err, c->path);
    *w_out = w;
    for (int p = 0; p < BNB_N_PARTS; p++)
        q->part[p] = BNB_ABSENT;
    q->part[BNB_PART_STATE] = state_index;
    long wi = lt_source_find(c->inner, w);
    long part[BNB_N_PARTS];
    for (int p = BNB_PART_ABSMAX; p <= BNB_PART_NESTED_QUANT_MAP; p++)
        part[p] = find_joined(c->inner, w, part_suffix[p]);
    q->nested = part[BNB_PART_NESTED_ABSMAX] >= 0 || part[BNB_PART_NESTED_QUANT_MAP] >= 0;
    if (st->dtype != LT_U8 || st->n_elems == 0 || st->n_elems > MAX_STATE_BYTES)
        return bad(c, w, "quant_state is not a U8 tensor of at most 65536 bytes");
    char *json = malloc((size_t)st->n_elems);
    if (!json)
        return lti_fail_nomem(c->err, c->path);
    lt_status s = lt_source_read(c->inner, state_index, 0, json, (size_t)st->n_elems, c->err);
    if (s == LT_OK)
        s = parse_state(c, w, json, (size_t)st->n_elems, q, n_dims, shape);
    free(json);
    if (s != LT_OK)
        return s;
    uint64_t packed = q->n_elems / 2 + q->n_elems % 2;
    uint64_t blocks = q->n_elems / q->blocksize + (q->n_elems % q->blocksize != 0);
    /* bitsandbytes' quant_storage may be another plain dtype (FSDP-QLoRA
     * saves BF16): its kernels view the bytes as U8, and so do we */
    const lt_tensor_info *wt = wi >= 0 ? lt_source_tensor(c->inner, (size_t)wi) : NULL;
    bool other_storage = wt && wt->dtype != LT_U8 && lt_dtype_block_elems(wt->dtype) == 1 &&
                         wt->n_bytes == packed;
    if ((!other_storage && (s = check_part(c, w, wi, "", LT_U8, packed)) != LT_OK) ||
        (s = check_part(c, w, part[BNB_PART_ABSMAX], ".absmax", q->nested ? LT_U8 : LT_F32, blocks)) != LT_OK ||
        (s = check_part(c, w, part[BNB_PART_QUANT_MAP], ".quant_map", LT_F32, 16)) != LT_OK)
        return s;
    if (q->nested) {
        uint64_t nested = blocks / q->nested_blocksize + (blocks % q->nested_blocksize != 0);
        if ((s = check_part(c, w, part[BNB_PART_NESTED_ABSMAX], ".nested_absmax", LT_F32, nested)) != LT_OK ||
            (s = check_part(c, w, part[BNB_PART_NESTED_QUANT_MAP], ".nested_quant_map", LT_F32, 256)) != LT_OK)
            return s;
        if ((s = lt_source_read_f32(c->inner, (size_t)part[BNB_PART_NESTED_QUANT_MAP], 0, 256, q->nested_code,
                                    c->err)) != LT_OK)
            return s;
    }
    /* bitsandbytes' CPU dequantization uses its own table, not the saved
     * one: a file whose table differs would be read differently by it */
    float saved[16];
    if ((s = lt_source_read_f32(c->inner, (size_t)part[BNB_PART_QUANT_MAP], 0, 16, saved, c->err)) != LT_OK)
        return s;
    builtin_code(q->kind, q->code);
    for (int k = 0; k < 16; k++)
        if (saved[k] != q->code[k])
            return bad(c, w, "quant_map differs from bitsandbytes' table for its quant_type");
    /* FP4 code 8 is sign bit + zero: the CUDA kernel (dDequantizeFP4Tree:
     * magnitude times -1) and the C++ scalar CPU kernel give -0.0 where the
     * Python table holds +0 (spec/bnb.md); read it as they do */
    if (q->kind == BNB_FP4)
        q->code[8] = -0.0f;
    q->part[BNB_PART_WEIGHT] = (size_t)wi;
    for (int p = BNB_PART_ABSMAX; p <= BNB_PART_NESTED_QUANT_MAP; p++)
        q->part[p] = part[p] >= 0 ? (size_t)part[p] : BNB_ABSENT;
    return LT_OK;
}

static lt_status check_int8(open_ctx *c, size_t scb_index, bnb_tensor *q, char **w_out, uint32_t *n_dims,
                            uint64_t *shape)
{
    const lt_tensor_info *scb = lt_source_tensor(c->inner, scb_index);
    char *prefix = lti_strndup(scb->name, strlen(scb->name) - strlen(SCB_SUFFIX));
    char *w = prefix ? lti_asprintf("%s.weight", prefix) : NULL;
    long wf = prefix ? find_joined(c->inner, prefix, ".weight_format") : -1;
    free(prefix);
    if (!w)
        return lti_fail_nomem(c->err, c->path);
    *w_out = w;
    for (int p = 0; p < BNB_N_PARTS; p++)
        q->part[p] = BNB_ABSENT;
    q->kind = BNB_INT8;
    long wi = lt_source_find(c->inner, w);
    if (wi < 0)
        return bad(c, w, "has SCB row scales but no weight");
    const lt_tensor_info *t = lt_source_tensor(c->inner, (size_t)wi);
    if (t->dtype != LT_I8 || t->n_dims != 2)
        return bad(c, w, "an LLM.int8 weight must be a 2-D I8 tensor");
    lt_status s = check_part(c, w, (long)scb_index, ".SCB", LT_F32, t->shape[0]);
    if (s != LT_OK)
        return s;
    if (wf >= 0) {
        /* transformers saves 0 (row-major), the only layout bitsandbytes loads */
        const lt_tensor_info *f = lt_source_tensor(c->inner, (size_t)wf);
        unsigned char raw[8] = {0};
        if (f->n_elems != 1 || f->n_bytes > sizeof raw || lt_dtype_is_float(f->dtype))
            return bad(c, w, "weight_format is not one integer");
        if ((s = lt_source_read(c->inner, (size_t)wf, 0, raw, (size_t)f->n_bytes, c->err)) != LT_OK)
            return s;
        for (size_t k = 0; k < sizeof raw; k++)
            if (raw[k])
                return bad(c, w, "weight_format is not 0 (row-major)");
        q->part[BNB_PART_WEIGHT_FORMAT] = (size_t)wf;
    }
    q->part[BNB_PART_WEIGHT] = (size_t)wi;
    q->part[BNB_PART_SCB] = scb_index;
    q->n_elems = t->n_elems;
    q->cols = t->shape[1];
    *n_dims = 2;
    shape[0] = t->shape[0];
    shape[1] = t->shape[1];
    return LT_OK;
}

/* ---- opening ---- */

static lt_source *open_inner(const char *path, lt_error *err)
{
    bool sharded;
    if (lti_is_dir(path)) {
        char *index = lti_path_join(path, LT_ST_INDEX_NAME);
        sharded = index && lti_is_file(index);
        free(index);
    } else {
        sharded = ends_with(path, ".index.json");
    }
    return sharded ? lti_format_safetensors_sharded.open(path, err) : lti_format_safetensors.open(path, err);
}

/* An LLM.int8 state names no dtype: its weights read as the dtype every
 * other float tensor of the model has (transformers loads the model in
 * one torch_dtype), or F32 when they disagree or there are none. */
static lt_dtype int8_dtype(const lt_source *inner, const bool *consumed, const bnb_impl *impl)
{
    lt_dtype common = LT_DTYPE_INVALID;
    for (size_t i = 0; i < lt_source_tensor_count(inner); i++) {
        const lt_tensor_info *t = lt_source_tensor(inner, i);
        bool quant_weight = false;
        for (size_t k = 0; k < impl->n_quants; k++)
            quant_weight |= impl->quants[k].part[BNB_PART_WEIGHT] == i;
        if (consumed[i] || quant_weight || !lt_dtype_is_float(t->dtype))
            continue;
        if (common != LT_DTYPE_INVALID && common != t->dtype)
            return LT_F32;
        common = t->dtype;
    }
    return common == LT_F16 || common == LT_BF16 ? common : LT_F32;
}

/* Marks a quantized weight's parts as used; false if one already was. */
static bool consume(open_ctx *c, const bnb_tensor *q)
{
    for (int p = 0; p < BNB_N_PARTS; p++) {
        if (q->part[p] == BNB_ABSENT)
            continue;
        if (c->consumed[q->part[p]])
            return false;
        c->consumed[q->part[p]] = true;
    }
    return true;
}

typedef struct pending {
    char *name;
    uint32_t n_dims;
    uint64_t shape[LT_MAX_DIMS];
} pending;

static lt_status find_quantized(open_ctx *c, bnb_impl *impl, pending **names)
{
    size_t n = lt_source_tensor_count(c->inner);
    for (size_t i = 0; i < n; i++) {
        const char *name = lt_source_tensor(c->inner, i)->name;
        bool is4 = strstr(name, STATE_SUFFIX) != NULL, is8 = ends_with(name, SCB_SUFFIX);
        if (!is4 && !is8)
            continue;
        bnb_tensor *grown = realloc(impl->quants, (impl->n_quants + 1) * sizeof *grown);
        pending *grown_names = grown ? realloc(*names, (impl->n_quants + 1) * sizeof **names) : NULL;
        if (grown)
            impl->quants = grown;
        if (!grown_names)
            return lti_fail_nomem(c->err, c->path);
        *names = grown_names;
        bnb_tensor *q = &impl->quants[impl->n_quants];
        pending *p = &(*names)[impl->n_quants];
        memset(q, 0, sizeof *q);
        memset(p, 0, sizeof *p);
        impl->n_quants++;
        lt_status s = is4 ? check_4bit(c, i, q, &p->name, &p->n_dims, p->shape)
                          : check_int8(c, i, q, &p->name, &p->n_dims, p->shape);
        if (s != LT_OK)
            return s;
        if (!consume(c, q))
            return bad(c, p->name, "its tensors also belong to another quantized weight");
    }
    /* quantization parts nobody claimed: bitsandbytes would refuse them too */
    for (size_t i = 0; i < n; i++) {
        const char *name = lt_source_tensor(c->inner, i)->name;
        for (int k = BNB_PART_ABSMAX; !c->consumed[i] && k <= BNB_PART_NESTED_QUANT_MAP; k++)
            if (ends_with(name, part_suffix[k]) && strstr(name, ".weight."))
                return lti_fail(c->err, LT_ERR_INVALID, "%s: '%s' is bitsandbytes quantization state "
                               "without a quant_state blob", c->path, lti_show(name).text);
    }
    for (size_t k = 0; k < impl->n_quants; k++)
        if (impl->quants[k].kind == BNB_INT8)
            impl->quants[k].out = int8_dtype(c->inner, c->consumed, impl);
    return LT_OK;
}

static lt_status build(lt_source *src, open_ctx *c, bnb_impl *impl, const pending *names)
{
    lt_source *inner = c->inner;
    size_t n = lt_source_tensor_count(inner);
    impl->quant_of = malloc((n ? n : 1) * sizeof *impl->quant_of);
    impl->inner_of = malloc((n ? n : 1) * sizeof *impl->inner_of);
    if (!impl->quant_of || !impl->inner_of)
        return lti_fail_nomem(c->err, c->path);
    for (size_t i = 0; i < n; i++) {
        const lt_tensor_info *t = lt_source_tensor(inner, i);
        long quant = -1;
        for (size_t k = 0; k < impl->n_quants; k++)
            if (impl->quants[k].part[BNB_PART_WEIGHT] == i)
                quant = (long)k;
        if (c->consumed[i] && quant < 0)
            continue;
        size_t at = lt_source_tensor_count(src);
        lt_status s = quant < 0 ? lti_source_add_tensor(src, c->path, t->name, t->dtype, t->n_dims, t->shape,
                                                       t->offset, t->file_index, c->err)
                                : lti_source_add_tensor(src, c->path, names[quant].name, impl->quants[quant].out,
                                                       names[quant].n_dims, names[quant].shape, t->offset,
                                                       t->file_index, c->err);
        if (s != LT_OK)
            return s;
        impl->quant_of[at] = quant;
        impl->inner_of[at] = i;
    }
    for (size_t i = 0; i < lt_source_meta_count(inner); i++)
        if (lti_source_add_meta(src, lt_source_meta_key(inner, i), lt_source_meta_value(inner, i), c->err) != LT_OK)
            return c->err->status;
    for (size_t k = 0; k < lt_source_file_count(inner); k++)
        if (lti_source_add_file(src, lt_source_file_path(inner, k), c->err) != LT_OK)
            return c->err->status;
    return LT_OK;
}

static lt_source *bnb_open(const char *path, lt_error *err)
{
    lt_source *inner = open_inner(path, err);
    if (!inner)
        return NULL;
    lt_source *src = lti_source_new("bitsandbytes", path, &lti_bnb_source_ops, err);
    bnb_impl *impl = src ? calloc(1, sizeof *impl) : NULL;
    size_t n = lt_source_tensor_count(inner);
    bool *consumed = calloc(n ? n : 1, sizeof *consumed);
    pending *names = NULL;
    lt_status s = LT_OK;
    if (!impl || !consumed) {
        if (src)
            lti_fail_nomem(err, path);
        lt_source_close(inner);
        free(consumed);
        free(impl);
        lt_source_close(src);
        return NULL;
    }
    impl->inner = inner;
    src->impl = impl;
    open_ctx c = {inner, path, consumed, err};
    s = find_quantized(&c, impl, &names);
    if (s == LT_OK)
        s = build(src, &c, impl, names);
    for (size_t k = 0; names && k < impl->n_quants; k++)
        free(names[k].name);
    free(names);
    free(consumed);
    if (s != LT_OK) {
        lt_source_close(src);
        return NULL;
    }
    if (impl->n_quants == 0) {
        /* the names that won the bid were not tensors (a metadata value,
         * say): a plain safetensors model after all */
        impl->inner = NULL;
        lt_source_close(src);
        return inner;
    }
    return src;
}

/* ---- bidding: only a checkpoint that holds bitsandbytes state ---- */

static bool text_has_bnb_keys(const char *text)
{
    return strstr(text, STATE_SUFFIX) || strstr(text, SCB_SUFFIX "\"");
}

/* The header of a safetensors file (bounded by the reference limit). */
static bool file_has_bnb_keys(const char *path)
{
    lti_rfile f;
    lt_error ignored;
    unsigned char prefix[8];
    if (lti_rfile_open(&f, path, &ignored) != LT_OK)
        return false;
    bool found = false;
    if (lti_rfile_pread(&f, 0, prefix, 8, &ignored) == LT_OK) {
        uint64_t n = 0;
        for (int k = 7; k >= 0; k--)
            n = n << 8 | prefix[k];
        char *header = n >= 2 && n <= LT_ST_MAX_HEADER && n <= f.size - 8 ? malloc((size_t)n + 1) : NULL;
        if (header && lti_rfile_pread(&f, 8, header, (size_t)n, &ignored) == LT_OK) {
            header[n] = '\0';
            found = text_has_bnb_keys(header);
        }
        free(header);
    }
    lti_rfile_close(&f);
    return found;
}

static bool index_has_bnb_keys(const char *index_path)
{
    char *text = NULL;
    size_t len;
    lt_error ignored;
    bool found = lti_read_small_file(index_path, 64u << 20, &text, &len, &ignored) == LT_OK &&
                 text_has_bnb_keys(text);
    free(text);
    return found;
}

static int bnb_bid(const lti_probe *probe)
{
    /* one more than the safetensors format bids for the same path */
    if (probe->is_dir) {
        char *index = lti_path_join(probe->path, LT_ST_INDEX_NAME);
        char *single = lti_path_join(probe->path, "model.safetensors");
        int bid = 0;
        if (index && lti_is_file(index))
            bid = index_has_bnb_keys(index) ? 61 : 0;
        else if (single && lti_is_file(single))
            bid = file_has_bnb_keys(single) ? 51 : 0;
        free(index);
        free(single);
        return bid;
    }
    if (ends_with(probe->path, ".index.json"))
        return index_has_bnb_keys(probe->path) ? 81 : 0;
    return probe->head_len >= 10 && file_has_bnb_keys(probe->path) ? 91 : 0;
}

const lti_format lti_format_bnb = {
    .name = "bitsandbytes",
    .bid = bnb_bid,
    .open = bnb_open,
    .create = NULL,
};

/* ---- the public query ---- */

bool lt_source_tensor_quant(const lt_source *src, size_t i, lt_quant_info *out)
{
    if (!src || src->ops != &lti_bnb_source_ops || i >= src->n_tensors)
        return false;
    const bnb_impl *impl = src->impl;
    if (impl->quant_of[i] < 0)
        return false;
    const bnb_tensor *q = &impl->quants[impl->quant_of[i]];
    memset(out, 0, sizeof *out);
    out->method = "bitsandbytes";
    out->type = q->kind == BNB_NF4 ? "nf4" : q->kind == BNB_FP4 ? "fp4" : "int8";
    out->storage = q->kind == BNB_NF4 ? "NF4" : q->kind == BNB_FP4 ? "FP4" : "INT8";
    out->blocksize = (uint32_t)q->blocksize;
    out->double_quant = q->nested;
    out->nested_blocksize = (uint32_t)q->nested_blocksize;
    out->compute_dtype = q->out;
    for (int p = 0; p < BNB_N_PARTS; p++) {
        if (q->part[p] == BNB_ABSENT)
            continue;
        const lt_tensor_info *t = lt_source_tensor(impl->inner, q->part[p]);
        lt_quant_part *part = &out->parts[out->n_parts++];
        part->name = t->name;
        part->offset = t->offset;
        part->n_bytes = t->n_bytes;
        part->file_index = t->file_index;
        out->packed_bytes += t->n_bytes;
    }
    return true;
}
