#!/bin/sh
# bitsandbytes checkpoints (spec/bnb.md) against the numpy fixtures of
# testdata/make_bnb_ref.py (run by tests/run.sh into $REF/bnb):
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_bnb.sh
#
# Per case (nf4/fp4 x double quant or not x blocksize 64/128 x bf16/f16,
# int8 x f16/bf16, one sharded, one with BF16 quant_storage, one whose pad
# nibble is 15, two with all-zero blocks quantized as bitsandbytes' CUDA
# kernel does; every case has all-zero blocks as its default backend does):
#   inspect:<case>  inspect --json: format, parameter count (dequantized
#                   elements), bytes on disk, the quantization object, the
#                   tensor list's NF4/FP4/INT8 entries and their parts
#   dequant:<case>  merge of an adapter that touches no quantized weight:
#                   every quantized weight bit for bit the numpy
#                   dequantization of the file's own bytes and tables
#   merge:<case>    merge of an adapter on every quantized weight: within
#                   1 ulp of the float64 sum rounded once, config.json
#                   without quantization_config and with torch_dtype
#   real:<name>     a real bitsandbytes tensor (testdata/bnb_real): inspect,
#                   the weight read bit for bit as numpy dequantizes it and,
#                   rounded to BF16, as bitsandbytes' CUDA kernel did; merge
#                   within 1 ulp
# plus merge --dtype f32, and every hostile file refused with exit 3.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3
ref="$REF/bnb"

if [ ! -d "$ref/cases" ]; then
    echo "FAIL bnb: no fixtures in $ref (run testdata/make_bnb_ref.py)"
    exit 1
fi
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

cat >"$tmp/check.py" <<'EOF'
import json
import os
import struct
import sys

import numpy as np

WIDTH = {"F32": np.uint32, "F16": np.uint16, "BF16": np.uint16}


def read_st(path_or_dir):
    """{name: (dtype, shape, raw bytes)} of a file or a model directory (sharded or not)."""
    files = [path_or_dir]
    if os.path.isdir(path_or_dir):
        index = os.path.join(path_or_dir, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted({os.path.join(path_or_dir, v) for v in json.load(f)["weight_map"].values()})
        else:
            files = [os.path.join(path_or_dir, "model.safetensors")]
    out = {}
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        for name, e in json.loads(data[8:8 + n]).items():
            if name != "__metadata__":
                b, end = e["data_offsets"]
                out[name] = (e["dtype"], e["shape"], data[8 + n + b:8 + n + end])
    return out


def as_f64(dtype, raw):
    if dtype == "F32":
        return np.frombuffer(raw, np.float32).astype(np.float64)
    if dtype == "F16":
        return np.frombuffer(raw, np.float16).astype(np.float64)
    bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32).astype(np.float64)


def ordered(dtype, raw):
    """Bit patterns as integers ordered like the values (for ulp distances)."""
    u = np.frombuffer(raw, WIDTH[dtype]).astype(np.int64)
    top = 1 << (8 * np.dtype(WIDTH[dtype]).itemsize - 1)
    return np.where(u & top, -(u & (top - 1)), u)


def to_dtype(dtype, x):
    if dtype == "F32":
        return x.astype(np.float32).tobytes()
    if dtype == "F16":
        return x.astype(np.float16).tobytes()
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()


def fail(msg):
    print(msg)
    sys.exit(1)


def check_inspect(case_dir, desc_path):
    case = json.load(open(os.path.join(case_dir, "case.json")))
    d = json.load(open(desc_path))
    q = d.get("quantization")
    if d["format"] != "bitsandbytes" or d["parameters"] != case["parameters"]:
        fail("format %s parameters %s" % (d["format"], d["parameters"]))
    stored = read_st(os.path.join(case_dir, "model"))
    if d["bytes"] != sum(len(v[2]) for v in stored.values()):
        fail("bytes %s, the files hold %s" % (d["bytes"], sum(len(v[2]) for v in stored.values())))
    want = {"method": "bitsandbytes", "type": case["type"], "blocksize": case["blocksize"],
            "double_quant": case["double_quant"], "compute_dtype": case["dtype"], "quantized_tensors": 4}
    for k, v in want.items():
        if not q or q.get(k) != v:
            fail("quantization.%s = %s, expected %s" % (k, q and q.get(k), v))
    names = [t["name"] for t in d["tensor_list"]]
    if sorted(names) != sorted(case["tensors"]):
        fail("tensor list %s" % names)
    for t in d["tensor_list"]:
        info = case["tensors"][t["name"]]
        if t["shape"] != info["shape"]:
            fail("%s: shape %s" % (t["name"], t["shape"]))
        if info["quantized"]:
            if t["dtype"] != case["type"].upper() or t["compute_dtype"] != case["dtype"]:
                fail("%s: dtype %s / %s" % (t["name"], t["dtype"], t.get("compute_dtype")))
            parts = t["parts"]
            if parts[0]["name"] != t["name"] or sum(p["bytes"] for p in parts) != t["bytes"]:
                fail("%s: parts %s" % (t["name"], parts))
            for p in parts:
                if p["name"] not in stored or len(stored[p["name"]][2]) != p["bytes"]:
                    fail("%s: part %s" % (t["name"], p))
        elif t["dtype"] != case["dtype"]:
            fail("%s: dtype %s" % (t["name"], t["dtype"]))


def check_dequant(case_dir, out_dir):
    case = json.load(open(os.path.join(case_dir, "case.json")))
    expect, got = read_st(os.path.join(case_dir, "expect.safetensors")), read_st(out_dir)
    for name, info in case["tensors"].items():
        if "k_proj" in name:
            continue
        if got[name][:2] != expect[name][:2]:
            fail("%s: %s %s, expected %s %s" % (name, got[name][0], got[name][1], *expect[name][:2]))
        if got[name][2] != expect[name][2]:
            g, e = (np.frombuffer(x[2], np.uint8) for x in (got[name], expect[name]))
            fail("%s: differs from numpy's dequantization at byte %d" % (name, int(np.argmax(g != e))))


def check_merge(case_dir, out_dir, adapter_dir, out_dtype):
    case = json.load(open(os.path.join(case_dir, "case.json")))
    out_dtype = out_dtype or case["dtype"]
    expect, got = read_st(os.path.join(case_dir, "expect.safetensors")), read_st(out_dir)
    ad = read_st(os.path.join(adapter_dir, "adapter_model.safetensors"))
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    scale = cfg["lora_alpha"] / cfg["r"]
    merged = 0
    for name, info in case["tensors"].items():
        x = as_f64(expect[name][0], expect[name][2]).reshape(info["shape"])
        key = "base_model.model." + name[:-len(".weight")]
        if key + ".lora_A.weight" in ad:
            a = as_f64("F32", ad[key + ".lora_A.weight"][2]).reshape(ad[key + ".lora_A.weight"][1])
            b = as_f64("F32", ad[key + ".lora_B.weight"][2]).reshape(ad[key + ".lora_B.weight"][1])
            x = x + scale * (b @ a)
            merged += 1
        if got[name][0] != out_dtype or got[name][1] != info["shape"]:
            fail("%s: %s %s" % (name, got[name][0], got[name][1]))
        dist = np.abs(ordered(out_dtype, got[name][2]) - ordered(out_dtype, to_dtype(out_dtype, x.reshape(-1))))
        if dist.max() > 1:
            fail("%s: %d ulp from the float64 merge" % (name, dist.max()))
    if merged == 0:
        fail("the adapter merged nothing")
    cfg_out = json.load(open(os.path.join(out_dir, "config.json")))
    torch = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[out_dtype]
    if "quantization_config" in cfg_out or cfg_out.get("torch_dtype") != torch:
        fail("config.json keeps quantization_config or torch_dtype %s" % cfg_out.get("torch_dtype"))


def check_real(case_dir, desc_path, plain_out, merged_out):
    """A real bitsandbytes tensor (testdata/bnb_real): inspect, the weight
    as read (float32) equal to numpy's dequantization bit for bit and, rounded
    to BF16, to bitsandbytes' own output; the merge within 1 ulp."""
    case = json.load(open(os.path.join(case_dir, "case.json")))
    d = json.load(open(desc_path))
    q = d.get("quantization") or {}
    if d["format"] != "bitsandbytes" or d["parameters"] != case["parameters"] or q.get("type") != case["type"]:
        fail("inspect: format %s parameters %s quantization %s" % (d["format"], d["parameters"], q))
    if q.get("double_quant") != case["double_quant"]:
        fail("inspect: double_quant %s" % q.get("double_quant"))
    name = "model.layers.0.mlp.gate_proj.weight"
    got = read_st(plain_out)[name]
    want = read_st(os.path.join(case_dir, "numpy_f32.safetensors"))[name]
    if got[0] != "F32" or got[1] != case["shape"]:
        fail("%s %s" % got[:2])
    if got[2] != want[2]:
        g, e = (np.frombuffer(x[2], np.uint32) for x in (got, want))
        k = int(np.argmax(g != e))
        fail("element %d: %08x, numpy %08x (%d differ)" % (k, g[k], e[k], int((g != e).sum())))
    bnb = np.frombuffer(open(os.path.join(case_dir, "bitsandbytes_bf16.bin"), "rb").read(), np.uint16)
    ours = np.frombuffer(to_dtype("BF16", np.frombuffer(got[2], np.float32)), np.uint16)
    if not np.array_equal(ours, bnb):
        k = int(np.argmax(ours != bnb))
        fail("BF16 element %d: %04x, bitsandbytes %04x (%d differ)" % (k, ours[k], bnb[k], int((ours != bnb).sum())))
    ad = read_st(os.path.join(case_dir, "adapter", "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.mlp.gate_proj"
    a = as_f64("F32", ad[key + ".lora_A.weight"][2]).reshape(ad[key + ".lora_A.weight"][1])
    b = as_f64("F32", ad[key + ".lora_B.weight"][2]).reshape(ad[key + ".lora_B.weight"][1])
    x = as_f64("F32", want[2]).reshape(case["shape"]) + 2.0 * (b @ a)
    m = read_st(merged_out)[name]
    dist = np.abs(ordered("F32", m[2]) - ordered("F32", to_dtype("F32", x.reshape(-1))))
    if m[0] != "F32" or dist.max() > 1:
        fail("merge: %s, %d ulp from the float64 merge" % (m[0], dist.max()))


what = sys.argv[1]
if what == "real":
    check_real(*sys.argv[2:6])
elif what == "inspect":
    check_inspect(sys.argv[2], sys.argv[3])
elif what == "dequant":
    check_dequant(sys.argv[2], sys.argv[3])
else:
    check_merge(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
EOF

failures=0
result() {  # $1 = name, $2 = status, $3 = why
    if [ "$2" -eq 0 ]; then echo "PASS $1"; else echo "FAIL $1: $3"; failures=$((failures + 1)); fi
}

for case_dir in "$ref"/cases/*/; do
    case_dir=${case_dir%/}
    name=$(basename "$case_dir")
    model="$case_dir/model"
    if "$LORATOOL" inspect --json --tensors "$model" >"$tmp/desc.json" 2>"$tmp/err"; then
        why=$($py "$tmp/check.py" inspect "$case_dir" "$tmp/desc.json" 2>&1)
        result "inspect:$name" $? "$why"
    else
        result "inspect:$name" 1 "exit $?: $(cat "$tmp/err")"
    fi
    rm -rf "$tmp/out"
    if "$LORATOOL" merge "$model" "$ref/adapters/plain" -o "$tmp/out" >/dev/null 2>"$tmp/err"; then
        why=$($py "$tmp/check.py" dequant "$case_dir" "$tmp/out" 2>&1)
        result "dequant:$name" $? "$why"
    else
        result "dequant:$name" 1 "merge failed: $(cat "$tmp/err")"
    fi
    rm -rf "$tmp/out"
    if "$LORATOOL" merge "$model" "$ref/adapters/quant" -o "$tmp/out" >/dev/null 2>"$tmp/err"; then
        why=$($py "$tmp/check.py" merge "$case_dir" "$tmp/out" "$ref/adapters/quant" 2>&1)
        result "merge:$name" $? "$why"
    else
        result "merge:$name" 1 "merge failed: $(cat "$tmp/err")"
    fi
done

# real bitsandbytes tensors (testdata/bnb_real: slices of published
# checkpoints with bitsandbytes' own dequantization, see its README.md)
for case_dir in "$ref"/real/*/; do
    case_dir=${case_dir%/}
    name=$(basename "$case_dir")
    rm -rf "$tmp/plain" "$tmp/merged"
    if "$LORATOOL" inspect --json "$case_dir/model" >"$tmp/desc.json" 2>"$tmp/err" &&
        "$LORATOOL" merge "$case_dir/model" "$case_dir/adapter_plain" -o "$tmp/plain" >/dev/null 2>>"$tmp/err" &&
        "$LORATOOL" merge "$case_dir/model" "$case_dir/adapter" -o "$tmp/merged" >/dev/null 2>>"$tmp/err"; then
        why=$($py "$tmp/check.py" real "$case_dir" "$tmp/desc.json" "$tmp/plain" "$tmp/merged" 2>&1)
        result "real:$name" $? "$why"
    else
        result "real:$name" 1 "$(cat "$tmp/err")"
    fi
done
[ -d "$ref/real" ] || result "real" 1 "no fixtures in $ref/real"

# --dtype chooses the output dtype; config.json follows it
case_dir="$ref/cases/fp4_dq_bs128_f16"
rm -rf "$tmp/out"
if "$LORATOOL" merge "$case_dir/model" "$ref/adapters/quant" -o "$tmp/out" --dtype f32 >/dev/null 2>"$tmp/err"; then
    why=$($py "$tmp/check.py" merge "$case_dir" "$tmp/out" "$ref/adapters/quant" F32 2>&1)
    result "merge:dtype_f32" $? "$why"
else
    result "merge:dtype_f32" 1 "merge failed: $(cat "$tmp/err")"
fi

# a lone .safetensors output (no config.json to rewrite) also works
rm -rf "$tmp/one.safetensors"
"$LORATOOL" merge "$ref/cases/nf4_plain_bs64_bf16/model/model.safetensors" "$ref/adapters/quant" \
    -o "$tmp/one.safetensors" >/dev/null 2>"$tmp/err"
result "merge:single_file" $? "$(cat "$tmp/err")"

# convert to a GGUF model reads the same source (llama config with heads)
case_dir="$ref/cases/nf4_dq_bs64_f16"
$py -c "
import json, sys
c = json.load(open(sys.argv[1]))
c.update(num_attention_heads=4, num_key_value_heads=2, hidden_size=40, num_hidden_layers=1, vocab_size=16,
         intermediate_size=130, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=True)
json.dump(c, open(sys.argv[2], 'w'))" "$case_dir/model/config.json" "$tmp/config.json"
if "$LORATOOL" convert "$case_dir/model" -o "$tmp/model.gguf" --base "$tmp/config.json" >/dev/null 2>"$tmp/err" &&
    "$LORATOOL" inspect --json "$tmp/model.gguf" >"$tmp/gguf.json" 2>>"$tmp/err"; then
    why=$($py -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert d['tensors'] == 7 and d['parameters'] == json.load(open(sys.argv[2]))['parameters'], d
" "$tmp/gguf.json" "$case_dir/case.json" 2>&1)
    result "convert:gguf" $? "$why"
else
    result "convert:gguf" 1 "$(cat "$tmp/err")"
fi

# a plain file that only mentions the names in its metadata stays safetensors
"$LORATOOL" inspect --json "$ref/plain_meta.safetensors" >"$tmp/plain.json" 2>"$tmp/err"
result "plain:metadata_mention" $($py -c "
import json, sys; sys.exit(json.load(open(sys.argv[1]))['format'] != 'safetensors')" "$tmp/plain.json" 2>/dev/null &&
    echo 0 || echo 1) "$(cat "$tmp/err")"

# hostile quantization states: one line on stderr, exit 3, for inspect and merge
for f in "$ref"/hostile/*.safetensors; do
    name=$(basename "$f" .safetensors)
    "$LORATOOL" inspect "$f" >/dev/null 2>"$tmp/err"
    rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ $rc -eq 3 ] && [ "$lines" -eq 1 ] && grep -q '^loratool: ' "$tmp/err"; then
        rm -rf "$tmp/out"
        "$LORATOOL" merge "$f" "$ref/adapters/quant" -o "$tmp/out" >/dev/null 2>&1
        rc2=$?
        result "hostile:$name" $([ $rc2 -eq 3 ] && [ ! -e "$tmp/out" ] && echo 0 || echo 1) "merge exit $rc2"
    else
        result "hostile:$name" 1 "inspect exit $rc, stderr: $(cat "$tmp/err")"
    fi
done

[ $failures -eq 0 ]
