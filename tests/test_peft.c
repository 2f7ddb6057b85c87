/* test_peft.c - PEFT adapter directories: parsing rules of spec/peft.md,
 * and lt_peft_save round trips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "adapter.h"

static char tmp_root[] = "/tmp/lt_test_peft_XXXXXX";

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static const lt_lora_module *find_module(const lt_adapter *ad, const char *name)
{
    for (size_t i = 0; i < lt_adapter_module_count(ad); i++)
        if (strcmp(lt_adapter_module(ad, i)->name, name) == 0)
            return lt_adapter_module(ad, i);
    return NULL;
}

/* Save three modules (two ranks, two alphas), read back, compare. */
static void test_save_round_trip(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/saved", tmp_root);
    float a1[2 * 3] = {1, 2, 3, 4, 5, 6}, b1[4 * 2] = {1, -1, 0.5f, 0.25f, 2, 3, -4, 8};
    float a2[4 * 3] = {0}, b2[4 * 4] = {0};
    for (int i = 0; i < 12; i++)
        a2[i] = (float)i / 7.0f;
    for (int i = 0; i < 16; i++)
        b2[i] = (float)(i - 8);
    /* a model built as an operation builds one (lib/adapter.h) */
    struct { const char *name; uint32_t rank; double alpha; const float *a, *b; } mods[3] = {
        {"model.layers.0.self_attn.q_proj", 2, 16, a1, b1},
        {"model.layers.1.self_attn.q_proj", 2, 16, a1, b1},
        {"model.layers.1.mlp.down_proj", 4, 4, a2, b2},
    };
    lt_error err;
    lt_adapter *model = lti_adapter_new("test", NULL, &err);
    lt_source *mem = lti_memsource_new("test", &err);
    lti_adapter_set_source(model, mem);
    lt_peft_config *mc = lti_adapter_config_mut(model);
    mc->base_model = "tiny";
    mc->task_type = "CAUSAL_LM";
    for (int i = 0; i < 3; i++) {
        lt_lora_module *m = NULL;
        CHECK(lti_adapter_module(model, mods[i].name, strlen(mods[i].name), &m, &err) == LT_OK);
        char name[128];
        uint64_t r = mods[i].rank;
        float *a = malloc(r * 3 * sizeof *a), *b = malloc(4 * r * sizeof *b);
        memcpy(a, mods[i].a, r * 3 * sizeof *a);
        memcpy(b, mods[i].b, 4 * r * sizeof *b);
        snprintf(name, sizeof name, "%s.A", mods[i].name);
        m->tensor_a = lti_memsource_add(mem, name, LT_F32, 2, (uint64_t[]){r, 3}, a, &err);
        snprintf(name, sizeof name, "%s.B", mods[i].name);
        m->tensor_b = lti_memsource_add(mem, name, LT_F32, 2, (uint64_t[]){4, r}, b, &err);
        m->rank = (uint32_t)r;
        m->alpha = mods[i].alpha;
        m->out_features = 4;
        m->in_features = 3;
    }
    CHECK(lt_adapter_save_peft(model, dir, LT_F32, &err) == LT_OK);
    lt_adapter_close(model);
    lt_adapter *ad = lt_adapter_open(dir, &err);
    CHECK_MSG(ad != NULL, "%s", err.message);
    if (!ad)
        return;
    CHECK_EQ_U64(lt_adapter_module_count(ad), 3);
    const lt_peft_config *cfg = lt_adapter_config(ad);
    CHECK_EQ_U64(cfg->r, 2);
    CHECK(cfg->lora_alpha == 16);
    CHECK(cfg->has_rank_pattern && cfg->has_alpha_pattern);
    const lt_lora_module *down = find_module(ad, "model.layers.1.mlp.down_proj");
    const lt_lora_module *q0 = find_module(ad, "model.layers.0.self_attn.q_proj");
    CHECK(down && down->rank == 4 && down->alpha == 4 && down->scale == 1.0);
    CHECK(q0 && q0->rank == 2 && q0->alpha == 16 && q0->scale == 8.0);
    if (q0) {
        float back[8];
        CHECK(lt_source_read_f32(lt_adapter_source(ad), (size_t)q0->tensor_b, 0, 8, back, &err) == LT_OK);
        CHECK(memcmp(back, b1, sizeof back) == 0);
        CHECK_STR(q0->target, "model.layers.0.self_attn.q_proj.weight");
    }
    lt_adapter_close(ad);
}

/* Make an adapter directory from a config text and a list of tensors
 * (written through the safetensors sink). */
static void make_adapter(const char *dir, const char *config, const char *const *names,
                         const uint64_t (*shapes)[2], size_t n)
{
    mkdir(dir, 0777);
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    write_text(path, config);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    lt_error err;
    lt_sink *sink = lt_sink_create("safetensors", path, NULL, &err);
    for (size_t i = 0; i < n; i++)
        lt_sink_add_tensor(sink, names[i], LT_F32, shapes[i][1] ? 2 : 1, shapes[i], &err);
    CHECK(lt_sink_commit(sink, &err) == LT_OK); /* unwritten data reads as zeros */
}

static void test_patterns_and_scales(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/patterns", tmp_root);
    const char *names[] = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector",
        "base_model.model.model.embed_tokens.lora_embedding_A",
        "base_model.model.model.embed_tokens.lora_embedding_B",
        "base_model.model.lm_head.weight",
    };
    const uint64_t shapes[][2] = {{8, 16}, {32, 8}, {2, 16}, {32, 2}, {32, 0}, {8, 100}, {16, 8}, {100, 16}};
    make_adapter(dir,
                 "{\"peft_type\":\"LORA\",\"r\":8,\"lora_alpha\":16,\"use_rslora\":true,"
                 "\"rank_pattern\":{\"v_proj\":2},\"alpha_pattern\":{\"layers\\\\.0\\\\.self_attn\\\\.v_proj\":3},"
                 "\"target_modules\":\".*(q_proj|v_proj|embed_tokens)\",\"some_new_key\":1}",
                 names, shapes, 8);
    lt_error err;
    lt_adapter *ad = lt_adapter_open(dir, &err);
    CHECK_MSG(ad != NULL, "%s", err.message);
    if (!ad)
        return;
    const lt_lora_module *q = find_module(ad, "model.layers.0.self_attn.q_proj");
    const lt_lora_module *v = find_module(ad, "model.layers.0.self_attn.v_proj");
    const lt_lora_module *e = find_module(ad, "model.embed_tokens");
    CHECK(q && fabs(q->scale - 16 / sqrt(8.0)) < 1e-15);
    CHECK(v && v->rank == 2 && v->alpha == 3 && fabs(v->scale - 3 / sqrt(2.0)) < 1e-15);
    CHECK(v && v->tensor_magnitude >= 0);
    CHECK(e && e->kind == LT_MODULE_EMBEDDING && e->out_features == 100 && e->in_features == 16);
    CHECK_EQ_U64(lt_adapter_replacement_count(ad), 1);
    CHECK_STR(lt_adapter_replacement(ad, 0)->target, "lm_head.weight");
    CHECK_EQ_U64(lt_adapter_config(ad)->n_unknown_keys, 1);
    CHECK_EQ_U64(lt_adapter_warning_count(ad), 1);
    /* 8*16 + 32*8 + 2*16 + 32*2 + 32 + 8*100 + 16*8 */
    CHECK_EQ_U64(lt_adapter_lora_params(ad), 128 + 256 + 32 + 64 + 32 + 800 + 128);
    CHECK_EQ_U64(lt_adapter_replacement_params(ad), 1600);
    lt_adapter_close(ad);
}

static void expect_refusal(const char *sub, const char *config, const char *const *names,
                           const uint64_t (*shapes)[2], size_t n, lt_status status, const char *text)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", tmp_root, sub);
    make_adapter(dir, config, names, shapes, n);
    lt_error err;
    lt_adapter *ad = lt_adapter_open(dir, &err);
    CHECK_MSG(ad == NULL, "%s opened", sub);
    lt_adapter_close(ad);
    if (!ad) {
        CHECK_MSG(err.status == status, "%s: status %d", sub, err.status);
        CHECK_MSG(strstr(err.message, text) != NULL, "%s: message '%s' lacks '%s'", sub, err.message, text);
    }
}

static void test_refusals(void)
{
    const char *lora[] = {"base_model.model.x.lora_A.weight", "base_model.model.x.lora_B.weight"};
    const uint64_t ok_shapes[][2] = {{4, 8}, {8, 4}};
    const uint64_t bad_rank[][2] = {{4, 8}, {8, 3}};
    expect_refusal("loha", "{\"peft_type\":\"LOHA\"}", lora, ok_shapes, 2, LT_ERR_UNSUPPORTED,
                   "unsupported adapter type LOHA");
    expect_refusal("nopeft", "{\"model\":\"x\",\"lora_parameters\":{}}", lora, ok_shapes, 2,
                   LT_ERR_UNSUPPORTED, "not a PEFT adapter config");
    expect_refusal("badjson", "{\"peft_type\": \"LORA\",", lora, ok_shapes, 2, LT_ERR_INVALID, "invalid JSON");
    expect_refusal("rankmismatch", "{\"peft_type\":\"LORA\",\"r\":4}", lora, bad_rank, 2, LT_ERR_INVALID,
                   "does not fit");
    expect_refusal("rankconfig", "{\"peft_type\":\"LORA\",\"r\":8}", lora, ok_shapes, 2, LT_ERR_INVALID,
                   "config gives rank 8");
    const char *only_b[] = {"base_model.model.x.lora_B.weight"};
    expect_refusal("onlyb", "{\"peft_type\":\"LORA\",\"r\":4}", only_b, ok_shapes + 1, 1, LT_ERR_INVALID,
                   "no lora_A");
    const char *loha_keys[] = {"base_model.model.x.hada_w1_a"};
    expect_refusal("lohakeys", "{\"peft_type\":\"LORA\"}", loha_keys, ok_shapes, 1, LT_ERR_UNSUPPORTED,
                   "LOHA");
    expect_refusal("badregex", "{\"peft_type\":\"LORA\",\"r\":4,\"target_modules\":\"(?<=x)q\"}", lora,
                   ok_shapes, 2, LT_ERR_UNSUPPORTED, "target_modules");
}

static void test_adalora(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/adalora", tmp_root);
    const char *names[] = {"base_model.model.x.lora_A", "base_model.model.x.lora_B", "base_model.model.x.lora_E"};
    const uint64_t shapes[][2] = {{3, 8}, {8, 3}, {3, 1}};
    make_adapter(dir, "{\"peft_type\":\"ADALORA\",\"r\":8,\"init_r\":12,\"lora_alpha\":32}", names, shapes, 3);
    lt_error err;
    lt_adapter *ad = lt_adapter_open(dir, &err);
    CHECK_MSG(ad != NULL, "%s", err.message);
    if (!ad)
        return;
    const lt_lora_module *m = find_module(ad, "x");
    CHECK(m && m->rank == 3 && m->tensor_e >= 0 && fabs(m->scale - 32 / (12 + 1e-5)) < 1e-12);
    lt_adapter_close(ad);
}

int main(void)
{
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_save_round_trip);
    RUN(test_patterns_and_scales);
    RUN(test_refusals);
    RUN(test_adalora);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
    if (system(cmd) != 0)
        return 1;
    return check_done();
}
