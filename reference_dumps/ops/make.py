"""Regenerates the msprobe L1 dumps of the ops zoo in reference_dumps/ops/msprobe/.

Run with a venv holding torch 2.15.0 and mindstudio-probe 26.2.0 (see README.md):

    python reference_dumps/ops/make.py

It runs itself twice in fresh processes (msprobe's PrecisionDebugger is a per-process
singleton): `--variant fp32` (the reference) and `--variant bf16` (the "device": every float
input and weight cast to bfloat16), both on the CPU. Each child dumps into a temporary folder;
the parent then copies the dump into msprobe/cpu_<variant>/ and writes run_info.json. Nothing in
the dumps is edited: dump.json keeps msprobe's absolute (temporary, since deleted) dump_data_dir.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("fp32", "bf16")


def inputs():
    """Every input and weight, float32, in a fixed order from torch.manual_seed(0)."""
    import torch

    torch.manual_seed(0)
    r = torch.randn
    t = {}
    t["x"] = r(4, 16)  # elementwise ops, norms, linear
    t["x3"] = r(2, 5, 6)  # softmax(dim=1)
    t["ln_w"], t["ln_b"] = r(16), r(16)
    t["rms_w"] = r(16)
    t["conv_x"], t["conv_w"], t["conv_b"] = r(2, 3, 8, 8), r(4, 3, 3, 3), r(4)
    t["gconv_x"], t["gconv_w"], t["gconv_b"] = r(2, 4, 6, 6), r(6, 2, 3, 3), r(6)
    t["q"], t["k"], t["v"] = r(1, 2, 6, 8), r(1, 2, 6, 8), r(1, 2, 6, 8)
    bool_mask = torch.rand(6, 6) > 0.4
    bool_mask |= torch.eye(6, dtype=torch.bool)  # no fully masked row
    t["bool_mask"] = bool_mask
    t["float_mask"] = r(6, 6)
    t["ids"] = torch.randint(0, 10, (2, 5))
    t["emb_w"] = r(10, 8)
    t["mm_a"], t["mm_b"] = r(2, 3, 4), r(4, 5)
    t["lin_w"], t["lin_b"] = r(8, 16), r(8)
    t["bn_x"] = r(2, 4, 3, 3)
    t["bn_mean"], t["bn_var"] = r(4) * 0.1, torch.rand(4) + 0.5
    t["bn_w"], t["bn_b"] = r(4), r(4)
    t["gn_w"], t["gn_b"] = r(4), r(4)
    t["addmm_bias"], t["addmm_m2"] = r(4, 8), r(16, 8)
    t["pool_x"] = r(1, 2, 6, 6)
    # Small values, so that rms_norm's default eps (finfo of the computation dtype) matters.
    t["rms_small"] = r(4, 16) * 0.05
    return t


def calls(t, F, torch):
    """The zoo, in dump order. With torch 2.15.0 every call has a CPU bfloat16 kernel, so the
    bf16 run casts everything (no call is kept in float32)."""
    x = t["x"]
    F.gelu(x)  # Functional.gelu.0
    F.gelu(x, approximate="tanh")  # Functional.gelu.1
    F.relu(x)
    F.log_softmax(x, dim=-1)
    F.softmax(t["x3"], dim=1)
    F.layer_norm(x, (16,), t["ln_w"], t["ln_b"], eps=1e-5)
    F.rms_norm(x, (16,), t["rms_w"], eps=1e-6)
    F.rms_norm(t["rms_small"], (16,), t["rms_w"])  # eps=None: torch's default
    F.conv2d(t["conv_x"], t["conv_w"], t["conv_b"], stride=2, padding=1)
    F.conv2d(t["gconv_x"], t["gconv_w"], t["gconv_b"], padding="same", dilation=2, groups=2)
    q, k, v = t["q"], t["k"], t["v"]
    F.scaled_dot_product_attention(q, k, v, is_causal=True)
    F.scaled_dot_product_attention(q, k, v, attn_mask=t["bool_mask"])
    F.scaled_dot_product_attention(q, k, v, attn_mask=t["float_mask"])
    F.embedding(t["ids"], t["emb_w"])
    torch.matmul(t["mm_a"], t["mm_b"])
    F.linear(x, t["lin_w"], t["lin_b"])
    # Outside the pure-Rust replay.
    torch.erf(x)
    torch.cumsum(x, dim=1)
    x.clamp(min=-0.5, max=0.5)
    x.view(8, 8)
    x.transpose(0, 1)
    F.hardtanh(x)
    F.batch_norm(t["bn_x"], t["bn_mean"], t["bn_var"], t["bn_w"], t["bn_b"], training=False)
    F.group_norm(t["bn_x"], 2, t["gn_w"], t["gn_b"])
    torch.addmm(t["addmm_bias"], x, t["addmm_m2"])
    F.leaky_relu(x, 0.2)
    torch.tanh(x)
    F.avg_pool2d(t["pool_x"], 2)
    F.max_pool2d(t["pool_x"], 2)


def child(variant, dump_path):
    import torch
    import torch.nn.functional as F
    from msprobe.pytorch import PrecisionDebugger

    torch.set_num_threads(1)
    t = inputs()
    if variant == "bf16":
        t = {n: (v.to(torch.bfloat16) if v.is_floating_point() else v) for n, v in t.items()}
    config = {
        "task": "tensor",
        "dump_path": dump_path,
        "rank": [],
        "step": [0],
        "level": "L1",
        # msprobe's default (FOCUS) skips "low risk" APIs at L1: clamp, view, transpose, ...
        "risk_level": "ALL",
        "tensor": {"scope": [], "list": [], "data_mode": ["all"]},
    }
    cfg = os.path.join(os.path.dirname(dump_path), "config.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    debugger = PrecisionDebugger(config_path=cfg)
    # Not in msprobe 26.2.0's support_wrap_ops.yaml: hooked through its public custom-API hook,
    # with the prefixes msprobe uses for these namespaces.
    PrecisionDebugger.register_custom_api(F, "rms_norm", "Functional")
    PrecisionDebugger.register_custom_api(torch.Tensor, "view", "Tensor")
    with torch.no_grad():
        debugger.start()
        calls(t, F, torch)
        debugger.stop()
        debugger.step()


def parent():
    import torch

    out_root = os.path.join(HERE, "msprobe")
    for variant in VARIANTS:
        tmp = tempfile.mkdtemp(prefix="driftscope-ops-zoo-")
        dump_path = os.path.join(tmp, "dump")
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--variant", variant, "--dump-path", dump_path],
            check=True,
        )
        dest = os.path.join(out_root, f"cpu_{variant}")
        shutil.rmtree(dest, ignore_errors=True)
        # Only the dump itself: step0/procPID/{dump.json, stack.json, construct.json,
        # dump_tensor_data/}; msprobe's logs and our config.json stay behind.
        shutil.copytree(os.path.join(dump_path, "step0"), os.path.join(dest, "step0"))
        for dirpath, _, files in os.walk(dest):
            for name in files:
                if name.endswith(".log"):
                    os.remove(os.path.join(dirpath, name))
        with open(os.path.join(dest, "run_info.json"), "w") as f:
            json.dump(
                {
                    "model": "ops_zoo",
                    "variant": f"cpu_{variant}",
                    "device": "cpu",
                    "dtype": "torch.float32" if variant == "fp32" else "torch.bfloat16",
                    "torch": torch.__version__,
                    "msprobe": _msprobe_version(),
                    "threads": 1,
                },
                f,
                indent=1,
            )
        shutil.rmtree(tmp)
        print(f"wrote {dest}")


def _msprobe_version():
    from importlib.metadata import version

    return version("mindstudio-probe")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=VARIANTS)
    ap.add_argument("--dump-path")
    a = ap.parse_args()
    if a.variant:
        child(a.variant, a.dump_path)
    else:
        parent()
