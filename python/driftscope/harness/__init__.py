"""driftscope.harness (also importable as driftscope_harness): capture per-layer tensor dumps of a
PyTorch model for driftscope.

    from driftscope import harness as dh
    with dh.capture(model, "dumps/cuda_bf16", level="module", roles=("output",)):
        model(x)

The dump is driftscope's native layout (docs/formats.md): `driftscope.json` plus raw tensors.
"""

__version__ = "0.1.0"

try:
    import torch  # noqa: F401
except ImportError as err:  # torch is not declared as a dependency, see pyproject.toml
    raise ImportError(
        "driftscope.harness needs PyTorch (>= 2.1); install the build for your device first"
    ) from err

from .capture import DEFAULT_ROLES, LEVELS, ROLES, Capture, CaptureError, capture
from .determinism import numerics_flags, seed_everything, set_deterministic, set_hf32, set_tf32
from .inputs import load_inputs, save_inputs

__all__ = [
    "Capture",
    "CaptureError",
    "DEFAULT_ROLES",
    "LEVELS",
    "ROLES",
    "capture",
    "load_inputs",
    "numerics_flags",
    "save_inputs",
    "seed_everything",
    "set_deterministic",
    "set_hf32",
    "set_tf32",
]
