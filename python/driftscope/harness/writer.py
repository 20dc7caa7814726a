"""The native dump layout (docs/formats.md, section "native"): raw tensor files and the manifest."""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from .device import host_copy

FORMAT = "driftscope-native"
VERSION = 1
MANIFEST = "driftscope.json"
TENSOR_DIR = "tensors"

# The dtypes the native format defines; everything else is listed under "unsupported".
DTYPE_NAMES = {
    torch.float64: "float64",
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float8_e4m3fn: "float8_e4m3fn",
    torch.float8_e5m2: "float8_e5m2",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


class DumpWriter:
    """Writes one dump folder: a raw file per saved tensor, then the manifest at `finish`."""

    def __init__(
        self,
        folder: os.PathLike | str,
        *,
        max_numel: Optional[int] = None,
        stats: bool = True,
        overwrite: bool = False,
    ) -> None:
        if sys.byteorder != "little":
            raise RuntimeError("the native format is little-endian; this host is big-endian")
        self.folder = Path(folder)
        self.max_numel = max_numel
        self.stats = stats
        self.entries: list[dict[str, Any]] = []
        self.unsupported: list[dict[str, Any]] = []
        self._files = 0
        manifest = self.folder / MANIFEST
        if manifest.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{self.folder} already holds a dump ({MANIFEST}); "
                    "pass overwrite=True (--overwrite) or choose another folder"
                )
            manifest.unlink()
            shutil.rmtree(self.folder / TENSOR_DIR, ignore_errors=True)
        (self.folder / TENSOR_DIR).mkdir(parents=True, exist_ok=True)

    def record(
        self, tensor: torch.Tensor, *, place: str, kind: str, op_type: str, role: str, index: str
    ) -> Optional[dict[str, Any]]:
        """Save one tensor now and return its entry, whose `order` is set when the place completes.

        Returns None for a tensor the format cannot hold (its note goes to `unsupported`).
        """
        entry: dict[str, Any] = {
            "order": None,
            "place": place,
            "kind": kind,
            "op_type": op_type,
            "role": role,
            "index": index,
            "name": f"{place}.{role}.{index}",
            "dtype": DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype).replace("torch.", "")),
            "shape": list(tensor.shape),
            "device": str(tensor.device),
        }
        problem = _unsupported_reason(tensor)
        if problem:
            del entry["order"]
            self.unsupported.append({**entry, "reason": problem})
            return None
        if self.max_numel is not None and tensor.numel() > self.max_numel:
            entry["file"] = None
            entry["skipped"] = f"numel {tensor.numel()} exceeds max_numel {self.max_numel}"
            return entry
        host = host_copy(tensor).contiguous()
        relative = f"{TENSOR_DIR}/{self._files:06d}.bin"
        self._files += 1
        entry["file"] = relative
        entry["nbytes"] = _write_raw(host, self.folder / relative)
        if self.stats and host.numel():
            entry["stats"] = _stats(host)
        return entry

    def complete(self, entries: list[dict[str, Any]], order: int) -> None:
        """Give the entries of one finished place their shared order and keep them."""
        for entry in entries:
            entry["order"] = order
        self.entries.extend(entries)

    def finish(self, level: str, run: dict[str, Any]) -> Path:
        """Write the manifest atomically (temp file, fsync, rename) and return its path."""
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "level": level,
            "run": run,
            # Parameter gradients arrive after the forward pass; sorting keeps execution order.
            "entries": sorted(self.entries, key=lambda e: e["order"]),
        }
        if self.unsupported:
            manifest["unsupported"] = self.unsupported
        path = self.folder / MANIFEST
        temp = self.folder / f".{MANIFEST}.tmp"
        with open(temp, "w", encoding="utf-8") as out:
            json.dump(manifest, out, indent=1, allow_nan=False)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
        return path


def _unsupported_reason(tensor: torch.Tensor) -> Optional[str]:
    if tensor.dtype not in DTYPE_NAMES:
        return f"dtype {str(tensor.dtype).replace('torch.', '')} is not in the native format"
    if tensor.layout != torch.strided:
        return f"layout {tensor.layout} is not a dense tensor"
    if tensor.device.type == "meta":
        return "a meta tensor has no data"
    return None


def _write_raw(host: torch.Tensor, path: Path) -> int:
    """Write a contiguous host tensor's bytes (C order, little-endian, own dtype); return the size.

    The bytes are read in place through the data pointer, which needs no numpy and no extra copy.
    """
    flat = host.reshape(-1).view(torch.uint8)
    size = flat.numel()
    with open(path, "wb") as out:
        if size:
            out.write(memoryview((ctypes.c_char * size).from_address(flat.data_ptr())))
    return size


def _stats(host: torch.Tensor) -> dict[str, Any]:
    """min, max, mean and L2 norm in float64; non-finite results are null (JSON has no NaN)."""
    # The host copy is private to the harness; autocast must not lower the float64 maths.
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        values = host.to(torch.float64)
        stats = {
            "min": _finite(values.min()),
            "max": _finite(values.max()),
            "mean": _finite(values.mean()),
            "norm": _finite(torch.linalg.vector_norm(values)),
            "nan_count": int(torch.isnan(values).sum()),
            "inf_count": int(torch.isinf(values).sum()),
        }
    return stats


def _finite(value: torch.Tensor) -> Optional[float]:
    number = float(value)
    return number if math.isfinite(number) else None
