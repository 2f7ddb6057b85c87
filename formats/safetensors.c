/*
 * safetensors.c - the safetensors file format: parsing and reading one file.
 *
 * Layout (spec/safetensors.md has the full rules, numbered R1...):
 *
 *   offset 0      u64 little-endian N, the header length
 *   offset 8      N bytes of UTF-8 JSON: {"name": {"dtype": "F32",
 *                 "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *                 "__metadata__": {"key": "value"}}
 *   offset 8 + N  the data buffer; every tensor's bytes are
 *                 [8 + N + begin, 8 + N + end), little-endian, row-major.
 *
 * Offsets: lt_tensor_info.offset holds `begin`, counted from the start of
 * the data buffer as the header does; the reader keeps 8 + N per file and
 * adds it when reading.
 *
 * The header is parsed with cJSON, which is laxer than JSON and loses the
 * exact text of numbers, so a strict scan of the raw header runs beside
 * it: it refuses what cJSON lets through (control characters, a byte-order
 * mark, leading zeros, escaped NULs) and records every number token in
 * document order.  The validator walks the tree in document order too and
 * takes the tokens one by one, so every shape and offset is read exactly as
 * a u64 from its text, never through a double.
 *
 * Sharded models (an index plus several files) are read by
 * safetensors_sharded.c; safetensors_write.c writes both layouts.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define MODEL_FILE_NAME "model.safetensors"

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* "[2, 3]" into buf, for messages. */
static const char *format_shape(char *buf, size_t cap, uint32_t n_dims, const uint64_t *shape)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < n_dims && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%" PRIu64, d ? ", " : "", shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
    return buf;
}

bool lti_st_utf8_valid(const char *text, size_t len, size_t *bad_at)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t extra;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlong 3-byte forms */
            if (c == 0xED)
                hi = 0x9F; /* no UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            if (c == 0xF0)
                lo = 0x90; /* no overlong 4-byte forms */
            if (c == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            *bad_at = i;
            return false;
        }
        if (len - i <= extra || s[i + 1] < lo || s[i + 1] > hi) {
            *bad_at = i;
            return false;
        }
        for (size_t k = 2; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                *bad_at = i;
                return false;
            }
        }
        i += extra + 1;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Strict scan of the header text                                       */
/* ------------------------------------------------------------------ */

enum number_kind {
    NUMBER_UINT,      /* 0 or [1-9][0-9]*, fits in u64          */
    NUMBER_TOO_LARGE, /* plain digits, but above UINT64_MAX     */
    NUMBER_NEGATIVE,  /* starts with '-'                        */
    NUMBER_FRACTION   /* has a '.', or an exponent              */
};

struct number_token {
    const char *text;
    size_t len;
    enum number_kind kind;
    uint64_t value; /* for NUMBER_UINT */
};

struct number_list {
    struct number_token *tokens;
    size_t count, cap;
    size_t next; /* the validator's position */
};

static bool is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* Classify one number token; false when JSON forbids its spelling. */
static bool classify_number(struct number_token *tok)
{
    const char *t = tok->text;
    size_t n = tok->len;
    size_t digits_at = t[0] == '-' ? 1 : 0;
    if (n > digits_at + 1 && t[digits_at] == '0' && t[digits_at + 1] >= '0' && t[digits_at + 1] <= '9')
        return false; /* leading zero: "01" */
    if (t[0] == '-') {
        tok->kind = NUMBER_NEGATIVE;
        return true;
    }
    tok->kind = NUMBER_UINT;
    tok->value = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] < '0' || t[i] > '9') {
            tok->kind = NUMBER_FRACTION;
            return true;
        }
        if (tok->kind == NUMBER_UINT &&
            (!lti_mul_u64(tok->value, 10, &tok->value) ||
             !lti_add_u64(tok->value, (uint64_t)(t[i] - '0'), &tok->value)))
            tok->kind = NUMBER_TOO_LARGE;
    }
    return true;
}

/* R5: runs after cJSON accepted the text, so the structure is known good;
 * this only refuses what cJSON is too lenient about, and records the
 * number tokens. */
static lt_status scan_json_strictly(const char *path, const char *text, size_t len,
                                    struct number_list *numbers, lt_error *err)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"') {
            for (i++; i < len && text[i] != '"'; i++) {
                unsigned char s = (unsigned char)text[i];
                if (s < 0x20)
                    return lti_fail(err, LT_ERR_INVALID,
                                   "%s: header has a raw control character 0x%02x inside a "
                                   "string (byte %zu)", path, s, i);
                if (s == '\\') {
                    if (i + 5 < len && memcmp(text + i + 1, "u0000", 5) == 0)
                        return lti_fail(err, LT_ERR_UNSUPPORTED,
                                       "%s: header string contains an escaped NUL (\\u0000) "
                                       "(byte %zu), which loratool cannot represent", path, i);
                    i++; /* skip the escaped character */
                }
            }
            i++; /* closing quote */
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            struct number_token tok = {.text = text + i, .len = 0};
            while (i < len && is_number_char(text[i]))
                i++;
            tok.len = (size_t)(text + i - tok.text);
            if (!classify_number(&tok))
                return lti_fail(err, LT_ERR_INVALID,
                               "%s: header number '%.*s' has a leading zero, which JSON forbids",
                               path, (int)(tok.len > 40 ? 40 : tok.len), tok.text);
            if (!lti_grow((void **)&numbers->tokens, &numbers->cap, numbers->count + 1,
                         sizeof tok))
                return lti_fail_nomem(err, path);
            numbers->tokens[numbers->count++] = tok;
        } else if (is_json_space(c) || (c && strchr("{}[]:,", c)) || (c >= 'a' && c <= 'z')) {
            i++; /* structure, whitespace, true/false/null */
        } else {
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: header has byte 0x%02x outside any JSON string (byte %zu)",
                           path, c, i);
        }
    }
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* Header validation                                                    */
/* ------------------------------------------------------------------ */

struct header_check {
    const char *path;
    struct number_list numbers;
    lti_strmap tensor_names;
    lti_strmap meta_keys;
    lti_st_parsed *out;
    size_t cap_entries, cap_meta;
};

/* Take the next number token for item, which must be a number holding a
 * non-negative integer (R10, R11).  `what` names the field. */
static lt_status take_u64(struct header_check *hc, const cJSON *item, const char *tensor,
                          const char *what, uint64_t *value, lt_error *err)
{
    if (!cJSON_IsNumber(item))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': %s holds something that is not a number",
                       hc->path, lti_show(tensor).text, what);
    if (hc->numbers.next >= hc->numbers.count)
        return lti_fail(err, LT_ERR_INVALID, "%s: header numbers out of step with the JSON tree",
                       hc->path);
    const struct number_token *tok = &hc->numbers.tokens[hc->numbers.next++];
    int shown_len = (int)(tok->len > 40 ? 40 : tok->len);
    switch (tok->kind) {
    case NUMBER_NEGATIVE:
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': %s has a negative number (%.*s)",
                       hc->path, lti_show(tensor).text, what, shown_len, tok->text);
    case NUMBER_FRACTION:
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': %s has a number that is not an integer (%.*s)",
                       hc->path, lti_show(tensor).text, what, shown_len, tok->text);
    case NUMBER_TOO_LARGE:
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': %s has a number above 2^64-1 (%.*s)",
                       hc->path, lti_show(tensor).text, what, shown_len, tok->text);
    case NUMBER_UINT:
        break;
    }
    /* Guard the pairing of tokens with tree items: both are in document
     * order, so the values must agree (cJSON holds a rounded double). */
    bool agrees = tok->value <= (1ULL << 53) ? item->valuedouble == (double)tok->value
                                             : item->valuedouble >= 9007199254740992.0;
    if (!agrees)
        return lti_fail(err, LT_ERR_INVALID, "%s: header numbers out of step with the JSON tree",
                       hc->path);
    *value = tok->value;
    return LT_OK;
}

/* Safetensors dtypes that are valid in the format but have no lt_dtype. */
static bool is_known_unsupported_dtype(const char *name)
{
    static const char *const names[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E4M3FNUZ",
                                        "F8_E5M2FNUZ", NULL};
    for (size_t i = 0; names[i]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static lt_status check_dtype(struct header_check *hc, const cJSON *item, const char *tensor,
                             lti_st_entry *e, lt_error *err)
{
    if (!cJSON_IsString(item) || !item->valuestring) /* R9 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': dtype is not a string",
                       hc->path, lti_show(tensor).text);
    e->dtype = lt_dtype_from_safetensors(item->valuestring);
    if (e->dtype != LT_DTYPE_INVALID)
        return LT_OK;
    if (is_known_unsupported_dtype(item->valuestring))
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: tensor '%s' has dtype %s, which loratool does not handle",
                       hc->path, lti_show(tensor).text, item->valuestring);
    return lti_fail(err, LT_ERR_INVALID, "%s: unknown dtype '%s' for tensor '%s'", hc->path,
                   lti_show(item->valuestring).text, lti_show(tensor).text);
}

static lt_status check_shape(struct header_check *hc, const cJSON *item, const char *tensor,
                             lti_st_entry *e, lt_error *err)
{
    if (!cJSON_IsArray(item)) /* R10 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': shape is not an array",
                       hc->path, lti_show(tensor).text);
    const cJSON *dim;
    e->n_dims = 0;
    cJSON_ArrayForEach(dim, item) {
        if (e->n_dims == LT_MAX_DIMS)
            return lti_fail(err, LT_ERR_UNSUPPORTED,
                           "%s: tensor '%s' has more than %d dimensions, the most loratool handles",
                           hc->path, lti_show(tensor).text, LT_MAX_DIMS);
        lt_status s = take_u64(hc, dim, tensor, "shape", &e->shape[e->n_dims], err);
        if (s != LT_OK)
            return s;
        e->n_dims++;
    }
    return LT_OK;
}

static lt_status check_offsets(struct header_check *hc, const cJSON *item, const char *tensor,
                               lti_st_entry *e, lt_error *err)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2) /* R11 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': data_offsets is not a pair [begin, end]",
                       hc->path, lti_show(tensor).text);
    lt_status s = take_u64(hc, item->child, tensor, "data_offsets", &e->begin, err);
    if (s == LT_OK)
        s = take_u64(hc, item->child->next, tensor, "data_offsets", &e->end, err);
    if (s != LT_OK)
        return s;
    if (e->end < e->begin)
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: tensor '%s': data_offsets end %" PRIu64 " is before begin %" PRIu64,
                       hc->path, lti_show(tensor).text, e->end, e->begin);
    return LT_OK;
}

/* One "name": {...} entry (R8-R14).  Fields are handled in document order
 * so that the number tokens are taken in the order they were scanned. */
static lt_status check_tensor(struct header_check *hc, const cJSON *item, size_t order,
                              lt_error *err)
{
    const char *name = item->string;
    int put = lti_strmap_put(&hc->tensor_names, name, (long)order);
    if (put < 0)
        return lti_fail_nomem(err, hc->path);
    if (put == 0) /* R12 */
        return lti_fail(err, LT_ERR_INVALID, "%s: duplicate tensor name '%s'", hc->path,
                       lti_show(name).text);
    if (!cJSON_IsObject(item)) /* R8 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': entry is not a JSON object",
                       hc->path, lti_show(name).text);
    lti_st_entry e;
    memset(&e, 0, sizeof e);
    e.name = name;
    e.header_order = order;
    bool seen_dtype = false, seen_shape = false, seen_offsets = false;
    const cJSON *field;
    cJSON_ArrayForEach(field, item) {
        bool *seen;
        lt_status (*check)(struct header_check *, const cJSON *, const char *, lti_st_entry *,
                           lt_error *);
        if (strcmp(field->string, "dtype") == 0) {
            seen = &seen_dtype;
            check = check_dtype;
        } else if (strcmp(field->string, "shape") == 0) {
            seen = &seen_shape;
            check = check_shape;
        } else if (strcmp(field->string, "data_offsets") == 0) {
            seen = &seen_offsets;
            check = check_offsets;
        } else { /* R8 */
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': unexpected field '%s'",
                           hc->path, lti_show(name).text, lti_show(field->string).text);
        }
        if (*seen)
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': field '%s' appears twice",
                           hc->path, lti_show(name).text, field->string);
        *seen = true;
        lt_status s = check(hc, field, name, &e, err);
        if (s != LT_OK)
            return s;
    }
    if (!seen_dtype || !seen_shape || !seen_offsets)
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': missing field '%s'", hc->path,
                       lti_show(name).text,
                       !seen_dtype ? "dtype" : !seen_shape ? "shape" : "data_offsets");
    uint64_t n_elems, n_bytes;
    if (!lti_shape_elems(e.n_dims, e.shape, &n_elems)) /* R13 */
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': element count of its shape overflows 64 bits",
                       hc->path, lti_show(name).text);
    if (!lt_dtype_nbytes(e.dtype, n_elems, &n_bytes))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s': size in bytes overflows 64 bits",
                       hc->path, lti_show(name).text);
    if (e.end - e.begin != n_bytes) { /* R14 */
        char shape[128];
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: tensor '%s': %s %s needs %" PRIu64 " bytes but its data_offsets span %" PRIu64,
                       hc->path, lti_show(name).text, lt_dtype_name(e.dtype),
                       format_shape(shape, sizeof shape, e.n_dims, e.shape), n_bytes,
                       e.end - e.begin);
    }
    lti_st_parsed *out = hc->out;
    if (!lti_grow((void **)&out->entries, &hc->cap_entries, out->n_entries + 1, sizeof e))
        return lti_fail_nomem(err, hc->path);
    out->entries[out->n_entries++] = e;
    return LT_OK;
}

static lt_status check_metadata(struct header_check *hc, const cJSON *item, lt_error *err)
{
    if (cJSON_IsNull(item)) /* the reference reader takes null as "none" */
        return LT_OK;
    if (!cJSON_IsObject(item)) /* R7 */
        return lti_fail(err, LT_ERR_INVALID, "%s: __metadata__ is not an object", hc->path);
    lti_st_parsed *out = hc->out;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, item) {
        if (!cJSON_IsString(entry) || !entry->valuestring)
            return lti_fail(err, LT_ERR_INVALID, "%s: metadata value for '%s' is not a string",
                           hc->path, lti_show(entry->string).text);
        int put = lti_strmap_put(&hc->meta_keys, entry->string, 0);
        if (put < 0)
            return lti_fail_nomem(err, hc->path);
        if (put == 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: duplicate metadata key '%s'", hc->path,
                           lti_show(entry->string).text);
        size_t cap = hc->cap_meta;
        if (!lti_grow((void **)&out->meta_keys, &cap, out->n_meta + 1, sizeof(char *)) ||
            !lti_grow((void **)&out->meta_values, &hc->cap_meta, out->n_meta + 1, sizeof(char *)))
            return lti_fail_nomem(err, hc->path);
        out->meta_keys[out->n_meta] = entry->string;
        out->meta_values[out->n_meta] = entry->valuestring;
        out->n_meta++;
    }
    return LT_OK;
}

static int compare_entries(const void *a, const void *b)
{
    const lti_st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->header_order < y->header_order ? -1 : x->header_order > y->header_order;
}

/* R15: sorted by offset, the tensors cover [0, end) with no hole and no
 * overlap.  Returns the end of the data buffer in *data_len. */
static lt_status check_tiling(const char *path, lti_st_parsed *p, uint64_t *data_len, lt_error *err)
{
    if (p->n_entries > 1)
        qsort(p->entries, p->n_entries, sizeof *p->entries, compare_entries);
    uint64_t covered = 0;
    for (size_t i = 0; i < p->n_entries; i++) {
        const lti_st_entry *e = &p->entries[i];
        if (e->begin == covered) {
            covered = e->end;
            continue;
        }
        if (i == 0)
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: first tensor '%s' starts at data byte %" PRIu64 ", not 0", path,
                           lti_show(e->name).text, e->begin);
        const lti_st_entry *prev = &p->entries[i - 1];
        if (e->begin > covered)
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: hole of %" PRIu64 " bytes between tensor '%s' (ends at %" PRIu64
                           ") and tensor '%s' (starts at %" PRIu64 ")", path, e->begin - covered,
                           lti_show(prev->name).text, covered, lti_show(e->name).text, e->begin);
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: tensor '%s' (starts at %" PRIu64 ") overlaps tensor '%s' (ends at %" PRIu64 ")",
                       path, lti_show(e->name).text, e->begin, lti_show(prev->name).text, covered);
    }
    *data_len = covered;
    return LT_OK;
}

/* R5-R14 on the header text; fills out->json, entries and metadata. */
static lt_status check_header(const char *path, const char *text, size_t len, lti_st_parsed *out,
                              lt_error *err)
{
    size_t bad_at;
    if (!lti_st_utf8_valid(text, len, &bad_at)) /* R4 */
        return lti_fail(err, LT_ERR_INVALID, "%s: header is not valid UTF-8 (byte %zu)", path, bad_at);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) { /* R5 */
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        return lti_fail(err, LT_ERR_INVALID, "%s: header is not valid JSON (error near byte %zu)",
                       path, at);
    }
    out->json = root;
    for (size_t i = (size_t)(end - text); i < len; i++)
        if (!is_json_space((unsigned char)text[i]))
            return lti_fail(err, LT_ERR_INVALID,
                           "%s: header has bytes after the end of its JSON value (byte %zu)", path, i);
    struct header_check hc = {.path = path, .out = out};
    lt_status s = scan_json_strictly(path, text, len, &hc.numbers, err);
    if (s == LT_OK && !cJSON_IsObject(root)) /* R6 */
        s = lti_fail(err, LT_ERR_INVALID, "%s: header is not a JSON object", path);
    size_t order = 0;
    bool seen_metadata = false;
    const cJSON *item;
    if (s == LT_OK) {
        cJSON_ArrayForEach(item, root) {
            if (strcmp(item->string, "__metadata__") == 0) {
                if (seen_metadata) /* R7 */
                    s = lti_fail(err, LT_ERR_INVALID, "%s: duplicate __metadata__ object", path);
                else
                    s = check_metadata(&hc, item, err);
                seen_metadata = true;
            } else {
                s = check_tensor(&hc, item, order++, err);
            }
            if (s != LT_OK)
                break;
        }
    }
    free(hc.numbers.tokens);
    lti_strmap_free(&hc.tensor_names);
    lti_strmap_free(&hc.meta_keys);
    return s;
}

lt_status lti_st_parse_file(const char *path, lti_st_parsed *out, lt_error *err)
{
    memset(out, 0, sizeof *out);
    out->file.fd = -1;
    lt_status s = lti_rfile_open(&out->file, path, err);
    if (s != LT_OK)
        return s;
    uint64_t size = out->file.size;
    unsigned char prefix[8];
    char *header = NULL;
    if (size < 8) { /* R1 */
        s = lti_fail(err, LT_ERR_INVALID, "%s: file of %" PRIu64 " bytes is too short for the "
                    "8-byte header length", path, size);
        goto fail;
    }
    s = lti_rfile_pread(&out->file, 0, prefix, 8, err);
    if (s != LT_OK)
        goto fail;
    uint64_t header_len = read_le64(prefix);
    if (header_len > LT_ST_MAX_HEADER) { /* R2 */
        s = lti_fail(err, LT_ERR_INVALID, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes",
                    path, header_len, LT_ST_MAX_HEADER);
        goto fail;
    }
    if (header_len > size - 8) { /* R3 */
        s = lti_fail(err, LT_ERR_INVALID, "%s: header length %" PRIu64 " runs past the end of the "
                    "file (%" PRIu64 " bytes)", path, header_len, size);
        goto fail;
    }
    header = malloc((size_t)header_len + 1);
    if (!header) {
        s = lti_fail_nomem(err, path);
        goto fail;
    }
    s = lti_rfile_pread(&out->file, 8, header, (size_t)header_len, err);
    if (s != LT_OK)
        goto fail;
    header[header_len] = '\0';
    s = check_header(path, header, (size_t)header_len, out, err);
    free(header);
    header = NULL;
    if (s != LT_OK)
        goto fail;
    uint64_t data_len;
    s = check_tiling(path, out, &data_len, err);
    if (s != LT_OK)
        goto fail;
    out->data_start = 8 + header_len;
    uint64_t have = size - out->data_start;
    if (data_len > have) { /* R16 */
        s = lti_fail(err, LT_ERR_INVALID, "%s: file truncated: tensor data needs %" PRIu64
                    " bytes after the header, the file has %" PRIu64, path, data_len, have);
        goto fail;
    }
    if (data_len < have) {
        s = lti_fail(err, LT_ERR_INVALID, "%s: %" PRIu64 " trailing bytes after the last tensor's data",
                    path, have - data_len);
        goto fail;
    }
    return LT_OK;
fail:
    free(header);
    lti_st_parsed_free(out);
    return s;
}

void lti_st_parsed_free(lti_st_parsed *p)
{
    cJSON_Delete(p->json);
    free(p->entries);
    free(p->meta_keys);
    free(p->meta_values);
    if (p->file.fd >= 0 || p->file.path)
        lti_rfile_close(&p->file);
    memset(p, 0, sizeof *p);
    p->file.fd = -1;
}

/* ------------------------------------------------------------------ */
/* Reading                                                              */
/* ------------------------------------------------------------------ */

lti_st_reader *lti_st_reader_new(size_t n_files)
{
    lti_st_reader *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    size_t count = n_files ? n_files : 1;
    r->files = calloc(count, sizeof *r->files);
    r->data_starts = calloc(count, sizeof *r->data_starts);
    if (!r->files || !r->data_starts) {
        free(r->files);
        free(r->data_starts);
        free(r);
        return NULL;
    }
    return r;
}

static lt_status st_read(lt_source *src, const lt_tensor_info *t, uint64_t off, void *dst,
                         size_t len, lt_error *err)
{
    lti_st_reader *r = src->impl;
    uint64_t at;
    if (t->file_index >= r->n_files || !lti_add_u64(r->data_starts[t->file_index], t->offset, &at) ||
        !lti_add_u64(at, off, &at))
        return lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s' has no valid location", src->path,
                       lti_show(t->name).text);
    return lti_rfile_pread(&r->files[t->file_index], at, dst, len, err);
}

static const void *st_borrow(lt_source *src, const lt_tensor_info *t, uint64_t off, size_t len)
{
    lti_st_reader *r = src->impl;
    uint64_t at;
    if (t->file_index >= r->n_files || !lti_add_u64(r->data_starts[t->file_index], t->offset, &at) ||
        !lti_add_u64(at, off, &at))
        return NULL;
    return lti_rfile_at(&r->files[t->file_index], at, len);
}

static void st_release(lt_source *src, const lt_tensor_info *t, const void *p, size_t len)
{
    lti_st_reader *r = src->impl;
    if (t->file_index < r->n_files)
        lti_rfile_release(&r->files[t->file_index], p, len);
}

static void st_close(void *impl)
{
    lti_st_reader *r = impl;
    if (!r)
        return;
    for (size_t i = 0; i < r->n_files; i++)
        lti_rfile_close(&r->files[i]);
    free(r->files);
    free(r->data_starts);
    free(r);
}

const struct lti_source_ops lti_st_source_ops = {
    .read = st_read, .borrow = st_borrow, .release = st_release, .close = st_close};

static lt_source *st_open(const char *path, lt_error *err)
{
    /* a directory holding model.safetensors stands for that file */
    char *file_path = lti_is_dir(path) ? lti_path_join(path, MODEL_FILE_NAME) : lti_strdup(path);
    if (!file_path) {
        lti_fail_nomem(err, path);
        return NULL;
    }
    lti_st_parsed parsed;
    lt_source *src = NULL;
    if (lti_st_parse_file(file_path, &parsed, err) != LT_OK)
        goto done;
    src = lti_source_new("safetensors", path, &lti_st_source_ops, err);
    lti_st_reader *reader = src ? lti_st_reader_new(1) : NULL;
    if (!reader) {
        if (src)
            lti_fail_nomem(err, path);
        goto fail;
    }
    src->impl = reader;
    reader->files[0] = parsed.file;
    reader->data_starts[0] = parsed.data_start;
    reader->n_files = 1;
    parsed.file.fd = -1;     /* the reader owns the file now */
    parsed.file.path = NULL;
    if (lti_source_add_file(src, file_path, err) != LT_OK)
        goto fail;
    for (size_t i = 0; i < parsed.n_entries; i++) {
        const lti_st_entry *e = &parsed.entries[i];
        if (lti_source_add_tensor(src, file_path, e->name, e->dtype, e->n_dims, e->shape, e->begin,
                                 0, err) != LT_OK)
            goto fail;
    }
    for (size_t i = 0; i < parsed.n_meta; i++)
        if (lti_source_add_meta(src, parsed.meta_keys[i], parsed.meta_values[i], err) != LT_OK)
            goto fail;
    lti_st_parsed_free(&parsed);
    goto done;
fail:
    lti_st_parsed_free(&parsed);
    lt_source_close(src);
    src = NULL;
done:
    free(file_path);
    return src;
}

static bool dir_has_file(const char *dir, const char *name)
{
    char *path = lti_path_join(dir, name);
    bool found = path && lti_is_file(path);
    free(path);
    return found;
}

static int st_bid(const lti_probe *probe)
{
    if (probe->is_dir) /* a sharded index takes precedence over model.safetensors */
        return dir_has_file(probe->path, MODEL_FILE_NAME) &&
                       !dir_has_file(probe->path, LT_ST_INDEX_NAME) ? 50 : 0;
    if (probe->head_len >= 10) {
        uint64_t n = read_le64(probe->head);
        size_t i = 8;
        while (i < probe->head_len && is_json_space(probe->head[i]))
            i++;
        if (n >= 2 && n <= LT_ST_MAX_HEADER && i < probe->head_len && probe->head[i] == '{')
            return 90;
    }
    /* a broken file named like one gets our error, not "unrecognized" */
    return lti_ends_with(probe->path, ".safetensors") ? 10 : 0;
}

static lt_sink *st_create(const char *path, const lt_sink_options *opts, lt_error *err)
{
    return lti_st_sink_create(path, opts && opts->shard_size > 0, opts, err);
}

const lti_format lti_format_safetensors = {
    .name = "safetensors",
    .bid = st_bid,
    .open = st_open,
    .create = st_create,
};
