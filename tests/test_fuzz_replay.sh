#!/bin/sh
# Replays every fuzz corpus (testdata/fuzz/<target>/: the minimized corpus
# plus every reproducer ever found) through the plain driver of its target
# (tests/fuzz/replay_main.c, built next to LORATOOL in fuzz-replay/), so
# the plain and the ASan+UBSan runs of `make test` both hold every parser
# to what fuzzing checked.  testdata/fuzz/<target>/pending/ holds
# reproducers of known bugs whose fix has not landed: not replayed.
set -u
cd "$(dirname "$0")/.." || exit 2
build=$(dirname "${LORATOOL:-build/loratool}")
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for src in tests/fuzz/fuzz_*.c; do
    target=$(basename "$src" .c)
    target=${target#fuzz_}
    bin="$build/fuzz-replay/fuzz_$target"
    corpus="testdata/fuzz/$target"
    if [ ! -x "$bin" ]; then
        echo "FAIL fuzz_replay:$target ($bin not built)"
        status=1
    elif [ ! -d "$corpus" ]; then
        echo "FAIL fuzz_replay:$target (no corpus $corpus)"
        status=1
    elif "$bin" "$corpus" >"$log" 2>&1; then
        n=$(sed -n 's/^PASS .*: \([0-9]*\) inputs from .*/\1/p' "$log")
        echo "PASS fuzz_replay:$target ($n inputs)"
    else
        # the driver names each input before running it: the last one failed
        echo "FAIL fuzz_replay:$target"
        tail -n 25 "$log" | sed 's/^/  /'
        status=1
    fi
done
exit $status
