/*
 * safetensors.h - what the three safetensors files share; not part of any
 * public API.
 *
 *   safetensors.c          the single-file parser (used for every shard too),
 *                          the reader, lti_format_safetensors
 *   safetensors_sharded.c  the index of a sharded model,
 *                          lti_format_safetensors_sharded
 *   safetensors_write.c    the writer for both layouts
 *
 * The rules the parser enforces are numbered R1... in spec/safetensors.md;
 * the code cites the numbers where it checks them.
 */
#ifndef LT_FORMATS_SAFETENSORS_H
#define LT_FORMATS_SAFETENSORS_H

#include "format.h"

/* The reference reader refuses headers longer than this. */
#define LT_ST_MAX_HEADER 100000000ULL

/* One tensor entry of a header, validated. */
typedef struct lti_st_entry {
    const char *name;            /* borrowed from the parsed JSON            */
    lt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[LT_MAX_DIMS];
    uint64_t begin, end;         /* data_offsets, relative to the data start */
    size_t header_order;         /* position in the header, breaks ties      */
} lti_st_entry;

/* A parsed and fully validated safetensors file, still open for reading. */
typedef struct lti_st_parsed {
    lti_rfile file;
    uint64_t data_start;         /* 8 + header length: where offsets count from */
    void *json;                  /* the cJSON tree the borrowed strings live in */
    lti_st_entry *entries;        /* sorted by (begin, end, header order)     */
    size_t n_entries;
    const char **meta_keys;      /* __metadata__, in header order (borrowed) */
    const char **meta_values;
    size_t n_meta;
} lti_st_parsed;

/* Open PATH and check it against every rule of spec/safetensors.md.  On
 * success the caller owns *out (free with lti_st_parsed_free, or take the
 * file out of it first).  On failure nothing is left open. */
lt_status lti_st_parse_file(const char *path, lti_st_parsed *out, lt_error *err);
/* Free the JSON tree and the entry lists; closes the file unless it was
 * taken (file.fd set to -1 by the caller). */
void lti_st_parsed_free(lti_st_parsed *p);


/* True when the len bytes at text are valid UTF-8; else false and
 * *bad_at = offset of the first byte that is not. */
bool lti_st_utf8_valid(const char *text, size_t len, size_t *bad_at);

/* The reading side shared by both source formats: one open file per
 * lt_tensor_info.file_index. */
typedef struct lti_st_reader {
    lti_rfile *files;
    uint64_t *data_starts;
    size_t n_files;
} lti_st_reader;

extern const struct lti_source_ops lti_st_source_ops;
/* Empty reader with room for n_files files; NULL on allocation failure. */
lti_st_reader *lti_st_reader_new(size_t n_files);

/* The writer for both layouts: one file at PATH, or, when sharded, a
 * directory of shards plus model.safetensors.index.json.  opts (may be
 * NULL): shard_size in bytes of tensor data (0 when sharded: the
 * default), fsync. */
lt_sink *lti_st_sink_create(const char *path, bool sharded, const lt_sink_options *opts,
                           lt_error *err);

/* Name of the index file inside a sharded model directory. */
#define LT_ST_INDEX_NAME "model.safetensors.index.json"

#endif
