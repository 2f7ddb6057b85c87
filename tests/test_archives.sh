#!/bin/sh
# Adapters and models inside archives, end to end through the CLI
# (spec/cli.md "Input arguments", spec/archives.md).  Archives are made by
# Python's zipfile/tarfile and by the zip, tar, gzip, xz, zstd and bzip2
# programs (installed by .ci/install-deps --test).  Every readable kind must
# give the same merged tensors as the extracted directory; hostile archives
# are exit 3 with nothing written; archive outputs are reproducible and
# readable by other tools.  Prints PASS/FAIL lines; exits 1 on any FAIL.
set -u
LORATOOL=${LORATOOL:-build/loratool}
case $LORATOOL in /*) ;; *) LORATOOL=$PWD/$LORATOOL ;; esac
py=/usr/bin/python3
demo=$PWD/testdata/demo
fixtures=$PWD/testdata
tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
failed=0
pass() { echo "PASS archives:$1"; }
fail() { echo "FAIL archives:$1: $2"; failed=1; }
for tool in zip tar gzip xz zstd bzip2; do
    command -v $tool >/dev/null 2>&1 || { fail setup "$tool is not installed (.ci/install-deps --test installs it)"; exit 1; }
done
# Spooled members and private folders go to TMPDIR: it must be empty after
# every command.
export TMPDIR="$tmp/tmpdir"
mkdir -p "$TMPDIR"

run() { # NAME EXPECTED_RC CMD...: in $tmp, stdout/stderr kept
    name=$1 want=$2
    shift 2
    (cd "$tmp" && "$@") >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ -n "$(ls -A "$TMPDIR")" ]; then
        fail "$name" "left in TMPDIR: $(ls -A "$TMPDIR" | head -3)"
        rm -rf "${TMPDIR:?}"/* "${TMPDIR:?}"/.[!.]* 2>/dev/null
        return 1
    fi
    if [ "$rc" -ne "$want" ]; then
        fail "$name" "exit $rc, expected $want: $(head -c 300 "$tmp/err")"
        return 1
    fi
    return 0
}
tensors_equal() {
    $py - "$1" "$2" <<'PY'
import json, struct, sys
def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}
sys.exit(0 if load(sys.argv[1]) == load(sys.argv[2]) else 1)
PY
}
same() { # NAME FILE [REF]
    if tensors_equal "$tmp/$2" "$tmp/${3:-ref.safetensors}"; then pass "$1"; else fail "$1" "tensors differ"; fi
}
says() { # NAME TEXT: a one-line message holding TEXT
    if [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -qF -- "$2" "$tmp/err"; then pass "$1"; else
        fail "$1" "message: $(head -c 300 "$tmp/err")"; fi
}

cd "$tmp" || exit 2
cp -r "$demo/adapter" adapter
cp -r "$demo/base" base
mkdir -p two/a two/b && cp adapter/* two/a/ && cp adapter/* two/b/
run reference 0 "$LORATOOL" merge base adapter -o ref.safetensors || exit 1
run reference-half 0 "$LORATOOL" merge base adapter:0.5 -o ref_half.safetensors || exit 1

# ---- every kind, adapter files at the root ----
(cd adapter && zip -q -X ../root_zipcli.zip adapter_config.json adapter_model.safetensors)
(cd adapter && tar -cf ../root.tar adapter_config.json adapter_model.safetensors)
(cd adapter && tar -czf ../root.tar.gz adapter_config.json adapter_model.safetensors)
cp root.tar.gz root.tgz
(cd adapter && tar -cJf ../root.tar.xz adapter_config.json adapter_model.safetensors)
(cd adapter && tar --zstd -cf ../root.tar.zst adapter_config.json adapter_model.safetensors)
(cd adapter && tar -cjf ../root.tar.bz2 adapter_config.json adapter_model.safetensors)
$py - <<'PY'
import tarfile, zipfile
with zipfile.ZipFile("root_py.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for n in ("adapter_config.json", "adapter_model.safetensors"):
        z.write("adapter/" + n, n)
with zipfile.ZipFile("root_stored.zip", "w", zipfile.ZIP_STORED) as z:
    for n in ("adapter_config.json", "adapter_model.safetensors"):
        z.write("adapter/" + n, n)
with tarfile.open("root_pax.tar", "w", format=tarfile.PAX_FORMAT) as t:
    t.add("adapter", "adapter")
with tarfile.open("root_gnu.tar.gz", "w:gz", format=tarfile.GNU_FORMAT) as t:
    t.add("adapter", "ckpt")
PY
for a in root_zipcli.zip root_py.zip root_stored.zip root.tar root.tar.gz root.tgz root.tar.xz root.tar.zst \
    root.tar.bz2 root_pax.tar root_gnu.tar.gz; do
    run "read:$a" 0 "$LORATOOL" merge base "$a" -o "m_$a.safetensors" && same "read:$a" "m_$a.safetensors"
done
# named by content, not by name
cp root.tar.zst disguised.bin
run read:by-content 0 "$LORATOOL" merge base disguised.bin -o m_disguised.safetensors && same read:by-content m_disguised.safetensors

# ---- one top-level folder, several adapters, ARCHIVE#PATH, :SCALE ----
tar -czf folder.tar.gz adapter
run layout:one-folder 0 "$LORATOOL" merge base folder.tar.gz -o m_folder.safetensors && same layout:one-folder m_folder.safetensors
zip -q -r -X two.zip two
run layout:several 3 "$LORATOOL" merge base two.zip -o m_two.safetensors &&
    says layout:several "holds several adapters or models (two/a, two/b)"
[ -e m_two.safetensors ] && fail layout:several-nothing-written "output exists"
run layout:hash-folder 0 "$LORATOOL" merge base "two.zip#two/b:0.5" -o m_b.safetensors &&
    same layout:hash-folder m_b.safetensors ref_half.safetensors
run layout:hash-file 0 "$LORATOOL" merge base "two.zip#two/a/adapter_model.safetensors" -o m_a.safetensors &&
    same layout:hash-file m_a.safetensors
run layout:hash-dot-slash 0 "$LORATOOL" merge base "two.zip#./two/a/" -o m_a2.safetensors && same layout:hash-dot-slash m_a2.safetensors
run layout:hash-missing 3 "$LORATOOL" merge base "two.zip#two/c" -o m_c.safetensors && says layout:hash-missing "no member or folder 'two/c'"
run layout:two-adapters-one-archive 0 "$LORATOOL" merge base "two.zip#two/a:0.5" "two.zip#two/b:0.5" -o m_ab.safetensors &&
    same layout:two-adapters-one-archive m_ab.safetensors

# ---- models inside archives; other verbs ----
(cd base && tar --zstd -cf ../base.tar.zst config.json model.safetensors)
run model:base-archive 0 "$LORATOOL" merge base.tar.zst root_py.zip -o m_model.safetensors && same model:base-archive m_model.safetensors
run verify:archives 0 "$LORATOOL" verify base.tar.zst root.tar.xz --merged ref.safetensors
[ "$rc" -eq 0 ] && pass verify:archives
run audit:archive 0 "$LORATOOL" audit root.tgz --base base.tar.zst --json &&
    if grep -q '"passed":[[:space:]]*true' out; then pass audit:archive; else fail audit:archive "not passed"; fi
run inspect:archive-path 0 "$LORATOOL" inspect "two.zip#two/a" --json &&
    if grep -q '"path":[[:space:]]*"two.zip#two/a"' out && grep -q '"format":[[:space:]]*"peft"' out; then
        pass inspect:archive-path
    else fail inspect:archive-path "$(head -c 200 out)"; fi
run convert:gguf-from-archive 0 "$LORATOOL" convert root.tar.bz2 -o ad.gguf --base base.tar.zst
run convert:gguf-direct 0 "$LORATOOL" convert adapter -o ad_direct.gguf --base base
if cmp -s ad.gguf ad_direct.gguf; then pass convert:gguf-from-archive; else fail convert:gguf-from-archive "GGUF bytes differ"; fi
zip -q -X gguf.zip ad.gguf
run inspect:gguf-in-zip 0 "$LORATOOL" inspect gguf.zip --json &&
    if grep -q '"format":[[:space:]]*"gguf"' out; then pass inspect:gguf-in-zip; else fail inspect:gguf-in-zip "$(head -c 200 out)"; fi
run diff:archives 0 "$LORATOOL" diff "base.tar.zst#model.safetensors" base/model.safetensors
[ "$rc" -eq 0 ] && pass diff:archives

# ---- messages name ARCHIVE#PATH ----
mkdir -p broken && cp adapter/adapter_config.json broken/ && head -c 100 adapter/adapter_model.safetensors >broken/adapter_model.safetensors
(cd broken && zip -q -X ../broken.zip adapter_config.json adapter_model.safetensors)
run message:names-member 3 "$LORATOOL" merge base broken.zip -o m_broken.safetensors &&
    says message:names-member "broken.zip#adapter_model.safetensors"
if grep -q "$TMPDIR\|/proc/self" err; then fail message:no-private-path "$(cat err)"; else pass message:no-private-path; fi

# ---- a torch zip is a torch file, not an archive ----
run torch-zip-not-archive 0 "$LORATOOL" inspect "$fixtures/loralib/gpt2.pt" --json
if grep -q '"format":[[:space:]]*"torch"' out; then pass torch-zip-not-archive; else fail torch-zip-not-archive "$(head -c 200 out)"; fi

# ---- hostile archives: exit 3, nothing written, nothing outside ----
$py - <<'PY'
import io, tarfile, zipfile
cfg = open("adapter/adapter_config.json", "rb").read()
w = open("adapter/adapter_model.safetensors", "rb").read()
def tar(name, extra):
    with tarfile.open(name, "w") as t:
        for n, data in (("adapter_config.json", cfg), ("adapter_model.safetensors", w)):
            i = tarfile.TarInfo(n); i.size = len(data); t.addfile(i, io.BytesIO(data))
        for info, data in extra:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
def reg(name, data=b"x"):
    i = tarfile.TarInfo(name); i.size = len(data); return (i, data)
def link(name, target, kind):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; return (i, None)
tar("h_traversal.tar", [reg("../evil.json")])
tar("h_absolute.tar", [reg("/tmp/evil.json")])
tar("h_symlink.tar", [link("x.json", "/etc/passwd", tarfile.SYMTYPE)])
tar("h_hardlink.tar", [link("y.json", "adapter_config.json", tarfile.LNKTYPE)])
dev = tarfile.TarInfo("dev"); dev.type = tarfile.CHRTYPE; dev.devmajor, dev.devminor = 1, 3
tar("h_device.tar", [(dev, None)])
fifo = tarfile.TarInfo("fifo"); fifo.type = tarfile.FIFOTYPE
tar("h_fifo.tar", [(fifo, None)])
tar("h_duplicate.tar", [reg("adapter_config.json", cfg)])
with zipfile.ZipFile("h_traversal.zip", "w") as z:
    z.writestr("adapter_config.json", cfg); z.writestr("adapter_model.safetensors", w); z.writestr("../evil.json", b"x")
# many empty members
with tarfile.open("h_entries.tar", "w") as t:
    for i in range(3000):
        t.addfile(tarfile.TarInfo("e/%05d.json" % i), io.BytesIO(b""))
# truncated and wrong checksum
data = open("root.tar", "rb").read()
open("h_truncated.tar", "wb").write(data[:len(data) // 2 + 100])
bad = bytearray(data); bad[148:156] = b"0000000\0"; open("h_checksum.tar", "wb").write(bytes(bad))
zdata = open("root_py.zip", "rb").read()
open("h_truncated.zip", "wb").write(zdata[:len(zdata) - 40])
PY
(cd adapter && zip -q -X -P secret ../h_encrypted.zip adapter_config.json adapter_model.safetensors)
for h in h_traversal.tar h_absolute.tar h_symlink.tar h_hardlink.tar h_device.tar h_fifo.tar h_duplicate.tar \
    h_traversal.zip h_encrypted.zip h_truncated.tar h_checksum.tar h_truncated.zip; do
    run "hostile:$h" 3 "$LORATOOL" merge base "$h" -o "m_$h.safetensors" || continue
    if [ -e "m_$h.safetensors" ] || [ -e evil.json ] || [ -e /tmp/evil.json ]; then
        fail "hostile:$h" "something was written"
    elif [ "$(wc -l <err)" -ne 1 ]; then
        fail "hostile:$h" "not one line: $(cat err)"
    else
        pass "hostile:$h"
    fi
done
run limit:entries-option 3 "$LORATOOL" merge base h_entries.tar --archive-limit entries=100 -o m.safetensors &&
    says limit:entries-option "entries"
run limit:entries-env 3 env LORATOOL_ARCHIVE_LIMITS=entries=100 "$LORATOOL" inspect h_entries.tar && says limit:entries-env "entries"
# a bomb: 64 MiB of zeros gzip to ~64 KiB (ratio ~1000): over a ratio of 50 it stops early
head -c 67108864 /dev/zero >zeros.safetensors && tar -czf bomb.tar.gz zeros.safetensors && rm zeros.safetensors
run limit:ratio 3 "$LORATOOL" inspect bomb.tar.gz --archive-limit ratio=50 && says limit:ratio "ratio"
run limit:member 3 "$LORATOOL" merge base root.tar --archive-limit member=1K -o m.safetensors && says limit:member "member"
run limit:bad-option 2 "$LORATOOL" inspect root.tar --archive-limit bogus=1
# the later option wins: entries are then within the limit (the archive holds no adapter: exit 3 for that)
run limit:later-option-wins 3 "$LORATOOL" merge base h_entries.tar --archive-limit entries=100 --archive-limit entries=5000 \
    -o m_ent.safetensors && says limit:later-option-wins "holds no adapter or model files"

# ---- archive outputs ----
run write:resize-dir 0 "$LORATOOL" resize adapter --rank 2 -o resized
for ext in zip tar tar.gz tgz tar.xz tar.zst tar.bz2; do
    run "write:$ext" 0 "$LORATOOL" resize adapter --rank 2 -o "resized.$ext" || continue
    run "write:$ext-again" 0 "$LORATOOL" resize root.tar --rank 2 -o "again.$ext" || continue
    if ! cmp -s "resized.$ext" "again.$ext"; then fail "write:$ext" "two runs gave different bytes"; continue; fi
    run "write:$ext-read" 0 "$LORATOOL" merge base "resized.$ext" -o "mr_$ext.safetensors" || continue
    run "write:$ext-dir" 0 "$LORATOOL" merge base resized -o mr_dir.safetensors || continue
    same "write:$ext" "mr_$ext.safetensors" mr_dir.safetensors
    # readable by other tools, with the reproducible entry fields
    if $py - "resized.$ext" <<'PY'; then pass "write:$ext-foreign-reader"; else fail "write:$ext-foreign-reader" "see above"; fi
import sys, tarfile, zipfile, subprocess, io
p = sys.argv[1]
files = open("resized/adapter_model.safetensors", "rb").read(), open("resized/adapter_config.json", "rb").read()
if p.endswith(".zip"):
    z = zipfile.ZipFile(p)
    names = z.namelist()
    got = z.read("adapter_model.safetensors"), z.read("adapter_config.json")
    modes = [(i.external_attr >> 16) & 0o777 for i in z.infolist()]
else:
    if p.endswith(".tar.zst"):
        data = subprocess.run(["zstd", "-dc", p], capture_output=True, check=True).stdout
        t = tarfile.open(fileobj=io.BytesIO(data))
    else:
        t = tarfile.open(p)
    names = t.getnames()
    got = t.extractfile("adapter_model.safetensors").read(), t.extractfile("adapter_config.json").read()
    modes = [m.mode & 0o777 for m in t.getmembers()]
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in t.getmembers()), "owner/time not zero"
assert names == sorted(names), names
assert "adapter_model.safetensors" in names and "adapter_config.json" in names, names
assert got == files, "member bytes differ from the directory output"
assert all(m == 0o644 for m in modes), modes
PY
done
run write:epoch 0 env SOURCE_DATE_EPOCH=1700000000 "$LORATOOL" resize adapter --rank 2 -o epoch.tar
if $py -c "import tarfile,sys; sys.exit(0 if all(m.mtime == 1700000000 for m in tarfile.open('epoch.tar')) else 1)"; then
    pass write:epoch
else fail write:epoch "member times are not SOURCE_DATE_EPOCH"; fi
run write:combine 0 "$LORATOOL" combine "adapter:0.5" "root_py.zip:0.5" -o comb.tar.gz &&
    if tar -tzf comb.tar.gz | grep -q adapter_model.safetensors; then pass write:combine; else fail write:combine "no weights"; fi
run write:extract 0 "$LORATOOL" extract base ref.safetensors --rank 2 -o ext.zip &&
    if $py -c "import zipfile; zipfile.ZipFile('ext.zip').read('adapter_model.safetensors')"; then pass write:extract; else
        fail write:extract "no readable ext.zip"; fi
if ls -A | grep -q '\.stage-\|\.tmp-'; then fail write:no-leftovers "$(ls -A | grep '\.stage-\|\.tmp-')"; else pass write:no-leftovers; fi
run write:not-over-input 2 "$LORATOOL" resize root_py.zip --rank 2 -o root_py.zip && pass write:not-over-input

exit $failed
