"""Layer tables: every module's name, type, output shape and parameter count for one input.

`layer_table` uses forward hooks, so names are the full dotted paths students see in
`model.named_modules()` (e.g. `layer1.0.conv1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class LayerRow:
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
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"No layer named {name!r}; names look like {[r.name for r in self.rows[:5]]}")

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [5])
        lines = [f"{'layer':<{width}}  {'type':<22} {'output shape':<18} {'params':>10}"]
        for r in self.rows:
            shape = "×".join(str(s) for s in r.output_shape) if r.output_shape else "-"
            lines.append(f"{r.name:<{width}}  {r.type:<22} {shape:<18} {r.params:>10,}")
        lines.append(f"total parameters: {self.total_params:,} (trainable {self.trainable_params:,})")
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        lines = ["| layer | type | output shape | params |", "|---|---|---|---:|"]
        for r in self.rows:
            shape = "×".join(str(s) for s in r.output_shape) if r.output_shape else "-"
            lines.append(f"| `{r.name}` | {r.type} | {shape} | {r.params:,} |")
        lines.append(f"\n**total parameters: {self.total_params:,}**")
        return "\n".join(lines)


def _shape(output: Any) -> tuple[int, ...] | None:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape[1:])  # without the batch dimension
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return tuple(output[0].shape[1:])
    return None


def layer_table(model: nn.Module, input_size: Sequence[int] | None = None, example: Any = None,
                leaves_only: bool = False, max_depth: int | None = None) -> LayerTable:
    """Run one example (batch of 1 of `input_size`, or `example`) and record each module's output.

    Output shapes are shown without the batch dimension (e.g. conv1 -> (64, 32, 32)).
    """
    if example is None:
        if input_size is None:
            raise ValueError("layer_table needs input_size (e.g. (3, 64, 64)) or an example input.")
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        example = torch.zeros(1, *input_size, device=device)
    rows: dict[str, LayerRow] = {}
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue
        depth = name.count(".") + 1
        is_leaf = not any(True for _ in module.children())
        if (leaves_only and not is_leaf) or (max_depth is not None and depth > max_depth):
            continue
        params = sum(p.numel() for p in module.parameters())
        rows[name] = LayerRow(name, type(module).__name__, None, params)

        def hook(mod: nn.Module, args: Any, output: Any, name: str = name) -> None:
            rows[name].output_shape = _shape(output)

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example) if isinstance(example, tuple) else model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return LayerTable(list(rows.values()), total, trainable)
