#!/bin/sh
# Inputs at the edges that must never give a wrong file with exit 0
# (issue: hostile-input probe): zero-size tensors merge, extract and
# combine correctly (values against numpy); numbers in configs and GGUF
# keys are range-checked; invalid UTF-8 configs are refused; audit --base
# lists every refusal merge would make; convert checks module shapes
# against the base.  Prints PASS/FAIL lines.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$LORATOOL" "$tmp" <<'PY'
import json, os, sys
sys.path.insert(0, "testdata")
import numpy as np
import stwrite
from make_merge_gguf_ref import write_gguf
from clitest import Checks, one_line_error, safetensors_f32, write_adapter

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(11)
checks = Checks(tool)
case, run = checks.case, checks.run
load, adapter = safetensors_f32, write_adapter

P = "base_model.model.model.layers.0.self_attn."
W = "model.layers.0.self_attn."

# ---- zero-size tensors ----
w_v = rng.standard_normal((64, 16)).astype(np.float32)
base = os.path.join(tmp, "base.safetensors")
stwrite.write(base, [(W + "q_proj.weight", np.zeros((64, 0), np.float32)), (W + "v_proj.weight", w_v),
                     (W + "o_proj.weight", np.zeros((0, 16), np.float32))])
tuned = os.path.join(tmp, "tuned.safetensors")
stwrite.write(tuned, [(W + "q_proj.weight", np.zeros((64, 0), np.float32)), (W + "v_proj.weight", w_v + 0.01),
                      (W + "o_proj.weight", np.zeros((0, 16), np.float32))])
a_v, b_v = rng.standard_normal((4, 16)).astype(np.float32), rng.standard_normal((64, 4)).astype(np.float32)
zad = os.path.join(tmp, "zero_ad")
adapter(zad, [(P + "q_proj.lora_A.weight", np.zeros((4, 0), np.float32)),
              (P + "q_proj.lora_B.weight", rng.standard_normal((64, 4)).astype(np.float32)),
              (P + "o_proj.lora_A.weight", rng.standard_normal((4, 16)).astype(np.float32)),
              (P + "o_proj.lora_B.weight", np.zeros((0, 4), np.float32)),
              (P + "v_proj.lora_A.weight", a_v), (P + "v_proj.lora_B.weight", b_v)],
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "o_proj"]})
out = os.path.join(tmp, "zero_merged.safetensors")
p = run("merge", base, zad, "-o", out)
ok = p.returncode == 0 and os.path.exists(out)
if ok:
    m = load(out)
    ref = (w_v.astype(np.float64) + 2.0 * (b_v.astype(np.float64) @ a_v.astype(np.float64))).astype(np.float32)
    ok = (m[W + "q_proj.weight"].shape == (64, 0) and m[W + "o_proj.weight"].shape == (0, 16)
          and np.array_equal(m[W + "v_proj.weight"], ref))
case("zero-size:merge", ok, "rc %d: %s" % (p.returncode, p.stderr.strip()[:200]))
case("zero-size:merge-leaves-no-temp", not [f for f in os.listdir(tmp) if f.startswith(".")], str(os.listdir(tmp)))
o = os.path.join(tmp, "zero_extract")
p = run("extract", base, tuned, "--rank", "2", "-o", o)
ok = p.returncode == 0   # the empty (exactly zero) deltas are left out, the changed one kept
if ok:
    t = load(os.path.join(o, "adapter_model.safetensors"))
    ok = sorted(t) == [P + "v_proj.lora_A.weight", P + "v_proj.lora_B.weight"] and "left out" in p.stdout
case("zero-size:extract", ok, "rc %d: %s %s" % (p.returncode, p.stdout[-200:], p.stderr.strip()[:200]))
for name, args in (("extract-keep-zero", ["extract", base, tuned, "--rank", "2", "--keep-zero"]),
                   ("combine-ties", ["combine", zad, zad, "--method", "ties", "--rank", "2"]),
                   ("combine-dare", ["combine", zad, zad, "--method", "dare", "--rank", "2"]),
                   ("resize", ["resize", zad, "--rank", "2"]), ("combine-concat", ["combine", zad, zad])):
    o = os.path.join(tmp, "zero_" + name)
    p = run(*(args + ["-o", o]))
    ok = p.returncode == 0
    if ok:
        t = load(os.path.join(o, "adapter_model.safetensors"))
        for mod, shape in (("q_proj", (64, 0)), ("o_proj", (0, 16))):  # empty deltas, of the base's shape
            a = t["base_model.model.model.layers.0.self_attn.%s.lora_A.weight" % mod]
            b = t["base_model.model.model.layers.0.self_attn.%s.lora_B.weight" % mod]
            delta = b.astype(np.float64) @ a.astype(np.float64)
            ok = ok and delta.shape == shape and not np.any(delta)
        ok = ok and any("v_proj" in k for k in t)
    case("zero-size:" + name, ok, "rc %d: %s" % (p.returncode, p.stderr.strip()[:200]))

# ---- numbers in configs and GGUF keys ----
def small_adapter(d, config):
    adapter(d, [(P + "v_proj.lora_A.weight", a_v), (P + "v_proj.lora_B.weight", b_v)], config)
    return d

cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["v_proj"]}
d = small_adapter(os.path.join(tmp, "neg_rank"), dict(cfg, rank_pattern={"v_proj": -4}))
case("config:negative-rank_pattern", one_line_error(run("inspect", d), 3, "rank_pattern", "v_proj"),
     run("inspect", d).stderr)
d = small_adapter(os.path.join(tmp, "frac_rank"), dict(cfg, rank_pattern={"v_proj": 2.5}))
case("config:fractional-rank_pattern", one_line_error(run("merge", base, d, "-o", os.path.join(tmp, "x.st")), 3,
                                                      "rank_pattern"), "")
d = small_adapter(os.path.join(tmp, "bad_init_r"), dict(cfg, peft_type="ADALORA", init_r=-3))
case("config:bad-init_r", one_line_error(run("inspect", d), 3, "init_r"), run("inspect", d).stderr)
d = small_adapter(os.path.join(tmp, "neg_alpha"), dict(cfg, lora_alpha=-8))
p = run("inspect", d, "--json")
case("config:negative-alpha-allowed", p.returncode == 0 and "-2" in p.stdout, p.stderr)
d = os.path.join(tmp, "bad_utf8")
small_adapter(d, cfg)
with open(os.path.join(d, "adapter_config.json"), "wb") as f:
    f.write(b'{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["v_pro\xff\xfe"]}')
case("config:invalid-utf8", one_line_error(run("inspect", d), 3, "UTF-8"), run("inspect", d).stderr)

def gguf_lora(path, alpha_kv):
    kvs = [("general.architecture", "str", "llama"), ("general.type", "str", "adapter"),
           ("adapter.type", "str", "lora")] + ([alpha_kv] if alpha_kv else [])
    tensors = [("blk.0.attn_v.weight.lora_a", "F32", [16, 4], a_v.astype("<f4").tobytes()),
               ("blk.0.attn_v.weight.lora_b", "F32", [4, 64], b_v.astype("<f4").tobytes())]
    write_gguf(path, kvs, tensors)
    return path

g = gguf_lora(os.path.join(tmp, "nan_alpha.gguf"), ("adapter.lora.alpha", "f32", float("nan")))
case("gguf:nan-alpha", one_line_error(run("inspect", g), 3, "adapter.lora.alpha"), run("inspect", g).stderr)
g = gguf_lora(os.path.join(tmp, "str_alpha.gguf"), ("adapter.lora.alpha", "str", "16"))
case("gguf:string-alpha", one_line_error(run("inspect", g), 3, "adapter.lora.alpha", "string"),
     run("inspect", g).stderr)
g = gguf_lora(os.path.join(tmp, "no_alpha.gguf"), None)
case("gguf:absent-alpha-is-scale-1", run("inspect", g).returncode == 0, run("inspect", g).stderr)

# ---- audit --base: every refusal merge would make ----
b2 = os.path.join(tmp, "b2.safetensors")
stwrite.write(b2, [("model.embed_tokens.weight", rng.standard_normal((50, 16)).astype(np.float32)),
                   (W + "q_proj.weight", rng.standard_normal((16, 16)).astype(np.float32)),
                   ("model.layers.0.mlp.gate.weight", np.zeros((16, 16), np.int32))])
bad = os.path.join(tmp, "bad")
adapter(bad, [(P + "q_proj.lora_A.weight", rng.standard_normal((4, 16)).astype(np.float32)),
              (P + "q_proj.lora_B.weight", rng.standard_normal((16, 4)).astype(np.float32)),
              (P + "q_proj.lora_B.bias", rng.standard_normal((16,)).astype(np.float32)),
              ("base_model.model.model.layers.0.mlp.gate.lora_A.weight", rng.standard_normal((4, 16)).astype(np.float32)),
              ("base_model.model.model.layers.0.mlp.gate.lora_B.weight", rng.standard_normal((16, 4)).astype(np.float32)),
              ("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
               rng.standard_normal((3, 16)).astype(np.float32))],
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "lora_bias": True, "target_modules": ["q_proj", "gate"],
         "trainable_token_indices": [3, 3, 70]})
p = run("audit", bad, "--base", b2, "--json")
v = json.loads(p.stdout).get("violations", []) if p.returncode == 1 else []
text = " ".join(v)
case("audit:merge-refusals-listed", p.returncode == 1 and "token id 70" in text and "lora bias" in text
     and "I32" in text, "rc %d: %s %s" % (p.returncode, text[:300], p.stderr[:200]))
case("audit:merge-refuses-too", run("merge", b2, bad, "-o", os.path.join(tmp, "y.st")).returncode == 3, "")
dup = os.path.join(tmp, "dup_ids")
adapter(dup, [("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
               rng.standard_normal((2, 16)).astype(np.float32))],
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "trainable_token_indices": [5, 5]})
p = run("audit", dup, "--base", b2)
case("audit:duplicate-token-ids", p.returncode == 1 and "listed twice" in p.stdout, p.stdout[-300:] + p.stderr)
p = run("audit", small_adapter(os.path.join(tmp, "fine"), cfg), "--base", base)
case("audit:clean-adapter-passes", p.returncode == 0, p.stdout[-300:] + p.stderr)

# ---- convert: module shapes against the base ----
llama_cfg = os.path.join(tmp, "llama_config.json")
with open(llama_cfg, "w") as f:
    json.dump({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
               "num_key_value_heads": 2, "vocab_size": 100}, f)
def llama_adapter(d, q_out, k_out):
    adapter(d, [(P + "q_proj.lora_A.weight", rng.standard_normal((4, 64)).astype(np.float32)),
                (P + "q_proj.lora_B.weight", rng.standard_normal((q_out, 4)).astype(np.float32)),
                (P + "k_proj.lora_A.weight", rng.standard_normal((4, 64)).astype(np.float32)),
                (P + "k_proj.lora_B.weight", rng.standard_normal((k_out, 4)).astype(np.float32))],
            {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj"]})
    return d
ok_ad = llama_adapter(os.path.join(tmp, "llama_ok"), 64, 32)
p = run("convert", ok_ad, "-o", os.path.join(tmp, "ok.gguf"), "--base", llama_cfg)
case("convert:matching-shapes", p.returncode == 0, p.stderr)
wrong = llama_adapter(os.path.join(tmp, "llama_wrong"), 64, 64)   # k as if 4 KV heads
out = os.path.join(tmp, "wrong.gguf")
p = run("convert", wrong, "-o", out, "--base", llama_cfg)
case("convert:shape-mismatch-refused", one_line_error(p, 3, "k_proj", "[64, 64]", "[32, 64]") and not os.path.exists(out),
     p.stderr)
sys.exit(checks.status())
PY
