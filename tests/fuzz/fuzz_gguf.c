/*
 * fuzz_gguf.c - the GGUF reader (preamble, typed key-values, tensor infos,
 * alignment, placement of the data), reached through lt_source_open on the
 * input written as a .gguf file; when the file calls itself a LoRA adapter
 * (general.type = adapter), also the GGUF-LoRA reading of lt_adapter_open.
 *
 * On success: version 2 or 3, alignment a power of two, keys unique and
 * every getter answering within its contract, tensors consistent and
 * readable (quantized ones dequantized when small).
 */
#include "fuzz_common.h"

static void check_kvs(const lt_source *src)
{
    uint32_t version = lt_source_gguf_version(src);
    FUZZ_ASSERT(version == 2 || version == 3);
    uint64_t align = lt_source_gguf_alignment(src);
    FUZZ_ASSERT(align > 0 && (align & (align - 1)) == 0);
    size_t n = lt_source_kv_count(src);
    for (size_t i = 0; i < n; i++) {
        const char *key = lt_source_kv_key(src, i);
        FUZZ_ASSERT(key != NULL);
        FUZZ_ASSERT(lt_source_kv_find(src, key) == (long)i);
        int type = lt_source_kv_type(src, i);
        int elem = lt_source_kv_elem_type(src, i);
        FUZZ_ASSERT(type >= LT_GGUF_U8 && type <= LT_GGUF_F64);
        FUZZ_ASSERT(elem >= LT_GGUF_U8 && elem <= LT_GGUF_F64 && elem != LT_GGUF_ARRAY);
        FUZZ_ASSERT(type == LT_GGUF_ARRAY || elem == type);
        uint64_t len = lt_source_kv_len(src, i);
        FUZZ_ASSERT(type == LT_GGUF_ARRAY || len == 1);
        uint64_t u;
        int64_t s;
        double f;
        bool b;
        size_t slen;
        for (uint64_t j = 0; j < len && j < 4; j++) {
            (void)lt_source_kv_u64(src, i, j, &u);
            (void)lt_source_kv_i64(src, i, j, &s);
            (void)lt_source_kv_f64(src, i, j, &f);
            (void)lt_source_kv_bool(src, i, j, &b);
            const char *str = lt_source_kv_str(src, i, j, &slen);
            FUZZ_ASSERT((str != NULL) == (elem == LT_GGUF_STRING));
            if (str)
                FUZZ_ASSERT(str[slen] == '\0');
        }
        /* out of range answers false / NULL */
        FUZZ_ASSERT(!lt_source_kv_u64(src, i, len, &u) && !lt_source_kv_f64(src, i, len, &f));
        FUZZ_ASSERT(lt_source_kv_str(src, i, len, NULL) == NULL);
    }
    FUZZ_ASSERT(lt_source_kv_key(src, n) == NULL && lt_source_kv_type(src, n) == -1);
}

static bool is_lora_adapter(const lt_source *src)
{
    long k = lt_source_kv_find(src, "general.type");
    const char *v = k >= 0 ? lt_source_kv_str(src, (size_t)k, 0, NULL) : NULL;
    return v && strcmp(v, "adapter") == 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    const char *path = fuzz_input_file("input.gguf", data, size);
    lt_source *src = fuzz_open_source(path, "gguf");
    if (!src)
        return 0;
    check_kvs(src);
    fuzz_check_source(src, NULL);
    bool adapter = is_lora_adapter(src);
    lt_source_close(src);
    if (adapter) {
        lt_error err;
        fuzz_error_reset(&err);
        lt_adapter *ad = lt_adapter_open(path, &err);
        if (!ad) {
            fuzz_check_error(&err);
            return 0;
        }
        fuzz_note_ok("adapter opened");
    fuzz_check_adapter(ad);
        lt_adapter_close(ad);
    }
    return 0;
}
