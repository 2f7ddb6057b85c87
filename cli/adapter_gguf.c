/* adapter_gguf.c - a PEFT adapter seen through its GGUF LoRA form, for the
 * verbs that apply adapters to a GGUF base (merge, verify). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_adapter_as_gguf(const char *base_path, lt_adapter **ad)
{
    lt_error err;
    lt_arch_info arch;
    if (lt_arch_info_read(base_path, &arch, &err) != LT_OK)
        return cli_fail(&err);
    char tmp[] = "/tmp/loratool-adapter-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "loratool: %s: cannot create a temporary file: %s\n", tmp, strerror(errno));
        return EXIT_IO;
    }
    close(fd);
    lt_status s = lt_convert_adapter_to_gguf(*ad, &arch, tmp, LT_F32, &err);
    lt_adapter *converted = s == LT_OK ? lt_adapter_open(tmp, &err) : NULL;
    unlink(tmp);
    if (!converted)
        return cli_fail(&err);
    lt_adapter_close(*ad);
    *ad = converted;
    return 0;
}
