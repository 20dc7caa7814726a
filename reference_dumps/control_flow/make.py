"""Regenerates reference_dumps/control_flow/ (see README.md): one tiny model with a
data-dependent branch, run once per branch on the CPU, dumped by msprobe and by driftscope's
harness.

Run from the repository root with a venv holding torch 2.15.0 and mindstudio-probe 26.2.0
(`.venv-harness` after `bash harness/ci.sh` plus `pip install mindstudio-probe==26.2.0`):

    python reference_dumps/control_flow/make.py            # both layouts into this folder
    python reference_dumps/control_flow/make.py --out DIR --layouts native

The model scores its tokens against each other and normalises the scores. The branch: when the
largest |score| exceeds LIMIT, it takes the "stable" path (subtract the row max, exp, sum,
divide: five calls) instead of one `F.softmax`; both compute the same probabilities. The same
input is run in float32 (the reference) and float16 (the "device": model and input cast), and
LIMIT sits between the two runs' largest |score|, so the two runs take different branches from
the same data, as a threshold test flips when a model moves to a lower precision. Everything
before and after the branch is the same sequence of calls.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUNS = (("fp32", "float32"), ("fp16", "float16"))
LAYOUTS = ("msprobe", "native")


def build():
    """The model (fp32, seeded weights) and its fp32 input."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc_in = nn.Linear(8, 8)
            self.q = nn.Linear(8, 8, bias=False)
            self.k = nn.Linear(8, 8, bias=False)
            self.fc_out = nn.Linear(8, 8)
            self.head = nn.Linear(8, 4)
            with torch.no_grad():  # scores of about one
                self.q.weight.mul_(2.0)
                self.k.weight.mul_(2.0)
            self.limit = None

        def scores(self, x):
            h = torch.tanh(self.fc_in(x))
            return h, torch.matmul(self.q(h), self.k(h).transpose(-1, -2))

        def forward(self, x):
            h, s = self.scores(x)
            # The data-dependent branch.
            if s.abs().max().item() > self.limit:
                e = torch.exp(s - s.amax(dim=-1, keepdim=True))
                p = e / e.sum(dim=-1, keepdim=True)
            else:
                p = F.softmax(s, dim=-1)
            h = h + torch.matmul(p, h)
            h = h - h.mean(dim=-1, keepdim=True)
            return self.head(torch.tanh(self.fc_out(h)))

    model = Net().eval()
    x = torch.randn(1, 4, 8)
    return model, x


def peaks():
    """Largest |score| of the input in each run's dtype."""
    import torch

    out = {}
    for run, dt in RUNS:
        model, x = build()
        dtype = getattr(torch, dt)
        with torch.no_grad():
            _, s = model.to(dtype).scores(x.to(dtype))
        out[run] = float(s.abs().max())
    return out


def child(dtype_name, limit, layout, out):
    import torch

    torch.set_num_threads(1)
    dtype = getattr(torch, dtype_name)
    model, x = build()
    model = model.to(dtype).eval()
    model.limit = limit
    x = x.to(dtype)
    with torch.no_grad():
        if layout == "msprobe":
            from msprobe.pytorch import PrecisionDebugger

            config = {
                "task": "tensor", "dump_path": out, "rank": [], "step": [0], "level": "L1",
                "tensor": {"scope": [], "list": [], "data_mode": ["all"]},
            }
            cfg = os.path.join(os.path.dirname(out), "config.json")
            with open(cfg, "w") as fh:
                json.dump(config, fh)
            debugger = PrecisionDebugger(config_path=cfg)
            debugger.start()
            model(x)
            debugger.stop()
            debugger.step()
        else:
            sys.path.insert(0, os.path.join(REPO, "harness"))
            import driftscope_harness as dh

            with dh.capture(model, out, level="op"):
                model(x)


def make(dest, layouts):
    p = peaks()
    if p["fp32"] == p["fp16"]:
        raise SystemExit(f"both runs score {p['fp32']}: no threshold separates them")
    limit = (p["fp32"] + p["fp16"]) / 2
    for layout in layouts:
        for run, dt in RUNS:
            tmp = tempfile.mkdtemp(prefix="driftscope-cf-")
            out = os.path.join(tmp, "dump")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", dt, repr(limit), layout, out]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            target = os.path.join(dest, layout, run)
            shutil.rmtree(target, ignore_errors=True)
            if layout == "msprobe":
                shutil.copytree(os.path.join(out, "step0"), target)
                # msprobe names the folder proc<PID>; a fixed name keeps regenerated paths stable.
                (proc,) = os.listdir(target)
                os.rename(os.path.join(target, proc), os.path.join(target, "proc0"))
                for dirpath, _, files in os.walk(target):
                    for name in files:
                        if name.endswith(".log") or name == "stack.json":
                            os.remove(os.path.join(dirpath, name))
            else:
                shutil.copytree(out, target)
            shutil.rmtree(tmp)
            print(f"wrote {target}", flush=True)
    stable = "fp16" if p["fp16"] > limit else "fp32"
    with open(os.path.join(dest, "branches.json"), "w") as fh:
        json.dump({"peak_abs_score": p, "limit": limit, "stable_path": stable}, fh, indent=1,
                  sort_keys=True)
        fh.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=4)
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    a = ap.parse_args()
    if a.child:
        dt, limit, layout, out = a.child
        child(dt, float(limit), layout, out)
    else:
        make(a.out, a.layouts)


if __name__ == "__main__":
    main()
