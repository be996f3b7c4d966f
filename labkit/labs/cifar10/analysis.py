"""Lab 02's own helpers that are not part of its Lab class."""

from __future__ import annotations

import math
from typing import Any


def milestone_epochs(cfg: Any) -> list[int]:
    """Epochs after which a step/multistep schedule lowers the lr (as `labkit.optim.make_scheduler` builds
    them), for marking them on plots."""
    epochs = int(cfg.epochs)
    if cfg.schedule == "multistep":
        return [m for m in (cfg.milestones or [max(1, epochs // 2)]) if m < epochs]
    if cfg.schedule == "step":
        size = cfg.step_size or max(1, math.ceil(epochs / 3))
        return list(range(size, epochs, size))
    return []
