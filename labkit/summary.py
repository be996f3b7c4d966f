"""Layer tables: each module's dotted name (`layer1.0.conv1`), type, output shape (without the batch dimension)
and parameter count for one input, measured by `torchinfo.summary`; printed as text, shown as markdown."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torchinfo
from torch import nn


class LayerRow(NamedTuple):
    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int


@dataclass
class LayerTable:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int

    def row(self, name: str) -> LayerRow:
        if found := [r for r in self.rows if r.name == name]:
            return found[0]
        raise KeyError(f"No layer named {name!r}; names look like {[r.name for r in self.rows[:5]]}")

    def _cells(self) -> list[tuple[str, str, str, str]]:
        return [(n, t, "×".join(map(str, s or ())) or "-", f"{p:,}") for n, t, s, p in self.rows]

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.rows] + [5])
        lines = [f"{n:<{w}}  {t:<22} {s:<18} {p:>10}" for n, t, s, p in [("layer", "type", "output shape", "params"),
                                                                           *self._cells()]]
        return "\n".join([*lines, f"total parameters: {self.total_params:,} (trainable {self.trainable_params:,})"])

    def _repr_markdown_(self) -> str:
        return "\n".join(["| layer | type | output shape | params |", "|---|---|---|---:|",
                          *(f"| `{n}` | {t} | {s} | {p} |" for n, t, s, p in self._cells()),
                          f"\n**total parameters: {self.total_params:,}**"])


def layer_table(model: nn.Module, input_size: Sequence[int] | None = None, example: Any = None,
                leaves_only: bool = False, max_depth: int | None = None) -> LayerTable:
    """Run one example (a batch of 1 of `input_size`, or `example`) in eval mode; one row per module of
    `model.named_modules()` down to `max_depth` (or its leaves only); a module that did not run has no shape."""
    if example is None and input_size is None:
        raise ValueError("layer_table needs input_size (e.g. (3, 64, 64)) or an example input.")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        ran = torchinfo.summary(model, (1, *input_size) if example is None else None, input_data=example,
                                device=device, mode="eval", verbose=0).summary_list
    except RuntimeError as err:  # torchinfo wraps the model's own error (e.g. a shape mismatch): raise that one
        raise (err.__cause__ or err) from None
    finally:
        torchinfo.torchinfo._cached_forward_pass.clear()  # it would keep the model (and its GPU memory) alive
    shapes = {id(info.module): tuple(info.output_size[1:]) or None for info in ran}  # a module run twice: its last
    rows = [LayerRow(name, type(module).__name__, shapes.get(id(module)), sum(p.numel() for p in module.parameters()))
            for name, module in model.named_modules() if name and (max_depth is None or name.count(".") < max_depth)
            and not (leaves_only and any(True for _ in module.children()))]
    params = list(model.parameters())
    return LayerTable(rows, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))
