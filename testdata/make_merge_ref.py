#!/usr/bin/python3
"""Reference data for tests/test_merge.sh (`loratool merge`), computed with
numpy in float64, independently of the C code.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_merge_ref.py build/testdata/merge

For every case OUT_DIR/<case>/ holds the inputs (base models written with
testdata/stwrite.py, PEFT adapter directories), the expected tensors
(ref/<n>.npz: the float64 reference value `ref`, the expected output bit
pattern `bits`, rounded once from `ref` with round-to-nearest-even, and
`tie`, true where `ref` lies within 1e-6 ulp of a rounding tie and exact
rational arithmetic (fractions) does not show `ref` to be exact), case.json
(command lines, expected exit codes and outputs) and manifest.json (sha256
of every file of the case, so the test sees whether any input changed).
OUT_DIR/cases.json lists every case.

Semantics (huggingface/peft tuners/lora, tuners/adalora, DESIGN.md sec. 4):
  W' = W + sum_i scale_i * s_i * B_i @ A_i,  s = alpha/r (alpha/sqrt(r) with
  use_rslora), alpha/r from alpha_pattern/rank_pattern (first key k, in
  order, with re.match(rf"(.*\\.)?({k})$", module)); fan_in_fan_out (GPT-2
  Conv1D, base [in, out]): W' = W + s (B@A)^T; embeddings (A [r, vocab], B
  [dim, r]): W' = W + s (B@A)^T; DoRA: V = W + s B@A, W' = (m/||V||_row) V;
  lora_bias: bias' = bias + s lora_B.bias; AdaLoRA: delta = B @ (A*E) *
  scaling / (init_r + 1e-5), scaling = lora_alpha if > 0 else init_r (PEFT
  passes init_r as the layer's r); modules_to_save keys replace the base
  tensor (one rounding to the output dtype).
"""

import hashlib
import json
import os
import re
import shutil
import sys
from fractions import Fraction

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402

SEED = 20250301
FLOATS = ("F32", "F16", "BF16", "F64")
# precision (significand bits incl. the implicit one), emin, largest finite
FORMATS = {
    "F32": (24, -126, float(np.finfo(np.float32).max)),
    "F16": (11, -14, 65504.0),
    "BF16": (8, -126, float.fromhex("0x1.fe00000000000p+127")),
}
BITS_DTYPE = {"F32": np.uint32, "F16": np.uint16, "BF16": np.uint16}

# ------------------------------------------------------------- rounding


def round_fmt(x, fmt):
    """float64 -> nearest value of FMT (RNE, subnormals, overflow to Inf),
    as float64: one direct rounding, no detour through float32."""
    x = np.asarray(x, dtype=np.float64)
    p, emin, maxv = FORMATS[fmt]
    _, e = np.frexp(x)  # |x| in [2^(e-1), 2^e)
    qexp = np.maximum(e - p, emin - (p - 1)).astype(np.int64)
    y = np.ldexp(np.rint(np.ldexp(x, -qexp)), qexp)
    return np.where(np.abs(y) > maxv, np.copysign(np.inf, x), y)


def quantum(x, fmt):
    x = np.asarray(x, dtype=np.float64)
    p, emin, _ = FORMATS[fmt]
    _, e = np.frexp(x)
    return np.ldexp(1.0, np.maximum(e - p, emin - (p - 1)).astype(np.int64))


def to_bits(x, fmt):
    y = round_fmt(x, fmt)
    if fmt == "F32":
        return y.astype(np.float32).view(np.uint32)
    if fmt == "F16":
        return y.astype(np.float16).view(np.uint16)
    return (y.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def near_tie(x, fmt):
    t = np.abs(np.asarray(x, dtype=np.float64)) / quantum(x, fmt)
    return np.abs(t - np.floor(t) - 0.5) < 1e-6


def self_test():
    """The reference rounding agrees with numpy's direct casts (f16, f32)
    and with integer RNE on f32 bit patterns (bf16)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.normal(0, 1, 200000) * np.exp2(rng.integers(-30, 20, 200000)),
        np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26,
                  2.0 ** -25 * (1 + 2.0 ** -40), 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11]),
    ])
    with np.errstate(over="ignore"):
        assert np.array_equal(to_bits(x, "F16"), x.astype(np.float16).view(np.uint16))
        assert np.array_equal(to_bits(x, "F32"), x.astype(np.float32).view(np.uint32))
    f = (rng.normal(0, 1, 200000) * np.exp2(rng.integers(-140, 120, 200000))).astype(np.float32)
    f = np.concatenate([f, np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 2.0 ** -133, 2.0 ** -134,
                                     3 * 2.0 ** -135], np.float32)])
    assert np.array_equal(to_bits(f.astype(np.float64), "BF16"), stwrite.bf16_bits(f))
    # a value between two floats32 whose f32 rounding is a bf16 tie: the
    # direct rounding must not see the tie (double rounding would)
    v = 1 + 2.0 ** -8 + 2.0 ** -30
    assert to_bits(np.array([v]), "BF16")[0] == 0x3F81


# ------------------------------------------------------------- writing


def stored(values, dtype):
    """The float64 values a tensor of DTYPE actually holds."""
    v = np.asarray(values, dtype=np.float64)
    if dtype == "F64":
        return v.copy()
    if dtype in FORMATS:
        return round_fmt(v, dtype)
    return v.copy()


def entry(name, values, dtype):
    v = np.asarray(values)
    if dtype == "F32":
        return (name, v.astype(np.float32))
    if dtype == "F16":
        return (name, v.astype(np.float16))
    if dtype == "F64":
        return (name, v.astype(np.float64))
    if dtype == "BF16":
        return (name, "BF16", to_bits(v, "BF16").tobytes(), list(v.shape))
    if dtype == "U8":
        return (name, v.astype(np.uint8))
    if dtype == "I64":
        return (name, v.astype(np.int64))
    raise ValueError(dtype)


class Model:
    """An ordered set of base tensors: name -> (float64 values held, dtype)."""

    def __init__(self):
        self.t = {}

    def add(self, name, values, dtype):
        self.t[name] = (stored(values, dtype), dtype)

    def __getitem__(self, name):
        return self.t[name][0]

    def dtype(self, name):
        return self.t[name][1]

    def entries(self, names=None):
        return [entry(n, self.t[n][0], self.t[n][1]) for n in (names or self.t)]


BASE_META = {"format": "pt", "origin": "loratool merge test"}

H, KV, INTER, VOCAB = 48, 16, 80, 64


def llama(rng, dtype, prefix="model.", layers=2, lm_head=True, qkv_bias=False, mask=False, score=None):
    m = Model()
    m.add(prefix + "embed_tokens.weight", rng.normal(0, 0.05, (VOCAB, H)), dtype)
    for i in range(layers):
        p = "%slayers.%d." % (prefix, i)
        m.add(p + "self_attn.q_proj.weight", rng.normal(0, 0.05, (H, H)), dtype)
        if qkv_bias:
            m.add(p + "self_attn.q_proj.bias", rng.normal(0, 0.05, (H,)), dtype)
        m.add(p + "self_attn.k_proj.weight", rng.normal(0, 0.05, (KV, H)), dtype)
        if qkv_bias:
            m.add(p + "self_attn.k_proj.bias", rng.normal(0, 0.05, (KV,)), dtype)
        m.add(p + "self_attn.v_proj.weight", rng.normal(0, 0.05, (KV, H)), dtype)
        if qkv_bias:
            m.add(p + "self_attn.v_proj.bias", rng.normal(0, 0.05, (KV,)), dtype)
        m.add(p + "self_attn.o_proj.weight", rng.normal(0, 0.05, (H, H)), dtype)
        m.add(p + "mlp.gate_proj.weight", rng.normal(0, 0.05, (INTER, H)), dtype)
        m.add(p + "mlp.up_proj.weight", rng.normal(0, 0.05, (INTER, H)), dtype)
        m.add(p + "mlp.down_proj.weight", rng.normal(0, 0.05, (H, INTER)), dtype)
        m.add(p + "input_layernorm.weight", 1 + rng.normal(0, 0.1, (H,)), dtype)
        m.add(p + "post_attention_layernorm.weight", 1 + rng.normal(0, 0.1, (H,)), dtype)
    if mask:
        m.add(prefix + "layers.0.self_attn.causal_mask", np.tril(np.ones((8, 8))), "U8")
    m.add(prefix + "norm.weight", 1 + rng.normal(0, 0.1, (H,)), dtype)
    if lm_head:
        m.add("lm_head.weight", rng.normal(0, 0.05, (VOCAB, H)), dtype)
    if score:
        m.add("score.weight", rng.normal(0, 0.05, (score, H)), dtype)
    return m


def f32_tie_values():
    """f32 values whose rounding to bf16 / f16 is a tie or lands in the f16
    subnormal range (for the pure-conversion checks)."""
    bits = [
        0x3F808000,  # 1 + 2^-8: bf16 tie, rounds down to even 0x3F80
        0x3F818000,  # 1 + 3*2^-8: bf16 tie, rounds up to even 0x3F82
        0xBF828000,  # negative tie, down to even
        0x3F801000,  # 1 + 2^-11: f16 tie, down to 1.0
        0x3F803000,  # 1 + 3*2^-11: f16 tie, up
        0x33000000,  # 2^-25: f16 half the smallest subnormal: tie to 0
        0x33400000,  # 1.5 * 2^-25: f16 rounds to the smallest subnormal
        0x35C00000,  # 1.4e-6: f16 subnormal
        0x387FC000,  # just below the smallest f16 normal
        0x00000001,  # smallest f32 subnormal: 0 in f16 and in bf16
        0x00018000,  # f32 subnormal, bf16 tie rounds up to even 0x0002
        0x477FE000,  # 65504 = largest f16
        0x477FEFFF,  # just under the f16 overflow threshold: 65504
    ]
    return np.array(bits, dtype=np.uint32).view(np.float32).astype(np.float64)


def lora_config(**kw):
    cfg = {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "test/tiny-llama",
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
        "loftq_config": {}, "lora_alpha": 16, "lora_bias": False, "lora_dropout": 0.05,
        "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
        "peft_type": "LORA", "r": 8, "rank_pattern": {}, "revision": None,
        "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM", "use_dora": False,
        "use_rslora": False,
    }
    cfg.update(kw)
    return cfg


def pattern_value(patterns, name, default):
    for key, value in patterns.items():
        if re.match(r"(.*\.)?(%s)$" % key, name):
            return value
    return default


# ------------------------------------------------------------- cases


class Case:
    def __init__(self, root, name, doc):
        self.name, self.doc = name, doc
        self.dir = os.path.join(root, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "ref"))
        self.runs = []
        self.tensors = None
        self.base_rel = None
        self.n_ref = 0
        self.extra = {}

    def path(self, rel):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write_base(self, model, rel="base.safetensors", meta=BASE_META):
        stwrite.write(self.path(rel), model.entries(), dict(meta))
        self.base_rel = rel

    def write_sharded(self, model, rel, n_shards, meta=BASE_META, side_files=None):
        names = list(model.t)
        per = -(-len(names) // n_shards)
        weight_map, total = {}, 0
        for k in range(n_shards):
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, n_shards)
            part = names[k * per:(k + 1) * per]
            stwrite.write(self.path(os.path.join(rel, fname)), model.entries(part), dict(meta))
            for n in part:
                weight_map[n] = fname
                v, dt = model.t[n]
                total += v.size * {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "U8": 1, "I64": 8}[dt]
        with open(self.path(os.path.join(rel, "model.safetensors.index.json")), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        for fname, text in (side_files or {}).items():
            with open(self.path(os.path.join(rel, fname)), "w") as f:
                f.write(text)
        self.base_rel = rel

    def write_adapter(self, rel, config, tensors):
        """tensors: list of (key, values, dtype); returns key -> values held."""
        with open(self.path(os.path.join(rel, "adapter_config.json")), "w") as f:
            json.dump(config, f, indent=2)
        held, entries = {}, []
        for key, values, dtype in tensors:
            held[key] = stored(values, dtype)
            entries.append(entry(key, values, dtype))
        stwrite.write(self.path(os.path.join(rel, "adapter_model.safetensors")), entries, {"format": "pt"})
        return held

    def expect_from(self, model, out_dtype=None):
        """Start the expected output from BASE: every tensor as it is, in the
        output dtype (float tensors only)."""
        self.tensors, self.base_values = {}, {}
        for name, (v, dt) in model.t.items():
            od = out_dtype if out_dtype and dt in FLOATS else dt
            self.tensors[name] = {"name": name, "values": v.copy(), "in": dt, "out": od, "touched": False,
                                  "tol": 0}
            self.base_values[name] = v
        return self.tensors

    def add_delta(self, name, delta, tol=1, exact=None):
        """EXACT: (coef, P, Q) with delta = coef * P @ Q in exact arithmetic
        (coef a Fraction), or None when the delta is not exactly defined
        by binary inputs (irrational or non-dyadic scale)."""
        t = self.tensors[name]
        assert t["values"].shape == delta.shape, (name, t["values"].shape, delta.shape)
        if not t["touched"]:
            t["terms"] = []
        if exact is None or t.get("terms") is None:
            t["terms"] = None
        else:
            t["terms"].append(exact)
        t["values"] = t["values"] + delta
        t["touched"] = True
        t["tol"] = max(t["tol"], tol)

    def set_values(self, name, values, tol):
        t = self.tensors[name]
        assert t["values"].shape == values.shape
        t["values"] = np.asarray(values, dtype=np.float64)
        t["touched"] = True
        t["terms"] = None
        t["tol"] = max(t["tol"], tol)

    def replace(self, name, values):
        t = self.tensors[name]
        t["values"] = np.asarray(values, dtype=np.float64)
        t["touched"] = True  # converted with one rounding: exact

    def ties(self, t):
        """Elements allowed to differ by one ulp from the rounded float64
        reference: those within 1e-6 ulp of a tie, unless exact rational
        arithmetic shows the float64 value is exact (a true tie, or a value
        every float64 evaluation gets right), which must round exactly."""
        ref = t["values"]
        tie = near_tie(ref, t["out"])
        terms = t.get("terms") if t["touched"] else None
        if not terms or t["tol"] == 0:
            return tie
        base = self.base_values[t["name"]]
        shape2 = ref.shape if ref.ndim == 2 else (ref.size, 1)
        for flat in np.flatnonzero(tie):
            i, j = np.unravel_index(flat, shape2)
            exact = Fraction(float(base.reshape(shape2)[i, j]))
            for coef, p, q in terms:
                exact += coef * sum(Fraction(float(p[i, k])) * Fraction(float(q[k, j])) for k in range(p.shape[1]))
            if exact == Fraction(float(ref.reshape(shape2)[i, j])):
                tie.reshape(-1)[flat] = False
        return tie

    def run(self, args, rc=0, output=None, stderr_has=(), json_skipped=None, same_as=None):
        """ARGS after `loratool merge`, with {CASE} (this case's directory),
        {OUT} (an empty directory for this run) and {WORK} substituted.
        OUTPUT: 'file' ({OUT}/out.safetensors), 'dir' ({OUT}/model, one
        file), 'sharded' ({OUT}/model, shards + index) or None (nothing
        may be left in {OUT}).  STDERR_HAS: strings stderr must contain;
        JSON_SKIPPED: a string one entry of the --json summary's "skipped"
        must contain; SAME_AS: an earlier run whose output files must be
        byte-identical to this one's."""
        self.runs.append({"args": args, "rc": rc, "output": output, "stderr_has": list(stderr_has),
                          "json_skipped": json_skipped, "same_as": same_as})

    def finish(self):
        spec = {"name": self.name, "doc": self.doc, "runs": self.runs, "base": self.base_rel,
                "metadata": BASE_META, "tensors": {}}
        spec.update(self.extra)
        for name, t in (self.tensors or {}).items():
            shape = list(t["values"].shape)
            if not t["touched"] and t["in"] == t["out"]:
                spec["tensors"][name] = {"dtype": t["out"], "shape": shape, "bytes_of_base": True}
                continue
            if t["out"] not in FORMATS:
                raise ValueError("%s: cannot expect values in %s" % (name, t["out"]))
            ref = t["values"]
            assert np.all(np.isfinite(ref)), name
            rel = "ref/%03d.npz" % self.n_ref
            self.n_ref += 1
            np.savez(self.path(rel), ref=ref, bits=to_bits(ref, t["out"]), tie=self.ties(t))
            spec["tensors"][name] = {"dtype": t["out"], "shape": shape, "ref": rel, "tol": t["tol"],
                                     "merged": t["touched"] and t["tol"] > 0}
        with open(self.path("case.json"), "w") as f:
            json.dump(spec, f, indent=1)
        manifest = {}
        for dirpath, _, files in os.walk(self.dir):
            for fn in files:
                p = os.path.join(dirpath, fn)
                with open(p, "rb") as fh:
                    manifest[os.path.relpath(p, self.dir)] = hashlib.sha256(fh.read()).hexdigest()
        with open(os.path.join(self.dir, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        return spec


def factors(rng, out, inn, r, dtype="F32", sa=0.1, sb=0.1):
    a = stored(rng.normal(0, sa, (r, inn)), dtype)
    b = stored(rng.normal(0, sb, (out, r)), dtype)
    return a, b


def exact_coef(weight, scale):
    """weight * scale as a Fraction when both are simple dyadic numbers
    (alpha/r with r a power of two, 0.5, -1), else None."""
    coef = Fraction(weight) * Fraction(scale)
    return coef if coef == coef.limit_denominator(1024) else None


def add_linear(case, tensors, rng, base, module, r, scale, adtype="F32", weight=1.0, target=None,
               fan_in_fan_out=False, tol=1):
    """A LoRA Linear module: appends its keys to TENSORS, adds its delta to
    the expected output (target tensor TARGET, default module.weight)."""
    target = target or module + ".weight"
    w = base[target]
    out, inn = (w.shape[1], w.shape[0]) if fan_in_fan_out else w.shape
    a, b = factors(rng, out, inn, r, adtype)
    tensors.append(("base_model.model.%s.lora_A.weight" % module, a, adtype))
    tensors.append(("base_model.model.%s.lora_B.weight" % module, b, adtype))
    delta = weight * scale * (b @ a)
    coef = exact_coef(weight, scale)
    exact = None if coef is None else (coef, a.T, b.T) if fan_in_fan_out else (coef, b, a)
    case.add_delta(target, delta.T if fan_in_fan_out else delta, tol, exact)
    return a, b


LLAMA_MODULES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def simple_lora_case(root, name, doc, rng, base_dtype, adapter_dtype, out_dtype, modules, r=8, alpha=16,
                     mask=False, ties=False):
    c = Case(root, name, doc)
    base = llama(rng, base_dtype, mask=mask)
    if ties:
        v = base["model.norm.weight"].copy()
        tv = f32_tie_values()
        v[:len(tv)] = tv
        base.add("model.norm.weight", v, base_dtype)
    c.write_base(base)
    c.expect_from(base, out_dtype)
    tensors = []
    for layer in range(2):
        for mod in modules:
            add_linear(c, tensors, rng, base, "model.layers.%d.%s" % (layer, mod), r, alpha / r, adapter_dtype)
    c.write_adapter("adapter", lora_config(r=r, lora_alpha=alpha,
                                           target_modules=sorted({m.split(".")[-1] for m in modules})), tensors)
    args = ["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"]
    if out_dtype:
        args += ["--dtype", {"F32": "f32", "F16": "f16", "BF16": "bf16"}[out_dtype]]
    c.run(args, 0, "file")
    return c.finish()


def case_rslora_patterns(root, rng):
    c = Case(root, "rslora_patterns", "use_rslora, rank_pattern and alpha_pattern (first match in "
             "config order, re.match with the (.*\\.)? prefix), target_modules as a regex string")
    base = llama(rng, "F32")
    c.write_base(base)
    c.expect_from(base)
    alpha_pattern = {"proj": 100.0,  # never matches: the key must match whole name components
                     "layers\\.1\\.self_attn\\.q_proj": 3.5, "q_proj": 5, "mlp\\.up_proj": 24}
    rank_pattern = {"down_proj": 4, "layers\\.0\\.mlp\\.up_proj": 6, "up_proj": 2}
    cfg = lora_config(r=8, lora_alpha=16, use_rslora=True, rank_pattern=rank_pattern,
                      alpha_pattern=alpha_pattern,
                      target_modules="model\\.layers\\.\\d+\\.(self_attn\\.(q|v)_proj|mlp\\.(up|down)_proj)")
    tensors = []
    for layer in range(2):
        for mod in ["self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj", "mlp.down_proj"]:
            name = "model.layers.%d.%s" % (layer, mod)
            r = pattern_value(rank_pattern, name, 8)
            alpha = pattern_value(alpha_pattern, name, 16)
            add_linear(c, tensors, rng, base, name, r, alpha / np.sqrt(r))
    # the patterns resolve as intended (guards this script, not loratool)
    assert pattern_value(alpha_pattern, "model.layers.1.self_attn.q_proj", 0) == 3.5
    assert pattern_value(alpha_pattern, "model.layers.0.self_attn.q_proj", 0) == 5
    assert pattern_value(alpha_pattern, "model.layers.0.self_attn.v_proj", 16) == 16
    assert pattern_value(rank_pattern, "model.layers.0.mlp.up_proj", 0) == 6
    assert pattern_value(rank_pattern, "model.layers.1.mlp.up_proj", 0) == 2
    c.write_adapter("adapter", cfg, tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_gpt2(root, rng):
    c = Case(root, "gpt2_fan_in_fan_out", "GPT-2 Conv1D weights stored [in, out] (c_attn [48, 144], "
             "square attn.c_proj, mlp.c_proj [96, 48]); base saved as GPT2Model (no 'transformer.' "
             "prefix); fan_in_fan_out: W' = W + s (B@A)^T")
    m = Model()
    m.add("wte.weight", rng.normal(0, 0.05, (VOCAB, H)), "F32")
    m.add("wpe.weight", rng.normal(0, 0.05, (32, H)), "F32")
    for i in range(2):
        p = "h.%d." % i
        m.add(p + "ln_1.weight", 1 + rng.normal(0, 0.1, (H,)), "F32")
        m.add(p + "ln_1.bias", rng.normal(0, 0.1, (H,)), "F32")
        m.add(p + "attn.bias", np.tril(np.ones((1, 1, 8, 8))), "F32")
        m.add(p + "attn.c_attn.weight", rng.normal(0, 0.05, (H, 3 * H)), "F32")
        m.add(p + "attn.c_attn.bias", rng.normal(0, 0.05, (3 * H,)), "F32")
        m.add(p + "attn.c_proj.weight", rng.normal(0, 0.05, (H, H)), "F32")
        m.add(p + "attn.c_proj.bias", rng.normal(0, 0.05, (H,)), "F32")
        m.add(p + "mlp.c_fc.weight", rng.normal(0, 0.05, (H, 96)), "F32")
        m.add(p + "mlp.c_fc.bias", rng.normal(0, 0.05, (96,)), "F32")
        m.add(p + "mlp.c_proj.weight", rng.normal(0, 0.05, (96, H)), "F32")
        m.add(p + "mlp.c_proj.bias", rng.normal(0, 0.05, (H,)), "F32")
    m.add("ln_f.weight", 1 + rng.normal(0, 0.1, (H,)), "F32")
    c.write_base(m)
    c.expect_from(m)
    tensors = []
    for i in range(2):
        for mod in ["attn.c_attn", "attn.c_proj", "mlp.c_proj"]:
            add_linear(c, tensors, rng, m, "transformer.h.%d.%s" % (i, mod), 8, 2.0,
                       target="h.%d.%s.weight" % (i, mod), fan_in_fan_out=True)
    cfg = lora_config(r=8, lora_alpha=16, fan_in_fan_out=True, target_modules=["c_attn", "c_proj"],
                      base_model_name_or_path="test/tiny-gpt2")
    c.write_adapter("adapter", cfg, tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_embedding(root, rng):
    c = Case(root, "embedding", "lora_embedding_A [r, vocab] / lora_embedding_B [dim, r] on "
             "embed_tokens (W' = W + s (B@A)^T) plus LoRA on lm_head [vocab, dim] and q_proj")
    base = llama(rng, "F32")
    c.write_base(base)
    c.expect_from(base)
    r, alpha = 8, 32
    s = alpha / r
    ea = rng.normal(0, 0.1, (r, VOCAB))
    eb = rng.normal(0, 0.1, (H, r))
    tensors = [("base_model.model.model.embed_tokens.lora_embedding_A", ea, "F32"),
               ("base_model.model.model.embed_tokens.lora_embedding_B", eb, "F32")]
    ea, eb = stored(ea, "F32"), stored(eb, "F32")
    c.add_delta("model.embed_tokens.weight", s * (eb @ ea).T, exact=(exact_coef(1, s), ea.T, eb.T))
    add_linear(c, tensors, rng, base, "lm_head", r, s)
    add_linear(c, tensors, rng, base, "model.layers.1.self_attn.q_proj", r, s)
    c.write_adapter("adapter", lora_config(r=r, lora_alpha=alpha,
                                           target_modules=["embed_tokens", "lm_head", "q_proj"]), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_dora(root, rng, name, dtype):
    c = Case(root, name, "DoRA on Linear (%s base): V = W + s B@A, W' = (m / ||V||_row) V" % dtype)
    base = llama(rng, dtype)
    c.write_base(base)
    c.expect_from(base)
    r, alpha = 8, 16
    s = alpha / r
    tensors = []
    for layer in range(2):
        for mod in ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]:
            name_ = "model.layers.%d.%s" % (layer, mod)
            w = base[name_ + ".weight"]
            a, b = factors(rng, w.shape[0], w.shape[1], r)
            v = w + s * (b @ a)
            mag = stored(np.linalg.norm(v, axis=1) * (1 + rng.normal(0, 0.2, w.shape[0])), "F32")
            tensors += [("base_model.model.%s.lora_A.weight" % name_, a, "F32"),
                        ("base_model.model.%s.lora_B.weight" % name_, b, "F32"),
                        ("base_model.model.%s.lora_magnitude_vector" % name_, mag, "F32")]
            norm = np.sqrt(np.sum(v * v, axis=1))
            c.set_values(name_ + ".weight", (mag / norm)[:, None] * v, tol=2)
    c.write_adapter("adapter", lora_config(r=r, lora_alpha=alpha, use_dora=True,
                                           target_modules=["q_proj", "v_proj", "down_proj"]), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_lora_bias(root, rng):
    c = Case(root, "lora_bias", "lora_bias: '<module>.bias' += s * lora_B.bias (Qwen2-style q/k/v biases)")
    base = llama(rng, "F32", qkv_bias=True)
    c.write_base(base)
    c.expect_from(base)
    r, alpha = 8, 16
    s = alpha / r
    tensors = []
    for layer in range(2):
        for mod in ["self_attn.q_proj", "self_attn.v_proj"]:
            name = "model.layers.%d.%s" % (layer, mod)
            add_linear(c, tensors, rng, base, name, r, s)
            lb = stored(rng.normal(0, 0.1, (base[name + ".bias"].shape[0],)), "F32")
            tensors.append(("base_model.model.%s.lora_B.bias" % name, lb, "F32"))
            c.add_delta(name + ".bias", s * lb, exact=(exact_coef(1, s), lb.reshape(-1, 1), np.ones((1, 1))))
    c.write_adapter("adapter", lora_config(r=r, lora_alpha=alpha, lora_bias=True), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_adalora(root, rng, name, alpha, r_cfg, with_rank_pattern, doc):
    c = Case(root, name, doc)
    base = llama(rng, "F32")
    c.write_base(base)
    c.expect_from(base)
    init_r = 12
    scaling = alpha if alpha > 0 else init_r
    tensors, rank_pattern = [], {}
    for layer, mod, kept in [(0, "self_attn.q_proj", 5), (0, "self_attn.v_proj", 3),
                             (1, "self_attn.q_proj", 7), (1, "self_attn.v_proj", 12)]:
        name_ = "model.layers.%d.%s" % (layer, mod)
        w = base[name_ + ".weight"]
        a = stored(rng.normal(0, 0.3, (kept, w.shape[1])), "F32")
        e = stored(rng.normal(0, 0.5, (kept, 1)), "F32")
        b = stored(rng.normal(0, 0.3, (w.shape[0], kept)), "F32")
        tensors += [("base_model.model.%s.lora_A" % name_, a, "F32"),
                    ("base_model.model.%s.lora_B" % name_, b, "F32"),
                    ("base_model.model.%s.lora_E" % name_, e, "F32")]
        c.add_delta(name_ + ".weight", b @ (a * e) * scaling / (init_r + 1e-5))
        mask = [True] * kept + [False] * (init_r - kept)
        rng.shuffle(mask)
        rank_pattern[name_ + ".lora_E"] = [bool(x) for x in mask]
    cfg = lora_config(peft_type="ADALORA", r=r_cfg, lora_alpha=alpha, init_r=init_r, target_r=8,
                      tinit=0, tfinal=0, deltaT=1, beta1=0.85, beta2=0.85, orth_reg_weight=0.5,
                      total_step=100, rank_pattern=rank_pattern if with_rank_pattern else None,
                      target_modules=["q_proj", "v_proj"])
    c.write_adapter("adapter", cfg, tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_modules_to_save(root, rng):
    c = Case(root, "modules_to_save", "SEQ_CLS adapter over a bf16 base: base_model.model.score.weight "
             "(f32) replaces score.weight, rounded once to bf16; q_proj LoRA merged")
    base = llama(rng, "BF16", lm_head=False, score=3)
    c.write_base(base)
    c.expect_from(base)
    tensors = []
    add_linear(c, tensors, rng, base, "model.layers.0.self_attn.q_proj", 8, 2.0)
    score = rng.normal(0, 0.05, (3, H))
    score[0, :6] = f32_tie_values()[:6]
    tensors.append(("base_model.model.score.weight", score, "F32"))
    c.replace("score.weight", stored(score, "F32"))
    c.write_adapter("adapter", lora_config(task_type="SEQ_CLS", modules_to_save=["classifier", "score"],
                                           target_modules=["q_proj"]), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_two_adapters(root, rng):
    c = Case(root, "two_adapters", "two adapters 'a:0.5' and 'b:-1' (different r, alpha, rslora), "
             "overlapping on q_proj")
    base = llama(rng, "BF16")
    c.write_base(base)
    c.expect_from(base)
    ta, tb = [], []
    for layer in range(2):
        add_linear(c, ta, rng, base, "model.layers.%d.self_attn.q_proj" % layer, 8, 16 / 8, weight=0.5)
        add_linear(c, ta, rng, base, "model.layers.%d.self_attn.v_proj" % layer, 8, 16 / 8, weight=0.5)
        add_linear(c, tb, rng, base, "model.layers.%d.self_attn.q_proj" % layer, 4, 8 / 2.0, weight=-1.0)
        add_linear(c, tb, rng, base, "model.layers.%d.mlp.down_proj" % layer, 4, 8 / 2.0, weight=-1.0)
    c.write_adapter("a", lora_config(r=8, lora_alpha=16), ta)
    c.write_adapter("b", lora_config(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "down_proj"]),
                    tb)
    c.run(["{CASE}/base.safetensors", "{CASE}/a:0.5", "{CASE}/b:-1", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


SIDE_FILES = {
    "config.json": json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": H,
                               "num_hidden_layers": 2, "torch_dtype": "bfloat16"}, indent=2) + "\n",
    "generation_config.json": "{\"do_sample\": false}\n",
    "tokenizer.json": "{\"version\": \"1.0\", \"model\": {\"type\": \"BPE\"}}\n",
}


def case_sharded(root, rng):
    c = Case(root, "sharded", "bf16 base sharded in 3 files with model.safetensors.index.json, "
             "config.json, tokenizer.json; output is a directory, sharded, with an index and the side "
             "files copied")
    base = llama(rng, "BF16")
    c.write_sharded(base, "model", 3, side_files=SIDE_FILES)
    c.expect_from(base)
    tensors = []
    for layer in range(2):
        for mod in ["self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj", "mlp.down_proj"]:
            add_linear(c, tensors, rng, base, "model.layers.%d.%s" % (layer, mod), 8, 2.0)
    c.write_adapter("adapter", lora_config(target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]), tensors)
    c.extra["side_files"] = sorted(SIDE_FILES)
    c.run(["{CASE}/model", "{CASE}/adapter", "-o", "{OUT}/model"], 0, "sharded")
    c.run(["{CASE}/model", "{CASE}/adapter", "-o", "{OUT}/model", "--threads", "3"], 0, "sharded", same_as=0)
    c.run(["{CASE}/model", "{CASE}/adapter", "-o", "{OUT}/model", "--fsync"], 0, "sharded", same_as=0)
    c.run(["{CASE}/model/model.safetensors.index.json", "{CASE}/adapter", "-o", "{OUT}/model"], 0, "sharded")
    return c.finish()


def case_bare_model(root, rng):
    c = Case(root, "bare_model", "base saved as the bare LlamaModel ('layers.0...', no 'model.' "
             "prefix, no lm_head) under a CAUSAL_LM adapter ('base_model.model.model.layers...')")
    base = llama(rng, "F16", prefix="", lm_head=False)
    c.write_base(base)
    c.expect_from(base)
    tensors = []
    for layer in range(2):
        for mod in ["self_attn.q_proj", "self_attn.k_proj", "mlp.gate_proj"]:
            w_name = "layers.%d.%s.weight" % (layer, mod)
            add_linear(c, tensors, rng, base, "model.layers.%d.%s" % (layer, mod), 8, 2.0, target=w_name)
    c.write_adapter("adapter", lora_config(target_modules=["q_proj", "k_proj", "gate_proj"]), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 0, "file")
    return c.finish()


def case_threads(root, rng):
    c = Case(root, "threads", "larger tensors (up to 1100x512, several row blocks): output bytes "
             "identical for --threads 1, 2, 3 and the default, keep and --dtype bf16")
    m = Model()
    hid, inter = 512, 1100
    m.add("model.embed_tokens.weight", rng.normal(0, 0.05, (VOCAB, hid)), "F32")
    m.add("model.layers.0.self_attn.q_proj.weight", rng.normal(0, 0.05, (hid, hid)), "F32")
    m.add("model.layers.0.mlp.up_proj.weight", rng.normal(0, 0.05, (inter, hid)), "F32")
    m.add("model.layers.0.mlp.down_proj.weight", rng.normal(0, 0.05, (hid, inter)), "F32")
    m.add("model.layers.0.input_layernorm.weight", 1 + rng.normal(0, 0.1, (hid,)), "F32")
    m.add("model.norm.weight", 1 + rng.normal(0, 0.1, (hid,)), "F32")
    c.write_base(m)
    c.expect_from(m)
    tensors = []
    for mod in ["self_attn.q_proj", "mlp.up_proj", "mlp.down_proj"]:
        add_linear(c, tensors, rng, m, "model.layers.0.%s" % mod, 16, 2.0)
    c.write_adapter("adapter", lora_config(r=16, lora_alpha=32, target_modules=["q_proj", "up_proj", "down_proj"]),
                    tensors)
    base_args = ["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"]
    c.run(base_args + ["--threads", "1"], 0, "file")
    c.run(base_args + ["--threads", "2"], 0, "file", same_as=0)
    c.run(base_args + ["--threads", "3"], 0, "file", same_as=0)
    c.run(base_args, 0, "file", same_as=0)
    c.run(base_args + ["--fsync"], 0, "file", same_as=0)
    return c.finish()


def case_threads_bf16(root, rng):
    c = Case(root, "threads_bf16", "--dtype bf16 from an f32 base: bytes identical for --threads 1 and 3")
    m = Model()
    m.add("model.layers.0.mlp.up_proj.weight", rng.normal(0, 0.05, (1100, 512)), "F32")
    m.add("model.layers.0.mlp.down_proj.weight", rng.normal(0, 0.05, (512, 1100)), "F32")
    m.add("model.norm.weight", 1 + rng.normal(0, 0.1, (512,)), "F32")
    c.write_base(m)
    c.expect_from(m, "BF16")
    tensors = []
    add_linear(c, tensors, rng, m, "model.layers.0.mlp.up_proj", 16, 2.0)
    c.write_adapter("adapter", lora_config(r=16, lora_alpha=32, target_modules=["up_proj"]), tensors)
    base_args = ["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors", "--dtype", "bf16"]
    c.run(base_args + ["--threads", "1"], 0, "file")
    c.run(base_args + ["--threads", "3"], 0, "file", same_as=0)
    return c.finish()


def case_dry_run(root, rng):
    c = Case(root, "dry_run", "--dry-run writes nothing (with and without -o)")
    base = llama(rng, "F32")
    c.write_base(base)
    tensors = []
    c.expect_from(base)
    add_linear(c, tensors, rng, base, "model.layers.0.self_attn.q_proj", 8, 2.0)
    c.tensors = None  # no output to check
    c.write_adapter("adapter", lora_config(), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors", "--dry-run"], 0, None)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "--dry-run", "--json"], 0, None)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "--dry-run"], 0, None)
    return c.finish()


# ------------------------------------------------------------- hostile cases


def case_err_shape(root, rng):
    c = Case(root, "err_shape_mismatch", "lora_B [49, r] for a [48, 48] q_proj: exit 3, nothing written")
    base = llama(rng, "F32")
    c.write_base(base)
    a, b = factors(rng, H + 1, H, 8)
    tensors = [("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", a, "F32"),
               ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", b, "F32")]
    c.write_adapter("adapter", lora_config(target_modules=["q_proj"]), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 3, None,
          stderr_has=["q_proj"])
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/model"], 3, None)
    return c.finish()


def case_err_missing(root, rng):
    c = Case(root, "missing_target", "a module whose target the base lacks (layer 7): exit 3; with "
             "--allow-missing exit 0, the skip listed, the rest merged")
    base = llama(rng, "F32")
    c.write_base(base)
    c.expect_from(base)
    tensors = []
    add_linear(c, tensors, rng, base, "model.layers.1.self_attn.q_proj", 8, 2.0)
    a, b = factors(rng, H, H, 8)
    tensors += [("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", a, "F32"),
                ("base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight", b, "F32")]
    c.write_adapter("adapter", lora_config(target_modules=["q_proj"]), tensors)
    args = ["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"]
    c.run(args, 3, None, stderr_has=["layers.7.self_attn.q_proj"])
    c.run(args + ["--allow-missing", "--json"], 0, "file", stderr_has=["layers.7.self_attn.q_proj"],
          json_skipped="layers.7.self_attn.q_proj")
    return c.finish()


def case_err_missing_one_layer(root, rng):
    c = Case(root, "missing_layer_single_layer_base", "a one-layer base and an adapter for layers 0 "
             "and 1: layer 1 must count as missing (exit 3), never land on layer 0 by suffix")
    base = llama(rng, "F32", layers=1)
    c.write_base(base)
    c.expect_from(base)
    tensors = []
    add_linear(c, tensors, rng, base, "model.layers.0.self_attn.q_proj", 8, 2.0)
    a, b = factors(rng, H, H, 8)
    tensors += [("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", a, "F32"),
                ("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", b, "F32")]
    c.write_adapter("adapter", lora_config(target_modules=["q_proj"]), tensors)
    args = ["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"]
    c.run(args, 3, None, stderr_has=["layers.1.self_attn.q_proj"])
    c.run(args + ["--allow-missing"], 0, "file", stderr_has=["layers.1.self_attn.q_proj"])
    return c.finish()


def case_err_nan(root, rng):
    c = Case(root, "err_nan_adapter", "NaN in lora_A / Inf in lora_B: exit 3, nothing written")
    base = llama(rng, "F32")
    c.write_base(base)
    for rel, which, bad in [("nan", 0, np.nan), ("inf", 1, np.inf)]:
        a, b = factors(rng, H, H, 8)
        (a, b)[which][3, 5] = bad
        tensors = [("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", a, "F32"),
                   ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", b, "F32")]
        c.write_adapter(rel, lora_config(target_modules=["q_proj"]), tensors)
        c.run(["{CASE}/base.safetensors", "{CASE}/%s" % rel, "-o", "{OUT}/out.safetensors"], 3, None)
    return c.finish()


def case_err_overflow(root, rng):
    c = Case(root, "err_overflow", "a delta that overflows the output dtype (f16 base; f32 base with "
             "--dtype f16; f32 base past the f32 range; into a sharded output directory): exit 3 naming "
             "the tensor, nothing written")
    base16 = llama(rng, "F16")
    c.write_base(base16, "base16.safetensors")
    base32 = llama(rng, "F32")
    c.write_base(base32, "base32.safetensors")
    c.write_sharded(base32, "model32", 2)
    target = "model.layers.1.mlp.up_proj"
    a = np.full((8, H), 100.0)
    b = np.full((INTER, 8), 100.0)  # s=1: every element 8e4 > 65504
    t = [("base_model.model.%s.lora_A.weight" % target, a, "F32"),
         ("base_model.model.%s.lora_B.weight" % target, b, "F32")]
    c.write_adapter("big", lora_config(r=8, lora_alpha=8, target_modules=["up_proj"]), t)
    a = np.full((8, H), 1e19)
    b = np.full((INTER, 8), 1e20)  # 8e39 > f32 max, finite in float64
    t = [("base_model.model.%s.lora_A.weight" % target, a, "F32"),
         ("base_model.model.%s.lora_B.weight" % target, b, "F32")]
    c.write_adapter("huge", lora_config(r=8, lora_alpha=8, target_modules=["up_proj"]), t)
    w = target + ".weight"
    c.run(["{CASE}/base16.safetensors", "{CASE}/big", "-o", "{OUT}/out.safetensors"], 3, None, stderr_has=[w])
    c.run(["{CASE}/base32.safetensors", "{CASE}/big", "-o", "{OUT}/out.safetensors", "--dtype", "f16"], 3, None,
          stderr_has=[w])
    c.run(["{CASE}/base32.safetensors", "{CASE}/huge", "-o", "{OUT}/out.safetensors"], 3, None, stderr_has=[w])
    c.run(["{CASE}/model32", "{CASE}/big", "-o", "{OUT}/model", "--dtype", "f16"], 3, None, stderr_has=[w])
    c.run(["{CASE}/base16.safetensors", "{CASE}/big", "-o", "{OUT}/model", "--shard-size", "20KB"], 3, None,
          stderr_has=[w])
    return c.finish()


def case_err_dora_zero_norm(root, rng):
    c = Case(root, "err_dora_zero_norm", "DoRA where a row of W + s B@A is all zeros (m / ||V|| = m / 0 "
             "gives NaN): an error found while writing, exit 3 naming the tensor, no output file, no "
             "shard and no temporary file left")
    base = llama(rng, "F32")
    w = base["model.layers.1.mlp.down_proj.weight"].copy()
    w[5, :] = 0
    base.add("model.layers.1.mlp.down_proj.weight", w, "F32")
    c.write_base(base)
    tensors = []
    for layer in range(2):
        for mod in ["self_attn.q_proj", "mlp.down_proj"]:
            name = "model.layers.%d.%s" % (layer, mod)
            wt = base[name + ".weight"]
            a, b = factors(rng, wt.shape[0], wt.shape[1], 8)
            if layer == 1 and mod == "mlp.down_proj":
                b[5, :] = 0
            mag = np.abs(rng.normal(1, 0.1, wt.shape[0]))
            tensors += [("base_model.model.%s.lora_A.weight" % name, a, "F32"),
                        ("base_model.model.%s.lora_B.weight" % name, b, "F32"),
                        ("base_model.model.%s.lora_magnitude_vector" % name, mag, "F32")]
    c.write_adapter("adapter", lora_config(use_dora=True, target_modules=["q_proj", "down_proj"]), tensors)
    w = "model.layers.1.mlp.down_proj.weight"
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/out.safetensors"], 3, None, stderr_has=[w])
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{OUT}/model", "--shard-size", "20KB",
           "--threads", "3"], 3, None, stderr_has=[w])
    return c.finish()


def case_err_unwritable(root, rng):
    c = Case(root, "err_unwritable", "output under a regular file or a missing directory: exit 4")
    base = llama(rng, "F32")
    c.write_base(base)
    tensors = []
    c.expect_from(base)
    add_linear(c, tensors, rng, base, "model.layers.0.self_attn.q_proj", 8, 2.0)
    c.tensors = None
    c.write_adapter("adapter", lora_config(target_modules=["q_proj"]), tensors)
    with open(c.path("file_not_dir"), "w") as f:
        f.write("a regular file\n")
    pre = ["{CASE}/base.safetensors", "{CASE}/adapter", "-o"]
    c.run(pre + ["{CASE}/file_not_dir/out.safetensors"], 4, None)
    c.run(pre + ["{CASE}/file_not_dir/model"], 4, None)
    c.run(pre + ["{OUT}/no/such/dir/out.safetensors"], 4, None)
    c.run(pre + ["{OUT}/no/such/model", "--shard-size", "10KB"], 4, None)
    return c.finish()


def case_err_output_is_input(root, rng):
    c = Case(root, "err_output_is_input", "output path equal to the base file, the sharded base's "
             "directory, one of its shards, or an adapter: exit 2, inputs unchanged")
    base = llama(rng, "F32")
    c.write_base(base)
    c.write_sharded(base, "model", 2, side_files=SIDE_FILES)
    tensors = []
    c.expect_from(base)
    add_linear(c, tensors, rng, base, "model.layers.0.self_attn.q_proj", 8, 2.0)
    c.tensors = None
    c.write_adapter("adapter", lora_config(target_modules=["q_proj"]), tensors)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{CASE}/base.safetensors"], 2, None)
    c.run(["{CASE}/model", "{CASE}/adapter", "-o", "{CASE}/model"], 2, None)
    c.run(["{CASE}/model", "{CASE}/adapter", "-o", "{CASE}/model/model-00001-of-00002.safetensors"], 2, None)
    c.run(["{CASE}/base.safetensors", "{CASE}/adapter", "-o", "{CASE}/adapter"], 2, None)
    return c.finish()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_merge_ref.py OUT_DIR")
    root = sys.argv[1]
    self_test()
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = np.random.default_rng(SEED)
    specs = [
        simple_lora_case(root, "lora_f32", "f32 base, f32 adapter, every Linear of 2 layers (r 8, alpha 16), "
                         "a U8 buffer copied", rng, "F32", "F32", None, LLAMA_MODULES, mask=True),
        simple_lora_case(root, "lora_bf16_base", "bf16 base, f32 adapter: bf16 output", rng, "BF16", "F32", None,
                         ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"]),
        simple_lora_case(root, "lora_f16_f16_adapter", "f16 base, f16 adapter (r 4, alpha 8)", rng, "F16", "F16",
                         None, ["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"], r=4, alpha=8),
        simple_lora_case(root, "bf16_adapter_dtype_f32", "bf16 base, bf16 adapter, --dtype f32", rng, "BF16",
                         "BF16", "F32", ["self_attn.q_proj", "self_attn.v_proj", "mlp.gate_proj"]),
        simple_lora_case(root, "dtype_f16", "f32 base (rounding ties, f16 subnormals in norm.weight), "
                         "--dtype f16, U8 buffer kept", rng, "F32", "F32", "F16",
                         ["self_attn.q_proj", "mlp.down_proj"], mask=True, ties=True),
        simple_lora_case(root, "dtype_bf16", "f32 base (rounding ties in norm.weight), --dtype bf16", rng,
                         "F32", "F32", "BF16", ["self_attn.q_proj", "mlp.down_proj"], mask=True, ties=True),
        simple_lora_case(root, "f16_base_dtype_bf16", "f16 base, bf16 adapter, --dtype bf16", rng, "F16", "BF16",
                         "BF16", ["self_attn.o_proj", "mlp.up_proj"]),
        case_rslora_patterns(root, rng),
        case_gpt2(root, rng),
        case_embedding(root, rng),
        case_dora(root, rng, "dora_f32", "F32"),
        case_dora(root, rng, "dora_bf16", "BF16"),
        case_lora_bias(root, rng),
        case_adalora(root, rng, "adalora", 32, 8, False,
                     "AdaLoRA (lora_A/lora_B/lora_E without .weight, pruned ranks 5/3/7/12, init_r 12, "
                     "alpha 32): delta = B @ (A*E) * 32 / (12 + 1e-5)"),
        case_adalora(root, rng, "adalora_alpha0", 0, 8, False,
                     "AdaLoRA with lora_alpha 0, r 8, init_r 12: scaling = init_r (PEFT passes init_r as the "
                     "layer's r), delta = B @ (A*E) * 12 / (12 + 1e-5)"),
        case_adalora(root, rng, "adalora_rank_pattern", 32, 8, True,
                     "AdaLoRA config as PEFT saves it after training: rank_pattern maps "
                     "'<module>.lora_E' to lists of booleans"),
        case_modules_to_save(root, rng),
        case_two_adapters(root, rng),
        case_sharded(root, rng),
        case_bare_model(root, rng),
        case_threads(root, rng),
        case_threads_bf16(root, rng),
        case_dry_run(root, rng),
        case_err_shape(root, rng),
        case_err_missing(root, rng),
        case_err_missing_one_layer(root, rng),
        case_err_nan(root, rng),
        case_err_overflow(root, rng),
        case_err_dora_zero_norm(root, rng),
        case_err_unwritable(root, rng),
        case_err_output_is_input(root, rng),
    ]
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump([{"name": s["name"], "doc": s["doc"], "runs": s["runs"]} for s in specs], f, indent=1)
    print("wrote %d cases to %s" % (len(specs), root))


if __name__ == "__main__":
    main()
