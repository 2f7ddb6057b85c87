/*
 * test_safetensors.c - the safetensors reader and writer, single and sharded.
 *
 * Usage: test_safetensors [REFERENCE_DIR]   (default build/testdata/safetensors)
 *
 * REFERENCE_DIR is made by testdata/make_safetensors_ref.py, which writes
 * fixture files with its own json+numpy writer and describes them, and the
 * real files of ../shared/corpus, in expected.json (names, shapes, offsets,
 * byte checksums, float values).  A missing REFERENCE_DIR is a failure.
 * Cases reading ../shared/corpus print "SKIP name: corpus absent" when it is
 * not there.
 *
 * Invalid files are generated here from a valid header: one case per rule of
 * spec/safetensors.md (R1...R16, S1...S6), each expected to fail with its own
 * message, plus a seeded loop of random mutations that must never crash
 * (run under ASan/UBSan by `make test`).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "format.h"

static const char *reference_dir = "build/testdata/safetensors";
static const char *corpus_dir = "../shared/corpus";
static char tmp_root[] = "/tmp/lt_test_safetensors_XXXXXX";

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* Paths under the temporary directory; they stay valid until exit. */
static char *kept_paths[256];
static size_t n_kept_paths;

static const char *tmp(const char *name)
{
    char *path = lti_asprintf("%s/%s", tmp_root, name);
    if (n_kept_paths < sizeof kept_paths / sizeof kept_paths[0])
        kept_paths[n_kept_paths++] = path;
    return path; /* past 256 paths a few bytes leak: tests only */
}

/* Entries of a directory, "." and ".." excluded. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* The checksum make_safetensors_ref.py writes: sum of b[i] * (i + 1). */
static uint64_t checksum(const unsigned char *b, size_t n)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (uint64_t)b[i] * (uint64_t)(i + 1);
    return sum;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A safetensors file from header text: the header length is header_len
 * (or strlen(header) when header_len is UINT64_MAX), then the header, then
 * data_len bytes of a pattern, and the whole is cut to `cut` bytes when cut
 * is not UINT64_MAX. */
static bool make_file(const char *path, const char *header, uint64_t header_len,
                      size_t data_len, uint64_t cut)
{
    size_t text_len = strlen(header);
    size_t len = 8 + text_len + data_len;
    unsigned char *buf = malloc(len);
    put_le64(buf, header_len == UINT64_MAX ? text_len : header_len);
    memcpy(buf + 8, header, text_len);
    for (size_t i = 0; i < data_len; i++)
        buf[8 + text_len + i] = (unsigned char)(i * 7 + 1);
    bool ok = write_file(path, buf, cut < len ? (size_t)cut : len);
    free(buf);
    return ok;
}

/* Open, expecting failure with status and a message naming path and
 * containing expect.  Returns the message (static) for further checks. */
static const char *expect_failure(const char *path, lt_status status, const char *expect)
{
    static char message[LT_ERROR_MAX];
    lt_error err = {LT_OK, ""};
    lt_source *src = lt_source_open(path, &err);
    CHECK_MSG(src == NULL, "%s: opened, expected \"%s\"", path, expect);
    lt_source_close(src);
    CHECK_MSG(err.status == status, "%s: status %d (%s), expected %d; message: %s", path,
              err.status, lt_status_name(err.status), status, err.message);
    CHECK_MSG(strstr(err.message, expect) != NULL, "%s: message \"%s\" lacks \"%s\"", path,
              err.message, expect);
    CHECK_MSG(strncmp(err.message, path, strlen(path)) == 0, "message \"%s\" does not start with %s",
              err.message, path);
    CHECK_MSG(strchr(err.message, '\n') == NULL, "message has a newline: %s", err.message);
    snprintf(message, sizeof message, "%s", err.message);
    return message;
}

static lt_source *open_ok(const char *path)
{
    lt_error err = {LT_OK, ""};
    lt_source *src = lt_source_open(path, &err);
    CHECK_MSG(src != NULL, "%s: %s", path, err.message);
    return src;
}

static unsigned char *read_tensor(lt_source *src, size_t i)
{
    const lt_tensor_info *t = lt_source_tensor(src, i);
    unsigned char *buf = malloc(t->n_bytes ? (size_t)t->n_bytes : 1);
    lt_error err = {LT_OK, ""};
    lt_status s = lt_source_read(src, i, 0, buf, (size_t)t->n_bytes, &err);
    CHECK_MSG(s == LT_OK, "read '%s': %s", t->name, err.message);
    return buf;
}

/* ------------------------------------------------------------------ */
/* Comparing a source with the numpy description                        */
/* ------------------------------------------------------------------ */

static cJSON *load_expected(void)
{
    size_t len;
    unsigned char *text = read_file(fmt("%s/expected.json", reference_dir), &len);
    CHECK_MSG(text != NULL, "%s/expected.json missing: run testdata/make_safetensors_ref.py %s",
              reference_dir, reference_dir);
    if (!text)
        return NULL;
    cJSON *json = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    CHECK_MSG(json != NULL, "expected.json is not JSON");
    return json;
}

static uint64_t json_u64(const cJSON *item)
{
    return cJSON_IsString(item) ? strtoull(item->valuestring, NULL, 10) : (uint64_t)-1;
}

/* Check src against one entry of expected.json ("fixtures" or "corpus"). */
static void compare_with_reference(lt_source *src, const cJSON *desc)
{
    const char *file = cJSON_GetObjectItem(desc, "file")->valuestring;
    CHECK_STR(lt_source_format(src), cJSON_GetObjectItem(desc, "format")->valuestring);
    const cJSON *meta = cJSON_GetObjectItem(desc, "metadata");
    CHECK_MSG(lt_source_meta_count(src) == (size_t)cJSON_GetArraySize(meta), "%s: %zu metadata, expected %d",
              file, lt_source_meta_count(src), cJSON_GetArraySize(meta));
    size_t m = 0;
    for (const cJSON *kv = meta->child; kv && m < lt_source_meta_count(src); kv = kv->next, m++) {
        CHECK_STR(lt_source_meta_key(src, m), kv->string);
        CHECK_STR(lt_source_meta_value(src, m), kv->valuestring);
    }
    const cJSON *tensors = cJSON_GetObjectItem(desc, "tensors");
    size_t n = (size_t)cJSON_GetArraySize(tensors);
    CHECK_MSG(lt_source_tensor_count(src) == n, "%s: %zu tensors, expected %zu", file,
              lt_source_tensor_count(src), n);
    size_t i = 0;
    for (const cJSON *e = tensors->child; e && i < lt_source_tensor_count(src); e = e->next, i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        CHECK_STR(t->name, name);
        CHECK_STR(lt_dtype_name(t->dtype), cJSON_GetObjectItem(e, "dtype")->valuestring);
        const cJSON *shape = cJSON_GetObjectItem(e, "shape");
        CHECK_EQ_U64(t->n_dims, cJSON_GetArraySize(shape));
        uint32_t d = 0;
        for (const cJSON *dim = shape->child; dim && d < LT_MAX_DIMS; dim = dim->next, d++)
            CHECK_EQ_U64(t->shape[d], json_u64(dim));
        CHECK_EQ_U64(t->offset, json_u64(cJSON_GetObjectItem(e, "offset")));
        CHECK_EQ_U64(t->n_bytes, json_u64(cJSON_GetObjectItem(e, "nbytes")));
        CHECK_EQ_U64(t->file_index, cJSON_GetObjectItem(e, "file_index")->valueint);
        CHECK_EQ_U64(lt_source_find(src, name), i);
        unsigned char *bytes = read_tensor(src, i);
        CHECK_MSG(checksum(bytes, (size_t)t->n_bytes) == json_u64(cJSON_GetObjectItem(e, "checksum")),
                  "%s: tensor '%s': checksum of bytes differs", file, name);
        free(bytes);
        const cJSON *first = cJSON_GetObjectItem(e, "first");
        const cJSON *sum = cJSON_GetObjectItem(e, "sum");
        if (cJSON_IsNumber(sum)) {
            float *values = malloc((size_t)t->n_elems * sizeof *values);
            lt_error err = {LT_OK, ""};
            CHECK_MSG(lt_source_read_f32(src, i, 0, t->n_elems, values, &err) == LT_OK, "%s",
                      err.message);
            double total = 0;
            for (uint64_t k = 0; k < t->n_elems; k++)
                if (isfinite(values[k]))
                    total += values[k];
            double tolerance = 1e-9 * cJSON_GetObjectItem(e, "sum_abs")->valuedouble + 1e-12;
            CHECK_MSG(fabs(total - sum->valuedouble) <= tolerance, "%s: tensor '%s': sum %.17g, numpy %.17g",
                      file, name, total, sum->valuedouble);
            if (cJSON_IsNumber(first))
                CHECK_MSG((double)values[0] == first->valuedouble, "%s: tensor '%s': first %.9g, numpy %.9g",
                          file, name, values[0], first->valuedouble);
            free(values);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Reference fixtures (written by numpy)                                */
/* ------------------------------------------------------------------ */

static void test_numpy_fixtures(void)
{
    cJSON *expected = load_expected();
    if (!expected)
        return;
    const cJSON *fixtures = cJSON_GetObjectItem(expected, "fixtures");
    CHECK(cJSON_GetArraySize(fixtures) >= 5);
    const cJSON *desc;
    cJSON_ArrayForEach(desc, fixtures) {
        const char *file = cJSON_GetObjectItem(desc, "file")->valuestring;
        lt_source *src = open_ok(fmt("%s/%s", reference_dir, file));
        if (!src)
            continue;
        compare_with_reference(src, desc);
        const cJSON *files = cJSON_GetObjectItem(desc, "files");
        if (files) { /* sharded: one file per shard, in name order */
            CHECK_EQ_U64(lt_source_file_count(src), cJSON_GetArraySize(files));
            size_t k = 0;
            for (const cJSON *f = files->child; f && k < lt_source_file_count(src); f = f->next, k++)
                CHECK_STR(lt_source_file_path(src, k), fmt("%s/%s/%s", reference_dir, file, f->valuestring));
        } else {
            CHECK_EQ_U64(lt_source_file_count(src), 1);
        }
        lt_source_close(src);
    }
    /* the sharded fixture opens from its index file too */
    lt_source *src = open_ok(fmt("%s/sharded/model.safetensors.index.json", reference_dir));
    if (src) {
        CHECK_STR(lt_source_format(src), "safetensors-sharded");
        CHECK_EQ_U64(lt_source_tensor_count(src), 5);
        CHECK_STR(lt_source_meta_get(src, "format"), "pt");
    }
    lt_source_close(src);
    cJSON_Delete(expected);
}

/* ------------------------------------------------------------------ */
/* Real files from ../shared/corpus                                     */
/* ------------------------------------------------------------------ */

static bool corpus_present(void)
{
    struct stat st;
    return stat(corpus_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every corpus file whose path starts with prefix (and, when models_only,
 * is a model.safetensors opened through its directory). */
static void check_corpus(const char *prefix, bool via_directory)
{
    cJSON *expected = load_expected();
    if (!expected)
        return;
    CHECK_MSG(cJSON_IsTrue(cJSON_GetObjectItem(expected, "corpus_present")),
              "the reference was made without the corpus: rerun make_safetensors_ref.py");
    int seen = 0;
    const cJSON *desc;
    cJSON_ArrayForEach(desc, cJSON_GetObjectItem(expected, "corpus")) {
        const char *file = cJSON_GetObjectItem(desc, "file")->valuestring;
        if (strncmp(file, prefix, strlen(prefix)) != 0)
            continue;
        bool is_model = strstr(file, "/model.safetensors") != NULL;
        if (via_directory != is_model)
            continue;
        const char *path = fmt("%s/%s", corpus_dir, file);
        if (via_directory) /* a directory holding model.safetensors opens as that file */
            *strrchr((char *)path, '/') = '\0';
        lt_source *src = open_ok(path);
        if (!src)
            continue;
        seen++;
        CHECK_STR(lt_source_path(src), path);
        CHECK_STR(lt_source_file_path(src, 0), fmt("%s/%s", corpus_dir, file));
        compare_with_reference(src, desc);
        lt_source_close(src);
    }
    CHECK_MSG(seen > 0, "no corpus files under %s in the reference", prefix);
    cJSON_Delete(expected);
}

static void test_corpus_samples(void)
{
    check_corpus("models/safetensors_repo_samples/", false);
}

static void test_corpus_adapters(void)
{
    check_corpus("adapters/", false);
}

static void test_corpus_models(void)
{
    check_corpus("models/", true);
}

/* ------------------------------------------------------------------ */
/* Writing and reading back                                             */
/* ------------------------------------------------------------------ */

/* Tensor bytes used by the round trips: a pattern that differs per tensor. */
static unsigned char pattern_byte(size_t tensor, uint64_t i)
{
    return (unsigned char)(tensor * 31 + i * 13 + (i >> 8));
}

struct declared {
    const char *name;
    lt_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[3];
};

/* Declare, write (in reverse order, each tensor in two pieces), commit. */
static bool write_tensors(lt_sink *sink, const struct declared *list, size_t n)
{
    lt_error err = {LT_OK, ""};
    for (size_t i = 0; i < n; i++) {
        long index = lt_sink_add_tensor(sink, list[i].name, list[i].dtype, list[i].n_dims,
                                        list[i].shape, &err);
        CHECK_MSG(index == (long)i, "add '%s': %s", list[i].name, err.message);
    }
    CHECK_MSG(lt_sink_begin(sink, &err) == LT_OK, "begin: %s", err.message);
    for (size_t i = n; i-- > 0;) {
        uint64_t bytes = lt_sink_tensor_bytes(sink, (long)i);
        unsigned char *data = malloc(bytes ? bytes : 1);
        for (uint64_t k = 0; k < bytes; k++)
            data[k] = pattern_byte(i, k);
        uint64_t half = bytes / 2;
        CHECK(lt_sink_write(sink, (long)i, half, data + half, bytes - half, &err) == LT_OK);
        CHECK(lt_sink_write(sink, (long)i, 0, data, half, &err) == LT_OK);
        free(data);
    }
    lt_status s = lt_sink_commit(sink, &err);
    CHECK_MSG(s == LT_OK, "commit: %s", err.message);
    return s == LT_OK;
}

/* The source holds exactly list, in declared order, with pattern bytes. */
static void check_tensors(lt_source *src, const struct declared *list, size_t n)
{
    CHECK_EQ_U64(lt_source_tensor_count(src), n);
    for (size_t i = 0; i < n && i < lt_source_tensor_count(src); i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        CHECK_STR(t->name, list[i].name);
        CHECK_EQ_U64(t->dtype, list[i].dtype);
        CHECK_EQ_U64(t->n_dims, list[i].n_dims);
        for (uint32_t d = 0; d < list[i].n_dims; d++)
            CHECK_EQ_U64(t->shape[d], list[i].shape[d]);
        unsigned char *bytes = read_tensor(src, i);
        uint64_t wrong = 0;
        for (uint64_t k = 0; k < t->n_bytes; k++)
            wrong += bytes[k] != pattern_byte(i, k);
        CHECK_MSG(wrong == 0, "tensor '%s': %" PRIu64 " bytes differ", t->name, wrong);
        free(bytes);
    }
}

static const char *const tricky_meta[][2] = {
    {"format", "pt"},
    {"quote\"and\\backslash", "value with \"quotes\" and \\ backslashes"},
    {"controls", "\x01\x02\b\f\n\r\t\x1f end"},
    {"utf-8 \xc3\xbc", "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82 del\x7f"},
    {"", "empty key"},
};

static void test_roundtrip_all_dtypes(void)
{
    struct declared list[LT_DTYPE_COUNT + 4];
    size_t n = 0;
    static char names[LT_DTYPE_COUNT][32];
    for (int t = 1; t < LT_DTYPE_COUNT; t++) {
        if (lt_dtype_from_safetensors(lt_dtype_name((lt_dtype)t)) != (lt_dtype)t)
            continue; /* not a safetensors dtype */
        snprintf(names[n], sizeof names[n], "layer.%d.%s", t, lt_dtype_name((lt_dtype)t));
        list[n] = (struct declared){names[n], (lt_dtype)t, 2, {3, (uint64_t)t % 4 + 1, 0}};
        n++;
    }
    CHECK_MSG(n == 17, "%zu safetensors dtypes, expected 17", n);
    list[n++] = (struct declared){"scalar", LT_F32, 0, {0}};
    list[n++] = (struct declared){"zero.rows", LT_F16, 2, {0, 7}};
    list[n++] = (struct declared){"zero.cols \"quoted\" \\ name\n", LT_I64, 3, {2, 0, 5}};
    list[n++] = (struct declared){"\xe5\x90\x8d\xe5\x89\x8d", LT_BF16, 1, {9}};

    const char *paths[2] = {tmp("all.safetensors"), tmp("all_again.safetensors")};
    for (int copy = 0; copy < 2; copy++) {
        lt_error err = {LT_OK, ""};
        lt_sink *sink = lt_sink_create("safetensors", paths[copy], NULL, &err);
        CHECK_MSG(sink != NULL, "%s", err.message);
        if (!sink)
            return;
        for (size_t m = 0; m < sizeof tricky_meta / sizeof tricky_meta[0]; m++)
            CHECK(lt_sink_set_meta(sink, tricky_meta[m][0], tricky_meta[m][1], &err) == LT_OK);
        write_tensors(sink, list, n);
    }
    lt_source *src = open_ok(paths[0]);
    if (!src)
        return;
    CHECK_STR(lt_source_format(src), "safetensors");
    check_tensors(src, list, n);
    CHECK_EQ_U64(lt_source_meta_count(src), sizeof tricky_meta / sizeof tricky_meta[0]);
    for (size_t m = 0; m < sizeof tricky_meta / sizeof tricky_meta[0]; m++)
        CHECK_STR(lt_source_meta_get(src, tricky_meta[m][0]), tricky_meta[m][1]);
    /* offsets are the running sum in declared order */
    uint64_t running = 0;
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        CHECK_EQ_U64(lt_source_tensor(src, i)->offset, running);
        running += lt_source_tensor(src, i)->n_bytes;
    }
    lt_source_close(src);

    /* header padded to 8 with spaces, metadata first; same bytes twice */
    size_t len_a, len_b;
    unsigned char *a = read_file(paths[0], &len_a), *b = read_file(paths[1], &len_b);
    CHECK(a && b && len_a == len_b && memcmp(a, b, len_a) == 0);
    if (a && len_a > 8) {
        uint64_t header_len = 0;
        for (int i = 7; i >= 0; i--)
            header_len = header_len << 8 | a[i];
        CHECK_EQ_U64(header_len % 8, 0);
        CHECK(memcmp(a + 8, "{\"__metadata__\":{\"format\":\"pt\",", 31) == 0);
        CHECK(strstr((const char *)a + 8, "\"controls\":\"\\u0001\\u0002\\b\\f\\n\\r\\t\\u001f end\"") != NULL);
        CHECK(8 + header_len + running == len_a);
    }
    free(a);
    free(b);
}

/* The exact bytes of a small header. */
static void test_write_exact_header(void)
{
    const char *path = tmp("exact.safetensors");
    lt_error err = {LT_OK, ""};
    lt_sink *sink = lt_sink_create("safetensors", path, NULL, &err);
    if (!sink)
        return;
    CHECK(lt_sink_set_meta(sink, "format", "pt", &err) == LT_OK);
    struct declared list[] = {{"w", LT_F16, 2, {2, 1}}, {"s", LT_U8, 0, {0}}};
    write_tensors(sink, list, 2);
    size_t len;
    unsigned char *bytes = read_file(path, &len);
    const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"w\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[0,4]},"
                         "\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[4,5]}}";
    size_t padded = (strlen(header) + 7) / 8 * 8;
    CHECK(bytes && len == 8 + padded + 5);
    if (bytes && len == 8 + padded + 5) {
        CHECK_EQ_U64(bytes[0] | bytes[1] << 8, padded);
        CHECK(memcmp(bytes + 8, header, strlen(header)) == 0);
        for (size_t i = strlen(header); i < padded; i++)
            CHECK(bytes[8 + i] == ' ');
    }
    free(bytes);

    /* no metadata: no __metadata__ key at all */
    sink = lt_sink_create("safetensors", path, NULL, &err);
    if (!sink)
        return;
    write_tensors(sink, list, 1);
    bytes = read_file(path, &len);
    CHECK(bytes && len > 16 && memcmp(bytes + 8, "{\"w\":{", 6) == 0);
    free(bytes);
}

static void test_roundtrip_sharded(void)
{
    const char *dir = tmp("sharded_out");
    mkdir(dir, 0777);
    write_file(fmt("%s/config.json", dir), "x", 1); /* an output of ours: replaced with the directory */
    lt_error err = {LT_OK, ""};
    lt_sink_options opts = {.shard_size = 100};
    lt_sink *sink = lt_sink_create("safetensors", dir, &opts, &err);
    CHECK_MSG(sink != NULL, "%s", err.message);
    if (!sink)
        return;
    CHECK(lt_sink_set_meta(sink, "format", "pt", &err) == LT_OK);
    /* 100-byte shards: [a b] [c] [big z] [d] */
    struct declared list[] = {
        {"model.a", LT_F32, 1, {10}}, {"model.b", LT_F32, 2, {5, 2}}, {"model.c", LT_F32, 1, {10}},
        {"big", LT_F32, 1, {50}}, {"z.empty", LT_F16, 1, {0}}, {"d", LT_F32, 1, {5}},
    };
    size_t n = sizeof list / sizeof list[0];
    if (!write_tensors(sink, list, n))
        return;
    static const char *const shard_of[] = {"model-00001-of-00004.safetensors", "model-00001-of-00004.safetensors",
                                           "model-00002-of-00004.safetensors", "model-00003-of-00004.safetensors",
                                           "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"};
    CHECK_EQ_U64(count_entries(dir), 5); /* 4 shards, index */

    size_t len;
    char *index = (char *)read_file(fmt("%s/model.safetensors.index.json", dir), &len);
    const char *expect = "{\n  \"metadata\": {\n    \"total_size\": 340\n  },\n  \"weight_map\": {\n"
                         "    \"big\": \"model-00003-of-00004.safetensors\",\n"
                         "    \"d\": \"model-00004-of-00004.safetensors\",\n"
                         "    \"model.a\": \"model-00001-of-00004.safetensors\",\n"
                         "    \"model.b\": \"model-00001-of-00004.safetensors\",\n"
                         "    \"model.c\": \"model-00002-of-00004.safetensors\",\n"
                         "    \"z.empty\": \"model-00003-of-00004.safetensors\"\n  }\n}\n";
    CHECK_MSG(index && len == strlen(expect) && memcmp(index, expect, len) == 0, "index:\n%.*s",
              (int)len, index ? index : "");
    free(index);

    for (int via_index = 0; via_index < 2; via_index++) {
        lt_source *src = open_ok(via_index ? fmt("%s/model.safetensors.index.json", dir) : dir);
        if (!src)
            continue;
        CHECK_STR(lt_source_format(src), "safetensors-sharded");
        CHECK_EQ_U64(lt_source_file_count(src), 4);
        for (size_t k = 0; k < lt_source_file_count(src); k++)
            CHECK_STR(lt_source_file_path(src, k), fmt("%s/model-%05zu-of-00004.safetensors", dir, k + 1));
        check_tensors(src, list, n);
        for (size_t i = 0; i < n && i < lt_source_tensor_count(src); i++)
            CHECK_STR(lt_source_file_path(src, lt_source_tensor(src, i)->file_index),
                      fmt("%s/%s", dir, shard_of[i]));
        CHECK_STR(lt_source_meta_get(src, "format"), "pt");
        lt_source_close(src);
    }
    /* every shard is a valid single file with the metadata */
    lt_source *shard = open_ok(fmt("%s/%s", dir, shard_of[2]));
    if (shard) {
        CHECK_EQ_U64(lt_source_tensor_count(shard), 1);
        CHECK_STR(lt_source_meta_get(shard, "format"), "pt");
    }
    lt_source_close(shard);

    /* the sharded format by name: shard_size 0 means 5 GB, so one shard */
    const char *dir2 = tmp("sharded_default");
    sink = lt_sink_create("safetensors-sharded", dir2, NULL, &err);
    CHECK_MSG(sink != NULL, "%s", err.message);
    if (sink && write_tensors(sink, list, n)) {
        CHECK(lti_is_file(fmt("%s/model-00001-of-00001.safetensors", dir2)));
        lt_source *src = open_ok(dir2);
        if (src)
            check_tensors(src, list, n);
        lt_source_close(src);
    }
}

static void test_sink_abort_and_refusals(void)
{
    lt_error err = {LT_OK, ""};
    const char *dir = tmp("abort_dir");
    mkdir(dir, 0777);
    struct declared one = {"t", LT_F32, 1, {4}};
    /* single file: abort after begin leaves nothing */
    lt_sink *sink = lt_sink_create("safetensors", fmt("%s/out.safetensors", dir), NULL, &err);
    if (sink) {
        CHECK(lt_sink_add_tensor(sink, one.name, one.dtype, one.n_dims, one.shape, &err) == 0);
        CHECK(lt_sink_begin(sink, &err) == LT_OK);
        CHECK(count_entries(dir) <= 1); /* unnamed (O_TMPFILE), or the named temporary */
        lt_sink_abort(sink);
    }
    CHECK_EQ_U64(count_entries(dir), 0);
    /* sharded: abort removes every temporary shard */
    lt_sink_options opts = {.shard_size = 16};
    const char *shards = tmp("abort_dir/shards");
    sink = lt_sink_create("safetensors", shards, &opts, &err);
    if (sink) {
        for (int i = 0; i < 3; i++)
            CHECK(lt_sink_add_tensor(sink, fmt("t%d", i), LT_F32, 1, one.shape, &err) == i);
        CHECK(lt_sink_begin(sink, &err) == LT_OK);
        CHECK_EQ_U64(count_entries(dir), 1); /* the hidden directory the shards are built in */
        lt_sink_abort(sink);
    }
    CHECK_EQ_U64(count_entries(dir), 0);
    /* a dtype safetensors has no name for */
    sink = lt_sink_create("safetensors", fmt("%s/q.safetensors", dir), NULL, &err);
    if (sink) {
        uint64_t shape[1] = {32};
        CHECK(lt_sink_add_tensor(sink, "q", LT_Q8_0, 1, shape, &err) == 0);
        CHECK(lt_sink_begin(sink, &err) == LT_ERR_UNSUPPORTED);
        CHECK(strstr(err.message, "safetensors cannot store") != NULL);
        lt_sink_abort(sink);
    }
    /* names must be UTF-8 */
    sink = lt_sink_create("safetensors", fmt("%s/u.safetensors", dir), NULL, &err);
    if (sink) {
        CHECK(lt_sink_add_tensor(sink, "bad\xff", LT_F32, 1, one.shape, &err) == 0);
        CHECK(lt_sink_begin(sink, &err) == LT_ERR_USAGE);
        lt_sink_abort(sink);
    }
    /* a sharded output path that is a file */
    write_file(fmt("%s/plain", dir), "x", 1);
    sink = lt_sink_create("safetensors", fmt("%s/plain", dir), &opts, &err);
    if (sink) {
        CHECK(lt_sink_add_tensor(sink, "t", LT_F32, 1, one.shape, &err) == 0);
        CHECK(lt_sink_commit(sink, &err) == LT_ERR_USAGE);
        CHECK(strstr(err.message, "exists and is not a directory") != NULL);
    }
    CHECK_EQ_U64(count_entries(dir), 1); /* plain */
    /* commit without an explicit begin writes zero-filled tensors */
    sink = lt_sink_create("safetensors", fmt("%s/zeros.safetensors", dir), NULL, &err);
    if (sink) {
        CHECK(lt_sink_add_tensor(sink, "t", LT_F32, 1, one.shape, &err) == 0);
        CHECK(lt_sink_commit(sink, &err) == LT_OK);
        lt_source *src = open_ok(fmt("%s/zeros.safetensors", dir));
        if (src) {
            unsigned char *bytes = read_tensor(src, 0);
            CHECK(checksum(bytes, 16) == 0);
            free(bytes);
        }
        lt_source_close(src);
    }
}

/* ------------------------------------------------------------------ */
/* Accepted edge cases                                                  */
/* ------------------------------------------------------------------ */

static void test_valid_edge_cases(void)
{
    static const struct {
        const char *header;
        size_t data_len;
        size_t n_tensors;
    } cases[] = {
        {"{}", 0, 0},
        {"{}      ", 0, 0},
        {" \t\r\n{}\n", 0, 0},
        {"{\"__metadata__\":null}", 0, 0},
        {"{\"__metadata__\":{}}", 0, 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, 1},
        /* zero-size tensors at the start, between and at the end */
        {"{\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"a\":{\"data_offsets\":[0,2],\"shape\":[2],\"dtype\":\"U8\"},"
         "\"z2\":{\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[2,2]},"
         "\"b\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[2,4]},"
         "\"z3\":{\"dtype\":\"BOOL\",\"shape\":[0,18446744073709551615],\"data_offsets\":[4,4]}}", 4, 5},
        /* only zero-size tensors */
        {"{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, 1},
        /* escapes and surrogate pairs in names */
        {"{\"caf\\u00e9 \\ud83d\\ude42 \\\"q\\\" \\/\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = tmp(fmt("valid%zu.safetensors", i));
        make_file(path, cases[i].header, UINT64_MAX, cases[i].data_len, UINT64_MAX);
        lt_source *src = open_ok(path);
        if (!src)
            continue;
        CHECK_EQ_U64(lt_source_tensor_count(src), cases[i].n_tensors);
        lt_source_close(src);
    }
    lt_source *src = open_ok(tmp("valid6.safetensors"));
    if (src) { /* sorted by offset, zero-size ones where they sit */
        const char *order[] = {"z1", "a", "z2", "b", "z3"};
        for (size_t i = 0; i < 5; i++)
            CHECK_STR(lt_source_tensor(src, i)->name, order[i]);
        CHECK_EQ_U64(lt_source_tensor(src, 4)->shape[1], UINT64_MAX);
    }
    lt_source_close(src);
    src = open_ok(tmp("valid8.safetensors"));
    if (src)
        CHECK_STR(lt_source_tensor(src, 0)->name, "caf\xc3\xa9 \xf0\x9f\x99\x82 \"q\" /");
    lt_source_close(src);
}

static void test_probe_and_dispatch(void)
{
    /* a broken file named .safetensors gets the safetensors message */
    const char *junk = tmp("junk.safetensors");
    write_file(junk, "hello", 5);
    expect_failure(junk, LT_ERR_INVALID, "too short for the 8-byte header length");
    /* the same bytes under another name are not recognized */
    const char *other = tmp("junk.bin");
    write_file(other, "hello", 5);
    lt_error err = {LT_OK, ""};
    CHECK(lt_source_open(other, &err) == NULL && err.status == LT_ERR_UNSUPPORTED);
    /* any name works when the bytes look right */
    const char *noext = tmp("weights.data");
    make_file(noext, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", UINT64_MAX, 1,
              UINT64_MAX);
    lt_source *src = open_ok(noext);
    if (src)
        CHECK_STR(lt_source_format(src), "safetensors");
    lt_source_close(src);
    /* a directory holding model.safetensors */
    const char *dir = tmp("model_dir");
    mkdir(dir, 0777);
    rename(noext, fmt("%s/model.safetensors", dir));
    src = open_ok(dir);
    if (src) {
        CHECK_STR(lt_source_format(src), "safetensors");
        CHECK_STR(lt_source_path(src), dir);
        CHECK_STR(lt_source_file_path(src, 0), fmt("%s/model.safetensors", dir));
    }
    lt_source_close(src);
    /* reads past a tensor's end are refused; a file shrunk after opening
     * gives an error, not garbage */
    src = open_ok(dir);
    if (src) {
        unsigned char byte[2];
        CHECK(lt_source_read(src, 0, 0, byte, 2, &err) == LT_ERR_USAGE);
        CHECK(truncate(fmt("%s/model.safetensors", dir), 20) == 0);
        CHECK(lt_source_read(src, 0, 0, byte, 1, &err) == LT_ERR_INVALID);
    }
    lt_source_close(src);
}

/* ------------------------------------------------------------------ */
/* Invalid files, one per rule                                          */
/* ------------------------------------------------------------------ */

#define T_A "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"
#define T_B "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[24,28]}"
#define META "\"__metadata__\":{\"format\":\"pt\"}"
#define VALID_HEADER "{" META "," T_A "," T_B "}"
#define VALID_DATA 28

#define KEEP UINT64_MAX

struct bad_case {
    const char *kind;       /* the rule; cases of one kind share `expect`  */
    const char *header;
    size_t data_len;
    uint64_t header_len;    /* KEEP: strlen(header)                        */
    uint64_t cut;           /* KEEP: whole file                            */
    lt_status status;
    const char *expect;     /* distinguishing part of the message          */
    size_t raw_len;         /* nonzero: header has NULs, this many bytes   */
};

#define INV LT_ERR_INVALID
static const struct bad_case bad_cases[] = {
    {"R1", VALID_HEADER, VALID_DATA, KEEP, 5, INV, "too short for the 8-byte header length", 0},
    {"R1", "", 0, KEEP, 0, INV, "too short for the 8-byte header length", 0},
    {"R2", VALID_HEADER, VALID_DATA, 100000001, KEEP, INV, "exceeds the limit of 100000000 bytes", 0},
    {"R2", VALID_HEADER, VALID_DATA, UINT64_MAX - 1, KEEP, INV, "exceeds the limit of 100000000 bytes", 0},
    {"R3", VALID_HEADER, VALID_DATA, KEEP, 8 + 20, INV, "runs past the end of the file", 0},
    {"R3", VALID_HEADER, VALID_DATA, sizeof VALID_HEADER + VALID_DATA + 1, KEEP, INV, "runs past the end of the file", 0},
    {"R4", "{\"a\xff\":{}}", 0, KEEP, KEEP, INV, "header is not valid UTF-8", 0},
    {"R4", "{\"\xc0\x80\":{}}", 0, KEEP, KEEP, INV, "header is not valid UTF-8", 0},
    {"R4", "{\"\xed\xa0\x80\":{}}", 0, KEEP, KEEP, INV, "header is not valid UTF-8", 0},
    {"R4", "{\"\xf4\x90\x80\x80\":{}}", 0, KEEP, KEEP, INV, "header is not valid UTF-8", 0},
    {"R5", "{" T_A "," T_B, VALID_DATA, KEEP, KEEP, INV, "header is not valid JSON", 0},
    {"R5", "", 0, KEEP, KEEP, INV, "header is not valid JSON", 0},
    {"R5", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24],}}", 24, KEEP, KEEP, INV,
     "header is not valid JSON", 0},
    {"R5.ctrl", "{\"a\x01\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, KEEP, KEEP, INV,
     "raw control character 0x01 inside a string", 0},
    {"R5.outside", "\xef\xbb\xbf{}", 0, KEEP, KEEP, INV, "outside any JSON string", 0},
    {"R5.outside", "\x00{}", 0, KEEP, KEEP, INV, "outside any JSON string", 3},
    {"R5.zero", "{\"a\":{\"dtype\":\"I8\",\"shape\":[01],\"data_offsets\":[0,1]}}", 1, KEEP, KEEP, INV,
     "has a leading zero", 0},
    {"R5.after", "{} x", 0, KEEP, KEEP, INV, "after the end of its JSON value", 0},
    {"R5.after", "{}\x00\x00", 0, KEEP, KEEP, INV, "after the end of its JSON value", 4},
    {"R5.nul", "{\"a\\u0000b\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, KEEP, KEEP,
     LT_ERR_UNSUPPORTED, "escaped NUL", 0},
    {"R6", "[1,2]", 0, KEEP, KEEP, INV, "header is not a JSON object", 0},
    {"R6", "\"text\"", 0, KEEP, KEEP, INV, "header is not a JSON object", 0},
    {"R7.dup", "{" META "," T_A "," META "," T_B "}", VALID_DATA, KEEP, KEEP, INV, "duplicate __metadata__", 0},
    {"R7.obj", "{\"__metadata__\":\"pt\"," T_A "," T_B "}", VALID_DATA, KEEP, KEEP, INV,
     "__metadata__ is not an object", 0},
    {"R7.str", "{\"__metadata__\":{\"k\":1}," T_A "," T_B "}", VALID_DATA, KEEP, KEEP, INV,
     "metadata value for 'k' is not a string", 0},
    {"R7.str", "{\"__metadata__\":{\"k\":null}," T_A "," T_B "}", VALID_DATA, KEEP, KEEP, INV,
     "metadata value for 'k' is not a string", 0},
    {"R7.key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," T_A "," T_B "}", VALID_DATA, KEEP, KEEP, INV,
     "duplicate metadata key 'k'", 0},
    {"R8.obj", "{" T_A ",\"b\":[1]}", 24, KEEP, KEEP, INV, "tensor 'b': entry is not a JSON object", 0},
    {"R8.field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24],\"extra\":1}}", 24, KEEP, KEEP,
     INV, "tensor 'a': unexpected field 'extra'", 0},
    {"R8.missing", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3]}}", 24, KEEP, KEEP, INV,
     "tensor 'a': missing field 'data_offsets'", 0},
    {"R8.twice", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, KEEP,
     KEEP, INV, "tensor 'a': field 'dtype' appears twice", 0},
    {"R9.type", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KEEP, KEEP, INV,
     "tensor 'a': dtype is not a string", 0},
    {"R9.unknown", "{\"a\":{\"dtype\":\"F33\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "unknown dtype 'F33' for tensor 'a'", 0},
    {"R9.unknown", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "unknown dtype 'f32' for tensor 'a'", 0},
    {"R9.unsupported", "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, KEEP, KEEP,
     LT_ERR_UNSUPPORTED, "has dtype F4, which loratool does not handle", 0},
    {"R10.array", "{\"a\":{\"dtype\":\"F32\",\"shape\":6,\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "tensor 'a': shape is not an array", 0},
    {"R10.number", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"6\"],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "shape holds something that is not a number", 0},
    {"R10.negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2,-3],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "shape has a negative number (-2)", 0},
    {"R10.fraction", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5,3],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "shape has a number that is not an integer (2.5)", 0},
    {"R10.fraction", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0,3],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "shape has a number that is not an integer (2.0)", 0},
    {"R10.fraction", "{\"a\":{\"dtype\":\"F32\",\"shape\":[6e0],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "shape has a number that is not an integer (6e0)", 0},
    {"R10.large", "{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551616],\"data_offsets\":[0,24]}}", 24, KEEP,
     KEEP, INV, "shape has a number above 2^64-1", 0},
    {"R10.dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, KEEP, KEEP,
     LT_ERR_UNSUPPORTED, "more than 8 dimensions", 0},
    {"R11.pair", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24,48]}}", 24, KEEP, KEEP, INV,
     "data_offsets is not a pair", 0},
    {"R11.negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[-24,0]}}", 24, KEEP, KEEP, INV,
     "data_offsets has a negative number", 0},
    {"R11.order", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[24,0]}}", 24, KEEP, KEEP, INV,
     "data_offsets end 0 is before begin 24", 0},
    {"R12", "{" T_A ",\"a\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[24,28]}}", VALID_DATA, KEEP, KEEP, INV,
     "duplicate tensor name 'a'", 0},
    {"R13.elems", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,24]}}", 24,
     KEEP, KEEP, INV, "element count of its shape overflows 64 bits", 0},
    {"R13.bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,24]}}", 24, KEEP,
     KEEP, INV, "size in bytes overflows 64 bits", 0},
    {"R14", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,24]}}", 24, KEEP, KEEP, INV,
     "F32 [2, 2] needs 16 bytes but its data_offsets span 24", 0},
    {"R15.start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[4,28]}}", 28, KEEP, KEEP, INV,
     "first tensor 'a' starts at data byte 4, not 0", 0},
    {"R15.hole", "{" T_A ",\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[28,32]}}", 32, KEEP, KEEP, INV,
     "hole of 4 bytes between tensor 'a'", 0},
    {"R15.overlap", "{" T_A ",\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[20,24]}}", 24, KEEP, KEEP, INV,
     "tensor 'b' (starts at 20) overlaps tensor 'a'", 0},
    {"R15.overlap", "{" T_A ",\"b\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[8,8]}}", 24, KEEP, KEEP, INV,
     "tensor 'b' (starts at 8) overlaps tensor 'a'", 0},
    {"R16.short", VALID_HEADER, VALID_DATA, KEEP, 8 + sizeof VALID_HEADER - 1 + 27, INV,
     "file truncated: tensor data needs 28 bytes after the header, the file has 27", 0},
    {"R16.short", VALID_HEADER, VALID_DATA, KEEP, 8 + sizeof VALID_HEADER - 1, INV,
     "file truncated: tensor data needs 28 bytes after the header, the file has 0", 0},
    {"R16.trailing", VALID_HEADER, VALID_DATA + 2, KEEP, KEEP, INV, "2 trailing bytes after the last tensor's data", 0},
    {"R16.trailing", "{}", 1, KEEP, KEEP, INV, "1 trailing bytes after the last tensor's data", 0},
};

static void test_invalid_files(void)
{
    size_t n = sizeof bad_cases / sizeof bad_cases[0];
    static char messages[sizeof bad_cases / sizeof bad_cases[0]][LT_ERROR_MAX];
    /* the valid base opens */
    const char *base = tmp("base.safetensors");
    make_file(base, VALID_HEADER, KEEP, VALID_DATA, KEEP);
    lt_source *src = open_ok(base);
    lt_source_close(src);
    for (size_t i = 0; i < n; i++) {
        const struct bad_case *c = &bad_cases[i];
        const char *path = tmp(fmt("bad_%02zu_%s.safetensors", i, c->kind));
        if (c->raw_len) { /* a header with raw NULs: written byte for byte */
            unsigned char buf[64];
            put_le64(buf, c->raw_len);
            memcpy(buf + 8, c->header, c->raw_len);
            write_file(path, buf, 8 + c->raw_len);
        } else {
            make_file(path, c->header, c->header_len, c->data_len, c->cut);
        }
        const char *message = expect_failure(path, c->status, c->expect);
        snprintf(messages[i], sizeof messages[i], "%s", message);
    }
    /* each kind of defect has its own message: no other kind's message
     * contains this kind's distinguishing text */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(bad_cases[i].kind, bad_cases[j].kind) != 0)
                CHECK_MSG(strstr(messages[j], bad_cases[i].expect) == NULL,
                          "case %zu (%s) message \"%s\" also matches case %zu (%s)", j, bad_cases[j].kind,
                          messages[j], i, bad_cases[i].kind);
}

/* A valid sharded model written by our sink, then broken in one way. */
static const char *make_sharded_copy(const char *name)
{
    const char *dir = tmp(name);
    lt_error err = {LT_OK, ""};
    lt_sink_options opts = {.shard_size = 8};
    lt_sink *sink = lt_sink_create("safetensors", dir, &opts, &err);
    if (!sink)
        return dir;
    struct declared list[] = {{"x", LT_F32, 1, {2}}, {"y", LT_F32, 1, {2}}, {"z", LT_F32, 1, {2}}};
    write_tensors(sink, list, 3);
    return dir;
}

static void write_index(const char *dir, const char *text)
{
    write_file(fmt("%s/model.safetensors.index.json", dir), text, strlen(text));
}

#define SHARD1 "model-00001-of-00003.safetensors"
#define SHARD2 "model-00002-of-00003.safetensors"
#define SHARD3 "model-00003-of-00003.safetensors"

static void test_invalid_sharded(void)
{
    static const struct {
        const char *kind;
        const char *index; /* NULL: keep the written index */
        lt_status status;
        const char *expect;
    } cases[] = {
        {"S1.utf8", "{\"weight_map\":{\"x\xff\":\"" SHARD1 "\"}}", INV, "index is not valid UTF-8"},
        {"S1.json", "{\"weight_map\":{", INV, "index is not valid JSON"},
        {"S1.object", "[]", INV, "index is not a JSON object"},
        {"S2.map", "{\"metadata\":{}}", INV, "index has no \"weight_map\" object"},
        {"S2.twice", "{\"weight_map\":{},\"weight_map\":{}}", INV, "index has 'weight_map' twice"},
        {"S2.meta", "{\"metadata\":[],\"weight_map\":{}}", INV, "index \"metadata\" is not an object"},
        {"S2.value", "{\"weight_map\":{\"x\":1}}", INV, "weight_map value for tensor 'x' is not a string"},
        {"S3", "{\"weight_map\":{\"x\":\"../" SHARD1 "\",\"y\":\"" SHARD2 "\",\"z\":\"" SHARD3 "\"}}", INV,
         "not a plain file name"},
        {"S3", "{\"weight_map\":{\"x\":\"..\",\"y\":\"" SHARD2 "\",\"z\":\"" SHARD3 "\"}}", INV,
         "not a plain file name"},
        {"S3", "{\"weight_map\":{\"x\":\"/etc/passwd\"}}", INV, "not a plain file name"},
        {"S4", "{\"weight_map\":{\"x\":\"" SHARD1 "\",\"x\":\"" SHARD1 "\"}}", INV, "appears twice in weight_map"},
        {"S5.missing", "{\"weight_map\":{\"x\":\"" SHARD1 "\",\"ghost\":\"" SHARD1 "\",\"y\":\"" SHARD2
         "\",\"z\":\"" SHARD3 "\"}}", INV, "tensor 'ghost' is missing from shard '" SHARD1 "'"},
        {"S5.wrong", "{\"weight_map\":{\"x\":\"" SHARD2 "\",\"y\":\"" SHARD1 "\",\"z\":\"" SHARD3 "\"}}", INV,
         "tensor 'x' is in shard '" SHARD1 "' but the index puts it in '" SHARD2 "'"},
        {"S6", "{\"weight_map\":{\"x\":\"" SHARD1 "\",\"y\":\"" SHARD2 "\",\"z\":\"gone.safetensors\"}}", INV,
         "shard 'gone.safetensors' named by the index does not exist"},
    };
    size_t n = sizeof cases / sizeof cases[0];
    static char messages[32][LT_ERROR_MAX];
    const char *good = make_sharded_copy("sharded_good");
    lt_source *src = open_ok(good);
    lt_source_close(src);
    for (size_t i = 0; i < n; i++) {
        const char *dir = make_sharded_copy(fmt("sharded_bad_%02zu", i));
        write_index(dir, cases[i].index);
        const char *message = expect_failure(dir, cases[i].status, cases[i].expect);
        snprintf(messages[i], sizeof messages[i], "%s", message);
        CHECK(strncmp(message, fmt("%s/model.safetensors.index.json: ", dir), strlen(dir) + 30) == 0);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(cases[i].kind, cases[j].kind) != 0)
                CHECK_MSG(strstr(messages[j], cases[i].expect) == NULL, "sharded case %zu matches %zu", j, i);

    /* a shard holding a tensor the index does not list */
    const char *dir = make_sharded_copy("sharded_unlisted");
    unlink(fmt("%s/%s", dir, SHARD1));
    make_file(fmt("%s/%s", dir, SHARD1),
              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"extra\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]}}", KEEP, 9, KEEP);
    expect_failure(dir, INV, "shard '" SHARD1 "' holds tensor 'extra', which the index does not list");
    /* the same tensor in two shards */
    dir = make_sharded_copy("sharded_dup");
    unlink(fmt("%s/%s", dir, SHARD2));
    make_file(fmt("%s/%s", dir, SHARD2),
              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", KEEP, 8, KEEP);
    expect_failure(dir, INV, "tensor 'x' is in both shard '" SHARD1 "' and shard '" SHARD2 "'");
    /* a broken shard is reported with the shard's own path */
    dir = make_sharded_copy("sharded_broken_shard");
    CHECK(truncate(fmt("%s/%s", dir, SHARD3), 30) == 0);
    lt_error err = {LT_OK, ""};
    CHECK(lt_source_open(dir, &err) == NULL);
    CHECK_MSG(strncmp(err.message, fmt("%s/%s: ", dir, SHARD3), strlen(dir) + 35) == 0, "%s", err.message);
}

/* ------------------------------------------------------------------ */
/* Seeded random mutations                                              */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng_next(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rng_below(size_t n)
{
    return n ? (size_t)(rng_next() % n) : 0;
}

/* Open path; it must open or fail cleanly, and an opened source must
 * read every tensor.  Returns whether it opened. */
static bool open_mutant(const char *path, size_t round)
{
    lt_error err = {LT_OK, ""};
    lt_source *src = lt_source_open(path, &err);
    if (!src) {
        CHECK_MSG(err.status == LT_ERR_INVALID || err.status == LT_ERR_UNSUPPORTED,
                  "round %zu: status %d: %s", round, err.status, err.message);
        CHECK_MSG(err.message[0] != '\0', "round %zu: empty message", round);
        return false;
    }
    for (size_t i = 0; i < lt_source_tensor_count(src); i++)
        free(read_tensor(src, i));
    lt_source_close(src);
    return true;
}

static void test_random_mutations(void)
{
    static const char json_bytes[] = "{}[]:,\"0123456789-.eE \\u\x01\xff";
    size_t base_len = 8 + strlen(VALID_HEADER) + VALID_DATA;
    unsigned char *base = malloc(base_len);
    put_le64(base, strlen(VALID_HEADER));
    memcpy(base + 8, VALID_HEADER, strlen(VALID_HEADER));
    memset(base + 8 + strlen(VALID_HEADER), 0x3f, VALID_DATA);
    unsigned char *buf = malloc(2 * base_len + 64);
    const char *path = tmp("mutant.safetensors");
    size_t opened = 0;
    for (size_t round = 0; round < 2000; round++) {
        memcpy(buf, base, base_len);
        size_t len = base_len, header_len = strlen(VALID_HEADER);
        size_t flips = 1 + rng_below(3);
        switch (rng_below(5)) {
        case 0: /* flip bits anywhere */
            for (size_t k = 0; k < flips; k++)
                buf[rng_below(len)] ^= (unsigned char)(1u << rng_below(8));
            break;
        case 1: /* truncate */
            len = rng_below(len);
            break;
        case 2: /* JSON-ish bytes into the header */
            for (size_t k = 0; k < flips; k++)
                buf[8 + rng_below(header_len)] = (unsigned char)json_bytes[rng_below(sizeof json_bytes - 1)];
            break;
        case 3: /* a nearby or wild header length */
            put_le64(buf, rng_below(2) ? header_len + rng_below(40) - 20 : rng_next() >> rng_below(64));
            break;
        default: { /* repeat a slice of the header, length adjusted */
            size_t from = rng_below(header_len), count = 1 + rng_below(header_len - from);
            size_t at = 8 + rng_below(header_len);
            memmove(buf + at + count, buf + at, len - at);
            memcpy(buf + at, base + 8 + from, count);
            len += count;
            put_le64(buf, header_len + count);
            break;
        }
        }
        write_file(path, buf, len);
        opened += open_mutant(path, round);
    }
    CHECK_MSG(opened > 0 && opened < 2000, "%zu of 2000 mutants opened", opened);

    /* index mutations over a valid sharded model */
    const char *dir = make_sharded_copy("sharded_mutant");
    size_t index_len;
    unsigned char *index = read_file(fmt("%s/model.safetensors.index.json", dir), &index_len);
    for (size_t round = 0; index && round < 300; round++) {
        unsigned char *text = malloc(index_len + 1);
        memcpy(text, index, index_len);
        size_t len = index_len;
        if (rng_below(4) == 0)
            len = rng_below(len);
        else
            for (size_t k = 1 + rng_below(3); k > 0; k--)
                text[rng_below(len)] = (unsigned char)json_bytes[rng_below(sizeof json_bytes - 1)];
        write_file(fmt("%s/model.safetensors.index.json", dir), text, len);
        free(text);
        open_mutant(dir, round);
    }
    free(index);
    free(base);
    free(buf);
}

/* ------------------------------------------------------------------ */

#define RUN_CORPUS(fn)                                                   \
    do {                                                                 \
        if (corpus_present())                                            \
            RUN(fn);                                                     \
        else                                                             \
            printf("SKIP %s: corpus absent (%s)\n", #fn, corpus_dir);    \
    } while (0)

int main(int argc, char **argv)
{
    if (argc > 1)
        reference_dir = argv[1];
    if (!mkdtemp(tmp_root)) {
        printf("FAIL setup: cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    RUN(test_numpy_fixtures);
    RUN_CORPUS(test_corpus_samples);
    RUN_CORPUS(test_corpus_adapters);
    RUN_CORPUS(test_corpus_models);
    RUN(test_roundtrip_all_dtypes);
    RUN(test_write_exact_header);
    RUN(test_roundtrip_sharded);
    RUN(test_sink_abort_and_refusals);
    RUN(test_valid_edge_cases);
    RUN(test_probe_and_dispatch);
    RUN(test_invalid_files);
    RUN(test_invalid_sharded);
    RUN(test_random_mutations);
    remove_tree(tmp_root);
    for (size_t i = 0; i < n_kept_paths; i++)
        free(kept_paths[i]);
    return check_done();
}
