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

static void shape_text(char *buf, size_t size, uint32_t n_dims, const uint64_t *shape)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (uint32_t d = 0; d < n_dims && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%llu", d ? ", " : "",
                                 (unsigned long long)shape[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* Every module and replacement must land on a base tensor of fitting shape. */
static void check_against_base(const lt_adapter *ad, const lt_source *base, cJSON *list)
{
    char want[128], have[128];
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++) {
        const lt_lora_module *m = lt_adapter_module(ad, i);
        long index = lt_base_find(base, m->target);
        if (index < 0) {
            violation(list, "module %s: target %s not found in base%s", m->name, m->target,
                      strstr(m->target, "lm_head") ? " (tied to the embeddings?)" : "");
            continue;
        }
        const lt_tensor_info *t = lt_source_tensor(base, (size_t)index);
        if (lt_module_fit(m, t) == LT_FIT_NONE) {
            uint64_t shape[2] = {m->out_features, m->in_features};
            shape_text(want, sizeof want, 2, shape);
            shape_text(have, sizeof have, t->n_dims, t->shape);
            violation(list, "module %s: adapter shape %s does not fit base tensor %s %s", m->name, want,
                      t->name, have);
        }
    }
    const lt_source *weights = lt_adapter_source(ad);
    for (size_t i = 0; i < lt_adapter_replacement_count(ad); i++) {
        const lt_replacement *r = lt_adapter_replacement(ad, i);
        const lt_tensor_info *mine = lt_source_tensor(weights, (size_t)r->tensor);
        long index = lt_base_find(base, r->target);
        if (index < 0) {
            /* a new head (task head, score) has no base tensor: PEFT adds it */
            violation(list, "replacement %s: target %s not found in base", r->key, r->target);
            continue;
        }
        const lt_tensor_info *t = lt_source_tensor(base, (size_t)index);
        bool fits = r->kind == LT_REPLACE_FULL
                        ? t->n_dims == mine->n_dims &&
                              memcmp(t->shape, mine->shape, t->n_dims * sizeof *t->shape) == 0
                        : t->n_dims == 2 && mine->n_dims == 2 && mine->shape[1] == t->shape[1];
        if (!fits) {
            shape_text(want, sizeof want, mine->n_dims, mine->shape);
            shape_text(have, sizeof have, t->n_dims, t->shape);
            violation(list, "replacement %s: shape %s does not fit base tensor %s %s", r->key, want,
                      t->name, have);
        }
    }
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
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    audit_limits lim = {0};
    cli_describe_opts opts = {0};
    int c;
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
        default: return cli_usage("audit", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc)
        return cli_usage("audit", "expected exactly one ADAPTER");
    if (lim.has_max_percent && !opts.base_path)
        return cli_usage("audit", "--max-percent needs --base");

    lt_error err;
    lt_adapter *ad = lt_adapter_open(argv[optind], &err);
    if (!ad)
        return cli_fail(&err);
    lt_adapter_close(ad);
    ad = NULL;
    lt_source *base = NULL;
    cJSON *desc = cli_describe(argv[optind], &opts, &ad, &base, &err);
    if (!desc)
        return cli_fail(&err);
    cJSON *violations = cJSON_CreateArray();
    if (base)
        check_against_base(ad, base, violations);
    check_limits(ad, desc, &lim, violations);
    for (size_t i = 0; i < lt_adapter_warning_count(ad); i++)
        cli_warn("%s: %s", argv[optind], lt_adapter_warning(ad, i));
    bool passed = cJSON_GetArraySize(violations) == 0;
    lt_adapter_close(ad);
    lt_source_close(base);
    int rc;
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
