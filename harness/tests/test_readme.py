"""The example in harness/README.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import load_manifest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    places = [e["place"] for e in load_manifest(tmp_path / "dumps" / "cpu_fp32")["entries"]]
    assert places == ["0", "1", "2", "Sequential"]
