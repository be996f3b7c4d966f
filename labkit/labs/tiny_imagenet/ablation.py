"""Ablation studies: train each variant (`run_ablation(variants, run_one)`), tabulate, overlay the curves."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.history import History, metric_mode

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _values(history: History, key: str) -> list[float]:
    return [float(v) for v in history[key]] if key in history else []


def _format_settings(settings: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in settings.items()) or "-"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass
class AblationResult:
    """What an ablation produced: each variant's settings, History and wall-clock seconds."""

    variants: dict[str, dict[str, Any]]
    histories: dict[str, History]
    seconds: dict[str, float]
    metric: str = "accuracy"
    curve_keys: tuple[str, ...] = field(default=())

    @property
    def lower_is_better(self) -> bool:
        return metric_mode(self.metric) == "min"

    def _best(self, values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            return math.nan
        return min(finite) if self.lower_is_better else max(finite)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per variant: settings, final/best val metric, final train metric, epochs, seconds."""
        metric = self.metric
        table = []
        for name, history in self.histories.items():
            val = _values(history, f"val_{metric}")
            train = _values(history, f"train_{metric}")
            table.append({"variant": name, "settings": _format_settings(self.variants.get(name, {})),
                          f"final_val_{metric}": val[-1] if val else math.nan, f"best_val_{metric}": self._best(val),
                          f"final_train_{metric}": train[-1] if train else math.nan, "epochs": len(history),
                          "seconds": self.seconds[name], "diverged": bool(getattr(history, "diverged", False))})
        return table

    def best_variant(self) -> str:
        """The variant with the best validation metric (ties: the first listed)."""
        key = f"best_val_{self.metric}"
        scored = [(row[key], row["variant"]) for row in self.rows() if math.isfinite(row[key])]
        if not scored:
            raise ValueError(f"no variant has a finite val_{self.metric}: nothing to rank")
        pick = min if self.lower_is_better else max
        return pick(scored, key=lambda item: item[0])[1]

    def to_markdown(self, digits: int = 4) -> str:
        """The results table in markdown (accuracies as percentages)."""
        rows = self.rows()
        if not rows:
            return "(no variants)\n"
        columns = list(rows[0])
        percent = self.metric in ("accuracy",) or self.metric.startswith("top")

        def show(column: str, value: Any) -> str:
            if isinstance(value, float):
                if math.isnan(value):
                    return "n/a"
                if column == "seconds":
                    return f"{value:.1f}"
                if percent and self.metric in column:
                    return f"{100 * value:.2f} %"
                return f"{value:.{digits}g}"
            return _cell(str(value))

        lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
        for row in rows:
            lines.append("| " + " | ".join(show(c, row[c]) for c in columns) + " |")
        return "\n".join(lines) + "\n"

    def to_csv(self, path: str | Path) -> Path:
        """Write the results table as CSV (raw numbers, no percent signs)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = self.rows()
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["variant"])
            writer.writeheader()
            writer.writerows(rows)
        return path

    def plot(self, key: str | None = None, path: str | Path | None = None) -> Figure:
        """Overlaid curves of `key` (default `val_<metric>`) for every variant; saved when `path`."""
        from labkit.plots import plot_curves

        key = key or f"val_{self.metric}"
        present = {n: h for n, h in self.histories.items() if _values(h, key)}
        if not present:
            raise KeyError(f"no variant recorded {key!r}; recorded keys: {sorted(self._keys())}")
        return plot_curves(present, key, path=path, title=f"{key} by variant")

    def _keys(self) -> set[str]:
        return set().union(*(history.keys() for history in self.histories.values()))

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write `results.md`, `results.csv` and `curves_<key>.png` for each curve key."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {"markdown": directory / "results.md", "csv": directory / "results.csv"}
        written["markdown"].write_text(self.to_markdown())
        self.to_csv(written["csv"])
        for key in self.curve_keys or (f"val_{self.metric}", f"train_{self.metric}"):
            if key not in self._keys():
                continue
            self.plot(key, directory / f"curves_{key}.png")
            written[key] = directory / f"curves_{key}.png"
        return written


def run_ablation(variants: Mapping[str, Mapping[str, Any]], run_one: Callable[[str, dict[str, Any]], History],
                 metric: str = "accuracy", curve_keys: Sequence[str] = (), out_dir: str | Path | None = None,
                 verbose: bool = True) -> AblationResult:
    """Train every variant with `run_one(name, settings) -> History`, in order; the table reports
    `val_<metric>`/`train_<metric>`, `save` plots `curve_keys` (written to `out_dir` when given)."""
    if not variants:
        raise ValueError("no variants given: pass a dict like {'baseline': {}, 'no dropout': {...}}")
    histories: dict[str, History] = {}
    seconds: dict[str, float] = {}
    for name, settings in variants.items():
        if not isinstance(settings, Mapping):
            raise TypeError(f"variant {name!r}: settings must be a dict, got {type(settings).__name__}")
        start = time.perf_counter()
        try:
            history = run_one(name, dict(settings))
        except Exception as err:
            raise RuntimeError(f"ablation variant {name!r} ({_format_settings(settings)}) failed: {err}") from err
        seconds[name] = time.perf_counter() - start
        if not isinstance(history, History):
            raise TypeError(f"run_one({name!r}, ...) returned {type(history).__name__}; it must return the "
                            "History that labkit.engine.fit gives back")
        histories[name] = history
        if verbose:
            val = _values(history, f"val_{metric}")
            shown = f"val_{metric}={val[-1]:.4f}" if val else f"no val_{metric}"
            print(f"[ablation] {name}: {shown} ({seconds[name]:.1f} s)", flush=True)
    result = AblationResult({n: dict(s) for n, s in variants.items()}, histories, seconds, metric, tuple(curve_keys))
    if out_dir is not None:
        result.save(out_dir)
    return result
