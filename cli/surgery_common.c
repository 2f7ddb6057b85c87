/* surgery_common.c - what resize, combine and extract share: the rank
 * rule options and the per-module report (text or JSON). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_parse_rank_rule(const char *verb, int option, const char *arg, lt_rank_rule *rule)
{
    char *end;
    double value = strtod(arg, &end);
    if (end == arg || *end != '\0')
        return cli_usage(verb, "'%s' is not a number", arg);
    if (rule->kind != LT_RANK_KEEP)
        return cli_usage(verb, "give only one of --rank, --energy, --sv-ratio");
    switch (option) {
    case 'r':
        if (value < 1 || value != (double)(long)value || value > 1e7)
            return cli_usage(verb, "--rank: '%s' is not a positive whole number", arg);
        rule->kind = LT_RANK_FIXED;
        break;
    case 'e':
        if (!(value > 0 && value <= 1))
            return cli_usage(verb, "--energy: '%s' is not a fraction in (0, 1]", arg);
        rule->kind = LT_RANK_ENERGY;
        break;
    default:
        if (!(value >= 1))
            return cli_usage(verb, "--sv-ratio: '%s' must be at least 1", arg);
        rule->kind = LT_RANK_RATIO;
        break;
    }
    rule->value = value;
    return 0;
}

int cli_print_surgery_report(const char *out_dir, const lt_surgery_report *r, bool json)
{
    if (json) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddStringToObject(root, "output", out_dir);
        cJSON_AddNumberToObject(root, "parameters_before", (double)r->params_before);
        cJSON_AddNumberToObject(root, "parameters_after", (double)r->params_after);
        cJSON *list = cJSON_AddArrayToObject(root, "modules");
        for (size_t i = 0; i < r->n_modules; i++) {
            const lt_surgery_module *m = &r->modules[i];
            cJSON *item = cJSON_CreateObject();
            cJSON_AddStringToObject(item, "name", m->name);
            cJSON_AddNumberToObject(item, "old_rank", m->old_rank);
            cJSON_AddNumberToObject(item, "new_rank", m->new_rank);
            cJSON_AddNumberToObject(item, "energy_kept", m->energy_kept);
            cJSON_AddNumberToObject(item, "rel_error", m->rel_error);
            cJSON_AddBoolToObject(item, "zero_delta", m->zero);
            cJSON_AddItemToArray(list, item);
        }
        return cli_print_json(root);
    }
    char a[40], b[40];
    printf("wrote %s\n", out_dir);
    printf("  %-56s %5s %5s %9s %10s\n", "module", "rank", "new", "energy%", "rel.error");
    size_t zero = 0;
    for (size_t i = 0; i < r->n_modules; i++) {
        const lt_surgery_module *m = &r->modules[i];
        printf("  %-56s %5u %5u %9.4f %10.3e%s\n", m->name, m->old_rank, m->new_rank, 100 * m->energy_kept,
               m->rel_error, m->zero ? (m->new_rank ? "  (zero delta)" : "  (zero delta: left out)") : "");
        zero += m->zero;
    }
    printf("  parameters: %s -> %s\n", cli_count(r->params_before, a, sizeof a),
           cli_count(r->params_after, b, sizeof b));
    if (zero)
        printf("  %zu modules have an exactly zero delta\n", zero);
    return cli_finish_stdout();
}

/* A model with GGUF names saved as a PEFT directory: renamed and
 * unpermuted for the architecture of BASE first (without BASE the names
 * would mean nothing to PEFT: a usage error). */
static lt_status save_peft(const lt_adapter *model, const char *out, const char *base, lt_error *err)
{
    if (!lt_adapter_gguf_arch(model))
        return cli_save_peft(model, out, LT_F32, err);
    if (!base) {
        snprintf(err->message, sizeof err->message,
                 "%s: GGUF LoRA inputs saved as a PEFT directory need --base (config.json, model directory or GGUF "
                 "model) to map their names back", out);
        return err->status = LT_ERR_USAGE;
    }
    lt_arch_info arch;
    lt_status s = lt_arch_info_read(base, &arch, err);
    lt_adapter *hf = s == LT_OK ? lt_adapter_to_hf(model, &arch, err) : NULL;
    if (s == LT_OK)
        s = hf ? cli_save_peft(hf, out, LT_F32, err) : err->status;
    lt_adapter_close(hf);
    return s;
}

int cli_finish_surgery(lt_status status, lt_adapter *model, const char *out, bool gguf_by_suffix, const char *base,
                       lt_surgery_report *report, bool json, lt_error *err)
{
    size_t len = strlen(out);
    if (status == LT_OK)
        status = gguf_by_suffix && len > 5 && strcmp(out + len - 5, ".gguf") == 0
                     ? lt_adapter_save_gguf(model, NULL, out, LT_F32, err)
                     : save_peft(model, out, base, err);
    lt_adapter_close(model);
    if (status != LT_OK) {
        lt_surgery_report_free(report);
        return cli_fail(err);
    }
    int rc = cli_print_surgery_report(out, report, json);
    lt_surgery_report_free(report);
    return rc;
}

bool cli_surgery_option(const char *verb, int option, const char *arg, const char *usage,
                        cli_surgery_args *a, int *rc)
{
    *rc = -1;
    switch (option) {
    case 'o': a->out = arg; return true;
    case 'b': a->base = arg; return true;
    case 'r': case 'e': case 'x': {
        int bad = cli_parse_rank_rule(verb, option, arg, &a->rule);
        if (bad)
            *rc = bad;
        return true;
    }
    case 'j': a->json = true; return true;
    case 'h': fputs(usage, stdout); *rc = cli_finish_stdout(); return true;
    default: return false;
    }
}
