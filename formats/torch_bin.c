/*
 * torch_bin.c - the legacy PyTorch `torch.save` file (adapter_model.bin),
 * read without Python and without executing anything.
 *
 * Layout (DESIGN.md section 5): a ZIP archive holding
 *
 *   <root>/data.pkl      a pickle (protocol 2) of an OrderedDict
 *                        name -> torch._utils._rebuild_tensor_v2(...)
 *   <root>/data/<key>    the raw little-endian bytes of storage <key>
 *   <root>/version       a decimal number
 *   <root>/byteorder     "little" or "big" (absent in older files: little)
 *
 * The ZIP is parsed from its end: End Of Central Directory (searched in
 * the last 64 KiB + 22 bytes), the ZIP64 locator and record when a field
 * is saturated, the central directory, then each member's local header for
 * where its data starts.  Storage members must be STORED (method 0) so a
 * tensor is read in place; data.pkl may be deflated (inflated with zlib,
 * at most 64 MiB).
 *
 * The pickle is run by a small stack machine that knows only the opcodes
 * torch.save emits (and a few neighbours) and only the globals
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter and the torch.*Storage classes; it
 * builds values, never calls anything.  Every count is bounded (stack,
 * marks, memo, objects) and nothing recurses on the input's depth.
 *
 * Offsets: lt_tensor_info.offset holds the ABSOLUTE file offset of the
 * tensor's first byte (storage member data start + storage_offset *
 * element size); the read op adds the in-tensor offset and preads.
 * Tensors are added sorted by name; file_index is always 0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch.h"

/* ------------------------------------------------------------------ */
/* The source                                                           */
/* ------------------------------------------------------------------ */

typedef struct torch_impl {
    lti_rfile file;
} torch_impl;

static lt_status torch_read(lt_source *src, const lt_tensor_info *t, uint64_t off, void *dst, size_t len,
                            lt_error *err)
{
    torch_impl *impl = src->impl;
    uint64_t at;
    if (!lti_add_u64(t->offset, off, &at))
        return lti_fail(err, LT_ERR_USAGE, "%s: tensor '%s' has no valid location", src->path,
                       lti_show(t->name).text);
    return lti_rfile_pread(&impl->file, at, dst, len, err);
}

static void torch_close(void *p)
{
    torch_impl *impl = p;
    if (!impl)
        return;
    lti_rfile_close(&impl->file);
    free(impl);
}

static const struct lti_source_ops torch_ops = {.read = torch_read, .close = torch_close};

typedef struct named_tensor {
    const char *name;
    size_t tensor; /* object index */
} named_tensor;

static int cmp_named(const void *a, const void *b)
{
    return strcmp(((const named_tensor *)a)->name, ((const named_tensor *)b)->name);
}

static const char *kind_name(enum val_kind k)
{
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                        "list", "dict", "global", "storage", "tensor"};
    return names[k];
}

/* Check one tensor and add it to src. */
static lt_status add_tensor(lt_source *src, zip_archive *z, const char *root, pickle_vm *vm,
                            const named_tensor *nt, lt_error *err)
{
    const char *path = src->path;
    lti_shown shown_buf = lti_show(nt->name);
    const char *shown = shown_buf.text;
    const tensor_val *t = vm->objs[nt->tensor].u.tensor;
    const obj *st = &vm->objs[t->storage];
    lt_dtype dtype = st->u.storage.dtype;
    uint64_t esize = lt_dtype_block_bytes(dtype);
    /* contiguous: stride[i] = prod(size[i+1:]); size-1 dims are free */
    uint64_t expect = 1, n_elems = 1;
    for (uint32_t d = t->n_dims; d-- > 0;) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor %s is not contiguous", path, shown);
        if (!lti_mul_u64(expect, t->shape[d], &expect))
            return lti_fail(err, LT_ERR_INVALID, "%s: tensor %s: shape overflows", path, shown);
    }
    n_elems = expect;
    uint64_t end, begin_bytes, member_need;
    if (!lti_add_u64(t->storage_offset, n_elems, &end) || end > st->u.storage.numel)
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor %s: elements [%" PRIu64 ", +%" PRIu64
                       ") lie outside its storage of %" PRIu64, path, shown, t->storage_offset, n_elems,
                       st->u.storage.numel);
    if (!lti_mul_u64(st->u.storage.numel, esize, &member_need) ||
        !lti_mul_u64(t->storage_offset, esize, &begin_bytes))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor %s: storage size overflows", path, shown);
    const char *key = vm->objs[st->u.storage.key].u.str.s;
    char *member_name = lti_asprintf("%s/data/%s", root, key);
    if (!member_name)
        return lti_fail_nomem(err, path);
    zip_member *m = lti_zip_find(z, member_name);
    free(member_name);
    if (!m)
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor %s: storage member '%s/data/%s' is missing", path,
                       shown, root, lti_show(key).text);
    if (m->method != 0)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor %s: storage member '%s' is compressed "
                       "(method %u); only stored members can be read", path, shown,
                       lti_show(m->name).text, m->method);
    if (m->flags & 1u)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: storage member '%s' is encrypted", path,
                       lti_show(m->name).text);
    if (m->csize != m->usize)
        return lti_fail(err, LT_ERR_INVALID, "%s: stored member '%s' has different sizes", path,
                       lti_show(m->name).text);
    if (member_need > m->usize)
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor %s: storage of %" PRIu64 " elements needs %" PRIu64
                       " bytes but member '%s' holds %" PRIu64, path, shown, st->u.storage.numel,
                       member_need, lti_show(m->name).text, m->usize);
    lt_status s = lti_zip_resolve(z, m, err);
    if (s != LT_OK)
        return s;
    uint64_t offset;
    if (!lti_add_u64(m->data_offset, begin_bytes, &offset))
        return lti_fail(err, LT_ERR_INVALID, "%s: tensor %s: offset overflows", path, shown);
    return lti_source_add_tensor(src, path, nt->name, dtype, t->n_dims, t->shape, offset, 0, err);
}

/* The tensors of the pickled dict, sorted by name. */
static lt_status build_source(lt_source *src, zip_archive *z, const char *root, pickle_vm *vm, size_t top,
                              lt_error *err)
{
    const char *path = src->path;
    const obj *d = &vm->objs[top];
    if (d->kind != V_DICT)
        return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: data.pkl holds a %s, not a dict of tensors", path,
                       kind_name(d->kind));
    size_t n = d->u.seq.n / 2;
    named_tensor *list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return lti_fail_nomem(err, path);
    lt_status s = LT_OK;
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const obj *k = &vm->objs[d->u.seq.items[2 * i]], *v = &vm->objs[d->u.seq.items[2 * i + 1]];
        size_t bad_at;
        if (k->kind != V_STR)
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: data.pkl dict has a %s key, not a string", path,
                        kind_name(k->kind));
        else if (k->u.str.len == 0 || strlen(k->u.str.s) != k->u.str.len ||
                 !lti_st_utf8_valid(k->u.str.s, k->u.str.len, &bad_at))
            s = lti_fail(err, LT_ERR_INVALID, "%s: data.pkl has a key that is empty, holds a NUL or is not UTF-8",
                        path);
        else if (v->kind != V_TENSOR)
            s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: data.pkl entry '%s' is a %s, not a tensor", path,
                        lti_show(k->u.str.s).text, kind_name(v->kind));
        list[i].name = k->u.str.s;
        list[i].tensor = d->u.seq.items[2 * i + 1];
    }
    if (s == LT_OK)
        qsort(list, n, sizeof *list, cmp_named);
    for (size_t i = 0; i < n && s == LT_OK; i++)
        s = add_tensor(src, z, root, vm, &list[i], err);
    free(list);
    return s;
}

/* "<root>/data.pkl": the one member so named at the top level. */
static lt_status find_root(zip_archive *z, char **root, lt_error *err)
{
    const char *path = z->file->path;
    *root = NULL;
    for (size_t i = 0; i < z->n_members; i++) {
        const char *name = z->members[i].name;
        const char *slash = strchr(name, '/');
        if (slash && slash != name && strcmp(slash, "/data.pkl") == 0) {
            if (*root) {
                free(*root);
                *root = NULL;
                return lti_fail(err, LT_ERR_UNSUPPORTED, "%s: the archive holds more than one data.pkl", path);
            }
            if (!(*root = lti_strndup(name, (size_t)(slash - name))))
                return lti_fail_nomem(err, path);
        }
    }
    if (!*root)
        return lti_fail(err, LT_ERR_INVALID, "%s: a ZIP archive without <root>/data.pkl (not a torch.save file)",
                       path);
    return LT_OK;
}

static lt_status check_byteorder(zip_archive *z, const char *root, lt_error *err)
{
    char *name = lti_asprintf("%s/byteorder", root);
    if (!name)
        return lti_fail_nomem(err, z->file->path);
    zip_member *m = lti_zip_find(z, name);
    free(name);
    if (!m)
        return LT_OK; /* older files: little-endian */
    unsigned char *text = NULL;
    size_t len = 0;
    lt_status s = lti_zip_read_small(z, m, 64, &text, &len, err);
    if (s != LT_OK)
        return s;
    if (len == 3 && memcmp(text, "big", 3) == 0)
        s = lti_fail(err, LT_ERR_UNSUPPORTED, "%s: big-endian tensor data (byteorder \"big\") is not supported",
                    z->file->path);
    else if (!(len == 6 && memcmp(text, "little", 6) == 0))
        s = lti_fail(err, LT_ERR_INVALID, "%s: byteorder member is neither \"little\" nor \"big\"", z->file->path);
    free(text);
    return s;
}

static lt_source *torch_open(const char *path, lt_error *err)
{
    torch_impl *impl = calloc(1, sizeof *impl);
    if (!impl) {
        lti_fail_nomem(err, path);
        return NULL;
    }
    impl->file.fd = -1;
    lt_source *src = NULL;
    zip_archive z = {0};
    pickle_vm vm = {.path = path, .err = err};
    unsigned char *pkl = NULL;
    char *root = NULL, *pkl_name = NULL;
    if (lti_rfile_open(&impl->file, path, err) != LT_OK) {
        free(impl);
        return NULL;
    }
    if (!(src = lti_source_new("torch", path, &torch_ops, err))) {
        torch_close(impl);
        return NULL;
    }
    src->impl = impl;
    lt_status s = lti_zip_open(&z, &impl->file, err);
    if (s == LT_OK)
        s = find_root(&z, &root, err);
    if (s == LT_OK)
        s = check_byteorder(&z, root, err);
    if (s == LT_OK && !(pkl_name = lti_asprintf("%s/data.pkl", root)))
        s = lti_fail_nomem(err, path);
    if (s == LT_OK)
        s = lti_zip_read_small(&z, lti_zip_find(&z, pkl_name), PKL_MAX_BYTES, &pkl, &vm.len, err);
    size_t top = 0;
    if (s == LT_OK) {
        vm.data = pkl;
        s = lti_pickle_run(&vm, &top);
    }
    if (s == LT_OK)
        s = lti_source_add_file(src, path, err);
    if (s == LT_OK)
        s = build_source(src, &z, root, &vm, top, err);
    lti_pickle_free(&vm);
    lti_zip_free(&z);
    free(pkl);
    free(pkl_name);
    free(root);
    if (s != LT_OK) {
        lt_source_close(src);
        return NULL;
    }
    return src;
}

static int torch_bid(const lti_probe *probe)
{
    if (probe->is_dir || probe->head_len < 4 || memcmp(probe->head, "PK\x03\x04", 4) != 0)
        return 0;
    if (lti_ends_with(probe->path, ".bin") || lti_ends_with(probe->path, ".pt") || lti_ends_with(probe->path, ".pth"))
        return 80;
    return 20;
}

const lti_format lti_format_torch_bin = {
    .name = "torch",
    .bid = torch_bid,
    .open = torch_open,
    .create = NULL,
};

