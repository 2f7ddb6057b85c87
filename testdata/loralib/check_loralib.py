"""Checks for tests/test_loralib.sh (numpy only).

  check_loralib.py ulp MERGED.safetensors EXPECTED.npz
      every tensor of EXPECTED (float64) is in MERGED, same shape, and each
      element within 1 ulp (of MERGED's dtype) of the float64 value, the
      file holds no other tensor
  check_loralib.py same A.safetensors B.safetensors
      the same tensors (names, dtypes, shapes, bytes); metadata may differ
  check_loralib.py peft ADAPTER_DIR CASE.npz
      the PEFT directory's delta per module, by PEFT's formulas (Linear
      B @ A; conv: sum over r of lora_B[o, r] lora_A[r, ...], i.e. its
      conv of lora_A^T with the 1x1 lora_B; times lora_alpha / r, from
      rank_pattern / alpha_pattern matched as PEFT does) is, in float64,
      the delta torch computed by loralib's formula ("delta:<module>" in
      the fixture's npz), every module of the npz present
Exit 0 when the check holds, else 1 with one line saying why.
"""
import json
import os
import re
import struct
import sys

import numpy as np

TYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], raw[8 + n + a:8 + n + b])
    return out


def ulps(got, want64):
    """Distance in units in the last place of got's type between got and
    want64 rounded to that type (both finite)."""
    t = got.dtype
    want = want64.astype(t)
    ints = {np.dtype(np.float32): np.int32, np.dtype(np.float16): np.int16, np.dtype(np.float64): np.int64}[t]
    def ordered(x):
        i = x.view(ints).astype(np.int64)
        return np.where(i < 0, np.int64(np.iinfo(ints).min) - i, i)
    return np.abs(ordered(got) - ordered(want))


def pattern_value(patterns, name, default):
    """PEFT picks the first pattern key k with re.match(rf"(.*\.)?({k})$", name)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def peft(directory, npz):
    cfg = json.load(open(os.path.join(directory, "adapter_config.json")))
    tensors = read(os.path.join(directory, "adapter_model.safetensors"))
    want = np.load(npz)
    prefix, suffix = "base_model.model.", ".lora_A.weight"
    seen = set()
    for key, (dtype, shape, raw) in tensors.items():
        if not key.endswith(suffix):
            continue
        name = key[len(prefix):-len(suffix)]
        a = np.frombuffer(raw, dtype=TYPES[dtype]).reshape(shape).astype(np.float64)
        bd, bs, braw = tensors[prefix + name + ".lora_B.weight"]
        b = np.frombuffer(braw, dtype=TYPES[bd]).reshape(bs).astype(np.float64)
        r = pattern_value(cfg.get("rank_pattern") or {}, name, cfg["r"])
        alpha = pattern_value(cfg.get("alpha_pattern") or {}, name, cfg["lora_alpha"])
        if a.shape[0] != r or b.shape[1] != r or any(d != 1 for d in b.shape[2:]):
            sys.exit(f"{name}: lora_A {list(a.shape)} / lora_B {list(b.shape)} do not have rank {r}")
        delta = np.einsum("or,r...->o...", b.reshape(b.shape[:2]), a) * (alpha / r)
        expected = want["delta:" + name]
        if delta.shape != expected.shape or not np.allclose(delta, expected, rtol=1e-12, atol=1e-12):
            sys.exit(f"{name}: PEFT's delta differs from loralib's")
        seen.add(name)
    missing = {k[len("delta:"):] for k in want.files if k.startswith("delta:")} - seen
    if missing:
        sys.exit(f"modules missing from the PEFT directory: {sorted(missing)}")


def main():
    mode, x, y = sys.argv[1:4]
    if mode == "peft":
        return peft(x, y)
    a = read(x)
    if mode == "same":
        b = read(y)
        if a.keys() != b.keys():
            sys.exit(f"tensor names differ: {sorted(set(a) ^ set(b))[:4]}")
        for k in a:
            if a[k] != b[k]:
                sys.exit(f"{k}: differs")
        return
    want = np.load(y)
    if set(want.files) != set(a):
        sys.exit(f"tensor names differ: {sorted(set(want.files) ^ set(a))[:4]}")
    worst = 0
    for k in want.files:
        dtype, shape, raw = a[k]
        got = np.frombuffer(raw, dtype=TYPES[dtype]).reshape(shape)
        if list(want[k].shape) != shape:
            sys.exit(f"{k}: shape {shape}, expected {list(want[k].shape)}")
        d = int(ulps(got, want[k]).max()) if got.size else 0
        worst = max(worst, d)
        if d > 1:
            sys.exit(f"{k}: {d} ulp from the float64 reference")
    print(f"max {worst} ulp")


if __name__ == "__main__":
    main()
