"""`History`: what a run measured, epoch by epoch, as plain lists (fit returns it, checkpoints store it)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def metric_mode(name: str) -> str:
    """'min' for losses and perplexities, 'max' for accuracies and other scores."""
    lowered = name.lower()
    return "min" if ("loss" in lowered or "perplexity" in lowered or "error" in lowered) else "max"


@dataclass
class History:
    """Per-epoch records: `epoch`, `lr`, `seconds` and one list per metric (`train_loss`, `val_accuracy`, ...)."""

    epoch: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    stop_reason: str | None = None
    diverged: bool = False

    def append(self, epoch: int, lr: float, seconds: float, values: dict[str, float]) -> None:
        self.epoch.append(int(epoch))
        self.lr.append(float(lr))
        self.seconds.append(float(seconds))
        for key, value in values.items():
            column = self.metrics.setdefault(key, [])
            # a metric that appears late (or skips epochs) is padded so columns line up with `epoch`
            if len(column) < len(self.epoch) - 1:
                column.extend([math.nan] * (len(self.epoch) - 1 - len(column)))
            column.append(float(value))

    def __len__(self) -> int:
        return len(self.epoch)

    def __getitem__(self, key: str) -> list[float]:
        if key in ("epoch", "lr", "seconds"):
            return getattr(self, key)
        try:
            return self.metrics[key]
        except KeyError:
            known = ", ".join(self.keys()) or "none yet"
            raise KeyError(f"History has no {key!r}; it has: {known}") from None

    def __iter__(self) -> Iterator[str]:  # the metric keys, like a dict's (`len()` counts epochs)
        return iter(self.metrics)

    def __contains__(self, key: str) -> bool:
        return key in self.metrics or key in ("epoch", "lr", "seconds")

    def keys(self) -> list[str]:
        return list(self.metrics)

    def last(self, key: str) -> float:
        if not (values := self[key]):
            raise ValueError(f"History has no epochs yet, so no last {key!r}.")
        return values[-1]

    def best(self, key: str, mode: str | None = None) -> tuple[int, float]:
        """(epoch, value) of the best finite value of `key` (min for losses, max otherwise)."""
        mode = mode or metric_mode(key)
        finite = [(e, v) for e, v in zip(self.epoch, self[key]) if math.isfinite(v)]
        if not finite:
            raise ValueError(f"History has no finite {key!r} values yet.")
        return (min if mode == "min" else max)(finite, key=lambda item: item[1])

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists of floats), so it survives `torch.load(weights_only=True)`."""
        return {"epoch": list(self.epoch), "lr": list(self.lr), "seconds": list(self.seconds),
                "metrics": {k: list(v) for k, v in self.metrics.items()}, "stop_reason": self.stop_reason,
                "diverged": self.diverged}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(epoch=[int(e) for e in data.get("epoch", [])], lr=[float(v) for v in data.get("lr", [])],
                   seconds=[float(v) for v in data.get("seconds", [])],
                   metrics={k: [float(x) for x in v] for k, v in data.get("metrics", {}).items()},
                   stop_reason=data.get("stop_reason"), diverged=bool(data.get("diverged", False)))

    def table(self, keys: list[str] | None = None) -> str:
        """A small markdown table of the per-epoch values (for printing in notebooks and CLIs)."""
        keys = keys or self.keys()
        head = "| epoch | " + " | ".join(keys) + " | lr | s |"
        rule = "|" + "---|" * (len(keys) + 3)
        rows = [f"| {e} | " + " | ".join(f"{self.metrics[k][i]:.4g}" if i < len(self.metrics.get(k, ())) else "–"
                                        for k in keys)
                + f" | {self.lr[i]:.3g} | {self.seconds[i]:.1f} |" for i, e in enumerate(self.epoch)]
        return "\n".join([head, rule, *rows])
