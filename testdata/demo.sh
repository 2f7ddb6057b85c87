#!/bin/sh
# `make demo`: loratool's main jobs on the bundled data in testdata/demo
# (a tiny llama-shaped BF16 base and a rank-4 LoRA adapter; see
# testdata/make_demo.py).
set -e
tool=${1:-build/loratool}
demo=testdata/demo
run() { echo; echo "\$ loratool $*"; "$tool" "$@"; }

run inspect $demo/base/model.safetensors
run inspect $demo/adapter --base $demo/base
run audit $demo/adapter --base $demo/base --max-params 100k --max-rank 8 --require-targets q_proj,v_proj

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run merge $demo/base $demo/adapter -o "$out/merged"
run inspect "$out/merged"
run convert $demo/adapter -o "$out/adapter.gguf" --base $demo/base/config.json
run resize $demo/adapter -o "$out/small" --rank 2
