/* test_torch_bin.c - the legacy torch.save reader (formats/torch_bin.c).
 *
 *   corpus   every adapter of ../shared/corpus/bin through lt_adapter_open
 *            (module counts, ranks, parameter counts, a few values); the
 *            cases print "SKIP name: corpus absent" when it is missing.
 *   hostile  small archives built here: a valid one, then one defect each
 *            (truncation, bad EOCD, bad local header offset, disallowed
 *            global, deep MARKs, long BINUNICODE, storage too small,
 *            non-contiguous stride, compressed storage, big-endian).
 *   fuzz     1000 seeded byte mutations of a real .bin: never a crash
 *            (run under ASan/UBSan by `make test`).
 *
 * argv[1] (build/testdata/torch_bin) is not used: no Python fixtures.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "loratool.h"

static const char *corpus_dir = "../shared/corpus/bin";
static char tmp_root[] = "/tmp/lt_test_torch_bin_XXXXXX";

/* ------------------------------------------------------------------ */
/* Corpus                                                               */
/* ------------------------------------------------------------------ */

/* Expected numbers computed with /usr/bin/python3 using only zipfile,
 * pickletools and struct (no torch): data.pkl walked with
 * pickletools.genops by a tiny stack emulator, tensors counted, modules =
 * distinct "<name>.lora_{A,B}.weight" prefixes, rank = PEFT r (for the
 * BLOOM enable_lora adapter lora_A is [16, 1024] = r 8 x 2 groups and
 * lora_B [2048, 8, 1]: read as one LoRA of rank 16 on the fused [3072,
 * 1024] weight whose lora_B [3072, 16] is computed, one more tensor per
 * module in the adapter's source), params = sum of the lora_A/lora_B element counts,
 * values = struct.unpack('<f') of the bytes of <root>/data/<key>. */
typedef struct corpus_case {
    const char *name;
    size_t n_tensors, n_modules;
    uint32_t rank;
    uint64_t lora_params;
    const char *tensor;    /* a tensor whose first 4 values are checked */
    float first[4];
} corpus_case;

static const corpus_case cases[] = {
    {"01_gpt2-great-c_attn", 24, 12, 8, 294912, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
     {0.17394833266735077f, 0.022494656965136528f, -0.06839147210121155f, 0.04417404159903526f}},
    {"02_bloom-560m-enable_lora-legacy", 72, 24, 16, 786432,
     "base_model.model.transformer.h.0.self_attention.query_key_value.lora_A.weight",
     {-0.035270579159259796f, -0.014877677895128727f, -0.03421975299715996f, 0.027566982433199883f}},
    {"04_distilbert-r16-qkv-seqcls", 40, 18, 16, 442368, "base_model.model.classifier.bias",
     {0.0009164169314317405f, -0.0009164170478470623f, 0, 0}},
    {"05_t5-small-r16-legacy-peft03", 72, 36, 16, 589824,
     "base_model.model.decoder.block.0.layer.0.SelfAttention.q.lora_A.weight",
     {0.00956604816019535f, -0.0691046416759491f, -0.08541569113731384f, 0.08595671504735947f}},
};

static bool corpus_present(void)
{
    struct stat st;
    return stat(corpus_dir, &st) == 0 && S_ISDIR(st.st_mode);
}

static long find_tensor(lt_source *src, const char *name)
{
    for (size_t i = 0; i < lt_source_tensor_count(src); i++)
        if (strcmp(lt_source_tensor(src, i)->name, name) == 0)
            return (long)i;
    return -1;
}

static void test_corpus_lora(void)
{
    if (!corpus_present()) {
        printf("SKIP corpus_lora: corpus absent\n");
        return;
    }
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const corpus_case *k = &cases[c];
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", corpus_dir, k->name);
        lt_error err = {0};
        lt_adapter *ad = lt_adapter_open(dir, &err);
        CHECK_MSG(ad != NULL, "%s: %s", k->name, err.message);
        if (!ad)
            continue;
        lt_source *src = lt_adapter_source(ad);
        CHECK_STR(lt_source_format(src), "peft");
        CHECK_EQ_U64(lt_source_tensor_count(src), k->n_tensors);
        CHECK_EQ_U64(lt_adapter_module_count(ad), k->n_modules);
        CHECK_EQ_U64(lt_adapter_lora_params(ad), k->lora_params);
        for (size_t i = 0; i < lt_adapter_module_count(ad); i++)
            CHECK_EQ_U64(lt_adapter_module(ad, i)->rank, k->rank);
        long t = find_tensor(src, k->tensor);
        CHECK_MSG(t >= 0, "%s: no tensor %s", k->name, k->tensor);
        if (t >= 0) {
            size_t n = lt_source_tensor(src, (size_t)t)->n_elems < 4 ? 2 : 4;
            float got[4] = {0};
            CHECK(lt_source_read(src, (size_t)t, 0, got, n * sizeof(float), &err) == LT_OK);
            for (size_t i = 0; i < n; i++)
                CHECK_MSG(got[i] == k->first[i], "%s[%zu]: %.9g != %.9g", k->tensor, i, got[i], k->first[i]);
        }
        /* the file's tensors come sorted by name (computed ones follow) */
        for (size_t i = 1; i < lt_source_tensor_count(src) && i < 48; i++)
            CHECK(strcmp(lt_source_tensor(src, i - 1)->name, lt_source_tensor(src, i)->name) < 0);
        lt_adapter_close(ad);
    }
}

/* BLOOM enable_lora: one LoRA on the fused weight, lora_B block-diagonal */
static void test_corpus_bloom_shapes(void)
{
    if (!corpus_present()) {
        printf("SKIP corpus_bloom_shapes: corpus absent\n");
        return;
    }
    lt_error err = {0};
    lt_adapter *ad = lt_adapter_open("../shared/corpus/bin/02_bloom-560m-enable_lora-legacy", &err);
    CHECK_MSG(ad != NULL, "%s", err.message);
    if (!ad)
        return;
    const lt_lora_module *m = lt_adapter_module(ad, 0);
    CHECK(m->kind == LT_MODULE_LINEAR);
    CHECK_EQ_U64(m->out_features, 3072);
    CHECK_EQ_U64(m->in_features, 1024);
    CHECK_EQ_U64(m->rank, 16);
    CHECK(m->scale == 2.0 && m->alpha == 32.0); /* lora_alpha 16 / r 8, kept as 32 / 16 */
    lt_source *src = lt_adapter_source(ad);
    {
        /* enable_lora [true, false, true]: fused rows 0-1023 are file rows
         * 0-1023 in columns 0-7, rows 1024-2047 zero, rows 2048-3071 file
         * rows 1024-2047 in columns 8-15 */
        const lt_tensor_info *fused = lt_source_tensor(src, (size_t)m->tensor_b);
        CHECK_EQ_U64(fused->shape[0], 3072);
        CHECK_EQ_U64(fused->shape[1], 16);
        float *full = malloc(3072 * 16 * sizeof *full), *file = malloc(2048 * 8 * sizeof *file);
        long fb = find_tensor(src, "base_model.model.transformer.h.0.self_attention.query_key_value.lora_B.weight");
        CHECK(full && file && fb >= 0);
        if (full && file && fb >= 0 &&
            lt_source_read(src, (size_t)m->tensor_b, 0, full, 3072 * 16 * sizeof *full, &err) == LT_OK &&
            lt_source_read(src, (size_t)fb, 0, file, 2048 * 8 * sizeof *file, &err) == LT_OK) {
            size_t bad = 0;
            for (size_t row = 0; row < 3072; row++)
                for (size_t col = 0; col < 16; col++) {
                    float want = 0;
                    if (row < 1024 && col < 8)
                        want = file[row * 8 + col];
                    else if (row >= 2048 && col >= 8)
                        want = file[(row - 1024) * 8 + col - 8];
                    bad += full[row * 16 + col] != want;
                }
            CHECK_EQ_U64(bad, 0);
        }
        free(full);
        free(file);
    }
    long b = find_tensor(src, "base_model.model.transformer.h.0.self_attention.query_key_value.lora_B.weight");
    CHECK(b >= 0);
    if (b >= 0) {
        const lt_tensor_info *t = lt_source_tensor(src, (size_t)b);
        CHECK_EQ_U64(t->n_dims, 3);
        CHECK_EQ_U64(t->shape[0], 2048);
        CHECK_EQ_U64(t->shape[1], 8);
        CHECK_EQ_U64(t->shape[2], 1);
    }
    /* last 2 values of h.9's lora_B (python: struct.unpack of data/19) */
    long last = find_tensor(src, "base_model.model.transformer.h.9.self_attention.query_key_value.lora_B.weight");
    CHECK(last >= 0);
    if (last >= 0) {
        float got[2];
        CHECK(lt_source_read(src, (size_t)last, (16384 - 2) * 4, got, sizeof got, &err) == LT_OK);
        CHECK(got[0] == -0.011421475559473038f && got[1] == 0.014082078821957111f);
    }
    lt_adapter_close(ad);
}

static void test_corpus_prompt_tuning(void)
{
    if (!corpus_present()) {
        printf("SKIP corpus_prompt_tuning: corpus absent\n");
        return;
    }
    lt_error err = {0};
    lt_adapter *ad = lt_adapter_open("../shared/corpus/bin/03_gpt2-prompt-tuning", &err);
    CHECK(ad == NULL);
    lt_adapter_close(ad);
    CHECK_EQ_U64(err.status, LT_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "PROMPT_TUNING") != NULL, "%s", err.message);
    /* the weights file alone is a plain torch source */
    lt_source *src = lt_source_open("../shared/corpus/bin/03_gpt2-prompt-tuning/adapter_model.bin", &err);
    CHECK_MSG(src != NULL, "%s", err.message);
    if (!src)
        return;
    CHECK_STR(lt_source_format(src), "torch");
    CHECK_EQ_U64(lt_source_tensor_count(src), 1);
    const lt_tensor_info *t = lt_source_tensor(src, 0);
    CHECK_STR(t->name, "prompt_embeddings");
    CHECK_EQ_U64(t->shape[0], 8);
    CHECK_EQ_U64(t->shape[1], 768);
    float got[2];
    CHECK(lt_source_read(src, 0, 0, got, sizeof got, &err) == LT_OK);
    CHECK(got[0] == -0.19401521980762482f && got[1] == -0.11456316709518433f);
    lt_source_close(src);
}

/* ------------------------------------------------------------------ */
/* Built archives                                                       */
/* ------------------------------------------------------------------ */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put_u8(buf *b, unsigned v) { unsigned char c = (unsigned char)v; put(b, &c, 1); }
static void put_u16(buf *b, unsigned v) { put_u8(b, v & 0xff); put_u8(b, (v >> 8) & 0xff); }
static void put_u32(buf *b, uint32_t v) { put_u16(b, v & 0xffff); put_u16(b, v >> 16); }
static void put_str(buf *b, const char *s) { put(b, s, strlen(s)); }
/* BINUNICODE */
static void put_uni(buf *b, const char *s) { put_u8(b, 'X'); put_u32(b, (uint32_t)strlen(s)); put_str(b, s); }

typedef struct pkl_opts {
    const char *global_mod, *global_name; /* replaces the storage type   */
    unsigned numel;
    unsigned size[2], stride[2];
} pkl_opts;

/* OrderedDict {"w": _rebuild_tensor_v2(storage "0", 0, size, stride, False, OrderedDict())} */
static buf make_pickle(const pkl_opts *o)
{
    buf b = {0};
    put_str(&b, "\x80\x02");
    put_str(&b, "ccollections\nOrderedDict\n)R(");
    put_uni(&b, "w");
    put_str(&b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    put_uni(&b, "storage");
    put_u8(&b, 'c');
    put_str(&b, o->global_mod ? o->global_mod : "torch");
    put_u8(&b, '\n');
    put_str(&b, o->global_name ? o->global_name : "FloatStorage");
    put_u8(&b, '\n');
    put_uni(&b, "0");
    put_uni(&b, "cpu");
    put_u8(&b, 'M'); put_u16(&b, o->numel);
    put_str(&b, "tQ");
    put_u8(&b, 'K');
    put_u8(&b, 0);
    put_u8(&b, 'K'); put_u8(&b, o->size[0]);
    put_u8(&b, 'K'); put_u8(&b, o->size[1]);
    put_u8(&b, 0x86);
    put_u8(&b, 'K'); put_u8(&b, o->stride[0]);
    put_u8(&b, 'K'); put_u8(&b, o->stride[1]);
    put_u8(&b, 0x86);
    put_str(&b, "\x89" "ccollections\nOrderedDict\n)RtRu.");
    return b;
}

typedef struct member {
    const char *name;
    const void *data;
    size_t len;
    unsigned method; /* 0 stored; 8 deflated (data compressed here) */
} member;

static void deflate_raw(const void *in, size_t n, buf *out)
{
    z_stream zs = {0};
    deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    out->cap = deflateBound(&zs, n) + 16;
    out->p = malloc(out->cap);
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out->p;
    zs.avail_out = (uInt)out->cap;
    deflate(&zs, Z_FINISH);
    out->n = zs.total_out;
    deflateEnd(&zs);
}

/* A ZIP of the members; *cd_at gets where the central directory starts. */
static buf make_zip(const member *m, size_t n, size_t *cd_at)
{
    buf z = {0}, cd = {0};
    for (size_t i = 0; i < n; i++) {
        buf packed = {0};
        if (m[i].method == 8)
            deflate_raw(m[i].data, m[i].len, &packed);
        else
            put(&packed, m[i].data, m[i].len);
        uint32_t crc = (uint32_t)crc32(0, m[i].data, (uInt)m[i].len);
        size_t at = z.n;
        put_str(&z, "PK\x03\x04");
        put_u16(&z, 20); put_u16(&z, 0); put_u16(&z, m[i].method);
        put_u16(&z, 0); put_u16(&z, 0); put_u32(&z, crc);
        put_u32(&z, (uint32_t)packed.n); put_u32(&z, (uint32_t)m[i].len);
        put_u16(&z, (unsigned)strlen(m[i].name)); put_u16(&z, 0);
        put_str(&z, m[i].name);
        put(&z, packed.p, packed.n);
        put_str(&cd, "PK\x01\x02");
        put_u16(&cd, 20); put_u16(&cd, 20); put_u16(&cd, 0); put_u16(&cd, m[i].method);
        put_u16(&cd, 0); put_u16(&cd, 0); put_u32(&cd, crc);
        put_u32(&cd, (uint32_t)packed.n); put_u32(&cd, (uint32_t)m[i].len);
        put_u16(&cd, (unsigned)strlen(m[i].name)); put_u16(&cd, 0); put_u16(&cd, 0);
        put_u16(&cd, 0); put_u16(&cd, 0); put_u32(&cd, 0); put_u32(&cd, (uint32_t)at);
        put_str(&cd, m[i].name);
        free(packed.p);
    }
    *cd_at = z.n;
    put(&z, cd.p, cd.n);
    put_str(&z, "PK\x05\x06");
    put_u16(&z, 0); put_u16(&z, 0); put_u16(&z, (unsigned)n); put_u16(&z, (unsigned)n);
    put_u32(&z, (uint32_t)cd.n); put_u32(&z, (uint32_t)*cd_at); put_u16(&z, 0);
    free(cd.p);
    return z;
}

static const float six[6] = {1.5f, -2, 3.25f, 4, -5, 6.125f};

typedef struct build_opts {
    pkl_opts pkl;
    unsigned pkl_method, storage_method;
    size_t storage_len;
    const char *byteorder;
} build_opts;

static build_opts default_opts(void)
{
    build_opts o = {.pkl = {.numel = 6, .size = {2, 3}, .stride = {3, 1}}, .storage_len = sizeof six,
                    .byteorder = "little"};
    return o;
}

static buf build(const build_opts *o, size_t *cd_at)
{
    buf pkl = make_pickle(&o->pkl);
    member m[] = {
        {"archive/data.pkl", pkl.p, pkl.n, o->pkl_method},
        {"archive/byteorder", o->byteorder, strlen(o->byteorder), 0},
        {"archive/data/0", six, o->storage_len, o->storage_method},
        {"archive/version", "3\n", 2, 0},
    };
    buf z = make_zip(m, 4, cd_at);
    free(pkl.p);
    return z;
}

/* Open the bytes as <tmp>/name.bin; returns the status, message in err. */
static lt_status open_bytes(const char *name, const void *data, size_t n, lt_error *err, lt_source **keep)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", tmp_root, name);
    write_file(path, data, n);
    memset(err, 0, sizeof *err);
    lt_source *src = lt_source_open(path, err);
    if (keep)
        *keep = src;
    else
        lt_source_close(src);
    return src ? LT_OK : err->status;
}

static void test_built_valid(void)
{
    size_t cd_at;
    for (unsigned method = 0; method <= 8; method += 8) {
        build_opts o = default_opts();
        o.pkl_method = method; /* a deflated data.pkl is inflated */
        buf z = build(&o, &cd_at);
        lt_error err;
        lt_source *src = NULL;
        CHECK_MSG(open_bytes("valid", z.p, z.n, &err, &src) == LT_OK, "%s", err.message);
        free(z.p);
        if (!src)
            continue;
        CHECK_STR(lt_source_format(src), "torch");
        CHECK_EQ_U64(lt_source_tensor_count(src), 1);
        const lt_tensor_info *t = lt_source_tensor(src, 0);
        CHECK_STR(t->name, "w");
        CHECK(t->dtype == LT_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3);
        float got[6];
        CHECK(lt_source_read(src, 0, 0, got, sizeof got, &err) == LT_OK);
        CHECK(memcmp(got, six, sizeof six) == 0);
        lt_source_close(src);
    }
}

static void expect_refusal(const char *name, const void *data, size_t n, lt_status want, const char *needle)
{
    lt_error err;
    lt_status s = open_bytes(name, data, n, &err, NULL);
    CHECK_MSG(s == want, "%s: status %d, want %d (%s)", name, (int)s, (int)want, err.message);
    if (needle)
        CHECK_MSG(strstr(err.message, needle) != NULL, "%s: '%s' lacks '%s'", name, err.message, needle);
}

static void set_u32(unsigned char *p, uint32_t v)
{
    p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; p[2] = (v >> 16) & 0xff; p[3] = v >> 24;
}

static void test_built_hostile_zip(void)
{
    size_t cd_at;
    build_opts o = default_opts();
    buf z = build(&o, &cd_at);
    /* truncated: cut anywhere, from the middle of the data to the EOCD */
    for (size_t cut = z.n / 3; cut < z.n; cut += 7) {
        lt_error err;
        CHECK_MSG(open_bytes("truncated", z.p, cut, &err, NULL) != LT_OK, "cut at %zu", cut);
    }
    /* EOCD central directory offset outside the file */
    unsigned char *copy = malloc(z.n);
    memcpy(copy, z.p, z.n);
    set_u32(copy + z.n - 22 + 16, 0x7fffff00u);
    expect_refusal("eocd_outside", copy, z.n, LT_ERR_INVALID, "outside the file");
    /* ZIP64 marker without a locator */
    memcpy(copy, z.p, z.n);
    set_u32(copy + z.n - 22 + 16, 0xffffffffu);
    expect_refusal("zip64_missing", copy, z.n, LT_ERR_INVALID, "ZIP64");
    /* the first member's local header offset outside the file */
    memcpy(copy, z.p, z.n);
    set_u32(copy + cd_at + 42, 0x7ffffff0u);
    expect_refusal("local_outside", copy, z.n, LT_ERR_INVALID, "outside the file");
    /* a member size running past the end */
    memcpy(copy, z.p, z.n);
    set_u32(copy + cd_at + 20, 0x7ffffff0u);
    set_u32(copy + cd_at + 24, 0x7ffffff0u);
    expect_refusal("size_outside", copy, z.n, LT_ERR_INVALID, NULL);
    /* not a zip at all */
    expect_refusal("garbage", "PK\x03\x04 not really a zip archive at all, sorry", 44, LT_ERR_INVALID, NULL);
    free(copy);
    free(z.p);
}

static void test_built_hostile_pickle(void)
{
    size_t cd_at;
    buf z;
    /* a disallowed global */
    build_opts o = default_opts();
    o.pkl.global_mod = "os";
    o.pkl.global_name = "system";
    z = build(&o, &cd_at);
    expect_refusal("os_system", z.p, z.n, LT_ERR_UNSUPPORTED, "pickle global os.system is not allowed");
    free(z.p);
    o.pkl.global_mod = "torch";
    o.pkl.global_name = "load";
    z = build(&o, &cd_at);
    expect_refusal("torch_load", z.p, z.n, LT_ERR_UNSUPPORTED, "torch.load");
    free(z.p);

    /* hand-made data.pkl members */
    struct {
        const char *name;
        buf pkl;
        lt_status want;
        const char *needle;
    } bad[4];
    memset(bad, 0, sizeof bad);
    bad[0].name = "deep_marks";
    put_str(&bad[0].pkl, "\x80\x02");
    for (int i = 0; i < 200000; i++)
        put_u8(&bad[0].pkl, '(');
    put_u8(&bad[0].pkl, '.');
    bad[0].want = LT_ERR_UNSUPPORTED;
    bad[0].needle = "MARK";
    bad[1].name = "long_unicode";
    put_str(&bad[1].pkl, "\x80\x02}(X");
    put_u32(&bad[1].pkl, 0x7fffffffu);
    put_str(&bad[1].pkl, "abc");
    bad[1].want = LT_ERR_INVALID;
    bad[1].needle = "past the end";
    bad[2].name = "not_dict";
    put_str(&bad[2].pkl, "\x80\x02].");
    bad[2].want = LT_ERR_UNSUPPORTED;
    bad[2].needle = "list";
    bad[3].name = "reduce_exec";
    put_str(&bad[3].pkl, "\x80\x02" "cbuiltins\nexec\n");
    put_uni(&bad[3].pkl, "1+1\n");
    put_str(&bad[3].pkl, "\x85R.");
    bad[3].want = LT_ERR_UNSUPPORTED;
    bad[3].needle = "builtins.exec";
    for (size_t k = 0; k < 4; k++) {
        member m[] = {{"archive/data.pkl", bad[k].pkl.p, bad[k].pkl.n, 0}, {"archive/data/0", six, sizeof six, 0}};
        z = make_zip(m, 2, &cd_at);
        expect_refusal(bad[k].name, z.p, z.n, bad[k].want, bad[k].needle);
        free(z.p);
        free(bad[k].pkl.p);
    }
}

static void test_built_hostile_tensor(void)
{
    size_t cd_at;
    buf z;
    build_opts o = default_opts();
    o.pkl.numel = 1000; /* numel larger than the member */
    z = build(&o, &cd_at);
    expect_refusal("numel_large", z.p, z.n, LT_ERR_INVALID, "holds 24");
    free(z.p);

    o = default_opts();
    o.pkl.size[0] = 3; /* 3x3 elements from a storage of 6 */
    z = build(&o, &cd_at);
    expect_refusal("view_outside", z.p, z.n, LT_ERR_INVALID, "outside its storage");
    free(z.p);

    o = default_opts();
    o.pkl.stride[0] = 1;
    o.pkl.stride[1] = 2; /* a transposed view */
    z = build(&o, &cd_at);
    expect_refusal("strided", z.p, z.n, LT_ERR_UNSUPPORTED, "tensor w is not contiguous");
    free(z.p);

    o = default_opts();
    o.pkl.size[0] = 1;
    o.pkl.stride[0] = 77; /* a size-1 dimension may have any stride */
    z = build(&o, &cd_at);
    lt_error err;
    CHECK_MSG(open_bytes("size1_stride", z.p, z.n, &err, NULL) == LT_OK, "%s", err.message);
    free(z.p);

    o = default_opts();
    o.storage_method = 8;
    z = build(&o, &cd_at);
    expect_refusal("compressed_storage", z.p, z.n, LT_ERR_UNSUPPORTED, "compressed");
    free(z.p);

    o = default_opts();
    o.byteorder = "big";
    z = build(&o, &cd_at);
    expect_refusal("big_endian", z.p, z.n, LT_ERR_UNSUPPORTED, "big");
    free(z.p);
}

/* ------------------------------------------------------------------ */
/* Fuzz                                                                 */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void fuzz_file(const char *label, const unsigned char *orig, size_t n, size_t head, size_t rounds)
{
    unsigned char *copy = malloc(n);
    size_t opened = 0;
    for (size_t r = 0; r < rounds; r++) {
        memcpy(copy, orig, n);
        size_t flips = 1 + rng() % 8;
        for (size_t f = 0; f < flips; f++) {
            uint64_t where = rng() % 4;
            size_t pos = where < 2 ? rng() % (head < n ? head : n) /* the pickle */
                         : where == 2 ? n - 1 - rng() % (n < 512 ? n : 512) /* EOCD, central dir */
                                      : rng() % n;
            copy[pos] = rng() % 3 == 0 ? (unsigned char)(copy[pos] ^ (1u << (rng() % 8))) : (unsigned char)rng();
        }
        lt_source *src = NULL;
        lt_error err;
        if (open_bytes(label, copy, n, &err, &src) == LT_OK) {
            opened++;
            for (size_t i = 0; i < lt_source_tensor_count(src); i++) {
                const lt_tensor_info *t = lt_source_tensor(src, i);
                unsigned char tmp[64];
                size_t len = t->n_bytes < sizeof tmp ? (size_t)t->n_bytes : sizeof tmp;
                if (len)
                    (void)lt_source_read(src, i, t->n_bytes - len, tmp, len, &err);
            }
            lt_source_close(src);
        } else {
            CHECK_MSG(err.message[0] != '\0', "round %zu: failure without a message", r);
        }
    }
    printf("  %s: %zu of %zu mutants opened\n", label, opened, rounds);
    free(copy);
}

static void test_fuzz(void)
{
    size_t cd_at;
    build_opts o = default_opts();
    buf z = build(&o, &cd_at);
    fuzz_file("fuzz_built", z.p, z.n, cd_at, 500);
    free(z.p);
    if (!corpus_present()) {
        printf("SKIP fuzz_corpus: corpus absent\n");
        return;
    }
    FILE *f = fopen("../shared/corpus/bin/03_gpt2-prompt-tuning/adapter_model.bin", "rb");
    if (!f) {
        printf("SKIP fuzz_corpus: corpus absent\n");
        return;
    }
    unsigned char *data = malloc(1 << 20);
    size_t n = fread(data, 1, 1 << 20, f);
    fclose(f);
    fuzz_file("fuzz_corpus", data, n, 400, 1000);
    free(data);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_corpus_lora);
    RUN(test_corpus_bloom_shapes);
    RUN(test_corpus_prompt_tuning);
    RUN(test_built_valid);
    RUN(test_built_hostile_zip);
    RUN(test_built_hostile_pickle);
    RUN(test_built_hostile_tensor);
    RUN(test_fuzz);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0)
        printf("  could not remove %s\n", tmp_root);
    return check_done();
}
