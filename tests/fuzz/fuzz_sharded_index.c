/*
 * fuzz_sharded_index.c - model.safetensors.index.json and its check
 * against the shards (weight_map names, plain shard file names, every
 * tensor in the shard the index names and nowhere else, metadata), reached
 * through lt_source_open on a directory holding the input as the index
 * beside two tiny valid shards:
 *
 *   model-00001-of-00002.safetensors   "a" F32 [2, 3], "b" F16 [4]
 *   model-00002-of-00002.safetensors   "c" BF16 [3, 1]
 *
 * On success the source must span exactly the shards the index names, and
 * every tensor must be consistent, inside its shard's data and readable.
 */
#include "fuzz_weights.h"

static const fuzz_tensor shard1[] = {
    {"a", LT_F32, 2, {2, 3}},
    {"b", LT_F16, 1, {4}},
};
static const fuzz_tensor shard2[] = {
    {"c", LT_BF16, 2, {3, 1}},
};

/* Where a shard's data starts: 8 + the header length stored in front. */
static uint64_t data_start_of(const char *path)
{
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    FUZZ_ASSERT(f && fread(head, 1, 8, f) == 8);
    fclose(f);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | head[i];
    return 8 + n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static char dir[128], index[192];
    if (!dir[0]) {
        char path[192];
        fuzz_path(dir, sizeof dir, "sharded");
        fuzz_mkdir(dir);
        snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", dir);
        fuzz_write_weights(path, shard1, sizeof shard1 / sizeof *shard1);
        snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
        fuzz_write_weights(path, shard2, sizeof shard2 / sizeof *shard2);
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    }
    fuzz_write_file(index, data, size);
    lt_source *src = fuzz_open_source(dir, "safetensors-sharded");
    if (!src)
        return 0;
    size_t n_files = lt_source_file_count(src);
    FUZZ_ASSERT(n_files <= 2);
    uint64_t starts[2];
    for (size_t k = 0; k < n_files; k++)
        starts[k] = data_start_of(lt_source_file_path(src, k));
    fuzz_check_source(src, starts);
    /* every tensor of every named shard is there */
    size_t expect = 0;
    for (size_t k = 0; k < n_files; k++)
        expect += strstr(lt_source_file_path(src, k), "00001-of") ? 2 : 1;
    FUZZ_ASSERT(lt_source_tensor_count(src) == expect);
    lt_source_close(src);
    return 0;
}
