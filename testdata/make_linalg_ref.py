#!/usr/bin/python3
"""Reference data for tests/test_linalg.c, computed with numpy (LAPACK/BLAS),
independently of lib/linalg_*.c.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_linalg_ref.py build/testdata/linalg

Writes raw little-endian arrays (row-major) into the directory given as
argv[1]; they are generated at test time and never committed.  Shapes are
fixed here and repeated in tests/test_linalg.c.  All random data comes from
numpy.random.default_rng with fixed seeds, so the files are the same on
every run.

Files (".f32" float32, ".f64" float64, ".i64" int64):
  gemm_<case>_{a,b,c0}.f32   inputs; A stored k x m when transposed, B n x k
  gemm_<case>_ref.f64        alpha * op(A) op(B) + beta * C0 in float64
  gemm_<case>_bound.f64      |alpha| |op(A)| |op(B)| + |beta C0| (error scale)
  qr_<case>_a.f64            input; qr_<case>_rdiag.f64: |diag R| from numpy
  svd_<case>_a.f64           input; svd_<case>_s.f64: numpy.linalg.svd values
  lr_<case>_{b,a}.f64        factors; lr_<case>_s.f64: singular values of the
                             dense product B @ A by numpy (top min(m,n,r))
  lr_sum_{b1,a1,b2,a2}.f64   two adapters; lr_sum_s.f64: values of
                             0.7 B1 A1 - 1.3 B2 A2
  rs_w.f32                   512 x 512: rank 8 + 1e-3 Gaussian noise
  rs_s.f64, rs_u.f64, rs_v.f64   numpy SVD of rs_w (as float64): top 20
                             values, top 8 left / right vectors (512 x 8)
  rs_exact_w.f32, rs_exact_s.f64   300 x 200 of exact rank 8, top 8 values
  rank_s.f64                 4 vectors x 16 singular values (descending)
  rank_energy.i64            4 x 6: smallest k with cumsum(s^2)[k-1] >=
                             f * total, f in ENERGY_FRACTIONS (0 if total 0)
  rank_ratio.i64             4 x 5: count of s > s[0] / ratio
"""

import os
import sys

import numpy as np

GEMM_CASES = [  # name, trans_a, trans_b, m, n, k, alpha, beta
    ("g1", False, False, 1, 1, 1, 1.0, 0.0),
    ("g2nn", False, False, 17, 33, 65, 1.0, 0.0),
    ("g2tn", True, False, 17, 33, 65, 0.5, 0.0),
    ("g2nt", False, True, 17, 33, 65, 1.0, 2.0),
    ("g2tt", True, True, 17, 33, 65, -1.5, 0.25),
    ("g3", False, False, 256, 300, 70, 1.0, 0.0),
    ("g3tt", True, True, 256, 300, 70, 0.75, -0.5),
    ("g4", False, False, 130, 260, 600, 1.0, 1.0),
]

ENERGY_FRACTIONS = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0]
RATIOS = [1.0, 1.5, 10.0, 100.0, 1e6]


def save(out, name, arr, dtype):
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<"))
    arr.tofile(os.path.join(out, name))


def orthonormal(rng, n, k):
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def with_singular_values(rng, m, n, s):
    k = len(s)
    return orthonormal(rng, m, k) @ np.diag(s) @ orthonormal(rng, n, k).T


def gemm(out, rng):
    for name, ta, tb, m, n, k, alpha, beta in GEMM_CASES:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        c0 = rng.standard_normal((m, n)).astype(np.float32)
        opa = (a.T if ta else a).astype(np.float64)
        opb = (b.T if tb else b).astype(np.float64)
        c064 = c0.astype(np.float64)
        ref = alpha * (opa @ opb) + beta * c064
        bound = abs(alpha) * (np.abs(opa) @ np.abs(opb)) + np.abs(beta * c064)
        save(out, f"gemm_{name}_a.f32", a, np.float32)
        save(out, f"gemm_{name}_b.f32", b, np.float32)
        save(out, f"gemm_{name}_c0.f32", c0, np.float32)
        save(out, f"gemm_{name}_ref.f64", ref, np.float64)
        save(out, f"gemm_{name}_bound.f64", bound, np.float64)


def qr(out, rng):
    cases = {
        "tall": rng.standard_normal((50, 20)),
        "wide": rng.standard_normal((20, 50)),
        "rankdef": rng.standard_normal((30, 12)) @ rng.standard_normal((12, 30)),
        "one": np.array([[-3.5]]),
        "col": rng.standard_normal((100, 1)),
        "row": rng.standard_normal((1, 7)),
    }
    for name, a in cases.items():
        r = np.linalg.qr(a, mode="reduced")[1]
        save(out, f"qr_{name}_a.f64", a, np.float64)
        save(out, f"qr_{name}_rdiag.f64", np.abs(np.diag(r)), np.float64)


def svd(out, rng):
    cases = {
        "rand": rng.standard_normal((40, 30)),
        "wide": rng.standard_normal((30, 40)),
        "cond": with_singular_values(rng, 50, 50, np.geomspace(1.0, 1e-10, 50)),
        "rankdef": rng.standard_normal((60, 10)) @ rng.standard_normal((10, 40)),
        "tall": rng.standard_normal((300, 20)),
        "zero": np.zeros((10, 7)),
        "one": np.array([[-2.25]]),
        "row": rng.standard_normal((1, 5)),
        "equal": 3.0 * orthonormal(rng, 20, 20),
        "big": rng.standard_normal((200, 150)) * 1e5,
        "tiny": rng.standard_normal((30, 25)) * 1e-200,
    }
    for name, a in cases.items():
        save(out, f"svd_{name}_a.f64", a, np.float64)
        save(out, f"svd_{name}_s.f64", np.linalg.svd(a, compute_uv=False), np.float64)


def lowrank(out, rng):
    deficient = rng.standard_normal((120, 5)) @ rng.standard_normal((5, 8))
    cases = {  # name: (B, A)
        "main": (rng.standard_normal((512, 16)), rng.standard_normal((16, 384))),
        "rank1": (rng.standard_normal((300, 1)), rng.standard_normal((1, 200))),
        "over": (rng.standard_normal((10, 24)), rng.standard_normal((24, 12))),
        "zero": (np.zeros((50, 4)), rng.standard_normal((4, 60))),
        "def": (deficient, rng.standard_normal((8, 90))),
        "scaled": (rng.standard_normal((64, 8)) * 1e150, rng.standard_normal((8, 48)) * 1e140),
    }
    for name, (b, a) in cases.items():
        p = min(b.shape[0], a.shape[1], b.shape[1])
        save(out, f"lr_{name}_b.f64", b, np.float64)
        save(out, f"lr_{name}_a.f64", a, np.float64)
        # The scaled case overflows as a product in float64: take values of
        # the unscaled product and put the scale back.
        if name == "scaled":
            s = np.linalg.svd((b / 1e150) @ (a / 1e140), compute_uv=False)[:p] * 1e290
        else:
            s = np.linalg.svd(b @ a, compute_uv=False)[:p]
        save(out, f"lr_{name}_s.f64", s, np.float64)
    b1, a1 = rng.standard_normal((200, 8)), rng.standard_normal((8, 150))
    b2, a2 = rng.standard_normal((200, 4)), rng.standard_normal((4, 150))
    for n, x in (("b1", b1), ("a1", a1), ("b2", b2), ("a2", a2)):
        save(out, f"lr_sum_{n}.f64", x, np.float64)
    dense = 0.7 * (b1 @ a1) - 1.3 * (b2 @ a2)
    save(out, "lr_sum_s.f64", np.linalg.svd(dense, compute_uv=False)[:12], np.float64)


def randomized(out, rng):
    sig = np.array([20.0, 17.0, 14.0, 11.0, 9.0, 7.0, 5.0, 3.0])
    w = with_singular_values(rng, 512, 512, sig) + 1e-3 * rng.standard_normal((512, 512))
    w = w.astype(np.float32)
    u, s, vt = np.linalg.svd(w.astype(np.float64))
    save(out, "rs_w.f32", w, np.float32)
    save(out, "rs_s.f64", s[:20], np.float64)
    save(out, "rs_u.f64", u[:, :8], np.float64)
    save(out, "rs_v.f64", vt[:8].T, np.float64)
    w = with_singular_values(rng, 300, 200, sig).astype(np.float32)
    save(out, "rs_exact_w.f32", w, np.float32)
    save(out, "rs_exact_s.f64", np.linalg.svd(w.astype(np.float64), compute_uv=False)[:8],
         np.float64)


def rank(out, rng):
    vecs = [
        np.sort(rng.uniform(0, 10, 16))[::-1],
        np.geomspace(5.0, 5e-6, 16),
        np.concatenate([np.sort(rng.uniform(1, 3, 6))[::-1], np.zeros(10)]),
        np.zeros(16),
    ]
    energy, ratio = [], []
    for s in vecs:
        cum = np.cumsum(s * s)
        total = cum[-1]
        for f in ENERGY_FRACTIONS:
            energy.append(0 if total == 0 else int(np.argmax(cum >= f * total)) + 1)
        for q in RATIOS:
            ratio.append(0 if s[0] == 0 else int(np.sum(s > s[0] / q)))
    save(out, "rank_s.f64", np.array(vecs), np.float64)
    save(out, "rank_energy.i64", np.array(energy), np.int64)
    save(out, "rank_ratio.i64", np.array(ratio), np.int64)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_linalg_ref.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    gemm(out, np.random.default_rng(1))
    qr(out, np.random.default_rng(2))
    svd(out, np.random.default_rng(3))
    lowrank(out, np.random.default_rng(4))
    randomized(out, np.random.default_rng(5))
    rank(out, np.random.default_rng(6))


if __name__ == "__main__":
    main()
