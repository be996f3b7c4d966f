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

import torch
from torch import nn

from labkit import distributed
from labkit.checkpoint import CheckpointPolicy, unwrap
from labkit.engine import fit

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
        train_loader = distributed.distributed_dataloader(dataset, batch, shuffle=False)
        val_loader = distributed.distributed_dataloader(
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
        checkpoints=CheckpointPolicy(out_dir / f"ckpt_{loader_kind}_rank{rank}"),
        tensorboard=out_dir / f"tb_{loader_kind}_rank{rank}",
        progress=progress,
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--global-batch", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    run_rank(args.out_dir, args.global_batch, args.epochs)


if __name__ == "__main__":
    sys.exit(main())
