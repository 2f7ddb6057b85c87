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
#    embeddings, conv, DoRA, lora_bias, AdaLoRA, modules_to_save,
#    trainable tokens, sharded, dtype changes, ...) made by loratool merge
#    verifies with --exact; the same output with one element changed fails.
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

# ---- 2. loratool's own merges of the merge tests' fixtures ----
cat >"$tmp/merge_cases.py" <<'EOF'
import glob, json, os, shlex, shutil, struct, subprocess, sys
loratool, ref, work = sys.argv[1], sys.argv[2], sys.argv[3]
if not os.path.isfile(ref + "/merge/cases.json"):
    print("SKIP verify:merge-fixtures (no %s/merge; run tests/run.sh)" % ref)
    sys.exit(0)


def flip_one_element(path, name):
    """Change the last byte of tensor NAME's data in a safetensors file."""
    data = bytearray(open(path, "rb").read())
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    begin, end = header[name]["data_offsets"]
    data[8 + n + end - 1] ^= 0x01
    open(path, "wb").write(bytes(data))


checked = mutated = 0
failures = []
for spec_path in sorted(glob.glob(ref + "/merge/*/case.json")):
    spec = json.load(open(spec_path))
    case_dir = os.path.dirname(spec_path)
    for k, run in enumerate(spec["runs"]):
        if run["rc"] != 0 or run["output"] is None or "--dry-run" in run["args"]:
            continue
        out_dir = os.path.join(work, "%s-%d" % (spec["name"], k))
        os.makedirs(out_dir)
        args = [a.replace("{CASE}", case_dir).replace("{OUT}", out_dir).replace("{WORK}", work)
                for a in (run["args"] if isinstance(run["args"], list) else shlex.split(run["args"]))]
        p = subprocess.run([loratool, "merge"] + args, capture_output=True, text=True)
        if p.returncode != 0:
            failures.append("%s run %d: merge exit %d: %s" % (spec["name"], k, p.returncode, p.stderr))
            continue
        out = os.path.join(out_dir, "out.safetensors" if run["output"] == "file" else "model")
        # verify takes merge's inputs: BASE ADAPTER[:SCALE]... and the options it shares
        inputs, i = [], 0
        while i < len(args):
            a = args[i]
            if a in ("-o", "--output", "--dtype", "--threads", "--shard-size"):
                i += 2
                continue
            if a.startswith("-"):
                if a == "--allow-missing":
                    inputs.append(a)
                i += 1
                continue
            inputs.append(a)
            i += 1
        v = subprocess.run([loratool, "verify"] + inputs + ["--merged", out, "--exact"], capture_output=True,
                           text=True)
        checked += 1
        if v.returncode != 0:
            failures.append("%s run %d: verify exit %d\n%s%s" % (spec["name"], k, v.returncode, v.stdout[-2000:],
                                                                 v.stderr))
            continue
        merged = [l.split()[2] for l in v.stdout.splitlines() if l.split()[:2] == ["ok", "merged"]]
        if merged and run["output"] == "file":
            flip_one_element(out, merged[0])
            v = subprocess.run([loratool, "verify"] + inputs + ["--merged", out, "--exact"], capture_output=True,
                               text=True)
            mutated += 1
            if v.returncode != 1 or ("FAIL merged    %s" % merged[0]) not in v.stdout:
                failures.append("%s run %d: one changed element of %s: exit %d\n%s" % (
                    spec["name"], k, merged[0], v.returncode, v.stdout[-2000:]))
        shutil.rmtree(out_dir)
if failures:
    print("FAIL verify:merge-fixtures (%d of %d): %s" % (len(failures), checked, "\n".join(failures[:4])))
    sys.exit(1)
print("PASS verify:merge-fixtures (%d merges verified with --exact, %d mutations caught)" % (checked, mutated))
EOF
mkdir -p "$tmp/work"
$py "$tmp/merge_cases.py" "$LORATOOL" "$REF" "$tmp/work" || status=1

exit ${status:-0}
