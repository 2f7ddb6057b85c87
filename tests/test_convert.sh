#!/bin/sh
# Tests of `loratool convert` (PEFT adapter <-> GGUF LoRA adapter) against
# numpy references (testdata/make_convert_ref.py, run by tests/run.sh into
# $REF/convert).  Usage, from the repository root:
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_convert.sh
#
# For each case every command line of the case is run (loratool ARGS, with
# {CASE} = the case's input directory, {OUT} = an empty directory for that
# run, {O<k>} = run k's directory), then a checker with its own GGUF and
# safetensors readers (written from the format descriptions, not from our C
# code) compares: exit codes and stderr words; that failed runs leave
# nothing; GGUF KVs, tensor names, ne, types, layout (offsets = running sum
# of padded sizes) and values (F32 byte for byte, F16/BF16 = numpy's
# round-to-nearest-even of the reference, Q8_0 dequantized within the
# quantization error); effective deltas (alpha / r) * B @ A of folded
# scales; PEFT outputs byte for byte with an equivalent config.
# Prints "PASS name" or "FAIL name: why" per case; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3
ref="$REF/convert"

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM


. tests/cases.sh
run_cases convert "$py testdata/convert_check.py" "$ref" 120
