"""Reading dumps back and finding the driftscope binary."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import torch

REPO = Path(__file__).resolve().parents[2]

DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


def load_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "driftscope.json").read_text())


def read_tensor(folder: Path, entry: dict) -> torch.Tensor:
    """Read an entry's raw file back as a tensor (the way driftscope reads it)."""
    data = bytearray((Path(folder) / entry["file"]).read_bytes())
    dtype = DTYPES[entry["dtype"]]
    if not data:
        return torch.empty(entry["shape"], dtype=dtype)
    return torch.frombuffer(data, dtype=dtype).reshape(entry["shape"])


def by_name(manifest: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in manifest["entries"]}


def driftscope_binary() -> Optional[Path]:
    """DRIFTSCOPE_BIN when set (even if wrong: then None), else the `driftscope` command the
    wheel installed next to this python (harness/ci.sh), else target/release, target/debug."""
    chosen = os.environ.get("DRIFTSCOPE_BIN")
    installed = Path(sys.executable).parent / "driftscope"
    builds = [REPO / "target" / mode / "driftscope" for mode in ("release", "debug")]
    candidates = [Path(chosen)] if chosen else [installed, *builds]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
