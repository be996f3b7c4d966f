"""Checks for Lab 03's "Your turn" cells: the accuracy function and a MyConvNet-like model."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from labkit.check import CheckFailed, fail, passed, require_tensor
from labkit.data.tensor_loader import single_thread_on_cpu


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise CheckFailed(f"{what} returned a tensor of shape {tuple(value.shape)}; return one number "
                              "(e.g. `(predicted == labels).float().mean().item()`).")
        return float(value.item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise CheckFailed(f"{what} returned {type(value).__name__}; return the accuracy as a Python float.")


def _check_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Logits/label pairs where argmax, sampling, argmin and thresholding all give different answers."""
    gen = torch.Generator().manual_seed(3)
    cases = []
    for n, spread in ((200, 1.0), (64, 0.5), (7, 3.0)):
        logits = spread * torch.randn(n, 10, generator=gen) - 2.0   # all negative: no "> 0.5" shortcut
        labels = logits.argmax(1).clone()
        wrong = torch.rand(n, generator=gen) < 0.3                  # ~70 % right
        labels[wrong] = torch.randint(0, 10, (int(wrong.sum()),), generator=gen)
        cases.append((logits, labels))
    return cases


def check_accuracy_function(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """`fn(logits, labels)` returns the fraction of rows whose largest logit is the label, deterministically."""
    for logits, labels in _check_cases():
        expected = (logits.argmax(1) == labels).float().mean().item()
        got = _as_float(fn(logits.clone(), labels.clone()), "your accuracy function")
        again = _as_float(fn(logits.clone(), labels.clone()), "your accuracy function")
        if got != again:
            raise CheckFailed(
                f"Called twice on the same logits your function gave {got:.4f} and {again:.4f}: it is random. "
                "Did you draw the prediction with torch.multinomial / Categorical(...).sample()? The prediction "
                "is the most likely class: logits.argmax(dim=1)."
            )
        if got > 1.0 + 1e-9:
            raise CheckFailed(f"Your function returned {got:g}, more than 1: divide the number of correct "
                              f"predictions by the number of examples ({len(labels)}).")
        if abs(got - expected) > 1e-6:
            argmin = (logits.argmin(1) == labels).float().mean().item()
            hint = ""
            if abs(got - argmin) < 1e-6:
                hint = " It matches argmin: take the largest logit, not the smallest."
            raise CheckFailed(
                f"On {len(labels)} examples your function returned {got:.4f}; the argmax accuracy is "
                f"{expected:.4f}.{hint} Compare logits.argmax(dim=1) with the labels and average."
            )
    passed("your accuracy function takes the argmax and returns the fraction correct")


def _build(model_or_class: nn.Module | type) -> nn.Module:
    if isinstance(model_or_class, nn.Module):
        return model_or_class
    try:
        return model_or_class()
    except TypeError as err:
        raise CheckFailed(
            f"{getattr(model_or_class, '__name__', model_or_class)}() failed: {err}. The constructor must take "
            "no arguments (a grader builds it as MyConvNet()): fix the layer sizes inside __init__."
        ) from err


MYCONVNET_PARAMETERS = 5_070_832  # the course report's net: 640 + 128 + 73,856 + 256 + 4,918,032 + 76,930 + 990


def check_myconvnet(model_or_class: nn.Module | type, train_steps: int = 8) -> None:
    """Two conv-BN-ReLU-pool blocks (64 and 128 channels), three linear layers, (N, 10) logits, learns."""
    model = _build(model_or_class)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    channels = [c.out_channels for c in convs]
    if len(convs) != 2 or channels != [64, 128]:
        raise CheckFailed(f"Expected two nn.Conv2d layers with 64 then 128 output channels, found {channels}. "
                          "The first conv takes 1 input channel (grey images).")
    if len(norms) != 2 or [n.num_features for n in norms] != channels:
        raise CheckFailed(f"Expected an nn.BatchNorm2d after each conv (64 and 128 features), found "
                          f"{[n.num_features for n in norms]}.")
    if len(pools) < 2:
        raise CheckFailed(f"Expected a 2x2 pooling layer in each block, found {len(pools)}: "
                          "28 -> 14 -> 7 pixels needs two nn.MaxPool2d(2).")
    if len(linears) != 3:
        raise CheckFailed(f"Expected three nn.Linear layers after the conv blocks, found {len(linears)}.")
    if linears[-1].out_features != 10:
        raise CheckFailed(f"The last nn.Linear has {linears[-1].out_features} outputs; MNIST has 10 classes.")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if params == MYCONVNET_PARAMETERS - 64 - 128:
        raise CheckFailed(f"{params:,} parameters, {MYCONVNET_PARAMETERS:,} expected: the course report's convolutions "
                          "have biases (nn.Conv2d's default, bias=True); without them its state_dict does not load.")
    x = torch.randn(8, 1, 28, 28)
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except RuntimeError as err:
        raise CheckFailed(f"model(x) failed on a (8, 1, 28, 28) batch: {err}. After two 2x2 pools the map is "
                          "128 x 7 x 7, so the first nn.Linear takes 128 * 7 * 7 = 6272 inputs.") from err
    check_shape(out, (8, 10), "model output")
    check_logits(out, "model output")
    _check_learns(model, train_steps)
    passed("your model has the course's structure and learns")


def _check_learns(model: nn.Module, steps: int) -> None:
    from labkit.labs.mnist.data import MEAN, STD, synthetic_digits

    images, labels = synthetic_digits(64, seed=5)
    x = (images.float().div(255).unsqueeze(1) - MEAN) / STD
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    with single_thread_on_cpu(torch.device("cpu")):  # 64 images: a second thread only adds waiting
        for _ in range(steps):
            loss = nn.functional.cross_entropy(model(x), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    check_loss_decreasing(losses, "training loss on 64 synthetic digits", min_drop=0.2)


def check_shape(tensor: torch.Tensor, expected: Sequence[int | None], what: str = "output",
                hint: str | None = None) -> None:
    """The tensor has the expected shape (None matches any size in that position)."""
    tensor = require_tensor(tensor, what, hint)
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


def check_logits(outputs: torch.Tensor, what: str = "model output", hint: str | None = None) -> None:
    """Outputs are raw logits, not probabilities (nn.CrossEntropyLoss applies log-softmax itself)."""
    outputs = require_tensor(outputs, what, hint)
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

