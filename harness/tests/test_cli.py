"""`python -m driftscope_harness run` on a tiny training-style script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from helpers import by_name, load_manifest, read_tensor

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 8), nn.SiLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    net, loss_fn = Net(), nn.MSELoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    outputs = []
    for step in range(3):
        x = torch.randn(4, 6)
        out = net(x)
        loss = loss_fn(out, torch.zeros_like(out))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        outputs.append(out.detach())
    torch.save({"outputs": outputs, "argv": sys.argv}, sys.argv[1])
    """
)


def run_harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, "-m", "driftscope_harness", "run", str(script), *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )


def test_run_captures_the_chosen_step_of_each_top_level_module(tmp_path):
    done = run_harness(tmp_path, "--out", "dumps", "--step", "1", "--save-inputs", "--", "result.pt")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr
    result = torch.load(tmp_path / "result.pt")
    manifest = load_manifest(tmp_path / "dumps")
    assert manifest["run"]["step"] == 1
    assert manifest["run"]["argv"] == [str(tmp_path / "train.py"), "result.pt"]
    entries = by_name(manifest)
    assert torch.equal(read_tensor(tmp_path / "dumps", entries["Net.output.0"]), result["outputs"][1])
    assert "body.1.output.0" in entries
    # The loss module is a second top-level module: its places are prefixed with its name.
    assert "MSELoss.output.0" in entries
    assert (tmp_path / "dumps" / "inputs.pt").is_file()


def test_run_at_op_level(tmp_path):
    done = run_harness(tmp_path, "--out", "ops", "--level", "op", "--roles", "output", "--", "r.pt")
    assert done.returncode == 0, done.stderr
    places = [e["place"] for e in load_manifest(tmp_path / "ops")["entries"]]
    assert places[:3] == ["torch.nn.functional.linear.0", "torch.nn.functional.silu.0", "torch.nn.functional.linear.1"]
    assert "torch.nn.functional.mse_loss.0" in places


def test_run_reports_errors_clearly(tmp_path):
    done = run_harness(tmp_path, "--out", "late", "--step", "5", "--", "r.pt")
    assert done.returncode == 2
    assert "step(s) [5] never ran" in done.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "driftscope_harness", "run", "nope.py", "--out", "x"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert missing.returncode == 2 and "script not found: nope.py" in missing.stderr
