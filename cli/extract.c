/* extract.c - `loratool extract BASE TUNED -o OUT_DIR (--rank R | --energy F)
 *             [--targets REGEX] [--max-rank N] [--threads N] [--seed S] [--json]` */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool extract BASE TUNED -o OUT_DIR (--rank R | --energy F) [--targets REGEX]\n"
    "                        [--max-rank N] [--threads N] [--seed S] [--keep-zero] [--json]\n"
    "  a LoRA adapter approximating TUNED - BASE: per matching 2-D weight, a randomized SVD\n"
    "  (oversampling 10, 2 power iterations) of the difference\n"
    "  --rank R        rank R per module\n"
    "  --energy F      smallest rank keeping the fraction F of ||dW||_F^2 (up to --max-rank, 256)\n"
    "  --targets REGEX Python regex matched against whole tensor names (default: attention and\n"
    "                  MLP projections, '.*\\.(q_proj|k_proj|...|fc2|to_v)\\.weight')\n"
    "  --max-rank N    cap for --energy (default 256)\n"
    "  --threads N     worker threads (default: every online core; same bytes)\n"
    "  --seed S        the randomized SVD's test matrix (default 0; same seed, same result)\n"
    "  --keep-zero     keep weights TUNED did not change, as zero factors (default: left out, listed)\n"
    "  --json          the per-module report as JSON\n";

int cmd_extract(int argc, char **argv)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'}, {"rank", required_argument, NULL, 'r'},
        {"energy", required_argument, NULL, 'e'}, {"targets", required_argument, NULL, 't'},
        {"max-rank", required_argument, NULL, 'M'}, {"threads", required_argument, NULL, 'T'},
        {"seed", required_argument, NULL, 'S'},   {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},         {"keep-zero", no_argument, NULL, 'K'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    bool json = false;
    lt_extract_options opts = {0};
    uint64_t number;
    int c, rc;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'r': case 'e':
            if ((rc = cli_parse_rank_rule("extract", c, optarg, &opts.rule)))
                return rc;
            break;
        case 't': opts.targets = optarg; break;
        case 'K': opts.keep_zero = true; break;
        case 'M': case 'T':
            if (!cli_parse_count(optarg, &number) || number == 0 || number > 65536)
                return cli_usage("extract", "'%s' is not a number from 1 to 65536", optarg);
            if (c == 'M')
                opts.max_rank = (uint32_t)number;
            else
                opts.threads = (unsigned)number;
            break;
        case 'S':
            if (!cli_parse_count(optarg, &opts.seed))
                return cli_usage("extract", "--seed: '%s' is not a number", optarg);
            break;
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default: return cli_usage("extract", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage("extract", "expected BASE and TUNED");
    if (!out)
        return cli_usage("extract", "missing -o OUT_DIR");
    if (opts.rule.kind == LT_RANK_KEEP)
        return cli_usage("extract", "give --rank or --energy");
    if ((rc = cli_check_adapter_out("extract", out, false)) || (rc = cli_check_output("extract", out, NULL, 2, argv + optind)))
        return rc;
    const char *base_path, *tuned_path;
    if ((rc = cli_resolve("extract", argv[optind], CLI_INPUT_MODEL, &base_path)) ||
        (rc = cli_resolve("extract", argv[optind + 1], CLI_INPUT_MODEL, &tuned_path)))
        return rc;
    lt_error err;
    lt_source *base = lt_source_open(base_path, &err);
    if (!base)
        return cli_fail(&err);
    lt_source *tuned = lt_source_open(tuned_path, &err);
    if (!tuned) {
        lt_source_close(base);
        return cli_fail(&err);
    }
    lt_surgery_report report = {0};
    lt_adapter *model = NULL;
    cli_progress pr;
    opts.progress = cli_progress_start(&pr, "extracting", "weights", json);
    opts.progress_ctx = &pr;
    lt_status s = lt_extract(base, tuned, &opts, &model, &report, &err);
    rc = cli_finish_surgery(s, model, out, false, NULL, &report, json, &err);
    lt_source_close(base);
    lt_source_close(tuned);
    return rc;
}
