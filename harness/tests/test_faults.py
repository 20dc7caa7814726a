"""Trap injection (driftscope_harness.faults): active inside one module only, same API names."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from driftscope_harness import faults


class TwoNorms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.first = nn.LayerNorm(8)
        self.second = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.fc(self.first(x)))


def run(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: seen.__setitem__(n, o.detach().clone()))
        for n, m in model.named_children()
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def test_a_trap_acts_inside_its_module_only_and_keeps_the_api_name() -> None:
    torch.manual_seed(0)
    model = TwoNorms().eval()
    x = torch.randn(2, 8) * 0.01  # small values, so a larger eps shows
    clean = run(model, x)
    original = F.layer_norm
    try:
        api = faults.inject(model, "second", "torch.nn.functional", "layer_norm", "layernorm_eps")
        assert api == ("Functional", "layer_norm", "torch.nn.functional")
        assert F.layer_norm.__name__ == "layer_norm"
        faulty = run(model, x)
        # The first LayerNorm (outside the module) and the linear are untouched; the second
        # used eps=1e-2 and its output moved.
        assert torch.equal(clean["first"], faulty["first"])
        assert torch.equal(clean["fc"], faulty["fc"])
        assert not torch.allclose(clean["second"], faulty["second"], rtol=1e-3, atol=1e-5)
        assert faults.State.first_fault_call == 1  # the second layer_norm call of the step
    finally:
        F.layer_norm = original


def test_sequential_sum_rounds_after_every_add() -> None:
    # 4096 ones in fp16 accumulate to 2048 one by one (2048 + 1 rounds back to 2048), where
    # torch's CPU sum, accumulating in fp32, gives 4096.
    t = torch.ones(4096, dtype=torch.float16)
    assert t.sum().item() == 4096
    assert faults.sequential_sum(t, 0).item() == 2048


def test_every_trap_builds() -> None:
    for name in faults.traps():
        assert callable(faults.trap(name, F.linear))
