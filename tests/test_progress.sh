#!/bin/sh
# The long verbs (resize, combine with every method, extract, model conversion) show a
# progress line on stderr when it is a terminal, and never in pipes or with
# --json (spec/cli.md); the output files are the same bytes either way.
# The terminal is a pseudo-terminal made by script(1).  Run by tests/run.sh
# as  LORATOOL=build/loratool sh tests/test_progress.sh
# Prints "PASS name", "FAIL name: why" or "SKIP name: why".
set -u
cd "$(dirname "$0")/.." || exit 2
LORATOOL=${LORATOOL:-build/loratool}
DEMO=testdata/demo

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
failures=0
export ASAN_OPTIONS=detect_leaks=0

if ! command -v script >/dev/null 2>&1; then
    for c in resize combine combine_ties combine_dare extract convert; do echo "SKIP progress_$c: script(1) is not installed"; done
    exit 0
fi
if ! "$LORATOOL" merge "$DEMO/base" "$DEMO/adapter" -o "$tmp/tuned.safetensors" >/dev/null 2>&1; then
    echo "FAIL progress_setup: merge of the demo model failed"
    exit 1
fi

fail() { echo "FAIL $1: $2"; failures=$((failures + 1)); }

# check NAME WORD OUTPUT ARGS...: ARGS (writing OUTPUT under $tmp/tty and
# $tmp/pipe) on a terminal show "WORD: N/N"; in a pipe and with --json
# (where the verb has it) not; the two outputs are the same bytes.
check() {
    name=$1 word=$2 out=$3
    shift 3
    mkdir -p "$tmp/tty" "$tmp/pipe" "$tmp/json"
    cmd="$LORATOOL"
    for a in "$@"; do cmd="$cmd '$a'"; done
    script -qec "$(echo "$cmd" | sed "s|@OUT@|$tmp/tty/$out|")" /dev/null >"$tmp/$name.tty" 2>&1
    rc_tty=$?
    eval "$(echo "$cmd" | sed "s|@OUT@|$tmp/pipe/$out|")" >"$tmp/$name.pipe.out" 2>"$tmp/$name.pipe.err"
    rc_pipe=$?
    if [ "$rc_tty" -ne 0 ] || [ "$rc_pipe" -ne 0 ]; then
        fail "progress_$name" "exit $rc_tty on a terminal, $rc_pipe in a pipe: $(head -c 300 "$tmp/$name.pipe.err")"
        return
    fi
    last=$(grep -o "$word: [0-9]*/[0-9]*" "$tmp/$name.tty" | tail -1)
    nums=${last#*: }
    if [ -z "$last" ] || [ "${nums%/*}" != "${nums#*/}" ]; then
        fail "progress_$name" "no final '$word: N/N' line on a terminal: $(head -c 300 "$tmp/$name.tty")"
    elif grep -q "$word:" "$tmp/$name.pipe.out" "$tmp/$name.pipe.err"; then
        fail "progress_$name" "progress shown in a pipe"
    elif ! cmp -s "$tmp/tty/$out/adapter_model.safetensors" "$tmp/pipe/$out/adapter_model.safetensors" 2>/dev/null &&
         ! cmp -s "$tmp/tty/$out" "$tmp/pipe/$out"; then
        fail "progress_$name" "output differs between terminal and pipe"
    else
        echo "PASS progress_$name"
    fi
    case "$*" in *--json*) return ;; esac
    [ "$name" = convert ] && return
    script -qec "$(echo "$cmd" | sed "s|@OUT@|$tmp/json/$out|") --json" /dev/null >"$tmp/$name.json" 2>&1
    if grep -q "$word:" "$tmp/$name.json"; then
        fail "progress_${name}_json" "progress shown with --json: $(head -c 200 "$tmp/$name.json")"
    else
        echo "PASS progress_${name}_json"
    fi
}

check resize resizing r resize "$DEMO/adapter" -o @OUT@ --rank 2
check combine combining c combine "$DEMO/adapter" "$DEMO/adapter:-0.5" -o @OUT@ --rank 2
check combine_ties combining ct combine "$DEMO/adapter" "$DEMO/adapter:-0.5" -o @OUT@ --method ties --density 0.5 --rank 2
check combine_dare combining cd combine "$DEMO/adapter" "$DEMO/adapter:0.5" -o @OUT@ --method dare --density 0.5 --seed 7 --rank 2
check extract extracting e extract "$DEMO/base/model.safetensors" "$tmp/tuned.safetensors" -o @OUT@ --rank 2
check convert converting m.gguf convert "$DEMO/base/model.safetensors" -o @OUT@ --base "$DEMO/base/config.json"

[ "$failures" -eq 0 ]
