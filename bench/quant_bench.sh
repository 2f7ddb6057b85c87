#!/bin/sh
# Quantizer throughput: lt_quantize_row vs ggml's ggml_quantize_chunk (what
# llama-quantize runs) on the same tensor, all cores, with a byte
# comparison.  The peer is a libggml-base.so you built yourself from
# llama.cpp or ggml (CPU, default flags); point GGML_BASE_LIB at it.
# Without it our side is measured alone and the peer reported as skipped.
#   GGML_BASE_LIB=/path/libggml-base.so sh bench/quant_bench.sh [quant_bench args]
set -e
cd "$(dirname "$0")/.."
mkdir -p build/bench
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -Ilib/include -o build/bench/quant_bench \
    bench/quant_bench.c build/libloratool.a -ldl -lm
if [ -z "$GGML_BASE_LIB" ] || [ ! -f "$GGML_BASE_LIB" ]; then
    echo "quant_bench: SKIP peer: llama.cpp/ggml is not built here (GGML_BASE_LIB unset or missing)"
    GGML_BASE_LIB= exec build/bench/quant_bench "$@"
fi
exec build/bench/quant_bench "$@"
