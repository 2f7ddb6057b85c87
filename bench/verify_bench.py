#!/usr/bin/python3
"""`make bench`: loratool verify of the merge benchmark's merge (a
llama-shaped BF16 base and a rank-16 adapter on 7 projections) against
reading both files, `cat base out > /dev/null`, side by side with the files
in the page cache.  Target: verify / cat <= 1.5; memory bounded like merge.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import merge_bench as mb  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", default="build/loratool")
    ap.add_argument("--work", default="build/bench")
    ap.add_argument("--layers", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    adapter = os.path.join(args.work, "adapter" if args.layers == 9 else "adapter_%d" % args.layers)
    mb.make_adapter(adapter, args.layers)
    base = os.path.join(args.work, "base_bf16.safetensors" if args.layers == 9 else
                        "base_bf16_%d.safetensors" % args.layers)
    mb.make_base(base, args.layers, "BF16", 2)
    out = os.path.join(args.work, "verify_out.safetensors")
    mb.timed([args.tool, "merge", base, adapter, "-o", out], args.work)
    commands = {
        "cat": ["sh", "-c", f"cat {base} {out} > /dev/null"],
        "verify": [args.tool, "verify", base, adapter, "--merged", out],
        "verify -t1": [args.tool, "verify", base, adapter, "--merged", out, "--threads", "1"],
    }
    mb.timed(commands["cat"], args.work)  # both files into the page cache
    runs = {k: [] for k in commands}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            runs[name].append(mb.timed(cmd, args.work))
    os.unlink(out)
    size = os.path.getsize(base)
    print(f"verify benchmark: BF16 base {size / 1e9:.2f} GB ({args.layers} layers), its merge, page cache warm;"
          f" {args.repeats} alternating runs, medians")
    for name, v in runs.items():
        print(f"  {name:10s} {statistics.median(t for t, _ in v):7.2f} s   peak RSS {max(r for _, r in v):8.1f} MiB")
    for name in ("verify", "verify -t1"):
        ratio = statistics.median(x[0] / y[0] for x, y in zip(runs[name], runs["cat"]))
        print(f"  ratio {name} / cat {ratio:.2f}x   (target <= 1.5x)")


if __name__ == "__main__":
    main()
