/*
 * safetensors_write.c - writing safetensors: one file, or a sharded model
 * (a directory of model-0000k-of-0000n.safetensors files plus
 * model.safetensors.index.json, as Hugging Face transformers saves one).
 *
 * lt_sink_begin lays out every file from the declared tensors, writes the
 * headers and sizes the files; tensor bytes are then written by pwrite at
 * lti_sink_tensor.offset, which here is the absolute offset in the tensor's
 * file (internal.h), from any thread in any order.  Commit renames every
 * file into place, then writes the index, so a reader never finds an index
 * naming shards that are not there yet.
 *
 * What we write (spec/safetensors.md, "What we write"): tensors in
 * declared order with data_offsets the running sum; "__metadata__" first
 * when there is metadata; compact JSON, integers printed exactly; the
 * header padded with spaces to a multiple of 8 bytes.  The same input gives
 * the same bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

/* Default shard size of Hugging Face transformers (max_shard_size="5GB"). */
#define DEFAULT_SHARD_SIZE 5000000000ULL

static void write_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A growing text buffer; `failed` sticks after an allocation failure. */
struct text {
    char *data;
    size_t len, cap;
    bool failed;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (!lti_grow((void **)&t->data, &t->cap, t->len + n + 1, 1)) {
        t->failed = true;
        return;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_add_str(struct text *t, const char *s)
{
    text_add(t, s, strlen(s));
}

static void text_add_u64(struct text *t, uint64_t v)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%" PRIu64, v);
    text_add(t, buf, (size_t)n);
}

/* A JSON string: quotes, backslashes and control characters escaped as
 * serde_json and Python's json do; other bytes (UTF-8) pass through. */
static void text_add_json_string(struct text *t, const char *s)
{
    text_add(t, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        char buf[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(buf, sizeof buf, "\\u%04x", c);
                esc = buf;
            }
        }
        if (esc) {
            text_add(t, run, (size_t)(s - run));
            text_add_str(t, esc);
            run = s + 1;
        }
    }
    text_add(t, run, (size_t)(s - run));
    text_add(t, "\"", 1);
}

struct out_file {
    char *path;
    lti_wfile file;
    bool created, committed;
    uint64_t data_start; /* 8 + header length */
    uint64_t data_bytes;
    size_t first, count; /* tensors [first, first + count) in declared order */
};

struct st_writer {
    bool sharded;
    lti_wdir dir;          /* sharded: the output directory, built aside */
    uint64_t shard_size;
    struct out_file *files;
    size_t n_files;
};

/* Remove every file this writer made: temporaries, and shards already
 * renamed into place when the whole output did not complete. */
static void writer_discard(struct st_writer *w)
{
    for (size_t i = 0; i < w->n_files; i++) {
        struct out_file *f = &w->files[i];
        if (f->created && !f->committed)
            lti_wfile_abort(&f->file);
        if (f->committed)
            (void)unlink(f->path);
        free(f->path);
    }
    free(w->files);
    w->files = NULL;
    w->n_files = 0;
    lti_wdir_abort(&w->dir);
}

static void writer_free(lt_sink *sink)
{
    struct st_writer *w = sink->impl;
    if (!w)
        return;
    for (size_t i = 0; i < w->n_files; i++)
        free(w->files[i].path);
    free(w->files);
    free(w);
    sink->impl = NULL;
}

static lt_status check_writable(const lt_sink *sink, lt_error *err)
{
    size_t bad_at;
    for (size_t i = 0; i < sink->n_tensors; i++) {
        const lti_sink_tensor *t = &sink->tensors[i];
        if (lt_dtype_from_safetensors(lt_dtype_name(t->dtype)) != t->dtype)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which "
                           "safetensors cannot store", sink->path, lti_show(t->name).text,
                           lt_dtype_name(t->dtype));
        if (!lti_st_utf8_valid(t->name, strlen(t->name), &bad_at))
            return lti_fail(err, LT_ERR_USAGE, "%s: tensor name '%s' is not valid UTF-8",
                           sink->path, lti_show(t->name).text);
        if (strcmp(t->name, "__metadata__") == 0)
            return lti_fail(err, LT_ERR_USAGE, "%s: a tensor cannot be called __metadata__",
                           sink->path);
    }
    for (size_t i = 0; i < sink->n_meta; i++)
        if (!lti_st_utf8_valid(sink->meta_keys[i], strlen(sink->meta_keys[i]), &bad_at) ||
            !lti_st_utf8_valid(sink->meta_values[i], strlen(sink->meta_values[i]), &bad_at))
            return lti_fail(err, LT_ERR_USAGE, "%s: metadata '%s' is not valid UTF-8", sink->path,
                           lti_show(sink->meta_keys[i]).text);
    return LT_OK;
}

/* Group the declared tensors into files: one, or shards of at most
 * shard_size data bytes in declared order (a bigger tensor gets a shard of
 * its own; zero-byte tensors join whichever shard is open). */
static lt_status plan_files(lt_sink *sink, struct st_writer *w, lt_error *err)
{
    size_t max_files = sink->n_tensors ? sink->n_tensors : 1;
    w->files = calloc(w->sharded ? max_files : 1, sizeof *w->files);
    if (!w->files)
        return lti_fail_nomem(err, sink->path);
    w->n_files = 1;
    for (size_t i = 0; i < sink->n_tensors; i++) {
        lti_sink_tensor *t = &sink->tensors[i];
        struct out_file *f = &w->files[w->n_files - 1];
        bool full = f->data_bytes >= w->shard_size || t->n_bytes > w->shard_size - f->data_bytes;
        if (w->sharded && t->n_bytes > 0 && f->data_bytes > 0 && full) {
            f = &w->files[w->n_files++];
            f->first = i;
        }
        t->file_index = (uint32_t)(w->n_files - 1);
        t->offset = f->data_bytes; /* relative until the header length is known */
        if (!lti_add_u64(f->data_bytes, t->n_bytes, &f->data_bytes))
            return lti_fail(err, LT_ERR_USAGE, "%s: tensor data adds up to more than 2^64 bytes",
                           sink->path);
        f->count++;
    }
    if (w->n_files > UINT32_MAX)
        return lti_fail(err, LT_ERR_USAGE, "%s: too many shards", sink->path);
    return LT_OK;
}

/* The header of one file: "__metadata__" first when there is metadata,
 * then the tensors in declared order; compact; padded with spaces so the
 * data starts at a multiple of 8. */
static bool build_header(const lt_sink *sink, const struct out_file *f, struct text *h)
{
    text_add(h, "{", 1);
    bool first = true;
    if (sink->n_meta > 0) {
        text_add_str(h, "\"__metadata__\":{");
        for (size_t i = 0; i < sink->n_meta; i++) {
            if (i)
                text_add(h, ",", 1);
            text_add_json_string(h, sink->meta_keys[i]);
            text_add(h, ":", 1);
            text_add_json_string(h, sink->meta_values[i]);
        }
        text_add(h, "}", 1);
        first = false;
    }
    for (size_t i = f->first; i < f->first + f->count; i++) {
        const lti_sink_tensor *t = &sink->tensors[i];
        if (!first)
            text_add(h, ",", 1);
        first = false;
        text_add_json_string(h, t->name);
        text_add_str(h, ":{\"dtype\":\"");
        text_add_str(h, lt_dtype_name(t->dtype));
        text_add_str(h, "\",\"shape\":[");
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (d)
                text_add(h, ",", 1);
            text_add_u64(h, t->shape[d]);
        }
        text_add_str(h, "],\"data_offsets\":[");
        text_add_u64(h, t->offset);
        text_add(h, ",", 1);
        text_add_u64(h, t->offset + t->n_bytes);
        text_add_str(h, "]}");
    }
    text_add(h, "}", 1);
    while (!h->failed && h->len % 8 != 0)
        text_add(h, " ", 1);
    return !h->failed;
}

static lt_status open_output_file(lt_sink *sink, struct st_writer *w, size_t k, lt_error *err)
{
    struct out_file *f = &w->files[k];
    if (w->sharded) {
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, w->n_files);
        f->path = lti_path_join(w->dir.tmp_path, name);
    } else {
        f->path = lti_strdup(sink->path);
    }
    if (!f->path)
        return lti_fail_nomem(err, sink->path);
    struct text header = {0};
    if (!build_header(sink, f, &header)) {
        free(header.data);
        return lti_fail_nomem(err, f->path);
    }
    if (header.len > LT_ST_MAX_HEADER) {
        free(header.data);
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: header of %zu bytes exceeds the %llu-byte "
                       "limit of safetensors readers", f->path, header.len, LT_ST_MAX_HEADER);
    }
    f->data_start = 8 + header.len;
    unsigned char prefix[8];
    write_le64(prefix, header.len);
    lt_status s = lti_wfile_create(&f->file, f->path, err);
    if (s == LT_OK) {
        f->created = true;
        f->file.durable = sink->opts.fsync;
        s = lti_wfile_pwrite(&f->file, 0, prefix, 8, err);
    }
    if (s == LT_OK)
        s = lti_wfile_pwrite(&f->file, 8, header.data, header.len, err);
    free(header.data);
    /* size the file now: tensors never written (zero bytes, or a caller
     * that writes sparsely) still leave a file of the declared length */
    if (s == LT_OK)
        s = lti_wfile_reserve(&f->file, f->data_start + f->data_bytes, err);
    if (s != LT_OK)
        return s;
    for (size_t i = f->first; i < f->first + f->count; i++)
        sink->tensors[i].offset += f->data_start;
    return LT_OK;
}

static lt_status st_begin(lt_sink *sink, lt_error *err)
{
    struct st_writer *w = sink->impl;
    lt_status s = check_writable(sink, err);
    if (s == LT_OK && w->sharded)
        s = lti_wdir_create(&w->dir, sink->path, err);
    if (s == LT_OK)
        s = plan_files(sink, w, err);
    for (size_t k = 0; s == LT_OK && k < w->n_files; k++)
        s = open_output_file(sink, w, k, err);
    if (s != LT_OK)
        writer_discard(w);
    return s;
}

static lt_status st_write(lt_sink *sink, const lti_sink_tensor *t, uint64_t off,
                          const void *data, size_t len, lt_error *err)
{
    struct st_writer *w = sink->impl;
    return lti_wfile_pwrite(&w->files[t->file_index].file, t->offset + off, data, len, err);
}

static int compare_tensor_names(const void *a, const void *b)
{
    const lti_sink_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* model.safetensors.index.json as transformers writes it (json.dumps with
 * indent=2 and sort_keys=True, then a newline), except that non-ASCII
 * characters are kept as UTF-8 rather than \u escapes. */
static lt_status write_index(lt_sink *sink, struct st_writer *w, lt_error *err)
{
    const lti_sink_tensor **sorted = malloc((sink->n_tensors ? sink->n_tensors : 1) * sizeof *sorted);
    char *index_path = lti_path_join(w->dir.tmp_path, LT_ST_INDEX_NAME);
    if (!sorted || !index_path) {
        free(sorted);
        free(index_path);
        return lti_fail_nomem(err, sink->path);
    }
    uint64_t total = 0;
    for (size_t k = 0; k < w->n_files; k++)
        if (!lti_add_u64(total, w->files[k].data_bytes, &total))
            total = UINT64_MAX; /* unreachable: the shards were written */
    for (size_t i = 0; i < sink->n_tensors; i++)
        sorted[i] = &sink->tensors[i];
    qsort(sorted, sink->n_tensors, sizeof *sorted, compare_tensor_names);
    struct text t = {0};
    text_add_str(&t, "{\n  \"metadata\": {\n    \"total_size\": ");
    text_add_u64(&t, total);
    text_add_str(&t, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < sink->n_tensors; i++) {
        const char *shard_path = w->files[sorted[i]->file_index].path;
        const char *slash = strrchr(shard_path, '/');
        text_add_str(&t, i ? ",\n    " : "\n    ");
        text_add_json_string(&t, sorted[i]->name);
        text_add_str(&t, ": ");
        text_add_json_string(&t, slash ? slash + 1 : shard_path);
    }
    text_add_str(&t, sink->n_tensors ? "\n  }\n}\n" : "}\n}\n");
    lt_status s = t.failed ? lti_fail_nomem(err, index_path)
                           : lti_write_file_atomic(index_path, t.data, t.len, err);
    free(t.data);
    free(sorted);
    free(index_path);
    return s;
}

static lt_status st_commit(lt_sink *sink, lt_error *err)
{
    struct st_writer *w = sink->impl;
    for (size_t k = 0; k < w->n_files; k++) {
        struct out_file *f = &w->files[k];
        lt_status s = lti_wfile_commit(&f->file, err);
        if (s != LT_OK) {
            f->created = false; /* lti_wfile_commit removed its temporary */
            return s;           /* st_abort removes the rest */
        }
        f->committed = true;
    }
    /* the index goes last, so a reader never finds one naming missing shards */
    if (w->sharded) {
        lt_status s = write_index(sink, w, err);
        if (s == LT_OK)
            s = lti_wdir_commit(&w->dir, sink->opts.fsync, err);
        if (s != LT_OK)
            return s;
    }
    writer_free(sink);
    return LT_OK;
}

static void st_abort(lt_sink *sink)
{
    struct st_writer *w = sink->impl;
    if (!w)
        return;
    writer_discard(w);
    writer_free(sink);
}

static const struct lti_sink_ops st_sink_ops = {
    .begin = st_begin, .write = st_write, .commit = st_commit, .abort = st_abort};

lt_sink *lti_st_sink_create(const char *path, bool sharded, const lt_sink_options *given, lt_error *err)
{
    lt_sink_options opts = given ? *given : (lt_sink_options){0};
    opts.shard_size = sharded ? (opts.shard_size ? opts.shard_size : DEFAULT_SHARD_SIZE) : 0;
    lt_sink *sink = lti_sink_new(sharded ? "safetensors-sharded" : "safetensors", path, &opts,
                                &st_sink_ops, err);
    if (!sink)
        return NULL;
    struct st_writer *w = calloc(1, sizeof *w);
    if (!w) {
        lti_fail_nomem(err, path);
        lt_sink_abort(sink);
        return NULL;
    }
    w->sharded = sharded;
    w->shard_size = opts.shard_size;
    sink->impl = w;
    return sink;
}
