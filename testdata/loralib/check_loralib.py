"""Checks for tests/test_loralib.sh (numpy only).

  check_loralib.py ulp MERGED.safetensors EXPECTED.npz
      every tensor of EXPECTED (float64) is in MERGED, same shape, and each
      element within 1 ulp (of MERGED's dtype) of the float64 value, the
      file holds no other tensor
  check_loralib.py same A.safetensors B.safetensors
      the same tensors (names, dtypes, shapes, bytes); metadata may differ
Exit 0 when the check holds, else 1 with one line saying why.
"""
import json
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


def main():
    mode, x, y = sys.argv[1:4]
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
