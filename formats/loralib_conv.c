/* loralib_conv.c - loralib's ConvLoRA (Conv1d/2d/3d wrappers, layers.py)
 * read against the base conv weight.  loralib merges
 * (B @ A).view(weight.shape) * alpha / r: the matrix product laid over the
 * weight's elements in row-major order, whatever the groups.  That is
 * written here as one product B' A' with the weight's rows (output
 * channels) as rows, so merge, verify and audit treat it as any conv LoRA
 * and, for groups 1, convert writes it as PEFT's conv form.  Each element
 * of B' A' is the same sum over one row of B and one column of A as
 * loralib's, plus exact zeros (spec/loralib.md, "ConvLoRA"). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loralib_conv.h"

static void shape_text(const lt_tensor_info *t, char *buf, size_t cap)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

static lt_status refuse(const char *path, const lt_lora_module *m, const lt_tensor_info *w, const char *why,
                        lt_error *err)
{
    char shape[128];
    shape_text(w, shape, sizeof shape);
    return lti_fail(err, LT_ERR_INVALID, "%s: ConvLoRA layer '%s' on base '%s' %s: %s", path, m->name, w->name, shape,
                   why);
}

/* The layer's sizes, from lora_A [r k, in k], lora_B [out / groups k, r k]
 * and W [out, in / groups, k, ...]. */
typedef struct conv_dims {
    uint64_t k, r, groups, out;
    uint64_t row;                /* elements of one row of W (Lw)             */
    uint64_t a_rows, a_cols;     /* A as stored: [r k, in k]                  */
    uint64_t b_rows;             /* B as stored: [out / groups k, r k]        */
} conv_dims;

static lt_status conv_sizes(const char *path, const lt_lora_module *m, const lt_tensor_info *a,
                            const lt_tensor_info *b, const lt_tensor_info *w, conv_dims *c, lt_error *err)
{
    char why[256];
    if (w->n_dims < 3 || w->n_dims > 5)
        return refuse(path, m, w, "loralib wraps Conv1d, Conv2d and Conv3d only", err);
    c->k = w->shape[2];
    for (uint32_t d = 3; d < w->n_dims; d++)
        if (w->shape[d] != c->k)
            return refuse(path, m, w, "the kernel is not square (loralib's ConvLoRA takes one int kernel_size)", err);
    c->out = w->shape[0];
    uint64_t per_group_in = w->shape[1];
    c->a_rows = a->shape[0], c->a_cols = a->shape[1], c->b_rows = b->shape[0];
    if (c->k == 0 || c->out == 0 || per_group_in == 0)
        return refuse(path, m, w, "the weight is empty", err);
    if (c->a_cols % c->k || (c->a_cols / c->k) % per_group_in) {
        snprintf(why, sizeof why, "lora_A has %llu columns, not in_channels x kernel %llu with in_channels a multiple "
                 "of %llu", (unsigned long long)c->a_cols, (unsigned long long)c->k, (unsigned long long)per_group_in);
        return refuse(path, m, w, why, err);
    }
    c->groups = c->a_cols / c->k / per_group_in;
    if (c->a_rows % c->k) {
        snprintf(why, sizeof why, "lora_A has %llu rows, not r x kernel %llu", (unsigned long long)c->a_rows,
                 (unsigned long long)c->k);
        return refuse(path, m, w, why, err);
    }
    c->r = c->a_rows / c->k;
    uint64_t want_b = 0;
    if (c->out % c->groups || !lti_mul_u64(c->out / c->groups, c->k, &want_b) || want_b != c->b_rows) {
        snprintf(why, sizeof why, "lora_B has %llu rows; %llu output channels in %llu group(s) with kernel %llu "
                 "want out / groups x kernel", (unsigned long long)c->b_rows, (unsigned long long)c->out,
                 (unsigned long long)c->groups, (unsigned long long)c->k);
        return refuse(path, m, w, why, err);
    }
    /* loralib's .view needs B @ A to have the weight's element count:
     * (out / groups) k x in k against out (in / groups) k^(dims - 2), so
     * Conv1d and Conv3d only with kernel_size 1 (loralib itself fails) */
    uint64_t product = 0;
    if (!lti_mul_u64(c->b_rows, c->a_cols, &product) || product != w->n_elems || w->n_elems > INT64_MAX / 2) {
        snprintf(why, sizeof why, "(B @ A) has %llu x %llu elements, the weight %llu: loralib's view of one as the "
                 "other fails (Conv1d and Conv3d need kernel_size 1)", (unsigned long long)c->b_rows,
                 (unsigned long long)c->a_cols, (unsigned long long)w->n_elems);
        return refuse(path, m, w, why, err);
    }
    c->row = w->n_elems / c->out;
    return LT_OK;
}

/* Bounds of the conv form, so a hostile or huge file is refused rather
 * than expanded without limit: (row, product row) pairs, and elements of
 * A' and B' together.  A groups-1 Conv2d of a UNet (1280 channels, 3x3,
 * r 8) needs about 10^6 elements; grouped convs need more. */
#define CONV_MAX_PAIRS ((uint64_t)1 << 24)
#define CONV_MAX_ELEMS ((uint64_t)1 << 28)

static int by_shift_descending(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a < b) - (a > b);
}

/* The offsets at which rows of B @ A ([b_rows, a_cols], row-major) start
 * relative to the rows of W ([out, row]): for W row o and the product rows
 * p it overlaps, shift = o row - p a_cols, so W[o, f] = (B @ A)[p, f + shift].
 * Distinct shifts, largest first (with groups 1: 0, -in k, -2 in k, ...,
 * so that B' is B's bytes); *n_shifts of them, or LT_ERR_UNSUPPORTED past
 * the bounds above. */
static lt_status find_shifts(const conv_dims *c, int64_t **out, size_t *n_shifts, const char *path,
                             const lt_lora_module *m, lt_error *err)
{
    uint64_t pairs = 0;
    for (uint64_t o = 0; o < c->out && pairs <= CONV_MAX_PAIRS; o++)
        pairs += ((o + 1) * c->row - 1) / c->a_cols - o * c->row / c->a_cols + 1;
    if (pairs > CONV_MAX_PAIRS || c->out > CONV_MAX_ELEMS / c->a_rows)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: ConvLoRA layer '%s': its conv form is too large", path, m->name);
    int64_t *list = malloc((size_t)pairs * sizeof *list + 1);
    if (!list)
        return lti_fail_nomem(err, path);
    size_t n = 0;
    for (uint64_t o = 0; o < c->out; o++) {
        uint64_t start = o * c->row, end = start + c->row;
        for (uint64_t p = start / c->a_cols; p <= (end - 1) / c->a_cols; p++)
            list[n++] = (int64_t)start - (int64_t)(p * c->a_cols);
    }
    qsort(list, n, sizeof *list, by_shift_descending);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (unique == 0 || list[unique - 1] != list[i])
            list[unique++] = list[i];
    *out = list;
    *n_shifts = unique;
    return LT_OK;
}

/* The index of SHIFT in the descending LIST (present by construction). */
static size_t shift_index(const int64_t *list, size_t n, int64_t shift)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (list[mid] >= shift)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

static lt_status read_all(lt_source *mem, long index, unsigned char **out, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(mem, (size_t)index);
    if (t->n_bytes > SIZE_MAX / 2)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor '%s' is too large", lt_source_path(mem), t->name);
    *out = malloc((size_t)t->n_bytes + 1);
    if (!*out)
        return lti_fail_nomem(err, lt_source_path(mem));
    return lt_source_read(mem, (size_t)index, 0, *out, (size_t)t->n_bytes, err);
}

/* A' [rank, row]: block j = A with its columns moved left by shifts[j]
 * (right when negative), zero where no column of A lands. */
static void build_a(const conv_dims *c, const int64_t *shifts, size_t n_shifts, const unsigned char *a, size_t es,
                    unsigned char *a2)
{
    for (size_t j = 0; j < n_shifts; j++) {
        int64_t s = shifts[j];
        int64_t lo = s < 0 ? -s : 0, hi = (int64_t)c->a_cols - s;
        if (hi > (int64_t)c->row)
            hi = (int64_t)c->row;
        if (hi <= lo)
            continue;
        for (uint64_t q = 0; q < c->a_rows; q++) {
            uint64_t row = j * c->a_rows + q;
            memcpy(a2 + (row * c->row + (uint64_t)lo) * es, a + (q * c->a_cols + (uint64_t)(lo + s)) * es,
                   (size_t)(hi - lo) * es);
        }
    }
}

/* B' [out, rank]: row o holds, in the block of each shift, the row of B
 * that the shift pairs with o. */
static void build_b(const conv_dims *c, const int64_t *shifts, size_t n_shifts, const unsigned char *b, size_t es,
                    unsigned char *b2)
{
    uint64_t rank = n_shifts * c->a_rows;
    for (uint64_t o = 0; o < c->out; o++) {
        uint64_t start = o * c->row, end = start + c->row;
        for (uint64_t p = start / c->a_cols; p <= (end - 1) / c->a_cols; p++) {
            size_t j = shift_index(shifts, n_shifts, (int64_t)start - (int64_t)(p * c->a_cols));
            memcpy(b2 + (o * rank + j * c->a_rows) * es, b + p * c->a_rows * es, (size_t)(c->a_rows * es));
        }
    }
}

lt_status lti_loralib_conv_expand(lt_source *mem, lt_lora_module *m, const lt_tensor_info *w, double alpha,
                                  lt_error *err)
{
    const char *path = lt_source_path(mem);
    const lt_tensor_info a = *lt_source_tensor(mem, (size_t)m->tensor_a);
    const lt_tensor_info b = *lt_source_tensor(mem, (size_t)m->tensor_b);
    conv_dims c = {0};
    lt_status s = conv_sizes(path, m, &a, &b, w, &c, err);
    if (s != LT_OK)
        return s;
    int64_t *shifts = NULL;
    size_t n_shifts = 0;
    if ((s = find_shifts(&c, &shifts, &n_shifts, path, m, err)) != LT_OK)
        return s;
    size_t es_a = lt_dtype_block_bytes(a.dtype), es_b = lt_dtype_block_bytes(b.dtype);
    uint64_t rank = 0, a_elems = 0, b_elems = 0, a_bytes = 0, b_bytes = 0;
    if (!lti_mul_u64(n_shifts, c.a_rows, &rank) || rank > 0xFFFFFFFFu || !lti_mul_u64(rank, c.row, &a_elems) ||
        !lti_mul_u64(c.out, rank, &b_elems) || !lti_mul_u64(a_elems, es_a, &a_bytes) ||
        !lti_mul_u64(b_elems, es_b, &b_bytes) || a_elems > CONV_MAX_ELEMS - b_elems || b_elems > CONV_MAX_ELEMS) {
        free(shifts);
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: ConvLoRA layer '%s': its conv form (rank %zu x %llu) is too large",
                       path, m->name, n_shifts, (unsigned long long)c.a_rows);
    }
    unsigned char *a_in = NULL, *b_in = NULL;
    unsigned char *a2 = calloc((size_t)a_bytes + 1, 1), *b2 = calloc((size_t)b_bytes + 1, 1); /* zero bits: +0.0 */
    s = a2 && b2 ? read_all(mem, m->tensor_a, &a_in, err) : lti_fail_nomem(err, path);
    if (s == LT_OK)
        s = read_all(mem, m->tensor_b, &b_in, err);
    if (s == LT_OK) {
        build_a(&c, shifts, n_shifts, a_in, es_a, a2);
        build_b(&c, shifts, n_shifts, b_in, es_b, b2);
    }
    free(a_in);
    free(b_in);
    free(shifts);
    if (s != LT_OK) {
        free(a2);
        free(b2);
        return s;
    }
    /* A' [rank, in / groups, kernel...], B' [out, rank, 1...]: PEFT's shapes */
    uint64_t a_shape[LT_MAX_DIMS] = {rank}, b_shape[LT_MAX_DIMS] = {c.out, rank};
    for (uint32_t d = 1; d < w->n_dims; d++)
        a_shape[d] = w->shape[d];
    for (uint32_t d = 2; d < w->n_dims; d++)
        b_shape[d] = 1;
    char *a_name = lti_asprintf("%s.lora_A.conv", m->name), *b_name = lti_asprintf("%s.lora_B.conv", m->name);
    long ia = -1, ib = -1;
    if (!a_name || !b_name) {
        free(a2);
        free(b2);
        s = lti_fail_nomem(err, path);
    } else if ((ia = lti_memsource_add(mem, a_name, a.dtype, w->n_dims, a_shape, a2, err)) < 0) {
        free(b2);
        s = err ? err->status : LT_ERR_NOMEM;
    } else if ((ib = lti_memsource_add(mem, b_name, b.dtype, w->n_dims, b_shape, b2, err)) < 0) {
        s = err ? err->status : LT_ERR_NOMEM;
    }
    free(a_name);
    free(b_name);
    if (s != LT_OK)
        return s;
    m->kind = LT_MODULE_CONV;
    m->tensor_a = ia;
    m->tensor_b = ib;
    m->rank = (uint32_t)rank;
    m->out_features = c.out;
    m->in_features = c.row;
    m->conv_groups = (uint32_t)(c.groups > 0xFFFFFFFFu ? 0xFFFFFFFFu : c.groups);
    m->fan_in_fan_out = false;
    m->scale = alpha / (double)c.r;
    m->alpha = alpha * (double)(rank / c.r);
    if (!isnan(alpha) && m->alpha / (double)m->rank != m->scale)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: ConvLoRA layer '%s': alpha %.17g x %llu / rank %u does not give the scale alpha / r "
                       "exactly",
                       path, m->name, alpha, (unsigned long long)(rank / c.r), m->rank);
    return LT_OK;
}
