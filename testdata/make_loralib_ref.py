"""Reference data for tests/test_loralib.sh (numpy only; no torch, no loratool).

Usage: /usr/bin/python3 testdata/make_loralib_ref.py OUT_DIR

Reads the committed fixtures of testdata/loralib (made once with torch by
make_loralib_fixtures.py: <case>.npz holds the checkpoint's arrays and the
float64 delta torch computed with loralib's own formula) and writes to
OUT_DIR:
  <case>.expected.npz    float64 merged values of every base tensor: W +
                         (alpha / r) * delta by loralib's formulas written
                         here from spec/loralib.md (per enabled group
                         B_g @ A_g, zero rows elsewhere, transposed for
                         fan_in_fan_out and Embedding; ConvLoRA:
                         (B @ A) laid over the conv weight's elements in
                         row-major order, scale alpha / (rows of A / kernel)),
                         replaced tensors as saved; checked against torch's
                         delta first
  <case>.safetensors     the same checkpoint as a safetensors file
  refuse_extra.safetensors, refuse_shape.safetensors: checkpoints holding a
                         tensor that matches no base tensor by name / shape
  refuse_conv_shape.safetensors: the conv checkpoint with a lora_B whose
                         rows fit no ConvLoRA on its base conv
  conv_bias_all.safetensors: the conv checkpoint with each conv bias saved
                         a second time as "<m>.conv.bias" (bias='all')
  refuse_conv_alias.safetensors: the same with a "<m>.conv.bias" that
                         differs from "<m>.bias"
  bloom_full_base.safetensors   header of BLOOM-560m's 24 query_key_value
                         weights [3072, 1024] F16, data a sparse hole
  bloom_two_base.safetensors    layers 0 and 23 only, random F16 values
  bloom.expected.npz     their merge with the PEFT 0.2/0.3 enable_lora adapter
                         of ../shared/corpus/bin (read here by a small torch
                         zip reader), by PEFT's forward formula
"""
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stwrite  # noqa: E402

FIX = os.path.join(HERE, "loralib")
BLOOM = os.path.join(HERE, "..", "..", "shared", "corpus", "bin", "02_bloom-560m-enable_lora-legacy")

# case -> (alpha, enable_lora mask or None, fan_in_fan_out flag)
CASES = {
    "gpt2": (32.0, [True, False, True], True),
    "roberta_head": (16.0, None, False),
    "roberta_lora_only": (16.0, None, False),
    "fused_qkv": (8.0, None, False),
    "conv": (4.0, None, False),
    "conv_grouped": (6.0, None, False),
}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    types = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=types[info["dtype"]]).reshape(info["shape"])
    return out


def merged_delta(a, b, mask, n_out):
    """loralib MergedLinear: A [r*on, in], B [n_out/G*on, r]; delta [n_out, in]."""
    r = b.shape[1]
    rows = n_out // len(mask)
    delta = np.zeros((n_out, a.shape[1]))
    k = 0
    for g, on in enumerate(mask):
        if on:
            delta[g * rows:(g + 1) * rows] = b[k * rows:(k + 1) * rows] @ a[k * r:(k + 1) * r]
            k += 1
    return delta


def case_reference(out, case):
    alpha, mask, fan_in_fan_out = CASES[case]
    z = np.load(os.path.join(FIX, case + ".npz"))
    base = read_safetensors(os.path.join(FIX, case + "_base.safetensors"))
    state = {k: z[k] for k in z.files if not k.startswith("delta:")}
    expected = {k: v.astype(np.float64) for k, v in base.items()}
    modules = sorted({k[:-len(".lora_A")] for k in state if k.endswith(".lora_A")})
    for name in modules:
        a = state[name + ".lora_A"].astype(np.float64)
        b = state[name + ".lora_B"].astype(np.float64)
        w = base[name + ".weight"]
        if w.ndim >= 3:                             # ConvLoRA: A [r k, in k], k the kernel size
            delta = (b @ a).reshape(w.shape) * (alpha / (a.shape[0] // w.shape[2]))
        elif a.shape[0] != b.shape[1]:             # MergedLinear
            transposed = w.shape[0] == a.shape[1] and w.shape[1] != a.shape[1]
            n_out = w.shape[1] if transposed else w.shape[0]
            delta = merged_delta(a, b, mask or [True] * (a.shape[0] // b.shape[1]), n_out) * (alpha / b.shape[1])
            if transposed:
                delta = delta.T
        else:                                       # Linear (maybe fan_in_fan_out) or Embedding
            delta = b @ a * (alpha / a.shape[0])
            if delta.shape != w.shape or (fan_in_fan_out and w.shape[0] == w.shape[1]):
                delta = delta.T
        torch_delta = z["delta:" + name]
        if delta.shape != torch_delta.shape or not np.allclose(delta, torch_delta, rtol=1e-12, atol=1e-12):
            sys.exit(f"{case}: {name}: reference delta differs from torch's loralib formula")
        expected[name + ".weight"] = base[name + ".weight"].astype(np.float64) + delta
    for k, v in state.items():
        if not (k.endswith(".lora_A") or k.endswith(".lora_B")):
            expected[k] = v.astype(np.float64)
    np.savez(os.path.join(out, case + ".expected.npz"), **expected)
    stwrite.write(os.path.join(out, case + ".safetensors"), [(k, v) for k, v in state.items()])
    if case == "conv":
        # conv_in's lora_B with 16 rows: no out / groups x kernel for [8, 3, 3, 3]
        shape = [(k, np.zeros((16, 6), np.float32) if k == "conv_in.lora_B" else v) for k, v in state.items()]
        stwrite.write(os.path.join(out, "refuse_conv_shape.safetensors"), shape)
        # bias='all' of a ConvLoRA model: each conv bias also as "<m>.conv.bias"
        # (ConvLoRA registers its conv's parameters twice), the same values
        twice = list(state.items()) + [(k[:-len("bias")] + "conv.bias", v) for k, v in state.items()
                                       if k.endswith(".bias")]
        stwrite.write(os.path.join(out, "conv_bias_all.safetensors"), twice)
        differs = list(state.items()) + [("conv_in.conv.bias", state["conv_in.bias"] + np.float32(1))]
        stwrite.write(os.path.join(out, "refuse_conv_alias.safetensors"), differs)
    if case == "roberta_head":
        extra = list(state.items()) + [("roberta.pooler.dense.weight", np.zeros((16, 16), np.float32))]
        stwrite.write(os.path.join(out, "refuse_extra.safetensors"), extra)
        shape = [(k, np.zeros((4, 16), np.float32) if k == "classifier.out_proj.weight" else v)
                 for k, v in state.items()]
        stwrite.write(os.path.join(out, "refuse_shape.safetensors"), shape)


class TorchZipReader(pickle.Unpickler):
    """Just enough of torch.save's zip layout for float tensors (numpy only)."""

    def __init__(self, archive, root, data):
        import io
        super().__init__(io.BytesIO(data))
        self.archive, self.root = archive, root

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild
        if module == "torch" and name == "FloatStorage":
            return np.float32
        raise pickle.UnpicklingError(f"global {module}.{name}")

    def persistent_load(self, pid):
        _, dtype, key, _, _ = pid
        return np.frombuffer(self.archive.read(f"{self.root}/data/{key}"), dtype=dtype)

    @staticmethod
    def rebuild(storage, offset, shape, stride, *rest):
        n = int(np.prod(shape)) if shape else 1
        return storage[offset:offset + n].reshape(shape)


def read_torch_zip(path):
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        return TorchZipReader(z, pkl[:-len("/data.pkl")], z.read(pkl)).load()


def bloom_reference(out):
    cfg = json.load(open(os.path.join(BLOOM, "adapter_config.json")))
    state = read_torch_zip(os.path.join(BLOOM, "adapter_model.bin"))
    prefix = "base_model.model.transformer.h.{}.self_attention.query_key_value."
    n_out, n_in = 3072, 1024
    # full shapes, data a hole in a sparse file (only headers are read by audit)
    names = [f"transformer.h.{i}.self_attention.query_key_value.weight" for i in range(24)]
    header, offset = {}, 0
    for name in names:
        header[name] = {"dtype": "F16", "shape": [n_out, n_in], "data_offsets": [offset, offset + n_out * n_in * 2]}
        offset += n_out * n_in * 2
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(out, "bloom_full_base.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)
    rng = np.random.default_rng(16)
    two, expected = [], {}
    mask, r, alpha = cfg["enable_lora"], cfg["r"], cfg["lora_alpha"]
    for i in (0, 23):
        w = rng.standard_normal((n_out, n_in)).astype(np.float16)
        two.append((names[i], w))
        a = state[prefix.format(i) + "lora_A.weight"].astype(np.float64)       # [r * on, in]
        b = state[prefix.format(i) + "lora_B.weight"][:, :, 0].astype(np.float64)  # [rows, r * on / 2]
        # PEFT's forward: lora_B is a Conv1d with 2 groups over lora_A's
        # outputs; its rows fill the enabled groups' rows (zero_pad)
        c, half = b.shape[1], b.shape[0] // 2
        blocks = np.vstack([b[:half] @ a[:c], b[half:] @ a[c:2 * c]])
        delta = np.zeros((n_out, n_in))
        delta[np.repeat(np.array(mask), n_out // len(mask))] = blocks
        expected[names[i]] = w.astype(np.float64) + delta * (alpha / r)
    stwrite.write(os.path.join(out, "bloom_two_base.safetensors"), two)
    np.savez(os.path.join(out, "bloom.expected.npz"), **expected)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for case in CASES:
        case_reference(out, case)
    if os.path.isdir(BLOOM):
        bloom_reference(out)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(CASES, f)


if __name__ == "__main__":
    main()
