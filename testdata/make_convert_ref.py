#!/usr/bin/python3
"""Reference data for tests/test_convert.sh (`loratool convert`, PEFT <->
GGUF LoRA adapters), computed with numpy independently of the C code.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_convert_ref.py build/testdata/convert

For every case OUT_DIR/<case>/ holds the inputs (a base model's config.json,
the same config in a directory, a tiny GGUF model, PEFT adapter directories
written with testdata/stwrite.py, GGUF LoRA adapters written by the small
GGUF writer below), ref.npz (expected tensors) and case.json (command lines,
expected exit codes, stderr words and what the output must hold).
OUT_DIR/cases.json lists every case.

Facts used (DESIGN.md sec. 3, llama.cpp convert_lora_to_gguf.py,
convert_hf_to_gguf.py, src/llama-adapter.cpp):
  - GGUF LoRA: KV general.architecture, general.type = "adapter",
    adapter.type = "lora", adapter.lora.alpha (f32); tensors
    "<gguf base name>.lora_a" ne = [in, r] (PEFT A bytes as-is) and
    ".lora_b" ne = [r, out] (PEFT B bytes as-is); token embeddings:
    token_embd.weight.lora_a = A^T (ne [r, vocab]), lora_b = B (ne [r, dim]).
  - llama.cpp applies s = alpha / r (r = lora_b.ne[0]; alpha 0: s = 1).
  - arch llama (also for HF model_type mistral): lora_B rows of q_proj /
    k_proj are permuted, new[h*hd + 2t + s] = old[h*hd + s*hd/2 + t], with
    n_head for q and n_head_kv for k; qwen2 does not permute.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402

SEED = 20250917

# tiny llama-like model: hidden 64, 4 heads of 16, 2 kv heads, ffn 80, vocab 100
HIDDEN, N_HEAD, N_KV, FFN, VOCAB, LAYERS = 64, 4, 2, 80, 100, 2
HD = HIDDEN // N_HEAD

# module suffix -> (gguf suffix, in, out)
LINEAR = {
    "self_attn.q_proj": ("attn_q", HIDDEN, N_HEAD * HD),
    "self_attn.k_proj": ("attn_k", HIDDEN, N_KV * HD),
    "self_attn.v_proj": ("attn_v", HIDDEN, N_KV * HD),
    "self_attn.o_proj": ("attn_output", N_HEAD * HD, HIDDEN),
    "mlp.gate_proj": ("ffn_gate", HIDDEN, FFN),
    "mlp.up_proj": ("ffn_up", HIDDEN, FFN),
    "mlp.down_proj": ("ffn_down", FFN, HIDDEN),
}

# ------------------------------------------------------------ numerics


def permute_rows(m, n_head):
    """llama.cpp's Q/K row order from HF order (index formula of DESIGN sec. 3)."""
    rows = m.shape[0]
    hd = rows // n_head
    out = np.empty_like(m)
    for h in range(n_head):
        for t in range(hd // 2):
            for s in range(2):
                out[h * hd + 2 * t + s] = m[h * hd + s * (hd // 2) + t]
    # the same as convert_hf_to_gguf.py's reshape/swapaxes form
    alt = m.reshape(n_head, 2, hd // 2, *m.shape[1:]).swapaxes(1, 2).reshape(m.shape)
    assert np.array_equal(out, alt)
    return out


def peft_scale(alpha, r, rslora):
    return alpha / np.sqrt(r) if rslora else alpha / r


# ------------------------------------------------------------ GGUF writer


GGUF_TYPES = {"F32": 0, "F16": 1}
KV_U32, KV_F32, KV_STR = 4, 6, 8


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, kvs, tensors, align=32):
    """kvs: list of (key, type, value); tensors: list of (name, type, array)
    with array shape [.., ne1, ne0] (row-major: ne0 fastest)."""
    out = bytearray(b"GGUF" + struct.pack("<I", 3) + struct.pack("<qq", len(tensors), len(kvs)))
    for key, typ, value in kvs:
        out += gguf_string(key) + struct.pack("<I", typ)
        if typ == KV_STR:
            out += gguf_string(value)
        elif typ == KV_U32:
            out += struct.pack("<I", value)
        elif typ == KV_F32:
            out += struct.pack("<f", value)
        else:
            raise ValueError(typ)
    blobs, offset = [], 0
    for name, typ, arr in tensors:
        dt = {"F32": "<f4", "F16": "<f2"}[typ]
        raw = np.ascontiguousarray(arr, dtype=dt).tobytes()
        ne = list(reversed(arr.shape))
        out += gguf_string(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
        out += struct.pack("<IQ", GGUF_TYPES[typ], offset)
        pad = (align - len(raw) % align) % align
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    out += b"\0" * ((align - len(out) % align) % align)
    with open(path, "wb") as f:
        f.write(bytes(out))
        for b in blobs:
            f.write(b)


# ------------------------------------------------------------ fixtures


class Case:
    def __init__(self, root, name):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.runs = []
        self.arrays = {}

    def ref(self, key, arr):
        self.arrays[key] = np.ascontiguousarray(arr)
        return key

    def run(self, args, rc=0, output=None, stderr_has=(), **check):
        self.runs.append({"args": args, "rc": rc, "output": output, "stderr_has": list(stderr_has),
                          "check": check})
        return len(self.runs) - 1

    def save(self):
        np.savez(os.path.join(self.dir, "ref.npz"), **self.arrays)
        with open(os.path.join(self.dir, "case.json"), "w") as f:
            json.dump({"name": self.name, "runs": self.runs}, f, indent=1)


def write_base(case, model_type="llama", n_head=N_HEAD, n_kv=N_KV):
    """base/config.json (directory form) and base.gguf (GGUF model form)."""
    os.makedirs(os.path.join(case.dir, "base"))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": model_type, "hidden_size": HIDDEN,
           "intermediate_size": FFN, "num_attention_heads": n_head, "num_key_value_heads": n_kv,
           "num_hidden_layers": LAYERS, "vocab_size": VOCAB, "rms_norm_eps": 1e-5,
           "torch_dtype": "float32"}
    with open(os.path.join(case.dir, "base", "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    arch = "llama" if model_type in ("llama", "mistral") else model_type
    write_gguf(os.path.join(case.dir, "base.gguf"),
               [("general.architecture", KV_STR, arch), ("general.name", KV_STR, "tiny"),
                ("%s.block_count" % arch, KV_U32, LAYERS),
                ("%s.embedding_length" % arch, KV_U32, HIDDEN),
                ("%s.attention.head_count" % arch, KV_U32, n_head),
                ("%s.attention.head_count_kv" % arch, KV_U32, n_kv)],
               [("output_norm.weight", "F32", np.ones(HIDDEN, dtype=np.float32)),
                ("token_embd.weight", "F32", np.zeros((VOCAB, HIDDEN), dtype=np.float32))])


def write_adapter(case, sub, rng, modules, r=8, alpha=16.0, extra_cfg=None, extra_tensors=(),
                  rank_of=None, embedding=False, target_modules=None):
    """A PEFT adapter directory CASE/SUB over MODULES (list of full module
    names); returns {module: (A, B)} (float32)."""
    d = os.path.join(case.dir, sub)
    os.makedirs(d)
    factors, tensors = {}, []
    for mod in modules:
        rank = rank_of(mod) if rank_of else r
        if mod.endswith("embed_tokens"):
            a = (rng.standard_normal((rank, VOCAB)) * 0.3).astype(np.float32)
            b = (rng.standard_normal((HIDDEN, rank)) * 0.1).astype(np.float32)
            tensors += [("base_model.model.%s.lora_embedding_A" % mod, a),
                        ("base_model.model.%s.lora_embedding_B" % mod, b)]
        else:
            suffix = mod.split(".", 3)[3] if mod.startswith("model.layers.") else mod
            _, n_in, n_out = LINEAR.get(suffix, (None, HIDDEN, HIDDEN))
            a = (rng.standard_normal((rank, n_in)) * 0.2).astype(np.float32)
            b = (rng.standard_normal((n_out, rank)) * 0.05).astype(np.float32)
            tensors += [("base_model.model.%s.lora_A.weight" % mod, a),
                        ("base_model.model.%s.lora_B.weight" % mod, b)]
        factors[mod] = (a, b)
    tensors += list(extra_tensors)
    if target_modules is None:
        target_modules = sorted({m.rsplit(".", 1)[1] for m in modules})
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama",
           "r": r, "lora_alpha": alpha, "target_modules": target_modules, "lora_dropout": 0.0,
           "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
           "modules_to_save": None, "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True}
    cfg.update(extra_cfg or {})
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    stwrite.write(os.path.join(d, "adapter_model.safetensors"), tensors, {"format": "pt"})
    return factors


def layer_modules(suffixes=tuple(LINEAR)):
    return ["model.layers.%d.%s" % (layer, s) for layer in range(LAYERS) for s in suffixes]


def gguf_base_name(mod):
    if mod == "model.embed_tokens":
        return "token_embd.weight"
    layer, suffix = mod.split(".")[2], mod.split(".", 3)[3]
    return "blk.%s.%s.weight" % (layer, LINEAR[suffix][0])


def expected_gguf(case, factors, arch, permute, mode="exact", alpha=16.0, q8=False):
    """Expected tensors of a GGUF conversion where every module's scale is
    alpha / r (nothing folded): A and B as-is, q/k B rows permuted."""
    tensors = {}
    for mod, (a, b) in factors.items():
        base = gguf_base_name(mod)
        if mod.endswith("embed_tokens"):
            ga = a.T.copy()              # [vocab, r]: ne [r, vocab]
        else:
            ga = a                       # [r, in]: ne [in, r]
        gb = b
        if permute and (mod.endswith("q_proj") or mod.endswith("k_proj")):
            gb = permute_rows(b, N_HEAD if mod.endswith("q_proj") else N_KV)
        for suffix, arr in (("lora_a", ga), ("lora_b", gb)):
            name = "%s.%s" % (base, suffix)
            ne = [arr.shape[1], arr.shape[0]]
            if mode == "q8_0":
                m, typ = ("q8_0", "Q8_0") if ne[0] % 32 == 0 else ("f16", "F16")
            else:
                m, typ = mode, {"exact": "F32", "f16": "F16", "bf16": "BF16"}[mode]
            tensors[name] = {"ne": ne, "type": typ, "mode": m,
                             "ref": case.ref("%s/%s" % (name, mode), arr)}
    kv = {"general.architecture": ["str", arch], "general.type": ["str", "adapter"],
          "adapter.type": ["str", "lora"], "adapter.lora.alpha": ["f32", alpha]}
    return {"kv": kv, "tensors": tensors}


def expected_deltas(case, factors, scales, permute):
    """For folded scales: the effective delta of each module must equal
    PEFT's scale * B @ A."""
    deltas = []
    for mod, (a, b) in factors.items():
        base = gguf_base_name(mod)
        heads = 0
        if permute and (mod.endswith("q_proj") or mod.endswith("k_proj")):
            heads = N_HEAD if mod.endswith("q_proj") else N_KV
        deltas.append({"module": mod, "a": base + ".lora_a", "b": base + ".lora_b", "scale": float(scales[mod]),
                       "perm_heads": heads, "embedding": mod.endswith("embed_tokens"),
                       "A": case.ref(mod + "/A", a), "B": case.ref(mod + "/B", b)})
    return deltas


def expected_peft(case, factors, scales, ranks):
    tensors = {}
    for mod, (a, b) in factors.items():
        if mod.endswith("embed_tokens"):
            ka, kb = "base_model.model.%s.lora_embedding_A" % mod, "base_model.model.%s.lora_embedding_B" % mod
        else:
            ka, kb = "base_model.model.%s.lora_A.weight" % mod, "base_model.model.%s.lora_B.weight" % mod
        tensors[ka] = case.ref(ka, a)
        tensors[kb] = case.ref(kb, b)
    modules = {mod: [int(ranks[mod]), float(scales[mod])] for mod in factors}
    return {"tensors": tensors, "modules": modules}


def gguf_args(case_in="{CASE}/adapter", base="{CASE}/base/config.json", outtype=None):
    args = ["convert", case_in, "-o", "{OUT}/out.gguf", "--base", base]
    if outtype:
        args += ["--outtype", outtype]
    return args


# ------------------------------------------------------------ cases


def case_llama(root, rng):
    c = Case(root, "llama_peft_to_gguf")
    write_base(c)
    f = write_adapter(c, "adapter", rng, layer_modules())
    exp = expected_gguf(c, f, "llama", True)
    c.run(gguf_args(), output="gguf", gguf=exp)
    # base as a directory and as a GGUF model: the same bytes
    c.run(gguf_args(base="{CASE}/base"), output="gguf", same_as=0)
    c.run(gguf_args(base="{CASE}/base.gguf"), output="gguf", same_as=0)
    c.save()
    # the same adapter, other output types
    for outtype in ("f16", "bf16", "q8_0"):
        c = Case(root, "llama_outtype_" + outtype)
        write_base(c)
        f = write_adapter(c, "adapter", np.random.default_rng(SEED + 1), layer_modules())
        c.run(gguf_args(outtype=outtype), output="gguf",
              gguf=expected_gguf(c, f, "llama", True, mode=outtype))
        if outtype == "q8_0":
            # back to PEFT: the dequantized factors, B rows un-permuted
            c.run(["convert", "{O0}/out.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base"],
                  output="peft", peft={"from_gguf": "{O0}/out.gguf", "arch": "llama",
                                       "heads": [N_HEAD, N_KV],
                                       "modules": {m: [8, 2.0] for m in f}})
        c.save()


def case_roundtrip(root, rng):
    c = Case(root, "llama_roundtrip")
    write_base(c)
    f = write_adapter(c, "adapter", rng, layer_modules(), r=8, alpha=16.0)
    c.run(gguf_args(), output="gguf", gguf=expected_gguf(c, f, "llama", True))
    c.run(["convert", "{O0}/out.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base/config.json"],
          output="peft", peft=expected_peft(c, f, {m: 2.0 for m in f}, {m: 8 for m in f}))
    c.save()


def case_qwen2(root, rng):
    c = Case(root, "qwen2_no_permutation")
    write_base(c, model_type="qwen2")
    f = write_adapter(c, "adapter", rng, layer_modules())
    c.run(gguf_args(), output="gguf", gguf=expected_gguf(c, f, "qwen2", False))
    c.run(gguf_args(base="{CASE}/base.gguf"), output="gguf", same_as=0)
    c.run(["convert", "{O0}/out.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base"],
          output="peft", peft=expected_peft(c, f, {m: 2.0 for m in f}, {m: 8 for m in f}))
    c.save()


def case_mistral(root, rng):
    c = Case(root, "mistral_is_llama")
    write_base(c, model_type="mistral")
    f = write_adapter(c, "adapter", rng, layer_modules(("self_attn.q_proj", "self_attn.k_proj",
                                                          "self_attn.v_proj")))
    c.run(gguf_args(), output="gguf", gguf=expected_gguf(c, f, "llama", True))
    c.save()


def case_rslora(root, rng):
    c = Case(root, "rslora_scale_folded")
    write_base(c)
    f = write_adapter(c, "adapter", rng, layer_modules(), r=8, alpha=16.0, extra_cfg={"use_rslora": True})
    scales = {m: peft_scale(16.0, 8, True) for m in f}
    c.run(gguf_args(), output="gguf", gguf={"kv": {"general.architecture": ["str", "llama"],
                                                   "general.type": ["str", "adapter"],
                                                   "adapter.type": ["str", "lora"],
                                                   "adapter.lora.alpha": ["f32", None]},
                                            "tensors": shapes_only(f, True),
                                            "deltas": expected_deltas(c, f, scales, True)})
    c.save()


def shapes_only(factors, permute_unused):
    tensors = {}
    for mod, (a, b) in factors.items():
        base = gguf_base_name(mod)
        if mod.endswith("embed_tokens"):
            tensors[base + ".lora_a"] = {"ne": [a.shape[0], a.shape[1]], "type": "F32"}
        else:
            tensors[base + ".lora_a"] = {"ne": [a.shape[1], a.shape[0]], "type": "F32"}
        tensors[base + ".lora_b"] = {"ne": [b.shape[1], b.shape[0]], "type": "F32"}
    return tensors


def case_alpha_pattern(root, rng):
    c = Case(root, "alpha_rank_pattern_folded")
    write_base(c)
    mods = layer_modules()
    # PEFT: first key k with re.match(rf"(.*\.)?({k})$", module) wins
    alpha_pattern = {"q_proj": 32.0, "model.layers.1.mlp.down_proj": 4.0, "v_proj": 3.0}
    rank_pattern = {"v_proj": 4, "layers.0.mlp.up_proj": 16}

    def rank_of(m):
        if m.endswith("v_proj"):
            return 4
        if m == "model.layers.0.mlp.up_proj":
            return 16
        return 8

    def alpha_of(m):
        if m.endswith("q_proj"):
            return 32.0
        if m == "model.layers.1.mlp.down_proj":
            return 4.0
        if m.endswith("v_proj"):
            return 3.0
        return 16.0

    f = write_adapter(c, "adapter", rng, mods, r=8, alpha=16.0, rank_of=rank_of,
                      extra_cfg={"alpha_pattern": alpha_pattern, "rank_pattern": rank_pattern})
    scales = {m: peft_scale(alpha_of(m), rank_of(m), False) for m in f}
    c.run(gguf_args(), output="gguf", gguf={"kv": {"general.architecture": ["str", "llama"],
                                                   "adapter.lora.alpha": ["f32", None]},
                                            "tensors": shapes_only(f, True),
                                            "deltas": expected_deltas(c, f, scales, True)})
    # back to PEFT: the same effective scale per module
    c.run(["convert", "{O0}/out.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base"],
          output="peft", peft={"from_gguf": "{O0}/out.gguf", "arch": "llama", "heads": [N_HEAD, N_KV],
                               "modules": {m: [rank_of(m), None] for m in f},
                               "deltas": expected_deltas(c, f, scales, False)})
    c.save()


def case_embedding(root, rng):
    c = Case(root, "token_embedding")
    write_base(c)
    mods = ["model.embed_tokens", "model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]
    f = write_adapter(c, "adapter", rng, mods, r=8, alpha=8.0)
    c.run(gguf_args(), output="gguf", gguf=expected_gguf(c, f, "llama", True, alpha=8.0))
    c.run(["convert", "{O0}/out.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base"],
          output="peft", peft=expected_peft(c, f, {m: 1.0 for m in f}, {m: 8 for m in f}))
    c.save()


def case_gguf_to_peft(root, rng):
    """A GGUF LoRA written by our own writer (lora_b partly F16) to PEFT."""
    for alpha, name in ((16.0, "gguf_to_peft"), (0.0, "gguf_to_peft_alpha0")):
        c = Case(root, name)
        write_base(c)
        mods = ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.o_proj"]
        factors, tensors = {}, []
        for mod in mods:
            suffix = mod.split(".", 3)[3]
            _, n_in, n_out = LINEAR[suffix]
            a = (rng.standard_normal((8, n_in)) * 0.2).astype(np.float32)
            b = (rng.standard_normal((n_out, 8)) * 0.05).astype(np.float32)
            btype = "F16" if suffix == "self_attn.k_proj" else "F32"
            if btype == "F16":
                b = b.astype(np.float16).astype(np.float32)
            gb = b
            if suffix in ("self_attn.q_proj", "self_attn.k_proj"):
                gb = permute_rows(b, N_HEAD if suffix == "self_attn.q_proj" else N_KV)
            base = gguf_base_name(mod)
            tensors += [(base + ".lora_a", "F32", a), (base + ".lora_b", btype, gb)]
            factors[mod] = (a, b)
        write_gguf(os.path.join(c.dir, "adapter.gguf"),
                   [("general.architecture", KV_STR, "llama"), ("general.type", KV_STR, "adapter"),
                    ("adapter.type", KV_STR, "lora"), ("adapter.lora.alpha", KV_F32, alpha)],
                   tensors)
        scale = alpha / 8 if alpha > 0 else 1.0
        c.run(["convert", "{CASE}/adapter.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base/config.json"],
              output="peft", peft=expected_peft(c, factors, {m: scale for m in factors}, {m: 8 for m in factors}))
        c.save()


def case_adalora(root, rng):
    """AdaLoRA (lora_A [r, in], lora_E [r, 1], lora_B [out, r], no .weight):
    delta = B @ (A * E) * lora_alpha / (init_r + 1e-5) (PEFT tuners/adalora),
    folded so that llama.cpp's alpha / r gives it."""
    c = Case(root, "adalora_folded")
    write_base(c)
    d = os.path.join(c.dir, "adapter")
    os.makedirs(d)
    factors, scales, tensors = {}, {}, []
    for mod in ("model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"):
        _, n_in, n_out = LINEAR[mod.split(".", 3)[3]]
        a = (rng.standard_normal((6, n_in)) * 0.2).astype(np.float32)
        e = rng.standard_normal((6, 1)).astype(np.float32)
        b = (rng.standard_normal((n_out, 6)) * 0.05).astype(np.float32)
        tensors += [("base_model.model.%s.lora_A" % mod, a), ("base_model.model.%s.lora_E" % mod, e),
                    ("base_model.model.%s.lora_B" % mod, b)]
        factors[mod] = ((a.astype(np.float64) * e).astype(np.float32), b)
        scales[mod] = 32.0 / (12 + 1e-5)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "ADALORA", "task_type": "CAUSAL_LM", "r": 8, "init_r": 12, "target_r": 6,
                   "lora_alpha": 32, "target_modules": ["q_proj", "down_proj"], "rank_pattern": None}, f)
    stwrite.write(os.path.join(d, "adapter_model.safetensors"), tensors, {"format": "pt"})
    shapes = shapes_only(factors, True)
    c.run(gguf_args(), output="gguf", gguf={"kv": {"general.architecture": ["str", "llama"],
                                                   "adapter.lora.alpha": ["f32", None]},
                                            "tensors": shapes,
                                            "deltas": expected_deltas(c, factors, scales, True)})
    c.save()


def case_bf16_input(root, rng):
    """A PEFT adapter saved in BF16: the GGUF F32 factors are its exact values."""
    c = Case(root, "bf16_peft_input")
    write_base(c)
    d = os.path.join(c.dir, "adapter")
    os.makedirs(d)
    factors, tensors = {}, []
    for mod in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj", "model.layers.1.mlp.up_proj"):
        _, n_in, n_out = LINEAR[mod.split(".", 3)[3]]
        a = (rng.standard_normal((8, n_in)) * 0.2).astype(np.float32)
        b = (rng.standard_normal((n_out, 8)) * 0.05).astype(np.float32)
        a = (stwrite.bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
        b = (stwrite.bf16_bits(b).astype(np.uint32) << 16).view(np.float32)
        tensors += [stwrite.bf16("base_model.model.%s.lora_A.weight" % mod, a),
                    stwrite.bf16("base_model.model.%s.lora_B.weight" % mod, b)]
        factors[mod] = (a, b)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "up_proj"]}, f)
    stwrite.write(os.path.join(d, "adapter_model.safetensors"), tensors, {"format": "pt"})
    c.run(gguf_args(), output="gguf", gguf=expected_gguf(c, factors, "llama", True))
    c.save()


def case_refusals(root, rng):
    q = ["model.layers.0.self_attn.q_proj"]
    # DoRA
    c = Case(root, "refuse_dora")
    write_base(c)
    write_adapter(c, "adapter", rng, q, extra_cfg={"use_dora": True}, extra_tensors=[
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
         np.ones(HIDDEN, dtype=np.float32))])
    c.run(gguf_args(), rc=3, stderr_has=["DoRA"])
    c.save()
    # lora_bias
    c = Case(root, "refuse_lora_bias")
    write_base(c)
    write_adapter(c, "adapter", rng, q, extra_cfg={"lora_bias": True}, extra_tensors=[
        ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
         np.full(HIDDEN, 0.01, dtype=np.float32))])
    c.run(gguf_args(), rc=3, stderr_has=["bias"])
    c.save()
    # modules_to_save: a full replacement tensor
    c = Case(root, "refuse_modules_to_save")
    write_base(c)
    write_adapter(c, "adapter", rng, q, extra_cfg={"modules_to_save": ["lm_head"]}, extra_tensors=[
        ("base_model.model.lm_head.weight", np.zeros((VOCAB, HIDDEN), dtype=np.float32))])
    c.run(gguf_args(), rc=3, stderr_has=["modules_to_save"])
    c.save()
    # model type without a name map
    c = Case(root, "refuse_unknown_model_type")
    write_base(c)
    with open(os.path.join(c.dir, "base", "config.json")) as fh:
        cfg = json.load(fh)
    cfg["model_type"] = "gpt2"
    with open(os.path.join(c.dir, "base", "config.json"), "w") as fh:
        json.dump(cfg, fh)
    write_adapter(c, "adapter", rng, q)
    c.run(gguf_args(), rc=3, stderr_has=["gpt2"])
    c.save()
    # module outside the name map
    c = Case(root, "refuse_unmapped_module")
    write_base(c)
    write_adapter(c, "adapter", rng, q + ["model.layers.0.mlp.fc1"], target_modules=["q_proj", "fc1"])
    c.run(gguf_args(), rc=3, stderr_has=["fc1"])
    c.save()
    # GGUF -> PEFT on a GGUF model that is not an adapter
    c = Case(root, "refuse_gguf_not_adapter")
    write_base(c)
    c.run(["convert", "{CASE}/base.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base"], rc=3,
          stderr_has=["adapter"])
    c.save()
    # GGUF -> PEFT with a base of another architecture than the adapter's
    # general.architecture: the Q/K un-permutation depends on it (llama.cpp's
    # export-lora refuses such a pair too)
    c = Case(root, "refuse_arch_mismatch")
    write_base(c, model_type="qwen2")
    g = rng.standard_normal((8, HIDDEN)).astype(np.float32)
    write_gguf(os.path.join(c.dir, "adapter.gguf"),
               [("general.architecture", KV_STR, "llama"), ("general.type", KV_STR, "adapter"),
                ("adapter.type", KV_STR, "lora"), ("adapter.lora.alpha", KV_F32, 16.0)],
               [("blk.0.attn_q.weight.lora_a", "F32", g),
                ("blk.0.attn_q.weight.lora_b", "F32", rng.standard_normal((HIDDEN, 8)).astype(np.float32))])
    c.run(["convert", "{CASE}/adapter.gguf", "-o", "{OUT}/peft", "--base", "{CASE}/base"], rc=3,
          stderr_has=["llama", "qwen2"])
    c.save()
    # usage errors
    c = Case(root, "usage_errors")
    write_base(c)
    write_adapter(c, "adapter", rng, q)
    c.run(["convert", "{CASE}/adapter", "-o", "{OUT}/out.gguf"], rc=2, stderr_has=["--base"])
    c.run(gguf_args(outtype="q4_0"), rc=2, stderr_has=["q4_0"])
    c.run(["convert", "{CASE}/adapter", "--base", "{CASE}/base"], rc=2, stderr_has=["-o"])
    c.save()


def main():
    root = sys.argv[1]
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root)
    rng = np.random.default_rng(SEED)
    case_llama(root, rng)
    case_roundtrip(root, rng)
    case_qwen2(root, rng)
    case_mistral(root, rng)
    case_rslora(root, rng)
    case_alpha_pattern(root, rng)
    case_embedding(root, rng)
    case_gguf_to_peft(root, rng)
    case_adalora(root, rng)
    case_bf16_input(root, rng)
    case_refusals(root, rng)
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump(names, f, indent=1)
    print("%d cases in %s" % (len(names), root))


if __name__ == "__main__":
    main()
