"""Small builders shared by the core tests."""

from __future__ import annotations

import torch
from torch import nn

from labkit.data.tensor_loader import TensorLoader


def blobs(n: int = 256, classes: int = 3, dim: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable-ish Gaussian blobs: a classification task a tiny MLP learns in a few epochs."""
    gen = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    x = centers[y] + torch.randn(n, dim, generator=gen)
    return x, y


def classifier(dim: int = 8, classes: int = 3, dropout: float = 0.2) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, classes))


def loaders(seed: int = 0, batch_size: int = 32) -> tuple[TensorLoader, TensorLoader]:
    x, y = blobs(seed=seed)
    train = TensorLoader(x[:192], y[:192], batch_size=batch_size, shuffle=True, seed=seed)
    val = TensorLoader(x[192:], y[192:], batch_size=64)
    return train, val


def lr_trace(cfg, steps_per_epoch: int = 4) -> tuple[list[float], str]:
    """The lr of every optimizer step that `labkit.optim` gives a config (a plateau schedule sees a flat
    metric each epoch), and the scheduler's interval."""
    from labkit import optim

    opt = optim.make_optimizer(cfg, nn.Linear(2, 2))
    sched, interval = optim.make_scheduler(cfg, opt, steps_per_epoch)
    lrs = []
    for _epoch in range(cfg.epochs):
        for _ in range(steps_per_epoch):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            if sched is not None and interval == "step":
                sched.step()
        if sched is not None and interval == "epoch":
            sched.step(1.0) if cfg.schedule == "plateau" else sched.step()
    return lrs, interval


def fake_fit(epochs: int, lr: float, plot):
    """A stand-in for `fit()` behind a TrainingPanel: what fit() tells its callbacks, without a model."""
    from labkit.history import History

    history = History()
    state = type("State", (), {"history": history})()
    plot.on_fit_start(state)
    for epoch in range(1, epochs + 1):
        history.append(epoch, lr, 0.0, {"train_loss": 1.0 / epoch})
        plot.on_epoch_end(state)
    plot.on_fit_end(state)
    return history

