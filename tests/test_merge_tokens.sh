#!/bin/sh
# merge with PEFT trainable tokens (trainable_token_indices +
# <embedding>.token_adapter.trainable_tokens_delta): the saved rows replace
# the embedding's rows at the configured ids, rounded once to the base
# dtype (numpy reference); every other row and tensor is unchanged.
set -u
LORATOOL=${LORATOOL:-build/loratool}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$LORATOOL" "$tmp" <<'PY'
import json, os, struct, subprocess, sys
sys.path.insert(0, "testdata")
import numpy as np
import stwrite

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(3)
failures = 0

def case(name, ok, why):
    global failures
    print("PASS %s" % name if ok else "FAIL %s: %s" % (name, why))
    failures += not ok

def load_raw(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}

emb = rng.standard_normal((50, 16)).astype(np.float32)
head = rng.standard_normal((50, 16)).astype(np.float32)
base = os.path.join(tmp, "base.safetensors")
stwrite.write(base, [stwrite.bf16("lm_head.weight", head), stwrite.bf16("model.embed_tokens.weight", emb)])

def adapter(name, ids_config, rows):
    d = os.path.join(tmp, name); os.makedirs(d)
    delta = rng.standard_normal((rows, 16)).astype(np.float32)
    stwrite.write(os.path.join(d, "adapter_model.safetensors"),
                  [("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta", delta)])
    json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["q_proj"],
               "trainable_token_indices": ids_config}, open(os.path.join(d, "adapter_config.json"), "w"))
    return d, delta

for name, cfg, ids in (("list-form", [40, 5, 1], [40, 5, 1]),
                       ("dict-form", {"embed_tokens": [7, 49]}, [7, 49])):
    d, delta = adapter(name, cfg, len(ids))
    out = os.path.join(tmp, name + ".safetensors")
    p = subprocess.run([tool, "merge", base, d, "-o", out], capture_output=True, text=True)
    if p.returncode != 0:
        case(name, False, p.stderr.strip()); continue
    got, want = load_raw(out), load_raw(base)
    expect = stwrite.bf16_bits(emb).reshape(50, 16).copy()
    for row, token in enumerate(ids):
        expect[token] = stwrite.bf16_bits(delta[row])
    dtype, shape, raw = got["model.embed_tokens.weight"]
    ok = dtype == "BF16" and shape == [50, 16] and np.array_equal(np.frombuffer(raw, "<u2").reshape(50, 16), expect)
    ok = ok and got["lm_head.weight"][2] == want["lm_head.weight"][2]
    case(name, ok, "rows or untouched tensors differ")

for name, cfg, rows, word in (("id-past-vocab", [3, 50], 2, "past"), ("count-mismatch", [1, 2, 3], 2, "rows"),
                              ("duplicate-id", [4, 4], 2, "twice")):
    d, _ = adapter(name, cfg, rows)
    out = os.path.join(tmp, name + ".safetensors")
    p = subprocess.run([tool, "merge", base, d, "-o", out], capture_output=True, text=True)
    case(name, p.returncode == 3 and word in p.stderr and not os.path.exists(out),
         "exit %d: %s" % (p.returncode, p.stderr.strip()))
sys.exit(1 if failures else 0)
PY
