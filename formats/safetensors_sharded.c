/*
 * safetensors_sharded.c - a model split over several safetensors files by
 * an index, as Hugging Face transformers saves large models:
 *
 *   model.safetensors.index.json   {"metadata": {"total_size": 123},
 *                                   "weight_map": {"tensor": "shard file"}}
 *   model-00001-of-00002.safetensors, model-00002-of-00002.safetensors
 *
 * Opened from the directory or from the index file itself.  Every shard is
 * checked with the single-file rules (safetensors.c), and the tensors the
 * shards hold must be exactly the tensors the index lists, each in the
 * shard the index names (rules S1-S6 in spec/safetensors.md).
 *
 * metadata.total_size is not checked: transformers writes the sum of the
 * tensor bytes, other tools have written other sums (parameter counts,
 * file sizes), and nothing depends on it.  The index's string metadata
 * becomes the source's metadata, followed by any shard __metadata__ key
 * not already present (first shard wins), so {"format": "pt"} survives a
 * copy.
 *
 * Writing sharded output is done by the common writer in safetensors.c.
 */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* An index lists names, not data: 64 MiB is far above any real one. */
#define MAX_INDEX_BYTES (64u << 20)

struct map_entry {
    const char *tensor; /* borrowed from the index JSON */
    const char *shard;
    size_t shard_index; /* into the sorted list of distinct shard names */
};

struct index {
    const char *path;
    char *dir;             /* directory the shard names are relative to  */
    cJSON *json;
    const cJSON *metadata; /* may be NULL                                */
    struct map_entry *entries;
    size_t n_entries;
    lti_strmap by_tensor;   /* tensor name -> entry                       */
    const char **shards;   /* distinct shard names, sorted               */
    size_t n_shards;
    lti_strmap by_shard;    /* shard name -> position in shards           */
};

static void index_free(struct index *ix)
{
    free(ix->dir);
    cJSON_Delete(ix->json);
    free(ix->entries);
    lti_strmap_free(&ix->by_tensor);
    free(ix->shards);
    lti_strmap_free(&ix->by_shard);
}

/* A shard must be a plain file name next to the index (S3). */
static bool is_plain_file_name(const char *name)
{
    return name[0] != '\0' && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
           !strchr(name, '/') && !strchr(name, '\\');
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The top-level member called key; an error when it appears twice. */
static lt_status find_member(const char *path, const cJSON *root, const char *key,
                             const cJSON **out, lt_error *err)
{
    *out = NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, key) != 0)
            continue;
        if (*out)
            return lti_fail(err, LT_ERR_INVALID, "%s: index has '%s' twice", path, key);
        *out = item;
    }
    return LT_OK;
}

/* S1-S4: read and check the index itself. */
static lt_status read_index(struct index *ix, lt_error *err)
{
    const char *path = ix->path;
    char *text = NULL;
    size_t len = 0, bad_at;
    lt_status s = lti_read_small_file(path, MAX_INDEX_BYTES, &text, &len, err);
    if (s != LT_OK)
        return s;
    const char *end = NULL;
    if (!lti_st_utf8_valid(text, len, &bad_at)) { /* S1 */
        s = lti_fail(err, LT_ERR_INVALID, "%s: index is not valid UTF-8 (byte %zu)", path, bad_at);
    } else if (!(ix->json = cJSON_ParseWithLengthOpts(text, len, &end, false))) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        s = lti_fail(err, LT_ERR_INVALID, "%s: index is not valid JSON (error near byte %zu)", path, at);
    } else if (!cJSON_IsObject(ix->json)) {
        s = lti_fail(err, LT_ERR_INVALID, "%s: index is not a JSON object", path);
    }
    free(text);
    if (s != LT_OK)
        return s;

    const cJSON *weight_map;
    s = find_member(path, ix->json, "weight_map", &weight_map, err);
    if (s == LT_OK)
        s = find_member(path, ix->json, "metadata", &ix->metadata, err);
    if (s != LT_OK)
        return s;
    if (!cJSON_IsObject(weight_map)) /* S2 */
        return lti_fail(err, LT_ERR_INVALID, "%s: index has no \"weight_map\" object", path);
    if (ix->metadata && !cJSON_IsObject(ix->metadata))
        return lti_fail(err, LT_ERR_INVALID, "%s: index \"metadata\" is not an object", path);

    size_t n = (size_t)cJSON_GetArraySize(weight_map);
    ix->entries = calloc(n ? n : 1, sizeof *ix->entries);
    ix->shards = calloc(n ? n : 1, sizeof *ix->shards);
    if (!ix->entries || !ix->shards)
        return lti_fail_nomem(err, path);
    const cJSON *item;
    cJSON_ArrayForEach(item, weight_map) {
        if (!cJSON_IsString(item) || !item->valuestring)
            return lti_fail(err, LT_ERR_INVALID, "%s: weight_map value for tensor '%s' is not a string",
                           path, lti_show(item->string).text);
        if (!is_plain_file_name(item->valuestring)) /* S3 */
            return lti_fail(err, LT_ERR_INVALID, "%s: weight_map puts tensor '%s' in '%s', which is "
                           "not a plain file name beside the index", path,
                           lti_show(item->string).text, lti_show(item->valuestring).text);
        int put = lti_strmap_put(&ix->by_tensor, item->string, (long)ix->n_entries);
        if (put < 0)
            return lti_fail_nomem(err, path);
        if (put == 0) /* S4 */
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' appears twice in weight_map", path,
                           lti_show(item->string).text);
        ix->entries[ix->n_entries].tensor = item->string;
        ix->entries[ix->n_entries].shard = item->valuestring;
        ix->shards[ix->n_entries] = item->valuestring;
        ix->n_entries++;
    }

    /* distinct shard names, sorted: the order files are opened and numbered */
    qsort(ix->shards, ix->n_entries, sizeof *ix->shards, compare_names);
    for (size_t i = 0; i < ix->n_entries; i++)
        if (ix->n_shards == 0 || strcmp(ix->shards[ix->n_shards - 1], ix->shards[i]) != 0)
            ix->shards[ix->n_shards++] = ix->shards[i];
    if (ix->n_shards > UINT32_MAX)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: too many shards", path);
    for (size_t k = 0; k < ix->n_shards; k++)
        if (lti_strmap_put(&ix->by_shard, ix->shards[k], (long)k) < 0)
            return lti_fail_nomem(err, path);
    for (size_t i = 0; i < ix->n_entries; i++)
        ix->entries[i].shard_index = (size_t)lti_strmap_get(&ix->by_shard, ix->entries[i].shard);
    return LT_OK;
}

/* S5: every tensor of shard k is listed, for shard k, and only once. */
static lt_status add_shard_tensors(struct index *ix, lt_source *src, size_t k,
                                   const char *shard_path, const lti_st_parsed *parsed,
                                   lt_error *err)
{
    for (size_t i = 0; i < parsed->n_entries; i++) {
        const lti_st_entry *e = &parsed->entries[i];
        long earlier = lt_source_find(src, e->name);
        if (earlier >= 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' is in both shard '%s' and shard '%s'",
                           ix->path, lti_show(e->name).text,
                           ix->shards[src->tensors[earlier].file_index], ix->shards[k]);
        long listed = lti_strmap_get(&ix->by_tensor, e->name);
        if (listed < 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: shard '%s' holds tensor '%s', which the index "
                           "does not list", ix->path, ix->shards[k], lti_show(e->name).text);
        const struct map_entry *m = &ix->entries[listed];
        if (m->shard_index != k)
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' is in shard '%s' but the index "
                           "puts it in '%s'", ix->path, lti_show(e->name).text, ix->shards[k],
                           m->shard);
        lt_status s = lti_source_add_tensor(src, shard_path, e->name, e->dtype, e->n_dims, e->shape,
                                           e->begin, (uint32_t)k, err);
        if (s != LT_OK)
            return s;
    }
    for (size_t i = 0; i < parsed->n_meta; i++) {
        if (lt_source_meta_get(src, parsed->meta_keys[i]))
            continue;
        lt_status s = lti_source_add_meta(src, parsed->meta_keys[i], parsed->meta_values[i], err);
        if (s != LT_OK)
            return s;
    }
    return LT_OK;
}

static lt_status open_shards(struct index *ix, lt_source *src, lt_error *err)
{
    lti_st_reader *reader = src->impl;
    for (size_t k = 0; k < ix->n_shards; k++) {
        char *shard_path = lti_path_join(ix->dir, ix->shards[k]);
        if (!shard_path)
            return lti_fail_nomem(err, ix->path);
        lt_status s = LT_OK;
        if (!lti_is_file(shard_path)) /* S6 */
            s = lti_fail(err, LT_ERR_INVALID, "%s: shard '%s' named by the index does not exist",
                        ix->path, ix->shards[k]);
        lti_st_parsed parsed;
        if (s == LT_OK)
            s = lti_st_parse_file(shard_path, &parsed, err);
        if (s != LT_OK) {
            free(shard_path);
            return s;
        }
        reader->files[k] = parsed.file;
        reader->data_starts[k] = parsed.data_start;
        reader->n_files = k + 1;
        parsed.file.fd = -1; /* the reader owns the file now */
        parsed.file.path = NULL;
        s = lti_source_add_file(src, shard_path, err);
        if (s == LT_OK)
            s = add_shard_tensors(ix, src, k, shard_path, &parsed, err);
        lti_st_parsed_free(&parsed);
        free(shard_path);
        if (s != LT_OK)
            return s;
    }
    /* S5, the other way round: everything listed was found */
    for (size_t i = 0; i < ix->n_entries; i++)
        if (lt_source_find(src, ix->entries[i].tensor) < 0)
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor '%s' is missing from shard '%s' "
                           "where the index puts it", ix->path,
                           lti_show(ix->entries[i].tensor).text, ix->entries[i].shard);
    return LT_OK;
}

static lt_source *sharded_open(const char *path, lt_error *err)
{
    struct index ix;
    memset(&ix, 0, sizeof ix);
    char *index_path = lti_is_dir(path) ? lti_path_join(path, LT_ST_INDEX_NAME) : lti_strdup(path);
    char *copy = lti_strdup(path);
    lt_source *src = NULL;
    if (!index_path || !copy) {
        lti_fail_nomem(err, path);
        goto fail;
    }
    ix.path = index_path;
    ix.dir = lti_is_dir(path) ? lti_strdup(path) : lti_strdup(dirname(copy));
    if (!ix.dir) {
        lti_fail_nomem(err, path);
        goto fail;
    }
    if (read_index(&ix, err) != LT_OK)
        goto fail;
    src = lti_source_new("safetensors-sharded", path, &lti_st_source_ops, err);
    if (!src)
        goto fail;
    if (!(src->impl = lti_st_reader_new(ix.n_shards))) {
        lti_fail_nomem(err, path);
        goto fail;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, ix.metadata) /* string values only: total_size is a number */
        if (cJSON_IsString(item) && item->valuestring && !lt_source_meta_get(src, item->string) &&
            lti_source_add_meta(src, item->string, item->valuestring, err) != LT_OK)
            goto fail;
    if (open_shards(&ix, src, err) != LT_OK)
        goto fail;
    index_free(&ix);
    free(index_path);
    free(copy);
    return src;
fail:
    lt_source_close(src);
    index_free(&ix);
    free(index_path);
    free(copy);
    return NULL;
}

static int sharded_bid(const lti_probe *probe)
{
    if (!probe->is_dir)
        return lti_ends_with(probe->path, ".safetensors.index.json") ? 80 : 0;
    char *index_path = lti_path_join(probe->path, LT_ST_INDEX_NAME);
    bool found = index_path && lti_is_file(index_path);
    free(index_path);
    return found ? 60 : 0;
}

/* Writing a sharded model: shard_size 0 means transformers' default. */
static lt_sink *sharded_create(const char *path, const lt_sink_options *opts, lt_error *err)
{
    return lti_st_sink_create(path, true, opts, err);
}

const lti_format lti_format_safetensors_sharded = {
    .name = "safetensors-sharded",
    .bid = sharded_bid,
    .open = sharded_open,
    .create = sharded_create,
};
