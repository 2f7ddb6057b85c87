#!/usr/bin/env python3
"""resize / combine / extract benchmarks (make bench): loratool against the
numpy dense-SVD baseline that PEFT's svd combination and kohya's resize use.

1. resize a llama-7B-shaped adapter (32 layers, hidden 4096, intermediate
   11008, rank 64 on the 7 projections, BF16) to rank 16: loratool's time.
2. one 4096 x 4096 module, rank 64 -> 16: loratool resize (QR-core SVD)
   vs numpy's dense SVD of the same delta; ratio and singular values.
3. extract from a 4096 x 4096 rank-8 delta plus small noise: loratool
   (randomized SVD) vs numpy's dense SVD: time and relative error.
4. against numpy doing the same methods (bench/surgery_baseline.py, OpenBLAS
   on 2 threads), medians of --runs rounds that each run every command once
   (interleaved), wall and CPU seconds and peak RSS: resize of (1) with
   --rank 16, and on an adapter whose products have 16 dominant values with
   --rank 16, --energy 0.999 and --sv-ratio 100, which all keep 16 (the
   rules must cost the same as a fixed rank), combine of two such adapters
   with --rank 16, extract rank 16 from 4 layers of 7B-shaped BF16 base /
   fine-tuned pairs; each ratio against its target in issue 17, met or not,
   and numpy's BLAS library, build and kernel.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata"))
import stwrite  # noqa: E402

SHAPES = {"self_attn.q_proj": (4096, 4096), "self_attn.k_proj": (4096, 4096),
          "self_attn.v_proj": (4096, 4096), "self_attn.o_proj": (4096, 4096),
          "mlp.gate_proj": (11008, 4096), "mlp.up_proj": (11008, 4096), "mlp.down_proj": (4096, 11008)}


def write_adapter(path, modules, rank, alpha, dtype="F32"):
    os.makedirs(path, exist_ok=True)
    tensors = []
    for name, (a, b) in modules.items():
        key = "base_model.model." + name
        if dtype == "BF16":
            tensors.append(stwrite.bf16(key + ".lora_A.weight", a))
            tensors.append(stwrite.bf16(key + ".lora_B.weight", b))
        else:
            tensors.append((key + ".lora_A.weight", a.astype(np.float32)))
            tensors.append((key + ".lora_B.weight", b.astype(np.float32)))
    stwrite.write(os.path.join(path, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": alpha,
                   "target_modules": sorted({n.split(".")[-1] for n in modules})}, f)


def run(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def read_factors(path, name):
    with open(os.path.join(path, "adapter_model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    def get(key):
        info = header[key]
        s, e = info["data_offsets"]
        return np.frombuffer(data[s:e], np.float32).reshape(info["shape"]).astype(np.float64)
    key = "base_model.model." + name
    return get(key + ".lora_B.weight"), get(key + ".lora_A.weight")


def timed(cmd, env=None):
    """Wall seconds, CPU seconds (user + sys), peak resident MiB and stdout
    of one command.  GNU time measures it: the rusage of a child of this
    (large) Python process would start from this process's peak RSS."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        start = time.perf_counter()
        res = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf.name] + cmd, check=True,
                             stdout=subprocess.PIPE, env=env)
        wall = time.perf_counter() - start
        user, sys_s, rss_kb = tf.read().split()[-3:]
    return wall, float(user) + float(sys_s), int(rss_kb) / 1024, res.stdout


def numpy_env():
    """numpy's BLAS on 2 threads, its kernel chosen by OpenBLAS itself."""
    env = dict(os.environ)
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    env["OPENBLAS_NUM_THREADS"] = "2"
    return env


def make_adapter_7b(path, seed, gap=False):
    """224 modules of rank 64, BF16.  gap: B's columns 16.. scaled by 1e-3,
    so every module's product has 16 values far above the rest and the
    rank rules of section 4 keep exactly 16 everywhere, as --rank 16 does."""
    if os.path.exists(os.path.join(path, "adapter_model.safetensors")):
        return
    rng = np.random.default_rng(seed)
    modules = {}
    col_scale = np.where(np.arange(64) < 16, 1.0, 1e-3).astype(np.float32) if gap else np.float32(1)
    for layer in range(32):
        for mod, (out_f, in_f) in SHAPES.items():
            a = rng.standard_normal((64, in_f), dtype=np.float32) * 0.01
            b = rng.standard_normal((out_f, 64), dtype=np.float32) * 0.01 * col_scale
            modules[f"model.layers.{layer}.{mod}"] = (a, b)
    write_adapter(path, modules, 64, 128, "BF16")


def make_models_7b(work, layers):
    """base and fine-tuned: 4 llama-7B-shaped layers in BF16; tuned adds a
    rank-32 delta and small noise to each projection."""
    base = os.path.join(work, f"model_7b_{layers}l_base.safetensors")
    tuned = os.path.join(work, f"model_7b_{layers}l_tuned.safetensors")
    if os.path.exists(base) and os.path.exists(tuned):
        return base, tuned
    rng = np.random.default_rng(17)
    tb, tt = [], []
    for layer in range(layers):
        for mod, (out_f, in_f) in SHAPES.items():
            name = f"model.layers.{layer}.{mod}.weight"
            w = rng.standard_normal((out_f, in_f), dtype=np.float32) * 0.02
            d = (rng.standard_normal((out_f, 32), dtype=np.float32) * 0.01) @ \
                (rng.standard_normal((32, in_f), dtype=np.float32) * 0.01)
            d += rng.standard_normal((out_f, in_f), dtype=np.float32) * 1e-4
            tb.append(stwrite.bf16(name, w))
            tt.append(stwrite.bf16(name, w + d))
    stwrite.write(base + ".tmp", tb)
    stwrite.write(tuned + ".tmp", tt)
    os.replace(base + ".tmp", base)
    os.replace(tuned + ".tmp", tuned)
    return base, tuned


def read_factors_any(path, name):
    """B and A of one module, F32 or BF16, as float64."""
    with open(os.path.join(path, "adapter_model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    def get(key):
        info = header[key]
        s, e = info["data_offsets"]
        raw = data[s:e]
        if info["dtype"] == "BF16":
            x = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.frombuffer(raw, np.float32)
        return x.reshape(info["shape"]).astype(np.float64)
    key = "base_model.model." + name
    return get(key + ".lora_B.weight"), get(key + ".lora_A.weight")


def mean_rank(report):
    mods = json.loads(report)["modules"]
    return sum(m["new_rank"] for m in mods) / len(mods)


def verdict(value, limit):
    return f"{value:.2f} (target <= {limit:g}: {'met' if value <= limit else 'NOT MET'})"


def versus_numpy(args, big):
    """Section 4: loratool and the numpy baselines side by side, every run
    of every command interleaved (one round runs each once), medians."""
    runs = args.runs
    other = os.path.join(args.work, "adapter_7b_r64_b")
    make_adapter_7b(other, 12)
    gap = os.path.join(args.work, "adapter_7b_r64_gap16")
    make_adapter_7b(gap, 13, gap=True)
    base, tuned = make_models_7b(args.work, 4)
    out = os.path.join(args.work, "vs_numpy_out")
    baseline = os.path.join(os.path.dirname(os.path.abspath(__file__)), "surgery_baseline.py")
    lt = lambda *a: [args.tool] + list(a) + ["-o", out, "--json"]
    npy = lambda *a: [sys.executable, baseline] + list(a)
    cases = [  # label, command, numpy?
        ("resize --rank 16", lt("resize", big, "--rank", "16"), False),
        ("resize numpy", npy("resize", big, "16"), True),
        ("gap16: resize --rank 16", lt("resize", gap, "--rank", "16"), False),
        ("gap16: resize --energy 0.999", lt("resize", gap, "--energy", "0.999"), False),
        ("gap16: resize --sv-ratio 100", lt("resize", gap, "--sv-ratio", "100"), False),
        ("combine --rank 16", lt("combine", big, other, "--rank", "16"), False),
        ("combine numpy", npy("combine", "16", big, other), True),
        ("extract --rank 16", lt("extract", base, tuned, "--rank", "16"), False),
        ("extract numpy", npy("extract", base, tuned, "16", "4"), True),
    ]
    print(f"\n4. loratool vs numpy doing the same method: medians of {runs} rounds, each round running "
          f"every command once, interleaved\n   (wall and CPU = user + sys seconds, peak RSS of the process; "
          f"resize/combine: 7B-shaped r64 BF16 adapters; gap16: one whose\n   "
          f"products have 16 dominant values, so each rule keeps 16 everywhere; extract: 4 7B-shaped BF16 layers)")
    blas, samples, ranks = None, {c[0]: [] for c in cases}, {}
    for _ in range(runs):
        for label, cmd, is_numpy in cases:
            subprocess.run(["rm", "-rf", out], check=True)
            wall, cpu, rss, text = timed(cmd, env=numpy_env() if is_numpy else None)
            samples[label].append((wall, cpu, rss))
            if is_numpy:
                blas = json.loads(text)["blas"]
            elif "resize" in label:
                ranks[label] = mean_rank(text)
    med = {}
    for label, _, _ in cases:
        xs = samples[label]
        med[label] = tuple(statistics.median(x[i] for x in xs) for i in range(2)) + (max(x[2] for x in xs),)
        w, c, r = med[label]
        spread = f"{min(x[0] for x in xs):.2f}-{max(x[0] for x in xs):.2f}"
        extra = f"  mean new rank {ranks[label]:.2f}" if label in ranks else ""
        print(f"   {label:32s} {w:7.2f} s wall ({spread}) {c:7.2f} s CPU {r:7.0f} MiB{extra}")
    rz, rn = med["resize --rank 16"], med["resize numpy"]
    cb, cn = med["combine --rank 16"], med["combine numpy"]
    ex, en = med["extract --rank 16"], med["extract numpy"]
    rg = med["gap16: resize --rank 16"]
    re, rr = med["gap16: resize --energy 0.999"], med["gap16: resize --sv-ratio 100"]
    print("   targets (issue 17), on medians:")
    print(f"     resize wall / numpy wall         {verdict(rz[0] / rn[0], 0.35)}; CPU ratio {rz[1] / rn[1]:.2f}")
    print(f"     gap16 --energy / --rank wall     {verdict(re[0] / rg[0], 1.1)}; CPU ratio {re[1] / rg[1]:.2f}")
    print(f"     gap16 --sv-ratio / --rank wall   {verdict(rr[0] / rg[0], 1.1)}; CPU ratio {rr[1] / rg[1]:.2f}")
    print(f"     combine wall / resize wall       {verdict(cb[0] / rz[0], 4)}; CPU ratio {cb[1] / rz[1]:.2f}; "
          f"vs numpy wall {cb[0] / cn[0]:.2f}")
    print(f"     extract wall / numpy wall        {verdict(ex[0] / en[0], 1)}; CPU ratio {ex[1] / en[1]:.2f}")
    print(f"     extract peak RSS {ex[2]:.0f} MiB (numpy {en[2]:.0f} MiB; the two models are "
          f"{2 * os.path.getsize(base) / 2**20:.0f} MiB)")
    print(f"   numpy {np.__version__}; its BLAS (OPENBLAS_NUM_THREADS=2, OPENBLAS_CORETYPE and "
          f"OPENBLAS_L2_SIZE unset):")
    seen = set()
    for line in blas or []:
        if line not in seen:
            seen.add(line)
            print("     " + line.strip())
    load = os.getloadavg()
    print(f"   load average at the end {load[0]:.1f} on {os.cpu_count()} CPUs (a busy machine inflates walls)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/loratool")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--runs", type=int, default=5, help="runs per case of section 4 (medians)")
    ap.add_argument("--only-numpy", action="store_true", help="section 4 alone")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rng = np.random.default_rng(11)

    big = os.path.join(args.work, "adapter_7b_r64")
    make_adapter_7b(big, 11)
    if args.only_numpy:
        versus_numpy(args, big)
        return
    out = os.path.join(args.work, "resized")
    t = run([args.tool, "resize", big, "-o", out, "--rank", "16"])
    print("surgery benchmark (wall seconds, one run each; numpy uses its LAPACK)")
    print(f"\n1. resize llama-7B-shaped adapter (224 modules, rank 64 -> 16): loratool {t:.2f} s (target <= 10 s)")

    one = os.path.join(args.work, "adapter_4096_r64")
    a = rng.standard_normal((64, 4096)) * 0.02
    b = rng.standard_normal((4096, 64)) * 0.02
    write_adapter(one, {"model.layers.0.self_attn.q_proj": (a, b)}, 64, 64)
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    t_lt = run([args.tool, "resize", one, "-o", out + "_one", "--rank", "16"])
    start = time.perf_counter()
    s_np = np.linalg.svd(b32 @ a32, compute_uv=False)
    t_np = time.perf_counter() - start
    bb, aa = read_factors(out + "_one", "model.layers.0.self_attn.q_proj")
    s_lt = np.linalg.svd(bb @ aa, compute_uv=False)[:16]
    rel = np.max(np.abs(s_lt - s_np[:16]) / s_np[:16])
    print(f"\n2. one 4096x4096 module, rank 64 -> 16 (whole process, incl. file I/O):")
    print(f"   loratool {t_lt:.3f} s, numpy dense SVD {t_np:.2f} s: ratio numpy / loratool {t_np / t_lt:.0f}x (target >= 500x)")
    print(f"   top-16 singular values, max relative difference {rel:.2e}")

    base_path = os.path.join(args.work, "extract_base.safetensors")
    tuned_path = os.path.join(args.work, "extract_tuned.safetensors")
    w = rng.standard_normal((4096, 4096), dtype=np.float32) * 0.02
    delta = (rng.standard_normal((4096, 8)) @ rng.standard_normal((8, 4096))) * 1e-3
    noise = rng.standard_normal((4096, 4096)) * 1e-6
    tuned = (w + delta + noise).astype(np.float32)
    name = "model.layers.0.self_attn.q_proj.weight"
    stwrite.write(base_path, [(name, w)])
    stwrite.write(tuned_path, [(name, tuned)])
    t_lt = run([args.tool, "extract", base_path, tuned_path, "-o", out + "_ex", "--rank", "8"])
    d = tuned.astype(np.float64) - w
    start = time.perf_counter()
    s = np.linalg.svd(d, compute_uv=False)
    t_np = time.perf_counter() - start
    bb, aa = read_factors(out + "_ex", "model.layers.0.self_attn.q_proj")
    err_lt = np.linalg.norm(d - bb @ aa) / np.linalg.norm(d)
    err_np = np.sqrt(np.sum(s[8:] ** 2) / np.sum(s ** 2))  # Eckart-Young optimum
    print(f"\n3. extract rank 8 from a 4096x4096 rank-8 delta + noise 1e-6:")
    print(f"   loratool {t_lt:.2f} s (randomized SVD), numpy dense SVD (values only) {t_np:.2f} s: ratio {t_np / t_lt:.1f}x")
    print(f"   relative error ||dW - B A|| / ||dW||: loratool {err_lt:.3e}, numpy optimum {err_np:.3e}")
    versus_numpy(args, big)


if __name__ == "__main__":
    main()
