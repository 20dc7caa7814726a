"""Op level: a TorchFunctionMode records every torch call (functional, tensor method, operator)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.overrides import TorchFunctionMode

from .naming import is_inplace, op_name, op_type, tensors_in

if TYPE_CHECKING:
    from .capture import Capture, StepDump


class OpRecorder(TorchFunctionMode):
    """Names each call `{op}.{n}` (n counts that op's calls in the step, from 0) and records it.

    Inside `__torch_function__` torch disables the mode, so the calls an op makes internally and
    the harness's own copies are not recorded. Calls that return no tensor (`.shape`, `.item()`)
    are counted but not recorded.
    """

    def __init__(self, capture: "Capture") -> None:
        super().__init__()
        self._capture = capture

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dump = self._capture.current
        if dump is None:
            return func(*args, **kwargs)
        name = op_name(func)
        place = dump.op_place(name)
        if not self._capture.accepts(place):
            return func(*args, **kwargs)
        kind = op_type(name)
        inplace = is_inplace(name, kwargs)
        # An in-place op overwrites its inputs: save them before it runs. Other ops are copied
        # after they ran, so the run's own work is never delayed by the harness.
        entries = self._inputs(dump, place, kind, args, kwargs) if inplace else []
        result = func(*args, **kwargs)
        outputs = list(tensors_in(result))
        if not outputs and inplace and args and isinstance(args[0], torch.Tensor):
            outputs = [("0", args[0])]  # `x[i] = v` returns None; its result is the updated `x`
        if not outputs:
            return result
        if not inplace:
            entries = self._inputs(dump, place, kind, args, kwargs)
        if "output" in self._capture.roles:
            entries += _record(dump, outputs, place, kind, "output")
        dump.complete(entries)
        return result

    def _inputs(self, dump: "StepDump", place: str, kind: str, args: tuple, kwargs: dict) -> list[dict]:
        entries = []
        if "input" in self._capture.roles:
            entries += _record(dump, tensors_in(args), place, kind, "input")
        if "kwargs" in self._capture.roles:
            entries += _record(dump, tensors_in(kwargs), place, kind, "kwargs")
        return entries


def _record(dump: "StepDump", indexed, place: str, kind: str, role: str) -> list[dict]:
    entries = []
    for index, tensor in indexed:
        entry = dump.writer.record(tensor, place=place, kind="op", op_type=kind, role=role, index=index)
        if entry is not None:
            entries.append(entry)
    return entries
