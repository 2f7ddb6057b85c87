/* torch.h - what the legacy torch.save reader's three files share:
 * formats/zip.c (the archive), formats/pickle.c (the restricted pickle
 * machine) and formats/torch_bin.c (the tensor source). */
#ifndef LT_TORCH_H
#define LT_TORCH_H

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

static inline uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static inline uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t le64(const unsigned char *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- ZIP (formats/zip.c) ---- */

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
    const lti_rfile *file;
    zip_member *members;
    size_t n_members, cap_members;
    lti_strmap by_name;
} zip_archive;

lt_status lti_zip_open(zip_archive *z, const lti_rfile *f, lt_error *err);
zip_member *lti_zip_find(zip_archive *z, const char *name);
lt_status lti_zip_resolve(zip_archive *z, zip_member *m, lt_error *err);
lt_status lti_zip_read_small(zip_archive *z, zip_member *m, size_t max, unsigned char **out, size_t *out_len, lt_error *err);
void lti_zip_free(zip_archive *z);

/* ---- restricted pickle machine (formats/pickle.c) ---- */

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

lt_status lti_pickle_run(pickle_vm *vm, size_t *result);
void lti_pickle_free(pickle_vm *vm);

#endif
