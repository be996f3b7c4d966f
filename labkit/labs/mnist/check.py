"""Checks for Lab 03's "Your turn" cells: the accuracy function and a MyConvNet-like model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from labkit.check import CheckFailed, check_logits, check_loss_decreasing, check_shape, passed
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
