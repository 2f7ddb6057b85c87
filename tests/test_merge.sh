#!/bin/sh
# Numerical and behavioural tests of `loratool merge` against numpy float64
# references (testdata/make_merge_ref.py, run by tests/run.sh into
# $REF/merge).  Usage, from the repository root:
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_merge.sh
#
# For each case: every command line of the case is run (loratool merge ARGS,
# with {CASE} = the case's input directory, {OUT} = an empty directory for
# that run), then a checker with its own safetensors reader compares exit
# codes, stderr, what was (or was not) left in {OUT}, and every output
# tensor with the reference: merged elements within 1 ulp (DoRA 2) of the
# float64 value rounded once to the output dtype, and exactly that value
# unless the float64 value sits within 1e-6 ulp of a rounding tie;
# converted and replaced tensors exact; untouched tensors byte for byte;
# metadata; shards and index; that no input file changed.
# Prints "PASS name" or "FAIL name: why" per case; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3
ref="$REF/merge"

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

cat >"$tmp/check.py" <<'EOF'
import hashlib
import json
import os
import struct
import sys

import numpy as np

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
         "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
WIDTH = {"F32": 32, "F16": 16, "BF16": 16}
EXP_MASK = {"F32": 0x7F800000, "F16": 0x7C00, "BF16": 0x7F80}


class Bad(Exception):
    pass


def read_st(path):
    """Parse and validate a safetensors file: (metadata, {name: (dtype, shape, raw)})."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise Bad("%s: shorter than 8 bytes" % path)
    n = struct.unpack("<Q", data[:8])[0]
    if 8 + n > len(data):
        raise Bad("%s: header length %d past the end" % (path, n))

    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Bad("%s: duplicate keys in the header" % path)
        return dict(pairs)

    try:
        header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_dups)
    except (UnicodeDecodeError, ValueError) as e:
        raise Bad("%s: header is not JSON: %s" % (path, e))
    meta = header.pop("__metadata__", {}) or {}
    if not all(isinstance(v, str) for v in meta.values()):
        raise Bad("%s: metadata values must be strings" % path)
    buf = data[8 + n:]
    spans, tensors = [], {}
    for name, info in header.items():
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = 1
        for d in shape:
            count *= d
        if dt not in SIZES or e - b != SIZES[dt] * count or b > e:
            raise Bad("%s: tensor %s: %s %s does not fit offsets [%d, %d]" % (path, name, dt, shape, b, e))
        spans.append((b, e, name))
        tensors[name] = (dt, list(shape), buf[b:e])
    pos = 0
    for b, e, name in sorted(spans):
        if b != pos:
            raise Bad("%s: tensor %s starts at %d, expected %d (hole or overlap)" % (path, name, b, pos))
        pos = e
    if pos != len(buf):
        raise Bad("%s: data buffer is %d bytes, tensors cover %d" % (path, len(buf), pos))
    return meta, tensors


def read_index(directory, min_shards=1):
    """A sharded model: ([metadata per shard], tensors, shard count)."""
    with open(os.path.join(directory, "model.safetensors.index.json")) as f:
        index = json.load(f)
    weight_map = index["weight_map"]
    files = sorted(set(weight_map.values()))
    if len(files) < min_shards:
        raise Bad("index names %d shard(s), expected at least %d" % (len(files), min_shards))
    metas, tensors = [], {}
    for fn in files:
        meta, ts = read_st(os.path.join(directory, fn))
        metas.append(meta)
        for name, t in ts.items():
            if name in tensors:
                raise Bad("tensor %s is in two shards" % name)
            if weight_map.get(name) != fn:
                raise Bad("tensor %s is in %s, the index says %s" % (name, fn, weight_map.get(name)))
            tensors[name] = t
    missing = set(weight_map) - set(tensors)
    if missing:
        raise Bad("index names tensors no shard holds: %s" % sorted(missing)[:3])
    total = sum(len(t[2]) for t in tensors.values())
    if int(index.get("metadata", {}).get("total_size", -1)) != total:
        raise Bad("index total_size %s, tensor data is %d bytes" % (index.get("metadata", {}).get("total_size"),
                                                                     total))
    return metas, tensors, len(files)


def read_model(path):
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "model.safetensors.index.json")):
            return read_index(path)[:2]
        path = os.path.join(path, "model.safetensors")
    if path.endswith(".index.json"):
        return read_index(os.path.dirname(path))[:2]
    meta, tensors = read_st(path)
    return [meta], tensors


def bits_of(raw, dt):
    return np.frombuffer(raw, dtype="<u4" if dt == "F32" else "<u2").astype(np.int64)


def value_of(bits, dt):
    b = int(bits)
    if dt == "F32":
        return float(np.array([b], np.uint32).view(np.float32)[0])
    if dt == "F16":
        return float(np.array([b], np.uint16).view(np.float16)[0])
    return float(np.array([b << 16], np.uint32).view(np.float32)[0])


def ordered(bits, dt):
    sign = 1 << (WIDTH[dt] - 1)
    return np.where(bits & sign, -(bits & (sign - 1)), bits)


def compare(name, exp, got, case_dir):
    """Problems of one output tensor against its expectation."""
    dt, shape, raw = got
    if dt != exp["dtype"] or shape != exp["shape"]:
        return ["%s is %s %s, expected %s %s" % (name, dt, shape, exp["dtype"], exp["shape"])]
    if exp.get("bytes_of_base"):
        return [] if raw == exp["base_raw"] else ["%s: not a byte-for-byte copy of the base tensor" % name]
    ref = np.load(os.path.join(case_dir, exp["ref"]))
    want = ref["bits"].reshape(-1).astype(np.int64)
    val = ref["ref"].reshape(-1)
    tie = ref["tie"].reshape(-1)
    have = bits_of(raw, dt)
    where = np.flatnonzero((have & EXP_MASK[dt]) == EXP_MASK[dt])
    if where.size:
        i = where[0]
        return ["%s: %d non-finite elements, first [%d] = %r, expected %r (reference %.17g)"
                % (name, where.size, i, value_of(have[i], dt), value_of(want[i], dt), val[i])]
    ulps = np.abs(ordered(have, dt) - ordered(want, dt))
    tol = exp["tol"]
    bad = np.flatnonzero(ulps > tol)
    what = "more than %d ulp off" % tol
    if not bad.size and exp.get("merged"):
        bad = np.flatnonzero((ulps != 0) & ~tie)
        what = "not the correctly rounded value (away from ties)"
    if not bad.size:
        return []
    i = bad[0]
    idx = np.unravel_index(i, exp["shape"]) if exp["shape"] else ()
    return ["%s: %d of %d elements %s, max %d ulp; first %s: got %r (0x%x), expected %r (0x%x), float64 "
            "reference %.17g" % (name, bad.size, have.size, what, int(ulps.max()), list(map(int, idx)),
                                  value_of(have[i], dt), int(have[i]), value_of(want[i], dt), int(want[i]), val[i])]


def check_output(spec, case_dir, run, out_dir, base_cache):
    problems = []
    kind = run["output"]
    target = os.path.join(out_dir, "out.safetensors" if kind == "file" else "model")
    try:
        if kind == "file":
            meta, tensors = read_st(target)
            metas = [meta]
        elif kind == "dir":
            meta, tensors = read_st(os.path.join(target, "model.safetensors"))
            metas = [meta]
        else:
            metas, tensors, _ = read_index(target, min_shards=2)
    except (Bad, OSError, KeyError, ValueError, TypeError) as e:
        return ["output unreadable: %s" % e]
    for meta in metas:
        for k, v in spec["metadata"].items():
            if meta.get(k) != v:
                problems.append("output metadata %s = %r, the base has %r" % (k, meta.get(k), v))
        try:
            json.loads(meta["loratool_merge"])
        except (KeyError, ValueError):
            problems.append("output metadata lacks a JSON 'loratool_merge' entry")
    names, want = set(tensors), set(spec["tensors"])
    if names != want:
        problems.append("tensor names differ: missing %s, unexpected %s"
                        % (sorted(want - names)[:3], sorted(names - want)[:3]))
    if "base" not in base_cache:
        base_cache["base"] = read_model(os.path.join(case_dir, spec["base"]))[1]
    for name in sorted(want & names):
        exp = dict(spec["tensors"][name])
        if exp.get("bytes_of_base"):
            exp["base_raw"] = base_cache["base"][name][2]
        problems += compare(name, exp, tensors[name], case_dir)
    for fn in spec.get("side_files", []):
        src = os.path.join(case_dir, spec["base"], fn)
        dst = os.path.join(target, fn)
        if not os.path.isfile(dst) or open(src, "rb").read() != open(dst, "rb").read():
            problems.append("%s was not copied to the output directory" % fn)
    return problems


def all_files(root):
    found = {}
    for dirpath, _, files in os.walk(root):
        for fn in files:
            p = os.path.join(dirpath, fn)
            found[os.path.relpath(p, root)] = p
    return found


def sub(arg, case_dir, out_dir, work):
    return arg.replace("{CASE}", case_dir).replace("{OUT}", out_dir).replace("{WORK}", work)


def setup(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    for k, run in enumerate(spec["runs"]):
        out_dir = os.path.join(work, "o%02d" % k)
        os.mkdir(out_dir)
        with open(os.path.join(work, "run.%02d.args" % k), "w") as f:
            for a in run["args"]:
                f.write(sub(a, case_dir, out_dir, work) + "\n")


def check(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    problems = []
    base_cache = {}
    for k, run in enumerate(spec["runs"]):
        stem = os.path.join(work, "run.%02d" % k)
        out_dir = os.path.join(work, "o%02d" % k)
        label = "run %d (merge %s)" % (k, " ".join(a.replace("{CASE}/", "").replace("{OUT}/", "OUT/")
                                                   for a in run["args"]))
        rc = int(open(stem + ".rc").read().strip() or -1)
        err = open(stem + ".err", errors="replace").read()
        out = open(stem + ".out", errors="replace").read()
        mine = []
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            if marker in err:
                mine.append("sanitizer report: %s" % err.strip().splitlines()[0][:200])
                break
        if rc != run["rc"]:
            tail = " | ".join(err.strip().splitlines()[-2:])[:300]
            mine.append("exit %d, expected %d (stderr: %s)" % (rc, run["rc"], tail or "empty"))
        for s in run["stderr_has"]:
            if s not in err:
                mine.append("stderr does not name %r (stderr: %s)" % (s, err.strip()[:200] or "empty"))
        left = sorted(all_files(out_dir))
        if run["output"] is None or rc != 0:
            if left:
                mine.append("left files in the output directory: %s" % left[:4])
        else:
            allowed = ["out.safetensors"] if run["output"] == "file" else None
            top = sorted(os.listdir(out_dir))
            if run["output"] == "file" and top != allowed:
                mine.append("output directory holds %s, expected only out.safetensors" % top[:4])
            elif run["output"] != "file" and top != ["model"]:
                mine.append("output directory holds %s, expected only model/" % top[:4])
            temps = [p for p in left if os.path.basename(p).startswith(".")]
            if temps:
                mine.append("temporary files left: %s" % temps[:3])
            if not mine and spec["tensors"]:
                mine += check_output(spec, case_dir, run, out_dir, base_cache)
            if run["json_skipped"] is not None:
                try:
                    skipped = json.loads(out)["skipped"]
                    if not any(run["json_skipped"] in s for s in skipped):
                        mine.append("--json 'skipped' %s does not list %r" % (skipped, run["json_skipped"]))
                except (ValueError, KeyError, TypeError) as e:
                    mine.append("--json output unusable: %s" % e)
            if run["same_as"] is not None:
                a = all_files(out_dir)
                b = all_files(os.path.join(work, "o%02d" % run["same_as"]))
                if sorted(a) != sorted(b):
                    mine.append("files differ from run %d: %s vs %s" % (run["same_as"], sorted(a), sorted(b)))
                else:
                    for rel in sorted(a):
                        if open(a[rel], "rb").read() != open(b[rel], "rb").read():
                            mine.append("%s differs from run %d's byte for byte" % (rel, run["same_as"]))
        problems += ["%s: %s" % (label, m) for m in mine]
    manifest = json.load(open(os.path.join(case_dir, "manifest.json")))
    present = all_files(case_dir)
    present.pop("manifest.json", None)
    if sorted(present) != sorted(manifest):
        problems.append("input directory changed: new %s, gone %s" % (sorted(set(present) - set(manifest))[:3],
                                                                     sorted(set(manifest) - set(present))[:3]))
    for rel, digest in manifest.items():
        if rel in present and hashlib.sha256(open(present[rel], "rb").read()).hexdigest() != digest:
            problems.append("input %s was modified" % rel)
    if problems:
        shown = problems[:4]
        more = " (+%d more)" % (len(problems) - 4) if len(problems) > 4 else ""
        print("FAIL %s: %s%s" % (spec["name"], "; ".join(shown), more))
        return 1
    print("PASS %s" % spec["name"])
    return 0


def main():
    cmd = sys.argv[1]
    if cmd == "list":
        for case in json.load(open(os.path.join(sys.argv[2], "cases.json"))):
            print(case["name"])
        return 0
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3])
        return 0
    return check(sys.argv[2], sys.argv[3])


sys.exit(main())
EOF

. tests/cases.sh
run_cases merge "$py $tmp/check.py" "$ref" 120 merge
