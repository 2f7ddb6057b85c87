#!/bin/sh
# Regression tests for hostile inputs and hostile conditions (issue #10):
# patterns that backtrack exponentially, FIFOs, outputs that would replace
# inputs, signals during a merge, directory outputs, messages and exit
# codes.  Run by tests/run.sh from the project root as
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_hostile.sh
#
# Prints "PASS name", "FAIL name: why" or "SKIP name: why"; exits 1 if any
# FAIL.  Expected regex answers come from Python's own `re`.
set -u
cd "$(dirname "$0")/.." || exit 2
LORATOOL=${LORATOOL:-build/loratool}
PY=/usr/bin/python3
ROOT=$(pwd)

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

failures=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $(printf '%s' "$2" | tr '\n' ' ' | cut -c1-600)"; failures=$((failures + 1)); }
skip() { echo "SKIP $1: $2"; }

# run CMD...: stdout -> $tmp/out, stderr -> $tmp/err, status -> $rc (a
# command still running after 60 s is killed: nothing here may hang)
run() { timeout 60 "$@" <"/dev/null" >"$tmp/out" 2>"$tmp/err"; rc=$?; }

# expect NAME CODE [SUBSTRING...] -- CMD...: exit CODE and, for a nonzero
# CODE, exactly one stderr line "loratool: ..." holding each SUBSTRING.
expect() {
    name=$1 code=$2
    shift 2
    subs=""
    while [ "$1" != "--" ]; do subs="$subs$1
"; shift; done
    shift
    run "$@"
    if [ "$rc" -ne "$code" ]; then fail "$name" "exit $rc, expected $code: $(head -c 300 "$tmp/err")"; return 1; fi
    if [ "$code" -ne 0 ]; then
        n=$(grep -c '' "$tmp/err")
        if [ "$n" -ne 1 ] || ! grep -q '^loratool: ' "$tmp/err"; then
            fail "$name" "stderr is not one 'loratool:' line: $(head -c 300 "$tmp/err")"; return 1
        fi
    fi
    old_ifs=$IFS
    IFS='
'
    for s in $subs; do
        if ! grep -qF -- "$s" "$tmp/err"; then IFS=$old_ifs; fail "$name" "stderr lacks '$s': $(cat "$tmp/err")"; return 1; fi
    done
    IFS=$old_ifs
    pass "$name"
}

# adapter DIR MODULE [CONFIG_EXTRA_JSON]: a PEFT adapter with one linear
# module [8, 8], rank 4, lora_alpha 8, all factors 1.
adapter() {
    mkdir -p "$1" && $PY - "$1" "$2" "${3:-{\}}" <<'EOF'
import json, sys
import numpy as np
sys.path.insert(0, "testdata")
import stwrite
out, module, extra = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
stwrite.write(out + "/adapter_model.safetensors",
              [("base_model.model.%s.lora_A.weight" % module, np.ones((4, 8), np.float32)),
               ("base_model.model.%s.lora_B.weight" % module, np.ones((8, 4), np.float32))],
              {"format": "pt"})
config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": [module]}
config.update(extra)
json.dump(config, open(out + "/adapter_config.json", "w"))
EOF
}

# base FILE MODULE: a safetensors base with MODULE.weight [8, 8] F32.
base() {
    $PY - "$1" "$2" <<'EOF'
import sys
import numpy as np
sys.path.insert(0, "testdata")
import stwrite
stwrite.write(sys.argv[1], [(sys.argv[2] + ".weight", np.arange(64, dtype=np.float32).reshape(8, 8))])
EOF
}

# ---- item 3: patterns are decided as Python decides them ----

test_regex_exponential() {
    pattern='(?:(a+)+b|a+)'
    for n in 21 23; do
        module=$($PY -c "print('a' * $n)")
        adapter "$tmp/re$n" "$module" "{\"alpha_pattern\": {\"$pattern\": 2}}" || { fail regex_exponential "fixture"; return; }
        # what PEFT computes: re.match(rf"(.*\.)?({key})$", name), else lora_alpha
        want=$(timeout 600 $PY -c "import re,sys; print(2 if re.match(r'(.*\.)?(' + sys.argv[1] + r')\$', sys.argv[2]) else 8)" "$pattern" "$module")
        if [ -z "$want" ]; then skip "regex_exponential_$n" "Python did not answer"; continue; fi
        run "$LORATOOL" inspect --json "$tmp/re$n"
        got=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['adapter']['module_list'][0]['alpha'])" "$tmp/out" 2>/dev/null)
        if [ "$rc" -eq 0 ] && [ "${got%.0}" = "$want" ]; then pass "regex_exponential_$n"; else fail "regex_exponential_$n" "exit $rc, alpha $got, Python says $want: $(cat "$tmp/err")"; fi
    done
}

test_regex_budget() {
    module=$($PY -c "print('a' * 1000)")
    adapter "$tmp/rebudget" "$module" '{"alpha_pattern": {"(?:(?:a?){1000}){1000}c": 2}}' || { fail regex_budget "fixture"; return; }
    expect regex_budget 3 "alpha_pattern key '(?:(?:a?){1000}){1000}c'" "exceeds the regex budget" "aaaaaaaa" -- \
        "$LORATOOL" inspect "$tmp/rebudget"
}

# ---- item 9: FIFOs and other non-regular files are refused, never waited on ----

test_fifos() {
    command -v mkfifo >/dev/null 2>&1 || { skip fifo "no mkfifo"; return; }
    adapter "$tmp/fifo_ok" lin || { fail fifo "fixture"; return; }
    base "$tmp/fifo_base.safetensors" lin
    mkfifo "$tmp/fifo.safetensors"
    mkdir -p "$tmp/fifo_cfg" "$tmp/fifo_w"
    cp "$tmp/fifo_ok/adapter_model.safetensors" "$tmp/fifo_cfg/"
    mkfifo "$tmp/fifo_cfg/adapter_config.json"
    cp "$tmp/fifo_ok/adapter_config.json" "$tmp/fifo_w/"
    mkfifo "$tmp/fifo_w/adapter_model.safetensors"
    expect fifo_inspect_file 3 "fifo.safetensors: not a regular file (a FIFO)" -- "$LORATOOL" inspect "$tmp/fifo.safetensors"
    expect fifo_merge_base 3 "not a regular file" -- "$LORATOOL" merge "$tmp/fifo.safetensors" "$tmp/fifo_ok" -o "$tmp/fifo_out.safetensors"
    expect fifo_config 3 "adapter_config.json: not a regular file (a FIFO)" -- "$LORATOOL" inspect "$tmp/fifo_cfg"
    expect fifo_config_merge 3 "adapter_config.json: not a regular file" -- "$LORATOOL" merge "$tmp/fifo_base.safetensors" "$tmp/fifo_cfg" -o "$tmp/fifo_out.safetensors"
    expect fifo_weights 3 "adapter_model.safetensors: not a regular file (a FIFO)" -- "$LORATOOL" resize "$tmp/fifo_w" --rank 2 -o "$tmp/fifo_out"
    expect fifo_audit 3 "not a regular file" -- "$LORATOOL" audit "$tmp/fifo_w"
    if [ -e "$tmp/fifo_out.safetensors" ] || [ -e "$tmp/fifo_out" ]; then fail fifo_no_output "an output appeared"; else pass fifo_no_output; fi
}

# ---- item 13: exit codes are the same across verbs ----

test_exit_codes() {
    adapter "$tmp/ec_ad" lin || { fail exit_codes "fixture"; return; }
    base "$tmp/ec_base.safetensors" lin
    mkdir -p "$tmp/ec_empty" "$tmp/ec_cfg"
    echo '{"model_type": "llama", "num_attention_heads": 1, "num_key_value_heads": 1, "hidden_size": 8}' >"$tmp/ec_cfg/config.json"
    e=$tmp/ec_empty
    expect noconfig_inspect 3 "$e" -- "$LORATOOL" inspect "$e"
    expect noconfig_audit 3 "not an adapter directory (no adapter_config.json)" -- "$LORATOOL" audit "$e"
    expect noconfig_merge 3 "not an adapter directory" -- "$LORATOOL" merge "$tmp/ec_base.safetensors" "$e" -o "$tmp/ec_o.safetensors"
    expect noconfig_resize 3 "not an adapter directory" -- "$LORATOOL" resize "$e" --rank 2 -o "$tmp/ec_o"
    expect noconfig_combine 3 "not an adapter directory" -- "$LORATOOL" combine "$tmp/ec_ad" "$e" -o "$tmp/ec_o"
    expect noconfig_convert 3 "$e" -- "$LORATOOL" convert "$e" -o "$tmp/ec_o.gguf" --base "$tmp/ec_cfg/config.json"
    for scale in nan inf -inf 1e400 abc 0x1p0 "" 1.5x; do
        expect "bad_scale_merge_'$scale'" 2 "ec_ad:$scale: the scale after ':' must be a finite decimal number" -- \
            "$LORATOOL" merge "$tmp/ec_base.safetensors" "$tmp/ec_ad:$scale" -o "$tmp/ec_o.safetensors"
    done
    expect bad_scale_combine 2 "must be a finite decimal number" -- "$LORATOOL" combine "$tmp/ec_ad:nan" "$tmp/ec_ad" -o "$tmp/ec_o"
    run "$LORATOOL" merge "$tmp/ec_base.safetensors" "$tmp/ec_ad:-0.5" -o "$tmp/ec_o.safetensors"
    if [ "$rc" -eq 0 ]; then pass good_scale; else fail good_scale "exit $rc: $(cat "$tmp/err")"; fi
    rm -f "$tmp/ec_o.safetensors"
    for verb in inspect audit merge convert resize combine extract; do
        run "$LORATOOL" "$verb" -h
        h=$(cat "$tmp/out")
        run "$LORATOOL" help "$verb"
        if [ "$rc" -eq 0 ] && [ -n "$h" ] && [ "$(cat "$tmp/out")" = "$h" ] && "$LORATOOL" "$verb" --help | cmp -s - "$tmp/out"; then
            pass "help_$verb"
        else
            fail "help_$verb" "-h, help $verb and --help differ (exit $rc)"
        fi
    done
    run "$LORATOOL" -V
    if [ "$rc" -eq 0 ] && "$LORATOOL" --version | cmp -s - "$tmp/out"; then pass version_V; else fail version_V "exit $rc"; fi
    expect unknown_command 2 "unknown command 'frob' (see 'loratool --help')" -- "$LORATOOL" frob
    expect help_unknown_command 2 "(see 'loratool --help')" -- "$LORATOOL" help frob
}

# ---- item 2: no output overwrites or replaces an input ----

# unchanged NAME FILE SUM: FILE still has checksum SUM
unchanged() {
    if [ "$(cksum <"$2")" = "$3" ]; then pass "$1"; else fail "$1" "$2 was modified"; fi
}

test_outputs_never_replace_inputs() {
    d=$tmp/ow
    adapter "$d/a" lin && adapter "$d/b" lin || { fail outputs "fixture"; return; }
    base "$d/base.safetensors" lin
    mkdir -p "$d/model" "$d/outer"
    cp "$d/base.safetensors" "$d/model/model.safetensors"
    cp -r "$d/a" "$d/outer/inner"
    ln -s a/adapter_model.safetensors "$d/sym.safetensors"
    ln "$d/base.safetensors" "$d/hard.safetensors"
    sum_a=$(cksum <"$d/a/adapter_model.safetensors") sum_base=$(cksum <"$d/base.safetensors")
    expect overwrite_merge_adapter_file 2 "output would overwrite input" -- \
        "$LORATOOL" merge "$d/base.safetensors" "$d/a" -o "$d/a/adapter_model.safetensors"
    expect overwrite_merge_scaled 2 "output would overwrite input '$d/a:0.5'" -- \
        "$LORATOOL" merge "$d/base.safetensors" "$d/a:0.5" -o "$d/a/adapter_model.safetensors"
    expect overwrite_merge_symlink 2 "output would overwrite input" -- \
        "$LORATOOL" merge "$d/base.safetensors" "$d/a" -o "$d/sym.safetensors"
    expect overwrite_merge_hardlink 2 "overwrite" -- \
        "$LORATOOL" merge "$d/base.safetensors" "$d/a" -o "$d/hard.safetensors"
    expect overwrite_resize_self 2 "output would overwrite input" -- "$LORATOOL" resize "$d/a" --rank 2 -o "$d/a"
    expect overwrite_combine_first 2 "output would overwrite input" -- "$LORATOOL" combine "$d/a" "$d/b" -o "$d/a"
    expect overwrite_combine_second 2 "output would overwrite input" -- "$LORATOOL" combine "$d/a" "$d/b:2" -o "$d/b"
    expect overwrite_parent_dir 2 "output would replace a directory holding input" -- \
        "$LORATOOL" resize "$d/outer/inner" --rank 2 -o "$d/outer"
    expect overwrite_extract_tuned 2 "output would" -- \
        "$LORATOOL" extract "$d/base.safetensors" "$d/model" --rank 1 -o "$d/model"
    expect overwrite_convert_input 2 "output would overwrite input" -- \
        "$LORATOOL" convert "$d/model/model.safetensors" -o "$d/model/model.safetensors" --base "$d/model"
    unchanged overwrite_adapter_intact "$d/a/adapter_model.safetensors" "$sum_a"
    unchanged overwrite_base_intact "$d/base.safetensors" "$sum_base"
    # a new file beside an input stays allowed
    run "$LORATOOL" merge "$d/model" "$d/a" -o "$d/model/merged.safetensors"
    if [ "$rc" -eq 0 ] && [ -f "$d/model/merged.safetensors" ]; then pass new_file_in_input_dir; else fail new_file_in_input_dir "exit $rc: $(cat "$tmp/err")"; fi
}

# ---- items 6, 7: signals and truncated inputs leave nothing behind ----

# big_fixture DIR ROWS: DIR/base.safetensors, one F32 tensor [ROWS, 8192] of
# zeros (sparse: made at once), and DIR/ad, a rank-4 adapter on it.
big_fixture() {
    mkdir -p "$1/ad" && $PY - "$1" "$2" <<'EOF2'
import json, struct, sys
import numpy as np
sys.path.insert(0, "testdata")
import stwrite
out, rows, cols = sys.argv[1], int(sys.argv[2]), 8192
header = json.dumps({"big.weight": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, rows * cols * 4]}}).encode()
header += b" " * (-len(header) % 8)
with open(out + "/base.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header)
    f.truncate(8 + len(header) + rows * cols * 4)
stwrite.write(out + "/ad/adapter_model.safetensors",
              [("base_model.model.big.lora_A.weight", np.ones((4, cols), np.float32)),
               ("base_model.model.big.lora_B.weight", np.ones((rows, 4), np.float32))], {"format": "pt"})
json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["big"]}, open(out + "/ad/adapter_config.json", "w"))
EOF2
}

# only_these NAME DIR ENTRY...: DIR holds exactly the ENTRYs (hidden ones too)
only_these() {
    name=$1 dir=$2
    shift 2
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    have=$(ls -A "$dir" | sort | tr '\n' ' ')
    if [ "$have" = "$want" ]; then pass "$name"; else fail "$name" "$dir holds: $have"; fi
}

# interrupt NAME SIGNAL EXPECTED_RC MESSAGE ACTION -- CMD...: start CMD, wait
# for it to be writing, then ACTION ("kill" sends SIGNAL; else a command)
interrupt() {
    name=$1 sig=$2 want_rc=$3 msg=$4 action=$5
    shift 6
    env --default-signal=INT,TERM "$@" >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    sleep 0.7
    if [ "$action" = kill ]; then kill -"$sig" "$pid" 2>/dev/null; else $action; fi
    wait "$pid"
    rc=$?
    if [ "$rc" -eq 0 ]; then skip "$name" "the run ended before the signal"; return 1; fi
    if [ "$rc" -eq "$want_rc" ] && [ "$(grep -c '' "$tmp/err")" -eq 1 ] && grep -qF "$msg" "$tmp/err"; then
        pass "$name"
    else
        fail "$name" "exit $rc: $(cat "$tmp/err")"
    fi
}

test_signals() {
    command -v env >/dev/null && env --default-signal=INT true 2>/dev/null || { skip signals "env --default-signal missing"; return; }
    d=$tmp/sig
    big_fixture "$d" 24576 || { fail signals "fixture"; return; }
    for sig in INT:130 TERM:143; do
        code=${sig#*:} sig=${sig%:*}
        interrupt "sig$sig" "$sig" "$code" "loratool: " kill -- \
            "$LORATOOL" merge "$d/base.safetensors" "$d/ad" -o "$d/out.safetensors" --threads 1 &&
            only_these "sig${sig}_nothing_left" "$d" ad base.safetensors
        interrupt "sig${sig}_sharded" "$sig" "$code" "loratool: " kill -- \
            "$LORATOOL" merge "$d/base.safetensors" "$d/ad" -o "$d/sharded" --shard-size 100MB --threads 1 &&
            only_these "sig${sig}_sharded_nothing_left" "$d" ad base.safetensors
    done
    cp "$d/base.safetensors" "$d/victim.safetensors"
    interrupt sigbus_truncated_base BUS 4 "loratool: input file changed or truncated while reading" \
        "truncate -s 4096 $d/victim.safetensors" -- \
        "$LORATOOL" merge "$d/victim.safetensors" "$d/ad" -o "$d/out.safetensors" --threads 1 &&
        only_these sigbus_nothing_left "$d" ad base.safetensors victim.safetensors
    rm -rf "$d"
}

# ---- item 14: directory outputs appear whole, and replace only our own ----

test_directory_outputs() {
    d=$tmp/dirs
    adapter "$d/a" lin || { fail dirs "fixture"; return; }
    base "$d/base.safetensors" lin
    # a new directory: complete, nothing hidden left beside it
    expect dir_new 0 -- "$LORATOOL" resize "$d/a" --rank 2 -o "$d/r"
    only_these dir_new_contents "$d/r" adapter_config.json adapter_model.safetensors
    only_these dir_new_nothing_beside "$d" a base.safetensors r
    # an existing output of ours is replaced whole
    inode=$(ls -di "$d/r" | cut -d' ' -f1)
    expect dir_replace 0 -- "$LORATOOL" resize "$d/a" --rank 1 -o "$d/r"
    run "$LORATOOL" inspect --json "$d/r"
    if grep -q '"rank":[[:space:]]*1' "$tmp/out"; then pass dir_replaced_rank1; else fail dir_replaced_rank1 "$(head -c 300 "$tmp/out")"; fi
    [ "$(ls -di "$d/r" | cut -d' ' -f1)" != "$inode" ] && pass dir_replaced_by_new || fail dir_replaced_by_new "same inode"
    only_these dir_replace_nothing_beside "$d" a base.safetensors r
    # a user's file in the way: exit 2 naming it, nothing touched
    echo mine >"$d/r/notes.txt"
    sum=$(cksum <"$d/r/adapter_model.safetensors")
    expect dir_in_the_way 2 "'notes.txt' is in the way" -- "$LORATOOL" combine "$d/a" "$d/a" -o "$d/r"
    unchanged dir_in_the_way_intact "$d/r/adapter_model.safetensors" "$sum"
    [ -f "$d/r/notes.txt" ] && pass dir_in_the_way_kept || fail dir_in_the_way_kept "notes.txt is gone"
    only_these dir_in_the_way_nothing_beside "$d" a base.safetensors r
    mkdir "$d/r/sub" && rm "$d/r/notes.txt"
    expect dir_subdir_in_the_way 2 "'sub' is in the way" -- "$LORATOOL" resize "$d/a" --rank 2 -o "$d/r"
    rmdir "$d/r/sub"
    : >"$d/file_out"
    expect dir_over_file 2 "exists and is not a directory" -- "$LORATOOL" resize "$d/a" --rank 2 -o "$d/file_out"
    # sharded merge: a directory of shards and index, replaced whole
    expect dir_sharded 0 -- "$LORATOOL" merge "$d/base.safetensors" "$d/a" -o "$d/m" --shard-size 100
    expect dir_sharded_again 0 -- "$LORATOOL" merge "$d/base.safetensors" "$d/a:0.5" -o "$d/m" --shard-size 100
    only_these dir_sharded_contents "$d/m" model-00001-of-00001.safetensors model.safetensors.index.json
    echo x >"$d/m/keep.me"
    expect dir_sharded_in_the_way 2 "'keep.me' is in the way" -- \
        "$LORATOOL" merge "$d/base.safetensors" "$d/a" -o "$d/m" --shard-size 100
    only_these dir_sharded_nothing_beside "$d" a base.safetensors file_out m r
}

# ---- item 12: one printable line per error; names from files escaped ----

# no_controls NAME FILE: FILE holds no control byte but newlines and tabs
no_controls() {
    if LC_ALL=C tr -d '\n\t' <"$2" | LC_ALL=C grep -q '[[:cntrl:]]'; then
        fail "$1" "control characters in $(basename "$2"): $(od -c "$2" | head -5)"
    else
        pass "$1"
    fi
}

test_escaped_names() {
    d=$tmp/esc
    evil=$(printf 'x\033[2J\033]0;pwned\007\ny')
    adapter "$d/a" "$evil" || { fail escaped "fixture"; return; }
    base "$d/base.safetensors" lin
    run "$LORATOOL" inspect "$d/a"
    if [ "$rc" -eq 0 ]; then pass escaped_inspect_runs; else fail escaped_inspect_runs "exit $rc: $(cat "$tmp/err")"; fi
    no_controls escaped_inspect_text "$tmp/out"
    if grep -qF 'x\x1b[2J\x1b]0;pwned\x07\x0ay' "$tmp/out"; then pass escaped_inspect_shown; else fail escaped_inspect_shown "$(cat "$tmp/out")"; fi
    run "$LORATOOL" inspect --json "$d/a"
    no_controls escaped_inspect_json "$tmp/out"
    expect escaped_error_one_line 3 'x\x1b[2J' -- "$LORATOOL" merge "$d/base.safetensors" "$d/a" -o "$d/o.safetensors"
    no_controls escaped_error_printable "$tmp/err"
    expect escaped_usage 2 'unknown command' -- "$LORATOOL" "$evil"
    no_controls escaped_usage_printable "$tmp/err"
    # no internal function names in what users read
    if grep -rhoE '"lti?_[a-z0-9_]+: ' "$ROOT/lib" "$ROOT/formats" "$ROOT/cli" --include='*.c' | grep -q .; then
        fail no_function_names "$(grep -rnE '"lti?_[a-z0-9_]+: ' "$ROOT/lib" "$ROOT/formats" "$ROOT/cli" --include='*.c' | head -3)"
    else
        pass no_function_names
    fi
}

test_regex_exponential
test_regex_budget
test_fifos
test_exit_codes
test_outputs_never_replace_inputs
test_signals
test_directory_outputs
test_escaped_names

[ "$failures" -eq 0 ]
