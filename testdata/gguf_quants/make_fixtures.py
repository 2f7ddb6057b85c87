#!/usr/bin/env python3
"""Make the ggml quantization fixtures of tests/test_gguf.c with gguf-py.

Usage: /usr/bin/python3 make_fixtures.py GGUF_PY_DIR [OUT_DIR]

GGUF_PY_DIR is the gguf-py folder of a llama.cpp source tree (the one that
holds gguf/quants.py).  Only gguf.quants and what it imports (constants,
lazy) are loaded, without running gguf/__init__.py, which would pull in
optional packages (sentencepiece, yaml) that the quantization code does not
use.  gguf-py needs only numpy.  OUT_DIR defaults to this script's folder.

For each type below it writes, from seeded random blocks:
  <TYPE>.blocks      the quantized bytes (random, with finite f16 scales)
  <TYPE>.f32         gguf.quants.dequantize of them, float32 little-endian
and for the quantizers:
  quantize_input.f32 random float32 values (plus an all-zero block and a
                     block with a repeated extreme value)
  quantize_<TYPE>.blocks   gguf.quants.quantize of them for Q8_0 and Q4_0
manifest.txt lists "<kind> <TYPE> <elements>" lines for the C test.
The output is the same on every run (seed below).
"""
import os
import sys
import types

import numpy as np

SEED = 20240531

# type name: (f16 field byte offsets inside a block, blocks to make)
DEQUANT_TYPES = {
    "F16": ([], 0),
    "BF16": ([], 0),
    "Q4_0": ([0], 8),
    "Q4_1": ([0, 2], 8),
    "Q5_0": ([0], 8),
    "Q5_1": ([0, 2], 8),
    "Q8_0": ([0], 8),
    "Q2_K": ([80, 82], 4),
    "Q3_K": ([108], 4),
    "Q4_K": ([0, 2], 4),
    "Q5_K": ([0, 2], 4),
    "Q6_K": ([208], 4),
}
QUANT_TYPES = ["Q8_0", "Q4_0"]


def load_gguf_quants(gguf_py_dir):
    package = types.ModuleType("gguf")
    package.__path__ = [os.path.join(gguf_py_dir, "gguf")]
    sys.modules["gguf"] = package
    import gguf.quants as quants  # noqa: E402
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    return quants, GGML_QUANT_SIZES, GGMLQuantizationType


def random_f16(rng, n):
    """Finite halves of mixed magnitude, some subnormal, some negative."""
    exps = rng.integers(-24, 4, size=n).astype(np.float64)
    vals = rng.uniform(0.5, 1.0, size=n) * np.exp2(exps)
    vals *= np.where(rng.random(n) < 0.3, -1.0, 1.0)
    return vals.astype(np.float16)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(__file__))
    quants, sizes, qt = load_gguf_quants(sys.argv[1])
    rng = np.random.default_rng(SEED)
    manifest = []
    for name, (half_fields, n_blocks) in DEQUANT_TYPES.items():
        qtype = qt[name]
        block_elems, block_bytes = sizes[qtype]
        if name in ("F16", "BF16"):
            n = 64
            raw = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
            if name == "F16":  # keep NaNs out: numpy may change their payload
                raw[(raw & 0x7C00) == 0x7C00] &= 0xFBFF
            else:
                raw[(raw & 0x7F80) == 0x7F80] &= 0xFF7F
            data = raw.view(np.uint8).copy()
        else:
            data = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
            for off in half_fields:
                data[:, off:off + 2] = random_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
            n = n_blocks * block_elems
            data = data.reshape(-1)
        values = quants.dequantize(data, qtype).astype(np.float32).reshape(-1)
        assert values.size == n
        data.tofile(os.path.join(out, name + ".blocks"))
        values.astype("<f4").tofile(os.path.join(out, name + ".f32"))
        manifest.append("dequant %s %d" % (name, n))

    x = rng.standard_normal(8 * 32).astype(np.float32) * np.float32(0.05)
    x[32:64] = 0.0                      # d = 0 must give all-zero quants
    x[64:96] = rng.uniform(-1, 1, 32).astype(np.float32)
    x[70] = x[80] = np.float32(-3.0)    # repeated extreme value, negative
    x[96:128] *= np.float32(1e-6)       # tiny scale: f16 d goes subnormal
    x.astype("<f4").tofile(os.path.join(out, "quantize_input.f32"))
    for name in QUANT_TYPES:
        q = quants.quantize(x.reshape(1, -1), qt[name]).reshape(-1)
        q.tofile(os.path.join(out, "quantize_%s.blocks" % name))
        manifest.append("quantize %s %d" % (name, x.size))
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
