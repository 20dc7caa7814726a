"""Round trips through the Rust CLI: the dumps the harness writes are what driftscope reads.

Skipped when no driftscope binary is found (DRIFTSCOPE_BIN, else target/release, else
target/debug under the repository root); build it with `cargo build --release`.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

import driftscope_harness as dh
from helpers import driftscope_binary
from models import hard_swish_silu

BINARY = driftscope_binary()
pytestmark = pytest.mark.skipif(
    BINARY is None,
    reason="driftscope binary not found: set DRIFTSCOPE_BIN or run `cargo build --release`",
)


def driftscope(*args: Any, report: Path) -> dict:
    done = subprocess.run([str(BINARY), *map(str, args), "--json", str(report)],
                          capture_output=True, text=True, timeout=300)
    assert report.is_file(), f"driftscope {args[0]} wrote no JSON (exit {done.returncode}):\n{done.stderr}"
    return json.loads(report.read_text())


def verdicts(value: Any) -> Iterator[tuple[str, str]]:
    """Every (name, verdict) pair anywhere in a JSON report."""
    if isinstance(value, dict):
        if isinstance(value.get("verdict"), str):
            yield str(value.get("name")), value["verdict"]
        for item in value.values():
            yield from verdicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from verdicts(item)


@pytest.mark.parametrize("fixture", ["transformer", "cnn"])
def test_fp32_and_bf16_captures_match_place_for_place(tmp_path, request, fixture):
    model, x = request.getfixturevalue(fixture)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    x16 = x.to(torch.bfloat16) if x.is_floating_point() else x
    with dh.capture(model, tmp_path / "ref"):
        model(x)
    with dh.capture(bf16, tmp_path / "dev"):
        bf16(x16)
    report = driftscope("compare", tmp_path / "ref", tmp_path / "dev", report=tmp_path / "out.json")
    assert report["unmatched_reference"] == []
    assert report["unmatched_candidate"] == []
    found = list(verdicts(report))
    assert found, "the report holds no verdicts"
    diverged = [name for name, verdict in found if verdict == "diverged"]
    assert diverged == [], f"bf16 noise judged as divergence at {diverged}"


def test_bisect_finds_an_injected_silu_fault(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path / "ref"):
        model(ids)
    faulty = copy.deepcopy(model)
    faulty.layers[1].mlp.act_fn.forward = hard_swish_silu  # wrong kernel, same place
    with dh.capture(faulty, tmp_path / "dev"):
        faulty(ids)
    report = driftscope("bisect", tmp_path / "ref", tmp_path / "dev", report=tmp_path / "out.json")
    # The report keeps it under "analysis"; a top-level key is accepted too.
    first = report.get("first_divergence") or report["analysis"]["first_divergence"]
    assert first["name"] == "layers.1.mlp.act_fn"
