"""Minimal safetensors writer for fixture scripts (json + numpy only).

Written from the format description (spec/safetensors.md): u64 LE header
length, JSON header padded with spaces to a multiple of 8, raw LE data.
"""
import json
import struct

import numpy as np

DTYPES = {
    np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("float64"): "F64",
    np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("int16"): "I16",
    np.dtype("int32"): "I32", np.dtype("int64"): "I64", np.dtype("bool"): "BOOL",
}


def bf16_bits(a):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def write(path, tensors, metadata=None):
    """tensors: list of (name, array) or (name, dtype_name, raw_bytes, shape)."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    blobs = []
    offset = 0
    for item in tensors:
        if len(item) == 2:
            name, arr = item
            arr = np.ascontiguousarray(arr)
            dtype, raw, shape = DTYPES[arr.dtype], arr.astype(arr.dtype.newbyteorder("<")).tobytes(), list(arr.shape)
        else:
            name, dtype, raw, shape = item
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def bf16(name, arr):
    """A (name, 'BF16', bytes, shape) entry from a float array."""
    return (name, "BF16", bf16_bits(arr).tobytes(), list(np.shape(arr)))
