/* merged_linear.c - a merged layer (loralib's MergedLinear, PEFT <= 0.3's
 * enable_lora) as one LoRA on the fused weight: A as stored (the enabled
 * groups' factors stacked), B block-diagonal with zero rows for the
 * disabled groups.  B A then equals loralib's zero_pad(merge_AB()) element
 * for element (each entry is the same sum over one group's r products,
 * plus exact zeros), so merge, convert and audit need no special case. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "merged_linear.h"

lt_source *lti_adapter_wrap_source(lt_adapter *ad, lt_error *err)
{
    lt_source *file = lt_adapter_source(ad);
    lt_source *mem = lti_memsource_new(lt_source_path(file), err);
    if (!mem)
        return NULL;
    for (size_t i = 0; i < lt_source_tensor_count(file); i++) {
        if (lti_memsource_add_ref(mem, lt_source_tensor(file, i)->name, file, i, err) < 0) {
            lt_source_close(mem);
            return NULL;
        }
    }
    mem->format = file->format;
    /* MEM owns FILE from now on: the adapter lets go of it untouched */
    lti_memsource_own(mem, lti_adapter_take_source(ad));
    lti_adapter_set_source(ad, mem);
    return mem;
}

static lt_status fail_shape(const char *path, const lt_lora_module *m, const char *what, lt_error *err)
{
    return lti_fail(err, LT_ERR_INVALID, "%s: merged layer '%s': %s", path, m->name, what);
}

lt_status lti_merged_linear_expand(lt_adapter *ad, lt_source *mem, lt_lora_module *m,
                                   const lti_merged_groups *g, lt_error *err)
{
    const char *path = lt_source_path(mem);
    const lt_tensor_info a = *lt_source_tensor(mem, (size_t)m->tensor_a);
    const lt_tensor_info b = *lt_source_tensor(mem, (size_t)m->tensor_b);
    if (a.n_dims != 2 || !(b.n_dims == 2 || (b.n_dims == 3 && b.shape[2] == 1)))
        return fail_shape(path, m, "lora_A must be 2-D and lora_B 2-D or [rows, cols, 1]", err);
    uint64_t rank = a.shape[0], in = a.shape[1], rows = b.shape[0], cols = b.shape[1];
    size_t enabled = 0;
    for (size_t i = 0; i < g->n_groups; i++)
        enabled += g->mask[i];
    if (enabled == 0 || cols == 0 || g->r == 0 || rank % cols != 0 || rank > 0xFFFFFFFFu ||
        rank % g->r != 0 || rows % enabled != 0 || rows % (rank / cols) != 0)
        return lti_fail(err, LT_ERR_INVALID,
                       "%s: merged layer '%s': lora_A [%llu, %llu] and lora_B [%llu, %llu] do not make %zu "
                       "enabled group(s) of rank %u",
                       path, m->name, (unsigned long long)rank, (unsigned long long)in,
                       (unsigned long long)rows, (unsigned long long)cols, enabled, g->r);
    uint64_t blocks = rank / cols;           /* diagonal blocks of B (conv groups) */
    uint64_t group_rows = rows / enabled;    /* rows of one group of the fused weight */
    uint64_t out = 0;
    if (!lti_mul_u64(group_rows, g->n_groups, &out))
        return fail_shape(path, m, "shape overflows", err);
    uint32_t esize = lt_dtype_block_bytes(b.dtype);
    uint64_t n_out = 0, n_bytes = 0;
    if (!lt_dtype_is_float(b.dtype) || !lti_mul_u64(out, rank, &n_out) || !lti_mul_u64(n_out, esize, &n_bytes) ||
        n_bytes > SIZE_MAX / 2)
        return fail_shape(path, m, "lora_B is too large or not a float tensor", err);
    uint64_t b_bytes = 0;
    if (!lti_mul_u64(rows * cols, esize, &b_bytes) || b_bytes != b.n_bytes)
        return fail_shape(path, m, "lora_B size does not match its shape", err);

    unsigned char *stored = malloc(b.n_bytes ? (size_t)b.n_bytes : 1);
    unsigned char *full = calloc((size_t)n_bytes ? (size_t)n_bytes : 1, 1); /* zero bits are +0.0 */
    if (!stored || !full) {
        free(stored);
        free(full);
        return lti_fail_nomem(err, path);
    }
    lt_status s = lt_source_read(mem, (size_t)m->tensor_b, 0, stored, (size_t)b.n_bytes, err);
    if (s != LT_OK) {
        free(stored);
        free(full);
        return s;
    }
    /* row i of the stored B: diagonal block i / (rows / blocks) (columns
     * [block * cols, +cols) of the full B); fused row: the (i / group_rows)-th
     * enabled group, offset i % group_rows */
    uint64_t block_rows = rows / blocks;
    uint64_t i = 0;
    for (size_t grp = 0; grp < g->n_groups; grp++) {
        if (!g->mask[grp])
            continue;
        for (uint64_t k = 0; k < group_rows; k++, i++) {
            uint64_t fused_row = grp * group_rows + k;
            uint64_t block = i / block_rows;
            memcpy(full + ((fused_row * rank) + block * cols) * esize, stored + i * cols * esize,
                   (size_t)(cols * esize));
        }
    }
    free(stored);
    char *name = lti_asprintf("%s.lora_B.fused", m->name);
    uint64_t shape[2] = {out, rank};
    long index = name ? lti_memsource_add(mem, name, b.dtype, 2, shape, full, err)
                      : (free(full), lti_fail_nomem(err, path), -1L);
    free(name);
    if (index < 0)
        return err ? err->status : LT_ERR_NOMEM;

    double per_group = (double)(rank / g->r);
    m->kind = LT_MODULE_LINEAR;
    m->tensor_b = index;
    m->rank = (uint32_t)rank;
    m->out_features = out;
    m->in_features = in;
    m->scale = g->alpha / (double)g->r;
    m->alpha = g->alpha * per_group;
    if (!isnan(g->alpha) && m->alpha / (double)m->rank != m->scale)
        return lti_fail(err, LT_ERR_UNSUPPORTED,
                       "%s: merged layer '%s': alpha %.17g x %.0f groups / rank %u does not give the scale "
                       "alpha / r exactly",
                       path, m->name, g->alpha, per_group, m->rank);
    (void)ad;
    return LT_OK;
}
