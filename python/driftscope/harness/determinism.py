"""Determinism: seeds, the numerics flags that make two runs comparable, and a record of them."""

from __future__ import annotations

import os
import random
import sys
from typing import Any, Optional

import torch

from .device import load_npu_backend

# Device types whose autocast state is recorded.
_AUTOCAST_DEVICES = ("cpu", "cuda", "npu")


def seed_everything(seed: int) -> int:
    """Seed Python, numpy (when installed) and torch on every device; return the seed.

    `torch.manual_seed` seeds CPU, CUDA and (with torch_npu) NPU generators alike.
    PYTHONHASHSEED only reaches child processes (data-loader workers started later).
    """
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is not None:
        numpy.random.seed(seed % 2**32)
    load_npu_backend()
    torch.manual_seed(seed)
    return seed


def set_deterministic(enabled: bool = True, *, warn_only: bool = False) -> None:
    """Ask torch for deterministic kernels (and cuDNN for no autotuning).

    cuBLAS needs CUBLAS_WORKSPACE_CONFIG before its first handle is made; it is set here when
    the user has not chosen one.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = enabled
    if enabled:
        torch.backends.cudnn.benchmark = False


def set_tf32(enabled: bool) -> None:
    """Allow or forbid TF32 for float32 matmuls and cuDNN convolutions on NVIDIA GPUs.

    A float32 CUDA run compared against a CPU float32 reference should forbid it, or the
    comparison measures TF32 rounding (about 1e-3 relative) rather than the kernels.
    """
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def set_hf32(enabled: bool) -> None:
    """Allow or forbid HF32 on Ascend NPUs (torch_npu's TF32 counterpart).

    torch_npu's defaults are: convolutions allow HF32, matmuls do not.
    """
    if not load_npu_backend():
        raise RuntimeError("set_hf32 needs torch_npu, which is not installed")
    import torch_npu

    torch_npu.npu.conv.allow_hf32 = enabled
    torch_npu.npu.matmul.allow_hf32 = enabled


def numerics_flags() -> dict[str, Any]:
    """The current flags that change a run's numbers, as JSON-ready values."""
    flags: dict[str, Any] = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "autocast": autocast_state(),
    }
    if "torch_npu" in sys.modules:
        import torch_npu

        flags["allow_hf32_conv"] = bool(torch_npu.npu.conv.allow_hf32)
        flags["allow_hf32_matmul"] = bool(torch_npu.npu.matmul.allow_hf32)
    return flags


def autocast_state() -> Optional[dict[str, str]]:
    """`{device type: dtype}` for each device type whose autocast is on, or None when none is."""
    state = {}
    for device_type in _AUTOCAST_DEVICES:
        if device_type == "npu" and "torch_npu" not in sys.modules:
            continue
        try:
            if torch.is_autocast_enabled(device_type):
                state[device_type] = str(torch.get_autocast_dtype(device_type)).replace("torch.", "")
        except (TypeError, RuntimeError):
            # torch < 2.4 has no per-device-type query; it is recorded only where it exists.
            continue
    return state or None
