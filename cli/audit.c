/* audit.c - `loratool audit ADAPTER [--base BASE] [limits...] [--json]`:
 * the counts of inspect plus checks for CI; exit 1 when any check fails. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool audit ADAPTER [--base BASE] [--max-params N] [--max-rank R]\n"
    "                      [--max-percent P] [--require-targets a,b,...] [--json]\n"
    "  --base BASE          check every module's target exists in BASE with a fitting shape,\n"
    "                       and report trainable % = 100 * trainable / (base + trainable)\n"
    "  --max-params N       trainable parameters at most N (suffixes k, M, B: 5M, 1.5B)\n"
    "  --max-rank R         every module's rank at most R\n"
    "  --max-percent P      trainable % at most P (needs --base)\n"
    "  --require-targets L  each listed module name (e.g. q_proj) adapted by some module\n"
    "  --json               one JSON object: inspect's keys plus violations and passed\n"
    CLI_LORALIB_USAGE
    "exit: 0 all checks hold, 1 a check failed, 2 usage, 3 invalid input, 4 I/O error\n";

typedef struct audit_limits {
    bool has_max_params, has_max_rank, has_max_percent;
    uint64_t max_params, max_rank;
    double max_percent;
    const char *require_targets;
} audit_limits;

static void violation(cJSON *list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(cJSON *list, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cJSON_AddItemToArray(list, cJSON_CreateString(line));
}

static void add_violation(void *list, const char *message)
{
    /* merge's hint names a merge option; audit has none such */
    static const char hint[] = " (use --allow-missing to skip)";
    size_t n = strlen(message), k = sizeof hint - 1;
    int keep = n >= k && strcmp(message + n - k, hint) == 0 ? (int)(n - k) : (int)n;
    violation(list, "%.*s", keep, message);
}

/* Merge's own checks, made by merge's planner without reading factor data
 * (names, shapes, dtypes, token ids, bias presence, config): every refusal
 * merge would make is a violation.  A replacement whose target the base
 * lacks is one too (merge would add it as a new tensor: a new head). */
static void check_against_base(const lt_adapter *ad, lt_source *base, const char *base_path, cJSON *list)
{
    for (size_t i = 0; i < lt_adapter_replacement_count(ad); i++) {
        const lt_replacement *r = lt_adapter_replacement(ad, i);
        if (r->kind == LT_REPLACE_FULL && lt_base_find(base, r->target) < 0)
            violation(list, "replacement %s: target %s not found in base", r->key, r->target);
    }
    lt_error err;
    const lt_adapter *merged = ad;
    lt_adapter *view = NULL;
    if (strcmp(lt_source_format(base), "gguf") == 0 && !lt_adapter_gguf_arch(ad)) {
        lt_arch_info arch; /* as merge sees a PEFT adapter over a GGUF base */
        if (lt_arch_info_read(base_path, &arch, &err) != LT_OK || !(view = lt_adapter_for_gguf(ad, &arch, &err))) {
            violation(list, "%s", err.message);
            return;
        }
        merged = view;
    }
    lt_merge_options opts = {.check_only = true, .on_violation = add_violation, .violation_ctx = list};
    lt_merge_input input = {merged, 1.0};
    lt_merge_plan *plan = lt_merge_plan_create(base, &input, 1, &opts, &err);
    if (!plan)
        violation(list, "%s", err.message);
    lt_merge_plan_free(plan);
    lt_adapter_close(view);
}

/* Does some module's name end with the component(s) in target? */
static bool has_target(const lt_adapter *ad, const char *target, size_t len)
{
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        const char *name = lt_adapter_module(ad, i)->name;
        size_t n = strlen(name);
        if (n >= len && strncmp(name + n - len, target, len) == 0 &&
            (n == len || name[n - len - 1] == '.'))
            return true;
    }
    return false;
}

static void check_limits(const lt_adapter *ad, const cJSON *desc, const audit_limits *lim, cJSON *list)
{
    char a[40], b[40];
    uint64_t trainable = lt_adapter_lora_params(ad) + lt_adapter_replacement_params(ad);
    if (lim->has_max_params && trainable > lim->max_params)
        violation(list, "trainable parameters %s exceed --max-params %s", cli_count(trainable, a, sizeof a),
                  cli_count(lim->max_params, b, sizeof b));
    if (lim->has_max_rank)
        for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
            const lt_lora_module *m = lt_adapter_module(ad, i);
            if (m->rank > lim->max_rank)
                violation(list, "module %s has rank %u > --max-rank %llu", m->name, m->rank,
                          (unsigned long long)lim->max_rank);
        }
    const cJSON *percent = cJSON_GetObjectItem(desc, "trainable_percent");
    if (lim->has_max_percent && percent && percent->valuedouble > lim->max_percent)
        violation(list, "trainable %.4f%% exceeds --max-percent %g", percent->valuedouble, lim->max_percent);
    for (const char *p = lim->require_targets; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len > 0 && !has_target(ad, p, len))
            violation(list, "required target %.*s is adapted by no module", (int)len, p);
        p += len + (comma ? 1 : 0);
    }
}

int cmd_audit(int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},           {"base", required_argument, NULL, 'b'},
        {"max-params", required_argument, NULL, 'p'}, {"max-rank", required_argument, NULL, 'r'},
        {"max-percent", required_argument, NULL, '%'},
        {"require-targets", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        CLI_LORALIB_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    audit_limits lim = {0};
    cli_describe_opts opts = {0};
    int c, handled;
    cli_loralib loralib = {0};
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'j': json = true; break;
        case 'b': opts.base_path = optarg; break;
        case 'p':
            if (!cli_parse_count(optarg, &lim.max_params))
                return cli_usage("audit", "--max-params: '%s' is not a count (e.g. 5M)", optarg);
            lim.has_max_params = true;
            break;
        case 'r':
            if (!cli_parse_count(optarg, &lim.max_rank))
                return cli_usage("audit", "--max-rank: '%s' is not a count", optarg);
            lim.has_max_rank = true;
            break;
        case '%':
            lim.max_percent = strtod(optarg, &end);
            if (end == optarg || (*end && strcmp(end, "%") != 0) || !(lim.max_percent >= 0))
                return cli_usage("audit", "--max-percent: '%s' is not a percentage", optarg);
            lim.has_max_percent = true;
            break;
        case 't': lim.require_targets = optarg; break;
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default:
            if ((handled = cli_loralib_option("audit", c, optarg, &loralib)) != 0) {
                if (handled < 0)
                    return -handled;
                break;
            }
            return cli_usage("audit", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc)
        return cli_usage("audit", "expected exactly one ADAPTER");
    if (lim.has_max_percent && !opts.base_path)
        return cli_usage("audit", "--max-percent needs --base");

    const char *path;
    int rc = cli_resolve("audit", argv[optind], CLI_INPUT_ADAPTER, &path);
    if (rc == 0 && opts.base_path)
        rc = cli_resolve("audit", opts.base_path, CLI_INPUT_MODEL, &opts.base_path);
    if (rc)
        return rc;
    lt_error err;
    /* an adapter, or refused (the base and loralib options come below) */
    loralib.open.describe_only = true;
    lt_adapter *ad = lt_adapter_open_with(path, &loralib.open, &err);
    if (!ad)
        return cli_fail(&err);
    lt_adapter_close(ad);
    ad = NULL;
    opts.adapter_opts = &loralib.open;
    lt_source *base = NULL;
    cJSON *desc = cli_describe(path, &opts, &ad, &base, &err);
    if (!desc)
        return cli_fail(&err);
    /* "path" is the argument as given (spec/cli.md), not where it resolved */
    if (strcmp(path, argv[optind]) != 0)
        cJSON_ReplaceItemInObjectCaseSensitive(desc, "path", cJSON_CreateString(argv[optind]));
    cJSON *violations = cJSON_CreateArray();
    if (base)
        check_against_base(ad, base, opts.base_path, violations);
    check_limits(ad, desc, &lim, violations);
    for (size_t i = 0; i < lt_adapter_warning_count(ad); i++)
        cli_warn("%s: %s", argv[optind], lt_adapter_warning(ad, i));
    bool passed = cJSON_GetArraySize(violations) == 0;
    lt_adapter_close(ad);
    lt_source_close(base);
    if (json) {
        cJSON_AddItemToObject(desc, "violations", violations);
        cJSON_AddBoolToObject(desc, "passed", passed);
        rc = cli_print_json(desc);
    } else {
        cli_print_description(desc);
        cJSON_Delete(desc);
        const cJSON *item;
        printf("audit: %s\n", passed ? "passed" : "FAILED");
        cJSON_ArrayForEach(item, violations) printf("  violation: %s\n", item->valuestring);
        cJSON_Delete(violations);
        rc = cli_finish_stdout();
    }
    return rc ? rc : (passed ? 0 : EXIT_LIMIT);
}
