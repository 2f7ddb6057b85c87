/* resize.c - `loratool resize ADAPTER -o OUT (--rank R | --energy F | --sv-ratio X) [--json]` */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool resize ADAPTER -o OUT (--rank R | --energy F | --sv-ratio X) [--base BASE] [--json]\n"
    "  per module, the smallest rank meeting the rule (never above the current rank), by the exact\n"
    "  truncated SVD of its scale * B A from QR factors; each module keeps its effective scale\n"
    "  (written as alpha = rank)\n"
    "  --rank R       at most R\n"
    "  --energy F     keep the fraction F of sum s_i^2 (e.g. 0.99)\n"
    "  --sv-ratio X   keep singular values s_i > s_0 / X\n"
    "  -o OUT         a PEFT directory, or a .gguf file for GGUF LoRA inputs\n"
    "  --base BASE    GGUF LoRA inputs saved as a directory: config.json, model directory or GGUF\n"
    "                 model whose names they are mapped back to (required then)\n"
    "  --json         the per-module report as JSON\n";

int cmd_resize(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'}, {"rank", required_argument, NULL, 'r'},
        {"base", required_argument, NULL, 'b'},
        {"energy", required_argument, NULL, 'e'}, {"sv-ratio", required_argument, NULL, 'x'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_surgery_args a = {.rule = {LT_RANK_KEEP, 0}};
    int c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        if (!cli_surgery_option("resize", c, optarg, usage_text, &a, &rc))
            return cli_usage("resize", "unknown or incomplete option '%s'", argv[optind - 1]);
        if (rc >= 0)
            return rc;
    }
    const char *out = a.out;
    bool json = a.json;
    lt_rank_rule rule = a.rule;
    if (optind + 1 != argc)
        return cli_usage("resize", "expected exactly one ADAPTER");
    if (!out)
        return cli_usage("resize", "missing -o OUT_DIR");
    if (rule.kind == LT_RANK_KEEP)
        return cli_usage("resize", "give --rank, --energy or --sv-ratio");
    if ((rc = cli_check_adapter_out("resize", out, true)) || (rc = cli_check_output("resize", out, NULL, 1, argv + optind)))
        return rc;
    const char *path;
    if ((rc = cli_resolve("resize", argv[optind], CLI_INPUT_ADAPTER, &path)) ||
        (a.base && (rc = cli_resolve("resize", a.base, CLI_INPUT_MODEL, &a.base))))
        return rc;
    lt_error err;
    lt_adapter *ad = lt_adapter_open(path, &err);
    if (!ad)
        return cli_fail(&err);
    lt_surgery_report report = {0};
    lt_adapter *model = NULL;
    cli_progress pr;
    lt_progress_fn shown = cli_progress_start(&pr, "resizing", "modules", json);
    lt_status s = lt_resize_with(ad, &rule, shown, &pr, &model, &report, &err);
    rc = cli_finish_surgery(s, model, out, true, a.base, &report, json, &err);
    lt_adapter_close(ad);
    return rc;
}
