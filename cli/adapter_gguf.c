/* adapter_gguf.c - an adapter applied to a base of the other naming
 * (merge, verify): a PEFT adapter over a GGUF model is seen under GGUF
 * names with llama.cpp's Q/K row order; a GGUF LoRA over a safetensors
 * model under Hugging Face names with the rows back in HF order (both
 * exact: spec/convert.md).  A GGUF LoRA over a GGUF model must name the
 * model's architecture, as llama.cpp requires. */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

/* The architecture behind a safetensors BASE: its directory's config.json
 * (a bare weights file: the directory holding it, when it has one). */
static int hf_arch(const char *base_path, lt_arch_info *arch)
{
    lt_error err;
    struct stat st;
    char config[4096];
    if (stat(base_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(config, sizeof config, "%s/config.json", base_path);
    } else {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", base_path);
        snprintf(config, sizeof config, "%s/config.json", dirname(copy));
    }
    if (stat(config, &st) != 0) {
        fprintf(stderr, "loratool: %s: a GGUF LoRA is applied to a safetensors model through its config.json: "
                        "give the model directory (no %s)\n", base_path, config);
        return EXIT_INPUT;
    }
    return lt_arch_info_read(config, arch, &err) == LT_OK ? 0 : cli_fail(&err);
}

int cli_adapter_for_base(const char *base_path, lt_source *base, lt_adapter **ad, lt_adapter **original)
{
    lt_error err;
    lt_arch_info arch;
    bool gguf_base = strcmp(lt_source_format(base), "gguf") == 0;
    const char *ad_arch = lt_adapter_gguf_arch(*ad);
    if (gguf_base && ad_arch) {
        long k = lt_source_kv_find(base, "general.architecture");
        const char *base_arch = k >= 0 ? lt_source_kv_str(base, (size_t)k, 0, NULL) : NULL;
        if (ad_arch[0] && base_arch && strcmp(ad_arch, base_arch) != 0) {
            fprintf(stderr, "loratool: %s: adapter architecture %s does not match the base's %s\n",
                    lt_source_path(lt_adapter_source(*ad)), ad_arch, base_arch);
            return EXIT_INPUT;
        }
        return 0;
    }
    if (!gguf_base && !ad_arch)
        return 0;
    int rc = gguf_base ? (lt_arch_info_read(base_path, &arch, &err) == LT_OK ? 0 : cli_fail(&err))
                       : hf_arch(base_path, &arch);
    if (rc)
        return rc;
    lt_adapter *view = gguf_base ? lt_adapter_for_gguf(*ad, &arch, &err) : lt_adapter_to_hf(*ad, &arch, &err);
    if (!view)
        return cli_fail(&err);
    *original = *ad;
    *ad = view;
    return 0;
}
