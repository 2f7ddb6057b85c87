#!/usr/bin/env python3
"""numpy baselines for resize, combine and extract (make bench, issue 17):
the same methods as loratool, with numpy's LAPACK/BLAS doing the arithmetic.

  resize ADAPTER_DIR RANK           per module: reduced QR of B and of A^T
                                    (explicit Q), SVD of the r x r core
                                    R_B R_A^T, new factors U sqrt(S), sqrt(S) V^T
  combine RANK ADAPTER_DIR...       the same on the concatenated factors
  extract BASE TUNED RANK LAYERS    per projection weight of the first LAYERS
                                    layers: randomized SVD in float64 of
                                    TUNED - BASE (oversampling 10, 2 power
                                    iterations with QR re-orthonormalization)

Reads the safetensors files itself (BF16 or F32), forms the new factors as
float32 and writes nothing.  Prints the wall time and the BLAS in use.
"""
import ctypes
import json
import os
import re
import struct
import sys
import time

import numpy as np


def blas_info():
    """The BLAS library actually loaded, and OpenBLAS's own config line."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if re.search(r"blas|lapack", os.path.basename(path)):
                libs.add(path)
    info = []
    for path in sorted(libs):
        info.append(path)
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_config.restype = ctypes.c_char_p
            lib.openblas_get_corename.restype = ctypes.c_char_p
            info.append("  config: " + lib.openblas_get_config().decode()
                        + "; kernel: " + lib.openblas_get_corename().decode()
                        + "; threads: " + str(lib.openblas_get_num_threads()))
        except (OSError, AttributeError):
            pass
    return info


class SafeTensors:
    def __init__(self, path):
        self.f = open(path, "rb")
        n = struct.unpack("<Q", self.f.read(8))[0]
        self.header = json.loads(self.f.read(n))
        self.base = 8 + n

    def names(self):
        return [k for k in self.header if k != "__metadata__"]

    def get(self, name):
        info = self.header[name]
        s, e = info["data_offsets"]
        self.f.seek(self.base + s)
        raw = self.f.read(e - s)
        if info["dtype"] == "BF16":
            x = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            x = np.frombuffer(raw, np.float32)
        else:
            raise SystemExit(f"{name}: dtype {info['dtype']} not handled")
        return x.reshape(info["shape"]).astype(np.float64)


def adapter_modules(path):
    st = SafeTensors(os.path.join(path, "adapter_model.safetensors"))
    with open(os.path.join(path, "adapter_config.json")) as f:
        cfg = json.load(f)
    scale = cfg["lora_alpha"] / cfg["r"]
    mods = sorted(n[:-len(".lora_A.weight")] for n in st.names() if n.endswith(".lora_A.weight"))
    return st, mods, scale


def qr_core(b, a, rank):
    qb, rb = np.linalg.qr(b)
    qa, ra = np.linalg.qr(a.T)
    u, s, vt = np.linalg.svd(rb @ ra.T)
    k = min(rank, len(s))
    root = np.sqrt(s[:k])
    new_b = ((qb @ u[:, :k]) * root).astype(np.float32)
    new_a = (root[:, None] * (vt[:k] @ qa.T)).astype(np.float32)
    return new_b, new_a


def resize(paths, rank):
    opened = [adapter_modules(p) for p in paths]
    for mod in opened[0][1]:
        bs, as_ = [], []
        for st, _, scale in opened:
            bs.append(st.get(mod + ".lora_B.weight") * scale)
            as_.append(st.get(mod + ".lora_A.weight"))
        qr_core(np.hstack(bs), np.vstack(as_), rank)


def randomized_svd(w, k, oversample=10, power_iters=2, seed=0):
    m, n = w.shape
    l = min(k + oversample, m, n)
    omega = np.random.default_rng(seed).standard_normal((n, l))
    q, _ = np.linalg.qr(w @ omega)
    for _ in range(power_iters):
        z, _ = np.linalg.qr(w.T @ q)
        q, _ = np.linalg.qr(w @ z)
    bt = w.T @ q
    ub, s, vbt = np.linalg.svd(bt, full_matrices=False)
    u = q @ vbt.T
    return u[:, :k], s[:k], ub[:, :k]


def extract(base, tuned, rank, layers):
    b, t = SafeTensors(base), SafeTensors(tuned)
    pat = re.compile(r".*layers\.(\d+)\..*(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")
    for name in t.names():
        mt = pat.match(name)
        if not mt or int(mt.group(1)) >= layers:
            continue
        w = t.get(name) - b.get(name)
        u, s, v = randomized_svd(w, rank)
        root = np.sqrt(s)
        (u * root).astype(np.float32), (root[:, None] * v.T).astype(np.float32)


def main():
    verb, args = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    if verb == "resize":
        resize([args[0]], int(args[1]))
    elif verb == "combine":
        resize(args[1:], int(args[0]))
    elif verb == "extract":
        extract(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit("usage: surgery_baseline.py resize|combine|extract ...")
    wall = time.perf_counter() - start
    print(json.dumps({"verb": verb, "wall_s": wall, "blas": blas_info()}))


if __name__ == "__main__":
    main()
