"""A notebook-style script renders the rich display of a comparison and of a check."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import CONFIG, FAULT, REF

SCRIPT = Path(__file__).with_name("notebook.py")


def test_notebook_renders_summary_table_and_drift_chart(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(REF), str(FAULT), str(CONFIG), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "<driftscope.Comparison" in done.stdout
    assert "<driftscope.CheckResult failed" in done.stdout
    for name in ("compare.html", "check.html"):
        page = (tmp_path / name).read_text()
        root = ET.fromstring(page)  # well-formed markup, the SVG chart included
        text = "".join(root.itertext())
        assert "first divergence" in text
        assert "Functional.silu.1.forward" in text
        svg = [e for e in root.iter() if e.tag.endswith("svg")]
        assert len(svg) == 1
        # The chart plots one point per place at least (circles or path segments).
        assert len(list(svg[0].iter())) > 50
    assert "FAILED" in (tmp_path / "check.html").read_text()
