"""Small builders shared by the core tests."""

from __future__ import annotations

import torch
from torch import nn

from labkit.data.tensor_loader import TensorLoader


def blobs(n: int = 256, classes: int = 3, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable-ish Gaussian blobs: a classification task a tiny MLP learns in a few epochs."""
    gen = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = centers[y] + torch.randn(n, dim, generator=gen)
    return x, y


def classifier(dim: int = 8, classes: int = 3, dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, classes))


def loaders(seed: int = 0, batch_size: int = 32) -> tuple[TensorLoader, TensorLoader]:
    x, y = blobs(seed=seed)
    train = TensorLoader(x[:192], y[:192], batch_size=batch_size, shuffle=True, seed=seed)
    val = TensorLoader(x[192:], y[192:], batch_size=64)
    return train, val
