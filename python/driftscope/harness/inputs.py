"""Saving and replaying the exact inputs of a forward pass, so both sides run the same batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

import torch

from .device import host_copy, load_npu_backend

INPUTS_FILE = "inputs.pt"

# Leaves that `torch.load(weights_only=True)` restores safely.
_PLAIN = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device)


def save_inputs(path: Union[str, os.PathLike], *args: Any, **kwargs: Any) -> Path:
    """Save positional and keyword arguments (host copies, own dtypes) and return the file.

    `path` is a dump folder (the file is `inputs.pt` in it) or a `.pt` file path. Tensors,
    numbers, strings, None and lists/tuples/dicts of them are accepted; anything else is refused
    rather than pickled, because the other side loads the file with `weights_only=True`.
    """
    target = _file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"args": _plain(args, "args"), "kwargs": _plain(kwargs, "kwargs")}, target)
    return target


def load_inputs(
    path: Union[str, os.PathLike], device: Optional[Union[str, torch.device]] = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Load `(args, kwargs)` saved by `save_inputs`, with tensors moved to `device` (default cpu).

    Replay with `model(*args, **kwargs)`. Dtypes are kept: cast float inputs yourself when the
    replaying model runs in another dtype.
    """
    if str(device).startswith("npu"):
        load_npu_backend()
    saved = torch.load(_file(path), map_location=device or "cpu", weights_only=True)
    return tuple(saved["args"]), dict(saved["kwargs"])


def _file(path: Union[str, os.PathLike]) -> Path:
    path = Path(path)
    return path if path.suffix == ".pt" else path / INPUTS_FILE


def _plain(value: Any, where: str) -> Any:
    if isinstance(value, torch.Tensor):
        return host_copy(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        # Named tuples become plain tuples: their classes are not loadable with weights_only.
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(
        f"save_inputs cannot save {where} of type {type(value).__name__}: only tensors, numbers, "
        "strings, None and lists, tuples or dicts of them can be replayed safely"
    )
