"""A broken dump raises DumpError naming the file and the entry, as the command exits 2."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

import driftscope
from conftest import FAULT, REF, cli

TENSOR = "Functional.silu.1.forward.output.0"


def test_a_missing_dump_names_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(driftscope.DumpError) as e:
        driftscope.compare(REF, missing)
    assert e.value.file == str(missing)
    assert str(missing) in str(e.value)
    assert e.value.comparison is None


def test_a_truncated_tensor_names_its_file_and_entry(tmp_path):
    dev = tmp_path / "dev"
    shutil.copytree(FAULT, dev)
    broken = dev / "step0" / "proc704" / "dump_tensor_data" / f"{TENSOR}.pt"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    done = cli("compare", REF, dev)
    assert done.returncode == 2
    with pytest.raises(driftscope.DumpError) as e:
        driftscope.compare(REF, dev, progress=False)
    assert e.value.file == str(broken)
    assert e.value.entry == TENSOR
    assert str(broken) in str(e.value)
    # What could be compared comes with the error; the broken pair is marked.
    c = e.value.comparison
    assert [p["status"] for p in c.pairs if p["name"] == TENSOR] == ["error"]
    with pytest.raises(driftscope.DumpError):
        driftscope.check(REF, dev, progress=False)


def test_a_broken_dump_json_names_it(tmp_path):
    dev = tmp_path / "dev"
    shutil.copytree(FAULT, dev)
    (dev / "step0" / "proc704" / "dump.json").write_text("{ not json")
    with pytest.raises(driftscope.DumpError) as e:
        driftscope.bisect(REF, dev)
    assert e.value.file.endswith("dump.json")
    assert cli("bisect", REF, dev).returncode == 2


def test_the_collector_without_torch_says_what_is_missing():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here: harness/ci.sh tests the collector with it")
    with pytest.raises(ImportError, match=r"driftscope.harness needs PyTorch \(>= 2.1\)"):
        import driftscope.harness  # noqa: F401
