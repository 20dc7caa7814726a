"""The collector as the `driftscope` wheel installs it: `driftscope.harness`, its old name
`driftscope_harness` as an alias, its commands, and the in-process API on what it dumps."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import driftscope
import driftscope_harness
from driftscope import harness
from models import hard_swish_silu


def test_the_old_name_is_the_same_package():
    assert "site-packages" in harness.__file__
    assert driftscope_harness is harness
    from driftscope_harness import faults

    assert faults is harness.faults
    assert sys.modules["driftscope_harness.capture"] is sys.modules["driftscope.harness.capture"]


def test_commands_start_under_every_name():
    bin_dir = Path(sys.executable).parent
    for cmd in (
        [sys.executable, "-m", "driftscope.harness", "--help"],
        [sys.executable, "-m", "driftscope_harness", "--help"],
        [str(bin_dir / "driftscope-harness"), "--help"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (cmd, done.stderr)
        assert "usage: driftscope-harness" in done.stdout


def test_capture_then_compare_in_process(tmp_path, transformer):
    model, ids = transformer
    with harness.capture(model, tmp_path / "ref"):
        model(ids)
    faulty = copy.deepcopy(model)
    faulty.layers[0].mlp.act_fn.forward = hard_swish_silu
    with harness.capture(faulty, tmp_path / "dev"):
        faulty(ids)
    c = driftscope.compare(tmp_path / "ref", tmp_path / "dev", progress=False)
    assert c.report["candidate"]["format"] == "native"
    assert c.first_divergence["name"] == "layers.0.mlp.act_fn"
    same = driftscope.compare(tmp_path / "ref", tmp_path / "ref", progress=False)
    assert same.overall == "identical" and same.first_divergence is None
