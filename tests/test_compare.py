"""Checkpoint comparison: predictions in loader order, disagreement rows, CSV, image grid."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from labkit.labs.tiny_imagenet.compare import (
    CSV_COLUMNS,
    compare_predictions,
    plot_disagreements,
    predictions,
    read_rows_csv,
    save_rows_csv,
)

CLASSES = ["goldfish, Carassius auratus", "tabby cat", "school bus"]


class FixedLogits(nn.Module):
    """Predicts class `x[:, 0]` exactly: makes expected predictions easy to write down."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.classes = classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), self.classes).float() * self.scale


def _batches(labels_in_input, targets, batch_size=2):
    x = torch.tensor(labels_in_input, dtype=torch.float32).reshape(-1, 1)
    y = torch.tensor(targets)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]


def test_predictions_follow_loader_order_and_restore_mode():
    model = FixedLogits()
    model.train()
    pred, target = predictions(model, _batches([2, 0, 1, 1, 0], [2, 1, 1, 0, 0]))
    assert pred.tolist() == [2, 0, 1, 1, 0]
    assert target.tolist() == [2, 1, 1, 0, 0]
    assert pred.dtype == torch.int64 and model.training


def test_predictions_refuse_a_shuffled_loader():
    data = torch.utils.data.TensorDataset(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        predictions(FixedLogits(), loader)


def test_compare_predictions_lists_only_disagreements_with_names():
    pred_a = torch.tensor([0, 1, 2, 2])
    pred_b = torch.tensor([0, 2, 2, 1])
    target = torch.tensor([0, 1, 1, 1])
    rows = compare_predictions(pred_a, pred_b, target, CLASSES, image_ids=["a", "b", "c", "d"])
    assert [r.index for r in rows] == [1, 3]
    assert [r.image for r in rows] == ["b", "d"]
    first = rows[0]
    assert (first.true_class, first.prediction_a, first.prediction_b) == (
        "tabby cat",
        "tabby cat",
        "school bus",
    )
    assert first.correct_a and not first.correct_b
    assert not rows[1].correct_a and rows[1].correct_b
    everything = compare_predictions(pred_a, pred_b, target, CLASSES, only_disagreements=False)
    assert len(everything) == 4 and everything[0].image == "0"


def test_compare_predictions_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="lengths differ"):
        compare_predictions(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image ids"):
        compare_predictions(torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), None, ["x", "y"])
    with pytest.raises(ValueError, match="class index 5 has no name"):
        compare_predictions(torch.tensor([5]), torch.tensor([1]), torch.tensor([0]), CLASSES)


def test_rows_round_trip_through_csv(tmp_path):
    rows = compare_predictions(
        torch.tensor([0, 1]), torch.tensor([1, 1]), torch.tensor([1, 1]), CLASSES, ["x.JPEG", "y.JPEG"]
    )
    path = save_rows_csv(rows, tmp_path / "sub" / "disagreements.csv")
    text = path.read_text()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    back = read_rows_csv(path)
    assert back == [
        {
            "index": "0",
            "image": "x.JPEG",
            "true_class": "tabby cat",
            "prediction_a": "goldfish, Carassius auratus",
            "prediction_b": "tabby cat",
            "correct_a": "0",
            "correct_b": "1",
        }
    ]
    assert list(csv.reader(text.splitlines()))[1][3] == "goldfish, Carassius auratus"  # quoted comma


@pytest.mark.parametrize("kind", ["uint8", "normalised", "callable"])
def test_plot_disagreements_writes_a_png_grid(tmp_path, kind):
    rows = compare_predictions(
        torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1, 2, 0, 0, 2]), torch.tensor([0, 1, 2, 0, 0]), CLASSES
    )
    assert len(rows) == 4
    uint8 = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    images = {
        "uint8": uint8,
        "normalised": (uint8.float() / 255 - 0.5) / 0.25,
        "callable": lambda i: uint8[i].permute(1, 2, 0).numpy(),
    }[kind]
    path = tmp_path / "grid.png"
    fig = plot_disagreements(rows, images, path=path, columns=3, mean=mean, std=std)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 4
    shown = torch.as_tensor(drawn[1].images[0].get_array().data)
    expected = uint8[rows[1].index].permute(1, 2, 0).float() / 255
    assert torch.allclose(shown.float(), expected, atol=1e-5)  # normalisation undone
    assert drawn[0].get_title() == "true: goldfish"
    texts = [t.get_text() for t in drawn[0].texts]
    assert texts == ["A: goldfish", "B: tabby cat"]
    assert drawn[0].texts[0].get_color() == "tab:green" and drawn[0].texts[1].get_color() == "tab:red"


def _linear(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def test_compare_checkpoints_loads_both_and_lists_disagreements(tmp_path):
    from labkit.checkpoint import save_checkpoint
    from labkit.data.tensor_loader import TensorLoader
    from labkit.labs.tiny_imagenet.compare import compare_checkpoints

    model_a, model_b = _linear(1), _linear(2)
    path_a = save_checkpoint(tmp_path / "epoch_005.pt", model=model_a, epoch=5)
    path_b = save_checkpoint(tmp_path / "epoch_010.pt", model=model_b, epoch=10)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(1))
    loader = TensorLoader(x, y, batch_size=16, shuffle=False)
    ids = [f"val_{i}.JPEG" for i in range(40)]

    rows = compare_checkpoints(path_a, path_b, lambda: nn.Linear(4, 3), loader, CLASSES, ids, device="cpu")

    with torch.no_grad():
        expected_a, expected_b = model_a(x).argmax(1), model_b(x).argmax(1)
    differ = (expected_a != expected_b).nonzero().flatten().tolist()
    assert differ, "two random models should disagree somewhere; pick other seeds"
    assert [r.index for r in rows] == differ
    assert [r.image for r in rows] == [ids[i] for i in differ]
    assert all(CLASSES[expected_a[r.index]] == r.prediction_a for r in rows)
    assert all(CLASSES[y[r.index]] == r.true_class for r in rows)
    all_rows = compare_checkpoints(
        path_a, path_a, lambda: nn.Linear(4, 3), loader, CLASSES, device="cpu", only_disagreements=False
    )
    assert len(all_rows) == 40 and not any(r.disagree for r in all_rows)


def test_compare_checkpoints_refuses_a_shuffled_loader_and_a_wrong_model(tmp_path):
    from labkit.checkpoint import save_checkpoint
    from labkit.data.tensor_loader import TensorLoader
    from labkit.errors import CheckpointError
    from labkit.labs.tiny_imagenet.compare import compare_checkpoints

    path = save_checkpoint(tmp_path / "last.pt", model=_linear(1), epoch=1)
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    shuffled = TensorLoader(x, y, batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        compare_checkpoints(path, path, lambda: nn.Linear(4, 3), shuffled, device="cpu")
    ordered = TensorLoader(x, y, batch_size=4)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        compare_checkpoints(path, path, lambda: nn.Linear(4, 5), ordered, device="cpu")
