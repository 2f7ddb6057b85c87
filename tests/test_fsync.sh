#!/bin/sh
# `loratool merge --fsync` flushes its outputs before renaming them into
# place, and a plain merge leaves that to the kernel, as cp does (spec/cli.md).
# Seen from outside with strace: the system calls are the evidence.  Run by
# tests/run.sh as  LORATOOL=build/loratool sh tests/test_fsync.sh
# Prints "PASS name", "FAIL name: why" or "SKIP name: why".
set -u
cd "$(dirname "$0")/.." || exit 2
LORATOOL=${LORATOOL:-build/loratool}
DEMO=testdata/demo

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
failures=0

if ! command -v strace >/dev/null 2>&1; then
    echo "SKIP merge_fsync: strace is not installed"
    echo "SKIP merge_no_fsync: strace is not installed"
    exit 0
fi

# trace NAME ARGS...: run loratool under strace; the file-syncing calls go
# to $tmp/NAME.trace, the exit status to $rc
trace() {
    name=$1
    shift
    ASAN_OPTIONS=detect_leaks=0 strace -f -qq -e trace=fsync,fdatasync,sync_file_range -o "$tmp/$name.trace" \
        "$LORATOOL" "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
}

trace fsync merge "$DEMO/base" "$DEMO/adapter" -o "$tmp/fsync.safetensors" --fsync
if [ "$rc" -ne 0 ]; then
    echo "FAIL merge_fsync: exit $rc: $(head -c 300 "$tmp/fsync.err")"; failures=$((failures + 1))
elif ! grep -q 'fsync(' "$tmp/fsync.trace"; then
    echo "FAIL merge_fsync: no fsync call"; failures=$((failures + 1))
else
    echo "PASS merge_fsync"
fi

trace plain merge "$DEMO/base" "$DEMO/adapter" -o "$tmp/plain.safetensors"
if [ "$rc" -ne 0 ]; then
    echo "FAIL merge_no_fsync: exit $rc: $(head -c 300 "$tmp/plain.err")"; failures=$((failures + 1))
elif grep -q 'fsync(\|sync_file_range(' "$tmp/plain.trace"; then
    echo "FAIL merge_no_fsync: $(grep -c 'sync' "$tmp/plain.trace") sync calls without --fsync"
    failures=$((failures + 1))
elif ! cmp -s "$tmp/plain.safetensors" "$tmp/fsync.safetensors"; then
    echo "FAIL merge_no_fsync: output differs from the --fsync output"; failures=$((failures + 1))
else
    echo "PASS merge_no_fsync"
fi
[ "$failures" -eq 0 ]
