"""Comparison and CheckResult: the library's results as Python objects over the JSON report
(docs/report-schema.md), with a pandas view and a rich Jupyter display."""

from __future__ import annotations

import html
import json
import os
from typing import Any, Dict, List, Optional

from . import _driftscope


def _num(x: Any) -> str:
    """A metric for the HTML table: 4 significant digits, `-` when absent (JSON null)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return html.escape(str(x))


class Comparison:
    """The comparison of a candidate dump with a reference: what ``driftscope compare --json``
    (or ``bisect --json``) writes, as Python values.

    ``report`` is the whole JSON report as a dict; the attributes below are parts of it.
    """

    def __init__(self, native: "_driftscope.Report"):
        self._native = native
        #: The whole report (docs/report-schema.md).
        self.report: Dict[str, Any] = json.loads(native.json())

    @property
    def analysis(self) -> Dict[str, Any]:
        """Verdicts: overall, summary, first_divergence, ranked, counts, errors, method."""
        return self.report["analysis"]

    @property
    def overall(self) -> str:
        """``identical``, ``within_noise``, ``diverged``, ``changed`` or ``empty``."""
        return self.analysis["overall"]

    @property
    def summary(self) -> str:
        """One sentence: the verdict and where the run first departs."""
        return self.analysis["summary"]

    @property
    def first_divergence(self) -> Optional[Dict[str, Any]]:
        """The first place that departs beyond the noise (name, tensor, kind, reason, errors),
        or None."""
        return self.analysis["first_divergence"]

    @property
    def ranked(self) -> List[Dict[str, Any]]:
        """At most 10 places, by the error they add, largest first."""
        return self.analysis["ranked"]

    @property
    def pairs(self) -> List[Dict[str, Any]]:
        """Every tensor pair in execution order, with its metrics (``cosine``,
        ``rel_l2_err``, ``max_abs_err``, ...; None where JSON has null) and verdict."""
        return self.report["pairs"]

    @property
    def unmatched_reference(self) -> List[str]:
        """Reference tensors with no candidate counterpart."""
        return self.report["unmatched_reference"]

    @property
    def unmatched_candidate(self) -> List[str]:
        """Candidate tensors with no reference counterpart."""
        return self.report["unmatched_candidate"]

    def to_json(self) -> str:
        """The JSON report, byte for byte what ``--json`` writes."""
        return self._native.json()

    def to_pandas(self) -> "Any":
        """The pairs as a pandas DataFrame, one row per pair (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("Comparison.to_pandas needs pandas: pip install pandas") from err
        return pd.DataFrame(self.pairs)

    def drift_svg(self) -> str:
        """The drift-along-the-network chart (as in ``driftscope report``), as SVG."""
        label = os.path.basename(os.path.normpath(self.report["candidate"]["path"]))
        return self._native.drift_svg(label)

    def __repr__(self) -> str:
        r, c = self.report["reference"]["path"], self.report["candidate"]["path"]
        return f"<driftscope.Comparison {r} vs {c}: {self.summary}>"

    def _repr_html_(self) -> str:
        """Jupyter's display: a summary table, the top places and the drift chart."""
        a = self.analysis
        rows = [
            ("reference", self.report["reference"]["path"]),
            ("candidate", self.report["candidate"]["path"]),
            ("verdict", a["overall"]),
            ("pairs", f"{len(self.pairs)} ({a['tensors_read']} of {a['tensors_total']} read, "
                      f"method {a['method']})"),
            ("per verdict", ", ".join(f"{k} {v}" for k, v in a["counts"].items())),
        ]
        f = a["first_divergence"]
        if f is not None:
            rows.append(("first divergence", f"{f['name']} ({f['kind']}): {f['reason']}"))
        if self.unmatched_reference or self.unmatched_candidate:
            rows.append(("unmatched", f"{len(self.unmatched_reference)} reference, "
                                      f"{len(self.unmatched_candidate)} candidate"))
        summary = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        ranked = "".join(
            f"<tr><td style='text-align:left'>{html.escape(p['name'])}</td><td>{_num(p['added'])}</td>"
            f"<td>{_num(p['rel_l2_err'])}</td><td>{_num(p['expected_err'])}</td>"
            f"<td>{_num(p['inherited_err'])}</td><td>{html.escape(p['verdict'])}</td></tr>"
            for p in self.ranked
        )
        return (
            "<div class='driftscope'>"
            f"<p><b>driftscope</b>: {html.escape(self.summary)}</p>"
            f"<table>{summary}</table>"
            "<p>Places adding the most error</p><table>"
            "<tr><th>place</th><th>added</th><th>rel L2 error</th><th>expected</th>"
            f"<th>inherited</th><th>verdict</th></tr>{ranked}</table>"
            f"<div>{self.drift_svg()}</div></div>"
        )


class CheckResult:
    """The nightly check of a comparison (``driftscope check``): ``passed``, ``failures``,
    the ``comparison`` it judged, and ``text`` as the command prints it."""

    def __init__(self, native: "_driftscope.CheckOutcome"):
        self._native = native
        #: The check report: passed, places (each with failures), run_failures, ranked, ...
        self.report: Dict[str, Any] = json.loads(native.json())
        #: The comparison that was checked.
        self.comparison = Comparison(native.report)

    @property
    def passed(self) -> bool:
        """No check failed (the command's exit 0; False is its exit 1)."""
        return self.report["passed"]

    @property
    def failures(self) -> List[Dict[str, Any]]:
        """Every failed check, run-level first, then by place in execution order: ``place``
        (None for the run as a whole), ``kind``, ``metric``, ``value``, ``limit``,
        ``baseline``, ``message``."""
        out = [dict(f, place=None) for f in self.report["run_failures"]]
        for p in self.report["places"]:
            out.extend(dict(f, place=p["name"]) for f in p["failures"])
        return out

    @property
    def text(self) -> str:
        """The text ``driftscope check`` prints."""
        return self._native.text()

    def __repr__(self) -> str:
        state = "passed" if self.passed else f"failed ({len(self.failures)} failures)"
        return f"<driftscope.CheckResult {state}: {self.report['summary']}>"

    def _repr_html_(self) -> str:
        fails = "".join(
            f"<tr><td style='text-align:left'>{html.escape(f['place'] or '(run)')}</td>"
            f"<td style='text-align:left'>{html.escape(f['message'])}</td></tr>"
            for f in self.failures[:20]
        )
        head = "passed" if self.passed else f"FAILED: {len(self.failures)} check(s)"
        return (
            f"<div class='driftscope'><p><b>driftscope check</b>: {html.escape(head)}</p>"
            f"<table>{fails}</table>{self.comparison._repr_html_()}</div>"
        )
