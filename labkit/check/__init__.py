"""Friendly checks for the "Your turn" exercise cells.

Each check raises `CheckFailed` with a specific hint (what was expected, what was
found, what to try) instead of a bare `AssertionError`, and prints a short
confirmation when the student's answer passes. Lab-specific checks live in
`labkit.check.<lab>` modules and build on these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class CheckFailed(AssertionError):
    """An exercise answer is not right yet; the message says why and what to try."""


def passed(what: str) -> None:
    """Tell the student a check passed."""
    print(f"✔ {what}")


def check_shape(tensor: torch.Tensor, expected: Sequence[int | None], what: str = "output") -> None:
    """The tensor has the expected shape (None matches any size in that position)."""
    if not isinstance(tensor, torch.Tensor):
        raise CheckFailed(f"{what} should be a torch.Tensor, got {type(tensor).__name__}.")
    shape = tuple(tensor.shape)
    expected = tuple(expected)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if not ok:
        pretty = tuple("any" if e is None else e for e in expected)
        hint = ""
        if len(shape) != len(expected):
            hint = " The number of dimensions differs: did you forget a flatten, a batch dimension or a squeeze?"
        raise CheckFailed(f"{what} has shape {shape}, expected {pretty}.{hint}")
    passed(f"{what} has shape {shape}")


def check_logits(outputs: torch.Tensor, what: str = "model output") -> None:
    """Outputs are raw logits, not probabilities (nn.CrossEntropyLoss applies log-softmax itself)."""
    if outputs.dim() < 2:
        raise CheckFailed(f"{what} should be (batch, classes) logits, got shape {tuple(outputs.shape)}.")
    probs_like = bool(
        (outputs >= 0).all() and (outputs <= 1).all()
        and torch.allclose(outputs.sum(-1), torch.ones_like(outputs.sum(-1)), atol=1e-3)
    )
    if probs_like:
        raise CheckFailed(
            f"{what} rows are non-negative and sum to 1: these are probabilities. Return the raw "
            "logits and leave the softmax to nn.CrossEntropyLoss (applying it twice flattens "
            "the gradients and slows learning)."
        )
    log_probs_like = bool((outputs <= 0).all() and torch.allclose(
        outputs.exp().sum(-1), torch.ones_like(outputs[..., 0]), atol=1e-3))
    if log_probs_like:
        raise CheckFailed(
            f"{what} rows are log-probabilities (log_softmax). nn.CrossEntropyLoss expects raw logits; "
            "remove the log_softmax, or use nn.NLLLoss instead."
        )
    passed(f"{what} are logits")


def check_loss_decreasing(losses: Sequence[float], what: str = "training loss", min_drop: float = 0.05) -> None:
    """The loss curve goes down: the last value is at least `min_drop` (relative) below the first."""
    values = [float(v) for v in losses]
    if len(values) < 2:
        raise CheckFailed(f"Need at least two {what} values to see learning; got {len(values)}.")
    if any(v != v or v in (float("inf"), float("-inf")) for v in values):
        raise CheckFailed(f"{what} became NaN or infinite: the learning rate is probably too high.")
    first, last = values[0], values[-1]
    if not last < first * (1 - min_drop):
        raise CheckFailed(
            f"{what} did not fall enough: {first:.4g} -> {last:.4g}. Check that you call "
            "optimizer.zero_grad(), loss.backward() and optimizer.step() in that order, and that "
            "the learning rate is not too small."
        )
    passed(f"{what} fell from {first:.4g} to {last:.4g}")


def check_close(value: float | torch.Tensor, expected: float | torch.Tensor, what: str = "value",
                rtol: float = 1e-4, atol: float = 1e-6) -> None:
    """A number or tensor matches the expected one within tolerance."""
    got = torch.as_tensor(value, dtype=torch.float64)
    want = torch.as_tensor(expected, dtype=torch.float64)
    if got.shape != want.shape:
        raise CheckFailed(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}.")
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        worst = (got - want).abs().max().item()
        raise CheckFailed(f"{what} differs from the expected value (largest difference {worst:.3g}).")
    passed(f"{what} matches")


def check_class_indices(labels: Sequence[int] | torch.Tensor, names: Sequence[str],
                        reference: dict[str, int], what: str = "labels") -> None:
    """Class indices agree with a reference mapping (e.g. train's sorted wnids)."""
    labels = [int(v) for v in labels]
    if len(labels) != len(names):
        raise CheckFailed(f"{what}: {len(labels)} labels for {len(names)} items.")
    wrong = [(n, got, reference.get(n)) for n, got in zip(names, labels) if reference.get(n) != got]
    if wrong:
        name, got, want = wrong[0]
        raise CheckFailed(
            f"{len(wrong)} of {len(labels)} {what} use a different class index than the training set "
            f"(e.g. {name!r}: {got}, training uses {want}). Build the mapping once, from the sorted "
            "class ids, and use it for both splits; otherwise accuracy stays at chance."
        )
    passed(f"{what} use the training set's class indices")
