#!/bin/sh
# llama.cpp itself (node-llama-cpp's prebuilt CPU build) and
# @huggingface/gguf read what loratool writes: converted models, GGUF LoRAs
# in f32/f16/q8_0, GGUF and safetensors merges (tests/llama/runtime_check.py
# says what is compared and the tolerance).  Needs Node.js >= 20 and npm
# (the packages are installed once into build/node, pinned); without them
# this test FAILS, it never skips.
set -u
LORATOOL=${LORATOOL:-build/loratool}
NODE_DIR=${LT_NODE_DIR:-build/node}    # cached between runs (build/ is ignored)
case $NODE_DIR in /*) ;; *) NODE_DIR=$(pwd)/$NODE_DIR ;; esac
PKGS="node-llama-cpp@3.21.1 @huggingface/gguf@0.4.6 @node-llama-cpp/linux-x64@3.21.1"
VOCAB=../shared/corpus/gguf/vocab_only_llama.cpp/ggml-vocab-llama-spm.gguf

if ! command -v node >/dev/null 2>&1; then
    echo "FAIL llama-runtime: node is not installed (Node.js >= 20 is needed; .ci/install-deps --test installs it)"
    exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
    echo "FAIL llama-runtime: Node.js $(node --version) is too old (node-llama-cpp 3.21 needs >= 20)"
    exit 1
fi
if [ "$(uname -m)" != x86_64 ] || [ "$(uname -s)" != Linux ]; then
    echo "FAIL llama-runtime: the prebuilt llama.cpp pinned here is for Linux x86_64, not $(uname -s) $(uname -m)"
    exit 1
fi
installed() {  # $1 = package directory, $2 = version
    [ -f "$NODE_DIR/node_modules/$1/package.json" ] &&
        node -e 'process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)' \
            "$NODE_DIR/node_modules/$1/package.json" "$2"
}
if ! installed node-llama-cpp 3.21.1 || ! installed @huggingface/gguf 0.4.6 || ! installed @node-llama-cpp/linux-x64 3.21.1; then
    command -v npm >/dev/null 2>&1 || { echo "FAIL llama-runtime: npm is not installed"; exit 1; }
    mkdir -p "$NODE_DIR"
    [ -f "$NODE_DIR/package.json" ] || echo '{"name": "loratool-test-clients", "private": true}' >"$NODE_DIR/package.json"
    # --omit=optional + the linux-x64 build: no CUDA or Vulkan downloads;
    # --ignore-scripts: node-llama-cpp never tries to build llama.cpp
    # shellcheck disable=SC2086
    if ! (cd "$NODE_DIR" && npm i -E --omit=optional --ignore-scripts --no-audit --no-fund $PKGS) >"$NODE_DIR/npm.log" 2>&1; then
        echo "FAIL llama-runtime: npm could not install $PKGS (registry unreachable?): $(tail -3 "$NODE_DIR/npm.log" | tr '\n' ' ')"
        exit 1
    fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 tests/llama/runtime_check.py "$LORATOOL" "$tmp" "$NODE_DIR/node_modules" "$VOCAB"
