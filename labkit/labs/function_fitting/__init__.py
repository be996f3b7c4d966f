"""Lab 01: an MLP learns f(x) = x² + 2 sin x + cos(x−1) − 5 (full-batch training on tensors)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from matplotlib.figure import Figure
from torch import nn

from labkit import runner
from labkit.device import model_device
from labkit.engine import SupervisedTask
from labkit.errors import LabkitError
from labkit.history import History
from labkit.lab import Lab, LabConfig, LabData, option, register
from labkit.labs.function_fitting.model import MLP
from labkit.plots import new_figure, save_figure, series_colors
from labkit.tables import Table

Function = Callable[[torch.Tensor], torch.Tensor]
INTERVAL = (-4.0, 4.0)


def course_function(x: torch.Tensor) -> torch.Tensor:
    """The course's target: f(x) = x² + 2 sin x + cos(x − 1) − 5."""
    return x**2 + 2 * torch.sin(x) + torch.cos(x - 1) - 5


def negative_function(x: torch.Tensor) -> torch.Tensor:
    """A target with negative values: (x + 1)² + sin(x² + 1) − log(x² + 1) − 6."""
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


@dataclass(frozen=True)
class Config(LabConfig):
    """Lab 01's settings: full-batch SGD on the MSE; one epoch is one step over all points."""

    epochs: int = option(2000, "full-batch epochs (one gradient step each)", min=1)
    lr: float = option(0.005, "learning rate", gt=0)
    optimizer: str = option("sgd", "sgd (plain steps, as the course) or adam", choices=("sgd", "adam"))
    momentum: float = option(0.0, "SGD momentum (0: plain SGD, as the course)", min=0, max=1)
    batch_size: int = option(200, "points per step (all of them: full batch)", min=1, cli=False)
    tensorboard: bool = option(False, "write TensorBoard logs")
    function: str = option("course", "the target: course = x² + 2 sin x + cos(x−1) − 5; negative = a "
                           "target below zero", choices=tuple(FUNCTIONS))
    hidden: tuple[int, ...] = option((64, 64), "hidden layer widths (tanh units), e.g. 64,64", min=1)
    points: int = option(200, "evenly spaced training points on [-4, 4]", min=2)
    noise: float = option(0.0, "standard deviation of Gaussian noise added to the targets", min=0)
    # the notebook's experiments
    epochs_sweep: tuple[int, ...] = option((100, 1000, 10000, 50000), "Exercise A's epochs", min=1, cli=False)
    lr_sweep: tuple[float, ...] = option((1.0, 0.1, 0.01, 0.001), "Exercise B's learning rates", gt=0,
                                         cli=False)
    lr_epochs: int = option(1000, "Exercise B's epochs", min=1, cli=False)
    own_epochs: int = option(10000, "Exercise C's epochs", min=1, cli=False)
    overfit_epochs: int = option(5000, "the over-fitting demo's epochs", min=1, cli=False)


@register
class FunctionFitting(Lab):
    """Lab 01: an MLP fits a 1-D function; its figure is the learnt curve over the target."""

    name = "function-fitting"
    title = "Lab 01: function fitting"
    Config = Config
    sizes: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 200, "epochs_sweep": (20, 100, 300, 600), "lr_epochs": 200, "own_epochs": 600,
                  "overfit_epochs": 300},
        "laptop": {},  # the course's sizes already fit a laptop: ~1 ms per full-batch epoch on a 2-core CPU
        "full": {},
    }
    metrics = ()
    epoch_splits = ()
    monitor = None
    final_splits = ()
    curve_keys = ("train_loss",)
    checkpoint_every = 1000  # one full-batch epoch is ~1 ms; a checkpoint each epoch would cost more
    unused_options = ("label_smoothing", "patience", "amp", "channels_last", "data", "decay_matrices_only",
                      "nesterov", "step_size", "gamma", "milestones", "warmup_steps", "warmup_epochs",
                      "final_lr_fraction", "pct_start", "div_factor", "final_div_factor", "cycle_momentum",
                      "patience_lr", "schedule", "weight_decay", "grad_clip", "at_epochs")

    def config(self, size: str = "full", recipe: str | None = None, **overrides: Any) -> LabConfig:
        # 200 points: a GPU's launch overhead costs more than it saves, so the CPU unless asked
        overrides["device"] = overrides.get("device") or os.environ.get("LABKIT_DEVICE") or "cpu"
        return super().config(size, recipe, **overrides)

    def load_data(self, cfg: Config, ctx: Any) -> LabData:
        data = points(cfg, device=ctx.device)
        # under torchrun each process takes every world_size-th point; DDP averages the gradients
        data.train = [tuple(t[ctx.rank::ctx.world_size] for t in data.train[0])]
        return data

    def build_model(self, cfg: Config, info: Any) -> nn.Module:
        return MLP(1, cfg.hidden, 1)

    def task(self, cfg: Config) -> Any:
        return SupervisedTask(nn.MSELoss())

    def report(self, run: Any) -> dict[str, Any]:
        if not len(run.history):
            print(f"no epoch completed ({run.history.stop_reason or 'stopped'}): no fit to report")
            return {}
        result = fit_result(run, FUNCTIONS[run.config.function])
        path = run.out_dir / "fit.png"
        plot_fits({run.config.lr: result}, "lr", title=f"{run.config.function}: {run.config.epochs} epochs",
                  path=path, note=size_note(run.config.size))
        ran = run.history.epoch[-1]
        if run.history.diverged:
            print(f"diverged at epoch {ran} of {run.config.epochs}: no fit to report; figure: {path}")
        else:
            print(f"MSE vs f(x): {result.mse:.4g} after {ran} epochs in {run.history.total_seconds:.1f} s; "
                  f"figure: {path}")
        return {"mse": result.mse}

    def reference(self, size: str, out_dir: Path) -> dict[str, dict[str, Any]]:
        """`labkit reproduce`: both sweeps and the negative-target test, with their figures and tables."""
        cfg = self.config(size)
        by_epochs, by_lr = sweeps(cfg, Path(out_dir))
        negative = negative_target_test(epochs=cfg.epochs, lr=cfg.lr)
        (Path(out_dir) / "tables.md").write_text("\n\n".join(str(t) for t in (
            results_table(by_epochs, "epochs"), results_table(by_lr, "lr"), negative_table(negative))) + "\n")

        def mse(result: FitResult) -> float | str:
            return "diverged" if result.history.diverged else round(result.mse, 6)

        return {"epochs": {f"mse_{int(v)}": mse(r) for v, r in by_epochs.items()},
                "lr": {f"mse_{v:g}": mse(r) for v, r in by_lr.items()},
                "negative": {f"mse_{name}": mse(r) for name, r in negative.items()}}

    def smoke(self, out_dir: Path) -> dict[str, Any]:
        """Both sweeps at smoke size with their figures: the best MSE and whether lr=1 diverged."""
        by_epochs, by_lr = sweeps(self.config("smoke"), Path(out_dir))
        return {"best_mse": min(r.mse for r in by_epochs.values()),
                "lr1_diverged": bool(by_lr[1.0].history.diverged)}


LAB = FunctionFitting()


def size_note(size: str) -> str:
    """What a figure title says about the run's size ('' at full size)."""
    return {"smoke": "smoke size: short runs (a few hundred epochs), not the lab's results"}.get(size, "")


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
        """MSE against the true function on the dense grid (inf if training diverged)."""
        return math.inf if self.history.diverged else float(torch.mean((self.prediction - self.target) ** 2))


def fit_result(run: Any, fn: Function) -> FitResult:
    """The run's prediction on a dense grid of the interval, against the true function."""
    grid = torch.linspace(*INTERVAL, 400, device=model_device(run.model)).unsqueeze(1)
    with torch.no_grad():
        prediction = run.model(grid)
    return FitResult(run.model, run.history, run.config.epochs, run.config.lr, grid.cpu(), prediction.cpu(),
                     fn(grid).cpu())


def points(cfg: Config, fn: Function | None = None, device: torch.device | None = None) -> LabData:
    """The config's training points of `fn` (default the config's function; a student's too)."""
    fn = FUNCTIONS[cfg.function] if fn is None else fn
    x, y = sample(fn, cfg.points, INTERVAL, cfg.noise, cfg.seed, device)
    return LabData(train=[(x, y)], description=f"{cfg.points} points of {getattr(fn, '__name__', 'f')}")


def _fit(fn: Function, progress: bool | None = None, **settings: Any) -> FitResult:
    """One MLP fitted to `fn` (any tensor function) through `runner.run`, no files, with config `settings`."""
    cfg = LAB.config("full", **settings)
    run = runner.run(LAB, cfg, data=points(cfg, fn), progress=progress, write_files=False, checkpoints=False)
    return fit_result(run, fn)


def sweeps(cfg: Config, out_dir: Path) -> tuple[dict[float, FitResult], dict[float, FitResult]]:
    """The notebook's two sweeps (epochs, then lr) of `cfg`, their figures written into `out_dir`."""
    by_epochs = sweep(cfg.epochs_sweep, "epochs", lr=cfg.lr)
    by_lr = sweep(cfg.lr_sweep, "lr", epochs=cfg.lr_epochs)
    plot_fits(by_epochs, "epochs", path=out_dir / "epochs_sweep.png", note=size_note(cfg.size))
    plot_fits(by_lr, "lr", path=out_dir / "lr_sweep.png", note=size_note(cfg.size))
    return by_epochs, by_lr


def sweep(values: Sequence[float], vary: str, fn: Function = course_function,
          **settings: Any) -> dict[float, FitResult]:
    """Train once per value of `vary` ('epochs' or 'lr'), the other config `settings` fixed (same seed)."""
    if vary not in ("epochs", "lr"):
        raise ValueError(f"vary must be 'epochs' or 'lr', not {vary!r}.")
    return {v: _fit(fn, **{**settings, vary: int(v) if vary == "epochs" else float(v)}) for v in values}


def results_table(results: dict[float, FitResult], vary: str) -> Table:
    """The varied value, final training loss, MSE on the grid, and what happened."""
    rows = []
    for value, result in results.items():
        h = result.history
        note = f"diverged at epoch {h.epoch[-1]}" if h.diverged else ""
        rows.append([f"{value:g}", f"{h.last('train_loss'):.4g}", "–" if h.diverged else f"{result.mse:.4g}", note])
    return Table([vary, "final train loss", "MSE vs f(x)", "note"], rows, numeric_from=0)


def shifted_down(x: torch.Tensor) -> torch.Tensor:
    """f(x) − 20: the course's f moved entirely below zero (−26.1 … −7.2 on [−4, 4])."""
    return course_function(x) - 20


def negated(x: torch.Tensor) -> torch.Tensor:
    """−f(x): the course's f mirrored (−12.8 … 6.1 on [−4, 4])."""
    return -course_function(x)


#: the targets of the negative-values test: the course's f is itself half negative on the interval
NEGATIVE_TARGETS: dict[str, Function] = {"f": course_function, "f-20": shifted_down, "-f": negated}


def negative_target_test(epochs: int = 2000, lr: float = 0.005, optimizer: str = "sgd",
                         targets: dict[str, Function] | None = None, seed: int = 0) -> dict[str, FitResult]:
    """The course report's belief that its network "could not fit negative values", tested: the lab's MLP
    (tanh hidden layers, linear output) trained on f, on f − 20 (every target below zero) and on −f,
    everything else equal."""
    if epochs < 1:
        raise LabkitError(f"negative_target_test needs at least 1 epoch, got {epochs}.")
    return {name: _fit(fn, progress=False, epochs=epochs, lr=lr, optimizer=optimizer, seed=seed)
            for name, fn in (NEGATIVE_TARGETS if targets is None else targets).items()}


def negative_table(results: dict[str, FitResult]) -> Table:
    """Per target: its range, the prediction's range, the share of points below zero, the MSE."""
    def span(t: torch.Tensor) -> str:
        return f"{float(t.min()):.1f} … {float(t.max()):.1f}"

    rows = []
    for name, r in results.items():
        fit = (["–", "–", f"diverged at epoch {r.history.epoch[-1]}"] if r.history.diverged else
               [span(r.prediction), f"{float((r.prediction < 0).float().mean()):.0%}", f"{r.mse:.4g}"])
        rows.append([name, span(r.target), f"{float((r.target < 0).float().mean()):.0%}", *fit])
    return Table(["target", "target range", "targets < 0", "prediction range", "predictions < 0", "MSE vs target"],
                 rows, numeric_from=2)


def _losses(history: History) -> list[tuple[int, float]]:
    """(epoch, train loss) of every epoch whose loss is finite (none for a run that completed no epoch)."""
    return [(e, v) for e, v in zip(history.epoch, history.metrics.get("train_loss", ())) if math.isfinite(v)]


def retraces(results: dict[float, FitResult]) -> bool:
    """True when every shorter run's loss curve is the start of the longest one's (same seed, same lr)."""
    runs = sorted(results.values(), key=lambda r: len(r.history))
    if len(runs) < 2:
        return False
    longest = runs[-1].history.metrics.get("train_loss", [])
    for run in runs[:-1]:
        losses = run.history.metrics.get("train_loss", [])
        head = longest[: len(losses)]
        if len(head) != len(losses) or not all(
                (a == b) or (math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12))
                for a, b in zip(losses, head)):
            return False
    return True


def plot_fits(results: dict[float, FitResult], vary: str, title: str = "", path: str | Path | None = None,
              note: str = "") -> Figure:
    """Learnt curves over the ground truth (left) and training-loss curves (right), one colour per run. When
    the runs retrace each other (an epochs sweep with one seed), the loss is drawn once with each run's end
    marked on it."""
    if not results:
        raise LabkitError("plot_fits needs at least one result to draw.")
    fig = new_figure((11, 4.2))
    left, right = fig.subplots(1, 2)
    first = next(iter(results.values()))
    left.plot(first.grid.squeeze(1), first.target.squeeze(1), "k", lw=3, alpha=0.35, label="f(x)")
    colors = dict(zip(results, series_colors(len(results))))
    shared = retraces(results)
    if shared and (finite := _losses(max(results.values(), key=lambda r: len(r.history)).history)):
        right.plot(*zip(*finite), color="0.6", lw=1.5, label="one curve: the runs share the seed")
    for value, result in results.items():
        color, h = colors[value], result.history
        label = f"{vary}={value:g}" + (" (diverged)" if h.diverged else "")
        if not h.diverged and len(h):
            left.plot(result.grid.squeeze(1), result.prediction.squeeze(1), color=color, label=label)
        if not (finite := _losses(h)):
            continue
        if shared:  # the shorter runs are the longer one's start: mark where each one stops
            right.plot(*finite[-1], "o", color=color, ms=7, label=f"{label}: ends here")
        else:
            right.plot(*zip(*finite), color=color, label=label, marker="o" if len(finite) == 1 else None)
    left.set(title=title or f"learnt functions by {vary}", xlabel="x", ylabel="y")
    if note:
        fig.suptitle(note, fontsize=10, color="firebrick")
    right.set(yscale="log", xscale="log", xlabel="epoch (log scale)", ylabel="MSE")
    stable = [v for r in results.values() if not r.history.diverged for _, v in _losses(r.history)]
    if stable and any(r.history.diverged for r in results.values()):
        right.set_ylim(top=max(stable) * 1e4)  # a diverged loss reaches 1e30: keep the runs that train readable
    right.set_title("training loss (MSE); a diverged run ends where its loss became inf/NaN", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if path is not None:
        save_figure(fig, path)
    return fig


def overfit_demo(n_points: int = 12, noise: float = 1.0, epochs: int = 5000, seed: int = 0,
                 hidden: Sequence[int] = (128, 128)) -> dict[str, float]:
    """A big MLP trained long on few noisy points: training error falls below the noise, true error rises."""
    result = _fit(course_function, epochs=epochs, lr=0.01, optimizer="adam", hidden=tuple(hidden), points=n_points,
                  noise=noise, seed=seed)
    return {"train_mse": result.history.last("train_loss"), "true_mse": result.mse, "noise_variance": noise**2}
