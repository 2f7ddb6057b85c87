#!/usr/bin/python3
"""Reference data for tests/test_surgery.sh (`loratool resize`, `combine`, `extract`),
computed with numpy in float64, independently of the C code.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_surgery_ref.py build/testdata/surgery

Every case OUT_DIR/<case>/ holds its inputs (PEFT adapter directories
written with testdata/stwrite.py), case.json (the command lines, expected
exit codes, stderr fragments and per-module report values), ref.npz (per
run and module the expected effective delta and its kept singular values)
and manifest.json (sha256 of every input file).  OUT_DIR/cases.json lists
the cases.

Semantics (huggingface/peft tuners/lora, DESIGN.md sec. 4 and 6):
  a module's effective delta is D = s * B @ A with s = alpha / r (alpha /
  sqrt(r) with use_rslora), r and alpha from rank_pattern / alpha_pattern
  (first key k in order with re.match(rf"(.*\\.)?({k})$", module)), else r /
  lora_alpha.  Embeddings: A = lora_embedding_A [r, vocab], B =
  lora_embedding_B [dim, r]; D is kept in that B @ A orientation here.
  resize: per module the rank-k truncation of D from numpy's SVD of the
  dense D (singular values below 1e-10 s_0 are rounding noise of an exactly
  rank-deficient D and count as 0); k from the rule: --rank R: min(R, r);
  --energy F: smallest k with sum_{i<k} s_i^2 >= F sum s_i^2; --sv-ratio X:
  the number of s_i > s_0 / X; then clamped to [1, r].
  combine W1..Wn: D = sum_i W_i s_i B_i A_i over the adapters holding the
  module; without a rule the rank is sum r_i and D is exact, with a rule D
  is truncated as resize does with r = sum r_i.
  extract BASE TUNED: per targeted 2-D weight D = TUNED - BASE (float64 of
  the stored values), truncated by the rule with r = min(m, n) (--energy:
  at most --max-rank, default 256); randomized SVD is only near-optimal, so
  those runs carry D itself (ref.npz "<run>_<module>_full") for the
  near-optimality check.
  Report: energy_kept = sum_{i<k} s_i^2 / sum s_i^2 (1 when D = 0),
  rel_error = ||D - D_k||_F / ||D||_F (0 when D = 0), zero_delta = (D == 0),
  parameters = LoRA factor elements, sum of r (m + n), before and after.

Every rule decision is checked here to sit at least 1e-7 (relative) away
from its threshold, so a correct implementation cannot land on the other
side by rounding.
"""

import hashlib
import json
import math
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402

SEED = 20250611
H, FF, KV, VOCAB = 48, 80, 16, 96
NOISE = 1e-10    # singular values below NOISE * s_0 are zero (exact rank deficiency)
MARGIN = 1e-7    # rule thresholds must be at least this far (relative) from any decision

# ------------------------------------------------------------- storage


def stored(values, dtype):
    """The float64 values a tensor holds once stored as DTYPE."""
    v = np.asarray(values, dtype=np.float64)
    if dtype == "F32":
        return v.astype(np.float32).astype(np.float64)
    if dtype == "F16":
        return v.astype(np.float16).astype(np.float64)
    if dtype == "BF16":
        bits = stwrite.bf16_bits(v.astype(np.float32)).astype(np.uint32) << 16
        return bits.view(np.float32).astype(np.float64)
    if dtype == "F64":
        return v
    raise ValueError(dtype)


def entry(key, values, dtype):
    if dtype == "BF16":
        return stwrite.bf16(key, np.asarray(values, dtype=np.float32))
    np_dt = {"F32": np.float32, "F16": np.float16, "F64": np.float64}[dtype]
    return (key, np.asarray(values).astype(np_dt))


def lora_config(**kw):
    cfg = {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "test/tiny-llama",
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True,
        "layer_replication": None, "layers_pattern": None, "layers_to_transform": None,
        "lora_alpha": 16, "lora_bias": False, "lora_dropout": 0.05, "modules_to_save": None,
        "peft_type": "LORA", "r": 8, "rank_pattern": {}, "revision": None,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
        "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False,
    }
    cfg.update(kw)
    return cfg


def pattern_value(patterns, name, default):
    """PEFT's get_pattern_key: the first key k with re.match(rf"(.*\\.)?({k})$", name)."""
    for key, value in (patterns or {}).items():
        if re.match(r"(.*\.)?(%s)$" % key, name):
            return value
    return default


def peft_scale(cfg, name):
    r = pattern_value(cfg.get("rank_pattern"), name, cfg.get("r", 8))
    alpha = pattern_value(cfg.get("alpha_pattern"), name, cfg.get("lora_alpha", 8))
    return r, (alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r)


# ------------------------------------------------------------- factors

SHAPES = {  # module suffix -> (rows of B, cols of A) = (out, in)
    "self_attn.q_proj": (H, H), "self_attn.k_proj": (KV, H), "self_attn.v_proj": (KV, H),
    "self_attn.o_proj": (H, H), "mlp.up_proj": (FF, H), "mlp.down_proj": (H, FF),
}


def random_factors(rng, m, n, r, spread=0.2):
    return rng.normal(0, spread, (m, r)), rng.normal(0, spread, (r, n))


def spectrum_factors(rng, m, n, spectrum):
    """B [m, r], A [r, n] with B @ A having singular values SPECTRUM, the
    factors mixed by a random well-conditioned r x r matrix so that
    neither is orthogonal."""
    r = len(spectrum)
    qb = np.linalg.qr(rng.normal(size=(m, r)))[0]
    qa = np.linalg.qr(rng.normal(size=(n, r)))[0]
    root = np.sqrt(np.asarray(spectrum, dtype=np.float64))
    mix = rng.normal(0, 0.3, (r, r)) + np.eye(r)
    b = (qb * root) @ mix
    a = np.linalg.solve(mix, (qa * root).T)
    return b, a


class Adapter:
    """An input adapter: its config and the stored factor values."""

    def __init__(self, rel, cfg):
        self.rel, self.cfg = rel, cfg
        self.tensors = []            # (key, values, dtype) as written
        self.modules = {}            # name -> dict(kind, b, a, r, scale)
        self.replacements = []       # keys of non-LoRA tensors

    def add(self, name, b, a, dtype="F32", embedding=False):
        b, a = stored(b, dtype), stored(a, dtype)
        if embedding:
            ka = "base_model.model.%s.lora_embedding_A" % name
            kb = "base_model.model.%s.lora_embedding_B" % name
        else:
            ka = "base_model.model.%s.lora_A.weight" % name
            kb = "base_model.model.%s.lora_B.weight" % name
        self.tensors += [(ka, a, dtype), (kb, b, dtype)]
        r, scale = peft_scale(self.cfg, name)
        assert r == a.shape[0] == b.shape[1], (name, r, a.shape, b.shape)
        self.modules[name] = {"b": b, "a": a, "r": r, "scale": scale, "embedding": embedding}

    def add_raw(self, key, values, dtype):
        self.tensors.append((key, values, dtype))
        self.replacements.append(key)


# ------------------------------------------------------------- reference


def svd_exact(d, low_rank=True):
    """numpy's SVD of D; with LOW_RANK (D = a product of factors) values
    below NOISE * s_0 are the rounding noise of an exactly rank-deficient D
    and become 0."""
    u, s, vt = np.linalg.svd(d, full_matrices=False)
    if not low_rank:
        return u, s, vt
    if s.size and s[0] > 0:
        s = np.where(s < NOISE * s[0], 0.0, s)
        nz = s[s > 0]
        assert nz.min() > 1e-6 * s[0], "spectrum too close to the noise level"
    else:
        s = np.zeros_like(s)
    return u, s, vt


def choose_rank(rule, s, r_max):
    kind, value = rule
    e = s * s
    cum = np.cumsum(e)
    total = cum[-1] if cum.size else 0.0
    if kind == "rank":
        k = int(value)
    elif total == 0:
        k = 0
    elif kind == "energy":
        target = value * total
        k = int(np.argmax(cum >= target)) + 1
        assert cum[k - 1] >= target
        if value < 1:
            assert cum[k - 1] >= target * (1 + MARGIN), ("energy rule too close to a threshold", value, k)
            if k > 1:
                assert cum[k - 2] <= target * (1 - MARGIN), ("energy rule too close", value, k)
        else:
            assert k == np.count_nonzero(s), (k, s)
    elif kind == "ratio":
        cut = s[0] / value
        for x in s:
            assert x == 0 or abs(x - cut) > MARGIN * cut, ("sv-ratio too close to a singular value", value)
        k = int(np.count_nonzero(s > cut))
    else:
        raise ValueError(kind)
    return max(1, min(k, r_max))


def truncate(d, r_max, rule, low_rank=True):
    """Expected (delta, kept singular values, report) of D cut by RULE."""
    u, s, vt = svd_exact(d, low_rank)
    if rule is None:
        k = r_max
        dk = d.copy()
        kept = np.concatenate([s, np.zeros(max(0, k - s.size))])[:k]
        energy, rel = 1.0, 0.0
    else:
        k = choose_rank(rule, s, r_max)
        kk = min(k, s.size)
        dk = (u[:, :kk] * s[:kk]) @ vt[:kk]
        kept = np.concatenate([s, np.zeros(max(0, k - s.size))])[:k]
        total = float(np.sum(s * s))
        if total == 0:
            energy, rel = 1.0, 0.0
        else:
            energy = float(np.sum(s[:kk] ** 2)) / total
            rel = math.sqrt(float(np.sum(s[kk:] ** 2)) / total)
            direct = np.linalg.norm(d - dk) / np.linalg.norm(d)
            assert abs(direct - rel) < 1e-9, (direct, rel)
    return dk, kept, {"new_rank": k, "energy_kept": energy, "rel_error": rel,
                      "zero_delta": bool(not np.any(d))}


class Case:
    def __init__(self, root, name, doc):
        self.name, self.doc = name, doc
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.runs = []
        self.arrays = {}

    def write(self, ad):
        path = os.path.join(self.dir, ad.rel)
        os.makedirs(path)
        with open(os.path.join(path, "adapter_config.json"), "w") as f:
            json.dump(ad.cfg, f, indent=2)
        stwrite.write(os.path.join(path, "adapter_model.safetensors"),
                      [entry(k, v, dt) for k, v, dt in ad.tensors], {"format": "pt"})
        return ad

    def run(self, verb, args, rc=0, stderr_has=(), stderr_re=(), inputs=None, weights=None, rule=None,
            zero_exact=False, zero_factors=False, same_as=None, json_report=True, text_names=False,
            extract=None, rc_alt=()):
        """One command line.  With rc 0 and INPUTS (adapters) the expected
        output is computed: resize when VERB is resize (one input), combine
        with WEIGHTS otherwise; RULE None = exact concatenation."""
        k = len(self.runs)
        spec = {"verb": verb, "args": list(args), "rc": rc, "stderr_has": list(stderr_has),
                "stderr_re": list(stderr_re), "output": None, "same_as": same_as, "json": json_report,
                "zero_exact": zero_exact, "zero_factors": zero_factors, "text_names": text_names,
                "rc_alt": list(rc_alt)}
        if rc == 0 and inputs is not None:
            weights = weights or [1.0] * len(inputs)
            names = []
            for ad in inputs:
                names += [n for n in ad.modules if n not in names]
            before = 0
            for ad in inputs:
                for m in ad.modules.values():
                    before += m["r"] * (m["b"].shape[0] + m["a"].shape[1])
            entries = []
            for name in names:
                d, r_sum, emb = None, 0, None
                for ad, w in zip(inputs, weights):
                    m = ad.modules.get(name)
                    if m is None:
                        continue
                    term = (w * m["scale"]) * (m["b"] @ m["a"])
                    d = term if d is None else d + term
                    r_sum += m["r"]
                    emb = m["embedding"]
                entries.append((name, d, r_sum, r_sum, emb))
            spec["output"] = self.expect(k, entries, before, rule, True, inputs)
        elif rc == 0 and extract is not None:
            entries, before = extract
            spec["output"] = self.expect(k, entries, before, rule, False, [])
            spec["randomized"] = True
            for j, entry_ in enumerate(entries):
                self.arrays["%d/%d/full" % (k, j)] = entry_[1]
        self.runs.append(spec)
        return k

    def expect(self, k, entries, before, rule, low_rank, inputs):
        """ENTRIES: (name, D, rank cap, old rank, embedding) per module."""
        mods = []
        after = 0
        for j, (name, d, r_cap, old_rank, emb) in enumerate(entries):
            dk, kept, rep = truncate(d, r_cap, rule, low_rank)
            rep.update({"name": name, "old_rank": old_rank, "embedding": emb,
                        "shape": list(d.shape), "index": j})
            self.arrays["%d/%d/delta" % (k, j)] = dk
            self.arrays["%d/%d/sv" % (k, j)] = kept
            after += rep["new_rank"] * (d.shape[0] + d.shape[1])
            mods.append(rep)
        to_save = []
        for ad in inputs:
            to_save += [x for x in (ad.cfg.get("modules_to_save") or []) if x not in to_save]
        return {
            "modules": mods, "parameters_before": before, "parameters_after": after,
            "replacements": [[os.path.join(ad.rel, "adapter_model.safetensors"), key]
                             for ad in inputs for key in ad.replacements],
            "modules_to_save": to_save,
        }

    def finish(self):
        np.savez(os.path.join(self.dir, "ref.npz"), **{k.replace("/", "_"): v for k, v in self.arrays.items()})
        with open(os.path.join(self.dir, "case.json"), "w") as f:
            json.dump({"name": self.name, "doc": self.doc, "runs": self.runs}, f, indent=1)
        manifest = {}
        for top, _, files in os.walk(self.dir):
            for fn in files:
                p = os.path.join(top, fn)
                manifest[os.path.relpath(p, self.dir)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
        with open(os.path.join(self.dir, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        return self.name


def llama_adapter(rng, rel, layers=2, r=8, alpha=16, mods=None, spread=0.2, **cfg):
    ad = Adapter(rel, lora_config(r=r, lora_alpha=alpha, **cfg))
    for layer in range(layers):
        for suffix in mods or SHAPES:
            name = "model.layers.%d.%s" % (layer, suffix)
            rr, _ = peft_scale(ad.cfg, name)
            m, n = SHAPES[suffix]
            ad.add(name, *random_factors(rng, m, n, rr, spread))
    return ad


IN = "{CASE}/"
OUT = "{OUT}/out"

# ------------------------------------------------------------- cases


def case_resize_rank(root, rng):
    c = Case(root, "resize_rank", "resize --rank 3 of a rank-8 adapter (q,k,v,o,up,down in 2 layers): "
             "delta = numpy's rank-3 truncation, singular values, report, parameter counts; the text "
             "report names every module")
    ad = c.write(llama_adapter(rng, "in"))
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "3", "--json"], inputs=[ad], rule=("rank", 3))
    c.run("resize", [IN + "in", "--rank=3", "-o", OUT], inputs=[ad], rule=("rank", 3), json_report=False,
          text_names=True, same_as=0)
    return c.finish()


def spectra_adapter(rng, rel, **cfg):
    """Modules with designed spectra (geometric decay rho^i) so that the
    energy and ratio rules choose different ranks per module."""
    ad = Adapter(rel, lora_config(r=8, lora_alpha=16, **cfg))
    decays = {"self_attn.q_proj": 0.3, "self_attn.k_proj": 0.55, "self_attn.v_proj": 0.75,
              "self_attn.o_proj": 0.9, "mlp.up_proj": 0.97, "mlp.down_proj": 0.45}
    for layer in range(2):
        for suffix, rho in decays.items():
            name = "model.layers.%d.%s" % (layer, suffix)
            m, n = SHAPES[suffix]
            rho = rho * (1 + 0.03 * layer)
            spec = 0.05 * rho ** np.arange(8) * (1 + 0.1 * rng.random(8))
            ad.add(name, *spectrum_factors(rng, m, n, np.sort(spec)[::-1]))
    return ad


def case_resize_rules(root, rng):
    names = []
    seed = int(rng.integers(1 << 30))   # the same adapter in every case
    for tag, rule, args in [("energy_0.9", ("energy", 0.9), ["--energy", "0.9"]),
                            ("energy_0.99", ("energy", 0.99), ["--energy", "0.99"]),
                            ("energy_1.0", ("energy", 1.0), ["--energy", "1.0"]),
                            ("sv_ratio_20", ("ratio", 20.0), ["--sv-ratio", "20"])]:
        c = Case(root, "resize_" + tag, "resize %s on modules with different spectra: per-module rank = "
                 "numpy's smallest k meeting the rule; rank_pattern/alpha_pattern give PEFT each "
                 "module's scale" % " ".join(args))
        ad = c.write(spectra_adapter(np.random.default_rng(seed), "in"))
        c.run("resize", [IN + "in", "-o", OUT, "--json"] + args, inputs=[ad], rule=rule)
        ks = {m["new_rank"] for m in c.runs[0]["output"]["modules"]}
        assert tag == "energy_1.0" or len(ks) >= 3, (tag, ks)   # the rule must tell modules apart
        names.append(c.finish())
    return names


def case_rslora(root, rng):
    c = Case(root, "resize_rslora", "rsLoRA input (use_rslora, r 8, alpha 16: s = 16/sqrt(8)), "
             "resize --rank 4: the output must not scale by alpha/sqrt(r) twice")
    ad = c.write(llama_adapter(rng, "in", layers=1, use_rslora=True))
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "4", "--json"], inputs=[ad], rule=("rank", 4))
    return c.finish()


def case_patterns(root, rng):
    rank_pattern = {"down_proj": 4, "layers\\.0\\.mlp\\.up_proj": 6, "up_proj": 2}
    alpha_pattern = {"proj": 100.0, "layers\\.1\\.self_attn\\.q_proj": 3.5, "q_proj": 5, "mlp\\.up_proj": 24}
    c = Case(root, "resize_alpha_pattern", "rank_pattern + alpha_pattern input (first match in order, "
             "whole name components), resize --energy 0.95 and --rank 3")
    ad = c.write(llama_adapter(rng, "in", rank_pattern=rank_pattern, alpha_pattern=alpha_pattern))
    assert ad.modules["model.layers.1.self_attn.q_proj"]["scale"] == 3.5 / 8
    assert ad.modules["model.layers.0.mlp.up_proj"]["r"] == 6
    assert ad.modules["model.layers.0.mlp.up_proj"]["scale"] == 24 / 6
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.95", "--json"], inputs=[ad], rule=("energy", 0.95))
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "3", "--json"], inputs=[ad], rule=("rank", 3))
    return c.finish()


def case_rank1(root, rng):
    c = Case(root, "resize_rank1_input", "rank-1 adapter: --rank 1, --rank 4 (never above the module's "
             "rank) and --energy 0.5 all keep rank 1 exactly")
    ad = c.write(llama_adapter(rng, "in", layers=1, r=1, alpha=2))
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "1", "--json"], inputs=[ad], rule=("rank", 1))
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "4", "--json"], inputs=[ad], rule=("rank", 4))
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.5", "--json"], inputs=[ad], rule=("energy", 0.5))
    return c.finish()


def case_rank_above_shape(root, rng):
    c = Case(root, "resize_rank_above_min_dim", "rank 16 on an 8x12 module (delta rank 8) next to a "
             "rank-16 48x48 module: --rank 4, --energy 1.0 (keeps 8 on the small module), --rank 12 "
             "(min(12, 16) = 12, the delta unchanged)")
    ad = Adapter("in", lora_config(r=16, lora_alpha=32, target_modules=["small", "q_proj"]))
    ad.add("model.layers.0.small", *random_factors(rng, 8, 12, 16))
    ad.add("model.layers.0.self_attn.q_proj", *random_factors(rng, H, H, 16))
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "4", "--json"], inputs=[ad], rule=("rank", 4))
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "1.0", "--json"], inputs=[ad], rule=("energy", 1.0))
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "12", "--json"], inputs=[ad], rule=("rank", 12))
    return c.finish()


def case_half(root, rng, dtype):
    c = Case(root, "resize_%s_input" % dtype.lower(), "%s factors, resize --rank 2 and --energy 0.9: "
             "reference from the stored %s values" % (dtype, dtype))
    ad = Adapter("in", lora_config(r=8, lora_alpha=16))
    for suffix in SHAPES:
        name = "model.layers.0." + suffix
        m, n = SHAPES[suffix]
        ad.add(name, *random_factors(rng, m, n, 8), dtype=dtype)
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "2", "--json"], inputs=[ad], rule=("rank", 2))
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.9", "--json"], inputs=[ad], rule=("energy", 0.9))
    return c.finish()


def case_embedding(root, rng):
    c = Case(root, "resize_embedding", "lora_embedding_A [8, vocab 96] / lora_embedding_B [dim 48, 8] "
             "on embed_tokens plus lm_head and q_proj, resize --rank 3: embedding keys stay "
             "lora_embedding_A/B with their orientation")
    ad = Adapter("in", lora_config(r=8, lora_alpha=32, target_modules=["embed_tokens", "lm_head", "q_proj"]))
    ad.add("model.embed_tokens", *random_factors(rng, H, VOCAB, 8), embedding=True)
    ad.add("lm_head", *random_factors(rng, VOCAB, H, 8))
    ad.add("model.layers.0.self_attn.q_proj", *random_factors(rng, H, H, 8))
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "3", "--json"], inputs=[ad], rule=("rank", 3))
    return c.finish()


def case_modules_to_save(root, rng):
    c = Case(root, "resize_modules_to_save", "modules_to_save [score] with score.weight (BF16) and "
             "score.bias (F32) replacement tensors: copied byte for byte, modules_to_save kept in "
             "the config; resize --rank 2")
    ad = llama_adapter(rng, "in", layers=1, mods=["self_attn.q_proj", "self_attn.v_proj"],
                       modules_to_save=["score"], task_type="SEQ_CLS")
    ad.add_raw("base_model.model.score.weight", rng.normal(0, 0.1, (3, H)), "BF16")
    ad.add_raw("base_model.model.score.bias", rng.normal(0, 0.1, (3,)), "F32")
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "2", "--json"], inputs=[ad], rule=("rank", 2))
    return c.finish()


def two_adapters(rng):
    """A: r 4, alpha 8, q/v/o in 2 layers plus k_proj of layer 0 (only in
    A); B: r 6, use_rslora, alpha 12 with an alpha_pattern for v_proj,
    q/v/o in 2 layers plus up_proj of layer 1 (only in B)."""
    a = Adapter("a", lora_config(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    b = Adapter("b", lora_config(r=6, lora_alpha=12, use_rslora=True, alpha_pattern={"v_proj": 3.0},
                                 target_modules=["q_proj", "v_proj", "o_proj", "up_proj"]))
    for layer in range(2):
        for suffix in ["self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj"]:
            name = "model.layers.%d.%s" % (layer, suffix)
            m, n = SHAPES[suffix]
            a.add(name, *random_factors(rng, m, n, 4))
            b.add(name, *random_factors(rng, m, n, 6))
    a.add("model.layers.0.self_attn.k_proj", *random_factors(rng, KV, H, 4))
    b.add("model.layers.1.mlp.up_proj", *random_factors(rng, FF, H, 6))
    assert b.modules["model.layers.0.self_attn.v_proj"]["scale"] == 3.0 / math.sqrt(6)
    return a, b


def case_combine(root, rng):
    names = []
    seed = int(rng.integers(1 << 30))
    for tag, rule, args in [("concat", None, []), ("rank", ("rank", 5), ["--rank", "5"]),
                            ("energy", ("energy", 0.9), ["--energy", "0.9"])]:
        c = Case(root, "combine_" + tag, "combine A:0.7 B:-1.3 %s (A r4 alpha 8; B r6 rsLoRA alpha 12, "
                 "alpha_pattern v_proj 3; k_proj only in A, up_proj only in B): %s" %
                 (" ".join(args) or "(concat)",
                  "rank = sum of ranks, delta exact" if rule is None else "numpy's truncation of the exact sum"))
        a, b = two_adapters(np.random.default_rng(seed))
        c.write(a)
        c.write(b)
        c.run("combine", [IN + "a:0.7", IN + "b:-1.3", "-o", OUT, "--json"] + args, inputs=[a, b],
              weights=[0.7, -1.3], rule=rule)
        names.append(c.finish())
    return names


def case_combine_cancel(root, rng):
    names = []
    seed = int(rng.integers(1 << 30))
    for tag, rule, args in [("concat", None, []), ("rank2", ("rank", 2), ["--rank", "2"])]:
        c = Case(root, "combine_self_cancel_" + tag, "combine X:1 X:-1 %s: exit 0, every module "
                 "zero_delta, the written delta exactly 0%s" %
                 (" ".join(args) or "(concat)", "" if rule is None else ", factors all zero"))
        x = llama_adapter(np.random.default_rng(seed), "x", layers=1, use_rslora=True,
                          alpha_pattern={"v_proj": 5})
        c.write(x)
        c.run("combine", [IN + "x:1", IN + "x:-1", "-o", OUT, "--json"] + args, inputs=[x, x],
              weights=[1.0, -1.0], rule=rule, zero_exact=True, zero_factors=rule is not None)
        names.append(c.finish())
    return names


def case_combine_shapes(root, rng):
    c = Case(root, "combine_shape_mismatch", "combine of adapters for different base shapes (q_proj "
             "[40, 24] vs [56, 24]): exit 3 naming the module and both shapes, nothing written")
    a = Adapter("a", lora_config(r=4, lora_alpha=8, target_modules=["q_proj"]))
    b = Adapter("b", lora_config(r=4, lora_alpha=8, target_modules=["q_proj"]))
    a.add("model.layers.0.self_attn.q_proj", *random_factors(rng, 40, 24, 4))
    b.add("model.layers.0.self_attn.q_proj", *random_factors(rng, 56, 24, 4))
    c.write(a)
    c.write(b)
    c.run("combine", [IN + "a", IN + "b", "-o", OUT], rc=3, stderr_has=["model.layers.0.self_attn.q_proj"],
          stderr_re=[r"(40\D{1,3}24|24\D{1,3}40)", r"(56\D{1,3}24|24\D{1,3}56)"])
    return c.finish()


def case_zero(root, rng):
    c = Case(root, "resize_all_zero", "adapter with every lora_B all zeros (freshly initialised), "
             "resize --rank 2 and --energy 0.9: exit 0, zero_delta, written delta exactly 0")
    ad = Adapter("in", lora_config(r=8, lora_alpha=16))
    for suffix in ["self_attn.q_proj", "mlp.down_proj"]:
        m, n = SHAPES[suffix]
        ad.add("model.layers.0." + suffix, np.zeros((m, 8)), rng.normal(0, 0.2, (8, n)))
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "2", "--json"], inputs=[ad], rule=("rank", 2),
          zero_exact=True)
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.9", "--json"], inputs=[ad], rule=("energy", 0.9),
          zero_exact=True)
    return c.finish()


def case_refusals(root, rng):
    names = []
    c = Case(root, "refuse_dora", "DoRA adapter (use_dora, lora_magnitude_vector): resize and combine "
             "exit 3 naming DoRA, nothing written")
    ad = llama_adapter(rng, "in", layers=1, mods=["self_attn.q_proj", "self_attn.v_proj"], use_dora=True)
    for name in list(ad.modules):
        m = ad.modules[name]["b"].shape[0]
        ad.tensors.append(("base_model.model.%s.lora_magnitude_vector" % name, 1 + rng.random(m), "F32"))
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "2"], rc=3, stderr_has=["DoRA"])
    c.run("combine", [IN + "in", IN + "in:0.5", "-o", OUT], rc=3, stderr_has=["DoRA"])
    names.append(c.finish())

    c = Case(root, "refuse_nan", "a NaN in one lora_A (and, second adapter, an Inf in a lora_B): "
             "resize and combine exit 3, nothing written")
    ad = llama_adapter(rng, "in", layers=1, mods=["self_attn.q_proj", "self_attn.v_proj"])
    key, vals, dt = ad.tensors[2]
    vals = vals.copy()
    vals[1, 5] = np.nan
    ad.tensors[2] = (key, vals, dt)
    c.write(ad)
    ad2 = llama_adapter(rng, "inf", layers=1, mods=["self_attn.q_proj"])
    key, vals, dt = ad2.tensors[1]
    vals = vals.copy()
    vals[3, 0] = np.inf
    ad2.tensors[1] = (key, vals, dt)
    c.write(ad2)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "2"], rc=3)
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.9"], rc=3)
    c.run("combine", [IN + "in", "-o", OUT], rc=3)
    c.run("resize", [IN + "inf", "-o", OUT, "--rank", "2"], rc=3)
    names.append(c.finish())

    c = Case(root, "refuse_lora_bias", "lora_bias adapter (lora_B.bias): resize exits 3, nothing written")
    ad = llama_adapter(rng, "in", layers=1, mods=["self_attn.q_proj"], lora_bias=True)
    ad.tensors.append(("base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias",
                       rng.normal(0, 0.1, (H,)), "F32"))
    c.write(ad)
    c.run("resize", [IN + "in", "-o", OUT, "--rank", "2"], rc=3)
    names.append(c.finish())

    ad = llama_adapter(rng, "in", layers=1, mods=["self_attn.q_proj"])
    for tag, verb, args in [
            ("no_rule", "resize", [IN + "in", "-o", OUT]),
            ("two_rules", "resize", [IN + "in", "-o", OUT, "--rank", "2", "--energy", "0.9"]),
            ("energy_1.5", "resize", [IN + "in", "-o", OUT, "--energy", "1.5"]),
            ("energy_0", "resize", [IN + "in", "-o", OUT, "--energy", "0"]),
            ("rank_0", "resize", [IN + "in", "-o", OUT, "--rank", "0"]),
            ("rank_2.5", "resize", [IN + "in", "-o", OUT, "--rank", "2.5"]),
            ("sv_ratio_0.5", "resize", [IN + "in", "-o", OUT, "--sv-ratio", "0.5"]),
            ("missing_o", "resize", [IN + "in", "--rank", "2"]),
            ("two_adapters", "resize", [IN + "in", IN + "in", "-o", OUT, "--rank", "2"]),
            ("combine_missing_o", "combine", [IN + "in", IN + "in"]),
            ("combine_energy_1.5", "combine", [IN + "in", IN + "in", "-o", OUT, "--energy", "1.5"]),
            ("combine_two_rules", "combine", [IN + "in", IN + "in", "-o", OUT, "--rank", "2", "--sv-ratio", "4"])]:
        c = Case(root, "usage_" + tag, "loratool %s %s: exit 2, nothing written" % (verb, " ".join(args)))
        c.write(ad)
        c.run(verb, args, rc=2)
        names.append(c.finish())
    return names


def case_determinism(root, rng):
    c = Case(root, "resize_deterministic", "the same resize --energy 0.95 run twice: byte-identical "
             "adapter_config.json and adapter_model.safetensors")
    ad = c.write(llama_adapter(rng, "in"))
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.95", "--json"], inputs=[ad], rule=("energy", 0.95))
    c.run("resize", [IN + "in", "-o", OUT, "--energy", "0.95", "--json"], inputs=[ad], rule=("energy", 0.95),
          same_as=0)
    return c.finish()


def case_timing(root, rng):
    """One 4096x4096 rank-64 module resized to 16.  Too big for the dense
    reference: the expected values come from numpy's QR of B and A^T and
    the SVD of the 64x64 core (the same mathematics, numpy's LAPACK)."""
    c = Case(root, "timing_4096", "resize --rank 16 of one 4096x4096 rank-64 module (timing printed as "
             "'# ...'; report and delta checked against numpy's QR + core SVD)")
    n, r = 4096, 64
    ad = Adapter("in", lora_config(r=r, lora_alpha=64, target_modules=["q_proj"]))
    spec = 0.02 * 0.93 ** np.arange(r)
    b, a = spectrum_factors(rng, n, n, spec)
    name = "model.layers.0.self_attn.q_proj"
    ad.add(name, b, a)
    c.write(ad)
    m = ad.modules[name]
    qb, rb = np.linalg.qr(m["scale"] * m["b"])
    qa, ra = np.linalg.qr(m["a"].T)
    u, s, vt = np.linalg.svd(rb @ ra.T)
    k = 16
    uk = qb @ (u[:, :k] * s[:k])          # D_k = uk @ vk^T
    vk = qa @ vt[:k].T
    total = float(np.sum(s * s))
    c.arrays["timing/uk"] = uk
    c.arrays["timing/vk"] = vk
    c.runs.append({"verb": "resize", "args": [IN + "in", "-o", OUT, "--rank", "16", "--json"], "rc": 0,
                   "stderr_has": [], "stderr_re": [], "same_as": None, "json": True, "zero_exact": False,
                   "zero_factors": False, "text_names": False,
                   "output": None,
                   "timing": {"name": name, "old_rank": r, "new_rank": k, "sv": s[:k].tolist(),
                              "energy_kept": float(np.sum(s[:k] ** 2)) / total,
                              "rel_error": math.sqrt(float(np.sum(s[k:] ** 2)) / total),
                              "parameters_before": r * 2 * n, "parameters_after": k * 2 * n,
                              "scale": m["scale"]}})
    return c.finish()


# ------------------------------------------------------------- extract

PROJ = {"self_attn.q_proj": (H, H), "self_attn.k_proj": (KV, H), "self_attn.v_proj": (KV, H),
        "self_attn.o_proj": (H, H), "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H),
        "mlp.down_proj": (H, FF)}
DECAY = {"self_attn.q_proj": None, "self_attn.k_proj": 0.5, "self_attn.v_proj": 0.6,
         "self_attn.o_proj": 0.7, "mlp.gate_proj": 0.75, "mlp.up_proj": 0.65, "mlp.down_proj": 0.55}


class Model:
    """An ordered set of named tensors, float64 values as stored in DTYPE."""

    def __init__(self):
        self.t = {}

    def add(self, name, values, dtype="F32"):
        self.t[name] = (stored(values, dtype), dtype)

    def write(self, path):
        stwrite.write(path, [entry(n, v, dt) for n, (v, dt) in self.t.items()], {"format": "pt"})


def designed_delta(rng, m, n, rho, layer):
    """An m x n difference with singular values 0.02 rho^i (perturbed), or,
    with rho None, of exact rank 6."""
    if rho is None:
        spec = 0.02 * 0.8 ** np.arange(6) * (1 + 0.1 * rng.random(6))
    else:
        rho = rho * (1 + 0.04 * layer)
        spec = 0.02 * rho ** np.arange(min(m, n)) * (1 + 0.1 * rng.random(min(m, n)))
    spec = np.sort(spec)[::-1]
    qu = np.linalg.qr(rng.normal(size=(m, len(spec))))[0]
    qv = np.linalg.qr(rng.normal(size=(n, len(spec))))[0]
    return (qu * spec) @ qv.T


def llama_pair(rng, dtype="F32", zero=(), mismatch=None, nan=None, drop=None):
    """BASE and TUNED tiny llama models; TUNED = BASE + a designed delta on
    every projection (none on the names in ZERO), the embeddings and
    lm_head, and a changed final norm."""
    base, tuned = Model(), Model()
    emb = rng.normal(0, 0.05, (VOCAB, H))
    base.add("model.embed_tokens.weight", emb, dtype)
    tuned.add("model.embed_tokens.weight", emb + designed_delta(rng, VOCAB, H, 0.6, 0), dtype)
    for layer in range(2):
        p = "model.layers.%d." % layer
        for norm in ("input_layernorm", "post_attention_layernorm"):
            w = 1 + rng.normal(0, 0.1, H)
            base.add(p + norm + ".weight", w, dtype)
            tuned.add(p + norm + ".weight", w + rng.normal(0, 0.01, H), dtype)
        for suffix, (m, n) in PROJ.items():
            name = p + suffix + ".weight"
            w = rng.normal(0, 0.05, (m, n))
            base.add(name, w, dtype)
            d = 0 if name in zero else designed_delta(rng, m, n, DECAY[suffix], layer)
            tuned.add(name, w + d, dtype)
    w = 1 + rng.normal(0, 0.1, H)
    base.add("model.norm.weight", w, dtype)
    tuned.add("model.norm.weight", w * 1.01, dtype)
    w = rng.normal(0, 0.05, (VOCAB, H))
    base.add("lm_head.weight", w, dtype)
    tuned.add("lm_head.weight", w + designed_delta(rng, VOCAB, H, 0.5, 0), dtype)
    return base, tuned


DEFAULT_TARGET_SUFFIXES = tuple("." + x + ".weight" for x in
                                ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


def extract_entries(base, tuned, select=None, max_rank=256, rule_kind="rank"):
    """(entries, parameters before) for extracting TUNED - BASE over the
    2-D weights SELECT picks (default: the attention and MLP projections)."""
    entries, before = [], 0
    for name, (tv, _) in tuned.t.items():
        if tv.ndim != 2 or not name.endswith(".weight"):
            continue
        if not (select(name) if select else name.endswith(DEFAULT_TARGET_SUFFIXES)):
            continue
        d = tv - base.t[name][0]
        m, n = d.shape
        full = min(m, n)
        cap = full if rule_kind == "rank" else min(max_rank, full)
        entries.append((name[:-len(".weight")], d, cap, full, False))
        before += m * n
    return entries, before


def case_extract(root, rng):
    names = []
    seed = int(rng.integers(1 << 30))

    def pair(**kw):
        return llama_pair(np.random.default_rng(seed), **kw)

    def new_case(name, doc, **kw):
        c = Case(root, name, doc)
        base, tuned = pair(**kw)
        base.write(os.path.join(c.dir, "base.safetensors"))
        tuned.write(os.path.join(c.dir, "tuned.safetensors"))
        return c, base, tuned

    BT = [IN + "base.safetensors", IN + "tuned.safetensors"]

    c, base, tuned = new_case("extract_rank", "extract --rank 4 (default targets: the 14 projections; "
                              "embed_tokens, lm_head and 1-D norms left out): delta = numpy's rank-4 "
                              "truncation of tuned - base, report, parameter counts; the same bytes with --threads 1 and 3")
    c.run("extract", BT + ["-o", OUT, "--rank", "4", "--json"], rule=("rank", 4),
          extract=extract_entries(base, tuned))
    c.run("extract", BT + ["-o", OUT, "--rank", "4", "--json", "--threads", "1"], rule=("rank", 4),
          extract=extract_entries(base, tuned), same_as=0)
    c.run("extract", BT + ["-o", OUT, "--rank", "4", "--json", "--threads", "3"], rule=("rank", 4),
          extract=extract_entries(base, tuned), same_as=0)
    names.append(c.finish())

    c, base, tuned = new_case("extract_energy", "extract --energy 0.9 and 0.99: per-module rank = numpy's "
                              "smallest k keeping the fraction of ||tuned - base||_F^2; rank_pattern gives "
                              "PEFT each module's rank; --energy 0.99 --max-rank 3 stops at the cap")
    c.run("extract", BT + ["-o", OUT, "--energy", "0.9", "--json"], rule=("energy", 0.9),
          extract=extract_entries(base, tuned, rule_kind="energy"))
    c.run("extract", BT + ["-o", OUT, "--energy", "0.99", "--json"], rule=("energy", 0.99),
          extract=extract_entries(base, tuned, rule_kind="energy"))
    c.run("extract", BT + ["-o", OUT, "--energy", "0.99", "--max-rank", "3", "--json"], rule=("energy", 0.99),
          extract=extract_entries(base, tuned, max_rank=3, rule_kind="energy"))
    names.append(c.finish())

    c, base, tuned = new_case("extract_targets", "extract --targets: only the whole tensor names the "
                              "regex matches (layer 1 q_proj/down_proj; then lm_head alone)")
    regex = r"model\.layers\.1\..*(q_proj|down_proj)\.weight"
    c.run("extract", BT + ["-o", OUT, "--targets", regex, "--rank", "3", "--json"], rule=("rank", 3),
          extract=extract_entries(base, tuned, select=lambda n: re.fullmatch(regex, n) is not None))
    c.run("extract", BT + ["-o", OUT, "--targets", "lm_head\\.weight", "--rank", "5", "--json"],
          rule=("rank", 5), extract=extract_entries(base, tuned, select=lambda n: n == "lm_head.weight"))
    c.run("extract", BT + ["-o", OUT, "--targets", "q_proj", "--rank", "5"], rc=3)  # fullmatch: nothing
    names.append(c.finish())

    c, base, tuned = new_case("extract_rank_above_min_dim", "extract --rank 100 on 48x48, 16x48, 80x48: "
                              "rank min(m, n), the delta kept whole")
    c.run("extract", BT + ["-o", OUT, "--rank", "100", "--json"], rule=("rank", 100),
          extract=extract_entries(base, tuned))
    names.append(c.finish())

    c, base, tuned = new_case("extract_bf16", "BF16 base and tuned, extract --rank 3 and --energy 0.9: "
                              "reference from the stored BF16 values", dtype="BF16")
    c.run("extract", BT + ["-o", OUT, "--rank", "3", "--json"], rule=("rank", 3),
          extract=extract_entries(base, tuned))
    c.run("extract", BT + ["-o", OUT, "--energy", "0.9", "--json"], rule=("energy", 0.9),
          extract=extract_entries(base, tuned, rule_kind="energy"))
    names.append(c.finish())

    zero = ("model.layers.0.self_attn.v_proj.weight", "model.layers.1.mlp.up_proj.weight")
    c, base, tuned = new_case("extract_zero_module", "tuned equals base on two projections: zero_delta, "
                              "delta exactly 0, rank 3 with --rank 3 and 1 (the smallest) with --energy 0.9 "
                              "(with --keep-zero; without it nothing is left to extract: exit 3)",
                              zero=zero)
    sel = lambda n: n in zero  # noqa: E731
    rx = "|".join(re.escape(z) for z in zero)
    c.run("extract", BT + ["-o", OUT, "--targets", rx, "--rank", "3", "--json", "--keep-zero"], rule=("rank", 3),
          extract=extract_entries(base, tuned, select=sel), zero_exact=True)
    c.run("extract", BT + ["-o", OUT, "--targets", rx, "--energy", "0.9", "--json", "--keep-zero"],
          rule=("energy", 0.9), extract=extract_entries(base, tuned, select=sel, rule_kind="energy"), zero_exact=True)
    # without --keep-zero an unchanged weight is left out: here every one is
    c.run("extract", BT + ["-o", OUT, "--targets", rx, "--rank", "3"], rc=3, stderr_has=["nothing to extract"])
    names.append(c.finish())

    c, base, tuned = new_case("extract_embedding_target", "extract --targets 'model\\.embed_tokens\\.weight' "
                              "--rank 4: an embedding must come out as lora_embedding_A [r, vocab] / "
                              "lora_embedding_B [dim, r] (PEFT ignores lora_A/lora_B on an Embedding), or "
                              "be refused (exit 3)")
    entries, before = extract_entries(base, tuned, select=lambda n: n == "model.embed_tokens.weight")
    entries = [(n, d.T, cap, full, True) for n, d, cap, full, _ in entries]  # B @ A = dW^T
    c.run("extract", BT + ["-o", OUT, "--targets", "model\\.embed_tokens\\.weight", "--rank", "4", "--json"],
          rule=("rank", 4), extract=(entries, before), rc_alt=[3])
    names.append(c.finish())

    # refusals
    c = Case(root, "extract_refusals", "extract refusals, exit 3 and nothing written: a targeted tensor "
             "missing from BASE, of another shape in BASE, NaN in TUNED, no tensor matching the targets")
    base, tuned = pair()
    base.write(os.path.join(c.dir, "base.safetensors"))
    tuned.write(os.path.join(c.dir, "tuned.safetensors"))
    partial = Model()
    partial.t = {k: v for k, v in base.t.items() if k != "model.layers.1.self_attn.o_proj.weight"}
    partial.write(os.path.join(c.dir, "base_missing.safetensors"))
    other = Model()
    other.t = dict(base.t)
    other.add("model.layers.0.self_attn.k_proj.weight", np.zeros((40, H)))
    other.write(os.path.join(c.dir, "base_shape.safetensors"))
    nan = Model()
    nan.t = dict(tuned.t)
    v = tuned.t["model.layers.0.mlp.up_proj.weight"][0].copy()
    v[7, 3] = np.nan
    nan.add("model.layers.0.mlp.up_proj.weight", v)
    nan.write(os.path.join(c.dir, "tuned_nan.safetensors"))
    c.run("extract", [IN + "base_missing.safetensors", IN + "tuned.safetensors", "-o", OUT, "--rank", "2"],
          rc=3, stderr_has=["model.layers.1.self_attn.o_proj"])
    c.run("extract", [IN + "base_shape.safetensors", IN + "tuned.safetensors", "-o", OUT, "--rank", "2"],
          rc=3, stderr_has=["model.layers.0.self_attn.k_proj"])
    c.run("extract", [IN + "base.safetensors", IN + "tuned_nan.safetensors", "-o", OUT, "--rank", "2"], rc=3)
    c.run("extract", BT + ["-o", OUT, "--rank", "2", "--targets", "nothing\\.weight"], rc=3)
    names.append(c.finish())

    for tag, args in [("no_rule", BT + ["-o", OUT]),
                      ("two_rules", BT + ["-o", OUT, "--rank", "2", "--energy", "0.9"]),
                      ("sv_ratio", BT + ["-o", OUT, "--sv-ratio", "4"]),
                      ("energy_1.5", BT + ["-o", OUT, "--energy", "1.5"]),
                      ("rank_0", BT + ["-o", OUT, "--rank", "0"]),
                      ("missing_o", BT + ["--rank", "2"]),
                      ("one_model", [IN + "tuned.safetensors", "-o", OUT, "--rank", "2"])]:
        c = Case(root, "usage_extract_" + tag, "loratool extract %s: exit 2, nothing written" % " ".join(args))
        base, tuned = Model(), Model()
        base.add("model.layers.0.self_attn.q_proj.weight", np.zeros((8, 8)))
        tuned.add("model.layers.0.self_attn.q_proj.weight", np.eye(8))
        base.write(os.path.join(c.dir, "base.safetensors"))
        tuned.write(os.path.join(c.dir, "tuned.safetensors"))
        c.run("extract", args, rc=2)
        names.append(c.finish())
    return names


def main():
    root = sys.argv[1]
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = np.random.default_rng(SEED)
    names = []

    def add(x):
        names.extend(x if isinstance(x, list) else [x])

    add(case_resize_rank(root, rng))
    add(case_resize_rules(root, rng))
    add(case_rslora(root, rng))
    add(case_patterns(root, rng))
    add(case_rank1(root, rng))
    add(case_rank_above_shape(root, rng))
    add(case_half(root, rng, "BF16"))
    add(case_half(root, rng, "F16"))
    add(case_embedding(root, rng))
    add(case_modules_to_save(root, rng))
    add(case_combine(root, rng))
    add(case_combine_cancel(root, rng))
    add(case_combine_shapes(root, rng))
    add(case_zero(root, rng))
    add(case_refusals(root, rng))
    add(case_determinism(root, rng))
    add(case_timing(root, rng))
    if os.environ.get("SURGERY_NO_EXTRACT") != "1":
        add(case_extract(root, rng))
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump(names, f, indent=1)
    print("%d cases in %s" % (len(names), root))


if __name__ == "__main__":
    main()
