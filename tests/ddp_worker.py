"""The training run tests/test_distributed.py launches under torchrun (2 CPU processes, gloo):

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_worker.py OUT_DIR

The same `train` runs in the test process as the single-process reference. Each rank saves
its final parameters, History, the DataLoader sampler's epoch and what it printed, so the
test can check that ranks agree, match the reference, and that only rank 0 wrote files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from labkit import distributed
from labkit.callbacks import Callback, Progress, TimeBudget
from labkit.checkpoint import CheckpointPolicy, unwrap
from labkit.engine import fit
from labkit.tensorboard import TensorBoardLogger

FEATURES, CLASSES, TRAIN, VAL = 6, 3, 48, 20


def synthetic_data(seed: int = 0):
    """A tiny 3-class problem that a small MLP partly learns in a few epochs; same on every rank."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, FEATURES, generator=g) * 1.5
    y = torch.randint(0, CLASSES, (TRAIN + VAL,), generator=g)
    x = centres[y] + torch.randn(TRAIN + VAL, FEATURES, generator=g)
    return (x[:TRAIN], y[:TRAIN]), (x[TRAIN:], y[TRAIN:])


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 16), nn.Tanh(), nn.Linear(16, CLASSES))


def distributed_dataloader(dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool = True,
                           drop_last: bool = False, seed: int = 0, **kwargs: Any) -> torch.utils.data.DataLoader:
    """A torch `DataLoader` (the "dataloader" kind); under a process group it draws through a
    `DistributedSampler` (the engine calls its `set_epoch` each epoch: shuffles differ between epochs, agree
    between ranks)."""
    if not distributed.is_distributed():
        if shuffle:
            kwargs.setdefault("generator", torch.Generator().manual_seed(seed))
        return torch.utils.data.DataLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)
    sampler = torch.utils.data.distributed.DistributedSampler(
        dataset, distributed.world_size(), distributed.rank(), shuffle, seed, drop_last)
    return torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, drop_last=drop_last, **kwargs)


def train(out_dir: Path, global_batch: int, epochs: int, loader_kind: str, progress: bool) -> dict:
    """Train the MLP with SGD on this process's shard; return what the test compares."""
    context = distributed.init_distributed(device="cpu")
    rank = context.rank
    (x, y), (xv, yv) = synthetic_data()
    batch = distributed.per_rank_batch_size(global_batch)
    if loader_kind == "tensor":
        train_loader = distributed.tensor_loader(x, y, batch_size=batch, shuffle=True, seed=3)
        val_loader = distributed.tensor_loader(xv, yv, batch_size=8, shuffle=False)
    else:
        dataset = torch.utils.data.TensorDataset(x, y)
        train_loader = distributed_dataloader(dataset, batch, shuffle=False)
        val_loader = distributed_dataloader(
            torch.utils.data.TensorDataset(xv, yv), 8, shuffle=False
        )
    model = distributed.wrap_model(build_model(), context.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    history = fit(
        model,
        train_loader,
        epochs=epochs,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(),
        eval_data=val_loader,
        metrics=("accuracy",),
        device=context.device,
        callbacks=[CheckpointPolicy(out_dir / f"ckpt_{loader_kind}_rank{rank}"),
                   TensorBoardLogger(out_dir / f"tb_{loader_kind}_rank{rank}"), Progress(progress)],
    )
    sampler = getattr(train_loader, "sampler", None)
    return {
        "params": {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()},
        "history": history.to_dict(),
        "sampler_epoch": getattr(sampler, "epoch", -1),
        "world_size": context.world_size,
    }


def run_rank(out_dir: Path, global_batch: int, epochs: int) -> None:
    """One rank (environment as torchrun sets it): both trainings, output captured to a file."""
    rank = int(os.environ["RANK"])
    results = {}
    with (out_dir / f"output_rank{rank}.txt").open("w") as log:
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                for kind in ("tensor", "dataloader"):
                    results[kind] = train(out_dir, global_batch, epochs, kind, progress=True)
                    distributed.barrier()
        finally:
            distributed.cleanup()
    torch.save(results, out_dir / f"result_rank{rank}.pt")


class StopOnOneRank(Callback):
    """Asks to stop at (`epoch`, `step`) on rank `rank` only; records where the fit ended."""

    def __init__(self, rank: int, epoch: int, step: int) -> None:
        self.rank, self.epoch, self.step = rank, epoch, step
        self.ended_at: tuple[int, int] = (0, 0)

    def on_step_end(self, state) -> None:
        if torch.distributed.get_rank() == self.rank and (state.epoch, state.step) == (self.epoch, self.step):
            state.stop, state.stop_reason = True, f"rank {self.rank} asked to stop"

    def on_fit_end(self, state) -> None:
        self.ended_at = (state.epoch, state.step)


class FakeClock(Callback):
    """time.perf_counter as a clock that advances `per_step` seconds per optimizer step (runs first)."""

    order = -1

    def __init__(self, per_step: float) -> None:
        self.now, self.per_step = 1e6, per_step

    def __call__(self) -> float:
        return self.now

    def on_step_end(self, state) -> None:
        self.now += self.per_step


def stop_runs(out_dir: Path) -> dict:
    """Two mid-epoch stops asked for on one rank only (a callback; a time budget on a rank whose fake clock
    runs): where each rank ended, how many stop agreements (MAX all-reduces) it took, and its parameters."""
    import time

    from labkit import engine

    context = distributed.init_distributed(device="cpu")
    rank, agreements, real_all_reduce = context.rank, [], torch.distributed.all_reduce

    def counting_all_reduce(tensor, op=torch.distributed.ReduceOp.SUM, **kwargs):
        if op == torch.distributed.ReduceOp.MAX:
            agreements.append(tensor.numel())
        return real_all_reduce(tensor, op=op, **kwargs)

    torch.distributed.all_reduce = counting_all_reduce
    (x, y), _ = synthetic_data()
    results = {"every": engine.STOP_CHECK_EVERY, "steps_per_epoch": TRAIN // 2}
    for name in ("callback", "budget"):
        agreements.clear()
        model = distributed.wrap_model(build_model(), context.device)
        loader = distributed.tensor_loader(x, y, batch_size=1, shuffle=True, seed=3)  # 24 steps per epoch
        clock = FakeClock(1.0 if rank == 0 else 0.0)
        watch = StopOnOneRank(1, epoch=2, step=5)
        extra = [watch] if name == "callback" else [clock, TimeBudget(10), watch]
        real_clock, time.perf_counter = time.perf_counter, clock if name == "budget" else time.perf_counter
        try:
            history = fit(model, loader, epochs=3, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                          loss_fn=nn.CrossEntropyLoss(), device=context.device,
                          callbacks=[*extra, CheckpointPolicy(out_dir / f"stop_{name}"), Progress(False)])
        finally:
            time.perf_counter = real_clock
        params = unwrap(model).state_dict()
        results[name] = {"ended_at": watch.ended_at, "agreements": len(agreements), "epochs": history.epoch,
                         "stop_reason": history.stop_reason, "params": {k: v.clone() for k, v in params.items()}}
    distributed.barrier()  # leave together (as distributed.session does): a rank tearing gloo down first can
    distributed.cleanup()  # abort the other ("terminate called without an active exception", 1 run in 12)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--global-batch", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--stops", action="store_true", help="run `stop_runs` instead")
    args = parser.parse_args()
    if args.stops:
        torch.save(stop_runs(args.out_dir), args.out_dir / f"stops_rank{os.environ['RANK']}.pt")
        return
    run_rank(args.out_dir, args.global_batch, args.epochs)


if __name__ == "__main__":
    sys.exit(main())
