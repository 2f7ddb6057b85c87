#!/bin/sh
# Whole-model conversion safetensors <-> GGUF and merging into a GGUF base,
# checked with numpy and the independent GGUF reader of
# testdata/convert_check.py:
# - names follow the map, llama's q/k rows are permuted as numpy computes
#   them from the DESIGN formula, 1-D tensors are F32, values unchanged;
# - GGUF -> safetensors returns the original values;
# - gemma norms are stored as 1 + w;
# - merging into the GGUF base gives the same tensor data as merging into
#   the safetensors base and converting the result.
set -u
LORATOOL=${LORATOOL:-build/loratool}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$LORATOOL" "$tmp" <<'PY'
import json, os, subprocess, sys
sys.path.insert(0, "testdata")
import numpy as np
import stwrite
from convert_check import read_gguf, decode

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(5)
failures = 0

def case(name, ok, why=""):
    global failures
    print(("PASS %s" if ok else "FAIL %s: " + why) % name if ok else "FAIL %s: %s" % (name, why))
    failures += not ok

def run(*args):
    p = subprocess.run([tool] + list(args), capture_output=True, text=True)
    return p.returncode, p.stderr

def load_st(path):
    import struct
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]; raw = b[8 + n + s:8 + n + e]
        dt = {"F32": "<f4", "F16": "<f2"}.get(v["dtype"])
        a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32) if v["dtype"] == "BF16" else np.frombuffer(raw, dt)
        out[k] = (v["dtype"], a.astype(np.float64).reshape(v["shape"]))
    return out

def permute(w, n_head):  # GGUF row h*hd + 2t + s = HF row h*hd + s*hd/2 + t
    rows = w.shape[0]; hd = rows // n_head
    return w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

for arch, model_type, heads, kv_heads in (("llama", "llama", 4, 2), ("gemma2", "gemma2", 4, 2)):
    d = os.path.join(tmp, arch); os.makedirs(d)
    hidden, inter = 32, 48
    json.dump({"model_type": model_type, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
               "num_hidden_layers": 1, "hidden_size": hidden, "intermediate_size": inter, "vocab_size": 50,
               "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0},
              open(os.path.join(d, "config.json"), "w"))
    t = {"model.embed_tokens.weight": rng.standard_normal((50, hidden)),
         "model.norm.weight": rng.standard_normal(hidden),
         "model.layers.0.input_layernorm.weight": rng.standard_normal(hidden),
         "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((hidden, hidden)),
         "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((kv_heads * hidden // heads, hidden)),
         "model.layers.0.self_attn.v_proj.weight": rng.standard_normal((kv_heads * hidden // heads, hidden)),
         "model.layers.0.self_attn.o_proj.weight": rng.standard_normal((hidden, hidden)),
         "model.layers.0.mlp.gate_proj.weight": rng.standard_normal((inter, hidden)),
         "model.layers.0.mlp.up_proj.weight": rng.standard_normal((inter, hidden)),
         "model.layers.0.mlp.down_proj.weight": rng.standard_normal((hidden, inter)),
         "lm_head.weight": rng.standard_normal((50, hidden))}
    if arch == "gemma2":
        t["model.layers.0.post_attention_layernorm.weight"] = rng.standard_normal(hidden)
        t["model.layers.0.pre_feedforward_layernorm.weight"] = rng.standard_normal(hidden)
        t["model.layers.0.post_feedforward_layernorm.weight"] = rng.standard_normal(hidden)
    else:
        t["model.layers.0.post_attention_layernorm.weight"] = rng.standard_normal(hidden)
    entries = sorted((k, v.astype(np.float32)) for k, v in t.items())
    stwrite.write(os.path.join(d, "model.safetensors"), entries, {"format": "pt"})
    rc, err = run("convert", os.path.join(d, "model.safetensors"), "-o", os.path.join(d, "m.gguf"), "--base", d)
    if rc != 0:
        case(arch + ":to-gguf", False, err.strip()); continue
    kv, tensors = read_gguf(os.path.join(d, "m.gguf"))
    gg = {
        "model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight", "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
        "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
        "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
        "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
        "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
        "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
        "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
        "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
    }
    if arch == "gemma2":
        gg.update({"model.layers.0.post_attention_layernorm.weight": "blk.0.post_attention_norm.weight",
                   "model.layers.0.pre_feedforward_layernorm.weight": "blk.0.ffn_norm.weight",
                   "model.layers.0.post_feedforward_layernorm.weight": "blk.0.post_ffw_norm.weight"})
    else:
        gg["model.layers.0.post_attention_layernorm.weight"] = "blk.0.ffn_norm.weight"
    problems = []
    if kv.get("general.architecture", (None, None))[1] != arch:
        problems.append("general.architecture %r" % (kv.get("general.architecture"),))
    if set(tensors) != set(gg.values()):
        problems.append("names %s" % sorted(set(tensors) ^ set(gg.values())))
    for hf, name in gg.items():
        if name not in tensors:
            continue
        ne, tname, raw = tensors[name]
        want = t[hf].astype(np.float32).astype(np.float64)
        if arch == "llama" and hf.endswith("q_proj.weight"):
            want = permute(want, heads)
        if arch == "llama" and hf.endswith("k_proj.weight"):
            want = permute(want, kv_heads)
        if arch == "gemma2" and name.endswith("_norm.weight"):
            want = (want + 1).astype(np.float32).astype(np.float64)
        if want.ndim == 1 and tname != "F32":
            problems.append("%s is %s, not F32" % (name, tname))
        got = decode(ne, tname, raw).reshape(want.shape)
        if not np.array_equal(got, want):
            problems.append("%s values differ (max %.3g)" % (name, np.abs(got - want).max()))
    case(arch + ":to-gguf", not problems, "; ".join(problems))
    rc, err = run("convert", os.path.join(d, "m.gguf"), "-o", os.path.join(d, "back.safetensors"), "--base", d)
    back = load_st(os.path.join(d, "back.safetensors")) if rc == 0 else {}

    def expected_back(k):
        w = t[k].astype(np.float32)
        if arch == "gemma2" and gg[k].endswith("_norm.weight"):  # (w + 1) was rounded to f32 on the way in
            w = ((w.astype(np.float64) + 1).astype(np.float32).astype(np.float64) - 1).astype(np.float32)
        return w.astype(np.float64)
    same = rc == 0 and set(back) == set(t) and all(np.array_equal(back[k][1], expected_back(k)) for k in t)
    case(arch + ":round-trip", same, err.strip() or "values differ")

# merging into the GGUF base equals merging into the safetensors base, then converting
d = os.path.join(tmp, "llama")
ad = os.path.join(tmp, "adapter"); os.makedirs(ad)
mods = {}
for m, shape in (("self_attn.q_proj", (32, 32)), ("self_attn.k_proj", (16, 32)), ("mlp.down_proj", (32, 48))):
    key = "base_model.model.model.layers.0." + m
    mods[key + ".lora_A.weight"] = (rng.standard_normal((4, shape[1])) * 0.1).astype(np.float32)
    mods[key + ".lora_B.weight"] = (rng.standard_normal((shape[0], 4)) * 0.1).astype(np.float32)
stwrite.write(os.path.join(ad, "adapter_model.safetensors"), sorted(mods.items()), {"format": "pt"})
json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "down_proj"]},
          open(os.path.join(ad, "adapter_config.json"), "w"))
steps = [("merge", os.path.join(d, "m.gguf"), ad, "-o", os.path.join(tmp, "g.gguf")),
         ("merge", os.path.join(d, "model.safetensors"), ad, "-o", os.path.join(tmp, "s.safetensors")),
         ("convert", os.path.join(tmp, "s.safetensors"), "-o", os.path.join(tmp, "s.gguf"), "--base", d)]
errs = [e for rc, e in (run(*s) for s in steps) if rc != 0]
if errs:
    case("merge-gguf-base", False, errs[0].strip())
else:
    _, a = read_gguf(os.path.join(tmp, "g.gguf")); _, b = read_gguf(os.path.join(tmp, "s.gguf"))
    diff = [n for n in a if n not in b or a[n][2] != b[n][2]]
    case("merge-gguf-base", not diff and set(a) == set(b), "tensors differ: %s" % diff[:3])
rc, err = run("convert", os.path.join(d, "model.safetensors"), "-o", os.path.join(tmp, "x.safetensors"), "--base", d)
case("model-needs-gguf-output", rc == 3 and err.startswith("loratool: ") and not os.path.exists(os.path.join(tmp, "x.safetensors")),
     "exit %d: %s" % (rc, err.strip()))
sys.exit(1 if failures else 0)
PY
