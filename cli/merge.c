/* merge.c - `loratool merge BASE ADAPTER[:SCALE]... -o OUT [options]` */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static const char usage_text[] =
    "usage: loratool merge BASE ADAPTER[:SCALE]... -o OUT [--dtype keep|f32|f16|bf16|q8_0|q4_k|...]\n"
    "                      [--threads N] [--shard-size SIZE] [--fsync] [--dry-run] [--allow-missing]\n"
    "                      [--json]\n"
    "  BASE             a .safetensors file, a sharded model (directory or index), or a GGUF model\n"
    "  ADAPTER[:SCALE]  PEFT adapter directories or GGUF LoRA files, into either kind of base (names\n"
    "                   and Q/K rows mapped: spec/convert.md), or loralib checkpoints; SCALE\n"
    "                   multiplies the delta (default 1, may be negative)\n"
    "  -o OUT           a .safetensors file, or a directory (sharded like the base or at --shard-size,\n"
    "                   with the base directory's config and tokenizer files copied); for a GGUF\n"
    "                   base a .gguf file (every key-value pair of the base copied; a quantized\n"
    "                   tensor that gets a delta is re-quantized to its own type: spec/convert.md)\n"
    "  --dtype          keep (default): every tensor keeps its type; f32, f16, bf16: float and\n"
    "                   merged tensors in that type; q8_0, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k (GGUF\n"
    "                   output): merged 2-D tensors quantized to it (rows whole blocks), the rest kept\n"
    "  --threads N      worker threads (default: all cores); output bytes do not depend on it\n"
    "  --shard-size S   directory output: largest shard, e.g. 5GB, 500MB\n"
    "  --fsync          flush the output to disk before renaming it into place (default: like cp,\n"
    "                   leave the write-back to the kernel)\n"
    "  --dry-run        check every name and shape, print the plan, write nothing\n"
    "  --allow-missing  skip modules whose target the base lacks (each listed)\n"
    "  --json           print a JSON summary\n"
    CLI_LORALIB_USAGE;

typedef struct merge_args {
    const char *base, *out;
    const char **adapters;
    double *weights;
    size_t n_adapters;
    lt_merge_options opts;
    uint64_t shard_size;
    bool dry_run, json, fsync;
    cli_loralib loralib;
} merge_args;

static bool parse_dtype(const char *text, lt_dtype *out)
{
    static const struct { const char *name; lt_dtype dtype; } names[] = {
        {"keep", LT_DTYPE_INVALID}, {"f32", LT_F32}, {"f16", LT_F16}, {"bf16", LT_BF16}, {"q8_0", LT_Q8_0},
        {"q4_0", LT_Q4_0},          {"q4_1", LT_Q4_1}, {"q5_0", LT_Q5_0}, {"q5_1", LT_Q5_1}, {"q2_k", LT_Q2_K},
        {"q3_k", LT_Q3_K},          {"q4_k", LT_Q4_K}, {"q5_k", LT_Q5_K}, {"q6_k", LT_Q6_K}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcasecmp(text, names[i].name) == 0) {
            *out = names[i].dtype;
            return true;
        }
    return false;
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Directory holding the base's files (for copying config/tokenizer), or
 * NULL when the base is a lone file. */
static char *base_directory(const lt_source *base)
{
    const char *path = lt_source_path(base);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return strdup(path);
    if (ends_with(path, ".index.json")) {
        char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = '\0';
        else if (dir)
            strcpy(dir, ".");
        return dir;
    }
    return NULL;
}

/* Refuse to write over any input. */
static int check_output(const merge_args *a, const lt_source *base)
{
    for (size_t k = 0; k < lt_source_file_count(base); k++) {
        const char *file = lt_source_file_path(base, k);
        if (same_file(a->out, file) || same_file(a->out, a->base))
            return cli_usage("merge", "%s: output would overwrite the base", a->out);
        char *dir = strdup(file), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = '\0';
        bool clash = dir && slash && same_file(a->out, dir) && !ends_with(a->out, ".safetensors");
        free(dir);
        if (clash)
            return cli_usage("merge", "%s: output directory is the base's directory", a->out);
    }
    for (size_t i = 0; i < a->n_adapters; i++)
        if (same_file(a->out, a->adapters[i]))
            return cli_usage("merge", "%s: output would overwrite an adapter", a->out);
    return 0;
}

/* Copy the base directory's non-weight files (config, tokenizer) to OUT. */
static int copy_side_files(const char *from, const char *to)
{
    DIR *dir = opendir(from);
    if (!dir)
        return 0;
    struct dirent *entry;
    int rc = 0;
    while (rc == 0 && (entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (name[0] == '.' || ends_with(name, ".safetensors") || ends_with(name, ".index.json") ||
            ends_with(name, ".bin") || ends_with(name, ".pt") || ends_with(name, ".gguf") ||
            ends_with(name, ".pth"))
            continue;
        char *src = malloc(strlen(from) + strlen(name) + 2), *dst = malloc(strlen(to) + strlen(name) + 2);
        if (src && dst) {
            sprintf(src, "%s/%s", from, name);
            sprintf(dst, "%s/%s", to, name);
            struct stat st;
            lt_error err;
            if (stat(src, &st) == 0 && S_ISREG(st.st_mode) && lt_copy_file(src, dst, &err) != LT_OK)
                rc = cli_fail(&err);
        }
        free(src);
        free(dst);
    }
    closedir(dir);
    return rc;
}

/* A bitsandbytes base is written dequantized: the copied config.json
 * loses quantization_config and names the dtype the weights now have. */
static int unquantize_config(const char *out_dir, const lt_source *base, lt_dtype chosen)
{
    lt_quant_info q;
    lt_dtype dtype = chosen;
    for (size_t i = 0; dtype == LT_DTYPE_INVALID && i < lt_source_tensor_count(base); i++)
        if (lt_source_tensor_quant(base, i, &q))
            dtype = q.compute_dtype;
    const char *torch = dtype == LT_BF16 ? "bfloat16" : dtype == LT_F16 ? "float16" : "float32";
    size_t len = strlen(out_dir) + sizeof "/config.json.tmp";
    char *path = malloc(len), *tmp = malloc(len), *text = NULL;
    FILE *f = path && tmp ? (snprintf(path, len, "%s/config.json", out_dir), fopen(path, "rb")) : NULL;
    int rc = 0;
    if (f) {
        long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
        text = size >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)size + 1) : NULL;
        cJSON *root = text && fread(text, 1, (size_t)size, f) == (size_t)size ? cJSON_ParseWithLength(text, (size_t)size)
                                                                             : NULL;
        fclose(f);
        char *out = NULL;
        if (cJSON_IsObject(root)) {
            cJSON_DeleteItemFromObjectCaseSensitive(root, "quantization_config");
            cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
            cJSON_AddStringToObject(root, "torch_dtype", torch);
            out = cJSON_Print(root);
        }
        snprintf(tmp, len, "%s/config.json.tmp", out_dir);
        FILE *w = out ? fopen(tmp, "wb") : NULL;
        bool ok = w && fputs(out, w) >= 0 && fputc('\n', w) != EOF;
        if (w && fclose(w) != 0)
            ok = false;
        if (!ok || rename(tmp, path) != 0) {
            if (w)
                unlink(tmp);
            cli_warn("%s: could not rewrite config.json for the dequantized model "
                     "(drop quantization_config, set torch_dtype to %s yourself)", out_dir, torch);
        }
        cJSON_Delete(root);
        cJSON_free(out);
    }
    free(text);
    free(path);
    free(tmp);
    return rc;
}

static void on_progress(void *ctx, const lt_merge_progress *p)
{
    const struct timespec *start = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs = (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) * 1e-9;
    fprintf(stderr, "\rmerging: %zu/%zu tensors, %.0f/%.0f MB, %.0f MB/s   ", p->tensors_done,
            p->tensors_total, (double)p->bytes_done / 1e6, (double)p->bytes_total / 1e6,
            secs > 0 ? (double)p->bytes_done / 1e6 / secs : 0);
    if (p->bytes_done == p->bytes_total)
        fputc('\n', stderr);
}

static char *provenance_json(const merge_args *a)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "tool", "loratool " LT_VERSION_STRING);
    cJSON_AddStringToObject(root, "base", a->base);
    cJSON *list = cJSON_AddArrayToObject(root, "adapters");
    for (size_t i = 0; i < a->n_adapters; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "path", a->adapters[i]);
        cJSON_AddNumberToObject(item, "scale", a->weights[i]);
        cJSON_AddItemToArray(list, item);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

static cJSON *summary_json(const merge_args *a, const lt_merge_plan *plan, lt_adapter **ads, double secs,
                           const char *written)
{
    lt_merge_stats st = lt_merge_plan_stats(plan);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "base", a->base);
    if (written || a->out)
        cJSON_AddStringToObject(root, "output", written ? written : a->out);
    else
        cJSON_AddNullToObject(root, "output"); /* a dry run without -o */
    cJSON_AddBoolToObject(root, "dry_run", a->dry_run);
    cJSON *list = cJSON_AddArrayToObject(root, "adapters");
    for (size_t i = 0; i < a->n_adapters; i++) {
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "path", a->adapters[i]);
        cJSON_AddNumberToObject(item, "scale", a->weights[i]);
        cJSON_AddNumberToObject(item, "modules", (double)lt_adapter_module_count(ads[i]));
        cJSON_AddNumberToObject(item, "modules_merged", (double)lt_merge_plan_modules_merged(plan, i));
        cJSON_AddNumberToObject(item, "replacements", (double)lt_adapter_replacement_count(ads[i]));
        cJSON_AddItemToArray(list, item);
    }
    cJSON *t = cJSON_AddObjectToObject(root, "tensors");
    cJSON_AddNumberToObject(t, "total", (double)st.tensors_total);
    cJSON_AddNumberToObject(t, "copied", (double)st.tensors_copied);
    cJSON_AddNumberToObject(t, "converted", (double)st.tensors_converted);
    cJSON_AddNumberToObject(t, "merged", (double)st.tensors_merged);
    cJSON_AddNumberToObject(t, "replaced", (double)st.tensors_replaced);
    cJSON_AddNumberToObject(t, "added", (double)st.tensors_added);
    cJSON_AddNumberToObject(root, "bytes", (double)st.bytes_written);
    cJSON *skipped = cJSON_AddArrayToObject(root, "skipped");
    for (size_t i = 0; i < lt_merge_plan_skipped_count(plan); i++)
        cJSON_AddItemToArray(skipped, cJSON_CreateString(lt_merge_plan_skipped(plan, i)));
    cJSON_AddNumberToObject(root, "seconds", secs);
    return root;
}

static void print_summary(const cJSON *s)
{
    const cJSON *item;
    const char *output = cJSON_GetStringValue(cJSON_GetObjectItem(s, "output"));
    if (output)
        printf("%s %s\n", cJSON_IsTrue(cJSON_GetObjectItem(s, "dry_run")) ? "would write" : "wrote", output);
    else
        printf("dry run: all names and shapes fit\n");
    cJSON_ArrayForEach(item, cJSON_GetObjectItem(s, "adapters"))
        printf("  adapter %s (scale %g): %.0f of %.0f modules merged, %.0f replacement tensors\n",
               cJSON_GetObjectItem(item, "path")->valuestring, cJSON_GetObjectItem(item, "scale")->valuedouble,
               cJSON_GetObjectItem(item, "modules_merged")->valuedouble,
               cJSON_GetObjectItem(item, "modules")->valuedouble,
               cJSON_GetObjectItem(item, "replacements")->valuedouble);
    const cJSON *t = cJSON_GetObjectItem(s, "tensors");
    printf("  tensors: %.0f total, %.0f merged, %.0f copied, %.0f converted, %.0f replaced, %.0f added\n",
           cJSON_GetObjectItem(t, "total")->valuedouble, cJSON_GetObjectItem(t, "merged")->valuedouble,
           cJSON_GetObjectItem(t, "copied")->valuedouble, cJSON_GetObjectItem(t, "converted")->valuedouble,
           cJSON_GetObjectItem(t, "replaced")->valuedouble, cJSON_GetObjectItem(t, "added")->valuedouble);
    printf("  %.0f bytes of tensor data, %.2f s\n", cJSON_GetObjectItem(s, "bytes")->valuedouble,
           cJSON_GetObjectItem(s, "seconds")->valuedouble);
    cJSON_ArrayForEach(item, cJSON_GetObjectItem(s, "skipped")) printf("  skipped: %s\n", item->valuestring);
}

static int parse_args(int argc, char **argv, merge_args *a)
{
    static const struct option options[] = {
        {"output", required_argument, NULL, 'o'}, {"dtype", required_argument, NULL, 'd'},
        {"threads", required_argument, NULL, 't'}, {"shard-size", required_argument, NULL, 's'},
        {"dry-run", no_argument, NULL, 'n'},      {"allow-missing", no_argument, NULL, 'm'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {"fsync", no_argument, NULL, 'f'},        CLI_LORALIB_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int c, handled;
    uint64_t threads;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        switch (c) {
        case 'o': a->out = optarg; break;
        case 'd':
            if (!parse_dtype(optarg, &a->opts.out_dtype))
                return cli_usage("merge", "--dtype: '%s' is not keep, f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, "
                                          "q2_k, q3_k, q4_k, q5_k or q6_k", optarg);
            break;
        case 't':
            if (!cli_parse_count(optarg, &threads) || threads == 0 || threads > 256)
                return cli_usage("merge", "--threads: '%s' is not a number from 1 to 256", optarg);
            a->opts.threads = (unsigned)threads;
            break;
        case 's':
            if (!cli_parse_size(optarg, &a->shard_size) || a->shard_size == 0)
                return cli_usage("merge", "--shard-size: '%s' is not a size (e.g. 5GB)", optarg);
            break;
        case 'n': a->dry_run = true; break;
        case 'm': a->opts.allow_missing = true; break;
        case 'j': a->json = true; break;
        case 'f': a->fsync = true; break;
        case 'h': fputs(usage_text, stdout); return -1;
        default:
            if ((handled = cli_loralib_option("merge", c, optarg, &a->loralib)) != 0) {
                if (handled < 0)
                    return -handled;
                break;
            }
            return cli_usage("merge", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind < 2)
        return cli_usage("merge", "expected BASE and at least one ADAPTER");
    if (!a->out && !a->dry_run)
        return cli_usage("merge", "missing -o OUT");
    int rc = cli_resolve("merge", argv[optind], CLI_INPUT_MODEL, &a->base);
    if (rc)
        return rc;
    a->n_adapters = (size_t)(argc - optind - 1);
    a->adapters = calloc(a->n_adapters, sizeof *a->adapters);
    a->weights = calloc(a->n_adapters, sizeof *a->weights);
    if (!a->adapters || !a->weights)
        return cli_usage("merge", "out of memory");
    for (size_t i = 0; i < a->n_adapters; i++) {
        char *path;
        if ((rc = cli_split_scale("merge", argv[optind + 1 + (int)i], &path, &a->weights[i]))) {
            while (i > 0)
                free((char *)a->adapters[--i]);
            free(a->adapters);
            free(a->weights);
            return rc;
        }
        a->adapters[i] = path;
    }
    return 0;
}

/* Where the tensors go: a file, or a directory (one file or shards). */
static lt_sink *create_sink(const merge_args *a, const lt_source *base, char **written, bool *made_dir,
                            lt_error *err)
{
    lt_sink_options so = {.fsync = a->fsync};
    if (strcmp(lt_source_format(base), "gguf") == 0) {
        if (!ends_with(a->out, ".gguf") || a->shard_size) {
            err->status = LT_ERR_USAGE;
            snprintf(err->message, sizeof err->message, "%s: a GGUF base is merged into a .gguf file", a->out);
            return NULL;
        }
        *written = strdup(a->out);
        return lt_sink_create("gguf", a->out, &so, err);
    }
    if (ends_with(a->out, ".gguf")) {
        err->status = LT_ERR_USAGE;
        snprintf(err->message, sizeof err->message,
                 "%s: GGUF output needs a GGUF base (whole-model conversion is not supported yet)", a->out);
        return NULL;
    }
    bool to_dir = !ends_with(a->out, ".safetensors") || a->shard_size > 0;
    const char *suffix = cli_file_suffix(a->out);
    if (to_dir && suffix) { /* out.bin would become a directory: surely not meant */
        err->status = LT_ERR_USAGE;
        snprintf(err->message, sizeof err->message,
                 "%s: merge writes a .safetensors file, a directory, or (from a GGUF base) a .gguf file, not '%s'",
                 a->out, suffix);
        return NULL;
    }
    if (!to_dir) {
        *written = strdup(a->out);
        return lt_sink_create("safetensors", a->out, &so, err);
    }
    so.shard_size = a->shard_size;
    if (!so.shard_size && lt_source_file_count(base) > 1) {
        /* sharded like the base: its largest shard's data size */
        uint64_t *per_file = calloc(lt_source_file_count(base), sizeof *per_file);
        for (size_t i = 0; per_file && i < lt_source_tensor_count(base); i++) {
            const lt_tensor_info *t = lt_source_tensor(base, i);
            bool converted = a->opts.out_dtype != LT_DTYPE_INVALID && lt_dtype_is_float(t->dtype);
            per_file[t->file_index] += converted ? t->n_elems * lt_dtype_block_bytes(a->opts.out_dtype) : t->n_bytes;
        }
        for (size_t k = 0; per_file && k < lt_source_file_count(base); k++)
            if (per_file[k] > so.shard_size)
                so.shard_size = per_file[k];
        free(per_file);
    }
    if (so.shard_size) { /* the sink builds the directory aside and moves it into place */
        *written = strdup(a->out);
        return lt_sink_create("safetensors", a->out, &so, err);
    }
    *made_dir = mkdir(a->out, 0777) == 0;
    if (!*made_dir && errno != EEXIST) {
        err->status = LT_ERR_IO;
        snprintf(err->message, sizeof err->message, "%s: cannot create directory: %s", a->out, strerror(errno));
        return NULL;
    }
    size_t len = strlen(a->out) + sizeof "/model.safetensors";
    *written = malloc(len);
    if (*written) /* one slash between, whatever OUT ends with */
        snprintf(*written, len, "%s%smodel.safetensors", a->out, ends_with(a->out, "/") ? "" : "/");
    return *written ? lt_sink_create("safetensors", *written, &so, err) : NULL;
}

/* A directory that now holds one model.safetensors must not keep the index
 * and shards of an earlier sharded output: loaders would read those.  They
 * go after the new file is complete (until then the directory still holds
 * the earlier model whole). */
static int remove_stale_shards(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        unsigned k, n;
        char tail[8];
        bool shard = sscanf(e->d_name, "model-%5u-of-%5u.safetensor%1s", &k, &n, tail) == 3 && strlen(e->d_name) == 32 &&
                     ends_with(e->d_name, ".safetensors");
        if (!shard && strcmp(e->d_name, "model.safetensors.index.json") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            fprintf(stderr, "loratool: %s: cannot remove the earlier sharded output: %s\n", path, strerror(errno));
            rc = EXIT_IO;
        }
    }
    closedir(d);
    return rc;
}

int cmd_merge(int argc, char **argv)
{
    merge_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? cli_finish_stdout() : rc;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    lt_error err;
    lt_source *base = NULL;
    lt_adapter **ads = calloc(2 * a.n_adapters, sizeof *ads); /* then the originals of GGUF views */
    lt_merge_input *inputs = calloc(a.n_adapters, sizeof *inputs);
    lt_merge_plan *plan = NULL;
    char *written = NULL, *provenance = NULL;
    if (!ads || !inputs) {
        rc = cli_usage("merge", "out of memory");
        goto done;
    }
    if (!(base = lt_source_open(a.base, &err))) {
        rc = cli_fail(&err);
        goto done;
    }
    for (size_t i = 0; i < a.n_adapters; i++) {
        a.loralib.open.base = base;
        if (!(ads[i] = lt_adapter_open_with(a.adapters[i], &a.loralib.open, &err))) {
            rc = cli_fail(&err);
            goto done;
        }
        if ((rc = cli_adapter_for_base(a.base, base, &ads[i], &ads[a.n_adapters + i])))
            goto done;
        for (size_t w = 0; w < lt_adapter_warning_count(ads[i]); w++)
            cli_warn("%s: %s", a.adapters[i], lt_adapter_warning(ads[i], w));
        inputs[i] = (lt_merge_input){ads[i], a.weights[i]};
    }
    if (a.out && ((rc = check_output(&a, base)) || (rc = cli_check_output("merge", a.out, NULL, argc - optind, argv + optind))))
        goto done;
    if (isatty(STDERR_FILENO) && !a.dry_run) {
        a.opts.progress = on_progress;
        a.opts.progress_ctx = &start;
    }
    if (!(plan = lt_merge_plan_create(base, inputs, a.n_adapters, &a.opts, &err))) {
        rc = cli_fail(&err);
        goto done;
    }
    for (size_t i = 0; i < lt_merge_plan_skipped_count(plan); i++)
        cli_warn("skipped %s", lt_merge_plan_skipped(plan, i));
    size_t requantized = lt_merge_plan_stats(plan).tensors_requantized;
    if (requantized)
        cli_warn("%zu merged tensor%s re-quantized with ggml's reference quantizer, without the importance "
                 "matrix most published quantized models were made with: this adds error about the size of a "
                 "typical LoRA delta; for the best result merge with --dtype f16 and quantize that yourself "
                 "(llama-quantize --imatrix ...)", requantized, requantized == 1 ? " is" : "s are");
    if (!a.dry_run) {
        bool made_dir = false;
        lt_sink *sink = create_sink(&a, base, &written, &made_dir, &err);
        provenance = provenance_json(&a);
        lt_status s = sink ? LT_OK : err.status;
        if (s == LT_OK && !provenance) {
            s = err.status = LT_ERR_NOMEM;
            snprintf(err.message, sizeof err.message, "%s: out of memory", a.out);
        }
        if (s == LT_OK)
            s = lt_sink_set_meta(sink, "loratool_merge", provenance, &err);
        if (s != LT_OK)
            lt_sink_abort(sink);
        else
            s = lt_merge_run(plan, sink, NULL, &err);
        if (s != LT_OK) {
            if (made_dir)
                rmdir(a.out); /* only succeeds when nothing was left in it */
            rc = cli_fail(&err);
            goto done;
        }
        char *from = base_directory(base);
        bool to_dir = !ends_with(a.out, ".safetensors") || a.shard_size > 0;
        if (to_dir && written && ends_with(written, "/model.safetensors") && (rc = remove_stale_shards(a.out)))
            goto done;
        if (from && to_dir)
            rc = copy_side_files(from, a.out);
        if (from && to_dir && !rc && strcmp(lt_source_format(base), "bitsandbytes") == 0)
            rc = unquantize_config(a.out, base, a.opts.out_dtype);
        free(from);
        if (rc)
            goto done;
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double secs = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
    cJSON *summary = summary_json(&a, plan, ads, secs, written);
    if (a.json) {
        rc = cli_print_json(summary);
    } else {
        print_summary(summary);
        cJSON_Delete(summary);
        rc = cli_finish_stdout();
    }
done:
    lt_merge_plan_free(plan);
    for (size_t i = 0; ads && i < 2 * a.n_adapters; i++)
        lt_adapter_close(ads[i]);
    lt_source_close(base);
    for (size_t i = 0; a.adapters && i < a.n_adapters; i++)
        free((char *)a.adapters[i]);
    free(a.adapters);
    free(a.weights);
    free(ads);
    free(inputs);
    free(written);
    cJSON_free(provenance);
    return rc;
}
