"""Seeds, numerics flags in the manifest, and saved inputs that replay the same batch."""

from __future__ import annotations

import random

import torch

import driftscope_harness as dh
from helpers import by_name, load_manifest, read_tensor


def test_seed_everything_repeats_the_draws():
    def draws():
        return random.random(), torch.randn(3)

    dh.seed_everything(123)
    first = draws()
    dh.seed_everything(123)
    second = draws()
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert torch.initial_seed() == 123


def test_flags_are_recorded_and_settable(tmp_path, transformer):
    model, ids = transformer
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    try:
        dh.set_tf32(True)
        dh.set_deterministic(True)
        dh.seed_everything(7)
        with dh.capture(model, tmp_path, roles=("output",)):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model(ids)
        run = load_manifest(tmp_path)["run"]
        assert run["allow_tf32_matmul"] is True and run["allow_tf32_cudnn"] is True
        assert run["deterministic_algorithms"] is True and run["cudnn_deterministic"] is True
        assert run["seed"] == 7
        assert run["autocast"] == {"cpu": "bfloat16"}
        dh.set_tf32(False)
        dh.set_deterministic(False)
        flags = dh.numerics_flags()
        assert flags["allow_tf32_matmul"] is False and flags["deterministic_algorithms"] is False
        assert flags["autocast"] is None
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.use_deterministic_algorithms(saved[2])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[3:]


def test_saved_inputs_replay_the_same_step(tmp_path, transformer):
    model, ids = transformer
    mask = torch.ones_like(ids, dtype=torch.bool)
    path = dh.save_inputs(tmp_path / "batch", ids, 3, flags={"mask": mask, "name": "x"})
    assert path == tmp_path / "batch" / "inputs.pt"
    args, kwargs = dh.load_inputs(tmp_path / "batch")
    assert torch.equal(args[0], ids) and args[1] == 3
    assert torch.equal(kwargs["flags"]["mask"], mask) and kwargs["flags"]["name"] == "x"

    with dh.capture(model, tmp_path / "dump", save_inputs=True, roles=("output",)):
        expected = model(ids)
    run = load_manifest(tmp_path / "dump")["run"]
    assert run["inputs"] == "inputs.pt"
    args, kwargs = dh.load_inputs(tmp_path / "dump", device="cpu")
    assert torch.equal(model(*args, **kwargs), expected)


def test_save_inputs_refuses_objects_it_cannot_replay(tmp_path):
    try:
        dh.save_inputs(tmp_path, torch.ones(2), object())
    except TypeError as err:
        assert "args[1] of type object" in str(err)
    else:
        raise AssertionError("an arbitrary object must be refused")


def test_replay_reproduces_the_dump(tmp_path, cnn):
    model, images = cnn
    with dh.capture(model, tmp_path / "a", save_inputs=True, roles=("output",)):
        model(images)
    args, kwargs = dh.load_inputs(tmp_path / "a")
    with dh.capture(model, tmp_path / "b", roles=("output",)):
        model(*args, **kwargs)
    a, b = by_name(load_manifest(tmp_path / "a")), by_name(load_manifest(tmp_path / "b"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(read_tensor(tmp_path / "a", a[name]), read_tensor(tmp_path / "b", b[name]))
