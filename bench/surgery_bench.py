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
   on 2 threads), medians of --runs runs, wall and CPU seconds: resize of
   (1), combine of two such adapters with --rank 16, extract rank 16 from 4
   layers of 7B-shaped BF16 base / fine-tuned pairs.
"""
import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
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
    """Wall seconds, CPU seconds (user + sys) and the child's stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.stdout


def numpy_env():
    """numpy's BLAS on 2 threads, its kernel chosen by OpenBLAS itself."""
    env = dict(os.environ)
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    env["OPENBLAS_NUM_THREADS"] = "2"
    return env


def make_adapter_7b(path, seed):
    if os.path.exists(os.path.join(path, "adapter_model.safetensors")):
        return
    rng = np.random.default_rng(seed)
    modules = {}
    for layer in range(32):
        for mod, (out_f, in_f) in SHAPES.items():
            a = rng.standard_normal((64, in_f), dtype=np.float32) * 0.01
            b = rng.standard_normal((out_f, 64), dtype=np.float32) * 0.01
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


def versus_numpy(args, big):
    """Section 4: loratool and the numpy baselines side by side."""
    runs = args.runs
    other = os.path.join(args.work, "adapter_7b_r64_b")
    make_adapter_7b(other, 12)
    base, tuned = make_models_7b(args.work, 4)
    out = os.path.join(args.work, "vs_numpy_out")
    baseline = os.path.join(os.path.dirname(os.path.abspath(__file__)), "surgery_baseline.py")
    cases = [
        ("resize r64 -> 16", [args.tool, "resize", big, "-o", out, "--rank", "16"],
         ["resize", big, "16"]),
        ("combine 2 x r64 --rank 16", [args.tool, "combine", big, other, "-o", out, "--rank", "16"],
         ["combine", "16", big, other]),
        ("extract rank 16, 4 layers", [args.tool, "extract", base, tuned, "-o", out, "--rank", "16"],
         ["extract", base, tuned, "16", "4"]),
    ]
    print(f"\n4. loratool vs numpy doing the same method (median of {runs} runs; CPU = user + sys)")
    blas = None
    results = {}
    for label, lt_cmd, np_args in cases:
        lt, nps = [], []
        for _ in range(runs):
            subprocess.run(["rm", "-rf", out], check=True)
            lt.append(timed(lt_cmd)[:2])
            w, c, text = timed([sys.executable, baseline] + np_args, env=numpy_env())
            nps.append((w, c))
            blas = json.loads(text)["blas"]
        lw, lc = statistics.median(x[0] for x in lt), statistics.median(x[1] for x in lt)
        nw, nc = statistics.median(x[0] for x in nps), statistics.median(x[1] for x in nps)
        results[label] = (lw, lc, nw, nc)
        print(f"   {label:27s} loratool {lw:6.2f} s wall {lc:6.2f} s CPU | numpy {nw:6.2f} s wall "
              f"{nc:6.2f} s CPU | ratio wall {lw / nw:.2f} CPU {lc / nc:.2f}")
    rz = results["resize r64 -> 16"]
    cb = results["combine 2 x r64 --rank 16"]
    ex = results["extract rank 16, 4 layers"]
    print(f"   targets: resize wall ratio {rz[0] / rz[2]:.2f} (<= 0.35); combine / resize {cb[0] / rz[0]:.2f} (<= 4); "
          f"extract wall ratio {ex[0] / ex[2]:.2f} (<= 1)")
    print("   numpy's BLAS (OPENBLAS_NUM_THREADS=2, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset):")
    seen = set()
    for line in blas or []:
        if line.strip().startswith("config:") and line not in seen:
            seen.add(line)
            print("     " + line.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/loratool")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--runs", type=int, default=3, help="runs per case of section 4 (medians)")
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
