"""Make the loralib (microsoft/LoRA) fixtures in this directory with torch.

Run once, by hand, with Debian's python3-torch (1.13):

    /usr/bin/python3 testdata/loralib/make_loralib_fixtures.py testdata/loralib

and commit what it writes, so `make test` needs no torch.  It re-creates
the layers of loralib (loralib/layers.py, written here from the facts in
spec/loralib.md, not copied): Linear, Embedding and MergedLinear with their
lora_A / lora_B parameters, fan_in_fan_out, and the merged layer's grouped
conv1d + zero_pad, and ConvLoRA (Conv1d/2d/3d, grouped too); builds small
models shaped like GPT-2, RoBERTa with a classifier head, a fused-QKV
encoder and a conv stack; fills the LoRA factors with random
values (B is zero after loralib's init, which would test nothing); and
torch.save()s state dicts as loralib.lora_state_dict() makes them.

Per case it writes:
  <case>.pt            torch.save of the state dict (zip format)
  <case>_base.safetensors   the base weights (F32)
  <case>.npz           the same state dict as float32 arrays, plus
                       "delta:<module>" = the float64 delta torch computes
                       by loralib's own formula (conv1d with groups, zero_pad,
                       transposes), for the numpy reference to check itself.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import stwrite  # noqa: E402


class LoraLinear(torch.nn.Module):
    """loralib.Linear: weight [out, in] ([in, out] with fan_in_fan_out)."""

    def __init__(self, n_in, n_out, r, fan_in_fan_out=False, bias=True):
        super().__init__()
        shape = (n_in, n_out) if fan_in_fan_out else (n_out, n_in)
        self.weight = torch.nn.Parameter(torch.randn(shape) * 0.5)
        self.bias = torch.nn.Parameter(torch.randn(n_out) * 0.1) if bias else None
        self.lora_A = torch.nn.Parameter(torch.randn(r, n_in))
        self.lora_B = torch.nn.Parameter(torch.randn(n_out, r))
        self.fan_in_fan_out = fan_in_fan_out

    def delta(self, alpha):
        r = self.lora_A.shape[0]
        d = self.lora_B.double() @ self.lora_A.double() * (alpha / r)
        return d.T if self.fan_in_fan_out else d


class LoraEmbedding(torch.nn.Module):
    """loralib.Embedding: A [r, num_embeddings], B [dim, r], delta (B A)^T."""

    def __init__(self, num, dim, r):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(num, dim))
        self.lora_A = torch.nn.Parameter(torch.randn(r, num))
        self.lora_B = torch.nn.Parameter(torch.randn(dim, r))

    def delta(self, alpha):
        r = self.lora_A.shape[0]
        return (self.lora_B.double() @ self.lora_A.double()).T * (alpha / r)


class LoraMergedLinear(torch.nn.Module):
    """loralib.MergedLinear: one fused weight, LoRA on the enabled groups."""

    def __init__(self, n_in, n_out, r, enable_lora, fan_in_fan_out=False):
        super().__init__()
        shape = (n_in, n_out) if fan_in_fan_out else (n_out, n_in)
        self.weight = torch.nn.Parameter(torch.randn(shape) * 0.5)
        self.bias = torch.nn.Parameter(torch.randn(n_out) * 0.1)
        on = sum(enable_lora)
        self.lora_A = torch.nn.Parameter(torch.randn(r * on, n_in))
        self.lora_B = torch.nn.Parameter(torch.randn(n_out // len(enable_lora) * on, r))
        self.enable_lora = enable_lora
        self.fan_in_fan_out = fan_in_fan_out
        self.n_out = n_out

    def delta(self, alpha):
        r = self.lora_B.shape[1]
        # the grouped conv1d of merge_AB: input lora_A as one sequence of
        # length in with r*on channels, kernel lora_B [rows, r, 1]
        ab = F.conv1d(self.lora_A.double().unsqueeze(0), self.lora_B.double().unsqueeze(-1),
                      groups=sum(self.enable_lora)).squeeze(0)
        # zero_pad: the rows of the enabled groups, zeros elsewhere
        mask = torch.zeros(len(self.enable_lora), self.n_out // len(self.enable_lora), dtype=torch.bool)
        mask[torch.tensor(self.enable_lora), :] = True
        full = torch.zeros(self.n_out, ab.shape[1], dtype=torch.float64)
        full[mask.view(-1)] = ab
        full = full * (alpha / r)
        return full.T if self.fan_in_fan_out else full


class LoraConv(torch.nn.Module):
    """loralib.Conv1d/Conv2d/Conv3d (ConvLoRA): a conv with one int
    kernel_size k, lora_A [r k, in k], lora_B [out / groups k, r k]; merged
    delta (B @ A).view(weight.shape) * alpha / r.  The conv's weight and
    bias are this module's own (loralib registers them on the wrapper)."""

    def __init__(self, dims, n_in, n_out, k, r, groups=1):
        super().__init__()
        conv = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[dims](n_in, n_out, k, groups=groups)
        self.weight = torch.nn.Parameter(conv.weight.detach().clone())
        self.bias = torch.nn.Parameter(conv.bias.detach().clone())
        self.lora_A = torch.nn.Parameter(torch.randn(r * k, n_in * k))
        self.lora_B = torch.nn.Parameter(torch.randn(n_out // groups * k, r * k))
        self.r = r

    def delta(self, alpha):
        return (self.lora_B.double() @ self.lora_A.double()).view(self.weight.shape) * (alpha / self.r)


def save_case(out, case, base, layers, extra, alpha, with_delta=True):
    """base: dict name -> tensor; layers: dict module -> lora layer;
    extra: dict name -> tensor saved next to the LoRA factors."""
    state = {}
    for name, layer in layers.items():
        base[name + ".weight"] = layer.weight.detach()
        if getattr(layer, "bias", None) is not None:
            base[name + ".bias"] = layer.bias.detach()
        state[name + ".lora_A"] = layer.lora_A.detach().clone()
        state[name + ".lora_B"] = layer.lora_B.detach().clone()
    state.update(extra)
    torch.save(state, os.path.join(out, case + ".pt"))
    stwrite.write(os.path.join(out, case + "_base.safetensors"),
                  [(k, v.numpy().astype(np.float32)) for k, v in sorted(base.items())])
    arrays = {k: v.numpy().astype(np.float32) for k, v in state.items()}
    for name, layer in layers.items():
        if with_delta:
            arrays["delta:" + name] = layer.delta(alpha).detach().numpy()
    np.savez(os.path.join(out, case + ".npz"), **arrays)


def gpt2(out):
    """GPT-2 shapes (Conv1D weights [in, out]): MergedLinear c_attn with
    enable_lora [True, False, True] and fan_in_fan_out, Linear c_proj with
    fan_in_fan_out (square: needs --fan-in-fan-out), Embedding on wte."""
    d, vocab, pos = 16, 40, 8
    base = {"transformer.wpe.weight": torch.randn(pos, d), "transformer.ln_f.weight": torch.ones(d),
            "transformer.ln_f.bias": torch.zeros(d)}
    layers = {"transformer.wte": LoraEmbedding(vocab, d, 4)}
    for i in range(2):
        p = f"transformer.h.{i}."
        layers[p + "attn.c_attn"] = LoraMergedLinear(d, 3 * d, 4, [True, False, True], fan_in_fan_out=True)
        layers[p + "attn.c_proj"] = LoraLinear(d, d, 4, fan_in_fan_out=True)
        base[p + "mlp.c_fc.weight"] = torch.randn(d, 4 * d)
        base[p + "mlp.c_fc.bias"] = torch.randn(4 * d)
        base[p + "ln_1.weight"] = torch.ones(d)
    save_case(out, "gpt2", base, layers, {}, 32.0)


def roberta(out, case, bias_mode):
    """RoBERTa shapes: Linear on query and value (the paper's setting);
    'head' saves the classifier head (as the NLU example's checkpoints do),
    'lora_only' saves the LoRA layers' biases (lora_state_dict bias mode)."""
    d, labels = 16, 3
    base = {"classifier.dense.weight": torch.randn(d, d), "classifier.dense.bias": torch.randn(d),
            "classifier.out_proj.weight": torch.randn(labels, d), "classifier.out_proj.bias": torch.randn(labels)}
    layers = {}
    for i in range(2):
        p = f"roberta.encoder.layer.{i}.attention."
        layers[p + "self.query"] = LoraLinear(d, d, 4)
        layers[p + "self.value"] = LoraLinear(d, d, 4)
        base[p + "self.key.weight"] = torch.randn(d, d)
        base[p + "output.dense.weight"] = torch.randn(d, d)
    extra = {}
    if bias_mode == "head":
        for k in ("classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight",
                  "classifier.out_proj.bias"):
            extra[k] = base[k] + torch.randn(base[k].shape) * 0.01   # fine-tuned head
    else:
        for name in layers:
            extra[name + ".bias"] = layers[name].bias.detach() + 0.25  # trained bias
    save_case(out, case, base, layers, extra, 16.0)


def fused_qkv(out):
    """A fused QKV nn.Linear [3d, d] (no fan_in_fan_out), every group
    enabled: the groups follow from the base shape, no mask needed."""
    d = 16
    layers = {f"encoder.{i}.qkv": LoraMergedLinear(d, 3 * d, 2, [True, True, True]) for i in range(2)}
    save_case(out, "fused_qkv", {"encoder.norm.weight": torch.ones(d)}, layers, {}, 8.0)


def conv(out):
    """A small UNet-like stack of loralib conv layers, groups 1: Conv2d
    3x3 (r 2) and 1x1, Conv1d and Conv3d with kernel_size 1 (the only
    kernel their view allows), next to a Linear; bias='lora_only'."""
    layers = {"conv_in": LoraConv(2, 3, 8, 3, 2), "down.0.conv": LoraConv(2, 8, 6, 3, 1),
              "down.0.proj": LoraConv(2, 6, 4, 1, 2), "temporal.mix": LoraConv(1, 4, 5, 1, 2),
              "volume.mix": LoraConv(3, 4, 3, 1, 1), "head.fc": LoraLinear(12, 5, 2)}
    extra = {name + ".bias": layers[name].bias.detach() + 0.25 for name in ("conv_in", "down.0.conv")}
    save_case(out, "conv", {"norm.weight": torch.ones(8)}, layers, extra, 4.0)


def conv_grouped(out):
    """Grouped ConvLoRA: Conv2d 3x3 with groups 2, a depthwise one (groups =
    in_channels), and a grouped 2x2 one.  loralib's view lays (B @ A) over
    the weight's elements; PEFT has no form for it (convert refuses)."""
    layers = {"block.conv": LoraConv(2, 4, 8, 3, 2, groups=2), "block.depthwise": LoraConv(2, 4, 8, 3, 1, groups=4),
              "block.pair": LoraConv(2, 6, 6, 2, 3, groups=3)}
    save_case(out, "conv_grouped", {}, layers, {}, 6.0)


def conv_unviewable(out):
    """A Conv1d with kernel_size 3: its factors have loralib's shapes but
    (B @ A) has 3 times the weight's elements, so loralib's own view fails
    (refused, never merged)."""
    save_case(out, "conv_unviewable", {}, {"seq.conv": LoraConv(1, 4, 6, 3, 2)}, {}, 2.0, with_delta=False)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(16)
    gpt2(out)
    roberta(out, "roberta_head", "head")
    roberta(out, "roberta_lora_only", "lora_only")
    fused_qkv(out)
    conv(out)
    conv_grouped(out)
    conv_unviewable(out)


if __name__ == "__main__":
    main()
