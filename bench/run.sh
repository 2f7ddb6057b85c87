#!/bin/sh
# `make bench`: benchmarks measured side by side in one run (not tests).
# Needs python3-numpy (installed when missing, like the test references).
set -e
tool=${1:-build/loratool}
cd "$(dirname "$0")/.."
./.ci/install-deps --test
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; }
# the numpy baselines of bench/surgery_bench.py run on OpenBLAS's pthread build
dpkg -s libopenblas0-pthread >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread; }
/usr/bin/python3 bench/merge_bench.py --tool "$tool" --work build/bench
echo
/usr/bin/python3 bench/surgery_bench.py --tool "$tool" --work build/bench
echo
/usr/bin/python3 bench/bnb_bench.py --tool "$tool" --work build/bench
echo
/usr/bin/python3 bench/verify_bench.py --tool "$tool" --work build/bench
echo
# K-quant re-quantization beside llama-quantize ($LLAMA_QUANTIZE or PATH; a
# local llama.cpp build, reported "not measured" without one)
/usr/bin/python3 bench/kquant_bench.py --tool "$tool" --work build/bench
echo
# quantizer throughput; the ggml peer only where GGML_BASE_LIB names a local build
sh bench/quant_bench.sh
