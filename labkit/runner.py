"""The one runner: config -> data -> model -> `fit` -> the chosen checkpoint -> test -> files.

    run = runner.run("mnist", lab.config("laptop"))      # or a Lab instance and any LabConfig
    run.history, run.final["test"], run.best_checkpoint
    again = runner.load_run(run.best_checkpoint)          # any lab's model, from the checkpoint alone

Every lab goes through `run()`: seed everything, load the data (sharded under torchrun), build
the model (DistributedDataParallel under torchrun), make the optimizer and schedule from the
config (`labkit.optim`), `fit` with checkpoints (`last.pt`, `best.pt` by the lab's *validation*
metric, `epoch_NNN.pt` at `cfg.at_epochs`) and TensorBoard (scalars, hparams, the model graph),
reload the best checkpoint, evaluate the test split once, and write `metrics.json` and
`curves.png` (rank 0 only).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labkit import config as _config
from labkit import distributed as dist
from labkit.callbacks import Callback, EarlyStopping
from labkit.checkpoint import (
    CheckpointError,
    CheckpointPolicy,
    check_resume_length,
    load_checkpoint,
    load_model_state,
)
from labkit.device import describe_device, seed_everything
from labkit.engine import evaluate, fit
from labkit.history import History
from labkit.lab import Lab, LabConfig, LabData, get_lab
from labkit.optim import make_optimizer, make_scheduler


@dataclass
class Run:
    """One trained (or reloaded) model of a lab, with its config, History and results."""

    lab: str
    config: LabConfig
    model: nn.Module
    history: History
    data: LabData | None = None
    out_dir: Path | None = None
    #: split -> metrics of the chosen checkpoint, evaluated once after training (e.g. {"test": {...}})
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    chosen_epoch: int | None = None   # the epoch whose weights `model` holds (best by validation, or last)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # the model-shaping facts (num_classes, vocab, ...)

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.out_dir / "checkpoints" if self.out_dir is not None else None

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.checkpoint_dir / "best.pt" if self.checkpoint_dir is not None else None
        return path if path is not None and path.is_file() else None

    @property
    def last_checkpoint(self) -> Path | None:
        path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir is not None else None
        return path if path is not None and path.is_file() else None

    def summary(self) -> dict[str, Any]:
        """The figures a run is judged by: the final train metrics, the best validation value and its
        epoch, the chosen checkpoint's final-split metrics (e.g. test_accuracy), epochs and seconds."""
        h = self.history
        out: dict[str, Any] = {"size": self.config.size, "recipe": self.config.recipe,
                               "epochs_run": h.epoch[-1] if len(h) else 0}
        for key in h:
            if key.startswith("train_"):
                out[key] = h.last(key)
        lab = get_lab(self.lab)
        if lab.monitor and lab.monitor in h:
            epoch, value = h.best(lab.monitor)
            out[f"best_{lab.monitor}"], out["best_epoch"] = value, epoch
        for split, metrics in self.final.items():
            out.update({f"{split}_{k}": v for k, v in metrics.items()})
        if h.diverged:
            out["diverged"] = True
        out["seconds"] = round(self.seconds or h.total_seconds, 2)
        return out


def default_out_dir(lab: Lab, cfg: LabConfig) -> Path:
    """`cfg.out`, else `runs/<lab>` (`runs/<lab>-<recipe>` for a non-default recipe)."""
    if cfg.out_dir is not None:
        return cfg.out_dir
    default_recipe = next(iter(lab.recipes))
    suffix = "" if cfg.recipe == default_recipe else f"-{cfg.recipe}"
    return _config.runs_dir() / f"{lab.name}{suffix}"


def checkpoint_config(lab: Lab, cfg: LabConfig, info: Mapping[str, Any]) -> dict[str, Any]:
    """What checkpoints store: the lab, every config field, and the model-shaping facts."""
    return {"lab": lab.name, **cfg.to_dict(), "model_info": dict(info)}


def run(
    lab: str | Lab,
    cfg: LabConfig,
    *,
    data: LabData | None = None,
    model: nn.Module | Callable[[], nn.Module] | None = None,
    task: Any = None,
    callbacks: Sequence[Callback] = (),
    resume: str | os.PathLike | None = None,
    progress: bool | None = None,
    epoch_splits: Sequence[str] | None = None,
    write_files: bool = True,
    checkpoints: bool = True,
) -> Run:
    """Train one config of a lab and return its `Run` (see the module docstring).

    * `data`: already loaded `LabData` (notebooks reuse it across runs); default `lab.load_data`.
    * `model`: a module, or a class/function that builds one after seeding (a student's model);
      default `lab.build_model(cfg, data.info)`.
    * `task`: how a batch becomes a loss (default `lab.task(cfg)`), e.g. another loss function.
    * `resume`: a checkpoint to continue from (its schedule must be planned for `cfg.epochs`).
    * `epoch_splits`: the splits evaluated after every epoch (default the lab's).
    * `write_files=False`: no metrics.json/curves.png; `checkpoints=False`: no checkpoints either.
    """
    lab = get_lab(lab)
    if resume is not None:
        check_resume_length(resume, load_checkpoint(resume).config, cfg.epochs)
    with dist.session(cfg.device) as ctx:
        seed_everything(cfg.seed)
        if data is None:
            with dist.rank_zero_first():  # one process builds the decode caches
                data = lab.load_data(cfg, ctx)
        if model is None:
            model = lab.build_model(cfg, data.info)
        elif not isinstance(model, nn.Module):
            model = model()
        model.to(ctx.device)
        trained = dist.wrap_model(model, ctx.device, **lab.ddp_options)
        optimizer = make_optimizer(cfg, trained)
        scheduler, interval = make_scheduler(cfg, optimizer, len(data.train))
        task = task if task is not None else lab.task(cfg)

        splits = lab.epoch_splits if epoch_splits is None else tuple(epoch_splits)
        evals = {s: data.eval[s] for s in splits if data.eval.get(s) is not None}
        monitor = lab.monitor if lab.monitor and lab.monitor.split("_", 1)[0] in evals else None
        out = default_out_dir(lab, cfg)
        policy = (CheckpointPolicy(out / "checkpoints", every=lab.checkpoint_every, at_epochs=cfg.at_epochs,
                                   best=monitor is not None, monitor=monitor) if checkpoints else None)
        tensorboard = out / "tensorboard" if cfg.tensorboard and write_files and checkpoints else None
        started = time.perf_counter()
        history = fit(
            trained, data.train, epochs=cfg.epochs, optimizer=optimizer, task=task, eval_data=evals,
            metrics=lab.metrics, scheduler=scheduler, scheduler_interval=interval, device=ctx.device,
            grad_clip=cfg.grad_clip, amp=cfg.amp, channels_last=cfg.channels_last,
            early_stopping=EarlyStopping(monitor, patience=cfg.patience) if cfg.patience and monitor else None,
            checkpoints=policy, callbacks=callbacks, tensorboard=tensorboard,
            graph_input=lab.graph_input(cfg, data) if tensorboard is not None else None,
            resume_from=resume, monitor=monitor, progress=progress,
            config=checkpoint_config(lab, cfg, data.info), hparams=cfg.to_dict(),
        )
        chosen = history.epoch[-1] if len(history) else 0
        best = out / "checkpoints" / "best.pt"
        dist.barrier()  # under torchrun rank 0 writes best.pt: every rank reloads the final one, not an older one
        if policy is not None and monitor is not None and best.is_file() and not history.diverged:
            chosen = load_checkpoint(best, model, map_location=ctx.device).epoch
        final: dict[str, dict[str, float]] = {}
        if not history.diverged:
            for split in lab.final_splits:
                if data.eval.get(split) is not None:
                    final[split] = evaluate(model, data.eval[split], task=task, metrics=lab.metrics,
                                            device=ctx.device, amp=cfg.amp, channels_last=cfg.channels_last)
        result = Run(lab=lab.name, config=cfg, model=model, history=history, data=data,
                     out_dir=out if (write_files or checkpoints) else None, final=final, chosen_epoch=chosen,
                     seconds=time.perf_counter() - started, info=dict(data.info))
        if write_files and ctx.is_main_process:
            write_outputs(lab, result)
    return result


def write_outputs(lab: Lab, result: Run) -> None:
    """`metrics.json` (summary, config, device, versions, history) and `curves.png` in the run folder."""
    from labkit.plots import plot_history, save_figure

    out = result.out_dir
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    record = {"lab": lab.name, "summary": result.summary(), "config": result.config.to_dict(),
              "chosen_epoch": result.chosen_epoch,
              "data": result.data.description if result.data is not None else "",
              "splits": dict(result.data.split_names) if result.data is not None else {},
              "device": describe_device(result.config.device), "torch": torch.__version__,
              "history": result.history.to_dict()}
    write_json(out / "metrics.json", record)
    if len(result.history):
        keys = [k for k in (lab.curve_keys or result.history.keys()) if k in result.history]
        fig = plot_history(result.history, keys, title=run_title(lab, result))
        save_figure(fig, out / "curves.png")


def run_title(lab: Lab, result: Run) -> str:
    """A figure title that says which lab, recipe and size, and when the data were generated."""
    size = result.config.size
    note = " — smoke size, generated data" if size == "smoke" else f" — {size} size"
    recipe = "" if result.config.recipe == next(iter(lab.recipes)) else f", {result.config.recipe} recipe"
    return f"{lab.title}{recipe}{note}"


def write_json(path: Path, record: Mapping[str, Any]) -> Path:
    """Write JSON atomically (temp file + rename), so a killed run never leaves half a file."""
    from labkit.files import write_text_atomic

    return write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


def config_from_checkpoint(path: str | os.PathLike, **overrides: Any) -> LabConfig:
    """The config a checkpoint was trained with (its lab's `Config`), with some fields changed."""
    ckpt = load_checkpoint(path)
    lab = _lab_of(ckpt.config, path)
    cfg = lab.Config.from_dict(ckpt.config)
    return cfg.replace(**{k: v for k, v in overrides.items() if v is not None})


def _lab_of(saved: Mapping[str, Any], path: str | os.PathLike) -> Lab:
    name = saved.get("lab")
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{path} does not say which lab wrote it (no 'lab' in its config): it was not "
                              "written by `labkit run`, so its model cannot be rebuilt from it.")
    return get_lab(name)


def load_run(path: str | os.PathLike, device: str | torch.device | None = "cpu") -> Run:
    """Rebuild any lab's model from a checkpoint's own config and weights, reading the file once."""
    ckpt = load_checkpoint(path, map_location="cpu")
    lab = _lab_of(ckpt.config, path)
    cfg = lab.Config.from_dict(ckpt.config)
    info = dict(ckpt.config.get("model_info") or {})
    model = lab.build_model(cfg, info)
    load_model_state(model, ckpt.payload["model"], source=f"checkpoint {path}", saved_class=ckpt.model_class)
    model.to(device if device is not None else "cpu")
    model.eval()
    return Run(lab=lab.name, config=cfg, model=model, history=ckpt.history, out_dir=Path(path).parent.parent,
               chosen_epoch=ckpt.epoch, info=info)
