"""Capturing a script without editing it: its outermost module calls become capture roots."""

from __future__ import annotations

import os
import runpy
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from .capture import Capture


class OutermostCalls:
    """While active, `nn.Module.__call__` hands every outermost module call's module to the capture.

    A call is outermost when no other module call is running in this thread. The first time a
    module is called that way it becomes a root (its calls are its steps). Calls in other
    processes (data-loader workers forked from the script) are left alone.
    """

    def __init__(self, session: Capture) -> None:
        self._session = session
        self._depth = threading.local()
        self._pid = os.getpid()
        self._original = None

    def __enter__(self) -> "OutermostCalls":
        self._original = original = torch.nn.Module.__call__
        session, depth, pid = self._session, self._depth, self._pid

        def call(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
            level = getattr(depth, "value", 0)
            if level == 0 and os.getpid() == pid and not session.covers(module):
                session.add_root(module)
            depth.value = level + 1
            try:
                return original(module, *args, **kwargs)
            finally:
                depth.value = level

        torch.nn.Module.__call__ = call
        return self

    def __exit__(self, *exc: Any) -> None:
        torch.nn.Module.__call__ = self._original


def run_script(script: str, script_args: list[str], session: Capture) -> None:
    """Run `script` as `__main__` with `script_args`, capturing its outermost module calls.

    The manifests are written when the script ends, also when it raises or calls sys.exit.
    """
    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(f"script not found: {script}")
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(path), *script_args]
    sys.path.insert(0, str(path.resolve().parent))  # as `python script.py` would
    try:
        with session:
            with OutermostCalls(session):
                try:
                    runpy.run_path(str(path), run_name="__main__")
                except SystemExit as stop:
                    if stop.code not in (None, 0):
                        raise
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
