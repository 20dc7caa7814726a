"""Fixtures: the test models with fixed weights and inputs."""

from __future__ import annotations

import pytest
import torch

from models import SmallCNN, TinyTransformer


@pytest.fixture
def transformer() -> tuple[TinyTransformer, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyTransformer().eval()
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(0))
    return model, ids


@pytest.fixture
def cnn() -> tuple[SmallCNN, torch.Tensor]:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return model, images
