#!/bin/sh
# Numerical and behavioural tests of `loratool resize`, `combine` and `extract`
# against numpy float64 references (testdata/make_surgery_ref.py, run by
# tests/run.sh into $REF/surgery).  Usage, from the repository root:
#
#   LORATOOL=build/loratool REF=build/testdata sh tests/test_surgery.sh
#
# For each case every command line is run (loratool VERB ARGS, {CASE} = the
# case's input directory, {OUT} = an empty directory for that run), then a
# checker with its own safetensors reader compares the exit code, stderr,
# what was (or was not) written, the --json report (ranks, energy_kept,
# rel_error, zero_delta, parameter counts) and every output module: its
# effective delta s * B' A', with s computed from the output config the way
# PEFT does (rank_pattern / alpha_pattern / r / lora_alpha / use_rslora),
# against numpy's truncation within 1e-5 relative (exact concatenation:
# 1e-6), its singular values against numpy's, replacement tensors byte for
# byte, and that no input file changed.
# extract (randomized SVD) is held to near-optimality instead (see
# REL_RANDOM below).  Prints "PASS name" or "FAIL name: why" per case, and
# "# ..." for the timing of one 4096x4096 rank-64 resize next to numpy's
# dense SVD of that delta (at most 60 s, measured once per reference
# directory; SURGERY_NUMPY_TIMING=0 skips it); exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
REF=${REF:-build/testdata}
py=/usr/bin/python3
ref="$REF/surgery"

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM

cat >"$tmp/check.py" <<'EOF'
import hashlib
import json
import math
import os
import re
import struct
import subprocess
import sys

import numpy as np

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
         "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}
REL_TRUNC = 1e-5     # truncated deltas (f32 factors of an SVD)
REL_EXACT = 1e-6     # exact concatenation (f32 factors of the scaled inputs)
REPORT_TOL = 1e-6    # energy_kept, rel_error
# extract (randomized SVD, oversampling 10, 2 power iterations): near-optimal
# rather than exact.  The written delta within 1e-3 of numpy's truncation,
# its singular values within 1e-4 s_0, its error ||D - D'|| at most 0.1%
# above the optimum ||D - D_k||; rel_error is compared as rel_error^2
# (= 1 - energy_kept, within REPORT_TOL), since sqrt(1 - kept/total)
# magnifies rounding in kept/total near 1.
REL_RANDOM = 1e-3
SV_RANDOM = 1e-4
OPTIMALITY = 1e-3


class Bad(Exception):
    pass


def read_st(path):
    """Parse a safetensors file: (metadata, {name: (dtype, shape, raw)})."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise Bad("%s: shorter than 8 bytes" % path)
    n = struct.unpack("<Q", data[:8])[0]
    if 8 + n > len(data):
        raise Bad("%s: header length %d past the end" % (path, n))
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Bad("%s: header is not JSON: %s" % (path, e))
    meta = header.pop("__metadata__", {}) or {}
    buf = data[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        count = 1
        for d in shape:
            count *= d
        if dt not in SIZES or e - b != SIZES[dt] * count or b > e or e > len(buf):
            raise Bad("%s: tensor %s: %s %s does not fit offsets [%d, %d]" % (path, name, dt, shape, b, e))
        spans.append((b, e))
        tensors[name] = (dt, list(shape), buf[b:e])
    spans.sort()
    for (b0, e0), (b1, e1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise Bad("%s: tensor data overlaps" % path)
    return meta, tensors


def values(t):
    dt, shape, raw = t
    if dt == "F32":
        v = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif dt == "F64":
        v = np.frombuffer(raw, dtype="<f8").copy()
    elif dt == "F16":
        v = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    elif dt == "BF16":
        v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    else:
        raise Bad("unexpected dtype %s" % dt)
    return v.reshape(shape)


def pattern_key(patterns, name):
    """PEFT's get_pattern_key (peft/utils/other.py)."""
    for key in patterns:
        if re.match(r"(.*\.)?(%s)$" % key, name):
            return key
    return None


def peft_rank_scale(cfg, name):
    rp, ap = cfg.get("rank_pattern") or {}, cfg.get("alpha_pattern") or {}
    k = pattern_key(rp, name)
    r = rp[k] if k is not None else cfg.get("r", 8)
    k = pattern_key(ap, name)
    alpha = ap[k] if k is not None else cfg.get("lora_alpha", 8)
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora", False) else alpha / r
    return r, scale


def targeted(cfg, name):
    """PEFT's check_target_module_exists for a module name."""
    t = cfg.get("target_modules")
    if isinstance(t, str):
        return re.fullmatch(t, name) is not None
    if isinstance(t, list):
        return any(name == k or name.endswith("." + k) for k in t)
    return False


def exactly_zero(b, a):
    """True when B @ A is exactly 0: every product of two f32 values is exact
    in float64, fsum gives the correctly rounded (so here exact-zero-or-not)
    sum of them."""
    if not np.any(b) or not np.any(a):
        return True
    prods = b[:, :, None] * a[None, :, :]          # (m, r, n), exact
    nz = np.any(prods != 0, axis=1)
    for i, j in zip(*np.nonzero(nz)):
        if math.fsum(prods[i, :, j].tolist()) != 0:
            return False
    return True


def all_files(d):
    out = {}
    for top, _, files in os.walk(d):
        for fn in files:
            p = os.path.join(top, fn)
            out[os.path.relpath(p, d)] = p
    return out


def subst(arg, case_dir, out_dir):
    return arg.replace("{CASE}", case_dir).replace("{OUT}", out_dir)


def setup(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    for k, run in enumerate(spec["runs"]):
        out_dir = os.path.join(work, "o%02d" % k)
        os.makedirs(out_dir)
        with open(os.path.join(work, "run.%02d.args" % k), "w") as f:
            for arg in [run["verb"]] + run["args"]:
                f.write(subst(arg, case_dir, out_dir) + "\n")


def read_output(path):
    cfg_path = os.path.join(path, "adapter_config.json")
    st_path = os.path.join(path, "adapter_model.safetensors")
    for p in (cfg_path, st_path):
        if not os.path.isfile(p):
            raise Bad("%s missing" % os.path.relpath(p, os.path.dirname(path)))
    try:
        cfg = json.load(open(cfg_path))
    except ValueError as e:
        raise Bad("adapter_config.json is not JSON: %s" % e)
    meta, tensors = read_st(st_path)
    return cfg, meta, tensors


def module_factors(tensors, name, embedding):
    if embedding:
        ka = "base_model.model.%s.lora_embedding_A" % name
        kb = "base_model.model.%s.lora_embedding_B" % name
    else:
        ka = "base_model.model.%s.lora_A.weight" % name
        kb = "base_model.model.%s.lora_B.weight" % name
    if ka not in tensors or kb not in tensors:
        raise Bad("%s: %s / %s not in the output" % (name, ka[len(name) + 17:], kb[len(name) + 17:]))
    return ka, kb


def check_report(report, exp, out_path, randomized=False):
    mine = []
    if not isinstance(report, dict):
        return ["--json output is not an object"]
    for key in ("output", "parameters_before", "parameters_after", "modules"):
        if key not in report:
            mine.append("--json has no %r" % key)
    if mine:
        return mine
    if report["output"] != out_path:
        mine.append("--json output %r, expected %r" % (report["output"], out_path))
    for key in ("parameters_before", "parameters_after"):
        if report[key] != exp[key]:
            mine.append("%s %s, expected %d" % (key, report[key], exp[key]))
    got = {}
    for m in report["modules"]:
        if m.get("name") in got:
            mine.append("module %s reported twice" % m.get("name"))
        got[m.get("name")] = m
    want = {m["name"]: m for m in exp["modules"]}
    if sorted(got) != sorted(want):
        mine.append("reported modules %s, expected %s" % (sorted(set(got) - set(want))[:3] or "-",
                                                          sorted(set(want) - set(got))[:3] or "-"))
    for name, w in want.items():
        g = got.get(name)
        if g is None:
            continue
        for key in ("old_rank", "new_rank", "zero_delta"):
            if g.get(key) != w[key]:
                mine.append("%s: %s %s, expected %s" % (name, key, g.get(key), w[key]))
        for key in ("energy_kept", "rel_error"):
            v = g.get(key)
            if not isinstance(v, (int, float)):
                mine.append("%s: %s %r" % (name, key, v))
            elif randomized and key == "rel_error":
                if not abs(v * v - w[key] ** 2) <= REPORT_TOL:
                    mine.append("%s: rel_error^2 %.9g, expected %.9g (numpy)" % (name, v * v, w[key] ** 2))
            elif not abs(v - w[key]) <= REPORT_TOL:
                mine.append("%s: %s %r, expected %.9g (numpy)" % (name, key, v, w[key]))
    return mine


def check_adapter(run, out_path, refz, k, case_dir):
    """The written adapter against the reference of run K."""
    exp = run["output"]
    mine = []
    cfg, meta, tensors = read_output(out_path)
    if meta.get("format") != "pt":
        mine.append("safetensors metadata format %r, expected 'pt'" % meta.get("format"))
    if cfg.get("peft_type") != "LORA":
        mine.append("peft_type %r" % cfg.get("peft_type"))
    if cfg.get("use_dora"):
        mine.append("use_dora set in the output config")
    expected_keys = set()
    for m in exp["modules"]:
        name, j = m["name"], m["index"]
        try:
            ka, kb = module_factors(tensors, name, m["embedding"])
        except Bad as e:
            mine.append(str(e))
            continue
        expected_keys |= {ka, kb}
        for key in (ka, kb):
            if tensors[key][0] != "F32":
                mine.append("%s stored as %s, expected F32" % (key, tensors[key][0]))
        a, b = values(tensors[ka]), values(tensors[kb])
        rows, cols = m["shape"]
        if a.ndim != 2 or b.ndim != 2 or b.shape[0] != rows or a.shape[1] != cols or a.shape[0] != b.shape[1]:
            mine.append("%s: factors B %s A %s, expected B [%d, r] A [r, %d]" %
                        (name, list(b.shape), list(a.shape), rows, cols))
            continue
        r_out = a.shape[0]
        if r_out != m["new_rank"]:
            mine.append("%s: stored rank %d, expected %d" % (name, r_out, m["new_rank"]))
        if not targeted(cfg, name):
            mine.append("%s: not matched by target_modules %r" % (name, cfg.get("target_modules")))
        r_cfg, scale = peft_rank_scale(cfg, name)
        if r_cfg != r_out:
            mine.append("%s: PEFT reads r = %s from the config (rank_pattern/r), factors have rank %d" %
                        (name, r_cfg, r_out))
            continue
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            mine.append("%s: non-finite factor values" % name)
            continue
        d = scale * (b @ a)
        want = refz["%d_%d_delta" % (k, j)]
        sv = refz["%d_%d_sv" % (k, j)]
        if run["zero_exact"]:
            if not exactly_zero(b, a):
                mine.append("%s: B' A' is not exactly zero (max |delta| %.3g)" % (name, np.abs(d).max()))
            if run["zero_factors"] and (np.any(a) or np.any(b)):
                mine.append("%s: factors not all zero" % name)
            continue
        norm = np.linalg.norm(want)
        err = np.linalg.norm(d - want) / norm
        tol = REL_EXACT if run["rule_exact"] else REL_RANDOM if run.get("randomized") else REL_TRUNC
        if not err <= tol:
            mine.append("%s: ||s B'A' - D_k||/||D_k|| = %.3g > %g (scale %.6g from the config)" %
                        (name, err, tol, scale))
            continue
        if run.get("randomized"):
            full = refz["%d_%d_full" % (k, j)]
            got_err = np.linalg.norm(full - d) / np.linalg.norm(full)
            if not got_err <= m["rel_error"] * (1 + OPTIMALITY) + REL_TRUNC:
                mine.append("%s: ||D - s B'A'||/||D|| = %.6g, numpy's optimum %.6g" % (name, got_err, m["rel_error"]))
        got_sv = np.linalg.svd(d, compute_uv=False)
        got_sv = np.concatenate([got_sv, np.zeros(max(0, len(sv) - len(got_sv)))])[:len(sv)]
        dev = np.max(np.abs(got_sv - sv)) / sv[0] if len(sv) else 0
        if not dev <= (SV_RANDOM if run.get("randomized") else REL_TRUNC):
            mine.append("%s: singular values %s, numpy %s" % (name, np.round(got_sv[:4], 7), np.round(sv[:4], 7)))
    # replacement tensors byte for byte
    for rel, key in exp["replacements"]:
        expected_keys.add(key)
        _, src = read_st(os.path.join(case_dir, rel))
        if key not in tensors:
            mine.append("replacement %s not copied" % key)
        elif tensors[key] != src[key]:
            mine.append("replacement %s differs from the input (%s %s vs %s %s)" %
                        (key, tensors[key][0], tensors[key][1], src[key][0], src[key][1]))
    extra = sorted(set(tensors) - expected_keys)
    if extra:
        mine.append("unexpected tensors in the output: %s" % extra[:3])
    to_save = cfg.get("modules_to_save") or []
    for x in exp["modules_to_save"]:
        if x not in to_save:
            mine.append("modules_to_save %r does not list %r" % (to_save, x))
    return mine


TIMING_CACHE = None


def numpy_dense_timing(case_dir):
    """Seconds numpy takes for the dense SVD of the 4096x4096 delta (None
    when over 60 s); cached next to the case so that a second build does
    not pay again."""
    if os.environ.get("SURGERY_NUMPY_TIMING") == "0":
        return "skipped (SURGERY_NUMPY_TIMING=0)"
    cache = os.path.join(os.path.dirname(case_dir), ".numpy_svd_4096_seconds")
    if os.path.isfile(cache):
        text = open(cache).read().strip()
        return None if text == "timeout" else float(text)
    code = ("import sys, time, numpy as np\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "d = np.load(sys.argv[2])\n"
            "D = d['timing_uk'] @ d['timing_vk'].T\n"   # any 4096x4096 matrix of the same size does
            "D = D + np.random.default_rng(1).normal(0, 1e-3, D.shape)\n"
            "t = time.time(); np.linalg.svd(D, full_matrices=False); print(time.time() - t)\n")
    try:
        res = subprocess.run([sys.executable, "-c", code, case_dir, os.path.join(case_dir, "ref.npz")],
                             capture_output=True, text=True, timeout=60)
        secs = float(res.stdout.strip())
    except subprocess.TimeoutExpired:
        secs = None
    except ValueError:
        return None
    try:
        with open(cache, "w") as f:
            f.write("timeout" if secs is None else repr(secs))
    except OSError:
        pass
    return secs


def check_timing(run, out_path, refz, report):
    t = run["timing"]
    mine = []
    cfg, _, tensors = read_output(out_path)
    ka, kb = module_factors(tensors, t["name"], False)
    a, b = values(tensors[ka]), values(tensors[kb])
    r_cfg, scale = peft_rank_scale(cfg, t["name"])
    if a.shape[0] != t["new_rank"] or r_cfg != a.shape[0]:
        return ["stored rank %d, config r %s, expected %d" % (a.shape[0], r_cfg, t["new_rank"])]
    uk, vk = refz["timing_uk"], refz["timing_vk"]
    d = scale * (b @ a)
    want = uk @ vk.T
    err = np.linalg.norm(d - want) / np.linalg.norm(want)
    if not err <= REL_TRUNC:
        mine.append("||s B'A' - D_16||/||D_16|| = %.3g" % err)
    m = report["modules"][0] if isinstance(report, dict) and report.get("modules") else {}
    for key in ("old_rank", "new_rank"):
        if m.get(key) != t[key]:
            mine.append("%s %s, expected %s" % (key, m.get(key), t[key]))
    for key in ("energy_kept", "rel_error"):
        v = m.get(key)
        if not isinstance(v, (int, float)) or not abs(v - t[key]) <= REPORT_TOL:
            mine.append("%s %r, expected %.9g" % (key, v, t[key]))
    for key in ("parameters_before", "parameters_after"):
        if report.get(key) != t[key]:
            mine.append("%s %s, expected %s" % (key, report.get(key), t[key]))
    return mine


def check(case_dir, work):
    spec = json.load(open(os.path.join(case_dir, "case.json")))
    refz = np.load(os.path.join(case_dir, "ref.npz"))
    problems, notes = [], []
    for k, run in enumerate(spec["runs"]):
        run.setdefault("rule_exact", run["verb"] == "combine" and not any(
            a.startswith("--rank") or a.startswith("--energy") or a.startswith("--sv-ratio") for a in run["args"]))
        stem = os.path.join(work, "run.%02d" % k)
        out_dir = os.path.join(work, "o%02d" % k)
        out_path = os.path.join(out_dir, "out")
        label = "run %d (%s %s)" % (k, run["verb"], " ".join(
            a.replace("{CASE}/", "").replace("{OUT}/", "OUT/") for a in run["args"]))
        try:
            rc = int(open(stem + ".rc").read().strip())
        except ValueError:
            rc = -1
        err = open(stem + ".err", errors="replace").read()
        out = open(stem + ".out", errors="replace").read()
        mine = []
        for marker in ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer"):
            if marker in err:
                mine.append("sanitizer report: %s" % err.strip().splitlines()[0][:200])
                break
        if rc != run["rc"] and rc in run.get("rc_alt", []):
            run = dict(run, rc=rc, stderr_has=[], stderr_re=[])   # an accepted refusal
        if rc != run["rc"]:
            tail = " | ".join(err.strip().splitlines()[-2:])[:300]
            mine.append("exit %d, expected %d (stderr: %s)" % (rc, run["rc"], tail or "empty"))
        for s in run["stderr_has"]:
            if s not in err:
                mine.append("stderr does not name %r (stderr: %s)" % (s, err.strip()[:200] or "empty"))
        for pat in run["stderr_re"]:
            if not re.search(pat, err):
                mine.append("stderr does not match %r (stderr: %s)" % (pat, err.strip()[:200] or "empty"))
        if run["rc"] != 0 or rc != 0:
            left = all_files(out_dir)
            if left:
                mine.append("files written although it failed: %s" % sorted(left)[:3])
            if run["rc"] != 0 and out.strip():
                mine.append("stdout not empty on failure: %s" % out.strip()[:100])
        else:
            report = None
            if run["json"]:
                try:
                    report = json.loads(out)
                except ValueError as e:
                    mine.append("--json output is not JSON: %s (%s)" % (e, out[:80]))
            temps = [p for p in all_files(out_dir) if os.path.basename(p).startswith(".")]
            if temps:
                mine.append("temporary files left: %s" % temps[:3])
            try:
                if run.get("timing"):
                    t0 = open(stem + ".t0").read().strip()
                    t1 = open(stem + ".t1").read().strip()
                    secs = (int(t1) - int(t0)) / 1e9 if t0.isdigit() and t1.isdigit() else None
                    mine += check_timing(run, out_path, refz, report or {})
                    dense = numpy_dense_timing(case_dir)
                    notes.append("# timing: loratool resize 4096x4096 rank 64 -> 16: %s; numpy dense SVD "
                                 "(full_matrices=False) of the 4096x4096 delta: %s" %
                                 ("%.3f s" % secs if secs is not None else "not measured",
                                  dense if isinstance(dense, str) else
                                  "%.1f s" % dense if dense is not None else "over 60 s, skipped"))
                elif run["output"] is not None:
                    if report is not None:
                        mine += check_report(report, run["output"], out_path, run.get("randomized", False))
                    mine += check_adapter(run, out_path, refz, k, case_dir)
            except Bad as e:
                mine.append(str(e))
            if run["text_names"]:
                for m in run["output"]["modules"]:
                    if m["name"] not in out:
                        mine.append("text report does not name %s" % m["name"])
                        break
            if run["same_as"] is not None:
                a = all_files(out_dir)
                b = all_files(os.path.join(work, "o%02d" % run["same_as"]))
                if sorted(a) != sorted(b):
                    mine.append("files %s, run %d wrote %s" % (sorted(a), run["same_as"], sorted(b)))
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
    for n in notes:
        print(n)
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
            print(case)
        return 0
    if cmd == "setup":
        setup(sys.argv[2], sys.argv[3])
        return 0
    return check(sys.argv[2], sys.argv[3])


sys.exit(main())
EOF

. tests/cases.sh
run_cases surgery "$py $tmp/check.py" "$ref" 300
