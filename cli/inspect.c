/* inspect.c - `loratool inspect PATH [--json] [--tensors] [--base BASE]` */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool inspect PATH [--json] [--tensors] [--base BASE]\n"
    "  PATH       a .safetensors or .gguf file, a sharded model (directory or index), a PEFT\n"
    "             adapter directory or a GGUF LoRA\n"
    "  --json     one JSON object on stdout (keys in spec/cli.md)\n"
    "  --tensors  list every tensor (name, dtype, shape, offset, bytes)\n"
    "  --base     a base model: adds its parameter count and the adapter's trainable %\n"
    "             (for loralib checkpoints: tells layer kinds and merged-layer groups)\n"
    CLI_LORALIB_USAGE;

int cmd_inspect(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},  {"tensors", no_argument, NULL, 't'},
        {"base", required_argument, NULL, 'b'}, {"help", no_argument, NULL, 'h'}, CLI_LORALIB_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    cli_describe_opts opts = {0};
    int c, handled;
    cli_loralib loralib = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'j': json = true; break;
        case 't': opts.with_tensors = true; break;
        case 'b': opts.base_path = optarg; break;
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default:
            if ((handled = cli_loralib_option("inspect", c, optarg, &loralib)) != 0) {
                if (handled < 0)
                    return -handled;
                break;
            }
            return cli_usage("inspect", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc)
        return cli_usage("inspect", "expected exactly one PATH");
    const char *path;
    int rc = cli_resolve("inspect", argv[optind], CLI_INPUT_FILE, &path);
    if (rc == 0 && opts.base_path)
        rc = cli_resolve("inspect", opts.base_path, CLI_INPUT_MODEL, &opts.base_path);
    if (rc)
        return rc;
    lt_error err;
    lt_adapter *ad = NULL;
    opts.adapter_opts = &loralib.open;
    cJSON *desc = cli_describe(path, &opts, &ad, NULL, &err);
    if (!desc)
        return cli_fail(&err);
    /* "path" is the argument as given (spec/cli.md), not where it resolved */
    if (strcmp(path, argv[optind]) != 0)
        cJSON_ReplaceItemInObjectCaseSensitive(desc, "path", cJSON_CreateString(argv[optind]));
    for (size_t i = 0; ad && i < lt_adapter_warning_count(ad); i++)
        cli_warn("%s: %s", argv[optind], lt_adapter_warning(ad, i));
    lt_adapter_close(ad);
    if (json)
        return cli_print_json(desc);
    cli_print_description(desc);
    cJSON_Delete(desc);
    return cli_finish_stdout();
}
