"""Friendly checks for the "Your turn" exercise cells.

Each check raises `CheckFailed` with a specific hint (what was expected, what was
found, what to try) instead of a bare `AssertionError`, and prints a short
confirmation when the student's answer passes. Every check takes an optional
`hint`: a lab-specific sentence appended to the failure message. Lab-specific
checks live in `labkit.check.<lab>` modules and build on these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn


class CheckFailed(AssertionError):
    """An exercise answer is not right yet; the message says why and what to try."""


def passed(what: str) -> None:
    """Tell the student a check passed."""
    print(f"✔ {what}")


def fail(message: str, hint: str | None = None) -> CheckFailed:
    """The exception to raise: `message`, then the lab-specific `hint` if any."""
    return CheckFailed(f"{message} {hint}" if hint else message)


def _require_tensor(value: object, what: str, hint: str | None) -> torch.Tensor:
    if value is None:
        raise fail(f"{what} is None: did the cell or function forget to `return` its result?", hint)
    if not isinstance(value, torch.Tensor):
        raise fail(f"{what} should be a torch.Tensor, got {type(value).__name__}.", hint)
    return value


def check_shape(tensor: torch.Tensor, expected: Sequence[int | None], what: str = "output",
                hint: str | None = None) -> None:
    """The tensor has the expected shape (None matches any size in that position)."""
    tensor = _require_tensor(tensor, what, hint)
    shape = tuple(tensor.shape)
    expected = tuple(expected)
    ok = len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))
    if ok:
        passed(f"{what} has shape {shape}")
        return
    pretty = tuple("any" if e is None else e for e in expected)
    if len(shape) != len(expected):
        extra = " The number of dimensions differs: did you forget a flatten, a batch dimension or a squeeze?"
    elif None not in expected and sorted(shape) == sorted(expected):
        extra = (" The sizes are right but in a different order: check the order of the dimensions "
                 "(e.g. (batch, channels, height, width)) and use .permute() rather than .view() to reorder.")
    else:
        wrong = [i for i, (s, e) in enumerate(zip(shape, expected)) if e is not None and s != e]
        extra = f" Dimension {wrong[0]} is {shape[wrong[0]]}, expected {expected[wrong[0]]}."
    raise fail(f"{what} has shape {shape}, expected {pretty}.{extra}", hint)


def check_dtype(tensor: torch.Tensor, expected: torch.dtype, what: str = "tensor", hint: str | None = None) -> None:
    """The tensor has the expected dtype (e.g. class targets must be `torch.long`)."""
    tensor = _require_tensor(tensor, what, hint)
    if tensor.dtype == expected:
        passed(f"{what} has dtype {expected}")
        return
    extra = ""
    if expected == torch.long and tensor.dtype.is_floating_point:
        extra = (" Class targets for nn.CrossEntropyLoss are integer class indices: "
                 "convert them with .long().")
    elif expected.is_floating_point and not tensor.dtype.is_floating_point:
        extra = " Models and losses need floating-point inputs: convert with .float() (and scale images to [0, 1])."
    raise fail(f"{what} has dtype {tensor.dtype}, expected {expected}.{extra}", hint)


def check_logits(outputs: torch.Tensor, what: str = "model output", hint: str | None = None) -> None:
    """Outputs are raw logits, not probabilities (nn.CrossEntropyLoss applies log-softmax itself)."""
    outputs = _require_tensor(outputs, what, hint)
    if outputs.dim() < 2:
        raise fail(f"{what} should be (batch, classes) logits, got shape {tuple(outputs.shape)}.", hint)
    if not outputs.dtype.is_floating_point:
        raise fail(f"{what} should be floating-point logits, got dtype {outputs.dtype}.", hint)
    outputs = outputs.detach().float()
    if not torch.isfinite(outputs).all():
        raise fail(f"{what} contains NaN or infinite values: check the layers (and the input scaling).", hint)
    row_sums = outputs.sum(-1)
    probs_like = bool((outputs >= 0).all() and (outputs <= 1).all()
                      and torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-3))
    if probs_like:
        raise fail(
            f"{what} rows are non-negative and sum to 1: these are probabilities. Return the raw "
            "logits and leave the softmax to nn.CrossEntropyLoss (applying it twice flattens "
            "the gradients and slows learning).", hint,
        )
    exp_sums = outputs.exp().sum(-1)
    log_probs_like = bool((outputs <= 0).all() and torch.allclose(exp_sums, torch.ones_like(exp_sums), atol=1e-3))
    if log_probs_like:
        raise fail(
            f"{what} rows are log-probabilities (log_softmax). nn.CrossEntropyLoss expects raw logits; "
            "remove the log_softmax, or use nn.NLLLoss instead.", hint,
        )
    passed(f"{what} are logits")


def check_loss_decreasing(losses: Sequence[float], what: str = "training loss", min_drop: float = 0.05,
                          hint: str | None = None) -> None:
    """The loss curve goes down: the last value is at least `min_drop` (relative) below the first."""
    if losses is None:
        raise fail(f"{what} is None: return (or pass) the list of per-epoch losses.", hint)
    values = [float(v) for v in losses]
    if len(values) < 2:
        raise fail(f"Need at least two {what} values to see learning; got {len(values)}: train for more epochs.",
                   hint)
    if not all(math.isfinite(v) for v in values):
        raise fail(f"{what} became NaN or infinite: the learning rate is probably too high.", hint)
    first, last = values[0], values[-1]
    if not last < first - min_drop * abs(first):
        extra = " It went up: the learning rate is probably too high." if last > first else (
            " Check that you call optimizer.zero_grad(), loss.backward() and optimizer.step() in that "
            "order, and that the learning rate is not too small.")
        raise fail(f"{what} did not fall enough: {first:.4g} -> {last:.4g}.{extra}", hint)
    passed(f"{what} fell from {first:.4g} to {last:.4g}")


def check_close(value: float | torch.Tensor, expected: float | torch.Tensor, what: str = "value",
                rtol: float = 1e-4, atol: float = 1e-6, hint: str | None = None) -> None:
    """A number or tensor matches the expected one within tolerance."""
    if value is None:
        raise fail(f"{what} is None: did the cell or function forget to `return` its result?", hint)
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
    _require_tensor(got, f"{what}'s result", hint)
    bad = ~torch.isclose(got.detach().double(), want.detach().double(), rtol=rtol, atol=atol)
    if bad.any():
        i = tuple(int(j) for j in torch.nonzero(bad)[0])
        at = f"x = {inputs[i].item():.4g}" if inputs.shape == want.shape else f"index {i}"
        raise fail(
            f"{what} is wrong at {int(bad.sum())} of {bad.numel()} values, e.g. at {at} it gives "
            f"{got[i].item():.6g}, expected {want[i].item():.6g}.", hint,
        )
    passed(f"{what} matches the reference on {inputs.numel()} inputs")


def check_in_range(value: float, low: float | None = None, high: float | None = None, what: str = "value",
                   hint: str | None = None) -> None:
    """A number (an accuracy, a perplexity, a loss) lies in [low, high]; either bound may be open."""
    if value is None:
        raise fail(f"{what} is None: did the cell or function forget to `return` its result?", hint)
    number = float(value.item() if isinstance(value, torch.Tensor) else value)
    if not math.isfinite(number):
        raise fail(f"{what} is {number}: the computation overflowed or divided by zero.", hint)
    if low is not None and number < low:
        raise fail(f"{what} is {number:.4g}, expected at least {low:.4g}.", hint)
    if high is not None and number > high:
        raise fail(f"{what} is {number:.4g}, expected at most {high:.4g}.", hint)
    bounds = f"[{'-inf' if low is None else f'{low:.4g}'}, {'inf' if high is None else f'{high:.4g}'}]"
    passed(f"{what} = {number:.4g} is in {bounds}")


def check_model_output(model: nn.Module, example: torch.Tensor, expected: Sequence[int | None],
                       what: str = "model", logits: bool = True, hint: str | None = None) -> torch.Tensor:
    """`model(example)` has the expected shape, is logits (if `logits`), and every parameter gets a gradient.

    Returns the output. A parameter without a gradient means a layer was defined in
    `__init__` but never used in `forward`.
    """
    if not isinstance(model, nn.Module):
        raise fail(f"{what} should be an nn.Module, got {type(model).__name__}.", hint)
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise fail(f"{what} has no trainable parameters: create its layers in __init__ (after "
                   "super().__init__()) and assign them to self.", hint)
    was_training = model.training
    model.train()
    for _, p in params:
        p.grad = None
    try:
        out = model(example)
        out = _require_tensor(out, f"{what}'s output", hint)
        check_shape(out, expected, what=f"{what}'s output", hint=hint)
        if logits:
            check_logits(out, what=f"{what}'s output", hint=hint)
        out.float().sum().backward()
        unused = [name for name, p in params if p.grad is None]
    finally:
        for _, p in params:
            p.grad = None
        model.train(was_training)
    if unused:
        raise fail(
            f"{len(unused)} parameter(s) of {what} get no gradient ({', '.join(unused[:3])}"
            f"{', ...' if len(unused) > 3 else ''}): those layers are defined in __init__ but not used in forward.",
            hint,
        )
    passed(f"every parameter of {what} gets a gradient")
    return out.detach()


def check_class_indices(labels: Sequence[int] | torch.Tensor, names: Sequence[str],
                        reference: dict[str, int], what: str = "labels", hint: str | None = None) -> None:
    """Class indices agree with a reference mapping (e.g. train's sorted wnids)."""
    if labels is None:
        raise fail(f"{what} is None: did the cell or function forget to `return` its result?", hint)
    labels = [int(v) for v in labels]
    if len(labels) != len(names):
        raise fail(f"{what}: {len(labels)} labels for {len(names)} items; give exactly one label per item.", hint)
    unknown = sorted({n for n in names if n not in reference})
    if unknown:
        raise fail(f"{what}: {len(unknown)} class name(s) are not in the training classes "
                   f"(e.g. {unknown[0]!r}); read the class of each item from the right column/folder.", hint)
    wrong = [(n, got, reference[n]) for n, got in zip(names, labels) if reference[n] != got]
    if wrong:
        name, got, want = wrong[0]
        raise fail(
            f"{len(wrong)} of {len(labels)} {what} use a different class index than the training set "
            f"(e.g. {name!r}: {got}, training uses {want}). Build the mapping once, from the sorted "
            "class ids, and use it for both splits; otherwise accuracy stays at chance.", hint,
        )
    passed(f"{what} use the training set's class indices")


__all__ = [
    "CheckFailed",
    "check_class_indices",
    "check_close",
    "check_dtype",
    "check_function",
    "check_in_range",
    "check_logits",
    "check_loss_decreasing",
    "check_model_output",
    "check_shape",
    "fail",
    "passed",
]
