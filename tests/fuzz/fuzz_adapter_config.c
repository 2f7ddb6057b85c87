/*
 * fuzz_adapter_config.c - adapter_config.json and what the adapter reader
 * does with it: peft_type, r, lora_alpha, the flags, target_modules (list
 * or regex), modules_to_save, rank_pattern and alpha_pattern (compiled as
 * regexes and matched against module names), trainable_token_indices; then
 * the classification of the weights' keys against the config.  Reached
 * through lt_adapter_open on a directory holding the input as
 * adapter_config.json beside a tiny valid adapter_model.safetensors.
 *
 * Input: one byte choosing the weights (byte % 3), then the JSON:
 *   0  two linear modules, rank 8 (q_proj, F32) and rank 4 (down_proj,
 *      F16): an OK result needs r = 8 and a rank_pattern for down_proj
 *      (or the reverse)
 *   1  a rank-8 module with DoRA magnitude and lora_B.bias, a
 *      modules_to_save head, trainable token rows (2 ids needed)
 *   2  an embedding module (lora_embedding_A/B, rank 8) and an
 *      AdaLoRA-style module (lora_A, lora_B, lora_E without ".weight")
 * On success the adapter must be consistent (fuzz_check_adapter): ranks
 * and shapes agree, finite alphas and scales, parameter counts add up,
 * warnings are single lines.
 */
#include "fuzz_weights.h"

#define P "base_model.model.model."

static const fuzz_tensor weights0[] = {
    {P "layers.0.self_attn.q_proj.lora_A.weight", LT_F32, 2, {8, 4}},
    {P "layers.0.self_attn.q_proj.lora_B.weight", LT_F32, 2, {6, 8}},
    {P "layers.1.mlp.down_proj.lora_A.weight", LT_F16, 2, {4, 6}},
    {P "layers.1.mlp.down_proj.lora_B.weight", LT_F16, 2, {4, 4}},
};
static const fuzz_tensor weights1[] = {
    {P "layers.0.self_attn.v_proj.lora_A.weight", LT_BF16, 2, {8, 4}},
    {P "layers.0.self_attn.v_proj.lora_B.weight", LT_BF16, 2, {6, 8}},
    {P "layers.0.self_attn.v_proj.lora_B.bias", LT_BF16, 1, {6}},
    {P "layers.0.self_attn.v_proj.lora_magnitude_vector", LT_F32, 1, {6}},
    {"base_model.model.score.modules_to_save.default.weight", LT_F32, 2, {2, 6}},
    {P "embed_tokens.token_adapter.trainable_tokens_delta", LT_F32, 2, {2, 6}},
};
static const fuzz_tensor weights2[] = {
    {P "embed_tokens.lora_embedding_A", LT_F32, 2, {8, 10}},
    {P "embed_tokens.lora_embedding_B", LT_F32, 2, {6, 8}},
    {P "layers.0.self_attn.q_proj.lora_A", LT_F32, 2, {8, 4}},
    {P "layers.0.self_attn.q_proj.lora_B", LT_F32, 2, {6, 8}},
    {P "layers.0.self_attn.q_proj.lora_E", LT_F32, 2, {8, 1}},
};

static const struct {
    const fuzz_tensor *tensors;
    size_t n;
} variants[3] = {
    {weights0, sizeof weights0 / sizeof *weights0},
    {weights1, sizeof weights1 / sizeof *weights1},
    {weights2, sizeof weights2 / sizeof *weights2},
};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static char dirs[3][128];
    if (!dirs[0][0]) {
        for (int v = 0; v < 3; v++) {
            char name[32], weights[192];
            snprintf(name, sizeof name, "adapter%d", v);
            fuzz_path(dirs[v], sizeof dirs[v], name);
            fuzz_mkdir(dirs[v]);
            snprintf(weights, sizeof weights, "%s/adapter_model.safetensors", dirs[v]);
            fuzz_write_weights(weights, variants[v].tensors, variants[v].n);
        }
    }
    if (size < 1)
        return 0;
    int v = data[0] % 3;
    char config[192];
    snprintf(config, sizeof config, "%s/adapter_config.json", dirs[v]);
    fuzz_write_file(config, data + 1, size - 1);
    lt_error err;
    fuzz_error_reset(&err);
    lt_adapter *ad = lt_adapter_open(dirs[v], &err);
    if (!ad) {
        fuzz_check_error(&err);
        return 0;
    }
    fuzz_note_ok("adapter opened");
    fuzz_check_adapter(ad);
    FUZZ_ASSERT(lt_adapter_module_count(ad) + lt_adapter_replacement_count(ad) > 0);
    lt_adapter_close(ad);
    return 0;
}
