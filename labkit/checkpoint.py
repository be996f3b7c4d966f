"""The one checkpoint format: plain types and tensors (model, optimizer, scheduler, scaler, epoch, History, RNG
states, config), written atomically (a crash mid-save keeps the previous file), read with weights_only=True after
checking the zip's CRCs; loading names the problem and how to fix it."""

from __future__ import annotations

import datetime as _dt
import enum
import math
import os
import pickle
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import torch

from labkit.callbacks import Callback, FitState
from labkit.device import rng_state, set_rng_state
from labkit.errors import CheckpointError
from labkit.files import atomic_write
from labkit.history import History, metric_mode
from labkit.optim import LENGTH_SHAPED as LENGTH_SHAPED_SCHEDULES  # schedules shaped by the run's planned length

FORMAT = "labkit.checkpoint"
VERSION = 1


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while isinstance(inner := getattr(model, "module", getattr(model, "_orig_mod", None)), torch.nn.Module):
        model = inner
    return model


def to_plain(value: Any) -> Any:
    """Convert config values to types `weights_only` loading accepts (paths -> str, numpy -> python)."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value) if isinstance(value, PurePath | torch.device | torch.dtype) else repr(value)


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns."""
    path: Path
    epoch: int
    history: History
    config: dict[str, Any] = field(default_factory=dict)
    model_class: str = ""
    payload: dict[str, Any] = field(default_factory=dict, repr=False)
    #: a mid-epoch checkpoint's position: {"epoch", "steps", "sums", "lr", "seconds"} (None otherwise)
    partial: dict[str, Any] | None = None


def build_payload(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                  scaler: Any = None, epoch: int = 0, history: History | None = None,
                  config: Mapping[str, Any] | None = None, partial: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dictionary (plain types and tensors only). `epoch` is the last *finished* epoch; `partial`
    marks a checkpoint written inside the next one (its steps done and running sums), so a resume continues there."""
    inner = unwrap(model)
    return {"format": FORMAT, "version": VERSION, "model_class": type(inner).__name__, "model": inner.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None, "rng": rng_state(),
            "scheduler": to_plain(scheduler.state_dict()) if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
            "epoch": int(epoch), "history": (history or History()).to_dict(), "torch_version": str(torch.__version__),
            "config": to_plain(dict(config or {})), "partial": to_plain(dict(partial)) if partial is not None else None,
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def write_atomic(payload: Mapping[str, Any], path: str | os.PathLike) -> Path:
    with atomic_write(path) as handle:
        torch.save(dict(payload), handle)
    return Path(path)


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Save model/optimizer/scheduler/epoch/history/config atomically; see `build_payload`."""
    return write_atomic(build_payload(**state), path)


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.exists():
        nearby = sorted(p.name for p in path.parent.glob("*.pt") if p.is_file()) if path.parent.is_dir() else []
        hint = f" Checkpoints in {path.parent}: {', '.join(nearby)}." if nearby else (
            " Runs write checkpoints as <run>/checkpoints/last.pt, best.pt and epoch_NNN.pt.")
        raise CheckpointError(f"No checkpoint at {path}.{hint}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass a checkpoint file inside it (e.g. {path / 'last.pt'}).")
    if not zipfile.is_zipfile(path):  # every torch.save since PyTorch 1.6 writes a zip archive
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head[:1] == b"\x80" and len(head) == 2 and head[1] <= 5:  # a pickle stream: torch's legacy format
            raise CheckpointError(f"{path} is in PyTorch's legacy (pre-1.6, non-zip) format, which labkit does not "
                                  "read. Load it in Python with torch.load(path, weights_only=True) and save it again "
                                  "with torch.save (the zip format), then pass the new file.")
        raise _corrupt(path, ValueError("not a zip archive, so not a PyTorch checkpoint file"))
    try:
        with zipfile.ZipFile(path) as archive:  # torch.load does not check the CRCs: a flipped bit loads
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _corrupt(path, err) from err
    if bad is not None:
        raise CheckpointError(f"{path} is damaged: its record {bad} fails its CRC check (a disk or copy error "
                              "changed its bytes). Use an earlier checkpoint of the run (best.pt, epoch_NNN.pt) "
                              "or retrain.")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise CheckpointError(f"{path} holds Python objects that labkit will not unpickle (it loads with "
                                  "weights_only=True so a checkpoint cannot run code). Re-save it with labkit's "
                                  "save_checkpoint, or if you trust its source load it yourself with "
                                  "weights_only=False.") from err
        raise _corrupt(path, err) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise _corrupt(path, err) from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a checkpoint dictionary.")
    if data.get("format") != FORMAT:
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):  # a bare state_dict: accepted
            return {"format": FORMAT, "version": VERSION, "model": data, "epoch": 0,
                    "model_class": "", "history": {}, "config": {}}
        raise CheckpointError(f"{path} is not a labkit checkpoint (no '{FORMAT}' marker; keys: {sorted(data)[:8]}).")
    # a labkit checkpoint edited by hand (or by another tool) fails here with what is wrong
    version, model, epoch = data.get("version", 0), data.get("model"), data.get("epoch", 0)
    problems = [f"'version' is {version!r}, not a whole number"] * (isinstance(version, bool) or
                                                                    not isinstance(version, int))
    if not isinstance(model, Mapping):
        problems.append("'model' is missing or is not a dictionary of tensors (a state_dict)")
    elif not all(torch.is_tensor(v) for v in model.values()):
        problems.append("'model' holds values that are not tensors")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        problems.append(f"'epoch' is {epoch!r}, not a whole number ≥ 0")
    problems += [f"'{key}' is a {type(data[key]).__name__}, not a dictionary"
                 for key in ("history", "config", "partial") if not isinstance(data.get(key) or {}, Mapping)]
    if problems:
        raise CheckpointError(
            f"{path} is a damaged labkit checkpoint: {'; '.join(problems)}. Was it edited by hand? Use another "
            "checkpoint of the run (best.pt, last.pt, epoch_NNN.pt) or train again.")
    if data.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer labkit (format v{data['version']}); upgrade labkit.")
    return data


def _corrupt(path: Path, err: BaseException) -> CheckpointError:
    size = path.stat().st_size if path.exists() else 0
    return CheckpointError(
        f"{path} ({size} bytes) is truncated or corrupt and cannot be read ({type(err).__name__}: "
        f"{str(err).splitlines()[0][:160] if str(err) else 'no detail'}). It was probably cut off while "
        "being written or copied: use another checkpoint of the run (best.pt, epoch_NNN.pt) or train again.")


def _listed(what: str, items: list[str], shown: int, sep: str = ", ") -> list[str]:
    return [f"{what} ({len(items)}): {sep.join(items[:shown])}{' ...' if len(items) > shown else ''}"] if items else []


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint",
                     saved_class: str = "") -> None:
    """load_state_dict with an error that names missing, unexpected, mis-shaped and mis-typed keys (load_state_dict
    would cast int8 or float16 weights silently)."""
    target = unwrap(model)
    own = target.state_dict()
    for prefix in ("module.", "_orig_mod."):  # saved from a DDP or torch.compile wrapper
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    parts = (_listed("missing keys", [k for k in own if k not in state], 6)
             + _listed("unexpected keys", [k for k in state if k not in own], 6)
             + _listed("shape mismatches", shapes, 4, "; "))
    if parts:
        saved = f" was saved from {saved_class} and" if saved_class else ""
        raise CheckpointError(
            f"The {source}{saved} does not match {type(target).__name__}: " + "; ".join(parts)
            + ". Build the same architecture (and options, e.g. num_classes) the checkpoint was trained with.")
    dtypes = [f"{k}: checkpoint {v.dtype} vs model {own[k].dtype}" for k, v in state.items() if v.dtype != own[k].dtype]
    if dtypes:
        raise CheckpointError(
            f"The {source} holds weights of another dtype than {type(target).__name__}: "
            + "; ".join(_listed("dtype mismatches", dtypes, 4, "; ")) + ". Loading would cast them (e.g. int8 "
            "weights evaluate at chance): use the checkpoint as it was saved, or convert the model to its dtype.")
    if broken := [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]:
        raise CheckpointError(
            f"The {source} holds NaN or infinite weights ({', '.join(broken[:4])}{' ...' if len(broken) > 4 else ''}"
            "): the run that wrote it had diverged. Use a checkpoint from before (e.g. an epoch_NNN.pt or best.pt), "
            "or retrain with a lower learning rate.")
    target.load_state_dict(state)


def load_checkpoint(path: str | os.PathLike, model: torch.nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, *, scaler: Any = None,
                    map_location: Any = "cpu", restore_rng: bool = False) -> Checkpoint:
    """Read a checkpoint (weights_only=True) and load it into whatever objects are given."""
    path = Path(path)
    data = _read(path, map_location)
    if model is not None:
        load_model_state(model, data["model"], source=f"checkpoint {path}", saved_class=data.get("model_class", ""))
    if optimizer is not None:
        if data.get("optimizer") is None:
            raise CheckpointError(f"{path} has no optimizer state, so training cannot resume exactly from it.")
        try:
            optimizer.load_state_dict(data["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"The optimizer state in {path} does not fit this optimizer: {err}") from err
    for name, obj in (("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and data.get(name) is not None:
            obj.load_state_dict(data[name])
    if restore_rng and data.get("rng"):
        try:
            set_rng_state(data["rng"])
        except (TypeError, ValueError, RuntimeError, KeyError) as err:
            raise CheckpointError(
                f"The random-number state in {path} cannot be restored ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:120] if str(err) else 'no detail'}), so the resumed run would not "
                "continue exactly. Use another checkpoint of the run, or start a new run.") from err
    return Checkpoint(path=path, epoch=int(data.get("epoch", 0)), history=History.from_dict(data.get("history") or {}),
                      config=dict(data.get("config") or {}), model_class=str(data.get("model_class", "")),
                      payload=data, partial=dict(data["partial"]) if isinstance(data.get("partial"), dict) else None)


def check_resume_length(path: str | os.PathLike, saved_config: Mapping[str, Any], epochs: int | None) -> None:
    """Refuse to resume a cosine or one-cycle run for another number of epochs than planned: for more, the lr
    would rise again after the old end (cosine) or fail inside the scheduler (one-cycle); for fewer, it jumps."""
    schedule, planned = saved_config.get("schedule"), saved_config.get("epochs")
    if epochs is None or planned is None or schedule not in LENGTH_SHAPED_SCHEDULES or int(epochs) == int(planned):
        return
    raise CheckpointError(
        f"{path} comes from a run with a {schedule} learning-rate schedule planned for {planned} epochs; "
        f"resuming it for {epochs} epochs would bend that schedule. Resume with --epochs {planned}, or, "
        f"to train longer, start a new run (a 'step' schedule can be extended on resume).")


@dataclass
class CheckpointPolicy(Callback):
    """Which checkpoints a run keeps in `directory` (rank 0 writes them, each with `config`): `last.pt` every
    `every` epochs (0: never) and at the end, inside an epoch every `every_steps` steps or `every_seconds`, and
    where the run stopped inside an epoch (fit's stop reason then says how to resume); `epoch_NNN.pt` at each
    epoch in `at_epochs`; `best.pt` whenever `monitor` reaches its best value (min for losses, max otherwise)."""

    directory: str | os.PathLike
    every: int = 1
    at_epochs: Sequence[int] = ()
    best: bool = True
    monitor: str | None = None
    mode: str | None = None
    every_steps: int | None = None
    every_seconds: float | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def on_fit_start(self, state: FitState) -> None:
        self._last_saved, self._last_time = state.epoch, time.perf_counter()

    def on_step_end(self, state: FitState) -> None:
        if getattr(self, "_last_time", None) is None:  # used without on_fit_start: count from the first step
            self._last_time = time.perf_counter()
        if (self.every_steps and state.step % self.every_steps == 0) or (
                self.every_seconds and time.perf_counter() - self._last_time >= self.every_seconds):
            self.save_mid_epoch(state)

    def save_mid_epoch(self, state: FitState) -> Path | None:
        """Write last.pt at the current step of the current epoch (exact resume); its path (rank 0)."""
        partial = {"epoch": state.epoch, "steps": state.step, "lr": state.epoch_lr, "seconds": state.epoch_seconds(),
                   "sums": state.sums.partial() if state.sums is not None else []}
        self._last_time = time.perf_counter()
        return self._save(state, ["last.pt"], epoch=state.epoch - 1, partial=partial) if state.is_main else None

    def on_epoch_end(self, state: FitState) -> None:
        epoch, key = state.epoch, self.monitor or state.monitor
        names = ["last.pt"] if self.every and epoch % self.every == 0 else []
        names += [f"epoch_{epoch:03d}.pt"] if epoch in set(self.at_epochs) else []
        if self.best and key in state.history and any(map(math.isfinite, state.history[key])):
            names += ["best.pt"] if state.history.best(key, self.mode or metric_mode(key))[0] == epoch else []
        if names and state.is_main:
            self._save(state, names)

    def on_fit_end(self, state: FitState) -> None:
        """A mid-epoch last.pt where the run stopped inside an epoch; else `last.pt` at the run's end when
        `every` skipped it (e.g. every=500 of 2,000 epochs)."""
        h = state.history
        if state.stopped_mid_epoch:
            if (path := self.save_mid_epoch(state)) is not None:
                h.stop_reason = f"{h.stop_reason}; resume with --resume {path}"
        elif state.is_main and self.every and len(h) and h.epoch[-1] == state.epoch and not h.diverged \
                and getattr(self, "_last_saved", 0) < state.epoch:
            self._save(state, ["last.pt"])

    def _save(self, state: FitState, names: list[str], epoch: int | None = None, partial: Any = None) -> Path:
        if "last.pt" in names and partial is None:
            self._last_saved = state.epoch
        payload = build_payload(model=state.model, optimizer=state.optimizer, scheduler=state.scheduler,
                                scaler=state.scaler, epoch=state.epoch if epoch is None else epoch,
                                history=state.history, config=self.config, partial=partial)
        for name in names:
            write_atomic(payload, Path(self.directory) / name)
        return Path(self.directory) / names[-1]
