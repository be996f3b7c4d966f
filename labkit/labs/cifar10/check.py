"""Checks for Lab 02's exercise, the student's `test_fn(model, loader, device) -> (mean_loss, accuracy)`: on a
crafted probe whose answer is known from its construction and which exposes the usual mistakes, then on the lab's
own model and loader (statistics untouched, a fraction, the same numbers twice). No model answer ships here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from labkit.check import CheckFailed, passed

TestFn = Callable[[nn.Module, Iterable, torch.device], tuple[float, float]]

NUM_CLASSES = 10
BIG = math.log(91.0)  # the logit of the predicted class: softmax gives it 91 / (91 + 9) = 0.91, the others 0.01
RIGHT_LOSS, WRONG_LOSS = math.log(100 / 91), math.log(100.0)  # cross-entropy of a right and of a wrong prediction
EPS = 2.0**-20
PROBE_BATCHES = ((16, 16), (16, 8), (5, 0))  # (images, right predictions) per batch: the last batch is smaller


class _GradWatch(nn.Module):
    """Wraps a model and records whether any forward pass ran with gradients enabled."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.grad_enabled_calls = 0
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.grad_enabled_calls += int(torch.is_grad_enabled())
        return self.inner(x)


def _probe_model_and_loader() -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A crafted case with a known answer. The model is one BatchNorm whose running statistics (mean 0, variance
    1 with its eps) make it the identity in eval mode; in training mode it normalises by the batch instead (and moves
    its running mean). Each input row is a logit vector with `BIG` at one class and 0 elsewhere, so in eval mode
    an image's cross-entropy is `RIGHT_LOSS` when that class is its label and `WRONG_LOSS` when it is not. The
    batches (16 right of 16, 8 of 16, 0 of 5) make the per-batch mean differ from the mean over images."""
    norm = nn.BatchNorm1d(NUM_CLASSES, eps=EPS, affine=False)
    with torch.no_grad():
        norm.running_var.fill_(1.0 - EPS)  # (1 - EPS) + EPS is exactly 1 in float32
    batches = []
    for n, right in PROBE_BATCHES:
        predicted = torch.arange(n) % NUM_CLASSES
        labels = torch.where(torch.arange(n) < right, predicted, (predicted + 1) % NUM_CLASSES)
        batches.append((F.one_hot(predicted, NUM_CLASSES).float() * BIG, labels))
    return norm, batches


def probe_answer() -> tuple[float, float]:
    """The probe's (mean loss, accuracy), from its construction: `right` images at RIGHT_LOSS, the rest at
    WRONG_LOSS."""
    images = sum(n for n, _ in PROBE_BATCHES)
    right = sum(r for _, r in PROBE_BATCHES)
    return (right * RIGHT_LOSS + (images - right) * WRONG_LOSS) / images, right / images


def probe_per_batch_mean_loss() -> float:
    """What averaging the per-batch mean losses gives on the probe (the mistake the uneven batches expose)."""
    return sum((r * RIGHT_LOSS + (n - r) * WRONG_LOSS) / n for n, r in PROBE_BATCHES) / len(PROBE_BATCHES)


def _unpack(result: object) -> tuple[float, float]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailed(
            f"test() should return two numbers, (mean_loss, accuracy), got {result!r}. "
            "End the function with `return total_loss / count, correct / count`."
        )
    try:
        return float(result[0]), float(result[1])
    except (TypeError, ValueError) as err:
        raise CheckFailed(f"test() returned {result!r}; both values should be plain numbers ({err}). "
                          "Use `.item()` to turn one-element tensors into numbers.") from err


def check_test_loop(
    test_fn: TestFn,
    model: nn.Module | None = None,
    loader: Iterable | None = None,
    device: torch.device | str = "cpu",
) -> None:
    """The student's `test_fn(model, loader, device)` returns the right (mean loss, accuracy).

    First on a crafted probe whose answer is known from its construction (`probe_answer`) and which exposes the
    common mistakes; then (when given) on the lab's own model and loader, where it must leave BatchNorm's
    statistics alone, return a fraction and give the same numbers twice.
    """
    probe, batches = _probe_model_and_loader()
    want_loss, want_acc = probe_answer()
    stats_before = probe.running_mean.clone()
    watched = _GradWatch(probe)
    watched.train()
    got_loss, got_acc = _unpack(test_fn(watched, batches, torch.device("cpu")))

    if watched.calls == 0:
        raise CheckFailed("test() never called the model. Loop over the loader and compute "
                          "`outputs = model(images)` for each batch.")
    if not torch.equal(stats_before, probe.running_mean):
        raise CheckFailed(
            "BatchNorm's running statistics changed while testing: the model was in training mode. "
            "Call `model.eval()` before the loop, so BatchNorm uses the statistics learned in "
            "training and the test never changes the model."
        )
    if watched.grad_enabled_calls:
        raise CheckFailed(
            "The forward passes ran with gradients enabled. Wrap the loop in `with torch.no_grad():` "
            "— testing needs no backward pass, and keeping the graph wastes memory and time."
        )
    if watched.calls < len(batches):
        raise CheckFailed(f"test() called the model {watched.calls} times for {len(batches)} batches: "
                          "it stops early. Loop over every batch of the loader.")
    if abs(got_acc - 100 * want_acc) < 1e-3 * 100:
        raise CheckFailed(f"accuracy {got_acc:.4g} looks like a percentage; return the fraction "
                          f"correct (expected {want_acc:.4f}), i.e. `correct / count`.")
    per_batch_loss = probe_per_batch_mean_loss()
    if abs(got_loss - per_batch_loss) < 1e-4 and abs(got_loss - want_loss) > 1e-4:
        raise CheckFailed(
            f"mean loss {got_loss:.4f} is the average of per-batch means, expected {want_loss:.4f}. "
            "The last batch is smaller, so weight each batch by its size: add "
            "`loss.item() * labels.size(0)` (or use reduction='sum') and divide by the number of images."
        )
    if abs(got_acc - want_acc) > 1e-6:
        raise CheckFailed(
            f"accuracy is {got_acc:.4f}, expected {want_acc:.4f}. Count `(outputs.argmax(dim=1) == "
            "labels).sum()` over all batches and divide by the total number of images."
        )
    if abs(got_loss - want_loss) > 1e-4 * max(1.0, abs(want_loss)):
        raise CheckFailed(
            f"mean loss is {got_loss:.4f}, expected {want_loss:.4f}. Use the cross-entropy of the raw "
            "outputs (no softmax first), summed over images and divided by the number of images."
        )
    passed("test() gives the right loss and accuracy on a probe with a known answer (eval mode, no gradients)")

    if model is not None and loader is not None:
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        before = [m.running_mean.clone() for m in norms if m.running_mean is not None]
        first = _unpack(test_fn(model, loader, torch.device(device)))
        after = [m.running_mean for m in norms if m.running_mean is not None]
        if any(not torch.equal(b.to(a.device), a) for b, a in zip(before, after, strict=True)):
            raise CheckFailed("On the lab's model test() changed BatchNorm's running statistics: call "
                              "`model.eval()` before the loop.")
        if not (math.isfinite(first[0]) and 0.0 <= first[1] <= 1.0):
            raise CheckFailed(f"On the lab's test set test() gives loss {first[0]:.4f}, accuracy {first[1]:.4f}: "
                              "the loss should be a finite number and the accuracy a fraction in [0, 1].")
        second = _unpack(test_fn(model, loader, torch.device(device)))
        if second != first:
            raise CheckFailed(f"test() gave {first} and then {second} on the same model and images: an evaluation "
                              "must not change from call to call (no sampling, no training mode).")
        passed(f"test() on the lab's test set: loss {first[0]:.4f}, accuracy {first[1]:.4f}, the same twice")
