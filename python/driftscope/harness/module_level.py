"""Module level: forward hooks on every module under a root record its inputs, outputs, parameters
and parameter gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .naming import tensors_in

if TYPE_CHECKING:
    from .capture import Capture, StepDump


class ModuleHooks:
    """The hooks of one root module and all its submodules, feeding the capture's current step."""

    def __init__(self, capture: "Capture", root: torch.nn.Module, root_name: str, prefix: str) -> None:
        self._capture = capture
        self._handles: list[Any] = []
        grads = "grad" in capture.roles
        for path, module in root.named_modules():
            base = root_name if path == "" else prefix + path
            op_type = type(module).__name__
            self._handles.append(module.register_forward_pre_hook(
                lambda m, args, kwargs, base=base, op_type=op_type: self._before(m, base, op_type, args, kwargs),
                with_kwargs=True,
            ))
            self._handles.append(module.register_forward_hook(
                lambda m, args, kwargs, out, op_type=op_type: self._after(m, op_type, out),
                with_kwargs=True,
            ))
            if grads:
                for param in module.parameters(recurse=False):
                    if param.requires_grad:
                        self._handles.append(param.register_post_accumulate_grad_hook(capture.grad_arrived))

    def remove(self) -> None:
        """Detach every hook."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _before(self, module: torch.nn.Module, base: str, op_type: str, args: tuple, kwargs: dict) -> None:
        dump = self._capture.current
        if dump is None:
            return
        place = dump.module_place(base)
        if not self._capture.accepts(place):
            dump.frames.append((module, None, []))
            return
        # Inputs are saved before the module runs: an in-place module (ReLU(inplace=True))
        # overwrites them before its forward hook could see them.
        entries = []
        if "input" in self._capture.roles:
            entries += _record(dump, args, place, op_type, "input")
        if "kwargs" in self._capture.roles:
            entries += _record(dump, kwargs, place, op_type, "kwargs")
        dump.frames.append((module, place, entries))

    def _after(self, module: torch.nn.Module, op_type: str, output: Any) -> None:
        dump = self._capture.current
        if dump is None:
            return
        frame = dump.pop_frame(module)
        if frame is None or frame[1] is None:
            return
        _, place, entries = frame
        roles = self._capture.roles
        if "output" in roles:
            entries += _record(dump, output, place, op_type, "output")
        # Parameters and their gradients belong to the module's first call in the step.
        first_call = dump.first_call(module)
        if first_call and "parameter" in roles:
            for name, param in module.named_parameters(recurse=False):
                entries += _record(dump, param, place, op_type, "parameter", name)
        order = dump.complete(entries)
        if first_call and "grad" in roles:
            for name, param in module.named_parameters(recurse=False):
                dump.expect_grad(param, place, op_type, name, order)


def _record(dump: "StepDump", value: Any, place: str, op_type: str, role: str, index: str = "") -> list[dict]:
    entries = []
    for position, tensor in tensors_in(value, index):
        entry = dump.writer.record(tensor, place=place, kind="module", op_type=op_type, role=role, index=position)
        if entry is not None:
            entries.append(entry)
    return entries
