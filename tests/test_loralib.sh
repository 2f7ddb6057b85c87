#!/bin/sh
# Tests of microsoft/LoRA (loralib) checkpoints and merged-QKV adapters
# (spec/loralib.md).  Usage, from the repository root:
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_loralib.sh
#
# Inputs: the checkpoints torch wrote (testdata/loralib/*.pt, committed with
# the script that made them) and the numpy references of
# testdata/make_loralib_ref.py ($REF/loralib: float64 merged values by
# loralib's formulas, the checkpoints as safetensors, refusal cases, bases
# for the legacy PEFT enable_lora adapter of ../shared/corpus/bin).
# Prints "PASS name" / "FAIL name: why" / "SKIP name"; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3
fix=testdata/loralib
ref="$REF/loralib"
check="$py $fix/check_loralib.py"
bloom=../shared/corpus/bin/02_bloom-560m-enable_lora-legacy

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }

if [ ! -f "$ref/gpt2.expected.npz" ]; then
    echo "FAIL loralib: no reference data in $ref (run tests/run.sh or testdata/make_loralib_ref.py)"
    exit 1
fi

# case options (the facts a loralib file does not hold)
opts_gpt2="--alpha 32 --enable-lora 1,0,1 --fan-in-fan-out"
opts_roberta_head="--alpha 16"
opts_roberta_lora_only="--alpha 16"
opts_fused_qkv="--alpha 8"

for case in gpt2 roberta_head roberta_lora_only fused_qkv; do
    eval "opts=\$opts_$case"
    base="$fix/${case}_base.safetensors"
    # merge the torch checkpoint: within 1 ulp of the float64 reference
    # shellcheck disable=SC2086
    if ! $LORATOOL merge "$base" "$fix/$case.pt" -o "$tmp/$case.pt.safetensors" $opts >"$tmp/out" 2>&1; then
        fail "merge_$case" "$(tail -1 "$tmp/out")"
        continue
    fi
    if why=$($check ulp "$tmp/$case.pt.safetensors" "$ref/$case.expected.npz" 2>&1); then
        pass "merge_$case ($why)"
    else
        fail "merge_$case" "$why"
    fi
    # the same state dict in safetensors: the same bytes
    # shellcheck disable=SC2086
    if $LORATOOL merge "$base" "$ref/$case.safetensors" -o "$tmp/$case.st.safetensors" $opts >"$tmp/out" 2>&1 &&
        why=$($check same "$tmp/$case.pt.safetensors" "$tmp/$case.st.safetensors" 2>&1); then
        pass "merge_safetensors_$case"
    else
        fail "merge_safetensors_$case" "${why:-$(tail -1 "$tmp/out")}"
    fi
    # convert -> PEFT directory -> merge: the same bytes as the direct merge
    # shellcheck disable=SC2086
    if $LORATOOL convert "$fix/$case.pt" -o "$tmp/$case.peft" --base "$base" $opts >"$tmp/out" 2>&1 &&
        $LORATOOL merge "$base" "$tmp/$case.peft" -o "$tmp/$case.peft.safetensors" >"$tmp/out" 2>&1 &&
        why=$($check same "$tmp/$case.pt.safetensors" "$tmp/$case.peft.safetensors" 2>&1); then
        pass "convert_peft_$case"
    else
        fail "convert_peft_$case" "${why:-$(tail -1 "$tmp/out")}"
    fi
    # audit against the base: clean
    # shellcheck disable=SC2086
    if $LORATOOL audit "$fix/$case.pt" --base "$base" $opts >"$tmp/out" 2>&1 && grep -q "audit: passed" "$tmp/out"; then
        pass "audit_$case"
    else
        fail "audit_$case" "$(tail -1 "$tmp/out")"
    fi
done

# the converted GPT-2 config: merged layers keep their scale (alpha / r)
# through rank_pattern / alpha_pattern; fan_in_fan_out set
if $py - "$tmp/gpt2.peft/adapter_config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
name = "transformer\\.h\\.0\\.attn\\.c_attn"
assert c["fan_in_fan_out"] is True, c
assert c["rank_pattern"][name] == 8 and c["alpha_pattern"][name] == 64, c
assert c["r"] == 4 and c["lora_alpha"] == 32, c
EOF
then pass convert_peft_config; else fail convert_peft_config "unexpected adapter_config.json"; fi

# ConvLoRA (loralib's Conv1d/2d/3d wrappers): the delta
# (B @ A).view(weight.shape) * alpha / r on the base conv weight
for case in conv conv_grouped; do
    if [ "$case" = conv ]; then alpha=4; else alpha=6; fi
    base="$fix/${case}_base.safetensors"
    if ! $LORATOOL merge "$base" "$fix/$case.pt" -o "$tmp/$case.pt.safetensors" --alpha $alpha >"$tmp/out" 2>&1; then
        fail "merge_$case" "$(tail -1 "$tmp/out")"
        continue
    fi
    if why=$($check ulp "$tmp/$case.pt.safetensors" "$ref/$case.expected.npz" 2>&1); then
        pass "merge_$case ($why)"
    else
        fail "merge_$case" "$why"
    fi
    if $LORATOOL merge "$base" "$ref/$case.safetensors" -o "$tmp/$case.st.safetensors" --alpha $alpha \
        >"$tmp/out" 2>&1 && why=$($check same "$tmp/$case.pt.safetensors" "$tmp/$case.st.safetensors" 2>&1); then
        pass "merge_safetensors_$case"
    else
        fail "merge_safetensors_$case" "${why:-$(tail -1 "$tmp/out")}"
    fi
    if $LORATOOL audit "$fix/$case.pt" --base "$base" --alpha $alpha >"$tmp/out" 2>&1 &&
        grep -q "audit: passed" "$tmp/out"; then
        pass "audit_$case"
    else
        fail "audit_$case" "$(tail -1 "$tmp/out")"
    fi
    if $LORATOOL verify "$base" "$fix/$case.pt" --merged "$tmp/$case.pt.safetensors" --alpha $alpha >"$tmp/out" 2>&1 &&
        grep -q "^verified: .* 0 failed" "$tmp/out"; then
        pass "verify_$case"
    else
        fail "verify_$case" "$(tail -1 "$tmp/out")"
    fi
    # the same merge checked with the wrong alpha: verify must see it
    $LORATOOL verify "$base" "$fix/$case.pt" --merged "$tmp/$case.pt.safetensors" --alpha 5 >"$tmp/out" 2>&1
    rc=$?
    if [ "$rc" -eq 1 ] && grep -q "^FAILED" "$tmp/out"; then
        pass "verify_wrong_alpha_$case"
    else
        fail "verify_wrong_alpha_$case" "exit $rc: $(tail -1 "$tmp/out")"
    fi
done
cb="$fix/conv_base.safetensors"
gg="$fix/conv_grouped_base.safetensors"
# groups 1: a PEFT conv LoRA (rank r k^2 for a k x k kernel, alpha scaled
# alike) whose merge is byte for byte the direct one, and whose delta by
# PEFT's own formula is loralib's
if $LORATOOL convert "$fix/conv.pt" -o "$tmp/conv.peft" --base "$cb" --alpha 4 >"$tmp/out" 2>&1 &&
    $LORATOOL merge "$cb" "$tmp/conv.peft" -o "$tmp/conv.peft.safetensors" >"$tmp/out" 2>&1 &&
    why=$($check same "$tmp/conv.pt.safetensors" "$tmp/conv.peft.safetensors" 2>&1); then
    pass convert_peft_conv
else
    fail convert_peft_conv "${why:-$(tail -1 "$tmp/out")}"
fi
if why=$($check peft "$tmp/conv.peft" "$fix/conv.npz" 2>&1); then
    pass convert_peft_conv_delta
else
    fail convert_peft_conv_delta "$why"
fi
if $py - "$tmp/conv.peft" "$fix/conv.npz" <<'EOF'
import json, os, struct, sys
c = json.load(open(os.path.join(sys.argv[1], "adapter_config.json")))
assert c["r"] == 2 and c["lora_alpha"] == 4, c
assert c["rank_pattern"]["conv_in"] == 18 and c["alpha_pattern"]["conv_in"] == 36, c
raw = open(os.path.join(sys.argv[1], "adapter_model.safetensors"), "rb").read()
h = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
assert h["base_model.model.conv_in.lora_A.weight"]["shape"] == [18, 3, 3, 3], h
assert h["base_model.model.conv_in.lora_B.weight"]["shape"] == [8, 18, 1, 1], h
assert h["base_model.model.temporal.mix.lora_B.weight"]["shape"] == [5, 2, 1], h
# groups 1: lora_B is loralib's B read as [out, k r k], lora_A k copies of A on the diagonal
import numpy as np
z = np.load(sys.argv[2])
def tensor(name):
    a, b = h[name]["data_offsets"]
    base = 8 + struct.unpack("<Q", raw[:8])[0]
    return np.frombuffer(raw[base + a:base + b], dtype=np.float32).reshape(h[name]["shape"])
a, b = z["conv_in.lora_A"], z["conv_in.lora_B"]
assert np.array_equal(tensor("base_model.model.conv_in.lora_B.weight").reshape(8, 18), b.reshape(8, 18))
want = np.zeros((18, 27), np.float32)
for t in range(3):
    want[6 * t:6 * t + 6, 9 * t:9 * t + 9] = a
assert np.array_equal(tensor("base_model.model.conv_in.lora_A.weight").reshape(18, 27), want)
EOF
then pass convert_peft_conv_config; else fail convert_peft_conv_config "unexpected PEFT conv layout"; fi
if $LORATOOL verify "$cb" "$tmp/conv.peft" --merged "$tmp/conv.pt.safetensors" >"$tmp/out" 2>&1 &&
    grep -q "^verified: .* 0 failed" "$tmp/out"; then
    pass verify_converted_conv
else
    fail verify_converted_conv "$(tail -1 "$tmp/out")"
fi

# bias='all' of a ConvLoRA model names each conv bias twice ("<m>.bias",
# "<m>.conv.bias": one parameter): merged once, the same bytes
if $LORATOOL merge "$cb" "$ref/conv_bias_all.safetensors" -o "$tmp/conv.all.safetensors" --alpha 4 >"$tmp/out" 2>&1 &&
    why=$($check same "$tmp/conv.pt.safetensors" "$tmp/conv.all.safetensors" 2>&1); then
    pass merge_conv_bias_all
else
    fail merge_conv_bias_all "${why:-$(tail -1 "$tmp/out")}"
fi

# what the file cannot tell is never guessed
expect() {  # name, expected exit code, word in stderr, command...
    name=$1 code=$2 word=$3
    shift 3
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne "$code" ]; then
        fail "$name" "exit $rc, expected $code: $(head -1 "$tmp/err")"
    elif ! grep -q -e "$word" "$tmp/err" "$tmp/out"; then
        fail "$name" "output lacks '$word': $(head -1 "$tmp/err")"
    else
        pass "$name"
    fi
}
gb="$fix/gpt2_base.safetensors"
expect missing_alpha 2 "give --alpha" $LORATOOL merge "$gb" "$fix/gpt2.pt" -o "$tmp/x.safetensors" --enable-lora 1,0,1
expect missing_mask 2 "enable-lora" $LORATOOL merge "$gb" "$fix/gpt2.pt" -o "$tmp/x.safetensors" --alpha 32 --fan-in-fan-out
expect wrong_mask 2 "enable-lora" $LORATOOL merge "$gb" "$fix/gpt2.pt" -o "$tmp/x.safetensors" --alpha 32 --enable-lora 1,1,1
expect bad_mask 2 "enable-lora" $LORATOOL merge "$gb" "$fix/gpt2.pt" -o "$tmp/x.safetensors" --alpha 32 --enable-lora 1,x
expect convert_missing_alpha 2 "give --alpha" $LORATOOL convert "$fix/gpt2.pt" -o "$tmp/x.peft" --base "$gb"
expect convert_config_base 3 "must name the model" $LORATOOL convert "$fix/roberta_head.pt" -o "$tmp/x.peft" --base "$tmp" --alpha 16
expect convert_mixed_layout 3 "one PEFT config cannot hold both" \
    $LORATOOL convert "$fix/gpt2.pt" -o "$tmp/x.peft" --base "$gb" --alpha 32 --enable-lora 1,0,1
expect resize_needs_convert 2 "convert it to a PEFT directory first" $LORATOOL resize "$fix/gpt2.pt" -o "$tmp/x.peft" --rank 2
expect refuse_extra 3 "roberta.pooler.dense.weight" \
    $LORATOOL merge "$fix/roberta_head_base.safetensors" "$ref/refuse_extra.safetensors" -o "$tmp/x.safetensors" --alpha 16
expect refuse_shape 3 "classifier.out_proj.weight" \
    $LORATOOL merge "$fix/roberta_head_base.safetensors" "$ref/refuse_shape.safetensors" -o "$tmp/x.safetensors" --alpha 16
expect convert_grouped_conv 3 "with 2 groups (loralib's grouped ConvLoRA)" \
    $LORATOOL convert "$fix/conv_grouped.pt" -o "$tmp/x.peft" --base "$gg" --alpha 6
expect refuse_conv_view 3 "view of one as the other fails" \
    $LORATOOL merge "$fix/conv_unviewable_base.safetensors" "$fix/conv_unviewable.pt" -o "$tmp/x.safetensors" --alpha 2
expect refuse_conv_shape 3 "lora_B has 16 rows" \
    $LORATOOL merge "$cb" "$ref/refuse_conv_shape.safetensors" -o "$tmp/x.safetensors" --alpha 4
expect audit_conv_shape 3 "lora_B has 16 rows" $LORATOOL audit "$ref/refuse_conv_shape.safetensors" --base "$cb" --alpha 4
expect refuse_conv_alias 3 "tensor 'conv_in.conv.bias' \\[8\\] is no LoRA factor" \
    $LORATOOL merge "$cb" "$ref/refuse_conv_alias.safetensors" -o "$tmp/x.safetensors" --alpha 4
expect convert_conv_missing_base 2 "missing --base" $LORATOOL convert "$fix/conv.pt" -o "$tmp/x.peft" --alpha 4
expect convert_conv_missing_alpha 2 "give --alpha" $LORATOOL convert "$fix/conv.pt" -o "$tmp/x.peft" --base "$cb"
if [ -e "$tmp/x.safetensors" ] || [ -e "$tmp/x.peft" ]; then
    fail refuse_no_output "a refused command left output"
else
    pass refuse_no_output
fi
expect inspect_alpha_unknown 0 "alpha unknown" $LORATOOL inspect "$fix/roberta_head.pt"
expect inspect_merged_without_base 0 "groups need --base" $LORATOOL inspect "$fix/gpt2.pt"
expect inspect_with_base 0 "rank 8  alpha 64  scale 8  linear \[48, 16\]" \
    $LORATOOL inspect "$fix/gpt2.pt" --base "$gb" --alpha 32 --enable-lora 1,0,1 --fan-in-fan-out
expect inspect_embedding 0 "transformer.wte  rank 4  alpha 32  scale 8  embedding \[40, 16\]" \
    $LORATOOL inspect "$fix/gpt2.pt" --base "$gb" --alpha 32 --enable-lora 1,0,1 --fan-in-fan-out
expect inspect_conv 0 "conv_in  rank 18  alpha 36  scale 2  conv \[8, 27\]" \
    $LORATOOL inspect "$fix/conv.pt" --base "$cb" --alpha 4
expect inspect_conv1d 0 "temporal.mix  rank 2  alpha 4  scale 2  conv \[5, 4\]" \
    $LORATOOL inspect "$fix/conv.pt" --base "$cb" --alpha 4
expect inspect_grouped_conv 0 "block.depthwise  rank 18  alpha 108  scale 6  conv \[8, 9\] groups 4" \
    $LORATOOL inspect "$fix/conv_grouped.pt" --base "$gg" --alpha 6
expect inspect_replacements 0 "classifier.out_proj.weight (full)" \
    $LORATOOL inspect "$fix/roberta_head.pt" --base "$fix/roberta_head_base.safetensors"

# the legacy PEFT enable_lora adapter (BLOOM-560m, PEFT <= 0.3)
if [ ! -d "$bloom" ] || [ ! -f "$ref/bloom.expected.npz" ]; then
    echo "SKIP legacy_enable_lora: corpus absent"
else
    expect legacy_audit 0 "audit: passed" $LORATOOL audit "$bloom" --base "$ref/bloom_full_base.safetensors"
    if $LORATOOL merge "$ref/bloom_two_base.safetensors" "$bloom" -o "$tmp/bloom.safetensors" --allow-missing \
        >"$tmp/out" 2>&1 && why=$($check ulp "$tmp/bloom.safetensors" "$ref/bloom.expected.npz" 2>&1); then
        pass "legacy_merge ($why)"
    else
        fail legacy_merge "${why:-$(tail -1 "$tmp/out")}"
    fi
fi
exit $failed
