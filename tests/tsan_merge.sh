#!/bin/sh
# `make tsan`: the threaded merge under ThreadSanitizer.  Any race report
# fails; outputs must equal the plain build's byte for byte.
set -u
tsan=$1 plain=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
# the demo model, and a base of many tensors made here (numpy)
/usr/bin/python3 - "$tmp" <<'PY'
import json, os, sys
sys.path.insert(0, "testdata")
import numpy as np, stwrite
tmp = sys.argv[1]; rng = np.random.default_rng(7)
names = ["model.layers.%d.self_attn.%s_proj.weight" % (l, p) for l in range(6) for p in "qkvo"]
stwrite.write(os.path.join(tmp, "many.safetensors"),
              [stwrite.bf16(n, rng.standard_normal((256, 256)).astype(np.float32)) for n in names])
os.makedirs(os.path.join(tmp, "many_ad"))
t = []
for n in names:
    m = "base_model.model." + n[:-len(".weight")]
    t += [(m + ".lora_A.weight", rng.standard_normal((8, 256)).astype(np.float32)),
          (m + ".lora_B.weight", rng.standard_normal((256, 8)).astype(np.float32))]
stwrite.write(os.path.join(tmp, "many_ad", "adapter_model.safetensors"), t)
json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
          open(os.path.join(tmp, "many_ad", "adapter_config.json"), "w"))
PY
for pair in "testdata/demo/base testdata/demo/adapter demo" "$tmp/many.safetensors $tmp/many_ad many"; do
    set -- $pair
    for threads in 1 2 4; do
        out="$tmp/$3-t$threads.safetensors"
        if ! TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$tsan" merge "$1" "$2" -o "$out" --threads "$threads" \
                >"$tmp/log" 2>&1; then
            echo "FAIL tsan:$3-threads-$threads: $(grep -m3 -E 'WARNING|ERROR|loratool' "$tmp/log")"
            status=1
            continue
        fi
        "$plain" merge "$1" "$2" -o "$tmp/plain.safetensors" --threads "$threads" >/dev/null
        if cmp -s "$out" "$tmp/plain.safetensors"; then
            echo "PASS tsan:$3-threads-$threads (no race reported, output = plain build's)"
        else
            echo "FAIL tsan:$3-threads-$threads: output differs from the plain build's"
            status=1
        fi
    done
done
exit $status
