#!/usr/bin/python3
"""Reference data and checker for tests/test_merge_gguf.sh (`loratool merge`
into GGUF bases), computed with numpy float64 independently of the C code.

Usage:

    /usr/bin/python3 testdata/make_merge_gguf_ref.py OUT_DIR     (the test runner)
    /usr/bin/python3 testdata/make_merge_gguf_ref.py list OUT_DIR
    /usr/bin/python3 testdata/make_merge_gguf_ref.py setup CASE_DIR WORK
    /usr/bin/python3 testdata/make_merge_gguf_ref.py check CASE_DIR WORK

Generation writes OUT_DIR/<case>/ with the inputs (a tiny llama GGUF base
written by the GGUF writer below, GGUF LoRA adapters, PEFT adapter
directories, a safetensors base), ref.npz (expected float64 merged values
and quantized bytes) and case.json (command lines with {CASE} = the case's
directory and {O<k>} = an empty directory for run k, expected exit codes,
stderr words, and what each output tensor must be). `setup` writes the
argument files run.<k>.args that the shell script runs; `check` compares,
with its own GGUF reader (written from spec/gguf.md and ggml's gguf.cpp,
not from our C code).

Facts used (spec/convert.md, spec/merge.md, llama.cpp src/llama-adapter.cpp,
ggml/src/ggml-quants.c):
  - GGUF LoRA: "<base tensor name>.lora_a" (blk.0.attn_q.weight.lora_a)
    ne = [in, r] (numpy shape [r, in]) and "<base tensor name>.lora_b" ne = [r, out] (numpy shape [out, r]); scale alpha / r
    with r = lora_b.ne[0]; merged W' = W + scale * B @ A.
  - llama's Q/K rows in GGUF order: GGUF row h*hd + 2t + s holds HF row
    h*hd + s*hd/2 + t (n_head for q, n_head_kv for k).  A PEFT adapter
    (HF order) merged into a GGUF base gets its lora_B rows permuted.
  - Q8_0: blocks of 32, {f16 d; i8 q[32]}, d = absmax / 127 (f32), q =
    roundf(x * (1/d)) (half away from zero), d stored as f16 (RNE).
  - Q4_0: blocks of 32, {f16 d; u8 qs[16]}, d = max / -8 (max = the first
    element of largest magnitude), q = min(15, trunc(fma(x, 1/d, 8.5))),
    low nibbles hold elements 0..15, high nibbles 16..31.
  - Q4_K: super-blocks of 256, {f16 d; f16 dmin; u8 scales[12]; u8
    qs[128]}, 8 sub-blocks of 32 with 6-bit scale and min
    (get_scale_min_k4), y = d*sc * q - dmin*m.
  - Q6_K: super-blocks of 256, {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}.
"""

import json
import os
import struct
import sys

import numpy as np

SEED = 20250921

HIDDEN, N_HEAD, N_KV, FFN, VOCAB, LAYERS = 64, 4, 2, 256, 50, 2
HD = HIDDEN // N_HEAD

# GGUF base names -> HF module names (llama)
HF_OF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj"}
# GGUF suffix -> (in, out)
SHAPES = {"attn_q": (HIDDEN, N_HEAD * HD), "attn_k": (HIDDEN, N_KV * HD), "attn_v": (HIDDEN, N_KV * HD),
          "attn_output": (N_HEAD * HD, HIDDEN), "ffn_gate": (HIDDEN, FFN), "ffn_up": (HIDDEN, FFN),
          "ffn_down": (FFN, HIDDEN)}

# ------------------------------------------------------------------ GGUF types
# ggml type id -> (name, block elements, block bytes)
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
        6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84),
        11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
        24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8)}
GGML_ID = {v[0]: k for k, v in GGML.items()}
# KV value types
KV = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
      "u64": 10, "i64": 11, "f64": 12}
KV_NAME = {v: k for k, v in KV.items()}
KV_FMT = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f",
          "bool": "<B", "u64": "<Q", "i64": "<q", "f64": "<d"}


def gguf_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("<Q", len(b)) + b


def kv_value(typ, value):
    if typ == "str":
        return gguf_str(value)
    if typ.startswith("arr:"):
        et = typ[4:]
        return struct.pack("<IQ", KV[et], len(value)) + b"".join(kv_value(et, v) for v in value)
    return struct.pack(KV_FMT[typ], value)


def write_gguf(path, kvs, tensors, align=32):
    """kvs: list of (key, type, value), type 'u32', 'str', 'arr:str', ...;
    tensors: list of (name, type name, ne, raw bytes)."""
    out = bytearray(b"GGUF" + struct.pack("<I", 3) + struct.pack("<qq", len(tensors), len(kvs)))
    for key, typ, value in kvs:
        out += gguf_str(key) + struct.pack("<I", KV["arr"] if typ.startswith("arr:") else KV[typ])
        out += kv_value(typ, value)
    blobs, offset = [], 0
    for name, tname, ne, raw in tensors:
        out += gguf_str(name) + struct.pack("<I", len(ne)) + struct.pack("<%dq" % len(ne), *ne)
        out += struct.pack("<IQ", GGML_ID[tname], offset)
        pad = (align - len(raw) % align) % align
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    out += b"\0" * ((align - len(out) % align) % align)
    with open(path, "wb") as f:
        f.write(bytes(out))
        for b in blobs:
            f.write(b)


class Bad(Exception):
    pass


class Reader:
    def __init__(self, data, path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise Bad("%s: truncated at byte %d" % (self.path, self.pos))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def value(self, typ):
        name = KV_NAME.get(typ)
        if name is None:
            raise Bad("%s: unknown KV type %d" % (self.path, typ))
        if name == "str":
            return bytes(self.take(self.unpack("<Q")))
        if name == "arr":
            et, n = self.unpack("<I"), self.unpack("<Q")
            if et == KV["arr"]:
                raise Bad("%s: array of arrays" % self.path)
            return (KV_NAME.get(et, "?"), [self.value(et) for _ in range(n)])
        v = self.unpack(KV_FMT[name])
        return v


def read_gguf(path):
    """(kvs: list of (key, type id, value)), tensors: list of (name, ne,
    type name, raw)), checking the canonical layout of spec/gguf.md."""
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data, path)
    if r.take(4) != b"GGUF":
        raise Bad("%s: no GGUF magic" % path)
    version = r.unpack("<I")
    if version not in (2, 3):
        raise Bad("%s: version %d" % (path, version))
    n_tensors, n_kv = r.unpack("<q"), r.unpack("<q")
    kvs, seen = [], set()
    for _ in range(n_kv):
        key = r.take(r.unpack("<Q")).decode()
        typ = r.unpack("<I")
        if key in seen:
            raise Bad("%s: duplicate key %s" % (path, key))
        seen.add(key)
        kvs.append((key, typ, r.value(typ)))
    align = 32
    for key, typ, value in kvs:
        if key == "general.alignment":
            if typ != KV["u32"] or value <= 0 or value & (value - 1):
                raise Bad("%s: bad general.alignment" % path)
            align = value
    infos = []
    for _ in range(n_tensors):
        name = r.take(r.unpack("<Q")).decode()
        n_dims = r.unpack("<I")
        if not 1 <= n_dims <= 4:
            raise Bad("%s: %s: n_dims %d" % (path, name, n_dims))
        ne = [r.unpack("<q") for _ in range(n_dims)]
        typ, off = r.unpack("<I"), r.unpack("<Q")
        if typ not in GGML:
            raise Bad("%s: %s: unknown ggml type %d" % (path, name, typ))
        tname, blk, bsize = GGML[typ]
        if ne[0] % blk:
            raise Bad("%s: %s: ne[0] %d is not whole %s blocks" % (path, name, ne[0], tname))
        count = 1
        for d in ne:
            count *= d
        infos.append((name, ne, tname, off, count // blk * bsize))
    start = (r.pos + align - 1) // align * align
    tensors, expect_off, names = [], 0, set()
    for name, ne, tname, off, nbytes in infos:
        if name in names:
            raise Bad("%s: duplicate tensor %s" % (path, name))
        names.add(name)
        if off != expect_off:
            raise Bad("%s: %s at offset %d, expected %d" % (path, name, off, expect_off))
        expect_off += (nbytes + align - 1) // align * align
        if start + off + nbytes > len(data):
            raise Bad("%s: %s: data past the end of the file" % (path, name))
        tensors.append((name, ne, tname, data[start + off:start + off + nbytes]))
    return kvs, tensors


# ------------------------------------------------------------------ numerics

def permute_rows(m, n_head):
    """HF row order -> llama.cpp's (convert_hf_to_gguf.py LlamaModel.permute)."""
    return m.reshape(n_head, 2, m.shape[0] // n_head // 2, *m.shape[1:]).swapaxes(1, 2).reshape(m.shape)


def unpermute_rows(m, n_head):
    """llama.cpp's Q/K row order -> HF: HF row h*hd + s*hd/2 + t = GGUF row h*hd + 2t + s."""
    hd = m.shape[0] // n_head
    out = np.empty_like(m)
    for h in range(n_head):
        for t in range(hd // 2):
            for s in range(2):
                out[h * hd + s * (hd // 2) + t] = m[h * hd + 2 * t + s]
    assert np.array_equal(permute_rows(out, n_head), m)
    return out


def q8_0_quantize(x):
    """ggml quantize_row_q8_0_ref on float32 x (size a multiple of 32) -> bytes."""
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.max(np.abs(b), axis=1)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    x0 = (b * inv[:, None]).astype(np.float32).astype(np.float64)
    q = (np.sign(x0) * np.floor(np.abs(x0) + 0.5)).astype(np.int8)
    out = np.zeros((b.shape[0], 34), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def q4_0_quantize(x):
    """ggml quantize_row_q4_0_ref (x*id + 8.5 as one fused operation) -> bytes."""
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    idx = np.argmax(np.abs(b), axis=1)  # first of the largest magnitude
    mx = b[np.arange(b.shape[0]), idx]
    d = (mx / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    # x*inv is exact in float64; + 8.5 then rounded to float32 = fmaf
    # (up to a double rounding that needs an exact f32 midpoint)
    v = (b.astype(np.float64) * inv.astype(np.float64)[:, None] + 8.5).astype(np.float32)
    q = np.minimum(15, np.trunc(v).astype(np.int32)).astype(np.uint8)
    out = np.zeros((b.shape[0], 18), dtype=np.uint8)
    out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def f16_of(raw):
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


def dequant(tname, raw, n):
    """float32 values of n elements of type tname."""
    if tname == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if tname == "F16":
        return f16_of(raw)
    if tname == "Q8_0":
        blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
        d = f16_of(blk[:, :2].tobytes())
        q = blk[:, 2:].copy().view(np.int8).astype(np.float32)
        return (q * d[:, None]).astype(np.float32).reshape(-1)
    if tname == "Q4_0":
        blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
        d = f16_of(blk[:, :2].tobytes())
        qs = blk[:, 2:]
        q = np.concatenate([(qs & 15).astype(np.int32) - 8, (qs >> 4).astype(np.int32) - 8], axis=1)
        return (q.astype(np.float32) * d[:, None]).astype(np.float32).reshape(-1)
    if tname == "Q4_K":
        blk = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 144)
        out = np.empty((blk.shape[0], 256), dtype=np.float32)
        for i in range(blk.shape[0]):
            d = f16_of(blk[i, 0:2].tobytes())[0]
            dmin = f16_of(blk[i, 2:4].tobytes())[0]
            sc = blk[i, 4:16].astype(np.int32)
            qs = blk[i, 16:144]
            y = 0
            for j in range(4):
                for half in range(2):
                    k = 2 * j + half
                    if k < 4:
                        s, m = sc[k] & 63, sc[k + 4] & 63
                    else:
                        s = (sc[k + 4] & 0xF) | ((sc[k - 4] >> 6) << 4)
                        m = (sc[k + 4] >> 4) | ((sc[k] >> 6) << 4)
                    d1 = np.float32(d * np.float32(s))
                    m1 = np.float32(dmin * np.float32(m))
                    q = qs[32 * j:32 * j + 32]
                    q = (q & 0xF) if half == 0 else (q >> 4)
                    out[i, y:y + 32] = (d1 * q.astype(np.float32)).astype(np.float32) - m1
                    y += 32
        return out.reshape(-1)
    raise Bad("cannot decode %s" % tname)


def ordered_bits(a, tname):
    """Integers in the order of the floats (so ulp distance = difference)."""
    if tname == "F32":
        u = np.ascontiguousarray(a, dtype="<f4").view(np.int32).astype(np.int64)
        sign = 1 << 31
    else:
        u = np.ascontiguousarray(a, dtype="<f2").view(np.int16).astype(np.int64)
        sign = 1 << 15
    return np.where(u < 0, -(u + sign), u)


def rounded(want, tname):
    return want.astype(np.float32) if tname == "F32" else want.astype(np.float16)


# ------------------------------------------------------------------ fixtures

def rng_mat(rng, rows, cols, s):
    return (rng.standard_normal((rows, cols)) * s).astype(np.float32)


def q4_k_random(rng, rows, cols):
    """Random but valid Q4_K bytes (finite d, dmin)."""
    nb = rows * cols // 256
    blk = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)
    d = (0.002 + 0.001 * rng.random(nb)).astype("<f2")
    dmin = (0.004 + 0.002 * rng.random(nb)).astype("<f2")
    blk[:, 0:2] = d.view(np.uint8).reshape(-1, 2)
    blk[:, 2:4] = dmin.view(np.uint8).reshape(-1, 2)
    return blk.tobytes()


def q6_k_random(rng, rows, cols):
    nb = rows * cols // 256
    blk = rng.integers(0, 256, size=(nb, 210), dtype=np.uint8)
    d = (0.001 + 0.001 * rng.random(nb)).astype("<f2")
    blk[:, 208:210] = d.view(np.uint8).reshape(-1, 2)
    return blk.tobytes()


def base_kvs(align=None, extra=()):
    tokens = ["<unk>", "<s>", "</s>"] + ["tok%02d" % i for i in range(44)] + ["\u00e9t\u00e9", "\u2581the", ""]
    assert len(tokens) == VOCAB
    kvs = [("general.architecture", "str", "llama"), ("general.name", "str", "tiny-merge-gguf")]
    if align:
        kvs.append(("general.alignment", "u32", align))
    kvs += [("llama.block_count", "u32", LAYERS), ("llama.context_length", "u32", 128),
            ("llama.embedding_length", "u32", HIDDEN), ("llama.feed_forward_length", "u32", FFN),
            ("llama.attention.head_count", "u32", N_HEAD), ("llama.attention.head_count_kv", "u32", N_KV),
            ("llama.rope.freq_base", "f32", 10000.0),
            ("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
            ("tokenizer.ggml.model", "str", "llama"),
            ("tokenizer.ggml.tokens", "arr:str", tokens),
            ("tokenizer.ggml.scores", "arr:f32", [float(-i) for i in range(VOCAB)]),
            ("tokenizer.ggml.token_type", "arr:i32", [2, 3, 3] + [1] * (VOCAB - 3)),
            ("tokenizer.ggml.bos_token_id", "u32", 1),
            ("tokenizer.ggml.add_bos_token", "bool", 1),
            ("test.u8", "u8", 200), ("test.i8", "i8", -7), ("test.u16", "u16", 65000),
            ("test.i16", "i16", -30000), ("test.i32", "i32", -123456), ("test.u64", "u64", 2 ** 40 + 3),
            ("test.i64", "i64", -(2 ** 50)), ("test.f64", "f64", 0.1), ("test.bool", "bool", 0),
            ("test.arr_u8", "arr:u8", [1, 2, 255]), ("test.arr_f64", "arr:f64", [1.5, -2.25]),
            ("test.arr_empty", "arr:u32", [])]
    return kvs + list(extra)


def make_base(case, rng, fname="base.gguf", quant=None, align=None, kv_extra=()):
    """A tiny llama GGUF: F32 norms and attn_q/attn_v/ffn_*, F16 token_embd,
    output, attn_k and attn_output (q/k rows in llama.cpp order, as random
    values: they are what the GGUF holds).  quant: {tensor name: type} for
    block types.  Returns (tensors as (name, type, ne, raw), {name: float32
    values [rows, cols]})."""
    tensors, values = [], {}

    def add(name, tname, rows, cols, scale=0.1):
        ne = [cols] if rows is None else [cols, rows]
        shape = (cols,) if rows is None else (rows, cols)
        if quant and name in quant:
            tname = quant[name]
        if tname == "Q4_K":
            raw = q4_k_random(rng, rows, cols)
        elif tname == "Q6_K":
            raw = q6_k_random(rng, rows, cols)
        else:
            v = (rng.standard_normal(shape) * scale).astype(np.float32)
            if rows is None:
                v = (1 + v).astype(np.float32)
            if tname == "F32":
                raw = v.astype("<f4").tobytes()
            elif tname == "F16":
                raw = v.astype("<f2").tobytes()
            elif tname == "Q8_0":
                raw = q8_0_quantize(v)
            elif tname == "Q4_0":
                raw = q4_0_quantize(v)
            else:
                raise ValueError(tname)
        tensors.append((name, tname, ne, raw))
        if tname != "Q6_K":
            n = cols if rows is None else rows * cols
            values[name] = dequant(tname, raw, n).reshape(shape)

    add("token_embd.weight", "F16", VOCAB, HIDDEN, 0.5)
    for layer in range(LAYERS):
        p = "blk.%d." % layer
        add(p + "attn_norm.weight", "F32", None, HIDDEN)
        types = {"attn_q": "F32", "attn_k": "F16", "attn_v": "F32", "attn_output": "F16", "ffn_gate": "F32",
                 "ffn_up": "F32", "ffn_down": "F32"}
        for suffix in ("attn_q", "attn_k", "attn_v", "attn_output"):
            n_in, n_out = SHAPES[suffix]
            add(p + suffix + ".weight", types[suffix], n_out, n_in, 0.2)
        add(p + "ffn_norm.weight", "F32", None, HIDDEN)
        for suffix in ("ffn_gate", "ffn_up", "ffn_down"):
            n_in, n_out = SHAPES[suffix]
            add(p + suffix + ".weight", types[suffix], n_out, n_in, 0.1)
    add("output_norm.weight", "F32", None, HIDDEN)
    add("output.weight", "F16", VOCAB, HIDDEN, 0.3)
    kvs = base_kvs(align, kv_extra)
    write_gguf(os.path.join(case.dir, fname), kvs, tensors, align or 32)
    return tensors, values


def make_factors(rng, targets, r=8):
    """{gguf tensor name: (A [r, in], B [out, r] in GGUF row order)} float32."""
    out = {}
    for name in targets:
        suffix = name.split(".")[2]
        n_in, n_out = SHAPES[suffix]
        a = rng_mat(rng, r, n_in, 0.2)
        b = rng_mat(rng, n_out, r, 0.05)
        out[name] = (a, b)
    return out


def write_gguf_lora(path, factors, alpha, f16_b=(), arch="llama"):
    kvs = [("general.architecture", "str", arch), ("general.type", "str", "adapter"),
           ("adapter.type", "str", "lora"), ("adapter.lora.alpha", "f32", alpha)]
    tensors = []
    for name, (a, b) in factors.items():
        tensors.append((name + ".weight.lora_a", "F32", [a.shape[1], a.shape[0]], a.astype("<f4").tobytes()))
        if name in f16_b:
            tensors.append((name + ".weight.lora_b", "F16", [b.shape[1], b.shape[0]], b.astype("<f2").tobytes()))
        else:
            tensors.append((name + ".weight.lora_b", "F32", [b.shape[1], b.shape[0]], b.astype("<f4").tobytes()))
    write_gguf(path, kvs, tensors)


def write_st(path, tensors, metadata=None):
    """Minimal safetensors writer: (name, float32 array) list."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors:
        raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_peft(d, factors, r, alpha, rslora=False):
    """PEFT adapter directory over the HF names (lora_B in HF row order)."""
    os.makedirs(d)
    tensors, mods = [], set()
    for name, (a, b) in factors.items():
        _, layer, suffix = name.split(".")
        hf = HF_OF[suffix]
        if suffix == "attn_q":
            b = unpermute_rows(b, N_HEAD)
        elif suffix == "attn_k":
            b = unpermute_rows(b, N_KV)
        prefix = "base_model.model.model.layers.%s.%s" % (layer, hf)
        tensors += [(prefix + ".lora_A.weight", a), (prefix + ".lora_B.weight", b)]
        mods.add(hf.split(".")[1])
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama", "r": r,
           "lora_alpha": alpha, "target_modules": sorted(mods), "lora_dropout": 0.0, "bias": "none",
           "fan_in_fan_out": False, "use_rslora": rslora, "use_dora": False, "modules_to_save": None,
           "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_st(os.path.join(d, "adapter_model.safetensors"), tensors, {"format": "pt"})


def merged(values, factors, scale):
    """float64 W + scale * B @ A for each target."""
    out = {}
    for name, (a, b) in factors.items():
        w = values[name + ".weight"].astype(np.float64)
        out[name + ".weight"] = w + scale * (b.astype(np.float64) @ a.astype(np.float64))
    return out


class Case:
    def __init__(self, root, name):
        self.name = name
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.runs = []
        self.arrays = {}

    def run(self, args, rc=0, output=None, stderr_has=(), base=None, expect=None, default="copy",
            same_as=None, kv_missing_ok=()):
        """expect: {tensor: (mode, type, ref key)}; mode 'ulp' (within 1 ulp
        of the float64 reference rounded once), 'bytes' (== ref bytes);
        default: what the other tensors are ('copy': byte for byte, or
        'F16': the base's values rounded to F16)."""
        k = len(self.runs)
        self.runs.append({"args": args, "rc": rc, "output": output, "stderr_has": list(stderr_has),
                          "base": base, "expect": expect or {}, "default": default, "same_as": same_as,
                          "kv_missing_ok": list(kv_missing_ok)})
        return k

    def ref(self, key, arr):
        self.arrays[key] = np.ascontiguousarray(arr)
        return key

    def save(self):
        np.savez(os.path.join(self.dir, "ref.npz"), **self.arrays)
        with open(os.path.join(self.dir, "case.json"), "w") as f:
            json.dump({"name": self.name, "runs": self.runs}, f, indent=1)


def expect_merged(case, k, ref, types):
    exp = {}
    for name, v in ref.items():
        exp[name] = ("ulp", types[name], case.ref("r%d:%s" % (k, name), v))
    return exp


def type_map(tensors):
    return {name: tname for name, tname, _, _ in tensors}


def case_gguf_lora(root, rng):
    """F32/F16 llama base + GGUF LoRA (q, k permuted; v with an F16 lora_b;
    o on an F16 base tensor; ffn_up): scale 1, then :0.5 and :-1."""
    case = Case(root, "gguf_lora_f32_f16_base")
    tensors, values = make_base(case, rng)
    targets = ["blk.0.attn_q", "blk.0.attn_k", "blk.1.attn_q", "blk.1.attn_k", "blk.0.attn_v",
               "blk.1.attn_output", "blk.0.ffn_up"]
    r, alpha = 8, 16.0
    factors = make_factors(rng, targets, r)
    write_gguf_lora(os.path.join(case.dir, "lora.gguf"), factors, alpha, f16_b=("blk.0.attn_v",))
    f = {n: (a, b.astype(np.float16).astype(np.float32) if n == "blk.0.attn_v" else b)
         for n, (a, b) in factors.items()}
    types = type_map(tensors)
    for k, (suffix, w) in enumerate((("", 1.0), (":0.5", 0.5), (":-1", -1.0))):
        out = "{O%d}/merged.gguf" % k
        case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf" + suffix, "-o", out], output=out,
                 base="base.gguf", expect=expect_merged(case, k, merged(values, f, w * alpha / r), types))
    case.save()
    return case


def case_peft(root, rng):
    """The same kind of base + a GGUF LoRA and the equivalent PEFT adapter
    (HF row order): the same merged tensors (permutation by loratool);
    then an rsLoRA PEFT adapter (scale alpha / sqrt(r), exact: rounded once)."""
    case = Case(root, "peft_adapter_permuted")
    tensors, values = make_base(case, rng)
    targets = ["blk.0.attn_q", "blk.0.attn_k", "blk.1.attn_q", "blk.1.attn_k", "blk.1.attn_v",
               "blk.0.attn_output", "blk.1.ffn_gate", "blk.0.ffn_down"]
    r, alpha = 8, 16.0
    factors = make_factors(rng, targets, r)
    write_gguf_lora(os.path.join(case.dir, "lora.gguf"), factors, alpha)
    write_peft(os.path.join(case.dir, "peft"), factors, r, alpha)
    write_peft(os.path.join(case.dir, "peft_rs"), factors, r, alpha, rslora=True)
    types = type_map(tensors)
    ref = merged(values, factors, alpha / r)
    k0 = case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O0}/m.gguf"], output="{O0}/m.gguf",
                  base="base.gguf", expect=expect_merged(case, 0, ref, types))
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/peft", "-o", "{O1}/m.gguf"], output="{O1}/m.gguf",
             base="base.gguf", expect=expect_merged(case, 1, ref, types), same_as=k0)
    # rsLoRA: the exact scale alpha / sqrt(r) is applied in float64 (no
    # scale folded into an f32 lora_b first): W + alpha/sqrt(r) * B @ A,
    # rounded once, like every other merge
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/peft_rs", "-o", "{O2}/m.gguf"], output="{O2}/m.gguf",
             base="base.gguf", expect=expect_merged(case, 2, merged(values, factors, alpha / np.sqrt(r)), types))
    case.save()
    return case


QUANT = {"blk.0.ffn_gate.weight": "Q8_0", "blk.1.ffn_gate.weight": "Q8_0", "blk.0.ffn_up.weight": "Q4_0",
         "blk.0.ffn_down.weight": "Q4_K", "blk.1.ffn_down.weight": "Q6_K", "blk.1.attn_v.weight": "Q8_0"}


def quant_case(root, rng, name, targets, r=4, alpha=4.0):
    """A base with the block types of QUANT (and general.alignment 64) and a
    GGUF LoRA over TARGETS; returns (case, {tensor: float64 merged}, types)."""
    case = Case(root, name)
    tensors, values = make_base(case, rng, quant=QUANT, align=64)
    factors = make_factors(rng, targets, r)
    write_gguf_lora(os.path.join(case.dir, "lora.gguf"), factors, alpha)
    return case, merged(values, factors, alpha / r), type_map(tensors)


def case_quant_requant(root, rng):
    """Q8_0 and Q4_0 tensors with a delta, --dtype keep: re-quantized with
    ggml's reference quantizer from the float64 merge rounded to f32 (byte
    for byte); the untouched Q8_0, Q4_K, Q6_K tensors copied."""
    case, ref, types = quant_case(root, rng, "quantized_q8_0_q4_0_requantized",
                                  ["blk.0.ffn_gate", "blk.1.attn_v", "blk.0.ffn_up", "blk.0.attn_q"])
    exp = {}
    for name, v in ref.items():
        t = types[name]
        if t in ("Q8_0", "Q4_0"):
            q = q8_0_quantize if t == "Q8_0" else q4_0_quantize
            exp[name] = ("bytes", t, case.ref("r0:" + name, np.frombuffer(q(v.astype(np.float32)), dtype=np.uint8)))
        else:
            exp[name] = ("ulp", t, case.ref("r0:" + name, v))
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O0}/m.gguf"], output="{O0}/m.gguf",
             base="base.gguf", expect=exp)
    case.save()
    return case


def case_quant_k(root, rng):
    """A Q4_K tensor with a delta, --dtype keep: written F16 (no K-quant
    quantizer), within 1 ulp; the untouched Q8_0, Q4_0, Q6_K tensors copied
    byte for byte."""
    case, ref, types = quant_case(root, rng, "quantized_q4_k_to_f16", ["blk.0.ffn_down", "blk.1.attn_q"])
    exp = {name: ("ulp", "F16" if types[name] == "Q4_K" else types[name], case.ref("r0:" + name, v))
           for name, v in ref.items()}
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O0}/m.gguf"], output="{O0}/m.gguf",
             base="base.gguf", expect=exp)
    case.save()
    return case


def case_quant_f16(root, rng):
    """--dtype f16: Q8_0, Q4_0, Q4_K tensors with a delta written F16 within
    1 ulp, float tensors converted to F16, untouched block tensors copied."""
    case, ref, types = quant_case(root, rng, "quantized_dtype_f16",
                                  ["blk.0.ffn_gate", "blk.1.attn_v", "blk.0.ffn_up", "blk.0.ffn_down",
                                   "blk.0.attn_k"])
    exp = {name: ("ulp", "F16", case.ref("r0:" + name, v)) for name, v in ref.items()}
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O0}/m.gguf", "--dtype", "f16"],
             output="{O0}/m.gguf", base="base.gguf", expect=exp, default="F16")
    case.save()
    return case


def case_token_embd(root, rng):
    """LoRA on the token embeddings: GGUF token_embd.weight.lora_a = A^T (ne
    [r, vocab], numpy [vocab, r]), lora_b = B (ne [r, dim], numpy [dim, r]);
    W [vocab, dim] += s (B A)^T = s lora_a @ lora_b^T (llama-export-lora's
    transpose of lora_a for token_embd); the PEFT form (lora_embedding_A
    [r, vocab], lora_embedding_B [dim, r]) gives the same tensor."""
    case = Case(root, "token_embd_lora")
    tensors, values = make_base(case, rng)
    r, alpha = 4, 8.0
    a = rng_mat(rng, r, VOCAB, 0.3)     # PEFT lora_embedding_A [r, vocab]
    b = rng_mat(rng, HIDDEN, r, 0.1)    # PEFT lora_embedding_B [dim, r]
    av, bv = rng_mat(rng, r, HIDDEN, 0.2), rng_mat(rng, N_KV * HD, r, 0.05)
    kvs = [("general.architecture", "str", "llama"), ("general.type", "str", "adapter"),
           ("adapter.type", "str", "lora"), ("adapter.lora.alpha", "f32", alpha)]
    at = np.ascontiguousarray(a.T)
    write_gguf(os.path.join(case.dir, "lora.gguf"), kvs, [
        ("token_embd.weight.lora_a", "F32", [r, VOCAB], at.astype("<f4").tobytes()),
        ("token_embd.weight.lora_b", "F32", [r, HIDDEN], b.astype("<f4").tobytes()),
        ("blk.0.attn_v.weight.lora_a", "F32", [HIDDEN, r], av.astype("<f4").tobytes()),
        ("blk.0.attn_v.weight.lora_b", "F32", [r, N_KV * HD], bv.astype("<f4").tobytes())])
    d = os.path.join(case.dir, "peft")
    os.makedirs(d)
    write_st(os.path.join(d, "adapter_model.safetensors"), [
        ("base_model.model.model.embed_tokens.lora_embedding_A", a),
        ("base_model.model.model.embed_tokens.lora_embedding_B", b),
        ("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", av),
        ("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", bv)], {"format": "pt"})
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha,
           "target_modules": ["embed_tokens", "v_proj"], "lora_dropout": 0.0, "bias": "none",
           "fan_in_fan_out": False, "use_rslora": False, "use_dora": False, "modules_to_save": None,
           "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    s = alpha / r
    ref = {"token_embd.weight": values["token_embd.weight"].astype(np.float64)
           + s * (at.astype(np.float64) @ b.astype(np.float64).T),
           "blk.0.attn_v.weight": values["blk.0.attn_v.weight"].astype(np.float64)
           + s * (bv.astype(np.float64) @ av.astype(np.float64))}
    types = type_map(tensors)
    k0 = case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O0}/m.gguf"], output="{O0}/m.gguf",
                  base="base.gguf", expect=expect_merged(case, 0, ref, types))
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/peft", "-o", "{O1}/m.gguf"], output="{O1}/m.gguf",
             base="base.gguf", expect=expect_merged(case, 1, ref, types), same_as=k0)
    case.save()
    return case


def case_kv_nul(root, rng):
    """A string value with a NUL byte inside (valid GGUF; our reader keeps it
    with its length, spec/gguf.md) cannot be copied by the writer, whose
    strings end at NUL: the merge refuses it by name rather than cutting it
    short, and writes nothing."""
    case = Case(root, "kv_string_with_nul")
    tensors, values = make_base(case, rng, kv_extra=[("test.nul_string", "str", b"ab\0cd")])
    factors = make_factors(rng, ["blk.0.attn_v"], 4)
    write_gguf_lora(os.path.join(case.dir, "lora.gguf"), factors, 8.0)
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O0}/m.gguf"], rc=3,
             stderr_has=("test.nul_string",))
    case.save()
    return case


def case_errors(root, rng):
    case = Case(root, "errors")
    tensors, values = make_base(case, rng)
    factors = make_factors(rng, ["blk.0.attn_v"], 4)
    write_gguf_lora(os.path.join(case.dir, "lora.gguf"), factors, 8.0)
    write_peft(os.path.join(case.dir, "peft"), factors, 4, 8.0)
    # a safetensors base (HF names) for the PEFT adapter
    st = [("model.layers.0.self_attn.v_proj.weight", values["blk.0.attn_v.weight"])]
    write_st(os.path.join(case.dir, "base.safetensors"), st)
    # shape mismatch: lora_a of 48 inputs on attn_q (64)
    a = rng_mat(rng, 4, 48, 0.2)
    b = rng_mat(rng, HIDDEN, 4, 0.05)
    write_gguf_lora(os.path.join(case.dir, "bad_shape.gguf"), {"blk.0.attn_q": (a, b)}, 8.0)
    # PEFT adapter with a mismatched shape (v_proj out 48 rows, base 32)
    bad = {"blk.0.attn_v": (rng_mat(rng, 4, HIDDEN, 0.2), rng_mat(rng, 48, 4, 0.05))}
    write_peft(os.path.join(case.dir, "peft_bad"), bad, 4, 8.0)
    case.run(["merge", "{CASE}/base.safetensors", "{CASE}/peft", "-o", "{O0}/x.gguf"], rc=2,
             stderr_has=["gguf"])
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O1}/x.safetensors"], rc=2,
             stderr_has=["gguf"])
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/lora.gguf", "-o", "{O2}/outdir"], rc=2)
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/bad_shape.gguf", "-o", "{O3}/x.gguf"], rc=3,
             stderr_has=["attn_q"])
    case.run(["merge", "{CASE}/base.gguf", "{CASE}/peft_bad", "-o", "{O4}/x.gguf"], rc=3,
             stderr_has=["attn_v"])
    case.save()
    return case


def generate(out_dir):
    if os.path.isdir(out_dir):
        import shutil
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    rng = np.random.default_rng(SEED)
    names = [c(out_dir, rng).name for c in (case_gguf_lora, case_peft, case_quant_requant, case_quant_k, case_quant_f16, case_token_embd,
                                            case_kv_nul,
                                            case_errors)]
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(names, f)


# ------------------------------------------------------------------ checker

def all_files(root):
    out = []
    for dp, _, fs in os.walk(root):
        out += [os.path.relpath(os.path.join(dp, f), root) for f in fs]
    return sorted(out)


def substitute(arg, case_dir, work):
    arg = arg.replace("{CASE}", case_dir)
    for k in range(10):
        arg = arg.replace("{O%d}" % k, os.path.join(work, "o%d" % k))
    return arg


def setup(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    for k, run in enumerate(spec["runs"]):
        os.makedirs(os.path.join(work, "o%d" % k))
        with open(os.path.join(work, "run.%d.args" % k), "w") as f:
            for a in run["args"]:
                f.write(substitute(a, case_dir, work) + "\n")


def check_run(case_dir, work, k, run, refs, outputs):
    rc = int(open(os.path.join(work, "run.%d.rc" % k)).read())
    err = open(os.path.join(work, "run.%d.err" % k), errors="replace").read()
    odir = os.path.join(work, "o%d" % k)
    if rc != run["rc"]:
        raise Bad("run %d (%s): exit %d, expected %d; stderr: %s" % (k, " ".join(run["args"]), rc, run["rc"],
                                                                    err.strip()[:300]))
    for word in run["stderr_has"]:
        if word.lower() not in err.lower():
            raise Bad("run %d: stderr lacks '%s': %s" % (k, word, err.strip()[:300]))
    if run["rc"] != 0:
        left = all_files(odir) + [d for d in os.listdir(odir)]
        if left:
            raise Bad("run %d failed but left %s" % (k, left))
        return "rc %d" % rc
    path = substitute(run["output"], case_dir, work)
    left = [f for f in all_files(odir) if os.path.join(odir, f) != path]
    if left:
        raise Bad("run %d: unexpected files next to the output: %s" % (k, left))
    kvs, tensors = read_gguf(path)
    bkvs, btensors = read_gguf(os.path.join(case_dir, run["base"]))
    # every base KV, with its type and value; only loratool_merge added
    okv = {key: (typ, v) for key, typ, v in kvs}
    for key, typ, v in bkvs:
        if key in run["kv_missing_ok"]:
            continue
        if key not in okv:
            raise Bad("run %d: KV %s missing from the output" % (k, key))
        if okv[key] != (typ, v):
            raise Bad("run %d: KV %s is %s %r, base has %s %r" % (k, key, KV_NAME.get(okv[key][0]),
                                                                   str(okv[key][1])[:80], KV_NAME.get(typ),
                                                                   str(v)[:80]))
    extra = sorted(set(okv) - {key for key, _, _ in bkvs})
    if extra != ["loratool_merge"]:
        raise Bad("run %d: output KVs beyond the base's: %s (expected loratool_merge)" % (k, extra))
    # tensors: same names, order, ne
    if [t[0] for t in tensors] != [t[0] for t in btensors]:
        raise Bad("run %d: tensor names/order differ from the base" % k)
    stats = {"merged": 0, "copied": 0, "converted": 0, "max_ulp": 0, "inexact": 0}
    for (name, ne, tname, raw), (_, bne, btname, braw) in zip(tensors, btensors):
        if ne != bne:
            raise Bad("run %d: %s ne %s, base %s" % (k, name, ne, bne))
        n = int(np.prod(ne))
        if name in run["expect"]:
            mode, want_type, key = run["expect"][name]
            if tname != want_type:
                raise Bad("run %d: %s is %s, expected %s (base %s)" % (k, name, tname, want_type, btname))
            want = refs[key]
            if mode == "bytes":
                if raw != want.tobytes() and raw == braw:
                    raise Bad("run %d: %s (%s) is the base's bytes: the delta was dropped" % (k, name, tname))
                if raw != want.tobytes():
                    got = dequant(tname, raw, n)
                    exp = dequant(tname, want.tobytes(), n)
                    blocks = np.frombuffer(raw, np.uint8).reshape(-1, GGML[GGML_ID[tname]][2])
                    wblocks = want.reshape(blocks.shape)
                    nbad = int(np.sum(np.any(blocks != wblocks, axis=1)))
                    raise Bad("run %d: %s (%s) differs from the reference quantization in %d of %d blocks; "
                              "max |dequant diff| %.3g" % (k, name, tname, nbad, len(blocks),
                                                           float(np.max(np.abs(got - exp)))))
            else:
                got = dequant(tname, raw, n).reshape(want.shape)
                wr = rounded(want, tname)
                ulps = np.abs(ordered_bits(got, tname) - ordered_bits(wr, tname))
                if not np.all(np.isfinite(got)):
                    raise Bad("run %d: %s has non-finite values" % (k, name))
                m = int(np.max(ulps))
                if m > 1:
                    i = int(np.argmax(ulps))
                    raise Bad("run %d: %s: %d ulp from the float64 reference at element %d (got %r, want %r; "
                              "base %r)" % (k, name, m, i, float(got.reshape(-1)[i]), float(want.reshape(-1)[i]),
                                            float(dequant(btname, braw, n)[i]) if btname != "Q6_K" else None))
                stats["max_ulp"] = max(stats["max_ulp"], m)
                stats["inexact"] += int(np.count_nonzero(ulps))
            stats["merged"] += 1
        elif run["default"] == "copy" or btname not in ("F32", "F16", "BF16"):
            if tname != btname or raw != braw:
                raise Bad("run %d: untouched %s (%s) not copied byte for byte (got %s)" % (k, name, btname, tname))
            stats["copied"] += 1
        else:
            want = dequant(btname, braw, n).astype(np.float16)
            if tname != run["default"] or raw != want.astype("<f2").tobytes():
                raise Bad("run %d: %s: not the base's %s values rounded to %s" % (k, name, btname, run["default"]))
            stats["converted"] += 1
    if run["same_as"] is not None:
        if run["same_as"] not in outputs:
            raise Bad("run %d: run %d, to compare with, failed" % (k, run["same_as"]))
        other = outputs[run["same_as"]]
        for (name, _, _, raw), (_, _, _, oraw) in zip(tensors, other):
            if raw != oraw:
                raise Bad("run %d: %s differs from run %d's" % (k, name, run["same_as"]))
    outputs[k] = tensors
    return "%d merged (max %d ulp, %d not exact), %d copied, %d converted" % (
        stats["merged"], stats["max_ulp"], stats["inexact"], stats["copied"], stats["converted"])


def check(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    refs = np.load(os.path.join(case_dir, "ref.npz"))
    outputs, notes, errors = {}, [], []
    for k, run in enumerate(spec["runs"]):
        try:
            notes.append(check_run(case_dir, work, k, run, refs, outputs))
        except Bad as e:
            errors.append(str(e))
    if errors:
        more = " (and %d more failing runs)" % (len(errors) - 1) if len(errors) > 1 else ""
        print("FAIL %s: %s%s" % (spec["name"], errors[0], more))
        for e in errors[1:]:
            sys.stderr.write("  also: %s\n" % e)
    else:
        print("PASS %s (%s)" % (spec["name"], "; ".join(notes)))
    return not errors


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "list":
        print(" ".join(json.load(open(os.path.join(sys.argv[2], "cases.json")))))
    elif len(sys.argv) == 4 and sys.argv[1] == "setup":
        setup(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(0 if check(sys.argv[2], sys.argv[3]) else 1)
    elif len(sys.argv) == 2:
        generate(sys.argv[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
