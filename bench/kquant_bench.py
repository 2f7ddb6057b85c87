#!/usr/bin/env python3
"""K-quant throughput: loratool's re-quantization beside llama.cpp's own
llama-quantize, on the same tensors.

A llama-shaped F16 GGUF model (LAYERS layers of the merge benchmark's
shapes, bench/merge_bench.py) is quantized two ways, for each of Q4_K,
Q5_K and Q6_K, alternating, REPEATS times:

  llama.cpp  llama-quantize --pure --token-embedding-type f16
             --output-tensor-type f16 base.gguf out.gguf TYPE THREADS
             (every 2-D projection in TYPE; embeddings and output stay F16)
  loratool   merge base.gguf adapter/ -o out.gguf --dtype TYPE
             (a rank-16 adapter on the same 7 projections a layer: each is
             read, merged in float64 and quantized to TYPE)

and loratool again merging the same adapter into its own TYPE output (the
re-quantization of a K-quant model: dequantize, merge, quantize).  Printed:
median wall seconds, quantized (merged) elements per second, peak RSS, and
whether loratool's bytes equal llama-quantize's when the adapter's lora_B
is zero (the merged values are then the F16 values themselves).

llama-quantize is found as $LLAMA_QUANTIZE or on PATH (build it from
llama.cpp yourself; never part of this repository); without it only
loratool is measured and the peer is reported as "not measured".
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "testdata"))
sys.path.insert(0, HERE)
import make_merge_gguf_ref as gg  # noqa: E402
import merge_bench  # noqa: E402
import stwrite  # noqa: E402

HIDDEN, INTER, KV, VOCAB, RANK = merge_bench.HIDDEN, merge_bench.INTER, merge_bench.KV, merge_bench.VOCAB, 16
N_HEAD, N_KV = HIDDEN // 128, KV // 128
GGUF_NAME = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
TYPES = ("Q4_K", "Q5_K", "Q6_K")


def make_base(path, layers):
    if os.path.exists(path):
        return
    rng = np.random.default_rng(11)

    def f16(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.02)).astype(np.float16).tobytes()

    def f32(n):
        return np.ones(n, np.float32).tobytes()

    tensors = [("token_embd.weight", "F16", [HIDDEN, VOCAB], f16(VOCAB, HIDDEN))]
    for layer in range(layers):
        tensors.append(("blk.%d.attn_norm.weight" % layer, "F32", [HIDDEN], f32(HIDDEN)))
        for module, (rows, cols) in merge_bench.SHAPES.items():
            tensors.append(("blk.%d.%s.weight" % (layer, GGUF_NAME[module]), "F16", [cols, rows], f16(rows, cols)))
        tensors.append(("blk.%d.ffn_norm.weight" % layer, "F32", [HIDDEN], f32(HIDDEN)))
    tensors.append(("output_norm.weight", "F32", [HIDDEN], f32(HIDDEN)))
    tensors.append(("output.weight", "F16", [HIDDEN, VOCAB], f16(VOCAB, HIDDEN)))
    kvs = [("general.architecture", "str", "llama"), ("general.name", "str", "kquant-bench"),
           ("general.file_type", "u32", 1),
           ("llama.block_count", "u32", layers), ("llama.context_length", "u32", 4096),
           ("llama.embedding_length", "u32", HIDDEN), ("llama.feed_forward_length", "u32", INTER),
           ("llama.attention.head_count", "u32", N_HEAD), ("llama.attention.head_count_kv", "u32", N_KV),
           ("llama.rope.dimension_count", "u32", 128), ("llama.rope.freq_base", "f32", 10000.0),
           ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5), ("llama.vocab_size", "u32", VOCAB)]
    gg.write_gguf(path + ".tmp", kvs, tensors)
    os.rename(path + ".tmp", path)


def make_adapter(path, layers, zero):
    if os.path.exists(os.path.join(path, "adapter_model.safetensors")):
        return
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(7)
    tensors = []
    for layer in range(layers):
        for module, (rows, cols) in merge_bench.SHAPES.items():
            key = "base_model.model.model.layers.%d.%s" % (layer, module)
            a = (rng.standard_normal((RANK, cols)) * 0.05).astype(np.float32)
            b = np.zeros((rows, RANK), np.float32) if zero else (rng.standard_normal((rows, RANK)) * 0.01).astype(np.float32)
            tensors += [(key + ".lora_A.weight", a), (key + ".lora_B.weight", b)]
    stwrite.write(os.path.join(path, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK,
                   "target_modules": [m.split(".")[1] for m in merge_bench.SHAPES]}, f)


def timed(cmd, work):
    """merge_bench.timed, with the command's stderr (loratool's re-quantization
    warning, llama-quantize's log) kept in WORK/kq_stderr.log."""
    with open(os.path.join(work, "kq_stderr.log"), "ab") as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            return merge_bench.timed(cmd, work)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def find_llama_quantize():
    exe = os.environ.get("LLAMA_QUANTIZE") or shutil.which("llama-quantize")
    return exe if exe and os.access(exe, os.X_OK) else None


def projections(path):
    _, tensors = gg.read_gguf(path)
    return {name: (tname, raw) for name, ne, tname, raw in tensors if name.startswith("blk.") and len(ne) == 2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/loratool")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--types", default=",".join(TYPES))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    base = os.path.join(args.work, "kq_base_%d.gguf" % args.layers)
    make_base(base, args.layers)
    adapter = os.path.join(args.work, "kq_adapter_%d" % args.layers)
    zero = os.path.join(args.work, "kq_adapter_zero_%d" % args.layers)
    make_adapter(adapter, args.layers, False)
    make_adapter(zero, args.layers, True)
    elems = args.layers * sum(r * c for r, c in merge_bench.SHAPES.values())
    llama = find_llama_quantize()
    out = os.path.join(args.work, "kq_out.gguf")
    print("K-quant benchmark: F16 llama-shaped GGUF, %d layers, %.1f M elements quantized (7 projections a layer), "
          "%d threads, %d alternating runs, medians" % (args.layers, elems / 1e6, args.threads, args.repeats))
    if not llama:
        print("  llama-quantize: not measured: llama-quantize not found (set LLAMA_QUANTIZE or PATH)")
    for qtype in args.types.split(","):
        runs = {"llama-quantize": [], "loratool": [], "loratool requant": []}
        ours_q = os.path.join(args.work, "kq_%s.gguf" % qtype)
        for _ in range(args.repeats):
            if llama:
                runs["llama-quantize"].append(timed(
                    [llama, "--pure", "--token-embedding-type", "f16", "--output-tensor-type", "f16",
                     base, out, qtype, str(args.threads)], args.work))
            runs["loratool"].append(timed(
                [args.tool, "merge", base, adapter, "-o", ours_q, "--dtype", qtype.lower(),
                 "--threads", str(args.threads)], args.work))
            runs["loratool requant"].append(timed(
                [args.tool, "merge", ours_q, adapter, "-o", out, "--threads", str(args.threads)], args.work))
        print("  %s:" % qtype)
        for name, v in runs.items():
            if not v:
                continue
            t = statistics.median(s for s, _ in v)
            what = {"llama-quantize": "F16 -> %s" % qtype, "loratool": "merge F16 -> %s" % qtype,
                    "loratool requant": "merge %s -> %s" % (qtype, qtype)}[name]
            print("    %-17s %-22s %7.2f s  %6.1f M elements/s  peak RSS %7.1f MiB"
                  % (name, what, t, elems / t / 1e6, max(r for _, r in v)))
        if llama and runs["llama-quantize"]:
            ratio = statistics.median(a[0] / b[0] for a, b in zip(runs["loratool"], runs["llama-quantize"]))
            print("    ratio loratool / llama-quantize (merge F16 -> %s vs F16 -> %s): %.2fx" % (qtype, qtype, ratio))
            # the same bytes when nothing is added
            subprocess.check_call([args.tool, "merge", base, zero, "-o", ours_q, "--dtype", qtype.lower()],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.check_call([llama, "--pure", "--token-embedding-type", "f16", "--output-tensor-type", "f16",
                                   base, out, qtype, str(args.threads)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            a, b = projections(ours_q), projections(out)
            same = sum(1 for k in a if a[k] == b.get(k))
            print("    zero adapter: %d of %d projections byte for byte llama-quantize's" % (same, len(a)))
        for path in (out, ours_q):
            if os.path.exists(path):
                os.unlink(path)


if __name__ == "__main__":
    main()
