/*
 * test_dtype.c - the element-type table and the f32 conversions.
 *
 * Conversion results are compared bit for bit with reference files made
 * by numpy (testdata/make_dtype_ref.py), never with values this library
 * computed.  Usage: test_dtype [REFERENCE_DIR], default
 * build/testdata/dtype; missing reference files are a failure, not a skip.
 */
#include <math.h>

#include "check.h"
#include "loratool.h"

static const char *reference_dir = "build/testdata/dtype";

/* ------------------------------------------------------------------ */
/* Reference files                                                     */
/* ------------------------------------------------------------------ */

/* A reference file's raw bytes and the element count at a given width. */
typedef struct ref_file {
    unsigned char *bytes;
    size_t count;
} ref_file;

/* Load REFERENCE_DIR/name as elements of elem_size bytes; on failure a
 * failed check and count 0. */
static ref_file ref_load(const char *name, size_t elem_size)
{
    ref_file ref = {NULL, 0};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", reference_dir, name);
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "cannot open %s (run testdata/make_dtype_ref.py first)", path);
    if (!f)
        return ref;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    rewind(f);
    CHECK_MSG(size > 0 && (size_t)size % elem_size == 0, "%s: bad size %ld", path, size);
    if (size > 0 && (size_t)size % elem_size == 0) {
        ref.bytes = malloc((size_t)size);
        if (ref.bytes && fread(ref.bytes, 1, (size_t)size, f) == (size_t)size) {
            ref.count = (size_t)size / elem_size;
        } else {
            CHECK_MSG(0, "%s: read failed", path);
            free(ref.bytes);
            ref.bytes = NULL;
        }
    }
    fclose(f);
    return ref;
}

/* Element i of a reference file, little-endian. */
static uint32_t ref_u32(const ref_file *ref, size_t i)
{
    const unsigned char *p = ref->bytes + 4 * i;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t ref_u16(const ref_file *ref, size_t i)
{
    const unsigned char *p = ref->bytes + 2 * i;
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint8_t ref_u8(const ref_file *ref, size_t i) { return ref->bytes[i]; }

static uint32_t bits_of(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static float float_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ------------------------------------------------------------------ */
/* The table                                                           */
/* ------------------------------------------------------------------ */

static void test_names_round_trip(void)
{
    for (int t = 1; t < LT_DTYPE_COUNT; t++) {
        const char *name = lt_dtype_name((lt_dtype)t);
        CHECK_MSG(name && strcmp(name, "INVALID") != 0, "type %d has no name", t);
        CHECK_MSG(lt_dtype_block_elems((lt_dtype)t) >= 1, "type %d", t);
        CHECK_MSG(lt_dtype_block_bytes((lt_dtype)t) >= 1, "type %d", t);
        /* A name is either a safetensors dtype (and then looks itself up)
         * or a ggml-only type. */
        lt_dtype back = lt_dtype_from_safetensors(name);
        CHECK_MSG(back == (lt_dtype)t || (back == LT_DTYPE_INVALID && t >= LT_Q4_0),
                  "%s -> %d", name, (int)back);
        for (int u = 1; u < t; u++)
            CHECK_MSG(strcmp(name, lt_dtype_name((lt_dtype)u)) != 0, "duplicate name %s", name);
    }
    CHECK_STR(lt_dtype_name(LT_DTYPE_INVALID), "INVALID");
    CHECK_STR(lt_dtype_name(LT_DTYPE_COUNT), "INVALID");
    CHECK_STR(lt_dtype_name((lt_dtype)-1), "INVALID");
    CHECK_STR(lt_dtype_name(LT_BF16), "BF16");
    CHECK_STR(lt_dtype_name(LT_F8_E4M3), "F8_E4M3");
    CHECK_STR(lt_dtype_name(LT_Q4_K), "Q4_K");
    CHECK_STR(lt_dtype_name(LT_IQ2_XXS), "IQ2_XXS");
    CHECK_STR(lt_dtype_name(LT_MXFP4), "MXFP4");
}

static void test_safetensors_names(void)
{
    static const char *const names[] = {"BOOL", "U8", "I8", "I16", "U16", "I32",
                                        "U32", "I64", "U64", "F16", "BF16", "F32",
                                        "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "C64"};
    static const uint32_t bytes[] = {1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8, 1, 1, 1, 8};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        lt_dtype t = lt_dtype_from_safetensors(names[i]);
        CHECK_MSG(t != LT_DTYPE_INVALID, "%s not found", names[i]);
        CHECK_STR(lt_dtype_name(t), names[i]);
        CHECK_EQ_U64(lt_dtype_block_elems(t), 1);
        CHECK_EQ_U64(lt_dtype_block_bytes(t), bytes[i]);
    }
    static const char *const not_names[] = {"", "f32", "F32 ", "FLOAT", "Q4_0", "F4",
                                            "F8_E4M3FNUZ", "INVALID", "F8_E4M3FN"};
    for (size_t i = 0; i < sizeof not_names / sizeof not_names[0]; i++)
        CHECK_MSG(lt_dtype_from_safetensors(not_names[i]) == LT_DTYPE_INVALID, "\"%s\"",
                  not_names[i]);
    CHECK(lt_dtype_from_safetensors(NULL) == LT_DTYPE_INVALID);
}

/* The ggml facts, written out from ggml.h and ggml-common.h. */
static void test_ggml_ids(void)
{
    static const struct {
        lt_dtype type;
        int id;
        uint32_t block_elems, block_bytes;
    } ggml[] = {
        {LT_F32, 0, 1, 4},         {LT_F16, 1, 1, 2},         {LT_Q4_0, 2, 32, 18},
        {LT_Q4_1, 3, 32, 20},      {LT_Q5_0, 6, 32, 22},      {LT_Q5_1, 7, 32, 24},
        {LT_Q8_0, 8, 32, 34},      {LT_Q8_1, 9, 32, 36},      {LT_Q2_K, 10, 256, 84},
        {LT_Q3_K, 11, 256, 110},   {LT_Q4_K, 12, 256, 144},   {LT_Q5_K, 13, 256, 176},
        {LT_Q6_K, 14, 256, 210},   {LT_Q8_K, 15, 256, 292},   {LT_IQ2_XXS, 16, 256, 66},
        {LT_IQ2_XS, 17, 256, 74},  {LT_IQ3_XXS, 18, 256, 98}, {LT_IQ1_S, 19, 256, 50},
        {LT_IQ4_NL, 20, 32, 18},   {LT_IQ3_S, 21, 256, 110},  {LT_IQ2_S, 22, 256, 82},
        {LT_IQ4_XS, 23, 256, 136}, {LT_I8, 24, 1, 1},         {LT_I16, 25, 1, 2},
        {LT_I32, 26, 1, 4},        {LT_I64, 27, 1, 8},        {LT_F64, 28, 1, 8},
        {LT_IQ1_M, 29, 256, 56},   {LT_BF16, 30, 1, 2},       {LT_TQ1_0, 34, 256, 54},
        {LT_TQ2_0, 35, 256, 66},   {LT_MXFP4, 39, 32, 17},
    };
    size_t n = sizeof ggml / sizeof ggml[0];
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(lt_dtype_ggml_id(ggml[i].type) == ggml[i].id, "%s", lt_dtype_name(ggml[i].type));
        CHECK_MSG(lt_dtype_from_ggml((uint32_t)ggml[i].id) == ggml[i].type, "id %d", ggml[i].id);
        CHECK_EQ_U64(lt_dtype_block_elems(ggml[i].type), ggml[i].block_elems);
        CHECK_EQ_U64(lt_dtype_block_bytes(ggml[i].type), ggml[i].block_bytes);
    }
    /* Every type with an id is in the list above; the rest have none. */
    size_t with_id = 0;
    for (int t = 1; t < LT_DTYPE_COUNT; t++) {
        int id = lt_dtype_ggml_id((lt_dtype)t);
        if (id >= 0) {
            with_id++;
            CHECK_MSG(lt_dtype_from_ggml((uint32_t)id) == (lt_dtype)t, "%s", lt_dtype_name((lt_dtype)t));
        }
    }
    CHECK_EQ_U64(with_id, n);
    static const lt_dtype no_ggml[] = {LT_BOOL, LT_U8, LT_U16, LT_U32, LT_U64, LT_F8_E4M3,
                                       LT_F8_E5M2, LT_F8_E8M0, LT_C64, LT_DTYPE_INVALID};
    for (size_t i = 0; i < sizeof no_ggml / sizeof no_ggml[0]; i++)
        CHECK_MSG(lt_dtype_ggml_id(no_ggml[i]) == -1, "%s", lt_dtype_name(no_ggml[i]));
    /* removed (4, 5, 31-33, 36-38), newer than the table, and nonsense */
    static const uint32_t unknown_ids[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 42, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown_ids / sizeof unknown_ids[0]; i++)
        CHECK_MSG(lt_dtype_from_ggml(unknown_ids[i]) == LT_DTYPE_INVALID, "id %u", unknown_ids[i]);
    CHECK_EQ_U64(lt_dtype_block_elems(LT_DTYPE_INVALID), 0);
    CHECK_EQ_U64(lt_dtype_block_bytes(LT_DTYPE_COUNT), 0);
}

static void test_is_float(void)
{
    for (int t = 0; t <= LT_DTYPE_COUNT; t++) {
        bool want = t == LT_F16 || t == LT_BF16 || t == LT_F32 || t == LT_F64 ||
                    t == LT_F8_E4M3 || t == LT_F8_E5M2;
        CHECK_MSG(lt_dtype_is_float((lt_dtype)t) == want, "%s", lt_dtype_name((lt_dtype)t));
    }
}

static void test_nbytes(void)
{
    uint64_t bytes = 7;
    CHECK(lt_dtype_nbytes(LT_F32, 0, &bytes) && bytes == 0);
    CHECK(lt_dtype_nbytes(LT_F32, 3, &bytes) && bytes == 12);
    CHECK(lt_dtype_nbytes(LT_BOOL, 5, &bytes) && bytes == 5);
    CHECK(lt_dtype_nbytes(LT_C64, 3, &bytes) && bytes == 24);
    CHECK(lt_dtype_nbytes(LT_Q4_0, 64, &bytes) && bytes == 36);
    CHECK(lt_dtype_nbytes(LT_Q4_K, 512, &bytes) && bytes == 288);
    CHECK(lt_dtype_nbytes(LT_TQ1_0, 256, &bytes) && bytes == 54);
    CHECK(lt_dtype_nbytes(LT_Q8_0, 0, &bytes) && bytes == 0);

    /* not a whole number of blocks */
    bytes = 7;
    CHECK(!lt_dtype_nbytes(LT_Q4_0, 33, &bytes));
    CHECK(!lt_dtype_nbytes(LT_Q4_0, 16, &bytes));
    CHECK(!lt_dtype_nbytes(LT_Q6_K, 32, &bytes));
    CHECK(!lt_dtype_nbytes(LT_Q6_K, 255, &bytes));
    CHECK_EQ_U64(bytes, 7); /* untouched on failure */

    /* overflow of the product */
    CHECK(lt_dtype_nbytes(LT_F32, (UINT64_C(1) << 62) - 1, &bytes) &&
          bytes == UINT64_MAX - 3);
    CHECK(!lt_dtype_nbytes(LT_F32, UINT64_C(1) << 62, &bytes));
    CHECK(!lt_dtype_nbytes(LT_F64, UINT64_MAX, &bytes));
    CHECK(lt_dtype_nbytes(LT_U8, UINT64_MAX, &bytes) && bytes == UINT64_MAX);
    uint64_t q8k_blocks_max = UINT64_MAX / 292; /* largest block count that fits */
    CHECK(lt_dtype_nbytes(LT_Q8_K, q8k_blocks_max * 256, &bytes) && bytes == q8k_blocks_max * 292);
    CHECK(!lt_dtype_nbytes(LT_Q8_K, (q8k_blocks_max + 1) * 256, &bytes));

    /* not a type */
    CHECK(!lt_dtype_nbytes(LT_DTYPE_INVALID, 1, &bytes));
    CHECK(!lt_dtype_nbytes(LT_DTYPE_COUNT, 1, &bytes));
}

/* ------------------------------------------------------------------ */
/* Scalar conversions against numpy                                    */
/* ------------------------------------------------------------------ */

static void test_f16_to_f32_all(void)
{
    ref_file ref = ref_load("f16_to_f32.bin", 4);
    CHECK_EQ_U64(ref.count, 65536);
    size_t mismatches = 0;
    for (size_t h = 0; h < ref.count && ref.count == 65536; h++) {
        uint32_t got = bits_of(lt_f16_to_f32((uint16_t)h));
        uint32_t want = ref_u32(&ref, h);
        if (got != want && mismatches++ < 5)
            CHECK_MSG(0, "f16 0x%04zx -> 0x%08x, numpy 0x%08x", h, got, want);
    }
    CHECK_EQ_U64(mismatches, 0);
    free(ref.bytes);
}

static void test_bf16_to_f32_all(void)
{
    ref_file ref = ref_load("bf16_to_f32.bin", 4);
    CHECK_EQ_U64(ref.count, 65536);
    size_t mismatches = 0;
    for (size_t h = 0; h < ref.count && ref.count == 65536; h++) {
        uint32_t got = bits_of(lt_bf16_to_f32((uint16_t)h));
        uint32_t want = ref_u32(&ref, h);
        if (got != want && mismatches++ < 5)
            CHECK_MSG(0, "bf16 0x%04zx -> 0x%08x, reference 0x%08x", h, got, want);
    }
    CHECK_EQ_U64(mismatches, 0);
    free(ref.bytes);
}

/* f32 -> a 16-bit format over the shared input list. */
static void check_f32_to_16(const char *ref_name, uint16_t (*convert)(float), const char *what)
{
    ref_file inputs = ref_load("f32_inputs.bin", 4);
    ref_file ref = ref_load(ref_name, 2);
    CHECK(inputs.count > 100000);
    CHECK_EQ_U64(ref.count, inputs.count);
    size_t mismatches = 0;
    for (size_t i = 0; i < inputs.count && ref.count == inputs.count; i++) {
        uint32_t in = ref_u32(&inputs, i);
        uint16_t got = convert(float_of(in));
        uint16_t want = ref_u16(&ref, i);
        if (got != want && mismatches++ < 5)
            CHECK_MSG(0, "f32 0x%08x -> %s 0x%04x, reference 0x%04x", in, what, got, want);
    }
    CHECK_EQ_U64(mismatches, 0);
    free(inputs.bytes);
    free(ref.bytes);
}

static void test_f32_to_f16_reference(void) { check_f32_to_16("f32_to_f16.bin", lt_f32_to_f16, "f16"); }
static void test_f32_to_bf16_reference(void) { check_f32_to_16("f32_to_bf16.bin", lt_f32_to_bf16, "bf16"); }

/* Decoding all 256 patterns of an f8 type, and encoding the f8 input list. */
static void check_f8(const char *decode_name, float (*decode)(uint8_t), const char *encode_name,
                     uint8_t (*encode)(float), const char *what)
{
    ref_file decoded = ref_load(decode_name, 4);
    CHECK_EQ_U64(decoded.count, 256);
    for (size_t v = 0; v < decoded.count && decoded.count == 256; v++) {
        uint32_t got = bits_of(decode((uint8_t)v));
        CHECK_MSG(got == ref_u32(&decoded, v), "%s 0x%02zx -> 0x%08x, reference 0x%08x", what,
                  v, got, ref_u32(&decoded, v));
    }
    free(decoded.bytes);

    ref_file inputs = ref_load("f8_inputs.bin", 4);
    ref_file ref = ref_load(encode_name, 1);
    CHECK(inputs.count > 20000);
    CHECK_EQ_U64(ref.count, inputs.count);
    size_t mismatches = 0;
    for (size_t i = 0; i < inputs.count && ref.count == inputs.count; i++) {
        uint32_t in = ref_u32(&inputs, i);
        uint8_t got = encode(float_of(in));
        uint8_t want = ref_u8(&ref, i);
        if (got != want && mismatches++ < 5)
            CHECK_MSG(0, "f32 0x%08x -> %s 0x%02x, reference 0x%02x", in, what, got, want);
    }
    CHECK_EQ_U64(mismatches, 0);
    free(inputs.bytes);
    free(ref.bytes);
}

static void test_f8e4m3_reference(void)
{
    check_f8("e4m3_to_f32.bin", lt_f8e4m3_to_f32, "f32_to_e4m3.bin", lt_f32_to_f8e4m3, "e4m3");
}

static void test_f8e5m2_reference(void)
{
    check_f8("e5m2_to_f32.bin", lt_f8e5m2_to_f32, "f32_to_e5m2.bin", lt_f32_to_f8e5m2, "e5m2");
}

/* ------------------------------------------------------------------ */
/* Properties and hand-checked values (no reference file needed)      */
/* ------------------------------------------------------------------ */

/* Every non-NaN pattern survives narrow -> f32 -> narrow; NaNs stay NaN
 * with their sign. */
static void test_round_trips(void)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f16_value = lt_f16_to_f32((uint16_t)h);
        float bf16_value = lt_bf16_to_f32((uint16_t)h);
        bool f16_nan = (h & 0x7FFF) > 0x7C00, bf16_nan = (h & 0x7FFF) > 0x7F80;
        uint16_t f16_back = lt_f32_to_f16(f16_value), bf16_back = lt_f32_to_bf16(bf16_value);
        if (f16_nan)
            CHECK_MSG((f16_back & 0x7E00) == 0x7E00 && (f16_back & 0x8000) == (h & 0x8000),
                      "f16 NaN 0x%04x -> 0x%04x", h, f16_back);
        else
            CHECK_MSG(f16_back == h, "f16 0x%04x -> 0x%04x", h, f16_back);
        if (bf16_nan)
            CHECK_MSG((bf16_back & 0x7FC0) == 0x7FC0 && (bf16_back & 0x8000) == (h & 0x8000),
                      "bf16 NaN 0x%04x -> 0x%04x", h, bf16_back);
        else
            CHECK_MSG(bf16_back == h, "bf16 0x%04x -> 0x%04x", h, bf16_back);
    }
    for (uint32_t v = 0; v < 0x100; v++) {
        uint8_t e4m3_back = lt_f32_to_f8e4m3(lt_f8e4m3_to_f32((uint8_t)v));
        uint8_t e5m2_back = lt_f32_to_f8e5m2(lt_f8e5m2_to_f32((uint8_t)v));
        bool e5m2_nan = (v & 0x7F) > 0x7C;
        CHECK_MSG(e4m3_back == v, "e4m3 0x%02x -> 0x%02x", v, e4m3_back);
        CHECK_MSG(e5m2_back == (e5m2_nan ? (v & 0x80) | 0x7F : v), "e5m2 0x%02x -> 0x%02x", v,
                  e5m2_back);
    }
}

/* Values worked out by hand from the format definitions. */
static void test_known_values(void)
{
    CHECK_EQ_U64(lt_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_U64(lt_f32_to_f16(65519.996f), 0x7BFF);
    CHECK_EQ_U64(lt_f32_to_f16(65520.0f), 0x7C00); /* tie, odd max -> Inf */
    CHECK_EQ_U64(lt_f32_to_f16(-1e10f), 0xFC00);
    CHECK_EQ_U64(lt_f32_to_f16(0x1p-24f), 0x0001);
    CHECK_EQ_U64(lt_f32_to_f16(0x1p-25f), 0x0000);    /* tie -> even 0 */
    CHECK_EQ_U64(lt_f32_to_f16(0x1.8p-24f), 0x0002);  /* tie -> even 2 */
    CHECK_EQ_U64(lt_f32_to_f16(-0x1p-26f), 0x8000);
    CHECK_EQ_U64(lt_f32_to_f16(0x1.ffcp-15f), 0x0400); /* subnormal rounds up to min normal */
    CHECK_EQ_U64(lt_f32_to_f16(1.0f + 0x1p-11f), 0x3C00);
    CHECK_EQ_U64(lt_f32_to_f16(1.0f + 0x1.8p-10f), 0x3C02);
    CHECK_EQ_U64(lt_f32_to_f16(float_of(0x7F800001)), 0x7E00); /* sNaN -> qNaN, not Inf */
    CHECK_EQ_U64(lt_f32_to_f16(float_of(0xFFC00000)), 0xFE00);

    CHECK_EQ_U64(lt_f32_to_bf16(1.0f + 0x1p-8f), 0x3F80);      /* tie -> even */
    CHECK_EQ_U64(lt_f32_to_bf16(1.0f + 0x1.8p-7f), 0x3F82);
    CHECK_EQ_U64(lt_f32_to_bf16(float_of(0x7F7FFFFF)), 0x7F80); /* FLT_MAX -> Inf */
    CHECK_EQ_U64(lt_f32_to_bf16(float_of(0x7F7F7FFF)), 0x7F7F);
    CHECK_EQ_U64(lt_f32_to_bf16(float_of(0x7F800001)), 0x7FC0); /* not Inf */
    CHECK_EQ_U64(lt_f32_to_bf16(float_of(0x7FFFFFFF)), 0x7FFF); /* no carry into sign */
    CHECK_EQ_U64(lt_f32_to_bf16(float_of(0x00008000)), 0x0000); /* f32 subnormal tie */
    CHECK_EQ_U64(lt_f32_to_bf16(float_of(0x00018000)), 0x0002);

    CHECK(lt_f8e4m3_to_f32(0x7E) == 448.0f);
    CHECK(lt_f8e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(lt_f8e4m3_to_f32(0x08) == 0x1p-6f);
    CHECK(isnan(lt_f8e4m3_to_f32(0x7F)) && isnan(lt_f8e4m3_to_f32(0xFF)));
    CHECK(lt_f8e4m3_to_f32(0xF8) == -256.0f);
    CHECK_EQ_U64(lt_f32_to_f8e4m3(464.0f), 0x7E);  /* tie between 448 and "480" -> 448 */
    CHECK_EQ_U64(lt_f32_to_f8e4m3(464.5f), 0x7F);  /* rounds past 448: NaN, like torch */
    CHECK_EQ_U64(lt_f32_to_f8e4m3(-1000.0f), 0xFF);
    CHECK_EQ_U64(lt_f32_to_f8e4m3(INFINITY), 0x7F);
    CHECK_EQ_U64(lt_f32_to_f8e4m3(-INFINITY), 0xFF);
    CHECK_EQ_U64(lt_f32_to_f8e4m3(0x1p-10f), 0x00); /* tie -> even 0 */
    CHECK_EQ_U64(lt_f32_to_f8e4m3(0x1.8p-9f), 0x02);

    CHECK(lt_f8e5m2_to_f32(0x7B) == 57344.0f);
    CHECK(lt_f8e5m2_to_f32(0x01) == 0x1p-16f);
    CHECK(isinf(lt_f8e5m2_to_f32(0x7C)) && lt_f8e5m2_to_f32(0xFC) < 0);
    CHECK(isnan(lt_f8e5m2_to_f32(0x7D)));
    CHECK_EQ_U64(lt_f32_to_f8e5m2(61439.996f), 0x7B);
    CHECK_EQ_U64(lt_f32_to_f8e5m2(61440.0f), 0x7C); /* tie, odd max -> Inf */
    CHECK_EQ_U64(lt_f32_to_f8e5m2(-INFINITY), 0xFC);
    CHECK_EQ_U64(lt_f32_to_f8e5m2(-NAN), 0xFF);
}

/* ------------------------------------------------------------------ */
/* Array conversions                                                   */
/* ------------------------------------------------------------------ */

static void test_convert_arrays(void)
{
    /* float inputs covering normal, subnormal, tie, overflow and NaN cases */
    const float values[] = {0.0f, -0.0f, 1.0f, -2.5f, 0x1p-20f, 65520.0f, 1e-40f, 448.0f,
                            1.0f + 0x1p-8f, 3.14159265f, INFINITY, NAN};
    enum { N = sizeof values / sizeof values[0] };
    unsigned char buf[8 * N];
    float back[N];

    /* from f32, then back: each element equals the scalar conversions */
    CHECK(lt_convert_from_f32(LT_F16, values, buf, N) == LT_OK);
    CHECK(lt_convert_to_f32(LT_F16, buf, back, N) == LT_OK);
    for (int i = 0; i < N; i++) {
        uint16_t h = (uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8); /* little-endian */
        CHECK_EQ_U64(h, lt_f32_to_f16(values[i]));
        CHECK_EQ_U64(bits_of(back[i]), bits_of(lt_f16_to_f32(h)));
    }
    CHECK(lt_convert_from_f32(LT_BF16, values, buf, N) == LT_OK);
    CHECK(lt_convert_to_f32(LT_BF16, buf, back, N) == LT_OK);
    for (int i = 0; i < N; i++) {
        uint16_t h = (uint16_t)(buf[2 * i] | buf[2 * i + 1] << 8);
        CHECK_EQ_U64(h, lt_f32_to_bf16(values[i]));
        CHECK_EQ_U64(bits_of(back[i]), bits_of(lt_bf16_to_f32(h)));
    }
    CHECK(lt_convert_from_f32(LT_F8_E4M3, values, buf, N) == LT_OK);
    CHECK(lt_convert_to_f32(LT_F8_E4M3, buf, back, N) == LT_OK);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_U64(buf[i], lt_f32_to_f8e4m3(values[i]));
        CHECK_EQ_U64(bits_of(back[i]), bits_of(lt_f8e4m3_to_f32(buf[i])));
    }
    CHECK(lt_convert_from_f32(LT_F8_E5M2, values, buf, N) == LT_OK);
    CHECK(lt_convert_to_f32(LT_F8_E5M2, buf, back, N) == LT_OK);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_U64(buf[i], lt_f32_to_f8e5m2(values[i]));
        CHECK_EQ_U64(bits_of(back[i]), bits_of(lt_f8e5m2_to_f32(buf[i])));
    }

    /* F32 is a little-endian copy, NaN bits included */
    CHECK(lt_convert_from_f32(LT_F32, values, buf, N) == LT_OK);
    for (int i = 0; i < N; i++) {
        uint32_t bits = bits_of(values[i]);
        CHECK(buf[4 * i] == (bits & 0xFF) && buf[4 * i + 3] == bits >> 24);
    }
    CHECK(lt_convert_to_f32(LT_F32, buf, back, N) == LT_OK);
    CHECK(memcmp(back, values, sizeof values) == 0);

    /* F64: widening is exact, narrowing rounds once to nearest-even */
    CHECK(lt_convert_from_f32(LT_F64, values, buf, N) == LT_OK);
    CHECK(lt_convert_to_f32(LT_F64, buf, back, N) == LT_OK);
    CHECK(memcmp(back, values, sizeof values) == 0);
    CHECK(buf[8 * 2 + 7] == 0x3F && buf[8 * 2 + 6] == 0xF0); /* 1.0 = 0x3FF0000000000000 LE */

    const uint64_t f64_inputs[] = {
        UINT64_C(0x3FF0000010000000),  /* 1 + 2^-24: tie -> 1.0 */
        UINT64_C(0x3FF0000010000001),  /* just above the tie -> 1 + 2^-23 */
        UINT64_C(0x3FF0000030000000),  /* 1 + 3*2^-24: tie -> 1 + 2^-22 (even) */
        UINT64_C(0x7E37E43C8800759C),  /* 1e300 -> Inf */
        UINT64_C(0x36A0000000000000),  /* 2^-149 -> smallest f32 subnormal */
        UINT64_C(0x3690000000000000),  /* 2^-150: tie -> 0 */
        UINT64_C(0xBFF8000000000000),  /* -1.5 */
    };
    const uint32_t f64_expected[] = {0x3F800000, 0x3F800001, 0x3F800002, 0x7F800000,
                                     0x00000001, 0x00000000, 0xBFC00000};
    enum { M = sizeof f64_inputs / sizeof f64_inputs[0] };
    unsigned char f64_buf[8 * M];
    float f64_out[M];
    for (int i = 0; i < M; i++)
        for (int b = 0; b < 8; b++)
            f64_buf[8 * i + b] = (unsigned char)(f64_inputs[i] >> (8 * b));
    CHECK(lt_convert_to_f32(LT_F64, f64_buf, f64_out, M) == LT_OK);
    for (int i = 0; i < M; i++)
        CHECK_MSG(bits_of(f64_out[i]) == f64_expected[i], "f64 #%d -> 0x%08x", i,
                  bits_of(f64_out[i]));

    /* little-endian input is honoured for F16 */
    const unsigned char one_f16[2] = {0x00, 0x3C};
    CHECK(lt_convert_to_f32(LT_F16, one_f16, back, 1) == LT_OK && back[0] == 1.0f);

    /* n == 0 is fine; non-float types are refused */
    CHECK(lt_convert_to_f32(LT_F16, NULL, NULL, 0) == LT_OK);
    static const lt_dtype refused[] = {LT_DTYPE_INVALID, LT_BOOL, LT_U8, LT_I8, LT_I32,
                                       LT_F8_E8M0, LT_C64, LT_Q4_0, LT_Q8_0, LT_DTYPE_COUNT};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK(lt_convert_to_f32(refused[i], buf, back, 1) == LT_ERR_UNSUPPORTED);
        CHECK(lt_convert_from_f32(refused[i], values, buf, 1) == LT_ERR_UNSUPPORTED);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1)
        reference_dir = argv[1];
    RUN(test_names_round_trip);
    RUN(test_safetensors_names);
    RUN(test_ggml_ids);
    RUN(test_is_float);
    RUN(test_nbytes);
    RUN(test_f16_to_f32_all);
    RUN(test_bf16_to_f32_all);
    RUN(test_f32_to_f16_reference);
    RUN(test_f32_to_bf16_reference);
    RUN(test_f8e4m3_reference);
    RUN(test_f8e5m2_reference);
    RUN(test_round_trips);
    RUN(test_known_values);
    RUN(test_convert_arrays);
    return check_done();
}
