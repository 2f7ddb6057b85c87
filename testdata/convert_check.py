"""Checker of tests/test_convert.sh: its own GGUF and safetensors readers
(written from the format descriptions, not from our C code) and the
comparisons with the numpy references of testdata/make_convert_ref.py.
Also imported by tests/test_convert_model.sh."""
import json
import os
import re
import struct
import sys

import numpy as np


class Bad(Exception):
    pass


# ------------------------------------------------------------------ GGUF
# ggml type id -> (name, block elements, block bytes)
GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 30: ("BF16", 1, 2), 8: ("Q8_0", 32, 34),
              28: ("F64", 1, 8), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4),
              27: ("I64", 1, 8), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
              7: ("Q5_1", 32, 24), 9: ("Q8_1", 32, 36)}
# KV value type -> struct format (8 string, 9 array handled apart)
KV_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
              11: "<q", 12: "<d"}
KV_NAMES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "str",
            9: "arr", 10: "u64", 11: "i64", 12: "f64"}


class Reader:
    def __init__(self, data, path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise Bad("%s: truncated at byte %d (want %d more)" % (self.path, self.pos, n))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.unpack("<Q")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise Bad("%s: string at %d is not UTF-8" % (self.path, self.pos))

    def value(self, typ):
        if typ in KV_SCALARS:
            return self.unpack(KV_SCALARS[typ])
        if typ == 8:
            return self.string()
        if typ == 9:
            et, n = self.unpack("<I"), self.unpack("<Q")
            if et == 9:
                raise Bad("%s: array of arrays" % self.path)
            return [self.value(et) for _ in range(n)]
        raise Bad("%s: bad KV type %d" % (self.path, typ))


def read_gguf(path):
    """(kv {key: (type name, value)}, {name: (ne, type name, raw)}), checking
    what ggml's reader checks plus the canonical data layout."""
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data, path)
    if r.take(4) != b"GGUF":
        raise Bad("%s: no GGUF magic" % path)
    version = r.unpack("<I")
    if version not in (2, 3):
        raise Bad("%s: version %d" % (path, version))
    n_tensors, n_kv = r.unpack("<q"), r.unpack("<q")
    if n_tensors < 0 or n_kv < 0:
        raise Bad("%s: negative counts" % path)
    kv = {}
    for _ in range(n_kv):
        key = r.string()
        typ = r.unpack("<I")
        if key in kv:
            raise Bad("%s: duplicate key %s" % (path, key))
        kv[key] = (KV_NAMES.get(typ, "?"), r.value(typ))
    align = 32
    if "general.alignment" in kv:
        t, align = kv["general.alignment"]
        if t != "u32" or align <= 0 or align & (align - 1):
            raise Bad("%s: bad general.alignment" % path)
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        if len(name.encode()) > 63:
            raise Bad("%s: tensor name longer than 63 bytes: %s" % (path, name))
        n_dims = r.unpack("<I")
        if not 1 <= n_dims <= 4:
            raise Bad("%s: %s: n_dims %d" % (path, name, n_dims))
        ne = [r.unpack("<Q") for _ in range(n_dims)]
        typ, off = r.unpack("<I"), r.unpack("<Q")
        if typ not in GGML_TYPES:
            raise Bad("%s: %s: unknown type %d" % (path, name, typ))
        tname, blk, bsize = GGML_TYPES[typ]
        if ne[0] % blk:
            raise Bad("%s: %s: ne[0] %d is not a multiple of %s's block %d" % (path, name, ne[0], tname, blk))
        count = 1
        for d in ne:
            count *= d
        infos.append((name, ne, tname, off, count // blk * bsize))
    start = (r.pos + align - 1) // align * align
    tensors, expect_off = {}, 0
    for name, ne, tname, off, nbytes in infos:
        if name in tensors:
            raise Bad("%s: duplicate tensor %s" % (path, name))
        if off != expect_off:
            raise Bad("%s: %s at offset %d, expected %d (running sum of padded sizes)" % (path, name, off, expect_off))
        expect_off += (nbytes + align - 1) // align * align
        if start + off + nbytes > len(data):
            raise Bad("%s: %s: data past the end of the file" % (path, name))
        tensors[name] = (ne, tname, data[start + off:start + off + nbytes])
    return kv, tensors


def f16_to_f32(raw):
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


def decode(ne, tname, raw):
    """Tensor values as float64, shape [ne1, ne0] (2-D) or [ne0]."""
    if tname == "F32":
        v = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif tname == "F16":
        v = f16_to_f32(raw).astype(np.float64)
    elif tname == "BF16":
        v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    elif tname == "Q8_0":  # blocks of {f16 d; i8 qs[32]}, y = q * d
        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
        d = f16_to_f32(blocks[:, :2].tobytes()).astype(np.float32)
        q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
        v = (q * d[:, None]).astype(np.float32).reshape(-1).astype(np.float64)
    else:
        raise Bad("cannot decode %s" % tname)
    return v.reshape(list(reversed(ne)))


def bf16_bits(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def unpermute_rows(m, n_head):
    """Inverse of llama.cpp's Q/K order: old[h*hd + s*hd/2 + t] = new[h*hd + 2t + s]."""
    hd = m.shape[0] // n_head
    out = np.empty_like(m)
    for h in range(n_head):
        for t in range(hd // 2):
            for s in range(2):
                out[h * hd + s * (hd // 2) + t] = m[h * hd + 2 * t + s]
    return out


# ------------------------------------------------------------- safetensors
ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
            "BOOL": 1}


def read_st(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    buf, out, end = data[8 + n:], {}, 0
    for name, info in header.items():
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if dt not in ST_SIZES or e - b != count * ST_SIZES[dt]:
            raise Bad("%s: %s: %s %s does not fit [%d, %d]" % (path, name, dt, shape, b, e))
        out[name] = (dt, list(shape), buf[b:e])
        end = max(end, e)
    if end != len(buf):
        raise Bad("%s: data buffer of %d bytes, tensors end at %d" % (path, len(buf), end))
    return out


# ------------------------------------------------------------- PEFT config
def pattern_value(pattern, module, default):
    for key, value in (pattern or {}).items():
        if re.match(r"(.*\.)?(%s)$" % key, module):
            return value
    return default


def targeted(cfg, module):
    tm = cfg.get("target_modules")
    if isinstance(tm, str):
        return re.fullmatch(tm, module) is not None
    return any(module == k or module.endswith("." + k) for k in tm or [])


def module_rank_scale(cfg, module):
    r = pattern_value(cfg.get("rank_pattern"), module, cfg.get("r", 8))
    alpha = pattern_value(cfg.get("alpha_pattern"), module, cfg.get("lora_alpha", 8))
    return r, (alpha / np.sqrt(r) if cfg.get("use_rslora") else alpha / r)


# ------------------------------------------------------------------ checks
GGUF_TO_HF = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}


def hf_module(gguf_base):
    if gguf_base == "token_embd.weight":
        return "model.embed_tokens"
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_base)
    if not m or m.group(2) not in GGUF_TO_HF:
        raise Bad("no HF name for %s" % gguf_base)
    return "model.layers.%s.%s" % (m.group(1), GGUF_TO_HF[m.group(2)])


def rel_err(got, want):
    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(got - want))) / scale


def check_gguf(spec, path, refs):
    problems = []
    kv, tensors = read_gguf(path)
    for key, (typ, value) in spec["kv"].items():
        if key not in kv:
            problems.append("KV %s missing" % key)
        elif kv[key][0] != typ:
            problems.append("KV %s has type %s, expected %s" % (key, kv[key][0], typ))
        elif value is not None and kv[key][1] != value:
            problems.append("KV %s = %r, expected %r" % (key, kv[key][1], value))
    want = spec["tensors"]
    if set(tensors) != set(want):
        problems.append("tensor names differ: missing %s, unexpected %s"
                        % (sorted(set(want) - set(tensors))[:3], sorted(set(tensors) - set(want))[:3]))
    for name in sorted(set(want) & set(tensors)):
        exp, (ne, tname, raw) = want[name], tensors[name]
        if ne != exp["ne"] or tname != exp["type"]:
            problems.append("%s: %s ne %s, expected %s ne %s" % (name, tname, ne, exp["type"], exp["ne"]))
            continue
        if "ref" not in exp:
            continue
        ref = refs[exp["ref"]].astype(np.float32)
        mode = exp["mode"]
        if mode == "exact":
            ok = raw == ref.astype("<f4").tobytes()
        elif mode == "f16":
            ok = raw == ref.astype("<f2").tobytes()
        elif mode == "bf16":
            ok = raw == bf16_bits(ref).tobytes()
        else:  # q8_0: |y - x| <= d/2 + 127 |d16 - d| per block, d = amax / 127
            got = decode(ne, tname, raw).reshape(-1, 32)
            x = ref.astype(np.float64).reshape(-1, 32)
            d = np.abs(x).max(axis=1) / 127
            blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
            d16 = f16_to_f32(blocks[:, :2].tobytes()).astype(np.float64)
            tol = 0.5 * d + 127 * np.abs(d16 - d) + 1e-30
            ok = bool(np.all(np.abs(got - x) <= tol[:, None] * (1 + 1e-6))) and \
                bool(np.all(np.abs(d16 - d) <= d * 2.0 ** -10 + 6e-8))
        if not ok:
            if mode == "q8_0":
                got = decode(ne, tname, raw).reshape(ref.shape)
            else:
                got = decode(ne, tname, raw)
            diff = np.abs(got - ref.astype(np.float64))
            where = np.unravel_index(int(np.argmax(diff)), diff.shape)
            problems.append("%s (%s, %s): values differ, max |diff| %.3g at %s (got %r, want %r)"
                            % (name, tname, mode, float(diff.max()), list(where), float(got[where]),
                               float(ref[where])))
    alpha = kv.get("adapter.lora.alpha", ("f32", 0.0))[1]
    for dl in spec.get("deltas", []):
        if dl["a"] not in tensors or dl["b"] not in tensors:
            continue
        a_ne, a_t, a_raw = tensors[dl["a"]]
        b_ne, b_t, b_raw = tensors[dl["b"]]
        ga, gb = decode(a_ne, a_t, a_raw), decode(b_ne, b_t, b_raw)
        r = b_ne[0]
        s = alpha / r if alpha else 1.0
        if dl["perm_heads"]:
            gb = unpermute_rows(gb, dl["perm_heads"])
        got = s * (gb @ (ga.T if dl["embedding"] else ga))
        truth = dl["scale"] * (refs[dl["B"]].astype(np.float64) @ refs[dl["A"]].astype(np.float64))
        e = rel_err(got, truth)
        if e > 1e-6:
            problems.append("%s: effective delta (alpha %g / r %d) * B @ A off by %.3g relative (PEFT scale %g)"
                            % (dl["module"], alpha, r, e, dl["scale"]))
    return problems


def expected_from_gguf(spec, sub):
    kv, tensors = read_gguf(sub(spec["from_gguf"]))
    n_head, n_kv = spec["heads"]
    out = {}
    for name, (ne, tname, raw) in tensors.items():
        if not name.endswith(".lora_a"):
            continue
        base = name[:-len(".lora_a")]
        mod = hf_module(base)
        b_ne, b_t, b_raw = tensors[base + ".lora_b"]
        a, b = decode(ne, tname, raw), decode(b_ne, b_t, b_raw)
        if spec["arch"] == "llama" and mod.endswith(("q_proj", "k_proj")):
            b = unpermute_rows(b, n_head if mod.endswith("q_proj") else n_kv)
        if mod == "model.embed_tokens":
            out["base_model.model.%s.lora_embedding_A" % mod] = a.T.astype(np.float32)
            out["base_model.model.%s.lora_embedding_B" % mod] = b.astype(np.float32)
        else:
            out["base_model.model.%s.lora_A.weight" % mod] = a.astype(np.float32)
            out["base_model.model.%s.lora_B.weight" % mod] = b.astype(np.float32)
    return out


def check_peft(spec, out_dir, refs, sub):
    problems = []
    d = os.path.join(out_dir, "peft")
    cfg = json.load(open(os.path.join(d, "adapter_config.json")))
    st = read_st(os.path.join(d, "adapter_model.safetensors"))
    if cfg.get("peft_type") != "LORA":
        problems.append("peft_type %r" % cfg.get("peft_type"))
    if cfg.get("use_dora"):
        problems.append("use_dora set")
    if "from_gguf" in spec:
        want = expected_from_gguf(spec, sub)
    else:
        want = {k: refs[v] for k, v in spec["tensors"].items()}
    if set(st) != set(want):
        problems.append("tensor names differ: missing %s, unexpected %s"
                        % (sorted(set(want) - set(st))[:3], sorted(set(st) - set(want))[:3]))
    for key in sorted(set(st) & set(want)):
        dt, shape, raw = st[key]
        ref = np.ascontiguousarray(want[key], dtype=np.float32)
        if dt != "F32" or shape != list(ref.shape):
            problems.append("%s: %s %s, expected F32 %s" % (key, dt, shape, list(ref.shape)))
        elif raw != ref.astype("<f4").tobytes():
            got = np.frombuffer(raw, dtype="<f4").reshape(ref.shape)
            problems.append("%s: not bit-identical (max |diff| %.3g)"
                            % (key, float(np.max(np.abs(got.astype(np.float64) - ref)))))
    for mod, (rank, scale) in spec["modules"].items():
        if not targeted(cfg, mod):
            problems.append("config target_modules %r does not cover %s" % (cfg.get("target_modules"), mod))
        r, s = module_rank_scale(cfg, mod)
        if r != rank:
            problems.append("%s: config gives rank %r, expected %d" % (mod, r, rank))
        if scale is not None and abs(s - scale) > 1e-12 * abs(scale):
            problems.append("%s: config gives scale %r, expected %r" % (mod, s, scale))
    for dl in spec.get("deltas", []):
        mod = dl["module"]
        ka, kb = "base_model.model.%s.lora_A.weight" % mod, "base_model.model.%s.lora_B.weight" % mod
        if ka not in st or kb not in st:
            continue
        a = np.frombuffer(st[ka][2], dtype="<f4").reshape(st[ka][1]).astype(np.float64)
        b = np.frombuffer(st[kb][2], dtype="<f4").reshape(st[kb][1]).astype(np.float64)
        _, s = module_rank_scale(cfg, mod)
        truth = dl["scale"] * (refs[dl["B"]].astype(np.float64) @ refs[dl["A"]].astype(np.float64))
        e = rel_err(s * (b @ a), truth)
        if e > 1e-6:
            problems.append("%s: effective PEFT delta off by %.3g relative" % (mod, e))
    return problems


def all_files(root):
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(found)


def substituter(case_dir, work, k):
    def sub(arg):
        arg = arg.replace("{CASE}", case_dir).replace("{OUT}", os.path.join(work, "o%02d" % k))
        return re.sub(r"\{O(\d+)\}", lambda m: os.path.join(work, "o%02d" % int(m.group(1))), arg)
    return sub


def setup(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    for k, run in enumerate(spec["runs"]):
        os.mkdir(os.path.join(work, "o%02d" % k))
        sub = substituter(case_dir, work, k)
        with open(os.path.join(work, "run.%02d.args" % k), "w") as f:
            for a in run["args"]:
                f.write(sub(a) + "\n")


def check(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    refs = np.load(os.path.join(case_dir, "ref.npz"))
    problems = []
    for k, run in enumerate(spec["runs"]):
        stem = os.path.join(work, "run.%02d" % k)
        out_dir = os.path.join(work, "o%02d" % k)
        label = "run %d (%s)" % (k, " ".join(a.replace("{CASE}/", "").replace("{OUT}/", "OUT/")
                                             for a in run["args"]))
        rc = int(open(stem + ".rc").read().strip() or -1)
        err = open(stem + ".err", errors="replace").read()
        mine = []
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            if marker in err:
                mine.append("sanitizer report: %s" % err.strip().splitlines()[0][:200])
                break
        if rc != run["rc"]:
            tail = " | ".join(err.strip().splitlines()[-2:])[:300]
            mine.append("exit %d, expected %d (stderr: %s)" % (rc, run["rc"], tail or "empty"))
        for s in run["stderr_has"]:
            if s not in err:
                mine.append("stderr does not name %r (stderr: %s)" % (s, err.strip()[:200] or "empty"))
        left = all_files(out_dir)
        if run["output"] is None or rc != 0:
            if left:
                mine.append("left files in the output directory: %s" % left[:4])
        else:
            want = ["out.gguf"] if run["output"] == "gguf" else ["peft/adapter_config.json",
                                                                 "peft/adapter_model.safetensors"]
            if left != want:
                mine.append("output directory holds %s, expected %s" % (left[:5], want))
            check_spec = run["check"]
            sub = substituter(case_dir, work, k)
            try:
                if not mine and "gguf" in check_spec:
                    mine += check_gguf(check_spec["gguf"], os.path.join(out_dir, "out.gguf"), refs)
                if not mine and "peft" in check_spec:
                    mine += check_peft(check_spec["peft"], out_dir, refs, sub)
                if not mine and "same_as" in check_spec:
                    other = os.path.join(work, "o%02d" % check_spec["same_as"], "out.gguf")
                    read_gguf(os.path.join(out_dir, "out.gguf"))
                    if open(other, "rb").read() != open(os.path.join(out_dir, "out.gguf"), "rb").read():
                        mine.append("out.gguf differs from run %d's byte for byte" % check_spec["same_as"])
            except (Bad, OSError, KeyError, ValueError, TypeError) as e:
                mine.append("output unreadable: %s: %s" % (type(e).__name__, e))
        problems += ["%s: %s" % (label, m) for m in mine]
    if problems:
        shown = problems[:4]
        more = " (+%d more)" % (len(problems) - 4) if len(problems) > 4 else ""
        print("FAIL %s: %s%s" % (spec["name"], "; ".join(shown), more))
        return 1
    print("PASS %s" % spec["name"])
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "list":
        for name in json.load(open(os.path.join(sys.argv[2], "cases.json"))):
            print(name)
        return 0
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3])
        return 0
    return check(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    sys.exit(main())
