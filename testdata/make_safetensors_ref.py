#!/usr/bin/python3
"""Reference data for tests/test_safetensors.c, made with numpy alone.

Usage:  /usr/bin/python3 testdata/make_safetensors_ref.py OUTDIR [CORPUS]

tests/run.sh runs it as `make_safetensors_ref.py build/testdata/safetensors`
before the test programs; test_safetensors takes OUTDIR as its argument.
CORPUS defaults to ../../shared/corpus next to this script (the shared corpus
of real files); when it is absent only the fixtures are made.

The `safetensors` Python package is not used (Debian does not ship it): the
files are written and read here with struct, json and numpy, following the
format description, so the C reader is checked against an independent
implementation.

Writes:
  OUTDIR/fixtures/*.safetensors   small files exercising what a reader must
                                  accept (every dtype, scalars, zero-size
                                  tensors, unpadded and whitespace-padded
                                  headers, escaped metadata, offsets in a
                                  different order than the header keys,
                                  dimensions above 2^53)
  OUTDIR/sharded/                 a sharded model laid out as transformers
                                  saves one (index + 3 shards)
  OUTDIR/expected.json            for every fixture and corpus file: format,
                                  metadata, and per tensor (in data offset
                                  order, shard by shard) name, dtype, shape,
                                  offset, byte size, a checksum of its bytes,
                                  and for float dtypes the first value and
                                  the sum of all values.  Integers that may
                                  exceed 2^53 are written as strings.

Checksum of a tensor's bytes b[0..n): sum of b[i] * (i + 1), modulo 2^64.
"""
import json
import os
import struct
import sys

import numpy as np

RNG = np.random.default_rng(20240611)

# safetensors dtype -> (numpy dtype used for the raw bytes, element size)
RAW = {
    "BOOL": np.uint8, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
    "I32": np.int32, "U32": np.uint32, "I64": np.int64, "U64": np.uint64,
    "F16": np.float16, "BF16": np.uint16, "F32": np.float32, "F64": np.float64,
    "F8_E4M3": np.uint8, "F8_E5M2": np.uint8, "F8_E8M0": np.uint8, "C64": np.complex64,
}
SIZE = {k: np.dtype(v).itemsize for k, v in RAW.items()}


def checksum(raw: bytes) -> str:
    b = np.frombuffer(raw, dtype=np.uint8).astype(np.uint64)
    weights = np.arange(1, len(b) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        total = int(np.sum(b * weights, dtype=np.uint64)) if len(b) else 0
    return str(total)


def bf16_from_f32(x):
    """float32 -> bfloat16 bits, round to nearest even (NaN stays NaN)."""
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def float_values(dtype, raw):
    """Element values as float64 for the float dtypes we check, else None."""
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64)
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if dtype == "F64":  # read as f32 by the C side, rounded once
        return np.frombuffer(raw, dtype="<f8").astype(np.float32).astype(np.float64)
    return None


def describe_tensor(name, info, raw, file_index):
    shape = info["shape"]
    entry = {
        "name": name, "dtype": info["dtype"], "shape": [str(d) for d in shape],
        "offset": str(info["data_offsets"][0]), "nbytes": str(len(raw)),
        "checksum": checksum(raw), "file_index": file_index,
        "first": None, "sum": None, "sum_abs": None,
    }
    values = float_values(info["dtype"], raw)
    if values is not None and len(values) > 0:
        finite = values[np.isfinite(values)]
        entry["first"] = float(values[0]) if np.isfinite(values[0]) else None
        entry["sum"] = float(np.sum(finite))
        entry["sum_abs"] = float(np.sum(np.abs(finite)))
    return entry


def read_safetensors(path):
    """Parse a file with json + numpy; returns (metadata, [(name, info, raw)])."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    start = 8 + n
    items = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    out = []
    for name, info in items:
        b, e = info["data_offsets"]
        count = int(np.prod(info["shape"], dtype=object)) if info["shape"] else 1
        assert e - b == count * SIZE[info["dtype"]], (path, name)
        out.append((name, info, data[start + b:start + e]))
    assert not items or items[-1][1]["data_offsets"][1] + start == len(data), path
    return meta, out


def write_safetensors(path, tensors, metadata=None, order=None, pad_to=1,
                      lead="", trail="", ensure_ascii=True):
    """tensors: list of (name, dtype, shape, raw bytes).  order: the order of
    the data in the buffer (names), default the list order.  The header keys
    follow the list order."""
    by_name = {t[0]: t for t in tensors}
    offsets, pos = {}, 0
    for name in order or [t[0] for t in tensors]:
        raw = by_name[name][3]
        offsets[name] = [pos, pos + len(raw)]
        pos += len(raw)
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets[name]}
    text = (lead + json.dumps(header, ensure_ascii=ensure_ascii, separators=(",", ":"))
            + trail).encode("utf-8")
    text += b" " * ((-len(text)) % pad_to)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order or [t[0] for t in tensors]:
            f.write(by_name[name][3])


def random_tensor(dtype, shape):
    count = int(np.prod(shape)) if shape else 1
    if dtype in ("F16", "F32", "F64"):
        return RNG.standard_normal(count).astype(RAW[dtype]).reshape(shape).tobytes()
    if dtype == "BF16":
        return bf16_from_f32(RNG.standard_normal(count).astype(np.float32)).tobytes()
    if dtype == "C64":
        z = RNG.standard_normal(count) + 1j * RNG.standard_normal(count)
        return z.astype(np.complex64).tobytes()
    if dtype == "BOOL":
        return RNG.integers(0, 2, count).astype(np.uint8).tobytes()
    info = np.iinfo(RAW[dtype])
    return RNG.integers(info.min, info.max, count, dtype=RAW[dtype], endpoint=True).tobytes()


def make_fixtures(out):
    fixtures = os.path.join(out, "fixtures")
    os.makedirs(fixtures, exist_ok=True)
    made = []

    # every dtype, a scalar, zero-size tensors; data in shuffled order
    tensors = []
    for i, dtype in enumerate(RAW):
        shape = [2, 3] if i % 2 else [5]
        tensors.append((f"t{i:02d}.{dtype.lower()}", dtype, shape, random_tensor(dtype, shape)))
    tensors.append(("scalar", "F32", [], random_tensor("F32", [])))
    tensors.append(("empty.rows", "F16", [0, 3], b""))
    tensors.append(("empty.middle", "I32", [2, 0, 5], b""))
    order = [t[0] for t in tensors]
    RNG.shuffle(order)
    metadata = {"format": "pt", "quote\"key": "back\\slash",
                "ctrl": "line1\nline2\ttab\u0001end", "unicode": "日本語 ü \U0001F642"}
    write_safetensors(os.path.join(fixtures, "all_dtypes.safetensors"), tensors, metadata,
                      order=order)
    made.append("fixtures/all_dtypes.safetensors")

    # whitespace around the JSON, raw UTF-8 names, 8-byte padding
    tensors = [("tensör.weight", "F32", [3, 4], random_tensor("F32", [3, 4])),
               ("b", "BF16", [4], random_tensor("BF16", [4]))]
    write_safetensors(os.path.join(fixtures, "whitespace.safetensors"), tensors, {"k": "v"},
                      pad_to=8, lead=" \n\t", trail="\r\n  ", ensure_ascii=False)
    made.append("fixtures/whitespace.safetensors")

    # dimensions that only fit in 64 bits (zero elements, so zero bytes)
    tensors = [("huge.a", "F32", [0, 18446744073709551615], b""),
               ("huge.b", "U8", [9007199254740993, 0], b""),
               ("x", "I64", [2], random_tensor("I64", [2]))]
    write_safetensors(os.path.join(fixtures, "big_dims.safetensors"), tensors)
    made.append("fixtures/big_dims.safetensors")

    # the smallest valid file
    with open(os.path.join(fixtures, "empty.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 2) + b"{}")
    made.append("fixtures/empty.safetensors")
    return made


def make_sharded(out):
    """transformers' layout: shards in name order, index sorted, indent 2."""
    sharded = os.path.join(out, "sharded")
    os.makedirs(sharded, exist_ok=True)
    shards = [
        [("model.embed.weight", "F32", [8, 4]), ("model.layers.0.q.weight", "BF16", [4, 4])],
        [("model.layers.0.k.weight", "F16", [4, 4]), ("model.layers.0.norm", "F32", [4])],
        [("lm_head.weight", "F32", [8, 4])],
    ]
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        name = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = [(n, d, s, random_tensor(d, s)) for n, d, s in shard]
        write_safetensors(os.path.join(sharded, name), tensors, {"format": "pt"}, pad_to=8)
        for n, _, _, raw in tensors:
            weight_map[n] = name
            total += len(raw)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")


def describe_file(root, rel):
    meta, tensors = read_safetensors(os.path.join(root, rel))
    return {"file": rel, "format": "safetensors", "metadata": meta,
            "tensors": [describe_tensor(n, i, r, 0) for n, i, r in tensors]}


def describe_sharded(root, rel):
    with open(os.path.join(root, rel, "model.safetensors.index.json")) as f:
        index = json.load(f)
    shards = sorted(set(index["weight_map"].values()))
    meta = {k: v for k, v in index.get("metadata", {}).items() if isinstance(v, str)}
    out = []
    for k, shard in enumerate(shards):
        smeta, tensors = read_safetensors(os.path.join(root, rel, shard))
        for key, value in smeta.items():
            meta.setdefault(key, value)
        out += [describe_tensor(n, i, r, k) for n, i, r in tensors]
    return {"file": rel, "format": "safetensors-sharded", "metadata": meta,
            "files": shards, "tensors": out}


def corpus_files(corpus):
    found = []
    for sub, pattern in (("models/safetensors_repo_samples", None),
                         ("adapters", "adapter_model.safetensors"),
                         ("models", "model.safetensors")):
        top = os.path.join(corpus, sub)
        if not os.path.isdir(top):
            continue
        for entry in sorted(os.listdir(top)):
            if pattern is None and entry.endswith(".safetensors"):
                found.append(f"{sub}/{entry}")
            elif pattern and os.path.isfile(os.path.join(top, entry, pattern)):
                found.append(f"{sub}/{entry}/{pattern}")
    return found


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = sys.argv[2] if len(sys.argv) == 3 else os.path.join(here, "..", "..", "shared", "corpus")
    os.makedirs(out, exist_ok=True)
    fixtures = [describe_file(out, rel) for rel in make_fixtures(out)]
    make_sharded(out)
    fixtures.append(describe_sharded(out, "sharded"))
    corpus_present = os.path.isdir(corpus)
    described = [describe_file(corpus, rel) for rel in corpus_files(corpus)] if corpus_present else []
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"fixtures": fixtures, "corpus_present": corpus_present, "corpus": described},
                  f, indent=1)
    print(f"{len(fixtures)} fixtures, {len(described)} corpus files described in {out}")


if __name__ == "__main__":
    main()
