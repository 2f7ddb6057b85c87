"""clitest.py - what the Python-driven CLI test scripts share: a PASS/FAIL
case counter, running loratool, reading safetensors outputs, the one-line
error check, and writing a PEFT adapter directory.  Test scaffolding only:
every expected value stays in the scripts."""
import json
import os
import struct
import subprocess

import numpy as np
import stwrite


class Checks:
    """Prints one PASS/FAIL line per case; status() is the script's exit code."""

    def __init__(self, tool):
        self.tool = tool
        self.failures = 0

    def case(self, name, ok, why=""):
        print("PASS %s" % name if ok else "FAIL %s: %s" % (name, why))
        self.failures += not ok

    def run(self, *args):
        return subprocess.run([self.tool] + [str(a) for a in args], capture_output=True, text=True)

    def status(self):
        return 1 if self.failures else 0


def safetensors_raw(path):
    """{tensor name: its bytes} of a safetensors file (metadata left out)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}


def safetensors_f32(path):
    """{tensor name: float32 array of its shape} of an all-F32 safetensors file."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    raw = safetensors_raw(path)
    return {k: np.frombuffer(raw[k], dtype=np.float32).reshape(v["shape"]) for k, v in h.items() if k != "__metadata__"}


def one_line_error(p, rc, *words, prefix=True):
    """Exit code RC and a single stderr line (starting 'loratool: ' unless
    prefix is False) naming every one of WORDS."""
    lines = p.stderr.strip().split("\n")
    return (p.returncode == rc and len(lines) == 1 and (not prefix or lines[0].startswith("loratool: "))
            and all(w in lines[0] for w in words))


def write_adapter(d, tensors, config):
    """A PEFT adapter directory: adapter_model.safetensors + adapter_config.json."""
    os.makedirs(d, exist_ok=True)
    stwrite.write(os.path.join(d, "adapter_model.safetensors"), tensors)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(config, f)
