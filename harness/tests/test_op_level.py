"""Op-level capture: names with call counters, in-place ops, and the same numbers as without it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

import driftscope_harness as dh
from helpers import by_name, load_manifest, read_tensor
from test_module_level import check_manifest


def test_ops_are_named_by_op_and_call_counter(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path, level="op"):
        model(ids)
    manifest = check_manifest(tmp_path, "op")
    places = list(dict.fromkeys(e["place"] for e in manifest["entries"]))
    silus = [p for p in places if p.startswith("torch.nn.functional.silu.")]
    assert silus == ["torch.nn.functional.silu.0", "torch.nn.functional.silu.1"]
    assert places[0] == "torch.nn.functional.embedding.0"
    entries = by_name(manifest)
    assert entries["torch.nn.functional.silu.1.output.0"]["op_type"] == "silu"
    assert entries["torch.Tensor.masked_fill.0.output.0"]["op_type"] == "masked_fill"
    # F.linear(x, weight): the weight is an input of the op.
    weight = entries["torch.nn.functional.linear.0.input.1"]
    assert torch.equal(read_tensor(tmp_path, weight), model.layers[0].self_attn.q_proj.weight.detach())
    # Metadata calls return no tensor and are not recorded.
    assert not any(".shape." in p or p.startswith("torch.Tensor.dim.") for p in places)


def test_inplace_ops_are_recorded_before_they_overwrite(tmp_path):
    class InPlace(nn.Module):
        def forward(self, x):
            y = x * 1.0
            y.add_(10.0)
            y[0] = -1.0
            y += 1.0
            torch.mul(y, 2.0, out=y)
            return F.relu(y - 20.0, inplace=True)

    x = torch.arange(4, dtype=torch.float32)
    model = InPlace()
    with dh.capture(model, tmp_path, level="op"):
        result = model(x)
    entries = by_name(check_manifest(tmp_path, "op"))
    read = lambda name: read_tensor(tmp_path, entries[name])  # noqa: E731
    assert torch.equal(read("torch.Tensor.add_.0.input.0"), x)
    assert torch.equal(read("torch.Tensor.add_.0.output.0"), x + 10)
    assert torch.equal(read("torch.Tensor.__setitem__.0.input.0"), x + 10)
    assert torch.equal(read("torch.Tensor.__setitem__.0.output.0"), torch.tensor([-1.0, 11, 12, 13]))
    assert entries["torch.Tensor.add_.0.output.0"]["op_type"] == "add"
    assert torch.equal(read("torch.Tensor.add_.1.input.0"), torch.tensor([-1.0, 11, 12, 13]))
    assert torch.equal(read("torch.mul.0.kwargs.out"), torch.tensor([0.0, 12, 13, 14]))
    assert torch.equal(read("torch.mul.0.output.0"), torch.tensor([0.0, 24, 26, 28]))
    relu_in = read("torch.nn.functional.relu.0.input.0")
    assert torch.equal(relu_in, torch.tensor([-20.0, 4, 6, 8]))
    assert torch.equal(read("torch.nn.functional.relu.0.output.0"), result)


def test_op_filters_apply_to_op_places(tmp_path, transformer):
    model, ids = transformer
    with dh.capture(model, tmp_path, level="op", include=["torch.nn.functional.*"], exclude=["*.linear.*"]):
        model(ids)
    places = {e["place"].rsplit(".", 1)[0] for e in load_manifest(tmp_path)["entries"]}
    assert places == {
        "torch.nn.functional.embedding", "torch.nn.functional.layer_norm", "torch.nn.functional.silu",
    }
