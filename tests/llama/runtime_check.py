"""runtime_check.py LORATOOL WORK NODE_MODULES VOCAB - real clients read what
loratool writes (tests/test_llama_runtime.sh).

1. Seeded tiny models (llama: n_embd 64, 2 layers, 4 heads, 2 KV heads,
   n_ff 128; qwen2 with q/k/v biases and tied embeddings) as safetensors +
   config.json, converted by `loratool convert --vocab` (the llama SPM
   vocabulary, 32000 tokens).
2. Seeded PEFT adapters (all 7 projections; rsLoRA; alpha_pattern +
   rank_pattern; an embedding LoRA) -> `loratool convert` to GGUF LoRAs in
   f32, f16 and q8_0.
3. llama.cpp (node-llama-cpp, CPU, F32 KV cache) runs, for each adapter:
   the reference (the PEFT adapter merged into the safetensors model by
   `loratool merge`, whose arithmetic test_merge checks against numpy, then
   converted), base + GGUF LoRA at runtime in each type, and the GGUF base
   merged by `loratool merge` (with the PEFT adapter, and with the GGUF
   LoRA).  Log-probabilities of the top tokens at every position of a
   fixed prompt must agree with the reference within the tolerance below,
   and the greedy token wherever the reference's top-1 margin exceeds it.
   The same adapter with llama's Q/K permutation undone must FAIL that
   check (the check can fail).
4. @huggingface/gguf parses every GGUF written; its key-value pairs and
   tensor infos (names, types, shapes, offsets) equal `loratool inspect
   --json --tensors`.

Tolerance.  All paths compute in float32 from the same weights up to
rounding, so what separates them is rounding, and we measure the model's
sensitivity to that rounding with a control run:
- F32 factors: W x + s B (A x) at runtime vs (W + s B A) x merged only
  reassociates float32 sums (dot products of <= 128 terms, each within a
  few ulp of the exact sum) and the merges round s B A + W once or twice.
  Control: the base with every float tensor moved by +-2^-22 relative (2
  ulp-sized steps, random signs); D_F32 = its max |delta logprob|.  These
  tiny random models amplify ulp-sized changes (1e-4 to 2e-3 nats), so
  the tolerance comes from the control, not from a fixed epsilon:
  tolerance_F32 = FLOOR + 4 max(1, rho) D_F32, FLOOR = 1e-4, rho below
  (4 = the two compared sides, times a margin of 2);
- F16 / Q8_0 factors: llama.cpp's CPU matmul also rounds the activations
  it multiplies with them to the same type.  Control: the base model with
  every 2-D weight rounded to that type (so every matmul rounds its
  weights and activations), run the same way; D_T = its max |delta
  logprob| against the F32 base.  The LoRA path rounds fewer quantities of
  the same size (the factors and the LoRA's activations), but rounding
  errs in proportion to what is rounded: with rho = the largest
  ||s B A||_F / ||W||_F of the adapter's modules we allow
  tolerance_T = FLOOR + 4 max(1, rho) D_T.
Greedy tokens must agree wherever the reference's top-1 margin exceeds
the tolerance, and every tolerance must stay below half the adapter's own
effect (max |lp(reference) - lp(base)|), so the check can see the adapter.  The unpermuted adapter must exceed the F32 tolerance.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, "testdata")
import stwrite  # noqa: E402
from convert_check import read_gguf, unpermute_rows  # noqa: E402
from make_merge_gguf_ref import q8_0_quantize, write_gguf  # noqa: E402

TOOL, WORK, MODULES, VOCAB = sys.argv[1:5]
HERE = os.path.dirname(os.path.abspath(__file__))
H, LAYERS, NH, NKV, FF, V = 64, 2, 4, 2, 128, 32000
HD = H // NH
# fixed token ids of the llama SPM vocabulary, BOS first
PROMPT = [1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203]
TOP = 8
FLOOR = 1e-4
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
failures = 0
gguf_files = []


def case(name, ok, why=""):
    global failures
    print("PASS %s" % name if ok else "FAIL %s: %s" % (name, why))
    failures += not ok
    return ok


def tool(*args):
    p = subprocess.run([TOOL] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("loratool %s: exit %d: %s" % (" ".join(map(str, args)), p.returncode, p.stderr.strip()))
    return p.stdout


def shapes_of(arch):
    s = {"self_attn.q_proj": (NH * HD, H), "self_attn.k_proj": (NKV * HD, H), "self_attn.v_proj": (NKV * HD, H),
         "self_attn.o_proj": (H, NH * HD), "mlp.gate_proj": (FF, H), "mlp.up_proj": (FF, H),
         "mlp.down_proj": (H, FF)}
    return s


def make_model(arch, seed):
    """A seeded model directory: config.json + model.safetensors."""
    rng = np.random.default_rng(seed)
    d = os.path.join(WORK, arch)
    os.makedirs(d)
    tied = arch == "qwen2"
    cfg = {"model_type": arch, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": NH,
           "num_key_value_heads": NKV, "intermediate_size": FF, "vocab_size": V, "max_position_embeddings": 256,
           "rms_norm_eps": 1e-5 if arch == "llama" else 1e-6, "rope_theta": 10000.0 if arch == "llama" else 1e6,
           "hidden_act": "silu", "tie_word_embeddings": tied}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    scale = {"self_attn.q_proj": 0.15, "self_attn.k_proj": 0.15, "self_attn.v_proj": 0.15, "self_attn.o_proj": 0.15,
             "mlp.gate_proj": 0.15, "mlp.up_proj": 0.15, "mlp.down_proj": 0.1}
    t = {"model.embed_tokens.weight": rng.standard_normal((V, H)) * (0.3 if tied else 1.0),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(H)}
    if not tied:
        t["lm_head.weight"] = rng.standard_normal((V, H)) * 0.3
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(H)
        for m, shape in shapes_of(arch).items():
            t[p + m + ".weight"] = rng.standard_normal(shape) * scale[m]
        if arch == "qwen2":
            for m in ("q", "k", "v"):
                t[p + "self_attn.%s_proj.bias" % m] = 0.5 * rng.standard_normal(shapes_of(arch)["self_attn.%s_proj" % m][0])
    stwrite.write(os.path.join(d, "model.safetensors"), sorted((k, v.astype(np.float32)) for k, v in t.items()),
                  {"format": "pt"})
    return d, t


def module_scale(short, r, alpha, rslora, alpha_pattern, rank_pattern):
    """PEFT's scale of one module: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    rank = (rank_pattern or {}).get(short, r)
    a = (alpha_pattern or {}).get(short, alpha)
    return a / (math.sqrt(rank) if rslora else rank)


def make_adapter(arch, name, seed, weights, r=4, alpha=8, rslora=False, alpha_pattern=None, rank_pattern=None,
                 embed=False, std=0.2):
    """A seeded PEFT adapter directory, and rho: the largest ||s B A||_F /
    ||W||_F of its modules (how large the delta is against the weight it
    changes; rounding its factors errs in proportion)."""
    rng = np.random.default_rng(seed)
    d = os.path.join(WORK, "%s-%s-peft" % (arch, name))
    os.makedirs(d)
    targets = [m.split(".")[1] for m in PROJ] + (["embed_tokens"] if embed else [])
    tensors, rho = {}, 0.0
    for i in range(LAYERS):
        for m, (out_f, in_f) in shapes_of(arch).items():
            short = m.split(".")[1]
            rank = (rank_pattern or {}).get(short, r)
            key = "base_model.model.model.layers.%d.%s" % (i, m)
            a = tensors[key + ".lora_A.weight"] = rng.standard_normal((rank, in_f)) * std
            b = tensors[key + ".lora_B.weight"] = rng.standard_normal((out_f, rank)) * std
            s = module_scale(short, r, alpha, rslora, alpha_pattern, rank_pattern)
            w = weights["model.layers.%d.%s.weight" % (i, m)]
            rho = max(rho, np.linalg.norm(s * b @ a) / np.linalg.norm(w))
    if embed:
        a = tensors["base_model.model.model.embed_tokens.lora_embedding_A"] = rng.standard_normal((r, V)) * 0.5
        b = tensors["base_model.model.model.embed_tokens.lora_embedding_B"] = rng.standard_normal((H, r)) * 0.5
        s = module_scale("embed_tokens", r, alpha, rslora, alpha_pattern, rank_pattern)
        rho = max(rho, np.linalg.norm(s * (b @ a).T) / np.linalg.norm(weights["model.embed_tokens.weight"]))
    stwrite.write(os.path.join(d, "adapter_model.safetensors"),
                  sorted((k, v.astype(np.float32)) for k, v in tensors.items()), {"format": "pt"})
    cfg = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets, "use_rslora": rslora,
           "alpha_pattern": alpha_pattern or {}, "rank_pattern": rank_pattern or {}, "bias": "none",
           "fan_in_fan_out": False, "task_type": "CAUSAL_LM"}
    json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"))
    return d, rho


def unpermuted_copy(src, dst):
    """The GGUF LoRA SRC with llama's Q/K row order undone in lora_b: what a
    converter that forgot the permutation would write."""
    kv, tensors = read_gguf(src)
    kvs = [(k, {"str": "str"}.get(t, t), v) for k, (t, v) in kv.items()]
    out = []
    for name, (ne, tname, raw) in tensors.items():
        if tname == "F32" and name.endswith(".lora_b") and (".attn_q." in name or ".attn_k." in name):
            m = np.frombuffer(raw, "<f4").reshape(ne[1], ne[0])
            m = unpermute_rows(m, NH if ".attn_q." in name else NKV)
            raw = m.astype("<f4").tobytes()
        out.append((name, tname, list(ne), raw))
    write_gguf(dst, kvs, out)


def array_type(values):
    if all(isinstance(v, str) for v in values):
        return "arr:str"
    return "arr:f32" if any(isinstance(v, float) for v in values) else "arr:i32"


def control_copy(src, dst, kind):
    """The GGUF model SRC with every 2-D weight quantized to Q8_0 by numpy
    (ggml's reference rounding), or ("f32") moved by 2 ulp-sized relative
    steps (x (1 +- 2^-22), random signs): the Q8_0 and F32 controls."""
    kv, tensors = read_gguf(src)
    kvs = [(k, array_type(v) if t == "arr" else t, v) for k, (t, v) in kv.items()]
    rng = np.random.default_rng(7)
    out = []
    for name, (ne, tname, raw) in tensors.items():
        w = np.frombuffer(raw, "<f4")
        if tname == "F32" and len(ne) == 2 and kind == "q8_0" and ne[0] % 32 == 0:
            out.append((name, "Q8_0", list(ne), q8_0_quantize(w)))
        elif tname == "F32" and kind == "f32":  # every float tensor: norms and biases too
            step = 1 + 2.0 ** -22 * rng.choice([-1.0, 1.0], size=w.shape)
            out.append((name, tname, list(ne), (w * step).astype("<f4").tobytes()))
        else:
            out.append((name, tname, list(ne), raw))
    write_gguf(dst, kvs, out)


def run_llama(jobs):
    spec = {"prompt": PROMPT, "top": TOP, "jobs": jobs}
    jobs_path, out_path = os.path.join(WORK, "jobs.json"), os.path.join(WORK, "llama-out.json")
    json.dump(spec, open(jobs_path, "w"))
    env = dict(os.environ, LT_NODE_MODULES=MODULES)
    p = subprocess.run(["node", os.path.join(HERE, "run_llama.mjs"), jobs_path, out_path], capture_output=True,
                       text=True, env=env)
    if p.returncode != 0 or not os.path.exists(out_path):
        raise RuntimeError("node-llama-cpp failed (exit %d): %s" % (p.returncode, (p.stderr or p.stdout)[-2000:]))
    return json.load(open(out_path))


def compare(ref, got, tol):
    """(max |delta logprob| over the reference's top tokens, greedy
    mismatches where the reference's margin exceeds tol, positions)."""
    worst, mismatches = 0.0, 0
    for rpos, gpos in zip(ref, got):
        gmap = {t: lp for t, lp in gpos}
        for t, lp in rpos[:TOP // 2]:
            # a reference top token missing from the other's top list is at least that far off
            other = gmap.get(t, min(lp2 for _, lp2 in gpos))
            worst = max(worst, abs(other - lp))
        margin = rpos[0][1] - rpos[1][1]
        if margin > tol and gpos[0][0] != rpos[0][0]:
            mismatches += 1
    return worst, mismatches


def effect(ref, base):
    worst = 0.0
    for rpos, bpos in zip(ref, base):
        bmap = {t: lp for t, lp in bpos}
        for t, lp in rpos[:TOP // 2]:
            worst = max(worst, abs(bmap.get(t, min(x for _, x in bpos)) - lp))
    return worst


def main():
    if not os.path.isfile(VOCAB):
        case("vocab", False, "%s is missing (the llama.cpp vocabulary of the shared corpus)" % VOCAB)
        return
    jobs, plans = [], []
    variants = {"llama": [("all7", {}), ("rslora", {"r": 8, "alpha": 8, "rslora": True, "std": 0.15}),
                          ("pattern", {"alpha_pattern": {"v_proj": 16, "down_proj": 4}, "rank_pattern": {"up_proj": 2}}),
                          ("embed", {"embed": True})],
                "qwen2": [("all7", {}), ("rslora", {"r": 8, "alpha": 8, "rslora": True, "std": 0.15})]}
    for seed, (arch, adapters) in enumerate(variants.items()):
        d, weights = make_model(arch, 100 + seed)
        base_gguf = os.path.join(WORK, arch + ".gguf")
        tool("convert", os.path.join(d, "model.safetensors"), "-o", base_gguf, "--base", d, "--vocab", VOCAB)
        gguf_files.append(base_gguf)
        jobs.append({"name": arch + ":base", "model": base_gguf, "lora": None})
        control = os.path.join(WORK, arch + "-control-f16.gguf")
        tool("convert", os.path.join(d, "model.safetensors"), "-o", control, "--base", d, "--vocab", VOCAB,
             "--outtype", "f16")
        gguf_files.append(control)
        jobs.append({"name": arch + ":control-f16", "model": control, "lora": None})
        for kind in ("q8_0", "f32"):
            control = os.path.join(WORK, "%s-control-%s.gguf" % (arch, kind))
            control_copy(base_gguf, control, kind)
            jobs.append({"name": "%s:control-%s" % (arch, kind), "model": control, "lora": None})
        for k, (name, kw) in enumerate(adapters):
            tag = "%s:%s" % (arch, name)
            peft, rho = make_adapter(arch, name, 1000 * (seed + 1) + k, weights, **kw)
            st_merged = os.path.join(WORK, "%s-%s-merged.safetensors" % (arch, name))
            ref = os.path.join(WORK, "%s-%s-ref.gguf" % (arch, name))
            tool("merge", os.path.join(d, "model.safetensors"), peft, "-o", st_merged)
            tool("convert", st_merged, "-o", ref, "--base", d, "--vocab", VOCAB)
            jobs.append({"name": tag + ":reference", "model": ref, "lora": None})
            gguf_files.append(ref)
            entry = {"tag": tag, "arch": arch, "checks": [], "rho": rho}
            for outtype in ("f32", "f16", "q8_0"):
                lora = os.path.join(WORK, "%s-%s-%s.gguf" % (arch, name, outtype))
                tool("convert", peft, "-o", lora, "--base", d, "--outtype", outtype)
                gguf_files.append(lora)
                jobs.append({"name": "%s:lora-%s" % (tag, outtype), "model": base_gguf, "lora": lora})
                entry["checks"].append(("lora-" + outtype, outtype))
            merged_peft = os.path.join(WORK, "%s-%s-gguf-merged-peft.gguf" % (arch, name))
            merged_lora = os.path.join(WORK, "%s-%s-gguf-merged-lora.gguf" % (arch, name))
            tool("merge", base_gguf, peft, "-o", merged_peft)
            tool("merge", base_gguf, os.path.join(WORK, "%s-%s-f32.gguf" % (arch, name)), "-o", merged_lora)
            gguf_files.extend([merged_peft, merged_lora])
            jobs.append({"name": tag + ":gguf-merge-peft", "model": merged_peft, "lora": None})
            jobs.append({"name": tag + ":gguf-merge-lora", "model": merged_lora, "lora": None})
            entry["checks"] += [("gguf-merge-peft", "f32"), ("gguf-merge-lora", "f32")]
            if arch == "llama" and name == "all7":
                bad = os.path.join(WORK, "llama-all7-unpermuted.gguf")
                unpermuted_copy(os.path.join(WORK, "llama-all7-f32.gguf"), bad)
                jobs.append({"name": tag + ":unpermuted", "model": base_gguf, "lora": bad})
                entry["unpermuted"] = True
            plans.append(entry)
    results = run_llama(jobs)
    refused = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False}
    for name, why in sorted(refused.items()):
        case("llama.cpp-ran:" + name, False, "llama.cpp refused: " + why)
    vocab_seen = {v.get("entries") for k, v in results.items() if k.endswith(":vocab")}
    case("llama.cpp:full-vocabulary-softmax", vocab_seen == {V}, "probability entries %s" % vocab_seen)
    for entry in plans:
        tag, arch = entry["tag"], entry["arch"]
        ref, base = results.get(tag + ":reference", {}), results.get(arch + ":base", {})
        if not ref.get("ok") or not base.get("ok"):
            continue
        e = effect(ref["positions"], base["positions"])
        case("%s:adapter-changes-the-model" % tag, e > 0.5, "effect %.3g" % e)
        tols = {}
        for t in ("f32", "f16", "q8_0"):
            control = results.get("%s:control-%s" % (arch, t), {})
            d_t = effect(base["positions"], control["positions"]) if control.get("ok") else 0.0
            tols[t] = FLOOR + 4 * max(1.0, entry["rho"]) * d_t
        for what, outtype in entry["checks"]:
            got = results.get("%s:%s" % (tag, what), {})
            if not got.get("ok"):
                continue
            tol = tols[outtype]
            worst, mism = compare(ref["positions"], got["positions"], tol)
            print("  %s:%s: max |dlogprob| %.3g (tolerance %.3g, adapter effect %.3g, rho %.2f), greedy mismatches %d"
                  % (tag, what, worst, tol, e, entry["rho"], mism))
            case("%s:%s" % (tag, what), worst <= tol and mism == 0 and tol < e / 2,
                 "max |dlogprob| %.3g > tolerance %.3g, %d greedy mismatches, or a tolerance that could not see "
                 "the adapter (effect %.3g)" % (worst, tol, mism, e))
        if entry.get("unpermuted"):
            got = results.get(tag + ":unpermuted", {})
            if got.get("ok"):
                tol = tols["f32"]
                worst, mism = compare(ref["positions"], got["positions"], tol)
                print("  %s:unpermuted: max |dlogprob| %.3g (tolerance %.3g), greedy mismatches %d"
                      % (tag, worst, tol, mism))
                case("%s:unpermuted-adapter-fails-the-check" % tag, worst > 10 * tol,
                     "the unpermuted adapter passed (max |dlogprob| %.3g): the check cannot tell" % worst)
    check_hf_gguf()


def inspect_json(path):
    return json.loads(tool("inspect", "--json", "--tensors", path))


def same_value(a, b, type_name):
    if type_name in ("f32", "f64"):
        return np.float32(a) == np.float32(b) if type_name == "f32" else a == b
    return a == b


def check_hf_gguf():
    out = os.path.join(WORK, "hf-gguf.json")
    env = dict(os.environ, LT_NODE_MODULES=MODULES)
    p = subprocess.run(["node", os.path.join(HERE, "gguf_infos.mjs"), out] + gguf_files, capture_output=True,
                       text=True, env=env)
    if p.returncode != 0:
        case("@huggingface/gguf", False, "exit %d: %s" % (p.returncode, p.stderr[-2000:]))
        return
    parsed = json.load(open(out))
    for path in gguf_files:
        name = "hf-gguf:" + os.path.basename(path)
        hf = parsed.get(path, {"error": "not parsed"})
        if "error" in hf:
            case(name, False, "@huggingface/gguf: " + hf["error"])
            continue
        ours = inspect_json(path)
        problems = []
        if hf["version"] != ours["gguf"]["version"]:
            problems.append("version %s vs %s" % (hf["version"], ours["gguf"]["version"]))
        kv = ours["gguf"]["kv"]
        if list(hf["kv"]) != list(kv):
            problems.append("keys differ: %s" % sorted(set(hf["kv"]) ^ set(kv)))
        for key, value in kv.items():
            h = hf["kv"].get(key)
            if h is None:
                continue
            if isinstance(value, dict):
                if h.get("length") != value["length"] or h.get("type") != value["type"]:
                    problems.append("%s: %s vs %s" % (key, h, value))
            elif isinstance(value, list):
                theirs = h.get("value") or []
                if len(theirs) != len(value) or not all(same_value(a, b, h.get("type"))
                                                        for a, b in zip(theirs, value)):
                    problems.append("%s: %r vs %r" % (key, theirs, value))
            elif not same_value(h.get("value"), value, h.get("type")):
                problems.append("%s: %r vs %r" % (key, h.get("value"), value))
        theirs = [(t["name"], t["dtype"], t["shape"], t["offset"]) for t in hf["tensors"]]
        mine = [(t["name"], t["dtype"], t["shape"], t["offset"]) for t in ours["tensor_list"]]
        if theirs != mine:
            diff = [(a, b) for a, b in zip(theirs, mine) if a != b][:2]
            problems.append("tensor infos differ (%d vs %d): %s" % (len(theirs), len(mine), diff))
        case(name, not problems, "; ".join(problems[:4]))


try:
    main()
except Exception as e:  # a tool that failed is a failure of this test, said plainly
    case("runtime", False, str(e))
sys.exit(1 if failures else 0)
