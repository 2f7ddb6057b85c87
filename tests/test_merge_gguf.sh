#!/bin/sh
# Tests of `loratool merge` into GGUF bases against numpy float64 references
# (testdata/make_merge_gguf_ref.py, run by tests/run.sh into
# $REF/merge_gguf).  Usage, from the repository root:
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_merge_gguf.sh
#
# For each case every command line of the case is run (loratool ARGS, with
# {CASE} = the case's input directory, {O<k>} = an empty directory for run
# k), then the checker (the same script, with its own GGUF reader) compares
# exit codes and stderr words; that failed runs leave nothing; every base KV
# in the output with its type and value; tensor names, order, ne, layout;
# merged tensors within 1 ulp of the float64 W + s B A rounded once,
# re-quantized Q8_0/Q4_0 tensors byte for byte against a numpy ggml
# reference quantizer, untouched tensors byte for byte; a PEFT adapter's
# merge equal to the equivalent GGUF LoRA's.
# Prints "PASS name" or "FAIL name: why" per case; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3
gen=testdata/make_merge_gguf_ref.py
ref="$REF/merge_gguf"

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

. tests/cases.sh
run_cases merge_gguf "$py $gen" "$ref" 120
