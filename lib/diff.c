/* diff.c - tensor-by-tensor comparison of two weight files (lt_diff).
 *
 * Both tensors are streamed in chunks of whole rows, converted to float64
 * (quantized blocks dequantized as ggml does) and compared as numbers, so
 * a dtype change alone is no difference.  Same-dtype float pairs also get
 * the distance in steps of that dtype (ulps).  Integer and bool tensors
 * are compared byte for byte when their dtypes agree.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "verify_internal.h"

#define CHUNK_ELEMS (1u << 20)
#define NAME_MAX_LEN 512

const char *lt_diff_status_name(lt_diff_status s)
{
    static const char *const names[] = {"identical", "close", "different", "shape", "only_a", "only_b"};
    return (unsigned)s < sizeof names / sizeof *names ? names[s] : "?";
}

void lt_diff_report_free(lt_diff_report *report)
{
    if (!report)
        return;
    for (size_t i = 0; i < report->n_entries; i++) {
        free(report->entries[i].name);
        free(report->entries[i].name_b);
    }
    free(report->entries);
    memset(report, 0, sizeof *report);
}

/* Position of a float's bit pattern on the number line, so that the
 * difference of two positions counts the representable values between
 * them (+0 and -0 both sit at 0). */
static int64_t ordered_bits(lt_dtype t, const unsigned char *p)
{
    uint64_t bits = 0, sign_bit;
    unsigned size = lt_dtype_block_bytes(t);
    for (unsigned k = 0; k < size; k++)
        bits |= (uint64_t)p[k] << (8 * k);
    sign_bit = (uint64_t)1 << (8 * size - 1);
    int64_t magnitude = (int64_t)(bits & (sign_bit - 1));
    return bits & sign_bit ? -magnitude : magnitude;
}

static bool ulp_type(lt_dtype t)
{
    return t == LT_F16 || t == LT_BF16 || t == LT_F32 || t == LT_F64 || t == LT_F8_E4M3 || t == LT_F8_E5M2;
}

typedef struct diff_acc {
    double dot, norm_a, norm_b;
    bool cos_undefined;
} diff_acc;

static void compare_values(lt_diff_entry *e, diff_acc *acc, const lt_diff_options *opts, const double *va,
                           const double *vb, const unsigned char *ra, const unsigned char *rb, uint64_t n)
{
    for (uint64_t j = 0; j < n; j++) {
        double a = va[j], b = vb[j];
        if (isnan(a) || isnan(b)) {
            if (!(isnan(a) && isnan(b))) {
                e->nan_mismatch = true;
                e->n_beyond++;
            }
            acc->cos_undefined = true;
            continue;
        }
        if (isinf(a) || isinf(b)) {
            acc->cos_undefined = true;
            if (a != b)
                e->n_beyond++, e->max_abs = INFINITY, e->max_rel = INFINITY;
            continue;
        }
        double d = fabs(a - b), big = fmax(fabs(a), fabs(b));
        acc->dot += a * b, acc->norm_a += a * a, acc->norm_b += b * b;
        if (d == 0)
            continue;
        if (d > e->max_abs)
            e->max_abs = d;
        if (d / big > e->max_rel)
            e->max_rel = d / big;
        if (!(d <= opts->atol + opts->rtol * fabs(b)))
            e->n_beyond++;
        if (e->status == LT_DIFF_IDENTICAL)
            e->status = LT_DIFF_CLOSE;
        if (e->has_ulp) {
            unsigned size = lt_dtype_block_bytes(e->dtype_a);
            int64_t pa = ordered_bits(e->dtype_a, ra + j * size), pb = ordered_bits(e->dtype_a, rb + j * size);
            uint64_t u = pa > pb ? (uint64_t)pa - (uint64_t)pb : (uint64_t)pb - (uint64_t)pa;
            if (u > e->max_ulp)
                e->max_ulp = u;
        }
    }
}

typedef struct diff_bufs {
    unsigned char *raw_a, *raw_b;
    double *va, *vb;
} diff_bufs;

static lt_status compare_tensor(lt_source *a, size_t ia, lt_source *b, size_t ib, const uint64_t *inv,
                                const lt_diff_options *opts, lt_diff_entry *e, diff_bufs *buf, lt_error *err)
{
    const lt_tensor_info *ta = lt_source_tensor(a, ia), *tb = lt_source_tensor(b, ib);
    /* rows of a permuted vector (a Q/K bias) are single elements */
    uint64_t rows = ta->n_dims >= 2 || inv ? ta->shape[0] : 1;
    uint64_t cols = rows ? ta->n_elems / rows : 0;
    bool numeric = lt_dtype_is_numeric(ta->dtype) && lt_dtype_is_numeric(tb->dtype);
    e->n_elems = ta->n_elems;
    e->status = LT_DIFF_IDENTICAL;
    e->has_ulp = ta->dtype == tb->dtype && ulp_type(ta->dtype);
    if (!numeric && ta->dtype != tb->dtype) {
        e->not_comparable = true;
        e->status = LT_DIFF_DIFFERENT;
        e->n_beyond = ta->n_elems;
        e->cosine = NAN;
        return LT_OK;
    }
    uint32_t block = lt_dtype_block_elems(ta->dtype) > lt_dtype_block_elems(tb->dtype)
                         ? lt_dtype_block_elems(ta->dtype) : lt_dtype_block_elems(tb->dtype);
    if (cols % block) {
        if (inv)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "diff: tensor '%s': permuted rows are not whole %s blocks",
                           ta->name, lt_dtype_name(block == lt_dtype_block_elems(ta->dtype) ? ta->dtype : tb->dtype));
        rows = 1, cols = ta->n_elems; /* a row that is not whole blocks: one piece */
    }
    uint64_t row_a = cols / lt_dtype_block_elems(ta->dtype) * lt_dtype_block_bytes(ta->dtype);
    uint64_t row_b = cols / lt_dtype_block_elems(tb->dtype) * lt_dtype_block_bytes(tb->dtype);
    uint64_t per = cols ? (CHUNK_ELEMS / cols ? CHUNK_ELEMS / cols : 1) : rows;
    diff_acc acc = {0};
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
        uint64_t n = rows - r0 < per ? rows - r0 : per, elems = n * cols;
        size_t need_a = (size_t)(n * row_a), need_b = (size_t)(n * row_b);
        unsigned char *ra = realloc(buf->raw_a, need_a + 1), *rb;
        if (ra)
            buf->raw_a = ra;
        rb = realloc(buf->raw_b, need_b + 1);
        if (rb)
            buf->raw_b = rb;
        double *va = realloc(buf->va, (size_t)elems * sizeof *va + 1), *vb;
        if (va)
            buf->va = va;
        vb = realloc(buf->vb, (size_t)elems * sizeof *vb + 1);
        if (vb)
            buf->vb = vb;
        if (!ra || !rb || !va || !vb)
            return lti_fail_nomem(err, "diff");
        lt_status s = lt_source_read(a, ia, r0 * row_a, ra, need_a, err);
        if (s == LT_OK)
            s = verify_read_rows(b, ib, r0, n, row_b, inv, rb, err);
        if (s != LT_OK)
            return s;
        if (!numeric) { /* same integer dtype: bytes */
            if (memcmp(ra, rb, need_a)) {
                e->status = LT_DIFF_DIFFERENT;
                e->n_beyond++;
            }
            continue;
        }
        if (lt_convert_to_f64(ta->dtype, ra, va, (size_t)elems) != LT_OK ||
            lt_convert_to_f64(tb->dtype, rb, vb, (size_t)elems) != LT_OK)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "diff: tensor '%s': cannot read %s or %s as numbers", ta->name,
                           lt_dtype_name(ta->dtype), lt_dtype_name(tb->dtype));
        compare_values(e, &acc, opts, va, vb, ra, rb, elems);
    }
    if (!numeric) {
        e->cosine = NAN;
        return LT_OK;
    }
    e->cosine = acc.cos_undefined || acc.norm_a == 0 || acc.norm_b == 0
                    ? NAN : fmax(-1.0, fmin(1.0, acc.dot / (sqrt(acc.norm_a) * sqrt(acc.norm_b))));
    if (e->n_beyond)
        e->status = LT_DIFF_DIFFERENT;
    return LT_OK;
}

static lt_diff_entry *new_entry(lt_diff_report *r, size_t *cap)
{
    if (!lti_grow((void **)&r->entries, cap, r->n_entries + 1, sizeof *r->entries))
        return NULL;
    lt_diff_entry *e = &r->entries[r->n_entries++];
    memset(e, 0, sizeof *e);
    e->cosine = NAN;
    return e;
}

static void set_side(lt_diff_entry *e, const lt_tensor_info *t, bool side_b)
{
    if (side_b) {
        e->dtype_b = t->dtype, e->n_dims_b = t->n_dims;
        memcpy(e->shape_b, t->shape, sizeof e->shape_b);
    } else {
        e->dtype_a = t->dtype, e->n_dims_a = t->n_dims;
        memcpy(e->shape_a, t->shape, sizeof e->shape_a);
    }
}

lt_status lt_diff(lt_source *a, lt_source *b, const lt_diff_options *opts, lt_diff_report *report,
                  lt_error *err)
{
    memset(report, 0, sizeof *report);
    lt_diff_options defaults = {0};
    if (!opts)
        opts = &defaults;
    if (!(opts->atol >= 0) || !(opts->rtol >= 0))
        return lti_fail(err, LT_ERR_USAGE, "diff: tolerances must be non-negative numbers");
    size_t nb = lt_source_tensor_count(b), cap = 0;
    bool *matched = calloc(nb + 1, sizeof *matched);
    diff_bufs buf = {0};
    uint64_t *perm = NULL, *inv = NULL;
    char mapped[NAME_MAX_LEN];
    lt_status s = matched ? LT_OK : lti_fail_nomem(err, "diff");
    for (size_t i = 0; s == LT_OK && i < lt_source_tensor_count(a); i++) {
        const lt_tensor_info *ta = lt_source_tensor(a, i);
        const char *name_b = ta->name;
        int how = 1;
        if (opts->map) {
            how = opts->map->map(opts->map->ctx, ta->name, mapped, sizeof mapped);
            name_b = how > 0 ? mapped : ta->name;
        }
        long jb = how >= 0 ? lt_source_find(b, name_b) : -1;
        lt_diff_entry *e = new_entry(report, &cap);
        if (!e || !(e->name = lti_strdup(ta->name)) ||
            (strcmp(name_b, ta->name) && !(e->name_b = lti_strdup(name_b)))) {
            s = lti_fail_nomem(err, "diff");
            break;
        }
        set_side(e, ta, false);
        e->n_elems = ta->n_elems;
        if (jb < 0) {
            e->status = LT_DIFF_ONLY_A;
            continue;
        }
        matched[jb] = true;
        const lt_tensor_info *tb = lt_source_tensor(b, (size_t)jb);
        set_side(e, tb, true);
        if (!verify_same_shape(ta, tb)) {
            e->status = LT_DIFF_SHAPE;
            continue;
        }
        bool permuted = false;
        uint64_t rows = ta->n_dims >= 2 ? ta->shape[0] : 1;
        if (opts->map && opts->map->rows && ta->n_dims >= 1) {
            rows = ta->shape[0];
            free(perm);
            free(inv);
            perm = malloc((size_t)rows * sizeof *perm + 1);
            inv = malloc((size_t)rows * sizeof *inv + 1);
            if (!perm || !inv) {
                s = lti_fail_nomem(err, "diff");
                break;
            }
            permuted = opts->map->rows(opts->map->ctx, ta->name, rows, perm);
            for (uint64_t j = 0; permuted && j < rows; j++) {
                if (perm[j] >= rows) {
                    s = lti_fail(err, LT_ERR_INVALID, "diff: row map of '%s' out of range", ta->name);
                    break;
                }
                inv[perm[j]] = j;
            }
        }
        if (s == LT_OK)
            s = compare_tensor(a, i, b, (size_t)jb, permuted ? inv : NULL, opts, e, &buf, err);
    }
    for (size_t j = 0; s == LT_OK && j < nb; j++) {
        if (matched[j])
            continue;
        const lt_tensor_info *tb = lt_source_tensor(b, j);
        lt_diff_entry *e = new_entry(report, &cap);
        if (!e || !(e->name = lti_strdup(tb->name))) {
            s = lti_fail_nomem(err, "diff");
            break;
        }
        set_side(e, tb, true);
        e->n_elems = tb->n_elems;
        e->status = LT_DIFF_ONLY_B;
    }
    free(matched);
    free(perm);
    free(inv);
    free(buf.raw_a);
    free(buf.raw_b);
    free(buf.va);
    free(buf.vb);
    if (s != LT_OK) {
        lt_diff_report_free(report);
        return s;
    }
    for (size_t i = 0; i < report->n_entries; i++)
        report->counts[report->entries[i].status]++;
    return LT_OK;
}
