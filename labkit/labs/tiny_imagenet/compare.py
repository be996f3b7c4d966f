"""Compare two checkpoints' predictions image by image over one unshuffled loader: plain rows saved as CSV, and
an image grid of the disagreements with readable class names."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSV_COLUMNS = ("index", "image", "true_class", "prediction_a", "prediction_b", "correct_a", "correct_b")


@dataclass(frozen=True)
class PredictionRow:
    """One image: its position in the loader, its id or path, the true and predicted classes."""

    index: int
    image: str
    true_class: str
    prediction_a: str
    prediction_b: str
    target: int
    label_a: int
    label_b: int

    @property
    def correct_a(self) -> bool:
        return self.label_a == self.target

    @property
    def correct_b(self) -> bool:
        return self.label_b == self.target

    @property
    def disagree(self) -> bool:
        return self.label_a != self.label_b

    def as_csv_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(correct_a=int(self.correct_a), correct_b=int(self.correct_b))
        return {key: row[key] for key in CSV_COLUMNS}


def _is_shuffled(loader: Any) -> bool:
    if getattr(loader, "shuffle", False):
        return True
    sampler = getattr(loader, "sampler", None)
    return isinstance(sampler, torch.utils.data.RandomSampler) or bool(getattr(sampler, "shuffle", False))


@torch.no_grad()
def predictions(model: nn.Module, loader: Iterable,
                device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted class (argmax) and target of every example as int64 CPU tensors, in loader order (a shuffled
    loader is refused: "image i" would mean different images for two checkpoints)."""
    if _is_shuffled(loader):
        raise ValueError("predictions() needs a loader in a fixed order, but this one shuffles; "
                         "build it with shuffle=False (e.g. the validation loader)")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    was_training = model.training
    model.eval()
    preds, targets = [], []
    try:
        for batch in loader:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("the loader must yield (inputs, targets) batches")
            inputs, target = batch[0], batch[1]
            logits = model(inputs.to(device, non_blocking=True))
            if logits.ndim != 2:
                raise ValueError(f"expected class logits of shape (batch, classes), got {tuple(logits.shape)}")
            preds.append(logits.argmax(dim=1).cpu())
            targets.append(torch.as_tensor(target).reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not preds:
        raise ValueError("the loader yielded no batches: nothing to compare")
    return torch.cat(preds).long(), torch.cat(targets).long()


def _class_name(class_names: Sequence[str] | None, index: int) -> str:
    if class_names is None:
        return str(index)
    if not 0 <= index < len(class_names):
        raise ValueError(f"class index {index} has no name: class_names has {len(class_names)} entries; "
                         "pass the dataset's class names in the model's output order")
    return str(class_names[index])


def compare_predictions(pred_a: torch.Tensor, pred_b: torch.Tensor, target: torch.Tensor,
                        class_names: Sequence[str] | None = None, image_ids: Sequence[str] | None = None,
                        only_disagreements: bool = True) -> list[PredictionRow]:
    """Rows for the images where A and B predict different classes (or all images)."""
    n = len(target)
    if len(pred_a) != n or len(pred_b) != n:
        raise ValueError(f"prediction lengths differ: A {len(pred_a)}, B {len(pred_b)}, targets {n}")
    if image_ids is not None and len(image_ids) != n:
        raise ValueError(f"{len(image_ids)} image ids for {n} predictions; pass one id or path per example "
                         "in loader order")
    return [PredictionRow(i, str(image_ids[i]) if image_ids is not None else str(i), _class_name(class_names, t),
                          _class_name(class_names, a), _class_name(class_names, b), t, a, b)
            for i, (a, b, t) in enumerate(zip(pred_a.tolist(), pred_b.tolist(), target.tolist()))
            if not (only_disagreements and a == b)]


def compare_checkpoints(ckpt_a: str | Path, ckpt_b: str | Path, build_model: Callable[[], nn.Module],
                        loader: Iterable, class_names: Sequence[str] | None = None,
                        image_ids: Sequence[str] | None = None, device: torch.device | str | None = None,
                        only_disagreements: bool = True) -> list[PredictionRow]:
    """Rows where checkpoints A and B (weights into a fresh `build_model()`) predict differently on `loader`
    (every image with `only_disagreements=False`), labelled by `image_ids` or the index."""
    from labkit.checkpoint import load_checkpoint

    device = device or getattr(loader, "device", None) or torch.device("cpu")
    results = []
    for path in (ckpt_a, ckpt_b):
        model = build_model()
        load_checkpoint(path, model=model)
        results.append(predictions(model.to(device), loader, device))
    (pred_a, target), (pred_b, target_b) = results
    if not torch.equal(target, target_b):
        raise ValueError("the loader gave different targets on its two passes; it must not shuffle or augment")
    return compare_predictions(pred_a, pred_b, target, class_names, image_ids, only_disagreements)


def save_rows_csv(rows: Sequence[PredictionRow], path: str | Path) -> Path:
    """Write rows as CSV (columns `CSV_COLUMNS`); plain text, readable by any spreadsheet."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_csv_row())
    return path


def read_rows_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a CSV written by `save_rows_csv`, as dicts of strings."""
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _as_display_image(image: Any, mean: Sequence[float] | None, std: Sequence[float] | None):
    """An (H, W, C) or (H, W) float array in [0, 1] from a tensor, array or PIL image."""
    import numpy as np

    if not isinstance(image, torch.Tensor):
        array = np.asarray(image)
        if array.dtype == np.uint8:
            return array.astype("float32") / 255.0
        return np.clip(array.astype("float32"), 0.0, 1.0)
    tensor = image.detach().cpu()
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3):  # C, H, W
        tensor = tensor.permute(1, 2, 0)
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    else:
        tensor = tensor.float()
        if mean is not None and std is not None:
            tensor = tensor * torch.tensor(std) + torch.tensor(mean)
    tensor = tensor.clamp(0.0, 1.0)
    if tensor.ndim == 3 and tensor.shape[-1] == 1:
        tensor = tensor[..., 0]
    return tensor.numpy()


def _short(name: str, width: int = 22) -> str:
    """A class name that fits under a thumbnail: its first synonym, cut to `width` characters."""
    name = name.split(",")[0].strip()
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_disagreements(rows: Sequence[PredictionRow], images: Sequence[Any] | torch.Tensor | Callable[[int], Any],
                       path: str | Path | None = None, max_images: int = 16, columns: int = 4,
                       labels: tuple[str, str] = ("A", "B"), mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None) -> Figure:
    """A grid of the images in `rows` (`images[row.index]`: a (N, C, H, W) tensor, uint8 or float with
    `mean`/`std` to undo normalisation, a list, or a function), titled with the true class and both
    predictions (green right, red wrong); saved as PNG when `path` is given."""
    from matplotlib.figure import Figure

    from labkit.plots import save_figure

    if max_images < 1 or columns < 1:
        raise ValueError("max_images and columns must be at least 1")
    shown = list(rows)[:max_images]
    get = images if callable(images) else images.__getitem__
    columns = max(1, min(columns, len(shown)))
    lines = max(1, -(-len(shown) // columns))
    fig = Figure(figsize=(2.6 * columns, 2.9 * lines), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if not shown:
        axes[0, 0].text(0.5, 0.5, "no disagreements", ha="center", va="center")
    for ax, row in zip(axes.flat, shown):
        picture = _as_display_image(get(row.index), mean, std)
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        ax.set_title(f"true: {_short(row.true_class)}", fontsize=8)
        for y, label, name, ok in ((-0.08, labels[0], row.prediction_a, row.correct_a),
                                   (-0.20, labels[1], row.prediction_b, row.correct_b)):
            ax.text(0.5, y, f"{label}: {_short(name)}", transform=ax.transAxes, ha="center", va="top", fontsize=8,
                    color="tab:green" if ok else "tab:red")
    if path is not None:
        save_figure(fig, path)
    return fig
