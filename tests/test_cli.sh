#!/bin/sh
# CLI tests for `loratool inspect` and `loratool audit` (spec/cli.md,
# spec/peft.md), run by tests/run.sh from the project root as
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_cli.sh
#
# (and again with LORATOOL=build/asan/loratool). Prints one line per case,
# "PASS name", "FAIL name: why" or "SKIP name: why"; exits 1 if any FAIL.
#
# Expected values never come from loratool: the corpus references are made
# by testdata/make_corpus_ref.py (json + struct + numpy), and the fixtures
# made here are described by the same Python functions. Corpus cases are
# skipped when ../shared/corpus is absent.
set -u
cd "$(dirname "$0")/.." || exit 2
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
PY=/usr/bin/python3
CORPUS=${LORATOOL_TEST_CORPUS:-../shared/corpus}  # override only to test the skip path
DEMO=testdata/demo

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

failures=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $(printf '%s' "$2" | tr '\n' ' ' | cut -c1-600)"; failures=$((failures + 1)); }
skip() { echo "SKIP $1: $2"; }

# run CMD...: stdout -> $tmp/out, stderr -> $tmp/err, status -> $rc
run() { "$@" <"/dev/null" >"$tmp/out" 2>"$tmp/err"; rc=$?; }

# rc_in LIST: is $rc one of the space-separated codes?
rc_in() { for c in $1; do [ "$rc" -eq "$c" ] && return 0; done; return 1; }

# err_line [SUBSTRING...]: stderr is exactly one line, "loratool: ...",
# containing each SUBSTRING; else sets $why.
err_line() {
    n=$(grep -c '' "$tmp/err")
    if [ "$n" -ne 1 ]; then why="stderr has $n lines: $(head -c 300 "$tmp/err")"; return 1; fi
    if ! head -n 1 "$tmp/err" | grep -q '^loratool: '; then why="stderr is not 'loratool: ...': $(cat "$tmp/err")"; return 1; fi
    for s in "$@"; do
        if ! grep -qF -- "$s" "$tmp/err"; then why="stderr lacks '$s': $(cat "$tmp/err")"; return 1; fi
    done
    return 0
}

# expect_error NAME CODES [SUBSTRING...] -- CMD...: exit in CODES, one-line error.
expect_error() {
    name=$1 codes=$2
    shift 2
    subs=""
    set -- "$@"
    # collect substrings up to "--"
    nsubs=0
    for a in "$@"; do
        [ "$a" = "--" ] && break
        nsubs=$((nsubs + 1))
    done
    i=0
    while [ $i -lt $nsubs ]; do
        subs="$subs$1
"
        shift
        i=$((i + 1))
    done
    shift # the "--"
    run "$@"
    if ! rc_in "$codes"; then
        fail "$name" "exit $rc (expected $codes) from '$*'; stderr: $(head -c 300 "$tmp/err")"
        return
    fi
    old_ifs=$IFS
    IFS='
'
    # shellcheck disable=SC2086
    set -- $subs
    IFS=$old_ifs
    if err_line "$@"; then pass "$name"; else fail "$name" "$why"; fi
}

# Python helpers: comparisons and fixture makers (numpy), independent of
# loratool; the reference functions come from testdata/make_corpus_ref.py.
cat >"$tmp/check.py" <<'PYEOF'
import json, math, os, re, struct, subprocess, sys, time
import numpy as np
sys.path.insert(0, "testdata")
import make_corpus_ref as ref

def load(path):
    with open(path) as f:
        return json.load(f)

def close(a, b, rel=1e-12):
    if not isinstance(a, (int, float)) or isinstance(a, bool):
        return False
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))

def cmp_counts(act, exp, problems, fmt=None):
    if fmt and act.get("format") != fmt:
        problems.append(f"format {act.get('format')!r} != {fmt!r}")
    for key in ("tensors", "parameters", "bytes"):
        if act.get(key) != exp[key]:
            problems.append(f"{key} {act.get(key)} != {exp[key]}")
    if act.get("dtypes") != exp["dtypes"]:
        problems.append(f"dtypes {act.get('dtypes')} != {exp['dtypes']}")
    if "metadata" in exp and act.get("metadata") != exp["metadata"]:
        problems.append(f"metadata {act.get('metadata')} != {exp['metadata']}")

def cmp_adapter(act, exp, problems, given_path=None):
    cmp_counts(act, exp, problems, "peft")
    if given_path is not None and act.get("path") != given_path:
        problems.append(f"path {act.get('path')!r} != {given_path!r}")
    a = act.get("adapter")
    if not isinstance(a, dict):
        problems.append("no adapter object")
        return
    if a.get("peft_type") != exp["peft_type"]:
        problems.append(f"peft_type {a.get('peft_type')} != {exp['peft_type']}")
    for key in ("modules", "lora_parameters", "replacement_parameters", "trainable_parameters", "rank"):
        if a.get(key) != exp[key]:
            problems.append(f"adapter.{key} {a.get(key)} != {exp[key]}")
    mods = {m.get("name"): m for m in a.get("module_list") or []}
    want = {m["name"]: m for m in exp["module_list"]}
    if set(mods) != set(want):
        problems.append(f"module names differ: extra {sorted(set(mods) - set(want))[:3]}, "
                        f"missing {sorted(set(want) - set(mods))[:3]}")
    for name in sorted(set(mods) & set(want)):
        m, e = mods[name], want[name]
        if e["rank"] != e["config_rank"]:
            problems.append(f"reference: {name} A rows {e['rank']} != configured rank {e['config_rank']}")
        for key in ("rank", "shape", "parameters", "target"):
            if m.get(key) != e[key]:
                problems.append(f"{name}: {key} {m.get(key)} != {e[key]}")
        for key in ("alpha", "scale"):
            if not close(m.get(key), e[key]):
                problems.append(f"{name}: {key} {m.get(key)!r} != {e[key]!r}")
        if len(problems) > 6:
            break

def finish(problems):
    if problems:
        print("; ".join(problems[:6]) + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else ""))
        sys.exit(1)
    sys.exit(0)

def numre(n):
    """regex for integer n, with or without thousands separators"""
    s = str(n)
    groups = []
    while s:
        groups.insert(0, s[-3:])
        s = s[:-3]
    return r"(?<![\d.,])" + r"[,_' ]?".join(groups) + r"(?![\d])"

# ---- safetensors writer (written here from the format description) ----
DT = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("float64"): "F64",
      np.dtype("int32"): "I32", np.dtype("uint8"): "U8"}

def write_st(path, tensors, metadata=None, pad_to=None):
    """tensors: (name, array) or (name, dtype, shape, nbytes) for data left as
    a hole (the file is extended with truncate, sparse)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for t in tensors:
        if len(t) == 2:
            name, arr = t
            arr = np.ascontiguousarray(arr)
            raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
            header[name] = {"dtype": DT[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
            blobs.append(raw)
            off += len(raw)
        else:
            name, dtype, shape, nbytes = t
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nbytes]}
            blobs.append(None)
            off += nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            if b is not None:
                f.write(b)
        f.truncate(8 + len(text) + off)

def bf16_raw(arr):
    u = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
    return (u >> 16).astype(np.uint16)

RNG = np.random.default_rng(7)

def make_sharded(folder):
    os.makedirs(folder, exist_ok=True)
    s1 = [("model.embed.weight", RNG.standard_normal((32, 8)).astype(np.float32)),
          ("model.layers.0.w", RNG.standard_normal((8, 8)).astype(np.float16))]
    s2 = [("model.layers.1.w", RNG.standard_normal((8, 8)).astype(np.float32)),
          ("model.layers.1.b", np.arange(8, dtype=np.int32)),
          ("lm_head.weight", RNG.standard_normal((32, 8)).astype(np.float64))]
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    write_st(os.path.join(folder, names[0]), s1, {"format": "pt"})
    write_st(os.path.join(folder, names[1]), s2, {"format": "pt"})
    weight_map = {n: names[0] for n, _ in s1}
    weight_map.update({n: names[1] for n, _ in s2})
    total = sum(a.nbytes for _, a in s1 + s2)
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)

DEMO_SHAPES = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (32, 64), "self_attn.v_proj": (32, 64),
               "self_attn.o_proj": (64, 64), "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64),
               "mlp.down_proj": (64, 128)}

def make_wrong_base(folder, demo_base):
    """demo base with every projection reshaped to [out + 16, in + 8]
    (fits neither [out, in] nor [in, out]); other tensors unchanged."""
    os.makedirs(folder, exist_ok=True)
    header, _ = ref.read_header(os.path.join(demo_base, "model.safetensors"))
    tensors = []
    for name in sorted(header):
        shape = header[name]["shape"]
        if name.endswith("_proj.weight"):
            shape = [shape[0] + 16, shape[1] + 8]
        tensors.append((name, np.zeros(shape, dtype=np.float32)))
    write_st(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})

def demo_like_adapter(folder, rank_of=lambda name: 4, b_rank_of=None, config=None, extra=()):
    os.makedirs(folder, exist_ok=True)
    tensors = []
    for layer in range(2):
        for mod, (o, i) in DEMO_SHAPES.items():
            name = f"model.layers.{layer}.{mod}"
            r = rank_of(name)
            rb = b_rank_of(name) if b_rank_of else r
            key = "base_model.model." + name
            tensors.append((key + ".lora_A.weight", RNG.standard_normal((r, i)).astype(np.float32)))
            tensors.append((key + ".lora_B.weight", RNG.standard_normal((o, rb)).astype(np.float32)))
    tensors += list(extra)
    tensors.sort(key=lambda t: t[0])
    write_st(os.path.join(folder, "adapter_model.safetensors"), tensors, {"format": "pt"})
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "demo/tiny-llama",
           "r": 4, "lora_alpha": 8, "bias": "none", "fan_in_fan_out": False,
           "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    cfg.update(config or {})
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

def make_patterns(folder):
    """rank_pattern + alpha_pattern + rsLoRA + DoRA + an embedding module +
    a replacement head, ranks chosen by Python's re as PEFT does."""
    config = {"r": 4, "lora_alpha": 8, "use_rslora": True, "use_dora": True,
              "rank_pattern": {r"layers\.1\.self_attn\.q_proj": 8, "down_proj": 2, r"mlp\.(gate|up)_proj": 6},
              "alpha_pattern": {r"model\.layers\.0\..*_proj": 16, "v_proj": 3.5, "embed_tokens": 5},
              "target_modules": r".*\.(q|k|v|o|gate|up|down)_proj|model\.embed_tokens",
              "modules_to_save": ["lm_head"]}
    rank_of = lambda name: ref.pattern_value(config["rank_pattern"], name, config["r"])
    extra = []
    for layer in range(2):
        for mod, (o, i) in DEMO_SHAPES.items():
            extra.append((f"base_model.model.model.layers.{layer}.{mod}.lora_magnitude_vector",
                          np.ones(o, dtype=np.float32)))
    re_ = rank_of("model.embed_tokens")
    extra.append(("base_model.model.model.embed_tokens.lora_embedding_A", RNG.standard_normal((re_, 256)).astype(np.float32)))
    extra.append(("base_model.model.model.embed_tokens.lora_embedding_B", RNG.standard_normal((64, re_)).astype(np.float32)))
    extra.append(("base_model.model.lm_head.weight", RNG.standard_normal((256, 64)).astype(np.float32)))
    demo_like_adapter(folder, rank_of=rank_of, config=config, extra=extra)

def make_sparse(path, nbytes):
    write_st(path, [("big", "U8", [nbytes], nbytes)], {"format": "pt"})

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    problems = []
    if cmd == "list":  # KIND EXPECTED -> "index path" lines
        for i, e in enumerate(load(args[1])[args[0]]):
            print(i, e["path"])
    elif cmd == "corpus_adapter":  # EXPECTED INDEX OUT.json
        exp = load(args[0])["adapters"][int(args[1])]
        cmp_adapter(load(args[2]), exp, problems)
        finish(problems)
    elif cmd == "corpus_model":  # EXPECTED INDEX OUT.json [PATH]
        exp = load(args[0])["models"][int(args[1])]
        act = load(args[2])
        cmp_counts(act, exp, problems, "safetensors")
        if len(args) > 3 and act.get("path") != args[3]:
            problems.append(f"path {act.get('path')!r} != {args[3]!r}")
        finish(problems)
    elif cmd == "adapter":  # DIR OUT.json: compare with the reference of DIR
        cmp_adapter(load(args[1]), ref.describe_adapter(args[0]), problems)
        finish(problems)
    elif cmd == "safetensors":  # FILE OUT.json
        cmp_counts(load(args[1]), ref.describe_safetensors(args[0]), problems, "safetensors")
        finish(problems)
    elif cmd == "sharded":  # INDEX OUT.json
        exp, act = ref.describe_sharded(args[0]), load(args[1])
        del exp["metadata"]  # which shard's metadata a sharded source shows is not specified
        cmp_counts(act, exp, problems, "safetensors-sharded")
        if not isinstance(act.get("files"), list) or len(act["files"]) != exp["files"]:
            problems.append(f"files {act.get('files')} (expected {exp['files']} shard paths)")
        finish(problems)
    elif cmd == "percent":  # ADAPTER BASEFILE OUT.json
        a, b, act = ref.describe_adapter(args[0]), ref.describe_safetensors(args[1]), load(args[2])
        t = a["trainable_parameters"]
        want = 100.0 * t / (b["parameters"] + t)
        if not close(act.get("trainable_percent"), want, 1e-9):
            problems.append(f"trainable_percent {act.get('trainable_percent')} != {want}")
        base = act.get("base") or {}
        if base.get("parameters") != b["parameters"]:
            problems.append(f"base.parameters {base.get('parameters')} != {b['parameters']}")
        cmp_adapter(act, a, problems)
        finish(problems)
    elif cmd == "path_is":  # OUT.json PATH [BASEPATH]: "the path as given"
        act = load(args[0])
        if act.get("path") != args[1]:
            problems.append(f"path {act.get('path')!r}, given {args[1]!r}")
        if len(args) > 2 and (act.get("base") or {}).get("path") != args[2]:
            problems.append(f"base.path {(act.get('base') or {}).get('path')!r}, given {args[2]!r}")
        finish(problems)
    elif cmd == "audit_json":  # OUT.json PASSED(true|false) [SUBSTRING...]: each in some violation
        act = load(args[0])
        want = args[1] == "true"
        if act.get("passed") is not want:
            problems.append(f"passed is {act.get('passed')!r}, expected {want}")
        v = act.get("violations")
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            problems.append(f"violations is not an array of strings: {v!r}")
        elif want and v:
            problems.append(f"violations not empty: {v}")
        elif not want and not v:
            problems.append("violations is empty")
        for s in args[2:]:
            if not any(s in x for x in v or []):
                problems.append(f"no violation mentions {s!r}: {v}")
        if act.get("format") != "peft" or "adapter" not in act:
            problems.append("audit --json lacks inspect's keys (format, adapter)")
        finish(problems)
    elif cmd == "shape_violations":  # OUT.json ADAPTER: every projection module listed with both shapes
        act = load(args[0])
        v = act.get("violations") or []
        shape = lambda o, i: rf"\[?\s*{o}\s*[,x]\s*{i}\s*\]?"
        for layer in range(2):
            for mod, (o, i) in DEMO_SHAPES.items():
                name = f"model.layers.{layer}.{mod}"
                hits = [x for x in v if re.search(re.escape(name) + r"(?![\w.])", x)]
                if not hits:
                    problems.append(f"no violation names {name}")
                elif not any(re.search(shape(o, i), x) and re.search(shape(o + 16, i + 8), x) for x in hits):
                    problems.append(f"violation for {name} lacks [{o}, {i}] or [{o + 16}, {i + 8}]: {hits[0]!r}")
        finish(problems)
    elif cmd == "violation_lines":  # OUT.txt OUT.json: a "violation:" line per JSON violation
        text = open(args[0]).read()
        n = sum(1 for line in text.splitlines() if "violation:" in line)
        v = load(args[1]).get("violations") or []
        if len(v) < 2:
            problems.append(f"--json lists {len(v)} violations for two failed limits")
        for x in v:
            if not any("violation:" in line and x in line for line in text.splitlines()):
                problems.append(f"no 'violation:' line with {x!r}")
        if not re.search(r"^\s*audit:\s+FAILED\s*$", text, re.M):
            problems.append("no 'audit: FAILED' line")
        if n != len(v):
            problems.append(f"{n} 'violation:' lines, --json lists {len(v)}")
        finish(problems)
    elif cmd == "text_adapter":  # OUT.txt ADAPTER [BASEFILE]: inspect's text output
        text = open(args[0]).read()
        lines = text.splitlines()
        a = ref.describe_adapter(args[1])
        cfg = load(os.path.join(args[1], "adapter_config.json"))
        def need(desc, pattern, where=None):
            if not any(re.search(pattern, l) for l in (where or lines)):
                problems.append(f"no line with {desc}")
        need("the path", re.escape(args[1]))
        need("format peft", r"\bpeft\b")
        need("PEFT type LORA", r"\bLORA\b")
        for dt, n in a["dtypes"].items():
            need(f"{n} {dt} tensors", rf"{numre(a['tensors'])}.*\b{dt}\b.*{numre(n)}|{numre(n)}.*\b{dt}\b")
        need(f"{a['parameters']} parameters", r"(?i)param.*" + numre(a["parameters"]))
        need(f"{a['bytes']} bytes", r"(?i)bytes.*" + numre(a["bytes"]))
        need("metadata format = pt", r"\bformat\b.*\bpt\b")
        need("the base model name", re.escape(cfg["base_model_name_or_path"]))
        for t in cfg["target_modules"]:
            need(f"target {t}", rf"\b{t}\b")
        need(f"{a['modules']} LoRA modules", numre(a["modules"]) + r".*(?i:modules)|(?i:modules).*" + numre(a["modules"]))
        need(f"trainable {a['trainable_parameters']}", r"(?i)trainable.*" + numre(a["trainable_parameters"]))
        # grouped modules: one line per projection with '*' for the layer
        for mod, (o, i) in DEMO_SHAPES.items():
            group = "model.layers.*." + mod
            m = a["module_list"][0]
            need(f"group {group} with rank {m['rank']}, alpha {m['alpha']:g}, scale {m['scale']:g}",
                 re.escape(group) + rf"(?![\w.]).*\b{m['rank']}\b.*\b{m['alpha']:g}\b.*\b{m['scale']:g}\b")
            for l in lines:
                if re.search(r"model\.layers\.\d+\." + re.escape(mod) + r"(?![\w.])", l):
                    problems.append(f"ungrouped module line: {l.strip()!r}")
                    break
        if len(args) > 2:
            b = ref.describe_safetensors(args[2])
            t = a["trainable_parameters"]
            pct = 100.0 * t / (b["parameters"] + t)
            need(f"base parameters {b['parameters']}", numre(b["parameters"]))
            nums = [float(x) for l in lines if "%" in l for x in re.findall(r"\d+\.\d+|\d+", l)]
            if not any(abs(x - pct) <= 1e-3 * pct for x in nums):
                problems.append(f"no trainable % near {pct:.6f} on a line with '%'")
        finish(problems)
    elif cmd == "text_safetensors":  # OUT.txt FILE
        text = open(args[0]).read()
        e = ref.describe_safetensors(args[1])
        for desc, pat in (("the path", re.escape(args[1])), ("format safetensors", r"\bsafetensors\b"),
                          ("parameters", r"(?i)param.*" + numre(e["parameters"])),
                          ("bytes", r"(?i)bytes.*" + numre(e["bytes"]))):
            if not re.search(pat, text):
                problems.append(f"no {desc}")
        for dt, n in e["dtypes"].items():
            if not re.search(rf"\b{dt}\b\D*{numre(n)}|{numre(n)}\D*\b{dt}\b", text):
                problems.append(f"no count {n} of {dt}")
        finish(problems)
    elif cmd == "timed":  # LIMIT OUT CMD...: run, print "rc seconds"
        t0 = time.monotonic()
        with open(args[1], "wb") as out, open(args[1] + ".err", "wb") as err:
            rc = subprocess.run(args[2:], stdout=out, stderr=err).returncode
        print(rc, f"{time.monotonic() - t0:.3f}")
    elif cmd == "bytes_is":  # OUT.json N
        act = load(args[0])
        n = int(args[1])
        if act.get("bytes") != n or act.get("tensors") != 1 or act.get("parameters") != n:
            problems.append(f"tensors {act.get('tensors')} parameters {act.get('parameters')} bytes {act.get('bytes')}, expected 1, {n}, {n}")
        finish(problems)
    elif cmd == "make_sharded":
        make_sharded(args[0])
    elif cmd == "make_wrong_base":
        make_wrong_base(args[0], args[1])
    elif cmd == "make_patterns":
        make_patterns(args[0])
    elif cmd == "make_rank_mismatch":  # lora_B of layers.1.v_proj has rank 3, lora_A 4
        demo_like_adapter(args[0], b_rank_of=lambda n: 3 if n == "model.layers.1.self_attn.v_proj" else 4)
    elif cmd == "make_demo_copy":  # DEMO_ADAPTER DIR: same weights, config replaced by ARG
        demo_like_adapter(args[0])
    elif cmd == "make_sparse":
        make_sparse(args[0], int(args[1]))
    elif cmd == "truncate":  # SRC DST HOW: short8 | header | data
        data = open(args[0], "rb").read()
        (n,) = struct.unpack("<Q", data[:8])
        cut = {"short8": 5, "header": 8 + n // 2, "data": len(data) - 100}[args[2]]
        with open(args[1], "wb") as f:
            f.write(data[:cut])
    else:
        sys.exit(f"check.py: unknown command {cmd}")

main()
PYEOF
check() { "$PY" "$tmp/check.py" "$@"; }

if [ ! -x "$LORATOOL" ]; then
    fail "setup" "$LORATOOL is not an executable"
    exit 1
fi

# ---------------------------------------------------------------- (a) corpus
expected=$REF/corpus/expected.json
have_corpus=0
if [ -d "$CORPUS" ]; then
    have_corpus=1
    if [ ! -f "$expected" ]; then  # not made by tests/run.sh: make it here
        "$PY" testdata/make_corpus_ref.py "$tmp/ref" "$CORPUS" >/dev/null 2>&1 || fail "corpus-reference" "make_corpus_ref.py failed"
        expected=$tmp/ref/expected.json
    fi
fi

if [ $have_corpus -eq 1 ] && [ -f "$expected" ]; then
    check list adapters "$expected" >"$tmp/list"
    [ -s "$tmp/list" ] || fail "corpus-adapters" "the reference lists no adapters"
    while read -r i dir; do
        name=$(basename "$dir")
        run "$LORATOOL" inspect "$dir" --json
        if [ "$rc" -ne 0 ]; then
            fail "inspect-corpus:$name" "exit $rc: $(head -c 300 "$tmp/err")"
        elif msg=$(check corpus_adapter "$expected" "$i" "$tmp/out" 2>&1); then
            pass "inspect-corpus:$name"
        else
            fail "inspect-corpus:$name" "$msg"
        fi
        run "$LORATOOL" audit "$dir"
        if [ "$rc" -ne 0 ]; then
            fail "audit-corpus:$name" "exit $rc: $(head -c 300 "$tmp/err")"
        else
            pass "audit-corpus:$name"
        fi
        run "$LORATOOL" audit "$dir" --json
        if [ "$rc" -ne 0 ]; then
            fail "audit-json-corpus:$name" "exit $rc: $(head -c 300 "$tmp/err")"
        elif msg=$(check corpus_adapter "$expected" "$i" "$tmp/out" 2>&1 && check audit_json "$tmp/out" true 2>&1); then
            pass "audit-json-corpus:$name"
        else
            fail "audit-json-corpus:$name" "$msg"
        fi
    done <"$tmp/list"

    check list models "$expected" >"$tmp/list"
    [ -s "$tmp/list" ] || fail "corpus-models" "the reference lists no models"
    while read -r i file; do
        name=$(basename "$(dirname "$file")")/$(basename "$file")
        run "$LORATOOL" inspect "$file" --json
        if [ "$rc" -ne 0 ]; then
            fail "inspect-model:$name" "exit $rc: $(head -c 300 "$tmp/err")"
        elif msg=$(check corpus_model "$expected" "$i" "$tmp/out" "$file" 2>&1); then
            pass "inspect-model:$name"
        else
            fail "inspect-model:$name" "$msg"
        fi
        if [ "$(basename "$file")" = model.safetensors ]; then
            # a directory holding model.safetensors is that file
            run "$LORATOOL" inspect "$(dirname "$file")" --json
            if [ "$rc" -ne 0 ]; then
                fail "inspect-model-dir:$name" "exit $rc: $(head -c 300 "$tmp/err")"
            elif msg=$(check corpus_model "$expected" "$i" "$tmp/out" 2>&1); then
                pass "inspect-model-dir:$name"
            else
                fail "inspect-model-dir:$name" "$msg"
            fi
        fi
    done <"$tmp/list"
else
    skip "corpus-adapters" "$CORPUS is absent"
    skip "corpus-models" "$CORPUS is absent"
fi

# ------------------------------------------- (b) refused adapter types, configs
if [ $have_corpus -eq 1 ]; then
    pt=$CORPUS/bin/03_gpt2-prompt-tuning
    expect_error "prompt-tuning-inspect" 3 PROMPT_TUNING -- "$LORATOOL" inspect "$pt"
    expect_error "prompt-tuning-audit" 3 PROMPT_TUNING -- "$LORATOOL" audit "$pt"
    # legacy adapter_model.bin (torch zip + pickle) LoRA adapters: counts equal
    # those of Python's own unpickler run with stand-ins for torch's rebuild
    # functions (no torch needed, nothing of ours involved)
    for d in "$CORPUS"/bin/*/; do
        d=${d%/}
        [ "$d" = "$pt" ] && continue
        run "$LORATOOL" inspect "$d" --json
        if [ "$rc" -ne 0 ]; then
            fail "bin-inspect:$(basename "$d")" "exit $rc: $(head -c 300 "$tmp/err")"
            continue
        fi
        if msg=$($PY - "$d/adapter_model.bin" "$tmp/out" <<'PYBIN' 2>&1
import json, pickle, sys, zipfile
path, out = sys.argv[1], sys.argv[2]
class Storage:
    def __init__(self, *a): pass
class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, size, *rest: tuple(size)
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return Storage
        raise pickle.UnpicklingError("global %s.%s" % (module, name))
    def persistent_load(self, pid):
        return pid
with zipfile.ZipFile(path) as z:
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"][0]
    state = Unpickler(__import__("io").BytesIO(z.read(pkl))).load()
params = {k: 1 for k in state}
for k, shape in state.items():
    for dim in shape:
        params[k] *= dim
lora = {k: v for k, v in params.items() if ".lora_" in k}
modules = {k.split(".lora_")[0] for k in lora}
got = json.load(open(out))
a = got["adapter"]
want = {"tensors": len(state), "parameters": sum(params.values()), "modules": len(modules),
        "lora_parameters": sum(lora.values()), "replacement_parameters": sum(params.values()) - sum(lora.values())}
have = {"tensors": got["tensors"], "parameters": got["parameters"], "modules": a["modules"],
        "lora_parameters": a["lora_parameters"], "replacement_parameters": a["replacement_parameters"]}
if have != want:
    sys.exit("loratool %s, python %s" % (have, want))
PYBIN
        ); then
            pass "bin-inspect:$(basename "$d")"
        else
            fail "bin-inspect:$(basename "$d")" "$msg"
        fi
    done
    for f in "$CORPUS"/other_formats/lycoris_kohya_lokr/*.safetensors; do
        [ -f "$f" ] || continue
        expect_error "lokr-audit:$(basename "$f")" 3 LOKR -- "$LORATOOL" audit "$f"
        # it is still a valid safetensors file for inspect
        run "$LORATOOL" inspect "$f" --json
        if [ "$rc" -ne 0 ]; then
            fail "lokr-inspect:$(basename "$f")" "exit $rc: $(head -c 300 "$tmp/err")"
        elif msg=$(check safetensors "$f" "$tmp/out" 2>&1); then
            pass "lokr-inspect:$(basename "$f")"
        else
            fail "lokr-inspect:$(basename "$f")" "$msg"
        fi
    done
    find "$CORPUS/configs" -type f -name '*adapter_config.json' | sort >"$tmp/configs"
    [ -s "$tmp/configs" ] || fail "configs" "no configs found under $CORPUS/configs"
    mkdir -p "$tmp/cfg"
    while IFS= read -r cfg; do
        cp "$cfg" "$tmp/cfg/adapter_config.json"
        name=config-without-weights:${cfg#"$CORPUS"/configs/}
        run "$LORATOOL" inspect "$tmp/cfg"
        if [ "$rc" -ne 3 ] && [ "$rc" -ne 4 ]; then
            fail "$name" "exit $rc (expected 3 or 4); stderr: $(head -c 300 "$tmp/err")"
        elif err_line; then
            pass "$name"
        else
            fail "$name" "$why"
        fi
    done <"$tmp/configs"
else
    skip "refused-types" "$CORPUS is absent"
    skip "configs" "$CORPUS is absent"
fi

# -------------------------------------------------------------- (c) demo data
adapter=$DEMO/adapter
base=$DEMO/base
basefile=$DEMO/base/model.safetensors

run "$LORATOOL" inspect "$adapter"
if [ "$rc" -ne 0 ]; then
    fail "demo-inspect-text" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check text_adapter "$tmp/out" "$adapter" 2>&1); then
    pass "demo-inspect-text"
else
    fail "demo-inspect-text" "$msg"
fi

run "$LORATOOL" inspect "$adapter" --base "$base"
if [ "$rc" -ne 0 ]; then
    fail "demo-inspect-text-base" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check text_adapter "$tmp/out" "$adapter" "$basefile" 2>&1); then
    pass "demo-inspect-text-base"
else
    fail "demo-inspect-text-base" "$msg"
fi

run "$LORATOOL" inspect "$basefile"
if [ "$rc" -ne 0 ]; then
    fail "demo-inspect-base-text" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check text_safetensors "$tmp/out" "$basefile" 2>&1); then
    pass "demo-inspect-base-text"
else
    fail "demo-inspect-base-text" "$msg"
fi

run "$LORATOOL" inspect "$adapter" --json
if [ "$rc" -ne 0 ]; then
    fail "demo-inspect-json" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check adapter "$adapter" "$tmp/out" 2>&1); then
    pass "demo-inspect-json"
else
    fail "demo-inspect-json" "$msg"
fi

for b in "$base" "$basefile"; do
    run "$LORATOOL" inspect "$adapter" --base "$b" --json
    if [ "$rc" -ne 0 ]; then
        fail "demo-trainable-percent:$b" "exit $rc: $(head -c 300 "$tmp/err")"
    elif msg=$(check percent "$adapter" "$basefile" "$tmp/out" 2>&1); then
        pass "demo-trainable-percent:$b"
    else
        fail "demo-trainable-percent:$b" "$msg"
    fi
done

# spec/cli.md: "path" is the path as given (also for adapter directories)
for p in "$adapter" "$DEMO/adapter/" "$basefile" "$base"; do
    run "$LORATOOL" inspect "$p" --base "$base" --json
    if [ "$rc" -ne 0 ]; then
        fail "json-path-as-given:$p" "exit $rc: $(head -c 300 "$tmp/err")"
    elif msg=$(check path_is "$tmp/out" "$p" "$base" 2>&1); then
        pass "json-path-as-given:$p"
    else
        fail "json-path-as-given:$p" "$msg"
    fi
done

run "$LORATOOL" inspect "$base" --json
if [ "$rc" -ne 0 ]; then
    fail "demo-inspect-base-dir" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check safetensors "$basefile" "$tmp/out" 2>&1); then
    pass "demo-inspect-base-dir"
else
    fail "demo-inspect-base-dir" "$msg"
fi

# audit_case NAME EXPECTED_RC [STDOUT_SUBSTRING...] -- ARGS...
audit_case() {
    name=$1 want=$2
    shift 2
    subs=""
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        subs="$subs$1
"
        shift
    done
    shift
    run "$LORATOOL" audit "$@"
    if [ "$rc" -ne "$want" ]; then
        fail "$name" "exit $rc (expected $want) from 'audit $*'; stdout: $(tail -n 3 "$tmp/out"); stderr: $(head -c 300 "$tmp/err")"
        return
    fi
    missing=""
    old_ifs=$IFS
    IFS='
'
    for s in $subs; do
        grep -qF -- "$s" "$tmp/out" || missing="$missing '$s'"
    done
    IFS=$old_ifs
    if [ -n "$missing" ]; then
        fail "$name" "stdout lacks$missing: $(tail -n 4 "$tmp/out")"
    else
        pass "$name"
    fi
}

audit_case "audit-generous" 0 passed -- "$adapter" --base "$base" --max-params 1M --max-rank 64 \
    --max-percent 50 --require-targets q_proj,v_proj,down_proj,self_attn.o_proj
audit_case "audit-no-limits" 0 passed -- "$adapter"
audit_case "audit-max-params-1k" 1 "violation:" -- "$adapter" --max-params 1k
audit_case "audit-max-rank-2" 1 "violation:" model.layers.0.self_attn.q_proj -- "$adapter" --max-rank 2
audit_case "audit-max-percent" 1 "violation:" -- "$adapter" --base "$base" --max-percent 0.001
audit_case "audit-require-targets" 1 "violation:" nonexistent -- "$adapter" --require-targets q_proj,nonexistent
audit_case "audit-require-partial-name" 1 "violation:" -- "$adapter" --require-targets roj

run "$LORATOOL" audit "$adapter" --max-rank 2 --max-params 1k --json
if [ "$rc" -ne 1 ]; then
    fail "audit-json-failed" "exit $rc (expected 1): $(head -c 300 "$tmp/err")"
elif msg=$(check audit_json "$tmp/out" false 2>&1 && check adapter "$adapter" "$tmp/out" 2>&1); then
    pass "audit-json-failed"
else
    fail "audit-json-failed" "$msg"
fi

run "$LORATOOL" audit "$adapter" --base "$base" --max-rank 4 --max-params 8192 --json
if [ "$rc" -ne 0 ]; then
    fail "audit-json-passed" "exit $rc (expected 0): $(head -c 300 "$tmp/err")"
elif msg=$(check audit_json "$tmp/out" true 2>&1 && check percent "$adapter" "$basefile" "$tmp/out" 2>&1); then
    pass "audit-json-passed"
else
    fail "audit-json-passed" "$msg"
fi

# the text verdict and violation lines, as spec/cli.md writes them: as many
# "violation:" lines as --json lists violations
run "$LORATOOL" audit "$adapter" --max-rank 2 --max-params 1k --json
cp "$tmp/out" "$tmp/violations.json"
run "$LORATOOL" audit "$adapter" --max-rank 2 --max-params 1k
if [ "$rc" -ne 1 ]; then
    fail "audit-text-violations" "exit $rc (expected 1)"
elif msg=$(check violation_lines "$tmp/out" "$tmp/violations.json" 2>&1); then
    pass "audit-text-violations"
else
    fail "audit-text-violations" "$msg"
fi
if grep -q '^audit: FAILED$' "$tmp/out"; then
    pass "audit-text-verdict-failed"
else
    fail "audit-text-verdict-failed" "spec/cli.md says audit prints 'audit: FAILED'; got: $(grep 'audit:' "$tmp/out")"
fi
run "$LORATOOL" audit "$adapter"
if grep -q '^audit: passed$' "$tmp/out"; then
    pass "audit-text-verdict-passed"
else
    fail "audit-text-verdict-passed" "spec/cli.md says audit prints 'audit: passed'; got: $(grep 'audit:' "$tmp/out")"
fi

# usage errors: exit 2, one line
expect_error "usage-audit-unknown-option" 2 -- "$LORATOOL" audit "$adapter" --bogus
expect_error "usage-inspect-unknown-option" 2 -- "$LORATOOL" inspect "$adapter" --bogus
expect_error "usage-audit-missing-arg" 2 -- "$LORATOOL" audit "$adapter" --max-params
expect_error "usage-audit-base-missing-arg" 2 -- "$LORATOOL" audit "$adapter" --base
expect_error "usage-inspect-base-missing-arg" 2 -- "$LORATOOL" inspect "$adapter" --base
expect_error "usage-audit-no-adapter" 2 -- "$LORATOOL" audit
expect_error "usage-inspect-no-path" 2 -- "$LORATOOL" inspect
expect_error "usage-inspect-two-paths" 2 -- "$LORATOOL" inspect "$adapter" "$base"
expect_error "usage-max-params-junk" 2 -- "$LORATOOL" audit "$adapter" --max-params junk
expect_error "usage-max-rank-junk" 2 -- "$LORATOOL" audit "$adapter" --max-rank junk
expect_error "usage-max-percent-junk" 2 -- "$LORATOOL" audit "$adapter" --base "$base" --max-percent junk
expect_error "usage-max-percent-without-base" 2 -- "$LORATOOL" audit "$adapter" --max-percent 1
expect_error "usage-unknown-command" 2 -- "$LORATOOL" frobnicate "$adapter"

# a base whose projections have other shapes: each module is a violation
"$PY" "$tmp/check.py" make_wrong_base "$tmp/wrongbase" "$base"
run "$LORATOOL" audit "$adapter" --base "$tmp/wrongbase" --json
if [ "$rc" -ne 1 ]; then
    fail "audit-wrong-shapes-json" "exit $rc (expected 1): $(head -c 300 "$tmp/err")"
elif msg=$(check audit_json "$tmp/out" false 2>&1 && check shape_violations "$tmp/out" 2>&1); then
    pass "audit-wrong-shapes-json"
else
    fail "audit-wrong-shapes-json" "$msg"
fi
audit_case "audit-wrong-shapes-text" 1 "violation:" model.layers.1.mlp.down_proj -- "$adapter" --base "$tmp/wrongbase"

# nonexistent paths: exit 4, "loratool: <path>: ..."
nopath=$tmp/no/such/adapter
expect_error "missing-inspect" 4 "loratool: $nopath: " -- "$LORATOOL" inspect "$nopath"
expect_error "missing-audit" 4 "loratool: $nopath" -- "$LORATOOL" audit "$nopath"
expect_error "missing-base" 4 "$tmp/no/base" -- "$LORATOOL" audit "$adapter" --base "$tmp/no/base"
expect_error "missing-file" 4 "loratool: $tmp/none.safetensors: " -- "$LORATOOL" inspect "$tmp/none.safetensors"

# ------------------------------------------------------- (d) count suffixes
audit_case "count-5M" 0 -- "$adapter" --max-params 5M
audit_case "count-1.5B" 0 -- "$adapter" --max-params 1.5B
audit_case "count-5G" 0 -- "$adapter" --max-params 5G
audit_case "count-1T" 0 -- "$adapter" --max-params 1T
audit_case "count-2k" 1 "violation:" -- "$adapter" --max-params 2k
audit_case "count-2K" 1 "violation:" -- "$adapter" --max-params 2K
audit_case "count-exact" 0 -- "$adapter" --max-params 8192
audit_case "count-one-below" 1 "violation:" -- "$adapter" --max-params 8191
audit_case "count-8.192k" 0 -- "$adapter" --max-params 8.192k
audit_case "count-8.191k" 1 "violation:" -- "$adapter" --max-params 8.191k
audit_case "count-4.35M" 0 -- "$adapter" --max-params 4.35M
expect_error "count-5X" 2 -- "$LORATOOL" audit "$adapter" --max-params 5X
expect_error "count-minus-1" 2 -- "$LORATOOL" audit "$adapter" --max-params -1
expect_error "count-not-whole" 2 -- "$LORATOOL" audit "$adapter" --max-params 1.0005k
expect_error "count-empty" 2 -- "$LORATOOL" audit "$adapter" --max-params ""

# ----------------------------------------------------- (e) sharded models
check make_sharded "$tmp/sharded"
run "$LORATOOL" inspect "$tmp/sharded" --json
if [ "$rc" -ne 0 ]; then
    fail "sharded-dir" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check sharded "$tmp/sharded/model.safetensors.index.json" "$tmp/out" 2>&1); then
    pass "sharded-dir"
else
    fail "sharded-dir" "$msg"
fi
run "$LORATOOL" inspect "$tmp/sharded/model.safetensors.index.json" --json
if [ "$rc" -ne 0 ]; then
    fail "sharded-index" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check sharded "$tmp/sharded/model.safetensors.index.json" "$tmp/out" 2>&1); then
    pass "sharded-index"
else
    fail "sharded-index" "$msg"
fi

# ------------------------------------------------- (f) headers only: sparse
big=1500000000
if check make_sparse "$tmp/big.safetensors" $big 2>"$tmp/err"; then
    # shellcheck disable=SC2046
    set -- $(check timed 2 "$tmp/out" "$LORATOOL" inspect "$tmp/big.safetensors" --json)
    if [ "$1" -ne 0 ]; then
        fail "sparse-1.5GB" "exit $1: $(head -c 300 "$tmp/out.err")"
    elif ! msg=$(check bytes_is "$tmp/out" $big 2>&1); then
        fail "sparse-1.5GB" "$msg"
    elif ! "$PY" -c 'import sys; sys.exit(float(sys.argv[1]) >= 2.0)' "$2"; then
        fail "sparse-1.5GB" "took $2 s (bound 2 s)"
    else
        pass "sparse-1.5GB"
    fi
else
    fail "sparse-1.5GB" "could not make the sparse file: $(cat "$tmp/err")"
fi
rm -f "$tmp/big.safetensors"

# ------------------------------------------------------------- (g) bad inputs
for how in short8 header data; do
    check truncate "$basefile" "$tmp/trunc-$how.safetensors" $how
    expect_error "truncated-$how" 3 "$tmp/trunc-$how.safetensors" -- "$LORATOOL" inspect "$tmp/trunc-$how.safetensors"
done

mkdir -p "$tmp/badjson"
cp "$adapter/adapter_model.safetensors" "$tmp/badjson/"
printf '{"peft_type": "LORA", "r": 4,, }\n' >"$tmp/badjson/adapter_config.json"
expect_error "invalid-json-config-inspect" 3 adapter_config.json -- "$LORATOOL" inspect "$tmp/badjson"
expect_error "invalid-json-config-audit" 3 adapter_config.json -- "$LORATOOL" audit "$tmp/badjson"

check make_rank_mismatch "$tmp/rankmis"
expect_error "rank-mismatch-inspect" 3 "$tmp/rankmis" model.layers.1.self_attn.v_proj -- "$LORATOOL" inspect "$tmp/rankmis"
expect_error "rank-mismatch-audit" 3 "$tmp/rankmis" model.layers.1.self_attn.v_proj -- "$LORATOOL" audit "$tmp/rankmis"

mkdir -p "$tmp/truncadapter"
cp "$adapter/adapter_config.json" "$tmp/truncadapter/"
check truncate "$adapter/adapter_model.safetensors" "$tmp/truncadapter/adapter_model.safetensors" data
expect_error "truncated-adapter-weights" 3 adapter_model.safetensors -- "$LORATOOL" inspect "$tmp/truncadapter"

# ------------------------------- (h) rank/alpha patterns, rsLoRA, DoRA, embedding
check make_patterns "$tmp/patterns"
run "$LORATOOL" inspect "$tmp/patterns" --json
if [ "$rc" -ne 0 ]; then
    fail "patterns-inspect" "exit $rc: $(head -c 300 "$tmp/err")"
elif msg=$(check adapter "$tmp/patterns" "$tmp/out" 2>&1); then
    pass "patterns-inspect"
else
    fail "patterns-inspect" "$msg"
fi
audit_case "patterns-audit-base" 0 passed -- "$tmp/patterns" --base "$base" --max-rank 8
audit_case "patterns-audit-max-rank" 1 model.layers.1.self_attn.q_proj -- "$tmp/patterns" --max-rank 6

[ "$failures" -eq 0 ]
