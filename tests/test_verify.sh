#!/bin/sh
# Tests of `loratool verify` and `loratool diff` (spec/verify.md).
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_verify.sh
#
# 1. The numpy fixtures of testdata/make_verify_ref.py ($REF/verify): correct
#    merges (numpy float64, PEFT's double rounding) verify; each wrong merge
#    fails with exit 1 and a FAIL line naming its tensor (and, where the
#    case says "only", no other tensor); 100 correct merges with different
#    seeds never fail; diff's verdicts and names.
# 2. Every successful merge of the merge tests ($REF/merge: GPT-2 Conv1D,
#    embeddings, DoRA, lora_bias, AdaLoRA, modules_to_save, rsLoRA and
#    patterns, sharded, dtype changes, two adapters, ...) made by loratool
#    merge verifies with --exact; the same output with one element changed
#    fails naming the tensor.
# 3. The same for the merges into GGUF bases ($REF/merge_gguf: PEFT and GGUF
#    LoRA adapters, Q8_0/Q4_0 re-quantized, Q4_K to F16); a Q8_0 tensor
#    whose block scales are 5% off fails.
# 4. A merge converted to GGUF by `loratool convert` verifies against the
#    safetensors base (names, Q/K rows); converted without the Q/K
#    permutation, attn_q and attn_k fail; diff --base agrees.  verify's
#    --json report is byte-identical at --threads 1, 2 and 3.
# 5. diff --json keys, --diffable stability, usage and I/O exit codes.
# 6. verify --adapter: a PEFT -> GGUF conversion (F32, F16, without the Q/K
#    permutation), a combine (exact; wrong weight; truncated, whose
#    rel_error must equal combine's report), modules on one side only.
# Prints "PASS name" or "FAIL name: why" per case; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

if [ ! -f "$REF/verify/cases.json" ]; then
    echo "FAIL verify: no fixtures in $REF/verify (run tests/run.sh or testdata/make_verify_ref.py)"
    exit 1
fi

cat >"$tmp/run_cases.py" <<'EOF'
import json, shlex, subprocess, sys
loratool, ref = sys.argv[1], sys.argv[2]
cases = json.load(open(ref + "/verify/cases.json"))
bad = 0
for case in cases:
    failures = []
    for k, run in enumerate(case["runs"]):
        args = [a.replace("{CASE}", ref + "/verify") for a in shlex.split(run["args"])]
        p = subprocess.run([loratool, case["verb"]] + args, capture_output=True, text=True)
        where = "%s %s" % (case["verb"], run["args"])
        if p.returncode != run["rc"]:
            failures.append("%s: exit %d, want %d\n%s%s" % (where, p.returncode, run["rc"], p.stdout[-3000:],
                                                             p.stderr))
            continue
        if case["verb"] == "verify":
            named = {l.split()[2] for l in p.stdout.splitlines() if l.startswith("FAIL ")}
        else:
            named = {l.split()[1] for l in p.stdout.splitlines()
                     if l.split() and l.split()[0] in ("close", "different", "shape", "only_a", "only_b")}
        want = set(run.get("names", []))
        if not want <= named:
            failures.append("%s: tensors %s not named (named: %s)" % (where, sorted(want - named), sorted(named)))
        elif run.get("only") and named != want:
            failures.append("%s: also named %s" % (where, sorted(named - want)))
    name = "%s:%s" % (case["verb"], case["name"])
    if failures:
        bad += 1
        print("FAIL %s (%d of %d runs): %s" % (name, len(failures), len(case["runs"]), "\n".join(failures[:3])))
    else:
        print("PASS %s (%d runs)" % (name, len(case["runs"])))
sys.exit(1 if bad else 0)
EOF
$py "$tmp/run_cases.py" "$LORATOOL" "$REF" || status=1

# ---- 2, 3. loratool's own merges of the merge tests' fixtures: safetensors
# ($REF/merge) and GGUF bases, quantized Q8_0/Q4_0 included ($REF/merge_gguf) ----
cat >"$tmp/merge_cases.py" <<'EOF'
import glob, json, os, shlex, shutil, struct, subprocess, sys
import numpy as np
loratool, ref, work, testdata = sys.argv[1:5]
sys.path.insert(0, testdata)
import make_merge_gguf_ref as mg


def flip_last_byte(path, name):
    """Change the last byte of tensor NAME's data in a safetensors file."""
    data = bytearray(open(path, "rb").read())
    n = struct.unpack("<Q", data[:8])[0]
    begin, end = json.loads(data[8:8 + n])[name]["data_offsets"]
    data[8 + n + end - 1] ^= 0x01
    open(path, "wb").write(bytes(data))


def scale_q8_0_blocks(path, name, factor):
    """Re-quantize wrongly: every block's d of GGUF tensor NAME times FACTOR."""
    data = bytearray(open(path, "rb").read())
    raw = [t[3] for t in mg.read_gguf(path)[1] if t[0] == name][0]
    at = bytes(data).index(raw)
    d = np.frombuffer(bytes(data[at:at + len(raw)]), dtype=np.uint8).reshape(-1, 34)[:, :2].copy()
    d = (d.view(np.float16).astype(np.float32) * factor).astype(np.float16).view(np.uint8)
    for b in range(d.shape[0]):
        data[at + 34 * b:at + 34 * b + 2] = bytes(d[b])
    open(path, "wb").write(bytes(data))


def verify(inputs, out, *extra):
    return subprocess.run([loratool, "verify"] + inputs + ["--merged", out] + list(extra), capture_output=True,
                          text=True)


def check_fixtures(label, pattern, mutate_what):
    """Merge every successful merge run of the fixtures, verify it with
    --exact, then break one merged tensor and see verify name it."""
    checked = mutated = 0
    failures = []
    for spec_path in sorted(glob.glob(pattern)):
        spec = json.load(open(spec_path))
        case_dir = os.path.dirname(spec_path)
        for k, run in enumerate(spec["runs"]):
            args = run["args"] if isinstance(run["args"], list) else shlex.split(run["args"])
            if args and args[0] == "merge":
                args = args[1:]
            if run["rc"] != 0 or not run.get("output") or "--dry-run" in args:
                continue
            out_dir = os.path.join(work, "%s-%s-%d" % (label, spec["name"], k))
            os.makedirs(out_dir)
            args = [a.replace("{CASE}", case_dir).replace("{OUT}", out_dir).replace("{O%d}" % k, out_dir)
                    .replace("{WORK}", work) for a in args]
            out = {"file": os.path.join(out_dir, "out.safetensors"), "dir": os.path.join(out_dir, "model"),
                   "sharded": os.path.join(out_dir, "model")}.get(run["output"])
            out = out or run["output"].replace("{O%d}" % k, out_dir)
            p = subprocess.run([loratool, "merge"] + args, capture_output=True, text=True)
            if p.returncode != 0:
                failures.append("%s run %d: merge exit %d: %s" % (spec["name"], k, p.returncode, p.stderr))
                continue
            # verify takes merge's inputs (BASE ADAPTER[:SCALE]...) and --allow-missing
            inputs, i = [], 0
            while i < len(args):
                if args[i] in ("-o", "--output", "--dtype", "--threads", "--shard-size"):
                    i += 2
                    continue
                if not args[i].startswith("-") or args[i] == "--allow-missing":
                    inputs.append(args[i])
                i += 1
            v = verify(inputs, out, "--exact")
            checked += 1
            if v.returncode != 0:
                failures.append("%s run %d: verify exit %d\n%s%s" % (spec["name"], k, v.returncode,
                                                                     v.stdout[-2000:], v.stderr))
                continue
            victim = mutate_what(out, v.stdout)
            if victim:
                v = verify(inputs, out, *(["--exact"] if out.endswith(".safetensors") else []))
                mutated += 1
                if v.returncode != 1 or ("FAIL merged    %s" % victim) not in v.stdout:
                    failures.append("%s run %d: broken %s not named: exit %d\n%s" % (
                        spec["name"], k, victim, v.returncode, v.stdout[-2000:]))
            shutil.rmtree(out_dir)
    return checked, mutated, failures


def mutate_safetensors(out, stdout):
    merged = [l.split()[2] for l in stdout.splitlines() if l.split()[:2] == ["ok", "merged"]]
    if not merged or not out.endswith(".safetensors"):
        return None
    flip_last_byte(out, merged[0])
    return merged[0]


def mutate_q8_0(out, stdout):
    q8 = [t[0] for t in mg.read_gguf(out)[1] if t[2] == "Q8_0" and "ok   merged    " + t[0] in stdout]
    if not q8:
        return None
    scale_q8_0_blocks(out, q8[0], 1.05)
    return q8[0]


status = 0
for label, sub, mutate, what in (("merge-fixtures", "merge", mutate_safetensors, "one changed element (--exact)"),
                                 ("merge-gguf-fixtures", "merge_gguf", mutate_q8_0, "Q8_0 re-quantized with d x 1.05")):
    if not os.path.isfile("%s/%s/cases.json" % (ref, sub)):
        print("SKIP verify:%s (no %s/%s; run tests/run.sh)" % (label, ref, sub))
        continue
    checked, mutated, failures = check_fixtures(label, "%s/%s/*/case.json" % (ref, sub), mutate)
    if failures:
        print("FAIL verify:%s (%d of %d): %s" % (label, len(failures), checked, "\n".join(failures[:4])))
        status = 1
    else:
        print("PASS verify:%s (%d merges verified with --exact; %s caught %d times)" % (label, checked, what, mutated))
sys.exit(status)
EOF
mkdir -p "$tmp/work"
$py "$tmp/merge_cases.py" "$LORATOOL" "$REF" "$tmp/work" testdata || status=1

# ---- 4. a safetensors merge converted to GGUF: names and llama's Q/K rows ----
c="$REF/verify/llama_f32"
check() {  # name, expected exit, command...; then the words its stdout must hold
    name=$1 want=$2
    shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "FAIL $name: exit $rc, want $want: $(tail -c 600 "$tmp/out") $(cat "$tmp/err")"
        status=1
        return 1
    fi
    return 0
}
has() {  # name, pattern: stdout of the last check must hold a line matching it
    if ! grep -q -- "$2" "$tmp/out"; then
        echo "FAIL $1: no line matching '$2' in: $(head -c 1500 "$tmp/out")"
        status=1
        return 1
    fi
    return 0
}
# The same --json report at any thread count: odd and even probe counts
# (the row kernels take probes two at a time), a failing merge, and the
# dense path (DoRA, --exact).
diverged=""
for run in llama_f32/good_np llama_f32/bad_twice dora_bf16/good_np plain_bf16/peft; do
    for opts in "" "--probes 3 --exact"; do
        for th in 1 2 3; do
            # shellcheck disable=SC2086
            "$LORATOOL" verify "$REF/verify/${run%/*}/base" "$REF/verify/${run%/*}/ad" \
                --merged "$REF/verify/$run.safetensors" $opts --json --threads $th >"$tmp/t$th" 2>&1
        done
        if ! grep -q '"tensor_list"' "$tmp/t1" || ! cmp -s "$tmp/t1" "$tmp/t2" || ! cmp -s "$tmp/t1" "$tmp/t3"; then
            diverged="$diverged $run${opts:+ ($opts)}"
        fi
    done
done
if [ -z "$diverged" ]; then
    echo "PASS verify:threads-deterministic (8 reports, --threads 1, 2, 3 byte-identical)"
else
    echo "FAIL verify:threads-deterministic: reports differ or are missing for$diverged"
    status=1
fi
if "$LORATOOL" convert "$c/good_np.safetensors" -o "$tmp/good.gguf" --base "$c/base" >/dev/null &&
    "$LORATOOL" convert "$c/good_np.safetensors" -o "$tmp/good16.gguf" --base "$c/base" --outtype f16 >/dev/null &&
    "$LORATOOL" convert "$c/good_np.safetensors" -o "$tmp/noperm.gguf" --base "$c/config_qwen2.json" >/dev/null; then
    check verify:cross-format 0 "$LORATOOL" verify "$c/base" "$c/ad" --merged "$tmp/good.gguf" --exact &&
        has verify:cross-format "^ok   merged    blk.0.attn_q.weight" && echo "PASS verify:cross-format"
    check verify:cross-format-f16 0 "$LORATOOL" verify "$c/base" "$c/ad" --merged "$tmp/good16.gguf" &&
        has verify:cross-format-f16 "4 converted" && echo "PASS verify:cross-format-f16"
    check verify:gguf-without-qk-permutation 1 "$LORATOOL" verify "$c/base" "$c/ad" --merged "$tmp/noperm.gguf" &&
        has verify:gguf-without-qk-permutation "^FAIL merged    blk.0.attn_q.weight" &&
        has verify:gguf-without-qk-permutation "^FAIL merged    blk.0.attn_k.weight" &&
        if [ "$(grep -c '^FAIL ' "$tmp/out")" -eq 2 ]; then
            echo "PASS verify:gguf-without-qk-permutation"
        else
            echo "FAIL verify:gguf-without-qk-permutation: other tensors failed too: $(cat "$tmp/out")"
            status=1
        fi
    check diff:cross-format 0 "$LORATOOL" diff "$c/good_np.safetensors" "$tmp/good.gguf" --base "$c/base" &&
        has diff:cross-format "^12 identical" && echo "PASS diff:cross-format"
    check diff:gguf-without-qk-permutation 1 "$LORATOOL" diff "$c/good_np.safetensors" "$tmp/noperm.gguf" --base "$c/base" &&
        has diff:gguf-without-qk-permutation "^different model.layers.0.self_attn.q_proj.weight -> blk.0.attn_q.weight" &&
        has diff:gguf-without-qk-permutation "^10 identical, 0 close, 2 different" &&
        echo "PASS diff:gguf-without-qk-permutation"
else
    echo "FAIL verify:cross-format: loratool convert failed"
    status=1
fi

# ---- 5. diff: --json, --diffable, dtype changes, usage ----
if check diff:json 1 "$LORATOOL" diff --json "$c/good_np.safetensors" "$c/bad_ulp.safetensors" &&
    $py -c '
import json, sys
d = json.load(open(sys.argv[1]))
t = {e["name"]: e for e in d["tensors"]}
q = t["model.layers.0.self_attn.q_proj.weight"]
assert d["match"] is False and d["counts"]["different"] == 1 and d["counts"]["identical"] == 11, d["counts"]
assert q["status"] == "different" and q["max_ulp"] == 3 and q["beyond_tolerance"] == 1, q
assert t["model.norm.weight"]["status"] == "identical"
' "$tmp/out"; then
    echo "PASS diff:json"
else
    echo "FAIL diff:json: $(head -c 800 "$tmp/out")"
    status=1
fi
"$LORATOOL" diff --diffable "$c/base/model.safetensors" "$c/good_np.safetensors" >"$tmp/d1"
"$LORATOOL" diff --diffable "$c/base/model.safetensors" "$c/good_np.safetensors" >"$tmp/d2"
if cmp -s "$tmp/d1" "$tmp/d2" && [ "$(wc -l <"$tmp/d1")" -eq 13 ] && ! grep -q "$c" "$tmp/d1"; then
    echo "PASS diff:diffable"
else
    echo "FAIL diff:diffable: $(head -c 800 "$tmp/d1")"
    status=1
fi
check diff:dtype-change-only 0 "$LORATOOL" diff "$c/good_np.safetensors" "$tmp/good.gguf" --base "$c/base" &&
    check diff:dtype-change-only 0 "$LORATOOL" diff "$tmp/good.gguf" "$tmp/good.gguf" && echo "PASS diff:dtype-change-only"
check diff:usage 2 "$LORATOOL" diff "$c/good_np.safetensors" && echo "PASS diff:usage"
check verify:usage 2 "$LORATOOL" verify "$c/base" "$c/ad" && echo "PASS verify:usage"
check verify:missing-input 4 "$LORATOOL" verify "$c/base" "$c/ad" --merged "$tmp/nonexistent.safetensors" &&
    echo "PASS verify:missing-input"

# ---- 6. verify --adapter: conversions, combines, resizes ----
a="$c/ad" b="$c/ad2"
if "$LORATOOL" convert "$a" -o "$tmp/ad.gguf" --base "$c/base" >/dev/null &&
    "$LORATOOL" convert "$a" -o "$tmp/ad16.gguf" --base "$c/base" --outtype f16 >/dev/null &&
    "$LORATOOL" convert "$a" -o "$tmp/adnp.gguf" --base "$c/config_qwen2.json" >/dev/null &&
    "$LORATOOL" combine "$a:0.7" "$b:0.3" -o "$tmp/ab" >/dev/null &&
    "$LORATOOL" combine "$a:0.7" "$b:0.3" -o "$tmp/ab2" --rank 2 --json >"$tmp/ab2.json"; then
    check verify-adapter:conversion 0 "$LORATOOL" verify "$a" --adapter "$tmp/ad.gguf" --base "$c/base" &&
        has verify-adapter:conversion "^verified: 5 modules, 0 failed" && echo "PASS verify-adapter:conversion"
    check verify-adapter:conversion-back 0 "$LORATOOL" verify "$tmp/ad.gguf" --adapter "$a" --base "$c/base" &&
        echo "PASS verify-adapter:conversion-back"
    check verify-adapter:conversion-f16 0 "$LORATOOL" verify "$a" --adapter "$tmp/ad16.gguf" --base "$c/base" &&
        echo "PASS verify-adapter:conversion-f16"
    check verify-adapter:without-qk-permutation 1 "$LORATOOL" verify "$a" --adapter "$tmp/adnp.gguf" --base "$c/base" &&
        has verify-adapter:without-qk-permutation "^FAIL blk.0.attn_q.weight" &&
        has verify-adapter:without-qk-permutation "^FAIL blk.0.attn_k.weight" &&
        has verify-adapter:without-qk-permutation "^FAILED: 5 modules, 2 failed" &&
        echo "PASS verify-adapter:without-qk-permutation"
    check verify-adapter:needs-base 2 "$LORATOOL" verify "$a" --adapter "$tmp/ad.gguf" && echo "PASS verify-adapter:needs-base"
    check verify-adapter:combine 0 "$LORATOOL" verify "$a:0.7" "$b:0.3" --adapter "$tmp/ab" &&
        has verify-adapter:combine "^verified: 6 modules" && echo "PASS verify-adapter:combine"
    check verify-adapter:wrong-weight 1 "$LORATOOL" verify "$a:0.7" "$b:0.4" --adapter "$tmp/ab" &&
        has verify-adapter:wrong-weight "^FAIL model.layers.0.self_attn.q_proj.weight" &&
        has verify-adapter:wrong-weight "^ok   model.layers.0.self_attn.k_proj.weight" &&
        echo "PASS verify-adapter:wrong-weight"
    check verify-adapter:truncated 1 "$LORATOOL" verify "$a:0.7" "$b:0.3" --adapter "$tmp/ab2" &&
        check verify-adapter:truncated 0 "$LORATOOL" verify "$a:0.7" "$b:0.3" --adapter "$tmp/ab2" --rtol 1 --json &&
        if $py -c '
import json, sys
want = {m["name"] + ".weight": m["rel_error"] for m in json.load(open(sys.argv[1]))["modules"]}
got = {m["target"]: m["rel_error"] for m in json.load(open(sys.argv[2]))["module_list"]}
assert set(want) == set(got), (sorted(want), sorted(got))
for k in want:
    # combine reports the truncation; the saved F32 factors add ~1e-8
    assert abs(want[k] - got[k]) <= 1e-6 * (1 + want[k]), (k, want[k], got[k])
' "$tmp/ab2.json" "$tmp/out"; then
            echo "PASS verify-adapter:truncated (rel_error equals what combine reported)"
        else
            echo "FAIL verify-adapter:truncated: rel_error differs from combine's report"
            status=1
        fi
    check verify-adapter:one-side-only 1 "$LORATOOL" verify "$a" --adapter "$b" &&
        has verify-adapter:one-side-only "^FAIL model.layers.0.mlp.up_proj.weight .*only in OUT" &&
        has verify-adapter:one-side-only "^FAIL model.layers.0.mlp.down_proj.weight .*only in the inputs" &&
        echo "PASS verify-adapter:one-side-only"
else
    echo "FAIL verify-adapter: convert or combine failed"
    status=1
fi

exit ${status:-0}
