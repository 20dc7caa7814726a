"""Names: place names, tensor indices inside nested arguments, op names, and name filters."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterable, Iterator, Union

import torch
from torch.overrides import resolve_name

Pattern = Union[str, "re.Pattern[str]"]

# Dunder methods that write into `self` (resolve_name maps most operators to their named op,
# `x += y` to `add_`, but these keep their dunder names).
_INPLACE_DUNDERS = {
    "__setitem__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__",
    "__imod__", "__ipow__", "__imatmul__", "__iand__", "__ior__", "__ixor__", "__ilshift__",
    "__irshift__",
}


class NameFilter:
    """Include/exclude patterns on place names.

    A pattern is a shell glob matched against the whole name (`layers.*.mlp`), or a regular
    expression searched in it when written `re:...` or passed compiled. No include pattern means
    every place; an exclude match always wins.
    """

    def __init__(self, include: Iterable[Pattern] = (), exclude: Iterable[Pattern] = ()) -> None:
        self._include = [_matcher(p) for p in _as_list(include)]
        self._exclude = [_matcher(p) for p in _as_list(exclude)]

    def __call__(self, place: str) -> bool:
        if any(match(place) for match in self._exclude):
            return False
        return not self._include or any(match(place) for match in self._include)

    def describe(self) -> dict[str, list[str]]:
        """The patterns as text, for the run metadata."""
        return {
            "include": [m.pattern_text for m in self._include],
            "exclude": [m.pattern_text for m in self._exclude],
        }


class _Matcher:
    def __init__(self, test: Callable[[str], bool], pattern_text: str) -> None:
        self._test = test
        self.pattern_text = pattern_text

    def __call__(self, name: str) -> bool:
        return self._test(name)


def _as_list(patterns: Iterable[Pattern] | Pattern) -> list[Pattern]:
    # A lone string is one pattern, not a sequence of one-letter patterns.
    if isinstance(patterns, (str, re.Pattern)):
        return [patterns]
    return list(patterns)


def _matcher(pattern: Pattern) -> _Matcher:
    if isinstance(pattern, re.Pattern):
        return _Matcher(lambda name: pattern.search(name) is not None, f"re:{pattern.pattern}")
    if not isinstance(pattern, str):
        raise TypeError(f"a name pattern must be a str or a compiled regex, not {type(pattern).__name__}")
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as err:
            raise ValueError(f"bad regular expression {pattern!r}: {err}") from None
        return _Matcher(lambda name: regex.search(name) is not None, pattern)
    return _Matcher(lambda name: fnmatch.fnmatchcase(name, pattern), pattern)


def tensors_in(value: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (index, tensor) for every tensor in a nested structure, in a stable order.

    Sequences give positions (`"0"`, `"1.0"`), mappings and dataclasses give their keys
    (`"logits"`, `"mask.0"`); anything that is not a tensor or a container is ignored.
    """
    if isinstance(value, torch.Tensor):
        yield prefix or "0", value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from tensors_in(item, _join(prefix, str(key)))
    elif isinstance(value, (list, tuple)):
        for position, item in enumerate(value):
            yield from tensors_in(item, _join(prefix, str(position)))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from tensors_in(getattr(value, field.name), _join(prefix, field.name))


def _join(prefix: str, part: str) -> str:
    return f"{prefix}.{part}" if prefix else part


def op_name(func: Callable[..., Any]) -> str:
    """The public dotted name of a torch callable (`torch.nn.functional.silu`, `torch.Tensor.add_`)."""
    name = resolve_name(func)
    if name is None:
        module = getattr(func, "__module__", None) or "torch"
        name = f"{module}.{getattr(func, '__qualname__', getattr(func, '__name__', repr(func)))}"
    return name


def op_type(name: str) -> str:
    """The base op of a dotted op name: `silu`, `add` for `add_`, `mul` for `__imul__`.

    Property getters keep the property (`torch.Tensor.T.__get__` -> `T`).
    """
    parts = name.split(".")
    base = parts[-2] if parts[-1] in ("__get__", "__set__") and len(parts) > 1 else parts[-1]
    if base in _INPLACE_DUNDERS and base != "__setitem__":
        return base[3:-2]
    if base.startswith("__") and base.endswith("__"):
        return base[2:-2]
    return base[:-1] if base.endswith("_") and not base.startswith("_") else base


def is_inplace(name: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether an op overwrites one of its arguments, so its inputs must be saved before it runs."""
    base = name.rsplit(".", 1)[-1]
    if base in _INPLACE_DUNDERS or kwargs.get("inplace") is True or kwargs.get("out") is not None:
        return True
    return base.endswith("_") and not base.endswith("__")
