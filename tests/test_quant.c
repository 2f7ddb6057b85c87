/*
 * test_quant.c - lt_quantize_row against ggml's own reference quantizers.
 *
 * testdata/gguf_quants/ggml_input.f32 holds 64 blocks of 256 float32
 * values (hard cases first, then seeded random normals); ggml_<TYPE>.blocks
 * is what quantize_row_<type>_ref of a local ggml build made of them
 * (testdata/gguf_quants/README.md says how).  Every byte must match.
 */
#include <math.h>

#include "check.h"
#include "loratool.h"

static const char *quants_dir = "testdata/gguf_quants";

static const lt_dtype quant_types[] = {LT_Q4_0, LT_Q4_1, LT_Q5_0, LT_Q5_1, LT_Q8_0,
                                       LT_Q2_K, LT_Q3_K, LT_Q4_K, LT_Q5_K, LT_Q6_K};
#define N_TYPES (sizeof quant_types / sizeof quant_types[0])

static void test_ggml_fixtures(void)
{
    size_t in_len;
    unsigned char *in = read_file(fmt("%s/ggml_input.f32", quants_dir), &in_len);
    CHECK_MSG(in != NULL && in_len == 64 * 256 * 4, "%s/ggml_input.f32 missing or not 64 blocks", quants_dir);
    if (!in || in_len != 64 * 256 * 4) {
        free(in);
        return;
    }
    const float *x = (const float *)(const void *)in;
    size_t n = in_len / 4;
    for (size_t t = 0; t < N_TYPES; t++) {
        lt_dtype type = quant_types[t];
        size_t want_len;
        unsigned char *want = read_file(fmt("%s/ggml_%s.blocks", quants_dir, lt_dtype_name(type)), &want_len);
        uint64_t bytes = 0;
        CHECK(lt_dtype_nbytes(type, n, &bytes));
        CHECK_MSG(want != NULL && want_len == bytes, "ggml_%s.blocks missing or of the wrong size",
                  lt_dtype_name(type));
        if (!want || want_len != bytes) {
            free(want);
            continue;
        }
        unsigned char *got = malloc(bytes);
        CHECK(lt_quantize_row(type, x, got, n) == LT_OK);
        size_t block_bytes = lt_dtype_block_bytes(type), block_elems = lt_dtype_block_elems(type);
        size_t bad_blocks = 0, first_bad = 0;
        for (size_t b = 0; b < bytes / block_bytes; b++) {
            if (memcmp(got + b * block_bytes, want + b * block_bytes, block_bytes) != 0 && !bad_blocks++)
                first_bad = b;
        }
        CHECK_MSG(bad_blocks == 0, "%s: %zu of %zu blocks differ from ggml's, first block %zu (input elements %zu..)",
                  lt_dtype_name(type), bad_blocks, (size_t)(bytes / block_bytes), first_bad,
                  first_bad * block_elems);
        /* one block per call: the 32-element types take their one-block
         * path (whole rows go eight blocks at a time) */
        memset(got, 0, bytes);
        for (size_t b = 0; b < bytes / block_bytes; b++)
            CHECK(lt_quantize_row(type, x + b * block_elems, got + b * block_bytes, block_elems) == LT_OK);
        CHECK_MSG(memcmp(got, want, bytes) == 0, "%s, one block per call: differs from ggml's", lt_dtype_name(type));
        free(got);
        free(want);
    }
    free(in);
}

/* splitmix64 + Box-Muller: seeded normals, independent of the fixtures */
static uint64_t rng = 12345;
static double uniform01(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static float normal(void) { return (float)(sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01())); }

/* dequantize(quantize(x)) stays near x: relative rms error per type below
 * a bound well above what each type's bits give on normal data. */
static void test_round_trip(void)
{
    static const struct { lt_dtype type; double max_rel_rms; } bounds[] = {
        {LT_Q8_0, 0.01}, {LT_Q6_K, 0.02}, {LT_Q5_0, 0.05}, {LT_Q5_1, 0.05}, {LT_Q5_K, 0.05},
        {LT_Q4_0, 0.12}, {LT_Q4_1, 0.12}, {LT_Q4_K, 0.12}, {LT_Q3_K, 0.25}, {LT_Q2_K, 0.5},
    };
    enum { N = 16 * 256 };
    static float x[N], y[N];
    static unsigned char blocks[N * 2];
    for (int i = 0; i < N; i++)
        x[i] = normal() * 0.02f * (1 + i / 1024); /* four magnitudes */
    for (size_t k = 0; k < sizeof bounds / sizeof bounds[0]; k++) {
        lt_dtype t = bounds[k].type;
        CHECK(lt_quantize_row(t, x, blocks, N) == LT_OK);
        CHECK(lt_dequantize_row(t, blocks, y, N) == LT_OK);
        double err2 = 0, x2 = 0;
        for (int i = 0; i < N; i++) {
            err2 += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            x2 += (double)x[i] * x[i];
        }
        double rel = sqrt(err2 / x2);
        CHECK_MSG(rel < bounds[k].max_rel_rms, "%s: relative rms error %.4f >= %.3f", lt_dtype_name(t), rel,
                  bounds[k].max_rel_rms);
        /* zeros stay zeros */
        float zeros[256] = {0};
        CHECK(lt_quantize_row(t, zeros, blocks, 256) == LT_OK);
        CHECK(lt_dequantize_row(t, blocks, y, 256) == LT_OK);
        bool all_zero = true;
        for (int i = 0; i < 256; i++)
            all_zero = all_zero && y[i] == 0;
        CHECK_MSG(all_zero, "%s: an all-zero block does not come back as zeros", lt_dtype_name(t));
    }
}

/* lt_convert_from_f64 writes every quantizable type through the f32
 * rounding of its input and lt_quantize_row. */
static void test_convert_from_f64(void)
{
    enum { N = 512 };
    double d[N];
    float f[N];
    unsigned char a[N * 2], b[N * 2];
    for (int i = 0; i < N; i++) {
        d[i] = normal() * 0.1;
        f[i] = (float)d[i];
    }
    for (size_t t = 0; t < N_TYPES; t++) {
        uint64_t bytes = 0;
        CHECK(lt_dtype_nbytes(quant_types[t], N, &bytes));
        CHECK(lt_convert_from_f64(quant_types[t], d, a, N) == LT_OK);
        CHECK(lt_quantize_row(quant_types[t], f, b, N) == LT_OK);
        CHECK_MSG(memcmp(a, b, bytes) == 0, "%s", lt_dtype_name(quant_types[t]));
        CHECK(lt_dtype_is_numeric(quant_types[t]));
    }
}

static void test_refusals(void)
{
    float x[256];
    unsigned char out[300];
    for (int i = 0; i < 256; i++)
        x[i] = (float)i / 256;
    for (size_t t = 0; t < N_TYPES; t++) {
        lt_dtype type = quant_types[t];
        size_t per = lt_dtype_block_elems(type);
        CHECK(lt_quantize_row(type, x, out, per + 1) == LT_ERR_USAGE);
        if (type == LT_Q8_0 || type == LT_Q4_0)
            continue; /* these two define what NaN and Inf become */
        /* NaN or Inf anywhere: refused, nothing written */
        for (int k = 0; k < 2; k++) {
            x[per - 1] = k ? INFINITY : NAN;
            memset(out, 0xA5, sizeof out);
            CHECK_MSG(lt_quantize_row(type, x, out, per) == LT_ERR_INVALID, "%s", lt_dtype_name(type));
            bool untouched = true;
            for (size_t i = 0; i < sizeof out; i++)
                untouched = untouched && out[i] == 0xA5;
            CHECK(untouched);
            x[per - 1] = 0.5f;
        }
    }
    CHECK(lt_quantize_row(LT_Q8_K, x, out, 256) == LT_ERR_UNSUPPORTED);
    CHECK(lt_quantize_row(LT_IQ4_NL, x, out, 32) == LT_ERR_UNSUPPORTED);
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv; /* tests/run.sh passes a reference dir we do not need */
    RUN(test_ggml_fixtures);
    RUN(test_round_trip);
    RUN(test_convert_from_f64);
    RUN(test_refusals);
    return check_done();
}
