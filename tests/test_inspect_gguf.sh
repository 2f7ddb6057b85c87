#!/bin/sh
# inspect of a GGUF LoRA: the text output has no empty `targets:` line (a
# GGUF LoRA names no target modules), a PEFT adapter's still has one; the
# JSON `gguf` object has the keys spec/cli.md documents.
set -u
LORATOOL=${LORATOOL:-build/loratool}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$LORATOOL" "$tmp" <<'PY'
import json, os, subprocess, sys
sys.path.insert(0, "testdata")
import numpy as np
import stwrite
from clitest import Checks

tool, tmp = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(9)
checks = Checks(tool)
case = checks.case

ad = os.path.join(tmp, "adapter"); os.makedirs(ad)
json.dump({"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 2},
          open(os.path.join(tmp, "config.json"), "w"))
t = {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.standard_normal((2, 32)),
     "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": rng.standard_normal((32, 2))}
stwrite.write(os.path.join(ad, "adapter_model.safetensors"), sorted((k, v.astype(np.float32)) for k, v in t.items()),
              {"format": "pt"})
json.dump({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]},
          open(os.path.join(ad, "adapter_config.json"), "w"))
lora = os.path.join(tmp, "lora.gguf")
p = subprocess.run([tool, "convert", ad, "-o", lora, "--base", os.path.join(tmp, "config.json")], capture_output=True, text=True)
case("convert", p.returncode == 0, p.stderr)
text = subprocess.run([tool, "inspect", lora], capture_output=True, text=True).stdout
case("gguf-lora:no-targets-line", "targets:" not in text and "\n\n" not in text and "adapter:" in text, text)
text = subprocess.run([tool, "inspect", ad], capture_output=True, text=True).stdout
case("peft:targets-line", "targets:      q_proj\n" in text, text)
out = subprocess.run([tool, "inspect", "--json", lora], capture_output=True, text=True).stdout
g = json.loads(out).get("gguf", {})
case("gguf-json-object", set(g) == {"version", "alignment", "architecture", "type", "kv"} and g["type"] == "adapter"
     and g["architecture"] == "llama" and g["kv"].get("adapter.lora.alpha") == 4, str(g))
sys.exit(checks.status())
PY
