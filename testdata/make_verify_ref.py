#!/usr/bin/python3
"""Fixtures for tests/test_verify.sh (`loratool verify` and `loratool diff`),
made with numpy independently of the C code.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_verify_ref.py build/testdata/verify

Every case directory holds a base (model directory: model.safetensors +
config.json), PEFT adapter directories, and merged models written here:
good_np.safetensors (the float64 merge W + s B A, DoRA (m/||V||) V, rounded
once to the base dtype), peft.safetensors (PEFT's merge_and_unload: B @ A in
float32, times the scale in float32, rounded to the weight's dtype, then
added and rounded again) and bad_*.safetensors, each wrong in one way that
verify must name.  cases.json lists, per case, the command lines (after
`loratool verify` or `loratool diff`, with {CASE} for the case directory),
the exit code each must give and the tensor names that must appear on
FAIL lines of verify's output (or on non-identical lines of diff's).
"""

import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402

SEED = 20261204
H, HEADS, KV_HEADS, INTER, VOCAB = 64, 4, 2, 128, 96
KV = H // HEADS * KV_HEADS

# precision (significand bits incl. the implicit one), emin
FORMATS = {"F32": (24, -126), "BF16": (8, -126), "F16": (11, -14)}


def round_to(x, fmt):
    """float64 -> nearest value of FMT (ties to even, subnormals), as
    float64: one rounding."""
    x = np.asarray(x, dtype=np.float64)
    p, emin = FORMATS[fmt]
    _, e = np.frexp(x)
    q = np.maximum(e - p, emin - (p - 1)).astype(np.int64)
    return np.ldexp(np.rint(np.ldexp(x, -q)), q)


def ulp(x, fmt):
    p, emin = FORMATS[fmt]
    _, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(1.0, np.maximum(e - p, emin - (p - 1)).astype(np.int64))


def entry(name, values, fmt):
    values = np.asarray(values, dtype=np.float64)
    if fmt == "F32":
        return (name, values.astype(np.float32))
    if fmt == "F16":
        return (name, values.astype(np.float16))
    assert fmt == "BF16"
    return stwrite.bf16(name, round_to(values, "BF16").astype(np.float32))


def llama(rng, fmt):
    """A one-layer llama-shaped model; values already representable in FMT."""
    shapes = [("model.embed_tokens.weight", (VOCAB, H)),
              ("model.layers.0.input_layernorm.weight", (H,)),
              ("model.layers.0.self_attn.q_proj.weight", (H, H)),
              ("model.layers.0.self_attn.k_proj.weight", (KV, H)),
              ("model.layers.0.self_attn.v_proj.weight", (KV, H)),
              ("model.layers.0.self_attn.o_proj.weight", (H, H)),
              ("model.layers.0.post_attention_layernorm.weight", (H,)),
              ("model.layers.0.mlp.gate_proj.weight", (INTER, H)),
              ("model.layers.0.mlp.up_proj.weight", (INTER, H)),
              ("model.layers.0.mlp.down_proj.weight", (H, INTER)),
              ("model.norm.weight", (H,)),
              ("lm_head.weight", (VOCAB, H))]
    model = {}
    for name, shape in shapes:
        v = 1.0 + 0.1 * rng.standard_normal(shape) if len(shape) == 1 else 0.05 * rng.standard_normal(shape)
        model[name] = round_to(v, fmt)
    return model


CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
          "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "num_hidden_layers": 1,
          "intermediate_size": INTER, "vocab_size": VOCAB, "max_position_embeddings": 128,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": False}


def write_model(path, model, fmt):
    stwrite.write(path, [entry(n, v, fmt) for n, v in model.items()], {"format": "pt"})


def write_base(case_dir, model, fmt):
    os.makedirs(os.path.join(case_dir, "base"), exist_ok=True)
    write_model(os.path.join(case_dir, "base", "model.safetensors"), model, fmt)
    with open(os.path.join(case_dir, "base", "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=1)


def make_adapter(case_dir, rel, rng, model, modules, r=4, alpha=8, dora=False, sa=0.3, sb=0.3):
    """A PEFT adapter on MODULES (short names under layer 0); returns
    {base tensor: (B, A, s, magnitude or None)} with the factors in float64
    (F32-representable, as saved)."""
    d = os.path.join(case_dir, rel)
    os.makedirs(d, exist_ok=True)
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
           "target_modules": sorted({m.split(".")[-1] for m in modules}), "fan_in_fan_out": False,
           "bias": "none", "use_rslora": False, "use_dora": dora, "modules_to_save": None}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tensors, out = [], {}
    for m in modules:
        target = "model.layers.0.%s.weight" % m
        n_out, n_in = model[target].shape
        a = (sa * rng.standard_normal((r, n_in))).astype(np.float32).astype(np.float64)
        b = (sb * rng.standard_normal((n_out, r))).astype(np.float32).astype(np.float64)
        key = "base_model.model.model.layers.0.%s" % m
        tensors += [(key + ".lora_A.weight", a.astype(np.float32)), (key + ".lora_B.weight", b.astype(np.float32))]
        mag = None
        if dora:
            v = model[target] + alpha / r * (b @ a)
            mag = (np.linalg.norm(v, axis=1) * (1 + 0.2 * rng.standard_normal(n_out))).astype(np.float32)
            mag = mag.astype(np.float64)
            tensors.append((key + ".lora_magnitude_vector", mag.astype(np.float32)))
        out[target] = (b, a, alpha / r, mag)
    stwrite.write(os.path.join(d, "adapter_model.safetensors"), tensors, {"format": "pt"})
    return out


def merged(model, terms, fmt, scale=1.0):
    """The float64 merge rounded once to FMT."""
    result = {}
    for name, w in model.items():
        if name in terms:
            b, a, s, mag = terms[name]
            v = w + scale * s * (b @ a)
            if mag is not None:
                v = (mag / np.linalg.norm(v, axis=1))[:, None] * v
            w = v
        result[name] = round_to(w, fmt)
    return result


def peft_merged(model, terms, fmt):
    """PEFT's merge_and_unload for plain LoRA: delta = (B @ A) * scaling in
    float32, cast to the weight's dtype, added in that dtype."""
    result = dict(model)
    for name, (b, a, s, mag) in terms.items():
        assert mag is None
        delta = (b.astype(np.float32) @ a.astype(np.float32)) * np.float32(s)
        result[name] = round_to(model[name] + round_to(delta.astype(np.float64), fmt), fmt)
    return result


def case_llama_f32(root, rng, cases):
    d = os.path.join(root, "llama_f32")
    model = llama(rng, "F32")
    write_base(d, model, "F32")
    mods = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"]
    terms = make_adapter(d, "ad", rng, model, mods)
    # a second adapter for combine (q, v shared with ad; up only here)
    make_adapter(d, "ad2", rng, model, ["self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj"], r=2, alpha=4)
    good = merged(model, terms, "F32")
    write_model(os.path.join(d, "good_np.safetensors"), good, "F32")
    write_model(os.path.join(d, "peft.safetensors"), peft_merged(model, terms, "F32"), "F32")
    q = "model.layers.0.self_attn.q_proj.weight"
    o = "model.layers.0.self_attn.o_proj.weight"
    down = "model.layers.0.mlp.down_proj.weight"
    norm = "model.layers.0.post_attention_layernorm.weight"
    bad = dict(good)
    bad[q] = good[q].copy()
    bad[q][5, 7] += 3 * ulp(bad[q][5, 7], "F32")
    write_model(os.path.join(d, "bad_ulp.safetensors"), bad, "F32")
    write_model(os.path.join(d, "bad_scale.safetensors"), merged(model, terms, "F32", scale=1.25), "F32")
    bad = dict(good)
    b, a, s, _ = terms[o]
    bad[o] = round_to(model[o] + 2 * s * (b @ a), "F32")
    write_model(os.path.join(d, "bad_twice.safetensors"), bad, "F32")
    bad = dict(good)
    b, a, s, _ = terms[q]
    bad[q] = round_to(model[q] + s * (b @ a).T, "F32")
    write_model(os.path.join(d, "bad_transposed.safetensors"), bad, "F32")
    bad = dict(good)
    bad[down] = model[down]
    write_model(os.path.join(d, "bad_unmerged.safetensors"), bad, "F32")
    bad = dict(good)
    bad[norm] = good[norm].copy()
    bad[norm][3] += ulp(bad[norm][3], "F32")
    write_model(os.path.join(d, "bad_untouched.safetensors"), bad, "F32")
    # the same model declared as qwen2, whose GGUF conversion keeps HF's Q/K row order
    with open(os.path.join(d, "config_qwen2.json"), "w") as f:
        json.dump(dict(CONFIG, architectures=["Qwen2ForCausalLM"], model_type="qwen2"), f, indent=1)
    runs = [
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/good_np.safetensors", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/good_np.safetensors --exact", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/peft.safetensors", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/peft.safetensors --exact", "rc": 1, "names": [q, o]},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_ulp.safetensors", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_ulp.safetensors --exact", "rc": 1, "names": [q],
         "only": True},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_scale.safetensors", "rc": 1,
         "names": [q, o, down], "only": False},
        {"args": "{CASE}/base {CASE}/ad:1.25 --merged {CASE}/bad_scale.safetensors", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_twice.safetensors", "rc": 1, "names": [o], "only": True},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_transposed.safetensors", "rc": 1, "names": [q],
         "only": True},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_unmerged.safetensors", "rc": 1, "names": [down],
         "only": True},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_untouched.safetensors", "rc": 1, "names": [norm],
         "only": True},
    ]
    cases.append({"name": "llama_f32", "verb": "verify", "runs": runs})
    diff_runs = [
        {"args": "{CASE}/good_np.safetensors {CASE}/good_np.safetensors", "rc": 0},
        {"args": "{CASE}/good_np.safetensors {CASE}/bad_ulp.safetensors", "rc": 1, "names": [q], "only": True},
        {"args": "{CASE}/good_np.safetensors {CASE}/bad_ulp.safetensors --rtol 1e-6", "rc": 0},
        {"args": "{CASE}/base/model.safetensors {CASE}/bad_unmerged.safetensors", "rc": 1,
         "names": [q, o], "only": False},
    ]
    cases.append({"name": "llama_f32", "verb": "diff", "runs": diff_runs})


def case_dora_bf16(root, rng, cases):
    d = os.path.join(root, "dora_bf16")
    model = llama(rng, "BF16")
    write_base(d, model, "BF16")
    terms = make_adapter(d, "ad", rng, model, ["self_attn.q_proj", "self_attn.v_proj"], dora=True)
    good = merged(model, terms, "BF16")
    write_model(os.path.join(d, "good_np.safetensors"), good, "BF16")
    q = "model.layers.0.self_attn.q_proj.weight"
    bad = dict(good)
    b, a, s, _ = terms[q]
    bad[q] = round_to(model[q] + s * (b @ a), "BF16")
    write_model(os.path.join(d, "bad_dora_plain.safetensors"), bad, "BF16")
    runs = [
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/good_np.safetensors", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/bad_dora_plain.safetensors", "rc": 1, "names": [q],
         "only": True},
    ]
    cases.append({"name": "dora_bf16", "verb": "verify", "runs": runs})


def case_plain_bf16(root, rng, cases):
    d = os.path.join(root, "plain_bf16")
    model = llama(rng, "BF16")
    write_base(d, model, "BF16")
    mods = ["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj", "mlp.down_proj"]
    terms = make_adapter(d, "ad", rng, model, mods)
    write_model(os.path.join(d, "good_np.safetensors"), merged(model, terms, "BF16"), "BF16")
    write_model(os.path.join(d, "peft.safetensors"), peft_merged(model, terms, "BF16"), "BF16")
    runs = [
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/good_np.safetensors --exact", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/peft.safetensors", "rc": 0},
        {"args": "{CASE}/base {CASE}/ad --merged {CASE}/peft.safetensors --exact", "rc": 1,
         "names": ["model.layers.0.mlp.up_proj.weight"]},
    ]
    cases.append({"name": "plain_bf16", "verb": "verify", "runs": runs})


def case_seeds(root, rng, cases, n=100):
    """N correct merges of different random models, adapters and scales,
    each checked with its own probe seed: none may fail."""
    d = os.path.join(root, "seeds")
    runs = []
    for k in range(n):
        fmt = ("BF16", "F16", "F32")[k % 3]
        sub = os.path.join(d, "%03d" % k)
        model = {name: v for name, v in llama(rng, fmt).items()
                 if "layers" in name and ("attn" in name or "mlp" in name)}
        os.makedirs(os.path.join(sub, "base"), exist_ok=True)
        write_model(os.path.join(sub, "base", "model.safetensors"), model, fmt)
        mods = ["self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"]
        terms = make_adapter(sub, "ad", rng, model, mods, r=int(rng.integers(1, 9)), alpha=16,
                             sa=float(rng.uniform(0.01, 0.5)), sb=float(rng.uniform(0.01, 0.5)))
        scale = float(np.float32(rng.uniform(-2, 2)))
        write_model(os.path.join(sub, "good.safetensors"), merged(model, terms, fmt, scale), fmt)
        runs.append({"args": "{CASE}/%03d/base {CASE}/%03d/ad:%r --merged {CASE}/%03d/good.safetensors --seed %d"
                             % (k, k, scale, k, k + 1), "rc": 0})
    cases.append({"name": "seeds", "verb": "verify", "runs": runs})


def main():
    root = sys.argv[1]
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = np.random.default_rng(SEED)
    cases = []
    case_llama_f32(root, rng, cases)
    case_dora_bf16(root, rng, cases)
    case_plain_bf16(root, rng, cases)
    case_seeds(root, rng, cases)
    for c in cases:
        for r in c["runs"]:
            r["args"] = r["args"].replace("{CASE}", "{CASE}/" + c["name"])
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    main()
