#!/bin/sh
# The same bytes on every CPU: resize, combine, extract and merge written by
# the dispatching loratool (AVX2 clones of the GEMM, QR, conversion and merge
# kernels where the CPU has AVX2, lib/core.h LT_TARGET_CLONES; merge's
# float32 kernel in its x86-64-v3/v4 builds, lib/merge_fast.c) and by the
# same sources built with -DLT_NO_TARGET_CLONES (BUILD/generic/loratool,
# made by `make test-build`: no clones, baseline merge kernel) must be
# identical.
# Usage, from the repository root:
#
#   LORATOOL=build/loratool sh tests/test_isa.sh
#
# GENERIC (default: the generic/loratool next to LORATOOL) names the second
# binary.  First checks that the dispatching binary holds AVX2 clones, that
# the generic one holds none outside verify's forward pass (not in these
# verbs), and that this CPU runs the AVX2 ones (else SKIP: both binaries
# would run the same code).  Inputs exercise every kernel's vector and tail
# paths: several 256-row TSQR blocks, ranks that are not multiples of 4,
# threaded GEMM, BF16 and F32 factors.
set -u
LORATOOL=${LORATOOL:-build/loratool}
GENERIC=${GENERIC:-$(dirname "$LORATOOL")/generic/loratool}
py=/usr/bin/python3
here=$(cd "$(dirname "$0")/.." && pwd)

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

fail=0
pass() { echo "PASS $1"; }
bad() { echo "FAIL $1: $2"; fail=1; }

if [ ! -x "$GENERIC" ]; then
    echo "FAIL isa:binaries: $GENERIC missing (make test-build builds it)"
    exit 1
fi

# clones per source file, from the symbol table (FILE entries precede each
# file's local symbols)
clones() {
    readelf -sW "$1" | awk '$4 == "FILE" { f = $8 } $8 ~ /\.avx2$/ { print f ":" $8 }' | sort -u
}
clones "$LORATOOL" >"$tmp/clones.main"
clones "$GENERIC" >"$tmp/clones.generic"
if ! grep -q '^linalg_gemm.c:kern_f64.avx2$' "$tmp/clones.main" ||
    ! grep -q '^linalg_qr.c:ts_vtc.avx2$' "$tmp/clones.main" ||
    ! grep -q '^dtype.c:convert_to_f64.avx2$' "$tmp/clones.main"; then
    echo "SKIP isa: $LORATOOL has no AVX2 clones (not x86-64 GCC, or a TSan build)"
    exit 0
fi
left=$(grep -v '^verify_forward.c:' "$tmp/clones.generic")
if [ -n "$left" ]; then
    bad isa:binaries "the generic build still has AVX2 clones: $(echo $left)"
else
    pass isa:binaries
fi
if ! grep -qw avx2 /proc/cpuinfo; then
    echo "SKIP isa:outputs: this CPU has no AVX2, both binaries run the baseline code"
    exit $fail
fi

# Inputs: two adapters (BF16 and F32 factors, ranks 12 and 9, 4 modules of
# 700 x 520, 520 x 1100, 96 x 80 and an embedding) and BF16 base / tuned
# weights for extract and merge.
cat >"$tmp/make.py" <<'EOF'
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[2])
import stwrite
out = sys.argv[1]
rng = np.random.default_rng(2026)
shapes = {"q_proj": (700, 520), "down_proj": (520, 1100), "v_proj": (96, 80)}
def adapter(path, rank, dtype):
    os.makedirs(path)
    t = []
    for mod, (o, i) in shapes.items():
        key = f"base_model.model.model.layers.0.{mod}"
        a = (rng.standard_normal((rank, i)) * 0.05).astype(np.float32)
        b = (rng.standard_normal((o, rank)) * 0.05).astype(np.float32)
        for name, x in ((key + ".lora_A.weight", a), (key + ".lora_B.weight", b)):
            t.append(stwrite.bf16(name, x) if dtype == "BF16" else (name, x))
    stwrite.write(os.path.join(path, "adapter_model.safetensors"), t, {"format": "pt"})
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
                   "target_modules": sorted(shapes)}, f)
adapter(os.path.join(out, "ad1"), 12, "BF16")
adapter(os.path.join(out, "ad2"), 9, "F32")
base, tuned = [], []
for mod, (o, i) in shapes.items():
    name = f"model.layers.0.{mod}.weight"
    w = rng.standard_normal((o, i)).astype(np.float32) * 0.02
    d = (rng.standard_normal((o, 20)) @ rng.standard_normal((20, i))).astype(np.float32) * 1e-3
    d += rng.standard_normal((o, i)).astype(np.float32) * 1e-5
    base.append(stwrite.bf16(name, w))
    tuned.append(stwrite.bf16(name, w + d))
stwrite.write(os.path.join(out, "base.safetensors"), base)
stwrite.write(os.path.join(out, "tuned.safetensors"), tuned)
EOF
if ! $py "$tmp/make.py" "$tmp" "$here/testdata" 2>"$tmp/make.err"; then
    bad isa:inputs "$(head -c 300 "$tmp/make.err")"
    exit 1
fi

# case_ NAME VERB ARGS...: {OUT} in ARGS becomes a fresh path per binary;
# everything written there, and stdout (that path and merge's time aside),
# must be the same bytes.
case_() {
    name=$1
    shift
    for which in main generic; do
        bin=$LORATOOL
        [ $which = generic ] && bin=$GENERIC
        d="$tmp/$name.$which"
        mkdir "$d"
        args=$(printf '%s\n' "$@" | sed "s|{OUT}|$d/out|")
        if ! (IFS='
'
            # shellcheck disable=SC2086
            "$bin" $args) >"$tmp/stdout.$which" 2>"$tmp/stderr.$which"; then
            bad "isa:$name" "$which exited non-zero: $(head -c 300 "$tmp/stderr.$which")"
            return
        fi
        # the path and merge's wall time aside
        sed -e "s|$d|DIR|g" -e 's/"seconds":.*//' "$tmp/stdout.$which" >"$tmp/report.$which"
    done
    a="$tmp/$name.main" b="$tmp/$name.generic"
    (cd "$a" && find . -type f | sort) >"$tmp/files.main"
    (cd "$b" && find . -type f | sort) >"$tmp/files.generic"
    if ! cmp -s "$tmp/files.main" "$tmp/files.generic" || [ ! -s "$tmp/files.main" ]; then
        bad "isa:$name" "different (or no) files written"
        return
    fi
    while read -r f; do
        if ! cmp -s "$a/$f" "$b/$f"; then
            bad "isa:$name" "$f differs: $(cmp "$a/$f" "$b/$f" 2>&1 | head -1)"
            return
        fi
    done <"$tmp/files.main"
    if ! cmp -s "$tmp/report.main" "$tmp/report.generic"; then
        bad "isa:$name" "stdout (--json report) differs"
        return
    fi
    pass "isa:$name"
}

A1=$tmp/ad1 A2=$tmp/ad2 B=$tmp/base.safetensors T=$tmp/tuned.safetensors
case_ resize-rank resize "$A1" -o {OUT} --rank 5 --json
case_ resize-energy resize "$A2" -o {OUT} --energy 0.9 --json
case_ resize-sv-ratio resize "$A1" -o {OUT} --sv-ratio 3 --json
case_ combine-svd combine "$A1" "$A2:-0.7" -o {OUT} --rank 7 --json
case_ combine-concat combine "$A1" "$A2" -o {OUT} --json
case_ combine-ties combine "$A1" "$A2" -o {OUT} --method ties --density 0.4 --rank 6 --json
case_ combine-dare combine "$A1" "$A2" -o {OUT} --method dare --density 0.6 --seed 3 --rank 6 --json
case_ extract-rank extract "$B" "$T" -o {OUT} --rank 10 --targets '.*proj\.weight' --json
case_ extract-energy extract "$B" "$T" -o {OUT} --energy 0.95 --targets '.*proj\.weight' --threads 2 --json
case_ merge-bf16 merge "$B" "$A1" "$A2:0.5" -o {OUT}.safetensors --threads 2 --json
case_ merge-f32 merge "$B" "$A1" -o {OUT}.safetensors --dtype f32 --threads 1 --json
exit $fail
