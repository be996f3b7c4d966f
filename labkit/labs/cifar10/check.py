"""Checks for Lab 02's exercise, the student's `test_fn(model, loader, device) -> (mean_loss, accuracy)`: on a
probe built to expose the usual mistakes, then on the lab's own model and loader."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from labkit.check import CheckFailed, passed
from labkit.engine import evaluate

TestFn = Callable[[nn.Module, Iterable, torch.device], tuple[float, float]]


def reference_test(model: nn.Module, loader: Iterable, device: torch.device | str) -> tuple[float, float]:
    """The model answer: mean cross-entropy per image and fraction correct, from labkit's own
    `evaluate` (eval mode, no grad, each batch weighted by its size)."""
    result = evaluate(model, loader, loss_fn=nn.CrossEntropyLoss(), metrics=("accuracy",), device=device)
    return result["loss"], result["accuracy"]


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


def _probe_model_and_loader(seed: int = 0) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A tiny conv net with BatchNorm whose running stats differ from batch stats, and batches
    of uneven size (16, 16, 5) so that averaging per batch gives a different loss."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        bn = model[1]
        bn.running_mean.copy_(torch.randn(8, generator=gen))
        bn.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
    sizes = (16, 16, 5)
    batches = []
    for n in sizes:
        x = torch.randn(n, 3, 8, 8, generator=gen) * 2 + 1
        y = torch.randint(0, 10, (n,), generator=gen)
        batches.append((x, y))
    # make the accuracies of the batches differ too, so per-batch averaging is visible
    with torch.no_grad():
        model.eval()
        logits = model(batches[2][0])
        model.train()
    batches[2] = (batches[2][0], logits.argmax(dim=1))
    return model, batches


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

    First on a probe that exposes common mistakes, then (when given) on the lab's own model
    and test loader, compared with `reference_test`.
    """
    probe, batches = _probe_model_and_loader()
    want_loss, want_acc = reference_test(probe, batches, "cpu")
    stats_before = probe[1].running_mean.clone()
    watched = _GradWatch(probe)
    watched.train()
    got_loss, got_acc = _unpack(test_fn(watched, batches, torch.device("cpu")))

    if watched.calls == 0:
        raise CheckFailed("test() never called the model. Loop over the loader and compute "
                          "`outputs = model(images)` for each batch.")
    if not torch.equal(stats_before, probe[1].running_mean):
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
    if abs(got_acc - 100 * want_acc) < 1e-3 * 100 and want_acc > 0:
        raise CheckFailed(f"accuracy {got_acc:.4g} looks like a percentage; return the fraction "
                          f"correct (expected {want_acc:.4f}), i.e. `correct / count`.")
    per_batch_loss = sum(
        F.cross_entropy(_eval(probe, x), y).item() for x, y in batches) / len(batches)
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
    passed("test() gives the right loss and accuracy on a probe model (eval mode, no gradients)")

    if model is not None and loader is not None:
        got = _unpack(test_fn(model, loader, torch.device(device)))
        want = reference_test(model, loader, device)
        if abs(got[1] - want[1]) > 1e-6 or abs(got[0] - want[0]) > 1e-3 * max(1.0, abs(want[0])):
            raise CheckFailed(f"On the lab's test set test() gives loss {got[0]:.4f}, accuracy {got[1]:.4f}; "
                              f"expected {want[0]:.4f}, {want[1]:.4f}.")
        passed(f"test() on the lab's test set: loss {got[0]:.4f}, accuracy {got[1]:.4f}")


def _eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        was = model.training
        model.eval()
        out = model(x)
        model.train(was)
    return out
