#!/bin/sh
# `make bench`: benchmarks measured side by side in one run (not tests).
# Needs python3-numpy (installed when missing, like the test references).
set -e
tool=${1:-build/loratool}
cd "$(dirname "$0")/.."
./.ci/install-deps --test
/usr/bin/python3 bench/merge_bench.py --tool "$tool" --work build/bench
