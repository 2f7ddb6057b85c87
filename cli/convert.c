/* convert.c - `loratool convert INPUT -o OUT --base BASE [--outtype T]`:
 * PEFT adapter directory -> GGUF LoRA, or GGUF LoRA -> PEFT directory. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool convert ADAPTER_DIR -o OUT.gguf --base BASE [--outtype f32|f16|bf16|q8_0]\n"
    "       loratool convert ADAPTER.gguf -o OUT_DIR --base BASE\n"
    "       loratool convert MODEL.safetensors -o MODEL.gguf --base config.json [--outtype f32|f16|bf16]\n"
    "       loratool convert MODEL.gguf -o MODEL.safetensors --base config.json\n"
    "  BASE       the base model's config.json, its directory, or a GGUF model: gives the\n"
    "             architecture (tensor names) and head counts (llama's Q/K row order)\n"
    "  --outtype  GGUF factor type (default f32, exact); q8_0 falls back to f16 for factors\n"
    "             whose rows are not whole 32-element blocks; for models: 2-D tensor type\n"
    "             (default: keep), 1-D tensors are F32 in GGUF\n"
    "  models: weights only (names, Q/K row order, Gemma norms); no tokenizer conversion\n";

static bool parse_outtype(const char *text, lt_dtype *out)
{
    static const struct { const char *name; lt_dtype dtype; } names[] = {
        {"f32", LT_F32}, {"f16", LT_F16}, {"bf16", LT_BF16}, {"q8_0", LT_Q8_0}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(text, names[i].name) == 0) {
            *out = names[i].dtype;
            return true;
        }
    return false;
}

static bool is_adapter_dir(const char *path)
{
    char config[4096];
    return (size_t)snprintf(config, sizeof config, "%s/adapter_config.json", path) < sizeof config &&
           access(config, F_OK) == 0;
}

int cmd_convert(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'}, {"base", required_argument, NULL, 'b'},
        {"outtype", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *base = NULL;
    lt_dtype outtype = LT_F32;
    bool outtype_given = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'b': base = optarg; break;
        case 't':
            if (!parse_outtype(optarg, &outtype))
                return cli_usage("convert", "--outtype: '%s' is not f32, f16, bf16 or q8_0", optarg);
            outtype_given = true;
            break;
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default: return cli_usage("convert", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc)
        return cli_usage("convert", "expected exactly one INPUT");
    if (!out)
        return cli_usage("convert", "missing -o OUT");
    if (!base)
        return cli_usage("convert", "missing --base (config.json, model directory or GGUF model)");
    int clash = cli_check_output("convert", out, base, 1, argv + optind);
    if (clash)
        return clash;
    const char *input = argv[optind];
    lt_error err;
    lt_arch_info arch;
    if (lt_arch_info_read(base, &arch, &err) != LT_OK)
        return cli_fail(&err);
    if (is_adapter_dir(input)) {
        lt_adapter *ad = lt_adapter_open(input, &err);
        if (!ad)
            return cli_fail(&err);
        lt_status s = lt_adapter_save_gguf(ad, &arch, out, outtype, &err);
        size_t modules = lt_adapter_module_count(ad);
        lt_adapter_close(ad);
        if (s != LT_OK)
            return cli_fail(&err);
        printf("wrote %s: GGUF LoRA adapter, architecture %s, %zu modules\n", out, arch.arch, modules);
        return cli_finish_stdout();
    }
    lt_source *src = lt_source_open(input, &err);
    if (!src)
        return cli_fail(&err);
    long type_key = lt_source_kv_find(src, "general.type");
    const char *type = type_key >= 0 ? lt_source_kv_str(src, (size_t)type_key, 0, NULL) : NULL;
    if (strcmp(lt_source_format(src), "peft") == 0 || !type || strcmp(type, "adapter") != 0) {
        /* a whole model, either way */
        size_t len = strlen(out);
        bool to_gguf_out = len > 5 && strcmp(out + len - 5, ".gguf") == 0;
        bool to_st_out = len > 12 && strcmp(out + len - 12, ".safetensors") == 0;
        if (strcmp(lt_source_format(src), "gguf") == 0 ? !to_st_out : !to_gguf_out) {
            fprintf(stderr, "loratool: %s: not a LoRA adapter (%s); a whole model converts to a %s output\n",
                    input, strcmp(lt_source_format(src), "gguf") == 0 ? "GGUF general.type is not 'adapter'" : "weights file",
                    strcmp(lt_source_format(src), "gguf") == 0 ? ".safetensors" : ".gguf");
            lt_source_close(src);
            return EXIT_INPUT;
        }
        size_t skipped = 0;
        lt_status s = lt_convert_model(src, &arch, out, outtype_given ? outtype : LT_DTYPE_INVALID, &skipped, &err);
        bool to_gguf = strcmp(lt_source_format(src), "gguf") != 0;
        lt_source_close(src);
        if (s != LT_OK)
            return cli_fail(&err);
        printf("wrote %s: %s model, architecture %s%s\n", out, to_gguf ? "GGUF" : "safetensors", arch.arch,
               to_gguf ? " (weights and architecture keys only: no tokenizer)" : "");
        if (skipped)
            printf("  skipped %zu rotary_emb.inv_freq buffers (recomputed by llama.cpp)\n", skipped);
        return cli_finish_stdout();
    }
    lt_source_close(src);
    lt_adapter *gguf = lt_adapter_open(input, &err);
    lt_adapter *hf = gguf ? lt_adapter_to_hf(gguf, &arch, &err) : NULL;
    lt_status s = hf ? lt_adapter_save_peft(hf, out, LT_F32, &err) : LT_ERR_INVALID;
    lt_adapter_close(hf);
    lt_adapter_close(gguf);
    if (s != LT_OK)
        return cli_fail(&err);
    printf("wrote %s: PEFT adapter directory, architecture %s\n", out, arch.arch);
    return cli_finish_stdout();
}
