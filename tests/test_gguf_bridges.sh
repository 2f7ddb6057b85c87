#!/bin/sh
# Adapters and bases of the other naming, and the refusals that keep a
# wrong model from being written with exit 0: a GGUF LoRA merged into a
# safetensors model (names and Q/K rows mapped back through its
# config.json: the same tensors as the PEFT adapter it came from), a GGUF
# LoRA of another architecture than its base or its partners, resize and
# combine of GGUF LoRAs into a PEFT directory (--base), convert of a LoKr
# file, extract leaving unchanged weights out, verify of a loralib
# checkpoint's merge.  Prints PASS/FAIL lines.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$LORATOOL" "$tmp" <<'PY'
import json, os, sys
sys.path.insert(0, "testdata")
import numpy as np
import stwrite
from make_merge_gguf_ref import write_gguf, base_kvs, HIDDEN, N_HEAD, N_KV, HD
from clitest import Checks, one_line_error, safetensors_raw

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(23)
checks = Checks(tool)
case, run, tensors_of = checks.case, checks.run, safetensors_raw

def one_line(p, rc, *words):
    return one_line_error(p, rc, *words, prefix=False)

# a llama model (safetensors + config.json) and a PEFT adapter on q, k, v
H, KVD = HIDDEN, N_KV * HD
model = os.path.join(tmp, "model")
os.makedirs(model)
json.dump({"model_type": "llama", "hidden_size": H, "intermediate_size": 256, "num_attention_heads": N_HEAD,
           "num_key_value_heads": N_KV, "vocab_size": 50, "num_hidden_layers": 1, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-5}, open(os.path.join(model, "config.json"), "w"))
W = {"model.layers.0.self_attn.q_proj.weight": rng.standard_normal((H, H)).astype(np.float32),
     "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((KVD, H)).astype(np.float32),
     "model.layers.0.self_attn.v_proj.weight": rng.standard_normal((KVD, H)).astype(np.float32)}
stwrite.write(os.path.join(model, "model.safetensors"), list(W.items()))
peft = os.path.join(tmp, "peft")
os.makedirs(peft)
P = "base_model.model.model.layers.0.self_attn."
stwrite.write(os.path.join(peft, "adapter_model.safetensors"),
              [(P + m + ".lora_A.weight", rng.standard_normal((4, H)).astype(np.float32)) for m in ("q_proj", "k_proj", "v_proj")] +
              [(P + "q_proj.lora_B.weight", rng.standard_normal((H, 4)).astype(np.float32)),
               (P + "k_proj.lora_B.weight", rng.standard_normal((KVD, 4)).astype(np.float32)),
               (P + "v_proj.lora_B.weight", rng.standard_normal((KVD, 4)).astype(np.float32))])
json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj"]},
          open(os.path.join(peft, "adapter_config.json"), "w"))
lora = os.path.join(tmp, "lora.gguf")
p = run("convert", peft, "-o", lora, "--base", model)
case("setup:convert", p.returncode == 0, p.stderr)

# ---- a GGUF LoRA into a safetensors model ----
m1, m2 = os.path.join(tmp, "m1.safetensors"), os.path.join(tmp, "m2.safetensors")
p1, p2 = run("merge", model, peft, "-o", m1), run("merge", model, lora, "-o", m2)
case("gguf-lora-into-safetensors:merges", p1.returncode == 0 and p2.returncode == 0, p1.stderr + p2.stderr)
if p1.returncode == 0 and p2.returncode == 0:
    a, b = tensors_of(m1), tensors_of(m2)
    case("gguf-lora-into-safetensors:equals-peft-merge", a == b,
         [k for k in a if a[k] != b.get(k)])
bare = os.path.join(tmp, "bare")
os.makedirs(bare)
os.link(os.path.join(model, "model.safetensors"), os.path.join(bare, "model.safetensors"))
p = run("merge", os.path.join(bare, "model.safetensors"), lora, "-o", os.path.join(tmp, "m3.safetensors"))
case("gguf-lora-into-bare-file:asks-for-directory", one_line(p, 3, "config.json") and
     not os.path.exists(os.path.join(tmp, "m3.safetensors")), p.stderr)

# ---- architectures must agree ----
def gguf_lora(path, arch):
    kv = [("general.architecture", "str", arch), ("general.type", "str", "adapter"), ("adapter.type", "str", "lora"),
          ("adapter.lora.alpha", "f32", 8.0)]
    a = rng.standard_normal((4, H)).astype("<f4"); b = rng.standard_normal((H, 4)).astype("<f4")
    write_gguf(path, kv, [("blk.0.attn_q.weight.lora_a", "F32", [H, 4], a.tobytes()),
                          ("blk.0.attn_q.weight.lora_b", "F32", [4, H], b.tobytes())])
    return path
gbase = os.path.join(tmp, "base.gguf")
write_gguf(gbase, base_kvs(), [("blk.0.attn_q.weight", "F32", [H, H], rng.standard_normal((H, H)).astype("<f4").tobytes())])
q2 = gguf_lora(os.path.join(tmp, "qwen2.gguf"), "qwen2")
ll = gguf_lora(os.path.join(tmp, "llama.gguf"), "llama")
out = os.path.join(tmp, "mq.gguf")
p = run("merge", gbase, q2, "-o", out)
case("arch:merge-refuses-other-architecture", one_line(p, 3, "qwen2", "llama") and not os.path.exists(out), p.stderr)
p = run("merge", gbase, ll, "-o", out)
case("arch:merge-same-architecture", p.returncode == 0, p.stderr)
p = run("combine", ll, q2, "-o", os.path.join(tmp, "c.gguf"))
case("arch:combine-refuses-mixed-architectures", one_line(p, 3, "qwen2", "llama"), p.stderr)
p = run("combine", ll, peft, "-o", os.path.join(tmp, "c2"))
case("arch:combine-refuses-gguf-with-peft", one_line(p, 3, "convert"), p.stderr)

# ---- GGUF LoRAs into PEFT directories ----
d = os.path.join(tmp, "resized")
p = run("resize", lora, "-o", d, "--rank", "2")
case("gguf-to-dir:needs-base", one_line(p, 2, "--base") and not os.path.exists(d), p.stderr)
p = run("resize", lora, "-o", d, "--rank", "2", "--base", model)
ok = p.returncode == 0 and os.path.exists(os.path.join(d, "adapter_model.safetensors"))
names = list(tensors_of(os.path.join(d, "adapter_model.safetensors"))) if ok else []
case("gguf-to-dir:hf-names-with-base", ok and all(n.startswith(P) for n in names) and len(names) == 6,
     p.stderr + str(names))
d2 = os.path.join(tmp, "combined")
p = run("combine", lora, "-o", d2, "--base", model)
ok = p.returncode == 0
if ok:  # the exact concatenation maps back to the PEFT adapter's delta
    got = run("merge", model, d2, "-o", os.path.join(tmp, "m4.safetensors"))
    ok = got.returncode == 0
    if ok:
        a, b = tensors_of(m1), tensors_of(os.path.join(tmp, "m4.safetensors"))
        ok = all(np.allclose(np.frombuffer(a[k], "<f4"), np.frombuffer(b[k], "<f4"), rtol=1e-5, atol=1e-5) for k in a)
case("gguf-to-dir:combine-maps-back-the-same-delta", ok, p.stderr)

# ---- convert of a LoKr file ----
lokr = "../shared/corpus/other_formats/lycoris_kohya_lokr/smart_falcon_4_lokr.safetensors"
if os.path.exists(lokr):
    p = run("convert", lokr, "-o", os.path.join(tmp, "lokr.gguf"), "--base", model)
    case("convert:lokr-refused-by-type", one_line(p, 3, "unsupported adapter type LOKR"), p.stderr)
else:
    case("convert:lokr-refused-by-type", False, "missing corpus file " + lokr)

# ---- extract leaves unchanged weights out ----
tuned = os.path.join(tmp, "tuned.safetensors")
T = dict(W)
T["model.layers.0.self_attn.q_proj.weight"] = W["model.layers.0.self_attn.q_proj.weight"] + 0.01
stwrite.write(tuned, list(T.items()))
ex = os.path.join(tmp, "ex")
p = run("extract", os.path.join(model, "model.safetensors"), tuned, "-o", ex, "--rank", "2", "--json")
ok = p.returncode == 0
if ok:
    names = list(tensors_of(os.path.join(ex, "adapter_model.safetensors")))
    rep = json.loads(p.stdout)
    mods = {m["name"]: m for m in rep.get("modules", [])}
    ok = (len(names) == 2 and all("q_proj" in n for n in names) and
          mods.get("model.layers.0.self_attn.k_proj", {}).get("zero_delta") is True)
case("extract:zero-deltas-left-out", ok, p.stdout[-300:] + p.stderr)
ex2 = os.path.join(tmp, "ex2")
p = run("extract", os.path.join(model, "model.safetensors"), tuned, "-o", ex2, "--rank", "2", "--keep-zero")
case("extract:keep-zero-keeps-them", p.returncode == 0 and
     len(tensors_of(os.path.join(ex2, "adapter_model.safetensors"))) == 6, p.stderr)

# ---- verify of a loralib checkpoint's merge ----
F = "testdata/loralib"
opts = ["--alpha", "32", "--enable-lora", "1,0,1", "--fan-in-fan-out"]
lm = os.path.join(tmp, "loralib.safetensors")
p = run("merge", F + "/gpt2_base.safetensors", F + "/gpt2.pt", "-o", lm, *opts)
v = run("verify", F + "/gpt2_base.safetensors", F + "/gpt2.pt", "--merged", lm, "--exact", *opts)
case("verify:loralib-merge-verifies", p.returncode == 0 and v.returncode == 0, p.stderr + v.stdout[-300:] + v.stderr)
v = run("verify", F + "/gpt2_base.safetensors", F + "/gpt2.pt", "--merged", lm, "--alpha", "16",
        "--enable-lora", "1,0,1", "--fan-in-fan-out")
case("verify:loralib-wrong-alpha-fails", v.returncode == 1 and "2 times" in v.stdout, v.stdout[-300:] + v.stderr)
sys.exit(checks.status())
PY
