/* pickle.c - a restricted pickle machine for torch.save's data.pkl: the
 * opcodes torch.save emits (and a few neighbours), and only the globals
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter and the torch.*Storage classes.  It
 * builds values and never calls anything; every count is bounded and
 * nothing recurses on the input's depth. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "torch.h"
/* ------------------------------------------------------------------ */
/* Restricted pickle machine                                            */
/* ------------------------------------------------------------------ */

void lti_pickle_free(pickle_vm *vm)
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
    return lti_fail(vm->err, status, "%s: data.pkl byte %zu: %s", vm->path, op_at, what);
}

static lt_status vm_new(pickle_vm *vm, enum val_kind kind, size_t *out)
{
    if (vm->n_objs >= MAX_OBJECTS)
        return lti_fail(vm->err, LT_ERR_UNSUPPORTED, "%s: data.pkl builds more than %u objects", vm->path,
                       MAX_OBJECTS);
    if (!lti_grow((void **)&vm->objs, &vm->cap_objs, vm->n_objs + 1, sizeof(obj)))
        return lti_fail_nomem(vm->err, vm->path);
    memset(&vm->objs[vm->n_objs], 0, sizeof(obj));
    vm->objs[vm->n_objs].kind = kind;
    *out = vm->n_objs++;
    return LT_OK;
}

static lt_status vm_push(pickle_vm *vm, size_t index)
{
    if (vm->n_stack >= MAX_STACK)
        return lti_fail(vm->err, LT_ERR_UNSUPPORTED, "%s: data.pkl stack deeper than %u", vm->path, MAX_STACK);
    if (!lti_grow((void **)&vm->stack, &vm->cap_stack, vm->n_stack + 1, sizeof(size_t)))
        return lti_fail_nomem(vm->err, vm->path);
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
        !lti_grow((void **)&o->u.seq.items, &o->u.seq.cap, need, sizeof(size_t)))
        return lti_fail_nomem(vm->err, vm->path);
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
        return lti_fail_nomem(vm->err, vm->path);
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
    char *m = lti_strndup(module, module_len), *n = lti_strndup(name, name_len);
    if (!m || !n)
        s = lti_fail_nomem(vm->err, vm->path);
    else
        s = vm_fail(vm, LT_ERR_UNSUPPORTED, op_at, "pickle global %s.%s is not allowed",
                    lti_show(m).text, lti_show(n).text);
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
            return lti_fail_nomem(vm->err, vm->path);
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
        if (!lti_grow((void **)&vm->memo, &vm->cap_memo, (size_t)key + 1, sizeof(long)))
            return lti_fail_nomem(vm->err, vm->path);
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

/* The memo (BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET) and the
 * globals (GLOBAL, STACK_GLOBAL), whose names are checked against the
 * allowed list. */
static lt_status memo_or_global(pickle_vm *vm, size_t at, unsigned char op)
{
    const unsigned char *arg = vm->data + vm->pos;
    lt_status s = LT_OK;
    size_t i = 0;
    switch (op) {
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
    default:
        s = vm_fail(vm, LT_ERR_INVALID, at, "opcode 0x%02x misrouted", op);
    }
    (void)arg;
    (void)i;
    return s;
}

/* The opcodes that push a number or a string (the opcode at AT has been
 * consumed; its argument follows). */
static lt_status push_literal(pickle_vm *vm, size_t at, unsigned char op)
{
    const unsigned char *arg = vm->data + vm->pos;
    lt_status s = LT_OK;
    size_t i = 0;
    switch (op) {
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
    default:
        s = vm_fail(vm, LT_ERR_INVALID, at, "opcode 0x%02x is not a literal", op);
    }
    return s;
}

/* Run the pickle; *result is the object index of what STOP returns. */
lt_status lti_pickle_run(pickle_vm *vm, size_t *result)
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
            if (!lti_grow((void **)&vm->marks, &vm->cap_marks, vm->n_marks + 1, sizeof(size_t)))
                return lti_fail_nomem(vm->err, vm->path);
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
        case 'J': case 'K': case 'M': /* numbers */
        case 0x8a: case 'G':
        case 'X': case 'B': case 'T': case 0x8c: case 'U': case 'C': case 0x8d: /* strings */
            s = push_literal(vm, at, op);
            break;
        case 'q': case 'r': case 0x94: case 'h': case 'j': /* the memo */
        case 'c': case 0x93: /* globals */
            s = memo_or_global(vm, at, op);
            break;
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

