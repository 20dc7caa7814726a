"""Devices: the lazy Ascend import, device names, and the host copy that leaves the run untouched."""

from __future__ import annotations

import importlib.util
import platform
import sys

import torch


def load_npu_backend() -> bool:
    """Import `torch_npu` when it is installed, so `npu` tensors and `torch.npu` work.

    Returns whether it is loaded. Nothing else in the harness imports it, so CPU and CUDA users
    never need it.
    """
    if "torch_npu" in sys.modules:
        return True
    if importlib.util.find_spec("torch_npu") is None:
        return False
    import torch_npu  # noqa: F401  (importing registers the npu device with torch)

    return True


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """Copy a tensor to host memory, in its own dtype.

    `copy=True` allocates a fresh host tensor even for CPU tensors, so a later in-place op of the
    model cannot change what was recorded; no dtype is passed, so the bytes are exactly those the
    device computed. The copy is synchronous, so it reads the finished result of the op.
    """
    return tensor.detach().to("cpu", copy=True)


def device_name(device: torch.device) -> str:
    """A human-readable name of the accelerator or CPU behind `device`."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "npu":
        return torch.npu.get_device_name(device.index or 0)  # torch.npu exists once torch_npu is loaded
    return _cpu_name()


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
