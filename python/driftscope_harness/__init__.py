"""Alias of `driftscope.harness`, the dump collector's old name: `import driftscope_harness`
and `python -m driftscope_harness ...` keep working. The same module objects are used, so
state (such as faults.State) is shared between the two names."""

import importlib
import sys

from driftscope import harness as _harness

for _name in (
    "capture", "cli", "determinism", "device", "faults", "inputs", "module_level", "naming",
    "op_level", "runner", "writer",
):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"driftscope.harness.{_name}")
# From here on the import system hands out the real package for this name (and finds
# `__main__` in its folder for `python -m driftscope_harness`).
sys.modules[__name__] = _harness
