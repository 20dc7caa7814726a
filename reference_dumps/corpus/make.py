"""Regenerates driftscope's fault corpus: reference_dumps/corpus/ (see README.md).

Run from the repository root with a venv holding torch 2.15.0 and mindstudio-probe 26.2.0:

    python reference_dumps/corpus/make.py

Four small hand-written model families (decoder, encoder, cnn, mixer) run on the CPU as the
reference (fp32), as clean fp16/bf16 "device" runs (whole model and input cast), and as fault
runs where one torch API misbehaves inside ONE module only. Each run is a fresh child process
(msprobe's PrecisionDebugger is a per-process singleton), dumped once by msprobe (task tensor,
level L1) and once by driftscope's harness (level "op", native layout). The parent then measures
each case's ground truth from the dumps themselves and writes cases.json.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
LAYOUTS = ("msprobe", "native")

# ---------------------------------------------------------------------------------------------
# Runs and faults
# ---------------------------------------------------------------------------------------------

# A fault: the API it patches, the module it is active in, the device dtype, the kind a correct
# tool should report, and one sentence. `api` is (namespace, attribute): the dispatcher replaces
# that attribute for the whole run, but only misbehaves while the module's forward runs.
FAULTS = {
    # decoder
    "rmsnorm_fp16_stats": dict(
        family="decoder", api=("F", "rms_norm"), module="layers.1.post_attention_layernorm",
        dtype="float16", kind="introduced",
        fault="RMSNorm computes x*x, its mean (fp16 adds one element at a time) and rsqrt in fp16: "
              "the massive first token's sum of squares overflows to inf and its row comes out as zeros."),
    "softmax_no_max_fp16": dict(
        family="decoder", api=("F", "softmax"), module="layers.1.self_attn",
        dtype="float16", kind="non_finite",
        fault="Attention softmax computes exp(x)/sum(exp(x)) in fp16 without subtracting the row max: "
              "exp of logits above 11.1 overflows to inf, inf/inf is NaN."),
    "silu_hard_sigmoid": dict(
        family="decoder", api=("F", "silu"), module="layers.1.mlp",
        dtype="float16", kind="introduced",
        fault="SiLU computed as x * hardsigmoid(x) (a fast-math sigmoid)."),
    "rmsnorm_eps": dict(
        family="decoder", api=("F", "rms_norm"), module="layers.0.post_attention_layernorm",
        dtype="float16", kind="introduced",
        fault="RMSNorm's kernel uses eps=1e-2 instead of the 1e-6 the module passes."),
    "input_ids_differ": dict(
        family="decoder", api=None, module=None, dtype="float16", kind="inputs_differ",
        fault="The device run's token ids differ from the reference's in one position."),
    "weights_1pct_fp32": dict(
        family="decoder", api=None, module="layers.1.self_attn.o_proj",
        dtype="float32", kind="weights_differ",
        fault="The attention output projection of layer 1 has weights 1% larger (fp32 device)."),
    # encoder
    "layernorm_fp16_stats": dict(
        family="encoder", api=("F", "layer_norm"), module="layers.0.norm2",
        dtype="float16", kind="introduced",
        fault="LayerNorm computes mean and variance (E[x^2]-E[x]^2) in fp16, adding one element at a "
              "time, and normalises in fp16."),
    "layernorm_eps": dict(
        family="encoder", api=("F", "layer_norm"), module="layers.1.norm1",
        dtype="float16", kind="introduced",
        fault="LayerNorm's kernel uses eps=1e-2 instead of the 1e-5 the module passes."),
    "gelu_tanh_fp32": dict(
        family="encoder", api=("F", "gelu"), module="layers.1.ffn",
        dtype="float32", kind="introduced",
        fault="The FFN's erf GELU is computed with the tanh approximation (fp32 device)."),
    "dropout_training": dict(
        family="encoder", api=("F", "dropout"), module="layers.0",
        dtype="float16", kind="introduced",
        fault="Dropout (p=0.1) after layer 0's attention runs in training mode."),
    "v_proj_transposed": dict(
        family="encoder", api=("F", "linear"), module="layers.1.self_attn.v_proj",
        dtype="float16", kind="scrambled",
        fault="The value projection's output is written transposed ([S,H] bytes read as [H,S])."),
    # cnn
    "batchnorm_fp16_stats": dict(
        family="cnn", api=("F", "batch_norm"), module="bn2",
        dtype="float16", kind="introduced",
        fault="Eval BatchNorm folds its statistics in fp16: scale = w/sqrt(var+eps), "
              "shift = b - mean*scale, y = x*scale + shift, every step rounded to fp16."),
    "conv_fp16_acc": dict(
        family="cnn", api=("F", "conv2d"), module="conv3",
        dtype="float16", kind="introduced",
        fault="conv3 (32 channels x 5x5 taps: 800 terms per output) accumulates in fp16, one term at a time."),
    "batchnorm_eps": dict(
        family="cnn", api=("F", "batch_norm"), module="bn3",
        dtype="float16", kind="introduced",
        fault="BatchNorm's kernel uses eps=1e-3 instead of the 1e-5 the module passes."),
    "conv_channels_last": dict(
        family="cnn", api=("F", "conv2d"), module="conv1",
        dtype="float16", kind="scrambled",
        fault="conv1's output is NHWC bytes read as NCHW."),
    # mixer
    "mixer_linear_fp16_acc": dict(
        family="mixer", api=("F", "linear"), module="blocks.1.channel.fc2",
        dtype="float16", kind="introduced",
        fault="A channel-MLP projection accumulates its dot products in fp16, one product at a time."),
    "tanh_fast": dict(
        family="mixer", api=("torch", "tanh"), module="blocks.0.channel",
        dtype="float16", kind="introduced",
        fault="tanh computed by the rational fast-math approximation x(27+x^2)/(27+9x^2)."),
    "mixer_input_differs": dict(
        family="mixer", api=None, module=None, dtype="float16", kind="inputs_differ",
        fault="The device run's input differs from the reference's in one token (+1.0)."),
    "mixer_weights_1pct_fp32": dict(
        family="mixer", api=None, module="blocks.0.token.fc2", dtype="float32", kind="weights_differ",
        fault="The token-mixing projection fc2 of block 0 has weights 1% larger (fp32 device)."),
}

# Variants: a power-of-two scale inside one module, in the reference and the device alike; fp32
# and bf16 hold the scaled values, fp16 does not.
VARIANTS = {
    "overflow": dict(family="cnn", module="block2_scale", scale=2.0**15, kind="overflow",
                     fault="Inside the block-2 scale module, activations are multiplied by 2^15 (and "
                           "divided back after a ReLU): fp32 and bf16 hold values up to ~1e5, fp16 "
                           "overflows to inf."),
    "underflow": dict(family="mixer", module="blocks.0.scaled", scale=2.0**-22, kind="underflow",
                      fault="Inside block 0's scale module, activations are multiplied by 2^-22 (and "
                            "multiplied back later): fp32 and bf16 hold them, fp16 rounds them to "
                            "subnormals and zero."),
}


def runs():
    """Every run: (family, run name, dtype, fault or None, variant or None)."""
    out = []
    for fam in ("decoder", "encoder", "cnn", "mixer"):
        out.append((fam, "ref", "float32", None, None))
        out.append((fam, "clean_fp16", "float16", None, None))
        out.append((fam, "clean_bf16", "bfloat16", None, None))
        for name, f in FAULTS.items():
            if f["family"] == fam:
                out.append((fam, name, f["dtype"], name, None))
        for vname, v in VARIANTS.items():
            if v["family"] == fam:
                out.append((fam, f"{vname}_ref", "float32", None, vname))
                out.append((fam, f"{vname}_fp16", "float16", None, vname))
                out.append((fam, f"{vname}_bf16", "bfloat16", None, vname))
    return out


# ---------------------------------------------------------------------------------------------
# Models (child side)
# ---------------------------------------------------------------------------------------------

def build(family, variant):
    """The model (fp32, deterministic weights) and its fp32 input."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)

    class Scale(nn.Module):
        """Multiplies by a constant: the variants' scale module (identity scale otherwise absent)."""

        def __init__(self, s):
            super().__init__()
            self.s = s

        def forward(self, x):
            return torch.mul(x, self.s)

    if family == "decoder":
        H, NH, HD, I, V, S, OFFSET = 16, 2, 8, 32, 32, 8, 40

        class RMSNorm(nn.Module):
            def __init__(self):
                super().__init__()
                self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(H))
                self.eps = 1e-6

            def forward(self, x):
                return F.rms_norm(x, (H,), self.weight, self.eps)

        def rotate_half(x):
            return torch.cat((-x[..., HD // 2:], x[..., : HD // 2]), dim=-1)

        class Attention(nn.Module):
            def __init__(self):
                super().__init__()
                self.q_proj = nn.Linear(H, H, bias=False)
                self.k_proj = nn.Linear(H, H, bias=False)
                self.v_proj = nn.Linear(H, H, bias=False)
                self.o_proj = nn.Linear(H, H, bias=False)
                with torch.no_grad():  # sharp attention: logits up to ~20
                    self.q_proj.weight.mul_(4.0)
                    self.k_proj.weight.mul_(4.0)

            def forward(self, x, cos, sin, mask):
                B = x.shape[0]
                q = self.q_proj(x).view(B, S, NH, HD).transpose(1, 2)
                k = self.k_proj(x).view(B, S, NH, HD).transpose(1, 2)
                v = self.v_proj(x).view(B, S, NH, HD).transpose(1, 2)
                q = q * cos + rotate_half(q) * sin
                k = k * cos + rotate_half(k) * sin
                scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(HD)
                scores = scores + mask
                p = F.softmax(scores, dim=-1)
                o = torch.matmul(p, v).transpose(1, 2).reshape(B, S, H)
                return self.o_proj(o)

        class MLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.gate_proj = nn.Linear(H, I, bias=False)
                self.up_proj = nn.Linear(H, I, bias=False)
                self.down_proj = nn.Linear(I, H, bias=False)
                self.act_fn = nn.SiLU()

            def forward(self, x):
                return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

        class Layer(nn.Module):
            def __init__(self):
                super().__init__()
                self.input_layernorm = RMSNorm()
                self.self_attn = Attention()
                self.post_attention_layernorm = RMSNorm()
                self.mlp = MLP()

            def forward(self, x, cos, sin, mask):
                x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
                return x + self.mlp(self.post_attention_layernorm(x))

        class Decoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed_tokens = nn.Embedding(V, H)
                self.layers = nn.ModuleList([Layer(), Layer()])
                self.norm = RMSNorm()
                self.lm_head = nn.Linear(H, V, bias=False)
                self.register_buffer("inv_freq", 1.0 / (10000.0 ** (torch.arange(0, HD, 2).float() / HD)))

            def forward(self, ids):
                x = self.embed_tokens(ids)
                dt = x.dtype
                # Rotary angles in the model dtype at positions 40..47: sin/cos of large arguments
                # (ill-conditioned: the angle's rounding is amplified by |x cot x|).
                pos = torch.arange(OFFSET, OFFSET + S).to(dt)
                ang = torch.outer(pos, self.inv_freq)
                ang = torch.cat((ang, ang), dim=-1)
                cos, sin = torch.cos(ang), torch.sin(ang)
                mask = torch.full((S, S), torch.finfo(dt).min, dtype=dt).triu(1)
                for layer in self.layers:
                    x = layer(x, cos, sin, mask)
                return self.lm_head(self.norm(x))

        model = Decoder()
        ids = torch.randint(1, V, (1, S))
        # Token 0 opens the sequence with a massive activation (as attention-sink tokens do in
        # real LLMs): its residual-stream values reach a few hundred, so its x*x sums exceed
        # fp16's range while fp32 statistics (the clean kernels) hold them.
        ids[0, 0] = 0
        with torch.no_grad():
            model.embed_tokens.weight[0].mul_(80.0)
        return model, ids

    if family == "encoder":
        H, NH, HD, I, S, B, IN = 16, 2, 8, 32, 8, 1, 8

        class Attention(nn.Module):
            def __init__(self):
                super().__init__()
                self.q_proj = nn.Linear(H, H)
                self.k_proj = nn.Linear(H, H)
                self.v_proj = nn.Linear(H, H)
                self.out_proj = nn.Linear(H, H)
                # A low softmax temperature: logits of a few tens, "softmax over large logits".
                self.scale = 4.0 / math.sqrt(HD)

            def forward(self, x):
                q = self.q_proj(x).view(B, S, NH, HD).transpose(1, 2)
                k = self.k_proj(x).view(B, S, NH, HD).transpose(1, 2)
                v = self.v_proj(x).view(B, S, NH, HD).transpose(1, 2)
                p = F.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
                o = torch.matmul(p, v).transpose(1, 2).reshape(B, S, H)
                return self.out_proj(o)

        class FFN(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(H, I)
                self.act = nn.GELU()
                self.fc2 = nn.Linear(I, H)

            def forward(self, x):
                return self.fc2(self.act(self.fc1(x)))

        class Layer(nn.Module):
            def __init__(self):
                super().__init__()
                self.norm1 = nn.LayerNorm(H, eps=1e-5)
                self.self_attn = Attention()
                self.dropout = nn.Dropout(0.1)
                self.norm2 = nn.LayerNorm(H, eps=1e-5)
                self.ffn = FFN()
                with torch.no_grad():
                    for n in (self.norm1, self.norm2):
                        n.weight.copy_(1.0 + 0.1 * torch.randn(H))
                        n.bias.copy_(0.1 * torch.randn(H))

            def forward(self, x):
                x = x + self.dropout(self.self_attn(self.norm1(x)))
                return x + self.ffn(self.norm2(x))

        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.in_proj = nn.Linear(IN, H)
                self.layers = nn.ModuleList([Layer(), Layer()])
                self.norm = nn.LayerNorm(H)
                self.head = nn.Linear(H, 4)
                with torch.no_grad():
                    self.in_proj.bias.add_(4.0)

            def forward(self, x):
                # The residual stream carries a mean of ~4 (in_proj's bias) over a spread of
                # ~1: LayerNorm's mean subtraction matters.
                x = self.in_proj(x)
                for layer in self.layers:
                    x = layer(x)
                return self.head(self.norm(x))

        model = Encoder()
        x = torch.randn(B, S, IN)
        return model, x

    if family == "cnn":
        def bn(c):
            m = nn.BatchNorm2d(c)
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.2 * torch.randn(c))
                m.bias.copy_(0.2 * torch.randn(c))
            m.momentum = 1.0  # calibrated below: running stats = the input's batch stats
            return m

        class CNN(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
                self.bn1 = bn(4)
                self.conv2 = nn.Conv2d(4, 32, 3, padding=1)
                self.bn2 = bn(32)
                self.conv3 = nn.Conv2d(32, 8, 5, stride=2, padding=2)
                self.bn3 = bn(8)
                self.fc = nn.Linear(8, 4)
                if variant == "overflow":
                    self.block2_scale = Scale(VARIANTS["overflow"]["scale"])
                    self.block2_unscale = Scale(1.0 / VARIANTS["overflow"]["scale"])

            def forward(self, x):
                x = F.relu(self.bn1(self.conv1(x)))
                x = self.conv2(x)
                if variant == "overflow":
                    x = self.block2_unscale(F.relu(self.block2_scale(x)))
                x = F.relu(self.bn2(x))
                x = F.relu(self.bn3(self.conv3(x)))
                x = F.avg_pool2d(x, 2)
                x = F.adaptive_avg_pool2d(x, 1).flatten(1)
                return self.fc(x)

        model = CNN()
        with torch.no_grad():
            model.conv2.bias.add_(6.0)  # conv2's outputs sit at ~6 +- 1: bn2 removes that offset
        x = torch.randn(1, 3, 8, 8)
        # Running statistics as a trained network has them: measured on the data (one
        # training-mode pass with momentum 1), so every BatchNorm centres and scales its input.
        with torch.no_grad():
            model.train()
            model(x)
        model.eval()
        return model, x

    if family == "mixer":
        T, C, TI, CI, B, OFFSET = 8, 8, 8, 256, 1, 16.0

        def gelu_tanh(x):
            # Written out: x^3 inside tanh, as many hand-written GELUs are.
            return 0.5 * x * (1.0 + torch.tanh(0.7978845608028654 * (x + 0.044715 * torch.pow(x, 3))))

        class TokenMLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(T, TI)
                self.fc2 = nn.Linear(TI, T)

            def forward(self, x):
                return self.fc2(gelu_tanh(self.fc1(x)))

        class ChannelMLP(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = nn.Linear(C, CI)
                self.fc2 = nn.Linear(CI, C)

            def forward(self, x):
                return self.fc2(torch.tanh(self.fc1(x)))

        class Block(nn.Module):
            def __init__(self, scaled):
                super().__init__()
                self.token = TokenMLP()
                self.channel = ChannelMLP()
                if scaled:
                    self.scaled = Scale(VARIANTS["underflow"]["scale"])
                    self.unscaled = Scale(1.0 / VARIANTS["underflow"]["scale"])
                self.has_scale = scaled

            def forward(self, x):
                # Centering the tokens around their mean: a subtraction with cancellation,
                # since x carries a constant offset of about 16.
                u = torch.sub(x, torch.mean(x, dim=-1, keepdim=True))
                x = x + self.token(u.transpose(1, 2)).transpose(1, 2)
                h = self.channel(u)
                if self.has_scale:
                    h = self.unscaled(torch.tanh(self.scaled(h)) * 4.0)
                return x + h

        class Mixer(nn.Module):
            def __init__(self):
                super().__init__()
                self.blocks = nn.ModuleList([Block(variant == "underflow"), Block(False)])
                self.head = nn.Linear(C, 4)

            def forward(self, x):
                for b in self.blocks:
                    x = b(x)
                return self.head(torch.mean(x, dim=1))

        model = Mixer()
        x = torch.randn(B, T, C) + OFFSET
        return model, x

    raise ValueError(family)


# ---------------------------------------------------------------------------------------------
# Fault implementations (run inside the patched API, in the device dtype)
# ---------------------------------------------------------------------------------------------

def harness_faults():
    """The harness's trap injection (python/driftscope/harness/faults.py, from the installed
    driftscope wheel)."""
    from driftscope.harness import faults

    return faults


def install_fault(model, name):
    """Injects the case's trap inside its module only."""
    owner, attr = FAULTS[name]["api"]
    api_module = "torch.nn.functional" if owner == "F" else "torch"
    return harness_faults().inject(model, FAULTS[name]["module"], api_module, attr, name)


def child(family, run, dtype_name, fault, variant, layout, out):
    import torch

    torch.set_num_threads(1)
    dtype = getattr(torch, dtype_name)
    model, inp = build(family, variant)
    if fault == "input_ids_differ":
        inp = inp.clone()
        inp[0, 3] = (inp[0, 3] + 7) % 64
    elif fault == "mixer_input_differs":
        inp = inp.clone()
        inp[0, 3, :] += 1.0
    elif fault in ("weights_1pct_fp32", "mixer_weights_1pct_fp32"):
        with torch.no_grad():
            model.get_submodule(FAULTS[fault]["module"]).weight.mul_(1.01)
    model = model.to(dtype).eval()
    if inp.is_floating_point():
        inp = inp.to(dtype)
    info = {}
    if fault is not None and FAULTS[fault]["api"] is not None:
        info["api"] = install_fault(model, fault)
    torch.manual_seed(1)  # dropout's mask, when a fault runs dropout in training mode
    with torch.no_grad():
        if layout == "msprobe":
            import torch.nn.functional as F
            from msprobe.pytorch import PrecisionDebugger

            config = {
                "task": "tensor", "dump_path": out, "rank": [], "step": [0], "level": "L1",
                "tensor": {"scope": [], "list": [], "data_mode": ["all"]},
            }
            cfg = os.path.join(os.path.dirname(out), "config.json")
            with open(cfg, "w") as fh:
                json.dump(config, fh)
            debugger = PrecisionDebugger(config_path=cfg)
            PrecisionDebugger.register_custom_api(F, "rms_norm", "Functional")
            debugger.start()
            model(inp)
            debugger.stop()
            debugger.step()
        else:
            from driftscope import harness as dh

            with dh.capture(model, out, level="op"):
                model(inp)
    info["first_fault_call"] = harness_faults().State.first_fault_call
    with open(os.path.join(os.path.dirname(out), "child_info.json"), "w") as fh:
        json.dump(info, fh)


# ---------------------------------------------------------------------------------------------
# Reading dumps back (parent side)
# ---------------------------------------------------------------------------------------------

class Dump:
    """One dump, either layout: ordered places, each with named tensors (role.index -> loader)."""

    def __init__(self, folder, layout):
        self.folder = folder
        self.layout = layout
        self.places = []  # [(place, {tensor_key: loader_info})]
        if layout == "msprobe":
            (d,) = [r for r, _, fs in os.walk(folder) if "dump.json" in fs]
            self.dir = d
            with open(os.path.join(d, "dump.json")) as fh:
                self.data = json.load(fh)["data"]
            for place, rec in self.data.items():
                tensors = {}
                for role in ("input_args", "input_kwargs", "output", "parameters"):
                    for key, r in _walk(rec.get(role, {} if role.endswith("kwargs") else [])):
                        if isinstance(r, dict) and "data_name" in r:
                            tensors[f"{role}.{key}"] = r["data_name"]
                self.places.append((place, tensors))
        else:
            with open(os.path.join(folder, "driftscope.json")) as fh:
                self.manifest = json.load(fh)
            byplace = {}
            order = []
            for e in sorted(self.manifest["entries"], key=lambda e: e["order"]):
                if e["place"] not in byplace:
                    byplace[e["place"]] = {}
                    order.append(e["place"])
                byplace[e["place"]][f"{e['role']}.{e['index']}"] = e
            self.places = [(p, byplace[p]) for p in order]
        self.index = {p: i for i, (p, _) in enumerate(self.places)}

    def load(self, ref):
        import numpy as np
        import torch

        if self.layout == "msprobe":
            return torch.load(os.path.join(self.dir, "dump_tensor_data", ref), map_location="cpu")
        dt = ref["dtype"]
        raw = open(os.path.join(self.folder, ref["file"]), "rb").read()
        tdt = getattr(torch, dt)
        t = torch.frombuffer(bytearray(raw), dtype=tdt) if raw else torch.empty(0, dtype=tdt)
        return t.reshape(ref["shape"])

    def outputs(self, place):
        return {k: v for k, v in self.places[self.index[place]][1].items() if k.startswith("output")}


def _walk(v, prefix=""):
    if isinstance(v, list):
        for i, x in enumerate(v):
            yield from _walk(x, f"{prefix}.{i}" if prefix else str(i))
    elif isinstance(v, dict) and "type" not in v:
        for k, x in v.items():
            yield from _walk(x, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix, v


def same(a, b):
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        return bool(torch.equal(torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0))
                    and torch.equal(torch.isnan(a), torch.isnan(b)))
    return bool(torch.equal(a, b))


def rel_l2(dev, ref):
    import torch

    dev = dev.double()
    ref = ref.double()
    if not torch.isfinite(dev).all():
        return math.inf
    n = torch.linalg.vector_norm(ref).item()
    d = torch.linalg.vector_norm(dev - ref).item()
    return d / n if n > 0 else (0.0 if d == 0 else math.inf)


def _arg(dump, r):
    """Rebuild one recorded msprobe argument for a float64 recompute."""
    import torch

    if isinstance(r, list):
        return [_arg(dump, x) for x in r]
    if isinstance(r, dict) and "data_name" in r:
        t = dump.load(r["data_name"])
        return t.double() if t.is_floating_point() else t
    if isinstance(r, dict) and "value" in r:
        return r["value"]
    if r is None or (isinstance(r, dict) and r.get("type") == "NoneType"):
        return None
    raise ValueError(f"cannot rebuild argument {r}")


def own_error(dump, place):
    """Relative L2 of the recorded output against the call recomputed in float64 from its recorded
    inputs (msprobe layout: dump.json holds the non-tensor arguments)."""
    import torch
    import torch.nn.functional as F

    rec = dump.data[place]
    prefix, api = place.split(".")[0], place.split(".")[1]
    fn = {"Functional": F, "Torch": torch, "Tensor": torch.Tensor}[prefix]
    fn = getattr(fn, api)
    args = [_arg(dump, a) for a in rec.get("input_args", [])]
    kwargs = {k: _arg(dump, v) for k, v in rec.get("input_kwargs", {}).items()}
    if api == "rms_norm" and len(args) >= 2 and isinstance(args[1], list):
        args[1] = tuple(args[1])
    with torch.no_grad():
        want = fn(*args, **kwargs)
    if isinstance(want, (tuple, list)):
        want = want[0]
    got = dump.load(rec["output"][0]["data_name"])
    return rel_l2(got, want)


def first_difference(dev, twin):
    """The first place (in dev's order) where any recorded tensor differs from twin's, and the
    role of the first such tensor. Places missing from twin count as different."""
    for place, tensors in dev.places:
        if place not in twin.index:
            return place, "missing"
        ttensors = twin.places[twin.index[place]][1]
        for key in sorted(tensors, key=lambda k: (not k.startswith("input"), k)):
            if key not in ttensors or not same(dev.load(tensors[key]), twin.load(ttensors[key])):
                return place, key
    return None, None


def identical_before(dev, twin, place):
    for p, tensors in dev.places[: dev.index[place]]:
        if p not in twin.index:
            return False
        tt = twin.places[twin.index[p]][1]
        for key, r in tensors.items():
            if key not in tt or not same(dev.load(r), twin.load(tt[key])):
                return False
    return True


def inputs_identical(dev, twin, place):
    """Whether every recorded input of `place` is bit-identical in twin."""
    tt = twin.places[twin.index[place]][1]
    for key, r in dev.places[dev.index[place]][1].items():
        if key.startswith("output"):
            continue
        if key not in tt or not same(dev.load(r), twin.load(tt[key])):
            return False
    return True


ILL_CONDITIONED = ("sin", "cos", "softmax", "sub", "pow")


def ill_conditioned(family, layout, ref_run, run):
    """For a clean case: each ill-conditioned call's error against the reference (relative L2)
    next to its own error, both measured on the msprobe dump of the run (the native dump holds
    the same tensors). Shows that these calls amplify inherited error while computing correctly."""
    if layout != "msprobe":
        return {}
    dev = Dump(run_folder(family, "msprobe", run), "msprobe")
    ref = Dump(run_folder(family, "msprobe", ref_run), "msprobe")
    out = {}
    for place, tensors in dev.places:
        if place.split(".")[1] not in ILL_CONDITIONED or place not in ref.index:
            continue
        key = next(k for k in tensors if k.startswith("output"))
        rkey = ref.places[ref.index[place]][1].get(key)
        err = rel_l2(dev.load(tensors[key]), ref.load(rkey)) if rkey else None
        out[place] = {"err_vs_ref": err, "own_err": own_error(dev, place)}
    return {"ill_conditioned": out} if out else {}


def first_range_loss(dev, ref, kind):
    """The first place whose output shows the variant's range loss against the reference:
    overflow: an inf on the device where the reference is finite; underflow: over half of the
    reference's nonzero magnitudes are below fp16's smallest normal (6.1e-5) and the device
    output's relative L2 error against the reference exceeds 10 fp16 ulps (5e-3): the range
    loss matters. (The clean runs hold outputs with many tiny values, 0.044715 x^3 in the
    mixer's GELU, that fp16 keeps well enough as subnormals.)"""
    import torch

    for place, tensors in dev.places:
        for key, r in tensors.items():
            if not key.startswith("output") or place not in ref.index:
                continue
            rr = ref.places[ref.index[place]][1].get(key)
            if rr is None:
                continue
            d, f = dev.load(r), ref.load(rr)
            if not (d.is_floating_point() and f.is_floating_point()) or d.shape != f.shape:
                continue
            if kind == "overflow" and bool((torch.isinf(d) & torch.isfinite(f)).any()):
                return place
            if kind == "underflow":
                nz = f[f != 0].abs()
                if (nz.numel() and (nz < 6.103515625e-05).float().mean().item() > 0.5
                        and rel_l2(d, f) > 5e-3):
                    return place
    return None


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------

def run_folder(family, layout, run):
    return os.path.join(HERE, family, layout, run)


def make_runs(only=None):
    import torch  # noqa: F401  (fail early without torch)

    path = os.path.join(HERE, "child_info.json")
    infos = {}
    if only and os.path.exists(path):
        with open(path) as fh:
            infos = {tuple(k.split("/")): v for k, v in json.load(fh).items()}
    for family, run, dtype, fault, variant in runs():
        if only and family not in only:
            continue
        for layout in LAYOUTS:
            tmp = tempfile.mkdtemp(prefix="driftscope-corpus-")
            out = os.path.join(tmp, "dump")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", family, run, dtype,
                   fault or "-", variant or "-", layout, out]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            with open(os.path.join(tmp, "child_info.json")) as fh:
                infos[(family, layout, run)] = json.load(fh)
            dest = run_folder(family, layout, run)
            shutil.rmtree(dest, ignore_errors=True)
            if layout == "msprobe":
                shutil.copytree(os.path.join(out, "step0"), dest)
                # msprobe names the folder proc<PID>; a fixed name keeps regenerated paths stable.
                (proc,) = os.listdir(dest)
                os.rename(os.path.join(dest, proc), os.path.join(dest, "proc0"))
                for dirpath, _, files in os.walk(dest):
                    for name in files:
                        if name.endswith(".log") or name == "stack.json":
                            os.remove(os.path.join(dirpath, name))
            else:
                shutil.copytree(out, dest)
            shutil.rmtree(tmp)
            print(f"wrote {os.path.relpath(dest, REPO)}", flush=True)
    with open(path, "w") as fh:
        json.dump({"/".join(k): v for k, v in infos.items()}, fh, indent=1, sort_keys=True)


def clean_twin(dtype):
    return {"float32": "ref", "float16": "clean_fp16", "bfloat16": "clean_bf16"}[dtype]


def measure():
    """Ground truth of every case, from the dumps (see README.md, "Ground truth")."""
    with open(os.path.join(HERE, "child_info.json")) as fh:
        infos = json.load(fh)
    cases = []
    rel = lambda *p: os.path.relpath(os.path.join(*p), HERE)  # noqa: E731
    for family, run, dtype, fault, variant in runs():
        if run.endswith("ref") or not os.path.isdir(os.path.join(HERE, family)):
            continue
        for layout in LAYOUTS:
            dev = Dump(run_folder(family, layout, run), layout)
            ms_dev = Dump(run_folder(family, "msprobe", run), "msprobe")
            ref_run = f"{variant}_ref" if variant else "ref"
            case = {"name": f"{family}.{run}", "family": family, "layout": layout,
                    "reference": rel(family, layout, ref_run), "device": rel(family, layout, run),
                    "dtype": dtype}
            if fault is None and (variant is None or dtype == "bfloat16"):
                case.update(clean=True, expected_place=None, expected_kind=None,
                            fault=("Clean run: the whole model and input cast to %s." % dtype)
                            + (f" {VARIANTS[variant]['fault'].split(':')[0]}; bf16 holds the values."
                               if variant else ""))
                case["evidence"] = ill_conditioned(family, layout, ref_run, run)
                cases.append(case)
                continue
            case["clean"] = False
            if variant:
                spec = VARIANTS[variant]
                kind = spec["kind"]
                twin_run = "clean_fp16"  # the base model in fp16: identical before the scale
                place = first_range_loss(dev, Dump(run_folder(family, layout, ref_run), layout), kind)
                ms_place = first_range_loss(ms_dev, Dump(run_folder(family, "msprobe", ref_run), "msprobe"), kind)
                clean_run = f"{variant}_bf16"
                fault_text = spec["fault"]
            else:
                spec = FAULTS[fault]
                kind = spec["kind"]
                twin_run = clean_twin(dtype)
                fault_text = spec["fault"]
                clean_run = twin_run
                twin_ms = Dump(run_folder(family, "msprobe", twin_run), "msprobe")
                if spec["api"] is not None:
                    k = infos[f"{family}/msprobe/{run}"]["first_fault_call"]
                    kn = infos[f"{family}/native/{run}"]["first_fault_call"]
                    assert k == kn, (run, k, kn)
                    prefix, api, module = infos[f"{family}/msprobe/{run}"]["api"]
                    ms_place = f"{prefix}.{api}.{k}.forward"
                    place = ms_place if layout == "msprobe" else f"{module}.{api}.{k}"
                else:
                    # Inputs or weights: the first place whose recorded tensors differ.
                    twin = Dump(run_folder(family, layout, twin_run), layout)
                    place, _ = first_difference(dev, twin)
                    ms_place, _ = first_difference(ms_dev, twin_ms)
            twin = Dump(run_folder(family, layout, twin_run), layout)
            clean_ms = Dump(run_folder(family, "msprobe", clean_run), "msprobe")
            assert place in dev.index, (run, layout, place)
            ev = {"identical_before": identical_before(dev, twin, place)}
            if not variant:
                ev["inputs_identical"] = inputs_identical(dev, twin, place)
                # The measured first difference must be the fault's own place.
                fd, _ = first_difference(dev, twin)
                ev["first_difference"] = fd
            ev["own_err_fault"] = own_error(ms_dev, ms_place)
            ev["own_err_clean"] = own_error(clean_ms, ms_place)
            if layout == "native":
                # own errors come from the msprobe dump of the same run: check that the native
                # output at this place is the same tensor, bit for bit.
                (nkey,) = [k for k in dev.outputs(place)][:1]
                (mkey,) = [k for k in ms_dev.outputs(ms_place)][:1]
                ev["native_output_matches_msprobe"] = same(
                    dev.load(dev.outputs(place)[nkey]), ms_dev.load(ms_dev.outputs(ms_place)[mkey]))
            if kind in ("inputs_differ", "weights_differ"):
                tt = twin.places[twin.index[place]][1]
                diffs = {}
                for key, r in dev.places[dev.index[place]][1].items():
                    if not key.startswith("output") and key in tt:
                        a, b = dev.load(r), twin.load(tt[key])
                        if not same(a, b):
                            diffs[key] = rel_l2(a, b) if a.is_floating_point() else "differs"
                ev["differing_inputs"] = diffs
            case.update(expected_place=place, expected_kind=kind, fault=fault_text, evidence=ev)
            problems = check(case)
            if problems:
                print("DROPPED", problems, json.dumps(ev), flush=True)
                continue
            cases.append(case)
    # held_out: every third fault case and every third clean case, in this fixed order, per
    # layout pair (a run's msprobe and native cases share their split).
    for group in (True, False):
        names = []
        for c in cases:
            if c["clean"] == group and c["name"] not in names:
                names.append(c["name"])
        held = {n for i, n in enumerate(names) if i % 3 == 2}
        for c in cases:
            if c["clean"] == group:
                c["split"] = "held_out" if c["name"] in held else "tuned"
    order = ["name", "family", "layout", "reference", "device", "dtype", "clean", "expected_place",
             "expected_kind", "split", "fault", "evidence"]
    cases = [{k: c[k] for k in order} for c in cases]
    with open(os.path.join(HERE, "cases.json"), "w") as fh:
        # Strict JSON: an infinite own error (NaN/Inf in the output) is written as a string.
        json.dump({"cases": finite_json(cases)}, fh, indent=1, allow_nan=False)
        fh.write("\n")
    return cases


def check(case):
    """What does not hold in a case's evidence (a case with problems is dropped, not shipped)."""
    ev, kind, name = case["evidence"], case["expected_kind"], f"{case['name']} ({case['layout']})"
    bad = []
    if not ev["identical_before"]:
        bad.append(f"{name}: tensors before the fault differ from the clean run")
    if "first_difference" in ev and ev["first_difference"] != case["expected_place"]:
        bad.append(f"{name}: first difference {ev['first_difference']} is not the fault's place")
    if case["layout"] == "native" and not ev["native_output_matches_msprobe"]:
        bad.append(f"{name}: native and msprobe outputs differ")
    if kind in ("inputs_differ", "weights_differ"):
        if not ev["differing_inputs"] or ev["inputs_identical"]:
            bad.append(f"{name}: no input differs")
    else:
        if not ev.get("inputs_identical", True):
            bad.append(f"{name}: the faulty call's inputs differ")
        if not ev["own_err_fault"] > 8 * ev["own_err_clean"]:
            bad.append(f"{name}: own error {ev['own_err_fault']:.3g} not well above clean "
                       f"{ev['own_err_clean']:.3g}")
    return bad


def write_table(cases):
    """The case table in README.md, between its <!-- cases --> markers."""
    def err(v):
        return "inf" if v == math.inf else f"{v:.2g}"

    rows = ["| case | layout | split | expected place | kind | own err fault / clean | fault |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for c in cases:
        ev = c["evidence"]
        own = f"{err(ev['own_err_fault'])} / {err(ev['own_err_clean'])}" if "own_err_fault" in ev else ""
        rows.append(f"| `{c['name']}` | {c['layout']} | {c['split']} | "
                    f"{'`%s`' % c['expected_place'] if c['expected_place'] else '(clean)'} | "
                    f"{c['expected_kind'] or ''} | {own} | {c['fault']} |")
    path = os.path.join(HERE, "README.md")
    with open(path) as fh:
        text = fh.read()
    a, b = text.index("<!-- cases -->"), text.index("<!-- /cases -->")
    with open(path, "w") as fh:
        fh.write(text[: a + len("<!-- cases -->")] + "\n" + "\n".join(rows) + "\n" + text[b:])



def finite_json(v):
    """`v` with every non-finite float replaced by its name ("inf", "-inf", "nan")."""
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, dict):
        return {k: finite_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite_json(x) for x in v]
    return v

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=7)
    ap.add_argument("--only", nargs="*", help="families to (re)dump; all when omitted")
    ap.add_argument("--measure-only", action="store_true")
    a = ap.parse_args()
    if a.child:
        family, run, dtype, fault, variant, layout, out = a.child
        child(family, run, dtype, None if fault == "-" else fault, None if variant == "-" else variant,
              layout, out)
        return
    t0 = time.time()
    if not a.measure_only:
        make_runs(a.only)
    cases = measure()
    write_table(cases)
    print(f"{len(cases)} cases, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
