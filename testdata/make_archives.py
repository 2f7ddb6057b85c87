#!/usr/bin/env python3
"""Archives for tests/test_archive.c and the fuzz seeds of fuzz_archive:
the demo adapter (testdata/demo/adapter) packed by peers, not by loratool
(Python's zipfile/tarfile, GNU tar with gzip/xz/zstd/bzip2, Info-ZIP zip),
and hostile archives.

    python3 testdata/make_archives.py OUTDIR

OUTDIR/good/<layout>-<maker>.<kind>   layout: root (files at the root),
                                      folder (run/...), two (a/..., b/...),
                                      deep (x/ckpt-500/... beside x/other.txt)
OUTDIR/hostile/<name>                 each refused by lt_archive_open or
                                      lt_archive_extract (tests/test_archive.c
                                      says how)
OUTDIR/sparse/{gnu,pax}.tar, gnu.tar.gz  a sparse file (tar -S)
OUTDIR/torch.zip                      a torch.save zip: not an archive
OUTDIR/src/                           the adapter's files, for comparison

Everything is small (the zero bomb is a zstd frame written block by block,
64 KiB standing for 2 GiB), and made in a few seconds.
"""
import gzip
import io
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib

OUT = os.path.abspath(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "demo", "adapter")
GOOD = os.path.join(OUT, "good")
HOSTILE = os.path.join(OUT, "hostile")
STAGE = os.path.join(OUT, "stage")

shutil.rmtree(OUT, ignore_errors=True)
for d in (GOOD, HOSTILE, STAGE):
    os.makedirs(d)
shutil.copytree(SRC, os.path.join(OUT, "src"))
FILES = sorted(os.listdir(SRC))
DATA = {f: open(os.path.join(SRC, f), "rb").read() for f in FILES}

# the layouts as folder -> list of (member name, bytes)
LAYOUTS = {
    "root": [(f, DATA[f]) for f in FILES],
    "folder": [("run/" + f, DATA[f]) for f in FILES],
    "two": [(p + "/" + f, DATA[f]) for p in ("a", "b") for f in FILES],
    "deep": [("x/ckpt-500/" + f, DATA[f]) for f in FILES] + [("x/other.txt", b"not an adapter\n")],
}


def stage(layout):
    """The layout as a directory tree (for the command-line tools)."""
    root = os.path.join(STAGE, layout)
    if not os.path.isdir(root):
        for name, data in LAYOUTS[layout]:
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    return root


def tops(layout):
    return sorted({name.split("/")[0] for name, _ in LAYOUTS[layout]})


def run(args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def py_tar(path, members, mode="w", fmt=tarfile.PAX_FORMAT, dirs=True):
    with tarfile.open(path, mode, format=fmt) as t:
        seen = set()
        for name, data in members:
            parts = name.split("/")[:-1]
            for i in range(len(parts)):
                d = "/".join(parts[:i + 1])
                if dirs and d not in seen:
                    seen.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    t.addfile(ti)
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))


def py_zip(path, members, method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members:
            z.writestr(name, data)


for layout, members in LAYOUTS.items():
    g = lambda maker, kind: os.path.join(GOOD, "%s-%s.%s" % (layout, maker, kind))
    py_zip(g("py", "zip"), members)
    py_zip(g("pystored", "zip"), members, zipfile.ZIP_STORED)
    py_tar(g("pyustar", "tar"), members, fmt=tarfile.USTAR_FORMAT)
    py_tar(g("pypax", "tar"), members, fmt=tarfile.PAX_FORMAT)
    py_tar(g("pygnu", "tar"), members, fmt=tarfile.GNU_FORMAT)
    py_tar(g("py", "tar.gz"), members, "w:gz")
    py_tar(g("py", "tar.xz"), members, "w:xz")
    py_tar(g("py", "tar.bz2"), members, "w:bz2")
    root = stage(layout)
    names = tops(layout)
    run(["zip", "-q", "-r", "-X", g("infozip", "zip")] + names, root)
    run(["tar", "-cf", g("gnu", "tar")] + names, root)
    run(["tar", "-czf", g("gnu", "tar.gz")] + names, root)
    run(["tar", "-cJf", g("gnu", "tar.xz")] + names, root)
    run(["tar", "--zstd", "-cf", g("gnu", "tar.zst")] + names, root)
    run(["tar", "-cjf", g("gnu", "tar.bz2")] + names, root)
# "./"-prefixed names, as `tar -C dir .` writes them
run(["tar", "-czf", os.path.join(GOOD, "root-gnudot.tar.gz"), "."], stage("root"))
# .tgz is .tar.gz by another name
shutil.copy(os.path.join(GOOD, "root-gnu.tar.gz"), os.path.join(GOOD, "root-gnu.tgz"))
# an empty tar: an archive with no members (an empty zip is refused:
# libarchive's zip reader does not read one)
py_tar(os.path.join(GOOD, "empty.tar"), [])
# non-ASCII names (zip's UTF-8 flag, pax's path record)
py_zip(os.path.join(GOOD, "unicode.zip"), [("caf\u00e9/adapter_config.json", DATA["adapter_config.json"])])
py_tar(os.path.join(GOOD, "unicode.tar"), [("caf\u00e9/adapter_config.json", DATA["adapter_config.json"])])


# tar sparse files (GNU and pax, -S): 5 MiB with "head" at 0, "tail-data"
# at 3 MiB, holes elsewhere
SPARSE = os.path.join(OUT, "sparse")
os.makedirs(SPARSE)
with open(os.path.join(STAGE, "sparse.bin"), "wb") as f:
    f.write(b"head")
    f.seek(3 << 20)
    f.write(b"tail-data")
    f.truncate(5 << 20)
run(["tar", "-S", "--format=gnu", "-cf", os.path.join(SPARSE, "gnu.tar"), "sparse.bin"], STAGE)
run(["tar", "-S", "--format=pax", "-cf", os.path.join(SPARSE, "pax.tar"), "sparse.bin"], STAGE)
run(["tar", "-S", "--format=gnu", "-czf", os.path.join(SPARSE, "gnu.tar.gz"), "sparse.bin"], STAGE)


# ---- hostile ----
def h(name):
    return os.path.join(HOSTILE, name)


def tar_special(path, entries, fmt=tarfile.GNU_FORMAT, mode="w"):
    """entries: (name, type, data or link target)."""
    with tarfile.open(path, mode, format=fmt) as t:
        for name, typ, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.type = typ
            if typ == tarfile.REGTYPE:
                ti.size = len(extra)
                t.addfile(ti, io.BytesIO(extra))
            else:
                if typ in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    ti.linkname = extra
                if typ in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                    ti.devmajor, ti.devminor = 1, 3
                t.addfile(ti)


cfg = DATA["adapter_config.json"]
REG, SYM, LNK = tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
tar_special(h("traversal.tar"), [("adapter_config.json", REG, cfg), ("../x", REG, b"x")])
tar_special(h("traversal-inner.tar"), [("a/../../x", REG, b"x")])
tar_special(h("absolute.tar"), [("/tmp/x", REG, b"x")])
tar_special(h("symlink.tar"), [("adapter_config.json", REG, cfg), ("link", SYM, "adapter_config.json")])
tar_special(h("symlink-escape.tar"), [("adapter_model.safetensors", SYM, "/etc/passwd")])
tar_special(h("hardlink.tar"), [("adapter_config.json", REG, cfg), ("copy.json", LNK, "adapter_config.json")])
tar_special(h("hardlink-escape.tar"), [("adapter_model.safetensors", LNK, "../../etc/passwd")])
tar_special(h("fifo.tar"), [("pipe", tarfile.FIFOTYPE, None)])
tar_special(h("chardev.tar"), [("null", tarfile.CHRTYPE, None)])
tar_special(h("duplicate.tar"), [("adapter_config.json", REG, cfg), ("adapter_config.json", REG, b"{}")])
tar_special(h("duplicate-dot.tar"), [("a/adapter_config.json", REG, cfg), ("./a/adapter_config.json", REG, b"{}")])
tar_special(h("file-and-folder.tar"), [("a", REG, b"x"), ("a/b", REG, b"y")])
with zipfile.ZipFile(h("traversal.zip"), "w") as z:
    z.writestr("../x", b"x")
with zipfile.ZipFile(h("absolute.zip"), "w") as z:
    z.writestr("/tmp/x", b"x")
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")   # zipfile warns about the duplicate
    with zipfile.ZipFile(h("duplicate.zip"), "w") as z:
        z.writestr("adapter_config.json", cfg)
        z.writestr("adapter_config.json", b"{}")
# a zip symlink: Unix mode S_IFLNK in the external attributes
with zipfile.ZipFile(h("symlink.zip"), "w") as z:
    zi = zipfile.ZipInfo("adapter_model.safetensors")
    zi.create_system = 3
    zi.external_attr = (0o120777 << 16)
    z.writestr(zi, "/etc/passwd")


def set_encrypted(path):
    """Set the 'encrypted' flag bit of every member (local and central
    headers), as a zip made with a password has it."""
    b = bytearray(open(path, "rb").read())
    for sig, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = b.find(sig)
        while i >= 0:
            b[i + at] |= 1
            i = b.find(sig, i + 4)
    open(path, "wb").write(bytes(b))


py_zip(h("encrypted-flag.zip"), [("adapter_config.json", cfg)], zipfile.ZIP_STORED)
set_encrypted(h("encrypted-flag.zip"))
run(["zip", "-q", "-X", "-P", "secret", h("encrypted.zip"), "adapter_config.json"], stage("root"))


def zstd_zero_frame(prefix, zeros):
    """A zstd frame (RFC 8878): PREFIX as one raw block, then ZEROS zero
    bytes as RLE blocks of 128 KiB, 4 bytes each."""
    out = bytearray(struct.pack("<I", 0xFD2FB528))
    out += bytes([0x00, 7 << 3])        # no content size, no checksum; window 2^(10+7) = 128 KiB
    blocks = [(0, len(prefix), prefix)]
    step = 128 << 10
    while zeros > 0:
        n = min(step, zeros)
        blocks.append((1, n, b"\0"))
        zeros -= n
    for i, (typ, size, payload) in enumerate(blocks):
        last = 1 if i == len(blocks) - 1 else 0
        out += struct.pack("<I", last | (typ << 1) | (size << 3))[:3] + payload
    return bytes(out)


# 2 GiB of zeros as one tar member (then the end-of-archive blocks)
ti = tarfile.TarInfo("zeros.bin")
ti.size = 2 << 30
header = ti.tobuf(format=tarfile.USTAR_FORMAT)
with open(h("bomb.tar.zst"), "wb") as f:
    f.write(zstd_zero_frame(header, (2 << 30) + 1024))
# 32 MiB of zeros deflated in a zip (about 1000:1, deflate's most)
with zipfile.ZipFile(h("bomb.zip"), "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    with z.open("zeros.bin", "w", force_zip64=False) as m:
        block = bytes(1 << 20)
        for _ in range(32):
            m.write(block)

# 100 000 empty members: their headers, compressed
empty = tarfile.TarInfo("e")
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
    for i in range(100000):
        ti = tarfile.TarInfo("e/%06d" % i)
        t.addfile(ti)
with open(h("many.tar.gz"), "wb") as f:
    f.write(gzip.compress(buf.getvalue(), compresslevel=1, mtime=0))

# a member whose header claims 17 GiB (more than the adapter limit)
ti = tarfile.TarInfo("huge.bin")
ti.size = 17 << 30
open(h("huge-member.tar"), "wb").write(ti.tobuf(format=tarfile.GNU_FORMAT))

# truncated archives: cut inside the second member's data
for src, name in (("root-pyustar.tar", "truncated.tar"), ("root-gnu.tar.gz", "truncated.tar.gz"),
                  ("root-gnu.tar.xz", "truncated.tar.xz"), ("root-py.zip", "truncated.zip"),
                  ("root-gnu.tar.zst", "truncated.tar.zst")):
    data = open(os.path.join(GOOD, src), "rb").read()
    open(h(name), "wb").write(data[:len(data) * 2 // 3])

# wrong header checksums: the first header, and the second
good = bytearray(open(os.path.join(GOOD, "root-pyustar.tar"), "rb").read())
first = bytearray(good)
first[148:156] = b"0000000\0"
open(h("badsum-first.tar"), "wb").write(bytes(first))
second = bytearray(good)
at = 512 + ((len(DATA[FILES[0]]) + 511) // 512) * 512
second[at + 148:at + 156] = b"0000000\0"
open(h("badsum-second.tar"), "wb").write(bytes(second))
# a corrupted member in a zip (its CRC no longer matches)
z = bytearray(open(os.path.join(GOOD, "root-pystored.zip"), "rb").read())
i = z.find(b'"r"')
z[i + 1] ^= 0x01
open(h("badcrc.zip"), "wb").write(bytes(z))
# gzip of something that is not a tar; a tar compressed twice
open(h("not-tar.gz"), "wb").write(gzip.compress(cfg, mtime=0))
open(h("twice.tar.gz.gz"), "wb").write(gzip.compress(open(os.path.join(GOOD, "root-gnu.tar.gz"), "rb").read(), mtime=0))

py_zip(h("empty.zip"), [])

# ---- a torch.save zip: not an archive ----
with zipfile.ZipFile(os.path.join(OUT, "torch.zip"), "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    z.writestr("archive/version", b"3\n")
    z.writestr("archive/data/0", bytes(16))

shutil.rmtree(STAGE)
print("archives: %d good, %d hostile" % (len(os.listdir(GOOD)), len(os.listdir(HOSTILE))))
