#!/usr/bin/env python3
"""Makes the bundled demo data: a tiny llama-shaped base model (BF16) and a
rank-4 PEFT LoRA adapter on its seven projections (F32).

Usage: /usr/bin/python3 testdata/make_demo.py OUT_DIR
The committed copy lives in testdata/demo/ (made with OUT_DIR=testdata/demo);
the test runner also regenerates it under build/testdata/demo and the tests
check that both are byte-identical (the generator is deterministic).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402

HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, VOCAB, RANK, ALPHA = 64, 128, 2, 4, 2, 256, 4, 8


def main(out):
    rng = np.random.default_rng(20261129)
    base_dir, adapter_dir = os.path.join(out, "base"), os.path.join(out, "adapter")
    os.makedirs(base_dir, exist_ok=True)
    os.makedirs(adapter_dir, exist_ok=True)
    head_dim = HIDDEN // HEADS
    shapes = {
        "self_attn.q_proj": (HIDDEN, HIDDEN),
        "self_attn.k_proj": (KV_HEADS * head_dim, HIDDEN),
        "self_attn.v_proj": (KV_HEADS * head_dim, HIDDEN),
        "self_attn.o_proj": (HIDDEN, HIDDEN),
        "mlp.gate_proj": (INTER, HIDDEN),
        "mlp.up_proj": (INTER, HIDDEN),
        "mlp.down_proj": (HIDDEN, INTER),
    }
    base = [stwrite.bf16("model.embed_tokens.weight", rng.standard_normal((VOCAB, HIDDEN)) * 0.02)]
    adapter = []
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}"
        base.append(stwrite.bf16(f"{prefix}.input_layernorm.weight", np.ones(HIDDEN)))
        base.append(stwrite.bf16(f"{prefix}.post_attention_layernorm.weight", np.ones(HIDDEN)))
        for module, (out_f, in_f) in shapes.items():
            base.append(stwrite.bf16(f"{prefix}.{module}.weight", rng.standard_normal((out_f, in_f)) * 0.02))
            key = f"base_model.model.{prefix}.{module}"
            adapter.append((f"{key}.lora_A.weight", (rng.standard_normal((RANK, in_f)) * 0.1).astype(np.float32)))
            adapter.append((f"{key}.lora_B.weight", (rng.standard_normal((out_f, RANK)) * 0.01).astype(np.float32)))
    base.append(stwrite.bf16("model.norm.weight", np.ones(HIDDEN)))
    base.append(stwrite.bf16("lm_head.weight", rng.standard_normal((VOCAB, HIDDEN)) * 0.02))
    base.sort(key=lambda t: t[0])
    adapter.sort(key=lambda t: t[0])
    stwrite.write(os.path.join(base_dir, "model.safetensors"), base, {"format": "pt"})
    stwrite.write(os.path.join(adapter_dir, "adapter_model.safetensors"), adapter, {"format": "pt"})
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "torch_dtype": "bfloat16",
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "max_position_embeddings": 256,
    }
    with open(os.path.join(base_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "demo/tiny-llama",
        "r": RANK, "lora_alpha": ALPHA, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "rank_pattern": {},
        "alpha_pattern": {}, "peft_version": "0.13.2",
    }
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "testdata/demo")
