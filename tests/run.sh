#!/bin/sh
# Runs every test of loratool for each build directory given (normally the
# plain build and the ASan+UBSan build), then prints "N passed, N failed".
#
# Test programs (BUILD/tests/test_*) and scripts (tests/test_*.sh) print one
# line per case: "PASS name", "FAIL name" or "SKIP name". A program that
# exits non-zero without printing FAIL (a crash, a sanitizer report) counts
# as one failure of its own.
set -u
cd "$(dirname "$0")/.." || exit 2
[ $# -gt 0 ] || set -- build

# Reference data made by numpy (independent of our C code), shared by all builds.
ref=build/testdata
mkdir -p "$ref"
for script in testdata/make_*.py; do
    [ -f "$script" ] || continue
    name=$(basename "$script" .py)
    name=${name#make_}
    name=${name%_ref}
    name=${name%_cases}
    if ! /usr/bin/python3 "$script" "$ref/$name" >"$ref/$name.log" 2>&1; then
        echo "FAIL reference:$script (see $ref/$name.log)"
        echo "FAIL reference:$script" >>"$ref/failures"
    fi
done

passed=0 failed=0 skipped=0
[ -f "$ref/failures" ] && failed=$(wc -l <"$ref/failures") && rm -f "$ref/failures"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() {  # $1 = label, $2 = exit status; reads $log
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $1 (exit status $2 without a FAIL line)"
        f=1
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
}

for build in "$@"; do
    echo "== $build"
    for t in "$build"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        echo "-- $name"
        "$t" "$ref/${name#test_}" >"$log" 2>&1
        rc=$?
        grep -v '^PASS ' "$log"
        count "$build:$name" $rc
    done
    for t in tests/test_*.sh; do
        [ -f "$t" ] || continue
        echo "-- $(basename "$t")"
        # timing comparisons belong to make bench, not to the tests
        SURGERY_NUMPY_TIMING=0 LORATOOL="$build/loratool" REF="$ref" sh "$t" >"$log" 2>&1
        rc=$?
        grep -v '^PASS ' "$log"
        count "$build:$(basename "$t")" $rc
    done
done
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
