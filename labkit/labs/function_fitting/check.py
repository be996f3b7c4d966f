"""Checks for Lab 01's "Your turn" cells."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from labkit.check import CheckFailed, fail, passed, require, require_tensor


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


def check_close(value: float | torch.Tensor, expected: float | torch.Tensor, what: str = "value",
                rtol: float = 1e-4, atol: float = 1e-6, hint: str | None = None) -> None:
    """A number or tensor matches the expected one within tolerance."""
    require(value, what, hint)
    try:
        got = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value,
                              dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise fail(f"{what} should be a number or a tensor, got {type(value).__name__}.", hint) from None
    want = torch.as_tensor(expected, dtype=torch.float64).cpu()
    if got.shape != want.shape:
        extra = " (a number was expected)" if want.dim() == 0 else ""
        raise fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}{extra}.", hint)
    if torch.isnan(got).any() and not torch.isnan(want).any():
        raise fail(f"{what} contains NaN: look for a division by zero or a log of a non-positive number.", hint)
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        diff = (got - want).abs()
        if got.dim() == 0:
            raise fail(f"{what} is {got.item():.6g}, expected {want.item():.6g}.", hint)
        index = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise fail(
            f"{what} differs from the expected value: {int((~torch.isclose(got, want, rtol, atol)).sum())} of "
            f"{got.numel()} entries are off, the worst at index {index} ({got[index].item():.6g} instead of "
            f"{want[index].item():.6g}).", hint,
        )
    passed(f"{what} matches")


def check_function(fn: Callable[[torch.Tensor], torch.Tensor], reference: Callable[[torch.Tensor], torch.Tensor],
                   inputs: torch.Tensor, what: str = "your function", rtol: float = 1e-4, atol: float = 1e-5,
                   hint: str | None = None) -> None:
    """`fn(inputs)` returns a tensor matching `reference(inputs)` (same shape, same values)."""
    if not callable(fn):
        raise fail(f"{what} should be a function, got {type(fn).__name__}.", hint)
    got = fn(inputs)
    want = reference(inputs)
    if isinstance(got, torch.Tensor) and got.shape != want.shape:
        raise fail(
            f"{what} returns shape {tuple(got.shape)} for an input of shape {tuple(inputs.shape)}; expected "
            f"{tuple(want.shape)}. Use element-wise tensor operations (torch.sin, **, +) so the output "
            "matches the input shape.", hint,
        )
    require_tensor(got, f"{what}'s result", hint)
    bad = ~torch.isclose(got.detach().double(), want.detach().double(), rtol=rtol, atol=atol)
    if bad.any():
        i = tuple(int(j) for j in torch.nonzero(bad)[0])
        at = f"x = {inputs[i].item():.4g}" if inputs.shape == want.shape else f"index {i}"
        raise fail(
            f"{what} is wrong at {int(bad.sum())} of {bad.numel()} values, e.g. at {at} it gives "
            f"{got[i].item():.6g}, expected {want[i].item():.6g}.", hint,
        )
    passed(f"{what} matches the reference on {inputs.numel()} inputs")
