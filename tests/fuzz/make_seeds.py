#!/usr/bin/env python3
"""Seeds for the fuzz targets (stdlib only): small valid and near-valid
inputs of every format, plus the small real files of ../shared/corpus when
it is there.  The fuzzing campaign starts from these; `make fuzz-merge`
keeps the ones that add coverage in testdata/fuzz/<target>/.

    python3 tests/fuzz/make_seeds.py OUTDIR   (writes OUTDIR/<target>/...)
"""
import codecs
import warnings
import collections
import glob
import io
import json
import os
import pickle
import re
import struct
import sys
import types
import zipfile

warnings.simplefilter("ignore", DeprecationWarning)   # "\?" in a regex literal
OUT = sys.argv[1]
CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "corpus")
if not os.path.isdir(CORPUS):
    CORPUS = "/work/shared/corpus"


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def copy_small(target, pattern, limit, prefix=b""):
    for i, path in enumerate(sorted(glob.glob(os.path.join(CORPUS, pattern), recursive=True))):
        if os.path.isfile(path) and os.path.getsize(path) <= limit:
            with open(path, "rb") as f:
                data = f.read()
            p = prefix[i % len(prefix):i % len(prefix) + 1] if prefix else b""
            put(target, "corpus-%03d-%s" % (i, os.path.basename(path)[-40:]), p + data)


# ---- safetensors ----
def safetensors(tensors, metadata=None, pad=True):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "empty", safetensors([]))
put("safetensors", "meta", safetensors([], {"format": "pt", "k": "v"}))
put("safetensors", "mixed", safetensors([
    ("a", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
    ("b", "F16", [3], b"\x00\x3c" * 3),
    ("c", "BF16", [], b"\x80\x3f"),
    ("d", "I64", [0, 5], b""),
    ("e", "F8_E4M3", [2], b"\x38\x40"),
    ("f", "BOOL", [1], b"\x01"),
], {"format": "pt"}))
put("safetensors", "unpadded", safetensors([("x", "F64", [1], struct.pack("<d", 1.5))], pad=False))
copy_small("safetensors", "models/safetensors_repo_samples/*.safetensors", 4096)

# ---- GGUF ----
def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gkv(key, vtype, value):
    fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    out = gstr(key) + struct.pack("<I", vtype)
    if vtype == 8:
        return out + gstr(value)
    if vtype == 9:
        etype, items = value
        out += struct.pack("<IQ", etype, len(items))
        for it in items:
            out += gstr(it) if etype == 8 else struct.pack("<" + fmt[etype], it)
        return out
    return out + struct.pack("<" + fmt[vtype], value)


def gguf(kvs, tensors, align=32, version=3):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for kv in kvs:
        out += gkv(*kv)
    data, infos = b"", b""
    for name, ne, gtype, raw in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", gtype, len(data))
        data += raw + b"\0" * (-len(raw) % align)
    out += infos
    out += b"\0" * (-len(out) % align)
    return out + data


lora_kvs = [("general.architecture", 8, "llama"), ("general.type", 8, "adapter"),
            ("adapter.type", 8, "lora"), ("adapter.lora.alpha", 6, 16.0)]
put("gguf", "lora", gguf(lora_kvs, [
    ("blk.0.attn_q.weight.lora_a", [4, 2], 0, struct.pack("<8f", *range(8))),
    ("blk.0.attn_q.weight.lora_b", [2, 6], 0, struct.pack("<12f", *range(12))),
    ("token_embd.weight.lora_a", [2, 10], 1, b"\x00\x3c" * 20),
    ("token_embd.weight.lora_b", [2, 4], 30, b"\x80\x3f" * 8),
]))
put("gguf", "model-quant", gguf([
    ("general.architecture", 8, "llama"), ("general.alignment", 4, 64),
    ("llama.block_count", 4, 1), ("u8", 0, 7), ("i8", 1, -7), ("u16", 2, 7), ("i16", 3, -7),
    ("i32", 5, -7), ("f32", 6, 0.5), ("bool", 7, True), ("u64", 10, 1 << 40), ("i64", 11, -(1 << 40)),
    ("f64", 12, 0.25), ("tokens", 9, (8, ["a", "bb", ""])), ("scores", 9, (6, [0.5, -1.0])),
    ("flags", 9, (7, [True, False])), ("empty", 9, (4, [])),
], [
    ("f16", [32], 1, b"\x00\x3c" * 32),
    ("q8_0", [32, 2], 8, (b"\x00\x3c" + bytes(range(32))) * 2),
    ("q4_0", [32], 2, b"\x00\x3c" + bytes(range(16))),
    ("q4_1", [32], 3, b"\x00\x3c\x00\x3c" + bytes(range(16))),
    ("q5_0", [32], 6, b"\x00\x3c" + bytes(4) + bytes(range(16))),
    ("q4_k", [256], 12, b"\x00\x3c\x00\x3c" + bytes(range(140))),
    ("q6_k", [256], 14, bytes(range(208)) + b"\x00\x3c"),
    ("q2_k", [256], 10, bytes(range(82)) + b"\x00\x3c"),
    ("iq4_nl", [32], 20, bytes(18)),
], align=64))
put("gguf", "v2-empty", gguf([("general.architecture", 8, "gpt2")], [], version=2))
copy_small("gguf", "gguf/gridcore_fuzz_corpus/*.gguf", 8192)
copy_small("gguf", "gguf/gridcore_fixtures/*.gguf", 8192)
copy_small("gguf", "gguf/microk_tiny/*.gguf", 8192)

# ---- torch zip + pickle (no torch: stand-ins with torch's names) ----
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


def _rebuild_tensor_v2(*args):
    raise AssertionError


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
torch._utils = utils
for cls in ("FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage"):
    c = type(cls, (), {"__module__": "torch"})
    setattr(torch, cls, c)


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, offset, shape):
        self.storage, self.offset, self.shape = storage, offset, shape

    def __reduce__(self):
        stride, s = [], 1
        for n in reversed(self.shape):
            stride.insert(0, s)
            s *= n
        return (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(stride), False,
                                     collections.OrderedDict()))


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def torch_zip(tensors, compress=False, root="archive", byteorder=True):
    """tensors: name -> (storage class name, elem size, shape, offset, numel)."""
    sd, blobs = collections.OrderedDict(), {}
    for i, (name, (cls, size, shape, offset, numel)) in enumerate(tensors.items()):
        st = Storage(getattr(torch, cls), str(i), numel)
        sd[name] = Tensor(st, offset, shape)
        blobs[str(i)] = bytes((j * 7 + 1) % 251 for j in range(numel * size))
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(sd)
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", method) as z:
        z.writestr(root + "/data.pkl", buf.getvalue())
        if byteorder:
            z.writestr(root + "/byteorder", "little")
        for key, blob in blobs.items():
            z.writestr(root + "/data/" + key, blob)
        z.writestr(root + "/version", "3\n")
    return out.getvalue()


lora = collections.OrderedDict([
    ("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", ("FloatStorage", 4, [2, 4], 0, 8)),
    ("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight", ("HalfStorage", 2, [6, 2], 0, 12)),
    ("base_model.model.score.weight", ("BFloat16Storage", 2, [2, 3], 2, 8)),
    ("step", ("LongStorage", 8, [], 0, 1)),
])
put("torch_bin", "stored", torch_zip(lora))
put("torch_bin", "deflated", torch_zip(lora, compress=True, root="adapter_model", byteorder=False))
put("torch_bin", "empty", torch_zip(collections.OrderedDict()))

# ---- adapter_config.json (first byte: which weights, see fuzz_adapter_config.c) ----
put("adapter_config", "v0-rank-pattern", b"0" + json.dumps({
    "peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "down_proj"],
    "rank_pattern": {"down_proj": 4}, "alpha_pattern": {"layers\\.1\\..*": 2.5},
    "task_type": "CAUSAL_LM", "base_model_name_or_path": "x", "unknown_key": 1}).encode())
put("adapter_config", "v0-regex-rslora", b"0" + json.dumps({
    "peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": True,
    "target_modules": ".*\\.(q_proj|down_proj)", "rank_pattern": {"^(?!.*mlp).*q_proj": 8}}).encode())
put("adapter_config", "v1-dora-tokens", b"1" + json.dumps({
    "peft_type": "LORA", "r": 8, "lora_alpha": 8, "use_dora": True, "lora_bias": True, "bias": "lora_only",
    "modules_to_save": ["score"], "trainable_token_indices": {"embed_tokens": [3, 7]},
    "fan_in_fan_out": False, "layer_replication": None}).encode())
put("adapter_config", "v1-token-list", b"1" + json.dumps({
    "peft_type": "LORA", "r": 8, "trainable_token_indices": [1, 2]}).encode())
put("adapter_config", "v2-adalora", b"2" + json.dumps({
    "peft_type": "ADALORA", "r": 8, "lora_alpha": 32, "init_r": 12, "target_r": 8,
    "rank_pattern": {"model.layers.0.self_attn.q_proj.lora_E": [True, False]}}).encode())
put("adapter_config", "v2-lora", b"2" + json.dumps({"peft_type": "LORA", "r": 8}).encode())
copy_small("adapter_config", "configs/*.json", 4096, prefix=b"012")
copy_small("adapter_config", "adapters/*/adapter_config.json", 4096, prefix=b"012")

# ---- sharded index ----
S1, S2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
put("sharded_index", "valid", json.dumps({"metadata": {"total_size": 26, "format": "pt"},
                                          "weight_map": {"a": S1, "b": S1, "c": S2}}))
put("sharded_index", "one-shard", json.dumps({"weight_map": {"a": S1, "b": S1}}))
put("sharded_index", "wrong-shard", json.dumps({"weight_map": {"a": S2, "b": S1, "c": S2}}))
put("sharded_index", "path", json.dumps({"weight_map": {"a": "../" + S1}}))
put("sharded_index", "missing", json.dumps({"weight_map": {"a": S1, "b": S1, "c": S2, "d": S2}}))

# ---- regex: pattern NUL subject NUL subject ... ----
inc = open(os.path.join(os.path.dirname(__file__), "..", "regex_cases.inc"), encoding="utf-8").read()
def cstrings(letter):
    return [codecs.decode(m.group(1), "unicode_escape").encode("latin-1", "replace")
            for m in re.finditer(r'static const char %s\d+\[\] = "((?:[^"\\]|\\.)*)";' % letter, inc)]
patterns, subjects = cstrings("P"), cstrings("S")
for i, p in enumerate(patterns):
    subj = [subjects[(i * 3 + k) % len(subjects)][:64] for k in range(2)] if subjects else []
    put("regex", "p%03d" % i, b"\0".join([p] + subj))

# ---- archives: tiny adapters packed every way loratool reads, and hostile ones ----
import gzip as _gzip
import bz2 as _bz2
import lzma as _lzma
import shutil as _shutil
import subprocess as _subprocess
import tarfile as _tarfile

ARCH_FILES = [("adapter_config.json", json.dumps({"peft_type": "LORA", "r": 1, "lora_alpha": 1,
                                                   "target_modules": ["q"]}).encode()),
              ("adapter_model.safetensors", safetensors([("a.lora_A.weight", "F32", [1, 2], bytes(8)),
                                                          ("a.lora_B.weight", "F32", [2, 1], bytes(8))]))]


def tar_bytes(entries, fmt=_tarfile.USTAR_FORMAT):
    """entries: (name, type, data or link target); the end-of-archive
    blocks kept, tarfile's padding to 10240 bytes cut."""
    buf = io.BytesIO()
    with _tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, typ, extra in entries:
            ti = _tarfile.TarInfo(name)
            ti.type = typ
            if typ == _tarfile.REGTYPE:
                ti.size = len(extra)
                t.addfile(ti, io.BytesIO(extra))
            else:
                if typ in (_tarfile.SYMTYPE, _tarfile.LNKTYPE):
                    ti.linkname = extra
                t.addfile(ti)
    data = buf.getvalue().rstrip(b"\0")
    return data + bytes(-len(data) % 512 + 1024)


def zip_bytes(entries, method=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries:
            z.writestr(name, data)
    return buf.getvalue()


REG = _tarfile.REGTYPE
for layout, prefix in (("root", ""), ("folder", "run/")):
    regs = [(prefix + n, REG, d) for n, d in ARCH_FILES]
    for fmt_name, fmt in (("ustar", _tarfile.USTAR_FORMAT), ("pax", _tarfile.PAX_FORMAT), ("gnu", _tarfile.GNU_FORMAT)):
        put("archive", "%s-%s.tar" % (layout, fmt_name), tar_bytes(regs, fmt))
    plain = tar_bytes(regs)
    put("archive", layout + ".tar.gz", _gzip.compress(plain, mtime=0))
    put("archive", layout + ".tar.xz", _lzma.compress(plain))
    put("archive", layout + ".tar.bz2", _bz2.compress(plain))
    if _shutil.which("zstd"):
        put("archive", layout + ".tar.zst", _subprocess.run(["zstd", "-q", "-c"], input=plain, check=True,
                                                            stdout=_subprocess.PIPE).stdout)
    put("archive", layout + "-stored.zip", zip_bytes([(prefix + n, d) for n, d in ARCH_FILES]))
    put("archive", layout + "-deflated.zip", zip_bytes([(prefix + n, d) for n, d in ARCH_FILES], zipfile.ZIP_DEFLATED))
put("archive", "two.zip", zip_bytes([(p + n, d) for p in ("a/", "b/") for n, d in ARCH_FILES]))
put("archive", "dirs.tar", tar_bytes([("x", _tarfile.DIRTYPE, None), ("x/y", _tarfile.DIRTYPE, None),
                                      ("x/y/z.json", REG, b"{}"), ("./x/w.json", REG, b"[]")]))
cfg = ARCH_FILES[0][1]
for name, entries in (("traversal.tar", [("../x", REG, b"x")]), ("absolute.tar", [("/tmp/x", REG, b"x")]),
                      ("symlink.tar", [("l", _tarfile.SYMTYPE, "/etc/passwd")]),
                      ("hardlink.tar", [("a", REG, b"a"), ("b", _tarfile.LNKTYPE, "a")]),
                      ("fifo.tar", [("p", _tarfile.FIFOTYPE, None)]),
                      ("duplicate.tar", [("a", REG, b"1"), ("./a", REG, b"2")]),
                      ("file-folder.tar", [("a", REG, b"1"), ("a/b", REG, b"2")])):
    put("archive", name, tar_bytes(entries))
enc = bytearray(zip_bytes([("adapter_config.json", cfg)]))
for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
    enc[enc.find(sig) + at] |= 1
put("archive", "encrypted.zip", bytes(enc))
good = tar_bytes([(n, REG, d) for n, d in ARCH_FILES])
put("archive", "truncated.tar", good[:len(good) // 2])
put("archive", "truncated.tar.gz", _gzip.compress(good, mtime=0)[:200])
bad = bytearray(good)
bad[148:156] = b"0000000\0"
put("archive", "badsum.tar", bytes(bad))
put("archive", "torch.zip", zip_bytes([("archive/data.pkl", b"\x80\x02}q\x00."), ("archive/version", b"3\n")]))
put("archive", "gzip-not-tar", _gzip.compress(cfg, mtime=0))
