/* diff.c - `loratool diff A B [--base BASE] [--atol X] [--rtol Y] [--json]
 * [--diffable]`: tensor by tensor, like cmp: exit 0 when every tensor
 * matches, 1 otherwise. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool diff A B [--base BASE] [--atol X] [--rtol Y] [--json] [--diffable]\n"
    "  A, B         safetensors files, sharded models or GGUF files (quantized types are\n"
    "               dequantized); values are compared as numbers, so a dtype change alone\n"
    "               is no difference (+0 equals -0; NaN must face NaN)\n"
    "  --base BASE  A is a Hugging Face (safetensors) model and B its GGUF conversion:\n"
    "               names and llama's Q/K rows mapped as 'convert' maps them, with the\n"
    "               architecture of BASE (config.json, model directory or GGUF)\n"
    "  --atol X     match when |a - b| <= X + Y |b| (default 0, 0: equal values)\n"
    "  --rtol Y\n"
    "  --json       every tensor with its status and statistics\n"
    "  --diffable   every tensor, one stable line each (no paths, no timings)\n"
    "exit: 0 all tensors match, 1 some differ, 2 usage, 3 invalid input, 4 I/O error\n";

static void shape_text(char *buf, size_t size, uint32_t n_dims, const uint64_t *shape)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (uint32_t d = 0; d < n_dims && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%llu", d ? "," : "", (unsigned long long)shape[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

static cJSON *json_number(double x)
{
    return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull();
}

static cJSON *json_shape(uint32_t n_dims, const uint64_t *shape)
{
    cJSON *arr = cJSON_CreateArray();
    for (uint32_t d = 0; d < n_dims; d++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)shape[d]));
    return arr;
}

static cJSON *entry_json(const lt_diff_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", e->name);
    if (e->name_b)
        cJSON_AddStringToObject(o, "name_b", e->name_b);
    cJSON_AddStringToObject(o, "status", lt_diff_status_name(e->status));
    if (e->status != LT_DIFF_ONLY_B) {
        cJSON_AddStringToObject(o, "dtype_a", lt_dtype_name(e->dtype_a));
        cJSON_AddItemToObject(o, "shape_a", json_shape(e->n_dims_a, e->shape_a));
    }
    if (e->status != LT_DIFF_ONLY_A) {
        cJSON_AddStringToObject(o, "dtype_b", lt_dtype_name(e->dtype_b));
        cJSON_AddItemToObject(o, "shape_b", json_shape(e->n_dims_b, e->shape_b));
    }
    if (e->status <= LT_DIFF_DIFFERENT) {
        cJSON_AddNumberToObject(o, "elements", (double)e->n_elems);
        cJSON_AddNumberToObject(o, "beyond_tolerance", (double)e->n_beyond);
        cJSON_AddItemToObject(o, "max_abs", json_number(e->max_abs));
        cJSON_AddItemToObject(o, "max_rel", json_number(e->max_rel));
        cJSON_AddItemToObject(o, "max_ulp", e->has_ulp ? cJSON_CreateNumber((double)e->max_ulp) : cJSON_CreateNull());
        cJSON_AddItemToObject(o, "cosine", json_number(e->cosine));
        cJSON_AddBoolToObject(o, "nan_mismatch", e->nan_mismatch);
        cJSON_AddBoolToObject(o, "not_comparable", e->not_comparable);
    }
    return o;
}

/* One line per tensor; FULL_PRECISION for --diffable (%.17g, stable). */
static void print_entry(const lt_diff_entry *e, bool full)
{
    char sa[160] = "-", sb[160] = "-";
    if (e->status != LT_DIFF_ONLY_B)
        shape_text(sa, sizeof sa, e->n_dims_a, e->shape_a);
    if (e->status != LT_DIFF_ONLY_A)
        shape_text(sb, sizeof sb, e->n_dims_b, e->shape_b);
    printf("%-9s %s", lt_diff_status_name(e->status), e->name);
    if (e->name_b)
        printf(" -> %s", e->name_b);
    if (e->status == LT_DIFF_ONLY_B)
        printf("  %s%s", lt_dtype_name(e->dtype_b), sb);
    else
        printf("  %s%s", lt_dtype_name(e->dtype_a), sa);
    if (e->status != LT_DIFF_ONLY_A && e->status != LT_DIFF_ONLY_B &&
        (e->dtype_a != e->dtype_b || e->status == LT_DIFF_SHAPE))
        printf(" vs %s%s", lt_dtype_name(e->dtype_b), sb);
    if (e->status == LT_DIFF_CLOSE || e->status == LT_DIFF_DIFFERENT) {
        const char *fmt = full ? "  max_abs %.17g max_rel %.17g" : "  max_abs %.3g max_rel %.3g";
        printf(fmt, e->max_abs, e->max_rel);
        if (e->has_ulp)
            printf(" max_ulp %llu", (unsigned long long)e->max_ulp);
        printf(full ? " cosine %.17g" : " cosine %.9f", e->cosine);
        printf(" beyond %llu/%llu", (unsigned long long)e->n_beyond, (unsigned long long)e->n_elems);
        if (e->nan_mismatch)
            printf(" nan_mismatch");
        if (e->not_comparable)
            printf(" not_comparable");
    }
    putchar('\n');
}

int cmd_diff(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"base", required_argument, NULL, 'b'},   {"atol", required_argument, NULL, 'a'},
        {"rtol", required_argument, NULL, 'r'},   {"json", no_argument, NULL, 'j'},
        {"diffable", no_argument, NULL, 'd'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *base_path = NULL;
    lt_diff_options opts = {0};
    bool json = false, diffable = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'b': base_path = optarg; break;
        case 'a':
        case 'r': {
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v >= 0) || !isfinite(v))
                return cli_usage("diff", "--%s wants a non-negative number, not '%s'", c == 'a' ? "atol" : "rtol",
                                 optarg);
            *(c == 'a' ? &opts.atol : &opts.rtol) = v;
            break;
        }
        case 'j': json = true; break;
        case 'd': diffable = true; break;
        case 'h': fputs(usage_text, stdout); return cli_finish_stdout();
        default: return cli_usage("diff", "bad option");
        }
    }
    if (argc - optind != 2)
        return cli_usage("diff", "diff wants two files, A and B");
    if (json && diffable)
        return cli_usage("diff", "--json and --diffable exclude each other");
    const char *path_a, *path_b;
    int rc = cli_resolve("diff", argv[optind], CLI_INPUT_FILE, &path_a);
    if (rc == 0)
        rc = cli_resolve("diff", argv[optind + 1], CLI_INPUT_FILE, &path_b);
    if (rc == 0 && base_path)
        rc = cli_resolve("diff", base_path, CLI_INPUT_MODEL, &base_path);
    if (rc)
        return rc;
    lt_error err;
    lt_source *a = lt_source_open(path_a, &err), *b = NULL;
    if (!a)
        return cli_fail(&err);
    if (!(b = lt_source_open(path_b, &err))) {
        lt_source_close(a);
        return cli_fail(&err);
    }
    lt_name_map *map = NULL;
    if (base_path) {
        lt_arch_info arch;
        if (strcmp(lt_source_format(b), "gguf") != 0 || strcmp(lt_source_format(a), "gguf") == 0)
            rc = cli_usage("diff", "with --base, A is the Hugging Face (safetensors) model and B its GGUF conversion");
        else if (lt_arch_info_read(base_path, &arch, &err) != LT_OK || !(map = lt_name_map_create(&arch, &err)))
            rc = cli_fail(&err);
        opts.map = map;
    }
    lt_diff_report report = {0};
    if (rc == 0 && lt_diff(a, b, &opts, &report, &err) != LT_OK)
        rc = cli_fail(&err);
    lt_source_close(a);
    lt_source_close(b);
    lt_name_map_free(map);
    if (rc != 0)
        return rc;
    bool match = report.counts[LT_DIFF_DIFFERENT] + report.counts[LT_DIFF_SHAPE] + report.counts[LT_DIFF_ONLY_A] +
                     report.counts[LT_DIFF_ONLY_B] == 0;
    if (json) {
        cJSON *o = cJSON_CreateObject(), *counts = cJSON_CreateObject(), *list = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "a", path_a);
        cJSON_AddStringToObject(o, "b", path_b);
        cJSON_AddNumberToObject(o, "atol", opts.atol);
        cJSON_AddNumberToObject(o, "rtol", opts.rtol);
        cJSON_AddBoolToObject(o, "match", match);
        for (int s = LT_DIFF_IDENTICAL; s <= LT_DIFF_ONLY_B; s++)
            cJSON_AddNumberToObject(counts, lt_diff_status_name((lt_diff_status)s), (double)report.counts[s]);
        cJSON_AddItemToObject(o, "counts", counts);
        for (size_t i = 0; i < report.n_entries; i++)
            cJSON_AddItemToArray(list, entry_json(&report.entries[i]));
        cJSON_AddItemToObject(o, "tensors", list);
        rc = cli_print_json(o);
    } else {
        for (size_t i = 0; i < report.n_entries; i++)
            if (diffable || report.entries[i].status != LT_DIFF_IDENTICAL)
                print_entry(&report.entries[i], diffable);
        printf("%zu identical, %zu close, %zu different, %zu shape changed, %zu only in A, %zu only in B\n",
               report.counts[LT_DIFF_IDENTICAL], report.counts[LT_DIFF_CLOSE], report.counts[LT_DIFF_DIFFERENT],
               report.counts[LT_DIFF_SHAPE], report.counts[LT_DIFF_ONLY_A], report.counts[LT_DIFF_ONLY_B]);
        rc = cli_finish_stdout();
    }
    lt_diff_report_free(&report);
    return rc ? rc : match ? 0 : EXIT_LIMIT;
}
