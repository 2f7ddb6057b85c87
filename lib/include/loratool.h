/*
 * loratool.h - the one public header of libloratool.
 *
 * libloratool reads, checks and writes LoRA adapters and the model weight
 * files they apply to.  The library is layered:
 *
 *   1. errors     lt_status + lt_error: every fallible call takes an
 *                 lt_error * (may be NULL) and returns a status; the message
 *                 names the file and what is wrong, ready for a
 *                 "loratool: <message>" line.  The library never prints,
 *                 never exits and keeps no global mutable state.
 *   2. dtypes     one table of element types (safetensors dtypes and ggml
 *                 types) and exact conversions to and from f32.
 *   3. sources    a read-only, format-neutral set of named tensors plus
 *                 string metadata.  Opened by lt_source_open(), which probes
 *                 the path (magic bytes, directory contents), not the
 *                 extension.  Tensor bytes are read by range on demand.
 *   4. sinks      a writer: declare every tensor, then lt_sink_begin()
 *                 fixes the layout and writes the header, then tensor bytes
 *                 are written at any offset in any order (thread-safe), then
 *                 lt_sink_commit() fsyncs and renames the temporary file
 *                 into place.  lt_sink_abort() removes every trace.
 *   5. adapters   a PEFT adapter directory parsed into LoRA modules and
 *                 replacement tensors (lt_adapter).
 *
 * Shapes are always given outermost dimension first (PyTorch / safetensors
 * order): a Linear weight is [out, in].
 */
#ifndef LORATOOL_H
#define LORATOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LT_VERSION_STRING "0.1.0"

/* What the shared library exports: exactly the calls declared here (it is
 * built with hidden visibility; everything else is internal). */
#if defined(__GNUC__)
#define LT_API __attribute__((visibility("default")))
#else
#define LT_API
#endif

/* ------------------------------------------------------------------ */
/* 1. Errors                                                            */
/* ------------------------------------------------------------------ */

/* Status codes.  The numeric values of the input and I/O classes equal the
 * CLI's exit codes (spec/cli.md). */
typedef enum lt_status {
    LT_OK = 0,
    LT_ERR_USAGE = 2,       /* caller passed bad arguments or options      */
    LT_ERR_INVALID = 3,     /* input malformed, inconsistent or hostile    */
    LT_ERR_UNSUPPORTED = 5, /* input valid but of a kind we do not handle  */
    LT_ERR_IO = 4,          /* open/read/write/rename failed               */
    LT_ERR_NOMEM = 6        /* allocation failed                           */
} lt_status;

#define LT_ERROR_MAX 1024

/* Error record filled by a failing call.  Caller-owned (usually on the
 * stack); the library writes status and a NUL-terminated message of the
 * form "<file>: <what is wrong>" (no "loratool:" prefix, no newline). */
typedef struct lt_error {
    lt_status status;
    char message[LT_ERROR_MAX];
} lt_error;

/* Exit code the CLI uses for a status: 0 ok, 2 usage, 3 invalid or
 * unsupported input, 4 I/O error or out of memory. */
LT_API int lt_status_exit_code(lt_status status);

/* Short English name of a status ("invalid input", ...); static string. */
LT_API const char *lt_status_name(lt_status status);

/* ------------------------------------------------------------------ */
/* 2. Element types                                                     */
/* ------------------------------------------------------------------ */

typedef enum lt_dtype {
    LT_DTYPE_INVALID = 0,
    /* safetensors dtypes (ggml has some of them too) */
    LT_BOOL, LT_U8, LT_I8, LT_I16, LT_U16, LT_I32, LT_U32, LT_I64, LT_U64,
    LT_F16, LT_BF16, LT_F32, LT_F64, LT_F8_E4M3, LT_F8_E5M2, LT_F8_E8M0,
    LT_C64,
    /* ggml block-quantized types */
    LT_Q4_0, LT_Q4_1, LT_Q5_0, LT_Q5_1, LT_Q8_0, LT_Q8_1,
    LT_Q2_K, LT_Q3_K, LT_Q4_K, LT_Q5_K, LT_Q6_K, LT_Q8_K,
    LT_IQ2_XXS, LT_IQ2_XS, LT_IQ3_XXS, LT_IQ1_S, LT_IQ4_NL, LT_IQ3_S,
    LT_IQ2_S, LT_IQ4_XS, LT_IQ1_M, LT_TQ1_0, LT_TQ2_0, LT_MXFP4,
    LT_DTYPE_COUNT
} lt_dtype;

/* Canonical name: the safetensors spelling ("F32", "BF16") where one
 * exists, else ggml's ("Q4_K").  Static string; "INVALID" if out of range. */
LT_API const char *lt_dtype_name(lt_dtype t);

/* Lookup by safetensors dtype string (exact, case-sensitive).
 * Returns LT_DTYPE_INVALID when the name is not a safetensors dtype. */
LT_API lt_dtype lt_dtype_from_safetensors(const char *name);

/* Lookup by ggml type id (as stored in GGUF).  LT_DTYPE_INVALID for ids
 * that are unknown or removed.  lt_dtype_ggml_id returns -1 for types ggml
 * lacks (BOOL, U8, ...). */
LT_API lt_dtype lt_dtype_from_ggml(uint32_t ggml_id);
LT_API int lt_dtype_ggml_id(lt_dtype t);

/* Elements per block (1 for plain types) and bytes per block. */
LT_API uint32_t lt_dtype_block_elems(lt_dtype t);
LT_API uint32_t lt_dtype_block_bytes(lt_dtype t);

/* True for F16, BF16, F32, F64, F8_E4M3, F8_E5M2: the types
 * lt_convert_to_f32 / lt_convert_from_f32 handle. */
LT_API bool lt_dtype_is_float(lt_dtype t);

/* True for the float types and for the ggml block types that
 * lt_dequantize_row reads (Q4_0 ... Q6_K): the types whose values loratool
 * can compute with (lt_convert_to_f64 takes them all, and
 * lt_convert_from_f64 writes them all: the block types through
 * lt_quantize_row). */
LT_API bool lt_dtype_is_numeric(lt_dtype t);

/* Bytes taken by n elements of t.  Fails (returns false) when n is not a
 * multiple of the block size or the product overflows uint64. */
LT_API bool lt_dtype_nbytes(lt_dtype t, uint64_t n, uint64_t *out_bytes);

/* Scalar conversions.  f32 -> narrow types round to nearest, ties to even,
 * subnormal results included; infinities are kept where the type has them;
 * values that round beyond the largest finite value become +-Inf for
 * F16/BF16/F8_E5M2.  NaN stays NaN with its sign: F16/BF16 give a quiet NaN
 * keeping the top payload bits, the F8 types give S.11111.11 / S.1111.111.
 * F8_E4M3 is torch.float8_e4m3fn (bias 7, max 448, no Inf, S.1111.111 is
 * NaN) and behaves like torch's cast: it does not saturate; +-Inf and
 * finite values that round beyond 448 (magnitude > 464) become NaN, sign
 * kept.  Narrow -> f32 is exact; NaN payloads are widened bit for bit. */
LT_API float lt_f16_to_f32(uint16_t h);
LT_API uint16_t lt_f32_to_f16(float f);
LT_API float lt_bf16_to_f32(uint16_t h);
LT_API uint16_t lt_f32_to_bf16(float f);
LT_API float lt_f8e4m3_to_f32(uint8_t v);
LT_API uint8_t lt_f32_to_f8e4m3(float f);
LT_API float lt_f8e5m2_to_f32(uint8_t v);
LT_API uint8_t lt_f32_to_f8e5m2(float f);

/* Convert n little-endian elements of src_type at src to f32 at dst.
 * Returns LT_ERR_UNSUPPORTED (no message) for a non-float type. */
LT_API lt_status lt_convert_to_f32(lt_dtype src_type, const void *src, float *dst, size_t n);
/* Convert n f32 values to dst_type (little-endian), rounding once. */
LT_API lt_status lt_convert_from_f32(lt_dtype dst_type, const float *src, void *dst, size_t n);

/* The same in double precision, for accumulators: to_f64 is exact;
 * from_f64 rounds once, to nearest even, from the double value itself (for
 * F16/BF16/F8 through a round-to-odd f32, which makes the second rounding
 * exact), so a merged value is never rounded twice.  A ggml block type
 * (from_f64 only) is written by rounding each value to f32 (nearest even)
 * and packing with lt_quantize_row, whose refusals it returns. */
LT_API lt_status lt_convert_to_f64(lt_dtype src_type, const void *src, double *dst, size_t n);
LT_API lt_status lt_convert_from_f64(lt_dtype dst_type, const double *src, void *dst, size_t n);

/* ggml blocks (lib/quant.c, lib/quant_k.c).  lt_dequantize_row expands n elements (a
 * multiple of the type's block size) of type at src into f32 at dst, as
 * ggml's dequantize_row_* does, bit for bit.  Types: F32, F16, BF16, F64,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 * lt_quantize_row packs n f32 values into blocks of Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K, byte for byte as ggml's
 * reference quantizers quantize_row_<type>_ref do (no importance matrix:
 * what llama-quantize writes without --imatrix), as built for x86-64
 * (every float product and sum rounded on its own; lib/quant_k.c says
 * why).  Each block depends only on its own values, so rows may be
 * quantized in any split.  Q8_0 and Q4_0 accept NaN and Inf (they become
 * level 0, as in ggml's x86-64 build); the other types refuse a NaN or
 * Inf anywhere in src with LT_ERR_INVALID (no message) before writing
 * anything.  Speed: bench/quant_bench.sh (the K-quants search many
 * scales per block, ~10-40 M elements per second per core).
 * Both return LT_ERR_UNSUPPORTED (no message) for other types (IQ*, TQ*,
 * MXFP4, Q8_1, Q8_K, ...) and LT_ERR_USAGE when n is not a whole number
 * of blocks. */
LT_API lt_status lt_dequantize_row(lt_dtype type, const void *src, float *dst, size_t n);
LT_API lt_status lt_quantize_row(lt_dtype type, const float *src, void *dst, size_t n);

/* ------------------------------------------------------------------ */
/* 3. Tensor sources                                                    */
/* ------------------------------------------------------------------ */

#define LT_MAX_DIMS 8

/* One tensor as declared by its file.  Owned by the source; valid until
 * lt_source_close. */
typedef struct lt_tensor_info {
    const char *name;
    lt_dtype dtype;
    uint32_t n_dims;            /* 0 for a scalar                          */
    uint64_t shape[LT_MAX_DIMS];/* outermost first; unused entries are 0   */
    uint64_t n_elems;           /* product of shape (1 for a scalar)       */
    uint64_t n_bytes;           /* bytes of data                           */
    uint64_t offset;            /* offset in its file's data section       */
    uint32_t file_index;        /* shard number for sharded sources, else 0*/
} lt_tensor_info;

typedef struct lt_source lt_source;

/* Open PATH as a tensor source, choosing the format by probing: a
 * safetensors file, a sharded safetensors model (directory holding
 * model.safetensors.index.json, or that index file), a directory holding a
 * single model.safetensors, a PEFT adapter directory (its weights file), or
 * a GGUF file (spec/gguf.md).
 * Reads and validates headers only.  Returns NULL and fills err on failure.
 * Free with lt_source_close. */
LT_API lt_source *lt_source_open(const char *path, lt_error *err);

/* Close and free; NULL is accepted. */
LT_API void lt_source_close(lt_source *src);

/* Format name: "safetensors", "safetensors-sharded", "peft", "gguf". */
LT_API const char *lt_source_format(const lt_source *src);
/* The path given to lt_source_open. */
LT_API const char *lt_source_path(const lt_source *src);

LT_API size_t lt_source_tensor_count(const lt_source *src);
/* Tensor i in file order (ascending offset; shard by shard).  i must be in
 * range. */
LT_API const lt_tensor_info *lt_source_tensor(const lt_source *src, size_t i);
/* Index of the tensor called name, or -1. */
LT_API long lt_source_find(const lt_source *src, const char *name);

/* Read len bytes of tensor i starting at byte offset off into dst (caller
 * buffer).  off + len must not exceed the tensor's n_bytes (else
 * LT_ERR_USAGE).  Safe to call from several threads at once. */
LT_API lt_status lt_source_read(lt_source *src, size_t i, uint64_t off, void *dst,
                         size_t len, lt_error *err);

/* Read elements [first, first+count) of tensor i, converted to f32, into
 * dst.  The tensor must have a float dtype (else LT_ERR_UNSUPPORTED). */
LT_API lt_status lt_source_read_f32(lt_source *src, size_t i, uint64_t first,
                             uint64_t count, float *dst, lt_error *err);

/* String metadata (safetensors __metadata__; GGUF string scalars), in file
 * order. */
LT_API size_t lt_source_meta_count(const lt_source *src);
LT_API const char *lt_source_meta_key(const lt_source *src, size_t i);
LT_API const char *lt_source_meta_value(const lt_source *src, size_t i);
/* Value for key, or NULL. */
LT_API const char *lt_source_meta_get(const lt_source *src, const char *key);

/* Number of files the source spans (shards), and the path of file k. */
LT_API size_t lt_source_file_count(const lt_source *src);
LT_API const char *lt_source_file_path(const lt_source *src, size_t k);

/* GGUF key-values.  A GGUF source keeps every key-value pair of its header
 * with its type; string scalars also appear in the string metadata above.
 * On any other source there are none: count 0, version 0, alignment 0.
 * Indexes i count from 0 in file order; j is the element of an array (0 for
 * a scalar).  A getter returns false / NULL when i or j is out of range or
 * the value is not of a fitting type; it never aborts. */
typedef enum lt_gguf_type {          /* value type ids as stored in GGUF     */
    LT_GGUF_U8 = 0, LT_GGUF_I8 = 1, LT_GGUF_U16 = 2, LT_GGUF_I16 = 3,
    LT_GGUF_U32 = 4, LT_GGUF_I32 = 5, LT_GGUF_F32 = 6, LT_GGUF_BOOL = 7,
    LT_GGUF_STRING = 8, LT_GGUF_ARRAY = 9, LT_GGUF_U64 = 10, LT_GGUF_I64 = 11,
    LT_GGUF_F64 = 12
} lt_gguf_type;

/* "u32", "string", "array", ...; "?" for an unknown id.  Static string. */
LT_API const char *lt_gguf_type_name(int type);

/* GGUF version (2 or 3), and general.alignment (32 when absent). */
LT_API uint32_t lt_source_gguf_version(const lt_source *src);
LT_API uint64_t lt_source_gguf_alignment(const lt_source *src);

LT_API size_t lt_source_kv_count(const lt_source *src);
/* Key i (NUL-terminated, never contains NUL), or NULL. */
LT_API const char *lt_source_kv_key(const lt_source *src, size_t i);
/* Index of key, or -1. */
LT_API long lt_source_kv_find(const lt_source *src, const char *key);
/* Value type of pair i (LT_GGUF_ARRAY for an array), or -1. */
LT_API int lt_source_kv_type(const lt_source *src, size_t i);
/* Element type of an array; for a scalar, its own type; -1 out of range. */
LT_API int lt_source_kv_elem_type(const lt_source *src, size_t i);
/* Elements of an array; 1 for a scalar; 0 out of range. */
LT_API uint64_t lt_source_kv_len(const lt_source *src, size_t i);
/* Integer value: u64 takes any unsigned type and non-negative signed
 * values; i64 takes any integer type whose value fits in int64_t. */
LT_API bool lt_source_kv_u64(const lt_source *src, size_t i, uint64_t j, uint64_t *out);
LT_API bool lt_source_kv_i64(const lt_source *src, size_t i, uint64_t j, int64_t *out);
/* F32 or F64 value (exact), or an integer value converted to double. */
LT_API bool lt_source_kv_f64(const lt_source *src, size_t i, uint64_t j, double *out);
/* BOOL value (any non-zero byte is true). */
LT_API bool lt_source_kv_bool(const lt_source *src, size_t i, uint64_t j, bool *out);
/* STRING value: NUL-terminated, *len (may be NULL) gets its length; the
 * bytes are as stored and may contain NUL.  NULL if not a string. */
LT_API const char *lt_source_kv_str(const lt_source *src, size_t i, uint64_t j, size_t *len);

/* ------------------------------------------------------------------ */
/* 4. Tensor sinks                                                      */
/* ------------------------------------------------------------------ */

typedef struct lt_sink lt_sink;

typedef struct lt_sink_options {
    /* For a safetensors output that is a directory: the largest shard in
     * bytes of tensor data (0 = one file, model.safetensors). */
    uint64_t shard_size;
    /* fsync each tensor file before renaming it into place, and its
     * directory after, so a completed output survives a power cut.  Off by
     * default, as with cp: the kernel writes the data back later.  Small
     * files (an index, copied configs) are always fsynced. */
    bool fsync;
} lt_sink_options;

/* Create a sink that will write PATH.  FORMAT: "safetensors" (PATH is the
 * file; or, when opts->shard_size > 0, a directory that gets
 * model-0000k-of-0000n.safetensors shards plus
 * model.safetensors.index.json), or "gguf" (a GGUF v3 file: spec/gguf.md).  Nothing is created on disk until
 * lt_sink_begin.  opts may be NULL.  Free with lt_sink_abort or
 * lt_sink_commit. */
LT_API lt_sink *lt_sink_create(const char *format, const char *path,
                        const lt_sink_options *opts, lt_error *err);

/* Declare a tensor; returns its index (>= 0) or -1 with err set (duplicate
 * name, bad shape, too many dims).  Tensors are written in the order
 * declared.  Only before lt_sink_begin. */
LT_API long lt_sink_add_tensor(lt_sink *sink, const char *name, lt_dtype dtype,
                        uint32_t n_dims, const uint64_t *shape, lt_error *err);

/* Set a metadata key (copied).  Later calls with the same key replace the
 * value.  Only before lt_sink_begin. */
LT_API lt_status lt_sink_set_meta(lt_sink *sink, const char *key, const char *value,
                           lt_error *err);

/* Set a typed key-value pair (copied); later calls with the same key
 * replace it.  TYPE is an lt_gguf_type other than LT_GGUF_ARRAY; VALUE
 * points at one value of the C type that matches (uint8_t, int8_t,
 * uint16_t, int16_t, uint32_t, int32_t, float, bool, uint64_t, int64_t,
 * double) or, for LT_GGUF_STRING, is the NUL-terminated string itself.
 * lt_sink_set_kv_array stores COUNT such values as an array: VALUES is a C
 * array of that type (const char * pointers for strings).  A GGUF sink
 * writes them in the order first set, before string metadata set with
 * lt_sink_set_meta (a typed key wins over metadata of the same name); a
 * u32 "general.alignment" (a power of two) also sets the data alignment.
 * Other sinks take string scalars as metadata and refuse everything else
 * (LT_ERR_UNSUPPORTED).  Only before lt_sink_begin. */
LT_API lt_status lt_sink_set_kv(lt_sink *sink, const char *key, int type, const void *value,
                         lt_error *err);
LT_API lt_status lt_sink_set_kv_array(lt_sink *sink, const char *key, int elem_type,
                               const void *values, size_t count, lt_error *err);

/* Copy every typed key-value pair of SRC (a GGUF source; none for others)
 * into SINK, as lt_sink_set_kv / _array would. */
LT_API lt_status lt_sink_copy_kvs(lt_sink *sink, const lt_source *src, lt_error *err);

/* Fix the layout, create the temporary output file(s) next to PATH and
 * write the header(s). */
LT_API lt_status lt_sink_begin(lt_sink *sink, lt_error *err);

/* Bytes of tensor index (as declared) */
LT_API uint64_t lt_sink_tensor_bytes(const lt_sink *sink, long index);

/* Write len bytes at byte offset off of tensor index.  Thread-safe after
 * lt_sink_begin; writes may come in any order. */
LT_API lt_status lt_sink_write(lt_sink *sink, long index, uint64_t off,
                        const void *data, size_t len, lt_error *err);

/* Finish: fsync, rename into place, fsync the directory, free the sink
 * (also on failure, after removing the temporary files). */
LT_API lt_status lt_sink_commit(lt_sink *sink, lt_error *err);

/* Discard: remove temporary files and free.  NULL is accepted. */
LT_API void lt_sink_abort(lt_sink *sink);

/* ------------------------------------------------------------------ */
/* 5. PEFT adapters                                                     */
/* ------------------------------------------------------------------ */

typedef enum lt_module_kind {
    LT_MODULE_LINEAR = 0,    /* lora_A.weight [r,in], lora_B.weight [out,r]  */
    LT_MODULE_EMBEDDING,     /* lora_embedding_A [r,vocab], _B [dim,r]       */
    LT_MODULE_CONV           /* lora_A [r,in,kh,kw], lora_B [out,r,1,1]      */
} lt_module_kind;

/* One LoRA module.  Strings and the struct are owned by the adapter. */
typedef struct lt_lora_module {
    const char *name;        /* module path, "base_model.model." stripped    */
    const char *target;      /* base tensor it changes: name + ".weight"     */
    lt_module_kind kind;
    uint32_t rank;           /* rows of A                                    */
    double alpha;            /* from alpha_pattern or lora_alpha             */
    double scale;            /* alpha/rank, or alpha/sqrt(rank) with rsLoRA;
                                AdaLoRA: see spec/peft.md                    */
    uint64_t out_features;   /* delta shape [out, in] (PyTorch Linear view)  */
    uint64_t in_features;    /* for conv: in_channels * kernel elements      */
    bool fan_in_fan_out;     /* config flag (GPT-2 Conv1D stores W as [in,out])*/
    bool a_transposed;       /* A stored as its transpose (GGUF token_embd
                                lora_a [vocab, r]); readers of the factors
                                undo it                                      */
    long tensor_a;           /* index in the adapter's source                */
    long tensor_b;
    long tensor_e;           /* AdaLoRA lora_E, or -1                        */
    long tensor_magnitude;   /* DoRA lora_magnitude_vector, or -1            */
    long tensor_bias;        /* lora_B.bias (lora_bias), or -1               */
    uint64_t n_params;       /* elements of all this module's tensors        */
    uint32_t conv_groups;    /* conv: groups of the base conv the delta is
                                for, 0 read as 1; a loralib ConvLoRA on a
                                grouped conv (> 1) has no PEFT form         */
} lt_lora_module;

typedef enum lt_replacement_kind {
    LT_REPLACE_FULL = 0,     /* tensor replaces the base tensor outright      */
    LT_REPLACE_TOKEN_ROWS    /* trainable_tokens_delta: rows at token indices */
} lt_replacement_kind;

/* A non-LoRA tensor saved in the adapter (modules_to_save copies, biases,
 * resized embeddings, trainable token rows). */
typedef struct lt_replacement {
    const char *key;         /* key in the weights file                      */
    const char *target;      /* base tensor name it replaces                 */
    lt_replacement_kind kind;
    long tensor;             /* index in the adapter's source                */
    uint64_t n_params;
    const uint64_t *token_indices;  /* TOKEN_ROWS: row i of the tensor replaces
                                       base row token_indices[i]              */
    size_t n_token_indices;
} lt_replacement;

/* The parsed adapter_config.json.  Strings owned by the adapter. */
typedef struct lt_peft_config {
    const char *peft_type;           /* "LORA", "ADALORA"                      */
    const char *task_type;           /* may be NULL                            */
    const char *base_model;          /* base_model_name_or_path, may be NULL   */
    const char *peft_version;        /* may be NULL                            */
    uint32_t r;                      /* default rank                           */
    double lora_alpha;
    bool use_rslora;
    bool use_dora;
    bool fan_in_fan_out;
    bool lora_bias;
    const char *bias;                /* "none", "all", "lora_only"             */
    bool has_rank_pattern;
    bool has_alpha_pattern;
    bool has_layer_replication;      /* merging is undefined when set          */
    uint32_t adalora_init_r;         /* AdaLoRA init_r (default 12)            */
    size_t n_target_modules;         /* list form; 0 with target_regex set     */
    const char *const *target_modules;
    const char *target_regex;        /* string form (re.fullmatch), or NULL    */
    size_t n_modules_to_save;
    const char *const *modules_to_save;
    size_t n_unknown_keys;           /* keys we do not know (kept, reported)   */
    const char *const *unknown_keys;
} lt_peft_config;

/* The LoRA model: modules whose factors are tensors of a source (a file,
 * or memory for computed models), replacement tensors, the config, and
 * warnings.  Read from PEFT directories, legacy adapter_model.bin and GGUF
 * LoRA files; made by resize, combine and extract; saved by
 * lt_adapter_save_peft and lt_adapter_save_gguf. */
typedef struct lt_adapter lt_adapter;

/* Open an adapter: a PEFT adapter directory (adapter_config.json +
 * adapter_model.safetensors or .bin) or a GGUF LoRA file, chosen by probing
 * the path.  Refuses non-LoRA PEFT types by name (LT_ERR_UNSUPPORTED,
 * "unsupported adapter type LOHA"), and weights whose keys contradict the
 * config.  Returns NULL with err filled on failure.  Free with
 * lt_adapter_close. */
LT_API lt_adapter *lt_adapter_open(const char *path, lt_error *err);
/* Free the model and its source; NULL is accepted. */
LT_API void lt_adapter_close(lt_adapter *ad);

LT_API const lt_peft_config *lt_adapter_config(const lt_adapter *ad);
/* The weights file as a tensor source (owned by the adapter). */
LT_API lt_source *lt_adapter_source(const lt_adapter *ad);

/* Modules and replacements in file order; i must be below the count.
 * Owned by the adapter. */
LT_API size_t lt_adapter_module_count(const lt_adapter *ad);
LT_API const lt_lora_module *lt_adapter_module(const lt_adapter *ad, size_t i);
LT_API size_t lt_adapter_replacement_count(const lt_adapter *ad);
LT_API const lt_replacement *lt_adapter_replacement(const lt_adapter *ad, size_t i);

/* Elements of LoRA tensors / of replacement tensors. */
LT_API uint64_t lt_adapter_lora_params(const lt_adapter *ad);
LT_API uint64_t lt_adapter_replacement_params(const lt_adapter *ad);

/* Warnings gathered while reading (unknown config keys, ...), as lines;
 * i must be below the count. */
LT_API size_t lt_adapter_warning_count(const lt_adapter *ad);
LT_API const char *lt_adapter_warning(const lt_adapter *ad, size_t i);

/* The GGUF architecture when the model's module names and targets are
 * GGUF tensor names ("blk.0.attn_q"; a GGUF LoRA, or what resize/combine
 * made of GGUF LoRAs; "" when the file names none), NULL when they are
 * Hugging Face names.  Owned by the adapter. */
LT_API const char *lt_adapter_gguf_arch(const lt_adapter *ad);

/* Find the base tensor that TARGET (a module's or replacement's base tensor
 * name, e.g. "model.layers.0.self_attn.q_proj.weight") refers to in BASE:
 * the exact name; else the name with leading components dropped one at a
 * time (an adapter for a causal-LM over a base saved as the bare model:
 * "model.layers.0..." -> "layers.0...", "transformer.h.0..." -> "h.0...");
 * else the one base tensor whose name ends with "." + TARGET (a base saved
 * with a wrapper prefix).  For "lm_head.weight" missing from a base with
 * tied embeddings, returns -1 (the caller decides).  Returns the index or
 * -1. */
LT_API long lt_base_find(const lt_source *base, const char *target);

/* How a module's delta [out, in] lies on a base tensor. */
typedef enum lt_fit {
    LT_FIT_NONE = 0,      /* shapes do not fit                               */
    LT_FIT_DIRECT,        /* base is [out, in] (embedding: [vocab, dim];
                             conv: [out, in_ch, k...])                       */
    LT_FIT_TRANSPOSED     /* base is [in, out]: GPT-2 Conv1D (fan_in_fan_out)*/
} lt_fit;

/* Decide the fit from the base tensor's shape; a square base is transposed
 * only when the module's fan_in_fan_out flag says so. */
LT_API lt_fit lt_module_fit(const lt_lora_module *m, const lt_tensor_info *base);

/* Save AD as a PEFT LoRA adapter directory DIR (created if missing):
 * adapter_config.json and adapter_model.safetensors with keys
 * "base_model.model.<name>.lora_A.weight" / ".lora_B.weight" (embeddings:
 * lora_embedding_A / _B), factors in DTYPE (F32, F16 or BF16), then the
 * replacement tensors as they are.  r and lora_alpha are the most common
 * rank and alpha; modules that differ get rank_pattern / alpha_pattern
 * entries (their full names, regex-escaped), so PEFT and loratool compute
 * the same scale; use_rslora, fan_in_fan_out, base model, task type and
 * modules_to_save come from the model's config.  target_modules lists the
 * distinct last name components.  Conv modules are saved in PEFT's conv
 * form (lora_A [r, in, k...], lora_B [out, r, 1...]).  Modules a plain
 * PEFT LoRA cannot hold (AdaLoRA's E, DoRA, lora biases, a conv module
 * with conv_groups > 1, a transposed A) are LT_ERR_UNSUPPORTED.  Each
 * file appears only complete. */
LT_API lt_status lt_adapter_save_peft(const lt_adapter *ad, const char *dir, lt_dtype dtype, lt_error *err);

/* ------------------------------------------------------------------ */
/* 5b. Merging adapters into base weights                               */
/* ------------------------------------------------------------------ */

/* One adapter to merge and the factor its delta is multiplied by. */
typedef struct lt_merge_input {
    const lt_adapter *adapter;   /* borrowed; must outlive the plan          */
    double weight;               /* 1 = as trained; negative subtracts       */
} lt_merge_input;

typedef struct lt_merge_progress {
    size_t tensors_done, tensors_total;
    uint64_t bytes_done, bytes_total;  /* output tensor bytes               */
} lt_merge_progress;

typedef struct lt_merge_options {
    lt_dtype out_dtype;     /* LT_DTYPE_INVALID: keep each tensor's dtype (a
                               block-quantized tensor that gets a delta is
                               re-quantized to its own type); F32/F16/BF16:
                               that for every float tensor and every merged
                               one; a ggml block type lt_quantize_row writes:
                               that for every 2-D tensor that gets a delta
                               (rows must be whole blocks), others kept     */
    unsigned threads;       /* 0 = one per online processor                  */
    bool allow_missing;     /* skip modules whose target is absent (listed)  */
    /* Compute every merged element in float64.  Slower, and the same bytes:
     * the default float32 kernel writes a value only where it proves it
     * equal to the float64 one (spec/merge.md); for tests and doubters. */
    bool double_kernel_only;
    /* Called from worker threads, serialized, at most every few MiB. */
    void (*progress)(void *ctx, const lt_merge_progress *p);
    void *progress_ctx;
    /* Check only (audit): make every structural check of the plan (names,
     * shapes, dtypes, token ids, bias presence, config) from headers and
     * token ids alone, reading no factor data; the plan cannot be run.
     * With on_violation set, each check that fails is passed to it (the
     * message as lt_error would hold it) and planning goes on; the plan is
     * then returned even when something failed. */
    bool check_only;
    void (*on_violation)(void *ctx, const char *message);
    void *violation_ctx;
} lt_merge_options;

/* What a merge did or would do. */
typedef struct lt_merge_stats {
    size_t tensors_total;       /* output tensors                            */
    size_t tensors_copied;      /* byte for byte                             */
    size_t tensors_converted;   /* dtype changed only                        */
    size_t tensors_merged;      /* received at least one delta               */
    size_t tensors_replaced;    /* taken from an adapter (modules_to_save)   */
    size_t tensors_added;       /* adapter tensors with no base counterpart  */
    uint64_t bytes_written;     /* tensor data bytes                         */
    size_t modules_skipped;     /* with allow_missing                        */
    /* merged tensors written in a ggml block type other than Q8_0: quantized
     * again with ggml's reference quantizer, without the importance matrix
     * most published quantized models were made with */
    size_t tensors_requantized;
} lt_merge_stats;

typedef struct lt_merge_plan lt_merge_plan;

/* Check every name and shape and plan the merge of INPUTS into BASE: W' =
 * W + sum_i weight_i * scale_i * B_i A_i per module (spec/merge.md for
 * DoRA, lora_bias, embeddings, conv, fan_in_fan_out, replacements).
 * Nothing is read but headers and the adapters' own tensors.  Errors: a
 * missing target (unless allow_missing), a shape that does not fit, two
 * adapters replacing one tensor, a config whose merge is undefined, a
 * base tensor that is not a float type.  BASE and the adapters are
 * borrowed.  Free with lt_merge_plan_free. */
LT_API lt_merge_plan *lt_merge_plan_create(lt_source *base, const lt_merge_input *inputs,
                                    size_t n_inputs, const lt_merge_options *opts,
                                    lt_error *err);
LT_API void lt_merge_plan_free(lt_merge_plan *plan);

/* Counts as planned (bytes_written is the planned output size). */
LT_API lt_merge_stats lt_merge_plan_stats(const lt_merge_plan *plan);
/* Modules per input that will be merged. */
LT_API size_t lt_merge_plan_modules_merged(const lt_merge_plan *plan, size_t input);
/* Skipped modules (allow_missing), as "adapter: module: reason" lines. */
LT_API size_t lt_merge_plan_skipped_count(const lt_merge_plan *plan);
LT_API const char *lt_merge_plan_skipped(const lt_merge_plan *plan, size_t i);

/* Run the plan into SINK (fresh from lt_sink_create: the merge declares the
 * tensors, copies BASE's metadata, adds the caller's metadata already set on
 * the sink, and commits).  Output bytes do not depend on the thread count.
 * A result that is NaN or Inf where the base was finite is an error naming
 * the tensor.  On any error the sink is aborted (no output left).  The sink
 * is consumed either way. */
LT_API lt_status lt_merge_run(lt_merge_plan *plan, lt_sink *sink, lt_merge_stats *stats,
                       lt_error *err);

/* ------------------------------------------------------------------ */
/* 5c. Conversion between PEFT and GGUF (llama.cpp) adapters            */
/* ------------------------------------------------------------------ */

/* What a conversion needs to know of the base model. */
typedef struct lt_arch_info {
    char arch[32];        /* GGUF architecture: llama, qwen2, gemma3, ...    */
    uint32_t n_head;      /* attention heads (Q rows permutation)            */
    uint32_t n_head_kv;   /* key/value heads (K rows permutation)            */
    /* The dimensions every module's shape is checked against (0 when the
     * base does not say): hidden size, feed-forward size, head size
     * (default hidden / n_head), vocabulary. */
    uint64_t n_embd, n_ff, head_dim, n_vocab;
} lt_arch_info;

/* Read the architecture from BASE: a config.json, a directory holding one,
 * or a GGUF model (general.architecture, <arch>.attention.head_count[_kv]).
 * LT_ERR_UNSUPPORTED for a model type without a name map. */
LT_API lt_status lt_arch_info_read(const char *base, lt_arch_info *out, lt_error *err);

/* Save AD as a GGUF LoRA adapter llama.cpp loads (spec/convert.md).  A
 * model with Hugging Face names needs ARCH: tensors "<gguf name>.lora_a" /
 * ".lora_b", llama.cpp's Q/K row permutation applied to lora_b for llama,
 * each module's exact scale folded into lora_b where alpha / r of the file
 * would differ (rsLoRA, alpha_pattern, AdaLoRA), token embeddings as
 * llama.cpp expects, factors in OUTTYPE (F32, F16, BF16 or Q8_0; factors
 * whose rows are not whole Q8_0 blocks are written F16).  A model with GGUF
 * names (lt_adapter_gguf_arch) ignores ARCH and is written F32 with alpha 0
 * (scale 1), its scales folded into lora_b.  DoRA, lora biases, conv
 * modules and replacement tensors cannot be represented: LT_ERR_UNSUPPORTED
 * naming them; a model with HF names and no ARCH is LT_ERR_USAGE.  Nothing
 * is written on error. */
LT_API lt_status lt_adapter_save_gguf(const lt_adapter *ad, const lt_arch_info *arch, const char *out_path,
                               lt_dtype outtype, lt_error *err);

/* A GGUF LoRA model AD as the PEFT adapter it stands for: Hugging Face
 * names for ARCH (whose general.architecture must match AD's), Q/K rows in
 * HF order, F32 factors in PEFT layout, alpha from adapter.lora.alpha (0
 * means scale 1: alpha = r), modules in the order of their lora_a tensors.
 * A new model (free with lt_adapter_close; independent of AD), or NULL with
 * err set. */
LT_API lt_adapter *lt_adapter_to_hf(const lt_adapter *ad, const lt_arch_info *arch, lt_error *err);

/* A PEFT model AD as a GGUF LoRA over a GGUF model of ARCH: GGUF names,
 * lora_b rows in llama.cpp's Q/K order (bytes moved, values untouched),
 * the same exact scales, so merging it into a GGUF base rounds each element
 * once.  What a GGUF LoRA cannot hold is refused as by
 * lt_adapter_save_gguf.  The new model reads AD's tensors: AD must outlive
 * it.  Free with lt_adapter_close; NULL with err set on failure. */
LT_API lt_adapter *lt_adapter_for_gguf(const lt_adapter *ad, const lt_arch_info *arch, lt_error *err);

/* Convert a whole weight file: SRC in safetensors (Hugging Face names and
 * row order) to a GGUF model OUT_PATH, or SRC in GGUF to safetensors:
 * names through the map, llama's Q/K rows permuted (weights and biases),
 * Gemma norms stored as 1 + w in GGUF, 1-D tensors F32 in GGUF, OUTTYPE
 * (F32/F16/BF16, LT_DTYPE_INVALID = keep) for the other float tensors;
 * quantized GGUF tensors become F32 safetensors.  The GGUF gets only the
 * architecture keys (general.architecture, block_count, head counts): no
 * tokenizer, no hyperparameters beyond those.  rotary_emb.inv_freq buffers
 * are skipped (*SKIPPED counts them).  Tensors are streamed. */
LT_API lt_status lt_convert_model(lt_source *src, const lt_arch_info *arch, const char *out_path,
                           lt_dtype outtype, size_t *skipped, lt_error *err);

/* ------------------------------------------------------------------ */
/* 5d. Adapter surgery: resize, combine (spec/surgery.md)               */
/* ------------------------------------------------------------------ */

typedef enum lt_rank_rule_kind {
    LT_RANK_KEEP = 0,    /* no truncation (combine: exact concatenation)       */
    LT_RANK_FIXED,       /* value = the rank                                   */
    LT_RANK_ENERGY,      /* value = fraction of sum s_i^2 to keep (0, 1]       */
    LT_RANK_RATIO        /* value = X: keep s_i > s_0 / X                      */
} lt_rank_rule_kind;

typedef struct lt_rank_rule {
    lt_rank_rule_kind kind;
    double value;
} lt_rank_rule;

/* What happened to one module. */
typedef struct lt_surgery_module {
    char *name;
    uint32_t old_rank;       /* resize: the module's rank; combine: sum of ranks */
    uint32_t new_rank;
    double energy_kept;      /* sum of kept s_i^2 / sum of all, 1 when all zero  */
    double rel_error;        /* ||dW - dW'||_F / ||dW||_F (0 when dW = 0)        */
    bool zero;               /* the delta is exactly zero                        */
} lt_surgery_module;

typedef struct lt_surgery_report {
    lt_surgery_module *modules;
    size_t n_modules;
    uint64_t params_before, params_after;   /* LoRA factor elements */
} lt_surgery_report;

LT_API void lt_surgery_report_free(lt_surgery_report *report);

/* The operations below return a new model in *OUT (free with
 * lt_adapter_close; NULL on failure) that the caller saves with
 * lt_adapter_save_peft or lt_adapter_save_gguf.  Its factors live in
 * memory (F32); replacement tensors are read from the inputs, which must
 * outlive it.  It has GGUF names when every input has them. */

/* Resize AD: per module, the truncated SVD of scale * B A
 * computed from QR factors of B and A^T (the dense delta is never formed),
 * the smallest rank that meets RULE (never above the module's rank, at
 * least 1); new B = U sqrt(S), A = sqrt(S) V^T, with alpha = rank (scale
 * 1), so every module keeps its exact effective scale in PEFT and
 * llama.cpp.  Replacement tensors are carried over.  DoRA, lora biases and conv
 * modules are refused (LT_ERR_UNSUPPORTED).  *REPORT (caller frees) gets
 * one entry per module. */
LT_API lt_status lt_resize(const lt_adapter *ad, const lt_rank_rule *rule, lt_adapter **out,
                    lt_surgery_report *report, lt_error *err);

/* Combine N adapters: dW = sum_i weight_i * scale_i * B_i A_i per module,
 * exact by concatenation ([w1 s1 B1 | w2 s2 B2 ...] [A1; A2; ...], rank =
 * sum of ranks, scale 1) with LT_RANK_KEEP, else truncated as lt_resize
 * does.  Modules present in only some adapters are taken from those;
 * adapters whose shapes for one module differ are refused. */
LT_API lt_status lt_combine(const lt_adapter *const *ads, const double *weights, size_t n,
                     const lt_rank_rule *rule, lt_adapter **out, lt_surgery_report *report,
                     lt_error *err);

typedef enum lt_combine_method {
    LT_COMBINE_TIES = 1,   /* trim to density, elect sign, disjoint mean     */
    LT_COMBINE_DARE        /* Bernoulli(density) keep, rescale 1/density, sum */
} lt_combine_method;

/* Combine N adapters by TIES (Yadav et al. 2023) or DARE (Yu et al. 2023)
 * on each module's dense delta tau_i = weight_i * scale_i * B_i A_i:
 *   TIES: keep the density fraction of each tau_i's entries with the
 *         largest magnitude (ties broken by position), elect each entry's
 *         sign as sign(sum_i tau_i), average the kept entries that agree
 *         with it;
 *   DARE: keep each entry with probability density (seeded splitmix64
 *         stream per adapter and module), divide by density, sum;
 * then truncate back to RANK (0 = the largest input rank) by randomized
 * SVD.  Deterministic for a seed.  Memory: the dense deltas of one module
 * (n x m x n x 4 bytes). */
LT_API lt_status lt_combine_dense(const lt_adapter *const *ads, const double *weights, size_t n,
                           lt_combine_method method, double density, uint64_t seed,
                           uint32_t rank, lt_adapter **out, lt_surgery_report *report,
                           lt_error *err);

/* Progress of a long operation: called after each finished unit (a module
 * for resize / combine / extract, a tensor for model conversion) with DONE
 * of TOTAL units, the last call with done == total.  Calls are serialized
 * but may come from worker threads; the callback must not call into the
 * library.  For display only: it cannot stop the operation. */
typedef void (*lt_progress_fn)(void *ctx, size_t done, size_t total);

/* lt_resize and lt_combine, calling PROGRESS (may be NULL) with CTX once
 * per finished module. */
LT_API lt_status lt_resize_with(const lt_adapter *ad, const lt_rank_rule *rule, lt_progress_fn progress,
                                void *ctx, lt_adapter **out, lt_surgery_report *report, lt_error *err);
LT_API lt_status lt_combine_with(const lt_adapter *const *ads, const double *weights, size_t n,
                                 const lt_rank_rule *rule, lt_progress_fn progress, void *ctx,
                                 lt_adapter **out, lt_surgery_report *report, lt_error *err);
/* lt_combine_dense, calling PROGRESS (may be NULL) with CTX once per
 * finished output module (total: the distinct module names of all ADS). */
LT_API lt_status lt_combine_dense_with(const lt_adapter *const *ads, const double *weights, size_t n,
                                       lt_combine_method method, double density, uint64_t seed,
                                       uint32_t rank, lt_progress_fn progress, void *ctx,
                                       lt_adapter **out, lt_surgery_report *report, lt_error *err);

typedef struct lt_extract_options {
    lt_rank_rule rule;       /* LT_RANK_FIXED or LT_RANK_ENERGY              */
    const char *targets;     /* Python regex, fullmatch on the tensor name
                                ("...q_proj.weight"); NULL = attention and
                                MLP projections (spec/surgery.md)            */
    uint32_t max_rank;       /* cap for --energy (0 = 256)                   */
    unsigned threads;        /* 0 = online processors                        */
    uint64_t seed;           /* randomized SVD test matrix                   */
    bool keep_zero;          /* keep weights whose delta is exactly zero (as
                                zero factors); by default they are left out
                                of the model and reported (new_rank 0)      */
    lt_progress_fn progress; /* NULL, or called per matching weight done    */
    void *progress_ctx;
} lt_extract_options;

/* Extract a LoRA adapter from TUNED - BASE: for every 2-D float weight of
 * TUNED whose name matches the targets and that BASE has with the same
 * shape, the randomized SVD (oversampling 10, 2 power iterations) of the
 * dense difference, truncated by the rule, with alpha = rank (scale 1).  *REPORT gets energy kept and relative error per module
 * (for the randomized factors, against the exact ||dW||_F).  Deterministic
 * for a seed. */
LT_API lt_status lt_extract(lt_source *base, lt_source *tuned, const lt_extract_options *opts,
                     lt_adapter **out, lt_surgery_report *report, lt_error *err);

/* ------------------------------------------------------------------ */
/* 6. Utilities                                                         */
/* ------------------------------------------------------------------ */

/* Copy the regular file SRC to DST (temporary name + rename, so DST
 * appears only complete).  LT_ERR_IO with a message on failure. */
LT_API lt_status lt_copy_file(const char *src, const char *dst, lt_error *err);

/* ------------------------------------------------------------------ */
/* 7. Quantized bases (bitsandbytes checkpoints, spec/bnb.md)           */
/* ------------------------------------------------------------------ */

/* One stored tensor a quantized weight is made of (the packed weight, its
 * absmax, tables, the quant-state blob, ...). */
typedef struct lt_quant_part {
    const char *name;           /* as stored in the file                    */
    uint64_t offset;            /* in its file's data section               */
    uint64_t n_bytes;
    uint32_t file_index;        /* shard number, as lt_tensor_info's        */
} lt_quant_part;

/* How tensor i of a source is quantized on disk.  A source opened from a
 * transformers + bitsandbytes checkpoint (format "bitsandbytes") reads its
 * quantized weights as their dequantized values in compute_dtype (the
 * tensor's dtype); this says what lies behind them. */
typedef struct lt_quant_info {
    const char *method;         /* "bitsandbytes"                           */
    const char *type;           /* "nf4", "fp4" or "int8"                   */
    const char *storage;        /* "NF4", "FP4", "INT8": the dtype on disk  */
    uint32_t blocksize;         /* elements per absmax; 0 for int8          */
    bool double_quant;          /* absmax itself quantized (8-bit, nested)  */
    uint32_t nested_blocksize;  /* 0 without double quant                   */
    lt_dtype compute_dtype;     /* the dtype the tensor reads as            */
    size_t n_parts;
    lt_quant_part parts[8];     /* weight first                             */
    uint64_t packed_bytes;      /* bytes on disk, all parts together        */
} lt_quant_info;

/* True and *out filled when tensor i of src is a quantized weight; false
 * (out untouched) for any other tensor or source.  The strings are owned
 * by src and valid until lt_source_close. */
LT_API bool lt_source_tensor_quant(const lt_source *src, size_t i, lt_quant_info *out);

/* ------------------------------------------------------------------ */
/* 8. Whole models for llama.cpp: hyperparameters and a vocabulary      */
/* ------------------------------------------------------------------ */

typedef struct lt_model_convert_options {
    lt_dtype outtype;        /* F32/F16/BF16 for 2-D float tensors;
                                LT_DTYPE_INVALID keeps each tensor's type   */
    const char *config;      /* config.json (or its directory): every
                                hyperparameter key llama.cpp reads is
                                written from it (spec/convert.md); NULL =
                                architecture keys only                      */
    const char *vocab;       /* a GGUF (vocab-only or a full model) whose
                                tokenizer.* keys are copied; its token count
                                must equal the model's vocabulary; NULL =
                                no tokenizer                               */
    lt_progress_fn progress; /* NULL, or called per tensor written          */
    void *progress_ctx;
} lt_model_convert_options;

typedef struct lt_model_convert_report {
    size_t skipped;          /* rotary_emb.inv_freq buffers left out        */
    size_t hparam_keys;      /* hyperparameter keys written from config     */
    uint64_t vocab_size;     /* tokens of the model (0 when unknown)        */
    size_t tokenizer_keys;   /* tokenizer.* keys copied (0: no tokenizer)    */
    bool rope_freqs;         /* a LLaMA 3.x rope_freqs.weight was generated */
} lt_model_convert_report;

/* lt_convert_model with OPTS (may be NULL: as lt_convert_model).  For a
 * safetensors SRC with opts->config, the GGUF also gets the
 * hyperparameters and, for rope_scaling type "llama3", the rope_freqs
 * tensor; a config value that changes the arithmetic in a way llama.cpp's
 * architecture cannot express is refused naming it (LT_ERR_UNSUPPORTED),
 * one that contradicts the weights (layers, hidden size, vocab_size vs the
 * embedding rows) is LT_ERR_INVALID.  opts->vocab's token count must equal
 * the vocabulary (LT_ERR_INVALID).  For a GGUF SRC config and vocab are
 * ignored.  *REPORT (may be NULL) says what was written.  Nothing is
 * written on error. */
LT_API lt_status lt_convert_model_with(lt_source *src, const lt_arch_info *arch,
                                const lt_model_convert_options *opts, const char *out_path,
                                lt_model_convert_report *report, lt_error *err);

/* As lt_sink_copy_kvs, only the keys that start with PREFIX. */
LT_API lt_status lt_sink_copy_kvs_prefix(lt_sink *sink, const lt_source *src, const char *prefix,
                                  lt_error *err);

/* ------------------------------------------------------------------ */
/* 9. Verify and diff (spec/verify.md)                                  */
/* ------------------------------------------------------------------ */

/* How tensors of one file are found in another of a different format (a
 * safetensors model and its GGUF conversion).  lib/ knows no format: the
 * caller supplies the map (lt_name_map_create builds llama.cpp's).  NULL
 * where an lt_name_map * is taken means: same names, same row order. */
typedef struct lt_name_map {
    /* Name in the second file of tensor NAME of the first, written into
     * buf (NUL-terminated).  Returns 1 when mapped, 0 when the tensor has
     * no counterpart by design (a buffer the conversion drops), -1 when the
     * name is unknown to the map. */
    int (*map)(void *ctx, const char *name, char *buf, size_t size);
    /* For a tensor of the first file (its name, ROWS rows): fill
     * first_row_of[j] with the row of the first file that row j of the
     * second holds, and return true; return false when the rows keep their
     * order (first_row_of untouched). */
    bool (*rows)(void *ctx, const char *name, uint64_t rows, uint64_t *first_row_of);
    void *ctx;
} lt_name_map;

/* llama.cpp's map from Hugging Face names (the first file) to GGUF names
 * (the second) for the architecture in ARCH, with the Q/K row permutation
 * where the architecture has it (formats/name_map.c).  Free with
 * lt_name_map_free.  NULL with err set (LT_ERR_UNSUPPORTED for an
 * architecture without a map, LT_ERR_NOMEM). */
LT_API lt_name_map *lt_name_map_create(const lt_arch_info *arch, lt_error *err);
LT_API void lt_name_map_free(lt_name_map *map);

/* ---- diff ---- */

typedef enum lt_diff_status {
    LT_DIFF_IDENTICAL = 0, /* equal values (+0 = -0, NaN where NaN); the
                              dtypes may differ                             */
    LT_DIFF_CLOSE,         /* not equal, every element within tolerance    */
    LT_DIFF_DIFFERENT,     /* some element beyond tolerance, NaN positions
                              differ, or values that cannot be compared     */
    LT_DIFF_SHAPE,         /* same name, different shape                   */
    LT_DIFF_ONLY_A,
    LT_DIFF_ONLY_B
} lt_diff_status;

/* "identical", "close", "different", "shape", "only_a", "only_b". */
LT_API const char *lt_diff_status_name(lt_diff_status s);

typedef struct lt_diff_entry {
    char *name;            /* A's name (B's for ONLY_B)                    */
    char *name_b;          /* B's name when the map renamed it, else NULL  */
    lt_diff_status status;
    lt_dtype dtype_a, dtype_b;      /* INVALID on the missing side          */
    uint32_t n_dims_a, n_dims_b;
    uint64_t shape_a[LT_MAX_DIMS], shape_b[LT_MAX_DIMS];
    uint64_t n_elems;
    uint64_t n_beyond;     /* elements beyond tolerance (or unequal)       */
    double max_abs;        /* max |a - b| over finite pairs                */
    double max_rel;        /* max |a - b| / max(|a|, |b|), 0 for 0 = 0     */
    bool has_ulp;          /* both sides the same float dtype              */
    uint64_t max_ulp;      /* steps between the two values in that dtype   */
    double cosine;         /* a.b / (|a| |b|); NaN when a side is all zero
                              or holds NaN/Inf                              */
    bool nan_mismatch;     /* NaN in one file where the other has a number */
    bool not_comparable;   /* integer/bool data of different dtypes         */
} lt_diff_entry;

typedef struct lt_diff_report {
    lt_diff_entry *entries;    /* A's tensors in file order, then B-only    */
    size_t n_entries;
    size_t counts[6];          /* entries per lt_diff_status               */
} lt_diff_report;

typedef struct lt_diff_options {
    double atol, rtol;         /* match: |a - b| <= atol + rtol |b|; 0, 0 =
                                  equal values                             */
    const lt_name_map *map;    /* A's names -> B's; NULL = same names      */
} lt_diff_options;

/* Compare every tensor of A with B's tensor of the same (mapped) name,
 * streaming both (memory bounded by a few MiB per tensor pair, each file
 * read once).  Values are compared as numbers after conversion to float64
 * (quantized types dequantized as ggml does).  *REPORT (caller frees with
 * lt_diff_report_free) lists every tensor.  Errors (LT_ERR_IO, ...) only
 * for files that cannot be read; differences are results, not errors. */
LT_API lt_status lt_diff(lt_source *a, lt_source *b, const lt_diff_options *opts, lt_diff_report *report,
                  lt_error *err);
LT_API void lt_diff_report_free(lt_diff_report *report);

/* ---- verify ---- */

typedef enum lt_verify_kind {
    LT_VERIFY_MERGED = 0,  /* changed by LoRA modules (forward check)      */
    LT_VERIFY_COPIED,      /* untouched, same dtype: bit-identical          */
    LT_VERIFY_CONVERTED,   /* untouched, dtype changed: correctly rounded   */
    LT_VERIFY_REPLACED,    /* modules_to_save etc.: the adapter's values    */
    LT_VERIFY_ADDED,       /* an adapter tensor with no base counterpart    */
    LT_VERIFY_MISSING,     /* in BASE (or expected) but not in OUT: fails   */
    LT_VERIFY_EXTRA,       /* in OUT only: fails                            */
    LT_VERIFY_SKIPPED      /* no counterpart by design (the name map)       */
} lt_verify_kind;

/* "merged", "copied", "converted", "replaced", "added", "missing",
 * "extra", "skipped". */
LT_API const char *lt_verify_kind_name(lt_verify_kind k);

typedef struct lt_verify_tensor {
    char *name;            /* OUT's name (BASE's for MISSING)               */
    lt_verify_kind kind;
    bool failed;
    char *problem;         /* why it failed (one line), or NULL             */
    uint64_t rows_checked; /* MERGED: rows compared on the forward path     */
    double worst;          /* MERGED: largest residual in noise units       */
    uint64_t worst_row;
    double rel_error;      /* MERGED: ||y - y_ref|| / ||y_ref - W x||      */
    uint64_t exact_bad;    /* --exact: elements that differ                 */
} lt_verify_tensor;

typedef struct lt_verify_report {
    lt_verify_tensor *tensors; /* OUT's order, then MISSING                 */
    size_t n_tensors;
    size_t n_failed;
    uint64_t checks;       /* row x probe comparisons made                  */
    double threshold;      /* a residual above this many noise units fails  */
    uint32_t probes;
    uint64_t seed;
    double false_alarm;
    char **skipped_modules;/* with allow_missing: "adapter: module: why"     */
    size_t n_skipped_modules;
} lt_verify_report;

typedef struct lt_verify_options {
    uint32_t probes;       /* K probe vectors per tensor; 0 = 2             */
    uint64_t seed;         /* probe seed; 0 = the default (spec/verify.md)  */
    double false_alarm;    /* chance that a correct file fails; 0 = 1e-9    */
    bool exact;            /* also every element against the rounding of
                              the float64 merge (spec/merge.md)            */
    bool allow_missing;    /* modules whose target BASE lacks are skipped   */
    const lt_name_map *map;/* BASE's names -> OUT's; NULL = same            */
    unsigned threads;      /* tensors checked at once; 0 = online cores.
                              Results do not depend on it                  */
} lt_verify_options;

/* Check that OUT is BASE with INPUTS merged (spec/verify.md): every tensor
 * a module changes by K seeded probe vectors on the LoRA forward path in
 * float64, against the noise OUT's storage explains; untouched tensors
 * bit-identical or correctly converted; replacements equal the adapter's;
 * missing and extra tensors fail.  Streams BASE and OUT once each, each
 * adapter factor once; memory per thread: the factors of one tensor plus
 * about 40 MiB of row buffers.
 * Inputs are borrowed.  Failed checks are results in *REPORT (caller frees
 * with lt_verify_report_free); errors are for inputs that cannot be read or
 * do not fit (a module whose target is absent without allow_missing, a
 * shape that does not fit: LT_ERR_INVALID). */
LT_API lt_status lt_verify_merged(lt_source *base, const lt_merge_input *inputs, size_t n_inputs, lt_source *out,
                           const lt_verify_options *opts, lt_verify_report *report, lt_error *err);
LT_API void lt_verify_report_free(lt_verify_report *report);

/* ---- verify an adapter against the weighted sum of others ---- */

typedef struct lt_verify_module {
    char *target;          /* the module's base tensor (GGUF name when the
                              map renamed it)                               */
    bool in_inputs, in_out;/* present on each side (one side only fails)    */
    bool failed;
    double rel_error;      /* ||sum w_k s_k B_k A_k - s B A||_F /
                              ||sum w_k s_k B_k A_k||_F (0 / 0 = 0)         */
    uint32_t rank_inputs;  /* summed rank of the inputs' modules            */
    uint32_t rank_out;
    char *problem;         /* why it failed, or NULL                        */
} lt_verify_module;

typedef struct lt_verify_adapter_report {
    lt_verify_module *modules; /* OUT's modules in its order, then those
                                  only the inputs have                      */
    size_t n_modules;
    size_t n_failed;
    double rtol;               /* the tolerance used                        */
} lt_verify_adapter_report;

/* Is adapter OUT the same function as sum_k weight_k x INPUTS[k]?  Per
 * module (matched by base tensor; with MAP, the targets of adapters that
 * are not GGUF LoRAs are mapped to GGUF names and their delta rows put in
 * GGUF order), the exact relative error of the deltas from thin QR factors
 * of the stacked factors (never the dense delta).  RTOL <= 0: 8 x the unit
 * roundoff of OUT's factor dtypes (F32 4.8e-7, F16 3.9e-3, BF16 3.1e-2).
 * A module on one side only fails.  DoRA, lora_bias and conv modules are
 * refused (LT_ERR_UNSUPPORTED): their deltas are not plain products.
 * Caller frees *REPORT with lt_verify_adapter_report_free. */
LT_API lt_status lt_verify_adapter(const lt_merge_input *inputs, size_t n_inputs, const lt_adapter *out,
                            const lt_name_map *map, double rtol, lt_verify_adapter_report *report,
                            lt_error *err);
LT_API void lt_verify_adapter_report_free(lt_verify_adapter_report *report);


/* ------------------------------------------------------------------ */
/* 10. Adapters whose files leave facts out (loralib checkpoints)       */
/* ------------------------------------------------------------------ */

/* What a caller tells about an adapter that its file cannot tell.  A
 * microsoft/LoRA (loralib) checkpoint (spec/loralib.md) is a bare state
 * dict: no lora_alpha, no layer kinds, no merged-layer groups.  Zero-
 * initialize, then set what is known.  Every field is ignored for adapters
 * whose files say it themselves (PEFT directories, GGUF LoRA). */
typedef struct lt_adapter_open_options {
    lt_source *base;            /* the model the adapter is for (borrowed;
                                   must outlive the call): needed to tell
                                   layer kinds, merged-layer groups, and
                                   which other tensors replace base tensors */
    bool has_alpha;             /* lora_alpha given?                        */
    double alpha;               /* lora_alpha (loralib's default is 1)      */
    const bool *enable_lora;    /* merged layers: groups enabled, in order
                                   (NULL: every group; then the base must
                                   show as many groups as are stored)       */
    size_t n_enable_lora;
    bool fan_in_fan_out;        /* square base weights are [in, out]; a
                                   non-square base shape decides itself     */
    bool describe_only;         /* inspect: alpha may stay unknown (NaN
                                   scales) and the base may be absent       */
} lt_adapter_open_options;

/* Open an adapter as lt_adapter_open does, with OPTS (NULL: none) for what
 * its file leaves out.  A loralib checkpoint (a torch zip or safetensors
 * file whose keys end in ".lora_A" / ".lora_B") becomes a plain LoRA model:
 * Linear, Embedding and MergedLinear layers (a merged layer is one LoRA on
 * the fused weight with block-structured factors: rank r x enabled groups,
 * scale alpha / r); its other tensors become replacements when a base
 * tensor has their name and shape, and are refused by name otherwise.
 * Without opts->has_alpha, or without opts->base, it is LT_ERR_USAGE naming
 * what is missing, unless opts->describe_only.  Returns NULL with err set
 * on failure; free with lt_adapter_close. */
LT_API lt_adapter *lt_adapter_open_with(const char *path, const lt_adapter_open_options *opts, lt_error *err);

/* ------------------------------------------------------------------ */
/* 11. Temporary files and signals                                      */
/* ------------------------------------------------------------------ */

/* Outputs appear only complete.  A single file is written unnamed
 * (O_TMPFILE) where the kernel and filesystem allow it, so nothing is ever
 * left behind; otherwise, and for directory outputs, the library writes
 * under a hidden temporary name in the output's directory,
 * ".<name>.tmp-<pid>-<6 characters>" (a file, or a directory of files),
 * and removes it on every error path.  A process killed by a signal cannot
 * run those paths: its handler calls lt_remove_temporaries(OUT) to remove
 * every temporary of this process beside OUT (and inside OUT when OUT is a
 * directory).  Async-signal-safe: system calls on fixed buffers only, no
 * allocation or locks; errno is preserved.  Never touches another
 * process's temporaries or anything not named so. */
LT_API void lt_remove_temporaries(const char *out_path);

/* ------------------------------------------------------------------ */
/* 12. Archives (spec/archives.md)                                      */
/* ------------------------------------------------------------------ */

/* An adapter or model kept in a zip or tar archive is read through
 * libarchive with only the formats and filters below enabled: its headers
 * are checked once (lt_archive_open), then the folders a caller needs are
 * spooled, decompressed, to unnamed temporary files on disk and shown as a
 * private directory of links (lt_archive_extract), which every reader of
 * this library opens like the extracted folder. */
typedef struct lt_archive lt_archive;

/* Which limits apply: those of an adapter or those of a (larger) model. */
typedef enum lt_archive_role { LT_ARCHIVE_ADAPTER, LT_ARCHIVE_MODEL } lt_archive_role;

typedef struct lt_archive_limits {
    uint64_t member_bytes;  /* largest member that may be spooled (uncompressed bytes); adapter 16 GiB, model 512 GiB */
    uint64_t entries;       /* most entries in the archive (10000) */
    uint64_t ratio;         /* most uncompressed bytes per archive byte, over what was read so far (1000) */
} lt_archive_limits;

/* The documented default limits of a role. */
LT_API void lt_archive_default_limits(lt_archive_role role, lt_archive_limits *out);

/* Apply "NAME=VALUE[,NAME=VALUE...]" (names member, entries, ratio; sizes accept K/M/G/T
 * binary suffixes) to LIMITS; LT_ERR_USAGE naming the bad part. (The CLI feeds it the
 * environment variable LORATOOL_ARCHIVE_LIMITS first, then each --archive-limit option.)
 * Only member takes a suffix; entries and ratio are at least 1; an empty TEXT changes
 * nothing.  LIMITS is left unchanged when TEXT is refused. */
LT_API lt_status lt_archive_limits_parse(const char *text, lt_archive_limits *limits, lt_error *err);

/* Is PATH a regular file in one of the archive formats loratool reads, recognized by
 * content: zip, tar (ustar/pax/gnu), tar filtered by gzip, xz, zstd or bzip2 ONLY (enable
 * exactly these in libarchive, never support_format_all/filter_all)?  A torch zip (a member
 * named "<dir>/data.pkl" or "data.pkl") is NOT an archive.  *is_archive set; I/O errors
 * come back as a status.  A file libarchive cannot read but that starts like a zip
 * ("PK\3\4", "PK\5\6"), holds the ustar magic, or is a stream of one of the four filters
 * counts as an archive, so that lt_archive_open names what is wrong with it; a path that
 * is not a regular file (a directory) is not an archive (LT_OK). */
LT_API lt_status lt_archive_probe(const char *path, bool *is_archive, lt_error *err);

/* Read every header of the archive at PATH (no data spooled yet).  Refused with
 * LT_ERR_INVALID (exit 3), message naming the member: absolute names, ".." components,
 * symlinks, hard links, device/fifo/socket entries, encrypted members, duplicate member
 * names, more entries than limits->entries, a member larger than limits->member_bytes,
 * an unreadable/truncated/bad-checksum archive.  limits NULL = adapter defaults.
 * Also refused: a name used both as a file and as a folder, a stream compressed twice.
 * A compressed tar is decompressed through once here (its headers lie between the
 * data), under the ratio limit.  The file stays open until lt_archive_close. */
LT_API lt_archive *lt_archive_open(const char *path, const lt_archive_limits *limits, lt_error *err);

/* Regular-file members, sorted by name (normalized: no "./", no trailing "/"), with their
 * uncompressed sizes.  Directory entries are implied by file names (a folder is a prefix).
 * Past the end: NULL and 0. */
LT_API size_t lt_archive_member_count(const lt_archive *a);
LT_API const char *lt_archive_member_name(const lt_archive *a, size_t i);
LT_API uint64_t lt_archive_member_size(const lt_archive *a, size_t i);

/* Make FOLDER ("" = the root) of the archive openable as a local path: every regular file
 * directly inside FOLDER (not in its subfolders) is spooled, decompressed, to an unnamed
 * temporary file (O_TMPFILE in $TMPDIR, else /tmp; never memfd, never RAM), and a private
 * directory (mode 0700, in $TMPDIR else /tmp) holds one symlink per file to
 * /proc/self/fd/N, so every existing reader opens it like the extracted folder.  If FOLDER
 * names a regular-file member instead, only that file is spooled and the returned path is
 * that file's link.  Limits are enforced while decompressing (a member growing past
 * member_bytes, or total output / archive bytes read past ratio: LT_ERR_INVALID naming the
 * limit and how to raise it).  Returns a path owned by A, valid until lt_archive_close;
 * NULL with err set.  May be called for several folders.
 * FOLDER is normalized like member names; one naming neither a folder nor a file of
 * the archive is LT_ERR_IO ("no such file or folder in the archive"), one with a ".."
 * component LT_ERR_USAGE.  The links resolve only inside this process. */
LT_API const char *lt_archive_extract(lt_archive *a, const char *folder, lt_error *err);

/* Async-signal-safe removal of a private directory lt_archive_extract made (the CLI's
 * signal handler calls it with the path it saved): unlink its entries and rmdir it using
 * only system calls on fixed buffers (open O_DIRECTORY, getdents64, unlinkat).
 * VIEW_DIR may also be the link of a single file lt_archive_extract returned (its
 * directory is removed).  A directory not named like the library's private ones
 * ("loratool-archive-XXXXXX") is left alone. */
LT_API void lt_archive_remove_view(const char *view_dir);

/* Close the spooled files, remove the private directories, free.  NULL accepted. */
LT_API void lt_archive_close(lt_archive *a);

/* Writing: archives of an output directory. */
typedef enum lt_archive_kind { LT_ARCHIVE_NONE = 0, LT_ARCHIVE_ZIP, LT_ARCHIVE_TAR,
    LT_ARCHIVE_TAR_GZ, LT_ARCHIVE_TAR_XZ, LT_ARCHIVE_TAR_ZST, LT_ARCHIVE_TAR_BZ2 } lt_archive_kind;

/* The kind PATH's suffix names (.zip .tar .tar.gz .tgz .tar.xz .tar.zst .tar.bz2; case-
 * insensitive), LT_ARCHIVE_NONE otherwise. */
LT_API lt_archive_kind lt_archive_kind_for_path(const char *path);

/* Write the regular files directly inside DIR as an archive of KIND at OUT: members at the
 * archive root, sorted by name (bytewise), mtime MTIME (the CLI passes SOURCE_DATE_EPOCH or
 * 0), uid/gid 0, no user/group names, mode 0644, no atime/ctime/extra timestamps, gzip
 * header without name or time: the same DIR contents give byte-identical archives.  Data is
 * streamed in blocks (never a whole file in memory).  Written under the library's
 * temporary name beside OUT (".<name>.tmp-<pid>-XXXXXX", so lt_remove_temporaries(OUT)
 * cleans it after a signal), fsynced, renamed.  Errors as everywhere.
 * Other entries of DIR (subdirectories, links) are not written; KIND
 * LT_ARCHIVE_NONE or a negative MTIME is LT_ERR_USAGE. */
LT_API lt_status lt_archive_write_dir(const char *dir, const char *out, lt_archive_kind kind, int64_t mtime, lt_error *err);

#ifdef __cplusplus
}
#endif
#endif /* LORATOOL_H */
