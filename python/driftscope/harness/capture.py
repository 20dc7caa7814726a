"""The capture session: which steps are recorded, the root modules that mark a step, and the
dump written for each recorded step."""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import torch

from . import __version__
from .determinism import numerics_flags
from .device import device_name, load_npu_backend
from .inputs import INPUTS_FILE, save_inputs
from .module_level import ModuleHooks
from .naming import NameFilter, Pattern, tensors_in
from .op_level import OpRecorder
from .writer import MANIFEST, DumpWriter

LEVELS = ("module", "op")
ROLES = ("input", "kwargs", "output", "parameter", "grad")
DEFAULT_ROLES = ("input", "kwargs", "output")


def capture(
    model: torch.nn.Module,
    path: Union[str, os.PathLike],
    *,
    level: str = "module",
    roles: Iterable[str] = DEFAULT_ROLES,
    include: Iterable[Pattern] = (),
    exclude: Iterable[Pattern] = (),
    step: Union[int, Iterable[int]] = 0,
    max_numel: Optional[int] = None,
    stats: bool = True,
    save_inputs: bool = False,
    overwrite: bool = False,
    name: Optional[str] = None,
) -> "Capture":
    """Record the forward pass of `model` into a driftscope dump folder; use it as a context manager.

    A step is one call of `model` inside the `with` block, counted from 0. `step` picks the
    step(s) to record: an int writes the dump into `path`, several steps write `path/step{N}`.

    - `level`: `"module"` (every submodule's call) or `"op"` (every torch call).
    - `roles`: any of `input`, `kwargs`, `output`, `parameter`, `grad` (the last two at module
      level; gradients are recorded when backward runs inside the block).
    - `include` / `exclude`: place-name patterns (shell globs, or `re:` regular expressions).
    - `max_numel`: larger tensors are listed with `file: null` and a `skipped` reason.
    - `stats`: add float64 min/max/mean/norm to each saved entry.
    - `save_inputs`: save the step's model inputs as `inputs.pt` for replay (`load_inputs`).
    - `name`: the place name of `model` itself (default: its class name); submodules are named
      by their path (`layers.0.mlp`).
    """
    return Capture(
        path, level=level, roles=roles, include=include, exclude=exclude, step=step,
        max_numel=max_numel, stats=stats, save_inputs=save_inputs, overwrite=overwrite,
        models=[(model, name)],
    )


class CaptureError(RuntimeError):
    """A capture could not record what it was asked to."""


class StepDump:
    """One recorded step: its writer, run metadata, and the counters that name and order places."""

    def __init__(self, step: int, writer: DumpWriter) -> None:
        self.step = step
        self.writer = writer
        self.run: Optional[dict[str, Any]] = None
        self.frames: list[tuple[torch.nn.Module, Optional[str], list[dict]]] = []
        self._calls: Counter[str] = Counter()
        self._seen: set[int] = set()
        self._next_order = 0
        self._grad_targets: dict[int, list[tuple[str, str, str, int]]] = {}

    def module_place(self, base: str) -> str:
        """A module's place: its path on the first call in the step, `path#k` on the (k+1)-th."""
        calls = self._calls[base]
        self._calls[base] += 1
        return base if calls == 0 else f"{base}#{calls}"

    def op_place(self, name: str) -> str:
        """An op's place: `name.n` for its (n+1)-th call in the step, as msprobe counts."""
        calls = self._calls[name]
        self._calls[name] += 1
        return f"{name}.{calls}"

    def first_call(self, module: torch.nn.Module) -> bool:
        """True once per module and step."""
        if id(module) in self._seen:
            return False
        self._seen.add(id(module))
        return True

    def pop_frame(self, module: torch.nn.Module):
        """Pop the pending call of `module`, dropping calls above it that raised and never ended."""
        while self.frames:
            frame = self.frames.pop()
            if frame[0] is module:
                return frame
        return None

    def complete(self, entries: list[dict]) -> int:
        """Close a place: give its entries the next completion order and return that order."""
        order = self._next_order
        self._next_order += 1
        self.writer.complete(entries, order)
        return order

    def expect_grad(self, param: torch.nn.Parameter, place: str, op_type: str, name: str, order: int) -> None:
        """Record `param`'s gradient under `place` when backward accumulates it."""
        if param.requires_grad:
            self._grad_targets.setdefault(id(param), []).append((place, op_type, name, order))

    def grad_arrived(self, param: torch.nn.Parameter) -> None:
        """Save the first gradient accumulated into `param` after this step's forward pass."""
        for place, op_type, name, order in self._grad_targets.pop(id(param), ()):
            entry = self.writer.record(param.grad, place=place, kind="module", op_type=op_type, role="grad", index=name)
            if entry is not None:
                self.writer.complete([entry], order)


class _Root:
    """A top-level module whose calls are the steps."""

    def __init__(self, module: torch.nn.Module, name: str, hooks: ModuleHooks) -> None:
        self.module = module
        self.name = name
        self.hooks = hooks
        self.calls = 0
        self.handles: list[Any] = []


class Capture:
    """A capture session; see `capture`. Several root modules may share it (`add_root`)."""

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        level: str = "module",
        roles: Iterable[str] = DEFAULT_ROLES,
        include: Iterable[Pattern] = (),
        exclude: Iterable[Pattern] = (),
        step: Union[int, Iterable[int]] = 0,
        max_numel: Optional[int] = None,
        stats: bool = True,
        save_inputs: bool = False,
        overwrite: bool = False,
        models: Iterable[tuple[torch.nn.Module, Optional[str]]] = (),
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        self.roles = tuple(roles)
        unknown = [role for role in self.roles if role not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
        if level == "op" and {"parameter", "grad"} & set(self.roles):
            raise ValueError("roles parameter and grad exist only at level 'module'")
        if max_numel is not None and max_numel < 0:
            raise ValueError("max_numel must be >= 0")
        self.level = level
        self.path = Path(path)
        self.accepts = NameFilter(include, exclude)
        self.current: Optional[StepDump] = None
        single = isinstance(step, int)
        steps = sorted({step} if single else set(step))
        if not steps or any(s < 0 for s in steps):
            raise ValueError(f"step must be a non-negative int or a non-empty set of them, not {step!r}")
        self._max_numel = max_numel
        self._save_inputs = save_inputs
        self._models = list(models)
        # Writers are made now, so an existing dump is refused before anything runs.
        self._dumps = {
            s: StepDump(s, DumpWriter(self.path if single else self.path / f"step{s}",
                                      max_numel=max_numel, stats=stats, overwrite=overwrite))
            for s in steps
        }
        self._roots: list[_Root] = []
        self._covered: set[int] = set()
        self._grad_step: Optional[StepDump] = None
        self._ops = OpRecorder(self) if level == "op" else None
        self._ops_on = False
        self._open = False
        self.manifests: list[Path] = []

    def __enter__(self) -> "Capture":
        load_npu_backend()
        self._open = True
        for model, name in self._models:
            self.add_root(model, name)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(raised=exc_type is not None)

    def add_root(self, module: torch.nn.Module, name: Optional[str] = None) -> str:
        """Hook a top-level module; each of its calls is one step. Returns its place name.

        The first root's submodules are named by their path; later roots' are prefixed with the
        root's name, so two roots cannot collide.
        """
        if not self._open:
            raise CaptureError("add_root needs an open capture (use it inside `with`)")
        name = self._unique(name or type(module).__name__)
        prefix = f"{name}." if self._roots else ""
        root = _Root(module, name, ModuleHooks(self, module, name, prefix) if self.level == "module" else None)
        # The step starts before the root's own hooks run and ends after them.
        root.handles.append(module.register_forward_pre_hook(
            lambda m, args, kwargs: self._step_start(root, args, kwargs), with_kwargs=True, prepend=True))
        root.handles.append(module.register_forward_hook(lambda m, args, out: self._step_end()))
        self._roots.append(root)
        self._covered.update(id(m) for m in module.modules())
        return name

    def covers(self, module: torch.nn.Module) -> bool:
        """Whether `module` is a root or inside one."""
        return id(module) in self._covered

    def grad_arrived(self, param: torch.nn.Parameter) -> None:
        """Parameter hook: hand a fresh gradient to the last recorded step."""
        if self._grad_step is not None:
            self._grad_step.grad_arrived(param)

    def close(self, raised: bool = False) -> list[Path]:
        """Detach everything and write the manifest of each recorded step; return their paths.

        Raises when a chosen step never ran (unless the block already raised).
        """
        if not self._open:
            return self.manifests
        self._open = False
        self._stop_ops()
        self.current = None
        for root in self._roots:
            for handle in root.handles:
                handle.remove()
            if root.hooks is not None:
                root.hooks.remove()
        missing = []
        for step, dump in self._dumps.items():
            if dump.run is None:
                missing.append(step)
                continue
            self.manifests.append(dump.writer.finish(self.level, dump.run))
        if missing and not raised:
            calls = ", ".join(f"{root.name} {root.calls} time(s)" for root in self._roots) or "no model"
            raise CaptureError(
                f"step(s) {missing} never ran: inside the capture {calls} was called "
                f"(steps count calls from 0); no {MANIFEST} was written for them"
            )
        return self.manifests

    def _unique(self, name: str) -> str:
        taken = {root.name for root in self._roots}
        if name not in taken:
            return name
        k = 1
        while f"{name}#{k}" in taken:
            k += 1
        return f"{name}#{k}"

    def _step_start(self, root: _Root, args: tuple, kwargs: dict) -> None:
        step = root.calls
        root.calls += 1
        dump = self._dumps.get(step)
        self.current = self._grad_step = dump
        if dump is None:
            return
        if dump.run is None:
            dump.run = self._run_metadata(dump, root, args, kwargs)
            if self._save_inputs:
                save_inputs(dump.writer.folder, *args, **kwargs)
                dump.run["inputs"] = INPUTS_FILE
        if self._ops is not None:
            self._ops.__enter__()
            self._ops_on = True

    def _step_end(self) -> None:
        self._stop_ops()
        self.current = None

    def _stop_ops(self) -> None:
        if self._ops_on:
            self._ops.__exit__(None, None, None)
            self._ops_on = False

    def _run_metadata(self, dump: StepDump, root: _Root, args: tuple, kwargs: dict) -> dict[str, Any]:
        device = _device_of(root.module, args, kwargs)
        cuda_version = torch.version.cuda
        run: dict[str, Any] = {
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "host": socket.gethostname(),
            "device": str(device),
            "device_name": device_name(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "dtype": _dtype_of(root.module),
            "seed": torch.initial_seed(),
            **numerics_flags(),
            "argv": list(sys.argv),
            "step": dump.step,
            "harness": __version__,
            "root": root.name,
            "roles": list(self.roles),
            "max_numel": self._max_numel,
            **self.accepts.describe(),
        }
        if cuda_version is not None:
            run["cuda"] = cuda_version
        if "torch_npu" in sys.modules:
            run["torch_npu"] = getattr(sys.modules["torch_npu"], "__version__", None)
        return run


def _device_of(module: torch.nn.Module, args: tuple, kwargs: dict) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for _, tensor in tensors_in((args, kwargs)):
        return tensor.device
    return torch.device("cpu")


def _dtype_of(module: torch.nn.Module) -> Optional[str]:
    for param in module.parameters():
        if param.is_floating_point():
            return str(param.dtype).replace("torch.", "")
    return None
