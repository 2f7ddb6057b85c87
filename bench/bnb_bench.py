#!/usr/bin/env python3
"""bitsandbytes merge benchmark: loratool merge of a rank-16 adapter into an
NF4 (double quant, blocksize 64, bf16 compute) llama-shaped checkpoint of
about 1 GB, against cp of the merged output (the bytes loratool writes:
the dequantized bf16 model, about 3 GB), run alternately REPEATS times;
prints medians, the median of the paired ratios loratool / cp, and peak
RSS per process (GNU time).

The packed codes and absmax bytes are random (the timing does not depend on
the values); the tables are bitsandbytes' (spec/bnb.md), so loratool
accepts the file.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testdata"))
sys.path.insert(0, HERE)
import make_bnb_ref  # noqa: E402
import merge_bench  # noqa: E402
import stwrite  # noqa: E402

SHAPES, HIDDEN, VOCAB = merge_bench.SHAPES, merge_bench.HIDDEN, merge_bench.VOCAB


def nf4_entries(rng, name, shape):
    n = int(np.prod(shape))
    blocks = -(-n // 64)
    nested = -(-blocks // 256)
    state = {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": list(shape),
             "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.0234375}
    return [
        (name, "U8", rng.integers(0, 256, size=(n + 1) // 2, dtype=np.uint8).tobytes(), [(n + 1) // 2, 1]),
        (name + ".absmax", rng.integers(0, 256, size=blocks, dtype=np.uint8)),
        (name + ".quant_map", make_bnb_ref.code_4bit("nf4")),
        (name + ".nested_absmax", (rng.random(nested, dtype=np.float32) * np.float32(0.02)).astype(np.float32)),
        (name + ".nested_quant_map", make_bnb_ref.dynamic_map()),
        (name + ".quant_state.bitsandbytes__nf4", np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)),
    ]


def make_base(directory, layers):
    path = os.path.join(directory, "model.safetensors")
    if os.path.exists(path):
        return path
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(3)
    bf16 = lambda shape: merge_bench.raw_tensor(rng, shape, "BF16")  # noqa: E731
    entries = [("model.embed_tokens.weight", "BF16", bf16((VOCAB, HIDDEN)), [VOCAB, HIDDEN])]
    for layer in range(layers):
        for module, shape in SHAPES.items():
            entries += nf4_entries(rng, f"model.layers.{layer}.{module}.weight", shape)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            entries.append((f"model.layers.{layer}.{norm}.weight", "BF16", bf16((HIDDEN,)), [HIDDEN]))
    entries.append(("model.norm.weight", "BF16", bf16((HIDDEN,)), [HIDDEN]))
    entries.append(("lm_head.weight", "BF16", bf16((VOCAB, HIDDEN)), [VOCAB, HIDDEN]))
    stwrite.write(path + ".tmp", entries, {"format": "pt"})
    os.rename(path + ".tmp", path)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "torch_dtype": "bfloat16",
                   "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                           "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                           "bnb_4bit_compute_dtype": "bfloat16"}}, f)
    return path


def timed(cmd, work):
    """merge_bench.timed plus the command's CPU seconds (user + system):
    wall time on a shared machine depends on the other load, CPU time much
    less, so both are printed."""
    report = os.path.join(work, "time_cpu.txt")
    start = time.perf_counter()
    status = subprocess.call(["/usr/bin/time", "-f", "%M %U %S", "-o", report] + cmd, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"benchmark command failed ({status}): {' '.join(cmd)}")
    with open(report) as f:
        rss, user, system = f.read().split()[-3:]
    return elapsed, int(rss) / 1024.0, float(user) + float(system)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/loratool")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    base_dir = os.path.join(args.work, f"nf4_base_{args.layers}")
    base = make_base(base_dir, args.layers)
    adapter = os.path.join(args.work, f"adapter_{args.layers}")
    merge_bench.make_adapter(adapter, args.layers)
    out_dir = os.path.join(args.work, "nf4_out")
    merged = os.path.join(out_dir, "model.safetensors")
    copy = os.path.join(args.work, "nf4_out_copy.safetensors")
    runs = {"loratool": [], "cp": []}
    for _ in range(args.repeats):
        for path in (merged, copy):
            if os.path.exists(path):
                os.unlink(path)
        runs["loratool"].append(timed([args.tool, "merge", base_dir, adapter, "-o", out_dir], args.work))
        runs["cp"].append(timed(["cp", merged, copy], args.work))
    out_size = os.path.getsize(merged)
    for path in (merged, copy):
        os.unlink(path)
    ratio = statistics.median(a[0] / b[0] for a, b in zip(runs["loratool"], runs["cp"]))
    print(f"bnb merge benchmark: NF4 double-quant base of {os.path.getsize(base) / 1e9:.2f} GB "
          f"({args.layers} llama layers), rank-16 adapter on 7 projections, output BF16 "
          f"{out_size / 1e9:.2f} GB; {args.repeats} alternating runs, medians")
    for name, v in runs.items():
        print(f"  {name:10s} {statistics.median(t for t, _, _ in v):7.2f} s   "
              f"CPU {statistics.median(c for _, _, c in v):6.2f} s   peak RSS {max(r for _, r, _ in v):8.1f} MiB")
    print(f"  ratio loratool / cp of the output {ratio:.2f}x   (target <= 1.5x)")
    print("  runs (loratool / cp, wall s): "
          + "  ".join(f"{a[0]:.1f}/{b[0]:.1f}" for a, b in zip(runs["loratool"], runs["cp"])))


if __name__ == "__main__":
    main()
