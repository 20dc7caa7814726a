"""The Python API on the reference dumps gives what the `driftscope` command gives."""

from __future__ import annotations

import json
import math
import threading

import pytest

import driftscope
from conftest import CONFIG, FAULT, FP16, REF, cli


def test_the_installed_package_is_what_is_tested():
    assert "site-packages" in driftscope.__file__
    done = cli("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["driftscope", driftscope.__version__]


def test_compare_gives_the_commands_json(tmp_path):
    out = tmp_path / "compare.json"
    done = cli("compare", REF, FAULT, "--json", out)
    assert done.returncode == 0, done.stderr
    c = driftscope.compare(REF, FAULT, progress=False)
    assert c.report == json.loads(out.read_text())
    assert c.to_json() == out.read_text()
    assert c.first_divergence["name"] == "Functional.silu.1.forward"
    assert c.overall == "diverged"
    assert c.summary.startswith("diverged (own_error): first at Functional.silu.1.forward")
    assert c.summary in done.stdout
    first = c.pairs[0]
    assert 0.99 < first["cosine"] <= 1.0
    assert len(c.pairs) == len(json.loads(out.read_text())["pairs"]) > 100


@pytest.mark.parametrize("baseline", [None, FP16])
def test_bisect_gives_the_commands_json(tmp_path, baseline):
    out = tmp_path / "bisect.json"
    extra = [] if baseline is None else ["--baseline", baseline]
    done = cli("bisect", REF, FAULT, *extra, "--json", out)
    assert done.returncode == 0, done.stderr
    b = driftscope.bisect(REF, FAULT, baseline=baseline)
    assert b.report == json.loads(out.read_text())
    assert b.first_divergence["name"] == "Functional.silu.1.forward"
    assert b.analysis["method"] == ("bisect" if baseline is None else "baseline")


@pytest.mark.parametrize("dev", [FAULT, FP16])
def test_check_gives_the_commands_verdict(tmp_path, dev):
    out = tmp_path / "check.json"
    done = cli("check", REF, dev, "--config", CONFIG, "--json", out)
    r = driftscope.check(REF, dev, config=CONFIG, progress=False)
    assert done.returncode == (0 if r.passed else 1), done.stderr
    assert r.comparison.report == json.loads(out.read_text())
    assert r.text == done.stdout
    if dev == FAULT:
        assert not r.passed
        places = {f["place"] for f in r.failures}
        assert "Functional.silu.1.forward" in places
        assert all(f["message"] for f in r.failures)
    else:
        assert r.passed and r.failures == []


def test_to_pandas_has_one_row_per_pair():
    c = driftscope.compare(REF, FAULT, progress=False)
    df = c.to_pandas()
    assert list(df["name"]) == [p["name"] for p in c.pairs]
    for got, p in zip(df["rel_l2_err"], c.pairs):
        want = p["rel_l2_err"]
        assert (want is None and math.isnan(got)) or got == want


def test_progress_comes_from_worker_threads_while_the_caller_waits():
    calls = []
    caller = threading.get_ident()
    c = driftscope.compare(REF, FAULT, progress=lambda d, t: calls.append((d, t, threading.get_ident())))
    # A worker thread could call back into Python only because the caller released the GIL.
    assert any(thread != caller for _, _, thread in calls[:-1])
    assert all(0 < d <= t for d, t, _ in calls)
    assert calls[-1][:2] == (len(c.pairs), len(c.pairs))


def test_tqdm_bar_when_tqdm_is_installed(capsys):
    pytest.importorskip("tqdm")
    driftscope.compare(REF, FAULT)
    assert "comparing" in capsys.readouterr().err


def test_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="fp32_matmul: unknown value `fast`"):
        driftscope.compare(REF, FAULT, fp32_matmul="fast")
    with pytest.raises(ValueError, match="filter is not a valid regular expression"):
        driftscope.compare(REF, FAULT, filter="(")


def test_a_bad_config_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "driftscope.toml"
    bad.write_text("[limits]\nmin_cosine = 'high'\n")
    with pytest.raises(driftscope.Error, match=str(bad)) as e:
        driftscope.check(REF, FAULT, config=bad)
    assert not isinstance(e.value, driftscope.DumpError)
