"""Metrics that accumulate on the device (a batch's sum over items, a 0-d tensor), so the engine syncs
with the host once per epoch; perplexity is derived from the mean loss instead."""

from __future__ import annotations

import math

import torch


class Metric:
    """`name` is the History key suffix (`val_<name>`); a `from_loss` metric is derived from the mean loss."""

    name: str = "metric"
    from_loss: bool = False

    def batch_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derive(self, mean_loss: float) -> float:
        raise NotImplementedError


class TopK(Metric):
    """Fraction of items whose target is among the k largest outputs (k=1: accuracy, the argmax; never a
    sampled label)."""

    def __init__(self, k: int = 1, name: str | None = None) -> None:
        self.k = k
        self.name = name or ("accuracy" if k == 1 else f"top{k}")

    def batch_sum(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.k == 1:
            return (outputs.argmax(dim=-1) == targets).sum()
        k = min(self.k, outputs.shape[-1])
        top = outputs.topk(k, dim=-1).indices
        return (top == targets.unsqueeze(-1)).any(dim=-1).sum()


class Perplexity(Metric):
    """exp(mean cross-entropy in nats): the language-model score (lower is better)."""

    name = "perplexity"
    from_loss = True

    def derive(self, mean_loss: float) -> float:
        return perplexity(mean_loss)


def perplexity(mean_loss: float) -> float:
    """exp(loss), returning inf instead of overflowing."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf


def metric_from_name(name: str | Metric) -> Metric:
    """'accuracy' | 'top1' | 'topK' (e.g. 'top5') | 'perplexity', or a Metric passed through."""
    if isinstance(name, Metric):
        return name
    key = name.lower()
    if key in ("accuracy", "acc", "top1"):
        return TopK(1)
    if key.startswith("top") and key[3:].isdigit():
        return TopK(int(key[3:]))
    if key in ("perplexity", "ppl"):
        return Perplexity()
    raise ValueError(f"Unknown metric {name!r}: use 'accuracy', 'top5' (any k) or 'perplexity'.")


@torch.no_grad()
def accuracy(outputs: torch.Tensor, targets: torch.Tensor, k: int = 1) -> float:
    """Top-k accuracy of one batch as a Python float (syncs; for notebooks and tests)."""
    return TopK(k).batch_sum(outputs, targets).item() / max(targets.numel(), 1)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted] as an int64 (num_classes, num_classes) tensor."""
    index = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)
