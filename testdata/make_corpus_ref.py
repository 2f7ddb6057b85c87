#!/usr/bin/python3
"""Reference counts for the shared corpus, for tests/test_cli.sh.

Usage:  /usr/bin/python3 testdata/make_corpus_ref.py OUT_DIR [CORPUS]

tests/run.sh runs it as `make_corpus_ref.py build/testdata/corpus`.  CORPUS
defaults to ../shared/corpus relative to the project root (the folder above
this script's folder).  When it is absent, OUT_DIR/expected.json holds empty
lists and the corpus cases of test_cli.sh are skipped.

Everything here is computed independently of loratool's C code, with json,
struct, re and numpy only: the safetensors header is parsed here, and the
PEFT rules (rank_pattern / alpha_pattern matched with Python's `re` as PEFT
does, alpha / r or alpha / sqrt(r) with use_rslora) are applied here.

OUT_DIR/expected.json:
  {"corpus": CORPUS or null,
   "adapters": [{path, tensors, parameters, bytes, dtypes, metadata,
                 modules, lora_parameters, replacement_parameters,
                 trainable_parameters, rank,
                 module_list: [{name, target, rank, config_rank, alpha, scale,
                                shape: [out, in], parameters}]}],
   "models": [{path, tensors, parameters, bytes, dtypes, metadata}]}
Paths are as test_cli.sh passes them to loratool (relative to the project
root, e.g. ../shared/corpus/adapters/01_x).

The functions are also imported by tests/test_cli.sh for the fixtures it
makes (demo data, synthetic adapters).
"""
import glob
import json
import math
import os
import re
import struct
import sys

import numpy as np

ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
PREFIX = "base_model.model."


class RefError(Exception):
    pass


def read_header(path):
    """(header dict without __metadata__, metadata dict) of a safetensors file,
    checked: bounds, JSON object, known dtypes, offsets tiling the data."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise RefError(f"{path}: shorter than 8 bytes")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise RefError(f"{path}: header length {n} beyond file size {size}")
        text = f.read(n)
    header = json.loads(text.decode("utf-8"))
    if not isinstance(header, dict):
        raise RefError(f"{path}: header is not an object")
    metadata = header.pop("__metadata__", None) or {}
    data_size = size - 8 - n
    spans = []
    for name, info in header.items():
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in ITEMSIZE:
            raise RefError(f"{path}: {name}: unknown dtype {dtype}")
        elems = int(np.prod(np.array(shape, dtype=object))) if shape else 1
        if end - begin != elems * ITEMSIZE[dtype]:
            raise RefError(f"{path}: {name}: size mismatch")
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise RefError(f"{path}: offsets do not tile the data")
        pos = end
    if pos != data_size:
        raise RefError(f"{path}: data section is {data_size} bytes, tensors cover {pos}")
    return header, metadata


def elements(info):
    n = 1
    for d in info["shape"]:
        n *= int(d)
    return n


def counts(header, metadata):
    """The format-neutral counts inspect reports for a set of tensors."""
    dtypes = {}
    for info in header.values():
        dtypes[info["dtype"]] = dtypes.get(info["dtype"], 0) + 1
    return {
        "tensors": len(header),
        "parameters": sum(elements(i) for i in header.values()),
        "bytes": sum(i["data_offsets"][1] - i["data_offsets"][0] for i in header.values()),
        "dtypes": dtypes,
        "metadata": metadata,
    }


def describe_safetensors(path):
    header, metadata = read_header(path)
    out = {"path": path, "format": "safetensors"}
    out.update(counts(header, metadata))
    return out


def describe_sharded(index_path):
    """A sharded model from its model.safetensors.index.json."""
    with open(index_path) as f:
        index = json.load(f)
    folder = os.path.dirname(index_path)
    shards = []
    for shard in index["weight_map"].values():
        if shard not in shards:
            shards.append(shard)
    merged, metadata = {}, {}
    for shard in shards:
        header, meta = read_header(os.path.join(folder, shard))
        for name, info in header.items():
            if name in merged:
                raise RefError(f"{shard}: duplicate tensor {name}")
            merged[name] = info
        metadata = metadata or meta
    out = {"path": index_path, "format": "safetensors-sharded", "files": len(shards)}
    out.update(counts(merged, metadata))
    return out


def pattern_value(patterns, name, default):
    """PEFT's get_pattern_key: the first key k (config order) with
    re.match(rf"(.*\\.)?({k})$", name); no match: default."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def describe_adapter(folder):
    """Counts and per-module rank / alpha / scale of a PEFT LoRA directory,
    as PEFT computes them from adapter_config.json."""
    with open(os.path.join(folder, "adapter_config.json")) as f:
        config = json.load(f)
    header, metadata = read_header(os.path.join(folder, "adapter_model.safetensors"))
    peft_type = config.get("peft_type")
    r = config.get("r")
    r = 8 if r is None else r
    lora_alpha = config.get("lora_alpha")
    lora_alpha = 8 if lora_alpha is None else lora_alpha
    rslora = bool(config.get("use_rslora"))
    init_r = config.get("init_r") or 12

    modules = {}  # module name -> {"A": info, "B": info, other roles...}
    lora_params = replacement_params = 0
    for key, info in header.items():
        if ".lora_" in key:
            lora_params += elements(info)
            name = key[len(PREFIX):] if key.startswith(PREFIX) else key
            for suffix, role in ((".lora_A.weight", "A"), (".lora_B.weight", "B"),
                                 (".lora_embedding_A", "A"), (".lora_embedding_B", "B"),
                                 (".lora_A", "A"), (".lora_B", "B"), (".lora_E", "E"),
                                 (".lora_B.bias", "bias"), (".lora_magnitude_vector.weight", "m"),
                                 (".lora_magnitude_vector", "m")):
                if name.endswith(suffix):
                    module = modules.setdefault(name[: -len(suffix)], {})
                    if role in module:
                        raise RefError(f"{folder}: {key}: role {role} twice")
                    module[role] = info
                    module.setdefault("params", 0)
                    module["params"] += elements(info)
                    if suffix.startswith(".lora_embedding"):
                        module["embedding"] = True
                    break
            else:
                raise RefError(f"{folder}: {key}: unrecognized LoRA key")
        else:
            replacement_params += elements(info)

    module_list = []
    for name in sorted(modules):
        m = modules[name]
        if "A" not in m or "B" not in m:
            raise RefError(f"{folder}: {name}: lacks lora_A or lora_B")
        a_shape, b_shape = m["A"]["shape"], m["B"]["shape"]
        rank = int(a_shape[0])
        if int(b_shape[1]) != rank:
            raise RefError(f"{folder}: {name}: lora_B rank {b_shape[1]} != lora_A rank {rank}")
        config_rank = pattern_value(config.get("rank_pattern"), name, r)
        alpha = pattern_value(config.get("alpha_pattern"), name, lora_alpha)
        if peft_type == "ADALORA":
            scale = (alpha if alpha > 0 else r) / (init_r + 1e-5)
        elif rslora:
            scale = alpha / math.sqrt(config_rank)
        else:
            scale = alpha / config_rank
        if m.get("embedding"):
            shape = [int(a_shape[1]), int(b_shape[0])]
        else:
            inner = 1
            for d in a_shape[1:]:
                inner *= int(d)
            shape = [int(b_shape[0]), inner]
        module_list.append({
            "name": name, "target": name + ".weight", "rank": rank, "config_rank": config_rank,
            "alpha": alpha, "scale": scale, "shape": shape, "parameters": m["params"],
        })

    out = {"path": folder, "format": "peft"}
    out.update(counts(header, metadata))
    out.update({
        "peft_type": peft_type,
        "modules": len(module_list),
        "lora_parameters": lora_params,
        "replacement_parameters": replacement_params,
        "trainable_parameters": lora_params + replacement_params,
        "rank": max((m["rank"] for m in module_list), default=0),
        "module_list": module_list,
    })
    return out


def main(out_dir, corpus):
    # paths are relative to the project root, as test_cli.sh runs loratool there
    out_dir = os.path.abspath(out_dir)
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.makedirs(out_dir, exist_ok=True)
    result = {"corpus": None, "adapters": [], "models": []}
    if os.path.isdir(corpus):
        result["corpus"] = corpus
        for folder in sorted(glob.glob(os.path.join(corpus, "adapters", "*", ""))):
            folder = folder.rstrip("/")
            if os.path.isfile(os.path.join(folder, "adapter_model.safetensors")):
                result["adapters"].append(describe_adapter(folder))
        files = sorted(glob.glob(os.path.join(corpus, "models", "*", "model.safetensors")))
        files += sorted(glob.glob(os.path.join(corpus, "models", "safetensors_repo_samples", "*.safetensors")))
        for path in files:
            result["models"].append(describe_safetensors(path))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(result['adapters'])} adapters, {len(result['models'])} models "
          f"(corpus {'at ' + corpus if result['corpus'] else 'absent'})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: make_corpus_ref.py OUT_DIR [CORPUS]")
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "../shared/corpus")
