"""compare, bisect and check: thin wrappers over the native module that add progress bars and
wrap results."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Union

from . import _driftscope
from ._comparison import CheckResult, Comparison

PathLike = Union[str, "os.PathLike[str]"]
#: ``None``: a tqdm bar when tqdm is installed; ``False``: none; a callable: called as
#: ``progress(done, total)`` about a hundred times from worker threads (``total`` is an upper
#: bound, the reference's entry count; the last call has ``done == total``, the pairs measured).
Progress = Union[None, bool, Callable[[int, int], None]]


def _path(p: Optional[PathLike]) -> Optional[str]:
    return None if p is None else os.fspath(p)


@contextmanager
def _progress(progress: Progress, what: str) -> Iterator[Optional[Callable[[int, int], None]]]:
    """The callback the native side calls about a hundred times per run."""
    if progress is False:
        yield None
        return
    if callable(progress):
        yield progress
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    bar = None
    # Worker threads call back one at a time (the GIL), but tqdm can let go of the GIL while
    # it writes: without the lock two threads could each open a bar.
    lock = threading.Lock()

    def update(done: int, total: int) -> None:
        nonlocal bar
        with lock:
            if bar is None:
                bar = tqdm(total=total, desc=what, unit="pair", leave=False)
            bar.total = total  # the last call brings the upper bound down to the pairs compared
            bar.update(max(done - bar.n, 0))

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def compare(
    reference: PathLike,
    candidate: PathLike,
    *,
    filter: Optional[str] = None,
    noise: Optional[PathLike] = None,
    fp32_matmul: str = "auto",
    format: Optional[str] = None,
    allow_symlinks: bool = False,
    progress: Progress = None,
) -> Comparison:
    """Compare two dumps as ``driftscope compare REF DEV`` does: every pair measured and
    judged against the noise its precision explains.

    reference, candidate: dump folders or files (msprobe, safetensors, npy/npz, native, CANN;
    one rank: pass ``rankN`` folders). filter: only tensors whose name matches this regular
    expression. noise: a calibration run (``--noise``). fp32_matmul: ``auto``, ``ieee`` or
    ``tf32``. format: force a layout (``msprobe``, ``safetensors``, ``npy``, ``native``,
    ``cann``). progress: see :data:`Progress`.

    Raises DumpError (naming the file and entry) when a dump or one of its tensors cannot be
    read, shapes do not fit, or nothing pairs; Error for other failures; ValueError for a bad
    option.
    """
    with _progress(progress, "comparing") as cb:
        r = _driftscope.compare(
            os.fspath(reference), os.fspath(candidate), filter=filter, noise=_path(noise),
            fp32_matmul=fp32_matmul, format=format, allow_symlinks=allow_symlinks, progress=cb,
        )
    return Comparison(r)


def bisect(
    reference: PathLike,
    candidate: PathLike,
    *,
    baseline: Optional[PathLike] = None,
    exhaustive: bool = False,
    filter: Optional[str] = None,
    noise: Optional[PathLike] = None,
    fp32_matmul: str = "auto",
    format: Optional[str] = None,
    allow_symlinks: bool = False,
) -> Comparison:
    """The first divergence of ``candidate``, as ``driftscope bisect`` finds it, reading few
    tensors unless ``exhaustive``. With ``baseline`` (a known-good device run) the candidate
    is judged against it rather than against the noise model. Other arguments and errors as
    :func:`compare`.
    """
    r = _driftscope.bisect(
        os.fspath(reference), os.fspath(candidate), baseline=_path(baseline),
        exhaustive=exhaustive, filter=filter, noise=_path(noise), fp32_matmul=fp32_matmul,
        format=format, allow_symlinks=allow_symlinks,
    )
    return Comparison(r)


def check(
    reference: PathLike,
    candidate: PathLike,
    *,
    config: Optional[PathLike] = None,
    baseline: Optional[PathLike] = None,
    filter: Optional[str] = None,
    noise: Optional[PathLike] = None,
    fp32_matmul: str = "auto",
    format: Optional[str] = None,
    allow_symlinks: bool = False,
    progress: Progress = None,
) -> CheckResult:
    """The nightly accuracy check, as ``driftscope check`` runs it: the comparison judged
    against ``config`` (a driftscope.toml, docs/nightly.md) and an optional ``baseline``
    (BASELINE.json written by ``driftscope baseline``). ``result.passed`` is False on an
    accuracy regression (the command's exit 1); ``result.failures`` says what failed. A broken
    input raises DumpError (the command's exit 2). Other arguments as :func:`compare`.
    """
    with _progress(progress, "comparing") as cb:
        r = _driftscope.check(
            os.fspath(reference), os.fspath(candidate), config=_path(config),
            baseline=_path(baseline), filter=filter, noise=_path(noise),
            fp32_matmul=fp32_matmul, format=format, allow_symlinks=allow_symlinks, progress=cb,
        )
    return CheckResult(r)
