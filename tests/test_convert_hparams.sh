#!/bin/sh
# Whole-model conversion writes llama.cpp's hyperparameter keys from
# config.json, takes a tokenizer from --vocab, and refuses config values
# llama.cpp's architecture cannot represent.  Checked with the independent
# GGUF reader of testdata/convert_check.py; the LLaMA 3.x rope_freqs
# factors against numpy's evaluation of Hugging Face's llama3 rule
# (inv_freq / inv_freq_llama3).
set -u
LORATOOL=${LORATOOL:-build/loratool}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$LORATOOL" "$tmp" <<'PY'
import json, math, os, subprocess, sys
sys.path.insert(0, "testdata")
import numpy as np
import stwrite
from clitest import Checks
from convert_check import read_gguf, decode
from make_merge_gguf_ref import write_gguf

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(14)
checks = Checks(tool)
case = checks.case

def run(*args):
    p = subprocess.run([tool] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr

HIDDEN, HEADS, KV, FF, VOCAB, LAYERS = 32, 4, 2, 48, 40, 2

def model_dir(name, cfg, arch_tensors="llama", lm_head=True, extra=None):
    d = os.path.join(tmp, name); os.makedirs(d)
    base = {"model_type": "llama", "hidden_size": HIDDEN, "num_attention_heads": HEADS,
            "num_key_value_heads": KV, "intermediate_size": FF, "num_hidden_layers": LAYERS,
            "vocab_size": VOCAB, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False}
    base.update(cfg)
    base = {k: v for k, v in base.items() if v is not None}
    json.dump(base, open(os.path.join(d, "config.json"), "w"))
    hd = base.get("head_dim", HIDDEN // HEADS)
    t = {"model.embed_tokens.weight": (base.get("vocab_size", VOCAB), HIDDEN), "model.norm.weight": (HIDDEN,)}
    if lm_head:
        t["lm_head.weight"] = (base.get("vocab_size", VOCAB), HIDDEN)
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        t.update({p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,),
                  p + "self_attn.q_proj.weight": (HEADS * hd, HIDDEN), p + "self_attn.k_proj.weight": (KV * hd, HIDDEN),
                  p + "self_attn.v_proj.weight": (KV * hd, HIDDEN), p + "self_attn.o_proj.weight": (HIDDEN, HEADS * hd),
                  p + "mlp.gate_proj.weight": (FF, HIDDEN), p + "mlp.up_proj.weight": (FF, HIDDEN),
                  p + "mlp.down_proj.weight": (HIDDEN, FF)})
    t.update(extra or {})
    entries = sorted((k, rng.standard_normal(s).astype(np.float32)) for k, s in t.items())
    stwrite.write(os.path.join(d, "model.safetensors"), entries, {"format": "pt"})
    return d

def convert(d, *more):
    out = os.path.join(d, "m.gguf")
    if os.path.exists(out):  # an earlier output inside the model directory: loratool will not replace it
        os.remove(out)
    rc, so, se = run("convert", os.path.join(d, "model.safetensors"), "-o", out, "--base", d, *more)
    return rc, so, se, out

def kv_of(path):
    kv, tensors = read_gguf(path)
    return {k: v[1] for k, v in kv.items()}, tensors

# 1. llama: every key llama.cpp reads, with config values
d = model_dir("llama", {})
rc, so, se, out = convert(d)
want = {"general.architecture": "llama", "llama.context_length": 256, "llama.embedding_length": HIDDEN,
        "llama.feed_forward_length": FF, "llama.block_count": LAYERS, "llama.attention.head_count": HEADS,
        "llama.attention.head_count_kv": KV, "llama.attention.key_length": HIDDEN // HEADS,
        "llama.attention.value_length": HIDDEN // HEADS, "llama.rope.dimension_count": HIDDEN // HEADS,
        "llama.rope.freq_base": 10000.0, "llama.vocab_size": VOCAB,
        "llama.attention.layer_norm_rms_epsilon": float(np.float32(1e-5))}
if rc != 0:
    case("llama:keys", False, se.strip())
else:
    kv, _ = kv_of(out)
    bad = ["%s=%r (want %r)" % (k, kv.get(k), v) for k, v in want.items() if kv.get(k) != v]
    case("llama:keys", not bad and "no tokenizer" in so, "; ".join(bad) or so)

# 2. qwen3 with head_dim != hidden/heads, tied embeddings without lm_head
d = model_dir("qwen3", {"model_type": "qwen3", "head_dim": 16, "tie_word_embeddings": True,
                        "rope_theta": 1000000.0}, lm_head=False,
              extra={"model.layers.%d.self_attn.%s_norm.weight" % (i, x): (16,) for i in range(LAYERS) for x in "qk"})
rc, so, se, out = convert(d)
if rc != 0:
    case("qwen3:head_dim+tied", False, se.strip())
else:
    kv, tensors = kv_of(out)
    ok = (kv.get("qwen3.attention.key_length") == 16 and kv.get("qwen3.rope.dimension_count") == 16
          and kv.get("qwen3.rope.freq_base") == 1e6 and "output.weight" not in tensors)
    case("qwen3:head_dim+tied", ok, str({k: v for k, v in kv.items() if k.startswith("qwen3.")}))

# 3. untied without lm_head: refused
d = model_dir("untied", {}, lm_head=False)
rc, so, se, out = convert(d)
case("untied-no-lm_head", rc == 3 and "tie_word_embeddings" in se and not os.path.exists(out), "exit %d: %s" % (rc, se))

# 4. LLaMA 3.x rope scaling: rope_freqs.weight = HF inv_freq / llama3 inv_freq
rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192}
d = model_dir("llama3", {"rope_scaling": rs, "rope_theta": 500000.0, "head_dim": 16})
rc, so, se, out = convert(d)
if rc != 0:
    case("llama3:rope_freqs", False, se.strip())
else:
    kv, tensors = kv_of(out)
    dim = 16
    inv = 1.0 / (500000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    wl = 2 * math.pi / inv
    low_wl, high_wl = 8192 / 1.0, 8192 / 4.0
    scaled = np.where(wl > low_wl, inv / 8.0, inv)
    smooth = (8192 / wl - 1.0) / (4.0 - 1.0)
    mid = ~(wl < high_wl) & ~(wl > low_wl)
    scaled = np.where(mid, (1 - smooth) * scaled / 8.0 + smooth * scaled, scaled)
    want_f = (inv / scaled).astype(np.float32)
    ne, tname, raw = tensors.get("rope_freqs.weight", ([0], "F32", b""))
    got = decode(ne, tname, raw) if raw else np.zeros(0)
    ok = tname == "F32" and got.shape == want_f.shape and np.allclose(got, want_f, rtol=2e-7, atol=0) \
        and len(set(np.round(want_f, 3))) >= 3 and "llama.rope.scaling.type" not in kv
    case("llama3:rope_freqs", ok, "got %s want %s" % (got, want_f))

# 5. linear and yarn scaling keys
d = model_dir("linear", {"rope_scaling": {"type": "linear", "factor": 4.0}})
rc, so, se, out = convert(d)
kv = kv_of(out)[0] if rc == 0 else {}
case("linear-scaling", kv.get("llama.rope.scaling.type") == "linear" and kv.get("llama.rope.scaling.factor") == 4.0,
     se or str(kv))
d = model_dir("yarn", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}})
rc, so, se, out = convert(d)
kv = kv_of(out)[0] if rc == 0 else {}
case("yarn-scaling", kv.get("llama.rope.scaling.type") == "yarn" and kv.get("llama.rope.scaling.factor") == 4.0
     and kv.get("llama.rope.scaling.original_context_length") == 64, se or str(kv))

# 6. gemma2 specifics
g2 = {"model_type": "gemma2", "head_dim": 8, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
      "sliding_window": 64, "query_pre_attn_scalar": 8, "hidden_activation": "gelu_pytorch_tanh",
      "hidden_act": None, "tie_word_embeddings": True}
extra = {}
for i in range(LAYERS):
    extra["model.layers.%d.pre_feedforward_layernorm.weight" % i] = (HIDDEN,)
    extra["model.layers.%d.post_feedforward_layernorm.weight" % i] = (HIDDEN,)
d = model_dir("gemma2", g2, lm_head=False, extra=extra)
rc, so, se, out = convert(d)
kv = kv_of(out)[0] if rc == 0 else {}
case("gemma2:keys", kv.get("gemma2.attn_logit_softcapping") == 50.0 and kv.get("gemma2.final_logit_softcapping") == 30.0
     and kv.get("gemma2.attention.sliding_window") == 64 and kv.get("gemma2.attention.key_length") == 8,
     se or str(kv))

# 7. refused by name: math llama.cpp's architecture cannot express
refusals = [("experts", {"num_local_experts": 8, "num_experts_per_tok": 2}, "num_local_experts"),
            ("longrope", {"rope_scaling": {"type": "longrope", "long_factor": [1.0] * 4, "short_factor": [1.0] * 4}},
             "longrope"),
            ("dynamic", {"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "dynamic"),
            ("act", {"hidden_act": "gelu"}, "hidden_act"),
            ("partial-rope", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
            ("mistral-swa", {"model_type": "mistral", "sliding_window": 64}, "sliding_window"),
            ("qwen2-swa", {"model_type": "qwen2", "use_sliding_window": True}, "use_sliding_window"),
            ("yarn-tuned", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "beta_fast": 16,
                                             "original_max_position_embeddings": 64}}, "beta_fast"),
            ("llama3-on-qwen2", {"model_type": "qwen2", "rope_scaling": rs}, "llama3")]
for name, cfg, word in refusals:
    d = model_dir("refuse-" + name, cfg)
    rc, so, se, out = convert(d)
    case("refuse:" + name, rc == 3 and word in se and not os.path.exists(out), "exit %d: %s" % (rc, se.strip()))
d = model_dir("contradiction", {"num_hidden_layers": 3})
rc, so, se, out = convert(d)
case("refuse:layers-differ", rc == 3 and "num_hidden_layers" in se, "exit %d: %s" % (rc, se.strip()))
d = model_dir("no-eps", {"rms_norm_eps": None})
rc, so, se, out = convert(d)
case("refuse:no-rms_norm_eps", rc == 3 and "rms_norm_eps" in se, "exit %d: %s" % (rc, se.strip()))

# 8. --vocab: tokenizer keys copied, nothing else; the count must match
vocab = os.path.join(tmp, "vocab.gguf")
toks = ["<unk>", "<s>", "</s>"] + ["t%d" % i for i in range(VOCAB - 3)]
write_gguf(vocab, [("general.architecture", "str", "llama"), ("llama.context_length", "u32", 4096),
                   ("tokenizer.ggml.model", "str", "llama"), ("tokenizer.ggml.tokens", "arr:str", toks),
                   ("tokenizer.ggml.scores", "arr:f32", [0.0] * VOCAB),
                   ("tokenizer.ggml.token_type", "arr:i32", [1] * VOCAB),
                   ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.add_bos_token", "bool", True)], [])
d = os.path.join(tmp, "llama")
rc, so, se, out = convert(d, "--vocab", vocab)
kv = kv_of(out)[0] if rc == 0 else {}
ok = rc == 0 and kv.get("tokenizer.ggml.tokens") == toks and kv.get("tokenizer.ggml.bos_token_id") == 1 \
    and kv.get("tokenizer.ggml.add_bos_token") is True and kv.get("llama.context_length") == 256 \
    and "tokenizer: 6 keys" in so
case("vocab:copied", ok, se or so)
small = os.path.join(tmp, "small.gguf")
write_gguf(small, [("tokenizer.ggml.model", "str", "llama"), ("tokenizer.ggml.tokens", "arr:str", toks[:10])], [])
out = os.path.join(tmp, "small-vocab.gguf")
rc, so, se = run("convert", os.path.join(d, "model.safetensors"), "-o", out, "--base", d, "--vocab", small)
case("vocab:count-differs", rc == 3 and "10 tokens" in se and not os.path.exists(out), "exit %d: %s" % (rc, se.strip()))
rc, so, se = run("convert", os.path.join(d, "model.safetensors"), "-o", os.path.join(tmp, "x.gguf"),
                 "--base", os.path.join(d, "m.gguf"))
case("gguf-base:no-hparams", rc == 0 and "architecture keys only" in so and "no tokenizer" in so, se or so)
sys.exit(checks.status())
PY
