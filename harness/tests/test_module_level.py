"""Module-level capture on the tiny transformer and the small CNN."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import driftscope_harness as dh
from helpers import DTYPES, by_name, load_manifest, read_tensor

RUN_KEYS = {
    "created", "host", "device", "device_name", "torch", "python", "dtype", "seed",
    "deterministic_algorithms", "allow_tf32_matmul", "allow_tf32_cudnn", "autocast", "argv", "step",
}
ENTRY_KEYS = {"order", "place", "kind", "op_type", "role", "index", "name", "dtype", "shape", "device", "file"}


def check_manifest(folder: Path, level: str) -> dict:
    """Assert everything docs/formats.md requires of a native dump; return the manifest."""
    manifest = load_manifest(folder)
    assert manifest["format"] == "driftscope-native" and manifest["version"] == 1
    assert manifest["level"] == level
    assert RUN_KEYS <= set(manifest["run"])
    names = [entry["name"] for entry in manifest["entries"]]
    assert len(names) == len(set(names)), "names must be unique"
    orders = [entry["order"] for entry in manifest["entries"]]
    assert orders == sorted(orders), "entries are listed in execution order"
    place_order: dict[str, int] = {}
    for entry in manifest["entries"]:
        assert ENTRY_KEYS <= set(entry)
        assert entry["name"] == f"{entry['place']}.{entry['role']}.{entry['index']}"
        assert entry["kind"] == level
        assert entry["role"] in dh.ROLES
        assert place_order.setdefault(entry["place"], entry["order"]) == entry["order"]
        if entry["file"] is None:
            assert entry["skipped"]
            continue
        path = (folder / entry["file"]).resolve()
        assert path.is_relative_to(folder.resolve())
        numel = torch.Size(entry["shape"]).numel()
        itemsize = torch.empty(0, dtype=DTYPES[entry["dtype"]]).element_size()
        assert entry["nbytes"] == path.stat().st_size == numel * itemsize
    return manifest


def test_manifest_is_valid_and_in_completion_order(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path) as cap:
        logits = model(ids)
    assert cap.manifests == [tmp_path / "driftscope.json"]
    manifest = check_manifest(tmp_path, "module")
    assert manifest["run"]["device"] == "cpu" and manifest["run"]["dtype"] == "float32"
    entries = by_name(manifest)
    order = {entry["place"]: entry["order"] for entry in manifest["entries"]}
    # A module completes after its children: completion order, not call order.
    assert order["layers.1.mlp.act_fn"] < order["layers.1.mlp.down_proj"] < order["layers.1.mlp"]
    assert order["layers.1.mlp"] < order["layers.1"] < order["lm_head"] < order["TinyTransformer"]
    assert entries["layers.0.mlp.act_fn.output.0"]["op_type"] == "SiLU"
    root_out = entries["TinyTransformer.output.0"]
    assert torch.equal(read_tensor(tmp_path, root_out), logits)
    assert torch.equal(read_tensor(tmp_path, entries["TinyTransformer.input.0"]), ids)
    stats = root_out["stats"]
    assert stats["max"] == pytest.approx(logits.double().max().item())
    assert stats["norm"] == pytest.approx(logits.double().norm().item())


@pytest.mark.parametrize("level", ["module", "op"])
@pytest.mark.parametrize("fixture", ["transformer", "cnn"])
def test_capture_leaves_the_numbers_alone(tmp_path, request, level, fixture):
    model, x = request.getfixturevalue(fixture)
    expected = model(x)
    with dh.capture(model, tmp_path, level=level, roles=("input", "output")):
        got = model(x)
    assert torch.equal(got, expected)
    assert torch.equal(model(x), expected)  # and nothing stays attached
    check_manifest(tmp_path, level)


def test_bfloat16_stays_bfloat16(tmp_path, transformer):
    model, ids = transformer
    model = model.to(torch.bfloat16)
    with dh.capture(model, tmp_path, roles=("output",)):
        logits = model(ids)
    manifest = check_manifest(tmp_path, "module")
    assert manifest["run"]["dtype"] == "bfloat16"
    for entry in manifest["entries"]:
        assert entry["dtype"] == "bfloat16"
        assert entry["nbytes"] == 2 * torch.Size(entry["shape"]).numel()
    saved = read_tensor(tmp_path, by_name(manifest)["TinyTransformer.output.0"])
    assert torch.equal(saved.view(torch.int16), logits.view(torch.int16))
    # Each element is the upper half of the float32 bit pattern of the same value.
    upper = (logits.float().view(torch.int32) >> 16).to(torch.int16)
    assert torch.equal(saved.view(torch.int16), upper)


def test_inplace_relu_input_is_saved_before_it_is_overwritten(tmp_path, cnn):
    model, images = cnn
    with dh.capture(model, tmp_path):
        model(images)
    entries = by_name(check_manifest(tmp_path, "module"))
    bn_out = read_tensor(tmp_path, entries["features.1.output.0"])
    relu_in = read_tensor(tmp_path, entries["features.2.input.0"])
    relu_out = read_tensor(tmp_path, entries["features.2.output.0"])
    assert (relu_in < 0).any()
    assert torch.equal(relu_in, bn_out)
    assert torch.equal(relu_out, bn_out.clamp(min=0))


def test_max_numel_lists_without_saving(tmp_path, cnn):
    model, images = cnn
    with dh.capture(model, tmp_path, max_numel=100):
        model(images)
    manifest = check_manifest(tmp_path, "module")
    skipped = [e for e in manifest["entries"] if e["file"] is None]
    saved = [e for e in manifest["entries"] if e["file"] is not None]
    assert skipped and saved
    for entry in skipped:
        numel = torch.Size(entry["shape"]).numel()
        assert numel > 100
        assert entry["skipped"] == f"numel {numel} exceeds max_numel 100"
        assert "nbytes" not in entry
    assert all(torch.Size(e["shape"]).numel() <= 100 for e in saved)
    assert len(list((tmp_path / "tensors").iterdir())) == len(saved)


def test_include_and_exclude_patterns(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path / "glob", include=["layers.0.*"], exclude=["*_proj"]):
        model(ids)
    places = {e["place"] for e in check_manifest(tmp_path / "glob", "module")["entries"]}
    assert places == {
        "layers.0.input_layernorm", "layers.0.self_attn", "layers.0.post_attention_layernorm",
        "layers.0.mlp", "layers.0.mlp.act_fn",
    }
    with dh.capture(model, tmp_path / "regex", include=["re:mlp$", re.compile(r"^lm_head$")]):
        model(ids)
    manifest = check_manifest(tmp_path / "regex", "module")
    assert {e["place"] for e in manifest["entries"]} == {"layers.0.mlp", "layers.1.mlp", "lm_head"}
    assert manifest["run"]["include"] == ["re:mlp$", "re:^lm_head$"]


def test_parameters_and_gradients(tmp_path, cnn):
    model, images = cnn
    model.train()
    with dh.capture(model, tmp_path, roles=("output", "parameter", "grad")):
        model(images).square().mean().backward()
    entries = by_name(check_manifest(tmp_path, "module"))
    weight = model.classifier.weight
    assert torch.equal(read_tensor(tmp_path, entries["classifier.parameter.weight"]), weight.detach())
    assert torch.equal(read_tensor(tmp_path, entries["classifier.grad.weight"]), weight.grad)
    assert torch.equal(read_tensor(tmp_path, entries["features.0.grad.bias"]), model.features[0].bias.grad)
    assert entries["classifier.grad.weight"]["order"] == entries["classifier.output.0"]["order"]


def test_a_module_called_twice_gets_numbered_places(tmp_path):
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.GELU()

        def forward(self, x):
            return self.act(self.act(x) - 1)

    model, x = Twice(), torch.randn(4)
    with dh.capture(model, tmp_path, roles=("output",)):
        model(x)
    places = [e["place"] for e in check_manifest(tmp_path, "module")["entries"]]
    assert places == ["act", "act#1", "Twice"]


def test_steps_pick_calls(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path, step=[0, 2], roles=("output",)):
        outputs = [model((ids + k) % 64) for k in range(3)]
    for step in (0, 2):
        manifest = check_manifest(tmp_path / f"step{step}", "module")
        assert manifest["run"]["step"] == step
        root = by_name(manifest)["TinyTransformer.output.0"]
        assert torch.equal(read_tensor(tmp_path / f"step{step}", root), outputs[step])
    assert not (tmp_path / "step1").exists()


def test_a_step_that_never_ran_is_an_error(tmp_path, transformer):
    model, ids = transformer
    with pytest.raises(dh.CaptureError, match=r"step\(s\) \[3\] never ran.*TinyTransformer 1 time"):
        with dh.capture(model, tmp_path, step=3):
            model(ids)


def test_an_existing_dump_is_kept_unless_overwrite(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path):
        model(ids)
    with pytest.raises(FileExistsError, match="already holds a dump"):
        dh.capture(model, tmp_path)
    with dh.capture(model, tmp_path, overwrite=True, roles=("output",)):
        model(ids)
    assert all(e["role"] == "output" for e in check_manifest(tmp_path, "module")["entries"])


def test_dtypes_outside_the_format_are_listed_apart(tmp_path):
    class Spectrum(nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x), x.abs()

    model = Spectrum()
    with dh.capture(model, tmp_path, roles=("output",)):
        model(torch.randn(8))
    manifest = check_manifest(tmp_path, "module")
    assert [e["name"] for e in manifest["entries"]] == ["Spectrum.output.1"]
    (note,) = manifest["unsupported"]
    assert note["name"] == "Spectrum.output.0" and note["dtype"] == "complex64"
    assert "not in the native format" in note["reason"]


def test_bad_arguments_are_refused(tmp_path, transformer):
    model, _ = transformer
    with pytest.raises(ValueError, match="unknown role"):
        dh.capture(model, tmp_path, roles=("outputs",))
    with pytest.raises(ValueError, match="level must be one of"):
        dh.capture(model, tmp_path, level="layer")
    with pytest.raises(ValueError, match="only at level 'module'"):
        dh.capture(model, tmp_path, level="op", roles=("grad",))


def test_the_model_is_untouched_by_a_deep_copy_comparison(tmp_path, transformer):
    model, ids = transformer
    before = copy.deepcopy(model.state_dict())
    with dh.capture(model, tmp_path, roles=dh.ROLES[:4]):
        model(ids)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
