/* verify.c - `loratool verify BASE ADAPTER[:SCALE]... --merged OUT
 * [--probes K] [--seed S] [--false-alarm P] [--exact] [--allow-missing]
 * [--base-config DIR] [--json]`: is OUT the merge of the adapters into
 * BASE?  Exit 1 when a check fails (spec/verify.md). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool verify BASE ADAPTER[:SCALE]... --merged OUT [--probes K] [--seed S]\n"
    "                       [--false-alarm P] [--exact] [--allow-missing] [--threads N] [--json]\n"
    "       loratool verify ADAPTER[:SCALE]... --adapter OUT [--base BASE] [--rtol R] [--json]\n"
    "  BASE, ADAPTER  as for merge; OUT the merged model to check (safetensors file, sharded\n"
    "                 model or GGUF, quantized Q8_0/Q4_0 included)\n"
    "  --merged OUT   the file to check; a GGUF OUT of a safetensors BASE is matched by\n"
    "                 llama.cpp's names and Q/K row order (architecture from BASE's\n"
    "                 config.json)\n"
    "  --probes K     random-sign probe vectors per tensor (default 2)\n"
    "  --seed S       probe seed (default: fixed, spec/verify.md)\n"
    "  --false-alarm P  chance that a correct OUT fails, for the whole file (default 1e-9)\n"
    "  --exact        also every element: equal to the merge's float64 value rounded once\n"
    "  --allow-missing  skip modules whose target BASE lacks (listed)\n"
    "  --threads N    tensors checked at once (default: every online core; same results)\n"
    "  --adapter OUT  is adapter OUT the weighted sum of the ADAPTERs (a conversion, a combine,\n"
    "                 a resize with --rtol)?  Per module ||sum w s B A - s' B' A'||_F / ||sum w s B A||_F\n"
    "                 from small QR factors\n"
    "  --base BASE    with --adapter: architecture (config.json, model directory or GGUF) for\n"
    "                 matching PEFT and GGUF LoRA modules (names, llama's Q/K rows)\n"
    "  --rtol R       with --adapter: tolerance (default 8 x the unit roundoff of OUT's factors)\n"
    "  --json         one JSON object with every tensor's (module's) result\n"
    CLI_LORALIB_USAGE
    "exit: 0 OUT verified, 1 a check failed, 2 usage, 3 invalid input, 4 I/O error\n";

static cJSON *json_number(double x)
{
    return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull();
}

static int print_report(const lt_verify_report *r, const char *out_path, bool json, bool exact)
{
    if (json) {
        cJSON *o = cJSON_CreateObject(), *list = cJSON_CreateArray(), *skipped = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "merged", out_path);
        cJSON_AddBoolToObject(o, "passed", r->n_failed == 0);
        cJSON_AddNumberToObject(o, "tensors", (double)r->n_tensors);
        cJSON_AddNumberToObject(o, "failed", (double)r->n_failed);
        cJSON_AddNumberToObject(o, "probes", r->probes);
        cJSON_AddNumberToObject(o, "seed", (double)r->seed);
        cJSON_AddNumberToObject(o, "false_alarm", r->false_alarm);
        cJSON_AddNumberToObject(o, "threshold", r->threshold);
        cJSON_AddNumberToObject(o, "checks", (double)r->checks);
        cJSON_AddBoolToObject(o, "exact", exact);
        for (size_t i = 0; i < r->n_tensors; i++) {
            const lt_verify_tensor *t = &r->tensors[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", t->name);
            cJSON_AddStringToObject(e, "kind", lt_verify_kind_name(t->kind));
            cJSON_AddBoolToObject(e, "passed", !t->failed);
            if (t->kind == LT_VERIFY_MERGED) {
                cJSON_AddNumberToObject(e, "rows_checked", (double)t->rows_checked);
                cJSON_AddItemToObject(e, "worst", json_number(t->worst));
                cJSON_AddNumberToObject(e, "worst_row", (double)t->worst_row);
                cJSON_AddItemToObject(e, "rel_error", json_number(t->rel_error));
                if (exact)
                    cJSON_AddNumberToObject(e, "exact_mismatches", (double)t->exact_bad);
            }
            if (t->problem)
                cJSON_AddStringToObject(e, "problem", t->problem);
            cJSON_AddItemToArray(list, e);
        }
        cJSON_AddItemToObject(o, "tensor_list", list);
        for (size_t i = 0; i < r->n_skipped_modules; i++)
            cJSON_AddItemToArray(skipped, cJSON_CreateString(r->skipped_modules[i]));
        cJSON_AddItemToObject(o, "skipped", skipped);
        return cli_print_json(o);
    }
    size_t counts[LT_VERIFY_SKIPPED + 1] = {0};
    for (size_t i = 0; i < r->n_tensors; i++) {
        const lt_verify_tensor *t = &r->tensors[i];
        counts[t->kind]++;
        if (t->kind == LT_VERIFY_MERGED)
            printf("%s %-9s %s  rows %llu  worst %.3g  rel_error %.3g%s%s\n", t->failed ? "FAIL" : "ok  ",
                   lt_verify_kind_name(t->kind), t->name, (unsigned long long)t->rows_checked, t->worst,
                   t->rel_error, t->problem ? "  " : "", t->problem ? t->problem : "");
        else if (t->failed)
            printf("FAIL %-9s %s  %s\n", lt_verify_kind_name(t->kind), t->name, t->problem ? t->problem : "");
    }
    for (size_t i = 0; i < r->n_skipped_modules; i++)
        printf("skipped module: %s\n", r->skipped_modules[i]);
    printf("%s: %zu tensors (%zu merged, %zu copied, %zu converted, %zu replaced, %zu added), %zu failed; "
           "%llu checks, %u probes, threshold %.3g noise units (false alarm %.3g)\n",
           r->n_failed ? "FAILED" : "verified", r->n_tensors, counts[LT_VERIFY_MERGED], counts[LT_VERIFY_COPIED],
           counts[LT_VERIFY_CONVERTED], counts[LT_VERIFY_REPLACED], counts[LT_VERIFY_ADDED], r->n_failed,
           (unsigned long long)r->checks, r->probes, r->threshold, r->false_alarm);
    return cli_finish_stdout();
}

static int print_adapter_report(const lt_verify_adapter_report *r, const char *out_path, bool json)
{
    if (json) {
        cJSON *o = cJSON_CreateObject(), *list = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "adapter", out_path);
        cJSON_AddBoolToObject(o, "passed", r->n_failed == 0);
        cJSON_AddNumberToObject(o, "modules", (double)r->n_modules);
        cJSON_AddNumberToObject(o, "failed", (double)r->n_failed);
        cJSON_AddNumberToObject(o, "rtol", r->rtol);
        for (size_t i = 0; i < r->n_modules; i++) {
            const lt_verify_module *m = &r->modules[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "target", m->target);
            cJSON_AddBoolToObject(e, "passed", !m->failed);
            cJSON_AddBoolToObject(e, "in_inputs", m->in_inputs);
            cJSON_AddBoolToObject(e, "in_adapter", m->in_out);
            cJSON_AddNumberToObject(e, "rank_inputs", m->rank_inputs);
            cJSON_AddNumberToObject(e, "rank_adapter", m->rank_out);
            cJSON_AddItemToObject(e, "rel_error", json_number(m->rel_error));
            if (m->problem)
                cJSON_AddStringToObject(e, "problem", m->problem);
            cJSON_AddItemToArray(list, e);
        }
        cJSON_AddItemToObject(o, "module_list", list);
        return cli_print_json(o);
    }
    for (size_t i = 0; i < r->n_modules; i++) {
        const lt_verify_module *m = &r->modules[i];
        printf("%s %s  rank %u -> %u  rel_error %.3g%s%s\n", m->failed ? "FAIL" : "ok  ", m->target, m->rank_inputs,
               m->rank_out, m->rel_error, m->problem ? "  " : "", m->problem ? m->problem : "");
    }
    printf("%s: %zu modules, %zu failed; tolerance %.3g\n", r->n_failed ? "FAILED" : "verified", r->n_modules,
           r->n_failed, r->rtol);
    return cli_finish_stdout();
}

/* verify ADAPTER[:SCALE]... --adapter OUT [--base BASE] [--rtol R] */
static int verify_adapter(int n_args, char **args, const char *out_path, const char *arch_base, double rtol,
                          bool json)
{
    if (n_args < 1)
        return cli_usage("verify", "verify --adapter wants at least one input ADAPTER");
    size_t n = (size_t)n_args;
    lt_merge_input *inputs = calloc(n, sizeof *inputs);
    lt_adapter *out = NULL;
    lt_name_map *map = NULL;
    lt_error err;
    int rc = 0;
    if (!inputs) {
        fprintf(stderr, "loratool: out of memory\n");
        return EXIT_IO;
    }
    bool gguf_seen = false, peft_seen = false;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *path = NULL;
        if ((rc = cli_split_scale("verify", args[i], &path, &inputs[i].weight)))
            break;
        if (!(inputs[i].adapter = lt_adapter_open(path, &err)))
            rc = cli_fail(&err);
        free(path);
    }
    if (rc == 0 && !(out = lt_adapter_open(out_path, &err)))
        rc = cli_fail(&err);
    for (size_t i = 0; i <= n && rc == 0; i++) {
        const lt_adapter *ad = i < n ? inputs[i].adapter : out;
        bool g = strcmp(lt_source_format(lt_adapter_source(ad)), "gguf") == 0;
        gguf_seen |= g;
        peft_seen |= !g;
    }
    if (rc == 0 && gguf_seen && peft_seen) {
        lt_arch_info arch;
        if (!arch_base)
            rc = cli_usage("verify", "PEFT and GGUF LoRA adapters are matched with --base BASE (the architecture)");
        else if (lt_arch_info_read(arch_base, &arch, &err) != LT_OK || !(map = lt_name_map_create(&arch, &err)))
            rc = cli_fail(&err);
    }
    lt_verify_adapter_report report = {0};
    if (rc == 0 && lt_verify_adapter(inputs, n, out, map, rtol, &report, &err) != LT_OK)
        rc = cli_fail(&err);
    if (rc == 0) {
        rc = print_adapter_report(&report, out_path, json);
        if (rc == 0 && report.n_failed)
            rc = EXIT_LIMIT;
    }
    lt_verify_adapter_report_free(&report);
    lt_name_map_free(map);
    lt_adapter_close(out);
    for (size_t i = 0; i < n; i++)
        lt_adapter_close((lt_adapter *)inputs[i].adapter);
    free(inputs);
    return rc;
}

int cmd_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"merged", required_argument, NULL, 'm'},      {"probes", required_argument, NULL, 'k'},
        {"seed", required_argument, NULL, 's'},        {"false-alarm", required_argument, NULL, 'p'},
        {"exact", no_argument, NULL, 'x'},             {"allow-missing", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},              {"help", no_argument, NULL, 'h'},
        {"adapter", required_argument, NULL, 'A'},     {"base", required_argument, NULL, 'B'},
        {"rtol", required_argument, NULL, 'r'},        {"threads", required_argument, NULL, 't'},
        CLI_LORALIB_OPTIONS,                           {NULL, 0, NULL, 0}};
    cli_loralib loralib = {0};
    int handled;
    lt_verify_options opts = {0};
    const char *out_path = NULL, *adapter_out = NULL, *arch_base = NULL;
    double rtol = 0;
    bool json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm': out_path = optarg; break;
        case 'k': {
            unsigned long k = strtoul(optarg, &end, 10);
            if (end == optarg || *end || k < 1 || k > 64)
                return cli_usage("verify", "--probes wants 1..64, not '%s'", optarg);
            opts.probes = (uint32_t)k;
            break;
        }
        case 's': {
            unsigned long long v = strtoull(optarg, &end, 0);
            if (end == optarg || *end || v == 0)
                return cli_usage("verify", "--seed wants a positive integer, not '%s'", optarg);
            opts.seed = v;
            break;
        }
        case 'p': {
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v > 0 && v < 1))
                return cli_usage("verify", "--false-alarm wants a probability in (0, 1), not '%s'", optarg);
            opts.false_alarm = v;
            break;
        }
        case 'x': opts.exact = true; break;
        case 'a': opts.allow_missing = true; break;
        case 'j': json = true; break;
        case 't': {
            unsigned long t = strtoul(optarg, &end, 10);
            if (end == optarg || *end || t < 1 || t > 1024)
                return cli_usage("verify", "--threads wants 1..1024, not '%s'", optarg);
            opts.threads = (unsigned)t;
            break;
        }
        case 'A': adapter_out = optarg; break;
        case 'B': arch_base = optarg; break;
        case 'r': {
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v > 0) || !isfinite(v))
                return cli_usage("verify", "--rtol wants a positive number, not '%s'", optarg);
            rtol = v;
            break;
        }
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default:
            if ((handled = cli_loralib_option("verify", c, optarg, &loralib)) != 0) {
                if (handled < 0)
                    return -handled;
                break;
            }
            return cli_usage("verify", "bad option");
        }
    }
    if (adapter_out && out_path)
        return cli_usage("verify", "--merged and --adapter exclude each other");
    int rc = 0;
    if ((out_path && (rc = cli_resolve("verify", out_path, CLI_INPUT_MODEL, &out_path))) ||
        (adapter_out && (rc = cli_resolve("verify", adapter_out, CLI_INPUT_ADAPTER, &adapter_out))) ||
        (arch_base && (rc = cli_resolve("verify", arch_base, CLI_INPUT_MODEL, &arch_base))))
        return rc;
    if (adapter_out)
        return verify_adapter(argc - optind, argv + optind, adapter_out, arch_base, rtol, json);
    if (arch_base || rtol > 0)
        return cli_usage("verify", "--base and --rtol belong to --adapter");
    if (!out_path)
        return cli_usage("verify", "verify wants --merged OUT");
    if (argc - optind < 2)
        return cli_usage("verify", "verify wants BASE and at least one ADAPTER");
    const char *base_path;
    if ((rc = cli_resolve("verify", argv[optind], CLI_INPUT_MODEL, &base_path)))
        return rc;
    size_t n_inputs = (size_t)(argc - optind - 1);
    lt_merge_input *inputs = calloc(n_inputs, sizeof *inputs);
    char **paths = calloc(n_inputs, sizeof *paths);
    lt_adapter **originals = calloc(n_inputs, sizeof *originals); /* of GGUF views */
    lt_error err;
    lt_source *base = NULL, *out = NULL;
    lt_name_map *map = NULL;
    if (!inputs || !paths || !originals) {
        fprintf(stderr, "loratool: out of memory\n");
        free(inputs);
        free(paths);
        free(originals);
        return EXIT_IO;
    }
    if (!(base = lt_source_open(base_path, &err)))
        rc = cli_fail(&err);
    for (size_t i = 0; i < n_inputs && rc == 0; i++) {
        lt_adapter *ad = NULL;
        if ((rc = cli_split_scale("verify", argv[optind + 1 + i], &paths[i], &inputs[i].weight)))
            break;
        loralib.open.base = base; /* loralib checkpoints are read against it */
        if (!(ad = lt_adapter_open_with(paths[i], &loralib.open, &err)))
            rc = cli_fail(&err);
        else
            rc = cli_adapter_for_base(base_path, base, &ad, &originals[i]);
        inputs[i].adapter = ad;
    }
    if (rc == 0 && !(out = lt_source_open(out_path, &err)))
        rc = cli_fail(&err);
    if (rc == 0 && strcmp(lt_source_format(out), "gguf") == 0 && strcmp(lt_source_format(base), "gguf") != 0) {
        /* a GGUF merge of a Hugging Face base: convert's names and rows */
        lt_arch_info arch;
        if (lt_arch_info_read(base_path, &arch, &err) != LT_OK || !(map = lt_name_map_create(&arch, &err)))
            rc = cli_fail(&err);
        opts.map = map;
    }
    lt_verify_report report = {0};
    if (rc == 0 && lt_verify_merged(base, inputs, n_inputs, out, &opts, &report, &err) != LT_OK)
        rc = cli_fail(&err);
    if (rc == 0) {
        rc = print_report(&report, out_path, json, opts.exact);
        if (rc == 0 && report.n_failed)
            rc = EXIT_LIMIT;
    }
    lt_verify_report_free(&report);
    lt_name_map_free(map);
    lt_source_close(base);
    lt_source_close(out);
    for (size_t i = 0; i < n_inputs; i++) {
        lt_adapter_close((lt_adapter *)inputs[i].adapter);
        lt_adapter_close(originals[i]); /* after the view that reads it */
        free(paths[i]);
    }
    free(inputs);
    free(paths);
    free(originals);
    return rc;
}
