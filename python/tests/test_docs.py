"""docs/python.md's example runs as written, from the repository root, on reference_dumps/."""

from __future__ import annotations

import contextlib
import io
import re

from conftest import REPO

DOC = REPO / "docs" / "python.md"


def test_the_guides_example_runs(monkeypatch):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), scope)
    assert scope["c"].first_divergence["name"] == "Functional.silu.1.forward"
    assert scope["b"].analysis["method"] == "baseline"
    assert scope["r"].passed is False
    assert len(scope["df"]) == len(scope["c"].pairs)
    # What the guide shows as the example's output is what it prints.
    shown = re.search(r"prints:\n\n```\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert out.getvalue() == shown
