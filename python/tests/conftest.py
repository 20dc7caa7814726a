"""Paths shared by the tests of the installed package (python/ci.sh installs the wheel into a
clean venv and runs these with that venv's python)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LLAMA = REPO / "reference_dumps" / "h200" / "llama" / "msprobe"
REF = LLAMA / "cpu_fp32"
FP16 = LLAMA / "cuda_fp16"
FAULT = LLAMA / "cuda_fp16_fault_silu_l1"
CONFIG = REPO / "docs" / "driftscope.example.toml"
# The console command the wheel installed next to this venv's python.
COMMAND = Path(sys.executable).parent / "driftscope"


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COMMAND), *map(str, args)], capture_output=True, text=True, timeout=600
    )
