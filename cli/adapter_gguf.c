/* adapter_gguf.c - a PEFT adapter seen through its GGUF LoRA form, for the
 * verbs that apply adapters to a GGUF base (merge, verify). */
#include "cli.h"

int cli_adapter_as_gguf(const char *base_path, lt_adapter **ad, lt_adapter **original)
{
    lt_error err;
    lt_arch_info arch;
    if (lt_arch_info_read(base_path, &arch, &err) != LT_OK)
        return cli_fail(&err);
    lt_adapter *view = lt_adapter_for_gguf(*ad, &arch, &err);
    if (!view)
        return cli_fail(&err);
    *original = *ad;
    *ad = view;
    return 0;
}
