/*
 * make_ggml_quants.c - writes the inputs and ggml's own quantization of them
 * (testdata/gguf_quants/ggml_*).  Built against a local build of ggml's
 * libggml-base (see README.md); not part of loratool's build.
 *
 *   make_ggml_quants OUTDIR
 *
 * Writes OUTDIR/ggml_input.f32 (N_BLOCKS x 256 float32) and, for each type,
 * OUTDIR/ggml_<TYPE>.blocks = quantize_row_<type>_ref(input).  The inputs
 * are chosen to reach every branch of the reference quantizers: all-zero,
 * constant, below/above GROUP_MAX_EPS, f16-underflowing and overflowing
 * scales, f32 subnormals, ranges that overflow f32, one-signed blocks,
 * exact ties, outliers, offsets, then seeded random normals at many
 * scales.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ggml's exported reference quantizers (ggml-quants.h); the block pointer
 * is declared void * here so that ggml's headers are not needed. */
typedef void (*ref_fn)(const float *x, void *y, int64_t k);
void quantize_row_q4_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void quantize_row_q2_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q3_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);

#define QK_K 256
#define N_SPECIAL 21
#define N_RANDOM 43
#define N_BLOCKS (N_SPECIAL + N_RANDOM)

static uint64_t rng_state = 0x6c6f7261746f6f6cULL; /* fixed seed */

static uint64_t next_u64(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double uniform01(void) { return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0; }

static double normal(void) /* Box-Muller, one value per call */
{
    return sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01());
}

static void special_block(int b, float *x)
{
    for (int i = 0; i < QK_K; i++) {
        double g = normal();
        float v;
        switch (b) {
        case 0: v = 0.0f; break;                                 /* all zero */
        case 1: v = 0.5f; break;                                 /* constant > 0 */
        case 2: v = -3.0f; break;                                /* constant < 0 */
        case 3: v = (float)(g * 1e-16); break;                   /* below GROUP_MAX_EPS */
        case 4: v = (float)(g * 1e-9); break;                    /* f16 scales underflow */
        case 5: v = (float)(g * 1e-6); break;                    /* subnormal f16 scales */
        case 6: v = (float)(g * 1e3); break;                     /* large */
        case 7: v = (float)(g * 1e7); break;                     /* f16 scales overflow */
        case 8: v = (float)(-fabs(g) * 0.05); break;             /* negative only */
        case 9: v = (float)(fabs(g) * 0.05); break;              /* positive only */
        case 10: v = (float)((i % 16) - 8) * 0.25f; break;       /* exact grid: ties */
        case 11: v = (float)((i * 7) % 33 - 16) / 32.0f; break;  /* ties at other steps */
        case 12: v = (float)(g * 0.01) + (i == 77 ? 5.0f : 0.0f); break; /* one outlier */
        case 13: v = (float)(g * 0.01) * ldexpf(1.0f, i / 16 - 8); break; /* sub-block scales 2^-8..2^7 */
        case 14: v = (i % 37 == 0) ? (float)g : 0.0f; break;     /* sparse */
        case 15: v = (float)(2.0 * uniform01() - 1.0); break;    /* uniform */
        case 16: v = 100.0f + (float)(g * 0.01); break;          /* offset, small range */
        case 17: v = (float)(g * 1e-40); break;                  /* f32 subnormals */
        case 18: v = (i & 1) ? 1.0f : -1.0f; break;              /* alternating +-1 */
        case 19: v = (float)((2.0 * uniform01() - 1.0) * 3.4e38); break; /* ranges overflow f32 */
        default: v = (i % 32 == 5) ? -2.0f : (i % 32 == 9) ? 2.0f : (float)(g * 0.1); break; /* +-max tie */
        }
        x[i] = v;
    }
}

static int write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    static float x[N_BLOCKS * QK_K];
    for (int b = 0; b < N_SPECIAL; b++)
        special_block(b, x + b * QK_K);
    for (int b = N_SPECIAL; b < N_BLOCKS; b++) {
        /* random normals, scale 10^(-4..2) spread over the blocks */
        double scale = pow(10.0, -4.0 + 6.0 * (b - N_SPECIAL) / (N_RANDOM - 1));
        for (int i = 0; i < QK_K; i++)
            x[b * QK_K + i] = (float)(normal() * scale);
    }
    static const struct { const char *name; ref_fn fn; size_t block_elems, block_bytes; } types[] = {
        {"Q4_0", quantize_row_q4_0_ref, 32, 18},  {"Q4_1", quantize_row_q4_1_ref, 32, 20},
        {"Q5_0", quantize_row_q5_0_ref, 32, 22},  {"Q5_1", quantize_row_q5_1_ref, 32, 24},
        {"Q8_0", quantize_row_q8_0_ref, 32, 34},  {"Q2_K", quantize_row_q2_K_ref, 256, 84},
        {"Q3_K", quantize_row_q3_K_ref, 256, 110}, {"Q4_K", quantize_row_q4_K_ref, 256, 144},
        {"Q5_K", quantize_row_q5_K_ref, 256, 176}, {"Q6_K", quantize_row_q6_K_ref, 256, 210},
    };
    if (write_file(argv[1], "ggml_input.f32", x, sizeof x))
        return 1;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t n = (size_t)N_BLOCKS * QK_K, bytes = n / types[t].block_elems * types[t].block_bytes;
        unsigned char *out = calloc(1, bytes);
        char name[64];
        if (!out)
            return 1;
        types[t].fn(x, out, (int64_t)n);
        snprintf(name, sizeof name, "ggml_%s.blocks", types[t].name);
        if (write_file(argv[1], name, out, bytes))
            return 1;
        free(out);
    }
    return 0;
}
