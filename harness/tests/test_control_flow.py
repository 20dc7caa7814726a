"""The control-flow reference dumps (reference_dumps/control_flow/, README there), regenerated
with torch: the same branches and the same tensors as the committed dumps, and driftscope names
the branch as the first divergence.

The msprobe half needs mindstudio-probe (not among the test requirements) and is skipped
without it; the driftscope half needs the binary (`cargo build --release`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO, by_name, driftscope_binary, load_manifest, read_tensor

HERE = REPO / "reference_dumps" / "control_flow"
RUNS = ("fp32", "fp16")


def make(out: Path, layout: str) -> None:
    # torch's tanh calls MKL, which picks its code path by CPU: on an Intel CPU with AVX-512
    # the last bit differs from the committed dumps (made on an AMD CPU, where MKL took a
    # path whose bits its "compatible" path reproduces). Pinning that path, the same code on
    # every x86 CPU, makes "bit for bit" test the harness, not the CPU.
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE"}
    subprocess.run([sys.executable, str(HERE / "make.py"), "--out", str(out), "--layouts", layout],
                   check=True, capture_output=True, timeout=600, env=env)
    assert json.loads((out / "branches.json").read_text()) == json.loads((HERE / "branches.json").read_text())


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("control_flow")
    make(out, "native")
    return out


def test_the_harness_dumps_regenerate_bit_for_bit(native):
    for run in RUNS:
        new, old = native / "native" / run, HERE / "native" / run
        a, b = by_name(load_manifest(new)), by_name(load_manifest(old))
        assert list(a) == list(b), run
        for name, entry in a.items():
            x, y = read_tensor(new, entry), read_tensor(old, b[name])
            assert x.dtype == y.dtype and torch.equal(x, y), f"{run}: {name}"
    places = lambda run: list(dict.fromkeys(e["place"] for e in load_manifest(native / "native" / run)["entries"]))
    # The float32 run took the stable path, the float16 run the softmax.
    assert "torch.exp.0" in places("fp32") and "torch.nn.functional.softmax.0" not in places("fp32")
    assert "torch.nn.functional.softmax.0" in places("fp16") and "torch.exp.0" not in places("fp16")


def test_the_msprobe_dumps_regenerate_bit_for_bit(tmp_path):
    pytest.importorskip("msprobe")
    make(tmp_path, "msprobe")
    for run in RUNS:
        new, old = tmp_path / "msprobe" / run / "proc0", HERE / "msprobe" / run / "proc0"
        a = json.loads((new / "dump.json").read_text())["data"]
        b = json.loads((old / "dump.json").read_text())["data"]
        assert list(a) == list(b), run
        files = sorted(p.name for p in (old / "dump_tensor_data").iterdir())
        assert sorted(p.name for p in (new / "dump_tensor_data").iterdir()) == files
        for f in files:
            x = torch.load(new / "dump_tensor_data" / f, map_location="cpu")
            y = torch.load(old / "dump_tensor_data" / f, map_location="cpu")
            assert torch.equal(x, y), f"{run}: {f}"


def test_driftscope_names_the_branch(native, tmp_path):
    binary = driftscope_binary()
    if binary is None:
        pytest.skip("driftscope binary not found: set DRIFTSCOPE_BIN or run `cargo build --release`")
    report = tmp_path / "r.json"
    done = subprocess.run([str(binary), "compare", str(native / "native" / "fp32"), str(native / "native" / "fp16"),
                           "--json", str(report)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    r = json.loads(report.read_text())
    first = r["analysis"]["first_divergence"]
    assert (first["kind"], first["name"]) == ("control_flow", "torch.Tensor.amax.0")
    changes = [(c["kind"], c["calls"]) for c in r["structure"]["changes"]]
    assert changes == [
        ("missing", ["torch.Tensor.amax.0", "torch.Tensor.sub.0", "torch.exp.0", "torch.Tensor.sum.0",
                     "torch.Tensor.div.0"]),
        ("extra", ["torch.nn.functional.softmax.0"]),
    ]
    # Everything else paired, within fp16's noise; the centring sub meets its renumbered twin.
    assert all(p["verdict"] in ("ok", "identical") for p in r["pairs"])
    sub = [p for p in r["pairs"] if p["place"] == "torch.Tensor.sub.1"]
    assert sub and all(p["name_dev"].startswith("torch.Tensor.sub.0.") for p in sub)
