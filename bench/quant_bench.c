/*
 * quant_bench.c - throughput of lt_quantize_row against ggml's own
 * quantizer (ggml_quantize_chunk, what llama-quantize runs per chunk; with
 * no importance matrix it is quantize_row_<type>_ref), on the same
 * llama-shaped tensor, all cores, and a byte comparison of the results.
 *
 *   quant_bench [--rows R] [--cols C] [--threads T] [--repeat N] [--check BLOCKS] [TYPE...]
 *
 * Each timing is the best of N runs (3), ours and ggml's alternating.
 *
 * ggml is loaded at run time from $GGML_BASE_LIB (a libggml-base.so built
 * from llama.cpp or ggml, never part of this repository); without it only
 * our side is measured and the peer is reported as skipped.  --check runs
 * BLOCKS super-blocks of adversarial inputs (mixed scales, offsets, ties,
 * sparse, one-signed, extreme magnitudes) through both and counts blocks
 * whose bytes differ.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loratool.h"

typedef size_t (*ggml_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                int64_t n_per_row, const float *imatrix);

struct job {
    lt_dtype type;
    const float *src;
    unsigned char *dst;
    size_t row0, rows, cols, row_bytes;
    ggml_chunk_fn ggml; /* NULL: ours */
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    if (j->ggml) {
        j->ggml(lt_dtype_ggml_id(j->type), j->src, j->dst, (int64_t)(j->row0 * j->cols), (int64_t)j->rows,
                (int64_t)j->cols, NULL);
    } else {
        for (size_t r = j->row0; r < j->row0 + j->rows; r++)
            if (lt_quantize_row(j->type, j->src + r * j->cols, j->dst + r * j->row_bytes, j->cols) != LT_OK) {
                fprintf(stderr, "quant_bench: lt_quantize_row(%s) refused row %zu\n", lt_dtype_name(j->type), r);
                abort();
            }
    }
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Quantize rows x cols with threads workers; returns seconds. */
static double quantize_all(lt_dtype type, const float *src, unsigned char *dst, size_t rows, size_t cols,
                           int threads, ggml_chunk_fn ggml)
{
    pthread_t tid[256];
    struct job jobs[256];
    size_t row_bytes = cols / lt_dtype_block_elems(type) * lt_dtype_block_bytes(type);
    double t0 = now();
    for (int t = 0; t < threads; t++) {
        size_t a = rows * (size_t)t / (size_t)threads, b = rows * (size_t)(t + 1) / (size_t)threads;
        jobs[t] = (struct job){type, src, dst, a, b - a, cols, row_bytes, ggml};
        pthread_create(&tid[t], NULL, run_job, &jobs[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    return now() - t0;
}

static uint64_t rng = 0x5eed;
static double uniform01(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static double normal(void) { return sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01()); }

/* One 256-value block of a randomly chosen hard kind. */
static void hard_block(float *x)
{
    int kind = (int)(uniform01() * 13);
    double scale = pow(10.0, -12.0 + 20.0 * uniform01()), offset = uniform01() < 0.2 ? normal() * 10 : 0;
    for (int i = 0; i < 256; i++) {
        double g = normal(), v;
        switch (kind) {
        case 0: v = g * scale; break;
        case 1: v = fabs(g) * scale; break;
        case 2: v = -fabs(g) * scale; break;
        case 3: v = offset + g * scale * 1e-3; break;
        case 4: v = (double)((int)(uniform01() * 16) - 8) * ldexp(1.0, (int)(uniform01() * 8) - 4); break;
        case 5: v = uniform01() < 0.1 ? g * scale : 0; break;
        case 6: v = g * scale * ldexp(1.0, i / 16 - 8); break;
        case 7: v = (double)(int)(g * 8) / 8.0; break;
        case 8: v = g * 1e-40; break;
        case 9: v = uniform01() < 0.5 ? 1.0 : -1.0; break;
        case 10: v = g * 0.02 + (uniform01() < 0.01 ? normal() * 50 : 0); break;
        case 11: v = (2 * uniform01() - 1) * 3.4e38; break; /* ranges that overflow f32 */
        default: v = g * 0.02; break;
        }
        x[i] = (float)v;
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t rows = 2048, cols = 4096, check_blocks = 0;
    int repeat = 3;
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    lt_dtype types[16];
    int n_types = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
            cols = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--check") && i + 1 < argc)
            check_blocks = strtoul(argv[++i], NULL, 10);
        else if (n_types < 16) {
            for (int t = 1; t < LT_DTYPE_COUNT; t++)
                if (!strcmp(argv[i], lt_dtype_name((lt_dtype)t)))
                    types[n_types++] = (lt_dtype)t;
        }
    }
    if (threads < 1 || threads > 256 || cols % 256 != 0 || rows == 0 || repeat < 1) {
        fprintf(stderr, "quant_bench: bad --threads, --rows, --repeat or --cols (a multiple of 256)\n");
        return 2;
    }
    if (!n_types) {
        const lt_dtype all[] = {LT_Q4_K, LT_Q5_K, LT_Q6_K, LT_Q2_K, LT_Q3_K,
                                LT_Q4_1, LT_Q5_0, LT_Q5_1, LT_Q8_0, LT_Q4_0};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            types[n_types++] = all[i];
    }
    ggml_chunk_fn ggml = NULL;
    const char *lib = getenv("GGML_BASE_LIB");
    if (lib && *lib) {
        void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
        if (h)
            *(void **)&ggml = dlsym(h, "ggml_quantize_chunk");
        if (!ggml)
            printf("peer: cannot load ggml_quantize_chunk from %s: %s\n", lib, dlerror());
    }
    if (!ggml)
        printf("peer: SKIP (set GGML_BASE_LIB to a locally built libggml-base.so to compare)\n");

    if (check_blocks && ggml) {
        float *x = malloc(check_blocks * 256 * sizeof *x);
        unsigned char *a = malloc(check_blocks * 300), *b = malloc(check_blocks * 300);
        for (size_t k = 0; k < check_blocks; k++)
            hard_block(x + k * 256);
        for (int t = 0; t < n_types; t++) {
            size_t bb = lt_dtype_block_bytes(types[t]), per = lt_dtype_block_elems(types[t]);
            size_t nb = check_blocks * 256 / per, bad = 0;
            quantize_all(types[t], x, a, check_blocks, 256, threads, NULL);
            quantize_all(types[t], x, b, check_blocks, 256, threads, ggml);
            for (size_t k = 0; k < nb; k++) {
                if (memcmp(a + k * bb, b + k * bb, bb) != 0 && !bad++ && getenv("QUANT_BENCH_SHOW")) {
                    printf("first differing %s block %zu: input", lt_dtype_name(types[t]), k);
                    for (size_t i = 0; i < per && i < 8; i++)
                        printf(" %a", x[k * per + i]);
                    printf(" ...\n ours  ");
                    for (size_t i = 0; i < bb && i < 16; i++)
                        printf(" %02x", a[k * bb + i]);
                    printf("\n ggml  ");
                    for (size_t i = 0; i < bb && i < 16; i++)
                        printf(" %02x", b[k * bb + i]);
                    printf("\n");
                }
            }
            printf("check %-5s %zu blocks, %zu differ\n", lt_dtype_name(types[t]), nb, bad);
        }
        free(x), free(a), free(b);
    }

    float *src = malloc(rows * cols * sizeof *src);
    unsigned char *ours = malloc(rows * cols * 2), *theirs = malloc(rows * cols * 2); /* >= bytes of any type */
    if (!src || !ours || !theirs)
        return 1;
    for (size_t i = 0; i < rows * cols; i++)
        src[i] = (float)(normal() * 0.02);
    printf("tensor %zu x %zu f32 (%.1f M elements), %d threads, best of %d\n", rows, cols,
           (double)(rows * cols) / 1e6, threads, repeat);
    printf("%-5s %14s %14s %7s %s\n", "type", "loratool el/s", "ggml el/s", "ratio", "bytes");
    memset(ours, 0, rows * cols * 2); /* page faults out of the timings */
    memset(theirs, 0, rows * cols * 2);
    for (int t = 0; t < n_types; t++) {
        /* best of `repeat` runs each, alternating, against a loaded machine */
        double s_ours = 1e30, s_ggml = 1e30;
        for (int r = 0; r < repeat; r++) {
            double s = quantize_all(types[t], src, ours, rows, cols, threads, NULL);
            s_ours = s < s_ours ? s : s_ours;
            if (ggml) {
                s = quantize_all(types[t], src, theirs, rows, cols, threads, ggml);
                s_ggml = s < s_ggml ? s : s_ggml;
            }
        }
        double eps_ours = (double)(rows * cols) / s_ours;
        if (!ggml) {
            printf("%-5s %14.3e %14s %7s\n", lt_dtype_name(types[t]), eps_ours, "-", "-");
            continue;
        }
        uint64_t bytes = 0;
        lt_dtype_nbytes(types[t], rows * cols, &bytes);
        printf("%-5s %14.3e %14.3e %7.2f %s\n", lt_dtype_name(types[t]), eps_ours, (double)(rows * cols) / s_ggml,
               s_ggml / s_ours, memcmp(ours, theirs, bytes) ? "DIFFER" : "identical");
    }
    free(src), free(ours), free(theirs);
    return 0;
}
