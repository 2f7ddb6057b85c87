/* convert.c - `loratool convert INPUT -o OUT --base BASE [--outtype T]`:
 * PEFT adapter directory -> GGUF LoRA, or GGUF LoRA -> PEFT directory. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool convert ADAPTER_DIR -o OUT.gguf --base BASE [--outtype f32|f16|bf16|q8_0]\n"
    "       loratool convert ADAPTER.gguf -o OUT_DIR --base BASE\n"
    "       loratool convert MODEL.safetensors -o MODEL.gguf --base config.json [--outtype f32|f16|bf16]\n"
    "                        [--vocab VOCAB.gguf]\n"
    "       loratool convert MODEL.gguf -o MODEL.safetensors --base config.json\n"
    "  BASE       the base model's config.json, its directory, or a GGUF model: gives the\n"
    "             architecture (tensor names) and head counts (llama's Q/K row order)\n"
    "  --outtype  GGUF factor type (default f32, exact); q8_0 falls back to f16 for factors\n"
    "             whose rows are not whole 32-element blocks; for models: 2-D tensor type\n"
    "             (default: keep), 1-D tensors are F32 in GGUF\n"
    "  --vocab    models: copy the tokenizer.* keys of this GGUF (vocab-only or a full model;\n"
    "             its token count must equal the model's vocab_size and embedding rows)\n"
    "  models: names, Q/K row order, Gemma norms; with a config.json base every\n"
    "  hyperparameter llama.cpp reads; without --vocab the GGUF has no tokenizer\n"
    "       loratool convert LORALIB.pt -o OUT_DIR --base MODEL --alpha A [--enable-lora M]\n"
    "                        [--fan-in-fan-out] [--outtype f32|f16|bf16]\n"
    "  a loralib (microsoft/LoRA) checkpoint becomes a PEFT LoRA directory with the same delta;\n"
    "  BASE is then the model's weights (layer kinds, merged-layer groups, replaced tensors)\n"
    CLI_LORALIB_USAGE;

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

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_adapter_dir(const char *path)
{
    char config[4096];
    return (size_t)snprintf(config, sizeof config, "%s/adapter_config.json", path) < sizeof config &&
           access(config, F_OK) == 0;
}

/* A loralib checkpoint -> a PEFT LoRA directory giving the same delta
 * (merged layers as block-structured factors, scale kept exactly). */
static int convert_loralib(const char *input, const char *out, const char *base_path, lt_dtype outtype,
                           cli_loralib *loralib)
{
    size_t len = strlen(out);
    if (len > 5 && strcmp(out + len - 5, ".gguf") == 0)
        return cli_usage("convert", "%s: a loralib checkpoint converts to a PEFT directory; convert that to GGUF",
                         out);
    if (outtype == LT_Q8_0)
        return cli_usage("convert", "--outtype q8_0 is for GGUF outputs");
    lt_error err;
    lt_source *base = lt_source_open(base_path, &err);
    if (!base) {
        fprintf(stderr, "loratool: %s: --base must name the model's weights for a loralib checkpoint (%s)\n",
                base_path, err.message);
        return lt_status_exit_code(err.status);
    }
    loralib->open.base = base;
    lt_adapter *ad = lt_adapter_open_with(input, &loralib->open, &err);
    lt_status s = ad ? LT_OK : err.status;
    if (ad && outtype == LT_DTYPE_INVALID) {
        /* keep the factors' dtype (F32 stays exact) */
        const lt_lora_module *m = lt_adapter_module(ad, 0);
        outtype = lt_source_tensor(lt_adapter_source(ad), (size_t)m->tensor_a)->dtype;
        if (outtype != LT_F16 && outtype != LT_BF16)
            outtype = LT_F32;
    }
    /* one PEFT config says fan_in_fan_out for all layers: a square layer
     * stored [out, in] next to transposed ones would be read back wrong */
    for (size_t i = 0; ad && i < lt_adapter_module_count(ad); i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        if (lt_adapter_config(ad)->fan_in_fan_out && m->kind == LT_MODULE_LINEAR && !m->fan_in_fan_out &&
            m->out_features == m->in_features) {
            snprintf(err.message, sizeof err.message,
                     "%s: module '%s' is a square layer stored [out, in] next to fan_in_fan_out layers; one PEFT "
                     "config cannot hold both",
                     input, m->name);
            s = err.status = LT_ERR_UNSUPPORTED;
            break;
        }
    }
    if (ad && s == LT_OK)
        s = cli_save_peft(ad, out, outtype, &err);
    size_t modules = ad ? lt_adapter_module_count(ad) : 0, replaced = ad ? lt_adapter_replacement_count(ad) : 0;
    lt_adapter_close(ad);
    lt_source_close(base);
    if (s != LT_OK)
        return cli_fail(&err);
    printf("wrote %s: PEFT adapter directory, %zu modules, %zu replacement tensors\n", out, modules, replaced);
    return cli_finish_stdout();
}

int cmd_convert(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'}, {"base", required_argument, NULL, 'b'},
        {"outtype", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"vocab", required_argument, NULL, 'v'},
        CLI_LORALIB_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    cli_loralib loralib = {0};
    int handled;
    const char *out = NULL, *base = NULL, *vocab = NULL;
    lt_dtype outtype = LT_F32;
    bool outtype_given = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'b': base = optarg; break;
        case 'v': vocab = optarg; break;
        case 't':
            if (!parse_outtype(optarg, &outtype))
                return cli_usage("convert", "--outtype: '%s' is not f32, f16, bf16 or q8_0", optarg);
            outtype_given = true;
            break;
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default:
            if ((handled = cli_loralib_option("convert", c, optarg, &loralib)) != 0) {
                if (handled < 0)
                    return -handled;
                break;
            }
            return cli_usage("convert", "unknown or incomplete option '%s'", argv[optind - 1]);
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
    const char *input;
    if ((clash = cli_resolve("convert", argv[optind], CLI_INPUT_ANY, &input)) ||
        (clash = cli_resolve("convert", base, CLI_INPUT_MODEL, &base)) ||
        (vocab && (clash = cli_resolve("convert", vocab, CLI_INPUT_MODEL, &vocab))))
        return clash;
    if (cli_is_loralib(input))
        return convert_loralib(input, out, base, outtype_given ? outtype : LT_DTYPE_INVALID, &loralib);
    lt_error err;
    lt_arch_info arch;
    if (lt_arch_info_read(base, &arch, &err) != LT_OK)
        return cli_fail(&err);
    if (is_adapter_dir(input)) {
        if (vocab)
            return cli_usage("convert", "--vocab is for whole models, not adapters");
        size_t len = strlen(out);
        if (len <= 5 || strcmp(out + len - 5, ".gguf") != 0)
            return cli_usage("convert", "%s: an adapter directory converts to a GGUF LoRA: name it .gguf", out);
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
    if (strcmp(lt_source_format(src), "gguf") != 0 && strcmp(lt_source_format(src), "peft") != 0) {
        /* an adapter of another method (LyCORIS LoKr, LoHa, kohya) is named
         * as such, as merge names it, not converted as if it were a model */
        lt_error aerr;
        lt_adapter *maybe = lt_adapter_open(input, &aerr);
        lt_adapter_close(maybe);
        if (!maybe && aerr.status == LT_ERR_UNSUPPORTED) {
            lt_source_close(src);
            return cli_fail(&aerr);
        }
    }
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
        size_t blen = strlen(base);
        bool config = is_dir(base) || (blen > 5 && strcmp(base + blen - 5, ".json") == 0);
        if (vocab && !to_gguf_out) {
            lt_source_close(src);
            return cli_usage("convert", "--vocab is for a model converted to GGUF");
        }
        cli_progress pr;
        lt_model_convert_options opts = {outtype_given ? outtype : LT_DTYPE_INVALID, config ? base : NULL, vocab,
                                         cli_progress_start(&pr, "converting", "tensors", false), &pr};
        lt_model_convert_report rep;
        lt_status s = lt_convert_model_with(src, &arch, &opts, out, &rep, &err);
        bool to_gguf = strcmp(lt_source_format(src), "gguf") != 0;
        lt_source_close(src);
        if (s != LT_OK)
            return cli_fail(&err);
        printf("wrote %s: %s model, architecture %s\n", out, to_gguf ? "GGUF" : "safetensors", arch.arch);
        if (to_gguf && rep.hparam_keys)
            printf("  %zu hyperparameter keys from %s%s\n", rep.hparam_keys, base,
                   rep.rope_freqs ? ", rope_freqs.weight for llama3 rope scaling" : "");
        else if (to_gguf)
            printf("  no config.json: architecture keys only (block and head counts)\n");
        if (to_gguf && rep.tokenizer_keys)
            printf("  tokenizer: %zu keys from %s (%llu tokens)\n", rep.tokenizer_keys, vocab,
                   (unsigned long long)rep.vocab_size);
        else if (to_gguf)
            printf("  no tokenizer: llama.cpp cannot load this file until one is added (--vocab VOCAB.gguf)\n");
        if (rep.skipped)
            printf("  skipped %zu rotary_emb.inv_freq buffers (recomputed by llama.cpp)\n", rep.skipped);
        return cli_finish_stdout();
    }
    if (vocab) {
        lt_source_close(src);
        return cli_usage("convert", "--vocab is for whole models, not adapters");
    }
    lt_source_close(src);
    lt_adapter *gguf = lt_adapter_open(input, &err);
    lt_adapter *hf = gguf ? lt_adapter_to_hf(gguf, &arch, &err) : NULL;
    lt_status s = hf ? cli_save_peft(hf, out, LT_F32, &err) : LT_ERR_INVALID;
    lt_adapter_close(hf);
    lt_adapter_close(gguf);
    if (s != LT_OK)
        return cli_fail(&err);
    printf("wrote %s: PEFT adapter directory, architecture %s\n", out, arch.arch);
    return cli_finish_stdout();
}
