/*
 * test_gguf.c - the GGUF reader and writer, and ggml block (de)quantization.
 *
 * Usage: test_gguf   (run from the repository root; tests/run.sh passes a
 * reference directory, which this program does not need)
 *
 *   corpus      every file of ../shared/corpus/gguf: the valid ones open
 *               with the version, key/tensor counts, architecture and token
 *               count that an independent Python parser found (the numbers
 *               below), the broken ones fail with LT_ERR_INVALID.  A missing
 *               file prints "SKIP name: corpus absent".
 *   round trip  a file with every key-value type and F32/F16/Q8_0 tensors,
 *               written by our sink and read back; its header bytes are
 *               also checked by hand.
 *   hostile     one generated file per rule of spec/gguf.md (G1...), each
 *               expected to fail with its own message; every truncation of
 *               a valid file; 2000 seeded random mutations that must fail
 *               cleanly or open (run under ASan/UBSan by `make test`).
 *   quants      testdata/gguf_quants: blocks and values made by gguf-py's
 *               gguf.quants (testdata/gguf_quants/README.md); dequantization
 *               and Q8_0/Q4_0 quantization must match bit for bit.
 */
#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "format.h"

static const char *corpus_dir = "../shared/corpus/gguf";
static const char *quants_dir = "testdata/gguf_quants";
static char tmp_root[] = "/tmp/lt_test_gguf_XXXXXX";

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* A GGUF file assembled byte by byte, independent of our writer. */
struct gguf_bytes {
    unsigned char data[8192];
    size_t len;
};

static void put(struct gguf_bytes *b, const void *p, size_t n)
{
    if (b->len + n <= sizeof b->data) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
}

static void put_u32(struct gguf_bytes *b, uint32_t v)
{
    unsigned char t[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, t, 4);
}

static void put_u64(struct gguf_bytes *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_str(struct gguf_bytes *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void pad_to(struct gguf_bytes *b, size_t alignment)
{
    while (b->len % alignment)
        put(b, "", 1);
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------------ */
/* Corpus                                                               */
/* ------------------------------------------------------------------ */

/* Expected facts, found once by an independent Python parser (a few lines
 * of struct.unpack over each file, not part of the repository). */
struct corpus_valid {
    const char *name;
    uint32_t version;
    size_t n_kv, n_tensors;
    const char *arch;
    uint64_t n_tokens;
    size_t n_string_kvs; /* string scalars: the generic metadata */
};

static const struct corpus_valid corpus_valid[] = {
    {"gridcore_fixtures/vocab-bpe-llama3.gguf", 3, 9, 0, "llama", 287, 3},
    {"gridcore_fixtures/vocab-bpe-qwen2.gguf", 3, 9, 0, "llama", 287, 3},
    {"gridcore_fixtures/vocab-bpe-spm-gemma4.gguf", 3, 9, 0, "gemma4", 277, 2},
    {"gridcore_fixtures/vocab-spm.gguf", 3, 9, 0, "llama", 32000, 2},
    {"gridcore_fuzz_corpus/valid-small.gguf", 3, 9, 0, "llama", 287, 3},
    {"vocab_only_llama.cpp/ggml-vocab-bert-bge.gguf", 3, 20, 0, "bert", 30522, 4},
    {"vocab_only_llama.cpp/ggml-vocab-falcon.gguf", 3, 18, 0, "falcon", 65024, 5},
    {"vocab_only_llama.cpp/ggml-vocab-gpt-2.gguf", 3, 16, 0, "gpt2", 50257, 4},
    {"vocab_only_llama.cpp/ggml-vocab-llama-spm.gguf", 3, 22, 0, "llama", 32000, 4},
    {"vocab_only_llama.cpp/ggml-vocab-phi-3.gguf", 3, 26, 0, "phi3", 32064, 5},
};

/* Broken files and a piece of the message each must give. */
static const struct {
    const char *name;
    const char *message;
} corpus_invalid[] = {
    {"corrupt_utf8_mangled/ggml-vocab-bert-bge.gguf", "string length 1572864"},
    {"corrupt_utf8_mangled/ggml-vocab-gpt-2.gguf", "runs past the end of the file"},
    {"corrupt_utf8_mangled/ggml-vocab-llama-spm.gguf", "runs past the end of the file"},
    {"corrupt_utf8_mangled/ggml-vocab-phi-3.gguf", "runs past the end of the file"},
    {"gridcore_fuzz_corpus/hdr-suppress-eos.gguf", "name of tensor 12"},
    {"gridcore_fuzz_corpus/hdr-wrap-first-offset.gguf", "runs past the end of the file"},
    {"gridcore_fuzz_corpus/hdr-zero-first-dim.gguf", "runs past the end of the file"},
    {"microk_tiny/tiny.gguf", "tensor count 10 needs more than"},
};

static void test_corpus_valid(void)
{
    for (size_t k = 0; k < sizeof corpus_valid / sizeof corpus_valid[0]; k++) {
        const struct corpus_valid *c = &corpus_valid[k];
        const char *path = fmt("%s/%s", corpus_dir, c->name);
        if (!lti_is_file(path)) {
            printf("SKIP corpus:%s: corpus absent\n", c->name);
            continue;
        }
        lt_error err = {0};
        lt_source *src = lt_source_open(path, &err);
        CHECK_MSG(src != NULL, "%s: %s", c->name, err.message);
        if (!src)
            continue;
        CHECK_STR(lt_source_format(src), "gguf");
        CHECK_EQ_U64(lt_source_gguf_version(src), c->version);
        CHECK_EQ_U64(lt_source_gguf_alignment(src), 32);
        CHECK_EQ_U64(lt_source_kv_count(src), c->n_kv);
        CHECK_EQ_U64(lt_source_tensor_count(src), c->n_tensors);
        CHECK_EQ_U64(lt_source_meta_count(src), c->n_string_kvs);
        CHECK_STR(lt_source_meta_get(src, "general.architecture"), c->arch);
        long arch = lt_source_kv_find(src, "general.architecture");
        CHECK(arch == 0);
        CHECK_STR(lt_source_kv_str(src, (size_t)arch, 0, NULL), c->arch);
        long tokens = lt_source_kv_find(src, "tokenizer.ggml.tokens");
        CHECK(tokens >= 0);
        CHECK_EQ_U64(lt_source_kv_type(src, (size_t)tokens), LT_GGUF_ARRAY);
        CHECK_EQ_U64(lt_source_kv_elem_type(src, (size_t)tokens), LT_GGUF_STRING);
        CHECK_EQ_U64(lt_source_kv_len(src, (size_t)tokens), c->n_tokens);
        size_t len = 99;
        CHECK(lt_source_kv_str(src, (size_t)tokens, c->n_tokens - 1, &len) != NULL && len > 0);
        CHECK(lt_source_kv_str(src, (size_t)tokens, c->n_tokens, NULL) == NULL);
        lt_source_close(src);
    }
}

static void test_corpus_invalid(void)
{
    for (size_t k = 0; k < sizeof corpus_invalid / sizeof corpus_invalid[0]; k++) {
        const char *path = fmt("%s/%s", corpus_dir, corpus_invalid[k].name);
        if (!lti_is_file(path)) {
            printf("SKIP corpus:%s: corpus absent\n", corpus_invalid[k].name);
            continue;
        }
        lt_error err = {0};
        lt_source *src = lt_source_open(path, &err);
        CHECK_MSG(src == NULL, "%s opened", corpus_invalid[k].name);
        lt_source_close(src);
        CHECK_MSG(err.status == LT_ERR_INVALID, "%s: status %d", corpus_invalid[k].name,
                  err.status);
        CHECK_MSG(strstr(err.message, corpus_invalid[k].message) != NULL &&
                      strncmp(err.message, path, strlen(path)) == 0,
                  "%s: message '%s'", corpus_invalid[k].name, err.message);
    }
}

/* Every file in the corpus, including ones the lists above do not know:
 * each must open or fail cleanly with an input error. */
static int visit_corpus_file(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag != FTW_F)
        return 0;
    lt_error err = {0};
    lt_source *src = lt_source_open(path, &err);
    if (!src)
        CHECK_MSG(err.status == LT_ERR_INVALID || err.status == LT_ERR_UNSUPPORTED,
                  "%s: status %d (%s)", path, err.status, err.message);
    lt_source_close(src);
    return 0;
}

static void test_corpus_all_files(void)
{
    if (!lti_is_dir(corpus_dir)) {
        printf("SKIP corpus: corpus absent\n");
        return;
    }
    nftw(corpus_dir, visit_corpus_file, 8, FTW_PHYS);
}

/* ------------------------------------------------------------------ */
/* Round trip                                                           */
/* ------------------------------------------------------------------ */

static void fill_f32(float *x, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((int32_t)(seed >> 8) - (1 << 23)) / (float)(1 << 22);
    }
}

static void test_round_trip(void)
{
    const char *path = fmt("%s/round_trip.gguf", tmp_root);
    lt_error err = {0};
    lt_sink *sink = lt_sink_create("gguf", path, NULL, &err);
    CHECK_MSG(sink != NULL, "%s", err.message);
    if (!sink)
        return;
    /* one scalar of every type */
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    uint32_t u32 = 4000000000u;
    int32_t i32 = -2000000000;
    float f32 = 0.1f;
    bool b = true;
    uint64_t u64 = UINT64_MAX - 5;
    int64_t i64 = INT64_MIN + 7;
    double f64 = -1e300;
    CHECK(lt_sink_set_kv(sink, "t.u8", LT_GGUF_U8, &u8, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.i8", LT_GGUF_I8, &i8, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.u16", LT_GGUF_U16, &u16, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.i16", LT_GGUF_I16, &i16, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.u32", LT_GGUF_U32, &u32, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.i32", LT_GGUF_I32, &i32, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.f32", LT_GGUF_F32, &f32, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.bool", LT_GGUF_BOOL, &b, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.str", LT_GGUF_STRING, "h\xc3\xa9llo", &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.u64", LT_GGUF_U64, &u64, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.i64", LT_GGUF_I64, &i64, &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.f64", LT_GGUF_F64, &f64, &err) == LT_OK);
    /* arrays, including strings and an empty one */
    const int16_t shorts[] = {-1, 2, -3};
    const double doubles[] = {0.5, -2.25};
    const bool bools[] = {true, false, true};
    const char *const strings[] = {"alpha", "", "g\xc3\xa4mma"};
    CHECK(lt_sink_set_kv_array(sink, "a.i16", LT_GGUF_I16, shorts, 3, &err) == LT_OK);
    CHECK(lt_sink_set_kv_array(sink, "a.f64", LT_GGUF_F64, doubles, 2, &err) == LT_OK);
    CHECK(lt_sink_set_kv_array(sink, "a.bool", LT_GGUF_BOOL, bools, 3, &err) == LT_OK);
    CHECK(lt_sink_set_kv_array(sink, "a.str", LT_GGUF_STRING, strings, 3, &err) == LT_OK);
    CHECK(lt_sink_set_kv_array(sink, "a.empty", LT_GGUF_U32, NULL, 0, &err) == LT_OK);
    /* replacing keeps the first position; metadata comes after typed pairs
     * and loses to a typed pair of the same name */
    uint32_t u32b = 7;
    CHECK(lt_sink_set_kv(sink, "t.u32", LT_GGUF_U32, &u32b, &err) == LT_OK);
    CHECK(lt_sink_set_meta(sink, "m.note", "from metadata", &err) == LT_OK);
    CHECK(lt_sink_set_meta(sink, "t.str", "shadowed", &err) == LT_OK);
    CHECK(lt_sink_set_kv(sink, "t.bad", 13, &u8, &err) == LT_ERR_USAGE);
    CHECK(lt_sink_set_kv(sink, "t.bad", LT_GGUF_ARRAY, &u8, &err) == LT_ERR_USAGE);

    float a[3 * 5], q_src[2 * 64];
    uint16_t h[2 * 4];
    unsigned char q[2 * 2 * 34];
    fill_f32(a, 15, 1);
    fill_f32(q_src, 128, 2);
    for (int i = 0; i < 8; i++)
        h[i] = lt_f32_to_f16((float)i - 3.5f);
    CHECK(lt_quantize_row(LT_Q8_0, q_src, q, 128) == LT_OK);
    const uint64_t shape_a[] = {3, 5}, shape_h[] = {2, 4}, shape_q[] = {2, 64}, shape_s[] = {7};
    long ia = lt_sink_add_tensor(sink, "blk.0.a.weight", LT_F32, 2, shape_a, &err);
    long ih = lt_sink_add_tensor(sink, "blk.0.h.weight", LT_F16, 2, shape_h, &err);
    long iq = lt_sink_add_tensor(sink, "blk.0.q.weight", LT_Q8_0, 2, shape_q, &err);
    long is = lt_sink_add_tensor(sink, "blk.0.norm", LT_F32, 1, shape_s, &err);
    CHECK(ia == 0 && ih == 1 && iq == 2 && is == 3);
    CHECK(lt_sink_begin(sink, &err) == LT_OK);
    float norm[7] = {1, 2, 3, 4, 5, 6, 7};
    /* written in reverse order, in two pieces for one */
    CHECK(lt_sink_write(sink, is, 0, norm, sizeof norm, &err) == LT_OK);
    CHECK(lt_sink_write(sink, iq, 34, q + 34, sizeof q - 34, &err) == LT_OK);
    CHECK(lt_sink_write(sink, iq, 0, q, 34, &err) == LT_OK);
    CHECK(lt_sink_write(sink, ih, 0, h, sizeof h, &err) == LT_OK);
    CHECK(lt_sink_write(sink, ia, 0, a, sizeof a, &err) == LT_OK);
    CHECK_MSG(lt_sink_commit(sink, &err) == LT_OK, "%s", err.message);

    lt_source *src = lt_source_open(path, &err);
    CHECK_MSG(src != NULL, "%s", err.message);
    if (!src)
        return;
    CHECK_STR(lt_source_format(src), "gguf");
    CHECK_EQ_U64(lt_source_gguf_version(src), 3);
    CHECK_EQ_U64(lt_source_gguf_alignment(src), 32);
    CHECK_EQ_U64(lt_source_kv_count(src), 18);
    const char *order[] = {"t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.f32",
                           "t.bool", "t.str", "t.u64", "t.i64", "t.f64", "a.i16", "a.f64",
                           "a.bool", "a.str", "a.empty", "m.note"};
    for (size_t k = 0; k < 18; k++)
        CHECK_STR(lt_source_kv_key(src, k), order[k]);
    uint64_t vu;
    int64_t vi;
    double vf;
    bool vb;
    size_t len;
    CHECK(lt_source_kv_u64(src, 0, 0, &vu) && vu == 200);
    CHECK(lt_source_kv_i64(src, 1, 0, &vi) && vi == -100);
    CHECK(!lt_source_kv_u64(src, 1, 0, &vu)); /* negative */
    CHECK(lt_source_kv_u64(src, 2, 0, &vu) && vu == 60000);
    CHECK(lt_source_kv_i64(src, 3, 0, &vi) && vi == -30000);
    CHECK(lt_source_kv_u64(src, 4, 0, &vu) && vu == 7);
    CHECK(lt_source_kv_i64(src, 5, 0, &vi) && vi == -2000000000);
    CHECK(lt_source_kv_f64(src, 6, 0, &vf) && vf == (double)0.1f);
    CHECK(lt_source_kv_bool(src, 7, 0, &vb) && vb);
    CHECK(!lt_source_kv_bool(src, 6, 0, &vb));
    CHECK_STR(lt_source_kv_str(src, 8, 0, &len), "h\xc3\xa9llo");
    CHECK_EQ_U64(len, 6);
    CHECK(lt_source_kv_u64(src, 9, 0, &vu) && vu == UINT64_MAX - 5);
    CHECK(!lt_source_kv_i64(src, 9, 0, &vi)); /* does not fit */
    CHECK(lt_source_kv_i64(src, 10, 0, &vi) && vi == INT64_MIN + 7);
    CHECK(lt_source_kv_f64(src, 11, 0, &vf) && vf == -1e300);
    CHECK(lt_source_kv_f64(src, 5, 0, &vf) && vf == -2000000000.0);
    CHECK(lt_source_kv_str(src, 0, 0, NULL) == NULL);
    CHECK(lt_source_kv_u64(src, 0, 1, &vu) == false); /* a scalar has one element */
    CHECK_EQ_U64(lt_source_kv_type(src, 12), LT_GGUF_ARRAY);
    CHECK_EQ_U64(lt_source_kv_elem_type(src, 12), LT_GGUF_I16);
    CHECK_EQ_U64(lt_source_kv_len(src, 12), 3);
    CHECK(lt_source_kv_i64(src, 12, 2, &vi) && vi == -3);
    CHECK(lt_source_kv_f64(src, 13, 1, &vf) && vf == -2.25);
    CHECK(lt_source_kv_bool(src, 14, 1, &vb) && !vb);
    CHECK_STR(lt_source_kv_str(src, 15, 0, NULL), "alpha");
    CHECK_STR(lt_source_kv_str(src, 15, 1, &len), "");
    CHECK_EQ_U64(len, 0);
    CHECK_STR(lt_source_kv_str(src, 15, 2, NULL), "g\xc3\xa4mma");
    CHECK_EQ_U64(lt_source_kv_len(src, 16), 0);
    CHECK_STR(lt_source_kv_key(src, 16), "a.empty");
    CHECK(!lt_source_kv_u64(src, 16, 0, &vu));
    CHECK_STR(lt_source_kv_str(src, 17, 0, NULL), "from metadata");
    CHECK(lt_source_kv_find(src, "a.str") == 15 && lt_source_kv_find(src, "nope") == -1);
    CHECK(lt_source_kv_type(src, 18) == -1 && lt_source_kv_key(src, 18) == NULL);
    /* string scalars are metadata too */
    CHECK_STR(lt_source_meta_get(src, "t.str"), "h\xc3\xa9llo");
    CHECK_STR(lt_source_meta_get(src, "m.note"), "from metadata");
    CHECK_EQ_U64(lt_source_meta_count(src), 2);

    CHECK_EQ_U64(lt_source_tensor_count(src), 4);
    const struct {
        const char *name;
        lt_dtype dtype;
        uint32_t n_dims;
        const uint64_t *shape;
        const void *data;
        size_t bytes;
    } want[] = {
        {"blk.0.a.weight", LT_F32, 2, shape_a, a, sizeof a},
        {"blk.0.h.weight", LT_F16, 2, shape_h, h, sizeof h},
        {"blk.0.q.weight", LT_Q8_0, 2, shape_q, q, sizeof q},
        {"blk.0.norm", LT_F32, 1, shape_s, norm, sizeof norm},
    };
    uint64_t expected_offset = 0;
    for (size_t k = 0; k < 4 && k < lt_source_tensor_count(src); k++) {
        const lt_tensor_info *t = lt_source_tensor(src, k);
        CHECK_STR(t->name, want[k].name);
        CHECK(t->dtype == want[k].dtype);
        CHECK_EQ_U64(t->n_dims, want[k].n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            CHECK_EQ_U64(t->shape[d], want[k].shape[d]);
        CHECK_EQ_U64(t->n_bytes, want[k].bytes);
        CHECK_EQ_U64(t->offset, expected_offset); /* running sum of padded sizes */
        expected_offset += (want[k].bytes + 31) / 32 * 32;
        unsigned char back[512];
        CHECK(lt_source_read(src, k, 0, back, want[k].bytes, &err) == LT_OK);
        CHECK(memcmp(back, want[k].data, want[k].bytes) == 0);
    }
    float deq[128], direct[128];
    unsigned char qback[sizeof q];
    CHECK(lt_source_read(src, 2, 0, qback, sizeof q, &err) == LT_OK);
    CHECK(lt_dequantize_row(LT_Q8_0, qback, deq, 128) == LT_OK);
    CHECK(lt_dequantize_row(LT_Q8_0, q, direct, 128) == LT_OK);
    CHECK(memcmp(deq, direct, sizeof deq) == 0);
    for (int i = 0; i < 128; i++) /* Q8_0 error is at most half a step */
        CHECK(fabsf(deq[i] - q_src[i]) <= 0.6f * fabsf(lt_f16_to_f32((uint16_t)(q[(i / 32) * 34] | q[(i / 32) * 34 + 1] << 8))) + 1e-6f);
    lt_source_close(src);

    /* the header by hand: ne reversed, offsets, data section aligned */
    size_t file_len;
    unsigned char *file = read_file(path, &file_len);
    CHECK(file != NULL);
    if (!file)
        return;
    CHECK(memcmp(file, "GGUF", 4) == 0 && get_u32(file + 4) == 3);
    CHECK_EQ_U64(get_u64(file + 8), 4);
    CHECK_EQ_U64(get_u64(file + 16), 18);
    const char *needle = "blk.0.a.weight";
    unsigned char *at = memmem(file, file_len, needle, strlen(needle));
    CHECK(at != NULL);
    if (at) {
        at += strlen(needle);
        CHECK_EQ_U64(get_u32(at), 2);      /* n_dims */
        CHECK_EQ_U64(get_u64(at + 4), 5);  /* ne[0] = in  */
        CHECK_EQ_U64(get_u64(at + 12), 3); /* ne[1] = out */
        CHECK_EQ_U64(get_u32(at + 20), 0); /* GGML_TYPE_F32 */
        CHECK_EQ_U64(get_u64(at + 24), 0); /* offset */
    }
    CHECK_EQ_U64(file_len % 32, 0);
    CHECK_EQ_U64(memcmp(file + file_len - 32, "\0\0\0\0\0\0\0\0", 8) == 0 ? 0 : 1, 1);
    free(file);

    /* the same input gives the same bytes */
    const char *path2 = fmt("%s/round_trip2.gguf", tmp_root);
    sink = lt_sink_create("gguf", path2, NULL, &err);
    CHECK(lt_sink_set_kv(sink, "t.u8", LT_GGUF_U8, &u8, &err) == LT_OK);
    CHECK(lt_sink_add_tensor(sink, "x", LT_F32, 2, shape_a, &err) == 0);
    CHECK(lt_sink_begin(sink, &err) == LT_OK);
    CHECK(lt_sink_write(sink, 0, 0, a, sizeof a, &err) == LT_OK);
    CHECK(lt_sink_commit(sink, &err) == LT_OK);
    size_t len1, len2;
    unsigned char *one = read_file(path2, &len1);
    sink = lt_sink_create("gguf", path2, NULL, &err);
    CHECK(lt_sink_set_kv(sink, "t.u8", LT_GGUF_U8, &u8, &err) == LT_OK);
    CHECK(lt_sink_add_tensor(sink, "x", LT_F32, 2, shape_a, &err) == 0);
    CHECK(lt_sink_begin(sink, &err) == LT_OK);
    CHECK(lt_sink_write(sink, 0, 0, a, sizeof a, &err) == LT_OK);
    CHECK(lt_sink_commit(sink, &err) == LT_OK);
    unsigned char *two = read_file(path2, &len2);
    CHECK(one && two && len1 == len2 && memcmp(one, two, len1) == 0);
    free(one);
    free(two);
}

static void test_write_alignment(void)
{
    const char *path = fmt("%s/aligned.gguf", tmp_root);
    lt_error err = {0};
    lt_sink *sink = lt_sink_create("gguf", path, NULL, &err);
    uint32_t bad = 48, good = 64;
    CHECK(lt_sink_set_kv(sink, "general.alignment", LT_GGUF_U32, &bad, &err) == LT_ERR_USAGE);
    CHECK(lt_sink_set_kv(sink, "general.alignment", LT_GGUF_U32, &good, &err) == LT_OK);
    const uint64_t s1[] = {3}, s2[] = {5};
    CHECK(lt_sink_add_tensor(sink, "one", LT_F32, 1, s1, &err) == 0);
    CHECK(lt_sink_add_tensor(sink, "two", LT_F32, 1, s2, &err) == 1);
    CHECK(lt_sink_commit(sink, &err) == LT_OK); /* never-written tensors are zeros */
    lt_source *src = lt_source_open(path, &err);
    CHECK_MSG(src != NULL, "%s", err.message);
    if (!src)
        return;
    CHECK_EQ_U64(lt_source_gguf_alignment(src), 64);
    CHECK_EQ_U64(lt_source_tensor(src, 1)->offset, 64);
    float back[5] = {1};
    CHECK(lt_source_read_f32(src, 1, 0, 5, back, &err) == LT_OK && back[0] == 0.0f);
    lt_source_close(src);
}

static void test_write_refusals(void)
{
    lt_error err = {0};
    const char *path = fmt("%s/refused.gguf", tmp_root);
    const uint64_t five[] = {1, 1, 1, 1, 2}, odd_row[] = {2, 16}, ok[] = {4};
    const struct {
        const char *name;
        lt_dtype dtype;
        uint32_t n_dims;
        const uint64_t *shape;
        lt_status status;
        const char *message;
    } cases[] = {
        {"bool", LT_BOOL, 1, ok, LT_ERR_UNSUPPORTED, "which GGUF cannot store"},
        {"five", LT_F32, 5, five, LT_ERR_UNSUPPORTED, "5 dimensions"},
        {"rows", LT_Q8_0, 2, odd_row, LT_ERR_USAGE, "rows of 16 elements are not whole Q8_0"},
        {"a_name_that_is_far_too_long_for_ggml_which_allows_63_bytes_at_most", LT_F32, 1, ok,
         LT_ERR_USAGE, "longer than the 63 bytes"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lt_sink *sink = lt_sink_create("gguf", path, NULL, &err);
        CHECK(lt_sink_add_tensor(sink, cases[k].name, cases[k].dtype, cases[k].n_dims,
                                 cases[k].shape, &err) == 0);
        lt_status s = lt_sink_begin(sink, &err);
        CHECK_MSG(s == cases[k].status && strstr(err.message, cases[k].message),
                  "%s: %d %s", cases[k].name, s, err.message);
        lt_sink_abort(sink);
        CHECK(!lti_is_file(path));
    }
    lt_sink_options sharded = {.shard_size = 1000};
    CHECK(lt_sink_create("gguf", path, &sharded, &err) == NULL && err.status == LT_ERR_USAGE);
    /* safetensors sinks take string pairs as metadata, nothing else */
    lt_sink *st = lt_sink_create("safetensors", fmt("%s/kv.safetensors", tmp_root), NULL, &err);
    uint32_t v = 1;
    CHECK(lt_sink_set_kv(st, "k", LT_GGUF_STRING, "v", &err) == LT_OK);
    CHECK(lt_sink_set_kv(st, "n", LT_GGUF_U32, &v, &err) == LT_ERR_UNSUPPORTED);
    CHECK(lt_sink_set_kv_array(st, "a", LT_GGUF_U32, &v, 1, &err) == LT_ERR_UNSUPPORTED);
    CHECK(lt_sink_commit(st, &err) == LT_OK);
    lt_source *src = lt_source_open(fmt("%s/kv.safetensors", tmp_root), &err);
    CHECK(src && lt_source_meta_get(src, "k") && strcmp(lt_source_meta_get(src, "k"), "v") == 0);
    /* key-value getters on a non-GGUF source give the defaults */
    CHECK(src && lt_source_kv_count(src) == 0 && lt_source_gguf_version(src) == 0 &&
          lt_source_gguf_alignment(src) == 0 && lt_source_kv_find(src, "k") == -1 &&
          lt_source_kv_key(src, 0) == NULL && lt_source_kv_type(src, 0) == -1);
    lt_source_close(src);
}

/* ------------------------------------------------------------------ */
/* Hostile files                                                        */
/* ------------------------------------------------------------------ */

enum defect {
    D_NONE, D_BAD_MAGIC, D_V1, D_V4, D_BIG_ENDIAN, D_NEG_KV, D_HUGE_KV, D_HUGE_TENSORS,
    D_HUGE_KEY_LEN, D_HUGE_STR_LEN, D_HUGE_ARRAY, D_HUGE_STR_ARRAY, D_ARRAY_OF_ARRAYS,
    D_BAD_VALUE_TYPE, D_DUP_KEY, D_NUL_KEY, D_ALIGN_NOT_POW2, D_ALIGN_ZERO, D_ALIGN_TYPE,
    D_LONG_NAME, D_NUL_NAME, D_DUP_TENSOR, D_DIMS_5, D_NE_NEGATIVE, D_NE_OVERFLOW,
    D_UNKNOWN_TYPE, D_REMOVED_TYPE, D_ROW_NOT_BLOCKS, D_MISALIGNED, D_PAST_EOF, D_OVERLAP,
    D_COUNT
};

static const struct {
    const char *rule;
    lt_status status;
    const char *message;
} defects[D_COUNT] = {
    [D_NONE] = {"valid", LT_OK, ""},
    [D_BAD_MAGIC] = {"G2 magic", LT_ERR_INVALID, "not a GGUF file"},
    [D_V1] = {"G3 version 1", LT_ERR_UNSUPPORTED, "GGUF version 1 is not supported"},
    [D_V4] = {"G3 version 4", LT_ERR_UNSUPPORTED, "GGUF version 4 is not supported (only 2 and 3)"},
    [D_BIG_ENDIAN] = {"G3 big-endian", LT_ERR_UNSUPPORTED, "big-endian GGUF is not supported"},
    [D_NEG_KV] = {"G4 negative count", LT_ERR_INVALID, "key-value count is negative (-1)"},
    [D_HUGE_KV] = {"G4 n_kv", LT_ERR_INVALID, "key-value count 1152921504606846976 needs more than"},
    [D_HUGE_TENSORS] = {"G4 n_tensors", LT_ERR_INVALID, "tensor count 1099511627776 needs more than"},
    [D_HUGE_KEY_LEN] = {"G5 key length", LT_ERR_INVALID, "key 0: string length 9223372036854775808 at byte 24 runs past"},
    [D_HUGE_STR_LEN] = {"G5 string length", LT_ERR_INVALID, "value of key 'general.architecture': string length 4294967296"},
    [D_HUGE_ARRAY] = {"G9 array count", LT_ERR_INVALID, "key 'test.array': array of 4611686018427387904 u32 elements runs past"},
    [D_HUGE_STR_ARRAY] = {"G9 string array count", LT_ERR_INVALID, "key 'test.strings': array of 2305843009213693952 strings runs past"},
    [D_ARRAY_OF_ARRAYS] = {"G8 nested array", LT_ERR_INVALID, "key 'test.array' is an array of arrays"},
    [D_BAD_VALUE_TYPE] = {"G7 value type", LT_ERR_INVALID, "key 'general.architecture' has unknown value type 13"},
    [D_DUP_KEY] = {"G6 duplicate key", LT_ERR_INVALID, "duplicate key 'general.architecture'"},
    [D_NUL_KEY] = {"G6 NUL in key", LT_ERR_INVALID, "key 0 contains a NUL byte"},
    [D_ALIGN_NOT_POW2] = {"G10 alignment 48", LT_ERR_INVALID, "general.alignment 48 is not a power of two"},
    [D_ALIGN_ZERO] = {"G10 alignment 0", LT_ERR_INVALID, "general.alignment 0 is not a power of two"},
    [D_ALIGN_TYPE] = {"G10 alignment type", LT_ERR_INVALID, "general.alignment has type u64, not u32"},
    [D_LONG_NAME] = {"G11 name length", LT_ERR_INVALID, "is 64 bytes long, more than the 63"},
    [D_NUL_NAME] = {"G11 NUL in name", LT_ERR_INVALID, "name of tensor 0 contains a NUL byte"},
    [D_DUP_TENSOR] = {"G12 duplicate tensor", LT_ERR_INVALID, "duplicate tensor name 'a'"},
    [D_DIMS_5] = {"G13 n_dims", LT_ERR_INVALID, "tensor 'a' has 5 dimensions, more than the 4"},
    [D_NE_NEGATIVE] = {"G14 negative ne", LT_ERR_INVALID, "tensor 'a' dimension 1 is negative (-2)"},
    [D_NE_OVERFLOW] = {"G15 element count", LT_ERR_INVALID, "tensor 'a': element count overflows"},
    [D_UNKNOWN_TYPE] = {"G16 type 99", LT_ERR_INVALID, "tensor 'b' has unknown ggml type 99"},
    [D_REMOVED_TYPE] = {"G16 removed type 4", LT_ERR_INVALID, "tensor 'b' has unknown ggml type 4"},
    [D_ROW_NOT_BLOCKS] = {"G17 row blocks", LT_ERR_INVALID, "tensor 'b': row of 16 elements is not a multiple of the Q8_0 block size 32"},
    [D_MISALIGNED] = {"G19 offset alignment", LT_ERR_INVALID, "tensor 'b' offset 40 is not a multiple of the alignment 32"},
    [D_PAST_EOF] = {"G20 data in file", LT_ERR_INVALID, "tensor 'b' data (offset 4096, 34 bytes) runs past the end"},
    [D_OVERLAP] = {"G21 overlap", LT_ERR_INVALID, "tensor 'b' (offset 0) overlaps tensor 'a' (ends at 32)"},
};

/* A small GGUF file (4 pairs, tensors "a" F32 ne [4, 2] and "b" Q8_0
 * ne [32, 1]) with one defect built in.  *data_end gets the end of the
 * last tensor's bytes. */
static void build_file(enum defect d, struct gguf_bytes *b, size_t *data_end)
{
    b->len = 0;
    put(b, d == D_BAD_MAGIC ? "GGUG" : "GGUF", 4);
    put_u32(b, d == D_V1 ? 1 : d == D_V4 ? 4 : d == D_BIG_ENDIAN ? 0x03000000u : 3);
    put_u64(b, d == D_HUGE_TENSORS ? 1ULL << 40 : 2);
    put_u64(b, d == D_NEG_KV ? UINT64_MAX : d == D_HUGE_KV ? 1ULL << 60 : d == D_DUP_KEY ? 5 : 4);
    /* pairs */
    if (d == D_HUGE_KEY_LEN)
        put_u64(b, 1ULL << 63);
    else if (d == D_NUL_KEY)
        put(b, "\x04\0\0\0\0\0\0\0ab\0c", 12);
    else
        put_str(b, "general.architecture");
    put_u32(b, d == D_BAD_VALUE_TYPE ? 13 : LT_GGUF_STRING);
    if (d == D_HUGE_STR_LEN) {
        put_u64(b, 1ULL << 32);
        put(b, "llama", 5);
    } else {
        put_str(b, "llama");
    }
    put_str(b, "general.alignment");
    if (d == D_ALIGN_TYPE) {
        put_u32(b, LT_GGUF_U64);
        put_u64(b, 32);
    } else {
        put_u32(b, LT_GGUF_U32);
        put_u32(b, d == D_ALIGN_NOT_POW2 ? 48 : d == D_ALIGN_ZERO ? 0 : 32);
    }
    put_str(b, "test.array");
    put_u32(b, LT_GGUF_ARRAY);
    put_u32(b, d == D_ARRAY_OF_ARRAYS ? LT_GGUF_ARRAY : LT_GGUF_U32);
    put_u64(b, d == D_HUGE_ARRAY ? 1ULL << 62 : 3);
    put_u32(b, 1), put_u32(b, 2), put_u32(b, 3);
    put_str(b, "test.strings");
    put_u32(b, LT_GGUF_ARRAY);
    put_u32(b, LT_GGUF_STRING);
    put_u64(b, d == D_HUGE_STR_ARRAY ? 1ULL << 61 : 2);
    put_str(b, "a"), put_str(b, "bc");
    if (d == D_DUP_KEY) {
        put_str(b, "general.architecture");
        put_u32(b, LT_GGUF_STRING);
        put_str(b, "again");
    }
    /* tensor a: F32, ne [4, 2] */
    if (d == D_LONG_NAME)
        put_str(b, "a123456789012345678901234567890123456789012345678901234567890123");
    else if (d == D_NUL_NAME)
        put(b, "\x02\0\0\0\0\0\0\0a\0", 10);
    else
        put_str(b, "a");
    put_u32(b, d == D_DIMS_5 ? 5 : 2);
    put_u64(b, d == D_NE_OVERFLOW ? 1ULL << 31 : 4);
    put_u64(b, d == D_NE_NEGATIVE ? (uint64_t)-2 : d == D_NE_OVERFLOW ? 1ULL << 32 : 2);
    if (d == D_DIMS_5)
        put_u64(b, 1), put_u64(b, 1), put_u64(b, 1);
    put_u32(b, 0);
    put_u64(b, 0);
    /* tensor b: Q8_0, ne [32, 1] */
    put_str(b, d == D_DUP_TENSOR ? "a" : "b");
    put_u32(b, 2);
    put_u64(b, d == D_ROW_NOT_BLOCKS ? 16 : 32);
    put_u64(b, d == D_ROW_NOT_BLOCKS ? 2 : 1);
    put_u32(b, d == D_UNKNOWN_TYPE ? 99 : d == D_REMOVED_TYPE ? 4 : 8);
    put_u64(b, d == D_MISALIGNED ? 40 : d == D_PAST_EOF ? 4096 : d == D_OVERLAP ? 0 : 32);
    pad_to(b, 32);
    size_t data_start = b->len;
    for (int i = 0; i < 8; i++) {
        float v = (float)i;
        put(b, &v, 4);
    }
    unsigned char block[34] = {0x00, 0x3c}; /* d = 1.0 */
    for (int i = 0; i < 32; i++)
        block[2 + i] = (unsigned char)(i - 16);
    put(b, block, 34);
    *data_end = b->len;
    pad_to(b, 32);
    (void)data_start;
}

/* Open the bytes as a file; returns the status and leaves the message in
 * err.  An open that succeeds reads every tensor before closing. */
static lt_status open_bytes(const char *path, const void *data, size_t len, lt_error *err)
{
    if (!write_file(path, data, len)) {
        CHECK_MSG(false, "cannot write %s", path);
        return LT_ERR_IO;
    }
    memset(err, 0, sizeof *err);
    lt_source *src = lt_source_open(path, err);
    if (!src)
        return err->status;
    for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
        const lt_tensor_info *t = lt_source_tensor(src, i);
        unsigned char buf[256];
        uint64_t n = t->n_bytes < sizeof buf ? t->n_bytes : sizeof buf;
        lt_error read_err;
        CHECK(lt_source_read(src, i, 0, buf, (size_t)n, &read_err) == LT_OK);
    }
    for (size_t i = 0; i < lt_source_kv_count(src); i++) { /* walk every getter */
        uint64_t u;
        int64_t s;
        double f;
        bool b;
        for (uint64_t j = 0; j < lt_source_kv_len(src, i) && j < 4; j++) {
            lt_source_kv_u64(src, i, j, &u);
            lt_source_kv_i64(src, i, j, &s);
            lt_source_kv_f64(src, i, j, &f);
            lt_source_kv_bool(src, i, j, &b);
            lt_source_kv_str(src, i, j, NULL);
        }
    }
    lt_source_close(src);
    return LT_OK;
}

static void test_hostile_rules(void)
{
    const char *path = fmt("%s/hostile.gguf", tmp_root);
    struct gguf_bytes b;
    size_t data_end;
    for (int d = 0; d < D_COUNT; d++) {
        build_file((enum defect)d, &b, &data_end);
        lt_error err;
        lt_status s = open_bytes(path, b.data, b.len, &err);
        CHECK_MSG(s == defects[d].status, "%s: status %d, message '%s'", defects[d].rule, s,
                  err.message);
        if (d != D_NONE)
            CHECK_MSG(strstr(err.message, defects[d].message) != NULL &&
                          strncmp(err.message, path, strlen(path)) == 0,
                      "%s: message '%s'", defects[d].rule, err.message);
    }
    /* the valid file as built reads back as written */
    build_file(D_NONE, &b, &data_end);
    write_file(path, b.data, b.len);
    lt_error err;
    lt_source *src = lt_source_open(path, &err);
    CHECK(src != NULL);
    if (src) {
        CHECK_EQ_U64(lt_source_tensor_count(src), 2);
        const lt_tensor_info *a = lt_source_tensor(src, 0), *q = lt_source_tensor(src, 1);
        CHECK(a->n_dims == 2 && a->shape[0] == 2 && a->shape[1] == 4 && a->dtype == LT_F32);
        CHECK(q->n_dims == 2 && q->shape[0] == 1 && q->shape[1] == 32 && q->dtype == LT_Q8_0);
        float v[8];
        CHECK(lt_source_read_f32(src, 0, 0, 8, v, &err) == LT_OK && v[7] == 7.0f);
        unsigned char block[34];
        float y[32];
        CHECK(lt_source_read(src, 1, 0, block, 34, &err) == LT_OK);
        CHECK(lt_dequantize_row(LT_Q8_0, block, y, 32) == LT_OK && y[0] == -16.0f && y[31] == 15.0f);
        CHECK_STR(lt_source_meta_get(src, "general.architecture"), "llama");
        lt_source_close(src);
    }
}

/* Every prefix of the valid file: all fail (G1, G4, G5, G9, G20) until the last
 * tensor's bytes are complete; the padding after them may be missing. */
static void test_hostile_truncation(void)
{
    const char *path = fmt("%s/truncated.gguf", tmp_root);
    struct gguf_bytes b;
    size_t data_end;
    build_file(D_NONE, &b, &data_end);
    for (size_t len = 0; len <= b.len; len++) {
        lt_error err;
        lt_status s = open_bytes(path, b.data, len, &err);
        if (len < data_end)
            CHECK_MSG(s == LT_ERR_INVALID && (strstr(err.message, "file truncated") ||
                                              strstr(err.message, "runs past the end") ||
                                              strstr(err.message, "needs more than")),
                      "prefix %zu: %d '%s'", len, s, err.message);
        else
            CHECK_MSG(s == LT_OK, "prefix %zu: %s", len, err.message);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* 2000 seeded mutations of the valid file, mostly in the header: each
 * must open or fail with LT_ERR_INVALID / LT_ERR_UNSUPPORTED and a message
 * naming the file. */
static void test_hostile_mutations(void)
{
    const char *path = fmt("%s/mutated.gguf", tmp_root);
    struct gguf_bytes base, b;
    size_t data_end;
    build_file(D_NONE, &base, &data_end);
    size_t opened = 0;
    for (int round = 0; round < 2000; round++) {
        b = base;
        int edits = 1 + (int)(rng_next() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rng_next() % (rng_next() % 4 ? 200 : b.len));
            switch (rng_next() % 4) {
            case 0: b.data[at] = (unsigned char)rng_next(); break;
            case 1: b.data[at] ^= (unsigned char)(1u << (rng_next() % 8)); break;
            case 2: b.data[at] = (unsigned char)(rng_next() % 2 ? 0xFF : 0x00); break;
            case 3: b.len = at + 1; break;
            }
        }
        lt_error err;
        lt_status s = open_bytes(path, b.data, b.len, &err);
        if (s == LT_OK) {
            opened++;
            continue;
        }
        CHECK_MSG((s == LT_ERR_INVALID || s == LT_ERR_UNSUPPORTED) &&
                      strncmp(err.message, path, strlen(path)) == 0 && !strchr(err.message, '\n'),
                  "round %d: %d '%s'", round, s, err.message);
    }
    CHECK(opened > 0 && opened < 2000); /* the mutations do both */
}

static void test_bid(void)
{
    lt_error err;
    const char *path = fmt("%s/not_really.gguf", tmp_root);
    write_file(path, "hello world, not gguf", 21);
    CHECK(lt_source_open(path, &err) == NULL);
    CHECK_MSG(strstr(err.message, "not a GGUF file") != NULL, "%s", err.message);
    const char *other = fmt("%s/random.bin", tmp_root);
    write_file(other, "hello world, not gguf", 21);
    CHECK(lt_source_open(other, &err) == NULL);
    CHECK_MSG(strstr(err.message, "unrecognized format") != NULL, "%s", err.message);
}

/* ------------------------------------------------------------------ */
/* Quantization fixtures                                                */
/* ------------------------------------------------------------------ */

static lt_dtype dtype_by_name(const char *name)
{
    for (int t = 1; t < LT_DTYPE_COUNT; t++)
        if (strcmp(lt_dtype_name((lt_dtype)t), name) == 0)
            return (lt_dtype)t;
    return LT_DTYPE_INVALID;
}

static void test_quant_fixtures(void)
{
    FILE *manifest = fopen(fmt("%s/manifest.txt", quants_dir), "r");
    CHECK_MSG(manifest != NULL, "%s/manifest.txt missing", quants_dir);
    if (!manifest)
        return;
    char kind[32], name[32];
    size_t n, lines = 0;
    while (fscanf(manifest, "%31s %31s %zu", kind, name, &n) == 3) {
        lines++;
        lt_dtype t = dtype_by_name(name);
        CHECK_MSG(t != LT_DTYPE_INVALID, "unknown type %s", name);
        size_t blocks_len, values_len;
        bool dequant = strcmp(kind, "dequant") == 0;
        unsigned char *blocks = read_file(
            fmt("%s/%s%s.blocks", quants_dir, dequant ? "" : "quantize_", name), &blocks_len);
        unsigned char *values = read_file(
            fmt("%s/%s.f32", quants_dir, dequant ? name : "quantize_input"), &values_len);
        CHECK_MSG(blocks && values, "%s %s: fixture files missing", kind, name);
        uint64_t want_bytes = 0;
        CHECK(lt_dtype_nbytes(t, n, &want_bytes) && want_bytes == blocks_len &&
              values_len == n * 4);
        if (!blocks || !values || want_bytes != blocks_len || values_len != n * 4) {
            free(blocks);
            free(values);
            continue;
        }
        if (dequant) {
            float *out = malloc(n * sizeof *out);
            CHECK(lt_dequantize_row(t, blocks, out, n) == LT_OK);
            size_t bad = 0, first_bad = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t got, want;
                memcpy(&got, out + i, 4);
                memcpy(&want, values + 4 * i, 4);
                if (got != want && !bad++)
                    first_bad = i;
            }
            CHECK_MSG(bad == 0, "dequant %s: %zu of %zu values differ, first at %zu", name, bad,
                      n, first_bad);
            free(out);
        } else {
            unsigned char *out = malloc(blocks_len);
            CHECK(lt_quantize_row(t, (const float *)(const void *)values, out, n) == LT_OK);
            size_t bad = 0;
            for (size_t i = 0; i < blocks_len; i++)
                bad += out[i] != blocks[i];
            CHECK_MSG(bad == 0, "quantize %s: %zu of %zu bytes differ", name, bad, blocks_len);
            free(out);
        }
        free(blocks);
        free(values);
    }
    fclose(manifest);
    CHECK_EQ_U64(lines, 14);
}

static void test_quant_refusals(void)
{
    unsigned char block[300] = {0};
    float y[256];
    CHECK(lt_dequantize_row(LT_IQ2_XXS, block, y, 256) == LT_ERR_UNSUPPORTED);
    CHECK(lt_dequantize_row(LT_MXFP4, block, y, 32) == LT_ERR_UNSUPPORTED);
    CHECK(lt_dequantize_row(LT_TQ1_0, block, y, 256) == LT_ERR_UNSUPPORTED);
    CHECK(lt_dequantize_row(LT_Q8_K, block, y, 256) == LT_ERR_UNSUPPORTED);
    CHECK(lt_dequantize_row(LT_Q8_0, block, y, 31) == LT_ERR_USAGE);
    CHECK(lt_quantize_row(LT_Q8_K, y, block, 256) == LT_ERR_UNSUPPORTED);
    CHECK(lt_quantize_row(LT_Q8_0, y, block, 33) == LT_ERR_USAGE);
    /* plain types pass through the exact conversions */
    double d[2] = {1.5, -0.25};
    CHECK(lt_dequantize_row(LT_F64, d, y, 2) == LT_OK && y[0] == 1.5f && y[1] == -0.25f);
    /* NaN and Inf inputs must not crash the quantizers (UBSan checks the
     * float-to-int conversions) */
    float bad[32];
    for (int i = 0; i < 32; i++)
        bad[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : 1.0f;
    CHECK(lt_quantize_row(LT_Q8_0, bad, block, 32) == LT_OK);
    CHECK(lt_quantize_row(LT_Q4_0, bad, block, 32) == LT_OK);
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv; /* tests/run.sh passes a reference dir we do not need */
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_corpus_valid);
    RUN(test_corpus_invalid);
    RUN(test_corpus_all_files);
    RUN(test_round_trip);
    RUN(test_write_alignment);
    RUN(test_write_refusals);
    RUN(test_hostile_rules);
    RUN(test_hostile_truncation);
    RUN(test_hostile_mutations);
    RUN(test_bid);
    RUN(test_quant_fixtures);
    RUN(test_quant_refusals);
    remove_tree(tmp_root);
    return check_done();
}
