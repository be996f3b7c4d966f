"""Optimizers and learning-rate schedules, built from a lab's config: `make_optimizer(cfg, model)` and
`make_scheduler(cfg, optimizer, steps_per_epoch) -> (scheduler, "epoch" | "step")`.

Optimizers: sgd (momentum, nesterov), adam, adamw (PyTorch's fused kernel where it exists, ~4x faster on a
CPU), nadam; weight decay on every parameter or, with `cfg.decay_matrices_only`, on weight matrices only.
Schedules: constant; step (x gamma every `step_size` epochs, default a third of the run); multistep (at
`milestones`, default halfway); cosine (to 0 over the epochs); warmup (linear ramp, then constant);
warmup_cosine (ramp, then cosine to `final_lr_fraction` x lr); onecycle; plateau (x gamma after
`patience_lr` stalled epochs). Warm-up lasts `warmup_steps + warmup_epochs x steps_per_epoch` steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adam", "adamw", "nadam")
SCHEDULES = ("constant", "step", "multistep", "cosine", "warmup", "warmup_cosine", "onecycle", "plateau")
#: schedules shaped by the planned run length (resuming them for another length would bend them)
LENGTH_SHAPED = ("cosine", "warmup_cosine", "onecycle")


def parameter_groups(model: nn.Module, weight_decay: float, matrices_only: bool = True) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only (not biases, norms, embeddings), or with `matrices_only=False`
    on everything; a parameter shared by two modules (tied weights) is counted once."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            matrix = p.dim() >= 2 and not isinstance(module, nn.Embedding)
            (decay if matrix or not matrices_only else no_decay).append(p)
    if not matrices_only:
        return [{"params": decay, "weight_decay": weight_decay}]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _fused(cls: type[torch.optim.Optimizer], groups: list[dict[str, Any]], **kwargs: Any) -> torch.optim.Optimizer:
    try:
        return cls(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for these parameters/device
        return cls(groups, **kwargs)


def make_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer over `model`'s trainable parameters."""
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_matrices_only)
    name = cfg.optimizer
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if name in ("adam", "adamw"):
        return _fused(torch.optim.Adam if name == "adam" else torch.optim.AdamW, groups, lr=cfg.lr)
    if name == "nadam":
        return torch.optim.NAdam(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {name!r}: use one of {', '.join(OPTIMIZERS)}.")


def warmup_steps(cfg: Any, steps_per_epoch: int) -> int:
    """Optimizer steps of linear warm-up: `warmup_steps + round(warmup_epochs x steps_per_epoch)`."""
    return int(cfg.warmup_steps) + round(cfg.warmup_epochs * steps_per_epoch)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                  floor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up over `warmup` steps, then cosine decay to `floor` x lr."""
    total = max(total, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_scheduler(cfg: Any, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> tuple[Any, str]:
    """(scheduler or None, "epoch" | "step") for the config's schedule (see the module docstring)."""
    name, epochs = cfg.schedule, max(int(cfg.epochs), 1)
    sched = torch.optim.lr_scheduler
    if name == "constant":
        return None, "epoch"
    if name == "step":
        size = cfg.step_size or max(1, math.ceil(epochs / 3))
        return sched.StepLR(optimizer, step_size=size, gamma=cfg.gamma), "epoch"
    if name == "multistep":
        milestones = list(cfg.milestones) if cfg.milestones else [max(1, epochs // 2)]
        return sched.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.gamma), "epoch"
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=epochs), "epoch"
    total = max(epochs * steps_per_epoch, 1)
    if name == "warmup":
        warmup = max(1, warmup_steps(cfg, steps_per_epoch))  # lr/warmup, 2 lr/warmup, ... lr, then constant
        return sched.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup)), "step"
    if name == "warmup_cosine":
        return warmup_cosine(optimizer, warmup_steps(cfg, steps_per_epoch), total, cfg.final_lr_fraction), "step"
    if name == "onecycle":
        return sched.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=cfg.pct_start,
                                div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
                                cycle_momentum=cfg.cycle_momentum), "step"
    if name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, factor=cfg.gamma, patience=cfg.patience_lr), "epoch"
    raise ValueError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}.")


