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
#include <zlib.h>

#include "safetensors.h"

#define EOCD_SIZE 22u
#define EOCD_SEARCH (65535u + EOCD_SIZE)
#define CD_MAX_BYTES (64u << 20)       /* central directory held in memory */
#define PKL_MAX_BYTES (64u << 20)      /* data.pkl, inflated               */
#define MAX_STACK (1u << 20)
#define MAX_MARKS (1u << 12)
#define MAX_MEMO (1u << 22)
#define MAX_OBJECTS 10000000u
#define MAX_GLOBAL_LINE 256u

/* ------------------------------------------------------------------ */
/* Little helpers                                                       */
/* ------------------------------------------------------------------ */

static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ------------------------------------------------------------------ */
/* ZIP                                                                  */
/* ------------------------------------------------------------------ */

typedef struct zip_member {
    char *name;
    uint32_t method;
    uint32_t flags;
    uint64_t csize, usize;
    uint64_t header_offset;
    uint64_t data_offset; /* resolved from the local header */
    bool resolved;
} zip_member;

typedef struct zip_archive {
    const lt_rfile *file;
    zip_member *members;
    size_t n_members, cap_members;
    lt_strmap by_name;
} zip_archive;

static void zip_free(zip_archive *z)
{
    for (size_t i = 0; i < z->n_members; i++)
        free(z->members[i].name);
    free(z->members);
    lt_strmap_free(&z->by_name);
    memset(z, 0, sizeof *z);
}

static lt_status zip_find_eocd(const lt_rfile *f, uint64_t *eocd_at, unsigned char eocd[EOCD_SIZE],
                               lt_error *err)
{
    if (f->size < EOCD_SIZE)
        return lt_fail(err, LT_ERR_INVALID, "%s: too small to be a ZIP archive (%" PRIu64 " bytes)",
                       f->path, f->size);
    size_t tail_len = f->size < EOCD_SEARCH ? (size_t)f->size : EOCD_SEARCH;
    uint64_t tail_at = f->size - tail_len;
    unsigned char *tail = malloc(tail_len);
    if (!tail)
        return lt_fail_nomem(err, f->path);
    lt_status s = lt_rfile_pread(f, tail_at, tail, tail_len, err);
    if (s != LT_OK) {
        free(tail);
        return s;
    }
    for (size_t i = tail_len - EOCD_SIZE + 1; i-- > 0;) {
        if (memcmp(tail + i, "PK\x05\x06", 4) == 0 && i + EOCD_SIZE + le16(tail + i + 20) <= tail_len) {
            memcpy(eocd, tail + i, EOCD_SIZE);
            *eocd_at = tail_at + i;
            free(tail);
            return LT_OK;
        }
    }
    free(tail);
    return lt_fail(err, LT_ERR_INVALID, "%s: not a ZIP archive (no end of central directory record)",
                   f->path);
}

/* Where a member's data starts: after its local header, name and extra. */
static lt_status zip_resolve(zip_archive *z, zip_member *m, lt_error *err)
{
    if (m->resolved)
        return LT_OK;
    const lt_rfile *f = z->file;
    unsigned char lh[30];
    uint64_t end;
    if (!lt_add_u64(m->header_offset, sizeof lh, &end) || end > f->size)
        return lt_fail(err, LT_ERR_INVALID, "%s: member '%s': local header offset %" PRIu64
                       " is outside the file", f->path, lt_st_show(m->name).text, m->header_offset);
    lt_status s = lt_rfile_pread(f, m->header_offset, lh, sizeof lh, err);
    if (s != LT_OK)
        return s;
    if (memcmp(lh, "PK\x03\x04", 4) != 0)
        return lt_fail(err, LT_ERR_INVALID, "%s: member '%s': no local file header at offset %" PRIu64,
                       f->path, lt_st_show(m->name).text, m->header_offset);
    uint64_t data, data_end;
    if (!lt_add_u64(end, (uint64_t)le16(lh + 26) + le16(lh + 28), &data) ||
        !lt_add_u64(data, m->csize, &data_end) || data_end > f->size)
        return lt_fail(err, LT_ERR_INVALID, "%s: member '%s': data (%" PRIu64 " bytes) runs past the "
                       "end of the file", f->path, lt_st_show(m->name).text, m->csize);
    m->data_offset = data;
    m->resolved = true;
    return LT_OK;
}

static lt_status zip_parse_entry(zip_archive *z, const unsigned char *p, size_t avail, size_t *used,
                                 lt_error *err)
{
    const char *path = z->file->path;
    if (avail < 46 || memcmp(p, "PK\x01\x02", 4) != 0)
        return lt_fail(err, LT_ERR_INVALID, "%s: central directory entry %zu is damaged", path,
                       z->n_members);
    size_t name_len = le16(p + 28), extra_len = le16(p + 30), comment_len = le16(p + 32);
    size_t total = 46 + name_len + extra_len + comment_len;
    if (total > avail)
        return lt_fail(err, LT_ERR_INVALID, "%s: central directory entry %zu runs past the directory",
                       path, z->n_members);
    zip_member m = {0};
    m.flags = le16(p + 8);
    m.method = le16(p + 10);
    m.csize = le32(p + 20);
    m.usize = le32(p + 24);
    m.header_offset = le32(p + 42);
    uint32_t disk = le16(p + 34);
    /* ZIP64 extended information: only the saturated fields, in order */
    const unsigned char *x = p + 46 + name_len, *x_end = x + extra_len;
    while (x_end - x >= 4) {
        uint32_t id = le16(x), len = le16(x + 2);
        if ((size_t)(x_end - x - 4) < len)
            break;
        if (id == 0x0001) {
            const unsigned char *q = x + 4, *q_end = q + len;
            uint64_t *fields[3] = {&m.usize, &m.csize, &m.header_offset};
            for (int k = 0; k < 3; k++) {
                if (*fields[k] != 0xFFFFFFFFu)
                    continue;
                if (q_end - q < 8)
                    return lt_fail(err, LT_ERR_INVALID, "%s: central directory entry %zu: short ZIP64 "
                                   "extra field", path, z->n_members);
                *fields[k] = le64(q);
                q += 8;
            }
            if (disk == 0xFFFF && q_end - q >= 4)
                disk = le32(q);
        }
        x += 4 + len;
    }
    if (disk != 0)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported", path);
    m.name = lt_strndup((const char *)p + 46, name_len);
    if (!m.name)
        return lt_fail_nomem(err, path);
    if (strlen(m.name) != name_len) {
        free(m.name);
        return lt_fail(err, LT_ERR_INVALID, "%s: a member name contains a NUL byte", path);
    }
    if (!lt_grow((void **)&z->members, &z->cap_members, z->n_members + 1, sizeof m)) {
        free(m.name);
        return lt_fail_nomem(err, path);
    }
    z->members[z->n_members] = m;
    int put = lt_strmap_put(&z->by_name, z->members[z->n_members].name, (long)z->n_members);
    z->n_members++;
    if (put < 0)
        return lt_fail_nomem(err, path);
    if (put == 0)
        return lt_fail(err, LT_ERR_INVALID, "%s: member '%s' appears twice", path, lt_st_show(m.name).text);
    *used = total;
    return LT_OK;
}

static lt_status zip_open(zip_archive *z, const lt_rfile *f, lt_error *err)
{
    memset(z, 0, sizeof *z);
    z->file = f;
    unsigned char eocd[EOCD_SIZE] = {0};
    uint64_t eocd_at;
    lt_status s = zip_find_eocd(f, &eocd_at, eocd, err);
    if (s != LT_OK)
        return s;
    uint64_t disk = le16(eocd + 4), cd_disk = le16(eocd + 6);
    uint64_t n_entries = le16(eocd + 10), cd_size = le32(eocd + 12), cd_offset = le32(eocd + 16);
    if (le16(eocd + 8) == 0xFFFF || n_entries == 0xFFFF || cd_size == 0xFFFFFFFFu ||
        cd_offset == 0xFFFFFFFFu) {
        unsigned char loc[20], rec[56];
        if (eocd_at < sizeof loc)
            return lt_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory locator missing", f->path);
        if ((s = lt_rfile_pread(f, eocd_at - sizeof loc, loc, sizeof loc, err)) != LT_OK)
            return s;
        if (memcmp(loc, "PK\x06\x07", 4) != 0)
            return lt_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory locator missing", f->path);
        uint64_t rec_at = le64(loc + 8), rec_end;
        if (!lt_add_u64(rec_at, sizeof rec, &rec_end) || rec_end > f->size)
            return lt_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory record is outside the "
                           "file (offset %" PRIu64 ")", f->path, rec_at);
        if ((s = lt_rfile_pread(f, rec_at, rec, sizeof rec, err)) != LT_OK)
            return s;
        if (memcmp(rec, "PK\x06\x06", 4) != 0)
            return lt_fail(err, LT_ERR_INVALID, "%s: ZIP64 end of central directory record is damaged", f->path);
        disk = le32(rec + 16);
        cd_disk = le32(rec + 20);
        n_entries = le64(rec + 32);
        cd_size = le64(rec + 40);
        cd_offset = le64(rec + 48);
    }
    if (disk != 0 || cd_disk != 0)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: multi-disk ZIP archives are not supported", f->path);
    uint64_t cd_end;
    if (!lt_add_u64(cd_offset, cd_size, &cd_end) || cd_end > f->size)
        return lt_fail(err, LT_ERR_INVALID, "%s: central directory (offset %" PRIu64 ", %" PRIu64
                       " bytes) is outside the file", f->path, cd_offset, cd_size);
    if (cd_size > CD_MAX_BYTES)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: central directory of %" PRIu64 " bytes is too large",
                       f->path, cd_size);
    if (n_entries > cd_size / 46)
        return lt_fail(err, LT_ERR_INVALID, "%s: %" PRIu64 " members cannot fit a central directory of %"
                       PRIu64 " bytes", f->path, n_entries, cd_size);
    unsigned char *cd = malloc(cd_size ? (size_t)cd_size : 1);
    if (!cd)
        return lt_fail_nomem(err, f->path);
    s = lt_rfile_pread(f, cd_offset, cd, (size_t)cd_size, err);
    size_t at = 0;
    for (uint64_t i = 0; i < n_entries && s == LT_OK; i++) {
        size_t used = 0;
        s = zip_parse_entry(z, cd + at, (size_t)cd_size - at, &used, err);
        at += used;
    }
    free(cd);
    return s;
}

static zip_member *zip_find(zip_archive *z, const char *name)
{
    long i = lt_strmap_get(&z->by_name, name);
    return i >= 0 ? &z->members[i] : NULL;
}

/* A small member's bytes (stored or deflated), malloc'd, NUL-terminated. */
static lt_status zip_read_small(zip_archive *z, zip_member *m, size_t max, unsigned char **out,
                                size_t *out_len, lt_error *err)
{
    const char *path = z->file->path;
    *out = NULL;
    lt_status s = zip_resolve(z, m, err);
    if (s != LT_OK)
        return s;
    if (m->flags & 1u)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: member '%s' is encrypted", path, lt_st_show(m->name).text);
    if (m->method != 0 && m->method != 8)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: member '%s' uses compression method %u", path,
                       lt_st_show(m->name).text, m->method);
    if (m->usize > max || (m->method == 0 && m->csize > max))
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: member '%s' is too large (%" PRIu64 " bytes, at most %zu)",
                       path, lt_st_show(m->name).text, m->usize, max);
    if (m->method == 0 && m->csize != m->usize)
        return lt_fail(err, LT_ERR_INVALID, "%s: stored member '%s' has different sizes %" PRIu64 " and %" PRIu64,
                       path, lt_st_show(m->name).text, m->csize, m->usize);
    unsigned char *buf = malloc((size_t)m->usize + 1);
    if (!buf)
        return lt_fail_nomem(err, path);
    if (m->method == 0) {
        s = lt_rfile_pread(z->file, m->data_offset, buf, (size_t)m->usize, err);
    } else {
        /* deflated: read the compressed bytes in chunks, inflate raw */
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
            free(buf);
            return lt_fail_nomem(err, path);
        }
        unsigned char chunk[65536];
        uint64_t done = 0;
        int zr = Z_OK;
        zs.next_out = buf;
        zs.avail_out = (uInt)m->usize;
        while (s == LT_OK && zr != Z_STREAM_END && done < m->csize) {
            size_t n = m->csize - done < sizeof chunk ? (size_t)(m->csize - done) : sizeof chunk;
            s = lt_rfile_pread(z->file, m->data_offset + done, chunk, n, err);
            if (s != LT_OK)
                break;
            done += n;
            zs.next_in = chunk;
            zs.avail_in = (uInt)n;
            while (zs.avail_in > 0 && zr == Z_OK) {
                uInt before_in = zs.avail_in, before_out = zs.avail_out;
                zr = inflate(&zs, Z_NO_FLUSH);
                if (zr == Z_BUF_ERROR || (zr == Z_OK && zs.avail_in == before_in && zs.avail_out == before_out))
                    zr = Z_DATA_ERROR; /* no progress: output full or stream bad */
            }
            if (zr != Z_OK && zr != Z_STREAM_END)
                break;
        }
        uint64_t produced = zs.total_out;
        inflateEnd(&zs);
        if (s == LT_OK && (zr != Z_STREAM_END || produced != m->usize))
            s = lt_fail(err, LT_ERR_INVALID, "%s: member '%s': deflate data is damaged or does not "
                        "inflate to its declared %" PRIu64 " bytes", path, lt_st_show(m->name).text, m->usize);
    }
    if (s != LT_OK) {
        free(buf);
        return s;
    }
    buf[m->usize] = '\0';
    *out = buf;
    if (out_len)
        *out_len = (size_t)m->usize;
    return LT_OK;
}

/* ------------------------------------------------------------------ */
/* Restricted pickle machine                                            */
/* ------------------------------------------------------------------ */

enum val_kind {
    V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_BYTES, V_TUPLE, V_LIST, V_DICT,
    V_GLOBAL, V_STORAGE, V_TENSOR
};

enum global_kind { G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_STORAGE };

typedef struct tensor_val {
    size_t storage;           /* object index of a V_STORAGE */
    uint64_t storage_offset;  /* in elements */
    uint32_t n_dims;
    uint64_t shape[LT_MAX_DIMS];
    uint64_t stride[LT_MAX_DIMS];
} tensor_val;

typedef struct obj {
    enum val_kind kind;
    union {
        int64_t i;             /* V_BOOL, V_INT */
        double f;
        struct {               /* V_STR, V_BYTES */
            char *s;
            size_t len;
        } str;
        struct {               /* V_TUPLE, V_LIST, V_DICT (pairs) */
            size_t *items;
            size_t n, cap;
        } seq;
        struct {               /* V_GLOBAL */
            enum global_kind g;
            lt_dtype dtype;    /* for G_STORAGE */
        } glob;
        struct {               /* V_STORAGE */
            lt_dtype dtype;
            size_t key;        /* object index of a V_STR */
            uint64_t numel;
        } storage;
        tensor_val *tensor;
    } u;
} obj;

typedef struct pickle_vm {
    const char *path;
    const unsigned char *data;
    size_t len, pos;
    obj *objs;
    size_t n_objs, cap_objs;
    size_t *stack;
    size_t n_stack, cap_stack;
    size_t *marks;
    size_t n_marks, cap_marks;
    long *memo;
    size_t n_memo, cap_memo;
    lt_error *err;
} pickle_vm;

static void vm_free(pickle_vm *vm)
{
    for (size_t i = 0; i < vm->n_objs; i++) {
        obj *o = &vm->objs[i];
        if (o->kind == V_STR || o->kind == V_BYTES)
            free(o->u.str.s);
        else if (o->kind == V_TUPLE || o->kind == V_LIST || o->kind == V_DICT)
            free(o->u.seq.items);
        else if (o->kind == V_TENSOR)
            free(o->u.tensor);
    }
    free(vm->objs);
    free(vm->stack);
    free(vm->marks);
    free(vm->memo);
}

static lt_status vm_fail(pickle_vm *vm, lt_status status, size_t op_at, const char *fmt, ...) LT_PRINTF(4, 5);
static lt_status vm_fail(pickle_vm *vm, lt_status status, size_t op_at, const char *fmt, ...)
{
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return lt_fail(vm->err, status, "%s: data.pkl byte %zu: %s", vm->path, op_at, what);
}

static lt_status vm_new(pickle_vm *vm, enum val_kind kind, size_t *out)
{
    if (vm->n_objs >= MAX_OBJECTS)
        return lt_fail(vm->err, LT_ERR_UNSUPPORTED, "%s: data.pkl builds more than %u objects", vm->path,
                       MAX_OBJECTS);
    if (!lt_grow((void **)&vm->objs, &vm->cap_objs, vm->n_objs + 1, sizeof(obj)))
        return lt_fail_nomem(vm->err, vm->path);
    memset(&vm->objs[vm->n_objs], 0, sizeof(obj));
    vm->objs[vm->n_objs].kind = kind;
    *out = vm->n_objs++;
    return LT_OK;
}

static lt_status vm_push(pickle_vm *vm, size_t index)
{
    if (vm->n_stack >= MAX_STACK)
        return lt_fail(vm->err, LT_ERR_UNSUPPORTED, "%s: data.pkl stack deeper than %u", vm->path, MAX_STACK);
    if (!lt_grow((void **)&vm->stack, &vm->cap_stack, vm->n_stack + 1, sizeof(size_t)))
        return lt_fail_nomem(vm->err, vm->path);
    vm->stack[vm->n_stack++] = index;
    return LT_OK;
}

static lt_status vm_push_new(pickle_vm *vm, enum val_kind kind, size_t *out)
{
    size_t i;
    lt_status s = vm_new(vm, kind, &i);
    if (s == LT_OK)
        s = vm_push(vm, i);
    if (out)
        *out = i;
    return s;
}

/* Items above the innermost mark: they start at stack[*from]. */
static lt_status vm_pop_mark(pickle_vm *vm, size_t op_at, size_t *from)
{
    if (vm->n_marks == 0)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "no MARK on the stack");
    *from = vm->marks[--vm->n_marks];
    return LT_OK;
}

/* Pop n items (n >= 1) that must lie above the innermost mark. */
static lt_status vm_need(pickle_vm *vm, size_t op_at, size_t n)
{
    size_t floor = vm->n_marks ? vm->marks[vm->n_marks - 1] : 0;
    if (vm->n_stack < floor || vm->n_stack - floor < n)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "stack underflow");
    return LT_OK;
}

static lt_status vm_seq_add(pickle_vm *vm, size_t target, const size_t *items, size_t n)
{
    obj *o = &vm->objs[target];
    size_t need;
    if (__builtin_add_overflow(o->u.seq.n, n, &need) ||
        !lt_grow((void **)&o->u.seq.items, &o->u.seq.cap, need, sizeof(size_t)))
        return lt_fail_nomem(vm->err, vm->path);
    memcpy(o->u.seq.items + o->u.seq.n, items, n * sizeof(size_t));
    o->u.seq.n = need;
    return LT_OK;
}

/* Make a tuple from the stack's top n items (replacing them). */
static lt_status vm_tuple_from(pickle_vm *vm, size_t from)
{
    size_t t;
    lt_status s = vm_new(vm, V_TUPLE, &t);
    if (s == LT_OK && vm->n_stack > from)
        s = vm_seq_add(vm, t, vm->stack + from, vm->n_stack - from);
    if (s != LT_OK)
        return s;
    vm->n_stack = from;
    return vm_push(vm, t);
}

static lt_status vm_need_bytes(pickle_vm *vm, size_t op_at, uint64_t n)
{
    if (n > vm->len - vm->pos)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "operand of %" PRIu64 " bytes runs past the end of the pickle", n);
    return LT_OK;
}

static lt_status vm_string(pickle_vm *vm, size_t op_at, enum val_kind kind, uint64_t n)
{
    lt_status s = vm_need_bytes(vm, op_at, n);
    if (s != LT_OK)
        return s;
    size_t i;
    if ((s = vm_push_new(vm, kind, &i)) != LT_OK)
        return s;
    char *copy = malloc((size_t)n + 1);
    if (!copy)
        return lt_fail_nomem(vm->err, vm->path);
    memcpy(copy, vm->data + vm->pos, (size_t)n);
    copy[n] = '\0';
    vm->objs[i].u.str.s = copy;
    vm->objs[i].u.str.len = (size_t)n;
    vm->pos += (size_t)n;
    return LT_OK;
}

static const struct {
    const char *name;
    lt_dtype dtype;
} storage_types[] = {
    {"FloatStorage", LT_F32}, {"HalfStorage", LT_F16},  {"BFloat16Storage", LT_BF16},
    {"DoubleStorage", LT_F64}, {"LongStorage", LT_I64}, {"IntStorage", LT_I32},
    {"ShortStorage", LT_I16}, {"CharStorage", LT_I8},   {"ByteStorage", LT_U8},
    {"BoolStorage", LT_BOOL},
};

static lt_status vm_global(pickle_vm *vm, size_t op_at, const char *module, size_t module_len,
                           const char *name, size_t name_len)
{
    size_t i;
    lt_status s = vm_push_new(vm, V_GLOBAL, &i);
    if (s != LT_OK)
        return s;
    obj *o = &vm->objs[i];
#define IS(str, want) (str##_len == strlen(want) && memcmp(str, want, str##_len) == 0)
    if (IS(module, "collections") && IS(name, "OrderedDict")) {
        o->u.glob.g = G_ORDERED_DICT;
        return LT_OK;
    }
    if (IS(module, "torch._utils") && IS(name, "_rebuild_tensor_v2")) {
        o->u.glob.g = G_REBUILD_TENSOR;
        return LT_OK;
    }
    if (IS(module, "torch._utils") && IS(name, "_rebuild_parameter")) {
        o->u.glob.g = G_REBUILD_PARAMETER;
        return LT_OK;
    }
    if (IS(module, "torch")) {
        for (size_t k = 0; k < sizeof storage_types / sizeof *storage_types; k++) {
            if (IS(name, storage_types[k].name)) {
                o->u.glob.g = G_STORAGE;
                o->u.glob.dtype = storage_types[k].dtype;
                return LT_OK;
            }
        }
    }
#undef IS
    char *m = lt_strndup(module, module_len), *n = lt_strndup(name, name_len);
    if (!m || !n)
        s = lt_fail_nomem(vm->err, vm->path);
    else
        s = vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "pickle global %s.%s is not allowed",
                    lt_st_show(m).text, lt_st_show(n).text);
    free(m);
    free(n);
    return s;
}

static bool get_int(const pickle_vm *vm, size_t i, int64_t *out)
{
    const obj *o = &vm->objs[i];
    if (o->kind != V_INT && o->kind != V_BOOL)
        return false;
    *out = o->u.i;
    return true;
}

/* A tuple of non-negative ints (a size or a stride). */
static bool get_dims(const pickle_vm *vm, size_t i, uint32_t *n_dims, uint64_t *dims)
{
    const obj *o = &vm->objs[i];
    if (o->kind != V_TUPLE || o->u.seq.n > LT_MAX_DIMS)
        return false;
    for (size_t d = 0; d < o->u.seq.n; d++) {
        int64_t v;
        if (!get_int(vm, o->u.seq.items[d], &v) || v < 0)
            return false;
        dims[d] = (uint64_t)v;
    }
    *n_dims = (uint32_t)o->u.seq.n;
    return true;
}

static lt_status vm_reduce(pickle_vm *vm, size_t op_at, size_t callable, size_t args, size_t *result)
{
    const obj *f = &vm->objs[callable];
    const obj *a = &vm->objs[args];
    if (f->kind != V_GLOBAL)
        return vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "REDUCE calls something that is not an allowed global");
    if (a->kind != V_TUPLE)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "REDUCE arguments are not a tuple");
    size_t n = a->u.seq.n;
    const size_t *items = a->u.seq.items;
    switch (f->u.glob.g) {
    case G_ORDERED_DICT:
        if (n != 0)
            return vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "OrderedDict called with arguments");
        return vm_new(vm, V_DICT, result);
    case G_REBUILD_PARAMETER:
        if (n != 3 || vm->objs[items[0]].kind != V_TENSOR)
            return vm_fail(vm, LT_ERR_INVALID, op_at, "_rebuild_parameter needs (tensor, requires_grad, hooks)");
        *result = items[0];
        return LT_OK;
    case G_REBUILD_TENSOR: {
        int64_t off;
        tensor_val t = {0};
        uint32_t stride_dims = 0;
        if ((n != 6 && n != 7) || vm->objs[items[0]].kind != V_STORAGE || !get_int(vm, items[1], &off) ||
            off < 0 || !get_dims(vm, items[2], &t.n_dims, t.shape) ||
            !get_dims(vm, items[3], &stride_dims, t.stride) || stride_dims != t.n_dims)
            return vm_fail(vm, LT_ERR_INVALID, op_at,
                           "_rebuild_tensor_v2 needs (storage, offset, size, stride, requires_grad, hooks)"
                           " with non-negative integers and at most %d dimensions", LT_MAX_DIMS);
        t.storage = items[0];
        t.storage_offset = (uint64_t)off;
        lt_status s = vm_new(vm, V_TENSOR, result);
        if (s != LT_OK)
            return s;
        tensor_val *copy = malloc(sizeof *copy);
        if (!copy)
            return lt_fail_nomem(vm->err, vm->path);
        *copy = t;
        vm->objs[*result].u.tensor = copy;
        return LT_OK;
    }
    case G_STORAGE:
        break;
    }
    return vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "a storage class is called directly");
}

static lt_status vm_persid(pickle_vm *vm, size_t op_at, size_t pid, size_t *result)
{
    const obj *t = &vm->objs[pid];
    if (t->kind != V_TUPLE || t->u.seq.n != 5)
        return vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "persistent id is not a 5-tuple (\"storage\", type, key, location, numel)");
    const size_t *it = t->u.seq.items;
    const obj *tag = &vm->objs[it[0]], *type = &vm->objs[it[1]], *key = &vm->objs[it[2]];
    int64_t numel;
    if (tag->kind != V_STR || strcmp(tag->u.str.s, "storage") != 0)
        return vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "persistent id is not a \"storage\"");
    if (type->kind != V_GLOBAL || type->u.glob.g != G_STORAGE)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "persistent id names no storage type");
    if (key->kind != V_STR || key->u.str.len == 0 || strlen(key->u.str.s) != key->u.str.len ||
        strchr(key->u.str.s, '/'))
        return vm_fail(vm, LT_ERR_INVALID, op_at, "persistent id has a bad storage key");
    if (!get_int(vm, it[4], &numel) || numel < 0)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "persistent id has a bad element count");
    lt_dtype dtype = type->u.glob.dtype;
    size_t key_index = it[2];
    lt_status s = vm_new(vm, V_STORAGE, result);
    if (s != LT_OK)
        return s;
    vm->objs[*result].u.storage.dtype = dtype;
    vm->objs[*result].u.storage.key = key_index;
    vm->objs[*result].u.storage.numel = (uint64_t)numel;
    return LT_OK;
}

static lt_status vm_memo_put(pickle_vm *vm, size_t op_at, uint64_t key)
{
    if (vm->n_stack == 0 || (vm->n_marks && vm->marks[vm->n_marks - 1] == vm->n_stack))
        return vm_fail(vm, LT_ERR_INVALID, op_at, "memo store with an empty stack");
    if (key >= MAX_MEMO)
        return vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "memo index %" PRIu64 " is too large", key);
    if (key >= vm->n_memo) {
        if (!lt_grow((void **)&vm->memo, &vm->cap_memo, (size_t)key + 1, sizeof(long)))
            return lt_fail_nomem(vm->err, vm->path);
        for (size_t k = vm->n_memo; k <= key; k++)
            vm->memo[k] = -1;
        vm->n_memo = (size_t)key + 1;
    }
    vm->memo[key] = (long)vm->stack[vm->n_stack - 1];
    return LT_OK;
}

static lt_status vm_memo_get(pickle_vm *vm, size_t op_at, uint64_t key)
{
    if (key >= vm->n_memo || vm->memo[key] < 0)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "memo index %" PRIu64 " was never stored", key);
    return vm_push(vm, (size_t)vm->memo[key]);
}

static lt_status vm_setitems(pickle_vm *vm, size_t op_at, size_t from)
{
    if (from == 0 || (vm->n_stack - from) % 2 != 0)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "SETITEM(S) without a dict and key/value pairs");
    size_t target = vm->stack[from - 1];
    if (vm->objs[target].kind != V_DICT)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "SETITEM(S) on something that is not a dict");
    lt_status s = vm_seq_add(vm, target, vm->stack + from, vm->n_stack - from);
    vm->n_stack = from;
    return s;
}

static lt_status vm_appends(pickle_vm *vm, size_t op_at, size_t from)
{
    if (from == 0 || vm->objs[vm->stack[from - 1]].kind != V_LIST)
        return vm_fail(vm, LT_ERR_INVALID, op_at, "APPEND(S) on something that is not a list");
    lt_status s = vm_seq_add(vm, vm->stack[from - 1], vm->stack + from, vm->n_stack - from);
    vm->n_stack = from;
    return s;
}

/* Run the pickle; *result is the object index of what STOP returns. */
static lt_status vm_run(pickle_vm *vm, size_t *result)
{
    lt_status s = LT_OK;
    while (s == LT_OK) {
        if (vm->pos >= vm->len)
            return vm_fail(vm, LT_ERR_INVALID, vm->pos, "pickle ends without STOP");
        size_t at = vm->pos;
        unsigned char op = vm->data[vm->pos++];
        const unsigned char *arg = vm->data + vm->pos;
        size_t from = 0, i = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if ((s = vm_need_bytes(vm, at, 1)) == LT_OK) {
                if (arg[0] < 2 || arg[0] > 5)
                    s = vm_fail(vm, LT_ERR_UNSUPPORTED, at, "pickle protocol %u", arg[0]);
                vm->pos += 1;
            }
            break;
        case 0x95: /* FRAME: framing is only a hint */
            if ((s = vm_need_bytes(vm, at, 8)) == LT_OK)
                vm->pos += 8;
            break;
        case '.': /* STOP */
            if (vm->n_stack != 1 || vm->n_marks != 0)
                return vm_fail(vm, LT_ERR_INVALID, at, "STOP with %zu items and %zu marks on the stack",
                               vm->n_stack, vm->n_marks);
            *result = vm->stack[0];
            return LT_OK;
        case '(': /* MARK */
            if (vm->n_marks >= MAX_MARKS)
                return vm_fail(vm, LT_ERR_UNSUPPORTED, at, "MARKs nested deeper than %u", MAX_MARKS);
            if (!lt_grow((void **)&vm->marks, &vm->cap_marks, vm->n_marks + 1, sizeof(size_t)))
                return lt_fail_nomem(vm->err, vm->path);
            vm->marks[vm->n_marks++] = vm->n_stack;
            break;
        case '0': /* POP */
            if (vm->n_marks && vm->marks[vm->n_marks - 1] == vm->n_stack)
                vm->n_marks--; /* pops the mark itself, as Python does */
            else if ((s = vm_need(vm, at, 1)) == LT_OK)
                vm->n_stack--;
            break;
        case '1': /* POP_MARK */
            if ((s = vm_pop_mark(vm, at, &from)) == LT_OK)
                vm->n_stack = from;
            break;
        case '2': /* DUP */
            if ((s = vm_need(vm, at, 1)) == LT_OK)
                s = vm_push(vm, vm->stack[vm->n_stack - 1]);
            break;
        case '}': s = vm_push_new(vm, V_DICT, NULL); break;
        case ']': s = vm_push_new(vm, V_LIST, NULL); break;
        case ')': s = vm_push_new(vm, V_TUPLE, NULL); break;
        case 'N': s = vm_push_new(vm, V_NONE, NULL); break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if ((s = vm_push_new(vm, V_BOOL, &i)) == LT_OK)
                vm->objs[i].u.i = op == 0x88;
            break;
        case 't': /* TUPLE */
            if ((s = vm_pop_mark(vm, at, &from)) == LT_OK)
                s = vm_tuple_from(vm, from);
            break;
        case 0x85: case 0x86: case 0x87: /* TUPLE1..3 */
            if ((s = vm_need(vm, at, (size_t)(op - 0x84))) == LT_OK)
                s = vm_tuple_from(vm, vm->n_stack - (size_t)(op - 0x84));
            break;
        case 'J': case 'K': case 'M': { /* BININT, BININT1, BININT2 */
            size_t n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if ((s = vm_need_bytes(vm, at, n)) != LT_OK)
                break;
            int64_t v = op == 'J' ? (int64_t)(int32_t)le32(arg) : op == 'K' ? arg[0] : (int64_t)le16(arg);
            vm->pos += n;
            if ((s = vm_push_new(vm, V_INT, &i)) == LT_OK)
                vm->objs[i].u.i = v;
            break;
        }
        case 0x8a: { /* LONG1 */
            if ((s = vm_need_bytes(vm, at, 1)) != LT_OK || (s = vm_need_bytes(vm, at, 1u + arg[0])) != LT_OK)
                break;
            size_t n = arg[0];
            if (n > 8) {
                s = vm_fail(vm, LT_ERR_UNSUPPORTED, at, "integer of %zu bytes", n);
                break;
            }
            uint64_t u = 0;
            for (size_t k = n; k-- > 0;)
                u = u << 8 | arg[1 + k];
            if (n > 0 && n < 8 && (arg[n] & 0x80))
                u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
            vm->pos += 1 + n;
            if ((s = vm_push_new(vm, V_INT, &i)) == LT_OK)
                vm->objs[i].u.i = (int64_t)u;
            break;
        }
        case 'G': { /* BINFLOAT, big-endian */
            if ((s = vm_need_bytes(vm, at, 8)) != LT_OK)
                break;
            uint64_t u = 0;
            for (int k = 0; k < 8; k++)
                u = u << 8 | arg[k];
            double d;
            memcpy(&d, &u, sizeof d);
            vm->pos += 8;
            if ((s = vm_push_new(vm, V_FLOAT, &i)) == LT_OK)
                vm->objs[i].u.f = d;
            break;
        }
        case 'X': case 'B': /* BINUNICODE, BINBYTES */
            if ((s = vm_need_bytes(vm, at, 4)) == LT_OK) {
                vm->pos += 4;
                s = vm_string(vm, at, op == 'X' ? V_STR : V_BYTES, le32(arg));
            }
            break;
        case 'T': /* BINSTRING: signed length */
            if ((s = vm_need_bytes(vm, at, 4)) == LT_OK) {
                if ((int32_t)le32(arg) < 0) {
                    s = vm_fail(vm, LT_ERR_INVALID, at, "negative string length");
                    break;
                }
                vm->pos += 4;
                s = vm_string(vm, at, V_STR, le32(arg));
            }
            break;
        case 0x8c: case 'U': case 'C': /* SHORT_BINUNICODE, SHORT_BINSTRING, SHORT_BINBYTES */
            if ((s = vm_need_bytes(vm, at, 1)) == LT_OK) {
                vm->pos += 1;
                s = vm_string(vm, at, op == 'C' ? V_BYTES : V_STR, arg[0]);
            }
            break;
        case 0x8d: /* BINUNICODE8 */
            if ((s = vm_need_bytes(vm, at, 8)) == LT_OK) {
                vm->pos += 8;
                s = vm_string(vm, at, V_STR, le64(arg));
            }
            break;
        case 'q': /* BINPUT */
            if ((s = vm_need_bytes(vm, at, 1)) == LT_OK) {
                vm->pos += 1;
                s = vm_memo_put(vm, at, arg[0]);
            }
            break;
        case 'r': /* LONG_BINPUT */
            if ((s = vm_need_bytes(vm, at, 4)) == LT_OK) {
                vm->pos += 4;
                s = vm_memo_put(vm, at, le32(arg));
            }
            break;
        case 0x94: /* MEMOIZE */
            s = vm_memo_put(vm, at, vm->n_memo);
            break;
        case 'h': /* BINGET */
            if ((s = vm_need_bytes(vm, at, 1)) == LT_OK) {
                vm->pos += 1;
                s = vm_memo_get(vm, at, arg[0]);
            }
            break;
        case 'j': /* LONG_BINGET */
            if ((s = vm_need_bytes(vm, at, 4)) == LT_OK) {
                vm->pos += 4;
                s = vm_memo_get(vm, at, le32(arg));
            }
            break;
        case 'c': { /* GLOBAL "module\nname\n" */
            const unsigned char *end = vm->data + vm->len;
            size_t limit = (size_t)(end - arg) < 2 * MAX_GLOBAL_LINE ? (size_t)(end - arg) : 2 * MAX_GLOBAL_LINE;
            const unsigned char *nl1 = memchr(arg, '\n', limit);
            const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', limit - (size_t)(nl1 + 1 - arg)) : NULL;
            if (!nl2) {
                s = vm_fail(vm, LT_ERR_INVALID, at, "GLOBAL operand is not two short lines");
                break;
            }
            vm->pos = (size_t)(nl2 + 1 - vm->data);
            s = vm_global(vm, at, (const char *)arg, (size_t)(nl1 - arg), (const char *)nl1 + 1,
                          (size_t)(nl2 - nl1 - 1));
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            if ((s = vm_need(vm, at, 2)) != LT_OK)
                break;
            const obj *m = &vm->objs[vm->stack[vm->n_stack - 2]], *n = &vm->objs[vm->stack[vm->n_stack - 1]];
            if (m->kind != V_STR || n->kind != V_STR) {
                s = vm_fail(vm, LT_ERR_INVALID, at, "STACK_GLOBAL operands are not strings");
                break;
            }
            const char *ms = m->u.str.s, *ns = n->u.str.s;
            size_t ml = m->u.str.len, nl = n->u.str.len;
            vm->n_stack -= 2;
            s = vm_global(vm, at, ms, ml, ns, nl);
            break;
        }
        case 'R': /* REDUCE */
        case 0x81: /* NEWOBJ: cls(*args); only OrderedDict takes this path */
            if ((s = vm_need(vm, at, 2)) != LT_OK)
                break;
            if (op == 0x81 && (vm->objs[vm->stack[vm->n_stack - 2]].kind != V_GLOBAL ||
                               vm->objs[vm->stack[vm->n_stack - 2]].u.glob.g != G_ORDERED_DICT)) {
                s = vm_fail(vm, LT_ERR_UNSUPPORTED, at, "NEWOBJ of something other than OrderedDict");
                break;
            }
            if ((s = vm_reduce(vm, at, vm->stack[vm->n_stack - 2], vm->stack[vm->n_stack - 1], &i)) == LT_OK) {
                vm->n_stack -= 2;
                s = vm_push(vm, i);
            }
            break;
        case 'b': /* BUILD: object state (attributes) is irrelevant here; drop it */
            if ((s = vm_need(vm, at, 2)) == LT_OK) {
                enum val_kind k = vm->objs[vm->stack[vm->n_stack - 2]].kind;
                if (k != V_DICT && k != V_TENSOR)
                    s = vm_fail(vm, LT_ERR_UNSUPPORTED, at, "BUILD on an object that is not a dict or tensor");
                vm->n_stack--;
            }
            break;
        case 'Q': /* BINPERSID */
            if ((s = vm_need(vm, at, 1)) == LT_OK && (s = vm_persid(vm, at, vm->stack[vm->n_stack - 1], &i)) == LT_OK)
                vm->stack[vm->n_stack - 1] = i;
            break;
        case 's': /* SETITEM */
            if ((s = vm_need(vm, at, 3)) == LT_OK)
                s = vm_setitems(vm, at, vm->n_stack - 2);
            break;
        case 'u': /* SETITEMS */
            if ((s = vm_pop_mark(vm, at, &from)) == LT_OK)
                s = vm_setitems(vm, at, from);
            break;
        case 'a': /* APPEND */
            if ((s = vm_need(vm, at, 2)) == LT_OK)
                s = vm_appends(vm, at, vm->n_stack - 1);
            break;
        case 'e': /* APPENDS */
            if ((s = vm_pop_mark(vm, at, &from)) == LT_OK)
                s = vm_appends(vm, at, from);
            break;
        default:
            if (op >= 0x20 && op < 0x7f)
                s = vm_fail(vm, LT_ERR_UNSUPPORTED, at, "pickle opcode '%c' (0x%02x) is not supported", op, op);
            else
                s = vm_fail(vm, LT_ERR_UNSUPPORTED, at, "pickle opcode 0x%02x is not supported", op);
        }
    }
    return s;
}

/* ------------------------------------------------------------------ */
/* The source                                                           */
/* ------------------------------------------------------------------ */

typedef struct torch_impl {
    lt_rfile file;
} torch_impl;

static lt_status torch_read(lt_source *src, const lt_tensor_info *t, uint64_t off, void *dst, size_t len,
                            lt_error *err)
{
    torch_impl *impl = src->impl;
    uint64_t at;
    if (!lt_add_u64(t->offset, off, &at))
        return lt_fail(err, LT_ERR_USAGE, "%s: tensor '%s' has no valid location", src->path,
                       lt_st_show(t->name).text);
    return lt_rfile_pread(&impl->file, at, dst, len, err);
}

static void torch_close(void *p)
{
    torch_impl *impl = p;
    if (!impl)
        return;
    lt_rfile_close(&impl->file);
    free(impl);
}

static const struct lt_source_ops torch_ops = {.read = torch_read, .close = torch_close};

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
    lt_st_shown shown_buf = lt_st_show(nt->name);
    const char *shown = shown_buf.text;
    const tensor_val *t = vm->objs[nt->tensor].u.tensor;
    const obj *st = &vm->objs[t->storage];
    lt_dtype dtype = st->u.storage.dtype;
    uint64_t esize = lt_dtype_block_bytes(dtype);
    /* contiguous: stride[i] = prod(size[i+1:]); size-1 dims are free */
    uint64_t expect = 1, n_elems = 1;
    for (uint32_t d = t->n_dims; d-- > 0;) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor %s is not contiguous", path, shown);
        if (!lt_mul_u64(expect, t->shape[d], &expect))
            return lt_fail(err, LT_ERR_INVALID, "%s: tensor %s: shape overflows", path, shown);
    }
    n_elems = expect;
    uint64_t end, begin_bytes, member_need;
    if (!lt_add_u64(t->storage_offset, n_elems, &end) || end > st->u.storage.numel)
        return lt_fail(err, LT_ERR_INVALID, "%s: tensor %s: elements [%" PRIu64 ", +%" PRIu64
                       ") lie outside its storage of %" PRIu64, path, shown, t->storage_offset, n_elems,
                       st->u.storage.numel);
    if (!lt_mul_u64(st->u.storage.numel, esize, &member_need) ||
        !lt_mul_u64(t->storage_offset, esize, &begin_bytes))
        return lt_fail(err, LT_ERR_INVALID, "%s: tensor %s: storage size overflows", path, shown);
    const char *key = vm->objs[st->u.storage.key].u.str.s;
    char *member_name = lt_asprintf("%s/data/%s", root, key);
    if (!member_name)
        return lt_fail_nomem(err, path);
    zip_member *m = zip_find(z, member_name);
    free(member_name);
    if (!m)
        return lt_fail(err, LT_ERR_INVALID, "%s: tensor %s: storage member '%s/data/%s' is missing", path,
                       shown, root, lt_st_show(key).text);
    if (m->method != 0)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: tensor %s: storage member '%s' is compressed "
                       "(method %u); only stored members can be read", path, shown,
                       lt_st_show(m->name).text, m->method);
    if (m->flags & 1u)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: storage member '%s' is encrypted", path,
                       lt_st_show(m->name).text);
    if (m->csize != m->usize)
        return lt_fail(err, LT_ERR_INVALID, "%s: stored member '%s' has different sizes", path,
                       lt_st_show(m->name).text);
    if (member_need > m->usize)
        return lt_fail(err, LT_ERR_INVALID, "%s: tensor %s: storage of %" PRIu64 " elements needs %" PRIu64
                       " bytes but member '%s' holds %" PRIu64, path, shown, st->u.storage.numel,
                       member_need, lt_st_show(m->name).text, m->usize);
    lt_status s = zip_resolve(z, m, err);
    if (s != LT_OK)
        return s;
    uint64_t offset;
    if (!lt_add_u64(m->data_offset, begin_bytes, &offset))
        return lt_fail(err, LT_ERR_INVALID, "%s: tensor %s: offset overflows", path, shown);
    return lt_source_add_tensor(src, path, nt->name, dtype, t->n_dims, t->shape, offset, 0, err);
}

/* The tensors of the pickled dict, sorted by name. */
static lt_status build_source(lt_source *src, zip_archive *z, const char *root, pickle_vm *vm, size_t top,
                              lt_error *err)
{
    const char *path = src->path;
    const obj *d = &vm->objs[top];
    if (d->kind != V_DICT)
        return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: data.pkl holds a %s, not a dict of tensors", path,
                       kind_name(d->kind));
    size_t n = d->u.seq.n / 2;
    named_tensor *list = calloc(n ? n : 1, sizeof *list);
    if (!list)
        return lt_fail_nomem(err, path);
    lt_status s = LT_OK;
    for (size_t i = 0; i < n && s == LT_OK; i++) {
        const obj *k = &vm->objs[d->u.seq.items[2 * i]], *v = &vm->objs[d->u.seq.items[2 * i + 1]];
        size_t bad_at;
        if (k->kind != V_STR)
            s = lt_fail(err, LT_ERR_UNSUPPORTED, "%s: data.pkl dict has a %s key, not a string", path,
                        kind_name(k->kind));
        else if (k->u.str.len == 0 || strlen(k->u.str.s) != k->u.str.len ||
                 !lt_st_utf8_valid(k->u.str.s, k->u.str.len, &bad_at))
            s = lt_fail(err, LT_ERR_INVALID, "%s: data.pkl has a key that is empty, holds a NUL or is not UTF-8",
                        path);
        else if (v->kind != V_TENSOR)
            s = lt_fail(err, LT_ERR_UNSUPPORTED, "%s: data.pkl entry '%s' is a %s, not a tensor", path,
                        lt_st_show(k->u.str.s).text, kind_name(v->kind));
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
                return lt_fail(err, LT_ERR_UNSUPPORTED, "%s: the archive holds more than one data.pkl", path);
            }
            if (!(*root = lt_strndup(name, (size_t)(slash - name))))
                return lt_fail_nomem(err, path);
        }
    }
    if (!*root)
        return lt_fail(err, LT_ERR_INVALID, "%s: a ZIP archive without <root>/data.pkl (not a torch.save file)",
                       path);
    return LT_OK;
}

static lt_status check_byteorder(zip_archive *z, const char *root, lt_error *err)
{
    char *name = lt_asprintf("%s/byteorder", root);
    if (!name)
        return lt_fail_nomem(err, z->file->path);
    zip_member *m = zip_find(z, name);
    free(name);
    if (!m)
        return LT_OK; /* older files: little-endian */
    unsigned char *text = NULL;
    size_t len = 0;
    lt_status s = zip_read_small(z, m, 64, &text, &len, err);
    if (s != LT_OK)
        return s;
    if (len == 3 && memcmp(text, "big", 3) == 0)
        s = lt_fail(err, LT_ERR_UNSUPPORTED, "%s: big-endian tensor data (byteorder \"big\") is not supported",
                    z->file->path);
    else if (!(len == 6 && memcmp(text, "little", 6) == 0))
        s = lt_fail(err, LT_ERR_INVALID, "%s: byteorder member is neither \"little\" nor \"big\"", z->file->path);
    free(text);
    return s;
}

static lt_source *torch_open(const char *path, lt_error *err)
{
    torch_impl *impl = calloc(1, sizeof *impl);
    if (!impl) {
        lt_fail_nomem(err, path);
        return NULL;
    }
    impl->file.fd = -1;
    lt_source *src = NULL;
    zip_archive z = {0};
    pickle_vm vm = {.path = path, .err = err};
    unsigned char *pkl = NULL;
    char *root = NULL, *pkl_name = NULL;
    if (lt_rfile_open(&impl->file, path, err) != LT_OK) {
        free(impl);
        return NULL;
    }
    if (!(src = lt_source_new("torch", path, &torch_ops, err))) {
        torch_close(impl);
        return NULL;
    }
    src->impl = impl;
    lt_status s = zip_open(&z, &impl->file, err);
    if (s == LT_OK)
        s = find_root(&z, &root, err);
    if (s == LT_OK)
        s = check_byteorder(&z, root, err);
    if (s == LT_OK && !(pkl_name = lt_asprintf("%s/data.pkl", root)))
        s = lt_fail_nomem(err, path);
    if (s == LT_OK)
        s = zip_read_small(&z, zip_find(&z, pkl_name), PKL_MAX_BYTES, &pkl, &vm.len, err);
    size_t top = 0;
    if (s == LT_OK) {
        vm.data = pkl;
        s = vm_run(&vm, &top);
    }
    if (s == LT_OK)
        s = lt_source_add_file(src, path, err);
    if (s == LT_OK)
        s = build_source(src, &z, root, &vm, top, err);
    vm_free(&vm);
    zip_free(&z);
    free(pkl);
    free(pkl_name);
    free(root);
    if (s != LT_OK) {
        lt_source_close(src);
        return NULL;
    }
    return src;
}

static int torch_bid(const lt_probe *probe)
{
    if (probe->is_dir || probe->head_len < 4 || memcmp(probe->head, "PK\x03\x04", 4) != 0)
        return 0;
    if (ends_with(probe->path, ".bin") || ends_with(probe->path, ".pt") || ends_with(probe->path, ".pth"))
        return 80;
    return 20;
}

const lt_format lt_format_torch_bin = {
    .name = "torch",
    .bid = torch_bid,
    .open = torch_open,
    .create = NULL,
};
