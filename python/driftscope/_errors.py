"""The exceptions the API raises (the native module builds them, see src/lib.rs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from ._comparison import Comparison


class Error(Exception):
    """A driftscope call failed for a reason other than a broken dump (a bad config,
    baseline or option): the message says which file or option."""


class DumpError(Error):
    """A dump could not be read or compared: the message, ``file`` (the broken file, or the
    dump when no single file is to blame) and ``entry`` (the tensor within the dump, when
    known), as the ``driftscope`` command reports them before exiting with status 2.

    ``comparison`` holds what could be compared when the failure came after the comparison
    (a pair that could not be read, shapes that do not fit, nothing paired); it is None when
    a dump could not be opened at all.
    """

    def __init__(self, message: str, file: Any, entry: Optional[str] = None, report: Any = None):
        super().__init__(message)
        self.file: str = str(file)
        self.entry: Optional[str] = entry
        self._report = report

    @property
    def comparison(self) -> Optional["Comparison"]:
        from ._comparison import Comparison

        return None if self._report is None else Comparison(self._report)

    def __reduce__(self):  # picklable although its __init__ takes extra arguments
        return (type(self), (self.args[0], self.file, self.entry))
