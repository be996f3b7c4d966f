"""Lab 01: an MLP learns f(x) = x² + 2 sin x + cos(x−1) − 5 (full-batch training on tensors)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit import config
from labkit.callbacks import Callback
from labkit.device import pick_device, seed_everything
from labkit.engine import fit
from labkit.history import History
from labkit.models.mlp import MLP
from labkit.plots import new_figure, save_figure

Function = Callable[[torch.Tensor], torch.Tensor]
INTERVAL = (-4.0, 4.0)


def course_function(x: torch.Tensor) -> torch.Tensor:
    """The course's target: f(x) = x² + 2 sin x + cos(x − 1) − 5."""
    return x**2 + 2 * torch.sin(x) + torch.cos(x - 1) - 5


def negative_function(x: torch.Tensor) -> torch.Tensor:
    """A target with negative values: (x + 1)² + sin(x² + 1) − log(x² + 1)... shifted by −6."""
    return (x + 1) ** 2 + torch.sin(x**2 + 1) - torch.log(x**2 + 1) - 6


FUNCTIONS: dict[str, Function] = {"course": course_function, "negative": negative_function}


def sample(fn: Function, n: int = 200, interval: tuple[float, float] = INTERVAL, noise: float = 0.0,
           seed: int = 0, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n evenly spaced x in the interval and y = fn(x) (+ Gaussian noise), both shaped (n, 1)."""
    x = torch.linspace(*interval, n).unsqueeze(1)
    y = fn(x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        raise ValueError(f"The function must map a tensor of shape {tuple(x.shape)} to the same shape, "
                         f"got {type(y).__name__} {tuple(getattr(y, 'shape', ()))}. Use torch operations "
                         "(torch.sin, not math.sin).")
    if noise:
        gen = torch.Generator().manual_seed(seed + 1)
        y = y + noise * torch.randn(y.shape, generator=gen)
    return x.to(device), y.to(device)


@dataclass
class FitResult:
    """One trained MLP, its History, and its prediction on a dense grid."""

    model: nn.Module
    history: History
    epochs: int
    lr: float
    grid: torch.Tensor
    prediction: torch.Tensor
    target: torch.Tensor

    @property
    def mse(self) -> float:
        """Mean squared error against the true function on the dense grid (inf if training diverged)."""
        if self.history.diverged:
            return math.inf
        return float(torch.mean((self.prediction - self.target) ** 2))


def make_optimizer(name: str, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """'sgd' (the course's choice: plain steps, so a too-large lr visibly diverges) or 'adam'."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"Unknown optimizer {name!r}: use 'sgd' or 'adam'.")


def train_mlp(fn: Function = course_function, *, epochs: int = 1000, lr: float = 0.005, optimizer: str = "sgd",
              hidden: Sequence[int] = (64, 64), n: int = 200, interval: tuple[float, float] = INTERVAL,
              noise: float = 0.0, seed: int = 0, callbacks: Sequence[Callback] = (),
              device: str | torch.device | None = "cpu", progress: bool | None = None) -> FitResult:
    """Fit an MLP to `fn` with full-batch steps; one epoch is one step over all n points.

    CPU is the default device: for 200 points the GPU's launch overhead costs more than it saves.
    """
    seed_everything(seed)
    device = pick_device(device)
    x, y = sample(fn, n, interval, noise, seed, device)
    model = MLP(1, hidden, 1)
    history = fit(model, [(x, y)], epochs=epochs, optimizer=make_optimizer(optimizer, model.parameters(), lr),
                  loss_fn=nn.MSELoss(), device=device, callbacks=callbacks, progress=progress,
                  config={"lab": "function-fitting", "epochs": epochs, "lr": lr, "optimizer": optimizer})
    grid = torch.linspace(*interval, 400, device=device).unsqueeze(1)
    with torch.no_grad():
        prediction = model(grid)
    return FitResult(model, history, epochs, lr, grid.cpu(), prediction.cpu(), fn(grid).cpu())


def sweep(values: Sequence[float], vary: str, fn: Function = course_function, **kwargs: Any) -> dict[float, FitResult]:
    """Train once per value of `vary` ('epochs' or 'lr'), everything else fixed (same seed)."""
    if vary not in ("epochs", "lr"):
        raise ValueError(f"vary must be 'epochs' or 'lr', not {vary!r}.")
    return {v: train_mlp(fn, **{**kwargs, vary: int(v) if vary == "epochs" else float(v)}) for v in values}


def results_table(results: dict[float, FitResult], vary: str) -> str:
    """Markdown table: the varied value, final training loss, MSE on the grid, and what happened."""
    lines = [f"| {vary} | final train loss | MSE vs f(x) | note |", "|---:|---:|---:|---|"]
    for value, result in results.items():
        loss = result.history.last("train_loss")
        note = "diverged" if result.history.diverged else ""
        lines.append(f"| {value:g} | {loss:.4g} | {result.mse:.4g} | {note} |")
    return "\n".join(lines)


def plot_fits(results: dict[float, FitResult], vary: str, title: str = "", path: str | Path | None = None) -> Figure:
    """Learnt curves over the ground truth (left) and training-loss curves (right)."""
    fig = new_figure((11, 4))
    left, right = fig.subplots(1, 2)
    first = next(iter(results.values()))
    left.plot(first.grid.squeeze(1), first.target.squeeze(1), "k", lw=3, alpha=0.35, label="f(x)")
    for value, result in results.items():
        label = f"{vary}={value:g}" + (" (diverged)" if result.history.diverged else "")
        if not result.history.diverged:
            left.plot(result.grid.squeeze(1), result.prediction.squeeze(1), label=label)
        right.plot(result.history.epoch, result.history["train_loss"], label=label)
    left.set_title(title or f"learnt functions by {vary}")
    left.set_xlabel("x")
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.set_xscale("log")
    right.set_xlabel("epoch")
    right.set_title("training loss (MSE)")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    if path is not None:
        save_figure(fig, path)
    return fig


def overfit_demo(n_points: int = 12, noise: float = 1.0, epochs: int = 5000, seed: int = 0,
                 hidden: Sequence[int] = (128, 128)) -> dict[str, float]:
    """A big MLP trained long on few noisy points: training error falls below the noise, true error rises."""
    result = train_mlp(course_function, epochs=epochs, lr=0.01, optimizer="adam", hidden=hidden, n=n_points,
                       noise=noise, seed=seed)
    return {"train_mse": result.history.last("train_loss"), "true_mse": result.mse, "noise_variance": noise**2}


def sizes() -> dict[str, Any]:
    """Exercise sizes: the course's at full size, seconds-on-CPU at smoke size."""
    if config.is_smoke():
        return {"epochs_sweep": [20, 100, 300, 600], "lr_sweep": [1.0, 0.1, 0.01, 0.001], "lr_epochs": 200,
                "fixed_lr": 0.005, "own_epochs": 600, "panel_epochs": 200, "overfit_epochs": 300}
    return {"epochs_sweep": [100, 1000, 10000, 50000], "lr_sweep": [1.0, 0.1, 0.01, 0.001], "lr_epochs": 1000,
            "fixed_lr": 0.005, "own_epochs": 10000, "panel_epochs": 2000, "overfit_epochs": 5000}


# --- command line ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=None, help="full-batch epochs (default 2000; smoke 200)")
    parser.add_argument("--lr", type=float, default=0.005, help="learning rate (default 0.005)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--function", choices=sorted(FUNCTIONS), default="course")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/function-fitting)")
    parser.add_argument("--smoke", action="store_true", help="tiny run (also LABKIT_SMOKE=1)")


def main(args: argparse.Namespace) -> dict[str, float]:
    if args.smoke:
        import os

        os.environ["LABKIT_SMOKE"] = "1"
    epochs = args.epochs or sizes()["panel_epochs"]
    out = args.out or config.runs_dir() / "function-fitting"
    result = train_mlp(FUNCTIONS[args.function], epochs=epochs, lr=args.lr, optimizer=args.optimizer)
    plot_fits({args.lr: result}, "lr", title=f"{args.function}: {epochs} epochs", path=out / "fit.png")
    if result.history.stop_reason:
        print(result.history.stop_reason)
    metrics = {"epochs": epochs, "lr": args.lr, "final_loss": result.history.last("train_loss"), "mse": result.mse,
               "seconds": result.history.total_seconds}
    print(f"MSE vs f(x): {result.mse:.4g} after {epochs} epochs in {result.history.total_seconds:.1f} s; "
          f"figure: {out / 'fit.png'}")
    return metrics


def smoke(out_dir: Path) -> dict[str, float]:
    """Both sweeps at smoke size; writes the figures; reports the best MSE and whether lr=1 diverged."""
    s = sizes()
    by_epochs = sweep(s["epochs_sweep"], "epochs", lr=s["fixed_lr"])
    by_lr = sweep(s["lr_sweep"], "lr", epochs=s["lr_epochs"])
    plot_fits(by_epochs, "epochs", path=Path(out_dir) / "epochs_sweep.png")
    plot_fits(by_lr, "lr", path=Path(out_dir) / "lr_sweep.png")
    return {"best_mse": min(r.mse for r in by_epochs.values()),
            "lr1_diverged": bool(by_lr[1.0].history.diverged)}
