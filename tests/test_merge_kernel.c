/* test_merge_kernel.c - the vector merge kernel (lib/merge_fast.c) against
 * exact references and against the float64 path.
 *
 * argv[1]: build/testdata/merge_kernel, made by
 * testdata/make_merge_kernel_cases.py (cases.json lists the cases).  For
 * every case the merge runs: with the vector kernel where it applies (the
 * test checks that it does apply), once per build of it this machine can
 * run (AVX-512, AVX2, baseline x86-64), once more with 3 threads, and
 * float64 only (lt_merge_options.double_kernel_only).  All outputs must be
 * byte-identical, and where the case has exact expected bits (dyadic
 * inputs: numpy's float64 sum is exact, rounded once) the tensors must
 * equal them.  Error cases must fail alike in every kernel.
 */
#include <cjson/cJSON.h>

#include "check.h"
#include "loratool.h"
#include "merge_internal.h"

static const char *root;

static lt_dtype dtype_of(const char *name)
{
    return strcmp(name, "bf16") == 0 ? LT_BF16
           : strcmp(name, "f16") == 0 ? LT_F16
           : strcmp(name, "f32") == 0 ? LT_F32
                                      : LT_DTYPE_INVALID;
}

typedef struct merge_result {
    lt_status status;
    char message[sizeof(((lt_error *)0)->message)];
    size_t fast_tensors;
    bool isa_available;
} merge_result;

#define ISA_DEFAULT (-1)

/* Merge the case's inputs into OUT; the count of tensors the plan gave the
 * vector kernel comes back too. */
static merge_result run_merge(const cJSON *spec, const char *out, bool double_only, unsigned threads, int isa)
{
    merge_result result = {LT_OK, "", 0, true};
    lt_error err = {0};
    lt_adapter *adapters[4] = {0};
    lt_merge_input inputs[4];
    const cJSON *list = cJSON_GetObjectItem(spec, "adapters");
    size_t n = 0;
    lt_source *base = lt_source_open(fmt("%s/%s", root, cJSON_GetObjectItem(spec, "base")->valuestring), &err);
    for (const cJSON *item = list ? list->child : NULL; base && item && n < 4; item = item->next, n++) {
        adapters[n] = lt_adapter_open(fmt("%s/%s", root, cJSON_GetArrayItem(item, 0)->valuestring), &err);
        if (!adapters[n])
            break;
        inputs[n] = (lt_merge_input){adapters[n], cJSON_GetArrayItem(item, 1)->valuedouble};
    }
    lt_merge_plan *plan = NULL;
    if (base && (n == 0 || adapters[n - 1])) {
        lt_merge_options opts = {.out_dtype = dtype_of(cJSON_GetObjectItem(spec, "dtype")->valuestring),
                                 .threads = threads,
                                 .double_kernel_only = double_only};
        plan = lt_merge_plan_create(base, inputs, n, &opts, &err);
    }
    if (plan) {
        for (size_t i = 0; i < plan->n_tensors; i++) {
            result.fast_tensors += plan->tensors[i].fast != NULL;
            if (plan->tensors[i].fast && isa != ISA_DEFAULT)
                result.isa_available &= merge_fast_set_isa(&plan->tensors[i], (merge_isa)isa);
        }
        lt_sink *sink = lt_sink_create("safetensors", out, NULL, &err);
        if (sink && lt_merge_run(plan, sink, NULL, &err) == LT_OK)
            err.status = LT_OK;
        lt_merge_plan_free(plan);
    }
    result.status = err.status;
    memcpy(result.message, err.message, sizeof result.message);
    for (size_t i = 0; i < n; i++)
        lt_adapter_close(adapters[i]);
    lt_source_close(base);
    return result;
}

static bool same_files(const char *a, const char *b)
{
    size_t la, lb;
    unsigned char *da = read_file(a, &la), *db = read_file(b, &lb);
    bool same = da && db && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

/* Each expected tensor of the case equals the output's bytes. */
static void check_expected(const cJSON *expect, const char *out)
{
    lt_error err;
    lt_source *src = lt_source_open(out, &err);
    CHECK_MSG(src != NULL, "%s", err.message);
    for (const cJSON *e = expect ? expect->child : NULL; src && e; e = e->next) {
        size_t want_len;
        unsigned char *want = read_file(fmt("%s/%s", root, e->valuestring), &want_len);
        long index = lt_source_find(src, e->string);
        CHECK_MSG(want && index >= 0, "%s: expected bits or output tensor missing", e->string);
        if (!want || index < 0) {
            free(want);
            continue;
        }
        const lt_tensor_info *t = lt_source_tensor(src, (size_t)index);
        CHECK_EQ_U64(t->n_bytes, want_len);
        unsigned char *got = malloc(want_len + 1);
        if (got && t->n_bytes == want_len && lt_source_read(src, (size_t)index, 0, got, want_len, &err) == LT_OK) {
            size_t unit = t->dtype == LT_F32 ? 4 : 2, wrong = 0, first = 0;
            for (size_t i = 0; i < want_len; i += unit)
                if (memcmp(got + i, want + i, unit) != 0 && wrong++ == 0)
                    first = i / unit;
            CHECK_MSG(wrong == 0, "%s: %zu of %zu elements differ from the exact rounding (first: element %zu)",
                      e->string, wrong, want_len / unit, first);
        }
        free(got);
        free(want);
    }
    lt_source_close(src);
}

static void run_case(const cJSON *spec)
{
    static const char *isa_names[] = {"avx512", "avx2", "baseline"};
    const char *name = cJSON_GetObjectItem(spec, "name")->valuestring;
    bool error = cJSON_IsTrue(cJSON_GetObjectItem(spec, "error"));
    char fast_path[4096], other_path[4096], exact_path[4096];
    snprintf(fast_path, sizeof fast_path, "%s/%s/out_fast.safetensors", root, name);
    snprintf(other_path, sizeof other_path, "%s/%s/out_other.safetensors", root, name);
    snprintf(exact_path, sizeof exact_path, "%s/%s/out_double.safetensors", root, name);
    remove(fast_path);
    remove(exact_path);
    merge_result fast = run_merge(spec, fast_path, false, 0, ISA_DEFAULT);
    merge_result exact = run_merge(spec, exact_path, true, 1, ISA_DEFAULT);
    CHECK_MSG(fast.fast_tensors > 0, "no tensor went to the vector kernel");
    CHECK_MSG(exact.fast_tensors == 0, "double_kernel_only still planned the vector kernel");
    struct stat st;
    if (error) {
        CHECK_MSG(fast.status != LT_OK && fast.status == exact.status, "statuses %d and %d", fast.status,
                  exact.status);
        CHECK_STR(fast.message, exact.message);
        CHECK_MSG(stat(fast_path, &st) != 0, "a failed merge left %s", fast_path);
    } else {
        CHECK_MSG(fast.status == LT_OK && exact.status == LT_OK, "%s | %s", fast.message, exact.message);
        CHECK_MSG(same_files(fast_path, exact_path), "the vector kernel's output differs from the float64 path's");
        check_expected(cJSON_GetObjectItem(spec, "expect"), fast_path);
    }
    /* every other build this machine runs, and another thread count */
    for (int isa = -1; isa < 3; isa++) {
        remove(other_path);
        merge_result other = run_merge(spec, other_path, false, isa < 0 ? 3 : 0, isa < 0 ? ISA_DEFAULT : isa);
        const char *what = isa < 0 ? "3 threads" : isa_names[isa];
        if (!other.isa_available)
            continue;
        if (error) {
            CHECK_MSG(other.status == exact.status, "%s: status %d, not %d", what, other.status, exact.status);
            CHECK_MSG(strcmp(other.message, exact.message) == 0, "%s: %s", what, other.message);
            CHECK_MSG(stat(other_path, &st) != 0, "%s: a failed merge left %s", what, other_path);
        } else {
            CHECK_MSG(other.status == LT_OK, "%s: %s", what, other.message);
            CHECK_MSG(same_files(other_path, exact_path), "%s: output differs from the float64 path's", what);
        }
    }
    remove(fast_path);
    remove(other_path);
    remove(exact_path);
}

/* Flush-to-zero or denormals-are-zero, as a -ffast-math program may set
 * them, are outside the kernel's proof: it must stand aside. */
static void test_flush_to_zero(const cJSON *spec)
{
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    char path[4096];
    snprintf(path, sizeof path, "%s/out_ftz.safetensors", root);
    unsigned saved = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(saved | 0x8040u);
    merge_result r = run_merge(spec, path, false, 0, ISA_DEFAULT);
    __builtin_ia32_ldmxcsr(saved);
    CHECK_MSG(r.status == LT_OK, "%s", r.message);
    CHECK_MSG(r.fast_tensors == 0, "%zu tensors went to the vector kernel under FTZ/DAZ", r.fast_tensors);
    remove(path);
    printf("%s merge_kernel_stands_aside_under_ftz_daz\n", check_case_failures ? "FAIL" : "PASS");
    if (check_case_failures)
        check_total_failed++;
#else
    (void)spec;
    printf("SKIP merge_kernel_stands_aside_under_ftz_daz: not x86-64 GCC\n");
#endif
}

int main(int argc, char **argv)
{
    root = argc > 1 ? argv[1] : "build/testdata/merge_kernel";
    size_t len;
    char *text = (char *)read_file(fmt("%s/cases.json", root), &len);
    cJSON *cases = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    if (!cases) {
        printf("FAIL merge_kernel: cannot read %s/cases.json\n", root);
        return 1;
    }
    for (const cJSON *spec = cases->child; spec; spec = spec->next) {
        check_case_failures = 0;
        run_case(spec);
        const char *name = cJSON_GetObjectItem(spec, "name")->valuestring;
        if (check_case_failures)
            check_total_failed++;
        printf("%s merge_kernel_%s\n", check_case_failures ? "FAIL" : "PASS", name);
        fflush(stdout);
    }
    check_case_failures = 0;
    test_flush_to_zero(cases->child);
    cJSON_Delete(cases);
    return check_done();
}
