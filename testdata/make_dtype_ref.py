#!/usr/bin/python3
"""Reference data for tests/test_dtype.c, computed independently of lib/dtype.c.

Usage (the test runner does this before the tests):

    /usr/bin/python3 testdata/make_dtype_ref.py build/testdata/dtype

Writes raw little-endian arrays into the directory given as argv[1]; they
are generated at test time and never committed.  Sources of truth:

  * f16:  numpy's float16 casts (astype), which implement IEEE binary16 with
          round-to-nearest-even and subnormals.
  * bf16: the definition "top 16 bits of the f32, rounded to nearest-even",
          done in integer arithmetic on the uint32 view (numpy has no bf16).
  * f8:   values decoded from the format definitions with math.ldexp, and
          f32 -> f8 by searching the sorted list of representable values in
          exact rational arithmetic (fractions.Fraction), ties to the even
          code.  Overflow follows torch: E5M2 goes to Inf, E4M3FN (no Inf)
          goes to NaN for anything that rounds beyond 448, and for Inf.

NaN outputs follow the library's documented convention (sign kept; F16/BF16
quiet with the top payload bits; F8 all ones; widening keeps payload bits),
written here from that description, not from the C code.

Files (count x element type):
  f16_to_f32.bin    65536 x u32   f32 bits of every f16 bit pattern
  bf16_to_f32.bin   65536 x u32   f32 bits of every bf16 bit pattern
  f32_inputs.bin    N x u32       f32 bit patterns (edges + seeded random)
  f32_to_f16.bin    N x u16
  f32_to_bf16.bin   N x u16
  e4m3_to_f32.bin   256 x u32     f32 bits of every F8_E4M3 (fn) pattern
  e5m2_to_f32.bin   256 x u32     f32 bits of every F8_E5M2 pattern
  f8_inputs.bin     M x u32       f32 bit patterns for the f8 encoders
  f32_to_e4m3.bin   M x u8
  f32_to_e5m2.bin   M x u8
"""

import bisect
import math
import os
import sys
from fractions import Fraction

import numpy as np

SEED = 20240611
F32_SIGN = 0x80000000


def f32_bits(values):
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def is_nan_bits(bits):
    bits = np.asarray(bits, dtype=np.uint32)
    return (bits & 0x7FFFFFFF) > 0x7F800000


def next_up_bits(bits):
    """f32 bit patterns of the next float32 towards +Inf (for finite >= 0)."""
    return np.asarray(bits, dtype=np.uint32) + np.uint32(1)


# ---------------------------------------------------------------- f16 / bf16


def f16_inputs_around_every_value():
    """Every positive finite f16, the midpoints to its successor (65520
    after the max: the overflow threshold), and the f32 neighbours of each
    midpoint, as f32 bit patterns, with both signs."""
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16)
    values = halves.astype(np.float64)
    successors = np.append(values[1:], 65536.0)  # max f16 65504, next step 65536
    midpoints = (values + successors) / 2  # exact: needs 12 significant bits
    mid_bits = f32_bits(midpoints.astype(np.float32))
    assert np.all(mid_bits.view(np.float32).astype(np.float64) == midpoints)
    value_bits = f32_bits(values.astype(np.float32))
    below_mid = mid_bits - np.uint32(1)
    above_mid = next_up_bits(mid_bits)
    above_value = next_up_bits(value_bits)
    positive = np.concatenate([value_bits, mid_bits, below_mid, above_mid, above_value])
    return np.concatenate([positive, positive | np.uint32(F32_SIGN)])


def special_f32_inputs():
    specials = [
        0x00000000, 0x80000000,                  # +-0
        0x7F800000, 0xFF800000,                  # +-Inf
        0x7FC00000, 0xFFC00000, 0x7FFFFFFF, 0xFFFFFFFF,   # quiet NaNs
        0x7F800001, 0xFF800001, 0x7FA00000, 0x7F802000,   # signaling NaNs
        0x7F801FFF, 0x7F80FFFF, 0x7F810000, 0x7FBFFFFF, 0x7F808000,
        0x00000001, 0x80000001, 0x007FFFFF, 0x00800000,   # f32 subnormals, FLT_MIN
        0x7F7FFFFF, 0xFF7FFFFF,                  # +-FLT_MAX
        0x33800000, 0x33000000, 0x32800000,      # 2^-24, 2^-25 (tie to 0), 2^-26
        0x33000001, 0x32FFFFFF, 0x33C00000,      # around 2^-25, 1.5 * 2^-24
        0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,   # 65504, near/at 65520
        0x47800000, 0x3F800000, 0xBF800000,      # 65536, +-1
    ]
    return np.array(specials, dtype=np.uint32)


def bf16_tie_inputs(rng):
    """Every upper half with the lower half exactly halfway (0x8000), plus
    the patterns one below and one above halfway for random upper halves."""
    upper = np.arange(0, 0x10000, dtype=np.uint32) << np.uint32(16)
    ties = upper | np.uint32(0x8000)
    some_upper = rng.integers(0, 0x10000, size=20000, dtype=np.uint32) << np.uint32(16)
    return np.concatenate([ties, some_upper | np.uint32(0x7FFF), some_upper | np.uint32(0x8001)])


def random_f32_inputs(rng):
    any_bits = rng.integers(0, 1 << 32, size=150000, dtype=np.uint64).astype(np.uint32)
    # Exponents 2^-27 .. 2^16: the f16 subnormal, normal and overflow range.
    exponent = rng.integers(100, 144, size=50000, dtype=np.uint32)
    mantissa = rng.integers(0, 1 << 23, size=50000, dtype=np.uint32)
    sign = rng.integers(0, 2, size=50000, dtype=np.uint32) << np.uint32(31)
    in_f16_range = sign | (exponent << np.uint32(23)) | mantissa
    return np.concatenate([any_bits, in_f16_range])


def reference_f32_to_f16(inputs):
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to Inf is wanted
        result = inputs.view(np.float32).astype(np.float16).view(np.uint16).copy()
    nan = is_nan_bits(inputs)
    # numpy keeps signaling NaNs signaling; check it agrees on NaN-ness and
    # sign, then apply the documented quiet-NaN convention.
    assert np.all((result[nan] & 0x7FFF) > 0x7C00)
    assert np.all((result[nan] >> 15) == (inputs[nan] >> 31))
    sign = ((inputs[nan] >> np.uint32(16)) & np.uint32(0x8000)).astype(np.uint16)
    payload = ((inputs[nan] & np.uint32(0x7FFFFF)) >> np.uint32(13)).astype(np.uint16)
    result[nan] = sign | np.uint16(0x7E00) | payload
    return result


def reference_f32_to_bf16(inputs):
    wide = inputs.astype(np.uint64)
    lsb_of_kept = (wide >> np.uint64(16)) & np.uint64(1)
    rounded = ((wide + np.uint64(0x7FFF) + lsb_of_kept) >> np.uint64(16)).astype(np.uint16)
    nan = is_nan_bits(inputs)
    upper = (inputs[nan] >> np.uint32(16)).astype(np.uint16)
    rounded[nan] = upper | np.uint16(0x0040)  # quiet bit; sign and top payload stay
    return rounded


def reference_f16_to_f32():
    return np.arange(0x10000, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)


def reference_bf16_to_f32():
    return np.arange(0x10000, dtype=np.uint32) << np.uint32(16)


# ---------------------------------------------------------------- f8


class F8Format:
    """A 1-sign-bit f8 format from its definition."""

    def __init__(self, exp_bits, man_bits, bias, ieee_specials):
        self.exp_bits = exp_bits
        self.man_bits = man_bits
        self.bias = bias
        # True: exponent all ones = Inf/NaN (E5M2).  False: only
        # S.1111.111 is NaN, no Inf (E4M3FN).
        self.ieee_specials = ieee_specials

    def is_nan(self, code):
        magnitude = code & 0x7F
        if self.ieee_specials:
            return magnitude >> self.man_bits == (1 << self.exp_bits) - 1 and magnitude & ((1 << self.man_bits) - 1) != 0
        return magnitude == 0x7F

    def is_inf(self, code):
        return self.ieee_specials and code & 0x7F == ((1 << self.exp_bits) - 1) << self.man_bits

    def value(self, code):
        """Python float of a non-NaN code."""
        sign = -1.0 if code & 0x80 else 1.0
        if self.is_inf(code):
            return sign * math.inf
        exp_field = (code & 0x7F) >> self.man_bits
        mant = code & ((1 << self.man_bits) - 1)
        if exp_field == 0:
            return sign * math.ldexp(mant, 1 - self.bias - self.man_bits)
        return sign * math.ldexp((1 << self.man_bits) + mant, exp_field - self.bias - self.man_bits)

    def to_f32_bits(self, code):
        if self.is_nan(code):
            mant = code & ((1 << self.man_bits) - 1)
            return ((code & 0x80) << 24) | 0x7F800000 | (mant << (23 - self.man_bits))
        return int(np.array([self.value(code)], dtype=np.float32).view(np.uint32)[0])

    def finite_positive(self):
        """Sorted (value, code) of every finite non-negative code."""
        codes = [c for c in range(0x80) if not self.is_nan(c) and not self.is_inf(c)]
        return sorted((Fraction(self.value(c)), c) for c in codes)


E4M3 = F8Format(exp_bits=4, man_bits=3, bias=7, ieee_specials=False)
E5M2 = F8Format(exp_bits=5, man_bits=2, bias=15, ieee_specials=True)
assert E4M3.value(0x7E) == 448.0 and E4M3.value(0x01) == 2.0 ** -9
assert E5M2.value(0x7B) == 57344.0 and E5M2.value(0x01) == 2.0 ** -16


class NearestEncoder:
    """f32 -> a narrow format by nearest-value search in exact arithmetic,
    ties to the even code.  Used for the f8 formats, and to cross-check
    numpy's f16 cast."""

    def __init__(self, table, overflow_code, sign_bit, nan_code):
        """table: sorted (value, code) of every finite non-negative value."""
        self.values = [Fraction(v) for v, _ in table]
        self.codes = [c for _, c in table]
        max_value = self.values[-1]
        step = max_value - self.values[-2]
        # The value the next code would have if the exponent range went on:
        # rounding there (or beyond) is overflow.
        self.values.append(max_value + step)
        self.codes.append(overflow_code)
        self.overflow_code = overflow_code
        self.sign_bit = sign_bit
        self.nan_code = nan_code

    def encode(self, bits):
        sign = self.sign_bit if bits & F32_SIGN else 0
        if (bits & 0x7FFFFFFF) > 0x7F800000:
            return sign | self.nan_code
        if (bits & 0x7FFFFFFF) == 0x7F800000:
            return sign | self.overflow_code
        x = abs(Fraction(float(np.array([bits], dtype=np.uint32).view(np.float32)[0])))
        if x >= self.values[-1]:
            return sign | self.overflow_code
        hi = bisect.bisect_right(self.values, x)
        lo = hi - 1
        if self.values[lo] == x:
            return sign | self.codes[lo]
        below = x - self.values[lo]
        above = self.values[hi] - x
        if below < above or (below == above and self.codes[lo] % 2 == 0):
            return sign | self.codes[lo]
        return sign | self.codes[hi]


# E4M3FN overflows to NaN (torch's cast), E5M2 to Inf.
E4M3_ENCODER = NearestEncoder(E4M3.finite_positive(), overflow_code=0x7F, sign_bit=0x80, nan_code=0x7F)
E5M2_ENCODER = NearestEncoder(E5M2.finite_positive(), overflow_code=0x7C, sign_bit=0x80, nan_code=0x7F)


def f8_edge_inputs(fmt):
    """Every finite value, every midpoint between neighbours (including
    the overflow threshold after the max), their f32 neighbours; both signs."""
    table = fmt.finite_positive()
    values = [float(v) for v, _ in table]
    values.append(values[-1] + (values[-1] - values[-2]))
    midpoints = [(a + b) / 2 for a, b in zip(values, values[1:])]
    points = f32_bits(values + midpoints)
    positive = np.concatenate([points, points - np.uint32(1), points + np.uint32(1)])
    positive = positive[positive < np.uint32(0x7F800000)]  # 0 - 1 wraps: drop it
    return np.concatenate([positive, positive | np.uint32(F32_SIGN)])


def f8_inputs(rng):
    exponent = rng.integers(110, 145, size=20000, dtype=np.uint32)  # 2^-17 .. 2^17
    mantissa = rng.integers(0, 1 << 23, size=20000, dtype=np.uint32)
    sign = rng.integers(0, 2, size=20000, dtype=np.uint32) << np.uint32(31)
    in_range = sign | (exponent << np.uint32(23)) | mantissa
    any_bits = rng.integers(0, 1 << 32, size=5000, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([
        special_f32_inputs(), f8_edge_inputs(E4M3), f8_edge_inputs(E5M2), in_range, any_bits,
        f32_bits([464.0, 480.0, 448.0, 57344.0, 61440.0, 65536.0, 1e30, -1e30]),
    ])


# ---------------------------------------------------------------- main


def sanity_check_f16_against_search(inputs, expected):
    """numpy's f16 cast against the same exact nearest-value search the f8
    reference uses, on a sample: two independent methods must agree."""
    halves = np.arange(0, 0x7C00, dtype=np.uint16)
    table = list(zip(halves.view(np.float16).astype(np.float64), (int(h) for h in halves)))
    encoder = NearestEncoder(table, overflow_code=0x7C00, sign_bit=0x8000, nan_code=0x7E00)
    checked = 0
    for bits, want in zip(inputs[::37], expected[::37]):
        bits = int(bits)
        if (bits & 0x7FFFFFFF) > 0x7F800000:
            continue
        got = encoder.encode(bits)
        assert got == int(want), (hex(bits), hex(got), hex(int(want)))
        checked += 1
    assert checked > 10000


def write(directory, name, array, dtype):
    array = np.asarray(array).astype(np.dtype(dtype).newbyteorder("<"))
    with open(os.path.join(directory, name), "wb") as f:
        f.write(array.tobytes())


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "build/testdata/dtype"
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(SEED)

    write(directory, "f16_to_f32.bin", reference_f16_to_f32(), np.uint32)
    write(directory, "bf16_to_f32.bin", reference_bf16_to_f32(), np.uint32)

    inputs = np.concatenate([
        special_f32_inputs(), f16_inputs_around_every_value(), bf16_tie_inputs(rng),
        random_f32_inputs(rng),
    ]).astype(np.uint32)
    to_f16 = reference_f32_to_f16(inputs)
    sanity_check_f16_against_search(inputs, to_f16)
    write(directory, "f32_inputs.bin", inputs, np.uint32)
    write(directory, "f32_to_f16.bin", to_f16, np.uint16)
    write(directory, "f32_to_bf16.bin", reference_f32_to_bf16(inputs), np.uint16)

    write(directory, "e4m3_to_f32.bin", [E4M3.to_f32_bits(c) for c in range(256)], np.uint32)
    write(directory, "e5m2_to_f32.bin", [E5M2.to_f32_bits(c) for c in range(256)], np.uint32)
    f8_in = f8_inputs(rng).astype(np.uint32)
    write(directory, "f8_inputs.bin", f8_in, np.uint32)
    write(directory, "f32_to_e4m3.bin", [E4M3_ENCODER.encode(int(b)) for b in f8_in], np.uint8)
    write(directory, "f32_to_e5m2.bin", [E5M2_ENCODER.encode(int(b)) for b in f8_in], np.uint8)


if __name__ == "__main__":
    main()
