"""Checks for Lab 01's "Your turn" cells."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from labkit.check import CheckFailed, passed


def check_my_function(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """The student's f(x) maps a (n, 1) tensor to (n, 1), is finite on [-4, 4] and takes negative values."""
    if fn is None or not callable(fn):
        raise CheckFailed("Define my_function(x) as a Python function that takes a tensor x and returns a tensor.")
    x = torch.linspace(-4, 4, 101).unsqueeze(1)
    try:
        y = fn(x)
    except TypeError as err:
        raise CheckFailed(f"my_function failed on a tensor ({err}). Use torch functions such as torch.sin and "
                          "torch.log, not math.sin: math works on single numbers only.") from err
    if not isinstance(y, torch.Tensor):
        raise CheckFailed(f"my_function returned {type(y).__name__}; return a torch.Tensor.")
    if y.shape != x.shape:
        raise CheckFailed(f"my_function turned shape {tuple(x.shape)} into {tuple(y.shape)}; "
                          "it should work element by element and keep the shape.")
    if not torch.isfinite(y).all():
        raise CheckFailed("my_function gives NaN or infinity somewhere on [-4, 4] (log of 0? division by 0?).")
    if not (y < 0).any():
        raise CheckFailed("my_function is never negative on [-4, 4]. The point of this exercise is a target with "
                          "negative values (the course's network ended in ReLU and could not fit them): "
                          "subtract a constant or pick another function.")
    passed(f"my_function is element-wise, finite, and ranges from {y.min():.3g} to {y.max():.3g}")


def check_fit(mse: float, target_range: float, what: str = "your fit") -> None:
    """The fitted curve is close: MSE below 1 % of the target's squared range."""
    limit = 0.01 * target_range**2
    if not math.isfinite(mse) or mse > limit:
        raise CheckFailed(f"{what} has MSE {mse:.4g} (needs < {limit:.3g}). Train longer, or try a smaller learning "
                          "rate if the loss jumps around, or optimizer='adam'.")
    passed(f"{what}: MSE {mse:.4g}")

