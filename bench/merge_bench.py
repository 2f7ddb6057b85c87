#!/usr/bin/env python3
"""merge benchmark: loratool merge vs cp of the base vs a numpy baseline.

Makes a llama-shaped base of about 1 GB (TinyLlama-1.1B layer shapes, fewer
layers) in f16 and bf16 and a rank-16 adapter on q,k,v,o,gate,up,down, then
runs the commands in turn (A B C A B C ...), REPEATS times, and prints
medians, the ratios loratool / cp (the median of the ratios of runs made
side by side, which keeps it fair when the machine's speed drifts), and
each process's peak RSS (GNU time).  loratool leaves write-back to the
kernel, as cp does; `loratool --fsync` is compared with cp + sync.

The numpy baseline does what a script would: for each tensor, load it,
W + s * B @ A in float32, cast back, write a new safetensors file.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata"))
import stwrite  # noqa: E402

HIDDEN, INTER, KV, VOCAB, RANK, ALPHA = 2048, 5632, 256, 32000, 16, 32
SHAPES = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (KV, HIDDEN),
          "self_attn.v_proj": (KV, HIDDEN), "self_attn.o_proj": (HIDDEN, HIDDEN),
          "mlp.gate_proj": (INTER, HIDDEN), "mlp.up_proj": (INTER, HIDDEN),
          "mlp.down_proj": (HIDDEN, INTER)}


def raw_tensor(rng, shape, dtype):
    values = (rng.standard_normal(shape, dtype=np.float32) * 0.02)
    if dtype == "F16":
        return values.astype(np.float16).tobytes()
    return stwrite.bf16_bits(values).tobytes()


def make_base(path, layers, dtype, seed):
    if os.path.exists(path):
        return
    rng = np.random.default_rng(seed)
    entries = [("model.embed_tokens.weight", dtype, raw_tensor(rng, (VOCAB, HIDDEN), dtype), [VOCAB, HIDDEN])]
    for layer in range(layers):
        for module, shape in SHAPES.items():
            name = f"model.layers.{layer}.{module}.weight"
            entries.append((name, dtype, raw_tensor(rng, shape, dtype), list(shape)))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            entries.append((f"model.layers.{layer}.{norm}.weight", dtype, raw_tensor(rng, (HIDDEN,), dtype), [HIDDEN]))
    entries.append(("model.norm.weight", dtype, raw_tensor(rng, (HIDDEN,), dtype), [HIDDEN]))
    entries.append(("lm_head.weight", dtype, raw_tensor(rng, (VOCAB, HIDDEN), dtype), [VOCAB, HIDDEN]))
    stwrite.write(path + ".tmp", entries, {"format": "pt"})
    os.rename(path + ".tmp", path)


def make_sparse_base(path, layers, dtype):
    """A llama-shaped base of LAYERS layers whose tensor data is one hole
    (zeros): a 10 GB model in no disk space and no time, for measuring
    memory, which must not grow with the base."""
    header, offset = {}, 0

    def add(name, shape):
        nonlocal offset
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    add("model.embed_tokens.weight", (VOCAB, HIDDEN))
    for layer in range(layers):
        for module, shape in SHAPES.items():
            add(f"model.layers.{layer}.{module}.weight", shape)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            add(f"model.layers.{layer}.{norm}.weight", (HIDDEN,))
    add("model.norm.weight", (HIDDEN,))
    add("lm_head.weight", (VOCAB, HIDDEN))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)


def make_adapter(path, layers):
    if os.path.exists(os.path.join(path, "adapter_model.safetensors")):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(7)
    tensors = []
    for layer in range(layers):
        for module, (out_f, in_f) in SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{module}"
            tensors.append((key + ".lora_A.weight", (rng.standard_normal((RANK, in_f)) * 0.05).astype(np.float32)))
            tensors.append((key + ".lora_B.weight", (rng.standard_normal((out_f, RANK)) * 0.01).astype(np.float32)))
    stwrite.write(os.path.join(path, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": RANK, "lora_alpha": ALPHA,
                   "target_modules": [m.split(".")[1] for m in SHAPES]}, f)


def numpy_merge(base_path, adapter_path, out_path):
    """The straightforward numpy merge a user would write."""
    def header(path):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            return json.loads(f.read(n)), 8 + n
    bh, bstart = header(base_path)
    ah, astart = header(os.path.join(adapter_path, "adapter_model.safetensors"))
    base = np.memmap(base_path, dtype=np.uint8, mode="r")
    adapter = np.memmap(os.path.join(adapter_path, "adapter_model.safetensors"), dtype=np.uint8, mode="r")
    scale = ALPHA / RANK
    out = []
    for name, info in bh.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        raw = base[bstart + s:bstart + e]
        key = "base_model.model." + name[:-len(".weight")]
        if key + ".lora_A.weight" in ah:
            def load(k):
                s2, e2 = ah[k]["data_offsets"]
                return np.frombuffer(adapter[astart + s2:astart + e2], np.float32).reshape(ah[k]["shape"])
            if info["dtype"] == "F16":
                w = np.frombuffer(raw, np.float16).astype(np.float32)
            else:
                w = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            w = w.reshape(info["shape"]) + scale * (load(key + ".lora_B.weight") @ load(key + ".lora_A.weight"))
            data = w.astype(np.float16).tobytes() if info["dtype"] == "F16" else stwrite.bf16_bits(w).tobytes()
        else:
            data = bytes(raw)
        out.append((name, info["dtype"], data, info["shape"]))
    stwrite.write(out_path, out, bh.get("__metadata__"))


def timed(cmd, work):
    """Wall seconds and peak RSS (MiB) of one run, from GNU time: it forks
    the command from a small process, so the peak is the command's own
    (a child of this big Python process would inherit its RSS high-water
    mark across exec)."""
    report = os.path.join(work, "time.txt")
    start = time.perf_counter()
    status = subprocess.call(["/usr/bin/time", "-f", "%M", "-o", report] + cmd, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"benchmark command failed ({status}): {' '.join(cmd)}")
    with open(report) as f:
        peak_kib = int(f.read().split()[-1])
    return elapsed, peak_kib / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/loratool")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big-layers", type=int, default=110)
    ap.add_argument("--numpy-only-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.numpy_only_child:
        numpy_merge(*args.numpy_only_child)
        return
    os.makedirs(args.work, exist_ok=True)
    adapter = os.path.join(args.work, "adapter")
    make_adapter(adapter, args.layers)
    me = os.path.abspath(__file__)
    print(f"merge benchmark: llama-shaped base, {args.layers} layers, rank-{RANK} adapter on 7 projections;"
          f" {args.repeats} alternating runs, medians; peak RSS per process")
    for dtype in ("F16", "BF16"):
        base = os.path.join(args.work, f"base_{dtype.lower()}.safetensors")
        make_base(base, args.layers, dtype, 1 if dtype == "F16" else 2)
        size = os.path.getsize(base)
        out = os.path.join(args.work, "out.safetensors")
        commands = {
            "cp": ["cp", base, out],
            "cp+sync": ["sh", "-c", f"cp {base} {out} && sync {out}"],
            "loratool": [args.tool, "merge", base, adapter, "-o", out],
            "lt --fsync": [args.tool, "merge", base, adapter, "-o", out, "--fsync"],
            "numpy": [sys.executable, me, "--numpy-only-child", base, adapter, out],
        }
        runs = {k: [] for k in commands}
        for _ in range(args.repeats):
            for name, cmd in commands.items():
                if os.path.exists(out):
                    os.unlink(out)
                runs[name].append(timed(cmd, args.work))
        os.unlink(out)
        med = {k: (statistics.median(t for t, _ in v), max(r for _, r in v)) for k, v in runs.items()}

        def paired(a, b):
            return statistics.median(x[0] / y[0] for x, y in zip(runs[a], runs[b]))
        print(f"\n{dtype} base, {size / 1e9:.2f} GB")
        for name in commands:
            print(f"  {name:10s} {med[name][0]:7.2f} s   peak RSS {med[name][1]:8.1f} MiB")
        print(f"  ratio loratool / cp    {paired('loratool', 'cp'):.2f}x   (target <= 1.3x)")
        print(f"  ratio loratool --fsync / cp+sync {paired('lt --fsync', 'cp+sync'):.2f}x   (both on disk)")
        print(f"  ratio numpy / loratool {paired('numpy', 'loratool'):.2f}x")
        print(f"  loratool peak RSS {med['loratool'][1]:.1f} MiB (target <= 256 MiB)")

    # memory does not grow with the base: the same adapter into a 10 GB base
    big = os.path.join(args.work, "base_10g_sparse.safetensors")
    make_sparse_base(big, args.big_layers, "BF16")
    out = os.path.join(args.work, "out_10g.safetensors")
    seconds, peak = timed([args.tool, "merge", big, adapter, "-o", out], args.work)
    size = os.path.getsize(out)
    os.unlink(out)
    os.unlink(big)
    print(f"\nBF16 base of {size / 1e9:.1f} GB ({args.big_layers} layers, zeros), the same adapter: "
          f"{seconds:.1f} s, peak RSS {peak:.1f} MiB (target <= 256 MiB)")


if __name__ == "__main__":
    main()
