/*
 * fuzz_safetensors.c - the single-file safetensors parser (header JSON,
 * dtypes, shapes, data_offsets tiling the data buffer), reached through
 * lt_source_open on the input written as a .safetensors file.
 *
 * On success every tensor must lie inside the data buffer: 8 + header
 * length + end <= file size (checked by fuzz_check_source with the data
 * start read from the input's first 8 bytes), with n_bytes = dtype size x
 * elements, and its bytes must be readable.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    lt_source *src = fuzz_open_source(fuzz_input_file("input.safetensors", data, size), "safetensors");
    if (!src)
        return 0;
    FUZZ_ASSERT(size >= 8 && lt_source_file_count(src) == 1);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | data[i];
    FUZZ_ASSERT(header_len <= size - 8);
    uint64_t data_start = 8 + header_len;
    fuzz_check_source(src, &data_start);
    /* the reference rule: tensors tile the data buffer exactly */
    uint64_t covered = 0;
    for (size_t i = 0; i < lt_source_tensor_count(src); i++)
        covered += lt_source_tensor(src, i)->n_bytes;
    FUZZ_ASSERT(covered == size - data_start);
    lt_source_close(src);
    return 0;
}
