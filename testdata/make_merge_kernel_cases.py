#!/usr/bin/python3
"""Fixtures for tests/test_merge_kernel.c: merges built to stress the vector
merge kernel (lib/merge_fast.c), which writes a value only where it proves
its rounding equal to the float64 path's and leaves the rest to that path.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_merge_kernel_cases.py build/testdata/merge_kernel

The "exact" cases use dyadic values with few bits (base values, A and B),
so numpy's float64 W + s * B @ A is the exact sum and its one rounding to
the output type (round_fmt, from make_merge_ref.py) is the expected bit
pattern: many results land exactly on a rounding tie, many within 2^-30
of one, many cancel to tiny values, some are F16 subnormals or near F16's
largest finite values.  The "random" cases (float32 factors drawn from a
normal law) have no exact reference here; the test compares the kernel's
bytes with the float64 path's.  Shapes leave row and column tails (37 x 67).
OUT_DIR/cases.json lists every case.
"""

import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402
from make_merge_ref import entry, lora_config, round_fmt, to_bits  # noqa: E402

SEED = 20261129
ROWS, COLS = 37, 67
MODULES = ("q_proj", "v_proj")


def name_of(module):
    return f"model.layers.0.self_attn.{module}.weight"


def dyadic(rng, shape, lo, hi, shift):
    """Integers in [lo, hi) times 2^-shift: exact in every float type used."""
    return rng.integers(lo, hi, size=shape).astype(np.float64) * 2.0 ** -shift


def base_values(rng, shape, fmt, lo_exp, hi_exp):
    """Values of FMT with magnitudes in [2^lo_exp, 2^hi_exp), random signs."""
    mant = rng.uniform(1, 2, size=shape)
    exp = rng.integers(lo_exp, hi_exp, size=shape)
    return round_fmt(np.ldexp(mant, exp) * rng.choice([-1.0, 1.0], size=shape), fmt)


def write_adapter(path, factors, r, alpha, adapter_dtype="F32"):
    os.makedirs(path, exist_ok=True)
    tensors = []
    for module, (a, b) in factors.items():
        key = f"base_model.model.model.layers.0.self_attn.{module}"
        tensors.append(entry(key + ".lora_A.weight", a, adapter_dtype))
        tensors.append(entry(key + ".lora_B.weight", b, adapter_dtype))
    stwrite.write(os.path.join(path, "adapter_model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(lora_config(r=r, lora_alpha=alpha, target_modules=list(factors)), f)


def exact_case(root, name, rng, fmt, make_weights, make_factors, r, alpha=None, out=None, error=False):
    """W and (A, B) from the callbacks; expected bits = round(W + s B@A)."""
    case = os.path.join(root, name)
    os.makedirs(os.path.join(case, "expect"))
    alpha = alpha if alpha is not None else r  # s = 1 keeps the sums exact
    weights, factors, expect = {}, {}, {}
    for module in MODULES:
        a, b = make_factors(rng, r)
        delta = (alpha / r) * (b @ a)
        w = make_weights(rng, delta)
        assert np.array_equal(w, round_fmt(w, fmt)), "base values must be exact in " + fmt
        weights[module] = w
        factors[module] = (a, b)
        total = w + delta
        if not error:
            assert np.all(np.abs(total) < 2.0 ** 60), "keep the sums exact"
            bits_path = os.path.join("expect", module + ".bin")
            to_bits(total, out or fmt).astype("<u" + str(2 if (out or fmt) != "F32" else 4)).tofile(
                os.path.join(case, bits_path))
            expect[name_of(module)] = os.path.join(name, bits_path)
    stwrite.write(os.path.join(case, "base.safetensors"),
                  [entry(name_of(m), weights[m], fmt) for m in MODULES], {"format": "pt"})
    write_adapter(os.path.join(case, "adapter"), factors, r, alpha)
    return {"name": name, "base": os.path.join(name, "base.safetensors"),
            "adapters": [[os.path.join(name, "adapter"), 1.0]], "dtype": (out or "keep").lower(),
            "expect": expect, "error": error}


def tie_factors(shift, near=False):
    """A, B on a 2^-shift grid (products on 2^-2shift); with `near`, one
    more rank whose terms move sums off their grid by about 2^-30."""
    def make(rng, r):
        a = dyadic(rng, (r, COLS), -15, 16, shift)
        b = dyadic(rng, (ROWS, r), -15, 16, shift)
        if near:
            a[-1] = dyadic(rng, COLS, -3, 4, 30)
            b[:, -1] = rng.choice([-1.0, 0.0, 1.0], size=ROWS)
        return a, b
    return make


def absorb_case(root, name, rng, fmt, big=(9000, 16000), mids=(-7, -6), half=None):
    """Rank 3, B = [1, 1, c_i], A = [H_j; m_j; m_j 2^-20], W = -H_j: the
    sum is m_j (1 + c_i 2^-20), a hair from the midpoint m_j of FMT (m_j
    in [2^mids[0], 2^mids[1]), half cells of `half`), while float32 cannot
    hold H_j + m_j (H_j drawn from `big`): the kernel's float32 view of
    the result is off by up to several half cells, so only the bound's
    sum_k |C_k V_k| term keeps those elements off the fast path."""
    half = half or 2.0 ** (mids[0] - {"BF16": 8, "F16": 11}[fmt])
    state = {}

    def factors(g, r):
        h = round_fmt(g.uniform(big[0], big[1], COLS), "BF16")
        mid = (2 * g.integers(2.0 ** mids[0] / (2 * half), 2.0 ** mids[1] / (2 * half), COLS) + 1) * half
        state["big"] = h
        a = np.stack([h, mid, mid * 2.0 ** -20])
        b = np.stack([np.ones(ROWS), np.ones(ROWS), g.integers(-3, 4, ROWS).astype(np.float64)], axis=1)
        return a, b
    return exact_case(root, name, rng, fmt, lambda g, d: np.tile(-state["big"], (ROWS, 1)), factors, r=3)


def tiny_norm_case(root, name, rng, fmt):
    """Factor norms at the ends of float32's range: B ~ 2^-111 scaled by
    1/3 (so C = B/3 carries 53 bits), A ~ 2^120, the two terms cancelling
    exactly in real arithmetic, so the float64 roundings of C A decide the
    result (about 2^-44, with W = 0 or a few ulps of it).  A bound kept
    in float32 must not underflow here; compared with the float64 path."""
    case = os.path.join(root, name)
    os.makedirs(case)
    factors, entries = {}, []
    for i, module in enumerate(MODULES):
        m = rng.choice([1.0, 1.25, 1.5, 1.75], size=ROWS)
        b = np.stack([1.25 * m, 1.5 * m], axis=1) * 2.0 ** -111
        k = rng.integers(2 ** 20, 2 ** 21, size=COLS).astype(np.float64)
        a = np.stack([6 * k, -5 * k]) * 2.0 ** 94          # 1.25*6 - 1.5*5 = 0
        factors[module] = (a, b)
        w = rng.choice([0.0, 0.0, 2.0 ** -47, -(2.0 ** -45), 2.0 ** -43], size=(ROWS, COLS))
        entries.append(entry(name_of(module), w, fmt))
    stwrite.write(os.path.join(case, "base.safetensors"), entries, {"format": "pt"})
    write_adapter(os.path.join(case, "adapter"), factors, 2, 2.0 / 3.0)
    return {"name": name, "base": os.path.join(name, "base.safetensors"),
            "adapters": [[os.path.join(name, "adapter"), 1.0]], "dtype": "keep", "expect": {}, "error": False}


def random_case(root, name, rng, base_fmts, out, adapters):
    """Realistic float32 factors; no exact reference (compared with the
    float64 path).  adapters: [(r, alpha, weight, adapter dtype)]."""
    case = os.path.join(root, name)
    os.makedirs(case)
    entries = []
    for i, module in enumerate(MODULES):
        w = rng.standard_normal((ROWS, COLS)) * 0.02
        w[0, :8] = [0.0, 1e-30, -1e-8, 3e-5, -6.1e-5, 1e4, -3e4, 1e-3]  # zero, tiny, near F16 limits
        entries.append(entry(name_of(module), w, base_fmts[i % len(base_fmts)]))
    stwrite.write(os.path.join(case, "base.safetensors"), entries, {"format": "pt"})
    listed = []
    for k, (r, alpha, weight, adtype) in enumerate(adapters):
        factors = {m: (rng.standard_normal((r, COLS)) * 0.05, rng.standard_normal((ROWS, r)) * 0.01)
                   for m in MODULES}
        path = os.path.join(name, f"adapter{k}")
        write_adapter(os.path.join(root, path), factors, r, alpha, adtype)
        listed.append([path, weight])
    return {"name": name, "base": os.path.join(name, "base.safetensors"), "adapters": listed,
            "dtype": out, "expect": {}, "error": False}


def zeros_case(root, name, rng):
    """Signed zeros: +-0 base values under an adapter whose B rows are
    zero (untrained) or tiny, so that many results are exactly +-0 or
    round to a zero whose sign the float64 path's order of operations
    decides; compared with the float64 path."""
    case = os.path.join(root, name)
    os.makedirs(case)
    entries = []
    for i, module in enumerate(MODULES):
        w = rng.choice([0.0, -0.0, 1e-9, -1e-9, 2.0 ** -24, -(2.0 ** -25)], size=(ROWS, COLS))
        entries.append(entry(name_of(module), w, ("F16", "BF16")[i % 2]))
    stwrite.write(os.path.join(case, "base.safetensors"), entries, {"format": "pt"})
    factors = {}
    for module in MODULES:
        b = rng.standard_normal((ROWS, 4)) * 1e-6
        b[::2] = 0.0
        b[1::4] = -0.0
        factors[module] = (rng.standard_normal((4, COLS)) * 1e-3, b)
    write_adapter(os.path.join(case, "adapter"), factors, 4, 4)
    return {"name": name, "base": os.path.join(name, "base.safetensors"),
            "adapters": [[os.path.join(name, "adapter"), 1.0]], "dtype": "keep", "expect": {}, "error": False}


def main():
    root = sys.argv[1]
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    rng = np.random.default_rng(SEED)
    cases = []
    # ties: sums on the output's half-cell grid, so about half are exact ties
    cases.append(exact_case(root, "bf16_ties", rng, "BF16", lambda g, d: base_values(g, d.shape, "BF16", -1, 2),
                            tie_factors(4), r=4))
    cases.append(exact_case(root, "f16_ties", rng, "F16", lambda g, d: base_values(g, d.shape, "F16", -1, 2),
                            tie_factors(6), r=4))
    cases.append(exact_case(root, "f32_ties", rng, "F32", lambda g, d: base_values(g, d.shape, "F32", -1, 2),
                            tie_factors(12), r=4))
    # near ties: within about 2^-30 of a tie, on either side
    cases.append(exact_case(root, "bf16_near_ties", rng, "BF16",
                            lambda g, d: base_values(g, d.shape, "BF16", -1, 2), tie_factors(4, near=True), r=5))
    cases.append(exact_case(root, "f16_near_ties", rng, "F16",
                            lambda g, d: base_values(g, d.shape, "F16", -1, 2), tie_factors(6, near=True), r=5))
    # cancellation: W = -round(delta), so W + delta is tiny beside both
    for fmt, shift in (("BF16", 4), ("F16", 6)):
        cases.append(exact_case(root, fmt.lower() + "_cancel", rng, fmt, lambda g, d, f=fmt: -round_fmt(d, f),
                                tie_factors(shift, near=True), r=5))
    # results float32 cannot see near their midpoint
    cases.append(absorb_case(root, "bf16_absorb", rng, "BF16"))
    cases.append(absorb_case(root, "f16_absorb", rng, "F16"))
    cases.append(absorb_case(root, "f16_absorb_subnormal", rng, "F16", big=(2.0 ** -6, 2.0 ** -5), mids=(-20, -15),
                             half=2.0 ** -25))
    # F16 subnormals and the top binade below 65504
    cases.append(exact_case(root, "f16_subnormal", rng, "F16", lambda g, d: base_values(g, d.shape, "F16", -24, -12),
                            lambda g, r: (dyadic(g, (r, COLS), -15, 16, 14), dyadic(g, (ROWS, r), -15, 16, 14)),
                            r=4))
    cases.append(exact_case(root, "f16_large", rng, "F16", lambda g, d: round_fmt(base_values(g, d.shape, "F16", 13, 15) * 0.99, "F16"),
                            lambda g, r: (dyadic(g, (r, COLS), -15, 16, 0), dyadic(g, (ROWS, r), -15, 16, 0)),
                            r=4))
    # 65504 + 20 rounds to Inf (the boundary is 65520): an error, as is
    # BF16's largest value plus 1.5 2^119 (past BF16's boundary, short of
    # float32's largest value); in the vector columns only (the
    # column tail, which the float64 path takes, stays finite)
    def overflow_factors(a_value, b_value):
        def make(g, r):
            a = np.full((r, COLS), a_value)
            a[:, 64:] = 0
            return a, np.full((ROWS, r), b_value)
        return make
    cases.append(exact_case(root, "f16_overflow", rng, "F16", lambda g, d: np.full(d.shape, 65504.0),
                            overflow_factors(1.25, 4.0), r=4, error=True))
    cases.append(exact_case(root, "bf16_overflow", rng, "BF16",
                            lambda g, d: np.full(d.shape, float.fromhex("0x1.fep127")),
                            overflow_factors(0.75 * 2.0 ** 100, 2.0 ** 18), r=4, error=True))
    # to another output type: F32 -> BF16 / F16 rounding, BF16 -> F32
    cases.append(exact_case(root, "f32_to_bf16_ties", rng, "F32", lambda g, d: base_values(g, d.shape, "BF16", -1, 2),
                            tie_factors(4, near=True), r=5, out="BF16"))
    cases.append(exact_case(root, "bf16_to_f32_ties", rng, "BF16", lambda g, d: base_values(g, d.shape, "BF16", -1, 2),
                            tie_factors(12), r=4, out="F32"))
    # realistic factors, several adapters, every in/out pairing
    for out in ("keep", "bf16", "f16", "f32"):
        cases.append(random_case(root, "random_" + out, rng, ("BF16", "F16", "F32") if out != "keep" else ("BF16", "F16"),
                                 out, [(8, 16, 1.0, "F32"), (5, 7, -0.5, "BF16")]))
    cases.append(random_case(root, "random_f32_keep", rng, ("F32",), "keep", [(16, 32, 1.0, "F16")]))
    cases.append(zeros_case(root, "signed_zeros", rng))
    cases.append(tiny_norm_case(root, "bf16_tiny_norms", rng, "BF16"))
    cases.append(tiny_norm_case(root, "f16_tiny_norms", rng, "F16"))
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print("wrote %d cases to %s" % (len(cases), root))


if __name__ == "__main__":
    main()
