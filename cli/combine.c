/* combine.c - `loratool combine A[:W] B[:W]... -o OUT [--rank R | --energy F] [--json]` */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool combine ADAPTER[:W]... -o OUT [--rank R | --energy F | --sv-ratio X]\n"
    "                        [--method concat|svd|ties|dare] [--density D] [--seed S] [--base BASE] [--json]\n"
    "  dW = sum_i W_i * scale_i * B_i A_i per module (W default 1, may be negative); inputs are PEFT\n"
    "  adapters, or GGUF LoRAs of one architecture\n"
    "  concat (default without a rank rule): exact, by concatenation (rank = sum of ranks, scale 1)\n"
    "  svd (the default with --rank, --energy or --sv-ratio): that exact sum truncated by its SVD\n"
    "  ties, dare: on each module's dense deltas with --density D (default 0.5; dare: --seed S),\n"
    "       then truncated to --rank (default: the largest input rank)\n"
    "  -o OUT      a PEFT directory, or a .gguf file (a GGUF LoRA, for GGUF inputs)\n"
    "  --base BASE GGUF LoRA inputs saved as a directory: config.json, model directory or GGUF\n"
    "              model whose names they are mapped back to (required then)\n"
    "  --json      the per-module report as JSON\n";

int cmd_combine(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'}, {"rank", required_argument, NULL, 'r'},
        {"base", required_argument, NULL, 'b'},
        {"energy", required_argument, NULL, 'e'}, {"sv-ratio", required_argument, NULL, 'x'},
        {"method", required_argument, NULL, 'm'}, {"json", no_argument, NULL, 'j'},
        {"density", required_argument, NULL, 'd'}, {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *method = NULL;
    bool has_density = false;
    double density = 0.5;
    uint64_t seed = 0;
    char *end;
    cli_surgery_args a = {.rule = {LT_RANK_KEEP, 0}};
    int c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        if (cli_surgery_option("combine", c, optarg, usage_text, &a, &rc)) {
            if (rc >= 0)
                return rc;
            continue;
        }
        switch (c) {
        case 'm': method = optarg; break;
        case 'd':
            density = strtod(optarg, &end);
            if (end == optarg || *end || !(density > 0 && density <= 1))
                return cli_usage("combine", "--density: '%s' is not in (0, 1]", optarg);
            has_density = true;
            break;
        case 's':
            if (!cli_parse_count(optarg, &seed))
                return cli_usage("combine", "--seed: '%s' is not a number", optarg);
            break;
        default: return cli_usage("combine", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    const char *out = a.out;
    bool json = a.json;
    lt_rank_rule rule = a.rule;
    bool dense = method && (strcmp(method, "ties") == 0 || strcmp(method, "dare") == 0);
    if (method && !dense && strcmp(method, "concat") != 0 && strcmp(method, "svd") != 0)
        return cli_usage("combine", "--method %s is not one of concat, svd, ties, dare", method);
    if (has_density && !dense)
        return cli_usage("combine", "--density goes with --method ties or dare");
    if (dense && rule.kind != LT_RANK_KEEP && rule.kind != LT_RANK_FIXED)
        return cli_usage("combine", "--method %s truncates to --rank only", method);
    if (method && strcmp(method, "svd") == 0 && rule.kind == LT_RANK_KEEP)
        return cli_usage("combine", "--method svd needs --rank, --energy or --sv-ratio");
    if (method && strcmp(method, "concat") == 0 && rule.kind != LT_RANK_KEEP)
        return cli_usage("combine", "--method concat is exact: it takes no --rank/--energy");
    if (argc - optind < 1)
        return cli_usage("combine", "expected at least one ADAPTER");
    if (!out)
        return cli_usage("combine", "missing -o OUT_DIR");
    if ((rc = cli_check_adapter_out("combine", out, true)) ||
        (rc = cli_check_output("combine", out, NULL, argc - optind, argv + optind)))
        return rc;
    if (a.base && (rc = cli_resolve("combine", a.base, CLI_INPUT_MODEL, &a.base)))
        return rc;
    size_t n = (size_t)(argc - optind);
    lt_adapter **ads = calloc(n, sizeof *ads);
    double *weights = calloc(n, sizeof *weights);
    lt_error err;
    rc = 0;
    for (size_t i = 0; ads && weights && i < n && rc == 0; i++) {
        char *path;
        rc = cli_split_scale("combine", argv[optind + (int)i], &path, &weights[i]);
        ads[i] = path ? lt_adapter_open(path, &err) : NULL;
        free(path);
        if (!ads[i] && rc == 0)
            rc = cli_fail(&err);
    }
    if (rc == 0 && (!ads || !weights))
        rc = cli_usage("combine", "out of memory");
    lt_surgery_report report = {0};
    if (rc == 0) {
        lt_adapter *model = NULL;
        cli_progress pr;
        lt_progress_fn shown = cli_progress_start(&pr, "combining", "modules", json);
        lt_status s = dense ? lt_combine_dense_with((const lt_adapter *const *)ads, weights, n,
                                                    strcmp(method, "ties") == 0 ? LT_COMBINE_TIES : LT_COMBINE_DARE,
                                                    density, seed,
                                                    rule.kind == LT_RANK_FIXED ? (uint32_t)rule.value : 0, shown,
                                                    &pr, &model, &report, &err)
                            : lt_combine_with((const lt_adapter *const *)ads, weights, n, &rule, shown, &pr, &model,
                                              &report, &err);
        rc = cli_finish_surgery(s, model, out, true, a.base, &report, json, &err);
    }
    for (size_t i = 0; ads && i < n; i++)
        lt_adapter_close(ads[i]);
    free(ads);
    free(weights);
    return rc;
}
