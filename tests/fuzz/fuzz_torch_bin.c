/*
 * fuzz_torch_bin.c - the legacy torch.save reader (adapter_model.bin): the
 * zip container (end record, central directory, local headers, stored and
 * deflated members), the restricted pickle machine and the tensors it
 * builds from storages, reached through lt_source_open on the input
 * written as a .bin file.
 *
 * On success every tensor (offset = where its bytes start in the file)
 * must lie inside the file and be readable.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    lt_source *src = fuzz_open_source(fuzz_input_file("adapter_model.bin", data, size), "torch");
    if (!src)
        return 0;
    fuzz_check_source(src, NULL);
    lt_source_close(src);
    return 0;
}
