"""A small multilayer perceptron for function fitting (Lab 01)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class MLP(nn.Module):
    """in_features -> hidden layers -> out_features, with one activation between layers.

    The output layer is linear (no activation), so targets of any sign can be fitted —
    the course's original network ended in a ReLU and could never output negative values.
    """

    def __init__(self, in_features: int = 1, hidden: Sequence[int] = (64, 64), out_features: int = 1,
                 activation: str = "tanh") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}: use one of {sorted(ACTIVATIONS)}.")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
