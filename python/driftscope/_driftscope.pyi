"""Type stubs of the native module (python/src/lib.rs). Use the wrappers in driftscope."""

from typing import Callable, Optional

__version__: str

class Report:
    """A comparison as the library made it."""

    def json(self) -> str:
        """The JSON report (docs/report-schema.md), as `--json` writes it."""
    def drift_svg(self, label: str) -> str:
        """The drift-along-the-network chart as SVG, the run labelled `label`."""

class CheckOutcome:
    """The result of `check`: the check report and the comparison it judged."""

    report: Report
    def json(self) -> str:
        """The check report as JSON."""
    def text(self) -> str:
        """The text `driftscope check` prints."""

def compare(
    reference: str,
    candidate: str,
    *,
    filter: Optional[str] = None,
    noise: Optional[str] = None,
    fp32_matmul: str = "auto",
    format: Optional[str] = None,
    allow_symlinks: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> Report: ...
def bisect(
    reference: str,
    candidate: str,
    *,
    baseline: Optional[str] = None,
    exhaustive: bool = False,
    filter: Optional[str] = None,
    noise: Optional[str] = None,
    fp32_matmul: str = "auto",
    format: Optional[str] = None,
    allow_symlinks: bool = False,
) -> Report: ...
def check(
    reference: str,
    candidate: str,
    *,
    config: Optional[str] = None,
    baseline: Optional[str] = None,
    filter: Optional[str] = None,
    noise: Optional[str] = None,
    fp32_matmul: str = "auto",
    format: Optional[str] = None,
    allow_symlinks: bool = False,
    progress: Optional[Callable[[int, int], None]] = None,
) -> CheckOutcome: ...
