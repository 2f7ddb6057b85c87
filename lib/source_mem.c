/* source_mem.c - a tensor source held in memory: the factors an operation
 * computed (resize, combine, extract, a renamed or permuted adapter), and
 * references to tensors of other sources it carries over unchanged
 * (replacement tensors), read through on demand. */
#include <stdlib.h>
#include <string.h>

#include "adapter.h"

typedef struct mem_tensor {
    void *data;           /* owned bytes, or NULL for a reference */
    lt_source *from;      /* borrowed                             */
    size_t from_index;
} mem_tensor;

typedef struct mem_source {
    mem_tensor *tensors;
    size_t n, cap;
} mem_source;

static size_t index_of(const lt_source *src, const lt_tensor_info *t) { return (size_t)(t - src->tensors); }

static lt_status mem_read(lt_source *src, const lt_tensor_info *t, uint64_t off, void *dst, size_t len,
                          lt_error *err)
{
    const mem_tensor *m = &((mem_source *)src->impl)->tensors[index_of(src, t)];
    if (!m->data)
        return lt_source_read(m->from, m->from_index, off, dst, len, err);
    memcpy(dst, (const char *)m->data + off, len);
    return LT_OK;
}

static const void *mem_borrow(lt_source *src, const lt_tensor_info *t, uint64_t off, size_t len)
{
    const mem_tensor *m = &((mem_source *)src->impl)->tensors[index_of(src, t)];
    if (!m->data)
        return lti_source_borrow(m->from, m->from_index, off, len);
    return (const char *)m->data + off;
}

static void mem_release(lt_source *src, const lt_tensor_info *t, const void *p, size_t len)
{
    const mem_tensor *m = &((mem_source *)src->impl)->tensors[index_of(src, t)];
    if (!m->data)
        lti_source_release(m->from, m->from_index, p, len);
}

static void mem_close(void *impl)
{
    mem_source *ms = impl;
    if (!ms)
        return;
    for (size_t i = 0; i < ms->n; i++)
        free(ms->tensors[i].data);
    free(ms->tensors);
    free(ms);
}

static const struct lti_source_ops mem_ops = {
    .read = mem_read, .borrow = mem_borrow, .release = mem_release, .close = mem_close};

lt_source *lti_memsource_new(const char *label, lt_error *err)
{
    lt_source *src = lti_source_new("memory", label, &mem_ops, err);
    if (src && !(src->impl = calloc(1, sizeof(mem_source)))) {
        lt_source_close(src);
        lti_fail_nomem(err, label);
        return NULL;
    }
    return src;
}

static long add(lt_source *src, const char *name, lt_dtype dtype, uint32_t n_dims, const uint64_t *shape,
                mem_tensor entry, lt_error *err)
{
    mem_source *ms = src->impl;
    if (!lti_grow((void **)&ms->tensors, &ms->cap, ms->n + 1, sizeof *ms->tensors)) {
        free(entry.data);
        lti_fail_nomem(err, src->path);
        return -1;
    }
    if (lti_source_add_tensor(src, src->path, name, dtype, n_dims, shape, 0, 0, err) != LT_OK) {
        free(entry.data);
        return -1;
    }
    ms->tensors[ms->n++] = entry;
    return (long)src->n_tensors - 1;
}

long lti_memsource_add(lt_source *src, const char *name, lt_dtype dtype, uint32_t n_dims, const uint64_t *shape,
                       void *data, lt_error *err)
{
    if (!data) {
        lti_fail_nomem(err, src->path);
        return -1;
    }
    return add(src, name, dtype, n_dims, shape, (mem_tensor){.data = data}, err);
}

long lti_memsource_add_ref(lt_source *src, const char *name, lt_source *from, size_t index, lt_error *err)
{
    const lt_tensor_info *t = lt_source_tensor(from, index);
    return add(src, name, t->dtype, t->n_dims, t->shape, (mem_tensor){.from = from, .from_index = index}, err);
}
