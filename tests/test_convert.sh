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


if [ ! -x "$LORATOOL" ]; then
    echo "FAIL convert: $LORATOOL is not built"
    exit 1
fi
if [ ! -f "$ref/cases.json" ]; then
    echo "FAIL convert: no reference data in $ref (/usr/bin/python3 testdata/make_convert_ref.py $ref)"
    exit 1
fi
limit=""
command -v timeout >/dev/null 2>&1 && limit="timeout 120"

names=$($py testdata/convert_check.py list "$ref") || { echo "FAIL convert: cannot read $ref/cases.json"; exit 1; }
status=0
for name in $names; do
    work="$tmp/$name"
    mkdir "$work" || exit 2
    case_dir=$(cd "$ref/$name" && pwd) || { echo "FAIL $name: no reference directory"; status=1; continue; }
    if ! $py testdata/convert_check.py setup "$case_dir" "$work"; then
        echo "FAIL $name: setup failed"
        status=1
        continue
    fi
    for args in "$work"/run.*.args; do
        [ -f "$args" ] || continue
        run=${args%.args}
        set --
        while IFS= read -r arg; do
            set -- "$@" "$arg"
        done <"$args"
        $limit "$LORATOOL" "$@" >"$run.out" 2>"$run.err" </dev/null
        echo $? >"$run.rc"
    done
    $py testdata/convert_check.py check "$case_dir" "$work" || status=1
    rm -rf "$work"
done
exit $status
