"""Fixtures for bitsandbytes checkpoints (spec/bnb.md), numpy only.

A numpy implementation of bitsandbytes' quantizers, written from the facts
in spec/bnb.md (its default torch backend: blockwise absmax with the 1e-38
clamp, nearest code by midpoints, a padded zero value for an odd count; the
CUDA kernel's code 0 for an all-zero block where a case asks for it; FP4's
code order, two codes a byte with the first element in the high nibble, double
quantization of absmax around its mean with the 8-bit dynamic table in
blocks of 256, LLM.int8 row scales), writing the tensors transformers
saves.  The expected values are an independent numpy dequantization that
reads every table from the file written, never from a copy.

    python3 make_bnb_ref.py OUT_DIR

OUT_DIR/cases/NAME/model/  model.safetensors + config.json (a model directory)
OUT_DIR/cases/NAME/expect.safetensors   dequantized tensors, compute dtype
OUT_DIR/cases/NAME/case.json            what the test checks
OUT_DIR/adapters/{quant,plain}/         PEFT adapters (F32)
OUT_DIR/hostile/*.safetensors           broken quant states (exit 3)
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stwrite  # noqa: E402

F32 = np.float32
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
FP4_RAW = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, 0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]
TORCH_NAME = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}

# the model: (name, shape, quantized?)
LAYOUT = [
    ("model.embed_tokens.weight", (16, 40), False),
    ("model.layers.0.self_attn.q_proj.weight", (48, 40), True),
    ("model.layers.0.self_attn.k_proj.weight", (24, 40), False),   # kept unquantized
    ("model.layers.0.self_attn.o_proj.weight", (33, 10), True),    # 330: not whole blocks
    ("model.layers.0.mlp.up_proj.weight", (130, 260), True),       # > 256 absmax: 3 nested blocks
    ("model.layers.0.mlp.down_proj.weight", (7, 19), True),        # 133 elements: odd
    ("model.norm.weight", (40,), False),
]


def code_4bit(kind):
    if kind == "nf4":
        return np.array(NF4, dtype=F32)
    raw = np.array(FP4_RAW, dtype=F32)
    return (raw / np.abs(raw).max()).astype(F32)


def dynamic_map():
    """The signed 8-bit dynamic table: 7 exponent groups of linear means, 0 and 1."""
    data = []
    for i in range(7):
        bounds = np.linspace(0.1, 1, 2 ** i + 1, dtype=F32)
        means = ((bounds[:-1] + bounds[1:]) / F32(2)).astype(F32)
        scaled = (F32(10.0 ** (-6 + i)) * means).astype(F32)
        data += list(scaled) + list(-scaled)
    data += [0.0, 1.0]
    assert len(data) == 256
    return np.sort(np.array(data, dtype=F32))


def nearest_code(scaled, code):
    """Index of the nearest code value: bucketing over the midpoints of the
    sorted codes, a tie to the lower one (torch.bucketize, right=False).  The
    sort is stable, so FP4's zero (entries 0 and 8, both +0) is entry 0."""
    order = np.argsort(code, kind="stable")
    srt = code[order]
    mids = ((srt[:-1] + srt[1:]) / F32(2)).astype(F32)
    return order[np.searchsorted(mids, scaled, side="left")].astype(np.uint8)


def scale_blocks(flat, bs):
    """bitsandbytes' default backend (backends/default/ops.py, quantize_4bit
    and quantize_blockwise): whole blocks are multiplied by 1 / max(absmax,
    1e-38), the partial last block divided by its own clamped absmax, both
    clipped to [-1, 1]; a whole block's absmax is stored unclamped, the
    partial block's clamped (an all-zero partial block stores 1e-38).
    -> (scaled, absmax) in float32."""
    n = flat.size
    full = n - n % bs
    blocks = flat[:full].reshape(-1, bs)
    absmax = np.abs(blocks).max(axis=1).astype(F32) if full else np.zeros(0, F32)
    inv = (F32(1) / np.maximum(absmax, F32(1e-38))).astype(F32)
    scaled = np.clip((blocks * inv[:, None]).astype(F32), -1, 1).reshape(-1)
    if full < n:
        am = max(F32(np.abs(flat[full:]).max()), F32(1e-38))
        absmax = np.concatenate([absmax, np.array([am], F32)])
        scaled = np.concatenate([scaled, np.clip((flat[full:] / am).astype(F32), -1, 1)])
    return scaled.astype(F32), absmax


def quantize_blockwise(flat, code, bs):
    scaled, absmax = scale_blocks(flat, bs)
    return nearest_code(scaled, code), absmax


def quantize_4bit(w, kind, bs, nested, backend="default"):
    """-> dict of suffix -> array, plus the non-tensor state.

    backend "default" is bitsandbytes' torch backend (what a CPU runs); an odd
    element count is padded with a scaled 0, so the unused low nibble is the
    code of 0 (NF4 7, FP4 0).  backend "cuda" models kQuantizeBlockwise where
    it differs: absmax is stored unclamped, and a block whose absmax is 0
    scales by 1/0 = inf, 0 * inf is NaN, and dQuantizeNF4/dQuantizeFP4 map NaN
    to code 0 (NF4's -1), so such a block (and its pad nibble) holds code 0."""
    flat = w.astype(F32).reshape(-1)
    code = code_4bit(kind)
    scaled, absmax = scale_blocks(flat, bs)
    if flat.size % 2:
        scaled = np.concatenate([scaled, np.zeros(1, F32)])
    q = nearest_code(scaled, code)
    if backend == "cuda":
        raw = np.zeros(-(-flat.size // bs) * bs, F32)
        raw[:flat.size] = np.abs(flat)
        absmax = raw.reshape(-1, bs).max(axis=1).astype(F32)
        zero = np.repeat(absmax == 0, bs)[:q.size]   # the pad nibble is in the last block
        q = np.where(zero, np.uint8(0), q).astype(np.uint8)
    packed = ((q[0::2] << 4) | q[1::2]).astype(np.uint8).reshape(-1, 1)
    parts = {"": packed, ".absmax": absmax, ".quant_map": code}
    state = {"quant_type": kind, "blocksize": bs, "dtype": None, "shape": list(w.shape)}
    if nested:
        offset = F32(absmax.mean(dtype=F32))
        dyn = dynamic_map()
        qabs, nabs = quantize_blockwise((absmax - offset).astype(F32), dyn, 256)
        parts.update({".absmax": qabs, ".nested_absmax": nabs, ".nested_quant_map": dyn})
        state.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": float(offset)})
    return parts, state


def dequantize_4bit(t, w):
    """The reference: reads every part (tables included) from the file's tensors t."""
    state = json.loads(bytes(t[w + ".quant_state.bitsandbytes__" + ("nf4" if w + ".quant_state.bitsandbytes__nf4" in t else "fp4")]))
    n = int(np.prod(state["shape"]))
    bs = state["blocksize"]
    code = t[w + ".quant_map"]
    if w + ".nested_absmax" in t:
        qabs, nabs, dyn = t[w + ".absmax"], t[w + ".nested_absmax"], t[w + ".nested_quant_map"]
        nbs = state["nested_blocksize"]
        absmax = (dyn[qabs.astype(np.int64)] * nabs[np.arange(qabs.size) // nbs]).astype(F32)
        absmax = (absmax + F32(state["nested_offset"])).astype(F32)
    else:
        absmax = t[w + ".absmax"]
    packed = t[w].reshape(-1)
    nib = np.empty(packed.size * 2, dtype=np.int64)
    nib[0::2] = packed >> 4
    nib[1::2] = packed & 15
    cv = code[nib[:n]]
    if w + ".quant_state.bitsandbytes__fp4" in t:
        # the kernels' sign rule: code 8 (sign bit, zero magnitude) is -0.0
        cv = np.where(nib[:n] == 8, F32(-0.0), cv).astype(F32)
    vals = (cv * absmax[np.arange(n) // bs]).astype(F32)
    return vals.reshape(state["shape"]), state


def quantize_int8(w):
    """Row-wise absmax to int8; an all-zero row (0 * 127/0) is written as 0s."""
    scb = np.abs(w).max(axis=1).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.round(w * (F32(127) / scb)[:, None])
    return np.where(scb[:, None] > 0, q, 0).astype(np.int8), scb


def dequantize_int8(q, scb):
    v = (q.astype(F32) * scb[:, None]).astype(F32)
    return (v * F32(7.874015718698502e-3)).astype(F32)


def as_dtype_entry(name, vals, dtype):
    if dtype == "BF16":
        return stwrite.bf16(name, vals)
    if dtype == "F16":
        return (name, vals.astype(np.float16))
    return (name, vals.astype(F32))


def stored_f64(vals, dtype):
    """The values as the compute dtype holds them, as float64."""
    if dtype == "BF16":
        return (stwrite.bf16_bits(vals).astype(np.uint32) << 16).view(F32).astype(np.float64)
    if dtype == "F16":
        return vals.astype(np.float16).astype(np.float64)
    return vals.astype(F32).astype(np.float64)


def parse_st(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    np_types = {"F32": F32, "U8": np.uint8, "I8": np.int8, "F16": np.float16}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[8 + n + b:8 + n + end]
        out[name] = np.frombuffer(raw, dtype=np_types.get(e["dtype"], np.uint16)).reshape(e["shape"])
    return out


def model_weights(rng, dtype):
    ws = {}
    for name, shape, _ in LAYOUT:
        w = rng.standard_normal(shape).astype(F32) * F32(0.05)
        ws[name] = stored_f64(w, dtype).astype(F32)   # what the unquantized model held
    # all-zero blocks, where the quantizers clamp or divide by zero: a whole
    # one (o_proj 64..127) and a partial last one (down_proj 128..132)
    ws["model.layers.0.self_attn.o_proj.weight"].reshape(-1)[64:128] = 0
    ws["model.layers.0.mlp.down_proj.weight"].reshape(-1)[128:] = 0
    return ws


def write_case(root, name, kind, bs, nested, dtype, rng, backend="default"):
    d = os.path.join(root, "cases", name)
    md = os.path.join(d, "model")
    os.makedirs(md, exist_ok=True)
    ws = model_weights(rng, dtype)
    entries = []
    for wname, shape, quant in LAYOUT:
        if not quant:
            entries.append(as_dtype_entry(wname, ws[wname], dtype))
        elif kind == "int8":
            q, scb = quantize_int8(ws[wname])
            prefix = wname[:-len(".weight")]
            entries += [(wname, q), (prefix + ".SCB", scb), (prefix + ".weight_format", np.array(0, np.uint8))]
        else:
            parts, state = quantize_4bit(ws[wname], kind, bs, nested, backend)
            state["dtype"] = TORCH_NAME[dtype]
            for suffix, arr in parts.items():
                entries.append((wname + suffix, arr))
            blob = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
            entries.append((wname + ".quant_state.bitsandbytes__" + kind, blob))
    stwrite.write(os.path.join(md, "model.safetensors"), entries, {"format": "pt"})
    qcfg = {"quant_method": "bitsandbytes", "load_in_4bit": kind != "int8", "load_in_8bit": kind == "int8",
            "bnb_4bit_quant_type": kind if kind != "int8" else "fp4", "bnb_4bit_use_double_quant": nested,
            "bnb_4bit_compute_dtype": TORCH_NAME[dtype]}
    with open(os.path.join(md, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": TORCH_NAME[dtype],
                   "quantization_config": qcfg}, f, indent=2)
    # the reference dequantization, from the file just written
    t = parse_st(os.path.join(md, "model.safetensors"))
    expect, info = [], {}
    for wname, shape, quant in LAYOUT:
        if quant and kind == "int8":
            prefix = wname[:-len(".weight")]
            vals = dequantize_int8(t[wname], t[prefix + ".SCB"])
        elif quant:
            vals, _ = dequantize_4bit(t, wname)
        else:
            vals = ws[wname]
        expect.append(as_dtype_entry(wname, vals.astype(F32), dtype))
        info[wname] = {"shape": list(shape), "quantized": quant}
    stwrite.write(os.path.join(d, "expect.safetensors"), expect)
    case = {"type": kind, "blocksize": bs if kind != "int8" else 0, "double_quant": nested, "dtype": dtype,
            "tensors": info, "parameters": int(sum(np.prod(s) for _, s, _ in LAYOUT))}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)


def write_adapters(root, rng):
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "none", "fan_in_fan_out": False,
           "task_type": "CAUSAL_LM", "use_rslora": False, "use_dora": False}
    for name, modules in (("quant", ["q_proj", "o_proj", "up_proj", "down_proj"]), ("plain", ["k_proj"])):
        d = os.path.join(root, "adapters", name)
        os.makedirs(d, exist_ok=True)
        c = dict(cfg, target_modules=modules)
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(c, f)
        entries = []
        for wname, shape, _ in LAYOUT:
            if not any(("." + m + ".") in wname for m in modules):
                continue
            key = "base_model.model." + wname[:-len(".weight")]
            a = (rng.standard_normal((4, shape[1])) * 0.1).astype(F32)
            b = (rng.standard_normal((shape[0], 4)) * 0.1).astype(F32)
            entries += [(key + ".lora_A.weight", a), (key + ".lora_B.weight", b)]
        stwrite.write(os.path.join(d, "adapter_model.safetensors"), entries, {"format": "pt"})


def write_hostile(root, rng):
    """One broken thing per file; every one must be refused with exit 3."""
    d = os.path.join(root, "hostile")
    os.makedirs(d, exist_ok=True)
    w = (rng.standard_normal((8, 64)) * 0.05).astype(F32)
    base_parts, base_state = quantize_4bit(w, "nf4", 64, True)
    base_state["dtype"] = "bfloat16"
    name = "layer.weight"

    def emit(fname, parts=None, state=None, blob=None, kind="nf4", extra=()):
        parts = dict(base_parts if parts is None else parts)
        st = dict(base_state if state is None else state)
        raw = blob if blob is not None else json.dumps(st).encode()
        entries = [(name + s, a) for s, a in parts.items()]
        entries.append((name + ".quant_state.bitsandbytes__" + kind, np.frombuffer(raw, dtype=np.uint8)))
        entries += list(extra)
        stwrite.write(os.path.join(d, fname + ".safetensors"), entries)

    emit("bad_json", blob=b'{"quant_type": "nf4", "blocksize": 64,')
    emit("not_object", blob=b'[1, 2, 3]')
    emit("not_utf8", blob=b'{"quant_type": "\xff\xfe"}')
    emit("blocksize_odd", state=dict(base_state, blocksize=48))
    emit("blocksize_zero", state=dict(base_state, blocksize=0))
    emit("blocksize_huge", state=dict(base_state, blocksize=1 << 40))
    emit("shape_too_big", state=dict(base_state, shape=[8, 128]))
    emit("shape_overflow", state=dict(base_state, shape=[1 << 40, 1 << 40]))
    emit("shape_negative", state=dict(base_state, shape=[-8, 64]))
    emit("shape_fraction", state=dict(base_state, shape=[8.5, 64]))
    emit("dtype_unknown", state=dict(base_state, dtype="int8"))
    emit("type_mismatch", state=dict(base_state, quant_type="fp4"))
    emit("unknown_key", state=dict(base_state, surprise=1))
    emit("nested_blocksize_zero", state=dict(base_state, nested_blocksize=0))
    emit("nested_offset_nan", blob=json.dumps(dict(base_state, nested_offset=float("nan"))).encode())
    emit("nested_offset_string", state=dict(base_state, nested_offset="0.1"))
    emit("nested_dtype_f16", state=dict(base_state, nested_dtype="float16"))
    emit("missing_nested_fields", state={k: v for k, v in base_state.items() if not k.startswith("nested")})
    emit("absmax_short", parts=dict(base_parts, **{".absmax": base_parts[".absmax"][:-1]}))
    emit("packed_short", parts=dict(base_parts, **{"": base_parts[""][:-1]}))
    emit("nested_absmax_long", parts=dict(base_parts, **{".nested_absmax": np.zeros(2, F32)}))
    emit("quant_map_wrong", parts=dict(base_parts, **{".quant_map": code_4bit("fp4")}))
    emit("quant_map_short", parts=dict(base_parts, **{".quant_map": code_4bit("nf4")[:8]}))
    emit("nested_quant_map_short", parts=dict(base_parts, **{".nested_quant_map": dynamic_map()[:255]}))
    emit("missing_absmax", parts={k: v for k, v in base_parts.items() if k != ".absmax"})
    emit("missing_weight", parts={k: v for k, v in base_parts.items() if k != ""})
    emit("bad_type", kind="int4")
    emit("weight_f16_short", parts=dict(base_parts, **{"": base_parts[""].reshape(-1)[:-2].view(np.float16)}))
    q, scb = quantize_int8(w)
    stwrite.write(os.path.join(d, "int8_scb_short.safetensors"), [("l.weight", q), ("l.SCB", scb[:-1])])
    stwrite.write(os.path.join(d, "int8_no_weight.safetensors"), [("l.SCB", scb)])
    stwrite.write(os.path.join(d, "int8_weight_f32.safetensors"), [("l.weight", w), ("l.SCB", scb)])
    stwrite.write(os.path.join(d, "int8_format_col.safetensors"),
                  [("l.weight", q), ("l.SCB", scb), ("l.weight_format", np.array(1, np.uint8))])
    emit("orphan_absmax", extra=[("l.weight", base_parts[""]), ("l.weight.absmax", base_parts[".nested_absmax"])])


def write_storage_variant(root, from_case):
    """The same model with quant_storage=bfloat16: packed bytes stored as BF16 (even byte counts)."""
    src = os.path.join(root, "cases", from_case)
    d = os.path.join(root, "cases", from_case + "_storage_bf16")
    os.makedirs(os.path.join(d, "model"), exist_ok=True)
    with open(os.path.join(src, "model", "model.safetensors"), "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    quantized = {name for name, _, q in LAYOUT if q}
    entries = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[8 + n + b:8 + n + end]
        if name in quantized and len(raw) % 2 == 0:
            entries.append((name, "BF16", raw, [len(raw) // 2, 1]))
        else:
            entries.append((name, e["dtype"], raw, e["shape"]))
    stwrite.write(os.path.join(d, "model", "model.safetensors"), entries, {"format": "pt"})
    for rel in ("model/config.json", "expect.safetensors", "case.json"):
        with open(os.path.join(src, rel), "rb") as f_in, open(os.path.join(d, rel), "wb") as f_out:
            f_out.write(f_in.read())


def write_pad_variant(root, from_case):
    """The same model with the unused low nibble of the odd-sized down_proj
    set to 15: no reader looks at it (default backend: [:n]; C++/CUDA
    kernels: valid_items), so the values must not change."""
    src = os.path.join(root, "cases", from_case)
    d = os.path.join(root, "cases", from_case + "_pad15")
    shutil.copytree(src, d)
    path = os.path.join(d, "model", "model.safetensors")
    with open(path, "rb") as f:
        data = bytearray(f.read())
    n = struct.unpack("<Q", data[:8])[0]
    e = json.loads(data[8:8 + n])["model.layers.0.mlp.down_proj.weight"]
    last = 8 + n + e["data_offsets"][1] - 1
    assert data[last] & 15 == 7, "the NF4 pad nibble should be the code of 0"
    data[last] |= 15
    with open(path, "wb") as f:
        f.write(data)


def write_sharded(root, from_case):
    """The same model in two shards, split between the parts of one weight."""
    src = os.path.join(root, "cases", from_case)
    d = os.path.join(root, "cases", from_case + "_sharded")
    md = os.path.join(d, "model")
    os.makedirs(md, exist_ok=True)
    with open(os.path.join(src, "model", "model.safetensors"), "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    names = [k for k in header if k != "__metadata__"]
    cut = names.index("model.layers.0.mlp.up_proj.weight.absmax")
    shards = [names[:cut], names[cut:]]
    weight_map = {}
    for k, part in enumerate(shards):
        fname = "model-%05d-of-00002.safetensors" % (k + 1)
        entries = []
        for name in part:
            e = header[name]
            b, end = e["data_offsets"]
            entries.append((name, e["dtype"], data[8 + n + b:8 + n + end], e["shape"]))
            weight_map[name] = fname
        stwrite.write(os.path.join(md, fname), entries, {"format": "pt"})
    with open(os.path.join(md, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": len(data) - 8 - n}, "weight_map": weight_map}, f, indent=2)
    for name in ("config.json",):
        with open(os.path.join(src, "model", name)) as f_in, open(os.path.join(md, name), "w") as f_out:
            f_out.write(f_in.read())
    for name in ("expect.safetensors", "case.json"):
        with open(os.path.join(src, name), "rb") as f_in, open(os.path.join(d, name), "wb") as f_out:
            f_out.write(f_in.read())


REAL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bnb_real")


def read_real(path):
    """One fixture of testdata/bnb_real (README.md there): the layout is
    anamnesis' tests/fixtures/bnb_reference/generate_bnb.py, read here from
    its header fields, every length checked against the file."""
    with open(path, "rb") as f:
        data = f.read()
    fmt = struct.unpack_from("<I", data, 0)[0]
    if fmt == 1:
        rows, cols, wl, sl, el = struct.unpack_from("<5I", data, 4)
        at = 24
        assert at + wl + sl + el == len(data) and wl == rows * cols and sl == 4 * rows and el == 2 * wl
        w = np.frombuffer(data, np.int8, wl, at).reshape(rows, cols)
        scb = np.frombuffer(data, F32, rows, at + wl)
        expect = data[at + wl + sl:]
        return {"kind": "int8", "weight": w, "scb": scb, "expect": expect}
    n, bs, wl, al, ql, nal, nql, el = struct.unpack_from("<8I", data, 4)
    offset = struct.unpack_from("<f", data, 36)[0]
    at = 40
    assert fmt in (0, 2) and at + wl + al + ql + nal + nql + el == len(data)
    assert wl * 2 == n and ql == 64 and el == 2 * n
    parts = {"": np.frombuffer(data, np.uint8, wl, at).reshape(-1, 1)}
    at += wl
    parts[".absmax"] = np.frombuffer(data, np.uint8 if fmt == 2 else F32, al if fmt == 2 else al // 4, at)
    at += al
    parts[".quant_map"] = np.frombuffer(data, F32, 16, at)
    at += ql
    if fmt == 2:
        parts[".nested_absmax"] = np.frombuffer(data, F32, nal // 4, at)
        parts[".nested_quant_map"] = np.frombuffer(data, F32, nql // 4, at + nal)
    at += nal + nql
    kinds = [k for k in ("nf4", "fp4") if np.array_equal(parts[".quant_map"], code_4bit(k))]
    assert len(kinds) == 1, "quant_map is neither bitsandbytes' NF4 nor its FP4 table"
    state = {"quant_type": kinds[0], "blocksize": bs, "dtype": "float32", "shape": [n // 64, 64]}
    if fmt == 2:
        state.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": float(offset)})
    return {"kind": kinds[0], "parts": parts, "state": state, "expect": data[at:]}


def write_real(root, rng):
    """Model directories around the real bitsandbytes tensors of
    testdata/bnb_real: the weight as model.layers.0.mlp.gate_proj, the
    quant state's dtype float32 (so merge writes the float32 products and
    the test rounds them), an adapter on a plain tensor beside it (the
    merge writes the weight as read) and one on the weight itself."""
    name = "model.layers.0.mlp.gate_proj.weight"
    for fname in sorted(os.listdir(REAL_DIR)):
        if not fname.endswith(".bin"):
            continue
        r = read_real(os.path.join(REAL_DIR, fname))
        d = os.path.join(root, "real", fname[:-4])
        os.makedirs(os.path.join(d, "model"))
        if r["kind"] == "int8":
            entries = [(name, r["weight"]), ("model.layers.0.mlp.gate_proj.SCB", r["scb"]),
                       ("model.layers.0.mlp.gate_proj.weight_format", np.array(0, np.uint8))]
            shape = list(r["weight"].shape)
        else:
            entries = [(name + s, a) for s, a in r["parts"].items()]
            blob = np.frombuffer(json.dumps(r["state"]).encode(), np.uint8)
            entries.append((name + ".quant_state.bitsandbytes__" + r["kind"], blob))
            shape = r["state"]["shape"]
        entries.append(("model.layers.0.self_attn.k_proj.weight", np.zeros((4, 8), F32)))
        stwrite.write(os.path.join(d, "model", "model.safetensors"), entries, {"format": "pt"})
        with open(os.path.join(d, "model", "config.json"), "w") as f:
            json.dump({"model_type": "llama", "torch_dtype": "float32",
                       "quantization_config": {"quant_method": "bitsandbytes"}}, f)
        with open(os.path.join(d, "bitsandbytes_bf16.bin"), "wb") as f:
            f.write(r["expect"])
        # the independent numpy dequantization of the file just written
        t = parse_st(os.path.join(d, "model", "model.safetensors"))
        if r["kind"] == "int8":
            vals = dequantize_int8(t[name], t["model.layers.0.mlp.gate_proj.SCB"])
        else:
            vals, _ = dequantize_4bit(t, name)
        stwrite.write(os.path.join(d, "numpy_f32.safetensors"), [(name, vals.astype(F32))])
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump({"type": r["kind"], "shape": shape, "parameters": int(np.prod(shape)) + 32,
                       "double_quant": ".nested_absmax" in r.get("parts", {})}, f)
        cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "none", "fan_in_fan_out": False,
               "task_type": "CAUSAL_LM", "target_modules": ["gate_proj"]}
        for sub, module, dims in (("adapter_plain", "self_attn.k_proj", [4, 8]), ("adapter", "mlp.gate_proj", shape)):
            ad = os.path.join(d, sub)
            os.makedirs(ad)
            with open(os.path.join(ad, "adapter_config.json"), "w") as f:
                json.dump(dict(cfg, target_modules=[module.split(".")[1]]), f)
            a = (rng.standard_normal((4, dims[1])) * 0.1).astype(F32)
            b = (rng.standard_normal((dims[0], 4)) * 0.01).astype(F32)
            key = "base_model.model.model.layers.0." + module
            stwrite.write(os.path.join(ad, "adapter_model.safetensors"),
                          [(key + ".lora_A.weight", a), (key + ".lora_B.weight", b)], {"format": "pt"})


def main():
    root = sys.argv[1]
    shutil.rmtree(root, ignore_errors=True)  # no file of an earlier version survives
    rng = np.random.default_rng(20261204)
    for kind in ("nf4", "fp4"):
        for nested in (False, True):
            for bs in (64, 128):
                for dtype in ("BF16", "F16"):
                    name = "%s_%s_bs%d_%s" % (kind, "dq" if nested else "plain", bs, dtype.lower())
                    write_case(root, name, kind, bs, nested, dtype, rng)
    # as bitsandbytes' CUDA kernel writes an all-zero block: code 0 (NF4 -1)
    # times an absmax of 0, or of whatever double quantization gives back
    write_case(root, "nf4_dq_bs64_bf16_cuda", "nf4", 64, True, "BF16", rng, backend="cuda")
    write_case(root, "fp4_plain_bs64_f16_cuda", "fp4", 64, False, "F16", rng, backend="cuda")
    write_case(root, "int8_f16", "int8", 0, False, "F16", rng)
    write_case(root, "int8_bf16", "int8", 0, False, "BF16", rng)
    write_sharded(root, "nf4_dq_bs64_bf16")
    write_storage_variant(root, "nf4_plain_bs64_bf16")
    write_pad_variant(root, "nf4_plain_bs64_bf16")
    write_adapters(root, rng)
    write_hostile(root, rng)
    write_real(root, np.random.default_rng(20261205))
    # bnb names only in a metadata value: still a plain safetensors file
    stwrite.write(os.path.join(root, "plain_meta.safetensors"), [("a.weight", np.zeros((2, 2), F32))],
                  {"note": "x.weight.quant_state.bitsandbytes__nf4 and y.SCB\""})
    print("bnb fixtures written to", root)


if __name__ == "__main__":
    main()
